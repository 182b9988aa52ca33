/*
 * A hostile peer against the wire's receiver: batches and fragments built
 * by hand and sent as raw messages (rgpu_link_msg_send), each well formed
 * for the transport and wrong for the wire. The receiver must answer with
 * the right status and a sentence, hand over nothing more, allocate
 * nothing a peer merely claims, and leak nothing (the ASan build checks);
 * its link must still carry the server's last word to the peer.
 */
#include "wire_test.h"
#include <time.h>

TestSuite(wire_hostile, .init = wt_setup, .fini = wt_teardown);

/* b's link still carries a SessionError saying why to the peer. */
static void expect_last_word(rgpu_status_t status, char *reason)
{
    Rgpu__SessionError err = RGPU__SESSION_ERROR__INIT;
    rgpu_msg_t *m;

    err.status = status;
    err.reason = reason;
    cr_assert_eq(rgpu_wire_send(wt_b, RGPU__MSG_TYPE__MSG_SESSION_ERROR, 0, 0, &err.base, NULL, 0),
                 RGPU_OK, "the server can no longer say why");
    m = wt_raw_recv(wt_a);
    cr_expect_eq(m->header.type, RGPU__MSG_TYPE__MSG_SESSION_ERROR);
    rgpu_msg_release(m);
}

/* Expects b's next receive to fail with want and a reason that says word,
 * then to have nothing more to give; the link still sends to the peer. */
static void expect_refused(rgpu_status_t want, const char *word)
{
    rgpu_wire_frame_t f;
    char reason[512] = "", again[512] = "";
    rgpu_status_t status = rgpu_wire_recv(&wt_rx, &f, WT_WAIT_MS, reason, sizeof(reason));

    cr_assert_eq(status, want, "got %s (\"%s\"), expected %s", rgpu_status_str(status), reason,
                 rgpu_status_str(want));
    cr_expect(strstr(reason, word) != NULL, "the reason \"%s\" does not say \"%s\"", reason, word);
    cr_expect_eq(rgpu_wire_recv(&wt_rx, &f, 0, again, sizeof(again)), want,
                 "the receiver went on after refusing");
    cr_expect_neq(again[0], '\0', "no reason the second time");

    expect_last_word(status, reason);
}

/* A frame of seq with a body of body_len bytes (zeros) and bulk_len bytes
 * of bulk (zeros), header first, at out; returns its size. */
static size_t inner(uint8_t *out, uint16_t type, uint64_t seq, uint32_t body_len,
                    uint64_t bulk_len)
{
    wt_put_header(out, RGPU_PROTOCOL_VERSION, type, 0, body_len, seq, bulk_len);
    memset(out + RGPU_FRAME_HEADER_SIZE, 0, body_len + (size_t)bulk_len);
    return RGPU_FRAME_HEADER_SIZE + body_len + (size_t)bulk_len;
}

static void expect_ok_frame(uint64_t seq)
{
    rgpu_wire_frame_t f;
    char reason[512] = "";
    rgpu_status_t status = rgpu_wire_recv(&wt_rx, &f, WT_WAIT_MS, reason, sizeof(reason));

    cr_assert_eq(status, RGPU_OK, "the good frame before the bad: %s: %s",
                 rgpu_status_str(status), reason);
    cr_expect_eq(f.header.seq, seq);
}

/* ---- batches ---------------------------------------------------------- */

Test(wire_hostile, a_frame_overrunning_its_batch, .timeout = WT_TIMEOUT)
{
    uint8_t batch[512];
    size_t n = inner(batch, RGPU__MSG_TYPE__MSG_PING, 1, 4, 4);

    /* The second frame says 100 bytes of body and 50 are there. */
    n += inner(batch + n, RGPU__MSG_TYPE__MSG_PING, 2, 50, 0);
    wt_put_header(batch + n - 50 - RGPU_FRAME_HEADER_SIZE, RGPU_PROTOCOL_VERSION,
                  RGPU__MSG_TYPE__MSG_PING, 0, 100, 2, 0);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_BATCH, 0, NULL, 0, batch, n);
    expect_ok_frame(1);
    expect_refused(RGPU_ERR_PROTOCOL, "overruns");
}

Test(wire_hostile, a_batch_ending_inside_a_header, .timeout = WT_TIMEOUT)
{
    uint8_t batch[512];
    size_t n = inner(batch, RGPU__MSG_TYPE__MSG_PING, 1, 0, 0);

    memset(batch + n, 0x52, 10);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_BATCH, 0, NULL, 0, batch, n + 10);
    expect_ok_frame(1);
    expect_refused(RGPU_ERR_PROTOCOL, "10 bytes into a frame header");
}

Test(wire_hostile, a_batch_holding_a_batch, .timeout = WT_TIMEOUT)
{
    uint8_t batch[512];
    size_t n = inner(batch, RGPU__MSG_TYPE__MSG_BATCH, 0, 0, 0);

    n += inner(batch + n, RGPU__MSG_TYPE__MSG_PING, 1, 0, 0);
    /* The inner batch claims the frame after it as its own. */
    wt_put_header(batch, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_BATCH, 0, 0, 0,
                  RGPU_FRAME_HEADER_SIZE);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_BATCH, 0, NULL, 0, batch, n);
    expect_refused(RGPU_ERR_PROTOCOL, "only carries other frames");
}

Test(wire_hostile, a_batch_holding_a_fragment, .timeout = WT_TIMEOUT)
{
    uint8_t batch[512];
    size_t n = inner(batch, RGPU__MSG_TYPE__MSG_PING, 1, 0, 0);
    size_t frag = n;

    n += inner(batch + n, RGPU__MSG_TYPE__MSG_FRAGMENT, 0, 0, RGPU_FRAME_HEADER_SIZE);
    inner(batch + frag + RGPU_FRAME_HEADER_SIZE, RGPU__MSG_TYPE__MSG_PING, 2, 0, 0);
    wt_put_header(batch + frag, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_FRAGMENT,
                  RGPU_FRAME_F_LAST, 0, 0, RGPU_FRAME_HEADER_SIZE);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_BATCH, 0, NULL, 0, batch, n);
    expect_ok_frame(1);
    expect_refused(RGPU_ERR_PROTOCOL, "only carries other frames");
}

Test(wire_hostile, an_empty_batch, .timeout = WT_TIMEOUT)
{
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_BATCH, 0, NULL, 0, NULL, 0);
    expect_refused(RGPU_ERR_PROTOCOL, "batch");
}

Test(wire_hostile, a_batch_with_a_body, .timeout = WT_TIMEOUT)
{
    uint8_t batch[64], body[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    size_t n = inner(batch, RGPU__MSG_TYPE__MSG_PING, 1, 0, 0);

    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_BATCH, 0, body, sizeof(body), batch, n);
    expect_refused(RGPU_ERR_PROTOCOL, "8-byte body");
}

/* ---- inner headers, in a batch and in a first fragment ---------------- */

typedef enum { BAD_MAGIC, BAD_VERSION, BIG_BODY, BIG_BULK } bad_header_t;

/* A 64-byte frame whose header is wrong in the way asked. */
static void bad_inner(uint8_t out[64], bad_header_t bad)
{
    inner(out, RGPU__MSG_TYPE__MSG_PING, 1, 16, 16);
    switch (bad) {
    case BAD_MAGIC:
        memcpy(out, "GET ", 4);
        break;
    case BAD_VERSION:
        wt_put_header(out, RGPU_PROTOCOL_VERSION + 1, RGPU__MSG_TYPE__MSG_PING, 0, 16, 1, 16);
        break;
    case BIG_BODY:      /* past the receiver's limits (see limit_rx) */
        wt_put_header(out, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_PING, 0, 1001, 1, 0);
        break;
    case BIG_BULK:
        wt_put_header(out, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_PING, 0, 0, 1, 1001);
        break;
    }
}

/* b accepts bodies and bulks of at most 1000 bytes. */
static void limit_rx(void)
{
    rgpu_frame_limits_t limits = {1000, 1000};

    rgpu_wire_rx_fini(&wt_rx);
    rgpu_wire_rx_init(&wt_rx, wt_b, &limits, WT_MAX_ASSEMBLED);
}

static void bad_in_batch(bad_header_t bad)
{
    uint8_t batch[64];

    limit_rx();
    bad_inner(batch, bad);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_BATCH, 0, NULL, 0, batch, sizeof(batch));
}

static void bad_in_fragment(bad_header_t bad)
{
    uint8_t frame[64];

    limit_rx();
    bad_inner(frame, bad);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_FRAGMENT, 0, NULL, 0, frame, sizeof(frame));
}

Test(wire_hostile, bad_magic_in_a_batch, .timeout = WT_TIMEOUT)
{
    bad_in_batch(BAD_MAGIC);
    expect_refused(RGPU_ERR_BAD_MAGIC, "a batch");
}

Test(wire_hostile, bad_magic_in_a_first_fragment, .timeout = WT_TIMEOUT)
{
    bad_in_fragment(BAD_MAGIC);
    expect_refused(RGPU_ERR_BAD_MAGIC, "fragment");
}

Test(wire_hostile, another_version_in_a_batch, .timeout = WT_TIMEOUT)
{
    bad_in_batch(BAD_VERSION);
    expect_refused(RGPU_ERR_BAD_VERSION, "version");
}

Test(wire_hostile, another_version_in_a_first_fragment, .timeout = WT_TIMEOUT)
{
    bad_in_fragment(BAD_VERSION);
    expect_refused(RGPU_ERR_BAD_VERSION, "version");
}

Test(wire_hostile, a_body_past_the_limits_in_a_batch, .timeout = WT_TIMEOUT)
{
    bad_in_batch(BIG_BODY);
    expect_refused(RGPU_ERR_TOO_LARGE, "a batch");
}

Test(wire_hostile, a_bulk_past_the_limits_in_a_batch, .timeout = WT_TIMEOUT)
{
    bad_in_batch(BIG_BULK);
    expect_refused(RGPU_ERR_TOO_LARGE, "a batch");
}

Test(wire_hostile, a_body_past_the_limits_in_a_first_fragment, .timeout = WT_TIMEOUT)
{
    bad_in_fragment(BIG_BODY);
    expect_refused(RGPU_ERR_TOO_LARGE, "fragment");
}

Test(wire_hostile, a_bulk_past_the_limits_in_a_first_fragment, .timeout = WT_TIMEOUT)
{
    bad_in_fragment(BIG_BULK);
    expect_refused(RGPU_ERR_TOO_LARGE, "fragment");
}

/* The limits hold for frames that travel as themselves too. */
Test(wire_hostile, a_plain_frame_past_the_limits, .timeout = WT_TIMEOUT)
{
    uint8_t bulk[1001] = {0};

    limit_rx();
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_PING, 0, NULL, 0, bulk, sizeof(bulk));
    expect_refused(RGPU_ERR_TOO_LARGE, "1001");
}

/* ---- fragments -------------------------------------------------------- */

/* Sends a frame of total bytes (its header says so) as fragments whose
 * sizes are pieces[0..n), the last marked F_LAST. */
static void send_pieces(uint64_t total, const size_t *pieces, int n)
{
    size_t sum = 0;
    uint8_t *buf;

    for (int i = 0; i < n; i++)
        sum += pieces[i];
    buf = calloc(1, sum > total ? sum : total);
    cr_assert_not_null(buf);
    wt_put_header(buf, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_PING, 0, 0, 1,
                  total - RGPU_FRAME_HEADER_SIZE);
    for (int i = 0, at = 0; i < n; at += (int)pieces[i], i++)
        wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_FRAGMENT, i + 1 == n ? RGPU_FRAME_F_LAST : 0, NULL,
                    0, buf + at, pieces[i]);
    free(buf);
}

Test(wire_hostile, fragments_adding_up_to_more_than_the_frame, .timeout = WT_TIMEOUT)
{
    const size_t pieces[3] = {1000, 1000, 1010};

    send_pieces(3000, pieces, 3);
    expect_refused(RGPU_ERR_PROTOCOL, "overrun");
}

Test(wire_hostile, fragments_adding_up_to_less_than_the_frame, .timeout = WT_TIMEOUT)
{
    const size_t pieces[3] = {1000, 1000, 990};

    send_pieces(3000, pieces, 3);
    expect_refused(RGPU_ERR_PROTOCOL, "add up to 2990 bytes");
}

Test(wire_hostile, a_first_fragment_shorter_than_a_header, .timeout = WT_TIMEOUT)
{
    uint8_t frame[RGPU_FRAME_HEADER_SIZE];

    wt_put_header(frame, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_PING, 0, 0, 1, 0);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_FRAGMENT, RGPU_FRAME_F_LAST, NULL, 0, frame, 20);
    expect_refused(RGPU_ERR_PROTOCOL, "20 bytes into a frame header");
}

Test(wire_hostile, a_later_fragment_with_a_body, .timeout = WT_TIMEOUT)
{
    uint8_t frame[100] = {0}, body[4] = {0};

    wt_put_header(frame, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_PING, 0, 0, 1,
                  sizeof(frame) - RGPU_FRAME_HEADER_SIZE);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_FRAGMENT, 0, NULL, 0, frame, 50);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_FRAGMENT, RGPU_FRAME_F_LAST, body, sizeof(body),
                frame + 50, 50);
    expect_refused(RGPU_ERR_PROTOCOL, "fragments");
}

Test(wire_hostile, another_frame_between_fragments, .timeout = WT_TIMEOUT)
{
    uint8_t frame[100] = {0};

    wt_put_header(frame, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_PING, 0, 0, 1,
                  sizeof(frame) - RGPU_FRAME_HEADER_SIZE);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_FRAGMENT, 0, NULL, 0, frame, 50);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_PING, 0, NULL, 0, NULL, 0);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_FRAGMENT, RGPU_FRAME_F_LAST, NULL, 0, frame + 50, 50);
    expect_refused(RGPU_ERR_PROTOCOL, "between the fragments");
}

/* A peer claims a frame of 2^62 bytes in its first fragment: refused
 * before anything is allocated for it (an allocation of that size would
 * fail, or abort the ASan build). The receiver's own limits let the header
 * through, so only max_assembled stands in the way. */
Test(wire_hostile, a_huge_claimed_frame_is_refused_before_allocating, .timeout = WT_TIMEOUT)
{
    rgpu_frame_limits_t limits = {UINT32_MAX, UINT64_MAX};
    uint8_t frame[64] = {0};

    rgpu_wire_rx_fini(&wt_rx);
    rgpu_wire_rx_init(&wt_rx, wt_b, &limits, 1u << 20);
    wt_put_header(frame, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_PING, 0, 0, 1, 1ull << 62);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_FRAGMENT, 0, NULL, 0, frame, sizeof(frame));
    expect_refused(RGPU_ERR_TOO_LARGE, "1048576 bytes");
}

/* max_assembled is the largest frame put back together: at it, the frame
 * comes; one byte past it, it is refused. */
Test(wire_hostile, max_assembled_is_inclusive, .timeout = WT_TIMEOUT)
{
    const uint64_t max = 3 * wt_eager + 17;
    const wt_frame_t w[2] = {
        {RGPU__MSG_TYPE__MSG_PING, 1, 0, 9, wt_bulk_for(9, max)},
        {RGPU__MSG_TYPE__MSG_PING, 2, 0, 9, wt_bulk_for(9, max + 1)},
    };
    wt_sender_t s;

    rgpu_wire_rx_fini(&wt_rx);
    rgpu_wire_rx_init(&wt_rx, wt_b, NULL, max);
    wt_send_frames_async(&s, w, 2);
    wt_recv_expect(&w[0]);
    expect_refused(RGPU_ERR_TOO_LARGE, "fragments");
    /* Nobody reads the refused frame's other pieces: close the link (its
     * unread bytes reset the connection), so a sender blocked on a full
     * socket fails instead of waiting forever. */
    rgpu_wire_rx_fini(&wt_rx);
    rgpu_link_close(wt_b);
    wt_b = NULL;
    pthread_join(s.th, NULL);
}

/* Sizes whose sum wraps around 2^64 where a receiver sets no bulk limit:
 * a 32-byte frame in a batch claiming 2^64 - 32 bytes of bulk must not
 * pass as a frame of 0 bytes (handed over with a bulk nobody has, and
 * taken again and again); in a first fragment, as a frame of 16 bytes. */
Test(wire_hostile, sizes_that_wrap_around_in_a_batch, .timeout = WT_TIMEOUT)
{
    rgpu_frame_limits_t limits = {UINT32_MAX, UINT64_MAX};
    uint8_t batch[64] = {0};

    rgpu_wire_rx_fini(&wt_rx);
    rgpu_wire_rx_init(&wt_rx, wt_b, &limits, WT_MAX_ASSEMBLED);
    wt_put_header(batch, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_PING, 0, 0, 1,
                  UINT64_MAX - RGPU_FRAME_HEADER_SIZE + 1);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_BATCH, 0, NULL, 0, batch, sizeof(batch));
    expect_refused(RGPU_ERR_PROTOCOL, "overruns");
}

Test(wire_hostile, sizes_that_wrap_around_in_a_fragment, .timeout = WT_TIMEOUT)
{
    rgpu_frame_limits_t limits = {UINT32_MAX, UINT64_MAX};
    uint8_t frame[64] = {0};

    rgpu_wire_rx_fini(&wt_rx);
    rgpu_wire_rx_init(&wt_rx, wt_b, &limits, WT_MAX_ASSEMBLED);
    wt_put_header(frame, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_PING, 0, 0, 1,
                  UINT64_MAX - 15);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_FRAGMENT, RGPU_FRAME_F_LAST, NULL, 0, frame,
                sizeof(frame));
    expect_refused(RGPU_ERR_TOO_LARGE, "fragments");
}

/* The peer vanishes between the pieces of a frame: the link's failure,
 * with its reason, and the partial frame freed (the ASan build checks). */
Test(wire_hostile, the_peer_vanishes_between_fragments, .timeout = WT_TIMEOUT)
{
    uint8_t frame[4096] = {0};
    rgpu_wire_frame_t f;
    char reason[512] = "";
    rgpu_status_t status;

    wt_put_header(frame, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_PING, 0, 0, 1,
                  sizeof(frame) - RGPU_FRAME_HEADER_SIZE);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_FRAGMENT, 0, NULL, 0, frame, 1000);
    rgpu_link_close(wt_a);
    wt_a = NULL;
    status = rgpu_wire_recv(&wt_rx, &f, WT_WAIT_MS, reason, sizeof(reason));
    cr_expect_eq(status, RGPU_ERR_CONN_CLOSED, "got %s (%s)", rgpu_status_str(status), reason);
    cr_expect_neq(reason[0], '\0', "no reason");
    cr_expect_eq(rgpu_wire_recv(&wt_rx, &f, 0, reason, sizeof(reason)), status);
}

/* ---- a peer that stalls in the middle of a frame ---------------------- */

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Sends the first 1000 bytes of a 4096-byte frame and nothing more. */
static void send_first_piece_only(void)
{
    uint8_t frame[4096] = {0};

    wt_put_header(frame, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_PING, 0, 0, 1,
                  sizeof(frame) - RGPU_FRAME_HEADER_SIZE);
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_FRAGMENT, 0, NULL, 0, frame, 1000);
}

/* One piece, then silence: a receiver that waits without a limit (a
 * server's session) fails once fragment_timeout_ms have passed since that
 * piece, says why, frees the partial frame (the ASan build checks), and
 * can still tell the peer. */
Test(wire_hostile, a_peer_that_stalls_after_the_first_fragment, .timeout = WT_TIMEOUT)
{
    rgpu_wire_frame_t f;
    char reason[512] = "", again[512] = "", want[160];
    uint64_t start;
    rgpu_status_t status;

    cr_expect_eq(wt_rx.fragment_timeout_ms, RGPU_WIRE_FRAGMENT_TIMEOUT_MS,
                 "a new receiver gives the rest of a frame %d ms", wt_rx.fragment_timeout_ms);
    wt_rx.fragment_timeout_ms = 300;
    send_first_piece_only();
    start = now_ms();
    status = rgpu_wire_recv(&wt_rx, &f, -1, reason, sizeof(reason));
    cr_assert_eq(status, RGPU_ERR_PROTOCOL, "got %s (\"%s\")", rgpu_status_str(status), reason);
    cr_expect_geq(now_ms() - start, 300, "gave up %llu ms after the first piece, before its 300",
                  (unsigned long long)(now_ms() - start));
    snprintf(want, sizeof(want), "the rest of a fragmented frame of 4096 bytes (type %u) did not "
             "arrive within 300 ms of its first piece", RGPU__MSG_TYPE__MSG_PING);
    cr_expect(strstr(reason, want) != NULL, "the reason: \"%s\"", reason);
    cr_expect(strstr(reason, "1000 of its bytes came") != NULL, "the reason: \"%s\"", reason);
    cr_expect_eq(rgpu_wire_recv(&wt_rx, &f, 0, again, sizeof(again)), RGPU_ERR_PROTOCOL,
                 "the receiver went on after failing mid-frame");
    expect_last_word(status, reason);
}

/* The bound is on the whole rest, not on each gap: a peer that trickles a
 * piece every 50 ms (each gap well inside the bound) does not hold the
 * receiver past it. */
typedef struct {
    int stop;
    rgpu_status_t status;
} trickle_t;

static void *trickle_thread(void *arg)
{
    trickle_t *t = arg;
    uint8_t piece[100] = {0};
    struct timespec gap = {0, 50 * 1000000L};

    t->status = RGPU_OK;
    for (int i = 0; i < 100 && t->status == RGPU_OK && !__atomic_load_n(&t->stop, __ATOMIC_ACQUIRE);
         i++) {
        uint8_t head[RGPU_FRAME_HEADER_SIZE];
        struct iovec iov[2] = {{head, sizeof(head)}, {piece, sizeof(piece)}};

        nanosleep(&gap, NULL);  /* the peer's pace, not a wait of the test's */
        wt_put_header(head, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_FRAGMENT, 0, 0, 0,
                      sizeof(piece));
        t->status = rgpu_link_msg_send(wt_a, iov, 2, NULL);
    }
    return NULL;
}

Test(wire_hostile, a_peer_that_trickles_fragments_is_bounded_as_a_whole, .timeout = WT_TIMEOUT)
{
    trickle_t t = {0, RGPU_OK};
    rgpu_wire_frame_t f;
    char reason[512] = "";
    pthread_t th;
    rgpu_status_t status;

    wt_rx.fragment_timeout_ms = 300;
    send_first_piece_only();
    cr_assert_eq(pthread_create(&th, NULL, trickle_thread, &t), 0);
    status = rgpu_wire_recv(&wt_rx, &f, -1, reason, sizeof(reason));
    __atomic_store_n(&t.stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    cr_assert_eq(status, RGPU_ERR_PROTOCOL, "got %s (\"%s\")", rgpu_status_str(status), reason);
    cr_expect(strstr(reason, "did not arrive within 300 ms of its first piece") != NULL,
              "the reason: \"%s\"", reason);
    cr_expect_eq(t.status, RGPU_OK, "the trickling peer: %s", rgpu_status_str(t.status));
}

/* A caller that gives its receive less time than the bound (a scheduler
 * client waiting for a reply) gets its answer by its own deadline: the
 * receive fails, mid-frame, with the reason; it does not return
 * RGPU_ERR_TIMEOUT, which would leave half a frame behind (and a caller
 * that retries on timeouts spinning on a failed receiver). */
Test(wire_hostile, a_callers_shorter_timeout_ends_a_stalled_frame, .timeout = WT_TIMEOUT)
{
    rgpu_wire_frame_t f;
    char reason[512] = "";
    uint64_t start;
    rgpu_status_t status;

    send_first_piece_only();
    start = now_ms();
    status = rgpu_wire_recv(&wt_rx, &f, 200, reason, sizeof(reason));
    cr_assert_eq(status, RGPU_ERR_PROTOCOL, "got %s (\"%s\")", rgpu_status_str(status), reason);
    cr_expect_geq(now_ms() - start, 200);
    cr_expect(strstr(reason, "did not arrive within 200 ms, the time this receive was given") != NULL,
              "the reason: \"%s\"", reason);
    cr_expect_eq(rgpu_wire_recv(&wt_rx, &f, 200, reason, sizeof(reason)), RGPU_ERR_PROTOCOL,
                 "the receiver went on after failing mid-frame");
}

/* Receiving with timeout 0 (a reader polling on the link's event fd) takes
 * a frame that has begun to arrive whole, though most of it is still on
 * its way (8 MiB do not fit the socket's buffers): 0 bounds the wait for a
 * frame to begin, not for its rest. */
Test(wire_hostile, a_polling_receiver_waits_for_the_rest_of_a_frame_begun, .timeout = WT_TIMEOUT)
{
    const wt_frame_t w = {RGPU__MSG_TYPE__MSG_PING, 7, 0, 5, 8u << 20};
    uint64_t deadline = now_ms() + WT_WAIT_MS;
    wt_sender_t s;
    rgpu_wire_frame_t f;
    char reason[512] = "";
    rgpu_status_t status;

    wt_send_frames_async(&s, &w, 1);
    do {
        struct pollfd pfd = {rgpu_link_event_fd(wt_b), POLLIN, 0};

        status = rgpu_wire_recv(&wt_rx, &f, 0, reason, sizeof(reason));
        if (status == RGPU_ERR_TIMEOUT && !rgpu_wire_rx_pending(&wt_rx))
            poll(&pfd, 1, 100);
    } while (status == RGPU_ERR_TIMEOUT && now_ms() < deadline);
    cr_assert_eq(status, RGPU_OK, "%s: %s", rgpu_status_str(status), reason);
    wt_expect_frame(&f, &w);
    wt_send_join(&s);
}

/* ---- data in the stream (RGPU_FRAME_F_STREAM) ------------------------- */

/* A receiver that did not ask for data in the stream (a client) refuses a
 * frame whose data follows it there: it never hands over a frame without
 * its bulk. */
Test(wire_hostile, data_in_the_stream_to_a_receiver_that_does_not_take_it, .timeout = WT_TIMEOUT)
{
    uint8_t bulk[100] = {0};

    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_PING, RGPU_FRAME_F_STREAM, NULL, 0, bulk, sizeof(bulk));
    expect_refused(RGPU_ERR_PROTOCOL, "does not take");
}

/* Inside a batch the data of a frame cannot follow it in the stream. */
Test(wire_hostile, data_in_the_stream_inside_a_batch, .timeout = WT_TIMEOUT)
{
    uint8_t batch[128];
    size_t n = inner(batch, RGPU__MSG_TYPE__MSG_PING, 1, 0, 0);

    wt_put_header(batch + n, RGPU_PROTOCOL_VERSION, RGPU__MSG_TYPE__MSG_PING, RGPU_FRAME_F_STREAM, 0, 2, 0);
    n += RGPU_FRAME_HEADER_SIZE;
    wt_rx.take_stream = 1;
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_BATCH, 0, NULL, 0, batch, n);
    expect_ok_frame(1);
    expect_refused(RGPU_ERR_PROTOCOL, "follow in the stream");
}

/* A receiver that takes them gets the frame without its bulk, takes it
 * where it wants, and a frame after it arrives whole; rgpu_wire_take_bulk
 * on a frame without data in the stream is refused. */
Test(wire_hostile, data_in_the_stream_is_taken_by_a_receiver_that_asked, .timeout = WT_TIMEOUT)
{
    uint8_t bulk[1000], got[1000] = {0};
    rgpu_wire_frame_t f;
    char reason[256];

    for (size_t i = 0; i < sizeof(bulk); i++)
        bulk[i] = (uint8_t)(i * 3);
    wt_rx.take_stream = 1;
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_PING, RGPU_FRAME_F_STREAM, NULL, 0, bulk, sizeof(bulk));
    wt_raw_send(wt_a, RGPU__MSG_TYPE__MSG_PING, 0, NULL, 0, bulk, 10);
    cr_assert_eq(rgpu_wire_recv(&wt_rx, &f, WT_WAIT_MS, reason, sizeof(reason)), RGPU_OK, "%s", reason);
    cr_expect_null(f.bulk);
    cr_expect_eq(f.header.bulk_len, sizeof(bulk));
    cr_assert_eq(rgpu_wire_take_bulk(&wt_rx, got, 600), RGPU_OK);
    cr_expect_eq(rgpu_wire_take_bulk(&wt_rx, got + 600, 401), RGPU_ERR_INVALID_ARG);
    cr_assert_eq(rgpu_wire_take_bulk(&wt_rx, got + 600, 400), RGPU_OK);
    cr_expect_arr_eq(got, bulk, sizeof(bulk));
    cr_assert_eq(rgpu_wire_recv(&wt_rx, &f, WT_WAIT_MS, reason, sizeof(reason)), RGPU_OK, "%s", reason);
    cr_expect_eq(f.header.bulk_len, 10);
    cr_expect_arr_eq(f.bulk, bulk, 10);
    cr_expect_eq(rgpu_wire_take_bulk(&wt_rx, got, 1), RGPU_ERR_INVALID_ARG);
}
