#!/usr/bin/env bash
# An OpenCL program end to end over verbs, inside the Soft-RoCE VM
# (scripts/test-verbs.sh runs it there, as root, with RXE_IP set):
#   rgpu-scheduler, and rgpu-server on PoCL listening on TCP (loopback) and
#   on verbs://$RXE_IP, with a cluster key (--insecure serves loopback only,
#   and librdmacm cannot use the loopback with rxe); a lease from
#   `rgpu alloc`, which carries both endpoints; examples/vector_add through
#   the ICD with only RGPU_LEASE_TOKEN and RGPU_TRANSPORT=verbs, which picks
#   the lease's verbs endpoint. It checks
#   - every element of the result (vector_add says PASS), at sizes that fit
#     one message and that go by descriptor (RDMA READ/WRITE);
#   - that the session ran over verbs: the server's session came from the
#     rxe address (the TCP listener is on 127.0.0.1);
#   - that everything the session held is freed once the program exits: the
#     server's QPs, CQs and MRs as the kernel counts them (`rdma resource
#     show`) are back to what it held before, and its metrics show no
#     session and no device memory.
#
#   e2e_opencl.sh BUILD_DIR [verbs|tcp]
#
# tcp runs the same over the TCP endpoint: the control that tells a broken
# harness (PoCL, the ICD loader, the scheduler inside the VM) from a broken
# verbs path.
source "$(dirname "$0")/../e2e/lib.sh" "$1"
mode=${2:-verbs}
[ -n "${RXE_IP:-}" ] || fail "run inside the Soft-RoCE VM (scripts/test-verbs.sh): RXE_IP is not set"
case $mode in verbs | tcp) ;; *) fail "mode '$mode': expected verbs or tcp" ;; esac
[ -x "$EXAMPLES/vector_add" ] || fail "no $EXAMPLES/vector_add (build the vector_add target)"

# User programs' RDMA resources as the kernel counts them, "QPS CQS MRS":
# every line but the kernel's own (comm [ib_core] and the like). Not by
# pid: the kernel names the thread that created a resource (a session's),
# or none once it exited. Between the programs the server is the device's
# only user in the VM.
rdma_counts() {
    local kind n out=""
    for kind in qp cq mr; do
        n=$(rdma resource show "$kind" | grep -E 'dev |link ' | grep -vc 'comm \[' || true)
        out="$out${out:+ }$n"
    done
    echo "$out"
}

start_scheduler
verbs_listen=()
[ "$mode" = verbs ] && verbs_listen=(--listen "verbs://$RXE_IP:0")
start_server s1 --key "$KEY" --scheduler "$SCHED" --metrics 127.0.0.1:0 "${verbs_listen[@]}"
wait_for_line "$s1_LOG" "registered $s1_ADDR with scheduler" 60 "$s1_PID"
json=$(rgpu_cli --json alloc -n 1 --ttl 300) || fail "rgpu alloc: $json"
token=$(json_get token <<<"$json")
if [ "$mode" = verbs ]; then
    # The second line: the second --listen (lib.sh's start_server listens
    # on 127.0.0.1:0 first).
    verbs_addr=$(sed -n 's/^rgpu-server listening on \([^ ]*\)$/\1/p' "$E2E_TMP/s1.stdout" | sed -n 2p)
    [ -n "$verbs_addr" ] || fail "rgpu-server printed no second 'listening on' line (verbs)"
    servers=$(rgpu_cli --json servers) || fail "rgpu servers: $servers"
    grep -q "verbs://$verbs_addr" <<<"$servers" ||
        fail "the scheduler does not list the server's endpoint verbs://$verbs_addr: $servers"
    pass "the lease's server advertises tcp://$s1_ADDR and verbs://$verbs_addr"
fi

before=$(rdma_counts)
e2e_log "the server's QPs, CQs, MRs before any session: $before"

# 100003: ~400 KB per buffer, past the eager limit (by descriptor); 4096:
# inline. Each run is one session.
sessions=0
for n in 4096 100003; do
    out=$E2E_TMP/vector_add.$n.out
    rc=0
    env -u RGPU_SERVERS OCL_ICD_VENDORS="$ICD_DIR" RGPU_LEASE_TOKEN="$token" \
        RGPU_TRANSPORT="$mode" timeout 300 "$EXAMPLES/vector_add" "$n" >"$out" 2>&1 || rc=$?
    cat "$out"
    [ "$rc" -eq 0 ] || fail "vector_add $n over $mode exited with status $rc"
    grep -q "^vector_add: $n elements on \".*\" (platform \".*\"): results checked, PASS\$" "$out" ||
        fail "vector_add $n over $mode did not print PASS"
    sessions=$((sessions + 1))
    pass "vector_add $n over $mode: PASS"
done

# Both sessions came in on the listener of the mode.
if [ "$mode" = verbs ]; then from="${RXE_IP//./\\.}:"; else from='127\.0\.0\.1:'; fi
got=$(grep -c "session [0-9]* from $from" "$s1_LOG" || true)
[ "$got" -eq "$sessions" ] ||
    fail "$got of $sessions sessions came from ${from//\\/} (the $mode listener): $(grep 'session [0-9]* from' "$s1_LOG")"
pass "every session ran over $mode"

# Freed: the sessions' QPs, CQs and MRs, their device memory, the sessions.
deadline=$((SECONDS + 20))
while :; do
    now=$(rdma_counts)
    [ "$now" = "$before" ] &&
        [ "$(metric "$s1_METRICS" rgpu_server_sessions_active)" = 0 ] &&
        [ "$(metric "$s1_METRICS" rgpu_server_buffer_bytes)" = 0 ] && break
    [ "$SECONDS" -lt "$deadline" ] ||
        fail "20 s after the last program: QPs CQs MRs $now (before: $before), $(metric "$s1_METRICS" rgpu_server_sessions_active) sessions, $(metric "$s1_METRICS" rgpu_server_buffer_bytes) bytes of device memory"
    sleep 0.2
done
pass "the server holds what it held before ($now QPs CQs MRs), no session, no device memory"

RGPU_LEASE_TOKEN=$token rgpu_cli release "$(json_get id <<<"$json")" >/dev/null
stop_server s1
