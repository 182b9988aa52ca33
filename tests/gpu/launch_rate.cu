// Kernel launch figures for tests/gpu/run.sh, in the manner of the launch
// rows of rgpu-bench: the rate of asynchronous launches of an empty kernel
// (a batch, then one synchronization), and the round trip of a launch
// followed by cudaStreamSynchronize. Run locally and through rgpu, the two
// are printed side by side.
// Kernel (for the emulated backend): empty_kernel(int), which does nothing.
#include <chrono>
#include <cstdlib>
#include <cstring>

#include "../../examples/cuda/check.h"

extern "C" __global__ void empty_kernel(int x)
{
    (void)x;
}

static double seconds_since(std::chrono::steady_clock::time_point t0)
{
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int main(int argc, char **argv)
{
    int batch = argc > 1 ? std::atoi(argv[1]) : 20000;
    int syncs = argc > 2 ? std::atoi(argv[2]) : 2000;
    if (batch <= 0 || syncs <= 0) {
        std::fprintf(stderr, "usage: launch_rate [BATCH > 0] [SYNCS > 0]\n");
        return 2;
    }
    cudaStream_t s;
    CHECK(cudaStreamCreate(&s));
    // Warm up: module load, first launch.
    empty_kernel<<<1, 32, 0, s>>>(0);
    CHECK(cudaStreamSynchronize(s));

    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < batch; i++)
        empty_kernel<<<1, 32, 0, s>>>(i);
    CHECK(cudaGetLastError());
    CHECK(cudaStreamSynchronize(s));
    double async_s = seconds_since(t0);

    t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < syncs; i++) {
        empty_kernel<<<1, 32, 0, s>>>(i);
        CHECK(cudaStreamSynchronize(s));
    }
    double sync_s = seconds_since(t0);
    CHECK(cudaStreamDestroy(s));

    std::printf("launch_rate: async %.0f launches/s (%d launches, one sync)\n", batch / async_s, batch);
    std::printf("launch_rate: sync %.1f us per launch + cudaStreamSynchronize (%d)\n",
                sync_s / syncs * 1e6, syncs);
    std::printf("PASS\n");
    return 0;
}
