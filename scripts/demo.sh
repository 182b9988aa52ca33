#!/usr/bin/env bash
# The rgpu demo: an unmodified OpenCL application on this node runs its
# kernels on a device that an rgpu-server serves over TCP.
#
#   bash scripts/demo.sh
#
# Installs what is missing, builds build/, starts rgpu-server on 127.0.0.1
# (a free port) over the node's PoCL, runs the vector_add and matmul examples
# through the rgpu platform only (OCL_ICD_VENDORS=build/icd), checks their
# results, and stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
bash scripts/build.sh

# The test library starts and stops servers on ephemeral ports, and cleans up
# only what it started.
# shellcheck source=../tests/e2e/lib.sh
source tests/e2e/lib.sh build

echo
echo "== rgpu demo"
RGPU_LOG=info start_server srv
device=$(pocl_device_name)
echo "rgpu-server (pid $srv_PID) serves \"$device\" (PoCL) on $srv_ADDR"
echo
echo "== What the application sees (OCL_ICD_VENDORS=$ICD_DIR RGPU_SERVERS=$srv_ADDR):"
OCL_ICD_VENDORS=$ICD_DIR RGPU_SERVERS=$srv_ADDR clinfo -l
echo
for prog in "vector_add 1048576" "matmul 512"; do
    read -r name arg <<<"$prog"
    echo "== $name $arg, through rgpu"
    out=$E2E_TMP/$name.out
    rgpu_run "$srv_ADDR" "$EXAMPLES/$name" "$arg" | tee "$out"
    grep -q '(platform "rgpu"): .*results checked, PASS$' "$out" ||
        fail "$name did not pass through the rgpu platform"
    echo
done
echo "== The server's side"
grep -E 'session [0-9]+ from ' "$srv_LOG" | sed 's/^/  /'
stop_server srv
echo
echo "vector_add and matmul ran their kernels on the remote device \"$device\""
echo "via the rgpu platform (rgpu-server on $srv_ADDR), and their results were checked"
echo "against the host: PASS"
