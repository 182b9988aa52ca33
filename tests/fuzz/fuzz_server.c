/*
 * fuzz_server: rgpu-server's sessions and OpenCL backend on real PoCL, in
 * process, over a real TCP link on 127.0.0.1.
 *
 * Set up once: the server core as server/main.c wires it (rgpu_server_t,
 * rgpu_backend_opencl_ops opened on PoCL, a TCP listener on 127.0.0.1:0),
 * without the libuv loop: the harness accepts and calls rgpu_session_start.
 * Per input: a client link connects, a valid Hello goes first, then the
 * input's frames, then Goodbye; a reader thread drains what the server
 * answers (every frame must decode, within the default limits), and the
 * input ends when the session has ended and released everything
 * (rgpu_server_wait_sessions). A session that does not end within
 * RGPU_FUZZ_SESSION_WAIT_MS after Goodbye aborts: a hang is a bug.
 *
 * Input: records of
 *   u8  type selector: an index into rgpu_fuzz_server_types (the requests a
 *       client sends, Ping, a second Hello, Goodbye, and a type no one
 *       knows), modulo its size
 *   u16 body length, then the body (protobuf bytes)
 *   u16 bulk length (modulo RGPU_FUZZ_MAX_BULK + 1), then the bulk: from the
 *       input while it lasts, zeros after
 * at most RGPU_FUZZ_MAX_FRAMES of them. Bodies that unpack have their
 * sizes clamped (buffer sizes, images, NDRange grids: see rgpu_fuzz_clamp)
 * so that one input allocates and computes little; the server is given
 * --max-bulk 64K and --max-body 1M.
 *
 * PoCL must be the OpenCL platform: OCL_ICD_VENDORS is set to its .icd
 * (RGPU_TEST_POCL_ICD or /etc/OpenCL/vendors/pocl.icd) unless already set.
 */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "config.h"
#include "fuzz_msgs.h"
#include "metrics.h"
#include "rgpu/log.h"
#include "rgpu/transport.h"
#include "session.h"

#define RGPU_FUZZ_MAX_FRAMES 256
#define RGPU_FUZZ_MAX_BULK 4096
#define RGPU_FUZZ_SESSION_WAIT_MS 8000

static const uint16_t rgpu_fuzz_server_types[] = {
    RGPU__MSG_TYPE__MSG_CL_CREATE_CONTEXT,       RGPU__MSG_TYPE__MSG_CL_CREATE_QUEUE,
    RGPU__MSG_TYPE__MSG_CL_CREATE_BUFFER,        RGPU__MSG_TYPE__MSG_CL_CREATE_SUB_BUFFER,
    RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_SOURCE, RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_BINARY,
    RGPU__MSG_TYPE__MSG_CL_BUILD_PROGRAM,        RGPU__MSG_TYPE__MSG_CL_COMPILE_PROGRAM,
    RGPU__MSG_TYPE__MSG_CL_LINK_PROGRAM,         RGPU__MSG_TYPE__MSG_CL_CREATE_KERNEL,
    RGPU__MSG_TYPE__MSG_CL_SET_KERNEL_ARG,       RGPU__MSG_TYPE__MSG_CL_RELEASE,
    RGPU__MSG_TYPE__MSG_CL_CREATE_USER_EVENT,    RGPU__MSG_TYPE__MSG_CL_SET_USER_EVENT_STATUS,
    RGPU__MSG_TYPE__MSG_CL_SET_EVENT_CALLBACK,   RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER,
    RGPU__MSG_TYPE__MSG_CL_READ_BUFFER,          RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER,
    RGPU__MSG_TYPE__MSG_CL_FILL_BUFFER,          RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER_RECT,
    RGPU__MSG_TYPE__MSG_CL_READ_BUFFER_RECT,     RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER_RECT,
    RGPU__MSG_TYPE__MSG_CL_NDRANGE,              RGPU__MSG_TYPE__MSG_CL_MARKER,
    RGPU__MSG_TYPE__MSG_CL_MIGRATE,              RGPU__MSG_TYPE__MSG_CL_FLUSH,
    RGPU__MSG_TYPE__MSG_CL_FINISH,               RGPU__MSG_TYPE__MSG_CL_WAIT_EVENTS,
    RGPU__MSG_TYPE__MSG_CL_GET_INFO,             RGPU__MSG_TYPE__MSG_CL_CREATE_IMAGE,
    RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE,          RGPU__MSG_TYPE__MSG_CL_READ_IMAGE,
    RGPU__MSG_TYPE__MSG_CL_COPY_IMAGE,           RGPU__MSG_TYPE__MSG_CL_FILL_IMAGE,
    RGPU__MSG_TYPE__MSG_CL_CREATE_SAMPLER,       RGPU__MSG_TYPE__MSG_PING,
    RGPU__MSG_TYPE__MSG_HELLO,                   RGPU__MSG_TYPE__MSG_GOODBYE,
    999,
};
#define RGPU_FUZZ_NTYPES (sizeof(rgpu_fuzz_server_types) / sizeof(rgpu_fuzz_server_types[0]))

static rgpu_server_config_t rgpu_fuzz_config;
static rgpu_server_t rgpu_fuzz_server;
static rgpu_listener_t *rgpu_fuzz_listener;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char *args[] = {"rgpu-server", "--listen",     "127.0.0.1:0", "--insecure",
                    "--max-bulk",  "64K",          "--max-body",  "1M",
                    "--chunk-size", "16K",         "--log-level", "error", NULL};
    const char *icd = getenv("RGPU_TEST_POCL_ICD");

    signal(SIGPIPE, SIG_IGN);
    setenv("OCL_ICD_VENDORS", icd ? icd : "/etc/OpenCL/vendors/pocl.icd", 0);
    if (getenv("RGPU_FUZZ_LOG"))
        args[11] = "debug";
    RGPU_FUZZ_CHECK(rgpu_server_config_load(&rgpu_fuzz_config, 12, args, NULL, stdout, stderr) ==
                    RGPU_CONFIG_RUN);
    rgpu_log_init("fuzz_server", (rgpu_log_level_t)rgpu_fuzz_config.log_level);
    rgpu_log_level = (rgpu_log_level_t)rgpu_fuzz_config.log_level;
    rgpu_fuzz_server.config = &rgpu_fuzz_config;
    rgpu_fuzz_server.backends[0].ops = &rgpu_backend_opencl_ops;
    rgpu_fuzz_server.n_backends = 1;
    strcpy(rgpu_fuzz_server.hostname, "fuzz");
    rgpu_server_init(&rgpu_fuzz_server);
    if (rgpu_backend_opencl_ops.open(&rgpu_fuzz_config, &rgpu_fuzz_server.backends[0].backend) !=
        RGPU_OK) {
        fprintf(stderr, "fuzz_server: no OpenCL platform (is PoCL installed? OCL_ICD_VENDORS=%s)\n",
                getenv("OCL_ICD_VENDORS"));
        exit(1);
    }
    fprintf(stderr, "fuzz_server: serving %s\n",
            rgpu_backend_opencl_ops.describe(rgpu_fuzz_server.backends[0].backend));
    RGPU_FUZZ_CHECK(rgpu_tcp_ops.listen("127.0.0.1:0", &rgpu_fuzz_listener) == RGPU_OK);
    snprintf(rgpu_fuzz_server.advertise, sizeof(rgpu_fuzz_server.advertise), "%s",
             rgpu_fuzz_listener->local);
    return 0;
}

/* ---- keeping one input small ---- */

static uint64_t rgpu_fuzz_small(uint64_t v, uint64_t max)
{
    return v > max ? v % (max + 1) : v;
}

/* Clamps what would make the server allocate or compute a lot: the server
 * bounds these by the device's limits, which on PoCL are most of the
 * machine. Returns a packed copy in *out, or 0 when body does not unpack
 * (it is sent as it is). */
static int rgpu_fuzz_clamp(uint16_t type, const uint8_t *body, size_t len, rgpu_fuzz_buf_t *out)
{
    const ProtobufCMessageDescriptor *desc = rgpu_fuzz_msg_desc(type);
    ProtobufCMessage *msg;
    uint8_t *packed;
    size_t n;

    if (!desc)
        return 0;
    msg = protobuf_c_message_unpack(desc, NULL, len, body);
    if (!msg)
        return 0;
    switch (type) {
    case RGPU__MSG_TYPE__MSG_CL_CREATE_BUFFER: {
        Rgpu__ClCreateBuffer *m = (Rgpu__ClCreateBuffer *)msg;
        m->size = rgpu_fuzz_small(m->size, 1u << 16);
        break;
    }
    case RGPU__MSG_TYPE__MSG_CL_NDRANGE: {
        Rgpu__ClNDRange *m = (Rgpu__ClNDRange *)msg;
        for (size_t i = 0; i < m->n_global_size; i++)
            m->global_size[i] = rgpu_fuzz_small(m->global_size[i], 64);
        break;
    }
    case RGPU__MSG_TYPE__MSG_CL_CREATE_IMAGE: {
        Rgpu__ClCreateImage *m = (Rgpu__ClCreateImage *)msg;
        m->width = rgpu_fuzz_small(m->width, 256);
        m->height = rgpu_fuzz_small(m->height, 256);
        m->depth = rgpu_fuzz_small(m->depth, 16);
        m->array_size = rgpu_fuzz_small(m->array_size, 16);
        break;
    }
    default:
        break;
    }
    n = protobuf_c_message_get_packed_size(msg);
    packed = malloc(n + 1);
    RGPU_FUZZ_CHECK(packed);
    protobuf_c_message_pack(msg, packed);
    out->len = 0;
    rgpu_fuzz_buf_put(out, packed, n);
    free(packed);
    protobuf_c_message_free_unpacked(msg, NULL);
    return 1;
}

/* ---- the client side ---- */

typedef struct {
    rgpu_link_t *link;
    unsigned frames, session_errors;
} rgpu_fuzz_reader_t;

/* Reads what the server sends until it closes: every frame must decode
 * within the default limits and, for a type we know, its body unpack. */
static void *rgpu_fuzz_reader_main(void *arg)
{
    rgpu_fuzz_reader_t *r = arg;
    rgpu_frame_header_t h;

    while (rgpu_link_recv_header(r->link, NULL, &h) == RGPU_OK) {
        const ProtobufCMessageDescriptor *desc = rgpu_fuzz_msg_desc(h.type);
        uint8_t *body = malloc((size_t)h.body_len + 1);
        ProtobufCMessage *msg;

        RGPU_FUZZ_CHECK(body && h.body_len <= (1u << 20));
        if (rgpu_link_recv(r->link, body, h.body_len) != RGPU_OK) {
            free(body);
            break;
        }
        RGPU_FUZZ_CHECK(desc);
        msg = protobuf_c_message_unpack(desc, NULL, h.body_len, body);
        RGPU_FUZZ_CHECK(msg);
        protobuf_c_message_free_unpacked(msg, NULL);
        free(body);
        r->frames++;
        r->session_errors += h.type == RGPU__MSG_TYPE__MSG_SESSION_ERROR;
        if (h.bulk_len && rgpu_link_discard(r->link, h.bulk_len) != RGPU_OK)
            break;
    }
    return NULL;
}

static rgpu_status_t rgpu_fuzz_send(rgpu_link_t *link, uint16_t type, uint64_t seq,
                                    const uint8_t *body, size_t len, const uint8_t *bulk,
                                    size_t bulk_len)
{
    uint8_t head[RGPU_FRAME_HEADER_SIZE];
    rgpu_frame_header_t h = {RGPU_PROTOCOL_VERSION, type, 0, (uint32_t)len, seq, bulk_len};
    struct iovec iov[3] = {{head, sizeof(head)}, {(void *)body, len}, {(void *)bulk, bulk_len}};

    rgpu_frame_header_encode(&h, head);
    return rgpu_link_sendv(link, iov, 3);
}

/* Accepts the connection the harness just made and starts its session. */
static void rgpu_fuzz_accept(void)
{
    struct pollfd pfd = {rgpu_tcp_ops.listener_fd(rgpu_fuzz_listener), POLLIN, 0};
    rgpu_link_t *link;

    RGPU_FUZZ_CHECK(poll(&pfd, 1, 5000) == 1);
    RGPU_FUZZ_CHECK(rgpu_tcp_ops.accept(rgpu_fuzz_listener, &link) == RGPU_OK);
    RGPU_FUZZ_CHECK(rgpu_session_start(&rgpu_fuzz_server, link) == RGPU_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t zeros[RGPU_FUZZ_MAX_BULK];
    rgpu_fuzz_in_t in = {data, size};
    Rgpu__Hello hello = RGPU__HELLO__INIT;
    Rgpu__Goodbye bye = RGPU__GOODBYE__INIT;
    rgpu_fuzz_reader_t reader = {0};
    rgpu_fuzz_buf_t clamped = {0};
    pthread_t thread;
    char reason[256];
    uint64_t seq = 1;
    int left;

    RGPU_FUZZ_CHECK(rgpu_tcp_ops.connect(rgpu_fuzz_listener->local, 5000, &reader.link, reason,
                                         sizeof(reason)) == RGPU_OK);
    rgpu_fuzz_accept();
    RGPU_FUZZ_CHECK(pthread_create(&thread, NULL, rgpu_fuzz_reader_main, &reader) == 0);

    hello.protocol_version = RGPU_PROTOCOL_VERSION;
    hello.api = RGPU__API_FAMILY__API_OPENCL;
    hello.client_arch = (char *)"fuzz";
    hello.client_host = (char *)"fuzz";
    hello.lease_token = (char *)"";
    if (rgpu_link_send_msg(reader.link, RGPU__MSG_TYPE__MSG_HELLO, seq++, &hello.base, NULL, 0) !=
        RGPU_OK)
        goto out_bye;

    for (unsigned f = 0; f < RGPU_FUZZ_MAX_FRAMES && in.left; f++) {
        uint16_t type = rgpu_fuzz_server_types[rgpu_fuzz_u8(&in) % RGPU_FUZZ_NTYPES];
        uint16_t want = rgpu_fuzz_u16(&in);
        const uint8_t *body, *bulk;
        size_t len = rgpu_fuzz_take(&in, want, &body);
        size_t bulk_len = rgpu_fuzz_u16(&in) % (RGPU_FUZZ_MAX_BULK + 1);
        size_t have = rgpu_fuzz_take(&in, bulk_len, &bulk);
        uint8_t *whole = NULL;

        if (have < bulk_len) {
            whole = malloc(bulk_len);
            RGPU_FUZZ_CHECK(whole);
            memcpy(whole, bulk, have);
            memcpy(whole + have, zeros, bulk_len - have);
            bulk = whole;
        }
        if (rgpu_fuzz_clamp(type, body, len, &clamped)) {
            body = clamped.p;
            len = clamped.len;
        }
        if (rgpu_fuzz_send(reader.link, type, seq++, body, len, bulk, bulk_len) != RGPU_OK) {
            free(whole);
            break;  /* the server ended the session */
        }
        free(whole);
    }

out_bye:
    rgpu_link_send_msg(reader.link, RGPU__MSG_TYPE__MSG_GOODBYE, 0, &bye.base, NULL, 0);
    left = rgpu_server_wait_sessions(&rgpu_fuzz_server, RGPU_FUZZ_SESSION_WAIT_MS);
    if (left) {
        fprintf(stderr, "fuzz_server: the session did not end within %d ms of Goodbye\n",
                RGPU_FUZZ_SESSION_WAIT_MS);
        abort();
    }
    pthread_join(thread, NULL);     /* the server closed the link: the reader is done */
    rgpu_link_close(reader.link);
    free(clamped.p);
    return 0;
}
