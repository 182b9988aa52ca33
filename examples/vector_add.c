/*
 * vector_add: c = a + b on N floats (N from argv, default 1M) on the first
 * OpenCL device, every element checked against the host.
 *
 *   vector_add [N]
 *
 * Prints the platform and device it ran on, then
 *   vector_add: N elements on "DEVICE" (platform "PLATFORM"): results checked, PASS
 * and exits 0; prints the first mismatch and exits 1; prints the failing call
 * and its error name and exits 1 when an OpenCL call fails.
 */
#include "cl_util.h"

static const char *vector_add_source =
    "__kernel void vector_add(__global const float *a, __global const float *b,\n"
    "                         __global float *c, uint n)\n"
    "{\n"
    "    size_t i = get_global_id(0);\n"
    "    if (i < n)\n"
    "        c[i] = a[i] + b[i];\n"
    "}\n";

int main(int argc, char **argv)
{
    size_t n = 1u << 20, global;
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_program program;
    cl_kernel kernel;
    cl_mem buf_a, buf_b, buf_c;
    float *a, *b, *c;
    char *platform_name, *device_name;
    cl_uint n_arg;
    cl_int err;

    if (argc > 1) {
        char *end;
        unsigned long long v = strtoull(argv[1], &end, 10);
        if (*end || v == 0 || v > 0xffffffffull) {
            fprintf(stderr, "usage: %s [N]   (1 <= N < 2^32)\n", argv[0]);
            return 2;
        }
        n = (size_t)v;
    }
    n_arg = (cl_uint)n;

    cl_pick_device(&platform, &device);
    platform_name = cl_platform_str(platform, CL_PLATFORM_NAME);
    device_name = cl_device_str(device, CL_DEVICE_NAME);
    printf("platform: %s\n", platform_name);
    printf("device: %s\n", device_name);

    a = malloc(n * sizeof(float));
    b = malloc(n * sizeof(float));
    c = malloc(n * sizeof(float));
    if (!a || !b || !c) {
        fprintf(stderr, "vector_add: out of host memory for %zu elements\n", n);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        a[i] = (float)(i % 1000) * 0.5f;
        b[i] = (float)(i % 777) * 2.0f + 1.0f;
        c[i] = -1.0f;
    }

    context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    CHECK_ERR(err, "clCreateContext");
    queue = clCreateCommandQueue(context, device, 0, &err);
    CHECK_ERR(err, "clCreateCommandQueue");
    program = cl_build_source(context, device, vector_add_source, "");
    kernel = clCreateKernel(program, "vector_add", &err);
    CHECK_ERR(err, "clCreateKernel");

    buf_a = clCreateBuffer(context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, n * sizeof(float), a,
                           &err);
    CHECK_ERR(err, "clCreateBuffer(a)");
    buf_b = clCreateBuffer(context, CL_MEM_READ_ONLY, n * sizeof(float), NULL, &err);
    CHECK_ERR(err, "clCreateBuffer(b)");
    buf_c = clCreateBuffer(context, CL_MEM_WRITE_ONLY, n * sizeof(float), NULL, &err);
    CHECK_ERR(err, "clCreateBuffer(c)");
    CHECK(clEnqueueWriteBuffer(queue, buf_b, CL_FALSE, 0, n * sizeof(float), b, 0, NULL, NULL));

    CHECK(clSetKernelArg(kernel, 0, sizeof(cl_mem), &buf_a));
    CHECK(clSetKernelArg(kernel, 1, sizeof(cl_mem), &buf_b));
    CHECK(clSetKernelArg(kernel, 2, sizeof(cl_mem), &buf_c));
    CHECK(clSetKernelArg(kernel, 3, sizeof(cl_uint), &n_arg));
    global = (n + 63) / 64 * 64;
    CHECK(clEnqueueNDRangeKernel(queue, kernel, 1, NULL, &global, NULL, 0, NULL, NULL));
    CHECK(clEnqueueReadBuffer(queue, buf_c, CL_TRUE, 0, n * sizeof(float), c, 0, NULL, NULL));
    CHECK(clFinish(queue));

    for (size_t i = 0; i < n; i++) {
        float want = a[i] + b[i];
        if (c[i] != want) {
            printf("vector_add: mismatch at element %zu: got %g, expected %g (%g + %g): FAIL\n", i,
                   (double)c[i], (double)want, (double)a[i], (double)b[i]);
            return 1;
        }
    }
    printf("vector_add: %zu elements on \"%s\" (platform \"%s\"): results checked, PASS\n", n,
           device_name, platform_name);

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
