#!/usr/bin/env bash
# Kernels of a program created from a binary, with 64-bit scalars (ulong,
# long, double, an 8-byte struct) beside buffers, and clSetKernelArg's
# argument checks (tests/e2e/binary_args.c), through rgpu and on local PoCL:
# every "cmp:" line (results and error codes) must be the same on both.
source "$(dirname "$0")/lib.sh" "$@"

[ -x "$E2E_BIN/binary_args" ] || fail "no $E2E_BIN/binary_args (build the tree first)"

# Local PoCL first: what rgpu must match. Leak checking is off for this run
# only: PoCL's and LLVM's own allocations are not ours.
rc=0
ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}" pocl_run timeout 120 "$E2E_BIN/binary_args" \
    >"$E2E_TMP/pocl.out" 2>&1 || rc=$?
cat "$E2E_TMP/pocl.out"
[ "$rc" -eq 0 ] || fail "binary_args on local PoCL exited with status $rc"
pass "local PoCL: $(tail -n 1 "$E2E_TMP/pocl.out")"

start_server srv
rc=0
rgpu_run "$srv_ADDR" timeout 120 "$E2E_BIN/binary_args" >"$E2E_TMP/rgpu.out" 2>&1 || rc=$?
cat "$E2E_TMP/rgpu.out"
[ "$rc" -ne 124 ] || fail "binary_args through rgpu hung (killed after 120 s)"
[ "$rc" -eq 0 ] || fail "binary_args through rgpu exited with status $rc"
grep -q "PASS" "$E2E_TMP/rgpu.out" || fail "binary_args through rgpu did not PASS"
grep -q "^rgpu: CL_EXEC_KERNEL only" "$E2E_TMP/rgpu.out" ||
    fail "binary_args through rgpu did not check the execution capabilities (not on the rgpu platform?)"
pass "rgpu: $(tail -n 1 "$E2E_TMP/rgpu.out")"

grep '^cmp: ' "$E2E_TMP/pocl.out" >"$E2E_TMP/pocl.cmp"
grep '^cmp: ' "$E2E_TMP/rgpu.out" >"$E2E_TMP/rgpu.cmp"
[ -s "$E2E_TMP/pocl.cmp" ] || fail "no cmp: lines from local PoCL"
diff -u "$E2E_TMP/pocl.cmp" "$E2E_TMP/rgpu.cmp" >&2 ||
    fail "rgpu's results and error codes differ from local PoCL's (diff above: - PoCL, + rgpu)"
pass "$(wc -l <"$E2E_TMP/rgpu.cmp") results and error codes are the same as local PoCL's"
stop_server srv
