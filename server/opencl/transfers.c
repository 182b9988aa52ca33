/*
 * The OpenCL backend: buffer writes, reads (small, pipelined, non-blocking), copies, fills and rects.
 * See backend_opencl.c for the whole picture, opencl_int.h for what is
 * shared between the files.
 */
#include "opencl_int.h"

/* ---- transfers ---- */

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

rgpu_status_t rgpu__cl_write(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClWriteBuffer *m,
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
    err = rgpu__cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);
    mem = rgpu__cl_get_buffer(s, m->mem);
    if (err == CL_SUCCESS && !mem)
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS && (m->offset > mem->size || m->size > mem->size - m->offset))
        err = CL_INVALID_VALUE;
    if (err != CL_SUCCESS) {
        /* Refused before a byte is taken: the client hears it now, and
         * the session layer drops the data unstored. */
        return rgpu__cl_cmd_end(s, hdr, &cmd, m->event, err);
    }
    if (m->blocking && m->size >= RGPU_CL_WRITE_DIRECT_MIN && !rgpu__cl_may_block(s) &&
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
        void *buf = pooled ? rgpu__cl_pool_get(s) : malloc(n);
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
            if (rgpu__cl_on_complete(s, ev, rgpu__cl_chunk_cb, cb) != CL_SUCCESS) {
                clWaitForEvents(1, &ev);
                rgpu__cl_chunk_cb(ev, CL_COMPLETE, cb);
            }
        } else if (rgpu__cl_on_complete(s, ev, rgpu__cl_free_cb, buf) != CL_SUCCESS) {
            clWaitForEvents(1, &ev);
            free(buf);
        }
        rgpu__cl_event_drop(s, last);
        last = ev;
        done += n;
    }
    if (status != RGPU_OK) {
        if (last && !rgpu__cl_may_block(s))
            clWaitForEvents(1, &last);
        rgpu__cl_event_drop(s, last);
        free(cmd.wait);
        return status;
    }
    /* Whatever failed, the data not taken is the session layer's to drop. */
    if (err == CL_SUCCESS) {
        clFlush(cmd.queue->cl.queue);
        /* The client does not wait for writes; a blocking one keeps its
         * order here, unless it could wait on a user event for good. */
        if (m->blocking && last && !rgpu__cl_may_block(s))
            err = clWaitForEvents(1, &last);
    }
    if (err == CL_SUCCESS && m->event) {
        cmd.ev = last;
        last = NULL;
    }
    rgpu__cl_event_drop(s, last);
    return rgpu__cl_cmd_end(s, hdr, &cmd, m->event, err);
}

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
        rgpu__cl_event_failed(s, m->event, context, err);
        return rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, hdr->seq, &reply.base, NULL, 0);
    }
    status = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, hdr->seq, &reply.base,
                               s->read_small, m->size);
    if (status != RGPU_OK) {
        clReleaseEvent(ev);
        return status;
    }
    rgpu__cl_event_keep(s, m->event, ev, context);
    return RGPU_OK;
}

/* A blocking read: maps chunk i+1 while chunk i is pushed to the client,
 * straight from the mapping. The reply follows the pieces and carries the
 * status: a read that fails partway stops pushing and says so there (the
 * client's call fails with that error), with no filler bytes. A read of
 * one chunk is whole before anything is sent, so its reply carries it. */
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
    int replied = 0;

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
        if (err == CL_SUCCESS && n_chunks == 1) {
            /* The whole read is in hand: one frame carries the reply and
             * its bytes, as for a small read (a piece and a reply would
             * cost a send and two receives more). */
            status = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, hdr->seq, &reply.base,
                                       ptr[cur], n);
            replied = 1;
        } else if (err == CL_SUCCESS) {
            status = rgpu_session_push(s->session, hdr->seq, off, ptr[cur], n);
        } else if (i > 0) {
            rgpu_log(RGPU_LOG_WARN, "opencl", "%s: read failed after %llu of %llu bytes (error %d)",
                     rgpu_session_name(s->session), (unsigned long long)off, (unsigned long long)m->size, err);
        }
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
    if (!replied)
        status = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, hdr->seq, &reply.base, NULL, 0);
    if (status != RGPU_OK)
        return status;
    if (err != CL_SUCCESS) {
        rgpu__cl_event_failed(s, m->event, cmd->queue->context, err);
        return RGPU_OK;
    }
    /* The read's event: a marker after the last unmap, complete before the
     * session's next frame is handled (the client has all the data, so
     * whatever it asks next must see the read as complete). */
    if (m->event && clEnqueueMarkerWithWaitList(q, 0, NULL, &cmd->ev) == CL_SUCCESS)
        clWaitForEvents(1, &cmd->ev);
    rgpu__cl_event_keep(s, m->event, cmd->ev, cmd->queue->context);
    return RGPU_OK;
}

/* A non-blocking read: answered by rgpu__cl_read_cb when it completes. */
cl_int rgpu__cl_read_async(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, rgpu_cl_cmd_t *cmd,
                           uint64_t event_id, cl_int (*enqueue)(rgpu_cl_cmd_t *, void *, const void *, cl_event *),
                           const void *arg, uint64_t size)
{
    rgpu_cl_cb_t *cb = calloc(1, sizeof(*cb));
    void *staging = rgpu__cl_read_staging_get(s, size);
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
        rgpu__cl_read_staging_put(s, staging, size);
        return err;
    }
    cb->session = s->session;
    cb->s = s;
    cb->seq = hdr->seq;
    cb->staging = staging;
    cb->size = size;
    rgpu_session_ref(s->session);
    err = rgpu__cl_on_complete(s, ev, rgpu__cl_read_cb, cb);
    if (err != CL_SUCCESS) {
        /* No callback: wait here rather than never answer. */
        clWaitForEvents(1, &ev);
        rgpu__cl_read_cb(ev, CL_COMPLETE, cb);
    }
    clFlush(cmd->queue->cl.queue);
    if (event_id)
        cmd->ev = ev;
    else
        clReleaseEvent(ev);
    return CL_SUCCESS;
}

static cl_int rgpu_cl_enqueue_read(rgpu_cl_cmd_t *cmd, void *dst, const void *arg, cl_event *ev)
{
    const rgpu_cl_read_arg_t *a = arg;

    return clEnqueueReadBuffer(cmd->queue->cl.queue, a->mem, CL_FALSE, a->offset, a->size, dst, cmd->num_wait,
                               cmd->wait, ev);
}

rgpu_status_t rgpu__cl_read(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClReadBuffer *m)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
    rgpu_cl_handle_t *mem;
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu__cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);
    mem = rgpu__cl_get_buffer(s, m->mem);
    if (err == CL_SUCCESS && !mem)
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS && (m->size == 0 || m->offset > mem->size || m->size > mem->size - m->offset))
        err = CL_INVALID_VALUE;
    /* Blocking reads wait on the session thread, unless the wait could be
     * on a user event: then they are answered when they complete. */
    if (err == CL_SUCCESS && m->blocking && !rgpu__cl_may_block(s) && m->size <= RGPU_CL_READ_SMALL_MAX)
        return rgpu_cl_read_small(s, hdr, m, &cmd, mem->cl.mem);
    if (err == CL_SUCCESS && m->blocking && !rgpu__cl_may_block(s))
        return rgpu_cl_read_blocking(s, hdr, m, &cmd, mem->cl.mem);
    if (err == CL_SUCCESS) {
        rgpu_cl_read_arg_t arg = {mem->cl.mem, m->offset, m->size};
        err = rgpu__cl_read_async(s, hdr, &cmd, m->event, rgpu_cl_enqueue_read, &arg, m->size);
    }
    if (err != CL_SUCCESS) {
        /* The client waits for a reply either way. */
        reply.cl_error = err;
        free(cmd.wait);
        rgpu__cl_event_failed(s, m->event, cmd.queue ? cmd.queue->context : NULL, err);
        return rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, hdr->seq, &reply.base, NULL, 0);
    }
    free(cmd.wait);
    rgpu__cl_event_keep(s, m->event, cmd.ev, cmd.queue->context);
    return RGPU_OK;
}

/* Whether [offset, offset + size) is a non-empty range inside size_max bytes. */
int rgpu__cl_range_ok(uint64_t offset, uint64_t size, uint64_t size_max)
{
    return size && offset <= size_max && size <= size_max - offset;
}

rgpu_status_t rgpu__cl_copy(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClCopyBuffer *m)
{
    rgpu_cl_handle_t *src, *dst;
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu__cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    src = rgpu__cl_get_buffer(s, m->src);
    dst = rgpu__cl_get_buffer(s, m->dst);
    if (err == CL_SUCCESS && (!src || !dst))
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS && !(rgpu__cl_range_ok(m->src_offset, m->size, src->size) &&
                               rgpu__cl_range_ok(m->dst_offset, m->size, dst->size)))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS)
        err = clEnqueueCopyBuffer(cmd.queue->cl.queue, src->cl.mem, dst->cl.mem, m->src_offset, m->dst_offset,
                                  m->size, cmd.num_wait, cmd.wait, rgpu__cl_ev_out(&cmd, m->event));
    return rgpu__cl_cmd_end(s, hdr, &cmd, m->event, err);
}

rgpu_status_t rgpu__cl_fill(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClFillBuffer *m)
{
    rgpu_cl_handle_t *mem;
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu__cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    mem = rgpu__cl_get_buffer(s, m->mem);
    if (err == CL_SUCCESS && !mem)
        err = CL_INVALID_MEM_OBJECT;
    /* Patterns are 1 to 128 bytes, a power of two, dividing offset and size. */
    if (err == CL_SUCCESS && (m->pattern.len == 0 || m->pattern.len > 128 || (m->pattern.len & (m->pattern.len - 1)) ||
                              m->offset % m->pattern.len || m->size % m->pattern.len ||
                              !rgpu__cl_range_ok(m->offset, m->size, mem->size)))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS)
        err = clEnqueueFillBuffer(cmd.queue->cl.queue, mem->cl.mem, m->pattern.data, m->pattern.len, m->offset,
                                  m->size, cmd.num_wait, cmd.wait, rgpu__cl_ev_out(&cmd, m->event));
    return rgpu__cl_cmd_end(s, hdr, &cmd, m->event, err);
}

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
cl_mem rgpu__cl_rect_mem(const rgpu_cl_handle_t *h, size_t origin[3])
{
    if (!h->parent)
        return h->cl.mem;
    origin[0] += h->origin;
    return h->parent_mem;
}

/* Pulls a write's data (the frame's whole bulk) into a staging copy, once
 * everything was checked (err): a refusal is answered and the data left
 * for the session layer to drop. Returns 1 with *buf_p (the caller's to free, see
 * rgpu__cl_staged_write_end), or 0 with *status_p the frame's result; cmd's
 * wait list is freed then. */
int rgpu__cl_staged_write_begin(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, rgpu_cl_cmd_t *cmd,
                                uint64_t event_id, cl_int err, void **buf_p, rgpu_status_t *status_p)
{
    void *buf;

    *buf_p = NULL;
    if (err != CL_SUCCESS) {
        *status_p = rgpu__cl_cmd_end(s, hdr, cmd, event_id, err);
        return 0;
    }
    if (!(buf = malloc(hdr->bulk_len))) {
        free(cmd->wait);
        *status_p = rgpu__cl_async_error(s, hdr, CL_OUT_OF_HOST_MEMORY, NULL);
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
rgpu_status_t rgpu__cl_staged_write_end(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, rgpu_cl_cmd_t *cmd,
                                        int blocking, uint64_t event_id, cl_event ev, void *buf, cl_int err)
{
    if (err != CL_SUCCESS) {
        free(buf);
        return rgpu__cl_cmd_end(s, hdr, cmd, event_id, err);
    }
    if (rgpu__cl_on_complete(s, ev, rgpu__cl_free_cb, buf) != CL_SUCCESS) {
        clWaitForEvents(1, &ev);
        free(buf);
    }
    clFlush(cmd->queue->cl.queue);
    if (blocking && !rgpu__cl_may_block(s))
        err = clWaitForEvents(1, &ev);
    if (event_id)
        cmd->ev = ev;
    else
        rgpu__cl_event_drop(s, ev);
    return rgpu__cl_cmd_end(s, hdr, cmd, event_id, err);
}

rgpu_status_t rgpu__cl_write_rect(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClBufferRect *m,
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
    err = rgpu__cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);
    mem = rgpu__cl_get_buffer(s, m->mem);
    if (err == CL_SUCCESS && !mem)
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS)
        err = rgpu_cl_rect_check(r.bo, r.rg, m->buffer_row_pitch, m->buffer_slice_pitch, mem->size);
    if (!rgpu__cl_staged_write_begin(s, hdr, &cmd, m->event, err, &buf, &status))
        return status;
    if (err == CL_SUCCESS)
        err = clEnqueueWriteBufferRect(cmd.queue->cl.queue, rgpu__cl_rect_mem(mem, r.bo), CL_FALSE, r.bo, zero, r.rg,
                                       m->buffer_row_pitch, m->buffer_slice_pitch, r.rg[0], r.rg[0] * r.rg[1], buf,
                                       cmd.num_wait, cmd.wait, &ev);
    return rgpu__cl_staged_write_end(s, hdr, &cmd, m->blocking, m->event, ev, buf, err);
}

static cl_int rgpu_cl_enqueue_read_rect(rgpu_cl_cmd_t *cmd, void *dst, const void *arg, cl_event *ev)
{
    static const size_t zero[3] = {0, 0, 0};
    const rgpu_cl_read_rect_arg_t *a = arg;

    return clEnqueueReadBufferRect(cmd->queue->cl.queue, a->mem, CL_FALSE, a->r->bo, zero, a->r->rg,
                                   a->m->buffer_row_pitch, a->m->buffer_slice_pitch, a->r->rg[0],
                                   a->r->rg[0] * a->r->rg[1], dst, cmd->num_wait, cmd->wait, ev);
}

rgpu_status_t rgpu__cl_read_rect(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClBufferRect *m)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
    rgpu_cl_handle_t *mem;
    rgpu_cl_rect_t r;
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu__cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    mem = rgpu__cl_get_buffer(s, m->mem);
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
        rgpu_cl_read_rect_arg_t arg = {rgpu__cl_rect_mem(mem, r.bo), m, &r};
        err = rgpu__cl_read_async(s, hdr, &cmd, m->event, rgpu_cl_enqueue_read_rect, &arg,
                                 (uint64_t)r.rg[0] * r.rg[1] * r.rg[2]);
    }
    free(cmd.wait);
    if (err != CL_SUCCESS) {
        reply.cl_error = err;
        rgpu__cl_event_failed(s, m->event, cmd.queue ? cmd.queue->context : NULL, err);
        return rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_READ_REPLY, hdr->seq, &reply.base, NULL, 0);
    }
    rgpu__cl_event_keep(s, m->event, cmd.ev, cmd.queue->context);
    return RGPU_OK;
}

rgpu_status_t rgpu__cl_copy_rect(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClBufferRect *m)
{
    rgpu_cl_handle_t *src, *dst;
    rgpu_cl_rect_t r;
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu__cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    src = rgpu__cl_get_buffer(s, m->mem);
    dst = rgpu__cl_get_buffer(s, m->dst);
    if (err == CL_SUCCESS && (!src || !dst))
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS && !rgpu_cl_rect_get(m, &r))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS)
        err = rgpu_cl_rect_check(r.bo, r.rg, m->buffer_row_pitch, m->buffer_slice_pitch, src->size);
    if (err == CL_SUCCESS)
        err = rgpu_cl_rect_check(r.ho, r.rg, m->host_row_pitch, m->host_slice_pitch, dst->size);
    if (err == CL_SUCCESS)
        err = clEnqueueCopyBufferRect(cmd.queue->cl.queue, rgpu__cl_rect_mem(src, r.bo), rgpu__cl_rect_mem(dst, r.ho),
                                      r.bo, r.ho, r.rg,
                                      m->buffer_row_pitch, m->buffer_slice_pitch, m->host_row_pitch,
                                      m->host_slice_pitch, cmd.num_wait, cmd.wait, rgpu__cl_ev_out(&cmd, m->event));
    return rgpu__cl_cmd_end(s, hdr, &cmd, m->event, err);
}
