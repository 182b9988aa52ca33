/* Small shared utilities: address splitting, size parsing, the clock. */
#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

#include "rgpu/util.h"

TestSuite(util);

Test(util, addr_split_ipv4_and_names)
{
    char host[64];
    uint16_t port = 0;

    cr_assert_eq(rgpu_addr_split("127.0.0.1:7000", host, sizeof(host), &port), RGPU_OK);
    cr_expect_str_eq(host, "127.0.0.1");
    cr_expect_eq(port, 7000);
    cr_assert_eq(rgpu_addr_split("gpu-node-3.cluster:0", host, sizeof(host), &port), RGPU_OK);
    cr_expect_str_eq(host, "gpu-node-3.cluster");
    cr_expect_eq(port, 0);
    cr_assert_eq(rgpu_addr_split("h:65535", host, sizeof(host), &port), RGPU_OK);
    cr_expect_eq(port, 65535);
}

Test(util, addr_split_ipv6)
{
    char host[64];
    uint16_t port = 0;

    cr_assert_eq(rgpu_addr_split("[::1]:9000", host, sizeof(host), &port), RGPU_OK);
    cr_expect_str_eq(host, "::1");
    cr_expect_eq(port, 9000);
    cr_assert_eq(rgpu_addr_split("[fe80::1%eth0]:1", host, sizeof(host), &port), RGPU_OK);
    cr_expect_str_eq(host, "fe80::1%eth0");
}

Test(util, addr_split_rejects_malformed)
{
    static const char *bad[] = {
        "", "127.0.0.1", ":7000", "host:", "host:port", "host:70000", "host:12x",
        "[::1]9000", "[::1", "[]:80", "host:-1", "host: 80",
    };
    char host[64];
    uint16_t port = 4242;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(rgpu_addr_split(bad[i], host, sizeof(host), &port), RGPU_ERR_ADDRESS,
                     "\"%s\" was accepted", bad[i]);
    cr_expect_eq(rgpu_addr_split(NULL, host, sizeof(host), &port), RGPU_ERR_ADDRESS);
    cr_expect_eq(port, 4242, "the port was written on failure");
}

Test(util, addr_split_respects_host_capacity)
{
    char host[8];
    uint16_t port;

    cr_expect_eq(rgpu_addr_split("1234567:1", host, sizeof(host), &port), RGPU_OK);
    cr_expect_str_eq(host, "1234567");
    cr_expect_eq(rgpu_addr_split("12345678:1", host, sizeof(host), &port), RGPU_ERR_ADDRESS);
}

Test(util, size_parse_suffixes)
{
    static const struct {
        const char *str;
        uint64_t value;
    } good[] = {
        {"0", 0}, {"64", 64}, {"4K", 4096}, {"4k", 4096}, {"16M", 16ull << 20},
        {"2G", 2ull << 30}, {"1T", 1ull << 40}, {"3KiB", 3072}, {"5MB", 5ull << 20},
    };
    uint64_t v;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        cr_assert_eq(rgpu_size_parse(good[i].str, &v), 0, "\"%s\" was refused", good[i].str);
        cr_expect_eq(v, good[i].value, "\"%s\" = %llu", good[i].str, (unsigned long long)v);
    }
}

Test(util, size_parse_rejects_malformed_and_overflow)
{
    static const char *bad[] = {"", "K", "-1", "12Q", "1.5G", "4KX", " 4", "99999999999999999999T",
                                "20000000000000000G", "99999999999999999999"};
    uint64_t v = 77;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(rgpu_size_parse(bad[i], &v), -1, "\"%s\" was accepted", bad[i]);
    cr_expect_eq(rgpu_size_parse(NULL, &v), -1);
    cr_expect_eq(v, 77, "the value was written on failure");
}

Test(util, time_is_monotonic_nanoseconds)
{
    struct timespec ts = {0, 20 * 1000 * 1000};
    uint64_t t0 = rgpu_time_ns(), t1;

    nanosleep(&ts, NULL);
    t1 = rgpu_time_ns();
    cr_expect_geq(t1 - t0, 19 * 1000 * 1000ull, "20 ms sleep measured %llu ns",
                  (unsigned long long)(t1 - t0));
    cr_expect_lt(t1 - t0, 5000 * 1000 * 1000ull);
}
