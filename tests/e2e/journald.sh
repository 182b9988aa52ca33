#!/usr/bin/env bash
# Logs under systemd go to journald with structured fields: a daemon whose
# stderr is the stream $JOURNAL_STREAM names (device:inode, systemd.exec(5))
# sends each line through sd_journal_send with PRIORITY, SYSLOG_IDENTIFIER,
# RGPU_COMPONENT, RGPU_SUBSYSTEM and, on a session's thread,
# RGPU_SESSION_ID; a daemon whose stderr is something else keeps plain
# lines on stderr. journald itself does not run here: the test takes its
# socket path, /run/systemd/journal/socket, in a private mount namespace
# and decodes what libsystemd sends (journal_sink.py). Needs root (the
# namespace) and a build with libsystemd (RGPU_WITH_SYSTEMD); skipped (77)
# otherwise.
if [ -z "${RGPU_JOURNAL_NS:-}" ]; then
    if ! unshare -m --propagation private true 2>/dev/null; then
        echo "[journald] SKIP: cannot make a mount namespace (needs root)" >&2
        exit 77
    fi
    RGPU_JOURNAL_NS=1 exec unshare -m --propagation private bash "$0" "$@"
fi
source "$(dirname "$0")/lib.sh" "$@"

grep -q '^RGPU_WITH_SYSTEMD:BOOL=ON' "$BUILD/CMakeCache.txt" || {
    echo "[journald] SKIP: built without libsystemd (RGPU_WITH_SYSTEMD=OFF)" >&2
    exit 77
}
SCHED_BIN=$BUILD/scheduler/rgpu-scheduler
[ -x "$SCHED_BIN" ] || fail "no rgpu-scheduler in $BUILD/scheduler"

# Our own /run/systemd in this namespace, with the stand-in's socket.
mount -t tmpfs tmpfs /run/systemd || fail "cannot mount a tmpfs on /run/systemd"
mkdir -p /run/systemd/journal
RECORDS=$E2E_TMP/records.jsonl
: >"$RECORDS"
python3 "$(dirname "$0")/journal_sink.py" "$RECORDS" >"$E2E_TMP/sink.out" 2>"$E2E_TMP/sink.log" &
track_pid $! journal_sink "$E2E_TMP/sink.log"
wait_for_line "$E2E_TMP/sink.out" listening 10 $!

# find_record SECONDS PYTHON-CONDITION: waits until a record r matches.
find_record() {
    local deadline=$((SECONDS + $1))
    until python3 - "$RECORDS" "$2" <<'PY'
import json, sys
records = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
sys.exit(0 if any(eval("(" + sys.argv[2] + ")", {}, {"r": r}) for r in records) else 1)
PY
    do
        [ "$SECONDS" -lt "$deadline" ] || { cat "$RECORDS" >&2; fail "no journal record with $2"; }
        sleep 0.1
    done
}

# 1. The scheduler, stderr on the stream JOURNAL_STREAM names.
err=$E2E_TMP/sched.stderr
out=$E2E_TMP/sched.stdout
: >"$err"
: >"$out"
JOURNAL_STREAM=$(stat -c '%d:%i' "$err") "$SCHED_BIN" --listen 127.0.0.1:0 \
    --db "$E2E_TMP/sched.db" --log-level info >"$out" 2>>"$err" &
SCHED_PID=$!
track_pid "$SCHED_PID" rgpu-scheduler "$err"
wait_for_line "$out" "^rgpu-scheduler listening on " 30 "$SCHED_PID"
find_record 10 'r.get("MESSAGE", "").startswith("sched: listening on ") and r.get("PRIORITY") == "6"
    and r.get("SYSLOG_IDENTIFIER") == "rgpu-scheduler" and r.get("RGPU_COMPONENT") == "rgpu-scheduler"
    and r.get("RGPU_SUBSYSTEM") == "sched" and "RGPU_SESSION_ID" not in r'
find_record 10 'r.get("MESSAGE", "").startswith("sched: no --key") and r.get("PRIORITY") == "4"'
grep -q "listening on" "$err" && fail "the journal's lines were printed on stderr too: $(cat "$err")"
kill -TERM "$SCHED_PID"
wait "$SCHED_PID" || fail "rgpu-scheduler exited with status $? after SIGTERM"
find_record 10 'r.get("MESSAGE", "") == "sched: SIGTERM: shutting down"'
pass "rgpu-scheduler: lines in the journal with PRIORITY 6/4, SYSLOG_IDENTIFIER, RGPU_COMPONENT, RGPU_SUBSYSTEM; none on stderr"

# 2. A JOURNAL_STREAM that is not stderr (redirected by a shell): plain lines.
n_before=$(wc -l <"$RECORDS")
err2=$E2E_TMP/sched2.stderr
out2=$E2E_TMP/sched2.stdout
: >"$err2"
: >"$out2"
JOURNAL_STREAM=$(stat -c '%d:%i' "$RECORDS") "$SCHED_BIN" --listen 127.0.0.1:0 \
    --db "$E2E_TMP/sched2.db" --log-level info >"$out2" 2>>"$err2" &
SCHED_PID=$!
track_pid "$SCHED_PID" "rgpu-scheduler (stderr redirected)" "$err2"
wait_for_line "$out2" "^rgpu-scheduler listening on " 30 "$SCHED_PID"
wait_for_line "$err2" "rgpu-scheduler\[info\] sched: listening on " 10 "$SCHED_PID"
kill -TERM "$SCHED_PID"
wait "$SCHED_PID" || fail "rgpu-scheduler exited with status $? after SIGTERM"
[ "$(wc -l <"$RECORDS")" = "$n_before" ] || fail "a redirected stderr still logged to the journal"
pass "stderr redirected away from JOURNAL_STREAM: plain lines on stderr, nothing in the journal"

# 3. The server: a session's lines carry its id.
: >"$E2E_TMP/j1.log"
JOURNAL_STREAM=$(stat -c '%d:%i' "$E2E_TMP/j1.log") RGPU_LOG=info start_server j1
rgpu_run "$j1_ADDR" "$EXAMPLES/vector_add" 1000 >"$E2E_TMP/va.out" 2>&1 ||
    { cat "$E2E_TMP/va.out"; fail "vector_add through rgpu failed"; }
find_record 20 'r.get("RGPU_SUBSYSTEM") == "session" and r.get("RGPU_COMPONENT") == "rgpu-server"
    and r.get("RGPU_SESSION_ID", "").isdigit()
    and r.get("MESSAGE", "").startswith("session: session %s " % r["RGPU_SESSION_ID"])'
stop_server j1
pass "rgpu-server: a session's lines carry RGPU_SESSION_ID"
