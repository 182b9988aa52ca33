/*
 * librgpu-opencl against a rogue server: a scripted peer answers the
 * handshake with device parameters no honest server sends (strings without
 * their NUL, a NUL in the middle, values of the wrong size). The ICD is
 * loaded as the loader loads it (dlopen, clIcdGetPlatformIDsKHR, then the
 * dispatch table); ASan says whether anything reads past what came. The
 * peer speaks through the wire layer (rgpu/wire.h), as rgpu-server does,
 * and records what went wrong for the test's thread to assert (Criterion's
 * asserts belong to that thread).
 */
#define CL_TARGET_OPENCL_VERSION 300
#include <CL/cl.h>
#include <CL/cl_icd.h>
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "rgpu/frame.h"
#include "rgpu/transport.h"
#include "rgpu/wire.h"
#include "session.pb-c.h"

static rgpu_listener_t *listener;
static rgpu_link_t *link_;
static pthread_t peer_thread;
static const char *peer_failure;    /* the peer's first failed step, or NULL */

static void param(Rgpu__DeviceParam *p, cl_uint name, const void *value, size_t len)
{
    rgpu__device_param__init(p);
    p->param = name;
    p->value.data = (uint8_t *)value;
    p->value.len = len;
}

/* Accepts the ICD and answers its hello with one rogue device. */
static void *peer_main(void *arg)
{
    static char extensions[8192];
    static const char name[] = {'r', 'o', 'g', 'u', 'e'};                 /* no NUL */
    static const char vendor[] = {'a', 'b', '\0', 'c', 'd'};               /* NUL inside, none at the end */
    static const char version[] = {'O', 'p', 'e', 'n', 'C', 'L', ' ', '3'}; /* no NUL */
    static const uint8_t short_type[3] = {4, 0, 0};                        /* cl_device_type is 8 bytes */
    static const uint8_t short_alloc[2] = {1, 1};                          /* cl_ulong */
    static const cl_device_exec_capabilities caps = CL_EXEC_KERNEL | CL_EXEC_NATIVE_KERNEL;
    Rgpu__DeviceParam params[7], *param_ptrs[7];
    Rgpu__Device dev = RGPU__DEVICE__INIT, *devs[1] = {&dev};
    Rgpu__HelloReply reply = RGPU__HELLO_REPLY__INIT;
    struct pollfd pfd = {rgpu_tcp_ops.listener_fd(listener), POLLIN, 0};

    (void)arg;
    /* "cl_khr_fp64 " and then one endless unterminated token */
    memset(extensions, 'x', sizeof(extensions));
    memcpy(extensions, "cl_khr_fp64 ", 12);
    param(&params[0], CL_DEVICE_NAME, name, sizeof(name));
    param(&params[1], CL_DEVICE_VENDOR, vendor, sizeof(vendor));
    param(&params[2], CL_DEVICE_VERSION, version, sizeof(version));
    param(&params[3], CL_DEVICE_EXTENSIONS, extensions, sizeof(extensions));
    param(&params[4], CL_DEVICE_TYPE, short_type, sizeof(short_type));
    param(&params[5], CL_DEVICE_MAX_MEM_ALLOC_SIZE, short_alloc, sizeof(short_alloc));
    param(&params[6], CL_DEVICE_EXECUTION_CAPABILITIES, &caps, sizeof(caps));
    for (int i = 0; i < 7; i++)
        param_ptrs[i] = &params[i];
    dev.n_params = 7;
    dev.params = param_ptrs;
    reply.protocol_version = RGPU_PROTOCOL_VERSION;
    reply.server_name = "rogue test peer";
    reply.little_endian = 1;
    reply.n_devices = 1;
    reply.devices = devs;

    if (poll(&pfd, 1, 10000) != 1) {
        peer_failure = "the ICD did not connect within 10 s";
    } else if (rgpu_tcp_ops.accept(listener, &link_) != RGPU_OK) {
        peer_failure = "accept failed";
    } else {
        rgpu_wire_rx_t rx;
        rgpu_wire_frame_t f;
        char why[256];

        rgpu_wire_rx_init(&rx, link_, NULL, 1u << 20);
        if (rgpu_wire_recv(&rx, &f, -1, why, sizeof(why)) != RGPU_OK)
            peer_failure = "the ICD's hello did not arrive";
        else if (f.header.type != RGPU__MSG_TYPE__MSG_HELLO)
            peer_failure = "the ICD's first frame is no hello";
        else if (rgpu_wire_send(link_, RGPU__MSG_TYPE__MSG_HELLO_REPLY, f.header.seq, 0, &reply.base, NULL, 0) !=
                 RGPU_OK)
            peer_failure = "the reply could not be sent";
        rgpu_wire_rx_fini(&rx);
    }
    return NULL;
}

/* A string parameter as the application reads it: size first, then the value. */
static void expect_str(const cl_icd_dispatch *d, cl_device_id dev, cl_device_info which, const char *want)
{
    size_t size = 0, size2 = 0;
    char *value;

    cr_assert_eq(d->clGetDeviceInfo(dev, which, 0, NULL, &size), CL_SUCCESS);
    cr_assert_gt(size, 0);
    value = malloc(size);
    cr_assert_eq(d->clGetDeviceInfo(dev, which, size, value, &size2), CL_SUCCESS);
    cr_assert_eq(size2, size);
    cr_assert_eq(value[size - 1], '\0', "param %#x: no NUL at the end of its %zu bytes", which, size);
    if (want)
        cr_assert_str_eq(value, want);
    free(value);
}

Test(client_rogue_server, handshake_strings_and_sizes, .timeout = 30)
{
    cl_int (*get_platforms)(cl_uint, cl_platform_id *, cl_uint *);
    const cl_icd_dispatch *d;
    cl_platform_id platform;
    cl_device_id dev;
    cl_device_exec_capabilities caps = 0;
    cl_ulong alloc = 0;
    cl_device_type type = 0;
    size_t size = 0;
    cl_uint n = 0;
    void *icd;
    char *ext;

    cr_assert_eq(rgpu_tcp_ops.listen("127.0.0.1:0", &listener), RGPU_OK);
    cr_assert_eq(pthread_create(&peer_thread, NULL, peer_main, NULL), 0);
    setenv("RGPU_SERVERS", listener->local, 1);
    icd = dlopen(RGPU_TEST_ICD, RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(icd, "%s", dlerror());
    *(void **)&get_platforms = dlsym(icd, "clIcdGetPlatformIDsKHR");
    cr_assert_not_null(get_platforms);
    cr_assert_eq(get_platforms(1, &platform, &n), CL_SUCCESS);
    pthread_join(peer_thread, NULL);
    cr_assert_null(peer_failure, "the rogue peer: %s", peer_failure);
    d = *(cl_icd_dispatch *const *)platform;
    cr_assert_eq(d->clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, 1, &dev, &n), CL_SUCCESS);
    cr_assert_eq(n, 1);

    expect_str(d, dev, CL_DEVICE_NAME, "rogue");
    expect_str(d, dev, CL_DEVICE_VENDOR, "ab");
    expect_str(d, dev, CL_DEVICE_VERSION, "OpenCL 1.2 rgpu (remote OpenCL 3)");
    expect_str(d, dev, CL_DEVICE_EXTENSIONS, NULL);
    cr_assert_eq(d->clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, NULL, &size), CL_SUCCESS);
    ext = malloc(size);
    cr_assert_eq(d->clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, size, ext, NULL), CL_SUCCESS);
    cr_assert(strstr(ext, "cl_khr_fp64") != NULL, "extensions: %s", ext);
    free(ext);
    /* Values of the wrong size are left out, not read. */
    cr_assert_eq(d->clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof(type), &type, NULL), CL_INVALID_VALUE);
    cr_assert_eq(d->clGetDeviceInfo(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof(alloc), &alloc, NULL),
                 CL_INVALID_VALUE);
    /* Native kernels cannot run remotely, whatever the server says. */
    cr_assert_eq(d->clGetDeviceInfo(dev, CL_DEVICE_EXECUTION_CAPABILITIES, sizeof(caps), &caps, NULL), CL_SUCCESS);
    cr_assert_eq(caps, CL_EXEC_KERNEL);
}
