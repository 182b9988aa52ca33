#!/usr/bin/env bash
# An aarch64 compute node using an x86-64 GPU node, on one machine:
# rgpu-scheduler and rgpu-server (x86-64, PoCL, lease tokens required) in one
# network namespace, the aarch64 client
# (librgpu-opencl, the arm64 ocl-icd loader and an unmodified example, all
# under qemu-aarch64) in another, joined by a veth pair.
#
#   tests/arm/netns_e2e.sh BUILD_X86 BUILD_ARM64
#
# Needs root (ip netns). Takes no timings: qemu-user is 1.1-19x slower.
set -euo pipefail

x86=$(cd "${1:?x86-64 build dir}" && pwd)
arm=$(cd "${2:?aarch64 build dir}" && pwd)
tag=$$
srv_ns=rgpu-gpu-$tag
cli_ns=rgpu-arm-$tag
work=$(mktemp -d)
server_pid=
sched_pid=

cleanup() {
    for pid in $server_pid $sched_pid; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    ip netns del "$srv_ns" 2>/dev/null || true
    ip netns del "$cli_ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    echo "--- server log:" >&2; cat "$work/server.log" >&2 || true
    echo "--- scheduler log:" >&2; cat "$work/sched.log" >&2 || true
    exit 1
}

ip netns add "$srv_ns"
ip netns add "$cli_ns"
ip link add "v$tag-s" type veth peer name "v$tag-c"
ip link set "v$tag-s" netns "$srv_ns"
ip link set "v$tag-c" netns "$cli_ns"
ip -n "$srv_ns" addr add 10.77.0.1/24 dev "v$tag-s"
ip -n "$cli_ns" addr add 10.77.0.2/24 dev "v$tag-c"
for ns in "$srv_ns" "$cli_ns"; do ip -n "$ns" link set lo up; done
ip -n "$srv_ns" link set "v$tag-s" up
ip -n "$cli_ns" link set "v$tag-c" up

# The GPU node: rgpu-scheduler and the x86-64 server, which checks lease
# tokens with the cluster key, on their own address in their namespace.
key=$work/cluster.key
head -c 32 /dev/urandom > "$key"
chmod 600 "$key"
wait_line() {   # FILE PATTERN PID WHAT
    for _ in $(seq 300); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        kill -0 "$3" 2>/dev/null || fail "$4 exited at start"
        sleep 0.1
    done
    fail "$4: no \"$2\" within 30 s"
}
ip netns exec "$srv_ns" "$x86/scheduler/rgpu-scheduler" --listen 10.77.0.1:7080 \
    --db "$work/sched.db" --key "$key" > "$work/sched.out" 2> "$work/sched.log" &
sched_pid=$!
wait_line "$work/sched.out" "listening on" "$sched_pid" rgpu-scheduler
ip netns exec "$srv_ns" env RGPU_LOG=info "$x86/server/rgpu-server" --listen 10.77.0.1:7070 \
    --key "$key" --scheduler 10.77.0.1:7080 > "$work/server.out" 2> "$work/server.log" &
server_pid=$!
wait_line "$work/server.log" "registered 10.77.0.1:7070 with scheduler" "$server_pid" rgpu-server
rgpu_cli() { ip netns exec "$cli_ns" env RGPU_SCHEDULER=10.77.0.1:7080 "$x86/scheduler/rgpu" "$@"; }

# The compute node: only the aarch64 ICD is visible to the aarch64 loader.
mkdir "$work/vendors"
cp "$arm/icd/rgpu.icd" "$work/vendors/"
file -L "$(cat "$arm/icd/rgpu.icd")" | grep -q aarch64 || fail "the ICD in $arm is not an aarch64 library"
file -L "$arm/examples/vector_add" | grep -q aarch64 || fail "$arm/examples/vector_add is not aarch64"

# "rgpu alloc" (the x86-64 CLI: only the client side runs as aarch64 here)
# leases the GPU and runs the aarch64 program with the token.
out=$(rgpu_cli alloc -n 1 -- env OCL_ICD_VENDORS="$work/vendors" \
      timeout 300 qemu-aarch64 "$arm/examples/vector_add" 65536 2>&1) || fail "vector_add under qemu-aarch64: $out"
echo "$out"
echo "$out" | grep -q PASS || fail "vector_add did not pass"
echo "$out" | grep -q '"rgpu"' || fail "vector_add did not run on the rgpu platform"

# The server recorded the client's architecture from the handshake.
grep -q "aarch64" "$work/server.log" || fail "the server log does not name the client's architecture"
grep "aarch64" "$work/server.log" | head -1

# While an aarch64 client computes, `rgpu sessions` (from the server's
# heartbeats) lists its session with its architecture.
loop=$arm/tests/e2e/loop_until_error
file -L "$loop" | grep -q aarch64 || fail "$loop is not aarch64"
rgpu_cli alloc -n 1 -- env OCL_ICD_VENDORS="$work/vendors" \
    timeout 300 qemu-aarch64 "$loop" 20 > "$work/loop.out" 2>&1 &
loop_pid=$!
for _ in $(seq 600); do
    grep -q '^READY' "$work/loop.out" && break
    kill -0 "$loop_pid" 2>/dev/null || fail "loop_until_error under qemu-aarch64 ended: $(cat "$work/loop.out")"
    sleep 0.1
done
grep -q '^READY' "$work/loop.out" || fail "loop_until_error under qemu-aarch64: no first round within 60 s"
listed=
for _ in $(seq 20); do
    listed=$(rgpu_cli --json sessions)
    grep -q '"client_arch":"aarch64"' <<<"$listed" && break
    sleep 0.5
done
grep -q '"client_arch":"aarch64"' <<<"$listed" || fail "rgpu sessions does not list the aarch64 client: $listed"
rgpu_cli sessions
wait "$loop_pid" || fail "loop_until_error under qemu-aarch64 failed: $(cat "$work/loop.out")"
grep -q 'no error: PASS' "$work/loop.out" || fail "loop_until_error: $(cat "$work/loop.out")"
echo "arm client e2e: PASS"
