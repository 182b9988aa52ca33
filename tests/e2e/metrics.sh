#!/usr/bin/env bash
# Both daemons' Prometheus endpoints while real traffic flows: a scheduler
# with a server registered, a lease granted (vector_add runs on it through
# the ICD) and allocations refused for each reason the test can cause; the
# server after the program ran. Each counter must have moved by what the
# test did, every histogram must be well formed (cumulative buckets,
# _count equal to the +Inf bucket), and rgpu-scheduler --metrics must
# refuse a bad address.
source "$(dirname "$0")/lib.sh" "$@"

SCHED_BIN=$BUILD/scheduler/rgpu-scheduler
RGPU_BIN=$BUILD/scheduler/rgpu
[ -x "$SCHED_BIN" ] && [ -x "$RGPU_BIN" ] || fail "no rgpu-scheduler or rgpu in $BUILD/scheduler"

KEY=$E2E_TMP/cluster.key
head -c 32 /dev/urandom >"$KEY"
chmod 600 "$KEY"

# scrape ADDR FILE: the endpoint's text into FILE.
scrape() {
    python3 -c 'import sys, urllib.request
sys.stdout.write(urllib.request.urlopen("http://%s/metrics" % sys.argv[1], timeout=5).read().decode())' \
        "$1" >"$2" || fail "cannot scrape http://$1/metrics"
}

# val FILE SERIES: the value of one series, written as exposed
# (name{label="v",...}); fails when it is missing.
val() {
    local v
    v=$(awk -v key="$2" '$1 == key {print $2}' "$1")
    [ -n "$v" ] || fail "no series $2 in ${1##*/}"
    echo "$v"
}

# delta BEFORE AFTER SERIES: how much a counter moved.
delta() {
    echo $(($(val "$2" "$3") - $(val "$1" "$3")))
}

# histograms_ok FILE: every histogram's buckets are cumulative over
# ascending bounds, end with +Inf, and its _count equals the +Inf bucket.
histograms_ok() {
    python3 - "$1" <<'PY' || fail "malformed histograms in ${1##*/}"
import re, sys
types, series = {}, {}
for line in open(sys.argv[1]):
    if line.startswith("# TYPE "):
        _, _, name, kind = line.split()
        types[name] = kind
        continue
    if line.startswith("#") or not line.strip():
        continue
    key, value = line.rsplit(" ", 1)
    series[key] = float(value)
hists = [n for n, k in types.items() if k == "histogram"]
assert hists, "no histogram exposed"
for name in hists:
    groups = {}
    for key, value in series.items():
        m = re.fullmatch(re.escape(name) + r'_bucket\{(.*?),?le="([^"]+)"\}', key)
        if m:
            groups.setdefault(m.group(1), []).append((float(m.group(2)), value))
    assert groups, "%s has no buckets" % name
    for labels, buckets in groups.items():
        brace = "{%s}" % labels if labels else ""
        buckets.sort()
        assert buckets[-1][0] == float("inf"), "%s{%s}: no +Inf bucket" % (name, labels)
        counts = [c for _, c in buckets]
        assert counts == sorted(counts), "%s{%s}: buckets not cumulative" % (name, labels)
        count = series[name + "_count" + brace]
        assert count == counts[-1], "%s{%s}: _count %d != +Inf %d" % (name, labels, count, counts[-1])
        assert series[name + "_sum" + brace] >= 0
print("histograms ok: %s" % ", ".join(hists))
PY
}

# A bad --metrics address is refused before anything starts.
rc=0
"$SCHED_BIN" --listen 127.0.0.1:0 --db "$E2E_TMP/bad.db" --metrics nonsense 2>"$E2E_TMP/bad.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q -- "--metrics.*expected HOST:PORT" "$E2E_TMP/bad.err" ||
    fail "--metrics nonsense: status $rc, $(cat "$E2E_TMP/bad.err")"
pass "rgpu-scheduler --metrics nonsense: refused with a reason"

out=$E2E_TMP/sched.stdout
: >"$out"
"$SCHED_BIN" --listen 127.0.0.1:0 --db "$E2E_TMP/sched.db" --key "$KEY" --metrics 127.0.0.1:0 \
    --log-level debug >"$out" 2>"$E2E_TMP/sched.log" &
SCHED_PID=$!
track_pid "$SCHED_PID" rgpu-scheduler "$E2E_TMP/sched.log"
wait_for_line "$out" "^rgpu-scheduler listening on " 30 "$SCHED_PID"
SCHED=$(sed -n 's/^rgpu-scheduler listening on \([^ ]*\)$/\1/p' "$out")
SCHED_METRICS=$(sed -n 's/^rgpu-scheduler metrics on \([^ ]*\)$/\1/p' "$out")
[ -n "$SCHED_METRICS" ] || fail "rgpu-scheduler printed no 'metrics on' line"
e2e_log "rgpu-scheduler on $SCHED, metrics on $SCHED_METRICS"

start_server s1 --key "$KEY" --scheduler "$SCHED" --metrics 127.0.0.1:0

rgpu() {
    "$RGPU_BIN" --scheduler "$SCHED" --key "$KEY" "$@"
}

# The server is up once the scheduler's gauge says so.
deadline=$((SECONDS + 20))
while scrape "$SCHED_METRICS" "$E2E_TMP/s0.prom" &&
      [ "$(val "$E2E_TMP/s0.prom" 'rgpu_scheduler_servers{state="up"}')" != 1 ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "rgpu_scheduler_servers{state=\"up\"} not 1 within 20 s"
    sleep 0.1
done
S0=$E2E_TMP/s0.prom
NGPUS=$(val "$S0" 'rgpu_scheduler_gpus{state="free"}')
[ "$NGPUS" -ge 1 ] || fail "the registered server has no free GPU"
[ "$(val "$S0" 'rgpu_scheduler_servers{state="down"}')" = 0 ] || fail "a server is down"
[ "$(val "$S0" 'rgpu_scheduler_request_duration_seconds_count{type="register"}')" -ge 1 ] ||
    fail "the server's registration was not timed"
pass "scheduler: 1 server up, $NGPUS GPUs free, its registration timed"
scrape "$s1_METRICS" "$E2E_TMP/v0.prom"
V0=$E2E_TMP/v0.prom

# A lease on every GPU: vector_add runs on it; meanwhile one more GPU is
# refused (none left), and the gauges show the lease.
N=1000
OCL_ICD_VENDORS=$ICD_DIR rgpu alloc -n "$NGPUS" -- sh -c '
    "$1" "$2" || exit 10
    "$3" --scheduler "$4" --key "$5" alloc -n 1 -- true 2>"$7/refused.err" && exit 11
    python3 -c "import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(\"http://%s/metrics\" % sys.argv[1], timeout=5).read().decode())" \
        "$6" >"$7/during.prom"' sh "$EXAMPLES/vector_add" "$N" "$RGPU_BIN" "$SCHED" "$KEY" \
    "$SCHED_METRICS" "$E2E_TMP" >"$E2E_TMP/alloc.out" 2>&1 || {
    cat "$E2E_TMP/alloc.out" "$E2E_TMP/refused.err" 2>/dev/null
    fail "rgpu alloc -n $NGPUS -- (vector_add, a refused allocation, a scrape) failed"
}
grep -q "results checked, PASS" "$E2E_TMP/alloc.out" || fail "vector_add under the lease did not PASS"
D=$E2E_TMP/during.prom
[ "$(val "$D" 'rgpu_scheduler_leases{mode="exclusive",state="active"}')" = 1 ] ||
    fail "while held: rgpu_scheduler_leases{mode=\"exclusive\",state=\"active\"} is not 1"
[ "$(val "$D" 'rgpu_scheduler_gpus{state="exclusive"}')" = "$NGPUS" ] ||
    fail "while held: rgpu_scheduler_gpus{state=\"exclusive\"} is not $NGPUS"
[ "$(val "$D" 'rgpu_scheduler_gpus{state="free"}')" = 0 ] || fail "while held: free GPUs left"
pass "while the lease is held: 1 exclusive lease active, $NGPUS GPUs exclusive, 0 free"

# Refused for being out of bounds: a ttl above --max-lease-ttl (7 days).
rgpu alloc -n 1 --ttl 31536000 -- true 2>"$E2E_TMP/ttl.err" && fail "a ttl of a year was granted"
grep -q "max-lease-ttl" "$E2E_TMP/ttl.err" || fail "ttl refusal: $(cat "$E2E_TMP/ttl.err")"
# Refused for want of the key: naming a Slurm job needs it.
NOT_AUTHORIZED=0
if [ -r /etc/rgpu/cluster.key ]; then
    e2e_log "/etc/rgpu/cluster.key is readable here: the CLI signs; the not_authorized refusal is left out"
else
    env -u RGPU_KEY "$RGPU_BIN" --scheduler "$SCHED" alloc -n 1 --job metrics-job -- true \
        2>"$E2E_TMP/nokey.err" && fail "an unsigned allocation for a Slurm job was granted"
    NOT_AUTHORIZED=1
fi

scrape "$SCHED_METRICS" "$E2E_TMP/s1.prom"
S1=$E2E_TMP/s1.prom
[ "$(delta "$S0" "$S1" rgpu_scheduler_allocations_total)" = 1 ] ||
    fail "rgpu_scheduler_allocations_total moved by $(delta "$S0" "$S1" rgpu_scheduler_allocations_total), not 1"
for expect in no_capacity:1 invalid_request:1 not_authorized:$NOT_AUTHORIZED store_error:0 other:0; do
    reason=${expect%%:*} n=${expect#*:}
    d=$(delta "$S0" "$S1" "rgpu_scheduler_allocation_refusals_total{reason=\"$reason\"}")
    [ "$d" = "$n" ] || fail "refusals{reason=\"$reason\"} moved by $d, expected $n"
done
allocs=$((2 + 1 + NOT_AUTHORIZED))
d=$(delta "$S0" "$S1" 'rgpu_scheduler_request_duration_seconds_count{type="alloc"}')
[ "$d" = "$allocs" ] || fail "alloc requests timed: $d, the test made $allocs"
[ "$(delta "$S0" "$S1" 'rgpu_scheduler_lease_ends_total{reason="released"}')" = 1 ] ||
    fail "rgpu_scheduler_lease_ends_total{reason=\"released\"} did not move by 1"
[ "$(delta "$S0" "$S1" 'rgpu_scheduler_request_duration_seconds_count{type="release"}')" = 1 ] ||
    fail "the release was not timed once"
[ "$(val "$S1" 'rgpu_scheduler_leases{mode="exclusive",state="active"}')" = 0 ] ||
    fail "the released lease is still counted"
[ "$(val "$S1" 'rgpu_scheduler_gpus{state="free"}')" = "$NGPUS" ] || fail "GPUs not free again"
histograms_ok "$S1"
pass "scheduler: 1 allocation, refusals no_capacity 1, invalid_request 1, not_authorized $NOT_AUTHORIZED; $allocs alloc requests timed; 1 release"

# The server after vector_add (N floats per buffer): one session; buffer a
# created with its contents, b written, 4 arguments and a launch, 1 read.
# Every call is counted; the first of each family in a session is timed
# (then one in 16), so each family here has exactly one timed call.
scrape "$s1_METRICS" "$E2E_TMP/v1.prom"
V1=$E2E_TMP/v1.prom
bytes=$((N * 4))
fam() {     # fam SERIES FAMILY: delta of a per-family series
    delta "$V0" "$V1" "$1{family=\"$2\"}"
}
[ "$(delta "$V0" "$V1" rgpu_server_sessions_total)" = 1 ] || fail "not one session on the server"
[ "$(fam rgpu_server_calls_total session)" = 1 ] || fail "not one hello counted"
[ "$(fam rgpu_server_calls_total kernel)" = 5 ] ||
    fail "kernel calls counted: $(fam rgpu_server_calls_total kernel), vector_add made 5"
[ "$(fam rgpu_server_calls_total read)" = 1 ] || fail "not one read counted"
[ "$(fam rgpu_server_calls_total write)" = 1 ] || fail "not one write counted"
for family in session kernel read write create; do
    [ "$(fam rgpu_server_call_duration_seconds_count $family)" = 1 ] ||
        fail "$family calls timed: $(fam rgpu_server_call_duration_seconds_count $family), expected the first one only"
done
[ "$(fam rgpu_server_call_bulk_bytes_count write)" = 1 ] &&
    [ "$(fam rgpu_server_call_bulk_bytes_sum write)" = "$bytes" ] ||
    fail "write bulk: $(fam rgpu_server_call_bulk_bytes_count write) calls, $(fam rgpu_server_call_bulk_bytes_sum write) bytes; expected 1 of $bytes"
[ "$(fam rgpu_server_call_bulk_bytes_count create)" = 1 ] &&
    [ "$(fam rgpu_server_call_bulk_bytes_sum create)" = "$bytes" ] ||
    fail "create bulk: $(fam rgpu_server_call_bulk_bytes_count create) calls, $(fam rgpu_server_call_bulk_bytes_sum create) bytes; expected 1 of $bytes"
[ "$(fam rgpu_server_call_bulk_bytes_count read)" = 0 ] || fail "a read carried bulk in"
# 4000 bytes: the (1024, 4096] bucket.
[ "$(delta "$V0" "$V1" 'rgpu_server_call_bulk_bytes_bucket{family="write",le="1024"}')" = 0 ] &&
    [ "$(delta "$V0" "$V1" 'rgpu_server_call_bulk_bytes_bucket{family="write",le="4096"}')" = 1 ] ||
    fail "the write of $bytes bytes is not in the le=\"4096\" bucket"
histograms_ok "$V1"
pass "server: 1 session, 1 hello, 5 kernel calls, 1 write and 1 read counted, the first of each family timed; $bytes bytes in by create and by write"

# The dashboard and the documentation name exactly what the daemons export.
DOCS=$(cd "$(dirname "$0")/../../docs" && pwd)
python3 - "$S1" "$V1" "$DOCS/observability.md" "$DOCS/grafana/rgpu.json" <<'PY' ||
import json, re, sys
exported = set()
for path in sys.argv[1:3]:
    for line in open(path):
        if line.startswith("# TYPE "):
            exported.add(line.split()[2])
def family(name):   # a histogram's series name its family
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[:-len(suffix)] in exported:
            return name[:-len(suffix)]
    return name
doc = open(sys.argv[3]).read()
documented = set(re.findall(r"^\| `(rgpu_[a-z_]+)` \|", doc, re.M))
dash = json.load(open(sys.argv[4]))
used = {family(n) for p in dash["panels"] for t in p.get("targets", [])
        for n in re.findall(r"\brgpu_[a-z_]+", t["expr"])}
errors = ["exported but not in observability.md's tables: %s" % n for n in sorted(exported - documented)]
errors += ["documented but not exported: %s" % n for n in sorted(documented - exported)]
errors += ["the dashboard uses %s, which neither daemon exports" % n for n in sorted(used - exported)]
errors += ["the dashboard shows nothing of %s" % n for n in sorted(exported - used)]
if errors:
    sys.exit("\n".join(errors))
print("%d metrics exported, all documented and on the dashboard" % len(exported))
PY
    fail "docs/observability.md or docs/grafana/rgpu.json disagree with the endpoints"
pass "docs/observability.md and docs/grafana/rgpu.json name exactly the exported metrics"

stop_server s1
kill -TERM "$SCHED_PID"
wait "$SCHED_PID" || fail "rgpu-scheduler exited with status $? after SIGTERM (metrics endpoint open)"
pass "both daemons stop cleanly with their endpoints open"
