/*
 * fuzz_hello: the client's side of the handshake on what a hostile or
 * broken server may answer.
 *
 *   1. rgpu_conn_open (client/core/conn.c) against a fake server in this
 *      process, on 127.0.0.1, that reads the client's Hello and answers with
 *      the input: header checks, the reply matched to the call, a
 *      SessionError, unsolicited frames, bulk nobody asked for, a stream
 *      cut short;
 *   2. when a HelloReply comes back, the OpenCL ICD's device cache built
 *      from it (client/opencl/platform.c, rgpu_cl_server_devices and
 *      rgpu_cl_device_param_take, static there, so this file includes
 *      platform.c), then clGetDeviceIDs and clGetDeviceInfo on every
 *      parameter it holds and the ones the ICD answers itself, at every
 *      size.
 *
 * Input: one mode byte, then (mode & 3) 0: the HelloReply body; 1: a
 * SessionError body; 2: a split byte, then an unsolicited frame (type from
 * the next byte) before the HelloReply; 3: raw bytes as the whole answer
 * (after a header that announces its length, as a HelloReply). mode & 4: the
 * reply also announces a bulk of up to 255 bytes (from the input). Checks:
 * no crash or sanitizer report, rgpu_conn_open fails with a reason or
 * succeeds with a reply, every cached string parameter is NUL-terminated,
 * every value the ICD reads has its size, clGetDeviceInfo's size query
 * agrees with the copy.
 */
#include "../../client/opencl/platform.c"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include "fuzz_msgs.h"

static int rgpu_fuzz_listen_fd = -1;
static char rgpu_fuzz_addr[64];
static pthread_t rgpu_fuzz_thread;
static pthread_mutex_t rgpu_fuzz_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rgpu_fuzz_cond = PTHREAD_COND_INITIALIZER;
/* What the fake server answers to the next connection, and whether it did. */
static uint8_t *rgpu_fuzz_answer;
static size_t rgpu_fuzz_answer_len;
static int rgpu_fuzz_mode;
static int rgpu_fuzz_served;

static int rgpu_fuzz_read_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len) {
        ssize_t n = read(fd, p, len);

        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void rgpu_fuzz_write_all(int fd, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

/* The fake server: per connection, reads the Hello frame, sends the answer
 * with the Hello's seq patched in where the answer has a frame of ours,
 * half-closes, and reads until the client hangs up. */
static void *rgpu_fuzz_server_main(void *arg)
{
    for (;;) {
        int fd = accept(rgpu_fuzz_listen_fd, NULL, NULL);
        uint8_t head[RGPU_FRAME_HEADER_SIZE], sink[4096];
        rgpu_frame_header_t h;

        if (fd < 0)
            continue;
        if (rgpu_fuzz_read_all(fd, head, sizeof(head)) == 0 &&
            rgpu_frame_header_decode(head, NULL, &h) == RGPU_OK && h.body_len <= sizeof(sink) &&
            rgpu_fuzz_read_all(fd, sink, h.body_len) == 0) {
            pthread_mutex_lock(&rgpu_fuzz_lock);
            /* Frames the harness made carry seq 0xffff...: the Hello's. */
            for (size_t off = 0; off + RGPU_FRAME_HEADER_SIZE <= rgpu_fuzz_answer_len && rgpu_fuzz_mode != 3;) {
                rgpu_frame_header_t a;

                if (rgpu_frame_header_decode(rgpu_fuzz_answer + off, NULL, &a) != RGPU_OK)
                    break;
                if (a.seq == UINT64_MAX) {
                    a.seq = h.seq;
                    rgpu_frame_header_encode(&a, rgpu_fuzz_answer + off);
                }
                off += RGPU_FRAME_HEADER_SIZE + a.body_len + a.bulk_len;
            }
            rgpu_fuzz_write_all(fd, rgpu_fuzz_answer, rgpu_fuzz_answer_len);
            pthread_mutex_unlock(&rgpu_fuzz_lock);
        }
        shutdown(fd, SHUT_WR);
        while (read(fd, sink, sizeof(sink)) > 0)
            ;
        close(fd);
        pthread_mutex_lock(&rgpu_fuzz_lock);
        rgpu_fuzz_served++;
        pthread_cond_signal(&rgpu_fuzz_cond);
        pthread_mutex_unlock(&rgpu_fuzz_lock);
    }
    return arg;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    cl_uint n;

    signal(SIGPIPE, SIG_IGN);
    rgpu_fuzz_listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    RGPU_FUZZ_CHECK(rgpu_fuzz_listen_fd >= 0);
    RGPU_FUZZ_CHECK(bind(rgpu_fuzz_listen_fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    RGPU_FUZZ_CHECK(listen(rgpu_fuzz_listen_fd, 16) == 0);
    RGPU_FUZZ_CHECK(getsockname(rgpu_fuzz_listen_fd, (struct sockaddr *)&sin, &len) == 0);
    snprintf(rgpu_fuzz_addr, sizeof(rgpu_fuzz_addr), "127.0.0.1:%u", ntohs(sin.sin_port));
    RGPU_FUZZ_CHECK(pthread_create(&rgpu_fuzz_thread, NULL, rgpu_fuzz_server_main, NULL) == 0);
    /* The ICD's own one-time initialization, with no servers: the platform
     * exists and has no devices until an input gives it some. */
    unsetenv("RGPU_SERVERS");
    unsetenv("RGPU_LEASE_TOKEN");
    rgpu_clGetPlatformIDs(0, NULL, &n);
    /* After the ICD's rgpu_log_init: a hostile server is warned about
     * on every input otherwise. */
    rgpu_log_level = getenv("RGPU_FUZZ_LOG") ? RGPU_LOG_DEBUG : RGPU_LOG_ERROR;
    return 0;
}

static void rgpu_fuzz_frame(rgpu_fuzz_buf_t *out, uint16_t type, uint64_t seq, const uint8_t *body,
                            size_t len, const uint8_t *bulk, size_t bulk_len)
{
    uint8_t head[RGPU_FRAME_HEADER_SIZE];
    rgpu_frame_header_t h = {RGPU_PROTOCOL_VERSION, type, 0, (uint32_t)len, seq, bulk_len};

    rgpu_frame_header_encode(&h, head);
    rgpu_fuzz_buf_put(out, head, sizeof(head));
    rgpu_fuzz_buf_put(out, body, len);
    rgpu_fuzz_buf_put(out, bulk, bulk_len);
}

/* What the fake server answers, from the input. */
static void rgpu_fuzz_make_answer(rgpu_fuzz_in_t *in, int mode, rgpu_fuzz_buf_t *out)
{
    const uint8_t *bulk = NULL, *body;
    size_t bulk_len = 0, len;

    if (mode & 4)
        bulk_len = rgpu_fuzz_take(in, rgpu_fuzz_u8(in), &bulk);
    switch (mode & 3) {
    case 0:
        len = rgpu_fuzz_take(in, in->left, &body);
        rgpu_fuzz_frame(out, RGPU__MSG_TYPE__MSG_HELLO_REPLY, UINT64_MAX, body, len, bulk, bulk_len);
        break;
    case 1:
        len = rgpu_fuzz_take(in, in->left, &body);
        rgpu_fuzz_frame(out, RGPU__MSG_TYPE__MSG_SESSION_ERROR, rgpu_fuzz_u8(in) & 1 ? 0 : UINT64_MAX,
                        body, len, bulk, bulk_len);
        break;
    case 2: {
        uint8_t split = rgpu_fuzz_u8(in);
        uint8_t pick = rgpu_fuzz_u8(in);
        uint16_t type = rgpu_fuzz_msgs[pick % RGPU_FUZZ_NMSGS].type;

        len = rgpu_fuzz_take(in, split, &body);
        /* pick & 0x80: the unsolicited frame claims the Hello's seq. */
        rgpu_fuzz_frame(out, type, pick & 0x80 ? UINT64_MAX : 0, body, len, NULL, 0);
        len = rgpu_fuzz_take(in, in->left, &body);
        rgpu_fuzz_frame(out, RGPU__MSG_TYPE__MSG_HELLO_REPLY, UINT64_MAX, body, len, bulk, bulk_len);
        break;
    }
    default:
        len = rgpu_fuzz_take(in, in->left, &body);
        rgpu_fuzz_buf_put(out, body, len);
        break;
    }
}

/* Every device parameter the client caches or answers, queried every way. */
static void rgpu_fuzz_query(cl_device_id dev)
{
    static const cl_device_info fixed[] = {
        CL_DEVICE_PLATFORM, CL_DEVICE_PARENT_DEVICE, CL_DEVICE_REFERENCE_COUNT, CL_DEVICE_AVAILABLE,
        CL_DEVICE_IMAGE_SUPPORT, CL_DEVICE_VERSION, CL_DEVICE_EXTENSIONS, CL_DEVICE_SVM_CAPABILITIES,
        CL_DEVICE_EXECUTION_CAPABILITIES, CL_DEVICE_NAME, CL_DEVICE_TYPE,
        CL_DEVICE_MAX_MEM_ALLOC_SIZE, CL_DEVICE_MEM_BASE_ADDR_ALIGN, CL_DEVICE_GLOBAL_MEM_SIZE,
    };
    size_t nq = sizeof(fixed) / sizeof(fixed[0]) + dev->num_params;

    for (size_t q = 0; q < nq; q++) {
        cl_device_info param = q < sizeof(fixed) / sizeof(fixed[0])
                                   ? fixed[q] : dev->params[q - sizeof(fixed) / sizeof(fixed[0])].param;
        size_t size = 0, got = 0;
        cl_int err = rgpu_clGetDeviceInfo(dev, param, 0, NULL, &size);
        uint8_t *value;

        if (err != CL_SUCCESS) {
            RGPU_FUZZ_CHECK(err == CL_INVALID_VALUE);
            continue;
        }
        value = malloc(size ? size : 1);
        RGPU_FUZZ_CHECK(value);
        RGPU_FUZZ_CHECK(rgpu_clGetDeviceInfo(dev, param, size, value, &got) == CL_SUCCESS);
        RGPU_FUZZ_CHECK(got == size);
        if (size)
            RGPU_FUZZ_CHECK(rgpu_clGetDeviceInfo(dev, param, size - 1, value, NULL) ==
                            CL_INVALID_VALUE);
        free(value);
    }
}

/* The ICD's checks held: strings terminated, sizes it relies on right. */
static void rgpu_fuzz_check_device(cl_device_id dev)
{
    for (size_t i = 0; i < dev->num_params; i++) {
        const rgpu_cl_param_t *p = &dev->params[i];

        for (size_t s = 0; s < sizeof(rgpu_cl_device_shapes) / sizeof(rgpu_cl_device_shapes[0]); s++) {
            const rgpu_cl_shape_t *shape = &rgpu_cl_device_shapes[s];

            if (shape->param != p->param)
                continue;
            if (shape->shape == RGPU_CL_SHAPE_STRING)
                RGPU_FUZZ_CHECK(p->size >= 1 && ((const char *)p->value)[p->size - 1] == '\0');
            else
                RGPU_FUZZ_CHECK(rgpu_cl_shape_fits(shape, p->size));
        }
    }
    RGPU_FUZZ_CHECK(memchr(dev->version, '\0', sizeof(dev->version)));
    RGPU_FUZZ_CHECK(memchr(dev->extensions, '\0', sizeof(dev->extensions)));
}

static void rgpu_fuzz_free_devices(rgpu_cl_server_t *server, size_t made)
{
    for (size_t d = 0; d < made; d++) {
        for (size_t s = 0; s < server->devices[d].num_strings; s++)
            free(server->devices[d].strings[s]);
        free(server->devices[d].strings);
        free(server->devices[d].params);
    }
    free(server->devices);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rgpu_fuzz_in_t in = {data, size};
    int mode = rgpu_fuzz_u8(&in);
    rgpu_fuzz_buf_t answer = {0};
    Rgpu__Hello hello = RGPU__HELLO__INIT;
    rgpu_cl_server_t server;
    rgpu_status_t st;
    int served;

    rgpu_fuzz_make_answer(&in, mode, &answer);
    pthread_mutex_lock(&rgpu_fuzz_lock);
    rgpu_fuzz_answer = answer.p;
    rgpu_fuzz_answer_len = answer.len;
    rgpu_fuzz_mode = mode & 3;
    served = rgpu_fuzz_served;
    pthread_mutex_unlock(&rgpu_fuzz_lock);

    memset(&server, 0, sizeof(server));
    snprintf(server.addr, sizeof(server.addr), "%s", rgpu_fuzz_addr);
    hello.protocol_version = RGPU_PROTOCOL_VERSION;
    hello.client_arch = (char *)"fuzz";
    hello.api = RGPU__API_FAMILY__API_OPENCL;
    hello.client_host = (char *)"fuzz";
    hello.lease_token = (char *)"";
    st = rgpu_conn_open(rgpu_fuzz_addr, &hello, 3000, rgpu__cl_notify, &server, &server.conn,
                        &server.hello, server.unreachable_reason,
                        sizeof(server.unreachable_reason));
    if (getenv("RGPU_FUZZ_LOG"))
        fprintf(stderr, "fuzz_hello: rgpu_conn_open: %s (%s)\n", rgpu_status_str(st),
                st == RGPU_OK ? "" : server.unreachable_reason);
    if (st != RGPU_OK) {
        RGPU_FUZZ_CHECK(server.unreachable_reason[0]);
    } else {
        RGPU_FUZZ_CHECK(server.conn && server.hello);
        /* As rgpu_cl_init takes a server's devices. */
        if (server.hello->little_endian) {
            int ok = rgpu_cl_server_devices(&server) == 0;
            size_t made = server.devices ? (ok ? server.num_devices : server.hello->n_devices) : 0;
            cl_device_id ids[8];
            cl_uint n = 0;

            for (cl_uint d = 0; ok && d < server.num_devices; d++) {
                rgpu_fuzz_check_device(&server.devices[d]);
                rgpu_fuzz_query(&server.devices[d]);
            }
            /* The platform's device list, as rgpu_cl_init makes it. */
            if (ok && server.num_devices) {
                cl_device_id *all = calloc(server.num_devices, sizeof(*all));

                RGPU_FUZZ_CHECK(all);
                for (cl_uint d = 0; d < server.num_devices; d++)
                    all[d] = &server.devices[d];
                rgpu_cl_platform.devices = all;
                rgpu_cl_platform.num_devices = server.num_devices;
                RGPU_FUZZ_CHECK(rgpu_clGetDeviceIDs(NULL, CL_DEVICE_TYPE_ALL, 8, ids, &n) ==
                                CL_SUCCESS);
                RGPU_FUZZ_CHECK(n == server.num_devices);
                rgpu_clGetDeviceIDs(NULL, CL_DEVICE_TYPE_GPU, 8, ids, &n);
                rgpu_clGetDeviceIDs(NULL, CL_DEVICE_TYPE_DEFAULT, 8, ids, &n);
                rgpu_cl_platform.devices = NULL;
                rgpu_cl_platform.num_devices = 0;
                free(all);
            }
            rgpu_fuzz_free_devices(&server, made);
        }
        rgpu__hello_reply__free_unpacked(server.hello, NULL);
        rgpu_conn_close(server.conn);
    }
    /* The fake server is done with this connection before the next input. */
    pthread_mutex_lock(&rgpu_fuzz_lock);
    while (rgpu_fuzz_served == served)
        pthread_cond_wait(&rgpu_fuzz_cond, &rgpu_fuzz_lock);
    rgpu_fuzz_answer = NULL;
    pthread_mutex_unlock(&rgpu_fuzz_lock);
    free(answer.p);
    return 0;
}
