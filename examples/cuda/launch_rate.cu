// Launch rate: how many kernel launches per second a program gets when it
// does not wait for each (launches are asynchronous), beside the rate of
// synchronous round trips (cudaStreamQuery) and of launches each followed by
// a synchronization, measured in the same run. Through rgpu the first
// should be far above the other two: a launch does not wait for the server.
//   launch_rate [LAUNCHES]
// Kernel (for the emulated backend): vector_add, as in vector_add.cu,
// launched with n = 0 so that it does no work.
#include <chrono>

#include "check.h"

extern "C" __global__ void vector_add(const float *a, const float *b, float *c, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        c[i] = a[i] + b[i];
}

static double now()
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? std::atoi(argv[1]) : 20000;
    if (n <= 0) {
        std::fprintf(stderr, "usage: launch_rate [LAUNCHES > 0]\n");
        return 2;
    }
    float *d;
    CHECK(cudaMalloc(&d, 256));
    vector_add<<<1, 32>>>(d, d, d, 0);      // the first launch loads the module
    CHECK(cudaDeviceSynchronize());

    double t0 = now();
    for (int i = 0; i < n; i++)
        vector_add<<<1, 32>>>(d, d, d, 0);
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    double async_s = now() - t0;

    int m = n / 10 > 0 ? n / 10 : 1;
    t0 = now();
    for (int i = 0; i < m; i++)
        CHECK(cudaStreamQuery(0));
    double query_s = now() - t0;

    t0 = now();
    for (int i = 0; i < m; i++) {
        vector_add<<<1, 32>>>(d, d, d, 0);
        CHECK(cudaDeviceSynchronize());
    }
    double sync_s = now() - t0;

    double async_rate = n / async_s, query_rate = m / query_s, sync_rate = m / sync_s;
    std::printf("launch_rate: %d asynchronous launches: %.0f launches/s\n", n, async_rate);
    std::printf("launch_rate: %d synchronous calls (cudaStreamQuery): %.0f calls/s (%.1f us each)\n", m,
                query_rate, 1e6 / query_rate);
    std::printf("launch_rate: %d launches each synchronized: %.0f launches/s\n", m, sync_rate);
    std::printf("launch_rate: asynchronous launches / synchronous calls = %.1f\n", async_rate / query_rate);
    CHECK(cudaFree(d));
    std::printf("PASS\n");
    return 0;
}
