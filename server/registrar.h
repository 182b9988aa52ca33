/*
 * The registrar: keeps rgpu-scheduler informed of this server (--scheduler).
 *
 *   loop thread   uv_timer every RGPU_REGISTRAR_INTERVAL_MS ─▶ uv_queue_work
 *   libuv worker  blocking: connect if needed, RegisterServer (first time,
 *                 or when the scheduler forgot us) or Heartbeat, read the reply
 *   loop thread   after-work: logs only changes (registered, lost, back)
 *
 * The scheduler is never on a session's path: a scheduler that is down only
 * means warnings here, and sessions go on.
 */
#ifndef RGPU_SERVER_REGISTRAR_H
#define RGPU_SERVER_REGISTRAR_H

#include <uv.h>

#include "session.h"

#define RGPU_REGISTRAR_INTERVAL_MS 2000

typedef struct rgpu_registrar rgpu_registrar_t;

/* Starts registering server (its backend's devices, server->advertise) with
 * the scheduler at addr. Loop thread. RGPU_ERR_NOMEM only. */
rgpu_status_t rgpu_registrar_start(uv_loop_t *loop, rgpu_server_t *server, const char *addr,
                                   rgpu_registrar_t **registrar_p);

/* Stops it; it frees itself once its timer is closed and any exchange in
 * flight ended. Loop thread. */
void rgpu_registrar_stop(rgpu_registrar_t *registrar);

#endif
