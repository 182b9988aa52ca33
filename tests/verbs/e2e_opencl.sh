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
source "$(dirname "$0")/e2e_lib.sh"
mode=${2:-verbs}
[ -x "$EXAMPLES/vector_add" ] || fail "no $EXAMPLES/vector_add (build the vector_add target)"

start_verbs_server s1 "$mode"
json=$(rgpu_cli --json alloc -n 1 --ttl 300) || fail "rgpu alloc: $json"
token=$(json_get token <<<"$json")

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
expect_sessions_on s1 "$mode" "$sessions" sessions

# Freed: the sessions' QPs, CQs and MRs, their device memory, the sessions.
wait_freed s1 "$before" "the last program"

RGPU_LEASE_TOKEN=$token rgpu_cli release "$(json_get id <<<"$json")" >/dev/null
stop_server s1
