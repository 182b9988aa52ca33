/*
 * Modules and kernels: what nvcc's generated code registers at program start
 * (__cudaRegisterFatBinary, __cudaRegisterFunction, __cudaRegisterVar), and
 * launches (<<<>>> through __cudaPushCallConfiguration,
 * __cudaPopCallConfiguration, __cudaGetKernel and __cudaLaunchKernel, or
 * cudaLaunchKernel).
 *
 * Registration only records: nothing is sent until a kernel or variable is
 * used on a device. Then, once per module and device, the fatbinary goes to
 * the server: first its SHA-256 alone, and the bytes only if the server has
 * not loaded the same image before (another process of the same program).
 * Once per kernel and device the kernel is named under an id. A launch then
 * is one asynchronous message: the kernel's id, the grid, and the parameter
 * buffer packed here with the layout read from the fatbinary (fatbin.h), or
 * asked from the server once when the fatbinary had none.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudart.h"

/* nvcc's registration entry points are declared only for C++ (crt/host_runtime.h). */
RGPU_CUDA_EXPORT void **__cudaRegisterFatBinary(void *fatCubin);
RGPU_CUDA_EXPORT void __cudaRegisterFatBinaryEnd(void **fatCubinHandle);
RGPU_CUDA_EXPORT void __cudaUnregisterFatBinary(void **fatCubinHandle);
RGPU_CUDA_EXPORT void __cudaRegisterFunction(void **fatCubinHandle, const char *hostFun, char *deviceFun,
                                             const char *deviceName, int thread_limit, uint3 *tid, uint3 *bid,
                                             dim3 *bDim, dim3 *gDim, int *wSize);
RGPU_CUDA_EXPORT void __cudaRegisterVar(void **fatCubinHandle, char *hostVar, char *deviceAddress,
                                        const char *deviceName, int ext, size_t size, int constant, int global);
RGPU_CUDA_EXPORT char __cudaInitModule(void **fatCubinHandle);
RGPU_CUDA_EXPORT unsigned __cudaPushCallConfiguration(dim3 gridDim, dim3 blockDim, size_t sharedMem,
                                                      struct CUstream_st *stream);
RGPU_CUDA_EXPORT cudaError_t __cudaPopCallConfiguration(dim3 *gridDim, dim3 *blockDim, size_t *sharedMem,
                                                        void *stream);
RGPU_CUDA_EXPORT cudaError_t __cudaGetKernel(cudaKernel_t *kernel, const void *hostFun);
RGPU_CUDA_EXPORT cudaError_t __cudaLaunchKernel(cudaKernel_t kernel, dim3 gridDim, dim3 blockDim, void **args,
                                                size_t sharedMem, cudaStream_t stream);
RGPU_CUDA_EXPORT cudaError_t __cudaLaunchKernel_ptsz(cudaKernel_t kernel, dim3 gridDim, dim3 blockDim,
                                                     void **args, size_t sharedMem, cudaStream_t stream);
RGPU_CUDA_EXPORT cudaError_t cudaLaunchKernel_ptsz(const void *func, dim3 gridDim, dim3 blockDim, void **args,
                                                   size_t sharedMem, cudaStream_t stream);
RGPU_CUDA_EXPORT cudaError_t cudaMemcpyToSymbol_ptds(const void *symbol, const void *src, size_t count,
                                                     size_t offset, enum cudaMemcpyKind kind);
RGPU_CUDA_EXPORT cudaError_t cudaMemcpyFromSymbol_ptds(void *dst, const void *symbol, size_t count,
                                                       size_t offset, enum cudaMemcpyKind kind);

/* Kernels by host stub address. */
#define RGPU_CU_KERNEL_BUCKETS 1024
/* A parameter buffer up to this size is packed on the stack. */
#define RGPU_CU_PARAMS_ON_STACK 4096

typedef struct rgpu_cu_var {
    const void *host_var;
    char *name;
    size_t size;
    uint64_t dptr[RGPU_CU_MAX_DEVICES];  /* 0: not looked up on that device */
    struct rgpu_cu_var *next;
} rgpu_cu_var_t;

struct rgpu_cu_module {
    const uint8_t *image;               /* in the program's memory */
    size_t size;
    pthread_mutex_t lock;
    int parsed;                         /* 0 not yet, 1 done, -1 failed */
    rgpu_fatbin_t *fatbin;
    uint8_t sha256[crypto_hash_sha256_BYTES];
    int hashed;
    uint64_t ids[RGPU_CU_MAX_DEVICES];  /* the module's id per device, 0: not loaded */
    cudaError_t load_error[RGPU_CU_MAX_DEVICES];
    rgpu_cu_var_t *vars;
    struct rgpu_cu_module *next;
};

static pthread_mutex_t rgpu_cu_reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct CUkern_st *rgpu_cu_kernels[RGPU_CU_KERNEL_BUCKETS];
static rgpu_cu_module_t *rgpu_cu_modules;

typedef struct rgpu_cu_call_config {
    dim3 grid, block;
    size_t shared;
    cudaStream_t stream;
} rgpu_cu_call_config_t;

static _Thread_local rgpu_cu_call_config_t rgpu_cu_configs[RGPU_CU_MAX_CALL_CONFIGS];
static _Thread_local unsigned rgpu_cu_num_configs;

static size_t rgpu_cu_bucket(const void *p)
{
    return ((uintptr_t)p >> 4) % RGPU_CU_KERNEL_BUCKETS;
}

/* ---- registration ---- */

void **__cudaRegisterFatBinary(void *fatCubin)
{
    rgpu_cu_module_t *m = calloc(1, sizeof(*m));
    char why[256];

    if (!m) {
        fprintf(stderr, "rgpu: out of memory registering a CUDA module\n");
        return NULL;
    }
    pthread_mutex_init(&m->lock, NULL);
    if (rgpu_fatbin_locate(fatCubin, &m->image, &m->size, why, sizeof(why)) != 0) {
        /* Said when the module is used, not at every program start. */
        m->parsed = -1;
        m->image = NULL;
    }
    pthread_mutex_lock(&rgpu_cu_reg_lock);
    m->next = rgpu_cu_modules;
    rgpu_cu_modules = m;
    pthread_mutex_unlock(&rgpu_cu_reg_lock);
    return (void **)m;
}

void __cudaRegisterFatBinaryEnd(void **fatCubinHandle)
{
}

void __cudaUnregisterFatBinary(void **fatCubinHandle)
{
    /* At exit. The module stays reachable for threads still running; the
     * server frees what the session loaded when the connection ends. */
}

char __cudaInitModule(void **fatCubinHandle)
{
    return 1;
}

void __cudaRegisterFunction(void **fatCubinHandle, const char *hostFun, char *deviceFun, const char *deviceName,
                            int thread_limit, uint3 *tid, uint3 *bid, dim3 *bDim, dim3 *gDim, int *wSize)
{
    struct CUkern_st *k = calloc(1, sizeof(*k));
    size_t b;

    if (!k || !(k->name = strdup(deviceName ? deviceName : deviceFun))) {
        free(k);
        fprintf(stderr, "rgpu: out of memory registering kernel %s\n", deviceName);
        return;
    }
    k->magic = RGPU_CU_MAGIC_KERNEL;
    k->module = (rgpu_cu_module_t *)fatCubinHandle;
    k->host_fun = hostFun;
    b = rgpu_cu_bucket(hostFun);
    pthread_mutex_lock(&rgpu_cu_reg_lock);
    k->next = rgpu_cu_kernels[b];
    rgpu_cu_kernels[b] = k;
    pthread_mutex_unlock(&rgpu_cu_reg_lock);
}

void __cudaRegisterVar(void **fatCubinHandle, char *hostVar, char *deviceAddress, const char *deviceName, int ext,
                       size_t size, int constant, int global)
{
    rgpu_cu_module_t *m = (rgpu_cu_module_t *)fatCubinHandle;
    rgpu_cu_var_t *v = calloc(1, sizeof(*v));

    if (!m || !v || !(v->name = strdup(deviceName ? deviceName : deviceAddress))) {
        free(v);
        fprintf(stderr, "rgpu: out of memory registering device variable %s\n", deviceName);
        return;
    }
    v->host_var = hostVar;
    v->size = size;
    pthread_mutex_lock(&rgpu_cu_reg_lock);
    v->next = m->vars;
    m->vars = v;
    pthread_mutex_unlock(&rgpu_cu_reg_lock);
}

struct CUkern_st *rgpu__cu_kernel_by_host(const void *host_fun)
{
    struct CUkern_st *k;

    pthread_mutex_lock(&rgpu_cu_reg_lock);
    for (k = rgpu_cu_kernels[rgpu_cu_bucket(host_fun)]; k && k->host_fun != host_fun; k = k->next)
        ;
    pthread_mutex_unlock(&rgpu_cu_reg_lock);
    return k;
}

static rgpu_cu_var_t *rgpu_cu_var_by_host(const void *host_var, rgpu_cu_module_t **m_p)
{
    rgpu_cu_var_t *v = NULL;

    pthread_mutex_lock(&rgpu_cu_reg_lock);
    for (rgpu_cu_module_t *m = rgpu_cu_modules; m && !v; m = m->next) {
        for (v = m->vars; v && v->host_var != host_var; v = v->next)
            ;
        if (v)
            *m_p = m;
    }
    pthread_mutex_unlock(&rgpu_cu_reg_lock);
    return v;
}

/* ---- loading on a device ---- */

/* Reads the module's fatbinary once. Called with m->lock held. */
static void rgpu_cu_module_parse(rgpu_cu_module_t *m)
{
    char why[256];

    if (m->parsed)
        return;
    if (rgpu_fatbin_parse(m->image, m->size, &m->fatbin, why, sizeof(why)) != 0) {
        fprintf(stderr, "rgpu: a CUDA module of this program cannot be read: %s\n", why);
        m->parsed = -1;
        return;
    }
    m->parsed = 1;
}

static cudaError_t rgpu_cu_module_reply(rgpu_cu_device_t *d, Rgpu__MsgType type, const ProtobufCMessage *msg,
                                        const void *bulk, uint64_t bulk_len, int *need_data_p)
{
    Rgpu__CuModuleReply *reply;
    rgpu_call_t call = {0};
    cudaError_t err;

    err = rgpu__cu_call(d, type, msg, bulk, bulk_len, RGPU__MSG_TYPE__MSG_CU_MODULE_REPLY,
                        &rgpu__cu_module_reply__descriptor, &call, (ProtobufCMessage **)&reply);
    if (err != cudaSuccess)
        return err;
    err = rgpu__cu_from_cu(reply->cu_error);
    *need_data_p = reply->need_data;
    if (err != cudaSuccess)
        fprintf(stderr, "rgpu: server %s cannot load this program's CUDA module: %s%s%s\n", d->server->addr,
                cudaGetErrorString(err), reply->log[0] ? ": " : "", reply->log);
    rgpu__cu_module_reply__free_unpacked(reply, NULL);
    rgpu_call_cleanup(&call);
    return err;
}

/* Loads m on device dev once. Called with m->lock held. */
static cudaError_t rgpu_cu_module_load(rgpu_cu_module_t *m, rgpu_cu_device_t *d, int dev)
{
    Rgpu__CuModuleLoad req = RGPU__CU_MODULE_LOAD__INIT;
    uint64_t id;
    int need_data = 0;
    cudaError_t err;

    if (m->ids[dev])
        return cudaSuccess;
    if (m->load_error[dev])
        return m->load_error[dev];
    if (!m->image) {
        fprintf(stderr, "rgpu: a CUDA module of this program is not an nvcc fatbinary rgpu can read "
                        "(relocatable device code, -rdc, is not supported yet)\n");
        return m->load_error[dev] = cudaErrorInvalidKernelImage;
    }
    if (!m->hashed) {
        if (sodium_init() < 0)
            return cudaErrorInitializationError;
        crypto_hash_sha256(m->sha256, m->image, m->size);
        m->hashed = 1;
    }
    id = rgpu__cu_new_id();
    req.id = id;
    req.device = d->index;
    req.sha256.data = m->sha256;
    req.sha256.len = sizeof(m->sha256);
    req.size = m->size;
    err = rgpu_cu_module_reply(d, RGPU__MSG_TYPE__MSG_CU_MODULE_LOAD, &req.base, NULL, 0, &need_data);
    if (err == cudaSuccess && need_data) {
        Rgpu__CuModuleData data = RGPU__CU_MODULE_DATA__INIT;

        data.id = id;
        data.device = d->index;
        data.size = m->size;
        err = rgpu_cu_module_reply(d, RGPU__MSG_TYPE__MSG_CU_MODULE_DATA, &data.base, m->image, m->size, &need_data);
    }
    if (err != cudaSuccess) {
        if (err != cudaErrorDevicesUnavailable)
            m->load_error[dev] = err;
        return err;
    }
    m->ids[dev] = id;
    return cudaSuccess;
}

/* The layout the server reads from the loaded function (PTX-only images
 * whose PTX this library could not read). Called with m->lock held. */
static void rgpu_cu_kernel_server_layout(struct CUkern_st *k, rgpu_cu_device_t *d)
{
    Rgpu__CuFuncInfo req = RGPU__CU_FUNC_INFO__INIT;
    Rgpu__CuFuncInfoReply *reply;
    rgpu_call_t call = {0};
    rgpu_fatbin_kernel_t *l = &k->server_layout;
    uint32_t bytes = 0;

    req.function = k->ids[d - rgpu__cu.devices];
    req.device = d->index;
    if (rgpu__cu_call(d, RGPU__MSG_TYPE__MSG_CU_FUNC_INFO, &req.base, NULL, 0,
                      RGPU__MSG_TYPE__MSG_CU_FUNC_INFO_REPLY, &rgpu__cu_func_info_reply__descriptor, &call,
                      (ProtobufCMessage **)&reply) != cudaSuccess)
        return;
    if (reply->cu_error == 0 && reply->n_param_offsets == reply->n_param_sizes &&
        reply->n_param_offsets <= RGPU_FATBIN_MAX_PARAMS) {
        uint32_t n = (uint32_t)reply->n_param_offsets;
        int ok = 1;

        for (uint32_t i = 0; i < n && ok; i++) {
            uint64_t end = (uint64_t)reply->param_offsets[i] + reply->param_sizes[i];

            ok = reply->param_sizes[i] && end <= RGPU_FATBIN_MAX_PARAM_BYTES;
            if (ok && end > bytes)
                bytes = (uint32_t)end;
        }
        l->offsets = ok && n ? malloc(n * sizeof(uint32_t)) : NULL;
        l->sizes = ok && n ? malloc(n * sizeof(uint32_t)) : NULL;
        if (ok && (!n || (l->offsets && l->sizes))) {
            for (uint32_t i = 0; i < n; i++) {
                l->offsets[i] = reply->param_offsets[i];
                l->sizes[i] = reply->param_sizes[i];
            }
            l->num_params = n;
            l->param_bytes = bytes;
            l->name = k->name;
            k->layout = l;
        } else {
            free(l->offsets);
            free(l->sizes);
            l->offsets = l->sizes = NULL;
        }
    }
    rgpu__cu_func_info_reply__free_unpacked(reply, NULL);
    rgpu_call_cleanup(&call);
}

/* Makes kernel k usable on device dev: its module loaded, its id named, its
 * parameter layout known. */
static cudaError_t rgpu_cu_kernel_ready(struct CUkern_st *k, rgpu_cu_device_t *d, int dev)
{
    rgpu_cu_module_t *m = k->module;
    cudaError_t err = cudaSuccess;

    if (!m)
        return cudaErrorInvalidDeviceFunction;
    pthread_mutex_lock(&m->lock);
    if ((err = rgpu_cu_module_load(m, d, dev)) != cudaSuccess)
        goto out_unlock;
    if (!k->ids[dev]) {
        Rgpu__CuFunction req = RGPU__CU_FUNCTION__INIT;
        uint64_t id = rgpu__cu_new_id();

        req.id = id;
        req.module = m->ids[dev];
        req.name = k->name;
        if ((err = rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_FUNCTION, &req.base, NULL, 0)) != cudaSuccess)
            goto out_unlock;
        k->ids[dev] = id;
    }
    if (!k->layout_state) {
        rgpu_cu_module_parse(m);
        k->layout = m->parsed == 1 ? rgpu_fatbin_find(m->fatbin, k->name) : NULL;
        if (!k->layout)
            rgpu_cu_kernel_server_layout(k, d);
        k->layout_state = k->layout ? 1 : -1;
        if (!k->layout)
            fprintf(stderr, "rgpu: the parameters of kernel %s are known neither from the program's "
                            "fatbinary nor from the server; it cannot be launched\n", k->name);
    }
    if (k->layout_state < 0)
        err = cudaErrorInvalidDeviceFunction;
out_unlock:
    pthread_mutex_unlock(&m->lock);
    return err;
}

/* ---- launches ---- */

unsigned __cudaPushCallConfiguration(dim3 gridDim, dim3 blockDim, size_t sharedMem, struct CUstream_st *stream)
{
    rgpu_cu_call_config_t *c;

    if (rgpu_cu_num_configs == RGPU_CU_MAX_CALL_CONFIGS)
        return 1;
    c = &rgpu_cu_configs[rgpu_cu_num_configs++];
    c->grid = gridDim;
    c->block = blockDim;
    c->shared = sharedMem;
    c->stream = stream;
    return 0;
}

cudaError_t __cudaPopCallConfiguration(dim3 *gridDim, dim3 *blockDim, size_t *sharedMem, void *stream)
{
    rgpu_cu_call_config_t *c;

    if (!rgpu_cu_num_configs)
        return rgpu__cu_fail(cudaErrorMissingConfiguration);
    c = &rgpu_cu_configs[--rgpu_cu_num_configs];
    *gridDim = c->grid;
    *blockDim = c->block;
    *sharedMem = c->shared;
    memcpy(stream, &c->stream, sizeof(c->stream));
    return cudaSuccess;
}

cudaError_t __cudaGetKernel(cudaKernel_t *kernel, const void *hostFun)
{
    struct CUkern_st *k;

    if (!kernel)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if (!(k = rgpu__cu_kernel_by_host(hostFun)))
        return rgpu__cu_fail(cudaErrorInvalidDeviceFunction);
    *kernel = (cudaKernel_t)k;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaGetKernel(cudaKernel_t *kernelPtr, const void *entryFuncAddr)
{
    return __cudaGetKernel(kernelPtr, entryFuncAddr);
}

/* The launch limits of the device, checked here as the driver would. */
static int rgpu_cu_config_ok(const rgpu_cu_device_t *d, dim3 g, dim3 b, size_t shared)
{
    const struct cudaDeviceProp *p = &d->prop;
    uint64_t threads = (uint64_t)b.x * b.y * b.z;
    size_t smem_max = p->sharedMemPerBlockOptin > p->sharedMemPerBlock ? p->sharedMemPerBlockOptin
                                                                        : p->sharedMemPerBlock;

    return g.x && g.y && g.z && b.x && b.y && b.z && threads <= (uint64_t)p->maxThreadsPerBlock &&
           b.x <= (unsigned)p->maxThreadsDim[0] && b.y <= (unsigned)p->maxThreadsDim[1] &&
           b.z <= (unsigned)p->maxThreadsDim[2] && g.x <= (unsigned)p->maxGridSize[0] &&
           g.y <= (unsigned)p->maxGridSize[1] && g.z <= (unsigned)p->maxGridSize[2] && shared <= smem_max;
}

static cudaError_t rgpu_cu_launch(struct CUkern_st *k, dim3 grid, dim3 block, void **args, size_t shared,
                                  cudaStream_t stream, int per_thread)
{
    Rgpu__CuLaunch req = RGPU__CU_LAUNCH__INIT;
    uint8_t stack[RGPU_CU_PARAMS_ON_STACK];
    uint8_t *buf = stack;
    rgpu_cu_device_t *d;
    uint64_t sid;
    int blocking, dev;
    long len;
    cudaError_t err;

    if (!k || k->magic != RGPU_CU_MAGIC_KERNEL)
        return rgpu__cu_fail(cudaErrorInvalidDeviceFunction);
    if ((err = rgpu__cu_stream_resolve(stream, per_thread, &d, &sid, &blocking)) != cudaSuccess)
        return rgpu__cu_fail(err);
    dev = (int)(d - rgpu__cu.devices);
    if (!rgpu_cu_config_ok(d, grid, block, shared))
        return rgpu__cu_fail(cudaErrorInvalidConfiguration);
    if ((err = rgpu_cu_kernel_ready(k, d, dev)) != cudaSuccess)
        return rgpu__cu_fail(err);
    if (k->layout->param_bytes > sizeof(stack) && !(buf = malloc(k->layout->param_bytes)))
        return rgpu__cu_fail(cudaErrorMemoryAllocation);
    if ((len = rgpu_fatbin_pack_params(k->layout, args, buf, k->layout->param_bytes)) < 0) {
        err = cudaErrorInvalidValue;
        goto out;
    }
    req.function = k->ids[dev];
    req.device = d->index;
    req.stream = sid;
    req.grid_x = grid.x;
    req.grid_y = grid.y;
    req.grid_z = grid.z;
    req.block_x = block.x;
    req.block_y = block.y;
    req.block_z = block.z;
    req.shared_mem = (uint32_t)shared;
    req.params.data = buf;
    req.params.len = (size_t)len;
    err = rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_LAUNCH, &req.base, NULL, 0);
out:
    if (buf != stack)
        free(buf);
    return rgpu__cu_fail(err);
}

cudaError_t __cudaLaunchKernel(cudaKernel_t kernel, dim3 gridDim, dim3 blockDim, void **args, size_t sharedMem,
                               cudaStream_t stream)
{
    return rgpu_cu_launch((struct CUkern_st *)kernel, gridDim, blockDim, args, sharedMem, stream, 0);
}

cudaError_t __cudaLaunchKernel_ptsz(cudaKernel_t kernel, dim3 gridDim, dim3 blockDim, void **args,
                                    size_t sharedMem, cudaStream_t stream)
{
    return rgpu_cu_launch((struct CUkern_st *)kernel, gridDim, blockDim, args, sharedMem, stream, 1);
}

RGPU_CUDA_EXPORT cudaError_t cudaLaunchKernel(const void *func, dim3 gridDim, dim3 blockDim, void **args,
                                              size_t sharedMem, cudaStream_t stream)
{
    return rgpu_cu_launch(rgpu__cu_kernel_by_host(func), gridDim, blockDim, args, sharedMem, stream, 0);
}

cudaError_t cudaLaunchKernel_ptsz(const void *func, dim3 gridDim, dim3 blockDim, void **args, size_t sharedMem,
                                  cudaStream_t stream)
{
    return rgpu_cu_launch(rgpu__cu_kernel_by_host(func), gridDim, blockDim, args, sharedMem, stream, 1);
}

/* ---- function attributes and occupancy ---- */

/* A kernel from a host stub address or a cudaKernel_t (one of ours, looked
 * up in the registry rather than read through an unknown pointer). */
static struct CUkern_st *rgpu_cu_kernel_of(const void *func)
{
    struct CUkern_st *k = rgpu__cu_kernel_by_host(func);

    pthread_mutex_lock(&rgpu_cu_reg_lock);
    for (size_t b = 0; !k && func && b < RGPU_CU_KERNEL_BUCKETS; b++) {
        for (struct CUkern_st *i = rgpu_cu_kernels[b]; i && !k; i = i->next)
            k = i == func ? i : NULL;
    }
    pthread_mutex_unlock(&rgpu_cu_reg_lock);
    return k;
}

/* The kernel func names, made ready on the current device: its device and its function id
 * there, for the calls that ask the server about a kernel or set one of its attributes. */
static cudaError_t rgpu_cu_kernel_here(const void *func, rgpu_cu_device_t **d_p,
                                       uint64_t *function_p)
{
    struct CUkern_st *k = rgpu_cu_kernel_of(func);
    int dev = rgpu__cu_current();
    cudaError_t err;

    if (!k)
        return cudaErrorInvalidDeviceFunction;
    if (!(*d_p = rgpu__cu_device(dev, &err)) || (err = rgpu_cu_kernel_ready(k, *d_p, dev)) != cudaSuccess)
        return err;
    *function_p = k->ids[dev];
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaFuncGetAttributes(struct cudaFuncAttributes *attr, const void *func)
{
    Rgpu__CuFuncInfo req = RGPU__CU_FUNC_INFO__INIT;
    Rgpu__CuFuncInfoReply *reply;
    rgpu_call_t call = {0};
    rgpu_cu_device_t *d;
    cudaError_t err;

    if (!attr)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu_cu_kernel_here(func, &d, &req.function)) != cudaSuccess)
        return rgpu__cu_fail(err);
    req.device = d->index;
    err = rgpu__cu_call(d, RGPU__MSG_TYPE__MSG_CU_FUNC_INFO, &req.base, NULL, 0,
                        RGPU__MSG_TYPE__MSG_CU_FUNC_INFO_REPLY, &rgpu__cu_func_info_reply__descriptor, &call,
                        (ProtobufCMessage **)&reply);
    if (err != cudaSuccess)
        return rgpu__cu_fail(err);
    err = rgpu__cu_sync_result(d, reply->cu_error);
    if (err == cudaSuccess) {
        memset(attr, 0, sizeof(*attr));
        for (size_t i = 0; i < reply->n_attrs; i++) {
            int v = reply->attrs[i]->value;

            switch (reply->attrs[i]->attr) {
            case 0: attr->maxThreadsPerBlock = v; break;          /* CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK */
            case 1: attr->sharedSizeBytes = (size_t)v; break;     /* SHARED_SIZE_BYTES */
            case 2: attr->constSizeBytes = (size_t)v; break;      /* CONST_SIZE_BYTES */
            case 3: attr->localSizeBytes = (size_t)v; break;      /* LOCAL_SIZE_BYTES */
            case 4: attr->numRegs = v; break;                     /* NUM_REGS */
            case 5: attr->ptxVersion = v; break;                  /* PTX_VERSION */
            case 6: attr->binaryVersion = v; break;               /* BINARY_VERSION */
            case 7: attr->cacheModeCA = v; break;                 /* CACHE_MODE_CA */
            case 8: attr->maxDynamicSharedSizeBytes = v; break;   /* MAX_DYNAMIC_SHARED_SIZE_BYTES */
            case 9: attr->preferredShmemCarveout = v; break;      /* PREFERRED_SHARED_MEMORY_CARVEOUT */
            case 10: attr->clusterDimMustBeSet = v; break;
            case 11: attr->requiredClusterWidth = v; break;
            case 12: attr->requiredClusterHeight = v; break;
            case 13: attr->requiredClusterDepth = v; break;
            case 14: attr->clusterSchedulingPolicyPreference = v; break;
            case 15: attr->nonPortableClusterSizeAllowed = v; break;
            default: break;
            }
        }
    }
    rgpu__cu_func_info_reply__free_unpacked(reply, NULL);
    rgpu_call_cleanup(&call);
    return rgpu__cu_fail(err);
}

static cudaError_t rgpu_cu_func_set(const void *func, int attr, int value)
{
    Rgpu__CuFuncSetAttr req = RGPU__CU_FUNC_SET_ATTR__INIT;
    rgpu_cu_device_t *d;
    cudaError_t err;

    if ((err = rgpu_cu_kernel_here(func, &d, &req.function)) != cudaSuccess)
        return rgpu__cu_fail(err);
    req.device = d->index;
    req.attr = attr;
    req.value = value;
    return rgpu__cu_fail(rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_FUNC_SET_ATTR, &req.base, NULL, 0));
}

RGPU_CUDA_EXPORT cudaError_t cudaFuncSetAttribute(const void *func, enum cudaFuncAttribute attr, int value)
{
    /* cudaFuncAttribute numbers the settable attributes from 8, as
     * CUfunction_attribute does: they travel as they are. */
    if ((int)attr < cudaFuncAttributeMaxDynamicSharedMemorySize || (int)attr >= cudaFuncAttributeMax)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    return rgpu_cu_func_set(func, (int)attr, value);
}

RGPU_CUDA_EXPORT cudaError_t cudaFuncSetCacheConfig(const void *func, enum cudaFuncCache cacheConfig)
{
    return rgpu_cu_func_set(func, -1, (int)cacheConfig);
}

RGPU_CUDA_EXPORT cudaError_t cudaFuncGetName(const char **name, const void *func)
{
    struct CUkern_st *k = rgpu_cu_kernel_of(func);

    if (!name)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if (!k)
        return rgpu__cu_fail(cudaErrorInvalidDeviceFunction);
    *name = k->name;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *numBlocks,
                                                                                   const void *func, int blockSize,
                                                                                   size_t dynamicSMemSize,
                                                                                   unsigned int flags)
{
    Rgpu__CuOccupancy req = RGPU__CU_OCCUPANCY__INIT;
    Rgpu__CuOccupancyReply *reply;
    rgpu_call_t call = {0};
    rgpu_cu_device_t *d;
    cudaError_t err;

    if (!numBlocks || blockSize <= 0)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu_cu_kernel_here(func, &d, &req.function)) != cudaSuccess)
        return rgpu__cu_fail(err);
    req.device = d->index;
    req.block_size = (uint32_t)blockSize;
    req.dynamic_smem = dynamicSMemSize;
    req.flags = flags;
    err = rgpu__cu_call(d, RGPU__MSG_TYPE__MSG_CU_OCCUPANCY, &req.base, NULL, 0,
                        RGPU__MSG_TYPE__MSG_CU_OCCUPANCY_REPLY, &rgpu__cu_occupancy_reply__descriptor, &call,
                        (ProtobufCMessage **)&reply);
    if (err != cudaSuccess)
        return rgpu__cu_fail(err);
    err = rgpu__cu_sync_result(d, reply->cu_error);
    if (err == cudaSuccess)
        *numBlocks = (int)reply->num_blocks;
    rgpu__cu_occupancy_reply__free_unpacked(reply, NULL);
    rgpu_call_cleanup(&call);
    return rgpu__cu_fail(err);
}

RGPU_CUDA_EXPORT cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int *numBlocks, const void *func,
                                                                           int blockSize, size_t dynamicSMemSize)
{
    return cudaOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(numBlocks, func, blockSize, dynamicSMemSize,
                                                                  cudaOccupancyDefault);
}

/* ---- device variables ---- */

/* The device address and size of a __device__ or __constant__ variable on
 * the current device, asked once. */
static cudaError_t rgpu_cu_symbol(const void *symbol, uint64_t *dptr_p, size_t *size_p)
{
    Rgpu__CuGetGlobal req = RGPU__CU_GET_GLOBAL__INIT;
    Rgpu__CuGlobalReply *reply;
    rgpu_call_t call = {0};
    rgpu_cu_module_t *m = NULL;
    rgpu_cu_var_t *v = rgpu_cu_var_by_host(symbol, &m);
    int dev = rgpu__cu_current();
    rgpu_cu_device_t *d;
    cudaError_t err;

    if (!v)
        return cudaErrorInvalidSymbol;
    if (!(d = rgpu__cu_device(dev, &err)))
        return err;
    pthread_mutex_lock(&m->lock);
    if (v->dptr[dev])
        goto out_found;
    if ((err = rgpu_cu_module_load(m, d, dev)) != cudaSuccess)
        goto out_unlock;
    req.module = m->ids[dev];
    req.device = d->index;
    req.name = v->name;
    err = rgpu__cu_call(d, RGPU__MSG_TYPE__MSG_CU_GET_GLOBAL, &req.base, NULL, 0,
                        RGPU__MSG_TYPE__MSG_CU_GLOBAL_REPLY, &rgpu__cu_global_reply__descriptor, &call,
                        (ProtobufCMessage **)&reply);
    if (err != cudaSuccess)
        goto out_unlock;
    err = rgpu__cu_from_cu(reply->cu_error);
    if (err == cudaSuccess && (!reply->dptr || reply->size != v->size))
        err = cudaErrorInvalidSymbol;
    if (err == cudaSuccess) {
        /* Known to the allocation table, so copies may name it. It is never freed. */
        v->dptr[dev] = reply->dptr;
        err = rgpu__cu_mem_add_global(reply->dptr, v->size, dev);
    }
    rgpu__cu_global_reply__free_unpacked(reply, NULL);
    rgpu_call_cleanup(&call);
    if (err != cudaSuccess)
        goto out_unlock;
out_found:
    *dptr_p = v->dptr[dev];
    *size_p = v->size;
    err = cudaSuccess;
out_unlock:
    pthread_mutex_unlock(&m->lock);
    return err;
}

RGPU_CUDA_EXPORT cudaError_t cudaGetSymbolAddress(void **devPtr, const void *symbol)
{
    uint64_t dptr;
    size_t size;
    cudaError_t err;

    if (!devPtr)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu_cu_symbol(symbol, &dptr, &size)) != cudaSuccess)
        return rgpu__cu_fail(err);
    *devPtr = (void *)(uintptr_t)dptr;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaGetSymbolSize(size_t *size, const void *symbol)
{
    uint64_t dptr;
    cudaError_t err;

    if (!size)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu_cu_symbol(symbol, &dptr, size)) != cudaSuccess)
        return rgpu__cu_fail(err);
    return cudaSuccess;
}

static cudaError_t rgpu_cu_symbol_copy(void *host, const void *symbol, size_t count, size_t offset,
                                       enum cudaMemcpyKind kind, int to_symbol, cudaStream_t stream, int async,
                                       int per_thread)
{
    uint64_t dptr;
    size_t size;
    cudaError_t err;
    void *dev;

    if ((err = rgpu_cu_symbol(symbol, &dptr, &size)) != cudaSuccess)
        return rgpu__cu_fail(err);
    if (offset > size || count > size - offset)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((to_symbol && kind != cudaMemcpyHostToDevice && kind != cudaMemcpyDeviceToDevice &&
         kind != cudaMemcpyDefault) ||
        (!to_symbol && kind != cudaMemcpyDeviceToHost && kind != cudaMemcpyDeviceToDevice &&
         kind != cudaMemcpyDefault))
        return rgpu__cu_fail(cudaErrorInvalidMemcpyDirection);
    dev = (void *)(uintptr_t)(dptr + offset);
    if (async)
        return per_thread ? (to_symbol ? cudaMemcpyAsync_ptsz(dev, host, count, kind, stream)
                                       : cudaMemcpyAsync_ptsz(host, dev, count, kind, stream))
                          : (to_symbol ? cudaMemcpyAsync(dev, host, count, kind, stream)
                                       : cudaMemcpyAsync(host, dev, count, kind, stream));
    return per_thread ? (to_symbol ? cudaMemcpy_ptds(dev, host, count, kind) : cudaMemcpy_ptds(host, dev, count, kind))
                      : (to_symbol ? cudaMemcpy(dev, host, count, kind) : cudaMemcpy(host, dev, count, kind));
}

RGPU_CUDA_EXPORT cudaError_t cudaMemcpyToSymbol(const void *symbol, const void *src, size_t count, size_t offset,
                                                enum cudaMemcpyKind kind)
{
    return rgpu_cu_symbol_copy((void *)src, symbol, count, offset, kind, 1, NULL, 0, 0);
}

cudaError_t cudaMemcpyToSymbol_ptds(const void *symbol, const void *src, size_t count, size_t offset,
                                    enum cudaMemcpyKind kind)
{
    return rgpu_cu_symbol_copy((void *)src, symbol, count, offset, kind, 1, NULL, 0, 1);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemcpyFromSymbol(void *dst, const void *symbol, size_t count, size_t offset,
                                                  enum cudaMemcpyKind kind)
{
    return rgpu_cu_symbol_copy(dst, symbol, count, offset, kind, 0, NULL, 0, 0);
}

cudaError_t cudaMemcpyFromSymbol_ptds(void *dst, const void *symbol, size_t count, size_t offset,
                                      enum cudaMemcpyKind kind)
{
    return rgpu_cu_symbol_copy(dst, symbol, count, offset, kind, 0, NULL, 0, 1);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemcpyToSymbolAsync(const void *symbol, const void *src, size_t count,
                                                     size_t offset, enum cudaMemcpyKind kind, cudaStream_t stream)
{
    return rgpu_cu_symbol_copy((void *)src, symbol, count, offset, kind, 1, stream, 1, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemcpyFromSymbolAsync(void *dst, const void *symbol, size_t count, size_t offset,
                                                       enum cudaMemcpyKind kind, cudaStream_t stream)
{
    return rgpu_cu_symbol_copy(dst, symbol, count, offset, kind, 0, stream, 1, 0);
}

void rgpu__cu_vars_forget_device(int device)
{
    pthread_mutex_lock(&rgpu_cu_reg_lock);
    for (rgpu_cu_module_t *m = rgpu_cu_modules; m; m = m->next) {
        for (rgpu_cu_var_t *v = m->vars; v; v = v->next)
            v->dptr[device] = 0;
    }
    pthread_mutex_unlock(&rgpu_cu_reg_lock);
}
