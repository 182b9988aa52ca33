/*
 * Commands. Everything but reads is asynchronous: it is queued in the
 * connection's send buffer and the call returns at once. Writes send the
 * application's data before returning (copied into the send buffer when
 * small, straight from its memory when large), so the memory can be reused
 * immediately, whether the write was blocking or not. Reads are round trips
 * whose bulk lands directly in the application's memory; a non-blocking read
 * returns at once and its data lands later, before the event, clFinish or
 * clWaitForEvents report it complete.
 */
#include <stdlib.h>
#include <string.h>

#include "icd.h"

/* What every enqueue starts with: a valid queue, a wait list, an event. */
typedef struct {
    uint64_t *wait;
    cl_uint num_wait;
    cl_event event;
} rgpu_cl_cmd_t;

static cl_int rgpu_cl_cmd_begin(cl_command_queue queue, cl_uint num_wait, const cl_event *wait_list,
                                cl_event *event_out, cl_command_type type, rgpu_cl_cmd_t *cmd)
{
    cl_int err;

    memset(cmd, 0, sizeof(*cmd));
    if (!RGPU_CL_VALID(queue, QUEUE))
        return CL_INVALID_COMMAND_QUEUE;
    err = rgpu__cl_wait_list(queue, num_wait, wait_list, &cmd->wait);
    if (err != CL_SUCCESS)
        return err;
    cmd->num_wait = num_wait;
    if (event_out) {
        cmd->event = rgpu__cl_event_new(queue, type, event_out);
        if (!cmd->event) {
            free(cmd->wait);
            return CL_OUT_OF_HOST_MEMORY;
        }
    }
    return CL_SUCCESS;
}

/* Hands the event to the application on success, drops it on failure. */
static cl_int rgpu_cl_cmd_end(rgpu_cl_cmd_t *cmd, cl_int err, cl_event *event_out)
{
    free(cmd->wait);
    if (err == CL_SUCCESS) {
        if (event_out)
            *event_out = cmd->event;
    } else {
        rgpu__cl_event_drop(cmd->event);
    }
    return err;
}

static uint64_t rgpu_cl_cmd_event_id(const rgpu_cl_cmd_t *cmd)
{
    return cmd->event ? cmd->event->obj.id : 0;
}

/* Any memory object of the queue's context: buffer or image. */
static cl_int rgpu_cl_check_any_mem(cl_command_queue queue, cl_mem mem)
{
    if (!RGPU_CL_VALID(mem, MEM))
        return CL_INVALID_MEM_OBJECT;
    return mem->context != queue->context ? CL_INVALID_CONTEXT : CL_SUCCESS;
}

/* A buffer of the queue's context, and a range inside it. */
static cl_int rgpu_cl_check_mem(cl_command_queue queue, cl_mem mem, size_t offset, size_t size)
{
    if (!RGPU_CL_VALID(mem, MEM) || mem->image_type)
        return CL_INVALID_MEM_OBJECT;
    if (mem->context != queue->context)
        return CL_INVALID_CONTEXT;
    if (offset > mem->size || size > mem->size - offset)
        return CL_INVALID_VALUE;
    return CL_SUCCESS;
}

/* ---- flush and finish ---- */

cl_int CL_API_CALL rgpu_clFlush(cl_command_queue queue)
{
    Rgpu__ClQueueOp req = RGPU__CL_QUEUE_OP__INIT;
    cl_int err;

    if (!RGPU_CL_VALID(queue, QUEUE))
        return CL_INVALID_COMMAND_QUEUE;
    req.queue = queue->obj.id;
    err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_FLUSH, &req.base, NULL, 0);
    if (err == CL_SUCCESS && rgpu_conn_flush(queue->obj.server->conn) != RGPU_OK)
        err = RGPU_CL_LINK_ERROR;
    return err;
}

cl_int CL_API_CALL rgpu_clFinish(cl_command_queue queue)
{
    Rgpu__ClQueueOp req = RGPU__CL_QUEUE_OP__INIT;
    cl_int err, read_err, deferred;

    if (!RGPU_CL_VALID(queue, QUEUE))
        return CL_INVALID_COMMAND_QUEUE;
    req.queue = queue->obj.id;
    err = rgpu__cl_call_status(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_FINISH, &req.base);
    read_err = rgpu__cl_queue_drain_reads(queue);
    if (err == CL_SUCCESS)
        err = read_err;
    deferred = rgpu_conn_take_deferred_error(queue->obj.server->conn);
    return err != CL_SUCCESS ? err : deferred;
}

/* ---- reads ---- */

static void rgpu_cl_read_scatter(rgpu_call_t *call)
{
    rgpu_cl_read_t *read = (rgpu_cl_read_t *)call;   /* call is the first member */
    const char *src = call->bulk_dst;
    char *dst = read->scatter_dst;

    /* A reply short of the region (a server's error, or its bug) leaves
     * the application's memory alone. */
    if (call->status != RGPU_OK || call->bulk_len != call->bulk_cap)
        return;
    for (size_t z = 0; z < read->region[2]; z++) {
        for (size_t y = 0; y < read->region[1]; y++) {
            memcpy(dst + z * read->slice_pitch + y * read->row_pitch, src, read->region[0]);
            src += read->region[0];
        }
    }
}

/* Issues a read; dst receives exactly size bytes (or the packed rect region,
 * scattered when scatter_dst is set). Blocking reads wait for the data;
 * others register the read with the queue and the event. */
static cl_int rgpu_cl_read(cl_command_queue queue, Rgpu__MsgType type, const ProtobufCMessage *msg, void *dst,
                           size_t size, cl_bool blocking, rgpu_cl_cmd_t *cmd, rgpu_cl_read_t *read)
{
    rgpu_cl_server_t *server = queue->obj.server;
    Rgpu__ClReadReply *reply;
    cl_int err;

    read->call.bulk_dst = dst;
    read->call.bulk_cap = size;
    read->call.waited = blocking;
    if (read->scatter_dst)
        read->call.done = rgpu_cl_read_scatter;
    atomic_init(&read->refs, 1);
    if (rgpu_conn_call_start(server->conn, (uint16_t)type, msg, NULL, 0, &read->call) != RGPU_OK &&
        read->call.seq == 0)
        return RGPU_CL_LINK_ERROR;
    if (!blocking) {
        /* The queue's list and the event each hold a reference. */
        atomic_fetch_add(&read->refs, cmd->event ? 2 : 1);
        pthread_mutex_lock(&queue->lock);
        read->next = queue->reads;
        queue->reads = read;
        pthread_mutex_unlock(&queue->lock);
        if (cmd->event)
            cmd->event->read = read;
        rgpu__cl_read_put(read);
        return rgpu_conn_sync_mode() ? rgpu_clFinish(queue) : CL_SUCCESS;
    }
    if (rgpu_conn_call_wait(server->conn, &read->call) != RGPU_OK) {
        err = RGPU_CL_LINK_ERROR;
    } else if (read->call.reply_type != RGPU__MSG_TYPE__MSG_CL_READ_REPLY ||
               !(reply = rgpu__cl_read_reply__unpack(NULL, read->call.body_len, read->call.body))) {
        err = RGPU_CL_LINK_ERROR;
    } else {
        err = reply->cl_error;
        if (err == CL_SUCCESS && read->call.bulk_len != size)
            err = RGPU_CL_LINK_ERROR;
        rgpu__cl_read_reply__free_unpacked(reply, NULL);
    }
    rgpu__cl_read_put(read);
    if (err == CL_SUCCESS)
        err = rgpu_conn_take_deferred_error(server->conn);
    return err;
}

static rgpu_cl_read_t *rgpu_cl_read_new(void)
{
    return calloc(1, sizeof(rgpu_cl_read_t));
}

cl_int CL_API_CALL rgpu_clEnqueueReadBuffer(cl_command_queue queue, cl_mem mem, cl_bool blocking, size_t offset,
                                            size_t size, void *ptr, cl_uint num_wait, const cl_event *wait_list,
                                            cl_event *event)
{
    Rgpu__ClReadBuffer req = RGPU__CL_READ_BUFFER__INIT;
    rgpu_cl_read_t *read;
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_READ_BUFFER, &cmd);
    if (err != CL_SUCCESS)
        return err;
    if ((err = rgpu_cl_check_mem(queue, mem, offset, size)) != CL_SUCCESS)
        goto out;
    if (!ptr || size == 0) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    if (!(read = rgpu_cl_read_new())) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out;
    }
    req.queue = queue->obj.id;
    req.mem = mem->obj.id;
    req.offset = offset;
    req.size = size;
    req.blocking = blocking;
    req.event = rgpu_cl_cmd_event_id(&cmd);
    req.n_wait = cmd.num_wait;
    req.wait = cmd.wait;
    err = rgpu_cl_read(queue, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &req.base, ptr, size, blocking, &cmd, read);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

/* ---- writes, copies, fills ---- */

cl_int CL_API_CALL rgpu_clEnqueueWriteBuffer(cl_command_queue queue, cl_mem mem, cl_bool blocking, size_t offset,
                                             size_t size, const void *ptr, cl_uint num_wait,
                                             const cl_event *wait_list, cl_event *event)
{
    Rgpu__ClWriteBuffer req = RGPU__CL_WRITE_BUFFER__INIT;
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_WRITE_BUFFER, &cmd);
    if (err != CL_SUCCESS)
        return err;
    if ((err = rgpu_cl_check_mem(queue, mem, offset, size)) != CL_SUCCESS)
        goto out;
    if (!ptr || size == 0) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    req.queue = queue->obj.id;
    req.mem = mem->obj.id;
    req.blocking = blocking;
    req.offset = offset;
    req.size = size;
    req.event = rgpu_cl_cmd_event_id(&cmd);
    req.n_wait = cmd.num_wait;
    req.wait = cmd.wait;
    err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &req.base, ptr, size);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

static int rgpu_cl_overlap(size_t a, size_t b, size_t size)
{
    return a < b + size && b < a + size;
}

cl_int CL_API_CALL rgpu_clEnqueueCopyBuffer(cl_command_queue queue, cl_mem src, cl_mem dst, size_t src_offset,
                                            size_t dst_offset, size_t size, cl_uint num_wait,
                                            const cl_event *wait_list, cl_event *event)
{
    Rgpu__ClCopyBuffer req = RGPU__CL_COPY_BUFFER__INIT;
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_COPY_BUFFER, &cmd);
    if (err != CL_SUCCESS)
        return err;
    if ((err = rgpu_cl_check_mem(queue, src, src_offset, size)) != CL_SUCCESS ||
        (err = rgpu_cl_check_mem(queue, dst, dst_offset, size)) != CL_SUCCESS)
        goto out;
    if (size == 0) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    if (src == dst && rgpu_cl_overlap(src_offset, dst_offset, size)) {
        err = CL_MEM_COPY_OVERLAP;
        goto out;
    }
    req.queue = queue->obj.id;
    req.src = src->obj.id;
    req.dst = dst->obj.id;
    req.src_offset = src_offset;
    req.dst_offset = dst_offset;
    req.size = size;
    req.event = rgpu_cl_cmd_event_id(&cmd);
    req.n_wait = cmd.num_wait;
    req.wait = cmd.wait;
    err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER, &req.base, NULL, 0);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

cl_int CL_API_CALL rgpu_clEnqueueFillBuffer(cl_command_queue queue, cl_mem mem, const void *pattern,
                                            size_t pattern_size, size_t offset, size_t size, cl_uint num_wait,
                                            const cl_event *wait_list, cl_event *event)
{
    Rgpu__ClFillBuffer req = RGPU__CL_FILL_BUFFER__INIT;
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_FILL_BUFFER, &cmd);
    if (err != CL_SUCCESS)
        return err;
    if ((err = rgpu_cl_check_mem(queue, mem, offset, size)) != CL_SUCCESS)
        goto out;
    if (!pattern || pattern_size == 0 || pattern_size > 128 || (pattern_size & (pattern_size - 1)) ||
        offset % pattern_size || size % pattern_size) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    req.queue = queue->obj.id;
    req.mem = mem->obj.id;
    req.pattern.data = (uint8_t *)pattern;
    req.pattern.len = pattern_size;
    req.offset = offset;
    req.size = size;
    req.event = rgpu_cl_cmd_event_id(&cmd);
    req.n_wait = cmd.num_wait;
    req.wait = cmd.wait;
    err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_FILL_BUFFER, &req.base, NULL, 0);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

/* ---- rect transfers ---- */

typedef struct {
    size_t origin[3];
    size_t region[3];
    size_t row_pitch, slice_pitch;
} rgpu_cl_rect_t;

/* Resolves zero pitches to their defaults and checks the extent fits in
 * limit bytes (the buffer's size; SIZE_MAX for host memory). */
static cl_int rgpu_cl_rect_resolve(rgpu_cl_rect_t *r, size_t limit)
{
    size_t last;

    if (!r->region[0] || !r->region[1] || !r->region[2])
        return CL_INVALID_VALUE;
    if (!r->row_pitch)
        r->row_pitch = r->region[0];
    if (!r->slice_pitch)
        r->slice_pitch = r->region[1] * r->row_pitch;
    if (r->row_pitch < r->region[0] || r->slice_pitch < r->region[1] * r->row_pitch ||
        r->slice_pitch % r->row_pitch)
        return CL_INVALID_VALUE;
    last = (r->origin[2] + r->region[2] - 1) * r->slice_pitch + (r->origin[1] + r->region[1] - 1) * r->row_pitch +
           r->origin[0] + r->region[0];
    return last > limit ? CL_INVALID_VALUE : CL_SUCCESS;
}

static size_t rgpu_cl_rect_offset(const rgpu_cl_rect_t *r)
{
    return r->origin[2] * r->slice_pitch + r->origin[1] * r->row_pitch + r->origin[0];
}

static void rgpu_cl_rect_fill(Rgpu__ClBufferRect *req, uint64_t buffer_origin[3], uint64_t host_origin[3],
                              uint64_t region[3], const rgpu_cl_rect_t *buf, const rgpu_cl_rect_t *host)
{
    for (int i = 0; i < 3; i++) {
        buffer_origin[i] = buf->origin[i];
        host_origin[i] = host->origin[i];
        region[i] = buf->region[i];
    }
    req->n_buffer_origin = req->n_host_origin = req->n_region = 3;
    req->buffer_origin = buffer_origin;
    req->host_origin = host_origin;
    req->region = region;
    req->buffer_row_pitch = buf->row_pitch;
    req->buffer_slice_pitch = buf->slice_pitch;
}

static cl_int rgpu_cl_rect_setup(cl_command_queue queue, cl_mem mem, const size_t *buffer_origin,
                                 const size_t *host_origin, const size_t *region, size_t buffer_row_pitch,
                                 size_t buffer_slice_pitch, size_t host_row_pitch, size_t host_slice_pitch,
                                 const void *ptr, rgpu_cl_rect_t *buf, rgpu_cl_rect_t *host)
{
    cl_int err = rgpu_cl_check_mem(queue, mem, 0, 0);

    if (err != CL_SUCCESS)
        return err;
    if (!ptr || !buffer_origin || !host_origin || !region)
        return CL_INVALID_VALUE;
    *buf = (rgpu_cl_rect_t){{buffer_origin[0], buffer_origin[1], buffer_origin[2]},
                            {region[0], region[1], region[2]}, buffer_row_pitch, buffer_slice_pitch};
    *host = (rgpu_cl_rect_t){{host_origin[0], host_origin[1], host_origin[2]},
                             {region[0], region[1], region[2]}, host_row_pitch, host_slice_pitch};
    if ((err = rgpu_cl_rect_resolve(buf, mem->size)) != CL_SUCCESS)
        return err;
    return rgpu_cl_rect_resolve(host, SIZE_MAX);
}

cl_int CL_API_CALL rgpu_clEnqueueReadBufferRect(cl_command_queue queue, cl_mem mem, cl_bool blocking,
                                                const size_t *buffer_origin, const size_t *host_origin,
                                                const size_t *region, size_t buffer_row_pitch,
                                                size_t buffer_slice_pitch, size_t host_row_pitch,
                                                size_t host_slice_pitch, void *ptr, cl_uint num_wait,
                                                const cl_event *wait_list, cl_event *event)
{
    Rgpu__ClBufferRect req = RGPU__CL_BUFFER_RECT__INIT;
    uint64_t bo[3], ho[3], rg[3];
    rgpu_cl_rect_t buf, host;
    rgpu_cl_read_t *read = NULL;
    rgpu_cl_cmd_t cmd;
    size_t packed;
    void *tmp = NULL;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_READ_BUFFER_RECT, &cmd);
    if (err != CL_SUCCESS)
        return err;
    err = rgpu_cl_rect_setup(queue, mem, buffer_origin, host_origin, region, buffer_row_pitch,
                             buffer_slice_pitch, host_row_pitch, host_slice_pitch, ptr, &buf, &host);
    if (err != CL_SUCCESS)
        goto out;
    packed = region[0] * region[1] * region[2];
    /* The packed region lands in a buffer that the read owns (after the
     * call struct), then is scattered into the application's pitches. */
    read = calloc(1, sizeof(*read) + packed);
    if (!read) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out;
    }
    tmp = read + 1;
    read->scatter_dst = (char *)ptr + rgpu_cl_rect_offset(&host);
    memcpy(read->region, region, sizeof(read->region));
    read->row_pitch = host.row_pitch;
    read->slice_pitch = host.slice_pitch;
    req.queue = queue->obj.id;
    req.mem = mem->obj.id;
    req.blocking = blocking;
    rgpu_cl_rect_fill(&req, bo, ho, rg, &buf, &host);
    req.event = rgpu_cl_cmd_event_id(&cmd);
    req.n_wait = cmd.num_wait;
    req.wait = cmd.wait;
    err = rgpu_cl_read(queue, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER_RECT, &req.base, tmp, packed, blocking, &cmd,
                       read);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

cl_int CL_API_CALL rgpu_clEnqueueWriteBufferRect(cl_command_queue queue, cl_mem mem, cl_bool blocking,
                                                 const size_t *buffer_origin, const size_t *host_origin,
                                                 const size_t *region, size_t buffer_row_pitch,
                                                 size_t buffer_slice_pitch, size_t host_row_pitch,
                                                 size_t host_slice_pitch, const void *ptr, cl_uint num_wait,
                                                 const cl_event *wait_list, cl_event *event)
{
    Rgpu__ClBufferRect req = RGPU__CL_BUFFER_RECT__INIT;
    uint64_t bo[3], ho[3], rg[3];
    rgpu_cl_rect_t buf, host;
    rgpu_cl_cmd_t cmd;
    char *packed = NULL, *p;
    const char *src;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_WRITE_BUFFER_RECT, &cmd);
    if (err != CL_SUCCESS)
        return err;
    err = rgpu_cl_rect_setup(queue, mem, buffer_origin, host_origin, region, buffer_row_pitch,
                             buffer_slice_pitch, host_row_pitch, host_slice_pitch, ptr, &buf, &host);
    if (err != CL_SUCCESS)
        goto out;
    /* Gather the host region tightly: only the bytes that matter travel. */
    p = packed = malloc(region[0] * region[1] * region[2]);
    if (!packed) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out;
    }
    src = (const char *)ptr + rgpu_cl_rect_offset(&host);
    for (size_t z = 0; z < region[2]; z++) {
        for (size_t y = 0; y < region[1]; y++) {
            memcpy(p, src + z * host.slice_pitch + y * host.row_pitch, region[0]);
            p += region[0];
        }
    }
    req.queue = queue->obj.id;
    req.mem = mem->obj.id;
    req.blocking = blocking;
    rgpu_cl_rect_fill(&req, bo, ho, rg, &buf, &host);
    req.event = rgpu_cl_cmd_event_id(&cmd);
    req.n_wait = cmd.num_wait;
    req.wait = cmd.wait;
    err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER_RECT, &req.base, packed,
                        (uint64_t)(p - packed));
    free(packed);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

cl_int CL_API_CALL rgpu_clEnqueueCopyBufferRect(cl_command_queue queue, cl_mem src, cl_mem dst,
                                                const size_t *src_origin, const size_t *dst_origin,
                                                const size_t *region, size_t src_row_pitch,
                                                size_t src_slice_pitch, size_t dst_row_pitch,
                                                size_t dst_slice_pitch, cl_uint num_wait,
                                                const cl_event *wait_list, cl_event *event)
{
    Rgpu__ClBufferRect req = RGPU__CL_BUFFER_RECT__INIT;
    uint64_t bo[3], ho[3], rg[3];
    rgpu_cl_rect_t s, d;
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_COPY_BUFFER_RECT, &cmd);
    if (err != CL_SUCCESS)
        return err;
    if ((err = rgpu_cl_check_mem(queue, dst, 0, 0)) != CL_SUCCESS)
        goto out;
    err = rgpu_cl_rect_setup(queue, src, src_origin, dst_origin, region, src_row_pitch, src_slice_pitch,
                             dst_row_pitch, dst_slice_pitch, src, &s, &d);
    if (err != CL_SUCCESS)
        goto out;
    if ((err = rgpu_cl_rect_resolve(&d, dst->size)) != CL_SUCCESS)
        goto out;
    if (src == dst && (s.row_pitch != d.row_pitch || s.slice_pitch != d.slice_pitch ||
                       rgpu_cl_overlap(rgpu_cl_rect_offset(&s), rgpu_cl_rect_offset(&d),
                                       (region[2] - 1) * s.slice_pitch + (region[1] - 1) * s.row_pitch + region[0]))) {
        err = src == dst && (s.row_pitch != d.row_pitch || s.slice_pitch != d.slice_pitch) ? CL_INVALID_VALUE
                                                                                             : CL_MEM_COPY_OVERLAP;
        goto out;
    }
    req.queue = queue->obj.id;
    req.mem = src->obj.id;
    req.dst = dst->obj.id;
    rgpu_cl_rect_fill(&req, bo, ho, rg, &s, &d);
    req.host_row_pitch = d.row_pitch;
    req.host_slice_pitch = d.slice_pitch;
    req.event = rgpu_cl_cmd_event_id(&cmd);
    req.n_wait = cmd.num_wait;
    req.wait = cmd.wait;
    err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER_RECT, &req.base, NULL, 0);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

/* ---- markers, barriers, migration ---- */

static cl_int rgpu_cl_marker(cl_command_queue queue, int barrier, cl_uint num_wait, const cl_event *wait_list,
                             cl_event *event, cl_command_type type)
{
    Rgpu__ClMarker req = RGPU__CL_MARKER__INIT;
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, type, &cmd);
    if (err != CL_SUCCESS)
        return err;
    req.queue = queue->obj.id;
    req.barrier = barrier;
    req.event = rgpu_cl_cmd_event_id(&cmd);
    req.n_wait = cmd.num_wait;
    req.wait = cmd.wait;
    err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_MARKER, &req.base, NULL, 0);
    return rgpu_cl_cmd_end(&cmd, err, event);
}

cl_int CL_API_CALL rgpu_clEnqueueMarkerWithWaitList(cl_command_queue queue, cl_uint num_wait,
                                                    const cl_event *wait_list, cl_event *event)
{
    return rgpu_cl_marker(queue, 0, num_wait, wait_list, event, CL_COMMAND_MARKER);
}

cl_int CL_API_CALL rgpu_clEnqueueBarrierWithWaitList(cl_command_queue queue, cl_uint num_wait,
                                                     const cl_event *wait_list, cl_event *event)
{
    return rgpu_cl_marker(queue, 1, num_wait, wait_list, event, CL_COMMAND_BARRIER);
}

cl_int CL_API_CALL rgpu_clEnqueueMarker(cl_command_queue queue, cl_event *event)
{
    if (!event)
        return CL_INVALID_VALUE;
    return rgpu_cl_marker(queue, 0, 0, NULL, event, CL_COMMAND_MARKER);
}

cl_int CL_API_CALL rgpu_clEnqueueBarrier(cl_command_queue queue)
{
    return rgpu_cl_marker(queue, 1, 0, NULL, NULL, CL_COMMAND_BARRIER);
}

cl_int CL_API_CALL rgpu_clEnqueueWaitForEvents(cl_command_queue queue, cl_uint num, const cl_event *list)
{
    if (num == 0 || !list)
        return CL_INVALID_VALUE;
    return rgpu_cl_marker(queue, 1, num, list, NULL, CL_COMMAND_BARRIER);
}

cl_int CL_API_CALL rgpu_clEnqueueMigrateMemObjects(cl_command_queue queue, cl_uint num_mems, const cl_mem *mems,
                                                   cl_mem_migration_flags flags, cl_uint num_wait,
                                                   const cl_event *wait_list, cl_event *event)
{
    Rgpu__ClMigrate req = RGPU__CL_MIGRATE__INIT;
    rgpu_cl_cmd_t cmd;
    uint64_t *ids = NULL;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_MIGRATE_MEM_OBJECTS, &cmd);
    if (err != CL_SUCCESS)
        return err;
    if (num_mems == 0 || !mems ||
        (flags & ~(cl_mem_migration_flags)(CL_MIGRATE_MEM_OBJECT_HOST | CL_MIGRATE_MEM_OBJECT_CONTENT_UNDEFINED))) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    ids = malloc(num_mems * sizeof(*ids));
    if (!ids) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out;
    }
    for (cl_uint i = 0; i < num_mems; i++) {
        if ((err = rgpu_cl_check_any_mem(queue, mems[i])) != CL_SUCCESS)
            goto out;
        ids[i] = mems[i]->obj.id;
    }
    req.queue = queue->obj.id;
    req.n_mems = num_mems;
    req.mems = ids;
    req.flags = flags;
    req.event = rgpu_cl_cmd_event_id(&cmd);
    req.n_wait = cmd.num_wait;
    req.wait = cmd.wait;
    err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_MIGRATE, &req.base, NULL, 0);
out:
    free(ids);
    return rgpu_cl_cmd_end(&cmd, err, event);
}

static cl_int rgpu_cl_image_write(cl_command_queue queue, cl_mem image, cl_bool blocking, const size_t *origin,
                                  const size_t *region, const void *ptr, const rgpu_cl_image_shape_t *shape,
                                  rgpu_cl_cmd_t *cmd);

/* ---- map and unmap ----
 * A map reads the region into host memory (the application's own for
 * USE_HOST_PTR buffers, else memory allocated here); an unmap writes it back
 * when it was mapped for writing. Both are ordinary queued commands, so
 * ordering and events behave as OpenCL specifies. */

void *CL_API_CALL rgpu_clEnqueueMapBuffer(cl_command_queue queue, cl_mem mem, cl_bool blocking,
                                          cl_map_flags flags, size_t offset, size_t size, cl_uint num_wait,
                                          const cl_event *wait_list, cl_event *event, cl_int *errcode_ret)
{
    Rgpu__ClReadBuffer req = RGPU__CL_READ_BUFFER__INIT;
    rgpu_cl_mapping_t *map = NULL;
    rgpu_cl_read_t *read;
    rgpu_cl_cmd_t cmd;
    void *ptr = NULL;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_MAP_BUFFER, &cmd);
    if (err != CL_SUCCESS)
        goto out_ret;
    if ((err = rgpu_cl_check_mem(queue, mem, offset, size)) != CL_SUCCESS)
        goto out;
    if (size == 0 || (flags & ~(cl_map_flags)(CL_MAP_READ | CL_MAP_WRITE | CL_MAP_WRITE_INVALIDATE_REGION)) ||
        ((flags & CL_MAP_WRITE_INVALIDATE_REGION) && (flags & (CL_MAP_READ | CL_MAP_WRITE)))) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    map = calloc(1, sizeof(*map));
    if (!map) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out;
    }
    if (mem->host_ptr) {
        ptr = (char *)mem->host_ptr + offset;
    } else {
        pthread_mutex_lock(&mem->lock);
        if (mem->map_spare && mem->map_spare_size == size) {
            ptr = mem->map_spare;
            mem->map_spare = NULL;
        }
        pthread_mutex_unlock(&mem->lock);
        if (!ptr && posix_memalign(&ptr, 4096, size) != 0) {
            ptr = NULL;
            err = CL_MAP_FAILURE;
            goto out;
        }
        map->owned = 1;
    }
    map->ptr = ptr;
    map->offset = offset;
    map->size = size;
    map->flags = flags ? flags : CL_MAP_READ | CL_MAP_WRITE;
    if (map->flags & CL_MAP_WRITE_INVALIDATE_REGION) {
        Rgpu__ClMarker marker = RGPU__CL_MARKER__INIT;
        marker.queue = queue->obj.id;
        marker.event = rgpu_cl_cmd_event_id(&cmd);
        marker.n_wait = cmd.num_wait;
        marker.wait = cmd.wait;
        err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_MARKER, &marker.base, NULL, 0);
        if (err == CL_SUCCESS && blocking)
            err = rgpu_clFinish(queue);
    } else if (!(read = rgpu_cl_read_new())) {
        err = CL_OUT_OF_HOST_MEMORY;
    } else {
        req.queue = queue->obj.id;
        req.mem = mem->obj.id;
        req.offset = offset;
        req.size = size;
        req.blocking = blocking;
        req.event = rgpu_cl_cmd_event_id(&cmd);
        req.n_wait = cmd.num_wait;
        req.wait = cmd.wait;
        err = rgpu_cl_read(queue, RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &req.base, ptr, size, blocking, &cmd, read);
    }
    if (err != CL_SUCCESS)
        goto out;
    pthread_mutex_lock(&mem->lock);
    map->next = mem->maps;
    mem->maps = map;
    mem->map_count++;
    pthread_mutex_unlock(&mem->lock);
    map = NULL;
out:
    if (map) {
        if (map->owned)
            free(map->ptr);
        free(map);
        ptr = NULL;
    }
    err = rgpu_cl_cmd_end(&cmd, err, event);
    if (err != CL_SUCCESS)
        ptr = NULL;
out_ret:
    if (errcode_ret)
        *errcode_ret = err;
    return ptr;
}

cl_int CL_API_CALL rgpu_clEnqueueUnmapMemObject(cl_command_queue queue, cl_mem mem, void *ptr, cl_uint num_wait,
                                                const cl_event *wait_list, cl_event *event)
{
    rgpu_cl_mapping_t **pp, *map = NULL;
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_UNMAP_MEM_OBJECT, &cmd);
    if (err != CL_SUCCESS)
        return err;
    if ((err = rgpu_cl_check_any_mem(queue, mem)) != CL_SUCCESS)
        goto out;
    pthread_mutex_lock(&mem->lock);
    for (pp = &mem->maps; *pp; pp = &(*pp)->next) {
        if ((*pp)->ptr == ptr) {
            map = *pp;
            *pp = map->next;
            mem->map_count--;
            break;
        }
    }
    pthread_mutex_unlock(&mem->lock);
    if (!map) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    if (map->image && (map->flags & (CL_MAP_WRITE | CL_MAP_WRITE_INVALIDATE_REGION))) {
        rgpu_cl_image_shape_t shape;
        rgpu__cl_image_shape(mem, map->region, map->row_pitch, map->slice_pitch, &shape);
        err = rgpu_cl_image_write(queue, mem, CL_FALSE, map->origin, map->region, map->ptr, &shape, &cmd);
    } else if (map->flags & (CL_MAP_WRITE | CL_MAP_WRITE_INVALIDATE_REGION)) {
        Rgpu__ClWriteBuffer req = RGPU__CL_WRITE_BUFFER__INIT;
        req.queue = queue->obj.id;
        req.mem = mem->obj.id;
        req.offset = map->offset;
        req.size = map->size;
        req.event = rgpu_cl_cmd_event_id(&cmd);
        req.n_wait = cmd.num_wait;
        req.wait = cmd.wait;
        err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &req.base, map->ptr, map->size);
    } else {
        Rgpu__ClMarker marker = RGPU__CL_MARKER__INIT;
        marker.queue = queue->obj.id;
        marker.event = rgpu_cl_cmd_event_id(&cmd);
        marker.n_wait = cmd.num_wait;
        marker.wait = cmd.wait;
        err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_MARKER, &marker.base, NULL, 0);
    }
    /* The data has been sent (or copied) already: the memory can go, or
     * wait for the next map of this buffer. */
    if (map->owned) {
        pthread_mutex_lock(&mem->lock);
        if (!mem->map_spare) {
            mem->map_spare = map->ptr;
            mem->map_spare_size = map->size;
            map->ptr = NULL;
        }
        pthread_mutex_unlock(&mem->lock);
        free(map->ptr);
    }
    free(map);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

/* ---- kernels ---- */

cl_int CL_API_CALL rgpu_clEnqueueNDRangeKernel(cl_command_queue queue, cl_kernel kernel, cl_uint work_dim,
                                               const size_t *global_offset, const size_t *global_size,
                                               const size_t *local_size, cl_uint num_wait,
                                               const cl_event *wait_list, cl_event *event)
{
    Rgpu__ClNDRange req = RGPU__CL_NDRANGE__INIT;
    uint64_t off[3], gsz[3], lsz[3];
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_NDRANGE_KERNEL, &cmd);
    if (err != CL_SUCCESS)
        return err;
    if (!RGPU_CL_VALID(kernel, KERNEL)) {
        err = CL_INVALID_KERNEL;
        goto out;
    }
    if (kernel->program->context != queue->context) {
        err = CL_INVALID_CONTEXT;
        goto out;
    }
    if (work_dim < 1 || work_dim > 3) {
        err = CL_INVALID_WORK_DIMENSION;
        goto out;
    }
    if (!global_size) {
        err = CL_INVALID_GLOBAL_WORK_SIZE;
        goto out;
    }
    for (cl_uint i = 0; i < kernel->desc->num_args; i++) {
        if (!kernel->arg_is_set[i]) {
            err = CL_INVALID_KERNEL_ARGS;
            goto out;
        }
    }
    for (cl_uint i = 0; i < work_dim; i++) {
        if (global_size[i] == 0) {
            err = CL_INVALID_GLOBAL_WORK_SIZE;
            goto out;
        }
        if (local_size && (local_size[i] == 0 || global_size[i] % local_size[i])) {
            err = CL_INVALID_WORK_GROUP_SIZE;
            goto out;
        }
        off[i] = global_offset ? global_offset[i] : 0;
        gsz[i] = global_size[i];
        lsz[i] = local_size ? local_size[i] : 0;
    }
    req.queue = queue->obj.id;
    req.kernel = kernel->obj.id;
    req.work_dim = work_dim;
    req.n_global_offset = global_offset ? work_dim : 0;
    req.global_offset = off;
    req.n_global_size = work_dim;
    req.global_size = gsz;
    req.n_local_size = local_size ? work_dim : 0;
    req.local_size = lsz;
    req.event = rgpu_cl_cmd_event_id(&cmd);
    req.n_wait = cmd.num_wait;
    req.wait = cmd.wait;
    err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_NDRANGE, &req.base, NULL, 0);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

cl_int CL_API_CALL rgpu_clEnqueueTask(cl_command_queue queue, cl_kernel kernel, cl_uint num_wait,
                                      const cl_event *wait_list, cl_event *event)
{
    static const size_t one = 1;
    cl_int err = rgpu_clEnqueueNDRangeKernel(queue, kernel, 1, NULL, &one, &one, num_wait, wait_list, event);

    if (err == CL_SUCCESS && event && *event)
        (*event)->type = CL_COMMAND_TASK;
    return err;
}

/* ---- images ----
 * The wire carries every region packed (see opencl.proto); the host side is
 * gathered before a write and scattered after a read, through the same
 * staging as rect transfers, only when its pitches are not packed. */

static cl_int rgpu_cl_check_image(cl_command_queue queue, cl_mem mem)
{
    if (!RGPU_CL_VALID(mem, MEM) || !mem->image_type)
        return CL_INVALID_MEM_OBJECT;
    if (mem->context != queue->context)
        return CL_INVALID_CONTEXT;
    return CL_SUCCESS;
}

/* Whether origin + region lie inside the image, as its type uses them (a
 * 1D array's images in [1], a 2D array's in [2], unused coordinates 0 with
 * extent 1). CL_SUCCESS or CL_INVALID_VALUE. */
static cl_int rgpu_cl_image_region(cl_mem image, const size_t *origin, const size_t *region)
{
    size_t lim[3] = {image->dims[0], 1, 1};

    if (!origin || !region)
        return CL_INVALID_VALUE;
    switch (image->image_type) {
    case CL_MEM_OBJECT_IMAGE1D_ARRAY: lim[1] = image->dims[3]; break;
    case CL_MEM_OBJECT_IMAGE2D: lim[1] = image->dims[1]; break;
    case CL_MEM_OBJECT_IMAGE2D_ARRAY: lim[1] = image->dims[1]; lim[2] = image->dims[3]; break;
    case CL_MEM_OBJECT_IMAGE3D: lim[1] = image->dims[1]; lim[2] = image->dims[2]; break;
    default: break;
    }
    for (int i = 0; i < 3; i++) {
        if (!region[i] || origin[i] > lim[i] || region[i] > lim[i] - origin[i])
            return CL_INVALID_VALUE;
    }
    return CL_SUCCESS;
}

static void rgpu_cl_image_rect_fill(Rgpu__ClImageRect *req, uint64_t o[3], uint64_t r[3], const size_t *origin,
                                    const size_t *region)
{
    for (int i = 0; i < 3; i++) {
        o[i] = origin[i];
        r[i] = region[i];
    }
    req->n_origin = req->n_region = 3;
    req->origin = o;
    req->region = r;
}

/* Reads a region into ptr laid out as shape says: straight into ptr when
 * packed, else through a staging area the read owns, scattered when the
 * data arrives. */
static cl_int rgpu_cl_image_read(cl_command_queue queue, cl_mem image, cl_bool blocking, const size_t *origin,
                                 const size_t *region, void *ptr, const rgpu_cl_image_shape_t *shape,
                                 rgpu_cl_cmd_t *cmd)
{
    Rgpu__ClImageRect req = RGPU__CL_IMAGE_RECT__INIT;
    size_t packed = shape->row_bytes * shape->rows * shape->slices;
    uint64_t o[3], r[3];
    rgpu_cl_read_t *read;
    void *dst = ptr;

    if (rgpu__cl_image_shape_packed(shape)) {
        read = rgpu_cl_read_new();
    } else if ((read = calloc(1, sizeof(*read) + packed)) != NULL) {
        dst = read + 1;
        read->scatter_dst = ptr;
        read->region[0] = shape->row_bytes;
        read->region[1] = shape->rows;
        read->region[2] = shape->slices;
        read->row_pitch = shape->row_pitch;
        read->slice_pitch = shape->slice_pitch;
    }
    if (!read)
        return CL_OUT_OF_HOST_MEMORY;
    req.queue = queue->obj.id;
    req.image = image->obj.id;
    req.blocking = blocking;
    rgpu_cl_image_rect_fill(&req, o, r, origin, region);
    req.event = rgpu_cl_cmd_event_id(cmd);
    req.n_wait = cmd->num_wait;
    req.wait = cmd->wait;
    return rgpu_cl_read(queue, RGPU__MSG_TYPE__MSG_CL_READ_IMAGE, &req.base, dst, packed, blocking, cmd, read);
}

/* Writes a region from ptr laid out as shape says, gathered when not packed. */
static cl_int rgpu_cl_image_write(cl_command_queue queue, cl_mem image, cl_bool blocking, const size_t *origin,
                                  const size_t *region, const void *ptr, const rgpu_cl_image_shape_t *shape,
                                  rgpu_cl_cmd_t *cmd)
{
    Rgpu__ClImageRect req = RGPU__CL_IMAGE_RECT__INIT;
    size_t packed_len = shape->row_bytes * shape->rows * shape->slices;
    uint64_t o[3], r[3];
    char *packed = NULL;
    cl_int err;

    if (!rgpu__cl_image_shape_packed(shape)) {
        char *p = packed = malloc(packed_len);
        if (!packed)
            return CL_OUT_OF_HOST_MEMORY;
        for (size_t z = 0; z < shape->slices; z++) {
            for (size_t y = 0; y < shape->rows; y++, p += shape->row_bytes)
                memcpy(p, (const char *)ptr + z * shape->slice_pitch + y * shape->row_pitch, shape->row_bytes);
        }
    }
    req.queue = queue->obj.id;
    req.image = image->obj.id;
    req.blocking = blocking;
    rgpu_cl_image_rect_fill(&req, o, r, origin, region);
    req.event = rgpu_cl_cmd_event_id(cmd);
    req.n_wait = cmd->num_wait;
    req.wait = cmd->wait;
    err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE, &req.base, packed ? packed : ptr,
                        packed_len);
    free(packed);
    return err;
}

/* What clEnqueueReadImage and clEnqueueWriteImage check alike: the image
 * is the queue's, the region lies inside it, and the host memory's shape
 * (*shape_p) follows from the pitches. */
static cl_int rgpu_cl_image_xfer_check(cl_command_queue queue, cl_mem image, const size_t *origin,
                                       const size_t *region, size_t row_pitch, size_t slice_pitch, const void *ptr,
                                       rgpu_cl_image_shape_t *shape_p)
{
    cl_int err;

    if ((err = rgpu_cl_check_image(queue, image)) != CL_SUCCESS ||
        (err = rgpu_cl_image_region(image, origin, region)) != CL_SUCCESS)
        return err;
    if (!ptr || rgpu__cl_image_shape(image, region, row_pitch, slice_pitch, shape_p) != CL_SUCCESS)
        return CL_INVALID_VALUE;
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clEnqueueReadImage(cl_command_queue queue, cl_mem image, cl_bool blocking,
                                           const size_t *origin, const size_t *region, size_t row_pitch,
                                           size_t slice_pitch, void *ptr, cl_uint num_wait,
                                           const cl_event *wait_list, cl_event *event)
{
    rgpu_cl_image_shape_t shape;
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_READ_IMAGE, &cmd);
    if (err != CL_SUCCESS)
        return err;
    if ((err = rgpu_cl_image_xfer_check(queue, image, origin, region, row_pitch, slice_pitch, ptr, &shape)) !=
        CL_SUCCESS)
        goto out;
    err = rgpu_cl_image_read(queue, image, blocking, origin, region, ptr, &shape, &cmd);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

cl_int CL_API_CALL rgpu_clEnqueueWriteImage(cl_command_queue queue, cl_mem image, cl_bool blocking,
                                            const size_t *origin, const size_t *region, size_t row_pitch,
                                            size_t slice_pitch, const void *ptr, cl_uint num_wait,
                                            const cl_event *wait_list, cl_event *event)
{
    rgpu_cl_image_shape_t shape;
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_WRITE_IMAGE, &cmd);
    if (err != CL_SUCCESS)
        return err;
    if ((err = rgpu_cl_image_xfer_check(queue, image, origin, region, row_pitch, slice_pitch, ptr, &shape)) !=
        CL_SUCCESS)
        goto out;
    err = rgpu_cl_image_write(queue, image, blocking, origin, region, ptr, &shape, &cmd);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

/* Posts a ClImageCopy of kind, with the image origins given (NULL for a
 * buffer side). */
static cl_int rgpu_cl_image_copy(cl_command_queue queue, Rgpu__ClImageCopyKind kind, cl_mem src, cl_mem dst,
                                 const size_t *src_origin, const size_t *dst_origin, const size_t *region,
                                 size_t offset, rgpu_cl_cmd_t *cmd)
{
    Rgpu__ClImageCopy req = RGPU__CL_IMAGE_COPY__INIT;
    uint64_t so[3], dso[3], r[3];

    for (int i = 0; i < 3; i++) {
        so[i] = src_origin ? src_origin[i] : 0;
        dso[i] = dst_origin ? dst_origin[i] : 0;
        r[i] = region[i];
    }
    req.queue = queue->obj.id;
    req.kind = kind;
    req.src = src->obj.id;
    req.dst = dst->obj.id;
    req.n_src_origin = src_origin ? 3 : 0;
    req.src_origin = so;
    req.n_dst_origin = dst_origin ? 3 : 0;
    req.dst_origin = dso;
    req.n_region = 3;
    req.region = r;
    req.offset = offset;
    req.event = rgpu_cl_cmd_event_id(cmd);
    req.n_wait = cmd->num_wait;
    req.wait = cmd->wait;
    return rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_COPY_IMAGE, &req.base, NULL, 0);
}

cl_int CL_API_CALL rgpu_clEnqueueCopyImage(cl_command_queue queue, cl_mem src, cl_mem dst, const size_t *src_origin,
                                           const size_t *dst_origin, const size_t *region, cl_uint num_wait,
                                           const cl_event *wait_list, cl_event *event)
{
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_COPY_IMAGE, &cmd);
    if (err != CL_SUCCESS)
        return err;
    if ((err = rgpu_cl_check_image(queue, src)) != CL_SUCCESS || (err = rgpu_cl_check_image(queue, dst)) != CL_SUCCESS ||
        (err = rgpu_cl_image_region(src, src_origin, region)) != CL_SUCCESS ||
        (err = rgpu_cl_image_region(dst, dst_origin, region)) != CL_SUCCESS)
        goto out;
    if (src->format.image_channel_order != dst->format.image_channel_order ||
        src->format.image_channel_data_type != dst->format.image_channel_data_type) {
        err = CL_IMAGE_FORMAT_MISMATCH;
        goto out;
    }
    if (src == dst) {
        int overlap = 1;
        for (int i = 0; i < 3; i++)
            overlap &= src_origin[i] < dst_origin[i] + region[i] && dst_origin[i] < src_origin[i] + region[i];
        if (overlap) {
            err = CL_MEM_COPY_OVERLAP;
            goto out;
        }
    }
    err = rgpu_cl_image_copy(queue, RGPU__CL_IMAGE_COPY_KIND__CL_COPY_IMAGE, src, dst, src_origin, dst_origin,
                             region, 0, &cmd);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

cl_int CL_API_CALL rgpu_clEnqueueCopyImageToBuffer(cl_command_queue queue, cl_mem src, cl_mem dst,
                                                   const size_t *src_origin, const size_t *region, size_t offset,
                                                   cl_uint num_wait, const cl_event *wait_list, cl_event *event)
{
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_COPY_IMAGE_TO_BUFFER, &cmd);
    if (err != CL_SUCCESS)
        return err;
    if ((err = rgpu_cl_check_image(queue, src)) != CL_SUCCESS ||
        (err = rgpu_cl_image_region(src, src_origin, region)) != CL_SUCCESS ||
        (err = rgpu_cl_check_mem(queue, dst, offset, src->elem * region[0] * region[1] * region[2])) != CL_SUCCESS)
        goto out;
    err = rgpu_cl_image_copy(queue, RGPU__CL_IMAGE_COPY_KIND__CL_COPY_IMAGE_TO_BUFFER, src, dst, src_origin, NULL,
                             region, offset, &cmd);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

cl_int CL_API_CALL rgpu_clEnqueueCopyBufferToImage(cl_command_queue queue, cl_mem src, cl_mem dst, size_t offset,
                                                   const size_t *dst_origin, const size_t *region, cl_uint num_wait,
                                                   const cl_event *wait_list, cl_event *event)
{
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_COPY_BUFFER_TO_IMAGE, &cmd);
    if (err != CL_SUCCESS)
        return err;
    if ((err = rgpu_cl_check_image(queue, dst)) != CL_SUCCESS ||
        (err = rgpu_cl_image_region(dst, dst_origin, region)) != CL_SUCCESS ||
        (err = rgpu_cl_check_mem(queue, src, offset, dst->elem * region[0] * region[1] * region[2])) != CL_SUCCESS)
        goto out;
    err = rgpu_cl_image_copy(queue, RGPU__CL_IMAGE_COPY_KIND__CL_COPY_BUFFER_TO_IMAGE, src, dst, NULL, dst_origin,
                             region, offset, &cmd);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

cl_int CL_API_CALL rgpu_clEnqueueFillImage(cl_command_queue queue, cl_mem image, const void *color,
                                           const size_t *origin, const size_t *region, cl_uint num_wait,
                                           const cl_event *wait_list, cl_event *event)
{
    Rgpu__ClFillImage req = RGPU__CL_FILL_IMAGE__INIT;
    uint64_t o[3], r[3];
    rgpu_cl_cmd_t cmd;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_FILL_IMAGE, &cmd);
    if (err != CL_SUCCESS)
        return err;
    if ((err = rgpu_cl_check_image(queue, image)) != CL_SUCCESS ||
        (err = rgpu_cl_image_region(image, origin, region)) != CL_SUCCESS)
        goto out;
    if (!color) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    for (int i = 0; i < 3; i++) {
        o[i] = origin[i];
        r[i] = region[i];
    }
    /* A float4, int4 or uint4, whatever the format: always 16 bytes. */
    req.queue = queue->obj.id;
    req.image = image->obj.id;
    req.color.data = (uint8_t *)color;
    req.color.len = 16;
    req.n_origin = req.n_region = 3;
    req.origin = o;
    req.region = r;
    req.event = rgpu_cl_cmd_event_id(&cmd);
    req.n_wait = cmd.num_wait;
    req.wait = cmd.wait;
    err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_FILL_IMAGE, &req.base, NULL, 0);
out:
    return rgpu_cl_cmd_end(&cmd, err, event);
}

/* A map reads the region into host memory (the application's own for
 * USE_HOST_PTR images, at its pitches; else a packed area allocated here);
 * the unmap writes it back when it was mapped for writing. */
void *CL_API_CALL rgpu_clEnqueueMapImage(cl_command_queue queue, cl_mem image, cl_bool blocking, cl_map_flags flags,
                                         const size_t *origin, const size_t *region, size_t *row_pitch_p,
                                         size_t *slice_pitch_p, cl_uint num_wait, const cl_event *wait_list,
                                         cl_event *event, cl_int *errcode_ret)
{
    rgpu_cl_mapping_t *map = NULL;
    rgpu_cl_image_shape_t shape;
    rgpu_cl_cmd_t cmd;
    void *ptr = NULL;
    size_t size;
    cl_int err;

    err = rgpu_cl_cmd_begin(queue, num_wait, wait_list, event, CL_COMMAND_MAP_IMAGE, &cmd);
    if (err != CL_SUCCESS)
        goto out_ret;
    if ((err = rgpu_cl_check_image(queue, image)) != CL_SUCCESS ||
        (err = rgpu_cl_image_region(image, origin, region)) != CL_SUCCESS)
        goto out;
    if (!row_pitch_p || (!slice_pitch_p && (image->image_type == CL_MEM_OBJECT_IMAGE3D ||
                                            image->image_type == CL_MEM_OBJECT_IMAGE1D_ARRAY ||
                                            image->image_type == CL_MEM_OBJECT_IMAGE2D_ARRAY)) ||
        (flags & ~(cl_map_flags)(CL_MAP_READ | CL_MAP_WRITE | CL_MAP_WRITE_INVALIDATE_REGION)) ||
        ((flags & CL_MAP_WRITE_INVALIDATE_REGION) && (flags & (CL_MAP_READ | CL_MAP_WRITE)))) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    map = calloc(1, sizeof(*map));
    if (!map) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out;
    }
    map->image = 1;
    memcpy(map->origin, origin, sizeof(map->origin));
    memcpy(map->region, region, sizeof(map->region));
    if (image->host_ptr) {
        size_t y = image->image_type == CL_MEM_OBJECT_IMAGE1D_ARRAY ? 0 : origin[1];
        size_t z = image->image_type == CL_MEM_OBJECT_IMAGE1D_ARRAY ? origin[1] : origin[2];
        rgpu__cl_image_shape(image, region, image->row_pitch, image->slice_pitch, &shape);
        ptr = (char *)image->host_ptr + z * shape.slice_pitch + y * shape.row_pitch + origin[0] * image->elem;
    } else {
        rgpu__cl_image_shape(image, region, 0, 0, &shape);
        size = shape.row_bytes * shape.rows * shape.slices;
        pthread_mutex_lock(&image->lock);
        if (image->map_spare && image->map_spare_size == size) {
            ptr = image->map_spare;
            image->map_spare = NULL;
        }
        pthread_mutex_unlock(&image->lock);
        if (!ptr && posix_memalign(&ptr, 4096, size) != 0) {
            ptr = NULL;
            err = CL_MAP_FAILURE;
            goto out;
        }
        map->owned = 1;
        map->size = size;
    }
    map->ptr = ptr;
    map->row_pitch = shape.row_pitch;
    map->slice_pitch = shape.slice_pitch;
    map->flags = flags ? flags : CL_MAP_READ | CL_MAP_WRITE;
    if (map->flags & CL_MAP_WRITE_INVALIDATE_REGION) {
        Rgpu__ClMarker marker = RGPU__CL_MARKER__INIT;
        marker.queue = queue->obj.id;
        marker.event = rgpu_cl_cmd_event_id(&cmd);
        marker.n_wait = cmd.num_wait;
        marker.wait = cmd.wait;
        err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_MARKER, &marker.base, NULL, 0);
        if (err == CL_SUCCESS && blocking)
            err = rgpu_clFinish(queue);
    } else {
        err = rgpu_cl_image_read(queue, image, blocking, origin, region, ptr, &shape, &cmd);
    }
    if (err != CL_SUCCESS)
        goto out;
    pthread_mutex_lock(&image->lock);
    map->next = image->maps;
    image->maps = map;
    image->map_count++;
    pthread_mutex_unlock(&image->lock);
    *row_pitch_p = shape.row_pitch;
    if (slice_pitch_p) {
        /* As OpenCL reports them: none for 1D and 2D images. */
        int has_slices = image->image_type == CL_MEM_OBJECT_IMAGE3D ||
                         image->image_type == CL_MEM_OBJECT_IMAGE1D_ARRAY ||
                         image->image_type == CL_MEM_OBJECT_IMAGE2D_ARRAY;
        *slice_pitch_p = has_slices ? shape.slice_pitch : 0;
    }
    map = NULL;
out:
    if (map) {
        if (map->owned)
            free(map->ptr);
        free(map);
        ptr = NULL;
    }
    err = rgpu_cl_cmd_end(&cmd, err, event);
    if (err != CL_SUCCESS)
        ptr = NULL;
out_ret:
    if (errcode_ret)
        *errcode_ret = err;
    return ptr;
}
