#!/usr/bin/env bash
# The scheduler across hosts, on one machine: the scheduler, two GPU nodes
# and a compute node each in a network namespace of their own, joined by a
# bridge (10.77.1.0/24, no route anywhere else). The GPU nodes register under
# their own addresses; the compute node leases a GPU with `rgpu alloc` and
# runs vector_add there with the lease's token, then leases one GPU on each
# node and computes on both at once. Needs root (ip netns); exits 77
# (skipped) without it.
source "$(dirname "$0")/lib.sh" "$@"

SCHED_BIN=$BUILD/scheduler/rgpu-scheduler
RGPU_BIN=$BUILD/scheduler/rgpu
[ -x "$SCHED_BIN" ] && [ -x "$RGPU_BIN" ] || fail "no rgpu-scheduler or rgpu in $BUILD/scheduler"
require_build

tag=$$
br_ns=rgpu-br-$tag
NETNS=()
netns_cleanup() {
    local ns
    for ns in "${NETNS[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
}
trap 'rc=$?; netns_cleanup; (exit $rc); e2e_cleanup' EXIT

if [ "$(id -u)" -ne 0 ] || ! ip netns add "$br_ns" 2>/dev/null; then
    trap - EXIT
    rm -rf "$E2E_TMP"
    # CI runs as root with network namespaces: there, not running is a failure.
    if [ "${CI:-}" = true ]; then
        echo "[$E2E_NAME] FAIL: needs root and ip netns, which CI must have"
        exit 1
    fi
    echo "[$E2E_NAME] SKIP: needs root and ip netns"
    exit 77
fi
NETNS+=("$br_ns")
ip -n "$br_ns" link add br0 type bridge
ip -n "$br_ns" link set br0 up

# host NAME ADDRESS: a namespace joined to the bridge.
host() {
    local ns=rgpu-$1-$tag
    ip netns add "$ns"
    NETNS+=("$ns")
    ip link add "h$tag$1" type veth peer name "b$tag$1"
    ip link set "h$tag$1" netns "$ns"
    ip link set "b$tag$1" netns "$br_ns"
    ip -n "$br_ns" link set "b$tag$1" master br0 up
    ip -n "$ns" addr add "$2/24" dev "h$tag$1"
    ip -n "$ns" link set "h$tag$1" up
    ip -n "$ns" link set lo up
}
host s 10.77.1.1
host g 10.77.1.2
host c 10.77.1.3
host h 10.77.1.4

KEY=$E2E_TMP/cluster.key
head -c 32 /dev/urandom >"$KEY"
chmod 600 "$KEY"

ip netns exec "rgpu-s-$tag" "$SCHED_BIN" --listen 10.77.1.1:7080 --db "$E2E_TMP/sched.db" \
    --key "$KEY" >"$E2E_TMP/sched.out" 2>"$E2E_TMP/sched.log" &
track_pid $! rgpu-scheduler "$E2E_TMP/sched.log"
wait_for_line "$E2E_TMP/sched.out" "listening on 10.77.1.1:7080" 30 $!

ip netns exec "rgpu-g-$tag" env OCL_ICD_VENDORS="$POCL_ICD" "$SERVER_BIN" --listen 10.77.1.2:7070 \
    --key "$KEY" --scheduler 10.77.1.1:7080 >"$E2E_TMP/gpu.out" 2>"$E2E_TMP/gpu.log" &
track_pid $! rgpu-server "$E2E_TMP/gpu.log"
wait_for_line "$E2E_TMP/gpu.log" "registered 10.77.1.2:7070 with scheduler" 60 $!
ip netns exec "rgpu-h-$tag" env OCL_ICD_VENDORS="$POCL_ICD" "$SERVER_BIN" --listen 10.77.1.4:7070 \
    --key "$KEY" --scheduler 10.77.1.1:7080 >"$E2E_TMP/gpu2.out" 2>"$E2E_TMP/gpu2.log" &
track_pid $! rgpu-server "$E2E_TMP/gpu2.log"
wait_for_line "$E2E_TMP/gpu2.log" "registered 10.77.1.4:7070 with scheduler" 60 $!
pass "the GPU nodes registered as 10.77.1.2:7070 and 10.77.1.4:7070"

out=$E2E_TMP/alloc.out
ip netns exec "rgpu-c-$tag" env OCL_ICD_VENDORS="$ICD_DIR" RGPU_SCHEDULER=10.77.1.1:7080 \
    timeout 120 "$RGPU_BIN" alloc -n 1 -- "$EXAMPLES/vector_add" 65536 >"$out" 2>&1 ||
    { cat "$out"; fail "rgpu alloc -- vector_add on the compute node failed"; }
cat "$out"
grep -q "results checked, PASS" "$out" || fail "vector_add did not PASS"
gpu_log=$E2E_TMP/gpu.log
grep -q "on 10.77.1.4:7070" "$out" && gpu_log=$E2E_TMP/gpu2.log
grep -q "lease 1 of user" "$gpu_log" || fail "the leased GPU node did not check lease 1"
pass "compute node leased a GPU node's device and ran vector_add with its token"

# One GPU on each node: the lease's token opens both, and the program sees
# exactly those two devices.
out=$E2E_TMP/alloc2.out
ip netns exec "rgpu-c-$tag" env OCL_ICD_VENDORS="$ICD_DIR" RGPU_SCHEDULER=10.77.1.1:7080 \
    timeout 120 "$RGPU_BIN" alloc -n 2 -- "$EXAMPLES/multi_device" 65536 2 >"$out" 2>&1 ||
    { cat "$out"; fail "rgpu alloc -n 2 -- multi_device on the compute node failed"; }
cat "$out"
grep -q "multi_device: 2 devices checked, PASS" "$out" || fail "multi_device did not PASS on two devices"
grep -q "10.77.1.2:7070" "$out" && grep -q "10.77.1.4:7070" "$out" ||
    fail "the 2-GPU lease does not span both GPU nodes"
grep -q "lease 2 of user" "$E2E_TMP/gpu.log" && grep -q "lease 2 of user" "$E2E_TMP/gpu2.log" ||
    fail "both GPU nodes should have checked lease 2"
pass "a 2-GPU lease over two GPU nodes: multi_device computed on both"

# Without a token the compute node is refused by the GPU node.
rc=0
ip netns exec "rgpu-c-$tag" env OCL_ICD_VENDORS="$ICD_DIR" RGPU_SERVERS=10.77.1.2:7070 \
    timeout 60 "$EXAMPLES/vector_add" 1024 >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "vector_add without a token ran on the GPU node"
pass "no token: refused across namespaces"
