#!/usr/bin/env bash
# The server dies (SIGKILL) under a client in a loop of enqueue+finish rounds:
# the client must get an OpenCL error within 10 s, not hang, print it and
# exit non-zero. Then a new server serves a new client.
source "$(dirname "$0")/lib.sh" "$@"

start_server srv
out=$E2E_TMP/loop.out
rgpu_spawn "$out" loop_until_error "$srv_ADDR" "$E2E_BIN/loop_until_error" 60
client=$SPAWN_PID
wait_for_line "$out" '^READY' 60 "$client"
kill -0 "$client" 2>/dev/null || fail "the client stopped before the server was killed: $(cat "$out")"

kill -KILL "$srv_PID"
killed_at=$SECONDS
e2e_log "killed rgpu-server (pid $srv_PID) under the running client"
while kill -0 "$client" 2>/dev/null; do
    [ $((SECONDS - killed_at)) -le 10 ] ||
        fail "the client still runs $((SECONDS - killed_at)) s after its server died (hung?)"
    sleep 0.1
done
rc=0
wait "$client" || rc=$?
took=$((SECONDS - killed_at))
cat "$out"
[ "$rc" -eq 2 ] || fail "the client exited with status $rc, expected 2 (an OpenCL call failed)"
grep -qE '^loop_until_error: .* failed after [0-9]+ rounds .*: CL_[A-Z_]+ \(-?[0-9]+\)$' "$out" ||
    fail "the client did not print the failing call and its OpenCL error"
pass "the client saw '$(grep -oE 'CL_[A-Z_]+ \(-?[0-9]+\)$' "$out")' within ${took} s of the server's death"

start_server again
rc=0
rgpu_run "$again_ADDR" "$EXAMPLES/vector_add" 4096 >"$E2E_TMP/after.out" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "vector_add on a new server failed: $(cat "$E2E_TMP/after.out")"
pass "a new server serves a new client"
stop_server again
