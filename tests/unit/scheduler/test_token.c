/* Lease tokens: sign, verify, forged, expired, key file checks. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "rgpu/token.h"

static rgpu_token_key_t key;
static char why[256];

static char *sign_one(const rgpu_token_key_t *k, int64_t expires)
{
    Rgpu__TokenPayload p = RGPU__TOKEN_PAYLOAD__INIT;
    Rgpu__LeaseGpu g = RGPU__LEASE_GPU__INIT, *gp = &g;

    g.server = (char *)"10.0.0.1:7070";
    g.index = 3;
    p.lease_id = 77;
    p.n_gpus = 1;
    p.gpus = &gp;
    p.memory_quota = 1 << 20;
    p.user = (char *)"alice";
    p.expires_unix = expires;
    return rgpu_token_sign(k, &p);
}

static void setup(void)
{
    memset(key.bytes, 0x5a, sizeof(key.bytes));
}

TestSuite(token, .init = setup, .timeout = 30);

Test(token, sign_then_verify)
{
    char *t = sign_one(&key, 2000);
    Rgpu__TokenPayload *p;

    cr_assert_not_null(t);
    cr_expect(strncmp(t, "v1.", 3) == 0);
    cr_assert_eq(rgpu_token_verify(&key, t, 1000, &p, why, sizeof(why)), RGPU_OK, "%s", why);
    cr_expect_eq(p->lease_id, 77);
    cr_expect_str_eq(p->user, "alice");
    cr_expect_eq(p->memory_quota, 1 << 20);
    cr_expect(rgpu_token_names_gpu(p, "10.0.0.1:7070", 3));
    cr_expect(!rgpu_token_names_gpu(p, "10.0.0.1:7070", 2));
    cr_expect(!rgpu_token_names_server(p, "10.0.0.2:7070"));
    rgpu__token_payload__free_unpacked(p, NULL);
    free(t);
}

Test(token, expired)
{
    char *t = sign_one(&key, 900);
    Rgpu__TokenPayload *p = NULL;

    cr_expect_eq(rgpu_token_verify(&key, t, 1000, &p, why, sizeof(why)), RGPU_ERR_TIMEOUT);
    cr_expect(strstr(why, "expired") != NULL, "%s", why);
    free(t);
}

Test(token, forged_or_other_key)
{
    rgpu_token_key_t other;
    char *t = sign_one(&key, 2000), *f;
    Rgpu__TokenPayload *p = NULL;

    memset(other.bytes, 0x11, sizeof(other.bytes));
    cr_expect_eq(rgpu_token_verify(&other, t, 1000, &p, why, sizeof(why)), RGPU_ERR_REFUSED);
    cr_expect(strstr(why, "bad signature") != NULL, "%s", why);
    /* Another payload with this token's mac. */
    f = sign_one(&key, 999999);
    strcpy(strrchr(f, '.'), strrchr(t, '.'));
    cr_expect_eq(rgpu_token_verify(&key, f, 1000, &p, why, sizeof(why)), RGPU_ERR_REFUSED);
    cr_expect_eq(rgpu_token_verify(&key, "v1.garbage", 1000, &p, why, sizeof(why)),
                 RGPU_ERR_BAD_MESSAGE);
    cr_expect_eq(rgpu_token_verify(&key, "nonsense", 1000, &p, why, sizeof(why)),
                 RGPU_ERR_BAD_MESSAGE);
    cr_expect_eq(rgpu_token_verify(&key, "", 1000, &p, why, sizeof(why)), RGPU_ERR_REFUSED);
    cr_expect(strstr(why, "no lease token") != NULL, "%s", why);
    cr_expect_null(p);
    free(t);
    free(f);
}

Test(token, key_file_must_be_private_and_long_enough)
{
    char dir[] = "/tmp/rgpu-token-XXXXXX", path[64];
    rgpu_token_key_t k;
    int fd;

    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/key", dir);
    fd = open(path, O_CREAT | O_WRONLY, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "short", 5), 5);
    cr_expect_eq(rgpu_token_key_load(path, &k, why, sizeof(why)), RGPU_ERR_INVALID_ARG);
    cr_assert_eq(write(fd, "0123456789012345678901234567890123456789", 40), 40);
    close(fd);
    cr_expect_eq(rgpu_token_key_load(path, &k, why, sizeof(why)), RGPU_OK, "%s", why);
    chmod(path, 0640);
    cr_expect_eq(rgpu_token_key_load(path, &k, why, sizeof(why)), RGPU_ERR_INVALID_ARG);
    cr_expect(strstr(why, "chmod 600") != NULL, "%s", why);
    unlink(path);
    cr_expect_eq(rgpu_token_key_load(path, &k, why, sizeof(why)), RGPU_ERR_IO);
    rmdir(dir);
}

/* ---- signed scheduler requests ---- */

static const uint8_t req_body[] = {0x0a, 0x05, 'h', 'e', 'l', 'l', 'o'};

Test(token, request_signed_verifies)
{
    uint8_t tr[RGPU_REQUEST_AUTH_LEN];

    randombytes_buf(key.bytes, sizeof(key.bytes));
    cr_assert_eq(rgpu_token_sign_request(&key, 305, 9, req_body, sizeof(req_body), 1000, tr),
                 RGPU_OK);
    /* the trailer starts with the time, little-endian */
    cr_assert_eq(tr[0], 1000 & 0xff);
    cr_assert_eq(tr[1], 1000 >> 8);
    cr_assert_eq(rgpu_token_verify_request(&key, 305, 9, req_body, sizeof(req_body), tr, 1010, 60,
                                           why, sizeof(why)),
                 RGPU_OK);
    /* an empty body is allowed (ListRequest packs to nothing) */
    cr_assert_eq(rgpu_token_sign_request(&key, 306, 1, NULL, 0, 1000, tr), RGPU_OK);
    cr_assert_eq(rgpu_token_verify_request(&key, 306, 1, NULL, 0, tr, 1000, 60, why, sizeof(why)),
                 RGPU_OK);
}

Test(token, request_matches_the_documented_mac)
{
    uint8_t tr[RGPU_REQUEST_AUTH_LEN], msg[6 + sizeof(req_body) + 8], mac[crypto_auth_BYTES];
    size_t n = 0;

    randombytes_buf(key.bytes, sizeof(key.bytes));
    cr_assert_eq(rgpu_token_sign_request(&key, 0x0131, 0x01020304, req_body, sizeof(req_body),
                                         0x0102030405, tr),
                 RGPU_OK);
    msg[n++] = 0x31;
    msg[n++] = 0x01;
    msg[n++] = 0x04;
    msg[n++] = 0x03;
    msg[n++] = 0x02;
    msg[n++] = 0x01;
    memcpy(msg + n, req_body, sizeof(req_body));
    n += sizeof(req_body);
    memcpy(msg + n, tr, 8);
    n += 8;
    cr_assert_eq(tr[0], 0x05);
    cr_assert_eq(tr[4], 0x01);
    cr_assert_eq(tr[5], 0x00);
    crypto_auth(mac, msg, n, key.bytes);
    cr_assert_eq(memcmp(mac, tr + 8, sizeof(mac)), 0);
}

Test(token, request_tampered_or_wrong_key_refused)
{
    uint8_t tr[RGPU_REQUEST_AUTH_LEN], body2[sizeof(req_body)];
    rgpu_token_key_t other;

    randombytes_buf(key.bytes, sizeof(key.bytes));
    randombytes_buf(other.bytes, sizeof(other.bytes));
    cr_assert_eq(rgpu_token_sign_request(&key, 305, 9, req_body, sizeof(req_body), 1000, tr),
                 RGPU_OK);
    memcpy(body2, req_body, sizeof(body2));
    body2[3] ^= 1;
    cr_assert_eq(rgpu_token_verify_request(&key, 305, 9, body2, sizeof(body2), tr, 1000, 60, why,
                                           sizeof(why)),
                 RGPU_ERR_REFUSED);
    cr_assert_str_eq(why, "bad signature");
    cr_assert_eq(rgpu_token_verify_request(&key, 306, 9, req_body, sizeof(req_body), tr, 1000, 60,
                                           why, sizeof(why)),
                 RGPU_ERR_REFUSED, "another message type");
    cr_assert_eq(rgpu_token_verify_request(&key, 305, 10, req_body, sizeof(req_body), tr, 1000, 60,
                                           why, sizeof(why)),
                 RGPU_ERR_REFUSED, "another seq");
    cr_assert_eq(rgpu_token_verify_request(&other, 305, 9, req_body, sizeof(req_body), tr, 1000,
                                           60, why, sizeof(why)),
                 RGPU_ERR_REFUSED, "another key");
    tr[0] ^= 1; /* the time is under the MAC too */
    cr_assert_eq(rgpu_token_verify_request(&key, 305, 9, req_body, sizeof(req_body), tr, 1000, 60,
                                           why, sizeof(why)),
                 RGPU_ERR_REFUSED);
}

Test(token, request_clock_skew_refused)
{
    uint8_t tr[RGPU_REQUEST_AUTH_LEN];

    randombytes_buf(key.bytes, sizeof(key.bytes));
    cr_assert_eq(rgpu_token_sign_request(&key, 305, 9, req_body, sizeof(req_body), 1000, tr),
                 RGPU_OK);
    cr_assert_eq(rgpu_token_verify_request(&key, 305, 9, req_body, sizeof(req_body), tr, 1075, 60,
                                           why, sizeof(why)),
                 RGPU_ERR_TIMEOUT);
    cr_assert_str_eq(why, "clock skew 75 s");
    cr_assert_eq(rgpu_token_verify_request(&key, 305, 9, req_body, sizeof(req_body), tr, 925, 60,
                                           why, sizeof(why)),
                 RGPU_ERR_TIMEOUT, "a request from the future");
    cr_assert_eq(rgpu_token_verify_request(&key, 305, 9, req_body, sizeof(req_body), tr, 1060, 60,
                                           why, sizeof(why)),
                 RGPU_OK, "exactly max_skew_s is still fine");
}
