#!/usr/bin/env bash
# What a program may include through rgpu (tests/e2e/build_refusals.c):
# the application's headers, resolved by the client where they are (-I DIR,
# macro operands as hashcat writes them, embedded headers), and system
# headers in branches OpenCL C never takes; the same program on local PoCL.
# That the server never reads its own files is e2e.isolation's
# include-server-file attack (tests/e2e/hostile.c), which talks to the
# server directly.
source "$(dirname "$0")/lib.sh" "$@"

secret=$E2E_TMP/app-header.h
echo "#define RGPU_APP_HEADER_$RANDOM 1" >"$secret"

out=$E2E_TMP/local.out
rc=0
pocl_run timeout 60 "$E2E_BIN/build_refusals" "$secret" --pocl >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -eq 0 ] || fail "build_refusals --pocl failed on local PoCL (status $rc)"

start_server srv
out=$E2E_TMP/rgpu.out
rc=0
rgpu_run "$srv_ADDR" timeout 60 "$E2E_BIN/build_refusals" "$secret" >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -eq 0 ] || fail "build_refusals exited with status $rc through rgpu"
grep -q "PASS" "$out" || fail "build_refusals did not PASS"
pass "$(tail -n 1 "$out")"
stop_server srv
