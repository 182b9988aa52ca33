/*
 * The OpenCL backend: contexts, queues, buffers, sub-buffers, user events, releases and event callbacks.
 * See backend_opencl.c for the whole picture, opencl_int.h for what is
 * shared between the files.
 */
#include "opencl_int.h"

/* ---- objects ---- */

rgpu_status_t rgpu__cl_create_context(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
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
            err = rgpu__cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT, ctx, NULL);
        if (err != CL_SUCCESS && ctx)
            clReleaseContext(ctx);
    }
    return err == CL_SUCCESS ? RGPU_OK : rgpu__cl_async_error(s, hdr, err, NULL);
}

rgpu_status_t rgpu__cl_create_queue(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                    Rgpu__ClCreateQueue *m)
{
    rgpu_cl_handle_t *ctx = rgpu__cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    rgpu_cl_handle_t *h;
    cl_command_queue q = NULL;
    cl_int err;

    if (!ctx)
        err = CL_INVALID_CONTEXT;
    else if (m->device >= s->backend->num_devices || !rgpu_session_device_allowed(s->session, m->device))
        err = CL_INVALID_DEVICE;
    else
        q = clCreateCommandQueue(ctx->cl.context, s->backend->devices[m->device], m->properties, &err);
    if (err == CL_SUCCESS && (err = rgpu__cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE, q, &h)) == CL_SUCCESS) {
        cl_ulong local = 0;
        h->context = ctx->cl.context;
        h->out_of_order = (m->properties & CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE) != 0;
        clGetDeviceInfo(s->backend->devices[m->device], CL_DEVICE_LOCAL_MEM_SIZE, sizeof(local), &local, NULL);
        h->local_mem = local;
        return RGPU_OK;
    }
    if (q)
        clReleaseCommandQueue(q);
    return rgpu__cl_async_error(s, hdr, err, NULL);
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

/* The same for a new image (whole, in pixels: dims as rgpu__cl_image_dims). */
cl_int rgpu__cl_zero_image(rgpu_cl_handle_t *ctx, cl_mem mem, cl_mem_object_type type, const uint64_t dims[4])
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

rgpu_status_t rgpu__cl_create_buffer(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                     Rgpu__ClCreateBuffer *m, char *reason, size_t reason_cap)
{
    rgpu_cl_handle_t *ctx = rgpu__cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
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
        status = rgpu__cl_async_error(s, hdr, err, err == CL_MEM_OBJECT_ALLOCATION_FAILURE
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
    if (err == CL_SUCCESS && (err = rgpu__cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, mem, &h)) == CL_SUCCESS) {
        h->bytes = h->size = m->size;
        rgpu_session_memory_add(s->session, (int64_t)m->size);
        atomic_fetch_add(&rgpu_metrics.buffer_bytes, (long long)m->size);
        atomic_fetch_add(&rgpu_metrics.buffers, 1);
        return RGPU_OK;
    }
    rgpu_session_mem_unreserve(s->session, m->size);
    if (mem)
        clReleaseMemObject(mem);
    return rgpu__cl_async_error(s, hdr, err, NULL);
}

rgpu_status_t rgpu__cl_create_sub_buffer(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                         Rgpu__ClCreateSubBuffer *m)
{
    rgpu_cl_handle_t *parent = rgpu__cl_get_buffer(s, m->parent);
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
    if (err == CL_SUCCESS && (err = rgpu__cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, mem, &h)) == CL_SUCCESS) {
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
    return rgpu__cl_async_error(s, hdr, err, NULL);
}

rgpu_status_t rgpu__cl_release(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClRelease *m)
{
    rgpu_cl_handle_t *h = rgpu_htable_find(&s->handles, m->id);

    if (!h || h->kind != m->kind)
        return rgpu__cl_async_error(s, hdr, rgpu__cl_kind_error(m->kind), "unknown object");
    if (h->kind == RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT && h->user_pending) {
        /* Commands may still wait on it, and nobody can set it any more
         * (as locally, they never run): it stays pending until teardown
         * fails it. */
        cl_event *grown = realloc(s->orphans, (s->n_orphans + 1) * sizeof(*grown));
        if (!grown)
            return rgpu__cl_async_error(s, hdr, CL_OUT_OF_HOST_MEMORY, NULL);
        s->orphans = grown;
        s->orphans[s->n_orphans++] = h->cl.event;
        clRetainEvent(h->cl.event);
        rgpu__cl_user_waiters_done(h, CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
    }
    rgpu_htable_remove(&s->handles, m->id);
    if (h->kind == RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT) {
        rgpu__cl_event_drop(s, h->cl.event);
        h->cl.event = NULL;
    }
    rgpu__cl_drop(s, h);
    return RGPU_OK;
}

rgpu_status_t rgpu__cl_user_event(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                  Rgpu__ClCreateUserEvent *m)
{
    rgpu_cl_handle_t *ctx = rgpu__cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    rgpu_cl_handle_t *h;
    cl_event ev = NULL;
    cl_int err;

    if (!ctx)
        err = CL_INVALID_CONTEXT;
    else
        ev = clCreateUserEvent(ctx->cl.context, &err);
    if (err == CL_SUCCESS && (err = rgpu__cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT, ev, &h)) == CL_SUCCESS) {
        h->context = ctx->cl.context;
        h->user_pending = 1;
        s->user_pending++;
        return RGPU_OK;
    }
    if (ev)
        clReleaseEvent(ev);
    return rgpu__cl_async_error(s, hdr, err, NULL);
}

rgpu_status_t rgpu__cl_set_user_event(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                      Rgpu__ClSetUserEventStatus *m)
{
    rgpu_cl_handle_t *h = rgpu__cl_get(s, m->event, RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT);
    cl_int err = h ? clSetUserEventStatus(h->cl.event, m->status) : CL_INVALID_EVENT;

    if (err == CL_SUCCESS) {
        if (h->user_pending)
            s->user_pending--;
        h->user_pending = 0;
        /* Commands behind a failed user event never run on PoCL 3.1, nor
         * do the ones queued after them: from now on nothing may block. */
        if (m->status < 0)
            s->user_failed = 1;
        rgpu__cl_user_waiters_done(h, m->status);
        return RGPU_OK;
    }
    return rgpu__cl_async_error(s, hdr, err, NULL);
}

rgpu_status_t rgpu__cl_set_event_callback(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                          Rgpu__ClSetEventCallback *m)
{
    rgpu_cl_handle_t *h = rgpu__cl_get(s, m->event, RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT);
    rgpu_cl_cb_t *cb;
    cl_int err;

    if (!h)
        return rgpu__cl_async_error(s, hdr, CL_INVALID_EVENT, NULL);
    cb = calloc(1, sizeof(*cb));
    if (!cb)
        return rgpu__cl_async_error(s, hdr, CL_OUT_OF_HOST_MEMORY, NULL);
    cb->session = s->session;
    cb->callback_id = m->callback_id;
    cb->event_id = m->event;
    rgpu_session_ref(s->session);
    /* While user events are pending, a callback for an earlier status is
     * also run at the end (OpenCL: "equal to or past" the status): PoCL
     * never calls one on a user event, nor on a command failed through it. */
    err = m->exec_type == CL_COMPLETE || rgpu__cl_may_block(s)
              ? rgpu__cl_on_complete(s, h->cl.event, rgpu__cl_notify_cb, cb)
              : clSetEventCallback(h->cl.event, m->exec_type, rgpu__cl_notify_cb, cb);
    if (err != CL_SUCCESS) {
        rgpu_session_unref(s->session);
        free(cb);
        return rgpu__cl_async_error(s, hdr, err, NULL);
    }
    return RGPU_OK;
}
