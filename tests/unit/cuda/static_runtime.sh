#!/usr/bin/env bash
# unit.cuda.static_runtime: a program linked with the static CUDA runtime
# (nvcc's default) cannot be served; with rgpu's library directory on its
# path it must say so, naming the fix, and fail rather than hang.
#   static_runtime.sh PROGRAM RGPU_CUDA_LIB_DIR
set -u
prog=$1 dir=$2
out=$(LD_LIBRARY_PATH=$dir RGPU_SERVERS=127.0.0.1:1 timeout 60 "$prog" 2>&1)
rc=$?
echo "$out"
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || { echo "FAIL: exit status $rc (0: it ran; 124: it hung)"; exit 1; }
grep -q "linked with the static CUDA runtime" <<<"$out" || { echo "FAIL: the static runtime is not named"; exit 1; }
grep -q -- "-cudart shared" <<<"$out" || { echo "FAIL: the fix (-cudart shared) is not named"; exit 1; }
echo "PASS: the static runtime is detected and the fix named"
