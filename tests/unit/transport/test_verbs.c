/* The verbs transport on a real RDMA device: the conformance suite's
 * message, registration, get/put and killed-peer tests, then what only
 * verbs has (the HCA refusing keys and ranges by ending the link, a QP in
 * error, a registration the kernel refuses, every QP, CQ and MR freed as
 * the kernel's own counters show).
 *
 * It needs an RDMA device, so ctest does not run it: scripts/test-verbs.sh
 * runs it inside a Soft-RoCE VM (../shared/scripts/run-in-rxe-vm.sh), with
 * RXE_IP the address of the rxe device's interface (127.0.0.1 does not
 * work with rxe) and RGPU_CONF_RMA_MAX_MB capping the largest transfer. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

/* The address, resource counts and raw peer the VM-only tests share
 * (tests/verbs/verbs_fixture.h). */
#include "verbs_fixture.h"

#define CONFORMANCE_SUITE verbs
#define CONFORMANCE_OPS   rgpu_verbs_ops
#define CONFORMANCE_ADDR  verbs_rxe_addr()
#define CONFORMANCE_NO_STREAM
#define CONFORMANCE_REFUSALS_END_THE_LINK
#include "conformance.h"

#include "rgpu/verbs.h"

/* Waits up to timeout_ms for link to fail; returns its status. */
static rgpu_status_t verbs_wait_failed(rgpu_link_t *link, int timeout_ms)
{
    rgpu_msg_t *m;
    rgpu_status_t status = rgpu_link_msg_recv(link, &m, timeout_ms);

    if (status == RGPU_OK) {
        rgpu_msg_release(m);
        return RGPU_ERR_PROTOCOL; /* nothing was sent: a message is wrong */
    }
    return status;
}

Test(verbs_msg, keys_are_the_hcas_and_bad_ones_never_reach_the_wire, .timeout = CONF_TIMEOUT)
{
    size_t len = 4096;
    unsigned char *rbuf = conf_region(len), *lbuf = conf_region(3 * len);
    rgpu_mem_t *rmem, *lmem;
    rgpu_mem_desc_t desc, bad;

    cr_assert_eq(rgpu_mem_register(tp_b, rbuf, len, RGPU_MEMTYPE_HOST, &rmem), RGPU_OK);
    cr_assert_eq(rgpu_mem_register(tp_a, lbuf, 3 * len, RGPU_MEMTYPE_HOST, &lmem), RGPU_OK);
    desc = rgpu_mem_desc(rmem);
    /* A zero key, or one not of this transport's form: refused here. */
    bad = desc;
    bad.key = 0;
    cr_expect_eq(rgpu_link_get(ma, lmem, 0, &bad, 0, 16, NULL), RGPU_ERR_NOT_FOUND);
    bad.key = desc.key ^ (1ull << 40);
    cr_expect_eq(rgpu_link_put(ma, lmem, 0, &bad, 0, 16, NULL), RGPU_ERR_NOT_FOUND);
    /* Past the descriptor: refused before anything is sent. */
    cr_expect_eq(rgpu_link_get(ma, lmem, 0, &desc, len - 1, 2, NULL), RGPU_ERR_INVALID_ARG);
    cr_expect_eq(rgpu_link_get(ma, lmem, 3 * len - 1, &desc, 0, 2, NULL), RGPU_ERR_INVALID_ARG);
    cr_expect_eq(rgpu_link_get(ma, lmem, 0, &desc, UINT64_MAX, 2, NULL), RGPU_ERR_INVALID_ARG);
    /* A memory type the HCA cannot reach. */
    bad = desc;
    bad.memtype = RGPU_MEMTYPE_CUDA;
    cr_expect_eq(rgpu_link_get(ma, lmem, 0, &bad, 0, 16, NULL), RGPU_ERR_UNSUPPORTED);
    /* None of that harmed the link. */
    conf_fill(rbuf, len, 5);
    cr_expect_eq(rgpu_link_get(ma, lmem, 0, &desc, 0, len, NULL), RGPU_OK);
    conf_expect_pattern(lbuf, len, 5, "get after local refusals");
    cr_expect_str_eq(rgpu_link_reason(ma), "");
    rgpu_mem_deregister(lmem);
    rgpu_mem_deregister(rmem);
    free(rbuf);
    free(lbuf);
}

/* What the peer's HCA refuses: a wrong rkey, a forged range, a put into a
 * read-only region, a deregistered key. Each ends its link on both sides
 * (the HCA moves the QP to error): the operation and the link fail with
 * RGPU_ERR_IO and a reason that says the peer refused; the peer's memory is
 * untouched; other links work. */
Test(verbs_msg, what_the_peers_hca_refuses_ends_that_link_only, .timeout = CONF_TIMEOUT)
{
    enum { WRONG_KEY, FORGED_GET, FORGED_PUT, READ_ONLY_PUT, DEREGISTERED, NCASES };
    static const char *what[NCASES] = {"a wrong rkey", "a get outside the registration",
                                       "a put outside the registration", "a put into a read-only region",
                                       "a deregistered key"};
    size_t len = 4096;
    unsigned char *rbuf = conf_region(3 * len), *lbuf = conf_region(3 * len);
    rgpu_mem_t *rmem, *lmem;
    rgpu_mem_desc_t desc;

    memset(rbuf, 0xAA, 3 * len);
    memset(lbuf, 0x55, 3 * len);
    cr_assert_eq(rgpu_mem_register(tp_b, rbuf + len, len, RGPU_MEMTYPE_HOST, &rmem), RGPU_OK);
    cr_assert_eq(rgpu_mem_register(tp_a, lbuf, 3 * len, RGPU_MEMTYPE_HOST, &lmem), RGPU_OK);
    desc = rgpu_mem_desc(rmem);
    for (int k = 0; k < NCASES; k++) {
        rgpu_link_t *a, *b;
        rgpu_mem_t *extra = NULL;
        rgpu_mem_desc_t bad = desc;
        rgpu_status_t status;

        conf_msg_connect(&a, &b);
        switch (k) {
        case WRONG_KEY:
            bad.key ^= 1;
            status = rgpu_link_get(a, lmem, 0, &bad, 0, 16, NULL);
            break;
        case FORGED_GET:
            bad.addr -= len;
            bad.len = 3 * len;
            status = rgpu_link_get(a, lmem, 0, &bad, 0, 16, NULL);
            break;
        case FORGED_PUT:
            bad.len = 3 * len;
            status = rgpu_link_put(a, lmem, 0, &bad, len - 8, 16, NULL);
            break;
        case READ_ONLY_PUT:
            cr_assert_eq(rgpu_mem_register_access(tp_b, rbuf, len, RGPU_MEMTYPE_HOST,
                                                  RGPU_MEM_REMOTE_READ, &extra), RGPU_OK);
            bad = rgpu_mem_desc(extra);
            cr_expect_eq(rgpu_link_get(a, lmem, 0, &bad, 0, 16, NULL), RGPU_OK, "a permitted get");
            status = rgpu_link_put(a, lmem, 0, &bad, 0, 16, NULL);
            break;
        default:
            cr_assert_eq(rgpu_mem_register(tp_b, rbuf, len, RGPU_MEMTYPE_HOST, &extra), RGPU_OK);
            bad = rgpu_mem_desc(extra);
            rgpu_mem_deregister(extra);
            extra = NULL;
            status = rgpu_link_get(a, lmem, 0, &bad, 0, 16, NULL);
            break;
        }
        /* The refusal is the link's failure: the HCA moved the QP to error. */
        cr_expect_eq(status, RGPU_ERR_IO, "%s: %s", what[k], rgpu_status_str(status));
        cr_expect(strstr(rgpu_link_reason(a), "refused") != NULL, "%s: reason \"%s\"", what[k],
                  rgpu_link_reason(a));
        cr_expect_neq(conf_msg_send(a, 1, 0, 0), RGPU_OK, "%s: the link still sends", what[k]);
        /* The peer learns it too, within the transport's timeouts. */
        status = verbs_wait_failed(b, 10000);
        cr_expect(status == RGPU_ERR_CONN_CLOSED || status == RGPU_ERR_IO, "%s: the peer got %s",
                  what[k], rgpu_status_str(status));
        for (size_t i = 0; i < 3 * len; i++)
            cr_assert_eq(rbuf[i], 0xAA, "%s changed byte %zu", what[k], i);
        if (extra)
            rgpu_mem_deregister(extra);
        rgpu_link_close(a);
        rgpu_link_close(b);
    }
    /* The fixture's link never noticed. */
    memset(lbuf, 0x55, 3 * len);
    cr_expect_eq(rgpu_link_put(ma, lmem, 0, &desc, 0, len, NULL), RGPU_OK);
    cr_expect_eq(rbuf[len], 0x55);
    cr_expect_eq(rbuf[len - 1], 0xAA);
    cr_expect_eq(rbuf[2 * len], 0xAA);
    rgpu_mem_deregister(lmem);
    rgpu_mem_deregister(rmem);
    free(rbuf);
    free(lbuf);
}

Test(verbs_msg, a_qp_moved_to_error_ends_the_session_on_both_sides, .timeout = CONF_TIMEOUT)
{
    size_t len = 1u << 20;
    unsigned char *rbuf = conf_region(len), *lbuf = conf_region(len);
    rgpu_mem_t *rmem, *lmem;
    rgpu_mem_desc_t desc;
    rgpu_completion_t c = {0};
    rgpu_status_t status;
    rgpu_msg_t *m;

    cr_assert_eq(rgpu_mem_register(tp_b, rbuf, len, RGPU_MEMTYPE_HOST, &rmem), RGPU_OK);
    cr_assert_eq(rgpu_mem_register(tp_a, lbuf, len, RGPU_MEMTYPE_HOST, &lmem), RGPU_OK);
    desc = rgpu_mem_desc(rmem);
    cr_assert_eq(conf_msg_send(mb, 1, 2, 3), RGPU_OK);
    cr_assert_eq(rgpu_link_msg_recv(ma, &m, 5000), RGPU_OK);
    rgpu_msg_release(m);
    /* A get in flight when the QP breaks completes with the failure. */
    cr_assert_eq(rgpu_link_get(ma, lmem, 0, &desc, 0, len, &c), RGPU_OK);
    rgpu_verbs_inject_qp_error(ma);
    status = rgpu_link_wait(ma, &c, 10000);
    cr_expect(c.done, "the get never completed");
    cr_expect(status == RGPU_OK || status == RGPU_ERR_IO || status == RGPU_ERR_CONN_CLOSED,
              "get: %s", rgpu_status_str(status));
    status = verbs_wait_failed(ma, 10000);
    cr_expect(status == RGPU_ERR_IO || status == RGPU_ERR_CONN_CLOSED, "this side: %s",
              rgpu_status_str(status));
    cr_expect_neq(rgpu_link_reason(ma)[0], '\0');
    cr_expect_lt(rgpu_link_progress(ma), 0, "the failure is not sticky");
    status = verbs_wait_failed(mb, 10000);
    cr_expect(status == RGPU_ERR_IO || status == RGPU_ERR_CONN_CLOSED, "the peer: %s",
              rgpu_status_str(status));
    cr_expect_neq(rgpu_link_reason(mb)[0], '\0');
    rgpu_mem_deregister(lmem);
    rgpu_mem_deregister(rmem);
    free(rbuf);
    free(lbuf);
}

Test(verbs_msg, a_registration_the_kernel_refuses_is_an_error_and_leaks_nothing,
     .timeout = CONF_TIMEOUT)
{
    size_t len = 1u << 20;
    verbs_counts_t before = verbs_count();
    unsigned char *ro, *gone, *buf = conf_region(len);
    rgpu_mem_t *m = NULL;

    /* Memory that is not mapped, and memory mapped read-only asked to take
     * the peer's writes: the kernel refuses to pin either. */
    gone = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(gone, MAP_FAILED);
    munmap(gone, len);
    cr_expect_eq(rgpu_mem_register(tp_a, gone, len, RGPU_MEMTYPE_HOST, &m), RGPU_ERR_INVALID_ARG);
    ro = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(ro, MAP_FAILED);
    cr_expect_eq(rgpu_mem_register_access(tp_a, ro, len, RGPU_MEMTYPE_HOST, RGPU_MEM_REMOTE_WRITE,
                                          &m), RGPU_ERR_INVALID_ARG);
    cr_expect_null(m);
    verbs_expect_counts(verbs_count(), before, "after refused registrations");
    /* The transport goes on working. */
    cr_assert_eq(rgpu_mem_register(tp_a, buf, len, RGPU_MEMTYPE_HOST, &m), RGPU_OK);
    cr_expect_eq(verbs_count().mr, before.mr + 1, "the counter does not see registrations");
    rgpu_mem_deregister(m);
    munmap(ro, len);
    free(buf);
}

/* Every PD, CQ, QP and MR of a transport instance is gone when its links,
 * registrations and the instance are closed, also after a peer was killed
 * in the middle of a transfer. */
TestSuite(verbs_res);

Test(verbs_res, every_qp_cq_and_mr_is_freed_on_close_and_after_a_killed_peer,
     .timeout = CONF_TIMEOUT)
{
    verbs_counts_t before, during;
    size_t len = conf_rma_max() < (64u << 20) ? conf_rma_max() : (64u << 20);
    unsigned char *buf = malloc(len);
    rgpu_transport_t *tp, *tp2;
    rgpu_listener_t *l;
    rgpu_link_t *a[3], *b[3], *kl;
    rgpu_mem_t *mem, *mem2;
    rgpu_mem_desc_t desc;
    rgpu_status_t status;
    conf_killer_t k;
    pthread_t th;
    int wstatus;

    cr_assert_not_null(buf);
    /* librdmacm keeps a PD per device for the process once a connection
     * identifier was bound to it: count from there. */
    cr_assert_eq(rgpu_transport_open("verbs", &tp), RGPU_OK);
    cr_assert_eq(rgpu_transport_listen(tp, verbs_rxe_addr(), &l), RGPU_OK);
    rgpu_verbs_ops.listener_close(l);
    rgpu_transport_close(tp);
    before = verbs_count();
    cr_assert_eq(rgpu_transport_open("verbs", &tp), RGPU_OK);
    cr_assert_eq(rgpu_transport_open("verbs", &tp2), RGPU_OK);
    cr_assert_eq(rgpu_transport_listen(tp, verbs_rxe_addr(), &l), RGPU_OK);
    for (int i = 0; i < 3; i++)
        conf_connect_pair(tp2, l, &a[i], &b[i]);
    cr_assert_eq(rgpu_mem_register(tp, buf, len, RGPU_MEMTYPE_HOST, &mem), RGPU_OK);
    cr_assert_eq(rgpu_mem_register(tp2, buf, 4096, RGPU_MEMTYPE_HOST, &mem2), RGPU_OK);
    desc = rgpu_mem_desc(mem);
    cr_assert_eq(rgpu_link_get(a[0], mem2, 0, &desc, 0, 4096, NULL), RGPU_OK);
    during = verbs_count();
    cr_expect_geq(during.qp, before.qp + 6, "the counter sees %d QPs, %d before", during.qp, before.qp);
    cr_expect_geq(during.mr, before.mr + 2, "the counter sees %d MRs, %d before", during.mr, before.mr);
    if (during.qp < before.qp + 6)
        cr_assert_eq(system("rdma resource show qp >&2"), 0);
    for (int i = 0; i < 3; i++) {
        rgpu_link_close(a[i]);
        rgpu_link_close(b[i]);
    }
    rgpu_mem_deregister(mem2);
    rgpu_transport_close(tp2);

    /* A peer killed in the middle of a put into it. */
    k.pid = conf_spawn(tp, l, 0, &kl, &desc);
    k.after_ms = 300;
    cr_assert_eq(pthread_create(&th, NULL, conf_killer, &k), 0);
    status = rgpu_link_put(kl, mem, 0, &desc, 0, len < desc.len ? len : desc.len, NULL);
    pthread_join(th, NULL);
    cr_expect(status == RGPU_ERR_CONN_CLOSED || status == RGPU_ERR_IO, "put: %s",
              rgpu_status_str(status));
    cr_assert_eq(waitpid(k.pid, &wstatus, 0), k.pid);
    rgpu_link_close(kl);
    rgpu_mem_deregister(mem);
    rgpu_verbs_ops.listener_close(l);
    rgpu_transport_close(tp);
    verbs_expect_counts(verbs_count(), before, "after closing everything");
    free(buf);
}

/* ------------------------------------------------------------------------
 * A hostile peer: raw librdmacm and verbs, speaking the greeting and then
 * whatever it likes. The link it reaches fails with a reason; everyone
 * else is served on.
 * ---------------------------------------------------------------------- */

/* Connects a raw peer h to the fixture's listener (accepted on another
 * thread); with greet == 0 it sends no greeting and is rejected. */
static void hostile_connect(raw_peer_t *h, int greet, rgpu_link_t **b_p)
{
    conf_acceptor_t acc = {mlst, NULL, RGPU_OK};
    pthread_t th;

    cr_assert_eq(pthread_create(&th, NULL, conf_acceptor, &acc), 0);
    raw_peer_connect(h, mlst, greet);
    if (!greet) {
        raw_peer_event(h, RDMA_CM_EVENT_REJECTED);
        pthread_join(th, NULL);
        cr_expect_eq(acc.status, RGPU_ERR_PROTOCOL, "accept: %s", rgpu_status_str(acc.status));
        *b_p = NULL;
        return;
    }
    raw_peer_finish(h);
    pthread_join(th, NULL);
    cr_assert_eq(acc.status, RGPU_OK);
    *b_p = acc.link;
}

Test(verbs_msg, a_peer_that_breaks_the_protocol_is_cut_off_and_others_are_served,
     .timeout = CONF_TIMEOUT)
{
    raw_peer_t h;
    rgpu_link_t *b;
    rgpu_msg_t *m;
    uint8_t head[RGPU_FRAME_HEADER_SIZE];
    rgpu_frame_header_t fh = {RGPU_PROTOCOL_VERSION, 5, 0, 0, 1, 0};
    struct iovec iov = {head, sizeof(head)};

    /* No greeting: rejected, nothing made. */
    hostile_connect(&h, 0, &b);
    raw_peer_close(&h);

    /* Bytes that are not a frame. */
    hostile_connect(&h, 1, &b);
    memset(h.buf, 0x41, sizeof(h.buf));
    raw_peer_send(&h, 10);
    cr_expect_eq(rgpu_link_msg_recv(b, &m, 5000), RGPU_ERR_PROTOCOL);
    cr_expect(strstr(rgpu_link_reason(b), "not a whole rgpu frame") != NULL, "reason \"%s\"",
              rgpu_link_reason(b));
    rgpu_link_close(b);
    raw_peer_close(&h);

    /* A credit count for messages never sent, written into the credit word. */
    hostile_connect(&h, 1, &b);
    memcpy(h.buf, &(uint32_t){1000000}, 4);
    raw_peer_post(&h, IBV_WR_RDMA_WRITE, 4, 0);
    rgpu_frame_header_encode(&fh, head);
    cr_expect_eq(rgpu_link_msg_send(b, &iov, 1, NULL), RGPU_ERR_PROTOCOL);
    cr_expect(strstr(rgpu_link_reason(b), "never sent") != NULL, "reason \"%s\"",
              rgpu_link_reason(b));
    rgpu_link_close(b);
    raw_peer_close(&h);

    /* The fixture's link was served throughout. */
    cr_assert_eq(conf_msg_send(ma, 4, 5, 6), RGPU_OK);
    cr_assert_eq(rgpu_link_msg_recv(mb, &m, 5000), RGPU_OK);
    conf_msg_check(m, 4, 5, 6);
    rgpu_msg_release(m);
}

/* Connecting where nothing listens, and to what is no address: errors in
 * words, within the timeout, nothing made. */
TestSuite(verbs_only);

Test(verbs_only, connect_errors_are_refusals_and_address_errors_with_reasons,
     .timeout = CONF_TIMEOUT)
{
    static const char *bad[] = {"10.77.0.1", "no-port:", "10.77.0.1:99999", ":7000"};
    rgpu_transport_t *tp;
    rgpu_listener_t *l;
    rgpu_link_t *link = NULL;
    char addr[96], reason[512] = "";
    rgpu_status_t status;

    cr_assert_eq(rgpu_transport_open("verbs", &tp), RGPU_OK);
    /* A port that was listened on, then closed. */
    cr_assert_eq(rgpu_transport_listen(tp, verbs_rxe_addr(), &l), RGPU_OK);
    snprintf(addr, sizeof(addr), "%s", l->local);
    rgpu_verbs_ops.listener_close(l);
    status = rgpu_transport_connect(tp, addr, 5000, &link, reason, sizeof(reason));
    cr_expect_eq(status, RGPU_ERR_CONN_REFUSED, "%s: %s", rgpu_status_str(status), reason);
    cr_expect(strstr(reason, "refused") != NULL || strstr(reason, "unreachable") != NULL,
              "reason \"%s\"", reason);
    cr_expect_null(link);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reason[0] = '\0';
        cr_expect_eq(rgpu_transport_connect(tp, bad[i], 1000, &link, reason, sizeof(reason)),
                     RGPU_ERR_ADDRESS, "connect(\"%s\")", bad[i]);
        cr_expect(strstr(reason, bad[i]) != NULL, "reason \"%s\" does not name \"%s\"", reason,
                  bad[i]);
        cr_expect_eq(rgpu_transport_listen(tp, bad[i], &l), RGPU_ERR_ADDRESS, "listen(\"%s\")",
                     bad[i]);
    }
    cr_expect_null(link);
    rgpu_transport_close(tp);
}
