#include "rgpu/htable.h"

#include <stdlib.h>

/* Fibonacci hashing spreads sequential ids (what clients allocate) well. */
static size_t rgpu_htable_slot(const rgpu_htable_t *table, uint64_t key)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) & (table->capacity - 1));
}

void rgpu_htable_init(rgpu_htable_t *table)
{
    table->slots = NULL;
    table->capacity = 0;
    table->count = 0;
}

void rgpu_htable_cleanup(rgpu_htable_t *table)
{
    free(table->slots);
    rgpu_htable_init(table);
}

static rgpu_status_t rgpu_htable_grow(rgpu_htable_t *table)
{
    size_t new_cap = table->capacity ? table->capacity * 2 : 64;
    rgpu_htable_t bigger = {calloc(new_cap, sizeof(rgpu_htable_entry_t)), new_cap, 0};

    if (!bigger.slots)
        return RGPU_ERR_NOMEM;
    for (size_t i = 0; i < table->capacity; i++) {
        if (table->slots[i].key)
            rgpu_htable_insert(&bigger, table->slots[i].key, table->slots[i].value);
    }
    free(table->slots);
    *table = bigger;
    return RGPU_OK;
}

rgpu_status_t rgpu_htable_insert(rgpu_htable_t *table, uint64_t key, void *value)
{
    size_t i;

    if (key == 0)
        return RGPU_ERR_INVALID_ARG;
    /* Keep the load factor under 3/4. */
    if ((table->count + 1) * 4 > table->capacity * 3) {
        rgpu_status_t status = rgpu_htable_grow(table);
        if (status != RGPU_OK)
            return status;
    }
    for (i = rgpu_htable_slot(table, key); table->slots[i].key; i = (i + 1) & (table->capacity - 1)) {
        if (table->slots[i].key == key)
            return RGPU_ERR_EXISTS;
    }
    table->slots[i].key = key;
    table->slots[i].value = value;
    table->count++;
    return RGPU_OK;
}

static size_t rgpu_htable_lookup(const rgpu_htable_t *table, uint64_t key)
{
    if (key == 0 || table->capacity == 0)
        return SIZE_MAX;
    for (size_t i = rgpu_htable_slot(table, key); table->slots[i].key;
         i = (i + 1) & (table->capacity - 1)) {
        if (table->slots[i].key == key)
            return i;
    }
    return SIZE_MAX;
}

void *rgpu_htable_find(const rgpu_htable_t *table, uint64_t key)
{
    size_t i = rgpu_htable_lookup(table, key);

    return i == SIZE_MAX ? NULL : table->slots[i].value;
}

void *rgpu_htable_remove(rgpu_htable_t *table, uint64_t key)
{
    size_t mask = table->capacity - 1;
    size_t hole = rgpu_htable_lookup(table, key);
    void *value;

    if (hole == SIZE_MAX)
        return NULL;
    value = table->slots[hole].value;
    /* Backward-shift deletion: move later members of the probe run into
     * the hole when their home slot does not lie between hole and them. */
    for (size_t j = (hole + 1) & mask; table->slots[j].key; j = (j + 1) & mask) {
        size_t home = rgpu_htable_slot(table, table->slots[j].key);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            table->slots[hole] = table->slots[j];
            hole = j;
        }
    }
    table->slots[hole].key = 0;
    table->slots[hole].value = NULL;
    table->count--;
    return value;
}

void rgpu_htable_foreach(const rgpu_htable_t *table,
                         void (*fn)(uint64_t key, void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < table->capacity; i++) {
        if (table->slots[i].key)
            fn(table->slots[i].key, table->slots[i].value, arg);
    }
}
