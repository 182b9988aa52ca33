/*
 * The runtime's error state, answered locally as NVIDIA's runtime does:
 *
 * - Every failing call records its error as the calling thread's last
 *   error; calls that succeed leave it alone. cudaGetLastError returns it
 *   and resets it to cudaSuccess, cudaPeekAtLastError returns it only.
 * - Some errors leave the device's context unusable (a kernel's illegal
 *   address, a device-side assert, ...): they are sticky. Every later call
 *   on that device returns the error, cudaGetLastError does not clear it,
 *   and only cudaDeviceReset does.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cudart.h"

static _Thread_local cudaError_t rgpu_cu_last_error;

cudaError_t rgpu__cu_fail(cudaError_t err)
{
    if (err != cudaSuccess)
        rgpu_cu_last_error = err;
    return err;
}

void rgpu__cu_clear_error(void)
{
    rgpu_cu_last_error = cudaSuccess;
}

cudaError_t rgpu__cu_unsupported(const char *name, int *told)
{
    /* Several threads may race to tell: telling twice is harmless. */
    if (!__atomic_exchange_n(told, 1, __ATOMIC_RELAXED))
        fprintf(stderr, "rgpu: %s is not supported by rgpu's CUDA runtime yet; it returns "
                        "cudaErrorNotSupported\n", name);
    return rgpu__cu_fail(cudaErrorNotSupported);
}

int rgpu__cu_stub(const char *name, int *told)
{
    return (int)rgpu__cu_unsupported(name, told);
}

static const rgpu__cu_error_desc_t *rgpu_cu_error_desc(int code)
{
    size_t lo = 0, hi = rgpu__cu_num_errors;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (rgpu__cu_errors[mid].code == code)
            return &rgpu__cu_errors[mid];
        if (rgpu__cu_errors[mid].code < code)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

cudaError_t rgpu__cu_from_cu(int32_t cu)
{
    /* Since CUDA 11 the runtime's codes equal the driver's wherever both
     * name the same condition; the driver's codes the runtime lacks become
     * cudaErrorUnknown, as NVIDIA's runtime maps them. */
    if (cu == 0)
        return cudaSuccess;
    return rgpu_cu_error_desc(cu) ? (cudaError_t)cu : cudaErrorUnknown;
}

int rgpu__cu_is_sticky(cudaError_t err)
{
    switch (err) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
    case cudaErrorContextIsDestroyed:
        return 1;
    default:
        return 0;
    }
}

/* The current device's sticky error, if the runtime has devices. */
static cudaError_t rgpu_cu_sticky_now(void)
{
    int dev = rgpu__cu_current();

    if (dev < 0 || dev >= rgpu__cu.num_devices)
        return cudaSuccess;
    return (cudaError_t)atomic_load(&rgpu__cu.devices[dev].sticky);
}

RGPU_CUDA_EXPORT cudaError_t cudaGetLastError(void)
{
    cudaError_t sticky = rgpu_cu_sticky_now();
    cudaError_t err = rgpu_cu_last_error;

    rgpu_cu_last_error = cudaSuccess;
    return sticky != cudaSuccess ? sticky : err;
}

RGPU_CUDA_EXPORT cudaError_t cudaPeekAtLastError(void)
{
    cudaError_t sticky = rgpu_cu_sticky_now();

    return sticky != cudaSuccess ? sticky : rgpu_cu_last_error;
}

RGPU_CUDA_EXPORT const char *cudaGetErrorName(cudaError_t error)
{
    const rgpu__cu_error_desc_t *d = rgpu_cu_error_desc((int)error);

    return d ? d->name : "cudaErrorUnknown";
}

RGPU_CUDA_EXPORT const char *cudaGetErrorString(cudaError_t error)
{
    const rgpu__cu_error_desc_t *d = rgpu_cu_error_desc((int)error);

    return d ? d->desc : "unrecognized error code";
}
