/* Receive-side failures on a real RDMA device end receiving only: a peer
 * that sends bytes that are no frame, or a frame of another protocol
 * version, has its link's receives fail with a reason in words after the
 * frames it sent before, and the link still sends, so that a server can
 * tell such a client why (rgpu-server answers a garbage or old client with
 * a SessionError). The peer is raw librdmacm and verbs (verbs_fixture.h).
 *
 * It needs an RDMA device, so ctest does not run it: scripts/test-verbs.sh
 * runs it inside the Soft-RoCE VM, with RXE_IP the rxe interface's address. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "rgpu/transport.h"
#include "verbs_fixture.h"

static rgpu_transport_t *tp;
static rgpu_listener_t *lst;

static void setup(void)
{
    cr_assert_eq(rgpu_transport_open("verbs", &tp), RGPU_OK, "no usable RDMA device");
    cr_assert_eq(rgpu_transport_listen(tp, verbs_rxe_addr(), &lst), RGPU_OK);
}

static void teardown(void)
{
    rgpu_transport_ops(tp)->listener_close(lst);
    rgpu_transport_close(tp);
}

/* A raw peer connected to a link of ours, with one receive posted. */
static rgpu_link_t *connect_raw(raw_peer_t *p)
{
    rgpu_link_t *link;
    rgpu_status_t status;

    raw_peer_connect(p, lst, 1);
    status = verbs_accept_one(lst, &link);
    cr_assert_eq(status, RGPU_OK, "accept: %s", rgpu_status_str(status));
    raw_peer_finish(p);
    return link;
}

static void put_header(uint8_t *out, uint16_t version, uint16_t type, uint64_t seq)
{
    rgpu_frame_header_t h = {.version = version, .type = type, .seq = seq};

    rgpu_frame_header_encode(&h, out);
}

/* Our link still sends after its receiving ended: the raw peer gets a
 * whole frame of type and seq in its posted receive. */
static void expect_sends_still_go(raw_peer_t *p, rgpu_link_t *link, uint16_t type, uint64_t seq)
{
    uint8_t head[RGPU_FRAME_HEADER_SIZE];
    struct iovec iov = {head, sizeof(head)};
    rgpu_frame_header_t got;
    rgpu_status_t status;

    put_header(head, RGPU_PROTOCOL_VERSION, type, seq);
    status = rgpu_link_msg_send(link, &iov, 1, NULL);
    cr_assert_eq(status, RGPU_OK, "a send after receiving ended: %s (%s)", rgpu_status_str(status),
                 rgpu_link_reason(link));
    cr_assert_eq(raw_peer_complete(p, IBV_WC_RECV), RGPU_FRAME_HEADER_SIZE);
    cr_assert_eq(rgpu_frame_header_decode(p->buf + 128, NULL, &got), RGPU_OK);
    cr_expect_eq(got.type, type);
    cr_expect_eq(got.seq, seq);
}

TestSuite(verbs_rx, .init = setup, .fini = teardown, .timeout = 60);

Test(verbs_rx, bytes_that_are_no_frame_end_receiving_after_the_frames_before)
{
    raw_peer_t p;
    rgpu_link_t *link = connect_raw(&p);
    rgpu_msg_t *m;
    rgpu_status_t status;

    put_header(p.buf, RGPU_PROTOCOL_VERSION, 9, 3);
    raw_peer_send(&p, RGPU_FRAME_HEADER_SIZE);
    memset(p.buf, 0x41, 10);
    raw_peer_send(&p, 10);

    status = rgpu_link_msg_recv(link, &m, 10000);
    cr_assert_eq(status, RGPU_OK, "the frame before the garbage: %s", rgpu_status_str(status));
    cr_expect_eq(m->header.type, 9);
    cr_expect_eq(m->header.seq, 3);
    rgpu_msg_release(m);
    status = rgpu_link_msg_recv(link, &m, 10000);
    cr_expect_eq(status, RGPU_ERR_PROTOCOL, "%s", rgpu_status_str(status));
    cr_expect(strstr(rgpu_link_reason(link), "not a whole rgpu frame") != NULL, "reason \"%s\"",
              rgpu_link_reason(link));
    cr_expect_eq(rgpu_link_has_buffered(link), 0);
    cr_expect_lt(rgpu_link_progress(link), 0);

    expect_sends_still_go(&p, link, 21, 7);
    rgpu_link_close(link);
    raw_peer_close(&p);
}

Test(verbs_rx, a_frame_of_another_protocol_version_is_refused_in_words_and_sends_still_go)
{
    raw_peer_t p;
    rgpu_link_t *link = connect_raw(&p);
    rgpu_msg_t *m;
    rgpu_status_t status;
    char want[96];

    put_header(p.buf, 1, 9, 3);
    raw_peer_send(&p, RGPU_FRAME_HEADER_SIZE);
    status = rgpu_link_msg_recv(link, &m, 10000);
    cr_expect_eq(status, RGPU_ERR_BAD_VERSION, "%s", rgpu_status_str(status));
    snprintf(want, sizeof(want), "frame has protocol version 1, this side speaks version %u",
             RGPU_PROTOCOL_VERSION);
    cr_expect(strstr(rgpu_link_reason(link), want) != NULL, "reason \"%s\"",
              rgpu_link_reason(link));
    /* Frames after it are dropped, not handed over. */
    put_header(p.buf, RGPU_PROTOCOL_VERSION, 9, 4);
    raw_peer_send(&p, RGPU_FRAME_HEADER_SIZE);
    cr_expect_eq(rgpu_link_msg_recv(link, &m, 200), RGPU_ERR_BAD_VERSION);

    expect_sends_still_go(&p, link, 22, 8);
    rgpu_link_close(link);
    raw_peer_close(&p);
}
