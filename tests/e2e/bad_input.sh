#!/usr/bin/env bash
# Malformed input from other connections (garbage, HTTP, absurd lengths, a
# wrong version, an unknown message type, bodies that do not unpack, a
# truncated frame, a stalled half header) while a well-behaved client loops:
# the server logs a reason for each, ends only those sessions, the client
# passes, and the server still serves a new client at the end.
source "$(dirname "$0")/lib.sh" "$@"

# info: the server logs a client that went away mid-frame at info level.
RGPU_LOG=info start_server srv --metrics 127.0.0.1:0

out=$E2E_TMP/loop.out
rgpu_spawn "$out" "loop_until_error (the well-behaved client)" "$srv_ADDR" \
    "$E2E_BIN/loop_until_error" 20
client=$SPAWN_PID
wait_for_line "$out" '^READY' 60 "$client"

cases=$E2E_TMP/cases
python3 "$(dirname "$0")/bad_input.py" "$srv_ADDR" >"$cases" ||
    fail "bad_input.py failed: $(cat "$cases")"
cat "$cases"
kill -0 "$srv_PID" 2>/dev/null || fail "the server died of the bad input"

# case_port NAME; then each case: did the server end it, and what did it log?
case_port() {
    sed -n "s/^CASE $1 port=\([0-9]*\) .*/\1/p" "$cases"
}
# expect_case NAME LOG-PATTERN [SESSION-ERROR-STATUS]: the server logged a line
# for that connection matching the pattern; with a status, it also closed the
# connection itself after sending a SessionError with that rgpu_status_t.
expect_case() {
    local name=$1 pattern=$2 status=${3:-} port line
    port=$(case_port "$name")
    [ -n "$port" ] || fail "case $name did not run"
    if [ -n "$status" ]; then
        grep -q "^CASE $name .* closed=yes session_error=$status\$" "$cases" ||
            fail "case $name: expected the server to send SessionError $status and close"
    fi
    line=$(grep -F "127.0.0.1:$port)" "$srv_LOG" | grep -iE -- "$pattern" | head -n1 || true)
    [ -n "$line" ] || {
        grep -F "127.0.0.1:$port)" "$srv_LOG" >&2 || true
        fail "case $name: no server log line for 127.0.0.1:$port matching /$pattern/"
    }
    pass "$name: ${line#*: }"
}
# Statuses: common/include/rgpu/status.h.
expect_case garbage 'ending session.*magic' -200
expect_case http 'ending session.*magic' -200
expect_case absurd_body_length 'ending session.*too large' -202
expect_case absurd_bulk_length 'ending session.*too large' -202
expect_case wrong_frame_version 'ending session.*version' -201
expect_case hello_does_not_unpack 'ending session.*unpack' -203
expect_case hello_wrong_protocol_version 'ending session.*version' -201
expect_case not_hello_first 'ending session.*hello' -205
expect_case unknown_type_after_hello 'ending session.*(unknown|9999)' -204
expect_case body_does_not_unpack_after_hello 'ending session.*unpack' -203
expect_case truncated_frame 'went away|closed|truncat'
expect_case stalled_header 'went away|closed|truncat'

errors=$(metric "$srv_METRICS" rgpu_server_protocol_errors_total)
[ "$errors" -ge 10 ] || fail "rgpu_server_protocol_errors_total is $errors, expected at least 10"
pass "rgpu_server_protocol_errors_total = $errors"

rc=0
wait "$client" || rc=$?
cat "$out"
[ "$rc" -eq 0 ] || fail "the well-behaved client failed (status $rc) while others sent garbage"
grep -q 'no error: PASS$' "$out" || fail "the well-behaved client did not PASS"
pass "the well-behaved client ran undisturbed"

kill -0 "$srv_PID" 2>/dev/null || fail "the server died"
rgpu_run "$srv_ADDR" "$EXAMPLES/vector_add" 65536 >"$E2E_TMP/after.out" 2>&1 ||
    fail "vector_add after the bad input failed: $(cat "$E2E_TMP/after.out")"
pass "the server serves a new vector_add afterwards"
stop_server srv
