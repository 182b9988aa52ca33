#!/usr/bin/env bash
# clinfo through rgpu: the platform is "rgpu", its device is the server's PoCL
# device with PoCL's own name, global memory and max work-group size; with two
# servers in RGPU_SERVERS the platform has two devices.
source "$(dirname "$0")/lib.sh" "$@"

# raw_value FILE DEVICE PARAM: a value from `clinfo --raw` output.
raw_value() {
    awk -v dev="$2" -v param="$3" '
        $1 ~ ("/" dev "\\]$") && $2 == param { $1 = ""; $2 = ""; sub(/^ +/, ""); print; exit }
    ' "$1"
}

# rgpu_clinfo SERVERS OUT: clinfo --raw through rgpu, its stderr beside it.
rgpu_clinfo() {
    local rc=0
    OCL_ICD_VENDORS=$ICD_DIR RGPU_SERVERS=$1 system_prog clinfo --raw >"$2" 2>"$2.stderr" || rc=$?
    [ "$rc" -eq 0 ] || { cat "$2.stderr" >&2; fail "clinfo through rgpu ($1) exited with status $rc"; }
}

pocl_run clinfo --raw >"$E2E_TMP/pocl.raw" 2>/dev/null || fail "clinfo on local PoCL failed"

start_server a
start_server b

rgpu_clinfo "$a_ADDR" "$E2E_TMP/one.raw"
grep -qE '^ +CL_PLATFORM_NAME +rgpu$' "$E2E_TMP/one.raw" ||
    fail "clinfo shows no platform named rgpu: $(grep CL_PLATFORM_NAME "$E2E_TMP/one.raw")"
ndev=$(awk '$2 == "#DEVICES" {print $3; exit}' "$E2E_TMP/one.raw")
[ "$ndev" = 1 ] || fail "with one server the rgpu platform has '$ndev' devices, expected 1"
pass "platform \"rgpu\" with 1 device"

for param in CL_DEVICE_NAME CL_DEVICE_GLOBAL_MEM_SIZE CL_DEVICE_MAX_WORK_GROUP_SIZE \
    CL_DEVICE_MAX_COMPUTE_UNITS CL_DEVICE_MAX_WORK_ITEM_SIZES CL_DEVICE_LOCAL_MEM_SIZE \
    CL_DEVICE_MAX_MEM_ALLOC_SIZE CL_DEVICE_VENDOR CL_DEVICE_TYPE; do
    want=$(raw_value "$E2E_TMP/pocl.raw" 0 "$param")
    got=$(raw_value "$E2E_TMP/one.raw" 0 "$param")
    [ -n "$want" ] || fail "clinfo on PoCL shows no $param"
    [ "$got" = "$want" ] || fail "$param through rgpu is '$got', on PoCL '$want'"
    pass "$param = $got, as on PoCL"
done

rgpu_clinfo "$a_ADDR,$b_ADDR" "$E2E_TMP/two.raw"
ndev=$(awk '$2 == "#DEVICES" {print $3; exit}' "$E2E_TMP/two.raw")
[ "$ndev" = 2 ] || fail "with two servers the rgpu platform has '$ndev' devices, expected 2"
for d in 0 1; do
    got=$(raw_value "$E2E_TMP/two.raw" "$d" CL_DEVICE_NAME)
    want=$(raw_value "$E2E_TMP/pocl.raw" 0 CL_DEVICE_NAME)
    [ "$got" = "$want" ] || fail "device $d of two is '$got', expected '$want'"
done
pass "with RGPU_SERVERS=a,b the rgpu platform has 2 devices"

# The human-readable form works too.
OCL_ICD_VENDORS=$ICD_DIR RGPU_SERVERS="$a_ADDR,$b_ADDR" system_prog clinfo -l >"$E2E_TMP/list" 2>&1 ||
    fail "clinfo -l through rgpu failed: $(cat "$E2E_TMP/list")"
cat "$E2E_TMP/list"
[ "$(grep -c 'Device #' "$E2E_TMP/list")" = 2 ] || fail "clinfo -l does not list 2 devices"
stop_server a
stop_server b
