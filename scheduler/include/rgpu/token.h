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

/* ---- signed scheduler requests ----
 *
 * A request frame to rgpu-scheduler may carry, as its bulk part, a 40-byte
 * auth trailer that proves the sender holds the cluster key:
 *
 *   trailer = le64 unix time || mac[32]
 *   mac     = crypto_auth(key, le16 type || le32 seq || body || le64 unix time)
 *
 * type is the frame's MsgType, seq the low 32 bits of the frame's seq, body
 * the packed protobuf body. The scheduler checks the MAC and that the time
 * is within max_skew_s of its clock. (A replay inside that window repeats
 * an idempotent request: register, heartbeat, drain, release, alloc by job
 * id all are.) */
#define RGPU_REQUEST_AUTH_LEN 40

/* Fills trailer for a request of type type and seq, body len bytes, signed
 * at now_unix. RGPU_ERR_INVALID_ARG when key or trailer is NULL, or body
 * is NULL with len > 0. */
rgpu_status_t rgpu_token_sign_request(const rgpu_token_key_t *key, uint16_t type, uint32_t seq,
                                      const void *body, size_t len, int64_t now_unix,
                                      uint8_t trailer[RGPU_REQUEST_AUTH_LEN]);

/* rgpu_token_sign_request over msg packed (the bytes rgpu_wire_send
 * sends as the frame's body). RGPU_ERR_NOMEM when packing cannot get memory. */
rgpu_status_t rgpu_token_sign_message(const rgpu_token_key_t *key, uint16_t type, uint32_t seq,
                                      const ProtobufCMessage *msg, int64_t now_unix,
                                      uint8_t trailer[RGPU_REQUEST_AUTH_LEN]);

/* Checks a trailer made by rgpu_token_sign_request. RGPU_ERR_REFUSED: bad
 * signature ("bad signature"); RGPU_ERR_TIMEOUT: its time is more than
 * max_skew_s from now_unix ("clock skew 75 s"). why (may be NULL) gets the
 * words. */
rgpu_status_t rgpu_token_verify_request(const rgpu_token_key_t *key, uint16_t type, uint32_t seq,
                                        const void *body, size_t len,
                                        const uint8_t trailer[RGPU_REQUEST_AUTH_LEN],
                                        int64_t now_unix, uint32_t max_skew_s, char *why,
                                        size_t why_cap);

/* Non-zero when payload names GPU index on server address. */
int rgpu_token_names_gpu(const Rgpu__TokenPayload *payload, const char *address, uint32_t index);

/* Non-zero when payload names any GPU on server address. */
int rgpu_token_names_server(const Rgpu__TokenPayload *payload, const char *address);

#endif
