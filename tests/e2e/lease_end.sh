#!/usr/bin/env bash
# A session lives as long as its lease, on a server that checks leases (--key)
# and heartbeats to rgpu-scheduler:
#   a token alone (no RGPU_SERVERS) finds its servers;
#   released  -> the client's next call fails, saying the lease is gone, and
#                the server frees the session's device memory;
#   expired   -> the same, saying it expired;
#   renewed   -> the session outlives its token's first expiry;
#   server killed under a lease holder -> the client gets an error, not a
#                hang, and the scheduler marks the server down.
source "$(dirname "$0")/lib.sh" "$@"

start_scheduler --heartbeat-timeout 4
start_server s1 --key "$KEY" --scheduler "$SCHED" --metrics 127.0.0.1:0
wait_for_line "$s1_LOG" "registered $s1_ADDR with scheduler" 30 "$s1_PID"

# The token alone is enough: its lease names the servers.
json=$(rgpu_cli --json alloc -n 1 --ttl 60) || fail "rgpu alloc: $json"
out=$(env -u RGPU_SERVERS OCL_ICD_VENDORS="$ICD_DIR" RGPU_LEASE_TOKEN="$(json_get token <<<"$json")" \
      "$EXAMPLES/vector_add" 4096 2>&1) || fail "vector_add with RGPU_LEASE_TOKEN only: $out"
grep -q "results checked, PASS" <<<"$out" || fail "vector_add with RGPU_LEASE_TOKEN only: $out"
# Renewing and releasing take the lease's token (or the cluster key's signature).
RGPU_LEASE_TOKEN="$(json_get token <<<"$json")" rgpu_cli release "$(json_get id <<<"$json")" >/dev/null
pass "RGPU_LEASE_TOKEN alone: vector_add ran on the lease's server"
out=$(unset RGPU_SERVERS; OCL_ICD_VENDORS="$ICD_DIR" RGPU_LEASE_TOKEN=v1.garbage.x system_prog clinfo -l 2>&1) || true
grep -q "RGPU_LEASE_TOKEN does not decode" <<<"$out" || fail "a garbled token: $out"
pass "a garbled token: the platform says so and has no devices"

# lease_client NAME TTL SECONDS: allocates one GPU for TTL seconds and starts
# loop_until_error SECONDS on it with the token; sets NAME_ID, NAME_PID and
# NAME_OUT once the client is past its first round.
lease_client() {
    local name=$1 ttl=$2 secs=$3 json out=$E2E_TMP/$1.out
    json=$(rgpu_cli --json alloc -n 1 --ttl "$ttl") || fail "rgpu alloc: $json"
    printf -v "${name}_ID" '%s' "$(json_get id <<<"$json")"
    printf -v "${name}_TOKEN" '%s' "$(json_get token <<<"$json")"
    RGPU_LEASE_TOKEN=$(json_get token <<<"$json") \
        rgpu_spawn "$out" "$name" "$(json_get gpus.server <<<"$json")" \
        "$E2E_BIN/loop_until_error" "$secs"
    printf -v "${name}_PID" '%s' "$SPAWN_PID"
    printf -v "${name}_OUT" '%s' "$out"
    wait_for_line "$out" '^READY' 60 "$SPAWN_PID"
}

# client_ends PID OUT WITHIN PATTERN: the client exits with status 2 (an
# OpenCL call failed) within WITHIN seconds, and its output matches PATTERN.
client_ends() {
    local pid=$1 out=$2 within=$3 pattern=$4 start=$SECONDS rc=0
    while kill -0 "$pid" 2>/dev/null; do
        [ $((SECONDS - start)) -le "$within" ] ||
            fail "the client still runs $within s later: $(tail -n 3 "$out")"
        sleep 0.1
    done
    wait "$pid" || rc=$?
    [ "$rc" -eq 2 ] || fail "the client exited with status $rc, expected 2: $(cat "$out")"
    grep -q -- "$pattern" "$out" || fail "the client's output does not say '$pattern': $(cat "$out")"
}

# buffers_freed: the server holds no device memory and no session (5 s).
buffers_freed() {
    local deadline=$((SECONDS + 5))
    until [ "$(metric "$s1_METRICS" rgpu_server_buffer_bytes)" = 0 ] &&
          [ "$(metric "$s1_METRICS" rgpu_server_sessions_active)" = 0 ]; do
        [ "$SECONDS" -lt "$deadline" ] ||
            fail "the server still holds $(metric "$s1_METRICS" rgpu_server_buffer_bytes) bytes"
        sleep 0.2
    done
}

# Released while a client computes on it.
lease_client rel 120 120
[ "$(metric "$s1_METRICS" rgpu_server_buffer_bytes)" != 0 ] || fail "the client holds no device memory"
RGPU_LEASE_TOKEN=$rel_TOKEN rgpu_cli release "$rel_ID" >/dev/null || fail "rgpu release $rel_ID failed"
# Either reason, depending on which the server learns first: the lease is
# missing from a heartbeat reply, or the reply names it among the ended ones.
client_ends "$rel_PID" "$rel_OUT" 10 "lease $rel_ID was released \(or has expired\|(the scheduler says it ended)\)"
buffers_freed
pass "released lease $rel_ID: $(grep -o 'the server ended the session: [^;]*' "$rel_OUT" | head -n1)"
grep -q "lease $rel_ID was released" "$s1_LOG" || fail "the server log does not say why it ended the session"

# Expires while a client computes on it (nobody renews it).
lease_client exp 4 120
client_ends "$exp_PID" "$exp_OUT" 10 "lease $exp_ID \(expired\|was released or has expired\)"
buffers_freed
pass "expired lease $exp_ID ended its session"
# The server ends the session at the token's expiry by its own clock; the
# scheduler reclaims the lease at its next tick (every second): wait for
# that before asking for the (only) GPU again.
deadline=$((SECONDS + 5))
while rgpu_cli --json leases | grep -q "\"id\":$exp_ID,"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the scheduler still lists expired lease $exp_ID 5 s later"
    sleep 0.2
done

# Renewed: the token says 4 s, the scheduler's heartbeat replies say 60 s.
lease_client ren 4 10
json=$(RGPU_LEASE_TOKEN=$ren_TOKEN rgpu_cli --json renew "$ren_ID" 60) || fail "rgpu renew $ren_ID failed: $json"
ren_TOKEN=$(json_get token <<<"$json")     # the 4 s token has expired by the release below
rc=0
wait "$ren_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "the renewed lease's client failed (status $rc): $(cat "$ren_OUT")"
grep -q "no error: PASS" "$ren_OUT" || fail "the renewed lease's client did not finish: $(cat "$ren_OUT")"
pass "renewed lease $ren_ID outlived its token's 4 s (10 s of rounds)"
RGPU_LEASE_TOKEN=$ren_TOKEN rgpu_cli release "$ren_ID" >/dev/null || fail "rgpu release $ren_ID failed"

# The server dies under a lease holder.
lease_client kil 120 120
kill -KILL "$s1_PID"
client_ends "$kil_PID" "$kil_OUT" 10 "CL_"
pass "server killed: the lease holder got $(grep -oE 'CL_[A-Z_]+ \(-?[0-9]+\)$' "$kil_OUT" | head -n1)"
deadline=$((SECONDS + 15))
until rgpu_cli --json servers | grep -q '"up":false'; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the scheduler did not mark the dead server down: $(rgpu_cli servers)"
    sleep 0.5
done
pass "the scheduler marked the dead server down"
