# Shared helpers of the end-to-end tests over verbs, inside the Soft-RoCE VM
# (scripts/test-verbs.sh runs them there, as root, with RXE_IP set). Source
# it first thing, after tests/e2e/lib.sh:
#
#   source "$(dirname "$0")/../e2e/lib.sh" "$1"
#   source "$(dirname "$0")/e2e_lib.sh"
#
#   rdma_counts                   the device's user QPs, CQs and MRs, "QPS CQS MRS"
#   start_verbs_server NAME MODE [ARGS...]
#                                 rgpu-scheduler, and rgpu-server NAME with a
#                                 cluster key, metrics, and (MODE verbs) a
#                                 listener on verbs://$RXE_IP as well; waits
#                                 for its registration and, in verbs mode,
#                                 checks that the scheduler lists the verbs
#                                 endpoint (sets VERBS_ADDR)
#   sessions_from NAME MODE       how many of NAME's sessions came in on the
#                                 listener of MODE (verbs: from $RXE_IP)
#   expect_sessions_on NAME MODE N WHAT
#                                 fails unless all N sessions of NAME (WHAT:
#                                 "sessions", "CUDA sessions") came in on the
#                                 listener of MODE
#   wait_freed NAME BEFORE WHAT   polls for 20 s until the device's QPs, CQs
#                                 and MRs are BEFORE again and NAME has no
#                                 session and no device memory; fails naming
#                                 WHAT (the event they should follow)
[ -n "${RXE_IP:-}" ] || fail "run inside the Soft-RoCE VM (scripts/test-verbs.sh): RXE_IP is not set"

# User programs' RDMA resources as the kernel counts them, "QPS CQS MRS":
# every line but the kernel's own (comm [ib_core] and the like). Not by
# pid: the kernel names the thread that created a resource (a session's),
# or none once it exited. Between the programs the server is the device's
# only user in the VM.
rdma_counts() {
    local kind n out=""
    for kind in qp cq mr; do
        n=$(rdma resource show "$kind" | grep -E 'dev |link ' | grep -vc 'comm \[' || true)
        out="$out${out:+ }$n"
    done
    echo "$out"
}

start_verbs_server() {
    local name=$1 mode=$2 verbs_listen=() out servers
    local log_var=${1}_LOG addr_var=${1}_ADDR pid_var=${1}_PID
    shift 2
    case $mode in verbs | tcp) ;; *) fail "mode '$mode': expected verbs or tcp" ;; esac
    [ -n "${SCHED:-}" ] || start_scheduler
    [ "$mode" = verbs ] && verbs_listen=(--listen "verbs://$RXE_IP:0")
    start_server "$name" --key "$KEY" --scheduler "$SCHED" --metrics 127.0.0.1:0 "${verbs_listen[@]}" "$@"
    wait_for_line "${!log_var}" "registered ${!addr_var} with scheduler" 60 "${!pid_var}"
    VERBS_ADDR=""
    [ "$mode" = verbs ] || return 0
    # The second line: the second --listen (lib.sh's start_server listens
    # on 127.0.0.1:0 first).
    out=$E2E_TMP/$name.stdout
    VERBS_ADDR=$(sed -n 's/^rgpu-server listening on \([^ ]*\)$/\1/p' "$out" | sed -n 2p)
    [ -n "$VERBS_ADDR" ] || fail "rgpu-server $name printed no second 'listening on' line (verbs)"
    servers=$(rgpu_cli --json servers) || fail "rgpu servers: $servers"
    grep -q "verbs://$VERBS_ADDR" <<<"$servers" ||
        fail "the scheduler does not list the server's endpoint verbs://$VERBS_ADDR: $servers"
    pass "the server advertises tcp://${!addr_var} and verbs://$VERBS_ADDR"
}

sessions_from() {
    local log_var=${1}_LOG from
    if [ "$2" = verbs ]; then from="${RXE_IP//./\\.}:"; else from='127\.0\.0\.1:'; fi
    grep -c "session [0-9]* from $from" "${!log_var}" || true
}

expect_sessions_on() {
    local log_var=${1}_LOG got
    got=$(sessions_from "$1" "$2")
    [ "$got" -eq "$3" ] ||
        fail "$got of $3 $4 came in on the $2 listener: $(grep 'session [0-9]* from' "${!log_var}")"
    pass "all $3 $4 ran over $2"
}

wait_freed() {
    local name=$1 before=$2 what=$3 metrics_var=${1}_METRICS deadline=$((SECONDS + 20)) now
    while :; do
        now=$(rdma_counts)
        [ "$now" = "$before" ] &&
            [ "$(metric "${!metrics_var}" rgpu_server_sessions_active)" = 0 ] &&
            [ "$(metric "${!metrics_var}" rgpu_server_buffer_bytes)" = 0 ] && break
        [ "$SECONDS" -lt "$deadline" ] ||
            fail "20 s after $what: QPs CQs MRs $now (before: $before)," \
                "$(metric "${!metrics_var}" rgpu_server_sessions_active) sessions," \
                "$(metric "${!metrics_var}" rgpu_server_buffer_bytes) bytes of device memory"
        sleep 0.2
    done
    pass "after $what the server holds what it held before ($now QPs CQs MRs), no session, no device memory"
}

# metric_now ADDR SERIES: one series' value, exactly as the server prints it
# (rgpu_server_calls_total{family="write"}), or nothing when it is absent.
# Plain bash over /dev/tcp: lib.sh's metric starts python, which takes a
# second or more under TCG, while the transfers it watches take about as
# long.
metric_now() {
    local addr=$1 series=$2 fd line value=""
    exec {fd}<>"/dev/tcp/${addr%:*}/${addr##*:}" || return 1
    printf 'GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n' "$addr" >&"$fd"
    while IFS= read -r -t 5 line <&"$fd"; do
        line=${line%$'\r'}
        [ "${line% *}" = "$series" ] && value=${line##* }
    done
    exec {fd}>&-
    echo "$value"
}
