#!/usr/bin/env bash
# A client SIGKILLed in the middle of large transfers over verbs, inside the
# Soft-RoCE VM (scripts/test-verbs.sh runs it there, as root, with RXE_IP
# set). tests/e2e/hold_memory, by an OpenCL lease with RGPU_TRANSPORT=verbs,
# creates 16 MiB buffers one after the other and writes each whole (by
# descriptor: the server RDMA READs it in chunks of at most rxe's 8 MiB),
# 256 MiB in all. Once the server has answered two of those writes the
# program is writing the next (it does nothing else until it prints READY),
# and it is killed. Then
#   - the server logs the end of that session (the client went away, or the
#     session ended with the transport's reason);
#   - within 20 s its QPs, CQs and MRs as the kernel counts them are back
#     to what they were before, and it holds no session and no device
#     memory (its metrics);
#   - it keeps serving: vector_add over verbs, at a size that goes by
#     descriptor, PASSes on the same lease, and frees all of it again;
#   - it exits cleanly on SIGTERM.
#
#   e2e_client_killed.sh BUILD_DIR
source "$(dirname "$0")/../e2e/lib.sh" "$1"
source "$(dirname "$0")/e2e_lib.sh"

TOTAL_MIB=256
CHUNK_MIB=16
[ -x "$E2E_BIN/hold_memory" ] || fail "no $E2E_BIN/hold_memory (build the hold_memory target)"
[ -x "$EXAMPLES/vector_add" ] || fail "no $EXAMPLES/vector_add (build the vector_add target)"

start_verbs_server s1 verbs
json=$(rgpu_cli --json alloc -n 1 --ttl 300) || fail "rgpu alloc: $json"
token=$(json_get token <<<"$json")
before=$(rdma_counts)
e2e_log "the server's QPs, CQs, MRs before any session: $before"

# Run through env, which execs the program: $! is hold_memory's own pid.
out=$E2E_TMP/hold.out
env -u RGPU_SERVERS OCL_ICD_VENDORS="$ICD_DIR" RGPU_LEASE_TOKEN="$token" RGPU_TRANSPORT=verbs \
    "$E2E_BIN/hold_memory" "$TOTAL_MIB" "$CHUNK_MIB" >"$out" 2>&1 &
client=$!
track_pid "$client" hold_memory "$out"

# Two writes done (the server counts a call when it has answered it): the
# third is on the wire. Polled in plain bash (metric_now): each write takes
# about a second here.
writes='rgpu_server_calls_total{family="write"}'
deadline=$((SECONDS + 120))
while :; do
    done_writes=$(metric_now "$s1_METRICS" "$writes")
    [ -n "$done_writes" ] || fail "the server's metrics have no series $writes"
    [ "$done_writes" -ge 2 ] && break
    kill -0 "$client" 2>/dev/null || fail "hold_memory exited before it had written 2 buffers: $(cat "$out")"
    [ "$SECONDS" -lt "$deadline" ] || fail "120 s after hold_memory started the server has answered $done_writes writes"
    sleep 0.05
done
! grep -q '^READY' "$out" ||
    fail "hold_memory had written all $TOTAL_MIB MiB before it could be killed (raise TOTAL_MIB)"
kill -KILL "$client"
rc=0
wait "$client" 2>/dev/null || rc=$?
[ "$rc" -eq 137 ] || fail "hold_memory exited with status $rc before SIGKILL reached it: $(cat "$out")"
killed_at=$SECONDS
pass "hold_memory killed while writing: the server had answered $done_writes of its $((TOTAL_MIB / CHUNK_MIB)) writes of $CHUNK_MIB MiB"

# Its session, from the verbs listener, and the server's word on its end.
id=$(sed -n "s/.*session \([0-9]*\) from ${RXE_IP//./\\.}:.*/\1/p" "$s1_LOG" | tail -n1)
[ -n "$id" ] || fail "no session from $RXE_IP (the verbs listener) in the server's log"
until grep -Eq "session $id \(.*\): (client went away|ending session)" "$s1_LOG"; do
    [ $((SECONDS - killed_at)) -le 20 ] || fail "20 s after the kill the server has not logged the end of session $id"
    sleep 0.1
done
pass "the server logged the end: $(grep -E "session $id \(.*\): (client went away|ending session)" "$s1_LOG" | head -n1)"
wait_freed s1 "$before" "the client's SIGKILL"

# It still serves, over verbs, by descriptor.
out=$E2E_TMP/after.out
rc=0
env -u RGPU_SERVERS OCL_ICD_VENDORS="$ICD_DIR" RGPU_LEASE_TOKEN="$token" RGPU_TRANSPORT=verbs \
    timeout 300 "$EXAMPLES/vector_add" 100003 >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -eq 0 ] && grep -q '^vector_add: 100003 elements .*: results checked, PASS$' "$out" ||
    fail "vector_add over verbs after the killed client: status $rc"
[ "$(sessions_from s1 verbs)" -eq 2 ] ||
    fail "not both sessions came in on the verbs listener: $(grep 'session [0-9]* from' "$s1_LOG")"
pass "after the killed client vector_add 100003 over verbs: PASS"
wait_freed s1 "$before" "vector_add"

RGPU_LEASE_TOKEN=$token rgpu_cli release "$(json_get id <<<"$json")" >/dev/null
stop_server s1
