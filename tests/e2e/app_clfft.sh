#!/usr/bin/env bash
# clFFT's client (Debian's clfft-client: clFFT-client) through rgpu beside
# local PoCL. Each run has clFFT generate, build and enqueue its FFT kernels
# for one plan (1D/2D/3D, single and double precision, in and out of place,
# interleaved, planar, real and hermitian layouts, batches, forward and
# inverse), then checks the transform of its known input and prints
# "Internal Client Test *****PASS*****" (or FAIL). Every plan must pass on
# both, with the same output. Skipped (77) without clfft-client outside CI.
source "$(dirname "$0")/lib.sh" "$@"

# libclFFT deletes its plans' actions through a pointer of the wrong type
# (clfftDestroyPlan -> FFTRepo::deletePlan): ASan, preloaded in a sanitized
# build (lib.sh's system_prog), aborts on that at the first plan destroyed,
# on PoCL alone too. Not ours: that check is off for these programs (not
# for the server).
APP_ASAN="new_delete_type_mismatch=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"

PLANS=(
    "-x 1024"
    "-x 4096 -y 64 --double -o"
    "-x 1000 --inLayout 5 --outLayout 3 -o"
    "-x 1000 --inLayout 3 --outLayout 5 -o --double"
    "-x 64 -y 64 -z 16 --inv -b 3"
    "-x 8192 --inLayout 2 --outLayout 2"
    "-x 1024 -b 8 --outLayout 2 -o"
    "-x 3 -y 5 -z 7 -o"
)

if ! command -v clFFT-client >/dev/null; then
    [ -n "${CI:-}" ] && fail "no clFFT-client (scripts/install-deps.sh installs clfft-client)"
    echo "[$E2E_NAME] SKIP: clfft-client is not installed"
    trap - EXIT
    rm -rf "$E2E_TMP"
    exit 77
fi

# run_plan LABEL N ARGS...: clFFT-client ARGS on pocl or rgpu, stdout in
# $E2E_TMP/N.LABEL (stderr beside it: PoCL's compiler warnings, a timing
# library clFFT does not find).
run_plan() {
    local label=$1 n=$2 out=$E2E_TMP/$2.$1 rc=0
    shift 2
    if [ "$label" = rgpu ]; then
        ASAN_OPTIONS=$APP_ASAN rgpu_run "$srv_ADDR" system_prog clFFT-client "$@" >"$out" 2>"$out.stderr" || rc=$?
    else
        pocl_run clFFT-client "$@" >"$out" 2>"$out.stderr" || rc=$?
    fi
    if [ "$rc" -ne 0 ] || ! grep -q 'Internal Client Test \*\*\*\*\*PASS\*\*\*\*\*' "$out"; then
        tail -n 20 "$out" "$out.stderr" >&2
        fail "clFFT-client $* on $label: status $rc, $(grep -ao 'Internal Client Test.*' "$out" || echo 'no test result')"
    fi
}

start_server srv
# The client prints the platform and device it chose.
ASAN_OPTIONS=$APP_ASAN rgpu_run "$srv_ADDR" system_prog clFFT-client -x 16 --printChosen >"$E2E_TMP/chosen" 2>&1 ||
    { cat "$E2E_TMP/chosen" >&2; fail "clFFT-client --printChosen through rgpu failed"; }
grep -qE 'CL_PLATFORM_NAME: +rgpu$' "$E2E_TMP/chosen" ||
    { cat "$E2E_TMP/chosen" >&2; fail "clFFT-client through rgpu did not choose platform rgpu"; }
pass "clFFT-client chose platform rgpu, device $(sed -n 's/^ *CL_DEVICE_NAME: *//p' "$E2E_TMP/chosen")"
n=0
for plan in "${PLANS[@]}"; do
    n=$((n + 1))
    start=$SECONDS
    # shellcheck disable=SC2086 # the plan is a list of options
    run_plan pocl "$n" $plan
    # shellcheck disable=SC2086
    run_plan rgpu "$n" $plan
    diff -u "$E2E_TMP/$n.pocl" "$E2E_TMP/$n.rgpu" >&2 ||
        fail "clFFT-client $plan: output through rgpu differs from local PoCL's (diff above)"
    pass "clFFT-client $plan: PASS on both ($((SECONDS - start)) s)"
done
stop_server srv
