#!/usr/bin/env bash
# clpeak, an unmodified OpenCL benchmark, runs to the end through rgpu: kernel
# launch latency (many small launches) and transfer bandwidth (512 MiB
# buffers moved 20 times each by write, read and map/unmap). Its compute tests
# are left out: they only measure the server's CPU, for minutes on 2 cores.
source "$(dirname "$0")/lib.sh" "$@"

start_server srv
out=$E2E_TMP/clpeak.out
rc=0
OCL_ICD_VENDORS=$ICD_DIR RGPU_SERVERS=$srv_ADDR system_prog \
    clpeak --kernel-latency --transfer-bandwidth >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -eq 0 ] || fail "clpeak through rgpu exited with status $rc"
grep -qE '^Platform: rgpu$' "$out" || fail "clpeak did not run on platform rgpu"
grep -qE 'Kernel launch latency : [0-9.]+ us' "$out" || fail "no kernel launch latency figure"
grep -qE 'enqueueWriteBuffer +: [0-9.]+' "$out" || fail "no enqueueWriteBuffer bandwidth figure"
grep -qE 'enqueueReadBuffer +: [0-9.]+' "$out" || fail "no enqueueReadBuffer bandwidth figure"
grep -qE 'enqueueUnmap\(after write\) +: [0-9.]+' "$out" || fail "no map/unmap bandwidth figure"
figure() { grep -m1 -oE "$1 +: [0-9.]+" "$out" | awk '{print $NF}'; }
pass "latency $(figure 'Kernel launch latency') us, write $(figure enqueueWriteBuffer) GB/s, read $(figure enqueueReadBuffer) GB/s"
stop_server srv
