#!/usr/bin/env bash
# RGPU_SERVERS names a port where nothing listens: the platform still loads
# (clinfo lists "rgpu" with 0 devices), a program gets CL_DEVICE_NOT_FOUND
# quickly, and stderr names the server address and the reason.
source "$(dirname "$0")/lib.sh" "$@"
require_build

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
addr=127.0.0.1:$port

rc=0
OCL_ICD_VENDORS=$ICD_DIR RGPU_SERVERS=$addr system_prog clinfo >"$E2E_TMP/clinfo.out" 2>"$E2E_TMP/clinfo.err" || rc=$?
cat "$E2E_TMP/clinfo.out" "$E2E_TMP/clinfo.err"
[ "$rc" -eq 0 ] || fail "clinfo exited with status $rc"
grep -qE '^ +Platform Name +rgpu$' "$E2E_TMP/clinfo.out" || fail "clinfo shows no platform rgpu"
grep -qE '^Number of devices +0$' "$E2E_TMP/clinfo.out" || fail "clinfo does not show 0 devices"
grep -qF "$addr" "$E2E_TMP/clinfo.err" || fail "stderr does not name $addr"
grep -qi 'refused' "$E2E_TMP/clinfo.err" || fail "stderr does not say the connection was refused"
pass "clinfo: platform rgpu, 0 devices; stderr: $(grep -F "$addr" "$E2E_TMP/clinfo.err" | head -n1)"

rc=0
start=$SECONDS
rgpu_run "$addr" "$EXAMPLES/vector_add" 1024 >"$E2E_TMP/va.out" 2>&1 || rc=$?
cat "$E2E_TMP/va.out"
[ "$rc" -ne 0 ] || fail "vector_add succeeded without a server"
grep -q 'CL_DEVICE_NOT_FOUND' "$E2E_TMP/va.out" || fail "vector_add did not report CL_DEVICE_NOT_FOUND"
grep -qF "$addr" "$E2E_TMP/va.out" || fail "vector_add's stderr does not name $addr"
[ $((SECONDS - start)) -le 10 ] || fail "it took $((SECONDS - start)) s to give up"
pass "vector_add: CL_DEVICE_NOT_FOUND in $((SECONDS - start)) s, naming $addr"

# A malformed address is reported as such.
rc=0
rgpu_run "not-an-address" "$EXAMPLES/vector_add" 1024 >"$E2E_TMP/bad.out" 2>&1 || rc=$?
cat "$E2E_TMP/bad.out"
[ "$rc" -ne 0 ] || fail "vector_add succeeded with RGPU_SERVERS=not-an-address"
grep -qF "not-an-address" "$E2E_TMP/bad.out" || fail "stderr does not name the malformed address"
pass "a malformed RGPU_SERVERS entry is named on stderr"
