/* The verbs transport where this node has no RDMA (this CI host: the kernel
 * has none, ibv_get_device_list answers NULL/ENOSYS): opening it says so in
 * words, verbs:// resolves to it and fails with that reason, and the
 * client's choice (RGPU_TRANSPORT) falls back to TCP saying why once. On a
 * node with a usable device the same tests check the other branch: verbs
 * opens and is chosen. Real verbs traffic is tested by scripts/test-verbs.sh
 * in a Soft-RoCE VM. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rgpu/transport.h"
#include "rgpu/verbs.h"

#define TIMEOUT 30

static int has_rdma(char *reason, size_t cap)
{
    return rgpu_verbs_probe(reason, cap) == RGPU_OK;
}

Test(verbs_absent, opening_verbs_says_whether_there_is_an_rdma_device, .timeout = TIMEOUT)
{
    char reason[256] = "x";
    rgpu_transport_t *tp = NULL;
    rgpu_status_t status = rgpu_transport_open("verbs", &tp);

    if (has_rdma(reason, sizeof(reason))) {
        cr_expect_str_eq(reason, "");
        cr_assert_eq(status, RGPU_OK);
        cr_expect_eq(rgpu_transport_caps(tp)->remote_access, 1);
        rgpu_transport_close(tp);
        return;
    }
    cr_expect_eq(status, RGPU_ERR_UNSUPPORTED);
    cr_expect_null(tp);
    cr_expect_eq(strncmp(reason, "no RDMA device: ", 16), 0, "reason \"%s\"", reason);
    cr_expect_eq(rgpu_transport_usable("verbs", reason, sizeof(reason)), RGPU_ERR_UNSUPPORTED);
    cr_expect_eq(strncmp(reason, "no RDMA device: ", 16), 0, "reason \"%s\"", reason);
    /* A NULL reason buffer is allowed. */
    cr_expect_eq(rgpu_verbs_probe(NULL, 0), RGPU_ERR_UNSUPPORTED);
    cr_expect_eq(rgpu_transport_usable("tcp", reason, sizeof(reason)), RGPU_OK);
    cr_expect_eq(rgpu_transport_usable("carrier-pigeon", reason, sizeof(reason)), RGPU_ERR_ADDRESS);
}

Test(verbs_absent, verbs_urls_resolve_to_the_verbs_transport, .timeout = TIMEOUT)
{
    const rgpu_transport_ops_t *ops = NULL;
    const char *bare = NULL;
    char reason[256] = "";
    rgpu_link_t *link = NULL;
    rgpu_listener_t *l = NULL;

    cr_assert_eq(rgpu_transport_for_address("verbs://10.77.0.1:7000", &ops, &bare, reason,
                                            sizeof(reason)), RGPU_OK, "%s", reason);
    cr_expect_eq(ops, &rgpu_verbs_ops);
    cr_expect_str_eq(bare, "10.77.0.1:7000");
    cr_expect_null(ops->sendv, "verbs links carry messages, not a stream");
    if (has_rdma(NULL, 0))
        return;
    cr_expect_eq(ops->connect(bare, 1000, &link, reason, sizeof(reason)), RGPU_ERR_UNSUPPORTED);
    cr_expect_null(link);
    cr_expect_eq(strncmp(reason, "no RDMA device: ", 16), 0, "reason \"%s\"", reason);
    cr_expect_eq(ops->listen("0.0.0.0:0", &l), RGPU_ERR_UNSUPPORTED);
    cr_expect_null(l);
    /* TCP is untouched. */
    cr_assert_eq(rgpu_transport_for_address("127.0.0.1:7000", &ops, &bare, NULL, 0), RGPU_OK);
    cr_expect_eq(ops, &rgpu_tcp_ops);
}

/* Runs rgpu_transport_choose with stderr captured into out. */
static rgpu_status_t choose(const char *env, const char *const *addrs, size_t n, size_t *index_p,
                            char *reason, size_t cap, char *out, size_t out_cap)
{
    char path[] = "/tmp/rgpu-choose-XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    rgpu_status_t status;
    ssize_t got;

    cr_assert_geq(fd, 0);
    unlink(path);
    if (env)
        setenv("RGPU_TRANSPORT", env, 1);
    else
        unsetenv("RGPU_TRANSPORT");
    fflush(stderr);
    dup2(fd, 2);
    status = rgpu_transport_choose(addrs, n, index_p, reason, cap);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    got = pread(fd, out, out_cap - 1, 0);
    out[got > 0 ? got : 0] = '\0';
    close(fd);
    return status;
}

Test(verbs_absent, the_clients_choice_falls_back_to_tcp_and_says_why_once, .timeout = TIMEOUT)
{
    static const char *both[] = {"verbs://10.77.0.1:7001", "tcp://127.0.0.1:7000"};
    static const char *bare[] = {"127.0.0.1:7000", "verbs://10.77.0.1:7001"};
    static const char *only_verbs[] = {"verbs://10.77.0.1:7001"};
    char reason[256], out[1024];
    size_t i = 99;
    int rdma = has_rdma(NULL, 0);

    cr_assert_eq(choose(NULL, both, 2, &i, reason, sizeof(reason), out, sizeof(out)), RGPU_OK);
    cr_expect_eq(i, rdma ? 0u : 1u);
    if (!rdma)
        cr_expect(strstr(out, "using TCP instead of verbs: no RDMA device: ") != NULL,
                  "stderr said \"%s\"", out);
    /* Once per process. */
    cr_assert_eq(choose("auto", bare, 2, &i, reason, sizeof(reason), out, sizeof(out)), RGPU_OK);
    cr_expect_eq(i, rdma ? 1u : 0u);
    cr_expect_str_eq(out, "", "said again: \"%s\"", out);
    /* tcp: verbs is never tried, nothing said. */
    cr_assert_eq(choose("tcp", both, 2, &i, reason, sizeof(reason), out, sizeof(out)), RGPU_OK);
    cr_expect_eq(i, 1u);
    cr_expect_str_eq(out, "");
    /* verbs: an error where it cannot be had, in words. */
    if (!rdma) {
        cr_expect_eq(choose("verbs", both, 2, &i, reason, sizeof(reason), out, sizeof(out)),
                     RGPU_ERR_UNSUPPORTED);
        cr_expect(strstr(reason, "no RDMA device") != NULL, "reason \"%s\"", reason);
        cr_expect_eq(choose("auto", only_verbs, 1, &i, reason, sizeof(reason), out, sizeof(out)),
                     RGPU_ERR_UNSUPPORTED);
        cr_expect(strstr(reason, "no RDMA device") != NULL, "reason \"%s\"", reason);
    }
    cr_expect_eq(choose("verbs", bare, 1, &i, reason, sizeof(reason), out, sizeof(out)),
                 RGPU_ERR_UNSUPPORTED);
    cr_expect(strstr(reason, "no verbs:// address") != NULL, "reason \"%s\"", reason);
    cr_expect_eq(choose("infiniband", both, 2, &i, reason, sizeof(reason), out, sizeof(out)),
                 RGPU_ERR_INVALID_ARG);
    cr_expect(strstr(reason, "RGPU_TRANSPORT=infiniband") != NULL, "reason \"%s\"", reason);
}
