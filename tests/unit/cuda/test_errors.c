/*
 * The runtime's local error rules, through the library a program loads
 * (libcudart.so.13 from client/cuda/), with no server configured: the last
 * error is set by failing calls only, per thread, returned and reset by
 * cudaGetLastError, returned only by cudaPeekAtLastError; names and
 * descriptions; unsupported functions fail with cudaErrorNotSupported and
 * say so once. (The sticky errors need a device that faults: the
 * end-to-end tests on the emulated backend cover them.)
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void no_servers(void)
{
    unsetenv("RGPU_SERVERS");
    unsetenv("RGPU_LEASE_TOKEN");
    /* No client.conf of this machine may name servers either. */
    setenv("RGPU_CONFIG", "/dev/null", 1);
}

TestSuite(errors, .init = no_servers);

Test(errors, last_error_is_set_by_failures_and_reset_by_get)
{
    int n = -1, v = 0;

    cr_assert_eq(cudaPeekAtLastError(), cudaSuccess);
    cr_assert_eq(cudaGetDeviceCount(&n), cudaErrorNoDevice, "no server, no device");
    cr_assert_eq(n, 0);
    cr_assert_eq(cudaPeekAtLastError(), cudaErrorNoDevice);
    cr_assert_eq(cudaPeekAtLastError(), cudaErrorNoDevice, "peeking does not reset");
    /* A call that succeeds leaves the last error alone. */
    cr_assert_eq(cudaRuntimeGetVersion(&v), cudaSuccess);
    cr_assert_eq(v, CUDART_VERSION);
    cr_assert_eq(cudaGetLastError(), cudaErrorNoDevice);
    cr_assert_eq(cudaGetLastError(), cudaSuccess, "getting resets");
    /* The latest failure wins. */
    cr_assert_eq(cudaRuntimeGetVersion(NULL), cudaErrorInvalidValue);
    cr_assert_eq(cudaSetDevice(3), cudaErrorNoDevice);
    cr_assert_eq(cudaGetLastError(), cudaErrorNoDevice);
    cr_assert_eq(cudaGetLastError(), cudaSuccess);
}

static void *fail_in_thread(void *arg)
{
    cudaError_t *seen = arg;

    seen[0] = cudaPeekAtLastError();          /* the main thread's error is not ours */
    cudaMalloc(NULL, 16);                     /* cudaErrorInvalidValue here */
    seen[1] = cudaGetLastError();
    return NULL;
}

Test(errors, last_error_is_per_thread)
{
    pthread_t t;
    cudaError_t seen[2];

    cr_assert_eq(cudaSetDevice(0), cudaErrorNoDevice);
    cr_assert_eq(pthread_create(&t, NULL, fail_in_thread, seen), 0);
    pthread_join(t, NULL);
    cr_assert_eq(seen[0], cudaSuccess);
    cr_assert_eq(seen[1], cudaErrorInvalidValue);
    cr_assert_eq(cudaGetLastError(), cudaErrorNoDevice, "the other thread's failure is not ours");
}

Test(errors, invalid_arguments_fail_before_any_connection)
{
    float ms;

    cr_assert_eq(cudaEventElapsedTime(&ms, NULL, NULL), cudaErrorInvalidResourceHandle);
    cr_assert_eq(cudaStreamDestroy(NULL), cudaErrorInvalidResourceHandle);
    cr_assert_eq(cudaFree((void *)0x1234), cudaErrorInvalidValue, "not an allocation of this process");
    cr_assert_eq(cudaFreeHost((void *)0x1234), cudaErrorInvalidValue);
    cr_assert_eq(cudaHostUnregister((void *)0x1234), cudaErrorHostMemoryNotRegistered);
    cr_assert_eq(cudaMemcpy((void *)0x1000, (void *)0x2000, 8, cudaMemcpyHostToDevice), cudaErrorInvalidValue,
                 "the device side is not an allocation");
    cr_assert_eq(cudaMemcpy((void *)0x1000, (void *)0x2000, 8, (enum cudaMemcpyKind)42),
                 cudaErrorInvalidMemcpyDirection);
    cr_assert_eq(cudaGetLastError(), cudaErrorInvalidMemcpyDirection);
}

Test(errors, names_and_descriptions)
{
    cr_assert_str_eq(cudaGetErrorName(cudaSuccess), "cudaSuccess");
    cr_assert_str_eq(cudaGetErrorString(cudaSuccess), "no error");
    cr_assert_str_eq(cudaGetErrorName(cudaErrorInvalidValue), "cudaErrorInvalidValue");
    cr_assert_str_eq(cudaGetErrorString(cudaErrorMemoryAllocation), "out of memory");
    cr_assert_str_eq(cudaGetErrorName(cudaErrorIllegalAddress), "cudaErrorIllegalAddress");
    /* Every value of the toolkit's enum has a name; an unknown one says so. */
    cr_assert_str_eq(cudaGetErrorName(cudaErrorStreamCaptureUnsupported), "cudaErrorStreamCaptureUnsupported");
    cr_assert_str_eq(cudaGetErrorName((cudaError_t)12345), "cudaErrorUnknown");
    cr_assert_str_eq(cudaGetErrorString((cudaError_t)12345), "unrecognized error code");
}

Test(errors, unsupported_functions_fail_and_say_so_once, .init = cr_redirect_stderr)
{
    cudaGraph_t graph;
    char buf[4096] = "";
    const char *p;
    int count = 0;

    cr_assert_eq(cudaGraphCreate(&graph, 0), cudaErrorNotSupported);
    cr_assert_eq(cudaGraphCreate(&graph, 0), cudaErrorNotSupported);
    cr_assert_eq(cudaGetLastError(), cudaErrorNotSupported);
    fflush(stderr);
    fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    for (p = buf; (p = strstr(p, "cudaGraphCreate is not supported")); p++)
        count++;
    cr_assert_eq(count, 1, "named once, stderr was: %s", buf);
}
