#!/usr/bin/env sh
# Print the Debian archive this machine's apt uses (its first "debian" URI), for debootstrap:
#   debootstrap --variant=minbase bookworm /tmp/rootfs "$(examples/debian-mirror.sh)"
# Reads deb822 sources (sources.list.d/*.sources) and one-line ones (sources.list, *.list) under
# $APT_ETC (default /etc/apt); prefers a URI whose path ends in /debian (not debian-security).
# Exit 1 when none is configured.
set -eu
etc=${APT_ETC:-/etc/apt}
uris=$( { cat "$etc"/sources.list.d/*.sources 2>/dev/null | awk '$1=="URIs:"{for(i=2;i<=NF;i++)print $i}';
          cat "$etc"/sources.list "$etc"/sources.list.d/*.list 2>/dev/null |
            awk '$1=="deb"{o=0; for(i=2;i<=NF;i++){ if($i ~ /^\[/) o=1; if(!o){print $i; break}; if($i ~ /\]$/) o=0 }}'; } || true)
best=$(printf '%s\n' "$uris" | grep -E '/debian/?$' | head -n1 || true)
[ -n "$best" ] || best=$(printf '%s\n' "$uris" | grep -v -e security -e '^$' | head -n1 || true)
[ -n "$best" ] || { echo "debian-mirror: no Debian archive in the apt sources" >&2; exit 1; }
printf '%s\n' "${best%/}"
