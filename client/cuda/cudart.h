/*
 * The rgpu CUDA runtime's internals: a libcudart.so.13 that runs a program's
 * CUDA runtime calls on remote GPUs. Private to client/cuda (symbols
 * rgpu__cu_*); the public interface is CUDA's own (cuda_runtime_api.h).
 *
 *   program ─ cudaMalloc, <<<>>>, ... ─▶ this library ─ cuda.proto ─▶ rgpu-server (CUDA backend)
 *
 * What the program sees is what NVIDIA's runtime gives it: device pointers
 * (addresses in the session's own context on the server), stream, event and
 * kernel handles (pointers to our structs below), cudaError_t values. Device
 * properties, the last error and the sticky error are answered here; work
 * that returns nothing (launches, copies to the device, memsets, event
 * records) leaves without waiting, and its errors surface at the next
 * synchronizing call, as CUDA's own asynchronous errors do.
 */
#ifndef RGPU_CUDA_CUDART_H
#define RGPU_CUDA_CUDART_H

#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cuda.pb-c.h"
#include "fatbin.h"
#include "gen_support.h"
#include "rgpu/client_core.h"
#include "rgpu/log.h"

#define RGPU_CU_MAX_DEVICES 64
/* CUdevice_attribute values kept per device (CUDA 13 defines fewer). */
#define RGPU_CU_MAX_ATTRS 256
/* Launches nested in the evaluation of other launches' arguments. */
#define RGPU_CU_MAX_CALL_CONFIGS 16

#define RGPU_CU_MAGIC_STREAM 0x72637573u  /* "rcus" */
#define RGPU_CU_MAGIC_EVENT 0x72637565u   /* "rcue" */
#define RGPU_CU_MAGIC_KERNEL 0x7263756bu  /* "rcuk" */

/* ---- errors.c ---- */

/* Records err as the calling thread's last error (unless cudaSuccess) and
 * returns it: every failing API call ends through this. */
cudaError_t rgpu__cu_fail(cudaError_t err);

/* Clears the calling thread's last error (cudaDeviceReset). */
void rgpu__cu_clear_error(void);

/* An unimplemented function: names it on stderr the first time (*told) and
 * fails with cudaErrorNotSupported. */
cudaError_t rgpu__cu_unsupported(const char *name, int *told);

/* The runtime's error for a CUresult a server answered (CUDA 13 numbers the
 * two alike where both exist); unknown values become cudaErrorUnknown. */
cudaError_t rgpu__cu_from_cu(int32_t cu);

/* Non-zero for errors that leave a device's context unusable: the device
 * answers them to every later call until cudaDeviceReset. */
int rgpu__cu_is_sticky(cudaError_t err);

/* ---- runtime.c: servers and devices ---- */

typedef struct rgpu_cu_server {
    char addr[256];
    rgpu_conn_t *conn;
    Rgpu__HelloReply *hello;
} rgpu_cu_server_t;

typedef struct rgpu_cu_device {
    rgpu_cu_server_t *server;
    uint32_t index;                        /* the server's index for it */
    struct cudaDeviceProp prop;
    int attrs[RGPU_CU_MAX_ATTRS];
    uint8_t has_attr[RGPU_CU_MAX_ATTRS];
    int driver_version;
    int emulated;                          /* the cuda-emulated test backend */
    _Atomic int sticky;                    /* cudaError_t, 0 while the context works */
    unsigned flags;                        /* cudaSetDeviceFlags */
} rgpu_cu_device_t;

typedef struct rgpu_cu_state {
    int num_devices;
    rgpu_cu_device_t devices[RGPU_CU_MAX_DEVICES];
    int num_servers;
    rgpu_cu_server_t *servers;
    char why[512];                         /* why there are no devices, for the user */
} rgpu_cu_state_t;

extern rgpu_cu_state_t rgpu__cu;

/* Connects to the servers once (RGPU_SERVERS or the lease's). Returns
 * cudaSuccess, or cudaErrorNoDevice having said why on stderr once. */
cudaError_t rgpu__cu_init(void);

/* The calling thread's current device (cudaSetDevice; 0 by default). */
int rgpu__cu_current(void);

/* Checks dev and its sticky error; returns the device or NULL with *err set. */
rgpu_cu_device_t *rgpu__cu_device(int dev, cudaError_t *err);

/* A new object id, unique in the process (and so in every session). */
uint64_t rgpu__cu_new_id(void);

/* The link to d's server failed: the device is gone for this process (a
 * sticky cudaErrorDevicesUnavailable, said once on stderr with the reason). */
cudaError_t rgpu__cu_link_lost(rgpu_cu_device_t *d);

/* Posts an asynchronous request to d's server (with RGPU_SYNC=1, then waits
 * for the device and returns the request's own error). */
cudaError_t rgpu__cu_post(rgpu_cu_device_t *d, Rgpu__MsgType type, const ProtobufCMessage *msg,
                          const void *bulk, uint64_t bulk_len);

/* A synchronous request: on cudaSuccess *reply_p is the unpacked reply of
 * the expected type, and call holds the reply (its bulk landed in
 * call->bulk_dst); the caller frees the reply, then rgpu_call_cleanup(call).
 * On failure both are already freed. */
cudaError_t rgpu__cu_call(rgpu_cu_device_t *d, Rgpu__MsgType type, const ProtobufCMessage *msg,
                          const void *bulk, uint64_t bulk_len, Rgpu__MsgType reply_type,
                          const ProtobufCMessageDescriptor *reply_desc, rgpu_call_t *call,
                          ProtobufCMessage **reply_p);

/* A status reply's error and the device's deferred asynchronous error,
 * merged as a synchronizing call reports them: the reply's own error first,
 * then an earlier asynchronous failure. Records a sticky error on d. */
cudaError_t rgpu__cu_sync_result(rgpu_cu_device_t *d, int32_t cu_error);

/* ---- streams and events (stream.c) ---- */

struct CUstream_st {
    uint32_t magic;
    uint64_t id;
    int device;
    unsigned flags;
    int priority;
};

struct CUevent_st {
    uint32_t magic;
    uint64_t id;
    int device;
    unsigned flags;
    uint64_t stream;                       /* where it was last recorded */
    uint64_t ticket;                       /* rgpu__cu_ticket() at that record; 0: never */
};

/* Where a call on stream s runs: its device and the wire's stream id (0 is
 * the legacy default stream). per_thread: the call came through a _ptsz or
 * _ptds entry point, where NULL names the per-thread default stream.
 * *blocking_p is 0 for cudaStreamNonBlocking streams. */
cudaError_t rgpu__cu_stream_resolve(cudaStream_t s, int per_thread, rgpu_cu_device_t **d_p, uint64_t *id_p,
                                    int *blocking_p);

/* A device-to-host copy whose reply lands in the program's memory later. */
typedef struct rgpu_cu_pending {
    rgpu_call_t call;
    rgpu_cu_device_t *device;
    uint64_t stream;
    int blocking;
    uint64_t ticket;
    struct rgpu_cu_pending *next;
} rgpu_cu_pending_t;

/* A number that orders the asynchronous operations of the process. */
uint64_t rgpu__cu_ticket(void);

/* Starts an asynchronous copy's call and remembers it. */
cudaError_t rgpu__cu_pending_start(rgpu_cu_device_t *d, uint64_t stream, int blocking, Rgpu__MsgType type,
                                   const ProtobufCMessage *msg, void *dst, uint64_t size);

/* Waits for the pending copies of d that a synchronization of stream covers:
 * stream's own, every blocking stream's for the legacy stream (0), all of
 * them for all_streams; only those older than before (0: all). Returns the
 * first error among them. */
cudaError_t rgpu__cu_pending_wait(rgpu_cu_device_t *d, uint64_t stream, int all_streams, uint64_t before);

/* Non-zero when every pending copy those arguments select has landed. */
int rgpu__cu_pending_done(rgpu_cu_device_t *d, uint64_t stream, uint64_t before);

/* ---- memory.c ---- */

/* The device allocation holding [ptr, ptr + len), if any: its device. */
int rgpu__cu_mem_find(uint64_t ptr, uint64_t len, int *device_p);

/* Records a module variable's device range (cudaGetSymbolAddress), so that
 * copies may name it; cudaFree refuses it. */
cudaError_t rgpu__cu_mem_add_global(uint64_t base, uint64_t size, int device);

/* Forgets the device's allocations after cudaDeviceReset (the server freed
 * them), and the addresses of its module variables (launch.c). */
void rgpu__cu_mem_forget_device(int device);
void rgpu__cu_vars_forget_device(int device);

/* Entry points of the per-thread default stream that other files call. */
RGPU_CUDA_EXPORT cudaError_t cudaMemcpy_ptds(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind);
RGPU_CUDA_EXPORT cudaError_t cudaMemcpyAsync_ptsz(void *dst, const void *src, size_t count,
                                                  enum cudaMemcpyKind kind, cudaStream_t stream);

/* ---- launch.c: modules and kernels ---- */

typedef struct rgpu_cu_module rgpu_cu_module_t;

/* A kernel, and the handle __cudaGetKernel gives for it (cudaKernel_t). */
struct CUkern_st {
    uint32_t magic;
    rgpu_cu_module_t *module;
    const void *host_fun;
    char *name;
    uint64_t ids[RGPU_CU_MAX_DEVICES];   /* the function's id per device, 0: not yet named */
    const rgpu_fatbin_kernel_t *layout;  /* from the fatbin; NULL until looked up or unknown */
    rgpu_fatbin_kernel_t server_layout;  /* from the server when the fatbin had none */
    int layout_state;                    /* 0 not looked up, 1 known, -1 unknown */
    struct CUkern_st *next;
};

/* The kernel registered for a host stub address, or NULL. */
struct CUkern_st *rgpu__cu_kernel_by_host(const void *host_fun);

#endif
