/* Small shared utilities: time, sizes, address parsing, thread policy. */
#ifndef RGPU_UTIL_H
#define RGPU_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "rgpu/status.h"

/* Monotonic clock in nanoseconds. */
uint64_t rgpu_time_ns(void);

/* Parses "host:port" or "[v6addr]:port" into host (NUL-terminated, at most
 * host_cap bytes) and port. RGPU_ERR_ADDRESS when malformed. */
rgpu_status_t rgpu_addr_split(const char *addr, char *host, size_t host_cap, uint16_t *port_p);

/* Parses sizes like "64", "4K", "16M", "2G" (powers of 1024). Returns -1 on
 * a malformed string. */
int rgpu_size_parse(const char *str, uint64_t *size_p);

/* Puts the calling thread under SCHED_BATCH (Linux: this thread alone), so
 * that the threads it starts inherit it: a batch thread that wakes up does
 * not preempt the one running. Only from SCHED_OTHER: a policy chosen with
 * chrt is left alone. Returns 1 when it changed the policy, 0 when it left
 * it, -1 with errno. */
int rgpu_thread_batch_begin(void);

/* Back to SCHED_OTHER after rgpu_thread_batch_begin returned 1: 0, or -1
 * with errno. */
int rgpu_thread_batch_end(void);

#endif
