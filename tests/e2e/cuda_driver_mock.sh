#!/usr/bin/env bash
# rgpu-server's real CUDA backend (server/cuda/backend_cuda.c) on a MOCK
# libcuda.so.1 (tests/gpu/mock_libcuda.c: host memory, the examples'
# kernels in C; no driver, no GPU), so that the backend's own code runs
# here: the driver found by dlopen and cuGetProcAddress, a context per
# session, the pinned staging ring with a 4 KiB chunk (copies of megabytes
# go through it in a thousand pieces, 2D copies by whole rows and by pieces
# of rows), double-buffered reads, launches by parameter buffer (the mock
# refuses any size but the kernel's), teardown (a sanitized server's leak
# check covers what the contexts held). The examples run through rgpu and
# check their results; the cuda_hostile checks that a driver survives run
# too. Kernels faulting on forged pointers are the GPU's MMU's business,
# which the mock has not: tests/gpu/run.sh checks them on a GPU.
source "$(dirname "$0")/lib.sh" "$@"

MOCK_DIR=$BUILD/tests/gpu/mock
CUDART_DIR=$BUILD/client/cuda
CUDA_EXAMPLES=$BUILD/examples/cuda
HOSTILE=$E2E_BIN/cuda_hostile
[ -e "$MOCK_DIR/libcuda.so.1" ] || fail "no $MOCK_DIR/libcuda.so.1 (target rgpu_mock_libcuda)"
[ -e "$CUDART_DIR/libcudart.so.13" ] || fail "no $CUDART_DIR/libcudart.so.13 (client/cuda not built)"
[ -x "$HOSTILE" ] || fail "no $HOSTILE"

cuda_run() {
    if [ "$E2E_SANITIZED" = 1 ]; then
        RGPU_SERVERS=$drv_ADDR LD_LIBRARY_PATH=$CUDART_DIR \
            LD_PRELOAD="$(gcc -print-file-name=libasan.so)" ASAN_OPTIONS=detect_leaks=0 "$@"
    else
        RGPU_SERVERS=$drv_ADDR LD_LIBRARY_PATH=$CUDART_DIR "$@"
    fi
}

LD_LIBRARY_PATH=$MOCK_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
    start_server drv --backends opencl,cuda --chunk-size 4096
grep -q 'serving CUDA with backend cuda: .*"rgpu MOCK CUDA driver (tests only, no GPU)"' "$drv_LOG" ||
    { cat "$drv_LOG"; fail "the driver backend did not open the mock driver"; }
pass "the driver backend opened the mock libcuda.so.1 through dlopen and cuGetProcAddress"

run_example() {
    local name=$1 out rc=0
    shift
    out=$E2E_TMP/$name.$#.out
    cuda_run timeout 300 "$CUDA_EXAMPLES/$name" "$@" >"$out" 2>&1 || rc=$?
    cat "$out"
    [ "$rc" -eq 0 ] && [ "$(tail -n1 "$out")" = PASS ] ||
        fail "$name $* through rgpu on the driver backend: status $rc"
    kill -0 "$drv_PID" 2>/dev/null || fail "rgpu-server died running $name"
    pass "$name $*: PASS on the driver backend"
}

run_example vector_add 1000003        # 4 MB each way in 4 KiB chunks
run_example vector_add 1
run_example matmul 256                # 2D rows of 1 KiB: 4 rows a chunk
run_example matmul 1100               # rows of 4400 bytes: pieces of rows
run_example streams_events 300000
run_example bandwidth --size=1048576 --iters=2
run_example bandwidth --memory=pageable --size=65536 --iters=2
run_example launch_rate 500
run_example device_query
grep -q "rgpu MOCK CUDA driver" "$E2E_TMP/device_query.0.out" ||
    fail "device_query does not name the mock device"

for check in memory copy-outside huge malformed teardown; do
    out=$E2E_TMP/hostile.$check
    rc=0
    "$HOSTILE" "$drv_ADDR" "$check" >"$out" 2>&1 || rc=$?
    cat "$out"
    [ "$rc" -eq 0 ] || fail "cuda_hostile $check on the driver backend: status $rc"
done
pass "the server's checks hold on the driver backend"

# Shutdown under a live session: the contexts go, the mock's memory with
# them (a sanitized server fails its exit on a leak).
"$HOSTILE" "$drv_ADDR" hold >"$E2E_TMP/hold.out" 2>&1 &
hold_pid=$!
track_pid "$hold_pid" "cuda_hostile hold" "$E2E_TMP/hold.out"
deadline=$((SECONDS + 60))
until grep -q READY "$E2E_TMP/hold.out"; do
    kill -0 "$hold_pid" 2>/dev/null || { cat "$E2E_TMP/hold.out"; fail "cuda_hostile hold ended early"; }
    [ "$SECONDS" -lt "$deadline" ] || fail "cuda_hostile hold not READY within 60 s"
    sleep 0.05
done
stop_server drv
rc=0
wait "$hold_pid" || rc=$?
[ "$rc" -eq 0 ] || { cat "$E2E_TMP/hold.out"; fail "cuda_hostile hold: status $rc"; }
pass "stopped under a live session: contexts destroyed, clean exit"
