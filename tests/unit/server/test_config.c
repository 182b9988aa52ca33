/* The rgpu-server configuration rows added for connection limits:
 * --max-sessions and --hello-timeout (defaults, environment, bounds). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "config.h"

static const char *fake_max, *fake_hello;

static const char *fake_getenv(const char *name)
{
    if (strcmp(name, "RGPU_MAX_SESSIONS") == 0)
        return fake_max;
    if (strcmp(name, "RGPU_HELLO_TIMEOUT") == 0)
        return fake_hello;
    if (strcmp(name, "RGPU_INSECURE") == 0)
        return "yes";
    return NULL;
}

static FILE *devnull;

static void setup(void)
{
    fake_max = fake_hello = NULL;
    devnull = fopen("/dev/null", "w");
    cr_assert_not_null(devnull);
}

static void teardown(void)
{
    fclose(devnull);
}

TestSuite(config, .init = setup, .fini = teardown, .timeout = 30);

static rgpu_config_action_t load(rgpu_server_config_t *cfg, int argc, char *const argv[])
{
    return rgpu_server_config_load(cfg, argc, argv, fake_getenv, devnull, devnull);
}

Test(config, defaults)
{
    rgpu_server_config_t cfg;
    char *argv[] = {"rgpu-server"};

    cr_assert_eq(load(&cfg, 1, argv), RGPU_CONFIG_RUN);
    cr_expect_eq(cfg.max_sessions, 256);
    cr_expect_eq(cfg.hello_timeout, 10);
}

Test(config, environment_then_command_line)
{
    rgpu_server_config_t cfg;
    char *argv[] = {"rgpu-server", "--max-sessions", "8"};
    char *argv_eq[] = {"rgpu-server", "--hello-timeout=3600", "--max-sessions=1"};

    fake_max = "12";
    fake_hello = "2";
    cr_assert_eq(load(&cfg, 1, argv), RGPU_CONFIG_RUN);
    cr_expect_eq(cfg.max_sessions, 12);
    cr_expect_eq(cfg.hello_timeout, 2);
    cr_assert_eq(load(&cfg, 3, argv), RGPU_CONFIG_RUN);
    cr_expect_eq(cfg.max_sessions, 8);
    cr_assert_eq(load(&cfg, 3, argv_eq), RGPU_CONFIG_RUN);
    cr_expect_eq(cfg.max_sessions, 1);
    cr_expect_eq(cfg.hello_timeout, 3600);
}

Test(config, bounds)
{
    rgpu_server_config_t cfg;
    static const char *const bad[][2] = {
        {"--max-sessions", "0"}, {"--max-sessions", "65537"}, {"--max-sessions", "-1"},
        {"--max-sessions", "4K"}, {"--max-sessions", ""}, {"--max-sessions", "99999999999999999999"},
        {"--hello-timeout", "0"}, {"--hello-timeout", "3601"}, {"--hello-timeout", "1.5"},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *argv[] = {"rgpu-server", (char *)bad[i][0], (char *)bad[i][1]};

        cr_expect_eq(load(&cfg, 3, argv), RGPU_CONFIG_EXIT_USAGE, "%s %s was accepted",
                     bad[i][0], bad[i][1]);
    }
    fake_hello = "0";
    {
        char *argv[] = {"rgpu-server"};
        cr_expect_eq(load(&cfg, 1, argv), RGPU_CONFIG_EXIT_USAGE);
    }
}

Test(config, print_config_shows_the_rows)
{
    rgpu_server_config_t cfg;
    char *argv[] = {"rgpu-server", "--max-sessions", "4"};
    char buf[8192] = "";
    FILE *out = fmemopen(buf, sizeof(buf) - 1, "w");

    cr_assert_not_null(out);
    cr_assert_eq(load(&cfg, 3, argv), RGPU_CONFIG_RUN);
    rgpu_server_config_print(&cfg, out);
    fclose(out);
    cr_expect(strstr(buf, "max-sessions = 4") != NULL, "%s", buf);
    cr_expect(strstr(buf, "hello-timeout = 10") != NULL, "%s", buf);
}
