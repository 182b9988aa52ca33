/*
 * The scheduler's state machine (see sched.h): servers, their GPUs' use,
 * leases. Every change is written to the store before the caller replies.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rgpu/log.h"
#include "sched_core.h"

/* Packs msg and unpacks it again: a self-owned deep copy. */
static void *rgpu_sched_copy(const ProtobufCMessage *msg)
{
    size_t len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(len + 1);
    void *copy;

    if (!buf)
        return NULL;
    protobuf_c_message_pack(msg, buf);
    copy = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
    free(buf);
    return copy;
}

/* FNV-1a, never 0 (the hash table's reserved key). */
static uint64_t rgpu_sched_addr_hash(const char *address)
{
    uint64_t h = 1469598103934665603ull;

    for (; *address; address++)
        h = (h ^ (unsigned char)*address) * 1099511628211ull;
    return h ? h : 1;
}

static rgpu_sched_server_t *rgpu_sched_server_find(rgpu_sched_t *s, const char *address,
                                                   uint32_t *idx_p)
{
    uintptr_t hit = (uintptr_t)rgpu_htable_find(&s->by_address, rgpu_sched_addr_hash(address));

    if (hit && strcmp(s->servers[hit - 1].reg->address, address) == 0) {
        if (idx_p)
            *idx_p = (uint32_t)(hit - 1);
        return &s->servers[hit - 1];
    }
    /* A hash collision: the table holds the first server of that hash. */
    for (uint32_t i = 0; i < s->nservers; i++) {
        if (strcmp(s->servers[i].reg->address, address) == 0) {
            if (idx_p)
                *idx_p = i;
            return &s->servers[i];
        }
    }
    return NULL;
}

/* Points a lease's GPUs at servers and adds its use. */
static void rgpu_sched_lease_attach(rgpu_sched_t *s, rgpu_sched_lease_t *lease)
{
    const Rgpu__Lease *pb = lease->pb;

    for (size_t g = 0; g < pb->n_gpus; g++) {
        uint32_t si;
        rgpu_sched_server_t *server = rgpu_sched_server_find(s, pb->gpus[g]->server, &si);

        lease->server[g] = UINT32_MAX;
        if (!server)
            continue;
        for (size_t p = 0; p < server->reg->n_gpus; p++) {
            if (server->reg->gpus[p]->index != pb->gpus[g]->index)
                continue;
            lease->server[g] = si;
            lease->pos[g] = (uint32_t)p;
            if (!server->use[p].exclusive && !server->use[p].shared)
                server->nfree--;
            if (pb->shared) {
                uint64_t r = server->use[p].reserved;

                /* Saturates: the policy never lets reservations pass the
                 * GPU's memory, but a stored lease is not trusted to add up. */
                server->use[p].shared++;
                server->use[p].reserved = r > UINT64_MAX - pb->memory_quota ? UINT64_MAX
                                                                             : r + pb->memory_quota;
            } else {
                server->use[p].exclusive = pb->id;
            }
            break;
        }
    }
}

static void rgpu_sched_lease_detach(rgpu_sched_t *s, rgpu_sched_lease_t *lease)
{
    const Rgpu__Lease *pb = lease->pb;

    for (size_t g = 0; g < pb->n_gpus; g++) {
        rgpu_sched_gpu_use_t *use;

        if (lease->server[g] == UINT32_MAX)
            continue;
        use = &s->servers[lease->server[g]].use[lease->pos[g]];
        if (pb->shared) {
            use->shared--;
            use->reserved -= use->reserved < pb->memory_quota ? use->reserved : pb->memory_quota;
        } else if (use->exclusive == pb->id) {
            use->exclusive = 0;
        } else {
            continue;
        }
        if (!use->exclusive && !use->shared)
            s->servers[lease->server[g]].nfree++;
    }
}

static void rgpu_sched_lease_free(rgpu_sched_lease_t *lease)
{
    rgpu__lease__free_unpacked(lease->pb, NULL);
    free(lease->server);
    free(lease->pos);
    free(lease);
}

/* Takes ownership of pb. */
static rgpu_status_t rgpu_sched_lease_add(rgpu_sched_t *s, Rgpu__Lease *pb)
{
    rgpu_sched_lease_t *lease = calloc(1, sizeof(*lease));

    if (!lease) {
        rgpu__lease__free_unpacked(pb, NULL);
        return RGPU_ERR_NOMEM;
    }
    lease->pb = pb;
    lease->server = calloc(pb->n_gpus + 1, sizeof(uint32_t));
    lease->pos = calloc(pb->n_gpus + 1, sizeof(uint32_t));
    if (!lease->server || !lease->pos || rgpu_htable_insert(&s->leases, pb->id, lease) != RGPU_OK) {
        rgpu_sched_lease_free(lease);
        return RGPU_ERR_NOMEM;
    }
    rgpu_sched_lease_attach(s, lease);
    return RGPU_OK;
}

static void rgpu_sched_recount_fn(uint64_t key, void *value, void *arg)
{
    (void)key;
    rgpu_sched_lease_attach(arg, value);
}

/* Recomputes every GPU's use from the leases (after servers changed). */
static void rgpu_sched_recount(rgpu_sched_t *s)
{
    for (uint32_t i = 0; i < s->nservers; i++) {
        memset(s->servers[i].use, 0, s->servers[i].reg->n_gpus * sizeof(rgpu_sched_gpu_use_t));
        s->servers[i].nfree = (uint32_t)s->servers[i].reg->n_gpus;
    }
    rgpu_htable_foreach(&s->leases, rgpu_sched_recount_fn, s);
}

/* Takes ownership of reg. Replaces a server of the same address. */
static rgpu_status_t rgpu_sched_server_put(rgpu_sched_t *s, Rgpu__RegisterServer *reg, int drained,
                                           int64_t now)
{
    rgpu_sched_server_t *server = rgpu_sched_server_find(s, reg->address, NULL);
    rgpu_sched_gpu_use_t *use = calloc(reg->n_gpus + 1, sizeof(*use));

    if (!use) {
        rgpu__register_server__free_unpacked(reg, NULL);
        return RGPU_ERR_NOMEM;
    }
    if (!server) {
        if (s->nservers == s->servers_cap) {
            uint32_t cap = s->servers_cap ? s->servers_cap * 2 : 16;
            rgpu_sched_server_t *grown = realloc(s->servers, cap * sizeof(*grown));
            uint32_t *scratch = realloc(s->scratch, cap * sizeof(uint32_t));
            uint32_t *scratch2;

            if (scratch)
                s->scratch = scratch;
            scratch2 = realloc(s->scratch2, cap * sizeof(uint32_t));
            if (scratch2)
                s->scratch2 = scratch2;
            if (grown)
                s->servers = grown;
            if (!grown || !scratch || !scratch2) {
                free(use);
                rgpu__register_server__free_unpacked(reg, NULL);
                return RGPU_ERR_NOMEM;
            }
            s->servers_cap = cap;
        }
        server = &s->servers[s->nservers++];
        memset(server, 0, sizeof(*server));
        /* RGPU_ERR_EXISTS on a collision is fine: lookups fall back to a scan. */
        rgpu_htable_insert(&s->by_address, rgpu_sched_addr_hash(reg->address),
                           (void *)(uintptr_t)s->nservers);
        server->drained = drained;
    } else {
        rgpu__register_server__free_unpacked(server->reg, NULL);
        free(server->use);
        /* A server registers after a restart: its sessions are gone. */
        if (server->hb)
            rgpu__heartbeat__free_unpacked(server->hb, NULL);
        server->hb = NULL;
    }
    server->reg = reg;
    server->use = use;
    server->nfree = (uint32_t)reg->n_gpus;
    server->apis_all = rgpu__policy_apis_all(reg);
    server->up = 1;
    server->last_seen = now;
    return RGPU_OK;
}

typedef struct {
    rgpu_sched_t *s;
    int64_t now;
} rgpu_sched_load_t;

static void rgpu_sched_load_server(void *arg, Rgpu__RegisterServer *reg, int drained)
{
    rgpu_sched_load_t *load = arg;

    rgpu_sched_server_put(load->s, reg, drained, load->now);
}

static void rgpu_sched_load_lease(void *arg, Rgpu__Lease *lease)
{
    rgpu_sched_load_t *load = arg;

    rgpu_sched_lease_add(load->s, lease);
}

rgpu_status_t rgpu_sched_init(rgpu_sched_t *s, rgpu_sched_store_t *store,
                              const rgpu_token_key_t *key, uint32_t lease_ttl_s,
                              uint32_t heartbeat_timeout_s, int64_t now)
{
    rgpu_sched_load_t load = {s, now};

    memset(s, 0, sizeof(*s));
    rgpu_htable_init(&s->leases);
    rgpu_htable_init(&s->by_address);
    s->store = store;
    s->key = key;
    s->lease_ttl_s = lease_ttl_s;
    s->max_lease_ttl_s = lease_ttl_s > RGPU_SCHED_DEFAULT_MAX_TTL_S ? lease_ttl_s
                                                                    : RGPU_SCHED_DEFAULT_MAX_TTL_S;
    s->default_shared_mem = RGPU_SCHED_DEFAULT_SHARED_MEM;
    s->heartbeat_timeout_s = heartbeat_timeout_s;
    s->next_lease_id = 1;
    if (store && rgpu__store_load(store, &load, rgpu_sched_load_server, rgpu_sched_load_lease) !=
                     RGPU_OK)
        return RGPU_ERR_IO;
    /* Servers loaded from the store count as seen now: they have one
     * heartbeat timeout to show they are alive. */
    return RGPU_OK;
}

static void rgpu_sched_free_fn(uint64_t key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    rgpu_sched_lease_free(value);
}

void rgpu_sched_cleanup(rgpu_sched_t *s)
{
    rgpu_htable_foreach(&s->leases, rgpu_sched_free_fn, NULL);
    rgpu_htable_cleanup(&s->leases);
    rgpu_htable_cleanup(&s->by_address);
    for (uint32_t i = 0; i < s->nservers; i++) {
        rgpu__register_server__free_unpacked(s->servers[i].reg, NULL);
        free(s->servers[i].use);
        if (s->servers[i].hb)
            rgpu__heartbeat__free_unpacked(s->servers[i].hb, NULL);
        free(s->servers[i].ended);
    }
    free(s->servers);
    free(s->scratch);
    free(s->scratch2);
    rgpu_sched_store_close(s->store);
    memset(s, 0, sizeof(*s));
}

rgpu_status_t rgpu__sched_endpoints_default(Rgpu__RegisterServer *reg)
{
    const char *transport = *reg->transport ? reg->transport : "tcp";
    size_t len = strlen(transport) + 3 + strlen(reg->address) + 1;
    char **list;

    if (reg->n_endpoints)
        return RGPU_OK;
    /* Allocated as protobuf-c's default allocator does: free_unpacked frees it. */
    list = malloc(sizeof(*list));
    if (!list || !(list[0] = malloc(len))) {
        free(list);
        return RGPU_ERR_NOMEM;
    }
    snprintf(list[0], len, "%s://%s", transport, reg->address);
    reg->endpoints = list;
    reg->n_endpoints = 1;
    return RGPU_OK;
}

Rgpu__ApiFamily rgpu__sched_api(Rgpu__ApiFamily api)
{
    return api == RGPU__API_FAMILY__API_NONE ? RGPU__API_FAMILY__API_OPENCL : api;
}

const char *rgpu__sched_api_name(Rgpu__ApiFamily api)
{
    switch (rgpu__sched_api(api)) {
    case RGPU__API_FAMILY__API_OPENCL:
        return "OpenCL";
    case RGPU__API_FAMILY__API_CUDA:
        return "CUDA";
    default:
        return "an unknown API";
    }
}

/* An endpoint a client may be handed: tcp:// or verbs://, then HOST:PORT
 * in printable characters without the separators of address lists. */
static int rgpu_sched_endpoint_ok(const char *e)
{
    size_t len = strlen(e);
    const char *rest = strncmp(e, "tcp://", 6) == 0     ? e + 6
                       : strncmp(e, "verbs://", 8) == 0 ? e + 8
                                                        : NULL;

    if (!rest || !*rest || len > RGPU_SCHED_MAX_ENDPOINT_LEN || !strchr(rest, ':'))
        return 0;
    for (const char *c = rest; *c; c++)
        if (*c <= ' ' || *c > '~' || *c == ',')
            return 0;
    return 1;
}

rgpu_status_t rgpu_sched_register(rgpu_sched_t *s, const Rgpu__RegisterServer *reg, int64_t now,
                                  char *reason, size_t cap)
{
    rgpu_sched_server_t *old;
    Rgpu__RegisterServer *copy;
    rgpu_status_t status;
    int drained;

    if (!*reg->address) {
        snprintf(reason, cap, "register without an address");
        return RGPU_ERR_INVALID_ARG;
    }
    if (reg->n_gpus > RGPU_SCHED_MAX_GPUS_PER_SERVER) {
        snprintf(reason, cap, "register of %zu GPUs; a server has at most %u", reg->n_gpus,
                 RGPU_SCHED_MAX_GPUS_PER_SERVER);
        return RGPU_ERR_INVALID_ARG;
    }
    if (reg->n_endpoints > RGPU_SCHED_MAX_ENDPOINTS) {
        snprintf(reason, cap, "register of %zu endpoints; a server has at most %u",
                 reg->n_endpoints, RGPU_SCHED_MAX_ENDPOINTS);
        return RGPU_ERR_INVALID_ARG;
    }
    for (size_t e = 0; e < reg->n_endpoints; e++) {
        if (!rgpu_sched_endpoint_ok(reg->endpoints[e])) {
            snprintf(reason, cap, "endpoint \"%.80s\" is not tcp://HOST:PORT or "
                     "verbs://HOST:PORT", reg->endpoints[e]);
            return RGPU_ERR_INVALID_ARG;
        }
    }
    copy = rgpu_sched_copy(&reg->base);
    if (!copy)
        return RGPU_ERR_NOMEM;
    /* A server older than endpoints is reachable at its address only. */
    if (rgpu__sched_endpoints_default(copy) != RGPU_OK) {
        rgpu__register_server__free_unpacked(copy, NULL);
        return RGPU_ERR_NOMEM;
    }
    old = rgpu_sched_server_find(s, reg->address, NULL);
    drained = old ? old->drained : 0;
    if (s->store && rgpu__store_put_server(s->store, copy, drained) != RGPU_OK) {
        snprintf(reason, cap, "cannot store server %s", reg->address);
        rgpu__register_server__free_unpacked(copy, NULL);
        return RGPU_ERR_IO;
    }
    status = rgpu_sched_server_put(s, copy, drained, now);
    if (status != RGPU_OK)
        return status;
    rgpu_sched_recount(s);
    rgpu_info("sched", "server %s registered with %zu GPUs", reg->address, reg->n_gpus);
    return RGPU_OK;
}

/* Drops the ended leases whose tokens have all expired by now. */
static void rgpu_sched_ended_prune(rgpu_sched_server_t *server, int64_t now)
{
    uint32_t kept = 0;

    for (uint32_t i = 0; i < server->nended; i++)
        if (server->ended[i].until > now)
            server->ended[kept++] = server->ended[i];
    server->nended = kept;
}

/* Tells the servers of lease, in their next heartbeat replies, that it
 * ended: until its last token expires, a server must refuse its tokens.
 * Out of memory or past RGPU_SCHED_MAX_ENDED the oldest entry is dropped
 * (that server still ends the lease's sessions: it is no longer listed). */
static void rgpu_sched_ended_add(rgpu_sched_t *s, const rgpu_sched_lease_t *lease)
{
    const Rgpu__Lease *pb = lease->pb;
    int64_t until = pb->tokens_expire_unix > pb->expires_unix ? pb->tokens_expire_unix
                                                               : pb->expires_unix;

    for (size_t g = 0; g < pb->n_gpus; g++) {
        rgpu_sched_server_t *server;
        int seen = 0;

        if (lease->server[g] == UINT32_MAX)
            continue;
        for (size_t k = 0; k < g && !seen; k++)
            seen = lease->server[k] == lease->server[g];
        if (seen)
            continue;
        server = &s->servers[lease->server[g]];
        if (server->nended == server->ended_cap && server->ended_cap < RGPU_SCHED_MAX_ENDED) {
            uint32_t cap = server->ended_cap ? server->ended_cap * 2 : 16;
            rgpu_sched_ended_t *grown;

            cap = cap > RGPU_SCHED_MAX_ENDED ? RGPU_SCHED_MAX_ENDED : cap;
            grown = realloc(server->ended, cap * sizeof(*grown));
            if (grown) {
                server->ended = grown;
                server->ended_cap = cap;
            }
        }
        if (server->nended == server->ended_cap) {
            if (!server->nended)
                continue;
            memmove(server->ended, server->ended + 1, (server->nended - 1) * sizeof(*server->ended));
            server->nended--;
        }
        server->ended[server->nended].id = pb->id;
        server->ended[server->nended++].until = until;
    }
}

typedef struct {
    uint32_t si;
    Rgpu__HeartbeatReply *reply;
    Rgpu__LeaseExpiry *items;
    size_t cap;
} rgpu_sched_expiry_t;

static void rgpu_sched_expiry_fn(uint64_t key, void *value, void *arg)
{
    rgpu_sched_expiry_t *e = arg;
    rgpu_sched_lease_t *lease = value;

    (void)key;
    for (size_t g = 0; g < lease->pb->n_gpus; g++) {
        if (lease->server[g] != e->si)
            continue;
        if (e->reply->n_leases < e->cap) {
            Rgpu__LeaseExpiry *item = &e->items[e->reply->n_leases];

            rgpu__lease_expiry__init(item);
            item->lease_id = lease->pb->id;
            item->expires_unix = lease->pb->expires_unix;
            e->reply->leases[e->reply->n_leases++] = item;
        }
        return;
    }
}

rgpu_status_t rgpu_sched_heartbeat(rgpu_sched_t *s, const Rgpu__Heartbeat *hb, int64_t now,
                                   Rgpu__HeartbeatReply *reply)
{
    uint32_t si;
    rgpu_sched_server_t *server = rgpu_sched_server_find(s, hb->address, &si);
    Rgpu__Heartbeat *copy;

    if (!server)
        return RGPU_ERR_NOT_FOUND;
    if (!server->up)
        rgpu_info("sched", "server %s is up again", hb->address);
    server->up = 1;
    server->last_seen = now;
    copy = rgpu_sched_copy(&hb->base);
    if (copy) {     /* out of memory: the previous sessions stay */
        if (server->hb)
            rgpu__heartbeat__free_unpacked(server->hb, NULL);
        server->hb = copy;
    }
    if (reply) {
        /* A lease is counted once however many of its GPUs are here, so
         * the leases alive bound the reply. */
        rgpu_sched_expiry_t e = {si, reply, NULL, s->leases.count};

        rgpu__heartbeat_reply__init(reply);
        e.items = calloc(e.cap + 1, sizeof(*e.items));
        reply->leases = calloc(e.cap + 1, sizeof(*reply->leases));
        if (!e.items || !reply->leases) {
            free(e.items);
            free(reply->leases);
            reply->leases = NULL;
            return RGPU_ERR_NOMEM;
        }
        rgpu_htable_foreach(&s->leases, rgpu_sched_expiry_fn, &e);
        if (!reply->n_leases)
            free(e.items);
        rgpu_sched_ended_prune(server, now);
        if (server->nended) {
            reply->ended_leases = malloc(server->nended * sizeof(uint64_t));
            if (!reply->ended_leases) {
                rgpu_sched_heartbeat_reply_free(reply);
                return RGPU_ERR_NOMEM;
            }
            for (uint32_t i = 0; i < server->nended; i++)
                reply->ended_leases[i] = server->ended[i].id;
            reply->n_ended_leases = server->nended;
        }
    }
    return RGPU_OK;
}

void rgpu_sched_heartbeat_reply_free(Rgpu__HeartbeatReply *reply)
{
    /* The items are one array, found through the first entry. */
    if (reply->n_leases)
        free(reply->leases[0]);
    free(reply->leases);
    free(reply->ended_leases);
    reply->leases = NULL;
    reply->n_leases = 0;
    reply->ended_leases = NULL;
    reply->n_ended_leases = 0;
}

typedef struct {
    const char *job;
    rgpu_sched_lease_t *found;
} rgpu_sched_job_find_t;

static void rgpu_sched_job_fn(uint64_t key, void *value, void *arg)
{
    rgpu_sched_job_find_t *find = arg;
    rgpu_sched_lease_t *lease = value;

    (void)key;
    if (!find->found && strcmp(lease->pb->slurm_job_id, find->job) == 0)
        find->found = lease;
}

/* Signs lease (id, GPUs, quota, user, expiry) into lease->token (malloc'd). */
/* Whether gpu's endpoints say no more than its server's identity: the one
 * endpoint tcp://SERVER. */
static int rgpu_sched_endpoints_implied(const Rgpu__LeaseGpu *gpu)
{
    return gpu->n_endpoints == 1 && strncmp(gpu->endpoints[0], "tcp://", 6) == 0 &&
           strcmp(gpu->endpoints[0] + 6, gpu->server) == 0;
}

static char *rgpu_sched_sign(rgpu_sched_t *s, const Rgpu__Lease *lease)
{
    Rgpu__TokenPayload payload = RGPU__TOKEN_PAYLOAD__INIT;
    Rgpu__LeaseGpu *gpus, **ptrs;
    char *token = NULL;
    int first;

    if (!s->key)
        return strdup("");
    gpus = calloc(lease->n_gpus + 1, sizeof(*gpus));
    ptrs = calloc(lease->n_gpus + 1, sizeof(*ptrs));
    if (gpus && ptrs) {
        for (size_t g = 0; g < lease->n_gpus; g++) {
            rgpu__lease_gpu__init(&gpus[g]);
            gpus[g].server = lease->gpus[g]->server;
            gpus[g].index = lease->gpus[g]->index;
            ptrs[g] = &gpus[g];
            /* A client holding only the token chooses its transport from
             * them; listed once per server (its first GPU), since the
             * token travels in environment variables, and not at all for
             * a server reachable only at tcp://IDENTITY, which the identity
             * already says (a bare HOST:PORT is TCP). */
            first = !rgpu_sched_endpoints_implied(lease->gpus[g]);
            for (size_t h = 0; h < g && first; h++)
                first = strcmp(lease->gpus[h]->server, lease->gpus[g]->server) != 0;
            if (first) {
                gpus[g].n_endpoints = lease->gpus[g]->n_endpoints;
                gpus[g].endpoints = lease->gpus[g]->endpoints;
            }
        }
        payload.lease_id = lease->id;
        payload.n_gpus = lease->n_gpus;
        payload.gpus = ptrs;
        payload.memory_quota = lease->memory_quota;
        payload.user = lease->user;
        payload.expires_unix = lease->expires_unix;
        token = rgpu_token_sign(s->key, &payload);
    }
    free(gpus);
    free(ptrs);
    return token;
}

/* Keeps a copy of lease (given with a borrowed token) in the state. */
static rgpu_status_t rgpu_sched_lease_keep(rgpu_sched_t *s, const Rgpu__Lease *lease)
{
    Rgpu__Lease *copy = rgpu_sched_copy(&lease->base);

    if (!copy)
        return RGPU_ERR_NOMEM;
    return rgpu_sched_lease_add(s, copy);
}

rgpu_status_t rgpu_sched_alloc(rgpu_sched_t *s, const Rgpu__AllocRequest *req, int64_t now,
                               const Rgpu__Lease **lease_p, char *reason, size_t cap)
{
    Rgpu__Lease lease = RGPU__LEASE__INIT;
    Rgpu__LeaseGpu *gpus = NULL, **ptrs = NULL;
    uint32_t *server = NULL, *pos = NULL;
    rgpu_sched_lease_t *stored;
    rgpu_status_t status;
    int in_txn = 0;
    uint64_t id;

    if (req->count == 0 || req->count > RGPU_SCHED_MAX_COUNT) {
        snprintf(reason, cap, "asked for %u GPUs; ask for 1 to %u", req->count,
                 RGPU_SCHED_MAX_COUNT);
        return RGPU_ERR_INVALID_ARG;
    }
    if (req->ttl_s > s->max_lease_ttl_s) {
        snprintf(reason, cap, "asked for a ttl of %u s; the most is %u s (--max-lease-ttl)",
                 req->ttl_s, s->max_lease_ttl_s);
        return RGPU_ERR_INVALID_ARG;
    }
    if (*req->slurm_job_id) {
        rgpu_sched_job_find_t find = {req->slurm_job_id, NULL};

        rgpu_htable_foreach(&s->leases, rgpu_sched_job_fn, &find);
        if (find.found) {
            *lease_p = find.found->pb;
            return RGPU_OK;
        }
    }
    server = calloc(req->count, sizeof(*server));
    pos = calloc(req->count, sizeof(*pos));
    gpus = calloc(req->count, sizeof(*gpus));
    ptrs = calloc(req->count, sizeof(*ptrs));
    if (!server || !pos || !gpus || !ptrs) {
        status = RGPU_ERR_NOMEM;
        goto out_free;
    }
    status = rgpu__sched_pick(s, req, server, pos, reason, cap);
    if (status != RGPU_OK)
        goto out_free;
    if (s->store) {
        /* The id and the lease commit together: one transaction, one WAL write. */
        status = rgpu__store_begin(s->store);
        if (status == RGPU_OK) {
            in_txn = 1;
            status = rgpu__store_next_id(s->store, &id);
        }
        if (status != RGPU_OK) {
            snprintf(reason, cap, "cannot take a lease id from the store");
            goto out_free;
        }
    } else {
        id = s->next_lease_id++;
    }
    for (uint32_t g = 0; g < req->count; g++) {
        const Rgpu__GpuInfo *info = s->servers[server[g]].reg->gpus[pos[g]];

        rgpu__lease_gpu__init(&gpus[g]);
        gpus[g].server = s->servers[server[g]].reg->address;
        gpus[g].n_endpoints = s->servers[server[g]].reg->n_endpoints;
        gpus[g].endpoints = s->servers[server[g]].reg->endpoints;
        gpus[g].index = info->index;
        gpus[g].model = info->model;
        gpus[g].memory = info->memory;
        ptrs[g] = &gpus[g];
    }
    lease.id = id;
    lease.n_gpus = req->count;
    lease.gpus = ptrs;
    lease.expires_unix = now + (req->ttl_s ? req->ttl_s : s->lease_ttl_s);
    lease.tokens_expire_unix = lease.expires_unix;
    lease.slurm_job_id = req->slurm_job_id;
    lease.user = req->user;
    /* The daemon sets uid/uid_set from what authenticated the request. */
    lease.owner_known = req->uid_set;
    lease.owner_uid = req->uid_set ? req->uid : 0;
    lease.shared = req->shared;
    lease.api = rgpu__sched_api(req->api);
    /* Shared: what the policy reserved on each GPU (never 0: no quota). */
    lease.memory_quota = 0;
    for (uint32_t g = 0; req->shared && g < req->count; g++) {
        uint64_t need = rgpu__policy_shared_need(s, req, gpus[g].memory);

        lease.memory_quota = g == 0 || need < lease.memory_quota ? need : lease.memory_quota;
    }
    lease.token = rgpu_sched_sign(s, &lease);
    if (!lease.token) {
        status = RGPU_ERR_NOMEM;
        goto out_free;
    }
    if (s->store && rgpu__store_put_lease(s->store, &lease) != RGPU_OK) {
        snprintf(reason, cap, "cannot store lease %llu", (unsigned long long)id);
        status = RGPU_ERR_IO;
    }
    if (status == RGPU_OK && in_txn) {
        in_txn = 0;
        status = rgpu__store_end(s->store, 1);
        if (status != RGPU_OK)
            snprintf(reason, cap, "cannot commit lease %llu", (unsigned long long)id);
    }
    if (status == RGPU_OK)
        status = rgpu_sched_lease_keep(s, &lease);
    free(lease.token);
    if (status != RGPU_OK)
        goto out_free;
    stored = rgpu_htable_find(&s->leases, id);
    *lease_p = stored->pb;
    rgpu_debug("sched", "lease %llu: %u GPUs for job \"%s\" of \"%s\"", (unsigned long long)id,
               req->count, req->slurm_job_id, req->user);
out_free:
    if (in_txn)
        rgpu__store_end(s->store, 0);
    free(server);
    free(pos);
    free(gpus);
    free(ptrs);
    return status;
}

static void rgpu_sched_lease_remove(rgpu_sched_t *s, rgpu_sched_lease_t *lease)
{
    rgpu_htable_remove(&s->leases, lease->pb->id);
    rgpu_sched_lease_detach(s, lease);
    rgpu_sched_lease_free(lease);
}

rgpu_status_t rgpu_sched_renew(rgpu_sched_t *s, uint64_t id, uint32_t ttl_s, int64_t now,
                               const Rgpu__Lease **lease_p, char *reason, size_t cap)
{
    rgpu_sched_lease_t *lease = rgpu_htable_find(&s->leases, id);
    Rgpu__Lease *pb;
    char *token, *old;
    int64_t old_expiry, old_tokens;

    if (!lease) {
        snprintf(reason, cap, "no lease %llu", (unsigned long long)id);
        return RGPU_ERR_NOT_FOUND;
    }
    if (ttl_s > s->max_lease_ttl_s) {
        snprintf(reason, cap, "asked for a ttl of %u s; the most is %u s (--max-lease-ttl)",
                 ttl_s, s->max_lease_ttl_s);
        return RGPU_ERR_INVALID_ARG;
    }
    pb = lease->pb;
    old_expiry = pb->expires_unix;
    old_tokens = pb->tokens_expire_unix;
    pb->expires_unix = now + (ttl_s ? ttl_s : s->lease_ttl_s);
    token = rgpu_sched_sign(s, pb);
    if (!token) {
        pb->expires_unix = old_expiry;
        return RGPU_ERR_NOMEM;
    }
    old = pb->token;
    pb->token = token;
    if (pb->expires_unix > pb->tokens_expire_unix)
        pb->tokens_expire_unix = pb->expires_unix;
    if (s->store && rgpu__store_put_lease(s->store, pb) != RGPU_OK) {
        pb->token = old;
        pb->expires_unix = old_expiry;
        pb->tokens_expire_unix = old_tokens;
        free(token);
        snprintf(reason, cap, "cannot store lease %llu", (unsigned long long)id);
        return RGPU_ERR_IO;
    }
    /* The unpacked message's strings come from protobuf-c's allocator
     * (malloc), except an empty one: protobuf-c's static default. */
    if (old != protobuf_c_empty_string)
        free(old);
    *lease_p = pb;
    return RGPU_OK;
}

rgpu_status_t rgpu_sched_release(rgpu_sched_t *s, uint64_t id, const char *job, char *reason,
                                 size_t cap)
{
    rgpu_sched_lease_t *lease = NULL;

    if (id) {
        lease = rgpu_htable_find(&s->leases, id);
    } else if (job && *job) {
        rgpu_sched_job_find_t find = {job, NULL};

        rgpu_htable_foreach(&s->leases, rgpu_sched_job_fn, &find);
        lease = find.found;
    }
    if (!lease) {
        if (id)
            snprintf(reason, cap, "no lease %llu", (unsigned long long)id);
        else
            snprintf(reason, cap, "no lease for job \"%s\"", job ? job : "");
        return RGPU_ERR_NOT_FOUND;
    }
    if (s->store && rgpu__store_del_lease(s->store, lease->pb->id) != RGPU_OK) {
        snprintf(reason, cap, "cannot delete lease %llu from the store",
                 (unsigned long long)lease->pb->id);
        return RGPU_ERR_IO;
    }
    rgpu_debug("sched", "lease %llu released", (unsigned long long)lease->pb->id);
    rgpu_sched_ended_add(s, lease);
    rgpu_sched_lease_remove(s, lease);
    return RGPU_OK;
}

rgpu_status_t rgpu_sched_check_token(rgpu_sched_t *s, uint64_t id, const char *token, int64_t now,
                                     char *reason, size_t cap)
{
    Rgpu__TokenPayload *payload;
    char why[160];
    rgpu_status_t st;

    if (!s->key)
        return RGPU_OK;
    if (!token || !*token) {
        snprintf(reason, cap, "lease %llu: no token; give the lease's token or sign with the "
                              "cluster key", (unsigned long long)id);
        return RGPU_ERR_REFUSED;
    }
    st = rgpu_token_verify(s->key, token, now, &payload, why, sizeof(why));
    if (st != RGPU_OK) {
        snprintf(reason, cap, "lease %llu: %s", (unsigned long long)id, why);
        return RGPU_ERR_REFUSED;
    }
    if (payload->lease_id != id) {
        snprintf(reason, cap, "lease %llu: the token is of lease %llu", (unsigned long long)id,
                 (unsigned long long)payload->lease_id);
        st = RGPU_ERR_REFUSED;
    }
    rgpu__token_payload__free_unpacked(payload, NULL);
    return st;
}

rgpu_status_t rgpu_sched_drain(rgpu_sched_t *s, const char *address, int drain, char *reason,
                               size_t cap)
{
    rgpu_sched_server_t *server = rgpu_sched_server_find(s, address, NULL);

    if (!server) {
        snprintf(reason, cap, "no server %s", address);
        return RGPU_ERR_NOT_FOUND;
    }
    if (s->store && rgpu__store_put_server(s->store, server->reg, drain) != RGPU_OK) {
        snprintf(reason, cap, "cannot store server %s", address);
        return RGPU_ERR_IO;
    }
    server->drained = drain;
    rgpu_info("sched", "server %s %s", address, drain ? "drained" : "resumed");
    return RGPU_OK;
}

typedef struct {
    rgpu_sched_t *s;
    int64_t now;
    uint64_t expired[64];
    unsigned n;
} rgpu_sched_expire_t;

static void rgpu_sched_expire_fn(uint64_t key, void *value, void *arg)
{
    rgpu_sched_expire_t *ex = arg;
    rgpu_sched_lease_t *lease = value;

    if (lease->pb->expires_unix <= ex->now && ex->n < 64)
        ex->expired[ex->n++] = key;
}

unsigned rgpu_sched_tick(rgpu_sched_t *s, int64_t now)
{
    unsigned total = 0;
    char reason[160];

    for (uint32_t i = 0; i < s->nservers; i++) {
        rgpu_sched_server_t *server = &s->servers[i];

        rgpu_sched_ended_prune(server, now);
        if (server->up && now - server->last_seen > (int64_t)s->heartbeat_timeout_s) {
            server->up = 0;
            rgpu_warn("sched", "server %s missed its heartbeats for %lld s: down",
                      server->reg->address, (long long)(now - server->last_seen));
        }
    }
    /* At most 64 per pass (the foreach may not modify the table); loop. */
    for (int pass = 0; pass < 1000; pass++) {
        rgpu_sched_expire_t ex = {s, now, {0}, 0};

        rgpu_htable_foreach(&s->leases, rgpu_sched_expire_fn, &ex);
        for (unsigned i = 0; i < ex.n; i++) {
            rgpu_info("sched", "lease %llu expired: reclaimed", (unsigned long long)ex.expired[i]);
            if (rgpu_sched_release(s, ex.expired[i], NULL, reason, sizeof(reason)) == RGPU_OK)
                total++;
        }
        if (ex.n < 64)
            break;
    }
    return total;
}

/* ---- list ---- */

typedef struct {
    Rgpu__Lease **leases;
    Rgpu__Lease *copies;
    size_t n;
    const rgpu_sched_caller_t *caller;  /* NULL: every lease */
} rgpu_sched_collect_t;

/* Shallow copies (borrowed fields) without the token: a listing is for
 * anyone who may list, a token only for its lease's holder. Only the
 * leases the caller owns (all for NULL or an admin). */
static void rgpu_sched_collect_fn(uint64_t key, void *value, void *arg)
{
    rgpu_sched_collect_t *c = arg;

    (void)key;
    if (!rgpu_sched_caller_owns(c->caller, ((rgpu_sched_lease_t *)value)->pb))
        return;
    c->copies[c->n] = *((rgpu_sched_lease_t *)value)->pb;
    c->copies[c->n].token = (char *)"";
    c->n++;
}

static int rgpu_sched_lease_cmp(const void *a, const void *b)
{
    const Rgpu__Lease *x = a, *y = b;

    return x->id < y->id ? -1 : x->id > y->id;
}

rgpu_status_t rgpu_sched_list(rgpu_sched_t *s, int64_t now, Rgpu__ListReply *reply)
{
    return rgpu_sched_list_as(s, now, NULL, reply);
}

/* Is lease id among the c->n leases collected (sorted by id)? */
static int rgpu_sched_listed(const rgpu_sched_collect_t *c, uint64_t id)
{
    size_t lo = 0, hi = c->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (c->copies[mid].id == id)
            return 1;
        if (c->copies[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

rgpu_status_t rgpu_sched_list_as(rgpu_sched_t *s, int64_t now, const rgpu_sched_caller_t *caller,
                                 Rgpu__ListReply *reply)
{
    size_t ngpus = 0, g = 0, nsessions = 0, nvisible = 0;
    Rgpu__ServerState *servers;
    Rgpu__GpuState *gpus;
    Rgpu__SessionInfo **sessions = NULL;
    rgpu_sched_collect_t c = {NULL, NULL, 0, caller};
    int everything = !caller || caller->admin;

    rgpu__list_reply__init(reply);
    reply->everything = everything;
    for (uint32_t i = 0; i < s->nservers; i++) {
        ngpus += s->servers[i].reg->n_gpus;
        nsessions += s->servers[i].hb ? s->servers[i].hb->n_sessions : 0;
    }
    /* Filtered: each server's visible sessions, in one array of pointers. */
    if (!everything && !(sessions = calloc(nsessions + 1, sizeof(*sessions))))
        return RGPU_ERR_NOMEM;
    servers = calloc(s->nservers + 1, sizeof(*servers));
    gpus = calloc(ngpus + 1, sizeof(*gpus));
    reply->servers = calloc(s->nservers + 1, sizeof(*reply->servers));
    reply->gpus = calloc(ngpus + 1, sizeof(*reply->gpus));
    c.leases = calloc(s->leases.count + 1, sizeof(*c.leases));
    c.copies = calloc(s->leases.count + 1, sizeof(*c.copies));
    if (!servers || !gpus || !reply->servers || !reply->gpus || !c.leases || !c.copies) {
        free(servers);
        free(gpus);
        free(c.leases);
        free(c.copies);
        free(sessions);
        rgpu_sched_list_free(reply);
        return RGPU_ERR_NOMEM;
    }
    rgpu_htable_foreach(&s->leases, rgpu_sched_collect_fn, &c);
    qsort(c.copies, c.n, sizeof(*c.copies), rgpu_sched_lease_cmp);
    for (size_t l = 0; l < c.n; l++)
        c.leases[l] = &c.copies[l];
    reply->leases = c.leases;
    reply->n_leases = c.n;
    for (uint32_t i = 0; i < s->nservers; i++) {
        rgpu_sched_server_t *server = &s->servers[i];

        rgpu__server_state__init(&servers[i]);
        servers[i].address = server->reg->address;
        servers[i].transport = server->reg->transport;
        servers[i].hostname = server->reg->hostname;
        servers[i].n_endpoints = server->reg->n_endpoints;   /* borrowed */
        servers[i].endpoints = server->reg->endpoints;
        servers[i].up = server->up;
        servers[i].drained = server->drained;
        servers[i].last_seen_unix = server->last_seen;
        if (!everything) {  /* the caller's leases' sessions only */
            servers[i].sessions = sessions + nvisible;
            for (size_t x = 0; server->hb && x < server->hb->n_sessions; x++) {
                Rgpu__SessionInfo *info = server->hb->sessions[x];

                if (info->lease_id && rgpu_sched_listed(&c, info->lease_id))
                    sessions[nvisible + servers[i].n_sessions++] = info;
            }
            nvisible += servers[i].n_sessions;
        } else if (server->hb) {   /* borrowed, like the strings */
            servers[i].n_sessions = server->hb->n_sessions;
            servers[i].sessions = server->hb->sessions;
        }
        reply->servers[i] = &servers[i];
        for (size_t p = 0; p < server->reg->n_gpus; p++, g++) {
            rgpu__gpu_state__init(&gpus[g]);
            gpus[g].server = server->reg->address;
            gpus[g].gpu = server->reg->gpus[p];
            gpus[g].memory_reserved = server->use[p].reserved;
            gpus[g].exclusive = server->use[p].exclusive != 0;
            /* Lease ids of this GPU: found by the lease list (small per GPU). */
            for (size_t l = 0; l < c.n; l++) {
                const Rgpu__Lease *lease = c.leases[l];

                for (size_t k = 0; k < lease->n_gpus; k++) {
                    if (lease->gpus[k]->index == server->reg->gpus[p]->index &&
                        strcmp(lease->gpus[k]->server, server->reg->address) == 0) {
                        uint64_t *grown = realloc(gpus[g].leases,
                                                  (gpus[g].n_leases + 1) * sizeof(uint64_t));
                        if (grown) {
                            gpus[g].leases = grown;
                            gpus[g].leases[gpus[g].n_leases++] = lease->id;
                        }
                        break;
                    }
                }
            }
            reply->gpus[g] = &gpus[g];
        }
    }
    reply->n_servers = s->nservers;
    reply->n_gpus = ngpus;
    /* rgpu_sched_list_free finds the arrays through their first entry. */
    if (!s->nservers)
        free(servers);
    if (!ngpus)
        free(gpus);
    if (!c.n)
        free(c.copies);
    if (!everything && !s->nservers)
        free(sessions);
    (void)now;
    return RGPU_OK;
}

void rgpu_sched_list_free(Rgpu__ListReply *reply)
{
    for (size_t g = 0; g < reply->n_gpus; g++)
        free(reply->gpus[g]->leases);
    /* Filtered: the first server's sessions start the one array of them. */
    if (!reply->everything && reply->n_servers)
        free(reply->servers[0]->sessions);
    if (reply->n_servers)
        free(reply->servers[0]);
    if (reply->n_gpus)
        free(reply->gpus[0]);
    if (reply->n_leases)
        free(reply->leases[0]);     /* the copies are one array */
    free(reply->servers);
    free(reply->gpus);
    free(reply->leases);
    reply->servers = NULL;
    reply->gpus = NULL;
    reply->leases = NULL;
    reply->n_servers = reply->n_gpus = reply->n_leases = 0;
}
