/*
 * libcuda.so.1, as rgpu ships it beside its libcudart.so.13: not a driver,
 * but the one place where a program rgpu cannot serve shows itself.
 *
 * rgpu serves CUDA programs by replacing the shared CUDA runtime. A program
 * linked with the static runtime (nvcc's default, -cudart static) carries
 * NVIDIA's runtime inside itself and loads the driver, libcuda.so.1, by
 * name, where a compute node has none. With rgpu's library directory on the
 * library path it finds this one instead, which says why the program cannot
 * run and what to do, and fails every driver call with
 * CUDA_ERROR_NO_DEVICE, so the program's own error handling reports it. A
 * program that does use rgpu's runtime but also calls the driver API itself
 * is told that these calls are not served.
 *
 * It defines the entry points a runtime looks up first; without them the
 * static runtime gives up before calling anything (and the constructor has
 * already spoken).
 */
#include <dlfcn.h>
#include <stdio.h>

#define RGPU_CUDA_DRIVER_EXPORT __attribute__((visibility("default")))
/* CUDA_ERROR_NO_DEVICE of cuda.h. */
#define RGPU_CU_ERROR_NO_DEVICE 100

static int rgpu_static_told;

static void rgpu_static_tell(void)
{
    if (__atomic_exchange_n(&rgpu_static_told, 1, __ATOMIC_RELAXED))
        return;
    /* A shared CUDA runtime in the process exports cudaMalloc; the static
     * runtime inside an executable does not. */
    if (!dlsym(RTLD_DEFAULT, "cudaMalloc"))
        fprintf(stderr, "rgpu: this program is linked with the static CUDA runtime (nvcc's default), "
                        "which rgpu cannot serve: rebuild it with -cudart shared (nvcc -cudart shared, or "
                        "CMake's CUDA_RUNTIME_LIBRARY Shared) to run it on rgpu's remote GPUs\n");
    else
        fprintf(stderr, "rgpu: this program calls the CUDA driver API (libcuda.so.1) directly, which rgpu "
                        "does not serve; only the CUDA runtime API (libcudart) runs on rgpu's remote GPUs\n");
}

__attribute__((constructor)) static void rgpu_static_check(void)
{
    rgpu_static_tell();
}

RGPU_CUDA_DRIVER_EXPORT int cuInit(unsigned int flags)
{
    rgpu_static_tell();
    return RGPU_CU_ERROR_NO_DEVICE;
}

RGPU_CUDA_DRIVER_EXPORT int cuDriverGetVersion(int *version)
{
    rgpu_static_tell();
    return RGPU_CU_ERROR_NO_DEVICE;
}

RGPU_CUDA_DRIVER_EXPORT int cuGetProcAddress(const char *symbol, void **pfn, int version, unsigned long long flags)
{
    rgpu_static_tell();
    if (pfn)
        *pfn = NULL;
    return RGPU_CU_ERROR_NO_DEVICE;
}

RGPU_CUDA_DRIVER_EXPORT int cuGetProcAddress_v2(const char *symbol, void **pfn, int version,
                                                unsigned long long flags, void *status)
{
    rgpu_static_tell();
    if (pfn)
        *pfn = NULL;
    return RGPU_CU_ERROR_NO_DEVICE;
}

RGPU_CUDA_DRIVER_EXPORT int cuDeviceGetCount(int *count)
{
    rgpu_static_tell();
    if (count)
        *count = 0;
    return RGPU_CU_ERROR_NO_DEVICE;
}
