/*
 * bench_metrics_hook: what rgpu-server's per-call metrics hooks cost a
 * session thread (server/metrics.h), against baselines measured in the same
 * run: an empty loop, and the two clock reads that timing every call would
 * take. The calls cycle through a launch stream's types (kernel argument,
 * NDRange, a 4 KiB write, a finish). Prints ns per call and the ratios;
 * checks nothing (docs/observability.md quotes its figures).
 *
 *   build/bench/bench_metrics_hook [CALLS]
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "metrics.h"
#include "session.pb-c.h"

static const uint16_t rgpu_bench_types[4] = {
    RGPU__MSG_TYPE__MSG_CL_SET_KERNEL_ARG, RGPU__MSG_TYPE__MSG_CL_NDRANGE,
    RGPU__MSG_TYPE__MSG_CL_WRITE_BUFFER, RGPU__MSG_TYPE__MSG_CL_FINISH};

int main(int argc, char **argv)
{
    long calls = argc > 1 ? strtol(argv[1], NULL, 10) : 20000000;
    volatile uint64_t sink = 0;

    if (calls < 1000) {
        fprintf(stderr, "usage: bench_metrics_hook [CALLS >= 1000]\n");
        return 2;
    }
    printf("# ns per call, %ld calls per figure, rounds alternate\n", calls);
    printf("#round  empty_loop  two_clock_reads  hooks  hooks-empty  (hooks-empty)/(two_reads-empty)\n");
    for (int round = 0; round < 3; round++) {
        uint64_t t0 = rgpu_metrics_now_ns();
        for (long i = 0; i < calls; i++)
            sink += rgpu_bench_types[i & 3];
        uint64_t empty = rgpu_metrics_now_ns() - t0;

        t0 = rgpu_metrics_now_ns();
        for (long i = 0; i < calls; i++) {
            uint64_t start = rgpu_metrics_now_ns();
            sink += rgpu_bench_types[i & 3] + (rgpu_metrics_now_ns() - start);
        }
        uint64_t reads = rgpu_metrics_now_ns() - t0;

        t0 = rgpu_metrics_now_ns();
        for (long i = 0; i < calls; i++) {
            uint16_t type = rgpu_bench_types[i & 3];
            uint64_t start = rgpu_server_metrics_call_begin(type);

            sink += type;
            rgpu_server_metrics_call_end(type, (i & 3) == 2 ? 4096 : 0, start);
        }
        uint64_t hooks = rgpu_metrics_now_ns() - t0;

        printf("%-7d %-11.1f %-16.1f %-6.1f %-12.1f %.2f\n", round, (double)empty / calls,
               (double)reads / calls, (double)hooks / calls, ((double)hooks - empty) / calls,
               ((double)hooks - empty) / ((double)reads - empty));
    }
    return (int)(sink & 0);
}
