// Matrix multiply: C = A * B for square n x n row-major float matrices,
// checked against a host computation. A is uploaded with cudaMemcpy2D into
// pitched memory (cudaMallocPitch), so the 2D paths are exercised too.
// Kernel (for the emulated backend): matmul(const float *A, size_t pitch_a,
// const float *B, float *C, int n); pitch_a in bytes; thread (x, y) of the
// grid computes C[y][x].
#include <cmath>
#include <vector>

#include "check.h"

extern "C" __global__ void matmul(const float *A, size_t pitch_a, const float *B, float *C, int n)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x;
    int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= n || y >= n)
        return;
    const float *row = (const float *)((const char *)A + (size_t)y * pitch_a);
    float sum = 0.0f;
    for (int k = 0; k < n; k++)
        sum += row[k] * B[(size_t)k * n + x];
    C[(size_t)y * n + x] = sum;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? std::atoi(argv[1]) : 256;
    if (n <= 0 || n > 8192) {
        std::fprintf(stderr, "usage: matmul [N in 1..8192]\n");
        return 2;
    }
    size_t elems = (size_t)n * n;
    std::vector<float> a(elems), b(elems), c(elems, -1.0f), want(elems);
    for (size_t i = 0; i < elems; i++) {
        a[i] = (float)((i * 7) % 13) - 6.0f;
        b[i] = (float)((i * 5) % 11) - 5.0f;
    }
    for (int y = 0; y < n; y++)
        for (int x = 0; x < n; x++) {
            double s = 0.0;
            for (int k = 0; k < n; k++)
                s += (double)a[(size_t)y * n + k] * b[(size_t)k * n + x];
            want[(size_t)y * n + x] = (float)s;
        }

    float *da, *db, *dc;
    size_t pitch_a = 0;
    size_t row = (size_t)n * sizeof(float);
    CHECK(cudaMallocPitch(&da, &pitch_a, row, n));
    CHECK(cudaMalloc(&db, elems * sizeof(float)));
    CHECK(cudaMalloc(&dc, elems * sizeof(float)));
    CHECK(cudaMemcpy2D(da, pitch_a, a.data(), row, row, n, cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(db, b.data(), elems * sizeof(float), cudaMemcpyHostToDevice));

    dim3 block(16, 16);
    dim3 grid((n + 15) / 16, (n + 15) / 16);
    matmul<<<grid, block>>>(da, pitch_a, db, dc, n);
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    CHECK(cudaMemcpy(c.data(), dc, elems * sizeof(float), cudaMemcpyDeviceToHost));

    // Read A back through the 2D path as well: it must be what was sent.
    std::vector<float> a_back(elems, 0.0f);
    CHECK(cudaMemcpy2D(a_back.data(), row, da, pitch_a, row, n, cudaMemcpyDeviceToHost));

    int bad = 0;
    for (size_t i = 0; i < elems; i++) {
        if (std::fabs(c[i] - want[i]) > 1e-3f * (std::fabs(want[i]) + 1.0f) || a_back[i] != a[i]) {
            if (bad < 5)
                std::fprintf(stderr, "element %zu: C %g (expected %g), A read back %g (sent %g)\n",
                             i, c[i], want[i], a_back[i], a[i]);
            bad++;
        }
    }
    CHECK(cudaFree(da));
    CHECK(cudaFree(db));
    CHECK(cudaFree(dc));
    std::printf("matmul: %dx%d, pitch %zu bytes, %d wrong\n", n, n, pitch_a, bad);
    std::printf("%s\n", bad ? "FAIL" : "PASS");
    return bad ? 1 : 0;
}
