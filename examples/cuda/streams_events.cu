// Streams and events: the data is cut into chunks, each chunk's upload,
// kernels and download are queued on one of several streams from pinned
// memory, so copies and kernels of different chunks may overlap. Events time
// the whole and order a last step across streams (cudaStreamWaitEvent).
// Everything is checked on the host.
// Kernels (for the emulated backend), one element per thread:
//   saxpy(int n, float a, const float *x, float *y): y[i] = a * x[i] + y[i]
//   affine(float *v, struct affine_t t, int n): v[i] = v[i] * t.scale + t.offset
//     (struct affine_t { float scale; float offset; }, passed by value)
#include <cmath>

#include "check.h"

struct affine_t {
    float scale;
    float offset;
};

extern "C" __global__ void saxpy(int n, float a, const float *x, float *y)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        y[i] = a * x[i] + y[i];
}

extern "C" __global__ void affine(float *v, affine_t t, int n)
{
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        v[i] = v[i] * t.scale + t.offset;
}

// Runs in stream order after the download: the data must be there.
struct landed_t {
    const float *y;
    int n;
    int ok;
};

static void check_landed(void *arg)
{
    landed_t *l = (landed_t *)arg;
    float want = (2.0f * (float)((l->n - 1) % 1000)) * 0.5f + 3.0f;

    l->ok = l->y[l->n - 1] == want ? 1 : -1;
}

int main(int argc, char **argv)
{
    const int nstreams = 4;
    int n = argc > 1 ? std::atoi(argv[1]) : 1 << 22;
    if (n <= 0 || n % nstreams) {
        std::fprintf(stderr, "usage: streams_events [N > 0, a multiple of %d]\n", nstreams);
        return 2;
    }
    int chunk = n / nstreams;
    size_t bytes = (size_t)n * sizeof(float);
    size_t chunk_bytes = (size_t)chunk * sizeof(float);

    float *hx, *hy;
    CHECK(cudaMallocHost(&hx, bytes));
    CHECK(cudaHostAlloc(&hy, bytes, cudaHostAllocDefault));
    for (int i = 0; i < n; i++) {
        hx[i] = (float)(i % 1000);
        hy[i] = 1.0f;
    }
    float *dx, *dy;
    CHECK(cudaMalloc(&dx, bytes));
    CHECK(cudaMalloc(&dy, bytes));

    cudaStream_t streams[nstreams];
    for (int s = 0; s < nstreams; s++)
        CHECK(cudaStreamCreateWithFlags(&streams[s], s % 2 ? cudaStreamNonBlocking : cudaStreamDefault));
    cudaEvent_t start, stop, uploaded;
    CHECK(cudaEventCreate(&start));
    CHECK(cudaEventCreate(&stop));
    CHECK(cudaEventCreateWithFlags(&uploaded, cudaEventDisableTiming));

    CHECK(cudaEventRecord(start, streams[0]));
    int block = 256;
    int grid = (chunk + block - 1) / block;
    for (int s = 0; s < nstreams; s++) {
        size_t off = (size_t)s * chunk;
        CHECK(cudaMemcpyAsync(dx + off, hx + off, chunk_bytes, cudaMemcpyHostToDevice, streams[s]));
        // The device's y is zeroed here, not uploaded (the host's y holds
        // 1.0): a memset that did not happen shows in the result.
        CHECK(cudaMemsetAsync(dy + off, 0, chunk_bytes, streams[s]));
        saxpy<<<grid, block, 0, streams[s]>>>(chunk, 2.0f, dx + off, dy + off);
        CHECK(cudaGetLastError());
    }
    // The last stream waits for every other one before its affine pass over
    // the whole array.
    for (int s = 0; s < nstreams - 1; s++) {
        CHECK(cudaEventRecord(uploaded, streams[s]));
        CHECK(cudaStreamWaitEvent(streams[nstreams - 1], uploaded, 0));
    }
    affine_t t = {0.5f, 3.0f};
    affine<<<(n + block - 1) / block, block, 0, streams[nstreams - 1]>>>(dy, t, n);
    CHECK(cudaGetLastError());
    CHECK(cudaMemcpyAsync(hy, dy, bytes, cudaMemcpyDeviceToHost, streams[nstreams - 1]));
    landed_t landed = {hy, n, 0};
    CHECK(cudaLaunchHostFunc(streams[nstreams - 1], check_landed, &landed));
    CHECK(cudaEventRecord(stop, streams[nstreams - 1]));

    cudaError_t q = cudaEventQuery(stop);
    if (q != cudaSuccess && q != cudaErrorNotReady)
        CHECK(q);
    CHECK(cudaEventSynchronize(stop));
    CHECK(cudaEventQuery(stop));
    float ms = -1.0f;
    CHECK(cudaEventElapsedTime(&ms, start, stop));
    CHECK(cudaDeviceSynchronize());
    for (int s = 0; s < nstreams; s++)
        CHECK(cudaStreamQuery(streams[s]));

    int bad = 0;
    for (int i = 0; i < n; i++) {
        float want = (2.0f * (float)(i % 1000)) * 0.5f + 3.0f;
        if (std::fabs(hy[i] - want) > 1e-4f * want) {
            if (bad < 5)
                std::fprintf(stderr, "y[%d] = %g, expected %g\n", i, hy[i], want);
            bad++;
        }
    }
    if (landed.ok != 1) {
        std::fprintf(stderr, "the host function %s\n",
                     landed.ok ? "ran before the download's data arrived" : "never ran");
        bad++;
    }
    // A stream-ordered allocation: allocated, set and read back on one stream, freed on it.
    unsigned char *scratch, back[64];
    CHECK(cudaMallocAsync((void **)&scratch, sizeof(back), streams[1]));
    CHECK(cudaMemsetAsync(scratch, 0x5a, sizeof(back), streams[1]));
    CHECK(cudaMemcpyAsync(back, scratch, sizeof(back), cudaMemcpyDeviceToHost, streams[1]));
    CHECK(cudaFreeAsync(scratch, streams[1]));
    CHECK(cudaStreamSynchronize(streams[1]));
    for (size_t i = 0; i < sizeof(back); i++) {
        if (back[i] != 0x5a) {
            std::fprintf(stderr, "stream-ordered allocation: byte %zu is 0x%02x, expected 0x5a\n", i, back[i]);
            bad++;
            break;
        }
    }

    // Timing without a timing event must be refused.
    float unused;
    cudaError_t e = cudaEventElapsedTime(&unused, start, uploaded);
    if (e != cudaErrorInvalidResourceHandle) {
        std::fprintf(stderr, "elapsed time against a cudaEventDisableTiming event: %s, expected %s\n",
                     cudaGetErrorName(e), cudaGetErrorName(cudaErrorInvalidResourceHandle));
        bad++;
    }
    cudaGetLastError();

    for (int s = 0; s < nstreams; s++)
        CHECK(cudaStreamDestroy(streams[s]));
    CHECK(cudaEventDestroy(start));
    CHECK(cudaEventDestroy(stop));
    CHECK(cudaEventDestroy(uploaded));
    CHECK(cudaFree(dx));
    CHECK(cudaFree(dy));
    CHECK(cudaFreeHost(hx));
    CHECK(cudaFreeHost(hy));
    std::printf("streams_events: %d elements on %d streams in %.3f ms, %d wrong\n", n, nstreams, ms, bad);
    std::printf("%s\n", bad ? "FAIL" : "PASS");
    return bad ? 1 : 0;
}
