/* Memory objects: buffers, sub-buffers and images, and the image formats
 * of contexts. */
#include <stdlib.h>
#include <string.h>

#include "icd.h"

rgpu_cl_live_t rgpu__cl_live_mems = RGPU_CL_LIVE_INITIALIZER;

#define RGPU_CL_MEM_ACCESS (CL_MEM_READ_WRITE | CL_MEM_WRITE_ONLY | CL_MEM_READ_ONLY)
#define RGPU_CL_MEM_HOST_ACCESS (CL_MEM_HOST_WRITE_ONLY | CL_MEM_HOST_READ_ONLY | CL_MEM_HOST_NO_ACCESS)

static cl_int rgpu_cl_mem_flags_valid(cl_mem_flags flags)
{
    const cl_mem_flags known = RGPU_CL_MEM_ACCESS | RGPU_CL_MEM_HOST_ACCESS | CL_MEM_USE_HOST_PTR |
                               CL_MEM_ALLOC_HOST_PTR | CL_MEM_COPY_HOST_PTR;
    cl_mem_flags access = flags & RGPU_CL_MEM_ACCESS, host = flags & RGPU_CL_MEM_HOST_ACCESS;

    if (flags & ~known)
        return 0;
    if ((access & (access - 1)) || (host & (host - 1)))
        return 0;
    if ((flags & CL_MEM_USE_HOST_PTR) && (flags & (CL_MEM_ALLOC_HOST_PTR | CL_MEM_COPY_HOST_PTR)))
        return 0;
    return 1;
}

static size_t rgpu_cl_max_alloc(cl_context context)
{
    cl_ulong max = 0;

    for (cl_uint i = 0; i < context->num_devices; i++) {
        cl_ulong dev_max = 0;
        rgpu_clGetDeviceInfo(context->devices[i], CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof(dev_max), &dev_max, NULL);
        if (dev_max > max)
            max = dev_max;
    }
    return max ? (size_t)max : SIZE_MAX;
}

cl_mem CL_API_CALL rgpu_clCreateBuffer(cl_context context, cl_mem_flags flags, size_t size, void *host_ptr,
                                       cl_int *errcode_ret)
{
    Rgpu__ClCreateBuffer req = RGPU__CL_CREATE_BUFFER__INIT;
    int needs_ptr = (flags & (CL_MEM_USE_HOST_PTR | CL_MEM_COPY_HOST_PTR)) != 0;
    cl_mem mem = NULL;
    cl_int err;

    if (!RGPU_CL_VALID(context, CONTEXT)) {
        err = CL_INVALID_CONTEXT;
        goto out;
    }
    if (!rgpu_cl_mem_flags_valid(flags)) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    if (size == 0 || size > rgpu_cl_max_alloc(context)) {
        err = CL_INVALID_BUFFER_SIZE;
        goto out;
    }
    if (needs_ptr != (host_ptr != NULL)) {
        err = CL_INVALID_HOST_PTR;
        goto out;
    }
    mem = calloc(1, sizeof(*mem));
    if (!mem) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out;
    }
    rgpu__cl_obj_init(&mem->obj, RGPU_CL_MAGIC_MEM, context->obj.server);
    mem->context = context;
    mem->flags = flags;
    mem->size = size;
    mem->host_ptr = (flags & CL_MEM_USE_HOST_PTR) ? host_ptr : NULL;
    pthread_mutex_init(&mem->lock, NULL);
    req.id = mem->obj.id;
    req.context = context->obj.id;
    /* The server keeps its own copy of a USE_HOST_PTR buffer; maps and
     * unmaps keep the application's memory in step (see enqueue.c). */
    req.flags = needs_ptr ? ((flags & ~(cl_mem_flags)CL_MEM_USE_HOST_PTR) | CL_MEM_COPY_HOST_PTR) : flags;
    req.size = size;
    if (rgpu__cl_live_add(&rgpu__cl_live_mems, mem) != 0) {
        err = CL_OUT_OF_HOST_MEMORY;
        pthread_mutex_destroy(&mem->lock);
        free(mem);
        mem = NULL;
        goto out;
    }
    err = rgpu__cl_post(mem->obj.server, RGPU__MSG_TYPE__MSG_CL_CREATE_BUFFER, &req.base,
                        needs_ptr ? host_ptr : NULL, needs_ptr ? size : 0);
    if (err != CL_SUCCESS) {
        rgpu__cl_live_remove(&rgpu__cl_live_mems, mem);
        pthread_mutex_destroy(&mem->lock);
        free(mem);
        mem = NULL;
        goto out;
    }
    rgpu__cl_context_retain(context);
out:
    if (errcode_ret)
        *errcode_ret = err;
    return mem;
}

cl_mem CL_API_CALL rgpu_clCreateSubBuffer(cl_mem parent, cl_mem_flags flags, cl_buffer_create_type type,
                                          const void *info, cl_int *errcode_ret)
{
    Rgpu__ClCreateSubBuffer req = RGPU__CL_CREATE_SUB_BUFFER__INIT;
    const cl_buffer_region *region = info;
    cl_mem mem = NULL;
    cl_uint align_bits = 0;
    cl_int err;

    if (!RGPU_CL_VALID(parent, MEM) || parent->parent || parent->image_type) {
        err = CL_INVALID_MEM_OBJECT;
        goto out;
    }
    if (type != CL_BUFFER_CREATE_TYPE_REGION || !region ||
        (flags & (CL_MEM_USE_HOST_PTR | CL_MEM_ALLOC_HOST_PTR | CL_MEM_COPY_HOST_PTR)) ||
        !rgpu_cl_mem_flags_valid(flags)) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    if (region->size == 0) {
        err = CL_INVALID_BUFFER_SIZE;
        goto out;
    }
    if (region->origin > parent->size || region->size > parent->size - region->origin) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    rgpu_clGetDeviceInfo(parent->context->devices[0], CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof(align_bits),
                         &align_bits, NULL);
    if (align_bits && region->origin % (align_bits / 8)) {
        err = CL_MISALIGNED_SUB_BUFFER_OFFSET;
        goto out;
    }
    mem = calloc(1, sizeof(*mem));
    if (!mem) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out;
    }
    /* Unspecified access and host flags come from the parent. */
    if (!(flags & RGPU_CL_MEM_ACCESS))
        flags |= parent->flags & RGPU_CL_MEM_ACCESS;
    if (!(flags & RGPU_CL_MEM_HOST_ACCESS))
        flags |= parent->flags & RGPU_CL_MEM_HOST_ACCESS;
    flags |= parent->flags & (CL_MEM_USE_HOST_PTR | CL_MEM_ALLOC_HOST_PTR | CL_MEM_COPY_HOST_PTR);
    rgpu__cl_obj_init(&mem->obj, RGPU_CL_MAGIC_MEM, parent->obj.server);
    mem->context = parent->context;
    mem->flags = flags;
    mem->size = region->size;
    mem->parent = parent;
    mem->origin = region->origin;
    mem->host_ptr = parent->host_ptr ? (char *)parent->host_ptr + region->origin : NULL;
    pthread_mutex_init(&mem->lock, NULL);
    req.id = mem->obj.id;
    req.parent = parent->obj.id;
    req.flags = flags & (RGPU_CL_MEM_ACCESS | RGPU_CL_MEM_HOST_ACCESS);
    req.origin = region->origin;
    req.size = region->size;
    if (rgpu__cl_live_add(&rgpu__cl_live_mems, mem) != 0) {
        err = CL_OUT_OF_HOST_MEMORY;
        pthread_mutex_destroy(&mem->lock);
        free(mem);
        mem = NULL;
        goto out;
    }
    err = rgpu__cl_post(mem->obj.server, RGPU__MSG_TYPE__MSG_CL_CREATE_SUB_BUFFER, &req.base, NULL, 0);
    if (err != CL_SUCCESS) {
        rgpu__cl_live_remove(&rgpu__cl_live_mems, mem);
        pthread_mutex_destroy(&mem->lock);
        free(mem);
        mem = NULL;
        goto out;
    }
    atomic_fetch_add(&parent->obj.refs, 1);
    rgpu__cl_context_retain(mem->context);
out:
    if (errcode_ret)
        *errcode_ret = err;
    return mem;
}

cl_int CL_API_CALL rgpu_clRetainMemObject(cl_mem mem)
{
    if (!RGPU_CL_VALID(mem, MEM))
        return CL_INVALID_MEM_OBJECT;
    atomic_fetch_add(&mem->obj.refs, 1);
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clReleaseMemObject(cl_mem mem)
{
    rgpu_cl_destructor_t *d, *next;
    cl_context context;
    cl_mem parent;

    if (!RGPU_CL_VALID(mem, MEM))
        return CL_INVALID_MEM_OBJECT;
    if (atomic_fetch_sub(&mem->obj.refs, 1) != 1)
        return CL_SUCCESS;
    rgpu__cl_live_remove(&rgpu__cl_live_mems, mem);
    rgpu__cl_remote_release(mem->obj.server, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, mem->obj.id);
    /* Destructor callbacks run in reverse order of registration. */
    for (d = mem->destructors; d; d = next) {
        next = d->next;
        d->fn(mem, d->data);
        free(d);
    }
    for (rgpu_cl_mapping_t *m = mem->maps, *mnext; m; m = mnext) {
        mnext = m->next;
        if (m->owned)
            free(m->ptr);
        free(m);
    }
    free(mem->map_spare);
    context = mem->context;
    parent = mem->parent;
    mem->obj.magic = RGPU_CL_MAGIC_DEAD;
    pthread_mutex_destroy(&mem->lock);
    free(mem);
    if (parent)
        rgpu_clReleaseMemObject(parent);
    rgpu__cl_context_release(context);
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clSetMemObjectDestructorCallback(cl_mem mem, void(CL_CALLBACK *fn)(cl_mem, void *),
                                                         void *data)
{
    rgpu_cl_destructor_t *d;

    if (!RGPU_CL_VALID(mem, MEM))
        return CL_INVALID_MEM_OBJECT;
    if (!fn)
        return CL_INVALID_VALUE;
    d = malloc(sizeof(*d));
    if (!d)
        return CL_OUT_OF_HOST_MEMORY;
    d->fn = fn;
    d->data = data;
    pthread_mutex_lock(&mem->lock);
    d->next = mem->destructors;
    mem->destructors = d;
    pthread_mutex_unlock(&mem->lock);
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clGetMemObjectInfo(cl_mem mem, cl_mem_info param, size_t size, void *value,
                                           size_t *size_ret)
{
    if (!RGPU_CL_VALID(mem, MEM))
        return CL_INVALID_MEM_OBJECT;
    switch (param) {
    case CL_MEM_TYPE: {
        cl_mem_object_type type = mem->image_type ? mem->image_type : CL_MEM_OBJECT_BUFFER;
        return rgpu__cl_info(&type, sizeof(type), size, value, size_ret);
    }
    case CL_MEM_FLAGS:
        return rgpu__cl_info(&mem->flags, sizeof(mem->flags), size, value, size_ret);
    case CL_MEM_SIZE:
        return rgpu__cl_info(&mem->size, sizeof(mem->size), size, value, size_ret);
    case CL_MEM_HOST_PTR:
        return rgpu__cl_info(&mem->host_ptr, sizeof(void *), size, value, size_ret);
    case CL_MEM_MAP_COUNT: {
        cl_uint count;
        pthread_mutex_lock(&mem->lock);
        count = mem->map_count;
        pthread_mutex_unlock(&mem->lock);
        return rgpu__cl_info(&count, sizeof(count), size, value, size_ret);
    }
    case CL_MEM_REFERENCE_COUNT: {
        cl_uint refs = atomic_load(&mem->obj.refs);
        return rgpu__cl_info(&refs, sizeof(refs), size, value, size_ret);
    }
    case CL_MEM_CONTEXT:
        return rgpu__cl_info(&mem->context, sizeof(cl_context), size, value, size_ret);
    case CL_MEM_ASSOCIATED_MEMOBJECT:
        return rgpu__cl_info(&mem->parent, sizeof(cl_mem), size, value, size_ret);
    case CL_MEM_OFFSET:
        return rgpu__cl_info(&mem->origin, sizeof(size_t), size, value, size_ret);
    case CL_MEM_USES_SVM_POINTER: {
        cl_bool no = CL_FALSE;
        return rgpu__cl_info(&no, sizeof(no), size, value, size_ret);
    }
    default:
        return CL_INVALID_VALUE;
    }
}

/* ---- images ---- */

size_t rgpu__cl_image_elem_size(const cl_image_format *format)
{
    size_t channels, bytes;

    switch (format->image_channel_data_type) {
    case CL_UNORM_SHORT_565:
    case CL_UNORM_SHORT_555:
        return format->image_channel_order == CL_RGB || format->image_channel_order == CL_RGBx ? 2 : 0;
    case CL_UNORM_INT_101010:
        return format->image_channel_order == CL_RGB || format->image_channel_order == CL_RGBx ? 4 : 0;
    case CL_SNORM_INT8: case CL_UNORM_INT8: case CL_SIGNED_INT8: case CL_UNSIGNED_INT8: bytes = 1; break;
    case CL_SNORM_INT16: case CL_UNORM_INT16: case CL_SIGNED_INT16: case CL_UNSIGNED_INT16: case CL_HALF_FLOAT:
        bytes = 2;
        break;
    case CL_SIGNED_INT32: case CL_UNSIGNED_INT32: case CL_FLOAT: bytes = 4; break;
    default: return 0;
    }
    switch (format->image_channel_order) {
    case CL_R: case CL_A: case CL_INTENSITY: case CL_LUMINANCE: case CL_Rx: case CL_DEPTH: channels = 1; break;
    case CL_RG: case CL_RA: case CL_RGx: channels = 2; break;
    case CL_sRGB: channels = 3; break;
    case CL_RGBA: case CL_BGRA: case CL_ARGB: case CL_ABGR: case CL_sRGBA: case CL_sBGRA: case CL_sRGBx:
        channels = 4;
        break;
    default: return 0;   /* CL_RGB and CL_RGBx take only the packed types above */
    }
    return channels * bytes;
}

cl_int rgpu__cl_image_shape(cl_mem image, const size_t region[3], size_t row_pitch, size_t slice_pitch,
                            rgpu_cl_image_shape_t *shape)
{
    shape->row_bytes = region[0] * image->elem;
    if (image->image_type == CL_MEM_OBJECT_IMAGE1D_ARRAY) {
        shape->rows = 1;
        shape->slices = region[1];
    } else {
        shape->rows = region[1];
        shape->slices = region[2];
    }
    shape->row_pitch = row_pitch ? row_pitch : shape->row_bytes;
    shape->slice_pitch = slice_pitch ? slice_pitch : shape->rows * shape->row_pitch;
    if (shape->row_pitch < shape->row_bytes || shape->slice_pitch < shape->rows * shape->row_pitch)
        return CL_INVALID_VALUE;
    return CL_SUCCESS;
}

int rgpu__cl_image_shape_packed(const rgpu_cl_image_shape_t *shape)
{
    return shape->row_pitch == shape->row_bytes && (shape->slices == 1 || shape->slice_pitch == shape->rows * shape->row_pitch);
}

/* Whether some device of the context has images, and takes these
 * dimensions: CL_SUCCESS, CL_INVALID_OPERATION (no images at all) or
 * CL_INVALID_IMAGE_SIZE. The server checks again. */
static cl_int rgpu_cl_image_limits(cl_context context, cl_mem_object_type type, const size_t dims[4])
{
    cl_int err = CL_INVALID_OPERATION;

    for (cl_uint i = 0; i < context->num_devices; i++) {
        cl_device_id dev = context->devices[i];
        cl_bool support = CL_FALSE;
        size_t w = 0, h = 0, w3 = 0, h3 = 0, d3 = 0, arrays = 0, buf = 0;
        int fits;

        rgpu_clGetDeviceInfo(dev, CL_DEVICE_IMAGE_SUPPORT, sizeof(support), &support, NULL);
        if (!support)
            continue;
        err = CL_INVALID_IMAGE_SIZE;
        rgpu_clGetDeviceInfo(dev, CL_DEVICE_IMAGE2D_MAX_WIDTH, sizeof(w), &w, NULL);
        rgpu_clGetDeviceInfo(dev, CL_DEVICE_IMAGE2D_MAX_HEIGHT, sizeof(h), &h, NULL);
        rgpu_clGetDeviceInfo(dev, CL_DEVICE_IMAGE3D_MAX_WIDTH, sizeof(w3), &w3, NULL);
        rgpu_clGetDeviceInfo(dev, CL_DEVICE_IMAGE3D_MAX_HEIGHT, sizeof(h3), &h3, NULL);
        rgpu_clGetDeviceInfo(dev, CL_DEVICE_IMAGE3D_MAX_DEPTH, sizeof(d3), &d3, NULL);
        rgpu_clGetDeviceInfo(dev, CL_DEVICE_IMAGE_MAX_ARRAY_SIZE, sizeof(arrays), &arrays, NULL);
        rgpu_clGetDeviceInfo(dev, CL_DEVICE_IMAGE_MAX_BUFFER_SIZE, sizeof(buf), &buf, NULL);
        switch (type) {
        case CL_MEM_OBJECT_IMAGE1D: fits = dims[0] <= w; break;
        case CL_MEM_OBJECT_IMAGE1D_BUFFER: fits = dims[0] <= buf; break;
        case CL_MEM_OBJECT_IMAGE1D_ARRAY: fits = dims[0] <= w && dims[3] <= arrays; break;
        case CL_MEM_OBJECT_IMAGE2D: fits = dims[0] <= w && dims[1] <= h; break;
        case CL_MEM_OBJECT_IMAGE2D_ARRAY: fits = dims[0] <= w && dims[1] <= h && dims[3] <= arrays; break;
        default: fits = dims[0] <= w3 && dims[1] <= h3 && dims[2] <= d3; break;
        }
        if (fits)
            return CL_SUCCESS;
    }
    return err;
}

/* Checks the descriptor and fills the image fields of mem (dims, pitches,
 * size). host_ptr's pitches count only when it is given. */
static cl_int rgpu_cl_image_desc(cl_mem mem, const cl_image_desc *desc, const void *host_ptr)
{
    size_t *d = mem->dims, row, slice = 0, count, size;

    memset(d, 0, sizeof(mem->dims));
    d[0] = desc->image_width;
    switch (desc->image_type) {
    case CL_MEM_OBJECT_IMAGE1D:
    case CL_MEM_OBJECT_IMAGE1D_BUFFER: count = 1; break;
    case CL_MEM_OBJECT_IMAGE1D_ARRAY: d[3] = desc->image_array_size; count = d[3]; break;
    case CL_MEM_OBJECT_IMAGE2D: d[1] = desc->image_height; count = 1; break;
    case CL_MEM_OBJECT_IMAGE2D_ARRAY:
        d[1] = desc->image_height;
        d[3] = desc->image_array_size;
        count = d[3];
        break;
    case CL_MEM_OBJECT_IMAGE3D:
        d[1] = desc->image_height;
        d[2] = desc->image_depth;
        count = d[2];
        break;
    default: return CL_INVALID_IMAGE_DESCRIPTOR;
    }
    if (!d[0] || (d[1] == 0 && (desc->image_type == CL_MEM_OBJECT_IMAGE2D ||
                                desc->image_type == CL_MEM_OBJECT_IMAGE2D_ARRAY ||
                                desc->image_type == CL_MEM_OBJECT_IMAGE3D)) ||
        count == 0 || desc->num_mip_levels || desc->num_samples)
        return CL_INVALID_IMAGE_DESCRIPTOR;
    if (!host_ptr && (desc->image_row_pitch || desc->image_slice_pitch))
        return CL_INVALID_IMAGE_DESCRIPTOR;
    if (__builtin_mul_overflow(d[0], mem->elem, &row))
        return CL_INVALID_IMAGE_SIZE;
    if (desc->image_row_pitch) {
        if (desc->image_row_pitch < row || desc->image_row_pitch % mem->elem)
            return CL_INVALID_IMAGE_DESCRIPTOR;
        row = desc->image_row_pitch;
    }
    if (desc->image_type == CL_MEM_OBJECT_IMAGE1D_ARRAY)
        slice = row;
    else if ((desc->image_type == CL_MEM_OBJECT_IMAGE2D_ARRAY || desc->image_type == CL_MEM_OBJECT_IMAGE3D) &&
             __builtin_mul_overflow(row, d[1], &slice))
        return CL_INVALID_IMAGE_SIZE;
    if (desc->image_slice_pitch && slice) {
        if (desc->image_slice_pitch < slice || desc->image_slice_pitch % row)
            return CL_INVALID_IMAGE_DESCRIPTOR;
        slice = desc->image_slice_pitch;
    }
    if (__builtin_mul_overflow(slice ? slice : row, slice ? count : (d[1] ? d[1] : 1), &size))
        return CL_INVALID_IMAGE_SIZE;
    mem->size = size;
    /* CL_IMAGE_*_PITCH are those of the application's data when it gave
     * some (as PoCL 3.1 reports them), else packed. */
    if (host_ptr) {
        mem->row_pitch = row;
        mem->slice_pitch = slice;
    } else {
        mem->row_pitch = d[0] * mem->elem;
        mem->slice_pitch = desc->image_type == CL_MEM_OBJECT_IMAGE1D_ARRAY ? mem->row_pitch
                           : slice                                        ? mem->row_pitch * d[1]
                                                                          : 0;
    }
    return CL_SUCCESS;
}

cl_mem CL_API_CALL rgpu_clCreateImage(cl_context context, cl_mem_flags flags, const cl_image_format *format,
                                      const cl_image_desc *desc, void *host_ptr, cl_int *errcode_ret)
{
    Rgpu__ClCreateImage req = RGPU__CL_CREATE_IMAGE__INIT;
    const cl_mem_flags host_flags = CL_MEM_USE_HOST_PTR | CL_MEM_ALLOC_HOST_PTR | CL_MEM_COPY_HOST_PTR;
    int needs_ptr = (flags & (CL_MEM_USE_HOST_PTR | CL_MEM_COPY_HOST_PTR)) != 0;
    cl_mem mem = NULL, buffer = NULL;
    void *packed = NULL;
    size_t packed_len = 0;
    cl_int err;

    if (!RGPU_CL_VALID(context, CONTEXT)) {
        err = CL_INVALID_CONTEXT;
        goto out;
    }
    if (!rgpu_cl_mem_flags_valid(flags)) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    if (!format || !rgpu__cl_image_elem_size(format)) {
        err = CL_INVALID_IMAGE_FORMAT_DESCRIPTOR;
        goto out;
    }
    if (!desc) {
        err = CL_INVALID_IMAGE_DESCRIPTOR;
        goto out;
    }
    if (desc->image_type == CL_MEM_OBJECT_IMAGE1D_BUFFER) {
        buffer = desc->buffer;
        if (!rgpu__cl_live_has(&rgpu__cl_live_mems, buffer) || buffer->image_type || buffer->parent ||
            buffer->context != context) {
            err = CL_INVALID_IMAGE_DESCRIPTOR;
            goto out;
        }
        if (flags & host_flags) {
            err = CL_INVALID_VALUE;
            goto out;
        }
        /* Unspecified access flags come from the buffer. */
        if (!(flags & RGPU_CL_MEM_ACCESS))
            flags |= buffer->flags & RGPU_CL_MEM_ACCESS;
        if (!(flags & RGPU_CL_MEM_HOST_ACCESS))
            flags |= buffer->flags & RGPU_CL_MEM_HOST_ACCESS;
    } else if (desc->buffer) {
        err = CL_INVALID_IMAGE_DESCRIPTOR;
        goto out;
    }
    if (needs_ptr != (host_ptr != NULL)) {
        err = CL_INVALID_HOST_PTR;
        goto out;
    }
    mem = calloc(1, sizeof(*mem));
    if (!mem) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out;
    }
    mem->flags = flags;
    mem->image_type = desc->image_type;
    mem->format = *format;
    mem->elem = rgpu__cl_image_elem_size(format);
    if ((err = rgpu_cl_image_desc(mem, desc, host_ptr)) != CL_SUCCESS ||
        (err = rgpu_cl_image_limits(context, desc->image_type, mem->dims)) != CL_SUCCESS)
        goto out_free;
    if (buffer && mem->dims[0] * mem->elem > buffer->size) {
        err = CL_INVALID_IMAGE_SIZE;
        goto out_free;
    }
    if (host_ptr) {
        /* The wire carries the contents packed. */
        size_t region[3] = {mem->dims[0], mem->dims[1] ? mem->dims[1] : 1, mem->dims[2] ? mem->dims[2] : 1};
        rgpu_cl_image_shape_t shape;

        if (mem->image_type == CL_MEM_OBJECT_IMAGE1D_ARRAY)
            region[1] = mem->dims[3];
        else if (mem->image_type == CL_MEM_OBJECT_IMAGE2D_ARRAY)
            region[2] = mem->dims[3];
        rgpu__cl_image_shape(mem, region, desc->image_row_pitch, desc->image_slice_pitch, &shape);
        packed_len = shape.row_bytes * shape.rows * shape.slices;
        if (rgpu__cl_image_shape_packed(&shape)) {
            packed = host_ptr;
        } else if (!(packed = malloc(packed_len))) {
            err = CL_OUT_OF_HOST_MEMORY;
            goto out_free;
        } else {
            char *p = packed;
            for (size_t z = 0; z < shape.slices; z++) {
                for (size_t y = 0; y < shape.rows; y++, p += shape.row_bytes)
                    memcpy(p, (const char *)host_ptr + z * shape.slice_pitch + y * shape.row_pitch, shape.row_bytes);
            }
        }
    }
    rgpu__cl_obj_init(&mem->obj, RGPU_CL_MAGIC_MEM, context->obj.server);
    mem->context = context;
    mem->host_ptr = (flags & CL_MEM_USE_HOST_PTR) ? host_ptr : NULL;
    mem->parent = buffer;
    pthread_mutex_init(&mem->lock, NULL);
    req.id = mem->obj.id;
    req.context = context->obj.id;
    req.flags = needs_ptr ? ((flags & ~(cl_mem_flags)CL_MEM_USE_HOST_PTR) | CL_MEM_COPY_HOST_PTR) : flags;
    req.channel_order = format->image_channel_order;
    req.channel_data_type = format->image_channel_data_type;
    req.image_type = desc->image_type;
    req.width = mem->dims[0];
    req.height = mem->dims[1];
    req.depth = mem->dims[2];
    req.array_size = mem->dims[3];
    req.buffer = buffer ? buffer->obj.id : 0;
    if (rgpu__cl_live_add(&rgpu__cl_live_mems, mem) != 0) {
        err = CL_OUT_OF_HOST_MEMORY;
        pthread_mutex_destroy(&mem->lock);
        goto out_free;
    }
    err = rgpu__cl_post(mem->obj.server, RGPU__MSG_TYPE__MSG_CL_CREATE_IMAGE, &req.base, packed, packed_len);
    if (err != CL_SUCCESS) {
        rgpu__cl_live_remove(&rgpu__cl_live_mems, mem);
        pthread_mutex_destroy(&mem->lock);
        goto out_free;
    }
    if (buffer)
        atomic_fetch_add(&buffer->obj.refs, 1);
    rgpu__cl_context_retain(context);
    goto out;

out_free:
    free(mem);
    mem = NULL;
out:
    if (packed != host_ptr)
        free(packed);
    if (errcode_ret)
        *errcode_ret = err;
    return mem;
}

cl_mem CL_API_CALL rgpu_clCreateImage2D(cl_context context, cl_mem_flags flags, const cl_image_format *format,
                                        size_t width, size_t height, size_t row_pitch, void *host_ptr,
                                        cl_int *errcode_ret)
{
    cl_image_desc desc = {.image_type = CL_MEM_OBJECT_IMAGE2D, .image_width = width, .image_height = height,
                          .image_row_pitch = row_pitch};

    return rgpu_clCreateImage(context, flags, format, &desc, host_ptr, errcode_ret);
}

cl_mem CL_API_CALL rgpu_clCreateImage3D(cl_context context, cl_mem_flags flags, const cl_image_format *format,
                                        size_t width, size_t height, size_t depth, size_t row_pitch,
                                        size_t slice_pitch, void *host_ptr, cl_int *errcode_ret)
{
    cl_image_desc desc = {.image_type = CL_MEM_OBJECT_IMAGE3D, .image_width = width, .image_height = height,
                          .image_depth = depth, .image_row_pitch = row_pitch, .image_slice_pitch = slice_pitch};

    return rgpu_clCreateImage(context, flags, format, &desc, host_ptr, errcode_ret);
}

/* Answered here: everything about an image is what the application gave. */
cl_int CL_API_CALL rgpu_clGetImageInfo(cl_mem mem, cl_image_info param, size_t size, void *value, size_t *size_ret)
{
    if (!RGPU_CL_VALID(mem, MEM) || !mem->image_type)
        return CL_INVALID_MEM_OBJECT;
    switch (param) {
    case CL_IMAGE_FORMAT: return rgpu__cl_info(&mem->format, sizeof(mem->format), size, value, size_ret);
    case CL_IMAGE_ELEMENT_SIZE: return rgpu__cl_info(&mem->elem, sizeof(size_t), size, value, size_ret);
    case CL_IMAGE_ROW_PITCH: return rgpu__cl_info(&mem->row_pitch, sizeof(size_t), size, value, size_ret);
    case CL_IMAGE_SLICE_PITCH: return rgpu__cl_info(&mem->slice_pitch, sizeof(size_t), size, value, size_ret);
    case CL_IMAGE_WIDTH: return rgpu__cl_info(&mem->dims[0], sizeof(size_t), size, value, size_ret);
    case CL_IMAGE_HEIGHT: return rgpu__cl_info(&mem->dims[1], sizeof(size_t), size, value, size_ret);
    case CL_IMAGE_DEPTH: return rgpu__cl_info(&mem->dims[2], sizeof(size_t), size, value, size_ret);
    case CL_IMAGE_ARRAY_SIZE: return rgpu__cl_info(&mem->dims[3], sizeof(size_t), size, value, size_ret);
    case CL_IMAGE_BUFFER: {
        cl_mem buffer = mem->image_type == CL_MEM_OBJECT_IMAGE1D_BUFFER ? mem->parent : NULL;
        return rgpu__cl_info(&buffer, sizeof(buffer), size, value, size_ret);
    }
    case CL_IMAGE_NUM_MIP_LEVELS:
    case CL_IMAGE_NUM_SAMPLES: {
        cl_uint zero = 0;
        return rgpu__cl_info(&zero, sizeof(zero), size, value, size_ret);
    }
    default:
        return CL_INVALID_VALUE;
    }
}

/* ---- supported image formats, asked once per context, flags and type ---- */

struct rgpu_cl_formats {
    cl_mem_flags flags;
    cl_mem_object_type type;
    cl_uint count;
    cl_image_format *formats;
    struct rgpu_cl_formats *next;
};

static pthread_mutex_t rgpu_cl_formats_lock = PTHREAD_MUTEX_INITIALIZER;

void rgpu__cl_formats_free(cl_context context)
{
    for (struct rgpu_cl_formats *f = context->formats, *next; f; f = next) {
        next = f->next;
        free(f->formats);
        free(f);
    }
    context->formats = NULL;
}

/* Asks the server; on success the entry is new and not yet listed. */
static cl_int rgpu_cl_formats_ask(cl_context context, cl_mem_flags flags, cl_mem_object_type type,
                                  struct rgpu_cl_formats **entry_p)
{
    Rgpu__ClGetInfo req = RGPU__CL_GET_INFO__INIT;
    Rgpu__ClInfoReply *reply;
    struct rgpu_cl_formats *f;
    rgpu_call_t call = {0};
    uint8_t extra[8];
    cl_int err;

    for (int i = 0; i < 8; i++)
        extra[i] = (uint8_t)(flags >> (8 * i));
    req.kind = RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT;
    req.id = context->obj.id;
    req.param = type;
    req.which = RGPU__CL_INFO_WHICH__CL_INFO_IMAGE_FORMATS;
    req.extra.data = extra;
    req.extra.len = sizeof(extra);
    err = rgpu__cl_call(context->obj.server, RGPU__MSG_TYPE__MSG_CL_GET_INFO, &req.base, NULL, 0,
                        RGPU__MSG_TYPE__MSG_CL_INFO_REPLY, &call);
    if (err != CL_SUCCESS)
        return err;
    reply = rgpu__cl_info_reply__unpack(NULL, call.body_len, call.body);
    rgpu_call_cleanup(&call);
    if (!reply)
        return RGPU_CL_LINK_ERROR;
    err = reply->cl_error;
    if (err == CL_SUCCESS && reply->value.len % sizeof(cl_image_format))
        err = RGPU_CL_LINK_ERROR;
    if (err == CL_SUCCESS && !(f = calloc(1, sizeof(*f))))
        err = CL_OUT_OF_HOST_MEMORY;
    if (err == CL_SUCCESS) {
        f->flags = flags;
        f->type = type;
        f->count = (cl_uint)(reply->value.len / sizeof(cl_image_format));
        f->formats = malloc(reply->value.len ? reply->value.len : 1);
        if (!f->formats) {
            free(f);
            err = CL_OUT_OF_HOST_MEMORY;
        } else {
            memcpy(f->formats, reply->value.data, reply->value.len);
            *entry_p = f;
        }
    }
    rgpu__cl_info_reply__free_unpacked(reply, NULL);
    return err;
}

cl_int CL_API_CALL rgpu_clGetSupportedImageFormats(cl_context context, cl_mem_flags flags,
                                                   cl_mem_object_type type, cl_uint num_entries,
                                                   cl_image_format *formats, cl_uint *num_formats)
{
    struct rgpu_cl_formats *f, *fresh = NULL;
    cl_int err = CL_SUCCESS;

    if (!RGPU_CL_VALID(context, CONTEXT))
        return CL_INVALID_CONTEXT;
    if ((num_entries == 0 && formats) || !rgpu_cl_mem_flags_valid(flags) ||
        (type != CL_MEM_OBJECT_IMAGE1D && type != CL_MEM_OBJECT_IMAGE1D_BUFFER &&
         type != CL_MEM_OBJECT_IMAGE1D_ARRAY && type != CL_MEM_OBJECT_IMAGE2D &&
         type != CL_MEM_OBJECT_IMAGE2D_ARRAY && type != CL_MEM_OBJECT_IMAGE3D))
        return CL_INVALID_VALUE;
    pthread_mutex_lock(&rgpu_cl_formats_lock);
    for (f = context->formats; f && (f->flags != flags || f->type != type); f = f->next)
        ;
    pthread_mutex_unlock(&rgpu_cl_formats_lock);
    if (!f) {
        /* Asked without the lock: two threads may both ask, one keeps its answer. */
        if ((err = rgpu_cl_formats_ask(context, flags, type, &fresh)) != CL_SUCCESS)
            return err;
        pthread_mutex_lock(&rgpu_cl_formats_lock);
        for (f = context->formats; f && (f->flags != flags || f->type != type); f = f->next)
            ;
        if (!f) {
            fresh->next = context->formats;
            context->formats = f = fresh;
            fresh = NULL;
        }
        pthread_mutex_unlock(&rgpu_cl_formats_lock);
        if (fresh) {
            free(fresh->formats);
            free(fresh);
        }
    }
    if (formats)
        memcpy(formats, f->formats, (num_entries < f->count ? num_entries : f->count) * sizeof(*formats));
    if (num_formats)
        *num_formats = f->count;
    return CL_SUCCESS;
}
