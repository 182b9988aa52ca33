/*
 * multi_device: vector_add on every device of every platform at once, each
 * device in its own context and queue, every result checked.
 *
 *   multi_device [N] [MIN_DEVICES]
 *
 * All devices get their work enqueued before any result is read, so the
 * devices (with rgpu: the servers) run concurrently. Prints one line per
 * device and
 *   multi_device: D devices checked, PASS
 * Exits 1 on a mismatch, a failed call, or fewer than MIN_DEVICES devices
 * (default 1).
 */
#include "cl_util.h"

#define MAX_DEVICES 64

static const char *source =
    "__kernel void vector_add(__global const float *a, __global const float *b,\n"
    "                         __global float *c, uint n)\n"
    "{\n"
    "    size_t i = get_global_id(0);\n"
    "    if (i < n)\n"
    "        c[i] = a[i] + b[i];\n"
    "}\n";

typedef struct {
    cl_device_id device;
    char *name;
    char *platform_name;
    cl_context context;
    cl_command_queue queue;
    cl_program program;
    cl_kernel kernel;
    cl_mem a, b, c;
    float *result;
} device_run_t;

int main(int argc, char **argv)
{
    size_t n = 1u << 18, global;
    unsigned long min_devices = 1;
    cl_platform_id platforms[16];
    cl_uint nplatforms = 0, ndev = 0;
    device_run_t runs[MAX_DEVICES];
    float *a, *b;
    cl_uint n_arg;
    cl_int err;

    if (argc > 1)
        n = strtoul(argv[1], NULL, 10);
    if (argc > 2)
        min_devices = strtoul(argv[2], NULL, 10);
    if (n == 0 || n > 0xffffffffu) {
        fprintf(stderr, "usage: %s [N] [MIN_DEVICES]\n", argv[0]);
        return 2;
    }
    n_arg = (cl_uint)n;
    global = (n + 63) / 64 * 64;

    a = malloc(n * sizeof(float));
    b = malloc(n * sizeof(float));
    if (!a || !b)
        return 1;
    for (size_t i = 0; i < n; i++) {
        a[i] = (float)(i % 4093);
        b[i] = (float)(i % 911) * 0.25f;
    }

    CHECK(clGetPlatformIDs(16, platforms, &nplatforms));
    if (nplatforms > 16)
        nplatforms = 16;
    for (cl_uint p = 0; p < nplatforms; p++) {
        cl_device_id devices[MAX_DEVICES];
        cl_uint count = 0;

        err = clGetDeviceIDs(platforms[p], CL_DEVICE_TYPE_ALL, MAX_DEVICES, devices, &count);
        if (err == CL_DEVICE_NOT_FOUND)
            continue;
        CHECK_ERR(err, "clGetDeviceIDs");
        if (count > MAX_DEVICES)
            count = MAX_DEVICES;
        for (cl_uint d = 0; d < count && ndev < MAX_DEVICES; d++, ndev++) {
            runs[ndev].device = devices[d];
            runs[ndev].platform_name = cl_platform_str(platforms[p], CL_PLATFORM_NAME);
        }
    }
    if (ndev < min_devices) {
        printf("multi_device: found %u device(s), wanted at least %lu: FAIL\n", ndev, min_devices);
        return 1;
    }

    /* Enqueue everything everywhere first... */
    for (cl_uint d = 0; d < ndev; d++) {
        device_run_t *r = &runs[d];

        r->name = cl_device_str(r->device, CL_DEVICE_NAME);
        r->result = malloc(n * sizeof(float));
        if (!r->result)
            return 1;
        r->context = clCreateContext(NULL, 1, &r->device, NULL, NULL, &err);
        CHECK_ERR(err, "clCreateContext");
        r->queue = clCreateCommandQueue(r->context, r->device, 0, &err);
        CHECK_ERR(err, "clCreateCommandQueue");
        r->program = cl_build_source(r->context, r->device, source, "");
        r->kernel = clCreateKernel(r->program, "vector_add", &err);
        CHECK_ERR(err, "clCreateKernel");
        r->a = clCreateBuffer(r->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                              n * sizeof(float), a, &err);
        CHECK_ERR(err, "clCreateBuffer(a)");
        r->b = clCreateBuffer(r->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR,
                              n * sizeof(float), b, &err);
        CHECK_ERR(err, "clCreateBuffer(b)");
        r->c = clCreateBuffer(r->context, CL_MEM_WRITE_ONLY, n * sizeof(float), NULL, &err);
        CHECK_ERR(err, "clCreateBuffer(c)");
        CHECK(clSetKernelArg(r->kernel, 0, sizeof(cl_mem), &r->a));
        CHECK(clSetKernelArg(r->kernel, 1, sizeof(cl_mem), &r->b));
        CHECK(clSetKernelArg(r->kernel, 2, sizeof(cl_mem), &r->c));
        CHECK(clSetKernelArg(r->kernel, 3, sizeof(cl_uint), &n_arg));
        CHECK(clEnqueueNDRangeKernel(r->queue, r->kernel, 1, NULL, &global, NULL, 0, NULL, NULL));
        CHECK(clEnqueueReadBuffer(r->queue, r->c, CL_FALSE, 0, n * sizeof(float), r->result, 0,
                                  NULL, NULL));
        CHECK(clFlush(r->queue));
    }

    /* ...then collect and check. */
    for (cl_uint d = 0; d < ndev; d++) {
        device_run_t *r = &runs[d];

        CHECK(clFinish(r->queue));
        for (size_t i = 0; i < n; i++) {
            if (r->result[i] != a[i] + b[i]) {
                printf("multi_device: device %u \"%s\": c[%zu] = %g, expected %g: FAIL\n", d,
                       r->name, i, (double)r->result[i], (double)(a[i] + b[i]));
                return 1;
            }
        }
        printf("device %u: \"%s\" (platform \"%s\"): %zu elements checked\n", d, r->name,
               r->platform_name, n);
        CHECK(clReleaseMemObject(r->a));
        CHECK(clReleaseMemObject(r->b));
        CHECK(clReleaseMemObject(r->c));
        CHECK(clReleaseKernel(r->kernel));
        CHECK(clReleaseProgram(r->program));
        CHECK(clReleaseCommandQueue(r->queue));
        CHECK(clReleaseContext(r->context));
        free(r->result);
        free(r->name);
        free(r->platform_name);
    }
    printf("multi_device: %u devices checked, PASS\n", ndev);
    free(a);
    free(b);
    return 0;
}
