#!/usr/bin/env bash
# Command two of the README: install everything the tests need, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=$(grep -v '^\s*#' tests/apt-packages.txt | tr '\n' ' ')
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=$(for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    apt-get update -qq
    # never start a service from a package (docker.io's dockerd): the tests start what they need
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
    [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
  fi
fi
# /dev/net/tun as Debian's udev rules make it (0666: opening it grants nothing by itself):
# rootless pasta needs it, and this machine kind creates it root-only.
if [ "$(id -u)" = 0 ] && [ -c /dev/net/tun ]; then
  chmod 0666 /dev/net/tun
fi
# The guest of tests/vm (a pure cgroup v2 kernel, issue 17): built once, cached (~70 s cold).
if [ "$(id -u)" = 0 ] && command -v qemu-system-x86_64 >/dev/null; then
  bash tests/vm/provision.sh >/dev/null || echo "tests/run.sh: tests/vm/provision.sh failed (tests/vm will say why)" >&2
fi
# The reference BuildKit for tests/differential (root only; `start` is idempotent).
if [ "$(id -u)" = 0 ] && [ -f ../shared/tools/buildkit-reference ]; then
  bash ../shared/tools/buildkit-reference start >/dev/null
fi
# Debian root filesystems with Python 3.13 (trixie) and 3.14 (forky) for
# tests/integration/test_package_pythons.py (issue 18); cached, so a rerun costs nothing. A failure
# does not stop the suite: that test then fails on CI, naming the missing rootfs.
if [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null; then
  bash tests/pythons/provision.sh || echo "run.sh: tests/pythons/provision.sh failed (see above)" >&2
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]' --config-settings editable_mode=compat 2>&1 | grep -v -e '^WARNING: Location' -e 'Running pip as the' || true
exec python3 -m pytest -q -m 'not slow' "$@"
