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
    "${nokey[@]}" release "$(json_get id <<<"$json")" || fail "an unsigned release by id was refused"
    rc=0
    "${nokey[@]}" alloc -n 1 --job j1 2>"$E2E_TMP/job.err" || rc=$?
    [ "$rc" -eq 1 ] && grep -q "request not signed: alloc needs the cluster key" "$E2E_TMP/job.err" ||
        fail "an unsigned alloc --job: status $rc, $(cat "$E2E_TMP/job.err")"
    json=$(rgpu_cli --json alloc -n 1 --job j1) || fail "a signed alloc --job was refused: $json"
    rgpu_cli release "$(json_get id <<<"$json")"
    pass "without the key: alloc and release by id allowed; alloc naming a job refused"
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
rgpu_cli release "$lid"
hb=$("$PEER" "$SCHED" "$KEY" heartbeat "$srv" 0) || fail "heartbeat: $hb"
grep -q "^lease $lid " <<<"$hb" && fail "a released lease is still in the heartbeat reply"
pass "heartbeat sessions listed (rgpu servers/sessions, --json); the reply carries renewals and drops releases"

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
