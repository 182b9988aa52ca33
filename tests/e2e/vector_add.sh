#!/usr/bin/env bash
# vector_add through rgpu: the work runs on the server's PoCL device, every
# element checked, and the device the program sees is PoCL's, by name.
source "$(dirname "$0")/lib.sh" "$@"

start_server srv
want=$(pocl_device_name)
[ -n "$want" ] || fail "vector_add on local PoCL printed no device name"

for n in 1048576 1000003 1; do
    out=$E2E_TMP/vector_add.$n.out
    rc=0
    rgpu_run "$srv_ADDR" "$EXAMPLES/vector_add" "$n" >"$out" 2>&1 || rc=$?
    cat "$out"
    [ "$rc" -eq 0 ] || fail "vector_add $n through rgpu exited with status $rc"
    grep -q "^vector_add: $n elements on \".*\" (platform \".*\"): results checked, PASS\$" "$out" ||
        fail "vector_add $n through rgpu did not print PASS"
    got=$(sed -n 's/^device: //p' "$out")
    [ "$got" = "$want" ] || fail "the device through rgpu is \"$got\", local PoCL's is \"$want\""
    platform=$(sed -n 's/^platform: //p' "$out")
    [ "$platform" = "rgpu" ] || fail "the platform is \"$platform\", expected \"rgpu\""
    pass "vector_add $n: PASS on \"$got\" through platform \"$platform\""
done
stop_server srv
