/*
 * Events. Every event names an event on the server (the id travels with the
 * enqueue that creates it). Status and profiling come from the server; an
 * event that completes a non-blocking read is complete only once the read's
 * data has landed here too.
 *
 * Event callbacks: the server sends MSG_EVENT_NOTIFY when a registered
 * callback's status is reached. The reader thread hands them to one callback
 * thread, so a callback may call back into OpenCL (even a call that waits for
 * the server) without blocking the reader.
 */
#include <stdlib.h>
#include <string.h>

#include "icd.h"

typedef struct rgpu_cl_callback {
    uint64_t id;
    cl_event event;
    cl_int exec_type;
    cl_int status;                      /* filled when it fires */
    void(CL_CALLBACK *fn)(cl_event, cl_int, void *);
    void *data;
    struct rgpu_cl_callback *next;
} rgpu_cl_callback_t;

static pthread_mutex_t rgpu_cl_cb_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rgpu_cl_cb_cond = PTHREAD_COND_INITIALIZER;
static rgpu_cl_callback_t *rgpu_cl_cb_registered;   /* waiting for their notification */
static rgpu_cl_callback_t *rgpu_cl_cb_ready_head;    /* notified, to run */
static rgpu_cl_callback_t *rgpu_cl_cb_ready_tail;
static uint64_t rgpu_cl_cb_next_id = 1;
static int rgpu_cl_cb_thread_started;

/* ---- reads in flight ---- */

void rgpu__cl_read_put(rgpu_cl_read_t *read)
{
    if (read && atomic_fetch_sub(&read->refs, 1) == 1) {
        rgpu_call_cleanup(&read->call);
        free(read);
    }
}

/* Waits for a read's data; returns the read's own result. */
static cl_int rgpu_cl_read_wait(rgpu_cl_server_t *server, rgpu_cl_read_t *read)
{
    Rgpu__ClReadReply *reply;
    cl_int err;

    if (!read)
        return CL_SUCCESS;
    if (rgpu_conn_call_wait(server->conn, &read->call) != RGPU_OK)
        return RGPU_CL_LINK_ERROR;
    if (read->call.reply_type != RGPU__MSG_TYPE__MSG_CL_READ_REPLY ||
        !(reply = rgpu__cl_read_reply__unpack(NULL, read->call.body_len, read->call.body)))
        return RGPU_CL_LINK_ERROR;
    err = reply->cl_error;
    rgpu__cl_read_reply__free_unpacked(reply, NULL);
    /* A successful read brings all it asked for. */
    if (err == CL_SUCCESS && read->call.bulk_len != read->call.bulk_cap)
        err = RGPU_CL_LINK_ERROR;
    return err;
}

cl_int rgpu__cl_queue_drain_reads(cl_command_queue queue)
{
    rgpu_cl_read_t *reads;
    cl_int first = CL_SUCCESS;

    pthread_mutex_lock(&queue->lock);
    reads = queue->reads;
    queue->reads = NULL;
    pthread_mutex_unlock(&queue->lock);
    while (reads) {
        rgpu_cl_read_t *next = reads->next;
        cl_int err = rgpu_cl_read_wait(queue->obj.server, reads);
        if (first == CL_SUCCESS)
            first = err;
        rgpu__cl_read_put(reads);
        reads = next;
    }
    return first;
}

/* ---- event objects ---- */

cl_event rgpu__cl_event_new(cl_command_queue queue, cl_command_type type, cl_event *out)
{
    cl_event event;

    if (!out)
        return NULL;
    event = calloc(1, sizeof(*event));
    if (!event)
        return NULL;
    rgpu__cl_obj_init(&event->obj, RGPU_CL_MAGIC_EVENT, queue->obj.server);
    event->context = queue->context;
    event->queue = queue;
    event->type = type;
    atomic_fetch_add(&queue->obj.refs, 1);
    rgpu__cl_context_retain(queue->context);
    return event;
}

static void rgpu_cl_event_free(cl_event event)
{
    cl_command_queue queue = event->queue;
    cl_context context = event->context;

    rgpu__cl_read_put(event->read);
    event->obj.magic = RGPU_CL_MAGIC_DEAD;
    free(event);
    if (queue)
        rgpu_clReleaseCommandQueue(queue);
    rgpu__cl_context_release(context);
}

void rgpu__cl_event_drop(cl_event event)
{
    if (event)
        rgpu_cl_event_free(event);
}

cl_int rgpu__cl_wait_list(cl_command_queue queue, cl_uint num, const cl_event *list, uint64_t **ids_p)
{
    uint64_t *ids;

    *ids_p = NULL;
    if ((num == 0) != (list == NULL))
        return CL_INVALID_EVENT_WAIT_LIST;
    if (num == 0)
        return CL_SUCCESS;
    ids = malloc(num * sizeof(*ids));
    if (!ids)
        return CL_OUT_OF_HOST_MEMORY;
    for (cl_uint i = 0; i < num; i++) {
        if (!RGPU_CL_VALID(list[i], EVENT) || list[i]->obj.server != queue->obj.server) {
            free(ids);
            return CL_INVALID_EVENT_WAIT_LIST;
        }
        if (list[i]->context != queue->context) {
            free(ids);
            return CL_INVALID_CONTEXT;
        }
        ids[i] = list[i]->obj.id;
    }
    *ids_p = ids;
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clRetainEvent(cl_event event)
{
    if (!RGPU_CL_VALID(event, EVENT))
        return CL_INVALID_EVENT;
    atomic_fetch_add(&event->obj.refs, 1);
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clReleaseEvent(cl_event event)
{
    if (!RGPU_CL_VALID(event, EVENT))
        return CL_INVALID_EVENT;
    if (atomic_fetch_sub(&event->obj.refs, 1) != 1)
        return CL_SUCCESS;
    rgpu__cl_remote_release(event->obj.server, RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT, event->obj.id);
    rgpu_cl_event_free(event);
    return CL_SUCCESS;
}

cl_event CL_API_CALL rgpu_clCreateUserEvent(cl_context context, cl_int *errcode_ret)
{
    Rgpu__ClCreateUserEvent req = RGPU__CL_CREATE_USER_EVENT__INIT;
    cl_event event = NULL;
    cl_int err;

    if (!RGPU_CL_VALID(context, CONTEXT)) {
        err = CL_INVALID_CONTEXT;
        goto out;
    }
    event = calloc(1, sizeof(*event));
    if (!event) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out;
    }
    rgpu__cl_obj_init(&event->obj, RGPU_CL_MAGIC_EVENT, context->obj.server);
    event->context = context;
    event->type = CL_COMMAND_USER;
    req.id = event->obj.id;
    req.context = context->obj.id;
    err = rgpu__cl_post(event->obj.server, RGPU__MSG_TYPE__MSG_CL_CREATE_USER_EVENT, &req.base, NULL, 0);
    if (err != CL_SUCCESS) {
        free(event);
        event = NULL;
        goto out;
    }
    rgpu__cl_context_retain(context);
out:
    if (errcode_ret)
        *errcode_ret = err;
    return event;
}

cl_int CL_API_CALL rgpu_clSetUserEventStatus(cl_event event, cl_int status)
{
    Rgpu__ClSetUserEventStatus req = RGPU__CL_SET_USER_EVENT_STATUS__INIT;
    cl_int err;

    if (!RGPU_CL_VALID(event, EVENT) || event->type != CL_COMMAND_USER)
        return CL_INVALID_EVENT;
    if (status > 0)
        return CL_INVALID_VALUE;
    /* The status of a user event can be set once. */
    if (atomic_flag_test_and_set(&event->user_status_set))
        return CL_INVALID_OPERATION;
    req.event = event->obj.id;
    req.status = status;
    err = rgpu__cl_post(event->obj.server, RGPU__MSG_TYPE__MSG_CL_SET_USER_EVENT_STATUS, &req.base, NULL, 0);
    /* Commands waiting on it are already on the server: let them go now. */
    if (err == CL_SUCCESS && rgpu_conn_flush(event->obj.server->conn) != RGPU_OK)
        err = RGPU_CL_LINK_ERROR;
    return err;
}

cl_int CL_API_CALL rgpu_clWaitForEvents(cl_uint num, const cl_event *events)
{
    Rgpu__ClWaitEvents req = RGPU__CL_WAIT_EVENTS__INIT;
    uint64_t *ids;
    cl_int err, deferred;
    rgpu_cl_server_t *server;

    if (num == 0 || !events)
        return CL_INVALID_VALUE;
    for (cl_uint i = 0; i < num; i++) {
        if (!RGPU_CL_VALID(events[i], EVENT))
            return CL_INVALID_EVENT;
        if (events[i]->context != events[0]->context)
            return CL_INVALID_CONTEXT;
    }
    server = events[0]->obj.server;
    ids = malloc(num * sizeof(*ids));
    if (!ids)
        return CL_OUT_OF_HOST_MEMORY;
    for (cl_uint i = 0; i < num; i++)
        ids[i] = events[i]->obj.id;
    req.n_events = num;
    req.events = ids;
    err = rgpu__cl_call_status(server, RGPU__MSG_TYPE__MSG_CL_WAIT_EVENTS, &req.base);
    free(ids);
    for (cl_uint i = 0; i < num; i++) {
        cl_int read_err = rgpu_cl_read_wait(server, events[i]->read);
        if (err == CL_SUCCESS && read_err != CL_SUCCESS)
            err = CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST;
    }
    deferred = rgpu_conn_take_deferred_error(server->conn);
    return err != CL_SUCCESS ? err : deferred;
}

static cl_int rgpu_cl_event_status(cl_event event, cl_int *status_p)
{
    cl_int err;

    if (event->read && !rgpu_conn_call_done(event->obj.server->conn, &event->read->call)) {
        *status_p = CL_RUNNING;
        return CL_SUCCESS;
    }
    err = rgpu__cl_remote_info(event->obj.server, RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT, event->obj.id,
                               RGPU__CL_INFO_WHICH__CL_INFO_OBJECT, CL_EVENT_COMMAND_EXECUTION_STATUS, 0,
                               sizeof(*status_p), status_p, NULL);
    return err;
}

cl_int CL_API_CALL rgpu_clGetEventInfo(cl_event event, cl_event_info param, size_t size, void *value,
                                       size_t *size_ret)
{
    if (!RGPU_CL_VALID(event, EVENT))
        return CL_INVALID_EVENT;
    switch (param) {
    case CL_EVENT_COMMAND_QUEUE:
        return rgpu__cl_info(&event->queue, sizeof(cl_command_queue), size, value, size_ret);
    case CL_EVENT_CONTEXT:
        return rgpu__cl_info(&event->context, sizeof(cl_context), size, value, size_ret);
    case CL_EVENT_COMMAND_TYPE:
        return rgpu__cl_info(&event->type, sizeof(event->type), size, value, size_ret);
    case CL_EVENT_REFERENCE_COUNT: {
        cl_uint refs = atomic_load(&event->obj.refs);
        return rgpu__cl_info(&refs, sizeof(refs), size, value, size_ret);
    }
    case CL_EVENT_COMMAND_EXECUTION_STATUS: {
        cl_int status = CL_QUEUED;
        cl_int err;
        if (value && size < sizeof(status))
            return CL_INVALID_VALUE;
        /* A status query must not hold back queued commands it may wait for. */
        rgpu_conn_flush(event->obj.server->conn);
        err = rgpu_cl_event_status(event, &status);
        if (err != CL_SUCCESS)
            return err;
        return rgpu__cl_info(&status, sizeof(status), size, value, size_ret);
    }
    default:
        return CL_INVALID_VALUE;
    }
}

cl_int CL_API_CALL rgpu_clGetEventProfilingInfo(cl_event event, cl_profiling_info param, size_t size,
                                                void *value, size_t *size_ret)
{
    if (!RGPU_CL_VALID(event, EVENT))
        return CL_INVALID_EVENT;
    if (!event->queue || !(event->queue->props & CL_QUEUE_PROFILING_ENABLE))
        return CL_PROFILING_INFO_NOT_AVAILABLE;
    if (param < CL_PROFILING_COMMAND_QUEUED || param > CL_PROFILING_COMMAND_COMPLETE)
        return CL_INVALID_VALUE;
    return rgpu__cl_remote_info(event->obj.server, RGPU__CL_OBJECT_KIND__CL_OBJ_EVENT, event->obj.id,
                                RGPU__CL_INFO_WHICH__CL_INFO_EVENT_PROFILING, param, 0, size, value, size_ret);
}

/* ---- callbacks ---- */

static void *rgpu_cl_callback_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&rgpu_cl_cb_lock);
    for (;;) {
        rgpu_cl_callback_t *cb;

        while (!rgpu_cl_cb_ready_head)
            pthread_cond_wait(&rgpu_cl_cb_cond, &rgpu_cl_cb_lock);
        cb = rgpu_cl_cb_ready_head;
        rgpu_cl_cb_ready_head = cb->next;
        if (!rgpu_cl_cb_ready_head)
            rgpu_cl_cb_ready_tail = NULL;
        pthread_mutex_unlock(&rgpu_cl_cb_lock);
        /* Data of a read must be here before its callback says complete. */
        if (cb->status == CL_COMPLETE)
            rgpu_cl_read_wait(cb->event->obj.server, cb->event->read);
        cb->fn(cb->event, cb->status, cb->data);
        rgpu_clReleaseEvent(cb->event);
        free(cb);
        pthread_mutex_lock(&rgpu_cl_cb_lock);
    }
    return NULL;
}

static void rgpu_cl_callback_ready_locked(rgpu_cl_callback_t *cb)
{
    cb->next = NULL;
    if (rgpu_cl_cb_ready_tail)
        rgpu_cl_cb_ready_tail->next = cb;
    else
        rgpu_cl_cb_ready_head = cb;
    rgpu_cl_cb_ready_tail = cb;
    pthread_cond_signal(&rgpu_cl_cb_cond);
}

/* Runs on a connection's reader thread. */
void rgpu__cl_notify(void *arg, uint16_t type, const uint8_t *body, size_t len)
{
    rgpu_cl_server_t *server = arg;
    Rgpu__EventNotify *note;
    rgpu_cl_callback_t **pp, *cb = NULL;

    if (type != RGPU__MSG_TYPE__MSG_EVENT_NOTIFY) {
        rgpu_warn("opencl", "server %s sent unexpected notification type %u", server->addr, type);
        return;
    }
    note = rgpu__event_notify__unpack(NULL, len, body);
    if (!note)
        return;
    pthread_mutex_lock(&rgpu_cl_cb_lock);
    for (pp = &rgpu_cl_cb_registered; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == note->callback_id) {
            cb = *pp;
            *pp = cb->next;
            break;
        }
    }
    if (cb) {
        /* An error status is passed on as is; otherwise the status asked for. */
        cb->status = note->status < 0 ? note->status : cb->exec_type;
        rgpu_cl_callback_ready_locked(cb);
    }
    pthread_mutex_unlock(&rgpu_cl_cb_lock);
    rgpu__event_notify__free_unpacked(note, NULL);
}

cl_int CL_API_CALL rgpu_clSetEventCallback(cl_event event, cl_int exec_type,
                                           void(CL_CALLBACK *fn)(cl_event, cl_int, void *), void *data)
{
    Rgpu__ClSetEventCallback req = RGPU__CL_SET_EVENT_CALLBACK__INIT;
    rgpu_cl_callback_t *cb;
    cl_int err;

    if (!RGPU_CL_VALID(event, EVENT))
        return CL_INVALID_EVENT;
    if (!fn || (exec_type != CL_COMPLETE && exec_type != CL_RUNNING && exec_type != CL_SUBMITTED))
        return CL_INVALID_VALUE;
    cb = calloc(1, sizeof(*cb));
    if (!cb)
        return CL_OUT_OF_HOST_MEMORY;
    cb->event = event;
    cb->exec_type = exec_type;
    cb->fn = fn;
    cb->data = data;
    atomic_fetch_add(&event->obj.refs, 1);   /* the event lives until its callback ran */
    pthread_mutex_lock(&rgpu_cl_cb_lock);
    if (!rgpu_cl_cb_thread_started) {
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&thread, &attr, rgpu_cl_callback_thread, NULL) == 0)
            rgpu_cl_cb_thread_started = 1;
        pthread_attr_destroy(&attr);
    }
    if (!rgpu_cl_cb_thread_started) {
        pthread_mutex_unlock(&rgpu_cl_cb_lock);
        atomic_fetch_sub(&event->obj.refs, 1);
        free(cb);
        return CL_OUT_OF_HOST_MEMORY;
    }
    cb->id = rgpu_cl_cb_next_id++;
    cb->next = rgpu_cl_cb_registered;
    rgpu_cl_cb_registered = cb;
    pthread_mutex_unlock(&rgpu_cl_cb_lock);

    req.event = event->obj.id;
    req.exec_type = exec_type;
    req.callback_id = cb->id;
    rgpu_conn_want_notifications(event->obj.server->conn);
    err = rgpu__cl_post(event->obj.server, RGPU__MSG_TYPE__MSG_CL_SET_EVENT_CALLBACK, &req.base, NULL, 0);
    if (err == CL_SUCCESS && rgpu_conn_flush(event->obj.server->conn) != RGPU_OK)
        err = RGPU_CL_LINK_ERROR;
    if (err != CL_SUCCESS) {
        pthread_mutex_lock(&rgpu_cl_cb_lock);
        for (rgpu_cl_callback_t **pp = &rgpu_cl_cb_registered; *pp; pp = &(*pp)->next) {
            if (*pp == cb) {
                *pp = cb->next;
                break;
            }
        }
        pthread_mutex_unlock(&rgpu_cl_cb_lock);
        atomic_fetch_sub(&event->obj.refs, 1);
        free(cb);
    }
    return err;
}
