#!/usr/bin/env bash
# The scheduler end to end, on loopback: two rgpu-servers register with
# rgpu-scheduler and check lease tokens (--key); `rgpu alloc -- vector_add`
# runs on leased GPUs and releases them at exit; clients without a token,
# with a forged one or with another server's are refused with the reason;
# the lease's memory quota holds; drain/resume; a SIGKILLed scheduler
# restarts with its servers and leases. Issue 11: unsigned renewals prove
# the lease with its token; the CLI's numbers are strict; the ttl is capped;
# a shared lease always has a quota; a released lease's token is refused;
# a scheduler impostor's heartbeat replies are ignored; a lease's quota is
# one budget across two sessions at once.
source "$(dirname "$0")/lib.sh" "$@"

SCHED_BIN=$BUILD/scheduler/rgpu-scheduler
RGPU_BIN=$BUILD/scheduler/rgpu
[ -x "$SCHED_BIN" ] && [ -x "$RGPU_BIN" ] || fail "no rgpu-scheduler or rgpu in $BUILD/scheduler"

KEY=$E2E_TMP/cluster.key
head -c 32 /dev/urandom >"$KEY"
chmod 600 "$KEY"
DB=$E2E_TMP/sched.db

# start_scheduler [LISTEN]: sets SCHED_PID, SCHED (its address).
start_scheduler() {
    local out=$E2E_TMP/sched.$RANDOM.stdout log=$E2E_TMP/sched.log deadline=$((SECONDS + 30))
    : >"$out"   # exists before the background job opens it: sed reads it at once
    "$SCHED_BIN" --listen "${1:-127.0.0.1:0}" --db "$DB" --key "$KEY" --heartbeat-timeout 4 \
        --log-level debug >"$out" 2>>"$log" &
    SCHED_PID=$!
    track_pid "$SCHED_PID" rgpu-scheduler "$log"
    SCHED=""
    while [ -z "$SCHED" ]; do
        SCHED=$(sed -n 's/^rgpu-scheduler listening on \([^ ]*\)$/\1/p' "$out" | head -n1)
        kill -0 "$SCHED_PID" 2>/dev/null || fail "rgpu-scheduler exited before listening"
        [ "$SECONDS" -lt "$deadline" ] || fail "rgpu-scheduler printed no address within 30 s"
        sleep 0.05
    done
    e2e_log "rgpu-scheduler (pid $SCHED_PID) listening on $SCHED"
}

# Signed with the cluster key: alloc --job, drain and resume need it.
rgpu() {
    "$RGPU_BIN" --scheduler "$SCHED" --key "$KEY" "$@"
}

# wait_servers_up N: until `rgpu servers` lists N servers up (20 s).
wait_servers_up() {
    local deadline=$((SECONDS + 20)) n
    while :; do
        n=$(rgpu servers | awk 'NR > 1 && $2 == "up"' | wc -l)
        [ "$n" -ge "$1" ] && break
        [ "$SECONDS" -lt "$deadline" ] || { rgpu servers >&2; fail "$1 servers not up within 20 s"; }
        sleep 0.2
    done
}

# --insecure (no leases) only on loopback; a key file others can read is refused.
rc=0
"$SERVER_BIN" --insecure --listen 0.0.0.0:0 2>"$E2E_TMP/insecure.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q "only on a loopback" "$E2E_TMP/insecure.err" ||
    fail "--insecure on 0.0.0.0: status $rc, $(cat "$E2E_TMP/insecure.err")"
cp "$KEY" "$E2E_TMP/open.key"
chmod 644 "$E2E_TMP/open.key"
rc=0
"$SCHED_BIN" --listen 127.0.0.1:0 --db "$E2E_TMP/x.db" --key "$E2E_TMP/open.key" 2>"$E2E_TMP/openkey.err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "accessible to group or others" "$E2E_TMP/openkey.err" ||
    fail "a world-readable key: status $rc, $(cat "$E2E_TMP/openkey.err")"
pass "--insecure refused off loopback; a world-readable key refused"

start_scheduler
start_server s1 --key "$KEY" --scheduler "$SCHED"
start_server s2 --key "$KEY" --scheduler "$SCHED"
wait_servers_up 2
rgpu servers
rgpu gpus
ngpus=$(rgpu --json gpus | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$ngpus" -ge 2 ] || fail "the scheduler lists $ngpus GPUs, expected at least 2"
pass "two servers registered, $ngpus GPUs listed"

# A lease of 2 GPUs spread over both servers runs vector_add and is released.
out=$E2E_TMP/alloc.out
rc=0
OCL_ICD_VENDORS=$ICD_DIR rgpu alloc -n 2 --spread -- \
    sh -c 'echo "servers=$RGPU_SERVERS lease=$RGPU_LEASE"; exec "$0" 100000' "$EXAMPLES/vector_add" \
    >"$out" 2>&1 || rc=$?
cat "$out"
[ "$rc" -eq 0 ] || fail "rgpu alloc -- vector_add exited with status $rc"
grep -q "results checked, PASS" "$out" || fail "vector_add under rgpu alloc did not PASS"
grep -q "^servers=.*,.*" "$out" || fail "RGPU_SERVERS did not name both leased servers"
[ "$(rgpu leases | wc -l)" -eq 1 ] || { rgpu leases; fail "the lease outlived its command"; }
pass "rgpu alloc -n 2 -- vector_add: PASS, lease released at exit"

# The command's exit status comes back, and a failing command releases too.
rc=0
rgpu alloc -n 1 -- sh -c 'exit 7' || rc=$?
[ "$rc" -eq 7 ] || fail "rgpu alloc returned $rc for a command that exited 7"
[ "$(rgpu leases | wc -l)" -eq 1 ] || fail "a failed command's lease was kept"
pass "exit status passed through, lease released"

# A command that outlives its lease's TTL keeps its lease: rgpu alloc renews it.
out=$E2E_TMP/renew.out
rgpu alloc -n 1 --ttl 2 --job renew-job -- sh -c 'sleep 4; "$0" --scheduler "$1" leases' "$RGPU_BIN" "$SCHED" \
    >"$out" 2>&1 || { cat "$out"; fail "rgpu alloc --ttl 2 -- (4 s) failed"; }
cat "$out"
grep -q "renew-job" "$out" || fail "a lease of 2 s was reclaimed under a 4 s command"
[ "$(rgpu leases | wc -l)" -eq 1 ] || fail "the renewed lease outlived its command"
pass "rgpu alloc renews the lease of a long command"

# Without the key the CLI proves the lease with its token: its own renewals
# and release, and `rgpu renew "$RGPU_LEASE"` inside the command.
if [ -r /etc/rgpu/cluster.key ]; then
    e2e_log "/etc/rgpu/cluster.key is readable here: the CLI signs; the unsigned renewal check is left out"
else
    out=$E2E_TMP/renew-nokey.out
    "$RGPU_BIN" --scheduler "$SCHED" alloc -n 1 --ttl 2 -- \
        sh -c 'sleep 1; "$0" --scheduler "$1" renew "$RGPU_LEASE" 30 >/dev/null && echo renewed-by-command; sleep 3' \
        "$RGPU_BIN" "$SCHED" >"$out" 2>&1 || { cat "$out"; fail "unsigned rgpu alloc --ttl 2 -- (4 s) failed"; }
    cat "$out"
    grep -q renewed-by-command "$out" || fail "the command could not renew its lease with RGPU_LEASE_TOKEN"
    grep -q "cannot renew" "$out" && fail "rgpu alloc could not renew with the lease's token"
    [ "$(rgpu leases | wc -l)" -eq 1 ] || fail "the unsigned lease outlived its command"
    pass "unsigned: rgpu alloc renews and releases with the lease's token; the command renews with RGPU_LEASE_TOKEN"
fi

# Numbers are digits within bounds, or the CLI says so and exits 2.
cli_refuses() {     # cli_refuses PATTERN ARGS...: exit 2 with PATTERN on stderr
    local pattern=$1 rc=0
    shift
    rgpu "$@" >"$E2E_TMP/cli.out" 2>&1 || rc=$?
    [ "$rc" -eq 2 ] && grep -q -- "$pattern" "$E2E_TMP/cli.out" ||
        fail "rgpu $*: status $rc (expected 2), $(cat "$E2E_TMP/cli.out")"
}
cli_refuses "--ttl -1: expected seconds, 1 to 31536000" alloc -n 1 --ttl -1
cli_refuses "--ttl abc: expected seconds" alloc -n 1 --ttl abc
cli_refuses "--ttl 5x: expected seconds" alloc -n 1 --ttl 5x
cli_refuses "--ttl 0: expected seconds" alloc -n 1 --ttl 0
cli_refuses "--ttl 4294967296: expected seconds" alloc -n 1 --ttl 4294967296
cli_refuses "-n +1: expected 1 to 4096" alloc -n +1
cli_refuses "-n 0x2: expected 1 to 4096" alloc -n 0x2
cli_refuses '"abc" is not a ttl' renew 1 abc
cli_refuses '"-5" is not a ttl' renew 1 -5
cli_refuses '"-1" is not a lease id' release -1
cli_refuses '"18446744073709551616" is not a lease id' release 18446744073709551616
cli_refuses '"0x10" is not a lease id' release 0x10
cli_refuses 'unexpected argument "2"' release 1 2
cli_refuses "--timeout 0x10: expected seconds" --timeout 0x10 servers
cli_refuses "--timeout -1: expected seconds" --timeout -1 servers
[ "$(rgpu leases | wc -l)" -eq 1 ] || { rgpu leases; fail "a refused command made a lease"; }
# The scheduler bounds the ttl itself (--max-lease-ttl, default 7 days).
rc=0
rgpu alloc -n 1 --ttl 700000 2>"$E2E_TMP/ttl.err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "the most is 604800 s (--max-lease-ttl)" "$E2E_TMP/ttl.err" ||
    fail "a ttl of 700000 s: status $rc, $(cat "$E2E_TMP/ttl.err")"
pass "the CLI refuses signs, junk and out-of-range numbers (exit 2); the scheduler caps the ttl"

# A shared lease without --mem reserves the default (1 GiB, at most the GPU's memory): its quota.
json=$(rgpu --json alloc -n 1 --shared) || fail "alloc --shared: $json"
python3 - "$json" <<'PY' || fail "shared lease without --mem: $json"
import json, sys
l = json.loads(sys.argv[1])
want = min(1 << 30, l["gpus"][0]["memory"])
if not l["shared"] or l["memory_quota"] != want or want == 0:
    sys.exit("memory_quota %d, expected %d" % (l["memory_quota"], want))
PY
[ "$(rgpu --json gpus | python3 -c 'import json,sys; print(sum(g["memory_reserved"] for g in json.load(sys.stdin)))')" -eq "$(json_get memory_quota <<<"$json")" ] ||
    fail "the shared lease reserved nothing"
rgpu release "$(json_get id <<<"$json")"
pass "a shared lease without --mem reserves $(json_get memory_quota <<<"$json") bytes, its quota"

# No token, a forged token, another server's token: refused, with the reason.
rc=0
rgpu_run "$s1_ADDR" "$EXAMPLES/vector_add" 1024 >"$E2E_TMP/notoken.out" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "vector_add without a lease token ran"
grep -q "lease refused: no lease token" "$s1_LOG" || fail "s1 did not log why it refused"
grep -q "no lease token" "$E2E_TMP/notoken.out" || { cat "$E2E_TMP/notoken.out"; fail "the client was not told why"; }
pass "no token: refused (\"no lease token\")"

token=$(rgpu alloc -n 1 --same-server --job e2e-job | sed -n 's/^RGPU_LEASE_TOKEN=//p')
[ -n "$token" ] || fail "rgpu alloc without a command printed no token"
lease_json=$(rgpu --json leases)
lease_server=$(echo "$lease_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["gpus"][0]["server"])')
lease_id=$(echo "$lease_json" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
other=$s2_ADDR
[ "$lease_server" = "$s2_ADDR" ] && other=$s1_ADDR
# Idempotent per job: the same job gets the same lease.
token2=$(rgpu alloc -n 1 --job e2e-job | sed -n 's/^RGPU_LEASE_TOKEN=//p')
[ "$token2" = "$token" ] || fail "a second alloc for the same job got another lease"
RGPU_LEASE_TOKEN=$token rgpu_run "$lease_server" "$EXAMPLES/vector_add" 1024 >/dev/null 2>&1 ||
    fail "vector_add with a valid token on its server failed"
rc=0
RGPU_LEASE_TOKEN=$token rgpu_run "$other" "$EXAMPLES/vector_add" 1024 >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "a token for $lease_server was accepted by $other"
# grep reads the logs itself: `cat A B | grep -q` under pipefail failed now
# and then (SIGPIPE to cat when grep, done at a match in A, exits first).
grep -q "names no GPU of this server" "$s1_LOG" "$s2_LOG" || fail "no 'not this GPU' reason logged"
pass "valid token accepted on its server, refused on the other"

# Change the signed payload by one bit: the lowest bit of its last byte, the
# end of a value (a varint's last byte or a string's), so the payload still
# unpacks (the client reads it to find the lease's servers) and only the
# signature can tell. (Flipping a character anywhere could break the
# protobuf, and the client then refused the token itself, before any server
# saw it.)
forged=$(python3 -c '
import base64, sys
v, body, mac = sys.argv[1].split(".")
raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
raw[-1] ^= 1
print(v + "." + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=") + "." + mac)' "$token")
rc=0
RGPU_LEASE_TOKEN=$forged rgpu_run "$lease_server" "$EXAMPLES/vector_add" 1024 >/dev/null 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "a forged token was accepted"
grep -q "bad signature" "$s1_LOG" "$s2_LOG" || fail "no 'bad signature' reason logged"
pass "forged token refused (bad signature)"

# A released lease's token opens no session, though unexpired: the
# scheduler names the lease in its next heartbeat replies as ended.
json=$(rgpu --json alloc -n 1 --ttl 600) || fail "alloc: $json"
ended_tok=$(json_get token <<<"$json")
ended_id=$(json_get id <<<"$json")
ended_srv=$(json_get gpus.server <<<"$json")
RGPU_LEASE_TOKEN=$ended_tok rgpu_run "$ended_srv" "$EXAMPLES/vector_add" 1024 >/dev/null 2>&1 ||
    fail "vector_add with lease $ended_id's token failed"
rgpu --token "$ended_tok" release "$ended_id" || fail "release $ended_id"
# (A session that opens before the server hears of it is ended once it does.)
deadline=$((SECONDS + 15))
until ! RGPU_LEASE_TOKEN=$ended_tok rgpu_run "$ended_srv" "$EXAMPLES/vector_add" 1024 \
          >"$E2E_TMP/ended.out" 2>&1 && grep -q "lease $ended_id has ended" "$E2E_TMP/ended.out"; do
    [ "$SECONDS" -lt "$deadline" ] ||
        fail "released lease $ended_id's token is not refused at the handshake 15 s later: $(cat "$E2E_TMP/ended.out")"
    sleep 0.5
done
pass "a released lease's unexpired token is refused (\"lease $ended_id has ended\")"

# A scheduler impostor (unsigned replies, or signed ones answering another
# heartbeat) is not believed: the server says so and keeps its sessions.
for mode in unsigned wrong-nonce; do
    k=-
    [ "$mode" = unsigned ] || k=$KEY
    "$E2E_BIN/sched_peer" 127.0.0.1:0 "$k" fake-scheduler "$mode" >"$E2E_TMP/fake-$mode.out" 2>&1 &
    fake_pid=$!
    track_pid "$fake_pid" sched_peer "$E2E_TMP/fake-$mode.out"
    wait_for_line "$E2E_TMP/fake-$mode.out" "listening on" 10 "$fake_pid"
    name=fake_${mode%%-*}
    start_server "$name" --key "$KEY" --scheduler "$(sed -n 's/^listening on //p' "$E2E_TMP/fake-$mode.out")"
    log_var=${name}_LOG
    pid_var=${name}_PID
    if [ "$mode" = unsigned ]; then
        want="heartbeat reply ignored: its reply is not signed with the cluster key"
    else
        want="heartbeat reply ignored: its reply answers another heartbeat (nonce)"
    fi
    wait_for_line "${!log_var}" "$want" 20 "${!pid_var}"
    grep -q "lease 1 was released" "${!log_var}" && fail "the server believed the impostor"
    stop_server "$name"
    kill "$fake_pid"
done
pass "heartbeat replies unsigned or answering another heartbeat are ignored, with a warning"

# SIGKILL the scheduler, restart it on the same port and database.
kill -KILL "$SCHED_PID"
wait "$SCHED_PID" 2>/dev/null || true
start_scheduler "$SCHED"
started=$(date +%s)
rgpu leases
grep -q "\"id\":$lease_id," <<<"$(rgpu --json leases)" || fail "lease $lease_id was lost across a SIGKILL"
[ "$(rgpu servers | awk 'NR > 1' | wc -l)" -eq 2 ] || fail "servers were lost across a SIGKILL"
token3=$(rgpu alloc -n 1 --job e2e-job | sed -n 's/^RGPU_LEASE_TOKEN=//p')
[ "$token3" = "$token" ] || fail "after the restart the job got another lease"
# Servers loaded from the database count as seen at the restart: both must
# be seen later, by a heartbeat to the new scheduler (every 2 s).
deadline=$((SECONDS + 20))
until [ "$(rgpu --json servers | python3 -c '
import json, sys
print(sum(1 for s in json.load(sys.stdin) if s["up"] and s["last_seen_unix"] > int(sys.argv[1])))' "$started")" -eq 2 ]; do
    [ "$SECONDS" -lt "$deadline" ] || { rgpu servers >&2; fail "the servers did not heartbeat the restarted scheduler within 20 s"; }
    sleep 0.2
done
pass "SIGKILLed scheduler restarted with its 2 servers and lease $lease_id"
rgpu release "$lease_id"
rc=0
rgpu release "$lease_id" 2>"$E2E_TMP/release.err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "no lease $lease_id" "$E2E_TMP/release.err" || fail "releasing twice: status $rc"
pass "release, and a clear error releasing twice"

# The lease's memory quota: 16 MiB shared; 64 MiB of buffers fail, 8 MiB work.
rc=0
OCL_ICD_VENDORS=$ICD_DIR timeout 60 "$RGPU_BIN" --scheduler "$SCHED" alloc -n 1 --shared --mem 16M -- \
    "$E2E_BIN/hold_memory" 64 8 >"$E2E_TMP/quota.out" 2>&1 || rc=$?
cat "$E2E_TMP/quota.out"
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "64 MiB of buffers under a 16 MiB quota: status $rc"
grep -q READY "$E2E_TMP/quota.out" && fail "hold_memory got 64 MiB under a 16 MiB quota"
pass "memory quota enforced (64 MiB refused under 16 MiB)"

# One budget per lease across its sessions: two clients of one 16 MiB
# lease at once; the first holds 12 MiB (READY), the second cannot get 12
# MiB more. (hold_memory sleeps once READY: the second gets a timeout, so a
# quota not enforced shows as its READY, not as a hang.)
rc=0
OCL_ICD_VENDORS=$ICD_DIR timeout 120 "$RGPU_BIN" --scheduler "$SCHED" alloc -n 1 --shared --mem 16M -- \
    bash -c '
        "$0" 12 4 >"$1/first.out" 2>&1 &
        first=$!
        deadline=$((SECONDS + 40))
        until grep -q READY "$1/first.out"; do
            kill -0 "$first" 2>/dev/null || { echo "the first client exited: $(cat "$1/first.out")"; exit 3; }
            [ "$SECONDS" -lt "$deadline" ] || { echo "the first client is not READY within 40 s"; kill "$first"; exit 3; }
            sleep 0.1
        done
        rc=0
        timeout 40 "$0" 12 4 >"$1/second.out" 2>&1 || rc=$?
        kill "$first"
        wait "$first" 2>/dev/null
        if grep -q READY "$1/second.out"; then echo "the second client got 12 MiB too"; exit 4; fi
        [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { echo "the second client: status $rc"; exit 5; }
        echo "second client refused (status $rc)"' "$E2E_BIN/hold_memory" "$E2E_TMP" \
    >"$E2E_TMP/quota2.out" 2>&1 || rc=$?
cat "$E2E_TMP/quota2.out" "$E2E_TMP/second.out" 2>/dev/null || true
[ "$rc" -eq 0 ] || fail "two sessions of one 16 MiB lease holding 12 MiB each: status $rc"
grep -q READY "$E2E_TMP/first.out" || fail "the first client of the shared lease did not get 12 MiB"
pass "one quota across a lease's sessions: 12 MiB held by one, 12 more refused to the other"

# Drain both servers: no GPU to give, a clear error and status 1; resume.
rgpu drain "$s1_ADDR"
rgpu drain "$s2_ADDR"
rc=0
rgpu alloc -n 1 2>"$E2E_TMP/drain.err" || rc=$?
[ "$rc" -eq 1 ] && grep -Eq "(is|are) free" "$E2E_TMP/drain.err" || fail "alloc on drained servers: status $rc"
rgpu resume "$s1_ADDR"
rgpu resume "$s2_ADDR"
rgpu alloc -n 1 -- true || fail "alloc after resume failed"
pass "drain refuses new leases, resume gives them again"

# A server of two devices: a lease of one shows the client that one only.
POCL_DEVICES="pthread pthread" start_server s3 --key "$KEY" --scheduler "$SCHED"
wait_servers_up 3
rgpu drain "$s1_ADDR"
rgpu drain "$s2_ADDR"
rgpu alloc -n 1 --job hold-one >/dev/null || fail "cannot lease one GPU of s3"
out=$E2E_TMP/clinfo.out
# clinfo is not ours: a sanitized build's ICD needs the ASan runtime preloaded (lib.sh's system_prog).
pre=()
if [ "$E2E_SANITIZED" = 1 ]; then
    pre=(env "LD_PRELOAD=$(gcc -print-file-name=libasan.so)" "ASAN_OPTIONS=detect_leaks=0")
fi
OCL_ICD_VENDORS=$ICD_DIR rgpu alloc -n 1 -- "${pre[@]}" sh -c 'echo "lease=$RGPU_LEASE servers=$RGPU_SERVERS"; exec clinfo -l' >"$out" 2>&1 ||
    { cat "$out"; fail "clinfo -l under a lease of one of s3's GPUs failed"; }
cat "$out"
grep -q "servers=$s3_ADDR\$" "$out" || fail "the lease is not on s3"
n=$(grep -c "Device #" "$out" || true)
[ "$n" -eq 1 ] || fail "clinfo sees $n devices under a lease of 1 (s3 has 2)"
rgpu release 0 2>/dev/null && fail "release 0 was accepted"
id=$(rgpu --json leases | python3 -c 'import json,sys; print([l["id"] for l in json.load(sys.stdin) if l["job"] == "hold-one"][0])')
rgpu release "$id"
rgpu resume "$s1_ADDR"
rgpu resume "$s2_ADDR"
pass "a lease of 1 of s3's 2 devices shows exactly 1 device"

# Garbage, an unknown message type and a truncated frame end only their own
# connection; the scheduler keeps answering.
# Frames by hand speak this source tree's protocol version.
PROTO_VERSION=$(sed -n 's/^#define RGPU_PROTOCOL_VERSION *\([0-9]*\)u*$/\1/p' \
    "$(dirname "$0")/../../transport/include/rgpu/frame.h")
[ -n "$PROTO_VERSION" ] || fail "no RGPU_PROTOCOL_VERSION in transport/include/rgpu/frame.h"
python3 - "$SCHED" "$PROTO_VERSION" <<'PY'
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
version = int(sys.argv[2])
def send(data):
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    try:
        s.recv(4096)
    except OSError:
        pass
    s.close()
hdr = lambda t, body, bulk=0: struct.pack("<IHHIIQQ", 0x55504752, version, t, 0, body, 1, bulk)
send(b"GET / HTTP/1.0\r\n\r\n" * 4)
send(hdr(399, 0))
send(hdr(302, 3) + b"\xff\xff\xff")
send(hdr(302, 100)[:20])
send(hdr(302, 0, 1 << 20))
PY
[ "$(rgpu servers | awk 'NR > 1' | wc -l)" -eq 3 ] || fail "the scheduler stopped answering after bad input"
grep -q "unknown message type 399" "$E2E_TMP/sched.log" || fail "no reason logged for an unknown type"
pass "bad input ends only its own connection"

# A server that stops heartbeating is marked down (--heartbeat-timeout 4).
stop_server s3
deadline=$((SECONDS + 15))
until rgpu servers | grep -q "^$s3_ADDR  *down"; do
    [ "$SECONDS" -lt "$deadline" ] || { rgpu servers; fail "s3 not marked down within 15 s"; }
    sleep 0.5
done
rgpu servers
pass "a silent server is marked down"

# Outputs are read whole before grep looks at them: `cmd | grep -q` under
# pipefail fails when grep, done at the first match, exits before cmd's
# last write (SIGPIPE), as --help's two writes of 4 KiB can.
help=$("$SCHED_BIN" --help)
grep -q -- "--heartbeat-timeout" <<<"$help" || fail "rgpu-scheduler --help lacks an option"
config=$("$SCHED_BIN" --print-config --lease-ttl 60)
grep -q "^lease-ttl = 60 .*# command line" <<<"$config" ||
    fail "rgpu-scheduler --print-config does not show the command line's value"
rc=0
"$SCHED_BIN" --require-signed 2>"$E2E_TMP/reqsig.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q "needs --key" "$E2E_TMP/reqsig.err" || fail "--require-signed without --key: status $rc"
rc=0
"$SCHED_BIN" --lease-ttl 0 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "rgpu-scheduler --lease-ttl 0: status $rc, expected 2"

grep -q "heartbeat reply ignored" "$s1_LOG" "$s2_LOG" && fail "a server ignored the real scheduler's replies"
stop_server s1
stop_server s2
kill -TERM "$SCHED_PID"
rc=0
wait "$SCHED_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "rgpu-scheduler exited with status $rc after SIGTERM"
pass "everything stopped cleanly"
