/*
 * Which servers a client library (the OpenCL ICD, the CUDA runtime)
 * connects to: RGPU_SERVERS, else those of the lease (read from its token,
 * RGPU_LEASE_TOKEN), else client.conf's servers. The token's payload is
 * read, not verified: the servers verify it with the cluster key, which
 * clients never hold. A token is "v1.<payload>.<mac>", both base64url
 * without padding (scheduler/include/rgpu/token.h).
 *
 * A lease names each server by its identity (its advertise address) and
 * lists the addresses it listens on (endpoints: tcp:// and verbs://). A
 * server the lease names, whether through the lease or RGPU_SERVERS (which
 * `rgpu alloc` and the Slurm plugin set to the same identities), is reached
 * at the endpoint rgpu_transport_choose picks on this node: verbs when the
 * node has a usable RDMA device, else TCP, saying why once on stderr.
 */
#include "rgpu/client_lease.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rgpu/transport.h"
#include "scheduler.pb-c.h"

/* The token's payload, unpacked (free with rgpu__token_payload__free_unpacked);
 * NULL with why when it is not a token. */
static Rgpu__TokenPayload *rgpu_client_lease_payload(const char *token, char *why,
                                                     size_t why_cap)
{
    const char *body, *dot;
    Rgpu__TokenPayload *payload = NULL;
    unsigned char *packed;
    size_t len = 0;

    if (strncmp(token, "v1.", 3) != 0 || !(dot = strchr(token + 3, '.'))) {
        snprintf(why, why_cap, "RGPU_LEASE_TOKEN is not an rgpu lease token (v1.<payload>.<mac>)");
        return NULL;
    }
    body = token + 3;
    packed = malloc((size_t)(dot - body) + 1);
    if (!packed) {
        snprintf(why, why_cap, "out of memory");
        return NULL;
    }
    if (sodium_base642bin(packed, (size_t)(dot - body) + 1, body, (size_t)(dot - body), NULL, &len,
                          NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        !(payload = rgpu__token_payload__unpack(NULL, len, packed)))
        snprintf(why, why_cap, "RGPU_LEASE_TOKEN does not decode (truncated when copied?)");
    free(packed);
    return payload;
}

int rgpu_client_lease_servers(const char *token, char *servers, size_t cap, char *why,
                              size_t why_cap)
{
    Rgpu__TokenPayload *payload = rgpu_client_lease_payload(token, why, why_cap);
    size_t used = 0;

    if (!payload)
        return -1;
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

/* The address to connect to for server addr: one of its endpoints when
 * the lease lists some for it (rgpu_transport_choose among those that suit
 * conf->transport), else addr itself. Returns 0, or -1 with why. */
static int rgpu_client_lease_endpoint(const rgpu_client_conf_t *conf,
                                      const Rgpu__TokenPayload *payload, const char *addr,
                                      const char **out, char *why, size_t why_cap)
{
    const char *usable[16];
    char reason[384];
    size_t n = 0, pick;

    *out = addr;
    for (size_t g = 0; payload && g < payload->n_gpus && !n; g++) {
        const Rgpu__LeaseGpu *gpu = payload->gpus[g];

        if (strcmp(gpu->server, addr) != 0 || !gpu->n_endpoints)
            continue;
        for (size_t e = 0; e < gpu->n_endpoints && n < sizeof(usable) / sizeof(usable[0]); e++) {
            const char *ep = gpu->endpoints[e];
            int verbs = strncmp(ep, "verbs://", 8) == 0;

            /* transport = tcp or verbs in client.conf: only those; the
             * environment's RGPU_TRANSPORT, when set, is the same value. */
            if ((conf->transport == RGPU_CLIENT_TRANSPORT_TCP && verbs) ||
                (conf->transport == RGPU_CLIENT_TRANSPORT_VERBS && !verbs))
                continue;
            usable[n++] = ep;
        }
        if (!n) {
            snprintf(why, why_cap, "transport = %s, but the lease lists no %s address for "
                     "server %.200s", conf->transport == RGPU_CLIENT_TRANSPORT_TCP ? "tcp" : "verbs",
                     conf->transport == RGPU_CLIENT_TRANSPORT_TCP ? "TCP" : "verbs://", addr);
            return -1;
        }
    }
    if (!n)
        return 0;
    if (rgpu_transport_choose(usable, n, &pick, reason, sizeof(reason)) != RGPU_OK) {
        snprintf(why, why_cap, "server %.200s: %s", addr, reason);
        return -1;
    }
    *out = usable[pick];
    return 0;
}

static const char *rgpu_client_getenv(const char *name)
{
    return getenv(name);
}

int rgpu_client_setup(rgpu_client_conf_t *conf, char *servers, size_t cap, char *why,
                      size_t why_cap)
{
    char list[sizeof(conf->servers)], *addr, *save = NULL;
    Rgpu__TokenPayload *payload = NULL;
    size_t used = 0;
    int rc = -1;

    if (rgpu_client_conf_load(conf, rgpu_client_getenv, why, why_cap) != 0)
        return -1;
    /* A lease names its servers exactly: it wins over the file's list,
     * not over RGPU_SERVERS, which a user sets on purpose. */
    if (conf->token[0] && conf->opt.origin[RGPU_CLIENT_CONF_ROW_SERVERS].from != RGPU_OPT_FROM_ENV) {
        if (rgpu_client_lease_servers(conf->token, list, sizeof(list), why, why_cap) != 0)
            return -1;
    } else {
        snprintf(list, sizeof(list), "%s", conf->servers);
    }
    /* The lease's endpoints, for the servers it names (a token that does
     * not decode was refused above when the lease named the servers). */
    if (conf->token[0])
        payload = rgpu_client_lease_payload(conf->token, why, why_cap);
    servers[0] = '\0';
    for (addr = strtok_r(list, ", ", &save); addr; addr = strtok_r(NULL, ", ", &save)) {
        const char *use;

        if (rgpu_client_lease_endpoint(conf, payload, addr, &use, why, why_cap) != 0 ||
            rgpu_client_conf_address_ok(conf, use, why, why_cap) != 0)
            goto out_free;
        if (used + strlen(use) + 2 > cap) {
            snprintf(why, why_cap, "the list of servers is longer than %zu characters", cap - 1);
            goto out_free;
        }
        used += (size_t)snprintf(servers + used, cap - used, "%s%s", used ? "," : "", use);
    }
    rc = 0;
out_free:
    if (payload)
        rgpu__token_payload__free_unpacked(payload, NULL);
    return rc;
}
