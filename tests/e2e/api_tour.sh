#!/usr/bin/env bash
# api_tour (the OpenCL 1.2 walk-through) on local PoCL, then through rgpu,
# then through rgpu with RGPU_SYNC=1 (every call synchronous). All must pass,
# with as many checks as locally (no section may silently stop early).
# This is also the build-error test: the tour checks that a broken program
# gives CL_BUILD_PROGRAM_FAILURE and a log naming the error.
source "$(dirname "$0")/lib.sh" "$@"

checks_of() {
    sed -n 's/^api_tour: \([0-9]*\) checks, 0 failed: PASS$/\1/p' "$1"
}

run_tour() {
    local what=$1 out=$2 rc=0
    shift 2
    "$@" "$EXAMPLES/api_tour" >"$out" 2>"$out.stderr" || rc=$?
    if [ "$rc" -ne 0 ] || [ -z "$(checks_of "$out")" ]; then
        grep -E '^(==|  FAIL)' "$out" >&2 || true
        tail -n 20 "$out.stderr" >&2
        fail "api_tour $what: exit status $rc; $(tail -n1 "$out")"
    fi
    pass "api_tour $what: $(tail -n1 "$out")"
}

# Locally PoCL is inside the tour's process: what it leaks is the
# platform's, as in the server (PoCL 3.1 leaks 4 bytes of its own in the
# image and sampler sections).
run_tour "on local PoCL" "$E2E_TMP/local.out" env OCL_ICD_VENDORS="$POCL_ICD" \
    LSAN_OPTIONS="$E2E_SERVER_LSAN${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
local_checks=$(checks_of "$E2E_TMP/local.out")

start_server srv
run_tour "through rgpu" "$E2E_TMP/rgpu.out" env OCL_ICD_VENDORS="$ICD_DIR" RGPU_SERVERS="$srv_ADDR"
run_tour "through rgpu, RGPU_SYNC=1" "$E2E_TMP/sync.out" \
    env OCL_ICD_VENDORS="$ICD_DIR" RGPU_SERVERS="$srv_ADDR" RGPU_SYNC=1

for f in rgpu sync; do
    n=$(checks_of "$E2E_TMP/$f.out")
    [ "$n" = "$local_checks" ] || fail "api_tour ($f) ran $n checks, locally $local_checks"
done
pass "through rgpu as many checks as on PoCL ($local_checks)"

# The build-error checks, spelled out.
for line in \
    "ok    clBuildProgram of a broken program gives CL_BUILD_PROGRAM_FAILURE" \
    "ok    CL_BUILD_ERROR, and the build log names the error" \
    "ok    clCompileProgram of a broken unit gives CL_COMPILE_PROGRAM_FAILURE"; do
    grep -qF "$line" "$E2E_TMP/rgpu.out" || fail "through rgpu, no '$line'"
done
grep -q '^  ok    CL_PLATFORM_NAME = "rgpu"$' "$E2E_TMP/rgpu.out" ||
    fail "through rgpu the tour did not run on platform \"rgpu\""
pass "a build error through rgpu: CL_BUILD_PROGRAM_FAILURE and a log naming the error"

# The image and sampler sections ran every check through rgpu, as locally.
for line in \
    "ok    a kernel reads an image through a sampler (unnormalized, clamp, nearest) and writes another: as computed on the host" \
    "ok    clEnqueueWaitForEvents holds the queue until its events complete"; do
    grep -qF "$line" "$E2E_TMP/rgpu.out" || fail "through rgpu, no '$line'"
done
pass "images, samplers and a sampling kernel through rgpu as on local PoCL"
stop_server srv
