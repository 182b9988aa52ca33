#!/usr/bin/env bash
# Real, unmodified CUDA programs (examples/cuda, built by nvcc with
# -cudart shared) through the rgpu CUDA runtime (client/cuda's
# libcudart.so.13) and rgpu-server's cuda-emulated backend over loopback:
# each checks its results on the host and prints PASS. The device they see
# is the emulation, by name, and their sessions are on the server's log.
# OpenCL is served by the same server between them. Under a sanitized
# build, the server, the runtime and its client core run with ASan.
source "$(dirname "$0")/lib.sh" "$@"

CUDART_DIR=$BUILD/client/cuda
CUDA_EXAMPLES=$BUILD/examples/cuda
[ -e "$CUDART_DIR/libcudart.so.13" ] || fail "no $CUDART_DIR/libcudart.so.13 (client/cuda not built)"
for p in vector_add matmul streams_events bandwidth device_query launch_rate; do
    [ -x "$CUDA_EXAMPLES/$p" ] || fail "no $CUDA_EXAMPLES/$p (examples/cuda not built: nvcc?)"
done

# The programs are nvcc's, not ours: in a sanitized build the runtime they
# load is, so ASan's runtime goes first; their own leaks are not checked.
cuda_run() {
    local servers=$1
    shift
    if [ "$E2E_SANITIZED" = 1 ]; then
        RGPU_SERVERS=$servers LD_LIBRARY_PATH=$CUDART_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
            LD_PRELOAD="$(gcc -print-file-name=libasan.so)${LD_PRELOAD:+:$LD_PRELOAD}" \
            ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}" "$@"
    else
        RGPU_SERVERS=$servers LD_LIBRARY_PATH=$CUDART_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$@"
    fi
}

# The program loads rgpu's runtime, not a toolkit's.
loaded=$(RGPU_SERVERS=127.0.0.1:1 LD_LIBRARY_PATH=$CUDART_DIR ldd "$CUDA_EXAMPLES/vector_add" |
         sed -n 's/^\s*libcudart.so.13 => \(\S*\).*/\1/p')
[ "$(readlink -f "$loaded")" = "$(readlink -f "$CUDART_DIR/libcudart.so.13")" ] ||
    fail "vector_add loads libcudart.so.13 from '$loaded', not from $CUDART_DIR"
pass "the examples load rgpu's libcudart.so.13"

start_server emu --backends opencl,cuda-emulated
sessions_before=$(grep -c "client arch" "$emu_LOG" || true)

run_example() {
    local name=$1 out rc=0
    shift
    out=$E2E_TMP/$name.$#.out
    cuda_run "$emu_ADDR" timeout 300 "$CUDA_EXAMPLES/$name" "$@" >"$out" 2>&1 || rc=$?
    cat "$out"
    [ "$rc" -eq 0 ] || fail "$name $* through rgpu exited with status $rc"
    [ "$(tail -n1 "$out")" = "PASS" ] || fail "$name $* through rgpu did not end with PASS"
    kill -0 "$emu_PID" 2>/dev/null || fail "rgpu-server died running $name"
    pass "$name $*: PASS through rgpu on cuda-emulated"
}

run_example vector_add
run_example vector_add 1000003
run_example vector_add 1
run_example matmul
run_example matmul 33
run_example streams_events
run_example streams_events 1000
run_example bandwidth --size=8388608 --iters=3
run_example bandwidth --memory=pageable --size=1048576 --iters=2
run_example launch_rate 2000
run_example device_query
grep -q "rgpu CUDA emulation (no GPU)" "$E2E_TMP/device_query.0.out" ||
    fail "device_query does not show the emulated device's name"
pass "device_query names the device \"rgpu CUDA emulation (no GPU)\""

sessions_after=$(grep -c "client arch" "$emu_LOG" || true)
[ "$((sessions_after - sessions_before))" -ge 11 ] ||
    fail "the server saw $((sessions_after - sessions_before)) sessions for 11 programs"
pass "every program was a session on the server ($((sessions_after - sessions_before)))"

# OpenCL on the same server afterwards.
rc=0
rgpu_run "$emu_ADDR" "$EXAMPLES/vector_add" 4096 >"$E2E_TMP/ocl.out" 2>&1 || rc=$?
grep -q "PASS" "$E2E_TMP/ocl.out" && [ "$rc" -eq 0 ] ||
    { cat "$E2E_TMP/ocl.out"; fail "OpenCL vector_add failed on the same server"; }
pass "OpenCL vector_add PASSes on the same server"
stop_server emu
