/* The frame codec: 32-byte little-endian header, protobuf body, bulk. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rgpu/frame.h"
#include "rgpu/wire.h"
#include "session.pb-c.h"

TestSuite(frame);

static const rgpu_frame_header_t sample = {
    .version = RGPU_PROTOCOL_VERSION,
    .type = 0xBEEF,
    .flags = 0x01020304u,
    .body_len = 0x00A0B0C0u,
    .seq = 0x1122334455667788ull,
    .bulk_len = 0x0000000F00000001ull,
};

Test(frame, header_bytes_are_little_endian_field_by_field)
{
    static const uint8_t want[RGPU_FRAME_HEADER_SIZE] = {
        'R', 'G', 'P', 'U',                              /* magic 0x55504752 */
        (uint8_t)RGPU_PROTOCOL_VERSION, 0x00,            /* version */
        0xEF, 0xBE,                                      /* type */
        0x04, 0x03, 0x02, 0x01,                          /* flags */
        0xC0, 0xB0, 0xA0, 0x00,                          /* body_len */
        0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,  /* seq */
        0x01, 0x00, 0x00, 0x00, 0x0F, 0x00, 0x00, 0x00,  /* bulk_len */
    };
    uint8_t out[RGPU_FRAME_HEADER_SIZE];

    cr_assert_eq(RGPU_FRAME_HEADER_SIZE, 32);
    memset(out, 0xAA, sizeof(out));
    rgpu_frame_header_encode(&sample, out);
    cr_expect_arr_eq(out, want, sizeof(want));
}

Test(frame, encode_decode_round_trip)
{
    uint8_t raw[RGPU_FRAME_HEADER_SIZE];
    rgpu_frame_limits_t roomy = {UINT32_MAX, UINT64_MAX};
    rgpu_frame_header_t h;

    rgpu_frame_header_encode(&sample, raw);
    cr_assert_eq(rgpu_frame_header_decode(raw, &roomy, &h), RGPU_OK);
    cr_expect_eq(h.version, sample.version);
    cr_expect_eq(h.type, sample.type);
    cr_expect_eq(h.flags, sample.flags);
    cr_expect_eq(h.body_len, sample.body_len);
    cr_expect_eq(h.seq, sample.seq);
    cr_expect_eq(h.bulk_len, sample.bulk_len);
}

Test(frame, decode_accepts_any_type_the_session_decides)
{
    rgpu_frame_header_t in = {.version = RGPU_PROTOCOL_VERSION, .type = 0xFFFF}, h;
    uint8_t raw[RGPU_FRAME_HEADER_SIZE];

    rgpu_frame_header_encode(&in, raw);
    cr_assert_eq(rgpu_frame_header_decode(raw, NULL, &h), RGPU_OK);
    cr_expect_eq(h.type, 0xFFFF);
}

Test(frame, bad_magic)
{
    uint8_t raw[RGPU_FRAME_HEADER_SIZE];
    rgpu_frame_header_t h = {.type = 77};

    rgpu_frame_header_encode(&sample, raw);
    raw[0] = 'X';
    cr_expect_eq(rgpu_frame_header_decode(raw, NULL, &h), RGPU_ERR_BAD_MAGIC);
    cr_expect_eq(h.type, 77, "the out-parameter was written on failure");

    /* Someone speaking HTTP to the server. */
    memcpy(raw, "GET /metrics HTTP/1.1\r\nHost: x\r\n", 32);
    cr_expect_eq(rgpu_frame_header_decode(raw, NULL, &h), RGPU_ERR_BAD_MAGIC);
    /* Big-endian magic is not ours either. */
    rgpu_frame_header_encode(&sample, raw);
    memcpy(raw, "UPGR", 4);
    cr_expect_eq(rgpu_frame_header_decode(raw, NULL, &h), RGPU_ERR_BAD_MAGIC);
}

Test(frame, bad_version)
{
    static const uint16_t versions[] = {0, RGPU_PROTOCOL_VERSION + 1, 0x0100, 0xFFFF};
    rgpu_frame_header_t in = sample, h = {.type = 77};
    uint8_t raw[RGPU_FRAME_HEADER_SIZE];

    in.body_len = 16;
    in.bulk_len = 0;
    for (size_t i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
        in.version = versions[i];
        rgpu_frame_header_encode(&in, raw);
        cr_expect_eq(rgpu_frame_header_decode(raw, NULL, &h), RGPU_ERR_BAD_VERSION, "version %u",
                     versions[i]);
    }
    cr_expect_eq(h.type, 77, "the out-parameter was written on failure");
}

Test(frame, limits_are_inclusive)
{
    rgpu_frame_limits_t lim = {1000, 5000};
    rgpu_frame_header_t in = {.version = RGPU_PROTOCOL_VERSION, .type = 1}, h;
    uint8_t raw[RGPU_FRAME_HEADER_SIZE];

    in.body_len = 1000;
    in.bulk_len = 5000;
    rgpu_frame_header_encode(&in, raw);
    cr_expect_eq(rgpu_frame_header_decode(raw, &lim, &h), RGPU_OK);

    in.body_len = 1001;
    rgpu_frame_header_encode(&in, raw);
    cr_expect_eq(rgpu_frame_header_decode(raw, &lim, &h), RGPU_ERR_TOO_LARGE);

    in.body_len = 1000;
    in.bulk_len = 5001;
    rgpu_frame_header_encode(&in, raw);
    cr_expect_eq(rgpu_frame_header_decode(raw, &lim, &h), RGPU_ERR_TOO_LARGE);
}

Test(frame, default_limits_refuse_absurd_lengths)
{
    rgpu_frame_header_t in = {.version = RGPU_PROTOCOL_VERSION, .type = 1}, h;
    uint8_t raw[RGPU_FRAME_HEADER_SIZE];

    in.body_len = RGPU_FRAME_DEFAULT_MAX_BODY;
    rgpu_frame_header_encode(&in, raw);
    cr_expect_eq(rgpu_frame_header_decode(raw, NULL, &h), RGPU_OK);
    in.body_len = RGPU_FRAME_DEFAULT_MAX_BODY + 1;
    rgpu_frame_header_encode(&in, raw);
    cr_expect_eq(rgpu_frame_header_decode(raw, NULL, &h), RGPU_ERR_TOO_LARGE);
    in.body_len = UINT32_MAX;
    rgpu_frame_header_encode(&in, raw);
    cr_expect_eq(rgpu_frame_header_decode(raw, NULL, &h), RGPU_ERR_TOO_LARGE);
    in.body_len = 0;
    in.bulk_len = RGPU_FRAME_DEFAULT_MAX_BULK + 1;
    rgpu_frame_header_encode(&in, raw);
    cr_expect_eq(rgpu_frame_header_decode(raw, NULL, &h), RGPU_ERR_TOO_LARGE);
    in.bulk_len = UINT64_MAX;
    rgpu_frame_header_encode(&in, raw);
    cr_expect_eq(rgpu_frame_header_decode(raw, NULL, &h), RGPU_ERR_TOO_LARGE);
}

/* What a user reads when a header is refused: the bytes, the versions, the
 * sizes and their limits. */
Test(frame, explain_says_what_is_wrong_with_a_header)
{
    rgpu_frame_header_t in = {.version = RGPU_PROTOCOL_VERSION, .type = 7, .body_len = 11,
                              .bulk_len = 5000000000ull};
    rgpu_frame_limits_t limits = {10, 4096};
    uint8_t raw[RGPU_FRAME_HEADER_SIZE];
    char buf[256], want[256];
    rgpu_frame_header_t h;

    rgpu_frame_header_encode(&in, raw);
    cr_assert_eq(rgpu_frame_header_decode(raw, &limits, &h), RGPU_ERR_TOO_LARGE);
    rgpu_frame_header_explain(raw, &limits, RGPU_ERR_TOO_LARGE, buf, sizeof(buf));
    cr_expect_str_eq(buf, "frame of type 7 too large: body 11 bytes (limit 10), bulk 5000000000 "
                          "bytes (limit 4096)");
    rgpu_frame_header_explain(raw, NULL, RGPU_ERR_TOO_LARGE, buf, sizeof(buf));
    cr_expect(strstr(buf, "(limit 67108864)") != NULL, "default limits: \"%s\"", buf);

    in.version = RGPU_PROTOCOL_VERSION - 1;
    rgpu_frame_header_encode(&in, raw);
    cr_assert_eq(rgpu_frame_header_decode(raw, NULL, &h), RGPU_ERR_BAD_VERSION);
    rgpu_frame_header_explain(raw, NULL, RGPU_ERR_BAD_VERSION, buf, sizeof(buf));
    snprintf(want, sizeof(want), "frame has protocol version %u, this side speaks version %u",
             RGPU_PROTOCOL_VERSION - 1, RGPU_PROTOCOL_VERSION);
    cr_expect_str_eq(buf, want);

    memcpy(raw, "GET ", 4);
    cr_assert_eq(rgpu_frame_header_decode(raw, NULL, &h), RGPU_ERR_BAD_MAGIC);
    rgpu_frame_header_explain(raw, NULL, RGPU_ERR_BAD_MAGIC, buf, sizeof(buf));
    cr_expect(strncmp(buf, "not an rgpu frame: bad magic 47 45 54 20", 40) == 0, "\"%s\"", buf);

    /* Any other status still gets words; a short buffer is cut, terminated. */
    rgpu_frame_header_explain(raw, NULL, RGPU_ERR_IO, buf, sizeof(buf));
    cr_expect(strncmp(buf, "bad frame header: ", 18) == 0, "\"%s\"", buf);
    memset(buf, 'x', sizeof(buf));
    rgpu_frame_header_explain(raw, NULL, RGPU_ERR_BAD_MAGIC, buf, 8);
    cr_expect_str_eq(buf, "not an ");
}

/* A Hello with every field set; client_pid last and multi-byte, so cutting
 * the body short always breaks a field. */
static Rgpu__Hello make_hello(void)
{
    Rgpu__Hello hello = RGPU__HELLO__INIT;

    hello.protocol_version = RGPU_PROTOCOL_VERSION;
    hello.lease_token = "token-abc";
    hello.client_arch = "aarch64";
    hello.api = RGPU__API_FAMILY__API_OPENCL;
    hello.client_host = "compute-17";
    hello.client_pid = 4000000;
    return hello;
}

Test(frame, pack_then_decode_header_and_unpack_body)
{
    Rgpu__Hello hello = make_hello(), *back;
    size_t need = rgpu_frame_packed_size(&hello.base), len;
    uint8_t *buf = malloc(need);
    rgpu_frame_header_t h;

    cr_assert_not_null(buf);
    cr_expect_eq(need, RGPU_FRAME_HEADER_SIZE + rgpu__hello__get_packed_size(&hello));
    len = rgpu_frame_pack(buf, RGPU__MSG_TYPE__MSG_HELLO, 9, 0x5, &hello.base, 12345);
    cr_assert_eq(len, need);
    cr_assert_eq(rgpu_frame_header_decode(buf, NULL, &h), RGPU_OK);
    cr_expect_eq(h.type, RGPU__MSG_TYPE__MSG_HELLO);
    cr_expect_eq(h.seq, 9);
    cr_expect_eq(h.flags, 0x5);
    cr_expect_eq(h.version, RGPU_PROTOCOL_VERSION);
    cr_expect_eq(h.body_len, need - RGPU_FRAME_HEADER_SIZE);
    cr_expect_eq(h.bulk_len, 12345);

    back = rgpu__hello__unpack(NULL, h.body_len, buf + RGPU_FRAME_HEADER_SIZE);
    cr_assert_not_null(back);
    cr_expect_eq(back->protocol_version, RGPU_PROTOCOL_VERSION);
    cr_expect_str_eq(back->lease_token, "token-abc");
    cr_expect_str_eq(back->client_arch, "aarch64");
    cr_expect_eq(back->api, RGPU__API_FAMILY__API_OPENCL);
    cr_expect_str_eq(back->client_host, "compute-17");
    cr_expect_eq(back->client_pid, 4000000);
    rgpu__hello__free_unpacked(back, NULL);
    free(buf);
}

Test(frame, pack_without_a_message_is_a_bare_header)
{
    uint8_t buf[RGPU_FRAME_HEADER_SIZE];
    rgpu_frame_header_t h;

    cr_assert_eq(rgpu_frame_packed_size(NULL), RGPU_FRAME_HEADER_SIZE);
    cr_assert_eq(rgpu_frame_pack(buf, RGPU__MSG_TYPE__MSG_GOODBYE, 0, 0, NULL, 0),
                 RGPU_FRAME_HEADER_SIZE);
    cr_assert_eq(rgpu_frame_header_decode(buf, NULL, &h), RGPU_OK);
    cr_expect_eq(h.body_len, 0);
    cr_expect_eq(h.bulk_len, 0);
    cr_expect_eq(h.type, RGPU__MSG_TYPE__MSG_GOODBYE);
}

Test(frame, truncated_or_garbage_body_does_not_unpack)
{
    Rgpu__Hello hello = make_hello();
    size_t need = rgpu_frame_packed_size(&hello.base);
    uint8_t *buf = malloc(need), junk[24];
    size_t body_len;

    cr_assert_not_null(buf);
    body_len = rgpu_frame_pack(buf, RGPU__MSG_TYPE__MSG_HELLO, 1, 0, &hello.base, 0) -
               RGPU_FRAME_HEADER_SIZE;
    /* Cut inside the last (3-byte varint) field, and inside the first string. */
    cr_expect_null(rgpu__hello__unpack(NULL, body_len - 1, buf + RGPU_FRAME_HEADER_SIZE));
    cr_expect_null(rgpu__hello__unpack(NULL, 5, buf + RGPU_FRAME_HEADER_SIZE));
    memset(junk, 0xFF, sizeof(junk));
    cr_expect_null(rgpu__hello__unpack(NULL, sizeof(junk), junk));
    free(buf);
}
