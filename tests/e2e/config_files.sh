#!/usr/bin/env bash
# A scheduler, servers and clients configured only by their files
# (scheduler.conf, server.conf, client.conf: docs/configuration.md), named
# by --config or the RGPU_*CONFIG variables: a lease from the scheduler runs
# vector_add on a server that checks tokens; the ICD finds an insecure
# server from client.conf alone; a server listens on two addresses from one
# list; --print-config says FILE:LINE; a bad file stops each program with
# its file, line and key.
source "$(dirname "$0")/lib.sh" "$@"
require_build
SCHED_BIN=$BUILD/scheduler/rgpu-scheduler
RGPU_BIN=$BUILD/scheduler/rgpu
[ -x "$SCHED_BIN" ] && [ -x "$RGPU_BIN" ] || fail "no rgpu-scheduler or rgpu in $BUILD/scheduler"
# Nothing from the caller's environment may configure what this test runs.
unset RGPU_SERVERS RGPU_LEASE_TOKEN RGPU_SCHEDULER RGPU_KEY RGPU_LISTEN RGPU_CONFIG \
    RGPU_SERVER_CONFIG RGPU_SCHEDULER_CONFIG RGPU_TRANSPORT RGPU_SCHED_DB

KEY=$E2E_TMP/cluster.key
head -c 32 /dev/urandom >"$KEY"
chmod 600 "$KEY"

# wait_listening OUT PID PROGRAM: the first "PROGRAM listening on ADDR" line's ADDR.
wait_listening() {
    local out=$1 pid=$2 prog=$3 deadline=$((SECONDS + 60)) addr=""
    while [ -z "$addr" ]; do
        addr=$(sed -n "s/^$prog listening on \([^ ]*\)\$/\1/p" "$out" | head -n1)
        [ -n "$addr" ] && break
        kill -0 "$pid" 2>/dev/null || fail "$prog exited before listening"
        [ "$SECONDS" -lt "$deadline" ] || fail "$prog printed no address within 60 s"
        sleep 0.05
    done
    echo "$addr"
}

# --- the scheduler, from --config ---
cat >"$E2E_TMP/scheduler.conf" <<EOF
# rgpu-scheduler for the test
[scheduler]
listen = 127.0.0.1:0
db = $E2E_TMP/sched.db
key = $KEY
lease-ttl = 600
EOF
"$SCHED_BIN" --config "$E2E_TMP/scheduler.conf" --print-config >"$E2E_TMP/sched.print"
grep -q "^lease-ttl = 600 .*# $E2E_TMP/scheduler.conf:6\$" "$E2E_TMP/sched.print" ||
    fail "rgpu-scheduler --print-config does not name scheduler.conf:6: $(cat "$E2E_TMP/sched.print")"
grep -q "^heartbeat-timeout = 15 .*# default\$" "$E2E_TMP/sched.print" ||
    fail "rgpu-scheduler --print-config: heartbeat-timeout is not the default"
pass "rgpu-scheduler --print-config names scheduler.conf:LINE for the file's values"
: >"$E2E_TMP/sched.out"
"$SCHED_BIN" --config "$E2E_TMP/scheduler.conf" >"$E2E_TMP/sched.out" 2>"$E2E_TMP/sched.log" &
SCHED_PID=$!
track_pid "$SCHED_PID" rgpu-scheduler "$E2E_TMP/sched.log"
SCHED=$(wait_listening "$E2E_TMP/sched.out" "$SCHED_PID" rgpu-scheduler)
pass "rgpu-scheduler configured by scheduler.conf listens on $SCHED"

# --- a server that checks leases, from RGPU_SERVER_CONFIG, on two addresses ---
cat >"$E2E_TMP/server.conf" <<EOF
[server]
# Two listeners from one list: the second goes on an indented line.
listen = tcp://127.0.0.1:0,
    127.0.0.1:0
key = $KEY
scheduler = $SCHED
max-sessions = 16
EOF
: >"$E2E_TMP/srv.out"
RGPU_SERVER_CONFIG=$E2E_TMP/server.conf OCL_ICD_VENDORS=$POCL_ICD \
    LSAN_OPTIONS="$E2E_SERVER_LSAN${LSAN_OPTIONS:+:$LSAN_OPTIONS}" \
    "$SERVER_BIN" >"$E2E_TMP/srv.out" 2>"$E2E_TMP/srv.log" &
SRV_PID=$!
track_pid "$SRV_PID" "rgpu-server (server.conf)" "$E2E_TMP/srv.log"
SRV=$(wait_listening "$E2E_TMP/srv.out" "$SRV_PID" rgpu-server)
deadline=$((SECONDS + 30))
until [ "$(grep -c '^rgpu-server listening on ' "$E2E_TMP/srv.out")" -eq 2 ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "rgpu-server did not print two listening lines: $(cat "$E2E_TMP/srv.out")"
    sleep 0.05
done
SRV2=$(sed -n 's/^rgpu-server listening on \([^ ]*\)$/\1/p' "$E2E_TMP/srv.out" | sed -n 2p)
pass "rgpu-server configured by server.conf listens on $SRV and $SRV2"

# --- the CLI and the ICD, from client.conf (RGPU_CONFIG) ---
cat >"$E2E_TMP/client.conf" <<EOF
[client]
scheduler = $SCHED
timeout = 5
transport = tcp
EOF
# The server registers asynchronously: wait until the scheduler lists it.
deadline=$((SECONDS + 30))
until RGPU_CONFIG=$E2E_TMP/client.conf "$RGPU_BIN" servers 2>/dev/null | grep -q "$SRV"; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the scheduler in client.conf does not list $SRV"
    sleep 0.1
done
RGPU_CONFIG=$E2E_TMP/client.conf OCL_ICD_VENDORS=$ICD_DIR \
    "$RGPU_BIN" alloc -n 1 -- "$EXAMPLES/vector_add" 4096 >"$E2E_TMP/alloc.out" 2>&1 ||
    fail "rgpu alloc -- vector_add with client.conf: $(cat "$E2E_TMP/alloc.out")"
grep -q 'results checked, PASS$' "$E2E_TMP/alloc.out" && grep -q '^platform: rgpu$' "$E2E_TMP/alloc.out" || fail "vector_add under the lease: $(cat "$E2E_TMP/alloc.out")"
pass "rgpu alloc (scheduler from client.conf) ran vector_add on the leased server"

# The same command with no configuration at all reaches the default
# scheduler, not this one: client.conf did the work above.
"$RGPU_BIN" --config= --timeout 0.5 --scheduler 127.0.0.1:1 servers >/dev/null 2>&1 &&
    fail "rgpu reached a scheduler at 127.0.0.1:1"

# An insecure server from its file, and the ICD finding it from client.conf's servers.
cat >"$E2E_TMP/open.conf" <<EOF
[server]
listen = 127.0.0.1:0
insecure = yes
EOF
: >"$E2E_TMP/open.out"
OCL_ICD_VENDORS=$POCL_ICD LSAN_OPTIONS="$E2E_SERVER_LSAN${LSAN_OPTIONS:+:$LSAN_OPTIONS}" \
    "$SERVER_BIN" --config "$E2E_TMP/open.conf" >"$E2E_TMP/open.out" 2>"$E2E_TMP/open.log" &
OPEN_PID=$!
track_pid "$OPEN_PID" "rgpu-server (open.conf)" "$E2E_TMP/open.log"
OPEN=$(wait_listening "$E2E_TMP/open.out" "$OPEN_PID" rgpu-server)
cat >"$E2E_TMP/icd.conf" <<EOF
[client]
servers = $OPEN
connect-timeout-ms = 5000
EOF
RGPU_CONFIG=$E2E_TMP/icd.conf OCL_ICD_VENDORS=$ICD_DIR "$EXAMPLES/vector_add" 4096 \
    >"$E2E_TMP/icd.out" 2>&1 || fail "vector_add with servers from client.conf: $(cat "$E2E_TMP/icd.out")"
grep -q 'results checked, PASS$' "$E2E_TMP/icd.out" && grep -q '^platform: rgpu$' "$E2E_TMP/icd.out" ||
    fail "vector_add with servers from client.conf did not run on rgpu: $(cat "$E2E_TMP/icd.out")"
pass "the ICD reached $OPEN from client.conf's servers alone"

# transport = verbs takes verbs:// addresses only: a TCP one is refused
# with the reason, not used silently; RGPU_TRANSPORT overrides the file.
printf 'transport = verbs\n' >>"$E2E_TMP/icd.conf"
rc=0
RGPU_CONFIG=$E2E_TMP/icd.conf OCL_ICD_VENDORS=$ICD_DIR "$EXAMPLES/vector_add" 1024 \
    >"$E2E_TMP/verbs.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] && grep -q "transport = verbs, but the server $OPEN offers no verbs:// address" \
    "$E2E_TMP/verbs.out" || fail "transport = verbs with a TCP server: status $rc, $(cat "$E2E_TMP/verbs.out")"
RGPU_TRANSPORT=tcp RGPU_CONFIG=$E2E_TMP/icd.conf OCL_ICD_VENDORS=$ICD_DIR "$EXAMPLES/vector_add" 1024 \
    >"$E2E_TMP/verbs.out" 2>&1 || fail "RGPU_TRANSPORT=tcp over the file's verbs: $(cat "$E2E_TMP/verbs.out")"
pass "transport = verbs refuses a TCP-only server with the reason; RGPU_TRANSPORT=tcp wins over it"

# --- bad files: file, line and key, status 2, nothing started ---
printf '[server]\nlisten = 127.0.0.1:0\nlistne = 127.0.0.1:0\n' >"$E2E_TMP/bad.conf"
rc=0
"$SERVER_BIN" --config "$E2E_TMP/bad.conf" --insecure 2>"$E2E_TMP/bad.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q "$E2E_TMP/bad.conf:3: unknown key 'listne' in \[server\]" "$E2E_TMP/bad.err" ||
    fail "rgpu-server with an unknown key: status $rc, $(cat "$E2E_TMP/bad.err")"
pass "rgpu-server: $(cat "$E2E_TMP/bad.err")"
printf '[scheduler]\nlease-ttl = 10\nlease-ttl = 20\n' >"$E2E_TMP/bad.conf"
rc=0
"$SCHED_BIN" --config "$E2E_TMP/bad.conf" 2>"$E2E_TMP/bad.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q "bad.conf:3: duplicate key 'lease-ttl' in \[scheduler\] (first set on line 2)" \
    "$E2E_TMP/bad.err" || fail "rgpu-scheduler with a duplicate key: status $rc, $(cat "$E2E_TMP/bad.err")"
pass "rgpu-scheduler: $(cat "$E2E_TMP/bad.err")"
printf '[client]\ntimeout = 10x\n' >"$E2E_TMP/bad.conf"
rc=0
RGPU_CONFIG=$E2E_TMP/bad.conf "$RGPU_BIN" servers 2>"$E2E_TMP/bad.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q "bad.conf:2: bad value \"10x\" for 'timeout' in \[client\]" "$E2E_TMP/bad.err" ||
    fail "rgpu with a bad number: status $rc, $(cat "$E2E_TMP/bad.err")"
pass "rgpu: $(cat "$E2E_TMP/bad.err")"
# The ICD lives in someone else's program: a bad file costs its devices and
# a warning naming the line, never the program.
printf '[client]\nservers = %s\nserver = x\n' "$OPEN" >"$E2E_TMP/bad.conf"
rc=0
RGPU_CONFIG=$E2E_TMP/bad.conf OCL_ICD_VENDORS=$ICD_DIR "$EXAMPLES/vector_add" 1024 \
    >"$E2E_TMP/bad.out" 2>&1 || rc=$?
grep -q "bad.conf:3: unknown key 'server' in \[client\]" "$E2E_TMP/bad.out" ||
    fail "the ICD with a bad client.conf does not say why: status $rc, $(cat "$E2E_TMP/bad.out")"
[ "$rc" -ne 0 ] || fail "vector_add found devices through a bad client.conf"
pass "the ICD with a bad client.conf: no devices, and a warning naming bad.conf:3"
rc=0
"$SERVER_BIN" --config "$E2E_TMP/missing.conf" --insecure 2>"$E2E_TMP/bad.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q "cannot read the configuration file .*missing.conf" "$E2E_TMP/bad.err" ||
    fail "rgpu-server with a missing --config file: status $rc, $(cat "$E2E_TMP/bad.err")"
pass "rgpu-server: $(cat "$E2E_TMP/bad.err")"

# The commented files installed under /etc/rgpu (etc/) parse, and name
# every key of their program (commented out or not).
SRC=$(cd "$(dirname "$0")/../.." && pwd)
for entry in "$SERVER_BIN:server.conf" "$SCHED_BIN:scheduler.conf" "$RGPU_BIN:client.conf"; do
    bin=${entry%%:*} file=$SRC/etc/${entry#*:}
    OCL_ICD_VENDORS=$POCL_ICD "$bin" --config "$file" --print-config >"$E2E_TMP/example.out" \
        2>"$E2E_TMP/example.err" || fail "$bin --config $file: $(cat "$E2E_TMP/example.err")"
    grep -q "# $file:" "$E2E_TMP/example.out" &&
        fail "$file sets a value; the example should only show the defaults, commented out"
    for key in $(sed -n 's/^\([a-z-]*\) = .*/\1/p' "$E2E_TMP/example.out"); do
        grep -q "^#\?$key =\( \|$\)" "$file" || fail "$file does not mention the key '$key'"
    done
done
pass "etc/server.conf, etc/scheduler.conf and etc/client.conf parse and name every key"

stop_server_pid() {
    kill -TERM "$1"
    wait "$1" || fail "$2 exited with status $? after SIGTERM"
}
stop_server_pid "$OPEN_PID" "rgpu-server (open.conf)"
stop_server_pid "$SRV_PID" "rgpu-server (server.conf)"
stop_server_pid "$SCHED_PID" rgpu-scheduler
pass "all stopped cleanly"
