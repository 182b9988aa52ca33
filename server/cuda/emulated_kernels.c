/*
 * The kernels of examples/cuda/ (*.cu) for the cuda-emulated backend, each
 * a C function computing what the .cu kernel computes, over the same grid.
 *
 * A kernel first works out which elements the launch touches (threads
 * beyond the grid, or beyond n, do nothing, as in the .cu), then
 * translates exactly those ranges through rgpu__cu_emu_ptr: a range outside
 * the session's allocations is CUDA_ERROR_ILLEGAL_ADDRESS, as the GPU's
 * MMU would make it, and nothing is written.
 *
 * To add a kernel: write its C function and a row in rgpu_cu_emu_kernels
 * with its name as the fatbinary has it and its parameters' sizes.
 */
#include <string.h>

#include "emulated.h"

/* Multiply-adds one emulated launch may cost (a few seconds of one core):
 * past it the launch fails as a GPU's watchdog would end it
 * (CUDA_ERROR_LAUNCH_TIMEOUT), so a session's thread, and its teardown,
 * never wait for hours. The kernels linear in their data are bounded by
 * the emulated device's memory already. */
#define RGPU_CU_EMU_MAX_WORK (1ull << 33)

/* Threads in the launch along x (blocks times threads per block). */
static uint64_t rgpu_cu_emu_threads_x(const rgpu_cu_emu_launch_t *l)
{
    return (uint64_t)l->grid[0] * l->block[0];
}

static uint64_t rgpu_cu_emu_min(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* vector_add(const float *a, const float *b, float *c, int n):
 * c[i] = a[i] + b[i] for i < n, one element per thread along x. Only the
 * first y/z slice of the grid and block reaches distinct elements; the
 * others compute the same ones again. */
static int rgpu_cu_emu_vector_add(const rgpu_cu_emu_launch_t *l)
{
    uint64_t da, db, dc, count;
    int32_t n;
    const float *a, *b;
    float *c;

    rgpu__cu_emu_param(l, 0, &da, 8);
    rgpu__cu_emu_param(l, 1, &db, 8);
    rgpu__cu_emu_param(l, 2, &dc, 8);
    rgpu__cu_emu_param(l, 3, &n, 4);
    if (n <= 0)
        return RGPU_CU_SUCCESS;
    count = rgpu_cu_emu_min((uint64_t)n, rgpu_cu_emu_threads_x(l));
    a = rgpu__cu_emu_ptr(l->ctx, da, count * sizeof(float));
    b = rgpu__cu_emu_ptr(l->ctx, db, count * sizeof(float));
    c = rgpu__cu_emu_ptr(l->ctx, dc, count * sizeof(float));
    if (!a || !b || !c)
        return RGPU_CU_ILLEGAL_ADDRESS;
    for (uint64_t i = 0; i < count; i++)
        c[i] = a[i] + b[i];
    return RGPU_CU_SUCCESS;
}

/* matmul(const float *A, size_t pitch_a, const float *B, float *C, int n):
 * C = A B for n x n matrices, A's rows pitch_a bytes apart, B and C dense;
 * thread (x, y) computes C[y][x]. */
static int rgpu_cu_emu_matmul(const rgpu_cu_emu_launch_t *l)
{
    uint64_t da, pitch, db, dc, cols, rows, span_a;
    int32_t n;
    const float *b;
    float *c;

    rgpu__cu_emu_param(l, 0, &da, 8);
    rgpu__cu_emu_param(l, 1, &pitch, 8);
    rgpu__cu_emu_param(l, 2, &db, 8);
    rgpu__cu_emu_param(l, 3, &dc, 8);
    rgpu__cu_emu_param(l, 4, &n, 4);
    if (n <= 0)
        return RGPU_CU_SUCCESS;
    cols = rgpu_cu_emu_min((uint64_t)n, rgpu_cu_emu_threads_x(l));
    rows = rgpu_cu_emu_min((uint64_t)n, (uint64_t)l->grid[1] * l->block[1]);
    if (!cols || !rows)
        return RGPU_CU_SUCCESS;
    if (rows * cols > RGPU_CU_EMU_MAX_WORK / (uint64_t)n)
        return RGPU_CU_LAUNCH_TIMEOUT;
    /* Row y of A is read whole (n floats) by every thread of that row. */
    if (__builtin_mul_overflow(pitch, rows - 1, &span_a) ||
        __builtin_add_overflow(span_a, (uint64_t)n * sizeof(float), &span_a))
        return RGPU_CU_ILLEGAL_ADDRESS;
    /* B is read in columns x < cols of all n rows; C written in rows < rows. */
    /* n < 2^31, so these products stay below 2^64. */
    b = rgpu__cu_emu_ptr(l->ctx, db, ((uint64_t)(n - 1) * (uint64_t)n + cols) * sizeof(float));
    c = rgpu__cu_emu_ptr(l->ctx, dc, ((rows - 1) * (uint64_t)n + cols) * sizeof(float));
    if (!b || !c || !rgpu__cu_emu_ptr(l->ctx, da, span_a))
        return RGPU_CU_ILLEGAL_ADDRESS;
    for (uint64_t y = 0; y < rows; y++) {
        const float *row = rgpu__cu_emu_ptr(l->ctx, da + y * pitch, (uint64_t)n * sizeof(float));

        for (uint64_t x = 0; x < cols; x++) {
            float sum = 0.0f;

            for (int32_t k = 0; k < n; k++)
                sum += row[k] * b[(uint64_t)k * (uint64_t)n + x];
            c[y * (uint64_t)n + x] = sum;
        }
    }
    return RGPU_CU_SUCCESS;
}

/* saxpy(int n, float a, const float *x, float *y): y[i] = a * x[i] + y[i]. */
static int rgpu_cu_emu_saxpy(const rgpu_cu_emu_launch_t *l)
{
    uint64_t dx, dy, count;
    int32_t n;
    float a;
    const float *x;
    float *y;

    rgpu__cu_emu_param(l, 0, &n, 4);
    rgpu__cu_emu_param(l, 1, &a, 4);
    rgpu__cu_emu_param(l, 2, &dx, 8);
    rgpu__cu_emu_param(l, 3, &dy, 8);
    if (n <= 0)
        return RGPU_CU_SUCCESS;
    count = rgpu_cu_emu_min((uint64_t)n, rgpu_cu_emu_threads_x(l));
    x = rgpu__cu_emu_ptr(l->ctx, dx, count * sizeof(float));
    y = rgpu__cu_emu_ptr(l->ctx, dy, count * sizeof(float));
    if (!x || !y)
        return RGPU_CU_ILLEGAL_ADDRESS;
    for (uint64_t i = 0; i < count; i++)
        y[i] = a * x[i] + y[i];
    return RGPU_CU_SUCCESS;
}

/* affine(float *v, struct { float scale, offset; } t, int n):
 * v[i] = v[i] * t.scale + t.offset. */
static int rgpu_cu_emu_affine(const rgpu_cu_emu_launch_t *l)
{
    uint64_t dv, count;
    float t[2];
    int32_t n;
    float *v;

    rgpu__cu_emu_param(l, 0, &dv, 8);
    rgpu__cu_emu_param(l, 1, t, 8);
    rgpu__cu_emu_param(l, 2, &n, 4);
    if (n <= 0)
        return RGPU_CU_SUCCESS;
    count = rgpu_cu_emu_min((uint64_t)n, rgpu_cu_emu_threads_x(l));
    v = rgpu__cu_emu_ptr(l->ctx, dv, count * sizeof(float));
    if (!v)
        return RGPU_CU_ILLEGAL_ADDRESS;
    for (uint64_t i = 0; i < count; i++)
        v[i] = v[i] * t[0] + t[1];
    return RGPU_CU_SUCCESS;
}

/* Parameter sizes: a struct of two floats is 8 bytes with 4-byte
 * alignment, which the layout in backend_cuda_emulated.c (aligned to
 * min(size, 8)) would put at an 8-byte boundary; after a pointer that is
 * where nvcc puts it too. */
static const rgpu_cu_emu_kernel_t rgpu_cu_emu_kernels[] = {
    {"vector_add", 4, {8, 8, 8, 4}, rgpu_cu_emu_vector_add},
    {"matmul", 5, {8, 8, 8, 8, 4}, rgpu_cu_emu_matmul},
    {"saxpy", 4, {4, 4, 8, 8}, rgpu_cu_emu_saxpy},
    {"affine", 3, {8, 8, 4}, rgpu_cu_emu_affine},
};

const rgpu_cu_emu_kernel_t *rgpu__cu_emu_kernel_find(const char *name)
{
    for (size_t i = 0; i < sizeof(rgpu_cu_emu_kernels) / sizeof(rgpu_cu_emu_kernels[0]); i++)
        if (strcmp(rgpu_cu_emu_kernels[i].name, name) == 0)
            return &rgpu_cu_emu_kernels[i];
    return NULL;
}
