/*
 * The OpenCL backend: runs a session's OpenCL calls on the node's platform.
 *
 * Every object the client creates lives in the session's handle table under
 * the client's id. Calls run in order on the session thread. Asynchronous
 * calls that fail are reported with MSG_ASYNC_ERROR, sent from the session
 * thread before anything that follows, so the client sees the error at its
 * next sync point. An enqueue that failed but promised an event still gets
 * one: a user event already set to the error, so waiting on it fails the
 * way OpenCL says it should.
 *
 * The session thread never waits on something only the client can unblock
 * (a user event it sets later): non-blocking writes and reads complete
 * through event callbacks. Blocking reads run here: small ones as one read
 * into a staging buffer the session keeps, larger ones pipelined: chunk i+1
 * is being copied from the device while chunk i is on the wire. Writes are
 * pipelined the other way: chunk i is copied to the device while chunk i+1
 * is still arriving.
 */
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

/* ---- per-session state ---- */

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
     * rgpu_cl_on_complete), under pool_lock; wait_idle signals none left. */
    int wait_threads;
    struct rgpu_cl_wait_job *wait_queue, *wait_queue_tail;
    pthread_cond_t wait_idle;
} rgpu_cl_session_t;

static void rgpu_cl_user_waiters_done(rgpu_cl_handle_t *h, cl_int status);
static int rgpu_cl_may_block(const rgpu_cl_session_t *s);

static int rgpu_cl_event_ended(cl_event ev)
{
    cl_int status = CL_COMPLETE;

    clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof(status), &status, NULL);
    return status <= CL_COMPLETE;       /* complete, or failed (negative) */
}

/* Releases the held events whose commands ended. */
static void rgpu_cl_held_sweep(rgpu_cl_session_t *s)
{
    size_t kept = 0;

    for (size_t i = 0; i < s->n_held; i++) {
        if (rgpu_cl_event_ended(s->held[i]))
            clReleaseEvent(s->held[i]);
        else
            s->held[kept++] = s->held[i];
    }
    s->n_held = kept;
}

/* Drops the session's reference to an event: at once, unless its command
 * may still wait on a user event that could fail (see held). */
static void rgpu_cl_event_drop(rgpu_cl_session_t *s, cl_event ev)
{
    if (!ev)
        return;
    if (!rgpu_cl_may_block(s) || rgpu_cl_event_ended(ev)) {
        clReleaseEvent(ev);
        return;
    }
    if (s->n_held == s->cap_held) {
        rgpu_cl_held_sweep(s);
        if (s->n_held * 2 >= s->cap_held) {
            size_t cap = s->cap_held ? s->cap_held * 2 : 64;
            cl_event *grown = realloc(s->held, cap * sizeof(*grown));
            if (!grown) {
                rgpu_warn("opencl", "%s: out of memory keeping an event; releasing it early",
                          rgpu_session_name(s->session));
                clReleaseEvent(ev);
                return;
            }
            s->held = grown;
            s->cap_held = cap;
        }
    }
    s->held[s->n_held++] = ev;
}

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

/* Waits for its job, then for the jobs queued past the thread limit, one
 * by one. While it runs, s->wait_threads counts it, so teardown (which
 * waits for that count to reach 0) has not finished and s is alive. */
static void *rgpu_cl_wait_thread(void *arg)
{
    rgpu_cl_wait_job_t *job = arg;
    rgpu_cl_session_t *s = job->s;

    while (job) {
        cl_int status = CL_COMPLETE;
        rgpu_cl_wait_job_t *next;

        clWaitForEvents(1, &job->ev);
        clGetEventInfo(job->ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof(status), &status, NULL);
        job->fn(job->ev, status < 0 ? status : CL_COMPLETE, job->arg);
        clReleaseEvent(job->ev);
        free(job);
        pthread_mutex_lock(&s->pool_lock);
        next = s->wait_queue;
        if (next) {
            s->wait_queue = next->next;
            if (!s->wait_queue)
                s->wait_queue_tail = NULL;
        } else if (--s->wait_threads == 0) {
            pthread_cond_broadcast(&s->wait_idle);
        }
        pthread_mutex_unlock(&s->pool_lock);
        job = next;
    }
    return NULL;
}

/* Runs fn(ev, status, arg) once ev's command has ended, completed or
 * failed, on some other thread. PoCL 3.1 never calls a callback on an
 * event that failed because a user event it waited on failed (so replies
 * would never leave, and staging and the session would never be freed):
 * while user events are pending, a thread of ours waits for the event
 * instead (clWaitForEvents does return on a failed event). Otherwise, and
 * past RGPU_CL_MAX_WAIT_THREADS, the platform's callback. fn must hold its
 * own session reference if it touches the session. Returns clSetEventCallback's
 * error when neither can be set up. Session thread. */
static cl_int rgpu_cl_on_complete(rgpu_cl_session_t *s, cl_event ev, void(CL_CALLBACK *fn)(cl_event, cl_int, void *),
                                  void *arg)
{
    rgpu_cl_wait_job_t *job;
    pthread_attr_t attr;
    int err;

    if (!rgpu_cl_may_block(s))
        return clSetEventCallback(ev, CL_COMPLETE, fn, arg);
    if (!(job = calloc(1, sizeof(*job))))
        return CL_OUT_OF_HOST_MEMORY;
    job->s = s;
    job->ev = ev;
    job->fn = fn;
    job->arg = arg;
    clRetainEvent(ev);
    pthread_mutex_lock(&s->pool_lock);
    if (s->wait_threads >= RGPU_CL_MAX_WAIT_THREADS) {
        /* Past the limit, a running thread takes it when it is done. */
        if (s->wait_queue_tail)
            s->wait_queue_tail->next = job;
        else
            s->wait_queue = job;
        s->wait_queue_tail = job;
        pthread_mutex_unlock(&s->pool_lock);
        return CL_SUCCESS;
    }
    s->wait_threads++;
    pthread_mutex_unlock(&s->pool_lock);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256u << 10);
    err = pthread_create(&(pthread_t){0}, &attr, rgpu_cl_wait_thread, job);
    pthread_attr_destroy(&attr);
    if (err == 0)
        return CL_SUCCESS;
    /* No new thread: a running one takes it, or, with none, the platform's
     * callback is all there is. */
    pthread_mutex_lock(&s->pool_lock);
    s->wait_threads--;
    if (s->wait_threads > 0) {
        if (s->wait_queue_tail)
            s->wait_queue_tail->next = job;
        else
            s->wait_queue = job;
        s->wait_queue_tail = job;
        pthread_mutex_unlock(&s->pool_lock);
        return CL_SUCCESS;
    }
    pthread_mutex_unlock(&s->pool_lock);
    clReleaseEvent(ev);
    free(job);
    return clSetEventCallback(ev, CL_COMPLETE, fn, arg);
}

/* Whether a wait on the platform could block the session thread for good. */
static int rgpu_cl_may_block(const rgpu_cl_session_t *s)
{
    return s->user_pending > 0 || s->user_failed;
}

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

static void *rgpu_cl_read_staging_get(rgpu_cl_session_t *s, uint64_t size)
{
    void *buf = NULL, *spare = NULL;
    int over = 0;

    pthread_mutex_lock(&s->pool_lock);
    if (s->read_spare && s->read_spare_size == size) {
        buf = s->read_spare;
        s->read_spare = NULL;
        pthread_mutex_unlock(&s->pool_lock);
        return buf;
    }
    if (s->read_spare && size > RGPU_CL_STAGING_MAX - s->staging_bytes) {
        /* The spare of another size goes first. */
        spare = s->read_spare;
        s->read_spare = NULL;
        s->staging_bytes -= s->read_spare_size;
    }
    while (s->staging_bytes && size > RGPU_CL_STAGING_MAX - s->staging_bytes && !rgpu_cl_may_block(s))
        pthread_cond_wait(&s->staging_freed, &s->pool_lock);
    if (s->staging_bytes && size > RGPU_CL_STAGING_MAX - s->staging_bytes)
        over = 1;
    else
        s->staging_bytes += size;
    pthread_mutex_unlock(&s->pool_lock);
    free(spare);
    if (over)
        return NULL;
    if (!(buf = malloc(size ? size : 1))) {
        pthread_mutex_lock(&s->pool_lock);
        s->staging_bytes -= size;
        pthread_cond_broadcast(&s->staging_freed);
        pthread_mutex_unlock(&s->pool_lock);
    }
    return buf;
}

static void rgpu_cl_read_staging_put(rgpu_cl_session_t *s, void *buf, uint64_t size)
{
    pthread_mutex_lock(&s->pool_lock);
    if (!s->read_spare) {
        s->read_spare = buf;        /* still counted */
        s->read_spare_size = size;
        buf = NULL;
    } else {
        s->staging_bytes -= size;
        pthread_cond_broadcast(&s->staging_freed);
    }
    pthread_mutex_unlock(&s->pool_lock);
    free(buf);
}

static void *rgpu_cl_pool_get(rgpu_cl_session_t *s)
{
    void *buf = NULL;

    pthread_mutex_lock(&s->pool_lock);
    if (s->pool_count > 0)
        buf = s->pool[--s->pool_count];
    pthread_mutex_unlock(&s->pool_lock);
    return buf ? buf : malloc(s->chunk);
}

static void rgpu_cl_pool_put(rgpu_cl_session_t *s, void *buf)
{
    pthread_mutex_lock(&s->pool_lock);
    if (s->pool_count < RGPU_CL_POOL_MAX) {
        s->pool[s->pool_count++] = buf;
        buf = NULL;
    }
    pthread_mutex_unlock(&s->pool_lock);
    free(buf);
}

#define RGPU_CL_MAX_WAIT 4096

/* Embedded headers of one clCompileProgram. */
#define RGPU_CL_MAX_HEADERS 256

/* The most work-items one launch may have (see rgpu_cl_ndrange). */
#define RGPU_CL_MAX_WORK_ITEMS (1ull << 40)

static const char *rgpu_cl_msg_name(uint16_t type)
{
    switch (type) {
    case RGPU__MSG_TYPE__MSG_CL_CREATE_CONTEXT: return "clCreateContext";
    case RGPU__MSG_TYPE__MSG_CL_CREATE_QUEUE: return "clCreateCommandQueue";
    case RGPU__MSG_TYPE__MSG_CL_CREATE_BUFFER: return "clCreateBuffer";
    case RGPU__MSG_TYPE__MSG_CL_CREATE_SUB_BUFFER: return "clCreateSubBuffer";
    case RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_SOURCE: return "clCreateProgramWithSource";
    case RGPU__MSG_TYPE__MSG_CL_CREATE_KERNEL: return "clCreateKernel";
    case RGPU__MSG_TYPE__MSG_CL_SET_KERNEL_ARG: return "clSetKernelArg";
    case RGPU__MSG_TYPE__MSG_CL_RELEASE: return "clRelease";
    case RGPU__MSG_TYPE__MSG_CL_CREATE_USER_EVENT: return "clCreateUserEvent";
    case RGPU__MSG_TYPE__MSG_CL_SET_USER_EVENT_STATUS: return "clSetUserEventStatus";
    case RGPU__MSG_TYPE__MSG_CL_SET_EVENT_CALLBACK: return "clSetEventCallback";
    case RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER: return "clEnqueueWriteBuffer";
    case RGPU__MSG_TYPE__MSG_CL_READ_BUFFER: return "clEnqueueReadBuffer";
    case RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER: return "clEnqueueCopyBuffer";
    case RGPU__MSG_TYPE__MSG_CL_FILL_BUFFER: return "clEnqueueFillBuffer";
    case RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER_RECT: return "clEnqueueWriteBufferRect";
    case RGPU__MSG_TYPE__MSG_CL_READ_BUFFER_RECT: return "clEnqueueReadBufferRect";
    case RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER_RECT: return "clEnqueueCopyBufferRect";
    case RGPU__MSG_TYPE__MSG_CL_NDRANGE: return "clEnqueueNDRangeKernel";
    case RGPU__MSG_TYPE__MSG_CL_MARKER: return "clEnqueueMarker/Barrier";
    case RGPU__MSG_TYPE__MSG_CL_MIGRATE: return "clEnqueueMigrateMemObjects";
    case RGPU__MSG_TYPE__MSG_CL_FLUSH: return "clFlush";
    case RGPU__MSG_TYPE__MSG_CL_CREATE_IMAGE: return "clCreateImage";
    case RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE: return "clEnqueueWriteImage";
    case RGPU__MSG_TYPE__MSG_CL_READ_IMAGE: return "clEnqueueReadImage";
    case RGPU__MSG_TYPE__MSG_CL_COPY_IMAGE: return "clEnqueueCopyImage";
    case RGPU__MSG_TYPE__MSG_CL_FILL_IMAGE: return "clEnqueueFillImage";
    case RGPU__MSG_TYPE__MSG_CL_CREATE_SAMPLER: return "clCreateSampler";
    default: return "call";
    }
}

/* ---- handles ---- */

static rgpu_cl_handle_t *rgpu_cl_get(rgpu_cl_session_t *s, uint64_t id, Rgpu__ClObjectKind kind)
{
    rgpu_cl_handle_t *h = rgpu_htable_find(&s->handles, id);

    return h && h->kind == kind ? h : NULL;
}

/* A buffer or sub-buffer of the session (never an image: buffer commands
 * on an image would treat its storage as bytes the platform lays out). */
static rgpu_cl_handle_t *rgpu_cl_get_buffer(rgpu_cl_session_t *s, uint64_t id)
{
    rgpu_cl_handle_t *h = rgpu_cl_get(s, id, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM);

    return h && !h->image_type ? h : NULL;
}

/* An image of the session. */
static rgpu_cl_handle_t *rgpu_cl_get_image(rgpu_cl_session_t *s, uint64_t id)
{
    rgpu_cl_handle_t *h = rgpu_cl_get(s, id, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM);

    return h && h->image_type ? h : NULL;
}

static cl_int rgpu_cl_kind_error(Rgpu__ClObjectKind kind)
{
    switch (kind) {
    case RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT: return CL_INVALID_CONTEXT;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE: return CL_INVALID_COMMAND_QUEUE;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_MEM: return CL_INVALID_MEM_OBJECT;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM: return CL_INVALID_PROGRAM;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL: return CL_INVALID_KERNEL;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT: return CL_INVALID_EVENT;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER: return CL_INVALID_SAMPLER;
    default: return CL_INVALID_VALUE;
    }
}

/* Adds an object under the client's id. On failure the object is released
 * and the client's id stays unknown (a later use reports the invalid id). */
static cl_int rgpu_cl_put(rgpu_cl_session_t *s, uint64_t id, Rgpu__ClObjectKind kind, void *obj,
                          rgpu_cl_handle_t **h_p)
{
    rgpu_cl_handle_t *h = calloc(1, sizeof(*h));

    if (!h || rgpu_htable_insert(&s->handles, id, h) != RGPU_OK) {
        rgpu_warn("opencl", "%s: cannot register object id %llu (duplicate id or out of memory)",
                  rgpu_session_name(s->session), (unsigned long long)id);
        free(h);
        return CL_OUT_OF_HOST_MEMORY;
    }
    h->kind = kind;
    h->cl.any = obj;
    if (h_p)
        *h_p = h;
    return CL_SUCCESS;
}

static void rgpu_cl_release_handle(rgpu_cl_handle_t *h)
{
    switch (h->kind) {
    case RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT:
        if (h->zero_queue)
            clReleaseCommandQueue(h->zero_queue);
        clReleaseContext(h->cl.context);
        break;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE: clReleaseCommandQueue(h->cl.queue); break;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_MEM:
        clReleaseMemObject(h->cl.mem);
        if (h->bytes) {
            atomic_fetch_sub(&rgpu_metrics.buffer_bytes, (long long)h->bytes);
            atomic_fetch_sub(&rgpu_metrics.buffers, 1);
        }
        break;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM: clReleaseProgram(h->cl.program); break;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL: clReleaseKernel(h->cl.kernel); break;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT:
        if (h->cl.event)
            clReleaseEvent(h->cl.event);
        break;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER: clReleaseSampler(h->cl.sampler); break;
    default: break;
    }
    free(h->arg_kinds);
    free(h->arg_held);
    free(h->arg_local);
    free(h->arg_image);
    free(h->waiters);
    free(h);
}

static void rgpu_cl_unhold(rgpu_cl_session_t *s, rgpu_cl_handle_t *h);

/* Releases a handle nothing refers to any more: its memory goes back to
 * the lease, and what it held is let go. Session thread. */
static void rgpu_cl_final(rgpu_cl_session_t *s, rgpu_cl_handle_t *h)
{
    rgpu_cl_handle_t *parent = h->held_parent, **args = h->arg_held;
    cl_uint n = h->num_args;

    h->arg_held = NULL;
    if (h->kind == RGPU__CL_OBJECT_KIND__CL_OBJ_MEM && h->bytes) {
        rgpu_session_mem_unreserve(s->session, h->bytes);
        rgpu_session_memory_add(s->session, -(int64_t)h->bytes);
    }
    rgpu_cl_release_handle(h);
    for (cl_uint i = 0; args && i < n; i++) {
        if (args[i])
            rgpu_cl_unhold(s, args[i]);
    }
    free(args);
    if (parent)
        rgpu_cl_unhold(s, parent);
}

static void rgpu_cl_unhold(rgpu_cl_session_t *s, rgpu_cl_handle_t *h)
{
    if (--h->holds == 0 && h->released)
        rgpu_cl_final(s, h);
}

/* The client released h (already out of the handle table), or the session
 * ends: it goes now, or when the last handle holding it lets go. */
static void rgpu_cl_drop(rgpu_cl_session_t *s, rgpu_cl_handle_t *h)
{
    h->released = 1;
    if (h->holds == 0)
        rgpu_cl_final(s, h);
}

/* Kernel k's argument i now refers to obj (NULL: none). */
static void rgpu_cl_hold_arg(rgpu_cl_session_t *s, rgpu_cl_handle_t *k, cl_uint i, rgpu_cl_handle_t *obj)
{
    rgpu_cl_handle_t *old = k->arg_held[i];

    if (old == obj)
        return;
    if (obj)
        obj->holds++;
    k->arg_held[i] = obj;
    if (old)
        rgpu_cl_unhold(s, old);
}

/* ---- talking to the client ---- */

static rgpu_status_t rgpu_cl_async_error(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, cl_int err,
                                         const char *detail)
{
    Rgpu__AsyncError msg = RGPU__ASYNC_ERROR__INIT;
    char what[256];

    snprintf(what, sizeof(what), "%s failed with error %d%s%s", rgpu_cl_msg_name(hdr->type), err,
             detail ? ": " : "", detail ? detail : "");
    rgpu_debug("opencl", "%s: %s", rgpu_session_name(s->session), what);
    msg.seq = hdr->seq;
    msg.msg_type = hdr->type;
    msg.cl_error = err;
    msg.what = what;
    return rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_ASYNC_ERROR, 0, &msg.base, NULL, 0);
}

static rgpu_status_t rgpu_cl_reply_status(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, cl_int err)
{
    Rgpu__ClStatusReply reply = RGPU__CL_STATUS_REPLY__INIT;

    reply.cl_error = err;
    return rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_STATUS_REPLY, hdr->seq, &reply.base, NULL, 0);
}

/* ---- events and wait lists ---- */

/* Registers the event an enqueue produced under the client's id; with no
 * id the event is not wanted and released. */
static void rgpu_cl_event_keep(rgpu_cl_session_t *s, uint64_t id, cl_event ev, cl_context context)
{
    rgpu_cl_handle_t *h;

    if (!ev)
        return;
    if (!id || rgpu_cl_put(s, id, RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT, ev, &h) != CL_SUCCESS) {
        rgpu_cl_event_drop(s, ev);
        return;
    }
    h->context = context;
}

/* The event of a failed enqueue: a user event already set to the error. */
static void rgpu_cl_event_failed(rgpu_cl_session_t *s, uint64_t id, cl_context context, cl_int err)
{
    cl_event ev;

    if (!id || !context)
        return;
    ev = clCreateUserEvent(context, NULL);
    if (!ev)
        return;
    clSetUserEventStatus(ev, err < 0 ? err : CL_INVALID_OPERATION);
    rgpu_cl_event_keep(s, id, ev, context);
}

static cl_int rgpu_cl_wait_list(rgpu_cl_session_t *s, size_t n, const uint64_t *ids, cl_event **list_p)
{
    cl_event *list;

    *list_p = NULL;
    if (n == 0)
        return CL_SUCCESS;
    if (n > RGPU_CL_MAX_WAIT)
        return CL_INVALID_EVENT_WAIT_LIST;
    list = malloc(n * sizeof(*list));
    if (!list)
        return CL_OUT_OF_HOST_MEMORY;
    for (size_t i = 0; i < n; i++) {
        rgpu_cl_handle_t *h = rgpu_cl_get(s, ids[i], RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT);
        cl_int status = CL_COMPLETE;

        if (!h) {
            free(list);
            return CL_INVALID_EVENT_WAIT_LIST;
        }
        /* A command waiting on a failed event fails (OpenCL 1.2, 5.10).
         * PoCL 3.1 instead never runs it, so a blocking command would hold
         * the session thread forever: refuse it here. (An event that fails
         * after the command was enqueued is the platform's to handle.) */
        clGetEventInfo(h->cl.event, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof(status), &status, NULL);
        if (status < 0) {
            free(list);
            return CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST;
        }
        list[i] = h->cl.event;
    }
    *list_p = list;
    return CL_SUCCESS;
}

/* Everything an enqueue needs: the queue, its wait list. */
typedef struct {
    rgpu_cl_handle_t *queue;
    cl_event *wait;
    cl_uint num_wait;
    cl_event ev;
    int may_block;              /* user events were pending when it began */
} rgpu_cl_cmd_t;

static cl_int rgpu_cl_cmd_begin(rgpu_cl_session_t *s, uint64_t queue, size_t n_wait, const uint64_t *wait,
                                rgpu_cl_cmd_t *cmd)
{
    memset(cmd, 0, sizeof(*cmd));
    cmd->queue = rgpu_cl_get(s, queue, RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE);
    if (!cmd->queue)
        return CL_INVALID_COMMAND_QUEUE;
    cmd->num_wait = (cl_uint)n_wait;
    cmd->may_block = rgpu_cl_may_block(s);
    return rgpu_cl_wait_list(s, n_wait, wait, &cmd->wait);
}

/* Finishes an asynchronous enqueue: keeps its event or reports its error. */
static rgpu_status_t rgpu_cl_cmd_end(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, rgpu_cl_cmd_t *cmd,
                                     uint64_t event_id, cl_int err)
{
    cl_context context = cmd->queue ? cmd->queue->context : NULL;

    free(cmd->wait);
    if (err == CL_SUCCESS) {
        rgpu_cl_event_keep(s, event_id, cmd->ev, context);
        return RGPU_OK;
    }
    rgpu_cl_event_drop(s, cmd->ev);
    rgpu_cl_event_failed(s, event_id, context, err);
    return rgpu_cl_async_error(s, hdr, err, NULL);
}

/* Where an enqueue puts its event: always somewhere when it waits on
 * others. PoCL 3.1 aborts the whole server (pocl_update_event_failed) when
 * a user event fails under a command that has no event of its own. */
static cl_event *rgpu_cl_ev_out(rgpu_cl_cmd_t *cmd, uint64_t event_id)
{
    /* In an in-order queue a command also waits, implicitly, on the one
     * before it, which may wait on a user event. */
    return event_id || cmd->num_wait || cmd->may_block ? &cmd->ev : NULL;
}

/* ---- callbacks (run on the platform's threads) ---- */

typedef struct {
    rgpu_session_t *session;
    rgpu_cl_session_t *s;
    uint64_t seq;
    uint64_t callback_id;
    uint64_t event_id;
    void *staging;
    uint64_t size;
} rgpu_cl_cb_t;

static void CL_CALLBACK rgpu_cl_free_cb(cl_event ev, cl_int status, void *arg)
{
    free(arg);
}

/* A write chunk reached the device: its staging goes back to the pool. */
typedef struct {
    rgpu_cl_session_t *s;
    void *buf;
} rgpu_cl_chunk_cb_t;

static void CL_CALLBACK rgpu_cl_chunk_cb(cl_event ev, cl_int status, void *arg)
{
    rgpu_cl_chunk_cb_t *cb = arg;
    rgpu_session_t *session = cb->s->session;

    rgpu_cl_pool_put(cb->s, cb->buf);
    free(cb);
    rgpu_session_unref(session);
}

static void CL_CALLBACK rgpu_cl_notify_cb(cl_event ev, cl_int status, void *arg)
{
    rgpu_cl_cb_t *cb = arg;
    Rgpu__EventNotify note = RGPU__EVENT_NOTIFY__INIT;

    note.callback_id = cb->callback_id;
    note.event = cb->event_id;
    note.status = status;
    rgpu_session_post(cb->session, RGPU__MSG_TYPE__MSG_EVENT_NOTIFY, 0, &note.base, NULL, 0, NULL, NULL);
    rgpu_session_unref(cb->session);
    free(cb);
}

/* A non-blocking read's reply has left (or was dropped): recycle its staging. */
static void rgpu_cl_read_sent(void *arg)
{
    rgpu_cl_cb_t *cb = arg;
    rgpu_session_t *session = cb->session;

    rgpu_cl_read_staging_put(cb->s, cb->staging, cb->size);
    free(cb);
    rgpu_session_unref(session);
}

/* A non-blocking read completed: its reply leaves with the data. */
static void CL_CALLBACK rgpu_cl_read_cb(cl_event ev, cl_int status, void *arg)
{
    rgpu_cl_cb_t *cb = arg;
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;

    /* The command ended abnormally (an event it waited on failed, PoCL's
     * -1): what a blocking read returns then. */
    reply.cl_error = status < 0 ? CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST : CL_SUCCESS;
    if (status < 0) {
        rgpu_session_post(cb->session, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, cb->seq, &reply.base, NULL, 0, NULL, NULL);
        rgpu_cl_read_sent(cb);
    } else {
        /* The staging goes back once the sender thread has sent it. */
        rgpu_session_post(cb->session, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, cb->seq, &reply.base, cb->staging,
                          cb->size, rgpu_cl_read_sent, cb);
    }
}

/* ---- objects ---- */

static rgpu_status_t rgpu_cl_create_context(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                            Rgpu__ClCreateContext *m)
{
    cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)s->backend->platform, 0};
    cl_device_id devs[64];
    cl_context ctx;
    cl_int err = CL_SUCCESS;

    if (m->n_devices == 0 || m->n_devices > 64)
        err = CL_INVALID_VALUE;
    for (size_t i = 0; err == CL_SUCCESS && i < m->n_devices; i++) {
        if (m->devices[i] >= s->backend->num_devices ||
            !rgpu_session_device_allowed(s->session, m->devices[i]))
            err = CL_INVALID_DEVICE;     /* not this server's, or not leased */
        else
            devs[i] = s->backend->devices[m->devices[i]];
    }
    if (err == CL_SUCCESS) {
        ctx = clCreateContext(props, (cl_uint)m->n_devices, devs, NULL, NULL, &err);
        if (err == CL_SUCCESS)
            err = rgpu_cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT, ctx, NULL);
        if (err != CL_SUCCESS && ctx)
            clReleaseContext(ctx);
    }
    return err == CL_SUCCESS ? RGPU_OK : rgpu_cl_async_error(s, hdr, err, NULL);
}

static rgpu_status_t rgpu_cl_create_queue(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                          Rgpu__ClCreateQueue *m)
{
    rgpu_cl_handle_t *ctx = rgpu_cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    rgpu_cl_handle_t *h;
    cl_command_queue q = NULL;
    cl_int err;

    if (!ctx)
        err = CL_INVALID_CONTEXT;
    else if (m->device >= s->backend->num_devices || !rgpu_session_device_allowed(s->session, m->device))
        err = CL_INVALID_DEVICE;
    else
        q = clCreateCommandQueue(ctx->cl.context, s->backend->devices[m->device], m->properties, &err);
    if (err == CL_SUCCESS && (err = rgpu_cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE, q, &h)) == CL_SUCCESS) {
        cl_ulong local = 0;
        h->context = ctx->cl.context;
        h->out_of_order = (m->properties & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) != 0;
        clGetDeviceInfo(s->backend->devices[m->device], CL_DEVICE_LOCAL_MEM_SIZE, sizeof(local), &local, NULL);
        h->local_mem = local;
        return RGPU_OK;
    }
    if (q)
        clReleaseCommandQueue(q);
    return rgpu_cl_async_error(s, hdr, err, NULL);
}

/* Zeroes a new buffer before its session can read it. The platform's
 * allocator serves every session of this one process: without this, a new
 * buffer could hold what another tenant's freed buffer held. (A GPU driver
 * zeroes memory between processes, not within one.) On a queue of the
 * server's own, finished before the buffer is handed out, so no command of
 * the client can run before or during it. */
static cl_int rgpu_cl_zero_queue(rgpu_cl_handle_t *ctx);

static cl_int rgpu_cl_zero(rgpu_cl_handle_t *ctx, cl_mem mem, uint64_t size)
{
    static const cl_uchar zero = 0;
    cl_int err = rgpu_cl_zero_queue(ctx);

    if (err != CL_SUCCESS)
        return err;
    err = clEnqueueFillBuffer(ctx->zero_queue, mem, &zero, 1, 0, size, 0, NULL, NULL);
    return err == CL_SUCCESS ? clFinish(ctx->zero_queue) : err;
}

/* The same for a new image (whole, in pixels: dims as rgpu_cl_image_dims). */
static cl_int rgpu_cl_zero_image(rgpu_cl_handle_t *ctx, cl_mem mem, cl_mem_object_type type, const uint64_t dims[4])
{
    static const cl_uint zero[4] = {0, 0, 0, 0};
    size_t origin[3] = {0, 0, 0}, region[3] = {dims[0], dims[1], dims[2]};
    cl_int err = rgpu_cl_zero_queue(ctx);

    if (type == CL_MEM_OBJECT_IMAGE1D_ARRAY)
        region[1] = dims[3];
    else if (type == CL_MEM_OBJECT_IMAGE2D_ARRAY)
        region[2] = dims[3];
    if (err != CL_SUCCESS)
        return err;
    err = clEnqueueFillImage(ctx->zero_queue, mem, zero, origin, region, 0, NULL, NULL);
    return err == CL_SUCCESS ? clFinish(ctx->zero_queue) : err;
}

/* The context's zero_queue, created on first use. */
static cl_int rgpu_cl_zero_queue(rgpu_cl_handle_t *ctx)
{
    cl_int err;

    if (!ctx->zero_queue) {
        cl_device_id dev;

        err = clGetContextInfo(ctx->cl.context, CL_CONTEXT_DEVICES, sizeof(dev), &dev, NULL);
        if (err != CL_SUCCESS && err != CL_INVALID_VALUE)   /* several devices: the first one's */
            return err;
        if (err == CL_INVALID_VALUE) {
            cl_device_id devs[64];
            if ((err = clGetContextInfo(ctx->cl.context, CL_CONTEXT_DEVICES, sizeof(devs), devs, NULL)) != CL_SUCCESS)
                return err;
            dev = devs[0];
        }
        ctx->zero_queue = clCreateCommandQueue(ctx->cl.context, dev, 0, &err);
        if (err != CL_SUCCESS)
            return err;
    }
    return CL_SUCCESS;
}

static rgpu_status_t rgpu_cl_create_buffer(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                           Rgpu__ClCreateBuffer *m, char *reason, size_t reason_cap)
{
    rgpu_cl_handle_t *ctx = rgpu_cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    rgpu_cl_handle_t *h;
    void *init = NULL;
    cl_mem mem = NULL;
    cl_int err = CL_SUCCESS;
    int reserved = 0;
    rgpu_status_t status;

    if (hdr->bulk_len && hdr->bulk_len != m->size) {
        snprintf(reason, reason_cap, "clCreateBuffer of %llu bytes carries %llu bytes of contents",
                 (unsigned long long)m->size, (unsigned long long)hdr->bulk_len);
        return RGPU_ERR_PROTOCOL;
    }
    /* Everything is checked, and the lease's memory reserved, before a byte
     * of the contents is received or allocated. */
    if (!ctx)
        err = CL_INVALID_CONTEXT;
    else if (m->size == 0)
        err = CL_INVALID_BUFFER_SIZE;
    else if (hdr->bulk_len && !(m->flags & CL_MEM_COPY_HOST_PTR))
        err = CL_INVALID_HOST_PTR;
    else if (!hdr->bulk_len && (m->flags & (CL_MEM_COPY_HOST_PTR | CL_MEM_USE_HOST_PTR)))
        err = CL_INVALID_HOST_PTR;
    else if (rgpu_session_mem_reserve(s->session, m->size) != 0)
        err = CL_MEM_OBJECT_ALLOCATION_FAILURE;   /* the lease's quota, whatever the client claims */
    else
        reserved = 1;
    if (err == CL_SUCCESS && hdr->bulk_len && !(init = malloc(hdr->bulk_len)))
        err = CL_OUT_OF_HOST_MEMORY;
    if (err != CL_SUCCESS) {
        if (reserved)
            rgpu_session_mem_unreserve(s->session, m->size);
        status = rgpu_cl_async_error(s, hdr, err, err == CL_MEM_OBJECT_ALLOCATION_FAILURE
                                                      ? "the lease's memory quota is used up" : NULL);
        return status;
    }
    if (init && (status = rgpu_session_pull(s->session, init, hdr->bulk_len)) != RGPU_OK) {
        rgpu_session_mem_unreserve(s->session, m->size);
        free(init);
        return status;
    }
    mem = clCreateBuffer(ctx->cl.context, m->flags & ~(cl_mem_flags)CL_MEM_USE_HOST_PTR, m->size, init, &err);
    free(init);
    if (err == CL_SUCCESS && !hdr->bulk_len)
        err = rgpu_cl_zero(ctx, mem, m->size);
    if (err == CL_SUCCESS && (err = rgpu_cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, mem, &h)) == CL_SUCCESS) {
        h->bytes = h->size = m->size;
        rgpu_session_memory_add(s->session, (int64_t)m->size);
        atomic_fetch_add(&rgpu_metrics.buffer_bytes, (long long)m->size);
        atomic_fetch_add(&rgpu_metrics.buffers, 1);
        return RGPU_OK;
    }
    rgpu_session_mem_unreserve(s->session, m->size);
    if (mem)
        clReleaseMemObject(mem);
    return rgpu_cl_async_error(s, hdr, err, NULL);
}

static rgpu_status_t rgpu_cl_create_sub_buffer(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                               Rgpu__ClCreateSubBuffer *m)
{
    rgpu_cl_handle_t *parent = rgpu_cl_get_buffer(s, m->parent);
    cl_buffer_region region = {m->origin, m->size};
    rgpu_cl_handle_t *h;
    cl_mem mem = NULL;
    cl_int err;

    if (!parent || parent->parent)
        err = CL_INVALID_MEM_OBJECT;
    else if (m->size == 0)
        err = CL_INVALID_BUFFER_SIZE;
    else if (m->origin > parent->size || m->size > parent->size - m->origin)
        err = CL_INVALID_VALUE;
    else
        mem = clCreateSubBuffer(parent->cl.mem, m->flags, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
    if (err == CL_SUCCESS && (err = rgpu_cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, mem, &h)) == CL_SUCCESS) {
        h->size = m->size;
        h->parent = 1;
        h->origin = m->origin;
        h->parent_mem = parent->cl.mem;
        h->held_parent = parent;
        parent->holds++;
        return RGPU_OK;
    }
    if (mem)
        clReleaseMemObject(mem);
    return rgpu_cl_async_error(s, hdr, err, NULL);
}

static rgpu_status_t rgpu_cl_release(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClRelease *m)
{
    rgpu_cl_handle_t *h = rgpu_htable_find(&s->handles, m->id);

    if (!h || h->kind != m->kind)
        return rgpu_cl_async_error(s, hdr, rgpu_cl_kind_error(m->kind), "unknown object");
    if (h->kind == RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT && h->user_pending) {
        /* Commands may still wait on it, and nobody can set it any more
         * (as locally, they never run): it stays pending until teardown
         * fails it. */
        cl_event *grown = realloc(s->orphans, (s->n_orphans + 1) * sizeof(*grown));
        if (!grown)
            return rgpu_cl_async_error(s, hdr, CL_OUT_OF_HOST_MEMORY, NULL);
        s->orphans = grown;
        s->orphans[s->n_orphans++] = h->cl.event;
        clRetainEvent(h->cl.event);
        rgpu_cl_user_waiters_done(h, CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
    }
    rgpu_htable_remove(&s->handles, m->id);
    if (h->kind == RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT) {
        rgpu_cl_event_drop(s, h->cl.event);
        h->cl.event = NULL;
    }
    rgpu_cl_drop(s, h);
    return RGPU_OK;
}

static rgpu_status_t rgpu_cl_user_event(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                        Rgpu__ClCreateUserEvent *m)
{
    rgpu_cl_handle_t *ctx = rgpu_cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    rgpu_cl_handle_t *h;
    cl_event ev = NULL;
    cl_int err;

    if (!ctx)
        err = CL_INVALID_CONTEXT;
    else
        ev = clCreateUserEvent(ctx->cl.context, &err);
    if (err == CL_SUCCESS && (err = rgpu_cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT, ev, &h)) == CL_SUCCESS) {
        h->context = ctx->cl.context;
        h->user_pending = 1;
        s->user_pending++;
        return RGPU_OK;
    }
    if (ev)
        clReleaseEvent(ev);
    return rgpu_cl_async_error(s, hdr, err, NULL);
}

static rgpu_status_t rgpu_cl_set_user_event(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                            Rgpu__ClSetUserEventStatus *m)
{
    rgpu_cl_handle_t *h = rgpu_cl_get(s, m->event, RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT);
    cl_int err = h ? clSetUserEventStatus(h->cl.event, m->status) : CL_INVALID_EVENT;

    if (err == CL_SUCCESS) {
        if (h->user_pending)
            s->user_pending--;
        h->user_pending = 0;
        /* Commands behind a failed user event never run on PoCL 3.1, nor
         * do the ones queued after them: from now on nothing may block. */
        if (m->status < 0)
            s->user_failed = 1;
        rgpu_cl_user_waiters_done(h, m->status);
        return RGPU_OK;
    }
    return rgpu_cl_async_error(s, hdr, err, NULL);
}

static rgpu_status_t rgpu_cl_set_event_callback(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                                Rgpu__ClSetEventCallback *m)
{
    rgpu_cl_handle_t *h = rgpu_cl_get(s, m->event, RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT);
    rgpu_cl_cb_t *cb;
    cl_int err;

    if (!h)
        return rgpu_cl_async_error(s, hdr, CL_INVALID_EVENT, NULL);
    cb = calloc(1, sizeof(*cb));
    if (!cb)
        return rgpu_cl_async_error(s, hdr, CL_OUT_OF_HOST_MEMORY, NULL);
    cb->session = s->session;
    cb->callback_id = m->callback_id;
    cb->event_id = m->event;
    rgpu_session_ref(s->session);
    /* While user events are pending, a callback for an earlier status is
     * also run at the end (OpenCL: "equal to or past" the status): PoCL
     * never calls one on a user event, nor on a command failed through it. */
    err = m->exec_type == CL_COMPLETE || rgpu_cl_may_block(s)
              ? rgpu_cl_on_complete(s, h->cl.event, rgpu_cl_notify_cb, cb)
              : clSetEventCallback(h->cl.event, m->exec_type, rgpu_cl_notify_cb, cb);
    if (err != CL_SUCCESS) {
        rgpu_session_unref(s->session);
        free(cb);
        return rgpu_cl_async_error(s, hdr, err, NULL);
    }
    return RGPU_OK;
}

/* ---- transfers ---- */

/* Blocking writes from this size on, to a device working in host memory, are
 * received straight into the mapped buffer. Smaller ones keep the staging
 * path: a map and an unmap are two device commands, which cost more than
 * the copy they save. Measured with `RGPU_BENCH_SERVER_CPUS=0 bench/run.sh
 * bw` on the 2-vCPU benchmark VM: mapped, 4-64 KiB writes fell from 0.48-0.50
 * to 0.32-0.36 of raw TCP; from 1 MiB on they gain (16-64 MiB: 0.77-0.83 ->
 * 0.94-1.02). */
#define RGPU_CL_WRITE_DIRECT_MIN (1u << 20)

/* Whether the queue's device works in host memory (CL_DEVICE_HOST_UNIFIED_MEMORY),
 * so that mapping a buffer costs no copy. */
static int rgpu_cl_queue_host_memory(cl_command_queue queue)
{
    cl_device_id device;
    cl_bool unified = CL_FALSE;

    if (clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof(device), &device, NULL) != CL_SUCCESS ||
        clGetDeviceInfo(device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof(unified), &unified, NULL) != CL_SUCCESS)
        return 0;
    return unified == CL_TRUE;
}

static rgpu_status_t rgpu_cl_write(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClWriteBuffer *m,
                                   char *reason, size_t reason_cap)
{
    rgpu_cl_handle_t *mem;
    rgpu_cl_cmd_t cmd;
    uint64_t done = 0, chunk;
    cl_event last = NULL;
    cl_int err;
    rgpu_status_t status = RGPU_OK;

    if (hdr->bulk_len != m->size) {
        snprintf(reason, reason_cap, "write of %llu bytes carries %llu bytes of data",
                 (unsigned long long)m->size, (unsigned long long)hdr->bulk_len);
        return RGPU_ERR_PROTOCOL;
    }
    err = rgpu_cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);
    mem = rgpu_cl_get_buffer(s, m->mem);
    if (err == CL_SUCCESS && !mem)
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS && (m->offset > mem->size || m->size > mem->size - m->offset))
        err = CL_INVALID_VALUE;
    if (err != CL_SUCCESS) {
        /* Refused before a byte is taken: the client hears it now, and
         * the session layer drops the data unstored. */
        return rgpu_cl_cmd_end(s, hdr, &cmd, m->event, err);
    }
    if (m->blocking && m->size >= RGPU_CL_WRITE_DIRECT_MIN && !rgpu_cl_may_block(s) &&
        rgpu_cl_queue_host_memory(cmd.queue->cl.queue)) {
        /* The device's memory is the host's (PoCL's CPU device, integrated
         * GPUs): map the region and receive the data straight into it, with
         * no staging copy. The session thread waits for the write anyway. */
        void *ptr = clEnqueueMapBuffer(cmd.queue->cl.queue, mem->cl.mem, CL_TRUE,
                                       CL_MAP_WRITE_INVALIDATE_REGION, m->offset, m->size, cmd.num_wait,
                                       cmd.wait, NULL, &err);
        if (err == CL_SUCCESS) {
            status = rgpu_session_pull(s->session, ptr, m->size);
            err = clEnqueueUnmapMemObject(cmd.queue->cl.queue, mem->cl.mem, ptr, 0, NULL, &last);
            done = m->size;
        }
    }
    /* An out-of-order queue could reorder chunks: send it one piece. */
    chunk = cmd.queue && cmd.queue->out_of_order ? m->size : s->chunk;
    while (err == CL_SUCCESS && status == RGPU_OK && done < m->size) {
        uint64_t n = m->size - done < chunk ? m->size - done : chunk;
        int pooled = n <= s->chunk;
        void *buf = pooled ? rgpu_cl_pool_get(s) : malloc(n);
        rgpu_cl_chunk_cb_t *cb = pooled ? malloc(sizeof(*cb)) : NULL;
        cl_event ev = NULL;

        if (!buf || (pooled && !cb)) {
            free(buf);
            free(cb);
            err = CL_OUT_OF_HOST_MEMORY;
            break;
        }
        if ((status = rgpu_session_pull(s->session, buf, n)) != RGPU_OK) {
            free(buf);
            free(cb);
            break;
        }
        /* The chunk goes to the device while the next one arrives. */
        err = clEnqueueWriteBuffer(cmd.queue->cl.queue, mem->cl.mem, CL_FALSE, m->offset + done, n, buf,
                                   done ? 0 : cmd.num_wait, done ? NULL : cmd.wait, &ev);
        if (err != CL_SUCCESS) {
            free(buf);
            free(cb);
            done += n;
            break;
        }
        if (pooled) {
            cb->s = s;
            cb->buf = buf;
            rgpu_session_ref(s->session);
            if (rgpu_cl_on_complete(s, ev, rgpu_cl_chunk_cb, cb) != CL_SUCCESS) {
                clWaitForEvents(1, &ev);
                rgpu_cl_chunk_cb(ev, CL_COMPLETE, cb);
            }
        } else if (rgpu_cl_on_complete(s, ev, rgpu_cl_free_cb, buf) != CL_SUCCESS) {
            clWaitForEvents(1, &ev);
            free(buf);
        }
        rgpu_cl_event_drop(s, last);
        last = ev;
        done += n;
    }
    if (status != RGPU_OK) {
        if (last && !rgpu_cl_may_block(s))
            clWaitForEvents(1, &last);
        rgpu_cl_event_drop(s, last);
        free(cmd.wait);
        return status;
    }
    /* Whatever failed, the data not taken is the session layer's to drop. */
    if (err == CL_SUCCESS) {
        clFlush(cmd.queue->cl.queue);
        /* The client does not wait for writes; a blocking one keeps its
         * order here, unless it could wait on a user event for good. */
        if (m->blocking && last && !rgpu_cl_may_block(s))
            err = clWaitForEvents(1, &last);
    }
    if (err == CL_SUCCESS && m->event) {
        cmd.ev = last;
        last = NULL;
    }
    rgpu_cl_event_drop(s, last);
    return rgpu_cl_cmd_end(s, hdr, &cmd, m->event, err);
}

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

/* A small blocking read: one read into the session's staging, one frame. The
 * read's own event is the client's event. */
static rgpu_status_t rgpu_cl_read_small(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                        Rgpu__ClReadBuffer *m, rgpu_cl_cmd_t *cmd, cl_mem mem)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
    cl_command_queue q = cmd->queue->cl.queue;
    cl_context context = cmd->queue->context;
    rgpu_status_t status;
    cl_event ev = NULL;
    cl_int err = CL_SUCCESS;

    if (m->size > s->read_small_size) {
        /* Grown in powers of two from 4 KiB: a few steps up to the maximum. */
        uint64_t size = s->read_small_size ? s->read_small_size : 4096;
        while (size < m->size)
            size *= 2;
        free(s->read_small);
        s->read_small = malloc(size);
        s->read_small_size = s->read_small ? size : 0;
        if (!s->read_small)
            err = CL_OUT_OF_HOST_MEMORY;
    }
    /* Non-blocking, then waited on through its own event, whose status says
     * whether the read itself (or its wait list) failed. */
    if (err == CL_SUCCESS)
        err = clEnqueueReadBuffer(q, mem, CL_FALSE, m->offset, m->size, s->read_small, cmd->num_wait, cmd->wait,
                                  &ev);
    free(cmd->wait);
    cmd->wait = NULL;
    if (err == CL_SUCCESS) {
        cl_int ev_status = CL_COMPLETE;

        clFlush(q);
        err = clWaitForEvents(1, &ev);
        clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof(ev_status), &ev_status, NULL);
        if (err == CL_SUCCESS && ev_status < 0)
            err = ev_status;
    }
    reply.cl_error = err;
    if (err != CL_SUCCESS) {
        if (ev)
            clReleaseEvent(ev);
        rgpu_cl_event_failed(s, m->event, context, err);
        return rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, hdr->seq, &reply.base, NULL, 0);
    }
    status = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, hdr->seq, &reply.base,
                               s->read_small, m->size);
    if (status != RGPU_OK) {
        clReleaseEvent(ev);
        return status;
    }
    rgpu_cl_event_keep(s, m->event, ev, context);
    return RGPU_OK;
}

/* A blocking read: maps chunk i+1 while chunk i is pushed to the client,
 * straight from the mapping. The reply follows the pieces and carries the
 * status: a read that fails partway stops pushing and says so there (the
 * client's call fails with that error), with no filler bytes. */
static rgpu_status_t rgpu_cl_read_blocking(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                           Rgpu__ClReadBuffer *m, rgpu_cl_cmd_t *cmd, cl_mem mem)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
    cl_command_queue q = cmd->queue->cl.queue;
    uint64_t chunk = cmd->queue->out_of_order ? m->size : s->chunk;
    uint64_t n_chunks = (m->size + chunk - 1) / chunk;
    void *ptr[2] = {NULL, NULL};
    cl_event ev[2] = {NULL, NULL};
    rgpu_status_t status = RGPU_OK;
    cl_int err;

    ptr[0] = clEnqueueMapBuffer(q, mem, CL_FALSE, CL_MAP_READ, m->offset, m->size < chunk ? m->size : chunk,
                                cmd->num_wait, cmd->wait, &ev[0], &err);
    if (err == CL_SUCCESS)
        clFlush(q);
    for (uint64_t i = 0; i < n_chunks && err == CL_SUCCESS && status == RGPU_OK; i++) {
        uint64_t off = i * chunk, n = m->size - off < chunk ? m->size - off : chunk;
        int cur = (int)(i & 1), nxt = cur ^ 1;
        cl_int ev_status = CL_COMPLETE;

        if (i + 1 < n_chunks) {
            uint64_t noff = off + chunk, nn = m->size - noff < chunk ? m->size - noff : chunk;
            ptr[nxt] = clEnqueueMapBuffer(q, mem, CL_FALSE, CL_MAP_READ, m->offset + noff, nn, 0, NULL, &ev[nxt],
                                          &err);
            if (err == CL_SUCCESS)
                clFlush(q);
        }
        if (ev[cur]) {
            cl_int werr = clWaitForEvents(1, &ev[cur]);
            clGetEventInfo(ev[cur], CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof(ev_status), &ev_status, NULL);
            if (werr != CL_SUCCESS && err == CL_SUCCESS)
                err = werr;
            if (ev_status < 0 && err == CL_SUCCESS)
                err = ev_status;
        }
        if (err == CL_SUCCESS)
            status = rgpu_session_push(s->session, hdr->seq, off, ptr[cur], n);
        else if (i > 0)
            rgpu_log(RGPU_LOG_WARN, "opencl", "%s: read failed after %llu of %llu bytes (error %d)",
                     rgpu_session_name(s->session), (unsigned long long)off, (unsigned long long)m->size, err);
        if (ptr[cur])
            clEnqueueUnmapMemObject(q, mem, ptr[cur], 0, NULL, NULL);
        ptr[cur] = NULL;
        if (ev[cur])
            clReleaseEvent(ev[cur]);
        ev[cur] = NULL;
    }
    for (int k = 0; k < 2; k++) {
        if (ev[k]) {
            clWaitForEvents(1, &ev[k]);
            clReleaseEvent(ev[k]);
        }
        if (ptr[k])
            clEnqueueUnmapMemObject(q, mem, ptr[k], 0, NULL, NULL);
    }
    free(cmd->wait);
    cmd->wait = NULL;
    if (status != RGPU_OK)
        return status;
    reply.cl_error = err;
    status = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, hdr->seq, &reply.base, NULL, 0);
    if (status != RGPU_OK)
        return status;
    if (err != CL_SUCCESS) {
        rgpu_cl_event_failed(s, m->event, cmd->queue->context, err);
        return RGPU_OK;
    }
    /* The read's event: a marker after the last unmap, complete before the
     * session's next frame is handled (the client has all the data, so
     * whatever it asks next must see the read as complete). */
    if (m->event && clEnqueueMarkerWithWaitList(q, 0, NULL, &cmd->ev) == CL_SUCCESS)
        clWaitForEvents(1, &cmd->ev);
    rgpu_cl_event_keep(s, m->event, cmd->ev, cmd->queue->context);
    return RGPU_OK;
}

/* A non-blocking read: answered by rgpu_cl_read_cb when it completes. */
static cl_int rgpu_cl_read_async(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, rgpu_cl_cmd_t *cmd,
                                 uint64_t event_id, cl_int (*enqueue)(rgpu_cl_cmd_t *, void *, const void *, cl_event *),
                                 const void *arg, uint64_t size)
{
    rgpu_cl_cb_t *cb = calloc(1, sizeof(*cb));
    void *staging = rgpu_cl_read_staging_get(s, size);
    cl_event ev = NULL;
    cl_int err;

    if (!cb || !staging) {
        free(cb);
        free(staging);
        return CL_OUT_OF_HOST_MEMORY;
    }
    err = enqueue(cmd, staging, arg, &ev);
    if (err != CL_SUCCESS) {
        free(cb);
        rgpu_cl_read_staging_put(s, staging, size);
        return err;
    }
    cb->session = s->session;
    cb->s = s;
    cb->seq = hdr->seq;
    cb->staging = staging;
    cb->size = size;
    rgpu_session_ref(s->session);
    err = rgpu_cl_on_complete(s, ev, rgpu_cl_read_cb, cb);
    if (err != CL_SUCCESS) {
        /* No callback: wait here rather than never answer. */
        clWaitForEvents(1, &ev);
        rgpu_cl_read_cb(ev, CL_COMPLETE, cb);
    }
    clFlush(cmd->queue->cl.queue);
    if (event_id)
        cmd->ev = ev;
    else
        clReleaseEvent(ev);
    return CL_SUCCESS;
}

typedef struct {
    cl_mem mem;
    uint64_t offset;
    uint64_t size;
} rgpu_cl_read_arg_t;

static cl_int rgpu_cl_enqueue_read(rgpu_cl_cmd_t *cmd, void *dst, const void *arg, cl_event *ev)
{
    const rgpu_cl_read_arg_t *a = arg;

    return clEnqueueReadBuffer(cmd->queue->cl.queue, a->mem, CL_FALSE, a->offset, a->size, dst, cmd->num_wait,
                               cmd->wait, ev);
}

static rgpu_status_t rgpu_cl_read(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClReadBuffer *m)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
    rgpu_cl_handle_t *mem;
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);
    mem = rgpu_cl_get_buffer(s, m->mem);
    if (err == CL_SUCCESS && !mem)
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS && (m->size == 0 || m->offset > mem->size || m->size > mem->size - m->offset))
        err = CL_INVALID_VALUE;
    /* Blocking reads wait on the session thread, unless the wait could be
     * on a user event: then they are answered when they complete. */
    if (err == CL_SUCCESS && m->blocking && !rgpu_cl_may_block(s) && m->size <= RGPU_CL_READ_SMALL_MAX)
        return rgpu_cl_read_small(s, hdr, m, &cmd, mem->cl.mem);
    if (err == CL_SUCCESS && m->blocking && !rgpu_cl_may_block(s))
        return rgpu_cl_read_blocking(s, hdr, m, &cmd, mem->cl.mem);
    if (err == CL_SUCCESS) {
        rgpu_cl_read_arg_t arg = {mem->cl.mem, m->offset, m->size};
        err = rgpu_cl_read_async(s, hdr, &cmd, m->event, rgpu_cl_enqueue_read, &arg, m->size);
    }
    if (err != CL_SUCCESS) {
        /* The client waits for a reply either way. */
        reply.cl_error = err;
        free(cmd.wait);
        rgpu_cl_event_failed(s, m->event, cmd.queue ? cmd.queue->context : NULL, err);
        return rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, hdr->seq, &reply.base, NULL, 0);
    }
    free(cmd.wait);
    rgpu_cl_event_keep(s, m->event, cmd.ev, cmd.queue->context);
    return RGPU_OK;
}

/* Whether [offset, offset + size) is a non-empty range inside size_max bytes. */
static int rgpu_cl_range_ok(uint64_t offset, uint64_t size, uint64_t size_max)
{
    return size && offset <= size_max && size <= size_max - offset;
}

static rgpu_status_t rgpu_cl_copy(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClCopyBuffer *m)
{
    rgpu_cl_handle_t *src, *dst;
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu_cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    src = rgpu_cl_get_buffer(s, m->src);
    dst = rgpu_cl_get_buffer(s, m->dst);
    if (err == CL_SUCCESS && (!src || !dst))
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS && !(rgpu_cl_range_ok(m->src_offset, m->size, src->size) &&
                               rgpu_cl_range_ok(m->dst_offset, m->size, dst->size)))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS)
        err = clEnqueueCopyBuffer(cmd.queue->cl.queue, src->cl.mem, dst->cl.mem, m->src_offset, m->dst_offset,
                                  m->size, cmd.num_wait, cmd.wait, rgpu_cl_ev_out(&cmd, m->event));
    return rgpu_cl_cmd_end(s, hdr, &cmd, m->event, err);
}

static rgpu_status_t rgpu_cl_fill(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClFillBuffer *m)
{
    rgpu_cl_handle_t *mem;
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu_cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    mem = rgpu_cl_get_buffer(s, m->mem);
    if (err == CL_SUCCESS && !mem)
        err = CL_INVALID_MEM_OBJECT;
    /* Patterns are 1 to 128 bytes, a power of two, dividing offset and size. */
    if (err == CL_SUCCESS && (m->pattern.len == 0 || m->pattern.len > 128 || (m->pattern.len & (m->pattern.len - 1)) ||
                              m->offset % m->pattern.len || m->size % m->pattern.len ||
                              !rgpu_cl_range_ok(m->offset, m->size, mem->size)))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS)
        err = clEnqueueFillBuffer(cmd.queue->cl.queue, mem->cl.mem, m->pattern.data, m->pattern.len, m->offset,
                                  m->size, cmd.num_wait, cmd.wait, rgpu_cl_ev_out(&cmd, m->event));
    return rgpu_cl_cmd_end(s, hdr, &cmd, m->event, err);
}

typedef struct {
    size_t bo[3], ho[3], rg[3];
} rgpu_cl_rect_t;

static int rgpu_cl_rect_get(const Rgpu__ClBufferRect *m, rgpu_cl_rect_t *r)
{
    if (m->n_buffer_origin != 3 || m->n_host_origin != 3 || m->n_region != 3)
        return 0;
    for (int i = 0; i < 3; i++) {
        r->bo[i] = m->buffer_origin[i];
        r->ho[i] = m->host_origin[i];
        r->rg[i] = m->region[i];
    }
    return r->rg[0] && r->rg[1] && r->rg[2] && r->rg[0] <= (1ull << 40) / r->rg[1] / r->rg[2];
}

/* Checks that a rectangle (origin, region, pitches as OpenCL defines them,
 * 0 meaning packed) lies inside a buffer of size bytes, without overflow:
 * the platform is not trusted to check it. CL_SUCCESS or CL_INVALID_VALUE. */
static cl_int rgpu_cl_rect_check(const size_t origin[3], const size_t region[3], uint64_t row_pitch,
                                 uint64_t slice_pitch, uint64_t size)
{
    uint64_t row = row_pitch ? row_pitch : region[0];
    uint64_t slice, a, b, first, extent, end;

    if (row < region[0] || __builtin_mul_overflow(region[1], row, &slice))
        return CL_INVALID_VALUE;
    if (slice_pitch) {
        if (slice_pitch < slice || slice_pitch % row)
            return CL_INVALID_VALUE;
        slice = slice_pitch;
    }
    if (__builtin_mul_overflow(origin[2], slice, &a) || __builtin_mul_overflow(origin[1], row, &b) ||
        __builtin_add_overflow(a, b, &first) || __builtin_add_overflow(first, origin[0], &first) ||
        __builtin_mul_overflow(region[2] - 1, slice, &a) || __builtin_mul_overflow(region[1] - 1, row, &b) ||
        __builtin_add_overflow(a, b, &extent) || __builtin_add_overflow(extent, region[0], &extent) ||
        __builtin_add_overflow(first, extent, &end) || end > size)
        return CL_INVALID_VALUE;
    return CL_SUCCESS;
}

/* The memory object a rectangular command runs on. PoCL 3.1 reads NULL in
 * rectangular copies on sub-buffers and takes the server down: a sub-buffer
 * is replaced by its parent, with origin[0] moved by where it starts (a
 * linear offset, which is what origin[0] is once the pitches are applied). */
static cl_mem rgpu_cl_rect_mem(const rgpu_cl_handle_t *h, size_t origin[3])
{
    if (!h->parent)
        return h->cl.mem;
    origin[0] += h->origin;
    return h->parent_mem;
}

/* Pulls a write's data (the frame's whole bulk) into a staging copy, once
 * everything was checked (err): a refusal is answered and the data left
 * for the session layer to drop. Returns 1 with *buf_p (the caller's to free, see
 * rgpu_cl_staged_write_end), or 0 with *status_p the frame's result; cmd's
 * wait list is freed then. */
static int rgpu_cl_staged_write_begin(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, rgpu_cl_cmd_t *cmd,
                                      uint64_t event_id, cl_int err, void **buf_p, rgpu_status_t *status_p)
{
    void *buf;

    *buf_p = NULL;
    if (err != CL_SUCCESS) {
        *status_p = rgpu_cl_cmd_end(s, hdr, cmd, event_id, err);
        return 0;
    }
    if (!(buf = malloc(hdr->bulk_len))) {
        free(cmd->wait);
        *status_p = rgpu_cl_async_error(s, hdr, CL_OUT_OF_HOST_MEMORY, NULL);
        return 0;
    }
    if ((*status_p = rgpu_session_pull(s->session, buf, hdr->bulk_len)) != RGPU_OK) {
        free(buf);
        free(cmd->wait);
        return 0;
    }
    *buf_p = buf;
    return 1;
}

/* Ends a write enqueued (err == CL_SUCCESS) from buf, a staging copy of
 * its data: buf is freed once the write has ended, a blocking write waits
 * here unless it could wait on a user event for good, and the event goes
 * to the client or is dropped. Takes buf and cmd's wait list. */
static rgpu_status_t rgpu_cl_staged_write_end(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, rgpu_cl_cmd_t *cmd,
                                              int blocking, uint64_t event_id, cl_event ev, void *buf, cl_int err)
{
    if (err != CL_SUCCESS) {
        free(buf);
        return rgpu_cl_cmd_end(s, hdr, cmd, event_id, err);
    }
    if (rgpu_cl_on_complete(s, ev, rgpu_cl_free_cb, buf) != CL_SUCCESS) {
        clWaitForEvents(1, &ev);
        free(buf);
    }
    clFlush(cmd->queue->cl.queue);
    if (blocking && !rgpu_cl_may_block(s))
        err = clWaitForEvents(1, &ev);
    if (event_id)
        cmd->ev = ev;
    else
        rgpu_cl_event_drop(s, ev);
    return rgpu_cl_cmd_end(s, hdr, cmd, event_id, err);
}

static rgpu_status_t rgpu_cl_write_rect(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClBufferRect *m,
                                        char *reason, size_t reason_cap)
{
    static const size_t zero[3] = {0, 0, 0};
    rgpu_cl_handle_t *mem;
    rgpu_cl_rect_t r;
    rgpu_cl_cmd_t cmd;
    cl_event ev = NULL;
    void *buf;
    cl_int err;
    rgpu_status_t status;

    if (!rgpu_cl_rect_get(m, &r) || hdr->bulk_len != (uint64_t)r.rg[0] * r.rg[1] * r.rg[2]) {
        snprintf(reason, reason_cap, "rect write with a malformed region or %llu bytes of data",
                 (unsigned long long)hdr->bulk_len);
        return RGPU_ERR_PROTOCOL;
    }
    /* Everything is checked before a byte of the data is received. */
    err = rgpu_cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);
    mem = rgpu_cl_get_buffer(s, m->mem);
    if (err == CL_SUCCESS && !mem)
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS)
        err = rgpu_cl_rect_check(r.bo, r.rg, m->buffer_row_pitch, m->buffer_slice_pitch, mem->size);
    if (!rgpu_cl_staged_write_begin(s, hdr, &cmd, m->event, err, &buf, &status))
        return status;
    if (err == CL_SUCCESS)
        err = clEnqueueWriteBufferRect(cmd.queue->cl.queue, rgpu_cl_rect_mem(mem, r.bo), CL_FALSE, r.bo, zero, r.rg,
                                       m->buffer_row_pitch, m->buffer_slice_pitch, r.rg[0], r.rg[0] * r.rg[1], buf,
                                       cmd.num_wait, cmd.wait, &ev);
    return rgpu_cl_staged_write_end(s, hdr, &cmd, m->blocking, m->event, ev, buf, err);
}

typedef struct {
    cl_mem mem;
    const Rgpu__ClBufferRect *m;
    const rgpu_cl_rect_t *r;
} rgpu_cl_read_rect_arg_t;

static cl_int rgpu_cl_enqueue_read_rect(rgpu_cl_cmd_t *cmd, void *dst, const void *arg, cl_event *ev)
{
    static const size_t zero[3] = {0, 0, 0};
    const rgpu_cl_read_rect_arg_t *a = arg;

    return clEnqueueReadBufferRect(cmd->queue->cl.queue, a->mem, CL_FALSE, a->r->bo, zero, a->r->rg,
                                   a->m->buffer_row_pitch, a->m->buffer_slice_pitch, a->r->rg[0],
                                   a->r->rg[0] * a->r->rg[1], dst, cmd->num_wait, cmd->wait, ev);
}

static rgpu_status_t rgpu_cl_read_rect(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClBufferRect *m)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
    rgpu_cl_handle_t *mem;
    rgpu_cl_rect_t r;
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu_cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    mem = rgpu_cl_get_buffer(s, m->mem);
    if (err == CL_SUCCESS && !mem)
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS && !rgpu_cl_rect_get(m, &r))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS)
        err = rgpu_cl_rect_check(r.bo, r.rg, m->buffer_row_pitch, m->buffer_slice_pitch, mem->size);
    if (err == CL_SUCCESS) {
        /* Rect reads are small in practice: they go through the callback
         * path, blocking or not. The region fits in the buffer: checked
         * before its staging is allocated. */
        rgpu_cl_read_rect_arg_t arg = {rgpu_cl_rect_mem(mem, r.bo), m, &r};
        err = rgpu_cl_read_async(s, hdr, &cmd, m->event, rgpu_cl_enqueue_read_rect, &arg,
                                 (uint64_t)r.rg[0] * r.rg[1] * r.rg[2]);
    }
    free(cmd.wait);
    if (err != CL_SUCCESS) {
        reply.cl_error = err;
        rgpu_cl_event_failed(s, m->event, cmd.queue ? cmd.queue->context : NULL, err);
        return rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, hdr->seq, &reply.base, NULL, 0);
    }
    rgpu_cl_event_keep(s, m->event, cmd.ev, cmd.queue->context);
    return RGPU_OK;
}

static rgpu_status_t rgpu_cl_copy_rect(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClBufferRect *m)
{
    rgpu_cl_handle_t *src, *dst;
    rgpu_cl_rect_t r;
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu_cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    src = rgpu_cl_get_buffer(s, m->mem);
    dst = rgpu_cl_get_buffer(s, m->dst);
    if (err == CL_SUCCESS && (!src || !dst))
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS && !rgpu_cl_rect_get(m, &r))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS)
        err = rgpu_cl_rect_check(r.bo, r.rg, m->buffer_row_pitch, m->buffer_slice_pitch, src->size);
    if (err == CL_SUCCESS)
        err = rgpu_cl_rect_check(r.ho, r.rg, m->host_row_pitch, m->host_slice_pitch, dst->size);
    if (err == CL_SUCCESS)
        err = clEnqueueCopyBufferRect(cmd.queue->cl.queue, rgpu_cl_rect_mem(src, r.bo), rgpu_cl_rect_mem(dst, r.ho),
                                      r.bo, r.ho, r.rg,
                                      m->buffer_row_pitch, m->buffer_slice_pitch, m->host_row_pitch,
                                      m->host_slice_pitch, cmd.num_wait, cmd.wait, rgpu_cl_ev_out(&cmd, m->event));
    return rgpu_cl_cmd_end(s, hdr, &cmd, m->event, err);
}

/* ---- images and samplers ---- */

/* Bytes per pixel of an image format; 0 for a combination OpenCL does not
 * define. */
static uint32_t rgpu_cl_image_elem_size(cl_uint order, cl_uint type)
{
    uint32_t channels, bytes;

    switch (type) {
    case CL_UNORM_SHORT_565:
    case CL_UNORM_SHORT_555:
        return order == CL_RGB || order == CL_RGBx ? 2 : 0;
    case CL_UNORM_INT_101010:
        return order == CL_RGB || order == CL_RGBx ? 4 : 0;
    case CL_SNORM_INT8: case CL_UNORM_INT8: case CL_SIGNED_INT8: case CL_UNSIGNED_INT8: bytes = 1; break;
    case CL_SNORM_INT16: case CL_UNORM_INT16: case CL_SIGNED_INT16: case CL_UNSIGNED_INT16: case CL_HALF_FLOAT:
        bytes = 2;
        break;
    case CL_SIGNED_INT32: case CL_UNSIGNED_INT32: case CL_FLOAT: bytes = 4; break;
    default: return 0;
    }
    switch (order) {
    case CL_R: case CL_A: case CL_INTENSITY: case CL_LUMINANCE: case CL_Rx: case CL_DEPTH: channels = 1; break;
    case CL_RG: case CL_RA: case CL_RGx: channels = 2; break;
    case CL_sRGB: channels = 3; break;
    case CL_RGBA: case CL_BGRA: case CL_ARGB: case CL_ABGR: case CL_sRGBA: case CL_sBGRA: case CL_sRGBx:
        channels = 4;
        break;
    default: return 0;   /* CL_RGB and CL_RGBx take only the packed types above */
    }
    return channels * bytes;
}

/* An image's dimensions as its type uses them (width, height, depth,
 * array size), the unused ones 1. 0 when the type is no image type or a
 * used dimension is 0. */
static int rgpu_cl_image_dims(cl_mem_object_type type, uint64_t w, uint64_t h, uint64_t d, uint64_t a,
                              uint64_t dims[4])
{
    dims[0] = w;
    dims[1] = dims[2] = dims[3] = 1;
    switch (type) {
    case CL_MEM_OBJECT_IMAGE1D:
    case CL_MEM_OBJECT_IMAGE1D_BUFFER: break;
    case CL_MEM_OBJECT_IMAGE1D_ARRAY: dims[3] = a; break;
    case CL_MEM_OBJECT_IMAGE2D: dims[1] = h; break;
    case CL_MEM_OBJECT_IMAGE2D_ARRAY: dims[1] = h; dims[3] = a; break;
    case CL_MEM_OBJECT_IMAGE3D: dims[1] = h; dims[2] = d; break;
    default: return 0;
    }
    return dims[0] && dims[1] && dims[2] && dims[3];
}

static size_t rgpu_cl_device_size(cl_device_id dev, cl_device_info param)
{
    size_t v = 0;

    clGetDeviceInfo(dev, param, sizeof(v), &v, NULL);
    return v;
}

/* Whether one device takes an image of these dimensions and bytes, by its
 * own limits (the platform is not trusted to check them all). */
static int rgpu_cl_image_fits(cl_device_id dev, cl_mem_object_type type, const uint64_t dims[4], uint64_t bytes)
{
    cl_bool support = CL_FALSE;
    cl_ulong max_alloc = 0;
    uint64_t w = rgpu_cl_device_size(dev, CL_DEVICE_IMAGE2D_MAX_WIDTH);
    uint64_t h = rgpu_cl_device_size(dev, CL_DEVICE_IMAGE2D_MAX_HEIGHT);
    uint64_t arrays = rgpu_cl_device_size(dev, CL_DEVICE_IMAGE_MAX_ARRAY_SIZE);

    clGetDeviceInfo(dev, CL_DEVICE_IMAGE_SUPPORT, sizeof(support), &support, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof(max_alloc), &max_alloc, NULL);
    if (!support || bytes > max_alloc)
        return 0;
    switch (type) {
    case CL_MEM_OBJECT_IMAGE1D: return dims[0] <= w;
    case CL_MEM_OBJECT_IMAGE1D_BUFFER: return dims[0] <= rgpu_cl_device_size(dev, CL_DEVICE_IMAGE_MAX_BUFFER_SIZE);
    case CL_MEM_OBJECT_IMAGE1D_ARRAY: return dims[0] <= w && dims[3] <= arrays;
    case CL_MEM_OBJECT_IMAGE2D: return dims[0] <= w && dims[1] <= h;
    case CL_MEM_OBJECT_IMAGE2D_ARRAY: return dims[0] <= w && dims[1] <= h && dims[3] <= arrays;
    case CL_MEM_OBJECT_IMAGE3D:
        return dims[0] <= rgpu_cl_device_size(dev, CL_DEVICE_IMAGE3D_MAX_WIDTH) &&
               dims[1] <= rgpu_cl_device_size(dev, CL_DEVICE_IMAGE3D_MAX_HEIGHT) &&
               dims[2] <= rgpu_cl_device_size(dev, CL_DEVICE_IMAGE3D_MAX_DEPTH);
    default: return 0;
    }
}

/* CL_SUCCESS when some device of the context takes the image (OpenCL asks
 * no more), CL_INVALID_IMAGE_SIZE otherwise, CL_INVALID_OPERATION when no
 * device of the context has images at all. */
static cl_int rgpu_cl_image_limits(cl_context ctx, cl_mem_object_type type, const uint64_t dims[4], uint64_t bytes)
{
    cl_device_id devs[64];
    size_t size = 0;
    int any_support = 0;

    if (clGetContextInfo(ctx, CL_CONTEXT_DEVICES, sizeof(devs), devs, &size) != CL_SUCCESS)
        return CL_INVALID_CONTEXT;
    for (size_t i = 0; i < size / sizeof(devs[0]); i++) {
        cl_bool support = CL_FALSE;
        clGetDeviceInfo(devs[i], CL_DEVICE_IMAGE_SUPPORT, sizeof(support), &support, NULL);
        any_support |= support == CL_TRUE;
        if (rgpu_cl_image_fits(devs[i], type, dims, bytes))
            return CL_SUCCESS;
    }
    return any_support ? CL_INVALID_IMAGE_SIZE : CL_INVALID_OPERATION;
}

/* Checks everything about a new image, reserves its memory against the
 * lease's quota (not for 1D buffer images: their buffer's memory), and only
 * then receives its contents. */
static rgpu_status_t rgpu_cl_create_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                          Rgpu__ClCreateImage *m, char *reason, size_t reason_cap)
{
    const cl_mem_flags host_flags = CL_MEM_USE_HOST_PTR | CL_MEM_ALLOC_HOST_PTR | CL_MEM_COPY_HOST_PTR;
    rgpu_cl_handle_t *ctx = rgpu_cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    uint32_t elem = rgpu_cl_image_elem_size(m->channel_order, m->channel_data_type);
    rgpu_cl_handle_t *buffer = NULL, *h;
    cl_image_format format = {m->channel_order, m->channel_data_type};
    cl_image_desc desc;
    uint64_t dims[4], bytes = elem;
    void *init = NULL;
    cl_mem mem = NULL;
    cl_int err = CL_SUCCESS;
    int reserved = 0;
    rgpu_status_t status;

    if (!ctx)
        err = CL_INVALID_CONTEXT;
    else if (!elem)
        err = CL_INVALID_IMAGE_FORMAT_DESCRIPTOR;
    else if (!rgpu_cl_image_dims(m->image_type, m->width, m->height, m->depth, m->array_size, dims))
        err = CL_INVALID_IMAGE_DESCRIPTOR;
    for (int i = 0; err == CL_SUCCESS && i < 4; i++) {
        if (__builtin_mul_overflow(bytes, dims[i], &bytes))
            err = CL_INVALID_IMAGE_SIZE;
    }
    if (err == CL_SUCCESS)
        err = rgpu_cl_image_limits(ctx->cl.context, m->image_type, dims, bytes);
    if (err == CL_SUCCESS && hdr->bulk_len && hdr->bulk_len != bytes) {
        snprintf(reason, reason_cap, "clCreateImage of %llu bytes carries %llu bytes of contents",
                 (unsigned long long)bytes, (unsigned long long)hdr->bulk_len);
        return RGPU_ERR_PROTOCOL;
    }
    if (err == CL_SUCCESS && m->image_type == CL_MEM_OBJECT_IMAGE1D_BUFFER) {
        /* The image views the buffer's memory: nothing new to reserve. A
         * sub-buffer is refused (PoCL 3.1 mishandles sub-buffers in
         * several commands already). */
        buffer = rgpu_cl_get_buffer(s, m->buffer);
        if (!buffer || buffer->parent)
            err = CL_INVALID_IMAGE_DESCRIPTOR;
        else if (bytes > buffer->size)
            err = CL_INVALID_IMAGE_SIZE;
        else if (hdr->bulk_len || (m->flags & host_flags))
            err = CL_INVALID_VALUE;
    } else if (err == CL_SUCCESS) {
        if (m->buffer)
            err = CL_INVALID_IMAGE_DESCRIPTOR;
        else if (hdr->bulk_len && !(m->flags & CL_MEM_COPY_HOST_PTR))
            err = CL_INVALID_HOST_PTR;
        else if (!hdr->bulk_len && (m->flags & (CL_MEM_COPY_HOST_PTR | CL_MEM_USE_HOST_PTR)))
            err = CL_INVALID_HOST_PTR;
        else if (rgpu_session_mem_reserve(s->session, bytes) != 0)
            err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
        else
            reserved = 1;
    }
    if (err == CL_SUCCESS && hdr->bulk_len && !(init = malloc(hdr->bulk_len)))
        err = CL_OUT_OF_HOST_MEMORY;
    if (err != CL_SUCCESS) {
        if (reserved)
            rgpu_session_mem_unreserve(s->session, bytes);
        status = rgpu_cl_async_error(s, hdr, err, err == CL_MEM_OBJECT_ALLOCATION_FAILURE
                                                      ? "the lease's memory quota is used up" : NULL);
        return status;
    }
    if (init && (status = rgpu_session_pull(s->session, init, hdr->bulk_len)) != RGPU_OK) {
        rgpu_session_mem_unreserve(s->session, bytes);
        free(init);
        return status;
    }
    /* Packed pitches (0): what the wire carries. */
    memset(&desc, 0, sizeof(desc));
    desc.image_type = m->image_type;
    desc.image_width = dims[0];
    if (m->image_type == CL_MEM_OBJECT_IMAGE2D || m->image_type == CL_MEM_OBJECT_IMAGE2D_ARRAY ||
        m->image_type == CL_MEM_OBJECT_IMAGE3D)
        desc.image_height = dims[1];
    if (m->image_type == CL_MEM_OBJECT_IMAGE3D)
        desc.image_depth = dims[2];
    if (m->image_type == CL_MEM_OBJECT_IMAGE1D_ARRAY || m->image_type == CL_MEM_OBJECT_IMAGE2D_ARRAY)
        desc.image_array_size = dims[3];
    desc.buffer = buffer ? buffer->cl.mem : NULL;
    mem = clCreateImage(ctx->cl.context, m->flags & ~(cl_mem_flags)CL_MEM_USE_HOST_PTR, &format, &desc, init, &err);
    /* Every bound of this image's transfers comes from rgpu's pixel size:
     * the platform's must be the same. */
    if (err == CL_SUCCESS) {
        size_t platform_elem = 0;
        if (clGetImageInfo(mem, CL_IMAGE_ELEMENT_SIZE, sizeof(platform_elem), &platform_elem, NULL) != CL_SUCCESS ||
            platform_elem != elem)
            err = CL_IMAGE_FORMAT_NOT_SUPPORTED;
    }
    /* Like a new buffer, a new image holds no other tenant's data. */
    if (err == CL_SUCCESS && !init && !buffer)
        err = rgpu_cl_zero_image(ctx, mem, m->image_type, dims);
    free(init);
    if (err == CL_SUCCESS && (err = rgpu_cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, mem, &h)) == CL_SUCCESS) {
        h->size = bytes;
        h->image_type = m->image_type;
        memcpy(h->image_dims, dims, sizeof(dims));
        h->image_elem = elem;
        if (buffer) {
            h->parent_mem = buffer->cl.mem;
            h->held_parent = buffer;
            buffer->holds++;
        } else {
            h->bytes = bytes;
            rgpu_session_memory_add(s->session, (int64_t)bytes);
            atomic_fetch_add(&rgpu_metrics.buffer_bytes, (long long)bytes);
            atomic_fetch_add(&rgpu_metrics.buffers, 1);
        }
        return RGPU_OK;
    }
    if (reserved)
        rgpu_session_mem_unreserve(s->session, bytes);
    if (mem)
        clReleaseMemObject(mem);
    return rgpu_cl_async_error(s, hdr, err, NULL);
}

/* Whether origin + region (3 values each, from the client) lie inside the
 * image as its type uses them (a 1D array's layers in [1], a 2D array's in
 * [2]; unused coordinates 0 with extent 1). Fills o and r. */
static int rgpu_cl_image_region(const rgpu_cl_handle_t *img, size_t n_origin, const uint64_t *origin,
                                size_t n_region, const uint64_t *region, size_t o[3], size_t r[3])
{
    uint64_t lim[3] = {img->image_dims[0], 1, 1};

    if (n_origin != 3 || n_region != 3)
        return 0;
    switch (img->image_type) {
    case CL_MEM_OBJECT_IMAGE1D_ARRAY: lim[1] = img->image_dims[3]; break;
    case CL_MEM_OBJECT_IMAGE2D: lim[1] = img->image_dims[1]; break;
    case CL_MEM_OBJECT_IMAGE2D_ARRAY: lim[1] = img->image_dims[1]; lim[2] = img->image_dims[3]; break;
    case CL_MEM_OBJECT_IMAGE3D: lim[1] = img->image_dims[1]; lim[2] = img->image_dims[2]; break;
    default: break;
    }
    for (int i = 0; i < 3; i++) {
        if (!region[i] || origin[i] > lim[i] || region[i] > lim[i] - origin[i])
            return 0;
        o[i] = origin[i];
        r[i] = region[i];
    }
    return 1;
}

/* Bytes of a region inside the image: no overflow, the image's are bounded. */
static uint64_t rgpu_cl_image_bytes(const rgpu_cl_handle_t *img, const size_t r[3])
{
    return (uint64_t)img->image_elem * r[0] * r[1] * r[2];
}

/* The packed host pitches of a region, as the platform takes them. */
static void rgpu_cl_image_pitches(const rgpu_cl_handle_t *img, const size_t r[3], size_t *row, size_t *slice)
{
    *row = r[0] * img->image_elem;
    if (img->image_type == CL_MEM_OBJECT_IMAGE1D_ARRAY)
        *slice = *row;
    else if (img->image_type == CL_MEM_OBJECT_IMAGE2D_ARRAY || img->image_type == CL_MEM_OBJECT_IMAGE3D)
        *slice = *row * r[1];
    else
        *slice = 0;
}

static rgpu_status_t rgpu_cl_write_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClImageRect *m,
                                         char *reason, size_t reason_cap)
{
    rgpu_cl_handle_t *img;
    size_t o[3], r[3], row, slice;
    rgpu_cl_cmd_t cmd;
    cl_event ev = NULL;
    void *buf;
    cl_int err;
    rgpu_status_t status;

    /* Everything is checked before a byte of the data is received. */
    err = rgpu_cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);
    img = rgpu_cl_get_image(s, m->image);
    if (err == CL_SUCCESS && !img)
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS && !rgpu_cl_image_region(img, m->n_origin, m->origin, m->n_region, m->region, o, r))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS && hdr->bulk_len != rgpu_cl_image_bytes(img, r)) {
        snprintf(reason, reason_cap, "image write of %llu bytes carries %llu bytes of data",
                 (unsigned long long)rgpu_cl_image_bytes(img, r), (unsigned long long)hdr->bulk_len);
        free(cmd.wait);
        return RGPU_ERR_PROTOCOL;
    }
    if (!rgpu_cl_staged_write_begin(s, hdr, &cmd, m->event, err, &buf, &status))
        return status;
    rgpu_cl_image_pitches(img, r, &row, &slice);
    err = clEnqueueWriteImage(cmd.queue->cl.queue, img->cl.mem, CL_FALSE, o, r, row, slice, buf, cmd.num_wait,
                              cmd.wait, &ev);
    return rgpu_cl_staged_write_end(s, hdr, &cmd, m->blocking, m->event, ev, buf, err);
}

typedef struct {
    const rgpu_cl_handle_t *img;
    const size_t *o, *r;
} rgpu_cl_read_image_arg_t;

static cl_int rgpu_cl_enqueue_read_image(rgpu_cl_cmd_t *cmd, void *dst, const void *arg, cl_event *ev)
{
    const rgpu_cl_read_image_arg_t *a = arg;
    size_t row, slice;

    rgpu_cl_image_pitches(a->img, a->r, &row, &slice);
    return clEnqueueReadImage(cmd->queue->cl.queue, a->img->cl.mem, CL_FALSE, a->o, a->r, row, slice, dst,
                              cmd->num_wait, cmd->wait, ev);
}

static rgpu_status_t rgpu_cl_read_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClImageRect *m)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
    rgpu_cl_handle_t *img;
    size_t o[3], r[3];
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu_cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    img = rgpu_cl_get_image(s, m->image);
    if (err == CL_SUCCESS && !img)
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS && !rgpu_cl_image_region(img, m->n_origin, m->origin, m->n_region, m->region, o, r))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS) {
        /* Answered from the read's callback, blocking or not: the region
         * lies inside the image, checked before its staging is allocated. */
        rgpu_cl_read_image_arg_t arg = {img, o, r};
        err = rgpu_cl_read_async(s, hdr, &cmd, m->event, rgpu_cl_enqueue_read_image, &arg,
                                 rgpu_cl_image_bytes(img, r));
    }
    free(cmd.wait);
    if (err != CL_SUCCESS) {
        reply.cl_error = err;
        rgpu_cl_event_failed(s, m->event, cmd.queue ? cmd.queue->context : NULL, err);
        return rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, hdr->seq, &reply.base, NULL, 0);
    }
    rgpu_cl_event_keep(s, m->event, cmd.ev, cmd.queue->context);
    return RGPU_OK;
}

/* The buffer side of an image<->buffer copy: bytes at offset inside it. A
 * sub-buffer is replaced by its parent (see rgpu_cl_rect_mem). */
static cl_mem rgpu_cl_copy_buffer_side(const rgpu_cl_handle_t *buf, uint64_t offset, uint64_t bytes, size_t *off_p)
{
    if (!rgpu_cl_range_ok(offset, bytes, buf->size))
        return NULL;
    *off_p = offset + (buf->parent ? buf->origin : 0);
    return buf->parent ? buf->parent_mem : buf->cl.mem;
}

static rgpu_status_t rgpu_cl_copy_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClImageCopy *m)
{
    rgpu_cl_handle_t *src = NULL, *dst = NULL;
    size_t so[3], dso[3], r[3], r2[3], off = 0;
    cl_command_queue q;
    cl_mem buf;
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu_cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    if (err != CL_SUCCESS)
        return rgpu_cl_cmd_end(s, hdr, &cmd, m->event, err);
    q = cmd.queue->cl.queue;
    switch (m->kind) {
    case RGPU__CL_IMAGE_COPY_KIND__CL_COPY_IMAGE:
        src = rgpu_cl_get_image(s, m->src);
        dst = rgpu_cl_get_image(s, m->dst);
        if (!src || !dst)
            err = CL_INVALID_MEM_OBJECT;
        else if (!rgpu_cl_image_region(src, m->n_src_origin, m->src_origin, m->n_region, m->region, so, r) ||
                 !rgpu_cl_image_region(dst, m->n_dst_origin, m->dst_origin, m->n_region, m->region, dso, r2))
            err = CL_INVALID_VALUE;
        else if (src->image_elem != dst->image_elem)
            err = CL_IMAGE_FORMAT_MISMATCH;
        else
            err = clEnqueueCopyImage(q, src->cl.mem, dst->cl.mem, so, dso, r, cmd.num_wait, cmd.wait,
                                     rgpu_cl_ev_out(&cmd, m->event));
        break;
    case RGPU__CL_IMAGE_COPY_KIND__CL_COPY_IMAGE_TO_BUFFER:
        src = rgpu_cl_get_image(s, m->src);
        dst = rgpu_cl_get_buffer(s, m->dst);
        if (!src || !dst)
            err = CL_INVALID_MEM_OBJECT;
        else if (!rgpu_cl_image_region(src, m->n_src_origin, m->src_origin, m->n_region, m->region, so, r) ||
                 !(buf = rgpu_cl_copy_buffer_side(dst, m->offset, rgpu_cl_image_bytes(src, r), &off)))
            err = CL_INVALID_VALUE;
        else
            err = clEnqueueCopyImageToBuffer(q, src->cl.mem, buf, so, r, off, cmd.num_wait, cmd.wait,
                                             rgpu_cl_ev_out(&cmd, m->event));
        break;
    case RGPU__CL_IMAGE_COPY_KIND__CL_COPY_BUFFER_TO_IMAGE:
        src = rgpu_cl_get_buffer(s, m->src);
        dst = rgpu_cl_get_image(s, m->dst);
        if (!src || !dst)
            err = CL_INVALID_MEM_OBJECT;
        else if (!rgpu_cl_image_region(dst, m->n_dst_origin, m->dst_origin, m->n_region, m->region, dso, r) ||
                 !(buf = rgpu_cl_copy_buffer_side(src, m->offset, rgpu_cl_image_bytes(dst, r), &off)))
            err = CL_INVALID_VALUE;
        else
            err = clEnqueueCopyBufferToImage(q, buf, dst->cl.mem, off, dso, r, cmd.num_wait, cmd.wait,
                                             rgpu_cl_ev_out(&cmd, m->event));
        break;
    default:
        err = CL_INVALID_VALUE;
        break;
    }
    return rgpu_cl_cmd_end(s, hdr, &cmd, m->event, err);
}

static rgpu_status_t rgpu_cl_fill_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClFillImage *m)
{
    rgpu_cl_handle_t *img;
    size_t o[3], r[3];
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu_cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    img = rgpu_cl_get_image(s, m->image);
    if (err == CL_SUCCESS && !img)
        err = CL_INVALID_MEM_OBJECT;
    /* The platform reads 16 bytes of color (a float4, int4 or uint4). */
    if (err == CL_SUCCESS && (m->color.len != 16 ||
                              !rgpu_cl_image_region(img, m->n_origin, m->origin, m->n_region, m->region, o, r)))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS)
        err = clEnqueueFillImage(cmd.queue->cl.queue, img->cl.mem, m->color.data, o, r, cmd.num_wait, cmd.wait,
                                 rgpu_cl_ev_out(&cmd, m->event));
    return rgpu_cl_cmd_end(s, hdr, &cmd, m->event, err);
}

static rgpu_status_t rgpu_cl_create_sampler(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                            Rgpu__ClCreateSampler *m)
{
    rgpu_cl_handle_t *ctx = rgpu_cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    cl_sampler smp = NULL;
    cl_int err;

    if (!ctx) {
        err = CL_INVALID_CONTEXT;
    } else if ((m->addressing_mode != CL_ADDRESS_NONE && m->addressing_mode != CL_ADDRESS_CLAMP_TO_EDGE &&
                m->addressing_mode != CL_ADDRESS_CLAMP && m->addressing_mode != CL_ADDRESS_REPEAT &&
                m->addressing_mode != CL_ADDRESS_MIRRORED_REPEAT) ||
               (m->filter_mode != CL_FILTER_NEAREST && m->filter_mode != CL_FILTER_LINEAR)) {
        err = CL_INVALID_VALUE;
    } else {
        cl_sampler_properties props[] = {CL_SAMPLER_NORMALIZED_COORDS, m->normalized_coords ? CL_TRUE : CL_FALSE,
                                         CL_SAMPLER_ADDRESSING_MODE, m->addressing_mode,
                                         CL_SAMPLER_FILTER_MODE, m->filter_mode, 0};
        smp = clCreateSamplerWithProperties(ctx->cl.context, props, &err);
    }
    if (err == CL_SUCCESS && (err = rgpu_cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER, smp, NULL)) == CL_SUCCESS)
        return RGPU_OK;
    if (smp)
        clReleaseSampler(smp);
    return rgpu_cl_async_error(s, hdr, err, NULL);
}

/* ---- kernels and synchronization ---- */

static rgpu_status_t rgpu_cl_ndrange(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, const Rgpu__ClNDRange *m)
{
    rgpu_cl_handle_t *k;
    size_t off[3], gsz[3], lsz[3];
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu_cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    k = rgpu_cl_get(s, m->kernel, RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL);
    if (err == CL_SUCCESS && !k)
        err = CL_INVALID_KERNEL;
    if (err == CL_SUCCESS && (m->work_dim < 1 || m->work_dim > 3 || m->n_global_size != m->work_dim ||
                              (m->n_local_size && m->n_local_size != m->work_dim) ||
                              (m->n_global_offset && m->n_global_offset != m->work_dim)))
        err = CL_INVALID_WORK_DIMENSION;
    if (err == CL_SUCCESS) {
        uint64_t items = 1;
        for (uint32_t i = 0; i < m->work_dim; i++) {
            off[i] = m->n_global_offset ? m->global_offset[i] : 0;
            gsz[i] = m->global_size[i];
            lsz[i] = m->n_local_size ? m->local_size[i] : 0;
            /* PoCL 3.1 asserts on grids past these (and takes the server
             * down): at most 2^32-1 work-items per dimension, 2^40 in all. */
            if (off[i] > UINT64_MAX - gsz[i])
                err = CL_INVALID_GLOBAL_OFFSET;
            else if (gsz[i] > UINT32_MAX || __builtin_mul_overflow(items, (uint64_t)gsz[i], &items) ||
                     items > RGPU_CL_MAX_WORK_ITEMS)
                err = CL_INVALID_GLOBAL_WORK_SIZE;
        }
    }
    if (err == CL_SUCCESS && k->local_total) {
        /* Local memory of the arguments and the kernel's own, within the
         * device's (PoCL 3.1 asserts past it). */
        cl_device_id dev = NULL;
        cl_ulong own = 0;
        clGetCommandQueueInfo(cmd.queue->cl.queue, CL_QUEUE_DEVICE, sizeof(dev), &dev, NULL);
        clGetKernelWorkGroupInfo(k->cl.kernel, dev, CL_KERNEL_LOCAL_MEM_SIZE, sizeof(own), &own, NULL);
        if (own > cmd.queue->local_mem || k->local_total > cmd.queue->local_mem - own)
            err = CL_OUT_OF_RESOURCES;
    }
    if (err == CL_SUCCESS) {
        if (m->task)
            err = clEnqueueTask(cmd.queue->cl.queue, k->cl.kernel, cmd.num_wait, cmd.wait,
                                rgpu_cl_ev_out(&cmd, m->event));
        else
            err = clEnqueueNDRangeKernel(cmd.queue->cl.queue, k->cl.kernel, m->work_dim,
                                         m->n_global_offset ? off : NULL, gsz, m->n_local_size ? lsz : NULL,
                                         cmd.num_wait, cmd.wait, rgpu_cl_ev_out(&cmd, m->event));
    }
    return rgpu_cl_cmd_end(s, hdr, &cmd, m->event, err);
}

/* The decoded launch of this body: the session's last one when the bytes are
 * the same (a loop launching one kernel with the same sizes and no event
 * sends them again and again; unpacking was 13% of the server's CPU at 8192
 * launches per clFinish), else a fresh one, kept for the next when small.
 * NULL when the body does not unpack; *owned: the caller frees it. */
static Rgpu__ClNDRange *rgpu_cl_launch_decode(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                              const uint8_t *body, int *owned)
{
    Rgpu__ClNDRange *m;

    *owned = 0;
    if (s->launch_memo && hdr->body_len == s->launch_memo_len &&
        memcmp(body, s->launch_memo_body, hdr->body_len) == 0)
        return s->launch_memo;
    m = rgpu__cl_ndrange__unpack(NULL, hdr->body_len, body);
    if (!m || hdr->body_len > RGPU_CL_LAUNCH_MEMO_MAX) {
        *owned = 1;
        return m;
    }
    if (s->launch_memo)
        rgpu__cl_ndrange__free_unpacked(s->launch_memo, NULL);
    s->launch_memo = m;
    s->launch_memo_len = hdr->body_len;
    memcpy(s->launch_memo_body, body, hdr->body_len);
    return m;
}

static rgpu_status_t rgpu_cl_marker(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClMarker *m)
{
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu_cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    if (err == CL_SUCCESS)
        err = (m->barrier ? clEnqueueBarrierWithWaitList : clEnqueueMarkerWithWaitList)(
            cmd.queue->cl.queue, cmd.num_wait, cmd.wait, rgpu_cl_ev_out(&cmd, m->event));
    return rgpu_cl_cmd_end(s, hdr, &cmd, m->event, err);
}

static rgpu_status_t rgpu_cl_migrate(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClMigrate *m)
{
    rgpu_cl_cmd_t cmd;
    cl_mem *mems = NULL;
    cl_int err = rgpu_cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    if (err == CL_SUCCESS && (m->n_mems == 0 || m->n_mems > RGPU_CL_MAX_WAIT))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS && !(mems = malloc(m->n_mems * sizeof(*mems))))
        err = CL_OUT_OF_HOST_MEMORY;
    for (size_t i = 0; err == CL_SUCCESS && i < m->n_mems; i++) {
        rgpu_cl_handle_t *h = rgpu_cl_get(s, m->mems[i], RGPU__CL_OBJECT_KIND__CL_OBJ_MEM);
        if (!h)
            err = CL_INVALID_MEM_OBJECT;
        else
            mems[i] = h->cl.mem;
    }
    if (err == CL_SUCCESS)
        err = clEnqueueMigrateMemObjects(cmd.queue->cl.queue, (cl_uint)m->n_mems, mems, m->flags, cmd.num_wait,
                                         cmd.wait, rgpu_cl_ev_out(&cmd, m->event));
    free(mems);
    return rgpu_cl_cmd_end(s, hdr, &cmd, m->event, err);
}

/* A wait answered from event callbacks: the reply leaves when the last of
 * its events completes, and the session thread goes on receiving. */
typedef struct {
    rgpu_session_t *session;
    uint64_t seq;
    atomic_int left;
    atomic_int failed;
    cl_int fail_error;          /* what a failed event makes the wait return */
} rgpu_cl_waiter_t;

static void rgpu_cl_waiter_done(rgpu_cl_waiter_t *w)
{
    Rgpu__ClStatusReply reply = RGPU__CL_STATUS_REPLY__INIT;

    reply.cl_error = atomic_load(&w->failed) ? w->fail_error : CL_SUCCESS;
    rgpu_session_post(w->session, RGPU__MSG_TYPE__MSG_CL_STATUS_REPLY, w->seq, &reply.base, NULL, 0, NULL, NULL);
    rgpu_session_unref(w->session);
    free(w);
}

static void CL_CALLBACK rgpu_cl_waiter_cb(cl_event ev, cl_int status, void *arg)
{
    rgpu_cl_waiter_t *w = arg;

    (void)ev;
    if (status < 0)
        atomic_store(&w->failed, 1);
    if (atomic_fetch_sub(&w->left, 1) == 1)
        rgpu_cl_waiter_done(w);
}

/* Answers hdr's request with a ClStatusReply once every event completed
 * (fail_error if one failed). A pending user event among handles (NULL, or
 * one per event) holds the wait itself and completes it when the client
 * sets it (rgpu_cl_user_waiters_done); other events through the platform's
 * callbacks. Takes no ownership of the events. */
static rgpu_status_t rgpu_cl_wait_async(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, cl_event *events,
                                        rgpu_cl_handle_t **handles, size_t n, cl_int fail_error)
{
    rgpu_cl_waiter_t *w = calloc(1, sizeof(*w));

    if (!w)
        return rgpu_cl_reply_status(s, hdr, CL_OUT_OF_HOST_MEMORY);
    w->session = s->session;
    w->seq = hdr->seq;
    w->fail_error = fail_error;
    /* One count for the loop itself, so the reply cannot leave (and w go)
     * before every callback is set. */
    atomic_init(&w->left, (int)n + 1);
    atomic_init(&w->failed, 0);
    rgpu_session_ref(s->session);
    for (size_t i = 0; i < n; i++) {
        rgpu_cl_handle_t *h = handles ? handles[i] : NULL;

        if (h && h->user_pending) {
            void **grown = realloc(h->waiters, (h->n_waiters + 1) * sizeof(*grown));
            if (grown) {
                h->waiters = grown;
                h->waiters[h->n_waiters++] = w;
                continue;
            }
            atomic_store(&w->failed, 1);
            rgpu_cl_waiter_cb(events[i], CL_OUT_OF_HOST_MEMORY, w);
        } else if (rgpu_cl_on_complete(s, events[i], rgpu_cl_waiter_cb, w) != CL_SUCCESS) {
            atomic_store(&w->failed, 1);
            rgpu_cl_waiter_cb(events[i], CL_COMPLETE, w);
        }
    }
    rgpu_cl_waiter_cb(NULL, CL_COMPLETE, w);
    return RGPU_OK;
}

/* A user event got its status (or can never get one): the waits it held
 * count it as done. Session thread. */
static void rgpu_cl_user_waiters_done(rgpu_cl_handle_t *h, cl_int status)
{
    for (size_t i = 0; i < h->n_waiters; i++)
        rgpu_cl_waiter_cb(h->cl.event, status, h->waiters[i]);
    free(h->waiters);
    h->waiters = NULL;
    h->n_waiters = 0;
}

static rgpu_status_t rgpu_cl_queue_op(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClQueueOp *m)
{
    rgpu_cl_handle_t *q = rgpu_cl_get(s, m->queue, RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE);

    if (hdr->type == RGPU__MSG_TYPE__MSG_CL_FINISH) {
        cl_event marker = NULL;
        rgpu_status_t status;
        cl_int err;

        if (!q)
            return rgpu_cl_reply_status(s, hdr, CL_INVALID_COMMAND_QUEUE);
        if (!rgpu_cl_may_block(s))
            return rgpu_cl_reply_status(s, hdr, clFinish(q->cl.queue));
        /* A marker without a wait list waits for every command before it,
         * in order or not: the finish is answered when it completes. */
        err = clEnqueueMarkerWithWaitList(q->cl.queue, 0, NULL, &marker);
        if (err != CL_SUCCESS)
            return rgpu_cl_reply_status(s, hdr, err);
        clFlush(q->cl.queue);
        /* clFinish succeeds even when a command before it failed. */
        status = rgpu_cl_wait_async(s, hdr, &marker, NULL, 1, CL_SUCCESS);
        rgpu_cl_event_drop(s, marker);
        return status;
    }
    if (!q)
        return rgpu_cl_async_error(s, hdr, CL_INVALID_COMMAND_QUEUE, NULL);
    clFlush(q->cl.queue);
    return RGPU_OK;
}

static rgpu_status_t rgpu_cl_wait_events(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClWaitEvents *m)
{
    cl_event *list = NULL;
    cl_int err = m->n_events ? rgpu_cl_wait_list(s, m->n_events, m->events, &list) : CL_INVALID_VALUE;
    rgpu_status_t status;

    if (err == CL_INVALID_EVENT_WAIT_LIST)
        err = CL_INVALID_EVENT;
    if (err == CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        return rgpu_cl_reply_status(s, hdr, err);
    if (err != CL_SUCCESS)
        return rgpu_cl_reply_status(s, hdr, err);
    if (rgpu_cl_may_block(s)) {
        rgpu_cl_handle_t **handles = malloc(m->n_events * sizeof(*handles));
        if (!handles) {
            free(list);
            return rgpu_cl_reply_status(s, hdr, CL_OUT_OF_HOST_MEMORY);
        }
        for (size_t i = 0; i < m->n_events; i++)
            handles[i] = rgpu_cl_get(s, m->events[i], RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT);
        status = rgpu_cl_wait_async(s, hdr, list, handles, m->n_events, CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
        free(handles);
        free(list);
        return status;
    }
    err = clWaitForEvents((cl_uint)m->n_events, list);
    free(list);
    return rgpu_cl_reply_status(s, hdr, err);
}

/* ---- programs ---- */

static int rgpu_cl_device_index(rgpu_backend_t *be, cl_device_id dev)
{
    for (cl_uint i = 0; i < be->num_devices; i++) {
        if (be->devices[i] == dev)
            return (int)i;
    }
    return -1;
}

static cl_int rgpu_cl_devices(rgpu_cl_session_t *s, size_t n, const uint32_t *idx, cl_device_id **devs_p)
{
    cl_device_id *devs;

    *devs_p = NULL;
    if (n == 0)
        return CL_SUCCESS;
    if (n > 64)
        return CL_INVALID_VALUE;
    devs = malloc(n * sizeof(*devs));
    if (!devs)
        return CL_OUT_OF_HOST_MEMORY;
    for (size_t i = 0; i < n; i++) {
        if (idx[i] >= s->backend->num_devices || !rgpu_session_device_allowed(s->session, idx[i])) {
            free(devs);
            return CL_INVALID_DEVICE;
        }
        devs[i] = s->backend->devices[idx[i]];
    }
    *devs_p = devs;
    return CL_SUCCESS;
}

static char *rgpu_cl_build_str(cl_program p, cl_device_id d, cl_program_build_info param)
{
    size_t len = 0;
    char *str;

    if (clGetProgramBuildInfo(p, d, param, 0, NULL, &len) != CL_SUCCESS || len == 0)
        return strdup("");
    str = calloc(1, len + 1);
    if (str && clGetProgramBuildInfo(p, d, param, len, str, NULL) != CL_SUCCESS)
        str[0] = '\0';
    return str;
}

static char *rgpu_cl_kernel_str(cl_kernel k, cl_kernel_info param)
{
    size_t len = 0;
    char *str;

    if (clGetKernelInfo(k, param, 0, NULL, &len) != CL_SUCCESS || len == 0)
        return strdup("");
    str = calloc(1, len + 1);
    if (str && clGetKernelInfo(k, param, len, str, NULL) != CL_SUCCESS)
        str[0] = '\0';
    return str;
}

static char *rgpu_cl_arg_str(cl_kernel k, cl_uint i, cl_kernel_arg_info param)
{
    size_t len = 0;
    char *str;

    if (clGetKernelArgInfo(k, i, param, 0, NULL, &len) != CL_SUCCESS || len == 0)
        return strdup("");
    str = calloc(1, len + 1);
    if (str && clGetKernelArgInfo(k, i, param, len, str, NULL) != CL_SUCCESS)
        str[0] = '\0';
    return str;
}

/* Kernels built here always carry argument info: the server decides each
 * argument's kind from it (rgpu_cl_set_arg), and some platforms keep it
 * only when asked. The flag is taken out of the options the client sees. */
#define RGPU_CL_ARG_INFO_FLAG " -cl-kernel-arg-info"

static char *rgpu_cl_options_extend(const char *options)
{
    size_t len = strlen(options);
    char *out = malloc(len + sizeof(RGPU_CL_ARG_INFO_FLAG));

    if (out) {
        memcpy(out, options, len);
        memcpy(out + len, RGPU_CL_ARG_INFO_FLAG, sizeof(RGPU_CL_ARG_INFO_FLAG));
    }
    return out;
}

static void rgpu_cl_options_unextend(char *options)
{
    size_t len = options ? strlen(options) : 0, flag = sizeof(RGPU_CL_ARG_INFO_FLAG) - 1;

    if (len >= flag && strcmp(options + len - flag, RGPU_CL_ARG_INFO_FLAG) == 0)
        options[len - flag] = '\0';
}

/* Builds the reply to build/compile/link: per-device state and the kernels. */
static rgpu_status_t rgpu_cl_build_reply(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, cl_program p,
                                         cl_int err, const char *refusal)
{
    Rgpu__ClBuildReply reply = RGPU__CL_BUILD_REPLY__INIT;
    Rgpu__ClDeviceBuild *builds = NULL, **build_ptrs = NULL;
    Rgpu__ClKernelDesc *descs = NULL, **desc_ptrs = NULL;
    Rgpu__ClKernelArg *args = NULL, **arg_ptrs = NULL;
    cl_kernel *kernels = NULL;
    cl_device_id *devs = NULL;
    cl_uint n_devs = 0, n_kernels = 0, total_args = 0;
    int executable = 0;
    rgpu_status_t status;

    reply.cl_error = err;
    if (p && clGetProgramInfo(p, CL_PROGRAM_NUM_DEVICES, sizeof(n_devs), &n_devs, NULL) == CL_SUCCESS && n_devs) {
        devs = calloc(n_devs, sizeof(*devs));
        builds = calloc(n_devs, sizeof(*builds));
        build_ptrs = calloc(n_devs, sizeof(*build_ptrs));
        if (devs && builds && build_ptrs &&
            clGetProgramInfo(p, CL_PROGRAM_DEVICES, n_devs * sizeof(*devs), devs, NULL) == CL_SUCCESS) {
            for (cl_uint i = 0; i < n_devs; i++) {
                cl_build_status st = CL_BUILD_NONE;
                cl_program_binary_type bt = CL_PROGRAM_BINARY_TYPE_NONE;
                int idx = rgpu_cl_device_index(s->backend, devs[i]);
                rgpu__cl_device_build__init(&builds[i]);
                clGetProgramBuildInfo(p, devs[i], CL_PROGRAM_BUILD_STATUS, sizeof(st), &st, NULL);
                clGetProgramBuildInfo(p, devs[i], CL_PROGRAM_BINARY_TYPE, sizeof(bt), &bt, NULL);
                builds[i].device = idx < 0 ? 0 : (uint32_t)idx;
                builds[i].status = st;
                builds[i].binary_type = (uint32_t)bt;
                builds[i].log = refusal ? strdup(refusal) : rgpu_cl_build_str(p, devs[i], CL_PROGRAM_BUILD_LOG);
                builds[i].options = rgpu_cl_build_str(p, devs[i], CL_PROGRAM_BUILD_OPTIONS);
                rgpu_cl_options_unextend(builds[i].options);
                if (refusal)
                    builds[i].status = CL_BUILD_ERROR;
                build_ptrs[i] = &builds[i];
                executable |= bt == CL_PROGRAM_BINARY_TYPE_EXECUTABLE && st == CL_BUILD_SUCCESS;
            }
            reply.n_builds = n_devs;
            reply.builds = build_ptrs;
        }
    }
    if (err == CL_SUCCESS && executable && clCreateKernelsInProgram(p, 0, NULL, &n_kernels) == CL_SUCCESS &&
        n_kernels) {
        kernels = calloc(n_kernels, sizeof(*kernels));
        descs = calloc(n_kernels, sizeof(*descs));
        desc_ptrs = calloc(n_kernels, sizeof(*desc_ptrs));
        if (kernels && descs && desc_ptrs &&
            clCreateKernelsInProgram(p, n_kernels, kernels, NULL) == CL_SUCCESS) {
            for (cl_uint i = 0; i < n_kernels; i++) {
                cl_uint nargs = 0;
                clGetKernelInfo(kernels[i], CL_KERNEL_NUM_ARGS, sizeof(nargs), &nargs, NULL);
                total_args += nargs;
            }
            args = calloc(total_args + 1, sizeof(*args));
            arg_ptrs = calloc(total_args + 1, sizeof(*arg_ptrs));
            for (cl_uint i = 0, a = 0; args && arg_ptrs && i < n_kernels; i++) {
                Rgpu__ClKernelDesc *d = &descs[i];
                cl_uint nargs = 0;
                rgpu__cl_kernel_desc__init(d);
                clGetKernelInfo(kernels[i], CL_KERNEL_NUM_ARGS, sizeof(nargs), &nargs, NULL);
                d->name = rgpu_cl_kernel_str(kernels[i], CL_KERNEL_FUNCTION_NAME);
                d->attributes = rgpu_cl_kernel_str(kernels[i], CL_KERNEL_ATTRIBUTES);
                d->num_args = nargs;
                d->arg_info_known = 1;
                d->args = &arg_ptrs[a];
                for (cl_uint j = 0; j < nargs; j++, a++) {
                    Rgpu__ClKernelArg *arg = &args[a];
                    cl_kernel_arg_address_qualifier aq = 0;
                    cl_kernel_arg_access_qualifier cq = 0;
                    cl_kernel_arg_type_qualifier tq = 0;
                    rgpu__cl_kernel_arg__init(arg);
                    if (clGetKernelArgInfo(kernels[i], j, CL_KERNEL_ARG_ADDRESS_QUALIFIER, sizeof(aq), &aq, NULL) !=
                        CL_SUCCESS)
                        d->arg_info_known = 0;
                    clGetKernelArgInfo(kernels[i], j, CL_KERNEL_ARG_ACCESS_QUALIFIER, sizeof(cq), &cq, NULL);
                    clGetKernelArgInfo(kernels[i], j, CL_KERNEL_ARG_TYPE_QUALIFIER, sizeof(tq), &tq, NULL);
                    arg->address_qualifier = aq;
                    arg->access_qualifier = cq;
                    arg->type_qualifier = tq;
                    arg->type_name = rgpu_cl_arg_str(kernels[i], j, CL_KERNEL_ARG_TYPE_NAME);
                    arg->name = rgpu_cl_arg_str(kernels[i], j, CL_KERNEL_ARG_NAME);
                    arg_ptrs[a] = arg;
                }
                d->n_args = d->arg_info_known ? nargs : 0;
                desc_ptrs[i] = d;
            }
            reply.n_kernels = n_kernels;
            reply.kernels = desc_ptrs;
        }
    }
    status = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_BUILD_REPLY, hdr->seq, &reply.base, NULL, 0);

    for (cl_uint i = 0; i < reply.n_builds; i++) {
        free(builds[i].log);
        free(builds[i].options);
    }
    for (cl_uint a = 0; args && a < total_args; a++) {
        if (args[a].type_name != protobuf_c_empty_string)
            free(args[a].type_name);
        if (args[a].name != protobuf_c_empty_string)
            free(args[a].name);
    }
    for (cl_uint i = 0; i < reply.n_kernels; i++) {
        free(descs[i].name);
        free(descs[i].attributes);
    }
    for (cl_uint i = 0; kernels && i < n_kernels; i++) {
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    }
    free(kernels);
    free(descs);
    free(desc_ptrs);
    free(args);
    free(arg_ptrs);
    free(builds);
    free(build_ptrs);
    free(devs);
    return status;
}

static rgpu_status_t rgpu_cl_create_program_source(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                                   Rgpu__ClCreateProgramSource *m)
{
    rgpu_cl_handle_t *ctx = rgpu_cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    const char *src = m->source;
    cl_program p = NULL;
    cl_int err;

    if (!ctx)
        err = CL_INVALID_CONTEXT;
    else
        p = clCreateProgramWithSource(ctx->cl.context, 1, &src, NULL, &err);
    if (err == CL_SUCCESS && (err = rgpu_cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM, p, NULL)) == CL_SUCCESS)
        return RGPU_OK;
    if (p)
        clReleaseProgram(p);
    return rgpu_cl_async_error(s, hdr, err, NULL);
}

static rgpu_status_t rgpu_cl_create_program_binary(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                                   Rgpu__ClCreateProgramBinary *m, char *reason, size_t reason_cap)
{
    Rgpu__ClProgramBinaryReply reply = RGPU__CL_PROGRAM_BINARY_REPLY__INIT;
    rgpu_cl_handle_t *ctx = rgpu_cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    uint64_t total = 0;
    unsigned char *bulk = NULL;
    const unsigned char **bins = NULL;
    size_t *lens = NULL;
    cl_int *bstat = NULL;
    cl_device_id *devs = NULL;
    cl_program p = NULL;
    cl_int err;
    rgpu_status_t status;

    for (size_t i = 0; i < m->n_lengths; i++) {
        if (__builtin_add_overflow(total, m->lengths[i], &total)) {
            total = UINT64_MAX;
            break;
        }
    }
    if (m->n_lengths != m->n_devices || total != hdr->bulk_len || m->n_devices == 0 || m->n_devices > 64) {
        snprintf(reason, reason_cap, "program binaries: %zu lengths for %zu devices, %llu bytes sent",
                 m->n_lengths, m->n_devices, (unsigned long long)hdr->bulk_len);
        return RGPU_ERR_PROTOCOL;
    }
    /* The context and devices are checked before the binaries are received. */
    err = !ctx ? CL_INVALID_CONTEXT : rgpu_cl_devices(s, m->n_devices, m->devices, &devs);
    if (err == CL_SUCCESS && !(bulk = malloc(total ? total : 1)))
        err = CL_OUT_OF_HOST_MEMORY;
    if (err != CL_SUCCESS) {
        free(devs);
        reply.cl_error = err;
        status = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_PROGRAM_BINARY_REPLY, hdr->seq, &reply.base,
                                   NULL, 0);
        return status;
    }
    if ((status = rgpu_session_pull(s->session, bulk, total)) != RGPU_OK) {
        free(bulk);
        return status;
    }
    bins = calloc(m->n_devices, sizeof(*bins));
    lens = calloc(m->n_devices, sizeof(*lens));
    bstat = calloc(m->n_devices, sizeof(*bstat));
    if (!bins || !lens || !bstat)
        err = CL_OUT_OF_HOST_MEMORY;
    if (err == CL_SUCCESS) {
        for (size_t i = 0, at = 0; i < m->n_devices; i++) {
            bins[i] = bulk + at;
            lens[i] = m->lengths[i];
            at += m->lengths[i];
        }
        p = clCreateProgramWithBinary(ctx->cl.context, (cl_uint)m->n_devices, devs, lens, bins, bstat, &err);
        if (err == CL_SUCCESS)
            err = rgpu_cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM, p, NULL);
        if (err != CL_SUCCESS && p)
            clReleaseProgram(p);
    }
    reply.cl_error = err;
    if (bstat) {
        reply.n_binary_status = m->n_devices;
        reply.binary_status = bstat;
    }
    status = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_PROGRAM_BINARY_REPLY, hdr->seq, &reply.base, NULL, 0);
    free(bulk);
    free(bins);
    free(lens);
    free(bstat);
    free(devs);
    return status;
}

/* Whether a program's source (none for programs from binaries) and the
 * options may go to the compiler: no file of the server may be read into
 * it (an #include "/etc/shadow" would come back in the build log). */
/* Makes a program's source (none for programs from binaries) and the
 * options safe to compile: no file of the server may be read into a build (an
 * #include "/etc/shadow" would come back in the build log). Options that
 * point the compiler at files are refused. An include-like directive naming
 * anything but the allowed embedded headers is rewritten into an #error
 * (rgpu_cl_source_neutralize): the build fails there only if the compiler
 * takes that branch, as a missing header would. The rewritten source
 * replaces the handle's program (a new one in the same context; no kernel
 * exists on it, builds with kernels are refused by the client). Returns 1,
 * or 0 with a sentence in why. Session thread. */
/* Replaces the handle's program by a new one of source (the client's
 * request sends the program's source again when it inlined the
 * application's headers). Returns 1, or 0 with why. */
static int rgpu_cl_program_resource(rgpu_cl_handle_t *h, const char *source, size_t len, char *why, size_t why_cap)
{
    cl_context ctx = NULL;
    cl_program fresh = NULL;
    cl_int err;

    err = clGetProgramInfo(h->cl.program, CL_PROGRAM_CONTEXT, sizeof(ctx), &ctx, NULL);
    if (err == CL_SUCCESS)
        fresh = clCreateProgramWithSource(ctx, 1, &source, &len, &err);
    if (err != CL_SUCCESS) {
        snprintf(why, why_cap, "cannot recreate the program with its new source (error %d)", err);
        return 0;
    }
    clReleaseProgram(h->cl.program);
    h->cl.program = fresh;
    return 1;
}

static int rgpu_cl_program_prepare(rgpu_cl_handle_t *h, const char *source, const char *options,
                                   const char *const *allowed, size_t n_allowed, char *why, size_t why_cap)
{
    size_t len = 0, out_len = 0;
    char *src, *out = NULL;
    int ok;

    if (options && rgpu_cl_build_options_check(options, why, why_cap) != 0)
        return 0;
    if (source && *source && !rgpu_cl_program_resource(h, source, strlen(source), why, why_cap))
        return 0;
    if (clGetProgramInfo(h->cl.program, CL_PROGRAM_SOURCE, 0, NULL, &len) != CL_SUCCESS || len <= 1)
        return 1;
    src = malloc(len);
    if (!src) {
        snprintf(why, why_cap, "out of memory checking the program source");
        return 0;
    }
    ok = clGetProgramInfo(h->cl.program, CL_PROGRAM_SOURCE, len, src, NULL) == CL_SUCCESS &&
         rgpu_cl_source_neutralize(src, strnlen(src, len), allowed, n_allowed, &out, &out_len, why, why_cap) == 0;
    free(src);
    if (!ok || !out)
        return ok;
    ok = rgpu_cl_program_resource(h, out, out_len, why, why_cap);
    free(out);
    return ok;
}

static rgpu_status_t rgpu_cl_build(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClBuildProgram *m)
{
    rgpu_cl_handle_t *p = rgpu_cl_get(s, m->program, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM);
    cl_device_id *devs = NULL;
    cl_int err = p ? rgpu_cl_devices(s, m->n_devices, m->devices, &devs) : CL_INVALID_PROGRAM;
    char why[512], refusal[600], *options = NULL;
    int refused = 0;
    rgpu_status_t status;

    if (err == CL_SUCCESS && !rgpu_cl_program_prepare(p, m->source, m->options, NULL, 0, why, sizeof(why))) {
        snprintf(refusal, sizeof(refusal), "rgpu-server refused to build this program: %s", why);
        err = m->options && rgpu_cl_build_options_check(m->options, NULL, 0) != 0 ? CL_INVALID_BUILD_OPTIONS
                                                                                 : CL_BUILD_PROGRAM_FAILURE;
        refused = 1;
    }
    if (err == CL_SUCCESS && !(options = rgpu_cl_options_extend(m->options)))
        err = CL_OUT_OF_HOST_MEMORY;
    if (err == CL_SUCCESS)
        err = clBuildProgram(p->cl.program, (cl_uint)m->n_devices, devs, options, NULL, NULL);
    free(options);
    free(devs);
    status = rgpu_cl_build_reply(s, hdr, p ? p->cl.program : NULL, err, refused ? refusal : NULL);
    if (err == CL_BUILD_PROGRAM_FAILURE)
        rgpu_debug("opencl", "%s: a program failed to build (log sent to the client)", rgpu_session_name(s->session));
    return status;
}

static rgpu_status_t rgpu_cl_compile(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClCompileProgram *m)
{
    rgpu_cl_handle_t *p = rgpu_cl_get(s, m->program, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM);
    cl_program *headers = NULL;
    cl_device_id *devs = NULL;
    cl_int err = p ? rgpu_cl_devices(s, m->n_devices, m->devices, &devs) : CL_INVALID_PROGRAM;
    char why[512], refusal[600], *options = NULL;
    int refused = 0;
    rgpu_status_t status;

    if (err == CL_SUCCESS && (m->n_headers != m->n_header_names || m->n_headers > RGPU_CL_MAX_HEADERS))
        err = CL_INVALID_VALUE;
    /* The compiler writes each embedded header to a file under its name. */
    for (size_t i = 0; err == CL_SUCCESS && !refused && i < m->n_header_names; i++) {
        if (rgpu_cl_header_name_check(m->header_names[i], why, sizeof(why)) != 0)
            refused = 1;
    }
    if (err == CL_SUCCESS && m->n_headers && !(headers = malloc(m->n_headers * sizeof(*headers))))
        err = CL_OUT_OF_HOST_MEMORY;
    /* The source and each embedded header may include only the embedded
     * headers, by the names given here (each prepared before its program
     * is taken: preparing may replace it). */
    if (err == CL_SUCCESS &&
        !rgpu_cl_program_prepare(p, m->source, m->options, (const char *const *)m->header_names,
                                 m->n_header_names, why, sizeof(why)))
        refused = 1;
    for (size_t i = 0; err == CL_SUCCESS && !refused && i < m->n_headers; i++) {
        rgpu_cl_handle_t *h = rgpu_cl_get(s, m->headers[i], RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM);
        size_t len = 0;

        if (!h)
            err = CL_INVALID_VALUE;
        /* An embedded header is a program made from source (PoCL reads its
         * source without checking there is one). */
        else if (clGetProgramInfo(h->cl.program, CL_PROGRAM_SOURCE, 0, NULL, &len) != CL_SUCCESS || len <= 1)
            err = CL_INVALID_VALUE;
        else if (h != p && !rgpu_cl_program_prepare(h, NULL, NULL, (const char *const *)m->header_names,
                                                    m->n_header_names, why, sizeof(why)))
            refused = 1;
        else
            headers[i] = h->cl.program;
    }
    if (refused) {
        snprintf(refusal, sizeof(refusal), "rgpu-server refused to compile this program: %s", why);
        err = m->options && rgpu_cl_build_options_check(m->options, NULL, 0) != 0 ? CL_INVALID_COMPILER_OPTIONS
                                                                                 : CL_COMPILE_PROGRAM_FAILURE;
    }
    if (err == CL_SUCCESS && !(options = rgpu_cl_options_extend(m->options)))
        err = CL_OUT_OF_HOST_MEMORY;
    if (err == CL_SUCCESS)
        err = clCompileProgram(p->cl.program, (cl_uint)m->n_devices, devs, options, (cl_uint)m->n_headers,
                               headers, (const char **)m->header_names, NULL, NULL);
    free(options);
    free(headers);
    free(devs);
    status = rgpu_cl_build_reply(s, hdr, p ? p->cl.program : NULL, err, refused ? refusal : NULL);
    return status;
}

static rgpu_status_t rgpu_cl_link(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClLinkProgram *m)
{
    rgpu_cl_handle_t *ctx = rgpu_cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    cl_program *progs = NULL, p = NULL;
    cl_device_id *devs = NULL;
    cl_int err = ctx ? rgpu_cl_devices(s, m->n_devices, m->devices, &devs) : CL_INVALID_CONTEXT;
    char why[512];
    rgpu_status_t status;

    if (err == CL_SUCCESS && (m->n_programs == 0 || !(progs = malloc(m->n_programs * sizeof(*progs)))))
        err = m->n_programs ? CL_OUT_OF_HOST_MEMORY : CL_INVALID_VALUE;
    for (size_t i = 0; err == CL_SUCCESS && i < m->n_programs; i++) {
        rgpu_cl_handle_t *h = rgpu_cl_get(s, m->programs[i], RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM);
        if (!h)
            err = CL_INVALID_PROGRAM;
        else
            progs[i] = h->cl.program;
    }
    if (err == CL_SUCCESS && m->options && rgpu_cl_build_options_check(m->options, why, sizeof(why)) != 0) {
        rgpu_debug("opencl", "%s: link refused: %s", rgpu_session_name(s->session), why);
        err = CL_INVALID_LINKER_OPTIONS;
    }
    if (err == CL_SUCCESS) {
        /* With the argument-info flag where the platform takes it (PoCL
         * drops the info for any other options, "" included); as given
         * where it does not. */
        char *options = rgpu_cl_options_extend(m->options);
        p = clLinkProgram(ctx->cl.context, (cl_uint)m->n_devices, devs, options ? options : m->options,
                          (cl_uint)m->n_programs, progs, NULL, NULL, &err);
        if (options && err == CL_INVALID_LINKER_OPTIONS)
            p = clLinkProgram(ctx->cl.context, (cl_uint)m->n_devices, devs, *m->options ? m->options : NULL,
                              (cl_uint)m->n_programs, progs, NULL, NULL, &err);
        free(options);
    }
    free(progs);
    free(devs);
    if (p && rgpu_cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM, p, NULL) != CL_SUCCESS) {
        clReleaseProgram(p);
        p = NULL;
        err = CL_OUT_OF_HOST_MEMORY;
    }
    status = rgpu_cl_build_reply(s, hdr, p, err, NULL);
    return status;
}

/* The image type an image*_t argument takes (PoCL 3.1 names them so, with
 * no access qualifier), or 0 for other type names. */
static cl_mem_object_type rgpu_cl_image_arg_type(const char *type)
{
    static const struct {
        const char *name;
        cl_mem_object_type type;
    } names[] = {
        {"image1d_t", CL_MEM_OBJECT_IMAGE1D},           {"image1d_buffer_t", CL_MEM_OBJECT_IMAGE1D_BUFFER},
        {"image1d_array_t", CL_MEM_OBJECT_IMAGE1D_ARRAY}, {"image2d_t", CL_MEM_OBJECT_IMAGE2D},
        {"image2d_array_t", CL_MEM_OBJECT_IMAGE2D_ARRAY}, {"image3d_t", CL_MEM_OBJECT_IMAGE3D},
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(type, names[i].name) == 0)
            return names[i].type;
    }
    return 0;
}

/* What kind argument i of k is, from the platform's argument info, and for
 * images which image type (*image_p). Images are __global to the platform,
 * but a buffer set where the kernel reads an image would be taken for the
 * platform's image structure: they are a kind of their own. Types whose
 * value is a handle of the platform we do not serve (device queues, device
 * events) are OPAQUE: no client bytes may stand for them. */
static uint8_t rgpu_cl_arg_kind_of(cl_kernel k, cl_uint i, cl_mem_object_type *image_p)
{
    cl_kernel_arg_address_qualifier aq = 0;
    char type[64] = "";
    int have_type;

    *image_p = 0;
    if (clGetKernelArgInfo(k, i, CL_KERNEL_ARG_ADDRESS_QUALIFIER, sizeof(aq), &aq, NULL) != CL_SUCCESS)
        return RGPU_CL_ARG_UNKNOWN;
    /* A type name longer than the buffer is no handle type's. */
    have_type = clGetKernelArgInfo(k, i, CL_KERNEL_ARG_TYPE_NAME, sizeof(type), type, NULL) == CL_SUCCESS;
    type[sizeof(type) - 1] = '\0';
    if (have_type && (*image_p = rgpu_cl_image_arg_type(type)) != 0)
        return RGPU_CL_ARG_IMAGE;
    /* Any other image type (depth, msaa, a qualified spelling) is a handle
     * of the platform's: never a buffer, whatever its address space. */
    if (have_type && (strncmp(type, "image", 5) == 0 || strstr(type, " image") || strstr(type, "_image")))
        return RGPU_CL_ARG_OPAQUE;
    if (have_type && strcmp(type, "sampler_t") == 0)
        return RGPU_CL_ARG_SAMPLER;
    switch (aq) {
    case CL_KERNEL_ARG_ADDRESS_GLOBAL:
    case CL_KERNEL_ARG_ADDRESS_CONSTANT:
        return RGPU_CL_ARG_MEM;
    case CL_KERNEL_ARG_ADDRESS_LOCAL:
        return RGPU_CL_ARG_LOCAL;
    default:
        break;
    }
    if (!have_type)
        return RGPU_CL_ARG_UNKNOWN;
    if (strcmp(type, "sampler_t") == 0)
        return RGPU_CL_ARG_SAMPLER;
    if (strcmp(type, "queue_t") == 0 || strcmp(type, "clk_event_t") == 0 || strcmp(type, "reserve_id_t") == 0 ||
        strncmp(type, "image", 5) == 0)
        return RGPU_CL_ARG_OPAQUE;
    return RGPU_CL_ARG_VALUE;
}

/* Records the kinds of every argument of a new kernel's handle. */
static cl_int rgpu_cl_kernel_arg_kinds(rgpu_cl_handle_t *h)
{
    cl_uint n = 0;

    if (clGetKernelInfo(h->cl.kernel, CL_KERNEL_NUM_ARGS, sizeof(n), &n, NULL) != CL_SUCCESS)
        n = 0;
    h->arg_kinds = calloc(n ? n : 1, 1);
    h->arg_local = calloc(n ? n : 1, sizeof(*h->arg_local));
    h->arg_held = calloc(n ? n : 1, sizeof(*h->arg_held));
    h->arg_image = calloc(n ? n : 1, sizeof(*h->arg_image));
    if (!h->arg_kinds || !h->arg_local || !h->arg_image || !h->arg_held)
        return CL_OUT_OF_HOST_MEMORY;
    h->num_args = n;
    for (cl_uint i = 0; i < n; i++)
        h->arg_kinds[i] = rgpu_cl_arg_kind_of(h->cl.kernel, i, &h->arg_image[i]);
    return CL_SUCCESS;
}

static rgpu_status_t rgpu_cl_create_kernel(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                           Rgpu__ClCreateKernel *m)
{
    rgpu_cl_handle_t *p = rgpu_cl_get(s, m->program, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM);
    rgpu_cl_handle_t *h;
    cl_kernel k = NULL;
    cl_int err;

    if (!p)
        err = CL_INVALID_PROGRAM;
    else
        k = clCreateKernel(p->cl.program, m->name, &err);
    if (err == CL_SUCCESS && (err = rgpu_cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL, k, &h)) == CL_SUCCESS) {
        if ((err = rgpu_cl_kernel_arg_kinds(h)) == CL_SUCCESS)
            return RGPU_OK;
        rgpu_htable_remove(&s->handles, m->id);
        rgpu_cl_release_handle(h);
        k = NULL;
    }
    if (k)
        clReleaseKernel(k);
    return rgpu_cl_async_error(s, hdr, err, m->name);
}

/* Sets an argument by the kind the platform declared, whatever the client
 * claims: a memory object only as a handle of this session, value bytes
 * only where the kernel takes plain bytes. Where the platform gave no
 * argument info, value bytes of a pointer's size are refused: they could
 * stand for a cl_mem, which the platform would dereference. */
static rgpu_status_t rgpu_cl_set_arg(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClSetKernelArg *m)
{
    rgpu_cl_handle_t *k = rgpu_cl_get(s, m->kernel, RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL);
    const char *why = NULL;
    uint8_t kind;
    cl_int err;

    if (!k)
        return rgpu_cl_async_error(s, hdr, CL_INVALID_KERNEL, NULL);
    if (m->index >= k->num_args)
        return rgpu_cl_async_error(s, hdr, CL_INVALID_ARG_INDEX, NULL);
    kind = k->arg_kinds[m->index];
    if (kind == RGPU_CL_ARG_MEM || (kind == RGPU_CL_ARG_UNKNOWN && m->kind == RGPU__CL_ARG_KIND__CL_ARG_MEM)) {
        /* Without argument info, an image may be what the kernel takes. */
        rgpu_cl_handle_t *mem = !m->mem ? NULL
                                : kind == RGPU_CL_ARG_MEM ? rgpu_cl_get_buffer(s, m->mem)
                                                          : rgpu_cl_get(s, m->mem, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM);
        cl_mem value = mem ? mem->cl.mem : NULL;

        if (m->kind != RGPU__CL_ARG_KIND__CL_ARG_MEM || (m->mem && !mem)) {
            err = CL_INVALID_MEM_OBJECT;
            why = "the argument is a memory object: it takes a buffer of this session";
        } else if ((err = clSetKernelArg(k->cl.kernel, m->index, sizeof(value), &value)) == CL_SUCCESS) {
            rgpu_cl_hold_arg(s, k, m->index, mem);
        }
    } else if (kind == RGPU_CL_ARG_IMAGE) {
        rgpu_cl_handle_t *img = m->kind == RGPU__CL_ARG_KIND__CL_ARG_MEM ? rgpu_cl_get_image(s, m->mem) : NULL;

        /* PoCL 3.1 takes a buffer, or an image of another type, for any
         * image argument, and reads it as the image the kernel declares. */
        if (!img || img->image_type != k->arg_image[m->index]) {
            err = CL_INVALID_MEM_OBJECT;
            why = "the argument is an image: it takes an image of this session, of the type the kernel declares";
        } else if ((err = clSetKernelArg(k->cl.kernel, m->index, sizeof(img->cl.mem), &img->cl.mem)) ==
                   CL_SUCCESS) {
            rgpu_cl_hold_arg(s, k, m->index, img);
        }
    } else if (kind == RGPU_CL_ARG_SAMPLER) {
        rgpu_cl_handle_t *smp = m->kind == RGPU__CL_ARG_KIND__CL_ARG_SAMPLER
                                    ? rgpu_cl_get(s, m->sampler, RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER)
                                    : NULL;

        if (!smp) {
            err = CL_INVALID_SAMPLER;
            why = "the argument is a sampler_t: it takes a sampler of this session";
        } else if ((err = clSetKernelArg(k->cl.kernel, m->index, sizeof(smp->cl.sampler), &smp->cl.sampler)) ==
                   CL_SUCCESS) {
            rgpu_cl_hold_arg(s, k, m->index, smp);
        }
    } else if (kind == RGPU_CL_ARG_LOCAL ||
               (kind == RGPU_CL_ARG_UNKNOWN && m->kind == RGPU__CL_ARG_KIND__CL_ARG_LOCAL)) {
        if (m->kind != RGPU__CL_ARG_KIND__CL_ARG_LOCAL) {
            err = CL_INVALID_ARG_VALUE;
            why = "the argument is __local: it takes a size and no value";
        } else if (m->local_size == 0) {
            err = CL_INVALID_ARG_SIZE;
        } else if (m->local_size > s->backend->max_local_mem) {
            /* PoCL 3.1 asserts (and takes the server down) at the launch. */
            err = CL_INVALID_ARG_SIZE;
            why = "more local memory than any device of the server has";
        } else if ((err = clSetKernelArg(k->cl.kernel, m->index, m->local_size, NULL)) == CL_SUCCESS) {
            k->local_total = k->local_total - k->arg_local[m->index] + m->local_size;
            k->arg_local[m->index] = m->local_size;
        }
    } else if (kind == RGPU_CL_ARG_OPAQUE) {
        err = CL_INVALID_ARG_VALUE;
        why = "device queues, device events and pipe reservations are not served by rgpu";
    } else if (m->kind != RGPU__CL_ARG_KIND__CL_ARG_VALUE) {
        err = CL_INVALID_ARG_VALUE;
        why = "the argument is a plain value";
    } else if (m->value.len == 0) {
        err = CL_INVALID_ARG_SIZE;
    } else if (kind == RGPU_CL_ARG_UNKNOWN && m->value.len == sizeof(void *)) {
        err = CL_INVALID_ARG_VALUE;
        why = "the platform gives no argument info for this kernel, and a value of a pointer's size "
              "could be taken for a memory object";
    } else {
        err = clSetKernelArg(k->cl.kernel, m->index, m->value.len, m->value.data);
    }
    return err == CL_SUCCESS ? RGPU_OK : rgpu_cl_async_error(s, hdr, err, why);
}

/* ---- queries ---- */

/* Whether an object query answers plain data. Queries whose value holds
 * the platform's handles (CL_MEM_CONTEXT, CL_QUEUE_DEVICE,
 * CL_CONTEXT_PROPERTIES...) or a host pointer of the server
 * (CL_MEM_HOST_PTR) would hand server addresses to a client: the client
 * answers those itself, from its own objects. Anything not listed here,
 * extensions included, is refused, so a new pointer-valued query cannot
 * leak by default. */
static int rgpu_cl_query_allowed(Rgpu__ClObjectKind kind, cl_uint param)
{
    switch (kind) {
    case RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT:
        return param == CL_EVENT_COMMAND_TYPE || param == CL_EVENT_REFERENCE_COUNT ||
               param == CL_EVENT_COMMAND_EXECUTION_STATUS;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_MEM:
        return param == CL_MEM_TYPE || param == CL_MEM_FLAGS || param == CL_MEM_SIZE || param == CL_MEM_MAP_COUNT ||
               param == CL_MEM_REFERENCE_COUNT || param == CL_MEM_OFFSET;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM:
        return param == CL_PROGRAM_REFERENCE_COUNT || param == CL_PROGRAM_NUM_DEVICES ||
               param == CL_PROGRAM_SOURCE || param == CL_PROGRAM_BINARY_SIZES || param == CL_PROGRAM_NUM_KERNELS ||
               param == CL_PROGRAM_KERNEL_NAMES || param == 0x1169 /* CL_PROGRAM_IL */ ||
               param == 0x116A /* CL_PROGRAM_SCOPE_GLOBAL_CTORS_PRESENT */ ||
               param == 0x116B /* CL_PROGRAM_SCOPE_GLOBAL_DTORS_PRESENT */;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL:
        return param == CL_KERNEL_FUNCTION_NAME || param == CL_KERNEL_NUM_ARGS ||
               param == CL_KERNEL_REFERENCE_COUNT || param == CL_KERNEL_ATTRIBUTES;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE:
        return param == CL_QUEUE_REFERENCE_COUNT || param == CL_QUEUE_PROPERTIES ||
               param == 0x1094 /* CL_QUEUE_SIZE */ || param == 0x1098 /* CL_QUEUE_PROPERTIES_ARRAY */;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT:
        return param == CL_CONTEXT_REFERENCE_COUNT || param == CL_CONTEXT_NUM_DEVICES;
    default:
        return 0;
    }
}

static cl_int rgpu_cl_query(rgpu_cl_session_t *s, Rgpu__ClGetInfo *m, size_t size, void *value, size_t *size_ret)
{
    rgpu_cl_handle_t *h = rgpu_cl_get(s, m->id, m->kind);
    /* A device outside the session's lease is as unknown as a bad index. */
    cl_device_id dev = m->device < s->backend->num_devices &&
                               rgpu_session_device_allowed(s->session, m->device)
                           ? s->backend->devices[m->device]
                           : NULL;

    if (!h)
        return rgpu_cl_kind_error(m->kind);
    if (m->which == RGPU__CL_INFO_WHICH__CL_INFO_OBJECT && !rgpu_cl_query_allowed(m->kind, m->param))
        return CL_INVALID_VALUE;
    if ((m->which == RGPU__CL_INFO_WHICH__CL_INFO_PROGRAM_BUILD ||
         m->which == RGPU__CL_INFO_WHICH__CL_INFO_KERNEL_WORK_GROUP) && !dev)
        return CL_INVALID_DEVICE;
    if (m->which == RGPU__CL_INFO_WHICH__CL_INFO_KERNEL_ARG && m->kind == RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL &&
        m->device >= h->num_args)
        return CL_INVALID_ARG_INDEX;
    switch (m->which) {
    case RGPU__CL_INFO_WHICH__CL_INFO_OBJECT:
        switch (m->kind) {
        case RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT: return clGetEventInfo(h->cl.event, m->param, size, value, size_ret);
        case RGPU__CL_OBJECT_KIND__CL_OBJ_MEM: return clGetMemObjectInfo(h->cl.mem, m->param, size, value, size_ret);
        case RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM:
            return clGetProgramInfo(h->cl.program, m->param, size, value, size_ret);
        case RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL: return clGetKernelInfo(h->cl.kernel, m->param, size, value, size_ret);
        case RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE:
            return clGetCommandQueueInfo(h->cl.queue, m->param, size, value, size_ret);
        case RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT:
            return clGetContextInfo(h->cl.context, m->param, size, value, size_ret);
        default: return CL_INVALID_VALUE;
        }
    case RGPU__CL_INFO_WHICH__CL_INFO_EVENT_PROFILING:
        return m->kind == RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT
                   ? clGetEventProfilingInfo(h->cl.event, m->param, size, value, size_ret)
                   : CL_INVALID_EVENT;
    case RGPU__CL_INFO_WHICH__CL_INFO_PROGRAM_BUILD:
        return m->kind == RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM
                   ? clGetProgramBuildInfo(h->cl.program, dev, m->param, size, value, size_ret)
                   : CL_INVALID_PROGRAM;
    case RGPU__CL_INFO_WHICH__CL_INFO_KERNEL_WORK_GROUP:
        return m->kind == RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL
                   ? clGetKernelWorkGroupInfo(h->cl.kernel, dev, m->param, size, value, size_ret)
                   : CL_INVALID_KERNEL;
    case RGPU__CL_INFO_WHICH__CL_INFO_KERNEL_ARG:
        return m->kind == RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL
                   ? clGetKernelArgInfo(h->cl.kernel, m->device, m->param, size, value, size_ret)
                   : CL_INVALID_KERNEL;
    default:
        return CL_INVALID_VALUE;
    }
}

/* CL_PROGRAM_BINARIES takes an array of pointers: gather them into one value. */
static cl_int rgpu_cl_query_binaries(rgpu_cl_session_t *s, Rgpu__ClGetInfo *m, uint8_t **value_p, size_t *len_p)
{
    rgpu_cl_handle_t *h = rgpu_cl_get(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM);
    cl_uint n = 0;
    size_t *sizes = NULL, total = 0;
    unsigned char **ptrs = NULL;
    uint8_t *all = NULL;
    cl_int err;

    if (!h)
        return CL_INVALID_PROGRAM;
    err = clGetProgramInfo(h->cl.program, CL_PROGRAM_NUM_DEVICES, sizeof(n), &n, NULL);
    if (err == CL_SUCCESS && !((sizes = calloc(n, sizeof(*sizes))) && (ptrs = calloc(n, sizeof(*ptrs)))))
        err = CL_OUT_OF_HOST_MEMORY;
    if (err == CL_SUCCESS)
        err = clGetProgramInfo(h->cl.program, CL_PROGRAM_BINARY_SIZES, n * sizeof(*sizes), sizes, NULL);
    for (cl_uint i = 0; err == CL_SUCCESS && i < n; i++)
        total += sizes[i];
    if (err == CL_SUCCESS && !(all = malloc(total ? total : 1)))
        err = CL_OUT_OF_HOST_MEMORY;
    for (cl_uint i = 0, at = 0; err == CL_SUCCESS && i < n; at += (cl_uint)sizes[i], i++)
        ptrs[i] = sizes[i] ? all + at : NULL;
    if (err == CL_SUCCESS)
        err = clGetProgramInfo(h->cl.program, CL_PROGRAM_BINARIES, n * sizeof(*ptrs), ptrs, NULL);
    free(sizes);
    free(ptrs);
    if (err != CL_SUCCESS) {
        free(all);
        return err;
    }
    *value_p = all;
    *len_p = total;
    return CL_SUCCESS;
}

/* The most image formats one query answers (PoCL 3.1 has 44 per type). */
#define RGPU_CL_MAX_IMAGE_FORMATS 4096

/* clGetSupportedImageFormats: the context's formats for an image type and
 * flags, as an array of cl_image_format. */
static cl_int rgpu_cl_query_formats(rgpu_cl_session_t *s, Rgpu__ClGetInfo *m, uint8_t **value_p, size_t *len_p)
{
    rgpu_cl_handle_t *ctx = m->kind == RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT
                                ? rgpu_cl_get(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT)
                                : NULL;
    uint64_t dims[4];
    cl_mem_flags flags = 0;
    cl_image_format *formats;
    cl_uint n = 0;
    cl_int err;

    if (!ctx)
        return CL_INVALID_CONTEXT;
    if (m->extra.len != sizeof(uint64_t) || !rgpu_cl_image_dims(m->param, 1, 1, 1, 1, dims))
        return CL_INVALID_VALUE;
    for (int i = 7; i >= 0; i--)
        flags = flags << 8 | m->extra.data[i];
    err = clGetSupportedImageFormats(ctx->cl.context, flags, m->param, 0, NULL, &n);
    if (err != CL_SUCCESS)
        return err;
    if (n > RGPU_CL_MAX_IMAGE_FORMATS)
        n = RGPU_CL_MAX_IMAGE_FORMATS;
    formats = calloc(n ? n : 1, sizeof(*formats));
    if (!formats)
        return CL_OUT_OF_HOST_MEMORY;
    if (n && (err = clGetSupportedImageFormats(ctx->cl.context, flags, m->param, n, formats, NULL)) != CL_SUCCESS) {
        free(formats);
        return err;
    }
    *value_p = (uint8_t *)formats;
    *len_p = n * sizeof(*formats);
    return CL_SUCCESS;
}

static rgpu_status_t rgpu_cl_get_info(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClGetInfo *m)
{
    Rgpu__ClInfoReply reply = RGPU__CL_INFO_REPLY__INIT;
    uint8_t *value = NULL;
    size_t len = 0;
    cl_int err;
    rgpu_status_t status;

    if (m->kind == RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM && m->which == RGPU__CL_INFO_WHICH__CL_INFO_OBJECT &&
        m->param == CL_PROGRAM_BINARIES) {
        err = rgpu_cl_query_binaries(s, m, &value, &len);
    } else if (m->which == RGPU__CL_INFO_WHICH__CL_INFO_IMAGE_FORMATS) {
        err = rgpu_cl_query_formats(s, m, &value, &len);
    } else {
        err = rgpu_cl_query(s, m, 0, NULL, &len);
        if (err == CL_SUCCESS && !(value = malloc(len ? len : 1)))
            err = CL_OUT_OF_HOST_MEMORY;
        if (err == CL_SUCCESS)
            err = rgpu_cl_query(s, m, len, value, NULL);
    }
    reply.cl_error = err;
    if (err == CL_SUCCESS) {
        reply.value.data = value;
        reply.value.len = len;
    }
    status = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_INFO_REPLY, hdr->seq, &reply.base, NULL, 0);
    free(value);
    return status;
}

/* ---- dispatch ---- */

#define RGPU_CL_UNPACK(type, fn_prefix, handler, ...)                                               \
    do {                                                                                             \
        type *m = fn_prefix##__unpack(NULL, hdr->body_len, body);                                    \
        if (!m)                                                                                      \
            goto bad_body;                                                                           \
        status = handler(s, hdr, m, ##__VA_ARGS__);                                                  \
        fn_prefix##__free_unpacked(m, NULL);                                                         \
    } while (0)

static rgpu_status_t rgpu_cl_session_handle(void *ctx, const rgpu_frame_header_t *hdr, const uint8_t *body,
                                            char *reason, size_t reason_cap)
{
    rgpu_cl_session_t *s = ctx;
    rgpu_status_t status = RGPU_OK;
    int has_bulk_handler = hdr->type == RGPU__MSG_TYPE__MSG_CL_CREATE_BUFFER ||
                           hdr->type == RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER ||
                           hdr->type == RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER_RECT ||
                           hdr->type == RGPU__MSG_TYPE__MSG_CL_CREATE_IMAGE ||
                           hdr->type == RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE ||
                           hdr->type == RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_BINARY;

    if (hdr->bulk_len && !has_bulk_handler) {
        snprintf(reason, reason_cap, "message type %u carries %llu bytes of bulk it cannot have", hdr->type,
                 (unsigned long long)hdr->bulk_len);
        return RGPU_ERR_PROTOCOL;
    }
    switch (hdr->type) {
    case RGPU__MSG_TYPE__MSG_CL_CREATE_CONTEXT:
        RGPU_CL_UNPACK(Rgpu__ClCreateContext, rgpu__cl_create_context, rgpu_cl_create_context);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_QUEUE:
        RGPU_CL_UNPACK(Rgpu__ClCreateQueue, rgpu__cl_create_queue, rgpu_cl_create_queue);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_BUFFER:
        RGPU_CL_UNPACK(Rgpu__ClCreateBuffer, rgpu__cl_create_buffer, rgpu_cl_create_buffer, reason, reason_cap);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_SUB_BUFFER:
        RGPU_CL_UNPACK(Rgpu__ClCreateSubBuffer, rgpu__cl_create_sub_buffer, rgpu_cl_create_sub_buffer);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_SOURCE:
        RGPU_CL_UNPACK(Rgpu__ClCreateProgramSource, rgpu__cl_create_program_source, rgpu_cl_create_program_source);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_BINARY:
        RGPU_CL_UNPACK(Rgpu__ClCreateProgramBinary, rgpu__cl_create_program_binary, rgpu_cl_create_program_binary,
                       reason, reason_cap);
        break;
    case RGPU__MSG_TYPE__MSG_CL_BUILD_PROGRAM:
        RGPU_CL_UNPACK(Rgpu__ClBuildProgram, rgpu__cl_build_program, rgpu_cl_build);
        break;
    case RGPU__MSG_TYPE__MSG_CL_COMPILE_PROGRAM:
        RGPU_CL_UNPACK(Rgpu__ClCompileProgram, rgpu__cl_compile_program, rgpu_cl_compile);
        break;
    case RGPU__MSG_TYPE__MSG_CL_LINK_PROGRAM:
        RGPU_CL_UNPACK(Rgpu__ClLinkProgram, rgpu__cl_link_program, rgpu_cl_link);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_KERNEL:
        RGPU_CL_UNPACK(Rgpu__ClCreateKernel, rgpu__cl_create_kernel, rgpu_cl_create_kernel);
        break;
    case RGPU__MSG_TYPE__MSG_CL_SET_KERNEL_ARG:
        RGPU_CL_UNPACK(Rgpu__ClSetKernelArg, rgpu__cl_set_kernel_arg, rgpu_cl_set_arg);
        break;
    case RGPU__MSG_TYPE__MSG_CL_RELEASE:
        RGPU_CL_UNPACK(Rgpu__ClRelease, rgpu__cl_release, rgpu_cl_release);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_USER_EVENT:
        RGPU_CL_UNPACK(Rgpu__ClCreateUserEvent, rgpu__cl_create_user_event, rgpu_cl_user_event);
        break;
    case RGPU__MSG_TYPE__MSG_CL_SET_USER_EVENT_STATUS:
        RGPU_CL_UNPACK(Rgpu__ClSetUserEventStatus, rgpu__cl_set_user_event_status, rgpu_cl_set_user_event);
        break;
    case RGPU__MSG_TYPE__MSG_CL_SET_EVENT_CALLBACK:
        RGPU_CL_UNPACK(Rgpu__ClSetEventCallback, rgpu__cl_set_event_callback, rgpu_cl_set_event_callback);
        break;
    case RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER:
        RGPU_CL_UNPACK(Rgpu__ClWriteBuffer, rgpu__cl_write_buffer, rgpu_cl_write, reason, reason_cap);
        break;
    case RGPU__MSG_TYPE__MSG_CL_READ_BUFFER:
        RGPU_CL_UNPACK(Rgpu__ClReadBuffer, rgpu__cl_read_buffer, rgpu_cl_read);
        break;
    case RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER:
        RGPU_CL_UNPACK(Rgpu__ClCopyBuffer, rgpu__cl_copy_buffer, rgpu_cl_copy);
        break;
    case RGPU__MSG_TYPE__MSG_CL_FILL_BUFFER:
        RGPU_CL_UNPACK(Rgpu__ClFillBuffer, rgpu__cl_fill_buffer, rgpu_cl_fill);
        break;
    case RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER_RECT:
        RGPU_CL_UNPACK(Rgpu__ClBufferRect, rgpu__cl_buffer_rect, rgpu_cl_write_rect, reason, reason_cap);
        break;
    case RGPU__MSG_TYPE__MSG_CL_READ_BUFFER_RECT:
        RGPU_CL_UNPACK(Rgpu__ClBufferRect, rgpu__cl_buffer_rect, rgpu_cl_read_rect);
        break;
    case RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER_RECT:
        RGPU_CL_UNPACK(Rgpu__ClBufferRect, rgpu__cl_buffer_rect, rgpu_cl_copy_rect);
        break;
    case RGPU__MSG_TYPE__MSG_CL_NDRANGE: {
        int owned;
        Rgpu__ClNDRange *m = rgpu_cl_launch_decode(s, hdr, body, &owned);
        if (!m)
            goto bad_body;
        status = rgpu_cl_ndrange(s, hdr, m);
        if (owned)
            rgpu__cl_ndrange__free_unpacked(m, NULL);
        break;
    }
    case RGPU__MSG_TYPE__MSG_CL_MARKER:
        RGPU_CL_UNPACK(Rgpu__ClMarker, rgpu__cl_marker, rgpu_cl_marker);
        break;
    case RGPU__MSG_TYPE__MSG_CL_MIGRATE:
        RGPU_CL_UNPACK(Rgpu__ClMigrate, rgpu__cl_migrate, rgpu_cl_migrate);
        break;
    case RGPU__MSG_TYPE__MSG_CL_FLUSH:
    case RGPU__MSG_TYPE__MSG_CL_FINISH:
        RGPU_CL_UNPACK(Rgpu__ClQueueOp, rgpu__cl_queue_op, rgpu_cl_queue_op);
        break;
    case RGPU__MSG_TYPE__MSG_CL_WAIT_EVENTS:
        RGPU_CL_UNPACK(Rgpu__ClWaitEvents, rgpu__cl_wait_events, rgpu_cl_wait_events);
        break;
    case RGPU__MSG_TYPE__MSG_CL_GET_INFO:
        RGPU_CL_UNPACK(Rgpu__ClGetInfo, rgpu__cl_get_info, rgpu_cl_get_info);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_IMAGE:
        RGPU_CL_UNPACK(Rgpu__ClCreateImage, rgpu__cl_create_image, rgpu_cl_create_image, reason, reason_cap);
        break;
    case RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE:
        RGPU_CL_UNPACK(Rgpu__ClImageRect, rgpu__cl_image_rect, rgpu_cl_write_image, reason, reason_cap);
        break;
    case RGPU__MSG_TYPE__MSG_CL_READ_IMAGE:
        RGPU_CL_UNPACK(Rgpu__ClImageRect, rgpu__cl_image_rect, rgpu_cl_read_image);
        break;
    case RGPU__MSG_TYPE__MSG_CL_COPY_IMAGE:
        RGPU_CL_UNPACK(Rgpu__ClImageCopy, rgpu__cl_image_copy, rgpu_cl_copy_image);
        break;
    case RGPU__MSG_TYPE__MSG_CL_FILL_IMAGE:
        RGPU_CL_UNPACK(Rgpu__ClFillImage, rgpu__cl_fill_image, rgpu_cl_fill_image);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_SAMPLER:
        RGPU_CL_UNPACK(Rgpu__ClCreateSampler, rgpu__cl_create_sampler, rgpu_cl_create_sampler);
        break;
    default:
        snprintf(reason, reason_cap, "unknown message type %u", hdr->type);
        return RGPU_ERR_UNKNOWN_TYPE;
    }
    return status;

bad_body:
    snprintf(reason, reason_cap, "body of message type %u (%u bytes) does not unpack", hdr->type, hdr->body_len);
    return RGPU_ERR_BAD_MESSAGE;
}

/* ---- session lifetime ---- */

static rgpu_status_t rgpu_cl_session_open(rgpu_backend_t *backend, rgpu_session_t *session, void **ctx_p)
{
    rgpu_cl_session_t *s = calloc(1, sizeof(*s));

    if (!s)
        return RGPU_ERR_NOMEM;
    s->backend = backend;
    s->session = session;
    s->chunk = rgpu_session_config(session)->chunk_size;
    if (s->chunk == 0)
        s->chunk = 4u << 20;
    pthread_mutex_init(&s->pool_lock, NULL);
    pthread_cond_init(&s->wait_idle, NULL);
    pthread_cond_init(&s->staging_freed, NULL);
    rgpu_htable_init(&s->handles);
    *ctx_p = s;
    return RGPU_OK;
}

typedef struct {
    rgpu_cl_handle_t **by_kind[8];
    size_t count[8];
} rgpu_cl_sweep_t;

static void rgpu_cl_collect(uint64_t key, void *value, void *arg)
{
    rgpu_cl_sweep_t *sw = arg;
    rgpu_cl_handle_t *h = value;
    /* Release order: kernels, programs, sub-buffers, buffers, events, queues, contexts. */
    int slot;

    switch (h->kind) {
    case RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL: slot = 0; break;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM: slot = 1; break;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_MEM: slot = h->parent ? 2 : 3; break;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT: slot = 4; break;
    case RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE: slot = 5; break;
    default: slot = 6; break;
    }
    sw->by_kind[slot][sw->count[slot]++] = h;
}

static void rgpu_cl_session_teardown(void *ctx)
{
    rgpu_cl_session_t *s = ctx;
    rgpu_cl_sweep_t sw = {0};
    size_t n = s->handles.count, released = 0;

    for (int k = 0; k < 8; k++)
        sw.by_kind[k] = calloc(n + 1, sizeof(rgpu_cl_handle_t *));
    for (int k = 0; k < 8; k++) {
        if (!sw.by_kind[k]) {
            rgpu_error("opencl", "%s: out of memory while releasing its objects", rgpu_session_name(s->session));
            goto out;
        }
    }
    rgpu_htable_foreach(&s->handles, rgpu_cl_collect, &sw);
    /* Commands waiting on user events the client will never set would hold
     * their queues forever: fail those events first. */
    for (size_t i = 0; i < sw.count[4]; i++) {
        if (sw.by_kind[4][i]->user_pending) {
            rgpu_cl_user_waiters_done(sw.by_kind[4][i], CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
            clSetUserEventStatus(sw.by_kind[4][i]->cl.event, CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
        }
    }
    for (size_t i = 0; i < s->n_orphans; i++) {
        clSetUserEventStatus(s->orphans[i], CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
        clReleaseEvent(s->orphans[i]);
    }
    free(s->orphans);
    s->orphans = NULL;
    s->n_orphans = 0;
    for (size_t i = 0; i < sw.count[5]; i++)
        clFinish(sw.by_kind[5][i]->cl.queue);
    /* Every command has ended: so will the threads waiting for them. */
    pthread_mutex_lock(&s->pool_lock);
    while (s->wait_threads)
        pthread_cond_wait(&s->wait_idle, &s->pool_lock);
    pthread_mutex_unlock(&s->pool_lock);
    /* The queues are finished: every held event has ended. */
    for (size_t i = 0; i < s->n_held; i++)
        clReleaseEvent(s->held[i]);
    free(s->held);
    s->held = NULL;
    s->n_held = s->cap_held = 0;
    for (int k = 0; k < 7; k++) {
        for (size_t i = 0; i < sw.count[k]; i++) {
            rgpu_cl_drop(s, sw.by_kind[k][i]);
            released++;
        }
    }
    if (released)
        rgpu_info("opencl", "%s: released %zu objects the client left behind", rgpu_session_name(s->session),
                  released);
out:
    for (int k = 0; k < 8; k++)
        free(sw.by_kind[k]);
    rgpu_htable_cleanup(&s->handles);
}

static void rgpu_cl_session_free(void *ctx)
{
    rgpu_cl_session_t *s = ctx;

    for (int i = 0; i < s->pool_count; i++)
        free(s->pool[i]);
    free(s->read_spare);
    free(s->read_small);
    if (s->launch_memo)
        rgpu__cl_ndrange__free_unpacked(s->launch_memo, NULL);
    pthread_cond_destroy(&s->wait_idle);
    pthread_cond_destroy(&s->staging_freed);
    pthread_mutex_destroy(&s->pool_lock);
    free(s);
}

/* ---- the backend ---- */

static char *rgpu_cl_platform_str(cl_platform_id p, cl_platform_info param, char *buf, size_t cap)
{
    buf[0] = '\0';
    clGetPlatformInfo(p, param, cap, buf, NULL);
    buf[cap - 1] = '\0';
    return buf;
}

/* Every plain-valued CL_DEVICE_* of OpenCL 1.0-3.0 lies in 0x1000-0x1080;
 * asking for each and keeping what the device answers covers them all,
 * vendor-neutrally. Handles (platform, parent device) are the client's. */
static int rgpu_cl_hello_device(rgpu_backend_t *be, cl_uint index, Rgpu__Device *out)
{
    cl_device_id dev = be->devices[index];
    Rgpu__DeviceParam **params = calloc(0x100, sizeof(*params));
    size_t n = 0;

    if (!params)
        return -1;
    rgpu__device__init(out);
    out->index = index;
    for (cl_uint param = 0x1000; param < 0x1080; param++) {
        size_t size = 0;
        Rgpu__DeviceParam *p;

        if (param == CL_DEVICE_PLATFORM || param == CL_DEVICE_PARENT_DEVICE)
            continue;
        if (clGetDeviceInfo(dev, param, 0, NULL, &size) != CL_SUCCESS || size == 0)
            continue;
        p = calloc(1, sizeof(*p));
        if (!p)
            continue;
        rgpu__device_param__init(p);
        if (!(p->value.data = malloc(size))) {
            free(p);
            continue;
        }
        if (clGetDeviceInfo(dev, param, size, p->value.data, NULL) != CL_SUCCESS) {
            free(p->value.data);
            free(p);
            continue;
        }
        p->param = param;
        p->value.len = size;
        params[n++] = p;
    }
    out->params = params;
    out->n_params = n;
    return 0;
}

/* The platform starts its threads (PoCL's device workers, a driver's
 * helpers) while it is being opened, and they inherit the scheduling policy
 * of the thread opening it. Under SCHED_BATCH a thread that wakes up does not
 * preempt the one running: a PoCL worker woken by an enqueue no longer takes
 * the CPU from the session thread that is decoding the next launch, and runs
 * when that thread waits or at the next tick. On a CPU device sharing cores
 * with the sessions, that preemption cost a context switch every few
 * launches (docs/benchmarks.md). Linux applies the policy to this thread
 * alone, and it is restored afterwards: our own threads keep SCHED_OTHER.
 * A policy the operator chose (chrt) is left alone. Returns whether it
 * changed the policy. */
static int rgpu_cl_platform_threads_begin(const rgpu_server_config_t *config)
{
    int changed = config->platform_threads_batch ? rgpu_thread_batch_begin() : 0;

    if (changed < 0)
        rgpu_warn("opencl", "cannot start the platform's threads under SCHED_BATCH (%s); they run "
                            "under the default policy", strerror(errno));
    else if (changed)
        rgpu_info("opencl", "the platform's threads start under SCHED_BATCH (--platform-threads)");
    return changed > 0;
}

static void rgpu_cl_platform_threads_end(int changed)
{
    if (changed && rgpu_thread_batch_end() != 0)
        rgpu_warn("opencl", "cannot go back to SCHED_OTHER after opening the platform: %s", strerror(errno));
}

static rgpu_status_t rgpu_cl_backend_platform_open(const rgpu_server_config_t *config, rgpu_backend_t **backend_p)
{
    cl_platform_id platforms[32];
    cl_uint n_platforms = 0;
    rgpu_backend_t *be = calloc(1, sizeof(*be));
    char name[256];

    if (!be)
        return RGPU_ERR_NOMEM;
    if (clGetPlatformIDs(32, platforms, &n_platforms) != CL_SUCCESS || n_platforms == 0) {
        rgpu_error("opencl", "no OpenCL platform on this node (is an ICD installed in /etc/OpenCL/vendors, "
                             "or OCL_ICD_VENDORS set?)");
        free(be);
        return RGPU_ERR_NOT_FOUND;
    }
    for (cl_uint i = 0; i < n_platforms && !be->platform; i++) {
        cl_uint n = 0;
        rgpu_cl_platform_str(platforms[i], CL_PLATFORM_NAME, name, sizeof(name));
        /* Serving our own client ICD would forward calls to ourselves. */
        if (strcmp(name, "rgpu") == 0)
            continue;
        if (config->platform[0] && !strstr(name, config->platform))
            continue;
        if (clGetDeviceIDs(platforms[i], CL_DEVICE_TYPE_ALL, 0, NULL, &n) != CL_SUCCESS || n == 0)
            continue;
        be->platform = platforms[i];
        be->num_devices = n;
    }
    if (!be->platform) {
        rgpu_error("opencl", "no OpenCL platform%s%s%s with devices to serve", config->platform[0] ? " named \"" : "",
                   config->platform, config->platform[0] ? "\"" : "");
        free(be);
        return RGPU_ERR_NOT_FOUND;
    }
    rgpu_cl_platform_str(be->platform, CL_PLATFORM_NAME, be->platform_name, sizeof(be->platform_name));
    rgpu_cl_platform_str(be->platform, CL_PLATFORM_VERSION, be->platform_version, sizeof(be->platform_version));
    be->devices = calloc(be->num_devices, sizeof(cl_device_id));
    be->hello_devices = calloc(be->num_devices, sizeof(Rgpu__Device));
    be->hello_device_ptrs = calloc(be->num_devices, sizeof(Rgpu__Device *));
    if (!be->devices || !be->hello_devices || !be->hello_device_ptrs) {
        free(be->devices);
        free(be->hello_devices);
        free(be->hello_device_ptrs);
        free(be);
        return RGPU_ERR_NOMEM;
    }
    clGetDeviceIDs(be->platform, CL_DEVICE_TYPE_ALL, be->num_devices, be->devices, NULL);
    for (cl_uint i = 0; i < be->num_devices; i++) {
        cl_ulong local = 0;
        clGetDeviceInfo(be->devices[i], CL_DEVICE_LOCAL_MEM_SIZE, sizeof(local), &local, NULL);
        if (local > be->max_local_mem)
            be->max_local_mem = local;
    }
    for (cl_uint i = 0; i < be->num_devices; i++) {
        rgpu_cl_hello_device(be, i, &be->hello_devices[i]);
        be->hello_device_ptrs[i] = &be->hello_devices[i];
    }
    snprintf(be->describe, sizeof(be->describe), "OpenCL platform \"%.100s\" (%.100s), %u device(s)", be->platform_name,
             be->platform_version, be->num_devices);
    for (cl_uint i = 0; i < be->num_devices; i++) {
        char dev_name[256] = "";
        size_t len = strlen(be->describe);
        clGetDeviceInfo(be->devices[i], CL_DEVICE_NAME, sizeof(dev_name), dev_name, NULL);
        snprintf(be->describe + len, sizeof(be->describe) - len, "%s\"%.100s\"", i ? ", " : ": ", dev_name);
    }
    *backend_p = be;
    return RGPU_OK;
}

static rgpu_status_t rgpu_cl_backend_open(const rgpu_server_config_t *config, rgpu_backend_t **backend_p)
{
    int changed = rgpu_cl_platform_threads_begin(config);
    rgpu_status_t status = rgpu_cl_backend_platform_open(config, backend_p);

    rgpu_cl_platform_threads_end(changed);
    return status;
}

static void rgpu_cl_backend_close(rgpu_backend_t *be)
{
    for (cl_uint i = 0; i < be->num_devices; i++) {
        for (size_t j = 0; j < be->hello_devices[i].n_params; j++) {
            free(be->hello_devices[i].params[j]->value.data);
            free(be->hello_devices[i].params[j]);
        }
        free(be->hello_devices[i].params);
    }
    free(be->hello_devices);
    free(be->hello_device_ptrs);
    free(be->devices);
    free(be);
}

static const char *rgpu_cl_backend_describe(rgpu_backend_t *be)
{
    return be->describe;
}

static void rgpu_cl_hello_fill(rgpu_backend_t *be, Rgpu__HelloReply *reply)
{
    reply->platform_name = be->platform_name;
    reply->platform_version = be->platform_version;
    reply->n_devices = be->num_devices;
    reply->devices = be->hello_device_ptrs;
}

const rgpu_backend_ops_t rgpu_backend_opencl_ops = {
    .name = "opencl",
    .api = RGPU__API_FAMILY__API_OPENCL,
    .open = rgpu_cl_backend_open,
    .close = rgpu_cl_backend_close,
    .describe = rgpu_cl_backend_describe,
    .hello_fill = rgpu_cl_hello_fill,
    .session_open = rgpu_cl_session_open,
    .session_handle = rgpu_cl_session_handle,
    .session_teardown = rgpu_cl_session_teardown,
    .session_free = rgpu_cl_session_free,
};
