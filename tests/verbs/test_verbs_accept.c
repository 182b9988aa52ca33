/* The verbs accept on a real RDMA device: it returns at once, so a peer
 * that starts connecting and never finishes holds up no other peer's
 * accept (rgpu-server accepts on its event loop); the half-open link fails
 * with a reason at its deadline, wakes its event fd, and frees every QP, CQ
 * and MR it held; a link accepted before the peer finished sends once it
 * has.
 *
 * It needs an RDMA device, so ctest does not run it: scripts/test-verbs.sh
 * runs it inside the Soft-RoCE VM, with RXE_IP the rxe interface's address. */
#include <arpa/inet.h>
#include <endian.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

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
 * A peer that starts connecting and never finishes: raw librdmacm, a
 * greeting in the request, then it never reads its event channel, so
 * librdmacm never answers the server's reply (no RTU) and the server's
 * side never becomes ESTABLISHED.
 * ---------------------------------------------------------------------- */

typedef struct {
    struct rdma_event_channel *ech;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_cq *cq;
    struct ibv_mr *mr;
    uint8_t buf[64];
} stalled_t;

static void stalled_event(stalled_t *s, enum rdma_cm_event_type want)
{
    struct pollfd pfd = {s->ech->fd, POLLIN, 0};
    struct rdma_cm_event *ev;

    cr_assert_eq(poll(&pfd, 1, 10000), 1, "no %s within 10 s", rdma_event_str(want));
    cr_assert_eq(rdma_get_cm_event(s->ech, &ev), 0);
    cr_assert_eq(ev->event, want, "got %s, wanted %s", rdma_event_str(ev->event),
                 rdma_event_str(want));
    rdma_ack_cm_event(ev);
}

static void stalled_connect(stalled_t *s, const rgpu_listener_t *l)
{
    struct addrinfo *ai;
    char host[96], *port;
    struct ibv_qp_init_attr qa = {0};
    struct rdma_conn_param p = {0};
    struct {
        uint32_t magic;
        uint16_t version, depth;
        uint32_t eager, credit_rkey;
        uint64_t credit_addr;
    } __attribute__((packed)) hello;

    memset(s, 0, sizeof(*s));
    snprintf(host, sizeof(host), "%s", l->local);
    port = strrchr(host, ':');
    *port++ = '\0';
    cr_assert_eq(getaddrinfo(host, port, NULL, &ai), 0);
    s->ech = rdma_create_event_channel();
    cr_assert_not_null(s->ech);
    cr_assert_eq(rdma_create_id(s->ech, &s->id, NULL, RDMA_PS_TCP), 0);
    cr_assert_eq(rdma_resolve_addr(s->id, NULL, ai->ai_addr, 2000), 0);
    freeaddrinfo(ai);
    stalled_event(s, RDMA_CM_EVENT_ADDR_RESOLVED);
    cr_assert_eq(rdma_resolve_route(s->id, 2000), 0);
    stalled_event(s, RDMA_CM_EVENT_ROUTE_RESOLVED);
    s->pd = ibv_alloc_pd(s->id->verbs);
    s->cq = ibv_create_cq(s->id->verbs, 16, NULL, NULL, 0);
    cr_assert(s->pd && s->cq);
    qa.send_cq = qa.recv_cq = s->cq;
    qa.qp_type = IBV_QPT_RC;
    qa.cap.max_send_wr = qa.cap.max_recv_wr = 4;
    qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
    cr_assert_eq(rdma_create_qp(s->id, s->pd, &qa), 0);
    s->mr = ibv_reg_mr(s->pd, s->buf, sizeof(s->buf), IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
    cr_assert_not_null(s->mr);
    hello.magic = htonl(0x72475056u);
    hello.version = htons(1);
    hello.depth = htons(4);
    hello.eager = htonl(1u << 20);
    hello.credit_rkey = htonl(s->mr->rkey);
    hello.credit_addr = htobe64((uint64_t)(uintptr_t)s->buf);
    p.private_data = &hello;
    p.private_data_len = sizeof(hello);
    p.responder_resources = p.initiator_depth = 1;
    p.retry_count = 7;
    cr_assert_eq(rdma_connect(s->id, &p), 0);
    /* ...and never a look at s->ech again. */
}

static void stalled_close(stalled_t *s)
{
    rdma_destroy_qp(s->id);
    ibv_dereg_mr(s->mr);
    ibv_destroy_cq(s->cq);
    ibv_dealloc_pd(s->pd);
    rdma_destroy_id(s->id);
    rdma_destroy_event_channel(s->ech);
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
    stalled_t s;
    int qp, cq, mr;

    /* A bound far past what this test takes, so that "not failed yet"
     * below cannot be a race with the deadline. */
    open_pair("30000", &srv, &cli, &l);
    qp = resources("qp"), cq = resources("cq"), mr = resources("mr");

    stalled_connect(&s, l);
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
    stalled_close(&s);
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
    stalled_t s;
    rgpu_status_t status;
    int qp, cq, mr, n;

    open_pair("1000", &srv, &cli, &l);
    qp = resources("qp"), cq = resources("cq"), mr = resources("mr");
    stalled_connect(&s, l);
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
    stalled_close(&s);
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
