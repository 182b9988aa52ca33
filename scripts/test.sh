#!/usr/bin/env bash
# Runs every test: installs what is missing, builds build/ and build-asan/,
# runs all tests (unit and end-to-end) in both. Exits non-zero if any failed.
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

if [ ${#failed[@]} -gt 0 ]; then
    echo "test.sh: tests FAILED in: ${failed[*]}" >&2
    exit 1
fi
echo "test.sh: all tests passed in build/ and build-asan/"
