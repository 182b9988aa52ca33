/*
 * api_tour: one program that walks through the OpenCL 1.2 API a forwarding
 * ICD must get right, checking every step.
 *
 *   api_tour
 *
 * Runs on the first device of the first platform that has one (with
 * OCL_ICD_VENDORS pointing at one .icd, that platform). Each check prints
 * "ok" or "FAIL" with what was expected; a failed check ends its section, the
 * next section runs anyway. The last line is
 *   api_tour: N checks, M failed: PASS      (exit 0 only when M == 0)
 *
 * Not covered: images and samplers, OpenCL 2.x, extensions.
 */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <pthread.h>

#include "cl_util.h"

/* ------------------------------------------------------------------------ */
/* Check bookkeeping                                                         */

static int tour_checks, tour_failed;
static const char *tour_section = "";

static void section(const char *name)
{
    tour_section = name;
    printf("== %s\n", name);
    fflush(stdout);
}

static void pass(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void pass(const char *fmt, ...)
{
    va_list ap;

    tour_checks++;
    printf("  ok    ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

static void fail(int line, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(int line, const char *fmt, ...)
{
    va_list ap;

    tour_checks++;
    tour_failed++;
    printf("  FAIL  [%s, api_tour.c:%d] ", tour_section, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
}

/* Each macro records a failure and returns from the (void) section. */
#define TRY(call)                                                             \
    do {                                                                      \
        cl_int try_err_ = (call);                                             \
        if (try_err_ != CL_SUCCESS) {                                         \
            fail(__LINE__, "%s returned %s (%d)", #call, cl_err_name(try_err_), try_err_); \
            return;                                                           \
        }                                                                     \
    } while (0)

#define TRY_ERR(err, what)                                                    \
    do {                                                                      \
        if ((err) != CL_SUCCESS) {                                            \
            fail(__LINE__, "%s gave %s (%d)", (what), cl_err_name(err), (err)); \
            return;                                                           \
        }                                                                     \
    } while (0)

#define EXPECT(cond, ...)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fail(__LINE__, __VA_ARGS__);                                      \
            return;                                                           \
        }                                                                     \
    } while (0)

#define EXPECT_CL(call, want)                                                 \
    do {                                                                      \
        cl_int exp_err_ = (call);                                             \
        if (exp_err_ != (want)) {                                             \
            fail(__LINE__, "%s returned %s (%d), expected %s", #call,         \
                 cl_err_name(exp_err_), exp_err_, cl_err_name(want));         \
            return;                                                           \
        }                                                                     \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Shared state and helpers                                                  */

typedef struct {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;       /* in-order, no profiling */
    cl_command_queue prof_queue;  /* in-order, CL_QUEUE_PROFILING_ENABLE */
    cl_program program;           /* tour_source built with TOUR_OPTIONS */
    size_t align;                 /* CL_DEVICE_MEM_BASE_ADDR_ALIGN in bytes */
} tour_t;

#define TOUR_OPTIONS "-DSCALE=3 -cl-kernel-arg-info"

static const char *tour_source =
    "__kernel void scale(__global const float *in, __global float *out, float factor)\n"
    "{\n"
    "    size_t i = get_global_id(0);\n"
    "    out[i] = in[i] * factor * SCALE;\n"
    "}\n"
    "__kernel void write_gid(__global int *out)\n"
    "{\n"
    "    out[get_global_id(0)] = (int)get_global_id(0);\n"
    "}\n"
    "__kernel void write_gid2(__global int *out, uint width)\n"
    "{\n"
    "    size_t x = get_global_id(0), y = get_global_id(1);\n"
    "    out[y * width + x] = (int)(y * 1000 + x);\n"
    "}\n"
    "__kernel void local_sum(__global const int *in, __global int *out, __local int *scratch)\n"
    "{\n"
    "    size_t l = get_local_id(0), n = get_local_size(0);\n"
    "    scratch[l] = in[get_global_id(0)];\n"
    "    barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    for (size_t s = n / 2; s > 0; s /= 2) {\n"
    "        if (l < s)\n"
    "            scratch[l] += scratch[l + s];\n"
    "        barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    }\n"
    "    if (l == 0)\n"
    "        out[get_group_id(0)] = scratch[0];\n"
    "}\n"
    "__kernel void task_kernel(__global int *out, int value)\n"
    "{\n"
    "    out[0] = value;\n"
    "    out[1] = (int)get_global_size(0);\n"
    "}\n"
    "__kernel void add_one(__global int *buf)\n"
    "{\n"
    "    buf[get_global_id(0)] += 1;\n"
    "}\n"
    "__kernel __attribute__((reqd_work_group_size(8, 1, 1))) void fixed_wg(__global int *out)\n"
    "{\n"
    "    out[get_global_id(0)] = (int)get_local_size(0);\n"
    "}\n";

static const char *const tour_kernel_names[] = {
    "scale", "write_gid", "write_gid2", "local_sum", "task_kernel", "add_one", "fixed_wg",
};
#define TOUR_NUM_KERNELS (sizeof(tour_kernel_names) / sizeof(tour_kernel_names[0]))

/* A malloc'd string-valued info of any kind; NULL on failure (err_p says why). */
typedef cl_int (*info_fn_t)(const void *obj, cl_uint param, size_t size, void *value,
                            size_t *size_ret);

static cl_int platform_info_fn(const void *o, cl_uint p, size_t s, void *v, size_t *r)
{
    return clGetPlatformInfo((cl_platform_id)o, p, s, v, r);
}
static cl_int device_info_fn(const void *o, cl_uint p, size_t s, void *v, size_t *r)
{
    return clGetDeviceInfo((cl_device_id)o, p, s, v, r);
}
static cl_int program_info_fn(const void *o, cl_uint p, size_t s, void *v, size_t *r)
{
    return clGetProgramInfo((cl_program)o, p, s, v, r);
}
static cl_int kernel_info_fn(const void *o, cl_uint p, size_t s, void *v, size_t *r)
{
    return clGetKernelInfo((cl_kernel)o, p, s, v, r);
}

/* Queries the size, then the value; checks that the string's length
 * matches the size the platform announced. */
static char *info_str(info_fn_t fn, const void *obj, cl_uint param, cl_int *err_p)
{
    size_t size = 0, size2 = 0;
    char *s;

    *err_p = fn(obj, param, 0, NULL, &size);
    if (*err_p != CL_SUCCESS)
        return NULL;
    if (size == 0) {
        *err_p = CL_INVALID_VALUE;  /* a string has at least its NUL */
        return NULL;
    }
    s = calloc(1, size + 1);
    if (!s) {
        *err_p = CL_OUT_OF_HOST_MEMORY;
        return NULL;
    }
    *err_p = fn(obj, param, size, s, &size2);
    if (*err_p == CL_SUCCESS && (size2 != size || strlen(s) + 1 != size)) {
        *err_p = CL_INVALID_VALUE;
        free(s);
        return NULL;
    }
    if (*err_p != CL_SUCCESS) {
        free(s);
        return NULL;
    }
    return s;
}

static char *build_log(cl_program program, cl_device_id device)
{
    size_t size = 0;
    char *log;

    if (clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, NULL, &size) != CL_SUCCESS)
        return NULL;
    log = calloc(1, size + 1);
    if (log && clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, size, log, NULL) !=
                   CL_SUCCESS) {
        free(log);
        return NULL;
    }
    return log;
}

static cl_int event_status(cl_event ev)
{
    cl_int status = 12345;
    cl_int err = clGetEventInfo(ev, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof(status), &status,
                                NULL);

    return err == CL_SUCCESS ? status : err;
}

static cl_command_type event_type(cl_event ev)
{
    cl_command_type type = 0;

    clGetEventInfo(ev, CL_EVENT_COMMAND_TYPE, sizeof(type), &type, NULL);
    return type;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void fill_ints(cl_int *p, size_t n, cl_int base)
{
    for (size_t i = 0; i < n; i++)
        p[i] = base + (cl_int)i;
}

/* Index of the first element where p differs from base + i, or -1. */
static long diff_ints(const cl_int *p, size_t n, cl_int base)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != base + (cl_int)i)
            return (long)i;
    }
    return -1;
}

static int has_word(const char *list, const char *word, const char *seps)
{
    size_t len = strlen(word);

    for (const char *p = list; (p = strstr(p, word)) != NULL; p += len) {
        int starts = p == list || strchr(seps, p[-1]);
        int ends = p[len] == '\0' || strchr(seps, p[len]);
        if (starts && ends)
            return 1;
    }
    return 0;
}

/* Runs add_one over n ints of buf on queue and waits. */
static cl_int run_add_one(tour_t *t, cl_command_queue queue, cl_mem buf, size_t n)
{
    cl_int err;
    cl_kernel k = clCreateKernel(t->program, "add_one", &err);

    if (err != CL_SUCCESS)
        return err;
    err = clSetKernelArg(k, 0, sizeof(cl_mem), &buf);
    if (err == CL_SUCCESS)
        err = clEnqueueNDRangeKernel(queue, k, 1, NULL, &n, NULL, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = clFinish(queue);
    clReleaseKernel(k);
    return err;
}

/* ------------------------------------------------------------------------ */
/* Platform and device                                                       */

static void tour_platform(tour_t *t)
{
    cl_platform_id platforms[16];
    cl_uint nplatforms = 0, ndevices = 0, dims = 0, refcount = 0;
    cl_device_id devices[64];
    cl_device_type type = 0, types_present = 0;
    cl_platform_id dev_platform = NULL;
    cl_ulong global_mem = 0, local_mem = 0, max_alloc = 0;
    cl_uint compute_units = 0, align_bits = 0;
    cl_bool available = CL_FALSE, compiler = CL_FALSE;
    cl_command_queue_properties qprops = 0;
    size_t wg_size = 0, sizes[16], sizes_len = 0, small = 0;
    char *s, tiny[2];
    cl_int err;

    section("platform and device queries");
    TRY(clGetPlatformIDs(0, NULL, &nplatforms));
    EXPECT(nplatforms >= 1, "clGetPlatformIDs counts %u platforms", nplatforms);
    TRY(clGetPlatformIDs(16, platforms, NULL));
    pass("clGetPlatformIDs: %u platform(s)", nplatforms);
    EXPECT_CL(clGetPlatformIDs(0, platforms, NULL), CL_INVALID_VALUE);
    pass("clGetPlatformIDs(0 entries, non-NULL list) gives CL_INVALID_VALUE");

    t->platform = NULL;
    for (cl_uint i = 0; i < nplatforms && i < 16; i++) {
        if (clGetDeviceIDs(platforms[i], CL_DEVICE_TYPE_ALL, 1, &t->device, NULL) == CL_SUCCESS) {
            t->platform = platforms[i];
            break;
        }
    }
    EXPECT(t->platform, "no platform has a device");

    static const struct { cl_platform_info param; const char *name; } pstrs[] = {
        {CL_PLATFORM_NAME, "CL_PLATFORM_NAME"},
        {CL_PLATFORM_VENDOR, "CL_PLATFORM_VENDOR"},
        {CL_PLATFORM_VERSION, "CL_PLATFORM_VERSION"},
        {CL_PLATFORM_PROFILE, "CL_PLATFORM_PROFILE"},
        {CL_PLATFORM_EXTENSIONS, "CL_PLATFORM_EXTENSIONS"},
    };
    for (size_t i = 0; i < sizeof(pstrs) / sizeof(pstrs[0]); i++) {
        s = info_str(platform_info_fn, t->platform, pstrs[i].param, &err);
        TRY_ERR(err, pstrs[i].name);
        if (pstrs[i].param == CL_PLATFORM_VERSION)
            EXPECT(strncmp(s, "OpenCL ", 7) == 0, "platform version \"%s\" lacks \"OpenCL \"", s);
        if (pstrs[i].param == CL_PLATFORM_EXTENSIONS)
            EXPECT(has_word(s, "cl_khr_icd", " "), "platform extensions \"%s\" lack cl_khr_icd", s);
        pass("%s = \"%s\"", pstrs[i].name, s);
        free(s);
    }
    EXPECT_CL(clGetPlatformInfo(t->platform, 0x7777, 0, NULL, &small), CL_INVALID_VALUE);
    pass("clGetPlatformInfo(unknown param) gives CL_INVALID_VALUE");

    TRY(clGetDeviceIDs(t->platform, CL_DEVICE_TYPE_ALL, 0, NULL, &ndevices));
    EXPECT(ndevices >= 1, "CL_DEVICE_TYPE_ALL counts %u devices", ndevices);
    if (ndevices > 64)
        ndevices = 64;
    TRY(clGetDeviceIDs(t->platform, CL_DEVICE_TYPE_ALL, ndevices, devices, NULL));
    EXPECT(devices[0] == t->device, "the device list changed between two calls");
    for (cl_uint i = 0; i < ndevices; i++) {
        cl_device_type dt = 0;
        TRY(clGetDeviceInfo(devices[i], CL_DEVICE_TYPE, sizeof(dt), &dt, NULL));
        types_present |= dt;
    }
    pass("clGetDeviceIDs(CL_DEVICE_TYPE_ALL): %u device(s)", ndevices);
    {
        cl_device_id def;
        cl_uint ndef = 0;
        TRY(clGetDeviceIDs(t->platform, CL_DEVICE_TYPE_DEFAULT, 1, &def, &ndef));
        EXPECT(ndef == 1, "CL_DEVICE_TYPE_DEFAULT counts %u devices, expected 1", ndef);
        pass("clGetDeviceIDs(CL_DEVICE_TYPE_DEFAULT) gives one device");
    }
    {
        static const cl_device_type probe[] = {CL_DEVICE_TYPE_ACCELERATOR, CL_DEVICE_TYPE_GPU,
                                               CL_DEVICE_TYPE_CPU};
        for (size_t i = 0; i < 3; i++) {
            cl_device_id d;
            cl_uint nd = 99;
            if (types_present & probe[i])
                continue;
            EXPECT_CL(clGetDeviceIDs(t->platform, probe[i], 1, &d, &nd), CL_DEVICE_NOT_FOUND);
            pass("clGetDeviceIDs for a type no device has gives CL_DEVICE_NOT_FOUND");
            break;
        }
    }

    static const struct { cl_device_info param; const char *name; } dstrs[] = {
        {CL_DEVICE_NAME, "CL_DEVICE_NAME"},
        {CL_DEVICE_VENDOR, "CL_DEVICE_VENDOR"},
        {CL_DEVICE_VERSION, "CL_DEVICE_VERSION"},
        {CL_DRIVER_VERSION, "CL_DRIVER_VERSION"},
        {CL_DEVICE_OPENCL_C_VERSION, "CL_DEVICE_OPENCL_C_VERSION"},
        {CL_DEVICE_PROFILE, "CL_DEVICE_PROFILE"},
        {CL_DEVICE_EXTENSIONS, "CL_DEVICE_EXTENSIONS"},
    };
    for (size_t i = 0; i < sizeof(dstrs) / sizeof(dstrs[0]); i++) {
        s = info_str(device_info_fn, t->device, dstrs[i].param, &err);
        TRY_ERR(err, dstrs[i].name);
        if (dstrs[i].param == CL_DEVICE_EXTENSIONS) {
            pass("%s: %zu bytes%s", dstrs[i].name, strlen(s),
                 has_word(s, "cl_khr_global_int32_base_atomics", " ") ? ", has cl_khr_global_int32_base_atomics" : "");
        } else {
            pass("%s = \"%s\"", dstrs[i].name, s);
        }
        free(s);
    }

    TRY(clGetDeviceInfo(t->device, CL_DEVICE_TYPE, sizeof(type), &type, NULL));
    EXPECT(type != 0, "CL_DEVICE_TYPE is 0");
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_PLATFORM, sizeof(dev_platform), &dev_platform, NULL));
    EXPECT(dev_platform == t->platform, "CL_DEVICE_PLATFORM is not the platform it came from");
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof(compute_units),
                        &compute_units, NULL));
    EXPECT(compute_units >= 1, "CL_DEVICE_MAX_COMPUTE_UNITS = %u", compute_units);
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_MAX_WORK_ITEM_DIMENSIONS, sizeof(dims), &dims, NULL));
    EXPECT(dims >= 3 && dims <= 16, "CL_DEVICE_MAX_WORK_ITEM_DIMENSIONS = %u", dims);
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_MAX_WORK_ITEM_SIZES, 0, NULL, &sizes_len));
    EXPECT(sizes_len == dims * sizeof(size_t),
           "CL_DEVICE_MAX_WORK_ITEM_SIZES is %zu bytes, expected %u x size_t", sizes_len, dims);
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof(sizes), sizes, NULL));
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof(wg_size), &wg_size, NULL));
    EXPECT(wg_size >= 1 && sizes[0] >= 1 && sizes[1] >= 1 && sizes[2] >= 1,
           "max work-group size %zu, item sizes %zu x %zu x %zu", wg_size, sizes[0], sizes[1],
           sizes[2]);
    pass("CL_DEVICE_MAX_WORK_ITEM_SIZES = %zu x %zu x %zu, CL_DEVICE_MAX_WORK_GROUP_SIZE = %zu",
         sizes[0], sizes[1], sizes[2], wg_size);
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof(global_mem), &global_mem, NULL));
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof(local_mem), &local_mem, NULL));
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof(max_alloc), &max_alloc, NULL));
    EXPECT(global_mem > 0 && local_mem > 0 && max_alloc > 0 && max_alloc <= global_mem,
           "global %llu, local %llu, max alloc %llu bytes", (unsigned long long)global_mem,
           (unsigned long long)local_mem, (unsigned long long)max_alloc);
    pass("CL_DEVICE_GLOBAL_MEM_SIZE = %llu MiB, LOCAL_MEM_SIZE = %llu KiB, MAX_MEM_ALLOC_SIZE = %llu MiB",
         (unsigned long long)(global_mem >> 20), (unsigned long long)(local_mem >> 10),
         (unsigned long long)(max_alloc >> 20));
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof(align_bits), &align_bits,
                        NULL));
    EXPECT(align_bits >= 8 && align_bits % 8 == 0, "CL_DEVICE_MEM_BASE_ADDR_ALIGN = %u bits",
           align_bits);
    t->align = align_bits / 8;
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_AVAILABLE, sizeof(available), &available, NULL));
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_COMPILER_AVAILABLE, sizeof(compiler), &compiler, NULL));
    EXPECT(available && compiler, "device available %u, compiler available %u", available, compiler);
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_QUEUE_PROPERTIES, sizeof(qprops), &qprops, NULL));
    EXPECT(qprops & CL_QUEUE_PROFILING_ENABLE, "the device cannot profile (queue properties 0x%llx)",
           (unsigned long long)qprops);
    pass("CL_DEVICE_TYPE, PLATFORM, MAX_COMPUTE_UNITS (%u), MEM_BASE_ADDR_ALIGN (%u bits), "
         "AVAILABLE, COMPILER_AVAILABLE, QUEUE_PROPERTIES", compute_units, align_bits);

    EXPECT_CL(clGetDeviceInfo(t->device, 0x7777, sizeof(wg_size), &wg_size, NULL), CL_INVALID_VALUE);
    pass("clGetDeviceInfo(unknown param) gives CL_INVALID_VALUE");
    EXPECT_CL(clGetDeviceInfo(t->device, CL_DEVICE_NAME, sizeof(tiny), tiny, NULL), CL_INVALID_VALUE);
    pass("clGetDeviceInfo(CL_DEVICE_NAME into 2 bytes) gives CL_INVALID_VALUE");

    TRY(clRetainDevice(t->device));
    TRY(clReleaseDevice(t->device));
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_REFERENCE_COUNT, sizeof(refcount), &refcount, NULL));
    EXPECT(refcount == 1, "root device CL_DEVICE_REFERENCE_COUNT = %u", refcount);
    pass("clRetainDevice/clReleaseDevice on a root device; its reference count stays 1");
}

/* ------------------------------------------------------------------------ */
/* Contexts and queues                                                       */

static void tour_context(tour_t *t)
{
    cl_context_properties props[3] = {CL_CONTEXT_PLATFORM, (cl_context_properties)t->platform, 0};
    cl_context_properties got_props[8];
    cl_uint ndev = 0;
    cl_device_id dev = NULL;
    cl_context ctx2, qctx = NULL;
    cl_device_id qdev = NULL;
    cl_command_queue_properties qprops = 99;
    size_t size = 0;
    cl_int err;

    section("contexts and queues");
    t->context = clCreateContext(props, 1, &t->device, NULL, NULL, &err);
    TRY_ERR(err, "clCreateContext(CL_CONTEXT_PLATFORM)");
    TRY(clGetContextInfo(t->context, CL_CONTEXT_NUM_DEVICES, sizeof(ndev), &ndev, NULL));
    TRY(clGetContextInfo(t->context, CL_CONTEXT_DEVICES, sizeof(dev), &dev, NULL));
    EXPECT(ndev == 1 && dev == t->device, "context has %u devices, first %p (expected %p)", ndev,
           (void *)dev, (void *)t->device);
    TRY(clGetContextInfo(t->context, CL_CONTEXT_PROPERTIES, sizeof(got_props), got_props, &size));
    EXPECT(size == sizeof(props) && got_props[0] == CL_CONTEXT_PLATFORM &&
               got_props[1] == (cl_context_properties)t->platform && got_props[2] == 0,
           "CL_CONTEXT_PROPERTIES: %zu bytes, not the properties given", size);
    pass("clCreateContext; CL_CONTEXT_NUM_DEVICES, DEVICES and PROPERTIES");

    ctx2 = clCreateContextFromType(props, CL_DEVICE_TYPE_ALL, NULL, NULL, &err);
    TRY_ERR(err, "clCreateContextFromType(CL_DEVICE_TYPE_ALL)");
    TRY(clGetContextInfo(ctx2, CL_CONTEXT_NUM_DEVICES, sizeof(ndev), &ndev, NULL));
    EXPECT(ndev >= 1, "context from type has %u devices", ndev);
    TRY(clReleaseContext(ctx2));
    pass("clCreateContextFromType: %u device(s)", ndev);

    t->queue = clCreateCommandQueue(t->context, t->device, 0, &err);
    TRY_ERR(err, "clCreateCommandQueue(in order)");
    TRY(clGetCommandQueueInfo(t->queue, CL_QUEUE_CONTEXT, sizeof(qctx), &qctx, NULL));
    TRY(clGetCommandQueueInfo(t->queue, CL_QUEUE_DEVICE, sizeof(qdev), &qdev, NULL));
    TRY(clGetCommandQueueInfo(t->queue, CL_QUEUE_PROPERTIES, sizeof(qprops), &qprops, NULL));
    EXPECT(qctx == t->context && qdev == t->device && qprops == 0,
           "queue info: context %p, device %p, properties 0x%llx", (void *)qctx, (void *)qdev,
           (unsigned long long)qprops);
    pass("in-order queue; CL_QUEUE_CONTEXT, DEVICE, PROPERTIES");

    t->prof_queue = clCreateCommandQueue(t->context, t->device, CL_QUEUE_PROFILING_ENABLE, &err);
    TRY_ERR(err, "clCreateCommandQueue(CL_QUEUE_PROFILING_ENABLE)");
    TRY(clGetCommandQueueInfo(t->prof_queue, CL_QUEUE_PROPERTIES, sizeof(qprops), &qprops, NULL));
    EXPECT(qprops == CL_QUEUE_PROFILING_ENABLE, "profiling queue properties 0x%llx",
           (unsigned long long)qprops);
    pass("profiling queue; CL_QUEUE_PROPERTIES = CL_QUEUE_PROFILING_ENABLE");
}

/* ------------------------------------------------------------------------ */
/* Programs                                                                  */

static void tour_program_source(tour_t *t)
{
    size_t size = 0, nkernels = 0;
    cl_uint ndev = 0;
    cl_context pctx = NULL;
    cl_build_status status = CL_BUILD_NONE;
    cl_program_binary_type btype = 0;
    char *s;
    cl_int err;

    section("programs from source");
    t->program = clCreateProgramWithSource(t->context, 1, &tour_source, NULL, &err);
    TRY_ERR(err, "clCreateProgramWithSource");
    err = clBuildProgram(t->program, 1, &t->device, TOUR_OPTIONS, NULL, NULL);
    if (err != CL_SUCCESS) {
        char *log = build_log(t->program, t->device);
        fail(__LINE__, "clBuildProgram(\"%s\") returned %s; log:\n%s", TOUR_OPTIONS,
             cl_err_name(err), log ? log : "(none)");
        free(log);
        clReleaseProgram(t->program);
        t->program = NULL;
        return;
    }
    pass("clBuildProgram with options \"%s\"", TOUR_OPTIONS);

    TRY(clGetProgramInfo(t->program, CL_PROGRAM_CONTEXT, sizeof(pctx), &pctx, NULL));
    TRY(clGetProgramInfo(t->program, CL_PROGRAM_NUM_DEVICES, sizeof(ndev), &ndev, NULL));
    EXPECT(pctx == t->context && ndev == 1, "program context %p, %u devices", (void *)pctx, ndev);
    s = info_str(program_info_fn, t->program, CL_PROGRAM_SOURCE, &err);
    TRY_ERR(err, "clGetProgramInfo(CL_PROGRAM_SOURCE)");
    EXPECT(strcmp(s, tour_source) == 0, "CL_PROGRAM_SOURCE differs from the source given");
    free(s);
    pass("CL_PROGRAM_CONTEXT, NUM_DEVICES, SOURCE");

    TRY(clGetProgramInfo(t->program, CL_PROGRAM_NUM_KERNELS, sizeof(nkernels), &nkernels, NULL));
    EXPECT(nkernels == TOUR_NUM_KERNELS, "CL_PROGRAM_NUM_KERNELS = %zu, expected %zu", nkernels,
           TOUR_NUM_KERNELS);
    s = info_str(program_info_fn, t->program, CL_PROGRAM_KERNEL_NAMES, &err);
    TRY_ERR(err, "clGetProgramInfo(CL_PROGRAM_KERNEL_NAMES)");
    for (size_t i = 0; i < TOUR_NUM_KERNELS; i++)
        EXPECT(has_word(s, tour_kernel_names[i], ";"), "CL_PROGRAM_KERNEL_NAMES \"%s\" lacks %s", s,
               tour_kernel_names[i]);
    pass("CL_PROGRAM_NUM_KERNELS = %zu, CL_PROGRAM_KERNEL_NAMES = \"%s\"", nkernels, s);
    free(s);

    TRY(clGetProgramBuildInfo(t->program, t->device, CL_PROGRAM_BUILD_STATUS, sizeof(status),
                              &status, NULL));
    EXPECT(status == CL_BUILD_SUCCESS, "CL_PROGRAM_BUILD_STATUS = %d", status);
    TRY(clGetProgramBuildInfo(t->program, t->device, CL_PROGRAM_BUILD_OPTIONS, 0, NULL, &size));
    s = calloc(1, size + 1);
    EXPECT(s, "out of memory");
    TRY(clGetProgramBuildInfo(t->program, t->device, CL_PROGRAM_BUILD_OPTIONS, size, s, NULL));
    EXPECT(strstr(s, "-DSCALE=3") != NULL, "CL_PROGRAM_BUILD_OPTIONS = \"%s\"", s);
    free(s);
    s = build_log(t->program, t->device);
    EXPECT(s, "clGetProgramBuildInfo(CL_PROGRAM_BUILD_LOG) failed");
    free(s);
    TRY(clGetProgramBuildInfo(t->program, t->device, CL_PROGRAM_BINARY_TYPE, sizeof(btype), &btype,
                              NULL));
    EXPECT(btype == CL_PROGRAM_BINARY_TYPE_EXECUTABLE, "CL_PROGRAM_BINARY_TYPE = %u",
           (unsigned)btype);
    pass("CL_PROGRAM_BUILD_STATUS, BUILD_OPTIONS, BUILD_LOG, BINARY_TYPE = EXECUTABLE");

    /* Several strings with explicit lengths, none NUL-terminated where it ends. */
    {
        const char *parts[3] = {"__kernel void fromparts(__global int *p) XXXX",
                                "{ p[get_global_id(0)] = 7", "; }\n"};
        size_t lens[3] = {strlen(parts[0]) - 5, strlen(parts[1]), 0};
        cl_program p = clCreateProgramWithSource(t->context, 3, parts, lens, &err);
        cl_kernel k;
        cl_mem buf;
        cl_int out[4] = {0};
        size_t four = 4;

        TRY_ERR(err, "clCreateProgramWithSource(3 strings, lengths)");
        TRY(clBuildProgram(p, 0, NULL, NULL, NULL, NULL));
        k = clCreateKernel(p, "fromparts", &err);
        TRY_ERR(err, "clCreateKernel(fromparts)");
        buf = clCreateBuffer(t->context, CL_MEM_READ_WRITE, sizeof(out), NULL, &err);
        TRY_ERR(err, "clCreateBuffer");
        TRY(clSetKernelArg(k, 0, sizeof(buf), &buf));
        TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &four, NULL, 0, NULL, NULL));
        TRY(clEnqueueReadBuffer(t->queue, buf, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
        EXPECT(out[0] == 7 && out[3] == 7, "kernel from parts wrote %d, %d", out[0], out[3]);
        clReleaseMemObject(buf);
        clReleaseKernel(k);
        clReleaseProgram(p);
        pass("clCreateProgramWithSource from 3 strings with lengths (one 0: NUL-terminated); "
             "clBuildProgram with no device list");
    }
}

static void tour_build_failure(tour_t *t)
{
    static const char *bad_source =
        "__kernel void broken(__global int *p)\n"
        "{\n"
        "    p[0] = tour_undeclared_identifier + 1;\n"
        "}\n";
    cl_build_status status = CL_BUILD_SUCCESS;
    cl_program p;
    cl_kernel k;
    char *log;
    cl_int err;

    section("build failure");
    p = clCreateProgramWithSource(t->context, 1, &bad_source, NULL, &err);
    TRY_ERR(err, "clCreateProgramWithSource");
    EXPECT_CL(clBuildProgram(p, 1, &t->device, "", NULL, NULL), CL_BUILD_PROGRAM_FAILURE);
    pass("clBuildProgram of a broken program gives CL_BUILD_PROGRAM_FAILURE");
    TRY(clGetProgramBuildInfo(p, t->device, CL_PROGRAM_BUILD_STATUS, sizeof(status), &status, NULL));
    EXPECT(status == CL_BUILD_ERROR, "CL_PROGRAM_BUILD_STATUS = %d, expected CL_BUILD_ERROR",
           status);
    log = build_log(p, t->device);
    EXPECT(log, "no build log");
    EXPECT(strstr(log, "tour_undeclared_identifier") != NULL,
           "the build log does not name the error:\n%s", log);
    pass("CL_BUILD_ERROR, and the build log names the error (%zu bytes)", strlen(log));
    free(log);
    k = clCreateKernel(p, "broken", &err);
    EXPECT(k == NULL && err == CL_INVALID_PROGRAM_EXECUTABLE,
           "clCreateKernel on a failed program gave %s", cl_err_name(err));
    pass("clCreateKernel on it gives CL_INVALID_PROGRAM_EXECUTABLE");
    TRY(clReleaseProgram(p));
}

/* Runs "scale" of program p over n floats with factor, checks in * factor * 3. */
static void check_scale_kernel(tour_t *t, cl_program p, const char *what)
{
    enum { N = 256 };
    float in[N], out[N], factor = 2.0f;
    size_t n = N;
    cl_mem bin, bout;
    cl_kernel k;
    cl_int err;

    for (int i = 0; i < N; i++)
        in[i] = (float)i;
    k = clCreateKernel(p, "scale", &err);
    TRY_ERR(err, "clCreateKernel(scale)");
    bin = clCreateBuffer(t->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof(in), in, &err);
    TRY_ERR(err, "clCreateBuffer(in)");
    bout = clCreateBuffer(t->context, CL_MEM_WRITE_ONLY, sizeof(out), NULL, &err);
    TRY_ERR(err, "clCreateBuffer(out)");
    TRY(clSetKernelArg(k, 0, sizeof(cl_mem), &bin));
    TRY(clSetKernelArg(k, 1, sizeof(cl_mem), &bout));
    TRY(clSetKernelArg(k, 2, sizeof(float), &factor));
    TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &n, NULL, 0, NULL, NULL));
    TRY(clEnqueueReadBuffer(t->queue, bout, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
    for (int i = 0; i < N; i++)
        EXPECT(out[i] == in[i] * factor * 3.0f, "%s: out[%d] = %g, expected %g", what, i,
               (double)out[i], (double)(in[i] * factor * 3.0f));
    clReleaseMemObject(bin);
    clReleaseMemObject(bout);
    clReleaseKernel(k);
    pass("%s: kernel ran, -DSCALE=3 took effect", what);
}

static void tour_program_binary(tour_t *t)
{
    size_t bin_size = 0;
    unsigned char *bin = NULL;
    cl_int bin_status = -1, err;
    cl_program p;
    const unsigned char *bins[1];

    section("programs from binary");
    if (!t->program) {
        fail(__LINE__, "skipped: the main program did not build");
        return;
    }
    check_scale_kernel(t, t->program, "program from source");
    TRY(clGetProgramInfo(t->program, CL_PROGRAM_BINARY_SIZES, sizeof(bin_size), &bin_size, NULL));
    EXPECT(bin_size > 0, "CL_PROGRAM_BINARY_SIZES = 0");
    bin = malloc(bin_size);
    EXPECT(bin, "out of memory");
    bins[0] = bin;
    TRY(clGetProgramInfo(t->program, CL_PROGRAM_BINARIES, sizeof(bins), bins, NULL));
    pass("CL_PROGRAM_BINARY_SIZES = %zu, CL_PROGRAM_BINARIES", bin_size);

    p = clCreateProgramWithBinary(t->context, 1, &t->device, &bin_size, bins, &bin_status, &err);
    TRY_ERR(err, "clCreateProgramWithBinary");
    EXPECT(bin_status == CL_SUCCESS, "binary_status = %s", cl_err_name(bin_status));
    TRY(clBuildProgram(p, 1, &t->device, NULL, NULL, NULL));
    pass("clCreateProgramWithBinary (binary_status CL_SUCCESS), clBuildProgram");
    check_scale_kernel(t, p, "program from binary");
    TRY(clReleaseProgram(p));
    free(bin);

    {
        unsigned char junk[64];
        const unsigned char *jp = junk;
        size_t jlen = sizeof(junk);

        memset(junk, 0x5a, sizeof(junk));
        p = clCreateProgramWithBinary(t->context, 1, &t->device, &jlen, &jp, &bin_status, &err);
        EXPECT(p == NULL && err == CL_INVALID_BINARY,
               "clCreateProgramWithBinary(64 junk bytes) gave %s, binary_status %s",
               cl_err_name(err), cl_err_name(bin_status));
        pass("clCreateProgramWithBinary(junk) gives CL_INVALID_BINARY");
    }
}

static void tour_compile_link(tour_t *t)
{
    static const char *header_src =
        "#define HELPER_OFFSET 100\n"
        "int helper_twice(int x);\n";
    static const char *main_src =
        "#include \"tour_helper.h\"\n"
        "__kernel void linked(__global int *p)\n"
        "{\n"
        "    size_t i = get_global_id(0);\n"
        "    p[i] = helper_twice(p[i]) + HELPER_OFFSET;\n"
        "}\n";
    static const char *lib_src =
        "int helper_twice(int x) { return 2 * x; }\n";
    static const char *broken_src = "int helper(int x) { return x +; }\n";
    const char *header_names[1] = {"tour_helper.h"};
    cl_program header, unit_main, unit_lib, linked, inputs[2], broken;
    cl_program_binary_type btype = 0;
    cl_kernel k;
    cl_mem buf;
    cl_int host[64], err;
    size_t n = 64;

    section("clCompileProgram and clLinkProgram");
    header = clCreateProgramWithSource(t->context, 1, &header_src, NULL, &err);
    TRY_ERR(err, "clCreateProgramWithSource(header)");
    unit_main = clCreateProgramWithSource(t->context, 1, &main_src, NULL, &err);
    TRY_ERR(err, "clCreateProgramWithSource(main unit)");
    unit_lib = clCreateProgramWithSource(t->context, 1, &lib_src, NULL, &err);
    TRY_ERR(err, "clCreateProgramWithSource(library unit)");
    TRY(clCompileProgram(unit_main, 1, &t->device, "", 1, &header, header_names, NULL, NULL));
    TRY(clCompileProgram(unit_lib, 1, &t->device, "", 0, NULL, NULL, NULL, NULL));
    TRY(clGetProgramBuildInfo(unit_main, t->device, CL_PROGRAM_BINARY_TYPE, sizeof(btype), &btype,
                              NULL));
    EXPECT(btype == CL_PROGRAM_BINARY_TYPE_COMPILED_OBJECT,
           "compiled unit CL_PROGRAM_BINARY_TYPE = %u", (unsigned)btype);
    pass("clCompileProgram with an embedded header (input_headers \"tour_helper.h\"); "
         "binary type COMPILED_OBJECT");

    inputs[0] = unit_main;
    inputs[1] = unit_lib;
    linked = clLinkProgram(t->context, 1, &t->device, "", 2, inputs, NULL, NULL, &err);
    TRY_ERR(err, "clLinkProgram");
    TRY(clGetProgramBuildInfo(linked, t->device, CL_PROGRAM_BINARY_TYPE, sizeof(btype), &btype,
                              NULL));
    EXPECT(btype == CL_PROGRAM_BINARY_TYPE_EXECUTABLE, "linked CL_PROGRAM_BINARY_TYPE = %u",
           (unsigned)btype);
    k = clCreateKernel(linked, "linked", &err);
    TRY_ERR(err, "clCreateKernel(linked)");
    fill_ints(host, 64, 0);
    buf = clCreateBuffer(t->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof(host), host,
                         &err);
    TRY_ERR(err, "clCreateBuffer");
    TRY(clSetKernelArg(k, 0, sizeof(buf), &buf));
    TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &n, NULL, 0, NULL, NULL));
    TRY(clEnqueueReadBuffer(t->queue, buf, CL_TRUE, 0, sizeof(host), host, 0, NULL, NULL));
    for (int i = 0; i < 64; i++)
        EXPECT(host[i] == 2 * i + 100, "linked kernel: p[%d] = %d, expected %d", i, host[i],
               2 * i + 100);
    pass("clLinkProgram of two units; the kernel calls across units and uses the header");
    clReleaseMemObject(buf);
    clReleaseKernel(k);
    clReleaseProgram(linked);
    clReleaseProgram(unit_lib);
    clReleaseProgram(unit_main);
    clReleaseProgram(header);

    broken = clCreateProgramWithSource(t->context, 1, &broken_src, NULL, &err);
    TRY_ERR(err, "clCreateProgramWithSource(broken unit)");
    EXPECT_CL(clCompileProgram(broken, 1, &t->device, "", 0, NULL, NULL, NULL, NULL),
              CL_COMPILE_PROGRAM_FAILURE);
    clReleaseProgram(broken);
    pass("clCompileProgram of a broken unit gives CL_COMPILE_PROGRAM_FAILURE");
}

/* ------------------------------------------------------------------------ */
/* Kernels                                                                   */

static void tour_kernel_objects(tour_t *t)
{
    cl_kernel kernels[16];
    cl_uint nk = 0, nargs = 0;
    cl_kernel k;
    cl_context kctx = NULL;
    cl_program kprog = NULL;
    char *s;
    size_t wg = 0, cwg[3] = {9, 9, 9}, pref = 0;
    cl_ulong lmem = 0, pmem = 0;
    cl_int err;

    section("kernel objects and info");
    if (!t->program) {
        fail(__LINE__, "skipped: the main program did not build");
        return;
    }
    TRY(clCreateKernelsInProgram(t->program, 0, NULL, &nk));
    EXPECT(nk == TOUR_NUM_KERNELS, "clCreateKernelsInProgram counts %u kernels, expected %zu", nk,
           TOUR_NUM_KERNELS);
    TRY(clCreateKernelsInProgram(t->program, nk, kernels, NULL));
    for (cl_uint i = 0; i < nk; i++) {
        int known = 0;
        s = info_str(kernel_info_fn, kernels[i], CL_KERNEL_FUNCTION_NAME, &err);
        TRY_ERR(err, "clGetKernelInfo(CL_KERNEL_FUNCTION_NAME)");
        for (size_t j = 0; j < TOUR_NUM_KERNELS; j++)
            known |= strcmp(s, tour_kernel_names[j]) == 0;
        EXPECT(known, "clCreateKernelsInProgram made an unknown kernel \"%s\"", s);
        free(s);
        TRY(clReleaseKernel(kernels[i]));
    }
    pass("clCreateKernelsInProgram: %u kernels, all named", nk);

    k = clCreateKernel(t->program, "scale", &err);
    TRY_ERR(err, "clCreateKernel(scale)");
    TRY(clGetKernelInfo(k, CL_KERNEL_NUM_ARGS, sizeof(nargs), &nargs, NULL));
    TRY(clGetKernelInfo(k, CL_KERNEL_CONTEXT, sizeof(kctx), &kctx, NULL));
    TRY(clGetKernelInfo(k, CL_KERNEL_PROGRAM, sizeof(kprog), &kprog, NULL));
    EXPECT(nargs == 3 && kctx == t->context && kprog == t->program,
           "scale: %u args, context %p, program %p", nargs, (void *)kctx, (void *)kprog);
    s = info_str(kernel_info_fn, k, CL_KERNEL_FUNCTION_NAME, &err);
    TRY_ERR(err, "clGetKernelInfo(CL_KERNEL_FUNCTION_NAME)");
    EXPECT(strcmp(s, "scale") == 0, "CL_KERNEL_FUNCTION_NAME = \"%s\"", s);
    free(s);
    s = info_str(kernel_info_fn, k, CL_KERNEL_ATTRIBUTES, &err);
    TRY_ERR(err, "clGetKernelInfo(CL_KERNEL_ATTRIBUTES)");
    free(s);
    pass("CL_KERNEL_FUNCTION_NAME, NUM_ARGS, CONTEXT, PROGRAM, ATTRIBUTES");

    {
        static const struct {
            cl_uint index;
            cl_kernel_arg_address_qualifier addr;
            const char *type, *name;
            cl_kernel_arg_type_qualifier tq;
        } want[] = {
            {0, CL_KERNEL_ARG_ADDRESS_GLOBAL, "float*", "in", CL_KERNEL_ARG_TYPE_CONST},
            {1, CL_KERNEL_ARG_ADDRESS_GLOBAL, "float*", "out", CL_KERNEL_ARG_TYPE_NONE},
            {2, CL_KERNEL_ARG_ADDRESS_PRIVATE, "float", "factor", CL_KERNEL_ARG_TYPE_NONE},
        };
        for (size_t i = 0; i < 3; i++) {
            cl_kernel_arg_address_qualifier aq = 0;
            cl_kernel_arg_access_qualifier acc = 0;
            cl_kernel_arg_type_qualifier tq = 99;
            char type[64] = "", name[64] = "";

            TRY(clGetKernelArgInfo(k, want[i].index, CL_KERNEL_ARG_ADDRESS_QUALIFIER, sizeof(aq),
                                   &aq, NULL));
            TRY(clGetKernelArgInfo(k, want[i].index, CL_KERNEL_ARG_ACCESS_QUALIFIER, sizeof(acc),
                                   &acc, NULL));
            TRY(clGetKernelArgInfo(k, want[i].index, CL_KERNEL_ARG_TYPE_QUALIFIER, sizeof(tq), &tq,
                                   NULL));
            TRY(clGetKernelArgInfo(k, want[i].index, CL_KERNEL_ARG_TYPE_NAME, sizeof(type), type,
                                   NULL));
            TRY(clGetKernelArgInfo(k, want[i].index, CL_KERNEL_ARG_NAME, sizeof(name), name, NULL));
            EXPECT(aq == want[i].addr && acc == CL_KERNEL_ARG_ACCESS_NONE && tq == want[i].tq &&
                       strcmp(type, want[i].type) == 0 && strcmp(name, want[i].name) == 0,
                   "arg %u: address 0x%x access 0x%x type-qual 0x%llx \"%s\" \"%s\"", want[i].index,
                   aq, acc, (unsigned long long)tq, type, name);
        }
        EXPECT_CL(clGetKernelArgInfo(k, 3, CL_KERNEL_ARG_NAME, 0, NULL, &wg), CL_INVALID_ARG_INDEX);
        pass("clGetKernelArgInfo: address/access/type qualifiers, type names, names; "
             "index past the end gives CL_INVALID_ARG_INDEX");
    }
    {
        cl_kernel kl = clCreateKernel(t->program, "local_sum", &err);
        cl_kernel_arg_address_qualifier aq = 0;
        TRY_ERR(err, "clCreateKernel(local_sum)");
        TRY(clGetKernelArgInfo(kl, 2, CL_KERNEL_ARG_ADDRESS_QUALIFIER, sizeof(aq), &aq, NULL));
        EXPECT(aq == CL_KERNEL_ARG_ADDRESS_LOCAL, "local_sum arg 2 address qualifier 0x%x", aq);
        clReleaseKernel(kl);
        pass("clGetKernelArgInfo: a __local argument is CL_KERNEL_ARG_ADDRESS_LOCAL");
    }

    TRY(clGetKernelWorkGroupInfo(k, t->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof(wg), &wg, NULL));
    TRY(clGetKernelWorkGroupInfo(k, t->device, CL_KERNEL_COMPILE_WORK_GROUP_SIZE, sizeof(cwg), cwg,
                                 NULL));
    TRY(clGetKernelWorkGroupInfo(k, t->device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof(lmem), &lmem, NULL));
    TRY(clGetKernelWorkGroupInfo(k, t->device, CL_KERNEL_PREFERRED_WORK_GROUP_SIZE_MULTIPLE,
                                 sizeof(pref), &pref, NULL));
    TRY(clGetKernelWorkGroupInfo(k, t->device, CL_KERNEL_PRIVATE_MEM_SIZE, sizeof(pmem), &pmem,
                                 NULL));
    EXPECT(wg >= 1 && pref >= 1 && cwg[0] == 0 && cwg[1] == 0 && cwg[2] == 0,
           "scale: work-group size %zu, preferred multiple %zu, compile size %zu x %zu x %zu", wg,
           pref, cwg[0], cwg[1], cwg[2]);
    pass("clGetKernelWorkGroupInfo: WORK_GROUP_SIZE %zu, PREFERRED_WORK_GROUP_SIZE_MULTIPLE %zu, "
         "COMPILE_WORK_GROUP_SIZE 0, LOCAL_MEM_SIZE, PRIVATE_MEM_SIZE", wg, pref);
    clReleaseKernel(k);

    k = clCreateKernel(t->program, "fixed_wg", &err);
    TRY_ERR(err, "clCreateKernel(fixed_wg)");
    TRY(clGetKernelWorkGroupInfo(k, t->device, CL_KERNEL_COMPILE_WORK_GROUP_SIZE, sizeof(cwg), cwg,
                                 NULL));
    EXPECT(cwg[0] == 8 && cwg[1] == 1 && cwg[2] == 1, "fixed_wg compile size %zu x %zu x %zu",
           cwg[0], cwg[1], cwg[2]);
    clReleaseKernel(k);
    pass("CL_KERNEL_COMPILE_WORK_GROUP_SIZE reports reqd_work_group_size(8, 1, 1)");
}

static void tour_kernel_runs(tour_t *t)
{
    cl_int host[256], err, value = 42;
    cl_kernel k;
    cl_mem buf, out;

    section("kernel arguments and launches");
    if (!t->program) {
        fail(__LINE__, "skipped: the main program did not build");
        return;
    }

    /* Local memory argument: 4 work-groups of 64 reduce 256 ints. */
    fill_ints(host, 256, 0);
    buf = clCreateBuffer(t->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof(host), host,
                         &err);
    TRY_ERR(err, "clCreateBuffer(in)");
    out = clCreateBuffer(t->context, CL_MEM_READ_WRITE, 4 * sizeof(cl_int), NULL, &err);
    TRY_ERR(err, "clCreateBuffer(out)");
    k = clCreateKernel(t->program, "local_sum", &err);
    TRY_ERR(err, "clCreateKernel(local_sum)");
    TRY(clSetKernelArg(k, 0, sizeof(cl_mem), &buf));
    TRY(clSetKernelArg(k, 1, sizeof(cl_mem), &out));
    TRY(clSetKernelArg(k, 2, 64 * sizeof(cl_int), NULL));
    {
        size_t global = 256, local = 64;
        cl_int sums[4];
        TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &global, &local, 0, NULL, NULL));
        TRY(clEnqueueReadBuffer(t->queue, out, CL_TRUE, 0, sizeof(sums), sums, 0, NULL, NULL));
        for (int g = 0; g < 4; g++) {
            cl_int want = 0;
            for (int i = 0; i < 64; i++)
                want += g * 64 + i;
            EXPECT(sums[g] == want, "local_sum group %d = %d, expected %d", g, sums[g], want);
        }
    }
    clReleaseKernel(k);
    clReleaseMemObject(buf);
    clReleaseMemObject(out);
    pass("__local kernel argument (clSetKernelArg(k, 2, 256, NULL)), local size 64, barriers");

    /* Global offset, NULL local size. */
    for (int i = 0; i < 64; i++)
        host[i] = -1;
    buf = clCreateBuffer(t->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, 64 * sizeof(cl_int),
                         host, &err);
    TRY_ERR(err, "clCreateBuffer");
    k = clCreateKernel(t->program, "write_gid", &err);
    TRY_ERR(err, "clCreateKernel(write_gid)");
    TRY(clSetKernelArg(k, 0, sizeof(cl_mem), &buf));
    {
        size_t offset = 16, global = 32;
        TRY(clEnqueueNDRangeKernel(t->queue, k, 1, &offset, &global, NULL, 0, NULL, NULL));
    }
    TRY(clEnqueueReadBuffer(t->queue, buf, CL_TRUE, 0, 64 * sizeof(cl_int), host, 0, NULL, NULL));
    for (int i = 0; i < 64; i++) {
        cl_int want = (i >= 16 && i < 48) ? i : -1;
        EXPECT(host[i] == want, "write_gid with offset 16: out[%d] = %d, expected %d", i, host[i],
               want);
    }
    clReleaseKernel(k);
    clReleaseMemObject(buf);
    pass("1-D NDRange with global offset 16, size 32, local size NULL");

    /* 2-D with offsets. */
    for (int i = 0; i < 128; i++)
        host[i] = -1;
    buf = clCreateBuffer(t->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR,
                         128 * sizeof(cl_int), host, &err);
    TRY_ERR(err, "clCreateBuffer");
    k = clCreateKernel(t->program, "write_gid2", &err);
    TRY_ERR(err, "clCreateKernel(write_gid2)");
    {
        cl_uint width = 16;
        size_t offset[2] = {2, 1}, global[2] = {8, 4};
        TRY(clSetKernelArg(k, 0, sizeof(cl_mem), &buf));
        TRY(clSetKernelArg(k, 1, sizeof(width), &width));
        TRY(clEnqueueNDRangeKernel(t->queue, k, 2, offset, global, NULL, 0, NULL, NULL));
    }
    TRY(clEnqueueReadBuffer(t->queue, buf, CL_TRUE, 0, 128 * sizeof(cl_int), host, 0, NULL, NULL));
    for (int y = 0; y < 8; y++) {
        for (int x = 0; x < 16; x++) {
            int inside = x >= 2 && x < 10 && y >= 1 && y < 5;
            cl_int want = inside ? y * 1000 + x : -1;
            EXPECT(host[y * 16 + x] == want, "write_gid2: (%d, %d) = %d, expected %d", x, y,
                   host[y * 16 + x], want);
        }
    }
    clReleaseKernel(k);
    clReleaseMemObject(buf);
    pass("2-D NDRange with offsets (2, 1), size 8 x 4");

    /* Explicit local size matching reqd_work_group_size. */
    buf = clCreateBuffer(t->context, CL_MEM_READ_WRITE, 32 * sizeof(cl_int), NULL, &err);
    TRY_ERR(err, "clCreateBuffer");
    k = clCreateKernel(t->program, "fixed_wg", &err);
    TRY_ERR(err, "clCreateKernel(fixed_wg)");
    TRY(clSetKernelArg(k, 0, sizeof(cl_mem), &buf));
    {
        size_t global = 32, local = 8;
        TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &global, &local, 0, NULL, NULL));
    }
    TRY(clEnqueueReadBuffer(t->queue, buf, CL_TRUE, 0, 32 * sizeof(cl_int), host, 0, NULL, NULL));
    for (int i = 0; i < 32; i++)
        EXPECT(host[i] == 8, "fixed_wg: get_local_size(0) = %d at %d, expected 8", host[i], i);
    clReleaseKernel(k);
    clReleaseMemObject(buf);
    pass("explicit local size 8 on a reqd_work_group_size(8,1,1) kernel");

    /* clEnqueueTask. */
    buf = clCreateBuffer(t->context, CL_MEM_READ_WRITE, 2 * sizeof(cl_int), NULL, &err);
    TRY_ERR(err, "clCreateBuffer");
    k = clCreateKernel(t->program, "task_kernel", &err);
    TRY_ERR(err, "clCreateKernel(task_kernel)");
    TRY(clSetKernelArg(k, 0, sizeof(cl_mem), &buf));
    TRY(clSetKernelArg(k, 1, sizeof(cl_int), &value));
    TRY(clEnqueueTask(t->queue, k, 0, NULL, NULL));
    TRY(clEnqueueReadBuffer(t->queue, buf, CL_TRUE, 0, 2 * sizeof(cl_int), host, 0, NULL, NULL));
    EXPECT(host[0] == 42 && host[1] == 1, "task_kernel wrote %d, %d; expected 42, 1", host[0],
           host[1]);
    clReleaseKernel(k);
    clReleaseMemObject(buf);
    pass("clEnqueueTask runs one work-item");

    /* Arguments are captured at enqueue: change one between two launches. */
    {
        enum { N = 128 };
        float in[N], out1[N], out2[N], f1 = 2.0f, f2 = 5.0f;
        cl_mem bin, bo1, bo2;
        size_t global = N;

        for (int i = 0; i < N; i++)
            in[i] = (float)i;
        bin = clCreateBuffer(t->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof(in), in,
                             &err);
        TRY_ERR(err, "clCreateBuffer");
        bo1 = clCreateBuffer(t->context, CL_MEM_WRITE_ONLY, sizeof(out1), NULL, &err);
        TRY_ERR(err, "clCreateBuffer");
        bo2 = clCreateBuffer(t->context, CL_MEM_WRITE_ONLY, sizeof(out2), NULL, &err);
        TRY_ERR(err, "clCreateBuffer");
        k = clCreateKernel(t->program, "scale", &err);
        TRY_ERR(err, "clCreateKernel(scale)");
        TRY(clSetKernelArg(k, 0, sizeof(cl_mem), &bin));
        TRY(clSetKernelArg(k, 1, sizeof(cl_mem), &bo1));
        TRY(clSetKernelArg(k, 2, sizeof(float), &f1));
        TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL));
        TRY(clSetKernelArg(k, 1, sizeof(cl_mem), &bo2));
        TRY(clSetKernelArg(k, 2, sizeof(float), &f2));
        TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL));
        TRY(clEnqueueReadBuffer(t->queue, bo1, CL_FALSE, 0, sizeof(out1), out1, 0, NULL, NULL));
        TRY(clEnqueueReadBuffer(t->queue, bo2, CL_FALSE, 0, sizeof(out2), out2, 0, NULL, NULL));
        TRY(clFinish(t->queue));
        for (int i = 0; i < N; i++)
            EXPECT(out1[i] == in[i] * 6.0f && out2[i] == in[i] * 15.0f,
                   "element %d: first launch %g (want %g), second %g (want %g)", i,
                   (double)out1[i], (double)(in[i] * 6.0f), (double)out2[i],
                   (double)(in[i] * 15.0f));
        clReleaseKernel(k);
        clReleaseMemObject(bin);
        clReleaseMemObject(bo1);
        clReleaseMemObject(bo2);
        pass("kernel arguments changed between two enqueues: each launch used its own");
    }

    /* A NULL buffer argument is legal. */
    k = clCreateKernel(t->program, "add_one", &err);
    TRY_ERR(err, "clCreateKernel(add_one)");
    {
        cl_mem none = NULL;
        TRY(clSetKernelArg(k, 0, sizeof(cl_mem), &none));
        EXPECT_CL(clSetKernelArg(k, 1, sizeof(cl_mem), &none), CL_INVALID_ARG_INDEX);
    }
    clReleaseKernel(k);
    pass("clSetKernelArg with a NULL cl_mem; past the last argument gives CL_INVALID_ARG_INDEX");
}

/* ------------------------------------------------------------------------ */
/* Buffers                                                                   */

static void tour_buffers(tour_t *t)
{
    enum { N = 1024 };
    cl_int host[N], out[N], err;
    cl_mem m, m2;
    cl_mem_flags flags = 0;
    cl_mem_object_type mtype = 0;
    size_t msize = 0;
    cl_context mctx = NULL;
    void *mhost = (void *)1;

    section("buffers");

    fill_ints(host, N, 1000);
    m = clCreateBuffer(t->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof(host), host,
                       &err);
    TRY_ERR(err, "clCreateBuffer(CL_MEM_COPY_HOST_PTR)");
    memset(host, 0, sizeof(host));
    memset(out, 0, sizeof(out));
    TRY(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
    EXPECT(diff_ints(out, N, 1000) < 0, "COPY_HOST_PTR contents differ at %ld",
           diff_ints(out, N, 1000));
    TRY(clGetMemObjectInfo(m, CL_MEM_TYPE, sizeof(mtype), &mtype, NULL));
    TRY(clGetMemObjectInfo(m, CL_MEM_FLAGS, sizeof(flags), &flags, NULL));
    TRY(clGetMemObjectInfo(m, CL_MEM_SIZE, sizeof(msize), &msize, NULL));
    TRY(clGetMemObjectInfo(m, CL_MEM_CONTEXT, sizeof(mctx), &mctx, NULL));
    TRY(clGetMemObjectInfo(m, CL_MEM_HOST_PTR, sizeof(mhost), &mhost, NULL));
    EXPECT(mtype == CL_MEM_OBJECT_BUFFER && flags == (CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR) &&
               msize == sizeof(host) && mctx == t->context && mhost == NULL,
           "mem info: type 0x%x flags 0x%llx size %zu context %p host_ptr %p", mtype,
           (unsigned long long)flags, msize, (void *)mctx, mhost);
    pass("CL_MEM_COPY_HOST_PTR: contents copied at creation; CL_MEM_TYPE, FLAGS, SIZE, CONTEXT, "
         "HOST_PTR (NULL)");

    /* Blocking write and read at offsets. */
    fill_ints(host, 100, 5000);
    TRY(clEnqueueWriteBuffer(t->queue, m, CL_TRUE, 200 * sizeof(cl_int), 100 * sizeof(cl_int), host,
                             0, NULL, NULL));
    TRY(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 150 * sizeof(cl_int), 200 * sizeof(cl_int), out,
                            0, NULL, NULL));
    EXPECT(diff_ints(out, 50, 1150) < 0 && diff_ints(out + 50, 100, 5000) < 0 &&
               diff_ints(out + 150, 50, 1300) < 0,
           "blocking write at offset 800 / read at offset 600 gave wrong data");
    pass("blocking clEnqueueWriteBuffer / clEnqueueReadBuffer at offsets");

    /* Non-blocking write and read, completion through events. */
    {
        static cl_int src[N], dst[N];
        cl_event ev_w, ev_r;

        fill_ints(src, N, -777);
        memset(dst, 0, sizeof(dst));
        TRY(clEnqueueWriteBuffer(t->queue, m, CL_FALSE, 0, sizeof(src), src, 0, NULL, &ev_w));
        TRY(clEnqueueReadBuffer(t->queue, m, CL_FALSE, 0, sizeof(dst), dst, 1, &ev_w, &ev_r));
        TRY(clWaitForEvents(1, &ev_r));
        EXPECT(event_status(ev_w) == CL_COMPLETE && event_status(ev_r) == CL_COMPLETE,
               "events not CL_COMPLETE after clWaitForEvents: write %d, read %d",
               event_status(ev_w), event_status(ev_r));
        EXPECT(diff_ints(dst, N, -777) < 0, "non-blocking round trip differs at %ld",
               diff_ints(dst, N, -777));
        clReleaseEvent(ev_w);
        clReleaseEvent(ev_r);
        pass("non-blocking write then read (waiting on the write), clWaitForEvents");
    }

    /* Copy. */
    m2 = clCreateBuffer(t->context, CL_MEM_READ_WRITE, sizeof(host), NULL, &err);
    TRY_ERR(err, "clCreateBuffer(CL_MEM_READ_WRITE)");
    fill_ints(host, N, 0);
    TRY(clEnqueueWriteBuffer(t->queue, m, CL_TRUE, 0, sizeof(host), host, 0, NULL, NULL));
    TRY(clEnqueueFillBuffer(t->queue, m2, &(cl_int){-5}, sizeof(cl_int), 0, sizeof(host), 0, NULL,
                            NULL));
    TRY(clEnqueueCopyBuffer(t->queue, m, m2, 10 * sizeof(cl_int), 500 * sizeof(cl_int),
                            300 * sizeof(cl_int), 0, NULL, NULL));
    TRY(clEnqueueReadBuffer(t->queue, m2, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
    for (int i = 0; i < N; i++) {
        cl_int want = (i >= 500 && i < 800) ? i - 490 : -5;
        EXPECT(out[i] == want, "after fill(-5) and copy: out[%d] = %d, expected %d", i, out[i],
               want);
    }
    pass("clEnqueueFillBuffer (4-byte pattern) then clEnqueueCopyBuffer with offsets");
    EXPECT_CL(clEnqueueCopyBuffer(t->queue, m, m, 0, 8, 64, 0, NULL, NULL), CL_MEM_COPY_OVERLAP);
    pass("overlapping copy within one buffer gives CL_MEM_COPY_OVERLAP");

    /* Fill patterns of other sizes, partial ranges. */
    {
        unsigned char bytes[256], one = 0xab;
        cl_float16 pat16;

        TRY(clEnqueueFillBuffer(t->queue, m2, &(cl_int){0}, sizeof(cl_int), 0, 256, 0, NULL,
                                NULL));
        TRY(clEnqueueFillBuffer(t->queue, m2, &one, 1, 16, 32, 0, NULL, NULL));
        for (int i = 0; i < 16; i++)
            pat16.s[i] = (float)i + 0.5f;
        TRY(clEnqueueFillBuffer(t->queue, m2, &pat16, sizeof(pat16), 128, 128, 0, NULL, NULL));
        TRY(clEnqueueReadBuffer(t->queue, m2, CL_TRUE, 0, sizeof(bytes), bytes, 0, NULL, NULL));
        for (int i = 0; i < 128; i++) {
            unsigned char want = (i >= 16 && i < 48) ? 0xab : 0;
            EXPECT(bytes[i] == want, "byte fill: byte %d = 0x%02x, expected 0x%02x", i, bytes[i],
                   want);
        }
        EXPECT(memcmp(bytes + 128, &pat16, 64) == 0 && memcmp(bytes + 192, &pat16, 64) == 0,
               "64-byte pattern fill wrong");
        pass("clEnqueueFillBuffer with 1-byte and 64-byte patterns on sub-ranges");
    }
    clReleaseMemObject(m2);
    clReleaseMemObject(m);

    /* USE_HOST_PTR: the buffer works on the application's memory. */
    {
        cl_int *uhp = aligned_alloc(4096, N * sizeof(cl_int));
        cl_int *p;

        EXPECT(uhp, "out of memory");
        fill_ints(uhp, N, 300);
        m = clCreateBuffer(t->context, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, N * sizeof(cl_int),
                           uhp, &err);
        TRY_ERR(err, "clCreateBuffer(CL_MEM_USE_HOST_PTR)");
        TRY(clGetMemObjectInfo(m, CL_MEM_HOST_PTR, sizeof(mhost), &mhost, NULL));
        EXPECT(mhost == uhp, "CL_MEM_HOST_PTR = %p, expected %p", mhost, (void *)uhp);
        TRY(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
        EXPECT(diff_ints(out, N, 300) < 0, "USE_HOST_PTR initial contents differ at %ld",
               diff_ints(out, N, 300));
        TRY(run_add_one(t, t->queue, m, N));
        p = clEnqueueMapBuffer(t->queue, m, CL_TRUE, CL_MAP_READ, 64 * sizeof(cl_int),
                               128 * sizeof(cl_int), 0, NULL, NULL, &err);
        TRY_ERR(err, "clEnqueueMapBuffer(USE_HOST_PTR, CL_MAP_READ)");
        EXPECT(p == uhp + 64, "map of a USE_HOST_PTR buffer at offset 256 returned %p, expected "
               "host_ptr + 256 = %p", (void *)p, (void *)(uhp + 64));
        EXPECT(diff_ints(p, 128, 365) < 0, "mapped USE_HOST_PTR data differ at %ld",
               diff_ints(p, 128, 365));
        TRY(clEnqueueUnmapMemObject(t->queue, m, p, 0, NULL, NULL));
        TRY(clFinish(t->queue));
        clReleaseMemObject(m);
        free(uhp);
        pass("CL_MEM_USE_HOST_PTR: HOST_PTR info, initial contents, kernel result visible through "
             "a map that returns host_ptr + offset");
    }

    /* ALLOC_HOST_PTR written through a map. */
    {
        cl_int *p;

        m = clCreateBuffer(t->context, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR,
                           N * sizeof(cl_int), NULL, &err);
        TRY_ERR(err, "clCreateBuffer(CL_MEM_ALLOC_HOST_PTR)");
        p = clEnqueueMapBuffer(t->queue, m, CL_TRUE, CL_MAP_WRITE, 0, N * sizeof(cl_int), 0, NULL,
                               NULL, &err);
        TRY_ERR(err, "clEnqueueMapBuffer(ALLOC_HOST_PTR, CL_MAP_WRITE)");
        fill_ints(p, N, 9000);
        TRY(clEnqueueUnmapMemObject(t->queue, m, p, 0, NULL, NULL));
        TRY(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
        EXPECT(diff_ints(out, N, 9000) < 0, "ALLOC_HOST_PTR data differ at %ld",
               diff_ints(out, N, 9000));
        clReleaseMemObject(m);
        pass("CL_MEM_ALLOC_HOST_PTR written through a write map, read back");
    }

    /* READ_ONLY input, WRITE_ONLY output of a kernel. */
    {
        float in[N], res[N], factor = 0.5f;
        size_t global = N;
        cl_mem bin, bout;
        cl_kernel k;

        if (!t->program) {
            fail(__LINE__, "skipped READ_ONLY test: the main program did not build");
            return;
        }
        for (int i = 0; i < N; i++)
            in[i] = (float)(i * 2);
        bin = clCreateBuffer(t->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, sizeof(in), in,
                             &err);
        TRY_ERR(err, "clCreateBuffer(CL_MEM_READ_ONLY)");
        bout = clCreateBuffer(t->context, CL_MEM_WRITE_ONLY, sizeof(res), NULL, &err);
        TRY_ERR(err, "clCreateBuffer(CL_MEM_WRITE_ONLY)");
        k = clCreateKernel(t->program, "scale", &err);
        TRY_ERR(err, "clCreateKernel(scale)");
        TRY(clSetKernelArg(k, 0, sizeof(cl_mem), &bin));
        TRY(clSetKernelArg(k, 1, sizeof(cl_mem), &bout));
        TRY(clSetKernelArg(k, 2, sizeof(float), &factor));
        TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL));
        TRY(clEnqueueReadBuffer(t->queue, bout, CL_TRUE, 0, sizeof(res), res, 0, NULL, NULL));
        for (int i = 0; i < N; i++)
            EXPECT(res[i] == in[i] * 1.5f, "READ_ONLY -> WRITE_ONLY: res[%d] = %g, expected %g", i,
                   (double)res[i], (double)(in[i] * 1.5f));
        clReleaseKernel(k);
        clReleaseMemObject(bin);
        clReleaseMemObject(bout);
        pass("CL_MEM_READ_ONLY input and CL_MEM_WRITE_ONLY output of a kernel");
    }

    /* Migration is a hint, but it must be accepted. */
    {
        cl_event ev;
        m = clCreateBuffer(t->context, CL_MEM_READ_WRITE, 4096, NULL, &err);
        TRY_ERR(err, "clCreateBuffer");
        TRY(clEnqueueMigrateMemObjects(t->queue, 1, &m, CL_MIGRATE_MEM_OBJECT_CONTENT_UNDEFINED, 0,
                                       NULL, &ev));
        TRY(clWaitForEvents(1, &ev));
        EXPECT(event_type(ev) == CL_COMMAND_MIGRATE_MEM_OBJECTS, "migrate event type 0x%x",
               event_type(ev));
        clReleaseEvent(ev);
        clReleaseMemObject(m);
        pass("clEnqueueMigrateMemObjects");
    }
}

static void tour_sub_buffers(tour_t *t)
{
    size_t a = t->align, total = 8 * t->align, n_sub;
    cl_buffer_region region = {2 * t->align, 3 * t->align};
    cl_mem parent, sub, assoc = NULL;
    size_t offset = 0, size = 0;
    cl_int *host, *back, err;

    section("sub-buffers");
    EXPECT(a >= 4 && a % 4 == 0, "alignment %zu bytes", a);
    n_sub = region.size / sizeof(cl_int);
    host = calloc(1, total);
    back = calloc(1, total);
    EXPECT(host && back, "out of memory");
    parent = clCreateBuffer(t->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, total, host,
                            &err);
    TRY_ERR(err, "clCreateBuffer(parent)");
    sub = clCreateSubBuffer(parent, CL_MEM_READ_WRITE, CL_BUFFER_CREATE_TYPE_REGION, &region, &err);
    TRY_ERR(err, "clCreateSubBuffer");
    TRY(clGetMemObjectInfo(sub, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof(assoc), &assoc, NULL));
    TRY(clGetMemObjectInfo(sub, CL_MEM_OFFSET, sizeof(offset), &offset, NULL));
    TRY(clGetMemObjectInfo(sub, CL_MEM_SIZE, sizeof(size), &size, NULL));
    EXPECT(assoc == parent && offset == region.origin && size == region.size,
           "sub-buffer info: parent %p (want %p), offset %zu (want %zu), size %zu (want %zu)",
           (void *)assoc, (void *)parent, offset, region.origin, size, region.size);
    pass("clCreateSubBuffer at origin %zu, size %zu; ASSOCIATED_MEMOBJECT, OFFSET, SIZE",
         region.origin, region.size);

    fill_ints(host, n_sub, 42);
    TRY(clEnqueueWriteBuffer(t->queue, sub, CL_TRUE, 0, region.size, host, 0, NULL, NULL));
    TRY(clEnqueueReadBuffer(t->queue, parent, CL_TRUE, 0, total, back, 0, NULL, NULL));
    for (size_t i = 0; i < total / sizeof(cl_int); i++) {
        size_t first = region.origin / sizeof(cl_int);
        cl_int want = (i >= first && i < first + n_sub) ? 42 + (cl_int)(i - first) : 0;
        EXPECT(back[i] == want, "parent[%zu] = %d after writing the sub-buffer, expected %d", i,
               back[i], want);
    }
    pass("writing the sub-buffer changes exactly its region of the parent");

    if (t->program) {
        TRY(run_add_one(t, t->queue, sub, n_sub));
        TRY(clEnqueueReadBuffer(t->queue, parent, CL_TRUE, region.origin, region.size, back, 0,
                                NULL, NULL));
        EXPECT(diff_ints(back, n_sub, 43) < 0, "kernel on sub-buffer: parent differs at %ld",
               diff_ints(back, n_sub, 43));
        pass("a kernel on the sub-buffer updates the parent");
    }
    clReleaseMemObject(sub);
    clReleaseMemObject(parent);
    free(host);
    free(back);
}

static void tour_rect(tour_t *t)
{
    /* The buffer is a 16 x 8 x 2 array of ints (row pitch 64 bytes, slice 512). */
    enum { W = 16, H = 8, D = 2 };
    cl_int init[W * H * D], got[W * H * D], hostimg[10 * 6 * 2], err;
    size_t brp = W * sizeof(cl_int), bsp = W * H * sizeof(cl_int);
    cl_mem a, b;

    section("rectangular transfers");
    for (int i = 0; i < W * H * D; i++)
        init[i] = -1;
    a = clCreateBuffer(t->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof(init), init,
                       &err);
    TRY_ERR(err, "clCreateBuffer(a)");
    b = clCreateBuffer(t->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof(init), init,
                       &err);
    TRY_ERR(err, "clCreateBuffer(b)");

    /* Host image: 10 ints per row, 6 rows per slice, 2 slices; value = z*100+y*10+x. */
    for (int z = 0; z < 2; z++)
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 10; x++)
                hostimg[(z * 6 + y) * 10 + x] = z * 100 + y * 10 + x;
    {
        /* Write the 4 x 3 x 2 box at host (1, 2, 0) into the buffer at (5, 3, 0). */
        size_t borig[3] = {5 * sizeof(cl_int), 3, 0}, horig[3] = {1 * sizeof(cl_int), 2, 0};
        size_t region[3] = {4 * sizeof(cl_int), 3, 2};
        TRY(clEnqueueWriteBufferRect(t->queue, a, CL_TRUE, borig, horig, region, brp, bsp,
                                     10 * sizeof(cl_int), 60 * sizeof(cl_int), hostimg, 0, NULL,
                                     NULL));
        TRY(clEnqueueReadBuffer(t->queue, a, CL_TRUE, 0, sizeof(got), got, 0, NULL, NULL));
        for (int z = 0; z < D; z++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int in = x >= 5 && x < 9 && y >= 3 && y < 6;
                    cl_int want = in ? z * 100 + (y - 3 + 2) * 10 + (x - 5 + 1) : -1;
                    EXPECT(got[(z * H + y) * W + x] == want,
                           "write rect: buffer (%d, %d, %d) = %d, expected %d", x, y, z,
                           got[(z * H + y) * W + x], want);
                }
        pass("clEnqueueWriteBufferRect: 3-D box with buffer and host origins and pitches");
    }
    {
        /* Read the box back into a fresh host image at (3, 1, 1), with other pitches. */
        cl_int back[12 * 5 * 3];
        size_t borig[3] = {5 * sizeof(cl_int), 3, 0}, horig[3] = {3 * sizeof(cl_int), 1, 1};
        size_t region[3] = {4 * sizeof(cl_int), 3, 2};

        for (int i = 0; i < 12 * 5 * 3; i++)
            back[i] = -9;
        TRY(clEnqueueReadBufferRect(t->queue, a, CL_TRUE, borig, horig, region, brp, bsp,
                                    12 * sizeof(cl_int), 60 * sizeof(cl_int), back, 0, NULL, NULL));
        for (int z = 0; z < 3; z++)
            for (int y = 0; y < 5; y++)
                for (int x = 0; x < 12; x++) {
                    int in = x >= 3 && x < 7 && y >= 1 && y < 4 && z >= 1 && z < 3;
                    cl_int want = in ? (z - 1) * 100 + (y - 1 + 2) * 10 + (x - 3 + 1) : -9;
                    EXPECT(back[(z * 5 + y) * 12 + x] == want,
                           "read rect: host (%d, %d, %d) = %d, expected %d", x, y, z,
                           back[(z * 5 + y) * 12 + x], want);
                }
        pass("clEnqueueReadBufferRect into a host region with its own origin and pitches");
    }
    {
        /* Copy the box from a at (5, 3, 0) to b at (0, 0, 0). */
        size_t sorig[3] = {5 * sizeof(cl_int), 3, 0}, dorig[3] = {0, 0, 0};
        size_t region[3] = {4 * sizeof(cl_int), 3, 2};
        TRY(clEnqueueCopyBufferRect(t->queue, a, b, sorig, dorig, region, brp, bsp, brp, bsp, 0,
                                    NULL, NULL));
        TRY(clEnqueueReadBuffer(t->queue, b, CL_TRUE, 0, sizeof(got), got, 0, NULL, NULL));
        for (int z = 0; z < D; z++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int in = x < 4 && y < 3;
                    cl_int want = in ? z * 100 + (y + 2) * 10 + (x + 1) : -1;
                    EXPECT(got[(z * H + y) * W + x] == want,
                           "copy rect: b (%d, %d, %d) = %d, expected %d", x, y, z,
                           got[(z * H + y) * W + x], want);
                }
        pass("clEnqueueCopyBufferRect between two buffers");
    }
    clReleaseMemObject(a);
    clReleaseMemObject(b);
}

static void tour_map(tour_t *t)
{
    enum { N = 4096 };
    cl_int host[N], out[N], *p, *p2, err;
    cl_event ev;
    cl_mem m;

    section("map and unmap");
    fill_ints(host, N, 0);
    m = clCreateBuffer(t->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof(host), host,
                       &err);
    TRY_ERR(err, "clCreateBuffer");

    p = clEnqueueMapBuffer(t->queue, m, CL_TRUE, CL_MAP_READ, 100 * sizeof(cl_int),
                           200 * sizeof(cl_int), 0, NULL, NULL, &err);
    TRY_ERR(err, "clEnqueueMapBuffer(CL_MAP_READ, blocking)");
    EXPECT(p && diff_ints(p, 200, 100) < 0, "read map at offset 400 differs at %ld",
           p ? diff_ints(p, 200, 100) : -2);
    TRY(clEnqueueUnmapMemObject(t->queue, m, p, 0, NULL, &ev));
    TRY(clWaitForEvents(1, &ev));
    EXPECT(event_type(ev) == CL_COMMAND_UNMAP_MEM_OBJECT, "unmap event type 0x%x", event_type(ev));
    clReleaseEvent(ev);
    pass("blocking read map at an offset; unmap with an event");

    p = clEnqueueMapBuffer(t->queue, m, CL_TRUE, CL_MAP_WRITE, 1000 * sizeof(cl_int),
                           50 * sizeof(cl_int), 0, NULL, NULL, &err);
    TRY_ERR(err, "clEnqueueMapBuffer(CL_MAP_WRITE)");
    fill_ints(p, 50, 70000);
    TRY(clEnqueueUnmapMemObject(t->queue, m, p, 0, NULL, NULL));
    TRY(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
    EXPECT(diff_ints(out, 1000, 0) < 0 && diff_ints(out + 1000, 50, 70000) < 0 &&
               diff_ints(out + 1050, N - 1050, 1050) < 0,
           "after a write map of [1000, 1050): wrong contents");
    pass("write map: what the host wrote is in the buffer after unmap, nothing else changed");

    p = clEnqueueMapBuffer(t->queue, m, CL_TRUE, CL_MAP_WRITE_INVALIDATE_REGION, 0,
                           N * sizeof(cl_int), 0, NULL, NULL, &err);
    TRY_ERR(err, "clEnqueueMapBuffer(CL_MAP_WRITE_INVALIDATE_REGION)");
    fill_ints(p, N, -N);
    TRY(clEnqueueUnmapMemObject(t->queue, m, p, 0, NULL, NULL));
    TRY(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
    EXPECT(diff_ints(out, N, -N) < 0, "after an invalidating map: differs at %ld",
           diff_ints(out, N, -N));
    pass("CL_MAP_WRITE_INVALIDATE_REGION map of the whole buffer");

    p = clEnqueueMapBuffer(t->queue, m, CL_FALSE, CL_MAP_READ | CL_MAP_WRITE, 0,
                           16 * sizeof(cl_int), 0, NULL, &ev, &err);
    TRY_ERR(err, "clEnqueueMapBuffer(non-blocking)");
    TRY(clWaitForEvents(1, &ev));
    EXPECT(event_type(ev) == CL_COMMAND_MAP_BUFFER, "map event type 0x%x", event_type(ev));
    clReleaseEvent(ev);
    EXPECT(diff_ints(p, 16, -N) < 0, "non-blocking map contents differ at %ld",
           diff_ints(p, 16, -N));
    p2 = clEnqueueMapBuffer(t->queue, m, CL_TRUE, CL_MAP_READ, 2048 * sizeof(cl_int),
                            16 * sizeof(cl_int), 0, NULL, NULL, &err);
    TRY_ERR(err, "clEnqueueMapBuffer(second mapping)");
    EXPECT(diff_ints(p2, 16, 2048 - N) < 0, "second mapping contents differ");
    p[0] = 123456;
    TRY(clEnqueueUnmapMemObject(t->queue, m, p2, 0, NULL, NULL));
    TRY(clEnqueueUnmapMemObject(t->queue, m, p, 0, NULL, NULL));
    TRY(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 0, sizeof(cl_int), out, 0, NULL, NULL));
    EXPECT(out[0] == 123456, "write through a read-write map lost: %d", out[0]);
    pass("non-blocking read-write map completed by its event; two mappings at once");

    if (t->program) {
        TRY(run_add_one(t, t->queue, m, N));
        p = clEnqueueMapBuffer(t->queue, m, CL_TRUE, CL_MAP_READ, 0, N * sizeof(cl_int), 0, NULL,
                               NULL, &err);
        TRY_ERR(err, "clEnqueueMapBuffer after a kernel");
        EXPECT(p[0] == 123457 && diff_ints(p + 1, N - 1, 1 - N + 1) < 0,
               "map after kernel sees stale data: p[0] = %d, p[1] = %d", p[0], p[1]);
        TRY(clEnqueueUnmapMemObject(t->queue, m, p, 0, NULL, NULL));
        pass("a read map after a kernel sees the kernel's results");
    }
    TRY(clFinish(t->queue));
    clReleaseMemObject(m);
}

/* ------------------------------------------------------------------------ */
/* Images and samplers                                                       */

/* OpenCL 2.0 names, for a program built against 1.2 headers (the loader
 * exports them whatever the headers). */
typedef cl_ulong tour_sampler_properties;
extern CL_API_ENTRY cl_sampler CL_API_CALL clCreateSamplerWithProperties(cl_context, const tour_sampler_properties *,
                                                                         cl_int *);
#define TOUR_SAMPLER_PROPERTIES 0x1158   /* CL_SAMPLER_PROPERTIES (3.0) */

/* The byte of channel c of pixel (x, y, z) of the test images. */
static cl_uchar px(size_t x, size_t y, size_t z, int c)
{
    return (cl_uchar)(x * 16 + y * 3 + z * 37 + (size_t)c * 50 + 1);
}

static const char *image_kernel_source =
    "__kernel void sample_shift(__read_only image2d_t src, sampler_t smp, __write_only image2d_t dst,\n"
    "                           int dx, int dy)\n"
    "{\n"
    "    int2 p = (int2)(get_global_id(0), get_global_id(1));\n"
    "    write_imagef(dst, p, read_imagef(src, smp, p + (int2)(dx, dy)));\n"
    "}\n";

/* OpenCL says CL_INVALID_IMAGE_SIZE for an image no device takes; PoCL 3.1
 * says CL_INVALID_OPERATION. */
#define TOUR_TOO_BIG(err) ((err) == CL_INVALID_IMAGE_SIZE || (err) == CL_INVALID_OPERATION)

static size_t image_info_size(cl_mem img, cl_image_info param)
{
    size_t v = (size_t)-1;

    clGetImageInfo(img, param, sizeof(v), &v, NULL);
    return v;
}

static void tour_image_queries(tour_t *t)
{
    enum { W = 7, H = 5, PITCH = 40 };
    cl_image_format rgba = {CL_RGBA, CL_UNORM_INT8}, fmt = {0, 0}, *formats;
    cl_image_desc desc = {CL_MEM_OBJECT_IMAGE2D, W, H, 1, 1, PITCH, 0, 0, 0, NULL};
    cl_uchar host[H * PITCH];
    cl_uint n = 0, n2 = 0, found = 0;
    cl_bool support = CL_FALSE;
    size_t w2 = 0, h2 = 0, d3 = 0, arrays = 0, bufmax = 0, v = 0;
    cl_mem_object_type type = 0;
    cl_mem img, big;
    cl_int err;

    section("images: device limits, formats and image info");
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_IMAGE_SUPPORT, sizeof(support), &support, NULL));
    EXPECT(support == CL_TRUE, "CL_DEVICE_IMAGE_SUPPORT is false");
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_IMAGE2D_MAX_WIDTH, sizeof(w2), &w2, NULL));
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_IMAGE2D_MAX_HEIGHT, sizeof(h2), &h2, NULL));
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_IMAGE3D_MAX_DEPTH, sizeof(d3), &d3, NULL));
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_IMAGE_MAX_ARRAY_SIZE, sizeof(arrays), &arrays, NULL));
    TRY(clGetDeviceInfo(t->device, CL_DEVICE_IMAGE_MAX_BUFFER_SIZE, sizeof(bufmax), &bufmax, NULL));
    EXPECT(w2 >= 8192 && h2 >= 8192 && d3 >= 2048 && arrays >= 2048 && bufmax >= 65536,
           "image limits below OpenCL 1.2's minimums: 2D %zux%zu, 3D depth %zu, arrays %zu, buffer %zu", w2, h2,
           d3, arrays, bufmax);
    pass("CL_DEVICE_IMAGE_SUPPORT and the image limits: 2D %zux%zu, 3D depth %zu, arrays %zu, 1D buffer %zu", w2,
         h2, d3, arrays, bufmax);

    TRY(clGetSupportedImageFormats(t->context, CL_MEM_READ_WRITE, CL_MEM_OBJECT_IMAGE2D, 0, NULL, &n));
    EXPECT(n > 0, "no 2D image formats");
    formats = calloc(n, sizeof(*formats));
    EXPECT(formats, "out of memory");
    err = clGetSupportedImageFormats(t->context, CL_MEM_READ_WRITE, CL_MEM_OBJECT_IMAGE2D, n, formats, &n2);
    for (cl_uint i = 0; err == CL_SUCCESS && i < n; i++)
        found |= (formats[i].image_channel_order == CL_RGBA && formats[i].image_channel_data_type == CL_UNORM_INT8) |
                 (formats[i].image_channel_order == CL_R && formats[i].image_channel_data_type == CL_UNSIGNED_INT32)
                     << 1;
    if (err == CL_SUCCESS && n > 1)
        err = clGetSupportedImageFormats(t->context, CL_MEM_READ_WRITE, CL_MEM_OBJECT_IMAGE2D, 1, &fmt, NULL);
    free(formats);
    TRY_ERR(err, "clGetSupportedImageFormats");
    EXPECT(n2 == n && found == 3, "formats: %u then %u; RGBA/UNORM_INT8 and R/UNSIGNED_INT32 found: %u", n, n2,
           found);
    TRY(clGetSupportedImageFormats(t->context, CL_MEM_READ_ONLY, CL_MEM_OBJECT_IMAGE3D, 0, NULL, &n2));
    EXPECT(n2 > 0, "no read-only 3D image formats");
    EXPECT_CL(clGetSupportedImageFormats(t->context, CL_MEM_READ_WRITE, CL_MEM_OBJECT_BUFFER, 0, NULL, &n2),
              CL_INVALID_VALUE);
    pass("clGetSupportedImageFormats: %u 2D formats with RGBA/UNORM_INT8 and R/UNSIGNED_INT32, asked again the same, "
         "3D ones; a buffer type refused", n);

    for (size_t y = 0; y < H; y++)
        for (size_t x = 0; x < PITCH; x++)
            host[y * PITCH + x] = x < W * 4 ? px(x / 4, y, 0, (int)(x % 4)) : 0xee;
    img = clCreateImage(t->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, &rgba, &desc, host, &err);
    TRY_ERR(err, "clCreateImage(2D, COPY_HOST_PTR, row pitch 40)");
    TRY(clGetImageInfo(img, CL_IMAGE_FORMAT, sizeof(fmt), &fmt, NULL));
    EXPECT(fmt.image_channel_order == CL_RGBA && fmt.image_channel_data_type == CL_UNORM_INT8,
           "CL_IMAGE_FORMAT 0x%x/0x%x", fmt.image_channel_order, fmt.image_channel_data_type);
    /* The row pitch (and so the size) is the one the host data came with. */
    EXPECT(image_info_size(img, CL_IMAGE_ELEMENT_SIZE) == 4 && image_info_size(img, CL_IMAGE_ROW_PITCH) == PITCH &&
               image_info_size(img, CL_IMAGE_SLICE_PITCH) == 0 && image_info_size(img, CL_IMAGE_WIDTH) == W &&
               image_info_size(img, CL_IMAGE_HEIGHT) == H && image_info_size(img, CL_IMAGE_DEPTH) == 0 &&
               image_info_size(img, CL_IMAGE_ARRAY_SIZE) == 0,
           "image info: element %zu, row pitch %zu, slice pitch %zu, %zu x %zu x %zu, array %zu",
           image_info_size(img, CL_IMAGE_ELEMENT_SIZE), image_info_size(img, CL_IMAGE_ROW_PITCH),
           image_info_size(img, CL_IMAGE_SLICE_PITCH), image_info_size(img, CL_IMAGE_WIDTH),
           image_info_size(img, CL_IMAGE_HEIGHT), image_info_size(img, CL_IMAGE_DEPTH),
           image_info_size(img, CL_IMAGE_ARRAY_SIZE));
    TRY(clGetMemObjectInfo(img, CL_MEM_TYPE, sizeof(type), &type, NULL));
    TRY(clGetMemObjectInfo(img, CL_MEM_SIZE, sizeof(v), &v, NULL));
    EXPECT(type == CL_MEM_OBJECT_IMAGE2D && v == PITCH * H, "CL_MEM_TYPE 0x%x, CL_MEM_SIZE %zu", type, v);
    pass("clCreateImage (2D, host data with a row pitch) and clGetImageInfo: format, element size, pitches, sizes");

    /* The limits the device reports are the ones it keeps. */
    desc.image_row_pitch = 0;
    desc.image_width = w2 + 1;
    desc.image_height = 1;
    big = clCreateImage(t->context, CL_MEM_READ_WRITE, &rgba, &desc, NULL, &err);
    EXPECT(!big && TOUR_TOO_BIG(err), "a 2D image %zu wide: %s", w2 + 1, cl_err_name(err));
    desc.image_width = w2;
    big = clCreateImage(t->context, CL_MEM_READ_WRITE, &rgba, &desc, NULL, &err);
    TRY_ERR(err, "clCreateImage(CL_DEVICE_IMAGE2D_MAX_WIDTH x 1)");
    clReleaseMemObject(big);
    desc.image_width = 1;
    desc.image_height = h2 + 1;
    big = clCreateImage(t->context, CL_MEM_READ_WRITE, &rgba, &desc, NULL, &err);
    EXPECT(!big && TOUR_TOO_BIG(err), "a 2D image %zu high: %s", h2 + 1, cl_err_name(err));
    desc.image_type = CL_MEM_OBJECT_IMAGE2D_ARRAY;
    desc.image_height = 1;
    desc.image_array_size = arrays + 1;
    big = clCreateImage(t->context, CL_MEM_READ_WRITE, &rgba, &desc, NULL, &err);
    EXPECT(!big && TOUR_TOO_BIG(err), "a 2D array of %zu images: %s", arrays + 1, cl_err_name(err));
    pass("images past CL_DEVICE_IMAGE2D_MAX_WIDTH/HEIGHT and IMAGE_MAX_ARRAY_SIZE are refused; "
         "the maximum width is taken");
    clReleaseMemObject(img);
}

static void tour_image_transfers(tour_t *t)
{
    enum { W = 7, H = 5 };
    cl_image_format rgba = {CL_RGBA, CL_UNORM_INT8};
    cl_image_desc desc = {CL_MEM_OBJECT_IMAGE2D, W, H, 1, 1, 0, 0, 0, 0, NULL};
    cl_uchar init[H * W * 4], got[H * W * 4], back[6 * 20], patch[2 * 3 * 4 * 2];
    cl_uchar expect[H * W * 4], linear[3 * 2 * 4];
    size_t origin[3] = {0, 0, 0}, region[3] = {W, H, 1}, rp = 0, sp = 1;
    cl_mem a, b, buf;
    cl_uchar *m;
    cl_int err;

    section("images: read, write, copy, fill, map");
    for (size_t i = 0; i < sizeof(init); i++)
        init[i] = px(i / 4 % W, i / 4 / W, 0, (int)(i % 4));
    a = clCreateImage(t->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, &rgba, &desc, init, &err);
    TRY_ERR(err, "clCreateImage(a)");
    b = clCreateImage(t->context, CL_MEM_READ_WRITE, &rgba, &desc, NULL, &err);
    TRY_ERR(err, "clCreateImage(b)");

    /* Read a 3 x 2 box at (2, 1) into host rows of 20 bytes, 6 rows. */
    memset(back, 0x55, sizeof(back));
    {
        size_t o[3] = {2, 1, 0}, r[3] = {3, 2, 1};
        TRY(clEnqueueReadImage(t->queue, a, CL_TRUE, o, r, 20, 0, back, 0, NULL, NULL));
    }
    for (size_t y = 0; y < 6; y++)
        for (size_t x = 0; x < 20; x++) {
            cl_uchar want = y < 2 && x < 12 ? px(2 + x / 4, 1 + y, 0, (int)(x % 4)) : 0x55;
            EXPECT(back[y * 20 + x] == want, "read box: host byte (%zu, %zu) = %u, expected %u", x, y,
                   back[y * 20 + x], want);
        }
    pass("clEnqueueReadImage of a box into host rows with their own pitch");

    /* Write a 3 x 2 patch (host rows of 16 bytes) at (4, 3); non-blocking, with an event. */
    {
        size_t o[3] = {4, 3, 0}, r[3] = {3, 2, 1};
        cl_event ev;
        for (size_t i = 0; i < sizeof(patch); i++)
            patch[i] = (cl_uchar)(200 + i);
        TRY(clEnqueueWriteImage(t->queue, a, CL_FALSE, o, r, 16, 0, patch, 0, NULL, &ev));
        TRY(clWaitForEvents(1, &ev));
        EXPECT(event_type(ev) == CL_COMMAND_WRITE_IMAGE, "write image event type 0x%x", event_type(ev));
        clReleaseEvent(ev);
        memcpy(expect, init, sizeof(init));
        for (size_t y = 0; y < 2; y++)
            memcpy(expect + ((3 + y) * W + 4) * 4, patch + y * 16, 12);
        TRY(clEnqueueReadImage(t->queue, a, CL_TRUE, origin, region, 0, 0, got, 0, NULL, NULL));
        EXPECT(memcmp(got, expect, sizeof(got)) == 0, "image after the patch differs");
    }
    pass("clEnqueueWriteImage of a box from host rows with a pitch (non-blocking, CL_COMMAND_WRITE_IMAGE event)");

    /* Copy all of a to b at (1, 1), 6 x 4 of it; fill b's first column. */
    {
        size_t so[3] = {0, 0, 0}, dso[3] = {1, 1, 0}, r[3] = {W - 1, H - 1, 1};
        size_t fo[3] = {0, 0, 0}, fr[3] = {1, H, 1};
        cl_float color[4] = {1.0f, 0.0f, 1.0f, 0.0f};
        cl_uchar zero[4] = {0, 0, 0, 0};
        TRY(clEnqueueFillImage(t->queue, b, (cl_float[4]){0, 0, 0, 0}, origin, region, 0, NULL, NULL));
        TRY(clEnqueueCopyImage(t->queue, a, b, so, dso, r, 0, NULL, NULL));
        TRY(clEnqueueFillImage(t->queue, b, color, fo, fr, 0, NULL, NULL));
        TRY(clEnqueueReadImage(t->queue, b, CL_TRUE, origin, region, 0, 0, got, 0, NULL, NULL));
        for (size_t y = 0; y < H; y++)
            for (size_t x = 0; x < W; x++) {
                static const cl_uchar filled[4] = {255, 0, 255, 0};
                const cl_uchar *want = x == 0 ? filled : y == 0 ? zero : expect + ((y - 1) * W + x - 1) * 4;
                EXPECT(memcmp(got + (y * W + x) * 4, want, 4) == 0, "b at (%zu, %zu) = %u %u %u %u", x, y,
                       got[(y * W + x) * 4], got[(y * W + x) * 4 + 1], got[(y * W + x) * 4 + 2],
                       got[(y * W + x) * 4 + 3]);
            }
    }
    pass("clEnqueueCopyImage to an offset, clEnqueueFillImage of a column (float4 color)");

    /* Image -> buffer (at byte 8) -> image. */
    buf = clCreateBuffer(t->context, CL_MEM_READ_WRITE, 8 + sizeof(linear), NULL, &err);
    TRY_ERR(err, "clCreateBuffer");
    {
        size_t so[3] = {4, 3, 0}, r[3] = {3, 2, 1}, dso[3] = {0, 0, 0};
        TRY(clEnqueueCopyImageToBuffer(t->queue, a, buf, so, r, 8, 0, NULL, NULL));
        TRY(clEnqueueReadBuffer(t->queue, buf, CL_TRUE, 8, sizeof(linear), linear, 0, NULL, NULL));
        for (size_t y = 0; y < 2; y++)
            EXPECT(memcmp(linear + y * 12, patch + y * 16, 12) == 0, "image -> buffer: row %zu differs", y);
        TRY(clEnqueueCopyBufferToImage(t->queue, buf, b, 8, dso, r, 0, NULL, NULL));
        TRY(clEnqueueReadImage(t->queue, b, CL_TRUE, origin, region, 0, 0, got, 0, NULL, NULL));
        for (size_t y = 0; y < 2; y++)
            EXPECT(memcmp(got + y * W * 4, patch + y * 16, 12) == 0, "buffer -> image: row %zu differs", y);
    }
    pass("clEnqueueCopyImageToBuffer at a buffer offset and clEnqueueCopyBufferToImage back");

    /* Map a box for reading and writing; change it; unmap; read back. */
    {
        size_t o[3] = {1, 2, 0}, r[3] = {4, 2, 1};
        cl_event ev;
        m = clEnqueueMapImage(t->queue, a, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, o, r, &rp, &sp, 0, NULL, NULL,
                              &err);
        TRY_ERR(err, "clEnqueueMapImage");
        EXPECT(m && rp >= 16 && sp == 0, "map row pitch %zu, slice pitch %zu", rp, sp);
        for (size_t y = 0; y < 2; y++)
            EXPECT(memcmp(m + y * rp, expect + ((2 + y) * W + 1) * 4, 16) == 0, "mapped row %zu differs", y);
        for (size_t y = 0; y < 2; y++)
            memset(m + y * rp, 0x11 * (int)(y + 1), 16);
        TRY(clEnqueueUnmapMemObject(t->queue, a, m, 0, NULL, &ev));
        TRY(clWaitForEvents(1, &ev));
        clReleaseEvent(ev);
        for (size_t y = 0; y < 2; y++)
            memset(expect + ((2 + y) * W + 1) * 4, 0x11 * (int)(y + 1), 16);
        TRY(clEnqueueReadImage(t->queue, a, CL_TRUE, origin, region, 0, 0, got, 0, NULL, NULL));
        EXPECT(memcmp(got, expect, sizeof(got)) == 0, "image after the write map differs");
    }
    pass("clEnqueueMapImage (read-write) of a box: its contents, then the host's changes after unmap");
    clReleaseMemObject(buf);
    clReleaseMemObject(a);
    clReleaseMemObject(b);
}

/* Writes a whole image from packed host data, reads a box back at host
 * pitches, checks it, and checks its info: for every image type. */
static void tour_image_types(tour_t *t)
{
    cl_image_format r32 = {CL_R, CL_UNSIGNED_INT32}, rgba = {CL_RGBA, CL_UNORM_INT8};
    static const struct {
        cl_mem_object_type type;
        const char *name;
        size_t w, h, d, a;            /* as the descriptor takes them */
        size_t lim[3];                /* the image's extent as regions count it */
        size_t height, depth, array;  /* CL_IMAGE_HEIGHT, DEPTH, ARRAY_SIZE */
    } types[] = {
        {CL_MEM_OBJECT_IMAGE1D, "1D", 9, 0, 0, 0, {9, 1, 1}, 0, 0, 0},
        {CL_MEM_OBJECT_IMAGE1D_ARRAY, "1D array", 9, 0, 0, 3, {9, 3, 1}, 0, 0, 3},
        {CL_MEM_OBJECT_IMAGE2D_ARRAY, "2D array", 6, 4, 0, 3, {6, 4, 3}, 4, 0, 3},
        {CL_MEM_OBJECT_IMAGE3D, "3D", 6, 4, 3, 0, {6, 4, 3}, 4, 3, 0},
    };
    cl_uint all[9 * 4 * 3], got[4 * 5 * 6];
    cl_int err;

    section("images: 1D, 1D arrays, 2D arrays, 3D, 1D buffers, clCreateImage2D/3D");
    for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
        cl_image_desc desc = {types[k].type, types[k].w, types[k].h, types[k].d, types[k].a, 0, 0, 0, 0, NULL};
        size_t o[3] = {1, 0, 0}, r[3], zero[3] = {0, 0, 0};
        size_t n = types[k].lim[0] * types[k].lim[1] * types[k].lim[2];
        size_t rows = types[k].type == CL_MEM_OBJECT_IMAGE1D_ARRAY ? 1 : types[k].lim[1];
        size_t row_pitch = 6 * sizeof(cl_uint), slice_pitch = 5 * row_pitch;
        /* A 1D array's images lie at the slice pitch, which PoCL 3.1
         * ignores (it puts them at the row pitch): the tour leaves it 0,
         * which means the row pitch. */
        size_t host_slice = rows == 1 ? 6 : 30;
        cl_mem img;

        for (size_t i = 0; i < n; i++)
            all[i] = (cl_uint)(1000 * k + i);
        img = clCreateImage(t->context, CL_MEM_READ_WRITE, &r32, &desc, NULL, &err);
        TRY_ERR(err, types[k].name);
        EXPECT(image_info_size(img, CL_IMAGE_HEIGHT) == types[k].height &&
                   image_info_size(img, CL_IMAGE_DEPTH) == types[k].depth &&
                   image_info_size(img, CL_IMAGE_ARRAY_SIZE) == types[k].array,
               "%s image: height %zu, depth %zu, array size %zu", types[k].name, image_info_size(img, CL_IMAGE_HEIGHT),
               image_info_size(img, CL_IMAGE_DEPTH), image_info_size(img, CL_IMAGE_ARRAY_SIZE));
        TRY(clEnqueueWriteImage(t->queue, img, CL_TRUE, zero, types[k].lim, 0, 0, all, 0, NULL, NULL));
        /* Everything but the first column, every row and layer, into
         * host rows of 6 values, slices of 5 rows. */
        r[0] = types[k].lim[0] - 1;
        r[1] = types[k].lim[1];
        r[2] = types[k].lim[2];
        if (r[0] > 6)
            r[0] = 6;
        memset(got, 0xff, sizeof(got));
        TRY(clEnqueueReadImage(t->queue, img, CL_TRUE, o, r, row_pitch, rows == 1 ? 0 : slice_pitch, got, 0, NULL,
                               NULL));
        for (size_t z = 0; z < (rows == 1 ? r[1] * r[2] : r[2]); z++)
            for (size_t y = 0; y < (rows == 1 ? 1 : r[1]); y++)
                for (size_t x = 0; x < r[0]; x++) {
                    /* A 1D array's layers are slices on the host. */
                    size_t src = (z * rows + y) * types[k].lim[0] + 1 + x;
                    cl_uint have = got[z * host_slice + y * 6 + x];
                    EXPECT(have == all[src], "%s image: host (%zu, %zu, %zu) = %u, expected %u", types[k].name, x,
                           y, z, have, all[src]);
                }
        clReleaseMemObject(img);
    }
    pass("1D, 1D array, 2D array and 3D images (R/UNSIGNED_INT32): info, packed write, box read at host pitches");

    {
        /* A 1D image over a buffer sees the buffer's bytes. */
        cl_uint data[16], out[8];
        cl_image_desc desc = {CL_MEM_OBJECT_IMAGE1D_BUFFER, 16, 0, 0, 0, 0, 0, 0, 0, NULL};
        size_t o[3] = {4, 0, 0}, r[3] = {8, 1, 1};
        cl_mem buf, img, assoc = NULL, ibuf = NULL;
        for (int i = 0; i < 16; i++)
            data[i] = 7000u + (cl_uint)i;
        buf = clCreateBuffer(t->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof(data), data, &err);
        TRY_ERR(err, "clCreateBuffer");
        desc.buffer = buf;
        img = clCreateImage(t->context, CL_MEM_READ_WRITE, &r32, &desc, NULL, &err);
        TRY_ERR(err, "clCreateImage(1D buffer)");
        TRY(clEnqueueReadImage(t->queue, img, CL_TRUE, o, r, 0, 0, out, 0, NULL, NULL));
        TRY(clGetImageInfo(img, CL_IMAGE_BUFFER, sizeof(ibuf), &ibuf, NULL));
        TRY(clGetMemObjectInfo(img, CL_MEM_ASSOCIATED_MEMOBJECT, sizeof(assoc), &assoc, NULL));
        clReleaseMemObject(buf);   /* the image keeps it */
        for (int i = 0; i < 8; i++)
            EXPECT(out[i] == 7004u + (cl_uint)i, "1D buffer image: [%d] = %u", i, out[i]);
        EXPECT(ibuf == buf && assoc == buf, "CL_IMAGE_BUFFER %p, CL_MEM_ASSOCIATED_MEMOBJECT %p, buffer %p",
               (void *)ibuf, (void *)assoc, (void *)buf);
        clReleaseMemObject(img);
    }
    pass("a 1D buffer image reads its buffer's data; CL_IMAGE_BUFFER and CL_MEM_ASSOCIATED_MEMOBJECT name it");

    {
        /* The OpenCL 1.1 entry points, with host data at a row pitch. */
        cl_uchar host2[3 * 12], host3[2 * 3 * 12], out[2 * 3 * 8];
        size_t zero[3] = {0, 0, 0}, r2[3] = {2, 3, 1}, r3[3] = {2, 3, 2};
        cl_mem i2, i3;
        for (size_t i = 0; i < sizeof(host3); i++)
            host3[i] = (cl_uchar)i;
        memcpy(host2, host3, sizeof(host2));
        i2 = clCreateImage2D(t->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, &rgba, 2, 3, 12, host2, &err);
        TRY_ERR(err, "clCreateImage2D");
        i3 = clCreateImage3D(t->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, &rgba, 2, 3, 2, 12, 36, host3,
                             &err);
        TRY_ERR(err, "clCreateImage3D");
        TRY(clEnqueueReadImage(t->queue, i2, CL_TRUE, zero, r2, 0, 0, out, 0, NULL, NULL));
        for (size_t y = 0; y < 3; y++)
            EXPECT(memcmp(out + y * 8, host2 + y * 12, 8) == 0, "clCreateImage2D: row %zu differs", y);
        TRY(clEnqueueReadImage(t->queue, i3, CL_TRUE, zero, r3, 0, 0, out, 0, NULL, NULL));
        for (size_t z = 0; z < 2; z++)
            for (size_t y = 0; y < 3; y++)
                EXPECT(memcmp(out + (z * 3 + y) * 8, host3 + z * 36 + y * 12, 8) == 0,
                       "clCreateImage3D: row %zu of slice %zu differs", y, z);
        clReleaseMemObject(i2);
        clReleaseMemObject(i3);
    }
    pass("clCreateImage2D and clCreateImage3D with host data at row and slice pitches");

    {
        /* CL_MEM_USE_HOST_PTR: the image reports the application's pitch,
         * and a map shows the application's memory up to date. */
        cl_uchar host[4 * 24];
        cl_image_desc desc = {CL_MEM_OBJECT_IMAGE2D, 5, 4, 0, 0, 24, 0, 0, 0, NULL};
        size_t o[3] = {1, 1, 0}, r[3] = {3, 2, 1}, rp = 0;
        cl_uchar *m;
        cl_mem img;
        for (size_t i = 0; i < sizeof(host); i++)
            host[i] = (cl_uchar)(i * 3);
        img = clCreateImage(t->context, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, &rgba, &desc, host, &err);
        TRY_ERR(err, "clCreateImage(USE_HOST_PTR)");
        EXPECT(image_info_size(img, CL_IMAGE_ROW_PITCH) == 24, "USE_HOST_PTR image row pitch %zu",
               image_info_size(img, CL_IMAGE_ROW_PITCH));
        m = clEnqueueMapImage(t->queue, img, CL_TRUE, CL_MAP_READ, o, r, &rp, NULL, 0, NULL, NULL, &err);
        TRY_ERR(err, "clEnqueueMapImage(USE_HOST_PTR)");
        EXPECT(rp == 24 && m == host + 24 + 4, "USE_HOST_PTR map at %p (host + %td), row pitch %zu", (void *)m,
               m - host, rp);
        EXPECT(memcmp(m, host + 28, 12) == 0 && memcmp(m + 24, host + 52, 12) == 0, "USE_HOST_PTR map differs");
        TRY(clEnqueueUnmapMemObject(t->queue, img, m, 0, NULL, NULL));
        TRY(clFinish(t->queue));
        clReleaseMemObject(img);
    }
    pass("a USE_HOST_PTR image: CL_IMAGE_ROW_PITCH is the host's, a map points into the host's memory");
}

static void tour_samplers(tour_t *t)
{
    enum { W = 6, H = 5, DX = 2, DY = -1 };
    cl_image_format rgba = {CL_RGBA, CL_UNORM_INT8};
    cl_image_desc desc = {CL_MEM_OBJECT_IMAGE2D, W, H, 1, 1, 0, 0, 0, 0, NULL};
    tour_sampler_properties props[] = {CL_SAMPLER_NORMALIZED_COORDS, CL_TRUE, CL_SAMPLER_FILTER_MODE,
                                       CL_FILTER_LINEAR, 0};
    tour_sampler_properties got_props[5] = {0};
    cl_uchar init[H * W * 4], out[H * W * 4];
    cl_uint refs = 0, normalized = 9, addressing = 0, filter = 0;
    size_t origin[3] = {0, 0, 0}, region[3] = {W, H, 1}, global[2] = {W, H}, size = 1;
    cl_context ctx = NULL;
    cl_program prog;
    cl_kernel k;
    cl_sampler smp, smp2;
    cl_mem src, dst;
    cl_int err, dx = DX, dy = DY;

    section("samplers, and a kernel sampling an image");
    smp = clCreateSampler(t->context, CL_FALSE, CL_ADDRESS_CLAMP, CL_FILTER_NEAREST, &err);
    TRY_ERR(err, "clCreateSampler");
    TRY(clGetSamplerInfo(smp, CL_SAMPLER_REFERENCE_COUNT, sizeof(refs), &refs, NULL));
    TRY(clGetSamplerInfo(smp, CL_SAMPLER_CONTEXT, sizeof(ctx), &ctx, NULL));
    TRY(clGetSamplerInfo(smp, CL_SAMPLER_NORMALIZED_COORDS, sizeof(normalized), &normalized, NULL));
    TRY(clGetSamplerInfo(smp, CL_SAMPLER_ADDRESSING_MODE, sizeof(addressing), &addressing, NULL));
    TRY(clGetSamplerInfo(smp, CL_SAMPLER_FILTER_MODE, sizeof(filter), &filter, NULL));
    EXPECT(refs == 1 && ctx == t->context && normalized == CL_FALSE && addressing == CL_ADDRESS_CLAMP &&
               filter == CL_FILTER_NEAREST,
           "sampler info: refs %u, context %s, normalized %u, addressing 0x%x, filter 0x%x", refs,
           ctx == t->context ? "ours" : "another", normalized, addressing, filter);
    TRY(clRetainSampler(smp));
    TRY(clGetSamplerInfo(smp, CL_SAMPLER_REFERENCE_COUNT, sizeof(refs), &refs, NULL));
    EXPECT(refs == 2, "after clRetainSampler: %u references", refs);
    TRY(clReleaseSampler(smp));
    EXPECT_CL(clGetSamplerInfo(smp, 0x7777, sizeof(refs), &refs, NULL), CL_INVALID_VALUE);
    pass("clCreateSampler, clGetSamplerInfo (context, coordinates, addressing, filter), retain and release");

    smp2 = clCreateSamplerWithProperties(t->context, props, &err);
    TRY_ERR(err, "clCreateSamplerWithProperties");
    TRY(clGetSamplerInfo(smp2, CL_SAMPLER_NORMALIZED_COORDS, sizeof(normalized), &normalized, NULL));
    TRY(clGetSamplerInfo(smp2, CL_SAMPLER_ADDRESSING_MODE, sizeof(addressing), &addressing, NULL));
    TRY(clGetSamplerInfo(smp2, CL_SAMPLER_FILTER_MODE, sizeof(filter), &filter, NULL));
    TRY(clGetSamplerInfo(smp2, TOUR_SAMPLER_PROPERTIES, sizeof(got_props), got_props, &size));
    EXPECT(normalized == CL_TRUE && addressing == CL_ADDRESS_CLAMP && filter == CL_FILTER_LINEAR &&
               size == sizeof(props) && memcmp(got_props, props, sizeof(props)) == 0,
           "sampler with properties: normalized %u, addressing 0x%x, filter 0x%x, %zu bytes of properties",
           normalized, addressing, filter, size);
    TRY(clGetSamplerInfo(smp, TOUR_SAMPLER_PROPERTIES, 0, NULL, &size));
    EXPECT(size == 0, "a sampler made without properties has %zu bytes of them", size);
    clReleaseSampler(smp2);
    pass("clCreateSamplerWithProperties: defaults for what is not given, CL_SAMPLER_PROPERTIES as given");

    for (size_t i = 0; i < sizeof(init); i++)
        init[i] = px(i / 4 % W, i / 4 / W, 0, (int)(i % 4));
    src = clCreateImage(t->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, &rgba, &desc, init, &err);
    TRY_ERR(err, "clCreateImage(src)");
    dst = clCreateImage(t->context, CL_MEM_WRITE_ONLY, &rgba, &desc, NULL, &err);
    TRY_ERR(err, "clCreateImage(dst)");
    prog = clCreateProgramWithSource(t->context, 1, &image_kernel_source, NULL, &err);
    TRY_ERR(err, "clCreateProgramWithSource");
    err = clBuildProgram(prog, 1, &t->device, "-cl-kernel-arg-info", NULL, NULL);
    if (err != CL_SUCCESS) {
        char *log = build_log(prog, t->device);
        fail(__LINE__, "clBuildProgram(sample_shift): %s\n%s", cl_err_name(err), log ? log : "");
        free(log);
        clReleaseProgram(prog);
        return;
    }
    k = clCreateKernel(prog, "sample_shift", &err);
    TRY_ERR(err, "clCreateKernel(sample_shift)");
    TRY(clSetKernelArg(k, 0, sizeof(src), &src));
    TRY(clSetKernelArg(k, 1, sizeof(smp), &smp));
    TRY(clSetKernelArg(k, 2, sizeof(dst), &dst));
    TRY(clSetKernelArg(k, 3, sizeof(dx), &dx));
    TRY(clSetKernelArg(k, 4, sizeof(dy), &dy));
    TRY(clEnqueueNDRangeKernel(t->queue, k, 2, NULL, global, NULL, 0, NULL, NULL));
    TRY(clEnqueueReadImage(t->queue, dst, CL_TRUE, origin, region, 0, 0, out, 0, NULL, NULL));
    /* CLK_NORMALIZED_COORDS_FALSE | CLK_ADDRESS_CLAMP | CLK_FILTER_NEAREST:
     * outside the image is the border color, (0, 0, 0, 0) for RGBA. */
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 4; c++) {
                int sx = x + DX, sy = y + DY, inside = sx >= 0 && sx < W && sy >= 0 && sy < H;
                cl_uchar want = inside ? init[(sy * W + sx) * 4 + c] : 0;
                EXPECT(out[(y * W + x) * 4 + c] == want, "sampled (%d, %d) channel %d = %u, expected %u", x, y, c,
                       out[(y * W + x) * 4 + c], want);
            }
    pass("a kernel reads an image through a sampler (unnormalized, clamp, nearest) and writes another: "
         "as computed on the host");
    clReleaseKernel(k);
    clReleaseProgram(prog);
    clReleaseMemObject(src);
    clReleaseMemObject(dst);
    clReleaseSampler(smp);
}

static void tour_wait_and_partition(tour_t *t)
{
    char name[64] = "";
    cl_device_partition_property props[] = {CL_DEVICE_PARTITION_EQUALLY, 1, 0};
    cl_device_id sub[64];
    cl_uint nsub = 0;
    cl_event user, ev;
    cl_int err;

    section("clEnqueueWaitForEvents and clCreateSubDevices");
    clGetPlatformInfo(t->platform, CL_PLATFORM_NAME, sizeof(name), name, NULL);
    user = clCreateUserEvent(t->context, &err);
    TRY_ERR(err, "clCreateUserEvent");
    /* PoCL 3.1 aborts in clEnqueueWaitForEvents: locally the tour enqueues
     * what it means, a barrier waiting on the list. */
    if (strcmp(name, "rgpu") == 0)
        err = clEnqueueWaitForEvents(t->queue, 1, &user);
    else
        err = clEnqueueBarrierWithWaitList(t->queue, 1, &user, NULL);
    TRY_ERR(err, "clEnqueueWaitForEvents");
    TRY(clEnqueueMarkerWithWaitList(t->queue, 0, NULL, &ev));
    TRY(clFlush(t->queue));
    EXPECT(event_status(ev) != CL_COMPLETE, "a marker behind clEnqueueWaitForEvents ran before the event was set");
    TRY(clSetUserEventStatus(user, CL_COMPLETE));
    TRY(clWaitForEvents(1, &ev));
    clReleaseEvent(ev);
    clReleaseEvent(user);
    pass("clEnqueueWaitForEvents holds the queue until its events complete%s",
         strcmp(name, "rgpu") == 0 ? "" : " (locally: the barrier it stands for)");

    err = clCreateSubDevices(t->device, props, 64, sub, &nsub);
    EXPECT(err == CL_SUCCESS || err == CL_DEVICE_PARTITION_FAILED || err == CL_INVALID_VALUE,
           "clCreateSubDevices(equally, 1) gave %s", cl_err_name(err));
    for (cl_uint i = 0; err == CL_SUCCESS && i < nsub && i < 64; i++)
        clReleaseDevice(sub[i]);
    pass("clCreateSubDevices: %s", err == CL_SUCCESS ? "partitioned" : cl_err_name(err));
}

static void tour_big_transfer(tour_t *t)
{
    size_t size = 48u << 20;
    unsigned char *src = malloc(size), *dst = malloc(size);
    cl_event ev;
    cl_mem m;
    cl_int err;

    section("large transfers");
    EXPECT(src && dst, "out of memory");
    for (size_t i = 0; i < size; i++)
        src[i] = (unsigned char)(i * 7 + (i >> 13));
    memset(dst, 0, size);
    m = clCreateBuffer(t->context, CL_MEM_READ_WRITE, size, NULL, &err);
    TRY_ERR(err, "clCreateBuffer(48 MiB)");
    TRY(clEnqueueWriteBuffer(t->queue, m, CL_FALSE, 0, size, src, 0, NULL, &ev));
    TRY(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 0, size, dst, 1, &ev, NULL));
    EXPECT(memcmp(src, dst, size) == 0, "48 MiB round trip differs");
    clReleaseEvent(ev);
    pass("48 MiB non-blocking write, blocking read: identical");
    memset(dst, 0, size);
    TRY(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 4097, 1000003, dst, 0, NULL, NULL));
    EXPECT(memcmp(src + 4097, dst, 1000003) == 0 && dst[1000003] == 0,
           "odd-sized read at an odd offset differs");
    pass("read of 1000003 bytes at offset 4097");
    clReleaseMemObject(m);
    free(src);
    free(dst);
}

/* ------------------------------------------------------------------------ */
/* Events                                                                    */

typedef struct {
    atomic_int calls;
    atomic_int status;
    cl_event event;
    atomic_uintptr_t seen_event;
} callback_rec_t;

static void CL_CALLBACK tour_callback(cl_event ev, cl_int status, void *user_data)
{
    callback_rec_t *rec = user_data;

    atomic_store(&rec->status, status);
    atomic_store(&rec->seen_event, (uintptr_t)ev);
    atomic_fetch_add(&rec->calls, 1);
}

/* Waits up to 10 s for the callback to have run. */
static int wait_callback(callback_rec_t *rec)
{
    for (int i = 0; i < 10000 && atomic_load(&rec->calls) == 0; i++)
        sleep_ms(1);
    return atomic_load(&rec->calls);
}

static void tour_events(tour_t *t)
{
    enum { N = 256 };
    cl_int host[N], out[N], err;
    cl_event ev_w, ev_k, ev_r;
    cl_kernel k;
    cl_mem m;
    size_t global = N;
    cl_command_queue q2;

    section("events and wait lists");
    if (!t->program) {
        fail(__LINE__, "skipped: the main program did not build");
        return;
    }
    m = clCreateBuffer(t->context, CL_MEM_READ_WRITE, sizeof(host), NULL, &err);
    TRY_ERR(err, "clCreateBuffer");
    k = clCreateKernel(t->program, "add_one", &err);
    TRY_ERR(err, "clCreateKernel(add_one)");
    TRY(clSetKernelArg(k, 0, sizeof(cl_mem), &m));

    fill_ints(host, N, 10);
    TRY(clEnqueueWriteBuffer(t->queue, m, CL_FALSE, 0, sizeof(host), host, 0, NULL, &ev_w));
    TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &global, NULL, 1, &ev_w, &ev_k));
    TRY(clEnqueueReadBuffer(t->queue, m, CL_FALSE, 0, sizeof(out), out, 1, &ev_k, &ev_r));
    TRY(clWaitForEvents(1, &ev_r));
    EXPECT(diff_ints(out, N, 11) < 0, "write -> kernel -> read chain differs at %ld",
           diff_ints(out, N, 11));
    {
        cl_command_queue eq = NULL;
        cl_context ectx = NULL;
        TRY(clGetEventInfo(ev_k, CL_EVENT_COMMAND_QUEUE, sizeof(eq), &eq, NULL));
        TRY(clGetEventInfo(ev_k, CL_EVENT_CONTEXT, sizeof(ectx), &ectx, NULL));
        EXPECT(eq == t->queue && ectx == t->context, "event queue %p context %p", (void *)eq,
               (void *)ectx);
        EXPECT(event_type(ev_w) == CL_COMMAND_WRITE_BUFFER &&
                   event_type(ev_k) == CL_COMMAND_NDRANGE_KERNEL &&
                   event_type(ev_r) == CL_COMMAND_READ_BUFFER,
               "event command types 0x%x 0x%x 0x%x", event_type(ev_w), event_type(ev_k),
               event_type(ev_r));
        EXPECT(event_status(ev_w) == CL_COMPLETE && event_status(ev_k) == CL_COMPLETE &&
                   event_status(ev_r) == CL_COMPLETE,
               "execution status %d %d %d", event_status(ev_w), event_status(ev_k),
               event_status(ev_r));
    }
    clReleaseEvent(ev_w);
    clReleaseEvent(ev_k);
    clReleaseEvent(ev_r);
    pass("write -> kernel -> read chained by wait lists; CL_EVENT_COMMAND_QUEUE, CONTEXT, "
         "COMMAND_TYPE, COMMAND_EXECUTION_STATUS");

    /* A blocking read has completed when it returns: its event says so at
     * once, whatever the size (rgpu's server reads small regions with one
     * command and large ones in chunks) and however fast reads follow. */
    {
        enum { BIG = (1 << 20) + 8192 };
        static const size_t sizes[] = {4, 4096, 65537, 262144, 1u << 20};
        static const size_t offsets[] = {0, 4097};
        unsigned char *src = malloc(BIG), *dst = malloc(BIG);
        cl_int status;
        cl_mem mb;
        int reads = 0;

        EXPECT(src && dst, "out of host memory");
        for (size_t i = 0; i < BIG; i++)
            src[i] = (unsigned char)(i * 7 + (i >> 8));
        mb = clCreateBuffer(t->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, BIG, src, &err);
        TRY_ERR(err, "clCreateBuffer(read events)");
        for (int rep = 0; rep < 4; rep++) {
            for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++) {
                for (size_t oi = 0; oi < sizeof(offsets) / sizeof(offsets[0]); oi++) {
                    size_t bytes = sizes[si], off = offsets[oi];

                    memset(dst, 0xAA, BIG);
                    TRY(clEnqueueReadBuffer(t->queue, mb, CL_TRUE, off, bytes, dst, 0, NULL, &ev_r));
                    status = event_status(ev_r);
                    clReleaseEvent(ev_r);
                    EXPECT(status == CL_COMPLETE,
                           "a blocking read of %zu bytes at %zu returned with its event at %d", bytes,
                           off, status);
                    EXPECT(memcmp(dst, src + off, bytes) == 0 && dst[bytes] == 0xAA,
                           "blocking read of %zu bytes at %zu differs or overruns", bytes, off);
                    reads++;
                }
            }
        }
        clReleaseMemObject(mb);
        free(src);
        free(dst);
        EXPECT(reads == 40, "%d reads", reads);
    }
    pass("40 blocking reads of 4 B to 1 MiB, back to back: data right, event CL_COMPLETE on return");

    /* Across two queues of the context. */
    q2 = clCreateCommandQueue(t->context, t->device, 0, &err);
    TRY_ERR(err, "clCreateCommandQueue(second)");
    fill_ints(host, N, 500);
    TRY(clEnqueueWriteBuffer(t->queue, m, CL_FALSE, 0, sizeof(host), host, 0, NULL, &ev_w));
    TRY(clFlush(t->queue));
    TRY(clEnqueueNDRangeKernel(q2, k, 1, NULL, &global, NULL, 1, &ev_w, &ev_k));
    TRY(clFlush(q2));
    TRY(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 0, sizeof(out), out, 1, &ev_k, NULL));
    EXPECT(diff_ints(out, N, 501) < 0, "cross-queue chain differs at %ld", diff_ints(out, N, 501));
    clReleaseEvent(ev_w);
    clReleaseEvent(ev_k);
    TRY(clFinish(q2));
    pass("a kernel on a second queue waits on the first queue's write; a read waits on it");

    /* Markers and barriers, 1.2 and 1.1 flavors. */
    {
        cl_event mk, br, mk11;
        TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL));
        TRY(clEnqueueMarkerWithWaitList(t->queue, 0, NULL, &mk));
        TRY(clEnqueueBarrierWithWaitList(t->queue, 1, &mk, &br));
        TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL));
        TRY(clEnqueueMarker(t->queue, &mk11));
        TRY(clEnqueueBarrier(t->queue));
        /* clEnqueueWaitForEvents is left out: PoCL 3.1 aborts in it ("unimplemented"). */
        TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL));
        TRY(clWaitForEvents(1, &br));
        TRY(clFinish(t->queue));
        EXPECT(event_type(mk) == CL_COMMAND_MARKER && event_type(br) == CL_COMMAND_BARRIER &&
                   event_type(mk11) == CL_COMMAND_MARKER,
               "marker/barrier event types 0x%x 0x%x 0x%x", event_type(mk), event_type(br),
               event_type(mk11));
        EXPECT(event_status(mk) == CL_COMPLETE && event_status(mk11) == CL_COMPLETE,
               "markers not complete after clFinish");
        TRY(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
        EXPECT(diff_ints(out, N, 504) < 0, "after three more kernels: differs at %ld",
               diff_ints(out, N, 504));
        clReleaseEvent(mk);
        clReleaseEvent(br);
        clReleaseEvent(mk11);
        pass("clEnqueueMarkerWithWaitList, clEnqueueBarrierWithWaitList, clEnqueueMarker, "
             "clEnqueueBarrier");
    }

    /* A user event gates a kernel; callbacks on both. */
    {
        callback_rec_t rec_user = {0}, rec_kernel = {0};
        cl_event ue = clCreateUserEvent(t->context, &err);
        cl_int st;

        TRY_ERR(err, "clCreateUserEvent");
        EXPECT(event_type(ue) == CL_COMMAND_USER, "user event type 0x%x", event_type(ue));
        EXPECT(event_status(ue) == CL_SUBMITTED, "new user event status %d, expected CL_SUBMITTED",
               event_status(ue));
        TRY(clSetEventCallback(ue, CL_COMPLETE, tour_callback, &rec_user));
        TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &global, NULL, 1, &ue, &ev_k));
        TRY(clSetEventCallback(ev_k, CL_COMPLETE, tour_callback, &rec_kernel));
        TRY(clFlush(t->queue));
        sleep_ms(100);
        st = event_status(ev_k);
        EXPECT(st == CL_QUEUED || st == CL_SUBMITTED,
               "the gated kernel ran before its user event was set (status %d)", st);
        EXPECT(atomic_load(&rec_user.calls) == 0 && atomic_load(&rec_kernel.calls) == 0,
               "callbacks ran before completion");
        pass("clCreateUserEvent (CL_COMMAND_USER, CL_SUBMITTED); a kernel waiting on it stays "
             "queued");
        TRY(clSetUserEventStatus(ue, CL_COMPLETE));
        TRY(clWaitForEvents(1, &ev_k));
        TRY(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
        EXPECT(diff_ints(out, N, 505) < 0, "gated kernel result differs at %ld",
               diff_ints(out, N, 505));
        pass("clSetUserEventStatus(CL_COMPLETE) releases the kernel");
        EXPECT_CL(clSetUserEventStatus(ue, CL_COMPLETE), CL_INVALID_OPERATION);
        pass("setting a user event's status twice gives CL_INVALID_OPERATION");

        EXPECT(wait_callback(&rec_user) == 1 && wait_callback(&rec_kernel) == 1,
               "callbacks ran %d and %d times, expected once each",
               atomic_load(&rec_user.calls), atomic_load(&rec_kernel.calls));
        EXPECT(atomic_load(&rec_user.status) == CL_COMPLETE &&
                   atomic_load(&rec_kernel.status) == CL_COMPLETE,
               "callback status %d / %d, expected CL_COMPLETE", atomic_load(&rec_user.status),
               atomic_load(&rec_kernel.status));
        EXPECT(atomic_load(&rec_user.seen_event) == (uintptr_t)ue &&
                   atomic_load(&rec_kernel.seen_event) == (uintptr_t)ev_k,
               "callbacks got another event handle than the one registered");
        pass("clSetEventCallback(CL_COMPLETE) on the user event and on the kernel: each ran once "
             "with CL_COMPLETE and its own event");
        {
            callback_rec_t late = {0};
            TRY(clSetEventCallback(ev_k, CL_COMPLETE, tour_callback, &late));
            EXPECT(wait_callback(&late) == 1 && atomic_load(&late.status) == CL_COMPLETE,
                   "callback registered on a completed event: %d calls, status %d",
                   atomic_load(&late.calls), atomic_load(&late.status));
            pass("a callback registered on a completed event runs too");
        }
        clReleaseEvent(ev_k);
        clReleaseEvent(ue);
    }

    /* Profiling. */
    {
        cl_ulong q = 0, s = 0, st = 0, e = 0;
        cl_event pe;

        TRY(clEnqueueNDRangeKernel(t->prof_queue, k, 1, NULL, &global, NULL, 0, NULL, &pe));
        TRY(clFinish(t->prof_queue));
        TRY(clGetEventProfilingInfo(pe, CL_PROFILING_COMMAND_QUEUED, sizeof(q), &q, NULL));
        TRY(clGetEventProfilingInfo(pe, CL_PROFILING_COMMAND_SUBMIT, sizeof(s), &s, NULL));
        TRY(clGetEventProfilingInfo(pe, CL_PROFILING_COMMAND_START, sizeof(st), &st, NULL));
        TRY(clGetEventProfilingInfo(pe, CL_PROFILING_COMMAND_END, sizeof(e), &e, NULL));
        EXPECT(q > 0 && q <= s && s <= st && st <= e && e - q < 60000000000ull,
               "profiling: queued %llu submit %llu start %llu end %llu", (unsigned long long)q,
               (unsigned long long)s, (unsigned long long)st, (unsigned long long)e);
        clReleaseEvent(pe);
        pass("profiling: queued <= submit <= start <= end (kernel %.3f ms)", (double)(e - st) * 1e-6);

        TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &global, NULL, 0, NULL, &pe));
        TRY(clFinish(t->queue));
        EXPECT_CL(clGetEventProfilingInfo(pe, CL_PROFILING_COMMAND_END, sizeof(e), &e, NULL),
                  CL_PROFILING_INFO_NOT_AVAILABLE);
        clReleaseEvent(pe);
        pass("profiling info of an event on a queue without profiling gives "
             "CL_PROFILING_INFO_NOT_AVAILABLE");
    }

    /* After clFinish every earlier event is complete, without waiting on it. */
    {
        cl_event evs[8];
        for (int i = 0; i < 8; i++)
            TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &global, NULL, 0, NULL, &evs[i]));
        TRY(clFlush(t->queue));
        TRY(clFinish(t->queue));
        for (int i = 0; i < 8; i++) {
            EXPECT(event_status(evs[i]) == CL_COMPLETE, "event %d status %d after clFinish", i,
                   event_status(evs[i]));
            clReleaseEvent(evs[i]);
        }
        pass("clFlush, clFinish: all 8 enqueued kernels complete afterwards");
    }
    EXPECT_CL(clWaitForEvents(0, NULL), CL_INVALID_VALUE);
    pass("clWaitForEvents(0, NULL) gives CL_INVALID_VALUE");
    clReleaseCommandQueue(q2);
    clReleaseKernel(k);
    clReleaseMemObject(m);
}

/* ------------------------------------------------------------------------ */
/* Reference counts and object lifetime                                      */

#define REFCOUNT_ROUND_TRIP(what, obj, getinfo, param, retain, release)         \
    do {                                                                      \
        cl_uint r0_ = 0, r1_ = 0, r2_ = 0;                                    \
        TRY(getinfo(obj, param, sizeof(cl_uint), &r0_, NULL));                \
        TRY(retain(obj));                                                     \
        TRY(getinfo(obj, param, sizeof(cl_uint), &r1_, NULL));                \
        TRY(release(obj));                                                    \
        TRY(getinfo(obj, param, sizeof(cl_uint), &r2_, NULL));                \
        EXPECT(r0_ >= 1 && r1_ == r0_ + 1 && r2_ == r0_,                      \
               "%s reference count: %u, after retain %u, after release %u", what, r0_, r1_, \
               r2_);                                                          \
        pass("%s: reference count %u, retain -> %u, release -> %u", what, r0_, r1_, r2_); \
    } while (0)

static void tour_refcounts(tour_t *t)
{
    cl_context ctx;
    cl_command_queue q;
    cl_mem m;
    cl_program p;
    cl_kernel k;
    cl_event ev, ue;
    cl_uint rc = 0;
    cl_int err;

    section("retain, release and reference counts");
    ctx = clCreateContext(NULL, 1, &t->device, NULL, NULL, &err);
    TRY_ERR(err, "clCreateContext");
    TRY(clGetContextInfo(ctx, CL_CONTEXT_REFERENCE_COUNT, sizeof(rc), &rc, NULL));
    EXPECT(rc == 1, "a new context has reference count %u", rc);
    REFCOUNT_ROUND_TRIP("context", ctx, clGetContextInfo, CL_CONTEXT_REFERENCE_COUNT,
                        clRetainContext, clReleaseContext);

    q = clCreateCommandQueue(ctx, t->device, 0, &err);
    TRY_ERR(err, "clCreateCommandQueue");
    TRY(clGetCommandQueueInfo(q, CL_QUEUE_REFERENCE_COUNT, sizeof(rc), &rc, NULL));
    EXPECT(rc == 1, "a new queue has reference count %u", rc);
    REFCOUNT_ROUND_TRIP("command queue", q, clGetCommandQueueInfo, CL_QUEUE_REFERENCE_COUNT,
                        clRetainCommandQueue, clReleaseCommandQueue);

    m = clCreateBuffer(ctx, CL_MEM_READ_WRITE, 256, NULL, &err);
    TRY_ERR(err, "clCreateBuffer");
    TRY(clGetMemObjectInfo(m, CL_MEM_REFERENCE_COUNT, sizeof(rc), &rc, NULL));
    EXPECT(rc == 1, "a new buffer has reference count %u", rc);
    REFCOUNT_ROUND_TRIP("buffer", m, clGetMemObjectInfo, CL_MEM_REFERENCE_COUNT,
                        clRetainMemObject, clReleaseMemObject);

    p = clCreateProgramWithSource(ctx, 1, &tour_source, NULL, &err);
    TRY_ERR(err, "clCreateProgramWithSource");
    TRY(clBuildProgram(p, 1, &t->device, TOUR_OPTIONS, NULL, NULL));
    TRY(clGetProgramInfo(p, CL_PROGRAM_REFERENCE_COUNT, sizeof(rc), &rc, NULL));
    EXPECT(rc == 1, "a new program has reference count %u", rc);
    REFCOUNT_ROUND_TRIP("program", p, clGetProgramInfo, CL_PROGRAM_REFERENCE_COUNT,
                        clRetainProgram, clReleaseProgram);

    k = clCreateKernel(p, "add_one", &err);
    TRY_ERR(err, "clCreateKernel");
    TRY(clGetKernelInfo(k, CL_KERNEL_REFERENCE_COUNT, sizeof(rc), &rc, NULL));
    EXPECT(rc == 1, "a new kernel has reference count %u", rc);
    REFCOUNT_ROUND_TRIP("kernel", k, clGetKernelInfo, CL_KERNEL_REFERENCE_COUNT, clRetainKernel,
                        clReleaseKernel);

    TRY(clEnqueueMarkerWithWaitList(q, 0, NULL, &ev));
    TRY(clFinish(q));
    REFCOUNT_ROUND_TRIP("event", ev, clGetEventInfo, CL_EVENT_REFERENCE_COUNT, clRetainEvent,
                        clReleaseEvent);
    ue = clCreateUserEvent(ctx, &err);
    TRY_ERR(err, "clCreateUserEvent");
    REFCOUNT_ROUND_TRIP("user event", ue, clGetEventInfo, CL_EVENT_REFERENCE_COUNT, clRetainEvent,
                        clReleaseEvent);
    TRY(clSetUserEventStatus(ue, CL_COMPLETE));

    TRY(clReleaseEvent(ue));
    TRY(clReleaseEvent(ev));
    TRY(clReleaseKernel(k));
    TRY(clReleaseProgram(p));
    TRY(clReleaseMemObject(m));
    TRY(clReleaseCommandQueue(q));
    TRY(clReleaseContext(ctx));
    pass("every object released to zero");
}

static void tour_lifetimes(tour_t *t)
{
    enum { N = 64 };
    cl_int host[N], out[N], err;
    cl_program p;
    cl_kernel k;
    cl_mem m, src, dst;
    cl_event ue;
    size_t global = N;

    section("objects released while still in use");
    p = clCreateProgramWithSource(t->context, 1, &tour_source, NULL, &err);
    TRY_ERR(err, "clCreateProgramWithSource");
    TRY(clBuildProgram(p, 1, &t->device, TOUR_OPTIONS, NULL, NULL));
    k = clCreateKernel(p, "add_one", &err);
    TRY_ERR(err, "clCreateKernel");
    TRY(clReleaseProgram(p));
    fill_ints(host, N, 7);
    m = clCreateBuffer(t->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof(host), host,
                       &err);
    TRY_ERR(err, "clCreateBuffer");
    TRY(clSetKernelArg(k, 0, sizeof(cl_mem), &m));
    TRY(clEnqueueNDRangeKernel(t->queue, k, 1, NULL, &global, NULL, 0, NULL, NULL));
    TRY(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
    EXPECT(diff_ints(out, N, 8) < 0, "kernel of a released program: differs at %ld",
           diff_ints(out, N, 8));
    {
        cl_program kp = NULL;
        TRY(clGetKernelInfo(k, CL_KERNEL_PROGRAM, sizeof(kp), &kp, NULL));
        EXPECT(kp == p, "CL_KERNEL_PROGRAM changed after the program's release");
    }
    TRY(clReleaseKernel(k));
    clReleaseMemObject(m);
    pass("a kernel runs after the application released its program");

    /* A buffer released while a command that reads it waits on a user event. */
    fill_ints(host, N, 77);
    src = clCreateBuffer(t->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof(host), host,
                         &err);
    TRY_ERR(err, "clCreateBuffer(src)");
    dst = clCreateBuffer(t->context, CL_MEM_READ_WRITE, sizeof(host), NULL, &err);
    TRY_ERR(err, "clCreateBuffer(dst)");
    ue = clCreateUserEvent(t->context, &err);
    TRY_ERR(err, "clCreateUserEvent");
    TRY(clEnqueueCopyBuffer(t->queue, src, dst, 0, 0, sizeof(host), 1, &ue, NULL));
    TRY(clReleaseMemObject(src));
    TRY(clFlush(t->queue));
    TRY(clSetUserEventStatus(ue, CL_COMPLETE));
    TRY(clEnqueueReadBuffer(t->queue, dst, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
    EXPECT(diff_ints(out, N, 77) < 0, "copy from a released buffer: differs at %ld",
           diff_ints(out, N, 77));
    clReleaseEvent(ue);
    clReleaseMemObject(dst);
    pass("a buffer released while a pending copy still reads it: the copy completes");
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                    */

static void tour_errors(tour_t *t)
{
    cl_int buf[16], err;
    cl_mem m, none = NULL;
    cl_kernel k;

    section("error cases");
    EXPECT_CL(clEnqueueReadBuffer(t->queue, none, CL_TRUE, 0, 16, buf, 0, NULL, NULL),
              CL_INVALID_MEM_OBJECT);
    EXPECT_CL(clEnqueueWriteBuffer(t->queue, none, CL_TRUE, 0, 16, buf, 0, NULL, NULL),
              CL_INVALID_MEM_OBJECT);
    pass("read/write of a NULL mem object gives CL_INVALID_MEM_OBJECT");

    m = clCreateBuffer(t->context, CL_MEM_READ_WRITE, 256, NULL, &err);
    TRY_ERR(err, "clCreateBuffer");
    EXPECT_CL(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 252, sizeof(buf), buf, 0, NULL, NULL),
              CL_INVALID_VALUE);
    EXPECT_CL(clEnqueueWriteBuffer(t->queue, m, CL_TRUE, 0, 257, buf, 0, NULL, NULL),
              CL_INVALID_VALUE);
    EXPECT_CL(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 0, 16, NULL, 0, NULL, NULL),
              CL_INVALID_VALUE);
    pass("out-of-range read/write and a NULL host pointer give CL_INVALID_VALUE");
    {
        cl_event ev;
        EXPECT_CL(clEnqueueReadBuffer(t->queue, m, CL_TRUE, 0, 16, buf, 1, NULL, &ev),
                  CL_INVALID_EVENT_WAIT_LIST);
        pass("a wait list count with a NULL list gives CL_INVALID_EVENT_WAIT_LIST");
    }
    clReleaseMemObject(m);

    m = clCreateBuffer(t->context, CL_MEM_READ_WRITE, 0, NULL, &err);
    EXPECT(m == NULL && err == CL_INVALID_BUFFER_SIZE, "clCreateBuffer(size 0) gave %s",
           cl_err_name(err));
    m = clCreateBuffer(t->context, CL_MEM_USE_HOST_PTR, 64, NULL, &err);
    EXPECT(m == NULL && err == CL_INVALID_HOST_PTR,
           "clCreateBuffer(USE_HOST_PTR, NULL host_ptr) gave %s", cl_err_name(err));
    pass("clCreateBuffer of size 0 gives CL_INVALID_BUFFER_SIZE; USE_HOST_PTR without a pointer "
         "gives CL_INVALID_HOST_PTR");

    if (t->program) {
        k = clCreateKernel(t->program, "no_such_kernel", &err);
        EXPECT(k == NULL && err == CL_INVALID_KERNEL_NAME, "clCreateKernel(no_such_kernel) gave %s",
               cl_err_name(err));
        pass("clCreateKernel of an unknown name gives CL_INVALID_KERNEL_NAME");
    }
}

/* ------------------------------------------------------------------------ */
/* Threads                                                                   */

typedef struct {
    tour_t *t;
    int index;
    char error[256];
} thread_arg_t;

static void *tour_thread(void *argp)
{
    thread_arg_t *arg = argp;
    tour_t *t = arg->t;
    enum { N = 4096 };
    cl_int host[N], out[N], err;
    cl_command_queue q = clCreateCommandQueue(t->context, t->device, 0, &err);
    cl_kernel k = NULL;
    cl_mem m = NULL;
    size_t global = N;

    if (err != CL_SUCCESS) {
        snprintf(arg->error, sizeof(arg->error), "clCreateCommandQueue: %s", cl_err_name(err));
        return NULL;
    }
    k = clCreateKernel(t->program, "add_one", &err);
    if (err == CL_SUCCESS)
        m = clCreateBuffer(t->context, CL_MEM_READ_WRITE, sizeof(host), NULL, &err);
    if (err == CL_SUCCESS)
        err = clSetKernelArg(k, 0, sizeof(cl_mem), &m);
    for (int it = 0; err == CL_SUCCESS && it < 25; it++) {
        cl_int base = arg->index * 1000000 + it * 10000;
        fill_ints(host, N, base);
        err = clEnqueueWriteBuffer(q, m, CL_FALSE, 0, sizeof(host), host, 0, NULL, NULL);
        if (err == CL_SUCCESS)
            err = clEnqueueNDRangeKernel(q, k, 1, NULL, &global, NULL, 0, NULL, NULL);
        if (err == CL_SUCCESS)
            err = clEnqueueReadBuffer(q, m, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL);
        if (err == CL_SUCCESS && diff_ints(out, N, base + 1) >= 0) {
            snprintf(arg->error, sizeof(arg->error), "iteration %d: data differ at %ld", it,
                     diff_ints(out, N, base + 1));
            break;
        }
    }
    if (err != CL_SUCCESS)
        snprintf(arg->error, sizeof(arg->error), "an OpenCL call failed: %s", cl_err_name(err));
    if (m)
        clReleaseMemObject(m);
    if (k)
        clReleaseKernel(k);
    clReleaseCommandQueue(q);
    return NULL;
}

static void tour_threads(tour_t *t)
{
    enum { THREADS = 4 };
    pthread_t th[THREADS];
    thread_arg_t args[THREADS];

    section("threads");
    if (!t->program) {
        fail(__LINE__, "skipped: the main program did not build");
        return;
    }
    for (int i = 0; i < THREADS; i++) {
        args[i].t = t;
        args[i].index = i;
        args[i].error[0] = '\0';
        EXPECT(pthread_create(&th[i], NULL, tour_thread, &args[i]) == 0, "pthread_create failed");
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++)
        EXPECT(args[i].error[0] == '\0', "thread %d: %s", i, args[i].error);
    pass("%d threads, each with its own queue, kernel and buffer: 25 write/kernel/read rounds "
         "each, all correct", THREADS);
}

/* ------------------------------------------------------------------------ */

int main(void)
{
    tour_t t = {0};

    setvbuf(stdout, NULL, _IOLBF, 0);
    tour_platform(&t);
    if (!t.platform) {
        printf("api_tour: %d checks, %d failed: FAIL (no device)\n", tour_checks, tour_failed);
        return 1;
    }
    tour_context(&t);
    if (!t.context || !t.queue || !t.prof_queue) {
        printf("api_tour: %d checks, %d failed: FAIL (no context or queue)\n", tour_checks,
               tour_failed);
        return 1;
    }
    tour_program_source(&t);
    tour_build_failure(&t);
    tour_program_binary(&t);
    tour_compile_link(&t);
    tour_kernel_objects(&t);
    tour_kernel_runs(&t);
    tour_buffers(&t);
    tour_sub_buffers(&t);
    tour_rect(&t);
    tour_map(&t);
    tour_image_queries(&t);
    tour_image_transfers(&t);
    tour_image_types(&t);
    tour_samplers(&t);
    tour_wait_and_partition(&t);
    tour_big_transfer(&t);
    tour_events(&t);
    tour_refcounts(&t);
    tour_lifetimes(&t);
    tour_errors(&t);
    tour_threads(&t);

    if (t.program)
        clReleaseProgram(t.program);
    clReleaseCommandQueue(t.prof_queue);
    clReleaseCommandQueue(t.queue);
    clReleaseContext(t.context);
    printf("api_tour: %d checks, %d failed: %s\n", tour_checks, tour_failed,
           tour_failed ? "FAIL" : "PASS");
    return tour_failed ? 1 : 0;
}
