/*
 * What the generated cudart_gen.c (gen_stubs.py) shares with the rest of the
 * runtime. It must not include CUDA's headers: its stubs are declared
 * without the parameters CUDA's prototypes give them.
 */
#ifndef RGPU_CUDA_GEN_SUPPORT_H
#define RGPU_CUDA_GEN_SUPPORT_H

#include <stddef.h>

/* Functions of NVIDIA's runtime that this library defines. */
#define RGPU_CUDA_EXPORT __attribute__((visibility("default")))

typedef struct rgpu__cu_error_desc {
    int code;
    const char *name;
    const char *desc;
} rgpu__cu_error_desc_t;

/* Generated from the toolkit's driver_types.h, sorted by code. */
extern const rgpu__cu_error_desc_t rgpu__cu_errors[];
extern const size_t rgpu__cu_num_errors;

/* An unimplemented function's body (errors.c): names the function on
 * stderr the first time (*told) and returns cudaErrorNotSupported, which
 * also becomes the calling thread's last error. */
int rgpu__cu_stub(const char *name, int *told);

#endif
