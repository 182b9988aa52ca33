/*
 * Shared by the fuzz harnesses: which protobuf-c message each frame type
 * carries (proto/session.proto's MsgType comments), and small helpers.
 */
#ifndef RGPU_FUZZ_MSGS_H
#define RGPU_FUZZ_MSGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opencl.pb-c.h"
#include "scheduler.pb-c.h"
#include "session.pb-c.h"

typedef struct {
    uint16_t type;
    const ProtobufCMessageDescriptor *desc;
} rgpu_fuzz_msg_t;

/* Every frame type and the message its body holds. */
static const rgpu_fuzz_msg_t rgpu_fuzz_msgs[] = {
    {RGPU__MSG_TYPE__MSG_HELLO, &rgpu__hello__descriptor},
    {RGPU__MSG_TYPE__MSG_HELLO_REPLY, &rgpu__hello_reply__descriptor},
    {RGPU__MSG_TYPE__MSG_SESSION_ERROR, &rgpu__session_error__descriptor},
    {RGPU__MSG_TYPE__MSG_ASYNC_ERROR, &rgpu__async_error__descriptor},
    {RGPU__MSG_TYPE__MSG_PING, &rgpu__ping__descriptor},
    {RGPU__MSG_TYPE__MSG_PONG, &rgpu__pong__descriptor},
    {RGPU__MSG_TYPE__MSG_GOODBYE, &rgpu__goodbye__descriptor},
    {RGPU__MSG_TYPE__MSG_EVENT_NOTIFY, &rgpu__event_notify__descriptor},
    {RGPU__MSG_TYPE__MSG_BULK_PART, &rgpu__bulk_part__descriptor},
    {RGPU__MSG_TYPE__MSG_BULK_DONE, &rgpu__bulk_done__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_CREATE_CONTEXT, &rgpu__cl_create_context__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_CREATE_QUEUE, &rgpu__cl_create_queue__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_CREATE_BUFFER, &rgpu__cl_create_buffer__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_CREATE_SUB_BUFFER, &rgpu__cl_create_sub_buffer__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_SOURCE, &rgpu__cl_create_program_source__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_CREATE_PROGRAM_BINARY, &rgpu__cl_create_program_binary__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_BUILD_PROGRAM, &rgpu__cl_build_program__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_COMPILE_PROGRAM, &rgpu__cl_compile_program__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_LINK_PROGRAM, &rgpu__cl_link_program__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_CREATE_KERNEL, &rgpu__cl_create_kernel__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_SET_KERNEL_ARG, &rgpu__cl_set_kernel_arg__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_RELEASE, &rgpu__cl_release__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_CREATE_USER_EVENT, &rgpu__cl_create_user_event__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_SET_USER_EVENT_STATUS, &rgpu__cl_set_user_event_status__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_SET_EVENT_CALLBACK, &rgpu__cl_set_event_callback__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, &rgpu__cl_write_buffer__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_READ_BUFFER, &rgpu__cl_read_buffer__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER, &rgpu__cl_copy_buffer__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_FILL_BUFFER, &rgpu__cl_fill_buffer__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER_RECT, &rgpu__cl_buffer_rect__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_READ_BUFFER_RECT, &rgpu__cl_buffer_rect__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_COPY_BUFFER_RECT, &rgpu__cl_buffer_rect__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_NDRANGE, &rgpu__cl_ndrange__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_MARKER, &rgpu__cl_marker__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_MIGRATE, &rgpu__cl_migrate__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_FLUSH, &rgpu__cl_queue_op__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_FINISH, &rgpu__cl_queue_op__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_WAIT_EVENTS, &rgpu__cl_wait_events__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_GET_INFO, &rgpu__cl_get_info__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_CREATE_IMAGE, &rgpu__cl_create_image__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_WRITE_IMAGE, &rgpu__cl_image_rect__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_READ_IMAGE, &rgpu__cl_image_rect__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_COPY_IMAGE, &rgpu__cl_image_copy__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_FILL_IMAGE, &rgpu__cl_fill_image__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_CREATE_SAMPLER, &rgpu__cl_create_sampler__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_STATUS_REPLY, &rgpu__cl_status_reply__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_READ_REPLY, &rgpu__cl_read_reply__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_BUILD_REPLY, &rgpu__cl_build_reply__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_INFO_REPLY, &rgpu__cl_info_reply__descriptor},
    {RGPU__MSG_TYPE__MSG_CL_PROGRAM_BINARY_REPLY, &rgpu__cl_program_binary_reply__descriptor},
    {RGPU__MSG_TYPE__MSG_SCHED_REGISTER, &rgpu__register_server__descriptor},
    {RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT, &rgpu__heartbeat__descriptor},
    {RGPU__MSG_TYPE__MSG_SCHED_ALLOC, &rgpu__alloc_request__descriptor},
    {RGPU__MSG_TYPE__MSG_SCHED_RENEW, &rgpu__renew_request__descriptor},
    {RGPU__MSG_TYPE__MSG_SCHED_RELEASE, &rgpu__release_request__descriptor},
    {RGPU__MSG_TYPE__MSG_SCHED_LIST, &rgpu__list_request__descriptor},
    {RGPU__MSG_TYPE__MSG_SCHED_DRAIN, &rgpu__drain_request__descriptor},
    {RGPU__MSG_TYPE__MSG_SCHED_STATUS, &rgpu__sched_status__descriptor},
    {RGPU__MSG_TYPE__MSG_SCHED_LEASE_REPLY, &rgpu__lease_reply__descriptor},
    {RGPU__MSG_TYPE__MSG_SCHED_LIST_REPLY, &rgpu__list_reply__descriptor},
    {RGPU__MSG_TYPE__MSG_SCHED_HEARTBEAT_REPLY, &rgpu__heartbeat_reply__descriptor},
};
#define RGPU_FUZZ_NMSGS (sizeof(rgpu_fuzz_msgs) / sizeof(rgpu_fuzz_msgs[0]))

/* The descriptor of type's body; NULL for a type that has none. */
static inline const ProtobufCMessageDescriptor *rgpu_fuzz_msg_desc(uint16_t type)
{
    for (size_t i = 0; i < RGPU_FUZZ_NMSGS; i++)
        if (rgpu_fuzz_msgs[i].type == type)
            return rgpu_fuzz_msgs[i].desc;
    return NULL;
}

/* Non-zero when msg or a message inside it kept unknown fields. */
static inline int rgpu_fuzz_has_unknown(const ProtobufCMessage *msg)
{
    const ProtobufCMessageDescriptor *desc = msg->descriptor;

    if (msg->n_unknown_fields)
        return 1;
    for (unsigned f = 0; f < desc->n_fields; f++) {
        const ProtobufCFieldDescriptor *fd = &desc->fields[f];
        const char *member = (const char *)msg + fd->offset;

        if (fd->type != PROTOBUF_C_TYPE_MESSAGE)
            continue;
        if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)((const char *)msg + fd->quantifier_offset);
            ProtobufCMessage *const *items = *(ProtobufCMessage *const *const *)member;

            for (size_t i = 0; i < n; i++)
                if (rgpu_fuzz_has_unknown(items[i]))
                    return 1;
        } else {
            const ProtobufCMessage *sub = *(ProtobufCMessage *const *)member;

            if (sub && rgpu_fuzz_has_unknown(sub))
                return 1;
        }
    }
    return 0;
}

/* An invariant broke: say which and crash, so libFuzzer keeps the input. */
#define RGPU_FUZZ_CHECK(cond)                                                                     \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Reads the fuzzer's bytes front to back; past the end it reads zeros. */
typedef struct {
    const uint8_t *p;
    size_t left;
} rgpu_fuzz_in_t;

static inline uint8_t rgpu_fuzz_u8(rgpu_fuzz_in_t *in)
{
    if (!in->left)
        return 0;
    in->left--;
    return *in->p++;
}

static inline uint16_t rgpu_fuzz_u16(rgpu_fuzz_in_t *in)
{
    uint16_t lo = rgpu_fuzz_u8(in);
    return (uint16_t)(lo | rgpu_fuzz_u8(in) << 8);
}

static inline uint32_t rgpu_fuzz_u32(rgpu_fuzz_in_t *in)
{
    uint32_t lo = rgpu_fuzz_u16(in);
    return lo | (uint32_t)rgpu_fuzz_u16(in) << 16;
}

/* Takes up to len bytes (fewer at the end of the input); returns how many. */
static inline size_t rgpu_fuzz_take(rgpu_fuzz_in_t *in, size_t len, const uint8_t **p_p)
{
    if (len > in->left)
        len = in->left;
    *p_p = in->p;
    in->p += len;
    in->left -= len;
    return len;
}

/* A growing byte buffer. */
typedef struct {
    uint8_t *p;
    size_t len, cap;
} rgpu_fuzz_buf_t;

static inline void rgpu_fuzz_buf_put(rgpu_fuzz_buf_t *b, const void *p, size_t len)
{
    if (!len)
        return;
    if (b->len + len > b->cap) {
        b->cap = (b->len + len) * 2;
        b->p = realloc(b->p, b->cap);
        RGPU_FUZZ_CHECK(b->p);
    }
    memcpy(b->p + b->len, p, len);
    b->len += len;
}

#endif
