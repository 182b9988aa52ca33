/*
 * The OpenCL backend: programs (source, binary, build, compile, link), kernels and their arguments.
 * See backend_opencl.c for the whole picture, opencl_int.h for what is
 * shared between the files.
 */
#include "opencl_int.h"

/* ---- programs ---- */

static int rgpu_cl_device_index(rgpu_backend_t *be, cl_device_id dev)
{
    for (cl_uint i = 0; i < be->num_devices; i++) {
        if (be->devices[i] == dev)
            return (int)i;
    }
    return -1;
}

static cl_int rgpu_cl_devices(rgpu_cl_session_t *s, size_t n, const uint32_t *idx, cl_device_id **devs_p)
{
    cl_device_id *devs;

    *devs_p = NULL;
    if (n == 0)
        return CL_SUCCESS;
    if (n > 64)
        return CL_INVALID_VALUE;
    devs = malloc(n * sizeof(*devs));
    if (!devs)
        return CL_OUT_OF_HOST_MEMORY;
    for (size_t i = 0; i < n; i++) {
        if (idx[i] >= s->backend->num_devices || !rgpu_session_device_allowed(s->session, idx[i])) {
            free(devs);
            return CL_INVALID_DEVICE;
        }
        devs[i] = s->backend->devices[idx[i]];
    }
    *devs_p = devs;
    return CL_SUCCESS;
}

static char *rgpu_cl_build_str(cl_program p, cl_device_id d, cl_program_build_info param)
{
    size_t len = 0;
    char *str;

    if (clGetProgramBuildInfo(p, d, param, 0, NULL, &len) != CL_SUCCESS || len == 0)
        return strdup("");
    str = calloc(1, len + 1);
    if (str && clGetProgramBuildInfo(p, d, param, len, str, NULL) != CL_SUCCESS)
        str[0] = '\0';
    return str;
}

static char *rgpu_cl_kernel_str(cl_kernel k, cl_kernel_info param)
{
    size_t len = 0;
    char *str;

    if (clGetKernelInfo(k, param, 0, NULL, &len) != CL_SUCCESS || len == 0)
        return strdup("");
    str = calloc(1, len + 1);
    if (str && clGetKernelInfo(k, param, len, str, NULL) != CL_SUCCESS)
        str[0] = '\0';
    return str;
}

static char *rgpu_cl_arg_str(cl_kernel k, cl_uint i, cl_kernel_arg_info param)
{
    size_t len = 0;
    char *str;

    if (clGetKernelArgInfo(k, i, param, 0, NULL, &len) != CL_SUCCESS || len == 0)
        return strdup("");
    str = calloc(1, len + 1);
    if (str && clGetKernelArgInfo(k, i, param, len, str, NULL) != CL_SUCCESS)
        str[0] = '\0';
    return str;
}

static char *rgpu_cl_options_extend(const char *options)
{
    size_t len = strlen(options);
    char *out = malloc(len + sizeof(RGPU_CL_ARG_INFO_FLAG));

    if (out) {
        memcpy(out, options, len);
        memcpy(out + len, RGPU_CL_ARG_INFO_FLAG, sizeof(RGPU_CL_ARG_INFO_FLAG));
    }
    return out;
}

static void rgpu_cl_options_unextend(char *options)
{
    size_t len = options ? strlen(options) : 0, flag = sizeof(RGPU_CL_ARG_INFO_FLAG) - 1;

    if (len >= flag && strcmp(options + len - flag, RGPU_CL_ARG_INFO_FLAG) == 0)
        options[len - flag] = '\0';
}

/* Builds the reply to build/compile/link: per-device state and the kernels. */
static rgpu_status_t rgpu_cl_build_reply(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, cl_program p,
                                         cl_int err, const char *refusal)
{
    Rgpu__ClBuildReply reply = RGPU__CL_BUILD_REPLY__INIT;
    Rgpu__ClDeviceBuild *builds = NULL, **build_ptrs = NULL;
    Rgpu__ClKernelDesc *descs = NULL, **desc_ptrs = NULL;
    Rgpu__ClKernelArg *args = NULL, **arg_ptrs = NULL;
    cl_kernel *kernels = NULL;
    cl_device_id *devs = NULL;
    cl_uint n_devs = 0, n_kernels = 0, total_args = 0;
    int executable = 0;
    rgpu_status_t status;

    reply.cl_error = err;
    if (p && clGetProgramInfo(p, CL_PROGRAM_NUM_DEVICES, sizeof(n_devs), &n_devs, NULL) == CL_SUCCESS && n_devs) {
        devs = calloc(n_devs, sizeof(*devs));
        builds = calloc(n_devs, sizeof(*builds));
        build_ptrs = calloc(n_devs, sizeof(*build_ptrs));
        if (devs && builds && build_ptrs &&
            clGetProgramInfo(p, CL_PROGRAM_DEVICES, n_devs * sizeof(*devs), devs, NULL) == CL_SUCCESS) {
            for (cl_uint i = 0; i < n_devs; i++) {
                cl_build_status st = CL_BUILD_NONE;
                cl_program_binary_type bt = CL_PROGRAM_BINARY_TYPE_NONE;
                int idx = rgpu_cl_device_index(s->backend, devs[i]);
                rgpu__cl_device_build__init(&builds[i]);
                clGetProgramBuildInfo(p, devs[i], CL_PROGRAM_BUILD_STATUS, sizeof(st), &st, NULL);
                clGetProgramBuildInfo(p, devs[i], CL_PROGRAM_BINARY_TYPE, sizeof(bt), &bt, NULL);
                builds[i].device = idx < 0 ? 0 : (uint32_t)idx;
                builds[i].status = st;
                builds[i].binary_type = (uint32_t)bt;
                builds[i].log = refusal ? strdup(refusal) : rgpu_cl_build_str(p, devs[i], CL_PROGRAM_BUILD_LOG);
                builds[i].options = rgpu_cl_build_str(p, devs[i], CL_PROGRAM_BUILD_OPTIONS);
                rgpu_cl_options_unextend(builds[i].options);
                if (refusal)
                    builds[i].status = CL_BUILD_ERROR;
                build_ptrs[i] = &builds[i];
                executable |= bt == CL_PROGRAM_BINARY_TYPE_EXECUTABLE && st == CL_BUILD_SUCCESS;
            }
            reply.n_builds = n_devs;
            reply.builds = build_ptrs;
        }
    }
    if (err == CL_SUCCESS && executable && clCreateKernelsInProgram(p, 0, NULL, &n_kernels) == CL_SUCCESS &&
        n_kernels) {
        kernels = calloc(n_kernels, sizeof(*kernels));
        descs = calloc(n_kernels, sizeof(*descs));
        desc_ptrs = calloc(n_kernels, sizeof(*desc_ptrs));
        if (kernels && descs && desc_ptrs &&
            clCreateKernelsInProgram(p, n_kernels, kernels, NULL) == CL_SUCCESS) {
            for (cl_uint i = 0; i < n_kernels; i++) {
                cl_uint nargs = 0;
                clGetKernelInfo(kernels[i], CL_KERNEL_NUM_ARGS, sizeof(nargs), &nargs, NULL);
                total_args += nargs;
            }
            args = calloc(total_args + 1, sizeof(*args));
            arg_ptrs = calloc(total_args + 1, sizeof(*arg_ptrs));
            for (cl_uint i = 0, a = 0; args && arg_ptrs && i < n_kernels; i++) {
                Rgpu__ClKernelDesc *d = &descs[i];
                cl_uint nargs = 0;
                rgpu__cl_kernel_desc__init(d);
                clGetKernelInfo(kernels[i], CL_KERNEL_NUM_ARGS, sizeof(nargs), &nargs, NULL);
                d->name = rgpu_cl_kernel_str(kernels[i], CL_KERNEL_FUNCTION_NAME);
                d->attributes = rgpu_cl_kernel_str(kernels[i], CL_KERNEL_ATTRIBUTES);
                d->num_args = nargs;
                d->arg_info_known = 1;
                d->args = &arg_ptrs[a];
                for (cl_uint j = 0; j < nargs; j++, a++) {
                    Rgpu__ClKernelArg *arg = &args[a];
                    cl_kernel_arg_address_qualifier aq = 0;
                    cl_kernel_arg_access_qualifier cq = 0;
                    cl_kernel_arg_type_qualifier tq = 0;
                    rgpu__cl_kernel_arg__init(arg);
                    if (clGetKernelArgInfo(kernels[i], j, CL_KERNEL_ARG_ADDRESS_QUALIFIER, sizeof(aq), &aq, NULL) !=
                        CL_SUCCESS)
                        d->arg_info_known = 0;
                    clGetKernelArgInfo(kernels[i], j, CL_KERNEL_ARG_ACCESS_QUALIFIER, sizeof(cq), &cq, NULL);
                    clGetKernelArgInfo(kernels[i], j, CL_KERNEL_ARG_TYPE_QUALIFIER, sizeof(tq), &tq, NULL);
                    arg->address_qualifier = aq;
                    arg->access_qualifier = cq;
                    arg->type_qualifier = tq;
                    arg->type_name = rgpu_cl_arg_str(kernels[i], j, CL_KERNEL_ARG_TYPE_NAME);
                    arg->name = rgpu_cl_arg_str(kernels[i], j, CL_KERNEL_ARG_NAME);
                    arg_ptrs[a] = arg;
                }
                d->n_args = d->arg_info_known ? nargs : 0;
                desc_ptrs[i] = d;
            }
            reply.n_kernels = n_kernels;
            reply.kernels = desc_ptrs;
        }
    }
    status = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_BUILD_REPLY, hdr->seq, &reply.base, NULL, 0);

    for (cl_uint i = 0; i < reply.n_builds; i++) {
        free(builds[i].log);
        free(builds[i].options);
    }
    for (cl_uint a = 0; args && a < total_args; a++) {
        if (args[a].type_name != protobuf_c_empty_string)
            free(args[a].type_name);
        if (args[a].name != protobuf_c_empty_string)
            free(args[a].name);
    }
    for (cl_uint i = 0; i < reply.n_kernels; i++) {
        free(descs[i].name);
        free(descs[i].attributes);
    }
    for (cl_uint i = 0; kernels && i < n_kernels; i++) {
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    }
    free(kernels);
    free(descs);
    free(desc_ptrs);
    free(args);
    free(arg_ptrs);
    free(builds);
    free(build_ptrs);
    free(devs);
    return status;
}

rgpu_status_t rgpu__cl_create_program_source(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                             Rgpu__ClCreateProgramSource *m)
{
    rgpu_cl_handle_t *ctx = rgpu__cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    const char *src = m->source;
    cl_program p = NULL;
    cl_int err;

    if (!ctx)
        err = CL_INVALID_CONTEXT;
    else
        p = clCreateProgramWithSource(ctx->cl.context, 1, &src, NULL, &err);
    if (err == CL_SUCCESS && (err = rgpu__cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM, p, NULL)) == CL_SUCCESS)
        return RGPU_OK;
    if (p)
        clReleaseProgram(p);
    return rgpu__cl_async_error(s, hdr, err, NULL);
}

rgpu_status_t rgpu__cl_create_program_binary(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                             Rgpu__ClCreateProgramBinary *m, char *reason, size_t reason_cap)
{
    Rgpu__ClProgramBinaryReply reply = RGPU__CL_PROGRAM_BINARY_REPLY__INIT;
    rgpu_cl_handle_t *ctx = rgpu__cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    uint64_t total = 0;
    unsigned char *bulk = NULL;
    const unsigned char **bins = NULL;
    size_t *lens = NULL;
    cl_int *bstat = NULL;
    cl_device_id *devs = NULL;
    cl_program p = NULL;
    cl_int err;
    rgpu_status_t status;

    for (size_t i = 0; i < m->n_lengths; i++) {
        if (__builtin_add_overflow(total, m->lengths[i], &total)) {
            total = UINT64_MAX;
            break;
        }
    }
    if (m->n_lengths != m->n_devices || total != hdr->bulk_len || m->n_devices == 0 || m->n_devices > 64) {
        snprintf(reason, reason_cap, "program binaries: %zu lengths for %zu devices, %llu bytes sent",
                 m->n_lengths, m->n_devices, (unsigned long long)hdr->bulk_len);
        return RGPU_ERR_PROTOCOL;
    }
    /* The context and devices are checked before the binaries are received. */
    err = !ctx ? CL_INVALID_CONTEXT : rgpu_cl_devices(s, m->n_devices, m->devices, &devs);
    if (err == CL_SUCCESS && !(bulk = malloc(total ? total : 1)))
        err = CL_OUT_OF_HOST_MEMORY;
    if (err != CL_SUCCESS) {
        free(devs);
        reply.cl_error = err;
        status = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_PROGRAM_BINARY_REPLY, hdr->seq, &reply.base,
                                   NULL, 0);
        return status;
    }
    if ((status = rgpu_session_pull(s->session, bulk, total)) != RGPU_OK) {
        free(bulk);
        return status;
    }
    bins = calloc(m->n_devices, sizeof(*bins));
    lens = calloc(m->n_devices, sizeof(*lens));
    bstat = calloc(m->n_devices, sizeof(*bstat));
    if (!bins || !lens || !bstat)
        err = CL_OUT_OF_HOST_MEMORY;
    if (err == CL_SUCCESS) {
        for (size_t i = 0, at = 0; i < m->n_devices; i++) {
            bins[i] = bulk + at;
            lens[i] = m->lengths[i];
            at += m->lengths[i];
        }
        p = clCreateProgramWithBinary(ctx->cl.context, (cl_uint)m->n_devices, devs, lens, bins, bstat, &err);
        if (err == CL_SUCCESS)
            err = rgpu__cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM, p, NULL);
        if (err != CL_SUCCESS && p)
            clReleaseProgram(p);
    }
    reply.cl_error = err;
    if (bstat) {
        reply.n_binary_status = m->n_devices;
        reply.binary_status = bstat;
    }
    status = rgpu_session_send(s->session, RGPU__MSG_TYPE__MSG_CL_PROGRAM_BINARY_REPLY, hdr->seq, &reply.base, NULL, 0);
    free(bulk);
    free(bins);
    free(lens);
    free(bstat);
    free(devs);
    return status;
}

/* Whether a program's source (none for programs from binaries) and the
 * options may go to the compiler: no file of the server may be read into
 * it (an #include "/etc/shadow" would come back in the build log). */
/* Makes a program's source (none for programs from binaries) and the
 * options safe to compile: no file of the server may be read into a build (an
 * #include "/etc/shadow" would come back in the build log). Options that
 * point the compiler at files are refused. An include-like directive naming
 * anything but the allowed embedded headers is rewritten into an #error
 * (rgpu_cl_source_neutralize): the build fails there only if the compiler
 * takes that branch, as a missing header would. The rewritten source
 * replaces the handle's program (a new one in the same context; no kernel
 * exists on it, builds with kernels are refused by the client). Returns 1,
 * or 0 with a sentence in why. Session thread. */
/* Replaces the handle's program by a new one of source (the client's
 * request sends the program's source again when it inlined the
 * application's headers). Returns 1, or 0 with why. */
static int rgpu_cl_program_resource(rgpu_cl_handle_t *h, const char *source, size_t len, char *why, size_t why_cap)
{
    cl_context ctx = NULL;
    cl_program fresh = NULL;
    cl_int err;

    err = clGetProgramInfo(h->cl.program, CL_PROGRAM_CONTEXT, sizeof(ctx), &ctx, NULL);
    if (err == CL_SUCCESS)
        fresh = clCreateProgramWithSource(ctx, 1, &source, &len, &err);
    if (err != CL_SUCCESS) {
        snprintf(why, why_cap, "cannot recreate the program with its new source (error %d)", err);
        return 0;
    }
    clReleaseProgram(h->cl.program);
    h->cl.program = fresh;
    return 1;
}

static int rgpu_cl_program_prepare(rgpu_cl_handle_t *h, const char *source, const char *options,
                                   const char *const *allowed, size_t n_allowed, char *why, size_t why_cap)
{
    size_t len = 0, out_len = 0;
    char *src, *out = NULL;
    int ok;

    if (options && rgpu_cl_build_options_check(options, why, why_cap) != 0)
        return 0;
    if (source && *source && !rgpu_cl_program_resource(h, source, strlen(source), why, why_cap))
        return 0;
    if (clGetProgramInfo(h->cl.program, CL_PROGRAM_SOURCE, 0, NULL, &len) != CL_SUCCESS || len <= 1)
        return 1;
    src = malloc(len);
    if (!src) {
        snprintf(why, why_cap, "out of memory checking the program source");
        return 0;
    }
    ok = clGetProgramInfo(h->cl.program, CL_PROGRAM_SOURCE, len, src, NULL) == CL_SUCCESS &&
         rgpu_cl_source_neutralize(src, strnlen(src, len), allowed, n_allowed, &out, &out_len, why, why_cap) == 0;
    free(src);
    if (!ok || !out)
        return ok;
    ok = rgpu_cl_program_resource(h, out, out_len, why, why_cap);
    free(out);
    return ok;
}

rgpu_status_t rgpu__cl_build(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClBuildProgram *m)
{
    rgpu_cl_handle_t *p = rgpu__cl_get(s, m->program, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM);
    cl_device_id *devs = NULL;
    cl_int err = p ? rgpu_cl_devices(s, m->n_devices, m->devices, &devs) : CL_INVALID_PROGRAM;
    char why[512], refusal[600], *options = NULL;
    int refused = 0;
    rgpu_status_t status;

    if (err == CL_SUCCESS && !rgpu_cl_program_prepare(p, m->source, m->options, NULL, 0, why, sizeof(why))) {
        snprintf(refusal, sizeof(refusal), "rgpu-server refused to build this program: %s", why);
        err = m->options && rgpu_cl_build_options_check(m->options, NULL, 0) != 0 ? CL_INVALID_BUILD_OPTIONS
                                                                                 : CL_BUILD_PROGRAM_FAILURE;
        refused = 1;
    }
    if (err == CL_SUCCESS && !(options = rgpu_cl_options_extend(m->options)))
        err = CL_OUT_OF_HOST_MEMORY;
    if (err == CL_SUCCESS)
        err = clBuildProgram(p->cl.program, (cl_uint)m->n_devices, devs, options, NULL, NULL);
    free(options);
    free(devs);
    status = rgpu_cl_build_reply(s, hdr, p ? p->cl.program : NULL, err, refused ? refusal : NULL);
    if (err == CL_BUILD_PROGRAM_FAILURE)
        rgpu_debug("opencl", "%s: a program failed to build (log sent to the client)", rgpu_session_name(s->session));
    return status;
}

rgpu_status_t rgpu__cl_compile(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClCompileProgram *m)
{
    rgpu_cl_handle_t *p = rgpu__cl_get(s, m->program, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM);
    cl_program *headers = NULL;
    cl_device_id *devs = NULL;
    cl_int err = p ? rgpu_cl_devices(s, m->n_devices, m->devices, &devs) : CL_INVALID_PROGRAM;
    char why[512], refusal[600], *options = NULL;
    int refused = 0;
    rgpu_status_t status;

    if (err == CL_SUCCESS && (m->n_headers != m->n_header_names || m->n_headers > RGPU_CL_MAX_HEADERS))
        err = CL_INVALID_VALUE;
    /* The compiler writes each embedded header to a file under its name. */
    for (size_t i = 0; err == CL_SUCCESS && !refused && i < m->n_header_names; i++) {
        if (rgpu_cl_header_name_check(m->header_names[i], why, sizeof(why)) != 0)
            refused = 1;
    }
    if (err == CL_SUCCESS && m->n_headers && !(headers = malloc(m->n_headers * sizeof(*headers))))
        err = CL_OUT_OF_HOST_MEMORY;
    /* The source and each embedded header may include only the embedded
     * headers, by the names given here (each prepared before its program
     * is taken: preparing may replace it). */
    if (err == CL_SUCCESS &&
        !rgpu_cl_program_prepare(p, m->source, m->options, (const char *const *)m->header_names,
                                 m->n_header_names, why, sizeof(why)))
        refused = 1;
    for (size_t i = 0; err == CL_SUCCESS && !refused && i < m->n_headers; i++) {
        rgpu_cl_handle_t *h = rgpu__cl_get(s, m->headers[i], RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM);
        size_t len = 0;

        if (!h)
            err = CL_INVALID_VALUE;
        /* An embedded header is a program made from source (PoCL reads its
         * source without checking there is one). */
        else if (clGetProgramInfo(h->cl.program, CL_PROGRAM_SOURCE, 0, NULL, &len) != CL_SUCCESS || len <= 1)
            err = CL_INVALID_VALUE;
        else if (h != p && !rgpu_cl_program_prepare(h, NULL, NULL, (const char *const *)m->header_names,
                                                    m->n_header_names, why, sizeof(why)))
            refused = 1;
        else
            headers[i] = h->cl.program;
    }
    if (refused) {
        snprintf(refusal, sizeof(refusal), "rgpu-server refused to compile this program: %s", why);
        err = m->options && rgpu_cl_build_options_check(m->options, NULL, 0) != 0 ? CL_INVALID_COMPILER_OPTIONS
                                                                                 : CL_COMPILE_PROGRAM_FAILURE;
    }
    if (err == CL_SUCCESS && !(options = rgpu_cl_options_extend(m->options)))
        err = CL_OUT_OF_HOST_MEMORY;
    if (err == CL_SUCCESS)
        err = clCompileProgram(p->cl.program, (cl_uint)m->n_devices, devs, options, (cl_uint)m->n_headers,
                               headers, (const char **)m->header_names, NULL, NULL);
    free(options);
    free(headers);
    free(devs);
    status = rgpu_cl_build_reply(s, hdr, p ? p->cl.program : NULL, err, refused ? refusal : NULL);
    return status;
}

rgpu_status_t rgpu__cl_link(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClLinkProgram *m)
{
    rgpu_cl_handle_t *ctx = rgpu__cl_get(s, m->context, RGPU__CL_OBJECT_KIND__CL_OBJ_CONTEXT);
    cl_program *progs = NULL, p = NULL;
    cl_device_id *devs = NULL;
    cl_int err = ctx ? rgpu_cl_devices(s, m->n_devices, m->devices, &devs) : CL_INVALID_CONTEXT;
    char why[512];
    rgpu_status_t status;

    if (err == CL_SUCCESS && (m->n_programs == 0 || !(progs = malloc(m->n_programs * sizeof(*progs)))))
        err = m->n_programs ? CL_OUT_OF_HOST_MEMORY : CL_INVALID_VALUE;
    for (size_t i = 0; err == CL_SUCCESS && i < m->n_programs; i++) {
        rgpu_cl_handle_t *h = rgpu__cl_get(s, m->programs[i], RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM);
        if (!h)
            err = CL_INVALID_PROGRAM;
        else
            progs[i] = h->cl.program;
    }
    if (err == CL_SUCCESS && m->options && rgpu_cl_build_options_check(m->options, why, sizeof(why)) != 0) {
        rgpu_debug("opencl", "%s: link refused: %s", rgpu_session_name(s->session), why);
        err = CL_INVALID_LINKER_OPTIONS;
    }
    if (err == CL_SUCCESS) {
        /* With the argument-info flag where the platform takes it (PoCL
         * drops the info for any other options, "" included); as given
         * where it does not. */
        char *options = rgpu_cl_options_extend(m->options);
        p = clLinkProgram(ctx->cl.context, (cl_uint)m->n_devices, devs, options ? options : m->options,
                          (cl_uint)m->n_programs, progs, NULL, NULL, &err);
        if (options && err == CL_INVALID_LINKER_OPTIONS)
            p = clLinkProgram(ctx->cl.context, (cl_uint)m->n_devices, devs, *m->options ? m->options : NULL,
                              (cl_uint)m->n_programs, progs, NULL, NULL, &err);
        free(options);
    }
    free(progs);
    free(devs);
    if (p && rgpu__cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM, p, NULL) != CL_SUCCESS) {
        clReleaseProgram(p);
        p = NULL;
        err = CL_OUT_OF_HOST_MEMORY;
    }
    status = rgpu_cl_build_reply(s, hdr, p, err, NULL);
    return status;
}

/* The image type an image*_t argument takes (PoCL 3.1 names them so, with
 * no access qualifier), or 0 for other type names. */
static cl_mem_object_type rgpu_cl_image_arg_type(const char *type)
{
    static const struct {
        const char *name;
        cl_mem_object_type type;
    } names[] = {
        {"image1d_t", CL_MEM_OBJECT_IMAGE1D},           {"image1d_buffer_t", CL_MEM_OBJECT_IMAGE1D_BUFFER},
        {"image1d_array_t", CL_MEM_OBJECT_IMAGE1D_ARRAY}, {"image2d_t", CL_MEM_OBJECT_IMAGE2D},
        {"image2d_array_t", CL_MEM_OBJECT_IMAGE2D_ARRAY}, {"image3d_t", CL_MEM_OBJECT_IMAGE3D},
    };

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(type, names[i].name) == 0)
            return names[i].type;
    }
    return 0;
}

/* What kind argument i of k is, from the platform's argument info, and for
 * images which image type (*image_p). Images are __global to the platform,
 * but a buffer set where the kernel reads an image would be taken for the
 * platform's image structure: they are a kind of their own. Types whose
 * value is a handle of the platform we do not serve (device queues, device
 * events) are OPAQUE: no client bytes may stand for them. */
static uint8_t rgpu_cl_arg_kind_of(cl_kernel k, cl_uint i, cl_mem_object_type *image_p)
{
    cl_kernel_arg_address_qualifier aq = 0;
    char type[64] = "";
    int have_type;

    *image_p = 0;
    if (clGetKernelArgInfo(k, i, CL_KERNEL_ARG_ADDRESS_QUALIFIER, sizeof(aq), &aq, NULL) != CL_SUCCESS)
        return RGPU_CL_ARG_UNKNOWN;
    /* A type name longer than the buffer is no handle type's. */
    have_type = clGetKernelArgInfo(k, i, CL_KERNEL_ARG_TYPE_NAME, sizeof(type), type, NULL) == CL_SUCCESS;
    type[sizeof(type) - 1] = '\0';
    if (have_type && (*image_p = rgpu_cl_image_arg_type(type)) != 0)
        return RGPU_CL_ARG_IMAGE;
    /* Any other image type (depth, msaa, a qualified spelling) is a handle
     * of the platform's: never a buffer, whatever its address space. */
    if (have_type && (strncmp(type, "image", 5) == 0 || strstr(type, " image") || strstr(type, "_image")))
        return RGPU_CL_ARG_OPAQUE;
    if (have_type && strcmp(type, "sampler_t") == 0)
        return RGPU_CL_ARG_SAMPLER;
    switch (aq) {
    case CL_KERNEL_ARG_ADDRESS_GLOBAL:
    case CL_KERNEL_ARG_ADDRESS_CONSTANT:
        return RGPU_CL_ARG_MEM;
    case CL_KERNEL_ARG_ADDRESS_LOCAL:
        return RGPU_CL_ARG_LOCAL;
    default:
        break;
    }
    if (!have_type)
        return RGPU_CL_ARG_UNKNOWN;
    if (strcmp(type, "sampler_t") == 0)
        return RGPU_CL_ARG_SAMPLER;
    if (strcmp(type, "queue_t") == 0 || strcmp(type, "clk_event_t") == 0 || strcmp(type, "reserve_id_t") == 0 ||
        strncmp(type, "image", 5) == 0)
        return RGPU_CL_ARG_OPAQUE;
    return RGPU_CL_ARG_VALUE;
}

/* Records the kinds of every argument of a new kernel's handle. */
static cl_int rgpu_cl_kernel_arg_kinds(rgpu_cl_handle_t *h)
{
    cl_uint n = 0;

    if (clGetKernelInfo(h->cl.kernel, CL_KERNEL_NUM_ARGS, sizeof(n), &n, NULL) != CL_SUCCESS)
        n = 0;
    h->arg_kinds = calloc(n ? n : 1, 1);
    h->arg_local = calloc(n ? n : 1, sizeof(*h->arg_local));
    h->arg_held = calloc(n ? n : 1, sizeof(*h->arg_held));
    h->arg_image = calloc(n ? n : 1, sizeof(*h->arg_image));
    if (!h->arg_kinds || !h->arg_local || !h->arg_image || !h->arg_held)
        return CL_OUT_OF_HOST_MEMORY;
    h->num_args = n;
    for (cl_uint i = 0; i < n; i++)
        h->arg_kinds[i] = rgpu_cl_arg_kind_of(h->cl.kernel, i, &h->arg_image[i]);
    return CL_SUCCESS;
}

rgpu_status_t rgpu__cl_create_kernel(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr,
                                     Rgpu__ClCreateKernel *m)
{
    rgpu_cl_handle_t *p = rgpu__cl_get(s, m->program, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM);
    rgpu_cl_handle_t *h;
    cl_kernel k = NULL;
    cl_int err;

    if (!p)
        err = CL_INVALID_PROGRAM;
    else
        k = clCreateKernel(p->cl.program, m->name, &err);
    if (err == CL_SUCCESS && (err = rgpu__cl_put(s, m->id, RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL, k, &h)) == CL_SUCCESS) {
        if ((err = rgpu_cl_kernel_arg_kinds(h)) == CL_SUCCESS)
            return RGPU_OK;
        rgpu_htable_remove(&s->handles, m->id);
        rgpu__cl_release_handle(h);
        k = NULL;
    }
    if (k)
        clReleaseKernel(k);
    return rgpu__cl_async_error(s, hdr, err, m->name);
}

/* Sets an argument by the kind the platform declared, whatever the client
 * claims: a memory object only as a handle of this session, value bytes
 * only where the kernel takes plain bytes. Where the platform gave no
 * argument info, value bytes of a pointer's size are refused: they could
 * stand for a cl_mem, which the platform would dereference. */
rgpu_status_t rgpu__cl_set_arg(rgpu_cl_session_t *s, const rgpu_frame_header_t *hdr, Rgpu__ClSetKernelArg *m)
{
    rgpu_cl_handle_t *k = rgpu__cl_get(s, m->kernel, RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL);
    const char *why = NULL;
    uint8_t kind;
    cl_int err;

    if (!k)
        return rgpu__cl_async_error(s, hdr, CL_INVALID_KERNEL, NULL);
    if (m->index >= k->num_args)
        return rgpu__cl_async_error(s, hdr, CL_INVALID_ARG_INDEX, NULL);
    kind = k->arg_kinds[m->index];
    if (kind == RGPU_CL_ARG_MEM || (kind == RGPU_CL_ARG_UNKNOWN && m->kind == RGPU__CL_ARG_KIND__CL_ARG_MEM)) {
        /* Without argument info, an image may be what the kernel takes. */
        rgpu_cl_handle_t *mem = !m->mem ? NULL
                                : kind == RGPU_CL_ARG_MEM ? rgpu__cl_get_buffer(s, m->mem)
                                                          : rgpu__cl_get(s, m->mem, RGPU__CL_OBJECT_KIND__CL_OBJ_MEM);
        cl_mem value = mem ? mem->cl.mem : NULL;

        if (m->kind != RGPU__CL_ARG_KIND__CL_ARG_MEM || (m->mem && !mem)) {
            err = CL_INVALID_MEM_OBJECT;
            why = "the argument is a memory object: it takes a buffer of this session";
        } else if ((err = clSetKernelArg(k->cl.kernel, m->index, sizeof(value), &value)) == CL_SUCCESS) {
            rgpu__cl_hold_arg(s, k, m->index, mem);
        }
    } else if (kind == RGPU_CL_ARG_IMAGE) {
        rgpu_cl_handle_t *img = m->kind == RGPU__CL_ARG_KIND__CL_ARG_MEM ? rgpu__cl_get_image(s, m->mem) : NULL;

        /* PoCL 3.1 takes a buffer, or an image of another type, for any
         * image argument, and reads it as the image the kernel declares. */
        if (!img || img->image_type != k->arg_image[m->index]) {
            err = CL_INVALID_MEM_OBJECT;
            why = "the argument is an image: it takes an image of this session, of the type the kernel declares";
        } else if ((err = clSetKernelArg(k->cl.kernel, m->index, sizeof(img->cl.mem), &img->cl.mem)) ==
                   CL_SUCCESS) {
            rgpu__cl_hold_arg(s, k, m->index, img);
        }
    } else if (kind == RGPU_CL_ARG_SAMPLER) {
        rgpu_cl_handle_t *smp = m->kind == RGPU__CL_ARG_KIND__CL_ARG_SAMPLER
                                    ? rgpu__cl_get(s, m->sampler, RGPU__CL_OBJECT_KIND__CL_OBJ_SAMPLER)
                                    : NULL;

        if (!smp) {
            err = CL_INVALID_SAMPLER;
            why = "the argument is a sampler_t: it takes a sampler of this session";
        } else if ((err = clSetKernelArg(k->cl.kernel, m->index, sizeof(smp->cl.sampler), &smp->cl.sampler)) ==
                   CL_SUCCESS) {
            rgpu__cl_hold_arg(s, k, m->index, smp);
        }
    } else if (kind == RGPU_CL_ARG_LOCAL ||
               (kind == RGPU_CL_ARG_UNKNOWN && m->kind == RGPU__CL_ARG_KIND__CL_ARG_LOCAL)) {
        if (m->kind != RGPU__CL_ARG_KIND__CL_ARG_LOCAL) {
            err = CL_INVALID_ARG_VALUE;
            why = "the argument is __local: it takes a size and no value";
        } else if (m->local_size == 0) {
            err = CL_INVALID_ARG_SIZE;
        } else if (m->local_size > s->backend->max_local_mem) {
            /* PoCL 3.1 asserts (and takes the server down) at the launch. */
            err = CL_INVALID_ARG_SIZE;
            why = "more local memory than any device of the server has";
        } else if ((err = clSetKernelArg(k->cl.kernel, m->index, m->local_size, NULL)) == CL_SUCCESS) {
            k->local_total = k->local_total - k->arg_local[m->index] + m->local_size;
            k->arg_local[m->index] = m->local_size;
        }
    } else if (kind == RGPU_CL_ARG_OPAQUE) {
        err = CL_INVALID_ARG_VALUE;
        why = "device queues, device events and pipe reservations are not served by rgpu";
    } else if (m->kind != RGPU__CL_ARG_KIND__CL_ARG_VALUE) {
        err = CL_INVALID_ARG_VALUE;
        why = "the argument is a plain value";
    } else if (m->value.len == 0) {
        err = CL_INVALID_ARG_SIZE;
    } else if (kind == RGPU_CL_ARG_UNKNOWN && m->value.len == sizeof(void *)) {
        err = CL_INVALID_ARG_VALUE;
        why = "the platform gives no argument info for this kernel, and a value of a pointer's size "
              "could be taken for a memory object";
    } else {
        err = clSetKernelArg(k->cl.kernel, m->index, m->value.len, m->value.data);
    }
    return err == CL_SUCCESS ? RGPU_OK : rgpu__cl_async_error(s, hdr, err, why);
}
