#include "rgpu/transport.h"

#include <stdlib.h>

rgpu_status_t rgpu_link_recv_header(rgpu_link_t *link, const rgpu_frame_limits_t *limits,
                                    rgpu_frame_header_t *header_p)
{
    uint8_t raw[RGPU_FRAME_HEADER_SIZE];
    rgpu_status_t status = rgpu_link_recv(link, raw, sizeof(raw));

    if (status != RGPU_OK)
        return status;
    return rgpu_frame_header_decode(raw, limits, header_p);
}

rgpu_status_t rgpu_link_discard(rgpu_link_t *link, uint64_t len)
{
    char sink[16384];

    while (len > 0) {
        size_t n = len < sizeof(sink) ? (size_t)len : sizeof(sink);
        rgpu_status_t status = rgpu_link_recv(link, sink, n);
        if (status != RGPU_OK)
            return status;
        len -= n;
    }
    return RGPU_OK;
}

rgpu_status_t rgpu_link_send_msg(rgpu_link_t *link, uint16_t type, uint64_t seq,
                                 const ProtobufCMessage *msg, const void *bulk, uint64_t bulk_len)
{
    uint8_t stack[512];
    size_t need = rgpu_frame_packed_size(msg);
    uint8_t *buf = need <= sizeof(stack) ? stack : malloc(need);
    struct iovec iov[2];
    rgpu_status_t status;

    if (!buf)
        return RGPU_ERR_NOMEM;
    iov[0].iov_base = buf;
    iov[0].iov_len = rgpu_frame_pack(buf, type, seq, 0, msg, bulk_len);
    iov[1].iov_base = (void *)bulk;
    iov[1].iov_len = (size_t)bulk_len;
    status = rgpu_link_sendv(link, iov, bulk_len ? 2 : 1);
    if (buf != stack)
        free(buf);
    return status;
}
