#!/usr/bin/env bash
# Records seed corpora from real traffic: the examples run through rgpu
# against a real rgpu-server on PoCL, with tests/fuzz/record_proxy.py in
# between writing what it sees (fuzz_frame, fuzz_server, fuzz_hello seeds).
# What adds coverage is then merged into tests/fuzz/corpus/<harness>/ with
# the harness's -merge=1 (build-fuzz must be built: scripts/fuzz.sh 0), so
# the committed corpus stays small. Run it after a protocol change and commit
# the new files (docs/fuzzing.md, "Seeds").
#
#   bash tests/fuzz/record_seeds.sh [BUILD_DIR [FUZZ_BUILD_DIR]]
#        (defaults: build, a normal build; build-fuzz)
#
# Kills only what it started.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
FUZZ_BUILD=${2:-build-fuzz}
CORPUS=tests/fuzz/corpus
POCL_ICD=${RGPU_TEST_POCL_ICD:-/etc/OpenCL/vendors/pocl.icd}
for f in "$BUILD/server/rgpu-server" "$BUILD/icd/rgpu.icd" "$BUILD/examples/vector_add"; do
    [ -e "$f" ] || { echo "record_seeds: $f is missing: build $BUILD first (scripts/build.sh)" >&2; exit 1; }
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rgpu-record.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT

OCL_ICD_VENDORS=$POCL_ICD "$BUILD/server/rgpu-server" --listen 127.0.0.1:0 --insecure \
    --log-level warn >"$tmp/server.out" 2>"$tmp/server.log" &
pids+=($!)
for _ in $(seq 100); do
    server=$(sed -n 's/^rgpu-server listening on //p' "$tmp/server.out")
    [ -n "$server" ] && break
    sleep 0.1
done
[ -n "$server" ] || { cat "$tmp/server.log" >&2; echo "record_seeds: the server did not start" >&2; exit 1; }

python3 tests/fuzz/record_proxy.py "$tmp/proxy.addr" "$server" "$tmp/recorded" 2>"$tmp/proxy.log" &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/proxy.addr" ] && break; sleep 0.1; done
proxy=$(cat "$tmp/proxy.addr")
echo "record_seeds: server $server, recording proxy $proxy"

# Small sizes: seeds stay small and their bulks fit fuzz_server's 4 KiB.
run() {
    echo "record_seeds: $*"
    OCL_ICD_VENDORS="$BUILD/icd" RGPU_SERVERS=$proxy "$@" >"$tmp/run.log" 2>&1 ||
        { cat "$tmp/run.log" >&2; echo "record_seeds: $* failed" >&2; exit 1; }
}
run "$BUILD/examples/vector_add" 256
run "$BUILD/examples/matmul" 16
run "$BUILD/examples/multi_device"
run "$BUILD/examples/api_tour"
sleep 1   # the proxy writes a session's seed once both directions closed

for h in fuzz_frame fuzz_server fuzz_hello; do
    [ -d "$tmp/recorded/$h" ] || continue
    mkdir -p "$CORPUS/$h"
    n=$(find "$CORPUS/$h" -type f | wc -l)
    if [ -x "$FUZZ_BUILD/tests/fuzz/$h" ]; then
        LSAN_OPTIONS=suppressions=$PWD/tests/fuzz/lsan.supp \
            "$FUZZ_BUILD/tests/fuzz/$h" -merge=1 -rss_limit_mb=2048 -timeout=30 \
            "$CORPUS/$h" "$tmp/recorded/$h" >"$tmp/merge.log" 2>&1 ||
            { tail -20 "$tmp/merge.log" >&2; echo "record_seeds: merging $h failed" >&2; exit 1; }
    else
        echo "record_seeds: no $FUZZ_BUILD/tests/fuzz/$h: copying every recorded $h seed" >&2
        cp "$tmp/recorded/$h"/* "$CORPUS/$h"/
    fi
    echo "record_seeds: $h: $(find "$tmp/recorded/$h" -type f | wc -l) recorded," \
         "$(( $(find "$CORPUS/$h" -type f | wc -l) - n )) new in $CORPUS/$h"
done
echo "record_seeds: $CORPUS holds $(du -sh "$CORPUS" | cut -f1)"
