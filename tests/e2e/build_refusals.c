/*
 * build_refusals: what a program may include through rgpu, and where it is
 * read. The server never reads a header of its own machine (an #include it
 * cannot serve becomes an #error: tests/e2e/hostile.c include-server-file
 * sends those to the server directly); the client library resolves the
 * application's includes on the application's machine: -I DIR, a macro
 * operand (#define F "FILE" / #include F, hashcat's #include M2S(HDR) with
 * the macros in -D options), embedded headers given to clCompileProgram.
 * An #include of a system header in a branch OpenCL C never takes builds.
 *
 *   build_refusals FILE [--pocl]
 *
 * FILE: a header of the application's (a #define). --pocl: on local PoCL.
 * Exits 0 and prints "... PASS", or 1 with the reason.
 */
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "cl_util.h"

#define EXPECT(cond, ...)                                                     \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "build_refusals: " __VA_ARGS__);                  \
            fprintf(stderr, "\n");                                            \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

static char *build_log(cl_program program, cl_device_id device)
{
    size_t len = 0;
    char *log;

    CHECK(clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, NULL, &len));
    log = calloc(1, len + 1);
    EXPECT(log, "out of memory");
    CHECK(clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, len, log, NULL));
    return log;
}

static int build_ok(cl_context context, cl_device_id device, const char *src, const char *options,
                    const char *what)
{
    cl_program program;
    cl_int err;

    program = clCreateProgramWithSource(context, 1, &src, NULL, &err);
    CHECK_ERR(err, "clCreateProgramWithSource");
    err = clBuildProgram(program, 1, &device, options, NULL, NULL);
    EXPECT(err == CL_SUCCESS, "%s: the build failed with %d: %s", what, err, build_log(program, device));
    printf("%s: built\n", what);
    CHECK(clReleaseProgram(program));
    return 0;
}

int main(int argc, char **argv)
{
    static const char header_src[] = "#define SCALE 3\n";
    static const char kernel_src[] = "#include \"scale.h\"\n"
                                     "__kernel void k(__global int *p) { p[get_global_id(0)] *= SCALE; }\n";
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_program header, program, linked;
    cl_kernel kernel;
    cl_mem buf;
    cl_int err, data[16];
    char src[1024], dir[] = "/tmp/rgpu-build-refusals.XXXXXX", path[300], opts[320];
    const char *header_name = "scale.h", *hsrc = header_src, *ksrc = kernel_src;
    int on_pocl = argc > 2 && strcmp(argv[2], "--pocl") == 0;
    FILE *f;

    EXPECT(argc >= 2, "usage: build_refusals FILE [--pocl]");

    cl_pick_device(&platform, &device);
    context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    CHECK_ERR(err, "clCreateContext");
    queue = clCreateCommandQueue(context, device, 0, &err);
    CHECK_ERR(err, "clCreateCommandQueue");

    /* A macro names the application's file: the client expands it (as
     * hashcat's -D INCLUDE_PATH=DIR and #include M2S(INCLUDE_PATH/x.h)). */
    snprintf(src, sizeof(src), "#define F \"%s\"\n#include F\n__kernel void k(__global int *p) { p[0] = 1; }\n",
             argv[1]);
    build_ok(context, device, src, NULL, "#include of the application's file through a macro");
    snprintf(opts, sizeof(opts), "-D XM2S(x)=#x -D M2S(x)=XM2S(x) -D HDR=%s", argv[1]);
    build_ok(context, device, "#include M2S(HDR)\n__kernel void k(__global int *p) { p[0] = 1; }\n", opts,
             "#include M2S(HDR) with the macros in -D options");
    (void)on_pocl;

    /* A system header in a branch the OpenCL C preprocessor never takes. */
    build_ok(context, device,
             "#ifndef __OPENCL_VERSION__\n#include <rgpu_no_such_header.h>\n#endif\n"
             "__kernel void k(__global int *p) { p[0] = 1; }\n",
             NULL, "#include of a system header in a branch OpenCL C never takes");

    /* -I DIR: the application's header, found in its directory. */
    EXPECT(mkdtemp(dir), "mkdtemp failed");
    snprintf(path, sizeof(path), "%s/scale.h", dir);
    f = fopen(path, "w");
    EXPECT(f, "cannot write %s", path);
    fputs(header_src, f);
    fclose(f);
    snprintf(opts, sizeof(opts), "-I %s -DUNUSED=1", dir);
    build_ok(context, device, kernel_src, opts, "-I DIR and #include \"scale.h\" from DIR");
    snprintf(opts, sizeof(opts), "-I%s", dir);
    build_ok(context, device, "#include <scale.h>\n__kernel void k(__global int *p) { p[0] = SCALE; }\n", opts,
             "-IDIR and #include <scale.h>");
    remove(path);
    rmdir(dir);
    /* An embedded header is what a program may include. */
    header = clCreateProgramWithSource(context, 1, &hsrc, NULL, &err);
    CHECK_ERR(err, "clCreateProgramWithSource (header)");
    program = clCreateProgramWithSource(context, 1, &ksrc, NULL, &err);
    CHECK_ERR(err, "clCreateProgramWithSource");
    err = clCompileProgram(program, 1, &device, NULL, 1, &header, &header_name, NULL, NULL);
    EXPECT(err == CL_SUCCESS, "clCompileProgram with an embedded header failed with %d: %s", err,
           build_log(program, device));
    linked = clLinkProgram(context, 1, &device, NULL, 1, &program, NULL, NULL, &err);
    CHECK_ERR(err, "clLinkProgram");
    kernel = clCreateKernel(linked, "k", &err);
    CHECK_ERR(err, "clCreateKernel");
    for (int i = 0; i < 16; i++)
        data[i] = i;
    buf = clCreateBuffer(context, CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, sizeof(data), data, &err);
    CHECK_ERR(err, "clCreateBuffer");
    CHECK(clSetKernelArg(kernel, 0, sizeof(buf), &buf));
    CHECK(clEnqueueNDRangeKernel(queue, kernel, 1, NULL, (size_t[]){16}, NULL, 0, NULL, NULL));
    CHECK(clEnqueueReadBuffer(queue, buf, CL_TRUE, 0, sizeof(data), data, 0, NULL, NULL));
    for (int i = 0; i < 16; i++)
        EXPECT(data[i] == 3 * i, "element %d is %d after the kernel with the embedded header, expected %d", i,
               data[i], 3 * i);

    CHECK(clReleaseMemObject(buf));
    CHECK(clReleaseKernel(kernel));
    CHECK(clReleaseProgram(linked));
    CHECK(clReleaseProgram(program));
    CHECK(clReleaseProgram(header));
    CHECK(clReleaseCommandQueue(queue));
    CHECK(clReleaseContext(context));
    printf("build_refusals: the application's headers (-I, macro operands, embedded) resolved where they are: PASS\n");
    return 0;
}
