#!/usr/bin/env bash
# Runs every test: installs what is missing, builds build/ and build-asan/,
# runs all tests (unit and end-to-end) in both, then the aarch64 client's
# (scripts/test-arm.sh), and a bounded fuzzing run (scripts/fuzz.sh).
# Exits non-zero if any failed.
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh --asan

jobs=$(nproc 2>/dev/null || echo 2)
failed=()

echo "== build/: unit and end-to-end tests"
(cd build && ctest --output-on-failure -j "$jobs") || failed+=(build)

echo "== build-asan/: unit and end-to-end tests under ASan and UBSan"
(cd build-asan && ctest --output-on-failure -j "$jobs" -L 'unit|e2e') || failed+=(build-asan)

# libFuzzer harnesses (clang, ASan+UBSan), a bounded run each on the seed
# corpus: docs/fuzzing.md.
echo "== build-fuzz/: libFuzzer harnesses, 20 s each"
bash scripts/fuzz.sh 20 || failed+=(build-fuzz)

# Last: it swaps Debian's criterion for its arm64 build (the two cannot be
# installed together); install-deps.sh swaps it back on the next run.
echo "== build-arm64/: the aarch64 client, its unit tests under qemu, and an aarch64 client against the x86-64 server"
bash scripts/test-arm.sh || failed+=(build-arm64)

if [ ${#failed[@]} -gt 0 ]; then
    echo "test.sh: tests FAILED in: ${failed[*]}" >&2
    exit 1
fi
echo "test.sh: all tests passed in build/, build-asan/, build-fuzz/ and build-arm64/"
