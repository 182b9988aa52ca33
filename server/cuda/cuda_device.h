/*
 * The CUDA backends' device layer: what differs between the real driver
 * (backend_cuda.c, libcuda.so.1 through dlopen) and the emulation
 * (backend_cuda_emulated.c, device memory in host memory).
 *
 *   cuda_session.c   the protocol: decodes cuda.proto frames, keeps the
 *                    session's handle tables and allocation table, checks
 *                    every id, size and device range, reserves the lease's
 *                    memory quota, reports errors; the same for both.
 *   device ops       execute what cuda_session.c already checked, in one
 *                    session's context on one device.
 *
 * So the checks a hostile client meets are one code, exercised here by the
 * emulation and on a GPU by the driver.
 *
 * Every call returns a CUresult (the driver's numbering, RGPU_CU_* below;
 * backend_cuda.c checks them against cuda.h). Handles (modules, functions,
 * streams, events) are the device layer's own pointers, never seen by a
 * client. A NULL stream is the context's legacy default stream.
 *
 * Threads: open, close, count and device_params run on the main thread;
 * everything else on the session thread of the context's session.
 */
#ifndef RGPU_SERVER_CUDA_DEVICE_H
#define RGPU_SERVER_CUDA_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "config.h"
#include "rgpu/status.h"

/* CUresult values the server itself produces (stable public numbering of
 * the CUDA driver API, cuda.h's cudaError_enum). */
enum {
    RGPU_CU_SUCCESS = 0,
    RGPU_CU_INVALID_VALUE = 1,
    RGPU_CU_OUT_OF_MEMORY = 2,
    RGPU_CU_NOT_INITIALIZED = 3,
    RGPU_CU_NO_DEVICE = 100,
    RGPU_CU_INVALID_DEVICE = 101,
    RGPU_CU_INVALID_IMAGE = 200,
    RGPU_CU_INVALID_CONTEXT = 201,
    RGPU_CU_NO_BINARY_FOR_GPU = 209,
    RGPU_CU_INVALID_HANDLE = 400,
    RGPU_CU_NOT_FOUND = 500,
    RGPU_CU_NOT_READY = 600,
    RGPU_CU_ILLEGAL_ADDRESS = 700,
    RGPU_CU_LAUNCH_OUT_OF_RESOURCES = 701,
    RGPU_CU_LAUNCH_TIMEOUT = 702,
    RGPU_CU_LAUNCH_FAILED = 719,
    RGPU_CU_NOT_SUPPORTED = 801,
    RGPU_CU_UNKNOWN = 999,
};

/* CUfunction_attribute values the emulation answers (cuda.h numbering). */
enum {
    RGPU_CU_FUNC_MAX_THREADS_PER_BLOCK = 0,
    RGPU_CU_FUNC_SHARED_SIZE_BYTES = 1,
    RGPU_CU_FUNC_CONST_SIZE_BYTES = 2,
    RGPU_CU_FUNC_LOCAL_SIZE_BYTES = 3,
    RGPU_CU_FUNC_NUM_REGS = 4,
    RGPU_CU_FUNC_PTX_VERSION = 5,
    RGPU_CU_FUNC_BINARY_VERSION = 6,
    RGPU_CU_FUNC_ATTR_COUNT = 7,    /* the attributes reported by func_info */
};

/* CUDA's limit on a kernel's parameter buffer. */
#define RGPU_CU_MAX_PARAM_BYTES 32764u
/* Parameters per kernel a func_info answer lists at most. */
#define RGPU_CU_MAX_PARAMS 4096u

typedef struct rgpu_cu_dev rgpu_cu_dev_t;   /* the node's devices */
typedef struct rgpu_cu_ctx rgpu_cu_ctx_t;   /* a session's context on one device */

/* Fills buf (len bytes) with the next bytes of a host-to-device copy's data
 * (the frame's bulk); a link status when the client went away. */
typedef rgpu_status_t (*rgpu_cu_source_fn)(void *arg, void *buf, size_t len);
/* Takes the next len bytes of a device-to-host copy's data (sends them to
 * the client); a link status when the client went away. */
typedef rgpu_status_t (*rgpu_cu_sink_fn)(void *arg, const void *buf, size_t len);
/* Adds one HelloReply device property (CuDeviceParam numbering). */
typedef void (*rgpu_cu_param_fn)(void *arg, uint32_t param, const void *value, size_t len);

/* A function's attributes and parameter layout. */
typedef struct {
    int32_t attrs[RGPU_CU_FUNC_ATTR_COUNT];
    uint32_t n_params;                  /* 0 when unknown */
    uint32_t *param_offsets;            /* n_params each, owned by the caller */
    uint32_t *param_sizes;
    uint32_t param_bytes;               /* the parameter buffer's size; 0 when unknown */
} rgpu_cu_func_info_t;

/* A rectangle of device memory: height rows of width bytes, pitch apart
 * (height 1: a plain range). */
typedef struct {
    uint64_t addr;
    uint64_t pitch;
    uint64_t width;
    uint64_t height;
} rgpu_cu_rect_t;

typedef struct rgpu_cu_device_ops {
    const char *name;           /* the backend's name: "cuda", "cuda-emulated" */
    const char *platform_name;  /* HelloReply.platform_name */

    /* Finds the devices. On failure, why in words for clients and the log
     * (RGPU_ERR_NOT_FOUND: no driver or no device). */
    rgpu_status_t (*open)(const rgpu_server_config_t *config, rgpu_cu_dev_t **dev_p, char *why,
                          size_t why_cap);
    void (*close)(rgpu_cu_dev_t *dev);
    uint32_t (*count)(rgpu_cu_dev_t *dev);
    /* The driver's version (cuDriverGetVersion). */
    int (*driver_version)(rgpu_cu_dev_t *dev);
    /* Calls add once per property of device index. */
    void (*device_params)(rgpu_cu_dev_t *dev, uint32_t index, rgpu_cu_param_fn add, void *arg);
    /* "NVIDIA H200": for the startup log. */
    void (*device_name)(rgpu_cu_dev_t *dev, uint32_t index, char *out, size_t cap);

    /* A context of its own for one session on one device. */
    int (*ctx_create)(rgpu_cu_dev_t *dev, uint32_t index, rgpu_cu_ctx_t **ctx_p);
    /* Destroys the context and everything in it (memory, modules, streams,
     * events), whatever state it is in. */
    void (*ctx_destroy)(rgpu_cu_ctx_t *ctx);
    int (*ctx_sync)(rgpu_cu_ctx_t *ctx);

    int (*mem_alloc)(rgpu_cu_ctx_t *ctx, uint64_t size, uint64_t *dptr_p);
    int (*mem_free)(rgpu_cu_ctx_t *ctx, uint64_t dptr);
    int (*mem_info)(rgpu_cu_ctx_t *ctx, uint64_t *free_p, uint64_t *total_p);

    /* Loads a fatbinary (or cubin, or PTX); log gets the loader's words. */
    int (*module_load)(rgpu_cu_ctx_t *ctx, const void *image, size_t len, void **mod_p,
                       char *log, size_t log_cap);
    void (*module_unload)(rgpu_cu_ctx_t *ctx, void *mod);
    int (*function_get)(rgpu_cu_ctx_t *ctx, void *mod, const char *name, void **fn_p);
    /* info's arrays hold RGPU_CU_MAX_PARAMS entries. */
    int (*func_info)(rgpu_cu_ctx_t *ctx, void *fn, rgpu_cu_func_info_t *info);
    int (*func_set_attr)(rgpu_cu_ctx_t *ctx, void *fn, int32_t attr, int32_t value);
    int (*occupancy)(rgpu_cu_ctx_t *ctx, void *fn, uint32_t block_size, uint64_t dynamic_smem,
                     uint32_t flags, uint32_t *blocks_p);
    int (*global_get)(rgpu_cu_ctx_t *ctx, void *mod, const char *name, uint64_t *dptr_p,
                      uint64_t *size_p);

    int (*stream_create)(rgpu_cu_ctx_t *ctx, uint32_t flags, int32_t priority, void **stream_p);
    /* Queued work still completes. */
    int (*stream_destroy)(rgpu_cu_ctx_t *ctx, void *stream);
    int (*stream_sync)(rgpu_cu_ctx_t *ctx, void *stream);
    int (*stream_query)(rgpu_cu_ctx_t *ctx, void *stream);
    int (*stream_wait_event)(rgpu_cu_ctx_t *ctx, void *stream, void *event, uint32_t flags);

    int (*event_create)(rgpu_cu_ctx_t *ctx, uint32_t flags, void **event_p);
    int (*event_destroy)(rgpu_cu_ctx_t *ctx, void *event);
    int (*event_record)(rgpu_cu_ctx_t *ctx, void *event, void *stream, uint32_t flags);
    int (*event_sync)(rgpu_cu_ctx_t *ctx, void *event);
    int (*event_query)(rgpu_cu_ctx_t *ctx, void *event);
    int (*event_elapsed)(rgpu_cu_ctx_t *ctx, void *start, void *end, float *ms_p);

    /* Host to device: dst's bytes come from source, in row order (the
     * region packed). Returns when the data is the device layer's (it may
     * still be on its way to the device, in stream order); *link_p gets a
     * link status when source failed (then the copy is abandoned). */
    int (*copy_h2d)(rgpu_cu_ctx_t *ctx, void *stream, const rgpu_cu_rect_t *dst,
                    rgpu_cu_source_fn source, void *arg, rgpu_status_t *link_p);
    /* Device to host, after the stream's earlier work: src's bytes go to
     * sink in row order, in pieces. A failure after some pieces were sunk
     * returns the error: the caller says so in its reply. */
    int (*copy_d2h)(rgpu_cu_ctx_t *ctx, void *stream, const rgpu_cu_rect_t *src,
                    rgpu_cu_sink_fn sink, void *arg, rgpu_status_t *link_p);
    int (*copy_d2d)(rgpu_cu_ctx_t *ctx, void *stream, const rgpu_cu_rect_t *dst,
                    const rgpu_cu_rect_t *src);
    /* dst->width is in elements of element_size bytes (1, 2 or 4). */
    int (*memset)(rgpu_cu_ctx_t *ctx, void *stream, const rgpu_cu_rect_t *dst, uint32_t value,
                  uint32_t element_size);
    /* params: the kernel's parameter buffer, params_len bytes, already
     * checked against the function's parameter size when it is known. */
    int (*launch)(rgpu_cu_ctx_t *ctx, void *fn, const uint32_t grid[3], const uint32_t block[3],
                  uint32_t shared_mem, void *stream, const void *params, size_t params_len);
} rgpu_cu_device_ops_t;

extern const rgpu_cu_device_ops_t rgpu_cu_device_driver;   /* backend_cuda.c */
extern const rgpu_cu_device_ops_t rgpu_cu_device_emulated; /* backend_cuda_emulated.c */

/* The backend.h operations serving cuda.proto on a device layer
 * (cuda_session.c); each backend file puts them in its ops table with an
 * open that names its device layer. */
#define RGPU_CU_BACKEND_OPS(ops_name, dev_layer, open_fn, why_fn)                  \
    {                                                                             \
        .name = ops_name, .api = RGPU__API_FAMILY__API_CUDA, .open = open_fn,     \
        .open_failure = why_fn, .close = rgpu__cu_backend_close,                  \
        .describe = rgpu__cu_backend_describe, .hello_fill = rgpu__cu_hello_fill, \
        .session_open = rgpu__cu_session_open,                                    \
        .session_handle = rgpu__cu_session_handle,                                \
        .session_teardown = rgpu__cu_session_teardown,                            \
        .session_free = rgpu__cu_session_free,                                    \
    }

/* Opens the devices of dev_ops; on failure why says why in words. */
rgpu_status_t rgpu__cu_backend_open(const rgpu_cu_device_ops_t *dev_ops,
                                    const rgpu_server_config_t *config,
                                    rgpu_backend_t **backend_p, char *why, size_t why_cap);
void rgpu__cu_backend_close(rgpu_backend_t *be);
const char *rgpu__cu_backend_describe(rgpu_backend_t *be);
void rgpu__cu_hello_fill(rgpu_backend_t *be, Rgpu__HelloReply *reply);
rgpu_status_t rgpu__cu_session_open(rgpu_backend_t *be, rgpu_session_t *session, void **ctx_p);
rgpu_status_t rgpu__cu_session_handle(void *ctx, const rgpu_frame_header_t *header,
                                      const uint8_t *body, char *reason, size_t reason_cap);
void rgpu__cu_session_teardown(void *ctx);
void rgpu__cu_session_free(void *ctx);

/* A CUresult's name, for logs and error descriptions ("CUDA_ERROR_NOT_FOUND"). */
const char *rgpu__cu_result_name(int result);

#endif
