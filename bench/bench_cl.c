/*
 * The OpenCL measurements of rgpu-bench. Every function runs unchanged on
 * the rgpu platform and on the local one: the same calls, the same sizes,
 * the same kernels, so the two figures differ only by where the calls run.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "rgpu/util.h"

static const char *bench_cl_source =
    "__kernel void rgpu_bench_empty(void)\n"
    "{\n"
    "}\n"
    "\n"
    "__kernel void rgpu_bench_vadd(__global const float *a, __global const float *b,\n"
    "                              __global float *c, uint n)\n"
    "{\n"
    "    size_t i = get_global_id(0);\n"
    "    if (i < n)\n"
    "        c[i] = a[i] + b[i];\n"
    "}\n"
    "\n"
    "/* Compute bound: 8 independent FMA chains per work item, no memory\n"
    " * traffic but one store. x <- x * 0.9999 + 0.0001 stays near [0, 1]. */\n"
    "__kernel void rgpu_bench_fma(__global float *out, uint iters)\n"
    "{\n"
    "    size_t i = get_global_id(0);\n"
    "    float s = (float)(i & 1023) * 1e-3f;\n"
    "    float x0 = s, x1 = s + 0.1f, x2 = s + 0.2f, x3 = s + 0.3f;\n"
    "    float x4 = s + 0.4f, x5 = s + 0.5f, x6 = s + 0.6f, x7 = s + 0.7f;\n"
    "    for (uint k = 0; k < iters; k++) {\n"
    "        x0 = fma(x0, 0.9999f, 0.0001f);\n"
    "        x1 = fma(x1, 0.9999f, 0.0001f);\n"
    "        x2 = fma(x2, 0.9999f, 0.0001f);\n"
    "        x3 = fma(x3, 0.9999f, 0.0001f);\n"
    "        x4 = fma(x4, 0.9999f, 0.0001f);\n"
    "        x5 = fma(x5, 0.9999f, 0.0001f);\n"
    "        x6 = fma(x6, 0.9999f, 0.0001f);\n"
    "        x7 = fma(x7, 0.9999f, 0.0001f);\n"
    "    }\n"
    "    out[i] = ((x0 + x1) + (x2 + x3)) + ((x4 + x5) + (x6 + x7));\n"
    "}\n";

const char *const bench_lat_call_name[BENCH_LAT_COUNT] = {
    [BENCH_LAT_FINISH] = "clFinish (empty queue)",
    [BENCH_LAT_EVENT_STATUS] = "clGetEventInfo (status)",
    [BENCH_LAT_READ4] = "clEnqueueReadBuffer 4 B",
};

static const char *bench_cl_err_name(cl_int err)
{
    switch (err) {
#define BENCH_CL_ERR(e) case e: return #e;
    BENCH_CL_ERR(CL_DEVICE_NOT_FOUND)
    BENCH_CL_ERR(CL_DEVICE_NOT_AVAILABLE)
    BENCH_CL_ERR(CL_COMPILER_NOT_AVAILABLE)
    BENCH_CL_ERR(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    BENCH_CL_ERR(CL_OUT_OF_RESOURCES)
    BENCH_CL_ERR(CL_OUT_OF_HOST_MEMORY)
    BENCH_CL_ERR(CL_BUILD_PROGRAM_FAILURE)
    BENCH_CL_ERR(CL_MAP_FAILURE)
    BENCH_CL_ERR(CL_INVALID_VALUE)
    BENCH_CL_ERR(CL_INVALID_PLATFORM)
    BENCH_CL_ERR(CL_INVALID_DEVICE)
    BENCH_CL_ERR(CL_INVALID_CONTEXT)
    BENCH_CL_ERR(CL_INVALID_COMMAND_QUEUE)
    BENCH_CL_ERR(CL_INVALID_MEM_OBJECT)
    BENCH_CL_ERR(CL_INVALID_PROGRAM)
    BENCH_CL_ERR(CL_INVALID_PROGRAM_EXECUTABLE)
    BENCH_CL_ERR(CL_INVALID_KERNEL_NAME)
    BENCH_CL_ERR(CL_INVALID_KERNEL)
    BENCH_CL_ERR(CL_INVALID_ARG_INDEX)
    BENCH_CL_ERR(CL_INVALID_ARG_VALUE)
    BENCH_CL_ERR(CL_INVALID_ARG_SIZE)
    BENCH_CL_ERR(CL_INVALID_KERNEL_ARGS)
    BENCH_CL_ERR(CL_INVALID_WORK_GROUP_SIZE)
    BENCH_CL_ERR(CL_INVALID_GLOBAL_WORK_SIZE)
    BENCH_CL_ERR(CL_INVALID_EVENT)
    BENCH_CL_ERR(CL_INVALID_OPERATION)
    BENCH_CL_ERR(CL_INVALID_BUFFER_SIZE)
#undef BENCH_CL_ERR
    default:
        return "CL error";
    }
}

/* Prints what failed, on which platform, and returns -1. */
static int bench_cl_fail(const bench_cl_t *cl, const char *what, cl_int err)
{
    fprintf(stderr, "rgpu-bench: %s (%s): %s failed: %s (%d)\n", cl->label, cl->platform_name, what,
            bench_cl_err_name(err), err);
    return -1;
}

#define BENCH_CL_TRY(cl, call)                                                \
    do {                                                                      \
        cl_int bench_err_ = (call);                                           \
        if (bench_err_ != CL_SUCCESS)                                         \
            return bench_cl_fail((cl), #call, bench_err_);                    \
    } while (0)

/* ---- platforms and devices ---- */

static int bench_contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);

    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

cl_platform_id bench_cl_find_platform(const char *name, const char *exclude)
{
    cl_platform_id ids[32], found = NULL;
    cl_uint n = 0;

    if (clGetPlatformIDs(32, ids, &n) != CL_SUCCESS)
        return NULL;
    if (n > 32)
        n = 32;
    /* An exact name wins over a substring match. */
    for (int pass = 0; pass < 2 && !found; pass++) {
        for (cl_uint i = 0; i < n && !found; i++) {
            char pname[256] = "", vendor[256] = "";
            clGetPlatformInfo(ids[i], CL_PLATFORM_NAME, sizeof(pname), pname, NULL);
            clGetPlatformInfo(ids[i], CL_PLATFORM_VENDOR, sizeof(vendor), vendor, NULL);
            if (exclude && !strcmp(pname, exclude))
                continue;
            if (!name || !name[0])
                found = ids[i];
            else if (pass == 0 ? !strcmp(pname, name)
                               : bench_contains_ci(pname, name) || bench_contains_ci(vendor, name))
                found = ids[i];
        }
    }
    return found;
}

int bench_cl_platform_threads_batch(const char *skip)
{
    cl_platform_id ids[32];
    cl_uint n = 0;
    int changed = rgpu_thread_batch_begin();

    if (changed < 0) {
        fprintf(stderr, "rgpu-bench: cannot switch to SCHED_BATCH: %s\n", strerror(errno));
        return -1;
    }
    if (clGetPlatformIDs(32, ids, &n) == CL_SUCCESS) {
        for (cl_uint i = 0; i < n && i < 32; i++) {
            char pname[256] = "";
            cl_uint ndev = 0;
            clGetPlatformInfo(ids[i], CL_PLATFORM_NAME, sizeof(pname), pname, NULL);
            if (strcmp(pname, skip) != 0)
                clGetDeviceIDs(ids[i], CL_DEVICE_TYPE_ALL, 0, NULL, &ndev);
        }
    }
    if (changed && rgpu_thread_batch_end() != 0) {
        fprintf(stderr, "rgpu-bench: cannot go back to SCHED_OTHER: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

int bench_threads_batch(void)
{
    DIR *dir = opendir("/proc/self/task");
    struct dirent *e;
    int count = 0;

    if (!dir)
        return -1;
    while ((e = readdir(dir)) != NULL) {
        char path[300], line[1024];
        FILE *f;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "/proc/self/task/%s/stat", e->d_name);
        if (!(f = fopen(path, "r")))
            continue;
        if (fgets(line, sizeof(line), f)) {
            /* After "(comm) ", the policy is the 39th field. */
            char *p = strrchr(line, ')');
            int field = 0;
            for (p = p ? p + 1 : line; *p && field < 39; p++)
                if (*p == ' ')
                    field++;
            if (field == 39 && atoi(p) == SCHED_BATCH)
                count++;
        }
        fclose(f);
    }
    closedir(dir);
    return count;
}

int bench_cl_open(bench_cl_t *cl, const char *label, cl_platform_id platform)
{
    cl_uint ndev = 0;
    cl_int err;

    memset(cl, 0, sizeof(*cl));
    cl->label = label;
    cl->platform = platform;
    clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof(cl->platform_name), cl->platform_name, NULL);
    err = clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &cl->device, &ndev);
    if (err != CL_SUCCESS || ndev == 0) {
        fprintf(stderr, "rgpu-bench: %s: platform \"%s\" has no device (%s)%s\n", label, cl->platform_name,
                err == CL_SUCCESS ? "none listed" : bench_cl_err_name(err),
                !strcmp(label, "rgpu") ? "; is RGPU_SERVERS set and the server up?" : "");
        return -1;
    }
    clGetDeviceInfo(cl->device, CL_DEVICE_NAME, sizeof(cl->device_name), cl->device_name, NULL);
    cl->context = clCreateContext(NULL, 1, &cl->device, NULL, NULL, &err);
    if (!cl->context)
        return bench_cl_fail(cl, "clCreateContext", err);
    cl->queue = clCreateCommandQueue(cl->context, cl->device, 0, &err);
    if (!cl->queue)
        return bench_cl_fail(cl, "clCreateCommandQueue", err);
    cl->program = clCreateProgramWithSource(cl->context, 1, &bench_cl_source, NULL, &err);
    if (!cl->program)
        return bench_cl_fail(cl, "clCreateProgramWithSource", err);
    err = clBuildProgram(cl->program, 1, &cl->device, "", NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[4096] = "";
        clGetProgramBuildInfo(cl->program, cl->device, CL_PROGRAM_BUILD_LOG, sizeof(log) - 1, log, NULL);
        fprintf(stderr, "rgpu-bench: %s: build log:\n%s\n", label, log);
        return bench_cl_fail(cl, "clBuildProgram", err);
    }
    if (!(cl->k_empty = clCreateKernel(cl->program, "rgpu_bench_empty", &err)) ||
        !(cl->k_vadd = clCreateKernel(cl->program, "rgpu_bench_vadd", &err)) ||
        !(cl->k_fma = clCreateKernel(cl->program, "rgpu_bench_fma", &err)))
        return bench_cl_fail(cl, "clCreateKernel", err);
    return 0;
}

void bench_cl_close(bench_cl_t *cl)
{
    bench_cl_bw_teardown(cl);
    if (cl->k_fma)
        clReleaseKernel(cl->k_fma);
    if (cl->k_vadd)
        clReleaseKernel(cl->k_vadd);
    if (cl->k_empty)
        clReleaseKernel(cl->k_empty);
    if (cl->program)
        clReleaseProgram(cl->program);
    if (cl->queue)
        clReleaseCommandQueue(cl->queue);
    if (cl->context)
        clReleaseContext(cl->context);
    memset(cl, 0, sizeof(*cl));
}

/* ---- latency of synchronous calls ---- */

int bench_cl_lat_begin(bench_cl_lat_t *l, bench_cl_t *cl, bench_lat_call_t call)
{
    cl_int err;

    memset(l, 0, sizeof(*l));
    l->cl = cl;
    l->call = call;
    if (call == BENCH_LAT_EVENT_STATUS) {
        BENCH_CL_TRY(cl, clEnqueueMarkerWithWaitList(cl->queue, 0, NULL, &l->event));
    } else if (call == BENCH_LAT_READ4) {
        l->mem = clCreateBuffer(cl->context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof(l->word), &l->word,
                                &err);
        if (!l->mem)
            return bench_cl_fail(cl, "clCreateBuffer", err);
    }
    BENCH_CL_TRY(cl, clFinish(cl->queue));
    return 0;
}

int bench_cl_lat_step(bench_cl_lat_t *l, double *us)
{
    cl_int status, err;
    double t0 = bench_now_us();

    switch (l->call) {
    case BENCH_LAT_FINISH:
        err = clFinish(l->cl->queue);
        break;
    case BENCH_LAT_EVENT_STATUS:
        err = clGetEventInfo(l->event, CL_EVENT_COMMAND_EXECUTION_STATUS, sizeof(status), &status, NULL);
        if (err == CL_SUCCESS && status != CL_COMPLETE)
            err = CL_INVALID_EVENT;
        break;
    default:
        err = clEnqueueReadBuffer(l->cl->queue, l->mem, CL_TRUE, 0, sizeof(l->word), &l->word, 0, NULL, NULL);
        break;
    }
    *us = bench_now_us() - t0;
    return err == CL_SUCCESS ? 0 : bench_cl_fail(l->cl, bench_lat_call_name[l->call], err);
}

void bench_cl_lat_end(bench_cl_lat_t *l)
{
    if (l->event)
        clReleaseEvent(l->event);
    if (l->mem)
        clReleaseMemObject(l->mem);
    memset(l, 0, sizeof(*l));
}

/* ---- bandwidth ---- */

int bench_cl_bw_setup(bench_cl_t *cl, size_t size)
{
    cl_int err;

    cl->bw_size = size;
    cl->bw_dev = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, size, NULL, &err);
    if (!cl->bw_dev)
        return bench_cl_fail(cl, "clCreateBuffer (device)", err);
    cl->bw_pinned = clCreateBuffer(cl->context, CL_MEM_READ_WRITE | CL_MEM_ALLOC_HOST_PTR, size, NULL, &err);
    if (!cl->bw_pinned)
        return bench_cl_fail(cl, "clCreateBuffer (CL_MEM_ALLOC_HOST_PTR)", err);
    /* Mapped once for the whole run, as applications that use pinned
     * staging memory do; WRITE_INVALIDATE: nothing needs to be read first. */
    cl->bw_pinned_ptr = clEnqueueMapBuffer(cl->queue, cl->bw_pinned, CL_TRUE, CL_MAP_WRITE_INVALIDATE_REGION, 0,
                                           size, 0, NULL, NULL, &err);
    if (!cl->bw_pinned_ptr)
        return bench_cl_fail(cl, "clEnqueueMapBuffer", err);
    memset(cl->bw_pinned_ptr, 0, size);
    return 0;
}

void bench_cl_bw_teardown(bench_cl_t *cl)
{
    if (cl->bw_pinned_ptr) {
        clEnqueueUnmapMemObject(cl->queue, cl->bw_pinned, cl->bw_pinned_ptr, 0, NULL, NULL);
        clFinish(cl->queue);
        cl->bw_pinned_ptr = NULL;
    }
    if (cl->bw_pinned)
        clReleaseMemObject(cl->bw_pinned);
    if (cl->bw_dev)
        clReleaseMemObject(cl->bw_dev);
    cl->bw_pinned = cl->bw_dev = NULL;
    cl->bw_size = 0;
}

void *bench_cl_pinned_ptr(bench_cl_t *cl)
{
    return cl->bw_pinned_ptr;
}

int bench_cl_bw_step(bench_cl_t *cl, int h2d, void *host, size_t size, double *us)
{
    double t0 = bench_now_us();

    if (h2d) {
        /* A blocking write may return once the host memory is reusable,
         * before the data is on the device (rgpu does): clFinish makes one
         * iteration mean "the data is on the device". */
        BENCH_CL_TRY(cl, clEnqueueWriteBuffer(cl->queue, cl->bw_dev, CL_TRUE, 0, size, host, 0, NULL, NULL));
        BENCH_CL_TRY(cl, clFinish(cl->queue));
    } else {
        BENCH_CL_TRY(cl, clEnqueueReadBuffer(cl->queue, cl->bw_dev, CL_TRUE, 0, size, host, 0, NULL, NULL));
    }
    *us = bench_now_us() - t0;
    return 0;
}

/* ---- kernel launches ---- */

static const size_t bench_one = 1;

int bench_cl_launch_async(bench_cl_t *cl, size_t n, double *us)
{
    double t0 = bench_now_us();

    for (size_t i = 0; i < n; i++)
        BENCH_CL_TRY(cl, clEnqueueNDRangeKernel(cl->queue, cl->k_empty, 1, NULL, &bench_one, &bench_one, 0,
                                                NULL, NULL));
    BENCH_CL_TRY(cl, clFinish(cl->queue));
    *us = bench_now_us() - t0;
    return 0;
}

int bench_cl_launch_sync_step(bench_cl_t *cl, double *us)
{
    double t0 = bench_now_us();

    BENCH_CL_TRY(cl, clEnqueueNDRangeKernel(cl->queue, cl->k_empty, 1, NULL, &bench_one, &bench_one, 0, NULL,
                                            NULL));
    BENCH_CL_TRY(cl, clFinish(cl->queue));
    *us = bench_now_us() - t0;
    return 0;
}

/* ---- whole programs ---- */

int bench_cl_vadd(bench_cl_t *cl, size_t n, double *us)
{
    size_t bytes = n * sizeof(float), global = (n + 63) / 64 * 64;
    float *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    cl_mem ma = NULL, mb = NULL, mc = NULL;
    cl_uint n_arg = (cl_uint)n;
    cl_int err = CL_OUT_OF_HOST_MEMORY;
    const char *what = "malloc";
    int rc = -1;
    double t0;

    if (!a || !b || !c)
        goto out;
    for (size_t i = 0; i < n; i++) {
        a[i] = (float)(i % 1000) * 0.5f;
        b[i] = (float)(i % 777) * 2.0f + 1.0f;
    }
    memset(c, 0, bytes);

    /* What a program does: allocate, upload, run, download, release. */
    t0 = bench_now_us();
#define BENCH_STEP(call)                                                      \
    do {                                                                      \
        what = #call;                                                         \
        if ((err = (call)) != CL_SUCCESS)                                     \
            goto out;                                                         \
    } while (0)
    what = "clCreateBuffer";
    if (!(ma = clCreateBuffer(cl->context, CL_MEM_READ_ONLY, bytes, NULL, &err)) ||
        !(mb = clCreateBuffer(cl->context, CL_MEM_READ_ONLY, bytes, NULL, &err)) ||
        !(mc = clCreateBuffer(cl->context, CL_MEM_WRITE_ONLY, bytes, NULL, &err)))
        goto out;
    BENCH_STEP(clEnqueueWriteBuffer(cl->queue, ma, CL_TRUE, 0, bytes, a, 0, NULL, NULL));
    BENCH_STEP(clEnqueueWriteBuffer(cl->queue, mb, CL_TRUE, 0, bytes, b, 0, NULL, NULL));
    BENCH_STEP(clSetKernelArg(cl->k_vadd, 0, sizeof(cl_mem), &ma));
    BENCH_STEP(clSetKernelArg(cl->k_vadd, 1, sizeof(cl_mem), &mb));
    BENCH_STEP(clSetKernelArg(cl->k_vadd, 2, sizeof(cl_mem), &mc));
    BENCH_STEP(clSetKernelArg(cl->k_vadd, 3, sizeof(cl_uint), &n_arg));
    BENCH_STEP(clEnqueueNDRangeKernel(cl->queue, cl->k_vadd, 1, NULL, &global, NULL, 0, NULL, NULL));
    BENCH_STEP(clEnqueueReadBuffer(cl->queue, mc, CL_TRUE, 0, bytes, c, 0, NULL, NULL));
    BENCH_STEP(clFinish(cl->queue));
    clReleaseMemObject(ma);
    clReleaseMemObject(mb);
    clReleaseMemObject(mc);
    ma = mb = mc = NULL;
    *us = bench_now_us() - t0;
#undef BENCH_STEP

    err = CL_SUCCESS;
    rc = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i] != a[i] + b[i]) {
            fprintf(stderr, "rgpu-bench: %s: vector add: element %zu is %g, expected %g\n", cl->label, i,
                    (double)c[i], (double)(a[i] + b[i]));
            rc = -1;
            break;
        }
    }
out:
    if (err != CL_SUCCESS)
        rc = bench_cl_fail(cl, what, err);
    if (ma)
        clReleaseMemObject(ma);
    if (mb)
        clReleaseMemObject(mb);
    if (mc)
        clReleaseMemObject(mc);
    free(a);
    free(b);
    free(c);
    return rc;
}

int bench_cl_fma(bench_cl_t *cl, size_t items, uint32_t iters, float *out, double *us)
{
    cl_mem mout;
    cl_int err;
    double t0;
    int rc = 0;

    mout = clCreateBuffer(cl->context, CL_MEM_WRITE_ONLY, items * sizeof(float), NULL, &err);
    if (!mout)
        return bench_cl_fail(cl, "clCreateBuffer", err);
    BENCH_CL_TRY(cl, clSetKernelArg(cl->k_fma, 0, sizeof(cl_mem), &mout));
    BENCH_CL_TRY(cl, clSetKernelArg(cl->k_fma, 1, sizeof(cl_uint), &iters));
    BENCH_CL_TRY(cl, clFinish(cl->queue));
    t0 = bench_now_us();
    err = clEnqueueNDRangeKernel(cl->queue, cl->k_fma, 1, NULL, &items, NULL, 0, NULL, NULL);
    if (err == CL_SUCCESS)
        err = clEnqueueReadBuffer(cl->queue, mout, CL_TRUE, 0, items * sizeof(float), out, 0, NULL, NULL);
    *us = bench_now_us() - t0;
    if (err != CL_SUCCESS)
        rc = bench_cl_fail(cl, "rgpu_bench_fma", err);
    clReleaseMemObject(mout);
    return rc;
}
