#!/usr/bin/env bash
# An aarch64 compute node using an x86-64 GPU node, on one machine:
# rgpu-server (x86-64, PoCL) in one network namespace, the aarch64 client
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

cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    ip netns del "$srv_ns" 2>/dev/null || true
    ip netns del "$cli_ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; echo "--- server log:" >&2; cat "$work/server.log" >&2 || true; exit 1; }

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

# The GPU node: the x86-64 server on its own address in its namespace.
ip netns exec "$srv_ns" env RGPU_LOG=info "$x86/server/rgpu-server" --listen 10.77.0.1:0 \
    > "$work/server.out" 2> "$work/server.log" &
server_pid=$!
for _ in $(seq 100); do
    grep -q "listening on" "$work/server.out" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || fail "rgpu-server exited at start"
    sleep 0.1
done
addr=$(sed -n 's/^rgpu-server listening on //p' "$work/server.out")
[ -n "$addr" ] || fail "rgpu-server did not say where it listens"

# The compute node: only the aarch64 ICD is visible to the aarch64 loader.
mkdir "$work/vendors"
cp "$arm/icd/rgpu.icd" "$work/vendors/"
file -L "$(cat "$arm/icd/rgpu.icd")" | grep -q aarch64 || fail "the ICD in $arm is not an aarch64 library"
file -L "$arm/examples/vector_add" | grep -q aarch64 || fail "$arm/examples/vector_add is not aarch64"

out=$(ip netns exec "$cli_ns" env OCL_ICD_VENDORS="$work/vendors" RGPU_SERVERS="$addr" \
      timeout 300 qemu-aarch64 "$arm/examples/vector_add" 65536 2>&1) || fail "vector_add under qemu-aarch64: $out"
echo "$out"
echo "$out" | grep -q PASS || fail "vector_add did not pass"
echo "$out" | grep -q '"rgpu"' || fail "vector_add did not run on the rgpu platform"

# The server recorded the client's architecture from the handshake.
grep -q "aarch64" "$work/server.log" || fail "the server log does not name the client's architecture"
grep "aarch64" "$work/server.log" | head -1
echo "arm client e2e: PASS"
