/*
 * Helpers shared by the example and test programs: OpenCL error names, a
 * CHECK macro that stops the program with the failing call and its error,
 * and small info getters. Header-only, so every program stays one file plus
 * this one.
 *
 * These are applications, not libraries: on failure they print and exit(1).
 */
#ifndef RGPU_EXAMPLES_CL_UTIL_H
#define RGPU_EXAMPLES_CL_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <CL/cl.h>

/* The name of an OpenCL error code ("CL_INVALID_VALUE"), or "CL_<unknown>". */
static inline const char *cl_err_name(cl_int err)
{
    switch (err) {
#define CL_ERR_CASE(e) case e: return #e;
    CL_ERR_CASE(CL_SUCCESS)
    CL_ERR_CASE(CL_DEVICE_NOT_FOUND)
    CL_ERR_CASE(CL_DEVICE_NOT_AVAILABLE)
    CL_ERR_CASE(CL_COMPILER_NOT_AVAILABLE)
    CL_ERR_CASE(CL_MEM_OBJECT_ALLOCATION_FAILURE)
    CL_ERR_CASE(CL_OUT_OF_RESOURCES)
    CL_ERR_CASE(CL_OUT_OF_HOST_MEMORY)
    CL_ERR_CASE(CL_PROFILING_INFO_NOT_AVAILABLE)
    CL_ERR_CASE(CL_MEM_COPY_OVERLAP)
    CL_ERR_CASE(CL_IMAGE_FORMAT_MISMATCH)
    CL_ERR_CASE(CL_IMAGE_FORMAT_NOT_SUPPORTED)
    CL_ERR_CASE(CL_BUILD_PROGRAM_FAILURE)
    CL_ERR_CASE(CL_MAP_FAILURE)
    CL_ERR_CASE(CL_MISALIGNED_SUB_BUFFER_OFFSET)
    CL_ERR_CASE(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
    CL_ERR_CASE(CL_COMPILE_PROGRAM_FAILURE)
    CL_ERR_CASE(CL_LINKER_NOT_AVAILABLE)
    CL_ERR_CASE(CL_LINK_PROGRAM_FAILURE)
    CL_ERR_CASE(CL_DEVICE_PARTITION_FAILED)
    CL_ERR_CASE(CL_KERNEL_ARG_INFO_NOT_AVAILABLE)
    CL_ERR_CASE(CL_INVALID_VALUE)
    CL_ERR_CASE(CL_INVALID_DEVICE_TYPE)
    CL_ERR_CASE(CL_INVALID_PLATFORM)
    CL_ERR_CASE(CL_INVALID_DEVICE)
    CL_ERR_CASE(CL_INVALID_CONTEXT)
    CL_ERR_CASE(CL_INVALID_QUEUE_PROPERTIES)
    CL_ERR_CASE(CL_INVALID_COMMAND_QUEUE)
    CL_ERR_CASE(CL_INVALID_HOST_PTR)
    CL_ERR_CASE(CL_INVALID_MEM_OBJECT)
    CL_ERR_CASE(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR)
    CL_ERR_CASE(CL_INVALID_IMAGE_SIZE)
    CL_ERR_CASE(CL_INVALID_SAMPLER)
    CL_ERR_CASE(CL_INVALID_BINARY)
    CL_ERR_CASE(CL_INVALID_BUILD_OPTIONS)
    CL_ERR_CASE(CL_INVALID_PROGRAM)
    CL_ERR_CASE(CL_INVALID_PROGRAM_EXECUTABLE)
    CL_ERR_CASE(CL_INVALID_KERNEL_NAME)
    CL_ERR_CASE(CL_INVALID_KERNEL_DEFINITION)
    CL_ERR_CASE(CL_INVALID_KERNEL)
    CL_ERR_CASE(CL_INVALID_ARG_INDEX)
    CL_ERR_CASE(CL_INVALID_ARG_VALUE)
    CL_ERR_CASE(CL_INVALID_ARG_SIZE)
    CL_ERR_CASE(CL_INVALID_KERNEL_ARGS)
    CL_ERR_CASE(CL_INVALID_WORK_DIMENSION)
    CL_ERR_CASE(CL_INVALID_WORK_GROUP_SIZE)
    CL_ERR_CASE(CL_INVALID_WORK_ITEM_SIZE)
    CL_ERR_CASE(CL_INVALID_GLOBAL_OFFSET)
    CL_ERR_CASE(CL_INVALID_EVENT_WAIT_LIST)
    CL_ERR_CASE(CL_INVALID_EVENT)
    CL_ERR_CASE(CL_INVALID_OPERATION)
    CL_ERR_CASE(CL_INVALID_GL_OBJECT)
    CL_ERR_CASE(CL_INVALID_BUFFER_SIZE)
    CL_ERR_CASE(CL_INVALID_MIP_LEVEL)
    CL_ERR_CASE(CL_INVALID_GLOBAL_WORK_SIZE)
    CL_ERR_CASE(CL_INVALID_PROPERTY)
    CL_ERR_CASE(CL_INVALID_IMAGE_DESCRIPTOR)
    CL_ERR_CASE(CL_INVALID_COMPILER_OPTIONS)
    CL_ERR_CASE(CL_INVALID_LINKER_OPTIONS)
    CL_ERR_CASE(CL_INVALID_DEVICE_PARTITION_COUNT)
#undef CL_ERR_CASE
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    }
    return "CL_<unknown>";
}

/* Runs an OpenCL call returning cl_int; on failure prints where, the call
 * and the error name, and exits 1. */
#define CHECK(call)                                                           \
    do {                                                                      \
        cl_int check_err_ = (call);                                           \
        if (check_err_ != CL_SUCCESS) {                                       \
            fprintf(stderr, "%s:%d: %s failed: %s (%d)\n", __FILE__, __LINE__, \
                    #call, cl_err_name(check_err_), check_err_);              \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

/* For calls that return an object and an error through errcode_ret. */
#define CHECK_ERR(err, what)                                                  \
    do {                                                                      \
        if ((err) != CL_SUCCESS) {                                            \
            fprintf(stderr, "%s:%d: %s failed: %s (%d)\n", __FILE__, __LINE__, \
                    (what), cl_err_name(err), (err));                         \
            exit(1);                                                          \
        }                                                                     \
    } while (0)

/* A string-valued platform info, malloc'd; exits on failure. */
static inline char *cl_platform_str(cl_platform_id platform, cl_platform_info param)
{
    size_t size = 0;
    char *s;

    CHECK(clGetPlatformInfo(platform, param, 0, NULL, &size));
    s = malloc(size + 1);
    if (!s)
        abort();
    CHECK(clGetPlatformInfo(platform, param, size, s, NULL));
    s[size] = '\0';
    return s;
}

/* A string-valued device info, malloc'd; exits on failure. */
static inline char *cl_device_str(cl_device_id device, cl_device_info param)
{
    size_t size = 0;
    char *s;

    CHECK(clGetDeviceInfo(device, param, 0, NULL, &size));
    s = malloc(size + 1);
    if (!s)
        abort();
    CHECK(clGetDeviceInfo(device, param, size, s, NULL));
    s[size] = '\0';
    return s;
}

/* Device number index (counting the devices of every platform, in order).
 * Exits with the error when there is no such device (CL_DEVICE_NOT_FOUND,
 * CL_PLATFORM_NOT_FOUND_KHR). */
static inline void cl_pick_device_index(unsigned index, cl_platform_id *platform_p,
                                        cl_device_id *device_p)
{
    cl_platform_id platforms[16];
    cl_device_id devices[64];
    cl_uint nplatforms = 0, seen = 0;
    cl_int err = CL_DEVICE_NOT_FOUND;

    CHECK(clGetPlatformIDs(16, platforms, &nplatforms));
    if (nplatforms > 16)
        nplatforms = 16;
    for (cl_uint i = 0; i < nplatforms; i++) {
        cl_uint n = 0;
        err = clGetDeviceIDs(platforms[i], CL_DEVICE_TYPE_ALL, 64, devices, &n);
        if (err == CL_DEVICE_NOT_FOUND)
            continue;
        CHECK_ERR(err, "clGetDeviceIDs");
        if (n > 64)
            n = 64;
        if (index < seen + n) {
            *platform_p = platforms[i];
            *device_p = devices[index - seen];
            return;
        }
        seen += n;
    }
    fprintf(stderr, "no OpenCL device number %u: %u device(s) on %u platform(s)%s%s\n", index,
            seen, nplatforms, seen ? "" : ": ", seen ? "" : cl_err_name(err));
    exit(1);
}

/* The first device of the first platform that has one. */
static inline void cl_pick_device(cl_platform_id *platform_p, cl_device_id *device_p)
{
    cl_pick_device_index(0, platform_p, device_p);
}

/* Builds a program from source; on failure prints the build log and exits. */
static inline cl_program cl_build_source(cl_context context, cl_device_id device,
                                         const char *source, const char *options)
{
    cl_int err;
    cl_program program = clCreateProgramWithSource(context, 1, &source, NULL, &err);

    CHECK_ERR(err, "clCreateProgramWithSource");
    err = clBuildProgram(program, 1, &device, options, NULL, NULL);
    if (err != CL_SUCCESS) {
        size_t size = 0;
        char *log;

        fprintf(stderr, "clBuildProgram failed: %s (%d)\n", cl_err_name(err), err);
        if (clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, 0, NULL, &size) ==
                CL_SUCCESS &&
            (log = malloc(size + 1)) != NULL) {
            if (clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, size, log, NULL) ==
                CL_SUCCESS) {
                log[size] = '\0';
                fprintf(stderr, "build log:\n%s\n", log);
            }
            free(log);
        }
        exit(1);
    }
    return program;
}

/* Monotonic seconds, for loops that run for a while. */
static inline double cl_now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#endif
