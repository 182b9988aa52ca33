/*
 * What every CUDA example shares: a check that names the failing call and
 * exits with FAIL, so a test reading the output sees why.
 */
#ifndef RGPU_EXAMPLES_CUDA_CHECK_H
#define RGPU_EXAMPLES_CUDA_CHECK_H

#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

#define CHECK(call)                                                                     \
    do {                                                                                \
        cudaError_t err_ = (call);                                                      \
        if (err_ != cudaSuccess) {                                                      \
            std::fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #call,     \
                         cudaGetErrorString(err_), cudaGetErrorName(err_));             \
            std::printf("FAIL\n");                                                      \
            std::exit(1);                                                               \
        }                                                                               \
    } while (0)

#endif
