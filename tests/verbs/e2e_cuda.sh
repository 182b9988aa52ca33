#!/usr/bin/env bash
# Real CUDA programs end to end over verbs, inside the Soft-RoCE VM
# (scripts/test-verbs.sh runs it there, as root, with RXE_IP set): the
# nvcc-built examples (examples/cuda, as tests/e2e/cuda_examples.sh runs
# them over TCP) load rgpu's libcudart.so.13 and reach rgpu-server's
# cuda-emulated backend by a CUDA lease from rgpu-scheduler, with only
# RGPU_LEASE_TOKEN and RGPU_TRANSPORT=verbs. It checks
#   - vector_add at sizes that fit one message and that go by descriptor,
#     and bandwidth's host<->device copies of 16 MiB (pinned, past rxe's
#     8 MiB max_msg_sz: chunked RDMA READ/WRITE) and of 8 MiB + 4 bytes
#     (pageable): each program checks every byte it gets back and prints
#     PASS;
#   - that every session came in on the verbs listener (from $RXE_IP);
#   - that the server's QPs, CQs and MRs are back to what they were, and it
#     holds no session, once the programs have exited.
#
#   e2e_cuda.sh BUILD_DIR
#
# Exits 77 with a message saying why when the build has no CUDA examples
# (no CUDA toolkit where it was built): scripts/test-verbs.sh reports that
# as SKIPPED, never as a pass.
source "$(dirname "$0")/../e2e/lib.sh" "$1"
source "$(dirname "$0")/e2e_lib.sh"

CUDART_DIR=$BUILD/client/cuda
CUDA_EXAMPLES=$BUILD/examples/cuda
missing=""
[ -e "$CUDART_DIR/libcudart.so.13" ] || missing="$CUDART_DIR/libcudart.so.13"
for p in vector_add bandwidth; do
    [ -x "$CUDA_EXAMPLES/$p" ] || missing="$missing${missing:+, }$CUDA_EXAMPLES/$p"
done
if [ -n "$missing" ]; then
    echo "e2e_cuda: SKIPPED: no $missing (this build has no CUDA runtime or examples: configured without" \
        "the CUDA toolkit's headers, or without nvcc)"
    exit 77
fi

# The programs are nvcc's, not ours: in a sanitized build the runtime they
# load is, so ASan's runtime goes first; their own leaks are not checked.
asan_env=()
if [ "$E2E_SANITIZED" = 1 ]; then
    asan_env=(LD_PRELOAD="$(gcc -print-file-name=libasan.so)${LD_PRELOAD:+:$LD_PRELOAD}"
              ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}")
fi

start_verbs_server cu verbs --backends opencl,cuda-emulated
json=$(rgpu_cli --json alloc --api cuda --ttl 300) || fail "rgpu alloc --api cuda: $json"
token=$(json_get token <<<"$json")

before=$(rdma_counts)
e2e_log "the server's QPs, CQs, MRs before any session: $before"

sessions=0
run_example() {
    local name=$1 out rc=0
    shift
    out=$E2E_TMP/$name.$sessions.out
    env -u RGPU_SERVERS LD_LIBRARY_PATH="$CUDART_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        RGPU_LEASE_TOKEN="$token" RGPU_TRANSPORT=verbs "${asan_env[@]}" \
        timeout 300 "$CUDA_EXAMPLES/$name" "$@" >"$out" 2>&1 || rc=$?
    cat "$out"
    [ "$rc" -eq 0 ] || fail "CUDA $name $* over verbs exited with status $rc"
    [ "$(tail -n1 "$out")" = "PASS" ] || fail "CUDA $name $* over verbs did not end with PASS"
    kill -0 "$cu_PID" 2>/dev/null || fail "rgpu-server died running $name"
    sessions=$((sessions + 1))
    pass "CUDA $name $* over verbs: PASS"
}

run_example vector_add 4096
run_example vector_add 1000003
run_example bandwidth --size=16777216 --iters=2
run_example bandwidth --memory=pageable --size=8388612 --iters=1

expect_sessions_on cu verbs "$sessions" "CUDA sessions"

wait_freed cu "$before" "the last CUDA program"

RGPU_LEASE_TOKEN=$token rgpu_cli release "$(json_get id <<<"$json")" >/dev/null
stop_server cu
