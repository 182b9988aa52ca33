/*
 * binary_args: kernels of a program created from a binary, with 64-bit
 * scalar arguments beside buffers, and clSetKernelArg's validation.
 *
 * A forwarding ICD must know which arguments are memory objects. It must
 * learn it from the kernel's signature, which the platform knows for a
 * program built from a binary too, and never by reading an application's
 * 8-byte scalar as a pointer: 0xdeadbeefcafef00d is not an address.
 *
 *   binary_args        prints "cmp: ..." lines (what any conformant platform
 *                      answers: the script compares rgpu's with local
 *                      PoCL's), exits 0 and prints "... PASS", or 1 with the
 *                      reason
 *
 * On the rgpu platform it also checks that CL_DEVICE_EXECUTION_CAPABILITIES
 * is CL_EXEC_KERNEL alone and that clEnqueueNativeKernel fails: a host
 * function pointer cannot run on another machine.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cl_util.h"

#define N 256

#define EXPECT(cond, ...)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "binary_args: " __VA_ARGS__);                     \
            fprintf(stderr, "\n");                                            \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

static const char *source =
    "typedef struct { uint a; uint b; } pair_t;\n"
    "__kernel void k_ulong(__global ulong *out, ulong v, __global const ulong *in, long s)\n"
    "{ size_t i = get_global_id(0); out[i] = (in[i] ^ v) + (ulong)s; }\n"
    "__kernel void k_pair(__global uint *out, pair_t p, __constant uint *in)\n"
    "{ size_t i = get_global_id(0); out[i] = in[i] * p.a + p.b; }\n"
    "__kernel void k_local(__global uint *out, __local uint *scratch, uint add)\n"
    "{ size_t l = get_local_id(0); scratch[l] = (uint)get_global_id(0) + add;\n"
    "  barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  out[get_global_id(0)] = scratch[get_local_size(0) - 1 - l]; }\n"
    "__kernel void k_maybe(__global uint *out, __global const uint *in, ulong v)\n"
    "{ size_t i = get_global_id(0); out[i] = (in ? in[i] : 7u) + (uint)(v >> 32); }\n"
    "#ifdef cl_khr_fp64\n"
    "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n"
    "__kernel void k_double(__global double *out, double d, __global const double *in)\n"
    "{ size_t i = get_global_id(0); out[i] = in[i] * d; }\n"
    "#endif\n";

typedef struct {
    cl_uint a, b;
} pair_t;

static cl_context context;
static cl_command_queue queue;
static int on_rgpu;     /* the device is behind the rgpu platform */

static cl_mem buffer(size_t size, void *init)
{
    cl_int err;
    cl_mem mem = clCreateBuffer(context, CL_MEM_READ_WRITE | (init ? CL_MEM_COPY_HOST_PTR : 0), size, init, &err);

    CHECK_ERR(err, "clCreateBuffer");
    return mem;
}

static void run(cl_kernel kernel, size_t local)
{
    size_t global = N;

    CHECK(clEnqueueNDRangeKernel(queue, kernel, 1, NULL, &global, local ? &local : NULL, 0, NULL, NULL));
}

/* Builds from source, takes the binary, and builds a new program from it. */
static cl_program program_from_binary(cl_device_id device)
{
    cl_program src = cl_build_source(context, device, source, NULL), bin;
    size_t size = 0;
    unsigned char *binary;
    const unsigned char *binaries[1];
    cl_int err, status = 1;

    CHECK(clGetProgramInfo(src, CL_PROGRAM_BINARY_SIZES, sizeof(size), &size, NULL));
    EXPECT(size > 0, "the program's binary is empty");
    binary = malloc(size);
    EXPECT(binary, "out of memory");
    binaries[0] = binary;
    CHECK(clGetProgramInfo(src, CL_PROGRAM_BINARIES, sizeof(binaries), binaries, NULL));
    CHECK(clReleaseProgram(src));
    bin = clCreateProgramWithBinary(context, 1, &device, &size, binaries, &status, &err);
    CHECK_ERR(err, "clCreateProgramWithBinary");
    CHECK(status);
    CHECK(clBuildProgram(bin, 1, &device, NULL, NULL, NULL));
    free(binary);
    printf("binary program: %zu bytes\n", size);
    return bin;
}

static void check_ulong(cl_program program)
{
    cl_int err;
    cl_kernel k = clCreateKernel(program, "k_ulong", &err);
    cl_ulong in[N], out[N], v = 0xdeadbeefcafef00dull;
    cl_long s = -0x123456789abcll;
    cl_mem bin, bout;

    CHECK_ERR(err, "clCreateKernel k_ulong");
    for (int i = 0; i < N; i++)
        in[i] = (cl_ulong)i * 0x100000001ull;
    bin = buffer(sizeof(in), in);
    bout = buffer(sizeof(out), NULL);
    CHECK(clSetKernelArg(k, 0, sizeof(cl_mem), &bout));
    CHECK(clSetKernelArg(k, 1, sizeof(v), &v));
    CHECK(clSetKernelArg(k, 2, sizeof(cl_mem), &bin));
    CHECK(clSetKernelArg(k, 3, sizeof(s), &s));
    run(k, 0);
    CHECK(clEnqueueReadBuffer(queue, bout, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
    for (int i = 0; i < N; i++)
        EXPECT(out[i] == (in[i] ^ v) + (cl_ulong)s, "k_ulong: out[%d] = %#llx, expected %#llx", i,
               (unsigned long long)out[i], (unsigned long long)((in[i] ^ v) + (cl_ulong)s));

    /* A scalar that happens to equal a live buffer's handle is still a scalar. */
    memcpy(&v, &bin, sizeof(v));
    CHECK(clSetKernelArg(k, 1, sizeof(v), &v));
    run(k, 0);
    CHECK(clEnqueueReadBuffer(queue, bout, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
    for (int i = 0; i < N; i++)
        EXPECT(out[i] == (in[i] ^ v) + (cl_ulong)s, "k_ulong with a handle-valued scalar: out[%d] wrong", i);
    printf("cmp: k_ulong (ulong and long beside buffers): ok\n");
    clReleaseMemObject(bin);
    clReleaseMemObject(bout);
    clReleaseKernel(k);
}

static void check_pair(cl_program program)
{
    cl_int err;
    cl_kernel k = clCreateKernel(program, "k_pair", &err);
    cl_uint in[N], out[N];
    pair_t p = {0xbeefcafe, 0xdeadf00d};
    cl_mem bin, bout;

    CHECK_ERR(err, "clCreateKernel k_pair");
    for (int i = 0; i < N; i++)
        in[i] = (cl_uint)i * 3 + 1;
    bin = buffer(sizeof(in), in);
    bout = buffer(sizeof(out), NULL);
    CHECK(clSetKernelArg(k, 0, sizeof(cl_mem), &bout));
    CHECK(clSetKernelArg(k, 1, sizeof(p), &p));
    CHECK(clSetKernelArg(k, 2, sizeof(cl_mem), &bin));
    run(k, 0);
    CHECK(clEnqueueReadBuffer(queue, bout, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
    for (int i = 0; i < N; i++)
        EXPECT(out[i] == in[i] * p.a + p.b, "k_pair: out[%d] = %#x, expected %#x", i, out[i], in[i] * p.a + p.b);
    printf("cmp: k_pair (an 8-byte struct beside buffers): ok\n");
    clReleaseMemObject(bin);
    clReleaseMemObject(bout);
    clReleaseKernel(k);
}

static void check_double(cl_program program, cl_device_id device)
{
    char *ext = cl_device_str(device, CL_DEVICE_EXTENSIONS);
    cl_int err;
    cl_kernel k;
    cl_double in[N], out[N], d = -1.5e300;
    cl_mem bin, bout;

    if (!strstr(ext, "cl_khr_fp64")) {
        printf("cmp: k_double: no cl_khr_fp64, skipped\n");
        free(ext);
        return;
    }
    free(ext);
    k = clCreateKernel(program, "k_double", &err);
    CHECK_ERR(err, "clCreateKernel k_double");
    for (int i = 0; i < N; i++)
        in[i] = i * 0.25;
    bin = buffer(sizeof(in), in);
    bout = buffer(sizeof(out), NULL);
    CHECK(clSetKernelArg(k, 0, sizeof(cl_mem), &bout));
    CHECK(clSetKernelArg(k, 1, sizeof(d), &d));
    CHECK(clSetKernelArg(k, 2, sizeof(cl_mem), &bin));
    run(k, 0);
    CHECK(clEnqueueReadBuffer(queue, bout, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
    for (int i = 0; i < N; i++)
        EXPECT(out[i] == in[i] * d, "k_double: out[%d] = %g, expected %g", i, out[i], in[i] * d);
    printf("cmp: k_double (a double beside buffers): ok\n");
    clReleaseMemObject(bin);
    clReleaseMemObject(bout);
    clReleaseKernel(k);
}

static void check_local(cl_program program)
{
    cl_int err;
    cl_kernel k = clCreateKernel(program, "k_local", &err);
    cl_uint out[N], add = 1000;
    const size_t local = 16;
    cl_mem bout;

    CHECK_ERR(err, "clCreateKernel k_local");
    bout = buffer(sizeof(out), NULL);
    CHECK(clSetKernelArg(k, 0, sizeof(cl_mem), &bout));
    CHECK(clSetKernelArg(k, 1, local * sizeof(cl_uint), NULL));
    CHECK(clSetKernelArg(k, 2, sizeof(add), &add));
    run(k, local);
    CHECK(clEnqueueReadBuffer(queue, bout, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
    for (size_t i = 0; i < N; i++) {
        size_t want = (i / local) * local + (local - 1 - i % local) + add;
        EXPECT(out[i] == want, "k_local: out[%zu] = %u, expected %zu", i, out[i], want);
    }
    printf("cmp: k_local (local memory beside a buffer): ok\n");
    clReleaseMemObject(bout);
    clReleaseKernel(k);
}

/* A NULL __global buffer is allowed: the kernel sees a null pointer. */
static void check_null_buffer(cl_program program)
{
    cl_int err;
    cl_kernel k = clCreateKernel(program, "k_maybe", &err);
    cl_uint out[N];
    cl_ulong v = 5ull << 32;
    cl_mem bout, none = NULL;

    CHECK_ERR(err, "clCreateKernel k_maybe");
    bout = buffer(sizeof(out), NULL);
    CHECK(clSetKernelArg(k, 0, sizeof(cl_mem), &bout));
    CHECK(clSetKernelArg(k, 1, sizeof(cl_mem), &none));
    CHECK(clSetKernelArg(k, 2, sizeof(v), &v));
    run(k, 0);
    CHECK(clEnqueueReadBuffer(queue, bout, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
    for (int i = 0; i < N; i++)
        EXPECT(out[i] == 12, "k_maybe with a NULL buffer: out[%d] = %u, expected 12", i, out[i]);
    /* A NULL arg_value for a __global argument is a NULL buffer too. */
    CHECK(clSetKernelArg(k, 1, sizeof(cl_mem), NULL));
    run(k, 0);
    CHECK(clEnqueueReadBuffer(queue, bout, CL_TRUE, 0, sizeof(out), out, 0, NULL, NULL));
    for (int i = 0; i < N; i++)
        EXPECT(out[i] == 12, "k_maybe with a NULL arg_value: out[%d] = %u, expected 12", i, out[i]);
    printf("cmp: k_maybe (NULL __global buffer): ok\n");
    clReleaseMemObject(bout);
    clReleaseKernel(k);
}

static void expect_code(const char *what, cl_int got, cl_int want)
{
    printf("cmp: %s: %s\n", what, cl_err_name(got));
    EXPECT(got == want, "%s returned %s (%d), expected %s (%d)", what, cl_err_name(got), got, cl_err_name(want),
           want);
}

static void check_validation(cl_program program)
{
    cl_int err;
    cl_kernel kl = clCreateKernel(program, "k_local", &err), ku;
    cl_ulong v = 1, fake_obj[32] = {0};
    cl_uint small = 1;
    cl_mem fake = (cl_mem)fake_obj, buf = buffer(64, NULL);

    CHECK_ERR(err, "clCreateKernel k_local");
    ku = clCreateKernel(program, "k_ulong", &err);
    CHECK_ERR(err, "clCreateKernel k_ulong");
    expect_code("local argument of size 0", clSetKernelArg(kl, 1, 0, NULL), CL_INVALID_ARG_SIZE);
    expect_code("local argument with a value", clSetKernelArg(kl, 1, sizeof(cl_uint), &small),
                CL_INVALID_ARG_VALUE);
    /* The specification's answer. PoCL 3.1 takes any pointer here (and
     * fails at the launch), so this one is not compared. */
    err = clSetKernelArg(ku, 0, sizeof(cl_mem), &fake);
    printf("buffer argument with an invalid object: %s\n", cl_err_name(err));
    EXPECT(!on_rgpu || err == CL_INVALID_MEM_OBJECT,
           "buffer argument with an invalid object returned %s (%d), expected CL_INVALID_MEM_OBJECT",
           cl_err_name(err), err);
    expect_code("buffer argument of size 4", clSetKernelArg(ku, 0, 4, &buf), CL_INVALID_ARG_SIZE);
    expect_code("ulong argument of size 4", clSetKernelArg(ku, 1, 4, &small), CL_INVALID_ARG_SIZE);
    expect_code("ulong argument of size 16", clSetKernelArg(ku, 1, 16, fake_obj), CL_INVALID_ARG_SIZE);
    expect_code("ulong argument with no value", clSetKernelArg(ku, 1, sizeof(v), NULL), CL_INVALID_ARG_VALUE);
    expect_code("uint argument of size 8", clSetKernelArg(kl, 2, sizeof(v), &v), CL_INVALID_ARG_SIZE);
    expect_code("argument index past the last", clSetKernelArg(ku, 4, sizeof(v), &v), CL_INVALID_ARG_INDEX);
    expect_code("buffer argument of size 8", clSetKernelArg(ku, 0, sizeof(cl_mem), &buf), CL_SUCCESS);
    /* The kernel still works after the refused calls. */
    CHECK(clFinish(queue));
    clReleaseMemObject(buf);
    clReleaseKernel(kl);
    clReleaseKernel(ku);
}

static void check_arg_info(cl_program program)
{
    static const struct {
        cl_uint index;
        cl_kernel_arg_address_qualifier q;
    } want[] = {
        {0, CL_KERNEL_ARG_ADDRESS_GLOBAL},
        {1, CL_KERNEL_ARG_ADDRESS_PRIVATE},
        {2, CL_KERNEL_ARG_ADDRESS_GLOBAL},
        {3, CL_KERNEL_ARG_ADDRESS_PRIVATE},
    };
    cl_int err;
    cl_kernel k = clCreateKernel(program, "k_ulong", &err);

    CHECK_ERR(err, "clCreateKernel k_ulong");
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        cl_kernel_arg_address_qualifier q = 0;
        err = clGetKernelArgInfo(k, want[i].index, CL_KERNEL_ARG_ADDRESS_QUALIFIER, sizeof(q), &q, NULL);
        printf("cmp: k_ulong argument %u address qualifier: %s %#x\n", want[i].index, cl_err_name(err),
               err == CL_SUCCESS ? q : 0);
        EXPECT(err != CL_SUCCESS || q == want[i].q, "k_ulong argument %u: address qualifier %#x, expected %#x",
               want[i].index, q, want[i].q);
    }
    clReleaseKernel(k);
}

/* The options a program reports are the application's, whatever a
 * forwarding ICD adds on the way. */
static void check_build_options(cl_device_id device)
{
    static const char *const options[] = {NULL, "", "-DSCALE=3", "-cl-kernel-arg-info"};

    for (size_t i = 0; i < sizeof(options) / sizeof(options[0]); i++) {
        cl_program p = cl_build_source(context, device, "__kernel void k(__global int *o) { o[0] = 1; }",
                                       options[i]);
        size_t size = 0;
        char got[256] = "";
        CHECK(clGetProgramBuildInfo(p, device, CL_PROGRAM_BUILD_OPTIONS, sizeof(got) - 1, got, &size));
        printf("cmp: build options %s%s%s: \"%s\"\n", options[i] ? "\"" : "", options[i] ? options[i] : "NULL",
               options[i] ? "\"" : "", got);
        CHECK(clReleaseProgram(p));
    }
}

static void check_native(cl_device_id device)
{
    cl_device_exec_capabilities caps = 0;

    CHECK(clGetDeviceInfo(device, CL_DEVICE_EXECUTION_CAPABILITIES, sizeof(caps), &caps, NULL));
    printf("execution capabilities: %#llx\n", (unsigned long long)caps);
    EXPECT(caps & CL_EXEC_KERNEL, "CL_DEVICE_EXECUTION_CAPABILITIES lacks CL_EXEC_KERNEL");
    if (on_rgpu) {
        cl_int err;
        EXPECT(caps == CL_EXEC_KERNEL, "the rgpu device says it runs native kernels (%#llx)",
               (unsigned long long)caps);
        err = clEnqueueNativeKernel(queue, (void (*)(void *))abort, NULL, 0, 0, NULL, NULL, 0, NULL, NULL);
        EXPECT(err == CL_INVALID_OPERATION, "clEnqueueNativeKernel returned %s (%d), expected CL_INVALID_OPERATION",
               cl_err_name(err), err);
        printf("rgpu: CL_EXEC_KERNEL only, clEnqueueNativeKernel refused\n");
    }
}

int main(void)
{
    cl_platform_id platform;
    cl_device_id device;
    cl_program program;
    char *name;
    cl_int err;

    cl_pick_device(&platform, &device);
    name = cl_platform_str(platform, CL_PLATFORM_NAME);
    on_rgpu = strcmp(name, "rgpu") == 0;
    free(name);
    context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    CHECK_ERR(err, "clCreateContext");
    queue = clCreateCommandQueue(context, device, 0, &err);
    CHECK_ERR(err, "clCreateCommandQueue");
    check_native(device);
    check_build_options(device);
    program = program_from_binary(device);
    check_arg_info(program);
    check_ulong(program);
    check_pair(program);
    check_double(program, device);
    check_local(program);
    check_null_buffer(program);
    check_validation(program);
    CHECK(clFinish(queue));
    clReleaseProgram(program);
    clReleaseCommandQueue(queue);
    clReleaseContext(context);
    printf("binary_args: 64-bit scalars and buffers in a program from a binary, argument checks: PASS\n");
    return 0;
}
