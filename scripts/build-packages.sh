#!/usr/bin/env bash
# Builds rgpu's Debian packages (debian/) from the committed tree, in a
# clean Debian 12 build root, as Debian's own builders do: nothing is
# installed on this machine (the build dependencies, the arm64 -dev
# packages and the cross compiler go into the build root), and the checkout
# is never written to.
#
#   bash scripts/build-packages.sh                  # amd64 (this machine's)
#   bash scripts/build-packages.sh --arch arm64     # rgpu-client, cross-built
#   bash scripts/build-packages.sh --version 0.1.0+1 --out DIR
#
# --version builds the same tree under another version (a changelog entry is
# added to the copy): scripts/test-packages.sh upgrades to it. --lintian runs
# lintian on the result and fails on any error or warning it reports (the
# tags left are explained in debian/*.lintian-overrides). The packages land in
# --out (default build-pkg/debs/ARCH).
#
# The build root is made once by debootstrap (Debian's mirror) and kept in
# $RGPU_PKG_CACHE/bookworm-build-ARCH (default /var/cache/rgpu-pkg), with
# the build dependencies apt installed there: a second build starts at once.
# Needs root (debootstrap, systemd-nspawn).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

arch=$(dpkg --print-architecture)
version=
out=
run_lintian=0
while [ $# -gt 0 ]; do
    case "$1" in
        --arch) arch=$2; shift 2 ;;
        --version) version=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --lintian) run_lintian=1; shift ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "build-packages: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
native=$(dpkg --print-architecture)
out=${out:-$root/build-pkg/debs/$arch}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "build-packages: needs root (debootstrap, systemd-nspawn)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
need=()
for p in debootstrap systemd-container dpkg-dev lintian; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    apt-get -o DPkg::Lock::Timeout=120 update -qq
    apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends "${need[@]}"
fi

cache=${RGPU_PKG_CACHE:-/var/cache/rgpu-pkg}
mirror=${RGPU_PKG_MIRROR:-http://deb.debian.org/debian}
broot=$cache/bookworm-build-$arch
mkdir -p "$cache"
# One build at a time in a build root.
exec 9> "$broot.lock"
flock -w 1800 9 || { echo "build-packages: $broot is busy (another build)" >&2; exit 1; }
if [ ! -e "$broot/etc/os-release" ]; then
    echo "build-packages: making the build root $broot (debootstrap, once)"
    rm -rf "$broot.tmp"
    debootstrap --variant=buildd bookworm "$broot.tmp" "$mirror" > "$cache/debootstrap-$arch.log" 2>&1 ||
        { tail -20 "$cache/debootstrap-$arch.log" >&2; exit 1; }
    mv "$broot.tmp" "$broot"
fi
# Commands in the build root: its own file system, this machine's network
# (for apt), not booted.
# The CUDA toolkit is not in Debian's main archive (NVIDIA's license): where
# this machine has it in /usr/local/cuda, the build root sees it read-only,
# and rgpu-client gains rgpu's CUDA runtime (client/cuda/, issue 15).
cuda=()
if [ -e /usr/local/cuda/include/cuda_runtime_api.h ]; then
    cuda=(--bind-ro="$(readlink -f /usr/local/cuda)":/usr/local/cuda)
    echo "build-packages: with the CUDA toolkit of $(readlink -f /usr/local/cuda)"
fi
in_build() {
    systemd-nspawn -q -D "$broot" --register=no --keep-unit --pipe "${cuda[@]}" \
        --setenv=DEBIAN_FRONTEND=noninteractive --setenv=LC_ALL=C.UTF-8 "$@" < /dev/null
}

# The copy: the committed tree (git archive), in /build of the build root,
# whose parent directory receives dpkg-buildpackage's output.
rm -rf "$broot/build"
mkdir -p "$broot/build/src"
git archive HEAD | tar -x -C "$broot/build/src"
trap 'rm -rf "$broot/build"' EXIT
log=$broot/build/build.log

if [ -n "$version" ]; then
    # A new changelog entry on top, in the format dpkg-parsechangelog reads.
    src=$broot/build/src
    { printf 'rgpu (%s) unstable; urgency=medium\n\n  * Rebuilt as %s by scripts/build-packages.sh.\n\n -- %s  %s\n\n' \
          "$version" "$version" "$(dpkg-parsechangelog -l "$src/debian/changelog" -S Maintainer)" "$(date -R)"
      cat "$src/debian/changelog"; } > "$src/debian/changelog.new"
    mv "$src/debian/changelog.new" "$src/debian/changelog"
fi

native=$(dpkg --print-architecture)
cross=()
if [ "$arch" != "$native" ]; then
    # Compute nodes' architecture: only the client packages, cross-built.
    cross=(--host-architecture="$arch" --build-profiles=pkg.rgpu.client-only)
    in_build sh -c "dpkg --print-foreign-architectures | grep -qx $arch || dpkg --add-architecture $arch"
fi
start=$(date +%s)
# The build dependencies of debian/control (for the host architecture and
# profile), from the directory; the cross compiler for a cross build.
in_build sh -c "apt-get update -qq && cd /build/src && apt-get build-dep -y -qq ${cross[*]} ./ &&
    { [ $arch = $native ] || apt-get install -y -qq --no-install-recommends crossbuild-essential-$arch; }" \
    > "$log" 2>&1 || { tail -40 "$log" >&2; echo "build-packages: installing the build dependencies failed" >&2; exit 1; }
echo "build-packages: build dependencies ready in $(( $(date +%s) - start )) s"

start=$(date +%s)
if [ "$arch" = "$native" ]; then
    in_build sh -c "cd /build/src && dpkg-buildpackage -us -uc -b -j$(nproc)" >> "$log" 2>&1 ||
        { tail -60 "$log" >&2; exit 1; }
else
    in_build sh -c "cd /build/src && DEB_BUILD_PROFILES=pkg.rgpu.client-only dpkg-buildpackage -us -uc -B \
        -a$arch -Ppkg.rgpu.client-only -j$(nproc)" >> "$log" 2>&1 || { tail -60 "$log" >&2; exit 1; }
fi
echo "build-packages: built in $(( $(date +%s) - start )) s:"
changes=$(ls "$broot"/build/*.changes)
cp "$broot"/build/*.deb "$changes" "$broot"/build/*.buildinfo "$out"/
(cd "$out" && ls -1 ./*.deb | sed 's/^/  /')

if [ "$run_lintian" = 1 ]; then
    # --fail-on warning: an unexplained warning or error fails the build.
    lintian --fail-on error,warning --info --display-info "$out/$(basename "$changes")"
    echo "build-packages: lintian reports no error or warning"
fi
