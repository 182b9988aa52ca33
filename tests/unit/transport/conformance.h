/*
 * The transport conformance suite: what every transport must do, run against
 * each one (as Mercury's Testing/unit/hg runs one suite per NA plugin).
 *
 * A test file defines, then includes this header:
 *   CONFORMANCE_SUITE  the criterion suite name (an identifier)
 *   CONFORMANCE_OPS    the transport's ops table (an rgpu_transport_ops_t)
 *   CONFORMANCE_ADDR   a listen address whose port 0 means "any free port"
 * and may add tests of its own after it, using conf_* helpers and fixtures.
 *
 * Every test gets a listener, a client link and the server's side of it
 * (cli, srv), and a .timeout: a transport that hangs fails instead.
 */
#ifndef RGPU_TESTS_TRANSPORT_CONFORMANCE_H
#define RGPU_TESTS_TRANSPORT_CONFORMANCE_H

#include <criterion/criterion.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rgpu/transport.h"
#include "session.pb-c.h"

#define CONF_TIMEOUT 30

static rgpu_listener_t *lst;
static rgpu_link_t *cli, *srv;

/* Accepts one connection, waiting up to timeout_ms for it. */
static rgpu_status_t conf_accept(rgpu_listener_t *listener, int timeout_ms, rgpu_link_t **link_p)
{
    struct pollfd pfd = {CONFORMANCE_OPS.listener_fd(listener), POLLIN, 0};

    if (poll(&pfd, 1, timeout_ms) != 1)
        return RGPU_ERR_TIMEOUT;
    return CONFORMANCE_OPS.accept(listener, link_p);
}

static void conf_setup(void)
{
    char reason[256] = "";

    cr_assert_eq(CONFORMANCE_OPS.listen(CONFORMANCE_ADDR, &lst), RGPU_OK, "listen on %s",
                 CONFORMANCE_ADDR);
    cr_assert_eq(CONFORMANCE_OPS.connect(lst->local, 5000, &cli, reason, sizeof(reason)), RGPU_OK,
                 "connect to %s: %s", lst->local, reason);
    cr_assert_eq(conf_accept(lst, 5000, &srv), RGPU_OK, "accept");
}

static void conf_teardown(void)
{
    if (cli)
        rgpu_link_close(cli);
    if (srv)
        rgpu_link_close(srv);
    if (lst)
        CONFORMANCE_OPS.listener_close(lst);
    cli = srv = NULL;
    lst = NULL;
}

static void conf_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static unsigned char conf_pattern(size_t i)
{
    return (unsigned char)(i * 31 + (i >> 11));
}

TestSuite(CONFORMANCE_SUITE, .init = conf_setup, .fini = conf_teardown);

Test(CONFORMANCE_SUITE, listener_reports_the_port_it_bound, .timeout = CONF_TIMEOUT)
{
    const char *colon = strrchr(lst->local, ':');

    cr_assert_not_null(colon, "local address \"%s\"", lst->local);
    cr_expect_neq(atoi(colon + 1), 0, "port 0 was not resolved: \"%s\"", lst->local);
    cr_expect_str_eq(cli->peer, lst->local, "the client's peer is the listener's address");
    cr_expect_neq(srv->peer[0], '\0', "the accepted link has no peer name");
    cr_expect_eq(cli->ops, &CONFORMANCE_OPS);
    cr_expect_eq(srv->ops, &CONFORMANCE_OPS);
}

Test(CONFORMANCE_SUITE, send_then_recv_exact_bytes, .timeout = CONF_TIMEOUT)
{
    char buf[16] = "";

    cr_assert_eq(rgpu_link_send(cli, "hello", 5), RGPU_OK);
    cr_assert_eq(rgpu_link_recv(srv, buf, 5), RGPU_OK);
    cr_expect_arr_eq(buf, "hello", 5);
    cr_assert_eq(rgpu_link_send(srv, "world!", 6), RGPU_OK);
    cr_assert_eq(rgpu_link_recv(cli, buf, 6), RGPU_OK);
    cr_expect_arr_eq(buf, "world!", 6);
}

Test(CONFORMANCE_SUITE, a_stream_not_messages, .timeout = CONF_TIMEOUT)
{
    char buf[16] = "";

    /* Three sends arrive as one recv, and one send as three recvs. */
    cr_assert_eq(rgpu_link_send(cli, "abc", 3), RGPU_OK);
    cr_assert_eq(rgpu_link_send(cli, "defg", 4), RGPU_OK);
    cr_assert_eq(rgpu_link_send(cli, "h", 1), RGPU_OK);
    cr_assert_eq(rgpu_link_recv(srv, buf, 8), RGPU_OK);
    cr_expect_arr_eq(buf, "abcdefgh", 8);
    cr_assert_eq(rgpu_link_send(cli, "0123456789", 10), RGPU_OK);
    cr_assert_eq(rgpu_link_recv(srv, buf, 2), RGPU_OK);
    cr_assert_eq(rgpu_link_recv(srv, buf + 2, 7), RGPU_OK);
    cr_assert_eq(rgpu_link_recv(srv, buf + 9, 1), RGPU_OK);
    cr_expect_arr_eq(buf, "0123456789", 10);
}

Test(CONFORMANCE_SUITE, sendv_gathers_in_order, .timeout = CONF_TIMEOUT)
{
    struct iovec iov[16];
    char pieces[16][4], buf[64];

    for (int i = 0; i < 16; i++) {
        memset(pieces[i], 'a' + i, 4);
        iov[i].iov_base = pieces[i];
        iov[i].iov_len = (size_t)(i % 4) + 1; /* 1..4 bytes each */
    }
    iov[5].iov_len = 0; /* an empty piece is fine */
    cr_assert_eq(rgpu_link_sendv(cli, iov, 16), RGPU_OK);
    {
        size_t total = 0;
        for (int i = 0; i < 16; i++)
            total += iov[i].iov_len;
        cr_assert_eq(rgpu_link_recv(srv, buf, total), RGPU_OK);
        for (int i = 0, at = 0; i < 16; i++) {
            for (size_t j = 0; j < iov[i].iov_len; j++, at++)
                cr_assert_eq(buf[at], 'a' + i, "byte %d", at);
        }
    }
}

typedef struct {
    rgpu_link_t *link;
    size_t len;
    size_t chunk;
    rgpu_status_t status;
} conf_sender_t;

static void *conf_send_thread(void *arg)
{
    conf_sender_t *s = arg;
    unsigned char *buf = malloc(s->len);
    struct iovec iov[2];

    if (!buf) {
        s->status = RGPU_ERR_NOMEM;
        return NULL;
    }
    for (size_t i = 0; i < s->len; i++)
        buf[i] = conf_pattern(i);
    /* Two iovecs of unequal size, the way a frame goes: header + bulk. */
    iov[0].iov_base = buf;
    iov[0].iov_len = 1000;
    iov[1].iov_base = buf + 1000;
    iov[1].iov_len = s->len - 1000;
    s->status = rgpu_link_sendv(s->link, iov, 2);
    free(buf);
    return NULL;
}

/* Bigger than every socket buffer: sendv must loop on partial sends and
 * recv must gather many segments. */
Test(CONFORMANCE_SUITE, big_transfers_both_ways, .timeout = CONF_TIMEOUT)
{
    size_t len = 48u << 20;
    unsigned char *buf = malloc(len), *want = malloc(len);
    rgpu_link_t *dirs[2][2] = {{cli, srv}, {srv, cli}};

    cr_assert(buf && want);
    for (size_t i = 0; i < len; i++)
        want[i] = conf_pattern(i);
    for (int d = 0; d < 2; d++) {
        conf_sender_t s = {dirs[d][0], len, 0, RGPU_ERR_IO};
        pthread_t th;

        memset(buf, 0, len);
        cr_assert_eq(pthread_create(&th, NULL, conf_send_thread, &s), 0);
        /* Receive in odd-sized pieces. */
        for (size_t at = 0; at < len;) {
            size_t n = len - at < 1234567 ? len - at : 1234567;
            cr_assert_eq(rgpu_link_recv(dirs[d][1], buf + at, n), RGPU_OK, "recv at %zu", at);
            at += n;
        }
        pthread_join(th, NULL);
        cr_assert_eq(s.status, RGPU_OK, "sendv: %s", rgpu_status_str(s.status));
        if (memcmp(buf, want, len) != 0) {
            size_t i = 0;
            while (buf[i] == want[i])
                i++;
            cr_assert_fail("direction %d: byte %zu is %u, sent %u", d, i, buf[i], want[i]);
        }
    }
    free(buf);
    free(want);
}

Test(CONFORMANCE_SUITE, peer_close_gives_conn_closed_on_recv, .timeout = CONF_TIMEOUT)
{
    char buf[16];

    /* Some bytes, then the close: the bytes arrive, then the error. */
    cr_assert_eq(rgpu_link_send(srv, "xyz", 3), RGPU_OK);
    rgpu_link_close(srv);
    srv = NULL;
    cr_assert_eq(rgpu_link_recv(cli, buf, 3), RGPU_OK);
    cr_expect_arr_eq(buf, "xyz", 3);
    cr_expect_eq(rgpu_link_recv(cli, buf, 1), RGPU_ERR_CONN_CLOSED);
}

Test(CONFORMANCE_SUITE, peer_close_in_the_middle_of_a_recv, .timeout = CONF_TIMEOUT)
{
    char buf[64];

    cr_assert_eq(rgpu_link_send(srv, "partial", 7), RGPU_OK);
    rgpu_link_close(srv);
    srv = NULL;
    cr_expect_eq(rgpu_link_recv(cli, buf, sizeof(buf)), RGPU_ERR_CONN_CLOSED);
}

Test(CONFORMANCE_SUITE, send_to_a_closed_peer_fails_without_sigpipe, .timeout = CONF_TIMEOUT)
{
    static char chunk[65536];
    rgpu_status_t status = RGPU_OK;

    rgpu_link_close(srv);
    srv = NULL;
    /* The first sends may still land in buffers; a bounded number fail. */
    for (int i = 0; i < 2000 && status == RGPU_OK; i++)
        status = rgpu_link_send(cli, chunk, sizeof(chunk));
    cr_expect_eq(status, RGPU_ERR_CONN_CLOSED, "got %s", rgpu_status_str(status));
}

typedef struct {
    rgpu_link_t *link;
    rgpu_status_t status;
    int done;
} conf_receiver_t;

static void *conf_recv_thread(void *arg)
{
    conf_receiver_t *r = arg;
    char buf[8];

    r->status = rgpu_link_recv(r->link, buf, sizeof(buf));
    __atomic_store_n(&r->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

Test(CONFORMANCE_SUITE, shutdown_unblocks_a_blocked_recv, .timeout = CONF_TIMEOUT)
{
    conf_receiver_t r = {cli, RGPU_OK, 0};
    pthread_t th;

    cr_assert_eq(pthread_create(&th, NULL, conf_recv_thread, &r), 0);
    conf_sleep_ms(100);
    cr_expect_eq(__atomic_load_n(&r.done, __ATOMIC_SEQ_CST), 0, "recv returned with no data");
    rgpu_link_shutdown(cli);
    pthread_join(th, NULL);
    cr_expect_neq(r.status, RGPU_OK, "recv succeeded after shutdown");
    cr_expect_neq(rgpu_link_send(cli, "x", 1), RGPU_OK, "send succeeded after shutdown");
}

Test(CONFORMANCE_SUITE, shutdown_recv_unblocks_recv_and_keeps_sending, .timeout = CONF_TIMEOUT)
{
    conf_receiver_t r = {srv, RGPU_OK, 0};
    pthread_t th;
    char got[5] = "";

    cr_assert_eq(pthread_create(&th, NULL, conf_recv_thread, &r), 0);
    conf_sleep_ms(100);
    cr_expect_eq(__atomic_load_n(&r.done, __ATOMIC_SEQ_CST), 0, "recv returned with no data");
    rgpu_link_shutdown_recv(srv);
    pthread_join(th, NULL);
    cr_expect_neq(r.status, RGPU_OK, "recv succeeded after shutdown_recv");
    /* The other direction still carries a last word. */
    cr_expect_eq(rgpu_link_send(srv, "bye!", 4), RGPU_OK, "send failed after shutdown_recv");
    cr_expect_eq(rgpu_link_recv(cli, got, 4), RGPU_OK);
    cr_expect_str_eq(got, "bye!");
}

Test(CONFORMANCE_SUITE, frames_with_bulk_over_a_link, .timeout = CONF_TIMEOUT)
{
    Rgpu__Ping ping = RGPU__PING__INIT;
    Rgpu__Ping *back;
    rgpu_frame_header_t h;
    size_t bulk_len = 3u << 20;
    unsigned char *bulk = malloc(bulk_len), *got = malloc(bulk_len), body[256];

    cr_assert(bulk && got);
    for (size_t i = 0; i < bulk_len; i++)
        bulk[i] = conf_pattern(i);
    ping.payload.data = (uint8_t *)"ping!";
    ping.payload.len = 5;

    /* Frame 1 carries a bulk the receiver discards; frame 2 one it keeps.
     * 3 MiB fits the socket buffers, so one thread can send then receive. */
    cr_assert_eq(rgpu_link_send_msg(cli, RGPU__MSG_TYPE__MSG_PING, 1, &ping.base, bulk, bulk_len),
                 RGPU_OK);
    cr_assert_eq(rgpu_link_recv_header(srv, NULL, &h), RGPU_OK);
    cr_expect_eq(h.type, RGPU__MSG_TYPE__MSG_PING);
    cr_expect_eq(h.seq, 1);
    cr_expect_eq(h.bulk_len, bulk_len);
    cr_assert_leq(h.body_len, sizeof(body));
    cr_assert_eq(rgpu_link_recv(srv, body, h.body_len), RGPU_OK);
    cr_assert_eq(rgpu_link_discard(srv, h.bulk_len), RGPU_OK);

    cr_assert_eq(rgpu_link_send_msg(cli, RGPU__MSG_TYPE__MSG_PING, 2, &ping.base, bulk, bulk_len),
                 RGPU_OK);
    cr_assert_eq(rgpu_link_recv_header(srv, NULL, &h), RGPU_OK);
    cr_expect_eq(h.seq, 2, "the discard did not consume exactly the bulk");
    cr_assert_eq(rgpu_link_recv(srv, body, h.body_len), RGPU_OK);
    back = rgpu__ping__unpack(NULL, h.body_len, body);
    cr_assert_not_null(back);
    cr_expect_eq(back->payload.len, 5);
    cr_expect_arr_eq(back->payload.data, "ping!", 5);
    rgpu__ping__free_unpacked(back, NULL);
    cr_assert_eq(rgpu_link_recv(srv, got, bulk_len), RGPU_OK);
    cr_expect_arr_eq(got, bulk, bulk_len);

    /* A frame with neither body nor bulk. */
    cr_assert_eq(rgpu_link_send_msg(srv, RGPU__MSG_TYPE__MSG_GOODBYE, 0, NULL, NULL, 0), RGPU_OK);
    cr_assert_eq(rgpu_link_recv_header(cli, NULL, &h), RGPU_OK);
    cr_expect_eq(h.type, RGPU__MSG_TYPE__MSG_GOODBYE);
    cr_expect_eq(h.body_len, 0);
    cr_expect_eq(h.bulk_len, 0);
    free(bulk);
    free(got);
}

Test(CONFORMANCE_SUITE, recv_header_validates, .timeout = CONF_TIMEOUT)
{
    rgpu_frame_header_t in = {.version = RGPU_PROTOCOL_VERSION, .type = 1, .body_len = 100}, h;
    rgpu_frame_limits_t tight = {10, 10};
    uint8_t raw[RGPU_FRAME_HEADER_SIZE];

    memset(raw, 0x42, sizeof(raw));
    cr_assert_eq(rgpu_link_send(cli, raw, sizeof(raw)), RGPU_OK);
    cr_expect_eq(rgpu_link_recv_header(srv, NULL, &h), RGPU_ERR_BAD_MAGIC);

    rgpu_frame_header_encode(&in, raw);
    cr_assert_eq(rgpu_link_send(cli, raw, sizeof(raw)), RGPU_OK);
    cr_expect_eq(rgpu_link_recv_header(srv, &tight, &h), RGPU_ERR_TOO_LARGE);

    in.version = 99;
    in.body_len = 0;
    rgpu_frame_header_encode(&in, raw);
    cr_assert_eq(rgpu_link_send(cli, raw, sizeof(raw)), RGPU_OK);
    cr_expect_eq(rgpu_link_recv_header(srv, NULL, &h), RGPU_ERR_BAD_VERSION);
}

Test(CONFORMANCE_SUITE, truncated_header_then_close, .timeout = CONF_TIMEOUT)
{
    rgpu_frame_header_t in = {.version = RGPU_PROTOCOL_VERSION, .type = 1}, h;
    uint8_t raw[RGPU_FRAME_HEADER_SIZE];

    rgpu_frame_header_encode(&in, raw);
    cr_assert_eq(rgpu_link_send(cli, raw, 10), RGPU_OK);
    rgpu_link_close(cli);
    cli = NULL;
    cr_expect_eq(rgpu_link_recv_header(srv, NULL, &h), RGPU_ERR_CONN_CLOSED);
}

Test(CONFORMANCE_SUITE, many_connections_to_one_listener, .timeout = CONF_TIMEOUT)
{
    enum { N = 32 };
    rgpu_link_t *c[N], *s[N];

    for (int i = 0; i < N; i++)
        cr_assert_eq(CONFORMANCE_OPS.connect(lst->local, 5000, &c[i], NULL, 0), RGPU_OK, "conn %d",
                     i);
    for (int i = 0; i < N; i++)
        cr_assert_eq(conf_accept(lst, 5000, &s[i]), RGPU_OK, "accept %d", i);
    /* Each accepted link talks to exactly one client: tag and match. */
    for (int i = 0; i < N; i++) {
        unsigned char tag = (unsigned char)i;
        cr_assert_eq(rgpu_link_send(c[i], &tag, 1), RGPU_OK);
    }
    for (int i = 0; i < N; i++) {
        unsigned char tag;
        cr_assert_eq(rgpu_link_recv(s[i], &tag, 1), RGPU_OK);
        cr_assert_eq(rgpu_link_send(s[i], &tag, 1), RGPU_OK);
    }
    for (int i = 0; i < N; i++) {
        unsigned char tag = 0xFF;
        cr_assert_eq(rgpu_link_recv(c[i], &tag, 1), RGPU_OK);
        cr_expect_eq(tag, (unsigned char)i, "client %d got another's echo", i);
        rgpu_link_close(c[i]);
        rgpu_link_close(s[i]);
    }
}

#endif
