/*
 * cuda_hostile: the CUDA side of rgpu-server spoken by hand (no client
 * library), to check what the server itself must guarantee whatever the
 * client sends: ranges checked against the session's allocations, unknown
 * functions refused, the lease's memory quota held, a session's memory
 * freed when it ends however it ends, and the server serving on after each.
 *
 *   cuda_hostile HOST:PORT CHECK [ARGS]
 *
 *   refused        the server has no CUDA: a CUDA hello gets a SessionError
 *                  whose reason says why, an OpenCL hello still its reply
 *   memory         malloc, copies (1D, 2D, device to device), memset, free,
 *                  every byte compared (cuda-emulated)
 *   copy-outside   copies and memsets outside the allocations, forged and
 *                  freed addresses, double free: each refused with
 *                  CUDA_ERROR_INVALID_VALUE, nothing written, session goes on
 *   unknown-function  a name no module has, an id never created, a launch
 *                  with too few parameter bytes: refused; a kernel given a
 *                  forged pointer faults (sticky) until cudaDeviceReset;
 *                  the module cache answers a second session by hash
 *   quota KEYFILE  with a lease of 64 MiB per device: 40 MiB fit, 40 more
 *                  and 1 TiB do not, and fit again after a free
 *   teardown       a session holding 2.5 GiB of the emulated device's 4 GiB
 *                  vanishes without a goodbye; a new session gets 2.5 GiB
 *                  within the deadline
 *   huge           1 TiB without a quota: CUDA_ERROR_OUT_OF_MEMORY
 *   malformed      a body that does not unpack, a copy whose bulk is not
 *                  the size it announces, bulk on a call that takes none, a
 *                  message type no CUDA call has: each ends that session
 *                  with a reason, and the next session is served
 *   hold           takes memory, a module, a function, a stream and an event,
 *                  prints READY, and waits (at most 120 s) for the server to
 *                  end the session (its shutdown): a server that frees
 *                  everything then exits cleanly, under ASan without leaks
 *
 * Prints "PASS <check>: ..." lines, or "FAIL <check>: ..." and exits 1.
 * Exit 2: bad usage.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "cuda.pb-c.h"
#include "raw_wire.h"
#include "rgpu/frame.h"
#include "rgpu/token.h"
#include "rgpu/util.h"
#include "rgpu/wire.h"
#include "session.pb-c.h"

#define MIB (1024ull * 1024)
#define T_REPLY 20000           /* ms: an ordinary reply (ASan is slow) */

/* CUresult values the checks expect (cuda.h's numbering). */
#define CU_OK 0
#define CU_INVALID_VALUE 1
#define CU_OUT_OF_MEMORY 2
#define CU_INVALID_DEVICE 101
#define CU_INVALID_HANDLE 400
#define CU_NOT_FOUND 500
#define CU_ILLEGAL_ADDRESS 700

static const char *check_name = "?";

static void __attribute__((noreturn, format(printf, 1, 2))) fail(const char *fmt, ...)
{
    va_list ap;

    printf("FAIL %s: ", check_name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    exit(1);
}

static void __attribute__((format(printf, 1, 2))) pass(const char *fmt, ...)
{
    va_list ap;

    printf("PASS %s: ", check_name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- a session by hand ------------------------------------------------ */

typedef struct {
    int fd;
    uint64_t seq;
    uint64_t next_id;
    /* Asynchronous errors seen, by the failed request's seq. */
    struct {
        uint64_t seq;
        int32_t err;
        char what[256];
    } aerr[256];
    int n_aerr;
    char session_error[512];
    int ended;
    raw_wire_t rw;              /* frames in and out as the server's transport takes them */
} sess_t;

typedef struct {
    rgpu_frame_header_t hdr;
    uint8_t *body;
    uint8_t *bulk;
} frame_t;

static uint64_t send_msg(sess_t *s, uint16_t type, const ProtobufCMessage *msg, const void *bulk,
                         uint64_t bulk_len)
{
    size_t need = rgpu_frame_packed_size(msg);
    uint8_t *buf = malloc(need);
    uint64_t seq = ++s->seq;
    size_t len;

    if (!buf)
        fail("out of memory");
    len = rgpu_frame_pack(buf, type, seq, 0, msg, bulk_len);
    /* Past the eager limit in fragments (raw_wire.h). */
    s->rw.fd = s->fd;
    if (raw_wire_send(&s->rw, buf, len, bulk, bulk_len, now_ms() + T_REPLY) != 1)
        fail("sending message type %u failed", type);
    free(buf);
    return seq;
}

static void frame_free(frame_t *f)
{
    free(f->body);
    free(f->bulk);
    memset(f, 0, sizeof(*f));
}

/* The next frame: 1, or 0 nothing within timeout, -1 the link closed. */
static int next_frame(sess_t *s, int timeout_ms, frame_t *f)
{
    rgpu_frame_limits_t limits = {RGPU_FRAME_DEFAULT_MAX_BODY, RGPU_FRAME_DEFAULT_MAX_BULK};
    uint8_t *whole = NULL;
    size_t len;
    int rc;

    memset(f, 0, sizeof(*f));
    /* Whole frames: out of the server's batches, put back together from
     * its fragments (raw_wire.h). */
    s->rw.fd = s->fd;
    rc = raw_wire_next(&s->rw, now_ms() + timeout_ms, T_REPLY, &whole, &len);
    if (rc != 1)
        return rc;
    if (rgpu_frame_header_decode(whole, &limits, &f->hdr) != RGPU_OK)
        fail("the server sent a bad frame header");
    f->body = malloc(f->hdr.body_len + 1);
    f->bulk = malloc(f->hdr.bulk_len + 1);
    if (!f->body || !f->bulk)
        fail("out of memory for a frame of %llu bytes", (unsigned long long)f->hdr.bulk_len);
    memcpy(f->body, whole + RGPU_FRAME_HEADER_SIZE, f->hdr.body_len);
    memcpy(f->bulk, whole + RGPU_FRAME_HEADER_SIZE + f->hdr.body_len, (size_t)f->hdr.bulk_len);
    free(whole);
    if (f->hdr.type == RGPU__MSG_TYPE__MSG_ASYNC_ERROR) {
        Rgpu__AsyncError *m = rgpu__async_error__unpack(NULL, f->hdr.body_len, f->body);

        if (m && s->n_aerr < 256) {
            s->aerr[s->n_aerr].seq = m->seq;
            s->aerr[s->n_aerr].err = m->cl_error;
            snprintf(s->aerr[s->n_aerr].what, sizeof(s->aerr[0].what), "%s", m->what);
            s->n_aerr++;
        }
        if (m)
            rgpu__async_error__free_unpacked(m, NULL);
    } else if (f->hdr.type == RGPU__MSG_TYPE__MSG_SESSION_ERROR) {
        Rgpu__SessionError *m = rgpu__session_error__unpack(NULL, f->hdr.body_len, f->body);

        snprintf(s->session_error, sizeof(s->session_error), "%s", m ? m->reason : "?");
        s->ended = 1;
        if (m)
            rgpu__session_error__free_unpacked(m, NULL);
    }
    return 1;
}

/* Waits for the reply to seq; pieces of its bulk sent ahead (BulkPart)
 * are gathered into *data_p (caller frees), *len_p bytes. */
static frame_t wait_reply(sess_t *s, uint64_t seq, uint8_t **data_p, uint64_t *len_p)
{
    uint8_t *data = NULL;
    uint64_t len = 0;
    frame_t f;

    for (;;) {
        int rc = next_frame(s, T_REPLY, &f);

        if (rc == 0)
            fail("no reply to request %llu within %d ms", (unsigned long long)seq, T_REPLY);
        if (rc < 0 || s->ended)
            fail("the session ended waiting for request %llu: %s", (unsigned long long)seq,
                 s->session_error[0] ? s->session_error : "link closed");
        if (f.hdr.seq == seq && f.hdr.type == RGPU__MSG_TYPE__MSG_BULK_PART) {
            uint8_t *grown = realloc(data, len + f.hdr.bulk_len + 1);

            if (!grown)
                fail("out of memory");
            data = grown;
            memcpy(data + len, f.bulk, f.hdr.bulk_len);
            len += f.hdr.bulk_len;
            frame_free(&f);
            continue;
        }
        if (f.hdr.seq == seq && f.hdr.type != RGPU__MSG_TYPE__MSG_ASYNC_ERROR)
            break;
        frame_free(&f);
    }
    if (f.hdr.bulk_len) {       /* a reply with its bulk inline */
        uint8_t *grown = realloc(data, len + f.hdr.bulk_len + 1);

        if (!grown)
            fail("out of memory");
        data = grown;
        memcpy(data + len, f.bulk, f.hdr.bulk_len);
        len += f.hdr.bulk_len;
    }
    if (data_p)
        *data_p = data;
    else
        free(data);
    if (len_p)
        *len_p = len;
    return f;
}

static sess_t *open_session(const char *addr, Rgpu__ApiFamily api, const char *token,
                            int expect_refusal)
{
    Rgpu__Hello hello = RGPU__HELLO__INIT;
    struct sockaddr_in sa = {0};
    sess_t *s = calloc(1, sizeof(*s));
    char host[256];
    uint16_t port;
    int one = 1;
    frame_t f;
    uint64_t seq;

    if (!s || rgpu_addr_split(addr, host, sizeof(host), &port) != RGPU_OK)
        fail("bad address %s", addr);
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, host, &sa.sin_addr);
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->fd < 0 || connect(s->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        fail("cannot connect to %s: %s", addr, strerror(errno));
    setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->next_id = 1;
    hello.protocol_version = RGPU_PROTOCOL_VERSION;
    hello.api = api;
    hello.client_arch = (char *)"x86_64";
    hello.client_host = (char *)"cuda_hostile";
    hello.client_pid = (uint32_t)getpid();
    hello.lease_token = (char *)(token ? token : "");
    seq = send_msg(s, RGPU__MSG_TYPE__MSG_HELLO, &hello.base, NULL, 0);
    for (;;) {
        int rc = next_frame(s, T_REPLY, &f);

        if (rc != 1 && expect_refusal && s->ended)
            return s;
        if (rc != 1)
            fail("no hello reply from %s", addr);
        if (s->ended) {
            frame_free(&f);
            if (expect_refusal)
                return s;
            fail("hello refused: %s", s->session_error);
        }
        if (f.hdr.type == RGPU__MSG_TYPE__MSG_HELLO_REPLY && f.hdr.seq == seq)
            break;
        frame_free(&f);
    }
    frame_free(&f);
    if (expect_refusal)
        fail("the server accepted a %s session", api == RGPU__API_FAMILY__API_CUDA ? "CUDA" : "?");
    return s;
}

static void close_session(sess_t *s, int goodbye)
{
    if (goodbye) {
        Rgpu__Goodbye bye = RGPU__GOODBYE__INIT;

        send_msg(s, RGPU__MSG_TYPE__MSG_GOODBYE, &bye.base, NULL, 0);
    }
    close(s->fd);
    raw_wire_fini(&s->rw);
    free(s);
}

/* ---- CUDA calls -------------------------------------------------------- */

static int cu_malloc(sess_t *s, uint64_t size, uint64_t *dptr_p)
{
    Rgpu__CuMalloc m = RGPU__CU_MALLOC__INIT;
    Rgpu__CuMallocReply *r;
    frame_t f;
    int err;

    m.size = size;
    f = wait_reply(s, send_msg(s, RGPU__MSG_TYPE__MSG_CU_MALLOC, &m.base, NULL, 0), NULL, NULL);
    r = rgpu__cu_malloc_reply__unpack(NULL, f.hdr.body_len, f.body);
    if (!r)
        fail("malloc reply does not unpack");
    err = r->cu_error;
    *dptr_p = r->dptr;
    rgpu__cu_malloc_reply__free_unpacked(r, NULL);
    frame_free(&f);
    return err;
}

static uint64_t cu_free(sess_t *s, uint64_t dptr)
{
    Rgpu__CuFree m = RGPU__CU_FREE__INIT;

    m.dptr = dptr;
    return send_msg(s, RGPU__MSG_TYPE__MSG_CU_FREE, &m.base, NULL, 0);
}

static uint64_t cu_h2d(sess_t *s, uint64_t dst, const void *data, uint64_t size)
{
    Rgpu__CuMemcpyH2D m = RGPU__CU_MEMCPY_H2_D__INIT;

    m.dst = dst;
    m.size = size;
    return send_msg(s, RGPU__MSG_TYPE__MSG_CU_MEMCPY_H2D, &m.base, data, size);
}

/* D2H: the CUresult, and the data in *data_p (caller frees) on success. */
static int cu_d2h(sess_t *s, uint64_t src, uint64_t size, uint8_t **data_p)
{
    Rgpu__CuMemcpyD2H m = RGPU__CU_MEMCPY_D2_H__INIT;
    Rgpu__CuReadReply *r;
    uint8_t *data = NULL;
    uint64_t len = 0;
    frame_t f;
    int err;

    m.src = src;
    m.size = size;
    m.blocking = 1;
    f = wait_reply(s, send_msg(s, RGPU__MSG_TYPE__MSG_CU_MEMCPY_D2H, &m.base, NULL, 0), &data,
                   &len);
    r = rgpu__cu_read_reply__unpack(NULL, f.hdr.body_len, f.body);
    if (!r)
        fail("read reply does not unpack");
    err = r->cu_error;
    rgpu__cu_read_reply__free_unpacked(r, NULL);
    frame_free(&f);
    if (err == CU_OK && len != size)
        fail("a successful copy of %llu bytes brought %llu", (unsigned long long)size,
             (unsigned long long)len);
    if (err != CU_OK && len)
        fail("a failed copy (error %d) still brought %llu bytes", err, (unsigned long long)len);
    if (data_p)
        *data_p = data;
    else
        free(data);
    return err;
}

static uint64_t cu_memset(sess_t *s, uint64_t dst, uint8_t value, uint64_t size)
{
    Rgpu__CuMemset m = RGPU__CU_MEMSET__INIT;

    m.dst = dst;
    m.value = value;
    m.element_size = 1;
    m.width = size;
    m.height = 1;
    return send_msg(s, RGPU__MSG_TYPE__MSG_CU_MEMSET, &m.base, NULL, 0);
}

static uint64_t cu_d2d(sess_t *s, uint64_t dst, uint64_t src, uint64_t size)
{
    Rgpu__CuMemcpyD2D m = RGPU__CU_MEMCPY_D2_D__INIT;

    m.dst = dst;
    m.src = src;
    m.size = size;
    return send_msg(s, RGPU__MSG_TYPE__MSG_CU_MEMCPY_D2D, &m.base, NULL, 0);
}

/* cudaDeviceSynchronize: the CUresult; every async error sent before it
 * has arrived by then (the server answers in order). */
static int cu_sync(sess_t *s)
{
    Rgpu__CuDeviceSync m = RGPU__CU_DEVICE_SYNC__INIT;
    Rgpu__CuStatusReply *r;
    frame_t f;
    int err;

    f = wait_reply(s, send_msg(s, RGPU__MSG_TYPE__MSG_CU_DEVICE_SYNC, &m.base, NULL, 0), NULL,
                   NULL);
    r = rgpu__cu_status_reply__unpack(NULL, f.hdr.body_len, f.body);
    if (!r)
        fail("status reply does not unpack");
    err = r->cu_error;
    rgpu__cu_status_reply__free_unpacked(r, NULL);
    frame_free(&f);
    return err;
}

/* The async error reported for request seq, or 0. */
static int aerr_of(sess_t *s, uint64_t seq, const char **what_p)
{
    for (int i = 0; i < s->n_aerr; i++) {
        if (s->aerr[i].seq == seq) {
            if (what_p)
                *what_p = s->aerr[i].what;
            return s->aerr[i].err;
        }
    }
    return 0;
}

static void expect_aerr(sess_t *s, uint64_t seq, int want, const char *what)
{
    const char *said = "";
    int got = aerr_of(s, seq, &said);

    if (got != want)
        fail("%s: expected error %d, the server reported %d", what, want, got);
    pass("%s refused with error %d (\"%s\")", what, got, said);
}

/* A fatbinary's header and nothing the emulation needs more. */
static const uint8_t fake_fatbin[64] = {0x50, 0xed, 0x55, 0xba, 0x01, 0x00, 0x10, 0x00};

/* Loads fake_fatbin under a new module id; returns it. *sent_data_p: 1
 * when the server asked for the bytes, 0 when it knew the hash. */
static uint64_t cu_module(sess_t *s, int *sent_data_p)
{
    Rgpu__CuModuleLoad m = RGPU__CU_MODULE_LOAD__INIT;
    Rgpu__CuModuleReply *r;
    uint8_t sha[32] = {0};
    frame_t f;
    int need;

    /* The server caches by the hash of what it received, so a claim finds
     * its entry only when it is the real SHA-256 of the bytes. */
    crypto_hash_sha256(sha, fake_fatbin, sizeof(fake_fatbin));
    m.id = s->next_id++;
    m.sha256.data = sha;
    m.sha256.len = 32;
    m.size = sizeof(fake_fatbin);
    f = wait_reply(s, send_msg(s, RGPU__MSG_TYPE__MSG_CU_MODULE_LOAD, &m.base, NULL, 0), NULL,
                   NULL);
    r = rgpu__cu_module_reply__unpack(NULL, f.hdr.body_len, f.body);
    if (!r || r->cu_error)
        fail("module load failed: %d %s", r ? r->cu_error : -1, r ? r->log : "");
    need = r->need_data;
    rgpu__cu_module_reply__free_unpacked(r, NULL);
    frame_free(&f);
    if (need) {
        Rgpu__CuModuleData d = RGPU__CU_MODULE_DATA__INIT;

        d.id = m.id;
        d.size = sizeof(fake_fatbin);
        f = wait_reply(s, send_msg(s, RGPU__MSG_TYPE__MSG_CU_MODULE_DATA, &d.base, fake_fatbin,
                                   sizeof(fake_fatbin)), NULL, NULL);
        r = rgpu__cu_module_reply__unpack(NULL, f.hdr.body_len, f.body);
        if (!r || r->cu_error)
            fail("module data refused: %d %s", r ? r->cu_error : -1, r ? r->log : "");
        rgpu__cu_module_reply__free_unpacked(r, NULL);
        frame_free(&f);
    }
    *sent_data_p = need;
    return m.id;
}

static uint64_t cu_function(sess_t *s, uint64_t module, const char *name, uint64_t *seq_p)
{
    Rgpu__CuFunction m = RGPU__CU_FUNCTION__INIT;

    m.id = s->next_id++;
    m.module = module;
    m.name = (char *)name;
    *seq_p = send_msg(s, RGPU__MSG_TYPE__MSG_CU_FUNCTION, &m.base, NULL, 0);
    return m.id;
}

/* vector_add<<<grid, 256>>>(a, b, c, n) with params_len bytes of the
 * parameter buffer (28 is the whole). */
static uint64_t cu_launch_vadd(sess_t *s, uint64_t fn, uint64_t a, uint64_t b, uint64_t c,
                               int32_t n, size_t params_len)
{
    Rgpu__CuLaunch m = RGPU__CU_LAUNCH__INIT;
    uint8_t params[32] = {0};

    memcpy(params, &a, 8);
    memcpy(params + 8, &b, 8);
    memcpy(params + 16, &c, 8);
    memcpy(params + 24, &n, 4);
    m.function = fn;
    m.grid_x = (uint32_t)((n + 255) / 256);
    m.grid_y = m.grid_z = 1;
    m.block_x = 256;
    m.block_y = m.block_z = 1;
    m.params.data = params;
    m.params.len = params_len;
    return send_msg(s, RGPU__MSG_TYPE__MSG_CU_LAUNCH, &m.base, NULL, 0);
}

/* ---- the checks -------------------------------------------------------- */

static void check_refused(const char *addr)
{
    sess_t *s = open_session(addr, RGPU__API_FAMILY__API_CUDA, NULL, 1);

    if (!strstr(s->session_error, "has no CUDA devices"))
        fail("the refusal says \"%s\", not why", s->session_error);
    pass("a CUDA session is refused: \"%s\"", s->session_error);
    close_session(s, 0);
    s = open_session(addr, RGPU__API_FAMILY__API_OPENCL, NULL, 0);
    pass("an OpenCL session on the same server is served");
    close_session(s, 1);
}

static void check_memory(const char *addr)
{
    sess_t *s = open_session(addr, RGPU__API_FAMILY__API_CUDA, NULL, 0);
    const uint64_t n = 3 * MIB + 7;
    uint8_t *pattern = malloc(n), *got;
    uint64_t a, b;

    for (uint64_t i = 0; i < n; i++)
        pattern[i] = (uint8_t)(i * 131 + 7);
    if (cu_malloc(s, n, &a) != CU_OK || cu_malloc(s, n, &b) != CU_OK || !a || !b || a == b)
        fail("two mallocs of %llu bytes", (unsigned long long)n);
    cu_h2d(s, a, pattern, n);
    cu_memset(s, b, 0xab, n);
    if (cu_d2h(s, b, n, &got) != CU_OK)
        fail("reading the memset back");
    for (uint64_t i = 0; i < n; i++)
        if (got[i] != 0xab)
            fail("memset: byte %llu is 0x%02x", (unsigned long long)i, got[i]);
    free(got);
    cu_d2d(s, b + 1, a, n - 1);
    if (cu_d2h(s, b, n, &got) != CU_OK)
        fail("reading the device-to-device copy back");
    if (got[0] != 0xab || memcmp(got + 1, pattern, n - 1) != 0)
        fail("device-to-device copy: wrong bytes");
    free(got);
    if (cu_d2h(s, a + 100, 1000, &got) != CU_OK || memcmp(got, pattern + 100, 1000) != 0)
        fail("a read inside an allocation");
    free(got);
    if (cu_sync(s) != CU_OK || s->n_aerr)
        fail("%d asynchronous errors: %s", s->n_aerr, s->n_aerr ? s->aerr[0].what : "");
    cu_free(s, a);
    cu_free(s, b);
    if (cu_sync(s) != CU_OK || s->n_aerr)
        fail("freeing: %s", s->n_aerr ? s->aerr[0].what : "sync failed");
    pass("3 MiB written, memset, copied on the device and read back, byte for byte");
    free(pattern);
    close_session(s, 1);
}

/* Streams and events under ids the client must not use (0, one in use) or
 * on a device not the session's are refused one by one; a refused id stays
 * free, and the ones created work. */
static void check_stream_event_ids(sess_t *s)
{
    Rgpu__CuStreamCreate sc = RGPU__CU_STREAM_CREATE__INIT;
    Rgpu__CuEventCreate ec = RGPU__CU_EVENT_CREATE__INIT;
    Rgpu__CuEventRecord er = RGPU__CU_EVENT_RECORD__INIT;
    uint64_t stream = s->next_id++, event = s->next_id++, late = s->next_id++;
    uint64_t q_zero, q_stream_again, q_event_again, q_far, q_late, q_record;

    sc.id = 0;
    q_zero = send_msg(s, RGPU__MSG_TYPE__MSG_CU_STREAM_CREATE, &sc.base, NULL, 0);
    sc.id = stream;
    send_msg(s, RGPU__MSG_TYPE__MSG_CU_STREAM_CREATE, &sc.base, NULL, 0);
    q_stream_again = send_msg(s, RGPU__MSG_TYPE__MSG_CU_STREAM_CREATE, &sc.base, NULL, 0);
    ec.id = event;
    send_msg(s, RGPU__MSG_TYPE__MSG_CU_EVENT_CREATE, &ec.base, NULL, 0);
    q_event_again = send_msg(s, RGPU__MSG_TYPE__MSG_CU_EVENT_CREATE, &ec.base, NULL, 0);
    ec.id = late;
    ec.device = 99;
    q_far = send_msg(s, RGPU__MSG_TYPE__MSG_CU_EVENT_CREATE, &ec.base, NULL, 0);
    ec.device = 0;
    q_late = send_msg(s, RGPU__MSG_TYPE__MSG_CU_EVENT_CREATE, &ec.base, NULL, 0);
    er.event = late;
    er.stream = stream;
    q_record = send_msg(s, RGPU__MSG_TYPE__MSG_CU_EVENT_RECORD, &er.base, NULL, 0);
    if (cu_sync(s) != CU_OK)
        fail("the session's device is unusable after refused streams and events");
    expect_aerr(s, q_zero, CU_INVALID_HANDLE, "a stream under id 0");
    expect_aerr(s, q_stream_again, CU_INVALID_HANDLE, "a stream under an id already in use");
    expect_aerr(s, q_event_again, CU_INVALID_HANDLE, "an event under an id already in use");
    expect_aerr(s, q_far, CU_INVALID_DEVICE, "an event on device 99");
    if (aerr_of(s, q_late, NULL) || aerr_of(s, q_record, NULL))
        fail("an event under the id refused on device 99, recorded on the stream, failed");
    pass("the id refused on device 99 stays free: an event under it records on the stream");
}

static void check_copy_outside(const char *addr)
{
    sess_t *s = open_session(addr, RGPU__API_FAMILY__API_CUDA, NULL, 0);
    uint8_t buf[8192], *got;
    uint64_t a, freed, q1, q2, q3, q4, q5, q6, q7;

    memset(buf, 0x5a, sizeof(buf));
    if (cu_malloc(s, 4096, &a) != CU_OK || cu_malloc(s, 4096, &freed) != CU_OK)
        fail("malloc");
    cu_memset(s, a, 0x11, 4096);
    cu_free(s, freed);
    q1 = cu_h2d(s, a, buf, 8192);               /* twice the allocation */
    q2 = cu_h2d(s, a + 4095, buf, 2);           /* one byte past the end */
    q3 = cu_h2d(s, 0x1000, buf, 16);            /* a forged address */
    q4 = cu_memset(s, a + 4000, 0, 200);
    q5 = cu_d2d(s, a, freed, 16);               /* from freed memory */
    q6 = cu_free(s, freed);                     /* double free */
    q7 = cu_h2d(s, a - 1, buf, 1);              /* one byte before */
    if (cu_sync(s) != CU_OK)
        fail("the session's device is unusable after refused copies");
    expect_aerr(s, q1, CU_INVALID_VALUE, "a copy of 8192 bytes into 4096");
    expect_aerr(s, q2, CU_INVALID_VALUE, "a copy one byte past an allocation");
    expect_aerr(s, q3, CU_INVALID_VALUE, "a copy to a forged address");
    expect_aerr(s, q4, CU_INVALID_VALUE, "a memset past an allocation");
    expect_aerr(s, q5, CU_INVALID_VALUE, "a copy from freed memory");
    expect_aerr(s, q6, CU_INVALID_VALUE, "a double free");
    expect_aerr(s, q7, CU_INVALID_VALUE, "a copy one byte before an allocation");
    if (cu_d2h(s, a + 4000, 200, NULL) != CU_INVALID_VALUE)
        fail("a read across the end of an allocation was not refused");
    if (cu_d2h(s, 0xdead0000, 64, NULL) != CU_INVALID_VALUE)
        fail("a read from a forged address was not refused");
    if (cu_d2h(s, UINT64_MAX - 8, 64, NULL) != CU_INVALID_VALUE)
        fail("a read whose range wraps around was not refused");
    pass("reads across the end, from forged and wrapping addresses refused");
    if (cu_d2h(s, a, 4096, &got) != CU_OK)
        fail("reading the allocation back");
    for (int i = 0; i < 4096; i++)
        if (got[i] != 0x11)
            fail("byte %d of the allocation is 0x%02x: a refused copy wrote", i, got[i]);
    free(got);
    pass("the allocation holds its bytes: no refused copy wrote");
    check_stream_event_ids(s);
    close_session(s, 1);
}

static void check_unknown_function(const char *addr)
{
    sess_t *s = open_session(addr, RGPU__API_FAMILY__API_CUDA, NULL, 0), *s2;
    float ha[1000], hb[1000], *hc;
    uint64_t mod, fn_bad, fn, q_bad, q, q1, q2, q3, a, b, c;
    uint8_t *got;
    int sent;

    mod = cu_module(s, &sent);
    fn_bad = cu_function(s, mod, "no_such_kernel", &q_bad);
    fn = cu_function(s, mod, "vector_add", &q);
    (void)fn_bad;
    if (cu_malloc(s, sizeof(ha), &a) || cu_malloc(s, sizeof(hb), &b) || cu_malloc(s, sizeof(ha), &c))
        fail("malloc");
    for (int i = 0; i < 1000; i++) {
        ha[i] = (float)i;
        hb[i] = 0.5f * (float)i;
    }
    cu_h2d(s, a, ha, sizeof(ha));
    cu_h2d(s, b, hb, sizeof(hb));
    q1 = cu_launch_vadd(s, 999999, a, b, c, 1000, 28);      /* never created */
    q2 = cu_launch_vadd(s, fn, a, b, c, 1000, 20);          /* 20 of 28 parameter bytes */
    if (cu_sync(s) != CU_OK)
        fail("device unusable after refused launches");
    expect_aerr(s, q_bad, CU_NOT_FOUND, "a function no module has");
    if (aerr_of(s, q, NULL))
        fail("looking up vector_add failed");
    expect_aerr(s, q1, CU_INVALID_HANDLE, "a launch of a function id never created");
    expect_aerr(s, q2, CU_INVALID_VALUE, "a launch with 20 of the kernel's 28 parameter bytes");
    /* A kernel given a pointer outside the session's memory faults, and
     * the fault is sticky until the device is reset, as on a GPU. */
    q3 = cu_launch_vadd(s, fn, a, 0x7000, c, 1000, 28);
    if (cu_sync(s) != CU_ILLEGAL_ADDRESS)
        fail("a kernel reading a forged pointer did not fault the context");
    expect_aerr(s, q3, CU_ILLEGAL_ADDRESS, "a kernel reading a forged pointer");
    if (cu_sync(s) != CU_ILLEGAL_ADDRESS)
        fail("the fault is not sticky");
    {
        Rgpu__CuDeviceReset m = RGPU__CU_DEVICE_RESET__INIT;
        frame_t f = wait_reply(s, send_msg(s, RGPU__MSG_TYPE__MSG_CU_DEVICE_RESET, &m.base, NULL, 0),
                               NULL, NULL);
        frame_free(&f);
    }
    if (cu_sync(s) != CU_OK)
        fail("cudaDeviceReset did not clear the fault");
    pass("the fault is sticky until cudaDeviceReset");
    /* After the reset: fresh memory, the same function id, right results. */
    if (cu_malloc(s, sizeof(ha), &a) || cu_malloc(s, sizeof(hb), &b) || cu_malloc(s, sizeof(ha), &c))
        fail("malloc after the reset");
    cu_h2d(s, a, ha, sizeof(ha));
    cu_h2d(s, b, hb, sizeof(hb));
    cu_launch_vadd(s, fn, a, b, c, 1000, 28);
    if (cu_d2h(s, c, sizeof(ha), &got) != CU_OK)
        fail("reading vector_add's result");
    hc = (float *)got;
    for (int i = 0; i < 1000; i++)
        if (hc[i] != ha[i] + hb[i])
            fail("c[%d] = %g, expected %g", i, hc[i], ha[i] + hb[i]);
    free(got);
    pass("vector_add after the reset: 1000 elements right");
    /* A second session of "the same program" sends the hash only. */
    s2 = open_session(addr, RGPU__API_FAMILY__API_CUDA, NULL, 0);
    cu_module(s2, &sent);
    if (sent)
        fail("the server asked a second session for a module it has cached");
    pass("a second session's module was found by its hash: no upload");
    close_session(s2, 1);
    close_session(s, 1);
}

static void check_quota(const char *addr, const char *keyfile)
{
    Rgpu__TokenPayload p = RGPU__TOKEN_PAYLOAD__INIT;
    Rgpu__LeaseGpu gpu = RGPU__LEASE_GPU__INIT, *gpus[1] = {&gpu};
    rgpu_token_key_t key;
    char why[256], *token;
    uint64_t a, b, c;
    sess_t *s;
    int err;

    if (rgpu_token_key_load(keyfile, &key, why, sizeof(why)) != RGPU_OK)
        fail("%s", why);
    gpu.server = (char *)addr;
    gpu.index = 0;
    p.lease_id = 4242;
    p.gpus = gpus;
    p.n_gpus = 1;
    p.memory_quota = 64 * MIB;
    p.user = (char *)"cuda_hostile";
    p.expires_unix = (int64_t)time(NULL) + 600;
    token = rgpu_token_sign(&key, &p);
    if (!token)
        fail("cannot sign a token");
    s = open_session(addr, RGPU__API_FAMILY__API_CUDA, token, 0);
    if (cu_malloc(s, 40 * MIB, &a) != CU_OK)
        fail("40 MiB under a 64 MiB quota refused");
    if ((err = cu_malloc(s, 40 * MIB, &b)) != CU_OUT_OF_MEMORY)
        fail("40 more MiB under a 64 MiB quota: error %d, expected out of memory", err);
    if ((err = cu_malloc(s, 1ull << 40, &b)) != CU_OUT_OF_MEMORY)
        fail("1 TiB under a 64 MiB quota: error %d", err);
    pass("40 MiB fit in a 64 MiB quota, 40 MiB more and 1 TiB do not (out of memory)");
    cu_free(s, a);
    if (cu_malloc(s, 40 * MIB, &c) != CU_OK)
        fail("40 MiB after freeing 40 MiB refused: the quota was not given back");
    pass("freed memory goes back to the quota");
    if (cu_sync(s) != CU_OK)
        fail("the session is unusable");
    close_session(s, 1);
    free(token);
}

static void check_teardown(const char *addr)
{
    sess_t *s = open_session(addr, RGPU__API_FAMILY__API_CUDA, NULL, 0);
    int64_t deadline;
    uint64_t a;

    if (cu_malloc(s, 2560 * MIB, &a) != CU_OK)
        fail("2.5 GiB of the emulated 4 GiB refused to the first session");
    close_session(s, 0);        /* gone: no goodbye, no free */
    /* The server frees it when it notices; until then the memory is the
     * first session's. */
    deadline = now_ms() + 20000;
    for (;;) {
        int err;

        s = open_session(addr, RGPU__API_FAMILY__API_CUDA, NULL, 0);
        err = cu_malloc(s, 2560 * MIB, &a);
        close_session(s, 1);
        if (err == CU_OK)
            break;
        if (err != CU_OUT_OF_MEMORY || now_ms() > deadline)
            fail("2.5 GiB still refused (error %d) after the first session vanished", err);
        usleep(50000);      /* poll the condition, within the deadline */
    }
    pass("a vanished session's 2.5 GiB went back to the device");
}

static void check_huge(const char *addr)
{
    sess_t *s = open_session(addr, RGPU__API_FAMILY__API_CUDA, NULL, 0);
    uint64_t a;
    int err;

    if ((err = cu_malloc(s, 1ull << 40, &a)) != CU_OUT_OF_MEMORY)
        fail("1 TiB: error %d, expected out of memory", err);
    if ((err = cu_malloc(s, UINT64_MAX, &a)) != CU_OUT_OF_MEMORY && err != CU_INVALID_VALUE)
        fail("2^64-1 bytes: error %d", err);
    if (cu_malloc(s, MIB, &a) != CU_OK)
        fail("1 MiB after the refusals");
    pass("1 TiB and 2^64-1 bytes refused, 1 MiB served after them");
    close_session(s, 1);
}

/* Sends a frame with a raw body and bulk, as no client would. */
static void send_raw(sess_t *s, uint16_t type, const void *body, uint32_t body_len,
                     const void *bulk, uint64_t bulk_len)
{
    rgpu_frame_header_t h = {.version = RGPU_PROTOCOL_VERSION, .type = type, .body_len = body_len,
                             .seq = ++s->seq, .bulk_len = bulk_len};
    uint8_t *hb = malloc(RGPU_FRAME_HEADER_SIZE + (size_t)body_len);

    if (!hb)
        fail("out of memory");
    rgpu_frame_header_encode(&h, hb);
    if (body_len)
        memcpy(hb + RGPU_FRAME_HEADER_SIZE, body, body_len);
    s->rw.fd = s->fd;
    if (raw_wire_send(&s->rw, hb, RGPU_FRAME_HEADER_SIZE + body_len, bulk, bulk_len,
                      now_ms() + T_REPLY) != 1)
        fail("sending a raw frame of type %u failed", type);
    free(hb);
}

/* Waits for the server to end the session; returns its reason. */
static const char *ended_reason(sess_t *s)
{
    int64_t deadline = now_ms() + T_REPLY;
    frame_t f;
    int rc;

    while (!s->ended && (rc = next_frame(s, 1000, &f)) >= 0 && now_ms() < deadline)
        if (rc == 1)
            frame_free(&f);
    if (!s->ended)
        fail("the server did not end the session with a reason");
    return s->session_error;
}

static void check_malformed(const char *addr)
{
    static const uint8_t garbage[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f};
    uint8_t bulk[64] = {0};
    struct {
        const char *what;
        uint16_t type;
        const char *want;
    } cases[] = {
        {"a malloc whose body does not unpack", RGPU__MSG_TYPE__MSG_CU_MALLOC, "does not unpack"},
        {"a copy announcing 100 bytes with 64 of bulk", RGPU__MSG_TYPE__MSG_CU_MEMCPY_H2D, "carries 64"},
        {"a device sync carrying bulk", RGPU__MSG_TYPE__MSG_CU_DEVICE_SYNC, "expected none"},
        {"message type 499", 499, "not a CUDA request"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sess_t *s = open_session(addr, RGPU__API_FAMILY__API_CUDA, NULL, 0);
        const char *why;
        uint64_t a;

        if (cases[i].type == RGPU__MSG_TYPE__MSG_CU_MALLOC) {
            send_raw(s, cases[i].type, garbage, sizeof(garbage), NULL, 0);
        } else if (cases[i].type == RGPU__MSG_TYPE__MSG_CU_MEMCPY_H2D) {
            Rgpu__CuMemcpyH2D m = RGPU__CU_MEMCPY_H2_D__INIT;
            uint8_t body[64];

            if (cu_malloc(s, 4096, &a) != CU_OK)
                fail("malloc");
            m.dst = a;
            m.size = 100;
            send_raw(s, cases[i].type, body,
                     (uint32_t)protobuf_c_message_pack(&m.base, body), bulk, sizeof(bulk));
        } else if (cases[i].type == RGPU__MSG_TYPE__MSG_CU_DEVICE_SYNC) {
            send_raw(s, cases[i].type, NULL, 0, bulk, sizeof(bulk));
        } else {
            send_raw(s, cases[i].type, NULL, 0, NULL, 0);
        }
        why = ended_reason(s);
        if (!strstr(why, cases[i].want))
            fail("%s: the session ended with \"%s\", expected it to say \"%s\"", cases[i].what,
                 why, cases[i].want);
        pass("%s ends the session: \"%s\"", cases[i].what, why);
        close_session(s, 0);
        s = open_session(addr, RGPU__API_FAMILY__API_CUDA, NULL, 0);
        if (cu_malloc(s, 4096, &a) != CU_OK || cu_sync(s) != CU_OK)
            fail("the next session is not served after %s", cases[i].what);
        close_session(s, 1);
    }
    pass("a new session is served after each");
}

static void check_hold(const char *addr)
{
    sess_t *s = open_session(addr, RGPU__API_FAMILY__API_CUDA, NULL, 0);
    Rgpu__CuStreamCreate sc = RGPU__CU_STREAM_CREATE__INIT;
    Rgpu__CuEventCreate ec = RGPU__CU_EVENT_CREATE__INIT;
    Rgpu__CuEventRecord er = RGPU__CU_EVENT_RECORD__INIT;
    uint64_t a, mod, fn, q;
    int64_t deadline;
    frame_t f;
    int sent, rc;

    if (cu_malloc(s, 64 * MIB, &a) != CU_OK)
        fail("malloc");
    cu_memset(s, a, 1, 64 * MIB);
    mod = cu_module(s, &sent);
    fn = cu_function(s, mod, "vector_add", &q);
    (void)fn;
    sc.id = s->next_id++;
    send_msg(s, RGPU__MSG_TYPE__MSG_CU_STREAM_CREATE, &sc.base, NULL, 0);
    ec.id = s->next_id++;
    send_msg(s, RGPU__MSG_TYPE__MSG_CU_EVENT_CREATE, &ec.base, NULL, 0);
    er.event = ec.id;
    er.stream = sc.id;
    send_msg(s, RGPU__MSG_TYPE__MSG_CU_EVENT_RECORD, &er.base, NULL, 0);
    if (cu_sync(s) != CU_OK || s->n_aerr)
        fail("setting up: %s", s->n_aerr ? s->aerr[0].what : "device sync failed");
    printf("READY\n");
    fflush(stdout);
    deadline = now_ms() + 120000;
    while ((rc = next_frame(s, 1000, &f)) >= 0 && !s->ended && now_ms() < deadline)
        if (rc == 1)
            frame_free(&f);
    if (rc >= 0 && !s->ended)
        fail("the server did not end the session within 120 s");
    pass("the server ended a session holding memory, a module, a stream and an event%s%s",
         s->ended ? ": " : "", s->session_error);
    close_session(s, 0);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: cuda_hostile HOST:PORT refused|memory|copy-outside|"
                        "unknown-function|quota KEYFILE|teardown|huge|malformed|hold\n");
        return 2;
    }
    check_name = argv[2];
    if (!strcmp(argv[2], "refused"))
        check_refused(argv[1]);
    else if (!strcmp(argv[2], "memory"))
        check_memory(argv[1]);
    else if (!strcmp(argv[2], "copy-outside"))
        check_copy_outside(argv[1]);
    else if (!strcmp(argv[2], "unknown-function"))
        check_unknown_function(argv[1]);
    else if (!strcmp(argv[2], "quota") && argc > 3)
        check_quota(argv[1], argv[3]);
    else if (!strcmp(argv[2], "teardown"))
        check_teardown(argv[1]);
    else if (!strcmp(argv[2], "huge"))
        check_huge(argv[1]);
    else if (!strcmp(argv[2], "hold"))
        check_hold(argv[1]);
    else if (!strcmp(argv[2], "malformed"))
        check_malformed(argv[1]);
    else {
        fprintf(stderr, "cuda_hostile: unknown check %s\n", argv[2]);
        return 2;
    }
    return 0;
}
