/*
 * Streams and events. Creating, recording and waiting on the device side
 * (cudaStreamWaitEvent) leave without waiting for the server; synchronizing
 * and querying wait for it, and also for the device-to-host copies whose
 * data is still on its way into the program's memory ("pending" copies:
 * cudaMemcpyAsync to the host returns before the data arrives, as on a
 * local GPU, and the next synchronization that covers it waits for it).
 *
 * The legacy default stream (NULL, cudaStreamLegacy) is the server's: stream
 * id 0 of each device. Per-thread default streams (cudaStreamPerThread, and
 * NULL in programs built with --default-stream per-thread) are ordinary
 * blocking streams this library creates per thread and device, because the
 * thread that runs them on the server is not the program's thread. A
 * blocking stream's work orders with the legacy stream's on the server, as
 * CUDA defines it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cudart.h"

static _Atomic uint64_t rgpu_cu_tickets = 1;
static pthread_mutex_t rgpu_cu_pending_lock = PTHREAD_MUTEX_INITIALIZER;
static rgpu_cu_pending_t *rgpu_cu_pending;

/* The calling thread's per-thread default streams, one per device. */
static pthread_key_t rgpu_cu_ptds_key;
static pthread_once_t rgpu_cu_ptds_once = PTHREAD_ONCE_INIT;

uint64_t rgpu__cu_ticket(void)
{
    return atomic_fetch_add(&rgpu_cu_tickets, 1);
}

/* ---- pending device-to-host copies ---- */

cudaError_t rgpu__cu_pending_start(rgpu_cu_device_t *d, uint64_t stream, int blocking, Rgpu__MsgType type,
                                   const ProtobufCMessage *msg, void *dst, uint64_t size)
{
    rgpu_cu_pending_t *p = calloc(1, sizeof(*p));

    if (!p)
        return cudaErrorMemoryAllocation;
    p->device = d;
    p->stream = stream;
    p->blocking = blocking;
    p->call.bulk_dst = dst;
    p->call.bulk_cap = size;
    p->ticket = rgpu__cu_ticket();
    if (rgpu_conn_call_start(d->server->conn, (uint16_t)type, msg, NULL, 0, &p->call) != RGPU_OK) {
        rgpu_call_cleanup(&p->call);
        free(p);
        return rgpu__cu_link_lost(d);
    }
    pthread_mutex_lock(&rgpu_cu_pending_lock);
    p->next = rgpu_cu_pending;
    rgpu_cu_pending = p;
    pthread_mutex_unlock(&rgpu_cu_pending_lock);
    return cudaSuccess;
}

static int rgpu_cu_pending_covered(const rgpu_cu_pending_t *p, rgpu_cu_device_t *d, uint64_t stream,
                                   int all_streams, uint64_t before)
{
    if (p->device != d || (before && p->ticket >= before))
        return 0;
    if (all_streams || p->stream == stream)
        return 1;
    /* The legacy stream waits for every blocking stream. */
    return stream == 0 && p->blocking;
}

/* The error a finished copy reports. */
static cudaError_t rgpu_cu_pending_result(rgpu_cu_pending_t *p)
{
    cudaError_t err = cudaSuccess;
    Rgpu__CuReadReply *reply;

    if (p->call.status != RGPU_OK)
        return cudaErrorDevicesUnavailable;
    if (p->call.reply_type != RGPU__MSG_TYPE__MSG_CU_READ_REPLY ||
        !(reply = rgpu__cu_read_reply__unpack(NULL, p->call.body_len, p->call.body)))
        return cudaErrorUnknown;
    err = rgpu__cu_from_cu(reply->cu_error);
    if (err == cudaSuccess && p->call.bulk_len != p->call.bulk_cap)
        err = cudaErrorUnknown;
    rgpu__cu_read_reply__free_unpacked(reply, NULL);
    return err;
}

cudaError_t rgpu__cu_pending_wait(rgpu_cu_device_t *d, uint64_t stream, int all_streams, uint64_t before)
{
    cudaError_t first = cudaSuccess;

    for (;;) {
        rgpu_cu_pending_t **pp, *p = NULL;
        cudaError_t err;

        /* Take one covered copy off the list, then wait for it unlocked. */
        pthread_mutex_lock(&rgpu_cu_pending_lock);
        for (pp = &rgpu_cu_pending; *pp; pp = &(*pp)->next) {
            if (rgpu_cu_pending_covered(*pp, d, stream, all_streams, before)) {
                p = *pp;
                *pp = p->next;
                break;
            }
        }
        pthread_mutex_unlock(&rgpu_cu_pending_lock);
        if (!p)
            return first;
        rgpu_conn_call_wait(d->server->conn, &p->call);
        err = rgpu_cu_pending_result(p);
        if (first == cudaSuccess)
            first = err;
        rgpu_call_cleanup(&p->call);
        free(p);
    }
}

int rgpu__cu_pending_done(rgpu_cu_device_t *d, uint64_t stream, uint64_t before)
{
    int done = 1;

    pthread_mutex_lock(&rgpu_cu_pending_lock);
    for (rgpu_cu_pending_t *p = rgpu_cu_pending; p && done; p = p->next) {
        if (rgpu_cu_pending_covered(p, d, stream, 0, before))
            done = rgpu_conn_call_done(d->server->conn, &p->call);
    }
    pthread_mutex_unlock(&rgpu_cu_pending_lock);
    return done;
}

/* ---- streams ---- */

static void rgpu_cu_ptds_free(void *arg)
{
    struct CUstream_st **streams = arg;

    for (int i = 0; i < RGPU_CU_MAX_DEVICES; i++) {
        if (streams[i]) {
            Rgpu__CuStreamDestroy req = RGPU__CU_STREAM_DESTROY__INIT;

            req.stream = streams[i]->id;
            rgpu__cu_post(&rgpu__cu.devices[i], RGPU__MSG_TYPE__MSG_CU_STREAM_DESTROY, &req.base, NULL, 0);
            free(streams[i]);
        }
    }
    free(streams);
}

static void rgpu_cu_ptds_init(void)
{
    pthread_key_create(&rgpu_cu_ptds_key, rgpu_cu_ptds_free);
}

static cudaError_t rgpu_cu_stream_new(rgpu_cu_device_t *d, int device, unsigned flags, int priority,
                                      struct CUstream_st **s_p)
{
    struct CUstream_st *s = calloc(1, sizeof(*s));
    Rgpu__CuStreamCreate req = RGPU__CU_STREAM_CREATE__INIT;
    cudaError_t err;

    if (!s)
        return cudaErrorMemoryAllocation;
    s->magic = RGPU_CU_MAGIC_STREAM;
    s->id = rgpu__cu_new_id();
    s->device = device;
    s->flags = flags;
    s->priority = priority;
    req.id = s->id;
    req.device = d->index;
    req.flags = flags;
    req.priority = priority;
    if ((err = rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_STREAM_CREATE, &req.base, NULL, 0)) != cudaSuccess) {
        free(s);
        return err;
    }
    *s_p = s;
    return cudaSuccess;
}

/* The calling thread's per-thread default stream on device. */
static cudaError_t rgpu_cu_ptds(rgpu_cu_device_t *d, int device, struct CUstream_st **s_p)
{
    struct CUstream_st **streams;
    cudaError_t err;

    pthread_once(&rgpu_cu_ptds_once, rgpu_cu_ptds_init);
    streams = pthread_getspecific(rgpu_cu_ptds_key);
    if (!streams) {
        if (!(streams = calloc(RGPU_CU_MAX_DEVICES, sizeof(*streams))))
            return cudaErrorMemoryAllocation;
        pthread_setspecific(rgpu_cu_ptds_key, streams);
    }
    if (!streams[device] && (err = rgpu_cu_stream_new(d, device, cudaStreamDefault, 0, &streams[device])) != cudaSuccess)
        return err;
    *s_p = streams[device];
    return cudaSuccess;
}

cudaError_t rgpu__cu_stream_resolve(cudaStream_t s, int per_thread, rgpu_cu_device_t **d_p, uint64_t *id_p,
                                    int *blocking_p)
{
    cudaError_t err;
    int dev = rgpu__cu_current();
    rgpu_cu_device_t *d;

    if (s == cudaStreamLegacy || (!s && !per_thread)) {
        if (!(d = rgpu__cu_device(dev, &err)))
            return err;
        *d_p = d;
        *id_p = 0;
        *blocking_p = 1;
        return cudaSuccess;
    }
    if (s == cudaStreamPerThread || !s) {
        struct CUstream_st *ptds;

        if (!(d = rgpu__cu_device(dev, &err)))
            return err;
        if ((err = rgpu_cu_ptds(d, dev, &ptds)) != cudaSuccess)
            return err;
        *d_p = d;
        *id_p = ptds->id;
        *blocking_p = 1;
        return cudaSuccess;
    }
    if (s->magic != RGPU_CU_MAGIC_STREAM)
        return cudaErrorInvalidResourceHandle;
    if (!(d = rgpu__cu_device(s->device, &err)))
        return err;
    *d_p = d;
    *id_p = s->id;
    *blocking_p = !(s->flags & cudaStreamNonBlocking);
    return cudaSuccess;
}

static cudaError_t rgpu_cu_stream_create(cudaStream_t *pStream, unsigned int flags, int priority)
{
    cudaError_t err;
    int dev = rgpu__cu_current();
    rgpu_cu_device_t *d;
    struct CUstream_st *s;

    if (!pStream || (flags & ~(unsigned)cudaStreamNonBlocking))
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if (!(d = rgpu__cu_device(dev, &err)))
        return rgpu__cu_fail(err);
    if ((err = rgpu_cu_stream_new(d, dev, flags, priority, &s)) != cudaSuccess)
        return rgpu__cu_fail(err);
    *pStream = s;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamCreate(cudaStream_t *pStream)
{
    return rgpu_cu_stream_create(pStream, cudaStreamDefault, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamCreateWithFlags(cudaStream_t *pStream, unsigned int flags)
{
    return rgpu_cu_stream_create(pStream, flags, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamCreateWithPriority(cudaStream_t *pStream, unsigned int flags, int priority)
{
    return rgpu_cu_stream_create(pStream, flags, priority);
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    Rgpu__CuStreamDestroy req = RGPU__CU_STREAM_DESTROY__INIT;
    cudaError_t err;
    rgpu_cu_device_t *d;

    if (!stream || stream == cudaStreamLegacy || stream == cudaStreamPerThread ||
        stream->magic != RGPU_CU_MAGIC_STREAM)
        return rgpu__cu_fail(cudaErrorInvalidResourceHandle);
    if (!(d = rgpu__cu_device(stream->device, &err)))
        return rgpu__cu_fail(err);
    req.stream = stream->id;
    err = rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_STREAM_DESTROY, &req.base, NULL, 0);
    /* The stream's pending copies still land; their errors are the next
     * device synchronization's. */
    stream->magic = 0;
    free(stream);
    return rgpu__cu_fail(err);
}

static cudaError_t rgpu_cu_stream_op(cudaStream_t stream, int per_thread, Rgpu__MsgType type)
{
    Rgpu__CuStreamOp req = RGPU__CU_STREAM_OP__INIT;
    Rgpu__CuStatusReply *reply;
    rgpu_call_t call = {0};
    rgpu_cu_device_t *d;
    uint64_t id;
    int blocking;
    cudaError_t err, pending = cudaSuccess;

    if ((err = rgpu__cu_stream_resolve(stream, per_thread, &d, &id, &blocking)) != cudaSuccess)
        return rgpu__cu_fail(err);
    req.device = d->index;
    req.stream = id;
    err = rgpu__cu_call(d, type, &req.base, NULL, 0, RGPU__MSG_TYPE__MSG_CU_STATUS_REPLY,
                        &rgpu__cu_status_reply__descriptor, &call, (ProtobufCMessage **)&reply);
    if (err != cudaSuccess)
        return rgpu__cu_fail(err);
    if (type == RGPU__MSG_TYPE__MSG_CU_STREAM_SYNC) {
        pending = rgpu__cu_pending_wait(d, id, 0, 0);
        err = rgpu__cu_sync_result(d, reply->cu_error);
    } else {
        err = rgpu__cu_from_cu(reply->cu_error);
        /* Done on the server, but is the data of its copies here yet? */
        if (err == cudaSuccess && !rgpu__cu_pending_done(d, id, 0))
            err = cudaErrorNotReady;
        if (err == cudaSuccess)
            pending = rgpu__cu_pending_wait(d, id, 0, 0);
    }
    rgpu__cu_status_reply__free_unpacked(reply, NULL);
    rgpu_call_cleanup(&call);
    if (err == cudaSuccess)
        err = pending;
    /* cudaErrorNotReady is an answer, not a failure: it is not recorded. */
    return err == cudaErrorNotReady ? err : rgpu__cu_fail(err);
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    return rgpu_cu_stream_op(stream, 0, RGPU__MSG_TYPE__MSG_CU_STREAM_SYNC);
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamSynchronize_ptsz(cudaStream_t stream)
{
    return rgpu_cu_stream_op(stream, 1, RGPU__MSG_TYPE__MSG_CU_STREAM_SYNC);
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamQuery(cudaStream_t stream)
{
    return rgpu_cu_stream_op(stream, 0, RGPU__MSG_TYPE__MSG_CU_STREAM_QUERY);
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamQuery_ptsz(cudaStream_t stream)
{
    return rgpu_cu_stream_op(stream, 1, RGPU__MSG_TYPE__MSG_CU_STREAM_QUERY);
}

static cudaError_t rgpu_cu_stream_wait_event(cudaStream_t stream, cudaEvent_t event, unsigned int flags,
                                             int per_thread)
{
    Rgpu__CuStreamWaitEvent req = RGPU__CU_STREAM_WAIT_EVENT__INIT;
    rgpu_cu_device_t *d;
    uint64_t id;
    int blocking;
    cudaError_t err;

    if (!event || event->magic != RGPU_CU_MAGIC_EVENT)
        return rgpu__cu_fail(cudaErrorInvalidResourceHandle);
    if ((err = rgpu__cu_stream_resolve(stream, per_thread, &d, &id, &blocking)) != cudaSuccess)
        return rgpu__cu_fail(err);
    if (&rgpu__cu.devices[event->device] != d) {
        static int told;

        /* Cross-device waits would need the two servers to talk. */
        return rgpu__cu_unsupported("cudaStreamWaitEvent across devices", &told);
    }
    req.device = d->index;
    req.stream = id;
    req.event = event->id;
    req.flags = flags;
    return rgpu__cu_fail(rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_STREAM_WAIT_EVENT, &req.base, NULL, 0));
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags)
{
    return rgpu_cu_stream_wait_event(stream, event, flags, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamWaitEvent_ptsz(cudaStream_t stream, cudaEvent_t event, unsigned int flags)
{
    return rgpu_cu_stream_wait_event(stream, event, flags, 1);
}

static cudaError_t rgpu_cu_stream_get_flags(cudaStream_t stream, unsigned int *flags, int per_thread)
{
    if (!flags)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if (!stream || stream == cudaStreamLegacy || stream == cudaStreamPerThread) {
        *flags = cudaStreamDefault;
        return cudaSuccess;
    }
    if (stream->magic != RGPU_CU_MAGIC_STREAM)
        return rgpu__cu_fail(cudaErrorInvalidResourceHandle);
    *flags = stream->flags;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamGetFlags(cudaStream_t hStream, unsigned int *flags)
{
    return rgpu_cu_stream_get_flags(hStream, flags, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamGetFlags_ptsz(cudaStream_t hStream, unsigned int *flags)
{
    return rgpu_cu_stream_get_flags(hStream, flags, 1);
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamGetPriority(cudaStream_t hStream, int *priority)
{
    if (!priority)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if (hStream && hStream != cudaStreamLegacy && hStream != cudaStreamPerThread &&
        hStream->magic != RGPU_CU_MAGIC_STREAM)
        return rgpu__cu_fail(cudaErrorInvalidResourceHandle);
    *priority = hStream && hStream != cudaStreamLegacy && hStream != cudaStreamPerThread ? hStream->priority : 0;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamGetDevice(cudaStream_t hStream, int *device)
{
    if (!device)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if (hStream && hStream != cudaStreamLegacy && hStream != cudaStreamPerThread) {
        if (hStream->magic != RGPU_CU_MAGIC_STREAM)
            return rgpu__cu_fail(cudaErrorInvalidResourceHandle);
        *device = hStream->device;
    } else {
        *device = rgpu__cu_current();
    }
    return cudaSuccess;
}

/* ---- events ---- */

RGPU_CUDA_EXPORT cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    const unsigned known = cudaEventBlockingSync | cudaEventDisableTiming | cudaEventInterprocess;
    Rgpu__CuEventCreate req = RGPU__CU_EVENT_CREATE__INIT;
    int dev = rgpu__cu_current();
    rgpu_cu_device_t *d;
    struct CUevent_st *e;
    cudaError_t err;

    if (!event || (flags & ~known) ||
        ((flags & cudaEventInterprocess) && !(flags & cudaEventDisableTiming)))
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if (flags & cudaEventInterprocess) {
        static int told;

        return rgpu__cu_unsupported("cudaEventCreateWithFlags(cudaEventInterprocess)", &told);
    }
    if (!(d = rgpu__cu_device(dev, &err)))
        return rgpu__cu_fail(err);
    if (!(e = calloc(1, sizeof(*e))))
        return rgpu__cu_fail(cudaErrorMemoryAllocation);
    e->magic = RGPU_CU_MAGIC_EVENT;
    e->id = rgpu__cu_new_id();
    e->device = dev;
    e->flags = flags;
    req.id = e->id;
    req.device = d->index;
    req.flags = flags;
    if ((err = rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_EVENT_CREATE, &req.base, NULL, 0)) != cudaSuccess) {
        free(e);
        return rgpu__cu_fail(err);
    }
    *event = e;
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaEventCreate(cudaEvent_t *event)
{
    return cudaEventCreateWithFlags(event, cudaEventDefault);
}

static cudaError_t rgpu_cu_event_record(cudaEvent_t event, cudaStream_t stream, unsigned int flags, int per_thread)
{
    Rgpu__CuEventRecord req = RGPU__CU_EVENT_RECORD__INIT;
    rgpu_cu_device_t *d;
    uint64_t id;
    int blocking;
    cudaError_t err;

    if (!event || event->magic != RGPU_CU_MAGIC_EVENT)
        return rgpu__cu_fail(cudaErrorInvalidResourceHandle);
    if ((err = rgpu__cu_stream_resolve(stream, per_thread, &d, &id, &blocking)) != cudaSuccess)
        return rgpu__cu_fail(err);
    if (&rgpu__cu.devices[event->device] != d)
        return rgpu__cu_fail(cudaErrorInvalidResourceHandle);
    req.event = event->id;
    req.device = d->index;
    req.stream = id;
    req.flags = flags;
    if ((err = rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_EVENT_RECORD, &req.base, NULL, 0)) != cudaSuccess)
        return rgpu__cu_fail(err);
    event->stream = id;
    event->ticket = rgpu__cu_ticket();
    return cudaSuccess;
}

RGPU_CUDA_EXPORT cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    return rgpu_cu_event_record(event, stream, 0, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaEventRecord_ptsz(cudaEvent_t event, cudaStream_t stream)
{
    return rgpu_cu_event_record(event, stream, 0, 1);
}

RGPU_CUDA_EXPORT cudaError_t cudaEventRecordWithFlags(cudaEvent_t event, cudaStream_t stream, unsigned int flags)
{
    return rgpu_cu_event_record(event, stream, flags, 0);
}

RGPU_CUDA_EXPORT cudaError_t cudaEventRecordWithFlags_ptsz(cudaEvent_t event, cudaStream_t stream,
                                                           unsigned int flags)
{
    return rgpu_cu_event_record(event, stream, flags, 1);
}

static cudaError_t rgpu_cu_event_op(cudaEvent_t event, Rgpu__MsgType type)
{
    Rgpu__CuEventOp req = RGPU__CU_EVENT_OP__INIT;
    Rgpu__CuStatusReply *reply;
    rgpu_call_t call = {0};
    rgpu_cu_device_t *d;
    cudaError_t err, pending = cudaSuccess;

    if (!event || event->magic != RGPU_CU_MAGIC_EVENT)
        return rgpu__cu_fail(cudaErrorInvalidResourceHandle);
    if (!(d = rgpu__cu_device(event->device, &err)))
        return rgpu__cu_fail(err);
    /* An event never recorded is complete, as in CUDA. */
    if (!event->ticket)
        return cudaSuccess;
    req.event = event->id;
    err = rgpu__cu_call(d, type, &req.base, NULL, 0, RGPU__MSG_TYPE__MSG_CU_STATUS_REPLY,
                        &rgpu__cu_status_reply__descriptor, &call, (ProtobufCMessage **)&reply);
    if (err != cudaSuccess)
        return rgpu__cu_fail(err);
    if (type == RGPU__MSG_TYPE__MSG_CU_EVENT_SYNC) {
        pending = rgpu__cu_pending_wait(d, event->stream, 0, event->ticket);
        err = rgpu__cu_sync_result(d, reply->cu_error);
    } else {
        err = rgpu__cu_from_cu(reply->cu_error);
        if (err == cudaSuccess && !rgpu__cu_pending_done(d, event->stream, event->ticket))
            err = cudaErrorNotReady;
        if (err == cudaSuccess)
            pending = rgpu__cu_pending_wait(d, event->stream, 0, event->ticket);
    }
    rgpu__cu_status_reply__free_unpacked(reply, NULL);
    rgpu_call_cleanup(&call);
    if (err == cudaSuccess)
        err = pending;
    return err == cudaErrorNotReady ? err : rgpu__cu_fail(err);
}

RGPU_CUDA_EXPORT cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    return rgpu_cu_event_op(event, RGPU__MSG_TYPE__MSG_CU_EVENT_SYNC);
}

RGPU_CUDA_EXPORT cudaError_t cudaEventQuery(cudaEvent_t event)
{
    return rgpu_cu_event_op(event, RGPU__MSG_TYPE__MSG_CU_EVENT_QUERY);
}

RGPU_CUDA_EXPORT cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    Rgpu__CuEventElapsed req = RGPU__CU_EVENT_ELAPSED__INIT;
    Rgpu__CuElapsedReply *reply;
    rgpu_call_t call = {0};
    rgpu_cu_device_t *d;
    cudaError_t err;

    if (!ms)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if (!start || !end || start->magic != RGPU_CU_MAGIC_EVENT || end->magic != RGPU_CU_MAGIC_EVENT ||
        start->device != end->device)
        return rgpu__cu_fail(cudaErrorInvalidResourceHandle);
    /* Answered here, as CUDA answers them: events without timing, and
     * events never recorded. */
    if ((start->flags | end->flags) & cudaEventDisableTiming || !start->ticket || !end->ticket)
        return rgpu__cu_fail(cudaErrorInvalidResourceHandle);
    if (!(d = rgpu__cu_device(start->device, &err)))
        return rgpu__cu_fail(err);
    req.start = start->id;
    req.end = end->id;
    err = rgpu__cu_call(d, RGPU__MSG_TYPE__MSG_CU_EVENT_ELAPSED, &req.base, NULL, 0,
                        RGPU__MSG_TYPE__MSG_CU_ELAPSED_REPLY, &rgpu__cu_elapsed_reply__descriptor, &call,
                        (ProtobufCMessage **)&reply);
    if (err != cudaSuccess)
        return rgpu__cu_fail(err);
    err = rgpu__cu_from_cu(reply->cu_error);
    if (err == cudaSuccess)
        *ms = reply->ms;
    rgpu__cu_elapsed_reply__free_unpacked(reply, NULL);
    rgpu_call_cleanup(&call);
    return err == cudaErrorNotReady ? err : rgpu__cu_fail(err);
}

RGPU_CUDA_EXPORT cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    Rgpu__CuEventOp req = RGPU__CU_EVENT_OP__INIT;
    rgpu_cu_device_t *d;
    cudaError_t err;

    if (!event || event->magic != RGPU_CU_MAGIC_EVENT)
        return rgpu__cu_fail(cudaErrorInvalidResourceHandle);
    if (!(d = rgpu__cu_device(event->device, &err)))
        return rgpu__cu_fail(err);
    req.event = event->id;
    err = rgpu__cu_post(d, RGPU__MSG_TYPE__MSG_CU_EVENT_DESTROY, &req.base, NULL, 0);
    event->magic = 0;
    free(event);
    return rgpu__cu_fail(err);
}

/* ---- host functions ---- */

/* A host function in a stream runs once the stream's earlier work is done,
 * and the stream's later work waits for it. Here it runs on the calling
 * thread, after synchronizing the stream: later work is queued only when it
 * returned. That keeps CUDA's order exactly (the function may make no CUDA
 * call, as CUDA requires), at the cost of the caller waiting instead of
 * queueing. */
static cudaError_t rgpu_cu_host_fn(cudaStream_t stream, int per_thread, cudaHostFn_t fn, cudaStreamCallback_t cb,
                                   void *data)
{
    cudaError_t err = rgpu_cu_stream_op(stream, per_thread, RGPU__MSG_TYPE__MSG_CU_STREAM_SYNC);

    if (cb) {
        /* A callback is told the stream's status and runs whatever it is. */
        cb(stream, err, data);
        return err == cudaErrorDevicesUnavailable ? err : cudaSuccess;
    }
    if (err == cudaSuccess)
        fn(data);
    return err;
}

RGPU_CUDA_EXPORT cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void *userData)
{
    if (!fn)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    return rgpu_cu_host_fn(stream, 0, fn, NULL, userData);
}

RGPU_CUDA_EXPORT cudaError_t cudaLaunchHostFunc_ptsz(cudaStream_t stream, cudaHostFn_t fn, void *userData)
{
    if (!fn)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    return rgpu_cu_host_fn(stream, 1, fn, NULL, userData);
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamAddCallback(cudaStream_t stream, cudaStreamCallback_t callback,
                                                   void *userData, unsigned int flags)
{
    if (!callback || flags)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    return rgpu_cu_host_fn(stream, 0, NULL, callback, userData);
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamAddCallback_ptsz(cudaStream_t stream, cudaStreamCallback_t callback,
                                                        void *userData, unsigned int flags)
{
    if (!callback || flags)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    return rgpu_cu_host_fn(stream, 1, NULL, callback, userData);
}

RGPU_CUDA_EXPORT cudaError_t cudaStreamGetId(cudaStream_t hStream, unsigned long long *streamId)
{
    rgpu_cu_device_t *d;
    uint64_t id;
    int blocking;
    cudaError_t err;

    if (!streamId)
        return rgpu__cu_fail(cudaErrorInvalidValue);
    if ((err = rgpu__cu_stream_resolve(hStream, 0, &d, &id, &blocking)) != cudaSuccess)
        return rgpu__cu_fail(err);
    *streamId = id;
    return cudaSuccess;
}
