/* The Slurm plugin's configuration (slurm/spank_options.c): its
 * plugstack.conf words over client.conf's scheduler, timeout and key, over
 * the defaults; each mistake one sentence naming it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spank_options.h"

static char dir[64], conf_path[128], config_word[160];

static void setup(void)
{
    strcpy(dir, "/tmp/rgpu-test-spank-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(conf_path, sizeof(conf_path), "%s/client.conf", dir);
    snprintf(config_word, sizeof(config_word), "config=%s", conf_path);
}

static void teardown(void)
{
    unlink(conf_path);
    rmdir(dir);
}

TestSuite(spank_options, .init = setup, .fini = teardown, .timeout = 30);

static void write_conf(const char *text)
{
    FILE *fp = fopen(conf_path, "w");

    cr_assert_not_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static int load(rgpu_spank_conf_t *conf, char *why, int ac, const char **av)
{
    return rgpu_spank_conf_load(ac, (char **)av, conf, why, 600);
}

Test(spank_options, defaults)
{
    rgpu_spank_conf_t conf;
    char why[600] = "";
    const char *av[] = {"config="};

    /* config= with nothing: no file at all, whatever this host has. */
    cr_assert_eq(load(&conf, why, 1, av), 0, "%s", why);
    cr_expect_str_eq(conf.scheduler, "127.0.0.1:7080");
    cr_expect_eq(conf.timeout_ms, 10000);
    cr_expect_eq(conf.ttl_s, 604800);
    cr_expect_str_eq(conf.state_dir, "/run/rgpu-spank");
    cr_expect_eq(conf.key_default, 1);
}

Test(spank_options, client_conf_then_plugstack_words)
{
    rgpu_spank_conf_t conf;
    char why[600] = "";
    const char *only_file[] = {config_word};
    const char *words[] = {config_word, "timeout=2.5", "ttl=3600", "icd_vendors=/opt/icd"};

    write_conf("[client]\nscheduler = sched1:7080\ntimeout = 4\nkey = /etc/rgpu/other.key\n"
               "servers = ignored:1\n");
    cr_assert_eq(load(&conf, why, 1, only_file), 0, "%s", why);
    cr_expect_str_eq(conf.scheduler, "sched1:7080");
    cr_expect_eq(conf.timeout_ms, 4000);
    cr_expect_str_eq(conf.key, "/etc/rgpu/other.key");
    cr_expect_eq(conf.key_default, 0, "a key named in client.conf must load");

    cr_assert_eq(load(&conf, why, 4, words), 0, "%s", why);
    cr_expect_str_eq(conf.scheduler, "sched1:7080");
    cr_expect_eq(conf.timeout_ms, 2500);        /* the word over the file */
    cr_expect_eq(conf.ttl_s, 3600);
    cr_expect_str_eq(conf.icd_vendors, "/opt/icd");
}

Test(spank_options, mistakes_are_named)
{
    rgpu_spank_conf_t conf;
    char why[600] = "";
    const char *bad_word[] = {"config=", "timeout=soon"};
    const char *unknown[] = {"config=", "schedular=x:1"};
    const char *no_eq[] = {"config=", "verbose"};
    const char *relative[] = {"config=", "state_dir=run/rgpu"};
    const char *range[] = {"config=", "ttl=0"};
    const char *missing[] = {config_word};

    cr_expect_eq(load(&conf, why, 2, bad_word), -1);
    cr_expect(strstr(why, "plugstack.conf: timeout=soon: expected seconds"), "%s", why);
    cr_expect_eq(load(&conf, why, 2, unknown), -1);
    cr_expect(strstr(why, "schedular=x:1: unknown option") && strstr(why, "spank-rgpu(8)"), "%s",
              why);
    cr_expect_eq(load(&conf, why, 2, no_eq), -1);
    cr_expect(strstr(why, "\"verbose\" is not NAME=VALUE"), "%s", why);
    cr_expect_eq(load(&conf, why, 2, relative), -1);
    cr_expect(strstr(why, "absolute"), "%s", why);
    cr_expect_eq(load(&conf, why, 2, range), -1);
    cr_expect(strstr(why, "must be between 1 and 31536000"), "%s", why);
    /* A file named by config= must exist, and parse. */
    cr_expect_eq(load(&conf, why, 1, missing), -1);
    cr_expect(strstr(why, "cannot read the configuration file") && strstr(why, conf_path), "%s",
              why);
    write_conf("[client]\nscheduler = sched1\n");
    cr_expect_eq(load(&conf, why, 1, missing), -1);
    cr_expect(strstr(why, "client.conf:2: bad value \"sched1\" for 'scheduler' in [client]"),
              "%s", why);
}
