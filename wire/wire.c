/*
 * rgpu's frames over a link's messages: see rgpu/wire.h.
 *
 * Message shapes (all within the link's eager limit):
 *
 *   a frame that fits    [header][body][bulk]                      as itself
 *   a batch              [BATCH, bulk=n][frame][frame]...          n bytes of whole frames
 *   a frame too large    [FRAGMENT, bulk=k][first k bytes of the frame (its header first)]
 *                        [FRAGMENT, bulk=k][next k bytes] ... [FRAGMENT|F_LAST][the rest]
 */
#include "rgpu/wire.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "session.pb-c.h"

/* The header's place in each message that carries other frames. */
#define RGPU_WIRE_OUTER RGPU_FRAME_HEADER_SIZE

size_t rgpu_frame_packed_size(const ProtobufCMessage *msg)
{
    return RGPU_FRAME_HEADER_SIZE + (msg ? protobuf_c_message_get_packed_size(msg) : 0);
}

size_t rgpu_frame_pack(uint8_t *out, uint16_t type, uint64_t seq, uint32_t flags,
                       const ProtobufCMessage *msg, uint64_t bulk_len)
{
    size_t body_len = msg ? protobuf_c_message_pack(msg, out + RGPU_FRAME_HEADER_SIZE) : 0;
    rgpu_frame_header_t header = {
        .version = RGPU_PROTOCOL_VERSION,
        .type = type,
        .flags = flags,
        .body_len = (uint32_t)body_len,
        .seq = seq,
        .bulk_len = bulk_len,
    };

    rgpu_frame_header_encode(&header, out);
    return RGPU_FRAME_HEADER_SIZE + body_len;
}

static size_t rgpu_wire_eager(rgpu_link_t *link)
{
    return rgpu_transport_caps(link->tp)->max_eager;
}

static void rgpu_wire_outer_header(uint8_t out[RGPU_FRAME_HEADER_SIZE], uint16_t type, uint32_t flags,
                                   uint64_t bulk_len)
{
    rgpu_frame_header_t h = {RGPU_PROTOCOL_VERSION, type, flags, 0, 0, bulk_len};

    rgpu_frame_header_encode(&h, out);
}

/* ---- sending ---------------------------------------------------------- */

size_t rgpu_wire_fragment_head(uint64_t total, uint64_t off, size_t eager,
                               uint8_t head[RGPU_FRAME_HEADER_SIZE])
{
    const size_t piece_max = eager - RGPU_WIRE_OUTER;
    uint64_t left = total - off;
    size_t piece = left < piece_max ? (size_t)left : piece_max;

    rgpu_wire_outer_header(head, RGPU__MSG_TYPE__MSG_FRAGMENT,
                           off + piece == total ? RGPU_FRAME_F_LAST : 0, piece);
    return piece;
}

/* Sends the frame gathered in iov, total bytes, as MSG_FRAGMENT pieces. */
static rgpu_status_t rgpu_wire_send_fragments(rgpu_link_t *link, const struct iovec *iov, int iovcnt,
                                              uint64_t total)
{
    const size_t eager = rgpu_wire_eager(link);
    uint8_t head[RGPU_FRAME_HEADER_SIZE];
    int i = 0;
    size_t in_iov = 0;          /* bytes of iov[i] already sent */
    uint64_t sent = 0;

    while (sent < total) {
        size_t piece = rgpu_wire_fragment_head(total, sent, eager, head);
        struct iovec out[1 + 8];
        int n = 0;
        size_t need = piece;
        rgpu_status_t status;

        out[n++] = (struct iovec){head, sizeof(head)};
        while (need > 0) {
            size_t avail = iov[i].iov_len - in_iov;
            size_t take = avail < need ? avail : need;

            if (take > 0)
                out[n++] = (struct iovec){(uint8_t *)iov[i].iov_base + in_iov, take};
            in_iov += take;
            need -= take;
            if (in_iov == iov[i].iov_len) {
                i++;
                in_iov = 0;
            }
        }
        status = rgpu_link_msg_send(link, out, n, NULL);
        if (status != RGPU_OK)
            return status;
        sent += piece;
    }
    return RGPU_OK;
}

rgpu_status_t rgpu_wire_send_frame(rgpu_link_t *link, const struct iovec *iov, int iovcnt)
{
    uint64_t total = 0;

    if (iovcnt < 1 || iovcnt > 8)
        return RGPU_ERR_INVALID_ARG;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total <= rgpu_wire_eager(link))
        return rgpu_link_msg_send(link, iov, iovcnt, NULL);
    /* A frame whose bulk follows it in the stream goes as itself. */
    if (iov[0].iov_len >= RGPU_FRAME_HEADER_SIZE) {
        rgpu_frame_header_t h;

        if (rgpu_frame_header_decode(iov[0].iov_base, NULL, &h) == RGPU_OK && (h.flags & RGPU_FRAME_F_STREAM))
            return rgpu_link_msg_send(link, iov, iovcnt, NULL);
    }
    return rgpu_wire_send_fragments(link, iov, iovcnt, total);
}

rgpu_status_t rgpu_wire_send(rgpu_link_t *link, uint16_t type, uint64_t seq, uint32_t flags,
                             const ProtobufCMessage *msg, const void *bulk, uint64_t bulk_len)
{
    uint8_t small[512];
    size_t need = rgpu_frame_packed_size(msg);
    uint8_t *head = need <= sizeof(small) ? small : malloc(need);
    struct iovec iov[2];
    rgpu_status_t status;

    if (!head)
        return RGPU_ERR_NOMEM;
    iov[0] = (struct iovec){head, rgpu_frame_pack(head, type, seq, flags, msg, bulk_len)};
    iov[1] = (struct iovec){(void *)bulk, (size_t)bulk_len};
    status = rgpu_wire_send_frame(link, iov, bulk_len ? 2 : 1);
    if (head != small)
        free(head);
    return status;
}

/* Bytes of the whole frame starting at p (the caller's own, well formed). */
static uint64_t rgpu_wire_frame_size(const uint8_t *p)
{
    rgpu_frame_header_t h;

    if (rgpu_frame_header_decode(p, NULL, &h) != RGPU_OK)
        return 0;
    return RGPU_FRAME_HEADER_SIZE + (uint64_t)h.body_len + h.bulk_len;
}

rgpu_status_t rgpu_wire_send_frames(rgpu_link_t *link, const uint8_t *frames, size_t len)
{
    const size_t eager = rgpu_wire_eager(link);
    size_t off = 0;

    while (off < len) {
        size_t start = off, bytes = 0;
        int n = 0;
        rgpu_status_t status;

        while (off < len) {
            uint64_t size = rgpu_wire_frame_size(frames + off);

            if (size == 0 || size > len - off)
                return RGPU_ERR_INVALID_ARG;    /* the caller's bug */
            if (n > 0 && RGPU_WIRE_OUTER + bytes + size > eager)
                break;
            bytes += (size_t)size;
            off += (size_t)size;
            n++;
            if (RGPU_WIRE_OUTER + size > eager)
                break;      /* alone, as itself or in fragments */
        }
        if (n == 1) {
            struct iovec iov = {(void *)(frames + start), bytes};
            status = rgpu_wire_send_frame(link, &iov, 1);
        } else {
            uint8_t head[RGPU_FRAME_HEADER_SIZE];
            struct iovec iov[2] = {{head, sizeof(head)}, {(void *)(frames + start), bytes}};

            rgpu_wire_outer_header(head, RGPU__MSG_TYPE__MSG_BATCH, 0, bytes);
            status = rgpu_link_msg_send(link, iov, 2, NULL);
        }
        if (status != RGPU_OK)
            return status;
    }
    return RGPU_OK;
}

/* ---- receiving -------------------------------------------------------- */

void rgpu_wire_rx_init(rgpu_wire_rx_t *rx, rgpu_link_t *link, const rgpu_frame_limits_t *limits,
                       uint64_t max_assembled)
{
    memset(rx, 0, sizeof(*rx));
    rx->link = link;
    if (limits) {
        rx->limits = *limits;
    } else {
        rx->limits.max_body = RGPU_FRAME_DEFAULT_MAX_BODY;
        rx->limits.max_bulk = RGPU_FRAME_DEFAULT_MAX_BULK;
    }
    rx->max_assembled = max_assembled;
    rx->fragment_timeout_ms = RGPU_WIRE_FRAGMENT_TIMEOUT_MS;
}

static void rgpu_wire_rx_drop(rgpu_wire_rx_t *rx)
{
    if (rx->assembled) {        /* free(NULL) is not free under jemalloc */
        free(rx->assembled);
        rx->assembled = NULL;
    }
    if (rx->msg)
        rgpu_msg_release(rx->msg);
    rx->msg = NULL;
    rx->batch_off = 0;
}

void rgpu_wire_rx_fini(rgpu_wire_rx_t *rx)
{
    rgpu_wire_rx_drop(rx);
}

static int rgpu_wire_in_batch(const rgpu_wire_rx_t *rx)
{
    return rx->msg && rx->msg->header.type == RGPU__MSG_TYPE__MSG_BATCH &&
           rx->batch_off < rx->msg->header.bulk_len;
}

rgpu_status_t rgpu_wire_take_bulk(rgpu_wire_rx_t *rx, void *dst, uint64_t len)
{
    if (rx->failed != RGPU_OK)
        return rx->failed;
    if (!rx->msg || rgpu_wire_in_batch(rx) || !(rx->msg->header.flags & RGPU_FRAME_F_STREAM))
        return RGPU_ERR_INVALID_ARG;
    return rgpu_msg_take_bulk(rx->msg, dst, len);
}

int rgpu_wire_rx_pending(const rgpu_wire_rx_t *rx)
{
    /* After a failure nothing more will be handed over, whatever the
     * transport still holds of the refused frame. */
    if (rx->failed != RGPU_OK)
        return 0;
    return rgpu_wire_in_batch(rx) || rgpu_link_has_buffered(rx->link);
}

static rgpu_status_t rgpu_wire_fail(rgpu_wire_rx_t *rx, rgpu_status_t status, char *reason,
                                    size_t reason_cap, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static rgpu_status_t rgpu_wire_fail(rgpu_wire_rx_t *rx, rgpu_status_t status, char *reason,
                                    size_t reason_cap, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, reason_cap, fmt, ap);
    va_end(ap);
    /* Data refused in the stream is not read: receiving stops (the link
     * still sends, so the receiver can say why). */
    if (rx->msg && rx->msg->stream_left)
        rgpu_link_shutdown_recv(rx->link);
    rgpu_wire_rx_drop(rx);
    rx->failed = status;
    return status;
}

/* Decodes the header of a frame carried inside a batch or fragments
 * (avail bytes are there) against the receiver's limits. */
static rgpu_status_t rgpu_wire_inner_header(rgpu_wire_rx_t *rx, const uint8_t *p, uint64_t avail,
                                            const char *where, rgpu_frame_header_t *h,
                                            char *reason, size_t reason_cap)
{
    rgpu_status_t status;

    if (avail < RGPU_FRAME_HEADER_SIZE)
        return rgpu_wire_fail(rx, RGPU_ERR_PROTOCOL, reason, reason_cap,
                              "%s ends %llu bytes into a frame header", where,
                              (unsigned long long)avail);
    status = rgpu_frame_header_decode(p, &rx->limits, h);
    if (status != RGPU_OK) {
        char why[256];

        rgpu_frame_header_explain(p, &rx->limits, status, why, sizeof(why));
        return rgpu_wire_fail(rx, status, reason, reason_cap, "%s: %s", where, why);
    }
    if (h->type == RGPU__MSG_TYPE__MSG_BATCH || h->type == RGPU__MSG_TYPE__MSG_FRAGMENT)
        return rgpu_wire_fail(rx, RGPU_ERR_PROTOCOL, reason, reason_cap,
                              "%s holds a frame of type %u, which only carries other frames",
                              where, h->type);
    if (h->flags & RGPU_FRAME_F_STREAM)
        return rgpu_wire_fail(rx, RGPU_ERR_PROTOCOL, reason, reason_cap,
                              "%s holds a frame of type %u whose data would follow in the stream",
                              where, h->type);
    return RGPU_OK;
}

/* Header + body + bulk of h, saturated at UINT64_MAX: a receiver with no
 * bulk limit must not see a claimed 2^64 - 32 bytes of bulk as a frame of
 * 0 bytes. */
static uint64_t rgpu_wire_whole_size(const rgpu_frame_header_t *h)
{
    uint64_t head = RGPU_FRAME_HEADER_SIZE + (uint64_t)h->body_len;

    return h->bulk_len > UINT64_MAX - head ? UINT64_MAX : head + h->bulk_len;
}

/* The next frame of the current batch. */
static rgpu_status_t rgpu_wire_batch_next(rgpu_wire_rx_t *rx, rgpu_wire_frame_t *f, char *reason,
                                          size_t reason_cap)
{
    const uint8_t *p = rx->msg->bulk + rx->batch_off;
    uint64_t avail = rx->msg->header.bulk_len - rx->batch_off;
    uint64_t size;
    rgpu_status_t status;

    status = rgpu_wire_inner_header(rx, p, avail, "a batch", &f->header, reason, reason_cap);
    if (status != RGPU_OK)
        return status;
    size = rgpu_wire_whole_size(&f->header);
    if (size > avail)
        return rgpu_wire_fail(rx, RGPU_ERR_PROTOCOL, reason, reason_cap,
                              "a frame of %llu bytes (type %u) overruns its batch by %llu bytes",
                              (unsigned long long)size, f->header.type,
                              (unsigned long long)(size - avail));
    f->body = p + RGPU_FRAME_HEADER_SIZE;
    f->bulk = f->body + f->header.body_len;
    rx->batch_off += (size_t)size;
    return RGPU_OK;
}

static uint64_t rgpu_wire_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* "60 s" or "300 ms", for reasons. */
static const char *rgpu_wire_duration(char *buf, size_t cap, uint64_t ms)
{
    if (ms >= 1000 && ms % 1000 == 0)
        snprintf(buf, cap, "%llu s", (unsigned long long)(ms / 1000));
    else
        snprintf(buf, cap, "%llu ms", (unsigned long long)ms);
    return buf;
}

/* When the rest of a fragmented frame whose first piece came at first_ns
 * must have arrived: rx->fragment_timeout_ms after it, or the caller's own
 * deadline (call_deadline_ns, 0: none) if that comes sooner (*by_caller_p
 * then says so). */
static uint64_t rgpu_wire_rest_deadline(const rgpu_wire_rx_t *rx, uint64_t first_ns,
                                        uint64_t call_deadline_ns, int *by_caller_p)
{
    int bound_ms = rx->fragment_timeout_ms > 0 ? rx->fragment_timeout_ms
                                                : RGPU_WIRE_FRAGMENT_TIMEOUT_MS;
    uint64_t deadline = first_ns + (uint64_t)bound_ms * 1000000u;

    *by_caller_p = call_deadline_ns != 0 && call_deadline_ns < deadline;
    return *by_caller_p ? call_deadline_ns : deadline;
}

/* Puts a fragmented frame back together; first is its first piece (taken).
 * The rest must arrive by the deadline rgpu_wire_rest_deadline sets; each
 * receive waits for what is left of it. call_start_ns and timeout_ms are
 * the caller's (call_start_ns is read only when timeout_ms > 0). */
static rgpu_status_t rgpu_wire_assemble(rgpu_wire_rx_t *rx, rgpu_msg_t *first, rgpu_wire_frame_t *f,
                                        uint64_t call_start_ns, int timeout_ms, char *reason,
                                        size_t reason_cap)
{
    rgpu_msg_t *m = first;
    uint64_t total, got = 0, first_ns = rgpu_wire_now_ns(), deadline, waited_ms;
    uint8_t *buf;
    rgpu_status_t status;
    int by_caller;
    char how_long[32];

    rx->msg = m;    /* released by rgpu_wire_fail or below */
    status = rgpu_wire_inner_header(rx, m->bulk, m->header.bulk_len, "the first fragment of a frame",
                                    &f->header, reason, reason_cap);
    if (status != RGPU_OK)
        return status;
    total = rgpu_wire_whole_size(&f->header);
    if (total > rx->max_assembled)
        return rgpu_wire_fail(rx, RGPU_ERR_TOO_LARGE, reason, reason_cap,
                              "a frame of %llu bytes (type %u) sent in fragments, past the %llu "
                              "bytes this side puts back together", (unsigned long long)total,
                              f->header.type, (unsigned long long)rx->max_assembled);
    buf = malloc((size_t)total);
    if (!buf)
        return rgpu_wire_fail(rx, RGPU_ERR_NOMEM, reason, reason_cap,
                              "out of memory for a frame of %llu bytes", (unsigned long long)total);
    rx->assembled = buf;
    deadline = rgpu_wire_rest_deadline(
        rx, first_ns, timeout_ms > 0 ? call_start_ns + (uint64_t)timeout_ms * 1000000u : 0,
        &by_caller);
    for (;;) {
        int last = (m->header.flags & RGPU_FRAME_F_LAST) != 0;
        uint64_t piece = m->header.bulk_len;

        if (m->header.body_len != 0 || piece > total - got)
            return rgpu_wire_fail(rx, RGPU_ERR_PROTOCOL, reason, reason_cap,
                                  "the fragments of a frame of %llu bytes (type %u) overrun it",
                                  (unsigned long long)total, f->header.type);
        memcpy(buf + got, m->bulk, (size_t)piece);
        got += piece;
        rgpu_msg_release(m);
        rx->msg = NULL;
        if (last)
            break;
        /* Wait for what is left until the deadline, again after a wait that
         * returned early; rounded up, so the last wait does not spin. */
        do {
            uint64_t now = rgpu_wire_now_ns();
            uint64_t left_ms = now < deadline ? (deadline - now + 999999u) / 1000000u : 0;

            status = RGPU_ERR_TIMEOUT;
            if (left_ms > 0)
                status = rgpu_link_msg_recv(rx->link, &m,
                                            left_ms > INT32_MAX ? INT32_MAX : (int)left_ms);
        } while (status == RGPU_ERR_TIMEOUT && rgpu_wire_now_ns() < deadline);
        if (status == RGPU_ERR_TIMEOUT) {
            waited_ms = (deadline - (by_caller ? call_start_ns : first_ns)) / 1000000u;
            return rgpu_wire_fail(rx, RGPU_ERR_PROTOCOL, reason, reason_cap,
                                  "the rest of a fragmented frame of %llu bytes (type %u) did not "
                                  "arrive within %s%s (%llu of its bytes came)",
                                  (unsigned long long)total, f->header.type,
                                  rgpu_wire_duration(how_long, sizeof(how_long), waited_ms),
                                  by_caller ? ", the time this receive was given" : " of its first piece",
                                  (unsigned long long)got);
        }
        if (status != RGPU_OK)
            return rgpu_wire_fail(rx, status, reason, reason_cap, "%s", rgpu_link_reason(rx->link));
        rx->msg = m;
        if (m->header.type != RGPU__MSG_TYPE__MSG_FRAGMENT)
            return rgpu_wire_fail(rx, RGPU_ERR_PROTOCOL, reason, reason_cap,
                                  "a frame of type %u came between the fragments of another",
                                  m->header.type);
    }
    if (got != total)
        return rgpu_wire_fail(rx, RGPU_ERR_PROTOCOL, reason, reason_cap,
                              "the fragments of a frame add up to %llu bytes; its header says %llu",
                              (unsigned long long)got, (unsigned long long)total);
    f->body = buf + RGPU_FRAME_HEADER_SIZE;
    f->bulk = f->body + f->header.body_len;
    return RGPU_OK;
}

rgpu_status_t rgpu_wire_recv(rgpu_wire_rx_t *rx, rgpu_wire_frame_t *f, int timeout_ms,
                             char *reason, size_t reason_cap)
{
    static const uint8_t empty[1];
    /* The caller's deadline matters only in the middle of a fragmented
     * frame; the clock is read for it only when there is one. */
    uint64_t call_start_ns = timeout_ms > 0 ? rgpu_wire_now_ns() : 0;
    rgpu_msg_t *m;
    rgpu_status_t status;

    if (rx->failed != RGPU_OK) {
        snprintf(reason, reason_cap, "%s", rgpu_status_str(rx->failed));
        return rx->failed;
    }
    if (rgpu_wire_in_batch(rx))
        return rgpu_wire_batch_next(rx, f, reason, reason_cap);
    rgpu_wire_rx_drop(rx);
    for (;;) {
        status = rgpu_link_msg_recv(rx->link, &m, timeout_ms);
        if (status == RGPU_ERR_TIMEOUT)
            return status;
        if (status != RGPU_OK)
            return rgpu_wire_fail(rx, status, reason, reason_cap, "%s", rgpu_link_reason(rx->link));
        /* A batch or a fragment carries other frames, each checked against
         * the limits on its own (the carrier is bounded by the eager
         * limit): a receiver that takes no bulk still takes a large reply
         * in fragments. */
        if (m->header.type != RGPU__MSG_TYPE__MSG_BATCH &&
            m->header.type != RGPU__MSG_TYPE__MSG_FRAGMENT &&
            (m->header.body_len > rx->limits.max_body || m->header.bulk_len > rx->limits.max_bulk)) {
            uint8_t raw[RGPU_FRAME_HEADER_SIZE];
            char why[256];

            rgpu_frame_header_encode(&m->header, raw);
            rgpu_frame_header_explain(raw, &rx->limits, RGPU_ERR_TOO_LARGE, why, sizeof(why));
            if (m->stream_left)
                rgpu_link_shutdown_recv(rx->link);     /* not read: see rgpu_wire_fail */
            rgpu_msg_release(m);
            return rgpu_wire_fail(rx, RGPU_ERR_TOO_LARGE, reason, reason_cap, "%s", why);
        }
        switch (m->header.type) {
        case RGPU__MSG_TYPE__MSG_BATCH:
            rx->msg = m;
            rx->batch_off = 0;
            if (m->header.body_len != 0 || m->header.bulk_len == 0)
                return rgpu_wire_fail(rx, RGPU_ERR_PROTOCOL, reason, reason_cap,
                                      "a batch with a %u-byte body and %llu bytes of frames",
                                      m->header.body_len, (unsigned long long)m->header.bulk_len);
            return rgpu_wire_batch_next(rx, f, reason, reason_cap);
        case RGPU__MSG_TYPE__MSG_FRAGMENT:
            return rgpu_wire_assemble(rx, m, f, call_start_ns, timeout_ms, reason, reason_cap);
        default:
            rx->msg = m;
            if ((m->header.flags & RGPU_FRAME_F_STREAM) &&
                (!rx->take_stream || !rgpu_transport_caps(rx->link->tp)->stream_bulk ||
                 m->header.bulk_len == 0 || m->bulk))
                return rgpu_wire_fail(rx, RGPU_ERR_PROTOCOL, reason, reason_cap,
                                      "a frame of type %u with its data following in the stream, "
                                      "which this side does not take", m->header.type);
            f->header = m->header;
            f->body = m->body ? m->body : empty;
            f->bulk = m->bulk;
            return RGPU_OK;
        }
    }
}

/* ---- descriptors ------------------------------------------------------ */

static void rgpu_wire_desc_to_proto(const rgpu_mem_desc_t *d, Rgpu__BulkDesc *p)
{
    p->addr = d->addr;
    p->len = d->len;
    p->key = d->key;
    p->memtype = d->memtype;
}

size_t rgpu_wire_refs_pack(const rgpu_mem_desc_t *data, const rgpu_mem_desc_t *reply,
                           uint8_t out[RGPU_WIRE_REFS_MAX])
{
    Rgpu__BulkRefs refs = RGPU__BULK_REFS__INIT;
    Rgpu__BulkDesc d = RGPU__BULK_DESC__INIT, r = RGPU__BULK_DESC__INIT;

    if (data) {
        rgpu_wire_desc_to_proto(data, &d);
        refs.data = &d;
    }
    if (reply) {
        rgpu_wire_desc_to_proto(reply, &r);
        refs.reply = &r;
    }
    return rgpu__bulk_refs__pack(&refs, out);
}

static int rgpu_wire_desc_from_proto(const Rgpu__BulkDesc *p, rgpu_mem_desc_t *d)
{
    memset(d, 0, sizeof(*d));
    if (!p)
        return 0;
    d->addr = p->addr;
    d->len = p->len;
    d->key = p->key;
    d->memtype = p->memtype;
    return 1;
}

rgpu_status_t rgpu_wire_refs_unpack(const uint8_t *in, size_t len, rgpu_mem_desc_t *data,
                                    int *has_data, rgpu_mem_desc_t *reply, int *has_reply,
                                    char *reason, size_t reason_cap)
{
    Rgpu__BulkRefs *refs;

    *has_data = *has_reply = 0;
    if (len > RGPU_WIRE_REFS_MAX) {
        snprintf(reason, reason_cap, "descriptors of %zu bytes, past the %u a request may carry",
                 len, RGPU_WIRE_REFS_MAX);
        return RGPU_ERR_BAD_MESSAGE;
    }
    refs = rgpu__bulk_refs__unpack(NULL, len, in);
    if (!refs) {
        snprintf(reason, reason_cap, "the request's descriptors (%zu bytes) do not unpack", len);
        return RGPU_ERR_BAD_MESSAGE;
    }
    *has_data = rgpu_wire_desc_from_proto(refs->data, data);
    *has_reply = rgpu_wire_desc_from_proto(refs->reply, reply);
    rgpu__bulk_refs__free_unpacked(refs, NULL);
    if (!*has_data && !*has_reply) {
        snprintf(reason, reason_cap, "a request marked as carrying descriptors carries none");
        return RGPU_ERR_BAD_MESSAGE;
    }
    if ((*has_data && (data->len == 0 || data->key == 0)) ||
        (*has_reply && (reply->len == 0 || reply->key == 0))) {
        snprintf(reason, reason_cap, "a descriptor with no length or no key");
        return RGPU_ERR_BAD_MESSAGE;
    }
    return RGPU_OK;
}
