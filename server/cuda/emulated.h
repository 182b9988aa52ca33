/*
 * The cuda-emulated backend's kernels: C implementations of the test
 * programs' kernels (examples/cuda/ (*.cu)), registered by the kernel's name
 * as the fatbinary has it (emulated_kernels.c).
 *
 * A kernel gets the launch (grid, block, the parameter buffer the client
 * packed) and reaches device memory only through rgpu__cu_emu_ptr, which
 * translates a device address range of its session into host memory after
 * checking that the whole range lies inside one allocation, as the GPU's
 * MMU would fault on anything else. A kernel computes the same results as
 * the .cu it stands for, for every launch shape the program may use.
 */
#ifndef RGPU_SERVER_CUDA_EMULATED_H
#define RGPU_SERVER_CUDA_EMULATED_H

#include <stddef.h>
#include <stdint.h>

#include "cuda_device.h"

typedef struct {
    rgpu_cu_ctx_t *ctx;
    uint32_t grid[3];
    uint32_t block[3];
    const uint8_t *params;
    size_t params_len;
    const uint32_t *offsets;    /* the kernel's parameter offsets */
} rgpu_cu_emu_launch_t;

typedef struct {
    const char *name;           /* as in the fatbinary (extern "C" or mangled) */
    uint32_t n_params;
    uint32_t param_sizes[16];   /* offsets follow the C ABI: each aligned to its size */
    /* Returns a CUresult: RGPU_CU_ILLEGAL_ADDRESS when a range is outside
     * the session's memory. */
    int (*run)(const rgpu_cu_emu_launch_t *launch);
} rgpu_cu_emu_kernel_t;

/* The kernel named name, or NULL. */
const rgpu_cu_emu_kernel_t *rgpu__cu_emu_kernel_find(const char *name);

/* Host memory behind [addr, addr + len) of the session's device memory, or
 * NULL when the range is not inside one allocation (or len is 0). */
void *rgpu__cu_emu_ptr(rgpu_cu_ctx_t *ctx, uint64_t addr, uint64_t len);

/* Reads the parameter i of size bytes from the launch's buffer into out. */
void rgpu__cu_emu_param(const rgpu_cu_emu_launch_t *launch, uint32_t i, void *out, size_t size);

#endif
