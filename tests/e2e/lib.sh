# Shared helpers of the end-to-end tests. Source it first thing:
#
#   source "$(dirname "$0")/lib.sh" "$@"      # $1: the build directory
#
# It sets BUILD, SERVER_BIN, ICD_DIR, EXAMPLES, E2E_BIN, POCL_ICD and E2E_TMP
# (a private temporary directory), and installs an EXIT trap that kills the
# processes this test started (and only those), shows their logs when the
# test failed, and removes E2E_TMP.
#
#   start_server NAME [ARGS...]   starts rgpu-server on 127.0.0.1 port 0 over
#                                 PoCL (with --insecure unless ARGS has --key); sets NAME_PID, NAME_ADDR, NAME_LOG (its
#                                 stderr) and, with --metrics, NAME_METRICS
#   stop_server NAME              SIGTERM, and expects a clean exit within 20 s
#   track_pid PID [LABEL LOG]     kill PID at exit too; show LOG on failure
#   rgpu_run SERVERS CMD...       runs CMD through rgpu (OCL_ICD_VENDORS=ICD_DIR)
#   rgpu_spawn OUT LABEL SERVERS CMD...
#                                 the same in the background, output to OUT;
#                                 sets SPAWN_PID to CMD's own pid
#   pocl_run CMD...               runs CMD on local PoCL
#   metric ADDR NAME              prints the value of one metric
#   wait_metric ADDR NAME VALUE SECONDS
#                                 waits until that metric is VALUE
#   fail MSG / pass MSG           end the test / note a passed check
#
# Under pipefail, `cmd | grep -q PATTERN` fails at random when grep exits at
# its first match before cmd's last write (cmd dies of SIGPIPE): grep files
# directly, or read the output whole first (out=$(cmd); grep -q P <<<"$out").
set -euo pipefail

E2E_NAME=$(basename "$0" .sh)
if [ $# -lt 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 BUILD_DIR" >&2
    exit 2
fi
BUILD=$(cd "$1" && pwd)
SERVER_BIN=$BUILD/server/rgpu-server
ICD_DIR=$BUILD/icd
EXAMPLES=$BUILD/examples
E2E_BIN=$BUILD/tests/e2e
POCL_ICD=${RGPU_TEST_POCL_ICD:-/etc/OpenCL/vendors/pocl.icd}
E2E_TMP=$(mktemp -d "${TMPDIR:-/tmp}/rgpu-e2e-$E2E_NAME.XXXXXX")

# Processes this test started: pid, label, log file.
E2E_PIDS=()
E2E_LABELS=()
E2E_LOGS=()

e2e_log() {
    printf '[%s %s] %s\n' "$E2E_NAME" "$(date +%H:%M:%S)" "$*"
}

fail() {
    printf '[%s] FAIL: %s\n' "$E2E_NAME" "$*" >&2
    exit 1
}

pass() {
    printf '[%s] ok: %s\n' "$E2E_NAME" "$*"
}

e2e_cleanup() {
    local rc=$? i pid
    trap - EXIT
    for i in "${!E2E_PIDS[@]}"; do
        pid=${E2E_PIDS[$i]}
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    if [ "$rc" -ne 0 ]; then
        for i in "${!E2E_PIDS[@]}"; do
            if [ -n "${E2E_LOGS[$i]}" ] && [ -s "${E2E_LOGS[$i]}" ]; then
                echo "----- last lines of ${E2E_LABELS[$i]} (${E2E_LOGS[$i]##*/}) -----" >&2
                tail -n 40 "${E2E_LOGS[$i]}" >&2
            fi
        done
        echo "[$E2E_NAME] FAILED (exit $rc)" >&2
    else
        echo "[$E2E_NAME] PASS"
    fi
    rm -rf "$E2E_TMP"
    exit "$rc"
}
trap e2e_cleanup EXIT
# A timeout (ctest) or ^C still goes through the cleanup.
trap 'exit 143' TERM
trap 'exit 130' INT

track_pid() {
    E2E_PIDS+=("$1")
    E2E_LABELS+=("${2:-pid $1}")
    E2E_LOGS+=("${3:-}")
}

# A sanitized build (build-asan) needs its runtime loaded first in programs
# that were not built with it (clinfo, clpeak), since they dlopen our
# sanitized ICD. Leak checking is off for those programs only: their own
# leaks are not ours, and our examples, built with ASan, keep it on.
E2E_SANITIZED=0
if grep -q '^RGPU_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
    E2E_SANITIZED=1
fi

# The sanitized server keeps leak checking, except for what the OpenCL
# platform's compiler (PoCL, LLVM, clang) leaks while it builds a kernel:
# those are not ours (tests/e2e/lsan-platform.supp).
E2E_SERVER_LSAN=""
if [ "$E2E_SANITIZED" = 1 ]; then
    E2E_SERVER_LSAN="suppressions=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lsan-platform.supp"
fi

# Runs a program that is not part of this build (clinfo, clpeak) through rgpu.
system_prog() {
    if [ "$E2E_SANITIZED" = 1 ]; then
        LD_PRELOAD="$(gcc -print-file-name=libasan.so)${LD_PRELOAD:+:$LD_PRELOAD}" \
            ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}" "$@"
    else
        "$@"
    fi
}

rgpu_run() {
    local servers=$1
    shift
    OCL_ICD_VENDORS=$ICD_DIR RGPU_SERVERS=$servers "$@"
}

# The command is a simple command run in the background, so bash execs it in
# the forked child and $! is the program's own pid: killing it kills the
# program, not a subshell that would leave it running.
rgpu_spawn() {
    local out=$1 label=$2 servers=$3
    shift 3
    OCL_ICD_VENDORS=$ICD_DIR RGPU_SERVERS=$servers "$@" >"$out" 2>&1 &
    SPAWN_PID=$!
    track_pid "$SPAWN_PID" "$label" "$out"
}

pocl_run() {
    OCL_ICD_VENDORS=$POCL_ICD "$@"
}

require_build() {
    [ -x "$SERVER_BIN" ] || fail "no server binary at $SERVER_BIN (build the tree first)"
    [ -f "$ICD_DIR/rgpu.icd" ] || fail "no $ICD_DIR/rgpu.icd (the client library is not built)"
    local lib
    lib=$(head -n1 "$ICD_DIR/rgpu.icd")
    [ -f "$lib" ] || fail "$ICD_DIR/rgpu.icd names $lib, which does not exist"
    [ -f "$POCL_ICD" ] || fail "PoCL is not installed ($POCL_ICD missing)"
}

# start_server NAME [ARGS...]
start_server() {
    local name=$1 out log pid addr="" metrics="" deadline
    shift
    require_build
    out=$E2E_TMP/$name.stdout
    log=$E2E_TMP/$name.log
    # Without a cluster key the server must be told to serve without leases.
    local lease_opt=(--insecure)
    case " $* " in *" --key "*) lease_opt=() ;; esac
    # Made here, so that reading it below cannot race the server's fork.
    : >"$out"
    OCL_ICD_VENDORS=$POCL_ICD LSAN_OPTIONS="$E2E_SERVER_LSAN${LSAN_OPTIONS:+:$LSAN_OPTIONS}" \
        "$SERVER_BIN" --listen 127.0.0.1:0 "${lease_opt[@]}" "$@" >"$out" 2>"$log" &
    pid=$!
    track_pid "$pid" "rgpu-server $name" "$log"
    deadline=$((SECONDS + 60))
    while :; do
        addr=$(sed -n 's/^rgpu-server listening on \([^ ]*\)$/\1/p' "$out" | head -n1)
        [ -n "$addr" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; fail "rgpu-server $name exited before listening"; }
        [ "$SECONDS" -lt "$deadline" ] || fail "rgpu-server $name did not print its port within 60 s"
        sleep 0.05
    done
    case " $* " in
    *" --metrics "*)
        metrics=$(sed -n 's/^rgpu-server metrics on \([^ ]*\)$/\1/p' "$out" | head -n1)
        [ -n "$metrics" ] || fail "rgpu-server $name was given --metrics but printed no" \
            "'rgpu-server metrics on HOST:PORT' line on stdout"
        ;;
    esac
    printf -v "${name}_PID" '%s' "$pid"
    printf -v "${name}_ADDR" '%s' "$addr"
    printf -v "${name}_LOG" '%s' "$log"
    printf -v "${name}_METRICS" '%s' "$metrics"
    e2e_log "rgpu-server $name (pid $pid) listening on $addr${metrics:+, metrics on $metrics}"
}

# stop_server NAME: a clean shutdown, as an operator would do it.
stop_server() {
    local name=$1 pid_var=${1}_PID pid rc=0 i
    pid=${!pid_var}
    kill -TERM "$pid" 2>/dev/null || fail "rgpu-server $name (pid $pid) was already gone"
    for i in $(seq 200); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        fail "rgpu-server $name did not exit within 20 s of SIGTERM"
    fi
    wait "$pid" || rc=$?
    # 0: it handled SIGTERM and exited cleanly (sanitizers found nothing).
    [ "$rc" -eq 0 ] || fail "rgpu-server $name exited with status $rc after SIGTERM"
    e2e_log "rgpu-server $name stopped cleanly"
}

# metric ADDR NAME: the value of an unlabeled metric (sum of all its series).
metric() {
    python3 - "$1" "$2" <<'EOF'
import sys, urllib.request
addr, name = sys.argv[1], sys.argv[2]
body = urllib.request.urlopen("http://%s/metrics" % addr, timeout=5).read().decode()
total, seen = 0.0, False
for line in body.splitlines():
    if line.startswith("#") or not line.strip():
        continue
    key, _, value = line.rpartition(" ")
    if key == name or key.startswith(name + "{"):
        total += float(value)
        seen = True
if not seen:
    sys.exit("metric %s not found at http://%s/metrics" % (name, addr))
print(int(total) if total.is_integer() else total)
EOF
}

# wait_metric ADDR NAME VALUE SECONDS: waits until metric NAME is VALUE;
# fails, saying what it is, once SECONDS have passed.
wait_metric() {
    local deadline=$((SECONDS + $4)) got=""
    while :; do
        got=$(metric "$1" "$2" 2>/dev/null || true)
        [ "$got" = "$3" ] && return 0
        [ "$SECONDS" -lt "$deadline" ] || fail "$2 is \"$got\", not $3, after $4 s"
        sleep 0.1
    done
}

# rss_kib PID: resident set size of a process in KiB.
rss_kib() {
    awk '/^VmRSS:/ {print $2}' "/proc/$1/status"
}

# wait_for_line FILE PATTERN SECONDS PID: waits until FILE has a line matching
# PATTERN; fails if PID exits first or time runs out.
wait_for_line() {
    local file=$1 pattern=$2 secs=$3 pid=$4 deadline=$((SECONDS + $3))
    until grep -q -- "$pattern" "$file" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; fail "pid $pid exited before printing '$pattern'"; }
        [ "$SECONDS" -lt "$deadline" ] || fail "no '$pattern' in $file within $secs s"
        sleep 0.1
    done
}

# The device name local PoCL reports, from our own example.
pocl_device_name() {
    pocl_run "$EXAMPLES/vector_add" 1024 | sed -n 's/^device: //p'
}

# start_scheduler [ARGS...]: rgpu-scheduler on 127.0.0.1 port 0 with the
# cluster key $KEY (made on first use) and its state in $E2E_TMP/sched.db;
# sets SCHED (its address), SCHED_PID and SCHED_LOG. rgpu_cli runs the
# `rgpu` command against it.
start_scheduler() {
    local out=$E2E_TMP/sched.$RANDOM.stdout deadline=$((SECONDS + 30))
    SCHED_BIN=$BUILD/scheduler/rgpu-scheduler
    RGPU_BIN=$BUILD/scheduler/rgpu
    [ -x "$SCHED_BIN" ] && [ -x "$RGPU_BIN" ] || fail "no rgpu-scheduler or rgpu in $BUILD/scheduler"
    if [ -z "${KEY:-}" ]; then
        KEY=$E2E_TMP/cluster.key
        head -c 32 /dev/urandom >"$KEY"
        chmod 600 "$KEY"
    fi
    SCHED_LOG=$E2E_TMP/sched.log
    : >"$out"
    "$SCHED_BIN" --listen 127.0.0.1:0 --db "$E2E_TMP/sched.db" --key "$KEY" --log-level debug "$@" \
        >"$out" 2>>"$SCHED_LOG" &
    SCHED_PID=$!
    track_pid "$SCHED_PID" rgpu-scheduler "$SCHED_LOG"
    SCHED=""
    while [ -z "$SCHED" ]; do
        SCHED=$(sed -n 's/^rgpu-scheduler listening on \([^ ]*\)$/\1/p' "$out" | head -n1)
        kill -0 "$SCHED_PID" 2>/dev/null || fail "rgpu-scheduler exited before listening"
        [ "$SECONDS" -lt "$deadline" ] || fail "rgpu-scheduler printed no address within 30 s"
        sleep 0.05
    done
    e2e_log "rgpu-scheduler (pid $SCHED_PID) listening on $SCHED"
}

rgpu_cli() {
    "$RGPU_BIN" --scheduler "$SCHED" "$@"
}

# json_get FIELD < JSON: prints one top-level field of a JSON object
# (a list is printed comma-separated: "gpus.server" gives each GPU's server).
json_get() {
    python3 -c '
import json, sys
obj, path = json.load(sys.stdin), sys.argv[1].split(".")
val = obj[path[0]]
if len(path) > 1:
    val = ",".join(str(v[path[1]]) for v in val)
print(val)' "$1"
}
