/* rgpu_htable_t: the per-session handle table. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>

#include "rgpu/htable.h"

static rgpu_htable_t table;

static void setup(void)
{
    rgpu_htable_init(&table);
}

static void teardown(void)
{
    rgpu_htable_cleanup(&table);
}

TestSuite(htable, .init = setup, .fini = teardown);

static void *val(uint64_t key)
{
    return (void *)(uintptr_t)(key * 3 + 1);
}

Test(htable, empty_table_finds_nothing)
{
    cr_expect_null(rgpu_htable_find(&table, 1));
    cr_expect_null(rgpu_htable_remove(&table, 1));
    cr_expect_eq(table.count, 0);
}

Test(htable, insert_find_remove)
{
    cr_assert_eq(rgpu_htable_insert(&table, 42, val(42)), RGPU_OK);
    cr_expect_eq(rgpu_htable_find(&table, 42), val(42));
    cr_expect_null(rgpu_htable_find(&table, 43));
    cr_expect_eq(table.count, 1);
    cr_expect_eq(rgpu_htable_remove(&table, 42), val(42));
    cr_expect_null(rgpu_htable_find(&table, 42));
    cr_expect_null(rgpu_htable_remove(&table, 42));
    cr_expect_eq(table.count, 0);
}

Test(htable, key_zero_is_reserved)
{
    cr_expect_eq(rgpu_htable_insert(&table, 0, val(0)), RGPU_ERR_INVALID_ARG);
    cr_expect_null(rgpu_htable_find(&table, 0));
    cr_expect_eq(table.count, 0);
}

Test(htable, duplicate_key_is_refused_and_keeps_the_first_value)
{
    cr_assert_eq(rgpu_htable_insert(&table, 7, val(7)), RGPU_OK);
    cr_expect_eq(rgpu_htable_insert(&table, 7, val(8)), RGPU_ERR_EXISTS);
    cr_expect_eq(rgpu_htable_find(&table, 7), val(7));
    cr_expect_eq(table.count, 1);
}

Test(htable, grows_past_many_sequential_ids)
{
    const uint64_t n = 100000;

    for (uint64_t k = 1; k <= n; k++)
        cr_assert_eq(rgpu_htable_insert(&table, k, val(k)), RGPU_OK, "insert %llu",
                     (unsigned long long)k);
    cr_expect_eq(table.count, n);
    cr_expect_geq(table.capacity * 3, table.count * 4, "load factor over 3/4");
    for (uint64_t k = 1; k <= n; k++)
        cr_assert_eq(rgpu_htable_find(&table, k), val(k), "find %llu", (unsigned long long)k);
    cr_expect_null(rgpu_htable_find(&table, n + 1));
}

Test(htable, large_and_sparse_keys)
{
    uint64_t keys[] = {UINT64_MAX, UINT64_MAX - 1, 1ull << 63, 0x9E3779B97F4A7C15ull, 1ull << 32, 3};

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        cr_assert_eq(rgpu_htable_insert(&table, keys[i], val(i)), RGPU_OK);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        cr_expect_eq(rgpu_htable_find(&table, keys[i]), val(i));
}

/* Random inserts and removes against a plain array model: catches a broken
 * backward-shift deletion, which loses entries that sit past a hole. */
Test(htable, random_operations_match_a_model)
{
    enum { KEYS = 4096, OPS = 200000 };
    static void *model[KEYS];
    size_t live = 0;
    unsigned seed = 12345;

    for (int op = 0; op < OPS; op++) {
        uint64_t k = (uint64_t)(rand_r(&seed) % (KEYS - 1)) + 1;
        if (rand_r(&seed) % 2) {
            rgpu_status_t s = rgpu_htable_insert(&table, k, val(k));
            if (model[k]) {
                cr_assert_eq(s, RGPU_ERR_EXISTS);
            } else {
                cr_assert_eq(s, RGPU_OK);
                model[k] = val(k);
                live++;
            }
        } else {
            cr_assert_eq(rgpu_htable_remove(&table, k), model[k], "remove %llu at op %d",
                         (unsigned long long)k, op);
            if (model[k])
                live--;
            model[k] = NULL;
        }
        cr_assert_eq(table.count, live);
    }
    for (uint64_t k = 1; k < KEYS; k++)
        cr_assert_eq(rgpu_htable_find(&table, k), model[k], "final find %llu",
                     (unsigned long long)k);
}

static void count_entries(uint64_t key, void *value, void *arg)
{
    uint64_t *sums = arg;

    sums[0]++;
    sums[1] += key;
    cr_expect_eq(value, val(key));
}

Test(htable, foreach_visits_every_entry_once)
{
    uint64_t sums[2] = {0, 0};

    for (uint64_t k = 1; k <= 1000; k++)
        cr_assert_eq(rgpu_htable_insert(&table, k, val(k)), RGPU_OK);
    for (uint64_t k = 2; k <= 1000; k += 2)
        rgpu_htable_remove(&table, k);
    rgpu_htable_foreach(&table, count_entries, sums);
    cr_expect_eq(sums[0], 500);
    cr_expect_eq(sums[1], 500ull * 500ull); /* 1 + 3 + ... + 999 */
}

Test(htable, cleanup_leaves_a_reusable_table)
{
    cr_assert_eq(rgpu_htable_insert(&table, 5, val(5)), RGPU_OK);
    rgpu_htable_cleanup(&table);
    cr_expect_eq(table.count, 0);
    cr_expect_null(rgpu_htable_find(&table, 5));
    cr_expect_eq(rgpu_htable_insert(&table, 5, val(6)), RGPU_OK);
    cr_expect_eq(rgpu_htable_find(&table, 5), val(6));
}
