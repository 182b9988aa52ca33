/*
 * A lease token as the client reads it (see lease.c).
 */
#ifndef RGPU_CL_LEASE_H
#define RGPU_CL_LEASE_H

#include <stddef.h>

/* Writes the comma-separated addresses of the servers that token's lease
 * names into servers (cap bytes). Returns 0, or -1 with a sentence in why. */
int rgpu_cl_lease_servers(const char *token, char *servers, size_t cap, char *why, size_t why_cap);

#endif
