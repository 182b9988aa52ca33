/*
 * rgpu: the scheduler's admin and user CLI.
 *
 *   rgpu [--scheduler ADDR] [--timeout SECONDS] [--key FILE] [--token TOKEN] [--json]
 *        servers | gpus | leases | sessions
 *   rgpu alloc -n N [--mem SIZE] [--shared] [--api opencl|cuda] [--same-server]
 *              [--spread] [--job ID] [--ttl SECONDS] [-- COMMAND...]
 *   rgpu release ID | rgpu renew ID [SECONDS] | rgpu drain SERVER | rgpu resume SERVER
 *
 * alloc with a COMMAND runs it with the lease's environment (RGPU_SERVERS
 * naming the leased servers, RGPU_LEASE_TOKEN, RGPU_LEASE) and releases the
 * lease when it ends, however it ends; exits with its status. While it
 * runs the lease is renewed at half its life. Without one it prints the
 * lease and keeps it.
 *
 * renew and release by id prove to a scheduler with --key that the caller
 * holds the lease: with the cluster key (--key) or with one of the lease's
 * unexpired tokens (--token, default RGPU_LEASE_TOKEN). Listings carry no
 * tokens. Without the key every request carries a MUNGE credential of the
 * caller when munged can make one (RGPU_MUNGE_SOCKET: its socket), which a
 * scheduler with --auth munge needs: then the lease is the caller's, who
 * alone (with root and operators) lists, renews and releases it.
 *
 * Numbers (counts, seconds, lease ids) are plain decimal digits within their
 * bounds, or the CLI exits 2 saying so.
 *
 * Exit status: 0 done, 1 the scheduler refused or cannot be reached, 2 usage.
 */
#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rgpu/client_conf.h"
#include "rgpu/sched_client.h"
#include "rgpu/util.h"
#include "scheduler.pb-c.h"

static const char *rgpu_cli_sched = "127.0.0.1:7080";
static int rgpu_cli_json;
static char rgpu_cli_munge_error[400];
static rgpu_sched_client_t rgpu_cli_client = {NULL, RGPU_SCHED_DEFAULT_TIMEOUT_MS, NULL, 1, NULL,
                                              rgpu_cli_munge_error, sizeof(rgpu_cli_munge_error)};
static rgpu_token_key_t rgpu_cli_key;
static const char *rgpu_cli_token = "";   /* --token or RGPU_LEASE_TOKEN */

/* The longest ttl the CLI asks for (a year); the scheduler has its own
 * bound (--max-lease-ttl) and says so when a request passes it. */
#define RGPU_CLI_MAX_TTL_S 31536000ull

/* Parses a plain decimal number: digits only (no sign, blank, base prefix
 * or suffix), from min to max. 0 and *value_p on success; -1 otherwise. */
static int rgpu_cli_uint(const char *s, uint64_t min, uint64_t max, uint64_t *value_p)
{
    uint64_t v = 0;

    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
            return -1;     /* past 2^64 - 1 */
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v < min || v > max)
        return -1;
    *value_p = v;
    return 0;
}

#define RGPU_CLI_COMMANDS \
    "  servers                        list GPU servers\n" \
    "  gpus                           list GPUs and the leases holding them\n" \
    "  leases                         list leases\n" \
    "  sessions                       list client sessions open on the servers\n" \
    "  alloc -n N [--mem SIZE] [--shared] [--api opencl|cuda] [--same-server]\n" \
    "        [--spread] [--job ID] [--ttl SECONDS] [-- COMMAND...]\n" \
    "                                 lease N GPUs (--api: default opencl); run\n" \
    "                                 COMMAND with the lease's environment and\n" \
    "                                 release at its end\n" \
    "  release ID                     release lease ID\n" \
    "  renew ID [SECONDS]             extend lease ID (prints the new token)\n" \
    "  drain SERVER | resume SERVER   stop / restart giving SERVER's GPUs out\n"

/* The CLI's table: the client.conf rows (rgpu/client_conf.h) with the
 * CLI's texts; filled by main(). */
static rgpu_opt_table_t rgpu_cli_table;

static void rgpu_cli_table_init(void)
{
    rgpu_client_conf_table(&rgpu_cli_table, "rgpu");
    rgpu_cli_table.summary = "lease remote GPUs from rgpu-scheduler and administer it";
    rgpu_cli_table.synopsis = "[OPTION]... COMMAND [ARGS]";
    rgpu_cli_table.description =
        "rgpu asks rgpu-scheduler for leases on the cluster's remote GPUs, runs commands "
        "with them, and lists, renews, releases and drains.\n\n"
        "A reply not complete within the timeout is an error (exit status 1). Requests are "
        "signed with the cluster key when one is named or " RGPU_SCHED_DEFAULT_KEY " is "
        "readable; a scheduler with --key needs that for alloc --job and release of a job's "
        "lease. Without the key, renew and release prove the lease is yours with its token "
        "(set for the command of alloc --), and requests carry a MUNGE credential when munged "
        "is running (RGPU_MUNGE_SOCKET names its socket), which a scheduler with --auth munge "
        "needs. N is 1 to 4096, SECONDS 1 to 31536000 and ID a lease id, in decimal digits.";
    rgpu_cli_table.positional = 1;
    rgpu_cli_table.extra_help = "\nCommands:\n" RGPU_CLI_COMMANDS "\n";
    rgpu_cli_table.man_extra =
        ".SH COMMANDS\n"
        ".TP\n.B servers\nList GPU servers.\n"
        ".TP\n.B gpus\nList GPUs and the leases holding them.\n"
        ".TP\n.B leases\nList leases.\n"
        ".TP\n.B sessions\nList client sessions open on the servers.\n"
        ".TP\n.B alloc \\-n \\fIN\\fR [\\-\\-mem \\fISIZE\\fR] [\\-\\-shared] "
        "[\\-\\-api opencl|cuda] [\\-\\-same\\-server] [\\-\\-spread] [\\-\\-job "
        "\\fIID\\fR] [\\-\\-ttl \\fISECONDS\\fR] [\\-\\- \\fICOMMAND\\fR...]\n"
        "Lease N GPUs, of servers serving --api (default opencl). With a COMMAND, run it "
        "with the lease's environment (RGPU_SERVERS, RGPU_LEASE_TOKEN, RGPU_LEASE; for a cuda "
        "lease LD_LIBRARY_PATH with the directory of rgpu's libcudart.so.13 first: "
        "RGPU_CUDA_LIBDIR, default " RGPU_CUDA_LIBDIR_DEFAULT "), renew the lease at half its "
        "life while it runs, release it when it ends however it ends, and exit with its "
        "status. Without one, print the lease and that environment.\n"
        ".TP\n.B release \\fIID\\fR\nRelease lease ID.\n"
        ".TP\n.B renew \\fIID\\fR [\\fISECONDS\\fR]\nExtend lease ID (prints the new "
        "token).\n"
        ".TP\n.B drain \\fISERVER\\fR | resume \\fISERVER\\fR\nStop or restart giving "
        "SERVER's GPUs out.\n"
        ".SH EXIT STATUS\n0 done; 1 the scheduler refused or cannot be reached; 2 usage.\n";
}

static void rgpu_cli_usage(FILE *out)
{
    fprintf(out, "usage: rgpu %s\n%s", rgpu_cli_table.synopsis, RGPU_CLI_COMMANDS);
    fprintf(out, "Options: rgpu --help\n");
}

static const char *rgpu_cli_getenv(const char *name)
{
    return getenv(name);
}

/* Sends one request and returns the unpacked reply (caller frees), or NULL
 * with a message printed. Bounded by the client's timeout. */
static void *rgpu_cli_call(uint16_t type, const ProtobufCMessage *msg, uint16_t reply_type,
                           const ProtobufCMessageDescriptor *desc)
{
    char err[512];
    void *reply;

    rgpu_cli_client.addr = rgpu_cli_sched;
    reply = rgpu_sched_call(&rgpu_cli_client, type, msg, reply_type, desc, err, sizeof(err));
    if (!reply)
        fprintf(stderr, "rgpu: %s\n", err);
    return reply;
}

/* After a refusal: says so when the request went without the MUNGE
 * credential it was meant to carry (munged not reachable). */
static void rgpu_cli_munge_note(int status)
{
    if (status == RGPU_ERR_REFUSED && *rgpu_cli_munge_error)
        fprintf(stderr, "rgpu: the request carried no MUNGE credential: %s "
                        "(RGPU_MUNGE_SOCKET names munged's socket)\n", rgpu_cli_munge_error);
}

static int rgpu_cli_status(Rgpu__SchedStatus *reply, const char *what)
{
    int rc = 0;

    if (!reply)
        return 1;
    if (reply->status != 0) {
        fprintf(stderr, "rgpu: %s: %s\n", what, *reply->reason ? reply->reason :
                rgpu_status_str((rgpu_status_t)reply->status));
        rgpu_cli_munge_note(reply->status);
        rc = 1;
    }
    rgpu__sched_status__free_unpacked(reply, NULL);
    return rc;
}

static void rgpu_cli_json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static const char *rgpu_cli_api_name(int api)
{
    return api == RGPU__API_FAMILY__API_OPENCL ? "opencl" : api == RGPU__API_FAMILY__API_CUDA ? "cuda" : "?";
}

/* A lease's API: OpenCL for leases of schedulers that did not record it. */
static int rgpu_cli_lease_api(const Rgpu__Lease *l)
{
    return l->api == RGPU__API_FAMILY__API_NONE ? RGPU__API_FAMILY__API_OPENCL : (int)l->api;
}

/* Where rgpu's libcudart.so.13 is: RGPU_CUDA_LIBDIR (a build tree, tests),
 * else where the rgpu-client package installs it. */
static const char *rgpu_cli_cuda_libdir(void)
{
    const char *dir = getenv("RGPU_CUDA_LIBDIR");

    return dir && *dir ? dir : RGPU_CUDA_LIBDIR_DEFAULT;
}

/* LD_LIBRARY_PATH for a CUDA lease's programs: rgpu's runtime first, so a
 * program built with -cudart shared loads it instead of NVIDIA's. The
 * caller frees it. */
static char *rgpu_cli_cuda_path(void)
{
    const char *old = getenv("LD_LIBRARY_PATH"), *dir = rgpu_cli_cuda_libdir();
    size_t len = strlen(dir) + (old ? strlen(old) : 0) + 2;
    char *path = malloc(len);

    if (path)
        snprintf(path, len, "%s%s%s", dir, old && *old ? ":" : "", old && *old ? old : "");
    return path;
}

static void rgpu_cli_size(uint64_t bytes, char *out, size_t cap)
{
    if (bytes >= (1ull << 30))
        snprintf(out, cap, "%.1fG", (double)bytes / (1ull << 30));
    else if (bytes >= (1ull << 20) || bytes == 0)
        snprintf(out, cap, "%lluM", (unsigned long long)(bytes >> 20));
    else
        snprintf(out, cap, "%lluK", (unsigned long long)((bytes + 1023) >> 10));
}

static void rgpu_cli_lease_json(const Rgpu__Lease *l)
{
    printf("{\"id\":%llu,\"user\":", (unsigned long long)l->id);
    rgpu_cli_json_str(l->user);
    printf(",\"job\":");
    rgpu_cli_json_str(l->slurm_job_id);
    printf(",\"expires_unix\":%lld,\"shared\":%s,\"memory_quota\":%llu,\"api\":\"%s\","
           "\"gpus\":[",
           (long long)l->expires_unix, l->shared ? "true" : "false",
           (unsigned long long)l->memory_quota, rgpu_cli_api_name(rgpu_cli_lease_api(l)));
    for (size_t g = 0; g < l->n_gpus; g++) {
        printf("%s{\"server\":", g ? "," : "");
        rgpu_cli_json_str(l->gpus[g]->server);
        printf(",\"index\":%u,\"model\":", l->gpus[g]->index);
        rgpu_cli_json_str(l->gpus[g]->model);
        printf(",\"memory\":%llu,\"endpoints\":[", (unsigned long long)l->gpus[g]->memory);
        for (size_t e = 0; e < l->gpus[g]->n_endpoints; e++) {
            printf("%s", e ? "," : "");
            rgpu_cli_json_str(l->gpus[g]->endpoints[e]);
        }
        printf("]}");
    }
    printf("]");
    if (*l->token) {    /* alloc and renew only: listings carry none */
        printf(",\"token\":");
        rgpu_cli_json_str(l->token);
    }
    printf("}");
}

static void rgpu_cli_lease_row(const Rgpu__Lease *l, int64_t now)
{
    char gpus[512] = "";
    size_t len = 0;

    for (size_t g = 0; g < l->n_gpus && len < sizeof(gpus) - 1; g++)
        len += (size_t)snprintf(gpus + len, sizeof(gpus) - len, "%s%s/%u", g ? "," : "",
                                l->gpus[g]->server, l->gpus[g]->index);
    if (len >= sizeof(gpus))
        strcpy(gpus + sizeof(gpus) - 4, "...");
    printf("%-6llu %-12s %-12s %-9s %-6s %-8lld %s\n", (unsigned long long)l->id,
           *l->user ? l->user : "-", *l->slurm_job_id ? l->slurm_job_id : "-",
           l->shared ? "shared" : "exclusive", rgpu_cli_api_name(rgpu_cli_lease_api(l)),
           (long long)(l->expires_unix - now), gpus);
}

/* "2 (x86_64, aarch64)": the sessions and their distinct client
 * architectures, in the order first seen; "0" when none. */
static void rgpu_cli_sessions_summary(const Rgpu__ServerState *s, char *out, size_t cap)
{
    size_t len = (size_t)snprintf(out, cap, "%zu", s->n_sessions), archs = 0;

    for (size_t i = 0; i < s->n_sessions && len < cap; i++) {
        const char *arch = *s->sessions[i]->client_arch ? s->sessions[i]->client_arch : "?";
        int seen = 0;

        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(*s->sessions[k]->client_arch ? s->sessions[k]->client_arch : "?",
                          arch) == 0;
        if (!seen)
            len += (size_t)snprintf(out + len, cap - len, "%s%s", archs++ ? ", " : " (", arch);
    }
    if (archs && len < cap)
        snprintf(out + len, cap - len, ")");
}

static void rgpu_cli_session_json(const Rgpu__ServerState *s, const Rgpu__SessionInfo *x)
{
    printf("{\"server\":");
    rgpu_cli_json_str(s->address);
    printf(",\"session_id\":%llu,\"client_arch\":", (unsigned long long)x->session_id);
    rgpu_cli_json_str(x->client_arch);
    printf(",\"client_host\":");
    rgpu_cli_json_str(x->client_host);
    printf(",\"client_pid\":%u,\"lease_id\":%llu,\"memory_bytes\":%llu,\"started_unix\":%lld}",
           x->client_pid, (unsigned long long)x->lease_id, (unsigned long long)x->memory_bytes,
           (long long)x->started_unix);
}

static int rgpu_cli_list(const char *what)
{
    Rgpu__ListRequest req = RGPU__LIST_REQUEST__INIT;
    Rgpu__ListReply *r = rgpu_cli_call(RGPU__MSG_TYPE__MSG_SCHED_LIST, &req.base,
                                       RGPU__MSG_TYPE__MSG_SCHED_LIST_REPLY,
                                       &rgpu__list_reply__descriptor);
    int64_t now = (int64_t)time(NULL);
    char mem[32];

    if (!r)
        return 1;
    if (r->status) {
        fprintf(stderr, "rgpu: %s: %s\n", what, r->reason);
        rgpu_cli_munge_note(r->status);
        rgpu__list_reply__free_unpacked(r, NULL);
        return 1;
    }
    if (!r->everything && strcmp(what, "leases") == 0)
        fprintf(stderr, "rgpu: only the leases of %s are listed\n", r->caller);
    if (strcmp(what, "servers") == 0) {
        if (rgpu_cli_json)
            printf("[");
        else
            printf("%-24s %-6s %-8s %-5s %-10s %-24s %s\n", "SERVER", "STATE", "DRAINED", "GPUS",
                   "LAST SEEN", "SESSIONS", "HOST");
        for (size_t i = 0; i < r->n_servers; i++) {
            const Rgpu__ServerState *s = r->servers[i];
            size_t n = 0;

            for (size_t g = 0; g < r->n_gpus; g++)
                n += strcmp(r->gpus[g]->server, s->address) == 0;
            if (rgpu_cli_json) {
                printf("%s{\"address\":", i ? "," : "");
                rgpu_cli_json_str(s->address);
                printf(",\"up\":%s,\"drained\":%s,\"gpus\":%zu,\"last_seen_unix\":%lld,"
                       "\"transport\":", s->up ? "true" : "false", s->drained ? "true" : "false",
                       n, (long long)s->last_seen_unix);
                rgpu_cli_json_str(s->transport);
                printf(",\"hostname\":");
                rgpu_cli_json_str(s->hostname);
                printf(",\"endpoints\":[");
                for (size_t e = 0; e < s->n_endpoints; e++) {
                    printf("%s", e ? "," : "");
                    rgpu_cli_json_str(s->endpoints[e]);
                }
                printf("],\"sessions\":[");
                for (size_t k = 0; k < s->n_sessions; k++) {
                    printf("%s", k ? "," : "");
                    rgpu_cli_session_json(s, s->sessions[k]);
                }
                printf("]}");
            } else {
                char sessions[128];

                rgpu_cli_sessions_summary(s, sessions, sizeof(sessions));
                printf("%-24s %-6s %-8s %-5zu %-10s %-24s %s\n", s->address,
                       s->up ? "up" : "down", s->drained ? "yes" : "no", n,
                       (snprintf(mem, sizeof(mem), "%llds ago",
                                 (long long)(now - s->last_seen_unix)), mem),
                       sessions, s->hostname);
            }
        }
        if (rgpu_cli_json)
            printf("]\n");
    } else if (strcmp(what, "sessions") == 0) {
        size_t shown = 0;

        if (rgpu_cli_json)
            printf("[");
        else
            printf("%-24s %-10s %-8s %-20s %-8s %-6s %s\n", "SERVER", "SESSION", "ARCH", "HOST",
                   "PID", "LEASE", "MEMORY");
        for (size_t i = 0; i < r->n_servers; i++) {
            const Rgpu__ServerState *s = r->servers[i];

            for (size_t k = 0; k < s->n_sessions; k++, shown++) {
                const Rgpu__SessionInfo *x = s->sessions[k];
                char lease[24] = "-";

                if (rgpu_cli_json) {
                    printf("%s", shown ? "," : "");
                    rgpu_cli_session_json(s, x);
                    continue;
                }
                if (x->lease_id)
                    snprintf(lease, sizeof(lease), "%llu", (unsigned long long)x->lease_id);
                rgpu_cli_size(x->memory_bytes, mem, sizeof(mem));
                printf("%-24s %-10llu %-8s %-20.20s %-8u %-6s %s\n", s->address,
                       (unsigned long long)x->session_id, *x->client_arch ? x->client_arch : "?",
                       *x->client_host ? x->client_host : "?", x->client_pid, lease, mem);
            }
        }
        if (rgpu_cli_json)
            printf("]\n");
    } else if (strcmp(what, "gpus") == 0) {
        if (rgpu_cli_json)
            printf("[");
        else
            printf("%-24s %-5s %-28s %-8s %-13s %-9s %s\n", "SERVER", "INDEX", "MODEL", "MEMORY",
                   "API", "STATE", "LEASES");
        for (size_t g = 0; g < r->n_gpus; g++) {
            const Rgpu__GpuState *s = r->gpus[g];

            if (rgpu_cli_json) {
                printf("%s{\"server\":", g ? "," : "");
                rgpu_cli_json_str(s->server);
                printf(",\"index\":%u,\"model\":", s->gpu->index);
                rgpu_cli_json_str(s->gpu->model);
                printf(",\"memory\":%llu,\"memory_reserved\":%llu,\"exclusive\":%s,\"apis\":[",
                       (unsigned long long)s->gpu->memory,
                       (unsigned long long)s->memory_reserved, s->exclusive ? "true" : "false");
                for (size_t a = 0; a < s->gpu->n_apis; a++)
                    printf("%s\"%s\"", a ? "," : "", rgpu_cli_api_name(s->gpu->apis[a]));
                printf("],\"leases\":[");
                for (size_t l = 0; l < s->n_leases; l++)
                    printf("%s%llu", l ? "," : "", (unsigned long long)s->leases[l]);
                printf("]}");
            } else {
                char leases[128] = "-", apis[32] = "opencl";
                size_t len = 0, alen = 0;

                /* A GPU listing no API is a pre-CUDA server's: OpenCL. */
                for (size_t a = 0; a < s->gpu->n_apis && alen < sizeof(apis) - 8; a++)
                    alen += (size_t)snprintf(apis + alen, sizeof(apis) - alen, "%s%s",
                                             a ? "," : "", rgpu_cli_api_name(s->gpu->apis[a]));
                for (size_t l = 0; l < s->n_leases && len < sizeof(leases) - 24; l++)
                    len += (size_t)snprintf(leases + len, sizeof(leases) - len, "%s%llu",
                                            l ? "," : "", (unsigned long long)s->leases[l]);
                rgpu_cli_size(s->gpu->memory, mem, sizeof(mem));
                printf("%-24s %-5u %-28.28s %-8s %-13s %-9s %s\n", s->server, s->gpu->index,
                       s->gpu->model, mem, apis,
                       s->exclusive ? "exclusive" : s->n_leases ? "shared" : "free", leases);
            }
        }
        if (rgpu_cli_json)
            printf("]\n");
    } else {
        if (rgpu_cli_json)
            printf("[");
        else
            printf("%-6s %-12s %-12s %-9s %-6s %-8s %s\n", "LEASE", "USER", "JOB", "MODE", "API",
                   "TTL(s)", "GPUS (server/index)");
        for (size_t i = 0; i < r->n_leases; i++) {
            if (rgpu_cli_json) {
                printf("%s", i ? "," : "");
                rgpu_cli_lease_json(r->leases[i]);
            } else {
                rgpu_cli_lease_row(r->leases[i], now);
            }
        }
        if (rgpu_cli_json)
            printf("]\n");
    }
    rgpu__list_reply__free_unpacked(r, NULL);
    return 0;
}

/* Releases lease id, proving it ours with token (or the key's signature). */
static int rgpu_cli_release(uint64_t id, const char *token)
{
    Rgpu__ReleaseRequest req = RGPU__RELEASE_REQUEST__INIT;
    char what[64];

    req.lease_id = id;
    req.token = (char *)token;
    snprintf(what, sizeof(what), "release %llu", (unsigned long long)id);
    return rgpu_cli_status(rgpu_cli_call(RGPU__MSG_TYPE__MSG_SCHED_RELEASE, &req.base,
                                         RGPU__MSG_TYPE__MSG_SCHED_STATUS,
                                         &rgpu__sched_status__descriptor),
                           what);
}

static int rgpu_cli_lease_print(Rgpu__LeaseReply *r, const char *what)
{
    if (!r)
        return 1;
    if (r->status || !r->lease) {
        fprintf(stderr, "rgpu: %s: %s\n", what, *r->reason ? r->reason :
                rgpu_status_str((rgpu_status_t)r->status));
        rgpu_cli_munge_note(r->status);
        rgpu__lease_reply__free_unpacked(r, NULL);
        return 1;
    }
    if (rgpu_cli_json) {
        rgpu_cli_lease_json(r->lease);
        printf("\n");
    } else {
        printf("lease %llu (%s)\n", (unsigned long long)r->lease->id,
               rgpu_cli_api_name(rgpu_cli_lease_api(r->lease)));
        for (size_t g = 0; g < r->lease->n_gpus; g++)
            printf("  gpu %s/%u %s\n", r->lease->gpus[g]->server, r->lease->gpus[g]->index,
                   r->lease->gpus[g]->model);
        printf("RGPU_LEASE_TOKEN=%s\n", r->lease->token);
        if (rgpu_cli_lease_api(r->lease) == RGPU__API_FAMILY__API_CUDA) {
            char *path = rgpu_cli_cuda_path();

            printf("LD_LIBRARY_PATH=%s\n", path ? path : rgpu_cli_cuda_libdir());
            free(path);
        }
    }
    rgpu__lease_reply__free_unpacked(r, NULL);
    return 0;
}

/* RGPU_SERVERS for a lease: its servers, each once, in lease order. */
static char *rgpu_cli_servers(const Rgpu__Lease *l)
{
    size_t cap = 1;
    char *out;

    for (size_t g = 0; g < l->n_gpus; g++)
        cap += strlen(l->gpus[g]->server) + 1;
    out = calloc(1, cap);
    if (!out)
        return NULL;
    for (size_t g = 0; g < l->n_gpus; g++) {
        int seen = 0;

        for (size_t k = 0; k < g; k++)
            seen |= strcmp(l->gpus[k]->server, l->gpus[g]->server) == 0;
        if (seen)
            continue;
        if (*out)
            strcat(out, ",");
        strcat(out, l->gpus[g]->server);
    }
    return out;
}

/* Waits for the command, renewing the lease at half its remaining life so
 * the scheduler does not reclaim it under a long command. The token in the
 * command's environment keeps its first expiry: sessions opened before it
 * go on, later ones need the renewed token (`rgpu renew`). *token_p is the
 * lease's latest token (it proves the renewals ours), replaced by each
 * renewal's (the caller frees it). Returns the command's exit status (128
 * + signal when killed). */
static int rgpu_cli_wait_renewing(pid_t pid, uint64_t id, uint32_t ttl_s, int64_t expires,
                                  char **token_p)
{
    int64_t next = (int64_t)time(NULL) + (expires - (int64_t)time(NULL)) / 2;
    int status = 0, warned = 0;
    pid_t w;

    for (;;) {
        w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            fprintf(stderr, "rgpu: waiting for the command: %s\n", strerror(errno));
            return 1;
        }
        usleep(100 * 1000);
        if ((int64_t)time(NULL) >= next) {
            Rgpu__RenewRequest req = RGPU__RENEW_REQUEST__INIT;
            Rgpu__LeaseReply *r;
            int64_t now = (int64_t)time(NULL);

            req.lease_id = id;
            req.ttl_s = ttl_s;
            req.token = *token_p;
            r = rgpu_cli_call(RGPU__MSG_TYPE__MSG_SCHED_RENEW, &req.base,
                              RGPU__MSG_TYPE__MSG_SCHED_LEASE_REPLY, &rgpu__lease_reply__descriptor);
            if (r && r->status == 0 && r->lease) {
                char *fresh = strdup(r->lease->token);

                if (fresh) {
                    free(*token_p);
                    *token_p = fresh;
                }
                next = now + (r->lease->expires_unix - now) / 2;
                warned = 0;
            } else {
                if (!warned)
                    fprintf(stderr, "rgpu: cannot renew lease %llu: %s; retrying\n",
                            (unsigned long long)id, r && *r->reason ? r->reason : "no answer");
                warned = 1;
                next = now + 1;
            }
            if (r)
                rgpu__lease_reply__free_unpacked(r, NULL);
        }
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int rgpu_cli_alloc(int argc, char **argv)
{
    Rgpu__AllocRequest req = RGPU__ALLOC_REQUEST__INIT;
    Rgpu__LeaseReply *r;
    struct passwd *pw = getpwuid(getuid());
    uint64_t mem = 0, n;
    char **cmd = NULL, *servers, id[32], *token;
    int rc;
    pid_t pid;

    req.count = 1;
    req.api = RGPU__API_FAMILY__API_OPENCL;
    req.user = (char *)(getenv("USER") ? getenv("USER") : pw ? pw->pw_name : "");
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--") == 0) {
            cmd = argv + i + 1;
            if (!*cmd) {
                fprintf(stderr, "rgpu: alloc: nothing after --\n");
                return 2;
            }
            break;
        } else if (strcmp(a, "--shared") == 0) {
            req.shared = 1;
        } else if (strcmp(a, "--same-server") == 0) {
            req.same_server = 1;
        } else if (strcmp(a, "--spread") == 0) {
            req.placement = RGPU__PLACEMENT__PLACEMENT_SPREAD;
        } else if (!v) {
            fprintf(stderr, "rgpu: alloc: %s needs a value (or unknown option)\n", a);
            return 2;
        } else if (strcmp(a, "-n") == 0) {
            if (rgpu_cli_uint(v, 1, 4096, &n) != 0) {
                fprintf(stderr, "rgpu: alloc: -n %s: expected 1 to 4096 GPUs\n", v);
                return 2;
            }
            req.count = (uint32_t)n;
            i++;
        } else if (strcmp(a, "--mem") == 0) {
            if (rgpu_size_parse(v, &mem) != 0) {
                fprintf(stderr, "rgpu: alloc: --mem %s: expected a size such as 512M or 4G\n", v);
                return 2;
            }
            i++;
        } else if (strcmp(a, "--api") == 0) {
            if (strcmp(v, "opencl") == 0)
                req.api = RGPU__API_FAMILY__API_OPENCL;
            else if (strcmp(v, "cuda") == 0)
                req.api = RGPU__API_FAMILY__API_CUDA;
            else {
                fprintf(stderr, "rgpu: alloc: --api %s: expected opencl or cuda\n", v);
                return 2;
            }
            i++;
        } else if (strcmp(a, "--job") == 0) {
            req.slurm_job_id = (char *)v;
            i++;
        } else if (strcmp(a, "--ttl") == 0) {
            if (rgpu_cli_uint(v, 1, RGPU_CLI_MAX_TTL_S, &n) != 0) {
                fprintf(stderr, "rgpu: alloc: --ttl %s: expected seconds, 1 to %llu\n", v,
                        RGPU_CLI_MAX_TTL_S);
                return 2;
            }
            req.ttl_s = (uint32_t)n;
            i++;
        } else {
            fprintf(stderr, "rgpu: alloc: unknown option %s\n", a);
            return 2;
        }
    }
    /* Exclusive: each GPU has at least SIZE; shared: SIZE reserved per GPU (the quota). */
    if (req.shared)
        req.memory = mem;
    req.min_memory = mem;
    r = rgpu_cli_call(RGPU__MSG_TYPE__MSG_SCHED_ALLOC, &req.base,
                      RGPU__MSG_TYPE__MSG_SCHED_LEASE_REPLY, &rgpu__lease_reply__descriptor);
    if (!cmd)
        return rgpu_cli_lease_print(r, "alloc");
    if (!r)
        return 1;
    if (r->status || !r->lease) {
        fprintf(stderr, "rgpu: alloc: %s\n", r->reason);
        rgpu_cli_munge_note(r->status);
        rgpu__lease_reply__free_unpacked(r, NULL);
        return 1;
    }
    servers = rgpu_cli_servers(r->lease);
    snprintf(id, sizeof(id), "%llu", (unsigned long long)r->lease->id);
    fprintf(stderr, "rgpu: lease %s: %zu GPUs on %s\n", id, r->lease->n_gpus,
            servers ? servers : "?");
    /* The parent must outlive a ^C to release: the child gets the signals. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    pid = fork();
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        setenv("RGPU_SERVERS", servers ? servers : "", 1);
        setenv("RGPU_LEASE_TOKEN", r->lease->token, 1);
        setenv("RGPU_LEASE", id, 1);
        if (rgpu_cli_lease_api(r->lease) == RGPU__API_FAMILY__API_CUDA) {
            char *path = rgpu_cli_cuda_path();

            if (!path) {
                fprintf(stderr, "rgpu: out of memory\n");
                _exit(127);
            }
            setenv("LD_LIBRARY_PATH", path, 1);
        }
        execvp(cmd[0], cmd);
        fprintf(stderr, "rgpu: cannot run %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }
    token = strdup(r->lease->token);
    if (!token) {
        fprintf(stderr, "rgpu: out of memory\n");
        rc = 1;
    } else if (pid < 0) {
        fprintf(stderr, "rgpu: cannot fork: %s\n", strerror(errno));
        rc = 1;
    } else {
        rc = rgpu_cli_wait_renewing(pid, r->lease->id, req.ttl_s, r->lease->expires_unix, &token);
    }
    if (rgpu_cli_release(r->lease->id, token ? token : r->lease->token) != 0 && rc == 0)
        rc = 1;
    free(token);
    free(servers);
    rgpu__lease_reply__free_unpacked(r, NULL);
    return rc;
}

int main(int argc, char **argv)
{
    static rgpu_client_conf_t conf;
    int i;
    const char *cmd, *key_path = NULL;

    signal(SIGPIPE, SIG_IGN);
    rgpu_cli_table_init();
    /* client.conf, then RGPU_SCHEDULER, RGPU_SCHED_TIMEOUT, RGPU_KEY and
     * RGPU_LEASE_TOKEN, then the options before the command. */
    switch (rgpu_opt_load(&rgpu_cli_table, &conf, &conf.opt, argc, argv, rgpu_cli_getenv, stdout,
                          stderr)) {
    case RGPU_OPT_RUN:
        break;
    case RGPU_OPT_EXIT_OK:
        return 0;
    case RGPU_OPT_EXIT_USAGE:
        return 2;
    }
    if (conf.opt.print_config) {
        rgpu_opt_print(&rgpu_cli_table, &conf, &conf.opt, stdout);
        return 0;
    }
    rgpu_cli_sched = conf.scheduler;
    rgpu_cli_token = conf.token;
    rgpu_cli_client.timeout_ms = conf.sched_timeout_ms;
    rgpu_cli_json = conf.json;
    key_path = conf.key[0] ? conf.key : NULL;
    i = conf.opt.argi;
    if (i < argc && strcmp(argv[i], "--") == 0)
        i++;
    if (i >= argc) {
        rgpu_cli_usage(stderr);
        return 2;
    }
    /* A key named (--key, RGPU_KEY, client.conf) must load; the default one
     * may be absent. */
    if (key_path || access(RGPU_SCHED_DEFAULT_KEY, R_OK) == 0) {
        char why[300];

        if (rgpu_token_key_load(key_path ? key_path : RGPU_SCHED_DEFAULT_KEY, &rgpu_cli_key, why,
                                sizeof(why)) != RGPU_OK) {
            fprintf(stderr, "rgpu: %s\n", why);
            return 2;
        }
        rgpu_cli_client.key = &rgpu_cli_key;
        rgpu_cli_client.munge = 0;
    }
    cmd = argv[i++];
    if (strcmp(cmd, "servers") == 0 || strcmp(cmd, "gpus") == 0 || strcmp(cmd, "leases") == 0 ||
        strcmp(cmd, "sessions") == 0)
        return rgpu_cli_list(cmd);
    if (strcmp(cmd, "alloc") == 0)
        return rgpu_cli_alloc(argc - i, argv + i);
    if ((strcmp(cmd, "release") == 0 || strcmp(cmd, "renew") == 0) && i < argc) {
        int release = strcmp(cmd, "release") == 0;
        uint64_t id, ttl = 0;

        if (rgpu_cli_uint(argv[i], 1, UINT64_MAX, &id) != 0) {
            fprintf(stderr, "rgpu: %s: \"%s\" is not a lease id (decimal digits, 1 to %llu)\n",
                    cmd, argv[i], (unsigned long long)UINT64_MAX);
            return 2;
        }
        if (argc - i > (release ? 1 : 2)) {
            fprintf(stderr, "rgpu: %s: unexpected argument \"%s\"\n", cmd,
                    argv[i + (release ? 1 : 2)]);
            return 2;
        }
        if (release)
            return rgpu_cli_release(id, rgpu_cli_token);
        if (i + 1 < argc && rgpu_cli_uint(argv[i + 1], 1, RGPU_CLI_MAX_TTL_S, &ttl) != 0) {
            fprintf(stderr, "rgpu: renew: \"%s\" is not a ttl: expected seconds, 1 to %llu\n",
                    argv[i + 1], RGPU_CLI_MAX_TTL_S);
            return 2;
        }
        {
            Rgpu__RenewRequest req = RGPU__RENEW_REQUEST__INIT;

            req.lease_id = id;
            req.ttl_s = (uint32_t)ttl;
            req.token = (char *)rgpu_cli_token;
            return rgpu_cli_lease_print(
                rgpu_cli_call(RGPU__MSG_TYPE__MSG_SCHED_RENEW, &req.base,
                              RGPU__MSG_TYPE__MSG_SCHED_LEASE_REPLY,
                              &rgpu__lease_reply__descriptor),
                "renew");
        }
    }
    if ((strcmp(cmd, "drain") == 0 || strcmp(cmd, "resume") == 0) && i < argc) {
        Rgpu__DrainRequest req = RGPU__DRAIN_REQUEST__INIT;

        req.address = argv[i];
        req.drain = strcmp(cmd, "drain") == 0;
        return rgpu_cli_status(rgpu_cli_call(RGPU__MSG_TYPE__MSG_SCHED_DRAIN, &req.base,
                                             RGPU__MSG_TYPE__MSG_SCHED_STATUS,
                                             &rgpu__sched_status__descriptor),
                               cmd);
    }
    fprintf(stderr, "rgpu: unknown command or missing argument: %s\n", cmd);
    rgpu_cli_usage(stderr);
    return 2;
}
