/*
 * A client of rgpu-scheduler: one request, one reply, bounded in time, so
 * a scheduler that is silent, or stalls halfway through its reply, cannot
 * hang the caller (the rgpu CLI, the Slurm plugin inside slurmstepd): the
 * connect gets timeout_ms, and the request and its whole reply get
 * timeout_ms more (sched_client.c says what bounds each step).
 *
 *   rgpu_sched_client_t c = {.addr = "10.0.0.1:7080", .timeout_ms = 10000};
 *   Rgpu__LeaseReply *r = rgpu_sched_call(&c, RGPU__MSG_TYPE__MSG_SCHED_ALLOC, &req.base,
 *                                         RGPU__MSG_TYPE__MSG_SCHED_LEASE_REPLY,
 *                                         &rgpu__lease_reply__descriptor, err, sizeof(err));
 *
 * On failure err gets one line naming the scheduler, e.g.
 * "scheduler 10.0.0.1:7080: connection refused" or
 * "scheduler 10.0.0.1:7080: no reply within 10 s".
 *
 * Signing: with a cluster key every request carries the auth trailer of
 * rgpu_token_sign_request (rgpu/token.h) as the frame's bulk part. A
 * scheduler started with --key requires it on requests naming a Slurm job
 * (and on every request with --auth key).
 *
 * MUNGE: without a key, with munge set, every request carries a MUNGE
 * credential made for it (rgpu/munge.h) as its bulk part instead, so a
 * scheduler with --auth munge knows its user. When none can be made
 * (munged not running, a build without MUNGE) the request goes without one
 * and munge_error (when not NULL) says why; "" when a credential went. The
 * credential is made before connecting, bounded by libmunge's own socket
 * timeouts rather than timeout_ms.
 *
 * Thread safety: a client struct is read-only during a call; calls on
 * different threads are independent (each opens its own connection).
 */
#ifndef RGPU_SCHED_CLIENT_H
#define RGPU_SCHED_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "rgpu/token.h"

#define RGPU_SCHED_DEFAULT_ADDR "127.0.0.1:7080"
#define RGPU_SCHED_DEFAULT_TIMEOUT_MS 10000
/* The cluster key the CLI and the Slurm plugin use when none is named. */
#define RGPU_SCHED_DEFAULT_KEY "/etc/rgpu/cluster.key"

typedef struct {
    const char *addr;             /* "host:port" */
    int timeout_ms;               /* connect, then the send and the whole reply; <= 0: default */
    const rgpu_token_key_t *key;  /* NULL: requests go unsigned */
    int munge;                    /* no key: attach a MUNGE credential when one can be made */
    const char *munge_socket;     /* NULL or "": RGPU_MUNGE_SOCKET, else libmunge's default */
    char *munge_error;            /* may be NULL: why the last call went without a credential */
    size_t munge_error_cap;
} rgpu_sched_client_t;

/* Sends msg as a frame of type type and returns the unpacked reply of
 * reply_type (the caller frees it with protobuf_c_message_free_unpacked),
 * or NULL with err (may be NULL) set to one line. */
void *rgpu_sched_call(const rgpu_sched_client_t *client, uint16_t type,
                      const ProtobufCMessage *msg, uint16_t reply_type,
                      const ProtobufCMessageDescriptor *desc, char *err, size_t err_cap);

/* Parses a timeout in seconds, digits with an optional fraction ("10",
 * "2.5"; more than 86400 or less than 1 ms: refused); returns milliseconds
 * or -1. */
int rgpu_sched_timeout_parse(const char *s);

#endif
