/*
 * Transport instances, the address resolver and the registration table.
 *
 * The table maps a registration's key to the region; a peer's get or put
 * names a key and the transport checks it here before touching memory.
 * Keys are a counter run through a keyed mixer, so a stale or guessed key
 * matches nothing (a deregistered region's key is never reused).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "rgpu/verbs.h"
#include "transport_int.h"

/* Every transport this build knows, by name. A transport that is not built
 * (verbs, for now) has a NULL table and is refused with a reason. */
static const struct {
    const char *name;
    const rgpu_transport_ops_t *ops;
    const char *missing;
} rgpu_transports[] = {
    {"tcp", &rgpu_tcp_ops, NULL},
#ifdef RGPU_HAVE_VERBS
    {"verbs", &rgpu_verbs_ops, NULL},
#else
    {"verbs", NULL, "this rgpu was built without the verbs (RDMA) transport (rdma-core was not "
                    "found): use tcp://host:port or a bare host:port"},
#endif
};

#define RGPU_NTRANSPORTS (sizeof(rgpu_transports) / sizeof(rgpu_transports[0]))

/* Looks up "name" or "name://...": the table's index, or -1. */
static int rgpu_transport_find(const char *s, const char **bare_p)
{
    const char *sep = strstr(s, "://");
    size_t n = sep ? (size_t)(sep - s) : strlen(s);

    for (size_t i = 0; i < RGPU_NTRANSPORTS; i++) {
        if (strlen(rgpu_transports[i].name) == n && strncmp(s, rgpu_transports[i].name, n) == 0) {
            if (bare_p)
                *bare_p = sep ? sep + 3 : s + n;
            return (int)i;
        }
    }
    return -1;
}

rgpu_status_t rgpu_transport_for_address(const char *addr, const rgpu_transport_ops_t **ops_p,
                                         const char **bare_p, char *reason, size_t reason_cap)
{
    const char *bare = addr;
    int i = 0;

    if (!addr) {
        if (reason)
            snprintf(reason, reason_cap, "no address");
        return RGPU_ERR_ADDRESS;
    }
    if (strstr(addr, "://")) {
        i = rgpu_transport_find(addr, &bare);
        if (i < 0) {
            if (reason)
                snprintf(reason, reason_cap,
                         "unknown transport in \"%s\" (expected tcp://host:port, "
                         "verbs://host:port or host:port)", addr);
            return RGPU_ERR_ADDRESS;
        }
    }
    if (!rgpu_transports[i].ops) {
        if (reason)
            snprintf(reason, reason_cap, "%s", rgpu_transports[i].missing);
        return RGPU_ERR_UNSUPPORTED;
    }
    *ops_p = rgpu_transports[i].ops;
    *bare_p = bare;
    return RGPU_OK;
}

rgpu_status_t rgpu_transport_usable(const char *name, char *reason, size_t reason_cap)
{
    const char *bare;
    int i = name ? rgpu_transport_find(name, &bare) : -1;

    if (i < 0) {
        if (reason)
            snprintf(reason, reason_cap, "unknown transport \"%s\" (expected tcp or verbs)",
                     name ? name : "(null)");
        return RGPU_ERR_ADDRESS;
    }
    if (!rgpu_transports[i].ops) {
        if (reason)
            snprintf(reason, reason_cap, "%s", rgpu_transports[i].missing);
        return RGPU_ERR_UNSUPPORTED;
    }
#ifdef RGPU_HAVE_VERBS
    if (rgpu_transports[i].ops == &rgpu_verbs_ops)
        return rgpu_verbs_probe(reason, reason_cap);
#endif
    if (reason && reason_cap)
        reason[0] = '\0';
    return RGPU_OK;
}

/* The transport an address names, by its table entry's name. */
static const char *rgpu_address_transport(const char *addr)
{
    int i = strstr(addr, "://") ? rgpu_transport_find(addr, NULL) : 0;
    return i < 0 ? NULL : rgpu_transports[i].name;
}

static int rgpu_fallback_said;

rgpu_status_t rgpu_transport_choose(const char *const *addrs, size_t n, size_t *index_p,
                                    char *reason, size_t reason_cap)
{
    const char *want = getenv("RGPU_TRANSPORT");
    char why[256] = "";
    size_t tcp = n, verbs = n;

    if (!want || !*want)
        want = "auto";
    if (strcmp(want, "auto") != 0 && strcmp(want, "tcp") != 0 && strcmp(want, "verbs") != 0) {
        if (reason)
            snprintf(reason, reason_cap, "RGPU_TRANSPORT=%s: expected auto, verbs or tcp", want);
        return RGPU_ERR_INVALID_ARG;
    }
    for (size_t i = 0; addrs && i < n; i++) {
        const char *t = addrs[i] ? rgpu_address_transport(addrs[i]) : NULL;
        if (t && strcmp(t, "tcp") == 0 && tcp == n)
            tcp = i;
        else if (t && strcmp(t, "verbs") == 0 && verbs == n)
            verbs = i;
    }
    if (strcmp(want, "tcp") != 0 && verbs < n) {
        if (rgpu_transport_usable("verbs", why, sizeof(why)) == RGPU_OK) {
            *index_p = verbs;
            return RGPU_OK;
        }
        if (strcmp(want, "verbs") == 0) {
            if (reason)
                snprintf(reason, reason_cap, "RGPU_TRANSPORT=verbs, but %s", why);
            return RGPU_ERR_UNSUPPORTED;
        }
    } else if (strcmp(want, "verbs") == 0) {
        if (reason)
            snprintf(reason, reason_cap, "RGPU_TRANSPORT=verbs, but the server offers no "
                     "verbs:// address");
        return RGPU_ERR_UNSUPPORTED;
    }
    if (tcp == n) {
        if (reason)
            snprintf(reason, reason_cap, "%s%sthe server offers no TCP address",
                     why[0] ? why : "", why[0] ? ", and " : "");
        return RGPU_ERR_UNSUPPORTED;
    }
    /* auto falling back from an offered verbs address: the user expected
     * InfiniBand speed, so say once why it is TCP. */
    if (why[0] && !__atomic_exchange_n(&rgpu_fallback_said, 1, __ATOMIC_ACQ_REL))
        fprintf(stderr, "rgpu: using TCP instead of verbs: %s\n", why);
    *index_p = tcp;
    return RGPU_OK;
}

static uint64_t rgpu_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static rgpu_status_t rgpu_transport_init(rgpu_transport_t *tp, const rgpu_transport_ops_t *ops)
{
    struct timespec ts;
    rgpu_status_t status;

    memset(tp, 0, sizeof(*tp));
    tp->ops = ops;
    if (getrandom(&tp->key_secret, sizeof(tp->key_secret), GRND_NONBLOCK) != sizeof(tp->key_secret)) {
        clock_gettime(CLOCK_REALTIME, &ts);
        tp->key_secret = rgpu_mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
                                    (uint64_t)(uintptr_t)tp);
    }
    tp->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (tp->epfd < 0)
        return RGPU_ERR_IO;
    pthread_mutex_init(&tp->lock, NULL);
    pthread_cond_init(&tp->idle, NULL);
    rgpu_htable_init(&tp->regs);
    status = ops->tp_open ? ops->tp_open(tp) : RGPU_OK;
    if (status != RGPU_OK)
        goto out_cleanup;
    return RGPU_OK;

out_cleanup:
    rgpu_htable_cleanup(&tp->regs);
    pthread_cond_destroy(&tp->idle);
    pthread_mutex_destroy(&tp->lock);
    close(tp->epfd);
    return status;
}

rgpu_status_t rgpu_transport_open(const char *name_or_url_scheme, rgpu_transport_t **tp_p)
{
    rgpu_transport_t *tp;
    rgpu_status_t status;
    int i = name_or_url_scheme ? rgpu_transport_find(name_or_url_scheme, NULL) : -1;

    if (i < 0)
        return RGPU_ERR_ADDRESS;
    if (!rgpu_transports[i].ops)
        return RGPU_ERR_UNSUPPORTED;
    tp = malloc(sizeof(*tp));
    if (!tp)
        return RGPU_ERR_NOMEM;
    status = rgpu_transport_init(tp, rgpu_transports[i].ops);
    if (status != RGPU_OK) {
        free(tp);
        return status;
    }
    *tp_p = tp;
    return RGPU_OK;
}

void rgpu_transport_close(rgpu_transport_t *tp)
{
    if (!tp)
        return;
    if (tp->ops->tp_close)
        tp->ops->tp_close(tp);
    rgpu_htable_cleanup(&tp->regs);
    pthread_cond_destroy(&tp->idle);
    pthread_mutex_destroy(&tp->lock);
    close(tp->epfd);
    free(tp);
}

/* One default instance per built transport, made on first use. */
static rgpu_transport_t rgpu_default_tps[RGPU_NTRANSPORTS];
static int rgpu_default_ready[RGPU_NTRANSPORTS];
static pthread_mutex_t rgpu_default_lock = PTHREAD_MUTEX_INITIALIZER;

rgpu_transport_t *rgpu__transport_default(const rgpu_transport_ops_t *ops)
{
    rgpu_transport_t *tp = NULL;

    pthread_mutex_lock(&rgpu_default_lock);
    for (size_t i = 0; i < RGPU_NTRANSPORTS; i++) {
        if (rgpu_transports[i].ops != ops)
            continue;
        if (!rgpu_default_ready[i] && rgpu_transport_init(&rgpu_default_tps[i], ops) == RGPU_OK)
            rgpu_default_ready[i] = 1;
        if (rgpu_default_ready[i])
            tp = &rgpu_default_tps[i];
        break;
    }
    pthread_mutex_unlock(&rgpu_default_lock);
    return tp;
}

const rgpu_transport_caps_t *rgpu_transport_caps(const rgpu_transport_t *tp)
{
    return &tp->caps;
}

const rgpu_transport_ops_t *rgpu_transport_ops(const rgpu_transport_t *tp)
{
    return tp->ops;
}

rgpu_status_t rgpu_transport_connect(rgpu_transport_t *tp, const char *addr, int timeout_ms,
                                     rgpu_link_t **link_p, char *reason, size_t reason_cap)
{
    return tp->ops->tp_connect(tp, addr, timeout_ms, link_p, reason, reason_cap);
}

rgpu_status_t rgpu_transport_listen(rgpu_transport_t *tp, const char *addr,
                                    rgpu_listener_t **listener_p)
{
    return tp->ops->tp_listen(tp, addr, listener_p);
}

int rgpu_transport_event_fd(rgpu_transport_t *tp)
{
    return tp->epfd;
}

/* ---- registrations ---- */

rgpu_status_t rgpu_mem_register_access(rgpu_transport_t *tp, void *addr, size_t len,
                                       rgpu_memtype_t memtype, unsigned access,
                                       rgpu_mem_t **mem_p)
{
    rgpu_mem_t *mem;
    rgpu_status_t status;

    if (!addr || len == 0 || (uintptr_t)addr + len < (uintptr_t)addr ||
        (access & ~RGPU_MEM_REMOTE_RW))
        return RGPU_ERR_INVALID_ARG;
    if (memtype != RGPU_MEMTYPE_HOST)
        return RGPU_ERR_UNSUPPORTED;
    mem = calloc(1, sizeof(*mem));
    if (!mem)
        return RGPU_ERR_NOMEM;
    mem->tp = tp;
    mem->addr = addr;
    mem->len = len;
    mem->memtype = memtype;
    mem->access = access;
    if (tp->ops->mem_register && (status = tp->ops->mem_register(tp, mem)) != RGPU_OK)
        goto out_free;
    pthread_mutex_lock(&tp->lock);
    /* A transport whose hardware checks keys (verbs: the rkey) sets its
     * own; it is unique while registered. */
    if (mem->key == 0) {
        do
            mem->key = rgpu_mix64(++tp->key_seq ^ tp->key_secret);
        while (mem->key == 0 || rgpu_htable_find(&tp->regs, mem->key));
    }
    /* A local-only region stays out of the table the peer's requests are
     * looked up in, so no descriptor of it, true or forged, reaches it. */
    if (access == RGPU_MEM_LOCAL)
        status = RGPU_OK;
    else if (rgpu_htable_find(&tp->regs, mem->key))
        status = RGPU_ERR_EXISTS;
    else
        status = rgpu_htable_insert(&tp->regs, mem->key, mem);
    pthread_mutex_unlock(&tp->lock);
    if (status != RGPU_OK)
        goto out_deregister;
    *mem_p = mem;
    return RGPU_OK;

out_deregister:
    if (tp->ops->mem_deregister)
        tp->ops->mem_deregister(tp, mem);
out_free:
    free(mem);
    return status;
}

void rgpu_mem_deregister(rgpu_mem_t *mem)
{
    rgpu_transport_t *tp;

    if (!mem)
        return;
    tp = mem->tp;
    pthread_mutex_lock(&tp->lock);
    if (mem->access != RGPU_MEM_LOCAL)
        rgpu_htable_remove(&tp->regs, mem->key);
    while (mem->busy > 0)
        pthread_cond_wait(&tp->idle, &tp->lock);
    pthread_mutex_unlock(&tp->lock);
    if (tp->ops->mem_deregister)
        tp->ops->mem_deregister(tp, mem);
    free(mem);
}

rgpu_mem_desc_t rgpu_mem_desc(const rgpu_mem_t *mem)
{
    rgpu_mem_desc_t desc = {(uint64_t)(uintptr_t)mem->addr, mem->len, mem->key, mem->memtype};
    return desc;
}

void *rgpu_mem_addr(const rgpu_mem_t *mem)
{
    return mem->addr;
}

size_t rgpu_mem_len(const rgpu_mem_t *mem)
{
    return mem->len;
}

rgpu_status_t rgpu__mem_acquire(rgpu_transport_t *tp, uint64_t key, uint64_t addr, uint64_t len,
                                unsigned access, rgpu_mem_t **mem_p)
{
    rgpu_mem_t *mem;
    rgpu_status_t status = RGPU_OK;

    pthread_mutex_lock(&tp->lock);
    mem = key ? rgpu_htable_find(&tp->regs, key) : NULL;
    if (!mem) {
        status = RGPU_ERR_NOT_FOUND;
    } else {
        uint64_t start = (uint64_t)(uintptr_t)mem->addr;
        if (addr < start || addr - start > mem->len || len > mem->len - (addr - start) ||
            (mem->access & access) != access)
            status = RGPU_ERR_INVALID_ARG;
        else
            mem->busy++;
    }
    pthread_mutex_unlock(&tp->lock);
    if (status == RGPU_OK)
        *mem_p = mem;
    return status;
}

void rgpu__mem_release(rgpu_mem_t *mem)
{
    rgpu_transport_t *tp = mem->tp;

    pthread_mutex_lock(&tp->lock);
    if (--mem->busy == 0)
        pthread_cond_broadcast(&tp->idle);
    pthread_mutex_unlock(&tp->lock);
}

void rgpu__complete(rgpu_completion_t *c, rgpu_status_t status)
{
    c->status = status;
    if (c->cb)
        c->cb(c);
    __atomic_store_n(&c->done, 1, __ATOMIC_RELEASE);
}

rgpu_status_t rgpu__rma_check(const rgpu_link_t *link, const rgpu_mem_t *local, uint64_t local_off,
                              const rgpu_mem_desc_t *remote, uint64_t remote_off, uint64_t len,
                              rgpu_completion_t *c, int *done_p)
{
    const rgpu_transport_caps_t *caps = &link->tp->caps;

    if (!local || !remote || local->tp != link->tp || local_off > local->len ||
        len > local->len - local_off || remote_off > remote->len ||
        len > remote->len - remote_off || remote->addr + remote_off < remote->addr ||
        remote->addr + remote_off + len < remote->addr + remote_off || len > caps->max_rma ||
        (caps->rma_align > 1 && (local_off % caps->rma_align || remote_off % caps->rma_align ||
                                 len % caps->rma_align)))
        return RGPU_ERR_INVALID_ARG;
    *done_p = len == 0;
    if (len == 0 && c)
        rgpu__complete(c, RGPU_OK);
    return RGPU_OK;
}
