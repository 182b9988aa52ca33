/*
 * hostile: a hostile tenant. It speaks rgpu's protocol directly (no client
 * library, no ICD) and tries, one attack at a time, to crash rgpu-server,
 * read its memory, hold its resources forever or make it allocate what it
 * was never given. Each attack opens its own session(s).
 *
 *   hostile [--metrics HOST:PORT] [--server-pid PID] HOST:PORT ATTACK...
 *   hostile HOST:PORT all            every attack, in the order of the list
 *   hostile --list                   the attacks
 *
 * For each attack it prints one line
 *
 *   ATTACK <name> result=pass: <what the server did>
 *   ATTACK <name> result=FAIL: <what went wrong>
 *
 * and after each attack it checks that the server still opens a new
 * session and answers a ping. Exit status: 0 every attack passed, 1 at
 * least one failed, 2 bad usage.
 *
 * --metrics (the server's --metrics address) is needed by wait-forever,
 * which watches rgpu_server_buffer_bytes to see the server free a session.
 * --server-pid (the server runs on this machine) makes prehello-body,
 * bulk-to-nothing and readrect-huge also bound the server's VmRSS growth
 * while the attack holds its connections open.
 *
 * The "correct" behaviour each attack expects is written above it. A
 * server that answers with an OpenCL error, an AsyncError, a SessionError
 * or that closes the attacker's session behaved; one that crashes, hangs,
 * leaks, allocates what it was announced, or answers with its own
 * pointers did not.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <CL/cl.h>

#include "opencl.pb-c.h"
#include "raw_wire.h"
#include "rgpu/frame.h"
#include "rgpu/util.h"
#include "rgpu/wire.h"
#include "session.pb-c.h"

#define MIB (1024ull * 1024)
#define GIB (1024ull * MIB)

/* Deadlines, in milliseconds. */
#define T_REPLY 15000    /* an ordinary reply (PoCL under ASan is slow) */
#define T_BUILD 120000   /* a program build (first compile, no cache) */
#define T_REFUSE 5000    /* "at once": a refusal must come within this */
#define T_FRAME 30000    /* the rest of a frame once its first byte came */

static const char *server_addr;
static const char *metrics_addr;
static int server_pid;
/* HOSTILE_VARIANTS=MASK: only these variants of wait-forever and
 * wait-then-set (bit 0 ClWaitEvents, 1 ClFinish, 2 blocking read), and of
 * image-args' launches after a release (bit 0 the sampler, 1 the image, 2
 * the __global buffer released). */
static int variants = 7;

/* ---- time ---------------------------------------------------------- */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int left_ms(int64_t deadline)
{
    int64_t left = deadline - now_ms();

    return left < 0 ? 0 : left > 3600000 ? 3600000 : (int)left;
}

/* ---- a session, spoken by hand -------------------------------------- */

typedef struct {
    uint64_t seq;
    uint32_t type;
    int32_t err;
    char what[200];
} async_err_t;

typedef struct {
    int fd;
    uint64_t seq;
    uint64_t next_id;
    int closed;              /* EOF, reset or an I/O error seen */
    int session_error;       /* a SessionError arrived */
    int32_t se_status;
    char se_reason[300];
    async_err_t aerr[128];
    int n_aerr;
    uint32_t n_devices;
    uint64_t session_id;
    raw_wire_t rw;           /* frames in and out as the server's transport takes them */
} sess_t;

typedef struct {
    rgpu_frame_header_t hdr;
    uint8_t *body;
    uint8_t *bulk;           /* NULL when none */
} frame_t;

static void frame_free(frame_t *f)
{
    free(f->body);
    free(f->bulk);
    f->body = f->bulk = NULL;
}

static int tcp_connect(const char *addr)
{
    char host[256];
    uint16_t port;
    struct sockaddr_in sa;
    int fd, one = 1;

    if (rgpu_addr_split(addr, host, sizeof(host), &port) != RGPU_OK)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends all of buf by the deadline: 1 sent, 0 timed out (the peer does not
 * read), -1 the connection is gone. */
static int send_all(sess_t *s, const void *buf, size_t len, int64_t deadline)
{
    const uint8_t *p = buf;

    if (s->closed)
        return -1;
    while (len) {
        struct pollfd pfd = {s->fd, POLLOUT, 0};
        ssize_t n;

        if (poll(&pfd, 1, left_ms(deadline)) == 0)
            return 0;
        n = send(s->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                continue;
            s->closed = 1;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 1;
}

/* Sends a frame: header and body, announcing announced_bulk bytes of bulk,
 * followed by bulk_len bytes of bulk (bulk NULL: zeros). Without flags, as
 * the server's transport takes it (raw_wire.h: past the eager limit, in
 * fragments); with RGPU_FRAME_F_STREAM, as one frame whose bulk follows it
 * in the stream (how rgpu's client sends large data over TCP). Returns its
 * seq, or 0 when the connection broke or the server stopped reading. */
static uint64_t send_frame_flags(sess_t *s, uint16_t type, uint32_t flags, const ProtobufCMessage *msg,
                                 const void *bulk, uint64_t bulk_len, uint64_t announced_bulk, int timeout_ms)
{
    int64_t deadline = now_ms() + timeout_ms;
    size_t need = rgpu_frame_packed_size(msg), hb_len;
    uint8_t *buf = malloc(need);
    uint64_t seq = ++s->seq;
    int rc;

    if (!buf) {
        fprintf(stderr, "hostile: out of memory\n");
        exit(2);
    }
    if (s->closed) {
        free(buf);
        return 0;
    }
    s->rw.fd = s->fd;
    hb_len = rgpu_frame_pack(buf, type, seq, flags, msg, announced_bulk);
    rc = flags & RGPU_FRAME_F_STREAM ? raw_wire_send_range(s->fd, buf, hb_len, bulk, 0, hb_len + bulk_len, deadline)
                                     : raw_wire_send(&s->rw, buf, hb_len, bulk, bulk_len, deadline);
    free(buf);
    if (rc < 0)
        s->closed = 1;
    return rc == 1 ? seq : 0;
}

static uint64_t send_frame_ex(sess_t *s, uint16_t type, const ProtobufCMessage *msg, const void *bulk,
                              uint64_t bulk_len, uint64_t announced_bulk, int timeout_ms)
{
    return send_frame_flags(s, type, 0, msg, bulk, bulk_len, announced_bulk, timeout_ms);
}

static uint64_t send_frame_stream(sess_t *s, uint16_t type, const ProtobufCMessage *msg, const void *bulk,
                                  uint64_t sent, uint64_t announced, int timeout_ms)
{
    return send_frame_flags(s, type, RGPU_FRAME_F_STREAM, msg, bulk, sent, announced, timeout_ms);
}

static uint64_t send_frame(sess_t *s, uint16_t type, const ProtobufCMessage *msg, const void *bulk,
                           uint64_t bulk_len)
{
    return send_frame_ex(s, type, msg, bulk, bulk_len, bulk_len, T_REPLY);
}

/* The next frame within timeout_ms: 1 got one, 0 nothing came, -1 closed.
 * AsyncErrors and SessionErrors are recorded in s as well. */
static int next_frame(sess_t *s, int timeout_ms, frame_t *f)
{
    rgpu_frame_limits_t limits = {RGPU_FRAME_DEFAULT_MAX_BODY, RGPU_FRAME_DEFAULT_MAX_BULK};
    uint8_t *whole = NULL;
    size_t len;
    int rc;

    memset(f, 0, sizeof(*f));
    if (s->closed)
        return -1;
    /* Whole frames: out of the server's batches, put back together from
     * its fragments (raw_wire.h). */
    s->rw.fd = s->fd;
    rc = raw_wire_next(&s->rw, now_ms() + timeout_ms, T_FRAME, &whole, &len);
    if (rc == 0)
        return 0;
    if (rc < 0 || rgpu_frame_header_decode(whole, &limits, &f->hdr) != RGPU_OK) {
        free(whole);
        s->closed = 1;
        return -1;
    }
    f->body = malloc((size_t)f->hdr.body_len + 1);
    f->bulk = f->hdr.bulk_len ? malloc((size_t)f->hdr.bulk_len) : NULL;
    if (!f->body || (f->hdr.bulk_len && !f->bulk)) {
        fprintf(stderr, "hostile: out of memory\n");
        exit(2);
    }
    memcpy(f->body, whole + RGPU_FRAME_HEADER_SIZE, f->hdr.body_len);
    if (f->hdr.bulk_len)
        memcpy(f->bulk, whole + RGPU_FRAME_HEADER_SIZE + f->hdr.body_len, (size_t)f->hdr.bulk_len);
    free(whole);
    if (f->hdr.type == RGPU__MSG_TYPE__MSG_ASYNC_ERROR) {
        Rgpu__AsyncError *m = rgpu__async_error__unpack(NULL, f->hdr.body_len, f->body);
        if (m && s->n_aerr < (int)(sizeof(s->aerr) / sizeof(s->aerr[0]))) {
            async_err_t *a = &s->aerr[s->n_aerr++];
            a->seq = m->seq;
            a->type = m->msg_type;
            a->err = m->cl_error;
            snprintf(a->what, sizeof(a->what), "%s", m->what ? m->what : "");
        }
        if (m)
            rgpu__async_error__free_unpacked(m, NULL);
    } else if (f->hdr.type == RGPU__MSG_TYPE__MSG_SESSION_ERROR) {
        Rgpu__SessionError *m = rgpu__session_error__unpack(NULL, f->hdr.body_len, f->body);
        s->session_error = 1;
        if (m) {
            s->se_status = m->status;
            snprintf(s->se_reason, sizeof(s->se_reason), "%s", m->reason ? m->reason : "");
            rgpu__session_error__free_unpacked(m, NULL);
        }
    }
    return 1;
}

/* Waits for the reply to seq: 1 got it (in *f), 0 timed out, -1 the session
 * ended (SessionError or close) first. Other frames are recorded or dropped.
 * Pieces of the reply's bulk sent ahead of it (MSG_BULK_PART, a pipelined
 * read) are gathered, in order, and handed over as the reply's bulk, as the
 * client library does; a piece out of place makes the bulk NULL. */
static int wait_reply(sess_t *s, uint64_t seq, int timeout_ms, frame_t *f)
{
    int64_t deadline = now_ms() + timeout_ms;
    uint8_t *pieces = NULL;
    uint64_t got = 0;
    int pieces_ok = 1, rc;

    for (;;) {
        rc = next_frame(s, left_ms(deadline), f);
        if (rc != 1)
            break;
        if (f->hdr.type == RGPU__MSG_TYPE__MSG_SESSION_ERROR) {
            frame_free(f);
            rc = -1;
            break;
        }
        if (f->hdr.type == RGPU__MSG_TYPE__MSG_BULK_PART && f->hdr.seq == seq && seq != 0) {
            Rgpu__BulkPart *part = rgpu__bulk_part__unpack(NULL, f->hdr.body_len, f->body);
            uint8_t *grown = NULL;

            if (part && part->offset == got && f->bulk && got + f->hdr.bulk_len <= 256 * MIB)
                grown = realloc(pieces, (size_t)(got + f->hdr.bulk_len));
            if (grown) {
                memcpy(grown + got, f->bulk, (size_t)f->hdr.bulk_len);
                pieces = grown;
                got += f->hdr.bulk_len;
            } else {
                pieces_ok = 0;
            }
            if (part)
                rgpu__bulk_part__free_unpacked(part, NULL);
        } else if (f->hdr.seq == seq && seq != 0 && f->hdr.type != RGPU__MSG_TYPE__MSG_ASYNC_ERROR) {
            if (got && !f->hdr.bulk_len && pieces_ok) {
                f->bulk = pieces;
                f->hdr.bulk_len = got;
                pieces = NULL;
            }
            free(pieces);
            return 1;
        }
        frame_free(f);
        if (left_ms(deadline) == 0) {
            rc = 0;
            break;
        }
    }
    free(pieces);
    return rc;
}

/* The AsyncError the server sent for seq, or 0. */
static int32_t async_err(const sess_t *s, uint64_t seq)
{
    for (int i = 0; i < s->n_aerr; i++) {
        if (s->aerr[i].seq == seq)
            return s->aerr[i].err ? s->aerr[i].err : -9999;
    }
    return 0;
}

/* How a session ended, for messages. */
static const char *ended_how(const sess_t *s, char *buf, size_t cap)
{
    if (s->session_error)
        snprintf(buf, cap, "SessionError %d \"%s\"", s->se_status, s->se_reason);
    else if (s->closed)
        snprintf(buf, cap, "the server closed the connection without a SessionError");
    else
        snprintf(buf, cap, "the session is still open");
    return buf;
}

static void sess_close(sess_t *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    raw_wire_fini(&s->rw);
}

/* Opens a session (connect, hello): 0, or -1 with why. */
static int sess_open(sess_t *s, uint64_t id_base, char *why, size_t why_cap)
{
    Rgpu__Hello hello = RGPU__HELLO__INIT;
    Rgpu__HelloReply *reply;
    struct utsname u;
    frame_t f;
    uint64_t seq;
    int rc;
    char how[400];

    memset(s, 0, sizeof(*s));
    s->next_id = id_base ? id_base : 1;
    s->fd = tcp_connect(server_addr);
    if (s->fd < 0) {
        snprintf(why, why_cap, "cannot connect to %s: %s", server_addr, strerror(errno));
        return -1;
    }
    hello.protocol_version = RGPU_PROTOCOL_VERSION;
    hello.api = RGPU__API_FAMILY__API_OPENCL;
    hello.client_arch = uname(&u) == 0 ? u.machine : "unknown";
    hello.client_host = "hostile";
    hello.client_pid = (uint32_t)getpid();
    seq = send_frame(s, RGPU__MSG_TYPE__MSG_HELLO, &hello.base, NULL, 0);
    rc = seq ? wait_reply(s, seq, T_REPLY, &f) : -1;
    if (rc != 1) {
        snprintf(why, why_cap, "hello to %s: %s", server_addr,
                 rc == 0 ? "no reply within the deadline" : ended_how(s, how, sizeof(how)));
        sess_close(s);
        return -1;
    }
    reply = f.hdr.type == RGPU__MSG_TYPE__MSG_HELLO_REPLY ? rgpu__hello_reply__unpack(NULL, f.hdr.body_len, f.body)
                                                         : NULL;
    frame_free(&f);
    if (!reply) {
        snprintf(why, why_cap, "hello to %s: the reply is not a HelloReply", server_addr);
        sess_close(s);
        return -1;
    }
    s->n_devices = (uint32_t)reply->n_devices;
    s->session_id = reply->session_id;
    rgpu__hello_reply__free_unpacked(reply, NULL);
    if (s->n_devices == 0) {
        snprintf(why, why_cap, "the server offers no device");
        sess_close(s);
        return -1;
    }
    return 0;
}

/* A sync point: 1 pong, 0 timeout, -1 the session ended. */
static int sess_ping(sess_t *s, int timeout_ms)
{
    Rgpu__Ping ping = RGPU__PING__INIT;
    uint64_t seq = send_frame(s, RGPU__MSG_TYPE__MSG_PING, &ping.base, NULL, 0);
    frame_t f;
    int rc;

    if (!seq)
        return -1;
    rc = wait_reply(s, seq, timeout_ms, &f);
    if (rc == 1)
        frame_free(&f);
    return rc;
}

/* ---- OpenCL calls --------------------------------------------------- */

static uint64_t op_context(sess_t *s, uint64_t *seq_p)
{
    Rgpu__ClCreateContext m = RGPU__CL_CREATE_CONTEXT__INIT;
    uint32_t dev = 0;
    uint64_t seq;

    m.id = s->next_id++;
    m.n_devices = 1;
    m.devices = &dev;
    seq = send_frame(s, RGPU__MSG_TYPE__MSG_CL_CREATE_CONTEXT, &m.base, NULL, 0);
    if (seq_p)
        *seq_p = seq;
    return m.id;
}

static uint64_t op_queue(sess_t *s, uint64_t ctx, uint64_t *seq_p)
{
    Rgpu__ClCreateQueue m = RGPU__CL_CREATE_QUEUE__INIT;
    uint64_t seq;

    m.id = s->next_id++;
    m.context = ctx;
    m.device = 0;
    seq = send_frame(s, RGPU__MSG_TYPE__MSG_CL_CREATE_QUEUE, &m.base, NULL, 0);
    if (seq_p)
        *seq_p = seq;
    return m.id;
}

/* A buffer; with init, its contents (size bytes). */
static uint64_t op_buffer_id(sess_t *s, uint64_t id, uint64_t ctx, uint64_t size, const void *init, uint64_t *seq_p)
{
    Rgpu__ClCreateBuffer m = RGPU__CL_CREATE_BUFFER__INIT;
    uint64_t seq;

    m.id = id;
    m.context = ctx;
    m.flags = CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0);
    m.size = size;
    seq = send_frame(s, RGPU__MSG_TYPE__MSG_CL_CREATE_BUFFER, &m.base, init, init ? size : 0);
    if (seq_p)
        *seq_p = seq;
    return m.id;
}

static uint64_t op_buffer(sess_t *s, uint64_t ctx, uint64_t size, const void *init, uint64_t *seq_p)
{
    return op_buffer_id(s, s->next_id++, ctx, size, init, seq_p);
}

static uint64_t op_sub_buffer(sess_t *s, uint64_t parent, uint64_t origin, uint64_t size, uint64_t *seq_p)
{
    Rgpu__ClCreateSubBuffer m = RGPU__CL_CREATE_SUB_BUFFER__INIT;
    uint64_t seq;

    m.id = s->next_id++;
    m.parent = parent;
    m.flags = CL_MEM_READ_WRITE;
    m.origin = origin;
    m.size = size;
    seq = send_frame(s, RGPU__MSG_TYPE__MSG_CL_CREATE_SUB_BUFFER, &m.base, NULL, 0);
    if (seq_p)
        *seq_p = seq;
    return m.id;
}

static uint64_t op_user_event(sess_t *s, uint64_t ctx)
{
    Rgpu__ClCreateUserEvent m = RGPU__CL_CREATE_USER_EVENT__INIT;

    m.id = s->next_id++;
    m.context = ctx;
    send_frame(s, RGPU__MSG_TYPE__MSG_CL_CREATE_USER_EVENT, &m.base, NULL, 0);
    return m.id;
}

static uint64_t op_set_user_event(sess_t *s, uint64_t ev, int32_t status)
{
    Rgpu__ClSetUserEventStatus m = RGPU__CL_SET_USER_EVENT_STATUS__INIT;

    m.event = ev;
    m.status = status;
    return send_frame(s, RGPU__MSG_TYPE__MSG_CL_SET_USER_EVENT_STATUS, &m.base, NULL, 0);
}

static uint64_t op_release(sess_t *s, int kind, uint64_t id)
{
    Rgpu__ClRelease m = RGPU__CL_RELEASE__INIT;

    m.kind = (Rgpu__ClObjectKind)kind;
    m.id = id;
    return send_frame(s, RGPU__MSG_TYPE__MSG_CL_RELEASE, &m.base, NULL, 0);
}

/* A program from source, built: returns its id, or 0 with why. */
static uint64_t op_program_built(sess_t *s, uint64_t ctx, const char *src, char *why, size_t why_cap)
{
    Rgpu__ClCreateProgramSource c = RGPU__CL_CREATE_PROGRAM_SOURCE__INIT;
    Rgpu__ClBuildProgram b = RGPU__CL_BUILD_PROGRAM__INIT;
    Rgpu__ClBuildReply *reply;
    frame_t f;
    uint64_t seq, cseq;
    int rc;
    char how[400];

    c.id = s->next_id++;
    c.context = ctx;
    c.source = (char *)src;
    cseq = send_frame(s, RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_SOURCE, &c.base, NULL, 0);
    b.program = c.id;
    b.options = "";
    seq = cseq ? send_frame(s, RGPU__MSG_TYPE__MSG_CL_BUILD_PROGRAM, &b.base, NULL, 0) : 0;
    rc = seq ? wait_reply(s, seq, T_BUILD, &f) : -1;
    if (rc != 1) {
        snprintf(why, why_cap, "building a program: %s",
                 rc == 0 ? "no reply within the deadline" : ended_how(s, how, sizeof(how)));
        return 0;
    }
    reply = rgpu__cl_build_reply__unpack(NULL, f.hdr.body_len, f.body);
    frame_free(&f);
    if (!reply || reply->cl_error != CL_SUCCESS) {
        snprintf(why, why_cap, "building a program failed: error %d (create: %d)", reply ? reply->cl_error : -9999,
                 async_err(s, cseq));
        if (reply)
            rgpu__cl_build_reply__free_unpacked(reply, NULL);
        return 0;
    }
    rgpu__cl_build_reply__free_unpacked(reply, NULL);
    return c.id;
}

static uint64_t op_kernel(sess_t *s, uint64_t prog, const char *name, uint64_t *seq_p)
{
    Rgpu__ClCreateKernel m = RGPU__CL_CREATE_KERNEL__INIT;
    uint64_t seq;

    m.id = s->next_id++;
    m.program = prog;
    m.name = (char *)name;
    seq = send_frame(s, RGPU__MSG_TYPE__MSG_CL_CREATE_KERNEL, &m.base, NULL, 0);
    if (seq_p)
        *seq_p = seq;
    return m.id;
}

static uint64_t op_arg_value(sess_t *s, uint64_t kernel, uint32_t index, const void *value, size_t len)
{
    Rgpu__ClSetKernelArg m = RGPU__CL_SET_KERNEL_ARG__INIT;

    m.kernel = kernel;
    m.index = index;
    m.kind = RGPU__CL_ARG_KIND__CL_ARG_VALUE;
    m.value.data = (uint8_t *)value;
    m.value.len = len;
    return send_frame(s, RGPU__MSG_TYPE__MSG_CL_SET_KERNEL_ARG, &m.base, NULL, 0);
}

static uint64_t op_arg_mem(sess_t *s, uint64_t kernel, uint32_t index, uint64_t mem)
{
    Rgpu__ClSetKernelArg m = RGPU__CL_SET_KERNEL_ARG__INIT;

    m.kernel = kernel;
    m.index = index;
    m.kind = RGPU__CL_ARG_KIND__CL_ARG_MEM;
    m.mem = mem;
    return send_frame(s, RGPU__MSG_TYPE__MSG_CL_SET_KERNEL_ARG, &m.base, NULL, 0);
}

static uint64_t op_arg_local(sess_t *s, uint64_t kernel, uint32_t index, uint64_t size)
{
    Rgpu__ClSetKernelArg m = RGPU__CL_SET_KERNEL_ARG__INIT;

    m.kernel = kernel;
    m.index = index;
    m.kind = RGPU__CL_ARG_KIND__CL_ARG_LOCAL;
    m.local_size = size;
    return send_frame(s, RGPU__MSG_TYPE__MSG_CL_SET_KERNEL_ARG, &m.base, NULL, 0);
}

static uint64_t op_ndrange(sess_t *s, uint64_t queue, uint64_t kernel, uint32_t dim, const uint64_t *gsz)
{
    Rgpu__ClNDRange m = RGPU__CL_NDRANGE__INIT;

    m.queue = queue;
    m.kernel = kernel;
    m.work_dim = dim;
    m.n_global_size = dim;
    m.global_size = (uint64_t *)gsz;
    return send_frame(s, RGPU__MSG_TYPE__MSG_CL_NDRANGE, &m.base, NULL, 0);
}

static uint64_t op_marker(sess_t *s, uint64_t queue, uint64_t event, const uint64_t *wait, size_t n_wait)
{
    Rgpu__ClMarker m = RGPU__CL_MARKER__INIT;

    m.queue = queue;
    m.event = event;
    m.wait = (uint64_t *)wait;
    m.n_wait = n_wait;
    return send_frame(s, RGPU__MSG_TYPE__MSG_CL_MARKER, &m.base, NULL, 0);
}

static uint64_t op_write(sess_t *s, uint64_t queue, uint64_t mem, uint64_t offset, const void *data, uint64_t size)
{
    Rgpu__ClWriteBuffer m = RGPU__CL_WRITE_BUFFER__INIT;

    m.queue = queue;
    m.mem = mem;
    m.offset = offset;
    m.size = size;
    return send_frame(s, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &m.base, data, size);
}

/* Sends a ClStatusReply request (finish, wait) and waits: 1 with *err set,
 * 0 timeout, -1 the session ended. */
static int status_call(sess_t *s, uint16_t type, const ProtobufCMessage *msg, int timeout_ms, int32_t *err)
{
    uint64_t seq = send_frame(s, type, msg, NULL, 0);
    Rgpu__ClStatusReply *r;
    frame_t f;
    int rc;

    if (!seq)
        return -1;
    rc = wait_reply(s, seq, timeout_ms, &f);
    if (rc != 1)
        return rc;
    r = rgpu__cl_status_reply__unpack(NULL, f.hdr.body_len, f.body);
    *err = r ? r->cl_error : -9999;
    if (r)
        rgpu__cl_status_reply__free_unpacked(r, NULL);
    frame_free(&f);
    return 1;
}

static int op_finish(sess_t *s, uint64_t queue, int timeout_ms, int32_t *err)
{
    Rgpu__ClQueueOp m = RGPU__CL_QUEUE_OP__INIT;

    m.queue = queue;
    return status_call(s, RGPU__MSG_TYPE__MSG_CL_FINISH, &m.base, timeout_ms, err);
}

/* A blocking read: 1 with *err (and out filled on success), 0, -1. */
static int op_read(sess_t *s, uint64_t queue, uint64_t mem, uint64_t offset, uint64_t size, void *out, int32_t *err)
{
    Rgpu__ClReadBuffer m = RGPU__CL_READ_BUFFER__INIT;
    Rgpu__ClReadReply *r;
    uint64_t seq;
    frame_t f;
    int rc;

    m.queue = queue;
    m.mem = mem;
    m.offset = offset;
    m.size = size;
    m.blocking = 1;
    seq = send_frame(s, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &m.base, NULL, 0);
    rc = seq ? wait_reply(s, seq, T_REPLY, &f) : -1;
    if (rc != 1)
        return rc;
    r = rgpu__cl_read_reply__unpack(NULL, f.hdr.body_len, f.body);
    *err = r ? r->cl_error : -9999;
    if (r)
        rgpu__cl_read_reply__free_unpacked(r, NULL);
    if (*err == CL_SUCCESS) {
        if (f.hdr.bulk_len != size || !f.bulk)
            *err = -9998;     /* a success without the data */
        else
            memcpy(out, f.bulk, size);
    }
    frame_free(&f);
    return 1;
}

/* ClBufferRect with 3-value origins and region. */
static void rect_fill(Rgpu__ClBufferRect *m, uint64_t bo[3], uint64_t ho[3], uint64_t rg[3])
{
    m->n_buffer_origin = m->n_host_origin = m->n_region = 3;
    m->buffer_origin = bo;
    m->host_origin = ho;
    m->region = rg;
}

/* ---- server-side observations --------------------------------------- */

/* VmRSS of --server-pid in KiB, or -1. */
static long server_rss_kib(void)
{
    char path[64], line[256];
    long kib = -1;
    FILE *fp;

    if (server_pid <= 0)
        return -1;
    snprintf(path, sizeof(path), "/proc/%d/status", server_pid);
    if (!(fp = fopen(path, "r")))
        return -1;
    while (fgets(line, sizeof(line), fp)) {
        if (sscanf(line, "VmRSS: %ld", &kib) == 1)
            break;
    }
    fclose(fp);
    return kib;
}

/* One unlabeled metric from --metrics (HTTP GET /metrics): 0, or -1. */
static int metric_get(const char *name, double *value)
{
    sess_t m = {.fd = -1};
    static char buf[1 << 16];
    size_t len = 0;
    const char *req = "GET /metrics HTTP/1.0\r\nHost: rgpu\r\n\r\n";
    int64_t deadline = now_ms() + 5000;
    char *line;

    if (!metrics_addr || (m.fd = tcp_connect(metrics_addr)) < 0)
        return -1;
    if (send_all(&m, req, strlen(req), deadline) != 1) {
        sess_close(&m);
        return -1;
    }
    while (len < sizeof(buf) - 1) {
        struct pollfd pfd = {m.fd, POLLIN, 0};
        ssize_t n;

        if (poll(&pfd, 1, left_ms(deadline)) == 0)
            break;
        n = recv(m.fd, buf + len, sizeof(buf) - 1 - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    sess_close(&m);
    buf[len] = '\0';
    for (line = strtok(buf, "\r\n"); line; line = strtok(NULL, "\r\n")) {
        size_t nl = strlen(name);
        if (strncmp(line, name, nl) == 0 && line[nl] == ' ') {
            *value = strtod(line + nl + 1, NULL);
            return 0;
        }
    }
    return -1;
}

/* ---- results -------------------------------------------------------- */

typedef struct {
    int failed;
    char msg[2048];
} result_t;

static void note(result_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(result_t *r, const char *fmt, ...)
{
    size_t len = strlen(r->msg);
    va_list ap;

    if (len && len < sizeof(r->msg) - 2) {
        r->msg[len++] = ';';
        r->msg[len++] = ' ';
        r->msg[len] = '\0';
    }
    va_start(ap, fmt);
    vsnprintf(r->msg + len, sizeof(r->msg) - len, fmt, ap);
    va_end(ap);
}

#define FAILF(r, ...)                                                                                                \
    do {                                                                                                             \
        (r)->failed = 1;                                                                                             \
        note((r), __VA_ARGS__);                                                                                      \
    } while (0)

/* Opens a session or fails the attack. */
#define OPEN_OR_FAIL(s, base, r)                                                                                     \
    do {                                                                                                             \
        char why_[400];                                                                                              \
        if (sess_open((s), (base), why_, sizeof(why_)) != 0) {                                                       \
            FAILF((r), "cannot open a session: %s", why_);                                                           \
            return;                                                                                                  \
        }                                                                                                            \
    } while (0)

/* A sync point that must work; otherwise the attack fails with how. */
static int sync_or_fail(sess_t *s, result_t *r, const char *when)
{
    char how[400];
    int rc = sess_ping(s, T_REPLY);

    if (rc == 1)
        return 0;
    FAILF(r, "%s: ping %s", when, rc == 0 ? "got no pong within the deadline" : ended_how(s, how, sizeof(how)));
    return -1;
}

/* ---- the attacks ---------------------------------------------------- */

static const char *k_global_src = "__kernel void k(__global int *p) { p[0] = 1; }\n";

/*
 * arg-pointer: 8 raw bytes (0x4141414141414141) as the value of a __global
 * pointer argument, then a launch and a finish. The server passes the bytes
 * to clSetKernelArg, the platform takes them for a cl_mem and dereferences
 * them. Correct: the argument is refused (AsyncError for the set or the
 * launch, or an error at the finish), or the session is ended; and the
 * server lives on.
 */
static void attack_arg_pointer(result_t *r)
{
    static const char *srcs[] = {
        "__kernel void k(__global int *p) { p[0] = 1; }\n",
        "__kernel void k(__constant int *c, __global int *o) { o[0] = c[0]; }\n",
    };
    static const char *names[] = {"__global", "__constant"};

    for (int v = 0; v < 2; v++) {
        sess_t s;
        uint8_t bad[8];
        uint64_t ctx, q, prog, k, kseq, aseq, nseq, one = 1;
        int32_t err = 0;
        int rc;
        char why[400], how[400];

        OPEN_OR_FAIL(&s, 1, r);
        memset(bad, 0x41, sizeof(bad));
        ctx = op_context(&s, NULL);
        q = op_queue(&s, ctx, NULL);
        prog = op_program_built(&s, ctx, srcs[v], why, sizeof(why));
        if (!prog) {
            FAILF(r, "%s", why);
            sess_close(&s);
            return;
        }
        k = op_kernel(&s, prog, "k", &kseq);
        aseq = op_arg_value(&s, k, 0, bad, sizeof(bad));
        if (v == 1) {
            /* The second argument is legitimate: a real buffer. */
            uint64_t out = op_buffer(&s, ctx, 64, NULL, NULL);
            op_arg_mem(&s, k, 1, out);
        }
        nseq = op_ndrange(&s, q, k, 1, &one);
        rc = op_finish(&s, q, T_REPLY, &err);
        if (async_err(&s, kseq)) {
            FAILF(r, "%s: clCreateKernel failed (%d): harness problem", names[v], async_err(&s, kseq));
        } else if (async_err(&s, aseq)) {
            note(r, "%s: clSetKernelArg refused with %d", names[v], async_err(&s, aseq));
        } else if (async_err(&s, nseq)) {
            note(r, "%s: the launch was refused with %d", names[v], async_err(&s, nseq));
        } else if (rc == 1 && err != CL_SUCCESS) {
            note(r, "%s: clFinish answered %d", names[v], err);
        } else if (rc == 1) {
            FAILF(r, "%s: the server accepted 8 raw bytes as a %s pointer argument, ran the kernel and "
                     "clFinish succeeded", names[v], names[v]);
        } else if (rc == 0) {
            FAILF(r, "%s: clFinish got no reply within %d s after a raw-pointer argument", names[v],
                  T_REPLY / 1000);
        } else {
            note(r, "%s: session ended (%s)", names[v], ended_how(&s, how, sizeof(how)));
        }
        sess_close(&s);
    }
}

/*
 * info-pointer: clGet*Info queries whose value is an OpenCL handle (a
 * pointer in the server's address space). Passing them on tells a tenant
 * where the server's heap is. Correct: every one is refused with an error.
 * CL_CONTEXT_PROPERTIES (which carries the platform handle) may instead
 * answer a list with no pointer-sized value in it.
 */
typedef struct {
    const char *name;
    int kind;
    int obj;       /* index into the ids of the attack */
    uint32_t param;
    int props;     /* a properties list: check its words instead */
} info_case_t;

static void attack_info_pointer(result_t *r)
{
    enum { O_CTX, O_QUEUE, O_MEM, O_SUB, O_PROG, O_KERNEL, O_EVENT, O_N };
    static const info_case_t cases[] = {
        {"CL_MEM_CONTEXT", RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, O_MEM, CL_MEM_CONTEXT, 0},
        {"CL_MEM_ASSOCIATED_MEMOBJECT", RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, O_SUB, CL_MEM_ASSOCIATED_MEMOBJECT, 0},
        {"CL_QUEUE_CONTEXT", RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE, O_QUEUE, CL_QUEUE_CONTEXT, 0},
        {"CL_QUEUE_DEVICE", RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE, O_QUEUE, CL_QUEUE_DEVICE, 0},
        {"CL_EVENT_COMMAND_QUEUE", RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT, O_EVENT, CL_EVENT_COMMAND_QUEUE, 0},
        {"CL_EVENT_CONTEXT", RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT, O_EVENT, CL_EVENT_CONTEXT, 0},
        {"CL_KERNEL_PROGRAM", RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL, O_KERNEL, CL_KERNEL_PROGRAM, 0},
        {"CL_KERNEL_CONTEXT", RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL, O_KERNEL, CL_KERNEL_CONTEXT, 0},
        {"CL_PROGRAM_CONTEXT", RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM, O_PROG, CL_PROGRAM_CONTEXT, 0},
        {"CL_PROGRAM_DEVICES", RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM, O_PROG, CL_PROGRAM_DEVICES, 0},
        {"CL_CONTEXT_DEVICES", RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT, O_CTX, CL_CONTEXT_DEVICES, 0},
        {"CL_CONTEXT_PROPERTIES", RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT, O_CTX, CL_CONTEXT_PROPERTIES, 1},
    };
    uint64_t ids[O_N];
    sess_t s;
    char why[400], how[400];
    int refused = 0;

    OPEN_OR_FAIL(&s, 1, r);
    ids[O_CTX] = op_context(&s, NULL);
    ids[O_QUEUE] = op_queue(&s, ids[O_CTX], NULL);
    ids[O_MEM] = op_buffer(&s, ids[O_CTX], 4096, NULL, NULL);
    ids[O_SUB] = op_sub_buffer(&s, ids[O_MEM], 0, 1024, NULL);
    ids[O_PROG] = op_program_built(&s, ids[O_CTX], k_global_src, why, sizeof(why));
    if (!ids[O_PROG]) {
        FAILF(r, "%s", why);
        sess_close(&s);
        return;
    }
    ids[O_KERNEL] = op_kernel(&s, ids[O_PROG], "k", NULL);
    ids[O_EVENT] = s.next_id++;
    op_marker(&s, ids[O_QUEUE], ids[O_EVENT], NULL, 0);
    if (sync_or_fail(&s, r, "creating the objects") != 0) {
        sess_close(&s);
        return;
    }
    if (s.n_aerr) {
        FAILF(r, "creating the objects failed (AsyncError %d: %s): harness problem", s.aerr[0].err, s.aerr[0].what);
        sess_close(&s);
        return;
    }
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const info_case_t *c = &cases[i];
        Rgpu__ClGetInfo m = RGPU__CL_GET_INFO__INIT;
        Rgpu__ClInfoReply *reply;
        uint64_t seq;
        frame_t f;
        int rc;

        m.kind = (Rgpu__ClObjectKind)c->kind;
        m.id = ids[c->obj];
        m.param = c->param;
        m.which = RGPU__CL_INFO_WHICH__CL_INFO_OBJECT;
        seq = send_frame(&s, RGPU__MSG_TYPE__MSG_CL_GET_INFO, &m.base, NULL, 0);
        rc = seq ? wait_reply(&s, seq, T_REPLY, &f) : -1;
        if (rc != 1) {
            FAILF(r, "%s: %s", c->name, rc == 0 ? "no reply within the deadline" : ended_how(&s, how, sizeof(how)));
            break;
        }
        reply = rgpu__cl_info_reply__unpack(NULL, f.hdr.body_len, f.body);
        frame_free(&f);
        if (!reply) {
            FAILF(r, "%s: the reply is not a ClInfoReply", c->name);
            continue;
        }
        if (reply->cl_error != CL_SUCCESS) {
            refused++;
        } else if (c->props) {
            /* Every word of the list must be a small number (keys, flags). */
            int leak = 0;
            for (size_t at = 0; at + 8 <= reply->value.len; at += 8) {
                uint64_t w;
                memcpy(&w, reply->value.data + at, 8);
                if (w > 0xffffffffull)
                    leak = 1;
            }
            if (leak)
                FAILF(r, "%s answered %zu bytes holding a pointer-sized value (the server's platform handle)",
                      c->name, reply->value.len);
            else
                refused++;
        } else {
            uint64_t w = 0;
            memcpy(&w, reply->value.data, reply->value.len < 8 ? reply->value.len : 8);
            FAILF(r, "%s answered %zu bytes (0x%llx: the server's own handle) instead of an error", c->name,
                  reply->value.len, (unsigned long long)w);
        }
        rgpu__cl_info_reply__free_unpacked(reply, NULL);
    }
    if (!r->failed)
        note(r, "all %d handle-valued queries refused", refused);
    sess_close(&s);
}

/*
 * subbuf-rect: rect copies, writes and reads where a side is a sub-buffer
 * (PoCL 3.1 reads a NULL pointer there). Correct: the data comes out right,
 * or the call fails cleanly; the server lives on.
 */
#define SB_SIZE 65536
#define SB_ORIGIN 4096
#define SB_SUB 8192

static void attack_subbuf_rect(result_t *r)
{
    static uint8_t model_p[SB_SIZE], model_d[SB_SIZE], got[SB_SIZE];
    sess_t s;
    uint64_t ctx, q, p, d, sub;
    int32_t err;
    int rc;
    char how[400];

    for (int i = 0; i < SB_SIZE; i++)
        model_p[i] = (uint8_t)(i * 7 + 3);
    memset(model_d, 0, sizeof(model_d));
    OPEN_OR_FAIL(&s, 1, r);
    ctx = op_context(&s, NULL);
    q = op_queue(&s, ctx, NULL);
    p = op_buffer(&s, ctx, SB_SIZE, model_p, NULL);
    d = op_buffer(&s, ctx, SB_SIZE, model_d, NULL);
    sub = op_sub_buffer(&s, p, SB_ORIGIN, SB_SUB, NULL);
    if (sync_or_fail(&s, r, "creating the buffers") != 0 || s.n_aerr) {
        if (s.n_aerr)
            FAILF(r, "creating the buffers failed (%d: %s): harness problem", s.aerr[0].err, s.aerr[0].what);
        sess_close(&s);
        return;
    }

    for (int step = 0; step < 4 && !r->failed; step++) {
        Rgpu__ClBufferRect m = RGPU__CL_BUFFER_RECT__INIT;
        uint64_t bo[3] = {0}, ho[3] = {0}, rg[3] = {1, 1, 1}, seq = 0;
        uint8_t data[64];
        const char *what;
        uint8_t *model = model_p;
        uint64_t check = p;

        m.queue = q;
        rect_fill(&m, bo, ho, rg);
        if (step == 0) {
            /* sub -> d: rows of 32 bytes from sub (row pitch 256) into d (row pitch 128). */
            what = "CopyBufferRect from a sub-buffer";
            m.mem = sub;
            m.dst = d;
            bo[0] = 16, bo[1] = 2;
            ho[0] = 8, ho[1] = 1;
            rg[0] = 32, rg[1] = 4;
            m.buffer_row_pitch = 256;
            m.host_row_pitch = 128;
            seq = send_frame(&s, RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER_RECT, &m.base, NULL, 0);
            rc = op_finish(&s, q, T_REPLY, &err);
            model = model_d;
            check = d;
            if (rc == 1 && !async_err(&s, seq) && err == CL_SUCCESS) {
                for (int row = 0; row < 4; row++)
                    memcpy(model_d + (1 + row) * 128 + 8, model_p + SB_ORIGIN + (2 + row) * 256 + 16, 32);
            }
        } else if (step == 1) {
            /* d -> sub. */
            what = "CopyBufferRect into a sub-buffer";
            m.mem = d;
            m.dst = sub;
            bo[0] = 0, bo[1] = 0;
            ho[0] = 40, ho[1] = 3;
            rg[0] = 48, rg[1] = 5;
            m.buffer_row_pitch = 128;
            m.host_row_pitch = 512;
            seq = send_frame(&s, RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER_RECT, &m.base, NULL, 0);
            rc = op_finish(&s, q, T_REPLY, &err);
            if (rc == 1 && !async_err(&s, seq) && err == CL_SUCCESS) {
                for (int row = 0; row < 5; row++)
                    memcpy(model_p + SB_ORIGIN + (3 + row) * 512 + 40, model_d + row * 128, 48);
            }
        } else if (step == 2) {
            /* host -> sub. */
            what = "WriteBufferRect into a sub-buffer";
            for (int i = 0; i < 32; i++)
                data[i] = (uint8_t)(0xe0 + i);
            m.mem = sub;
            bo[0] = 4, bo[1] = 3;
            rg[0] = 16, rg[1] = 2;
            m.buffer_row_pitch = 64;
            seq = send_frame(&s, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER_RECT, &m.base, data, 32);
            rc = op_finish(&s, q, T_REPLY, &err);
            if (rc == 1 && !async_err(&s, seq) && err == CL_SUCCESS) {
                for (int row = 0; row < 2; row++)
                    memcpy(model_p + SB_ORIGIN + (3 + row) * 64 + 4, data + row * 16, 16);
            }
        } else {
            /* sub -> host. */
            Rgpu__ClReadReply *reply;
            frame_t f;

            what = "ReadBufferRect from a sub-buffer";
            m.mem = sub;
            m.blocking = 1;
            bo[0] = 0, bo[1] = 1;
            rg[0] = 8, rg[1] = 3;
            m.buffer_row_pitch = 32;
            seq = send_frame(&s, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER_RECT, &m.base, NULL, 0);
            rc = seq ? wait_reply(&s, seq, T_REPLY, &f) : -1;
            if (rc != 1) {
                FAILF(r, "%s: %s", what, rc == 0 ? "no reply within the deadline" : ended_how(&s, how, sizeof(how)));
                break;
            }
            reply = rgpu__cl_read_reply__unpack(NULL, f.hdr.body_len, f.body);
            err = reply ? reply->cl_error : -9999;
            if (reply)
                rgpu__cl_read_reply__free_unpacked(reply, NULL);
            if (err != CL_SUCCESS) {
                note(r, "%s: clean error %d", what, err);
            } else if (f.hdr.bulk_len != 24 || !f.bulk) {
                FAILF(r, "%s: success with %llu bytes of data, expected 24", what,
                      (unsigned long long)f.hdr.bulk_len);
            } else {
                int bad = 0;
                for (int row = 0; row < 3; row++)
                    bad |= memcmp(f.bulk + row * 8, model_p + SB_ORIGIN + (1 + row) * 32, 8) != 0;
                if (bad)
                    FAILF(r, "%s: wrong data", what);
                else
                    note(r, "%s: data right", what);
            }
            frame_free(&f);
            continue;
        }
        if (rc != 1) {
            FAILF(r, "%s: the finish after it: %s", what,
                  rc == 0 ? "no reply within the deadline" : ended_how(&s, how, sizeof(how)));
            break;
        }
        if (async_err(&s, seq) || err != CL_SUCCESS) {
            note(r, "%s: clean error %d", what, async_err(&s, seq) ? async_err(&s, seq) : err);
            continue;
        }
        rc = op_read(&s, q, check, 0, SB_SIZE, got, &err);
        if (rc != 1 || err != CL_SUCCESS) {
            FAILF(r, "%s: reading the result back: %s", what,
                  rc == 1 ? "error" : rc == 0 ? "no reply" : ended_how(&s, how, sizeof(how)));
            break;
        }
        if (memcmp(got, model, SB_SIZE) != 0) {
            int at = 0;
            while (got[at] == model[at])
                at++;
            FAILF(r, "%s: wrong data (first difference at byte %d: got %u, expected %u)", what, at, got[at],
                  model[at]);
        } else {
            note(r, "%s: data right", what);
        }
    }
    sess_close(&s);
}

/*
 * wait-forever: a call that waits on a user event the client never sets,
 * then the client disconnects without waiting for the reply. Variants:
 * ClWaitEvents; ClFinish behind a marker waiting on the event; a blocking
 * ReadBuffer waiting on it. Correct: the server notices the client is gone
 * and frees the session. Each session holds a marker buffer (16, 32 or 64
 * MiB); rgpu_server_buffer_bytes must drop by all three within a deadline.
 */
static void attack_wait_forever(result_t *r)
{
    static const char *names[] = {"ClWaitEvents", "ClFinish behind a marker", "blocking ReadBuffer"};
    sess_t s[3];
    double base = 0, held = 0, now = 0;
    int64_t deadline;
    int leaked = 0;

    if (metric_get("rgpu_server_buffer_bytes", &base) != 0) {
        FAILF(r, "needs --metrics HOST:PORT (the server's metrics address) to see sessions freed");
        return;
    }
    for (int v = 0; v < 3; v++) {
        uint64_t ctx, q, ev, buf, one = 0;
        uint64_t marker = (16 * MIB) << v;

        if (!(variants & (1 << v))) {
            s[v].fd = -1;
            continue;
        }
        frame_t f;
        char how[400];

        OPEN_OR_FAIL(&s[v], 1, r);
        ctx = op_context(&s[v], NULL);
        q = op_queue(&s[v], ctx, NULL);
        buf = op_buffer(&s[v], ctx, marker, NULL, NULL);
        ev = op_user_event(&s[v], ctx);
        if (sync_or_fail(&s[v], r, "creating the objects") != 0)
            return;
        if (s[v].n_aerr) {
            FAILF(r, "creating the objects failed (%d: %s): harness problem", s[v].aerr[0].err, s[v].aerr[0].what);
            return;
        }
        if (v == 0) {
            Rgpu__ClWaitEvents m = RGPU__CL_WAIT_EVENTS__INIT;
            m.n_events = 1;
            m.events = &ev;
            send_frame(&s[v], RGPU__MSG_TYPE__MSG_CL_WAIT_EVENTS, &m.base, NULL, 0);
        } else if (v == 1) {
            Rgpu__ClQueueOp m = RGPU__CL_QUEUE_OP__INIT;
            op_marker(&s[v], q, 0, &ev, 1);
            m.queue = q;
            send_frame(&s[v], RGPU__MSG_TYPE__MSG_CL_FINISH, &m.base, NULL, 0);
        } else {
            Rgpu__ClReadBuffer m = RGPU__CL_READ_BUFFER__INIT;
            m.queue = q;
            m.mem = buf;
            m.size = 4096;
            m.blocking = 1;
            m.n_wait = 1;
            m.wait = &ev;
            send_frame(&s[v], RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &m.base, NULL, 0);
        }
        (void)one;
        /* Give it a moment to answer at once (a refusal is fine too); it
         * must not end the session for this. */
        if (next_frame(&s[v], 300, &f) == 1) {
            frame_free(&f);
            if (s[v].session_error)
                note(r, "%s: SessionError %d (%s)", names[v], s[v].se_status, ended_how(&s[v], how, sizeof(how)));
        }
    }
    if (metric_get("rgpu_server_buffer_bytes", &held) != 0) {
        FAILF(r, "cannot read rgpu_server_buffer_bytes");
        return;
    }
    if (held - base < (variants & 1 ? 12 : 0) * MIB + (variants & 2 ? 24 : 0) * MIB + (variants & 4 ? 48 : 0) * MIB) {
        FAILF(r, "rgpu_server_buffer_bytes grew by only %.0f bytes with the marker buffers: harness problem",
              held - base);
        return;
    }
    for (int v = 0; v < 3; v++)
        sess_close(&s[v]);
    deadline = now_ms() + 15000;
    do {
        struct timespec ts = {0, 100 * 1000 * 1000};
        if (metric_get("rgpu_server_buffer_bytes", &now) != 0) {
            FAILF(r, "after the clients left, rgpu_server_buffer_bytes can no longer be read (did the server "
                     "die tearing the sessions down?)");
            return;
        }
        if (now - base < 8 * MIB)
            break;
        nanosleep(&ts, NULL);
    } while (now_ms() < deadline);
    /* What is left, in units of 16 MiB: bit v is variant v's marker. */
    leaked = (int)((now - base + 8.0 * MIB) / (16.0 * MIB));
    for (int v = 0; v < 3; v++) {
        if (!(variants & (1 << v)))
            continue;
        if (leaked & (1 << v))
            FAILF(r, "%s on a never-set user event: 15 s after the client closed, the session still holds its "
                     "%llu MiB buffer (never freed)", names[v], (unsigned long long)(16 << v));
        else
            note(r, "%s: session freed after the client left", names[v]);
    }
}

/*
 * user-event-fail: commands that want no event of their own (a marker, a
 * copy) waiting on a user event, which the client then sets to an error
 * status. PoCL 3.1 aborts the whole process when a failed user event fails
 * an event-less command (PTHREAD ERROR in pocl_update_event_failed), and
 * the server's teardown fails pending user events the same way when a
 * client leaves. Correct: the server lives; the finish answers (an error
 * is fine).
 */
static void attack_user_event_fail(result_t *r)
{
    sess_t s;
    uint64_t ctx, q, ev, a, b, sseq;
    uint8_t x[64] = {0};
    int32_t err = 0;
    int rc;
    char how[400];

    OPEN_OR_FAIL(&s, 1, r);
    ctx = op_context(&s, NULL);
    q = op_queue(&s, ctx, NULL);
    a = op_buffer(&s, ctx, sizeof(x), x, NULL);
    b = op_buffer(&s, ctx, sizeof(x), x, NULL);
    ev = op_user_event(&s, ctx);
    if (sync_or_fail(&s, r, "creating the objects") != 0) {
        sess_close(&s);
        return;
    }
    op_marker(&s, q, 0, &ev, 1);
    {
        Rgpu__ClCopyBuffer cp = RGPU__CL_COPY_BUFFER__INIT;
        cp.queue = q;
        cp.src = a;
        cp.dst = b;
        cp.size = sizeof(x);
        cp.wait = &ev;
        cp.n_wait = 1;
        send_frame(&s, RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER, &cp.base, NULL, 0);
    }
    if (sync_or_fail(&s, r, "enqueueing behind the user event") != 0) {
        sess_close(&s);
        return;
    }
    sseq = op_set_user_event(&s, ev, CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
    rc = op_finish(&s, q, T_REPLY, &err);
    if (rc == 1)
        note(r, "set to an error status (%d); clFinish answered %d", async_err(&s, sseq), err);
    else if (rc == 0)
        FAILF(r, "clFinish got no reply within %d s after the user event failed", T_REPLY / 1000);
    else
        note(r, "session ended: %s", ended_how(&s, how, sizeof(how)));
    sess_close(&s);
}

/*
 * wait-then-set: on one connection, a call waiting on a user event, then
 * (without waiting for its reply) the ClSetUserEventStatus(CL_COMPLETE)
 * that completes it. Correct: the reply to the wait arrives (the server
 * must not block the session on the wait). Variants as in wait-forever.
 */
static void attack_wait_then_set(result_t *r)
{
    static const char *names[] = {"ClWaitEvents", "ClFinish behind a marker", "blocking ReadBuffer"};
    sess_t s[3];
    uint64_t wseq[3];
    int64_t deadline;

    for (int v = 0; v < 3; v++) {
        uint64_t ctx, q, ev, buf;

        wseq[v] = 0;
        if (!(variants & (1 << v))) {
            s[v].fd = -1;
            continue;
        }
        OPEN_OR_FAIL(&s[v], 1, r);
        ctx = op_context(&s[v], NULL);
        q = op_queue(&s[v], ctx, NULL);
        buf = op_buffer(&s[v], ctx, 4096, NULL, NULL);
        ev = op_user_event(&s[v], ctx);
        if (sync_or_fail(&s[v], r, "creating the objects") != 0)
            return;
        if (s[v].n_aerr) {
            FAILF(r, "creating the objects failed (%d: %s): harness problem", s[v].aerr[0].err, s[v].aerr[0].what);
            return;
        }
        if (v == 0) {
            Rgpu__ClWaitEvents m = RGPU__CL_WAIT_EVENTS__INIT;
            m.n_events = 1;
            m.events = &ev;
            wseq[v] = send_frame(&s[v], RGPU__MSG_TYPE__MSG_CL_WAIT_EVENTS, &m.base, NULL, 0);
        } else if (v == 1) {
            Rgpu__ClQueueOp m = RGPU__CL_QUEUE_OP__INIT;
            op_marker(&s[v], q, 0, &ev, 1);
            m.queue = q;
            wseq[v] = send_frame(&s[v], RGPU__MSG_TYPE__MSG_CL_FINISH, &m.base, NULL, 0);
        } else {
            Rgpu__ClReadBuffer m = RGPU__CL_READ_BUFFER__INIT;
            m.queue = q;
            m.mem = buf;
            m.size = 4096;
            m.blocking = 1;
            m.n_wait = 1;
            m.wait = &ev;
            wseq[v] = send_frame(&s[v], RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &m.base, NULL, 0);
        }
        op_set_user_event(&s[v], ev, CL_COMPLETE);
    }
    deadline = now_ms() + 10000;
    for (int v = 0; v < 3; v++) {
        frame_t f;
        char how[400];
        int rc;

        if (!(variants & (1 << v)))
            continue;
        rc = wseq[v] ? wait_reply(&s[v], wseq[v], left_ms(deadline), &f) : -1;

        if (rc == 1) {
            int32_t err = -9999;
            if (f.hdr.type == RGPU__MSG_TYPE__MSG_CL_STATUS_REPLY) {
                Rgpu__ClStatusReply *m = rgpu__cl_status_reply__unpack(NULL, f.hdr.body_len, f.body);
                if (m) {
                    err = m->cl_error;
                    rgpu__cl_status_reply__free_unpacked(m, NULL);
                }
            } else if (f.hdr.type == RGPU__MSG_TYPE__MSG_CL_READ_REPLY) {
                Rgpu__ClReadReply *m = rgpu__cl_read_reply__unpack(NULL, f.hdr.body_len, f.body);
                if (m) {
                    err = m->cl_error;
                    rgpu__cl_read_reply__free_unpacked(m, NULL);
                }
            }
            note(r, "%s: answered (%d) once the event was set", names[v], err);
            frame_free(&f);
        } else if (rc == 0) {
            FAILF(r, "%s then ClSetUserEventStatus on the same connection: no reply within 10 s (the session "
                     "thread blocks in the wait and never reads the set: deadlock)", names[v]);
        } else {
            FAILF(r, "%s then set: %s", names[v], ended_how(&s[v], how, sizeof(how)));
        }
        sess_close(&s[v]);
    }
}

/* Waits up to timeout_ms for the session to be ended by the server
 * (SessionError or close), or for an error frame about seq: returns a
 * description in how, 1 when it came, 0 when nothing did. */
static int refused_within(sess_t *s, uint64_t seq, int timeout_ms, char *how, size_t cap)
{
    int64_t deadline = now_ms() + timeout_ms;

    for (;;) {
        frame_t f;
        int rc;

        if (s->closed || s->session_error) {
            ended_how(s, how, cap);
            return 1;
        }
        if (seq && async_err(s, seq)) {
            snprintf(how, cap, "AsyncError %d", async_err(s, seq));
            return 1;
        }
        rc = next_frame(s, left_ms(deadline), &f);
        if (rc == 0 && !s->closed && !s->session_error)
            return 0;
        if (rc == 1 && seq && f.hdr.seq == seq && f.hdr.type != RGPU__MSG_TYPE__MSG_ASYNC_ERROR) {
            /* A reply (binary reply, status): its cl_error is field 1 in all of them. */
            Rgpu__ClStatusReply *m = rgpu__cl_status_reply__unpack(NULL, f.hdr.body_len, f.body);
            snprintf(how, cap, "reply type %u with error %d", f.hdr.type, m ? m->cl_error : -9999);
            if (m)
                rgpu__cl_status_reply__free_unpacked(m, NULL);
            frame_free(&f);
            return 1;
        }
        if (rc == 1)
            frame_free(&f);
    }
}

/*
 * prehello-body: before any hello, on 8 connections, a frame header
 * announcing a 60 MiB body, then 8 MiB of it. Correct: the server refuses
 * large unauthenticated bodies at once (SessionError or close), so no
 * stranger can make it hold 8 x 60 MiB; with --server-pid its VmRSS must
 * not grow by more than 16 MiB.
 */
static void attack_prehello_body(result_t *r)
{
    enum { N = 8 };
    sess_t s[N];
    long rss0 = server_rss_kib(), rss1;
    int64_t send_deadline = now_ms() + T_REFUSE;   /* for all the bodies together */
    int refused = 0;

    for (int i = 0; i < N; i++) {
        uint8_t head[RGPU_FRAME_HEADER_SIZE];
        rgpu_frame_header_t h = {RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_HELLO, 0, 60 * MIB, 1, 0};

        memset(&s[i], 0, sizeof(s[i]));
        s[i].fd = tcp_connect(server_addr);
        if (s[i].fd < 0) {
            FAILF(r, "connection %d: cannot connect: %s", i, strerror(errno));
            for (int j = 0; j < i; j++)
                sess_close(&s[j]);
            return;
        }
        rgpu_frame_header_encode(&h, head);
        if (send_all(&s[i], head, sizeof(head), now_ms() + T_REPLY) == 1) {
            /* 8 MiB of the body; the server may stop reading (timeout) or close. */
            static const uint8_t zeros[1 << 16];
            for (uint64_t sent = 0; sent < 8 * MIB; sent += sizeof(zeros))
                if (send_all(&s[i], zeros, sizeof(zeros), send_deadline) != 1)
                    break;
        }
    }
    rss1 = server_rss_kib();
    send_deadline = now_ms() + T_REFUSE;
    for (int i = 0; i < N; i++) {
        char how[400];
        if (refused_within(&s[i], 0, left_ms(send_deadline), how, sizeof(how)))
            refused++;
    }
    if (refused < N)
        FAILF(r, "%d of %d connections announcing a 60 MiB pre-hello body were still open %d s later (the server "
                 "waits for the body instead of refusing it)", N - refused, N, T_REFUSE / 1000);
    else
        note(r, "all %d refused", N);
    if (rss0 > 0 && rss1 > 0) {
        if (rss1 - rss0 > 16 * 1024)
            FAILF(r, "server VmRSS grew by %ld MiB while %d strangers sent 8 MiB each of a 60 MiB hello", (rss1 - rss0) / 1024,
                  N);
        else
            note(r, "server VmRSS grew by %ld KiB", rss1 - rss0);
    }
    for (int i = 0; i < N; i++)
        sess_close(&s[i]);
}

/*
 * bulk-to-nothing: after hello, calls announcing 1 GiB of bulk to objects
 * that do not exist (or cannot take it), then 16 MiB of that bulk. Correct:
 * the server refuses before receiving (an error for the call, or a
 * SessionError / close) within 5 s, and does not allocate the GiB (with
 * --server-pid: VmRSS grows by at most 16 MiB over all variants).
 */
static void attack_bulk_to_nothing(result_t *r)
{
    enum { V = 5 };
    static const char *names[V] = {
        "WriteBuffer to a nonexistent queue and buffer",
        "WriteBuffer past the end of a 4 KiB buffer",
        "WriteBufferRect to a nonexistent buffer",
        "CreateProgramBinary in a nonexistent context",
        "CreateBuffer (with contents) in a nonexistent context",
    };
    sess_t s[V];
    uint64_t seq[V];
    long rss0, rss1;
    int64_t deadline;

    for (int v = 0; v < V; v++) {
        OPEN_OR_FAIL(&s[v], 1, r);
        seq[v] = 0;
    }
    /* Variant 1 gets a real queue and a small buffer. */
    {
        uint64_t ctx = op_context(&s[1], NULL), q = op_queue(&s[1], ctx, NULL);
        op_buffer(&s[1], ctx, 4096, NULL, NULL);
        (void)q;
        if (sync_or_fail(&s[1], r, "creating the objects") != 0)
            return;
    }
    rss0 = server_rss_kib();
    for (int v = 0; v < V; v++) {
        uint64_t rg[3] = {1024, 1024, 1024}, zero[3] = {0, 0, 0};
        uint64_t len = GIB, dev0 = 0;
        uint32_t dev = 0;
        Rgpu__ClWriteBuffer w = RGPU__CL_WRITE_BUFFER__INIT;
        Rgpu__ClBufferRect rect = RGPU__CL_BUFFER_RECT__INIT;
        Rgpu__ClCreateProgramBinary bin = RGPU__CL_CREATE_PROGRAM_BINARY__INIT;
        Rgpu__ClCreateBuffer cb = RGPU__CL_CREATE_BUFFER__INIT;
        const ProtobufCMessage *msg;
        uint16_t type;

        (void)dev0;
        switch (v) {
        case 0:
            w.queue = 999001;
            w.mem = 999002;
            w.size = GIB;
            msg = &w.base;
            type = RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER;
            break;
        case 1:
            w.queue = 2;        /* the ids created above: context 1, queue 2, buffer 3 */
            w.mem = 3;
            w.size = GIB;
            msg = &w.base;
            type = RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER;
            break;
        case 2:
            rect.queue = 999001;
            rect.mem = 999002;
            rect_fill(&rect, zero, zero, rg);
            rect.buffer_row_pitch = 1024;
            rect.buffer_slice_pitch = 1024 * 1024;
            msg = &rect.base;
            type = RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER_RECT;
            break;
        case 3:
            bin.id = 999003;
            bin.context = 999004;
            bin.n_devices = 1;
            bin.devices = &dev;
            bin.n_lengths = 1;
            bin.lengths = &len;
            msg = &bin.base;
            type = RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_BINARY;
            break;
        default:
            cb.id = 999005;
            cb.context = 999004;
            cb.flags = CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR;
            cb.size = GIB;
            msg = &cb.base;
            type = RGPU__MSG_TYPE__MSG_CL_CREATE_BUFFER;
            break;
        }
        /* 16 MiB of the GiB; a server that stops reading makes this time out, which is fine. */
        seq[v] = s[v].seq + 1;
        send_frame_ex(&s[v], type, msg, NULL, 16 * MIB, GIB, T_REFUSE);
    }
    rss1 = server_rss_kib();
    deadline = now_ms() + T_REFUSE;
    for (int v = 0; v < V; v++) {
        char how[400];
        if (refused_within(&s[v], seq[v], left_ms(deadline), how, sizeof(how)))
            note(r, "%s: %s", names[v], how);
        else
            FAILF(r, "%s: no refusal within %d s of announcing 1 GiB of bulk, 16 MiB of it sent (the server "
                     "receives or discards the whole GiB before it answers)", names[v], T_REFUSE / 1000);
    }
    if (rss0 > 0 && rss1 > 0) {
        if (rss1 - rss0 > 16 * 1024)
            FAILF(r, "server VmRSS grew by %ld MiB while receiving 16 MiB of bulk for each of %d nonexistent targets",
                  (rss1 - rss0) / 1024, V);
        else
            note(r, "server VmRSS grew by %ld KiB", rss1 - rss0);
    }
    for (int v = 0; v < V; v++)
        sess_close(&s[v]);
}

/*
 * readrect-huge: ReadBufferRect of a 2^40-byte region (and of a 4 GiB one)
 * on a 4 KiB buffer. Correct: an error reply, without allocating the
 * region first (with --server-pid: VmRSS grows by at most 16 MiB).
 */
static void attack_readrect_huge(result_t *r)
{
    static const uint64_t regions[][3] = {{1ull << 20, 1ull << 20, 1}, {65536, 65536, 1}, {4096, 1, 1ull << 20}};
    sess_t s;
    uint64_t ctx, q, buf;
    long rss0;
    char how[400];

    OPEN_OR_FAIL(&s, 1, r);
    ctx = op_context(&s, NULL);
    q = op_queue(&s, ctx, NULL);
    buf = op_buffer(&s, ctx, 4096, NULL, NULL);
    if (sync_or_fail(&s, r, "creating the objects") != 0) {
        sess_close(&s);
        return;
    }
    rss0 = server_rss_kib();
    for (size_t v = 0; v < sizeof(regions) / sizeof(regions[0]); v++) {
        for (int blocking = 1; blocking >= 0; blocking--) {
            Rgpu__ClBufferRect m = RGPU__CL_BUFFER_RECT__INIT;
            uint64_t bo[3] = {0, 0, 0}, ho[3] = {0, 0, 0}, rg[3];
            Rgpu__ClReadReply *reply;
            uint64_t seq, total;
            frame_t f;
            int rc;
            long rss;

            memcpy(rg, regions[v], sizeof(rg));
            total = rg[0] * rg[1] * rg[2];
            m.queue = q;
            m.mem = buf;
            m.blocking = blocking;
            rect_fill(&m, bo, ho, rg);
            m.buffer_row_pitch = rg[0];
            m.buffer_slice_pitch = rg[0] * rg[1];
            seq = send_frame(&s, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER_RECT, &m.base, NULL, 0);
            rc = seq ? wait_reply(&s, seq, T_REPLY, &f) : -1;
            rss = server_rss_kib();
            if (rc != 1) {
                FAILF(r, "%s read of %llu bytes from a 4 KiB buffer: %s", blocking ? "blocking" : "non-blocking",
                      (unsigned long long)total, rc == 0 ? "no reply" : ended_how(&s, how, sizeof(how)));
                sess_close(&s);
                return;
            }
            reply = rgpu__cl_read_reply__unpack(NULL, f.hdr.body_len, f.body);
            if (!reply || reply->cl_error == CL_SUCCESS || f.hdr.bulk_len)
                FAILF(r, "%s read of %llu bytes from a 4 KiB buffer: answered error %d with %llu bytes",
                      blocking ? "blocking" : "non-blocking", (unsigned long long)total,
                      reply ? reply->cl_error : -9999, (unsigned long long)f.hdr.bulk_len);
            else
                note(r, "%llu bytes (%s): error %d", (unsigned long long)total, blocking ? "blocking" : "non-blocking",
                     reply->cl_error);
            if (reply)
                rgpu__cl_read_reply__free_unpacked(reply, NULL);
            frame_free(&f);
            if (rss0 > 0 && rss > 0 && rss - rss0 > 16 * 1024)
                FAILF(r, "server VmRSS grew by %ld MiB answering it", (rss - rss0) / 1024);
        }
    }
    sess_close(&s);
}

/*
 * release-twice: every kind of object released twice. Correct: the first
 * release works, the second is an error (AsyncError), nothing crashes, and
 * the session keeps working.
 */
static void attack_release_twice(result_t *r)
{
    static const char *kinds[] = {"", "context", "queue", "buffer", "program", "kernel", "event"};
    sess_t s;
    uint64_t ctx, q, buf, sub, prog, k, ev, seq1, seq2;
    struct {
        int kind;
        uint64_t id;
    } order[7];
    char why[400];
    uint8_t data[256], got[256];
    int32_t err;
    int n = 0;

    OPEN_OR_FAIL(&s, 1, r);
    ctx = op_context(&s, NULL);
    q = op_queue(&s, ctx, NULL);
    buf = op_buffer(&s, ctx, 4096, NULL, NULL);
    sub = op_sub_buffer(&s, buf, 0, 1024, NULL);
    prog = op_program_built(&s, ctx, k_global_src, why, sizeof(why));
    if (!prog) {
        FAILF(r, "%s", why);
        sess_close(&s);
        return;
    }
    k = op_kernel(&s, prog, "k", NULL);
    ev = op_user_event(&s, ctx);
    order[n].kind = RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL, order[n++].id = k;
    order[n].kind = RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM, order[n++].id = prog;
    order[n].kind = RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, order[n++].id = sub;
    order[n].kind = RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, order[n++].id = buf;
    order[n].kind = RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT, order[n++].id = ev;
    order[n].kind = RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE, order[n++].id = q;
    order[n].kind = RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT, order[n++].id = ctx;
    op_set_user_event(&s, ev, CL_COMPLETE);
    if (sync_or_fail(&s, r, "creating the objects") != 0 || s.n_aerr) {
        if (s.n_aerr)
            FAILF(r, "creating the objects failed (%d: %s): harness problem", s.aerr[0].err, s.aerr[0].what);
        sess_close(&s);
        return;
    }
    for (int i = 0; i < n; i++) {
        seq1 = op_release(&s, order[i].kind, order[i].id);
        seq2 = op_release(&s, order[i].kind, order[i].id);
        if (sync_or_fail(&s, r, "after releasing twice") != 0) {
            sess_close(&s);
            return;
        }
        if (async_err(&s, seq1))
            FAILF(r, "the first release of a %s failed (%d)", kinds[order[i].kind], async_err(&s, seq1));
        if (!async_err(&s, seq2))
            FAILF(r, "the second release of a %s was accepted", kinds[order[i].kind]);
    }
    /* The session still works: a fresh context, queue and buffer round trip. */
    for (int i = 0; i < (int)sizeof(data); i++)
        data[i] = (uint8_t)(i ^ 0x5a);
    ctx = op_context(&s, NULL);
    q = op_queue(&s, ctx, NULL);
    buf = op_buffer(&s, ctx, sizeof(data), data, NULL);
    if (op_read(&s, q, buf, 0, sizeof(data), got, &err) != 1 || err != CL_SUCCESS || memcmp(got, data, sizeof(data)))
        FAILF(r, "after the double releases the session no longer works");
    if (!r->failed)
        note(r, "%d kinds: first release ok, second refused, session still works", n);
    sess_close(&s);
}

/*
 * stale-memory: one session fills buffers with a pattern and releases them;
 * another session then creates buffers of the same sizes and reads them
 * without writing. The platform's allocator serves both sessions of the
 * one server process, so a fresh buffer can be the memory just freed.
 * Correct: the new buffers read as zeros, never the other tenant's bytes.
 */
static void attack_stale_memory(result_t *r)
{
    static const uint64_t sizes[] = {4096, 65536, 1u << 20, 8u << 20};
    enum { N = sizeof(sizes) / sizeof(sizes[0]) };
    sess_t a, b;
    uint64_t actx, aq, bctx, bq, bufs[N];
    static uint8_t pattern[8u << 20], got[8u << 20];
    int32_t err;

    for (size_t i = 0; i < (8u << 20); i++)
        pattern[i] = (uint8_t)(0xA5 ^ (i * 7));
    OPEN_OR_FAIL(&a, 1, r);
    actx = op_context(&a, NULL);
    aq = op_queue(&a, actx, NULL);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++)
            bufs[i] = op_buffer(&a, actx, sizes[i], pattern, NULL);
        if (sync_or_fail(&a, r, "the first tenant's buffers") != 0)
            break;
        for (int i = 0; i < N; i++)
            op_release(&a, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, bufs[i]);
        if (sync_or_fail(&a, r, "releasing them") != 0)
            break;
    }
    (void)aq;
    sess_close(&a);
    if (r->failed)
        return;

    OPEN_OR_FAIL(&b, 1, r);
    bctx = op_context(&b, NULL);
    bq = op_queue(&b, bctx, NULL);
    for (int i = 0; i < N && !r->failed; i++) {
        uint64_t buf = op_buffer(&b, bctx, sizes[i], NULL, NULL);
        if (op_read(&b, bq, buf, 0, sizes[i], got, &err) != 1 || err != CL_SUCCESS) {
            FAILF(r, "reading a fresh %llu-byte buffer failed (%d)", (unsigned long long)sizes[i], err);
            break;
        }
        for (uint64_t j = 0; j < sizes[i]; j++) {
            if (got[j]) {
                FAILF(r, "a fresh %llu-byte buffer holds non-zero bytes (at %llu: 0x%02x%s)",
                      (unsigned long long)sizes[i], (unsigned long long)j, got[j],
                      got[j] == pattern[j] ? ", the other tenant's pattern" : "");
                break;
            }
        }
    }
    if (!r->failed)
        note(r, "fresh buffers of %d sizes read as zeros after another session freed its pattern", N);
    sess_close(&b);
}

/*
 * stream-data: requests whose data follows them in the stream (how rgpu's
 * client sends large data over TCP). A write of 4 KiB in the stream to a
 * real buffer reads back right. 64 MiB in the stream to a buffer that does
 * not exist: the server refuses the write and drops the data it did not
 * take, or ends the session; it does not hang, and it keeps none of it
 * (with --server-pid: VmRSS grows by at most 16 MiB). 32 GiB announced,
 * past --max-bulk (16 GiB by default): refused before any byte is read,
 * with a SessionError, within 5 s.
 */
/* Opens a session with a context, a queue and a size-byte buffer, synced:
 * 0, or -1 with the attack failed and the session closed. */
static int open_with_buffer(sess_t *s, result_t *r, uint64_t size, uint64_t *q, uint64_t *buf)
{
    char why[400];
    uint64_t ctx;

    if (sess_open(s, 1, why, sizeof(why)) != 0) {
        FAILF(r, "cannot open a session: %s", why);
        return -1;
    }
    ctx = op_context(s, NULL);
    *q = op_queue(s, ctx, NULL);
    *buf = op_buffer(s, ctx, size, NULL, NULL);
    if (sync_or_fail(s, r, "creating the objects") != 0) {
        sess_close(s);
        return -1;
    }
    return 0;
}

static void attack_stream_data(result_t *r)
{
    Rgpu__ClWriteBuffer w = RGPU__CL_WRITE_BUFFER__INIT;
    uint8_t data[4096], got[4096];
    uint64_t q, buf;
    long rss0, rss1;
    char how[400];
    int32_t err;
    sess_t s;

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 11 + 3);
    if (open_with_buffer(&s, r, sizeof(data), &q, &buf) != 0)
        return;
    w.queue = q;
    w.mem = buf;
    w.size = sizeof(data);
    w.blocking = 1;
    if (!send_frame_stream(&s, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &w.base, data, sizeof(data), sizeof(data),
                           T_REPLY) ||
        op_read(&s, q, buf, 0, sizeof(data), got, &err) != 1 || err != CL_SUCCESS) {
        FAILF(r, "a 4 KiB write in the stream, then a read: %s", ended_how(&s, how, sizeof(how)));
        goto out;
    }
    if (memcmp(got, data, sizeof(data)) != 0) {
        FAILF(r, "a 4 KiB write in the stream read back wrong");
        goto out;
    }
    note(r, "a 4 KiB write in the stream read back right");

    rss0 = server_rss_kib();
    w.mem = 999002;
    w.size = 64 * MIB;
    if (!send_frame_stream(&s, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &w.base, NULL, 64 * MIB, 64 * MIB, T_REPLY)) {
        note(r, "64 MiB in the stream to no buffer: the server closed the connection while it was sent");
    } else {
        int rc = sess_ping(&s, T_REPLY);

        if (rc == 0) {
            FAILF(r, "64 MiB in the stream to no buffer: no pong within %d s (server stuck?)", T_REPLY / 1000);
            goto out;
        }
        note(r, "64 MiB in the stream to no buffer: %s", rc == 1 ? "refused, and the session still answers"
                                                              : ended_how(&s, how, sizeof(how)));
    }
    rss1 = server_rss_kib();
    if (rss0 >= 0 && rss1 >= 0 && rss1 - rss0 > 16 * 1024)
        FAILF(r, "the server's VmRSS grew by %ld KiB for data it did not take", rss1 - rss0);
    sess_close(&s);

    if (open_with_buffer(&s, r, sizeof(data), &q, &buf) != 0)
        return;
    w.queue = q;
    w.mem = buf;
    w.size = 32 * GIB;
    if (send_frame_stream(&s, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &w.base, NULL, 0, 32 * GIB, T_REPLY)) {
        frame_t f;
        int64_t deadline = now_ms() + 5000;

        while (!s.closed && !s.session_error && now_ms() < deadline && next_frame(&s, 100, &f) >= 0)
            if (f.hdr.type)
                frame_free(&f);
    }
    if (!s.session_error && !s.closed)
        FAILF(r, "32 GiB announced in the stream (past --max-bulk): not refused within 5 s");
    else
        note(r, "32 GiB announced in the stream: %s", ended_how(&s, how, sizeof(how)));
out:
    sess_close(&s);
}

/*
 * held-memory: a buffer released by the client while a sub-buffer or a
 * kernel argument still refers to it keeps existing (the platform may still
 * use it), so it must keep counting: against the lease's quota, and in
 * rgpu_server_buffer_bytes, until the last holder goes. Otherwise a tenant
 * could hold any amount of memory by releasing parents of 1-byte
 * sub-buffers. Then: a launch after releasing its buffer argument runs on
 * the held buffer (PoCL 3.1 crashed there), and everything goes back to 0.
 *
 * The metric is the whole server's, and the victim's vector_add allocates
 * and frees its 3 x 256 KiB meanwhile, so each reading may be off by up to
 * 768 KiB either way: an 8 MiB buffer counts when the reading is more than
 * half of it over the baseline, and has stopped counting when it is less.
 */
#define HELD_MIN (4 * MIB)
static void attack_held_memory(result_t *r)
{
    sess_t s;
    uint64_t ctx, q, buf, sub, prog, k, buf2;
    double base = 0, v = 0;
    char why[400];
    int32_t err;

    if (!metrics_addr) {
        FAILF(r, "needs --metrics");
        return;
    }
    OPEN_OR_FAIL(&s, 1, r);
    ctx = op_context(&s, NULL);
    q = op_queue(&s, ctx, NULL);
    if (sync_or_fail(&s, r, "the context") != 0 || metric_get("rgpu_server_buffer_bytes", &base) != 0) {
        FAILF(r, "cannot read rgpu_server_buffer_bytes");
        sess_close(&s);
        return;
    }
    buf = op_buffer(&s, ctx, 8 * MIB, NULL, NULL);
    sub = op_sub_buffer(&s, buf, 0, 4096, NULL);
    op_release(&s, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, buf);
    if (sync_or_fail(&s, r, "releasing the parent") != 0 || metric_get("rgpu_server_buffer_bytes", &v) != 0)
        goto out;
    if (v - base < HELD_MIN)
        FAILF(r, "a released parent still held by its sub-buffer stopped counting (%.0f bytes over baseline)",
              v - base);
    op_release(&s, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, sub);
    if (sync_or_fail(&s, r, "releasing the sub-buffer") != 0 || metric_get("rgpu_server_buffer_bytes", &v) != 0)
        goto out;
    if (v - base >= HELD_MIN)
        FAILF(r, "the parent still counts once its sub-buffer is gone");

    prog = op_program_built(&s, ctx, k_global_src, why, sizeof(why));
    if (!prog) {
        FAILF(r, "%s", why);
        goto out;
    }
    k = op_kernel(&s, prog, "k", NULL);
    buf2 = op_buffer(&s, ctx, 8 * MIB, NULL, NULL);
    op_arg_mem(&s, k, 0, buf2);
    op_release(&s, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, buf2);
    if (sync_or_fail(&s, r, "releasing a kernel's buffer argument") != 0 ||
        metric_get("rgpu_server_buffer_bytes", &v) != 0)
        goto out;
    if (v - base < HELD_MIN)
        FAILF(r, "a released buffer still set as a kernel argument stopped counting");
    op_ndrange(&s, q, k, 1, (uint64_t[]){1});
    if (op_finish(&s, q, T_REPLY, &err) != 1)
        FAILF(r, "a launch after releasing its buffer argument: no answer to the finish (server down?)");
    op_release(&s, RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL, k);
    if (sync_or_fail(&s, r, "releasing the kernel") != 0 || metric_get("rgpu_server_buffer_bytes", &v) != 0)
        goto out;
    if (v - base >= HELD_MIN)
        FAILF(r, "the buffer still counts once the kernel holding it is gone");
    if (!r->failed)
        note(r, "released buffers held by a sub-buffer or a kernel argument count until their holder goes; "
                "a launch on a released argument runs");
out:
    sess_close(&s);
}

/* Sends a program (source, optional embedded headers by id and name) and
 * builds (n_headers == 0) or compiles it; returns the reply's error and
 * copies every device's build log into log. -9999: no reply. */
static int32_t build_raw(sess_t *s, uint64_t ctx, const char *src, const char *options, const uint64_t *headers,
                         char **names, size_t n_headers, char *log, size_t log_cap)
{
    Rgpu__ClCreateProgramSource c = RGPU__CL_CREATE_PROGRAM_SOURCE__INIT;
    Rgpu__ClBuildProgram b = RGPU__CL_BUILD_PROGRAM__INIT;
    Rgpu__ClCompileProgram cp = RGPU__CL_COMPILE_PROGRAM__INIT;
    Rgpu__ClBuildReply *reply;
    frame_t f;
    uint64_t seq;
    int32_t err;
    size_t at = 0;

    log[0] = '\0';
    c.id = s->next_id++;
    c.context = ctx;
    c.source = (char *)src;
    if (!send_frame(s, RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_SOURCE, &c.base, NULL, 0))
        return -9999;
    if (n_headers) {
        cp.program = c.id;
        cp.options = (char *)options;
        cp.n_headers = n_headers;
        cp.headers = (uint64_t *)headers;
        cp.n_header_names = n_headers;
        cp.header_names = names;
        seq = send_frame(s, RGPU__MSG_TYPE__MSG_CL_COMPILE_PROGRAM, &cp.base, NULL, 0);
    } else {
        b.program = c.id;
        b.options = (char *)options;
        seq = send_frame(s, RGPU__MSG_TYPE__MSG_CL_BUILD_PROGRAM, &b.base, NULL, 0);
    }
    if (!seq || wait_reply(s, seq, T_BUILD, &f) != 1)
        return -9999;
    reply = rgpu__cl_build_reply__unpack(NULL, f.hdr.body_len, f.body);
    frame_free(&f);
    if (!reply)
        return -9998;
    err = reply->cl_error;
    for (size_t i = 0; i < reply->n_builds && at + 1 < log_cap; i++)
        at += (size_t)snprintf(log + at, log_cap - at, "%s\n", reply->builds[i]->log ? reply->builds[i]->log : "");
    rgpu__cl_build_reply__free_unpacked(reply, NULL);
    return err;
}

/*
 * include-server-file: program sources that #include a file of the server
 * (a literal absolute path, through a macro, split by a comment and a
 * splice), build options that add server directories or probe files, and
 * an embedded header whose name climbs out of the compiler's directory
 * (PoCL writes each header under its name). The client library never sends
 * these (it resolves the application's includes itself): a hostile client
 * does. Correct: every build fails (or the header is refused) with the
 * reason in the log, the log never quotes the file, and no file is written.
 */
static void attack_include_server_file(result_t *r)
{
    static const char *const file = "/etc/os-release";
    static const char written[] = "/tmp/rgpu-hostile-header-written";
    char secret[256] = "", log[8192], src[512];
    const char *kernel = "__kernel void k(__global int *p) { p[0] = 1; }\n";
    const char *sources[3];
    char s0[256], s1[256], s2[256];
    FILE *fp = fopen(file, "r");
    sess_t s;
    uint64_t ctx, hdr;
    int32_t err;

    if (!fp || !fgets(secret, sizeof(secret), fp)) {
        FAILF(r, "cannot read %s (the file whose contents must not leak)", file);
        if (fp)
            fclose(fp);
        return;
    }
    fclose(fp);
    secret[strcspn(secret, "\n")] = '\0';
    unlink(written);
    snprintf(s0, sizeof(s0), "#include \"%s\"\n%s", file, kernel);
    snprintf(s1, sizeof(s1), "#define F \"%s\"\n#include F\n%s", file, kernel);
    snprintf(s2, sizeof(s2), "#/**/inc\\\nlude <%s>\n%s", file, kernel);
    sources[0] = s0, sources[1] = s1, sources[2] = s2;
    OPEN_OR_FAIL(&s, 1, r);
    ctx = op_context(&s, NULL);
    for (int i = 0; i < 3; i++) {
        err = build_raw(&s, ctx, sources[i], "", NULL, NULL, 0, log, sizeof(log));
        if (err == CL_SUCCESS || err <= -9998)
            FAILF(r, "source %d: the build %s", i, err == CL_SUCCESS ? "succeeded" : "got no answer");
        if (strstr(log, secret))
            FAILF(r, "source %d: the build log quotes %s", i, file);
    }
    err = build_raw(&s, ctx, kernel, "-I /etc", NULL, NULL, 0, log, sizeof(log));
    if (err != CL_INVALID_BUILD_OPTIONS)
        FAILF(r, "-I /etc: error %d, expected CL_INVALID_BUILD_OPTIONS", err);
    err = build_raw(&s, ctx, "#if X\n#endif\n__kernel void k(void) {}\n", "-DX=__has_include(\"/etc/shadow\")", NULL,
                    NULL, 0, log, sizeof(log));
    if (err != CL_INVALID_BUILD_OPTIONS)
        FAILF(r, "a -D value probing a file: error %d, expected CL_INVALID_BUILD_OPTIONS", err);
    /* An embedded header named to climb out of the compiler's directory. */
    {
        Rgpu__ClCreateProgramSource c = RGPU__CL_CREATE_PROGRAM_SOURCE__INIT;
        char name[] = "../../../../../../../../tmp/rgpu-hostile-header-written";
        char *names[] = {name};

        c.id = hdr = s.next_id++;
        c.context = ctx;
        c.source = "#define HOSTILE 1\n";
        send_frame(&s, RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_SOURCE, &c.base, NULL, 0);
        snprintf(src, sizeof(src), "%s", kernel);
        err = build_raw(&s, ctx, src, "", &hdr, names, 1, log, sizeof(log));
        if (err == CL_SUCCESS || err <= -9998)
            FAILF(r, "an embedded header named %s: the compile %s", name,
                  err == CL_SUCCESS ? "succeeded" : "got no answer");
        if (access(written, F_OK) == 0) {
            FAILF(r, "the server wrote %s (an embedded header's name climbed out of its directory)", written);
            unlink(written);
        }
    }
    if (sync_or_fail(&s, r, "after the refused builds") == 0 && !r->failed)
        note(r, "3 sources including %s, -I and a probing -D, and a header named out of its directory: all refused, "
                "nothing quoted or written", file);
    sess_close(&s);
}

/*
 * bad-ids: ids that are unknown, of the wrong kind, 0, duplicated, or
 * another session's, in releases, queries, enqueues and creations.
 * Correct: each is an error in the attacker's session; the other session's
 * objects are untouched; nothing crashes.
 */
static void attack_bad_ids(result_t *r)
{
    sess_t a, b;
    uint64_t bctx, bq, bbuf, bprog, bk, bev;
    uint64_t actx, aq, abuf, aprog, ak;
    uint8_t bdata[4096], got[4096];
    char why[400];
    int32_t err;
    int checked = 0;
    struct {
        const char *what;
        uint64_t seq;
    } expect[48];
    int ne = 0;

    for (int i = 0; i < (int)sizeof(bdata); i++)
        bdata[i] = (uint8_t)(i * 13 + 1);
    OPEN_OR_FAIL(&b, 5000, r);
    bctx = op_context(&b, NULL);
    bq = op_queue(&b, bctx, NULL);
    bbuf = op_buffer(&b, bctx, sizeof(bdata), bdata, NULL);
    bprog = op_program_built(&b, bctx, k_global_src, why, sizeof(why));
    if (!bprog) {
        FAILF(r, "%s", why);
        sess_close(&b);
        return;
    }
    bk = op_kernel(&b, bprog, "k", NULL);
    bev = b.next_id++;
    op_marker(&b, bq, bev, NULL, 0);
    if (sync_or_fail(&b, r, "the victim session's objects") != 0 || b.n_aerr) {
        if (b.n_aerr)
            FAILF(r, "creating the objects failed (%d: %s): harness problem", b.aerr[0].err, b.aerr[0].what);
        sess_close(&b);
        return;
    }

    {
        char w2[400];
        if (sess_open(&a, 1000, w2, sizeof(w2)) != 0) {
            FAILF(r, "cannot open the attacker's session: %s", w2);
            sess_close(&b);
            return;
        }
    }
    actx = op_context(&a, NULL);
    aq = op_queue(&a, actx, NULL);
    abuf = op_buffer(&a, actx, 4096, NULL, NULL);
    aprog = op_program_built(&a, actx, k_global_src, why, sizeof(why));
    if (!aprog) {
        FAILF(r, "%s", why);
        goto out;
    }
    ak = op_kernel(&a, aprog, "k", NULL);
    if (sync_or_fail(&a, r, "the attacker's objects") != 0 || a.n_aerr) {
        if (a.n_aerr)
            FAILF(r, "creating the objects failed (%d: %s): harness problem", a.aerr[0].err, a.aerr[0].what);
        goto out;
    }

#define EXPECT(what_, seq_) (expect[ne].what = (what_), expect[ne++].seq = (seq_))
    /* Releases. */
    EXPECT("release of id 0", op_release(&a, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, 0));
    EXPECT("release of an unknown id", op_release(&a, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, 424242));
    EXPECT("release of the other session's buffer", op_release(&a, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, bbuf));
    EXPECT("release of the other session's context", op_release(&a, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT, bctx));
    EXPECT("release of the other session's queue", op_release(&a, RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE, bq));
    EXPECT("release of the other session's kernel", op_release(&a, RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL, bk));
    EXPECT("release of the other session's program", op_release(&a, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM, bprog));
    EXPECT("release of the other session's event", op_release(&a, RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT, bev));
    EXPECT("release of a context as a buffer", op_release(&a, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, actx));
    EXPECT("release of a queue as a kernel", op_release(&a, RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL, aq));
    EXPECT("release of a context as a device", op_release(&a, RGPU__CL_OBJECT_KIND__CL_OBJ_DEVICE, actx));
    EXPECT("release of a context as a sampler", op_release(&a, RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER, actx));
    EXPECT("release of a context as kind 0", op_release(&a, RGPU__CL_OBJECT_KIND__CL_OBJ_NONE, actx));
    EXPECT("release of a context as kind 99", op_release(&a, 99, actx));
    /* Enqueues and arguments with foreign or wrong-kind ids. */
    {
        uint8_t x[16] = {0};
        uint64_t one = 1;
        EXPECT("write to the other session's buffer", op_write(&a, aq, bbuf, 0, x, sizeof(x)));
        EXPECT("write on the other session's queue", op_write(&a, bq, abuf, 0, x, sizeof(x)));
        EXPECT("write to a context id as a buffer", op_write(&a, aq, actx, 0, x, sizeof(x)));
        EXPECT("the other session's buffer as a kernel argument", op_arg_mem(&a, ak, 0, bbuf));
        EXPECT("a queue id as a kernel argument", op_arg_mem(&a, ak, 0, aq));
        EXPECT("setting an argument of the other session's kernel", op_arg_mem(&a, bk, 0, abuf));
        EXPECT("launching the other session's kernel", op_ndrange(&a, aq, bk, 1, &one));
        EXPECT("launching a buffer id as a kernel", op_ndrange(&a, aq, abuf, 1, &one));
        EXPECT("a marker waiting on the other session's event", op_marker(&a, aq, 0, &bev, 1));
        EXPECT("a marker waiting on a buffer id as an event", op_marker(&a, aq, 0, &abuf, 1));
        EXPECT("a marker on a context id as a queue", op_marker(&a, actx, 0, NULL, 0));
    }
    /* Creations from foreign or wrong parents. */
    {
        Rgpu__ClCreateQueue cq = RGPU__CL_CREATE_QUEUE__INIT;
        Rgpu__ClCreateContext cc = RGPU__CL_CREATE_CONTEXT__INIT;
        uint32_t devs[65];
        uint64_t dummy;

        EXPECT("a queue in the other session's context", (op_queue(&a, bctx, &dummy), dummy));
        cq.id = a.next_id++;
        cq.context = actx;
        cq.device = 999;
        EXPECT("a queue on device 999", send_frame(&a, RGPU__MSG_TYPE__MSG_CL_CREATE_QUEUE, &cq.base, NULL, 0));
        memset(devs, 0, sizeof(devs));
        devs[0] = 999;
        cc.id = a.next_id++;
        cc.n_devices = 1;
        cc.devices = devs;
        EXPECT("a context on device 999", send_frame(&a, RGPU__MSG_TYPE__MSG_CL_CREATE_CONTEXT, &cc.base, NULL, 0));
        cc.id = a.next_id++;
        cc.n_devices = 65;
        devs[0] = 0;
        EXPECT("a context with 65 devices", send_frame(&a, RGPU__MSG_TYPE__MSG_CL_CREATE_CONTEXT, &cc.base, NULL, 0));
        EXPECT("a sub-buffer of the other session's buffer", (op_sub_buffer(&a, bbuf, 0, 1024, &dummy), dummy));
        EXPECT("a kernel of the other session's program", (op_kernel(&a, bprog, "k", &dummy), dummy));
        EXPECT("a buffer in a queue id as context", (op_buffer(&a, aq, 64, NULL, &dummy), dummy));
        EXPECT("a buffer under an id already in use", (op_buffer_id(&a, abuf, actx, 64, NULL, &dummy), dummy));
        EXPECT("a user event in the other session's context", (op_user_event(&a, bctx), a.seq));
        EXPECT("setting the other session's event", op_set_user_event(&a, bev, CL_COMPLETE));
    }
#undef EXPECT
    if (sync_or_fail(&a, r, "after the bad ids") != 0)
        goto out;
    for (int i = 0; i < ne; i++) {
        if (!async_err(&a, expect[i].seq))
            FAILF(r, "%s: accepted", expect[i].what);
        else
            checked++;
    }
    /* Sync calls: answered with an error. */
    {
        Rgpu__ClGetInfo gi = RGPU__CL_GET_INFO__INIT;
        Rgpu__ClWaitEvents we = RGPU__CL_WAIT_EVENTS__INIT;
        struct {
            const char *what;
            int kind, which;
            uint64_t id;
        } q[] = {
            {"info on the other session's queue", RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE, 0, bq},
            {"info on the other session's buffer", RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, 0, bbuf},
            {"info on a queue id as a context", RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT, 0, aq},
            {"work-group info on a buffer", RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, RGPU__CL_INFO_WHICH__CL_INFO_KERNEL_WORK_GROUP,
             abuf},
            {"info of kind 99", 99, 0, actx},
            {"info which=99", RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT, 99, actx},
        };
        for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
            Rgpu__ClInfoReply *rep;
            frame_t f;
            uint64_t seq;
            int rc;

            gi.kind = (Rgpu__ClObjectKind)q[i].kind;
            gi.which = (uint32_t)q[i].which;
            gi.id = q[i].id;
            gi.param = CL_QUEUE_PROPERTIES;
            seq = send_frame(&a, RGPU__MSG_TYPE__MSG_CL_GET_INFO, &gi.base, NULL, 0);
            rc = seq ? wait_reply(&a, seq, T_REPLY, &f) : -1;
            if (rc != 1) {
                FAILF(r, "%s: no answer", q[i].what);
                goto out;
            }
            rep = rgpu__cl_info_reply__unpack(NULL, f.hdr.body_len, f.body);
            if (!rep || rep->cl_error == CL_SUCCESS)
                FAILF(r, "%s: answered success", q[i].what);
            else
                checked++;
            if (rep)
                rgpu__cl_info_reply__free_unpacked(rep, NULL);
            frame_free(&f);
        }
        we.n_events = 1;
        we.events = &bev;
        if (status_call(&a, RGPU__MSG_TYPE__MSG_CL_WAIT_EVENTS, &we.base, T_REPLY, &err) != 1 || err == CL_SUCCESS)
            FAILF(r, "waiting on the other session's event: not refused");
        else
            checked++;
        if (op_finish(&a, bq, T_REPLY, &err) != 1 || err == CL_SUCCESS)
            FAILF(r, "finishing the other session's queue: not refused");
        else
            checked++;
        if (op_read(&a, aq, bbuf, 0, 16, got, &err) != 1 || err == CL_SUCCESS)
            FAILF(r, "reading the other session's buffer: not refused");
        else
            checked++;
    }
    /* The attacker's own buffer survived the duplicate id, and works. */
    {
        uint8_t x[64];
        memset(x, 0x77, sizeof(x));
        op_write(&a, aq, abuf, 0, x, sizeof(x));
        if (op_read(&a, aq, abuf, 0, sizeof(x), got, &err) != 1 || err != CL_SUCCESS || memcmp(got, x, sizeof(x)))
            FAILF(r, "the attacker's own buffer no longer works after a duplicate id");
    }
    /* The victim session: its objects are intact and it still works. */
    if (op_read(&b, bq, bbuf, 0, sizeof(bdata), got, &err) != 1 || err != CL_SUCCESS)
        FAILF(r, "the other session can no longer read its buffer (error %d)", err);
    else if (memcmp(got, bdata, sizeof(bdata)) != 0)
        FAILF(r, "the other session's buffer was changed by the attacker");
    else if (b.n_aerr)
        FAILF(r, "the other session got an AsyncError (%d: %s) caused by the attacker", b.aerr[0].err, b.aerr[0].what);
    else
        note(r, "%d bad-id calls refused; the other session is untouched", checked);
out:
    sess_close(&a);
    sess_close(&b);
}

/*
 * limits: sizes, counts and offsets past what the objects allow (fill
 * patterns of 0, 3 and 256 bytes, a fill of 2^62 bytes, offsets that wrap
 * around 2^64, 5000 wait events, migrating 5000 buffers, work_dim 0 and 4,
 * rect origins of 2^63). Correct: each is an error, nothing crashes.
 */
static void attack_limits(result_t *r)
{
    sess_t s;
    uint64_t ctx, q, buf, prog, k;
    uint64_t *many;
    struct {
        const char *what;
        uint64_t seq;
    } expect[32];
    int ne = 0, checked = 0;
    char why[400], how[400];
    int32_t err;
    int rc;

    OPEN_OR_FAIL(&s, 1, r);
    ctx = op_context(&s, NULL);
    q = op_queue(&s, ctx, NULL);
    buf = op_buffer(&s, ctx, 4096, NULL, NULL);
    prog = op_program_built(&s, ctx, "__kernel void l(__global int *o, __local int *t) { t[0] = 1; o[0] = t[0]; }\n",
                            why, sizeof(why));
    if (!prog) {
        FAILF(r, "%s", why);
        sess_close(&s);
        return;
    }
    k = op_kernel(&s, prog, "l", NULL);
    if (sync_or_fail(&s, r, "creating the objects") != 0 || s.n_aerr) {
        if (s.n_aerr)
            FAILF(r, "creating the objects failed (%d: %s): harness problem", s.aerr[0].err, s.aerr[0].what);
        sess_close(&s);
        return;
    }
    many = calloc(5000, sizeof(*many));
    if (!many)
        exit(2);
#define EXPECT(what_, seq_) (expect[ne].what = (what_), expect[ne++].seq = (seq_))
    {
        Rgpu__ClFillBuffer fb = RGPU__CL_FILL_BUFFER__INIT;
        static uint8_t pat[256];
        size_t lens[] = {0, 3, 256};
        const char *names[] = {"a fill with a 0-byte pattern", "a fill with a 3-byte pattern",
                               "a fill with a 256-byte pattern"};
        fb.queue = q;
        fb.mem = buf;
        fb.size = 4096;
        for (int i = 0; i < 3; i++) {
            fb.pattern.data = pat;
            fb.pattern.len = lens[i];
            EXPECT(names[i], send_frame(&s, RGPU__MSG_TYPE__MSG_CL_FILL_BUFFER, &fb.base, NULL, 0));
        }
        fb.pattern.len = 4;
        fb.size = 1ull << 62;
        EXPECT("a fill of 2^62 bytes", send_frame(&s, RGPU__MSG_TYPE__MSG_CL_FILL_BUFFER, &fb.base, NULL, 0));
        fb.offset = UINT64_MAX - 3;
        fb.size = 8;
        EXPECT("a fill at an offset that wraps", send_frame(&s, RGPU__MSG_TYPE__MSG_CL_FILL_BUFFER, &fb.base, NULL, 0));
    }
    {
        Rgpu__ClCopyBuffer cp = RGPU__CL_COPY_BUFFER__INIT;
        uint8_t x[32] = {0};
        cp.queue = q;
        cp.src = buf;
        cp.dst = buf;
        cp.src_offset = UINT64_MAX - 7;
        cp.dst_offset = 0;
        cp.size = 16;
        EXPECT("a copy from an offset that wraps", send_frame(&s, RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER, &cp.base, NULL, 0));
        cp.src_offset = 0;
        cp.dst_offset = UINT64_MAX - 7;
        EXPECT("a copy to an offset that wraps", send_frame(&s, RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER, &cp.base, NULL, 0));
        EXPECT("a write at an offset that wraps", op_write(&s, q, buf, UINT64_MAX - 15, x, sizeof(x)));
    }
    {
        Rgpu__ClBufferRect m = RGPU__CL_BUFFER_RECT__INIT;
        uint64_t bo[3] = {1ull << 63, 0, 0}, ho[3] = {0, 0, 0}, rg[3] = {16, 1, 1};
        uint8_t x[16] = {0};
        m.queue = q;
        m.mem = buf;
        m.dst = buf;
        rect_fill(&m, bo, ho, rg);
        EXPECT("a rect write at origin 2^63",
               send_frame(&s, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER_RECT, &m.base, x, sizeof(x)));
        EXPECT("a rect copy from origin 2^63", send_frame(&s, RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER_RECT, &m.base, NULL, 0));
        bo[0] = 0;
        ho[1] = 1ull << 62;
        EXPECT("a rect copy to origin row 2^62", send_frame(&s, RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER_RECT, &m.base, NULL, 0));
    }
    {
        Rgpu__ClMigrate mg = RGPU__CL_MIGRATE__INIT;
        for (int i = 0; i < 5000; i++)
            many[i] = buf;
        mg.queue = q;
        mg.mems = many;
        mg.n_mems = 5000;
        EXPECT("migrating 5000 buffers", send_frame(&s, RGPU__MSG_TYPE__MSG_CL_MIGRATE, &mg.base, NULL, 0));
        for (int i = 0; i < 5000; i++)
            many[i] = 7777 + (uint64_t)i;
        EXPECT("a marker waiting on 5000 events", op_marker(&s, q, 0, many, 5000));
    }
    {
        uint64_t g[4] = {1, 1, 1, 1};
        Rgpu__ClNDRange m = RGPU__CL_NDRANGE__INIT;
        op_arg_mem(&s, k, 0, buf);
        op_arg_local(&s, k, 1, 64);
        EXPECT("a launch with work_dim 0", op_ndrange(&s, q, k, 0, g));
        EXPECT("a launch with work_dim 4", op_ndrange(&s, q, k, 4, g));
        m.queue = q;
        m.kernel = k;
        m.work_dim = 1;
        m.n_global_size = 1;
        m.global_size = g;
        m.n_local_size = 2;
        m.local_size = g;
        EXPECT("a launch with 2 local sizes for 1 dimension",
               send_frame(&s, RGPU__MSG_TYPE__MSG_CL_NDRANGE, &m.base, NULL, 0));
    }
#undef EXPECT
    rc = op_finish(&s, q, T_REPLY, &err);
    if (rc != 1) {
        FAILF(r, "finish after the limit cases: %s", rc == 0 ? "no reply" : ended_how(&s, how, sizeof(how)));
        free(many);
        sess_close(&s);
        return;
    }
    for (int i = 0; i < ne; i++) {
        if (!async_err(&s, expect[i].seq))
            FAILF(r, "%s: accepted", expect[i].what);
        else
            checked++;
    }
    if (!r->failed)
        note(r, "%d out-of-range calls refused", checked);
    free(many);
    sess_close(&s);
}

/*
 * arg-local-huge: a __local argument of 2^40 bytes, then a launch (PoCL 3.1
 * asserts in setup_kernel_arg_array_with_locals and aborts the server).
 * Correct: refused at the set, the launch or the finish; the server lives.
 */
static void attack_arg_local_huge(result_t *r)
{
    sess_t s;
    uint64_t ctx, q, buf, prog, k, one = 1, aseq, nseq;
    char why[400], how[400];
    int32_t err = 0;
    int rc;

    OPEN_OR_FAIL(&s, 1, r);
    ctx = op_context(&s, NULL);
    q = op_queue(&s, ctx, NULL);
    buf = op_buffer(&s, ctx, 4096, NULL, NULL);
    prog = op_program_built(&s, ctx, "__kernel void l(__global int *o, __local int *t) { t[0] = 1; o[0] = t[0]; }\n",
                            why, sizeof(why));
    if (!prog) {
        FAILF(r, "%s", why);
        sess_close(&s);
        return;
    }
    k = op_kernel(&s, prog, "l", NULL);
    op_arg_mem(&s, k, 0, buf);
    aseq = op_arg_local(&s, k, 1, 1ull << 40);
    nseq = op_ndrange(&s, q, k, 1, &one);
    rc = op_finish(&s, q, T_REPLY, &err);
    if (rc == 1 && async_err(&s, aseq))
        note(r, "clSetKernelArg refused with %d", async_err(&s, aseq));
    else if (rc == 1 && async_err(&s, nseq))
        note(r, "the launch was refused with %d", async_err(&s, nseq));
    else if (rc == 1 && err != CL_SUCCESS)
        note(r, "clFinish answered %d", err);
    else if (rc == 1)
        FAILF(r, "a kernel with a 2^40-byte __local argument ran");
    else if (rc == 0)
        FAILF(r, "a 2^40-byte __local argument: no reply to the finish within %d s", T_REPLY / 1000);
    else
        note(r, "session ended: %s", ended_how(&s, how, sizeof(how)));
    sess_close(&s);
}

/*
 * ndrange-huge: a launch of 2^62 work-items (and one of 2^31 x 2^31 x 2^31).
 * On a CPU device the platform would run it for ever, holding its worker
 * threads (every tenant's) and the session, which can then never be torn
 * down (its queue never finishes). Correct: refused (AsyncError or an error
 * at the finish) within 15 s. Run it last: a server that accepts it stays
 * busy.
 */
static void attack_ndrange_huge(result_t *r)
{
    static const uint64_t g1[1] = {1ull << 62}, g3[3] = {1ull << 31, 1ull << 31, 1ull << 31};
    sess_t s;
    uint64_t ctx, q, buf, prog, k, seq1, seq3;
    char why[400], how[400];
    int32_t err;
    int rc;

    OPEN_OR_FAIL(&s, 1, r);
    ctx = op_context(&s, NULL);
    q = op_queue(&s, ctx, NULL);
    buf = op_buffer(&s, ctx, 4096, NULL, NULL);
    prog = op_program_built(&s, ctx, "__kernel void n(__global int *p) { if (get_global_id(0) == 0) p[0] = 1; }\n",
                            why, sizeof(why));
    if (!prog) {
        FAILF(r, "%s", why);
        sess_close(&s);
        return;
    }
    k = op_kernel(&s, prog, "n", NULL);
    op_arg_mem(&s, k, 0, buf);
    seq1 = op_ndrange(&s, q, k, 1, g1);
    seq3 = op_ndrange(&s, q, k, 3, g3);
    rc = op_finish(&s, q, T_REPLY, &err);
    if (rc == 1 && async_err(&s, seq1) && async_err(&s, seq3))
        note(r, "both launches refused (%d, %d)", async_err(&s, seq1), async_err(&s, seq3));
    else if (rc == 1 && err != CL_SUCCESS)
        note(r, "clFinish answered %d", err);
    else if (rc == 1)
        FAILF(r, "a launch of 2^62 work-items was accepted and finished (%s)",
              async_err(&s, seq1) ? "the 3-D one too" : "really?");
    else if (rc == 0)
        FAILF(r, "a launch of 2^62 (or 2^93) work-items was accepted: clFinish got no reply within %d s (the "
                 "device is busy for ever)", T_REPLY / 1000);
    else
        note(r, "session ended: %s", ended_how(&s, how, sizeof(how)));
    sess_close(&s);
}

/* ---- images and samplers -------------------------------------------- */

/* cl_mem_object_type values of the images (OpenCL 1.2). */
#define IMG_2D CL_MEM_OBJECT_IMAGE2D
#define IMG_3D CL_MEM_OBJECT_IMAGE3D
#define IMG_2DA CL_MEM_OBJECT_IMAGE2D_ARRAY
#define IMG_1D CL_MEM_OBJECT_IMAGE1D
#define IMG_1DA CL_MEM_OBJECT_IMAGE1D_ARRAY
#define IMG_1DB CL_MEM_OBJECT_IMAGE1D_BUFFER

typedef struct {
    uint32_t type, order, dtype;
    uint64_t w, h, d, a;
    uint64_t buffer;
    uint64_t flags;
} img_desc_t;

/* A ClCreateImage under id, with bulk_len bytes of contents (bulk NULL:
 * zeros) out of announced: returns its seq (0: the connection broke). */
static uint64_t op_image_raw(sess_t *s, uint64_t id, uint64_t ctx, const img_desc_t *d, const void *bulk,
                             uint64_t bulk_len, uint64_t announced, int timeout_ms)
{
    Rgpu__ClCreateImage m = RGPU__CL_CREATE_IMAGE__INIT;

    m.id = id;
    m.context = ctx;
    m.flags = d->flags ? d->flags : CL_MEM_READ_WRITE;
    m.channel_order = d->order;
    m.channel_data_type = d->dtype;
    m.image_type = d->type;
    m.width = d->w;
    m.height = d->h;
    m.depth = d->d;
    m.array_size = d->a;
    m.buffer = d->buffer;
    return send_frame_ex(s, RGPU__MSG_TYPE__MSG_CL_CREATE_IMAGE, &m.base, bulk, bulk_len, announced, timeout_ms);
}

/* A new image without contents: its id; *seq_p its seq. */
static uint64_t op_image(sess_t *s, uint64_t ctx, const img_desc_t *d, uint64_t *seq_p)
{
    uint64_t id = s->next_id++;
    uint64_t seq = op_image_raw(s, id, ctx, d, NULL, 0, 0, T_REPLY);

    if (seq_p)
        *seq_p = seq;
    return id;
}

/* ClImageRect for WRITE_IMAGE (with bulk) or READ_IMAGE; n_o / n_r values
 * of origin and region. */
static uint64_t op_image_rect(sess_t *s, uint16_t type, uint64_t q, uint64_t img, const uint64_t *o, size_t n_o,
                              const uint64_t *rg, size_t n_r, const void *bulk, uint64_t bulk_len)
{
    Rgpu__ClImageRect m = RGPU__CL_IMAGE_RECT__INIT;

    m.queue = q;
    m.image = img;
    m.blocking = type == RGPU__MSG_TYPE__MSG_CL_READ_IMAGE;
    m.origin = (uint64_t *)o;
    m.n_origin = n_o;
    m.region = (uint64_t *)rg;
    m.n_region = n_r;
    return send_frame(s, type, &m.base, bulk, bulk_len);
}

/* A blocking ReadImage: 1 with *err and *got (bytes of data that came; out
 * filled when it fits), 0 no reply, -1 the session ended. */
static int op_read_image(sess_t *s, uint64_t q, uint64_t img, const uint64_t *o, size_t n_o, const uint64_t *rg,
                         size_t n_r, int32_t *err, uint64_t *got, void *out, size_t out_cap)
{
    uint64_t seq = op_image_rect(s, RGPU__MSG_TYPE__MSG_CL_READ_IMAGE, q, img, o, n_o, rg, n_r, NULL, 0);
    Rgpu__ClReadReply *r;
    frame_t f;
    int rc = seq ? wait_reply(s, seq, T_REPLY, &f) : -1;

    if (rc != 1)
        return rc;
    r = rgpu__cl_read_reply__unpack(NULL, f.hdr.body_len, f.body);
    *err = r ? r->cl_error : -9999;
    if (r)
        rgpu__cl_read_reply__free_unpacked(r, NULL);
    *got = f.hdr.bulk_len;
    if (out && f.bulk && f.hdr.bulk_len <= out_cap)
        memcpy(out, f.bulk, f.hdr.bulk_len);
    frame_free(&f);
    return 1;
}

static uint64_t op_copy_image(sess_t *s, uint64_t q, int kind, uint64_t src, uint64_t dst, const uint64_t *so,
                              size_t n_so, const uint64_t *dso, size_t n_dso, const uint64_t *rg, size_t n_r,
                              uint64_t offset)
{
    Rgpu__ClImageCopy m = RGPU__CL_IMAGE_COPY__INIT;

    m.queue = q;
    m.kind = (Rgpu__ClImageCopyKind)kind;
    m.src = src;
    m.dst = dst;
    m.src_origin = (uint64_t *)so;
    m.n_src_origin = n_so;
    m.dst_origin = (uint64_t *)dso;
    m.n_dst_origin = n_dso;
    m.region = (uint64_t *)rg;
    m.n_region = n_r;
    m.offset = offset;
    return send_frame(s, RGPU__MSG_TYPE__MSG_CL_COPY_IMAGE, &m.base, NULL, 0);
}

static uint64_t op_fill_image(sess_t *s, uint64_t q, uint64_t img, const void *color, size_t color_len,
                              const uint64_t *o, size_t n_o, const uint64_t *rg, size_t n_r)
{
    Rgpu__ClFillImage m = RGPU__CL_FILL_IMAGE__INIT;

    m.queue = q;
    m.image = img;
    m.color.data = (uint8_t *)color;
    m.color.len = color_len;
    m.origin = (uint64_t *)o;
    m.n_origin = n_o;
    m.region = (uint64_t *)rg;
    m.n_region = n_r;
    return send_frame(s, RGPU__MSG_TYPE__MSG_CL_FILL_IMAGE, &m.base, NULL, 0);
}

static uint64_t op_sampler_id(sess_t *s, uint64_t id, uint64_t ctx, int norm, uint32_t addr, uint32_t filt)
{
    Rgpu__ClCreateSampler m = RGPU__CL_CREATE_SAMPLER__INIT;

    m.id = id;
    m.context = ctx;
    m.normalized_coords = norm;
    m.addressing_mode = addr;
    m.filter_mode = filt;
    return send_frame(s, RGPU__MSG_TYPE__MSG_CL_CREATE_SAMPLER, &m.base, NULL, 0);
}

static uint64_t op_sampler(sess_t *s, uint64_t ctx, int norm, uint32_t addr, uint32_t filt, uint64_t *seq_p)
{
    uint64_t id = s->next_id++;
    uint64_t seq = op_sampler_id(s, id, ctx, norm, addr, filt);

    if (seq_p)
        *seq_p = seq;
    return id;
}

static uint64_t op_arg_sampler(sess_t *s, uint64_t kernel, uint32_t index, uint64_t smp)
{
    Rgpu__ClSetKernelArg m = RGPU__CL_SET_KERNEL_ARG__INIT;

    m.kernel = kernel;
    m.index = index;
    m.kind = RGPU__CL_ARG_KIND__CL_ARG_SAMPLER;
    m.sampler = smp;
    return send_frame(s, RGPU__MSG_TYPE__MSG_CL_SET_KERNEL_ARG, &m.base, NULL, 0);
}

/* A frame whose body is raw bytes (a body no encoder would write). */
static uint64_t send_raw_body(sess_t *s, uint16_t type, const uint8_t *body, uint32_t len)
{
    uint8_t head[RGPU_FRAME_HEADER_SIZE];
    rgpu_frame_header_t h = {RGPU_PROTOCOL_VERSION, type, 0, len, ++s->seq, 0};
    int64_t deadline = now_ms() + T_REPLY;

    rgpu_frame_header_encode(&h, head);
    if (send_all(s, head, sizeof(head), deadline) != 1 || (len && send_all(s, body, len, deadline) != 1))
        return 0;
    return h.seq;
}

/* Calls that must each be refused with an AsyncError, checked in batches
 * (a session keeps the last 128 AsyncErrors). */
typedef struct {
    struct {
        char what[200];
        uint64_t seq;
    } e[100];
    int n;
    int refused;
} expects_t;

static void expect_f(expects_t *x, uint64_t seq, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void expect_f(expects_t *x, uint64_t seq, const char *fmt, ...)
{
    va_list ap;

    if (x->n >= (int)(sizeof(x->e) / sizeof(x->e[0])))
        return;
    va_start(ap, fmt);
    vsnprintf(x->e[x->n].what, sizeof(x->e[x->n].what), fmt, ap);
    va_end(ap);
    x->e[x->n++].seq = seq;
}

/* The attack's list (one attack runs at a time). */
static expects_t *expects_new(void)
{
    static expects_t x;

    memset(&x, 0, sizeof(x));
    return &x;
}

/* A sync point, then every call recorded must have got its AsyncError.
 * 0, or -1 when the session ended (the attack cannot go on in it). */
static int expects_check(sess_t *s, expects_t *x, result_t *r, const char *when)
{
    char how[400];
    int rc = sess_ping(s, T_REPLY), bad = 0;

    if (rc != 1) {
        FAILF(r, "%s: %s (the last call sent: %s)", when,
              rc == 0 ? "no pong within the deadline" : ended_how(s, how, sizeof(how)),
              x->n ? x->e[x->n - 1].what : "-");
        x->n = 0;
        return -1;
    }
    for (int i = 0; i < x->n; i++) {
        if (!x->e[i].seq) {
            FAILF(r, "%s: the connection broke sending it", x->e[i].what);
        } else if (!async_err(s, x->e[i].seq)) {
            if (bad++ < 12)
                FAILF(r, "%s: accepted", x->e[i].what);
            else
                r->failed = 1;
        } else {
            x->refused++;
        }
    }
    if (bad > 12)
        note(r, "(%d more accepted in %s)", bad - 12, when);
    x->n = 0;
    s->n_aerr = 0;
    return 0;
}

/* The fixtures of an image attack fail: a harness problem. */
static int harness_ok(sess_t *s, result_t *r, const char *when)
{
    if (sync_or_fail(s, r, when) != 0)
        return 0;
    if (s->n_aerr) {
        FAILF(r, "%s failed (AsyncError %d: %s): harness problem", when, s->aerr[0].err, s->aerr[0].what);
        return 0;
    }
    return 1;
}

/* A 2D RGBA8 image: written then read back (whether the session works). */
static int image_roundtrip(sess_t *s, uint64_t q, uint64_t img, uint64_t w, uint64_t h, char *why, size_t cap)
{
    uint64_t o[3] = {0, 0, 0}, rg[3] = {w, h, 1}, got = 0;
    uint8_t data[4096], back[4096];
    int32_t err = 0;
    int rc;

    if (w * h * 4 > sizeof(data))
        return -1;
    for (uint64_t i = 0; i < w * h * 4; i++)
        data[i] = (uint8_t)(i * 11 + 5);
    op_image_rect(s, RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE, q, img, o, 3, rg, 3, data, w * h * 4);
    rc = op_read_image(s, q, img, o, 3, rg, 3, &err, &got, back, sizeof(back));
    if (rc != 1 || err != CL_SUCCESS || got != w * h * 4 || memcmp(back, data, w * h * 4) != 0) {
        char how[400];
        snprintf(why, cap, "an image write and read back: %s",
                 rc != 1 ? (rc == 0 ? "no reply" : ended_how(s, how, sizeof(how)))
                 : err != CL_SUCCESS ? "error" : "wrong data");
        if (rc == 1 && err != CL_SUCCESS)
            snprintf(why, cap, "an image write and read back: error %d", err);
        return -1;
    }
    return 0;
}

/*
 * image-bad-desc: image descriptions no platform should see: unknown image
 * types, used dimensions of 0 or past any device's limits, sizes whose
 * width * height * depth * array size * pixel size overflows 2^64 (or wraps
 * to a few bytes), channel orders and types that do not exist or do not go
 * together, flags that contradict the contents, 1D buffer images over a
 * nonexistent buffer, a sub-buffer, an image, another session's buffer or
 * a buffer too small, and contexts that are not this session's. (The wire
 * carries no row or slice pitch: images always travel packed.) Correct:
 * each is refused with an AsyncError, no memory is allocated for them
 * (with --server-pid: VmRSS grows by at most 16 MiB over all of them), and
 * the session still creates, writes and reads a valid image.
 */
static void attack_image_bad_desc(result_t *r)
{
    const uint32_t RGBA = CL_RGBA, U8 = CL_UNORM_INT8, F32 = CL_FLOAT;
    sess_t s, b;
    uint64_t ctx, q, buf, sub, img, img1db, bctx, bq, bbuf, seq;
    expects_t *x = expects_new();
    long rss0, rss1;
    char why[400];

    OPEN_OR_FAIL(&b, 5000, r);
    bctx = op_context(&b, NULL);
    bq = op_queue(&b, bctx, NULL);
    bbuf = op_buffer(&b, bctx, 4096, NULL, NULL);
    if (!harness_ok(&b, r, "the other session's buffer")) {
        sess_close(&b);
        return;
    }
    {
        char w2[400];
        if (sess_open(&s, 1, w2, sizeof(w2)) != 0) {
            FAILF(r, "cannot open the attacker's session: %s", w2);
            sess_close(&b);
            return;
        }
    }
    ctx = op_context(&s, NULL);
    q = op_queue(&s, ctx, NULL);
    buf = op_buffer(&s, ctx, 4096, NULL, NULL);
    sub = op_sub_buffer(&s, buf, 0, 1024, NULL);
    {
        img_desc_t ok2d = {IMG_2D, RGBA, U8, 16, 16, 0, 0, 0, 0};
        img_desc_t ok1db = {IMG_1DB, RGBA, U8, 256, 0, 0, 0, buf, 0};
        img = op_image(&s, ctx, &ok2d, &seq);
        img1db = op_image(&s, ctx, &ok1db, NULL);
    }
    if (!harness_ok(&s, r, "creating a context, a buffer and two valid images (does the device have images?)"))
        goto out;
    rss0 = server_rss_kib();

    /* Types and dimensions. */
    {
        static const struct {
            const char *what;
            img_desc_t d;
        } cases[] = {
            {"image type 0", {0, CL_RGBA, CL_UNORM_INT8, 16, 16, 1, 1, 0, 0}},
            {"image type CL_MEM_OBJECT_BUFFER", {CL_MEM_OBJECT_BUFFER, CL_RGBA, CL_UNORM_INT8, 16, 16, 1, 1, 0, 0}},
            {"image type 0x10F7 (one past IMAGE1D_BUFFER)", {0x10F7, CL_RGBA, CL_UNORM_INT8, 16, 16, 1, 1, 0, 0}},
            {"image type 0x10EF (one before IMAGE2D)", {0x10EF, CL_RGBA, CL_UNORM_INT8, 16, 16, 1, 1, 0, 0}},
            {"image type 0xFFFFFFFF", {0xFFFFFFFFu, CL_RGBA, CL_UNORM_INT8, 16, 16, 1, 1, 0, 0}},
            {"a 1D image of width 0", {IMG_1D, CL_RGBA, CL_UNORM_INT8, 0, 1, 1, 1, 0, 0}},
            {"a 2D image of width 0", {IMG_2D, CL_RGBA, CL_UNORM_INT8, 0, 16, 0, 0, 0, 0}},
            {"a 2D image of height 0", {IMG_2D, CL_RGBA, CL_UNORM_INT8, 16, 0, 0, 0, 0, 0}},
            {"a 3D image of depth 0", {IMG_3D, CL_RGBA, CL_UNORM_INT8, 16, 16, 0, 0, 0, 0}},
            {"a 1D array of 0 images", {IMG_1DA, CL_RGBA, CL_UNORM_INT8, 16, 0, 0, 0, 0, 0}},
            {"a 2D array of 0 images", {IMG_2DA, CL_RGBA, CL_UNORM_INT8, 16, 16, 0, 0, 0, 0}},
            {"a 2D image of width 2^40", {IMG_2D, CL_RGBA, CL_UNORM_INT8, 1ull << 40, 1, 0, 0, 0, 0}},
            {"a 2D image of height 2^40", {IMG_2D, CL_RGBA, CL_UNORM_INT8, 1, 1ull << 40, 0, 0, 0, 0}},
            {"a 1D image of width 2^63", {IMG_1D, CL_RGBA, CL_UNORM_INT8, 1ull << 63, 0, 0, 0, 0, 0}},
            {"a 3D image of depth 2^32", {IMG_3D, CL_RGBA, CL_UNORM_INT8, 1, 1, 1ull << 32, 0, 0, 0}},
            {"a 2D array of 2^32 images", {IMG_2DA, CL_RGBA, CL_UNORM_INT8, 1, 1, 0, 1ull << 32, 0, 0}},
            {"a 1D array of 2^40 images", {IMG_1DA, CL_RGBA, CL_UNORM_INT8, 1, 0, 0, 1ull << 40, 0, 0}},
            {"a 2D image of 65537 x 65537 (past every device's 2D limits)",
             {IMG_2D, CL_RGBA, CL_UNORM_INT8, 65537, 65537, 0, 0, 0, 0}},
            {"a 3D RGBA float image of 2^20 x 2^20 x 2^20 (2^64 bytes: wraps to 0)",
             {IMG_3D, CL_RGBA, CL_FLOAT, 1ull << 20, 1ull << 20, 1ull << 20, 0, 0, 0}},
            {"a 3D RGBA float image of 2^22 x 2^22 x 2^22 (2^70 bytes)",
             {IMG_3D, CL_RGBA, CL_FLOAT, 1ull << 22, 1ull << 22, 1ull << 22, 0, 0, 0}},
            {"a 1D RGBA8 image of 2^62 + 1 pixels (2^64 + 4 bytes: wraps to 4)",
             {IMG_1D, CL_RGBA, CL_UNORM_INT8, (1ull << 62) + 1, 0, 0, 0, 0, 0}},
            {"a 2D array of 2^16 x 2^16 x (2^32 + 1) RGBA8 (wraps to 2^34 bytes)",
             {IMG_2DA, CL_RGBA, CL_UNORM_INT8, 1ull << 16, 1ull << 16, 0, (1ull << 32) + 1, 0, 0}},
            {"a 2D image of 2^33 x 2^31 RGBA8 (2^66: wraps to 0)",
             {IMG_2D, CL_RGBA, CL_UNORM_INT8, 1ull << 33, 1ull << 31, 0, 0, 0, 0}},
            {"channel order 0xDEAD", {IMG_2D, 0xDEAD, CL_UNORM_INT8, 16, 16, 0, 0, 0, 0}},
            {"channel order 0", {IMG_2D, 0, CL_UNORM_INT8, 16, 16, 0, 0, 0, 0}},
            {"channel data type 0xBEEF", {IMG_2D, CL_RGBA, 0xBEEF, 16, 16, 0, 0, 0, 0}},
            {"channel data type 0", {IMG_2D, CL_RGBA, 0, 16, 16, 0, 0, 0, 0}},
            {"channel order and type swapped", {IMG_2D, CL_UNORM_INT8, CL_RGBA, 16, 16, 0, 0, 0, 0}},
            {"CL_RGB with CL_UNORM_INT8 (OpenCL defines RGB only for packed types)",
             {IMG_2D, CL_RGB, CL_UNORM_INT8, 16, 16, 0, 0, 0, 0}},
            {"CL_RGBA with CL_UNORM_SHORT_565 (a packed type needs RGB)",
             {IMG_2D, CL_RGBA, CL_UNORM_SHORT_565, 16, 16, 0, 0, 0, 0}},
            {"CL_BGRA with CL_FLOAT (OpenCL defines BGRA only for 8-bit types)",
             {IMG_2D, CL_BGRA, CL_FLOAT, 16, 16, 0, 0, 0, 0}},
            {"CL_INTENSITY with CL_SIGNED_INT8 (OpenCL defines INTENSITY only for norm and float types)",
             {IMG_2D, CL_INTENSITY, CL_SIGNED_INT8, 16, 16, 0, 0, 0, 0}},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            op_image(&s, ctx, &cases[i].d, &seq);
            expect_f(x, seq, "%s", cases[i].what);
        }
        (void)RGBA, (void)U8, (void)F32;
    }
    if (expects_check(&s, x, r, "after the bad types, sizes and formats") != 0)
        goto out;

    /* Buffers under 1D buffer images, and buffers where none belongs. */
    {
        struct {
            const char *what;
            img_desc_t d;
        } cases[] = {
            {"a 1D buffer image over a nonexistent buffer", {IMG_1DB, CL_RGBA, CL_UNORM_INT8, 16, 0, 0, 0, 777777, 0}},
            {"a 1D buffer image over buffer id 0", {IMG_1DB, CL_RGBA, CL_UNORM_INT8, 16, 0, 0, 0, 0, 0}},
            {"a 1D buffer image over a sub-buffer", {IMG_1DB, CL_RGBA, CL_UNORM_INT8, 16, 0, 0, 0, sub, 0}},
            {"a 1D buffer image over the other session's buffer",
             {IMG_1DB, CL_RGBA, CL_UNORM_INT8, 16, 0, 0, 0, bbuf, 0}},
            {"a 1D buffer image over an image", {IMG_1DB, CL_RGBA, CL_UNORM_INT8, 16, 0, 0, 0, img, 0}},
            {"a 1D buffer image over a 1D buffer image", {IMG_1DB, CL_RGBA, CL_UNORM_INT8, 16, 0, 0, 0, img1db, 0}},
            {"a 1D buffer image over a context id", {IMG_1DB, CL_RGBA, CL_UNORM_INT8, 16, 0, 0, 0, ctx, 0}},
            {"a 1D buffer image of 1025 RGBA8 pixels over a 4 KiB buffer",
             {IMG_1DB, CL_RGBA, CL_UNORM_INT8, 1025, 0, 0, 0, buf, 0}},
            {"a 1D buffer image of 2^62 + 1 RGBA8 pixels over a 4 KiB buffer (wraps to 4 bytes)",
             {IMG_1DB, CL_RGBA, CL_UNORM_INT8, (1ull << 62) + 1, 0, 0, 0, buf, 0}},
            {"a 1D buffer image with CL_MEM_COPY_HOST_PTR",
             {IMG_1DB, CL_RGBA, CL_UNORM_INT8, 16, 0, 0, 0, buf, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR}},
            {"a 1D buffer image with CL_MEM_USE_HOST_PTR",
             {IMG_1DB, CL_RGBA, CL_UNORM_INT8, 16, 0, 0, 0, buf, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR}},
            {"a 1D buffer image with CL_MEM_ALLOC_HOST_PTR",
             {IMG_1DB, CL_RGBA, CL_UNORM_INT8, 16, 0, 0, 0, buf, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR}},
            {"a 2D image naming a buffer", {IMG_2D, CL_RGBA, CL_UNORM_INT8, 16, 16, 0, 0, buf, 0}},
            {"a 1D image naming a buffer", {IMG_1D, CL_RGBA, CL_UNORM_INT8, 16, 0, 0, 0, buf, 0}},
            {"a 2D image with CL_MEM_COPY_HOST_PTR and no contents",
             {IMG_2D, CL_RGBA, CL_UNORM_INT8, 16, 16, 0, 0, 0, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR}},
            {"a 2D image with CL_MEM_USE_HOST_PTR and no contents",
             {IMG_2D, CL_RGBA, CL_UNORM_INT8, 16, 16, 0, 0, 0, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR}},
            {"a 2D image both CL_MEM_READ_ONLY and CL_MEM_WRITE_ONLY",
             {IMG_2D, CL_RGBA, CL_UNORM_INT8, 16, 16, 0, 0, 0, CL_MEM_READ_ONLY | CL_MEM_WRITE_ONLY}},
            {"a 2D image with flag bit 2^40", {IMG_2D, CL_RGBA, CL_UNORM_INT8, 16, 16, 0, 0, 0, 1ull << 40}},
            {"a 2D image with every flag bit", {IMG_2D, CL_RGBA, CL_UNORM_INT8, 16, 16, 0, 0, 0, ~0ull}},
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            op_image(&s, ctx, &cases[i].d, &seq);
            expect_f(x, seq, "%s", cases[i].what);
        }
    }
    /* Contexts and ids. */
    {
        img_desc_t d = {IMG_2D, CL_RGBA, CL_UNORM_INT8, 16, 16, 0, 0, 0, 0};
        op_image(&s, 777778, &d, &seq);
        expect_f(x, seq, "an image in a nonexistent context");
        op_image(&s, 0, &d, &seq);
        expect_f(x, seq, "an image in context 0");
        op_image(&s, bctx, &d, &seq);
        expect_f(x, seq, "an image in the other session's context");
        op_image(&s, q, &d, &seq);
        expect_f(x, seq, "an image in a queue id as context");
        expect_f(x, op_image_raw(&s, buf, ctx, &d, NULL, 0, 0, T_REPLY), "an image under the id of a buffer");
        expect_f(x, op_image_raw(&s, img, ctx, &d, NULL, 0, 0, T_REPLY), "an image under the id of an image");
    }
    if (expects_check(&s, x, r, "after the bad buffers, flags and contexts") != 0)
        goto out;
    rss1 = server_rss_kib();
    if (rss0 > 0 && rss1 > 0 && rss1 - rss0 > 16 * 1024)
        FAILF(r, "server VmRSS grew by %ld MiB while refusing the image descriptions", (rss1 - rss0) / 1024);
    /* The ids reused above still name what they named, and the session works. */
    if (image_roundtrip(&s, q, img, 16, 16, why, sizeof(why)) != 0)
        FAILF(r, "afterwards, in the attacker's session: %s", why);
    {
        uint8_t got[16];
        int32_t err;
        if (op_read(&s, q, buf, 0, sizeof(got), got, &err) != 1 || err != CL_SUCCESS)
            FAILF(r, "afterwards the buffer whose id an image tried to take no longer reads (error %d)", err);
        if (op_read(&b, bq, bbuf, 0, sizeof(got), got, &err) != 1 || err != CL_SUCCESS)
            FAILF(r, "afterwards the other session's buffer no longer reads (error %d)", err);
    }
    if (!r->failed)
        note(r, "%d image descriptions refused; VmRSS +%ld KiB; the session still works", x->refused,
             rss0 > 0 && rss1 > 0 ? rss1 - rss0 : 0);
out:
    sess_close(&s);
    sess_close(&b);
}

/*
 * image-bulk: contents that do not match the image. CreateImage (and
 * WriteImage) with bulk shorter and longer than the packed size; 1 GiB
 * announced as the contents of an image in a nonexistent context, of an
 * image of 16 x 16 pixels, and of a 1D buffer image (which takes none),
 * 16 MiB of it sent. Correct: a mismatch is refused (AsyncError, or a
 * SessionError for that session) and no image is created; the 1 GiB ones
 * are refused within 5 s, before the GiB is received or allocated (with
 * --server-pid: VmRSS grows by at most 16 MiB, as in bulk-to-nothing);
 * contents without CL_MEM_COPY_HOST_PTR, or the flag without contents,
 * are refused and the session goes on.
 */
static void attack_image_bulk(result_t *r)
{
    enum { V = 8, HUGE0 = 5 };
    static const char *names[V] = {
        "CreateImage 16x16 RGBA8 (1024 bytes) with 512 bytes of contents",
        "CreateImage 16x16 RGBA8 (1024 bytes) with 2048 bytes of contents",
        "CreateImage 16x16 RGBA8 (1024 bytes) with 1023 bytes of contents",
        "WriteImage of a 16x16 region (1024 bytes) with 512 bytes",
        "WriteImage of a 16x16 region (1024 bytes) with 1025 bytes",
        "CreateImage with 1 GiB of contents in a nonexistent context",
        "CreateImage 16x16 RGBA8 with 1 GiB of contents",
        "CreateImage of a 1D buffer image with 1 GiB of contents",
    };
    static uint8_t data[2048];
    sess_t s[V];
    uint64_t seq[V], ids[V], q[V], img[V];
    long rss0, rss1;
    int64_t deadline;

    for (int v = 0; v < V; v++) {
        OPEN_OR_FAIL(&s[v], 1, r);
        seq[v] = ids[v] = q[v] = img[v] = 0;
    }
    for (int v = 0; v < V; v++) {
        uint64_t ctx;
        img_desc_t d = {IMG_2D, CL_RGBA, CL_UNORM_INT8, 16, 16, 0, 0, 0, 0};

        if (v == HUGE0)
            continue;
        ctx = op_context(&s[v], NULL);
        q[v] = op_queue(&s[v], ctx, NULL);
        if (v == 3 || v == 4)
            img[v] = op_image(&s[v], ctx, &d, NULL);
        if (v == 7)
            op_buffer(&s[v], ctx, 4096, NULL, NULL);
        if (!harness_ok(&s[v], r, "creating the objects"))
            goto out;
    }
    /* Mismatches, small. */
    for (int v = 0; v < 5; v++) {
        static const uint64_t lens[5] = {512, 2048, 1023, 512, 1025};
        char how[400];

        if (v < 3) {
            img_desc_t d = {IMG_2D, CL_RGBA, CL_UNORM_INT8, 16, 16, 0, 0, 0, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR};
            ids[v] = s[v].next_id++;
            seq[v] = op_image_raw(&s[v], ids[v], 1, &d, data, lens[v], lens[v], T_REPLY);
        } else {
            uint64_t o[3] = {0, 0, 0}, rg[3] = {16, 16, 1};
            seq[v] = op_image_rect(&s[v], RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE, q[v], img[v], o, 3, rg, 3, data, lens[v]);
        }
        if (refused_within(&s[v], seq[v], T_REPLY, how, sizeof(how))) {
            note(r, "%s: %s", names[v], how);
        } else {
            /* Nothing came: was it taken? */
            FAILF(r, "%s: accepted (no error, the session goes on)", names[v]);
        }
        if (v < 3 && !s[v].closed && !s[v].session_error) {
            /* If the session lives on, the image must not exist. */
            uint8_t got[16];
            uint64_t n = 0, o[3] = {0, 0, 0}, rg[3] = {1, 1, 1};
            int32_t err = 0;
            if (op_read_image(&s[v], q[v], ids[v], o, 3, rg, 3, &err, &n, got, sizeof(got)) == 1 && err == CL_SUCCESS)
                FAILF(r, "%s: the image exists", names[v]);
        }
    }
    /* 1 GiB announced, 16 MiB sent. */
    rss0 = server_rss_kib();
    for (int v = HUGE0; v < V; v++) {
        img_desc_t d = {IMG_2D, CL_RGBA, CL_UNORM_INT8, 16, 16, 0, 0, 0, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR};

        if (v == HUGE0)
            d.w = d.h = 16384;          /* exactly 1 GiB: the size matches, the context does not exist */
        if (v == 7)
            d = (img_desc_t){IMG_1DB, CL_RGBA, CL_UNORM_INT8, 16, 0, 0, 0, 3, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR};
        ids[v] = s[v].next_id++;
        seq[v] = s[v].seq + 1;
        op_image_raw(&s[v], ids[v], v == HUGE0 ? 999004 : 1, &d, NULL, 16 * MIB, GIB, T_REFUSE);
    }
    rss1 = server_rss_kib();
    deadline = now_ms() + T_REFUSE;
    for (int v = HUGE0; v < V; v++) {
        char how[400];
        if (refused_within(&s[v], seq[v], left_ms(deadline), how, sizeof(how)))
            note(r, "%s: %s", names[v], how);
        else
            FAILF(r, "%s: no refusal within %d s of announcing 1 GiB, 16 MiB of it sent (the server receives or "
                     "discards the whole GiB before it answers)", names[v], T_REFUSE / 1000);
    }
    if (rss0 > 0 && rss1 > 0) {
        if (rss1 - rss0 > 16 * 1024)
            FAILF(r, "server VmRSS grew by %ld MiB while receiving 16 MiB of 1 GiB image contents for each of %d "
                     "refused images", (rss1 - rss0) / 1024, V - HUGE0);
        else
            note(r, "server VmRSS grew by %ld KiB", rss1 - rss0);
    }
    for (int v = HUGE0; v < V; v++)
        sess_close(&s[v]);

    /* Contents and the copy flag that disagree: refused, the session goes on. */
    {
        sess_t t;
        expects_t *x = expects_new();
        img_desc_t d = {IMG_2D, CL_RGBA, CL_UNORM_INT8, 16, 16, 0, 0, 0, CL_MEM_READ_WRITE};
        uint64_t ctx, tq, good;
        char why[400];

        OPEN_OR_FAIL(&t, 1, r);
        ctx = op_context(&t, NULL);
        tq = op_queue(&t, ctx, NULL);
        if (!harness_ok(&t, r, "a context")) {
            sess_close(&t);
            goto out;
        }
        expect_f(x, op_image_raw(&t, t.next_id++, ctx, &d, data, 1024, 1024, T_REPLY),
                 "1024 bytes of contents without CL_MEM_COPY_HOST_PTR");
        d.flags = CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR;
        expect_f(x, op_image_raw(&t, t.next_id++, ctx, &d, data, 1024, 1024, T_REPLY),
                 "1024 bytes of contents with CL_MEM_USE_HOST_PTR alone");
        d.flags = CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR;
        d.w = d.h = 0;
        expect_f(x, op_image_raw(&t, t.next_id++, ctx, &d, data, 1024, 1024, T_REPLY),
                 "contents for an image of 0 x 0 pixels");
        if (expects_check(&t, x, r, "after contents without the flag") == 0) {
            good = op_image(&t, ctx, &(img_desc_t){IMG_2D, CL_RGBA, CL_UNORM_INT8, 16, 16, 0, 0, 0, 0}, NULL);
            if (image_roundtrip(&t, tq, good, 16, 16, why, sizeof(why)) != 0)
                FAILF(r, "afterwards: %s", why);
        }
        sess_close(&t);
    }
out:
    for (int v = 0; v < V; v++)
        sess_close(&s[v]);
}

/*
 * image-regions: transfers outside their images. For an image of each type
 * (1D, 1D array, 2D, 2D array, 3D, 1D buffer) and each of the 3
 * coordinates: an origin at the edge, a region crossing it, a region one
 * past the extent, an origin of 2^64-1 with a region of 2 and a region of
 * 2^64-1 from origin 1 (both wrap to 1), a region of 0; where the type
 * uses no such coordinate, an origin of 1 or a region of 2 there. Each in
 * a WriteImage, a ReadImage, a FillImage, an image-to-image copy (on each
 * side), an image-to-buffer and a buffer-to-image copy. Then origins and
 * regions of 0, 2 and 4 values, fill colours that are not 16 bytes,
 * image<->buffer copies past the end of the buffer or sub-buffer (or at
 * offsets that wrap), copies between images of different pixel sizes,
 * buffers where images belong and images where buffers belong (buffer
 * commands on an image). Correct: every one is refused (an AsyncError, or
 * an error in the read's reply, without data), nothing is allocated for
 * them (with --server-pid: VmRSS grows by at most 16 MiB), and the session
 * still writes and reads its images.
 */
static void attack_image_regions(result_t *r)
{
    enum { I1D, I1DA, I2D, I2DA, I3D, I1DB, NI };
    static const char *inames[NI] = {"1D", "1D array", "2D", "2D array", "3D", "1D buffer"};
    static const img_desc_t descs[NI] = {
        {IMG_1D, CL_RGBA, CL_UNORM_INT8, 64, 0, 0, 0, 0, 0},
        {IMG_1DA, CL_RGBA, CL_UNORM_INT8, 64, 0, 0, 4, 0, 0},
        {IMG_2D, CL_RGBA, CL_UNORM_INT8, 32, 16, 0, 0, 0, 0},
        {IMG_2DA, CL_RGBA, CL_UNORM_INT8, 16, 8, 0, 4, 0, 0},
        {IMG_3D, CL_RGBA, CL_UNORM_INT8, 8, 8, 8, 0, 0, 0},
        {IMG_1DB, CL_RGBA, CL_UNORM_INT8, 64, 0, 0, 0, 0, 0},
    };
    /* What each coordinate may reach, as the images' types use them. */
    static const uint64_t lims[NI][3] = {{64, 1, 1}, {64, 4, 1}, {32, 16, 1}, {16, 8, 4}, {8, 8, 8}, {64, 1, 1}};
    static const char *vnames[6] = {"origin at the edge", "a region crossing the edge", "a region one past the extent",
                                    "origin 2^64-1 with region 2 (wraps)", "region 2^64-1 from origin 1 (wraps)",
                                    "a region of 0"};
    static const char *cnames[3] = {"x", "y", "z"};
    static uint8_t data[1 << 16];
    sess_t s;
    uint64_t ctx, q, big, small, bbuf, sub, imgs[NI], f32, seq;
    expects_t *x = expects_new();
    long rss0, rss;
    int read_refused = 0;
    char why[400], how[400];

    OPEN_OR_FAIL(&s, 1, r);
    ctx = op_context(&s, NULL);
    q = op_queue(&s, ctx, NULL);
    big = op_buffer(&s, ctx, 1 << 20, NULL, NULL);
    small = op_buffer(&s, ctx, 64, NULL, NULL);
    bbuf = op_buffer(&s, ctx, 256, NULL, NULL);    /* under the 1D buffer image */
    sub = op_sub_buffer(&s, big, 4096, 256, NULL);
    for (int i = 0; i < NI; i++) {
        img_desc_t d = descs[i];
        if (i == I1DB)
            d.buffer = bbuf;
        imgs[i] = op_image(&s, ctx, &d, NULL);
    }
    f32 = op_image(&s, ctx, &(img_desc_t){IMG_2D, CL_RGBA, CL_FLOAT, 32, 16, 0, 0, 0, 0}, NULL);
    if (!harness_ok(&s, r, "creating the buffers and an image of each type")) {
        sess_close(&s);
        return;
    }
    rss0 = server_rss_kib();

    for (int i = 0; i < NI && !r->failed; i++) {
        for (int c = 0; c < 3; c++) {
            for (int v = 0; v < 6; v++) {
                uint64_t o[3] = {0, 0, 0}, rg[3] = {1, 1, 1}, zero[3] = {0, 0, 0}, bytes = 4, got = 0;
                uint8_t color[16] = {0};
                int32_t err = 0;
                int rc;
                char what[160];

                switch (v) {
                case 0: o[c] = lims[i][c]; break;
                case 1: o[c] = lims[i][c] - 1, rg[c] = 2; break;
                case 2: rg[c] = lims[i][c] + 1; break;
                case 3: o[c] = UINT64_MAX, rg[c] = 2; break;
                case 4: o[c] = 1, rg[c] = UINT64_MAX; break;
                default: rg[c] = 0; break;
                }
                if (rg[c] > 1 && rg[c] < 4096)
                    bytes = 4 * rg[c];
                else if (rg[c] == 0)
                    bytes = 0;
                snprintf(what, sizeof(what), "%s image (%llu x %llu x %llu), %s in %s", inames[i],
                         (unsigned long long)lims[i][0], (unsigned long long)lims[i][1],
                         (unsigned long long)lims[i][2], vnames[v], cnames[c]);
                expect_f(x, op_image_rect(&s, RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE, q, imgs[i], o, 3, rg, 3, data, bytes),
                         "WriteImage of a %s", what);
                expect_f(x, op_fill_image(&s, q, imgs[i], color, 16, o, 3, rg, 3), "FillImage of a %s", what);
                /* The other side of each copy is in bounds where the bad side is. */
                expect_f(x, op_copy_image(&s, q, RGPU__CL_IMAGE_COPY_KIND__CL_COPY_IMAGE, imgs[i], imgs[I3D], o, 3,
                                          zero, 3, rg, 3, 0),
                         "CopyImage from a %s", what);
                expect_f(x, op_copy_image(&s, q, RGPU__CL_IMAGE_COPY_KIND__CL_COPY_IMAGE, imgs[I3D], imgs[i], zero,
                                          3, o, 3, rg, 3, 0),
                         "CopyImage into a %s", what);
                expect_f(x, op_copy_image(&s, q, RGPU__CL_IMAGE_COPY_KIND__CL_COPY_IMAGE_TO_BUFFER, imgs[i], big, o,
                                          3, NULL, 0, rg, 3, 0),
                         "CopyImageToBuffer from a %s", what);
                expect_f(x, op_copy_image(&s, q, RGPU__CL_IMAGE_COPY_KIND__CL_COPY_BUFFER_TO_IMAGE, big, imgs[i],
                                          NULL, 0, o, 3, rg, 3, 0),
                         "CopyBufferToImage into a %s", what);
                rc = op_read_image(&s, q, imgs[i], o, 3, rg, 3, &err, &got, NULL, 0);
                if (rc != 1) {
                    FAILF(r, "ReadImage of a %s: %s", what, rc == 0 ? "no reply" : ended_how(&s, how, sizeof(how)));
                    break;
                }
                if (err == CL_SUCCESS || got)
                    FAILF(r, "ReadImage of a %s: answered %d with %llu bytes", what, err, (unsigned long long)got);
                else
                    read_refused++;
                rss = server_rss_kib();
                if (rss0 > 0 && rss > 0 && rss - rss0 > 16 * 1024) {
                    FAILF(r, "server VmRSS grew by %ld MiB by the ReadImage of a %s", (rss - rss0) / 1024, what);
                    rss0 = rss;
                }
            }
            if (r->failed || expects_check(&s, x, r, inames[i]) != 0)
                break;
        }
    }
    if (r->failed && (s.closed || s.session_error))
        goto out;

    /* Origins and regions that are not 3 values. */
    {
        uint64_t v4[4] = {0, 0, 0, 0}, r4[4] = {1, 1, 1, 1}, o3[3] = {0, 0, 0}, r3[3] = {1, 1, 1};
        uint8_t color[16] = {0};
        static const size_t counts[3] = {0, 2, 4};
        for (int k = 0; k < 3; k++) {
            size_t n = counts[k];
            expect_f(x, op_image_rect(&s, RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE, q, imgs[I2D], v4, n, r4, n, data, 4),
                     "WriteImage with %zu origin and region values", n);
            expect_f(x, op_image_rect(&s, RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE, q, imgs[I2D], v4, n, r3, 3, data, 4),
                     "WriteImage with %zu origin values", n);
            expect_f(x, op_image_rect(&s, RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE, q, imgs[I2D], o3, 3, r4, n, data, 4),
                     "WriteImage with %zu region values", n);
            expect_f(x, op_fill_image(&s, q, imgs[I2D], color, 16, v4, n, r4, n),
                     "FillImage with %zu origin and region values", n);
            expect_f(x, op_copy_image(&s, q, RGPU__CL_IMAGE_COPY_KIND__CL_COPY_IMAGE, imgs[I2D], imgs[I3D], v4, n, o3,
                                      3, r3, 3, 0),
                     "CopyImage with %zu source origin values", n);
            expect_f(x, op_copy_image(&s, q, RGPU__CL_IMAGE_COPY_KIND__CL_COPY_IMAGE, imgs[I2D], imgs[I3D], o3, 3, o3,
                                      3, r4, n, 0),
                     "CopyImage with %zu region values", n);
            expect_f(x, op_copy_image(&s, q, RGPU__CL_IMAGE_COPY_KIND__CL_COPY_IMAGE_TO_BUFFER, imgs[I2D], big, v4, n,
                                      NULL, 0, r3, 3, 0),
                     "CopyImageToBuffer with %zu origin values", n);
            expect_f(x, op_copy_image(&s, q, RGPU__CL_IMAGE_COPY_KIND__CL_COPY_BUFFER_TO_IMAGE, big, imgs[I2D], NULL,
                                      0, v4, n, r3, 3, 0),
                     "CopyBufferToImage with %zu origin values", n);
        }
        /* Fill colours. */
        {
            static const size_t lens[5] = {0, 4, 15, 17, 64};
            static uint8_t col[64];
            for (int k = 0; k < 5; k++)
                expect_f(x, op_fill_image(&s, q, imgs[I2D], col, lens[k], o3, 3, r3, 3), "FillImage with a %zu-byte colour",
                         lens[k]);
        }
    }
    if (expects_check(&s, x, r, "after the origin and region counts and the colours") != 0)
        goto out;

    /* Image <-> buffer past the buffer's end, and wrong kinds. */
    {
        uint64_t o3[3] = {0, 0, 0}, full2d[3] = {32, 16, 1}, px2[3] = {2, 1, 1}, px1[3] = {1, 1, 1};
        uint64_t rg16[3] = {16, 1, 1}, rg128[3] = {128, 1, 1};
        const int I2B = RGPU__CL_IMAGE_COPY_KIND__CL_COPY_IMAGE_TO_BUFFER;
        const int B2I = RGPU__CL_IMAGE_COPY_KIND__CL_COPY_BUFFER_TO_IMAGE;
        const int I2I = RGPU__CL_IMAGE_COPY_KIND__CL_COPY_IMAGE;

        expect_f(x, op_copy_image(&s, q, I2B, imgs[I2D], small, o3, 3, NULL, 0, full2d, 3, 0),
                 "CopyImageToBuffer of 2048 bytes into a 64-byte buffer");
        expect_f(x, op_copy_image(&s, q, B2I, small, imgs[I2D], NULL, 0, o3, 3, full2d, 3, 0),
                 "CopyBufferToImage of 2048 bytes from a 64-byte buffer");
        expect_f(x, op_copy_image(&s, q, I2B, imgs[I2D], small, o3, 3, NULL, 0, px2, 3, 60),
                 "CopyImageToBuffer of 8 bytes at offset 60 of a 64-byte buffer");
        expect_f(x, op_copy_image(&s, q, B2I, small, imgs[I2D], NULL, 0, o3, 3, px2, 3, 60),
                 "CopyBufferToImage of 8 bytes from offset 60 of a 64-byte buffer");
        expect_f(x, op_copy_image(&s, q, I2B, imgs[I2D], small, o3, 3, NULL, 0, px1, 3, 64),
                 "CopyImageToBuffer at offset 64 of a 64-byte buffer");
        expect_f(x, op_copy_image(&s, q, I2B, imgs[I2D], small, o3, 3, NULL, 0, px1, 3, UINT64_MAX - 1),
                 "CopyImageToBuffer at offset 2^64-2 (wraps)");
        expect_f(x, op_copy_image(&s, q, B2I, small, imgs[I2D], NULL, 0, o3, 3, px1, 3, UINT64_MAX - 1),
                 "CopyBufferToImage from offset 2^64-2 (wraps)");
        expect_f(x, op_copy_image(&s, q, I2B, imgs[I1D], sub, o3, 3, NULL, 0, rg128, 3, 0),
                 "CopyImageToBuffer of 512 bytes into a 256-byte sub-buffer (inside its parent)");
        expect_f(x, op_copy_image(&s, q, B2I, sub, imgs[I1D], NULL, 0, o3, 3, rg128, 3, 0),
                 "CopyBufferToImage of 512 bytes from a 256-byte sub-buffer (inside its parent)");
        expect_f(x, op_copy_image(&s, q, I2B, imgs[I1D], sub, o3, 3, NULL, 0, rg16, 3, 200),
                 "CopyImageToBuffer of 64 bytes at offset 200 of a 256-byte sub-buffer");
        expect_f(x, op_copy_image(&s, q, I2I, imgs[I2D], f32, o3, 3, o3, 3, px1, 3, 0),
                 "CopyImage from RGBA8 to RGBA float (4 and 16 bytes a pixel)");
        expect_f(x, op_copy_image(&s, q, I2I, big, imgs[I2D], o3, 3, o3, 3, px1, 3, 0), "CopyImage from a buffer");
        expect_f(x, op_copy_image(&s, q, I2I, imgs[I2D], big, o3, 3, o3, 3, px1, 3, 0), "CopyImage into a buffer");
        expect_f(x, op_copy_image(&s, q, I2B, big, small, o3, 3, NULL, 0, px1, 3, 0),
                 "CopyImageToBuffer from a buffer");
        expect_f(x, op_copy_image(&s, q, I2B, imgs[I2D], imgs[I3D], o3, 3, NULL, 0, px1, 3, 0),
                 "CopyImageToBuffer into an image");
        expect_f(x, op_copy_image(&s, q, B2I, imgs[I3D], imgs[I2D], NULL, 0, o3, 3, px1, 3, 0),
                 "CopyBufferToImage from an image");
        expect_f(x, op_copy_image(&s, q, B2I, big, big, NULL, 0, o3, 3, px1, 3, 0), "CopyBufferToImage into a buffer");
        expect_f(x, op_copy_image(&s, q, 3, imgs[I2D], big, o3, 3, o3, 3, px1, 3, 0), "CopyImage of kind 3");
        expect_f(x, op_copy_image(&s, q, -1, imgs[I2D], big, o3, 3, o3, 3, px1, 3, 0), "CopyImage of kind -1");
        expect_f(x, op_copy_image(&s, q, I2I, imgs[I2D], imgs[I2D], o3, 3, o3, 3, full2d, 3, 0),
                 "CopyImage of a 2D image onto itself (overlapping)");
        expect_f(x, op_image_rect(&s, RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE, q, big, o3, 3, px1, 3, data, 4),
                 "WriteImage to a buffer");
        expect_f(x, op_fill_image(&s, q, big, data, 16, o3, 3, px1, 3), "FillImage of a buffer");
        expect_f(x, op_write(&s, q, imgs[I2D], 0, data, 16), "WriteBuffer to an image");
        expect_f(x, op_write(&s, q, imgs[I1DB], 0, data, 16), "WriteBuffer to a 1D buffer image");
        {
            Rgpu__ClFillBuffer fb = RGPU__CL_FILL_BUFFER__INIT;
            Rgpu__ClCopyBuffer cp = RGPU__CL_COPY_BUFFER__INIT;
            uint64_t dummy;
            fb.queue = q;
            fb.mem = imgs[I2D];
            fb.pattern.data = data;
            fb.pattern.len = 4;
            fb.size = 64;
            expect_f(x, send_frame(&s, RGPU__MSG_TYPE__MSG_CL_FILL_BUFFER, &fb.base, NULL, 0), "FillBuffer of an image");
            cp.queue = q;
            cp.src = imgs[I2D];
            cp.dst = big;
            cp.size = 64;
            expect_f(x, send_frame(&s, RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER, &cp.base, NULL, 0), "CopyBuffer from an image");
            cp.src = big;
            cp.dst = imgs[I3D];
            expect_f(x, send_frame(&s, RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER, &cp.base, NULL, 0), "CopyBuffer into an image");
            op_sub_buffer(&s, imgs[I2D], 0, 64, &dummy);
            expect_f(x, dummy, "a sub-buffer of an image");
        }
        (void)seq;
    }
    if (expects_check(&s, x, r, "after the image<->buffer copies and wrong kinds") != 0)
        goto out;
    {
        uint8_t got[64];
        uint64_t n = 0, o3[3] = {0, 0, 0}, px1[3] = {1, 1, 1};
        int32_t err = 0;
        if (op_read(&s, q, imgs[I2D], 0, 16, got, &err) != 1 || err == CL_SUCCESS)
            FAILF(r, "ReadBuffer of an image: not refused");
        if (op_read_image(&s, q, big, o3, 3, px1, 3, &err, &n, got, sizeof(got)) != 1 || err == CL_SUCCESS || n)
            FAILF(r, "ReadImage of a buffer: not refused");
    }
    if (image_roundtrip(&s, q, imgs[I2D], 32, 16, why, sizeof(why)) != 0)
        FAILF(r, "afterwards: %s", why);
    if (!r->failed)
        note(r, "%d enqueues and %d reads outside their images refused; the session still works", x->refused,
             read_refused);
out:
    sess_close(&s);
}

/*
 * image-args: kernel arguments that are not what the kernel declares, for
 * images and samplers: a buffer id, a 0 id, an image of another type (3D,
 * 2D array, 1D buffer) or another session's, a sampler id, for an
 * image2d_t; an image id or a sampler id for a __global pointer; a sampler
 * id (or an image id) for an int; value bytes, an image id, a context id,
 * another session's sampler and a released sampler for a sampler_t. Then
 * a valid image and sampler are set, released, and the kernel launched
 * (the platform may not retain what clSetKernelArg was given). Correct:
 * each wrong argument is refused with an AsyncError; the launch after the
 * releases is refused or reads the right pixel; the server lives.
 */
static const char *k_image_src =
    "__kernel void img2(__read_only image2d_t im, sampler_t sm, __global uint4 *out, int n)\n"
    "{ out[0] = read_imageui(im, sm, (int2)(1, 1)) + (uint4)(n); }\n"
    "__kernel void img3(__read_only image3d_t im, __global uint4 *out)\n"
    "{ out[0] = read_imageui(im, (int4)(0, 0, 0, 0)); }\n";

/* image-args, last part: img2's arguments set right, then one of them
 * (v: 0 the sampler, 1 the image, 2 the __global buffer) released, then
 * the kernel launched. Correct: the launch is refused, or runs as if the
 * object were still there (the platform retained it); the server lives. */
static void released_arg_launch(result_t *r, int v)
{
    static const char *names[3] = {"sampler", "image", "__global buffer"};
    sess_t s;
    uint64_t ctx, q, prog, k, buf, out, img, smp, one = 1, aseq[4], nseq, o[3] = {0, 0, 0}, rg[3] = {4, 4, 1};
    uint8_t px[64], got[16];
    uint32_t want[4], g[4];
    int32_t n = 0, err = 0;
    int rc;
    char why[400], how[400];

    for (int i = 0; i < 64; i++)
        px[i] = (uint8_t)(i + 1);
    OPEN_OR_FAIL(&s, 1, r);
    ctx = op_context(&s, NULL);
    q = op_queue(&s, ctx, NULL);
    buf = op_buffer(&s, ctx, 4096, NULL, NULL);
    out = op_buffer(&s, ctx, 4096, NULL, NULL);
    img = op_image(&s, ctx, &(img_desc_t){IMG_2D, CL_RGBA, CL_UNSIGNED_INT8, 4, 4, 0, 0, 0, 0}, NULL);
    smp = op_sampler(&s, ctx, 0, CL_ADDRESS_CLAMP_TO_EDGE, CL_FILTER_NEAREST, NULL);
    prog = op_program_built(&s, ctx, k_image_src, why, sizeof(why));
    if (!prog) {
        FAILF(r, "%s", why);
        sess_close(&s);
        return;
    }
    k = op_kernel(&s, prog, "img2", NULL);
    op_image_rect(&s, RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE, q, img, o, 3, rg, 3, px, sizeof(px));
    aseq[0] = op_arg_mem(&s, k, 0, img);
    aseq[1] = op_arg_sampler(&s, k, 1, smp);
    aseq[2] = op_arg_mem(&s, k, 2, v == 2 ? buf : out);
    aseq[3] = op_arg_value(&s, k, 3, &n, sizeof(n));
    rc = op_finish(&s, q, T_REPLY, &err);
    for (int i = 0; i < 4; i++) {
        if (async_err(&s, aseq[i])) {
            FAILF(r, "setting argument %d of img2 failed (%d): harness problem", i, async_err(&s, aseq[i]));
            sess_close(&s);
            return;
        }
    }
    if (rc != 1 || err != CL_SUCCESS || s.n_aerr) {
        FAILF(r, "writing the image: harness problem");
        sess_close(&s);
        return;
    }
    op_release(&s, v == 0 ? RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER : RGPU__CL_OBJECT_KIND__CL_OBJ_MEM,
               v == 0 ? smp : v == 1 ? img : buf);
    nseq = op_ndrange(&s, q, k, 1, &one);
    rc = op_finish(&s, q, T_REPLY, &err);
    if (rc != 1) {
        FAILF(r, "a launch after releasing its %s argument (set, ClRelease, ClNDRange): the finish %s", names[v],
              rc == 0 ? "got no reply" : ended_how(&s, how, sizeof(how)));
    } else if (async_err(&s, nseq) || err != CL_SUCCESS) {
        note(r, "a launch after releasing its %s argument: refused (%d)", names[v],
             async_err(&s, nseq) ? async_err(&s, nseq) : err);
    } else if (v == 2) {
        note(r, "a launch after releasing its %s argument: ran", names[v]);
    } else if (op_read(&s, q, out, 0, sizeof(got), got, &err) != 1 || err != CL_SUCCESS) {
        FAILF(r, "a launch after releasing its %s argument: reading its output failed (%d)", names[v], err);
    } else {
        /* Pixel (1, 1) of the 4x4 image written above. */
        for (int c = 0; c < 4; c++)
            want[c] = px[(1 * 4 + 1) * 4 + c];
        memcpy(g, got, sizeof(g));
        if (memcmp(g, want, sizeof(want)) != 0)
            FAILF(r, "a kernel launched after its %s argument was released ran on the freed object: it read "
                     "(%u, %u, %u, %u), the image held (%u, %u, %u, %u)",
                  names[v], g[0], g[1], g[2], g[3], want[0], want[1], want[2], want[3]);
        else
            note(r, "a launch after releasing its %s argument read the right pixel", names[v]);
    }
    sess_close(&s);
}

static void attack_image_args(result_t *r)
{
    const uint32_t ADDR = CL_ADDRESS_CLAMP_TO_EDGE, FILT = CL_FILTER_NEAREST;
    sess_t s, b;
    uint64_t ctx, q, prog, k2, k3, buf, i2, i3, i2a, i1db, ubuf, smp, smp_gone, bctx, bimg, bsmp;
    expects_t *x = expects_new();
    char why[400];

    OPEN_OR_FAIL(&b, 5000, r);
    bctx = op_context(&b, NULL);
    bimg = op_image(&b, bctx, &(img_desc_t){IMG_2D, CL_RGBA, CL_UNSIGNED_INT8, 4, 4, 0, 0, 0, 0}, NULL);
    bsmp = op_sampler(&b, bctx, 0, ADDR, FILT, NULL);
    if (!harness_ok(&b, r, "the other session's image and sampler")) {
        sess_close(&b);
        return;
    }
    {
        char w2[400];
        if (sess_open(&s, 1, w2, sizeof(w2)) != 0) {
            FAILF(r, "cannot open the attacker's session: %s", w2);
            sess_close(&b);
            return;
        }
    }
    ctx = op_context(&s, NULL);
    q = op_queue(&s, ctx, NULL);
    (void)q;
    buf = op_buffer(&s, ctx, 4096, NULL, NULL);
    ubuf = op_buffer(&s, ctx, 1024, NULL, NULL);
    i2 = op_image(&s, ctx, &(img_desc_t){IMG_2D, CL_RGBA, CL_UNSIGNED_INT8, 4, 4, 0, 0, 0, 0}, NULL);
    i3 = op_image(&s, ctx, &(img_desc_t){IMG_3D, CL_RGBA, CL_UNSIGNED_INT8, 4, 4, 4, 0, 0, 0}, NULL);
    i2a = op_image(&s, ctx, &(img_desc_t){IMG_2DA, CL_RGBA, CL_UNSIGNED_INT8, 4, 4, 0, 2, 0, 0}, NULL);
    i1db = op_image(&s, ctx, &(img_desc_t){IMG_1DB, CL_RGBA, CL_UNSIGNED_INT8, 16, 0, 0, 0, ubuf, 0}, NULL);
    smp = op_sampler(&s, ctx, 0, ADDR, FILT, NULL);
    smp_gone = op_sampler(&s, ctx, 0, ADDR, FILT, NULL);
    prog = op_program_built(&s, ctx, k_image_src, why, sizeof(why));
    if (!prog) {
        FAILF(r, "%s", why);
        goto out;
    }
    k2 = op_kernel(&s, prog, "img2", NULL);
    k3 = op_kernel(&s, prog, "img3", NULL);
    op_release(&s, RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER, smp_gone);
    if (!harness_ok(&s, r, "creating the images, samplers and kernels"))
        goto out;

    /* image2d_t (argument 0 of img2). */
    expect_f(x, op_arg_mem(&s, k2, 0, buf), "a buffer for an image2d_t");
    expect_f(x, op_arg_mem(&s, k2, 0, 0), "id 0 (NULL) for an image2d_t");
    expect_f(x, op_arg_mem(&s, k2, 0, i3), "a 3D image for an image2d_t");
    expect_f(x, op_arg_mem(&s, k2, 0, i2a), "a 2D array image for an image2d_t");
    expect_f(x, op_arg_mem(&s, k2, 0, i1db), "a 1D buffer image for an image2d_t");
    expect_f(x, op_arg_mem(&s, k2, 0, bimg), "the other session's 2D image for an image2d_t");
    expect_f(x, op_arg_mem(&s, k2, 0, smp), "a sampler id (as a mem) for an image2d_t");
    expect_f(x, op_arg_sampler(&s, k2, 0, smp), "a sampler for an image2d_t");
    expect_f(x, op_arg_sampler(&s, k2, 0, i2), "an image id as a sampler for an image2d_t");
    expect_f(x, op_arg_value(&s, k2, 0, &i2, 8), "8 value bytes (the image's id) for an image2d_t");
    expect_f(x, op_arg_local(&s, k2, 0, 64), "64 bytes of local memory for an image2d_t");
    expect_f(x, op_arg_mem(&s, k3, 0, i2), "a 2D image for an image3d_t");
    expect_f(x, op_arg_mem(&s, k3, 0, buf), "a buffer for an image3d_t");
    /* sampler_t (argument 1 of img2). */
    expect_f(x, op_arg_sampler(&s, k2, 1, smp_gone), "a released sampler for a sampler_t");
    expect_f(x, op_arg_sampler(&s, k2, 1, bsmp), "the other session's sampler for a sampler_t");
    expect_f(x, op_arg_sampler(&s, k2, 1, 0), "sampler id 0 for a sampler_t");
    expect_f(x, op_arg_sampler(&s, k2, 1, 777777), "a nonexistent sampler for a sampler_t");
    expect_f(x, op_arg_sampler(&s, k2, 1, i2), "an image id as a sampler for a sampler_t");
    expect_f(x, op_arg_sampler(&s, k2, 1, ctx), "a context id as a sampler for a sampler_t");
    expect_f(x, op_arg_mem(&s, k2, 1, i2), "an image for a sampler_t");
    expect_f(x, op_arg_mem(&s, k2, 1, buf), "a buffer for a sampler_t");
    {
        uint32_t bits = 0x10 | 0x2 | 0x0;   /* CLK_FILTER_NEAREST | CLK_ADDRESS_CLAMP_TO_EDGE: a kernel's sampler bits */
        uint64_t raw = 0x4141414141414141ull;
        expect_f(x, op_arg_value(&s, k2, 1, &bits, 4), "4 value bytes (sampler bits) for a sampler_t");
        expect_f(x, op_arg_value(&s, k2, 1, &raw, 8), "8 raw value bytes for a sampler_t");
    }
    /* __global uint4 * (argument 2 of img2) and int (argument 3). */
    expect_f(x, op_arg_mem(&s, k2, 2, i2), "an image for a __global pointer");
    expect_f(x, op_arg_mem(&s, k2, 2, i1db), "a 1D buffer image for a __global pointer");
    expect_f(x, op_arg_mem(&s, k2, 2, smp), "a sampler id (as a mem) for a __global pointer");
    expect_f(x, op_arg_sampler(&s, k2, 2, smp), "a sampler for a __global pointer");
    expect_f(x, op_arg_mem(&s, k3, 1, i3), "an image for the __global pointer of img3");
    expect_f(x, op_arg_sampler(&s, k2, 3, smp), "a sampler for an int");
    expect_f(x, op_arg_mem(&s, k2, 3, i2), "an image for an int");
    if (expects_check(&s, x, r, "after the wrong arguments") != 0)
        goto out;

    sess_close(&s);
    sess_close(&b);
    /* Set right, then released before the launch: each in a session of its own. */
    for (int v = 0; v < 3 && !r->failed; v++) {
        if (variants & (1 << v))
            released_arg_launch(r, v);
    }
    if (!r->failed)
        note(r, "%d wrong image, sampler and pointer arguments refused", x->refused);
out:
    sess_close(&s);
    sess_close(&b);
}

/*
 * sampler-bad: samplers no platform should create: addressing modes and
 * filter modes that do not exist (0, one past the last, 2^32-1, each
 * other's values), in a nonexistent context, another session's, a queue's
 * id, under an id already in use; sampler properties encoded wrong (a mode
 * sent with the wrong wire type, a truncated varint, a length past the
 * body, a mode given twice, the last one invalid); queries of the
 * sampler's context (a platform handle); releases of a sampler twice and
 * as another kind. Correct: each refused (AsyncError, an error reply, or a
 * SessionError for a body that does not decode), and the session, where
 * it lives on, still creates and uses a valid sampler.
 */
static void attack_sampler_bad(result_t *r)
{
    const uint32_t A0 = CL_ADDRESS_NONE, F0 = CL_FILTER_NEAREST;
    sess_t s, b;
    uint64_t ctx, q, buf, smp, bctx, seq;
    expects_t *x = expects_new();
    char how[400];

    OPEN_OR_FAIL(&b, 5000, r);
    bctx = op_context(&b, NULL);
    if (!harness_ok(&b, r, "the other session's context")) {
        sess_close(&b);
        return;
    }
    {
        char w2[400];
        if (sess_open(&s, 1, w2, sizeof(w2)) != 0) {
            FAILF(r, "cannot open the attacker's session: %s", w2);
            sess_close(&b);
            return;
        }
    }
    ctx = op_context(&s, NULL);
    q = op_queue(&s, ctx, NULL);
    buf = op_buffer(&s, ctx, 4096, NULL, NULL);
    smp = op_sampler(&s, ctx, 1, CL_ADDRESS_CLAMP, CL_FILTER_LINEAR, NULL);
    if (!harness_ok(&s, r, "a context and a valid sampler"))
        goto out;
    {
        static const struct {
            const char *what;
            uint32_t addr, filt;
        } modes[] = {
            {"addressing mode 0", 0, CL_FILTER_NEAREST},
            {"addressing mode 0x112F (one before CL_ADDRESS_NONE)", 0x112F, CL_FILTER_NEAREST},
            {"addressing mode 0x1135 (one past CL_ADDRESS_MIRRORED_REPEAT)", 0x1135, CL_FILTER_NEAREST},
            {"addressing mode 0xFFFFFFFF", 0xFFFFFFFFu, CL_FILTER_NEAREST},
            {"a filter mode (CL_FILTER_LINEAR) as addressing mode", CL_FILTER_LINEAR, CL_FILTER_NEAREST},
            {"filter mode 0", CL_ADDRESS_CLAMP, 0},
            {"filter mode 0x1142 (one past CL_FILTER_LINEAR)", CL_ADDRESS_CLAMP, 0x1142},
            {"filter mode 0x113F", CL_ADDRESS_CLAMP, 0x113F},
            {"filter mode 0xFFFFFFFF", CL_ADDRESS_CLAMP, 0xFFFFFFFFu},
            {"an addressing mode (CL_ADDRESS_REPEAT) as filter mode", CL_ADDRESS_CLAMP, CL_ADDRESS_REPEAT},
            {"both modes 0", 0, 0},
        };
        for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
            for (int norm = 0; norm < 2; norm++) {
                op_sampler(&s, ctx, norm, modes[i].addr, modes[i].filt, &seq);
                expect_f(x, seq, "%s (%s coordinates)", modes[i].what, norm ? "normalized" : "unnormalized");
            }
        }
    }
    op_sampler(&s, 777777, 0, A0, F0, &seq);
    expect_f(x, seq, "a sampler in a nonexistent context");
    op_sampler(&s, 0, 0, A0, F0, &seq);
    expect_f(x, seq, "a sampler in context 0");
    op_sampler(&s, bctx, 0, A0, F0, &seq);
    expect_f(x, seq, "a sampler in the other session's context");
    op_sampler(&s, q, 0, A0, F0, &seq);
    expect_f(x, seq, "a sampler in a queue id as context");
    op_sampler(&s, smp, 0, A0, F0, &seq);
    expect_f(x, seq, "a sampler in a sampler id as context");
    expect_f(x, op_sampler_id(&s, smp, ctx, 0, A0, F0), "a sampler under the id of a sampler");
    expect_f(x, op_sampler_id(&s, buf, ctx, 0, A0, F0), "a sampler under the id of a buffer");
    expect_f(x, op_release(&s, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, smp), "a release of a sampler as a buffer");
    expect_f(x, op_release(&s, RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER, buf), "a release of a buffer as a sampler");
    expect_f(x, op_release(&s, RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER, ctx), "a release of a context as a sampler");
    /* Duplicate fields: the last one counts, and it is invalid. */
    {
        static const uint8_t dup[] = {0x08, 0x64, 0x10, 0x01, 0x20, 0xb0, 0x22, 0x20, 0x00, 0x28, 0xc0, 0x22};
        expect_f(x, send_raw_body(&s, RGPU__MSG_TYPE__MSG_CL_CREATE_SAMPLER, dup, sizeof(dup)),
                 "addressing mode given twice, CL_ADDRESS_NONE then 0");
    }
    if (expects_check(&s, x, r, "after the bad samplers") != 0)
        goto out;

    /* Queries: the sampler's context is a platform handle. */
    {
        static const struct {
            const char *what;
            uint32_t param;
            int must_refuse;
        } qs[] = {
            {"CL_SAMPLER_CONTEXT", CL_SAMPLER_CONTEXT, 1},
            {"CL_SAMPLER_REFERENCE_COUNT", CL_SAMPLER_REFERENCE_COUNT, 0},
            {"CL_SAMPLER_ADDRESSING_MODE", CL_SAMPLER_ADDRESSING_MODE, 0},
        };
        for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++) {
            Rgpu__ClGetInfo m = RGPU__CL_GET_INFO__INIT;
            Rgpu__ClInfoReply *rep;
            frame_t f;
            int rc;

            m.kind = RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER;
            m.id = smp;
            m.param = qs[i].param;
            seq = send_frame(&s, RGPU__MSG_TYPE__MSG_CL_GET_INFO, &m.base, NULL, 0);
            rc = seq ? wait_reply(&s, seq, T_REPLY, &f) : -1;
            if (rc != 1) {
                FAILF(r, "query %s: %s", qs[i].what, rc == 0 ? "no reply" : ended_how(&s, how, sizeof(how)));
                goto out;
            }
            rep = rgpu__cl_info_reply__unpack(NULL, f.hdr.body_len, f.body);
            if (rep && rep->cl_error == CL_SUCCESS && qs[i].must_refuse) {
                uint64_t w = 0;
                memcpy(&w, rep->value.data, rep->value.len < 8 ? rep->value.len : 8);
                FAILF(r, "query %s answered %zu bytes (0x%llx: the server's own handle)", qs[i].what,
                      rep->value.len, (unsigned long long)w);
            }
            if (rep)
                rgpu__cl_info_reply__free_unpacked(rep, NULL);
            frame_free(&f);
        }
    }
    /* Released twice. */
    {
        uint64_t s2 = op_sampler(&s, ctx, 0, CL_ADDRESS_CLAMP_TO_EDGE, CL_FILTER_NEAREST, NULL);
        op_release(&s, RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER, s2);
        expect_f(x, op_release(&s, RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER, s2), "a second release of a sampler");
        op_sampler(&s, ctx, 0, CL_ADDRESS_CLAMP_TO_EDGE, CL_FILTER_NEAREST, &seq);
        if (expects_check(&s, x, r, "after releasing a sampler twice") != 0)
            goto out;
    }
    /* The session still works: a valid sampler in a kernel. */
    {
        uint64_t prog, k, img, smp2, o[3] = {0, 0, 0}, rg[3] = {4, 4, 1}, one = 1;
        uint8_t px[64], got[16];
        int32_t n = 0, err = 0;
        char why[400];

        for (int i = 0; i < 64; i++)
            px[i] = (uint8_t)(3 * i);
        img = op_image(&s, ctx, &(img_desc_t){IMG_2D, CL_RGBA, CL_UNSIGNED_INT8, 4, 4, 0, 0, 0, 0}, NULL);
        op_image_rect(&s, RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE, q, img, o, 3, rg, 3, px, sizeof(px));
        smp2 = op_sampler(&s, ctx, 0, CL_ADDRESS_CLAMP_TO_EDGE, CL_FILTER_NEAREST, NULL);
        prog = op_program_built(&s, ctx, k_image_src, why, sizeof(why));
        if (!prog) {
            FAILF(r, "afterwards: %s", why);
            goto out;
        }
        k = op_kernel(&s, prog, "img2", NULL);
        op_arg_mem(&s, k, 0, img);
        op_arg_sampler(&s, k, 1, smp2);
        op_arg_mem(&s, k, 2, buf);
        op_arg_value(&s, k, 3, &n, sizeof(n));
        op_ndrange(&s, q, k, 1, &one);
        if (op_read(&s, q, buf, 0, sizeof(got), got, &err) != 1 || err != CL_SUCCESS || s.n_aerr) {
            FAILF(r, "afterwards a valid sampler in a kernel failed (%d%s%s)", s.n_aerr ? s.aerr[0].err : err,
                  s.n_aerr ? ": " : "", s.n_aerr ? s.aerr[0].what : "");
        } else {
            uint32_t g[4];
            memcpy(g, got, sizeof(g));
            if (g[0] != px[20] || g[1] != px[21] || g[2] != px[22] || g[3] != px[23])
                FAILF(r, "afterwards a valid sampler in a kernel read (%u, %u, %u, %u), not pixel (1, 1)", g[0], g[1],
                      g[2], g[3]);
        }
    }
    if (r->failed)
        goto out;
    note(r, "%d bad samplers, releases and encodings refused; a valid sampler still works", x->refused);

    /* Bodies that do not decode: each in its own session. */
    {
        static const struct {
            const char *what;
            uint8_t body[16];
            uint32_t len;
        } bodies[] = {
            {"addressing mode with wire type 2 (a length-delimited list)", {0x08, 0x65, 0x10, 0x64, 0x22, 0x02, 0x30, 0x11}, 8},
            {"a truncated varint", {0x08, 0x65, 0x10, 0x64, 0x20, 0xb0, 0xa2}, 7},
            {"an unknown field claiming 2^31 bytes", {0x08, 0x64, 0x52, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00}, 9},
            {"a field number 0", {0x00, 0x01, 0x08, 0x64}, 4},
            {"a single 0xFF byte", {0xff}, 1},
        };
        for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
            sess_t t;
            uint64_t c;
            if (sess_open(&t, 100, how, sizeof(how)) != 0) {
                FAILF(r, "cannot open a session: %s", how);
                goto out;
            }
            c = op_context(&t, NULL);
            (void)c;        /* id 100: the bodies name context 100 (0x64) */
            seq = send_raw_body(&t, RGPU__MSG_TYPE__MSG_CL_CREATE_SAMPLER, bodies[i].body, bodies[i].len);
            if (refused_within(&t, seq, T_REFUSE, how, sizeof(how)))
                note(r, "%s: %s", bodies[i].what, how);
            else if (sess_ping(&t, T_REPLY) == 1)
                FAILF(r, "%s: accepted (no error, the session goes on)", bodies[i].what);
            else
                FAILF(r, "%s: no answer, and the session no longer answers a ping", bodies[i].what);
            sess_close(&t);
        }
    }
out:
    sess_close(&s);
    sess_close(&b);
}

/* ---- main ----------------------------------------------------------- */

typedef struct {
    const char *name;
    void (*fn)(result_t *r);
} attack_t;

static const attack_t attacks[] = {
    {"arg-pointer", attack_arg_pointer},
    {"info-pointer", attack_info_pointer},
    {"subbuf-rect", attack_subbuf_rect},
    {"wait-forever", attack_wait_forever},
    {"wait-then-set", attack_wait_then_set},
    {"user-event-fail", attack_user_event_fail},
    {"prehello-body", attack_prehello_body},
    {"bulk-to-nothing", attack_bulk_to_nothing},
    {"readrect-huge", attack_readrect_huge},
    {"release-twice", attack_release_twice},
    {"bad-ids", attack_bad_ids},
    {"limits", attack_limits},
    {"image-bad-desc", attack_image_bad_desc},
    {"image-bulk", attack_image_bulk},
    {"image-regions", attack_image_regions},
    {"image-args", attack_image_args},
    {"sampler-bad", attack_sampler_bad},
    {"arg-local-huge", attack_arg_local_huge},
    {"ndrange-huge", attack_ndrange_huge},
    {"stale-memory", attack_stale_memory},
    {"held-memory", attack_held_memory},
    {"stream-data", attack_stream_data},
    {"include-server-file", attack_include_server_file},
};
#define N_ATTACKS (sizeof(attacks) / sizeof(attacks[0]))

/* The server still opens a session and answers a ping: 0, or -1 with why. */
static int server_alive(char *why, size_t cap)
{
    sess_t s;
    char how[400];
    int rc;

    if (sess_open(&s, 1, why, cap) != 0)
        return -1;
    rc = sess_ping(&s, T_REPLY);
    if (rc != 1)
        snprintf(why, cap, "ping: %s", rc == 0 ? "no pong" : ended_how(&s, how, sizeof(how)));
    sess_close(&s);
    return rc == 1 ? 0 : -1;
}

static int run_attack(const attack_t *a)
{
    result_t r;
    char why[400];
    int64_t t0 = now_ms();

    memset(&r, 0, sizeof(r));
    a->fn(&r);
    if (server_alive(why, sizeof(why)) != 0)
        FAILF(&r, "afterwards the server no longer serves a new session (%s): it crashed or hangs", why);
    printf("ATTACK %s result=%s: %s (%.1f s)\n", a->name, r.failed ? "FAIL" : "pass", r.msg[0] ? r.msg : "-",
           (now_ms() - t0) / 1000.0);
    fflush(stdout);
    return r.failed;
}

static void usage(FILE *to)
{
    fprintf(to, "usage: hostile [--metrics HOST:PORT] [--server-pid PID] HOST:PORT ATTACK...|all\n"
                "       hostile --list\nattacks:");
    for (size_t i = 0; i < N_ATTACKS; i++)
        fprintf(to, " %s", attacks[i].name);
    fprintf(to, "\n");
}

int main(int argc, char **argv)
{
    const char *names[64];
    int n_names = 0, failed = 0;

    signal(SIGPIPE, SIG_IGN);
    if (getenv("HOSTILE_VARIANTS"))
        variants = atoi(getenv("HOSTILE_VARIANTS")) & 7;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--list") == 0) {
            for (size_t j = 0; j < N_ATTACKS; j++)
                printf("%s\n", attacks[j].name);
            return 0;
        } else if (strcmp(argv[i], "--metrics") == 0 && i + 1 < argc) {
            metrics_addr = argv[++i];
        } else if (strcmp(argv[i], "--server-pid") == 0 && i + 1 < argc) {
            server_pid = atoi(argv[++i]);
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-') {
            usage(stderr);
            return 2;
        } else if (!server_addr) {
            server_addr = argv[i];
        } else if (n_names < 64) {
            names[n_names++] = argv[i];
        }
    }
    if (!server_addr || n_names == 0) {
        usage(stderr);
        return 2;
    }
    for (int i = 0; i < n_names; i++) {
        int found = 0;
        for (size_t j = 0; j < N_ATTACKS; j++) {
            if (strcmp(names[i], "all") == 0 || strcmp(names[i], attacks[j].name) == 0) {
                failed |= run_attack(&attacks[j]);
                found = 1;
            }
        }
        if (!found) {
            fprintf(stderr, "hostile: no attack named \"%s\"\n", names[i]);
            usage(stderr);
            return 2;
        }
    }
    return failed ? 1 : 0;
}
