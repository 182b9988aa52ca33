/*
 * One request to rgpu-scheduler and its reply, bounded in time: the
 * connect gets timeout_ms, and so does the wait for the reply
 * (rgpu_wire_recv's timeout). A reply larger than the link's eager limit
 * comes in fragments, and once the first has arrived rgpu_wire_recv waits
 * for the rest without a limit; a watchdog thread bounds that too, by
 * shutting the link down when the reply has not fully arrived timeout_ms
 * after the request was sent, which makes the blocked receive fail.
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
    int timeout_ms;
    int done;        /* the caller has its reply (or gave up) */
    int fired;       /* the watchdog shut the link down */
} rgpu_sched_watch_t;

static void *rgpu_sched_watchdog(void *arg)
{
    rgpu_sched_watch_t *w = arg;
    struct timespec until;

    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += w->timeout_ms / 1000;
    until.tv_nsec += (long)(w->timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->lock);
    while (!w->done) {
        if (pthread_cond_timedwait(&w->cond, &w->lock, &until) == ETIMEDOUT && !w->done) {
            w->fired = 1;
            rgpu_link_shutdown(w->link);
            break;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void rgpu_sched_timeout_str(int ms, char *out, size_t cap)
{
    if (ms % 1000)
        snprintf(out, cap, "%.1f s", ms / 1000.0);
    else
        snprintf(out, cap, "%d s", ms / 1000);
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
    const char *addr = client->addr && *client->addr ? client->addr : RGPU_SCHED_DEFAULT_ADDR;
    int timeout_ms = client->timeout_ms > 0 ? client->timeout_ms : RGPU_SCHED_DEFAULT_TIMEOUT_MS;
    char reason[256] = "", tmo[32], dummy[8];
    uint8_t trailer[RGPU_REQUEST_AUTH_LEN];
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
    st = rgpu_transport_for_address(addr, &ops, &bare, reason, sizeof(reason));
    if (st == RGPU_OK)
        st = ops->connect(bare, timeout_ms, &w.link, reason, sizeof(reason));
    if (st != RGPU_OK) {
        snprintf(err, err_cap, "scheduler %s: %s", addr, *reason ? reason : rgpu_status_str(st));
        return NULL;
    }
    pthread_mutex_init(&w.lock, NULL);
    {
        pthread_condattr_t attr;

        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&w.cond, &attr);
        pthread_condattr_destroy(&attr);
    }
    w.timeout_ms = timeout_ms;
    w.done = 0;
    w.fired = 0;
    rgpu_wire_rx_init(&rx, w.link, &limits, RGPU_FRAME_HEADER_SIZE + (uint64_t)limits.max_body);
    watching = pthread_create(&thread, NULL, rgpu_sched_watchdog, &w) == 0;

    if (client->munge_error && client->munge_error_cap)
        *client->munge_error = '\0';
    if (!client->key && client->munge) {
        /* A credential whose payload is the digest of exactly the bytes
         * rgpu_wire_send sends (packed again, the same). */
        size_t len = protobuf_c_message_get_packed_size(msg);
        uint8_t *packed = malloc(len ? len : 1);
        const char *sock = client->munge_socket && *client->munge_socket
                               ? client->munge_socket : getenv(RGPU_MUNGE_SOCKET_ENV);
        char *cred = NULL, why[400] = "";

        if (!packed) {
            snprintf(err, err_cap, "out of memory");
            goto out;
        }
        protobuf_c_message_pack(msg, packed);
        st = rgpu_munge_encode_request(sock, type, 1, packed, len, &cred, why, sizeof(why));
        free(packed);
        if (st == RGPU_OK) {
            st = rgpu_wire_send(w.link, type, 1, 0, msg, cred, strlen(cred));
            free(cred);
        } else {
            if (client->munge_error && client->munge_error_cap)
                snprintf(client->munge_error, client->munge_error_cap, "%s", why);
            st = rgpu_wire_send(w.link, type, 1, 0, msg, NULL, 0);
        }
    } else if (client->key) {
        /* Signed: the trailer covers the packed body, packed again (the
         * same bytes) by rgpu_wire_send. */
        st = rgpu_token_sign_message(client->key, type, 1, msg, (int64_t)time(NULL), trailer);
        if (st != RGPU_OK) {
            snprintf(err, err_cap, "cannot sign the request: %s", rgpu_status_str(st));
            goto out;
        }
        st = rgpu_wire_send(w.link, type, 1, 0, msg, trailer, sizeof(trailer));
    } else {
        st = rgpu_wire_send(w.link, type, 1, 0, msg, NULL, 0);
    }
    if (st != RGPU_OK) {
        snprintf(reason, sizeof(reason), "%s", rgpu_link_reason(w.link));
        goto out_st;
    }
    st = rgpu_wire_recv(&rx, &f, timeout_ms, reason, sizeof(reason));
    if (st != RGPU_OK)
        goto out_st;
    if (f.header.type != reply_type || f.header.seq != 1) {
        snprintf(err, err_cap, "scheduler %s: answered with message type %u, expected %u", addr,
                 f.header.type, reply_type);
        goto out;
    }
    reply = protobuf_c_message_unpack(desc, NULL, f.header.body_len, f.body);
    if (!reply)
        snprintf(err, err_cap, "scheduler %s: its reply does not unpack", addr);
    goto out;
out_st:
    pthread_mutex_lock(&w.lock);
    if (w.fired || st == RGPU_ERR_TIMEOUT)
        snprintf(err, err_cap, "scheduler %s: no reply within %s", addr, tmo);
    else
        snprintf(err, err_cap, "scheduler %s: %s", addr, *reason ? reason : rgpu_status_str(st));
    pthread_mutex_unlock(&w.lock);
out:
    pthread_mutex_lock(&w.lock);
    w.done = 1;
    pthread_cond_signal(&w.cond);
    pthread_mutex_unlock(&w.lock);
    if (watching)
        pthread_join(thread, NULL);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    rgpu_wire_rx_fini(&rx);
    rgpu_link_close(w.link);
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
