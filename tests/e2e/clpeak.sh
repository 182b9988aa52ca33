#!/usr/bin/env bash
# clpeak, an unmodified OpenCL benchmark, runs to the end through rgpu:
# kernel launch latency, transfer bandwidth and single-precision compute.
source "$(dirname "$0")/lib.sh" "$@"

start_server srv
out=$E2E_TMP/clpeak.out
rc=0
OCL_ICD_VENDORS=$ICD_DIR RGPU_SERVERS=$srv_ADDR system_prog \
    clpeak --kernel-latency --transfer-bandwidth --compute-sp >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -eq 0 ] || fail "clpeak through rgpu exited with status $rc"
grep -qE '^Platform: rgpu$' "$out" || fail "clpeak did not run on platform rgpu"
grep -qE 'Kernel launch latency : [0-9.]+ us' "$out" || fail "no kernel launch latency figure"
grep -qE 'enqueueWriteBuffer +: [0-9.]+' "$out" || fail "no enqueueWriteBuffer bandwidth figure"
grep -qE 'enqueueReadBuffer +: [0-9.]+' "$out" || fail "no enqueueReadBuffer bandwidth figure"
grep -qE 'float16 +: [0-9.]+' "$out" || fail "no single-precision compute figure"
pass "latency $(grep -oE 'latency : [0-9.]+ us' "$out"), write $(grep -m1 -oE 'enqueueWriteBuffer +: [0-9.]+' "$out" | awk '{print $3}') GB/s, float16 $(grep -oE 'float16 +: [0-9.]+' "$out" | awk '{print $3}') GFLOPS"
stop_server srv
