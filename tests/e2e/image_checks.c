/*
 * image_checks: what rgpu checks about images and samplers beyond local
 * PoCL (which lets a buffer, or an image of another type, stand for an image
 * argument, and reads it as the image the kernel declares), then holds a
 * known number of image bytes on the server:
 *
 *   - a buffer for an image2d_t argument, an image for a __global pointer,
 *     an image in a buffer command: CL_INVALID_MEM_OBJECT at once;
 *   - a 1D image array for an image2d_t argument: refused by the server,
 *     reported at the next clFinish;
 *   - a sampler for a sampler_t argument is taken, an int is not.
 *
 * Then it prints "READY <bytes>", the bytes its buffer and images take on
 * the server (a 1D buffer image adds none: it views its buffer), and sleeps
 * until it is killed. Exit status 1 with a FAIL line on any difference.
 */
#include <unistd.h>

#include "cl_util.h"

static const char *source =
    "__kernel void k(__read_only image2d_t img, sampler_t smp, __global float *out, int n)\n"
    "{\n"
    "    out[0] = read_imagef(img, smp, (int2)(0, 0)).x + n;\n"
    "}\n";

static int failed;

static void expect(int ok, const char *what, cl_int err)
{
    printf("%s  %s (%s)\n", ok ? "ok  " : "FAIL", what, cl_err_name(err));
    failed |= !ok;
}

int main(void)
{
    cl_image_format rgba = {CL_RGBA, CL_UNORM_INT8}, r32 = {CL_R, CL_FLOAT};
    cl_image_desc d2 = {CL_MEM_OBJECT_IMAGE2D, 256, 256, 0, 0, 0, 0, 0, 0, NULL};
    cl_image_desc d3 = {CL_MEM_OBJECT_IMAGE3D, 32, 32, 32, 0, 0, 0, 0, 0, NULL};
    cl_image_desc d1a = {CL_MEM_OBJECT_IMAGE1D_ARRAY, 16, 0, 0, 4, 0, 0, 0, 0, NULL};
    cl_image_desc d1b = {CL_MEM_OBJECT_IMAGE1D_BUFFER, 16384, 0, 0, 0, 0, 0, 0, 0, NULL};
    size_t buf_bytes = 64 << 10, bytes;
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_program program;
    cl_kernel kernel;
    cl_sampler sampler;
    cl_mem buf, img2, img3, img1a, img1b;
    cl_int err, n = 1;
    float f;

    CHECK(clGetPlatformIDs(1, &platform, NULL));
    CHECK(clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &device, NULL));
    context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    CHECK(err);
    queue = clCreateCommandQueue(context, device, 0, &err);
    CHECK(err);
    buf = clCreateBuffer(context, CL_MEM_READ_WRITE, buf_bytes, NULL, &err);
    CHECK(err);
    img2 = clCreateImage(context, CL_MEM_READ_ONLY, &rgba, &d2, NULL, &err);
    CHECK(err);
    img3 = clCreateImage(context, CL_MEM_READ_ONLY, &r32, &d3, NULL, &err);
    CHECK(err);
    img1a = clCreateImage(context, CL_MEM_READ_ONLY, &rgba, &d1a, NULL, &err);
    CHECK(err);
    d1b.buffer = buf;
    img1b = clCreateImage(context, CL_MEM_READ_ONLY, &rgba, &d1b, NULL, &err);
    CHECK(err);
    sampler = clCreateSampler(context, CL_FALSE, CL_ADDRESS_CLAMP, CL_FILTER_NEAREST, &err);
    CHECK(err);
    program = clCreateProgramWithSource(context, 1, &source, NULL, &err);
    CHECK(err);
    CHECK(clBuildProgram(program, 1, &device, "-cl-kernel-arg-info", NULL, NULL));
    kernel = clCreateKernel(program, "k", &err);
    CHECK(err);

    err = clSetKernelArg(kernel, 0, sizeof(buf), &buf);
    expect(err == CL_INVALID_MEM_OBJECT, "a buffer for an image2d_t argument is refused", err);
    err = clSetKernelArg(kernel, 2, sizeof(img2), &img2);
    expect(err == CL_INVALID_MEM_OBJECT, "an image for a __global float * argument is refused", err);
    err = clEnqueueReadBuffer(queue, img2, CL_TRUE, 0, sizeof(f), &f, 0, NULL, NULL);
    expect(err == CL_INVALID_MEM_OBJECT, "clEnqueueReadBuffer of an image is refused", err);
    err = clSetKernelArg(kernel, 1, sizeof(n), &n);
    expect(err == CL_INVALID_SAMPLER || err == CL_INVALID_ARG_SIZE, "an int for a sampler_t argument is refused",
           err);
    err = clSetKernelArg(kernel, 1, sizeof(sampler), &sampler);
    expect(err == CL_SUCCESS, "a sampler for a sampler_t argument is taken", err);

    /* The server knows the image's type: a 1D array is no image2d_t. */
    err = clSetKernelArg(kernel, 0, sizeof(img1a), &img1a);
    if (err == CL_SUCCESS)
        err = clFinish(queue);
    expect(err == CL_INVALID_MEM_OBJECT, "a 1D image array for an image2d_t argument is refused (by the server)",
           err);
    err = clSetKernelArg(kernel, 0, sizeof(img2), &img2);
    if (err == CL_SUCCESS)
        err = clFinish(queue);
    expect(err == CL_SUCCESS, "a 2D image for it is taken", err);

    bytes = buf_bytes + 256 * 256 * 4 + 32 * 32 * 32 * 4 + 16 * 4 * 4;
    /* Everything stays alive (and on the server) until the kill. */
    printf("%s\nREADY %zu (%p %p %p)\n", failed ? "FAIL" : "PASS", bytes, (void *)img3, (void *)img1a, (void *)img1b);
    fflush(stdout);
    if (failed)
        return 1;
    for (;;)
        pause();
}
