/*
 * Which address the client connects to for a leased server
 * (client/core/lease.c, shared by the ICD and the CUDA runtime): the
 * lease names each server by its identity and lists its endpoints; the
 * client takes verbs where this node can, else TCP (saying why once on
 * stderr), honours RGPU_TRANSPORT, maps the identities RGPU_SERVERS names,
 * and leaves servers the lease lists no endpoints for as they are.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rgpu/client_lease.h"
#include "rgpu/token.h"
#include "rgpu/transport.h"

static rgpu_token_key_t key;
static char token[4096];
static char conf_path[] = "/tmp/rgpu-lease-conf-XXXXXX";

/* A lease of two GPUs of "gpu1.example:7070" (endpoints: verbs, then TCP,
 * listed on its first GPU as the scheduler does) and one of "old:7070", a
 * server from before endpoints. */
static void setup(void)
{
    Rgpu__TokenPayload payload = RGPU__TOKEN_PAYLOAD__INIT;
    Rgpu__LeaseGpu gpus[3], *ptrs[3];
    char *endpoints[] = {(char *)"verbs://10.77.0.1:7071", (char *)"tcp://127.0.0.1:7070"};
    char *signed_token;
    int fd;

    memset(key.bytes, 9, sizeof(key.bytes));
    for (size_t g = 0; g < 3; g++) {
        rgpu__lease_gpu__init(&gpus[g]);
        gpus[g].server = (char *)(g < 2 ? "gpu1.example:7070" : "old:7070");
        gpus[g].index = (uint32_t)(g % 2);
        ptrs[g] = &gpus[g];
    }
    gpus[0].n_endpoints = 2;
    gpus[0].endpoints = endpoints;
    payload.lease_id = 42;
    payload.n_gpus = 3;
    payload.gpus = ptrs;
    payload.user = (char *)"alice";
    payload.expires_unix = 4000000000;
    signed_token = rgpu_token_sign(&key, &payload);
    cr_assert_not_null(signed_token);
    snprintf(token, sizeof(token), "%s", signed_token);
    free(signed_token);
    /* An empty client.conf: this host's /etc/rgpu/client.conf plays no part. */
    fd = mkstemp(conf_path);
    cr_assert_geq(fd, 0);
    close(fd);
    setenv("RGPU_CONFIG", conf_path, 1);
    setenv("RGPU_LEASE_TOKEN", token, 1);
    unsetenv("RGPU_SERVERS");
    unsetenv("RGPU_TRANSPORT");
}

static void teardown(void)
{
    unlink(conf_path);
}

TestSuite(lease, .init = setup, .fini = teardown, .timeout = 30);

/* rgpu_client_setup with stderr captured into err. */
static int client_setup(char *servers, size_t cap, char *why, size_t why_cap, char *err,
                        size_t err_cap)
{
    static rgpu_client_conf_t conf;
    char path[] = "/tmp/rgpu-lease-err-XXXXXX";
    int fd = mkstemp(path), saved = dup(2), rc;
    ssize_t got;

    cr_assert_geq(fd, 0);
    unlink(path);
    fflush(stderr);
    dup2(fd, 2);
    rc = rgpu_client_setup(&conf, servers, cap, why, why_cap);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    got = pread(fd, err, err_cap - 1, 0);
    err[got > 0 ? got : 0] = '\0';
    close(fd);
    return rc;
}

static int node_has_verbs(void)
{
    return rgpu_transport_usable("verbs", NULL, 0) == RGPU_OK;
}

Test(lease, the_token_alone_reaches_each_server_at_a_chosen_endpoint)
{
    char servers[512], why[512] = "", err[1024];

    cr_assert_eq(client_setup(servers, sizeof(servers), why, sizeof(why), err, sizeof(err)), 0,
                 "%s", why);
    if (node_has_verbs()) {
        cr_expect_str_eq(servers, "verbs://10.77.0.1:7071,old:7070");
        cr_expect_str_eq(err, "");
    } else {
        /* No RDMA here: TCP, and the user is told why, once. */
        cr_expect_str_eq(servers, "tcp://127.0.0.1:7070,old:7070");
        cr_expect(strstr(err, "rgpu: using TCP instead of verbs: "), "stderr: \"%s\"", err);
        cr_expect_eq(strstr(err, "instead of verbs") ? strstr(strstr(err, "instead of verbs") + 1,
                                                              "instead of verbs") : NULL, NULL,
                     "said more than once: \"%s\"", err);
    }
}

Test(lease, rgpu_servers_naming_identities_are_mapped_to_endpoints)
{
    char servers[512], why[512] = "", err[1024];

    setenv("RGPU_TRANSPORT", "tcp", 1);
    setenv("RGPU_SERVERS", "gpu1.example:7070,elsewhere:9000", 1);
    cr_assert_eq(client_setup(servers, sizeof(servers), why, sizeof(why), err, sizeof(err)), 0,
                 "%s", why);
    /* A server the lease does not name is taken as given. */
    cr_expect_str_eq(servers, "tcp://127.0.0.1:7070,elsewhere:9000");
    cr_expect_str_eq(err, "", "RGPU_TRANSPORT=tcp is no fallback to explain: \"%s\"", err);
}

Test(lease, transport_verbs_without_a_usable_device_is_an_error_with_the_reason)
{
    char servers[512], why[512] = "", err[1024];

    if (node_has_verbs())
        cr_skip_test("this node has an RDMA device: verbs would be usable");
    setenv("RGPU_TRANSPORT", "verbs", 1);
    cr_assert_eq(client_setup(servers, sizeof(servers), why, sizeof(why), err, sizeof(err)), -1);
    cr_expect(strstr(why, "server gpu1.example:7070: RGPU_TRANSPORT=verbs, but "), "why: \"%s\"",
              why);
}

Test(lease, a_lease_without_the_transport_asked_for_says_so)
{
    Rgpu__TokenPayload payload = RGPU__TOKEN_PAYLOAD__INIT;
    Rgpu__LeaseGpu gpu = RGPU__LEASE_GPU__INIT, *ptrs[1] = {&gpu};
    char *only_verbs[] = {(char *)"verbs://10.77.0.1:7071"};
    char servers[512], why[512] = "", err[1024], *t;

    gpu.server = (char *)"ib-only:7070";
    gpu.n_endpoints = 1;
    gpu.endpoints = only_verbs;
    payload.lease_id = 43;
    payload.n_gpus = 1;
    payload.gpus = ptrs;
    payload.user = (char *)"alice";
    payload.expires_unix = 4000000000;
    t = rgpu_token_sign(&key, &payload);
    cr_assert_not_null(t);
    setenv("RGPU_LEASE_TOKEN", t, 1);
    free(t);
    setenv("RGPU_TRANSPORT", "tcp", 1);
    cr_assert_eq(client_setup(servers, sizeof(servers), why, sizeof(why), err, sizeof(err)), -1);
    cr_expect_str_eq(why, "transport = tcp, but the lease lists no TCP address for server "
                          "ib-only:7070");
}
