/* Logging: level parsing, RGPU_LOG, and no formatting below the level. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdlib.h>
#include <string.h>

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
