/*
 * Which servers a client library connects to, shared by every API (the
 * OpenCL ICD and the CUDA runtime): RGPU_SERVERS, else the servers of the
 * lease (read from its token, RGPU_LEASE_TOKEN), else client.conf's
 * servers; each reached at the endpoint this node can use (see lease.c).
 *
 * Both functions run once, on the thread that initializes the client
 * library; they keep no state between calls and allocate nothing the
 * caller must free.
 */
#ifndef RGPU_CLIENT_LEASE_H
#define RGPU_CLIENT_LEASE_H

#include <stddef.h>

#include "rgpu/client_conf.h"

/* Writes the comma-separated identities of the servers that token's lease
 * names (each once, in lease order) into servers (cap bytes). The token is
 * read, not verified: servers verify it with the cluster key. Returns 0, or
 * -1 with a sentence in why (why_cap bytes) when the token does not decode,
 * names no GPU, or its servers do not fit in cap. */
int rgpu_client_lease_servers(const char *token, char *servers, size_t cap, char *why,
                              size_t why_cap);

/* Reads the client configuration (client.conf or $RGPU_CONFIG, then the
 * environment) into conf and writes the addresses to connect to into
 * servers (cap bytes, comma-separated): RGPU_SERVERS, else the servers of
 * the lease token, else the file's servers. A server the lease lists
 * endpoints for is replaced by the one rgpu_transport_choose picks among
 * those that suit conf->transport (saying once on stderr why TCP is used
 * instead of verbs); every address must suit conf->transport. servers is
 * "" when none is named. Returns 0, or -1 with a sentence in why (why_cap
 * bytes): a configuration that does not load, a token that does not
 * decode, a lease without an address of the transport asked for, a
 * transport this node cannot use, or a list longer than cap. */
int rgpu_client_setup(rgpu_client_conf_t *conf, char *servers, size_t cap, char *why,
                      size_t why_cap);

#endif
