/*
 * The fatbinary reader (client/cuda/fatbin.h) on real nvcc output: the
 * fatbinaries of kernels.cu, built by CMake with the toolkit's nvcc
 * uncompressed, zstd- and LZ4-compressed, PTX only and for two
 * architectures. The layouts it reads must be the ones the C ABI gives a
 * struct of the same members, which is how CUDA lays out parameters; then
 * launch parameters packed with them, and damaged images refused.
 */
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fatbin.h"

static uint8_t *read_file(const char *name, size_t *len)
{
    char path[512];
    FILE *f;
    uint8_t *buf;
    long n;

    snprintf(path, sizeof(path), "%s/kernels_%s.fatbin", RGPU_TEST_FATBIN_DIR, name);
    f = fopen(path, "rb");
    cr_assert(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n);
    cr_assert(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static rgpu_fatbin_t *parse(const char *name)
{
    size_t len, size;
    uint8_t *img = read_file(name, &len);
    const uint8_t *data;
    rgpu_fatbin_t *fb = NULL;
    char why[256] = "";

    cr_assert_eq(rgpu_fatbin_locate(img, &data, &size, why, sizeof(why)), 0, "%s: %s", name, why);
    cr_assert_eq(data, img);
    cr_assert_eq(size, len, "%s: the container's size is the file's", name);
    cr_assert_eq(rgpu_fatbin_parse(data, size, &fb, why, sizeof(why)), 0, "%s: %s", name, why);
    free(img);
    return fb;
}

/* The parameters of each kernel as a C struct of the same members lays them out. */
struct scalars {
    char c;
    short s;
    int i;
    long long ll;
    float f;
    double d;
};
struct pair {
    char tag;
    double value;
};
struct mixed {
    char c;
    double d;
    short s;
    _Alignas(16) int v[4];
    float *p;
    struct pair pair;
};
#define MIXED_BYTES (offsetof(struct mixed, pair) + sizeof(struct pair))
struct big {
    int words[40];
    int n;
    unsigned char last;
};

static void expect(const rgpu_fatbin_t *fb, const char *variant, const char *kernel, const uint32_t *offsets,
                   const uint32_t *sizes, uint32_t n, uint32_t bytes)
{
    const rgpu_fatbin_kernel_t *k = rgpu_fatbin_find(fb, kernel);

    cr_assert(k, "%s: kernel %s not found", variant, kernel);
    cr_assert_eq(k->num_params, n, "%s: %s has %u parameters, expected %u", variant, kernel, k->num_params, n);
    cr_assert_eq(k->param_bytes, bytes, "%s: %s's parameter buffer is %u bytes, expected %u", variant, kernel,
                 k->param_bytes, bytes);
    for (uint32_t i = 0; i < n; i++) {
        cr_assert_eq(k->offsets[i], offsets[i], "%s: %s parameter %u at %u, expected %u", variant, kernel, i,
                     k->offsets[i], offsets[i]);
        cr_assert_eq(k->sizes[i], sizes[i], "%s: %s parameter %u of %u bytes, expected %u", variant, kernel, i,
                     k->sizes[i], sizes[i]);
    }
}

static void expect_all_layouts(const char *variant)
{
    rgpu_fatbin_t *fb = parse(variant);
    const uint32_t so[] = {offsetof(struct scalars, c), offsetof(struct scalars, s), offsetof(struct scalars, i),
                           offsetof(struct scalars, ll), offsetof(struct scalars, f), offsetof(struct scalars, d)};
    const uint32_t ss[] = {1, 2, 4, 8, 4, 8};
    const uint32_t mo[] = {offsetof(struct mixed, c), offsetof(struct mixed, d), offsetof(struct mixed, s),
                           offsetof(struct mixed, v), offsetof(struct mixed, p), offsetof(struct mixed, pair)};
    const uint32_t ms[] = {1, 8, 2, 16, 8, sizeof(struct pair)};
    const uint32_t bo[] = {offsetof(struct big, words), offsetof(struct big, n), offsetof(struct big, last)};
    const uint32_t bs[] = {sizeof(int) * 40, 4, 1};
    const uint32_t co[] = {0, 8};
    const uint32_t cs[] = {8, 4};

    cr_assert_eq(fb->num_kernels, 5, "%s: %zu kernels, expected 5", variant, fb->num_kernels);
    expect(fb, variant, "k_scalars", so, ss, 6, sizeof(struct scalars));
    /* The buffer ends with the last parameter: no tail padding. */
    expect(fb, variant, "k_mixed", mo, ms, 6, MIXED_BYTES);
    expect(fb, variant, "k_big", bo, bs, 3, offsetof(struct big, last) + 1);
    expect(fb, variant, "k_none", NULL, NULL, 0, 0);
    /* C++ kernels keep their mangled names, as __cudaRegisterFunction gives them. */
    expect(fb, variant, "_ZN9rgpu_test6scaledEPff", co, cs, 2, 12);
    cr_assert_null(rgpu_fatbin_find(fb, "scaled"));
    rgpu_fatbin_free(fb);
}

Test(fatbin, uncompressed_cubin_and_ptx)
{
    rgpu_fatbin_t *fb = parse("none");

    cr_assert_eq(fb->num_cubins, 1);
    cr_assert_eq(fb->num_ptx, 1);
    cr_assert_eq(fb->num_compressed, 0);
    rgpu_fatbin_free(fb);
    expect_all_layouts("none");
}

Test(fatbin, nvcc_default_compression)
{
    rgpu_fatbin_t *fb = parse("default");

    cr_assert_eq(fb->num_cubins, 1);
    cr_assert_geq(fb->num_compressed, 1, "nvcc 13 compresses by default");
    rgpu_fatbin_free(fb);
    expect_all_layouts("default");
}

Test(fatbin, zstd_cubin_and_ptx)
{
    rgpu_fatbin_t *fb = parse("size");

    cr_assert_eq(fb->num_cubins, 1);
    cr_assert_eq(fb->num_compressed, 2, "--compress-mode=size compresses the cubin and the PTX");
    rgpu_fatbin_free(fb);
    expect_all_layouts("size");
}

Test(fatbin, lz4)
{
    rgpu_fatbin_t *fb = parse("speed");

    cr_assert_geq(fb->num_compressed, 1, "--compress-mode=speed compresses with LZ4");
    rgpu_fatbin_free(fb);
    expect_all_layouts("speed");
}

Test(fatbin, ptx_only)
{
    rgpu_fatbin_t *fb = parse("ptx");

    cr_assert_eq(fb->num_cubins, 0);
    cr_assert_eq(fb->num_ptx, 1);
    cr_assert(rgpu_fatbin_find(fb, "k_mixed")->from_ptx, "the layout can only come from the PTX");
    rgpu_fatbin_free(fb);
    expect_all_layouts("ptx");
    expect_all_layouts("ptx_none");
}

Test(fatbin, two_architectures)
{
    rgpu_fatbin_t *fb = parse("two_archs");

    cr_assert_eq(fb->num_cubins, 2);
    cr_assert_eq(fb->num_ptx, 0);
    rgpu_fatbin_free(fb);
    expect_all_layouts("two_archs");
}

Test(fatbin, wrapper)
{
    size_t len, size;
    uint8_t *img = read_file("default", &len);
    /* nvcc's __fatBinC_Wrapper_t, as the program passes it to __cudaRegisterFatBinary. */
    struct {
        int magic;
        int version;
        const void *data;
        void *unused;
    } wrapper = {0x466243b1, 1, img, NULL};
    const uint8_t *data;
    char why[256];

    cr_assert_eq(rgpu_fatbin_locate(&wrapper, &data, &size, why, sizeof(why)), 0, "%s", why);
    cr_assert_eq(data, img);
    cr_assert_eq(size, len);
    wrapper.version = 2;
    cr_assert_eq(rgpu_fatbin_locate(&wrapper, &data, &size, why, sizeof(why)), -1);
    cr_assert(strstr(why, "-rdc"), "relocatable device code is named: %s", why);
    wrapper.magic = 0x12345678;
    cr_assert_eq(rgpu_fatbin_locate(&wrapper, &data, &size, why, sizeof(why)), -1);
    cr_assert(strstr(why, "not an nvcc fatbinary"), "%s", why);
    free(img);
}

Test(fatbin, pack_params)
{
    rgpu_fatbin_t *fb = parse("size");
    const rgpu_fatbin_kernel_t *k = rgpu_fatbin_find(fb, "k_mixed");
    char c = 'x';
    double d = 3.25;
    short s = -7;
    int v[4] = {1, 2, 3, 4};
    float *p = (float *)(uintptr_t)0x7f0012345678ull;
    struct pair pair = {'q', -1.5};
    void *args[] = {&c, &d, &s, v, &p, &pair};
    struct mixed want;
    uint8_t buf[256];

    cr_assert(k);
    /* The buffer must equal the C struct of the same members, padding zeroed. */
    memset(&want, 0, sizeof(want));
    want.c = c;
    want.d = d;
    want.s = s;
    memcpy(want.v, v, sizeof(v));
    want.p = p;
    memcpy(&want.pair, &pair, sizeof(pair));
    memset(buf, 0xee, sizeof(buf));
    cr_assert_eq(rgpu_fatbin_pack_params(k, args, buf, sizeof(buf)), (long)MIXED_BYTES);
    cr_assert_eq(memcmp(buf, &want, offsetof(struct mixed, pair) + 1), 0);
    cr_assert_eq(memcmp(buf + offsetof(struct mixed, pair) + offsetof(struct pair, value), &pair.value, 8), 0);
    cr_assert_eq(buf[1], 0, "padding between parameters is zeroed");
    cr_assert_eq(buf[MIXED_BYTES], 0xee, "nothing written past the buffer's length");

    /* Refused: no argument array for a kernel with parameters, a buffer too small. */
    cr_assert_eq(rgpu_fatbin_pack_params(k, NULL, buf, sizeof(buf)), -1);
    cr_assert_eq(rgpu_fatbin_pack_params(k, args, buf, MIXED_BYTES - 1), -1);
    /* A kernel without parameters takes none, and NULL args. */
    cr_assert_eq(rgpu_fatbin_pack_params(rgpu_fatbin_find(fb, "k_none"), NULL, buf, sizeof(buf)), 0);
    rgpu_fatbin_free(fb);
}

/* Damaged images are refused with a reason, never read past their end (the
 * ASan build checks the latter). */
Test(fatbin, damaged)
{
    size_t len;
    uint8_t *img = read_file("size", &len);
    uint8_t *copy = malloc(len);
    rgpu_fatbin_t *fb;
    char why[256];

    cr_assert(copy);
    /* Every truncation: the container claims more than there is. */
    for (size_t cut = 0; cut < len; cut += 7) {
        uint8_t *t = malloc(cut ? cut : 1);

        memcpy(t, img, cut);
        cr_assert_eq(rgpu_fatbin_parse(t, cut, &fb, why, sizeof(why)), -1, "truncated at %zu parsed", cut);
        cr_assert(why[0]);
        free(t);
    }
    /* The first entry's header size pointing past the end. */
    memcpy(copy, img, len);
    copy[16 + 4] = 0xff;
    copy[16 + 5] = 0xff;
    cr_assert_eq(rgpu_fatbin_parse(copy, len, &fb, why, sizeof(why)), -1);
    cr_assert(strstr(why, "damaged"), "%s", why);
    /* A compressed payload whose bytes were changed. */
    memcpy(copy, img, len);
    for (size_t i = 16 + 64 + 8; i < 16 + 64 + 40; i++)
        copy[i] ^= 0x5a;
    cr_assert_eq(rgpu_fatbin_parse(copy, len, &fb, why, sizeof(why)), -1);
    cr_assert(strstr(why, "decompress"), "%s", why);
    /* An uncompressed size beyond any kernel image. */
    memcpy(copy, img, len);
    copy[16 + 56 + 5] = 0x7f;
    cr_assert_eq(rgpu_fatbin_parse(copy, len, &fb, why, sizeof(why)), -1);
    free(copy);
    free(img);
}

/* PTX the reader is given directly: alignment and arrays as the driver lays them out. */
Test(fatbin, ptx_text)
{
    const char *ptx = ".version 8.0\n.target sm_75\n"
                      ".visible .entry f(\n"
                      "\t.param .u8 f_param_0,\n"
                      "\t.param .align 16 .b8 f_param_1[32],\n"
                      "\t.param .u16 f_param_2,\n"
                      "\t.param .f64 f_param_3,\n"
                      "\t.param .u8 f_param_4,\n"
                      "\t.param .u64 .ptr .global .align 1 f_param_5\n"
                      ")\n{\n\tret;\n}\n"
                      ".visible .entry g\n{\n\tret;\n}\n";
    rgpu_fatbin_t fb = {0};
    char why[256];
    const rgpu_fatbin_kernel_t *f, *g;

    cr_assert_eq(rgpu_fatbin_parse_ptx(&fb, ptx, strlen(ptx), why, sizeof(why)), 0, "%s", why);
    f = rgpu_fatbin_find(&fb, "f");
    g = rgpu_fatbin_find(&fb, "g");
    cr_assert(f && g);
    cr_assert_eq(f->num_params, 6);
    cr_assert_eq(f->offsets[1], 16);
    cr_assert_eq(f->sizes[1], 32);
    cr_assert_eq(f->offsets[2], 48);
    cr_assert_eq(f->offsets[3], 56);
    cr_assert_eq(f->offsets[4], 64);
    /* ".align 1" after ".ptr" is the pointee's: the pointer itself is 8-aligned. */
    cr_assert_eq(f->offsets[5], 72);
    cr_assert_eq(f->sizes[5], 8);
    cr_assert_eq(f->param_bytes, 80);
    cr_assert_eq(g->num_params, 0);
    for (size_t i = 0; i < fb.num_kernels; i++) {
        free(fb.kernels[i].name);
        free(fb.kernels[i].offsets);
        free(fb.kernels[i].sizes);
    }
    free(fb.kernels);
}
