// The runtime's error rules where they need a device: run through rgpu on
// the cuda-emulated backend by error_rules.sh. A launch with a bad
// configuration fails at once and is not sticky; a kernel that faults
// reports cudaErrorIllegalAddress at the next synchronizing call, and from
// then on every call of the device fails with it (sticky), until
// cudaDeviceReset; then the device works again. Prints PASS or FAIL.
// Kernel (the emulated backend's): vector_add(const float *a, const float *b,
// float *c, int n), one element per thread.
#include <cstdio>
#include <cuda_runtime.h>

extern "C" __global__ void vector_add(const float *a, const float *b, float *c, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        c[i] = a[i] + b[i];
}

static int bad;

static void expect(const char *what, cudaError_t got, cudaError_t want)
{
    if (got != want) {
        std::fprintf(stderr, "%s: %s, expected %s\n", what, cudaGetErrorName(got), cudaGetErrorName(want));
        bad++;
    }
}

int main()
{
    const int n = 1024;
    float host[n], *a, *b, *c;

    for (int i = 0; i < n; i++)
        host[i] = (float)i;
    expect("cudaMalloc a", cudaMalloc(&a, n * sizeof(float)), cudaSuccess);
    expect("cudaMalloc b", cudaMalloc(&b, n * sizeof(float)), cudaSuccess);
    expect("cudaMalloc c", cudaMalloc(&c, n * sizeof(float)), cudaSuccess);
    expect("upload a", cudaMemcpy(a, host, sizeof(host), cudaMemcpyHostToDevice), cudaSuccess);
    expect("upload b", cudaMemcpy(b, host, sizeof(host), cudaMemcpyHostToDevice), cudaSuccess);

    // A configuration no device takes: refused at the launch, not sticky.
    vector_add<<<1, 4096>>>(a, b, c, n);
    expect("launch of 4096 threads per block", cudaGetLastError(), cudaErrorInvalidConfiguration);
    expect("last error after it was read", cudaGetLastError(), cudaSuccess);
    vector_add<<<n / 256, 256>>>(a, b, c, n);
    expect("a good launch", cudaGetLastError(), cudaSuccess);
    expect("synchronize after it", cudaDeviceSynchronize(), cudaSuccess);
    expect("download", cudaMemcpy(host, c, sizeof(host), cudaMemcpyDeviceToHost), cudaSuccess);
    if (host[7] != 14.0f) {
        std::fprintf(stderr, "c[7] = %g, expected 14\n", host[7]);
        bad++;
    }

    // A kernel that reads and writes far past its buffers faults. The launch
    // itself returns at once; the fault surfaces at the next synchronization.
    vector_add<<<64, 256>>>(a, b, c, 1 << 30);
    expect("the faulting launch", cudaGetLastError(), cudaSuccess);
    expect("synchronize after the fault", cudaDeviceSynchronize(), cudaErrorIllegalAddress);
    expect("last error (sticky)", cudaGetLastError(), cudaErrorIllegalAddress);
    expect("last error again (still sticky)", cudaGetLastError(), cudaErrorIllegalAddress);
    void *d = nullptr;
    expect("cudaMalloc on the faulted device", cudaMalloc(&d, 64), cudaErrorIllegalAddress);
    expect("cudaMemcpy on the faulted device", cudaMemcpy(host, c, sizeof(host), cudaMemcpyDeviceToHost),
           cudaErrorIllegalAddress);

    // A reset clears it, and frees what the device held.
    expect("cudaDeviceReset", cudaDeviceReset(), cudaSuccess);
    expect("last error after the reset", cudaGetLastError(), cudaSuccess);
    expect("cudaMalloc after the reset", cudaMalloc(&a, n * sizeof(float)), cudaSuccess);
    expect("cudaMalloc after the reset", cudaMalloc(&c, n * sizeof(float)), cudaSuccess);
    expect("upload after the reset", cudaMemcpy(a, host, sizeof(host), cudaMemcpyHostToDevice), cudaSuccess);
    vector_add<<<n / 256, 256>>>(a, a, c, n);
    expect("launch after the reset", cudaGetLastError(), cudaSuccess);
    float out[n];
    expect("download after the reset", cudaMemcpy(out, c, sizeof(out), cudaMemcpyDeviceToHost), cudaSuccess);
    if (out[5] != 2.0f * host[5]) {
        std::fprintf(stderr, "after the reset c[5] = %g, expected %g\n", out[5], 2.0f * host[5]);
        bad++;
    }
    std::printf("%s\n", bad ? "FAIL" : "PASS");
    return bad ? 1 : 0;
}
