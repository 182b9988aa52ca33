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

#include "raw_peer.h"
#include "rgpu/transport.h"

#define TEST_TIMEOUT 60

static const char *rxe_addr(void)
{
    static char addr[80];
    const char *ip = getenv("RXE_IP");

    snprintf(addr, sizeof(addr), "%s:0", ip && *ip ? ip : "10.77.0.1");
    return addr;
}

/* User programs' RDMA resources of a kind as the kernel counts them
 * (`rdma resource show KIND`, every line but the kernel's own); in the VM
 * this program is the device's only user. */
static int resources(const char *kind)
{
    char cmd[128], line[1024];
    int n = 0;
    FILE *f;

    snprintf(cmd, sizeof(cmd), "rdma resource show %s 2>&1", kind);
    f = popen(cmd, "r");
    cr_assert_not_null(f, "cannot run the rdma tool (iproute2)");
    while (fgets(line, sizeof(line), f)) {
        cr_assert(strstr(line, "rror") == NULL, "rdma resource show %s: %s", kind, line);
        if (strstr(line, "dev ") || strstr(line, "link "))
            n += strstr(line, "comm [") == NULL;
    }
    pclose(f);
    return n;
}

static void expect_resources(int qp, int cq, int mr, const char *when)
{
    cr_expect_eq(resources("qp"), qp, "%s: %d QPs, %d expected", when, resources("qp"), qp);
    cr_expect_eq(resources("cq"), cq, "%s: %d CQs, %d expected", when, resources("cq"), cq);
    cr_expect_eq(resources("mr"), mr, "%s: %d MRs, %d expected", when, resources("mr"), mr);
}

/* Waits up to 10 s for the listener to have a request, then accepts. */
static rgpu_status_t accept_one(rgpu_listener_t *l, rgpu_link_t **link_p)
{
    struct pollfd pfd = {rgpu_transport_ops(l->tp)->listener_fd(l), POLLIN, 0};

    if (poll(&pfd, 1, 10000) != 1)
        return RGPU_ERR_TIMEOUT;
    return rgpu_transport_ops(l->tp)->accept(l, link_p);
}

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

/* Opens a server and a client instance, the server listening on rxe. The
 * server's RGPU_VERBS_ACCEPT_MS is read when it opens. */
static void open_pair(const char *accept_ms, rgpu_transport_t **srv_p, rgpu_transport_t **cli_p,
                      rgpu_listener_t **l_p)
{
    cr_assert_eq(setenv("RGPU_VERBS_ACCEPT_MS", accept_ms, 1), 0);
    cr_assert_eq(rgpu_transport_open("verbs", srv_p), RGPU_OK, "no usable RDMA device");
    cr_assert_eq(unsetenv("RGPU_VERBS_ACCEPT_MS"), 0);
    cr_assert_eq(rgpu_transport_open("verbs", cli_p), RGPU_OK);
    cr_assert_eq(rgpu_transport_listen(*srv_p, rxe_addr(), l_p), RGPU_OK);
}

static void close_pair(rgpu_transport_t *srv, rgpu_transport_t *cli, rgpu_listener_t *l)
{
    rgpu_transport_ops(srv)->listener_close(l);
    rgpu_transport_close(cli);
    rgpu_transport_close(srv);
}

TestSuite(verbs_accept, .timeout = TEST_TIMEOUT);

Test(verbs_accept, a_peer_that_never_finishes_connecting_holds_up_no_other_accept)
{
    rgpu_transport_t *srv, *cli;
    rgpu_listener_t *l;
    rgpu_link_t *half, *good;
    rgpu_msg_t *m;
    connector_t c = {0};
    pthread_t th;
    raw_peer_t s;
    int qp, cq, mr;

    /* A bound far past what this test takes, so that "not failed yet"
     * below cannot be a race with the deadline. */
    open_pair("30000", &srv, &cli, &l);
    qp = resources("qp"), cq = resources("cq"), mr = resources("mr");

    raw_peer_connect(&s, l); /* and it never finishes */
    /* Before, accept waited here for the peer (up to 5 s) and failed. */
    cr_assert_eq(accept_one(l, &half), RGPU_OK, "the stalled peer's request was not accepted");
    cr_expect_eq(rgpu_link_msg_recv(half, &m, 0), RGPU_ERR_TIMEOUT);

    /* Another peer is accepted and served meanwhile. */
    c.tp = cli;
    c.addr = l->local;
    cr_assert_eq(pthread_create(&th, NULL, connector, &c), 0);
    cr_assert_eq(accept_one(l, &good), RGPU_OK);
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
    rgpu_link_close(half);
    raw_peer_close(&s);
    rgpu_link_close(c.link);
    rgpu_link_close(good);
    expect_resources(qp, cq, mr, "after closing the links");
    close_pair(srv, cli, l);
}

Test(verbs_accept, a_half_open_link_fails_at_its_deadline_with_a_reason)
{
    rgpu_transport_t *srv, *cli;
    rgpu_listener_t *l;
    rgpu_link_t *half;
    rgpu_msg_t *m;
    struct pollfd pfd;
    raw_peer_t s;
    rgpu_status_t status;
    int qp, cq, mr, n;

    open_pair("1000", &srv, &cli, &l);
    qp = resources("qp"), cq = resources("cq"), mr = resources("mr");
    raw_peer_connect(&s, l); /* and it never finishes */
    cr_assert_eq(accept_one(l, &half), RGPU_OK);

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

    rgpu_link_close(half);
    raw_peer_close(&s);
    expect_resources(qp, cq, mr, "after closing the failed link");
    close_pair(srv, cli, l);
}

Test(verbs_accept, a_link_accepted_before_its_peer_finished_sends_once_it_has)
{
    rgpu_transport_t *srv, *cli;
    rgpu_listener_t *l;
    rgpu_link_t *link;
    connector_t c = {0};
    pthread_t th;

    open_pair("5000", &srv, &cli, &l);
    c.tp = cli;
    c.addr = l->local;
    cr_assert_eq(pthread_create(&th, NULL, connector, &c), 0);
    cr_assert_eq(accept_one(l, &link), RGPU_OK);
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
    close_pair(srv, cli, l);
}
