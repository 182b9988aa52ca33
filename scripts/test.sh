#!/usr/bin/env bash
# Runs every test: installs what is missing, builds build/ and build-asan/,
# runs all tests (unit and end-to-end) in both, a bounded fuzzing run
# (scripts/fuzz.sh), the verbs transport in a Soft-RoCE VM
# (scripts/test-verbs.sh), the Debian packages (scripts/test-packages.sh),
# then the aarch64 client's (scripts/test-arm.sh).
# Prints each step's duration; exits non-zero if any failed.
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc 2>/dev/null || echo 2)
failed=()
timings=()
t_all=$(date +%s)

# step NAME COMMAND...: runs one step, records its duration and whether it
# failed, and goes on with the next step either way.
step() {
    local name=$1 t0 rc=0
    shift
    echo "== $name"
    t0=$(date +%s)
    "$@" || rc=$?
    timings+=("$(printf '%-12s %4ds  %s' "$name" $(($(date +%s) - t0)) \
        "$([ $rc -eq 0 ] && echo ok || echo "FAILED ($rc)")")")
    [ $rc -eq 0 ] || failed+=("$name")
}

step deps bash scripts/install-deps.sh
step build bash scripts/build.sh --asan
if [ ${#failed[@]} -gt 0 ]; then
    printf '%s\n' "${timings[@]}"
    echo "test.sh: the build FAILED, no test ran" >&2
    exit 1
fi

# build/: unit and end-to-end tests
step build/ bash -c "cd build && ctest --output-on-failure -j $jobs"

# build-asan/: unit and end-to-end tests under ASan and UBSan
step build-asan/ bash -c "cd build-asan && ctest --output-on-failure -j $jobs -L 'unit|e2e'"

# libFuzzer harnesses (clang, ASan+UBSan), a bounded run each on the seed
# corpus: docs/fuzzing.md.
step build-fuzz/ bash scripts/fuzz.sh 20

# The verbs transport on real verbs: Soft-RoCE in a small VM
# (docs/verbs.md, ../shared/notes/rdma-in-ci.md).
step verbs bash scripts/test-verbs.sh

# The Debian packages: built in a clean build root, installed into a booted
# Debian 12 root with systemd, the demo through the units, upgraded, purged
# (docs/operations.md); the arm64 client packages built and checked by lintian.
step packages bash scripts/test-packages.sh
step packages-arm64 bash scripts/build-packages.sh --arch arm64 --lintian

# Last: it swaps Debian's criterion for its arm64 build (the two cannot be
# installed together); install-deps.sh swaps it back on the next run.
step build-arm64/ bash scripts/test-arm.sh

echo "== durations"
printf '%s\n' "${timings[@]}"
printf '%-12s %4ds\n' total $(($(date +%s) - t_all))
if [ ${#failed[@]} -gt 0 ]; then
    echo "test.sh: tests FAILED in: ${failed[*]}" >&2
    exit 1
fi
echo "test.sh: all tests passed in build/, build-asan/, build-fuzz/, the verbs VM, the packages and build-arm64/"
