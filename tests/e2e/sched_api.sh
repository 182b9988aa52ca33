#!/usr/bin/env bash
# APIs and endpoints through the scheduler, end to end on loopback (issues
# 15 and 14): a real rgpu-scheduler, two real rgpu-servers with the cluster
# key, the real rgpu CLI.
#   - ocl serves OpenCL only (--backends opencl); a CUDA alloc while it is
#     the only server is refused with the reason in words;
#   - cu serves OpenCL and CUDA (--backends opencl,cuda-emulated), listens
#     on two addresses and is named by an identity no client can connect to
#     (--advertise): it registers both addresses, `rgpu gpus` shows its APIs,
#     the lease lists both, and programs reach it only through the lease's
#     endpoints (lease.c, rgpu_transport_choose);
#   - `rgpu alloc --api cuda -- PROGRAM` gets cu's GPU and runs the
#     nvcc-built examples/cuda/vector_add through rgpu's libcudart.so.13,
#     which rgpu puts first on LD_LIBRARY_PATH; the server checked the lease
#     token at the CUDA handshake (no token, or another server's lease, is
#     refused), and a shared lease's quota holds for CUDA allocations;
#   - a second CUDA alloc while cu's GPU is held is refused ("no GPU serving
#     CUDA is free"); an OpenCL alloc (the default) still works.
source "$(dirname "$0")/lib.sh" "$@"

SCHED_BIN=$BUILD/scheduler/rgpu-scheduler
RGPU_BIN=$BUILD/scheduler/rgpu
CUDART_DIR=$BUILD/client/cuda
CUDA_VADD=$BUILD/examples/cuda/vector_add
[ -x "$SCHED_BIN" ] && [ -x "$RGPU_BIN" ] || fail "no rgpu-scheduler or rgpu in $BUILD/scheduler"
[ -e "$CUDART_DIR/libcudart.so.13" ] || fail "no $CUDART_DIR/libcudart.so.13 (client/cuda not built)"
[ -x "$CUDA_VADD" ] || fail "no $CUDA_VADD (examples/cuda not built: nvcc?)"

KEY=$E2E_TMP/cluster.key
head -c 32 /dev/urandom >"$KEY"
chmod 600 "$KEY"

out=$E2E_TMP/sched.stdout
: >"$out"
"$SCHED_BIN" --listen 127.0.0.1:0 --db "$E2E_TMP/sched.db" --key "$KEY" --heartbeat-timeout 4 \
    --log-level debug >"$out" 2>"$E2E_TMP/sched.log" &
track_pid $! rgpu-scheduler "$E2E_TMP/sched.log"
deadline=$((SECONDS + 30))
SCHED=""
until [ -n "$SCHED" ]; do
    SCHED=$(sed -n 's/^rgpu-scheduler listening on \([^ ]*\)$/\1/p' "$out" | head -n1)
    [ "$SECONDS" -lt "$deadline" ] || fail "rgpu-scheduler printed no address within 30 s"
    sleep 0.05
done

# The CLI as a user runs it on a compute node; the key signs its requests.
# RGPU_CUDA_LIBDIR: this build's runtime, where a package installs its own.
rgpu() {
    RGPU_CUDA_LIBDIR=$CUDART_DIR "$RGPU_BIN" --scheduler "$SCHED" --key "$KEY" "$@"
}

# wait_servers_up N (20 s).
wait_servers_up() {
    local deadline=$((SECONDS + 20))
    until [ "$(rgpu servers | awk 'NR > 1 && $2 == "up"' | wc -l)" -ge "$1" ]; do
        [ "$SECONDS" -lt "$deadline" ] || { rgpu servers >&2; fail "$1 servers not up within 20 s"; }
        sleep 0.2
    done
}

# nvcc's program is not ours: in a sanitized build the runtime it loads is,
# so ASan's runtime goes first (its own leaks are not checked).
pre=()
if [ "$E2E_SANITIZED" = 1 ]; then
    pre=(env "LD_PRELOAD=$(gcc -print-file-name=libasan.so)" "ASAN_OPTIONS=detect_leaks=0")
fi

# --- only an OpenCL server: CUDA is refused in words ---
start_server ocl --key "$KEY" --scheduler "$SCHED" --backends opencl
wait_servers_up 1
rc=0
rgpu alloc --api cuda >"$E2E_TMP/nocuda.out" 2>&1 || rc=$?
cat "$E2E_TMP/nocuda.out"
[ "$rc" -eq 1 ] || fail "a CUDA alloc with only an OpenCL server: status $rc"
grep -q "no GPU serving CUDA is free: no rgpu-server registered with the scheduler serves CUDA" \
    "$E2E_TMP/nocuda.out" || fail "the CUDA refusal does not say why"
pass "rgpu alloc --api cuda with only OpenCL servers: refused, \"no GPU serving CUDA is free\""

# --- a CUDA server on two addresses, named by an identity nobody can reach ---
IDENTITY=gpu-cu.invalid:7070
start_server cu --key "$KEY" --scheduler "$SCHED" --backends opencl,cuda-emulated \
    --listen 127.0.0.1:0 --advertise "$IDENTITY"
mapfile -t cu_listen < <(sed -n 's/^rgpu-server listening on \([^ ]*\)$/\1/p' "$E2E_TMP/cu.stdout")
[ "${#cu_listen[@]}" -eq 2 ] || fail "cu listens on ${#cu_listen[@]} addresses, expected 2"
wait_servers_up 2
rgpu gpus | tee "$E2E_TMP/gpus.out"
grep -q "^$IDENTITY .* opencl,cuda " "$E2E_TMP/gpus.out" || fail "rgpu gpus shows no API opencl,cuda for cu"
grep -Eq "^127\.0\.0\.1:[0-9]+ .* opencl +(free|exclusive|shared) " "$E2E_TMP/gpus.out" ||
    fail "rgpu gpus shows no API opencl for ocl"
pass "rgpu gpus: an API column (opencl for ocl, opencl,cuda for cu)"

rgpu --json servers >"$E2E_TMP/servers.json"
python3 - "$E2E_TMP/servers.json" "$IDENTITY" "${cu_listen[@]}" <<'EOF' || fail "cu did not register both addresses"
import json, sys
servers = {s["address"]: s for s in json.load(open(sys.argv[1]))}
want = ["tcp://" + a for a in sys.argv[3:]]
got = servers[sys.argv[2]]["endpoints"]
assert got == want, (got, want)
EOF
pass "cu registered both addresses it listens on (${cu_listen[*]}) under its one identity"

# A CUDA lease, printed: cu's GPU, both endpoints, the runtime's directory.
rgpu --json alloc --api cuda >"$E2E_TMP/lease.json" || fail "rgpu alloc --api cuda refused"
read -r lease_id lease_token < <(python3 - "$E2E_TMP/lease.json" "$IDENTITY" "${cu_listen[@]}" <<'EOF'
import json, sys
l = json.load(open(sys.argv[1]))
assert l["api"] == "cuda", l["api"]
g = l["gpus"][0]
assert g["server"] == sys.argv[2], g
assert g["endpoints"] == ["tcp://" + a for a in sys.argv[3:]], g["endpoints"]
print(l["id"], l["token"])
EOF
) || fail "the CUDA lease is not cu's GPU with both endpoints: $(cat "$E2E_TMP/lease.json")"
pass "rgpu alloc --api cuda: cu's GPU, the lease records api cuda and lists both endpoints"

rgpu leases | tee "$E2E_TMP/leases.out"
grep -Eq "^$lease_id +.* exclusive +cuda +[0-9]+ +$IDENTITY/0\$" "$E2E_TMP/leases.out" ||
    fail "rgpu leases does not show lease $lease_id as a cuda lease of $IDENTITY/0"
# While it is held, no other GPU serves CUDA.
rc=0
rgpu alloc --api cuda >"$E2E_TMP/busy.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "no GPU serving CUDA is free" "$E2E_TMP/busy.out" ||
    fail "a second CUDA alloc: status $rc, $(cat "$E2E_TMP/busy.out")"
pass "a second CUDA alloc while cu's GPU is held: \"no GPU serving CUDA is free\""
rgpu release "$lease_id" || fail "cannot release lease $lease_id"

# The text form prints what a CUDA program needs.
rgpu alloc --api cuda >"$E2E_TMP/lease.txt" || fail "rgpu alloc --api cuda refused"
cat "$E2E_TMP/lease.txt"
grep -q "^lease [0-9]* (cuda)$" "$E2E_TMP/lease.txt" || fail "the printed lease does not say cuda"
grep -q "^LD_LIBRARY_PATH=$CUDART_DIR\(:\|$\)" "$E2E_TMP/lease.txt" ||
    fail "the printed CUDA lease has no LD_LIBRARY_PATH starting with $CUDART_DIR"
rgpu release "$(sed -n 's/^lease \([0-9]*\) .*/\1/p' "$E2E_TMP/lease.txt")" || fail "cannot release"
pass "the printed CUDA lease gives LD_LIBRARY_PATH with rgpu's runtime first"

# --- an nvcc-built program through a CUDA lease; the environment is rgpu's ---
out=$E2E_TMP/cuda_vadd.out
rc=0
env -u LD_LIBRARY_PATH RGPU_CUDA_LIBDIR="$CUDART_DIR" "$RGPU_BIN" --scheduler "$SCHED" --key "$KEY" alloc --api cuda -- \
    "${pre[@]}" sh -c 'echo "servers=$RGPU_SERVERS ldpath=$LD_LIBRARY_PATH"; exec "$0" 100000' \
    "$CUDA_VADD" >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -eq 0 ] && [ "$(tail -n1 "$out")" = "PASS" ] ||
    fail "CUDA vector_add under rgpu alloc --api cuda: status $rc"
grep -q "^servers=$IDENTITY " "$out" || fail "RGPU_SERVERS is not cu's identity"
lease_no=$(sed -n 's/^rgpu: lease \([0-9]*\): .*/\1/p' "$out")
grep -q "session: .*: lease $lease_no of user " "$cu_LOG" ||
    fail "cu's log shows no session joining lease $lease_no"
pass "rgpu alloc --api cuda -- vector_add (nvcc): PASS on cu through the lease's endpoint"
[ "$(rgpu leases | wc -l)" -eq 1 ] || { rgpu leases; fail "the CUDA lease outlived its command"; }
pass "the CUDA lease was released at exit"

# The server checks the token at the CUDA handshake: none, or a lease of
# another server, opens no session.
cuda_direct() {
    env RGPU_SERVERS="${cu_listen[0]}" LD_LIBRARY_PATH="$CUDART_DIR" "${pre[@]}" "$@"
}
rc=0
cuda_direct env -u RGPU_LEASE_TOKEN "$CUDA_VADD" 1000 >"$E2E_TMP/notoken.out" 2>&1 || rc=$?
cat "$E2E_TMP/notoken.out"
[ "$rc" -ne 0 ] || fail "CUDA vector_add without a lease token ran on cu"
grep -q "lease refused: no lease token" "$cu_LOG" || fail "cu did not log why it refused the CUDA session"
rgpu --json alloc --api opencl --job ocl-only >"$E2E_TMP/ocl.json" || fail "cannot lease an OpenCL GPU"
ocl_token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$E2E_TMP/ocl.json")
rc=0
cuda_direct env RGPU_LEASE_TOKEN="$ocl_token" "$CUDA_VADD" 1000 >"$E2E_TMP/othertoken.out" 2>&1 || rc=$?
cat "$E2E_TMP/othertoken.out"
[ "$rc" -ne 0 ] || fail "CUDA vector_add with a lease of another server ran on cu"
grep -q "lease refused: lease [0-9]* names no GPU of this server" "$cu_LOG" ||
    fail "cu did not log why it refused another server's lease"
pass "CUDA sessions without a token, or with another server's lease, are refused at the handshake"

# A shared CUDA lease's quota holds for CUDA allocations: 1 MiB per GPU
# cannot hold vector_add's three 4 MB arrays.
rc=0
env -u LD_LIBRARY_PATH RGPU_CUDA_LIBDIR="$CUDART_DIR" "$RGPU_BIN" --scheduler "$SCHED" --key "$KEY" alloc --api cuda --shared \
    --mem 1M -- "${pre[@]}" "$CUDA_VADD" 1000000 >"$E2E_TMP/quota.out" 2>&1 || rc=$?
cat "$E2E_TMP/quota.out"
[ "$rc" -ne 0 ] || fail "CUDA vector_add allocated 12 MB under a 1 MiB quota"
grep -q "cudaErrorMemoryAllocation" "$E2E_TMP/quota.out" ||
    fail "the allocation past the quota did not fail as out of memory"
grep -q "session: .*: lease [0-9]* of user .* with a memory quota" "$cu_LOG" ||
    fail "cu's log shows no CUDA session with the lease's quota"
kill -0 "$cu_PID" 2>/dev/null || fail "cu died on a refused allocation"
pass "a shared CUDA lease's 1 MiB quota refuses vector_add's 12 MB"

# --- OpenCL, the default API, still works (the ocl-only job holds ocl's GPU: cu serves it) ---
out=$E2E_TMP/ocl_vadd.out
rc=0
OCL_ICD_VENDORS=$ICD_DIR rgpu alloc -- "$EXAMPLES/vector_add" 100000 >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -eq 0 ] && grep -q "results checked, PASS" "$out" || fail "OpenCL vector_add under rgpu alloc: status $rc"
pass "rgpu alloc (default opencl) -- vector_add: PASS"
rgpu release "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$E2E_TMP/ocl.json")" ||
    fail "cannot release the ocl-only lease"

stop_server cu
stop_server ocl
