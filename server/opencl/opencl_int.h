/*
 * The OpenCL backend's private header: the types every file of
 * server/opencl/ shares, and the functions one file calls in another
 * (rgpu__cl_*, private to the backend). The backend is split by concern:
 *
 *   state.c           per-session state (staging pools, the handle table, events and wait lists,
 *                     replies and asynchronous errors) and the callbacks the platform runs
 *   objects.c         contexts, queues, buffers, sub-buffers, user events, releases and event callbacks
 *   transfers.c       buffer writes, reads (small, pipelined, non-blocking), copies, fills and rects
 *   images.c          images and samplers
 *   kernels.c         kernel launches, markers, migrations, finish and waits
 *   programs.c        programs (source, binary, build, compile, link), kernels and their arguments
 *   queries.c         clGetXxxInfo queries
 *   backend_opencl.c  the ops table: open, dispatch of frames, session lifetime
 *
 * See backend_opencl.c for how sessions, threads and transfers work.
 */
#ifndef RGPU_SERVER_OPENCL_INT_H
#define RGPU_SERVER_OPENCL_INT_H

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <CL/cl.h>

#include "../backend.h"
#include "../metrics.h"
#include "../session.h"
#include "source_check.h"
#include "opencl.pb-c.h"
#include "rgpu/htable.h"
#include "rgpu/log.h"
#include "rgpu/util.h"

/* ---- the backend (shared by every session) ---- */

struct rgpu_backend {
    cl_platform_id platform;
    char platform_name[256];
    char platform_version[256];
    cl_uint num_devices;
    cl_device_id *devices;
    uint64_t max_local_mem;     /* the largest CL_DEVICE_LOCAL_MEM_SIZE of the devices */
    Rgpu__Device *hello_devices;
    Rgpu__Device **hello_device_ptrs;
    char describe[512];
};

typedef struct rgpu_cl_handle {
    Rgpu__ClObjectKind kind;
    union {
        cl_context context;
        cl_command_queue queue;
        cl_mem mem;
        cl_program program;
        cl_kernel kernel;
        cl_event event;
        cl_sampler sampler;
        void *any;
    } cl;
    cl_context context;         /* queues and events: for failed-event stand-ins */
    uint64_t bytes;             /* buffers (not sub-buffers): for metrics */
    uint64_t size;              /* mem objects: their size */
    int parent;                 /* mem: 1 for sub-buffers */
    cl_mem parent_mem;          /* sub-buffers: the parent (held_parent's) */
    uint64_t origin;            /* sub-buffers: where they start in parent_mem */
    /* Images (mem objects with image_type != 0): what every transfer is
     * checked against. Unused dimensions are 1. 1D buffer images keep
     * their buffer in parent_mem (retained), with parent = 0. */
    cl_mem_object_type image_type;
    uint64_t image_dims[4];     /* width, height, depth, array size */
    uint32_t image_elem;        /* bytes per pixel */
    int user_pending;           /* user events not yet set */
    int out_of_order;           /* queues */
    /* Kernels: what each argument is, as the platform declares it (never
     * as the client says): RGPU_CL_ARG_* below, num_args entries. */
    uint8_t *arg_kinds;
    uint64_t *arg_local;        /* kernels: bytes of each __local argument */
    cl_mem_object_type *arg_image; /* kernels: the image type of each image argument */
    uint64_t local_total;       /* kernels: their sum */
    cl_uint num_args;
    uint64_t local_mem;         /* queues: their device's CL_DEVICE_LOCAL_MEM_SIZE */
    cl_command_queue zero_queue;    /* contexts: the server's own, zeroing new buffers */
    /* Pending user events: the waits answered when the client sets them
     * (rgpu_cl_waiter_t *; PoCL 3.1 never calls a callback on a user event
     * set to an error). Session thread only. */
    void **waiters;
    size_t n_waiters;
    /* Holds: a handle the client released stays alive, with its memory
     * counted against the lease, while a kernel argument, a sub-buffer or
     * a buffer image still refers to it (PoCL 3.1 keeps no reference of
     * its own for kernel arguments: a launch after the release read freed
     * memory and took the server down). */
    int holds;                  /* references from other handles */
    int released;               /* the client released it (or the session ended) */
    struct rgpu_cl_handle *held_parent;     /* sub-buffers, buffer images: their buffer */
    struct rgpu_cl_handle **arg_held;       /* kernels: the object each argument refers to */
} rgpu_cl_handle_t;

/* An argument's kind as the server knows it. A client's bytes reach the
 * platform only for RGPU_CL_ARG_VALUE; a memory object or a sampler only as
 * a handle the session owns; a device queue or event never. */
enum {
    RGPU_CL_ARG_UNKNOWN = 0,    /* the platform gave no argument info */
    RGPU_CL_ARG_VALUE,          /* plain bytes: scalars, vectors, structs */
    RGPU_CL_ARG_MEM,            /* __global / __constant pointers, images, pipes */
    RGPU_CL_ARG_LOCAL,          /* __local pointers */
    RGPU_CL_ARG_OPAQUE,         /* queue_t, clk_event_t, reserve_id_t: handles we do not serve */
    RGPU_CL_ARG_IMAGE,          /* image*_t: an image of this session, of that image type */
    RGPU_CL_ARG_SAMPLER,        /* sampler_t: a sampler of this session */
};

/* Staging chunks for writes, recycled: a fresh malloc of a few MiB per
 * chunk costs a page fault per 4 KiB, which is as slow as the network. */
#define RGPU_CL_POOL_MAX 8

/* Launch bodies up to this size are remembered (one of 3 dimensions with a
 * wait list of a few events is about 60 bytes). */
#define RGPU_CL_LAUNCH_MEMO_MAX 256

typedef struct {
    rgpu_backend_t *backend;
    rgpu_session_t *session;
    rgpu_htable_t handles;
    uint64_t chunk;
    pthread_mutex_t pool_lock;  /* the pool is refilled from event callbacks */
    void *pool[RGPU_CL_POOL_MAX];
    int pool_count;
    void *read_spare;           /* staging of the last non-blocking read, for the next */
    uint64_t staging_bytes;     /* read staging allocated (spare included), pool_lock */
    pthread_cond_t staging_freed;   /* signalled when staging_bytes goes down */
    uint64_t read_spare_size;
    void *read_small;           /* staging of small blocking reads (session thread only) */
    uint64_t read_small_size;
    /* The last kernel launch, decoded, with its body: a loop launching one
     * kernel with the same sizes sends the same bytes again and again, and
     * they are decoded once (session thread only). */
    Rgpu__ClNDRange *launch_memo;
    uint8_t launch_memo_body[RGPU_CL_LAUNCH_MEMO_MAX];
    uint32_t launch_memo_len;
    /* User events not yet set, including ones the client released while
     * still pending (kept in orphans, failed at teardown). While there are
     * any, a command may wait on something only the client can unblock, so
     * the session thread never blocks on the platform: waits, finishes and
     * blocking reads are answered from event callbacks instead, and the
     * session keeps receiving (the clSetUserEventStatus that unblocks them
     * may come from another thread of the program). Session thread only. */
    size_t user_pending;
    int user_failed;            /* a user event was set to an error status */
    cl_event *orphans;
    size_t n_orphans;
    /* Events nobody holds any more whose command has not ended, kept while
     * user events are pending: PoCL 3.1 aborts the whole server
     * (pocl_update_event_failed) when a user event fails under a command
     * whose event was already released. Released once they end (swept when
     * the array fills) or at teardown. Session thread only. */
    cl_event *held;
    size_t n_held, cap_held;
    /* Threads waiting for a command's end in place of a callback (see
     * rgpu__cl_on_complete), under pool_lock; wait_idle signals none left. */
    int wait_threads;
    struct rgpu_cl_wait_job *wait_queue, *wait_queue_tail;
    pthread_cond_t wait_idle;
} rgpu_cl_session_t;

/* At most this many threads of a session wait for commands at once; past
 * it, the waits queue up for them. */
#define RGPU_CL_MAX_WAIT_THREADS 32

typedef struct rgpu_cl_wait_job {
    struct rgpu_cl_wait_job *next;
    rgpu_cl_session_t *s;
    cl_event ev;
    void(CL_CALLBACK *fn)(cl_event, cl_int, void *);
    void *arg;
} rgpu_cl_wait_job_t;

/* Staging for a non-blocking read of size bytes: the last one's, when the
 * size matches (a read loop then pays no page faults), else a new one. */
/* Host memory the session's reads in flight may hold as staging (their
 * replies not sent yet). Past it the session waits for earlier reads to
 * leave (a program queueing many large non-blocking reads, as clpeak does,
 * just goes at the network's pace); while user events are pending, reads
 * may never leave, and it fails with CL_OUT_OF_HOST_MEMORY instead, so that
 * a hundred 1 GiB reads waiting on a user event cannot take the server's
 * memory. A single read larger than this gets it alone. */
#define RGPU_CL_STAGING_MAX (2ull << 30)

#define RGPU_CL_MAX_WAIT 4096

/* Embedded headers of one clCompileProgram. */
#define RGPU_CL_MAX_HEADERS 256

/* The most work-items one launch may have (see rgpu__cl_ndrange). */
#define RGPU_CL_MAX_WORK_ITEMS (1ull << 40)

/* Everything an enqueue needs: the queue, its wait list. */
typedef struct {
    rgpu_cl_handle_t *queue;
    cl_event *wait;
    cl_uint num_wait;
    cl_event ev;
    int may_block;              /* user events were pending when it began */
} rgpu_cl_cmd_t;

typedef struct {
    rgpu_session_t *session;
    rgpu_cl_session_t *s;
    uint64_t seq;
    uint64_t callback_id;
    uint64_t event_id;
    void *staging;
    uint64_t size;
} rgpu_cl_cb_t;

/* A write chunk reached the device: its staging goes back to the pool. */
typedef struct {
    rgpu_cl_session_t *s;
    void *buf;
} rgpu_cl_chunk_cb_t;

/* Blocking writes from this size on, to a device working in host memory, are
 * received straight into the mapped buffer. Smaller ones keep the staging
 * path: a map and an unmap are two device commands, which cost more than
 * the copy they save. Measured with `RGPU_BENCH_SERVER_CPUS=0 bench/run.sh
 * bw` on the 2-vCPU benchmark VM: mapped, 4-64 KiB writes fell from 0.48-0.50
 * to 0.32-0.36 of raw TCP; from 1 MiB on they gain (16-64 MiB: 0.77-0.83 ->
 * 0.94-1.02). */
#define RGPU_CL_WRITE_DIRECT_MIN (1u << 20)

/* Blocking reads up to this size are one read command into the session's
 * staging: map + unmap is two device commands on PoCL, and the next read's
 * map queues behind the last one's unmap. Above it, the copy into staging
 * costs more than the command it saves (PoCL's CPU device maps without
 * copying). Measured with `rgpu-bench bw` on the 2-vCPU benchmark VM: at
 * 64 KiB both ways cost the same with server and client on their own cores
 * and staging saves 10-20 us on one shared core; at 256 KiB staging is
 * 10-30 us slower on separate cores. The staging stays with the session (at
 * most this size) so that a read loop allocates once. */
#define RGPU_CL_READ_SMALL_MAX (64u << 10)

typedef struct {
    cl_mem mem;
    uint64_t offset;
    uint64_t size;
} rgpu_cl_read_arg_t;

typedef struct {
    size_t bo[3], ho[3], rg[3];
} rgpu_cl_rect_t;

typedef struct {
    cl_mem mem;
    const Rgpu__ClBufferRect *m;
    const rgpu_cl_rect_t *r;
} rgpu_cl_read_rect_arg_t;

typedef struct {
    const rgpu_cl_handle_t *img;
    const size_t *o, *r;
} rgpu_cl_read_image_arg_t;

/* A wait answered from event callbacks: the reply leaves when the last of
 * its events completes, and the session thread goes on receiving. */
typedef struct {
    rgpu_session_t *session;
    uint64_t seq;
    atomic_int left;
    atomic_int failed;
    cl_int fail_error;          /* what a failed event makes the wait return */
} rgpu_cl_waiter_t;

/* Kernels built here always carry argument info: the server decides each
 * argument's kind from it (rgpu__cl_set_arg), and some platforms keep it
 * only when asked. The flag is taken out of the options the client sees. */
#define RGPU_CL_ARG_INFO_FLAG " -cl-kernel-arg-info"

/* The most image formats one query answers (PoCL 3.1 has 44 per type). */
#define RGPU_CL_MAX_IMAGE_FORMATS 4096

typedef struct {
    rgpu_cl_handle_t **by_kind[8];
    size_t count[8];
} rgpu_cl_sweep_t;

/* ---- state.c ---- */

void rgpu__cl_event_drop(rgpu_cl_session_t *s, cl_event ev);
cl_int rgpu__cl_on_complete(rgpu_cl_session_t *s, cl_event ev, void(CL_CALLBACK *fn)(cl_event, cl_int, void *),
                            void *arg);
int rgpu__cl_may_block(const rgpu_cl_session_t *s);
void *rgpu__cl_read_staging_get(rgpu_cl_session_t *s, uint64_t size);
void rgpu__cl_read_staging_put(rgpu_cl_session_t *s, void *buf, uint64_t size);
void *rgpu__cl_pool_get(rgpu_cl_session_t *s);
rgpu_cl_handle_t *rgpu__cl_get(rgpu_cl_session_t *s, uint64_t id, Rgpu__ClObjectKind kind);
rgpu_cl_handle_t *rgpu__cl_get_buffer(rgpu_cl_session_t *s, uint64_t id);
rgpu_cl_handle_t *rgpu__cl_get_image(rgpu_cl_session_t *s, uint64_t id);
cl_int rgpu__cl_kind_error(Rgpu__ClObjectKind kind);
cl_int rgpu__cl_put(rgpu_cl_session_t *s, uint64_t id, Rgpu__ClObjectKind kind, void *obj,
                    rgpu_cl_handle_t **h_p);
void rgpu__cl_release_handle(rgpu_cl_handle_t *h);
void rgpu__cl_drop(rgpu_cl_session_t *s, rgpu_cl_handle_t *h);
void rgpu__cl_hold_arg(rgpu_cl_session_t *s, rgpu_cl_handle_t *k, cl_uint i, rgpu_cl_handle_t *obj);
rgpu_status_t rgpu__cl_async_error(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, cl_int err,
                                   const char *detail);
rgpu_status_t rgpu__cl_reply_status(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, cl_int err);
void rgpu__cl_event_keep(rgpu_cl_session_t *s, uint64_t id, cl_event ev, cl_context context);
void rgpu__cl_event_failed(rgpu_cl_session_t *s, uint64_t id, cl_context context, cl_int err);
cl_int rgpu__cl_wait_list(rgpu_cl_session_t *s, size_t n, const uint64_t *ids, cl_event **list_p);
cl_int rgpu__cl_cmd_begin(rgpu_cl_session_t *s, uint64_t queue, size_t n_wait, const uint64_t *wait,
                          rgpu_cl_cmd_t *cmd);
rgpu_status_t rgpu__cl_cmd_end(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, rgpu_cl_cmd_t *cmd,
                               uint64_t event_id, cl_int err);
cl_event *rgpu__cl_ev_out(rgpu_cl_cmd_t *cmd, uint64_t event_id);
void CL_CALLBACK rgpu__cl_free_cb(cl_event ev, cl_int status, void *arg);
void CL_CALLBACK rgpu__cl_chunk_cb(cl_event ev, cl_int status, void *arg);
void CL_CALLBACK rgpu__cl_notify_cb(cl_event ev, cl_int status, void *arg);
void CL_CALLBACK rgpu__cl_read_cb(cl_event ev, cl_int status, void *arg);

/* ---- objects.c ---- */

rgpu_status_t rgpu__cl_create_context(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                      Rgpu__ClCreateContext *m);
rgpu_status_t rgpu__cl_create_queue(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                    Rgpu__ClCreateQueue *m);
cl_int rgpu__cl_zero_image(rgpu_cl_handle_t *ctx, cl_mem mem, cl_mem_object_type type, const uint64_t dims[4]);
rgpu_status_t rgpu__cl_create_buffer(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                     Rgpu__ClCreateBuffer *m, char *reason, size_t reason_cap);
rgpu_status_t rgpu__cl_create_sub_buffer(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                         Rgpu__ClCreateSubBuffer *m);
rgpu_status_t rgpu__cl_release(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClRelease *m);
rgpu_status_t rgpu__cl_user_event(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                  Rgpu__ClCreateUserEvent *m);
rgpu_status_t rgpu__cl_set_user_event(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                      Rgpu__ClSetUserEventStatus *m);
rgpu_status_t rgpu__cl_set_event_callback(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                          Rgpu__ClSetEventCallback *m);

/* ---- transfers.c ---- */

rgpu_status_t rgpu__cl_write(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClWriteBuffer *m,
                             char *reason, size_t reason_cap);
cl_int rgpu__cl_read_async(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, rgpu_cl_cmd_t *cmd,
                           uint64_t event_id, cl_int (*enqueue)(rgpu_cl_cmd_t *, void *, const void *, cl_event *),
                           const void *arg, uint64_t size);
rgpu_status_t rgpu__cl_read(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClReadBuffer *m);
int rgpu__cl_range_ok(uint64_t offset, uint64_t size, uint64_t size_max);
rgpu_status_t rgpu__cl_copy(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClCopyBuffer *m);
rgpu_status_t rgpu__cl_fill(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClFillBuffer *m);
cl_mem rgpu__cl_rect_mem(const rgpu_cl_handle_t *h, size_t origin[3]);
int rgpu__cl_staged_write_begin(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, rgpu_cl_cmd_t *cmd,
                                uint64_t event_id, cl_int err, void **buf_p, rgpu_status_t *status_p);
rgpu_status_t rgpu__cl_staged_write_end(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, rgpu_cl_cmd_t *cmd,
                                        int blocking, uint64_t event_id, cl_event ev, void *buf, cl_int err);
rgpu_status_t rgpu__cl_write_rect(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClBufferRect *m,
                                  char *reason, size_t reason_cap);
rgpu_status_t rgpu__cl_read_rect(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClBufferRect *m);
rgpu_status_t rgpu__cl_copy_rect(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClBufferRect *m);

/* ---- images.c ---- */

int rgpu__cl_image_dims(cl_mem_object_type type, uint64_t w, uint64_t h, uint64_t d, uint64_t a,
                        uint64_t dims[4]);
rgpu_status_t rgpu__cl_create_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                    Rgpu__ClCreateImage *m, char *reason, size_t reason_cap);
rgpu_status_t rgpu__cl_write_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClImageRect *m,
                                   char *reason, size_t reason_cap);
rgpu_status_t rgpu__cl_read_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClImageRect *m);
rgpu_status_t rgpu__cl_copy_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClImageCopy *m);
rgpu_status_t rgpu__cl_fill_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClFillImage *m);
rgpu_status_t rgpu__cl_create_sampler(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                      Rgpu__ClCreateSampler *m);

/* ---- kernels.c ---- */

rgpu_status_t rgpu__cl_ndrange(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, const Rgpu__ClNDRange *m);
Rgpu__ClNDRange *rgpu__cl_launch_decode(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                        const uint8_t *body, int *owned);
rgpu_status_t rgpu__cl_marker(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClMarker *m);
rgpu_status_t rgpu__cl_migrate(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClMigrate *m);
void rgpu__cl_user_waiters_done(rgpu_cl_handle_t *h, cl_int status);
rgpu_status_t rgpu__cl_queue_op(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClQueueOp *m);
rgpu_status_t rgpu__cl_wait_events(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClWaitEvents *m);

/* ---- programs.c ---- */

rgpu_status_t rgpu__cl_create_program_source(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                             Rgpu__ClCreateProgramSource *m);
rgpu_status_t rgpu__cl_create_program_binary(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                             Rgpu__ClCreateProgramBinary *m, char *reason, size_t reason_cap);
rgpu_status_t rgpu__cl_build(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClBuildProgram *m);
rgpu_status_t rgpu__cl_compile(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClCompileProgram *m);
rgpu_status_t rgpu__cl_link(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClLinkProgram *m);
rgpu_status_t rgpu__cl_create_kernel(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                     Rgpu__ClCreateKernel *m);
rgpu_status_t rgpu__cl_set_arg(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClSetKernelArg *m);

/* ---- queries.c ---- */

rgpu_status_t rgpu__cl_get_info(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClGetInfo *m);

#endif
