#!/usr/bin/env bash
# Images and samplers through rgpu, beyond what local PoCL checks
# (tests/e2e/image_checks.c): image and sampler arguments by the kernel's
# declared types, images kept out of buffer commands; and the server counts
# image bytes in rgpu_server_buffer_bytes (a 1D buffer image adds none) and
# gives them back when the client dies.
source "$(dirname "$0")/lib.sh" "$@"

[ -x "$E2E_BIN/image_checks" ] || fail "no $E2E_BIN/image_checks (build the tree first)"

start_server srv --metrics 127.0.0.1:0
base=$(metric "$srv_METRICS" rgpu_server_buffer_bytes)
[ "$base" = 0 ] || fail "rgpu_server_buffer_bytes is $base with no client"

out=$E2E_TMP/image_checks.out
rgpu_spawn "$out" image_checks "$srv_ADDR" "$E2E_BIN/image_checks"
client=$SPAWN_PID
wait_for_line "$out" '^READY ' 120 "$client"
cat "$out"
grep -q '^PASS$' "$out" || fail "image_checks found a difference (FAIL lines above)"
pass "argument kinds and buffer commands: $(grep -c '^ok' "$out") checks"

want=$(sed -n 's/^READY \([0-9]*\) .*$/\1/p' "$out")
held=$(metric "$srv_METRICS" rgpu_server_buffer_bytes)
[ "$held" = "$want" ] || fail "with a buffer and images of $want bytes, rgpu_server_buffer_bytes is $held"
pass "rgpu_server_buffer_bytes counts the images' bytes: $held"

kill -KILL "$client"
wait "$client" 2>/dev/null || true
killed_at=$SECONDS
until [ "$(metric "$srv_METRICS" rgpu_server_buffer_bytes)" = 0 ]; do
    [ $((SECONDS - killed_at)) -le 10 ] || fail "10 s after the client's death, buffer_bytes is not 0"
    sleep 0.2
done
pass "the client killed: its images released (buffer_bytes 0)"
stop_server srv
