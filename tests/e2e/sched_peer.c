/*
 * sched_peer: speaks the scheduler protocol to a real rgpu-scheduler for
 * the end-to-end tests, signing requests with the cluster key like a GPU
 * server's registrar or an operator would.
 *
 *   sched_peer ADDR KEY register N G        register servers 127.0.0.1:20001..N, G GPUs each
 *   sched_peer ADDR KEY heartbeat SERVER LEASE ARCH...
 *                                           one heartbeat with a session per ARCH (on LEASE);
 *                                           prints "lease ID EXPIRES" per lease in the reply
 *                                           and "ended ID" per ended lease; with a KEY the
 *                                           reply must be signed with it and echo the
 *                                           heartbeat's nonce (else exit 1, saying why)
 *   sched_peer LISTEN KEY fake-scheduler unsigned|wrong-nonce
 *                                           a scheduler impostor on LISTEN (prints "listening
 *                                           on PORT"): registrations get status 0, heartbeats a
 *                                           reply listing no lease and ending lease 1, either
 *                                           unsigned or signed but echoing another nonce (a
 *                                           replay); a server with the key must ignore them
 *   sched_peer ADDR KEY drain SERVER [bad|skew SECONDS|unsigned]
 *                                           a drain request, signed (or tampered, skewed,
 *                                           unsigned); prints "status N: reason"
 *   sched_peer ADDR KEY load CLIENTS ROUNDS N
 *                                           CLIENTS threads alloc N exclusive GPUs, hold them
 *                                           briefly, release, ROUNDS times; exits 1 when a GPU
 *                                           was granted to two holders at once, a refusal
 *                                           came without a reason, or a release failed
 *
 * With SCHED_PEER_JOURNAL=FILE, load appends "granted ID" once a lease is
 * granted, "releasing ID" before its release is sent and "released ID" once
 * that is acknowledged (the restart
 * check of e2e.scheduler_load compares them with what survived).
 *
 * KEY "-" sends everything unsigned. Exit status 0 on success, 1 on a
 * failed check or a request error, 2 on bad usage.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "rgpu/frame.h"
#include "rgpu/token.h"
#include "rgpu/util.h"
#include "rgpu/wire.h"
#include "scheduler.pb-c.h"
#include "session.pb-c.h"

static const char *peer_addr;
static rgpu_token_key_t peer_key;
static int peer_signed;

enum { PEER_SIGNED, PEER_BAD, PEER_UNSIGNED };

/* The last reply's auth trailer (peer_call's caller checks it) and seq. */
static __thread uint8_t peer_trailer[RGPU_REQUEST_AUTH_LEN];
static __thread int peer_has_trailer;
static __thread uint64_t peer_last_seq;

static int peer_connect(void)
{
    char host[256];
    uint16_t port;
    struct sockaddr_in sa;
    int fd, one = 1;

    if (rgpu_addr_split(peer_addr, host, sizeof(host), &port) != RGPU_OK)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int peer_io(int fd, void *buf, size_t len, int out)
{
    uint8_t *p = buf;

    while (len) {
        ssize_t n = out ? write(fd, p, len) : read(fd, p, len);

        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One request on fd; returns the unpacked reply or NULL. skew shifts the
 * signing time. */
static void *peer_call(int fd, uint16_t type, const ProtobufCMessage *msg, uint16_t reply_type,
                       const ProtobufCMessageDescriptor *desc, int mode, int64_t skew)
{
    static __thread uint64_t seq;
    int sign = peer_signed && mode != PEER_UNSIGNED;
    size_t len = rgpu_frame_packed_size(msg);
    uint8_t *buf = malloc(len + RGPU_REQUEST_AUTH_LEN), head[RGPU_FRAME_HEADER_SIZE], *body;
    rgpu_frame_header_t h;
    void *reply = NULL;

    if (!buf)
        return NULL;
    seq++;
    len = rgpu_frame_pack(buf, type, seq, 0, msg, sign ? RGPU_REQUEST_AUTH_LEN : 0);
    if (sign) {
        rgpu_token_sign_request(&peer_key, type, (uint32_t)seq, buf + RGPU_FRAME_HEADER_SIZE,
                                len - RGPU_FRAME_HEADER_SIZE, (int64_t)time(NULL) + skew,
                                buf + len);
        if (mode == PEER_BAD)
            buf[len + 20] ^= 1;
        len += RGPU_REQUEST_AUTH_LEN;
    }
    peer_last_seq = seq;
    peer_has_trailer = 0;
    if (peer_io(fd, buf, len, 1) != 0 || peer_io(fd, head, sizeof(head), 0) != 0 ||
        rgpu_frame_header_decode(head, NULL, &h) != RGPU_OK || h.type != reply_type ||
        h.seq != seq || (h.bulk_len && h.bulk_len != RGPU_REQUEST_AUTH_LEN)) {
        free(buf);
        return NULL;
    }
    body = malloc(h.body_len + 1);
    if (body && peer_io(fd, body, h.body_len, 0) == 0 &&
        (!h.bulk_len || peer_io(fd, peer_trailer, sizeof(peer_trailer), 0) == 0)) {
        reply = protobuf_c_message_unpack(desc, NULL, h.body_len, body);
        /* Signed replies (heartbeats): checked here, over the body as sent. */
        if (reply && h.bulk_len)
            peer_has_trailer = peer_signed && rgpu_token_verify_request(
                                                  &peer_key, reply_type, (uint32_t)seq, body,
                                                  h.body_len, peer_trailer, (int64_t)time(NULL),
                                                  60, NULL, 0) == RGPU_OK ? 1 : -1;
    }
    free(body);
    free(buf);
    return reply;
}

static int peer_register(unsigned n, unsigned g)
{
    int fd = peer_connect();

    if (fd < 0)
        return 1;
    for (unsigned i = 1; i <= n; i++) {
        Rgpu__RegisterServer reg = RGPU__REGISTER_SERVER__INIT;
        Rgpu__GpuInfo gpus[64], *ptrs[64];
        Rgpu__ApiFamily apis[1] = {RGPU__API_FAMILY__API_OPENCL};
        Rgpu__SchedStatus *st;
        char addr[64];

        for (unsigned k = 0; k < g && k < 64; k++) {
            rgpu__gpu_info__init(&gpus[k]);
            gpus[k].index = k;
            gpus[k].model = (char *)"fake-gpu";
            gpus[k].memory = 8ull << 30;
            gpus[k].n_apis = 1;
            gpus[k].apis = apis;
            ptrs[k] = &gpus[k];
        }
        snprintf(addr, sizeof(addr), "127.0.0.1:%u", 20000 + i);
        reg.address = addr;
        reg.transport = (char *)"tcp";
        reg.hostname = (char *)"fake";
        reg.n_gpus = g < 64 ? g : 64;
        reg.gpus = ptrs;
        st = peer_call(fd, RGPU__MSG_TYPE__MSG_SCHED_REGISTER, &reg.base,
                       RGPU__MSG_TYPE__MSG_SCHED_STATUS, &rgpu__sched_status__descriptor,
                       PEER_SIGNED, 0);
        if (!st || st->status) {
            fprintf(stderr, "sched_peer: register %s: %s\n", addr, st ? st->reason : "no reply");
            close(fd);
            return 1;
        }
        rgpu__sched_status__free_unpacked(st, NULL);
    }
    close(fd);
    return 0;
}

static int peer_heartbeat(const char *server, uint64_t lease, int narch, char **arch)
{
    Rgpu__Heartbeat hb = RGPU__HEARTBEAT__INIT;
    Rgpu__SessionInfo si[16], *sp[16];
    Rgpu__HeartbeatReply *r;
    int fd = peer_connect(), rc = 0;

    if (fd < 0)
        return 1;
    for (int i = 0; i < narch && i < 16; i++) {
        rgpu__session_info__init(&si[i]);
        si[i].session_id = 100 + (uint64_t)i;
        si[i].client_arch = arch[i];
        si[i].client_host = (char *)"node-a";
        si[i].client_pid = 4000 + (uint32_t)i;
        si[i].lease_id = lease;
        si[i].memory_bytes = (uint64_t)(i + 1) << 20;
        si[i].started_unix = (int64_t)time(NULL);
        sp[i] = &si[i];
    }
    hb.address = (char *)server;
    hb.n_sessions = (size_t)(narch < 16 ? narch : 16);
    hb.sessions = sp;
    if (getrandom(&hb.nonce, sizeof(hb.nonce), 0) != (ssize_t)sizeof(hb.nonce))
        return 1;
    r = peer_call(fd, RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT, &hb.base,
                  RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT_REPLY, &rgpu__heartbeat_reply__descriptor,
                  PEER_SIGNED, 0);
    close(fd);
    if (!r)
        return 1;
    if (peer_signed && peer_has_trailer != 1) {
        printf("heartbeat reply %s\n", peer_has_trailer ? "badly signed" : "not signed");
        rgpu__heartbeat_reply__free_unpacked(r, NULL);
        return 1;
    }
    if (peer_signed && r->nonce != hb.nonce) {
        printf("heartbeat reply echoes nonce %llu, not %llu\n", (unsigned long long)r->nonce,
               (unsigned long long)hb.nonce);
        rgpu__heartbeat_reply__free_unpacked(r, NULL);
        return 1;
    }
    for (size_t i = 0; i < r->n_ended_leases; i++)
        printf("ended %llu\n", (unsigned long long)r->ended_leases[i]);
    if (r->status) {
        printf("status %d: %s\n", r->status, r->reason);
        rc = 1;
    }
    for (size_t i = 0; i < r->n_leases; i++)
        printf("lease %llu %lld\n", (unsigned long long)r->leases[i]->lease_id,
               (long long)r->leases[i]->expires_unix);
    rgpu__heartbeat_reply__free_unpacked(r, NULL);
    return rc;
}

static int peer_drain(const char *server, int mode, int64_t skew)
{
    Rgpu__DrainRequest req = RGPU__DRAIN_REQUEST__INIT;
    Rgpu__SchedStatus *st;
    int fd = peer_connect();

    if (fd < 0)
        return 1;
    req.address = (char *)server;
    req.drain = 1;
    st = peer_call(fd, RGPU__MSG_TYPE__MSG_SCHED_DRAIN, &req.base,
                   RGPU__MSG_TYPE__MSG_SCHED_STATUS, &rgpu__sched_status__descriptor, mode, skew);
    close(fd);
    if (!st)
        return 1;
    printf("status %d: %s\n", st->status, st->reason);
    rgpu__sched_status__free_unpacked(st, NULL);
    return 0;
}

/* ---- load: concurrent clients ---- */

#define PEER_MAX_GPUS 4096

static pthread_mutex_t held_lock = PTHREAD_MUTEX_INITIALIZER;
static char held[PEER_MAX_GPUS];          /* by (server port - 20001) * 64 + index */
static unsigned load_rounds, load_count;
static unsigned long granted, refused, failures;
static FILE *journal;

static void peer_journal(const char *what, uint64_t id)
{
    if (!journal)
        return;
    pthread_mutex_lock(&held_lock);
    fprintf(journal, "%s %llu\n", what, (unsigned long long)id);
    fflush(journal);
    pthread_mutex_unlock(&held_lock);
}

static int peer_gpu_slot(const Rgpu__LeaseGpu *g)
{
    const char *colon = strrchr(g->server, ':');
    long port = colon ? strtol(colon + 1, NULL, 10) : 0;

    if (port <= 20000 || port > 20000 + PEER_MAX_GPUS / 64 || g->index >= 64)
        return -1;
    return (int)((port - 20001) * 64 + g->index);
}

static void *peer_load_thread(void *arg)
{
    int fd = peer_connect();
    unsigned id = (unsigned)(uintptr_t)arg;

    if (fd < 0) {
        __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
        return NULL;
    }
    for (unsigned r = 0; r < load_rounds; r++) {
        Rgpu__AllocRequest req = RGPU__ALLOC_REQUEST__INIT;
        Rgpu__ReleaseRequest rel = RGPU__RELEASE_REQUEST__INIT;
        Rgpu__LeaseReply *lr;
        Rgpu__SchedStatus *st;
        char user[32];
        int bad = 0;

        snprintf(user, sizeof(user), "load%u", id);
        req.count = load_count;
        req.user = user;
        lr = peer_call(fd, RGPU__MSG_TYPE__MSG_SCHED_ALLOC, &req.base,
                       RGPU__MSG_TYPE__MSG_SCHED_LEASE_REPLY, &rgpu__lease_reply__descriptor,
                       PEER_SIGNED, 0);
        if (!lr) {
            fprintf(stderr, "sched_peer: client %u: alloc got no reply\n", id);
            __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
            break;
        }
        if (lr->status) {
            if (!*lr->reason) {
                fprintf(stderr, "sched_peer: client %u: refused without a reason\n", id);
                __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
            }
            __atomic_add_fetch(&refused, 1, __ATOMIC_RELAXED);
            rgpu__lease_reply__free_unpacked(lr, NULL);
            continue;
        }
        __atomic_add_fetch(&granted, 1, __ATOMIC_RELAXED);
        peer_journal("granted", lr->lease->id);
        /* No GPU of this lease may be held by anyone else right now. */
        pthread_mutex_lock(&held_lock);
        for (size_t g = 0; g < lr->lease->n_gpus; g++) {
            int slot = peer_gpu_slot(lr->lease->gpus[g]);

            if (slot < 0 || held[slot]) {
                fprintf(stderr, "sched_peer: lease %llu got %s/%u, held by another lease\n",
                        (unsigned long long)lr->lease->id, lr->lease->gpus[g]->server,
                        lr->lease->gpus[g]->index);
                bad = 1;
            } else {
                held[slot] = 1;
            }
        }
        if (lr->lease->n_gpus != load_count) {
            fprintf(stderr, "sched_peer: lease %llu has %zu GPUs, asked %u\n",
                    (unsigned long long)lr->lease->id, lr->lease->n_gpus, load_count);
            bad = 1;
        }
        pthread_mutex_unlock(&held_lock);
        if (bad)
            __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
        usleep(1000);
        /* Marked free before the release is sent: once released, another
         * client may get the GPU at once. */
        pthread_mutex_lock(&held_lock);
        for (size_t g = 0; g < lr->lease->n_gpus; g++) {
            int slot = peer_gpu_slot(lr->lease->gpus[g]);

            if (slot >= 0 && !bad)
                held[slot] = 0;
        }
        pthread_mutex_unlock(&held_lock);
        rel.lease_id = lr->lease->id;
        peer_journal("releasing", rel.lease_id);
        st = peer_call(fd, RGPU__MSG_TYPE__MSG_SCHED_RELEASE, &rel.base,
                       RGPU__MSG_TYPE__MSG_SCHED_STATUS, &rgpu__sched_status__descriptor,
                       PEER_SIGNED, 0);
        if (!st || st->status) {
            fprintf(stderr, "sched_peer: release %llu: %s\n", (unsigned long long)rel.lease_id,
                    st ? st->reason : "no reply");
            __atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
        } else {
            peer_journal("released", rel.lease_id);
        }
        if (st)
            rgpu__sched_status__free_unpacked(st, NULL);
        rgpu__lease_reply__free_unpacked(lr, NULL);
    }
    close(fd);
    return NULL;
}

static int peer_load(unsigned clients, unsigned rounds, unsigned count)
{
    pthread_t *t = calloc(clients, sizeof(*t));

    if (!t)
        return 1;
    if (getenv("SCHED_PEER_JOURNAL") && !(journal = fopen(getenv("SCHED_PEER_JOURNAL"), "a")))
        return 1;
    load_rounds = rounds;
    load_count = count;
    for (unsigned i = 0; i < clients; i++)
        if (pthread_create(&t[i], NULL, peer_load_thread, (void *)(uintptr_t)i) != 0)
            return 1;
    for (unsigned i = 0; i < clients; i++)
        pthread_join(t[i], NULL);
    free(t);
    if (journal)
        fclose(journal);
    printf("granted %lu refused %lu failures %lu\n", granted, refused, failures);
    return failures ? 1 : 0;
}

/* ---- fake-scheduler: an impostor at the scheduler's address ---- */

static int peer_fake_reply(int fd, uint16_t type, uint64_t seq, const ProtobufCMessage *msg,
                           int sign)
{
    size_t len = rgpu_frame_packed_size(msg);
    uint8_t *buf = malloc(len + RGPU_REQUEST_AUTH_LEN);
    int rc;

    if (!buf)
        return -1;
    len = rgpu_frame_pack(buf, type, seq, 0, msg, sign ? RGPU_REQUEST_AUTH_LEN : 0);
    if (sign) {
        rgpu_token_sign_request(&peer_key, type, (uint32_t)seq, buf + RGPU_FRAME_HEADER_SIZE,
                                len - RGPU_FRAME_HEADER_SIZE, (int64_t)time(NULL), buf + len);
        len += RGPU_REQUEST_AUTH_LEN;
    }
    rc = peer_io(fd, buf, len, 1);
    free(buf);
    return rc;
}

/* Serves one registrar connection until it closes. */
static void peer_fake_serve(int fd, int wrong_nonce)
{
    for (;;) {
        uint8_t head[RGPU_FRAME_HEADER_SIZE], *body;
        rgpu_frame_header_t h;
        uint64_t ended[1] = {1};

        if (peer_io(fd, head, sizeof(head), 0) != 0 ||
            rgpu_frame_header_decode(head, NULL, &h) != RGPU_OK || h.body_len > (1u << 20) ||
            h.bulk_len > RGPU_REQUEST_AUTH_LEN)
            return;
        body = malloc(h.body_len + h.bulk_len + 1);
        if (!body || peer_io(fd, body, h.body_len + h.bulk_len, 0) != 0) {
            free(body);
            return;
        }
        if (h.type == RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT) {
            Rgpu__Heartbeat *hb = rgpu__heartbeat__unpack(NULL, h.body_len, body);
            Rgpu__HeartbeatReply r = RGPU__HEARTBEAT_REPLY__INIT;

            /* No lease alive, lease 1 ended: believed, it would end every session. */
            r.n_ended_leases = 1;
            r.ended_leases = ended;
            r.nonce = hb ? hb->nonce + (uint64_t)wrong_nonce : 0;
            if (hb)
                rgpu__heartbeat__free_unpacked(hb, NULL);
            peer_fake_reply(fd, RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT_REPLY, h.seq, &r.base,
                            wrong_nonce);
        } else {
            Rgpu__SchedStatus st = RGPU__SCHED_STATUS__INIT;

            st.reason = (char *)"";
            peer_fake_reply(fd, RGPU__MSG_TYPE__MSG_SCHED_STATUS, h.seq, &st.base, 0);
        }
        free(body);
    }
}

static int peer_fake_scheduler(const char *mode)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    int wrong_nonce = strcmp(mode, "wrong-nonce") == 0;

    if (!wrong_nonce && strcmp(mode, "unsigned") != 0)
        return 2;
    if (wrong_nonce && !peer_signed) {
        fprintf(stderr, "sched_peer: wrong-nonce needs the key\n");
        return 2;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 8) != 0 ||
        getsockname(lfd, (struct sockaddr *)&sa, &len) != 0)
        return 1;
    printf("listening on 127.0.0.1:%u\n", ntohs(sa.sin_port));
    fflush(stdout);
    for (;;) {
        int fd = accept(lfd, NULL, NULL);

        if (fd < 0)
            continue;
        peer_fake_serve(fd, wrong_nonce);
        close(fd);
    }
}

int main(int argc, char **argv)
{
    char why[256];

    if (argc < 4) {
        fprintf(stderr, "usage: sched_peer ADDR KEY register|heartbeat|drain|load ARGS\n");
        return 2;
    }
    peer_addr = argv[1];
    if (strcmp(argv[2], "-") != 0) {
        if (rgpu_token_key_load(argv[2], &peer_key, why, sizeof(why)) != RGPU_OK) {
            fprintf(stderr, "sched_peer: %s\n", why);
            return 2;
        }
        peer_signed = 1;
    }
    if (strcmp(argv[3], "register") == 0 && argc == 6)
        return peer_register((unsigned)atoi(argv[4]), (unsigned)atoi(argv[5]));
    if (strcmp(argv[3], "heartbeat") == 0 && argc >= 6)
        return peer_heartbeat(argv[4], strtoull(argv[5], NULL, 10), argc - 6, argv + 6);
    if (strcmp(argv[3], "drain") == 0 && argc >= 5) {
        if (argc == 5)
            return peer_drain(argv[4], PEER_SIGNED, 0);
        if (strcmp(argv[5], "bad") == 0)
            return peer_drain(argv[4], PEER_BAD, 0);
        if (strcmp(argv[5], "unsigned") == 0)
            return peer_drain(argv[4], PEER_UNSIGNED, 0);
        if (strcmp(argv[5], "skew") == 0 && argc == 7)
            return peer_drain(argv[4], PEER_SIGNED, strtoll(argv[6], NULL, 10));
    }
    if (strcmp(argv[3], "fake-scheduler") == 0 && argc == 5)
        return peer_fake_scheduler(argv[4]);
    if (strcmp(argv[3], "load") == 0 && argc == 7)
        return peer_load((unsigned)atoi(argv[4]), (unsigned)atoi(argv[5]),
                         (unsigned)atoi(argv[6]));
    fprintf(stderr, "sched_peer: bad arguments (see the comment at the top of sched_peer.c)\n");
    return 2;
}
