/* Samplers. The client keeps everything clGetSamplerInfo answers; the
 * server creates the platform's sampler under the client's id, and a
 * sampler_t kernel argument travels as that id (CL_ARG_SAMPLER). */
#include <stdlib.h>
#include <string.h>

#include "icd.h"

rgpu_cl_live_t rgpu__cl_live_samplers = RGPU_CL_LIVE_INITIALIZER;

/* Whether some device of the context has images (samplers need them). */
static int rgpu_cl_context_images(cl_context context)
{
    for (cl_uint i = 0; i < context->num_devices; i++) {
        cl_bool support = CL_FALSE;
        rgpu_clGetDeviceInfo(context->devices[i], CL_DEVICE_IMAGE_SUPPORT, sizeof(support), &support, NULL);
        if (support)
            return 1;
    }
    return 0;
}

static cl_sampler rgpu_cl_sampler_create(cl_context context, cl_bool normalized, cl_addressing_mode addressing,
                                         cl_filter_mode filter, const cl_sampler_properties *props, size_t num_props,
                                         cl_int *errcode_ret)
{
    Rgpu__ClCreateSampler req = RGPU__CL_CREATE_SAMPLER__INIT;
    cl_sampler sampler = NULL;
    cl_int err;

    if (!RGPU_CL_VALID(context, CONTEXT)) {
        err = CL_INVALID_CONTEXT;
        goto out;
    }
    if ((normalized != CL_TRUE && normalized != CL_FALSE) ||
        (addressing != CL_ADDRESS_NONE && addressing != CL_ADDRESS_CLAMP_TO_EDGE && addressing != CL_ADDRESS_CLAMP &&
         addressing != CL_ADDRESS_REPEAT && addressing != CL_ADDRESS_MIRRORED_REPEAT) ||
        (filter != CL_FILTER_NEAREST && filter != CL_FILTER_LINEAR)) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    if (!rgpu_cl_context_images(context)) {
        err = CL_INVALID_OPERATION;
        goto out;
    }
    sampler = calloc(1, sizeof(*sampler));
    if (!sampler || (num_props && !(sampler->props = malloc(num_props * sizeof(*props))))) {
        free(sampler);
        sampler = NULL;
        err = CL_OUT_OF_HOST_MEMORY;
        goto out;
    }
    if (num_props)
        memcpy(sampler->props, props, num_props * sizeof(*props));
    sampler->num_props = num_props;
    rgpu__cl_obj_init(&sampler->obj, RGPU_CL_MAGIC_SAMPLER, context->obj.server);
    sampler->context = context;
    sampler->normalized_coords = normalized;
    sampler->addressing_mode = addressing;
    sampler->filter_mode = filter;
    req.id = sampler->obj.id;
    req.context = context->obj.id;
    req.normalized_coords = normalized == CL_TRUE;
    req.addressing_mode = addressing;
    req.filter_mode = filter;
    if (rgpu__cl_live_add(&rgpu__cl_live_samplers, sampler) != 0) {
        err = CL_OUT_OF_HOST_MEMORY;
    } else if ((err = rgpu__cl_post(context->obj.server, RGPU__MSG_TYPE__MSG_CL_CREATE_SAMPLER, &req.base, NULL,
                                     0)) != CL_SUCCESS) {
        rgpu__cl_live_remove(&rgpu__cl_live_samplers, sampler);
    }
    if (err != CL_SUCCESS) {
        free(sampler->props);
        free(sampler);
        sampler = NULL;
        goto out;
    }
    rgpu__cl_context_retain(context);
out:
    if (errcode_ret)
        *errcode_ret = err;
    return sampler;
}

cl_sampler CL_API_CALL rgpu_clCreateSampler(cl_context context, cl_bool normalized, cl_addressing_mode addressing,
                                            cl_filter_mode filter, cl_int *errcode_ret)
{
    return rgpu_cl_sampler_create(context, normalized, addressing, filter, NULL, 0, errcode_ret);
}

cl_sampler CL_API_CALL rgpu_clCreateSamplerWithProperties(cl_context context, const cl_sampler_properties *props,
                                                          cl_int *errcode_ret)
{
    cl_bool normalized = CL_TRUE;
    cl_addressing_mode addressing = CL_ADDRESS_CLAMP;
    cl_filter_mode filter = CL_FILTER_NEAREST;
    unsigned seen = 0;
    size_t n = 0;

    /* Each property at most once; the mipmap ones of cl_khr_mipmap_image
     * are not forwarded. */
    for (; props && props[n]; n += 2) {
        unsigned bit;
        switch (props[n]) {
        case CL_SAMPLER_NORMALIZED_COORDS: normalized = (cl_bool)props[n + 1]; bit = 1; break;
        case CL_SAMPLER_ADDRESSING_MODE: addressing = (cl_addressing_mode)props[n + 1]; bit = 2; break;
        case CL_SAMPLER_FILTER_MODE: filter = (cl_filter_mode)props[n + 1]; bit = 4; break;
        default:
            if (errcode_ret)
                *errcode_ret = CL_INVALID_VALUE;
            return NULL;
        }
        if (seen & bit) {
            if (errcode_ret)
                *errcode_ret = CL_INVALID_VALUE;
            return NULL;
        }
        seen |= bit;
    }
    return rgpu_cl_sampler_create(context, normalized, addressing, filter, props, props ? n + 1 : 0, errcode_ret);
}

cl_int CL_API_CALL rgpu_clRetainSampler(cl_sampler sampler)
{
    if (!RGPU_CL_VALID(sampler, SAMPLER))
        return CL_INVALID_SAMPLER;
    atomic_fetch_add(&sampler->obj.refs, 1);
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clReleaseSampler(cl_sampler sampler)
{
    cl_context context;

    if (!RGPU_CL_VALID(sampler, SAMPLER))
        return CL_INVALID_SAMPLER;
    if (atomic_fetch_sub(&sampler->obj.refs, 1) != 1)
        return CL_SUCCESS;
    rgpu__cl_live_remove(&rgpu__cl_live_samplers, sampler);
    rgpu__cl_remote_release(sampler->obj.server, RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER, sampler->obj.id);
    context = sampler->context;
    sampler->obj.magic = RGPU_CL_MAGIC_DEAD;
    free(sampler->props);
    free(sampler);
    rgpu__cl_context_release(context);
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clGetSamplerInfo(cl_sampler sampler, cl_sampler_info param, size_t size, void *value,
                                         size_t *size_ret)
{
    if (!RGPU_CL_VALID(sampler, SAMPLER))
        return CL_INVALID_SAMPLER;
    switch (param) {
    case CL_SAMPLER_REFERENCE_COUNT: {
        cl_uint refs = atomic_load(&sampler->obj.refs);
        return rgpu__cl_info(&refs, sizeof(refs), size, value, size_ret);
    }
    case CL_SAMPLER_CONTEXT:
        return rgpu__cl_info(&sampler->context, sizeof(cl_context), size, value, size_ret);
    case CL_SAMPLER_NORMALIZED_COORDS:
        return rgpu__cl_info(&sampler->normalized_coords, sizeof(cl_bool), size, value, size_ret);
    case CL_SAMPLER_ADDRESSING_MODE:
        return rgpu__cl_info(&sampler->addressing_mode, sizeof(cl_addressing_mode), size, value, size_ret);
    case CL_SAMPLER_FILTER_MODE:
        return rgpu__cl_info(&sampler->filter_mode, sizeof(cl_filter_mode), size, value, size_ret);
    case CL_SAMPLER_PROPERTIES: {
        static const cl_sampler_properties none = 0;   /* never copied: its size is 0 */
        return rgpu__cl_info(sampler->props ? sampler->props : &none, sampler->num_props * sizeof(cl_sampler_properties), size, value,
                             size_ret);
    }
    default:
        return CL_INVALID_VALUE;
    }
}
