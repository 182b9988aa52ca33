/*
 * The wire: rgpu's protobuf messages in frames, over a link's messages.
 *
 * transport/ moves whole frames of at most caps.max_eager bytes and knows no
 * protobuf. This layer, between it and the client and server, packs
 * protobuf bodies into frames and gives the transport what it can carry:
 *
 *   - Batches. Asynchronous requests (kernel launches, argument settings)
 *     pile up in the client's send buffer and leave together: several
 *     frames travel as one MSG_BATCH message, so a burst costs one send and
 *     one receive (and, on verbs, one receive buffer), not one per call.
 *   - Fragments. A frame larger than the eager limit (a long program
 *     source, a big build log, an inline reply too large for one message)
 *     travels as consecutive MSG_FRAGMENT messages and is put back together
 *     by the receiver, which checks its header against its limits before
 *     allocating anything.
 *   - Descriptors. Large bulk does not travel inline at all: its frame has
 *     RGPU_FRAME_F_DESC and carries a packed BulkRefs (proto/session.proto)
 *     naming registered memory, which the peer reaches with get/put
 *     (docs/transport.md: who registers, who gets and puts, and when a
 *     registration is released).
 *
 * Sending: one thread at a time per link (the caller's send lock): the
 * pieces of a fragmented frame must not interleave with other frames.
 * Receiving: one thread at a time per rgpu_wire_rx_t.
 */
#ifndef RGPU_WIRE_H
#define RGPU_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <protobuf-c/protobuf-c.h>

#include "rgpu/frame.h"
#include "rgpu/transport.h"

/* header.flags */
#define RGPU_FRAME_F_DESC 1u    /* the inline bulk is a packed BulkRefs */
#define RGPU_FRAME_F_LAST 2u    /* MSG_FRAGMENT: the last piece of its frame */

/* Bytes needed to hold a header plus the packed message (msg may be NULL). */
size_t rgpu_frame_packed_size(const ProtobufCMessage *msg);

/* Writes header and packed body at out (rgpu_frame_packed_size bytes),
 * announcing bulk_len bytes of bulk to follow. Returns bytes written. */
size_t rgpu_frame_pack(uint8_t *out, uint16_t type, uint64_t seq, uint32_t flags,
                       const ProtobufCMessage *msg, uint64_t bulk_len);

/* ---- sending ---------------------------------------------------------- */

/* Packs msg (may be NULL: an empty body) into a frame with bulk_len bytes of
 * inline bulk from bulk, and sends it: as one message when it fits the
 * link's eager limit, as fragments otherwise. bulk is sent from where it
 * lies (no copy) when the frame fits. Returns RGPU_OK, RGPU_ERR_NOMEM or
 * the link's failure. */
rgpu_status_t rgpu_wire_send(rgpu_link_t *link, uint16_t type, uint64_t seq, uint32_t flags,
                             const ProtobufCMessage *msg, const void *bulk, uint64_t bulk_len);

/* Sends one whole frame already packed, gathered from iov[0..iovcnt) (at
 * most 8; the first starts with the header): as itself when it fits the
 * eager limit, as fragments otherwise. */
rgpu_status_t rgpu_wire_send_frame(rgpu_link_t *link, const struct iovec *iov, int iovcnt);

/* Sends len bytes of whole frames lying back to back at frames: one frame
 * as itself, several as MSG_BATCH messages of at most the eager limit,
 * cut at frame boundaries (a frame too large for a batch goes alone, as
 * rgpu_wire_send_frame sends it). The frames are the caller's own: they
 * are trusted to be well formed. */
rgpu_status_t rgpu_wire_send_frames(rgpu_link_t *link, const uint8_t *frames, size_t len);

/* For senders that write frames without a link (the scheduler daemon
 * writes to libuv streams) and must fragment exactly as
 * rgpu_wire_send_frame does: a frame of total bytes, more than the peer's
 * eager limit, travels as MSG_FRAGMENT messages, each this outer header
 * followed by the frame's next bytes. Writes the header of the piece that
 * starts at offset off (0 <= off < total) into head and returns the
 * piece's length; off + it == total on the last piece. */
size_t rgpu_wire_fragment_head(uint64_t total, uint64_t off, size_t eager,
                               uint8_t head[RGPU_FRAME_HEADER_SIZE]);

/* ---- receiving -------------------------------------------------------- */

/* How long the rest of a fragmented frame may take after its first piece:
 * the bound a server session puts on a client's get or put (60 s), time
 * enough for the largest frame a receiver puts back together at any rate a
 * working link has. */
#define RGPU_WIRE_FRAGMENT_TIMEOUT_MS 60000

/* One frame as the layer above sees it: batches and fragments are gone. */
typedef struct {
    rgpu_frame_header_t header;
    const uint8_t *body;        /* header.body_len bytes; never NULL */
    const uint8_t *bulk;        /* header.bulk_len bytes of inline bulk; NULL
                                 * when header.flags has RGPU_FRAME_F_STREAM:
                                 * take them with rgpu_wire_take_bulk */
} rgpu_wire_frame_t;

typedef struct rgpu_wire_rx {
    rgpu_link_t *link;
    /* What the receiver accepts, for every frame (inside batches and put
     * back together from fragments too). */
    rgpu_frame_limits_t limits;
    /* The largest frame (header + body + inline bulk) put back together
     * from fragments; a larger one ends the link's use (RGPU_ERR_TOO_LARGE).
     * The receiver may change it between receives (a server keeps it small
     * until the client shook hands). */
    uint64_t max_assembled;
    /* Once the first piece of a fragmented frame arrived, the rest must
     * arrive within this many milliseconds of it (CLOCK_MONOTONIC), or the
     * receive fails (see rgpu_wire_recv): a peer that sends one piece and
     * stalls must not hold its receiver forever. rgpu_wire_rx_init sets
     * RGPU_WIRE_FRAGMENT_TIMEOUT_MS; the receiver may lower it between
     * receives (tests do); 0 or less means that default. */
    int fragment_timeout_ms;
    /* Non-zero: frames whose bulk follows in the stream
     * (RGPU_FRAME_F_STREAM, on caps.stream_bulk transports) are handed
     * over, and the receiver takes their bulk with rgpu_wire_take_bulk
     * before the next receive (what it leaves is dropped). 0 (the
     * default): such a frame is refused. A server's sessions take them. */
    int take_stream;
    /* private */
    rgpu_msg_t *msg;            /* the message the last frame came from */
    size_t batch_off;           /* next frame's offset in msg's bulk, if a batch */
    uint8_t *assembled;         /* a frame put back together */
    rgpu_status_t failed;       /* the first failure, returned from then on */
} rgpu_wire_rx_t;

void rgpu_wire_rx_init(rgpu_wire_rx_t *rx, rgpu_link_t *link, const rgpu_frame_limits_t *limits,
                       uint64_t max_assembled);
/* Releases what the last frame came from. */
void rgpu_wire_rx_fini(rgpu_wire_rx_t *rx);

/* Hands over the next frame in *f, valid until the next rgpu_wire_recv on
 * rx or rgpu_wire_rx_fini. timeout_ms bounds the wait for a frame to
 * begin, as rgpu_link_msg_recv's (-1: no limit, 0: only what has arrived).
 * Once the first piece of a fragmented frame arrived, the receiver is in
 * the middle of a frame and waits for the rest: within
 * rx->fragment_timeout_ms of that piece, and within timeout_ms of the call
 * if timeout_ms > 0 (0 takes a frame that has begun to arrive whole). If
 * the rest does not come in time, the receive fails with RGPU_ERR_PROTOCOL
 * and a reason that says so ("the rest of a fragmented frame of N bytes
 * (type T) did not arrive within 60 s ..."), never RGPU_ERR_TIMEOUT: half a
 * frame cannot be resumed, and a caller that retries on a timeout must not
 * spin on a failed rx. Returns RGPU_OK; RGPU_ERR_TIMEOUT (no frame began
 * to arrive; nothing was taken); the link's failure (reason:
 * rgpu_link_reason's); or what is wrong with what the peer sent
 * (RGPU_ERR_BAD_MAGIC, _BAD_VERSION, _TOO_LARGE, _PROTOCOL), with a
 * sentence in reason; after a failure the rx has nothing more to give. */
rgpu_status_t rgpu_wire_recv(rgpu_wire_rx_t *rx, rgpu_wire_frame_t *f, int timeout_ms,
                             char *reason, size_t reason_cap);

/* Non-zero when frames wait to be handed over without the link's event fd
 * turning readable for them (left in a batch, or already received into
 * the transport's buffers: rgpu_link_has_buffered). Receive with timeout 0
 * until it is zero before sleeping on the event fd. */
int rgpu_wire_rx_pending(const rgpu_wire_rx_t *rx);

/* Receives the next len bytes of the last frame's bulk, which follows it
 * in the stream (RGPU_FRAME_F_STREAM), straight into dst. Returns RGPU_OK,
 * RGPU_ERR_INVALID_ARG (the last frame has no such bulk, or less than len
 * left), or the link's failure (reason: rgpu_link_reason). */
rgpu_status_t rgpu_wire_take_bulk(rgpu_wire_rx_t *rx, void *dst, uint64_t len);

/* ---- descriptors (RGPU_FRAME_F_DESC) ---------------------------------- */

/* Largest packed BulkRefs: two descriptors of four varints each. */
#define RGPU_WIRE_REFS_MAX 128u

/* Packs the descriptors (either may be NULL, not both) into out; returns
 * the bytes written. */
size_t rgpu_wire_refs_pack(const rgpu_mem_desc_t *data, const rgpu_mem_desc_t *reply,
                           uint8_t out[RGPU_WIRE_REFS_MAX]);

/* Unpacks a frame's BulkRefs; a descriptor that is absent is left with
 * len 0 and *has_* 0. Returns RGPU_OK or RGPU_ERR_BAD_MESSAGE (too long,
 * does not unpack, neither present, or one present with len 0 or key 0),
 * with reason. */
rgpu_status_t rgpu_wire_refs_unpack(const uint8_t *in, size_t len, rgpu_mem_desc_t *data,
                                    int *has_data, rgpu_mem_desc_t *reply, int *has_reply,
                                    char *reason, size_t reason_cap);

#endif
