/*
 * Lease tokens (see rgpu/token.h). The cryptography is libsodium's; this
 * file only frames it.
 */
#include "rgpu/token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define RGPU_TOKEN_PREFIX "v1."
#define RGPU_TOKEN_B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING
/* Tokens longer than this are refused before decoding. */
#define RGPU_TOKEN_MAX_LEN 16384

static void rgpu_token_why(char *why, size_t cap, const char *fmt, const char *arg)
{
    if (why && cap)
        snprintf(why, cap, fmt, arg);
}

rgpu_status_t rgpu_token_key_load(const char *path, rgpu_token_key_t *key_p, char *why,
                                  size_t why_cap)
{
    rgpu_token_key_t key;
    struct stat st;
    ssize_t got;
    int fd;

    if (sodium_init() < 0) {
        rgpu_token_why(why, why_cap, "%s: libsodium cannot initialize", path);
        return RGPU_ERR_IO;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (why && why_cap)
            snprintf(why, why_cap, "cannot open key file %s: %s", path, strerror(errno));
        return RGPU_ERR_IO;
    }
    if (fstat(fd, &st) != 0) {
        if (why && why_cap)
            snprintf(why, why_cap, "cannot stat key file %s: %s", path, strerror(errno));
        close(fd);
        return RGPU_ERR_IO;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        rgpu_token_why(why, why_cap,
                       "key file %s is accessible to group or others (chmod 600 it)", path);
        close(fd);
        return RGPU_ERR_INVALID_ARG;
    }
    if (st.st_uid != 0 && st.st_uid != geteuid()) {
        rgpu_token_why(why, why_cap, "key file %s belongs to another user", path);
        close(fd);
        return RGPU_ERR_INVALID_ARG;
    }
    got = read(fd, key.bytes, sizeof(key.bytes));
    close(fd);
    if (got < 0) {
        if (why && why_cap)
            snprintf(why, why_cap, "cannot read key file %s: %s", path, strerror(errno));
        return RGPU_ERR_IO;
    }
    if ((size_t)got < sizeof(key.bytes)) {
        rgpu_token_why(why, why_cap, "key file %s holds fewer than 32 bytes", path);
        return RGPU_ERR_INVALID_ARG;
    }
    *key_p = key;
    sodium_memzero(&key, sizeof(key));
    return RGPU_OK;
}

char *rgpu_token_sign(const rgpu_token_key_t *key, const Rgpu__TokenPayload *payload)
{
    size_t len = rgpu__token_payload__get_packed_size(payload);
    size_t b64_payload = sodium_base64_ENCODED_LEN(len, RGPU_TOKEN_B64);
    size_t b64_mac = sodium_base64_ENCODED_LEN(crypto_auth_BYTES, RGPU_TOKEN_B64);
    uint8_t mac[crypto_auth_BYTES];
    uint8_t *packed;
    char *token, *p;

    if (sodium_init() < 0)
        return NULL;
    packed = malloc(len + 1);
    token = malloc(strlen(RGPU_TOKEN_PREFIX) + b64_payload + 1 + b64_mac);
    if (!packed || !token) {
        free(packed);
        free(token);
        return NULL;
    }
    rgpu__token_payload__pack(payload, packed);
    crypto_auth(mac, packed, len, key->bytes);
    strcpy(token, RGPU_TOKEN_PREFIX);
    p = token + strlen(token);
    sodium_bin2base64(p, b64_payload, packed, len, RGPU_TOKEN_B64);
    p += strlen(p);
    *p++ = '.';
    sodium_bin2base64(p, b64_mac, mac, sizeof(mac), RGPU_TOKEN_B64);
    free(packed);
    return token;
}

rgpu_status_t rgpu_token_verify(const rgpu_token_key_t *key, const char *token, int64_t now_unix,
                                Rgpu__TokenPayload **payload_p, char *why, size_t why_cap)
{
    uint8_t mac[crypto_auth_BYTES];
    const char *body, *dot;
    Rgpu__TokenPayload *payload;
    uint8_t *packed;
    size_t len, mac_len;
    size_t tlen = token ? strlen(token) : 0;

    if (!token || !*token) {
        rgpu_token_why(why, why_cap, "%s", "no lease token (this server requires one)");
        return RGPU_ERR_REFUSED;
    }
    if (sodium_init() < 0) {
        rgpu_token_why(why, why_cap, "%s", "libsodium cannot initialize");
        return RGPU_ERR_IO;
    }
    if (tlen > RGPU_TOKEN_MAX_LEN || strncmp(token, RGPU_TOKEN_PREFIX, 3) != 0 ||
        !(dot = strchr(token + 3, '.'))) {
        rgpu_token_why(why, why_cap, "%s", "malformed lease token");
        return RGPU_ERR_BAD_MESSAGE;
    }
    body = token + 3;
    packed = malloc(tlen + 1);
    if (!packed)
        return RGPU_ERR_NOMEM;
    if (sodium_base642bin(packed, tlen, body, (size_t)(dot - body), NULL, &len, NULL,
                          RGPU_TOKEN_B64) != 0 ||
        sodium_base642bin(mac, sizeof(mac), dot + 1, strlen(dot + 1), NULL, &mac_len, NULL,
                          RGPU_TOKEN_B64) != 0 ||
        mac_len != sizeof(mac)) {
        free(packed);
        rgpu_token_why(why, why_cap, "%s", "malformed lease token");
        return RGPU_ERR_BAD_MESSAGE;
    }
    if (crypto_auth_verify(mac, packed, len, key->bytes) != 0) {
        free(packed);
        rgpu_token_why(why, why_cap, "%s", "lease token has a bad signature");
        return RGPU_ERR_REFUSED;
    }
    payload = rgpu__token_payload__unpack(NULL, len, packed);
    free(packed);
    if (!payload) {
        rgpu_token_why(why, why_cap, "%s", "signed lease token does not unpack");
        return RGPU_ERR_BAD_MESSAGE;
    }
    if (payload->expires_unix <= now_unix) {
        int64_t ago;
        if (__builtin_sub_overflow(now_unix, payload->expires_unix, &ago))
            ago = INT64_MAX;
        if (why && why_cap)
            snprintf(why, why_cap, "lease %llu expired %lld s ago",
                     (unsigned long long)payload->lease_id, (long long)ago);
        rgpu__token_payload__free_unpacked(payload, NULL);
        return RGPU_ERR_TIMEOUT;
    }
    *payload_p = payload;
    return RGPU_OK;
}

int rgpu_token_names_gpu(const Rgpu__TokenPayload *payload, const char *address, uint32_t index)
{
    for (size_t i = 0; i < payload->n_gpus; i++)
        if (strcmp(payload->gpus[i]->server, address) == 0 && payload->gpus[i]->index == index)
            return 1;
    return 0;
}

int rgpu_token_names_server(const Rgpu__TokenPayload *payload, const char *address)
{
    for (size_t i = 0; i < payload->n_gpus; i++)
        if (strcmp(payload->gpus[i]->server, address) == 0)
            return 1;
    return 0;
}

/* ---- signed scheduler requests ---- */

static void rgpu_token_request_mac(const rgpu_token_key_t *key, uint16_t type, uint32_t seq,
                                   const void *body, size_t len, const uint8_t time_le[8],
                                   uint8_t mac[crypto_auth_BYTES])
{
    crypto_auth_hmacsha512256_state st;
    uint8_t head[6] = {(uint8_t)type, (uint8_t)(type >> 8), (uint8_t)seq, (uint8_t)(seq >> 8),
                       (uint8_t)(seq >> 16), (uint8_t)(seq >> 24)};

    /* crypto_auth is HMAC-SHA-512-256; the streaming form avoids a copy. */
    crypto_auth_hmacsha512256_init(&st, key->bytes, RGPU_TOKEN_KEY_BYTES);
    crypto_auth_hmacsha512256_update(&st, head, sizeof(head));
    if (len)
        crypto_auth_hmacsha512256_update(&st, body, len);
    crypto_auth_hmacsha512256_update(&st, time_le, 8);
    crypto_auth_hmacsha512256_final(&st, mac);
}

rgpu_status_t rgpu_token_sign_request(const rgpu_token_key_t *key, uint16_t type, uint32_t seq,
                                      const void *body, size_t len, int64_t now_unix,
                                      uint8_t trailer[RGPU_REQUEST_AUTH_LEN])
{
    uint64_t t = (uint64_t)now_unix;

    if (!key || !trailer || (!body && len))
        return RGPU_ERR_INVALID_ARG;
    if (sodium_init() < 0)
        return RGPU_ERR_UNSUPPORTED;
    for (int i = 0; i < 8; i++)
        trailer[i] = (uint8_t)(t >> (8 * i));
    rgpu_token_request_mac(key, type, seq, body, len, trailer, trailer + 8);
    return RGPU_OK;
}

rgpu_status_t rgpu_token_sign_message(const rgpu_token_key_t *key, uint16_t type, uint32_t seq,
                                      const ProtobufCMessage *msg, int64_t now_unix,
                                      uint8_t trailer[RGPU_REQUEST_AUTH_LEN])
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *packed = malloc(len ? len : 1);
    rgpu_status_t st;

    if (!packed)
        return RGPU_ERR_NOMEM;
    protobuf_c_message_pack(msg, packed);
    st = rgpu_token_sign_request(key, type, seq, packed, len, now_unix, trailer);
    free(packed);
    return st;
}

rgpu_status_t rgpu_token_verify_request(const rgpu_token_key_t *key, uint16_t type, uint32_t seq,
                                        const void *body, size_t len,
                                        const uint8_t trailer[RGPU_REQUEST_AUTH_LEN],
                                        int64_t now_unix, uint32_t max_skew_s, char *why,
                                        size_t why_cap)
{
    uint8_t mac[crypto_auth_BYTES];
    uint64_t t = 0;
    int64_t skew;

    if (!key || !trailer || (!body && len))
        return RGPU_ERR_INVALID_ARG;
    if (sodium_init() < 0)
        return RGPU_ERR_UNSUPPORTED;
    rgpu_token_request_mac(key, type, seq, body, len, trailer, mac);
    if (sodium_memcmp(mac, trailer + 8, sizeof(mac)) != 0) {
        rgpu_token_why(why, why_cap, "%s", "bad signature");
        return RGPU_ERR_REFUSED;
    }
    for (int i = 0; i < 8; i++)
        t |= (uint64_t)trailer[i] << (8 * i);
    /* Both as unsigned (now is past 1970): no overflow, whatever t says. */
    {
        uint64_t now = (uint64_t)now_unix, d = t >= now ? t - now : now - t;
        skew = d > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)d;
    }
    if (skew > (int64_t)max_skew_s) {
        if (why && why_cap)
            snprintf(why, why_cap, "clock skew %lld s", (long long)skew);
        return RGPU_ERR_TIMEOUT;
    }
    return RGPU_OK;
}
