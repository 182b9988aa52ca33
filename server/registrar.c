/*
 * The registrar (see registrar.h). Device facts come from the backend's
 * hello_fill of every backend, the same properties clients get: OpenCL's
 * CL_DEVICE_NAME and CL_DEVICE_GLOBAL_MEM_SIZE, the CUDA backend's name and
 * total memory.
 *
 * With the cluster key, a heartbeat reply is believed only when the
 * scheduler signed it (auth trailer over its type, our heartbeat's seq and
 * its body) and it echoes the random nonce of that heartbeat: whoever else
 * answers at the scheduler's address cannot end our sessions, extend a
 * lease, or replay an old reply. Others are ignored with a warning.
 */
#include "registrar.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cuda.pb-c.h"
#include "rgpu/log.h"
#include "rgpu/wire.h"
#include "scheduler.pb-c.h"

#define RGPU_REGISTRAR_CL_DEVICE_NAME 0x102B
#define RGPU_REGISTRAR_CL_DEVICE_GLOBAL_MEM_SIZE 0x101F
/* The CUDA backends' name and total memory properties (server/cuda/). */
#define RGPU_REGISTRAR_CUDA_DEVICE_NAME RGPU__CU_DEVICE_PARAM__CU_PARAM_NAME
#define RGPU_REGISTRAR_CUDA_DEVICE_TOTAL_MEM RGPU__CU_DEVICE_PARAM__CU_PARAM_TOTAL_MEM
#define RGPU_REGISTRAR_REPLY_TIMEOUT_MS 10000
/* A signed heartbeat reply's time may be this far from ours. */
#define RGPU_REGISTRAR_MAX_SKEW_S 60

struct rgpu_registrar {
    uv_timer_t timer;
    uv_work_t work;
    rgpu_server_t *server;
    char addr[256];
    pthread_mutex_t link_lock;  /* guards link: the loop may shut it down while the worker uses it */
    rgpu_link_t *link;          /* to the scheduler, kept between exchanges */
    rgpu_wire_rx_t rx;          /* link's replies (worker thread) */
    int busy;                   /* an exchange is queued or running */
    uint64_t busy_since;        /* uv_now when it was queued */
    int stopping;
    int timer_closed;
    int registered;             /* the scheduler knows us */
    int ignored;                /* the last heartbeat reply was not believed */
    uint64_t seq;               /* of the last request sent (worker thread) */
    rgpu_status_t status;       /* of the last exchange (worker -> loop) */
    rgpu_status_t last_status;  /* what was last logged */
    char why[256];
};

static void rgpu_registrar_maybe_free(rgpu_registrar_t *r)
{
    if (r->stopping && r->timer_closed && !r->busy) {
        if (r->link) {
            rgpu_wire_rx_fini(&r->rx);
            rgpu_link_close(r->link);
        }
        pthread_mutex_destroy(&r->link_lock);
        free(r);
    }
}

/* Drops the link to the scheduler after a failed exchange; why (NULL or
 * "": the status's words) is kept for the log. Worker thread. */
static void rgpu_registrar_disconnect(rgpu_registrar_t *r, rgpu_status_t st, const char *why)
{
    rgpu_link_t *link;

    snprintf(r->why, sizeof(r->why), "%s", why && *why ? why : rgpu_status_str(st));
    rgpu_wire_rx_fini(&r->rx);
    pthread_mutex_lock(&r->link_lock);
    link = r->link;
    r->link = NULL;
    pthread_mutex_unlock(&r->link_lock);
    rgpu_link_close(link);
}

/* One request; its reply, of reply_type, unpacked with desc into *reply_p
 * (caller frees). With signed (may be NULL), the reply must carry the
 * scheduler's auth trailer: *signed is 1 when it does and it verifies with
 * the cluster key, else 0 with r->why saying why. Worker thread. */
static rgpu_status_t rgpu_registrar_call(rgpu_registrar_t *r, uint16_t type,
                                         const ProtobufCMessage *msg, uint16_t reply_type,
                                         const ProtobufCMessageDescriptor *desc,
                                         ProtobufCMessage **reply_p, int *signed_p)
{
    /* A reply's only bulk is the scheduler's auth trailer. */
    const rgpu_frame_limits_t limits = {16u << 20, RGPU_REQUEST_AUTH_LEN};
    rgpu_wire_frame_t f;
    uint8_t trailer[RGPU_REQUEST_AUTH_LEN];
    uint64_t seq = ++r->seq;
    char reason[256] = "";
    rgpu_status_t st;

    if (!r->link) {
        rgpu_link_t *link;
        const rgpu_transport_ops_t *ops;
        const char *bare;

        st = rgpu_transport_for_address(r->addr, &ops, &bare, r->why, sizeof(r->why));
        if (st == RGPU_OK)
            st = ops->connect(bare, 2000, &link, r->why, sizeof(r->why));
        if (st != RGPU_OK)
            return st;
        pthread_mutex_lock(&r->link_lock);
        r->link = link;
        pthread_mutex_unlock(&r->link_lock);
        rgpu_wire_rx_init(&r->rx, link, &limits,
                          RGPU_FRAME_HEADER_SIZE + (uint64_t)limits.max_body + limits.max_bulk);
    }
    if (r->server->lease_key) {
        /* Signed with the cluster key: a scheduler started with --key takes
         * registrations and heartbeats only from servers holding it. */
        st = rgpu_token_sign_message(r->server->lease_key, type, (uint32_t)seq, msg,
                                     (int64_t)time(NULL), trailer);
        if (st == RGPU_OK)
            st = rgpu_wire_send(r->link, type, seq, 0, msg, trailer, sizeof(trailer));
    } else {
        st = rgpu_wire_send(r->link, type, seq, 0, msg, NULL, 0);
    }
    if (st != RGPU_OK)
        snprintf(reason, sizeof(reason), "%s", rgpu_link_reason(r->link));
    else
        st = rgpu_wire_recv(&r->rx, &f, RGPU_REGISTRAR_REPLY_TIMEOUT_MS, reason, sizeof(reason));
    if (st == RGPU_ERR_TIMEOUT)
        snprintf(reason, sizeof(reason), "no reply within %d s",
                 RGPU_REGISTRAR_REPLY_TIMEOUT_MS / 1000);
    if (st == RGPU_OK && (f.header.type != reply_type || f.header.seq != seq ||
                          (f.header.bulk_len && f.header.bulk_len != RGPU_REQUEST_AUTH_LEN))) {
        st = RGPU_ERR_PROTOCOL;
        snprintf(reason, sizeof(reason), "answered request %llu of type %u with a frame of type "
                 "%u, seq %llu and %llu bytes of bulk", (unsigned long long)seq, type,
                 f.header.type, (unsigned long long)f.header.seq,
                 (unsigned long long)f.header.bulk_len);
    }
    if (st != RGPU_OK) {
        rgpu_registrar_disconnect(r, st, reason);
        return st;
    }
    if (f.header.bulk_len)
        memcpy(trailer, f.bulk, sizeof(trailer));
    if (signed_p) {
        char why[128];

        *signed_p = 0;
        if (!r->server->lease_key)
            snprintf(r->why, sizeof(r->why), "no cluster key to check the reply with");
        else if (!f.header.bulk_len)
            snprintf(r->why, sizeof(r->why), "its reply is not signed with the cluster key");
        else if (rgpu_token_verify_request(r->server->lease_key, reply_type, (uint32_t)seq, f.body,
                                           f.header.body_len, trailer, (int64_t)time(NULL),
                                           RGPU_REGISTRAR_MAX_SKEW_S, why, sizeof(why)) != RGPU_OK)
            snprintf(r->why, sizeof(r->why), "its reply fails the cluster key's check: %s", why);
        else
            *signed_p = 1;
    }
    *reply_p = protobuf_c_message_unpack(desc, NULL, f.header.body_len, f.body);
    return *reply_p ? RGPU_OK : RGPU_ERR_BAD_MESSAGE;
}

/* A request answered by a SchedStatus. Worker thread. */
static rgpu_status_t rgpu_registrar_call_status(rgpu_registrar_t *r, uint16_t type,
                                                const ProtobufCMessage *msg)
{
    Rgpu__SchedStatus *reply;
    rgpu_status_t st;

    st = rgpu_registrar_call(r, type, msg, RGPU__MSG_TYPE__MSG_SCHED_STATUS,
                             &rgpu__sched_status__descriptor, (ProtobufCMessage **)&reply, NULL);
    if (st != RGPU_OK)
        return st;
    st = (rgpu_status_t)reply->status;
    snprintf(r->why, sizeof(r->why), "%s", reply->reason);
    rgpu__sched_status__free_unpacked(reply, NULL);
    return st;
}

/* Heartbeat: tells the scheduler the open sessions, and learns which of
 * their leases are still alive and until when, and which ended. With the
 * cluster key, a reply not signed by it or not echoing this heartbeat's
 * nonce is ignored: RGPU_ERR_REFUSED, r->ignored set, r->why says why.
 * Worker thread. */
static rgpu_status_t rgpu_registrar_heartbeat(rgpu_registrar_t *r)
{
    Rgpu__Heartbeat hb = RGPU__HEARTBEAT__INIT;
    Rgpu__SessionInfo *infos = NULL, **ptrs = NULL;
    Rgpu__HeartbeatReply *reply = NULL;
    rgpu_session_info_t *sessions;
    uint64_t asked_at_ms = rgpu_server_clock_ms();
    size_t n = rgpu_server_sessions_snapshot(r->server, &sessions);
    rgpu_status_t st;
    int is_signed = 0;

    if (n) {
        infos = calloc(n, sizeof(*infos));
        ptrs = calloc(n, sizeof(*ptrs));
        if (!infos || !ptrs) {
            st = RGPU_ERR_NOMEM;
            goto out_free;
        }
    }
    for (size_t i = 0; i < n; i++) {
        rgpu__session_info__init(&infos[i]);
        infos[i].session_id = sessions[i].id;
        infos[i].client_arch = sessions[i].client_arch;
        infos[i].client_host = sessions[i].client_host;
        infos[i].client_pid = sessions[i].client_pid;
        infos[i].lease_id = sessions[i].lease_id;
        infos[i].memory_bytes = sessions[i].memory;
        infos[i].started_unix = sessions[i].started_unix;
        ptrs[i] = &infos[i];
    }
    hb.address = r->server->advertise;
    hb.n_sessions = n;
    hb.sessions = ptrs;
    if (getrandom(&hb.nonce, sizeof(hb.nonce), 0) != (ssize_t)sizeof(hb.nonce))
        hb.nonce = ((uint64_t)time(NULL) << 20) ^ r->seq ^ (uint64_t)(uintptr_t)r;
    st = rgpu_registrar_call(r, RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT, &hb.base,
                             RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT_REPLY,
                             &rgpu__heartbeat_reply__descriptor, (ProtobufCMessage **)&reply,
                             r->server->lease_key ? &is_signed : NULL);
    if (st != RGPU_OK)
        goto out_free;
    if (r->server->lease_key && (!is_signed || reply->nonce != hb.nonce)) {
        if (is_signed)
            snprintf(r->why, sizeof(r->why), "its reply answers another heartbeat (nonce)");
        r->ignored = 1;
        st = RGPU_ERR_REFUSED;
        rgpu__heartbeat_reply__free_unpacked(reply, NULL);
        goto out_free;
    }
    st = (rgpu_status_t)reply->status;
    snprintf(r->why, sizeof(r->why), "%s", reply->reason);
    if (st == RGPU_OK && r->server->lease_key) {
        uint64_t *ids = calloc(reply->n_leases + 1, sizeof(*ids));
        int64_t *expires = calloc(reply->n_leases + 1, sizeof(*expires));

        if (ids && expires) {
            for (size_t i = 0; i < reply->n_leases; i++) {
                ids[i] = reply->leases[i]->lease_id;
                expires[i] = reply->leases[i]->expires_unix;
            }
            rgpu_server_leases_update(r->server, ids, expires, reply->n_leases, asked_at_ms);
        }
        free(ids);
        free(expires);
        /* After the update (which ends the sessions of leases no longer
         * listed): the ended ones' tokens are refused from now on. */
        if (reply->n_ended_leases)
            rgpu_server_leases_ended(r->server, reply->ended_leases, reply->n_ended_leases);
    }
    rgpu__heartbeat_reply__free_unpacked(reply, NULL);
out_free:
    free(infos);
    free(ptrs);
    free(sessions);
    return st;
}

/* One GPU as registered: its index on this server, the APIs serving it. */
typedef struct {
    uint32_t index;
    Rgpu__ApiFamily apis[RGPU_SERVER_MAX_BACKENDS];
    size_t n_apis;
    char model[256];
    uint64_t memory;
} rgpu_registrar_gpu_t;

/* Takes a device's model and memory from the properties its backend
 * reports (OpenCL's CL_DEVICE_*, or the CUDA backend's own numbering). */
static void rgpu_registrar_device_facts(Rgpu__ApiFamily api, const Rgpu__Device *dev,
                                        rgpu_registrar_gpu_t *gpu)
{
    uint32_t name_param = RGPU_REGISTRAR_CL_DEVICE_NAME;
    uint32_t mem_param = RGPU_REGISTRAR_CL_DEVICE_GLOBAL_MEM_SIZE;

    if (api == RGPU__API_FAMILY__API_CUDA) {
        name_param = RGPU_REGISTRAR_CUDA_DEVICE_NAME;
        mem_param = RGPU_REGISTRAR_CUDA_DEVICE_TOTAL_MEM;
    }
    for (size_t p = 0; p < dev->n_params; p++) {
        const ProtobufCBinaryData *v = &dev->params[p]->value;

        if (dev->params[p]->param == name_param && !gpu->model[0])
            snprintf(gpu->model, sizeof(gpu->model), "%.*s", (int)strnlen((const char *)v->data,
                     v->len), (const char *)v->data);
        else if (dev->params[p]->param == mem_param && v->len == sizeof(uint64_t) && !gpu->memory)
            memcpy(&gpu->memory, v->data, sizeof(uint64_t));
    }
}

/* Registers the union of every backend's devices, by server index: a GPU
 * that OpenCL and CUDA both serve is one GPU with two APIs. */
static rgpu_status_t rgpu_registrar_register(rgpu_registrar_t *r)
{
    Rgpu__RegisterServer reg = RGPU__REGISTER_SERVER__INIT;
    rgpu_server_t *server = r->server;
    char *endpoints[RGPU_SERVER_MAX_LISTEN];
    rgpu_registrar_gpu_t *all = NULL;
    Rgpu__GpuInfo *gpus = NULL, **ptrs = NULL;
    size_t n = 0, cap = 0;
    rgpu_status_t st;

    for (size_t b = 0; b < server->n_backends; b++) {
        Rgpu__HelloReply hello = RGPU__HELLO_REPLY__INIT;
        Rgpu__ApiFamily api = server->backends[b].ops->api;

        server->backends[b].ops->hello_fill(server->backends[b].backend, &hello);
        for (size_t d = 0; d < hello.n_devices; d++) {
            const Rgpu__Device *dev = hello.devices[d];
            rgpu_registrar_gpu_t *gpu = NULL;

            for (size_t i = 0; i < n && !gpu; i++)
                if (all[i].index == dev->index)
                    gpu = &all[i];
            if (!gpu) {
                if (n == cap) {
                    size_t ncap = cap ? 2 * cap : 8;
                    rgpu_registrar_gpu_t *grown = realloc(all, ncap * sizeof(*all));

                    if (!grown) {
                        st = RGPU_ERR_NOMEM;
                        goto out_free;
                    }
                    all = grown;
                    cap = ncap;
                }
                gpu = &all[n++];
                memset(gpu, 0, sizeof(*gpu));
                gpu->index = dev->index;
            }
            if (gpu->n_apis < RGPU_SERVER_MAX_BACKENDS)
                gpu->apis[gpu->n_apis++] = api;
            rgpu_registrar_device_facts(api, dev, gpu);
        }
    }
    gpus = calloc(n + 1, sizeof(*gpus));
    ptrs = calloc(n + 1, sizeof(*ptrs));
    if (!gpus || !ptrs) {
        st = RGPU_ERR_NOMEM;
        goto out_free;
    }
    for (size_t d = 0; d < n; d++) {
        rgpu__gpu_info__init(&gpus[d]);
        gpus[d].index = all[d].index;
        gpus[d].model = all[d].model;
        gpus[d].memory = all[d].memory;
        gpus[d].n_apis = all[d].n_apis;
        gpus[d].apis = all[d].apis;
        ptrs[d] = &gpus[d];
    }
    reg.address = server->advertise;
    /* The transport of the advertise address (the server's identity);
     * endpoints lists every address it listens on, TCP and verbs. */
    reg.transport = (char *)(strncmp(server->advertise, "verbs://", 8) == 0 ? "verbs" : "tcp");
    for (size_t e = 0; e < server->n_endpoints; e++)
        endpoints[e] = (char *)server->endpoints[e];
    reg.n_endpoints = server->n_endpoints;
    reg.endpoints = endpoints;
    reg.hostname = server->hostname;
    reg.n_gpus = n;
    reg.gpus = ptrs;
    st = rgpu_registrar_call_status(r, RGPU__MSG_TYPE__MSG_SCHED_REGISTER, &reg.base);
out_free:
    free(all);
    free(gpus);
    free(ptrs);
    return st;
}

static void rgpu_registrar_work(uv_work_t *work)
{
    rgpu_registrar_t *r = work->data;

    r->why[0] = '\0';
    r->ignored = 0;
    if (r->registered) {
        r->status = rgpu_registrar_heartbeat(r);
        /* A reply not believed says nothing: still registered as far as we know. */
        if (r->status == RGPU_OK || r->ignored)
            return;
        r->registered = 0;
        if (r->status != RGPU_ERR_NOT_FOUND)
            return;
    }
    r->status = rgpu_registrar_register(r);
    r->registered = r->status == RGPU_OK;
}

static void rgpu_registrar_after(uv_work_t *work, int status)
{
    rgpu_registrar_t *r = work->data;

    r->busy = 0;
    if (!r->stopping && r->status != r->last_status) {
        if (r->status == RGPU_OK)
            rgpu_info("registrar", "registered %s with scheduler %s", r->server->advertise,
                      r->addr);
        else if (r->ignored)
            rgpu_warn("registrar", "scheduler %s: heartbeat reply ignored: %s", r->addr, r->why);
        else
            rgpu_warn("registrar", "scheduler %s: %s (retrying every %d s)", r->addr,
                      *r->why ? r->why : rgpu_status_str(r->status),
                      RGPU_REGISTRAR_INTERVAL_MS / 1000);
        r->last_status = r->status;
    }
    rgpu_registrar_maybe_free(r);
}

static void rgpu_registrar_tick(uv_timer_t *timer)
{
    rgpu_registrar_t *r = timer->data;

    if (r->stopping)
        return;
    if (r->busy) {
        /* The worker's receive gives up after RGPU_REGISTRAR_REPLY_TIMEOUT_MS,
         * but a reply that came in part (fragments) is waited for without
         * a limit: a scheduler that stalls there must not stall heartbeats
         * either. Drop the link, the worker's receive fails and the next
         * tick reconnects. */
        if (uv_now(timer->loop) - r->busy_since > RGPU_REGISTRAR_REPLY_TIMEOUT_MS) {
            pthread_mutex_lock(&r->link_lock);
            if (r->link)
                rgpu_link_shutdown(r->link);
            pthread_mutex_unlock(&r->link_lock);
        }
        return;
    }
    r->busy = 1;
    r->busy_since = uv_now(timer->loop);
    if (uv_queue_work(timer->loop, &r->work, rgpu_registrar_work, rgpu_registrar_after) != 0)
        r->busy = 0;
}

rgpu_status_t rgpu_registrar_start(uv_loop_t *loop, rgpu_server_t *server, const char *addr,
                                   rgpu_registrar_t **registrar_p)
{
    rgpu_registrar_t *r = calloc(1, sizeof(*r));

    if (!r)
        return RGPU_ERR_NOMEM;
    r->server = server;
    pthread_mutex_init(&r->link_lock, NULL);
    r->last_status = 1;     /* not a status: the first outcome is logged */
    snprintf(r->addr, sizeof(r->addr), "%s", addr);
    r->work.data = r;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, rgpu_registrar_tick, 0, RGPU_REGISTRAR_INTERVAL_MS);
    *registrar_p = r;
    return RGPU_OK;
}

static void rgpu_registrar_timer_closed(uv_handle_t *handle)
{
    rgpu_registrar_t *r = handle->data;

    r->timer_closed = 1;
    rgpu_registrar_maybe_free(r);
}

void rgpu_registrar_stop(rgpu_registrar_t *registrar)
{
    if (!registrar)
        return;
    registrar->stopping = 1;
    /* A worker blocked on a silent scheduler returns at once. */
    pthread_mutex_lock(&registrar->link_lock);
    if (registrar->link)
        rgpu_link_shutdown(registrar->link);
    pthread_mutex_unlock(&registrar->link_lock);
    uv_timer_stop(&registrar->timer);
    uv_close((uv_handle_t *)&registrar->timer, rgpu_registrar_timer_closed);
}
