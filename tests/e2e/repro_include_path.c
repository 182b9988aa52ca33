/* Reproducer: programs that pyopencl (and many OpenCL applications) build,
 * which local PoCL builds and rgpu refused. Cases 1 and 2 pass through rgpu
 * since c545aa4 (the client inlines -I headers, the server builds that
 * source; untaken includes become #error lines); case 3, hashcat's, passes
 * once the client expands macro #include operands with the build options'
 * -D macros (client/opencl/include.c; it needs program.c to pass the
 * options as rgpu_cl_include_cfg_t.options) (docs/applications.md has the
 * history).
 *
 *   cc -std=c11 -o repro_include_path tests/e2e/repro_include_path.c -lOpenCL
 *   OCL_ICD_VENDORS=/etc/OpenCL/vendors/pocl.icd ./repro_include_path   # all ok
 *   OCL_ICD_VENDORS=build/icd RGPU_SERVERS=127.0.0.1:PORT ./repro_include_path
 *
 * 1. "-I DIR" names a directory of the application's machine (the OpenCL
 *    spec: "the list of directories to be searched for header files"; the
 *    headers are the application's). pyopencl passes
 *    "-I /usr/lib/python3/dist-packages/pyopencl/cl" to EVERY build, so no
 *    pyopencl program builds through rgpu: rgpu-server answers
 *    CL_INVALID_BUILD_OPTIONS ('build option "-I" is refused: it adds a
 *    header search directory on the server'). Case a: -I with a source that
 *    includes nothing; case b: -I DIR and #include "header.h" found in DIR
 *    (pyopencl's reductions all #include <pyopencl-complex.h>, clrandom
 *    #include <pyopencl-random123/philox.cl>).
 * 2. An #include of a system header in a branch that the OpenCL C
 *    preprocessor never takes (#ifndef __OPENCL_VERSION__ ... #include
 *    <stddef.h>), as in pyopencl's Random123 headers (array.h) and
 *    CLBlast-style shared C/OpenCL headers: rgpu-server refuses the source
 *    ("#include <stddef.h> is refused: system headers of the server cannot
 *    be included") although the compiler would never read that header.
 * 3. hashcat's way: "-D INCLUDE_PATH=DIR -D KERNEL_STATIC" and
 *    #include M2S(INCLUDE_PATH/inc_vendor.h), M2S stringifying its
 *    argument, DIR being the application's /usr/share/hashcat/OpenCL; hashcat
 *    compiles with clCompileProgram, then links with clLinkProgram.
 *    rgpu-server refuses it ("#include must name a header in double quotes;
 *    a macro or any other operand is refused"); a fix that reads -I headers on
 *    the client still has to see through the macro (run the preprocessor, or
 *    ship the directory).
 *
 * Prints "ok CASE" or "FAIL CASE: status, build log" per case; exits 1 if
 * any case failed.
 */
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static cl_context ctx;
static cl_device_id dev;
static int failures;

/* hashcat's way: clCompileProgram, then clLinkProgram. */
static void compile_link(const char *name, const char *src, const char *options)
{
    cl_int err;
    cl_program prg = clCreateProgramWithSource(ctx, 1, &src, NULL, &err), linked;
    char log[4096] = "";

    if (err != CL_SUCCESS) {
        printf("FAIL %s: clCreateProgramWithSource: %d\n", name, err);
        failures++;
        return;
    }
    err = clCompileProgram(prg, 1, &dev, options, 0, NULL, NULL, NULL, NULL);
    if (err != CL_SUCCESS) {
        clGetProgramBuildInfo(prg, dev, CL_PROGRAM_BUILD_LOG, sizeof(log) - 1, log, NULL);
        printf("FAIL %s: clCompileProgram(options \"%s\"): %d, log: %s\n", name, options, err,
               log);
        failures++;
        clReleaseProgram(prg);
        return;
    }
    linked = clLinkProgram(ctx, 1, &dev, NULL, 1, &prg, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        printf("FAIL %s: clLinkProgram: %d\n", name, err);
        failures++;
    } else {
        cl_kernel k = clCreateKernel(linked, "k", &err);

        if (err == CL_SUCCESS) {
            printf("ok %s\n", name);
            clReleaseKernel(k);
        } else {
            printf("FAIL %s: linked, but clCreateKernel(\"k\"): %d\n", name, err);
            failures++;
        }
        clReleaseProgram(linked);
    }
    clReleaseProgram(prg);
}

static void build(const char *name, const char *src, const char *options)
{
    cl_int err;
    cl_program prg = clCreateProgramWithSource(ctx, 1, &src, NULL, &err);

    if (err != CL_SUCCESS) {
        printf("FAIL %s: clCreateProgramWithSource: %d\n", name, err);
        failures++;
        return;
    }
    err = clBuildProgram(prg, 1, &dev, options, NULL, NULL);
    if (err == CL_SUCCESS) {
        cl_kernel k = clCreateKernel(prg, "k", &err);

        if (err == CL_SUCCESS) {
            printf("ok %s\n", name);
            clReleaseKernel(k);
        } else {
            printf("FAIL %s: built, but clCreateKernel(\"k\"): %d\n", name, err);
            failures++;
        }
    } else {
        char log[4096] = "";

        clGetProgramBuildInfo(prg, dev, CL_PROGRAM_BUILD_LOG, sizeof(log) - 1, log, NULL);
        printf("FAIL %s: clBuildProgram(options \"%s\"): %d, log: %s\n", name,
               options ? options : "(null)", err, log);
        failures++;
    }
    clReleaseProgram(prg);
}

int main(void)
{
    char dir[] = "/tmp/rgpu-repro-include.XXXXXX", path[256], opts[300];
    cl_platform_id plat;
    char pname[128] = "";
    cl_int err;
    FILE *f;

    if (clGetPlatformIDs(1, &plat, NULL) != CL_SUCCESS ||
        clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &dev, NULL) != CL_SUCCESS) {
        fprintf(stderr, "no OpenCL platform or device\n");
        return 2;
    }
    clGetPlatformInfo(plat, CL_PLATFORM_NAME, sizeof(pname), pname, NULL);
    printf("platform: %s\n", pname);
    ctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    if (err != CL_SUCCESS) {
        fprintf(stderr, "clCreateContext: %d\n", err);
        return 2;
    }

    /* A header in a directory of this (the application's) machine. */
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    snprintf(path, sizeof(path), "%s/repro_scale.h", dir);
    f = fopen(path, "w");
    if (!f) {
        perror(path);
        return 2;
    }
    fputs("#define REPRO_SCALE 3\n", f);
    fclose(f);
    snprintf(opts, sizeof(opts), "-I %s", dir);

    build("1a: -I DIR, source includes nothing (every pyopencl build)",
          "__kernel void k(__global int *x) { x[get_global_id(0)] *= 2; }", opts);
    build("1b: -I DIR and #include \"repro_scale.h\" from DIR",
          "#include \"repro_scale.h\"\n"
          "__kernel void k(__global int *x) { x[get_global_id(0)] *= REPRO_SCALE; }",
          opts);
    snprintf(opts, sizeof(opts), "-I%s -DREPRO=1", dir);
    build("1c: -IDIR (no space) and #include <repro_scale.h>",
          "#include <repro_scale.h>\n"
          "__kernel void k(__global int *x) { x[get_global_id(0)] *= REPRO_SCALE + REPRO; }",
          opts);
    build("2: #include <stddef.h> in a branch OpenCL C never takes",
          "#ifndef __OPENCL_VERSION__\n"
          "#include <stddef.h>\n"
          "#endif\n"
          "__kernel void k(__global int *x) { x[get_global_id(0)] += 1; }",
          NULL);
    snprintf(opts, sizeof(opts), "-D INCLUDE_PATH=%s -D KERNEL_STATIC", dir);
    compile_link("3: -D INCLUDE_PATH=DIR, #include M2S(INCLUDE_PATH/repro_scale.h) (hashcat)",
                 "#define M2S_(x) #x\n"
                 "#define M2S(x) M2S_(x)\n"
                 "#ifdef KERNEL_STATIC\n"
                 "#include M2S(INCLUDE_PATH/repro_scale.h)\n"
                 "#endif\n"
                 "__kernel void k(__global int *x) { x[get_global_id(0)] *= REPRO_SCALE; }",
                 opts);

    unlink(path);
    rmdir(dir);
    clReleaseContext(ctx);
    return failures ? 1 : 0;
}
