#!/usr/bin/env bash
# Program sources and build options cannot read server files into a build
# (tests/e2e/build_refusals.c): an #include of a file of the server, however
# spelled, and -I options are refused with the reason in the build log, which
# never quotes the file; embedded headers still work. On local PoCL the same
# #include compiles, which is what makes it an attack on a shared server.
source "$(dirname "$0")/lib.sh" "$@"

secret=$E2E_TMP/server-secret.h
echo "#define RGPU_SECRET_$RANDOM$RANDOM 1" >"$secret"

out=$E2E_TMP/local.out
rc=0
pocl_run timeout 60 "$E2E_BIN/build_refusals" "$secret" >"$out" 2>&1 || rc=$?
grep -q "the build succeeded" "$out" ||
    { cat "$out"; fail "on local PoCL the #include of $secret should compile (status $rc)"; }

start_server srv
out=$E2E_TMP/rgpu.out
rc=0
rgpu_run "$srv_ADDR" timeout 60 "$E2E_BIN/build_refusals" "$secret" >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -eq 0 ] || fail "build_refusals exited with status $rc through rgpu"
grep -q "PASS" "$out" || fail "build_refusals did not PASS"
pass "$(tail -n 1 "$out")"
stop_server srv
