#!/usr/bin/env bash
# Two tenants, one hostile (issue 11). One rgpu-server; a victim runs
# examples/vector_add in a loop the whole time; meanwhile `hostile` (a
# client speaking the protocol by hand, tests/e2e/hostile.c) runs every
# attack it knows, one at a time. Checks:
#   - every attack exits 0 (the server refused, answered an error, or ended
#     only the attacker's session),
#   - the victim never fails,
#   - the server is still alive (it is restarted after an attack that
#     killed it, so that the remaining attacks still run: that attack fails),
#   - at the end rgpu_server_sessions_active and rgpu_server_buffer_bytes are
#     back to 0 and the server's VmRSS is back within a bound of its baseline.
# It prints which attacks failed and during which attack the victim failed.
#
# One attack by hand:
#   build/tests/e2e/hostile [--metrics M] [--server-pid PID] HOST:PORT ATTACK
source "$(dirname "$0")/lib.sh" "$@"

HOSTILE=$E2E_BIN/hostile
[ -x "$HOSTILE" ] || fail "no $HOSTILE (build the tree first)"
ATTACKS=$("$HOSTILE" --list)
RSS_SLACK_KIB=$((128 * 1024))
ATTACK_TIMEOUT=150

# Under AddressSanitizer freed memory waits in a quarantine (256 MiB by
# default) before it goes back to the system; a small one keeps the VmRSS
# checks meaningful in build-asan (plain builds ignore ASAN_OPTIONS).
server_up() {
    # lib.sh's start_server reads srv.stdout right after starting the server
    # in the background: made first, a slow fork cannot make sed fail on it.
    : >"$E2E_TMP/srv.stdout"
    ASAN_OPTIONS="quarantine_size_mb=16${ASAN_OPTIONS:+:$ASAN_OPTIONS}" start_server srv --metrics 127.0.0.1:0
    echo "$srv_ADDR" >"$E2E_TMP/victim_addr"
    # Warm up (PoCL's compiler, the first session) so the baseline is fair.
    rgpu_run "$srv_ADDR" "$EXAMPLES/vector_add" 65536 >"$E2E_TMP/warm.out" 2>&1 ||
        fail "warm-up vector_add failed: $(cat "$E2E_TMP/warm.out")"
    base_rss=$(rss_kib "$srv_PID")
    e2e_log "baseline: server VmRSS $((base_rss / 1024)) MiB"
}

# Whether the server still serves: alive and its metrics answer.
server_ok() {
    kill -0 "$srv_PID" 2>/dev/null && metric "$srv_METRICS" rgpu_server_sessions_active >/dev/null 2>&1
}

server_up
problems=()
died=()
restarted=0

# The victim: vector_add in a loop until told to stop, against the address
# in victim_addr (a server restarted after a crash has a new one). Each
# failure is logged with the attack that was running.
echo "(warm-up)" >"$E2E_TMP/current_attack"
echo 0 >"$E2E_TMP/victim_runs"
: >"$E2E_TMP/victim_failures"
victim_loop() {
    local n=0 addr attack
    while [ ! -e "$E2E_TMP/victim_stop" ]; do
        addr=$(cat "$E2E_TMP/victim_addr")
        attack=$(cat "$E2E_TMP/current_attack")
        n=$((n + 1))
        if ! OCL_ICD_VENDORS=$ICD_DIR RGPU_SERVERS=$addr timeout 30 "$EXAMPLES/vector_add" 65536 \
            >"$E2E_TMP/victim.last" 2>&1; then
            echo "run $n (started during $attack): $(tail -n 3 "$E2E_TMP/victim.last" | tr '\n' ' ')" \
                >>"$E2E_TMP/victim_failures"
        fi
        echo "$n" >"$E2E_TMP/victim_runs"
    done
}
victim_loop &
victim=$!
track_pid "$victim" "victim (vector_add loop)" "$E2E_TMP/victim_failures"
deadline=$((SECONDS + 60))
until [ "$(cat "$E2E_TMP/victim_runs")" -ge 1 ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the victim did not complete a first vector_add within 60 s"
    sleep 0.1
done
[ ! -s "$E2E_TMP/victim_failures" ] || fail "the victim failed before any attack: $(cat "$E2E_TMP/victim_failures")"
pass "the victim runs (vector_add in a loop)"

failed=()
for attack in $ATTACKS; do
    echo "$attack" >"$E2E_TMP/current_attack"
    out=$E2E_TMP/attack.$attack
    rc=0
    timeout "$ATTACK_TIMEOUT" "$HOSTILE" --metrics "$srv_METRICS" --server-pid "$srv_PID" "$srv_ADDR" "$attack" \
        >"$out" 2>&1 || rc=$?
    cat "$out"
    [ "$rc" -eq 124 ] && echo "ATTACK $attack result=FAIL: hostile itself ran past $ATTACK_TIMEOUT s"
    [ "$rc" -eq 0 ] || failed+=("$attack")
    grep -q "^ATTACK $attack result=" "$out" || [ "$rc" -ne 0 ] ||
        problems+=("hostile printed no result line for $attack")
    if ! server_ok || grep -q "no longer serves a new session" "$out"; then
        # Whatever killed it: its own last words, then a fresh server so
        # that the other attacks still run.
        died+=("$attack")
        e2e_log "the server died or hangs after $attack; its last words:"
        grep -E "Assertion|PTHREAD ERROR|AddressSanitizer|runtime error|SUMMARY|Aborted|fatal" "$srv_LOG" |
            head -n 5 >&2 || true
        kill -KILL "$srv_PID" 2>/dev/null || true
        wait "$srv_PID" 2>/dev/null || true
        # The next server writes srv.log again: keep this one's log apart
        # (shown at exit with the others).
        mv "$srv_LOG" "$E2E_TMP/srv.died-in-$attack.log"
        for i in "${!E2E_PIDS[@]}"; do
            [ "${E2E_PIDS[$i]}" != "$srv_PID" ] || E2E_LOGS[$i]=$E2E_TMP/srv.died-in-$attack.log
        done
        restarted=$((restarted + 1))
        server_up
    fi
done
echo "-" >"$E2E_TMP/current_attack"

# Stop the victim (it finishes its current run).
touch "$E2E_TMP/victim_stop"
deadline=$((SECONDS + 60))
while kill -0 "$victim" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || { problems+=("the victim loop did not stop within 60 s"); break; }
    sleep 0.1
done
runs=$(cat "$E2E_TMP/victim_runs")
if [ -s "$E2E_TMP/victim_failures" ]; then
    problems+=("the victim failed $(wc -l <"$E2E_TMP/victim_failures") of $runs runs")
    echo "victim failures:" >&2
    cat "$E2E_TMP/victim_failures" >&2
else
    pass "the victim ran vector_add $runs times during the attacks without a failure"
fi

# Back to baseline: no session, no buffer, VmRSS near where it was.
if server_ok; then
    deadline=$((SECONDS + 30))
    while :; do
        active=$(metric "$srv_METRICS" rgpu_server_sessions_active)
        bytes=$(metric "$srv_METRICS" rgpu_server_buffer_bytes)
        rss=$(rss_kib "$srv_PID")
        [ "$active" = 0 ] && [ "$bytes" = 0 ] && [ "$rss" -lt $((base_rss + RSS_SLACK_KIB)) ] && break
        if [ "$SECONDS" -ge "$deadline" ]; then
            problems+=("30 s after the last attack: sessions_active $active, buffer_bytes $bytes, VmRSS $((rss / 1024)) MiB (baseline $((base_rss / 1024)) MiB + $((RSS_SLACK_KIB / 1024)) MiB)")
            break
        fi
        sleep 0.2
    done
    [ "$SECONDS" -ge "$deadline" ] ||
        pass "back to baseline: sessions_active 0, buffer_bytes 0, VmRSS $((rss / 1024)) MiB (baseline $((base_rss / 1024)) MiB)${died[*]:+ (of the server restarted after ${died[-1]})}"
else
    problems+=("the server is not serving at the end")
fi

[ "${#died[@]}" -eq 0 ] || problems+=("the server died or hung (and was restarted) after: ${died[*]}")
[ "${#failed[@]}" -eq 0 ] || problems+=("attacks that failed: ${failed[*]}")
if [ "${#problems[@]}" -ne 0 ]; then
    for p in "${problems[@]}"; do
        echo "[isolation] $p" >&2
    done
    fail "${#failed[@]} of $(echo "$ATTACKS" | wc -w) attacks failed${failed[*]:+ (${failed[*]})}"
fi
pass "all $(echo "$ATTACKS" | wc -w) attacks refused; the victim never failed"
stop_server srv
