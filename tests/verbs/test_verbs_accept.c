/* The verbs accept on a real RDMA device: it returns at once, so a peer
 * that starts connecting and never finishes holds up no other peer's
 * accept (rgpu-server accepts on its event loop); the half-open link fails
 * with a reason at its deadline, wakes its event fd, and frees every QP, CQ
 * and MR it held; a link accepted before the peer finished sends once it
 * has.
 *
 * It needs an RDMA device, so ctest does not run it: scripts/test-verbs.sh
 * runs it inside the Soft-RoCE VM, with RXE_IP the rxe interface's address. */
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "rgpu/transport.h"
#include "verbs_fixture.h"

#define TEST_TIMEOUT 60

/* ------------------------------------------------------------------------
 * An honest peer connecting on its own thread (a connect completes when
 * the server accepts).
 * ---------------------------------------------------------------------- */

typedef struct {
    rgpu_transport_t *tp;
    const char *addr;
    rgpu_link_t *link;
    rgpu_status_t status;
    char reason[256];
} connector_t;

static void *connector(void *arg)
{
    connector_t *c = arg;

    c->status = rgpu_transport_connect(c->tp, c->addr, 20000, &c->link, c->reason, sizeof(c->reason));
    return NULL;
}

static rgpu_status_t send_frame(rgpu_link_t *link, uint16_t type, uint64_t seq)
{
    uint8_t head[RGPU_FRAME_HEADER_SIZE];
    rgpu_frame_header_t h = {.version = RGPU_PROTOCOL_VERSION, .type = type, .seq = seq};
    struct iovec iov = {head, sizeof(head)};

    rgpu_frame_header_encode(&h, head);
    return rgpu_link_msg_send(link, &iov, 1, NULL);
}

static void expect_frame(rgpu_link_t *link, uint16_t type, uint64_t seq)
{
    rgpu_msg_t *m;
    rgpu_status_t status = rgpu_link_msg_recv(link, &m, 10000);

    cr_assert_eq(status, RGPU_OK, "msg_recv: %s (%s)", rgpu_status_str(status),
                 rgpu_link_reason(link));
    cr_expect_eq(m->header.type, type);
    cr_expect_eq(m->header.seq, seq);
    rgpu_msg_release(m);
}

/* A server and a client instance, the server listening on rxe. */
typedef struct {
    rgpu_transport_t *srv, *cli;
    rgpu_listener_t *l;
} pair_t;

/* Opens a pair; the server's RGPU_VERBS_ACCEPT_MS is read when it opens. */
static void open_pair(const char *accept_ms, pair_t *p)
{
    cr_assert_eq(setenv("RGPU_VERBS_ACCEPT_MS", accept_ms, 1), 0);
    cr_assert_eq(rgpu_transport_open("verbs", &p->srv), RGPU_OK, "no usable RDMA device");
    cr_assert_eq(unsetenv("RGPU_VERBS_ACCEPT_MS"), 0);
    cr_assert_eq(rgpu_transport_open("verbs", &p->cli), RGPU_OK);
    cr_assert_eq(rgpu_transport_listen(p->srv, verbs_rxe_addr(), &p->l), RGPU_OK);
}

static void close_pair(pair_t *p)
{
    rgpu_transport_ops(p->srv)->listener_close(p->l);
    rgpu_transport_close(p->cli);
    rgpu_transport_close(p->srv);
}

/* The QPs, CQs and MRs the device holds now. Not its PDs: the instances
 * keep theirs for as long as they are open, past these tests' checks. */
static verbs_counts_t held(void)
{
    verbs_counts_t c = verbs_count();

    c.pd = -1;
    return c;
}

/* A link the pair's server accepted from a raw peer s that sent its
 * request and never finishes connecting; *before_p is what the device
 * held before s came. */
static rgpu_link_t *accept_half_open(pair_t *p, raw_peer_t *s, verbs_counts_t *before_p)
{
    rgpu_link_t *half;

    *before_p = held();
    raw_peer_connect(s, p->l, 1);
    /* Before, accept waited here for the peer (up to 5 s) and failed. */
    cr_assert_eq(verbs_accept_one(p->l, &half), RGPU_OK,
                 "the stalled peer's request was not accepted");
    return half;
}

/* Closes the half-open link and its peer, and checks that the device holds
 * what it held before; then closes the pair. */
static void close_half_open(pair_t *p, rgpu_link_t *half, raw_peer_t *s, verbs_counts_t before,
                            const char *when)
{
    rgpu_link_close(half);
    raw_peer_close(s);
    verbs_expect_counts(held(), before, when);
    close_pair(p);
}

TestSuite(verbs_accept, .timeout = TEST_TIMEOUT);

Test(verbs_accept, a_peer_that_never_finishes_connecting_holds_up_no_other_accept)
{
    pair_t p;
    rgpu_link_t *half, *good;
    rgpu_msg_t *m;
    connector_t c = {0};
    pthread_t th;
    raw_peer_t s;
    verbs_counts_t before;

    /* A bound far past what this test takes, so that "not failed yet"
     * below cannot be a race with the deadline. */
    open_pair("30000", &p);
    half = accept_half_open(&p, &s, &before);
    cr_expect_eq(rgpu_link_msg_recv(half, &m, 0), RGPU_ERR_TIMEOUT);

    /* Another peer is accepted and served meanwhile. */
    c.tp = p.cli;
    c.addr = p.l->local;
    cr_assert_eq(pthread_create(&th, NULL, connector, &c), 0);
    cr_assert_eq(verbs_accept_one(p.l, &good), RGPU_OK);
    pthread_join(th, NULL);
    cr_assert_eq(c.status, RGPU_OK, "connect: %s", c.reason);
    cr_assert_eq(send_frame(c.link, 11, 1), RGPU_OK);
    expect_frame(good, 11, 1);
    cr_assert_eq(send_frame(good, 12, 2), RGPU_OK);
    expect_frame(c.link, 12, 2);

    /* All of that happened while the stalled peer's link was still
     * waiting for it: nothing failed it yet. */
    cr_expect_str_empty(rgpu_link_reason(half), "the half-open link failed: %s",
                        rgpu_link_reason(half));
    cr_expect_eq(rgpu_link_msg_recv(half, &m, 0), RGPU_ERR_TIMEOUT);

    /* A session that ends while its peer is still connecting frees it all. */
    rgpu_link_close(c.link);
    rgpu_link_close(good);
    close_half_open(&p, half, &s, before, "after closing the links");
}

Test(verbs_accept, a_half_open_link_fails_at_its_deadline_with_a_reason)
{
    pair_t p;
    rgpu_link_t *half;
    rgpu_msg_t *m;
    struct pollfd pfd;
    raw_peer_t s;
    rgpu_status_t status;
    verbs_counts_t before;
    int n;

    open_pair("1000", &p);
    half = accept_half_open(&p, &s, &before);

    /* Whoever waits on the event fd alone (the server's loop) learns of it:
     * the progress thread fails the link at the deadline. */
    pfd = (struct pollfd){rgpu_link_event_fd(half), POLLIN, 0};
    cr_assert_eq(poll(&pfd, 1, 20000), 1, "the event fd never turned readable");
    n = rgpu_link_progress(half);
    cr_expect_eq(n, RGPU_ERR_CONN_CLOSED, "progress: %d", n);
    status = rgpu_link_msg_recv(half, &m, 20000);
    cr_expect_eq(status, RGPU_ERR_CONN_CLOSED, "msg_recv: %s", rgpu_status_str(status));
    cr_expect(strstr(rgpu_link_reason(half), "did not finish connecting within 1000 ms") != NULL,
              "reason \"%s\"", rgpu_link_reason(half));
    cr_expect_eq(send_frame(half, 11, 1), RGPU_ERR_CONN_CLOSED);
    close_half_open(&p, half, &s, before, "after closing the failed link");
}

Test(verbs_accept, a_link_accepted_before_its_peer_finished_sends_once_it_has)
{
    pair_t p;
    rgpu_link_t *link;
    connector_t c = {0};
    pthread_t th;

    open_pair("5000", &p);
    c.tp = p.cli;
    c.addr = p.l->local;
    cr_assert_eq(pthread_create(&th, NULL, connector, &c), 0);
    cr_assert_eq(verbs_accept_one(p.l, &link), RGPU_OK);
    /* The server speaks first, before it can have seen ESTABLISHED: the
     * send waits for it, then goes. */
    cr_assert_eq(send_frame(link, 13, 3), RGPU_OK, "send: %s", rgpu_link_reason(link));
    pthread_join(th, NULL);
    cr_assert_eq(c.status, RGPU_OK, "connect: %s", c.reason);
    expect_frame(c.link, 13, 3);
    cr_assert_eq(send_frame(c.link, 14, 4), RGPU_OK);
    expect_frame(link, 14, 4);
    rgpu_link_close(c.link);
    rgpu_link_close(link);
    close_pair(&p);
}
