/*
 * fuzz_sched: rgpu-scheduler's request handling, in process, on an
 * in-memory SQLite store.
 *
 * The daemon's frame handling (rgpu_sched_read_cb: framing, limits, auth
 * trailers, rgpu_sched_handle: unpack, authorize, sched.c) is static in
 * scheduler/main.c, so this file includes main.c (its main() renamed) and
 * drives a connection the way libuv would: bytes go through
 * rgpu_sched_alloc_cb/rgpu_sched_read_cb in chunks, replies leave through
 * uv_write on one end of a socketpair and are read back from the other.
 *
 * Input: one flags byte (bit 0: the scheduler has a cluster key, see
 * RGPU_FUZZ_SCHED_NO_KEY below; bit 1:
 * --require-signed; bits 2-4: how the stream is cut into reads; bit 5:
 * the peers' eager limit is RGPU_FUZZ_SMALL_EAGER bytes instead of the TCP
 * transport's, so most replies go in fragments), then
 * records: type selector, record flags (bit 0: append a valid auth trailer
 * signed now with the cluster key; bit 1: append 40 bytes of the input as
 * a trailer; bit 2: raw bytes, no frame made), a 16-bit length and the
 * body. Two servers with 4 GPUs each are registered before the input runs,
 * so allocations have something to take.
 *
 * Checks: no crash or sanitizer report; every reply is a well-formed frame
 * of a scheduler reply type whose body unpacks, answering a seq that was
 * asked, sent as itself when it fits the eager limit and as MSG_FRAGMENT
 * pieces of at most that limit, nothing between them, when it does not; per server, nfree counts the GPUs no lease holds; and a scheduler
 * loaded from the same store (a restart) has the same servers, GPU use and
 * leases.
 */
#define main rgpu_sched_daemon_main
#include "../../scheduler/main.c"
#undef main

#include <fcntl.h>

#include "fuzz_msgs.h"

static const uint16_t rgpu_fuzz_sched_types[] = {
    RGPU__MSG_TYPE__MSG_SCHED_REGISTER, RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT,
    RGPU__MSG_TYPE__MSG_SCHED_ALLOC,    RGPU__MSG_TYPE__MSG_SCHED_RENEW,
    RGPU__MSG_TYPE__MSG_SCHED_RELEASE,  RGPU__MSG_TYPE__MSG_SCHED_LIST,
    RGPU__MSG_TYPE__MSG_SCHED_DRAIN,
};
#define RGPU_FUZZ_NTYPES (sizeof(rgpu_fuzz_sched_types) / sizeof(rgpu_fuzz_sched_types[0]))
/* Records per input, and bytes of stream: bounded so one input stays fast. */
#define RGPU_FUZZ_MAX_RECORDS 64
#define RGPU_FUZZ_MAX_STREAM (1u << 20)
/* An eager limit that fragments most replies (flags bit 5). */
#define RGPU_FUZZ_SMALL_EAGER 100

static uv_loop_t rgpu_fuzz_loop;
static rgpu_sched_daemon_t rgpu_fuzz_daemon;
static uint64_t rgpu_fuzz_seqs[RGPU_FUZZ_MAX_RECORDS];   /* seqs asked, as records made them */
static size_t rgpu_fuzz_nseqs;
static int rgpu_fuzz_raw;                                 /* a raw record: seqs are anyone's */
static size_t rgpu_fuzz_tcp_eager;                        /* the TCP transport's eager limit */
static rgpu_fuzz_buf_t rgpu_fuzz_pieces;                  /* a fragmented reply so far */

static void rgpu_fuzz_register(rgpu_sched_t *s, unsigned n)
{
    Rgpu__GpuInfo gpus[4], *ptrs[4];
    Rgpu__RegisterServer reg = RGPU__REGISTER_SERVER__INIT;
    Rgpu__ApiFamily apis[1] = {RGPU__API_FAMILY__API_OPENCL};
    char addr[64], reason[256];

    for (unsigned g = 0; g < 4; g++) {
        rgpu__gpu_info__init(&gpus[g]);
        gpus[g].index = g;
        gpus[g].model = (char *)"fuzz-gpu";
        gpus[g].memory = 1ull << 30;
        gpus[g].n_apis = 1;
        gpus[g].apis = apis;
        ptrs[g] = &gpus[g];
    }
    snprintf(addr, sizeof(addr), "10.0.0.%u:7070", n);
    reg.address = addr;
    reg.transport = (char *)"tcp";
    reg.hostname = (char *)"node";
    reg.n_gpus = 4;
    reg.gpus = ptrs;
    RGPU_FUZZ_CHECK(rgpu_sched_register(s, &reg, rgpu_sched_now(), reason, sizeof(reason)) ==
                    RGPU_OK);
}

/* Turns the records into the byte stream a peer would send. */
static void rgpu_fuzz_stream(rgpu_fuzz_in_t *in, rgpu_fuzz_buf_t *out)
{
    while (in->left && rgpu_fuzz_nseqs < RGPU_FUZZ_MAX_RECORDS && out->len < RGPU_FUZZ_MAX_STREAM) {
        uint16_t type = rgpu_fuzz_sched_types[rgpu_fuzz_u8(in) % RGPU_FUZZ_NTYPES];
        uint8_t rflags = rgpu_fuzz_u8(in);
        uint16_t want = rgpu_fuzz_u16(in);
        const uint8_t *body;
        size_t len = rgpu_fuzz_take(in, want, &body);
        uint64_t seq = rgpu_fuzz_nseqs + 1;
        uint8_t head[RGPU_FRAME_HEADER_SIZE], trailer[RGPU_REQUEST_AUTH_LEN] = {0};
        rgpu_frame_header_t h = {RGPU_PROTOCOL_VERSION, type, 0, (uint32_t)len, seq, 0};

        if (rflags & 4) {
            rgpu_fuzz_buf_put(out, body, len);  /* raw: framing is the input's */
            rgpu_fuzz_raw = 1;
            continue;
        }
        if (rflags & 1) {
            rgpu_token_sign_request(&rgpu_fuzz_daemon.key, type, (uint32_t)seq, body, len,
                                    rgpu_sched_now(), trailer);
            h.bulk_len = RGPU_REQUEST_AUTH_LEN;
        } else if (rflags & 2) {
            memcpy(trailer, body, len < sizeof(trailer) ? len : sizeof(trailer));
            h.bulk_len = RGPU_REQUEST_AUTH_LEN;
        }
        rgpu_frame_header_encode(&h, head);
        rgpu_fuzz_buf_put(out, head, sizeof(head));
        rgpu_fuzz_buf_put(out, body, len);
        if (h.bulk_len)
            rgpu_fuzz_buf_put(out, trailer, sizeof(trailer));
        rgpu_fuzz_seqs[rgpu_fuzz_nseqs++] = seq;
    }
}

/* Checks one whole reply frame of len bytes. */
static void rgpu_fuzz_reply(const uint8_t *p, size_t len)
{
    rgpu_frame_header_t h;
    const ProtobufCMessageDescriptor *desc;
    ProtobufCMessage *msg;
    int asked = 0;

    RGPU_FUZZ_CHECK(len >= RGPU_FRAME_HEADER_SIZE);
    RGPU_FUZZ_CHECK(rgpu_frame_header_decode(p, NULL, &h) == RGPU_OK);
    RGPU_FUZZ_CHECK(h.bulk_len == 0 || h.bulk_len == RGPU_REQUEST_AUTH_LEN);
    RGPU_FUZZ_CHECK(len == RGPU_FRAME_HEADER_SIZE + h.body_len + h.bulk_len);
    RGPU_FUZZ_CHECK(h.type == RGPU__MSG_TYPE__MSG_SCHED_STATUS ||
                    h.type == RGPU__MSG_TYPE__MSG_SCHED_LEASE_REPLY ||
                    h.type == RGPU__MSG_TYPE__MSG_SCHED_LIST_REPLY ||
                    h.type == RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT_REPLY);
    desc = rgpu_fuzz_msg_desc(h.type);
    msg = protobuf_c_message_unpack(desc, NULL, h.body_len, p + RGPU_FRAME_HEADER_SIZE);
    RGPU_FUZZ_CHECK(msg);
    protobuf_c_message_free_unpacked(msg, NULL);
    /* Raw records make frames with any seq; made ones ask 1..n. */
    for (size_t i = 0; i < rgpu_fuzz_nseqs; i++)
        asked |= rgpu_fuzz_seqs[i] == h.seq;
    RGPU_FUZZ_CHECK(asked || rgpu_fuzz_raw);
}

/* Reads every message waiting on fd into *acc and checks the complete
 * ones: a reply frame that fits the eager limit comes as itself, a larger
 * one as fragments that add up to it (what rgpu_wire_recv accepts). */
static void rgpu_fuzz_replies(int fd, rgpu_fuzz_buf_t *acc)
{
    const size_t eager = rgpu_fuzz_daemon.eager;
    uint8_t chunk[65536];
    ssize_t n;
    size_t off = 0;

    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        rgpu_fuzz_buf_put(acc, chunk, (size_t)n);
    while (acc->len - off >= RGPU_FRAME_HEADER_SIZE) {
        rgpu_frame_header_t h;
        const uint8_t *p = acc->p + off;
        size_t len;

        RGPU_FUZZ_CHECK(rgpu_frame_header_decode(p, NULL, &h) == RGPU_OK);
        RGPU_FUZZ_CHECK(RGPU_FRAME_HEADER_SIZE + h.body_len + h.bulk_len <= eager);
        len = RGPU_FRAME_HEADER_SIZE + h.body_len + (size_t)h.bulk_len;
        if (acc->len - off < len)
            break;
        if (h.type == RGPU__MSG_TYPE__MSG_FRAGMENT) {
            RGPU_FUZZ_CHECK(h.body_len == 0 && h.bulk_len > 0);
            rgpu_fuzz_buf_put(&rgpu_fuzz_pieces, p + RGPU_FRAME_HEADER_SIZE, (size_t)h.bulk_len);
            if (h.flags & RGPU_FRAME_F_LAST) {
                /* Fragments only for what does not fit. */
                RGPU_FUZZ_CHECK(rgpu_fuzz_pieces.len > eager);
                rgpu_fuzz_reply(rgpu_fuzz_pieces.p, rgpu_fuzz_pieces.len);
                rgpu_fuzz_pieces.len = 0;
            }
        } else {
            RGPU_FUZZ_CHECK(rgpu_fuzz_pieces.len == 0);   /* nothing between fragments */
            rgpu_fuzz_reply(p, len);
        }
        off += len;
    }
    if (off) {
        memmove(acc->p, acc->p + off, acc->len - off);
        acc->len -= off;
    }
}

static void rgpu_fuzz_flush(rgpu_sched_conn_t *conn, int peer, rgpu_fuzz_buf_t *acc)
{
    do {
        uv_run(&rgpu_fuzz_loop, UV_RUN_NOWAIT);
        rgpu_fuzz_replies(peer, acc);
    } while (!uv_is_closing((uv_handle_t *)&conn->tcp) && conn->tcp.write_queue_size);
}

/* The scheduler's state is consistent, and what a restart would load equals it. */
static void rgpu_fuzz_check_state(rgpu_sched_t *s)
{
    rgpu_sched_t again;

    for (uint32_t i = 0; i < s->nservers; i++) {
        uint32_t nfree = 0;

        for (size_t g = 0; g < s->servers[i].reg->n_gpus; g++)
            nfree += !s->servers[i].use[g].exclusive && !s->servers[i].use[g].shared;
        RGPU_FUZZ_CHECK(s->servers[i].nfree == nfree);
    }
    RGPU_FUZZ_CHECK(rgpu_sched_init(&again, s->store, s->key, s->lease_ttl_s,
                                    s->heartbeat_timeout_s, rgpu_sched_now()) == RGPU_OK);
    RGPU_FUZZ_CHECK(again.nservers == s->nservers);
    RGPU_FUZZ_CHECK(again.leases.count == s->leases.count);
    for (uint32_t i = 0; i < s->nservers; i++) {
        const rgpu_sched_server_t *a = &s->servers[i], *b = NULL;

        /* The store lists servers in the order of their last write. */
        for (uint32_t j = 0; j < again.nservers && !b; j++)
            if (strcmp(a->reg->address, again.servers[j].reg->address) == 0)
                b = &again.servers[j];
        RGPU_FUZZ_CHECK(b);
        RGPU_FUZZ_CHECK(a->reg->n_gpus == b->reg->n_gpus && a->drained == b->drained);
        RGPU_FUZZ_CHECK(a->nfree == b->nfree);
        for (size_t g = 0; g < a->reg->n_gpus; g++) {
            RGPU_FUZZ_CHECK(a->use[g].exclusive == b->use[g].exclusive);
            RGPU_FUZZ_CHECK(a->use[g].shared == b->use[g].shared);
            RGPU_FUZZ_CHECK(a->use[g].reserved == b->use[g].reserved);
        }
    }
    again.store = NULL;     /* still s's */
    rgpu_sched_cleanup(&again);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const uint8_t key[RGPU_TOKEN_KEY_BYTES] = "rgpu-fuzz-scheduler-cluster-key";

    signal(SIGPIPE, SIG_IGN);
    rgpu_log_level = getenv("RGPU_FUZZ_LOG") ? RGPU_LOG_DEBUG : RGPU_LOG_ERROR;
    RGPU_FUZZ_CHECK(uv_loop_init(&rgpu_fuzz_loop) == 0);
    memcpy(rgpu_fuzz_daemon.key.bytes, key, sizeof(key));
    {
        rgpu_transport_t *tcp;

        RGPU_FUZZ_CHECK(rgpu_transport_open("tcp", &tcp) == RGPU_OK);
        rgpu_fuzz_tcp_eager = rgpu_transport_caps(tcp)->max_eager;
        rgpu_transport_close(tcp);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rgpu_sched_daemon_t *d = &rgpu_fuzz_daemon;
    rgpu_fuzz_in_t in = {data, size};
    uint8_t flags = rgpu_fuzz_u8(&in);
    rgpu_fuzz_buf_t stream = {0}, acc = {0};
    rgpu_sched_store_t *store;
    rgpu_sched_conn_t *conn;
    char why[256];
    int fds[2];
    size_t fed = 0, cut = 1 + ((flags >> 2) & 7) * 9;   /* 1, 10, ... 64 bytes a read */

    /* With and without a key (regress-sched-renew-frees-static-token-
     * without-key, regress-sched-sign-leak-without-key: a keyless scheduler
     * once crashed on any renew and leaked on every allocation). */
    d->have_key = flags & 1;
    d->require_signed = d->have_key && (flags & 2);
    d->eager = flags & 32 ? RGPU_FUZZ_SMALL_EAGER : rgpu_fuzz_tcp_eager;
    rgpu_fuzz_pieces.len = 0;
    d->max_conns = 16;
    d->idle_ms = 30000;
    RGPU_FUZZ_CHECK(rgpu_sched_store_open(":memory:", &store, why, sizeof(why)) == RGPU_OK);
    RGPU_FUZZ_CHECK(rgpu_sched_init(&d->sched, store, d->have_key ? &d->key : NULL, 3600, 15,
                                    rgpu_sched_now()) == RGPU_OK);
    rgpu_fuzz_register(&d->sched, 1);
    rgpu_fuzz_register(&d->sched, 2);

    rgpu_fuzz_nseqs = 0;
    rgpu_fuzz_raw = 0;
    rgpu_fuzz_stream(&in, &stream);

    RGPU_FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    fcntl(fds[1], F_SETFL, O_NONBLOCK);
    conn = calloc(1, sizeof(*conn));
    RGPU_FUZZ_CHECK(conn);
    conn->daemon = d;
    uv_tcp_init(&rgpu_fuzz_loop, &conn->tcp);
    conn->tcp.data = conn;
    d->conns = conn;
    d->nconns = 1;
    RGPU_FUZZ_CHECK(uv_tcp_open(&conn->tcp, fds[0]) == 0);
    strcpy(conn->peer, "fuzz");

    /* Feed the stream as libuv would, cut bytes at a time; big cuts after
     * the first 4 KiB so long inputs stay quick. */
    while (fed < stream.len && !uv_is_closing((uv_handle_t *)&conn->tcp)) {
        uv_buf_t buf;
        size_t n = stream.len - fed;

        if (n > (fed < 4096 ? cut : 65536))
            n = fed < 4096 ? cut : 65536;
        rgpu_sched_alloc_cb((uv_handle_t *)&conn->tcp, 65536, &buf);
        RGPU_FUZZ_CHECK(buf.base && buf.len > 0);
        if (n > buf.len)
            n = buf.len;
        memcpy(buf.base, stream.p + fed, n);
        fed += n;
        rgpu_sched_read_cb((uv_stream_t *)&conn->tcp, (ssize_t)n, &buf);
        rgpu_fuzz_flush(conn, fds[1], &acc);
    }
    /* The peer hangs up; the tick reclaims what expired. */
    if (!uv_is_closing((uv_handle_t *)&conn->tcp)) {
        uv_buf_t buf;

        rgpu_sched_alloc_cb((uv_handle_t *)&conn->tcp, 65536, &buf);
        rgpu_sched_read_cb((uv_stream_t *)&conn->tcp, UV_EOF, &buf);
    }
    uv_run(&rgpu_fuzz_loop, UV_RUN_DEFAULT);   /* runs the close callback: frees conn */
    rgpu_fuzz_replies(fds[1], &acc);
    RGPU_FUZZ_CHECK(d->nconns == 0);
    close(fds[1]);

    rgpu_fuzz_check_state(&d->sched);
    rgpu_sched_tick(&d->sched, rgpu_sched_now() + 7 * 86400 + 1);
    rgpu_fuzz_check_state(&d->sched);
    rgpu_sched_cleanup(&d->sched);
    free(stream.p);
    free(acc.p);
    return 0;
}
