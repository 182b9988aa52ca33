#!/usr/bin/env bash
# Program sources cannot read server files into a build
# (tests/e2e/build_refusals.c): an #include whose name a macro computes
# reaches the server, which makes it an #error; the build fails with the
# reason in the log, which never quotes the file. On local PoCL the same
# source compiles (what makes it an attack on a shared server). The
# application's own headers work: -I DIR (resolved by the client), embedded
# headers, system headers in branches OpenCL C never takes.
source "$(dirname "$0")/lib.sh" "$@"

secret=$E2E_TMP/server-secret.h
echo "#define RGPU_SECRET_$RANDOM$RANDOM 1" >"$secret"

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
