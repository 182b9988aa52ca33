/*
 * fuzz_server: rgpu-server's sessions and OpenCL backend on real PoCL, in
 * process, over a real TCP link on 127.0.0.1.
 *
 * Set up once: the server core as server/main.c wires it (rgpu_server_t,
 * rgpu_backend_opencl_ops opened on PoCL, a TCP listener on 127.0.0.1:0),
 * without the libuv loop: the harness accepts and calls rgpu_session_start.
 * Per input: a client link connects, a valid Hello goes first, then the
 * input's frames, then Goodbye, all through rgpu_wire (rgpu/wire.h) and the
 * link's messages, as the client library sends them; a reader thread
 * receives what the server answers with rgpu_wire_recv (every frame must
 * decode within the default limits and its body unpack) and, by
 * progressing the link, serves the server's gets and puts on the region
 * this side registered. The input ends when the session has ended and
 * released everything (rgpu_server_wait_sessions). A session that does not
 * end within RGPU_FUZZ_SESSION_WAIT_MS after Goodbye aborts: a hang is a
 * bug.
 *
 * Input: records of
 *   u8  type selector: an index into rgpu_fuzz_server_types (the requests a
 *       client sends, Ping, a second Hello, Goodbye, a type no one knows,
 *       then the carriers below), modulo its size
 *   u16 body length, then the body (protobuf bytes)
 *   u16 bulk length (modulo RGPU_FUZZ_MAX_BULK + 1), then the bulk: from the
 *       input while it lasts, zeros after
 * at most RGPU_FUZZ_MAX_FRAMES of them. Bodies that unpack have their
 * sizes clamped (buffer sizes, images, NDRange grids: see rgpu_fuzz_clamp)
 * so that one input allocates and computes little; the server is given
 * --max-bulk 64K and --max-body 1M.
 *
 * The carriers of rgpu/wire.h, hostile and well formed (the selectors
 * past the message types; "param" is the record's bulk length field):
 *   RAW_BATCH      a MSG_BATCH whose frames are the record's body bytes, as
 *                  they are (claimed sizes, nested carriers, garbage)
 *   RAW_FRAGMENT   a MSG_FRAGMENT piece of the body bytes, F_LAST when param
 *                  is odd, alone or between other frames
 *   BATCH_NEXT     the next 2 + param % 8 records go in MSG_BATCH messages
 *                  (rgpu_wire_send_frames)
 *   FRAGMENT_NEXT  the next record goes in fragments of an eager limit of
 *                  33 + param % 4096 bytes (rgpu_wire_fragment_head); with
 *                  param bit 12 its last piece is never sent, so the record
 *                  after it lands in the middle of the frame
 *   DESC_NEXT      the next record gets RGPU_FRAME_F_DESC, its bulk replaced
 *                  by BulkRefs made from this record's body (rgpu_fuzz_refs):
 *                  descriptors into the region this side registered (at
 *                  fuzzed offsets and lengths), forged ones (any address,
 *                  length and key), or raw bytes that may not unpack.
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
#include "rgpu/wire.h"
#include "session.h"

#define RGPU_FUZZ_MAX_FRAMES 256
#define RGPU_FUZZ_MAX_BULK 4096
#define RGPU_FUZZ_SESSION_WAIT_MS 8000
/* The memory this side registers for the server to get from and put into. */
#define RGPU_FUZZ_REGION (64u << 10)

/* Selectors past the message types (see the top of the file). */
enum {
    RGPU_FUZZ_RAW_BATCH = 0xF000,
    RGPU_FUZZ_RAW_FRAGMENT,
    RGPU_FUZZ_BATCH_NEXT,
    RGPU_FUZZ_FRAGMENT_NEXT,
    RGPU_FUZZ_DESC_NEXT,
};

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
    RGPU_FUZZ_RAW_BATCH,                         RGPU_FUZZ_RAW_FRAGMENT,
    RGPU_FUZZ_BATCH_NEXT,                        RGPU_FUZZ_FRAGMENT_NEXT,
    RGPU_FUZZ_DESC_NEXT,
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

/* Receives what the server sends until it closes: every frame must decode
 * within the default limits and, for a type we know, its body unpack.
 * Receiving progresses the link, which serves the server's gets and puts. */
static void *rgpu_fuzz_reader_main(void *arg)
{
    rgpu_fuzz_reader_t *r = arg;
    rgpu_wire_rx_t rx;
    rgpu_wire_frame_t f;
    char reason[256];

    rgpu_wire_rx_init(&rx, r->link, NULL, RGPU_FRAME_HEADER_SIZE + (2u << 20));
    while (rgpu_wire_recv(&rx, &f, -1, reason, sizeof(reason)) == RGPU_OK) {
        const ProtobufCMessageDescriptor *desc = rgpu_fuzz_msg_desc(f.header.type);
        ProtobufCMessage *msg;

        RGPU_FUZZ_CHECK(f.header.body_len <= (1u << 20));
        RGPU_FUZZ_CHECK(desc);
        msg = protobuf_c_message_unpack(desc, NULL, f.header.body_len, f.body);
        RGPU_FUZZ_CHECK(msg);
        protobuf_c_message_free_unpacked(msg, NULL);
        r->frames++;
        r->session_errors += f.header.type == RGPU__MSG_TYPE__MSG_SESSION_ERROR;
    }
    rgpu_wire_rx_fini(&rx);
    return NULL;
}

/* How the records that follow a carrier selector travel. */
typedef struct {
    rgpu_link_t *link;
    rgpu_mem_t *region;             /* this side's registered memory */
    rgpu_fuzz_buf_t frame;          /* the record being sent, packed */
    rgpu_fuzz_buf_t batch;          /* BATCH_NEXT: frames waiting */
    unsigned batch_left;            /* frames still to join the batch */
    size_t frag_eager;              /* FRAGMENT_NEXT: 0, or the eager limit to cut with */
    int frag_cut;                   /* FRAGMENT_NEXT: leave the last piece out */
    uint8_t refs[RGPU_WIRE_REFS_MAX];
    size_t refs_len;
    int desc;                       /* DESC_NEXT: the next frame carries refs */
} rgpu_fuzz_out_t;

/* A descriptor from the input: into this side's region at a fuzzed offset
 * and length (the server may reach it; out of bounds it is refused), or
 * forged from the input's bytes (any address, length, key and memtype). */
static void rgpu_fuzz_desc(rgpu_fuzz_out_t *o, rgpu_fuzz_in_t *in, int ours, rgpu_mem_desc_t *d)
{
    if (ours) {
        uint32_t off = rgpu_fuzz_u16(in);

        *d = rgpu_mem_desc(o->region);
        d->addr += off;
        d->len = rgpu_fuzz_u32(in) % (RGPU_FUZZ_REGION + 2);
        if (d->len == 0)
            d->len = 1;
    } else {
        d->addr = rgpu_fuzz_u32(in) | (uint64_t)rgpu_fuzz_u32(in) << 32;
        d->len = rgpu_fuzz_u32(in) | (uint64_t)rgpu_fuzz_u8(in) << 32;
        d->key = rgpu_fuzz_u32(in) | (uint64_t)rgpu_fuzz_u32(in) << 32;
        d->memtype = rgpu_fuzz_u8(in);
    }
}

/* DESC_NEXT: BulkRefs from body. Its first byte: bit 0 a data descriptor,
 * bit 1 a reply descriptor, bit 2 and 3 each one into this side's region
 * (else forged), bit 4 (or neither descriptor) the rest of body as the
 * packed BulkRefs, unchecked. */
static void rgpu_fuzz_refs(rgpu_fuzz_out_t *o, const uint8_t *body, size_t len)
{
    rgpu_fuzz_in_t in = {body, len};
    uint8_t shape = rgpu_fuzz_u8(&in);
    rgpu_mem_desc_t data, reply;

    if ((shape & 16) || !(shape & 3)) {
        o->refs_len = in.left < sizeof(o->refs) ? in.left : sizeof(o->refs);
        memcpy(o->refs, in.p, o->refs_len);
    } else {
        if (shape & 1)
            rgpu_fuzz_desc(o, &in, shape & 4, &data);
        if (shape & 2)
            rgpu_fuzz_desc(o, &in, shape & 8, &reply);
        o->refs_len = rgpu_wire_refs_pack(shape & 1 ? &data : NULL, shape & 2 ? &reply : NULL,
                                          o->refs);
    }
    o->desc = 1;
}

/* Sends the frames that wait for a batch (rgpu_wire_send_frames: batches
 * cut at the eager limit, a lone frame as itself). */
static rgpu_status_t rgpu_fuzz_flush_batch(rgpu_fuzz_out_t *o)
{
    rgpu_status_t status = RGPU_OK;

    if (o->batch.len)
        status = rgpu_wire_send_frames(o->link, o->batch.p, o->batch.len);
    o->batch.len = 0;
    o->batch_left = 0;
    return status;
}

/* Sends the packed frame in o->frame the way the carriers before it said. */
static rgpu_status_t rgpu_fuzz_send_packed(rgpu_fuzz_out_t *o)
{
    const uint8_t *p = o->frame.p;
    size_t total = o->frame.len;

    if (o->batch_left) {
        rgpu_fuzz_buf_put(&o->batch, p, total);
        return --o->batch_left ? RGPU_OK : rgpu_fuzz_flush_batch(o);
    }
    if (o->frag_eager && total > o->frag_eager) {
        size_t eager = o->frag_eager, off = 0;

        o->frag_eager = 0;
        while (off < total) {
            uint8_t head[RGPU_FRAME_HEADER_SIZE];
            size_t piece = rgpu_wire_fragment_head(total, off, eager, head);
            struct iovec iov[2] = {{head, sizeof(head)}, {(void *)(p + off), piece}};
            rgpu_status_t status;

            if (off + piece == total && o->frag_cut)
                break;
            status = rgpu_link_msg_send(o->link, iov, 2, NULL);
            if (status != RGPU_OK)
                return status;
            off += piece;
        }
        return RGPU_OK;
    }
    o->frag_eager = 0;
    {
        struct iovec iov = {(void *)p, total};

        return rgpu_wire_send_frame(o->link, &iov, 1);
    }
}

/* Packs one record's frame (a carrier of raw bytes for RAW_BATCH and
 * RAW_FRAGMENT) into o->frame and sends it. */
static rgpu_status_t rgpu_fuzz_send(rgpu_fuzz_out_t *o, uint16_t type, uint64_t seq,
                                    const uint8_t *body, size_t len, const uint8_t *bulk,
                                    size_t bulk_len)
{
    uint8_t head[RGPU_FRAME_HEADER_SIZE];
    rgpu_frame_header_t h = {RGPU_PROTOCOL_VERSION, type, 0, (uint32_t)len, seq, bulk_len};

    if (type == RGPU_FUZZ_RAW_BATCH || type == RGPU_FUZZ_RAW_FRAGMENT) {
        h.type = type == RGPU_FUZZ_RAW_BATCH ? RGPU__MSG_TYPE__MSG_BATCH
                                             : RGPU__MSG_TYPE__MSG_FRAGMENT;
        h.flags = type == RGPU_FUZZ_RAW_FRAGMENT && (bulk_len & 1) ? RGPU_FRAME_F_LAST : 0;
        h.body_len = 0;
        h.seq = 0;
        h.bulk_len = len;
        bulk = body;
        bulk_len = len;
        len = 0;
    } else if (o->desc) {
        h.flags = RGPU_FRAME_F_DESC;
        h.bulk_len = o->refs_len;
        bulk = o->refs;
        bulk_len = o->refs_len;
        o->desc = 0;
    }
    rgpu_frame_header_encode(&h, head);
    o->frame.len = 0;
    rgpu_fuzz_buf_put(&o->frame, head, sizeof(head));
    rgpu_fuzz_buf_put(&o->frame, body, len);
    rgpu_fuzz_buf_put(&o->frame, bulk, bulk_len);
    return rgpu_fuzz_send_packed(o);
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
    static uint8_t region[RGPU_FUZZ_REGION];
    rgpu_fuzz_reader_t reader = {0};
    rgpu_fuzz_buf_t clamped = {0};
    rgpu_fuzz_out_t out = {0};
    pthread_t thread;
    char reason[256];
    uint64_t seq = 1;
    int left;

    RGPU_FUZZ_CHECK(rgpu_tcp_ops.connect(rgpu_fuzz_listener->local, 5000, &reader.link, reason,
                                         sizeof(reason)) == RGPU_OK);
    out.link = reader.link;
    RGPU_FUZZ_CHECK(rgpu_mem_register(reader.link->tp, region, sizeof(region), RGPU_MEMTYPE_HOST,
                                      &out.region) == RGPU_OK);
    rgpu_fuzz_accept();
    RGPU_FUZZ_CHECK(pthread_create(&thread, NULL, rgpu_fuzz_reader_main, &reader) == 0);

    hello.protocol_version = RGPU_PROTOCOL_VERSION;
    hello.api = RGPU__API_FAMILY__API_OPENCL;
    hello.client_arch = (char *)"fuzz";
    hello.client_host = (char *)"fuzz";
    hello.lease_token = (char *)"";
    if (rgpu_wire_send(reader.link, RGPU__MSG_TYPE__MSG_HELLO, seq++, 0, &hello.base, NULL, 0) !=
        RGPU_OK)
        goto out_bye;

    for (unsigned f = 0; f < RGPU_FUZZ_MAX_FRAMES && in.left; f++) {
        uint16_t type = rgpu_fuzz_server_types[rgpu_fuzz_u8(&in) % RGPU_FUZZ_NTYPES];
        uint16_t want = rgpu_fuzz_u16(&in);
        const uint8_t *body, *bulk;
        size_t len = rgpu_fuzz_take(&in, want, &body);
        uint16_t param = rgpu_fuzz_u16(&in);
        size_t bulk_len = param % (RGPU_FUZZ_MAX_BULK + 1);
        size_t have;
        uint8_t *whole = NULL;

        switch (type) {
        case RGPU_FUZZ_BATCH_NEXT:
            if (rgpu_fuzz_flush_batch(&out) != RGPU_OK)
                goto out_bye;
            out.batch_left = 2 + param % 8;
            continue;
        case RGPU_FUZZ_FRAGMENT_NEXT:
            out.frag_eager = RGPU_FRAME_HEADER_SIZE + 1 + param % 4096;
            out.frag_cut = (param >> 12) & 1;
            continue;
        case RGPU_FUZZ_DESC_NEXT:
            rgpu_fuzz_refs(&out, body, len);
            continue;
        default:
            break;
        }
        have = rgpu_fuzz_take(&in, bulk_len, &bulk);

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
        if (rgpu_fuzz_send(&out, type, seq++, body, len, bulk, bulk_len) != RGPU_OK) {
            free(whole);
            break;  /* the server ended the session */
        }
        free(whole);
    }

out_bye:
    rgpu_fuzz_flush_batch(&out);
    rgpu_wire_send(reader.link, RGPU__MSG_TYPE__MSG_GOODBYE, 0, 0, &bye.base, NULL, 0);
    left = rgpu_server_wait_sessions(&rgpu_fuzz_server, RGPU_FUZZ_SESSION_WAIT_MS);
    if (left) {
        fprintf(stderr, "fuzz_server: the session did not end within %d ms of Goodbye\n",
                RGPU_FUZZ_SESSION_WAIT_MS);
        abort();
    }
    pthread_join(thread, NULL);     /* the server closed the link: the reader is done */
    rgpu_mem_deregister(out.region);
    rgpu_link_close(reader.link);
    free(clamped.p);
    free(out.frame.p);
    free(out.batch.p);
    return 0;
}
