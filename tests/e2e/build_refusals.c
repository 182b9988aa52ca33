/*
 * build_refusals: a program may not read files of the server into its build,
 * while the application's own headers still work.
 *
 *   build_refusals FILE [--pocl]
 *
 * FILE is a file of the server's machine whose first line must not leak. An
 * #include whose name a macro computes cannot be resolved by the client, so
 * it reaches the server, which turns it into an #error: the build fails,
 * the log says why and never quotes FILE. (A plain #include "FILE" would be
 * resolved by the client library on the application's machine, where FILE
 * is the application's own; tests/e2e/hostile.c sends one to the server
 * directly.) An #include of a system header in a branch OpenCL C never
 * takes builds; -I DIR finds the application's headers in DIR (resolved on
 * the client); embedded headers given to clCompileProgram work.
 *
 * --pocl: on local PoCL, where the macro #include compiles (which is what
 * makes it an attack on a shared server): the same program must then build.
 *
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

/* Builds src with options; returns the error and checks the log says why
 * and does not quote secret. */
static cl_int build_refused(cl_context context, cl_device_id device, const char *src, const char *options,
                            const char *secret, const char *what)
{
    cl_program program;
    cl_int err;
    char *log;

    program = clCreateProgramWithSource(context, 1, &src, NULL, &err);
    CHECK_ERR(err, "clCreateProgramWithSource");
    err = clBuildProgram(program, 1, &device, options, NULL, NULL);
    log = build_log(program, device);
    EXPECT(err != CL_SUCCESS, "%s: the build succeeded (log: %s)", what, log);
    EXPECT(!*secret || !strstr(log, secret), "%s: the build log quotes the server's file: %s", what, log);
    if (err == CL_BUILD_PROGRAM_FAILURE)
        EXPECT(strstr(log, "refused"), "%s: the build log does not say why: %s", what, log);
    printf("%s: refused with %d\n", what, err);
    free(log);
    CHECK(clReleaseProgram(program));
    return err;
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
    char secret[256] = "", src[1024], dir[] = "/tmp/rgpu-build-refusals.XXXXXX", path[300], opts[320];
    const char *header_name = "scale.h", *hsrc = header_src, *ksrc = kernel_src;
    int on_pocl = argc > 2 && strcmp(argv[2], "--pocl") == 0;
    FILE *f;

    EXPECT(argc >= 2, "usage: build_refusals FILE [--pocl]");
    f = fopen(argv[1], "r");
    EXPECT(f, "cannot open %s", argv[1]);
    if (!fgets(secret, sizeof(secret), f))
        secret[0] = '\0';
    fclose(f);
    secret[strcspn(secret, "\n")] = '\0';

    cl_pick_device(&platform, &device);
    context = clCreateContext(NULL, 1, &device, NULL, NULL, &err);
    CHECK_ERR(err, "clCreateContext");
    queue = clCreateCommandQueue(context, device, 0, &err);
    CHECK_ERR(err, "clCreateCommandQueue");

    /* A macro names the server's file. */
    snprintf(src, sizeof(src), "#define F \"%s\"\n#include F\n__kernel void k(__global int *p) { p[0] = 1; }\n",
             argv[1]);
    if (on_pocl)
        build_ok(context, device, src, NULL, "#include of a file through a macro (local)");
    else
        build_refused(context, device, src, NULL, secret, "#include of a server file through a macro");

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
    printf("build_refusals: server files stay out of builds; embedded headers work: PASS\n");
    return 0;
}
