/*
 * The wire over real tcp links on loopback: frames of every size that
 * matters arrive whole and in order, batches carry bursts of small frames,
 * fragments carry frames past the eager limit, and the messages the
 * transport carries have the shapes wire.c's header comment promises
 * (what a second implementation of the wire, or a verbs peer, relies on).
 */
#include "wire_test.h"

TestSuite(wire_frames, .init = wt_setup, .fini = wt_teardown);

Test(wire_frames, frames_of_every_size_arrive_whole, .timeout = WT_TIMEOUT)
{
    const uint64_t eager = wt_eager;
    const wt_frame_t w[] = {
        /* No body, no bulk. */
        {RGPU__MSG_TYPE__MSG_GOODBYE, 1, 0, -1, 0},
        /* A body only, and an empty one. */
        {RGPU__MSG_TYPE__MSG_PING, 2, 0, 100, 0},
        {RGPU__MSG_TYPE__MSG_PING, 3, 0, 0, 0},
        /* Bulk only. */
        {RGPU__MSG_TYPE__MSG_PING, 4, 0, -1, 777},
        /* Body and bulk, with a flag that must come through. */
        {RGPU__MSG_TYPE__MSG_PING, 5, RGPU_FRAME_F_DESC, 1000, 5000},
        /* Exactly the eager limit, one byte less and one byte past it. */
        {RGPU__MSG_TYPE__MSG_PING, 6, 0, 200, wt_bulk_for(200, eager)},
        {RGPU__MSG_TYPE__MSG_PING, 7, 0, 200, wt_bulk_for(200, eager - 1)},
        {RGPU__MSG_TYPE__MSG_PING, 8, 0, 200, wt_bulk_for(200, eager + 1)},
        /* Past it with the header alone in the first fragment's reach, and
         * with a body (a long program source) that alone is past it. */
        {RGPU__MSG_TYPE__MSG_PING, 9, 0, -1, eager},
        {RGPU__MSG_TYPE__MSG_PING, 10, 0, 300 << 10, 0},
        /* Several MiB: many fragments, body and bulk both spanning them. */
        {RGPU__MSG_TYPE__MSG_PING, 11, RGPU_FRAME_F_DESC, 70 << 10, (5u << 20) + 3},
        /* A small one after them all: the fragments did not eat it. */
        {RGPU__MSG_TYPE__MSG_PING, 12, 0, 5, 5},
    };
    const int n = (int)(sizeof(w) / sizeof(w[0]));
    wt_sender_t s;

    cr_assert_eq(wt_frame_size(&w[5]), eager);
    cr_assert_eq(wt_frame_size(&w[7]), eager + 1);
    wt_send_frames_async(&s, w, n);
    for (int i = 0; i < n; i++)
        wt_recv_expect(&w[i]);
    wt_send_join(&s);
}

/* What a frame becomes on the link: itself up to the eager limit; past it,
 * MSG_FRAGMENT messages of at most the eager limit, the first starting with
 * the frame's own header, only the last marked RGPU_FRAME_F_LAST, adding up
 * to the frame byte for byte. */
Test(wire_frames, past_the_eager_limit_a_frame_goes_in_fragments, .timeout = WT_TIMEOUT)
{
    const uint64_t eager = wt_eager, piece_max = eager - RGPU_FRAME_HEADER_SIZE;
    const wt_frame_t w[] = {
        {RGPU__MSG_TYPE__MSG_PING, 1, 0, 200, wt_bulk_for(200, eager)},
        {RGPU__MSG_TYPE__MSG_PING, 2, 0, 200, wt_bulk_for(200, eager + 1)},
        {RGPU__MSG_TYPE__MSG_PING, 3, RGPU_FRAME_F_DESC, 1000, (3u << 20) + 11},
    };
    wt_sender_t s;
    rgpu_msg_t *m;

    wt_send_frames_async(&s, w, 3);

    /* At the limit: the frame itself. */
    m = wt_raw_recv(wt_b);
    cr_expect_eq(m->header.type, RGPU__MSG_TYPE__MSG_PING);
    cr_expect_eq(m->header.seq, 1);
    cr_expect_eq(RGPU_FRAME_HEADER_SIZE + m->header.body_len + m->header.bulk_len, eager);
    rgpu_msg_release(m);

    for (int k = 1; k < 3; k++) {
        uint64_t total = wt_frame_size(&w[k]), got = 0;
        uint64_t pieces = (total + piece_max - 1) / piece_max;
        uint8_t *want = malloc(total), *frame = malloc(total);
        rgpu_frame_header_t inner;

        cr_assert(want && frame);
        cr_assert_eq(wt_pack(&w[k], want), total);
        for (uint64_t p = 0; p < pieces; p++) {
            int last = p + 1 == pieces;

            m = wt_raw_recv(wt_b);
            cr_assert_eq(m->header.type, RGPU__MSG_TYPE__MSG_FRAGMENT, "piece %llu of frame %d",
                         (unsigned long long)p, k);
            cr_expect_eq(m->header.body_len, 0);
            cr_expect_eq(m->header.flags, last ? RGPU_FRAME_F_LAST : 0u, "piece %llu of %llu",
                         (unsigned long long)p, (unsigned long long)pieces);
            cr_assert_eq(m->header.bulk_len, last ? total - got : piece_max, "piece %llu",
                         (unsigned long long)p);
            memcpy(frame + got, m->bulk, (size_t)m->header.bulk_len);
            got += m->header.bulk_len;
            rgpu_msg_release(m);
        }
        cr_assert_eq(rgpu_frame_header_decode(frame, NULL, &inner), RGPU_OK);
        cr_expect_eq(inner.seq, w[k].seq);
        cr_expect_eq(inner.flags, w[k].flags);
        cr_expect_eq(memcmp(frame, want, total), 0, "the fragments of frame %d are not the frame",
                     k);
        free(want);
        free(frame);
    }
    wt_send_join(&s);
    cr_expect_eq(rgpu_link_msg_recv(wt_b, &m, 0), RGPU_ERR_TIMEOUT, "a message too many");
}

/* A frame gathered from the caller's pieces (header here, bulk there, as
 * the client sends from the application's memory) is cut into fragments
 * across the pieces' boundaries without losing or moving a byte. */
Test(wire_frames, a_gathered_frame_is_cut_across_its_pieces, .timeout = WT_TIMEOUT)
{
    const uint64_t eager = wt_eager;
    const size_t cuts[7] = {1, 0, eager - 100, 3, 200000, 17, 0};
    wt_frame_t w = {RGPU__MSG_TYPE__MSG_PING, 42, 0, 60, 3 * eager + 5};
    uint64_t total = wt_frame_size(&w);
    uint8_t *frame = malloc(total);
    struct iovec iov[9];
    size_t at = 0;
    wt_sender_t s;

    cr_assert_not_null(frame);
    cr_assert_eq(wt_pack(&w, frame), total);
    iov[0] = (struct iovec){frame, RGPU_FRAME_HEADER_SIZE + wt_body_size(w.payload)};
    at = iov[0].iov_len;
    for (int i = 0; i < 6; i++) {
        iov[1 + i] = (struct iovec){frame + at, cuts[i]};
        at += cuts[i];
    }
    iov[7] = (struct iovec){frame + at, total - at};
    cr_assert_lt(at, total);

    /* At most 8 pieces, at least one. */
    iov[8] = (struct iovec){frame, 0};
    cr_expect_eq(rgpu_wire_send_frame(wt_a, iov, 9), RGPU_ERR_INVALID_ARG);
    cr_expect_eq(rgpu_wire_send_frame(wt_a, iov, 0), RGPU_ERR_INVALID_ARG);

    memset(&s, 0, sizeof(s));
    s.link = wt_a;
    s.iov = iov;
    s.iovcnt = 8;
    wt_send_start(&s);
    wt_recv_expect(&w);
    wt_send_join(&s);
    free(frame);
}

/* Frames of a burst, as a client queues kernel launches and argument
 * settings: sizes 32 bytes up, some with bulk. */
static wt_frame_t *burst(int n)
{
    wt_frame_t *w = calloc((size_t)n, sizeof(*w));

    cr_assert_not_null(w);
    for (int i = 0; i < n; i++)
        w[i] = (wt_frame_t){RGPU__MSG_TYPE__MSG_PING, (uint64_t)i + 1, 0,
                            i % 5 == 0 ? -1 : (long)(i % 53), (uint64_t)(i % 7 == 0 ? i % 300 : 0)};
    return w;
}

Test(wire_frames, many_small_frames_come_out_one_by_one_in_order, .timeout = WT_TIMEOUT)
{
    enum { N = 20000 };
    wt_frame_t *w = burst(N);
    size_t len;
    uint8_t *packed = wt_pack_all(w, N, &len);
    rgpu_wire_frame_t f;
    char reason[256] = "";
    wt_sender_t s;

    cr_assert_gt(len, 4 * wt_eager, "the burst should need several batches");
    wt_send_packed_async(&s, packed, len);
    for (int i = 0; i < N; i++)
        wt_recv_expect(&w[i]);
    wt_send_join(&s);
    cr_expect_eq(rgpu_wire_recv(&wt_rx, &f, 0, reason, sizeof(reason)), RGPU_ERR_TIMEOUT,
                 "a frame too many");
    free(packed);
    free(w);
}

/* What the burst becomes on the link: MSG_BATCH messages of at most the
 * eager limit, each holding whole frames only, each as full as the next
 * frame allows (one send and one receive per eager-limit's worth). */
Test(wire_frames, batches_are_full_and_cut_at_frame_boundaries, .timeout = WT_TIMEOUT)
{
    enum { N = 20000 };
    wt_frame_t *w = burst(N);
    size_t len, at = 0;
    uint8_t *packed = wt_pack_all(w, N, &len);
    int next = 0, batches = 0;
    wt_sender_t s;

    wt_send_packed_async(&s, packed, len);
    while (next < N) {
        rgpu_msg_t *m = wt_raw_recv(wt_b);
        uint64_t off = 0;

        cr_assert_eq(m->header.type, RGPU__MSG_TYPE__MSG_BATCH, "message %d", batches);
        cr_expect_eq(m->header.body_len, 0);
        cr_assert_leq(RGPU_FRAME_HEADER_SIZE + m->header.bulk_len, wt_eager);
        cr_assert_leq(m->header.bulk_len, len - at);
        cr_assert_eq(memcmp(m->bulk, packed + at, (size_t)m->header.bulk_len), 0,
                     "batch %d is not the next frames", batches);
        while (off < m->header.bulk_len) {
            cr_assert_lt(next, N);
            off += wt_frame_size(&w[next++]);
        }
        cr_assert_eq(off, m->header.bulk_len, "batch %d ends inside frame %d", batches, next);
        if (next < N)
            cr_expect_gt(RGPU_FRAME_HEADER_SIZE + m->header.bulk_len + wt_frame_size(&w[next]),
                         wt_eager, "batch %d had room for frame %d", batches, next);
        at += (size_t)m->header.bulk_len;
        batches++;
        rgpu_msg_release(m);
    }
    wt_send_join(&s);
    cr_expect_eq(at, len);
    free(packed);
    free(w);
}

/* Small frames around frames too large for a batch: those go alone (as
 * themselves up to the eager limit, in fragments past it), and everything
 * comes out in the order it was queued. */
Test(wire_frames, small_frames_around_large_ones_keep_their_order, .timeout = WT_TIMEOUT)
{
    const uint64_t eager = wt_eager;
    wt_frame_t w[64];
    int n = 0;
    size_t len;
    uint8_t *packed;
    wt_sender_t s;

    for (int i = 0; i < 10; i++, n++)
        w[n] = (wt_frame_t){RGPU__MSG_TYPE__MSG_PING, (uint64_t)n + 1, 0, i * 3, (uint64_t)i};
    w[n] = (wt_frame_t){RGPU__MSG_TYPE__MSG_PING, (uint64_t)n + 1, 0, 40, eager + 100};
    n++;
    for (int i = 0; i < 10; i++, n++)
        w[n] = (wt_frame_t){RGPU__MSG_TYPE__MSG_PING, (uint64_t)n + 1, 0, -1, (uint64_t)i * 5};
    /* Exactly the eager limit: too large for a batch, fits as itself. */
    w[n] = (wt_frame_t){RGPU__MSG_TYPE__MSG_PING, (uint64_t)n + 1, 0, 10, wt_bulk_for(10, eager)};
    n++;
    w[n] = (wt_frame_t){RGPU__MSG_TYPE__MSG_PING, (uint64_t)n + 1, 0, 1, 1};
    n++;
    /* Exactly what one batch holds. */
    w[n] = (wt_frame_t){RGPU__MSG_TYPE__MSG_PING, (uint64_t)n + 1, 0, 10,
                        wt_bulk_for(10, eager - RGPU_FRAME_HEADER_SIZE)};
    n++;
    /* Several MiB in the middle of a burst, then more small ones. */
    w[n] = (wt_frame_t){RGPU__MSG_TYPE__MSG_PING, (uint64_t)n + 1, 0, 1000, 3u << 20};
    n++;
    for (int i = 0; i < 10; i++, n++)
        w[n] = (wt_frame_t){RGPU__MSG_TYPE__MSG_PING, (uint64_t)n + 1, 0, i, 0};

    packed = wt_pack_all(w, n, &len);
    wt_send_packed_async(&s, packed, len);
    for (int i = 0; i < n; i++)
        wt_recv_expect(&w[i]);
    wt_send_join(&s);
    free(packed);
}

/* Two frames that fill a batch to the byte go as one batch of exactly the
 * eager limit; the frame after them starts the next message. */
Test(wire_frames, frames_exactly_filling_a_batch, .timeout = WT_TIMEOUT)
{
    const uint64_t room = wt_eager - RGPU_FRAME_HEADER_SIZE;
    wt_frame_t w[3] = {
        {RGPU__MSG_TYPE__MSG_PING, 1, 0, 30, 100},
        {RGPU__MSG_TYPE__MSG_PING, 2, 0, 50, 0},
        {RGPU__MSG_TYPE__MSG_PING, 3, 0, 7, 7},
    };
    size_t len;
    uint8_t *packed;
    rgpu_msg_t *m;
    wt_sender_t s;

    w[1].bulk_len = wt_bulk_for(50, room - wt_frame_size(&w[0]));
    cr_assert_eq(wt_frame_size(&w[0]) + wt_frame_size(&w[1]), room);
    packed = wt_pack_all(w, 3, &len);

    /* The shape on the link. */
    wt_send_packed_async(&s, packed, len);
    m = wt_raw_recv(wt_b);
    cr_expect_eq(m->header.type, RGPU__MSG_TYPE__MSG_BATCH);
    cr_expect_eq(m->header.bulk_len, room, "the batch holds %llu bytes",
                 (unsigned long long)m->header.bulk_len);
    rgpu_msg_release(m);
    m = wt_raw_recv(wt_b);
    cr_expect_eq(m->header.type, RGPU__MSG_TYPE__MSG_PING, "the third frame goes as itself");
    cr_expect_eq(m->header.seq, 3);
    rgpu_msg_release(m);
    wt_send_join(&s);

    /* And the receiver takes the full batch apart. */
    wt_send_packed_async(&s, packed, len);
    for (int i = 0; i < 3; i++)
        wt_recv_expect(&w[i]);
    wt_send_join(&s);
    free(packed);
}

/* While frames remain in a batch the receiver says so: the link's event fd
 * will not turn readable for them, so a caller that slept on it would
 * never see them. Once the batch is done, nothing is pending. */
Test(wire_frames, rx_pending_while_frames_remain_in_a_batch, .timeout = WT_TIMEOUT)
{
    enum { N = 5 };
    wt_frame_t *w = burst(N);
    size_t len;
    uint8_t *packed = wt_pack_all(w, N, &len);

    cr_assert_eq(rgpu_wire_send_frames(wt_a, packed, len), RGPU_OK);
    for (int i = 0; i < N; i++) {
        wt_recv_expect(&w[i]);
        if (i + 1 < N)
            cr_expect_neq(rgpu_wire_rx_pending(&wt_rx), 0, "frames %d to %d are not pending",
                          i + 2, N);
    }
    cr_expect_eq(rgpu_wire_rx_pending(&wt_rx), 0, "pending with nothing left");
    free(packed);
    free(w);
}

/* A receive that times out changes nothing: the next frame still comes. */
Test(wire_frames, a_receive_that_times_out_goes_on_later, .timeout = WT_TIMEOUT)
{
    const wt_frame_t w = {RGPU__MSG_TYPE__MSG_PING, 9, 0, 3, 3};
    rgpu_wire_frame_t f;
    char reason[256] = "";

    cr_expect_eq(rgpu_wire_recv(&wt_rx, &f, 0, reason, sizeof(reason)), RGPU_ERR_TIMEOUT);
    cr_expect_eq(rgpu_wire_recv(&wt_rx, &f, 50, reason, sizeof(reason)), RGPU_ERR_TIMEOUT);
    cr_expect_eq(rgpu_wire_rx_pending(&wt_rx), 0);
    cr_assert_eq(wt_send_one(wt_a, &w), RGPU_OK);
    wt_recv_expect(&w);
}

/* Both directions: the server's replies come through the same layer. */
Test(wire_frames, frames_go_both_ways, .timeout = WT_TIMEOUT)
{
    const wt_frame_t w[2] = {
        {RGPU__MSG_TYPE__MSG_PONG, 5, 0, 10, 2 * wt_eager},
        {RGPU__MSG_TYPE__MSG_PONG, 6, 0, 10, 10},
    };
    rgpu_wire_rx_t rx_a;
    rgpu_wire_frame_t f;
    char reason[256] = "";
    wt_sender_t s;

    rgpu_wire_rx_init(&rx_a, wt_a, NULL, WT_MAX_ASSEMBLED);
    memset(&s, 0, sizeof(s));
    s.link = wt_b;
    s.frames = w;
    s.n = 2;
    wt_send_start(&s);
    for (int i = 0; i < 2; i++) {
        rgpu_status_t status = rgpu_wire_recv(&rx_a, &f, WT_WAIT_MS, reason, sizeof(reason));

        cr_assert_eq(status, RGPU_OK, "%s: %s", rgpu_status_str(status), reason);
        wt_expect_frame(&f, &w[i]);
    }
    wt_send_join(&s);
    rgpu_wire_rx_fini(&rx_a);
}

/* A receiver that takes no bulk (max_bulk 0) still takes bodies that come
 * in batches and in fragments: the carriers' inline bulk is other frames,
 * and each of those is held to the limits on its own. */
Test(wire_frames, a_receiver_without_bulk_takes_batches_and_fragments, .timeout = WT_TIMEOUT)
{
    const rgpu_frame_limits_t no_bulk = {RGPU_FRAME_DEFAULT_MAX_BODY, 0};
    const wt_frame_t w[4] = {
        {RGPU__MSG_TYPE__MSG_PONG, 1, 0, 10, 0},
        {RGPU__MSG_TYPE__MSG_PONG, 2, 0, -1, 0},
        {RGPU__MSG_TYPE__MSG_PONG, 3, 0, (long)(2 * wt_eager), 0},
        {RGPU__MSG_TYPE__MSG_PONG, 4, 0, 20, 0},
    };
    size_t len;
    uint8_t *packed = wt_pack_all(w, 4, &len);
    wt_sender_t s;

    rgpu_wire_rx_fini(&wt_rx);
    rgpu_wire_rx_init(&wt_rx, wt_b, &no_bulk, WT_MAX_ASSEMBLED);
    wt_send_packed_async(&s, packed, len);
    for (int i = 0; i < 4; i++)
        wt_recv_expect(&w[i]);
    wt_send_join(&s);
    free(packed);
}

typedef struct {
    const uint8_t *frame;
    uint64_t total;
    rgpu_status_t status;
} by_hand_t;

/* Sends frame in the pieces rgpu_wire_fragment_head cuts, each as one
 * message (on its own thread: they need not fit the socket buffers). */
static void *send_by_hand(void *arg)
{
    by_hand_t *h = arg;
    uint64_t off = 0;

    h->status = RGPU_OK;
    while (off < h->total && h->status == RGPU_OK) {
        uint8_t head[RGPU_FRAME_HEADER_SIZE];
        size_t piece = rgpu_wire_fragment_head(h->total, off, wt_eager, head);
        struct iovec iov[2] = {{head, sizeof(head)}, {(void *)(h->frame + off), piece}};

        h->status = piece > 0 ? rgpu_link_msg_send(wt_a, iov, 2, NULL) : RGPU_ERR_INVALID_ARG;
        off += piece;
    }
    return NULL;
}

/* A sender without a link (the scheduler daemon writes libuv streams)
 * cuts a frame with rgpu_wire_fragment_head: its pieces are exactly those
 * rgpu_wire_send_frame sends, and the receiver puts them back together. */
Test(wire_frames, fragments_cut_by_hand_are_the_wire_s_own, .timeout = WT_TIMEOUT)
{
    const wt_frame_t w = {RGPU__MSG_TYPE__MSG_PONG, 7, 0, 300, 2 * wt_eager + 99};
    uint64_t total = wt_frame_size(&w);
    uint8_t *frame = malloc(total);
    struct iovec whole;
    by_hand_t h;
    pthread_t th;
    wt_sender_t s;

    cr_assert_not_null(frame);
    cr_assert_eq(wt_pack(&w, frame), total);
    h = (by_hand_t){frame, total, RGPU_OK};

    /* Piece by piece on the link: the shapes rgpu_wire_send_frame makes. */
    cr_assert_eq(pthread_create(&th, NULL, send_by_hand, &h), 0);
    for (uint64_t off = 0, piece; off < total; off += piece) {
        rgpu_msg_t *m = wt_raw_recv(wt_b);

        piece = total - off < wt_eager - RGPU_FRAME_HEADER_SIZE ? total - off
                                                                 : wt_eager - RGPU_FRAME_HEADER_SIZE;
        cr_assert_eq(m->header.type, RGPU__MSG_TYPE__MSG_FRAGMENT);
        cr_expect_eq(m->header.flags, off + piece == total ? RGPU_FRAME_F_LAST : 0u);
        cr_assert_eq(m->header.bulk_len, piece, "the piece at %llu", (unsigned long long)off);
        cr_assert_eq(memcmp(m->bulk, frame + off, piece), 0);
        rgpu_msg_release(m);
    }
    pthread_join(th, NULL);
    cr_assert_eq(h.status, RGPU_OK, "%s", rgpu_status_str(h.status));

    /* Through the receiver, by hand and then by the wire itself. */
    cr_assert_eq(pthread_create(&th, NULL, send_by_hand, &h), 0);
    wt_recv_expect(&w);
    pthread_join(th, NULL);
    cr_assert_eq(h.status, RGPU_OK, "%s", rgpu_status_str(h.status));
    whole = (struct iovec){frame, total};
    memset(&s, 0, sizeof(s));
    s.link = wt_a;
    s.iov = &whole;
    s.iovcnt = 1;
    wt_send_start(&s);
    wt_recv_expect(&w);
    wt_send_join(&s);
    free(frame);
}
