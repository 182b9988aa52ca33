/*
 * MUNGE credentials bound to one scheduler request (rgpu/munge.h): the
 * digest, the binding check, and encode/decode around munge.c (libmunge) or
 * munge_stub.c (a build without it).
 */
#include "rgpu/munge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#define RGPU_MUNGE_DOMAIN "rgpu-sched-request-v1"
/* The cluster-key trailer's length (rgpu/token.h): a credential is longer. */
#define RGPU_MUNGE_KEY_TRAILER_LEN 40

void rgpu_munge_request_digest(uint16_t type, uint32_t seq, const void *body, size_t len,
                               uint8_t digest[RGPU_MUNGE_DIGEST_BYTES])
{
    crypto_generichash_state st;
    uint8_t head[6] = {(uint8_t)type, (uint8_t)(type >> 8), (uint8_t)seq, (uint8_t)(seq >> 8),
                       (uint8_t)(seq >> 16), (uint8_t)(seq >> 24)};

    /* crypto_generichash needs no sodium_init (no randomness involved). */
    crypto_generichash_init(&st, NULL, 0, RGPU_MUNGE_DIGEST_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)RGPU_MUNGE_DOMAIN, strlen(RGPU_MUNGE_DOMAIN));
    crypto_generichash_update(&st, head, sizeof(head));
    if (len)
        crypto_generichash_update(&st, body, len);
    crypto_generichash_final(&st, digest, RGPU_MUNGE_DIGEST_BYTES);
}

int rgpu_munge_is_cred(const void *bulk, size_t len)
{
    return bulk && len > RGPU_MUNGE_KEY_TRAILER_LEN && len <= RGPU_MUNGE_CRED_MAX &&
           memcmp(bulk, "MUNGE:", 6) == 0;
}

rgpu_status_t rgpu_munge_check_binding(const void *payload, size_t payload_len, uint16_t type,
                                       uint32_t seq, const void *body, size_t len, char *why,
                                       size_t why_cap)
{
    uint8_t digest[RGPU_MUNGE_DIGEST_BYTES];

    if (!payload || payload_len != sizeof(digest)) {
        if (why && why_cap)
            snprintf(why, why_cap, "the credential's payload is %zu bytes, not a request digest",
                     payload ? payload_len : 0);
        return RGPU_ERR_REFUSED;
    }
    rgpu_munge_request_digest(type, seq, body, len, digest);
    if (sodium_memcmp(digest, payload, sizeof(digest)) != 0) {
        if (why && why_cap)
            snprintf(why, why_cap, "the credential was made for another request");
        return RGPU_ERR_REFUSED;
    }
    return RGPU_OK;
}

rgpu_status_t rgpu_munge_encode_request(const char *socket, uint16_t type, uint32_t seq,
                                        const void *body, size_t len, char **cred_p, char *why,
                                        size_t why_cap)
{
    uint8_t digest[RGPU_MUNGE_DIGEST_BYTES];

    if (!cred_p || (!body && len))
        return RGPU_ERR_INVALID_ARG;
    rgpu_munge_request_digest(type, seq, body, len, digest);
    return rgpu__munge_encode(socket, digest, sizeof(digest), cred_p, why, why_cap);
}

rgpu_status_t rgpu_munge_decode_request(const char *socket, uint16_t type, uint32_t seq,
                                        const void *body, size_t len, const void *cred,
                                        size_t cred_len, rgpu_munge_identity_t *id_p, char *why,
                                        size_t why_cap)
{
    rgpu_munge_identity_t id;
    void *payload = NULL;
    size_t payload_len = 0;
    char *text;
    rgpu_status_t st;

    if (!id_p || !cred || (!body && len))
        return RGPU_ERR_INVALID_ARG;
    if (!rgpu_munge_is_cred(cred, cred_len) || memchr(cred, '\0', cred_len)) {
        if (why && why_cap)
            snprintf(why, why_cap, "not a MUNGE credential");
        return RGPU_ERR_REFUSED;
    }
    text = malloc(cred_len + 1);
    if (!text)
        return RGPU_ERR_NOMEM;
    memcpy(text, cred, cred_len);
    text[cred_len] = '\0';
    st = rgpu__munge_decode(socket, text, &payload, &payload_len, &id, why, why_cap);
    free(text);
    if (st != RGPU_OK)
        return st;
    st = rgpu_munge_check_binding(payload, payload_len, type, seq, body, len, why, why_cap);
    free(payload);
    if (st == RGPU_OK)
        *id_p = id;
    return st;
}
