#!/usr/bin/env bash
# A client holding 1 GiB of device buffers is SIGKILLed: within 10 s the
# server must have released all of it (rgpu_server_buffer_bytes back to 0,
# its resident memory back near where it was), and keep serving.
source "$(dirname "$0")/lib.sh" "$@"

MIB=1024
SLACK_KIB=$((200 * 1024))

# Under AddressSanitizer freed memory waits in a quarantine (256 MiB by
# default) before it goes back to the system; a small one keeps the VmRSS
# check meaningful in build-asan (plain builds ignore ASAN_OPTIONS).
ASAN_OPTIONS="quarantine_size_mb=16${ASAN_OPTIONS:+:$ASAN_OPTIONS}" start_server srv --metrics 127.0.0.1:0

# Warm up (PoCL's compiler, the first session) so the baseline is fair.
rgpu_run "$srv_ADDR" "$EXAMPLES/vector_add" 65536 >"$E2E_TMP/warm.out" 2>&1 ||
    fail "warm-up vector_add failed: $(cat "$E2E_TMP/warm.out")"
# The warm-up's session ends on the server after its client exited: the
# baseline is taken once it has (a fixed second was not always enough).
wait_metric "$srv_METRICS" rgpu_server_sessions_active 0 20
wait_metric "$srv_METRICS" rgpu_server_buffer_bytes 0 20
base_rss=$(rss_kib "$srv_PID")
e2e_log "baseline: server VmRSS $((base_rss / 1024)) MiB, buffer_bytes 0"

out=$E2E_TMP/hold.out
rgpu_spawn "$out" hold_memory "$srv_ADDR" "$E2E_BIN/hold_memory" "$MIB"
client=$SPAWN_PID
wait_for_line "$out" '^READY' 180 "$client"

held=$(metric "$srv_METRICS" rgpu_server_buffer_bytes)
held_rss=$(rss_kib "$srv_PID")
[ "$held" -ge $((MIB * 1024 * 1024)) ] ||
    fail "with the client holding $MIB MiB, rgpu_server_buffer_bytes is $held"
[ "$held_rss" -ge $((base_rss + MIB * 1024 * 9 / 10)) ] ||
    fail "with $MIB MiB written, the server's VmRSS grew only from $((base_rss / 1024)) to $((held_rss / 1024)) MiB"
pass "client holds $MIB MiB: buffer_bytes $held, server VmRSS $((held_rss / 1024)) MiB"

kill -KILL "$client"
wait "$client" 2>/dev/null || true
killed_at=$SECONDS
while :; do
    bytes=$(metric "$srv_METRICS" rgpu_server_buffer_bytes)
    rss=$(rss_kib "$srv_PID")
    [ "$bytes" = 0 ] && [ "$rss" -lt $((base_rss + SLACK_KIB)) ] && break
    [ $((SECONDS - killed_at)) -le 10 ] ||
        fail "10 s after the client's death: buffer_bytes $bytes, VmRSS $((rss / 1024)) MiB (baseline $((base_rss / 1024)) MiB + 200 MiB slack)"
    sleep 0.2
done
pass "within $((SECONDS - killed_at)) s of the client's death: buffer_bytes 0, VmRSS $((rss / 1024)) MiB (baseline $((base_rss / 1024)) MiB)"

active=$(metric "$srv_METRICS" rgpu_server_sessions_active)
[ "$active" = 0 ] || fail "rgpu_server_sessions_active is $active after the client died"
kill -0 "$srv_PID" || fail "the server died"
rgpu_run "$srv_ADDR" "$EXAMPLES/vector_add" 65536 >"$E2E_TMP/after.out" 2>&1 ||
    fail "vector_add after the crash failed: $(cat "$E2E_TMP/after.out")"
pass "sessions_active 0; the server still serves"
stop_server srv
