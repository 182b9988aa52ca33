/*
 * rgpu_systemd without libsystemd (RGPU_WITH_SYSTEMD=OFF): logs stay on
 * stderr, readiness cannot be told (rgpu/systemd.h).
 */
#include "rgpu/systemd.h"

#include <stdlib.h>

#include "rgpu/log.h"

int rgpu_log_journal_attach(void)
{
    return 0;
}

/* Outside systemd there is nothing to tell; under a Type=notify unit the
 * service manager waits for a message this build cannot send. */
static rgpu_status_t rgpu_notify(const char *state)
{
    if (!getenv("NOTIFY_SOCKET"))
        return RGPU_OK;
    rgpu_warn("systemd", "cannot tell the service manager %s: built without libsystemd "
                         "(RGPU_WITH_SYSTEMD=OFF); use Type=simple units", state);
    return RGPU_ERR_UNSUPPORTED;
}

rgpu_status_t rgpu_notify_ready(void)
{
    return rgpu_notify("READY=1");
}

rgpu_status_t rgpu_notify_stopping(void)
{
    return rgpu_notify("STOPPING=1");
}
