/* Buffers and sub-buffers. Images are not forwarded (see dispatch.c). */
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

    if (!RGPU_CL_VALID(parent, MEM) || parent->parent) {
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
        cl_mem_object_type type = CL_MEM_OBJECT_BUFFER;
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
