/*
 * Which servers the ICD connects to: RGPU_SERVERS, else those of the lease
 * (read from its token, RGPU_LEASE_TOKEN), else client.conf's servers. The token's payload is read, not verified:
 * the servers verify it with the cluster key, which clients never hold.
 * A token is "v1.<payload>.<mac>", both base64url without padding
 * (scheduler/include/rgpu/token.h).
 */
#include "lease.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler.pb-c.h"

int rgpu_cl_lease_servers(const char *token, char *servers, size_t cap, char *why, size_t why_cap)
{
    const char *body, *dot;
    Rgpu__TokenPayload *payload;
    unsigned char *packed;
    size_t len = 0, used = 0;

    if (strncmp(token, "v1.", 3) != 0 || !(dot = strchr(token + 3, '.'))) {
        snprintf(why, why_cap, "RGPU_LEASE_TOKEN is not an rgpu lease token (v1.<payload>.<mac>)");
        return -1;
    }
    body = token + 3;
    packed = malloc((size_t)(dot - body) + 1);
    if (!packed) {
        snprintf(why, why_cap, "out of memory");
        return -1;
    }
    if (sodium_base642bin(packed, (size_t)(dot - body) + 1, body, (size_t)(dot - body), NULL, &len,
                          NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        !(payload = rgpu__token_payload__unpack(NULL, len, packed))) {
        free(packed);
        snprintf(why, why_cap, "RGPU_LEASE_TOKEN does not decode (truncated when copied?)");
        return -1;
    }
    free(packed);
    servers[0] = '\0';
    for (size_t g = 0; g < payload->n_gpus; g++) {
        const char *addr = payload->gpus[g]->server;
        size_t alen = strlen(addr);
        int seen = 0;

        /* Each server once, in lease order (a lease may hold several GPUs of one). */
        for (size_t h = 0; h < g && !seen; h++)
            seen = strcmp(payload->gpus[h]->server, addr) == 0;
        if (seen)
            continue;
        if (used + alen + 2 > cap) {
            snprintf(why, why_cap, "lease %llu names too many servers",
                     (unsigned long long)payload->lease_id);
            rgpu__token_payload__free_unpacked(payload, NULL);
            return -1;
        }
        used += (size_t)snprintf(servers + used, cap - used, "%s%s", used ? "," : "", addr);
    }
    if (!used)
        snprintf(why, why_cap, "lease %llu names no GPU", (unsigned long long)payload->lease_id);
    rgpu__token_payload__free_unpacked(payload, NULL);
    return used ? 0 : -1;
}

static const char *rgpu_cl_getenv(const char *name)
{
    return getenv(name);
}

int rgpu_cl_client_setup(rgpu_client_conf_t *conf, char *servers, size_t cap, char *why,
                         size_t why_cap)
{
    char list[sizeof(conf->servers)], *addr, *save = NULL;
    size_t used = 0;

    if (rgpu_client_conf_load(conf, rgpu_cl_getenv, why, why_cap) != 0)
        return -1;
    /* A lease names its servers exactly: it wins over the file's list,
     * not over RGPU_SERVERS, which a user sets on purpose. */
    if (conf->token[0] && conf->opt.origin[RGPU_CLIENT_CONF_ROW_SERVERS].from != RGPU_OPT_FROM_ENV) {
        if (rgpu_cl_lease_servers(conf->token, list, sizeof(list), why, why_cap) != 0)
            return -1;
    } else {
        snprintf(list, sizeof(list), "%s", conf->servers);
    }
    servers[0] = '\0';
    for (addr = strtok_r(list, ", ", &save); addr; addr = strtok_r(NULL, ", ", &save)) {
        if (rgpu_client_conf_address_ok(conf, addr, why, why_cap) != 0)
            return -1;
        if (used + strlen(addr) + 2 > cap) {
            snprintf(why, why_cap, "the list of servers is longer than %zu characters", cap - 1);
            return -1;
        }
        used += (size_t)snprintf(servers + used, cap - used, "%s%s", used ? "," : "", addr);
    }
    return 0;
}
