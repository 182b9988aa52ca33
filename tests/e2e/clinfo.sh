#!/usr/bin/env bash
# clinfo through rgpu: the platform is "rgpu", its device is the server's PoCL
# device with PoCL's own name, global memory, max work-group size and other
# properties; with two servers in RGPU_SERVERS the platform has two devices.
#
# clinfo's default output is compared, not --raw: clinfo 3.0.23's --raw mode
# overflows a heap buffer of its own (ASan reports it even on PoCL alone).
source "$(dirname "$0")/lib.sh" "$@"

# field FILE LABEL [N]: the value of the Nth (default 1st) "  LABEL   value" line.
field() {
    awk -v label="$2" -v n="${3:-1}" '
        index($0, "  " label " ") == 1 {
            v = substr($0, length(label) + 3); sub(/^ +/, "", v)
            if (++seen == n) { print v; exit }
        }' "$1"
}

# rgpu_clinfo SERVERS OUT [ARGS...]: clinfo through rgpu, stderr beside OUT.
rgpu_clinfo() {
    local servers=$1 out=$2 rc=0
    shift 2
    OCL_ICD_VENDORS=$ICD_DIR RGPU_SERVERS=$servers system_prog clinfo "$@" >"$out" 2>"$out.stderr" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$out.stderr" >&2; fail "clinfo through rgpu ($servers) exited with status $rc"; }
}

# PoCL sizes its global memory from the machine's memory, which other
# processes change: what rgpu shows must equal what PoCL said just before the
# server started or just after the rgpu clinfo ran.
pocl_run clinfo >"$E2E_TMP/pocl.before" 2>/dev/null || fail "clinfo on local PoCL failed"
start_server a
start_server b
rgpu_clinfo "$a_ADDR" "$E2E_TMP/one"
pocl_run clinfo >"$E2E_TMP/pocl.after" 2>/dev/null || fail "clinfo on local PoCL failed"

[ "$(field "$E2E_TMP/one" 'Platform Name')" = rgpu ] ||
    fail "clinfo shows no platform named rgpu: $(grep 'Platform Name' "$E2E_TMP/one" | head -n1)"
ndev=$(sed -n 's/^Number of devices  *//p' "$E2E_TMP/one")
[ "$ndev" = 1 ] || fail "with one server the rgpu platform has '$ndev' devices, expected 1"
pass "platform \"rgpu\" with 1 device"

for label in 'Device Name' 'Device Vendor' 'Device Type' 'Max compute units' \
    'Max work item sizes' 'Max work group size' 'Global memory size' \
    'Local memory size' 'Max memory allocation'; do
    before=$(field "$E2E_TMP/pocl.before" "$label")
    after=$(field "$E2E_TMP/pocl.after" "$label")
    got=$(field "$E2E_TMP/one" "$label")
    [ -n "$before" ] || fail "clinfo on PoCL shows no '$label'"
    [ "$got" = "$before" ] || [ "$got" = "$after" ] ||
        fail "'$label' through rgpu is '$got', on PoCL '$before' (then '$after')"
    pass "$label: $got, as on PoCL"
done

rgpu_clinfo "$a_ADDR,$b_ADDR" "$E2E_TMP/two"
ndev=$(sed -n 's/^Number of devices  *//p' "$E2E_TMP/two")
[ "$ndev" = 2 ] || fail "with two servers the rgpu platform has '$ndev' devices, expected 2"
want=$(field "$E2E_TMP/pocl.before" 'Device Name')
for n in 1 2; do
    got=$(field "$E2E_TMP/two" 'Device Name' "$n")
    [ "$got" = "$want" ] || fail "device $n of two is '$got', expected '$want'"
done
pass "with RGPU_SERVERS=a,b the rgpu platform has 2 devices, both \"$want\""

rgpu_clinfo "$a_ADDR,$b_ADDR" "$E2E_TMP/list" -l
cat "$E2E_TMP/list"
[ "$(grep -c 'Device #' "$E2E_TMP/list")" = 2 ] || fail "clinfo -l does not list 2 devices"
stop_server a
stop_server b
