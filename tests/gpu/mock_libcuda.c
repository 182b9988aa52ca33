/*
 * A MOCK of NVIDIA's libcuda.so.1, for tests only: it lets rgpu-server's
 * real CUDA backend (server/cuda/backend_cuda.c) run on a machine without
 * a GPU, so that its own code (dlopen, cuGetProcAddress lookups, contexts
 * per session, the pinned staging ring and its chunking of 1D and 2D
 * copies, the double-buffered reads, launches through the parameter
 * buffer, teardown) is exercised by e2e.cuda_driver_mock here and under
 * ASan. It is no driver and no GPU: its device is named "rgpu MOCK CUDA
 * driver (tests only, no GPU)"; tests/gpu/run.sh checks the backend against
 * NVIDIA's real driver.
 *
 * Device memory is host memory and a CUdeviceptr is its host address (the
 * server never lets a client's number reach here unchecked: its
 * allocation table refuses every range outside the session's memory
 * first). Work runs when it is submitted, which is one order CUDA allows.
 * Kernels: those of examples/cuda, in C, by name. Everything a context
 * holds is freed with it, so a sanitized server's leak check covers the
 * backend's teardown.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda.h>

#define MOCK_EXPORT __attribute__((visibility("default")))
#define MOCK_NAME "rgpu MOCK CUDA driver (tests only, no GPU)"
#define MOCK_TOTAL_MEM (4ull << 30)

/* Everything a context owns, freed with it. */
typedef struct mock_obj {
    struct mock_obj *next;
    int kind;                   /* MOCK_MEM, MOCK_HOST, MOCK_OTHER */
    size_t size;
    struct timespec when;       /* events */
    int recorded;
    unsigned flags;
    const struct mock_kernel *kernel;   /* functions */
    char data[];                /* device or pinned memory, in place */
} mock_obj_t;

enum { MOCK_MEM = 1, MOCK_HOST, MOCK_OTHER };

struct CUctx_st {
    mock_obj_t *objs;
    pthread_mutex_t lock;
    size_t used;
};

static __thread CUcontext mock_current;
static size_t mock_used_total;
static pthread_mutex_t mock_global = PTHREAD_MUTEX_INITIALIZER;

static mock_obj_t *mock_new(int kind, size_t size)
{
    mock_obj_t *o;

    if (!mock_current)
        return NULL;
    o = calloc(1, sizeof(*o) + size);
    if (!o)
        return NULL;
    o->kind = kind;
    o->size = size;
    pthread_mutex_lock(&mock_current->lock);
    o->next = mock_current->objs;
    mock_current->objs = o;
    pthread_mutex_unlock(&mock_current->lock);
    return o;
}

/* Unlinks and frees the object whose data (or header) is at p. */
static CUresult mock_drop(void *p, int by_data)
{
    CUresult r = CUDA_ERROR_INVALID_VALUE;

    if (!mock_current)
        return CUDA_ERROR_INVALID_CONTEXT;
    pthread_mutex_lock(&mock_current->lock);
    for (mock_obj_t **pp = &mock_current->objs; *pp; pp = &(*pp)->next) {
        mock_obj_t *o = *pp;

        if ((by_data && (void *)o->data == p) || (!by_data && (void *)o == p)) {
            *pp = o->next;
            if (o->kind == MOCK_MEM) {
                mock_current->used -= o->size;
                pthread_mutex_lock(&mock_global);
                mock_used_total -= o->size;
                pthread_mutex_unlock(&mock_global);
            }
            free(o);
            r = CUDA_SUCCESS;
            break;
        }
    }
    pthread_mutex_unlock(&mock_current->lock);
    return r;
}

/* ---- kernels of examples/cuda ------------------------------------------- */

typedef struct mock_kernel {
    const char *name;
    unsigned n;
    unsigned sizes[8];
    unsigned offsets[8];
    unsigned bytes;
    void (*run)(const unsigned grid[3], const unsigned block[3], const char *p);
} mock_kernel_t;

#define ARG(type, off) (*(type const *)(p + (off)))

static void k_vector_add(const unsigned g[3], const unsigned b[3], const char *p)
{
    const float *x = ARG(const float *, 0), *y = ARG(const float *, 8);
    float *z = ARG(float *, 16);
    long long n = ARG(int, 24), t = (long long)g[0] * b[0];

    for (long long i = 0; i < n && i < t; i++)
        z[i] = x[i] + y[i];
}

static void k_matmul(const unsigned g[3], const unsigned b[3], const char *p)
{
    const char *A = ARG(const char *, 0);
    size_t pitch = ARG(size_t, 8);
    const float *B = ARG(const float *, 16);
    float *C = ARG(float *, 24);
    long long n = ARG(int, 32);

    for (long long y = 0; y < n && y < (long long)g[1] * b[1]; y++)
        for (long long x = 0; x < n && x < (long long)g[0] * b[0]; x++) {
            const float *row = (const float *)(A + y * pitch);
            float sum = 0.0f;

            for (long long k = 0; k < n; k++)
                sum += row[k] * B[k * n + x];
            C[y * n + x] = sum;
        }
}

static void k_saxpy(const unsigned g[3], const unsigned b[3], const char *p)
{
    long long n = ARG(int, 0), t = (long long)g[0] * b[0];
    float a = ARG(float, 4);
    const float *x = ARG(const float *, 8);
    float *y = ARG(float *, 16);

    for (long long i = 0; i < n && i < t; i++)
        y[i] = a * x[i] + y[i];
}

static void k_affine(const unsigned g[3], const unsigned b[3], const char *p)
{
    float *v = ARG(float *, 0);
    float scale = ARG(float, 8), offset = ARG(float, 12);
    long long n = ARG(int, 16), t = (long long)g[0] * b[0];

    for (long long i = 0; i < n && i < t; i++)
        v[i] = v[i] * scale + offset;
}

static const mock_kernel_t mock_kernels[] = {
    {"vector_add", 4, {8, 8, 8, 4}, {0, 8, 16, 24}, 28, k_vector_add},
    {"matmul", 5, {8, 8, 8, 8, 4}, {0, 8, 16, 24, 32}, 36, k_matmul},
    {"saxpy", 4, {4, 4, 8, 8}, {0, 4, 8, 16}, 24, k_saxpy},
    {"affine", 3, {8, 8, 4}, {0, 8, 16}, 20, k_affine},
};

/* ---- the entry points --------------------------------------------------- */

static CUresult m_cuInit(unsigned flags) { (void)flags; return CUDA_SUCCESS; }
static CUresult m_cuDriverGetVersion(int *v) { *v = CUDA_VERSION; return CUDA_SUCCESS; }
static CUresult m_cuGetErrorName(CUresult r, const char **s)
{
    *s = r == CUDA_SUCCESS ? "CUDA_SUCCESS" : "CUDA_ERROR (mock)";
    return CUDA_SUCCESS;
}
static CUresult m_cuDeviceGetCount(int *n) { *n = 1; return CUDA_SUCCESS; }
static CUresult m_cuDeviceGet(CUdevice *d, int i)
{
    if (i != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    *d = 0;
    return CUDA_SUCCESS;
}
static CUresult m_cuDeviceGetName(char *name, int len, CUdevice d)
{
    (void)d;
    snprintf(name, (size_t)len, "%s", MOCK_NAME);
    return CUDA_SUCCESS;
}
static CUresult m_cuDeviceTotalMem(size_t *b, CUdevice d) { (void)d; *b = MOCK_TOTAL_MEM; return CUDA_SUCCESS; }
static CUresult m_cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d)
{
    (void)d;
    switch (a) {
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *v = 1024; break;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X: case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: *v = 1024; break;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: *v = 64; break;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: *v = 2147483647; break;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y: case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: *v = 65535; break;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: *v = 32; break;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = 2; break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = 9; break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = 0; break;
    case CU_DEVICE_ATTRIBUTE_TEXTURE_PITCH_ALIGNMENT: *v = 32; break;
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: *v = 1; break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: *v = 49152; break;
    case CU_DEVICE_ATTRIBUTE_MAX_PITCH: *v = 2147483647; break;
    case CU_DEVICE_ATTRIBUTE_TEXTURE_ALIGNMENT: *v = 512; break;
    case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: *v = 65536; break;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK: *v = 65536; break;
    case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: *v = 1000000; break;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: *v = 2048; break;
    case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT: *v = 2; break;
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS: *v = 1; break;
    case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY: *v = 1; break;
    case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: *v = 4194304; break;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: *v = 256; break;
    case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: *v = 1000000; break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: *v = 233472; break;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR: *v = 65536; break;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR: *v = 32; break;
    default: *v = 0; break;
    }
    return CUDA_SUCCESS;
}
static CUresult m_cuDeviceGetUuid(CUuuid *u, CUdevice d)
{
    (void)d;
    memcpy(u->bytes, "rgpu-mock-driver", 16);
    return CUDA_SUCCESS;
}
static CUresult m_cuCtxCreate(CUcontext *c, CUctxCreateParams *p, unsigned flags, CUdevice d)
{
    (void)p;
    (void)flags;
    if (d != 0)
        return CUDA_ERROR_INVALID_DEVICE;
    *c = calloc(1, sizeof(**c));
    if (!*c)
        return CUDA_ERROR_OUT_OF_MEMORY;
    pthread_mutex_init(&(*c)->lock, NULL);
    mock_current = *c;
    return CUDA_SUCCESS;
}
static CUresult m_cuCtxDestroy(CUcontext c)
{
    while (c->objs) {
        mock_obj_t *o = c->objs;

        c->objs = o->next;
        free(o);
    }
    pthread_mutex_lock(&mock_global);
    mock_used_total -= c->used;
    pthread_mutex_unlock(&mock_global);
    pthread_mutex_destroy(&c->lock);
    if (mock_current == c)
        mock_current = NULL;
    free(c);
    return CUDA_SUCCESS;
}
static CUresult m_cuCtxSetCurrent(CUcontext c) { mock_current = c; return CUDA_SUCCESS; }
static CUresult m_cuCtxSynchronize(void) { return mock_current ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT; }
static CUresult m_cuMemAlloc(CUdeviceptr *p, size_t size)
{
    mock_obj_t *o;

    pthread_mutex_lock(&mock_global);
    if (size > MOCK_TOTAL_MEM - mock_used_total) {
        pthread_mutex_unlock(&mock_global);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    mock_used_total += size;
    pthread_mutex_unlock(&mock_global);
    o = mock_new(MOCK_MEM, size);
    if (!o) {
        pthread_mutex_lock(&mock_global);
        mock_used_total -= size;
        pthread_mutex_unlock(&mock_global);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    mock_current->used += size;
    *p = (CUdeviceptr)(uintptr_t)o->data;
    return CUDA_SUCCESS;
}
static CUresult m_cuMemFree(CUdeviceptr p) { return mock_drop((void *)(uintptr_t)p, 1); }
static CUresult m_cuMemGetInfo(size_t *f, size_t *t)
{
    *t = MOCK_TOTAL_MEM;
    *f = MOCK_TOTAL_MEM - mock_used_total;
    return CUDA_SUCCESS;
}
static CUresult m_cuMemHostAlloc(void **p, size_t size, unsigned flags)
{
    mock_obj_t *o = mock_new(MOCK_HOST, size);

    (void)flags;
    if (!o)
        return CUDA_ERROR_OUT_OF_MEMORY;
    *p = o->data;
    return CUDA_SUCCESS;
}
static CUresult m_cuMemFreeHost(void *p) { return mock_drop(p, 1); }
static CUresult m_cuModuleLoadDataEx(CUmodule *m, const void *image, unsigned n, CUjit_option *o, void **v)
{
    (void)n;
    (void)o;
    (void)v;
    if (*(const uint32_t *)image != 0xBA55ED50u)
        return CUDA_ERROR_INVALID_IMAGE;
    *m = (CUmodule)mock_new(MOCK_OTHER, 0);
    return *m ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}
static CUresult m_cuModuleUnload(CUmodule m) { return mock_drop(m, 0); }
static CUresult m_cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name)
{
    (void)m;
    for (size_t i = 0; i < sizeof(mock_kernels) / sizeof(mock_kernels[0]); i++) {
        if (!strcmp(mock_kernels[i].name, name)) {
            mock_obj_t *o = mock_new(MOCK_OTHER, 0);

            if (!o)
                return CUDA_ERROR_OUT_OF_MEMORY;
            o->kernel = &mock_kernels[i];
            *f = (CUfunction)o;
            return CUDA_SUCCESS;
        }
    }
    return CUDA_ERROR_NOT_FOUND;
}
static CUresult m_cuModuleGetGlobal(CUdeviceptr *p, size_t *s, CUmodule m, const char *name)
{
    (void)p;
    (void)s;
    (void)m;
    (void)name;
    return CUDA_ERROR_NOT_FOUND;
}
static CUresult m_cuFuncGetAttribute(int *v, CUfunction_attribute a, CUfunction f)
{
    (void)f;
    *v = a == CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK ? 1024 : 0;
    return CUDA_SUCCESS;
}
static CUresult m_cuFuncSetAttribute(CUfunction f, CUfunction_attribute a, int v)
{
    (void)f;
    (void)a;
    (void)v;
    return CUDA_SUCCESS;
}
static CUresult m_cuFuncSetCacheConfig(CUfunction f, CUfunc_cache c) { (void)f; (void)c; return CUDA_SUCCESS; }
static CUresult m_cuFuncGetParamInfo(CUfunction f, size_t i, size_t *off, size_t *size)
{
    const mock_kernel_t *k = ((mock_obj_t *)f)->kernel;

    if (i >= k->n)
        return CUDA_ERROR_INVALID_VALUE;
    *off = k->offsets[i];
    *size = k->sizes[i];
    return CUDA_SUCCESS;
}
static CUresult m_cuOccupancy(int *n, CUfunction f, int bs, size_t smem, unsigned flags)
{
    (void)f;
    (void)smem;
    (void)flags;
    *n = bs > 0 ? 2048 / bs : 0;
    return CUDA_SUCCESS;
}
static CUresult m_cuStreamCreateWithPriority(CUstream *s, unsigned flags, int prio)
{
    (void)flags;
    (void)prio;
    *s = (CUstream)mock_new(MOCK_OTHER, 0);
    return *s ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}
static CUresult m_cuStreamDestroy(CUstream s) { return mock_drop(s, 0); }
static CUresult m_cuStreamDone(CUstream s) { (void)s; return CUDA_SUCCESS; }
static CUresult m_cuStreamWaitEvent(CUstream s, CUevent e, unsigned flags)
{
    (void)s;
    (void)e;
    (void)flags;
    return CUDA_SUCCESS;
}
static CUresult m_cuEventCreate(CUevent *e, unsigned flags)
{
    mock_obj_t *o = mock_new(MOCK_OTHER, 0);

    if (!o)
        return CUDA_ERROR_OUT_OF_MEMORY;
    o->flags = flags;
    *e = (CUevent)o;
    return CUDA_SUCCESS;
}
static CUresult m_cuEventDestroy(CUevent e) { return mock_drop(e, 0); }
static CUresult m_cuEventRecord(CUevent e, CUstream s)
{
    mock_obj_t *o = (mock_obj_t *)e;

    (void)s;
    clock_gettime(CLOCK_MONOTONIC, &o->when);
    o->recorded = 1;
    return CUDA_SUCCESS;
}
static CUresult m_cuEventRecordWithFlags(CUevent e, CUstream s, unsigned flags)
{
    (void)flags;
    return m_cuEventRecord(e, s);
}
static CUresult m_cuEventDone(CUevent e) { (void)e; return CUDA_SUCCESS; }
static CUresult m_cuEventElapsedTime(float *ms, CUevent a, CUevent b)
{
    mock_obj_t *x = (mock_obj_t *)a, *y = (mock_obj_t *)b;

    if (!x->recorded || !y->recorded || ((x->flags | y->flags) & CU_EVENT_DISABLE_TIMING))
        return CUDA_ERROR_INVALID_HANDLE;
    *ms = (float)((double)(y->when.tv_sec - x->when.tv_sec) * 1e3 +
                  (double)(y->when.tv_nsec - x->when.tv_nsec) / 1e6);
    return CUDA_SUCCESS;
}
static CUresult m_cuMemcpyHtoDAsync(CUdeviceptr d, const void *h, size_t n, CUstream s)
{
    (void)s;
    memcpy((void *)(uintptr_t)d, h, n);
    return CUDA_SUCCESS;
}
static CUresult m_cuMemcpyDtoHAsync(void *h, CUdeviceptr d, size_t n, CUstream s)
{
    (void)s;
    memcpy(h, (const void *)(uintptr_t)d, n);
    return CUDA_SUCCESS;
}
static CUresult m_cuMemcpyDtoDAsync(CUdeviceptr d, CUdeviceptr src, size_t n, CUstream s)
{
    (void)s;
    memmove((void *)(uintptr_t)d, (const void *)(uintptr_t)src, n);
    return CUDA_SUCCESS;
}
static CUresult m_cuMemcpy2DAsync(const CUDA_MEMCPY2D *m, CUstream s)
{
    const char *src = m->srcMemoryType == CU_MEMORYTYPE_HOST ? (const char *)m->srcHost
                                                              : (const char *)(uintptr_t)m->srcDevice;
    char *dst = m->dstMemoryType == CU_MEMORYTYPE_HOST ? (char *)m->dstHost
                                                        : (char *)(uintptr_t)m->dstDevice;

    (void)s;
    for (size_t r = 0; r < m->Height; r++)
        memmove(dst + r * m->dstPitch, src + r * m->srcPitch, m->WidthInBytes);
    return CUDA_SUCCESS;
}
static void mock_set(char *p, unsigned v, unsigned es, size_t n)
{
    for (size_t i = 0; i < n; i++)
        memcpy(p + i * es, &v, es);     /* little-endian: the low bytes */
}
static CUresult m_cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, CUstream s)
{
    (void)s;
    memset((void *)(uintptr_t)d, v, n);
    return CUDA_SUCCESS;
}
static CUresult m_cuMemsetD16Async(CUdeviceptr d, unsigned short v, size_t n, CUstream s)
{
    (void)s;
    mock_set((char *)(uintptr_t)d, v, 2, n);
    return CUDA_SUCCESS;
}
static CUresult m_cuMemsetD32Async(CUdeviceptr d, unsigned v, size_t n, CUstream s)
{
    (void)s;
    mock_set((char *)(uintptr_t)d, v, 4, n);
    return CUDA_SUCCESS;
}
static CUresult m_cuMemsetD2D8Async(CUdeviceptr d, size_t pitch, unsigned char v, size_t w, size_t h, CUstream s)
{
    (void)s;
    for (size_t r = 0; r < h; r++)
        memset((char *)(uintptr_t)d + r * pitch, v, w);
    return CUDA_SUCCESS;
}
static CUresult m_cuMemsetD2D16Async(CUdeviceptr d, size_t pitch, unsigned short v, size_t w, size_t h, CUstream s)
{
    (void)s;
    for (size_t r = 0; r < h; r++)
        mock_set((char *)(uintptr_t)d + r * pitch, v, 2, w);
    return CUDA_SUCCESS;
}
static CUresult m_cuMemsetD2D32Async(CUdeviceptr d, size_t pitch, unsigned v, size_t w, size_t h, CUstream s)
{
    (void)s;
    for (size_t r = 0; r < h; r++)
        mock_set((char *)(uintptr_t)d + r * pitch, v, 4, w);
    return CUDA_SUCCESS;
}
static CUresult m_cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                 unsigned by, unsigned bz, unsigned smem, CUstream s, void **params,
                                 void **extra)
{
    const mock_kernel_t *k = ((mock_obj_t *)f)->kernel;
    const unsigned grid[3] = {gx, gy, gz}, block[3] = {bx, by, bz};
    const char *buf = NULL;
    size_t size = 0;

    (void)smem;
    (void)s;
    (void)params;
    for (size_t i = 0; extra && extra[i] != CU_LAUNCH_PARAM_END; i += 2) {
        if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER)
            buf = extra[i + 1];
        else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE)
            size = *(size_t *)extra[i + 1];
    }
    /* As the driver: the buffer is the kernel's parameter bank, exactly. */
    if (!buf || size != k->bytes)
        return CUDA_ERROR_INVALID_VALUE;
    k->run(grid, block, buf);
    return CUDA_SUCCESS;
}

/* ---- lookup --------------------------------------------------------------- */

static const struct {
    const char *name;
    void *fn;
} mock_table[] = {
#define M(name, fn) {#name, (void *)fn},
    M(cuInit, m_cuInit) M(cuDriverGetVersion, m_cuDriverGetVersion)
    M(cuGetErrorName, m_cuGetErrorName) M(cuDeviceGetCount, m_cuDeviceGetCount)
    M(cuDeviceGet, m_cuDeviceGet) M(cuDeviceGetName, m_cuDeviceGetName)
    M(cuDeviceTotalMem, m_cuDeviceTotalMem) M(cuDeviceGetAttribute, m_cuDeviceGetAttribute)
    M(cuDeviceGetUuid, m_cuDeviceGetUuid) M(cuCtxCreate, m_cuCtxCreate)
    M(cuCtxDestroy, m_cuCtxDestroy) M(cuCtxSetCurrent, m_cuCtxSetCurrent)
    M(cuCtxSynchronize, m_cuCtxSynchronize) M(cuMemAlloc, m_cuMemAlloc) M(cuMemFree, m_cuMemFree)
    M(cuMemGetInfo, m_cuMemGetInfo) M(cuMemHostAlloc, m_cuMemHostAlloc)
    M(cuMemFreeHost, m_cuMemFreeHost) M(cuModuleLoadDataEx, m_cuModuleLoadDataEx)
    M(cuModuleUnload, m_cuModuleUnload) M(cuModuleGetFunction, m_cuModuleGetFunction)
    M(cuModuleGetGlobal, m_cuModuleGetGlobal) M(cuFuncGetAttribute, m_cuFuncGetAttribute)
    M(cuFuncSetAttribute, m_cuFuncSetAttribute) M(cuFuncSetCacheConfig, m_cuFuncSetCacheConfig)
    M(cuFuncGetParamInfo, m_cuFuncGetParamInfo)
    M(cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags, m_cuOccupancy)
    M(cuStreamCreateWithPriority, m_cuStreamCreateWithPriority)
    M(cuStreamDestroy, m_cuStreamDestroy) M(cuStreamSynchronize, m_cuStreamDone)
    M(cuStreamQuery, m_cuStreamDone) M(cuStreamWaitEvent, m_cuStreamWaitEvent)
    M(cuEventCreate, m_cuEventCreate) M(cuEventDestroy, m_cuEventDestroy)
    M(cuEventRecord, m_cuEventRecord) M(cuEventRecordWithFlags, m_cuEventRecordWithFlags)
    M(cuEventSynchronize, m_cuEventDone) M(cuEventQuery, m_cuEventDone)
    M(cuEventElapsedTime, m_cuEventElapsedTime) M(cuMemcpyHtoDAsync, m_cuMemcpyHtoDAsync)
    M(cuMemcpyDtoHAsync, m_cuMemcpyDtoHAsync) M(cuMemcpyDtoDAsync, m_cuMemcpyDtoDAsync)
    M(cuMemcpy2DAsync, m_cuMemcpy2DAsync) M(cuMemsetD8Async, m_cuMemsetD8Async)
    M(cuMemsetD16Async, m_cuMemsetD16Async) M(cuMemsetD32Async, m_cuMemsetD32Async)
    M(cuMemsetD2D8Async, m_cuMemsetD2D8Async) M(cuMemsetD2D16Async, m_cuMemsetD2D16Async)
    M(cuMemsetD2D32Async, m_cuMemsetD2D32Async) M(cuLaunchKernel, m_cuLaunchKernel)
#undef M
};

MOCK_EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int version,
                                         cuuint64_t flags, CUdriverProcAddressQueryResult *status)
{
    (void)flags;
    /* The CUDA 12 cuCtxCreate (no parameter block) is not mocked: the
     * backend must do with CUDA 13's. */
    if (version < 13000 && !strcmp(symbol, "cuCtxCreate")) {
        *pfn = NULL;
        return CUDA_ERROR_NOT_FOUND;
    }
    for (size_t i = 0; i < sizeof(mock_table) / sizeof(mock_table[0]); i++) {
        if (!strcmp(mock_table[i].name, symbol)) {
            *pfn = mock_table[i].fn;
            if (status)
                *status = CU_GET_PROC_ADDRESS_SUCCESS;
            return CUDA_SUCCESS;
        }
    }
    *pfn = NULL;
    if (status)
        *status = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    return CUDA_ERROR_NOT_FOUND;
}

/* NVIDIA's driver exports it; rgpu-server checks that it is there to tell
 * a driver from rgpu's client-side libcuda.so.1, and never calls it. */
MOCK_EXPORT CUresult cuGetExportTable(const void **table, const CUuuid *id)
{
    (void)id;
    *table = NULL;
    return CUDA_ERROR_NOT_SUPPORTED;
}
