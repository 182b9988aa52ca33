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
#include "opencl_int.h"

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
        RGPU_CL_UNPACK(Rgpu__ClCreateContext, rgpu__cl_create_context, rgpu__cl_create_context);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_QUEUE:
        RGPU_CL_UNPACK(Rgpu__ClCreateQueue, rgpu__cl_create_queue, rgpu__cl_create_queue);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_BUFFER:
        RGPU_CL_UNPACK(Rgpu__ClCreateBuffer, rgpu__cl_create_buffer, rgpu__cl_create_buffer, reason, reason_cap);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_SUB_BUFFER:
        RGPU_CL_UNPACK(Rgpu__ClCreateSubBuffer, rgpu__cl_create_sub_buffer, rgpu__cl_create_sub_buffer);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_SOURCE:
        RGPU_CL_UNPACK(Rgpu__ClCreateProgramSource, rgpu__cl_create_program_source, rgpu__cl_create_program_source);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_BINARY:
        RGPU_CL_UNPACK(Rgpu__ClCreateProgramBinary, rgpu__cl_create_program_binary, rgpu__cl_create_program_binary,
                       reason, reason_cap);
        break;
    case RGPU__MSG_TYPE__MSG_CL_BUILD_PROGRAM:
        RGPU_CL_UNPACK(Rgpu__ClBuildProgram, rgpu__cl_build_program, rgpu__cl_build);
        break;
    case RGPU__MSG_TYPE__MSG_CL_COMPILE_PROGRAM:
        RGPU_CL_UNPACK(Rgpu__ClCompileProgram, rgpu__cl_compile_program, rgpu__cl_compile);
        break;
    case RGPU__MSG_TYPE__MSG_CL_LINK_PROGRAM:
        RGPU_CL_UNPACK(Rgpu__ClLinkProgram, rgpu__cl_link_program, rgpu__cl_link);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_KERNEL:
        RGPU_CL_UNPACK(Rgpu__ClCreateKernel, rgpu__cl_create_kernel, rgpu__cl_create_kernel);
        break;
    case RGPU__MSG_TYPE__MSG_CL_SET_KERNEL_ARG:
        RGPU_CL_UNPACK(Rgpu__ClSetKernelArg, rgpu__cl_set_kernel_arg, rgpu__cl_set_arg);
        break;
    case RGPU__MSG_TYPE__MSG_CL_RELEASE:
        RGPU_CL_UNPACK(Rgpu__ClRelease, rgpu__cl_release, rgpu__cl_release);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_USER_EVENT:
        RGPU_CL_UNPACK(Rgpu__ClCreateUserEvent, rgpu__cl_create_user_event, rgpu__cl_user_event);
        break;
    case RGPU__MSG_TYPE__MSG_CL_SET_USER_EVENT_STATUS:
        RGPU_CL_UNPACK(Rgpu__ClSetUserEventStatus, rgpu__cl_set_user_event_status, rgpu__cl_set_user_event);
        break;
    case RGPU__MSG_TYPE__MSG_CL_SET_EVENT_CALLBACK:
        RGPU_CL_UNPACK(Rgpu__ClSetEventCallback, rgpu__cl_set_event_callback, rgpu__cl_set_event_callback);
        break;
    case RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER:
        RGPU_CL_UNPACK(Rgpu__ClWriteBuffer, rgpu__cl_write_buffer, rgpu__cl_write, reason, reason_cap);
        break;
    case RGPU__MSG_TYPE__MSG_CL_READ_BUFFER:
        RGPU_CL_UNPACK(Rgpu__ClReadBuffer, rgpu__cl_read_buffer, rgpu__cl_read);
        break;
    case RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER:
        RGPU_CL_UNPACK(Rgpu__ClCopyBuffer, rgpu__cl_copy_buffer, rgpu__cl_copy);
        break;
    case RGPU__MSG_TYPE__MSG_CL_FILL_BUFFER:
        RGPU_CL_UNPACK(Rgpu__ClFillBuffer, rgpu__cl_fill_buffer, rgpu__cl_fill);
        break;
    case RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER_RECT:
        RGPU_CL_UNPACK(Rgpu__ClBufferRect, rgpu__cl_buffer_rect, rgpu__cl_write_rect, reason, reason_cap);
        break;
    case RGPU__MSG_TYPE__MSG_CL_READ_BUFFER_RECT:
        RGPU_CL_UNPACK(Rgpu__ClBufferRect, rgpu__cl_buffer_rect, rgpu__cl_read_rect);
        break;
    case RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER_RECT:
        RGPU_CL_UNPACK(Rgpu__ClBufferRect, rgpu__cl_buffer_rect, rgpu__cl_copy_rect);
        break;
    case RGPU__MSG_TYPE__MSG_CL_NDRANGE: {
        int owned;
        Rgpu__ClNDRange *m = rgpu__cl_launch_decode(s, hdr, body, &owned);
        if (!m)
            goto bad_body;
        status = rgpu__cl_ndrange(s, hdr, m);
        if (owned)
            rgpu__cl_ndrange__free_unpacked(m, NULL);
        break;
    }
    case RGPU__MSG_TYPE__MSG_CL_MARKER:
        RGPU_CL_UNPACK(Rgpu__ClMarker, rgpu__cl_marker, rgpu__cl_marker);
        break;
    case RGPU__MSG_TYPE__MSG_CL_MIGRATE:
        RGPU_CL_UNPACK(Rgpu__ClMigrate, rgpu__cl_migrate, rgpu__cl_migrate);
        break;
    case RGPU__MSG_TYPE__MSG_CL_FLUSH:
    case RGPU__MSG_TYPE__MSG_CL_FINISH:
        RGPU_CL_UNPACK(Rgpu__ClQueueOp, rgpu__cl_queue_op, rgpu__cl_queue_op);
        break;
    case RGPU__MSG_TYPE__MSG_CL_WAIT_EVENTS:
        RGPU_CL_UNPACK(Rgpu__ClWaitEvents, rgpu__cl_wait_events, rgpu__cl_wait_events);
        break;
    case RGPU__MSG_TYPE__MSG_CL_GET_INFO:
        RGPU_CL_UNPACK(Rgpu__ClGetInfo, rgpu__cl_get_info, rgpu__cl_get_info);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_IMAGE:
        RGPU_CL_UNPACK(Rgpu__ClCreateImage, rgpu__cl_create_image, rgpu__cl_create_image, reason, reason_cap);
        break;
    case RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE:
        RGPU_CL_UNPACK(Rgpu__ClImageRect, rgpu__cl_image_rect, rgpu__cl_write_image, reason, reason_cap);
        break;
    case RGPU__MSG_TYPE__MSG_CL_READ_IMAGE:
        RGPU_CL_UNPACK(Rgpu__ClImageRect, rgpu__cl_image_rect, rgpu__cl_read_image);
        break;
    case RGPU__MSG_TYPE__MSG_CL_COPY_IMAGE:
        RGPU_CL_UNPACK(Rgpu__ClImageCopy, rgpu__cl_image_copy, rgpu__cl_copy_image);
        break;
    case RGPU__MSG_TYPE__MSG_CL_FILL_IMAGE:
        RGPU_CL_UNPACK(Rgpu__ClFillImage, rgpu__cl_fill_image, rgpu__cl_fill_image);
        break;
    case RGPU__MSG_TYPE__MSG_CL_CREATE_SAMPLER:
        RGPU_CL_UNPACK(Rgpu__ClCreateSampler, rgpu__cl_create_sampler, rgpu__cl_create_sampler);
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
            rgpu__cl_user_waiters_done(sw.by_kind[4][i], CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
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
            rgpu__cl_drop(s, sw.by_kind[k][i]);
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
