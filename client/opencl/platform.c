/*
 * The rgpu platform: one OpenCL platform whose devices are the devices of
 * every server in RGPU_SERVERS. Connections open lazily, once, the first time
 * the loader asks for platforms; a server that cannot be reached is named in
 * a warning with the reason, and its devices are simply absent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "icd.h"
#include "rgpu/client_lease.h"

#define RGPU_CL_PLATFORM_VERSION "OpenCL 1.2 rgpu 0.1.0"

static struct _cl_platform_id rgpu_cl_platform = {&rgpu__cl_dispatch, 0, NULL};
static rgpu_cl_server_t *rgpu_cl_servers;
static size_t rgpu_cl_num_servers;
static pthread_once_t rgpu_cl_once = PTHREAD_ONCE_INIT;

/* ---- what a server's bytes must look like ---- */

/* How a parameter's value is shaped, to check what a server sent before
 * anything reads it: a server may be buggy or hostile. Strings are made
 * NUL-terminated for everyone. Fixed sizes are enforced where the client
 * reads the value itself; other values go to the application as the
 * platform gave them, as a local platform would give them (PoCL 3.1 answers
 * CL_DEVICE_DEVICE_ENQUEUE_CAPABILITIES, a cl_bitfield, in 4 bytes). */
enum { RGPU_CL_SHAPE_FIXED, RGPU_CL_SHAPE_ARRAY, RGPU_CL_SHAPE_STRING };

typedef struct {
    cl_uint param;
    uint8_t shape;
    uint8_t size;       /* FIXED: the size; ARRAY: the element's */
} rgpu_cl_shape_t;

#define RGPU_CL_U32(p) {p, RGPU_CL_SHAPE_FIXED, sizeof(cl_uint)}
#define RGPU_CL_U64(p) {p, RGPU_CL_SHAPE_FIXED, sizeof(cl_ulong)}
#define RGPU_CL_STR(p) {p, RGPU_CL_SHAPE_STRING, 1}

static const rgpu_cl_shape_t rgpu_cl_device_shapes[] = {
    RGPU_CL_STR(CL_DEVICE_NAME), RGPU_CL_STR(CL_DEVICE_VENDOR), RGPU_CL_STR(CL_DRIVER_VERSION),
    RGPU_CL_STR(CL_DEVICE_PROFILE), RGPU_CL_STR(CL_DEVICE_VERSION), RGPU_CL_STR(CL_DEVICE_EXTENSIONS),
    RGPU_CL_STR(CL_DEVICE_OPENCL_C_VERSION), RGPU_CL_STR(CL_DEVICE_BUILT_IN_KERNELS),
    RGPU_CL_STR(CL_DEVICE_IL_VERSION), RGPU_CL_STR(CL_DEVICE_LATEST_CONFORMANCE_VERSION_PASSED),
    RGPU_CL_STR(CL_DEVICE_SPIR_VERSIONS),
    /* read here: platform.c and mem.c */
    RGPU_CL_U64(CL_DEVICE_TYPE), RGPU_CL_U64(CL_DEVICE_MAX_MEM_ALLOC_SIZE), RGPU_CL_U32(CL_DEVICE_MEM_BASE_ADDR_ALIGN),
};

/* The info replies the client reads itself, by which (object, build, ...). */
static const struct {
    Rgpu__ClInfoWhich which;
    rgpu_cl_shape_t shape;
} rgpu_cl_info_shapes[] = {
    {RGPU__CL_INFO_WHICH__CL_INFO_OBJECT, RGPU_CL_U32(CL_EVENT_COMMAND_EXECUTION_STATUS)},
    {RGPU__CL_INFO_WHICH__CL_INFO_OBJECT, {CL_PROGRAM_BINARY_SIZES, RGPU_CL_SHAPE_ARRAY, sizeof(size_t)}},
};

/* Does a value of size bytes fit the shape? Strings are checked apart. */
static int rgpu_cl_shape_fits(const rgpu_cl_shape_t *shape, size_t size)
{
    switch (shape->shape) {
    case RGPU_CL_SHAPE_FIXED:
        return size == shape->size;
    case RGPU_CL_SHAPE_ARRAY:
        return size % shape->size == 0;
    default:
        return 1;
    }
}

/* A string as the server sent it, as one the application can use: up to
 * the first NUL or the end of what came, NUL-terminated. Returns a copy to
 * free, or NULL when the value was a proper string already (or no memory:
 * then *size_p is 0 and the parameter is left out). */
static char *rgpu_cl_terminate(const void *value, size_t *size_p)
{
    size_t len = *size_p ? strnlen(value, *size_p) : 0;
    char *copy;

    if (len + 1 == *size_p)
        return NULL;
    copy = malloc(len + 1);
    if (copy) {
        if (len)
            memcpy(copy, value, len);
        copy[len] = '\0';
    }
    *size_p = copy ? len + 1 : 0;
    return copy;
}

/* ---- helpers shared by the ICD's files ---- */

cl_int rgpu__cl_info(const void *src, size_t src_size, size_t dst_size, void *dst, size_t *size_ret)
{
    if (dst) {
        if (dst_size < src_size)
            return CL_INVALID_VALUE;
        if (src_size)
            memcpy(dst, src, src_size);
    }
    if (size_ret)
        *size_ret = src_size;
    return CL_SUCCESS;
}

cl_int rgpu__cl_info_str(const char *str, size_t dst_size, void *dst, size_t *size_ret)
{
    return rgpu__cl_info(str, strlen(str) + 1, dst_size, dst, size_ret);
}

int rgpu__cl_valid(const void *obj, uint32_t magic)
{
    const rgpu_cl_obj_t *o = obj;

    return o && o->dispatch == &rgpu__cl_dispatch && o->magic == magic;
}

void rgpu__cl_obj_init(rgpu_cl_obj_t *obj, uint32_t magic, rgpu_cl_server_t *server)
{
    obj->dispatch = &rgpu__cl_dispatch;
    obj->magic = magic;
    atomic_init(&obj->refs, 1);
    obj->server = server;
    obj->id = rgpu_conn_new_id(server->conn);
}

static cl_int rgpu_cl_sync_check(rgpu_cl_server_t *server)
{
    Rgpu__Ping ping = RGPU__PING__INIT;
    rgpu_call_t call = {0};
    int32_t err;

    if (rgpu_conn_call(server->conn, RGPU__MSG_TYPE__MSG_PING, &ping.base, NULL, 0, &call) != RGPU_OK) {
        rgpu_call_cleanup(&call);
        return RGPU_CL_LINK_ERROR;
    }
    rgpu_call_cleanup(&call);
    err = rgpu_conn_take_deferred_error(server->conn);
    return err;
}

cl_int rgpu__cl_post(rgpu_cl_server_t *server, Rgpu__MsgType type, const ProtobufCMessage *msg,
                     const void *bulk, uint64_t bulk_len)
{
    if (rgpu_conn_post(server->conn, (uint16_t)type, msg, bulk, bulk_len) != RGPU_OK)
        return RGPU_CL_LINK_ERROR;
    if (rgpu_conn_sync_mode())
        return rgpu_cl_sync_check(server);
    return CL_SUCCESS;
}

cl_int rgpu__cl_call(rgpu_cl_server_t *server, Rgpu__MsgType type, const ProtobufCMessage *msg,
                     const void *bulk, uint64_t bulk_len, Rgpu__MsgType reply_type, rgpu_call_t *call)
{
    if (rgpu_conn_call(server->conn, (uint16_t)type, msg, bulk, bulk_len, call) != RGPU_OK) {
        rgpu_call_cleanup(call);
        return RGPU_CL_LINK_ERROR;
    }
    if (call->reply_type != (uint16_t)reply_type) {
        rgpu_warn("opencl", "server %s answered message %d with %u instead of %d", server->addr,
                  type, call->reply_type, reply_type);
        rgpu_call_cleanup(call);
        return RGPU_CL_LINK_ERROR;
    }
    return CL_SUCCESS;
}

cl_int rgpu__cl_call_status(rgpu_cl_server_t *server, Rgpu__MsgType type, const ProtobufCMessage *msg)
{
    rgpu_call_t call = {0};
    Rgpu__ClStatusReply *reply;
    cl_int err = rgpu__cl_call(server, type, msg, NULL, 0, RGPU__MSG_TYPE__MSG_CL_STATUS_REPLY, &call);

    if (err != CL_SUCCESS)
        return err;
    reply = rgpu__cl_status_reply__unpack(NULL, call.body_len, call.body);
    err = reply ? reply->cl_error : RGPU_CL_LINK_ERROR;
    if (reply)
        rgpu__cl_status_reply__free_unpacked(reply, NULL);
    rgpu_call_cleanup(&call);
    return err;
}

cl_int rgpu__cl_remote_info(rgpu_cl_server_t *server, Rgpu__ClObjectKind kind, uint64_t id,
                            Rgpu__ClInfoWhich which, cl_uint param, uint32_t device,
                            size_t size, void *value, size_t *size_ret)
{
    Rgpu__ClGetInfo req = RGPU__CL_GET_INFO__INIT;
    Rgpu__ClInfoReply *reply;
    rgpu_call_t call = {0};
    cl_int err;

    req.kind = kind;
    req.id = id;
    req.which = which;
    req.param = param;
    req.device = device;
    err = rgpu__cl_call(server, RGPU__MSG_TYPE__MSG_CL_GET_INFO, &req.base, NULL, 0,
                        RGPU__MSG_TYPE__MSG_CL_INFO_REPLY, &call);
    if (err != CL_SUCCESS)
        return err;
    reply = rgpu__cl_info_reply__unpack(NULL, call.body_len, call.body);
    if (!reply) {
        err = RGPU_CL_LINK_ERROR;
    } else {
        err = reply->cl_error;
        for (size_t i = 0; err == CL_SUCCESS && i < sizeof(rgpu_cl_info_shapes) / sizeof(rgpu_cl_info_shapes[0]);
             i++) {
            if (rgpu_cl_info_shapes[i].which != which || rgpu_cl_info_shapes[i].shape.param != param ||
                rgpu_cl_shape_fits(&rgpu_cl_info_shapes[i].shape, reply->value.len))
                continue;
            rgpu_warn("opencl", "server %s answered info %#x with %zu bytes, which cannot be its value",
                      server->addr, param, reply->value.len);
            err = RGPU_CL_LINK_ERROR;
        }
        if (err == CL_SUCCESS)
            err = rgpu__cl_info(reply->value.data, reply->value.len, size, value, size_ret);
        rgpu__cl_info_reply__free_unpacked(reply, NULL);
    }
    rgpu_call_cleanup(&call);
    return err;
}

void rgpu__cl_remote_release(rgpu_cl_server_t *server, Rgpu__ClObjectKind kind, uint64_t id)
{
    Rgpu__ClRelease req = RGPU__CL_RELEASE__INIT;

    req.kind = kind;
    req.id = id;
    rgpu__cl_post(server, RGPU__MSG_TYPE__MSG_CL_RELEASE, &req.base, NULL, 0);
}

/* ---- servers and devices ---- */

static const rgpu_cl_param_t *rgpu_cl_device_param(cl_device_id dev, cl_uint param)
{
    for (size_t i = 0; i < dev->num_params; i++) {
        if (dev->params[i].param == param)
            return &dev->params[i];
    }
    return NULL;
}

/* Extensions whose host API this ICD does not forward are not advertised. */
static void rgpu_cl_filter_extensions(const char *in, char *out, size_t cap)
{
    static const char *const dropped[] = {
        "cl_khr_il_program", "cl_khr_subgroups", "cl_khr_command_buffer", "cl_khr_gl_sharing",
        "cl_khr_external_memory", "cl_khr_external_semaphore", "cl_khr_semaphore",
        "cl_khr_create_command_queue", "cl_khr_suggested_local_work_size", "cl_intel_unified_shared_memory",
        "cl_khr_spir", "cl_ext_device_fission", "cl_khr_throttle_hints", "cl_khr_priority_hints",
    };
    char *copy = strdup(in), *save = NULL;
    size_t len = 0;

    out[0] = '\0';
    if (!copy)
        return;
    for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        int keep = 1;
        for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
            keep &= strncmp(tok, dropped[i], strlen(dropped[i])) != 0;
        if (keep && len + strlen(tok) + 2 < cap)
            len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? " " : "", tok);
    }
    free(copy);
}

/* Adds one parameter of the server's handshake to the device's cache,
 * checked: a string is made NUL-terminated, a value of the wrong size for
 * its parameter is left out (with a warning), as if the server had not sent
 * it. Returns 0, or -1 when out of memory. */
static int rgpu_cl_device_param_take(rgpu_cl_server_t *server, cl_device_id dev, const Rgpu__DeviceParam *in)
{
    rgpu_cl_param_t *out = &dev->params[dev->num_params];
    const rgpu_cl_shape_t *shape = NULL;

    for (size_t i = 0; i < sizeof(rgpu_cl_device_shapes) / sizeof(rgpu_cl_device_shapes[0]); i++) {
        if (rgpu_cl_device_shapes[i].param == in->param)
            shape = &rgpu_cl_device_shapes[i];
    }
    out->param = in->param;
    out->size = in->value.len;
    out->value = in->value.data;
    if (shape && shape->shape == RGPU_CL_SHAPE_STRING) {
        char *copy = rgpu_cl_terminate(in->value.data, &out->size);
        if (!copy && out->size == 0)
            return -1;
        if (copy)
            out->value = dev->strings[dev->num_strings++] = copy;
    } else if (shape && !rgpu_cl_shape_fits(shape, out->size)) {
        rgpu_warn("opencl", "server %s sent device parameter %#x with %zu bytes, which cannot be its value: "
                  "ignored", server->addr, in->param, out->size);
        return 0;
    }
    dev->num_params++;
    return 0;
}

static int rgpu_cl_server_devices(rgpu_cl_server_t *server)
{
    Rgpu__HelloReply *hello = server->hello;

    server->devices = calloc(hello->n_devices, sizeof(*server->devices));
    if (!server->devices)
        return -1;
    for (size_t d = 0; d < hello->n_devices; d++) {
        cl_device_id dev = &server->devices[d];
        const Rgpu__Device *rd = hello->devices[d];
        const rgpu_cl_param_t *p;

        dev->dispatch = &rgpu__cl_dispatch;
        dev->magic = RGPU_CL_MAGIC_DEVICE;
        dev->server = server;
        dev->index = rd->index;
        dev->params = calloc(rd->n_params, sizeof(*dev->params));
        dev->strings = calloc(rd->n_params, sizeof(*dev->strings));
        if (!dev->params || !dev->strings)
            return -1;
        for (size_t i = 0; i < rd->n_params; i++) {
            if (rgpu_cl_device_param_take(server, dev, rd->params[i]) != 0)
                return -1;
        }
        p = rgpu_cl_device_param(dev, CL_DEVICE_TYPE);
        if (p)
            memcpy(&dev->type, p->value, sizeof(cl_device_type));
        p = rgpu_cl_device_param(dev, CL_DEVICE_VERSION);
        /* The ICD implements the OpenCL 1.2 API whatever the device speaks. */
        snprintf(dev->version, sizeof(dev->version), "OpenCL 1.2 rgpu (remote %s)",
                 p ? (const char *)p->value : "unknown");
        p = rgpu_cl_device_param(dev, CL_DEVICE_EXTENSIONS);
        rgpu_cl_filter_extensions(p ? (const char *)p->value : "", dev->extensions, sizeof(dev->extensions));
        server->num_devices++;
    }
    return 0;
}

static void rgpu_cl_init(void)
{
    static rgpu_client_conf_t conf;     /* client.conf and RGPU_* (rgpu/client_lease.h) */
    static char servers[4096];
    const char *env = servers, *token = conf.token;
    char why[300];
    int timeout_ms;
    Rgpu__Hello hello = RGPU__HELLO__INIT;
    struct utsname uts;
    char host[256] = "";
    char *list, *save = NULL;
    size_t total = 0, n = 0;

    rgpu_log_init("librgpu-opencl", RGPU_LOG_WARN);
    if (rgpu_client_setup(&conf, servers, sizeof(servers), why, sizeof(why)) != 0) {
        rgpu_warn("opencl", "%s: the rgpu platform has no devices", why);
        return;
    }
    timeout_ms = conf.connect_timeout_ms;
    if (!*env) {
        rgpu_info("opencl", "neither RGPU_SERVERS nor RGPU_LEASE_TOKEN is set, nor servers in "
                            "%s: the rgpu platform has no devices",
                  conf.opt.file[0] ? conf.opt.file : "client.conf");
        return;
    }
    uname(&uts);
    gethostname(host, sizeof(host) - 1);
    hello.protocol_version = RGPU_PROTOCOL_VERSION;
    hello.client_arch = uts.machine;
    hello.api = RGPU__API_FAMILY__API_OPENCL;
    hello.client_host = host;
    hello.client_pid = (uint32_t)getpid();
    hello.lease_token = token ? (char *)token : "";

    list = strdup(env);
    if (!list)
        return;
    n = strlen(env) / 2 + 1;    /* at least two characters per address but the last */
    rgpu_cl_servers = calloc(n + 1, sizeof(*rgpu_cl_servers));
    if (!rgpu_cl_servers)
        goto out_free_list;
    for (char *addr = strtok_r(list, ", ", &save); addr; addr = strtok_r(NULL, ", ", &save)) {
        rgpu_cl_server_t *server = &rgpu_cl_servers[rgpu_cl_num_servers++];
        rgpu_status_t status;

        snprintf(server->addr, sizeof(server->addr), "%s", addr);
        status = rgpu_conn_open(addr, &hello, timeout_ms, rgpu__cl_notify, server, &server->conn,
                                &server->hello, server->unreachable_reason,
                                sizeof(server->unreachable_reason));
        if (status != RGPU_OK) {
            server->conn = NULL;
            rgpu_warn("opencl", "rgpu server %s cannot be reached: %s; its devices are not available",
                      addr, server->unreachable_reason);
            continue;
        }
        if (!server->hello->little_endian) {
            rgpu_warn("opencl", "rgpu server %s is big-endian, which this client does not support", addr);
            continue;
        }
        if (rgpu_cl_server_devices(server) != 0)
            continue;
        total += server->num_devices;
        rgpu_info("opencl", "server %s: %s, %u device(s)", addr, server->hello->server_name,
                  server->num_devices);
    }
    rgpu_cl_platform.devices = calloc(total ? total : 1, sizeof(cl_device_id));
    if (!rgpu_cl_platform.devices)
        goto out_free_list;
    for (size_t s = 0; s < rgpu_cl_num_servers; s++) {
        for (cl_uint d = 0; d < rgpu_cl_servers[s].num_devices; d++)
            rgpu_cl_platform.devices[rgpu_cl_platform.num_devices++] = &rgpu_cl_servers[s].devices[d];
    }
out_free_list:
    free(list);
}

static void rgpu_cl_ensure_init(void)
{
    pthread_once(&rgpu_cl_once, rgpu_cl_init);
}

/* ---- platform ---- */

cl_int CL_API_CALL rgpu_clGetPlatformIDs(cl_uint num_entries, cl_platform_id *platforms, cl_uint *num_platforms)
{
    if ((num_entries == 0 && platforms) || (!platforms && !num_platforms))
        return CL_INVALID_VALUE;
    rgpu_cl_ensure_init();
    if (platforms)
        platforms[0] = &rgpu_cl_platform;
    if (num_platforms)
        *num_platforms = 1;
    return CL_SUCCESS;
}

RGPU_CL_API cl_int CL_API_CALL clIcdGetPlatformIDsKHR(cl_uint num_entries, cl_platform_id *platforms,
                                                      cl_uint *num_platforms)
{
    return rgpu_clGetPlatformIDs(num_entries, platforms, num_platforms);
}

cl_int CL_API_CALL rgpu_clGetPlatformInfo(cl_platform_id platform, cl_platform_info param, size_t size,
                                          void *value, size_t *size_ret)
{
    if (platform && platform != &rgpu_cl_platform)
        return CL_INVALID_PLATFORM;
    switch (param) {
    case CL_PLATFORM_PROFILE:
        return rgpu__cl_info_str("FULL_PROFILE", size, value, size_ret);
    case CL_PLATFORM_VERSION:
        return rgpu__cl_info_str(RGPU_CL_PLATFORM_VERSION, size, value, size_ret);
    case CL_PLATFORM_NAME:
        return rgpu__cl_info_str("rgpu", size, value, size_ret);
    case CL_PLATFORM_VENDOR:
        return rgpu__cl_info_str("rgpu project", size, value, size_ret);
    case CL_PLATFORM_EXTENSIONS:
        return rgpu__cl_info_str("cl_khr_icd", size, value, size_ret);
    case CL_PLATFORM_ICD_SUFFIX_KHR:
        return rgpu__cl_info_str("rgpu", size, value, size_ret);
    case CL_PLATFORM_HOST_TIMER_RESOLUTION: {
        cl_ulong zero = 0;
        return rgpu__cl_info(&zero, sizeof(zero), size, value, size_ret);
    }
    default:
        return CL_INVALID_VALUE;
    }
}

RGPU_CL_API cl_int CL_API_CALL clGetPlatformInfo(cl_platform_id platform, cl_platform_info param, size_t size,
                                                 void *value, size_t *size_ret)
{
    return rgpu_clGetPlatformInfo(platform, param, size, value, size_ret);
}

void *CL_API_CALL rgpu_clGetExtensionFunctionAddressForPlatform(cl_platform_id platform, const char *name)
{
    if (platform && platform != &rgpu_cl_platform)
        return NULL;
    return rgpu_clGetExtensionFunctionAddress(name);
}

void *CL_API_CALL rgpu_clGetExtensionFunctionAddress(const char *name)
{
    if (name && strcmp(name, "clIcdGetPlatformIDsKHR") == 0)
        return (void *)clIcdGetPlatformIDsKHR;
    return NULL;
}

RGPU_CL_API void *CL_API_CALL clGetExtensionFunctionAddress(const char *name)
{
    return rgpu_clGetExtensionFunctionAddress(name);
}

/* ---- devices ---- */

cl_int CL_API_CALL rgpu_clGetDeviceIDs(cl_platform_id platform, cl_device_type type, cl_uint num_entries,
                                       cl_device_id *devices, cl_uint *num_devices)
{
    cl_uint found = 0;

    if (platform && platform != &rgpu_cl_platform)
        return CL_INVALID_PLATFORM;
    if ((num_entries == 0 && devices) || (!devices && !num_devices))
        return CL_INVALID_VALUE;
    rgpu_cl_ensure_init();
    for (cl_uint i = 0; i < rgpu_cl_platform.num_devices; i++) {
        cl_device_id dev = rgpu_cl_platform.devices[i];
        int match = type == CL_DEVICE_TYPE_ALL || (dev->type & type) ||
                    (type == CL_DEVICE_TYPE_DEFAULT && found == 0);
        if (!match)
            continue;
        if (devices && found < num_entries)
            devices[found] = dev;
        found++;
    }
    if (num_devices)
        *num_devices = found;
    if (found == 0) {
        static atomic_flag said = ATOMIC_FLAG_INIT;
        /* The reason was given when connecting; repeat it once where it bites. */
        int say = !atomic_flag_test_and_set(&said);
        for (size_t s = 0; say && s < rgpu_cl_num_servers; s++) {
            if (!rgpu_cl_servers[s].conn)
                rgpu_warn("opencl", "no devices: rgpu server %s cannot be reached: %s",
                          rgpu_cl_servers[s].addr, rgpu_cl_servers[s].unreachable_reason);
        }
        return CL_DEVICE_NOT_FOUND;
    }
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clGetDeviceInfo(cl_device_id dev, cl_device_info param, size_t size, void *value,
                                        size_t *size_ret)
{
    const rgpu_cl_param_t *p;

    if (!RGPU_CL_VALID(dev, DEVICE))
        return CL_INVALID_DEVICE;
    switch (param) {
    case CL_DEVICE_PLATFORM: {
        cl_platform_id platform = &rgpu_cl_platform;
        return rgpu__cl_info(&platform, sizeof(platform), size, value, size_ret);
    }
    case CL_DEVICE_PARENT_DEVICE: {
        cl_device_id none = NULL;
        return rgpu__cl_info(&none, sizeof(none), size, value, size_ret);
    }
    case CL_DEVICE_REFERENCE_COUNT: {
        cl_uint one = 1;
        return rgpu__cl_info(&one, sizeof(one), size, value, size_ret);
    }
    case CL_DEVICE_AVAILABLE: {
        cl_bool up = rgpu_conn_health(dev->server->conn, NULL) == RGPU_OK;
        return rgpu__cl_info(&up, sizeof(up), size, value, size_ret);
    }
    case CL_DEVICE_VERSION:
        return rgpu__cl_info_str(dev->version, size, value, size_ret);
    case CL_DEVICE_EXTENSIONS:
        return rgpu__cl_info_str(dev->extensions, size, value, size_ret);
    case CL_DEVICE_PARTITION_MAX_SUB_DEVICES:
    case CL_DEVICE_PARTITION_AFFINITY_DOMAIN: {
        /* Partitions are not forwarded (clCreateSubDevices fails): the
         * device says it has none, whatever the server's can do. */
        cl_uint none = 0;
        cl_device_affinity_domain no_domain = 0;
        if (param == CL_DEVICE_PARTITION_AFFINITY_DOMAIN)
            return rgpu__cl_info(&no_domain, sizeof(no_domain), size, value, size_ret);
        return rgpu__cl_info(&none, sizeof(none), size, value, size_ret);
    }
    case CL_DEVICE_PARTITION_PROPERTIES:
    case CL_DEVICE_PARTITION_TYPE: {
        cl_device_partition_property none = 0;
        return rgpu__cl_info(&none, sizeof(none), size, value, size_ret);
    }
    case CL_DEVICE_SVM_CAPABILITIES: {
        cl_device_svm_capabilities none = 0;
        return rgpu__cl_info(&none, sizeof(none), size, value, size_ret);
    }
    case CL_DEVICE_EXECUTION_CAPABILITIES: {
        /* Native kernels are host function pointers: they cannot run on
         * another machine (clEnqueueNativeKernel fails). */
        cl_device_exec_capabilities caps = CL_EXEC_KERNEL;
        return rgpu__cl_info(&caps, sizeof(caps), size, value, size_ret);
    }
    default:
        break;
    }
    p = rgpu_cl_device_param(dev, param);
    if (!p)
        return CL_INVALID_VALUE;
    return rgpu__cl_info(p->value, p->size, size, value, size_ret);
}

cl_int CL_API_CALL rgpu_clCreateSubDevices(cl_device_id dev, const cl_device_partition_property *props,
                                           cl_uint num_entries, cl_device_id *out, cl_uint *num_out)
{
    if (!RGPU_CL_VALID(dev, DEVICE))
        return CL_INVALID_DEVICE;
    /* Partitions are not forwarded, and the device lists no partition
     * property (CL_DEVICE_PARTITION_PROPERTIES): OpenCL's answer for a
     * property the device does not support is CL_INVALID_VALUE. */
    return CL_INVALID_VALUE;
}

cl_int CL_API_CALL rgpu_clRetainDevice(cl_device_id dev)
{
    return RGPU_CL_VALID(dev, DEVICE) ? CL_SUCCESS : CL_INVALID_DEVICE;
}

cl_int CL_API_CALL rgpu_clReleaseDevice(cl_device_id dev)
{
    return RGPU_CL_VALID(dev, DEVICE) ? CL_SUCCESS : CL_INVALID_DEVICE;
}

cl_int CL_API_CALL rgpu_clUnloadCompiler(void)
{
    return CL_SUCCESS;
}

cl_int CL_API_CALL rgpu_clUnloadPlatformCompiler(cl_platform_id platform)
{
    return platform == &rgpu_cl_platform ? CL_SUCCESS : CL_INVALID_PLATFORM;
}
