#!/usr/bin/env bash
# A thread blocked in clWaitForEvents, a blocking read or clFinish behind a
# user event that another thread of the program sets: through rgpu as on
# local PoCL, the wait ends (tests/e2e/user_event_threads.c). Before the
# server answered such waits from event callbacks, its session thread sat in
# the platform's wait and never read the clSetUserEventStatus: a deadlock.
source "$(dirname "$0")/lib.sh" "$@"

out=$E2E_TMP/local.out
rc=0
pocl_run timeout 60 "$E2E_BIN/user_event_threads" --pocl >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -eq 0 ] || fail "user_event_threads fails on local PoCL too (status $rc): the test is wrong"

start_server srv
out=$E2E_TMP/rgpu.out
rc=0
rgpu_run "$srv_ADDR" timeout 60 "$E2E_BIN/user_event_threads" >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -ne 124 ] || fail "user_event_threads hung through rgpu (killed after 60 s)"
[ "$rc" -eq 0 ] || fail "user_event_threads exited with status $rc through rgpu"
grep -q "PASS" "$out" || fail "user_event_threads did not PASS"
pass "$(tail -n 1 "$out")"
stop_server srv
