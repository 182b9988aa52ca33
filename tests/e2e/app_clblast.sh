#!/usr/bin/env bash
# CLBlast's own correctness tests (Debian's clblast-tests: clblast_test_<routine>)
# through rgpu beside local PoCL. Each runs a BLAS routine in every precision
# PoCL has, over its argument combinations (sizes, strides, offsets,
# layouts, transposes; bad arguments must give the right error code),
# compares every result with the reference CBLAS (libblas) on the host, and
# prints one mark per test. Through rgpu its output must be local PoCL's,
# byte for byte once the terminal colours are taken out, with no failed test.
#
# Level-1 and -2 routines only, and the batched axpy: a few seconds each
# (xgemm takes 80 s on 2 cores and passes as well, see docs/applications.md).
# Skipped (77) without clblast-tests outside CI.
source "$(dirname "$0")/lib.sh" "$@"

ROUTINES=(xaxpy xdot xnrm2 xasum xamax xscal xswap xcopy xhad xaxpybatched xger xsymv)

if ! command -v clblast_test_xaxpy >/dev/null; then
    [ -n "${CI:-}" ] && fail "no clblast_test_xaxpy (scripts/install-deps.sh installs clblast-tests)"
    echo "[$E2E_NAME] SKIP: clblast-tests is not installed"
    trap - EXIT
    rm -rf "$E2E_TMP"
    exit 77
fi

# tally FILE: "P passed, S skipped, F failed" over all routines in FILE.
tally() {
    sed 's/\x1b\[[0-9;]*m//g' "$1" | awk '
        $2 == "test(s)" { n[$3] += $1 }
        END { printf "%d passed, %d skipped, %d failed", n["passed"], n["skipped"], n["failed"] }'
}

# run_routine LABEL ROUTINE: clblast_test_ROUTINE on pocl or rgpu; its stdout,
# colours taken out, in $E2E_TMP/ROUTINE.LABEL.
run_routine() {
    local label=$1 routine=$2 out=$E2E_TMP/$2.$1 rc=0
    if [ "$label" = rgpu ]; then
        rgpu_run "$srv_ADDR" system_prog "clblast_test_$routine" >"$out.raw" 2>"$out.stderr" || rc=$?
    else
        pocl_run "clblast_test_$routine" >"$out.raw" 2>"$out.stderr" || rc=$?
    fi
    sed 's/\x1b\[[0-9;]*m//g' "$out.raw" >"$out"
    if [ "$rc" -ne 0 ]; then
        tail -n 20 "$out" "$out.stderr" >&2
        fail "clblast_test_$routine on $label exited with status $rc"
    fi
    grep -q 'Completed all test-cases for this routine' "$out" ||
        fail "clblast_test_$routine on $label did not complete its test cases"
}

start_server srv
for r in "${ROUTINES[@]}"; do
    start=$SECONDS
    run_routine pocl "$r"
    run_routine rgpu "$r"
    pocl_tally=$(tally "$E2E_TMP/$r.pocl")
    case "$pocl_tally" in
    *" 0 failed") ;;
    *) fail "clblast_test_$r fails on local PoCL itself ($pocl_tally): not an rgpu result" ;;
    esac
    if ! diff -u "$E2E_TMP/$r.pocl" "$E2E_TMP/$r.rgpu" >"$E2E_TMP/$r.diff"; then
        head -n 60 "$E2E_TMP/$r.diff" >&2
        fail "clblast_test_$r through rgpu ($(tally "$E2E_TMP/$r.rgpu")) differs from local PoCL ($pocl_tally)"
    fi
    pass "clblast_test_$r: $pocl_tally on both, same output ($((SECONDS - start)) s)"
done
stop_server srv
