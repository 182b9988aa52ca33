#include "rgpu/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

rgpu_log_level_t rgpu_log_level = RGPU_LOG_WARN;
static const char *rgpu_log_progname = "rgpu";

static rgpu_log_sink_t rgpu_log_sink;
static _Thread_local uint64_t rgpu_log_session;

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

void rgpu_log_set_sink(rgpu_log_sink_t sink)
{
    rgpu_log_sink = sink;
}

void rgpu_log_set_session(uint64_t session)
{
    rgpu_log_session = session;
}

int rgpu_log_stderr_is_journal(void)
{
    const char *env = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    int used = 0;

    if (!env || sscanf(env, "%llu:%llu%n", &dev, &ino, &used) != 2 || env[used] != '\0')
        return 0;
    if (fstat(STDERR_FILENO, &st) != 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void rgpu_log_write(rgpu_log_level_t level, const char *subsys, const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    va_list ap;
    int n;

    if (rgpu_log_sink) {
        rgpu_log_record_t record = {.level = level, .progname = rgpu_log_progname,
                                    .subsys = subsys, .message = line,
                                    .session = rgpu_log_session};

        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (rgpu_log_sink(&record) == 0)
            return;
    }
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
