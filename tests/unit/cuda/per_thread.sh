#!/usr/bin/env bash
# e2e.cuda_per_thread_stream: examples/cuda built with nvcc --default-stream
# per-thread, whose calls arrive through the runtime's _ptsz/_ptds entry
# points, where stream 0 is the calling thread's own default stream; each
# must PASS through rgpu on cuda-emulated.
#   per_thread.sh BUILD_DIR
source "$(dirname "$0")/../../e2e/lib.sh" "$@"
CUDART_DIR=$BUILD/client/cuda
start_server emu --backends cuda-emulated
for p in vector_add matmul streams_events; do
    prog=$BUILD/tests/unit/cuda/${p}_ptds
    [ -x "$prog" ] || fail "no $prog"
    nm -D "$prog" | grep -q "_pt[sd][zs]@" || fail "$p does not use the per-thread entry points"
    out=$E2E_TMP/$p.out
    rc=0
    if [ "$E2E_SANITIZED" = 1 ]; then
        RGPU_SERVERS=$emu_ADDR LD_LIBRARY_PATH=$CUDART_DIR LD_PRELOAD="$(gcc -print-file-name=libasan.so)" \
            ASAN_OPTIONS=detect_leaks=0 timeout 240 "$prog" >"$out" 2>&1 || rc=$?
    else
        RGPU_SERVERS=$emu_ADDR LD_LIBRARY_PATH=$CUDART_DIR timeout 240 "$prog" >"$out" 2>&1 || rc=$?
    fi
    cat "$out"
    [ "$rc" -eq 0 ] && [ "$(tail -n1 "$out")" = "PASS" ] || fail "$p (per-thread default stream) exited with status $rc"
    pass "$p built with --default-stream per-thread: PASS"
done
stop_server emu
