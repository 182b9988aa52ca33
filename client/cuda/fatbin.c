/*
 * Reads nvcc's fatbinaries (see fatbin.h). The container layout, as nvcc 13
 * writes it (all little-endian):
 *
 *   header (16 bytes): u32 magic 0xba55ed50, u16 version 1, u16 header size,
 *                      u64 size of the entries that follow
 *   entry:  u16 kind (1 PTX, 2 cubin), u16 version, u32 entry header size,
 *           u64 payload size (padded to 8), u32 compressed size, ...,
 *           u64 flags at 40 (0x8000 zstd, 0x2000 LZ4), u64 uncompressed
 *           size at 56; the payload follows the entry header.
 *
 * Compressed payloads are one zstd frame or one raw LZ4 block.
 */
#include "fatbin.h"

#include <elf.h>
#include <lz4.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define FATBIN_WRAPPER_MAGIC 0x466243b1u
#define FATBIN_MAGIC 0xba55ed50u
#define FATBIN_HEADER_BYTES 16u
#define FATBIN_ENTRY_MIN_BYTES 64u
#define FATBIN_KIND_PTX 1u
#define FATBIN_KIND_ELF 2u
#define FATBIN_FLAG_LZ4 0x2000u
#define FATBIN_FLAG_ZSTD 0x8000u
/* A single entry larger than this is not a kernel image anyone builds; the
 * bound keeps a damaged size from asking for gigabytes. */
#define FATBIN_MAX_ENTRY_BYTES (1ull << 30)

/* The .nv.info attribute formats and the attributes read here. */
#define EIFMT_NVAL 0x01
#define EIFMT_BVAL 0x02
#define EIFMT_HVAL 0x03
#define EIFMT_SVAL 0x04
#define EIATTR_PARAM_CBANK 0x0a
#define EIATTR_KPARAM_INFO 0x17
#define EIATTR_CBANK_PARAM_SIZE 0x19

static void fatbin_why(char *why, size_t cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
}

static uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
    return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

int rgpu_fatbin_locate(const void *fat_cubin, const uint8_t **data_p, size_t *size_p, char *why,
                       size_t why_cap)
{
    const uint8_t *p = fat_cubin;
    const uint8_t *data;
    uint64_t size;

    if (!p) {
        fatbin_why(why, why_cap, "no fatbinary");
        return -1;
    }
    if (rd32(p) == FATBIN_WRAPPER_MAGIC) {
        /* nvcc's __fatBinC_Wrapper_t: int magic, int version, const
         * unsigned long long *data, void *filename_or_fatbins. Version 1
         * points at one container; version 2 (relocatable device code
         * linked by nvlink) is not produced for whole-program builds. */
        const void *inner;

        if (rd32(p + 4) != 1) {
            fatbin_why(why, why_cap, "fatbinary wrapper version %u is not supported (relocatable "
                                     "device code, -rdc, is not supported yet)", rd32(p + 4));
            return -1;
        }
        memcpy(&inner, p + 8, sizeof(inner));
        p = inner;
        if (!p) {
            fatbin_why(why, why_cap, "the fatbinary wrapper points at nothing");
            return -1;
        }
    }
    if (rd32(p) != FATBIN_MAGIC) {
        fatbin_why(why, why_cap, "not an nvcc fatbinary (magic 0x%08x)", rd32(p));
        return -1;
    }
    data = p;
    size = rd64(p + 8);
    if (rd16(p + 6) < FATBIN_HEADER_BYTES || size > FATBIN_MAX_ENTRY_BYTES * 16) {
        fatbin_why(why, why_cap, "the fatbinary's header is damaged");
        return -1;
    }
    *data_p = data;
    *size_p = rd16(p + 6) + (size_t)size;
    return 0;
}

/* ---- kernels ---- */

static rgpu_fatbin_kernel_t *fatbin_kernel_add(rgpu_fatbin_t *fb, const char *name, size_t name_len)
{
    rgpu_fatbin_kernel_t *k;

    for (size_t i = 0; i < fb->num_kernels; i++) {
        if (strlen(fb->kernels[i].name) == name_len && !memcmp(fb->kernels[i].name, name, name_len))
            return &fb->kernels[i];
    }
    k = realloc(fb->kernels, (fb->num_kernels + 1) * sizeof(*k));
    if (!k)
        return NULL;
    fb->kernels = k;
    k = &fb->kernels[fb->num_kernels];
    memset(k, 0, sizeof(*k));
    if (!(k->name = strndup(name, name_len)))
        return NULL;
    fb->num_kernels++;
    return k;
}

/* Sets a kernel's layout from num parameters; takes offsets and sizes. */
static void fatbin_kernel_set(rgpu_fatbin_kernel_t *k, uint32_t num, uint32_t *offsets, uint32_t *sizes,
                              uint32_t bytes, int from_ptx)
{
    free(k->offsets);
    free(k->sizes);
    k->num_params = num;
    k->offsets = offsets;
    k->sizes = sizes;
    k->param_bytes = bytes;
    k->from_ptx = from_ptx;
}

/* Reads one ".nv.info.<kernel>" section. */
static int fatbin_nvinfo(rgpu_fatbin_kernel_t *k, const uint8_t *p, size_t len, char *why, size_t why_cap)
{
    uint32_t *offsets = NULL, *sizes = NULL, num = 0, bank = 0;
    int have_bank = 0;

    for (size_t at = 0; at + 4 <= len;) {
        uint8_t fmt = p[at], attr = p[at + 1];
        size_t vlen = fmt == EIFMT_SVAL ? rd16(p + at + 2) : 2;
        const uint8_t *v = p + at + (fmt == EIFMT_SVAL ? 4 : 2);

        if (fmt < EIFMT_NVAL || fmt > EIFMT_SVAL || (size_t)(v - p) + vlen > len) {
            fatbin_why(why, why_cap, "kernel %s: its .nv.info section is damaged", k->name);
            goto fail;
        }
        if (fmt == EIFMT_SVAL && attr == EIATTR_KPARAM_INFO && vlen >= 12) {
            /* u32 index, u16 ordinal, u16 offset, u32 flags: size in bits 18..31. */
            uint32_t ord = rd16(v + 4), off = rd16(v + 6), size = (rd32(v + 8) >> 18) & 0x3fff;

            if (ord >= RGPU_FATBIN_MAX_PARAMS || (uint64_t)off + size > RGPU_FATBIN_MAX_PARAM_BYTES) {
                fatbin_why(why, why_cap, "kernel %s: parameter %u lies outside the parameter buffer",
                           k->name, ord);
                goto fail;
            }
            if (ord >= num) {
                uint32_t *o = realloc(offsets, (ord + 1) * sizeof(*o));
                uint32_t *s = o ? realloc(sizes, (ord + 1) * sizeof(*s)) : NULL;

                if (o)
                    offsets = o;
                if (!o || !s) {
                    fatbin_why(why, why_cap, "out of memory");
                    goto fail;
                }
                sizes = s;
                memset(offsets + num, 0, (ord + 1 - num) * sizeof(*o));
                memset(sizes + num, 0, (ord + 1 - num) * sizeof(*s));
                num = ord + 1;
            }
            offsets[ord] = off;
            sizes[ord] = size;
        } else if (fmt == EIFMT_HVAL && attr == EIATTR_CBANK_PARAM_SIZE) {
            bank = rd16(v);
            have_bank = 1;
        } else if (fmt == EIFMT_SVAL && attr == EIATTR_PARAM_CBANK && vlen >= 8 && !have_bank) {
            bank = rd16(v + 6);
            have_bank = 1;
        }
        at = (size_t)(v - p) + vlen;
    }
    for (uint32_t i = 0; i < num; i++) {
        if (!sizes[i]) {
            fatbin_why(why, why_cap, "kernel %s: parameter %u is missing from its .nv.info", k->name, i);
            goto fail;
        }
        if (offsets[i] + sizes[i] > bank)
            bank = have_bank ? bank : offsets[i] + sizes[i];
        if (offsets[i] + sizes[i] > bank) {
            fatbin_why(why, why_cap, "kernel %s: parameter %u ends past its %u-byte parameter bank",
                       k->name, i, bank);
            goto fail;
        }
    }
    fatbin_kernel_set(k, num, offsets, sizes, bank, 0);
    return 0;
fail:
    free(offsets);
    free(sizes);
    return -1;
}

/* Reads the kernels of one cubin: their names from ".text.<kernel>"
 * sections (a kernel without parameters may have no .nv.info of its own),
 * their layouts from ".nv.info.<kernel>". A kernel already known from an
 * earlier cubin keeps its layout: every architecture's cubin of one source
 * has the same parameters. */
static int fatbin_elf(rgpu_fatbin_t *fb, const uint8_t *elf, size_t len, char *why, size_t why_cap)
{
    Elf64_Ehdr eh;
    const uint8_t *strtab;
    size_t strtab_len;
    size_t before = fb->num_kernels;

    if (len < sizeof(eh) || memcmp(elf, ELFMAG, SELFMAG) || elf[EI_CLASS] != ELFCLASS64 ||
        elf[EI_DATA] != ELFDATA2LSB) {
        fatbin_why(why, why_cap, "a cubin of the fatbinary is not a 64-bit little-endian ELF");
        return -1;
    }
    memcpy(&eh, elf, sizeof(eh));
    if (eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shoff > len ||
        (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr) > len - eh.e_shoff || eh.e_shstrndx >= eh.e_shnum) {
        fatbin_why(why, why_cap, "a cubin's section table is damaged");
        return -1;
    }
    {
        Elf64_Shdr sh;

        memcpy(&sh, elf + eh.e_shoff + (size_t)eh.e_shstrndx * sizeof(sh), sizeof(sh));
        if (sh.sh_offset > len || sh.sh_size > len - sh.sh_offset) {
            fatbin_why(why, why_cap, "a cubin's section names are damaged");
            return -1;
        }
        strtab = elf + sh.sh_offset;
        strtab_len = sh.sh_size;
    }
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < eh.e_shnum; i++) {
            Elf64_Shdr sh;
            const char *name;
            size_t max;
            const char *prefix = pass == 0 ? ".text." : ".nv.info.";
            size_t plen = strlen(prefix);
            rgpu_fatbin_kernel_t *k;

            memcpy(&sh, elf + eh.e_shoff + (size_t)i * sizeof(sh), sizeof(sh));
            if (sh.sh_name >= strtab_len)
                continue;
            name = (const char *)strtab + sh.sh_name;
            max = strtab_len - sh.sh_name;
            if (strnlen(name, max) == max || strncmp(name, prefix, plen) || !name[plen])
                continue;
            if (pass == 0) {
                if (!(k = fatbin_kernel_add(fb, name + plen, strlen(name + plen)))) {
                    fatbin_why(why, why_cap, "out of memory");
                    return -1;
                }
                k->from_cubin = 1;
                continue;
            }
            if (sh.sh_offset > len || sh.sh_size > len - sh.sh_offset) {
                fatbin_why(why, why_cap, "cubin section %s is damaged", name);
                return -1;
            }
            k = NULL;
            for (size_t j = before; j < fb->num_kernels && !k; j++) {
                if (!strcmp(fb->kernels[j].name, name + plen))
                    k = &fb->kernels[j];
            }
            /* Kernels known from an earlier cubin (j < before) keep their layout. */
            if (k && fatbin_nvinfo(k, elf + sh.sh_offset, sh.sh_size, why, why_cap) != 0)
                return -1;
        }
    }
    return 0;
}

/* ---- PTX ---- */

/* The size in bytes of a PTX scalar type (".u32", ".b8", ".f16x2", ...), or 0. */
static uint32_t ptx_type_size(const char *t, size_t len)
{
    static const struct {
        const char *name;
        uint32_t size;
    } types[] = {
        {".u8", 1},  {".s8", 1},  {".b8", 1},  {".u16", 2},  {".s16", 2},  {".b16", 2},
        {".f16", 2}, {".bf16", 2}, {".u32", 4}, {".s32", 4}, {".b32", 4}, {".f32", 4},
        {".f16x2", 4}, {".bf16x2", 4}, {".u64", 8}, {".s64", 8}, {".b64", 8}, {".f64", 8},
        {".b128", 16},
    };

    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strlen(types[i].name) == len && !memcmp(types[i].name, t, len))
            return types[i].size;
    }
    return 0;
}

/* Reads one parameter declaration ".param [.align N] .type [.ptr ...] name[[count]]"
 * of [p, end) into its size and alignment. */
static int ptx_param(const char *p, const char *end, uint32_t *size_p, uint32_t *align_p)
{
    uint32_t elem = 0, align = 0;
    uint64_t count = 1;

    while (p < end) {
        const char *w = p;

        while (p < end && !strchr(" \t\r\n", *p))
            p++;
        if (p - w == 6 && !memcmp(w, ".align", 6)) {
            while (p < end && strchr(" \t\r\n", *p))
                p++;
            /* Before the type it aligns the parameter; after it (".u64 .ptr
             * .global .align 16") the data the pointer points at. */
            if (!elem)
                align = (uint32_t)strtoul(p, NULL, 10);
            while (p < end && !strchr(" \t\r\n", *p))
                p++;
        } else if (*w == '.' && !elem) {
            elem = ptx_type_size(w, (size_t)(p - w));
        } else if (*w != '.') {
            /* The name, possibly with an array count. */
            const char *br = memchr(w, '[', (size_t)(p - w));

            if (br)
                count = strtoull(br + 1, NULL, 10);
        }
        while (p < end && strchr(" \t\r\n", *p))
            p++;
    }
    if (!elem || !count || count > RGPU_FATBIN_MAX_PARAM_BYTES)
        return -1;
    if (!align)
        align = elem;
    if (align & (align - 1) || align > 256)
        return -1;
    *size_p = (uint32_t)(elem * count);
    *align_p = align;
    return 0;
}

int rgpu_fatbin_parse_ptx(rgpu_fatbin_t *fb, const char *ptx, size_t len, char *why, size_t why_cap)
{
    const char *end = ptx + len;
    const char *p = ptx;

    while (p < end) {
        const char *e = memmem(p, (size_t)(end - p), ".entry", 6);
        const char *name, *open, *close;
        uint32_t *offsets = NULL, *sizes = NULL, num = 0, at = 0;
        rgpu_fatbin_kernel_t *k;

        if (!e)
            break;
        p = e + 6;
        if (p >= end || !strchr(" \t", *p))
            continue;
        while (p < end && strchr(" \t", *p))
            p++;
        name = p;
        while (p < end && !strchr(" \t\r\n(", *p))
            p++;
        if (p == name)
            continue;
        k = fatbin_kernel_add(fb, name, (size_t)(p - name));
        if (!k) {
            fatbin_why(why, why_cap, "out of memory");
            return -1;
        }
        while (p < end && strchr(" \t\r\n", *p))
            p++;
        if (p >= end || *p != '(') {
            /* No parameter list: a kernel without parameters. */
            if (!k->from_cubin)
                fatbin_kernel_set(k, 0, NULL, NULL, 0, 1);
            continue;
        }
        open = p + 1;
        close = memchr(open, ')', (size_t)(end - open));
        if (!close) {
            fatbin_why(why, why_cap, "PTX kernel %s: its parameter list does not end", k->name);
            return -1;
        }
        for (const char *q = open; q < close;) {
            const char *comma = memchr(q, ',', (size_t)(close - q));
            const char *stop = comma ? comma : close;
            const char *d = q;
            uint32_t size, align;

            while (d < stop && strchr(" \t\r\n", *d))
                d++;
            if (d < stop) {
                uint32_t *o, *s;

                if ((size_t)(stop - d) < 6 || memcmp(d, ".param", 6) ||
                    ptx_param(d + 6, stop, &size, &align) != 0) {
                    fatbin_why(why, why_cap, "PTX kernel %s: parameter %u is not understood", k->name, num);
                    goto fail;
                }
                at = (at + align - 1) & ~(align - 1);
                if (num >= RGPU_FATBIN_MAX_PARAMS || (uint64_t)at + size > RGPU_FATBIN_MAX_PARAM_BYTES) {
                    fatbin_why(why, why_cap, "PTX kernel %s: its parameters exceed CUDA's %u bytes",
                               k->name, RGPU_FATBIN_MAX_PARAM_BYTES);
                    goto fail;
                }
                o = realloc(offsets, (num + 1) * sizeof(*o));
                if (o)
                    offsets = o;
                s = o ? realloc(sizes, (num + 1) * sizeof(*s)) : NULL;
                if (!o || !s) {
                    fatbin_why(why, why_cap, "out of memory");
                    goto fail;
                }
                sizes = s;
                offsets[num] = at;
                sizes[num] = size;
                at += size;
                num++;
            }
            q = stop + 1;
        }
        /* A layout from a cubin is authoritative; PTX fills in only kernels
         * that no cubin describes. */
        if (!k->from_cubin) {
            fatbin_kernel_set(k, num, offsets, sizes, at, 1);
        } else {
            free(offsets);
            free(sizes);
        }
        p = close + 1;
        continue;
fail:
        free(offsets);
        free(sizes);
        return -1;
    }
    return 0;
}

/* ---- the container ---- */

/* The payload of an entry, decompressed if it was: *out_p is either in or a
 * buffer the caller frees (*owned_p). */
static int fatbin_payload(rgpu_fatbin_t *fb, const uint8_t *entry, const uint8_t *in, size_t in_len,
                          const uint8_t **out_p, size_t *out_len_p, uint8_t **owned_p, char *why,
                          size_t why_cap)
{
    uint64_t flags = rd64(entry + 40);
    uint64_t full = rd64(entry + 56);
    uint32_t packed = rd32(entry + 16);
    uint8_t *buf;

    *owned_p = NULL;
    if (!(flags & (FATBIN_FLAG_ZSTD | FATBIN_FLAG_LZ4))) {
        *out_p = in;
        *out_len_p = in_len;
        return 0;
    }
    if (packed > in_len || !full || full > FATBIN_MAX_ENTRY_BYTES) {
        fatbin_why(why, why_cap, "a compressed fatbinary entry has damaged sizes");
        return -1;
    }
    buf = malloc((size_t)full + 1);
    if (!buf) {
        fatbin_why(why, why_cap, "out of memory");
        return -1;
    }
    if (flags & FATBIN_FLAG_ZSTD) {
        size_t got = ZSTD_decompress(buf, (size_t)full, in, packed);

        if (ZSTD_isError(got) || got != full) {
            fatbin_why(why, why_cap, "a zstd-compressed fatbinary entry does not decompress: %s",
                       ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
            free(buf);
            return -1;
        }
    } else {
        int got = LZ4_decompress_safe((const char *)in, (char *)buf, (int)packed, (int)full);

        if (got < 0 || (uint64_t)got != full) {
            fatbin_why(why, why_cap, "an LZ4-compressed fatbinary entry does not decompress");
            free(buf);
            return -1;
        }
    }
    buf[full] = 0;
    fb->num_compressed++;
    *out_p = buf;
    *out_len_p = (size_t)full;
    *owned_p = buf;
    return 0;
}

int rgpu_fatbin_parse(const uint8_t *data, size_t size, rgpu_fatbin_t **fatbin_p, char *why, size_t why_cap)
{
    rgpu_fatbin_t *fb = calloc(1, sizeof(*fb));
    size_t at = 0;

    if (!fb) {
        fatbin_why(why, why_cap, "out of memory");
        return -1;
    }
    /* Containers may follow one another (nvcc -fatbin of several inputs). */
    while (at + FATBIN_HEADER_BYTES <= size) {
        const uint8_t *c = data + at;
        size_t hdr = rd16(c + 6);
        uint64_t body = rd64(c + 8);
        size_t end;

        if (rd32(c) != FATBIN_MAGIC || hdr < FATBIN_HEADER_BYTES || hdr > size - at ||
            body > size - at - hdr) {
            fatbin_why(why, why_cap, "the fatbinary's container at byte %zu is damaged", at);
            goto fail;
        }
        end = at + hdr + (size_t)body;
        for (size_t e = at + hdr; e < end;) {
            const uint8_t *entry = data + e;
            uint32_t ehdr;
            uint64_t payload;
            uint16_t kind;
            const uint8_t *img;
            size_t img_len;
            uint8_t *owned;
            int rc = 0;

            if (end - e < FATBIN_ENTRY_MIN_BYTES) {
                fatbin_why(why, why_cap, "the fatbinary's entry at byte %zu is truncated", e);
                goto fail;
            }
            kind = rd16(entry);
            ehdr = rd32(entry + 4);
            payload = rd64(entry + 8);
            if (ehdr < FATBIN_ENTRY_MIN_BYTES || ehdr > end - e || payload > end - e - ehdr) {
                fatbin_why(why, why_cap, "the fatbinary's entry at byte %zu is damaged", e);
                goto fail;
            }
            if (kind == FATBIN_KIND_ELF || kind == FATBIN_KIND_PTX) {
                if (fatbin_payload(fb, entry, entry + ehdr, (size_t)payload, &img, &img_len, &owned, why,
                                   why_cap) != 0)
                    goto fail;
                if (kind == FATBIN_KIND_ELF) {
                    fb->num_cubins++;
                    rc = fatbin_elf(fb, img, img_len, why, why_cap);
                } else {
                    fb->num_ptx++;
                    /* PTX is read after every cubin of the container, below. */
                }
                free(owned);
                if (rc != 0)
                    goto fail;
            }
            e += ehdr + (size_t)payload;
        }
        /* Now the PTX entries, for kernels no cubin described. */
        for (size_t e = at + hdr; e < end;) {
            const uint8_t *entry = data + e;
            uint32_t ehdr = rd32(entry + 4);
            uint64_t payload = rd64(entry + 8);

            if (rd16(entry) == FATBIN_KIND_PTX) {
                const uint8_t *img;
                size_t img_len;
                uint8_t *owned;
                int rc;

                if (fatbin_payload(fb, entry, entry + ehdr, (size_t)payload, &img, &img_len, &owned, why,
                                   why_cap) != 0)
                    goto fail;
                if (owned)
                    fb->num_compressed--;   /* counted once, in the first pass */
                rc = rgpu_fatbin_parse_ptx(fb, (const char *)img, strnlen((const char *)img, img_len), why,
                                           why_cap);
                free(owned);
                if (rc != 0)
                    goto fail;
            }
            e += ehdr + (size_t)payload;
        }
        at = end;
        /* Containers are 8-byte aligned when concatenated. */
        while (at < size && at % 8)
            at++;
    }
    if (!fb->num_cubins && !fb->num_ptx) {
        fatbin_why(why, why_cap, "the fatbinary holds no cubin and no PTX");
        goto fail;
    }
    *fatbin_p = fb;
    return 0;
fail:
    rgpu_fatbin_free(fb);
    return -1;
}

const rgpu_fatbin_kernel_t *rgpu_fatbin_find(const rgpu_fatbin_t *fb, const char *name)
{
    for (size_t i = 0; fb && i < fb->num_kernels; i++) {
        if (!strcmp(fb->kernels[i].name, name))
            return &fb->kernels[i];
    }
    return NULL;
}

void rgpu_fatbin_free(rgpu_fatbin_t *fb)
{
    if (!fb)
        return;
    for (size_t i = 0; i < fb->num_kernels; i++) {
        free(fb->kernels[i].name);
        free(fb->kernels[i].offsets);
        free(fb->kernels[i].sizes);
    }
    free(fb->kernels);
    free(fb);
}

long rgpu_fatbin_pack_params(const rgpu_fatbin_kernel_t *k, void *const *args, uint8_t *buf, size_t cap)
{
    if (k->param_bytes > cap || (k->num_params && !args))
        return -1;
    memset(buf, 0, k->param_bytes);
    for (uint32_t i = 0; i < k->num_params; i++) {
        if (!args[i])
            return -1;
        memcpy(buf + k->offsets[i], args[i], k->sizes[i]);
    }
    return (long)k->param_bytes;
}
