// Device query in the manner of CUDA's deviceQuery: every device's main
// properties, checked for consistency between cudaGetDeviceProperties and
// cudaDeviceGetAttribute, and between cudaSetDevice and cudaGetDevice.
#include "check.h"

int main()
{
    int count = 0;
    CHECK(cudaGetDeviceCount(&count));
    int driver = 0, runtime = 0;
    CHECK(cudaDriverGetVersion(&driver));
    CHECK(cudaRuntimeGetVersion(&runtime));
    std::printf("CUDA driver %d.%d, runtime %d.%d, %d device(s)\n", driver / 1000, driver % 1000 / 10,
                runtime / 1000, runtime % 1000 / 10, count);
    int bad = count > 0 ? 0 : 1;
    for (int d = 0; d < count; d++) {
        cudaDeviceProp p;
        CHECK(cudaGetDeviceProperties(&p, d));
        CHECK(cudaSetDevice(d));
        int cur = -1;
        CHECK(cudaGetDevice(&cur));
        int major, minor, sms, warp, max_threads;
        CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, d));
        CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, d));
        CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, d));
        CHECK(cudaDeviceGetAttribute(&warp, cudaDevAttrWarpSize, d));
        CHECK(cudaDeviceGetAttribute(&max_threads, cudaDevAttrMaxThreadsPerBlock, d));
        size_t free_b = 0, total_b = 0;
        CHECK(cudaMemGetInfo(&free_b, &total_b));

        std::printf("Device %d: \"%s\"\n", d, p.name);
        std::printf("  Compute capability          %d.%d\n", p.major, p.minor);
        std::printf("  Global memory               %zu MiB (%zu MiB free)\n", p.totalGlobalMem >> 20,
                    free_b >> 20);
        std::printf("  Multiprocessors             %d\n", p.multiProcessorCount);
        std::printf("  Warp size                   %d\n", p.warpSize);
        std::printf("  Max threads per block       %d\n", p.maxThreadsPerBlock);
        std::printf("  Max block dimensions        %d x %d x %d\n", p.maxThreadsDim[0], p.maxThreadsDim[1],
                    p.maxThreadsDim[2]);
        std::printf("  Max grid dimensions         %d x %d x %d\n", p.maxGridSize[0], p.maxGridSize[1],
                    p.maxGridSize[2]);
        std::printf("  Shared memory per block     %zu bytes\n", p.sharedMemPerBlock);
        std::printf("  Registers per block         %d\n", p.regsPerBlock);
        std::printf("  L2 cache                    %d bytes\n", p.l2CacheSize);
        std::printf("  Memory bus width            %d bits\n", p.memoryBusWidth);
        std::printf("  PCI bus/device              %d/%d\n", p.pciBusID, p.pciDeviceID);

        if (cur != d || major != p.major || minor != p.minor || sms != p.multiProcessorCount ||
            warp != p.warpSize || max_threads != p.maxThreadsPerBlock || p.totalGlobalMem == 0 ||
            total_b != p.totalGlobalMem || free_b > total_b || p.name[0] == '\0') {
            std::fprintf(stderr, "device %d: the properties and attributes disagree\n", d);
            bad++;
        }
    }
    // A device that does not exist is refused.
    cudaDeviceProp none;
    if (cudaGetDeviceProperties(&none, count) != cudaErrorInvalidDevice) {
        std::fprintf(stderr, "device %d (past the last) was not refused\n", count);
        bad++;
    }
    cudaGetLastError();
    std::printf("%s\n", bad ? "FAIL" : "PASS");
    return bad ? 1 : 0;
}
