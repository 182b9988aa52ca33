#!/usr/bin/env bash
# e2e.cuda_error_rules: error_rules.cu (nvcc -cudart shared) through the rgpu
# CUDA runtime and rgpu-server's cuda-emulated backend over loopback: a bad
# launch configuration is refused at once and is not sticky; a kernel fault
# surfaces at the next synchronization and sticks to the device until
# cudaDeviceReset, after which the device works again. The server keeps
# serving and stops cleanly.
#   error_rules.sh BUILD_DIR
source "$(dirname "$0")/../../e2e/lib.sh" "$@"

CUDART_DIR=$BUILD/client/cuda
PROG=$BUILD/tests/unit/cuda/error_rules
[ -x "$PROG" ] || fail "no $PROG (tests/unit/cuda not built: nvcc?)"

start_server emu --backends cuda-emulated
out=$E2E_TMP/error_rules.out
rc=0
if [ "$E2E_SANITIZED" = 1 ]; then
    # The program is nvcc's: ASan's runtime goes first for the runtime it loads.
    RGPU_SERVERS=$emu_ADDR LD_LIBRARY_PATH=$CUDART_DIR LD_PRELOAD="$(gcc -print-file-name=libasan.so)" \
        ASAN_OPTIONS=detect_leaks=0 timeout 120 "$PROG" >"$out" 2>&1 || rc=$?
else
    RGPU_SERVERS=$emu_ADDR LD_LIBRARY_PATH=$CUDART_DIR timeout 120 "$PROG" >"$out" 2>&1 || rc=$?
fi
cat "$out"
[ "$rc" -eq 0 ] && [ "$(tail -n1 "$out")" = "PASS" ] || fail "error_rules exited with status $rc"
pass "bad configuration refused and not sticky; a kernel fault sticky until cudaDeviceReset"
kill -0 "$emu_PID" 2>/dev/null || fail "rgpu-server died"
stop_server emu
