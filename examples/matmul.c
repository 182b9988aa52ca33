/*
 * matmul: C = A x B for N x N floats (N from argv, default 512) with a tiled
 * kernel that stages tiles in __local memory (passed as local-memory kernel
 * arguments: clSetKernelArg(k, i, bytes, NULL)), on a profiling queue.
 *
 *   matmul [N]
 *
 * Reports the kernel time from the event's profiling info and checks every
 * element against a host product (in double) within a tolerance. Prints
 *   matmul: NxN on "DEVICE" (platform "PLATFORM"): kernel T ms (G GFLOP/s), results checked, PASS
 * and exits 0, or prints the first element out of tolerance and exits 1.
 */
#include <math.h>

#include "cl_util.h"

#define TILE 16

static const char *matmul_source =
    "__kernel void matmul(__global const float *A, __global const float *B,\n"
    "                     __global float *C, uint n,\n"
    "                     __local float *As, __local float *Bs)\n"
    "{\n"
    "    uint tx = get_local_id(0), ty = get_local_id(1);\n"
    "    uint col = get_global_id(0), row = get_global_id(1);\n"
    "    float acc = 0.0f;\n"
    "    for (uint t = 0; t < (n + TILE - 1) / TILE; t++) {\n"
    "        uint ac = t * TILE + tx, br = t * TILE + ty;\n"
    "        As[ty * TILE + tx] = (row < n && ac < n) ? A[row * n + ac] : 0.0f;\n"
    "        Bs[ty * TILE + tx] = (br < n && col < n) ? B[br * n + col] : 0.0f;\n"
    "        barrier(CLK_LOCAL_MEM_FENCE);\n"
    "        for (uint k = 0; k < TILE; k++)\n"
    "            acc += As[ty * TILE + k] * Bs[k * TILE + tx];\n"
    "        barrier(CLK_LOCAL_MEM_FENCE);\n"
    "    }\n"
    "    if (row < n && col < n)\n"
    "        C[row * n + col] = acc;\n"
    "}\n";

int main(int argc, char **argv)
{
    size_t n = 512, bytes, global[2], local[2] = {TILE, TILE};
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_program program;
    cl_kernel kernel;
    cl_mem buf_a, buf_b, buf_c;
    cl_event done;
    cl_ulong t_start, t_end;
    float *a, *b, *c;
    char *platform_name, *device_name, options[64];
    double ms;
    cl_uint n_arg;
    cl_int err;

    if (argc > 1) {
        char *end;
        unsigned long v = strtoul(argv[1], &end, 10);
        if (*end || v == 0 || v > 8192) {
            fprintf(stderr, "usage: %s [N]   (1 <= N <= 8192)\n", argv[0]);
            return 2;
        }
        n = v;
    }
    n_arg = (cl_uint)n;
    bytes = n * n * sizeof(float);

    cl_pick_device(&platform, &device);
    platform_name = cl_platform_str(platform, CL_PLATFORM_NAME);
    device_name = cl_device_str(device, CL_DEVICE_NAME);
    printf("platform: %s\n", platform_name);
    printf("device: %s\n", device_name);

    a = malloc(bytes);
    b = malloc(bytes);
    c = malloc(bytes);
    if (!a || !b || !c) {
        fprintf(stderr, "matmul: out of host memory for N=%zu\n", n);
        return 1;
    }
    srand(12345);
    for (size_t i = 0; i < n * n; i++) {
        a[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
        b[i] = (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
    }

    context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    CHECK_ERR(err, "clCreateContext");
    queue = clCreateCommandQueue(context, device, CL_QUEUE_PROFILING_ENABLE, &err);
    CHECK_ERR(err, "clCreateCommandQueue(CL_QUEUE_PROFILING_ENABLE)");
    snprintf(options, sizeof(options), "-DTILE=%d", TILE);
    program = cl_build_source(context, device, matmul_source, options);
    kernel = clCreateKernel(program, "matmul", &err);
    CHECK_ERR(err, "clCreateKernel");

    buf_a = clCreateBuffer(context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, a, &err);
    CHECK_ERR(err, "clCreateBuffer(A)");
    buf_b = clCreateBuffer(context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, b, &err);
    CHECK_ERR(err, "clCreateBuffer(B)");
    buf_c = clCreateBuffer(context, CL_MEM_WRITE_ONLY, bytes, NULL, &err);
    CHECK_ERR(err, "clCreateBuffer(C)");

    CHECK(clSetKernelArg(kernel, 0, sizeof(cl_mem), &buf_a));
    CHECK(clSetKernelArg(kernel, 1, sizeof(cl_mem), &buf_b));
    CHECK(clSetKernelArg(kernel, 2, sizeof(cl_mem), &buf_c));
    CHECK(clSetKernelArg(kernel, 3, sizeof(cl_uint), &n_arg));
    CHECK(clSetKernelArg(kernel, 4, TILE * TILE * sizeof(float), NULL));
    CHECK(clSetKernelArg(kernel, 5, TILE * TILE * sizeof(float), NULL));
    global[0] = global[1] = (n + TILE - 1) / TILE * TILE;
    CHECK(clEnqueueNDRangeKernel(queue, kernel, 2, NULL, global, local, 0, NULL, &done));
    CHECK(clEnqueueReadBuffer(queue, buf_c, CL_TRUE, 0, bytes, c, 0, NULL, NULL));
    CHECK(clFinish(queue));
    CHECK(clGetEventProfilingInfo(done, CL_PROFILING_COMMAND_START, sizeof(t_start), &t_start,
                                  NULL));
    CHECK(clGetEventProfilingInfo(done, CL_PROFILING_COMMAND_END, sizeof(t_end), &t_end, NULL));
    if (t_end < t_start) {
        printf("matmul: profiling says the kernel ended (%llu) before it started (%llu): FAIL\n",
               (unsigned long long)t_end, (unsigned long long)t_start);
        return 1;
    }
    ms = (double)(t_end - t_start) * 1e-6;

    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < n; j++) {
            double want = 0.0, got = c[i * n + j];
            for (size_t k = 0; k < n; k++)
                want += (double)a[i * n + k] * (double)b[k * n + j];
            if (fabs(got - want) > 1e-3 * (1.0 + fabs(want))) {
                printf("matmul: C[%zu][%zu] = %.6f, host says %.6f: FAIL\n", i, j, got, want);
                return 1;
            }
        }
    }
    printf("matmul: %zux%zu on \"%s\" (platform \"%s\"): kernel %.3f ms (%.2f GFLOP/s), "
           "results checked, PASS\n",
           n, n, device_name, platform_name, ms,
           ms > 0 ? 2.0 * (double)n * (double)n * (double)n / (ms * 1e6) : 0.0);

    CHECK(clReleaseEvent(done));
    CHECK(clReleaseMemObject(buf_a));
    CHECK(clReleaseMemObject(buf_b));
    CHECK(clReleaseMemObject(buf_c));
    CHECK(clReleaseKernel(kernel));
    CHECK(clReleaseProgram(program));
    CHECK(clReleaseCommandQueue(queue));
    CHECK(clReleaseContext(context));
    free(a);
    free(b);
    free(c);
    free(platform_name);
    free(device_name);
    return 0;
}
