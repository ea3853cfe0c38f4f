#!/usr/bin/env bash
# Command one of the README: on a fresh Debian machine (as root), install pybuild, make a
# busybox base image, build examples/hello and run it. No container registry needed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! dpkg -s busybox-static >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e . --config-settings editable_mode=compat 2>&1 | grep -v -e '^WARNING: Location' -e 'Running pip as the' || true
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bash examples/make-busybox-rootfs.sh "$tmp/busybox.tar" >/dev/null
pybuild import "$tmp/busybox.tar" busybox:latest
pybuild build -t hello examples/hello
pybuild run --rm hello
