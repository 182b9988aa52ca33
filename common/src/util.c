#include "rgpu/util.h"

#include <ctype.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

uint64_t rgpu_time_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

rgpu_status_t rgpu_addr_split(const char *addr, char *host, size_t host_cap, uint16_t *port_p)
{
    const char *colon, *host_start = addr, *host_end;
    char *end;
    unsigned long port;

    if (!addr || !*addr)
        return RGPU_ERR_ADDRESS;
    if (addr[0] == '[') {
        host_start = addr + 1;
        host_end = strchr(host_start, ']');
        if (!host_end || host_end[1] != ':')
            return RGPU_ERR_ADDRESS;
        colon = host_end + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return RGPU_ERR_ADDRESS;
        host_end = colon;
    }
    if (host_end == host_start || (size_t)(host_end - host_start) >= host_cap)
        return RGPU_ERR_ADDRESS;
    if (!isdigit((unsigned char)colon[1]))
        return RGPU_ERR_ADDRESS;
    port = strtoul(colon + 1, &end, 10);
    if (*end != '\0' || port > 65535)
        return RGPU_ERR_ADDRESS;
    memcpy(host, host_start, (size_t)(host_end - host_start));
    host[host_end - host_start] = '\0';
    *port_p = (uint16_t)port;
    return RGPU_OK;
}

int rgpu_size_parse(const char *str, uint64_t *size_p)
{
    char *end;
    unsigned long long value;
    unsigned shift = 0;

    if (!str || !isdigit((unsigned char)*str))
        return -1;
    errno = 0;
    value = strtoull(str, &end, 10);
    if (errno == ERANGE || value > UINT64_MAX)
        return -1;
    switch (toupper((unsigned char)*end)) {
    case '\0': break;
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    case 'T': shift = 40; end++; break;
    default: return -1;
    }
    if (*end == 'i' || *end == 'B')
        end += (*end == 'i' && end[1] == 'B') ? 2 : 1;
    if (*end != '\0' || (shift && value > (UINT64_MAX >> shift)))
        return -1;
    *size_p = (uint64_t)value << shift;
    return 0;
}

int rgpu_thread_batch_begin(void)
{
    struct sched_param param = {0};

    if (sched_getscheduler(0) != SCHED_OTHER)
        return 0;
    return sched_setscheduler(0, SCHED_BATCH, &param) == 0 ? 1 : -1;
}

int rgpu_thread_batch_end(void)
{
    struct sched_param param = {0};

    return sched_setscheduler(0, SCHED_OTHER, &param);
}
