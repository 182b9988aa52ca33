/*
 * Bulk descriptors in a request (RGPU_FRAME_F_DESC): what the client packs
 * the server unpacks unchanged, and what a hostile client sends instead is
 * refused with a sentence, never half taken.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "rgpu/wire.h"
#include "session.pb-c.h"

#define REFS_TIMEOUT 30

TestSuite(wire_refs);

static void expect_desc_eq(const rgpu_mem_desc_t *got, const rgpu_mem_desc_t *want, const char *what)
{
    cr_expect_eq(got->addr, want->addr, "%s: addr %llx", what, (unsigned long long)got->addr);
    cr_expect_eq(got->len, want->len, "%s: len %llu", what, (unsigned long long)got->len);
    cr_expect_eq(got->key, want->key, "%s: key %llx", what, (unsigned long long)got->key);
    cr_expect_eq(got->memtype, want->memtype, "%s: memtype %u", what, got->memtype);
}

Test(wire_refs, both_descriptors_round_trip, .timeout = REFS_TIMEOUT)
{
    /* The largest values every field can hold: the packed size stays within
     * RGPU_WIRE_REFS_MAX. */
    const rgpu_mem_desc_t data = {UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT32_MAX};
    const rgpu_mem_desc_t reply = {0x7f00deadbeef, 1, 0x1234, RGPU_MEMTYPE_CUDA};
    uint8_t buf[RGPU_WIRE_REFS_MAX];
    rgpu_mem_desc_t d, r;
    int has_d = -1, has_r = -1;
    char reason[256] = "";
    size_t n = rgpu_wire_refs_pack(&data, &reply, buf);

    cr_assert_gt(n, 0);
    cr_assert_leq(n, RGPU_WIRE_REFS_MAX);
    cr_assert_eq(rgpu_wire_refs_unpack(buf, n, &d, &has_d, &r, &has_r, reason, sizeof(reason)),
                 RGPU_OK, "%s", reason);
    cr_expect_eq(has_d, 1);
    cr_expect_eq(has_r, 1);
    expect_desc_eq(&d, &data, "data");
    expect_desc_eq(&r, &reply, "reply");
}

Test(wire_refs, either_descriptor_alone_round_trips, .timeout = REFS_TIMEOUT)
{
    const rgpu_mem_desc_t one = {0x1000, 4096, 77, RGPU_MEMTYPE_HOST};
    uint8_t buf[RGPU_WIRE_REFS_MAX];
    rgpu_mem_desc_t d, r;
    int has_d, has_r;
    char reason[256] = "";
    size_t n;

    /* Data only: a write's source. */
    n = rgpu_wire_refs_pack(&one, NULL, buf);
    memset(&r, 0xA5, sizeof(r));
    cr_assert_eq(rgpu_wire_refs_unpack(buf, n, &d, &has_d, &r, &has_r, reason, sizeof(reason)),
                 RGPU_OK, "%s", reason);
    cr_expect_eq(has_d, 1);
    cr_expect_eq(has_r, 0);
    expect_desc_eq(&d, &one, "data");
    cr_expect_eq(r.len, 0, "an absent descriptor is left with len 0");

    /* Reply only: a read's destination. */
    n = rgpu_wire_refs_pack(NULL, &one, buf);
    memset(&d, 0xA5, sizeof(d));
    cr_assert_eq(rgpu_wire_refs_unpack(buf, n, &d, &has_d, &r, &has_r, reason, sizeof(reason)),
                 RGPU_OK, "%s", reason);
    cr_expect_eq(has_d, 0);
    cr_expect_eq(has_r, 1);
    expect_desc_eq(&r, &one, "reply");
    cr_expect_eq(d.len, 0, "an absent descriptor is left with len 0");
}

/* Expects the bytes to be refused with a reason that says word. */
static void expect_refused(const uint8_t *in, size_t len, const char *word)
{
    rgpu_mem_desc_t d, r;
    int has_d = -1, has_r = -1;
    char reason[256] = "";

    cr_expect_eq(rgpu_wire_refs_unpack(in, len, &d, &has_d, &r, &has_r, reason, sizeof(reason)),
                 RGPU_ERR_BAD_MESSAGE, "%zu bytes that should be refused were taken", len);
    cr_expect(strstr(reason, word) != NULL, "the reason \"%s\" does not say \"%s\"", reason, word);
}

Test(wire_refs, garbage_is_refused, .timeout = REFS_TIMEOUT)
{
    uint8_t junk[40];

    /* A length-delimited field 1 claiming more bytes than there are. */
    memset(junk, 0xff, sizeof(junk));
    junk[0] = 0x0a;
    junk[1] = 0x7f;
    expect_refused(junk, sizeof(junk), "do not unpack");
    /* A varint that never ends. */
    memset(junk, 0x80, sizeof(junk));
    junk[0] = 0x08;
    expect_refused(junk, sizeof(junk), "do not unpack");
}

Test(wire_refs, too_long_is_refused_before_unpacking, .timeout = REFS_TIMEOUT)
{
    const rgpu_mem_desc_t one = {0x1000, 4096, 77, RGPU_MEMTYPE_HOST};
    uint8_t buf[2 * RGPU_WIRE_REFS_MAX];
    size_t n = rgpu_wire_refs_pack(&one, &one, buf);

    /* Valid protobuf padded with unknown fields past the limit: refused
     * for its length alone. */
    while (n <= RGPU_WIRE_REFS_MAX) {
        buf[n++] = 0x78;    /* field 15, varint 1 */
        buf[n++] = 0x01;
    }
    expect_refused(buf, n, "past the");
}

/* An empty BulkRefs (zero bytes), or one with only fields this side does
 * not know: a request marked as carrying descriptors that carries none. */
Test(wire_refs, neither_descriptor_is_refused, .timeout = REFS_TIMEOUT)
{
    const uint8_t unknown[2] = {0x78, 0x01};

    expect_refused(unknown, 0, "carries none");
    expect_refused(unknown, sizeof(unknown), "carries none");
}

Test(wire_refs, a_zero_key_or_length_is_refused, .timeout = REFS_TIMEOUT)
{
    const rgpu_mem_desc_t ok = {0x1000, 4096, 77, RGPU_MEMTYPE_HOST};
    const rgpu_mem_desc_t zero_key = {0x1000, 4096, 0, RGPU_MEMTYPE_HOST};
    const rgpu_mem_desc_t zero_len = {0x1000, 0, 77, RGPU_MEMTYPE_HOST};
    uint8_t buf[RGPU_WIRE_REFS_MAX];

    expect_refused(buf, rgpu_wire_refs_pack(&zero_key, NULL, buf), "no key");
    expect_refused(buf, rgpu_wire_refs_pack(NULL, &zero_key, buf), "no key");
    expect_refused(buf, rgpu_wire_refs_pack(&zero_len, NULL, buf), "no length");
    expect_refused(buf, rgpu_wire_refs_pack(NULL, &zero_len, buf), "no length");
    /* One good descriptor does not excuse a bad one. */
    expect_refused(buf, rgpu_wire_refs_pack(&ok, &zero_key, buf), "no key");
    expect_refused(buf, rgpu_wire_refs_pack(&zero_len, &ok, buf), "no length");
}
