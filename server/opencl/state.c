/*
 * The OpenCL backend: per-session state (staging pools, the handle table, events and wait lists,
 * replies and asynchronous errors) and the callbacks the platform runs.
 * See backend_opencl.c for the whole picture, opencl_int.h for what is
 * shared between the files.
 */
#include "opencl_int.h"

/* ---- per-session state ---- */

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
void rgpu__cl_event_drop(rgpu_cl_session_t *s, cl_event ev)
{
    if (!ev)
        return;
    if (!rgpu__cl_may_block(s) || rgpu_cl_event_ended(ev)) {
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
cl_int rgpu__cl_on_complete(rgpu_cl_session_t *s, cl_event ev, void(CL_CALLBACK *fn)(cl_event, cl_int, void *),
                            void *arg)
{
    rgpu_cl_wait_job_t *job;
    pthread_attr_t attr;
    int err;

    if (!rgpu__cl_may_block(s))
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
int rgpu__cl_may_block(const rgpu_cl_session_t *s)
{
    return s->user_pending > 0 || s->user_failed;
}

void *rgpu__cl_read_staging_get(rgpu_cl_session_t *s, uint64_t size)
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
    while (s->staging_bytes && size > RGPU_CL_STAGING_MAX - s->staging_bytes && !rgpu__cl_may_block(s))
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

void rgpu__cl_read_staging_put(rgpu_cl_session_t *s, void *buf, uint64_t size)
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

void *rgpu__cl_pool_get(rgpu_cl_session_t *s)
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

rgpu_cl_handle_t *rgpu__cl_get(rgpu_cl_session_t *s, uint64_t id, Rgpu__ClObjectKind kind)
{
    rgpu_cl_handle_t *h = rgpu_htable_find(&s->handles, id);

    return h && h->kind == kind ? h : NULL;
}

/* A buffer or sub-buffer of the session (never an image: buffer commands
 * on an image would treat its storage as bytes the platform lays out). */
rgpu_cl_handle_t *rgpu__cl_get_buffer(rgpu_cl_session_t *s, uint64_t id)
{
    rgpu_cl_handle_t *h = rgpu__cl_get(s, id, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM);

    return h && !h->image_type ? h : NULL;
}

/* An image of the session. */
rgpu_cl_handle_t *rgpu__cl_get_image(rgpu_cl_session_t *s, uint64_t id)
{
    rgpu_cl_handle_t *h = rgpu__cl_get(s, id, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM);

    return h && h->image_type ? h : NULL;
}

cl_int rgpu__cl_kind_error(Rgpu__ClObjectKind kind)
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
cl_int rgpu__cl_put(rgpu_cl_session_t *s, uint64_t id, Rgpu__ClObjectKind kind, void *obj,
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

void rgpu__cl_release_handle(rgpu_cl_handle_t *h)
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
    rgpu__cl_release_handle(h);
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
void rgpu__cl_drop(rgpu_cl_session_t *s, rgpu_cl_handle_t *h)
{
    h->released = 1;
    if (h->holds == 0)
        rgpu_cl_final(s, h);
}

/* Kernel k's argument i now refers to obj (NULL: none). */
void rgpu__cl_hold_arg(rgpu_cl_session_t *s, rgpu_cl_handle_t *k, cl_uint i, rgpu_cl_handle_t *obj)
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

rgpu_status_t rgpu__cl_async_error(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, cl_int err,
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

rgpu_status_t rgpu__cl_reply_status(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, cl_int err)
{
    Rgpu__ClStatusReply reply = RGPU__CL_STATUS_REPLY__INIT;

    reply.cl_error = err;
    return rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_STATUS_REPLY, hdr->seq, &reply.base, NULL, 0);
}

/* ---- events and wait lists ---- */

/* Registers the event an enqueue produced under the client's id; with no
 * id the event is not wanted and released. */
void rgpu__cl_event_keep(rgpu_cl_session_t *s, uint64_t id, cl_event ev, cl_context context)
{
    rgpu_cl_handle_t *h;

    if (!ev)
        return;
    if (!id || rgpu__cl_put(s, id, RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT, ev, &h) != CL_SUCCESS) {
        rgpu__cl_event_drop(s, ev);
        return;
    }
    h->context = context;
}

/* The event of a failed enqueue: a user event already set to the error. */
void rgpu__cl_event_failed(rgpu_cl_session_t *s, uint64_t id, cl_context context, cl_int err)
{
    cl_event ev;

    if (!id || !context)
        return;
    ev = clCreateUserEvent(context, NULL);
    if (!ev)
        return;
    clSetUserEventStatus(ev, err < 0 ? err : CL_INVALID_OPERATION);
    rgpu__cl_event_keep(s, id, ev, context);
}

cl_int rgpu__cl_wait_list(rgpu_cl_session_t *s, size_t n, const uint64_t *ids, cl_event **list_p)
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
        rgpu_cl_handle_t *h = rgpu__cl_get(s, ids[i], RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT);
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

cl_int rgpu__cl_cmd_begin(rgpu_cl_session_t *s, uint64_t queue, size_t n_wait, const uint64_t *wait,
                          rgpu_cl_cmd_t *cmd)
{
    memset(cmd, 0, sizeof(*cmd));
    cmd->queue = rgpu__cl_get(s, queue, RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE);
    if (!cmd->queue)
        return CL_INVALID_COMMAND_QUEUE;
    cmd->num_wait = (cl_uint)n_wait;
    cmd->may_block = rgpu__cl_may_block(s);
    return rgpu__cl_wait_list(s, n_wait, wait, &cmd->wait);
}

/* Finishes an asynchronous enqueue: keeps its event or reports its error. */
rgpu_status_t rgpu__cl_cmd_end(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, rgpu_cl_cmd_t *cmd,
                               uint64_t event_id, cl_int err)
{
    cl_context context = cmd->queue ? cmd->queue->context : NULL;

    free(cmd->wait);
    if (err == CL_SUCCESS) {
        rgpu__cl_event_keep(s, event_id, cmd->ev, context);
        return RGPU_OK;
    }
    rgpu__cl_event_drop(s, cmd->ev);
    rgpu__cl_event_failed(s, event_id, context, err);
    return rgpu__cl_async_error(s, hdr, err, NULL);
}

/* Where an enqueue puts its event: always somewhere when it waits on
 * others. PoCL 3.1 aborts the whole server (pocl_update_event_failed) when
 * a user event fails under a command that has no event of its own. */
cl_event *rgpu__cl_ev_out(rgpu_cl_cmd_t *cmd, uint64_t event_id)
{
    /* In an in-order queue a command also waits, implicitly, on the one
     * before it, which may wait on a user event. */
    return event_id || cmd->num_wait || cmd->may_block ? &cmd->ev : NULL;
}

/* ---- callbacks (run on the platform's threads) ---- */

void CL_CALLBACK rgpu__cl_free_cb(cl_event ev, cl_int status, void *arg)
{
    free(arg);
}

void CL_CALLBACK rgpu__cl_chunk_cb(cl_event ev, cl_int status, void *arg)
{
    rgpu_cl_chunk_cb_t *cb = arg;
    rgpu_session_t *session = cb->s->session;

    rgpu_cl_pool_put(cb->s, cb->buf);
    free(cb);
    rgpu_session_unref(session);
}

void CL_CALLBACK rgpu__cl_notify_cb(cl_event ev, cl_int status, void *arg)
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

    rgpu__cl_read_staging_put(cb->s, cb->staging, cb->size);
    free(cb);
    rgpu_session_unref(session);
}

/* A non-blocking read completed: its reply leaves with the data. */
void CL_CALLBACK rgpu__cl_read_cb(cl_event ev, cl_int status, void *arg)
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
