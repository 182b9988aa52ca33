#!/usr/bin/env bash
# rgpu-server holds against connection floods and a hostile metrics client:
#   1. past --max-sessions, connections get "server full" and are closed; the
#      server's thread count stays bounded, and it serves again afterwards;
#   2. out of descriptors (a low RLIMIT_NOFILE and a flood), accept pauses
#      instead of spinning: the log stays short and the server serves after;
#   3. metrics: a request with a NUL byte, a malformed or an oversized one
#      gets a 400; connections past the bound are closed; an idle metrics
#      connection does not keep the server from exiting on SIGTERM.
source "$(dirname "$0")/lib.sh" "$@"

HOLD=$E2E_TMP/hold.py
cat >"$HOLD" <<'EOF'
# hold.py HOST:PORT N REFUSALS STATUS RELEASE: opens N TCP connections, waits
# (20 s at most) until REFUSALS of them were closed by the server, writes
# "connected=N closed=C full=F" to STATUS (F: closed with a "server full"
# frame), then holds the others open until the file RELEASE exists.
import os, select, socket, sys, time
addr, n, want, status, release = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
host, port = addr.rsplit(":", 1)
socks = [socket.create_connection((host, int(port)), timeout=10) for _ in range(n)]
data = {s: b"" for s in socks}
closed = set()
deadline = time.time() + 20
while len(closed) < want and time.time() < deadline:
    live = [s for s in socks if s not in closed]
    ready, _, _ = select.select(live, [], [], 0.2)
    for s in ready:
        try:
            chunk = s.recv(4096)
        except OSError:
            chunk = b""
        if chunk:
            data[s] += chunk
        else:
            closed.add(s)
full = sum(1 for s in closed if b"server full" in data[s])
with open(status + ".tmp", "w") as f:
    f.write("connected=%d closed=%d full=%d\n" % (n, len(closed), full))
os.rename(status + ".tmp", status)
deadline = time.time() + 120
while not os.path.exists(release) and time.time() < deadline:
    time.sleep(0.05)
EOF

# wait_file FILE SECONDS: waits until FILE exists.
wait_file() {
    local deadline=$((SECONDS + $2))
    until [ -e "$1" ]; do
        [ "$SECONDS" -lt "$deadline" ] || fail "no $1 within $2 s"
        sleep 0.05
    done
}

threads_of() {
    awk '/^Threads:/ {print $2}' "/proc/$1/status"
}

run_vector_add() {
    local out=$E2E_TMP/vector_add.$1.out rc=0
    rgpu_run "$2" "$EXAMPLES/vector_add" 4096 >"$out" 2>&1 || rc=$?
    [ "$rc" -eq 0 ] && grep -q "results checked, PASS" "$out" ||
        { cat "$out" >&2; fail "vector_add ($1) did not pass (status $rc)"; }
    pass "vector_add ($1): PASS"
}

# ---- 1. --max-sessions ---------------------------------------------------
MAX=4
CONNS=8
start_server lim --max-sessions "$MAX" --hello-timeout 60 --metrics 127.0.0.1:0
base_threads=$(threads_of "$lim_PID")
python3 "$HOLD" "$lim_ADDR" "$CONNS" $((CONNS - MAX)) "$E2E_TMP/hold1.status" \
    "$E2E_TMP/hold1.release" &
track_pid $! "hold.py (max-sessions)"
wait_file "$E2E_TMP/hold1.status" 30
read -r status <"$E2E_TMP/hold1.status"
[ "$status" = "connected=$CONNS closed=$((CONNS - MAX)) full=$((CONNS - MAX))" ] ||
    fail "with --max-sessions $MAX and $CONNS connections: $status"
pass "$CONNS connections, --max-sessions $MAX: $status"
wait_metric "$lim_METRICS" rgpu_server_sessions_active "$MAX" 10
[ "$(metric "$lim_METRICS" rgpu_server_connections_refused_total)" = $((CONNS - MAX)) ] ||
    fail "rgpu_server_connections_refused_total is not $((CONNS - MAX))"
threads=$(threads_of "$lim_PID")
[ "$threads" -le $((base_threads + 2 * MAX + 4)) ] ||
    fail "$threads threads with $MAX sessions held (it had $base_threads idle)"
pass "threads: $threads with $MAX sessions held ($base_threads idle)"
# A real client while it is full is told why.
rc=0
rgpu_run "$lim_ADDR" "$EXAMPLES/vector_add" 16 >"$E2E_TMP/full.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "vector_add passed while the server was full"
pass "vector_add while full: status $rc ($(grep -m1 -o 'server full[^"]*' "$E2E_TMP/full.out" || echo 'no reason printed'))"
log_full=$(grep -c "server full" "$lim_LOG" || true)
[ "$log_full" -le 5 ] || fail "$log_full 'server full' log lines for $((CONNS - MAX + 1)) refusals"
touch "$E2E_TMP/hold1.release"
wait_metric "$lim_METRICS" rgpu_server_sessions_active 0 20
run_vector_add "after the held sessions left" "$lim_ADDR"

# ---- 3. metrics: malformed requests, the connection bound --------------------
python3 - "$lim_METRICS" <<'EOF' || fail "the metrics endpoint mishandled a request (above)"
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
def ask(req, want):
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(req)
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    s.close()
    line = got.split(b"\r\n", 1)[0].decode(errors="replace")
    if not line.startswith("HTTP/1.0 %d" % want):
        sys.exit("request %r: answered %r, expected %d" % (req[:40], line, want))
    print("[server_limits] ok: request %r answered %s" % (req[:40], line))
ask(b"GET /metrics HTTP/1.0\r\n\r\n", 200)
ask(b"GET /metrics\x00 HTTP/1.0\r\n\r\n", 400)
ask(b"\x00\x00\x00\x00\r\n\r\n", 400)
ask(b"GET /metrics HTTP/1.0\r\nX: a\x00b\r\n\r\n", 400)
ask(b"garbage\r\n\r\n", 400)
ask(b"POST /metrics HTTP/1.0\r\n\r\n", 405)
ask(b"GET /" + b"a" * 5000 + b" HTTP/1.0\r\n\r\n", 400)
# 16 idle connections fill the endpoint; the 17th is closed unanswered.
idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(16)]
extra = socket.create_connection((host, int(port)), timeout=10)
try:
    extra.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
    got = extra.recv(100)
except (ConnectionResetError, BrokenPipeError):
    got = b""
if got:
    sys.exit("a 17th metrics connection was answered: %r" % got[:40])
print("[server_limits] ok: a 17th metrics connection was closed unanswered")
# The idle ones are closed by their time limit (5 s), then it answers again.
start = time.time()
for s in idle:
    s.settimeout(20)
    if s.recv(100) != b"":
        sys.exit("an idle metrics connection got data")
took = time.time() - start
if took > 15:
    sys.exit("idle metrics connections were closed after %.1f s" % took)
print("[server_limits] ok: idle metrics connections closed after %.1f s" % took)
ask(b"GET /metrics HTTP/1.0\r\n\r\n", 200)
EOF

# ---- 3b. SIGTERM with an idle metrics connection open --------------------------
python3 - "$lim_METRICS" "$E2E_TMP/idle.ready" "$E2E_TMP/idle.eof" <<'EOF' &
import os, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=30)
open(sys.argv[2], "w").close()
try:
    s.recv(100)
except OSError:
    pass
with open(sys.argv[3] + ".tmp", "w") as f:
    f.write("%.3f\n" % time.time())
os.rename(sys.argv[3] + ".tmp", sys.argv[3])
EOF
track_pid $! "idle metrics client"
wait_file "$E2E_TMP/idle.ready" 20
sent=$(date +%s.%N)
stop_server lim
wait_file "$E2E_TMP/idle.eof" 10
python3 -c 'import sys; d = float(sys.argv[2]) - float(sys.argv[1]); print("%.2f" % d); sys.exit(d > 4)' \
    "$sent" "$(cat "$E2E_TMP/idle.eof")" >"$E2E_TMP/idle.delay" ||
    fail "the idle metrics connection was closed $(cat "$E2E_TMP/idle.delay") s after SIGTERM"
pass "SIGTERM with an idle metrics connection: exited, connection closed after $(cat "$E2E_TMP/idle.delay") s"

# ---- 2. out of descriptors -------------------------------------------------------
start_server emf --hello-timeout 60
# New descriptors get the lowest free number: leave a few above those open.
top=$(ls "/proc/$emf_PID/fd" | sort -n | awk '$1 < 200' | tail -n1)
limit=$((top + 1 + 12))
prlimit --pid "$emf_PID" --nofile="$limit:$limit" || fail "prlimit failed"
e2e_log "rgpu-server emf: RLIMIT_NOFILE $limit (highest descriptor $top)"
python3 "$HOLD" "$emf_ADDR" 40 0 "$E2E_TMP/hold2.status" "$E2E_TMP/hold2.release" &
track_pid $! "hold.py (flood)"
wait_file "$E2E_TMP/hold2.status" 30
# Two reports of the failing accept are a second apart at least: it kept
# failing that long. The old server wrote some 37,000 lines a second.
deadline=$((SECONDS + 30))
until [ "$(grep -c 'accept failed' "$emf_LOG" || true)" -ge 2 ]; do
    kill -0 "$emf_PID" 2>/dev/null || fail "rgpu-server emf died during the flood"
    [ "$SECONDS" -lt "$deadline" ] || fail "no two 'accept failed' reports within 30 s"
    sleep 0.1
done
lines=$(wc -l <"$emf_LOG")
[ "$lines" -le 100 ] || fail "the log has $lines lines after the descriptor flood"
pass "descriptor flood: $(grep -c 'accept failed' "$emf_LOG") accept reports, $lines log lines"
touch "$E2E_TMP/hold2.release"
run_vector_add "after the flood" "$emf_ADDR"
stop_server emf

# ---- 4. the handshake deadline -----------------------------------------------
# A connection that says nothing, and one that sends half a header, are
# closed once --hello-timeout passes (the server checks every second), with
# a SessionError saying why; the server still serves.
start_server hto --hello-timeout 2
python3 - "$hto_ADDR" <<'PYEOF' || fail "the handshake deadline did not hold (above)"
import socket, struct, sys, time
host, port = sys.argv[1].rsplit(":", 1)
socks = []
for partial in (b"", b"RGPU\x01\x00"):
    s = socket.create_connection((host, int(port)))
    s.sendall(partial)
    socks.append(s)
start = time.monotonic()
for i, s in enumerate(socks):
    s.settimeout(max(0.1, 15 - (time.monotonic() - start)))
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        print("connection %d still open after %.1f s" % (i, time.monotonic() - start))
        sys.exit(1)
    took = time.monotonic() - start
    if took < 1.5:
        print("connection %d closed after %.1f s, before the 2 s deadline" % (i, took))
        sys.exit(1)
    if b"handshake" not in data:
        print("connection %d closed without saying why: %r" % (i, data[:200]))
        sys.exit(1)
    print("connection %d closed after %.1f s with its reason" % (i, took))
PYEOF
grep -q "no handshake within 2 s" "$hto_LOG" || fail "the server log does not say why it closed them"
pass "silent and half-sent connections closed at the 2 s handshake deadline"
run_vector_add "after the handshake deadline" "$hto_ADDR"
stop_server hto
