/* Small shared utilities: time, sizes, address parsing. */
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

#endif
