/*
 * The scheduler client (rgpu_sched_call) against a scripted scheduler on
 * loopback: a thread of this test that accepts one connection, reads the
 * request and then sends exactly the bytes of its script, some of them a
 * cut reply, and holds the connection open until the client closes it.
 * The CLI and the Slurm plugin (inside slurmstepd) rely on a call that
 * fails within its timeout, with a line that says so, however the
 * scheduler stalls: before its reply, inside one message of it (where the
 * TCP transport reads the rest of a message without a limit), or between
 * the fragments of a large one.
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rgpu/sched_client.h"
#include "rgpu/transport.h"
#include "rgpu/wire.h"
#include "scheduler.pb-c.h"

/* The client's timeout in these tests: short, so a stall costs little. */
#define SC_TIMEOUT_MS 500
/* How long the peer waits for the client to connect, send or close before
 * giving up on it (the test fails then, it does not hang). */
#define SC_PEER_WAIT_MS 20000
/* A reason this long packs to a reply of about 1 MiB: four fragments of
 * the TCP eager limit (256 KiB). */
#define SC_BIG 1000000u
#define SC_SMALL 1000u

/* Where the scripted scheduler stops sending: the reply whole, or cut. */
typedef enum {
    SAY_ALL,
    SAY_NOTHING,
    SAY_HALF_A_HEADER,        /* 10 of the reply header's 32 bytes */
    SAY_PART_OF_THE_BODY,     /* the header and 100 bytes of a small reply's body */
    SAY_FIRST_FRAGMENT,       /* a large reply's first fragment, whole */
    SAY_A_FRAGMENT_AND_A_HALF /* that and half of the second */
} sc_script_t;

typedef struct {
    int lfd;
    uint16_t port;
    sc_script_t script;
    size_t reason_len;        /* the reply's reason: its size decides the fragments */
    size_t eager;             /* the client transport's eager limit */
    pthread_t thread;
    /* Set by the peer, read after the join. */
    int got_request;          /* a whole request frame came */
    int saw_close;            /* the client closed the connection afterwards */
} sc_peer_t;

static uint64_t sc_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Reads len bytes from fd, waiting at most SC_PEER_WAIT_MS for each. */
static int sc_read(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len) {
        struct pollfd pfd = {fd, POLLIN, 0};
        ssize_t n;

        if (poll(&pfd, 1, SC_PEER_WAIT_MS) != 1)
            return -1;
        n = read(fd, p, len);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int sc_write(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The reply as the scheduler daemon puts it on the wire (one message, or
 * MSG_FRAGMENT pieces past the eager limit, as scheduler/main.c sends
 * them), into *out; *cut_p is where the script stops. */
static uint8_t *sc_reply_stream(const sc_peer_t *p, uint64_t seq, size_t *len_p, size_t *cut_p)
{
    Rgpu__SchedStatus st = RGPU__SCHED_STATUS__INIT;
    char *reason = malloc(p->reason_len + 1);
    size_t frame_len, len = 0, first_piece = 0;
    uint8_t *frame, *out = NULL;

    if (!reason)
        return NULL;
    memset(reason, 'r', p->reason_len);
    reason[p->reason_len] = '\0';
    st.reason = reason;
    frame = malloc(rgpu_frame_packed_size(&st.base));
    if (!frame)
        goto out;
    frame_len = rgpu_frame_pack(frame, RGPU__MSG_TYPE__MSG_SCHED_STATUS, seq, 0, &st.base, 0);
    out = malloc(frame_len * 2);
    if (!out)
        goto out;
    if (frame_len <= p->eager) {
        memcpy(out, frame, frame_len);
        len = frame_len;
    } else {
        for (size_t off = 0; off < frame_len;) {
            size_t piece = rgpu_wire_fragment_head(frame_len, off, p->eager, out + len);

            memcpy(out + len + RGPU_FRAME_HEADER_SIZE, frame + off, piece);
            len += RGPU_FRAME_HEADER_SIZE + piece;
            off += piece;
            if (!first_piece)
                first_piece = RGPU_FRAME_HEADER_SIZE + piece;
        }
    }
    switch (p->script) {
    case SAY_ALL: *cut_p = len; break;
    case SAY_NOTHING: *cut_p = 0; break;
    case SAY_HALF_A_HEADER: *cut_p = 10; break;
    case SAY_PART_OF_THE_BODY: *cut_p = RGPU_FRAME_HEADER_SIZE + 100; break;
    case SAY_FIRST_FRAGMENT: *cut_p = first_piece; break;
    case SAY_A_FRAGMENT_AND_A_HALF: *cut_p = first_piece + first_piece / 2; break;
    }
    *len_p = len;
out:
    free(frame);
    free(reason);
    return out;
}

/* The scripted scheduler. It asserts nothing (Criterion asserts only on
 * the test's thread): it records what it saw. */
static void *sc_peer_main(void *arg)
{
    sc_peer_t *p = arg;
    struct pollfd pfd = {p->lfd, POLLIN, 0};
    uint8_t head[RGPU_FRAME_HEADER_SIZE], *rest, *reply, sink[4096];
    rgpu_frame_header_t h;
    size_t len = 0, cut = 0;
    int fd;

    if (poll(&pfd, 1, SC_PEER_WAIT_MS) != 1 || (fd = accept(p->lfd, NULL, NULL)) < 0)
        return NULL;
    if (sc_read(fd, head, sizeof(head)) != 0 || rgpu_frame_header_decode(head, NULL, &h) != RGPU_OK ||
        h.body_len + h.bulk_len > 65536)
        goto out_close;
    rest = malloc(h.body_len + h.bulk_len + 1);
    if (!rest || sc_read(fd, rest, h.body_len + h.bulk_len) != 0) {
        free(rest);
        goto out_close;
    }
    free(rest);
    p->got_request = 1;
    reply = sc_reply_stream(p, h.seq, &len, &cut);
    if (!reply)
        goto out_close;
    sc_write(fd, reply, cut);
    free(reply);
    /* Then silence, until the client gives up and closes (or has its
     * whole reply and closes): read until the end of the stream. */
    for (;;) {
        struct pollfd cfd = {fd, POLLIN, 0};
        ssize_t n;

        if (poll(&cfd, 1, SC_PEER_WAIT_MS) != 1)
            break;
        n = read(fd, sink, sizeof(sink));
        if (n <= 0) {
            p->saw_close = 1;
            break;
        }
    }
out_close:
    close(fd);
    return NULL;
}

static void sc_peer_start(sc_peer_t *p, sc_script_t script, size_t reason_len)
{
    struct sockaddr_in sa = {0};
    socklen_t sl = sizeof(sa);
    rgpu_transport_t *tcp;

    memset(p, 0, sizeof(*p));
    p->script = script;
    p->reason_len = reason_len;
    /* The scheduler daemon learns the eager limit the same way. */
    cr_assert_eq(rgpu_transport_open("tcp", &tcp), RGPU_OK);
    p->eager = rgpu_transport_caps(tcp)->max_eager;
    rgpu_transport_close(tcp);
    cr_assert_lt(RGPU_FRAME_HEADER_SIZE + SC_SMALL + 16, p->eager, "the small reply is not small");
    cr_assert_gt(SC_BIG, 3 * p->eager, "the large reply would not come in fragments");

    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(p->lfd, 0);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(p->lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(p->lfd, 1), 0);
    cr_assert_eq(getsockname(p->lfd, (struct sockaddr *)&sa, &sl), 0);
    p->port = ntohs(sa.sin_port);
    cr_assert_eq(pthread_create(&p->thread, NULL, sc_peer_main, p), 0);
}

static void sc_peer_join(sc_peer_t *p)
{
    pthread_join(p->thread, NULL);
    close(p->lfd);
}

/* One call with the client's timeout; returns the reply (or NULL, with
 * err), and how long it took in *ms_p. */
static Rgpu__SchedStatus *sc_call(const sc_peer_t *p, char *err, size_t err_cap, uint64_t *ms_p)
{
    char addr[64];
    rgpu_sched_client_t c = {.addr = addr, .timeout_ms = SC_TIMEOUT_MS};
    Rgpu__DrainRequest req = RGPU__DRAIN_REQUEST__INIT;
    Rgpu__SchedStatus *r;
    uint64_t start = sc_now_ms();

    snprintf(addr, sizeof(addr), "127.0.0.1:%u", p->port);
    req.address = (char *)"10.0.0.1:7070";
    req.drain = 1;
    r = rgpu_sched_call(&c, RGPU__MSG_TYPE__MSG_SCHED_DRAIN, &req.base,
                        RGPU__MSG_TYPE__MSG_SCHED_STATUS, &rgpu__sched_status__descriptor, err,
                        err_cap);
    *ms_p = sc_now_ms() - start;
    return r;
}

/* The scheduler stops sending where script says: the call must fail in
 * about its timeout, not before it and not at some later bound (the wire's
 * 60 s for the rest of a fragmented frame, or never), with the line the
 * header promises, and close its connection. */
static void expect_no_reply_within_timeout(sc_script_t script, size_t reason_len)
{
    sc_peer_t p;
    char err[512] = "", want[128];
    Rgpu__SchedStatus *r;
    uint64_t ms;

    sc_peer_start(&p, script, reason_len);
    r = sc_call(&p, err, sizeof(err), &ms);
    sc_peer_join(&p);
    cr_assert_null(r, "a reply from a scheduler that never finished it");
    cr_expect(p.got_request, "the scripted scheduler never got the request");
    snprintf(want, sizeof(want), "scheduler 127.0.0.1:%u: no reply within 0.5 s", p.port);
    cr_expect_str_eq(err, want);
    cr_expect_geq(ms, SC_TIMEOUT_MS, "gave up after %llu ms, before its %d ms",
                  (unsigned long long)ms, SC_TIMEOUT_MS);
    /* A liveness bound, not a performance one: far below the wire's 60 s
     * and the peer's 20 s, far above any scheduling delay. */
    cr_expect_lt(ms, SC_TIMEOUT_MS + 10000, "the call took %llu ms", (unsigned long long)ms);
    cr_expect(p.saw_close, "the client did not close its connection");
}

TestSuite(sched_client, .timeout = 60);

/* The controls: the script's replies, whole, are taken, so a failure
 * below comes from the cut and not from a malformed reply. */
Test(sched_client, a_small_reply_whole_is_taken)
{
    sc_peer_t p;
    char err[512] = "";
    Rgpu__SchedStatus *r;
    uint64_t ms;

    sc_peer_start(&p, SAY_ALL, SC_SMALL);
    r = sc_call(&p, err, sizeof(err), &ms);
    sc_peer_join(&p);
    cr_assert_not_null(r, "%s", err);
    cr_expect_eq(strlen(r->reason), SC_SMALL);
    cr_expect(p.saw_close, "the client did not close its connection");
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(sched_client, a_large_reply_in_fragments_is_taken)
{
    sc_peer_t p;
    char err[512] = "";
    Rgpu__SchedStatus *r;
    uint64_t ms;

    sc_peer_start(&p, SAY_ALL, SC_BIG);
    r = sc_call(&p, err, sizeof(err), &ms);
    sc_peer_join(&p);
    cr_assert_not_null(r, "%s", err);
    cr_expect_eq(strlen(r->reason), SC_BIG);
    cr_expect_eq(strspn(r->reason, "r"), SC_BIG, "the reply was put back together wrong");
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

Test(sched_client, a_scheduler_that_never_answers)
{
    expect_no_reply_within_timeout(SAY_NOTHING, SC_SMALL);
}

/* Inside one message: the transport reads a message whole once it began,
 * without a limit of its own. */
Test(sched_client, a_scheduler_that_stalls_in_a_reply_header)
{
    expect_no_reply_within_timeout(SAY_HALF_A_HEADER, SC_SMALL);
}

Test(sched_client, a_scheduler_that_stalls_in_a_small_reply)
{
    expect_no_reply_within_timeout(SAY_PART_OF_THE_BODY, SC_SMALL);
}

/* Between the fragments of a large reply: what rgpu_wire_recv bounds. */
Test(sched_client, a_scheduler_that_stalls_after_the_first_fragment)
{
    expect_no_reply_within_timeout(SAY_FIRST_FRAGMENT, SC_BIG);
}

/* Inside a fragment: both at once. */
Test(sched_client, a_scheduler_that_stalls_inside_the_second_fragment)
{
    expect_no_reply_within_timeout(SAY_A_FRAGMENT_AND_A_HALF, SC_BIG);
}
