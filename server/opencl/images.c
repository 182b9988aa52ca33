/*
 * The OpenCL backend: images and samplers.
 * See backend_opencl.c for the whole picture, opencl_int.h for what is
 * shared between the files.
 */
#include "opencl_int.h"

/* ---- images and samplers ---- */

/* Bytes per pixel of an image format; 0 for a combination OpenCL does not
 * define. */
static uint32_t rgpu_cl_image_elem_size(cl_uint order, cl_uint type)
{
    uint32_t channels, bytes;

    switch (type) {
    case CL_UNORM_SHORT_565:
    case CL_UNORM_SHORT_555:
        return order == CL_RGB || order == CL_RGBx ? 2 : 0;
    case CL_UNORM_INT_101010:
        return order == CL_RGB || order == CL_RGBx ? 4 : 0;
    case CL_SNORM_INT8: case CL_UNORM_INT8: case CL_SIGNED_INT8: case CL_UNSIGNED_INT8: bytes = 1; break;
    case CL_SNORM_INT16: case CL_UNORM_INT16: case CL_SIGNED_INT16: case CL_UNSIGNED_INT16: case CL_HALF_FLOAT:
        bytes = 2;
        break;
    case CL_SIGNED_INT32: case CL_UNSIGNED_INT32: case CL_FLOAT: bytes = 4; break;
    default: return 0;
    }
    switch (order) {
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

/* An image's dimensions as its type uses them (width, height, depth,
 * array size), the unused ones 1. 0 when the type is no image type or a
 * used dimension is 0. */
int rgpu__cl_image_dims(cl_mem_object_type type, uint64_t w, uint64_t h, uint64_t d, uint64_t a,
                        uint64_t dims[4])
{
    dims[0] = w;
    dims[1] = dims[2] = dims[3] = 1;
    switch (type) {
    case CL_MEM_OBJECT_IMAGE1D:
    case CL_MEM_OBJECT_IMAGE1D_BUFFER: break;
    case CL_MEM_OBJECT_IMAGE1D_ARRAY: dims[3] = a; break;
    case CL_MEM_OBJECT_IMAGE2D: dims[1] = h; break;
    case CL_MEM_OBJECT_IMAGE2D_ARRAY: dims[1] = h; dims[3] = a; break;
    case CL_MEM_OBJECT_IMAGE3D: dims[1] = h; dims[2] = d; break;
    default: return 0;
    }
    return dims[0] && dims[1] && dims[2] && dims[3];
}

static size_t rgpu_cl_device_size(cl_device_id dev, cl_device_info param)
{
    size_t v = 0;

    clGetDeviceInfo(dev, param, sizeof(v), &v, NULL);
    return v;
}

/* Whether one device takes an image of these dimensions and bytes, by its
 * own limits (the platform is not trusted to check them all). */
static int rgpu_cl_image_fits(cl_device_id dev, cl_mem_object_type type, const uint64_t dims[4], uint64_t bytes)
{
    cl_bool support = CL_FALSE;
    cl_ulong max_alloc = 0;
    uint64_t w = rgpu_cl_device_size(dev, CL_DEVICE_IMAGE2D_MAX_WIDTH);
    uint64_t h = rgpu_cl_device_size(dev, CL_DEVICE_IMAGE2D_MAX_HEIGHT);
    uint64_t arrays = rgpu_cl_device_size(dev, CL_DEVICE_IMAGE_MAX_ARRAY_SIZE);

    clGetDeviceInfo(dev, CL_DEVICE_IMAGE_SUPPORT, sizeof(support), &support, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof(max_alloc), &max_alloc, NULL);
    if (!support || bytes > max_alloc)
        return 0;
    switch (type) {
    case CL_MEM_OBJECT_IMAGE1D: return dims[0] <= w;
    case CL_MEM_OBJECT_IMAGE1D_BUFFER: return dims[0] <= rgpu_cl_device_size(dev, CL_DEVICE_IMAGE_MAX_BUFFER_SIZE);
    case CL_MEM_OBJECT_IMAGE1D_ARRAY: return dims[0] <= w && dims[3] <= arrays;
    case CL_MEM_OBJECT_IMAGE2D: return dims[0] <= w && dims[1] <= h;
    case CL_MEM_OBJECT_IMAGE2D_ARRAY: return dims[0] <= w && dims[1] <= h && dims[3] <= arrays;
    case CL_MEM_OBJECT_IMAGE3D:
        return dims[0] <= rgpu_cl_device_size(dev, CL_DEVICE_IMAGE3D_MAX_WIDTH) &&
               dims[1] <= rgpu_cl_device_size(dev, CL_DEVICE_IMAGE3D_MAX_HEIGHT) &&
               dims[2] <= rgpu_cl_device_size(dev, CL_DEVICE_IMAGE3D_MAX_DEPTH);
    default: return 0;
    }
}

/* CL_SUCCESS when some device of the context takes the image (OpenCL asks
 * no more), CL_INVALID_IMAGE_SIZE otherwise, CL_INVALID_OPERATION when no
 * device of the context has images at all. */
static cl_int rgpu_cl_image_limits(cl_context ctx, cl_mem_object_type type, const uint64_t dims[4], uint64_t bytes)
{
    cl_device_id devs[64];
    size_t size = 0;
    int any_support = 0;

    if (clGetContextInfo(ctx, CL_CONTEXT_DEVICES, sizeof(devs), devs, &size) != CL_SUCCESS)
        return CL_INVALID_CONTEXT;
    for (size_t i = 0; i < size / sizeof(devs[0]); i++) {
        cl_bool support = CL_FALSE;
        clGetDeviceInfo(devs[i], CL_DEVICE_IMAGE_SUPPORT, sizeof(support), &support, NULL);
        any_support |= support == CL_TRUE;
        if (rgpu_cl_image_fits(devs[i], type, dims, bytes))
            return CL_SUCCESS;
    }
    return any_support ? CL_INVALID_IMAGE_SIZE : CL_INVALID_OPERATION;
}

/* Checks everything about a new image, reserves its memory against the
 * lease's quota (not for 1D buffer images: their buffer's memory), and only
 * then receives its contents. */
rgpu_status_t rgpu__cl_create_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                    Rgpu__ClCreateImage *m, char *reason, size_t reason_cap)
{
    const cl_mem_flags host_flags = CL_MEM_USE_HOST_PTR | CL_MEM_ALLOC_HOST_PTR | CL_MEM_COPY_HOST_PTR;
    rgpu_cl_handle_t *ctx = rgpu__cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    uint32_t elem = rgpu_cl_image_elem_size(m->channel_order, m->channel_data_type);
    rgpu_cl_handle_t *buffer = NULL, *h;
    cl_image_format format = {m->channel_order, m->channel_data_type};
    cl_image_desc desc;
    uint64_t dims[4], bytes = elem;
    void *init = NULL;
    cl_mem mem = NULL;
    cl_int err = CL_SUCCESS;
    int reserved = 0;
    rgpu_status_t status;

    if (!ctx)
        err = CL_INVALID_CONTEXT;
    else if (!elem)
        err = CL_INVALID_IMAGE_FORMAT_DESCRIPTOR;
    else if (!rgpu__cl_image_dims(m->image_type, m->width, m->height, m->depth, m->array_size, dims))
        err = CL_INVALID_IMAGE_DESCRIPTOR;
    for (int i = 0; err == CL_SUCCESS && i < 4; i++) {
        if (__builtin_mul_overflow(bytes, dims[i], &bytes))
            err = CL_INVALID_IMAGE_SIZE;
    }
    if (err == CL_SUCCESS)
        err = rgpu_cl_image_limits(ctx->cl.context, m->image_type, dims, bytes);
    if (err == CL_SUCCESS && hdr->bulk_len && hdr->bulk_len != bytes) {
        snprintf(reason, reason_cap, "clCreateImage of %llu bytes carries %llu bytes of contents",
                 (unsigned long long)bytes, (unsigned long long)hdr->bulk_len);
        return RGPU_ERR_PROTOCOL;
    }
    if (err == CL_SUCCESS && m->image_type == CL_MEM_OBJECT_IMAGE1D_BUFFER) {
        /* The image views the buffer's memory: nothing new to reserve. A
         * sub-buffer is refused (PoCL 3.1 mishandles sub-buffers in
         * several commands already). */
        buffer = rgpu__cl_get_buffer(s, m->buffer);
        if (!buffer || buffer->parent)
            err = CL_INVALID_IMAGE_DESCRIPTOR;
        else if (bytes > buffer->size)
            err = CL_INVALID_IMAGE_SIZE;
        else if (hdr->bulk_len || (m->flags & host_flags))
            err = CL_INVALID_VALUE;
    } else if (err == CL_SUCCESS) {
        if (m->buffer)
            err = CL_INVALID_IMAGE_DESCRIPTOR;
        else if (hdr->bulk_len && !(m->flags & CL_MEM_COPY_HOST_PTR))
            err = CL_INVALID_HOST_PTR;
        else if (!hdr->bulk_len && (m->flags & (CL_MEM_COPY_HOST_PTR | CL_MEM_USE_HOST_PTR)))
            err = CL_INVALID_HOST_PTR;
        else if (rgpu_session_mem_reserve(s->session, bytes) != 0)
            err = CL_MEM_OBJECT_ALLOCATION_FAILURE;
        else
            reserved = 1;
    }
    if (err == CL_SUCCESS && hdr->bulk_len && !(init = malloc(hdr->bulk_len)))
        err = CL_OUT_OF_HOST_MEMORY;
    if (err != CL_SUCCESS) {
        if (reserved)
            rgpu_session_mem_unreserve(s->session, bytes);
        status = rgpu__cl_async_error(s, hdr, err, err == CL_MEM_OBJECT_ALLOCATION_FAILURE
                                                      ? "the lease's memory quota is used up" : NULL);
        return status;
    }
    if (init && (status = rgpu_session_pull(s->session, init, hdr->bulk_len)) != RGPU_OK) {
        rgpu_session_mem_unreserve(s->session, bytes);
        free(init);
        return status;
    }
    /* Packed pitches (0): what the wire carries. */
    memset(&desc, 0, sizeof(desc));
    desc.image_type = m->image_type;
    desc.image_width = dims[0];
    if (m->image_type == CL_MEM_OBJECT_IMAGE2D || m->image_type == CL_MEM_OBJECT_IMAGE2D_ARRAY ||
        m->image_type == CL_MEM_OBJECT_IMAGE3D)
        desc.image_height = dims[1];
    if (m->image_type == CL_MEM_OBJECT_IMAGE3D)
        desc.image_depth = dims[2];
    if (m->image_type == CL_MEM_OBJECT_IMAGE1D_ARRAY || m->image_type == CL_MEM_OBJECT_IMAGE2D_ARRAY)
        desc.image_array_size = dims[3];
    desc.buffer = buffer ? buffer->cl.mem : NULL;
    mem = clCreateImage(ctx->cl.context, m->flags & ~(cl_mem_flags)CL_MEM_USE_HOST_PTR, &format, &desc, init, &err);
    /* Every bound of this image's transfers comes from rgpu's pixel size:
     * the platform's must be the same. */
    if (err == CL_SUCCESS) {
        size_t platform_elem = 0;
        if (clGetImageInfo(mem, CL_IMAGE_ELEMENT_SIZE, sizeof(platform_elem), &platform_elem, NULL) != CL_SUCCESS ||
            platform_elem != elem)
            err = CL_IMAGE_FORMAT_NOT_SUPPORTED;
    }
    /* Like a new buffer, a new image holds no other tenant's data. */
    if (err == CL_SUCCESS && !init && !buffer)
        err = rgpu__cl_zero_image(ctx, mem, m->image_type, dims);
    free(init);
    if (err == CL_SUCCESS && (err = rgpu__cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM, mem, &h)) == CL_SUCCESS) {
        h->size = bytes;
        h->image_type = m->image_type;
        memcpy(h->image_dims, dims, sizeof(dims));
        h->image_elem = elem;
        if (buffer) {
            h->parent_mem = buffer->cl.mem;
            h->held_parent = buffer;
            buffer->holds++;
        } else {
            h->bytes = bytes;
            rgpu_session_memory_add(s->session, (int64_t)bytes);
            atomic_fetch_add(&rgpu_metrics.buffer_bytes, (long long)bytes);
            atomic_fetch_add(&rgpu_metrics.buffers, 1);
        }
        return RGPU_OK;
    }
    if (reserved)
        rgpu_session_mem_unreserve(s->session, bytes);
    if (mem)
        clReleaseMemObject(mem);
    return rgpu__cl_async_error(s, hdr, err, NULL);
}

/* Whether origin + region (3 values each, from the client) lie inside the
 * image as its type uses them (a 1D array's layers in [1], a 2D array's in
 * [2]; unused coordinates 0 with extent 1). Fills o and r. */
static int rgpu_cl_image_region(const rgpu_cl_handle_t *img, size_t n_origin, const uint64_t *origin,
                                size_t n_region, const uint64_t *region, size_t o[3], size_t r[3])
{
    uint64_t lim[3] = {img->image_dims[0], 1, 1};

    if (n_origin != 3 || n_region != 3)
        return 0;
    switch (img->image_type) {
    case CL_MEM_OBJECT_IMAGE1D_ARRAY: lim[1] = img->image_dims[3]; break;
    case CL_MEM_OBJECT_IMAGE2D: lim[1] = img->image_dims[1]; break;
    case CL_MEM_OBJECT_IMAGE2D_ARRAY: lim[1] = img->image_dims[1]; lim[2] = img->image_dims[3]; break;
    case CL_MEM_OBJECT_IMAGE3D: lim[1] = img->image_dims[1]; lim[2] = img->image_dims[2]; break;
    default: break;
    }
    for (int i = 0; i < 3; i++) {
        if (!region[i] || origin[i] > lim[i] || region[i] > lim[i] - origin[i])
            return 0;
        o[i] = origin[i];
        r[i] = region[i];
    }
    return 1;
}

/* Bytes of a region inside the image: no overflow, the image's are bounded. */
static uint64_t rgpu_cl_image_bytes(const rgpu_cl_handle_t *img, const size_t r[3])
{
    return (uint64_t)img->image_elem * r[0] * r[1] * r[2];
}

/* The packed host pitches of a region, as the platform takes them. */
static void rgpu_cl_image_pitches(const rgpu_cl_handle_t *img, const size_t r[3], size_t *row, size_t *slice)
{
    *row = r[0] * img->image_elem;
    if (img->image_type == CL_MEM_OBJECT_IMAGE1D_ARRAY)
        *slice = *row;
    else if (img->image_type == CL_MEM_OBJECT_IMAGE2D_ARRAY || img->image_type == CL_MEM_OBJECT_IMAGE3D)
        *slice = *row * r[1];
    else
        *slice = 0;
}

rgpu_status_t rgpu__cl_write_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClImageRect *m,
                                   char *reason, size_t reason_cap)
{
    rgpu_cl_handle_t *img;
    size_t o[3], r[3], row, slice;
    rgpu_cl_cmd_t cmd;
    cl_event ev = NULL;
    void *buf;
    cl_int err;
    rgpu_status_t status;

    /* Everything is checked before a byte of the data is received. */
    err = rgpu__cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);
    img = rgpu__cl_get_image(s, m->image);
    if (err == CL_SUCCESS && !img)
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS && !rgpu_cl_image_region(img, m->n_origin, m->origin, m->n_region, m->region, o, r))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS && hdr->bulk_len != rgpu_cl_image_bytes(img, r)) {
        snprintf(reason, reason_cap, "image write of %llu bytes carries %llu bytes of data",
                 (unsigned long long)rgpu_cl_image_bytes(img, r), (unsigned long long)hdr->bulk_len);
        free(cmd.wait);
        return RGPU_ERR_PROTOCOL;
    }
    if (!rgpu__cl_staged_write_begin(s, hdr, &cmd, m->event, err, &buf, &status))
        return status;
    rgpu_cl_image_pitches(img, r, &row, &slice);
    err = clEnqueueWriteImage(cmd.queue->cl.queue, img->cl.mem, CL_FALSE, o, r, row, slice, buf, cmd.num_wait,
                              cmd.wait, &ev);
    return rgpu__cl_staged_write_end(s, hdr, &cmd, m->blocking, m->event, ev, buf, err);
}

static cl_int rgpu_cl_enqueue_read_image(rgpu_cl_cmd_t *cmd, void *dst, const void *arg, cl_event *ev)
{
    const rgpu_cl_read_image_arg_t *a = arg;
    size_t row, slice;

    rgpu_cl_image_pitches(a->img, a->r, &row, &slice);
    return clEnqueueReadImage(cmd->queue->cl.queue, a->img->cl.mem, CL_FALSE, a->o, a->r, row, slice, dst,
                              cmd->num_wait, cmd->wait, ev);
}

rgpu_status_t rgpu__cl_read_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClImageRect *m)
{
    Rgpu__ClReadReply reply = RGPU__CL_READ_REPLY__INIT;
    rgpu_cl_handle_t *img;
    size_t o[3], r[3];
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu__cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    img = rgpu__cl_get_image(s, m->image);
    if (err == CL_SUCCESS && !img)
        err = CL_INVALID_MEM_OBJECT;
    if (err == CL_SUCCESS && !rgpu_cl_image_region(img, m->n_origin, m->origin, m->n_region, m->region, o, r))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS) {
        /* Answered from the read's callback, blocking or not: the region
         * lies inside the image, checked before its staging is allocated. */
        rgpu_cl_read_image_arg_t arg = {img, o, r};
        err = rgpu__cl_read_async(s, hdr, &cmd, m->event, rgpu_cl_enqueue_read_image, &arg,
                                 rgpu_cl_image_bytes(img, r));
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

/* The buffer side of an image<->buffer copy: bytes at offset inside it. A
 * sub-buffer is replaced by its parent (see rgpu__cl_rect_mem). */
static cl_mem rgpu_cl_copy_buffer_side(const rgpu_cl_handle_t *buf, uint64_t offset, uint64_t bytes, size_t *off_p)
{
    if (!rgpu__cl_range_ok(offset, bytes, buf->size))
        return NULL;
    *off_p = offset + (buf->parent ? buf->origin : 0);
    return buf->parent ? buf->parent_mem : buf->cl.mem;
}

rgpu_status_t rgpu__cl_copy_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClImageCopy *m)
{
    rgpu_cl_handle_t *src = NULL, *dst = NULL;
    size_t so[3], dso[3], r[3], r2[3], off = 0;
    cl_command_queue q;
    cl_mem buf;
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu__cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    if (err != CL_SUCCESS)
        return rgpu__cl_cmd_end(s, hdr, &cmd, m->event, err);
    q = cmd.queue->cl.queue;
    switch (m->kind) {
    case RGPU__CL_IMAGE_COPY_KIND__CL_COPY_IMAGE:
        src = rgpu__cl_get_image(s, m->src);
        dst = rgpu__cl_get_image(s, m->dst);
        if (!src || !dst)
            err = CL_INVALID_MEM_OBJECT;
        else if (!rgpu_cl_image_region(src, m->n_src_origin, m->src_origin, m->n_region, m->region, so, r) ||
                 !rgpu_cl_image_region(dst, m->n_dst_origin, m->dst_origin, m->n_region, m->region, dso, r2))
            err = CL_INVALID_VALUE;
        else if (src->image_elem != dst->image_elem)
            err = CL_IMAGE_FORMAT_MISMATCH;
        else
            err = clEnqueueCopyImage(q, src->cl.mem, dst->cl.mem, so, dso, r, cmd.num_wait, cmd.wait,
                                     rgpu__cl_ev_out(&cmd, m->event));
        break;
    case RGPU__CL_IMAGE_COPY_KIND__CL_COPY_IMAGE_TO_BUFFER:
        src = rgpu__cl_get_image(s, m->src);
        dst = rgpu__cl_get_buffer(s, m->dst);
        if (!src || !dst)
            err = CL_INVALID_MEM_OBJECT;
        else if (!rgpu_cl_image_region(src, m->n_src_origin, m->src_origin, m->n_region, m->region, so, r) ||
                 !(buf = rgpu_cl_copy_buffer_side(dst, m->offset, rgpu_cl_image_bytes(src, r), &off)))
            err = CL_INVALID_VALUE;
        else
            err = clEnqueueCopyImageToBuffer(q, src->cl.mem, buf, so, r, off, cmd.num_wait, cmd.wait,
                                             rgpu__cl_ev_out(&cmd, m->event));
        break;
    case RGPU__CL_IMAGE_COPY_KIND__CL_COPY_BUFFER_TO_IMAGE:
        src = rgpu__cl_get_buffer(s, m->src);
        dst = rgpu__cl_get_image(s, m->dst);
        if (!src || !dst)
            err = CL_INVALID_MEM_OBJECT;
        else if (!rgpu_cl_image_region(dst, m->n_dst_origin, m->dst_origin, m->n_region, m->region, dso, r) ||
                 !(buf = rgpu_cl_copy_buffer_side(src, m->offset, rgpu_cl_image_bytes(dst, r), &off)))
            err = CL_INVALID_VALUE;
        else
            err = clEnqueueCopyBufferToImage(q, buf, dst->cl.mem, off, dso, r, cmd.num_wait, cmd.wait,
                                             rgpu__cl_ev_out(&cmd, m->event));
        break;
    default:
        err = CL_INVALID_VALUE;
        break;
    }
    return rgpu__cl_cmd_end(s, hdr, &cmd, m->event, err);
}

rgpu_status_t rgpu__cl_fill_image(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClFillImage *m)
{
    rgpu_cl_handle_t *img;
    size_t o[3], r[3];
    rgpu_cl_cmd_t cmd;
    cl_int err = rgpu__cl_cmd_begin(s, m->queue, m->n_wait, m->wait, &cmd);

    img = rgpu__cl_get_image(s, m->image);
    if (err == CL_SUCCESS && !img)
        err = CL_INVALID_MEM_OBJECT;
    /* The platform reads 16 bytes of color (a float4, int4 or uint4). */
    if (err == CL_SUCCESS && (m->color.len != 16 ||
                              !rgpu_cl_image_region(img, m->n_origin, m->origin, m->n_region, m->region, o, r)))
        err = CL_INVALID_VALUE;
    if (err == CL_SUCCESS)
        err = clEnqueueFillImage(cmd.queue->cl.queue, img->cl.mem, m->color.data, o, r, cmd.num_wait, cmd.wait,
                                 rgpu__cl_ev_out(&cmd, m->event));
    return rgpu__cl_cmd_end(s, hdr, &cmd, m->event, err);
}

rgpu_status_t rgpu__cl_create_sampler(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                      Rgpu__ClCreateSampler *m)
{
    rgpu_cl_handle_t *ctx = rgpu__cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    cl_sampler smp = NULL;
    cl_int err;

    if (!ctx) {
        err = CL_INVALID_CONTEXT;
    } else if ((m->addressing_mode != CL_ADDRESS_NONE && m->addressing_mode != CL_ADDRESS_CLAMP_TO_EDGE &&
                m->addressing_mode != CL_ADDRESS_CLAMP && m->addressing_mode != CL_ADDRESS_REPEAT &&
                m->addressing_mode != CL_ADDRESS_MIRRORED_REPEAT) ||
               (m->filter_mode != CL_FILTER_NEAREST && m->filter_mode != CL_FILTER_LINEAR)) {
        err = CL_INVALID_VALUE;
    } else {
        cl_sampler_properties props[] = {CL_SAMPLER_NORMALIZED_COORDS, m->normalized_coords ? CL_TRUE : CL_FALSE,
                                         CL_SAMPLER_ADDRESSING_MODE, m->addressing_mode,
                                         CL_SAMPLER_FILTER_MODE, m->filter_mode, 0};
        smp = clCreateSamplerWithProperties(ctx->cl.context, props, &err);
    }
    if (err == CL_SUCCESS && (err = rgpu__cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER, smp, NULL)) == CL_SUCCESS)
        return RGPU_OK;
    if (smp)
        clReleaseSampler(smp);
    return rgpu__cl_async_error(s, hdr, err, NULL);
}
