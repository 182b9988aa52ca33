#!/usr/bin/env bash
# Configures and builds build/ (RelWithDebInfo) and, with --asan, also
# build-asan/ (Debug, AddressSanitizer + UndefinedBehaviorSanitizer).
#
#   bash scripts/build.sh [--asan]
set -euo pipefail
cd "$(dirname "$0")/.."

asan=0
for arg in "$@"; do
    case $arg in
    --asan) asan=1 ;;
    *) echo "usage: $0 [--asan]" >&2; exit 2 ;;
    esac
done
jobs=$(nproc 2>/dev/null || echo 2)

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$jobs"
if [ "$asan" = 1 ]; then
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRGPU_SANITIZE=ON
    cmake --build build-asan -j "$jobs"
fi
