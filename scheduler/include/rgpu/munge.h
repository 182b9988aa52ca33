/*
 * MUNGE credentials that authenticate a user's request to rgpu-scheduler.
 *
 *   client (rgpu CLI, Slurm plugin)              rgpu-scheduler
 *   digest = rgpu_munge_request_digest(type, seq, body)
 *   cred = munge_encode(payload = digest)  ─── frame bulk part = cred ──▶
 *                                               munge_decode(cred) ─▶ uid, gid, payload
 *                                               payload == digest of this frame?
 *                                               credential not seen before?
 *
 * The digest is BLAKE2b-256 (libsodium's crypto_generichash) of
 * "rgpu-sched-request-v1" || le16 type || le32 seq || body: a credential
 * made for one request says nothing about another (other body, type or
 * seq). munged refuses a credential decoded twice (EMUNGE_CRED_REPLAYED)
 * or past its ttl (EMUNGE_CRED_EXPIRED); the scheduler also remembers each
 * credential it accepted until it expires (rgpu_sched_replay_*, sched_core.h).
 *
 * Built with libmunge when RGPU_WITH_MUNGE is ON (CMake detects libmunge-dev);
 * without it rgpu_munge_encode_request and rgpu_munge_decode (munge_stub.c)
 * return RGPU_ERR_UNSUPPORTED and rgpu_munge_supported() is 0. The digest and
 * the binding check are always built.
 *
 * Thread safety: every function may run on any thread; libmunge opens a
 * connection to munged per call. Encode and decode block on munged's socket.
 */
#ifndef RGPU_MUNGE_H
#define RGPU_MUNGE_H

#include <stddef.h>
#include <stdint.h>

#include "rgpu/status.h"

#define RGPU_MUNGE_DIGEST_BYTES 32
/* A credential in a frame's bulk part is longer than the 40-byte key
 * trailer (so the two never mix up) and at most this long. */
#define RGPU_MUNGE_CRED_MAX 4096
/* The environment variable naming a munged socket other than libmunge's default. */
#define RGPU_MUNGE_SOCKET_ENV "RGPU_MUNGE_SOCKET"

/* Non-zero when this build can encode and decode credentials. */
int rgpu_munge_supported(void);

/* The 32-byte digest a credential of this request carries as its payload. */
void rgpu_munge_request_digest(uint16_t type, uint32_t seq, const void *body, size_t len,
                               uint8_t digest[RGPU_MUNGE_DIGEST_BYTES]);

/* Non-zero when a frame's bulk part of len bytes is a MUNGE credential
 * (starts with "MUNGE:", longer than the key trailer, at most
 * RGPU_MUNGE_CRED_MAX). */
int rgpu_munge_is_cred(const void *bulk, size_t len);

/* RGPU_OK when payload (as decoded) is the digest of this request; else
 * RGPU_ERR_REFUSED with why ("the credential was made for another request"). */
rgpu_status_t rgpu_munge_check_binding(const void *payload, size_t payload_len, uint16_t type,
                                       uint32_t seq, const void *body, size_t len, char *why,
                                       size_t why_cap);

/* Makes a credential for this request with munged at socket (NULL or "":
 * libmunge's default, /run/munge/munge.socket.2). *cred_p is a malloc'd
 * NUL-terminated string the caller frees. Errors: RGPU_ERR_UNSUPPORTED
 * (built without MUNGE), RGPU_ERR_CONN_REFUSED (munged cannot be reached;
 * why names the socket and libmunge's words), RGPU_ERR_IO (another munge
 * error). why (may be NULL) gets one sentence. */
rgpu_status_t rgpu_munge_encode_request(const char *socket, uint16_t type, uint32_t seq,
                                        const void *body, size_t len, char **cred_p, char *why,
                                        size_t why_cap);

/* What a decoded credential says. */
typedef struct {
    uint32_t uid, gid;
    int64_t encoded_unix;       /* when it was made */
    uint32_t ttl_s;             /* it expires at encoded_unix + ttl_s */
} rgpu_munge_identity_t;

/* Decodes cred (len bytes, not NUL-terminated) with munged at socket and
 * checks that it was made for this request (rgpu_munge_check_binding).
 * Fills *id_p on success. Errors: RGPU_ERR_UNSUPPORTED (built without
 * MUNGE), RGPU_ERR_CONN_REFUSED (munged cannot be reached), RGPU_ERR_REFUSED
 * (invalid, expired, replayed, rewound, made for another request; why says
 * which), RGPU_ERR_NOMEM. */
rgpu_status_t rgpu_munge_decode_request(const char *socket, uint16_t type, uint32_t seq,
                                        const void *body, size_t len, const void *cred,
                                        size_t cred_len, rgpu_munge_identity_t *id_p, char *why,
                                        size_t why_cap);

/* ---- the one part that differs with and without libmunge ---- */

/* Encodes payload; *cred_p malloc'd. munge.c or munge_stub.c. */
rgpu_status_t rgpu__munge_encode(const char *socket, const void *payload, size_t len,
                                 char **cred_p, char *why, size_t why_cap);
/* Decodes cred (NUL-terminated); *payload_p malloc'd (may be NULL when empty). */
rgpu_status_t rgpu__munge_decode(const char *socket, const char *cred, void **payload_p,
                                 size_t *len_p, rgpu_munge_identity_t *id_p, char *why,
                                 size_t why_cap);

#endif
