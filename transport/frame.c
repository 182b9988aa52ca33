#include "rgpu/frame.h"

#include <endian.h>
#include <stdio.h>
#include <string.h>

/* Little-endian fields by memcpy and the byte-order macros: one load or
 * store each, where byte-at-a-time loops cost about 200 instructions per
 * header, on every message both ways. */
static void rgpu_put_le16(uint8_t *p, uint16_t v)
{
    v = htole16(v);
    memcpy(p, &v, sizeof(v));
}

static void rgpu_put_le32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, sizeof(v));
}

static void rgpu_put_le64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, sizeof(v));
}

static uint16_t rgpu_get_le16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return le16toh(v);
}

static uint32_t rgpu_get_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return le32toh(v);
}

static uint64_t rgpu_get_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return le64toh(v);
}

void rgpu_frame_header_encode(const rgpu_frame_header_t *header, uint8_t out[RGPU_FRAME_HEADER_SIZE])
{
    rgpu_put_le32(out + 0, RGPU_FRAME_MAGIC);
    rgpu_put_le16(out + 4, header->version);
    rgpu_put_le16(out + 6, header->type);
    rgpu_put_le32(out + 8, header->flags);
    rgpu_put_le32(out + 12, header->body_len);
    rgpu_put_le64(out + 16, header->seq);
    rgpu_put_le64(out + 24, header->bulk_len);
}

rgpu_status_t rgpu_frame_header_decode(const uint8_t in[RGPU_FRAME_HEADER_SIZE],
                                       const rgpu_frame_limits_t *limits,
                                       rgpu_frame_header_t *header_p)
{
    static const rgpu_frame_limits_t defaults = {RGPU_FRAME_DEFAULT_MAX_BODY,
                                                 RGPU_FRAME_DEFAULT_MAX_BULK};
    rgpu_frame_header_t h;

    if (!limits)
        limits = &defaults;
    if (rgpu_get_le32(in) != RGPU_FRAME_MAGIC)
        return RGPU_ERR_BAD_MAGIC;
    h.version = rgpu_get_le16(in + 4);
    h.type = rgpu_get_le16(in + 6);
    h.flags = rgpu_get_le32(in + 8);
    h.body_len = rgpu_get_le32(in + 12);
    h.seq = rgpu_get_le64(in + 16);
    h.bulk_len = rgpu_get_le64(in + 24);
    if (h.version != RGPU_PROTOCOL_VERSION)
        return RGPU_ERR_BAD_VERSION;
    if (h.body_len > limits->max_body || h.bulk_len > limits->max_bulk)
        return RGPU_ERR_TOO_LARGE;
    *header_p = h;
    return RGPU_OK;
}

void rgpu_frame_header_explain(const uint8_t raw[RGPU_FRAME_HEADER_SIZE],
                               const rgpu_frame_limits_t *limits, rgpu_status_t status, char *buf,
                               size_t cap)
{
    static const rgpu_frame_limits_t defaults = {RGPU_FRAME_DEFAULT_MAX_BODY,
                                                 RGPU_FRAME_DEFAULT_MAX_BULK};

    if (!cap)
        return;
    if (!limits)
        limits = &defaults;
    switch (status) {
    case RGPU_ERR_BAD_MAGIC:
        snprintf(buf, cap, "not an rgpu frame: bad magic %02x %02x %02x %02x (is the peer an "
                 "rgpu program?)", raw[0], raw[1], raw[2], raw[3]);
        break;
    case RGPU_ERR_BAD_VERSION:
        snprintf(buf, cap, "frame has protocol version %u, this side speaks version %u",
                 (unsigned)rgpu_get_le16(raw + 4), RGPU_PROTOCOL_VERSION);
        break;
    case RGPU_ERR_TOO_LARGE:
        snprintf(buf, cap, "frame of type %u too large: body %llu bytes (limit %u), bulk %llu "
                 "bytes (limit %llu)", (unsigned)rgpu_get_le16(raw + 6),
                 (unsigned long long)rgpu_get_le32(raw + 12), limits->max_body,
                 (unsigned long long)rgpu_get_le64(raw + 24),
                 (unsigned long long)limits->max_bulk);
        break;
    default:
        snprintf(buf, cap, "bad frame header: %s", rgpu_status_str(status));
        break;
    }
}
