#!/usr/bin/env bash
# Make a tiny root filesystem tarball from Debian's busybox-static package:
#   examples/make-busybox-rootfs.sh OUT.tar
# The tarball is what `pybuild import OUT.tar busybox:latest` turns into a base image.
set -euo pipefail
out=${1:?usage: $0 OUT.tar}
bb=/bin/busybox
if ! "$bb" --list >/dev/null 2>&1; then
  echo "busybox-static is not installed (apt-get install busybox-static)" >&2
  exit 1
fi
dir=$(mktemp -d)
chmod 0755 "$dir"
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir"/{bin,etc,tmp,root,home,var,usr/bin,usr/local/bin}
chmod 1777 "$dir/tmp"
cp "$bb" "$dir/bin/busybox"
for applet in $("$bb" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$dir/bin/$applet"
done
cat >"$dir/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat >"$dir/etc/group" <<'G'
root:x:0:
daemon:x:1:
nogroup:x:65534:
G
# Fixed mtimes and order: the same busybox gives the same tarball (and base layer) every time.
tar --numeric-owner --owner=0 --group=0 --sort=name --mtime=@1700000000 -C "$dir" -cf "$out" .
echo "$out"
