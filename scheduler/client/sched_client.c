/*
 * One request to rgpu-scheduler and its reply, bounded in time. What bounds
 * each step:
 *
 *   the request's auth part   a MUNGE credential: libmunge's own timeouts
 *                             (seconds on each read and write of munged's
 *                             socket, a few retries). munged is local and
 *                             not the scheduler, so this comes before the
 *                             connection and its time is not the reply's
 *                             (the watchdog could not cut it short anyway:
 *                             it shuts the scheduler's link down, not
 *                             munged's socket). A cluster key's trailer
 *                             waits for nothing.
 *   the connection            the transport's connect, given timeout_ms.
 *   the send and the reply    one deadline, timeout_ms after the request is
 *                             ready to go (the watchdog below, and
 *                             rgpu_wire_recv's own timeout_ms).
 *
 * rgpu_wire_recv bounds the wait for a reply to begin, and the wait for
 * the rest of a reply that comes in fragments (within its timeout_ms of
 * the receive's start). It does not bound the rest of one transport
 * message: on TCP, once the first bytes of a message have arrived (a small
 * reply, or one fragment of a large one, up to the 256 KiB eager limit),
 * the transport reads the rest of that message with no limit of its own,
 * and keepalives do not notice a scheduler that is alive but stalled. A
 * watchdog thread bounds that: when the reply has not fully arrived by the
 * deadline, it shuts the link down, which makes the blocked receive (or a
 * send blocked on a scheduler that reads nothing) fail at once. (On verbs
 * a message arrives whole, and the watchdog only backs the receive up.)
 * unit.scheduler.sched_client stalls a scripted scheduler at each of those
 * places; without the watchdog the stalls inside a message hang the call.
 */
#include "rgpu/sched_client.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rgpu/munge.h"
#include "rgpu/transport.h"
#include "rgpu/wire.h"

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    rgpu_link_t *link;
    struct timespec deadline;   /* CLOCK_MONOTONIC */
    int done;                   /* the caller has its reply (or gave up) */
    int fired;                  /* the watchdog shut the link down */
} rgpu_sched_watch_t;

static void *rgpu_sched_watchdog(void *arg)
{
    rgpu_sched_watch_t *w = arg;

    pthread_mutex_lock(&w->lock);
    while (!w->done) {
        if (pthread_cond_timedwait(&w->cond, &w->lock, &w->deadline) == ETIMEDOUT && !w->done) {
            w->fired = 1;
            rgpu_link_shutdown(w->link);
            break;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

/* Starts w's clock (timeout_ms from now) and, if a thread can be had, its
 * watchdog; returns non-zero when one runs. Without one, rgpu_wire_recv's
 * timeout still bounds a scheduler that never answers or stalls between
 * fragments. */
static int rgpu_sched_watch_start(rgpu_sched_watch_t *w, rgpu_link_t *link, int timeout_ms,
                                  pthread_t *thread_p)
{
    pthread_condattr_t attr;

    pthread_mutex_init(&w->lock, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    w->link = link;
    w->done = 0;
    w->fired = 0;
    clock_gettime(CLOCK_MONOTONIC, &w->deadline);
    w->deadline.tv_sec += timeout_ms / 1000;
    w->deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (w->deadline.tv_nsec >= 1000000000L) {
        w->deadline.tv_sec++;
        w->deadline.tv_nsec -= 1000000000L;
    }
    return pthread_create(thread_p, NULL, rgpu_sched_watchdog, w) == 0;
}

/* Stops the watchdog (if it runs) and says whether the call ran out of
 * time: the watchdog fired, or the deadline has passed (rgpu_wire_recv may
 * see it first, mid-frame, and fail with words of its own). */
static int rgpu_sched_watch_stop(rgpu_sched_watch_t *w, int watching, const pthread_t *thread)
{
    struct timespec now;
    int late;

    pthread_mutex_lock(&w->lock);
    w->done = 1;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
    if (watching)
        pthread_join(*thread, NULL);
    clock_gettime(CLOCK_MONOTONIC, &now);
    late = w->fired || now.tv_sec > w->deadline.tv_sec ||
           (now.tv_sec == w->deadline.tv_sec && now.tv_nsec >= w->deadline.tv_nsec);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
    return late;
}

static void rgpu_sched_timeout_str(int ms, char *out, size_t cap)
{
    if (ms % 1000)
        snprintf(out, cap, "%.1f s", ms / 1000.0);
    else
        snprintf(out, cap, "%d s", ms / 1000);
}

/* The request's bulk part: the cluster key's trailer (into trailer), a
 * MUNGE credential (*cred_p, malloc'd), or nothing. RGPU_OK, or an error
 * with err set; a credential that cannot be made is no error (the request
 * goes without one, munge_error says why). */
static rgpu_status_t rgpu_sched_auth(const rgpu_sched_client_t *client, uint16_t type,
                                     const ProtobufCMessage *msg,
                                     uint8_t trailer[RGPU_REQUEST_AUTH_LEN], char **cred_p,
                                     const void **auth_p, size_t *auth_len_p, char *err,
                                     size_t err_cap)
{
    rgpu_status_t st;

    *auth_p = NULL;
    *auth_len_p = 0;
    if (client->munge_error && client->munge_error_cap)
        *client->munge_error = '\0';
    if (client->key) {
        /* Signed: the trailer covers the packed body, packed again (the
         * same bytes) by rgpu_wire_send. */
        st = rgpu_token_sign_message(client->key, type, 1, msg, (int64_t)time(NULL), trailer);
        if (st != RGPU_OK) {
            snprintf(err, err_cap, "cannot sign the request: %s", rgpu_status_str(st));
            return st;
        }
        *auth_p = trailer;
        *auth_len_p = RGPU_REQUEST_AUTH_LEN;
    } else if (client->munge) {
        /* A credential whose payload is the digest of exactly the bytes
         * rgpu_wire_send sends (packed again, the same). */
        size_t len = protobuf_c_message_get_packed_size(msg);
        uint8_t *packed = malloc(len ? len : 1);
        const char *sock = client->munge_socket && *client->munge_socket
                               ? client->munge_socket : getenv(RGPU_MUNGE_SOCKET_ENV);
        char why[400] = "";

        if (!packed) {
            snprintf(err, err_cap, "out of memory");
            return RGPU_ERR_NOMEM;
        }
        protobuf_c_message_pack(msg, packed);
        st = rgpu_munge_encode_request(sock, type, 1, packed, len, cred_p, why, sizeof(why));
        free(packed);
        if (st == RGPU_OK) {
            *auth_p = *cred_p;
            *auth_len_p = strlen(*cred_p);
        } else if (client->munge_error && client->munge_error_cap) {
            snprintf(client->munge_error, client->munge_error_cap, "%s", why);
        }
    }
    return RGPU_OK;
}

void *rgpu_sched_call(const rgpu_sched_client_t *client, uint16_t type,
                      const ProtobufCMessage *msg, uint16_t reply_type,
                      const ProtobufCMessageDescriptor *desc, char *err, size_t err_cap)
{
    /* A reply is one frame with no bulk: a lease list or a server list
     * may be large (fragments), but not past 256 MiB. */
    rgpu_frame_limits_t limits = {256u << 20, 0};
    rgpu_sched_watch_t w;
    rgpu_wire_rx_t rx;
    rgpu_wire_frame_t f;
    rgpu_link_t *link;
    const char *addr = client->addr && *client->addr ? client->addr : RGPU_SCHED_DEFAULT_ADDR;
    int timeout_ms = client->timeout_ms > 0 ? client->timeout_ms : RGPU_SCHED_DEFAULT_TIMEOUT_MS;
    char reason[256] = "", tmo[32], dummy[8], *cred = NULL;
    uint8_t trailer[RGPU_REQUEST_AUTH_LEN];
    const void *auth;
    size_t auth_len;
    void *reply = NULL;
    pthread_t thread;
    rgpu_status_t st;
    int watching;
    const rgpu_transport_ops_t *ops;
    const char *bare;

    if (!err) {
        err = dummy;
        err_cap = sizeof(dummy);
    }
    *err = '\0';
    rgpu_sched_timeout_str(timeout_ms, tmo, sizeof(tmo));
    if (rgpu_sched_auth(client, type, msg, trailer, &cred, &auth, &auth_len, err, err_cap) != RGPU_OK)
        return NULL;
    st = rgpu_transport_for_address(addr, &ops, &bare, reason, sizeof(reason));
    if (st == RGPU_OK)
        st = ops->connect(bare, timeout_ms, &link, reason, sizeof(reason));
    if (st != RGPU_OK) {
        snprintf(err, err_cap, "scheduler %s: %s", addr, *reason ? reason : rgpu_status_str(st));
        goto out_free_cred;
    }
    rgpu_wire_rx_init(&rx, link, &limits, RGPU_FRAME_HEADER_SIZE + (uint64_t)limits.max_body);
    watching = rgpu_sched_watch_start(&w, link, timeout_ms, &thread);

    st = rgpu_wire_send(link, type, 1, 0, msg, auth, auth_len);
    if (st != RGPU_OK)
        snprintf(reason, sizeof(reason), "%s", rgpu_link_reason(link));
    else
        st = rgpu_wire_recv(&rx, &f, timeout_ms, reason, sizeof(reason));
    if (rgpu_sched_watch_stop(&w, watching, &thread) && st != RGPU_OK)
        st = RGPU_ERR_TIMEOUT;
    if (st == RGPU_ERR_TIMEOUT)
        snprintf(err, err_cap, "scheduler %s: no reply within %s", addr, tmo);
    else if (st != RGPU_OK)
        snprintf(err, err_cap, "scheduler %s: %s", addr, *reason ? reason : rgpu_status_str(st));
    else if (f.header.type != reply_type || f.header.seq != 1)
        snprintf(err, err_cap, "scheduler %s: answered with message type %u, expected %u", addr,
                 f.header.type, reply_type);
    else if (!(reply = protobuf_c_message_unpack(desc, NULL, f.header.body_len, f.body)))
        snprintf(err, err_cap, "scheduler %s: its reply does not unpack", addr);
    rgpu_wire_rx_fini(&rx);
    rgpu_link_close(link);
out_free_cred:
    free(cred);
    return reply;
}

int rgpu_sched_timeout_parse(const char *s)
{
    long long ms = 0;
    int frac = 0;

    /* Digits, then optionally '.' and digits (milliseconds count): no sign,
     * blank, exponent or hexadecimal (strtod takes all of those). */
    if (!s || *s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        ms = ms * 10 + (*s - '0');
        if (ms > 86400)
            return -1;
    }
    ms *= 1000;
    if (*s == '.') {
        int scale = 100;

        if (s[1] < '0' || s[1] > '9')
            return -1;
        for (s++; *s >= '0' && *s <= '9'; s++, scale /= 10)
            frac += (*s - '0') * scale;
    }
    if (*s || ms + frac > 86400000 || ms + frac <= 0)
        return -1;
    return (int)(ms + frac);
}
