/* Contexts and command queues. */
#include <stdlib.h>
#include <string.h>

#include "icd.h"

static cl_int rgpu_cl_context_props(const cl_context_properties *props, cl_context context)
{
    size_t n = 0;

    if (!props)
        return CL_SUCCESS;
    while (props[n])
        n += 2;
    for (size_t i = 0; i < n; i += 2) {
        if (props[i] == CL_CONTEXT_PLATFORM) {
            cl_platform_id platform = (cl_platform_id)props[i + 1];
            cl_platform_id ours;
            rgpu_clGetPlatformIDs(1, &ours, NULL);
            if (platform != ours)
                return CL_INVALID_PLATFORM;
        } else if (props[i] != CL_CONTEXT_INTEROP_USER_SYNC) {
            return CL_INVALID_PROPERTY;
        }
    }
    context->props = malloc((n + 1) * sizeof(*props));
    if (!context->props)
        return CL_OUT_OF_HOST_MEMORY;
    memcpy(context->props, props, (n + 1) * sizeof(*props));
    context->num_props = n + 1;
    return CL_SUCCESS;
}

cl_context CL_API_CALL rgpu_clCreateContext(const cl_context_properties *props, cl_uint num_devices,
                                            const cl_device_id *devices,
                                            void(CL_CALLBACK *notify)(const char *, const void *, size_t, void *),
                                            void *user_data, cl_int *errcode_ret)
{
    Rgpu__ClCreateContext req = RGPU__CL_CREATE_CONTEXT__INIT;
    cl_context context = NULL;
    uint32_t *indices = NULL;
    cl_int err;

    if (num_devices == 0 || !devices || (!notify && user_data)) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    for (cl_uint i = 0; i < num_devices; i++) {
        if (!RGPU_CL_VALID(devices[i], DEVICE)) {
            err = CL_INVALID_DEVICE;
            goto out;
        }
        if (devices[i]->server != devices[0]->server) {
            rgpu_warn("opencl", "a context cannot hold devices of two rgpu servers (%s and %s): "
                      "create one context per server", devices[0]->server->addr, devices[i]->server->addr);
            err = CL_INVALID_DEVICE;
            goto out;
        }
    }
    if (rgpu_conn_health(devices[0]->server->conn, NULL) != RGPU_OK) {
        err = CL_DEVICE_NOT_AVAILABLE;
        goto out;
    }
    context = calloc(1, sizeof(*context));
    indices = calloc(num_devices, sizeof(*indices));
    if (!context || !indices) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out_free;
    }
    err = rgpu_cl_context_props(props, context);
    if (err != CL_SUCCESS)
        goto out_free;
    context->devices = malloc(num_devices * sizeof(cl_device_id));
    if (!context->devices) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out_free;
    }
    memcpy(context->devices, devices, num_devices * sizeof(cl_device_id));
    context->num_devices = num_devices;
    context->notify = notify;
    context->notify_data = user_data;
    rgpu__cl_obj_init(&context->obj, RGPU_CL_MAGIC_CONTEXT, devices[0]->server);
    for (cl_uint i = 0; i < num_devices; i++)
        indices[i] = devices[i]->index;
    req.id = context->obj.id;
    req.n_devices = num_devices;
    req.devices = indices;
    err = rgpu__cl_post(context->obj.server, RGPU__MSG_TYPE__MSG_CL_CREATE_CONTEXT, &req.base, NULL, 0);
    if (err != CL_SUCCESS) {
        err = err == RGPU_CL_LINK_ERROR ? CL_DEVICE_NOT_AVAILABLE : err;
        goto out_free;
    }
    free(indices);
    goto out;

out_free:
    if (context) {
        free(context->props);
        free(context->devices);
    }
    free(context);
    free(indices);
    context = NULL;
out:
    if (errcode_ret)
        *errcode_ret = err;
    return context;
}

cl_context CL_API_CALL rgpu_clCreateContextFromType(const cl_context_properties *props, cl_device_type type,
                                                    void(CL_CALLBACK *notify)(const char *, const void *, size_t, void *),
                                                    void *user_data, cl_int *errcode_ret)
{
    cl_uint num = 0, same = 0;
    cl_device_id *devices;
    cl_context context;
    cl_int err = rgpu_clGetDeviceIDs(NULL, type, 0, NULL, &num);

    if (err != CL_SUCCESS) {
        if (errcode_ret)
            *errcode_ret = err;
        return NULL;
    }
    devices = malloc(num * sizeof(*devices));
    if (!devices) {
        if (errcode_ret)
            *errcode_ret = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    rgpu_clGetDeviceIDs(NULL, type, num, devices, NULL);
    /* A context lives on one server: take the matching devices of the first. */
    for (cl_uint i = 0; i < num; i++) {
        if (devices[i]->server == devices[0]->server)
            devices[same++] = devices[i];
    }
    context = rgpu_clCreateContext(props, same, devices, notify, user_data, errcode_ret);
    free(devices);
    return context;
}

void rgpu__cl_context_retain(cl_context context)
{
    atomic_fetch_add(&context->obj.refs, 1);
}

void rgpu__cl_context_release(cl_context context)
{
    if (atomic_fetch_sub(&context->obj.refs, 1) != 1)
        return;
    rgpu__cl_remote_release(context->obj.server, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT, context->obj.id);
    rgpu__cl_formats_free(context);
    context->obj.magic = RGPU_CL_MAGIC_DEAD;
    free(context->props);
    free(context->devices);
    free(context);
}

cl_int CL_API_CALL rgpu_clRetainContext(cl_context context)
{
    if (!RGPU_CL_VALID(context, CONTEXT))
        return CL_INVALID_CONTEXT;
    rgpu__cl_context_retain(context);
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clReleaseContext(cl_context context)
{
    if (!RGPU_CL_VALID(context, CONTEXT))
        return CL_INVALID_CONTEXT;
    rgpu__cl_context_release(context);
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clGetContextInfo(cl_context context, cl_context_info param, size_t size, void *value,
                                         size_t *size_ret)
{
    if (!RGPU_CL_VALID(context, CONTEXT))
        return CL_INVALID_CONTEXT;
    switch (param) {
    case CL_CONTEXT_REFERENCE_COUNT: {
        cl_uint refs = atomic_load(&context->obj.refs);
        return rgpu__cl_info(&refs, sizeof(refs), size, value, size_ret);
    }
    case CL_CONTEXT_NUM_DEVICES:
        return rgpu__cl_info(&context->num_devices, sizeof(cl_uint), size, value, size_ret);
    case CL_CONTEXT_DEVICES:
        return rgpu__cl_info(context->devices, context->num_devices * sizeof(cl_device_id), size, value,
                             size_ret);
    case CL_CONTEXT_PROPERTIES:
        return rgpu__cl_info(context->props, context->num_props * sizeof(cl_context_properties), size,
                             value, size_ret);
    default:
        return CL_INVALID_VALUE;
    }
}

/* ---- command queues ---- */

static cl_command_queue rgpu_cl_queue_create(cl_context context, cl_device_id device,
                                             cl_command_queue_properties props, cl_int *errcode_ret)
{
    Rgpu__ClCreateQueue req = RGPU__CL_CREATE_QUEUE__INIT;
    cl_command_queue queue = NULL;
    cl_int err = CL_SUCCESS;
    int in_context = 0;

    if (!RGPU_CL_VALID(context, CONTEXT)) {
        err = CL_INVALID_CONTEXT;
        goto out;
    }
    for (cl_uint i = 0; i < context->num_devices; i++)
        in_context |= context->devices[i] == device;
    if (!in_context) {
        err = CL_INVALID_DEVICE;
        goto out;
    }
    if (props & ~(cl_command_queue_properties)(CL_QUEUE_OUT_OF_ORDER_EXEC_MODE_ENABLE |
                                                CL_QUEUE_PROFILING_ENABLE)) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    queue = calloc(1, sizeof(*queue));
    if (!queue) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out;
    }
    rgpu__cl_obj_init(&queue->obj, RGPU_CL_MAGIC_QUEUE, context->obj.server);
    queue->context = context;
    queue->device = device;
    queue->props = props;
    pthread_mutex_init(&queue->lock, NULL);
    req.id = queue->obj.id;
    req.context = context->obj.id;
    req.device = device->index;
    req.properties = props;
    err = rgpu__cl_post(queue->obj.server, RGPU__MSG_TYPE__MSG_CL_CREATE_QUEUE, &req.base, NULL, 0);
    if (err != CL_SUCCESS) {
        pthread_mutex_destroy(&queue->lock);
        free(queue);
        queue = NULL;
        err = err == RGPU_CL_LINK_ERROR ? CL_DEVICE_NOT_AVAILABLE : err;
        goto out;
    }
    rgpu__cl_context_retain(context);
out:
    if (errcode_ret)
        *errcode_ret = err;
    return queue;
}

cl_command_queue CL_API_CALL rgpu_clCreateCommandQueue(cl_context context, cl_device_id device,
                                                       cl_command_queue_properties props, cl_int *errcode_ret)
{
    return rgpu_cl_queue_create(context, device, props, errcode_ret);
}

cl_command_queue CL_API_CALL rgpu_clCreateCommandQueueWithProperties(cl_context context, cl_device_id device,
                                                                     const cl_queue_properties *props,
                                                                     cl_int *errcode_ret)
{
    cl_command_queue_properties flags = 0;

    for (size_t i = 0; props && props[i]; i += 2) {
        if (props[i] != CL_QUEUE_PROPERTIES) {
            if (errcode_ret)
                *errcode_ret = CL_INVALID_QUEUE_PROPERTIES;
            return NULL;
        }
        flags = (cl_command_queue_properties)props[i + 1];
    }
    return rgpu_cl_queue_create(context, device, flags, errcode_ret);
}

cl_int CL_API_CALL rgpu_clRetainCommandQueue(cl_command_queue queue)
{
    if (!RGPU_CL_VALID(queue, QUEUE))
        return CL_INVALID_COMMAND_QUEUE;
    atomic_fetch_add(&queue->obj.refs, 1);
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clReleaseCommandQueue(cl_command_queue queue)
{
    cl_context context;

    if (!RGPU_CL_VALID(queue, QUEUE))
        return CL_INVALID_COMMAND_QUEUE;
    if (atomic_fetch_sub(&queue->obj.refs, 1) != 1)
        return CL_SUCCESS;
    /* Releasing a queue implies a flush; its reads in flight must land
     * before their memory bookkeeping goes. */
    rgpu_clFlush(queue);
    rgpu__cl_queue_drain_reads(queue);
    rgpu__cl_remote_release(queue->obj.server, RGPU__CL_OBJECT_KIND__CL_OBJ_QUEUE, queue->obj.id);
    rgpu_conn_flush(queue->obj.server->conn);
    context = queue->context;
    queue->obj.magic = RGPU_CL_MAGIC_DEAD;
    pthread_mutex_destroy(&queue->lock);
    free(queue);
    rgpu__cl_context_release(context);
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clGetCommandQueueInfo(cl_command_queue queue, cl_command_queue_info param,
                                              size_t size, void *value, size_t *size_ret)
{
    if (!RGPU_CL_VALID(queue, QUEUE))
        return CL_INVALID_COMMAND_QUEUE;
    switch (param) {
    case CL_QUEUE_CONTEXT:
        return rgpu__cl_info(&queue->context, sizeof(cl_context), size, value, size_ret);
    case CL_QUEUE_DEVICE:
        return rgpu__cl_info(&queue->device, sizeof(cl_device_id), size, value, size_ret);
    case CL_QUEUE_REFERENCE_COUNT: {
        cl_uint refs = atomic_load(&queue->obj.refs);
        return rgpu__cl_info(&refs, sizeof(refs), size, value, size_ret);
    }
    case CL_QUEUE_PROPERTIES:
        return rgpu__cl_info(&queue->props, sizeof(queue->props), size, value, size_ret);
    default:
        return CL_INVALID_VALUE;
    }
}
