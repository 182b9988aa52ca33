#!/usr/bin/env bash
# rgpu-server refuses to start without a lease policy, and explains options.
source "$(dirname "$0")/lib.sh" "$@"
require_build

# expect_refusal STATUS PATTERN ARGS...: rgpu-server ARGS exits with STATUS
# at once and says PATTERN on stderr.
expect_refusal() {
    local want=$1 pattern=$2 rc=0
    shift 2
    timeout 20 env OCL_ICD_VENDORS="$POCL_ICD" "$SERVER_BIN" "$@" \
        >"$E2E_TMP/out" 2>"$E2E_TMP/err" || rc=$?
    [ "$rc" -eq "$want" ] && grep -q "$pattern" "$E2E_TMP/err" ||
        fail "rgpu-server $*: status $rc (want $want), stderr: $(cat "$E2E_TMP/err")"
    pass "rgpu-server $*: $(head -c 120 "$E2E_TMP/err")"
}

# Neither a cluster key nor --insecure: nobody would check who uses the GPUs.
expect_refusal 2 "give --key FILE" --listen 127.0.0.1:0
expect_refusal 2 "only on a loopback" --insecure --listen 0.0.0.0:0
expect_refusal 2 "only on a loopback" --insecure --listen 127.example.org:0
expect_refusal 2 "only on a loopback" --insecure --listen tcp://127.example.org:0
expect_refusal 2 "exclude each other" --insecure --key /nonexistent --listen 127.0.0.1:0
expect_refusal 1 "nonexistent" --key "$E2E_TMP/nonexistent.key" --listen 127.0.0.1:0
expect_refusal 2 "unknown option" --listen 127.0.0.1:0 --insecure --no-such-option
expect_refusal 2 "expected batch or normal" --listen 127.0.0.1:0 --insecure --platform-threads fast
# Given one of them, it serves.
start_server ok
pass "with --insecure on loopback it serves ($ok_ADDR)"

# Scheduling policies: "TID NAME POLICY" per thread of PID (policy is field
# 41 of /proc/.../stat: 0 SCHED_OTHER, 3 SCHED_BATCH).
thread_policies() {
    local t
    for t in /proc/"$1"/task/*; do
        printf '%s %s %s\n' "${t##*/}" "$(cat "$t/comm")" "$(sed 's/.*) //' "$t/stat" | awk '{print $39}')"
    done
}

# By default the platform's threads (PoCL's workers) run under SCHED_BATCH,
# so that they do not preempt the session threads feeding them, and rgpu's
# own threads keep SCHED_OTHER. Checked while a client holds a session.
rgpu_spawn "$E2E_TMP/hold.out" hold_memory "$ok_ADDR" "$E2E_BIN/hold_memory" 16 4
hold_pid=$SPAWN_PID
wait_for_line "$E2E_TMP/hold.out" READY 60 "$hold_pid"
thread_policies "$ok_PID" >"$E2E_TMP/threads"
cat "$E2E_TMP/threads"
awk -v pid="$ok_PID" '$1 == pid && $3 == 0' "$E2E_TMP/threads" | grep -q . ||
    fail "the main thread is not under SCHED_OTHER"
for name in rgpu-session rgpu-sender; do
    awk -v n=$name '$2 == n && $3 == 0' "$E2E_TMP/threads" | grep -q . ||
        fail "no $name thread under SCHED_OTHER while a client is connected"
done
awk '$2 ~ /^rgpu-(session|sender)$/ && $3 != 0' "$E2E_TMP/threads" | grep -q . &&
    fail "a session or sender thread is not under SCHED_OTHER"
batch=$(awk -v pid="$ok_PID" '$1 != pid && $2 == "rgpu-server" && $3 == 3' "$E2E_TMP/threads" | wc -l)
[ "$batch" -ge 1 ] || fail "no platform thread runs under SCHED_BATCH"
pass "platform threads under SCHED_BATCH: $batch; main, session and sender threads under SCHED_OTHER"
kill "$hold_pid"
wait "$hold_pid" 2>/dev/null || true

# A build that links jemalloc (the default outside sanitized builds, where it
# is installed) serves with it: PoCL's allocations go through it too.
if grep -q '^RGPU_JEMALLOC_LINKED:INTERNAL=ON' "$BUILD/CMakeCache.txt"; then
    grep -q 'libjemalloc' "/proc/$ok_PID/maps" || fail "the build links jemalloc, but the server has not loaded it"
    grep -q 'memory allocator: jemalloc' "$ok_LOG" || fail "the server's log does not name jemalloc"
    pass "the server runs on jemalloc"
else
    e2e_log "not checked: this build does not link jemalloc (sanitized, or libjemalloc-dev missing)"
fi
stop_server ok

# --platform-threads normal: nothing changes the policy.
start_server normal --platform-threads normal
thread_policies "$normal_PID" >"$E2E_TMP/threads"
awk '$3 != 0' "$E2E_TMP/threads" | grep -q . &&
    fail "with --platform-threads normal, a thread is not under SCHED_OTHER: $(cat "$E2E_TMP/threads")"
[ "$(wc -l <"$E2E_TMP/threads")" -ge 2 ] || fail "the server has a single thread: is the platform's missing?"
pass "--platform-threads normal: all $(wc -l <"$E2E_TMP/threads") threads under SCHED_OTHER"
stop_server normal
