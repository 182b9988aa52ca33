/*
 * What the transport library's files share and nobody else sees: the
 * instance, a registration, the message layer's entry points for links.
 */
#ifndef RGPU_TRANSPORT_INT_H
#define RGPU_TRANSPORT_INT_H

#include <pthread.h>

#include "rgpu/htable.h"
#include "rgpu/transport.h"

struct rgpu_transport {
    const rgpu_transport_ops_t *ops;
    rgpu_transport_caps_t caps;
    pthread_mutex_t lock;       /* regs, key_seq, every mem's busy */
    pthread_cond_t idle;        /* a registration stopped being served */
    rgpu_htable_t regs;         /* key -> rgpu_mem_t, the registered regions */
    uint64_t key_seq, key_secret;
    int epfd;                   /* every link's event fd (rgpu_transport_event_fd) */
    void *priv;                 /* the transport's own */
};

struct rgpu_mem {
    rgpu_transport_t *tp;
    uint8_t *addr;
    size_t len;
    uint32_t memtype;
    unsigned access;
    uint64_t key;
    unsigned busy;              /* peers' get/put being served from it */
    void *priv;                 /* the transport's own (verbs: the ibv_mr) */
};

/* The process-wide instance that links made by an ops table's plain
 * connect/listen belong to. Never closed. */
rgpu_transport_t *rgpu__transport_default(const rgpu_transport_ops_t *ops);

/* Finds the registration with key and checks that [addr, addr+len) lies in
 * it and access is allowed; marks it busy so that deregister waits. Returns
 * RGPU_OK (call rgpu__mem_release after use), RGPU_ERR_NOT_FOUND (no such
 * key; local-only registrations, RGPU_MEM_LOCAL, are never in the table),
 * RGPU_ERR_INVALID_ARG (bounds or permission). */
rgpu_status_t rgpu__mem_acquire(rgpu_transport_t *tp, uint64_t key, uint64_t addr, uint64_t len,
                                unsigned access, rgpu_mem_t **mem_p);
void rgpu__mem_release(rgpu_mem_t *mem);

/* Finishes c with status: sets it, runs the callback, then marks it done
 * (release), as struct rgpu_completion promises. */
void rgpu__complete(rgpu_completion_t *c, rgpu_status_t status);

/* The checks every transport's get/put makes before starting (the public
 * contract of rgpu_link_get/_put): local is a registration of link's
 * instance; [local_off, +len) lies in it and [remote_off, +len) in the
 * descriptor, without wrapping; len is at most caps.max_rma; offsets and
 * len are multiples of caps.rma_align. Returns RGPU_ERR_INVALID_ARG if any
 * fails. Otherwise RGPU_OK, with *done_p 1 when there is nothing to move
 * (len 0: c, if not NULL, was completed with RGPU_OK) and 0 when the
 * transport starts the transfer (after its own key test). */
rgpu_status_t rgpu__rma_check(const rgpu_link_t *link, const rgpu_mem_t *local, uint64_t local_off,
                              const rgpu_mem_desc_t *remote, uint64_t remote_off, uint64_t len,
                              rgpu_completion_t *c, int *done_p);

/* msg.c builds messages and get/put on a stream transport's own entries
 * (ops->sendv, recv, buffered, wait_readable, shutdown_recv), which no
 * caller outside transport/ uses. */

/* Sets up and tears down the message layer of a new link (msg.c). fini
 * stops what init started, fails pending operations and frees queued
 * frames; the transport calls it before closing the link's descriptor. */
rgpu_status_t rgpu__link_init(rgpu_link_t *link, rgpu_transport_t *tp, int event_fd);
void rgpu__link_fini(rgpu_link_t *link);

#endif
