/*
 * loop_until_error: runs write -> kernel -> read -> finish rounds for up to
 * SECONDS (default 60), checking each result, and reports the first error.
 *
 *   loop_until_error [SECONDS]
 *
 * Prints "READY" once the first round has completed (the end-to-end tests
 * wait for it before they disturb the server). Exits
 *   0  the time ran out with every round correct ("... no error: PASS")
 *   1  a round computed a wrong result
 *   2  an OpenCL call failed: the call, its error name, and when, on stderr
 * A client of a killed server must take the exit-2 path quickly, not hang.
 */
#include "cl_util.h"

static const char *source =
    "__kernel void bump(__global const int *in, __global int *out, int add)\n"
    "{\n"
    "    size_t i = get_global_id(0);\n"
    "    out[i] = in[i] + add;\n"
    "}\n";

static long rounds;
static double t_start;

/* Reports the first failed call and jumps to the cleanup: a client whose
 * server died still releases what it created (the library must free its
 * side of the objects, which a leak checker verifies). */
#define LOOP_CHECK(call)                                                      \
    do {                                                                      \
        cl_int loop_err_ = (call);                                            \
        if (loop_err_ != CL_SUCCESS) {                                        \
            fprintf(stderr, "loop_until_error: %s failed after %ld rounds (%.1f s): %s (%d)\n", \
                    #call, rounds, cl_now_s() - t_start, cl_err_name(loop_err_), loop_err_); \
            rc = 2;                                                           \
            goto out;                                                         \
        }                                                                     \
    } while (0)

int main(int argc, char **argv)
{
    enum { N = 64 * 1024 };
    static cl_int in[N], out[N];
    double seconds = argc > 1 ? atof(argv[1]) : 60.0;
    size_t global = N;
    cl_platform_id platform;
    cl_device_id device;
    cl_context context = NULL;
    cl_command_queue queue = NULL;
    cl_program program = NULL;
    cl_kernel kernel = NULL;
    cl_mem bin = NULL, bout = NULL;
    cl_int err;
    int rc = 0;

    setvbuf(stdout, NULL, _IOLBF, 0);
    t_start = cl_now_s();
    cl_pick_device(&platform, &device);
    context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    LOOP_CHECK(err);
    queue = clCreateCommandQueue(context, device, 0, &err);
    LOOP_CHECK(err);
    program = clCreateProgramWithSource(context, 1, &source, NULL, &err);
    LOOP_CHECK(err);
    LOOP_CHECK(clBuildProgram(program, 1, &device, "", NULL, NULL));
    kernel = clCreateKernel(program, "bump", &err);
    LOOP_CHECK(err);
    bin = clCreateBuffer(context, CL_MEM_READ_ONLY, sizeof(in), NULL, &err);
    LOOP_CHECK(err);
    bout = clCreateBuffer(context, CL_MEM_WRITE_ONLY, sizeof(out), NULL, &err);
    LOOP_CHECK(err);
    LOOP_CHECK(clSetKernelArg(kernel, 0, sizeof(cl_mem), &bin));
    LOOP_CHECK(clSetKernelArg(kernel, 1, sizeof(cl_mem), &bout));

    while (rounds == 0 || cl_now_s() - t_start < seconds) {
        cl_int add = (cl_int)(rounds % 1000) + 1;

        for (int i = 0; i < N; i++)
            in[i] = i * 3 + (cl_int)rounds;
        LOOP_CHECK(clEnqueueWriteBuffer(queue, bin, CL_FALSE, 0, sizeof(in), in, 0, NULL, NULL));
        LOOP_CHECK(clSetKernelArg(kernel, 2, sizeof(cl_int), &add));
        LOOP_CHECK(clEnqueueNDRangeKernel(queue, kernel, 1, NULL, &global, NULL, 0, NULL, NULL));
        LOOP_CHECK(clEnqueueReadBuffer(queue, bout, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
        LOOP_CHECK(clFinish(queue));
        for (int i = 0; i < N; i++) {
            if (out[i] != in[i] + add) {
                printf("loop_until_error: round %ld: out[%d] = %d, expected %d: FAIL\n", rounds, i,
                       out[i], in[i] + add);
                rc = 1;
                goto out;
            }
        }
        if (rounds++ == 0)
            printf("READY\n");
    }
    printf("loop_until_error: %ld rounds in %.1f s, no error: PASS\n", rounds,
           cl_now_s() - t_start);

out:
    /* Release errors do not change the verdict: after a lost server they
     * may well fail. */
    if (bout)
        clReleaseMemObject(bout);
    if (bin)
        clReleaseMemObject(bin);
    if (kernel)
        clReleaseKernel(kernel);
    if (program)
        clReleaseProgram(program);
    if (queue)
        clReleaseCommandQueue(queue);
    if (context)
        clReleaseContext(context);
    return rc;
}
