/*
 * Memory: device allocations, host allocations, copies and memsets.
 *
 * The runtime keeps a table of the process's device allocations (address,
 * size, device), so that it can check a copy's device side before anything
 * leaves (a wrong pointer gets cudaErrorInvalidValue at once, as on a local
 * GPU), tell cudaMemcpyDefault's directions apart, and answer
 * cudaPointerGetAttributes. The server checks every range again against the
 * session's own allocations: this table is for the program's sake, not the
 * server's.
 *
 * Device addresses are numbers in the server's address space, so one could
 * equal a valid host address here. To keep CUDA's unified addressing true
 * (no host and device pointer alike), each allocation's range is reserved
 * in this process too, with an inaccessible mapping: no host allocation can
 * land there later, and a host dereference of a device pointer faults, as
 * it does with a local GPU. A range the process already uses cannot be
 * reserved; cudaMemcpyDefault then takes the device's side.
 *
 * Copies to the device and memsets never wait for the server. Copies to the
 * host wait for their data when synchronous (cudaMemcpy); asynchronous ones
 * return at once and their data lands when it arrives (stream.c's pending
 * copies).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cudart.h"

typedef struct rgpu_cu_alloc {
    uint64_t base;
    uint64_t size;
    int device;
    int reserved;          /* the range is reserved in this process */
    int global;            /* a module variable: not the program's to free */
} rgpu_cu_alloc_t;

typedef struct rgpu_cu_host {
    void *base;
    size_t size;
    unsigned flags;
    int allocated;         /* cudaMallocHost/cudaHostAlloc (else cudaHostRegister) */
} rgpu_cu_host_t;

static pthread_rwlock_t rgpu_cu_mem_lock = PTHREAD_RWLOCK_INITIALIZER;
static rgpu_cu_alloc_t *rgpu_cu_allocs;    /* sorted by base */
static size_t rgpu_cu_num_allocs, rgpu_cu_cap_allocs;
static rgpu_cu_host_t *rgpu_cu_hosts;
static size_t rgpu_cu_num_hosts, rgpu_cu_cap_hosts;

/* ---- the allocation table ---- */

/* The index of the first allocation whose base is above addr. */
static size_t rgpu_cu_alloc_upper(uint64_t addr)
{
    size_t lo = 0, hi = rgpu_cu_num_allocs;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (rgpu_cu_allocs[mid].base <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int rgpu__cu_mem_find(uint64_t ptr, uint64_t len, int *device_p)
{
    int found = 0;
    size_t i;

    pthread_rwlock_rdlock(&rgpu_cu_mem_lock);
    i = rgpu_cu_alloc_upper(ptr);
    if (i > 0) {
        const rgpu_cu_alloc_t *a = &rgpu_cu_allocs[i - 1];

        if (ptr - a->base < a->size && len <= a->size - (ptr - a->base)) {
            found = 1;
            if (device_p)
                *device_p = a->device;
        }
    }
    pthread_rwlock_unlock(&rgpu_cu_mem_lock);
    return found;
}

static void rgpu_cu_reserve(rgpu_cu_alloc_t *a)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t start = a->base & ~(uint64_t)(page - 1);
    uint64_t end = (a->base + a->size + (uint64_t)page - 1) & ~(uint64_t)(page - 1);
    void *got;

    if (!a->size || end <= start || (uintptr_t)start != start)
        return;
    got = mmap((void *)(uintptr_t)start, (size_t)(end - start), PROT_NONE,
               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED_NOREPLACE, -1, 0);
    if (got == MAP_FAILED)
        return;
    if (got != (void *)(uintptr_t)start) {
        /* Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and map elsewhere. */
        munmap(got, (size_t)(end - start));
        return;
    }
    a->reserved = 1;
}

static void rgpu_cu_unreserve(const rgpu_cu_alloc_t *a)
{
    long page = sysconf(_SC_PAGESIZE);
    uint64_t start = a->base & ~(uint64_t)(page - 1);
    uint64_t end = (a->base + a->size + (uint64_t)page - 1) & ~(uint64_t)(page - 1);

    if (a->reserved)
        munmap((void *)(uintptr_t)start, (size_t)(end - start));
}

/* Room for one more element in a table of n elements of elem bytes, *cap_p of them allocated:
 * the table, grown (doubling from first) when it is full, or NULL when memory is short and the
 * table stays as it was. */
static void *rgpu_cu_room(void *table, size_t n, size_t *cap_p, size_t elem, size_t first)
{
    size_t cap;
    void *grown;

    if (n < *cap_p)
        return table;
    cap = *cap_p ? *cap_p * 2 : first;
    if (!(grown = realloc(table, cap * elem)))
        return NULL;
    *cap_p = cap;
    return grown;
}

static cudaError_t rgpu_cu_alloc_add(uint64_t base, uint64_t size, int device, int global)
{
    rgpu_cu_alloc_t *n;
    size_t i;

    pthread_rwlock_wrlock(&rgpu_cu_mem_lock);
    n = rgpu_cu_room(rgpu_cu_allocs, rgpu_cu_num_allocs, &rgpu_cu_cap_allocs, sizeof(*n), 64);
    if (!n) {
        pthread_rwlock_unlock(&rgpu_cu_mem_lock);
        return cudaErrorMemoryAllocation;
    }
    rgpu_cu_allocs = n;
    i = rgpu_cu_alloc_upper(base);
    memmove(&rgpu_cu_allocs[i + 1], &rgpu_cu_allocs[i], (rgpu_cu_num_allocs - i) * sizeof(*rgpu_cu_allocs));
    rgpu_cu_allocs[i] = (rgpu_cu_alloc_t){.base = base, .size = size, .device = device, .global = global};
    rgpu_cu_reserve(&rgpu_cu_allocs[i]);
    rgpu_cu_num_allocs++;
    pthread_rwlock_unlock(&rgpu_cu_mem_lock);
    return cudaSuccess;
}

/* Removes the allocation that starts at base: its device, or -1. */
static int rgpu_cu_alloc_remove(uint64_t base)
{
    int device = -1;
    size_t i;

    pthread_rwlock_wrlock(&rgpu_cu_mem_lock);
    i = rgpu_cu_alloc_upper(base);
    if (i > 0 && rgpu_cu_allocs[i - 1].base == base && !rgpu_cu_allocs[i - 1].global) {
        device = rgpu_cu_allocs[i - 1].device;
        rgpu_cu_unreserve(&rgpu_cu_allocs[i - 1]);
        memmove(&rgpu_cu_allocs[i - 1], &rgpu_cu_allocs[i], (rgpu_cu_num_allocs - i) * sizeof(*rgpu_cu_allocs));
        rgpu_cu_num_allocs--;
    }
    pthread_rwlock_unlock(&rgpu_cu_mem_lock);
    return device;
}

cudaError_t rgpu__cu_mem_add_global(uint64_t base, uint64_t size, int device)
{
    return rgpu_cu_alloc_add(base, size, device, 1);
}

void rgpu__cu_mem_forget_device(int device)
{
    size_t kept = 0;

    pthread_rwlock_wrlock(&rgpu_cu_mem_lock);
    for (size_t i = 0; i < rgpu_cu_num_allocs; i++) {
        if (rgpu_cu_allocs[i].device == device)
            rgpu_cu_unreserve(&rgpu_cu_allocs[i]);
        else
            rgpu_cu_allocs[kept++] = rgpu_cu_allocs[i];
    }
    rgpu_cu_num_allocs = kept;
    pthread_rwlock_unlock(&rgpu_cu_mem_lock);
}

/* ---- device memory ---- */

static cudaError_t rgpu_cu_malloc(rgpu_cu_device_t *d, int dev, uint64_t size, uint64_t *dptr_p)
{
    Rgpu__CuMalloc req = RGPU__CU_MALLOC__INIT;
    Rgpu__CuMallocReply *reply;
    rgpu_call_t call = {0};
    cudaError_t err;

    req.device = d->index;
    req.size = size;
    err = rgpu__cu_call(d, RGPU__MSG_TYPE__MSG_CU_MALLOC, &req.base, NULL, 0, RGPU__MSG_TYPE__MSG_CU_MALLOC_REPLY,
                        &rgpu__cu_malloc_reply__descriptor, &call, (ProtobufCMessage **)&reply);
    if (err != cudaSuccess)
        return err;
    err = rgpu__cu_from_cu(reply->cu_error);
    if (err == cudaSuccess && (!reply->dptr || reply->dptr + size < reply->dptr))
        err = cudaErrorUnknown;
    if (err == cudaSuccess && (err = rgpu_cu_alloc_add(reply->dptr, size, dev, 0)) != cudaSuccess) {
        Rgpu__CuFree fr = RGPU__CU_FREE__INIT;

        fr.device = d->index;
        fr.dptr = reply->dptr;
        rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_FREE, &fr.base, NULL, 0);
    }
    if (err == cudaSuccess)
        *dptr_p = reply->dptr;
    rgpu__cu_malloc_reply__free_unpacked(reply, NULL);
    rgpu_call_cleanup(&call);
    return err;
}

RGPU_CUDA_EXPORT cudaError_t cudaMalloc(void **devPtr, size_t size)
{
    int dev = rgpu__cu_current();
    rgpu_cu_device_t *d;
    uint64_t dptr;
    cudaError_t err;

    if (!devPtr)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if (!(d = rgpu__cu_device(dev, &err)))
        return rgpu__cu_fail(err);
    if (size == 0) {
        /* CUDA returns NULL for an empty allocation, and succeeds. */
        *devPtr = NULL;
        return cudaSuccess;
    }
    if ((err = rgpu_cu_malloc(d, dev, size, &dptr)) != cudaSuccess)
        return rgpu__cu_fail(err);
    *devPtr = (void *)(uintptr_t)dptr;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaMallocPitch(void **devPtr, size_t *pitch, size_t width, size_t height)
{
    int dev = rgpu__cu_current();
    rgpu_cu_device_t *d;
    uint64_t dptr, align, p;
    cudaError_t err;

    if (!devPtr || !pitch)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if (!(d = rgpu__cu_device(dev, &err)))
        return rgpu__cu_fail(err);
    if (!width || !height) {
        *devPtr = NULL;
        *pitch = 0;
        return cudaSuccess;
    }
    /* Rows start on the device's pitch alignment, as the driver pitches them. */
    align = d->prop.texturePitchAlignment ? d->prop.texturePitchAlignment : 512;
    p = (width + align - 1) / align * align;
    if (p < width || (uint64_t)height > UINT64_MAX / p || p > d->prop.memPitch)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu_cu_malloc(d, dev, p * height, &dptr)) != cudaSuccess)
        return rgpu__cu_fail(err);
    *devPtr = (void *)(uintptr_t)dptr;
    *pitch = (size_t)p;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaFree(void *devPtr)
{
    Rgpu__CuFree req = RGPU__CU_FREE__INIT;
    rgpu_cu_device_t *d;
    cudaError_t err;
    int dev;

    if (!devPtr)
        return rgpu__cu_fail(rgpu__cu_init());
    if ((dev = rgpu_cu_alloc_remove((uint64_t)(uintptr_t)devPtr)) < 0)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if (!(d = rgpu__cu_device(dev, &err)))
        return rgpu__cu_fail(err);
    req.device = d->index;
    req.dptr = (uint64_t)(uintptr_t)devPtr;
    return rgpu__cu_fail(rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_FREE, &req.base, NULL, 0));
}

RGPU_CUDA_EXPORT cudaError_t cudaMemGetInfo(size_t *free_p, size_t *total_p)
{
    Rgpu__CuMemGetInfo req = RGPU__CU_MEM_GET_INFO__INIT;
    Rgpu__CuMemInfoReply *reply;
    rgpu_call_t call = {0};
    rgpu_cu_device_t *d;
    cudaError_t err;

    if (!free_p || !total_p)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if (!(d = rgpu__cu_device(rgpu__cu_current(), &err)))
        return rgpu__cu_fail(err);
    req.device = d->index;
    err = rgpu__cu_call(d, RGPU__MSG_TYPE__MSG_CU_MEM_GET_INFO, &req.base, NULL, 0,
                        RGPU__MSG_TYPE__MSG_CU_MEM_INFO_REPLY, &rgpu__cu_mem_info_reply__descriptor, &call,
                        (ProtobufCMessage **)&reply);
    if (err != cudaSuccess)
        return rgpu__cu_fail(err);
    err = rgpu__cu_from_cu(reply->cu_error);
    if (err == cudaSuccess) {
        *free_p = (size_t)reply->free;
        *total_p = (size_t)reply->total;
    }
    rgpu__cu_mem_info_reply__free_unpacked(reply, NULL);
    rgpu_call_cleanup(&call);
    return rgpu__cu_fail(err);
}

/* ---- host memory ---- */

/* The registered or allocated host range holding [p, p + len), or -1. */
static long rgpu_cu_host_find(const void *p, size_t len)
{
    for (size_t i = 0; i < rgpu_cu_num_hosts; i++) {
        uintptr_t b = (uintptr_t)rgpu_cu_hosts[i].base;

        if ((uintptr_t)p - b < rgpu_cu_hosts[i].size && len <= rgpu_cu_hosts[i].size - ((uintptr_t)p - b))
            return (long)i;
    }
    return -1;
}

static cudaError_t rgpu_cu_host_add(void *base, size_t size, unsigned flags, int allocated)
{
    rgpu_cu_host_t *n;

    pthread_rwlock_wrlock(&rgpu_cu_mem_lock);
    for (size_t i = 0; i < rgpu_cu_num_hosts; i++) {
        uintptr_t b = (uintptr_t)rgpu_cu_hosts[i].base;

        if ((uintptr_t)base < b + rgpu_cu_hosts[i].size && b < (uintptr_t)base + size) {
            pthread_rwlock_unlock(&rgpu_cu_mem_lock);
            return cudaErrorHostMemoryAlreadyRegistered;
        }
    }
    n = rgpu_cu_room(rgpu_cu_hosts, rgpu_cu_num_hosts, &rgpu_cu_cap_hosts, sizeof(*n), 16);
    if (!n) {
        pthread_rwlock_unlock(&rgpu_cu_mem_lock);
        return cudaErrorMemoryAllocation;
    }
    rgpu_cu_hosts = n;
    rgpu_cu_hosts[rgpu_cu_num_hosts++] = (rgpu_cu_host_t){base, size, flags, allocated};
    pthread_rwlock_unlock(&rgpu_cu_mem_lock);
    return cudaSuccess;
}

/* Removes the host range starting at base if it is of that kind. */
static int rgpu_cu_host_remove(void *base, int allocated)
{
    int found = 0;

    pthread_rwlock_wrlock(&rgpu_cu_mem_lock);
    for (size_t i = 0; i < rgpu_cu_num_hosts; i++) {
        if (rgpu_cu_hosts[i].base == base && rgpu_cu_hosts[i].allocated == allocated) {
            rgpu_cu_hosts[i] = rgpu_cu_hosts[--rgpu_cu_num_hosts];
            found = 1;
            break;
        }
    }
    pthread_rwlock_unlock(&rgpu_cu_mem_lock);
    return found;
}

RGPU_CUDA_EXPORT cudaError_t cudaHostAlloc(void **pHost, size_t size, unsigned int flags)
{
    const unsigned known = cudaHostAllocPortable | cudaHostAllocMapped | cudaHostAllocWriteCombined;
    void *p;
    cudaError_t err;

    if (!pHost || (flags & ~known))
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu__cu_init()) != cudaSuccess)
        return rgpu__cu_fail(err);
    /* Page-locking here would not speed anything up: the data crosses the
     * network from this memory, and the server stages it in pinned memory of
     * its own. Page alignment keeps it ready for the transport's
     * registration (RDMA on verbs). */
    if (posix_memalign(&p, (size_t)sysconf(_SC_PAGESIZE), size ? size : 1) != 0)
        return rgpu__cu_fail(cudaErrorMemoryAllocation);
    if ((err = rgpu_cu_host_add(p, size ? size : 1, flags, 1)) != cudaSuccess) {
        free(p);
        return rgpu__cu_fail(err);
    }
    *pHost = p;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaMallocHost(void **ptr, size_t size)
{
    return cudaHostAlloc(ptr, size, cudaHostAllocDefault);
}

RGPU_CUDA_EXPORT cudaError_t cudaFreeHost(void *ptr)
{
    if (!ptr)
        return cudaSuccess;
    if (!rgpu_cu_host_remove(ptr, 1))
        return rgpu__cu_fail(cudaErrorInvalidValue);
    free(ptr);
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaHostRegister(void *ptr, size_t size, unsigned int flags)
{
    const unsigned known = cudaHostRegisterPortable | cudaHostRegisterMapped | cudaHostRegisterIoMemory |
                           cudaHostRegisterReadOnly;
    cudaError_t err;

    if (!ptr || !size || (flags & ~known))
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu__cu_init()) != cudaSuccess)
        return rgpu__cu_fail(err);
    return rgpu__cu_fail(rgpu_cu_host_add(ptr, size, flags, 0));
}

RGPU_CUDA_EXPORT cudaError_t cudaHostUnregister(void *ptr)
{
    if (!ptr || !rgpu_cu_host_remove(ptr, 0))
        return rgpu__cu_fail(cudaErrorHostMemoryNotRegistered);
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaHostGetFlags(unsigned int *pFlags, void *pHost)
{
    long i;

    if (!pFlags)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    pthread_rwlock_rdlock(&rgpu_cu_mem_lock);
    i = rgpu_cu_host_find(pHost, 1);
    if (i >= 0)
        *pFlags = rgpu_cu_hosts[i].flags;
    pthread_rwlock_unlock(&rgpu_cu_mem_lock);
    return i >= 0 ? cudaSuccess : rgpu__cu_fail(cudaErrorInvalidValue);
}

RGPU_CUDA_EXPORT cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes *attributes, const void *ptr)
{
    int dev;
    long h;

    if (!attributes)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    memset(attributes, 0, sizeof(*attributes));
    attributes->device = -2;
    if (rgpu__cu_mem_find((uint64_t)(uintptr_t)ptr, 1, &dev)) {
        attributes->type = cudaMemoryTypeDevice;
        attributes->device = dev;
        attributes->devicePointer = (void *)ptr;
        return cudaSuccess;
    }
    pthread_rwlock_rdlock(&rgpu_cu_mem_lock);
    h = rgpu_cu_host_find(ptr, 1);
    pthread_rwlock_unlock(&rgpu_cu_mem_lock);
    if (h >= 0) {
        attributes->type = cudaMemoryTypeHost;
        attributes->device = rgpu__cu_current();
        attributes->hostPointer = (void *)ptr;
        return cudaSuccess;
    }
    attributes->type = cudaMemoryTypeUnregistered;
    return cudaSuccess;
}

/* ---- copies ---- */

/* The direction of a copy, resolved from kind and the allocation table,
 * and the device of its device side. */
static cudaError_t rgpu_cu_copy_kind(void *dst, const void *src, uint64_t dst_len, uint64_t src_len,
                                     enum cudaMemcpyKind kind, Rgpu__CuCopyKind *wire_p, int *device_p)
{
    int ddev = -1, sdev = -1;
    int dst_dev = dst_len ? rgpu__cu_mem_find((uint64_t)(uintptr_t)dst, dst_len, &ddev) : 0;
    int src_dev = src_len ? rgpu__cu_mem_find((uint64_t)(uintptr_t)src, src_len, &sdev) : 0;

    if (kind == cudaMemcpyDefault)
        kind = dst_dev ? (src_dev ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                       : (src_dev ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
    switch (kind) {
    case cudaMemcpyHostToHost:
        *wire_p = RGPU__CU_COPY_KIND__CU_COPY_NONE;
        return cudaSuccess;
    case cudaMemcpyHostToDevice:
        if (!dst_dev)
            return cudaErrorInvalidValue;
        *wire_p = RGPU__CU_COPY_KIND__CU_COPY_H2D;
        *device_p = ddev;
        return cudaSuccess;
    case cudaMemcpyDeviceToHost:
        if (!src_dev)
            return cudaErrorInvalidValue;
        *wire_p = RGPU__CU_COPY_KIND__CU_COPY_D2H;
        *device_p = sdev;
        return cudaSuccess;
    case cudaMemcpyDeviceToDevice:
        if (!dst_dev || !src_dev)
            return cudaErrorInvalidValue;
        if (ddev != sdev) {
            static int told;

            return rgpu__cu_unsupported("a copy between two GPUs (cudaMemcpyPeer)", &told);
        }
        *wire_p = RGPU__CU_COPY_KIND__CU_COPY_D2D;
        *device_p = ddev;
        return cudaSuccess;
    default:
        return cudaErrorInvalidMemcpyDirection;
    }
}

/* The stream a copy on device dev runs on: the given one, which must be on
 * that device. */
static cudaError_t rgpu_cu_copy_stream(cudaStream_t stream, int per_thread, int dev, rgpu_cu_device_t **d_p,
                                       uint64_t *id_p, int *blocking_p)
{
    cudaError_t err;

    if ((err = rgpu__cu_stream_resolve(stream, per_thread, d_p, id_p, blocking_p)) != cudaSuccess)
        return err;
    if (*d_p != &rgpu__cu.devices[dev]) {
        /* NULL names the current device's stream; copies of another device's
         * memory on it run on their own device's legacy stream instead. */
        if (stream && stream != cudaStreamLegacy && stream != cudaStreamPerThread)
            return cudaErrorInvalidValue;
        if (!(*d_p = rgpu__cu_device(dev, &err)))
            return err;
        *id_p = 0;
        *blocking_p = 1;
    }
    return cudaSuccess;
}

/* A synchronous device-to-host read of size bytes into dst. */
static cudaError_t rgpu_cu_read_sync(rgpu_cu_device_t *d, Rgpu__MsgType type, const ProtobufCMessage *msg,
                                     void *dst, uint64_t size)
{
    Rgpu__CuReadReply *reply;
    rgpu_call_t call = {.bulk_dst = dst, .bulk_cap = size};
    cudaError_t err;

    err = rgpu__cu_call(d, type, msg, NULL, 0, RGPU__MSG_TYPE__MSG_CU_READ_REPLY,
                        &rgpu__cu_read_reply__descriptor, &call, (ProtobufCMessage **)&reply);
    if (err != cudaSuccess)
        return err;
    err = rgpu__cu_sync_result(d, reply->cu_error);
    if (err == cudaSuccess && call.bulk_len != size)
        err = cudaErrorUnknown;
    rgpu__cu_read_reply__free_unpacked(reply, NULL);
    rgpu_call_cleanup(&call);
    return err;
}

static cudaError_t rgpu_cu_memcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
                                  cudaStream_t stream, int async, int per_thread)
{
    Rgpu__CuCopyKind wire;
    rgpu_cu_device_t *d;
    uint64_t sid;
    int dev = -1, blocking;
    cudaError_t err;

    if (count == 0)
        return cudaSuccess;
    if (!dst || !src)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu_cu_copy_kind(dst, src, count, count, kind, &wire, &dev)) != cudaSuccess)
        return rgpu__cu_fail(err);
    if (wire == RGPU__CU_COPY_KIND__CU_COPY_NONE) {
        memmove(dst, src, count);
        return cudaSuccess;
    }
    if ((err = rgpu_cu_copy_stream(async ? stream : NULL, per_thread, dev, &d, &sid, &blocking)) != cudaSuccess)
        return rgpu__cu_fail(err);
    switch (wire) {
    case RGPU__CU_COPY_KIND__CU_COPY_H2D: {
        Rgpu__CuMemcpyH2D req = RGPU__CU_MEMCPY_H2_D__INIT;

        req.device = d->index;
        req.stream = sid;
        req.dst = (uint64_t)(uintptr_t)dst;
        req.size = count;
        req.blocking = !async;
        /* The bytes leave the program's memory before this returns, so the
         * program may reuse it at once, as cudaMemcpy allows. */
        err = rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_MEMCPY_H2D, &req.base, src, count);
        break;
    }
    case RGPU__CU_COPY_KIND__CU_COPY_D2H: {
        Rgpu__CuMemcpyD2H req = RGPU__CU_MEMCPY_D2_H__INIT;

        req.device = d->index;
        req.stream = sid;
        req.src = (uint64_t)(uintptr_t)src;
        req.size = count;
        req.blocking = !async;
        if (async) {
            err = rgpu__cu_pending_start(d, sid, blocking, RGPU__MSG_TYPE__MSG_CU_MEMCPY_D2H, &req.base, dst, count);
        } else {
            err = rgpu_cu_read_sync(d, RGPU__MSG_TYPE__MSG_CU_MEMCPY_D2H, &req.base, dst, count);
            /* The copy ran on the legacy stream, after everything of the
             * blocking streams: their copies' data is here too. */
            if (err == cudaSuccess)
                err = rgpu__cu_pending_wait(d, 0, 0, 0);
        }
        break;
    }
    default: {
        Rgpu__CuMemcpyD2D req = RGPU__CU_MEMCPY_D2_D__INIT;

        req.device = d->index;
        req.stream = sid;
        req.dst = (uint64_t)(uintptr_t)dst;
        req.src = (uint64_t)(uintptr_t)src;
        req.size = count;
        err = rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_MEMCPY_D2D, &req.base, NULL, 0);
        break;
    }
    }
    return rgpu__cu_fail(err);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind)
{
    return rgpu_cu_memcpy(dst, src, count, kind, NULL, 0, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemcpy_ptds(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind)
{
    return rgpu_cu_memcpy(dst, src, count, kind, NULL, 0, 1);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
                                             cudaStream_t stream)
{
    return rgpu_cu_memcpy(dst, src, count, kind, stream, 1, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemcpyAsync_ptsz(void *dst, const void *src, size_t count,
                                                  enum cudaMemcpyKind kind, cudaStream_t stream)
{
    return rgpu_cu_memcpy(dst, src, count, kind, stream, 1, 1);
}

static cudaError_t rgpu_cu_memcpy2d(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                                    size_t height, enum cudaMemcpyKind kind, cudaStream_t stream, int async,
                                    int per_thread)
{
    Rgpu__CuMemcpy2D req = RGPU__CU_MEMCPY2_D__INIT;
    Rgpu__CuCopyKind wire;
    rgpu_cu_device_t *d;
    uint64_t sid, dspan, sspan, packed;
    uint8_t *buf = NULL;
    int dev = -1, blocking;
    cudaError_t err;

    if (!width || !height)
        return cudaSuccess;
    if (!dst || !src || width > dpitch || width > spitch)
        return rgpu__cu_fail(cudaErrorInvalidPitchValue);
    if ((uint64_t)(height - 1) > (UINT64_MAX - width) / (dpitch > spitch ? dpitch : spitch) ||
        (uint64_t)width > UINT64_MAX / height)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    dspan = (uint64_t)dpitch * (height - 1) + width;
    sspan = (uint64_t)spitch * (height - 1) + width;
    packed = (uint64_t)width * height;
    if ((err = rgpu_cu_copy_kind(dst, src, dspan, sspan, kind, &wire, &dev)) != cudaSuccess)
        return rgpu__cu_fail(err);
    if (wire == RGPU__CU_COPY_KIND__CU_COPY_NONE) {
        for (size_t r = 0; r < height; r++)
            memmove((uint8_t *)dst + r * dpitch, (const uint8_t *)src + r * spitch, width);
        return cudaSuccess;
    }
    if ((err = rgpu_cu_copy_stream(async ? stream : NULL, per_thread, dev, &d, &sid, &blocking)) != cudaSuccess)
        return rgpu__cu_fail(err);
    req.device = d->index;
    req.stream = sid;
    req.kind = wire;
    req.dst = (uint64_t)(uintptr_t)dst;
    req.dpitch = dpitch;
    req.src = (uint64_t)(uintptr_t)src;
    req.spitch = spitch;
    req.width = width;
    req.height = height;
    req.blocking = !async;
    if (wire == RGPU__CU_COPY_KIND__CU_COPY_H2D) {
        /* The host side travels packed: rows gathered unless already tight. */
        const void *bulk = src;

        if (spitch != width) {
            if (!(buf = malloc((size_t)packed)))
                return rgpu__cu_fail(cudaErrorMemoryAllocation);
            for (size_t r = 0; r < height; r++)
                memcpy(buf + r * width, (const uint8_t *)src + r * spitch, width);
            bulk = buf;
        }
        err = rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_MEMCPY_2D, &req.base, bulk, packed);
    } else if (wire == RGPU__CU_COPY_KIND__CU_COPY_D2H) {
        if (dpitch == width && async) {
            err = rgpu__cu_pending_start(d, sid, blocking, RGPU__MSG_TYPE__MSG_CU_MEMCPY_2D, &req.base, dst, packed);
        } else if (dpitch == width) {
            err = rgpu_cu_read_sync(d, RGPU__MSG_TYPE__MSG_CU_MEMCPY_2D, &req.base, dst, packed);
        } else {
            /* Rows arrive packed and are scattered into the program's pitch
             * once here, so such a copy waits even when asynchronous. */
            if (!(buf = malloc((size_t)packed)))
                return rgpu__cu_fail(cudaErrorMemoryAllocation);
            err = rgpu_cu_read_sync(d, RGPU__MSG_TYPE__MSG_CU_MEMCPY_2D, &req.base, buf, packed);
            for (size_t r = 0; err == cudaSuccess && r < height; r++)
                memcpy((uint8_t *)dst + r * dpitch, buf + r * width, width);
        }
        if (err == cudaSuccess && !async)
            err = rgpu__cu_pending_wait(d, 0, 0, 0);
    } else {
        err = rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_MEMCPY_2D, &req.base, NULL, 0);
    }
    free(buf);
    return rgpu__cu_fail(err);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemcpy2D(void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                                          size_t height, enum cudaMemcpyKind kind)
{
    return rgpu_cu_memcpy2d(dst, dpitch, src, spitch, width, height, kind, NULL, 0, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemcpy2D_ptds(void *dst, size_t dpitch, const void *src, size_t spitch,
                                               size_t width, size_t height, enum cudaMemcpyKind kind)
{
    return rgpu_cu_memcpy2d(dst, dpitch, src, spitch, width, height, kind, NULL, 0, 1);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
                                               size_t width, size_t height, enum cudaMemcpyKind kind,
                                               cudaStream_t stream)
{
    return rgpu_cu_memcpy2d(dst, dpitch, src, spitch, width, height, kind, stream, 1, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemcpy2DAsync_ptsz(void *dst, size_t dpitch, const void *src, size_t spitch,
                                                    size_t width, size_t height, enum cudaMemcpyKind kind,
                                                    cudaStream_t stream)
{
    return rgpu_cu_memcpy2d(dst, dpitch, src, spitch, width, height, kind, stream, 1, 1);
}

/* ---- memsets ---- */

static cudaError_t rgpu_cu_memset(void *dst, size_t pitch, int value, size_t width, size_t height,
                                  cudaStream_t stream, int async, int per_thread)
{
    Rgpu__CuMemset req = RGPU__CU_MEMSET__INIT;
    rgpu_cu_device_t *d;
    uint64_t sid, span;
    int dev, blocking;
    cudaError_t err;

    if (!width || !height)
        return cudaSuccess;
    if (height > 1 && width > pitch)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if (height > 1 && (uint64_t)(height - 1) > (UINT64_MAX - width) / pitch)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    span = height > 1 ? (uint64_t)pitch * (height - 1) + width : width;
    if (!rgpu__cu_mem_find((uint64_t)(uintptr_t)dst, span, &dev))
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu_cu_copy_stream(async ? stream : NULL, per_thread, dev, &d, &sid, &blocking)) != cudaSuccess)
        return rgpu__cu_fail(err);
    req.device = d->index;
    req.stream = sid;
    req.dst = (uint64_t)(uintptr_t)dst;
    req.value = (uint32_t)(uint8_t)value;
    req.element_size = 1;
    req.width = width;
    req.height = height;
    req.pitch = height > 1 ? pitch : width;
    return rgpu__cu_fail(rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_MEMSET, &req.base, NULL, 0));
}

RGPU_CUDA_EXPORT cudaError_t cudaMemset(void *devPtr, int value, size_t count)
{
    return rgpu_cu_memset(devPtr, count, value, count, 1, NULL, 0, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemset_ptds(void *devPtr, int value, size_t count)
{
    return rgpu_cu_memset(devPtr, count, value, count, 1, NULL, 0, 1);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemsetAsync(void *devPtr, int value, size_t count, cudaStream_t stream)
{
    return rgpu_cu_memset(devPtr, count, value, count, 1, stream, 1, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemsetAsync_ptsz(void *devPtr, int value, size_t count, cudaStream_t stream)
{
    return rgpu_cu_memset(devPtr, count, value, count, 1, stream, 1, 1);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemset2D(void *devPtr, size_t pitch, int value, size_t width, size_t height)
{
    return rgpu_cu_memset(devPtr, pitch, value, width, height, NULL, 0, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemset2D_ptds(void *devPtr, size_t pitch, int value, size_t width, size_t height)
{
    return rgpu_cu_memset(devPtr, pitch, value, width, height, NULL, 0, 1);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemset2DAsync(void *devPtr, size_t pitch, int value, size_t width,
                                               size_t height, cudaStream_t stream)
{
    return rgpu_cu_memset(devPtr, pitch, value, width, height, stream, 1, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaMemset2DAsync_ptsz(void *devPtr, size_t pitch, int value, size_t width,
                                                    size_t height, cudaStream_t stream)
{
    return rgpu_cu_memset(devPtr, pitch, value, width, height, stream, 1, 1);
}

/* ---- stream-ordered allocation ---- */

/* cudaMallocAsync allocates at once, from the device rather than a pool: the
 * memory is valid for the stream's later work, as the call promises, and
 * earlier. cudaFreeAsync frees after the work queued before it, since the
 * server runs a session's calls in order and frees only once the device no
 * longer uses the memory. Pools themselves (cudaMemPool*) are not served. */
static cudaError_t rgpu_cu_malloc_async(void **devPtr, size_t size, cudaStream_t stream, int per_thread)
{
    rgpu_cu_device_t *d;
    uint64_t sid, dptr;
    int blocking;
    cudaError_t err;

    if (!devPtr)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu__cu_stream_resolve(stream, per_thread, &d, &sid, &blocking)) != cudaSuccess)
        return rgpu__cu_fail(err);
    if (size == 0) {
        *devPtr = NULL;
        return cudaSuccess;
    }
    if ((err = rgpu_cu_malloc(d, (int)(d - rgpu__cu.devices), size, &dptr)) != cudaSuccess)
        return rgpu__cu_fail(err);
    *devPtr = (void *)(uintptr_t)dptr;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaMallocAsync(void **devPtr, size_t size, cudaStream_t hStream)
{
    return rgpu_cu_malloc_async(devPtr, size, hStream, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaMallocAsync_ptsz(void **devPtr, size_t size, cudaStream_t hStream)
{
    return rgpu_cu_malloc_async(devPtr, size, hStream, 1);
}

static cudaError_t rgpu_cu_free_async(void *devPtr, cudaStream_t stream, int per_thread)
{
    rgpu_cu_device_t *d;
    uint64_t sid;
    int blocking;
    cudaError_t err;

    if ((err = rgpu__cu_stream_resolve(stream, per_thread, &d, &sid, &blocking)) != cudaSuccess)
        return rgpu__cu_fail(err);
    return cudaFree(devPtr);
}

RGPU_CUDA_EXPORT cudaError_t cudaFreeAsync(void *devPtr, cudaStream_t hStream)
{
    return rgpu_cu_free_async(devPtr, hStream, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaFreeAsync_ptsz(void *devPtr, cudaStream_t hStream)
{
    return rgpu_cu_free_async(devPtr, hStream, 1);
}

/* A description, computed here as the runtime does; textures and arrays,
 * which use it, are not served. */
RGPU_CUDA_EXPORT struct cudaChannelFormatDesc cudaCreateChannelDesc(int x, int y, int z, int w,
                                                                    enum cudaChannelFormatKind f)
{
    struct cudaChannelFormatDesc desc = {x, y, z, w, f};

    return desc;
}
