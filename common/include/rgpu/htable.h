/*
 * rgpu_htable_t: a map from 64-bit object ids to pointers.
 *
 * The server keeps one per session (the session's handle table: every object
 * the client created, by the id the client gave it). Open addressing with
 * linear probing and backward-shift deletion; id 0 is reserved (never a
 * valid key). Not thread safe: its owner serializes access.
 */
#ifndef RGPU_HTABLE_H
#define RGPU_HTABLE_H

#include <stddef.h>
#include <stdint.h>

#include "rgpu/status.h"

typedef struct {
    uint64_t key;
    void *value;
} rgpu_htable_entry_t;

typedef struct {
    rgpu_htable_entry_t *slots;
    size_t capacity; /* a power of two, or 0 before the first insert */
    size_t count;
} rgpu_htable_t;

void rgpu_htable_init(rgpu_htable_t *table);
/* Frees the table's storage, not the values. */
void rgpu_htable_cleanup(rgpu_htable_t *table);

/* RGPU_ERR_INVALID_ARG for key 0, RGPU_ERR_EXISTS if the key is present,
 * RGPU_ERR_NOMEM if growing failed. */
rgpu_status_t rgpu_htable_insert(rgpu_htable_t *table, uint64_t key, void *value);
/* The value, or NULL when absent. */
void *rgpu_htable_find(const rgpu_htable_t *table, uint64_t key);
/* Removes the key and returns its value, or NULL when absent. */
void *rgpu_htable_remove(rgpu_htable_t *table, uint64_t key);

/* Calls fn on every entry; fn must not modify the table. */
void rgpu_htable_foreach(const rgpu_htable_t *table,
                         void (*fn)(uint64_t key, void *value, void *arg), void *arg);

#endif
