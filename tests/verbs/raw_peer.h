/* A peer on raw librdmacm and verbs for the verbs tests (tests/verbs/):
 * it speaks the transport's greeting in its connection request, then does
 * whatever a test wants: never finish connecting, or finish and send bytes
 * of its choosing. Criterion asserts, so only from the test's own thread. */
#ifndef RGPU_TEST_RAW_PEER_H
#define RGPU_TEST_RAW_PEER_H

#include <arpa/inet.h>
#include <endian.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include "rgpu/transport.h"

typedef struct {
    struct rdma_event_channel *ech;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_cq *cq;
    struct ibv_mr *mr;
    uint8_t buf[256];           /* [0, 128): what it sends; [128, 256): receives */
} raw_peer_t;

static inline void raw_peer_event(raw_peer_t *p, enum rdma_cm_event_type want)
{
    struct pollfd pfd = {p->ech->fd, POLLIN, 0};
    struct rdma_cm_event *ev;

    cr_assert_eq(poll(&pfd, 1, 10000), 1, "no %s within 10 s", rdma_event_str(want));
    cr_assert_eq(rdma_get_cm_event(p->ech, &ev), 0);
    cr_assert_eq(ev->event, want, "got %s, wanted %s", rdma_event_str(ev->event),
                 rdma_event_str(want));
    rdma_ack_cm_event(ev);
}

/* Sends a connection request with the greeting to listener l, and returns
 * without reading its event channel again: librdmacm then never answers
 * the server's reply, so the server's side never becomes ESTABLISHED until
 * raw_peer_finish. */
static inline void raw_peer_connect(raw_peer_t *p, const rgpu_listener_t *l)
{
    struct addrinfo *ai;
    char host[96], *port;
    struct ibv_qp_init_attr qa = {0};
    struct rdma_conn_param cp = {0};
    struct {
        uint32_t magic;
        uint16_t version, depth;
        uint32_t eager, credit_rkey;
        uint64_t credit_addr;
    } __attribute__((packed)) hello;

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
    cp.private_data = &hello;
    cp.private_data_len = sizeof(hello);
    cp.responder_resources = cp.initiator_depth = 1;
    cp.retry_count = 7;
    cr_assert_eq(rdma_connect(p->id, &cp), 0);
}

/* Posts a receive into buf[128, 256) (before anything may be sent to it:
 * the server's QPs allow no receiver-not-ready), then finishes connecting. */
static inline void raw_peer_finish(raw_peer_t *p)
{
    struct ibv_sge sge = {(uint64_t)(uintptr_t)(p->buf + 128), 128, p->mr->lkey};
    struct ibv_recv_wr wr = {.wr_id = 1, .sg_list = &sge, .num_sge = 1}, *bad;

    cr_assert_eq(ibv_post_recv(p->id->qp, &wr, &bad), 0);
    raw_peer_event(p, RDMA_CM_EVENT_ESTABLISHED);
}

/* Waits up to 10 s for one completion (a send or the posted receive);
 * returns its byte count. */
static inline uint32_t raw_peer_complete(raw_peer_t *p, enum ibv_wc_opcode want)
{
    struct ibv_wc wc;
    int n = 0;

    for (int tries = 0; tries < 10000 && (n = ibv_poll_cq(p->cq, 1, &wc)) == 0; tries++)
        poll(NULL, 0, 1);
    cr_assert_eq(n, 1, "the raw peer's %s never completed", want == IBV_WC_RECV ? "receive" : "send");
    cr_assert_eq(wc.status, IBV_WC_SUCCESS, "%s", ibv_wc_status_str(wc.status));
    cr_assert_eq(wc.opcode, want);
    return wc.byte_len;
}

/* Sends buf[0, len) with immediate data 0 (no credits returned) and waits
 * for it to complete. */
static inline void raw_peer_send(raw_peer_t *p, uint32_t len)
{
    struct ibv_sge sge = {(uint64_t)(uintptr_t)p->buf, len, p->mr->lkey};
    struct ibv_send_wr wr = {0}, *bad;

    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_SEND_WITH_IMM;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.imm_data = 0;
    cr_assert_eq(ibv_post_send(p->id->qp, &wr, &bad), 0);
    raw_peer_complete(p, IBV_WC_SEND);
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
