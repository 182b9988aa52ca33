#!/usr/bin/env bash
# The server's side of CUDA, spoken by hand (tests/e2e/cuda_hostile.c): a
# server without CUDA refuses CUDA sessions with the reason and serves
# OpenCL as before; against cuda-emulated, copies outside allocations,
# unknown functions, forged kernel pointers and huge mallocs are refused
# while the session and the server go on, and malformed messages end only
# their own session, with a reason; the lease's quota holds; a
# session that vanishes gives its memory back. Every server stops cleanly
# at the end (under ASan: without leaks).
source "$(dirname "$0")/lib.sh" "$@"

HOSTILE=$E2E_BIN/cuda_hostile
[ -x "$HOSTILE" ] || fail "no $HOSTILE (built with the scheduler's token library)"

run_check() {
    local addr=$1 check=$2 out rc=0
    shift 2
    out=$E2E_TMP/cuda_hostile.$check.out
    "$HOSTILE" "$addr" "$check" "$@" >"$out" 2>&1 || rc=$?
    cat "$out"
    [ "$rc" -eq 0 ] || fail "cuda_hostile $check exited with status $rc"
    grep -q "^PASS $check:" "$out" || fail "cuda_hostile $check passed nothing"
}

# A node without CUDA (the default --backends opencl,cuda: no libcuda.so.1
# here, or no GPU): one log line, OpenCL served, CUDA refused with a reason.
start_server plain
grep -q "not serving CUDA" "$plain_LOG" || fail "the server did not say it serves no CUDA"
run_check "$plain_ADDR" refused
rc=0
rgpu_run "$plain_ADDR" "$EXAMPLES/vector_add" 4096 >"$E2E_TMP/ocl.out" 2>&1 || rc=$?
grep -q "PASS" "$E2E_TMP/ocl.out" && [ "$rc" -eq 0 ] ||
    { cat "$E2E_TMP/ocl.out"; fail "OpenCL vector_add failed on a server without CUDA"; }
pass "OpenCL vector_add still PASSes on that server"
stop_server plain

# The emulated device, with OpenCL beside it.
start_server emu --backends opencl,cuda-emulated
grep -q "serving CUDA with backend cuda-emulated" "$emu_LOG" || fail "cuda-emulated not opened"
for check in memory copy-outside unknown-function huge teardown malformed; do
    run_check "$emu_ADDR" "$check"
    kill -0 "$emu_PID" 2>/dev/null || fail "rgpu-server died during $check"
done
rc=0
rgpu_run "$emu_ADDR" "$EXAMPLES/vector_add" 4096 >"$E2E_TMP/ocl2.out" 2>&1 || rc=$?
grep -q "PASS" "$E2E_TMP/ocl2.out" && [ "$rc" -eq 0 ] ||
    { cat "$E2E_TMP/ocl2.out"; fail "OpenCL vector_add failed beside cuda-emulated"; }
pass "OpenCL served beside CUDA after every check"

# Shutdown with a CUDA session still holding memory, a module, a function,
# a stream and an event: the server ends it, frees all of it and exits
# cleanly (a sanitized server exits non-zero on a leak).
hold_out=$E2E_TMP/hold.out
"$HOSTILE" "$emu_ADDR" hold >"$hold_out" 2>&1 &
hold_pid=$!
track_pid "$hold_pid" "cuda_hostile hold" "$hold_out"
deadline=$((SECONDS + 60))
until grep -q READY "$hold_out"; do
    kill -0 "$hold_pid" 2>/dev/null || { cat "$hold_out"; fail "cuda_hostile hold ended early"; }
    [ "$SECONDS" -lt "$deadline" ] || fail "cuda_hostile hold not READY within 60 s"
    sleep 0.05
done
stop_server emu
rc=0
wait "$hold_pid" || rc=$?
cat "$hold_out"
[ "$rc" -eq 0 ] && grep -q "^PASS hold:" "$hold_out" || fail "cuda_hostile hold: status $rc"
pass "a server stopped under a live CUDA session freed it and exited cleanly"

# Leases: a token with a 64 MiB quota per device.
key=$E2E_TMP/cluster.key
head -c 32 /dev/urandom >"$key"
chmod 600 "$key"
start_server leased --key "$key" --backends cuda-emulated
run_check "$leased_ADDR" quota "$key"
stop_server leased
