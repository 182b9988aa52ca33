#!/usr/bin/env bash
# rgpu-scheduler under 50 concurrent allocation clients (issue 3), with its
# cluster key; fake GPU servers registered by sched_peer (the real
# scheduler protocol, signed):
#   - unsigned, tampered and skewed requests refused with the reason; users
#     without the key may alloc and release by id, not name a Slurm job;
#   - heartbeats with sessions: `rgpu servers` / `rgpu sessions`, and the
#     reply's leases follow renewals and releases;
#   - 16 servers x 4 GPUs, 50 clients x 100 rounds of alloc 2 / hold / release:
#     no GPU granted to two holders at once (sched_peer checks each grant
#     against the GPUs held right then), none in two exclusive leases in any
#     `rgpu --json leases` snapshot taken meanwhile, every refusal has a
#     reason, and at the end no lease is left;
#   - (issue 11) listings carry no token; without the key, renew and release
#     by id need one of the lease's tokens; heartbeat replies are signed,
#     echo the heartbeat's nonce and name the leases that ended;
#   - (issue 11) --max-connections, --idle-timeout (a partial frame does not
#     hold a connection), and accepts out of descriptors pause instead of
#     spinning;
#   - the scheduler SIGKILLed in the middle of such a stream and restarted on
#     its database: every lease granted and not released is still there, no
#     GPU in two leases, and lease ids are not handed out twice.
source "$(dirname "$0")/lib.sh" "$@"

PEER=$E2E_BIN/sched_peer
[ -x "$PEER" ] || fail "no $PEER in this build"

# check_snapshot FILE: no GPU in two exclusive leases of one `rgpu --json leases`.
check_snapshot() {
    python3 - "$1" <<'EOF'
import json, sys
seen = {}
for lease in json.load(open(sys.argv[1])):
    if lease.get("shared"):
        continue
    for g in lease["gpus"]:
        key = (g["server"], g["index"])
        if key in seen:
            sys.exit("GPU %s/%s in leases %s and %s" % (key[0], key[1], seen[key], lease["id"]))
        seen[key] = lease["id"]
EOF
}

start_scheduler --heartbeat-timeout 300   # the fake servers heartbeat only when told
export RGPU_KEY=$KEY    # rgpu_cli signs with it
"$PEER" "$SCHED" "$KEY" register 16 4 || fail "sched_peer could not register 16 fake servers"
[ "$(rgpu_cli --json gpus | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" -eq 64 ] ||
    fail "the scheduler does not list 64 GPUs"
pass "16 fake servers x 4 GPUs registered (signed)"

# Who may ask what, with the cluster key (docs/scheduler.md, "Authentication").
drain_says() {   # drain_says MODE... EXPECTED: a drain of server 16, its reply
    local expect=${*: -1} got
    got=$("$PEER" "$SCHED" "${@:1:$#-1}") || fail "sched_peer drain ${*:1:$#-1}: no reply"
    [ "$got" = "$expect" ] || fail "drain ${*:1:$#-1}: \"$got\", expected \"$expect\""
}
drain_says - drain 127.0.0.1:20016 "status -206: request not signed: drain needs the cluster key"
drain_says "$KEY" drain 127.0.0.1:20016 bad "status -206: drain refused: bad signature"
drain_says "$KEY" drain 127.0.0.1:20016 skew 75 "status -206: drain refused: clock skew 75 s"
drain_says "$KEY" drain 127.0.0.1:20016 skew -75 "status -206: drain refused: clock skew 75 s"
"$PEER" "$SCHED" - register 1 1 2>"$E2E_TMP/reg.err" && fail "an unsigned register was accepted"
grep -q "request not signed: register needs the cluster key" "$E2E_TMP/reg.err" ||
    fail "unsigned register: $(cat "$E2E_TMP/reg.err")"
[ "$(rgpu_cli --json servers | python3 -c 'import json,sys; print(sum(s["drained"] for s in json.load(sys.stdin)))')" -eq 0 ] ||
    fail "a refused drain drained a server"
drain_says "$KEY" drain 127.0.0.1:20016 "status 0: "
rgpu_cli resume 127.0.0.1:20016 || fail "rgpu --key resume"
# A user without the key: alloc and release by id yes, anything naming a job no.
nokey=(env -u RGPU_KEY "$RGPU_BIN" --scheduler "$SCHED")
if [ -r /etc/rgpu/cluster.key ]; then
    e2e_log "/etc/rgpu/cluster.key is readable here: the CLI would sign; unsigned CLI checks left out"
else
    json=$("${nokey[@]}" --json alloc -n 1) || fail "an unsigned alloc without a job was refused: $json"
    lid=$(json_get id <<<"$json")
    tok=$(json_get token <<<"$json")
    # The lease's id is not enough: renew and release need its token.
    for cmd in "renew $lid" "release $lid"; do
        rc=0
        "${nokey[@]}" $cmd 2>"$E2E_TMP/owner.err" || rc=$?
        [ "$rc" -eq 1 ] && grep -q "${cmd%% *} refused: lease $lid: no token" "$E2E_TMP/owner.err" ||
            fail "an unsigned $cmd without the token: status $rc, $(cat "$E2E_TMP/owner.err")"
    done
    other=$("${nokey[@]}" --json alloc -n 1) || fail "alloc: $other"
    rc=0
    "${nokey[@]}" --token "$(json_get token <<<"$other")" renew "$lid" 2>"$E2E_TMP/owner.err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q "renew refused: lease $lid: the token is of lease $(json_get id <<<"$other")" "$E2E_TMP/owner.err" ||
        fail "renew with another lease's token: status $rc, $(cat "$E2E_TMP/owner.err")"
    "${nokey[@]}" --token "$(json_get token <<<"$other")" release "$(json_get id <<<"$other")" >/dev/null ||
        fail "release with its own token was refused"
    renewed=$("${nokey[@]}" --json --token "$tok" renew "$lid" 60) || fail "renew with the token: $renewed"
    [ "$(json_get token <<<"$renewed")" != "$tok" ] || fail "a renewal gave no fresh token"
    # The first token is still unexpired: it still proves the lease.
    RGPU_LEASE_TOKEN=$tok "${nokey[@]}" release "$lid" || fail "an unsigned release by id with its token was refused"
    pass "without the key: renew and release by id need a token of that lease (not another's)"
    rc=0
    "${nokey[@]}" alloc -n 1 --job j1 2>"$E2E_TMP/job.err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q "request not signed: alloc needs the cluster key" "$E2E_TMP/job.err" ||
        fail "an unsigned alloc --job: status $rc, $(cat "$E2E_TMP/job.err")"
    json=$(rgpu_cli --json alloc -n 1 --job j1) || fail "a signed alloc --job was refused: $json"
    rgpu_cli release "$(json_get id <<<"$json")"
    pass "without the key: alloc and release by id (with the token) allowed; alloc naming a job refused"
fi
pass "drain: unsigned, bad signature, clock skew refused with the reason; signed accepted; unsigned register refused"

# Heartbeats with sessions: listed by rgpu servers / rgpu sessions; the reply
# names the server's live leases with their current expiry.
json=$(rgpu_cli --json alloc -n 1 --ttl 100) || fail "alloc: $json"
lid=$(json_get id <<<"$json")
srv=$(json_get gpus.server <<<"$json")
hb=$("$PEER" "$SCHED" "$KEY" heartbeat "$srv" "$lid" x86_64 aarch64 x86_64) || fail "heartbeat: $hb"
grep -q "^lease $lid $(json_get expires_unix <<<"$json")\$" <<<"$hb" || fail "heartbeat reply: $hb"
rgpu_cli servers
rgpu_cli servers | grep -q "^$srv .* 3 (x86_64, aarch64) " || fail "rgpu servers: no SESSIONS 3 (x86_64, aarch64)"
rgpu_cli sessions
[ "$(rgpu_cli sessions | grep -c "^$srv .* $lid ")" -eq 3 ] || fail "rgpu sessions does not list 3 sessions of lease $lid"
[ "$(rgpu_cli --json sessions | python3 -c 'import json,sys; print(sorted(s["client_arch"] for s in json.load(sys.stdin)))')" = "['aarch64', 'x86_64', 'x86_64']" ] ||
    fail "rgpu --json sessions"
renewed=$(rgpu_cli --json renew "$lid" 500 | json_get expires_unix)
hb=$("$PEER" "$SCHED" "$KEY" heartbeat "$srv" "$lid" x86_64) || fail "heartbeat: $hb"
grep -q "^lease $lid $renewed\$" <<<"$hb" || fail "the heartbeat reply after a renewal: $hb (expected $renewed)"
[ "$(rgpu_cli --json sessions | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" -eq 1 ] ||
    fail "the next heartbeat did not replace the sessions"
# Whoever lists (signed or not) gets no token.
rgpu_cli --json leases | grep -q '"token"' && fail "rgpu --json leases shows tokens"
rgpu_cli --json leases | grep -q "\"id\":$lid," || fail "rgpu --json leases does not list lease $lid"
rgpu_cli release "$lid"
hb=$("$PEER" "$SCHED" "$KEY" heartbeat "$srv" 0) || fail "heartbeat: $hb"
grep -q "^lease $lid " <<<"$hb" && fail "a released lease is still in the heartbeat reply"
grep -q "^ended $lid\$" <<<"$hb" || fail "the heartbeat reply does not name released lease $lid as ended: $hb"
pass "heartbeat sessions listed (rgpu servers/sessions, --json); the reply (signed, nonce echoed) carries renewals, drops releases and names them ended; listings carry no token"

# 50 clients; snapshots of the leases while they run.
out=$E2E_TMP/load.out
"$PEER" "$SCHED" "$KEY" load 50 100 2 >"$out" 2>&1 &
load_pid=$!
track_pid "$load_pid" sched_peer "$out"
snaps=0
while kill -0 "$load_pid" 2>/dev/null; do
    if rgpu_cli --json leases >"$E2E_TMP/snap.json" 2>"$E2E_TMP/snap.err"; then
        check_snapshot "$E2E_TMP/snap.json" || fail "a snapshot holds a GPU twice"
        snaps=$((snaps + 1))
    fi
done
rc=0
wait "$load_pid" || rc=$?
cat "$out"
[ "$rc" -eq 0 ] || fail "sched_peer load: status $rc"
granted=$(sed -n 's/^granted \([0-9]*\) refused \([0-9]*\) failures 0$/\1/p' "$out")
refused=$(sed -n 's/^granted \([0-9]*\) refused \([0-9]*\) failures 0$/\2/p' "$out")
[ -n "$granted" ] && [ "$granted" -gt 0 ] || fail "no allocation granted"
[ $((granted + refused)) -eq 5000 ] || fail "$granted granted + $refused refused != 5000 requests"
[ "$(rgpu_cli --json leases)" = "[]" ] || { rgpu_cli leases; fail "leases left after the load"; }
pass "50 clients, 5000 allocations: $granted granted, $refused refused with a reason, no GPU twice ($snaps snapshots), all released"

# SIGKILL in the middle of a stream, restart on the same database.
journal=$E2E_TMP/journal
: >"$journal"
SCHED_PEER_JOURNAL=$journal "$PEER" "$SCHED" "$KEY" load 50 100000 2 >"$E2E_TMP/kill.out" 2>&1 &
load_pid=$!
track_pid "$load_pid" sched_peer "$E2E_TMP/kill.out"
deadline=$((SECONDS + 30))
while [ "$(grep -c '^released' "$journal" || true)" -lt 500 ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "fewer than 500 releases within 30 s"
    sleep 0.05
done
kill -KILL "$SCHED_PID"
wait "$SCHED_PID" 2>/dev/null || true
wait "$load_pid" 2>/dev/null || true     # its clients lose the scheduler: an error is expected
e2e_log "killed rgpu-scheduler after $(grep -c '^granted' "$journal") grants"
start_scheduler --heartbeat-timeout 300   # the fake servers heartbeat only when told
rgpu_cli --json leases >"$E2E_TMP/after.json" || fail "rgpu leases after the restart"
check_snapshot "$E2E_TMP/after.json" || fail "after the restart a GPU is in two leases"
python3 - "$journal" "$E2E_TMP/after.json" <<'EOF' || fail "leases lost or made up over the SIGKILL"
import json, sys
seen = {"granted": set(), "releasing": set(), "released": set()}
for line in open(sys.argv[1]):
    what, lid = line.split()
    seen[what].add(int(lid))
alive = {l["id"] for l in json.load(open(sys.argv[2]))}
# A release sent but not acknowledged may or may not have happened.
lost = seen["granted"] - seen["releasing"] - alive
if lost:
    sys.exit("granted, never released, gone after the restart: %s" % sorted(lost))
back = seen["released"] & alive
if back:
    sys.exit("released (acknowledged) yet alive after the restart: %s" % sorted(back))
# A lease committed whose reply the kill cut off: at most one per client.
unknown = alive - seen["granted"]
if len(unknown) > 50:
    sys.exit("%d leases alive that no client was granted: %s" % (len(unknown), sorted(unknown)))
print("%d granted, %d released, %d alive after the restart (%d granted as the kill came)" %
      (len(seen["granted"]), len(seen["released"]), len(alive), len(unknown)))
EOF
# Room for one more lease: release one that survived.
some=$(python3 -c 'import json,sys; l=json.load(open(sys.argv[1])); print(l[0]["id"] if l else 0)' "$E2E_TMP/after.json")
[ "$some" -eq 0 ] || rgpu_cli release "$some" >/dev/null || fail "release $some after the restart"
maxid=$(python3 -c 'import json,sys; print(max([l["id"] for l in json.load(open(sys.argv[1]))] + [0]))' "$E2E_TMP/after.json")
maxid=$(awk -v m="$maxid" '$1 == "granted" && $2 > m {m = $2} END {print m + 0}' "$journal")
json=$(rgpu_cli --json alloc -n 1) || fail "alloc after the restart: $json"
newid=$(json_get id <<<"$json")
[ "$newid" -gt "$maxid" ] || fail "lease id $newid handed out again (ids granted up to $maxid)"
pass "SIGKILL mid-stream: no lease lost or duplicated; the next id is $newid > $maxid"

# --require-signed: every unsigned request refused, list included.
kill -TERM "$SCHED_PID"
wait "$SCHED_PID" 2>/dev/null || true
start_scheduler --heartbeat-timeout 300 --require-signed
rc=0
env -u RGPU_KEY "$RGPU_BIN" --scheduler "$SCHED" servers 2>"$E2E_TMP/list.err" || rc=$?
if [ -r /etc/rgpu/cluster.key ]; then
    e2e_log "/etc/rgpu/cluster.key is readable here: the CLI signs; the unsigned list check is left out"
else
    [ "$rc" -eq 1 ] && grep -q "request not signed: list needs the cluster key" "$E2E_TMP/list.err" ||
        fail "an unsigned list under --require-signed: status $rc, $(cat "$E2E_TMP/list.err")"
fi
[ "$(rgpu_cli servers | awk 'NR > 1' | wc -l)" -eq 16 ] || fail "a signed list under --require-signed"
"$PEER" "$SCHED" "$KEY" load 5 10 1 >/dev/null || fail "signed clients under --require-signed"
pass "--require-signed: unsigned list refused with the reason, signed requests served"

# Connections: --max-connections, --idle-timeout, EMFILE.
kill -TERM "$SCHED_PID"
wait "$SCHED_PID" 2>/dev/null || true
start_scheduler --max-connections 4 --idle-timeout 2
python3 - "$SCHED" <<'EOF' || fail "connection limit / idle timeout"
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
addr = (host, int(port))
held = [socket.create_connection(addr) for _ in range(4)]
held[0].sendall(b"\x52\x47")   # a partial frame header: no complete request
time.sleep(0.3)
extra = socket.create_connection(addr)
extra.settimeout(5)
if extra.recv(1) != b"":
    sys.exit("a fifth connection was served past --max-connections 4")
# The four are closed by the idle timeout (2 s), the partial one included.
deadline = time.time() + 10
for s in held:
    s.settimeout(max(0.1, deadline - time.time()))
    try:
        if s.recv(1) != b"":
            sys.exit("an idle connection got data")
    except socket.timeout:
        sys.exit("an idle connection was not closed within 10 s")
EOF
grep -q "connections open (--max-connections): closed 1 new" "$SCHED_LOG" || fail "no log line for the refused connection"
grep -q "no complete request for 2 s (a partial one buffered); closing" "$SCHED_LOG" || fail "no log line for the idle partial frame"
rgpu_cli servers >/dev/null || fail "the scheduler does not serve after its connections were closed"
pass "--max-connections 4: the fifth closed at once (logged); --idle-timeout 2 closes idle and partial-frame connections"

# Out of descriptors: accepting pauses (no spin), warnings at most once a second.
kill -TERM "$SCHED_PID"
wait "$SCHED_PID" 2>/dev/null || true
out=$E2E_TMP/emfile.stdout
(ulimit -n 32; exec "$SCHED_BIN" --listen 127.0.0.1:0 --db "$E2E_TMP/emfile.db" --key "$KEY" \
     --log-level debug >"$out" 2>"$E2E_TMP/emfile.log") &
em_pid=$!
track_pid "$em_pid" rgpu-scheduler "$E2E_TMP/emfile.log"
wait_for_line "$out" "listening on" 30 "$em_pid"
em_addr=$(sed -n 's/^rgpu-scheduler listening on //p' "$out")
python3 - "$em_addr" "$em_pid" <<'EOF' || fail "out of descriptors"
import os, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
pid = sys.argv[2]
def cpu():
    f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
socks = [socket.create_connection((host, int(port))) for _ in range(60)]
c0 = cpu()
time.sleep(3)
used = cpu() - c0
if used > 1.0:
    sys.exit("the scheduler used %.2f s of CPU in 3 s out of descriptors: it spins" % used)
for s in socks:
    s.close()
print("cpu %.2f s in 3 s out of descriptors" % used)
EOF
n=$(grep -c "cannot accept connections: Too many open files" "$E2E_TMP/emfile.log" || true)
[ "$n" -ge 1 ] && [ "$n" -le 5 ] || fail "$n EMFILE warnings in about 3 s (expected 1 to 5)"
deadline=$((SECONDS + 10))
until "$RGPU_BIN" --scheduler "$em_addr" servers >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "the scheduler does not serve again once descriptors are free"
    sleep 0.2
done
kill -TERM "$em_pid"
pass "out of descriptors: accepting paused ($n warnings in 3 s, no spin), serving again afterwards"
