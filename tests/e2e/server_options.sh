#!/usr/bin/env bash
# rgpu-server refuses to start without a lease policy, and explains options.
source "$(dirname "$0")/lib.sh" "$@"
require_build

# expect_refusal STATUS PATTERN ARGS...: rgpu-server ARGS exits with STATUS
# at once and says PATTERN on stderr.
expect_refusal() {
    local want=$1 pattern=$2 rc=0
    shift 2
    timeout 20 env OCL_ICD_VENDORS="$POCL_ICD" "$SERVER_BIN" "$@" \
        >"$E2E_TMP/out" 2>"$E2E_TMP/err" || rc=$?
    [ "$rc" -eq "$want" ] && grep -q "$pattern" "$E2E_TMP/err" ||
        fail "rgpu-server $*: status $rc (want $want), stderr: $(cat "$E2E_TMP/err")"
    pass "rgpu-server $*: $(head -c 120 "$E2E_TMP/err")"
}

# Neither a cluster key nor --insecure: nobody would check who uses the GPUs.
expect_refusal 2 "give --key FILE" --listen 127.0.0.1:0
expect_refusal 2 "only on a loopback" --insecure --listen 0.0.0.0:0
expect_refusal 2 "exclude each other" --insecure --key /nonexistent --listen 127.0.0.1:0
expect_refusal 1 "nonexistent" --key "$E2E_TMP/nonexistent.key" --listen 127.0.0.1:0
expect_refusal 2 "unknown option" --listen 127.0.0.1:0 --insecure --no-such-option
# Given one of them, it serves.
start_server ok
pass "with --insecure on loopback it serves ($ok_ADDR)"
