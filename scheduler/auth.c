/*
 * Who is asking (sched_core.h, "auth.c"): operators, callers, ownership of
 * leases, and the credentials already accepted. The daemon (main.c) checks
 * signatures and decodes credentials; this file decides what they allow.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "sched_core.h"

/* ---- operators ---- */

/* Digits only, at most 2^32 - 2 (uid_t -1 is "none"). */
static int rgpu_auth_id(const char *s, size_t len, uint32_t *id_p)
{
    uint64_t v = 0;

    if (!len)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v >= UINT32_MAX)
            return -1;
    }
    *id_p = (uint32_t)v;
    return 0;
}

static int rgpu_auth_user_uid(const char *name, uint32_t *uid_p)
{
    struct passwd pw, *found = NULL;
    char buf[4096];

    if (getpwnam_r(name, &pw, buf, sizeof(buf), &found) != 0 || !found)
        return -1;
    *uid_p = (uint32_t)found->pw_uid;
    return 0;
}

int rgpu_sched_operators_parse(rgpu_sched_operators_t *ops, const char *list, const char *group,
                               char *why, size_t cap)
{
    memset(ops, 0, sizeof(*ops));
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char name[256];
        uint32_t uid, *grown;

        if (len == 0 || len >= sizeof(name)) {
            snprintf(why, cap, "--operators %s: expected uids or user names separated by commas",
                     list);
            goto out_free;
        }
        memcpy(name, p, len);
        name[len] = '\0';
        if (rgpu_auth_id(name, len, &uid) != 0 && rgpu_auth_user_uid(name, &uid) != 0) {
            snprintf(why, cap, "--operators: \"%s\" is neither a uid nor a known user", name);
            goto out_free;
        }
        grown = realloc(ops->uids, (ops->nuids + 1) * sizeof(*grown));
        if (!grown) {
            snprintf(why, cap, "out of memory");
            goto out_free;
        }
        ops->uids = grown;
        ops->uids[ops->nuids++] = uid;
        p = end ? end + 1 : p + len;
    }
    if (group && *group) {
        struct group gr, *found = NULL;
        char buf[16384];

        if (strlen(group) >= sizeof(ops->group)) {
            snprintf(why, cap, "--operator-group: the name is too long");
            goto out_free;
        }
        if (rgpu_auth_id(group, strlen(group), &ops->gid) != 0) {
            if (getgrnam_r(group, &gr, buf, sizeof(buf), &found) != 0 || !found) {
                snprintf(why, cap, "--operator-group: no group \"%s\"", group);
                goto out_free;
            }
            ops->gid = (uint32_t)found->gr_gid;
        }
        ops->have_group = 1;
        snprintf(ops->group, sizeof(ops->group), "%s", group);
    }
    return 0;
out_free:
    rgpu_sched_operators_free(ops);
    return -1;
}

void rgpu_sched_operators_free(rgpu_sched_operators_t *ops)
{
    free(ops->uids);
    memset(ops, 0, sizeof(*ops));
}

int rgpu_sched_is_operator(const rgpu_sched_operators_t *ops, uint32_t uid, uint32_t gid,
                           const char *name)
{
    struct group gr, *found = NULL;
    char buf[16384];

    if (!ops)
        return 0;
    for (size_t i = 0; i < ops->nuids; i++)
        if (ops->uids[i] == uid)
            return 1;
    if (!ops->have_group)
        return 0;
    if (gid == ops->gid)
        return 1;
    /* Supplementary members, looked up now: the group may change while we run. */
    if (!name || !*name || getgrgid_r((gid_t)ops->gid, &gr, buf, sizeof(buf), &found) != 0 ||
        !found)
        return 0;
    for (char **m = found->gr_mem; m && *m; m++)
        if (strcmp(*m, name) == 0)
            return 1;
    return 0;
}

void rgpu_sched_caller_munge(rgpu_sched_caller_t *c, const rgpu_sched_operators_t *ops,
                             uint32_t uid, uint32_t gid)
{
    struct passwd pw, *found = NULL;
    char buf[4096];
    int known;

    memset(c, 0, sizeof(*c));
    c->how = RGPU_SCHED_CALLER_MUNGE;
    c->uid = uid;
    c->gid = gid;
    known = getpwuid_r((uid_t)uid, &pw, buf, sizeof(buf), &found) == 0 && found &&
            strlen(found->pw_name) < sizeof(c->name);
    if (known)
        snprintf(c->name, sizeof(c->name), "%s", found->pw_name);
    else
        snprintf(c->name, sizeof(c->name), "uid %u", uid);
    c->admin = uid == 0 || rgpu_sched_is_operator(ops, uid, gid, known ? c->name : NULL);
}

void rgpu_sched_caller_describe(const rgpu_sched_caller_t *c, char *out, size_t cap)
{
    switch (c->how) {
    case RGPU_SCHED_CALLER_KEY:
        snprintf(out, cap, "the cluster key");
        break;
    case RGPU_SCHED_CALLER_MUNGE:
        if (strncmp(c->name, "uid ", 4) == 0)
            snprintf(out, cap, "%s (MUNGE%s)", c->name, c->admin && c->uid ? ", operator" : "");
        else
            snprintf(out, cap, "%s (uid %u, MUNGE%s)", c->name, c->uid,
                     c->admin && c->uid ? ", operator" : "");
        break;
    default:
        snprintf(out, cap, "anyone (not authenticated)");
        break;
    }
}

int rgpu_sched_caller_owns(const rgpu_sched_caller_t *c, const Rgpu__Lease *lease)
{
    if (!c || c->admin)
        return 1;
    return c->how == RGPU_SCHED_CALLER_MUNGE && lease->owner_known && lease->owner_uid == c->uid;
}

/* ---- credentials already accepted ---- */

void rgpu_sched_replay_init(rgpu_sched_replay_t *r, size_t max)
{
    rgpu_htable_init(&r->seen);
    r->max = max;
}

void rgpu_sched_replay_cleanup(rgpu_sched_replay_t *r)
{
    rgpu_htable_cleanup(&r->seen);
}

static uint64_t rgpu_auth_cred_hash(const void *cred, size_t len)
{
    uint8_t h[8];
    uint64_t v = 0;

    crypto_generichash(h, sizeof(h), cred, len, NULL, 0);
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)h[i] << (8 * i);
    return v ? v : 1;    /* 0 is the table's reserved key */
}

typedef struct {
    int64_t now;
    uint64_t keys[256];
    size_t n;
} rgpu_auth_prune_t;

static void rgpu_auth_prune_fn(uint64_t key, void *value, void *arg)
{
    rgpu_auth_prune_t *p = arg;

    if ((int64_t)(intptr_t)value <= p->now && p->n < 256)
        p->keys[p->n++] = key;
}

size_t rgpu_sched_replay_prune(rgpu_sched_replay_t *r, int64_t now)
{
    size_t total = 0;

    /* At most 256 per pass (foreach may not modify the table); loop. */
    for (;;) {
        rgpu_auth_prune_t p = {now, {0}, 0};

        rgpu_htable_foreach(&r->seen, rgpu_auth_prune_fn, &p);
        for (size_t i = 0; i < p.n; i++)
            rgpu_htable_remove(&r->seen, p.keys[i]);
        total += p.n;
        if (p.n < 256)
            return total;
    }
}

rgpu_status_t rgpu_sched_replay_check(rgpu_sched_replay_t *r, const void *cred, size_t len,
                                      int64_t expires_unix, int64_t now)
{
    uint64_t key = rgpu_auth_cred_hash(cred, len);
    void *seen = rgpu_htable_find(&r->seen, key);

    _Static_assert(sizeof(intptr_t) >= sizeof(int64_t), "expiries are kept in the value");
    if (seen) {
        if ((int64_t)(intptr_t)seen > now)
            return RGPU_ERR_EXISTS;
        rgpu_htable_remove(&r->seen, key);
    }
    if (expires_unix <= now)
        return RGPU_OK;     /* nothing to remember: munged refuses it anyway */
    if (r->seen.count >= r->max && rgpu_sched_replay_prune(r, now) == 0)
        return RGPU_ERR_NOMEM;
    /* An expiry is never 0 here (> now > 0), so the value is never NULL. */
    if (rgpu_htable_insert(&r->seen, key, (void *)(intptr_t)expires_unix) != RGPU_OK)
        return RGPU_ERR_NOMEM;
    return RGPU_OK;
}
