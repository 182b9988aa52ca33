/*
 * The CUDA protocol on the server (proto/cuda.proto), shared by the real
 * driver backend and the emulation (see cuda_device.h for the split).
 *
 * Every object a client creates is in the session's handle tables under the
 * client's id: modules, functions, streams, events. Device memory is in a
 * table of allocations per device, sorted by address, and every copy and
 * memset range is checked against it before any memory is touched: a range
 * must lie inside one allocation. Device memory is reserved against the
 * lease's quota (rgpu_session_mem_reserve) before it is allocated.
 *
 * Contexts: one per session and device, created at its first use. A
 * context is a GPU virtual address space of its own, so tenants are
 * separated by the GPU's MMU: an address one session forges cannot reach
 * another session's memory, and a kernel that strays faults in its own
 * context only. The primary context would be shared by every session of
 * the server process and would give that up. The price is a context's
 * memory and creation time per session and device (tens to hundreds of
 * milliseconds, once per session).
 *
 * Fatbinaries are kept by the backend by content (SHA-256 of the bytes the
 * server received): the hundredth process of one program sends only the
 * hash, and the server loads its module from the cached bytes. The bytes
 * are still loaded into each session's own context.
 *
 * Asynchronous calls that fail are reported with MSG_ASYNC_ERROR, sent on
 * the session thread before anything that follows, so the client sees the
 * error at its next synchronizing call. A fault that breaks the context
 * (an illegal address in a kernel) is sticky, as in CUDA: every later call
 * on that device fails with it until cudaDeviceReset.
 *
 * When a session ends, however it ends, its contexts are destroyed (which
 * frees everything in them), its quota is given back and its cached
 * fatbinaries are unreferenced.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "cuda.pb-c.h"
#include "cuda_device.h"
#include "rgpu/htable.h"
#include "rgpu/log.h"
#include "session.h"

/* Bounds on what one session may hold. */
#define RGPU_CU_MAX_OBJECTS (1u << 16)      /* modules, functions, streams, events */
#define RGPU_CU_MAX_ALLOCS (1u << 20)       /* live allocations per device */
#define RGPU_CU_MAX_NAME 4096               /* a kernel or variable name */
#define RGPU_CU_MAX_NAME_BYTES (8u << 20)   /* all of a session's function names */
/* The largest fatbinary accepted, below --max-bulk. */
#define RGPU_CU_MAX_IMAGE (1ull << 30)
/* Fatbinaries no session uses stay cached up to this many bytes. */
#define RGPU_CU_CACHE_KEEP (512ull << 20)
/* Fatbinaries the server holds at most, in use or not, arriving included:
 * sessions uploading distinct images cannot exhaust the host's memory. */
#define RGPU_CU_CACHE_MAX (8ull << 30)
/* Devices a CUDA backend serves at most (a session keeps an array). */
#define RGPU_CU_MAX_DEVICES 64

/* A fatbinary, by content, shared by the modules of every session. */
typedef struct rgpu_cu_image {
    struct rgpu_cu_image *next;
    uint8_t sha256[32];
    uint8_t *data;
    size_t len;
    int refs;                   /* modules holding it; under the cache lock */
    uint64_t last_used;         /* cache clock when refs last fell to 0 */
} rgpu_cu_image_t;

struct rgpu_backend {
    const rgpu_cu_device_ops_t *ops;
    rgpu_cu_dev_t *dev;
    uint32_t n_devices;
    char describe[512];
    char platform_version[32];
    Rgpu__Device *devices;
    Rgpu__Device **device_ptrs;

    pthread_mutex_t cache_lock;  /* protects what follows */
    rgpu_cu_image_t *images;
    uint64_t cache_clock;
    uint64_t cache_bytes;       /* images' bytes, plus uploads being received */
};

typedef struct {
    uint64_t addr, size;
    int global;                 /* a module's __device__ variable: not the client's to free */
} rgpu_cu_alloc_t;

/* A session on one device. */
typedef struct {
    rgpu_cu_ctx_t *ctx;         /* NULL until first used (and after a reset) */
    int sticky;                 /* the CUresult that broke the context, or 0 */
    rgpu_cu_alloc_t *allocs;    /* sorted by addr, disjoint */
    size_t n_allocs, cap_allocs;
    uint64_t bytes;             /* sum of allocs' sizes */
} rgpu_cu_devstate_t;

typedef struct {
    rgpu_cu_image_t *image;     /* NULL while the client still owes the data */
    uint64_t want_size;         /* size announced by CuModuleLoad */
    uint32_t device;            /* the device it was loaded on first */
    void *handles[RGPU_CU_MAX_DEVICES];  /* per device, loaded lazily */
} rgpu_cu_module_t;

typedef struct {
    uint64_t module_id;
    rgpu_cu_module_t *module;
    char *name;
    void *handles[RGPU_CU_MAX_DEVICES];
    int64_t param_bytes[RGPU_CU_MAX_DEVICES];   /* -1: not asked yet, 0: unknown */
} rgpu_cu_function_t;

typedef struct {
    uint32_t device;
    void *handle;
} rgpu_cu_devobj_t;             /* a stream or an event */

typedef struct {
    rgpu_backend_t *be;
    rgpu_session_t *session;
    rgpu_cu_devstate_t devs[RGPU_CU_MAX_DEVICES];
    rgpu_htable_t modules, functions, streams, events;
    size_t n_objects;
    size_t name_bytes;          /* held by its functions' names */
} rgpu_cu_session_t;

/* ---- names and errors ------------------------------------------------ */

const char *rgpu__cu_result_name(int result)
{
    switch (result) {
    case RGPU_CU_SUCCESS: return "CUDA_SUCCESS";
    case RGPU_CU_INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
    case RGPU_CU_OUT_OF_MEMORY: return "CUDA_ERROR_OUT_OF_MEMORY";
    case RGPU_CU_NOT_INITIALIZED: return "CUDA_ERROR_NOT_INITIALIZED";
    case RGPU_CU_NO_DEVICE: return "CUDA_ERROR_NO_DEVICE";
    case RGPU_CU_INVALID_DEVICE: return "CUDA_ERROR_INVALID_DEVICE";
    case RGPU_CU_INVALID_IMAGE: return "CUDA_ERROR_INVALID_IMAGE";
    case RGPU_CU_INVALID_CONTEXT: return "CUDA_ERROR_INVALID_CONTEXT";
    case RGPU_CU_NO_BINARY_FOR_GPU: return "CUDA_ERROR_NO_BINARY_FOR_GPU";
    case RGPU_CU_INVALID_HANDLE: return "CUDA_ERROR_INVALID_HANDLE";
    case RGPU_CU_NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
    case RGPU_CU_NOT_READY: return "CUDA_ERROR_NOT_READY";
    case RGPU_CU_ILLEGAL_ADDRESS: return "CUDA_ERROR_ILLEGAL_ADDRESS";
    case RGPU_CU_LAUNCH_OUT_OF_RESOURCES: return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
    case RGPU_CU_LAUNCH_TIMEOUT: return "CUDA_ERROR_LAUNCH_TIMEOUT";
    case RGPU_CU_LAUNCH_FAILED: return "CUDA_ERROR_LAUNCH_FAILED";
    case RGPU_CU_NOT_SUPPORTED: return "CUDA_ERROR_NOT_SUPPORTED";
    default: return "CUDA error";
    }
}

/* Errors after which the context cannot be used any more (cuda.h: "the
 * process must be terminated and relaunched"): 700, 702 and 714..720. */
static int rgpu_cu_is_sticky(int result)
{
    return result == RGPU_CU_ILLEGAL_ADDRESS || result == RGPU_CU_LAUNCH_TIMEOUT ||
           (result >= 714 && result <= 720);
}

static const char *rgpu_cu_msg_name(uint16_t type)
{
    switch (type) {
    case RGPU__MSG_TYPE__MSG_CU_MODULE_LOAD: return "module load";
    case RGPU__MSG_TYPE__MSG_CU_MODULE_DATA: return "module data";
    case RGPU__MSG_TYPE__MSG_CU_FUNCTION: return "function lookup";
    case RGPU__MSG_TYPE__MSG_CU_FUNC_INFO: return "function info";
    case RGPU__MSG_TYPE__MSG_CU_FUNC_SET_ATTR: return "function attribute";
    case RGPU__MSG_TYPE__MSG_CU_OCCUPANCY: return "occupancy";
    case RGPU__MSG_TYPE__MSG_CU_GET_GLOBAL: return "global lookup";
    case RGPU__MSG_TYPE__MSG_CU_MALLOC: return "cudaMalloc";
    case RGPU__MSG_TYPE__MSG_CU_FREE: return "cudaFree";
    case RGPU__MSG_TYPE__MSG_CU_MEM_GET_INFO: return "cudaMemGetInfo";
    case RGPU__MSG_TYPE__MSG_CU_MEMCPY_H2D: return "copy to the device";
    case RGPU__MSG_TYPE__MSG_CU_MEMCPY_D2H: return "copy from the device";
    case RGPU__MSG_TYPE__MSG_CU_MEMCPY_D2D: return "copy on the device";
    case RGPU__MSG_TYPE__MSG_CU_MEMCPY_2D: return "2D copy";
    case RGPU__MSG_TYPE__MSG_CU_MEMSET: return "memset";
    case RGPU__MSG_TYPE__MSG_CU_STREAM_CREATE: return "stream create";
    case RGPU__MSG_TYPE__MSG_CU_STREAM_DESTROY: return "stream destroy";
    case RGPU__MSG_TYPE__MSG_CU_STREAM_SYNC: return "stream synchronize";
    case RGPU__MSG_TYPE__MSG_CU_STREAM_QUERY: return "stream query";
    case RGPU__MSG_TYPE__MSG_CU_STREAM_WAIT_EVENT: return "stream wait event";
    case RGPU__MSG_TYPE__MSG_CU_EVENT_CREATE: return "event create";
    case RGPU__MSG_TYPE__MSG_CU_EVENT_RECORD: return "event record";
    case RGPU__MSG_TYPE__MSG_CU_EVENT_SYNC: return "event synchronize";
    case RGPU__MSG_TYPE__MSG_CU_EVENT_QUERY: return "event query";
    case RGPU__MSG_TYPE__MSG_CU_EVENT_ELAPSED: return "event elapsed time";
    case RGPU__MSG_TYPE__MSG_CU_EVENT_DESTROY: return "event destroy";
    case RGPU__MSG_TYPE__MSG_CU_LAUNCH: return "kernel launch";
    case RGPU__MSG_TYPE__MSG_CU_DEVICE_SYNC: return "device synchronize";
    case RGPU__MSG_TYPE__MSG_CU_DEVICE_RESET: return "device reset";
    default: return "CUDA call";
    }
}

/* An asynchronous call failed: tells the client (reported at its next
 * synchronizing call). what explains it in words. */
static rgpu_status_t __attribute__((format(printf, 4, 5)))
rgpu_cu_async_error(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr, int err,
                    const char *fmt, ...)
{
    Rgpu__AsyncError msg = RGPU__ASYNC_ERROR__INIT;
    char detail[256], what[384];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    snprintf(what, sizeof(what), "%s failed with %s (%d): %s", rgpu_cu_msg_name(hdr->type),
             rgpu__cu_result_name(err), err, detail);
    rgpu_debug("cuda", "%s: %s", rgpu_session_name(s->session), what);
    msg.seq = hdr->seq;
    msg.msg_type = hdr->type;
    msg.cl_error = err;
    msg.what = what;
    return rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_ASYNC_ERROR, 0, &msg.base, NULL, 0);
}

static rgpu_status_t rgpu_cu_reply_status(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                          int err, const char *what)
{
    Rgpu__CuStatusReply reply = RGPU__CU_STATUS_REPLY__INIT;

    reply.cu_error = err;
    reply.what = (char *)(what ? what : "");
    return rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CU_STATUS_REPLY, hdr->seq,
                             &reply.base, NULL, 0);
}

/* ---- devices and contexts -------------------------------------------- */

/* The device state of index, its context created if needed; NULL with
 * *err_p set (and what filled) when the client may not use it. */
static rgpu_cu_devstate_t *rgpu_cu_dev(rgpu_cu_session_t *s, uint32_t index, int *err_p,
                                       char *what, size_t what_cap)
{
    rgpu_cu_devstate_t *d;
    int r;

    if (index >= s->be->n_devices || !rgpu_session_device_allowed(s->session, index)) {
        snprintf(what, what_cap, "device %u is not one of this session's devices", index);
        *err_p = RGPU_CU_INVALID_DEVICE;
        return NULL;
    }
    d = &s->devs[index];
    if (d->sticky) {
        snprintf(what, what_cap, "device %u failed earlier with %s; its context is unusable "
                 "until cudaDeviceReset", index, rgpu__cu_result_name(d->sticky));
        *err_p = d->sticky;
        return NULL;
    }
    if (!d->ctx) {
        r = s->be->ops->ctx_create(s->be->dev, index, &d->ctx);
        if (r != RGPU_CU_SUCCESS) {
            snprintf(what, what_cap, "cannot create a context on device %u", index);
            *err_p = r;
            d->ctx = NULL;
            return NULL;
        }
    }
    return d;
}

/* Marks the device's context broken when a device call returned a fault
 * that breaks it; returns result. */
static int rgpu_cu_note(rgpu_cu_devstate_t *d, int result)
{
    if (rgpu_cu_is_sticky(result) && !d->sticky)
        d->sticky = result;
    return result;
}

/* The index of the allocation containing addr, or -1. */
static ssize_t rgpu_cu_alloc_find(const rgpu_cu_devstate_t *d, uint64_t addr)
{
    size_t lo = 0, hi = d->n_allocs;

    /* The last allocation starting at or before addr. */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (d->allocs[mid].addr <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return -1;
    lo--;
    if (addr - d->allocs[lo].addr >= d->allocs[lo].size)
        return -1;
    return (ssize_t)lo;
}

/* 0 when the rectangle lies inside one of the device's allocations, else
 * -1 with what saying why. A zero-sized rectangle is always fine. */
static int rgpu_cu_rect_check(const rgpu_cu_devstate_t *d, const rgpu_cu_rect_t *r,
                              const char *role, char *what, size_t what_cap)
{
    uint64_t span, last;
    ssize_t i;

    if (!r->width || !r->height)
        return 0;
    if (r->height > 1 && r->pitch < r->width) {
        snprintf(what, what_cap, "%s pitch %llu is smaller than the width %llu", role,
                 (unsigned long long)r->pitch, (unsigned long long)r->width);
        return -1;
    }
    if (__builtin_mul_overflow(r->pitch, r->height - 1, &span) ||
        __builtin_add_overflow(span, r->width, &span) ||
        __builtin_add_overflow(r->addr, span - 1, &last)) {
        snprintf(what, what_cap, "%s range at 0x%llx overflows", role,
                 (unsigned long long)r->addr);
        return -1;
    }
    i = rgpu_cu_alloc_find(d, r->addr);
    if (i < 0 || last - d->allocs[i].addr >= d->allocs[i].size) {
        snprintf(what, what_cap, "%s range of %llu bytes at 0x%llx is not inside one of the "
                 "session's allocations", role, (unsigned long long)span,
                 (unsigned long long)r->addr);
        return -1;
    }
    return 0;
}

static int rgpu_cu_alloc_insert(rgpu_cu_devstate_t *d, uint64_t addr, uint64_t size, int global)
{
    size_t lo = 0, hi = d->n_allocs;

    if (d->n_allocs == d->cap_allocs) {
        size_t cap = d->cap_allocs ? 2 * d->cap_allocs : 64;
        rgpu_cu_alloc_t *grown;

        if (d->n_allocs >= RGPU_CU_MAX_ALLOCS)
            return -1;
        grown = realloc(d->allocs, cap * sizeof(*grown));
        if (!grown)
            return -1;
        d->allocs = grown;
        d->cap_allocs = cap;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (d->allocs[mid].addr < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    memmove(&d->allocs[lo + 1], &d->allocs[lo], (d->n_allocs - lo) * sizeof(*d->allocs));
    d->allocs[lo].addr = addr;
    d->allocs[lo].size = size;
    d->allocs[lo].global = global;
    d->n_allocs++;
    if (!global)
        d->bytes += size;
    return 0;
}

/* The stream handle for id on device (NULL for the legacy stream 0); -1
 * when id is not a stream of that device. */
static int rgpu_cu_stream(rgpu_cu_session_t *s, uint32_t device, uint64_t id, void **handle_p)
{
    rgpu_cu_devobj_t *o;

    if (!id) {
        *handle_p = NULL;
        return 0;
    }
    o = rgpu_htable_find(&s->streams, id);
    if (!o || o->device != device)
        return -1;
    *handle_p = o->handle;
    return 0;
}

/* The function's handle on device, its module loaded there if needed. */
static int rgpu_cu_function_handle(rgpu_cu_session_t *s, rgpu_cu_devstate_t *d, uint32_t device,
                                   rgpu_cu_function_t *fn, void **handle_p)
{
    rgpu_cu_module_t *m = fn->module;
    char log[256];
    int r;

    if (!fn->handles[device]) {
        if (!m->handles[device]) {
            r = s->be->ops->module_load(d->ctx, m->image->data, m->image->len,
                                        &m->handles[device], log, sizeof(log));
            if (r != RGPU_CU_SUCCESS) {
                m->handles[device] = NULL;
                return r;
            }
        }
        r = s->be->ops->function_get(d->ctx, m->handles[device], fn->name, &fn->handles[device]);
        if (r != RGPU_CU_SUCCESS) {
            fn->handles[device] = NULL;
            return r;
        }
    }
    *handle_p = fn->handles[device];
    return RGPU_CU_SUCCESS;
}

/* ---- the fatbinary cache --------------------------------------------- */

/* Drops unreferenced images, oldest first, past the cache's budget.
 * Caller holds the lock. */
static void rgpu_cu_cache_trim_locked(rgpu_backend_t *be)
{
    for (;;) {
        uint64_t idle = 0;
        rgpu_cu_image_t **oldest = NULL;

        for (rgpu_cu_image_t **p = &be->images; *p; p = &(*p)->next) {
            if ((*p)->refs)
                continue;
            idle += (*p)->len;
            if (!oldest || (*p)->last_used < (*oldest)->last_used)
                oldest = p;
        }
        if (idle <= RGPU_CU_CACHE_KEEP || !oldest)
            return;
        rgpu_cu_image_t *gone = *oldest;
        *oldest = gone->next;
        be->cache_bytes -= gone->len;
        free(gone->data);
        free(gone);
    }
}

/* The cached image with that hash, referenced; NULL when absent. */
static rgpu_cu_image_t *rgpu_cu_cache_get(rgpu_backend_t *be, const uint8_t *sha256)
{
    rgpu_cu_image_t *img;

    pthread_mutex_lock(&be->cache_lock);
    for (img = be->images; img; img = img->next)
        if (memcmp(img->sha256, sha256, 32) == 0)
            break;
    if (img)
        img->refs++;
    pthread_mutex_unlock(&be->cache_lock);
    return img;
}

/* Reserves room for an upload of len bytes in the cache's bound (idle
 * images make room first); -1 when the server holds too much already. */
static int rgpu_cu_cache_reserve(rgpu_backend_t *be, uint64_t len)
{
    int ok;

    pthread_mutex_lock(&be->cache_lock);
    if (be->cache_bytes + len > RGPU_CU_CACHE_MAX) {
        /* Everything idle may go. */
        for (rgpu_cu_image_t **p = &be->images; *p;) {
            rgpu_cu_image_t *img = *p;

            if (img->refs) {
                p = &img->next;
                continue;
            }
            *p = img->next;
            be->cache_bytes -= img->len;
            free(img->data);
            free(img);
        }
    }
    ok = be->cache_bytes + len <= RGPU_CU_CACHE_MAX;
    if (ok)
        be->cache_bytes += len;
    pthread_mutex_unlock(&be->cache_lock);
    return ok ? 0 : -1;
}

static void rgpu_cu_cache_unreserve(rgpu_backend_t *be, uint64_t len)
{
    pthread_mutex_lock(&be->cache_lock);
    be->cache_bytes -= len;
    pthread_mutex_unlock(&be->cache_lock);
}

/* Caches data (ours now, its room reserved) under its own hash, or finds
 * the same bytes already there (then data and its room are given back);
 * referenced. NULL: out of memory. */
static rgpu_cu_image_t *rgpu_cu_cache_put(rgpu_backend_t *be, uint8_t *data, size_t len)
{
    uint8_t sha[32];
    rgpu_cu_image_t *img;

    crypto_hash_sha256(sha, data, len);
    img = rgpu_cu_cache_get(be, sha);
    if (img) {
        free(data);
        rgpu_cu_cache_unreserve(be, len);
        return img;
    }
    img = calloc(1, sizeof(*img));
    if (!img) {
        free(data);
        rgpu_cu_cache_unreserve(be, len);
        return NULL;
    }
    memcpy(img->sha256, sha, 32);
    img->data = data;
    img->len = len;
    img->refs = 1;
    pthread_mutex_lock(&be->cache_lock);
    img->next = be->images;
    be->images = img;
    pthread_mutex_unlock(&be->cache_lock);
    return img;
}

static void rgpu_cu_cache_put_back(rgpu_backend_t *be, rgpu_cu_image_t *img)
{
    pthread_mutex_lock(&be->cache_lock);
    if (--img->refs == 0) {
        img->last_used = ++be->cache_clock;
        rgpu_cu_cache_trim_locked(be);
    }
    pthread_mutex_unlock(&be->cache_lock);
}

/* ---- the backend ----------------------------------------------------- */

typedef struct {
    Rgpu__Device *device;
    Rgpu__DeviceParam *params;
    size_t n, cap;
    int failed;
} rgpu_cu_param_list_t;

static void rgpu_cu_param_add(void *arg, uint32_t param, const void *value, size_t len)
{
    rgpu_cu_param_list_t *l = arg;
    uint8_t *copy;

    if (l->failed)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 128;
        Rgpu__DeviceParam *grown = realloc(l->params, cap * sizeof(*grown));

        if (!grown) {
            l->failed = 1;
            return;
        }
        l->params = grown;
        l->cap = cap;
    }
    copy = malloc(len ? len : 1);
    if (!copy) {
        l->failed = 1;
        return;
    }
    memcpy(copy, value, len);
    rgpu__device_param__init(&l->params[l->n]);
    l->params[l->n].param = param;
    l->params[l->n].value.data = copy;
    l->params[l->n].value.len = len;
    l->n++;
}

static void rgpu_cu_devices_free(rgpu_backend_t *be)
{
    for (uint32_t i = 0; be->devices && i < be->n_devices; i++) {
        Rgpu__Device *dev = &be->devices[i];

        for (size_t p = 0; p < dev->n_params; p++) {
            free(dev->params[p]->value.data);
        }
        if (dev->n_params)
            free(dev->params[0]);   /* the params' array (see rgpu__cu_backend_open) */
        free(dev->params);
    }
    free(be->devices);
    free(be->device_ptrs);
}

rgpu_status_t rgpu__cu_backend_open(const rgpu_cu_device_ops_t *dev_ops,
                                    const rgpu_server_config_t *config,
                                    rgpu_backend_t **backend_p, char *why, size_t why_cap)
{
    rgpu_backend_t *be;
    rgpu_status_t st;
    int len;

    be = calloc(1, sizeof(*be));
    if (!be) {
        snprintf(why, why_cap, "out of memory");
        return RGPU_ERR_NOMEM;
    }
    be->ops = dev_ops;
    st = dev_ops->open(config, &be->dev, why, why_cap);
    if (st != RGPU_OK) {
        rgpu_debug("cuda", "%s: %s", dev_ops->name, why);     /* main.c says it, once */
        free(be);
        return st;
    }
    be->n_devices = dev_ops->count(be->dev);
    if (be->n_devices > RGPU_CU_MAX_DEVICES)
        be->n_devices = RGPU_CU_MAX_DEVICES;
    snprintf(be->platform_version, sizeof(be->platform_version), "%d",
             dev_ops->driver_version(be->dev));
    be->devices = calloc(be->n_devices + 1, sizeof(*be->devices));
    be->device_ptrs = calloc(be->n_devices + 1, sizeof(*be->device_ptrs));
    if (!be->devices || !be->device_ptrs)
        goto out_nomem;
    len = snprintf(be->describe, sizeof(be->describe), "%s driver %s, %u device(s):",
                   dev_ops->platform_name, be->platform_version, be->n_devices);
    for (uint32_t i = 0; i < be->n_devices; i++) {
        rgpu_cu_param_list_t list = {0};
        char name[256];

        rgpu__device__init(&be->devices[i]);
        be->devices[i].index = i;
        dev_ops->device_params(be->dev, i, rgpu_cu_param_add, &list);
        if (list.failed) {
            for (size_t p = 0; p < list.n; p++)
                free(list.params[p].value.data);
            free(list.params);
            goto out_nomem;
        }
        /* protobuf-c wants an array of pointers: one block for both. */
        be->devices[i].params = malloc((list.n + 1) * sizeof(*be->devices[i].params));
        if (!be->devices[i].params) {
            for (size_t p = 0; p < list.n; p++)
                free(list.params[p].value.data);
            free(list.params);
            goto out_nomem;
        }
        for (size_t p = 0; p < list.n; p++)
            be->devices[i].params[p] = &list.params[p];
        be->devices[i].n_params = list.n;
        if (!list.n)
            free(list.params);
        be->device_ptrs[i] = &be->devices[i];
        dev_ops->device_name(be->dev, i, name, sizeof(name));
        if (len > 0 && (size_t)len < sizeof(be->describe))
            len += snprintf(be->describe + len, sizeof(be->describe) - (size_t)len, "%s \"%s\"",
                            i ? "," : "", name);
    }
    pthread_mutex_init(&be->cache_lock, NULL);
    *backend_p = be;
    return RGPU_OK;

out_nomem:
    snprintf(why, why_cap, "out of memory listing the devices");
    rgpu_cu_devices_free(be);
    dev_ops->close(be->dev);
    free(be);
    return RGPU_ERR_NOMEM;
}

void rgpu__cu_backend_close(rgpu_backend_t *be)
{
    while (be->images) {
        rgpu_cu_image_t *img = be->images;

        be->images = img->next;
        free(img->data);
        free(img);
    }
    pthread_mutex_destroy(&be->cache_lock);
    rgpu_cu_devices_free(be);
    be->ops->close(be->dev);
    free(be);
}

const char *rgpu__cu_backend_describe(rgpu_backend_t *be)
{
    return be->describe;
}

void rgpu__cu_hello_fill(rgpu_backend_t *be, Rgpu__HelloReply *reply)
{
    reply->platform_name = (char *)be->ops->platform_name;
    reply->platform_version = be->platform_version;
    reply->n_devices = be->n_devices;
    reply->devices = be->device_ptrs;
}

/* ---- sessions -------------------------------------------------------- */

rgpu_status_t rgpu__cu_session_open(rgpu_backend_t *be, rgpu_session_t *session, void **ctx_p)
{
    rgpu_cu_session_t *s = calloc(1, sizeof(*s));

    if (!s)
        return RGPU_ERR_NOMEM;
    s->be = be;
    s->session = session;
    rgpu_htable_init(&s->modules);
    rgpu_htable_init(&s->functions);
    rgpu_htable_init(&s->streams);
    rgpu_htable_init(&s->events);
    *ctx_p = s;
    return RGPU_OK;
}

static void rgpu_cu_free_value(uint64_t key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    free(value);
}

static void rgpu_cu_free_function(uint64_t key, void *value, void *arg)
{
    rgpu_cu_function_t *fn = value;

    (void)key;
    (void)arg;
    free(fn->name);
    free(fn);
}

static void rgpu_cu_free_module(uint64_t key, void *value, void *arg)
{
    rgpu_cu_module_t *m = value;

    (void)key;
    if (m->image)
        rgpu_cu_cache_put_back(arg, m->image);
    free(m);
}

/* Forgets every handle of device index: its context is gone. */
static void rgpu_cu_forget_device_handles(rgpu_cu_session_t *s, uint32_t index);

/* Destroys the context of one device and gives back its memory. */
static void rgpu_cu_device_drop(rgpu_cu_session_t *s, uint32_t index)
{
    rgpu_cu_devstate_t *d = &s->devs[index];

    if (d->ctx)
        s->be->ops->ctx_destroy(d->ctx);
    d->ctx = NULL;
    d->sticky = 0;
    if (d->bytes) {
        rgpu_session_mem_unreserve(s->session, d->bytes);
        rgpu_session_memory_add(s->session, -(int64_t)d->bytes);
    }
    free(d->allocs);
    d->allocs = NULL;
    d->n_allocs = d->cap_allocs = 0;
    d->bytes = 0;
    rgpu_cu_forget_device_handles(s, index);
}

void rgpu__cu_session_teardown(void *ctx)
{
    rgpu_cu_session_t *s = ctx;

    for (uint32_t i = 0; i < s->be->n_devices; i++)
        rgpu_cu_device_drop(s, i);
    rgpu_htable_foreach(&s->streams, rgpu_cu_free_value, NULL);
    rgpu_htable_foreach(&s->events, rgpu_cu_free_value, NULL);
    rgpu_htable_foreach(&s->functions, rgpu_cu_free_function, NULL);
    rgpu_htable_foreach(&s->modules, rgpu_cu_free_module, s->be);
    rgpu_htable_cleanup(&s->streams);
    rgpu_htable_cleanup(&s->events);
    rgpu_htable_cleanup(&s->functions);
    rgpu_htable_cleanup(&s->modules);
    s->n_objects = 0;
}

void rgpu__cu_session_free(void *ctx)
{
    free(ctx);
}

typedef struct {
    rgpu_cu_session_t *s;
    uint32_t device;
    uint64_t *doomed;
    size_t n, cap;
} rgpu_cu_forget_t;

static void rgpu_cu_forget_devobj(uint64_t key, void *value, void *arg)
{
    rgpu_cu_forget_t *f = arg;
    rgpu_cu_devobj_t *o = value;

    if (o->device != f->device)
        return;
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 64;
        uint64_t *grown = realloc(f->doomed, cap * sizeof(*grown));

        if (!grown)
            return;     /* the handle stays in the table, pointing at nothing used */
        f->doomed = grown;
        f->cap = cap;
    }
    f->doomed[f->n++] = key;
}

static void rgpu_cu_forget_module(uint64_t key, void *value, void *arg)
{
    (void)key;
    ((rgpu_cu_module_t *)value)->handles[((rgpu_cu_forget_t *)arg)->device] = NULL;
}

static void rgpu_cu_forget_function(uint64_t key, void *value, void *arg)
{
    (void)key;
    ((rgpu_cu_function_t *)value)->handles[((rgpu_cu_forget_t *)arg)->device] = NULL;
}

static void rgpu_cu_forget_device_handles(rgpu_cu_session_t *s, uint32_t index)
{
    rgpu_htable_t *tables[] = {&s->streams, &s->events};
    rgpu_cu_forget_t f = {.s = s, .device = index};

    for (size_t t = 0; t < 2; t++) {
        f.n = 0;
        rgpu_htable_foreach(tables[t], rgpu_cu_forget_devobj, &f);
        for (size_t i = 0; i < f.n; i++) {
            free(rgpu_htable_remove(tables[t], f.doomed[i]));
            s->n_objects--;
        }
    }
    free(f.doomed);
    rgpu_htable_foreach(&s->modules, rgpu_cu_forget_module, &f);
    rgpu_htable_foreach(&s->functions, rgpu_cu_forget_function, &f);
    /* Handles of the old context; parameter sizes stay true. */
}

/* ---- handlers -------------------------------------------------------- */

/* Unpacks the body of a message of type T into a variable m, or ends the
 * session with a reason. */
#define RGPU_CU_UNPACK(T, fn, m)                                                            \
    T *m = fn(NULL, hdr->body_len, body);                                                   \
    if (!m) {                                                                               \
        snprintf(reason, reason_cap, "%s message (%u bytes) does not unpack",                \
                 rgpu_cu_msg_name(hdr->type), hdr->body_len);                               \
        return RGPU_ERR_BAD_MESSAGE;                                                        \
    }

/* A claimed new object id: not 0, not in use, within the session's bound. */
static int rgpu_cu_new_id_ok(rgpu_cu_session_t *s, rgpu_htable_t *table, uint64_t id)
{
    return id && !rgpu_htable_find(table, id) && s->n_objects < RGPU_CU_MAX_OBJECTS;
}

static rgpu_status_t rgpu_cu_module_reply(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                          int err, int need_data, const char *log)
{
    Rgpu__CuModuleReply reply = RGPU__CU_MODULE_REPLY__INIT;

    reply.cu_error = err;
    reply.need_data = need_data;
    reply.log = (char *)(log ? log : "");
    return rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CU_MODULE_REPLY, hdr->seq,
                             &reply.base, NULL, 0);
}

/* Loads an image into device's context for a module being created; on
 * success the module joins the table. */
static rgpu_status_t rgpu_cu_module_finish(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                           uint64_t id, rgpu_cu_module_t *m, uint32_t device)
{
    char log[1024] = "", what[sizeof(log)];
    rgpu_cu_devstate_t *d;
    int err;

    d = rgpu_cu_dev(s, device, &err, what, sizeof(what));
    if (!d)
        goto out_fail;
    err = rgpu_cu_note(d, s->be->ops->module_load(d->ctx, m->image->data, m->image->len,
                                                  &m->handles[device], log, sizeof(log)));
    if (err != RGPU_CU_SUCCESS) {
        m->handles[device] = NULL;
        snprintf(what, sizeof(what), "%s", log[0] ? log : "the driver refused the module");
        goto out_fail;
    }
    m->device = device;
    return rgpu_cu_module_reply(s, hdr, RGPU_CU_SUCCESS, 0, NULL);

out_fail:
    rgpu_htable_remove(&s->modules, id);
    s->n_objects--;
    rgpu_cu_cache_put_back(s->be, m->image);
    free(m);
    return rgpu_cu_module_reply(s, hdr, err, 0, what);
}

static rgpu_status_t rgpu_cu_module_load(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                         const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuModuleLoad, rgpu__cu_module_load__unpack, m);
    rgpu_cu_module_t *mod;
    rgpu_status_t st;
    uint64_t max = rgpu_session_config(s->session)->max_bulk;

    if (max > RGPU_CU_MAX_IMAGE)
        max = RGPU_CU_MAX_IMAGE;
    if (!rgpu_cu_new_id_ok(s, &s->modules, m->id)) {
        st = rgpu_cu_module_reply(s, hdr, RGPU_CU_INVALID_HANDLE, 0,
                                  "module id 0, already in use, or too many objects");
        goto out;
    }
    if (m->sha256.len != 32 || !m->size || m->size > max) {
        char what[128];

        snprintf(what, sizeof(what), "a module of %llu bytes (limit %llu) with a %zu-byte hash",
                 (unsigned long long)m->size, (unsigned long long)max, m->sha256.len);
        st = rgpu_cu_module_reply(s, hdr, RGPU_CU_INVALID_VALUE, 0, what);
        goto out;
    }
    if (m->device >= s->be->n_devices || !rgpu_session_device_allowed(s->session, m->device)) {
        st = rgpu_cu_module_reply(s, hdr, RGPU_CU_INVALID_DEVICE, 0, "no such device");
        goto out;
    }
    mod = calloc(1, sizeof(*mod));
    if (!mod || rgpu_htable_insert(&s->modules, m->id, mod) != RGPU_OK) {
        free(mod);
        st = rgpu_cu_module_reply(s, hdr, RGPU_CU_OUT_OF_MEMORY, 0, "out of server memory");
        goto out;
    }
    s->n_objects++;
    mod->want_size = m->size;
    mod->device = m->device;
    mod->image = rgpu_cu_cache_get(s->be, m->sha256.data);
    if (mod->image && mod->image->len == m->size)
        st = rgpu_cu_module_finish(s, hdr, m->id, mod, m->device);
    else {
        if (mod->image)
            rgpu_cu_cache_put_back(s->be, mod->image);
        mod->image = NULL;
        st = rgpu_cu_module_reply(s, hdr, RGPU_CU_SUCCESS, 1, NULL);
    }
out:
    rgpu__cu_module_load__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_module_data(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                         const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuModuleData, rgpu__cu_module_data__unpack, m);
    rgpu_cu_module_t *mod = rgpu_htable_find(&s->modules, m->id);
    rgpu_status_t st;
    uint8_t *data;

    if (!mod || mod->image) {
        st = rgpu_cu_module_reply(s, hdr, RGPU_CU_INVALID_HANDLE, 0,
                                  "no module of that id is waiting for its data");
        goto out;
    }
    if (m->desc || m->size != mod->want_size || hdr->bulk_len != m->size) {
        snprintf(reason, reason_cap, "module data of %llu bytes with %llu bytes of bulk, for a "
                 "module announced with %llu bytes%s", (unsigned long long)m->size,
                 (unsigned long long)hdr->bulk_len, (unsigned long long)mod->want_size,
                 m->desc ? " (by descriptor, which this server does not take for modules)" : "");
        st = RGPU_ERR_PROTOCOL;
        goto out;
    }
    if (rgpu_cu_cache_reserve(s->be, m->size) != 0) {
        rgpu_warn("cuda", "%s: a module of %llu bytes refused: the server holds %llu GiB of "
                  "modules already", rgpu_session_name(s->session), (unsigned long long)m->size,
                  RGPU_CU_CACHE_MAX >> 30);
        st = rgpu_cu_module_reply(s, hdr, RGPU_CU_OUT_OF_MEMORY, 0,
                                  "the server holds too many modules");
        goto out;
    }
    data = malloc(m->size);
    if (!data) {
        rgpu_cu_cache_unreserve(s->be, m->size);
        st = rgpu_cu_module_reply(s, hdr, RGPU_CU_OUT_OF_MEMORY, 0, "out of server memory");
        goto out;
    }
    st = rgpu_session_pull(s->session, data, m->size);
    if (st != RGPU_OK) {
        free(data);
        rgpu_cu_cache_unreserve(s->be, m->size);
        goto out;
    }
    mod->image = rgpu_cu_cache_put(s->be, data, m->size);
    if (!mod->image) {
        rgpu_htable_remove(&s->modules, m->id);
        s->n_objects--;
        free(mod);
        st = rgpu_cu_module_reply(s, hdr, RGPU_CU_OUT_OF_MEMORY, 0, "out of server memory");
        goto out;
    }
    st = rgpu_cu_module_finish(s, hdr, m->id, mod, mod->device);
out:
    rgpu__cu_module_data__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_function(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                      const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuFunction, rgpu__cu_function__unpack, m);
    rgpu_cu_module_t *mod = rgpu_htable_find(&s->modules, m->module);
    rgpu_cu_function_t *fn = NULL;
    rgpu_cu_devstate_t *d;
    char what[256];
    void *handle;
    rgpu_status_t st = RGPU_OK;
    int err;

    if (!rgpu_cu_new_id_ok(s, &s->functions, m->id)) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_HANDLE,
                                 "function id 0, already in use, or too many objects");
        goto out;
    }
    if (!mod || !mod->image) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_HANDLE, "no loaded module %llu",
                                 (unsigned long long)m->module);
        goto out;
    }
    if (!*m->name || strlen(m->name) > RGPU_CU_MAX_NAME ||
        s->name_bytes + strlen(m->name) > RGPU_CU_MAX_NAME_BYTES) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_VALUE,
                                 "a function name must have 1 to %d bytes, and a session's names "
                                 "at most %u in all", RGPU_CU_MAX_NAME, RGPU_CU_MAX_NAME_BYTES);
        goto out;
    }
    fn = calloc(1, sizeof(*fn));
    if (fn)
        fn->name = strdup(m->name);
    if (!fn || !fn->name) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_OUT_OF_MEMORY, "out of server memory");
        goto out_free;
    }
    fn->module_id = m->module;
    fn->module = mod;
    for (size_t i = 0; i < RGPU_CU_MAX_DEVICES; i++)
        fn->param_bytes[i] = -1;
    /* Looked up now, on the module's device, so that a wrong name fails
     * at the call that named it. */
    d = rgpu_cu_dev(s, mod->device, &err, what, sizeof(what));
    if (!d) {
        st = rgpu_cu_async_error(s, hdr, err, "%s", what);
        goto out_free;
    }
    err = rgpu_cu_function_handle(s, d, mod->device, fn, &handle);
    if (err != RGPU_CU_SUCCESS) {
        st = rgpu_cu_async_error(s, hdr, err, "no kernel named \"%.200s\" in module %llu",
                                 m->name, (unsigned long long)m->module);
        goto out_free;
    }
    if (rgpu_htable_insert(&s->functions, m->id, fn) != RGPU_OK) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_OUT_OF_MEMORY, "out of server memory");
        goto out_free;
    }
    s->n_objects++;
    s->name_bytes += strlen(fn->name);
    goto out;

out_free:
    if (fn)
        free(fn->name);
    free(fn);
out:
    rgpu__cu_function__free_unpacked(m, NULL);
    return st;
}

/* The function of id and its handle on device, or an error with what. */
static int rgpu_cu_function_on(rgpu_cu_session_t *s, uint64_t id, uint32_t device,
                               rgpu_cu_devstate_t **d_p, rgpu_cu_function_t **fn_p,
                               void **handle_p, char *what, size_t what_cap)
{
    rgpu_cu_function_t *fn = rgpu_htable_find(&s->functions, id);
    int err;

    if (!fn) {
        snprintf(what, what_cap, "no function %llu in this session", (unsigned long long)id);
        return RGPU_CU_INVALID_HANDLE;
    }
    *d_p = rgpu_cu_dev(s, device, &err, what, what_cap);
    if (!*d_p)
        return err;
    err = rgpu_cu_function_handle(s, *d_p, device, fn, handle_p);
    if (err != RGPU_CU_SUCCESS)
        snprintf(what, what_cap, "kernel \"%.200s\" not available on device %u", fn->name, device);
    *fn_p = fn;
    return err;
}

static rgpu_status_t rgpu_cu_func_info(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                       const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuFuncInfo, rgpu__cu_func_info__unpack, m);
    Rgpu__CuFuncInfoReply reply = RGPU__CU_FUNC_INFO_REPLY__INIT;
    Rgpu__CuFuncAttr attrs[RGPU_CU_FUNC_ATTR_COUNT], *attr_ptrs[RGPU_CU_FUNC_ATTR_COUNT];
    rgpu_cu_func_info_t info = {0};
    rgpu_cu_function_t *fn;
    rgpu_cu_devstate_t *d;
    char what[256];
    void *handle;
    rgpu_status_t st;
    int err;

    info.param_offsets = calloc(RGPU_CU_MAX_PARAMS, sizeof(uint32_t));
    info.param_sizes = calloc(RGPU_CU_MAX_PARAMS, sizeof(uint32_t));
    if (!info.param_offsets || !info.param_sizes) {
        err = RGPU_CU_OUT_OF_MEMORY;
        goto out_reply;
    }
    err = rgpu_cu_function_on(s, m->function, m->device, &d, &fn, &handle, what, sizeof(what));
    if (err == RGPU_CU_SUCCESS)
        err = rgpu_cu_note(d, s->be->ops->func_info(d->ctx, handle, &info));
    if (err == RGPU_CU_SUCCESS) {
        fn->param_bytes[m->device] = info.param_bytes;
        for (int a = 0; a < RGPU_CU_FUNC_ATTR_COUNT; a++) {
            rgpu__cu_func_attr__init(&attrs[a]);
            attrs[a].attr = a;
            attrs[a].value = info.attrs[a];
            attr_ptrs[a] = &attrs[a];
        }
        reply.n_attrs = RGPU_CU_FUNC_ATTR_COUNT;
        reply.attrs = attr_ptrs;
        reply.n_param_offsets = reply.n_param_sizes = info.n_params;
        reply.param_offsets = info.param_offsets;
        reply.param_sizes = info.param_sizes;
    }
out_reply:
    reply.cu_error = err;
    st = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CU_FUNC_INFO_REPLY, hdr->seq,
                           &reply.base, NULL, 0);
    free(info.param_offsets);
    free(info.param_sizes);
    rgpu__cu_func_info__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_func_set_attr(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                           const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuFuncSetAttr, rgpu__cu_func_set_attr__unpack, m);
    rgpu_cu_function_t *fn;
    rgpu_cu_devstate_t *d;
    char what[256];
    void *handle;
    rgpu_status_t st = RGPU_OK;
    int err;

    err = rgpu_cu_function_on(s, m->function, m->device, &d, &fn, &handle, what, sizeof(what));
    if (err == RGPU_CU_SUCCESS) {
        err = rgpu_cu_note(d, s->be->ops->func_set_attr(d->ctx, handle, m->attr, m->value));
        snprintf(what, sizeof(what), "attribute %d = %d", m->attr, m->value);
    }
    if (err != RGPU_CU_SUCCESS)
        st = rgpu_cu_async_error(s, hdr, err, "%s", what);
    rgpu__cu_func_set_attr__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_occupancy(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                       const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuOccupancy, rgpu__cu_occupancy__unpack, m);
    Rgpu__CuOccupancyReply reply = RGPU__CU_OCCUPANCY_REPLY__INIT;
    rgpu_cu_function_t *fn;
    rgpu_cu_devstate_t *d;
    char what[256];
    void *handle;
    uint32_t blocks = 0;
    rgpu_status_t st;
    int err;

    err = rgpu_cu_function_on(s, m->function, m->device, &d, &fn, &handle, what, sizeof(what));
    if (err == RGPU_CU_SUCCESS)
        err = rgpu_cu_note(d, s->be->ops->occupancy(d->ctx, handle, m->block_size,
                                                    m->dynamic_smem, m->flags, &blocks));
    reply.cu_error = err;
    reply.num_blocks = err == RGPU_CU_SUCCESS ? blocks : 0;
    st = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CU_OCCUPANCY_REPLY, hdr->seq,
                           &reply.base, NULL, 0);
    rgpu__cu_occupancy__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_get_global(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                        const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuGetGlobal, rgpu__cu_get_global__unpack, m);
    Rgpu__CuGlobalReply reply = RGPU__CU_GLOBAL_REPLY__INIT;
    rgpu_cu_module_t *mod = rgpu_htable_find(&s->modules, m->module);
    rgpu_cu_devstate_t *d = NULL;
    char what[256], log[256];
    uint64_t dptr = 0, size = 0;
    rgpu_status_t st;
    int err = RGPU_CU_SUCCESS;

    if (!mod || !mod->image)
        err = RGPU_CU_INVALID_HANDLE;
    else if (!*m->name || strlen(m->name) > RGPU_CU_MAX_NAME)
        err = RGPU_CU_INVALID_VALUE;
    else
        d = rgpu_cu_dev(s, m->device, &err, what, sizeof(what));
    if (d && !mod->handles[m->device]) {
        err = rgpu_cu_note(d, s->be->ops->module_load(d->ctx, mod->image->data, mod->image->len,
                                                      &mod->handles[m->device], log,
                                                      sizeof(log)));
        if (err != RGPU_CU_SUCCESS)
            mod->handles[m->device] = NULL;
    }
    if (d && err == RGPU_CU_SUCCESS)
        err = rgpu_cu_note(d, s->be->ops->global_get(d->ctx, mod->handles[m->device], m->name,
                                                     &dptr, &size));
    /* A module's global is device memory the session may copy to and
     * from: it joins the allocation table (not the quota: the module, not
     * the client, sized it). */
    if (d && err == RGPU_CU_SUCCESS && size && rgpu_cu_alloc_find(d, dptr) < 0 &&
        rgpu_cu_alloc_insert(d, dptr, size, 1) != 0)
        err = RGPU_CU_OUT_OF_MEMORY;
    reply.cu_error = err;
    reply.dptr = err == RGPU_CU_SUCCESS ? dptr : 0;
    reply.size = err == RGPU_CU_SUCCESS ? size : 0;
    st = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CU_GLOBAL_REPLY, hdr->seq,
                           &reply.base, NULL, 0);
    rgpu__cu_get_global__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_malloc(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                    const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuMalloc, rgpu__cu_malloc__unpack, m);
    Rgpu__CuMallocReply reply = RGPU__CU_MALLOC_REPLY__INIT;
    rgpu_cu_devstate_t *d;
    char what[256];
    uint64_t dptr = 0;
    rgpu_status_t st;
    int err;

    d = rgpu_cu_dev(s, m->device, &err, what, sizeof(what));
    if (!d)
        goto out_reply;
    if (!m->size) {
        err = RGPU_CU_SUCCESS;      /* cudaMalloc of 0 bytes gives a null pointer */
        goto out_reply;
    }
    if (rgpu_session_mem_reserve(s->session, m->size) != 0) {
        rgpu_debug("cuda", "%s: cudaMalloc of %llu bytes refused: past the lease's memory quota",
                  rgpu_session_name(s->session), (unsigned long long)m->size);
        err = RGPU_CU_OUT_OF_MEMORY;
        goto out_reply;
    }
    err = rgpu_cu_note(d, s->be->ops->mem_alloc(d->ctx, m->size, &dptr));
    if (err != RGPU_CU_SUCCESS) {
        rgpu_session_mem_unreserve(s->session, m->size);
        goto out_reply;
    }
    if (rgpu_cu_alloc_insert(d, dptr, m->size, 0) != 0) {
        s->be->ops->mem_free(d->ctx, dptr);
        rgpu_session_mem_unreserve(s->session, m->size);
        err = RGPU_CU_OUT_OF_MEMORY;
        dptr = 0;
        goto out_reply;
    }
    rgpu_session_memory_add(s->session, (int64_t)m->size);
out_reply:
    reply.cu_error = err;
    reply.dptr = err == RGPU_CU_SUCCESS ? dptr : 0;
    st = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CU_MALLOC_REPLY, hdr->seq,
                           &reply.base, NULL, 0);
    rgpu__cu_malloc__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_free(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                  const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuFree, rgpu__cu_free__unpack, m);
    rgpu_cu_devstate_t *d;
    char what[256];
    rgpu_status_t st = RGPU_OK;
    ssize_t i;
    uint64_t size;
    int err;

    if (!m->dptr)
        goto out;               /* cudaFree(NULL) does nothing */
    d = rgpu_cu_dev(s, m->device, &err, what, sizeof(what));
    if (!d) {
        st = rgpu_cu_async_error(s, hdr, err, "%s", what);
        goto out;
    }
    i = rgpu_cu_alloc_find(d, m->dptr);
    if (i < 0 || d->allocs[i].addr != m->dptr || d->allocs[i].global) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_VALUE,
                                 "0x%llx is not an allocation of this session",
                                 (unsigned long long)m->dptr);
        goto out;
    }
    size = d->allocs[i].size;
    err = rgpu_cu_note(d, s->be->ops->mem_free(d->ctx, m->dptr));
    if (err != RGPU_CU_SUCCESS) {
        st = rgpu_cu_async_error(s, hdr, err, "freeing 0x%llx", (unsigned long long)m->dptr);
        goto out;
    }
    memmove(&d->allocs[i], &d->allocs[i + 1], (d->n_allocs - (size_t)i - 1) * sizeof(*d->allocs));
    d->n_allocs--;
    d->bytes -= size;
    rgpu_session_mem_unreserve(s->session, size);
    rgpu_session_memory_add(s->session, -(int64_t)size);
out:
    rgpu__cu_free__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_mem_get_info(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                          const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuMemGetInfo, rgpu__cu_mem_get_info__unpack, m);
    Rgpu__CuMemInfoReply reply = RGPU__CU_MEM_INFO_REPLY__INIT;
    uint64_t quota = rgpu_session_mem_quota(s->session), free_b = 0, total = 0;
    rgpu_cu_devstate_t *d;
    char what[256];
    rgpu_status_t st;
    int err;

    d = rgpu_cu_dev(s, m->device, &err, what, sizeof(what));
    if (d)
        err = rgpu_cu_note(d, s->be->ops->mem_info(d->ctx, &free_b, &total));
    /* With a quota, the device as this lease may use it. */
    if (d && err == RGPU_CU_SUCCESS && quota) {
        uint64_t left = quota > d->bytes ? quota - d->bytes : 0;

        total = total < quota ? total : quota;
        free_b = free_b < left ? free_b : left;
    }
    reply.cu_error = err;
    reply.free = free_b;
    reply.total = total;
    st = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CU_MEM_INFO_REPLY, hdr->seq,
                           &reply.base, NULL, 0);
    rgpu__cu_mem_get_info__free_unpacked(m, NULL);
    return st;
}

/* The host side of a copy to the device: the frame's bulk. */
static rgpu_status_t rgpu_cu_pull_source(void *arg, void *buf, size_t len)
{
    return rgpu_session_pull(arg, buf, len);
}

typedef struct {
    rgpu_session_t *session;
    uint64_t seq;
    uint64_t offset;
} rgpu_cu_push_sink_t;

/* The host side of a copy from the device: pieces of the reply's bulk. */
static rgpu_status_t rgpu_cu_push_sink(void *arg, const void *buf, size_t len)
{
    rgpu_cu_push_sink_t *p = arg;
    rgpu_status_t st = rgpu_session_push(p->session, p->seq, p->offset, buf, len);

    p->offset += len;
    return st;
}

/* What every copy checks before it moves a byte: the device is the session's, the
 * rectangles dst and src (NULL: the copy has none on the device) lie inside its allocations,
 * and the stream is on it. RGPU_CU_SUCCESS with *d_p and *stream_p, or the error with what. */
static int rgpu_cu_copy_check(rgpu_cu_session_t *s, uint32_t device, uint64_t stream_id,
                              const rgpu_cu_rect_t *dst, const rgpu_cu_rect_t *src,
                              rgpu_cu_devstate_t **d_p, void **stream_p, char *what,
                              size_t what_cap)
{
    int err;

    *d_p = rgpu_cu_dev(s, device, &err, what, what_cap);
    if (!*d_p)
        return err;
    if ((dst && rgpu_cu_rect_check(*d_p, dst, "destination", what, what_cap) != 0) ||
        (src && rgpu_cu_rect_check(*d_p, src, "source", what, what_cap) != 0))
        return RGPU_CU_INVALID_VALUE;
    if (rgpu_cu_stream(s, device, stream_id, stream_p) != 0) {
        snprintf(what, what_cap, "no stream %llu on device %u", (unsigned long long)stream_id,
                 device);
        return RGPU_CU_INVALID_HANDLE;
    }
    return RGPU_CU_SUCCESS;
}

/* Copies the frame's bulk into the rectangle dst (checked here) on stream.
 * Async: failures become MSG_ASYNC_ERROR. */
static rgpu_status_t rgpu_cu_copy_in(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                     uint32_t device, uint64_t stream_id, const rgpu_cu_rect_t *dst)
{
    rgpu_status_t link = RGPU_OK;
    rgpu_cu_devstate_t *d;
    char what[256];
    void *stream;
    int err;

    err = rgpu_cu_copy_check(s, device, stream_id, dst, NULL, &d, &stream, what, sizeof(what));
    if (err != RGPU_CU_SUCCESS)
        return rgpu_cu_async_error(s, hdr, err, "%s", what);
    if (!dst->width || !dst->height)
        return RGPU_OK;
    err = rgpu_cu_note(d, s->be->ops->copy_h2d(d->ctx, stream, dst, rgpu_cu_pull_source,
                                               s->session, &link));
    if (link != RGPU_OK)
        return link;
    if (err != RGPU_CU_SUCCESS)
        return rgpu_cu_async_error(s, hdr, err, "%llu bytes to 0x%llx",
                                   (unsigned long long)(dst->width * dst->height),
                                   (unsigned long long)dst->addr);
    return RGPU_OK;
}

/* Sends the rectangle src (checked here) as the reply to hdr: pieces of
 * bulk, then CuReadReply with the status. */
static rgpu_status_t rgpu_cu_copy_out(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                      uint32_t device, uint64_t stream_id, const rgpu_cu_rect_t *src)
{
    Rgpu__CuReadReply reply = RGPU__CU_READ_REPLY__INIT;
    rgpu_cu_push_sink_t sink = {.session = s->session, .seq = hdr->seq};
    rgpu_status_t link = RGPU_OK;
    rgpu_cu_devstate_t *d;
    char what[256];
    void *stream;
    int err;

    /* The reply carries only the error code: the words go to the debug log. */
    err = rgpu_cu_copy_check(s, device, stream_id, NULL, src, &d, &stream, what, sizeof(what));
    if (err != RGPU_CU_SUCCESS) {
        rgpu_debug("cuda", "%s: copy from the device refused: %s", rgpu_session_name(s->session),
                   what);
        goto out_reply;
    }
    if (!src->width || !src->height)
        goto out_reply;
    err = rgpu_cu_note(d, s->be->ops->copy_d2h(d->ctx, stream, src, rgpu_cu_push_sink, &sink,
                                               &link));
    if (link != RGPU_OK)
        return link;
out_reply:
    reply.cu_error = err;
    return rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CU_READ_REPLY, hdr->seq,
                             &reply.base, NULL, 0);
}

static rgpu_status_t rgpu_cu_copy_dd(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                     uint32_t device, uint64_t stream_id,
                                     const rgpu_cu_rect_t *dst, const rgpu_cu_rect_t *src)
{
    rgpu_cu_devstate_t *d;
    char what[256];
    void *stream;
    int err;

    err = rgpu_cu_copy_check(s, device, stream_id, dst, src, &d, &stream, what, sizeof(what));
    if (err != RGPU_CU_SUCCESS)
        return rgpu_cu_async_error(s, hdr, err, "%s", what);
    if (!dst->width || !dst->height)
        return RGPU_OK;
    err = rgpu_cu_note(d, s->be->ops->copy_d2d(d->ctx, stream, dst, src));
    if (err != RGPU_CU_SUCCESS)
        return rgpu_cu_async_error(s, hdr, err, "0x%llx to 0x%llx", (unsigned long long)src->addr,
                                   (unsigned long long)dst->addr);
    return RGPU_OK;
}

/* A frame's bulk must be exactly what its message announces. */
static rgpu_status_t rgpu_cu_bulk_check(const rgpu_frame_header_t *hdr, uint64_t want,
                                        const void *desc, char *reason, size_t reason_cap)
{
    if (desc) {
        snprintf(reason, reason_cap, "%s by descriptor: this server takes copies inline only",
                 rgpu_cu_msg_name(hdr->type));
        return RGPU_ERR_PROTOCOL;
    }
    if (hdr->bulk_len != want) {
        snprintf(reason, reason_cap, "%s announces %llu bytes but carries %llu bytes of bulk",
                 rgpu_cu_msg_name(hdr->type), (unsigned long long)want,
                 (unsigned long long)hdr->bulk_len);
        return RGPU_ERR_PROTOCOL;
    }
    return RGPU_OK;
}

static rgpu_status_t rgpu_cu_memcpy_h2d(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                        const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuMemcpyH2D, rgpu__cu_memcpy_h2_d__unpack, m);
    rgpu_cu_rect_t dst = {.addr = m->dst, .pitch = m->size, .width = m->size, .height = 1};
    rgpu_status_t st = rgpu_cu_bulk_check(hdr, m->size, m->desc, reason, reason_cap);

    if (st == RGPU_OK)
        st = rgpu_cu_copy_in(s, hdr, m->device, m->stream, &dst);
    rgpu__cu_memcpy_h2_d__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_memcpy_d2h(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                        const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuMemcpyD2H, rgpu__cu_memcpy_d2_h__unpack, m);
    rgpu_cu_rect_t src = {.addr = m->src, .pitch = m->size, .width = m->size, .height = 1};
    rgpu_status_t st = rgpu_cu_bulk_check(hdr, 0, m->desc, reason, reason_cap);

    if (st == RGPU_OK)
        st = rgpu_cu_copy_out(s, hdr, m->device, m->stream, &src);
    rgpu__cu_memcpy_d2_h__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_memcpy_d2d(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                        const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuMemcpyD2D, rgpu__cu_memcpy_d2_d__unpack, m);
    rgpu_cu_rect_t dst = {.addr = m->dst, .pitch = m->size, .width = m->size, .height = 1};
    rgpu_cu_rect_t src = {.addr = m->src, .pitch = m->size, .width = m->size, .height = 1};
    rgpu_status_t st = rgpu_cu_bulk_check(hdr, 0, NULL, reason, reason_cap);

    if (st == RGPU_OK)
        st = rgpu_cu_copy_dd(s, hdr, m->device, m->stream, &dst, &src);
    rgpu__cu_memcpy_d2_d__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_memcpy_2d(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                       const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuMemcpy2D, rgpu__cu_memcpy2_d__unpack, m);
    rgpu_cu_rect_t dst = {.addr = m->dst, .pitch = m->dpitch, .width = m->width,
                          .height = m->height};
    rgpu_cu_rect_t src = {.addr = m->src, .pitch = m->spitch, .width = m->width,
                          .height = m->height};
    uint64_t packed;
    rgpu_status_t st;

    if (__builtin_mul_overflow(m->width, m->height, &packed)) {
        snprintf(reason, reason_cap, "2D copy of %llu x %llu bytes overflows",
                 (unsigned long long)m->width, (unsigned long long)m->height);
        st = RGPU_ERR_PROTOCOL;
        goto out;
    }
    switch (m->kind) {
    case RGPU__CU_COPY_KIND__CU_COPY_H2D:
        st = rgpu_cu_bulk_check(hdr, packed, m->desc, reason, reason_cap);
        if (st == RGPU_OK)
            st = rgpu_cu_copy_in(s, hdr, m->device, m->stream, &dst);
        break;
    case RGPU__CU_COPY_KIND__CU_COPY_D2H:
        st = rgpu_cu_bulk_check(hdr, 0, m->desc, reason, reason_cap);
        if (st == RGPU_OK)
            st = rgpu_cu_copy_out(s, hdr, m->device, m->stream, &src);
        break;
    case RGPU__CU_COPY_KIND__CU_COPY_D2D:
        st = rgpu_cu_bulk_check(hdr, 0, m->desc, reason, reason_cap);
        if (st == RGPU_OK)
            st = rgpu_cu_copy_dd(s, hdr, m->device, m->stream, &dst, &src);
        break;
    default:
        snprintf(reason, reason_cap, "2D copy of unknown kind %d", (int)m->kind);
        st = RGPU_ERR_PROTOCOL;
        break;
    }
out:
    rgpu__cu_memcpy2_d__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_memset(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                    const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuMemset, rgpu__cu_memset__unpack, m);
    rgpu_cu_rect_t dst = {.addr = m->dst, .height = m->height > 1 ? m->height : 1};
    rgpu_cu_devstate_t *d;
    char what[256];
    void *stream;
    rgpu_status_t st = RGPU_OK;
    int err;

    if (m->element_size != 1 && m->element_size != 2 && m->element_size != 4) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_VALUE, "element size %u (1, 2 or 4)",
                                 m->element_size);
        goto out;
    }
    if (__builtin_mul_overflow(m->width, (uint64_t)m->element_size, &dst.width)) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_VALUE, "width overflows");
        goto out;
    }
    dst.pitch = dst.height > 1 ? m->pitch : dst.width;
    d = rgpu_cu_dev(s, m->device, &err, what, sizeof(what));
    if (!d) {
        st = rgpu_cu_async_error(s, hdr, err, "%s", what);
        goto out;
    }
    if (rgpu_cu_rect_check(d, &dst, "memset", what, sizeof(what)) != 0) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_VALUE, "%s", what);
        goto out;
    }
    if ((m->dst | dst.pitch) % m->element_size) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_VALUE,
                                 "address or pitch not aligned to the %u-byte elements",
                                 m->element_size);
        goto out;
    }
    if (rgpu_cu_stream(s, m->device, m->stream, &stream) != 0) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_HANDLE, "no stream %llu",
                                 (unsigned long long)m->stream);
        goto out;
    }
    if (!dst.width)
        goto out;
    dst.width = m->width;       /* the device layer takes elements */
    err = rgpu_cu_note(d, s->be->ops->memset(d->ctx, stream, &dst, m->value, m->element_size));
    if (err != RGPU_CU_SUCCESS)
        st = rgpu_cu_async_error(s, hdr, err, "at 0x%llx", (unsigned long long)m->dst);
out:
    rgpu__cu_memset__free_unpacked(m, NULL);
    return st;
}

/* The first half of creating a stream or an event ("what"): the client's new id is sound,
 * the device is the session's, and the record is allocated. NULL once the error is sent
 * to the client, with *st_p the status to return. */
static rgpu_cu_devobj_t *rgpu_cu_devobj_new(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                            rgpu_htable_t *table, const char *what, uint64_t id,
                                            uint32_t device, rgpu_cu_devstate_t **d_p,
                                            rgpu_status_t *st_p)
{
    rgpu_cu_devobj_t *o;
    char why[256];
    int err;

    *st_p = RGPU_OK;
    if (!rgpu_cu_new_id_ok(s, table, id)) {
        *st_p = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_HANDLE,
                                    "%s id 0, already in use, or too many objects", what);
        return NULL;
    }
    *d_p = rgpu_cu_dev(s, device, &err, why, sizeof(why));
    if (!*d_p) {
        *st_p = rgpu_cu_async_error(s, hdr, err, "%s", why);
        return NULL;
    }
    o = calloc(1, sizeof(*o));
    if (!o) {
        *st_p = rgpu_cu_async_error(s, hdr, RGPU_CU_OUT_OF_MEMORY, "out of server memory");
        return NULL;
    }
    o->device = device;
    return o;
}

/* The second half, once the device was asked to make the object (err, its answer): the
 * session keeps it under the client's id; if it cannot, the object goes back to the device,
 * destroyed by "destroy". If the device refused, the record is freed and the client told why,
 * with what (the call's arguments). */
static rgpu_status_t rgpu_cu_devobj_keep(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                         rgpu_htable_t *table, uint64_t id,
                                         rgpu_cu_devstate_t *d, rgpu_cu_devobj_t *o, int err,
                                         int (*destroy)(rgpu_cu_ctx_t *ctx, void *handle),
                                         const char *what)
{
    if (rgpu_cu_note(d, err) != RGPU_CU_SUCCESS) {
        free(o);
        return rgpu_cu_async_error(s, hdr, err, "%s", what);
    }
    if (rgpu_htable_insert(table, id, o) != RGPU_OK) {
        destroy(d->ctx, o->handle);
        free(o);
        return rgpu_cu_async_error(s, hdr, RGPU_CU_OUT_OF_MEMORY, "out of server memory");
    }
    s->n_objects++;
    return RGPU_OK;
}

static rgpu_status_t rgpu_cu_stream_create(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                           const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuStreamCreate, rgpu__cu_stream_create__unpack, m);
    rgpu_cu_devstate_t *d = NULL;
    rgpu_status_t st;
    rgpu_cu_devobj_t *o = rgpu_cu_devobj_new(s, hdr, &s->streams, "stream", m->id, m->device, &d,
                                             &st);
    char what[64];
    int err;

    if (o) {
        snprintf(what, sizeof(what), "flags %u, priority %d", m->flags, m->priority);
        err = s->be->ops->stream_create(d->ctx, m->flags, m->priority, &o->handle);
        st = rgpu_cu_devobj_keep(s, hdr, &s->streams, m->id, d, o, err,
                                 s->be->ops->stream_destroy, what);
    }
    rgpu__cu_stream_create__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_stream_destroy(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                            const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuStreamDestroy, rgpu__cu_stream_destroy__unpack, m);
    rgpu_cu_devobj_t *o = m->stream ? rgpu_htable_remove(&s->streams, m->stream) : NULL;
    rgpu_status_t st = RGPU_OK;
    int err;

    if (!o) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_HANDLE, "no stream %llu",
                                 (unsigned long long)m->stream);
        goto out;
    }
    s->n_objects--;
    /* A stream lives in its device's context: gone with a reset. */
    if (s->devs[o->device].ctx) {
        err = s->be->ops->stream_destroy(s->devs[o->device].ctx, o->handle);
        if (err != RGPU_CU_SUCCESS)
            st = rgpu_cu_async_error(s, hdr, err, "stream %llu", (unsigned long long)m->stream);
    }
    free(o);
out:
    rgpu__cu_stream_destroy__free_unpacked(m, NULL);
    return st;
}

/* Stream sync and query: sync calls with a status reply. */
static rgpu_status_t rgpu_cu_stream_op(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                       const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuStreamOp, rgpu__cu_stream_op__unpack, m);
    rgpu_cu_devstate_t *d;
    char what[256] = "";
    void *stream;
    rgpu_status_t st;
    int err;

    d = rgpu_cu_dev(s, m->device, &err, what, sizeof(what));
    if (d && rgpu_cu_stream(s, m->device, m->stream, &stream) != 0) {
        snprintf(what, sizeof(what), "no stream %llu on device %u", (unsigned long long)m->stream,
                 m->device);
        err = RGPU_CU_INVALID_HANDLE;
    } else if (d && hdr->type == RGPU__MSG_TYPE__MSG_CU_STREAM_SYNC) {
        err = rgpu_cu_note(d, s->be->ops->stream_sync(d->ctx, stream));
    } else if (d) {
        err = rgpu_cu_note(d, s->be->ops->stream_query(d->ctx, stream));
    }
    st = rgpu_cu_reply_status(s, hdr, err, what);
    rgpu__cu_stream_op__free_unpacked(m, NULL);
    return st;
}

/* What waiting on an event and recording one check first: the device is the session's, and
 * the stream (0: the legacy stream) and the event are both on it. RGPU_CU_SUCCESS with *d_p,
 * *stream_p and *ev_p, or the error with what. */
static int rgpu_cu_stream_event(rgpu_cu_session_t *s, uint32_t device, uint64_t stream_id,
                                uint64_t event_id, rgpu_cu_devstate_t **d_p, void **stream_p,
                                rgpu_cu_devobj_t **ev_p, char *what, size_t what_cap)
{
    rgpu_cu_devobj_t *ev;
    int err;

    *d_p = rgpu_cu_dev(s, device, &err, what, what_cap);
    if (!*d_p)
        return err;
    if (rgpu_cu_stream(s, device, stream_id, stream_p) != 0) {
        snprintf(what, what_cap, "no stream %llu on device %u", (unsigned long long)stream_id,
                 device);
        return RGPU_CU_INVALID_HANDLE;
    }
    ev = rgpu_htable_find(&s->events, event_id);
    if (!ev || ev->device != device) {
        snprintf(what, what_cap, "no event %llu on device %u", (unsigned long long)event_id,
                 device);
        return RGPU_CU_INVALID_HANDLE;
    }
    *ev_p = ev;
    return RGPU_CU_SUCCESS;
}

static rgpu_status_t rgpu_cu_stream_wait_event(rgpu_cu_session_t *s,
                                               const rgpu_frame_header_t *hdr,
                                               const uint8_t *body, char *reason,
                                               size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuStreamWaitEvent, rgpu__cu_stream_wait_event__unpack, m);
    rgpu_cu_devobj_t *ev;
    rgpu_cu_devstate_t *d;
    char what[256];
    void *stream;
    rgpu_status_t st = RGPU_OK;
    int err;

    err = rgpu_cu_stream_event(s, m->device, m->stream, m->event, &d, &stream, &ev, what,
                               sizeof(what));
    if (err != RGPU_CU_SUCCESS) {
        st = rgpu_cu_async_error(s, hdr, err, "%s", what);
    } else {
        err = rgpu_cu_note(d, s->be->ops->stream_wait_event(d->ctx, stream, ev->handle, m->flags));
        if (err != RGPU_CU_SUCCESS)
            st = rgpu_cu_async_error(s, hdr, err, "stream %llu, event %llu",
                                     (unsigned long long)m->stream, (unsigned long long)m->event);
    }
    rgpu__cu_stream_wait_event__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_event_create(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                          const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuEventCreate, rgpu__cu_event_create__unpack, m);
    rgpu_cu_devstate_t *d = NULL;
    rgpu_status_t st;
    rgpu_cu_devobj_t *o = rgpu_cu_devobj_new(s, hdr, &s->events, "event", m->id, m->device, &d,
                                             &st);
    char what[32];
    int err;

    if (o) {
        snprintf(what, sizeof(what), "flags %u", m->flags);
        err = s->be->ops->event_create(d->ctx, m->flags, &o->handle);
        st = rgpu_cu_devobj_keep(s, hdr, &s->events, m->id, d, o, err, s->be->ops->event_destroy,
                                 what);
    }
    rgpu__cu_event_create__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_event_record(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                          const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuEventRecord, rgpu__cu_event_record__unpack, m);
    rgpu_cu_devobj_t *ev;
    rgpu_cu_devstate_t *d;
    char what[256];
    void *stream;
    rgpu_status_t st = RGPU_OK;
    int err;

    err = rgpu_cu_stream_event(s, m->device, m->stream, m->event, &d, &stream, &ev, what,
                               sizeof(what));
    if (err != RGPU_CU_SUCCESS) {
        st = rgpu_cu_async_error(s, hdr, err, "%s", what);
    } else {
        err = rgpu_cu_note(d, s->be->ops->event_record(d->ctx, ev->handle, stream, m->flags));
        if (err != RGPU_CU_SUCCESS)
            st = rgpu_cu_async_error(s, hdr, err, "stream %llu, event %llu",
                                     (unsigned long long)m->stream, (unsigned long long)m->event);
    }
    rgpu__cu_event_record__free_unpacked(m, NULL);
    return st;
}

/* The event of id with its device's state, or an error with what. */
static int rgpu_cu_event_on(rgpu_cu_session_t *s, uint64_t id, rgpu_cu_devobj_t **ev_p,
                            rgpu_cu_devstate_t **d_p, char *what, size_t what_cap)
{
    rgpu_cu_devobj_t *ev = rgpu_htable_find(&s->events, id);
    int err;

    if (!ev) {
        snprintf(what, what_cap, "no event %llu in this session", (unsigned long long)id);
        return RGPU_CU_INVALID_HANDLE;
    }
    *d_p = rgpu_cu_dev(s, ev->device, &err, what, what_cap);
    if (!*d_p)
        return err;
    *ev_p = ev;
    return RGPU_CU_SUCCESS;
}

/* Event sync, query and destroy. */
static rgpu_status_t rgpu_cu_event_op(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                      const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuEventOp, rgpu__cu_event_op__unpack, m);
    rgpu_cu_devobj_t *ev = NULL;
    rgpu_cu_devstate_t *d = NULL;
    char what[256] = "";
    rgpu_status_t st = RGPU_OK;
    int err;

    if (hdr->type == RGPU__MSG_TYPE__MSG_CU_EVENT_DESTROY) {
        ev = rgpu_htable_remove(&s->events, m->event);
        if (!ev) {
            st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_HANDLE, "no event %llu",
                                     (unsigned long long)m->event);
            goto out;
        }
        s->n_objects--;
        if (s->devs[ev->device].ctx)
            s->be->ops->event_destroy(s->devs[ev->device].ctx, ev->handle);
        free(ev);
        goto out;
    }
    err = rgpu_cu_event_on(s, m->event, &ev, &d, what, sizeof(what));
    if (err == RGPU_CU_SUCCESS && hdr->type == RGPU__MSG_TYPE__MSG_CU_EVENT_SYNC)
        err = rgpu_cu_note(d, s->be->ops->event_sync(d->ctx, ev->handle));
    else if (err == RGPU_CU_SUCCESS)
        err = rgpu_cu_note(d, s->be->ops->event_query(d->ctx, ev->handle));
    st = rgpu_cu_reply_status(s, hdr, err, what);
out:
    rgpu__cu_event_op__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_event_elapsed(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                           const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuEventElapsed, rgpu__cu_event_elapsed__unpack, m);
    Rgpu__CuElapsedReply reply = RGPU__CU_ELAPSED_REPLY__INIT;
    rgpu_cu_devobj_t *start = NULL, *end = NULL;
    rgpu_cu_devstate_t *d = NULL, *d2 = NULL;
    char what[256];
    float ms = 0;
    rgpu_status_t st;
    int err;

    err = rgpu_cu_event_on(s, m->start, &start, &d, what, sizeof(what));
    if (err == RGPU_CU_SUCCESS)
        err = rgpu_cu_event_on(s, m->end, &end, &d2, what, sizeof(what));
    if (err == RGPU_CU_SUCCESS && d != d2)
        err = RGPU_CU_INVALID_HANDLE;   /* events of two devices */
    if (err == RGPU_CU_SUCCESS)
        err = rgpu_cu_note(d, s->be->ops->event_elapsed(d->ctx, start->handle, end->handle, &ms));
    reply.cu_error = err;
    reply.ms = err == RGPU_CU_SUCCESS ? ms : 0;
    st = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CU_ELAPSED_REPLY, hdr->seq,
                           &reply.base, NULL, 0);
    rgpu__cu_event_elapsed__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_launch(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                    const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuLaunch, rgpu__cu_launch__unpack, m);
    uint32_t grid[3] = {m->grid_x, m->grid_y, m->grid_z};
    uint32_t block[3] = {m->block_x, m->block_y, m->block_z};
    rgpu_cu_function_t *fn;
    rgpu_cu_devstate_t *d;
    char what[256];
    void *handle, *stream;
    rgpu_status_t st = RGPU_OK;
    int err;

    err = rgpu_cu_function_on(s, m->function, m->device, &d, &fn, &handle, what, sizeof(what));
    if (err != RGPU_CU_SUCCESS) {
        st = rgpu_cu_async_error(s, hdr, err, "%s", what);
        goto out;
    }
    if (rgpu_cu_stream(s, m->device, m->stream, &stream) != 0) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_HANDLE, "no stream %llu on device %u",
                                 (unsigned long long)m->stream, m->device);
        goto out;
    }
    if (!grid[0] || !grid[1] || !grid[2] || !block[0] || !block[1] || !block[2]) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_VALUE, "a grid or block dimension is 0");
        goto out;
    }
    if (m->params.len > RGPU_CU_MAX_PARAM_BYTES) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_VALUE,
                                 "a parameter buffer of %zu bytes (CUDA's limit is %u)",
                                 m->params.len, RGPU_CU_MAX_PARAM_BYTES);
        goto out;
    }
    /* The kernel's own parameter size, asked once: a shorter buffer would
     * make the device read past it. */
    if (fn->param_bytes[m->device] < 0) {
        rgpu_cu_func_info_t info = {0};

        info.param_offsets = calloc(RGPU_CU_MAX_PARAMS, sizeof(uint32_t));
        info.param_sizes = calloc(RGPU_CU_MAX_PARAMS, sizeof(uint32_t));
        if (info.param_offsets && info.param_sizes &&
            s->be->ops->func_info(d->ctx, handle, &info) == RGPU_CU_SUCCESS)
            fn->param_bytes[m->device] = info.param_bytes;
        free(info.param_offsets);
        free(info.param_sizes);
    }
    if (fn->param_bytes[m->device] > 0 && m->params.len < (uint64_t)fn->param_bytes[m->device]) {
        st = rgpu_cu_async_error(s, hdr, RGPU_CU_INVALID_VALUE,
                                 "kernel \"%.200s\" takes %lld bytes of parameters, the launch "
                                 "gave %zu", fn->name, (long long)fn->param_bytes[m->device],
                                 m->params.len);
        goto out;
    }
    /* The driver takes exactly the kernel's parameter bank: a client's
     * padding past it is dropped. */
    if (fn->param_bytes[m->device] > 0 && m->params.len > (uint64_t)fn->param_bytes[m->device])
        m->params.len = (size_t)fn->param_bytes[m->device];
    err = rgpu_cu_note(d, s->be->ops->launch(d->ctx, handle, grid, block, m->shared_mem, stream,
                                             m->params.data, m->params.len));
    if (err != RGPU_CU_SUCCESS)
        st = rgpu_cu_async_error(s, hdr, err, "kernel \"%.200s\" <<<(%u,%u,%u), (%u,%u,%u)>>>",
                                 fn->name, grid[0], grid[1], grid[2], block[0], block[1],
                                 block[2]);
out:
    rgpu__cu_launch__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_device_sync(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                         const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuDeviceSync, rgpu__cu_device_sync__unpack, m);
    rgpu_cu_devstate_t *d;
    char what[256] = "";
    rgpu_status_t st;
    int err;

    d = rgpu_cu_dev(s, m->device, &err, what, sizeof(what));
    if (d)
        err = rgpu_cu_note(d, s->be->ops->ctx_sync(d->ctx));
    st = rgpu_cu_reply_status(s, hdr, err, what);
    rgpu__cu_device_sync__free_unpacked(m, NULL);
    return st;
}

static rgpu_status_t rgpu_cu_device_reset(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                          const uint8_t *body, char *reason, size_t reason_cap)
{
    RGPU_CU_UNPACK(Rgpu__CuDeviceReset, rgpu__cu_device_reset__unpack, m);
    rgpu_status_t st;

    if (m->device >= s->be->n_devices || !rgpu_session_device_allowed(s->session, m->device)) {
        st = rgpu_cu_reply_status(s, hdr, RGPU_CU_INVALID_DEVICE, "no such device");
    } else {
        rgpu_cu_device_drop(s, m->device);
        st = rgpu_cu_reply_status(s, hdr, RGPU_CU_SUCCESS, NULL);
    }
    rgpu__cu_device_reset__free_unpacked(m, NULL);
    return st;
}

typedef rgpu_status_t (*rgpu_cu_handler_fn)(rgpu_cu_session_t *s, const rgpu_frame_header_t *hdr,
                                            const uint8_t *body, char *reason, size_t reason_cap);

rgpu_status_t rgpu__cu_session_handle(void *ctx, const rgpu_frame_header_t *hdr,
                                      const uint8_t *body, char *reason, size_t reason_cap)
{
    rgpu_cu_session_t *s = ctx;
    rgpu_cu_handler_fn fn;
    int bulk_ok = 0;

    switch (hdr->type) {
    case RGPU__MSG_TYPE__MSG_CU_MODULE_LOAD: fn = rgpu_cu_module_load; break;
    case RGPU__MSG_TYPE__MSG_CU_MODULE_DATA: fn = rgpu_cu_module_data; bulk_ok = 1; break;
    case RGPU__MSG_TYPE__MSG_CU_FUNCTION: fn = rgpu_cu_function; break;
    case RGPU__MSG_TYPE__MSG_CU_FUNC_INFO: fn = rgpu_cu_func_info; break;
    case RGPU__MSG_TYPE__MSG_CU_FUNC_SET_ATTR: fn = rgpu_cu_func_set_attr; break;
    case RGPU__MSG_TYPE__MSG_CU_OCCUPANCY: fn = rgpu_cu_occupancy; break;
    case RGPU__MSG_TYPE__MSG_CU_GET_GLOBAL: fn = rgpu_cu_get_global; break;
    case RGPU__MSG_TYPE__MSG_CU_MALLOC: fn = rgpu_cu_malloc; break;
    case RGPU__MSG_TYPE__MSG_CU_FREE: fn = rgpu_cu_free; break;
    case RGPU__MSG_TYPE__MSG_CU_MEM_GET_INFO: fn = rgpu_cu_mem_get_info; break;
    case RGPU__MSG_TYPE__MSG_CU_MEMCPY_H2D: fn = rgpu_cu_memcpy_h2d; bulk_ok = 1; break;
    case RGPU__MSG_TYPE__MSG_CU_MEMCPY_D2H: fn = rgpu_cu_memcpy_d2h; break;
    case RGPU__MSG_TYPE__MSG_CU_MEMCPY_D2D: fn = rgpu_cu_memcpy_d2d; break;
    case RGPU__MSG_TYPE__MSG_CU_MEMCPY_2D: fn = rgpu_cu_memcpy_2d; bulk_ok = 1; break;
    case RGPU__MSG_TYPE__MSG_CU_MEMSET: fn = rgpu_cu_memset; break;
    case RGPU__MSG_TYPE__MSG_CU_STREAM_CREATE: fn = rgpu_cu_stream_create; break;
    case RGPU__MSG_TYPE__MSG_CU_STREAM_DESTROY: fn = rgpu_cu_stream_destroy; break;
    case RGPU__MSG_TYPE__MSG_CU_STREAM_SYNC:
    case RGPU__MSG_TYPE__MSG_CU_STREAM_QUERY: fn = rgpu_cu_stream_op; break;
    case RGPU__MSG_TYPE__MSG_CU_STREAM_WAIT_EVENT: fn = rgpu_cu_stream_wait_event; break;
    case RGPU__MSG_TYPE__MSG_CU_EVENT_CREATE: fn = rgpu_cu_event_create; break;
    case RGPU__MSG_TYPE__MSG_CU_EVENT_RECORD: fn = rgpu_cu_event_record; break;
    case RGPU__MSG_TYPE__MSG_CU_EVENT_SYNC:
    case RGPU__MSG_TYPE__MSG_CU_EVENT_QUERY:
    case RGPU__MSG_TYPE__MSG_CU_EVENT_DESTROY: fn = rgpu_cu_event_op; break;
    case RGPU__MSG_TYPE__MSG_CU_EVENT_ELAPSED: fn = rgpu_cu_event_elapsed; break;
    case RGPU__MSG_TYPE__MSG_CU_LAUNCH: fn = rgpu_cu_launch; break;
    case RGPU__MSG_TYPE__MSG_CU_DEVICE_SYNC: fn = rgpu_cu_device_sync; break;
    case RGPU__MSG_TYPE__MSG_CU_DEVICE_RESET: fn = rgpu_cu_device_reset; break;
    default:
        snprintf(reason, reason_cap, "message type %u is not a CUDA request", hdr->type);
        return RGPU_ERR_UNKNOWN_TYPE;
    }
    if (hdr->bulk_len && !bulk_ok) {
        snprintf(reason, reason_cap, "%s carries %llu bytes of bulk, expected none",
                 rgpu_cu_msg_name(hdr->type), (unsigned long long)hdr->bulk_len);
        return RGPU_ERR_PROTOCOL;
    }
    return fn(s, hdr, body, reason, reason_cap);
}
