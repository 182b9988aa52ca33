/*
 * A lease token as the client reads it (see lease.c).
 */
#ifndef RGPU_CL_LEASE_H
#define RGPU_CL_LEASE_H

#include <stddef.h>

#include "rgpu/client_conf.h"

/* Writes the comma-separated addresses of the servers that token's lease
 * names into servers (cap bytes). Returns 0, or -1 with a sentence in why. */
int rgpu_cl_lease_servers(const char *token, char *servers, size_t cap, char *why, size_t why_cap);

/* Reads the client configuration (client.conf or $RGPU_CONFIG, then the
 * environment) into conf and writes the servers to connect to into servers
 * (cap bytes, comma-separated): RGPU_SERVERS, else the servers of the lease
 * token, else the file's servers; each must suit conf->transport. servers is "" when none is named. Returns 0, or -1 with a
 * sentence in why. Called once, from the ICD's initialization. */
int rgpu_cl_client_setup(rgpu_client_conf_t *conf, char *servers, size_t cap, char *why,
                         size_t why_cap);

#endif
