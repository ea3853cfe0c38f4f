#!/usr/bin/env bash
# Pythons CI tests the wheel with besides the machine's own (issue 18): a Debian root filesystem
# per suite, made with debootstrap from the archive this machine's apt sources name
# (examples/debian-mirror.sh; no host is named here), holding python3, python3-venv, python3-pip,
# ca-certificates and zstd:
#   trixie -> Python 3.13 (required: tests/integration/test_package_pythons.py fails on CI without it)
#   forky  -> Python 3.14 (an extra: Debian testing, so a transiently uninstallable suite only skips)
# Python 3.12 is in no Debian suite, so it has no rootfs here.
#
#   tests/pythons/provision.sh [SUITE...]      (default: trixie forky; root only)
#
# Each rootfs is cached at $PYBUILD_CI_PYTHONS/SUITE (default /var/cache/pybuild-ci/pythons/SUITE): a rerun
# with a complete rootfs of the same package list and younger than $PYBUILD_CI_PYTHONS_MAX_AGE days
# (default 30) does nothing. A rootfs is built in a hidden temporary directory beside it and
# renamed into place only when complete, so a killed run leaves no half-made rootfs (the next run
# unmounts what debootstrap had mounted in the leftover and deletes it). Suites are made in
# parallel; runs for one suite serialize on its lock. Exit 1 if any suite could not be
# provisioned (the others still are). Uncached: ~40-60 s for both on an idle 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
cache=${PYBUILD_CI_PYTHONS:-/var/cache/pybuild-ci/pythons}
max_age=${PYBUILD_CI_PYTHONS_MAX_AGE:-30}
# zstd: the unit tests' bench smoke test runs its CLI (tests/integration/test_package_pythons.py runs them)
include=python3,python3-venv,python3-pip,ca-certificates,zstd
[ $# -gt 0 ] || set -- trixie forky

say() { echo "provision: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "needs root (debootstrap, chroot)"; exit 1; }
command -v debootstrap >/dev/null || { say "debootstrap is not installed (tests/apt-packages.txt lists it)"; exit 1; }
mirror=$(sh examples/debian-mirror.sh) || exit 1

# Unmount whatever is mounted under $1 (debootstrap mounts proc and sys in its target; a killed
# run leaves them), deepest first, then delete it without crossing into another filesystem.
discard() {
  local d=$1 m
  [ -e "$d" ] || return 0
  while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done < <(awk -v p="$d/" '{ m = $2; gsub(/\\040/, " ", m); if (index(m "/", p) == 1) print m }' /proc/self/mounts | sort -r)
  rm -rf --one-file-system "$d"
}

provision() {  # one suite, under its own lock; returns 1 when it could not be made
  local suite=$1 dest=$cache/$1 stamp="suite=$1 include=$include" tmp start version old
  local script=()  # bookworm's debootstrap has no script for suites newer than trixie: they bootstrap like sid
  [ -e "/usr/share/debootstrap/scripts/$suite" ] || script=(/usr/share/debootstrap/scripts/sid)
  exec 9>"$cache/.$suite.lock"
  flock -w 1200 9 || { say "$suite: another provision holds $cache/.$suite.lock"; return 1; }
  if [ -f "$dest/.pybuild-provisioned" ] && [ "$(head -n1 "$dest/.pybuild-provisioned")" = "$stamp" ] &&
     [ -z "$(find "$dest/.pybuild-provisioned" -mtime +"$max_age")" ]; then
    say "$suite: cached at $dest ($(chroot "$dest" python3 --version 2>&1))"
    return 0
  fi
  for old in "$cache/.$suite".tmp.* "$cache/.$suite.old"; do discard "$old"; done  # a killed run's leftovers
  tmp=$(mktemp -d "$cache/.$suite.tmp.XXXXXX")
  trap 'discard "'"$tmp"'"' EXIT
  start=$SECONDS
  if ! debootstrap --variant=minbase --include="$include" "$suite" "$tmp/root" "$mirror" "${script[@]}" >"$tmp/log" 2>&1; then
    say "$suite: debootstrap from $mirror failed: $(grep -E '^(E|W):' "$tmp/log" | tail -n3 | tr '\n' ' ')"
    return 1
  fi
  if ! version=$(chroot "$tmp/root" python3 -c 'import ensurepip, venv, ssl, sys; print(sys.version.split()[0])' 2>&1); then
    say "$suite: its python3 cannot make venvs: $version"
    return 1
  fi
  rm -f "$tmp/root/var/cache/apt/archives/"*.deb
  printf '%s\npython %s\n' "$stamp" "$version" >"$tmp/root/.pybuild-provisioned"
  [ ! -e "$dest" ] || mv -T "$dest" "$cache/.$suite.old"
  mv -T "$tmp/root" "$dest"
  discard "$cache/.$suite.old"
  say "$suite: Python $version at $dest in $((SECONDS - start)) s"
}

mkdir -p "$cache"
pids=()
for suite in "$@"; do  # the suites at once: most of a debootstrap is waiting on downloads
  ( provision "$suite" ) &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
