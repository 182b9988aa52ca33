#!/usr/bin/env bash
# pyopencl, as numerical Python code uses OpenCL, through rgpu beside local
# PoCL: tests/e2e/pyopencl_app.py (pyopencl.array, ElementwiseKernel,
# ReductionKernel, GenericScanKernel, clmath, clrandom and a plain Program
# with 64-bit scalars, every result checked against numpy) runs twice on
# each platform with the same pyopencl binary cache (XDG_CACHE_HOME): the
# first run builds every program from source and saves its binary, the
# second creates every program from those binaries
# (clCreateProgramWithBinary). Each run must pass, and rgpu's output must be
# PoCL's, line for line (the clrandom line has a digest of the random bits).
#
# The platform is chosen by name, as pyopencl users do: PYOPENCL_CTX=rgpu.
# Debian's python3-pyopencl is for Debian's python, /usr/bin/python3 (not a
# pyenv one that PATH may find first). Skipped (77) without it outside CI.
source "$(dirname "$0")/lib.sh" "$@"

PY=/usr/bin/python3
APP=$(cd "$(dirname "$0")" && pwd)/pyopencl_app.py

if ! "$PY" -c 'import pyopencl, numpy' 2>/dev/null; then
    if [ -n "${CI:-}" ]; then
        fail "$PY has no pyopencl or numpy (scripts/install-deps.sh installs python3-pyopencl)"
    fi
    echo "[$E2E_NAME] SKIP: $PY has no pyopencl or numpy (apt-get install python3-pyopencl python3-numpy)"
    trap - EXIT
    rm -rf "$E2E_TMP"
    exit 77
fi

# run_app LABEL PLATFORM CACHE: one run of the app; LABEL is pocl or rgpu,
# CACHE cold or warm. Its stdout goes to $E2E_TMP/LABEL.CACHE.
run_app() {
    local label=$1 platform=$2 cache=$3 out=$E2E_TMP/$1.$3 rc=0 start=$SECONDS
    local env=(XDG_CACHE_HOME="$E2E_TMP/cache.$label" PYOPENCL_CTX="$platform"
               PYOPENCL_COMPILER_OUTPUT=0)
    if [ "$label" = rgpu ]; then
        env+=(OCL_ICD_VENDORS="$ICD_DIR" RGPU_SERVERS="$srv_ADDR")
    else
        env+=(OCL_ICD_VENDORS="$POCL_ICD")
    fi
    if [ "$label" = rgpu ] && [ "$E2E_SANITIZED" = 1 ]; then
        # A sanitized ICD needs ASan's runtime first (system_prog), and
        # ASan's __cxa_throw interceptor needs libstdc++ loaded at start:
        # python is not linked with it, and pyopencl throws C++ exceptions.
        LD_PRELOAD="$(gcc -print-file-name=libstdc++.so.6)${LD_PRELOAD:+:$LD_PRELOAD}" \
            system_prog env "${env[@]}" "$PY" "$APP" --platform "$platform" --cache "$cache" \
            >"$out" 2>"$out.stderr" || rc=$?
    else
        env "${env[@]}" "$PY" "$APP" --platform "$platform" --cache "$cache" \
            >"$out" 2>"$out.stderr" || rc=$?
    fi
    if [ "$rc" -ne 0 ]; then
        echo "----- pyopencl_app.py on $label, $cache cache: stderr (last 40 lines) -----" >&2
        tail -n 40 "$out.stderr" >&2
        echo "----- stdout -----" >&2
        cat "$out" >&2
        fail "pyopencl_app.py on $label ($cache cache) exited with status $rc:" \
            "$(grep -E '^FAIL|refused' "$out" | head -n 3)"
    fi
    grep -qx 'ALL [0-9]* checks PASS' "$out" ||
        fail "pyopencl_app.py on $label ($cache cache) exited 0 without its ALL ... PASS line"
    pass "pyopencl_app.py on $label, $cache cache: $(tail -n1 "$out") in $((SECONDS - start)) s"
}

# same_output CACHE: rgpu's output of that run is PoCL's.
same_output() {
    local pocl=$E2E_TMP/pocl.$1 rgpu=$E2E_TMP/rgpu.$1
    if ! diff -u "$pocl" "$rgpu" >"$E2E_TMP/diff.$1"; then
        cat "$E2E_TMP/diff.$1" >&2
        fail "the $1-cache run's output through rgpu differs from local PoCL's (diff above)"
    fi
    pass "$1-cache run: rgpu printed what PoCL printed ($(wc -l <"$pocl") lines)"
}

pocl_platform=$(OCL_ICD_VENDORS=$POCL_ICD "$PY" -c \
    'import pyopencl as cl; print(cl.get_platforms()[0].name)') ||
    fail "pyopencl finds no platform on local PoCL"
run_app pocl "$pocl_platform" cold
run_app pocl "$pocl_platform" warm

start_server srv
run_app rgpu rgpu cold
nbin=$(find "$E2E_TMP/cache.rgpu" -path '*pyopencl*' -name binary | wc -l)
[ "$nbin" -gt 0 ] || fail "the cold run through rgpu saved no program binary in pyopencl's cache"
pass "pyopencl's cache holds $nbin program binaries from rgpu"
run_app rgpu rgpu warm

same_output cold
same_output warm
stop_server srv
