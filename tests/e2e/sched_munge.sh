#!/usr/bin/env bash
# Users are who they say they are (issue 11): rgpu-scheduler --auth munge
# against a real munged started here (own key, socket, pid file, log under
# the test's directory) and two real users, root and nobody (setpriv).
# nobody allocates in its own name only and sees only its lease; it cannot
# renew, release (clear reason), drain, or name a Slurm job; root and an
# operator (--operators daemon) see everything; a lease's token still
# proves it; a credential made for another request, a replayed one and a
# request without one are refused; a client whose munged is gone says so.
# Needs root (munged, setpriv) and munge installed: else skipped (77),
# except under CI where it fails.
source "$(dirname "$0")/lib.sh" "$@"

skip() {
    if [ -n "${CI:-}" ]; then
        fail "$* (CI: not skipped)"
    fi
    echo "[$E2E_NAME] SKIP: $*"
    exit 77
}
[ "$(id -u)" -eq 0 ] || skip "needs root (munged, setpriv)"
for p in munged munge setpriv python3; do
    command -v "$p" >/dev/null || skip "no $p (apt-get install munge util-linux python3)"
done
id nobody >/dev/null 2>&1 && id daemon >/dev/null 2>&1 || skip "no users nobody and daemon"
NOGROUP=$(id -gn nobody)
SCHED_BIN=$BUILD/scheduler/rgpu-scheduler
[ -x "$SCHED_BIN" ] && [ -x "$BUILD/scheduler/rgpu" ] || fail "no rgpu-scheduler or rgpu in $BUILD/scheduler"
# Read whole first: `--help | grep -q` under pipefail fails when grep exits
# at the match before --help's second write (SIGPIPE).
help=$("$SCHED_BIN" --help)
grep -q -- "--auth" <<<"$help" || fail "rgpu-scheduler has no --auth option"

# Other users must reach the socket and run the CLI: the build tree under
# /work may be closed to them, so the CLI is copied here, mode 755.
chmod 755 "$E2E_TMP"
M=$E2E_TMP/munge
mkdir -p "$M/sock" "$M/etc" "$E2E_TMP/bin"
chmod 755 "$M" "$M/sock" "$E2E_TMP/bin"
chmod 700 "$M/etc"
dd if=/dev/urandom bs=1024 count=1 of="$M/etc/munge.key" status=none
chmod 400 "$M/etc/munge.key"
SOCK=$M/sock/munge.sock
munged --force --socket="$SOCK" --key-file="$M/etc/munge.key" --pid-file="$M/munged.pid" \
    --log-file="$M/munged.log" --seed-file="$M/munged.seed" ||
    fail "munged did not start: $(tail -n 5 "$M/munged.log" 2>/dev/null)"
track_pid "$(cat "$M/munged.pid")" munged "$M/munged.log"
deadline=$((SECONDS + 10))
until munge -S "$SOCK" -n >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] || fail "munged does not answer at $SOCK within 10 s"
    sleep 0.1
done
install -m 755 "$BUILD/scheduler/rgpu" "$E2E_TMP/bin/rgpu"
RGPU=$E2E_TMP/bin/rgpu
e2e_log "munged (pid $(cat "$M/munged.pid")) on $SOCK"

# --auth munge needs the key (servers sign with it); a bad --auth value is refused.
rc=0
"$SCHED_BIN" --auth munge --db "$E2E_TMP/x.db" 2>"$E2E_TMP/nokey.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q "needs --key" "$E2E_TMP/nokey.err" || fail "--auth munge without --key: status $rc, $(cat "$E2E_TMP/nokey.err")"
rc=0
"$SCHED_BIN" --auth maybe 2>"$E2E_TMP/badauth.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q "expected none, key or munge" "$E2E_TMP/badauth.err" || fail "--auth maybe: status $rc"
"$SCHED_BIN" --print-config --auth munge --key /dev/null | grep -q "^auth = munge .*# command line" ||
    fail "--print-config does not show --auth"

start_scheduler --auth munge --munge-socket "$SOCK" --operators daemon --heartbeat-timeout 300
"$E2E_BIN/sched_peer" "$SCHED" "$KEY" register 2 2 >/dev/null || fail "sched_peer register"

# as USER CMD...: CMD as USER (its own uid, gid, no other groups, a clean
# environment but for the scheduler, munged's socket and the token).
as() {
    local user=$1
    shift
    if [ "$user" = root ]; then
        env -i PATH=/usr/bin:/bin RGPU_SCHEDULER="$SCHED" RGPU_MUNGE_SOCKET="$SOCK" \
            ${TOK:+RGPU_LEASE_TOKEN=$TOK} ASAN_OPTIONS="${ASAN_OPTIONS:-}" "$@"
    else
        setpriv --reuid="$user" --regid="$(id -gn "$user")" --clear-groups \
            env -i PATH=/usr/bin:/bin RGPU_SCHEDULER="$SCHED" RGPU_MUNGE_SOCKET="$SOCK" USER=root \
            ${TOK:+RGPU_LEASE_TOKEN=$TOK} ASAN_OPTIONS="${ASAN_OPTIONS:-}" "$@"
    fi
}
TOK=""
# expect_refused PATTERN USER ARGS...: rgpu ARGS as USER exits 1 saying PATTERN.
expect_refused() {
    local pattern=$1 user=$2 rc=0
    shift 2
    as "$user" "$RGPU" "$@" >"$E2E_TMP/refused.out" 2>&1 || rc=$?
    [ "$rc" -eq 1 ] && grep -q -- "$pattern" "$E2E_TMP/refused.out" ||
        fail "rgpu $* as $user: status $rc (expected 1 and \"$pattern\"): $(cat "$E2E_TMP/refused.out")"
}

# No credential: refused, and the CLI says munged cannot be reached.
rc=0
env -i PATH=/usr/bin:/bin RGPU_MUNGE_SOCKET="$M/sock/gone.sock" "$RGPU" --scheduler "$SCHED" leases \
    >"$E2E_TMP/nomunge.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] && grep -q "request not authenticated: list needs a MUNGE credential" "$E2E_TMP/nomunge.out" &&
    grep -q "carried no MUNGE credential: munged cannot be reached at $M/sock/gone.sock" "$E2E_TMP/nomunge.out" ||
    fail "a request without a credential: status $rc, $(cat "$E2E_TMP/nomunge.out")"
pass "unauthenticated request refused; the CLI says munged cannot be reached"

# nobody allocates (claiming USER=root in its environment: the credential decides).
json=$(as nobody "$RGPU" --json alloc -n 1) || fail "nobody: alloc: $json"
N1=$(json_get id <<<"$json")
N1_TOK=$(json_get token <<<"$json")
[ "$(json_get user <<<"$json")" = nobody ] || fail "nobody's lease is in the name of $(json_get user <<<"$json")"
json=$(as root "$RGPU" --json alloc -n 1) || fail "root: alloc: $json"
R1=$(json_get id <<<"$json")
R1_TOK=$(json_get token <<<"$json")
[ "$(json_get user <<<"$json")" = root ] || fail "root's lease is in the name of $(json_get user <<<"$json")"
pass "nobody got lease $N1 in its own name, root lease $R1"

ids() {     # ids USER: the lease ids USER lists, comma-separated
    as "$1" "$RGPU" --json leases 2>"$E2E_TMP/ids.err" |
        python3 -c 'import json,sys; print(",".join(str(l["id"]) for l in json.load(sys.stdin)))'
}
[ "$(ids nobody)" = "$N1" ] || fail "nobody lists leases $(ids nobody), expected only $N1"
grep -q "only the leases of nobody (uid 65534, MUNGE) are listed" "$E2E_TMP/ids.err" ||
    fail "the CLI did not say the listing is nobody's: $(cat "$E2E_TMP/ids.err")"
[ "$(ids root)" = "$N1,$R1" ] || fail "root lists leases $(ids root), expected $N1,$R1"
[ "$(ids daemon)" = "$N1,$R1" ] || fail "operator daemon lists leases $(ids daemon), expected $N1,$R1"
as nobody "$RGPU" --json gpus | python3 -c '
import json, sys
held = sorted(l for g in json.load(sys.stdin) for l in g["leases"])
sys.exit(0 if held == [int(sys.argv[1])] else "nobody sees GPU leases %s" % held)' "$N1" ||
    fail "nobody's GPU listing names other leases"
pass "nobody lists only lease $N1; root and the operator list both"

expect_refused "release refused: lease $R1 belongs to root (uid 0), not to nobody (uid 65534, MUNGE)" \
    nobody release "$R1"
expect_refused "renew refused: lease $R1 belongs to root" nobody renew "$R1" 60
expect_refused "drain refused: nobody (uid 65534, MUNGE) is not root or an operator" \
    nobody drain 127.0.0.1:20001
expect_refused "naming a Slurm job needs the cluster key or root" nobody alloc -n 1 --job 42
[ "$(ids root)" = "$N1,$R1" ] || fail "a refused request changed the leases: $(ids root)"
pass "nobody cannot release or renew root's lease, drain, or name a job (clear reasons)"

as nobody "$RGPU" renew "$N1" 120 >/dev/null || fail "nobody cannot renew its own lease"
as daemon "$RGPU" drain 127.0.0.1:20002 || fail "the operator cannot drain"
as daemon "$RGPU" resume 127.0.0.1:20002 || fail "the operator cannot resume"
# The token proves a lease whoever holds it; the key still signs for root components.
TOK=$R1_TOK as nobody "$RGPU" release "$R1" || fail "nobody holding lease $R1's token cannot release it"
as nobody "$RGPU" release "$N1" || fail "nobody cannot release its own lease"
"$RGPU" --scheduler "$SCHED" --key "$KEY" alloc -n 1 --job 77 >/dev/null || fail "a signed alloc --job"
"$RGPU" --scheduler "$SCHED" --key "$KEY" leases | grep -q " 77 " || fail "the key does not list the job's lease"
"$E2E_BIN/sched_peer" "$SCHED" "$KEY" drain 127.0.0.1:20001 | grep -q "^status 0" || fail "a key-signed drain"
"$E2E_BIN/sched_peer" "$SCHED" "$KEY" drain 127.0.0.1:20001 unsigned | grep -q "not authenticated" ||
    fail "an unsigned drain was not refused as unauthenticated"
pass "own renew and release, the operator drains, a token proves a lease, the key still signs"

# Credentials bound to their request: one made for another body, or used
# twice, is refused. Frames by hand: header, body, the credential as bulk.
# Frames by hand speak this source tree's protocol version.
PROTO_VERSION=$(sed -n 's/^#define RGPU_PROTOCOL_VERSION *\([0-9]*\)u*$/\1/p' \
    "$(dirname "$0")/../../transport/include/rgpu/frame.h")
[ -n "$PROTO_VERSION" ] || fail "no RGPU_PROTOCOL_VERSION in transport/include/rgpu/frame.h"
python3 - "$SCHED" "$SOCK" "$PROTO_VERSION" <<'PY' || fail "credential binding / replay"
import hashlib, socket, struct, subprocess, sys
host, port = sys.argv[1].rsplit(":", 1)
sock_path = sys.argv[2]
version = int(sys.argv[3])
ALLOC, LEASE_REPLY = 302, 351

def digest(t, seq, body):
    return hashlib.blake2b(b"rgpu-sched-request-v1" + struct.pack("<HI", t, seq) + body,
                           digest_size=32).digest()

def cred(payload):
    out = subprocess.run(["munge", "-S", sock_path], input=payload, capture_output=True, check=True)
    return out.stdout.strip()

def call(t, body, bulk, seq=1):
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(struct.pack("<IHHIIQQ", 0x55504752, version, t, 0, len(body), seq, len(bulk)) + body + bulk)
    data = b""
    while len(data) < 32:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("the scheduler closed the connection")
        data += chunk
    blen = struct.unpack("<I", data[12:16])[0]
    while len(data) < 32 + blen:
        data += s.recv(65536)
    s.close()
    body, status, reason, i = data[32:32 + blen], 0, "", 0
    while i < len(body):            # fields 1 (status, varint) and 2 (reason) of the reply
        key = body[i]; i += 1
        if key & 7 == 0:
            v = shift = 0
            while True:
                b = body[i]; i += 1
                v |= (b & 0x7F) << shift; shift += 7
                if not b & 0x80:
                    break
            if key >> 3 == 1:
                status = v - (1 << 64) if v >= 1 << 63 else v
        elif key & 7 == 2:
            n = shift = 0
            while True:
                b = body[i]; i += 1
                n |= (b & 0x7F) << shift; shift += 7
                if not b & 0x80:
                    break
            if key >> 3 == 2:
                reason = body[i:i + n].decode()
            i += n
        else:
            sys.exit("unexpected wire type in the reply")
    return status, reason

one, two = b"\x08\x01", b"\x08\x02"      # AllocRequest{count: 1}, {count: 2}
st, why = call(ALLOC, two, cred(digest(ALLOC, 1, one)))
if st == 0 or "made for another request" not in why:
    sys.exit("a credential made for count=1 sent with count=2: status %d, %r" % (st, why))
st, why = call(ALLOC, one, cred(digest(ALLOC, 7, one)), seq=1)
if st == 0 or "made for another request" not in why:
    sys.exit("a credential made for seq 7 sent with seq 1: status %d, %r" % (st, why))
c = cred(digest(ALLOC, 1, one))
st, why = call(ALLOC, one, c)
if st != 0:
    sys.exit("a well-bound credential was refused: %d %r" % (st, why))
st, why = call(ALLOC, one, c)
if st == 0 or ("eplayed" not in why and "used before" not in why):
    sys.exit("a replayed credential: status %d, %r" % (st, why))
print("binding and replay: refused as they should be")
PY
grep -q "the credential was made for another request" "$SCHED_LOG" || fail "no reason logged for a misbound credential"
pass "a credential made for another request, and one used twice, are refused"

kill -TERM "$SCHED_PID"
rc=0
wait "$SCHED_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "rgpu-scheduler exited with status $rc after SIGTERM"
pass "scheduler stopped cleanly"
