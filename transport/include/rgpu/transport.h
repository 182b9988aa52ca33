/*
 * Transports: an ops table per network (tcp now, verbs later). Upper layers
 * hold an rgpu_link_t and call the inline wrappers below; they never ask which
 * transport they are on.
 *
 * Links are blocking and message-agnostic: send gathers a vector and sends
 * all of it; recv fills exactly len bytes. One thread may send while another
 * receives on the same link; two concurrent senders must serialize
 * themselves. Every function returns RGPU_OK or an RGPU_ERR_* of the link
 * range, and logs nothing: the caller decides what an error means.
 */
#ifndef RGPU_TRANSPORT_H
#define RGPU_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "rgpu/frame.h"
#include "rgpu/status.h"

typedef struct rgpu_transport_ops rgpu_transport_ops_t;

typedef struct rgpu_link {
    const rgpu_transport_ops_t *ops;
    char peer[80];              /* "host:port" of the other end, for logs */
} rgpu_link_t;

typedef struct rgpu_listener {
    const rgpu_transport_ops_t *ops;
    char local[80];             /* "host:port" actually bound (port 0 resolved) */
} rgpu_listener_t;

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
    /* Makes blocked and later sends and receives fail; the link stays allocated. */
    void (*shutdown)(rgpu_link_t *link);
    /* Makes a blocked receive and later ones fail (RGPU_ERR_CONN_CLOSED once
     * what already arrived is read) while sends still work: a server ending
     * a session can still say why. */
    void (*shutdown_recv)(rgpu_link_t *link);
    void (*close)(rgpu_link_t *link);
};

extern const rgpu_transport_ops_t rgpu_tcp_ops;

static inline rgpu_status_t rgpu_link_sendv(rgpu_link_t *link, const struct iovec *iov, int iovcnt)
{
    return link->ops->sendv(link, iov, iovcnt);
}

static inline rgpu_status_t rgpu_link_send(rgpu_link_t *link, const void *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};
    return link->ops->sendv(link, &iov, 1);
}

static inline rgpu_status_t rgpu_link_recv(rgpu_link_t *link, void *buf, size_t len)
{
    return link->ops->recv(link, buf, len);
}

static inline size_t rgpu_link_buffered(rgpu_link_t *link)
{
    return link->ops->buffered(link);
}

static inline int rgpu_link_wait_readable(rgpu_link_t *link, int timeout_ms)
{
    return link->ops->wait_readable(link, timeout_ms);
}

static inline void rgpu_link_shutdown(rgpu_link_t *link)
{
    link->ops->shutdown(link);
}

static inline void rgpu_link_shutdown_recv(rgpu_link_t *link)
{
    link->ops->shutdown_recv(link);
}

static inline void rgpu_link_close(rgpu_link_t *link)
{
    link->ops->close(link);
}

/* Receives and decodes one frame header (see rgpu_frame_header_decode). */
rgpu_status_t rgpu_link_recv_header(rgpu_link_t *link, const rgpu_frame_limits_t *limits,
                                    rgpu_frame_header_t *header_p);

/* Receives and throws away len bytes (a bulk nobody wants). */
rgpu_status_t rgpu_link_discard(rgpu_link_t *link, uint64_t len);

/* Packs msg into a frame and sends it with an optional bulk, in one gather.
 * The caller serializes concurrent senders. */
rgpu_status_t rgpu_link_send_msg(rgpu_link_t *link, uint16_t type, uint64_t seq,
                                 const ProtobufCMessage *msg, const void *bulk, uint64_t bulk_len);

#endif
