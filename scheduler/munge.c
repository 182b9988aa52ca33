/*
 * libmunge under rgpu/munge.h (built with RGPU_WITH_MUNGE; munge_stub.c
 * otherwise). One munge context per call: contexts are not shared between
 * threads, and a call costs one connection to munged anyway.
 */
#include "rgpu/munge.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <munge.h>

#define RGPU_MUNGE_DEFAULT_SOCKET "/run/munge/munge.socket.2"

int rgpu_munge_supported(void)
{
    return 1;
}

static munge_ctx_t rgpu_munge_ctx(const char *socket, char *why, size_t why_cap)
{
    munge_ctx_t ctx = munge_ctx_create();

    if (!ctx) {
        if (why && why_cap)
            snprintf(why, why_cap, "cannot create a munge context: out of memory");
        return NULL;
    }
    if (socket && *socket && munge_ctx_set(ctx, MUNGE_OPT_SOCKET, socket) != EMUNGE_SUCCESS) {
        if (why && why_cap)
            snprintf(why, why_cap, "cannot use munge socket %s: %s", socket,
                     munge_ctx_strerror(ctx));
        munge_ctx_destroy(ctx);
        return NULL;
    }
    return ctx;
}

/* libmunge's words for err, with the socket when munged cannot be reached. */
static rgpu_status_t rgpu_munge_error(munge_ctx_t ctx, munge_err_t err, const char *socket,
                                      const char *what, char *why, size_t why_cap)
{
    const char *words = munge_ctx_strerror(ctx);

    if (!words)
        words = munge_strerror(err);
    if (err == EMUNGE_SOCKET) {
        if (why && why_cap)
            snprintf(why, why_cap, "munged cannot be reached at %s: %s",
                     socket && *socket ? socket : RGPU_MUNGE_DEFAULT_SOCKET, words);
        return RGPU_ERR_CONN_REFUSED;
    }
    if (why && why_cap)
        snprintf(why, why_cap, "%s: %s", what, words);
    switch (err) {
    case EMUNGE_NO_MEMORY:
        return RGPU_ERR_NOMEM;
    case EMUNGE_BAD_CRED:
    case EMUNGE_BAD_VERSION:
    case EMUNGE_BAD_CIPHER:
    case EMUNGE_BAD_MAC:
    case EMUNGE_BAD_ZIP:
    case EMUNGE_BAD_REALM:
    case EMUNGE_CRED_INVALID:
    case EMUNGE_CRED_EXPIRED:
    case EMUNGE_CRED_REWOUND:
    case EMUNGE_CRED_REPLAYED:
    case EMUNGE_CRED_UNAUTHORIZED:
    case EMUNGE_BAD_LENGTH:
        return RGPU_ERR_REFUSED;
    default:
        return RGPU_ERR_IO;
    }
}

rgpu_status_t rgpu__munge_encode(const char *socket, const void *payload, size_t len,
                                 char **cred_p, char *why, size_t why_cap)
{
    munge_ctx_t ctx = rgpu_munge_ctx(socket, why, why_cap);
    char *cred = NULL;
    munge_err_t err;
    rgpu_status_t st = RGPU_OK;

    if (!ctx)
        return RGPU_ERR_IO;
    err = munge_encode(&cred, ctx, payload, (int)len);
    if (err != EMUNGE_SUCCESS) {
        st = rgpu_munge_error(ctx, err, socket, "cannot make a MUNGE credential", why, why_cap);
        free(cred);
    } else {
        *cred_p = cred;
    }
    munge_ctx_destroy(ctx);
    return st;
}

rgpu_status_t rgpu__munge_decode(const char *socket, const char *cred, void **payload_p,
                                 size_t *len_p, rgpu_munge_identity_t *id_p, char *why,
                                 size_t why_cap)
{
    munge_ctx_t ctx = rgpu_munge_ctx(socket, why, why_cap);
    void *payload = NULL;
    int len = 0, ttl = 0;
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    time_t encoded = 0;
    munge_err_t err;
    rgpu_status_t st;

    if (!ctx)
        return RGPU_ERR_IO;
    err = munge_decode(cred, ctx, &payload, &len, &uid, &gid);
    if (err != EMUNGE_SUCCESS) {
        /* Expired, rewound and replayed credentials come with their payload. */
        free(payload);
        st = rgpu_munge_error(ctx, err, socket, "MUNGE credential refused", why, why_cap);
        munge_ctx_destroy(ctx);
        return st;
    }
    munge_ctx_get(ctx, MUNGE_OPT_ENCODE_TIME, &encoded);
    munge_ctx_get(ctx, MUNGE_OPT_TTL, &ttl);
    munge_ctx_destroy(ctx);
    id_p->uid = (uint32_t)uid;
    id_p->gid = (uint32_t)gid;
    id_p->encoded_unix = (int64_t)encoded;
    id_p->ttl_s = ttl > 0 ? (uint32_t)ttl : 0;
    *payload_p = payload;
    *len_p = len > 0 ? (size_t)len : 0;
    return RGPU_OK;
}
