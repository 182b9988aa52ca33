/*
 * Logging: levels checked before formatting, one subsystem name per line.
 *
 * Daemons log to stderr (or a file); client libraries live inside other
 * people's programs and log warnings at most, unless RGPU_LOG asks for more.
 * The level comes from RGPU_LOG (error, warn, info, debug, trace).
 */
#ifndef RGPU_LOG_H
#define RGPU_LOG_H

#include <stdarg.h>

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
