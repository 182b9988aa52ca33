// Kernels whose parameter layouts tests/unit/cuda/test_fatbin.c checks, as
// nvcc lays them out: scalars of every size, a pointer, a 16-byte aligned
// vector, structs passed by value, no parameters at all, and a C++ (mangled)
// name. Compiled to fatbinaries only (-fatbin), never run.
#include <cstdint>

struct pair_t {
    char tag;
    double value;
};

struct big_t {
    int words[40];
};

extern "C" __global__ void k_scalars(char c, short s, int i, long long ll, float f, double d)
{
    if (c == 0 && s == 0 && i == 0 && ll == 0 && f == 0.0f && d == 0.0)
        asm volatile("trap;");
}

extern "C" __global__ void k_mixed(char c, double d, short s, int4 v, float *p, pair_t pair)
{
    if (p)
        p[0] = (float)(c + d + s + v.x + v.w + pair.tag + pair.value);
}

extern "C" __global__ void k_none()
{
}

extern "C" __global__ void k_big(big_t b, int n, unsigned char last)
{
    if (n > 0 && b.words[n % 40] == last)
        asm volatile("trap;");
}

namespace rgpu_test {
__global__ void scaled(float *x, float a)
{
    x[threadIdx.x] *= a;
}
}
