/*
 * The fatbinaries nvcc embeds in a program, read for what the runtime must
 * know without the program's source: which kernels there are and where each
 * of their parameters lies in the parameter buffer a launch passes.
 *
 * A fatbinary is a container of entries, each a cubin (an ELF for one SM
 * architecture) or PTX, either possibly compressed (zstd or LZ4; nvcc 13
 * compresses by default). A cubin's ".nv.info.<kernel>" section lists the
 * kernel's parameters (EIATTR_KPARAM_INFO: ordinal, offset, size) and the size
 * of its parameter bank (EIATTR_CBANK_PARAM_SIZE). A PTX-only image has no
 * cubin: there the parameters are read from the ".entry" declaration, laid
 * out with PTX's alignment rules, as the driver lays them out when it
 * compiles the PTX.
 *
 * The bytes come from the program's own memory (the image nvcc generated),
 * but they are still read with every offset and size checked against the
 * container's bounds: a damaged binary gets a reason, never a crash.
 */
#ifndef RGPU_CUDA_FATBIN_H
#define RGPU_CUDA_FATBIN_H

#include <stddef.h>
#include <stdint.h>

/* The most parameters a kernel may have that this reader accepts: CUDA
 * allows 32764 bytes of parameters, so at most that many one-byte ones. */
#define RGPU_FATBIN_MAX_PARAMS 32764u
#define RGPU_FATBIN_MAX_PARAM_BYTES 32764u

typedef struct rgpu_fatbin_kernel {
    char *name;                 /* as in the binary (mangled unless extern "C") */
    uint32_t num_params;
    uint32_t *offsets;          /* num_params each, by ordinal */
    uint32_t *sizes;
    uint32_t param_bytes;       /* the parameter buffer's length */
    int from_ptx;               /* the layout was read from PTX, not a cubin */
    int from_cubin;             /* a cubin has the kernel: its layout is authoritative */
} rgpu_fatbin_kernel_t;

typedef struct rgpu_fatbin {
    size_t num_kernels;
    rgpu_fatbin_kernel_t *kernels;
    unsigned num_cubins;        /* ELF entries */
    unsigned num_ptx;           /* PTX entries */
    unsigned num_compressed;    /* entries that were compressed */
} rgpu_fatbin_t;

/* Finds the fatbinary container that __cudaRegisterFatBinary's argument
 * points at (nvcc's wrapper, magic 0x466243b1, or a bare container, magic
 * 0xba55ed50) and its size in bytes. Returns 0, or -1 with a sentence in why. */
int rgpu_fatbin_locate(const void *fat_cubin, const uint8_t **data_p, size_t *size_p, char *why,
                       size_t why_cap);

/* Reads the kernels of a fatbinary container of size bytes. On success
 * *fatbin_p owns everything (free with rgpu_fatbin_free) and 0 is returned;
 * else -1 with a sentence in why. */
int rgpu_fatbin_parse(const uint8_t *data, size_t size, rgpu_fatbin_t **fatbin_p, char *why,
                      size_t why_cap);

/* The kernel of that name, or NULL. */
const rgpu_fatbin_kernel_t *rgpu_fatbin_find(const rgpu_fatbin_t *fatbin, const char *name);

void rgpu_fatbin_free(rgpu_fatbin_t *fatbin);

/* Packs a launch's arguments (args[i] points at parameter i's value, as
 * cudaLaunchKernel takes them) into the kernel's parameter buffer buf of
 * cap bytes: each value copied at its offset, padding zeroed. Returns the
 * buffer's length, or -1 when args is NULL for a kernel with parameters or
 * the buffer is too small. */
long rgpu_fatbin_pack_params(const rgpu_fatbin_kernel_t *kernel, void *const *args, uint8_t *buf, size_t cap);

/* Reads the parameter layout of every ".entry" of a PTX text of len bytes
 * into fatbin (kernels already there are kept). Returns 0 or -1 with why. */
int rgpu_fatbin_parse_ptx(rgpu_fatbin_t *fatbin, const char *ptx, size_t len, char *why, size_t why_cap);

#endif
