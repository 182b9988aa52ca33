/*
 * librgpu-opencl internals: the OpenCL objects of the ICD and the helpers
 * its files share. Private to client/opencl (symbols rgpu__cl_*).
 *
 * Every dispatchable object starts with the loader's dispatch pointer. The
 * objects mirror the server's: each has the 64-bit id the server knows it
 * by (assigned here, so creation needs no round trip) and the server it
 * lives on. Reference counts are kept here; the server's object is released
 * when ours reaches zero. Children hold a reference on their parents
 * (queue -> context, kernel -> program, sub-buffer -> buffer, 1D buffer
 * image -> buffer, sampler -> context), as the OpenCL specification
 * requires.
 */
#ifndef RGPU_CL_ICD_H
#define RGPU_CL_ICD_H

#define CL_TARGET_OPENCL_VERSION 300
#define CL_USE_DEPRECATED_OPENCL_1_0_APIS
#define CL_USE_DEPRECATED_OPENCL_1_1_APIS
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#define CL_USE_DEPRECATED_OPENCL_2_0_APIS
#include <CL/cl.h>
#include <CL/cl_ext.h>
#include <CL/cl_icd.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "live.h"
#include "opencl.pb-c.h"
#include "rgpu/client_core.h"
#include "rgpu/log.h"
#include "session.pb-c.h"

#define RGPU_CL_API __attribute__((visibility("default")))

extern cl_icd_dispatch rgpu__cl_dispatch;

enum {
    RGPU_CL_MAGIC_DEVICE = 0x52444556,  /* "RDEV" */
    RGPU_CL_MAGIC_CONTEXT = 0x52435458,
    RGPU_CL_MAGIC_QUEUE = 0x52515545,
    RGPU_CL_MAGIC_MEM = 0x524d454d,
    RGPU_CL_MAGIC_PROGRAM = 0x52505247,
    RGPU_CL_MAGIC_KERNEL = 0x524b524e,
    RGPU_CL_MAGIC_EVENT = 0x52455654,
    RGPU_CL_MAGIC_SAMPLER = 0x52534d50,
    RGPU_CL_MAGIC_DEAD = 0x44454144,    /* set when freed, to catch use after release */
};

/* One rgpu-server of RGPU_SERVERS. */
typedef struct rgpu_cl_server {
    char addr[128];
    rgpu_conn_t *conn;                  /* NULL when unreachable */
    char unreachable_reason[256];
    Rgpu__HelloReply *hello;
    cl_uint num_devices;
    struct _cl_device_id *devices;
} rgpu_cl_server_t;

/* The header every remote object shares. */
typedef struct {
    cl_icd_dispatch *dispatch;
    uint32_t magic;
    _Atomic cl_uint refs;
    uint64_t id;
    rgpu_cl_server_t *server;
} rgpu_cl_obj_t;

struct _cl_platform_id {
    cl_icd_dispatch *dispatch;
    cl_uint num_devices;
    cl_device_id *devices;
};

typedef struct {
    cl_uint param;
    size_t size;
    const void *value;
} rgpu_cl_param_t;

struct _cl_device_id {
    cl_icd_dispatch *dispatch;
    uint32_t magic;
    rgpu_cl_server_t *server;
    uint32_t index;                     /* the server's device index */
    cl_device_type type;
    size_t num_params;
    rgpu_cl_param_t *params;            /* point into server->hello or strings */
    char **strings;                     /* string params the server sent unterminated, terminated */
    size_t num_strings;
    char version[256];                  /* CL_DEVICE_VERSION as we present it */
    char extensions[4096];              /* CL_DEVICE_EXTENSIONS we can forward */
};

struct _cl_context {
    rgpu_cl_obj_t obj;
    cl_uint num_devices;
    cl_device_id *devices;
    cl_context_properties *props;       /* as given, 0-terminated, or NULL */
    size_t num_props;                   /* entries including the terminator */
    void(CL_CALLBACK *notify)(const char *, const void *, size_t, void *);
    void *notify_data;
    /* clGetSupportedImageFormats answers, asked once per flags and image
     * type (mem.c; rgpu__cl_context_release frees them). */
    struct rgpu_cl_formats *formats;
};

/* A non-blocking read whose data is still on its way. */
typedef struct rgpu_cl_read {
    rgpu_call_t call;
    _Atomic int refs;                   /* the queue's list, the event, the enqueuer */
    struct rgpu_cl_read *next;          /* in the queue's list */
    /* rect reads: the packed reply is scattered into the host region */
    void *scatter_dst;
    size_t region[3];
    size_t row_pitch, slice_pitch;
} rgpu_cl_read_t;

struct _cl_command_queue {
    rgpu_cl_obj_t obj;
    cl_context context;
    cl_device_id device;
    cl_command_queue_properties props;
    pthread_mutex_t lock;
    rgpu_cl_read_t *reads;              /* non-blocking reads in flight */
};

typedef struct rgpu_cl_mapping {
    void *ptr;
    size_t offset, size;
    cl_map_flags flags;
    int owned;                          /* ptr was allocated here */
    /* Images: the mapped region and how it lies at ptr. */
    int image;
    size_t origin[3], region[3];
    size_t row_pitch, slice_pitch;
    struct rgpu_cl_mapping *next;
} rgpu_cl_mapping_t;

typedef struct rgpu_cl_destructor {
    void(CL_CALLBACK *fn)(cl_mem, void *);
    void *data;
    struct rgpu_cl_destructor *next;
} rgpu_cl_destructor_t;

struct _cl_mem {
    rgpu_cl_obj_t obj;
    cl_context context;
    cl_mem_flags flags;
    size_t size;
    void *host_ptr;                     /* USE_HOST_PTR: the application's memory */
    cl_mem parent;                      /* sub-buffers */
    size_t origin;
    pthread_mutex_t lock;
    rgpu_cl_mapping_t *maps;
    cl_uint map_count;
    /* The memory of the last unmapped mapping, kept for the next map: a map
     * loop would otherwise pay a page fault per 4 KiB, every time. */
    void *map_spare;
    size_t map_spare_size;
    rgpu_cl_destructor_t *destructors;
    /* Images (image_type != 0; buffers have 0). A 1D buffer image's
     * buffer is its parent. */
    cl_mem_object_type image_type;
    cl_image_format format;
    size_t elem;                        /* bytes per pixel */
    size_t dims[4];                     /* width, height, depth, array size: 0 where the type has none */
    size_t row_pitch, slice_pitch;      /* as CL_IMAGE_*_PITCH: the application's for USE_HOST_PTR, else packed */
};

struct _cl_sampler {
    rgpu_cl_obj_t obj;
    cl_context context;
    cl_bool normalized_coords;
    cl_addressing_mode addressing_mode;
    cl_filter_mode filter_mode;
    cl_sampler_properties *props;       /* as given to clCreateSamplerWithProperties, 0-terminated, or NULL */
    size_t num_props;                   /* entries including the terminator */
};

/* A program's state per device, as the last build/compile/link left it. */
typedef struct {
    cl_build_status status;
    char *log;
    char *options;
    cl_program_binary_type binary_type;
} rgpu_cl_build_t;

struct _cl_program {
    rgpu_cl_obj_t obj;
    cl_context context;
    cl_uint num_devices;
    cl_device_id *devices;
    char *source;                       /* NULL for binaries */
    pthread_mutex_t lock;
    rgpu_cl_build_t *builds;            /* num_devices entries */
    Rgpu__ClBuildReply *kernels;        /* last reply that listed kernels, or NULL */
    _Atomic cl_uint num_kernel_objects; /* live kernels: builds are refused while > 0 */
    /* A build or compile sent the server a source with headers inlined
     * (include.h): every later one sends a source too, the original when
     * nothing is inlined, so none builds a stale one. Under lock. */
    int source_sent;
};

struct _cl_kernel {
    rgpu_cl_obj_t obj;
    cl_program program;
    /* Points into program->kernels, which cannot change while a kernel
     * exists (rebuilding a program with kernels is refused). */
    const Rgpu__ClKernelDesc *desc;
    unsigned char *arg_is_set;
};

struct _cl_event {
    rgpu_cl_obj_t obj;
    cl_context context;
    cl_command_queue queue;             /* NULL for user events */
    cl_command_type type;
    rgpu_cl_read_t *read;               /* a non-blocking read this event completes */
    atomic_flag user_status_set;        /* user events: clSetUserEventStatus ran */
};

/* ---- shared helpers (objects.c, platform.c) ---- */

/* Copies a value into the application's buffer per the clGet*Info contract. */
cl_int rgpu__cl_info(const void *src, size_t src_size, size_t dst_size, void *dst, size_t *size_ret);
cl_int rgpu__cl_info_str(const char *str, size_t dst_size, void *dst, size_t *size_ret);

/* Is this a live object of ours of that kind? */
int rgpu__cl_valid(const void *obj, uint32_t magic);
#define RGPU_CL_VALID(o, kind) rgpu__cl_valid((o), RGPU_CL_MAGIC_##kind)

void rgpu__cl_obj_init(rgpu_cl_obj_t *obj, uint32_t magic, rgpu_cl_server_t *server);

/* Sends an asynchronous request. With RGPU_SYNC=1 waits for the server and
 * returns the call's own error. dead_error is what to return when the link
 * is gone. */
cl_int rgpu__cl_post(rgpu_cl_server_t *server, Rgpu__MsgType type, const ProtobufCMessage *msg,
                     const void *bulk, uint64_t bulk_len);

/* A round trip: sends, waits, checks the reply type. On success the caller
 * unpacks call->body and then calls rgpu_call_cleanup. */
cl_int rgpu__cl_call(rgpu_cl_server_t *server, Rgpu__MsgType type, const ProtobufCMessage *msg,
                     const void *bulk, uint64_t bulk_len, Rgpu__MsgType reply_type, rgpu_call_t *call);

/* A round trip answered by ClStatusReply; returns its cl_error. */
cl_int rgpu__cl_call_status(rgpu_cl_server_t *server, Rgpu__MsgType type, const ProtobufCMessage *msg);

/* clGet*Info on the server's object: fills the application's buffer. */
cl_int rgpu__cl_remote_info(rgpu_cl_server_t *server, Rgpu__ClObjectKind kind, uint64_t id,
                            Rgpu__ClInfoWhich which, cl_uint param, uint32_t device,
                            size_t size, void *value, size_t *size_ret);

/* Releases the server's object (asynchronous). */
void rgpu__cl_remote_release(rgpu_cl_server_t *server, Rgpu__ClObjectKind kind, uint64_t id);

/* The error an API call returns when its server is gone. */
#define RGPU_CL_LINK_ERROR CL_OUT_OF_RESOURCES

/* Every live buffer and sub-buffer (mem.c): clSetKernelArg looks an
 * application's 8 bytes up here instead of reading them as an object. */
extern rgpu_cl_live_t rgpu__cl_live_mems;
/* Every live sampler (sampler.c), for clSetKernelArg the same way. */
extern rgpu_cl_live_t rgpu__cl_live_samplers;

/* ---- images (mem.c) ---- */

/* Bytes per pixel of an image format; 0 for a combination OpenCL does not
 * define. */
size_t rgpu__cl_image_elem_size(const cl_image_format *format);

/* A region of an image as host memory holds it: rows of row_bytes, rows
 * rows per slice, slices slices (a 1D array's images are its slices), at
 * the host's pitches. The wire carries it packed. */
typedef struct {
    size_t row_bytes, rows, slices;
    size_t row_pitch, slice_pitch;
} rgpu_cl_image_shape_t;

/* Resolves pitches (0: packed) for a region of image. CL_SUCCESS, or
 * CL_INVALID_VALUE when a pitch is too small for the region. */
cl_int rgpu__cl_image_shape(cl_mem image, const size_t region[3], size_t row_pitch, size_t slice_pitch,
                            rgpu_cl_image_shape_t *shape);
int rgpu__cl_image_shape_packed(const rgpu_cl_image_shape_t *shape);

/* Frees a context's cached image formats (rgpu__cl_context_release). */
void rgpu__cl_formats_free(cl_context context);

/* ---- per-object internals used across files ---- */
cl_int rgpu__cl_wait_list(cl_command_queue queue, cl_uint num, const cl_event *list, uint64_t **ids_p);
/* Creates the event an enqueue returns (NULL when the application wants none). */
cl_event rgpu__cl_event_new(cl_command_queue queue, cl_command_type type, cl_event *out);
void rgpu__cl_event_drop(cl_event event);  /* undo rgpu__cl_event_new after a failed enqueue */
void rgpu__cl_read_put(rgpu_cl_read_t *read);
/* Waits for the reads in flight of a queue (after its finish); returns the
 * first error among them. */
cl_int rgpu__cl_queue_drain_reads(cl_command_queue queue);
void rgpu__cl_context_retain(cl_context context);
void rgpu__cl_context_release(cl_context context);
void rgpu__cl_notify(void *arg, uint16_t type, const uint8_t *body, size_t len);

/* ---- the API (one function per dispatch slot we implement) ---- */
/* Each rgpu_clX has exactly the type of the loader's dispatch slot. */
#define RGPU_CL_FN(name) __typeof__(*(cl_api_##name)0) rgpu_##name;
#include "api.def"
#undef RGPU_CL_FN

#endif
