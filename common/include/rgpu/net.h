/* TCP addresses and connecting: what the TCP transport and rgpu-bench's raw
 * TCP baseline share, so that the baseline reaches its peer exactly as
 * rgpu's own links reach theirs. */
#ifndef RGPU_NET_H
#define RGPU_NET_H

#include <stddef.h>

#include "rgpu/status.h"

struct addrinfo;

/* Resolves "host:port" or "[v6addr]:port" (rgpu_addr_split) into the
 * addresses of a stream socket; passive for one to bind (AI_PASSIVE). The
 * port is taken as a number, never as a service name.
 *
 * Returns RGPU_OK with *res_p, which the caller frees with freeaddrinfo;
 * RGPU_ERR_ADDRESS when addr is not of that form or its host does not
 * resolve, with the reason in why (why may be NULL). Blocks while the host
 * name is looked up. */
rgpu_status_t rgpu_addr_resolve(const char *addr, int passive, struct addrinfo **res_p, char *why,
                                size_t why_cap);

/* Connects a stream socket to the addresses of res in turn (in the order
 * getaddrinfo gave them) until one accepts. Each attempt waits at most
 * timeout_ms for the peer (-1: as long as the kernel tries).
 *
 * Returns the connected socket, blocking and close-on-exec, which the
 * caller closes; or -1 with *err_p the errno of the last attempt's failure:
 * ETIMEDOUT where the peer did not answer in time, ECONNREFUSED where
 * nothing listens (or res is empty), another errno where the socket could
 * not be made. Blocks the calling thread; sets no socket options beyond
 * those. */
int rgpu_socket_connect(const struct addrinfo *res, int timeout_ms, int *err_p);

#endif
