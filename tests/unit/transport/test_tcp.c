/* The TCP transport: the conformance suite, then what only TCP has
 * (ports, refused connections, address errors, links made by the plain ops
 * table, a peer that writes raw bytes). Loopback only. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONFORMANCE_SUITE tcp
#define CONFORMANCE_OPS   rgpu_tcp_ops
#define CONFORMANCE_ADDR  "127.0.0.1:0"
#include "conformance.h"

/* The tcp suite: a listener, a client link and the server's side of it,
 * made through the plain ops table (the default instance), as rgpu-server
 * and the CLI make theirs. */
static rgpu_listener_t *lst;
static rgpu_link_t *cli, *srv;

/* Accepts one connection, waiting up to timeout_ms for it. */
static rgpu_status_t conf_accept(rgpu_listener_t *listener, int timeout_ms, rgpu_link_t **link_p)
{
    struct pollfd pfd = {rgpu_tcp_ops.listener_fd(listener), POLLIN, 0};

    if (poll(&pfd, 1, timeout_ms) != 1)
        return RGPU_ERR_TIMEOUT;
    return rgpu_tcp_ops.accept(listener, link_p);
}

static void tcp_setup(void)
{
    char reason[256] = "";

    cr_assert_eq(rgpu_tcp_ops.listen("127.0.0.1:0", &lst), RGPU_OK);
    cr_assert_eq(rgpu_tcp_ops.connect(lst->local, 5000, &cli, reason, sizeof(reason)), RGPU_OK,
                 "connect to %s: %s", lst->local, reason);
    cr_assert_eq(conf_accept(lst, 5000, &srv), RGPU_OK, "accept");
}

static void tcp_teardown(void)
{
    if (cli)
        rgpu_link_close(cli);
    if (srv)
        rgpu_link_close(srv);
    if (lst)
        rgpu_tcp_ops.listener_close(lst);
    cli = srv = NULL;
    lst = NULL;
}

TestSuite(tcp, .init = tcp_setup, .fini = tcp_teardown);

Test(tcp, links_name_their_peers, .timeout = CONF_TIMEOUT)
{
    cr_expect_str_eq(cli->peer, lst->local, "the client's peer is the listener's address");
    cr_expect(strncmp(srv->peer, "127.0.0.1:", 10) == 0, "the accepted link's peer \"%s\"",
              srv->peer);
    cr_expect_eq(cli->ops, &rgpu_tcp_ops);
    cr_expect_eq(srv->ops, &rgpu_tcp_ops);
}

/* A loopback port with nothing listening: bind one, note it, close it. */
static int closed_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    cr_assert_geq(fd, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    port = ntohs(sa.sin_port);
    close(fd);
    return port;
}

static int contains_ci(const char *haystack, const char *needle)
{
    for (; *haystack; haystack++) {
        size_t i = 0;
        while (needle[i] && tolower((unsigned char)haystack[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (!needle[i])
            return 1;
    }
    return 0;
}

/* These need no connected pair. */
TestSuite(tcp_only);

Test(tcp_only, connect_to_a_closed_port_is_refused_with_a_reason, .timeout = CONF_TIMEOUT)
{
    char addr[64], reason[256] = "";
    rgpu_link_t *link = NULL;

    snprintf(addr, sizeof(addr), "127.0.0.1:%d", closed_port());
    cr_expect_eq(rgpu_tcp_ops.connect(addr, 5000, &link, reason, sizeof(reason)),
                 RGPU_ERR_CONN_REFUSED);
    cr_expect_null(link, "the link was set on failure");
    cr_expect(contains_ci(reason, "refused"), "reason \"%s\" does not say refused", reason);
    /* A NULL reason buffer is allowed. */
    cr_expect_eq(rgpu_tcp_ops.connect(addr, 5000, &link, NULL, 0), RGPU_ERR_CONN_REFUSED);
}

Test(tcp_only, malformed_addresses_are_address_errors, .timeout = CONF_TIMEOUT)
{
    static const char *bad[] = {"127.0.0.1", "no-port:", "127.0.0.1:99999", ":80"};
    rgpu_link_t *link = NULL;
    rgpu_listener_t *l = NULL;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char reason[256] = "";
        cr_expect_eq(rgpu_tcp_ops.connect(bad[i], 1000, &link, reason, sizeof(reason)),
                     RGPU_ERR_ADDRESS, "connect(\"%s\")", bad[i]);
        cr_expect(strstr(reason, bad[i]) != NULL, "reason \"%s\" does not name \"%s\"", reason,
                  bad[i]);
        cr_expect_eq(rgpu_tcp_ops.listen(bad[i], &l), RGPU_ERR_ADDRESS, "listen(\"%s\")", bad[i]);
    }
    cr_expect_null(link);
    cr_expect_null(l);
}

Test(tcp_only, a_port_in_use_cannot_be_listened_on_twice, .timeout = CONF_TIMEOUT)
{
    rgpu_listener_t *a, *b = NULL;

    cr_assert_eq(rgpu_tcp_ops.listen("127.0.0.1:0", &a), RGPU_OK);
    cr_expect_eq(rgpu_tcp_ops.listen(a->local, &b), RGPU_ERR_EXISTS, "second listen on %s",
                 a->local);
    cr_expect_null(b);
    rgpu_tcp_ops.listener_close(a);
}

Test(tcp_only, accept_with_nothing_pending_does_not_block, .timeout = CONF_TIMEOUT)
{
    rgpu_listener_t *a;
    rgpu_link_t *link = NULL;

    cr_assert_eq(rgpu_tcp_ops.listen("127.0.0.1:0", &a), RGPU_OK);
    cr_expect_eq(rgpu_tcp_ops.accept(a, &link), RGPU_ERR_TIMEOUT);
    cr_expect_null(link);
    rgpu_tcp_ops.listener_close(a);
}

Test(tcp_only, listener_fd_turns_readable_on_a_connection, .timeout = CONF_TIMEOUT)
{
    rgpu_listener_t *a;
    rgpu_link_t *c, *s;
    struct pollfd pfd;

    cr_assert_eq(rgpu_tcp_ops.listen("127.0.0.1:0", &a), RGPU_OK);
    pfd.fd = rgpu_tcp_ops.listener_fd(a);
    pfd.events = POLLIN;
    cr_expect_eq(poll(&pfd, 1, 0), 0, "readable with nothing pending");
    cr_assert_eq(rgpu_tcp_ops.connect(a->local, 5000, &c, NULL, 0), RGPU_OK);
    cr_expect_eq(poll(&pfd, 1, 5000), 1, "not readable with a connection pending");
    cr_assert_eq(rgpu_tcp_ops.accept(a, &s), RGPU_OK);
    rgpu_link_close(c);
    rgpu_link_close(s);
    rgpu_tcp_ops.listener_close(a);
}

/* The address resolver: one place for every caller. */
Test(tcp_only, addresses_choose_their_transport, .timeout = CONF_TIMEOUT)
{
    const rgpu_transport_ops_t *ops = NULL;
    const char *bare = NULL;
    char reason[256] = "";
    rgpu_transport_t *tp = NULL;

    cr_expect_eq(rgpu_transport_for_address("tcp://h:1", &ops, &bare, reason, sizeof(reason)), RGPU_OK);
    cr_expect_eq(ops, &rgpu_tcp_ops);
    cr_expect_str_eq(bare, "h:1");
    ops = NULL;
    cr_expect_eq(rgpu_transport_for_address("[::1]:7", &ops, &bare, NULL, 0), RGPU_OK);
    cr_expect_eq(ops, &rgpu_tcp_ops, "a bare host:port is tcp");
    cr_expect_str_eq(bare, "[::1]:7");
    ops = NULL;
#ifdef RGPU_HAVE_VERBS
    /* Built with rdma-core: verbs:// is the verbs transport (test_verbs_absent.c). */
    cr_expect_eq(rgpu_transport_for_address("verbs://h:1", &ops, &bare, reason, sizeof(reason)),
                 RGPU_OK);
    cr_expect_eq(ops, &rgpu_verbs_ops);
    ops = NULL;
#else
    cr_expect_eq(rgpu_transport_for_address("verbs://h:1", &ops, &bare, reason, sizeof(reason)),
                 RGPU_ERR_UNSUPPORTED);
    cr_expect_null(ops);
    cr_expect(contains_ci(reason, "verbs"), "reason \"%s\" does not name verbs", reason);
#endif
    cr_expect_eq(rgpu_transport_for_address("udp://h:1", &ops, &bare, reason, sizeof(reason)),
                 RGPU_ERR_ADDRESS);
    cr_expect(strstr(reason, "udp://h:1") != NULL, "reason \"%s\"", reason);
    cr_expect_null(ops);
#ifndef RGPU_HAVE_VERBS
    cr_expect_eq(rgpu_transport_open("verbs", &tp), RGPU_ERR_UNSUPPORTED);
#endif
    cr_expect_eq(rgpu_transport_open("nope", &tp), RGPU_ERR_ADDRESS);
    cr_expect_null(tp);
    cr_assert_eq(rgpu_transport_open("tcp://", &tp), RGPU_OK);
    cr_expect_eq(rgpu_transport_ops(tp), &rgpu_tcp_ops);
    rgpu_transport_close(tp);
}

/* Links made through the plain ops table belong to a default instance and
 * can do everything a link of an opened instance can. */
Test(tcp, plain_links_have_the_message_layer_too, .timeout = CONF_TIMEOUT)
{
    char buf[64];
    rgpu_mem_t *mem;
    rgpu_mem_desc_t desc;
    rgpu_msg_t *m;
    uint8_t head[RGPU_FRAME_HEADER_SIZE];
    rgpu_frame_header_t h = {RGPU_PROTOCOL_VERSION, 7, 0, 0, 42, 0};
    struct iovec iov = {head, sizeof(head)};

    cr_assert_not_null(cli->tp);
    cr_expect_eq(cli->tp, srv->tp);
    cr_assert_eq(rgpu_mem_register(srv->tp, buf, sizeof(buf), RGPU_MEMTYPE_HOST, &mem), RGPU_OK);
    desc = rgpu_mem_desc(mem);
    rgpu_frame_header_encode(&h, head);
    cr_assert_eq(rgpu_link_msg_send(srv, &iov, 1, NULL), RGPU_OK);
    cr_assert_eq(rgpu_link_msg_recv(cli, &m, 5000), RGPU_OK);
    cr_expect_eq(m->header.seq, 42);
    rgpu_msg_release(m);
    /* Nobody progresses srv here: a get waits for it, then completes. */
    {
        rgpu_completion_t c = {0};
        cr_assert_eq(rgpu_link_put(cli, mem, 0, &desc, 0, 8, &c), RGPU_OK);
        cr_expect_eq(rgpu_link_wait(cli, &c, 100), RGPU_ERR_TIMEOUT);
        cr_expect_eq(rgpu_link_progress(srv), 1);
        cr_expect_eq(rgpu_link_wait(cli, &c, 5000), RGPU_OK);
    }
    rgpu_mem_deregister(mem);
}

/* A fresh pair on the suite's listener. */
static void tcp_pair(rgpu_link_t **c_p, rgpu_link_t **s_p)
{
    cr_assert_eq(rgpu_tcp_ops.connect(lst->local, 5000, c_p, NULL, 0), RGPU_OK);
    cr_assert_eq(conf_accept(lst, 5000, s_p), RGPU_OK);
}

/* Sends raw bytes past the message layer, as a hostile peer would. */
static void tcp_send_raw(rgpu_link_t *link, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    cr_assert_eq(rgpu_tcp_ops.sendv(link, &iov, 1), RGPU_OK);
}

/* A bad frame header ends the link with a reason as specific as the
 * server's own used to be: which bytes, which version, which sizes. */
Test(tcp, a_bad_frame_header_fails_the_link_with_a_specific_reason, .timeout = CONF_TIMEOUT)
{
    static const struct {
        rgpu_frame_header_t h;
        const char *magic;      /* NULL: a good magic */
        rgpu_status_t want;
        const char *says;
    } cases[] = {
        {{RGPU_PROTOCOL_VERSION, 5, 0, 0, 1, 0}, "HTTP", RGPU_ERR_BAD_MAGIC, "bad magic 48 54 54 50"},
        {{99, 5, 0, 0, 1, 0}, NULL, RGPU_ERR_BAD_VERSION, "frame has protocol version 99, this side"},
        {{RGPU_PROTOCOL_VERSION, 5, 0, 1u << 30, 1, 0}, NULL, RGPU_ERR_TOO_LARGE,
         "frame of type 5 too large: body 1073741824 bytes"},
        {{RGPU_PROTOCOL_VERSION, 5, 0, 0, 1, 1u << 20}, NULL, RGPU_ERR_TOO_LARGE,
         "1048608-byte message, past the 262144-byte eager limit"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rgpu_link_t *c, *s;
        uint8_t raw[RGPU_FRAME_HEADER_SIZE];
        rgpu_msg_t *m;

        tcp_pair(&c, &s);
        rgpu_frame_header_encode(&cases[i].h, raw);
        if (cases[i].magic)
            memcpy(raw, cases[i].magic, 4);
        tcp_send_raw(c, raw, sizeof(raw));
        cr_expect_eq(rgpu_link_msg_recv(s, &m, 5000), cases[i].want, "case %zu", i);
        cr_expect(strstr(rgpu_link_reason(s), cases[i].says) != NULL,
                  "case %zu: reason \"%s\" does not say \"%s\"", i, rgpu_link_reason(s),
                  cases[i].says);
        cr_expect(strstr(rgpu_link_reason(s), s->peer) != NULL, "the reason names no peer");
        /* Receiving ended; this side can still tell the peer why. */
        cr_expect_eq(conf_msg_send(s, 50 + i, 4, 4), RGPU_OK, "case %zu: no last word", i);
        cr_assert_eq(rgpu_link_msg_recv(c, &m, 5000), RGPU_OK, "case %zu", i);
        conf_msg_check(m, 50 + i, 4, 4);
        rgpu_msg_release(m);
        rgpu_link_close(c);
        rgpu_link_close(s);
    }
}

typedef struct {
    rgpu_link_t *link;
    int count;
    int sent;
} tcp_flood_t;

static void *tcp_flooder(void *arg)
{
    tcp_flood_t *f = arg;
    size_t len = 256u << 10;
    uint8_t *frame = calloc(1, len);
    rgpu_frame_header_t h = {RGPU_PROTOCOL_VERSION, 5, 0, 0, 0, len - RGPU_FRAME_HEADER_SIZE};
    struct iovec iov = {frame, len};

    if (!frame)
        return NULL;
    for (int i = 0; i < f->count; i++) {
        h.seq = (uint64_t)i;
        rgpu_frame_header_encode(&h, frame);
        /* Fails once the receiver gave up on the link. */
        if (rgpu_link_msg_send(f->link, &iov, 1, NULL) != RGPU_OK)
            break;
        f->sent++;
    }
    free(frame);
    return NULL;
}

/* A peer sending frames that nobody takes (a client flooding a server that
 * waits in a get) does not make the link hold more than 64 MiB: the link
 * fails with RGPU_ERR_TOO_LARGE and says why; what it had queued is still
 * handed over, in order, then the failure. */
Test(tcp, frames_nobody_takes_are_bounded, .timeout = CONF_TIMEOUT)
{
    tcp_flood_t f = {cli, 300, 0};   /* 75 MiB */
    pthread_t th;
    rgpu_msg_t *m;
    int n, taken = 0;
    rgpu_status_t status;

    cr_assert_eq(pthread_create(&th, NULL, tcp_flooder, &f), 0);
    /* srv progresses (serving gets would, too) but takes nothing. */
    for (;;) {
        struct pollfd pfd = {rgpu_link_event_fd(srv), POLLIN, 0};
        n = rgpu_link_progress(srv);
        if (n < 0)
            break;
        if (n == 0)
            cr_assert_eq(poll(&pfd, 1, 10000), 1, "the flood stopped short of the bound");
    }
    cr_expect_eq(n, RGPU_ERR_TOO_LARGE, "%s", rgpu_status_str((rgpu_status_t)n));
    cr_expect(strstr(rgpu_link_reason(srv), "more than 64 MiB of messages that were not taken"),
              "reason \"%s\"", rgpu_link_reason(srv));
    pthread_join(th, NULL);
    while ((status = rgpu_link_msg_recv(srv, &m, 5000)) == RGPU_OK) {
        cr_assert_eq(m->header.seq, (uint64_t)taken);
        taken++;
        rgpu_msg_release(m);
    }
    cr_expect_eq(status, RGPU_ERR_TOO_LARGE);
    /* 64 MiB of buffers for frames of 256 KiB (headers included): each
     * buffer also holds its rgpu_msg_t, a little more than the header it
     * replaces, so 255 fit and the 256th does not. */
    cr_expect_eq(taken, 255, "%d frames were queued", taken);
}

/* A peer that sends part of a header and closes: the link fails with
 * RGPU_ERR_CONN_CLOSED and a reason, not with a half-read frame. */
Test(tcp, a_frame_cut_short_by_a_close_is_a_closed_link, .timeout = CONF_TIMEOUT)
{
    rgpu_frame_header_t in = {RGPU_PROTOCOL_VERSION, 5, 0, 4, 1, 0};
    uint8_t raw[RGPU_FRAME_HEADER_SIZE + 4] = {0};
    rgpu_msg_t *m;

    rgpu_frame_header_encode(&in, raw);
    tcp_send_raw(cli, raw, 10);
    rgpu_link_close(cli);
    cli = NULL;
    cr_expect_eq(rgpu_link_msg_recv(srv, &m, 5000), RGPU_ERR_CONN_CLOSED);
    cr_expect(strstr(rgpu_link_reason(srv), "closed the connection") != NULL, "reason \"%s\"",
              rgpu_link_reason(srv));
}

/* ---- a frame's bulk in the stream (caps.stream_bulk) ---- */

#define STREAM_LEN ((8u << 20) + 3)     /* past the eager limit, and past the socket buffers */

static uint8_t stream_byte(uint64_t i)
{
    return (uint8_t)(i * 13 + (i >> 9));
}

typedef struct {
    rgpu_link_t *link;
    rgpu_status_t status[2];
} tcp_stream_send_t;

/* Sends frame 1 (5 bytes of body, STREAM_LEN bytes of bulk in the stream)
 * then frame 2 (a plain 4-byte body). On its own thread: the bulk does not
 * fit the socket buffers before the receiver takes it. */
static void *tcp_stream_sender(void *arg)
{
    tcp_stream_send_t *t = arg;
    uint8_t *bulk = malloc(STREAM_LEN), head[RGPU_FRAME_HEADER_SIZE + 5] = {0};
    rgpu_frame_header_t h = {RGPU_PROTOCOL_VERSION, 9, RGPU_FRAME_F_STREAM, 5, 1, STREAM_LEN};
    struct iovec iov[2] = {{head, sizeof(head)}, {bulk, STREAM_LEN}};

    if (!bulk)
        return NULL;
    for (uint64_t i = 0; i < STREAM_LEN; i++)
        bulk[i] = stream_byte(i);
    rgpu_frame_header_encode(&h, head);
    memcpy(head + RGPU_FRAME_HEADER_SIZE, "hello", 5);
    t->status[0] = rgpu_link_msg_send(t->link, iov, 2, NULL);
    t->status[1] = conf_msg_send(t->link, 2, 4, 0);
    free(bulk);
    return NULL;
}

/* The receiver takes the bulk in pieces of its choosing, straight into its
 * own memory; nothing else is received meanwhile (a second receive does not
 * read the bulk as frames); what it leaves is dropped at the release, and
 * the next frame arrives whole. */
Test(tcp, a_frames_bulk_in_the_stream_is_taken_where_its_receiver_says, .timeout = CONF_TIMEOUT)
{
    tcp_stream_send_t t = {cli, {RGPU_ERR_IO, RGPU_ERR_IO}};
    uint8_t *dst = malloc(STREAM_LEN);
    uint64_t at = 0, cut[] = {1, 4096, 65536 + 7, 3u << 20};
    pthread_t th;
    rgpu_msg_t *m, *m2;

    cr_assert_not_null(dst);
    cr_expect(rgpu_transport_caps(cli->tp)->stream_bulk, "tcp says it carries bulk in the stream");
    cr_assert_eq(pthread_create(&th, NULL, tcp_stream_sender, &t), 0);
    cr_assert_eq(rgpu_link_msg_recv(srv, &m, 5000), RGPU_OK);
    cr_expect_eq(m->header.seq, 1);
    cr_expect(m->header.flags & RGPU_FRAME_F_STREAM);
    cr_expect_eq(m->header.bulk_len, STREAM_LEN);
    cr_expect_null(m->bulk, "the bulk is not in the message");
    cr_expect_eq(m->stream_left, STREAM_LEN);
    cr_expect(m->header.body_len == 5 && !memcmp(m->body, "hello", 5), "the body came with the frame");
    /* Frame 2 is on the wire behind the bulk: nobody may read past it. */
    cr_expect_eq(rgpu_link_msg_recv(srv, &m2, 200), RGPU_ERR_TIMEOUT,
                 "a receive went on while a frame's bulk was still in the stream");
    cr_expect_eq(rgpu_link_progress(srv), 0, "progress read on while a frame's bulk was still in the stream");
    for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
        cr_assert_eq(rgpu_msg_take_bulk(m, dst + at, cut[i]), RGPU_OK, "piece %zu", i);
        at += cut[i];
        cr_expect_eq(m->stream_left, STREAM_LEN - at);
    }
    cr_expect_eq(rgpu_msg_take_bulk(m, dst, m->stream_left + 1), RGPU_ERR_INVALID_ARG,
                 "a piece past what is left is refused");
    for (uint64_t i = 0; i < at; i++)
        if (dst[i] != stream_byte(i))
            cr_assert_fail("byte %llu of the bulk is wrong", (unsigned long long)i);
    rgpu_msg_release(m);            /* drops the other 5 MiB */
    cr_assert_eq(rgpu_link_msg_recv(srv, &m2, 5000), RGPU_OK, "%s", rgpu_link_reason(srv));
    conf_msg_check(m2, 2, 4, 0);
    rgpu_msg_release(m2);
    pthread_join(th, NULL);
    cr_expect_eq(t.status[0], RGPU_OK);
    cr_expect_eq(t.status[1], RGPU_OK);
    free(dst);
}

/* Only the bulk may go past the eager limit, and only on a frame that says
 * it is in the stream. */
Test(tcp, a_frame_in_the_stream_still_has_its_body_within_the_eager_limit, .timeout = CONF_TIMEOUT)
{
    size_t eager = rgpu_transport_caps(cli->tp)->max_eager;
    uint8_t *body = calloc(1, eager);
    uint8_t head[RGPU_FRAME_HEADER_SIZE];
    rgpu_frame_header_t h = {RGPU_PROTOCOL_VERSION, 9, RGPU_FRAME_F_STREAM, (uint32_t)eager, 1, 10};
    struct iovec iov[3] = {{head, sizeof(head)}, {body, eager}, {body, 10}};

    cr_assert_not_null(body);
    rgpu_frame_header_encode(&h, head);
    cr_expect_eq(rgpu_link_msg_send(cli, iov, 3, NULL), RGPU_ERR_TOO_LARGE);
    h.flags = 0;
    h.body_len = 16;
    h.bulk_len = eager;
    rgpu_frame_header_encode(&h, head);
    iov[1].iov_len = 16;
    iov[2].iov_len = eager;
    cr_expect_eq(rgpu_link_msg_send(cli, iov, 3, NULL), RGPU_ERR_TOO_LARGE,
                 "without RGPU_FRAME_F_STREAM the whole frame must fit");
    free(body);
}
