/*
 * cuda-emulated: a CUDA device emulated in host memory, so that real,
 * unmodified nvcc-built programs run end to end through the real client
 * library, protocol and server on machines without a GPU. It exists for
 * tests and says so: its device is named "rgpu CUDA emulation (no GPU)",
 * carries CU_PARAM_EMULATED, and rgpu-server opens it only when
 * --backends names it.
 *
 * Device memory is host memory behind addresses that mean nothing on the
 * server: each context hands out its own fake device addresses, spaced
 * with unmapped gaps, and a range table maps them to host buffers. Every
 * access, by a copy or by a kernel (emulated.h), is translated and bounds
 * checked through that table; a client's number is never a host pointer.
 *
 * Kernels are C implementations registered by name (emulated_kernels.c);
 * a module is accepted when it is a fatbinary or an ELF cubin, and a
 * function when its name is registered.
 *
 * Streams and events keep CUDA's semantics the simple way: work runs
 * completely, in submission order, when it is submitted, which is one of
 * the orders CUDA allows. Queries answer ready, synchronizations return at
 * once with the first error, and an event's time is taken when it is
 * recorded.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda.pb-c.h"
#include "cuda_device.h"
#include "emulated.h"
#include "rgpu/log.h"

/* The emulated device's memory, shared by every session of the server. */
#define RGPU_CU_EMU_TOTAL_MEM (4ull << 30)
/* Fake device addresses start here; allocations are 256-byte aligned and
 * kept apart by an unmapped gap, so an overrun lands nowhere. */
#define RGPU_CU_EMU_BASE 0x7e0000000000ull
#define RGPU_CU_EMU_GAP (64ull << 10)
/* Copies move through the link in pieces of this size. */
#define RGPU_CU_EMU_PIECE (1u << 20)

#define RGPU_CU_EMU_NAME "rgpu CUDA emulation (no GPU)"

struct rgpu_cu_dev {
    atomic_ullong used;         /* bytes allocated by all sessions */
};

typedef struct {
    uint64_t addr, size;
    uint8_t *host;
} rgpu_cu_emu_range_t;

typedef struct {
    uint32_t flags;
    int recorded;
    struct timespec when;
} rgpu_cu_emu_event_t;

typedef struct {
    const rgpu_cu_emu_kernel_t *kernel;
    uint32_t offsets[16];
    uint32_t param_bytes;
} rgpu_cu_emu_function_t;

struct rgpu_cu_ctx {
    rgpu_cu_dev_t *dev;
    rgpu_cu_emu_range_t *ranges;    /* sorted by addr */
    size_t n_ranges, cap_ranges;
    uint64_t next_addr;
    uint64_t used;
    /* Handles given out, freed with the context. */
    void **objects;
    size_t n_objects, cap_objects;
};

/* ---- the device -------------------------------------------------------- */

static rgpu_status_t rgpu_cu_emu_open(const rgpu_server_config_t *config, rgpu_cu_dev_t **dev_p,
                                      char *why, size_t why_cap)
{
    rgpu_cu_dev_t *dev = calloc(1, sizeof(*dev));

    (void)config;
    if (!dev) {
        snprintf(why, why_cap, "out of memory");
        return RGPU_ERR_NOMEM;
    }
    rgpu_warn("cuda", "cuda-emulated: serving an EMULATED CUDA device (host memory, C kernels "
              "of the test programs only); this is for tests, not a GPU");
    *dev_p = dev;
    return RGPU_OK;
}

static void rgpu_cu_emu_close(rgpu_cu_dev_t *dev)
{
    free(dev);
}

static uint32_t rgpu_cu_emu_count(rgpu_cu_dev_t *dev)
{
    (void)dev;
    return 1;
}

static int rgpu_cu_emu_driver_version(rgpu_cu_dev_t *dev)
{
    (void)dev;
    return 13000;
}

static void rgpu_cu_emu_device_name(rgpu_cu_dev_t *dev, uint32_t index, char *out, size_t cap)
{
    (void)dev;
    (void)index;
    snprintf(out, cap, "%s", RGPU_CU_EMU_NAME);
}

/* The attributes a program's cudaGetDeviceProperties needs, with values of
 * a small device of compute capability 9.0 (CUdevice_attribute numbers). */
static const struct {
    uint32_t attr;
    int32_t value;
} rgpu_cu_emu_attrs[] = {
    {1, 1024},      /* MAX_THREADS_PER_BLOCK */
    {2, 1024},      /* MAX_BLOCK_DIM_X */
    {3, 1024},      /* MAX_BLOCK_DIM_Y */
    {4, 64},        /* MAX_BLOCK_DIM_Z */
    {5, 2147483647},/* MAX_GRID_DIM_X */
    {6, 65535},     /* MAX_GRID_DIM_Y */
    {7, 65535},     /* MAX_GRID_DIM_Z */
    {8, 49152},     /* MAX_SHARED_MEMORY_PER_BLOCK */
    {9, 65536},     /* TOTAL_CONSTANT_MEMORY */
    {10, 32},       /* WARP_SIZE */
    {11, 2147483647},/* MAX_PITCH */
    {12, 65536},    /* MAX_REGISTERS_PER_BLOCK */
    {13, 1000000},  /* CLOCK_RATE (kHz) */
    {14, 512},      /* TEXTURE_ALIGNMENT */
    {15, 1},        /* GPU_OVERLAP */
    {16, 4},        /* MULTIPROCESSOR_COUNT */
    {17, 0},        /* KERNEL_EXEC_TIMEOUT */
    {18, 0},        /* INTEGRATED */
    {19, 1},        /* CAN_MAP_HOST_MEMORY */
    {20, 0},        /* COMPUTE_MODE: default */
    {31, 1},        /* CONCURRENT_KERNELS */
    {32, 0},        /* ECC_ENABLED */
    {33, 0},        /* PCI_BUS_ID */
    {34, 0},        /* PCI_DEVICE_ID */
    {36, 1000000},  /* MEMORY_CLOCK_RATE (kHz) */
    {37, 256},      /* GLOBAL_MEMORY_BUS_WIDTH */
    {38, 4194304},  /* L2_CACHE_SIZE */
    {39, 2048},     /* MAX_THREADS_PER_MULTIPROCESSOR */
    {40, 2},        /* ASYNC_ENGINE_COUNT */
    {41, 1},        /* UNIFIED_ADDRESSING */
    {50, 0},        /* PCI_DOMAIN_ID */
    {51, 32},       /* TEXTURE_PITCH_ALIGNMENT */
    {75, 9},        /* COMPUTE_CAPABILITY_MAJOR */
    {76, 0},        /* COMPUTE_CAPABILITY_MINOR */
    {78, 1},        /* STREAM_PRIORITIES_SUPPORTED */
    {81, 233472},   /* MAX_SHARED_MEMORY_PER_MULTIPROCESSOR */
    {82, 65536},    /* MAX_REGISTERS_PER_MULTIPROCESSOR */
    {83, 0},        /* MANAGED_MEMORY */
    {97, 232448},   /* MAX_SHARED_MEMORY_PER_BLOCK_OPTIN */
    {106, 32},      /* MAX_BLOCKS_PER_MULTIPROCESSOR */
};

static void rgpu_cu_emu_device_params(rgpu_cu_dev_t *dev, uint32_t index, rgpu_cu_param_fn add,
                                      void *arg)
{
    static const uint8_t uuid[16] = {'r', 'g', 'p', 'u', '-', 'e', 'm', 'u',
                                     'l', 'a', 't', 'e', 'd', 0, 0, 0};
    uint64_t total = RGPU_CU_EMU_TOTAL_MEM;
    int32_t one = 1, version = rgpu_cu_emu_driver_version(dev);

    (void)index;
    for (size_t i = 0; i < sizeof(rgpu_cu_emu_attrs) / sizeof(rgpu_cu_emu_attrs[0]); i++)
        add(arg, rgpu_cu_emu_attrs[i].attr, &rgpu_cu_emu_attrs[i].value, sizeof(int32_t));
    add(arg, RGPU__CU_DEVICE_PARAM__CU_PARAM_NAME, RGPU_CU_EMU_NAME, strlen(RGPU_CU_EMU_NAME));
    add(arg, RGPU__CU_DEVICE_PARAM__CU_PARAM_TOTAL_MEM, &total, sizeof(total));
    add(arg, RGPU__CU_DEVICE_PARAM__CU_PARAM_UUID, uuid, sizeof(uuid));
    add(arg, RGPU__CU_DEVICE_PARAM__CU_PARAM_DRIVER_VERSION, &version, sizeof(version));
    add(arg, RGPU__CU_DEVICE_PARAM__CU_PARAM_EMULATED, &one, sizeof(one));
}

/* ---- contexts and memory ------------------------------------------------ */

/* Remembers a handle so the context frees it; -1 when out of memory. */
static int rgpu_cu_emu_keep(rgpu_cu_ctx_t *ctx, void *obj)
{
    if (ctx->n_objects == ctx->cap_objects) {
        size_t cap = ctx->cap_objects ? 2 * ctx->cap_objects : 32;
        void **grown = realloc(ctx->objects, cap * sizeof(*grown));

        if (!grown)
            return -1;
        ctx->objects = grown;
        ctx->cap_objects = cap;
    }
    ctx->objects[ctx->n_objects++] = obj;
    return 0;
}

static void rgpu_cu_emu_drop(rgpu_cu_ctx_t *ctx, void *obj)
{
    for (size_t i = 0; i < ctx->n_objects; i++) {
        if (ctx->objects[i] == obj) {
            ctx->objects[i] = ctx->objects[--ctx->n_objects];
            free(obj);
            return;
        }
    }
}

static int rgpu_cu_emu_ctx_create(rgpu_cu_dev_t *dev, uint32_t index, rgpu_cu_ctx_t **ctx_p)
{
    rgpu_cu_ctx_t *ctx;

    if (index != 0)
        return RGPU_CU_INVALID_DEVICE;
    ctx = calloc(1, sizeof(*ctx));
    if (!ctx)
        return RGPU_CU_OUT_OF_MEMORY;
    ctx->dev = dev;
    ctx->next_addr = RGPU_CU_EMU_BASE;
    *ctx_p = ctx;
    return RGPU_CU_SUCCESS;
}

static void rgpu_cu_emu_ctx_destroy(rgpu_cu_ctx_t *ctx)
{
    for (size_t i = 0; i < ctx->n_ranges; i++)
        free(ctx->ranges[i].host);
    atomic_fetch_sub(&ctx->dev->used, ctx->used);
    for (size_t i = 0; i < ctx->n_objects; i++)
        free(ctx->objects[i]);
    free(ctx->objects);
    free(ctx->ranges);
    free(ctx);
}

static int rgpu_cu_emu_ctx_sync(rgpu_cu_ctx_t *ctx)
{
    (void)ctx;
    return RGPU_CU_SUCCESS;     /* all work ran when it was submitted */
}

/* The range containing addr, or NULL. */
static rgpu_cu_emu_range_t *rgpu_cu_emu_range(rgpu_cu_ctx_t *ctx, uint64_t addr)
{
    size_t lo = 0, hi = ctx->n_ranges;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (ctx->ranges[mid].addr <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!lo || addr - ctx->ranges[lo - 1].addr >= ctx->ranges[lo - 1].size)
        return NULL;
    return &ctx->ranges[lo - 1];
}

void *rgpu__cu_emu_ptr(rgpu_cu_ctx_t *ctx, uint64_t addr, uint64_t len)
{
    rgpu_cu_emu_range_t *r = rgpu_cu_emu_range(ctx, addr);

    if (!r || !len || len > r->size - (addr - r->addr))
        return NULL;
    return r->host + (addr - r->addr);
}

static int rgpu_cu_emu_mem_alloc(rgpu_cu_ctx_t *ctx, uint64_t size, uint64_t *dptr_p)
{
    uint64_t rounded = (size + 255) & ~255ull, used;
    rgpu_cu_emu_range_t *r;

    if (!size || rounded < size)
        return RGPU_CU_INVALID_VALUE;
    used = atomic_fetch_add(&ctx->dev->used, rounded);
    if (used + rounded > RGPU_CU_EMU_TOTAL_MEM || used + rounded < used) {
        atomic_fetch_sub(&ctx->dev->used, rounded);
        return RGPU_CU_OUT_OF_MEMORY;
    }
    if (ctx->n_ranges == ctx->cap_ranges) {
        size_t cap = ctx->cap_ranges ? 2 * ctx->cap_ranges : 64;
        rgpu_cu_emu_range_t *grown = realloc(ctx->ranges, cap * sizeof(*grown));

        if (!grown)
            goto out_unaccount;
        ctx->ranges = grown;
        ctx->cap_ranges = cap;
    }
    /* Fresh addresses only go up, so the table stays sorted by appending. */
    r = &ctx->ranges[ctx->n_ranges];
    r->host = calloc(1, rounded);
    if (!r->host)
        goto out_unaccount;
    r->addr = ctx->next_addr;
    r->size = size;
    ctx->next_addr += rounded + RGPU_CU_EMU_GAP;
    ctx->n_ranges++;
    ctx->used += rounded;
    *dptr_p = r->addr;
    return RGPU_CU_SUCCESS;

out_unaccount:
    atomic_fetch_sub(&ctx->dev->used, rounded);
    return RGPU_CU_OUT_OF_MEMORY;
}

static int rgpu_cu_emu_mem_free(rgpu_cu_ctx_t *ctx, uint64_t dptr)
{
    rgpu_cu_emu_range_t *r = rgpu_cu_emu_range(ctx, dptr);
    uint64_t rounded;
    size_t i;

    if (!r || r->addr != dptr)
        return RGPU_CU_INVALID_VALUE;
    rounded = (r->size + 255) & ~255ull;
    free(r->host);
    i = (size_t)(r - ctx->ranges);
    memmove(r, r + 1, (ctx->n_ranges - i - 1) * sizeof(*r));
    ctx->n_ranges--;
    ctx->used -= rounded;
    atomic_fetch_sub(&ctx->dev->used, rounded);
    return RGPU_CU_SUCCESS;
}

static int rgpu_cu_emu_mem_info(rgpu_cu_ctx_t *ctx, uint64_t *free_p, uint64_t *total_p)
{
    uint64_t used = atomic_load(&ctx->dev->used);

    *total_p = RGPU_CU_EMU_TOTAL_MEM;
    *free_p = used < RGPU_CU_EMU_TOTAL_MEM ? RGPU_CU_EMU_TOTAL_MEM - used : 0;
    return RGPU_CU_SUCCESS;
}

/* ---- modules and functions ---------------------------------------------- */

static int rgpu_cu_emu_module_load(rgpu_cu_ctx_t *ctx, const void *image, size_t len, void **mod_p,
                                   char *log, size_t log_cap)
{
    static const uint8_t fatbin_magic[4] = {0x50, 0xed, 0x55, 0xba};   /* 0xBA55ED50 */
    static const uint8_t elf_magic[4] = {0x7f, 'E', 'L', 'F'};
    void *mod;

    if (len < 16 || (memcmp(image, fatbin_magic, 4) != 0 && memcmp(image, elf_magic, 4) != 0)) {
        snprintf(log, log_cap, "not a fatbinary or cubin (the emulation loads no PTX)");
        return RGPU_CU_INVALID_IMAGE;
    }
    mod = calloc(1, 1);
    if (!mod || rgpu_cu_emu_keep(ctx, mod) != 0) {
        free(mod);
        return RGPU_CU_OUT_OF_MEMORY;
    }
    *mod_p = mod;
    return RGPU_CU_SUCCESS;
}

static void rgpu_cu_emu_module_unload(rgpu_cu_ctx_t *ctx, void *mod)
{
    rgpu_cu_emu_drop(ctx, mod);
}

static int rgpu_cu_emu_function_get(rgpu_cu_ctx_t *ctx, void *mod, const char *name, void **fn_p)
{
    const rgpu_cu_emu_kernel_t *k = rgpu__cu_emu_kernel_find(name);
    rgpu_cu_emu_function_t *fn;
    uint32_t off = 0;

    (void)mod;
    if (!k)
        return RGPU_CU_NOT_FOUND;
    fn = calloc(1, sizeof(*fn));
    if (!fn || rgpu_cu_emu_keep(ctx, fn) != 0) {
        free(fn);
        return RGPU_CU_OUT_OF_MEMORY;
    }
    fn->kernel = k;
    /* The C ABI's layout, which nvcc's parameter bank follows. */
    for (uint32_t i = 0; i < k->n_params; i++) {
        uint32_t size = k->param_sizes[i], align = size >= 8 ? 8 : size;

        off = (off + align - 1) / align * align;
        fn->offsets[i] = off;
        off += size;
    }
    fn->param_bytes = off;
    *fn_p = fn;
    return RGPU_CU_SUCCESS;
}

static int rgpu_cu_emu_func_info(rgpu_cu_ctx_t *ctx, void *fn_v, rgpu_cu_func_info_t *info)
{
    rgpu_cu_emu_function_t *fn = fn_v;

    (void)ctx;
    memset(info->attrs, 0, sizeof(info->attrs));
    info->attrs[RGPU_CU_FUNC_MAX_THREADS_PER_BLOCK] = 1024;
    info->attrs[RGPU_CU_FUNC_NUM_REGS] = 32;
    info->attrs[RGPU_CU_FUNC_PTX_VERSION] = 90;
    info->attrs[RGPU_CU_FUNC_BINARY_VERSION] = 90;
    info->n_params = fn->kernel->n_params;
    for (uint32_t i = 0; i < fn->kernel->n_params; i++) {
        info->param_offsets[i] = fn->offsets[i];
        info->param_sizes[i] = fn->kernel->param_sizes[i];
    }
    info->param_bytes = fn->param_bytes;
    return RGPU_CU_SUCCESS;
}

static int rgpu_cu_emu_func_set_attr(rgpu_cu_ctx_t *ctx, void *fn, int32_t attr, int32_t value)
{
    (void)ctx;
    (void)fn;
    (void)attr;
    (void)value;
    return RGPU_CU_SUCCESS;     /* cache and shared-memory hints change nothing here */
}

static int rgpu_cu_emu_occupancy(rgpu_cu_ctx_t *ctx, void *fn, uint32_t block_size,
                                 uint64_t dynamic_smem, uint32_t flags, uint32_t *blocks_p)
{
    (void)ctx;
    (void)fn;
    (void)dynamic_smem;
    (void)flags;
    if (!block_size || block_size > 1024)
        return RGPU_CU_INVALID_VALUE;
    *blocks_p = 2048 / block_size < 32 ? 2048 / block_size : 32;
    return RGPU_CU_SUCCESS;
}

static int rgpu_cu_emu_global_get(rgpu_cu_ctx_t *ctx, void *mod, const char *name,
                                  uint64_t *dptr_p, uint64_t *size_p)
{
    (void)ctx;
    (void)mod;
    (void)name;
    (void)dptr_p;
    (void)size_p;
    return RGPU_CU_NOT_FOUND;   /* the test programs' kernels use no __device__ variables */
}

/* ---- streams and events ------------------------------------------------- */

static int rgpu_cu_emu_stream_create(rgpu_cu_ctx_t *ctx, uint32_t flags, int32_t priority,
                                     void **stream_p)
{
    void *st = calloc(1, 1);

    (void)flags;
    (void)priority;
    if (!st || rgpu_cu_emu_keep(ctx, st) != 0) {
        free(st);
        return RGPU_CU_OUT_OF_MEMORY;
    }
    *stream_p = st;
    return RGPU_CU_SUCCESS;
}

static int rgpu_cu_emu_stream_destroy(rgpu_cu_ctx_t *ctx, void *stream)
{
    rgpu_cu_emu_drop(ctx, stream);
    return RGPU_CU_SUCCESS;
}

static int rgpu_cu_emu_stream_done(rgpu_cu_ctx_t *ctx, void *stream)
{
    (void)ctx;
    (void)stream;
    return RGPU_CU_SUCCESS;
}

static int rgpu_cu_emu_stream_wait_event(rgpu_cu_ctx_t *ctx, void *stream, void *event,
                                         uint32_t flags)
{
    (void)ctx;
    (void)stream;
    (void)event;
    (void)flags;
    return RGPU_CU_SUCCESS;     /* the event's work is already done */
}

static int rgpu_cu_emu_event_create(rgpu_cu_ctx_t *ctx, uint32_t flags, void **event_p)
{
    rgpu_cu_emu_event_t *ev = calloc(1, sizeof(*ev));

    if (!ev || rgpu_cu_emu_keep(ctx, ev) != 0) {
        free(ev);
        return RGPU_CU_OUT_OF_MEMORY;
    }
    ev->flags = flags;
    *event_p = ev;
    return RGPU_CU_SUCCESS;
}

static int rgpu_cu_emu_event_destroy(rgpu_cu_ctx_t *ctx, void *event)
{
    rgpu_cu_emu_drop(ctx, event);
    return RGPU_CU_SUCCESS;
}

static int rgpu_cu_emu_event_record(rgpu_cu_ctx_t *ctx, void *event, void *stream, uint32_t flags)
{
    rgpu_cu_emu_event_t *ev = event;

    (void)ctx;
    (void)stream;
    (void)flags;
    clock_gettime(CLOCK_MONOTONIC, &ev->when);
    ev->recorded = 1;
    return RGPU_CU_SUCCESS;
}

static int rgpu_cu_emu_event_done(rgpu_cu_ctx_t *ctx, void *event)
{
    (void)ctx;
    (void)event;
    return RGPU_CU_SUCCESS;
}

/* cudaEventDisableTiming */
#define RGPU_CU_EVENT_DISABLE_TIMING 0x2

static int rgpu_cu_emu_event_elapsed(rgpu_cu_ctx_t *ctx, void *start, void *end, float *ms_p)
{
    rgpu_cu_emu_event_t *a = start, *b = end;

    (void)ctx;
    /* As the driver: both recorded, both with timing. */
    if (!a->recorded || !b->recorded || (a->flags | b->flags) & RGPU_CU_EVENT_DISABLE_TIMING)
        return RGPU_CU_INVALID_HANDLE;
    *ms_p = (float)((double)(b->when.tv_sec - a->when.tv_sec) * 1e3 +
                    (double)(b->when.tv_nsec - a->when.tv_nsec) / 1e6);
    return RGPU_CU_SUCCESS;
}

/* ---- copies, memsets, launches ------------------------------------------ */

static int rgpu_cu_emu_copy_h2d(rgpu_cu_ctx_t *ctx, void *stream, const rgpu_cu_rect_t *dst,
                                rgpu_cu_source_fn source, void *arg, rgpu_status_t *link_p)
{
    (void)stream;
    for (uint64_t row = 0; row < dst->height; row++) {
        uint8_t *p = rgpu__cu_emu_ptr(ctx, dst->addr + row * dst->pitch, dst->width);

        if (!p)
            return RGPU_CU_INVALID_VALUE;   /* checked by the caller: cannot happen */
        *link_p = source(arg, p, dst->width);
        if (*link_p != RGPU_OK)
            return RGPU_CU_UNKNOWN;
    }
    return RGPU_CU_SUCCESS;
}

static int rgpu_cu_emu_copy_d2h(rgpu_cu_ctx_t *ctx, void *stream, const rgpu_cu_rect_t *src,
                                rgpu_cu_sink_fn sink, void *arg, rgpu_status_t *link_p)
{
    (void)stream;
    for (uint64_t row = 0; row < src->height; row++) {
        const uint8_t *p = rgpu__cu_emu_ptr(ctx, src->addr + row * src->pitch, src->width);

        if (!p)
            return RGPU_CU_INVALID_VALUE;
        /* In pieces, so that a large copy reaches the client as it goes. */
        for (uint64_t off = 0; off < src->width; off += RGPU_CU_EMU_PIECE) {
            uint64_t n = src->width - off < RGPU_CU_EMU_PIECE ? src->width - off : RGPU_CU_EMU_PIECE;

            *link_p = sink(arg, p + off, n);
            if (*link_p != RGPU_OK)
                return RGPU_CU_UNKNOWN;
        }
    }
    return RGPU_CU_SUCCESS;
}

static int rgpu_cu_emu_copy_d2d(rgpu_cu_ctx_t *ctx, void *stream, const rgpu_cu_rect_t *dst,
                                const rgpu_cu_rect_t *src)
{
    (void)stream;
    for (uint64_t row = 0; row < dst->height; row++) {
        uint8_t *d = rgpu__cu_emu_ptr(ctx, dst->addr + row * dst->pitch, dst->width);
        const uint8_t *s = rgpu__cu_emu_ptr(ctx, src->addr + row * src->pitch, src->width);

        if (!d || !s)
            return RGPU_CU_INVALID_VALUE;
        memmove(d, s, dst->width);
    }
    return RGPU_CU_SUCCESS;
}

static int rgpu_cu_emu_memset(rgpu_cu_ctx_t *ctx, void *stream, const rgpu_cu_rect_t *dst,
                              uint32_t value, uint32_t element_size)
{
    (void)stream;
    for (uint64_t row = 0; row < dst->height; row++) {
        uint8_t *p = rgpu__cu_emu_ptr(ctx, dst->addr + row * dst->pitch,
                                      dst->width * element_size);

        if (!p)
            return RGPU_CU_INVALID_VALUE;
        if (element_size == 1) {
            memset(p, (int)(value & 0xff), dst->width);
            continue;
        }
        for (uint64_t i = 0; i < dst->width; i++) {
            if (element_size == 2) {
                uint16_t v = (uint16_t)value;
                memcpy(p + 2 * i, &v, 2);
            } else {
                memcpy(p + 4 * i, &value, 4);
            }
        }
    }
    return RGPU_CU_SUCCESS;
}

static int rgpu_cu_emu_launch(rgpu_cu_ctx_t *ctx, void *fn_v, const uint32_t grid[3],
                              const uint32_t block[3], uint32_t shared_mem, void *stream,
                              const void *params, size_t params_len)
{
    rgpu_cu_emu_function_t *fn = fn_v;
    rgpu_cu_emu_launch_t launch = {.ctx = ctx, .params = params, .params_len = params_len,
                                   .offsets = fn->offsets};
    uint64_t threads = (uint64_t)block[0] * block[1] * block[2];

    (void)stream;
    /* The device's limits, as the driver checks them. */
    if (threads > 1024 || block[2] > 64 || grid[1] > 65535 || grid[2] > 65535 ||
        shared_mem > 232448)
        return RGPU_CU_INVALID_VALUE;
    if (params_len < fn->param_bytes)
        return RGPU_CU_INVALID_VALUE;
    memcpy(launch.grid, grid, sizeof(launch.grid));
    memcpy(launch.block, block, sizeof(launch.block));
    return fn->kernel->run(&launch);
}

void rgpu__cu_emu_param(const rgpu_cu_emu_launch_t *launch, uint32_t i, void *out, size_t size)
{
    /* The launch checked params_len against the layout. */
    memcpy(out, launch->params + launch->offsets[i], size);
}

const rgpu_cu_device_ops_t rgpu_cu_device_emulated = {
    .name = "cuda-emulated",
    .platform_name = "CUDA",
    .open = rgpu_cu_emu_open,
    .close = rgpu_cu_emu_close,
    .count = rgpu_cu_emu_count,
    .driver_version = rgpu_cu_emu_driver_version,
    .device_params = rgpu_cu_emu_device_params,
    .device_name = rgpu_cu_emu_device_name,
    .ctx_create = rgpu_cu_emu_ctx_create,
    .ctx_destroy = rgpu_cu_emu_ctx_destroy,
    .ctx_sync = rgpu_cu_emu_ctx_sync,
    .mem_alloc = rgpu_cu_emu_mem_alloc,
    .mem_free = rgpu_cu_emu_mem_free,
    .mem_info = rgpu_cu_emu_mem_info,
    .module_load = rgpu_cu_emu_module_load,
    .module_unload = rgpu_cu_emu_module_unload,
    .function_get = rgpu_cu_emu_function_get,
    .func_info = rgpu_cu_emu_func_info,
    .func_set_attr = rgpu_cu_emu_func_set_attr,
    .occupancy = rgpu_cu_emu_occupancy,
    .global_get = rgpu_cu_emu_global_get,
    .stream_create = rgpu_cu_emu_stream_create,
    .stream_destroy = rgpu_cu_emu_stream_destroy,
    .stream_sync = rgpu_cu_emu_stream_done,
    .stream_query = rgpu_cu_emu_stream_done,
    .stream_wait_event = rgpu_cu_emu_stream_wait_event,
    .event_create = rgpu_cu_emu_event_create,
    .event_destroy = rgpu_cu_emu_event_destroy,
    .event_record = rgpu_cu_emu_event_record,
    .event_sync = rgpu_cu_emu_event_done,
    .event_query = rgpu_cu_emu_event_done,
    .event_elapsed = rgpu_cu_emu_event_elapsed,
    .copy_h2d = rgpu_cu_emu_copy_h2d,
    .copy_d2h = rgpu_cu_emu_copy_d2h,
    .copy_d2d = rgpu_cu_emu_copy_d2d,
    .memset = rgpu_cu_emu_memset,
    .launch = rgpu_cu_emu_launch,
};

/* ---- the backend -------------------------------------------------------- */

static char rgpu_cu_emu_why[256];

static rgpu_status_t rgpu_cu_emu_backend_open(const rgpu_server_config_t *config,
                                              rgpu_backend_t **backend_p)
{
    return rgpu__cu_backend_open(&rgpu_cu_device_emulated, config, backend_p, rgpu_cu_emu_why,
                                 sizeof(rgpu_cu_emu_why));
}

static const char *rgpu_cu_emu_open_failure(void)
{
    return rgpu_cu_emu_why;
}

const rgpu_backend_ops_t rgpu_backend_cuda_emulated_ops =
    RGPU_CU_BACKEND_OPS("cuda-emulated", &rgpu_cu_device_emulated, rgpu_cu_emu_backend_open,
                        rgpu_cu_emu_open_failure);
