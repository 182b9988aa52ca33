#!/usr/bin/env bash
# clpeak, an unmodified OpenCL benchmark, runs to the end through rgpu: kernel
# launch latency (many small launches) and transfer bandwidth (512 MiB
# buffers moved 20 times each by blocking and non-blocking writes and reads
# and by map/unmap: 60 GiB in all). Its compute tests are left out: they only
# measure the server's CPU, for minutes on 2 cores.
#
# In a sanitized build only the latency test runs: the transfer test takes 7
# minutes through rgpu on 2 cores (0.2-0.6 GB/s), which CI would pay twice for
# little: api_tour already moves 48 MiB through every transfer path under ASan.
source "$(dirname "$0")/lib.sh" "$@"

tests=(--kernel-latency --transfer-bandwidth)
[ "$E2E_SANITIZED" = 1 ] && tests=(--kernel-latency)

start_server srv
out=$E2E_TMP/clpeak.out
rc=0
OCL_ICD_VENDORS=$ICD_DIR RGPU_SERVERS=$srv_ADDR system_prog clpeak "${tests[@]}" >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -eq 0 ] || fail "clpeak through rgpu exited with status $rc"
grep -qE '^Platform: rgpu$' "$out" || fail "clpeak did not run on platform rgpu"
grep -qE 'Kernel launch latency : [0-9.]+ us' "$out" || fail "no kernel launch latency figure"
figure() { grep -m1 -oE "$1 +: [0-9.]+" "$out" | awk '{print $NF}'; }
if [ "$E2E_SANITIZED" = 1 ]; then
    pass "latency $(figure 'Kernel launch latency') us"
else
    for f in 'enqueueWriteBuffer' 'enqueueReadBuffer' 'enqueueWriteBuffer non-blocking' \
        'enqueueReadBuffer non-blocking' 'enqueueMapBuffer\(for read\)' 'enqueueUnmap\(after write\)'; do
        [ -n "$(figure "$f")" ] || fail "no '$f' bandwidth figure"
    done
    pass "latency $(figure 'Kernel launch latency') us, write $(figure enqueueWriteBuffer) GB/s, read $(figure enqueueReadBuffer) GB/s, map $(figure 'enqueueMapBuffer\(for read\)') GB/s"
fi
stop_server srv
