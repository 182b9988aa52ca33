/*
 * rgpu/munge.h in a build without libmunge (RGPU_WITH_MUNGE=OFF): nothing
 * can be encoded or decoded. The scheduler refuses --auth munge; clients
 * send requests without a credential.
 */
#include "rgpu/munge.h"

#include <stdio.h>

int rgpu_munge_supported(void)
{
    return 0;
}

static rgpu_status_t rgpu_munge_unsupported(char *why, size_t why_cap)
{
    if (why && why_cap)
        snprintf(why, why_cap, "this rgpu was built without MUNGE (RGPU_WITH_MUNGE=OFF; "
                               "install libmunge-dev and rebuild)");
    return RGPU_ERR_UNSUPPORTED;
}

rgpu_status_t rgpu__munge_encode(const char *socket, const void *payload, size_t len,
                                 char **cred_p, char *why, size_t why_cap)
{
    (void)socket;
    (void)payload;
    (void)len;
    (void)cred_p;
    return rgpu_munge_unsupported(why, why_cap);
}

rgpu_status_t rgpu__munge_decode(const char *socket, const char *cred, void **payload_p,
                                 size_t *len_p, rgpu_munge_identity_t *id_p, char *why,
                                 size_t why_cap)
{
    (void)socket;
    (void)cred;
    (void)payload_p;
    (void)len_p;
    (void)id_p;
    return rgpu_munge_unsupported(why, why_cap);
}
