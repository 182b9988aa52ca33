/*
 * The OpenCL backend: kernel launches, markers, migrations, finish and waits.
 * See backend_opencl.c for the whole picture, opencl_int.h for what is
 * shared between the files.
 */
#include "opencl_int.h"

/* ---- kernels and synchronization ---- */

rgpu_status_t rgpu__cl_ndrange(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, const Rgpu__ClNDRange *m)
{
    rgpu_cl_handle_t *k;
    size_t off[3], gsz[3], lsz[3];
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu__cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    k = rgpu__cl_get(s, m->kernel, RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL);
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
                                rgpu__cl_ev_out(&cmd, m->event));
        else
            err = clEnqueueNDRangeKernel(cmd.queue->cl.queue, k->cl.kernel, m->work_dim,
                                         m->n_global_offset ? off : NULL, gsz, m->n_local_size ? lsz : NULL,
                                         cmd.num_wait, cmd.wait, rgpu__cl_ev_out(&cmd, m->event));
    }
    return rgpu__cl_cmd_end(s, hdr, &cmd, m->event, err);
}

/* The decoded launch of this body: the session's last one when the bytes are
 * the same (a loop launching one kernel with the same sizes and no event
 * sends them again and again; unpacking was 13% of the server's CPU at 8192
 * launches per clFinish), else a fresh one, kept for the next when small.
 * NULL when the body does not unpack; *owned: the caller frees it. */
Rgpu__ClNDRange *rgpu__cl_launch_decode(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
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

rgpu_status_t rgpu__cl_marker(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClMarker *m)
{
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu__cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    if (err == CL_SUCCESS)
        err = (m->barrier ? clEnqueueBarrierWithWaitList : clEnqueueMarkerWithWaitList)(
            cmd.queue->cl.queue, cmd.num_wait, cmd.wait, rgpu__cl_ev_out(&cmd, m->event));
    return rgpu__cl_cmd_end(s, hdr, &cmd, m->event, err);
}

rgpu_status_t rgpu__cl_migrate(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClMigrate *m)
{
    rgpu_cl_cmd_t cmd;
    cl_mem *mems = NULL;
    cl_int err = rgpu__cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    if (err == CL_SUCCESS && (m->n_mems == 0 || m->n_mems > RGPU_CL_MAX_WAIT))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS && !(mems = malloc(m->n_mems * sizeof(*mems))))
        err = CL_OUT_OF_HOST_MEMORY;
    for (size_t i = 0; err == CL_SUCCESS && i < m->n_mems; i++) {
        rgpu_cl_handle_t *h = rgpu__cl_get(s, m->mems[i], RGPU__CL_OBJECT_KIND__CL_OBJ_MEM);
        if (!h)
            err = CL_INVALID_MEM_OBJECT;
        else
            mems[i] = h->cl.mem;
    }
    if (err == CL_SUCCESS)
        err = clEnqueueMigrateMemObjects(cmd.queue->cl.queue, (cl_uint)m->n_mems, mems, m->flags, cmd.num_wait,
                                         cmd.wait, rgpu__cl_ev_out(&cmd, m->event));
    free(mems);
    return rgpu__cl_cmd_end(s, hdr, &cmd, m->event, err);
}

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
 * sets it (rgpu__cl_user_waiters_done); other events through the platform's
 * callbacks. Takes no ownership of the events. */
static rgpu_status_t rgpu_cl_wait_async(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, cl_event *events,
                                        rgpu_cl_handle_t **handles, size_t n, cl_int fail_error)
{
    rgpu_cl_waiter_t *w = calloc(1, sizeof(*w));

    if (!w)
        return rgpu__cl_reply_status(s, hdr, CL_OUT_OF_HOST_MEMORY);
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
        } else if (rgpu__cl_on_complete(s, events[i], rgpu_cl_waiter_cb, w) != CL_SUCCESS) {
            atomic_store(&w->failed, 1);
            rgpu_cl_waiter_cb(events[i], CL_COMPLETE, w);
        }
    }
    rgpu_cl_waiter_cb(NULL, CL_COMPLETE, w);
    return RGPU_OK;
}

/* A user event got its status (or can never get one): the waits it held
 * count it as done. Session thread. */
void rgpu__cl_user_waiters_done(rgpu_cl_handle_t *h, cl_int status)
{
    for (size_t i = 0; i < h->n_waiters; i++)
        rgpu_cl_waiter_cb(h->cl.event, status, h->waiters[i]);
    free(h->waiters);
    h->waiters = NULL;
    h->n_waiters = 0;
}

rgpu_status_t rgpu__cl_queue_op(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClQueueOp *m)
{
    rgpu_cl_handle_t *q = rgpu__cl_get(s, m->queue, RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE);

    if (hdr->type == RGPU__MSG_TYPE__MSG_CL_FINISH) {
        cl_event marker = NULL;
        rgpu_status_t status;
        cl_int err;

        if (!q)
            return rgpu__cl_reply_status(s, hdr, CL_INVALID_COMMAND_QUEUE);
        if (!rgpu__cl_may_block(s))
            return rgpu__cl_reply_status(s, hdr, clFinish(q->cl.queue));
        /* A marker without a wait list waits for every command before it,
         * in order or not: the finish is answered when it completes. */
        err = clEnqueueMarkerWithWaitList(q->cl.queue, 0, NULL, &marker);
        if (err != CL_SUCCESS)
            return rgpu__cl_reply_status(s, hdr, err);
        clFlush(q->cl.queue);
        /* clFinish succeeds even when a command before it failed. */
        status = rgpu_cl_wait_async(s, hdr, &marker, NULL, 1, CL_SUCCESS);
        rgpu__cl_event_drop(s, marker);
        return status;
    }
    if (!q)
        return rgpu__cl_async_error(s, hdr, CL_INVALID_COMMAND_QUEUE, NULL);
    clFlush(q->cl.queue);
    return RGPU_OK;
}

rgpu_status_t rgpu__cl_wait_events(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClWaitEvents *m)
{
    cl_event *list = NULL;
    cl_int err = m->n_events ? rgpu__cl_wait_list(s, m->n_events, m->events, &list) : CL_INVALID_VALUE;
    rgpu_status_t status;

    if (err == CL_INVALID_EVENT_WAIT_LIST)
        err = CL_INVALID_EVENT;
    if (err == CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
        return rgpu__cl_reply_status(s, hdr, err);
    if (err != CL_SUCCESS)
        return rgpu__cl_reply_status(s, hdr, err);
    if (rgpu__cl_may_block(s)) {
        rgpu_cl_handle_t **handles = malloc(m->n_events * sizeof(*handles));
        if (!handles) {
            free(list);
            return rgpu__cl_reply_status(s, hdr, CL_OUT_OF_HOST_MEMORY);
        }
        for (size_t i = 0; i < m->n_events; i++)
            handles[i] = rgpu__cl_get(s, m->events[i], RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT);
        status = rgpu_cl_wait_async(s, hdr, list, handles, m->n_events, CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
        free(handles);
        free(list);
        return status;
    }
    err = clWaitForEvents((cl_uint)m->n_events, list);
    free(list);
    return rgpu__cl_reply_status(s, hdr, err);
}
