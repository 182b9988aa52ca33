/* Lease tokens: sign, verify, forged, expired, key file checks. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
