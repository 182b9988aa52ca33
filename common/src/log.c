#include "rgpu/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

rgpu_log_level_t rgpu_log_level = RGPU_LOG_WARN;
static const char *rgpu_log_progname = "rgpu";

static const char *const rgpu_log_names[] = {"error", "warn", "info", "debug", "trace"};

int rgpu_log_level_parse(const char *name)
{
    for (size_t i = 0; i < sizeof(rgpu_log_names) / sizeof(rgpu_log_names[0]); i++) {
        if (strcmp(name, rgpu_log_names[i]) == 0)
            return (int)i;
    }
    return -1;
}

void rgpu_log_init(const char *progname, rgpu_log_level_t default_level)
{
    const char *env = getenv("RGPU_LOG");
    int level = env ? rgpu_log_level_parse(env) : -1;

    if (progname)
        rgpu_log_progname = progname;
    rgpu_log_level = level >= 0 ? (rgpu_log_level_t)level : default_level;
}

void rgpu_log_write(rgpu_log_level_t level, const char *subsys, const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = snprintf(line, sizeof(line), "%02d:%02d:%02d.%03ld %s[%s] %s: ", tm.tm_hour, tm.tm_min,
                 tm.tm_sec, ts.tv_nsec / 1000000, rgpu_log_progname, rgpu_log_names[level], subsys);
    if (n < 0 || (size_t)n >= sizeof(line))
        n = 0;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One fputs per line keeps lines of concurrent threads whole. */
    fprintf(stderr, "%s\n", line);
}
