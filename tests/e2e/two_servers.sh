#!/usr/bin/env bash
# One program, the devices of two servers: multi_device runs vector_add on
# every device, each in its own context, concurrently, and checks all. Then
# hold_memory on device 1 (then 0) proves where the work goes: the buffers
# appear in that server's metrics and not in the other's.
source "$(dirname "$0")/lib.sh" "$@"

start_server a --metrics 127.0.0.1:0
start_server b --metrics 127.0.0.1:0
servers="$a_ADDR,$b_ADDR"

out=$E2E_TMP/multi.out
rc=0
rgpu_run "$servers" "$EXAMPLES/multi_device" 262144 2 >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -eq 0 ] || fail "multi_device over two servers exited with status $rc"
grep -q '^multi_device: 2 devices checked, PASS$' "$out" || fail "multi_device did not check 2 devices"
pass "multi_device: both servers' devices computed and checked"

# hold_memory MIB CHUNK DEVICE: the buffers land on server DEVICE only.
for dev in 1 0; do
    log=$E2E_TMP/hold.$dev.out
    rgpu_spawn "$log" "hold_memory on device $dev" "$servers" "$E2E_BIN/hold_memory" 64 64 "$dev"
    pid=$SPAWN_PID
    wait_for_line "$log" '^READY' 60 "$pid"
    on_a=$(metric "$a_METRICS" rgpu_server_buffer_bytes)
    on_b=$(metric "$b_METRICS" rgpu_server_buffer_bytes)
    if [ "$dev" = 1 ]; then want_a=0 want_b=67108864; else want_a=67108864 want_b=0; fi
    [ "$on_a" = "$want_a" ] && [ "$on_b" = "$want_b" ] ||
        fail "64 MiB on device $dev: server a holds $on_a bytes, b holds $on_b"
    pass "device $dev of RGPU_SERVERS=a,b is server $([ "$dev" = 1 ] && echo b || echo a): its buffer_bytes = 64 MiB"
    kill -KILL "$pid"
    wait "$pid" 2>/dev/null || true
done
stop_server a
stop_server b
