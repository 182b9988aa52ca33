/*
 * fuzz_token: lease tokens and signed scheduler requests, with a fixed
 * cluster key, on arbitrary bytes.
 *
 * The first input byte picks what the rest is:
 *   0: a lease token string for rgpu_token_verify (what rgpu-server checks
 *      in every Hello); a token that verifies must name what it names;
 *   1: a scheduler request and its 40-byte auth trailer for
 *      rgpu_token_verify_request (what rgpu-scheduler checks in every
 *      signed frame); with a random key a MAC never matches, so the
 *      interesting part is that nothing breaks on any length or time;
 *   2: a TokenPayload body: rgpu_token_sign then rgpu_token_verify must
 *      give it back (or say it expired), and a flipped character must not
 *      verify;
 *   3: a frame type, seq, times and a message body (AllocRequest,
 *      Heartbeat...): rgpu_token_sign_message then
 *      rgpu_token_verify_request over the packed body must pass within the
 *      skew, fail past it, and fail for any other type, seq or body.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_msgs.h"
#include "rgpu/token.h"

static const rgpu_token_key_t rgpu_fuzz_key = {{
    'r', 'g', 'p', 'u', '-', 'f', 'u', 'z', 'z', '-', 'k', 'e', 'y', 0, 1, 2,
    3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}};
#define RGPU_FUZZ_NOW 1700000000

static char *rgpu_fuzz_cstr(const uint8_t *p, size_t len)
{
    char *s = malloc(len + 1);

    RGPU_FUZZ_CHECK(s);
    memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

static void rgpu_fuzz_verify_token(const uint8_t *p, size_t len)
{
    char *token = rgpu_fuzz_cstr(p, len);
    Rgpu__TokenPayload *payload = NULL;
    char why[256] = "";
    rgpu_status_t st = rgpu_token_verify(&rgpu_fuzz_key, token, RGPU_FUZZ_NOW, &payload, why,
                                         sizeof(why));

    if (st == RGPU_OK) {
        RGPU_FUZZ_CHECK(payload && payload->expires_unix > RGPU_FUZZ_NOW);
        for (size_t g = 0; g < payload->n_gpus; g++) {
            RGPU_FUZZ_CHECK(rgpu_token_names_server(payload, payload->gpus[g]->server));
            RGPU_FUZZ_CHECK(rgpu_token_names_gpu(payload, payload->gpus[g]->server,
                                                 payload->gpus[g]->index));
        }
        rgpu__token_payload__free_unpacked(payload, NULL);
    } else {
        RGPU_FUZZ_CHECK(st == RGPU_ERR_BAD_MESSAGE || st == RGPU_ERR_REFUSED ||
                        st == RGPU_ERR_TIMEOUT);
        RGPU_FUZZ_CHECK(why[0] && memchr(why, '\0', sizeof(why)));
    }
    free(token);
}

static void rgpu_fuzz_verify_request(rgpu_fuzz_in_t *in)
{
    uint16_t type = rgpu_fuzz_u16(in);
    uint32_t seq = rgpu_fuzz_u32(in);
    uint32_t skew = rgpu_fuzz_u32(in);
    uint8_t trailer[RGPU_REQUEST_AUTH_LEN] = {0};
    const uint8_t *t, *body;
    size_t tlen = rgpu_fuzz_take(in, sizeof(trailer), &t);
    size_t len = rgpu_fuzz_take(in, in->left, &body);
    uint8_t *copy = malloc(len ? len : 1);
    char why[128] = "";
    rgpu_status_t st;

    RGPU_FUZZ_CHECK(copy);
    memcpy(trailer, t, tlen);
    memcpy(copy, body, len);
    st = rgpu_token_verify_request(&rgpu_fuzz_key, type, seq, copy, len, trailer, RGPU_FUZZ_NOW,
                                   skew, why, sizeof(why));
    RGPU_FUZZ_CHECK(st == RGPU_ERR_REFUSED || st == RGPU_ERR_TIMEOUT || st == RGPU_OK);
    free(copy);
}

static void rgpu_fuzz_sign_token(const uint8_t *p, size_t len)
{
    Rgpu__TokenPayload *payload = rgpu__token_payload__unpack(NULL, len, p), *back = NULL;
    uint8_t *a, *b;
    size_t alen, blen;
    char *token, why[256];
    int64_t now;
    rgpu_status_t st;

    if (!payload)
        return;
    token = rgpu_token_sign(&rgpu_fuzz_key, payload);
    RGPU_FUZZ_CHECK(token && strncmp(token, "v1.", 3) == 0);
    /* Just before it expires it verifies; at its expiry it does not. */
    now = payload->expires_unix > INT64_MIN ? payload->expires_unix - 1 : INT64_MIN;
    st = rgpu_token_verify(&rgpu_fuzz_key, token, now, &back, NULL, 0);
    if (st == RGPU_ERR_BAD_MESSAGE) {
        /* Longer than the 16 KiB a token may be, or protobuf-c's field-0
         * quirk (fuzz_frame.c): the signed bytes do not unpack again (also
         * for an expiry of INT64_MIN: unpacking comes first). */
        RGPU_FUZZ_CHECK(strlen(token) > 16384 || rgpu_fuzz_has_unknown(&payload->base));
    } else if (payload->expires_unix == INT64_MIN) {
        RGPU_FUZZ_CHECK(st == RGPU_ERR_TIMEOUT);
    } else {
        RGPU_FUZZ_CHECK(st == RGPU_OK);
        alen = rgpu__token_payload__get_packed_size(payload);
        blen = rgpu__token_payload__get_packed_size(back);
        RGPU_FUZZ_CHECK(alen == blen);
        a = malloc(alen + 1);
        b = malloc(blen + 1);
        RGPU_FUZZ_CHECK(a && b);
        rgpu__token_payload__pack(payload, a);
        rgpu__token_payload__pack(back, b);
        RGPU_FUZZ_CHECK(memcmp(a, b, alen) == 0);
        free(a);
        free(b);
        rgpu__token_payload__free_unpacked(back, NULL);
        back = NULL;
        RGPU_FUZZ_CHECK(rgpu_token_verify(&rgpu_fuzz_key, token, payload->expires_unix, &back,
                                          NULL, 0) == RGPU_ERR_TIMEOUT);
        /* At a server's clock: valid until it expires, whatever the
         * expiry (regress-token-expiry-overflow: "expired N s ago" once
         * overflowed for an expiry near INT64_MIN). */
        {
            st = rgpu_token_verify(&rgpu_fuzz_key, token, RGPU_FUZZ_NOW, &back, why, sizeof(why));
            RGPU_FUZZ_CHECK(st == (payload->expires_unix > RGPU_FUZZ_NOW ? RGPU_OK
                                                                         : RGPU_ERR_TIMEOUT));
            if (st == RGPU_OK)
                rgpu__token_payload__free_unpacked(back, NULL);
            back = NULL;
        }
        /* Any character changed: never valid. */
        {
            size_t tl = strlen(token), at = alen % tl;

            token[at] = token[at] == 'A' ? 'B' : 'A';
            st = rgpu_token_verify(&rgpu_fuzz_key, token, now, &back, NULL, 0);
            RGPU_FUZZ_CHECK(st != RGPU_OK);
        }
    }
    free(token);
    rgpu__token_payload__free_unpacked(payload, NULL);
}

static void rgpu_fuzz_sign_request(rgpu_fuzz_in_t *in)
{
    uint16_t type = rgpu_fuzz_u16(in);
    uint32_t seq = rgpu_fuzz_u32(in);
    uint8_t how = rgpu_fuzz_u8(in);
    uint32_t lo = rgpu_fuzz_u32(in), hi = rgpu_fuzz_u32(in);
    /* Near our clock, or (how & 1) any time a signer may write
     * (regress-token-request-skew-overflow: the skew once overflowed for a
     * signed time near INT64_MIN). */
    uint64_t any = (uint64_t)hi << 32 | lo;
    int64_t signed_at = how & 1 ? (int64_t)any : (int32_t)lo + (int64_t)RGPU_FUZZ_NOW;
    uint32_t skew = rgpu_fuzz_u16(in);
    const ProtobufCMessageDescriptor *desc = rgpu_fuzz_msgs[type % RGPU_FUZZ_NMSGS].desc;
    uint8_t trailer[RGPU_REQUEST_AUTH_LEN];
    const uint8_t *body;
    size_t len = rgpu_fuzz_take(in, in->left, &body), plen;
    ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, len, body);
    uint8_t *packed;
    uint64_t dist;
    rgpu_status_t st;

    if (!msg)
        return;
    RGPU_FUZZ_CHECK(rgpu_token_sign_message(&rgpu_fuzz_key, type, seq, msg, signed_at, trailer) ==
                    RGPU_OK);
    plen = protobuf_c_message_get_packed_size(msg);
    packed = malloc(plen + 1);
    RGPU_FUZZ_CHECK(packed);
    protobuf_c_message_pack(msg, packed);

    st = rgpu_token_verify_request(&rgpu_fuzz_key, type, seq, packed, plen, trailer, RGPU_FUZZ_NOW,
                                   skew, NULL, 0);
    dist = signed_at > RGPU_FUZZ_NOW ? (uint64_t)signed_at - RGPU_FUZZ_NOW
                                     : RGPU_FUZZ_NOW - (uint64_t)signed_at;
    RGPU_FUZZ_CHECK(st == (dist <= skew ? RGPU_OK : RGPU_ERR_TIMEOUT));
    /* At its own time it always passes; for another type, seq or body never. */
    RGPU_FUZZ_CHECK(rgpu_token_verify_request(&rgpu_fuzz_key, type, seq, packed, plen, trailer,
                                              signed_at, 0, NULL, 0) == RGPU_OK);
    RGPU_FUZZ_CHECK(rgpu_token_verify_request(&rgpu_fuzz_key, (uint16_t)(type + 1), seq, packed,
                                              plen, trailer, signed_at, 0, NULL, 0) ==
                    RGPU_ERR_REFUSED);
    RGPU_FUZZ_CHECK(rgpu_token_verify_request(&rgpu_fuzz_key, type, seq ^ 1, packed, plen, trailer,
                                              signed_at, 0, NULL, 0) == RGPU_ERR_REFUSED);
    if (plen) {
        packed[plen / 2] ^= 0x40;
        RGPU_FUZZ_CHECK(rgpu_token_verify_request(&rgpu_fuzz_key, type, seq, packed, plen,
                                                  trailer, signed_at, 0, NULL, 0) ==
                        RGPU_ERR_REFUSED);
    }
    free(packed);
    protobuf_c_message_free_unpacked(msg, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rgpu_fuzz_in_t in = {data, size};

    switch (rgpu_fuzz_u8(&in) & 3) {
    case 0:
        rgpu_fuzz_verify_token(in.p, in.left);
        break;
    case 1:
        rgpu_fuzz_verify_request(&in);
        break;
    case 2:
        rgpu_fuzz_sign_token(in.p, in.left);
        break;
    case 3:
        rgpu_fuzz_sign_request(&in);
        break;
    }
    return 0;
}
