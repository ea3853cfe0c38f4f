#!/usr/bin/env bash
# Build, once, the KVM guest of tests/vm (issue 17: rootless limits under a delegated cgroup v2
# subtree, which this kind of host cannot give: its cgroup2 tree is empty, every controller is
# bound to v1). Prints the directory holding it: vmlinuz (Debian's own kernel, extracted from
# its .deb) and rootfs.cpio (uncompressed: gunzip costs ~5 s of an emulated CPU; a debootstrap'ed bookworm minbase with python3, pybuild's
# dependencies as Debian packages, uidmap, busybox-static and a user `tester` (uid 1000) with
# a subordinate id range). The root filesystem is the initramfs, so the guest needs no kernel
# module and no disk; tests/vm/run.py appends a second archive at boot (/init, the checkout).
# Cached under $PYBUILD_VM_CACHE (default /var/cache/pybuild-ci/vm)/<hash of this file>,
# built in a temporary directory and renamed into place (atomic; a half-built one is never
# used). The Debian archive is the one this machine's apt uses (examples/debian-mirror.sh).
# Root only (debootstrap). Cold: ~2 minutes here; warm: nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${PYBUILD_VM_CACHE:-/var/cache/pybuild-ci/vm}
key=$(sha256sum <"$here/provision.sh" | cut -c1-16)
out="$cache/$key"
if [ -f "$out/vmlinuz" ] && [ -f "$out/rootfs.cpio" ]; then
  echo "$out"
  exit 0
fi
die() { echo "tests/vm/provision.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap is not installed"
mirror=$(sh "$repo/examples/debian-mirror.sh") || die "no Debian archive in this machine's apt sources"
mkdir -p "$cache"
work=$(mktemp -d "$cache/.build-XXXXXX")
cleanup() {  # debootstrap mounts proc and sys in the target: never rm -rf into those
  grep -o " $work/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT

# The kernel: the package linux-image-amd64 points at, unpacked (not installed).
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$kpkg" ]; then
  apt-get update -qq
  kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
[ -n "$kpkg" ] || die "no linux-image-amd64 in the apt sources"
dl() { (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root "$kpkg"); }
dl 2>/dev/null || { apt-get update -qq && dl; } || die "apt-get download $kpkg failed"
dpkg-deb --fsys-tarfile "$work"/linux-image-*.deb | tar -C "$work" -x --wildcards './boot/vmlinuz-*'
mkdir -p "$work/out"
mv "$work"/boot/vmlinuz-* "$work/out/vmlinuz"

# The root filesystem. Python libraries through apt in the chroot: debootstrap's --include
# configures them in an order py3compile fails on (python3-zstandard before python3).
r="$work/rootfs"
debootstrap --variant=minbase --include=python3,uidmap,busybox-static,iproute2 \
  bookworm "$r" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 5 "$work/debootstrap.log" >&2; die "debootstrap from $mirror failed"; }
mount -t proc proc "$r/proc"
DEBIAN_FRONTEND=noninteractive chroot "$r" apt-get install -y -qq --no-install-recommends \
  python3-lark python3-zstandard python3-yaml python3-rich >"$work/apt.log" 2>&1 ||
  { tail -n 5 "$work/apt.log" >&2; die "apt-get install in the guest's root filesystem failed"; }
umount "$r/proc"
rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/usr/share/doc "$r"/usr/share/man \
  "$r"/usr/share/locale "$r"/usr/share/info
# The test user, with a subordinate id range as useradd gives one (uid 1000).
chroot "$r" useradd -m -u 1000 -s /bin/sh tester
grep -q '^tester:' "$r/etc/subuid" || echo 'tester:100000:65536' >>"$r/etc/subuid"
grep -q '^tester:' "$r/etc/subgid" || echo 'tester:100000:65536' >>"$r/etc/subgid"
python3 "$here/cpio.py" "$r" >"$work/out/rootfs.cpio"
mv "$work/out" "$out.new.$$"
mv -T "$out.new.$$" "$out" 2>/dev/null || rm -rf "$out.new.$$"  # a concurrent build won: use its
echo "$out"
