/*
 * Server backends: one ops table per GPU API. One server hosts several at
 * once (OpenCL, CUDA); the handshake picks the one serving the client's
 * Hello.api (session.c), and a backend whose library or devices are missing
 * on this node is simply not opened (main.c).
 *
 * The session layer (session.c) owns the link, the handshake and the frame
 * loop; a backend owns the GPU objects. Lifetime of the calls:
 *
 *   main thread      open ─────────────────────────────────────────── close
 *   session thread        session_open ─ handle ... handle ─ session_teardown
 *   last session unref                                          session_free
 *
 * handle runs on the session's own thread, one frame at a time, in order;
 * it may block (the loop and other sessions keep going). Event callbacks of
 * the GPU API run on the API's threads; they reach the client only through
 * rgpu_session_post and hold a session reference (rgpu_session_ref) while
 * they may run, so the session and its backend context outlive them.
 */
#ifndef RGPU_SERVER_BACKEND_H
#define RGPU_SERVER_BACKEND_H

#include <stddef.h>

#include "config.h"
#include "rgpu/frame.h"
#include "rgpu/status.h"
#include "session.pb-c.h"

typedef struct rgpu_backend rgpu_backend_t;
typedef struct rgpu_session rgpu_session_t;

typedef struct rgpu_backend_ops {
    const char *name;
    Rgpu__ApiFamily api;        /* the Hello.api this backend serves */

    /* Finds the node's devices. RGPU_ERR_NOT_FOUND when there are none to
     * serve (logged). Main thread, once. */
    rgpu_status_t (*open)(const rgpu_server_config_t *config, rgpu_backend_t **backend_p);
    /* Optional: after a failed open, why, in words a client is told when it
     * asks for this API ("libcuda.so.1 not found"). NULL or "" = the server
     * says the API has no devices here, and the log has the detail. */
    const char *(*open_failure)(void);
    /* Frees what open made. No session may be running. */
    void (*close)(rgpu_backend_t *backend);
    /* A line for the startup log: "platform X, N devices". */
    const char *(*describe)(rgpu_backend_t *backend);

    /* Fills platform_name, platform_version and devices of a HelloReply.
     * The pointers stay owned by the backend (valid until close). */
    void (*hello_fill)(rgpu_backend_t *backend, Rgpu__HelloReply *reply);

    /* Creates the backend's per-session state. Session thread. */
    rgpu_status_t (*session_open)(rgpu_backend_t *backend, rgpu_session_t *session, void **ctx_p);
    /* Executes one frame whose body (body_len bytes) was received; the
     * backend takes the frame's bulk (header->bulk_len bytes) with
     * rgpu_session_pull, as much of it as it wants, and sends a reply's
     * bulk with rgpu_session_push or rgpu_session_send (session.h): it
     * never learns which transport carries the bytes, nor whether they
     * came inline or by descriptor.
     * API errors go to the client (replies, MSG_ASYNC_ERROR) and return
     * RGPU_OK. Returns link statuses when the link failed, or
     * RGPU_ERR_UNKNOWN_TYPE / RGPU_ERR_BAD_MESSAGE / RGPU_ERR_PROTOCOL /
     * RGPU_ERR_NOMEM with a sentence in reason when the session must end.
     * Session thread. */
    rgpu_status_t (*session_handle)(void *ctx, const rgpu_frame_header_t *header,
                                    const uint8_t *body, char *reason, size_t reason_cap);
    /* Releases every GPU object of the session, whatever state the client
     * left them in. Must not hang on work the client will never unblock.
     * Session thread, once, after the last handle. */
    void (*session_teardown)(void *ctx);
    /* Frees the per-session state; runs when the last reference to the
     * session is dropped (possibly on an API callback thread). */
    void (*session_free)(void *ctx);
} rgpu_backend_ops_t;

extern const rgpu_backend_ops_t rgpu_backend_opencl_ops;
/* The CUDA driver API, loaded with dlopen (server/cuda/backend_cuda.c). */
extern const rgpu_backend_ops_t rgpu_backend_cuda_ops;
/* An emulation of a CUDA device in host memory, for tests on machines
 * without a GPU (server/cuda/backend_cuda_emulated.c). Only an explicit
 * --backends naming "cuda-emulated" opens it. */
extern const rgpu_backend_ops_t rgpu_backend_cuda_emulated_ops;

/* "OpenCL", "CUDA": the API's name as users know it, for messages. */
static inline const char *rgpu_api_name(Rgpu__ApiFamily api)
{
    switch (api) {
    case RGPU__API_FAMILY__API_OPENCL:
        return "OpenCL";
    case RGPU__API_FAMILY__API_CUDA:
        return "CUDA";
    default:
        return "unknown";
    }
}

#endif
