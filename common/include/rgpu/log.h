/*
 * Logging: levels checked before formatting, one subsystem name per line.
 *
 * Daemons log to stderr (or a file); client libraries live inside other
 * people's programs and log warnings at most, unless RGPU_LOG asks for more.
 * The level comes from RGPU_LOG (error, warn, info, debug, trace).
 *
 * A daemon run by systemd hands its lines to journald with structured fields
 * instead (rgpu/systemd.h: rgpu_log_journal_attach installs a sink); every
 * line still goes through rgpu_log_write, which builds one record and gives
 * it to the sink, or prints it on stderr when there is none.
 */
#ifndef RGPU_LOG_H
#define RGPU_LOG_H

#include <stdarg.h>
#include <stdint.h>

typedef enum {
    RGPU_LOG_ERROR = 0,
    RGPU_LOG_WARN,
    RGPU_LOG_INFO,
    RGPU_LOG_DEBUG,
    RGPU_LOG_TRACE,
} rgpu_log_level_t;

extern rgpu_log_level_t rgpu_log_level;

/* Sets the level and the program name printed on each line. default_level
 * applies unless RGPU_LOG overrides it. Not thread safe: call once at start. */
void rgpu_log_init(const char *progname, rgpu_log_level_t default_level);

/* Parses "error", "warn", ... ; returns -1 for an unknown name. */
int rgpu_log_level_parse(const char *name);

/* One log line as a structured sink receives it. Every pointer is valid
 * during the sink's call only. */
typedef struct {
    rgpu_log_level_t level;
    const char *progname;       /* rgpu_log_init's, e.g. "rgpu-server" */
    const char *subsys;         /* "session", "sched", ... */
    const char *message;        /* the formatted message, no prefix, no newline */
    uint64_t session;           /* rgpu_log_set_session of the logging thread; 0: none */
} rgpu_log_record_t;

/* A sink returns 0 when it took the line; otherwise the line goes to stderr. */
typedef int (*rgpu_log_sink_t)(const rgpu_log_record_t *record);

/* Sends every line to sink (NULL: back to stderr). Not thread safe: call at
 * start, before other threads log. */
void rgpu_log_set_sink(rgpu_log_sink_t sink);

/* Names the client session the calling thread serves (0: none), so its lines
 * carry it as a field. Thread-local: each session thread sets its own. */
void rgpu_log_set_session(uint64_t session);

/* Non-zero when stderr is connected to journald: $JOURNAL_STREAM holds
 * "DEVICE:INODE" of stderr's file (systemd.exec(5)). A stderr redirected
 * elsewhere by the unit or by a shell no longer matches, and keeps plain
 * lines. */
int rgpu_log_stderr_is_journal(void);

void rgpu_log_write(rgpu_log_level_t level, const char *subsys, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define rgpu_log(level, subsys, ...)                                          \
    do {                                                                      \
        if ((level) <= rgpu_log_level)                                        \
            rgpu_log_write((level), (subsys), __VA_ARGS__);                   \
    } while (0)

#define rgpu_error(subsys, ...) rgpu_log(RGPU_LOG_ERROR, subsys, __VA_ARGS__)
#define rgpu_warn(subsys, ...)  rgpu_log(RGPU_LOG_WARN, subsys, __VA_ARGS__)
#define rgpu_info(subsys, ...)  rgpu_log(RGPU_LOG_INFO, subsys, __VA_ARGS__)
#define rgpu_debug(subsys, ...) rgpu_log(RGPU_LOG_DEBUG, subsys, __VA_ARGS__)
#define rgpu_trace(subsys, ...) rgpu_log(RGPU_LOG_TRACE, subsys, __VA_ARGS__)

#endif
