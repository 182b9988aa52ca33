/*
 * Lease tokens: what the scheduler signs and rgpu-server checks offline.
 *
 *   scheduler  rgpu_token_sign(key, payload)  ─▶ "v1.<payload>.<mac>"
 *   client     passes it as Hello.lease_token (RGPU_LEASE_TOKEN)
 *   server     rgpu_token_verify(key, token, now) ─▶ payload
 *
 * payload is a packed Rgpu__TokenPayload (proto/scheduler.proto), mac is
 * libsodium's crypto_auth (HMAC-SHA-512-256) over it with the cluster key;
 * both base64url without padding. The key file holds at least 32 bytes
 * (its first 32 are the key: `head -c 32 /dev/urandom > rgpu.key`) and,
 * like munge's, must belong to the user who reads it (or root) and be
 * readable by nobody else.
 *
 * Thread safety: a loaded key is read-only; sign and verify may run on any
 * thread at once.
 */
#ifndef RGPU_TOKEN_H
#define RGPU_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "rgpu/status.h"
#include "scheduler.pb-c.h"

#define RGPU_TOKEN_KEY_BYTES 32

typedef struct {
    uint8_t bytes[RGPU_TOKEN_KEY_BYTES];
} rgpu_token_key_t;

/* Reads the key from path. Fails with RGPU_ERR_IO (cannot open or read;
 * why says errno's words), RGPU_ERR_INVALID_ARG (shorter than 32 bytes, or
 * group/other may read it, or owned by another user than us or root). why
 * (may be NULL) gets one sentence. *key_p set only on success. */
rgpu_status_t rgpu_token_key_load(const char *path, rgpu_token_key_t *key_p, char *why,
                                  size_t why_cap);

/* Signs payload. Returns a malloc'd NUL-terminated token the caller frees,
 * or NULL when out of memory. */
char *rgpu_token_sign(const rgpu_token_key_t *key, const Rgpu__TokenPayload *payload);

/* Checks token's format, signature and expiry against now_unix. On success
 * *payload_p is an unpacked message the caller frees with
 * rgpu__token_payload__free_unpacked(p, NULL). Errors: RGPU_ERR_BAD_MESSAGE
 * (malformed), RGPU_ERR_REFUSED (bad signature), RGPU_ERR_TIMEOUT
 * (expired); why gets a sentence for the client. */
rgpu_status_t rgpu_token_verify(const rgpu_token_key_t *key, const char *token, int64_t now_unix,
                                Rgpu__TokenPayload **payload_p, char *why, size_t why_cap);

/* Non-zero when payload names GPU index on server address. */
int rgpu_token_names_gpu(const Rgpu__TokenPayload *payload, const char *address, uint32_t index);

/* Non-zero when payload names any GPU on server address. */
int rgpu_token_names_server(const Rgpu__TokenPayload *payload, const char *address);

#endif
