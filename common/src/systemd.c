/*
 * rgpu_systemd on libsystemd: sd_notify for readiness, sd_journal_sendv for
 * structured log lines (rgpu/systemd.h).
 */
#include "rgpu/systemd.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

/* The location fields would name this file, not the line that logged. */
#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

#include "rgpu/log.h"

/* syslog priorities by rgpu_log_level_t: err, warning, info, debug, debug. */
static const char *const rgpu_journal_priority[] = {"PRIORITY=3", "PRIORITY=4", "PRIORITY=6",
                                                    "PRIORITY=7", "PRIORITY=7"};

static int rgpu_journal_sink(const rgpu_log_record_t *r)
{
    char message[1200], ident[96], component[96], subsys[96], session[48];
    struct iovec iov[7];
    int n = 0;

#define RGPU_IOV(buf, ...)                                                                    \
    do {                                                                                      \
        int len_ = snprintf((buf), sizeof(buf), __VA_ARGS__);                                 \
        iov[n].iov_base = (buf);                                                              \
        iov[n++].iov_len = len_ < 0 ? 0 : (size_t)len_ < sizeof(buf) ? (size_t)len_           \
                                                                     : sizeof(buf) - 1;       \
    } while (0)
    RGPU_IOV(message, "MESSAGE=%s: %s", r->subsys, r->message);
    iov[n].iov_base = (void *)rgpu_journal_priority[r->level];
    iov[n++].iov_len = strlen(rgpu_journal_priority[r->level]);
    RGPU_IOV(ident, "SYSLOG_IDENTIFIER=%s", r->progname);
    RGPU_IOV(component, "RGPU_COMPONENT=%s", r->progname);
    RGPU_IOV(subsys, "RGPU_SUBSYSTEM=%s", r->subsys);
    if (r->session)
        RGPU_IOV(session, "RGPU_SESSION_ID=%" PRIu64, r->session);
#undef RGPU_IOV
    return sd_journal_sendv(iov, n) < 0 ? -1 : 0;
}

int rgpu_log_journal_attach(void)
{
    if (!rgpu_log_stderr_is_journal())
        return 0;
    rgpu_log_set_sink(rgpu_journal_sink);
    return 1;
}

static rgpu_status_t rgpu_notify(const char *state)
{
    int rc = sd_notify(0, state);

    if (rc < 0) {
        rgpu_warn("systemd", "cannot tell the service manager %s: %s", state, strerror(-rc));
        return RGPU_ERR_IO;
    }
    return RGPU_OK;
}

rgpu_status_t rgpu_notify_ready(void)
{
    return rgpu_notify("READY=1");
}

rgpu_status_t rgpu_notify_stopping(void)
{
    return rgpu_notify("STOPPING=1");
}
