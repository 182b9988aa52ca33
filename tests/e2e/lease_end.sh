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
# loop_until_error SECONDS on it with the token (+N: until N seconds past the
# token's expiry); sets NAME_ID, NAME_TOKEN, NAME_EXPIRES (the token's expiry,
# unix seconds), NAME_PID and NAME_OUT once the client is past its first
# round, which must come before the token expires.
lease_client() {
    local name=$1 ttl=$2 secs=$3 json out=$E2E_TMP/$1.out expires
    json=$(rgpu_cli --json alloc -n 1 --ttl "$ttl") || fail "rgpu alloc: $json"
    expires=$(json_get expires_unix <<<"$json")
    case $secs in +*) secs=$((expires + ${secs#+} - $(date +%s))) ;; esac
    printf -v "${name}_ID" '%s' "$(json_get id <<<"$json")"
    printf -v "${name}_TOKEN" '%s' "$(json_get token <<<"$json")"
    printf -v "${name}_EXPIRES" '%s' "$expires"
    RGPU_LEASE_TOKEN=$(json_get token <<<"$json") \
        rgpu_spawn "$out" "$name" "$(json_get gpus.server <<<"$json")" \
        "$E2E_BIN/loop_until_error" "$secs"
    printf -v "${name}_PID" '%s' "$SPAWN_PID"
    printf -v "${name}_OUT" '%s' "$out"
    # A client that starts slower than its lease lasts tests nothing: say so.
    until grep -q '^READY' "$out"; do
        kill -0 "$SPAWN_PID" 2>/dev/null ||
            fail "lease $(json_get id <<<"$json")'s client ended before its first round (the lease" \
                 "lasts $ttl s; its token expired $(($(date +%s) - expires)) s ago): $(cat "$out")"
        [ "$(date +%s)" -lt "$expires" ] ||
            fail "lease $(json_get id <<<"$json")'s client did not finish its first round within" \
                 "the lease's $ttl s: $(cat "$out")"
        sleep 0.1
    done
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

# buffers_freed: the server holds no device memory and no session (20 s).
buffers_freed() {
    local deadline=$((SECONDS + 20))
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

# Expires while a client computes on it (nobody renews it). 10 s: the
# client's start and first round must fit in it (seconds under ASan on a
# loaded machine), and the token's expiry is in whole seconds (up to one less).
lease_client exp 10 120
client_ends "$exp_PID" "$exp_OUT" $((exp_EXPIRES - $(date +%s) + 10)) \
    "lease $exp_ID \(expired\|was released or has expired\)"
buffers_freed
pass "expired lease $exp_ID ended its session"
# The server ends the session at the token's expiry by its own clock; the
# scheduler reclaims the lease at its next tick (every second): wait for
# that before asking for the (only) GPU again.
deadline=$((SECONDS + 15))
while :; do
    leases=$(rgpu_cli --json leases) || fail "rgpu leases: $leases"
    grep -q "\"id\":$exp_ID," <<<"$leases" || break
    [ "$SECONDS" -lt "$deadline" ] || fail "the scheduler still lists expired lease $exp_ID 15 s later"
    sleep 0.2
done

# Renewed: the client's token says 15 s, the scheduler's heartbeat replies
# then say 60 s, and the client computes until 4 s past the token's expiry
# (the server's clock ends a session at most a second after it, and its
# timer may run late under load). The server hears of the renewal by its
# next heartbeat reply (every 2 s), which judges only sessions that started
# in an earlier second: up to 4 s after the renewal. A renewal later than
# 5 s before the token's expiry (a client that took 10 s to start) could
# not reach the server in time: the test then fails saying so, rather than
# blaming the product. (A TTL of 4 s failed so: the client's first round came
# 1.2 s after the alloc, the renewal 2 s before the expiry.)
lease_client ren 15 +4
json=$(RGPU_LEASE_TOKEN=$ren_TOKEN rgpu_cli --json renew "$ren_ID" 60) || fail "rgpu renew $ren_ID failed: $json"
ahead=$((ren_EXPIRES - $(date +%s)))
[ "$ahead" -ge 5 ] || fail "lease $ren_ID was renewed only $ahead s before its token's expiry (its" \
    "client was slow to start): too late for the server's heartbeats, nothing to test"
ren_TOKEN=$(json_get token <<<"$json")     # the 15 s token has expired by the release below
rc=0
wait "$ren_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "the renewed lease's client failed (status $rc): $(cat "$ren_OUT")"
grep -q "no error: PASS" "$ren_OUT" || fail "the renewed lease's client did not finish: $(cat "$ren_OUT")"
[ "$(date +%s)" -gt "$ren_EXPIRES" ] || fail "the client ended before its token's expiry"
pass "renewed lease $ren_ID outlived its token's 15 s (rounds until 4 s past its expiry)"
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
