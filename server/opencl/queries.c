/*
 * The OpenCL backend: clGetXxxInfo queries.
 * See backend_opencl.c for the whole picture, opencl_int.h for what is
 * shared between the files.
 */
#include "opencl_int.h"

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
    rgpu_cl_handle_t *h = rgpu__cl_get(s, m->id, m->kind);
    /* A device outside the session's lease is as unknown as a bad index. */
    cl_device_id dev = m->device < s->backend->num_devices &&
                               rgpu_session_device_allowed(s->session, m->device)
                           ? s->backend->devices[m->device]
                           : NULL;

    if (!h)
        return rgpu__cl_kind_error(m->kind);
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
    rgpu_cl_handle_t *h = rgpu__cl_get(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM);
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

/* clGetSupportedImageFormats: the context's formats for an image type and
 * flags, as an array of cl_image_format. */
static cl_int rgpu_cl_query_formats(rgpu_cl_session_t *s, Rgpu__ClGetInfo *m, uint8_t **value_p, size_t *len_p)
{
    rgpu_cl_handle_t *ctx = m->kind == RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT
                                ? rgpu__cl_get(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT)
                                : NULL;
    uint64_t dims[4];
    cl_mem_flags flags = 0;
    cl_image_format *formats;
    cl_uint n = 0;
    cl_int err;

    if (!ctx)
        return CL_INVALID_CONTEXT;
    if (m->extra.len != sizeof(uint64_t) || !rgpu__cl_image_dims(m->param, 1, 1, 1, 1, dims))
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

rgpu_status_t rgpu__cl_get_info(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClGetInfo *m)
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
