// Bandwidth in the manner of CUDA's bandwidthTest: host to device, device to
// host and device to device, from pinned (default) or pageable host memory,
// timed with events over several repetitions. The data that comes back is
// checked against what was sent.
//   bandwidth [--memory=pinned|pageable] [--size=BYTES] [--iters=N]
#include <cstring>

#include "check.h"

static double mbps(size_t bytes, int iters, float ms)
{
    return ms > 0.0f ? (double)bytes * iters / (ms / 1e3) / 1e6 : 0.0;
}

int main(int argc, char **argv)
{
    bool pinned = true;
    size_t size = 32u << 20;
    int iters = 10;
    for (int i = 1; i < argc; i++) {
        if (!std::strcmp(argv[i], "--memory=pageable"))
            pinned = false;
        else if (!std::strcmp(argv[i], "--memory=pinned"))
            pinned = true;
        else if (!std::strncmp(argv[i], "--size=", 7))
            size = std::strtoull(argv[i] + 7, nullptr, 10);
        else if (!std::strncmp(argv[i], "--iters=", 8))
            iters = std::atoi(argv[i] + 8);
        else {
            std::fprintf(stderr, "usage: bandwidth [--memory=pinned|pageable] [--size=BYTES] [--iters=N]\n");
            return 2;
        }
    }
    if (size == 0 || size % 4 || iters <= 0) {
        std::fprintf(stderr, "bandwidth: the size must be a positive multiple of 4 and iters positive\n");
        return 2;
    }

    unsigned char *src, *dst;
    if (pinned) {
        CHECK(cudaMallocHost(&src, size));
        CHECK(cudaMallocHost(&dst, size));
    } else {
        src = (unsigned char *)std::malloc(size);
        dst = (unsigned char *)std::malloc(size);
        if (!src || !dst) {
            std::fprintf(stderr, "bandwidth: out of host memory\nFAIL\n");
            return 1;
        }
    }
    for (size_t i = 0; i < size; i++)
        src[i] = (unsigned char)(i * 131 + 7);
    std::memset(dst, 0, size);
    unsigned char *d1, *d2;
    CHECK(cudaMalloc(&d1, size));
    CHECK(cudaMalloc(&d2, size));
    cudaEvent_t start, stop;
    CHECK(cudaEventCreate(&start));
    CHECK(cudaEventCreate(&stop));

    float h2d_ms, d2h_ms, d2d_ms;
    CHECK(cudaEventRecord(start, 0));
    for (int i = 0; i < iters; i++)
        CHECK(pinned ? cudaMemcpyAsync(d1, src, size, cudaMemcpyHostToDevice, 0)
                     : cudaMemcpy(d1, src, size, cudaMemcpyHostToDevice));
    CHECK(cudaEventRecord(stop, 0));
    CHECK(cudaEventSynchronize(stop));
    CHECK(cudaEventElapsedTime(&h2d_ms, start, stop));

    CHECK(cudaEventRecord(start, 0));
    for (int i = 0; i < iters; i++)
        CHECK(cudaMemcpyAsync(d2, d1, size, cudaMemcpyDeviceToDevice, 0));
    CHECK(cudaEventRecord(stop, 0));
    CHECK(cudaEventSynchronize(stop));
    CHECK(cudaEventElapsedTime(&d2d_ms, start, stop));

    CHECK(cudaEventRecord(start, 0));
    for (int i = 0; i < iters; i++)
        CHECK(pinned ? cudaMemcpyAsync(dst, d2, size, cudaMemcpyDeviceToHost, 0)
                     : cudaMemcpy(dst, d2, size, cudaMemcpyDeviceToHost));
    CHECK(cudaEventRecord(stop, 0));
    CHECK(cudaEventSynchronize(stop));
    CHECK(cudaEventElapsedTime(&d2h_ms, start, stop));

    bool same = std::memcmp(src, dst, size) == 0;
    std::printf("bandwidth: %s memory, %zu bytes x %d\n", pinned ? "pinned" : "pageable", size, iters);
    std::printf("  Host to Device    %10.1f MB/s\n", mbps(size, iters, h2d_ms));
    std::printf("  Device to Host    %10.1f MB/s\n", mbps(size, iters, d2h_ms));
    // Device to device reads and writes each byte: CUDA's bandwidthTest counts both.
    std::printf("  Device to Device  %10.1f MB/s\n", 2.0 * mbps(size, iters, d2d_ms));
    if (!same)
        std::fprintf(stderr, "bandwidth: the data read back differs from what was written\n");

    CHECK(cudaEventDestroy(start));
    CHECK(cudaEventDestroy(stop));
    CHECK(cudaFree(d1));
    CHECK(cudaFree(d2));
    if (pinned) {
        CHECK(cudaFreeHost(src));
        CHECK(cudaFreeHost(dst));
    } else {
        std::free(src);
        std::free(dst);
    }
    std::printf("%s\n", same ? "PASS" : "FAIL");
    return same ? 0 : 1;
}
