/*
 * The CUDA backend on NVIDIA's driver API, loaded at run time with
 * dlopen("libcuda.so.1"): one rgpu-server binary serves nodes with and
 * without CUDA, and a node without the driver skips this backend with one
 * log line. Entry points come from cuGetProcAddress, asked for the versions
 * of the toolkit this file was compiled against (cuda.h gives the types).
 *
 * Contexts: one per session and device (cuCtxCreate), never the primary
 * context. Each is a GPU virtual address space of its own, so the GPU's
 * MMU separates tenants: the device addresses a client sees and forges
 * reach only its own session's memory, and a kernel that faults breaks
 * only its own context. cuda_session.c explains the rest of the model.
 *
 * Modules are loaded with cuModuleLoadDataEx into the session's context
 * (with the JIT's error log) from bytes the backend caches by content, so
 * a program's hundredth process sends only a hash. cuLibraryLoadData would
 * share one load across contexts, but a library belongs to the whole
 * process and outlives the sessions that would share it; per-context
 * modules die with their session like everything else.
 *
 * Transfers overlap the network as the OpenCL path does. To the device,
 * the bytes arrive in chunks into a ring of pinned staging buffers and
 * each chunk is copied asynchronously on the call's stream while the next
 * one arrives; a buffer is reused once the event recorded after its copy
 * completed. From the device, chunk i+1 is copied into one pinned buffer
 * while chunk i leaves from the other. Staging is allocated at a context's
 * first transfer (pinning is slow) and freed with the context.
 *
 * Every call runs on the session thread with the session's context made
 * current first (a session may use several devices). Teardown destroys the
 * context, which frees its memory, modules, streams, events and staging.
 * The driver lets a running kernel end first and cannot stop one: a kernel
 * that never ends keeps its session's thread and memory until the server
 * exits (the other sessions go on). That is a limit of CUDA itself, which
 * rgpu reports rather than hides.
 *
 * It cannot run on a machine without an NVIDIA GPU; tests/gpu/run.sh
 * checks it against the examples on one that has.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE     /* dlinfo */
#endif
#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>

#include "cuda.pb-c.h"
#include "cuda_device.h"
#include "rgpu/log.h"

_Static_assert((int)RGPU_CU_SUCCESS == (int)CUDA_SUCCESS, "CUresult numbering");
_Static_assert((int)RGPU_CU_INVALID_VALUE == (int)CUDA_ERROR_INVALID_VALUE, "CUresult numbering");
_Static_assert((int)RGPU_CU_OUT_OF_MEMORY == (int)CUDA_ERROR_OUT_OF_MEMORY, "CUresult numbering");
_Static_assert((int)RGPU_CU_NOT_INITIALIZED == (int)CUDA_ERROR_NOT_INITIALIZED, "CUresult numbering");
_Static_assert((int)RGPU_CU_NO_DEVICE == (int)CUDA_ERROR_NO_DEVICE, "CUresult numbering");
_Static_assert((int)RGPU_CU_INVALID_DEVICE == (int)CUDA_ERROR_INVALID_DEVICE, "CUresult numbering");
_Static_assert((int)RGPU_CU_INVALID_IMAGE == (int)CUDA_ERROR_INVALID_IMAGE, "CUresult numbering");
_Static_assert((int)RGPU_CU_INVALID_CONTEXT == (int)CUDA_ERROR_INVALID_CONTEXT, "CUresult numbering");
_Static_assert((int)RGPU_CU_NO_BINARY_FOR_GPU == (int)CUDA_ERROR_NO_BINARY_FOR_GPU, "CUresult numbering");
_Static_assert((int)RGPU_CU_INVALID_HANDLE == (int)CUDA_ERROR_INVALID_HANDLE, "CUresult numbering");
_Static_assert((int)RGPU_CU_NOT_FOUND == (int)CUDA_ERROR_NOT_FOUND, "CUresult numbering");
_Static_assert((int)RGPU_CU_NOT_READY == (int)CUDA_ERROR_NOT_READY, "CUresult numbering");
_Static_assert((int)RGPU_CU_ILLEGAL_ADDRESS == (int)CUDA_ERROR_ILLEGAL_ADDRESS, "CUresult numbering");
_Static_assert((int)RGPU_CU_LAUNCH_OUT_OF_RESOURCES == (int)CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES,
               "CUresult numbering");
_Static_assert((int)RGPU_CU_LAUNCH_TIMEOUT == (int)CUDA_ERROR_LAUNCH_TIMEOUT, "CUresult numbering");
_Static_assert((int)RGPU_CU_LAUNCH_FAILED == (int)CUDA_ERROR_LAUNCH_FAILED, "CUresult numbering");
_Static_assert((int)RGPU_CU_NOT_SUPPORTED == (int)CUDA_ERROR_NOT_SUPPORTED, "CUresult numbering");
_Static_assert((int)RGPU_CU_UNKNOWN == (int)CUDA_ERROR_UNKNOWN, "CUresult numbering");
_Static_assert((int)RGPU_CU_FUNC_MAX_THREADS_PER_BLOCK ==
               (int)CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK &&
               (int)RGPU_CU_FUNC_BINARY_VERSION == (int)CU_FUNC_ATTRIBUTE_BINARY_VERSION,
               "CUfunction_attribute numbering");

/* Pinned staging: slots for copies to the device, and their size. */
#define RGPU_CUDRV_H2D_SLOTS 4
#define RGPU_CUDRV_D2H_SLOTS 2

/* The driver entry points the backend calls; name = the API's name. */
#define RGPU_CUDRV_FUNCS(X)                                                  \
    X(cuInit) X(cuDriverGetVersion) X(cuGetErrorName) X(cuDeviceGetCount)    \
    X(cuDeviceGet) X(cuDeviceGetName) X(cuDeviceTotalMem)                    \
    X(cuDeviceGetAttribute) X(cuDeviceGetUuid) X(cuCtxCreate)               \
    X(cuCtxDestroy) X(cuCtxSetCurrent) X(cuCtxSynchronize) X(cuMemAlloc)     \
    X(cuMemFree) X(cuMemGetInfo) X(cuMemHostAlloc) X(cuMemFreeHost)          \
    X(cuModuleLoadDataEx) X(cuModuleUnload) X(cuModuleGetFunction)           \
    X(cuModuleGetGlobal) X(cuFuncGetAttribute) X(cuFuncSetAttribute)         \
    X(cuFuncSetCacheConfig)                                                  \
    X(cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags)                  \
    X(cuStreamCreateWithPriority) X(cuStreamDestroy) X(cuStreamSynchronize)  \
    X(cuStreamQuery) X(cuStreamWaitEvent) X(cuEventCreate) X(cuEventDestroy) \
    X(cuEventRecord) X(cuEventRecordWithFlags) X(cuEventSynchronize) X(cuEventQuery)          \
    X(cuEventElapsedTime) X(cuMemcpyHtoDAsync) X(cuMemcpyDtoHAsync)          \
    X(cuMemcpyDtoDAsync) X(cuMemcpy2DAsync) X(cuMemsetD8Async)               \
    X(cuMemsetD16Async) X(cuMemsetD32Async) X(cuMemsetD2D8Async)             \
    X(cuMemsetD2D16Async) X(cuMemsetD2D32Async) X(cuLaunchKernel)
/* Entry points a driver may lack (cuFuncGetParamInfo: 12.4 and later). */
#define RGPU_CUDRV_OPTIONAL_FUNCS(X) X(cuFuncGetParamInfo)

typedef struct {
#define RGPU_CUDRV_FIELD(name) __typeof__(name) *name;
    RGPU_CUDRV_FUNCS(RGPU_CUDRV_FIELD)
    RGPU_CUDRV_OPTIONAL_FUNCS(RGPU_CUDRV_FIELD)
#undef RGPU_CUDRV_FIELD
} rgpu_cudrv_api_t;

struct rgpu_cu_dev {
    void *lib;                  /* dlopen handle of libcuda.so.1 */
    rgpu_cudrv_api_t api;
    /* cuCtxCreate as CUDA 12 had it (no parameter block): the fallback
     * when the driver wants CUDA 13's block filled in. */
    CUresult (*ctx_create_v2)(CUcontext *ctx, unsigned int flags, CUdevice dev);
    int version;
    int count;
    CUdevice devices[64];
    size_t chunk;               /* staging chunk: --chunk-size */
};

typedef struct {
    void *buf;
    CUevent done;               /* recorded after the slot's copy */
    int busy;                   /* done was recorded and not yet waited for */
} rgpu_cudrv_slot_t;

struct rgpu_cu_ctx {
    rgpu_cu_dev_t *dev;
    CUcontext ctx;
    rgpu_cudrv_slot_t h2d[RGPU_CUDRV_H2D_SLOTS];
    rgpu_cudrv_slot_t d2h[RGPU_CUDRV_D2H_SLOTS];
    int staged;                 /* the slots are allocated */
    unsigned next_h2d;
};

/* Makes ctx current on the session thread; evaluates to its CUresult. */
#define RGPU_CUDRV_ENTER(c) ((c)->dev->api.cuCtxSetCurrent((c)->ctx))

/* ---- the driver ---------------------------------------------------------- */

static const char *rgpu_cudrv_err(rgpu_cu_dev_t *dev, CUresult r)
{
    const char *name = NULL;

    if (dev->api.cuGetErrorName && dev->api.cuGetErrorName(r, &name) == CUDA_SUCCESS && name)
        return name;
    return rgpu__cu_result_name((int)r);
}

static rgpu_status_t rgpu_cudrv_open(const rgpu_server_config_t *config, rgpu_cu_dev_t **dev_p,
                                     char *why, size_t why_cap)
{
    CUresult (*get_proc)(const char *, void **, int, cuuint64_t,
                         CUdriverProcAddressQueryResult *);
    CUdriverProcAddressQueryResult found;
    rgpu_cu_dev_t *dev;
    CUresult r;

    dev = calloc(1, sizeof(*dev));
    if (!dev) {
        snprintf(why, why_cap, "out of memory");
        return RGPU_ERR_NOMEM;
    }
    dev->chunk = config->chunk_size;
    dev->lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!dev->lib) {
        snprintf(why, why_cap, "libcuda.so.1 not found (the NVIDIA driver is not installed)");
        rgpu_debug("cuda", "dlopen: %s", dlerror());
        goto out_free;
    }
    /* rgpu's client ships a libcuda.so.1 of its own (client/cuda/
     * static_check.c: it explains to programs linked with the static
     * runtime why they cannot run). Found first on a misconfigured library
     * path, it is no driver: NVIDIA's always exports cuGetExportTable,
     * which rgpu never implements. */
    if (!dlsym(dev->lib, "cuGetExportTable")) {
        struct link_map *map = NULL;

        dlinfo(dev->lib, RTLD_DI_LINKMAP, &map);
        snprintf(why, why_cap, "the libcuda.so.1 found (%s) is not NVIDIA's driver (rgpu's "
                 "client directory on rgpu-server's library path?)",
                 map && map->l_name ? map->l_name : "?");
        goto out_close;
    }
    *(void **)&get_proc = dlsym(dev->lib, "cuGetProcAddress_v2");
    if (!get_proc) {
        snprintf(why, why_cap, "libcuda.so.1 has no cuGetProcAddress_v2 (driver older than "
                 "CUDA 12)");
        goto out_close;
    }
#define RGPU_CUDRV_LOOKUP(name)                                                              \
    if (get_proc(#name, (void **)&dev->api.name, CUDA_VERSION, CU_GET_PROC_ADDRESS_DEFAULT,   \
                 &found) != CUDA_SUCCESS || !dev->api.name) {                                \
        snprintf(why, why_cap, "libcuda.so.1 lacks %s for CUDA %d (driver too old for "      \
                 "this rgpu-server)", #name, CUDA_VERSION);                                  \
        goto out_close;                                                                      \
    }
    RGPU_CUDRV_FUNCS(RGPU_CUDRV_LOOKUP)
#undef RGPU_CUDRV_LOOKUP
#define RGPU_CUDRV_LOOKUP_OPTIONAL(name)                                                     \
    if (get_proc(#name, (void **)&dev->api.name, CUDA_VERSION, CU_GET_PROC_ADDRESS_DEFAULT,   \
                 &found) != CUDA_SUCCESS)                                                    \
        dev->api.name = NULL;
    RGPU_CUDRV_OPTIONAL_FUNCS(RGPU_CUDRV_LOOKUP_OPTIONAL)
#undef RGPU_CUDRV_LOOKUP_OPTIONAL
    if (get_proc("cuCtxCreate", (void **)&dev->ctx_create_v2, 12000, CU_GET_PROC_ADDRESS_DEFAULT,
                 &found) != CUDA_SUCCESS)
        dev->ctx_create_v2 = NULL;
    r = dev->api.cuInit(0);
    if (r != CUDA_SUCCESS) {
        snprintf(why, why_cap, "cuInit failed: %s", rgpu_cudrv_err(dev, r));
        goto out_close;
    }
    dev->api.cuDriverGetVersion(&dev->version);
    r = dev->api.cuDeviceGetCount(&dev->count);
    if (r != CUDA_SUCCESS || dev->count <= 0) {
        snprintf(why, why_cap, "the CUDA driver sees no device");
        goto out_close;
    }
    if (dev->count > 64)
        dev->count = 64;
    for (int i = 0; i < dev->count; i++) {
        r = dev->api.cuDeviceGet(&dev->devices[i], i);
        if (r != CUDA_SUCCESS) {
            snprintf(why, why_cap, "cuDeviceGet(%d) failed: %s", i, rgpu_cudrv_err(dev, r));
            goto out_close;
        }
    }
    if (!dev->api.cuFuncGetParamInfo)
        rgpu_warn("cuda", "driver %d has no cuFuncGetParamInfo (12.4 and later): launches of "
                  "PTX-only kernels cannot have their parameters checked", dev->version);
    *dev_p = dev;
    return RGPU_OK;

out_close:
    dlclose(dev->lib);
out_free:
    free(dev);
    return RGPU_ERR_NOT_FOUND;
}

static void rgpu_cudrv_close(rgpu_cu_dev_t *dev)
{
    /* The driver keeps threads and state that dlclose would pull from under
     * them; the process ends soon after anyway. */
    free(dev);
}

static uint32_t rgpu_cudrv_count(rgpu_cu_dev_t *dev)
{
    return (uint32_t)dev->count;
}

static int rgpu_cudrv_driver_version(rgpu_cu_dev_t *dev)
{
    return dev->version;
}

static void rgpu_cudrv_device_name(rgpu_cu_dev_t *dev, uint32_t index, char *out, size_t cap)
{
    char name[256] = "?";

    dev->api.cuDeviceGetName(name, sizeof(name), dev->devices[index]);
    name[sizeof(name) - 1] = '\0';
    snprintf(out, cap, "%s", name);
}

static void rgpu_cudrv_device_params(rgpu_cu_dev_t *dev, uint32_t index, rgpu_cu_param_fn add,
                                     void *arg)
{
    CUdevice d = dev->devices[index];
    char name[256] = "";
    size_t total = 0;
    uint64_t total64;
    CUuuid uuid;
    int32_t version = dev->version;

    /* Every attribute this driver answers: the client's properties come
     * from here, without a round trip. */
    for (int a = 1; a < CU_DEVICE_ATTRIBUTE_MAX; a++) {
        int value;

        if (dev->api.cuDeviceGetAttribute(&value, (CUdevice_attribute)a, d) == CUDA_SUCCESS) {
            int32_t v = value;

            add(arg, (uint32_t)a, &v, sizeof(v));
        }
    }
    if (dev->api.cuDeviceGetName(name, sizeof(name), d) == CUDA_SUCCESS) {
        name[sizeof(name) - 1] = '\0';
        add(arg, RGPU__CU_DEVICE_PARAM__CU_PARAM_NAME, name, strlen(name));
    }
    if (dev->api.cuDeviceTotalMem(&total, d) == CUDA_SUCCESS) {
        total64 = total;
        add(arg, RGPU__CU_DEVICE_PARAM__CU_PARAM_TOTAL_MEM, &total64, sizeof(total64));
    }
    if (dev->api.cuDeviceGetUuid(&uuid, d) == CUDA_SUCCESS)
        add(arg, RGPU__CU_DEVICE_PARAM__CU_PARAM_UUID, uuid.bytes, sizeof(uuid.bytes));
    add(arg, RGPU__CU_DEVICE_PARAM__CU_PARAM_DRIVER_VERSION, &version, sizeof(version));
}

/* ---- contexts, staging, memory --------------------------------------------- */

static int rgpu_cudrv_ctx_create(rgpu_cu_dev_t *dev, uint32_t index, rgpu_cu_ctx_t **ctx_p)
{
    rgpu_cu_ctx_t *c;
    CUresult r;

    if (index >= (uint32_t)dev->count)
        return CUDA_ERROR_INVALID_DEVICE;
    c = calloc(1, sizeof(*c));
    if (!c)
        return CUDA_ERROR_OUT_OF_MEMORY;
    c->dev = dev;
    /* Blocking synchronization: a session thread waiting for its device
     * sleeps instead of spinning a core the server's other sessions need. */
    r = dev->api.cuCtxCreate(&c->ctx, NULL, CU_CTX_SCHED_BLOCKING_SYNC, dev->devices[index]);
    if (r == CUDA_ERROR_INVALID_VALUE && dev->ctx_create_v2)
        r = dev->ctx_create_v2(&c->ctx, CU_CTX_SCHED_BLOCKING_SYNC, dev->devices[index]);
    if (r != CUDA_SUCCESS) {
        rgpu_warn("cuda", "cannot create a context on device %u: %s", index,
                  rgpu_cudrv_err(dev, r));
        free(c);
        return (int)r;
    }
    *ctx_p = c;
    return CUDA_SUCCESS;
}

static void rgpu_cudrv_slots_free(rgpu_cu_ctx_t *c, rgpu_cudrv_slot_t *slots, int n)
{
    for (int i = 0; i < n; i++) {
        if (slots[i].done)
            c->dev->api.cuEventDestroy(slots[i].done);
        if (slots[i].buf)
            c->dev->api.cuMemFreeHost(slots[i].buf);
        memset(&slots[i], 0, sizeof(slots[i]));
    }
}

/* Allocates the pinned staging buffers at the first transfer. */
static int rgpu_cudrv_stage(rgpu_cu_ctx_t *c)
{
    rgpu_cudrv_slot_t *all[RGPU_CUDRV_H2D_SLOTS + RGPU_CUDRV_D2H_SLOTS];
    CUresult r = CUDA_SUCCESS;
    int n = 0;

    if (c->staged)
        return CUDA_SUCCESS;
    for (int i = 0; i < RGPU_CUDRV_H2D_SLOTS; i++)
        all[n++] = &c->h2d[i];
    for (int i = 0; i < RGPU_CUDRV_D2H_SLOTS; i++)
        all[n++] = &c->d2h[i];
    for (int i = 0; i < n && r == CUDA_SUCCESS; i++) {
        r = c->dev->api.cuMemHostAlloc(&all[i]->buf, c->dev->chunk, 0);
        if (r == CUDA_SUCCESS)
            r = c->dev->api.cuEventCreate(&all[i]->done, CU_EVENT_DISABLE_TIMING);
    }
    if (r != CUDA_SUCCESS) {
        rgpu_cudrv_slots_free(c, c->h2d, RGPU_CUDRV_H2D_SLOTS);
        rgpu_cudrv_slots_free(c, c->d2h, RGPU_CUDRV_D2H_SLOTS);
        return (int)r;
    }
    c->staged = 1;
    return CUDA_SUCCESS;
}

/* Everything the context holds goes with it, the pinned staging and its
 * events included, once the driver has let its work end: there is no
 * separate synchronization to hang on first. */
static void rgpu_cudrv_ctx_destroy(rgpu_cu_ctx_t *c)
{
    CUresult r;

    r = c->dev->api.cuCtxDestroy(c->ctx);
    if (r != CUDA_SUCCESS)
        rgpu_warn("cuda", "cuCtxDestroy failed: %s", rgpu_cudrv_err(c->dev, r));
    c->dev->api.cuCtxSetCurrent(NULL);
    free(c);
}

static int rgpu_cudrv_ctx_sync(rgpu_cu_ctx_t *c)
{
    CUresult r = RGPU_CUDRV_ENTER(c);

    return (int)(r ? r : c->dev->api.cuCtxSynchronize());
}

static int rgpu_cudrv_mem_alloc(rgpu_cu_ctx_t *c, uint64_t size, uint64_t *dptr_p)
{
    CUdeviceptr p;
    CUresult r = RGPU_CUDRV_ENTER(c);

    if (!r)
        r = c->dev->api.cuMemAlloc(&p, size);
    if (!r)
        *dptr_p = p;
    return (int)r;
}

static int rgpu_cudrv_mem_free(rgpu_cu_ctx_t *c, uint64_t dptr)
{
    CUresult r = RGPU_CUDRV_ENTER(c);

    return (int)(r ? r : c->dev->api.cuMemFree((CUdeviceptr)dptr));
}

static int rgpu_cudrv_mem_info(rgpu_cu_ctx_t *c, uint64_t *free_p, uint64_t *total_p)
{
    size_t f, t;
    CUresult r = RGPU_CUDRV_ENTER(c);

    if (!r)
        r = c->dev->api.cuMemGetInfo(&f, &t);
    if (!r) {
        *free_p = f;
        *total_p = t;
    }
    return (int)r;
}

/* ---- modules and functions --------------------------------------------------- */

static int rgpu_cudrv_module_load(rgpu_cu_ctx_t *c, const void *image, size_t len, void **mod_p,
                                  char *log, size_t log_cap)
{
    CUjit_option opts[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *vals[2] = {log, (void *)(uintptr_t)log_cap};
    CUmodule mod;
    CUresult r = RGPU_CUDRV_ENTER(c);

    (void)len;      /* a fatbinary states its own size; the cache holds len bytes */
    if (log_cap)
        log[0] = '\0';
    if (!r)
        r = c->dev->api.cuModuleLoadDataEx(&mod, image, 2, opts, vals);
    if (log_cap)
        log[log_cap - 1] = '\0';
    if (!r)
        *mod_p = mod;
    return (int)r;
}

static void rgpu_cudrv_module_unload(rgpu_cu_ctx_t *c, void *mod)
{
    if (RGPU_CUDRV_ENTER(c) == CUDA_SUCCESS)
        c->dev->api.cuModuleUnload(mod);
}

static int rgpu_cudrv_function_get(rgpu_cu_ctx_t *c, void *mod, const char *name, void **fn_p)
{
    CUfunction fn;
    CUresult r = RGPU_CUDRV_ENTER(c);

    if (!r)
        r = c->dev->api.cuModuleGetFunction(&fn, mod, name);
    if (!r)
        *fn_p = fn;
    return (int)r;
}

static int rgpu_cudrv_func_info(rgpu_cu_ctx_t *c, void *fn, rgpu_cu_func_info_t *info)
{
    CUresult r = RGPU_CUDRV_ENTER(c);

    if (r)
        return (int)r;
    for (int a = 0; a < RGPU_CU_FUNC_ATTR_COUNT; a++) {
        int v = 0;

        c->dev->api.cuFuncGetAttribute(&v, (CUfunction_attribute)a, fn);
        info->attrs[a] = v;
    }
    info->n_params = 0;
    info->param_bytes = 0;
    /* The parameter layout, one index at a time until the driver says
     * there is no such parameter. */
    for (uint32_t i = 0; c->dev->api.cuFuncGetParamInfo && i < RGPU_CU_MAX_PARAMS; i++) {
        size_t off, size;

        if (c->dev->api.cuFuncGetParamInfo(fn, i, &off, &size) != CUDA_SUCCESS)
            break;
        if (off > RGPU_CU_MAX_PARAM_BYTES || size > RGPU_CU_MAX_PARAM_BYTES)
            break;
        info->param_offsets[i] = (uint32_t)off;
        info->param_sizes[i] = (uint32_t)size;
        info->n_params = i + 1;
        if (off + size > info->param_bytes)
            info->param_bytes = (uint32_t)(off + size);
    }
    return CUDA_SUCCESS;
}

static int rgpu_cudrv_func_set_attr(rgpu_cu_ctx_t *c, void *fn, int32_t attr, int32_t value)
{
    CUresult r = RGPU_CUDRV_ENTER(c);

    if (r)
        return (int)r;
    if (attr == -1)
        return (int)c->dev->api.cuFuncSetCacheConfig(fn, (CUfunc_cache)value);
    return (int)c->dev->api.cuFuncSetAttribute(fn, (CUfunction_attribute)attr, value);
}

static int rgpu_cudrv_occupancy(rgpu_cu_ctx_t *c, void *fn, uint32_t block_size,
                                uint64_t dynamic_smem, uint32_t flags, uint32_t *blocks_p)
{
    int blocks = 0;
    CUresult r = RGPU_CUDRV_ENTER(c);

    if (!r)
        r = c->dev->api.cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(
            &blocks, fn, (int)block_size, (size_t)dynamic_smem, flags);
    if (!r)
        *blocks_p = (uint32_t)blocks;
    return (int)r;
}

static int rgpu_cudrv_global_get(rgpu_cu_ctx_t *c, void *mod, const char *name,
                                 uint64_t *dptr_p, uint64_t *size_p)
{
    CUdeviceptr p;
    size_t size;
    CUresult r = RGPU_CUDRV_ENTER(c);

    if (!r)
        r = c->dev->api.cuModuleGetGlobal(&p, &size, mod, name);
    if (!r) {
        *dptr_p = p;
        *size_p = size;
    }
    return (int)r;
}

/* ---- streams and events ------------------------------------------------------- */

static int rgpu_cudrv_stream_create(rgpu_cu_ctx_t *c, uint32_t flags, int32_t priority,
                                    void **stream_p)
{
    CUstream st;
    CUresult r = RGPU_CUDRV_ENTER(c);

    if (!r)
        r = c->dev->api.cuStreamCreateWithPriority(&st, flags, priority);
    if (!r)
        *stream_p = st;
    return (int)r;
}

static int rgpu_cudrv_stream_destroy(rgpu_cu_ctx_t *c, void *stream)
{
    CUresult r = RGPU_CUDRV_ENTER(c);

    return (int)(r ? r : c->dev->api.cuStreamDestroy(stream));
}

static int rgpu_cudrv_stream_sync(rgpu_cu_ctx_t *c, void *stream)
{
    CUresult r = RGPU_CUDRV_ENTER(c);

    return (int)(r ? r : c->dev->api.cuStreamSynchronize(stream));
}

static int rgpu_cudrv_stream_query(rgpu_cu_ctx_t *c, void *stream)
{
    CUresult r = RGPU_CUDRV_ENTER(c);

    return (int)(r ? r : c->dev->api.cuStreamQuery(stream));
}

static int rgpu_cudrv_stream_wait_event(rgpu_cu_ctx_t *c, void *stream, void *event,
                                        uint32_t flags)
{
    CUresult r = RGPU_CUDRV_ENTER(c);

    return (int)(r ? r : c->dev->api.cuStreamWaitEvent(stream, event, flags));
}

static int rgpu_cudrv_event_create(rgpu_cu_ctx_t *c, uint32_t flags, void **event_p)
{
    CUevent ev;
    CUresult r = RGPU_CUDRV_ENTER(c);

    /* An interprocess event would be a handle into this server's process:
     * never for a client. */
    flags &= ~(uint32_t)CU_EVENT_INTERPROCESS;
    if (!r)
        r = c->dev->api.cuEventCreate(&ev, flags);
    if (!r)
        *event_p = ev;
    return (int)r;
}

static int rgpu_cudrv_event_destroy(rgpu_cu_ctx_t *c, void *event)
{
    CUresult r = RGPU_CUDRV_ENTER(c);

    return (int)(r ? r : c->dev->api.cuEventDestroy(event));
}

static int rgpu_cudrv_event_record(rgpu_cu_ctx_t *c, void *event, void *stream, uint32_t flags)
{
    CUresult r = RGPU_CUDRV_ENTER(c);

    return (int)(r ? r : c->dev->api.cuEventRecordWithFlags(event, stream, flags));
}

static int rgpu_cudrv_event_sync(rgpu_cu_ctx_t *c, void *event)
{
    CUresult r = RGPU_CUDRV_ENTER(c);

    return (int)(r ? r : c->dev->api.cuEventSynchronize(event));
}

static int rgpu_cudrv_event_query(rgpu_cu_ctx_t *c, void *event)
{
    CUresult r = RGPU_CUDRV_ENTER(c);

    return (int)(r ? r : c->dev->api.cuEventQuery(event));
}

static int rgpu_cudrv_event_elapsed(rgpu_cu_ctx_t *c, void *start, void *end, float *ms_p)
{
    CUresult r = RGPU_CUDRV_ENTER(c);

    return (int)(r ? r : c->dev->api.cuEventElapsedTime(ms_p, start, end));
}

/* ---- copies -------------------------------------------------------------------- */

/* A 2D copy of rows between pinned host memory (packed, width apart) and
 * device memory, on stream. */
static CUresult rgpu_cudrv_copy_rows(rgpu_cu_ctx_t *c, void *stream, int to_device, void *host,
                                     uint64_t dev_addr, uint64_t dev_pitch, uint64_t width,
                                     uint64_t rows)
{
    CUDA_MEMCPY2D m;

    memset(&m, 0, sizeof(m));
    m.WidthInBytes = width;
    m.Height = rows;
    if (to_device) {
        m.srcMemoryType = CU_MEMORYTYPE_HOST;
        m.srcHost = host;
        m.srcPitch = width;
        m.dstMemoryType = CU_MEMORYTYPE_DEVICE;
        m.dstDevice = dev_addr;
        m.dstPitch = dev_pitch;
    } else {
        m.srcMemoryType = CU_MEMORYTYPE_DEVICE;
        m.srcDevice = dev_addr;
        m.srcPitch = dev_pitch;
        m.dstMemoryType = CU_MEMORYTYPE_HOST;
        m.dstHost = host;
        m.dstPitch = width;
    }
    return c->dev->api.cuMemcpy2DAsync(&m, stream);
}

/* The pieces a rectangle travels in: whole rows per chunk when a row fits,
 * else pieces of one row. piece i covers rows [row, row + rows) at byte
 * offset off of its row, len bytes per row. Returns 0 past the end. */
typedef struct {
    uint64_t row, rows, off, len;
} rgpu_cudrv_piece_t;

static int rgpu_cudrv_next_piece(const rgpu_cu_rect_t *r, size_t chunk, rgpu_cudrv_piece_t *p)
{
    if (r->width <= chunk) {
        uint64_t per = chunk / r->width;

        if (p->len) {
            p->row += p->rows;
        }
        if (p->row >= r->height)
            return 0;
        p->rows = r->height - p->row < per ? r->height - p->row : per;
        p->off = 0;
        p->len = r->width;
        return 1;
    }
    if (p->len) {
        p->off += p->len;
        if (p->off >= r->width) {
            p->off = 0;
            p->row++;
        }
    }
    if (p->row >= r->height)
        return 0;
    p->rows = 1;
    p->len = r->width - p->off < chunk ? r->width - p->off : chunk;
    return 1;
}

/* Copies one piece between a staging buffer and the device. */
static CUresult rgpu_cudrv_copy_piece(rgpu_cu_ctx_t *c, void *stream, int to_device, void *buf,
                                      const rgpu_cu_rect_t *r, const rgpu_cudrv_piece_t *p)
{
    uint64_t addr = r->addr + p->row * r->pitch + p->off;

    if (p->rows == 1)
        return to_device ? c->dev->api.cuMemcpyHtoDAsync(addr, buf, p->len, stream)
                         : c->dev->api.cuMemcpyDtoHAsync(buf, addr, p->len, stream);
    return rgpu_cudrv_copy_rows(c, stream, to_device, buf, addr, r->pitch, p->len, p->rows);
}

static int rgpu_cudrv_copy_h2d(rgpu_cu_ctx_t *c, void *stream, const rgpu_cu_rect_t *dst,
                               rgpu_cu_source_fn source, void *arg, rgpu_status_t *link_p)
{
    rgpu_cudrv_piece_t p = {0};
    CUresult r = RGPU_CUDRV_ENTER(c);

    if (!r)
        r = (CUresult)rgpu_cudrv_stage(c);
    while (!r && rgpu_cudrv_next_piece(dst, c->dev->chunk, &p)) {
        rgpu_cudrv_slot_t *slot = &c->h2d[c->next_h2d++ % RGPU_CUDRV_H2D_SLOTS];

        /* The slot's previous copy must have left it. */
        if (slot->busy) {
            r = c->dev->api.cuEventSynchronize(slot->done);
            slot->busy = 0;
            if (r)
                break;
        }
        *link_p = source(arg, slot->buf, p.len * p.rows);
        if (*link_p != RGPU_OK)
            return CUDA_ERROR_UNKNOWN;
        r = rgpu_cudrv_copy_piece(c, stream, 1, slot->buf, dst, &p);
        if (!r)
            r = c->dev->api.cuEventRecord(slot->done, stream);
        if (!r)
            slot->busy = 1;
    }
    return (int)r;
}

static int rgpu_cudrv_copy_d2h(rgpu_cu_ctx_t *c, void *stream, const rgpu_cu_rect_t *src,
                               rgpu_cu_sink_fn sink, void *arg, rgpu_status_t *link_p)
{
    rgpu_cudrv_piece_t p = {0}, inflight[RGPU_CUDRV_D2H_SLOTS];
    int have[RGPU_CUDRV_D2H_SLOTS] = {0}, more;
    unsigned cur = 0;
    CUresult r = RGPU_CUDRV_ENTER(c);

    if (!r)
        r = (CUresult)rgpu_cudrv_stage(c);
    if (r)
        return (int)r;
    /* Keep one copy in flight while the previous chunk goes to the client. */
    more = rgpu_cudrv_next_piece(src, c->dev->chunk, &p);
    if (more) {
        r = rgpu_cudrv_copy_piece(c, stream, 0, c->d2h[0].buf, src, &p);
        if (!r)
            r = c->dev->api.cuEventRecord(c->d2h[0].done, stream);
        inflight[0] = p;
        have[0] = 1;
    }
    while (!r && have[cur % RGPU_CUDRV_D2H_SLOTS]) {
        unsigned now = cur % RGPU_CUDRV_D2H_SLOTS, next = (cur + 1) % RGPU_CUDRV_D2H_SLOTS;

        more = rgpu_cudrv_next_piece(src, c->dev->chunk, &p);
        if (more) {
            r = rgpu_cudrv_copy_piece(c, stream, 0, c->d2h[next].buf, src, &p);
            if (!r)
                r = c->dev->api.cuEventRecord(c->d2h[next].done, stream);
            inflight[next] = p;
            have[next] = 1;
        }
        if (!r)
            r = c->dev->api.cuEventSynchronize(c->d2h[now].done);
        if (r)
            break;
        *link_p = sink(arg, c->d2h[now].buf, inflight[now].len * inflight[now].rows);
        have[now] = 0;
        if (*link_p != RGPU_OK) {
            c->dev->api.cuCtxSynchronize();     /* the other slot's copy */
            return CUDA_ERROR_UNKNOWN;
        }
        cur++;
    }
    if (r)
        c->dev->api.cuStreamSynchronize(stream);    /* no copy may still write staging */
    return (int)r;
}

static int rgpu_cudrv_copy_d2d(rgpu_cu_ctx_t *c, void *stream, const rgpu_cu_rect_t *dst,
                               const rgpu_cu_rect_t *src)
{
    CUDA_MEMCPY2D m;
    CUresult r = RGPU_CUDRV_ENTER(c);

    if (r)
        return (int)r;
    if (dst->height == 1)
        return (int)c->dev->api.cuMemcpyDtoDAsync(dst->addr, src->addr, dst->width, stream);
    memset(&m, 0, sizeof(m));
    m.srcMemoryType = m.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    m.srcDevice = src->addr;
    m.srcPitch = src->pitch;
    m.dstDevice = dst->addr;
    m.dstPitch = dst->pitch;
    m.WidthInBytes = dst->width;
    m.Height = dst->height;
    return (int)c->dev->api.cuMemcpy2DAsync(&m, stream);
}

static int rgpu_cudrv_memset(rgpu_cu_ctx_t *c, void *stream, const rgpu_cu_rect_t *dst,
                             uint32_t value, uint32_t element_size)
{
    CUresult r = RGPU_CUDRV_ENTER(c);

    if (r)
        return (int)r;
    if (dst->height == 1) {
        switch (element_size) {
        case 1: return (int)c->dev->api.cuMemsetD8Async(dst->addr, (unsigned char)value,
                                                        dst->width, stream);
        case 2: return (int)c->dev->api.cuMemsetD16Async(dst->addr, (unsigned short)value,
                                                         dst->width, stream);
        default: return (int)c->dev->api.cuMemsetD32Async(dst->addr, value, dst->width, stream);
        }
    }
    switch (element_size) {
    case 1: return (int)c->dev->api.cuMemsetD2D8Async(dst->addr, dst->pitch, (unsigned char)value,
                                                      dst->width, dst->height, stream);
    case 2: return (int)c->dev->api.cuMemsetD2D16Async(dst->addr, dst->pitch,
                                                       (unsigned short)value, dst->width,
                                                       dst->height, stream);
    default: return (int)c->dev->api.cuMemsetD2D32Async(dst->addr, dst->pitch, value, dst->width,
                                                        dst->height, stream);
    }
}

static int rgpu_cudrv_launch(rgpu_cu_ctx_t *c, void *fn, const uint32_t grid[3],
                             const uint32_t block[3], uint32_t shared_mem, void *stream,
                             const void *params, size_t params_len)
{
    size_t size = params_len;
    void *extra[] = {CU_LAUNCH_PARAM_BUFFER_POINTER, (void *)params, CU_LAUNCH_PARAM_BUFFER_SIZE,
                     &size, CU_LAUNCH_PARAM_END};
    CUresult r = RGPU_CUDRV_ENTER(c);

    if (r)
        return (int)r;
    return (int)c->dev->api.cuLaunchKernel(fn, grid[0], grid[1], grid[2], block[0], block[1],
                                           block[2], shared_mem, stream, NULL,
                                           params_len ? extra : NULL);
}

const rgpu_cu_device_ops_t rgpu_cu_device_driver = {
    .name = "cuda",
    .platform_name = "CUDA",
    .open = rgpu_cudrv_open,
    .close = rgpu_cudrv_close,
    .count = rgpu_cudrv_count,
    .driver_version = rgpu_cudrv_driver_version,
    .device_params = rgpu_cudrv_device_params,
    .device_name = rgpu_cudrv_device_name,
    .ctx_create = rgpu_cudrv_ctx_create,
    .ctx_destroy = rgpu_cudrv_ctx_destroy,
    .ctx_sync = rgpu_cudrv_ctx_sync,
    .mem_alloc = rgpu_cudrv_mem_alloc,
    .mem_free = rgpu_cudrv_mem_free,
    .mem_info = rgpu_cudrv_mem_info,
    .module_load = rgpu_cudrv_module_load,
    .module_unload = rgpu_cudrv_module_unload,
    .function_get = rgpu_cudrv_function_get,
    .func_info = rgpu_cudrv_func_info,
    .func_set_attr = rgpu_cudrv_func_set_attr,
    .occupancy = rgpu_cudrv_occupancy,
    .global_get = rgpu_cudrv_global_get,
    .stream_create = rgpu_cudrv_stream_create,
    .stream_destroy = rgpu_cudrv_stream_destroy,
    .stream_sync = rgpu_cudrv_stream_sync,
    .stream_query = rgpu_cudrv_stream_query,
    .stream_wait_event = rgpu_cudrv_stream_wait_event,
    .event_create = rgpu_cudrv_event_create,
    .event_destroy = rgpu_cudrv_event_destroy,
    .event_record = rgpu_cudrv_event_record,
    .event_sync = rgpu_cudrv_event_sync,
    .event_query = rgpu_cudrv_event_query,
    .event_elapsed = rgpu_cudrv_event_elapsed,
    .copy_h2d = rgpu_cudrv_copy_h2d,
    .copy_d2h = rgpu_cudrv_copy_d2h,
    .copy_d2d = rgpu_cudrv_copy_d2d,
    .memset = rgpu_cudrv_memset,
    .launch = rgpu_cudrv_launch,
};

/* ---- the backend ------------------------------------------------------------ */

static char rgpu_cudrv_why[256];

static rgpu_status_t rgpu_cudrv_backend_open(const rgpu_server_config_t *config,
                                             rgpu_backend_t **backend_p)
{
    return rgpu__cu_backend_open(&rgpu_cu_device_driver, config, backend_p, rgpu_cudrv_why,
                                 sizeof(rgpu_cudrv_why));
}

static const char *rgpu_cudrv_open_failure(void)
{
    return rgpu_cudrv_why;
}

const rgpu_backend_ops_t rgpu_backend_cuda_ops =
    RGPU_CU_BACKEND_OPS("cuda", &rgpu_cu_device_driver, rgpu_cudrv_backend_open,
                        rgpu_cudrv_open_failure);
