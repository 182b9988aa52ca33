#!/usr/bin/env bash
# Builds rgpu's Debian packages (debian/) from the committed tree, out of a
# copy, so that a build never writes into the checkout.
#
#   bash scripts/build-packages.sh                  # amd64 (the build machine's)
#   bash scripts/build-packages.sh --arch arm64     # rgpu-client, cross-built
#   bash scripts/build-packages.sh --version 0.1.0+1 --out DIR
#
# --version builds the same tree under another version (a changelog entry is
# added to the copy): scripts/test-packages.sh upgrades to it. --lintian runs
# lintian on the result and fails on any error or warning it reports (the
# tags left are explained in debian/*.lintian-overrides). The packages land in
# --out (default build-pkg/debs/ARCH). Needs root for apt (build
# dependencies, and the cross toolchain for arm64).
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
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "build-packages: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
native=$(dpkg --print-architecture)
out=${out:-$root/build-pkg/debs/$arch}
mkdir -p "$out"
out=$(cd "$out" && pwd)

export DEBIAN_FRONTEND=noninteractive
apt_get() { apt-get -o DPkg::Lock::Timeout=120 "$@"; }
need=()
for p in debhelper devscripts dpkg-dev fakeroot lintian; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    apt_get update -qq
    apt_get install -y -qq --no-install-recommends "${need[@]}"
fi

# The copy: the committed tree (git archive), in a fresh directory whose
# parent receives dpkg-buildpackage's output.
work=$(mktemp -d /tmp/rgpu-pkg.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
git archive HEAD | tar -x -C "$work/src"
cd "$work/src"

if [ -n "$version" ]; then
    # A new changelog entry on top, in the format dpkg-parsechangelog reads.
    { printf 'rgpu (%s) unstable; urgency=medium\n\n  * Rebuilt as %s by scripts/build-packages.sh.\n\n -- %s  %s\n\n' \
          "$version" "$version" "$(dpkg-parsechangelog -S Maintainer)" "$(date -R)"
      cat debian/changelog; } > debian/changelog.new
    mv debian/changelog.new debian/changelog
fi

profile=()
host=()
if [ "$arch" != "$native" ]; then
    # Compute nodes' architecture: only the client packages, cross-built.
    profile=(-Ppkg.rgpu.client-only)
    host=(-a"$arch")
    dpkg --print-foreign-architectures | grep -qx "$arch" || { dpkg --add-architecture "$arch"; apt_get update -qq; }
    gnu=$(dpkg-architecture -a"$arch" -qDEB_HOST_GNU_TYPE 2>/dev/null)
    command -v "$gnu-gcc" >/dev/null || apt_get install -y -qq --no-install-recommends "crossbuild-essential-$arch"
fi
# The build dependencies of debian/control, for the host architecture and
# profile (mk-build-deps would install a package of its own: apt does it
# from the directory).
if ! dpkg-checkbuilddeps "${host[@]}" "${profile[@]}" 2>/dev/null; then
    apt_get update -qq
    apt_get build-dep -y -qq "${host[@]/-a/--host-architecture=}" "${profile[@]/-P/--build-profiles=}" ./
fi

start=$(date +%s)
if [ "$arch" = "$native" ]; then
    dpkg-buildpackage -us -uc -b -j"$(nproc)" > "$work/build.log" 2>&1 || { tail -60 "$work/build.log" >&2; exit 1; }
else
    DEB_BUILD_PROFILES=pkg.rgpu.client-only dpkg-buildpackage -us -uc -B "${host[@]}" "${profile[@]}" \
        -j"$(nproc)" > "$work/build.log" 2>&1 || { tail -60 "$work/build.log" >&2; exit 1; }
fi
echo "build-packages: built in $(( $(date +%s) - start )) s:"
changes=$(ls "$work"/*.changes)
cp "$work"/*.deb "$changes" "$work"/*.buildinfo "$out"/ 2>/dev/null || true
(cd "$out" && ls -1 ./*.deb | sed 's/^/  /')

if [ "$run_lintian" = 1 ]; then
    # --fail-on warning: an unexplained warning or error fails the build.
    lintian --fail-on error,warning --info --display-info "$out/$(basename "$changes")"
    echo "build-packages: lintian reports no error or warning"
fi
