#!/usr/bin/env bash
# bench-verbs.sh BUILD_DIR -- the verbs transport's figures beside perftest's,
# between the same endpoints in the same run, as ratios:
#   put (RDMA WRITE) bandwidth / ib_write_bw, get (RDMA READ) / ib_read_bw,
#   a message round trip's half / ib_send_lat.
# Needs an RDMA device: in CI it runs inside the Soft-RoCE VM
# (scripts/test-verbs.sh); on an InfiniBand cluster run it on a node with
# RGPU_BENCH_DEV=mlx5_0 RGPU_BENCH_ADDR=<the IPoIB address> (docs/verbs.md).
# Inside the emulated VM only the ratios mean something.
set -euo pipefail

build=${1:?usage: bench-verbs.sh BUILD_DIR}
dev=${RGPU_BENCH_DEV:-${RXE_DEV:-rxe0}}
addr=${RGPU_BENCH_ADDR:-${RXE_IP:?set RGPU_BENCH_ADDR to the device\'s IP address}}
gid=${RGPU_BENCH_GID:-${RXE_GID_INDEX:-}}
bw_sizes=${RGPU_BENCH_BW_SIZES:-65536 1048576}
bw_iters=${RGPU_BENCH_BW_ITERS:-200}
lat_iters=${RGPU_BENCH_LAT_ITERS:-500}
bench=$build/tests/bench_verbs
gidopt=(); [ -n "$gid" ] && gidopt=(-x "$gid")

# One perftest run: its server in the background, the client retrying until
# the server listens; prints the client's result column.
perftest() { # tool column size iters [options]
    local tool=$1 col=$2 size=$3 iters=$4; shift 4
    local port=$((18515 + RANDOM % 1000)) out
    "$tool" -d "$dev" "${gidopt[@]}" -p "$port" -s "$size" -n "$iters" -F "$@" > /dev/null 2>&1 &
    local spid=$!
    for _ in $(seq 1 100); do
        if out=$("$tool" -d "$dev" "${gidopt[@]}" -p "$port" -s "$size" -n "$iters" -F "$@" "$addr" 2>&1); then
            wait "$spid" || true
            echo "$out" | awk -v s="$size" -v c="$col" '$1 == s && NF >= c { v = $c } END { print v }'
            return 0
        fi
        sleep 0.2 # the server is not listening yet: retry (bounded: 100 tries)
    done
    kill "$spid" 2> /dev/null || true
    echo "bench-verbs: $tool never connected: $out" >&2
    return 1
}

ours() { # mode size iters
    "$bench" "$1" "$addr:0" "$2" "$3" | awk 'NR == 2 { print $3 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

printf '%-22s %10s %14s %14s %8s\n' "figure" "bytes" "rgpu verbs" "perftest" "ratio"
for size in $bw_sizes; do
    w=$(ours write "$size" "$bw_iters"); pw=$(perftest ib_write_bw 4 "$size" "$bw_iters")
    printf '%-22s %10s %14s %14s %8s\n' "put MB/s / write_bw" "$size" "$w" "$pw" "$(ratio "$w" "$pw")"
    r=$(ours read "$size" "$bw_iters"); pr=$(perftest ib_read_bw 4 "$size" "$bw_iters")
    printf '%-22s %10s %14s %14s %8s\n' "get MB/s / read_bw" "$size" "$r" "$pr" "$(ratio "$r" "$pr")"
done
pl=$(perftest ib_send_lat 6 64 "$lat_iters")
# perftest busy-polls throughout; the transport spins RGPU_VERBS_SPIN_US
# (default 50) after traffic, then arms the completion channel and sleeps on
# it. Where a round trip takes longer than that (the emulated VM: a few
# hundred microseconds) the default measures the sleeping path; on
# InfiniBand (a few microseconds) the spinning one. The second line spins
# throughout, as perftest does: the path an InfiniBand round trip takes.
l=$(ours lat 64 "$lat_iters")
printf '%-22s %10s %14s %14s %8s\n' "msg usec / send_lat" 64 "$l" "$pl" "$(ratio "$l" "$pl")"
ls=$(RGPU_VERBS_SPIN_US=100000 ours lat 64 "$lat_iters")
printf '%-22s %10s %14s %14s %8s\n' "  spinning / send_lat" 64 "$ls" "$pl" "$(ratio "$ls" "$pl")"
echo "(bandwidth ratios: higher is better, 1.00 = perftest; latency ratio: lower is better;"
echo " latency difference: $(awk -v a="$l" -v b="$pl" 'BEGIN { printf "%.2f", a - b }') usec," \
    "spinning $(awk -v a="$ls" -v b="$pl" 'BEGIN { printf "%.2f", a - b }') usec)"
