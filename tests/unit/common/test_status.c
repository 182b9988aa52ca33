/* rgpu_status_t: one X-macro list, codes in ranges, a string for each. */
#include <criterion/criterion.h>
#include <string.h>

#include "rgpu/status.h"

static const struct {
    rgpu_status_t status;
    const char *name;
} all[] = {
#define RGPU_TEST_ENTRY(name, value, str) {name, #name},
    RGPU_STATUS_LIST(RGPU_TEST_ENTRY)
#undef RGPU_TEST_ENTRY
};
#define N_STATUS (sizeof(all) / sizeof(all[0]))

TestSuite(status);

Test(status, ok_is_zero_and_errors_are_negative)
{
    cr_expect_eq(RGPU_OK, 0);
    for (size_t i = 0; i < N_STATUS; i++) {
        if (all[i].status != RGPU_OK)
            cr_expect_lt(all[i].status, 0, "%s is not negative", all[i].name);
    }
}

Test(status, codes_are_unique)
{
    for (size_t i = 0; i < N_STATUS; i++)
        for (size_t j = i + 1; j < N_STATUS; j++)
            cr_expect_neq(all[i].status, all[j].status, "%s and %s share a code", all[i].name,
                          all[j].name);
}

Test(status, every_status_has_its_own_string)
{
    for (size_t i = 0; i < N_STATUS; i++) {
        const char *s = rgpu_status_str(all[i].status);
        cr_assert_not_null(s);
        cr_expect_gt(strlen(s), 0, "%s has an empty string", all[i].name);
        cr_expect_str_neq(s, "unknown status", "%s has no string", all[i].name);
        for (size_t j = 0; j < i; j++)
            cr_expect_str_neq(s, rgpu_status_str(all[j].status), "%s and %s read the same",
                              all[i].name, all[j].name);
    }
}

Test(status, unknown_codes_have_a_string_too)
{
    cr_expect_str_eq(rgpu_status_str((rgpu_status_t)-9999), "unknown status");
    cr_expect_str_eq(rgpu_status_str((rgpu_status_t)12345), "unknown status");
}

/* The ranges are part of the contract: callers test "is this a link error". */
Test(status, codes_sit_in_their_ranges)
{
    for (size_t i = 0; i < N_STATUS; i++) {
        int v = all[i].status;
        if (v == 0)
            continue;
        cr_expect(v <= -1 && v >= -299, "%s = %d is outside every range", all[i].name, v);
    }
    cr_expect(RGPU_ERR_NOMEM > -100 && RGPU_ERR_EXISTS > -100);
    cr_expect(RGPU_ERR_IO <= -100 && RGPU_ERR_IO > -200);
    cr_expect(RGPU_ERR_CONN_REFUSED <= -100 && RGPU_ERR_CONN_REFUSED > -200);
    cr_expect(RGPU_ERR_CONN_CLOSED <= -100 && RGPU_ERR_CONN_CLOSED > -200);
    cr_expect(RGPU_ERR_TIMEOUT <= -100 && RGPU_ERR_TIMEOUT > -200);
    cr_expect(RGPU_ERR_ADDRESS <= -100 && RGPU_ERR_ADDRESS > -200);
    cr_expect(RGPU_ERR_BAD_MAGIC <= -200 && RGPU_ERR_BAD_MAGIC > -300);
    cr_expect(RGPU_ERR_BAD_VERSION <= -200 && RGPU_ERR_BAD_VERSION > -300);
    cr_expect(RGPU_ERR_TOO_LARGE <= -200 && RGPU_ERR_TOO_LARGE > -300);
    cr_expect(RGPU_ERR_BAD_MESSAGE <= -200 && RGPU_ERR_BAD_MESSAGE > -300);
    cr_expect(RGPU_ERR_UNKNOWN_TYPE <= -200 && RGPU_ERR_UNKNOWN_TYPE > -300);
}
