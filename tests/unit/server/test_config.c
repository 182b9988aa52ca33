/* The rgpu-server configuration: the rows added for connection limits
 * (--max-sessions and --hello-timeout: defaults, environment, bounds), the
 * --listen list and its --insecure check, and server.conf. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* --listen is a list: repeated on the command line, one listener each. */
Test(config, listen_is_a_list)
{
    rgpu_server_config_t cfg;
    char addrs[RGPU_SERVER_MAX_LISTEN][256];
    char *argv[] = {"rgpu-server", "--listen", "127.0.0.1:0", "--listen=tcp://[::1]:0",
                    "--listen", "localhost:7070"};

    cr_assert_eq(load(&cfg, 6, argv), RGPU_CONFIG_RUN);
    cr_assert_eq(rgpu_server_config_listen(&cfg, addrs, RGPU_SERVER_MAX_LISTEN), 3);
    cr_expect_str_eq(addrs[0], "127.0.0.1:0");
    cr_expect_str_eq(addrs[1], "tcp://[::1]:0");
    cr_expect_str_eq(addrs[2], "localhost:7070");
}

Test(config, insecure_checks_every_listen_address)
{
    rgpu_server_config_t cfg;
    char *argv[] = {"rgpu-server", "--listen", "tcp://127.0.0.1:0", "--listen",
                    "tcp://10.0.0.1:0"};
    char *ok[] = {"rgpu-server", "--listen", "tcp://127.0.0.1:0", "--listen", "[::1]:0"};

    cr_expect_eq(load(&cfg, 5, argv), RGPU_CONFIG_EXIT_USAGE);
    cr_expect_eq(load(&cfg, 5, ok), RGPU_CONFIG_RUN);
}

Test(config, at_most_eight_listen_addresses)
{
    rgpu_server_config_t cfg;
    char *argv[] = {"rgpu-server", "--listen",
                    "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3,127.0.0.1:4,127.0.0.1:5,127.0.0.1:6,"
                    "127.0.0.1:7,127.0.0.1:8,127.0.0.1:9"};

    cr_expect_eq(load(&cfg, 3, argv), RGPU_CONFIG_EXIT_USAGE);
}

/* server.conf: its values under the environment and the command line, and
 * --print-config naming its lines. */
Test(config, server_conf)
{
    rgpu_server_config_t cfg;
    char dir[] = "/tmp/rgpu-test-config-XXXXXX", path[64], buf[8192] = "";
    char *argv[] = {"rgpu-server", "--config", path, "--hello-timeout", "7"};
    FILE *fp, *out;

    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/server.conf", dir);
    fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fputs("[server]\nmax-sessions = 32\nhello-timeout = 20\nchunk-size = 1M\n"
          "listen = 127.0.0.1:0, 127.0.0.2:0\n", fp);
    fclose(fp);
    fake_max = "64";
    cr_assert_eq(load(&cfg, 5, argv), RGPU_CONFIG_RUN);
    cr_expect_eq(cfg.max_sessions, 64);             /* environment over file */
    cr_expect_eq(cfg.hello_timeout, 7);             /* command line over file */
    cr_expect_eq(cfg.chunk_size, 1u << 20);         /* file over default */
    cr_expect_str_eq(cfg.listen, "127.0.0.1:0,127.0.0.2:0");
    out = fmemopen(buf, sizeof(buf) - 1, "w");
    cr_assert_not_null(out);
    rgpu_server_config_print(&cfg, out);
    fclose(out);
    cr_expect(strstr(buf, "server.conf:4") && strstr(buf, "chunk-size = 1M"), "%s", buf);
    cr_expect(strstr(buf, "# env RGPU_MAX_SESSIONS"), "%s", buf);

    /* A key of the file that is not the server's stops it. */
    fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fputs("[server]\nlistne = 127.0.0.1:0\n", fp);
    fclose(fp);
    cr_expect_eq(load(&cfg, 5, argv), RGPU_CONFIG_EXIT_USAGE);
    unlink(path);
    rmdir(dir);
}

#ifdef RGPU_HAVE_VERBS
/* Sessions run on messages (issue 13), so a verbs listener beside a tcp one
 * is taken as it is: no refusal, both addresses kept in order. */
Test(config, verbs_listen_beside_tcp_is_taken)
{
    rgpu_server_config_t cfg;
    char *argv[] = {"rgpu-server", "--insecure", "--listen", "tcp://127.0.0.1:0", "--listen",
                    "verbs://127.0.0.1:0"};
    char text[512] = "";
    FILE *err = fmemopen(text, sizeof(text) - 1, "w");

    cr_assert_not_null(err);
    cr_expect_eq(rgpu_server_config_load(&cfg, 6, argv, fake_getenv, devnull, err), RGPU_CONFIG_RUN,
                 "%s", text);
    fclose(err);
    cr_expect(strstr(cfg.listen, "tcp://127.0.0.1:0") && strstr(cfg.listen, "verbs://127.0.0.1:0"),
              "%s", cfg.listen);
}
#endif
