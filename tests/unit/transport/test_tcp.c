/* The TCP transport: the conformance suite, then what only TCP has
 * (ports, refused connections, address errors). Loopback only. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define CONFORMANCE_SUITE tcp
#define CONFORMANCE_OPS   rgpu_tcp_ops
#define CONFORMANCE_ADDR  "127.0.0.1:0"
#include "conformance.h"

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

Test(tcp, more_than_16_iovecs_is_an_invalid_argument, .timeout = CONF_TIMEOUT)
{
    struct iovec iov[17];

    for (int i = 0; i < 17; i++) {
        iov[i].iov_base = "x";
        iov[i].iov_len = 1;
    }
    cr_expect_eq(rgpu_link_sendv(cli, iov, 17), RGPU_ERR_INVALID_ARG);
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
