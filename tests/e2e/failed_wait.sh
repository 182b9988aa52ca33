#!/usr/bin/env bash
# Commands waiting on a user event set to an error fail with
# CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST instead of hanging the
# session, and the session goes on (tests/e2e/failed_wait.c).
source "$(dirname "$0")/lib.sh" "$@"

start_server srv
out=$E2E_TMP/failed_wait.out
rc=0
rgpu_run "$srv_ADDR" timeout 60 "$E2E_BIN/failed_wait" >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -ne 124 ] || fail "failed_wait hung (killed after 60 s)"
[ "$rc" -eq 0 ] || fail "failed_wait exited with status $rc"
grep -q "PASS" "$out" || fail "failed_wait did not PASS"
pass "$(tail -n 1 "$out")"
stop_server srv
