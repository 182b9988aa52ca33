#!/usr/bin/env bash
# Scheduler replies larger than the TCP transport's eager limit (256 KiB),
# end to end on loopback (issue 13): a real rgpu-scheduler with 200 fake
# servers of 64 GPUs each (sched_peer), and the real rgpu CLI, which
# receives through rgpu_wire_recv. The list of 12800 GPUs packs to about
# 600 KiB, so the daemon must send it as MSG_FRAGMENT pieces (three) that
# the CLI puts back together; every GPU of every server must be in it,
# once. A small reply (one server's drain) still goes as one message on
# the same scheduler.
source "$(dirname "$0")/lib.sh" "$@"

NSERVERS=200
NGPUS=64

[ -x "$E2E_BIN/sched_peer" ] || fail "no $E2E_BIN/sched_peer"
start_scheduler --heartbeat-timeout 300
"$E2E_BIN/sched_peer" "$SCHED" "$KEY" register "$NSERVERS" "$NGPUS" >/dev/null ||
    fail "sched_peer could not register $NSERVERS servers"

rgpu() {
    "$RGPU_BIN" --scheduler "$SCHED" --key "$KEY" "$@"
}

rgpu --json gpus >"$E2E_TMP/gpus.json" 2>"$E2E_TMP/gpus.err" ||
    fail "rgpu gpus: $(cat "$E2E_TMP/gpus.err")"
python3 - "$E2E_TMP/gpus.json" "$NSERVERS" "$NGPUS" <<'EOF' || fail "rgpu gpus: the list is not complete"
import json, sys
gpus = json.load(open(sys.argv[1]))
nservers, ngpus = int(sys.argv[2]), int(sys.argv[3])
want = {("127.0.0.1:%d" % (20000 + s), g) for s in range(1, nservers + 1) for g in range(ngpus)}
got = [(x["server"], x["index"]) for x in gpus]
bad = [x for x in gpus if x["model"] != "fake-gpu" or x["memory"] != 8 << 30 or x["apis"] != ["opencl"]]
if len(got) != len(set(got)) or set(got) != want or bad:
    print("%d GPUs listed (%d distinct), %d expected; %d missing, %d unexpected, %d with wrong facts"
          % (len(got), len(set(got)), len(want), len(want - set(got)), len(set(got) - want), len(bad)),
          file=sys.stderr)
    sys.exit(1)
EOF
pass "rgpu gpus lists all $((NSERVERS * NGPUS)) GPUs of $NSERVERS servers (a fragmented reply)"

# The table and the server list come from the same kind of reply.
[ "$(rgpu gpus | awk 'NR > 1' | wc -l)" -eq $((NSERVERS * NGPUS)) ] ||
    fail "rgpu gpus (table) does not show $((NSERVERS * NGPUS)) rows"
rgpu servers >"$E2E_TMP/servers.txt" || fail "rgpu servers failed"
[ "$(awk -v n="$NGPUS" 'NR > 1 && $4 == n' "$E2E_TMP/servers.txt" | wc -l)" -eq "$NSERVERS" ] ||
    fail "rgpu servers does not show $NSERVERS servers of $NGPUS GPUs: $(head -3 "$E2E_TMP/servers.txt")"
pass "rgpu gpus and rgpu servers (tables) complete"

# A small reply after the large ones: the daemon still answers in one piece.
rgpu drain 127.0.0.1:20001 >"$E2E_TMP/drain.out" 2>&1 || fail "rgpu drain: $(cat "$E2E_TMP/drain.out")"
rgpu servers | awk '$1 == "127.0.0.1:20001" && $3 == "yes"' | grep -q . ||
    fail "the drained server is not shown drained"
pass "a small reply on the same scheduler"
kill -0 "$SCHED_PID" || fail "rgpu-scheduler died"
