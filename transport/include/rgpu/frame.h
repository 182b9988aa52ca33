/*
 * The rgpu frame: a fixed 32-byte little-endian header, a protobuf-c body,
 * then an optional raw bulk payload.
 *
 *   offset size field
 *   0      4    magic      "RGPU" (0x55504752 read as little-endian u32)
 *   4      2    version    RGPU_PROTOCOL_VERSION
 *   6      2    type       rgpu MsgType (proto/session.proto)
 *   8      4    flags      RGPU_FRAME_F_*
 *   12     4    body_len   bytes of protobuf body
 *   16     8    seq        request sequence number; replies echo it; 0: no reply wanted
 *   24     8    bulk_len   bytes of bulk after the body
 *
 * Every field is encoded byte by byte, so nothing on the wire depends on the
 * host's byte order, struct layout or pointer size.
 */
#ifndef RGPU_FRAME_H
#define RGPU_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "rgpu/status.h"

#define RGPU_FRAME_MAGIC       0x55504752u
#define RGPU_PROTOCOL_VERSION  2u
#define RGPU_FRAME_HEADER_SIZE 32u

typedef struct {
    uint16_t version;
    uint16_t type;
    uint32_t flags;
    uint32_t body_len;
    uint64_t seq;
    uint64_t bulk_len;
} rgpu_frame_header_t;

/* What a receiver accepts. Frames past these limits end the session. */
typedef struct {
    uint32_t max_body;  /* bytes of protobuf body */
    uint64_t max_bulk;  /* bytes of bulk payload */
} rgpu_frame_limits_t;

#define RGPU_FRAME_DEFAULT_MAX_BODY (64u << 20)
#define RGPU_FRAME_DEFAULT_MAX_BULK (64ull << 30)

void rgpu_frame_header_encode(const rgpu_frame_header_t *header, uint8_t out[RGPU_FRAME_HEADER_SIZE]);

/* Decodes and validates a header against the limits (NULL: defaults).
 * Returns RGPU_ERR_BAD_MAGIC, RGPU_ERR_BAD_VERSION, RGPU_ERR_TOO_LARGE, or
 * RGPU_OK with *header_p set. */
rgpu_status_t rgpu_frame_header_decode(const uint8_t in[RGPU_FRAME_HEADER_SIZE],
                                       const rgpu_frame_limits_t *limits,
                                       rgpu_frame_header_t *header_p);

/* Writes into buf (cap bytes, always terminated) a sentence for the user
 * saying what is wrong with the raw header that rgpu_frame_header_decode
 * refused with status against limits (NULL: defaults), e.g. "frame has
 * protocol version 1, this side speaks version 2". */
void rgpu_frame_header_explain(const uint8_t raw[RGPU_FRAME_HEADER_SIZE],
                               const rgpu_frame_limits_t *limits, rgpu_status_t status, char *buf,
                               size_t cap);

#endif
