#!/usr/bin/env bash
# The install test of rgpu's Debian packages, as an operator would use them:
#
#   1. builds the packages twice (scripts/build-packages.sh): the tree's
#      version, with lintian, and the same tree as a newer version;
#   2. boots a fresh Debian 12 root (debootstrap, cached) with systemd as its
#      init (systemd-nspawn -b, its own network namespace: only its loopback);
#   3. installs the packages there, configures scheduler, server and client
#      only through files under /etc (the cluster key the scheduler package
#      made, the server's address of the scheduler) and starts the units;
#   4. runs the demo through them: `rgpu alloc -- vector_add` on the leased
#      remote GPU (PoCL behind rgpu-server), checking its results;
#   5. upgrades the packages in place: a lease taken before survives the
#      scheduler's restart; the server keeps serving;
#   6. purges them: nothing is left but what Debian policy keeps (the system
#      user), checked against a listing of the root taken before install.
#
#   bash scripts/test-packages.sh
#
# Needs root, debootstrap and systemd-container (installed when missing), and
# Debian's mirror for the first debootstrap. The bootstrapped root is cached
# in $RGPU_PKG_CACHE/bookworm-test (default /var/cache/rgpu-pkg, beside
# build-packages.sh's build roots); each run copies it, so nothing of a run
# stays. Every step prints its duration; every wait
# has a deadline. The host's own systemd units are never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

cache=${RGPU_PKG_CACHE:-/var/cache/rgpu-pkg}
suite=bookworm-test
mirror=${RGPU_PKG_MIRROR:-http://deb.debian.org/debian}
machine=rgpu-pkgtest-$$
# Packages the root needs besides the minimal base: systemd as init, and the
# packages' dependencies, so that installing rgpu's packages needs no network.
base_packages=systemd,systemd-sysv,dbus,adduser,ocl-icd-libopencl1,pocl-opencl-icd,libuv1,libsqlite3-0,libsodium23,libprotobuf-c1,libjemalloc2,libmunge2,libsystemd0

step_start=$(date +%s)
test_start=$step_start
declare -a timings=()
step() {
    local now
    now=$(date +%s)
    [ -n "${step_name:-}" ] && timings+=("$(printf '%4d s  %s' $((now - step_start)) "$step_name")")
    step_name=$1
    step_start=$now
    echo "== $1"
}
fail() { echo "test-packages: FAIL: $*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    echo "test-packages: needs root (debootstrap, systemd-nspawn)" >&2
    exit 1
fi

step "tools: debootstrap, systemd-nspawn"
need=()
for p in debootstrap systemd-container; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=120 update -qq
    apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${need[@]}"
fi

work=$(mktemp -d /var/tmp/rgpu-pkgtest.XXXXXX)
root=$work/root
nspawn_pid=
cleanup() {
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        # SIGTERM asks nspawn to shut the container down cleanly.
        kill -TERM "$nspawn_pid" 2>/dev/null || true
        for _ in $(seq 1 300); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$nspawn_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

version=$(dpkg-parsechangelog -l debian/changelog -S Version)
newer=${version}+pkgtest1
step "build $version (with lintian) and $newer"
# RGPU_PKGTEST_DEBS=DIR keeps the packages in DIR and reuses them when they
# are there (while working on the test itself); the default builds afresh.
debdir=${RGPU_PKGTEST_DEBS:-$work}
if [ -z "${RGPU_PKGTEST_DEBS:-}" ] || ! ls "$debdir/v2/"*.deb > /dev/null 2>&1; then
    bash scripts/build-packages.sh --lintian --out "$debdir/v1"
    bash scripts/build-packages.sh --version "$newer" --out "$debdir/v2" | grep -v '^  '
else
    echo "reusing the packages in $debdir"
fi
debs() { ls "$1"/*.deb | grep -v -- '-dbgsym_'; }

step "the demo program (examples/vector_add.c, linked to the OpenCL loader)"
cc -O2 -DCL_TARGET_OPENCL_VERSION=120 -Iexamples -o "$work/vector_add" examples/vector_add.c -lOpenCL

step "root: Debian 12 with systemd (debootstrap, cached in $cache)"
mkdir -p "$cache"
exec 8> "$cache/$suite.lock"
flock -w 1800 8 || fail "$cache/$suite is busy (another test run)"
if [ ! -e "$cache/$suite/etc/os-release" ] || [ "$(cat "$cache/$suite.packages" 2>/dev/null)" != "$base_packages" ]; then
    rm -rf "$cache/$suite" "$cache/$suite.tmp"
    debootstrap --variant=minbase --include="$base_packages" bookworm "$cache/$suite.tmp" "$mirror" \
        > "$work/debootstrap.log" 2>&1 || { tail -30 "$work/debootstrap.log" >&2; fail "debootstrap"; }
    mv "$cache/$suite.tmp" "$cache/$suite"
    echo "$base_packages" > "$cache/$suite.packages"
fi
# The packages' dependencies go into the cached root's apt archive (from
# the mirror, through the host's network), so that the booted root installs
# and upgrades without a network, as the dependencies change over time.
mkdir -p "$cache/$suite/var/tmp/rgpu-deps"
rm -f "$cache/$suite/var/tmp/rgpu-deps/"*.deb
cp $(debs "$debdir/v1") "$cache/$suite/var/tmp/rgpu-deps/"
systemd-nspawn -q -D "$cache/$suite" --register=no --keep-unit --pipe sh -c \
    'apt-get update -qq && cd /var/tmp/rgpu-deps && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --download-only ./*.deb' \
    < /dev/null > "$work/deps.log" 2>&1 || { tail -30 "$work/deps.log" >&2; fail "downloading the packages' dependencies into the root"; }
rm -rf "$cache/$suite/var/tmp/rgpu-deps"
cp -a "$cache/$suite" "$root"
echo "$machine" > "$root/etc/hostname"
mkdir -p "$root/var/tmp/rgpu/v1" "$root/var/tmp/rgpu/v2"
cp $(debs "$debdir/v1") "$root/var/tmp/rgpu/v1/"
cp $(debs "$debdir/v2") "$root/var/tmp/rgpu/v2/"
cp "$work/vector_add" "$root/var/tmp/rgpu/"

# What the root holds before rgpu: after the purge, the same must be there.
listing() {
    (cd "$root" && find . -xdev \( -path ./proc -o -path ./sys -o -path ./dev -o -path ./run -o -path ./tmp \
        -o -path ./var/tmp -o -path ./var/log -o -path ./var/cache/apt -o -path ./var/lib/apt \
        -o -path ./var/lib/dpkg -o -path ./var/lib/systemd -o -path ./var/cache/ldconfig \
        -o -path ./var/cache/debconf -o -path ./etc/ld.so.cache \) -prune -o -print | sort)
}
listing > "$work/before.txt"

step "boot the root with systemd as init (systemd-nspawn -b, private network)"
# --register=no/--keep-unit: the host need not run systemd itself;
# the unified cgroup hierarchy is what the container's systemd needs here.
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 systemd-nspawn -q -D "$root" -M "$machine" --register=no --keep-unit \
    --private-network -b > "$work/console.log" 2>&1 &
nspawn_pid=$!
leader=
for _ in $(seq 1 300); do
    # The container's init is nspawn's child.
    leader=$(pgrep -P "$nspawn_pid" -x systemd || true)
    [ -n "$leader" ] && break
    kill -0 "$nspawn_pid" 2>/dev/null || { cat "$work/console.log" >&2; fail "systemd-nspawn exited"; }
    sleep 0.1
done
[ -n "$leader" ] || { tail -30 "$work/console.log" >&2; fail "the container's systemd did not start within 30 s"; }
in_root() { nsenter -t "$leader" -a -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
state=
for _ in $(seq 1 600); do
    state=$(in_root systemctl is-system-running 2>/dev/null || true)
    case "$state" in running|degraded) break ;; esac
    sleep 0.1
done
case "$state" in
    running) ;;
    degraded) in_root systemctl --failed --no-legend; echo "(units above failed in the bare root; rgpu's are checked below)" ;;
    *) tail -30 "$work/console.log" >&2; fail "the container did not finish booting within 60 s (state: $state)" ;;
esac
echo "container booted: $(in_root systemctl --version | head -1), system $state"

step "install $version"
in_root sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q /var/tmp/rgpu/v1/*.deb' \
    < /dev/null > "$work/install.log" 2>&1 || { tail -30 "$work/install.log" >&2; fail "apt-get install of $version"; }
grep -E "rgpu-scheduler: created|Created symlink" "$work/install.log" || true
in_root test -s /etc/rgpu/cluster.key || fail "rgpu-scheduler's postinst made no /etc/rgpu/cluster.key"
[ "$(in_root stat -c '%a %U' /etc/rgpu/cluster.key)" = "600 root" ] || fail "/etc/rgpu/cluster.key is not root's, mode 600"
in_root id _rgpu > /dev/null || fail "no system user _rgpu"
in_root systemctl is-active -q rgpu-scheduler || { in_root journalctl -u rgpu-scheduler --no-pager | tail -20; fail "rgpu-scheduler is not running after install"; }
in_root systemctl is-enabled -q rgpu-server || fail "rgpu-server is not enabled"
in_root test -e /etc/slurm/plugstack.conf.d/rgpu.conf || fail "no plugstack snippet"
grep -qx "/usr/lib/x86_64-linux-gnu/librgpu-opencl.so.1" "$root/etc/OpenCL/vendors/rgpu.icd" ||
    fail "rgpu.icd does not name the installed ICD"

step "configure through /etc/rgpu and start the units"
# As an operator would: the server learns the scheduler's address from its
# file; the scheduler and the client keep their defaults (127.0.0.1:7080),
# and all three use the cluster key the scheduler's package made.
for f in server scheduler client; do
    in_root test -e "/etc/rgpu/$f.conf" || fail "no /etc/rgpu/$f.conf installed"
done
sed -i 's|^#scheduler = .*|scheduler = 127.0.0.1:7080|; s|^#listen = .*|listen = 127.0.0.1:7070|' \
    "$root/etc/rgpu/server.conf"
grep -q '^scheduler = 127.0.0.1:7080$' "$root/etc/rgpu/server.conf" || fail "server.conf has no scheduler line to set"
# Type=notify: start returns once the server listens (or fails).
in_root timeout 60 systemctl restart rgpu-server ||
    { in_root journalctl -u rgpu-server --no-pager | tail -30; fail "rgpu-server did not start"; }
servers=
for _ in $(seq 1 150); do
    servers=$(in_root rgpu servers 2>/dev/null || true)
    grep -q "127.0.0.1:7070" <<< "$servers" && grep -qi " up" <<< "$servers" && break
    sleep 0.2
done
echo "$servers"
grep -q "127.0.0.1:7070" <<< "$servers" || fail "rgpu-server did not register with rgpu-scheduler within 30 s"
for unit in rgpu-server rgpu-scheduler; do
    pid=$(in_root systemctl show -P MainPID "$unit")
    [ "$(in_root stat -c %U "/proc/$pid")" = _rgpu ] || fail "$unit does not run as _rgpu"
done

run_demo() {
    local out
    out=$(in_root timeout 120 rgpu alloc -n 1 -- env OCL_ICD_VENDORS=/etc/OpenCL/vendors/rgpu.icd \
              /var/tmp/rgpu/vector_add 65536 2>&1) || { echo "$out" >&2; return 1; }
    echo "$out" | grep 'vector_add:'
    grep -q '(platform "rgpu"): results checked, PASS$' <<< "$out"
}

step "demo: rgpu alloc -- vector_add through the installed units"
run_demo || { in_root journalctl -u rgpu-server -u rgpu-scheduler --no-pager | tail -30; fail "the demo"; }

step "systemd-analyze security of the units"
for unit in rgpu-server rgpu-scheduler; do
    echo "$unit: $(in_root systemd-analyze security --no-pager "$unit.service" | grep -i 'overall exposure')"
done

step "upgrade in place to $newer"
lease_out=$(in_root rgpu alloc -n 1 --shared --mem 16M --ttl 3600) || fail "rgpu alloc of the lease that must survive"
lease=$(grep -oE 'lease [0-9]+' <<< "$lease_out" | head -1 | awk '{print $2}')
[ -n "$lease" ] || { echo "$lease_out" >&2; fail "no lease id in rgpu alloc's output"; }
sched_pid=$(in_root systemctl show -P MainPID rgpu-scheduler)
server_pid=$(in_root systemctl show -P MainPID rgpu-server)
in_root sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q /var/tmp/rgpu/v2/*.deb' \
    < /dev/null > "$work/upgrade.log" 2>&1 || { tail -30 "$work/upgrade.log" >&2; fail "apt-get install of $newer"; }
for p in rgpu-server rgpu-scheduler rgpu-client slurm-spank-rgpu; do
    [ "$(in_root dpkg-query -W -f='${Version}' "$p")" = "$newer" ] || fail "$p is not at $newer after the upgrade"
done
grep -q '^scheduler = 127.0.0.1:7080$' "$root/etc/rgpu/server.conf" || fail "the upgrade lost the change to server.conf"
in_root systemctl is-active -q rgpu-scheduler || fail "rgpu-scheduler is not running after the upgrade"
[ "$(in_root systemctl show -P MainPID rgpu-scheduler)" != "$sched_pid" ] || fail "rgpu-scheduler was not restarted by the upgrade"
[ "$(in_root systemctl show -P MainPID rgpu-server)" = "$server_pid" ] ||
    fail "rgpu-server was restarted by the upgrade (it must keep its sessions until the operator restarts it)"
in_root rgpu leases | grep -qE "^$lease[[:space:]]" || { in_root rgpu leases; fail "lease $lease did not survive the upgrade"; }
echo "lease $lease survived the scheduler's restart; rgpu-server kept running (pid $server_pid)"
in_root rgpu release "$lease" > /dev/null || fail "rgpu release $lease"
in_root timeout 60 systemctl restart rgpu-server || fail "rgpu-server $newer did not start"
for _ in $(seq 1 150); do
    in_root rgpu servers 2>/dev/null | grep "127.0.0.1:7070" | grep -qi " up" && break
    sleep 0.2
done
run_demo || { in_root journalctl -u rgpu-server -u rgpu-scheduler --no-pager | tail -30; fail "the demo after the upgrade"; }

step "purge"
# --autoremove: the libraries installed for rgpu's packages go too.
in_root sh -c 'DEBIAN_FRONTEND=noninteractive apt-get purge -y -q --autoremove rgpu-server rgpu-scheduler rgpu-client slurm-spank-rgpu' \
    < /dev/null > "$work/purge.log" 2>&1 || { tail -30 "$work/purge.log" >&2; fail "apt-get purge"; }
for unit in rgpu-server rgpu-scheduler; do
    [ "$(in_root systemctl show -P LoadState "$unit")" = not-found ] || fail "$unit.service is still known to systemd"
    # (minbase has no pgrep: the processes' names, from /proc)
    in_root sh -c 'cat /proc/[0-9]*/comm 2>/dev/null' | grep -qx "$unit" && fail "$unit still runs after the purge"
done
listing > "$work/after.txt"
# Debian policy keeps the system user: its entries in the account files are
# changes to files that were there, not new files. Backups of those files
# (passwd-, group-, ...) are made by the tools that add users.
left=$(comm -13 "$work/before.txt" "$work/after.txt" | grep -vE '^\./etc/(passwd|group|shadow|gshadow|subuid|subgid)-$' || true)
gone=$(comm -23 "$work/before.txt" "$work/after.txt" || true)
[ -z "$left" ] || { echo "$left" >&2; fail "files left behind by the purge (above)"; }
[ -z "$gone" ] || { echo "$gone" >&2; fail "files of the base system removed (above)"; }
in_root id _rgpu > /dev/null && echo "kept, as Debian policy says: the system user _rgpu"
echo "nothing else left behind"

step "done"
total=$(( $(date +%s) - test_start ))
printf '%s\n' "${timings[@]}"
echo "test-packages: $total s in all"
echo "test-packages: 1 passed, 0 failed"
