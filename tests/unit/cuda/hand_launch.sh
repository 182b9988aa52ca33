#!/usr/bin/env bash
# e2e.cuda_hand_launch: hand_launch (a CUDA program in C around an nvcc
# fatbinary) through the rgpu CUDA runtime against rgpu-server's
# cuda-emulated backend on loopback. CLIENT_BUILD may be an aarch64 cross
# build: its program and runtime then run under qemu-aarch64 against the
# x86-64 server of SERVER_BUILD.
#   hand_launch.sh SERVER_BUILD [CLIENT_BUILD]
source "$(dirname "$0")/../../e2e/lib.sh" "$1"
CLIENT=$(cd "${2:-$1}" && pwd)
PROG=$CLIENT/tests/unit/cuda/hand_launch
[ -x "$PROG" ] || fail "no $PROG"
run=()
case "$(file -b "$PROG")" in
*aarch64*)
    # The arm64 loader and libraries of the multiarch system; no -L prefix,
    # which would mix the cross toolchain's glibc with them.
    command -v qemu-aarch64 >/dev/null || fail "an aarch64 program and no qemu-aarch64"
    run=(qemu-aarch64)
    ;;
esac

start_server emu --backends cuda-emulated
out=$E2E_TMP/hand_launch.out
rc=0
RGPU_SERVERS=$emu_ADDR LD_LIBRARY_PATH=$CLIENT/client/cuda timeout 240 "${run[@]}" "$PROG" 65536 >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -eq 0 ] && [ "$(tail -n1 "$out")" = "PASS" ] || fail "hand_launch exited with status $rc"
grep -q "client arch $( [ ${#run[@]} -gt 0 ] && echo aarch64 || uname -m)" "$emu_LOG" ||
    fail "the server did not see the expected client architecture"
pass "a CUDA program ($(file -b "$PROG" | cut -d, -f2 | xargs)) ran on cuda-emulated through rgpu"
stop_server emu
