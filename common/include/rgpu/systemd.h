/*
 * The daemons under systemd: readiness (sd_notify) and structured logs
 * (journald). Library rgpu_systemd, linked by rgpu-server and rgpu-scheduler
 * only; client libraries never talk to systemd.
 *
 * Built on libsystemd when CMake finds it (RGPU_WITH_SYSTEMD); without it
 * every function here is a stub (see each), so callers need no #ifdef.
 *
 *   main():  rgpu_log_init ─ rgpu_log_journal_attach ─ ... listen ...
 *            ─ rgpu_notify_ready ─ uv_run ─ (signal) rgpu_notify_stopping
 */
#ifndef RGPU_SYSTEMD_H
#define RGPU_SYSTEMD_H

#include "rgpu/status.h"

/* When stderr is journald's stream (rgpu_log_stderr_is_journal), sends
 * every log line to the journal with sd_journal_send instead, with fields
 * MESSAGE ("subsystem: message"), PRIORITY (syslog: error 3, warn 4,
 * info 6, debug and trace 7), SYSLOG_IDENTIFIER and RGPU_COMPONENT (the
 * program), RGPU_SUBSYSTEM, and RGPU_SESSION_ID on a session's thread
 * (rgpu_log_set_session). A line the journal refuses goes to stderr.
 * Returns 1 when the journal was attached, 0 when logs stay on stderr (not
 * under systemd, stderr redirected, or built without libsystemd). Call once
 * at start, after rgpu_log_init, before other threads log. */
int rgpu_log_journal_attach(void);

/* Tells the service manager that the daemon serves (READY=1): call once
 * every listening socket is open, for Type=notify units. Outside systemd
 * ($NOTIFY_SOCKET unset) it does nothing and returns RGPU_OK.
 * RGPU_ERR_IO when the message could not be sent (logged);
 * RGPU_ERR_UNSUPPORTED (logged) when $NOTIFY_SOCKET is set but this build
 * has no libsystemd. Any thread. */
rgpu_status_t rgpu_notify_ready(void);

/* Tells the service manager that the daemon is shutting down (STOPPING=1),
 * so that `systemctl status` says so while sessions close. Same returns as
 * rgpu_notify_ready. */
rgpu_status_t rgpu_notify_stopping(void);

#endif
