/*
 * fuzz_frame: the frame header codec and every message's protobuf-c unpack,
 * as a receiver runs them on bytes from the network.
 *
 * Input: a 32-byte frame header, then body bytes. Checks:
 *   - rgpu_frame_header_decode never reads past the header and, with the
 *     server's limits and with the defaults, accepts only what fits them;
 *     a decoded header encodes back to the same 32 bytes;
 *   - the body unpacks (or not) as the message its type names (a type
 *     without one picks a message by its value, so every message is
 *     reached); an unpacked message passes protobuf_c_message_check, packs
 *     to its announced size, and packing is stable (pack, unpack, pack
 *     gives the same bytes); rgpu_frame_pack of it decodes back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_msgs.h"
#include "rgpu/frame.h"
#include "rgpu/wire.h"

/* What rgpu-server accepts by default (server/config.h: --max-body, --max-bulk). */
static const rgpu_frame_limits_t rgpu_fuzz_server_limits = {64u << 20, 16ull << 30};
/* What rgpu-scheduler accepts: a 16 MiB body, an auth trailer as bulk. */
static const rgpu_frame_limits_t rgpu_fuzz_sched_limits = {16u << 20, 40};

static void rgpu_fuzz_header(const uint8_t raw[RGPU_FRAME_HEADER_SIZE],
                             const rgpu_frame_limits_t *limits)
{
    rgpu_frame_header_t h;
    uint8_t again[RGPU_FRAME_HEADER_SIZE];
    rgpu_status_t st = rgpu_frame_header_decode(raw, limits, &h);

    if (st != RGPU_OK) {
        RGPU_FUZZ_CHECK(st == RGPU_ERR_BAD_MAGIC || st == RGPU_ERR_BAD_VERSION ||
                        st == RGPU_ERR_TOO_LARGE);
        return;
    }
    RGPU_FUZZ_CHECK(h.version == RGPU_PROTOCOL_VERSION);
    if (limits) {
        RGPU_FUZZ_CHECK(h.body_len <= limits->max_body);
        RGPU_FUZZ_CHECK(h.bulk_len <= limits->max_bulk);
    }
    rgpu_frame_header_encode(&h, again);
    RGPU_FUZZ_CHECK(memcmp(again, raw, sizeof(again)) == 0);
}

static void rgpu_fuzz_body(uint16_t type, uint64_t seq, uint32_t flags, const uint8_t *body,
                           size_t len)
{
    const ProtobufCMessageDescriptor *desc = rgpu_fuzz_msg_desc(type);
    ProtobufCMessage *msg, *again;
    uint8_t *packed, *repacked, *frame;
    size_t size, size2, flen;
    rgpu_frame_header_t h;

    if (!desc)
        desc = rgpu_fuzz_msgs[type % RGPU_FUZZ_NMSGS].desc;
    msg = protobuf_c_message_unpack(desc, NULL, len, body);
    if (!msg)
        return;
    RGPU_FUZZ_CHECK(protobuf_c_message_check(msg));
    size = protobuf_c_message_get_packed_size(msg);
    packed = malloc(size + 1);
    RGPU_FUZZ_CHECK(packed);
    RGPU_FUZZ_CHECK(protobuf_c_message_pack(msg, packed) == size);

    again = protobuf_c_message_unpack(desc, NULL, size, packed);
    if (!again) {
        /* protobuf-c 1.4 keeps an unknown field whose tag is a non-minimal
         * varint of field 0 (80 00), then packs it as 00, which it refuses.
         * Known, harmless here: the server never sends a client's message
         * back. Anything else that does not unpack again is a bug. */
        RGPU_FUZZ_CHECK(rgpu_fuzz_has_unknown(msg));
        goto out_free_packed;
    }
    size2 = protobuf_c_message_get_packed_size(again);
    RGPU_FUZZ_CHECK(size2 == size);
    repacked = malloc(size2 + 1);
    RGPU_FUZZ_CHECK(repacked);
    RGPU_FUZZ_CHECK(protobuf_c_message_pack(again, repacked) == size2);
    RGPU_FUZZ_CHECK(memcmp(packed, repacked, size) == 0);

    /* The frame a sender would make of it decodes to the same fields. */
    flen = rgpu_frame_packed_size(msg);
    RGPU_FUZZ_CHECK(flen == RGPU_FRAME_HEADER_SIZE + size);
    frame = malloc(flen);
    RGPU_FUZZ_CHECK(frame);
    RGPU_FUZZ_CHECK(rgpu_frame_pack(frame, type, seq, flags, msg, 40) == flen);
    RGPU_FUZZ_CHECK(rgpu_frame_header_decode(frame, NULL, &h) == RGPU_OK);
    RGPU_FUZZ_CHECK(h.type == type && h.seq == seq && h.flags == flags && h.body_len == size &&
                    h.bulk_len == 40);
    RGPU_FUZZ_CHECK(memcmp(frame + RGPU_FRAME_HEADER_SIZE, packed, size) == 0);

    free(frame);
    free(repacked);
    protobuf_c_message_free_unpacked(again, NULL);
out_free_packed:
    free(packed);
    protobuf_c_message_free_unpacked(msg, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t raw[RGPU_FRAME_HEADER_SIZE];
    rgpu_frame_header_t h;
    size_t body_len;

    if (size < RGPU_FRAME_HEADER_SIZE)
        return -1;  /* not kept in the corpus */
    /* A copy of exactly 32 bytes: ASan sees any read past the header. */
    memcpy(raw, data, sizeof(raw));
    rgpu_fuzz_header(raw, NULL);
    rgpu_fuzz_header(raw, &rgpu_fuzz_server_limits);
    rgpu_fuzz_header(raw, &rgpu_fuzz_sched_limits);

    /* The body: what the header announces when it decodes and the input
     * holds it, else the rest of the input. */
    body_len = size - RGPU_FRAME_HEADER_SIZE;
    if (rgpu_frame_header_decode(raw, NULL, &h) == RGPU_OK) {
        if (h.body_len < body_len)
            body_len = h.body_len;
    } else {
        h.type = (uint16_t)(raw[6] | raw[7] << 8);
        h.seq = 0;
        h.flags = 0;
    }
    /* A heap copy of exactly the body, so ASan catches an unpack reading past it. */
    {
        uint8_t *body = malloc(body_len ? body_len : 1);

        if (!body)
            return 0;
        memcpy(body, data + RGPU_FRAME_HEADER_SIZE, body_len);
        rgpu_fuzz_body(h.type, h.seq, h.flags, body, body_len);
        free(body);
    }
    return 0;
}
