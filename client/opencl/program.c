/*
 * Programs and kernels. Creating either needs no round trip; building,
 * compiling and linking do, and their reply carries everything later queries
 * need: per-device build status, options and log, and each kernel's name,
 * argument count and argument kinds. So clCreateKernel, clSetKernelArg and
 * most info queries are answered here.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "icd.h"
#include "include.h"

/* ---- program objects ---- */

static cl_program rgpu_cl_program_new(cl_context context, cl_uint num_devices, const cl_device_id *devices)
{
    cl_program program = calloc(1, sizeof(*program));

    if (!program)
        return NULL;
    if (!devices) {
        devices = context->devices;
        num_devices = context->num_devices;
    }
    program->devices = malloc(num_devices * sizeof(cl_device_id));
    program->builds = calloc(num_devices, sizeof(rgpu_cl_build_t));
    if (!program->devices || !program->builds) {
        free(program->devices);
        free(program->builds);
        free(program);
        return NULL;
    }
    memcpy(program->devices, devices, num_devices * sizeof(cl_device_id));
    program->num_devices = num_devices;
    for (cl_uint i = 0; i < num_devices; i++)
        program->builds[i].status = CL_BUILD_NONE;
    rgpu__cl_obj_init(&program->obj, RGPU_CL_MAGIC_PROGRAM, context->obj.server);
    program->context = context;
    pthread_mutex_init(&program->lock, NULL);
    return program;
}

static void rgpu_cl_program_free(cl_program program)
{
    for (cl_uint i = 0; i < program->num_devices; i++) {
        free(program->builds[i].log);
        free(program->builds[i].options);
    }
    if (program->kernels)
        rgpu__cl_build_reply__free_unpacked(program->kernels, NULL);
    program->obj.magic = RGPU_CL_MAGIC_DEAD;
    pthread_mutex_destroy(&program->lock);
    free(program->builds);
    free(program->devices);
    free(program->source);
    free(program);
}

static cl_int rgpu_cl_device_indices(cl_program program, cl_uint num, const cl_device_id *list, uint32_t **idx_p)
{
    uint32_t *idx;

    *idx_p = NULL;
    if ((num == 0) != (list == NULL))
        return CL_INVALID_VALUE;
    if (num == 0)
        return CL_SUCCESS;
    idx = malloc(num * sizeof(*idx));
    if (!idx)
        return CL_OUT_OF_HOST_MEMORY;
    for (cl_uint i = 0; i < num; i++) {
        int found = 0;
        for (cl_uint j = 0; j < program->num_devices; j++)
            found |= program->devices[j] == list[i];
        if (!found) {
            free(idx);
            return CL_INVALID_DEVICE;
        }
        idx[i] = list[i]->index;
    }
    *idx_p = idx;
    return CL_SUCCESS;
}

/* Argument kinds come from the platform's argument info, which some
 * platforms keep only when the options ask for it: PoCL 3.1 drops it for
 * any non-NULL options without this one ("" included, and a program from a
 * binary too). Builds and compiles ask for it; the application sees its own
 * options (see rgpu_cl_options_strip). */
#define RGPU_CL_ARG_INFO_OPTION "-cl-kernel-arg-info"

/* Does options hold opt as a whole word? */
static int rgpu_cl_options_have(const char *options, const char *opt)
{
    size_t len = strlen(opt);

    for (const char *at = strstr(options, opt); at; at = strstr(at + 1, opt)) {
        if ((at == options || at[-1] == ' ' || at[-1] == '\t') &&
            (at[len] == '\0' || at[len] == ' ' || at[len] == '\t'))
            return 1;
    }
    return 0;
}

/* The options sent to the server: the application's, with the argument-info
 * option appended unless they have it. *added_p is what was appended ("" if
 * nothing), for rgpu_cl_options_strip. NULL when out of memory. */
static char *rgpu_cl_options_for_server(const char *options, const char **added_p)
{
    char *out;

    if (!options)
        options = "";
    *added_p = "";
    if (rgpu_cl_options_have(options, RGPU_CL_ARG_INFO_OPTION))
        return strdup(options);
    *added_p = *options ? " " RGPU_CL_ARG_INFO_OPTION : RGPU_CL_ARG_INFO_OPTION;
    out = malloc(strlen(options) + strlen(*added_p) + 1);
    if (out)
        sprintf(out, "%s%s", options, *added_p);
    return out;
}

/* Removes what rgpu_cl_options_for_server appended from the options a
 * platform reports, so CL_PROGRAM_BUILD_OPTIONS says what the application
 * gave. */
static void rgpu_cl_options_strip(char *options, const char *added)
{
    size_t len, added_len = strlen(added);

    if (!options || !added_len)
        return;
    len = strlen(options);
    if (len >= added_len && strcmp(options + len - added_len, added) == 0)
        options[len - added_len] = '\0';
}

/* What a build or compile sends beside the program and its devices, and
 * what the application gave. */
typedef struct {
    char *options;              /* for the server: no -I, the argument-info option added */
    const char *added;          /* what the client appended to them ("" if nothing) */
    char *stripped;             /* the application's options without -I; NULL when they had none */
    const char *original;       /* the application's options ("" for none) */
    char *inlined;              /* the source with the application's headers inlined, or NULL */
    const char *source;         /* for the request's source field ("": the server keeps its source) */
} rgpu_cl_build_opts_t;

static void rgpu_cl_build_opts_free(rgpu_cl_build_opts_t *b)
{
    free(b->options);
    free(b->stripped);
    free(b->inlined);
}

/* Prepares a build or compile (include.h): takes the -I options out of
 * options and inlines the headers they, and the working directory,
 * provide into the program's source (programs from source only). embedded:
 * clCompileProgram's header names, left to the server. Returns CL_SUCCESS
 * with *b set (free it with rgpu_cl_build_opts_free), invalid_options for
 * a malformed -I, failure when a header cannot be read or a limit is
 * passed (why says which), or CL_OUT_OF_HOST_MEMORY. */
static cl_int rgpu_cl_build_prepare(cl_program program, const char *options, const char *const *embedded,
                                    size_t n_embedded, cl_int invalid_options, cl_int failure,
                                    rgpu_cl_build_opts_t *b, char *why, size_t why_cap)
{
    rgpu_cl_include_opts_t opts;
    rgpu_cl_include_cfg_t cfg = {0};
    rgpu_status_t status;

    memset(b, 0, sizeof(*b));
    b->original = options ? options : "";
    b->added = "";
    b->source = "";
    status = rgpu__cl_include_opts_parse(options, &opts, why, why_cap);
    if (status != RGPU_OK)
        return status == RGPU_ERR_NOMEM ? CL_OUT_OF_HOST_MEMORY : invalid_options;
    if (program->source) {
        cfg.dirs = (const char *const *)opts.dirs;
        cfg.n_dirs = opts.n_dirs;
        cfg.embedded = embedded;
        cfg.n_embedded = n_embedded;
        cfg.options = options;         /* -D/-U: macros an #include operand may use */
        status = rgpu__cl_include_inline(program->source, strlen(program->source), &cfg, &b->inlined, why, why_cap);
        if (status != RGPU_OK) {
            rgpu__cl_include_opts_free(&opts);
            return status == RGPU_ERR_NOMEM ? CL_OUT_OF_HOST_MEMORY : failure;
        }
    }
    if (opts.n_dirs) {
        b->stripped = opts.options;
        opts.options = NULL;
    }
    rgpu__cl_include_opts_free(&opts);
    b->options = rgpu_cl_options_for_server(b->stripped ? b->stripped : options, &b->added);
    if (!b->options) {
        rgpu_cl_build_opts_free(b);
        return CL_OUT_OF_HOST_MEMORY;
    }
    pthread_mutex_lock(&program->lock);
    if (b->inlined || program->source_sent) {
        b->source = b->inlined ? b->inlined : program->source;
        program->source_sent = 1;
    }
    pthread_mutex_unlock(&program->lock);
    return CL_SUCCESS;
}

/* A build or compile that failed here, before the server saw it: the
 * devices it was for (all when n is 0) report an error with why in their
 * log, and the program has no executable. */
static void rgpu_cl_program_fail(cl_program program, cl_uint n, const uint32_t *idx, const char *options,
                                 const char *why)
{
    static const char prefix[] = "rgpu (client): ";

    pthread_mutex_lock(&program->lock);
    for (cl_uint d = 0; d < program->num_devices; d++) {
        rgpu_cl_build_t *build = &program->builds[d];
        int listed = n == 0;
        for (cl_uint i = 0; i < n; i++)
            listed |= idx[i] == program->devices[d]->index;
        if (!listed)
            continue;
        build->status = CL_BUILD_ERROR;
        free(build->log);
        free(build->options);
        build->log = malloc(sizeof(prefix) + strlen(why) + 1);
        if (build->log)
            sprintf(build->log, "%s%s\n", prefix, why);
        build->options = strdup(options ? options : "");
    }
    if (program->kernels)
        rgpu__cl_build_reply__free_unpacked(program->kernels, NULL);
    program->kernels = NULL;
    pthread_mutex_unlock(&program->lock);
}

/* Takes a build/compile/link reply into the program's cache. sent: what a
 * build or compile sent (NULL for a link). */
static void rgpu_cl_program_apply(cl_program program, Rgpu__ClBuildReply *reply, const rgpu_cl_build_opts_t *sent)
{
    const char *added = sent ? sent->added : "";

    pthread_mutex_lock(&program->lock);
    for (size_t b = 0; b < reply->n_builds; b++) {
        const Rgpu__ClDeviceBuild *db = reply->builds[b];
        for (cl_uint d = 0; d < program->num_devices; d++) {
            rgpu_cl_build_t *build = &program->builds[d];
            if (program->devices[d]->index != db->device)
                continue;
            build->status = db->status;
            build->binary_type = db->binary_type;
            free(build->log);
            free(build->options);
            build->log = strdup(db->log);
            build->options = strdup(db->options);
            rgpu_cl_options_strip(build->options, added);
            /* The application sees the -I options it gave. */
            if (sent && sent->stripped && build->options && strcmp(build->options, sent->stripped) == 0) {
                free(build->options);
                build->options = strdup(sent->original);
            }
        }
    }
    if (program->kernels)
        rgpu__cl_build_reply__free_unpacked(program->kernels, NULL);
    /* Kernels exist only when something built an executable. */
    program->kernels = reply->cl_error == CL_SUCCESS && reply->n_kernels ? reply : NULL;
    pthread_mutex_unlock(&program->lock);
    if (!program->kernels)
        rgpu__cl_build_reply__free_unpacked(reply, NULL);
}

/* Runs build, compile or link on the server and caches the outcome. b:
 * what a build or compile sent (NULL for a link). */
static cl_int rgpu_cl_program_call(cl_program program, Rgpu__MsgType type, const ProtobufCMessage *msg,
                                   const rgpu_cl_build_opts_t *b)
{
    Rgpu__ClBuildReply *reply;
    rgpu_call_t call = {0};
    cl_int err;

    err = rgpu__cl_call(program->obj.server, type, msg, NULL, 0, RGPU__MSG_TYPE__MSG_CL_BUILD_REPLY, &call);
    if (err != CL_SUCCESS)
        return err;
    reply = rgpu__cl_build_reply__unpack(NULL, call.body_len, call.body);
    rgpu_call_cleanup(&call);
    if (!reply)
        return RGPU_CL_LINK_ERROR;
    err = reply->cl_error;
    rgpu_cl_program_apply(program, reply, b);
    return err;
}

cl_program CL_API_CALL rgpu_clCreateProgramWithSource(cl_context context, cl_uint count, const char **strings,
                                                      const size_t *lengths, cl_int *errcode_ret)
{
    Rgpu__ClCreateProgramSource req = RGPU__CL_CREATE_PROGRAM_SOURCE__INIT;
    cl_program program = NULL;
    size_t total = 0, at = 0;
    cl_int err;

    if (!RGPU_CL_VALID(context, CONTEXT)) {
        err = CL_INVALID_CONTEXT;
        goto out;
    }
    if (count == 0 || !strings) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    for (cl_uint i = 0; i < count; i++) {
        if (!strings[i]) {
            err = CL_INVALID_VALUE;
            goto out;
        }
        total += lengths && lengths[i] ? lengths[i] : strlen(strings[i]);
    }
    program = rgpu_cl_program_new(context, 0, NULL);
    if (!program || !(program->source = malloc(total + 1))) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out_free;
    }
    for (cl_uint i = 0; i < count; i++) {
        size_t len = lengths && lengths[i] ? lengths[i] : strlen(strings[i]);
        memcpy(program->source + at, strings[i], len);
        at += len;
    }
    program->source[total] = '\0';
    req.id = program->obj.id;
    req.context = context->obj.id;
    req.source = program->source;
    err = rgpu__cl_post(program->obj.server, RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_SOURCE, &req.base, NULL, 0);
    if (err != CL_SUCCESS)
        goto out_free;
    rgpu__cl_context_retain(context);
    goto out;

out_free:
    if (program)
        rgpu_cl_program_free(program);
    program = NULL;
out:
    if (errcode_ret)
        *errcode_ret = err;
    return program;
}

cl_program CL_API_CALL rgpu_clCreateProgramWithBinary(cl_context context, cl_uint num_devices,
                                                      const cl_device_id *devices, const size_t *lengths,
                                                      const unsigned char **binaries, cl_int *binary_status,
                                                      cl_int *errcode_ret)
{
    Rgpu__ClCreateProgramBinary req = RGPU__CL_CREATE_PROGRAM_BINARY__INIT;
    Rgpu__ClProgramBinaryReply *reply = NULL;
    rgpu_call_t call = {0};
    cl_program program = NULL;
    uint32_t *idx = NULL;
    uint64_t *lens = NULL;
    unsigned char *bulk = NULL;
    size_t total = 0, at = 0;
    cl_int err;

    if (!RGPU_CL_VALID(context, CONTEXT)) {
        err = CL_INVALID_CONTEXT;
        goto out;
    }
    if (num_devices == 0 || !devices || !lengths || !binaries) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    for (cl_uint i = 0; i < num_devices; i++) {
        if (!lengths[i] || !binaries[i]) {
            err = CL_INVALID_VALUE;
            goto out;
        }
        total += lengths[i];
    }
    program = rgpu_cl_program_new(context, num_devices, devices);
    if (!program) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out;
    }
    if ((err = rgpu_cl_device_indices(program, num_devices, devices, &idx)) != CL_SUCCESS) {
        /* A device outside the context. */
        goto out_free;
    }
    lens = malloc(num_devices * sizeof(*lens));
    bulk = malloc(total);
    if (!lens || !bulk) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out_free;
    }
    for (cl_uint i = 0; i < num_devices; i++) {
        lens[i] = lengths[i];
        memcpy(bulk + at, binaries[i], lengths[i]);
        at += lengths[i];
    }
    req.id = program->obj.id;
    req.context = context->obj.id;
    req.n_devices = num_devices;
    req.devices = idx;
    req.n_lengths = num_devices;
    req.lengths = lens;
    err = rgpu__cl_call(program->obj.server, RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_BINARY, &req.base, bulk, total,
                        RGPU__MSG_TYPE__MSG_CL_PROGRAM_BINARY_REPLY, &call);
    if (err != CL_SUCCESS)
        goto out_free;
    reply = rgpu__cl_program_binary_reply__unpack(NULL, call.body_len, call.body);
    rgpu_call_cleanup(&call);
    if (!reply) {
        err = RGPU_CL_LINK_ERROR;
        goto out_free;
    }
    err = reply->cl_error;
    if (binary_status) {
        for (cl_uint i = 0; i < num_devices; i++)
            binary_status[i] = i < reply->n_binary_status ? reply->binary_status[i] : err;
    }
    rgpu__cl_program_binary_reply__free_unpacked(reply, NULL);
    if (err != CL_SUCCESS)
        goto out_free;
    rgpu__cl_context_retain(context);
    goto out;

out_free:
    if (program)
        rgpu_cl_program_free(program);
    program = NULL;
out:
    free(idx);
    free(lens);
    free(bulk);
    if (errcode_ret)
        *errcode_ret = err;
    return program;
}

cl_int CL_API_CALL rgpu_clRetainProgram(cl_program program)
{
    if (!RGPU_CL_VALID(program, PROGRAM))
        return CL_INVALID_PROGRAM;
    atomic_fetch_add(&program->obj.refs, 1);
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clReleaseProgram(cl_program program)
{
    cl_context context;

    if (!RGPU_CL_VALID(program, PROGRAM))
        return CL_INVALID_PROGRAM;
    if (atomic_fetch_sub(&program->obj.refs, 1) != 1)
        return CL_SUCCESS;
    rgpu__cl_remote_release(program->obj.server, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM, program->obj.id);
    context = program->context;
    rgpu_cl_program_free(program);
    rgpu__cl_context_release(context);
    return CL_SUCCESS;
}

typedef void(CL_CALLBACK *rgpu_cl_program_notify_fn)(cl_program, void *);

cl_int CL_API_CALL rgpu_clBuildProgram(cl_program program, cl_uint num_devices, const cl_device_id *devices,
                                       const char *options, rgpu_cl_program_notify_fn notify, void *data)
{
    Rgpu__ClBuildProgram req = RGPU__CL_BUILD_PROGRAM__INIT;
    rgpu_cl_build_opts_t b;
    char why[512] = "";
    uint32_t *idx;
    cl_int err;

    if (!RGPU_CL_VALID(program, PROGRAM))
        return CL_INVALID_PROGRAM;
    if (!notify && data)
        return CL_INVALID_VALUE;
    if (atomic_load(&program->num_kernel_objects) > 0)
        return CL_INVALID_OPERATION;
    if ((err = rgpu_cl_device_indices(program, num_devices, devices, &idx)) != CL_SUCCESS)
        return err;
    err = rgpu_cl_build_prepare(program, options, NULL, 0, CL_INVALID_BUILD_OPTIONS, CL_BUILD_PROGRAM_FAILURE, &b,
                                why, sizeof(why));
    if (err == CL_INVALID_BUILD_OPTIONS || err == CL_OUT_OF_HOST_MEMORY) {
        if (err == CL_INVALID_BUILD_OPTIONS)
            rgpu_cl_program_fail(program, num_devices, idx, options, why);
        free(idx);
        return err;
    }
    if (err == CL_SUCCESS) {
        req.program = program->obj.id;
        req.n_devices = num_devices;
        req.devices = idx;
        req.options = b.options;
        req.source = (char *)b.source;
        err = rgpu_cl_program_call(program, RGPU__MSG_TYPE__MSG_CL_BUILD_PROGRAM, &req.base, &b);
        rgpu_cl_build_opts_free(&b);
    } else {
        rgpu_cl_program_fail(program, num_devices, idx, options, why);
    }
    free(idx);
    /* The build is finished when the callback runs, as the API allows. */
    if (notify && err != RGPU_CL_LINK_ERROR)
        notify(program, data);
    return err;
}

cl_int CL_API_CALL rgpu_clCompileProgram(cl_program program, cl_uint num_devices, const cl_device_id *devices,
                                         const char *options, cl_uint num_headers, const cl_program *headers,
                                         const char **header_names, rgpu_cl_program_notify_fn notify, void *data)
{
    Rgpu__ClCompileProgram req = RGPU__CL_COMPILE_PROGRAM__INIT;
    uint64_t *header_ids = NULL;
    rgpu_cl_build_opts_t b;
    char why[512] = "";
    uint32_t *idx;
    cl_int err;

    if (!RGPU_CL_VALID(program, PROGRAM))
        return CL_INVALID_PROGRAM;
    if ((!notify && data) || (num_headers == 0) != (headers == NULL) || (num_headers && !header_names))
        return CL_INVALID_VALUE;
    if (!program->source)
        return CL_INVALID_OPERATION;
    if (atomic_load(&program->num_kernel_objects) > 0)
        return CL_INVALID_OPERATION;
    if ((err = rgpu_cl_device_indices(program, num_devices, devices, &idx)) != CL_SUCCESS)
        return err;
    if (num_headers && !(header_ids = malloc(num_headers * sizeof(*header_ids)))) {
        free(idx);
        return CL_OUT_OF_HOST_MEMORY;
    }
    for (cl_uint i = 0; i < num_headers; i++) {
        if (!RGPU_CL_VALID(headers[i], PROGRAM)) {
            free(idx);
            free(header_ids);
            return CL_INVALID_VALUE;
        }
        header_ids[i] = headers[i]->obj.id;
    }
    err = rgpu_cl_build_prepare(program, options, header_names, num_headers, CL_INVALID_COMPILER_OPTIONS,
                                CL_COMPILE_PROGRAM_FAILURE, &b, why, sizeof(why));
    if (err == CL_INVALID_COMPILER_OPTIONS || err == CL_OUT_OF_HOST_MEMORY) {
        if (err == CL_INVALID_COMPILER_OPTIONS)
            rgpu_cl_program_fail(program, num_devices, idx, options, why);
        free(idx);
        free(header_ids);
        return err;
    }
    if (err == CL_SUCCESS) {
        req.program = program->obj.id;
        req.n_devices = num_devices;
        req.devices = idx;
        req.options = b.options;
        req.source = (char *)b.source;
        req.n_headers = num_headers;
        req.headers = header_ids;
        req.n_header_names = num_headers;
        req.header_names = (char **)header_names;
        err = rgpu_cl_program_call(program, RGPU__MSG_TYPE__MSG_CL_COMPILE_PROGRAM, &req.base, &b);
        rgpu_cl_build_opts_free(&b);
    } else {
        rgpu_cl_program_fail(program, num_devices, idx, options, why);
    }
    free(idx);
    free(header_ids);
    if (notify && err != RGPU_CL_LINK_ERROR)
        notify(program, data);
    return err;
}

cl_program CL_API_CALL rgpu_clLinkProgram(cl_context context, cl_uint num_devices, const cl_device_id *devices,
                                          const char *options, cl_uint num_programs, const cl_program *programs,
                                          rgpu_cl_program_notify_fn notify, void *data, cl_int *errcode_ret)
{
    Rgpu__ClLinkProgram req = RGPU__CL_LINK_PROGRAM__INIT;
    cl_program program = NULL;
    uint64_t *ids = NULL;
    uint32_t *idx = NULL;
    cl_int err;

    if (!RGPU_CL_VALID(context, CONTEXT)) {
        err = CL_INVALID_CONTEXT;
        goto out;
    }
    if (num_programs == 0 || !programs || (!notify && data) || (num_devices == 0) != (devices == NULL)) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    program = rgpu_cl_program_new(context, num_devices, devices);
    ids = malloc(num_programs * sizeof(*ids));
    if (!program || !ids) {
        err = CL_OUT_OF_HOST_MEMORY;
        goto out_free;
    }
    for (cl_uint i = 0; i < num_programs; i++) {
        if (!RGPU_CL_VALID(programs[i], PROGRAM) || programs[i]->context != context) {
            err = CL_INVALID_PROGRAM;
            goto out_free;
        }
        ids[i] = programs[i]->obj.id;
    }
    if ((err = rgpu_cl_device_indices(program, num_devices, devices, &idx)) != CL_SUCCESS)
        goto out_free;
    req.id = program->obj.id;
    req.context = context->obj.id;
    req.n_devices = num_devices;
    req.devices = idx;
    req.options = (char *)(options ? options : "");
    req.n_programs = num_programs;
    req.programs = ids;
    /* Link options are a narrower set: the argument info comes from the
     * compiles (rgpu_clCompileProgram asked for it). */
    err = rgpu_cl_program_call(program, RGPU__MSG_TYPE__MSG_CL_LINK_PROGRAM, &req.base, NULL);
    /* A failed link still gives a program whose log says why. */
    if (err != CL_SUCCESS && err != CL_LINK_PROGRAM_FAILURE)
        goto out_free;
    rgpu__cl_context_retain(context);
    if (notify)
        notify(program, data);
    goto out;

out_free:
    if (program)
        rgpu_cl_program_free(program);
    program = NULL;
out:
    free(ids);
    free(idx);
    if (errcode_ret)
        *errcode_ret = err;
    return program;
}

static cl_int rgpu_cl_program_binaries(cl_program program, size_t size, void *value, size_t *size_ret)
{
    size_t n = program->num_devices, *sizes, ptrs_size = n * sizeof(unsigned char *);
    unsigned char **dst = value;
    unsigned char *all = NULL;
    size_t total = 0, at = 0, got = 0;
    cl_int err;

    if (size_ret)
        *size_ret = ptrs_size;
    if (!value)
        return CL_SUCCESS;
    if (size < ptrs_size)
        return CL_INVALID_VALUE;
    sizes = calloc(n, sizeof(*sizes));
    if (!sizes)
        return CL_OUT_OF_HOST_MEMORY;
    err = rgpu__cl_remote_info(program->obj.server, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM, program->obj.id,
                               RGPU__CL_INFO_WHICH__CL_INFO_OBJECT, CL_PROGRAM_BINARY_SIZES, 0, n * sizeof(*sizes),
                               sizes, &got);
    /* The server's answers are checked before they size anything. */
    if (err == CL_SUCCESS && got != n * sizeof(*sizes))
        err = RGPU_CL_LINK_ERROR;
    for (size_t i = 0; err == CL_SUCCESS && i < n; i++) {
        if (__builtin_add_overflow(total, sizes[i], &total))
            err = RGPU_CL_LINK_ERROR;
    }
    if (err == CL_SUCCESS && total) {
        all = malloc(total);
        err = all ? rgpu__cl_remote_info(program->obj.server, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM,
                                         program->obj.id, RGPU__CL_INFO_WHICH__CL_INFO_OBJECT,
                                         CL_PROGRAM_BINARIES, 0, total, all, &got)
                  : CL_OUT_OF_HOST_MEMORY;
        if (err == CL_SUCCESS && got != total)
            err = RGPU_CL_LINK_ERROR;
    }
    for (size_t i = 0; err == CL_SUCCESS && i < n; i++) {
        if (dst[i])
            memcpy(dst[i], all + at, sizes[i]);
        at += sizes[i];
    }
    free(all);
    free(sizes);
    return err;
}

cl_int CL_API_CALL rgpu_clGetProgramInfo(cl_program program, cl_program_info param, size_t size, void *value,
                                         size_t *size_ret)
{
    cl_int err;

    if (!RGPU_CL_VALID(program, PROGRAM))
        return CL_INVALID_PROGRAM;
    switch (param) {
    case CL_PROGRAM_REFERENCE_COUNT: {
        cl_uint refs = atomic_load(&program->obj.refs);
        return rgpu__cl_info(&refs, sizeof(refs), size, value, size_ret);
    }
    case CL_PROGRAM_CONTEXT:
        return rgpu__cl_info(&program->context, sizeof(cl_context), size, value, size_ret);
    case CL_PROGRAM_NUM_DEVICES:
        return rgpu__cl_info(&program->num_devices, sizeof(cl_uint), size, value, size_ret);
    case CL_PROGRAM_DEVICES:
        return rgpu__cl_info(program->devices, program->num_devices * sizeof(cl_device_id), size, value,
                             size_ret);
    case CL_PROGRAM_SOURCE:
        return rgpu__cl_info_str(program->source ? program->source : "", size, value, size_ret);
    case CL_PROGRAM_IL:
        return rgpu__cl_info(NULL, 0, size, value, size_ret);
    case CL_PROGRAM_BINARIES:
        return rgpu_cl_program_binaries(program, size, value, size_ret);
    case CL_PROGRAM_NUM_KERNELS:
    case CL_PROGRAM_KERNEL_NAMES: {
        size_t num, len = 0;
        char *names;
        pthread_mutex_lock(&program->lock);
        if (!program->kernels) {
            pthread_mutex_unlock(&program->lock);
            return CL_INVALID_PROGRAM_EXECUTABLE;
        }
        num = program->kernels->n_kernels;
        for (size_t i = 0; i < num; i++)
            len += strlen(program->kernels->kernels[i]->name) + 1;
        names = calloc(1, len + 1);
        for (size_t i = 0, at = 0; names && i < num; i++)
            at += (size_t)sprintf(names + at, "%s%s", i ? ";" : "", program->kernels->kernels[i]->name);
        pthread_mutex_unlock(&program->lock);
        if (!names)
            return CL_OUT_OF_HOST_MEMORY;
        err = param == CL_PROGRAM_NUM_KERNELS ? rgpu__cl_info(&num, sizeof(num), size, value, size_ret)
                                              : rgpu__cl_info_str(names, size, value, size_ret);
        free(names);
        return err;
    }
    default:
        return rgpu__cl_remote_info(program->obj.server, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM, program->obj.id,
                                    RGPU__CL_INFO_WHICH__CL_INFO_OBJECT, param, 0, size, value, size_ret);
    }
}

cl_int CL_API_CALL rgpu_clGetProgramBuildInfo(cl_program program, cl_device_id device, cl_program_build_info param,
                                              size_t size, void *value, size_t *size_ret)
{
    rgpu_cl_build_t *build = NULL;
    cl_int err;

    if (!RGPU_CL_VALID(program, PROGRAM))
        return CL_INVALID_PROGRAM;
    for (cl_uint i = 0; i < program->num_devices; i++) {
        if (program->devices[i] == device)
            build = &program->builds[i];
    }
    if (!build)
        return CL_INVALID_DEVICE;
    pthread_mutex_lock(&program->lock);
    switch (param) {
    case CL_PROGRAM_BUILD_STATUS:
        err = rgpu__cl_info(&build->status, sizeof(build->status), size, value, size_ret);
        break;
    case CL_PROGRAM_BUILD_OPTIONS:
        err = rgpu__cl_info_str(build->options ? build->options : "", size, value, size_ret);
        break;
    case CL_PROGRAM_BUILD_LOG:
        err = rgpu__cl_info_str(build->log ? build->log : "", size, value, size_ret);
        break;
    case CL_PROGRAM_BINARY_TYPE:
        err = rgpu__cl_info(&build->binary_type, sizeof(build->binary_type), size, value, size_ret);
        break;
    default:
        pthread_mutex_unlock(&program->lock);
        return rgpu__cl_remote_info(program->obj.server, RGPU__CL_OBJECT_KIND__CL_OBJ_PROGRAM, program->obj.id,
                                    RGPU__CL_INFO_WHICH__CL_INFO_PROGRAM_BUILD, param, device->index, size, value,
                                    size_ret);
    }
    pthread_mutex_unlock(&program->lock);
    return err;
}

/* ---- kernels ---- */

static cl_kernel rgpu_cl_kernel_new(cl_program program, const Rgpu__ClKernelDesc *desc, cl_int *err_p)
{
    Rgpu__ClCreateKernel req = RGPU__CL_CREATE_KERNEL__INIT;
    cl_kernel kernel = calloc(1, sizeof(*kernel));

    if (!kernel || !(kernel->arg_is_set = calloc(desc->num_args + 1, 1))) {
        free(kernel);
        *err_p = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    rgpu__cl_obj_init(&kernel->obj, RGPU_CL_MAGIC_KERNEL, program->obj.server);
    kernel->program = program;
    kernel->desc = desc;
    req.id = kernel->obj.id;
    req.program = program->obj.id;
    req.name = desc->name;
    *err_p = rgpu__cl_post(kernel->obj.server, RGPU__MSG_TYPE__MSG_CL_CREATE_KERNEL, &req.base, NULL, 0);
    if (*err_p != CL_SUCCESS) {
        free(kernel->arg_is_set);
        free(kernel);
        return NULL;
    }
    atomic_fetch_add(&program->obj.refs, 1);
    atomic_fetch_add(&program->num_kernel_objects, 1);
    return kernel;
}

cl_kernel CL_API_CALL rgpu_clCreateKernel(cl_program program, const char *name, cl_int *errcode_ret)
{
    const Rgpu__ClKernelDesc *desc = NULL;
    cl_kernel kernel = NULL;
    cl_int err = CL_SUCCESS;

    if (!RGPU_CL_VALID(program, PROGRAM)) {
        err = CL_INVALID_PROGRAM;
        goto out;
    }
    if (!name) {
        err = CL_INVALID_VALUE;
        goto out;
    }
    pthread_mutex_lock(&program->lock);
    if (!program->kernels)
        err = CL_INVALID_PROGRAM_EXECUTABLE;
    for (size_t i = 0; program->kernels && i < program->kernels->n_kernels; i++) {
        if (strcmp(program->kernels->kernels[i]->name, name) == 0)
            desc = program->kernels->kernels[i];
    }
    pthread_mutex_unlock(&program->lock);
    if (err == CL_SUCCESS && !desc)
        err = CL_INVALID_KERNEL_NAME;
    if (err == CL_SUCCESS)
        kernel = rgpu_cl_kernel_new(program, desc, &err);
out:
    if (errcode_ret)
        *errcode_ret = err;
    return kernel;
}

cl_int CL_API_CALL rgpu_clCreateKernelsInProgram(cl_program program, cl_uint num_kernels, cl_kernel *kernels,
                                                 cl_uint *num_ret)
{
    cl_uint n;
    cl_int err = CL_SUCCESS;

    if (!RGPU_CL_VALID(program, PROGRAM))
        return CL_INVALID_PROGRAM;
    pthread_mutex_lock(&program->lock);
    n = program->kernels ? (cl_uint)program->kernels->n_kernels : 0;
    pthread_mutex_unlock(&program->lock);
    if (!program->kernels)
        return CL_INVALID_PROGRAM_EXECUTABLE;
    if (kernels && num_kernels < n)
        return CL_INVALID_VALUE;
    for (cl_uint i = 0; kernels && i < n && err == CL_SUCCESS; i++) {
        kernels[i] = rgpu_cl_kernel_new(program, program->kernels->kernels[i], &err);
        if (err != CL_SUCCESS) {
            while (i-- > 0)
                rgpu_clReleaseKernel(kernels[i]);
        }
    }
    if (err == CL_SUCCESS && num_ret)
        *num_ret = n;
    return err;
}

cl_int CL_API_CALL rgpu_clRetainKernel(cl_kernel kernel)
{
    if (!RGPU_CL_VALID(kernel, KERNEL))
        return CL_INVALID_KERNEL;
    atomic_fetch_add(&kernel->obj.refs, 1);
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clReleaseKernel(cl_kernel kernel)
{
    cl_program program;

    if (!RGPU_CL_VALID(kernel, KERNEL))
        return CL_INVALID_KERNEL;
    if (atomic_fetch_sub(&kernel->obj.refs, 1) != 1)
        return CL_SUCCESS;
    rgpu__cl_remote_release(kernel->obj.server, RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL, kernel->obj.id);
    program = kernel->program;
    kernel->obj.magic = RGPU_CL_MAGIC_DEAD;
    free(kernel->arg_is_set);
    free(kernel);
    atomic_fetch_sub(&program->num_kernel_objects, 1);
    return rgpu_clReleaseProgram(program);
}

/* The size of a built-in scalar or vector type as CL_KERNEL_ARG_TYPE_NAME
 * names it ("ulong", "float4"), or 0 for any other type (structs, unions,
 * enums, typedefs): the platform checks those. A 3-vector takes 3 or 4
 * elements (alt_p): cl_float3 is a cl_float4, and which of the two a
 * platform accepts is its own business. */
static size_t rgpu_cl_builtin_size(const char *name, size_t *alt_p)
{
    static const struct {
        const char *name;
        size_t size;
    } scalars[] = {
        {"char", 1},  {"uchar", 1},  {"unsigned char", 1},  {"short", 2},         {"ushort", 2},
        {"unsigned short", 2},       {"half", 2},           {"int", 4},           {"uint", 4},
        {"unsigned int", 4},         {"float", 4},          {"long", 8},          {"ulong", 8},
        {"unsigned long", 8},        {"double", 8},
    };

    *alt_p = 0;
    for (size_t i = 0; i < sizeof(scalars) / sizeof(scalars[0]); i++) {
        size_t len = strlen(scalars[i].name);
        const char *rest = name + len;
        if (strncmp(name, scalars[i].name, len) != 0)
            continue;
        if (*rest == '\0')
            return scalars[i].size;
        if (strcmp(rest, "3") == 0) {
            *alt_p = 3 * scalars[i].size;
            return 4 * scalars[i].size;
        }
        if (strcmp(rest, "2") == 0 || strcmp(rest, "4") == 0 || strcmp(rest, "8") == 0 ||
            strcmp(rest, "16") == 0)
            return (size_t)atoi(rest) * scalars[i].size;
    }
    return 0;
}

/* Which kind of argument this is. What the kernel's signature says when the
 * platform told us (the server reports it after every build, programs from
 * binaries included); *type_size_p is then the size a VALUE must have, or 0
 * when only the platform knows. Without the signature, what the value looks
 * like: a NULL value with a size is local memory, 8 bytes holding the
 * address of one of our live buffers (or NULL) are that buffer, of a live
 * sampler that sampler. The bytes are looked up in the tables of live
 * objects, never dereferenced: they may be a 64-bit scalar. Images are
 * memory objects (the platform declares them __global). */
static Rgpu__ClArgKind rgpu_cl_arg_kind(cl_kernel kernel, cl_uint index, size_t size, const void *value,
                                        size_t *type_size_p, size_t *alt_size_p)
{
    const Rgpu__ClKernelDesc *desc = kernel->desc;
    cl_mem mem;

    *type_size_p = 0;
    *alt_size_p = 0;
    if (desc->arg_info_known && index < desc->n_args) {
        if (strcmp(desc->args[index]->type_name, "sampler_t") == 0)
            return RGPU__CL_ARG_KIND__CL_ARG_SAMPLER;
        switch (desc->args[index]->address_qualifier) {
        case CL_KERNEL_ARG_ADDRESS_LOCAL:
            return RGPU__CL_ARG_KIND__CL_ARG_LOCAL;
        case CL_KERNEL_ARG_ADDRESS_GLOBAL:
        case CL_KERNEL_ARG_ADDRESS_CONSTANT:
            return RGPU__CL_ARG_KIND__CL_ARG_MEM;
        default:
            *type_size_p = rgpu_cl_builtin_size(desc->args[index]->type_name, alt_size_p);
            return RGPU__CL_ARG_KIND__CL_ARG_VALUE;
        }
    }
    if (!value && size)
        return RGPU__CL_ARG_KIND__CL_ARG_LOCAL;
    if (size == sizeof(cl_mem) && value) {
        memcpy(&mem, value, sizeof(mem));
        if (!mem || rgpu__cl_live_has(&rgpu__cl_live_mems, mem))
            return RGPU__CL_ARG_KIND__CL_ARG_MEM;
        if (rgpu__cl_live_has(&rgpu__cl_live_samplers, mem))
            return RGPU__CL_ARG_KIND__CL_ARG_SAMPLER;
    }
    return RGPU__CL_ARG_KIND__CL_ARG_VALUE;
}

cl_int CL_API_CALL rgpu_clSetKernelArg(cl_kernel kernel, cl_uint index, size_t size, const void *value)
{
    Rgpu__ClSetKernelArg req = RGPU__CL_SET_KERNEL_ARG__INIT;
    size_t type_size, alt_size;
    cl_mem mem = NULL;
    cl_int err;

    if (!RGPU_CL_VALID(kernel, KERNEL))
        return CL_INVALID_KERNEL;
    if (index >= kernel->desc->num_args)
        return CL_INVALID_ARG_INDEX;
    req.kernel = kernel->obj.id;
    req.index = index;
    req.kind = rgpu_cl_arg_kind(kernel, index, size, value, &type_size, &alt_size);
    switch (req.kind) {
    case RGPU__CL_ARG_KIND__CL_ARG_LOCAL:
        if (value)
            return CL_INVALID_ARG_VALUE;
        if (size == 0)
            return CL_INVALID_ARG_SIZE;
        req.local_size = size;
        break;
    case RGPU__CL_ARG_KIND__CL_ARG_MEM:
        if (size != sizeof(cl_mem))
            return CL_INVALID_ARG_SIZE;
        /* A NULL value or a NULL handle is a NULL buffer. The handle may
         * be anything: it is only compared with our live buffers. */
        if (value)
            memcpy(&mem, value, sizeof(mem));
        if (mem && (!rgpu__cl_live_has(&rgpu__cl_live_mems, mem) || mem->context != kernel->program->context))
            return CL_INVALID_MEM_OBJECT;
        /* An image argument takes an image, a pointer a buffer (the server
         * checks the image's type too). */
        if (kernel->desc->arg_info_known && index < kernel->desc->n_args &&
            (strncmp(kernel->desc->args[index]->type_name, "image", 5) == 0) != (mem && mem->image_type != 0))
            return CL_INVALID_MEM_OBJECT;
        req.mem = mem ? mem->obj.id : 0;
        break;
    case RGPU__CL_ARG_KIND__CL_ARG_SAMPLER: {
        cl_sampler sampler = NULL;
        if (size != sizeof(cl_sampler))
            return CL_INVALID_ARG_SIZE;
        if (value)
            memcpy(&sampler, value, sizeof(sampler));
        if (!rgpu__cl_live_has(&rgpu__cl_live_samplers, sampler) ||
            sampler->context != kernel->program->context)
            return CL_INVALID_SAMPLER;
        req.sampler = sampler->obj.id;
        break;
    }
    default:
        if (!value)
            return CL_INVALID_ARG_VALUE;
        if (type_size && size != type_size && size != alt_size)
            return CL_INVALID_ARG_SIZE;
        req.value.data = (uint8_t *)value;
        req.value.len = size;
        break;
    }
    err = rgpu__cl_post(kernel->obj.server, RGPU__MSG_TYPE__MSG_CL_SET_KERNEL_ARG, &req.base, NULL, 0);
    if (err == CL_SUCCESS)
        kernel->arg_is_set[index] = 1;
    return err;
}

cl_int CL_API_CALL rgpu_clGetKernelInfo(cl_kernel kernel, cl_kernel_info param, size_t size, void *value,
                                        size_t *size_ret)
{
    if (!RGPU_CL_VALID(kernel, KERNEL))
        return CL_INVALID_KERNEL;
    switch (param) {
    case CL_KERNEL_FUNCTION_NAME:
        return rgpu__cl_info_str(kernel->desc->name, size, value, size_ret);
    case CL_KERNEL_NUM_ARGS:
        return rgpu__cl_info(&kernel->desc->num_args, sizeof(cl_uint), size, value, size_ret);
    case CL_KERNEL_REFERENCE_COUNT: {
        cl_uint refs = atomic_load(&kernel->obj.refs);
        return rgpu__cl_info(&refs, sizeof(refs), size, value, size_ret);
    }
    case CL_KERNEL_CONTEXT:
        return rgpu__cl_info(&kernel->program->context, sizeof(cl_context), size, value, size_ret);
    case CL_KERNEL_PROGRAM:
        return rgpu__cl_info(&kernel->program, sizeof(cl_program), size, value, size_ret);
    case CL_KERNEL_ATTRIBUTES:
        return rgpu__cl_info_str(kernel->desc->attributes, size, value, size_ret);
    default:
        return CL_INVALID_VALUE;
    }
}

cl_int CL_API_CALL rgpu_clGetKernelArgInfo(cl_kernel kernel, cl_uint index, cl_kernel_arg_info param, size_t size,
                                           void *value, size_t *size_ret)
{
    const Rgpu__ClKernelArg *arg;

    if (!RGPU_CL_VALID(kernel, KERNEL))
        return CL_INVALID_KERNEL;
    if (index >= kernel->desc->num_args)
        return CL_INVALID_ARG_INDEX;
    if (!kernel->desc->arg_info_known || index >= kernel->desc->n_args)
        return CL_KERNEL_ARG_INFO_NOT_AVAILABLE;
    arg = kernel->desc->args[index];
    switch (param) {
    case CL_KERNEL_ARG_ADDRESS_QUALIFIER: {
        cl_kernel_arg_address_qualifier q = arg->address_qualifier;
        return rgpu__cl_info(&q, sizeof(q), size, value, size_ret);
    }
    case CL_KERNEL_ARG_ACCESS_QUALIFIER: {
        cl_kernel_arg_access_qualifier q = arg->access_qualifier;
        return rgpu__cl_info(&q, sizeof(q), size, value, size_ret);
    }
    case CL_KERNEL_ARG_TYPE_QUALIFIER: {
        cl_kernel_arg_type_qualifier q = arg->type_qualifier;
        return rgpu__cl_info(&q, sizeof(q), size, value, size_ret);
    }
    case CL_KERNEL_ARG_TYPE_NAME:
        return rgpu__cl_info_str(arg->type_name, size, value, size_ret);
    case CL_KERNEL_ARG_NAME:
        return rgpu__cl_info_str(arg->name, size, value, size_ret);
    default:
        return CL_INVALID_VALUE;
    }
}

cl_int CL_API_CALL rgpu_clGetKernelWorkGroupInfo(cl_kernel kernel, cl_device_id device,
                                                 cl_kernel_work_group_info param, size_t size, void *value,
                                                 size_t *size_ret)
{
    if (!RGPU_CL_VALID(kernel, KERNEL))
        return CL_INVALID_KERNEL;
    if (!device) {
        if (kernel->program->num_devices != 1)
            return CL_INVALID_DEVICE;
        device = kernel->program->devices[0];
    }
    if (!RGPU_CL_VALID(device, DEVICE) || device->server != kernel->obj.server)
        return CL_INVALID_DEVICE;
    return rgpu__cl_remote_info(kernel->obj.server, RGPU__CL_OBJECT_KIND__CL_OBJ_KERNEL, kernel->obj.id,
                                RGPU__CL_INFO_WHICH__CL_INFO_KERNEL_WORK_GROUP, param, device->index, size, value,
                                size_ret);
}
