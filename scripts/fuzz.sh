#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/, docs/fuzzing.md) in build-fuzz/
# with clang, ASan and UBSan, and runs each on a copy of its seed corpus for
# a bounded time. Exits non-zero when a harness crashed, leaked, hung or broke
# an invariant, naming the input it saved and the command that reproduces it.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 30; 0: build only)
#
# Environment: RGPU_FUZZ_BUILD (build directory, default build-fuzz),
# RGPU_FUZZ_TARGETS (space-separated harnesses, default all five),
# RGPU_FUZZ_ARGS (more libFuzzer options, e.g. "-jobs=2 -workers=2").
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-30}
build=${RGPU_FUZZ_BUILD:-build-fuzz}
targets=(${RGPU_FUZZ_TARGETS:-fuzz_frame fuzz_token fuzz_sched fuzz_hello fuzz_server})
case $secs in ''|*[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET]" >&2; exit 2 ;; esac

t_all=$(date +%s)
t_step=$t_all
step_done() {
    local now
    now=$(date +%s)
    echo "fuzz.sh: $1 took $((now - t_step)) s"
    t_step=$now
}

command -v clang >/dev/null || { echo "fuzz.sh: clang is missing (bash scripts/install-deps.sh)" >&2; exit 1; }
if [ ! -f "$build/CMakeCache.txt" ]; then
    # Warnings are the other builds' business: clang may see some GCC does not.
    CC=clang cmake -S . -B "$build" -DRGPU_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug -DRGPU_WERROR=OFF \
        -DRGPU_BUILD_TESTS=OFF >"$build.configure.log" 2>&1 ||
        { cat "$build.configure.log" >&2; echo "fuzz.sh: configuring $build failed" >&2; exit 1; }
    rm -f "$build.configure.log"
    step_done "configure ($build)"
fi
cmake --build "$build" --target rgpu_fuzz -j "$(nproc 2>/dev/null || echo 2)" >"$build/fuzz-build.log" 2>&1 ||
    { tail -40 "$build/fuzz-build.log" >&2; echo "fuzz.sh: building the harnesses failed" >&2; exit 1; }
step_done "build"
[ "$secs" -gt 0 ] || exit 0

export LSAN_OPTIONS="suppressions=$root/tests/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
artifacts=$root/$build/fuzz-artifacts
work=$(mktemp -d "${TMPDIR:-/tmp}/rgpu-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
failed=()
for h in "${targets[@]}"; do
    bin=$root/$build/tests/fuzz/$h
    [ -x "$bin" ] || { echo "fuzz.sh: $bin was not built" >&2; failed+=("$h"); continue; }
    mkdir -p "$work/$h" "$artifacts/$h"
    # A copy: what the run adds to its corpus does not grow the committed one.
    if [ -d "tests/fuzz/corpus/$h" ]; then cp tests/fuzz/corpus/"$h"/* "$work/$h"/ 2>/dev/null || true; fi
    before=$(ls "$artifacts/$h" | wc -l)
    rc=0
    # timeout: a harness that stops answering still ends the run.
    timeout $((secs + 120)) "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$artifacts/$h/" ${RGPU_FUZZ_ARGS:-} \
        "$work/$h" >"$work/$h.log" 2>&1 || rc=$?
    # (A harness that died at once has no stats: that must not end the script.)
    stats=$({ grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE)' "$work/$h.log" || true; } | tail -1 |
            sed -E 's/.*(cov: [0-9]+).*(corp: [^ ]+).*(exec\/s: [0-9]+).*/\1 \2 \3/')
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$h.log")
    new=$(ls -t "$artifacts/$h" | head -n $(( $(ls "$artifacts/$h" | wc -l) - before )))
    if [ "$rc" -ne 0 ] || [ -n "$new" ]; then
        failed+=("$h")
        echo "fuzz.sh: $h FAILED (exit $rc) after ${runs:-?} runs; the end of its log:" >&2
        grep -v -E '^#[0-9]+[[:space:]]|NEW_FUNC' "$work/$h.log" | tail -60 >&2
        cp "$work/$h.log" "$artifacts/$h.log"
        for f in $new; do
            echo "fuzz.sh: $h: input saved as $artifacts/$h/$f" >&2
            echo "fuzz.sh: reproduce: LSAN_OPTIONS=$LSAN_OPTIONS $build/tests/fuzz/$h $artifacts/$h/$f" >&2
        done
        [ -n "$new" ] || echo "fuzz.sh: $h saved no input; its whole log: $artifacts/$h.log" >&2
    else
        echo "fuzz.sh: $h ok: ${runs:-?} runs, ${stats:-no stats}"
    fi
    step_done "$h"
done
echo "fuzz.sh: ${#targets[@]} harnesses, $(( $(date +%s) - t_all )) s in all"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz.sh: FAILED: ${failed[*]}" >&2
    exit 1
fi
