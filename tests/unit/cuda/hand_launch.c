/*
 * A CUDA program written in C as nvcc's generated host code is: it registers
 * an nvcc-built fatbinary (examples/cuda/vector_add.cu's) and its kernel
 * with __cudaRegisterFatBinary and __cudaRegisterFunction, launches it with
 * cudaLaunchKernel and checks the result on the host. Built by any C
 * compiler, it runs where nvcc cannot build programs: the aarch64 client
 * under qemu (the toolkit's nvcc makes x86-64 host code only), against the
 * x86-64 rgpu-server's cuda-emulated backend. Prints PASS or FAIL.
 *   RGPU_SERVERS=HOST:PORT LD_LIBRARY_PATH=<build>/client/cuda hand_launch [N]
 */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* nvcc's registration entry points (crt/host_runtime.h declares them for C++ only). */
void **__cudaRegisterFatBinary(void *fatCubin);
void __cudaRegisterFatBinaryEnd(void **fatCubinHandle);
void __cudaRegisterFunction(void **fatCubinHandle, const char *hostFun, char *deviceFun, const char *deviceName,
                            int thread_limit, uint3 *tid, uint3 *bid, dim3 *bDim, dim3 *gDim, int *wSize);

extern const unsigned char rgpu_vector_add_fatbin[];

/* The kernel's host-side handle: any address unique to it, as nvcc's stub. */
static void vector_add(void)
{
}

#define CHECK(call)                                                                                 \
    do {                                                                                            \
        cudaError_t err_ = (call);                                                                  \
        if (err_ != cudaSuccess) {                                                                  \
            fprintf(stderr, "%s: %s\nFAIL\n", #call, cudaGetErrorString(err_));                     \
            return 1;                                                                               \
        }                                                                                           \
    } while (0)

int main(int argc, char **argv)
{
    struct {
        int magic;
        int version;
        const void *data;
        void *filename_or_fatbins;
    } wrapper = {0x466243b1, 1, rgpu_vector_add_fatbin, NULL};
    int n = argc > 1 ? atoi(argv[1]) : 100000, bad = 0;
    float *a, *b, *c, *da, *db, *dc;
    void **module;
    dim3 grid, block = {256, 1, 1};
    void *args[4];

    if (n <= 0)
        return 2;
    module = __cudaRegisterFatBinary(&wrapper);
    __cudaRegisterFunction(module, (const char *)vector_add, "vector_add", "vector_add", -1, NULL, NULL, NULL,
                           NULL, NULL);
    __cudaRegisterFatBinaryEnd(module);

    a = malloc(n * sizeof(float));
    b = malloc(n * sizeof(float));
    c = malloc(n * sizeof(float));
    if (!a || !b || !c)
        return 1;
    for (int i = 0; i < n; i++) {
        a[i] = (float)i;
        b[i] = 2.0f * (float)i;
    }
    CHECK(cudaMalloc((void **)&da, n * sizeof(float)));
    CHECK(cudaMalloc((void **)&db, n * sizeof(float)));
    CHECK(cudaMalloc((void **)&dc, n * sizeof(float)));
    CHECK(cudaMemcpy(da, a, n * sizeof(float), cudaMemcpyHostToDevice));
    CHECK(cudaMemcpy(db, b, n * sizeof(float), cudaMemcpyHostToDevice));
    grid = (dim3){(unsigned)(n + 255) / 256, 1, 1};
    args[0] = &da;
    args[1] = &db;
    args[2] = &dc;
    args[3] = &n;
    CHECK(cudaLaunchKernel((const void *)vector_add, grid, block, args, 0, NULL));
    CHECK(cudaMemcpy(c, dc, n * sizeof(float), cudaMemcpyDeviceToHost));
    for (int i = 0; i < n; i++)
        bad += fabsf(c[i] - 3.0f * (float)i) > 1e-3f * (float)i;
    /* The calls that ask the server about the kernel or set its attributes. */
    {
        struct cudaFuncAttributes attr;
        int blocks = 0;

        CHECK(cudaFuncGetAttributes(&attr, (const void *)vector_add));
        CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, (const void *)vector_add, 256, 0));
        CHECK(cudaFuncSetAttribute((const void *)vector_add, cudaFuncAttributeMaxDynamicSharedMemorySize, 0));
        if (attr.maxThreadsPerBlock < 256 || attr.numRegs <= 0 || blocks < 1) {
            fprintf(stderr, "vector_add: %d threads a block at most, %d registers, %d blocks of 256 a "
                    "multiprocessor\nFAIL\n", attr.maxThreadsPerBlock, attr.numRegs, blocks);
            return 1;
        }
        if (cudaFuncGetAttributes(&attr, (const void *)main) != cudaErrorInvalidDeviceFunction ||
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, (const void *)main, 256, 0) !=
                cudaErrorInvalidDeviceFunction) {
            fprintf(stderr, "a host function not registered as a kernel was taken for one\nFAIL\n");
            return 1;
        }
        cudaGetLastError();
    }
    /* Many allocations at once, past the client's first table of them: each keeps its bytes. */
    {
        enum { N_SMALL = 200 };
        static void *small[N_SMALL];
        unsigned char got[64];

        for (int i = 0; i < N_SMALL; i++) {
            CHECK(cudaMalloc(&small[i], sizeof(got)));
            CHECK(cudaMemset(small[i], i, sizeof(got)));
        }
        for (int i = 0; i < N_SMALL; i++) {
            CHECK(cudaMemcpy(got, small[i], sizeof(got), cudaMemcpyDeviceToHost));
            for (size_t j = 0; j < sizeof(got); j++)
                bad += got[j] != (unsigned char)i;
            CHECK(cudaFree(small[i]));
        }
    }
    CHECK(cudaFree(da));
    CHECK(cudaFree(db));
    CHECK(cudaFree(dc));
    free(a);
    free(b);
    free(c);
    printf("hand_launch: %d elements, %d wrong\n%s\n", n, bad, bad ? "FAIL" : "PASS");
    return bad != 0;
}
