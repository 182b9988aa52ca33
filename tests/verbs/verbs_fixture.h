/* What the tests on a real RDMA device share (tests/verbs/ and
 * tests/unit/transport/test_verbs.c, all run inside the Soft-RoCE VM by
 * scripts/test-verbs.sh):
 *   - the address to listen on, on the rxe device's interface (RXE_IP:
 *     127.0.0.1 does not work with rxe);
 *   - how many QPs, CQs, MRs or PDs user programs hold, as the kernel counts
 *     them;
 *   - a peer on raw librdmacm and verbs, which speaks the transport's
 *     greeting (or none) in its connection request, then does whatever a
 *     test wants: never finish connecting, or finish and send bytes of its
 *     choosing, or write the transport's credit word.
 * Criterion asserts, so only from the test's own thread. */
#ifndef RGPU_TEST_VERBS_FIXTURE_H
#define RGPU_TEST_VERBS_FIXTURE_H

#include <arpa/inet.h>
#include <endian.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "rgpu/transport.h"

/* "RXE_IP:0": a free port on the rxe interface. */
static inline const char *verbs_rxe_addr(void)
{
    static char addr[80];
    const char *ip = getenv("RXE_IP");

    snprintf(addr, sizeof(addr), "%s:0", ip && *ip ? ip : "10.77.0.1");
    return addr;
}

/* How many RDMA resources of kind ("qp", "cq", "mr", "pd") user programs
 * hold, as the kernel counts them (`rdma resource show KIND`): every line
 * but the kernel's own (comm [ib_core] and the like). Not by pid: the
 * kernel names the creating thread, and none for a thread that has exited.
 * In the VM the test program is the only user of the device (criterion's
 * runner holds nothing, a killed peer's are gone once it is reaped). */
static inline int verbs_resources(const char *kind)
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

/* What user programs hold of each kind, as verbs_resources counts it. A
 * count of -1 in what a test expects is not compared. */
typedef struct {
    int qp, cq, mr, pd;
} verbs_counts_t;

static inline verbs_counts_t verbs_count(void)
{
    return (verbs_counts_t){verbs_resources("qp"), verbs_resources("cq"), verbs_resources("mr"),
                            verbs_resources("pd")};
}

static inline void verbs_expect_counts(verbs_counts_t now, verbs_counts_t want, const char *when)
{
    cr_expect_eq(now.qp, want.qp, "%s: %d QPs, %d expected", when, now.qp, want.qp);
    cr_expect_eq(now.cq, want.cq, "%s: %d CQs, %d expected", when, now.cq, want.cq);
    cr_expect_eq(now.mr, want.mr, "%s: %d MRs, %d expected", when, now.mr, want.mr);
    if (want.pd >= 0)
        cr_expect_eq(now.pd, want.pd, "%s: %d PDs, %d expected", when, now.pd, want.pd);
}

/* Waits up to 10 s for listener l to have a connection request, then
 * accepts it (over RDMA the accept is what completes the peer's connect). */
static inline rgpu_status_t verbs_accept_one(rgpu_listener_t *l, rgpu_link_t **link_p)
{
    struct pollfd pfd = {rgpu_transport_ops(l->tp)->listener_fd(l), POLLIN, 0};

    if (poll(&pfd, 1, 10000) != 1)
        return RGPU_ERR_TIMEOUT;
    return rgpu_transport_ops(l->tp)->accept(l, link_p);
}

typedef struct {
    struct rdma_event_channel *ech;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_cq *cq;
    struct ibv_mr *mr;
    uint8_t buf[256];           /* [0, 128): what it sends; [128, 256): receives */
    /* Where the transport on the other side takes its credits, from its
     * greeting (raw_peer_finish). */
    uint32_t peer_credit_rkey;
    uint64_t peer_credit_addr;
} raw_peer_t;

/* The transport's greeting, in a connection request and in its answer. */
typedef struct {
    uint32_t magic;
    uint16_t version, depth;
    uint32_t eager, credit_rkey;
    uint64_t credit_addr;
} __attribute__((packed)) raw_peer_hello_t;

/* The next event on the peer's channel, which must be want, within 10 s;
 * the caller acks it. */
static inline struct rdma_cm_event *raw_peer_get_event(raw_peer_t *p, enum rdma_cm_event_type want)
{
    struct pollfd pfd = {p->ech->fd, POLLIN, 0};
    struct rdma_cm_event *ev;

    cr_assert_eq(poll(&pfd, 1, 10000), 1, "no %s within 10 s", rdma_event_str(want));
    cr_assert_eq(rdma_get_cm_event(p->ech, &ev), 0);
    cr_assert_eq(ev->event, want, "got %s, wanted %s", rdma_event_str(ev->event),
                 rdma_event_str(want));
    return ev;
}

static inline void raw_peer_event(raw_peer_t *p, enum rdma_cm_event_type want)
{
    rdma_ack_cm_event(raw_peer_get_event(p, want));
}

/* Sends a connection request to listener l, with the greeting when greet
 * (without, the transport must reject it: RDMA_CM_EVENT_REJECTED), and
 * returns without reading its event channel again: librdmacm then never
 * answers the server's reply, so the server's side never becomes
 * ESTABLISHED until raw_peer_finish. */
static inline void raw_peer_connect(raw_peer_t *p, const rgpu_listener_t *l, int greet)
{
    struct addrinfo *ai;
    char host[96], *port;
    struct ibv_qp_init_attr qa = {0};
    struct rdma_conn_param cp = {0};
    raw_peer_hello_t hello;

    memset(p, 0, sizeof(*p));
    snprintf(host, sizeof(host), "%s", l->local);
    port = strrchr(host, ':');
    *port++ = '\0';
    cr_assert_eq(getaddrinfo(host, port, NULL, &ai), 0);
    p->ech = rdma_create_event_channel();
    cr_assert_not_null(p->ech);
    cr_assert_eq(rdma_create_id(p->ech, &p->id, NULL, RDMA_PS_TCP), 0);
    cr_assert_eq(rdma_resolve_addr(p->id, NULL, ai->ai_addr, 2000), 0);
    freeaddrinfo(ai);
    raw_peer_event(p, RDMA_CM_EVENT_ADDR_RESOLVED);
    cr_assert_eq(rdma_resolve_route(p->id, 2000), 0);
    raw_peer_event(p, RDMA_CM_EVENT_ROUTE_RESOLVED);
    p->pd = ibv_alloc_pd(p->id->verbs);
    p->cq = ibv_create_cq(p->id->verbs, 16, NULL, NULL, 0);
    cr_assert(p->pd && p->cq);
    qa.send_cq = qa.recv_cq = p->cq;
    qa.qp_type = IBV_QPT_RC;
    qa.cap.max_send_wr = qa.cap.max_recv_wr = 4;
    qa.cap.max_send_sge = qa.cap.max_recv_sge = 1;
    cr_assert_eq(rdma_create_qp(p->id, p->pd, &qa), 0);
    p->mr = ibv_reg_mr(p->pd, p->buf, sizeof(p->buf), IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
    cr_assert_not_null(p->mr);
    hello.magic = htonl(0x72475056u);
    hello.version = htons(1);
    hello.depth = htons(4);
    hello.eager = htonl(1u << 20);
    hello.credit_rkey = htonl(p->mr->rkey);
    hello.credit_addr = htobe64((uint64_t)(uintptr_t)p->buf);
    cp.private_data = greet ? &hello : NULL;
    cp.private_data_len = greet ? sizeof(hello) : 0;
    cp.responder_resources = cp.initiator_depth = 1;
    cp.retry_count = 7;
    cr_assert_eq(rdma_connect(p->id, &cp), 0);
}

/* Posts a receive into buf[128, 256) (before anything may be sent to it:
 * the server's QPs allow no receiver-not-ready), then finishes connecting
 * and keeps where the server takes its credits. */
static inline void raw_peer_finish(raw_peer_t *p)
{
    struct ibv_sge sge = {(uint64_t)(uintptr_t)(p->buf + 128), 128, p->mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = 1, .sg_list = &sge, .num_sge = 1}, *bad;
    struct rdma_cm_event *ev;
    raw_peer_hello_t hello;

    cr_assert_eq(ibv_post_recv(p->id->qp, &wr, &bad), 0);
    ev = raw_peer_get_event(p, RDMA_CM_EVENT_ESTABLISHED);
    cr_assert_geq(ev->param.conn.private_data_len, sizeof(hello), "the server sent no greeting");
    memcpy(&hello, ev->param.conn.private_data, sizeof(hello));
    p->peer_credit_rkey = ntohl(hello.credit_rkey);
    p->peer_credit_addr = be64toh(hello.credit_addr);
    rdma_ack_cm_event(ev);
}

/* Waits up to 10 s for one completion (a send, a write or the posted
 * receive), which must be want and successful; returns its byte count. */
static inline uint32_t raw_peer_complete(raw_peer_t *p, enum ibv_wc_opcode want)
{
    struct ibv_wc wc;
    int n = 0;

    for (int tries = 0; tries < 10000 && (n = ibv_poll_cq(p->cq, 1, &wc)) == 0; tries++)
        poll(NULL, 0, 1);
    cr_assert_eq(n, 1, "the raw peer's %s never completed",
                 want == IBV_WC_RECV ? "receive" : want == IBV_WC_RDMA_WRITE ? "write" : "send");
    cr_assert_eq(wc.status, IBV_WC_SUCCESS, "%s", ibv_wc_status_str(wc.status));
    cr_assert_eq(wc.opcode, want);
    return wc.byte_len;
}

/* Sends buf[0, len) with immediate data imm (IBV_WR_SEND_WITH_IMM: imm
 * credits returned), or writes it into the server's credit word
 * (IBV_WR_RDMA_WRITE), and waits for that to complete. */
static inline void raw_peer_post(raw_peer_t *p, enum ibv_wr_opcode op, uint32_t len, uint32_t imm)
{
    struct ibv_sge sge = {(uint64_t)(uintptr_t)p->buf, len, p->mr->lkey};
    struct ibv_send_wr wr = {0}, *bad;

    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = op;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.imm_data = htonl(imm);
    wr.wr.rdma.remote_addr = p->peer_credit_addr;
    wr.wr.rdma.rkey = p->peer_credit_rkey;
    cr_assert_eq(ibv_post_send(p->id->qp, &wr, &bad), 0);
    raw_peer_complete(p, op == IBV_WR_RDMA_WRITE ? IBV_WC_RDMA_WRITE : IBV_WC_SEND);
}

/* Sends buf[0, len) with no credits returned and waits for it to complete. */
static inline void raw_peer_send(raw_peer_t *p, uint32_t len)
{
    raw_peer_post(p, IBV_WR_SEND_WITH_IMM, len, 0);
}

static inline void raw_peer_close(raw_peer_t *p)
{
    rdma_disconnect(p->id);
    rdma_destroy_qp(p->id);
    ibv_dereg_mr(p->mr);
    ibv_destroy_cq(p->cq);
    ibv_dealloc_pd(p->pd);
    rdma_destroy_id(p->id);
    rdma_destroy_event_channel(p->ech);
}

#endif
