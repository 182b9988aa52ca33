/* The option engine (rgpu/options.h): precedence of default, file,
 * environment and command line; every error of the file with its file,
 * line and key; strict numbers; lists; --print-config's origins. A table
 * of its own with one row of each type, read from files this test writes
 * into a temporary directory. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rgpu/options.h"

typedef struct {
    char listen[256];
    char name[16];
    char peer[64];
    uint64_t chunk;
    int count;
    uint64_t big;
    int timeout_ms;
    int verbose;
    int mode;
    char secret[32];
    char other[32];
    rgpu_opt_state_t state;
} test_cfg_t;

static const char *const modes[] = {"fast", "safe", "off", NULL};

#define S(f) offsetof(test_cfg_t, f), sizeof(((test_cfg_t *)0)->f)
static const rgpu_opt_t test_opts[] = {
    {"listen", RGPU_OPT_ADDR_LIST, "127.0.0.1:7070", "ADDR", "listen here", "T_LISTEN", NULL,
     S(listen), 0, 0, NULL, 0},
    {"name", RGPU_OPT_STRING, "", "NAME", "a name", "T_NAME", NULL, S(name), 0, 0, NULL, 0},
    {"peer", RGPU_OPT_ADDR, "", "ADDR", "a peer", "T_PEER", NULL, S(peer), 0, 0, NULL, 0},
    {"chunk", RGPU_OPT_SIZE, "4M", "SIZE", "a size", "T_CHUNK", NULL,
     offsetof(test_cfg_t, chunk), 0, 4096, 1ull << 30, NULL, 0},
    {"count", RGPU_OPT_UINT, "10", "N", "a count", "T_COUNT", NULL,
     offsetof(test_cfg_t, count), 0, 1, 100, NULL, 0},
    {"big", RGPU_OPT_UINT, "5", "N", "a 64-bit count", NULL, NULL,
     offsetof(test_cfg_t, big), sizeof(uint64_t), 1, 1ull << 40, NULL, 0},
    {"timeout", RGPU_OPT_SECONDS_MS, "10", "SECONDS", "a timeout", "T_TIMEOUT", NULL,
     offsetof(test_cfg_t, timeout_ms), 0, 1, 86400000, NULL, 0},
    {"verbose", RGPU_OPT_FLAG, "no", NULL, "a flag", "T_VERBOSE", NULL,
     offsetof(test_cfg_t, verbose), 0, 0, 0, NULL, 0},
    {"mode", RGPU_OPT_CHOICE, "safe", "MODE", "a choice", "T_MODE", NULL,
     offsetof(test_cfg_t, mode), 0, 0, 0, modes, 0},
    {"secret", RGPU_OPT_STRING, "", "TOKEN", "not in files", "T_SECRET", NULL, S(secret), 0, 0,
     NULL, RGPU_OPT_NO_FILE},
    {"other", RGPU_OPT_STRING, "x", "WORD", "in another section, not on the command line",
     "T_OTHER", "extra", S(other), 0, 0, NULL, RGPU_OPT_NO_CMDLINE},
};

static char dir[64], default_path[128];

static const rgpu_opt_table_t test_table = {
    .program = "rgpu-test",
    .man_section = 1,
    .summary = "test the option engine",
    .synopsis = "[OPTION]...",
    .description = "Reads options.\n\nTwo paragraphs.",
    .section = "test",
    .config_file = default_path,
    .config_env = "T_CONFIG",
    .conf_title = "rgpu-test.conf",
    .opts = test_opts,
    .nopts = sizeof(test_opts) / sizeof(test_opts[0]),
};

/* The fake environment: NAME=VALUE pairs. */
static const char *env[16];

static const char *fake_getenv(const char *name)
{
    size_t len = strlen(name);

    for (int i = 0; env[i]; i++)
        if (strncmp(env[i], name, len) == 0 && env[i][len] == '=')
            return env[i] + len + 1;
    return NULL;
}

static char *err_text, *out_text;
static size_t err_len, out_len;
static FILE *err, *out;

static void setup(void)
{
    strcpy(dir, "/tmp/rgpu-test-options-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(default_path, sizeof(default_path), "%s/default.conf", dir);
    memset(env, 0, sizeof(env));
    err = open_memstream(&err_text, &err_len);
    out = open_memstream(&out_text, &out_len);
    cr_assert(err && out);
}

static void teardown(void)
{
    char cmd[128];

    fclose(err);
    fclose(out);
    free(err_text);
    free(out_text);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(options, .init = setup, .fini = teardown, .timeout = 30);

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    cr_assert_not_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* Loads with the fake environment and the given arguments (after argv[0]). */
static rgpu_opt_action_t load_args(test_cfg_t *cfg, int argc, const char **args)
{
    char *argv[16] = {"rgpu-test"};

    for (int i = 0; i < argc; i++)
        argv[i + 1] = (char *)args[i];
    return rgpu_opt_load(&test_table, cfg, &cfg->state, argc + 1, argv, fake_getenv, out, err);
}

#define LOAD(cfg, ...) \
    load_args(cfg, (int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)), \
              (const char *[]){__VA_ARGS__})
#define LOAD0(cfg) load_args(cfg, 0, NULL)

/* What was written to err so far. */
static const char *errors(void)
{
    fflush(err);
    return err_text ? err_text : "";
}

/* Loads a default file holding text, and expects an error containing want. */
static void expect_file_error(const char *text, const char *want)
{
    test_cfg_t cfg;

    write_file(default_path, text);
    cr_assert_eq(LOAD0(&cfg), RGPU_OPT_EXIT_USAGE, "accepted:\n%s", text);
    cr_expect(strstr(errors(), want), "error \"%s\" does not say \"%s\"", errors(), want);
}

Test(options, defaults_without_a_file)
{
    test_cfg_t cfg;

    cr_assert_eq(LOAD0(&cfg), RGPU_OPT_RUN, "%s", errors());
    cr_expect_str_eq(cfg.listen, "127.0.0.1:7070");
    cr_expect_str_eq(cfg.name, "");
    cr_expect_eq(cfg.chunk, 4u << 20);
    cr_expect_eq(cfg.count, 10);
    cr_expect_eq(cfg.big, 5);
    cr_expect_eq(cfg.timeout_ms, 10000);
    cr_expect_eq(cfg.verbose, 0);
    cr_expect_eq(cfg.mode, 1);
    cr_expect_str_eq(cfg.state.file, "");
    for (size_t i = 0; i < test_table.nopts; i++)
        cr_expect_eq(cfg.state.origin[i].from, RGPU_OPT_FROM_DEFAULT);
}

Test(options, precedence_command_line_env_file_default)
{
    test_cfg_t cfg;
    char from[600];

    write_file(default_path, "# comment\n[test]\ncount = 20\nchunk = 8M\nname = file\n"
                             "mode = fast\n[extra]\nother = y\n");
    env[0] = "T_COUNT=30";
    env[1] = "T_NAME=env";
    cr_assert_eq(LOAD(&cfg, "--count", "40"), RGPU_OPT_RUN, "%s", errors());
    cr_expect_eq(cfg.count, 40);            /* command line over env over file */
    cr_expect_str_eq(cfg.name, "env");      /* env over file */
    cr_expect_eq(cfg.chunk, 8u << 20);      /* file over default */
    cr_expect_eq(cfg.mode, 0);
    cr_expect_str_eq(cfg.other, "y");
    cr_expect_eq(cfg.timeout_ms, 10000);    /* default */
    cr_expect_str_eq(cfg.state.file, default_path);

    rgpu_opt_origin_str(&test_table, &cfg.state, 4, from, sizeof(from));
    cr_expect_str_eq(from, "command line");
    rgpu_opt_origin_str(&test_table, &cfg.state, 1, from, sizeof(from));
    cr_expect_str_eq(from, "env T_NAME");
    rgpu_opt_origin_str(&test_table, &cfg.state, 3, from, sizeof(from));
    cr_expect(strstr(from, "default.conf:4") != NULL, "chunk's origin is %s", from);
    rgpu_opt_origin_str(&test_table, &cfg.state, 6, from, sizeof(from));
    cr_expect_str_eq(from, "default");
}

Test(options, print_config_names_every_origin_and_reads_back)
{
    test_cfg_t cfg, again;
    char path[160];

    write_file(default_path, "[test]\n\ncount = 20\n");
    env[0] = "T_CHUNK=64K";
    cr_assert_eq(LOAD(&cfg, "--print-config", "--verbose"), RGPU_OPT_RUN, "%s", errors());
    cr_expect_eq(cfg.state.print_config, 1);
    rgpu_opt_print(&test_table, &cfg, &cfg.state, out);
    fflush(out);
    cr_expect(strstr(out_text, "count = 20") && strstr(out_text, "default.conf:3"), "%s",
              out_text);
    cr_expect(strstr(out_text, "chunk = 64K") && strstr(out_text, "# env T_CHUNK"), "%s",
              out_text);
    cr_expect(strstr(out_text, "verbose = yes") && strstr(out_text, "# command line"), "%s",
              out_text);
    cr_expect(strstr(out_text, "timeout = 10 ") && strstr(out_text, "# default"), "%s", out_text);
    cr_expect(strstr(out_text, "#secret = "), "a NO_FILE row is not commented out: %s", out_text);

    /* What it printed is a file that gives the same values. */
    snprintf(path, sizeof(path), "%s/printed.conf", dir);
    write_file(path, out_text);
    memset(env, 0, sizeof(env));
    cr_assert_eq(LOAD(&again, "--config", path), RGPU_OPT_RUN, "%s", errors());
    cr_expect_eq(again.count, 20);
    cr_expect_eq(again.chunk, 64 << 10);
    cr_expect_eq(again.verbose, 1);
    cr_expect_str_eq(again.listen, cfg.listen);
}

Test(options, config_option_and_variable_choose_the_file)
{
    test_cfg_t cfg;
    char a[160], b[160], arg[200];

    snprintf(a, sizeof(a), "%s/a.conf", dir);
    snprintf(b, sizeof(b), "%s/b.conf", dir);
    write_file(default_path, "[test]\ncount = 1\n");
    write_file(a, "[test]\ncount = 2\n");
    write_file(b, "[test]\ncount = 3\n");
    env[0] = "T_CONFIG=";
    cr_assert_eq(LOAD0(&cfg), RGPU_OPT_RUN, "%s", errors());
    cr_expect_eq(cfg.count, 1);     /* an empty variable names no file */
    env[0] = "T_CONFIG_UNUSED=";
    snprintf(arg, sizeof(arg), "T_CONFIG=%s", a);
    env[0] = arg;
    cr_assert_eq(LOAD0(&cfg), RGPU_OPT_RUN, "%s", errors());
    cr_expect_eq(cfg.count, 2);
    cr_assert_eq(LOAD(&cfg, "--config", b), RGPU_OPT_RUN, "%s", errors());
    cr_expect_eq(cfg.count, 3);     /* --config over the variable */
    snprintf(arg, sizeof(arg), "--config=%s", b);
    cr_assert_eq(LOAD(&cfg, arg), RGPU_OPT_RUN, "%s", errors());
    cr_expect_eq(cfg.count, 3);
    cr_assert_eq(LOAD(&cfg, "--config="), RGPU_OPT_RUN, "%s", errors());
    cr_expect_eq(cfg.count, 10);    /* --config= reads none */
}

Test(options, unreadable_files)
{
    test_cfg_t cfg;
    char missing[160];

    /* A missing default file is no error; a named one is. */
    cr_assert_eq(LOAD0(&cfg), RGPU_OPT_RUN, "%s", errors());
    snprintf(missing, sizeof(missing), "%s/missing.conf", dir);
    cr_assert_eq(LOAD(&cfg, "--config", missing), RGPU_OPT_EXIT_USAGE);
    cr_expect(strstr(errors(), "cannot read the configuration file") &&
              strstr(errors(), "missing.conf") && strstr(errors(), "No such file"), "%s",
              errors());
    cr_assert_eq(LOAD(&cfg, "--config", dir), RGPU_OPT_EXIT_USAGE);   /* a directory */
    cr_assert_eq(LOAD(&cfg, "--config"), RGPU_OPT_EXIT_USAGE);
    cr_expect(strstr(errors(), "--config needs a value"), "%s", errors());
    if (geteuid() != 0) {
        /* Root reads whatever the mode says. */
        write_file(default_path, "[test]\n");
        chmod(default_path, 0);
        cr_assert_eq(LOAD0(&cfg), RGPU_OPT_EXIT_USAGE);
        cr_expect(strstr(errors(), "Permission denied"), "%s", errors());
    }
}

Test(options, unknown_key_names_file_line_section)
{
    char want[200];

    snprintf(want, sizeof(want), "%s:3: unknown key 'listne' in [test]", default_path);
    expect_file_error("[test]\ncount = 2\nlistne = 1.2.3.4:5\n", want);
}

Test(options, unknown_section)
{
    expect_file_error("[test]\n[serer]\nlisten = 1.2.3.4:5\n",
                      ":3: unknown section [serer] (this file has [test])");
}

Test(options, key_before_any_section)
{
    expect_file_error("count = 2\n", ":1: key 'count' comes before any [section]");
}

Test(options, duplicate_key)
{
    expect_file_error("[test]\ncount = 2\n\ncount = 3\n",
                      ":4: duplicate key 'count' in [test] (first set on line 2)");
}

Test(options, missing_value)
{
    expect_file_error("[test]\ncount =\n", ":2: key 'count' in [test] has no value");
}

Test(options, key_without_equals)
{
    expect_file_error("[test]\n\ncount\n", ":3: 'count' has no value (expected key = value)");
}

Test(options, bad_section_header)
{
    expect_file_error("[test\ncount = 2\n", ":1: bad section header \"[test\"");
}

Test(options, bad_number_in_file)
{
    expect_file_error("[test]\ncount = 12abc\n",
                      ":2: bad value \"12abc\" for 'count' in [test]: expected a whole number "
                      "between 1 and 100");
}

Test(options, out_of_range_in_file)
{
    expect_file_error("[test]\ncount = 101\n", ":2: bad value \"101\" for 'count' in [test]: "
                                               "must be between 1 and 100");
}

Test(options, no_file_key_in_file)
{
    expect_file_error("[test]\nsecret = hunter2\n", ":2: unknown key 'secret' in [test]");
}

Test(options, long_line)
{
    char text[400];

    snprintf(text, sizeof(text), "[test]\nname = %0300d\n", 0);
    expect_file_error(text, ":2: line longer than");
}

Test(options, indented_line_continues_lists_only)
{
    test_cfg_t cfg;

    write_file(default_path, "[test]\nlisten = 127.0.0.1:1,\n  127.0.0.1:2\n\ttcp://[::1]:3\n");
    cr_assert_eq(LOAD0(&cfg), RGPU_OPT_RUN, "%s", errors());
    cr_expect_str_eq(cfg.listen, "127.0.0.1:1,127.0.0.1:2,tcp://[::1]:3");
    expect_file_error("[test]\nname = a\n  b\n", ":3: 'name' in [test] goes on over an indented");
}

Test(options, numbers_are_strict)
{
    static const char *const bad[] = {"", "-1", "+5", " 5", "5 ", "0x10", "1e2", "5.0", "0",
                                      "101", "99999999999999999999999", NULL};
    test_cfg_t cfg;

    for (int i = 0; bad[i]; i++) {
        char arg[64];

        snprintf(arg, sizeof(arg), "--count=%s", bad[i]);
        cr_expect_eq(LOAD(&cfg, arg), RGPU_OPT_EXIT_USAGE, "count \"%s\" accepted", bad[i]);
    }
    cr_assert_eq(LOAD(&cfg, "--count=100", "--big", "1099511627776"), RGPU_OPT_RUN, "%s",
                 errors());
    cr_expect_eq(cfg.count, 100);
    cr_expect_eq(cfg.big, 1ull << 40);
    cr_expect_eq(LOAD(&cfg, "--big", "1099511627777"), RGPU_OPT_EXIT_USAGE);
    cr_expect(strstr(errors(), "--big 1099511627777: must be between 1 and 1099511627776"), "%s", errors());
}

Test(options, sizes_seconds_flags_choices)
{
    test_cfg_t cfg;

    cr_assert_eq(LOAD(&cfg, "--chunk", "1G", "--timeout", "0.5", "--verbose=yes", "--mode",
                      "off"), RGPU_OPT_RUN, "%s", errors());
    cr_expect_eq(cfg.chunk, 1u << 30);
    cr_expect_eq(cfg.timeout_ms, 500);
    cr_expect_eq(cfg.verbose, 1);
    cr_expect_eq(cfg.mode, 2);
    cr_assert_eq(LOAD(&cfg, "--timeout", "2.25", "--verbose=off"), RGPU_OPT_RUN);
    cr_expect_eq(cfg.timeout_ms, 2250);
    cr_expect_eq(cfg.verbose, 0);
    cr_expect_eq(LOAD(&cfg, "--chunk", "2G"), RGPU_OPT_EXIT_USAGE);
    cr_expect(strstr(errors(), "must be between 4K and 1G"), "%s", errors());
    cr_expect_eq(LOAD(&cfg, "--chunk", "4X"), RGPU_OPT_EXIT_USAGE);
    cr_expect_eq(LOAD(&cfg, "--timeout", "0"), RGPU_OPT_EXIT_USAGE);
    cr_expect_eq(LOAD(&cfg, "--timeout", "1.0001"), RGPU_OPT_EXIT_USAGE);
    cr_expect_eq(LOAD(&cfg, "--timeout", ".5"), RGPU_OPT_EXIT_USAGE);
    cr_expect_eq(LOAD(&cfg, "--verbose=maybe"), RGPU_OPT_EXIT_USAGE);
    cr_expect_eq(LOAD(&cfg, "--mode", "slow"), RGPU_OPT_EXIT_USAGE);
    cr_expect(strstr(errors(), "expected fast, safe or off"), "%s", errors());
}

Test(options, environment_errors_name_the_variable)
{
    test_cfg_t cfg;

    env[0] = "T_COUNT=lots";
    cr_assert_eq(LOAD0(&cfg), RGPU_OPT_EXIT_USAGE);
    cr_expect(strstr(errors(), "T_COUNT=lots: expected a whole number"), "%s", errors());
    /* An empty variable is unset. */
    env[0] = "T_COUNT=";
    cr_assert_eq(LOAD0(&cfg), RGPU_OPT_RUN, "%s", errors());
    cr_expect_eq(cfg.count, 10);
}

Test(options, command_line_errors)
{
    test_cfg_t cfg;

    cr_expect_eq(LOAD(&cfg, "--no-such"), RGPU_OPT_EXIT_USAGE);
    cr_expect(strstr(errors(), "unknown option \"--no-such\""), "%s", errors());
    cr_expect_eq(LOAD(&cfg, "stray"), RGPU_OPT_EXIT_USAGE);
    cr_expect(strstr(errors(), "unexpected argument \"stray\""), "%s", errors());
    cr_expect_eq(LOAD(&cfg, "--count"), RGPU_OPT_EXIT_USAGE);
    cr_expect(strstr(errors(), "option --count needs a value (N)"), "%s", errors());
    /* A row kept out of the command line is not an option there. */
    cr_expect_eq(LOAD(&cfg, "--other", "z"), RGPU_OPT_EXIT_USAGE);
    cr_expect_eq(LOAD(&cfg, "--peer", "nocolon"), RGPU_OPT_EXIT_USAGE);
    cr_expect(strstr(errors(), "expected HOST:PORT"), "%s", errors());
}

Test(options, list_option_repeats_and_replaces_lower_sources)
{
    test_cfg_t cfg;

    write_file(default_path, "[test]\nlisten = 127.0.0.1:1, 127.0.0.1:2\n");
    cr_assert_eq(LOAD0(&cfg), RGPU_OPT_RUN, "%s", errors());
    cr_expect_str_eq(cfg.listen, "127.0.0.1:1,127.0.0.1:2");
    env[0] = "T_LISTEN=127.0.0.1:3";
    cr_assert_eq(LOAD0(&cfg), RGPU_OPT_RUN, "%s", errors());
    cr_expect_str_eq(cfg.listen, "127.0.0.1:3");
    cr_assert_eq(LOAD(&cfg, "--listen", "tcp://127.0.0.1:4", "--listen=verbs://10.0.0.1:5"),
                 RGPU_OPT_RUN, "%s", errors());
    cr_expect_str_eq(cfg.listen, "tcp://127.0.0.1:4,verbs://10.0.0.1:5");
    cr_expect_eq(LOAD(&cfg, "--listen", "127.0.0.1:4,oops"), RGPU_OPT_EXIT_USAGE);
    cr_expect(strstr(errors(), "\"oops\" is not HOST:PORT"), "%s", errors());
    cr_expect_eq(LOAD(&cfg, "--listen", ""), RGPU_OPT_EXIT_USAGE);
    cr_expect_eq(LOAD(&cfg, "--listen", "://x:1"), RGPU_OPT_EXIT_USAGE);
}

Test(options, help_version_man)
{
    test_cfg_t cfg;

    /* --help answers even when the file is bad. */
    write_file(default_path, "garbage\n");
    cr_assert_eq(LOAD(&cfg, "--help"), RGPU_OPT_EXIT_OK);
    fflush(out);
    cr_expect(strstr(out_text, "usage: rgpu-test [OPTION]...") && strstr(out_text, "--count N") &&
              strstr(out_text, "env T_COUNT") && !strstr(out_text, "--other"), "%s", out_text);
    cr_assert_eq(LOAD(&cfg, "--version"), RGPU_OPT_EXIT_OK);
    cr_assert_eq(LOAD(&cfg, "--man"), RGPU_OPT_EXIT_OK);
    fflush(out);
    cr_expect(strstr(out_text, ".TH RGPU-TEST 1") && strstr(out_text, ".B \\-\\-count"), "%s",
              out_text);
    cr_assert_eq(LOAD(&cfg, "--man-conf"), RGPU_OPT_EXIT_OK);
    fflush(out);
    cr_expect(strstr(out_text, ".TH RGPU-TEST.CONF 5") && strstr(out_text, ".SS [extra]") &&
              strstr(out_text, "Environment: \\fBT_OTHER"), "%s", out_text);
}

Test(options, set_by_name)
{
    test_cfg_t cfg;
    char why[200];

    cr_assert_eq(LOAD0(&cfg), RGPU_OPT_RUN);
    cr_expect_eq(rgpu_opt_set(&test_table, &cfg, &cfg.state, "count", "7", why, sizeof(why)), 0);
    cr_expect_eq(cfg.count, 7);
    cr_expect_eq(cfg.state.origin[4].from, RGPU_OPT_FROM_CMDLINE);
    cr_expect_eq(rgpu_opt_set(&test_table, &cfg, &cfg.state, "count", "0", why, sizeof(why)), -1);
    cr_expect_str_eq(why, "must be between 1 and 100");
    cr_expect_eq(rgpu_opt_set(&test_table, &cfg, &cfg.state, "nope", "1", why, sizeof(why)), -1);
}

/* A CLI's table: options end at the command, whose own options are its own. */
Test(options, command_ends_the_options)
{
    rgpu_opt_table_t table = test_table;
    test_cfg_t cfg;
    char *argv[] = {"rgpu-test", "--count", "5", "-q", "alloc", "-n", "2", "--count", "9"};

    table.positional = RGPU_OPT_ARGS_COMMAND;
    cr_assert_eq(rgpu_opt_load(&table, &cfg, &cfg.state, 9, argv, fake_getenv, out, err),
                 RGPU_OPT_EXIT_USAGE, "-q is no option of this table");
    argv[3] = "--verbose";
    cr_assert_eq(rgpu_opt_load(&table, &cfg, &cfg.state, 9, argv, fake_getenv, out, err),
                 RGPU_OPT_RUN, "%s", errors());
    cr_expect_eq(cfg.count, 5);
    cr_expect_eq(cfg.verbose, 1);
    cr_expect_eq(cfg.state.argi, 4);
    cr_expect_str_eq(argv[cfg.state.argi], "alloc");
}

/* A benchmark's table: the test name may come anywhere; -n is --count. */
Test(options, arguments_anywhere_and_short_options)
{
    static rgpu_opt_t rows[sizeof(test_opts) / sizeof(test_opts[0])];
    rgpu_opt_table_t table = test_table;
    test_cfg_t cfg;
    char *argv[] = {"rgpu-test", "bw", "-n", "7", "--verbose", "extra"};

    memcpy(rows, test_opts, sizeof(rows));
    rows[4].short_name = 'n';
    table.opts = rows;
    table.positional = RGPU_OPT_ARGS_ANY;
    cr_assert_eq(rgpu_opt_load(&table, &cfg, &cfg.state, 6, argv, fake_getenv, out, err),
                 RGPU_OPT_RUN, "%s", errors());
    cr_expect_eq(cfg.count, 7);
    cr_expect_eq(cfg.verbose, 1);
    cr_assert_eq(cfg.state.nargs, 2);
    cr_expect_str_eq(cfg.state.args[0], "bw");
    cr_expect_str_eq(cfg.state.args[1], "extra");
    argv[3] = "x7";
    cr_expect_eq(rgpu_opt_load(&table, &cfg, &cfg.state, 6, argv, fake_getenv, out, err),
                 RGPU_OPT_EXIT_USAGE);
    cr_expect(strstr(errors(), "--count x7: expected a whole number"), "%s", errors());
}

/* A secret is said to be set, never shown. */
Test(options, secrets_are_not_printed)
{
    static rgpu_opt_t rows[sizeof(test_opts) / sizeof(test_opts[0])];
    rgpu_opt_table_t table = test_table;
    test_cfg_t cfg;

    memcpy(rows, test_opts, sizeof(rows));
    rows[9].flags |= RGPU_OPT_SECRET;
    table.opts = rows;
    env[0] = "T_SECRET=hunter2";
    cr_assert_eq(rgpu_opt_load(&table, &cfg, &cfg.state, 0, NULL, fake_getenv, out, err),
                 RGPU_OPT_RUN, "%s", errors());
    cr_expect_str_eq(cfg.secret, "hunter2");
    rgpu_opt_print(&table, &cfg, &cfg.state, out);
    fflush(out);
    cr_expect(!strstr(out_text, "hunter2") && strstr(out_text, "#secret = (set, not shown)"),
              "%s", out_text);
    cr_expect_eq(rgpu_opt_row(&table, "secret"), 9);
}
