/*
 * Transports: an ops table per network (tcp, verbs). Upper layers hold an
 * rgpu_link_t and call the functions below; they never ask which transport
 * they are on.
 *
 * Messages, registered memory and get/put (Mercury NA / UCX UCT shape,
 * docs/transport.md): a transport instance (rgpu_transport_t) states its
 * capabilities; a link sends and receives whole frames, at most
 * caps.max_eager bytes each; bulk past that moves by rgpu_link_get /
 * rgpu_link_put between memory registered on both ends, named to the peer
 * by a descriptor (rgpu_mem_desc_t: address, length, key) that travels
 * inside a message. Any thread may call these; the link serializes its
 * senders itself and lets one thread at a time receive (leader/follower).
 * Protobuf is the wire layer's (wire/include/rgpu/wire.h), above this one.
 *
 * Every function returns RGPU_OK or an RGPU_ERR_* status and logs nothing:
 * the caller decides what an error means.
 */
#ifndef RGPU_TRANSPORT_H
#define RGPU_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "rgpu/frame.h"
#include "rgpu/status.h"

typedef struct rgpu_transport_ops rgpu_transport_ops_t;
typedef struct rgpu_transport rgpu_transport_t;
typedef struct rgpu_mem rgpu_mem_t;
typedef struct rgpu_msg rgpu_msg_t;
typedef struct rgpu_completion rgpu_completion_t;
typedef struct rgpu__link_state rgpu__link_state_t;

typedef struct rgpu_link {
    const rgpu_transport_ops_t *ops;
    char peer[80];              /* "host:port" of the other end, for logs */
    rgpu_transport_t *tp;       /* the instance whose registrations it serves */
    rgpu__link_state_t *state;  /* the message layer's, private */
} rgpu_link_t;

typedef struct rgpu_listener {
    const rgpu_transport_ops_t *ops;
    char local[80];             /* "host:port" actually bound (port 0 resolved) */
    rgpu_transport_t *tp;       /* accepted links belong to it */
} rgpu_listener_t;

/* What a transport instance can do, fixed once it is open (UCX
 * uct_iface_attr_t's cap fields). Upper layers size their messages and
 * transfers from these, never from the transport's name. */
typedef struct {
    size_t max_eager;       /* largest frame (header + body + inline bulk) a
                             * message may be; past it, bulk goes by get/put */
    int remote_access;      /* 1: get/put complete without the peer's CPU
                             * (RDMA); 0: the peer's progress serves them
                             * (TCP: someone on the peer must receive), and
                             * a put has sent its local bytes by the time
                             * rgpu_link_put returns (the local region may
                             * be deregistered and reused then; the
                             * completion brings only the peer's status) */
    uint64_t max_rma;       /* largest single get/put; the caller splits larger */
    size_t rma_align;       /* get/put addresses and lengths must be multiples
                             * of it (1: any) */
    int reg_pins;           /* 1: registering pins pages and is costly, so the
                             * registration cache keeps unused regions (and
                             * needs memory-event invalidation); 0: cheap */
    int stream_bulk;        /* 1: a frame's bulk may follow it in the stream
                             * past max_eager (RGPU_FRAME_F_STREAM), sent
                             * from the caller's memory and received where
                             * the receiver says (rgpu_msg_take_bulk): a
                             * transfer with no round trip before its bytes
                             * (tcp); 0: bulk past max_eager goes by get/put */
} rgpu_transport_caps_t;

/* Kinds of memory a registration can name. Only host memory exists yet; the
 * field travels in descriptors so that GPU memory (GPUDirect) needs no
 * protocol change. */
typedef enum {
    RGPU_MEMTYPE_HOST = 0,
    RGPU_MEMTYPE_CUDA = 1,
} rgpu_memtype_t;

/* What the peer may do with a registered region. Whatever they say, the
 * registering side itself may use the region as the local end of its own
 * get (written) and put (read). */
#define RGPU_MEM_LOCAL        0u    /* the peer can reach none of it: the
                                     * local end of get/put only (a server's
                                     * staging or mapped device memory) */
#define RGPU_MEM_REMOTE_READ  1u    /* the peer may get from it */
#define RGPU_MEM_REMOTE_WRITE 2u    /* the peer may put into it */
#define RGPU_MEM_REMOTE_RW    (RGPU_MEM_REMOTE_READ | RGPU_MEM_REMOTE_WRITE)

/* A registered region as the peer names it (proto BulkDesc). Plain data:
 * copy it into a message; the key is meaningless to anyone but the
 * instance that registered it, and dies with the registration. */
typedef struct {
    uint64_t addr;
    uint64_t len;
    uint64_t key;
    uint32_t memtype;       /* rgpu_memtype_t */
} rgpu_mem_desc_t;

/* Completion of a message send, get or put. The caller owns it and keeps it
 * alive until done. cb (may be NULL) runs exactly once, after status is set,
 * on whichever thread finished the operation: the caller's own thread
 * before the call returns, or a thread progressing the link; it must not
 * block and must not call back into this link's receive side. */
struct rgpu_completion {
    void (*cb)(rgpu_completion_t *c);
    void *arg;                  /* the caller's */
    rgpu_status_t status;       /* valid once done */
    int done;                   /* set (atomically, last) when finished */
};

/* A received frame in a transport-owned buffer: valid until
 * rgpu_msg_release. */
struct rgpu_msg {
    rgpu_frame_header_t header;
    const uint8_t *body;        /* header.body_len bytes */
    const uint8_t *bulk;        /* header.bulk_len bytes of inline bulk */
    rgpu_link_t *link;          /* it came from */
    rgpu_msg_t *next;           /* the transport's, while queued */
    uint64_t stream_left;       /* RGPU_FRAME_F_STREAM: bytes of its bulk still
                                 * in the stream (bulk is NULL) */
};

/* Frame types at and above this are the transport's own (get/put requests
 * and replies on transports that carry them in their stream). Messages of
 * these types are refused by rgpu_link_msg_send and never handed up. */
#define RGPU_FRAME_TYPE_TRANSPORT_FIRST 0xFF00u

/* A frame flag the transport owns (the layer above keeps the low bits):
 * the frame's bulk is not part of the message but follows it in the
 * stream, on transports with caps.stream_bulk. Its receiver takes it with
 * rgpu_msg_take_bulk; the link receives nothing else until it is all taken
 * or the message is released. */
#define RGPU_FRAME_F_STREAM 0x80000000u

struct rgpu_transport_ops {
    const char *name;
    /* Connects to "host:port" within timeout_ms. On failure, reason (if not
     * NULL) receives a sentence for the user, e.g. "connection refused". */
    rgpu_status_t (*connect)(const char *addr, int timeout_ms, rgpu_link_t **link_p,
                             char *reason, size_t reason_cap);
    /* Listens on "host:port"; port 0 picks a free port (see listener->local). */
    rgpu_status_t (*listen)(const char *addr, rgpu_listener_t **listener_p);
    /* A file descriptor that becomes readable when accept will not block. */
    int (*listener_fd)(rgpu_listener_t *listener);
    rgpu_status_t (*accept)(rgpu_listener_t *listener, rgpu_link_t **link_p);
    void (*listener_close)(rgpu_listener_t *listener);

    /* --- A stream transport's bytes (tcp), which transport/msg.c builds
     * messages and get/put on: the transport's own, never called from
     * outside transport/ (tests of a hostile peer aside). sendv gathers
     * and sends all of it (at most 16 iovecs); recv fills exactly len
     * bytes. --- */
    rgpu_status_t (*sendv)(rgpu_link_t *link, const struct iovec *iov, int iovcnt);
    rgpu_status_t (*recv)(rgpu_link_t *link, void *buf, size_t len);
    /* Bytes already received into the link's own buffer and not yet taken
     * by recv. Only the thread that receives may ask. */
    size_t (*buffered)(rgpu_link_t *link);
    /* Waits up to timeout_ms (-1: no limit) for the network to have data
     * for the link, or an error or hang-up a receive would report; returns
     * 1 then, 0 on timeout. Ignores what buffered counts, so a thread that
     * does not receive may call it while another receives. */
    int (*wait_readable)(rgpu_link_t *link, int timeout_ms);

    /* --- Every transport. --- */
    /* Makes blocked and later sends and receives fail; the link stays allocated. */
    void (*shutdown)(rgpu_link_t *link);
    /* Stream transports: makes a blocked receive and later ones fail while
     * sends still work (tcp: shutdown(SHUT_RD)); msg.c calls it from
     * rgpu_link_shutdown_recv. A transport with its own messages: the
     * contract of rgpu_link_shutdown_recv itself. */
    void (*shutdown_recv)(rgpu_link_t *link);
    void (*close)(rgpu_link_t *link);

    /* --- Instances and memory. Messages and get/put go through the
     * stream emulation in transport/msg.c unless the transport has its own
     * (the entries after these). --- */
    /* Fills tp->caps and any private state; undone by tp_close. */
    rgpu_status_t (*tp_open)(rgpu_transport_t *tp);
    void (*tp_close)(rgpu_transport_t *tp);
    /* As connect and listen, for links that belong to tp. */
    rgpu_status_t (*tp_connect)(rgpu_transport_t *tp, const char *addr, int timeout_ms,
                                rgpu_link_t **link_p, char *reason, size_t reason_cap);
    rgpu_status_t (*tp_listen)(rgpu_transport_t *tp, const char *addr,
                               rgpu_listener_t **listener_p);
    /* Makes [mem's addr, +len) reachable by the peer (verbs: ibv_reg_mr);
     * NULL: nothing to do (tcp serves from the registration table). */
    rgpu_status_t (*mem_register)(rgpu_transport_t *tp, rgpu_mem_t *mem);
    void (*mem_deregister)(rgpu_transport_t *tp, rgpu_mem_t *mem);

    /* --- A transport with its own messages, get/put and progress (verbs)
     * sets all of these, and the public calls below go straight to them;
     * NULL: msg.c emulates them over the stream entries above. Such a
     * transport may leave the stream entries (sendv, recv, buffered,
     * wait_readable) NULL: its links carry messages only. Each has the
     * contract of the public call of the same name (shutdown_recv above:
     * rgpu_link_shutdown_recv's). --- */
    rgpu_status_t (*msg_send)(rgpu_link_t *link, const struct iovec *iov, int iovcnt,
                              rgpu_completion_t *c);
    rgpu_status_t (*msg_recv)(rgpu_link_t *link, rgpu_msg_t **msg_p, int timeout_ms);
    void (*msg_release)(rgpu_msg_t *msg);
    rgpu_status_t (*rma)(rgpu_link_t *link, int is_get, rgpu_mem_t *local, uint64_t local_off,
                         const rgpu_mem_desc_t *remote, uint64_t remote_off, uint64_t len,
                         rgpu_completion_t *c);
    rgpu_status_t (*wait)(rgpu_link_t *link, rgpu_completion_t *c, int timeout_ms);
    int (*progress)(rgpu_link_t *link);
    int (*event_fd)(rgpu_link_t *link);
    const char *(*reason)(rgpu_link_t *link);
    int (*has_buffered)(rgpu_link_t *link);
};

extern const rgpu_transport_ops_t rgpu_tcp_ops;
#ifdef RGPU_HAVE_VERBS
extern const rgpu_transport_ops_t rgpu_verbs_ops;
#endif

/* Makes blocked and later sends and receives fail (a link's failure,
 * RGPU_ERR_CONN_CLOSED); the link stays allocated until rgpu_link_close. */
static inline void rgpu_link_shutdown(rgpu_link_t *link)
{
    link->ops->shutdown(link);
}

/* Stops the link's message layer (pending operations fail, queued frames
 * are freed) and frees the link. */
static inline void rgpu_link_close(rgpu_link_t *link)
{
    link->ops->close(link);
}

/* ------------------------------------------------------------------------
 * Transport instances and addresses
 * ---------------------------------------------------------------------- */

/* The one place that maps an address to a transport: "tcp://host:port",
 * "verbs://host:port", or a bare "host:port" (tcp). Sets *ops_p to the
 * transport's ops table (its connect and listen take *bare_p; links they make
 * belong to the transport's process-wide default instance) and *bare_p to
 * the address past the scheme (a pointer into addr). Returns RGPU_OK,
 * RGPU_ERR_UNSUPPORTED for a transport this build lacks (verbs without
 * rdma-core) or
 * RGPU_ERR_ADDRESS for an unknown scheme; then reason (if not NULL) gets a
 * sentence for the user. Thread-safe, allocates nothing. */
rgpu_status_t rgpu_transport_for_address(const char *addr, const rgpu_transport_ops_t **ops_p,
                                         const char **bare_p, char *reason, size_t reason_cap);

/* Whether this build and node can use the transport named "tcp" / "verbs"
 * (or by a scheme or address): RGPU_OK; RGPU_ERR_UNSUPPORTED (not built,
 * or verbs without a usable RDMA device: reason starts "no RDMA device: ");
 * RGPU_ERR_ADDRESS (an unknown name). */
rgpu_status_t rgpu_transport_usable(const char *name, char *reason, size_t reason_cap);

/* The client's choice among the addresses a server is reachable at (a
 * lease or --server may carry one per transport: "verbs://h:p",
 * "tcp://h:p", a bare "h:p" is tcp), by the environment variable
 * RGPU_TRANSPORT: "verbs" (a verbs address, and a usable RDMA device, or
 * an error), "tcp" (a tcp address), "auto" or unset (verbs where offered
 * and usable, else tcp). Sets *index_p to the address to connect to.
 * Returns RGPU_OK; RGPU_ERR_INVALID_ARG (another RGPU_TRANSPORT value);
 * RGPU_ERR_UNSUPPORTED (nothing usable), with reason. When auto falls
 * back from an offered verbs address it says why on stderr, once per
 * process: the one message the transport library writes itself. */
rgpu_status_t rgpu_transport_choose(const char *const *addrs, size_t n, size_t *index_p,
                                    char *reason, size_t reason_cap);

/* Opens an instance of a transport named "tcp" / "verbs" or by a scheme or
 * address as above ("tcp://..."). Each open is a separate instance with its
 * own registrations; release it with rgpu_transport_close once its links,
 * listeners and registrations are gone. Returns RGPU_OK, RGPU_ERR_NOMEM,
 * RGPU_ERR_UNSUPPORTED (a transport this build lacks), RGPU_ERR_ADDRESS
 * (an unknown name). */
rgpu_status_t rgpu_transport_open(const char *name_or_url_scheme, rgpu_transport_t **tp_p);
void rgpu_transport_close(rgpu_transport_t *tp);

const rgpu_transport_caps_t *rgpu_transport_caps(const rgpu_transport_t *tp);
const rgpu_transport_ops_t *rgpu_transport_ops(const rgpu_transport_t *tp);

/* Connect and listen with links belonging to tp (statuses as the ops'). */
rgpu_status_t rgpu_transport_connect(rgpu_transport_t *tp, const char *addr, int timeout_ms,
                                     rgpu_link_t **link_p, char *reason, size_t reason_cap);
rgpu_status_t rgpu_transport_listen(rgpu_transport_t *tp, const char *addr,
                                    rgpu_listener_t **listener_p);

/* A file descriptor that turns readable when any link of tp has something
 * to progress (tcp: an epoll set of its sockets). Owned by tp. Before
 * sleeping on it, progress every link until rgpu_link_progress returns 0:
 * bytes a link already buffered do not make it readable. */
int rgpu_transport_event_fd(rgpu_transport_t *tp);

/* ------------------------------------------------------------------------
 * Registered memory (rcache.h caches registrations)
 * ---------------------------------------------------------------------- */

/* Registers [addr, addr+len) of memtype for the access flags: RGPU_MEM_LOCAL
 * (the peer reaches none of it; no descriptor of it names anything to the
 * peer) or RGPU_MEM_REMOTE_*. The memory stays the caller's: it must stay
 * valid until rgpu_mem_deregister returns. Returns RGPU_OK with *mem_p,
 * RGPU_ERR_INVALID_ARG (len 0, a wrapping range, unknown access bits),
 * RGPU_ERR_UNSUPPORTED
 * (a memtype the transport cannot reach), RGPU_ERR_NOMEM. Thread-safe. */
rgpu_status_t rgpu_mem_register_access(rgpu_transport_t *tp, void *addr, size_t len,
                                       rgpu_memtype_t memtype, unsigned access,
                                       rgpu_mem_t **mem_p);

static inline rgpu_status_t rgpu_mem_register(rgpu_transport_t *tp, void *addr, size_t len,
                                              rgpu_memtype_t memtype, rgpu_mem_t **mem_p)
{
    return rgpu_mem_register_access(tp, addr, len, memtype, RGPU_MEM_REMOTE_RW, mem_p);
}

/* Withdraws the registration: its key is refused from now on. Waits for a
 * peer's get or put being served from it to finish (so the caller may free
 * the memory when this returns). Thread-safe; mem is freed. */
void rgpu_mem_deregister(rgpu_mem_t *mem);

/* The descriptor the peer needs, and the local view. */
rgpu_mem_desc_t rgpu_mem_desc(const rgpu_mem_t *mem);
void *rgpu_mem_addr(const rgpu_mem_t *mem);
size_t rgpu_mem_len(const rgpu_mem_t *mem);

/* ------------------------------------------------------------------------
 * Messages, get/put, progress (any thread; see the top of this file)
 * ---------------------------------------------------------------------- */

/* Sends one whole frame gathered from iov[0..iovcnt) (at most 16): a
 * header (rgpu_frame_pack) whose body_len and bulk_len add up with it to
 * the iovecs' total, at most caps.max_eager bytes (with
 * RGPU_FRAME_F_STREAM on a caps.stream_bulk transport: the header and body
 * at most that, the bulk up to its frame limit). c (may be NULL) is
 * completed when the buffers may be reused; tcp completes before
 * returning. Returns RGPU_OK, RGPU_ERR_INVALID_ARG (not a whole frame, or a
 * transport-reserved type), RGPU_ERR_TOO_LARGE (past max_eager), or the
 * link's failure; on an error c is left alone (nothing was started). */
rgpu_status_t rgpu_link_msg_send(rgpu_link_t *link, const struct iovec *iov, int iovcnt,
                                 rgpu_completion_t *c);

/* Waits up to timeout_ms (-1: no limit, 0: only what has arrived) for the
 * next frame, and hands it over in *msg_p (the caller releases it). Returns
 * RGPU_OK, RGPU_ERR_TIMEOUT, or the link's failure once every frame that
 * arrived before it was handed over: RGPU_ERR_CONN_CLOSED (the peer closed
 * or vanished), RGPU_ERR_TOO_LARGE / RGPU_ERR_PROTOCOL / RGPU_ERR_BAD_*
 * (the peer sent what the transport refuses), RGPU_ERR_IO; the reason is
 * rgpu_link_reason. */
rgpu_status_t rgpu_link_msg_recv(rgpu_link_t *link, rgpu_msg_t **msg_p, int timeout_ms);

/* Gives a received frame's buffer back to its transport, before the link
 * it came from is closed (the buffer may be the link's to reuse). What is
 * left of a RGPU_FRAME_F_STREAM frame's bulk is received and dropped. */
void rgpu_msg_release(rgpu_msg_t *msg);

/* Receives the next len bytes (at most msg->stream_left) of a
 * RGPU_FRAME_F_STREAM frame's bulk straight into dst. Only the thread that
 * holds msg; other receivers of the link wait meanwhile. Returns RGPU_OK,
 * RGPU_ERR_INVALID_ARG (len past what is left), or the link's failure. */
rgpu_status_t rgpu_msg_take_bulk(rgpu_msg_t *msg, void *dst, uint64_t len);

/* Reads len bytes at remote + remote_off (a descriptor the peer sent) into
 * local at local_off (get), or writes them there from local (put). local is
 * a registration of link's instance, with any access flags (RGPU_MEM_LOCAL
 * too): they say what the peer may do, not what its owner may. The local
 * region stays registered and untouched until the operation is done.
 * c == NULL: waits and returns the final status. Otherwise returns RGPU_OK
 * when started (c completes later, maybe before the call returns, with the
 * status below) or an error, with c left alone (nothing was started).
 * Statuses: RGPU_OK; RGPU_ERR_INVALID_ARG (outside local or remote's
 * bounds, past caps.max_rma, misaligned, or the peer refused: out of its
 * registration's bounds or permissions); RGPU_ERR_NOT_FOUND (the peer has no
 * registration with that key: stale or wrong); the link's failure. */
rgpu_status_t rgpu_link_get(rgpu_link_t *link, rgpu_mem_t *local, uint64_t local_off,
                            const rgpu_mem_desc_t *remote, uint64_t remote_off, uint64_t len,
                            rgpu_completion_t *c);
rgpu_status_t rgpu_link_put(rgpu_link_t *link, rgpu_mem_t *local, uint64_t local_off,
                            const rgpu_mem_desc_t *remote, uint64_t remote_off, uint64_t len,
                            rgpu_completion_t *c);

/* Waits up to timeout_ms (-1: no limit) for c to complete, progressing the
 * link meanwhile. Returns c's status, or RGPU_ERR_TIMEOUT (c still pending).
 * Every transport guarantees: whatever it returns but RGPU_ERR_TIMEOUT, c
 * has been written for the last time (done set, callback run) before it
 * returns, also when the link fails while c is pending and another thread
 * completes c (the thread that saw the peer close, one calling
 * rgpu_link_shutdown_recv, one receiving c's reply), so c may live on the
 * caller's stack (the conformance suite forces that window). */
rgpu_status_t rgpu_link_wait(rgpu_link_t *link, rgpu_completion_t *c, int timeout_ms);

/* Handles what has arrived without blocking for more: serves the peer's
 * get/put, completes operations, queues frames for rgpu_link_msg_recv.
 * Returns how many frames it handled (0: nothing, or another thread is
 * receiving), or the link's failure (a negative rgpu_status_t). */
int rgpu_link_progress(rgpu_link_t *link);

/* A file descriptor that turns readable when the link may have something to
 * progress. Owned by the link. */
int rgpu_link_event_fd(rgpu_link_t *link);

/* Why the link failed, in a sentence ("" while it works). A peer's
 * disconnect reaches message users as this failure: every pending
 * operation completes with it, then rgpu_link_msg_recv returns it. */
const char *rgpu_link_reason(rgpu_link_t *link);

/* Non-zero when frames or bytes the link already took from the network
 * wait to be handled (tcp: frames queued for rgpu_link_msg_recv, bytes in
 * its receive buffer; verbs: completed receives not handed up yet): the
 * event fd may not turn readable for them. Receive or progress with
 * timeout 0 until this is 0 before sleeping on the event fd. Makes no
 * system call. Any thread; a hint when another thread is receiving. */
int rgpu_link_has_buffered(rgpu_link_t *link);

/* Stops receiving on this side, from any thread: a blocked
 * rgpu_link_msg_recv, rgpu_link_wait or waiting get/put returns
 * RGPU_ERR_CONN_CLOSED, and so do later ones and rgpu_link_progress;
 * pending gets/puts complete with it; frames not yet taken are not handed
 * over any more; rgpu_link_reason says "receiving was stopped on this
 * side". rgpu_link_msg_send keeps working, so a server ending a session
 * can still tell its client why. The peer's gets and puts are no longer
 * served. (On a stream link, stream receives fail likewise.) */
void rgpu_link_shutdown_recv(rgpu_link_t *link);

#endif
