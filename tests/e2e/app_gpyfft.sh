#!/usr/bin/env bash
# gpyfft (Debian's python3-gpyfft: clFFT driven from Python through pyopencl
# queues, buffers and events) through rgpu beside local PoCL: its own
# unittest suite (1D-3D, in and out of place, real and complex, single and
# double, batched, strided; clFFT pre- and post-callbacks, user OpenCL C code
# that clFFT compiles into its kernels), every result checked against numpy's
# FFT. Each suite must pass, and its output (it prints the arrays of its
# callback tests) must be PoCL's once object addresses and the platform name
# are taken out. Skipped (77) without python3-gpyfft outside CI.
source "$(dirname "$0")/lib.sh" "$@"

# libclFFT deletes its plans' actions through a pointer of the wrong type
# (clfftDestroyPlan -> FFTRepo::deletePlan): ASan, preloaded in a sanitized
# build (lib.sh's system_prog), aborts on that at the first plan destroyed,
# on PoCL alone too. Not ours: that check is off for these programs (not
# for the server).
APP_ASAN="new_delete_type_mismatch=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

PY=/usr/bin/python3
SUITES=(gpyfft.test.test_callback gpyfft.test.test_gpyfft gpyfft.test.test_batched
        gpyfft.test.test_gpyfftlib)

if ! "$PY" -c 'import gpyfft, parameterized' 2>/dev/null; then
    [ -n "${CI:-}" ] && fail "$PY has no gpyfft (scripts/install-deps.sh installs python3-gpyfft)"
    echo "[$E2E_NAME] SKIP: python3-gpyfft is not installed"
    trap - EXIT
    rm -rf "$E2E_TMP"
    exit 77
fi

# run_suites LABEL: the suites on pocl or rgpu. Compared: their stdout (the
# callback tests' arrays), object addresses and the platform name taken out,
# in $E2E_TMP/LABEL.out, and the tests that ran, from unittest's stderr, in
# $E2E_TMP/LABEL.tests. Not the rest of stderr: PoCL's compiler writes its
# "N warnings generated." there, locally only, and only when PoCL's kernel
# cache does not have the kernel yet.
run_suites() {
    local label=$1 out=$E2E_TMP/$1 rc=0
    if [ "$label" = rgpu ]; then
        ASAN_OPTIONS=$APP_ASAN rgpu_run "$srv_ADDR" system_prog env PYOPENCL_CTX=rgpu \
            "$PY" -m unittest -v "${SUITES[@]}" >"$out.raw" 2>"$out.err" || rc=$?
    else
        pocl_run env PYOPENCL_CTX=0 "$PY" -m unittest -v "${SUITES[@]}" >"$out.raw" 2>"$out.err" || rc=$?
    fi
    sed -E "s/ at 0x[0-9a-f]+//g; s/on '(rgpu|Portable Computing Language)'/on PLATFORM/g" \
        "$out.raw" >"$out.out"
    grep -oE '^test[^ ]* \([^ ]*\)' "$out.err" >"$out.tests" || true
    if [ "$rc" -ne 0 ] || [ "$(tail -n1 "$out.err")" != OK ]; then
        grep -E '^(FAIL|ERROR)|Error|refused' "$out.err" | head -n 20 >&2 || true
        tail -n 30 "$out.err" >&2
        fail "gpyfft's tests on $label: status $rc, $(grep -E '^(FAILED|OK)' "$out.err" | tail -n1)"
    fi
    pass "gpyfft's tests on $label: $(grep -E '^Ran ' "$out.err" | sed 's/ in .*//'), OK"
}

start_server srv
run_suites pocl
run_suites rgpu
grep -q "on 'rgpu'" "$E2E_TMP/rgpu.raw" || fail "gpyfft's tests did not run on platform rgpu"
diff -u "$E2E_TMP/pocl.tests" "$E2E_TMP/rgpu.tests" >&2 ||
    fail "gpyfft ran other tests through rgpu than on local PoCL (diff above)"
diff -u "$E2E_TMP/pocl.out" "$E2E_TMP/rgpu.out" >&2 ||
    fail "gpyfft's tests printed other results through rgpu than on local PoCL (diff above)"
pass "gpyfft's tests: the same $(wc -l <"$E2E_TMP/pocl.tests") tests and output ($(wc -l <"$E2E_TMP/pocl.out") lines) through rgpu as on local PoCL"
stop_server srv
