/* Logging: level parsing, RGPU_LOG, and no formatting below the level. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rgpu/log.h"

static void redirect(void)
{
    cr_redirect_stderr();
}

TestSuite(log, .init = redirect);

Test(log, level_names_parse)
{
    cr_expect_eq(rgpu_log_level_parse("error"), RGPU_LOG_ERROR);
    cr_expect_eq(rgpu_log_level_parse("warn"), RGPU_LOG_WARN);
    cr_expect_eq(rgpu_log_level_parse("info"), RGPU_LOG_INFO);
    cr_expect_eq(rgpu_log_level_parse("debug"), RGPU_LOG_DEBUG);
    cr_expect_eq(rgpu_log_level_parse("trace"), RGPU_LOG_TRACE);
    cr_expect_eq(rgpu_log_level_parse("verbose"), -1);
    cr_expect_eq(rgpu_log_level_parse(""), -1);
}

Test(log, env_overrides_the_default_level)
{
    setenv("RGPU_LOG", "debug", 1);
    rgpu_log_init("test", RGPU_LOG_WARN);
    cr_expect_eq(rgpu_log_level, RGPU_LOG_DEBUG);
    setenv("RGPU_LOG", "nonsense", 1);
    rgpu_log_init("test", RGPU_LOG_INFO);
    cr_expect_eq(rgpu_log_level, RGPU_LOG_INFO, "an unknown RGPU_LOG must keep the default");
    unsetenv("RGPU_LOG");
    rgpu_log_init("test", RGPU_LOG_ERROR);
    cr_expect_eq(rgpu_log_level, RGPU_LOG_ERROR);
}

static int evaluated;

static int side_effect(void)
{
    return ++evaluated;
}

Test(log, below_the_level_arguments_are_not_evaluated)
{
    unsetenv("RGPU_LOG");
    rgpu_log_init("test", RGPU_LOG_WARN);
    evaluated = 0;
    rgpu_debug("unit", "value %d", side_effect());
    cr_expect_eq(evaluated, 0);
    rgpu_warn("unit", "value %d", side_effect());
    cr_expect_eq(evaluated, 1);
}

Test(log, a_line_names_program_level_and_subsystem)
{
    unsetenv("RGPU_LOG");
    rgpu_log_init("rgpu-test", RGPU_LOG_INFO);
    rgpu_info("frame", "decoded %d bytes", 32);
    rgpu_debug("frame", "this one is filtered");
    fflush(stderr);
    cr_assert_stderr_neq_str("");
}

Test(log, the_line_content)
{
    char buf[512] = "";
    FILE *err;
    size_t n;

    unsetenv("RGPU_LOG");
    rgpu_log_init("rgpu-test", RGPU_LOG_INFO);
    rgpu_error("tcp", "peer %s gone", "10.0.0.1:7000");
    fflush(stderr);
    err = cr_get_redirected_stderr();
    n = fread(buf, 1, sizeof(buf) - 1, err);
    buf[n] = '\0';
    cr_expect(strstr(buf, "rgpu-test[error] tcp: peer 10.0.0.1:7000 gone\n") != NULL,
              "log line was \"%s\"", buf);
}

/* journald: systemd.exec(5) sets $JOURNAL_STREAM to "DEVICE:INODE" of the
 * stream it connected to stderr; a stderr redirected since no longer
 * matches. */
Test(log, journal_stream_must_name_stderr)
{
    struct stat st;
    char env[64];

    cr_assert_eq(fstat(STDERR_FILENO, &st), 0);
    unsetenv("JOURNAL_STREAM");
    cr_expect_eq(rgpu_log_stderr_is_journal(), 0, "no JOURNAL_STREAM: a terminal or a file");
    snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", env, 1);
    cr_expect_eq(rgpu_log_stderr_is_journal(), 1, "JOURNAL_STREAM %s names stderr", env);
    snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino + 1);
    setenv("JOURNAL_STREAM", env, 1);
    cr_expect_eq(rgpu_log_stderr_is_journal(), 0, "another inode: stderr was redirected");
    snprintf(env, sizeof(env), "%llu:%llux", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", env, 1);
    cr_expect_eq(rgpu_log_stderr_is_journal(), 0, "trailing junk is not a match");
    setenv("JOURNAL_STREAM", "", 1);
    cr_expect_eq(rgpu_log_stderr_is_journal(), 0);
    unsetenv("JOURNAL_STREAM");
}

static rgpu_log_record_t seen;
static char seen_message[256], seen_subsys[64], seen_prog[64];
static int seen_count, sink_result;

static int record_sink(const rgpu_log_record_t *r)
{
    seen = *r;
    snprintf(seen_message, sizeof(seen_message), "%s", r->message);
    snprintf(seen_subsys, sizeof(seen_subsys), "%s", r->subsys);
    snprintf(seen_prog, sizeof(seen_prog), "%s", r->progname);
    seen_count++;
    return sink_result;
}

static void *log_from_session(void *arg)
{
    rgpu_log_set_session(42);
    rgpu_warn("session", "from %s", (const char *)arg);
    return NULL;
}

/* The journal's sink gets one record per line: level, program, subsystem,
 * the bare message and the session of the logging thread. */
Test(log, a_sink_gets_structured_records)
{
    pthread_t thread;

    unsetenv("RGPU_LOG");
    rgpu_log_init("rgpu-test", RGPU_LOG_INFO);
    rgpu_log_set_sink(record_sink);
    sink_result = 0;
    seen_count = 0;
    rgpu_info("sched", "lease %d granted", 7);
    cr_expect_eq(seen_count, 1);
    cr_expect_eq(seen.level, RGPU_LOG_INFO);
    cr_expect_str_eq(seen_prog, "rgpu-test");
    cr_expect_str_eq(seen_subsys, "sched");
    cr_expect_str_eq(seen_message, "lease 7 granted");
    cr_expect_eq(seen.session, 0, "the main thread serves no session");
    rgpu_debug("sched", "below the level");
    cr_expect_eq(seen_count, 1, "lines below the level never reach the sink");

    cr_assert_eq(pthread_create(&thread, NULL, log_from_session, "a session thread"), 0);
    pthread_join(thread, NULL);
    cr_expect_eq(seen_count, 2);
    cr_expect_eq(seen.session, 42, "a session thread's lines carry its session");
    cr_expect_str_eq(seen_message, "from a session thread");
    rgpu_log_set_sink(NULL);
}

/* A line the sink refuses (journald gone) is printed on stderr instead. */
Test(log, a_refused_record_falls_back_to_stderr)
{
    char buf[512] = "";
    size_t n;

    unsetenv("RGPU_LOG");
    rgpu_log_init("rgpu-test", RGPU_LOG_INFO);
    rgpu_log_set_sink(record_sink);
    sink_result = -1;
    rgpu_error("tcp", "peer %s gone", "10.0.0.2:7000");
    rgpu_log_set_sink(NULL);
    fflush(stderr);
    n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    buf[n] = '\0';
    cr_expect(strstr(buf, "rgpu-test[error] tcp: peer 10.0.0.2:7000 gone\n") != NULL,
              "stderr was \"%s\"", buf);
}
