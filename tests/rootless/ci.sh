#!/usr/bin/env bash
# The integration suite a second time, as a non-root user with subordinate id ranges (issue 17).
# Run as root by .ci/run after tests/run.sh. Makes the user (pybuild-ci, or $PYBUILD_ROOTLESS_USER)
# with /etc/subuid and /etc/subgid ranges, copies the checkout where the user can read it (a CI
# clone may sit under root's 0700 home), gives the user a venv with pybuild's dependencies (the
# checkout on PYTHONPATH, no install), and runs the CLI-driven integration tests with
# PYBUILD_TEST_ROOTLESS=1: the CLI enters its own user namespace; tests marked root_only (root
# in the test process itself: umoci unpack, memory cgroups, security.capability on context
# files) skip. Extra CI time: ~5 minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
user=${PYBUILD_ROOTLESS_USER:-pybuild-ci}
if ! id "$user" >/dev/null 2>&1; then
  useradd -m -s /bin/sh "$user"
fi
home=$(getent passwd "$user" | cut -d: -f6)
uid=$(id -u "$user")
start=$((400000 + (uid % 1000) * 65536))
grep -q "^$user:" /etc/subuid 2>/dev/null || usermod --add-subuids "$start-$((start + 65535))" "$user"
grep -q "^$user:" /etc/subgid 2>/dev/null || usermod --add-subgids "$start-$((start + 65535))" "$user"

src="$home/pybuild-src"
rm -rf "$src"
mkdir -p "$src"
tar --exclude=.git --exclude=__pycache__ --exclude='*.egg-info' -c . | tar -C "$src" -x
ln -sfn "$(cd .. && pwd)/shared" "$home/shared" 2>/dev/null || true  # conformance data, if beside the checkout
chown -R "$user:" "$src"

as_user() { setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups env HOME="$home" USER="$user" "$@"; }
venv="$home/venv"
if ! as_user "$venv/bin/python" -c 'import lark, zstandard, yaml, rich, requests, pytest' 2>/dev/null; then
  as_user /usr/bin/python3 -m venv "$venv"
  as_user "$venv/bin/pip" install -q --disable-pip-version-check lark zstandard pyyaml rich requests isal \
    pytest hypothesis jsonschema
fi

tests=(
  tests/integration/test_build_basic.py tests/integration/test_build_cache.py
  tests/integration/test_build_config.py tests/integration/test_build_features.py
  tests/integration/test_build_more.py tests/integration/test_build_copy_symlink_dest.py
  tests/integration/test_build_onbuild_stage.py tests/integration/test_build_links_xattrs.py
  tests/integration/test_cli_run.py tests/integration/test_cli_images.py
  tests/integration/test_registry_cli.py tests/integration/test_registry_transfer.py
  tests/integration/test_registry_build.py tests/integration/test_registry_cache.py
  tests/integration/test_build_registry.py
)
cd "$src"
exec setpriv --reuid="$user" --regid="$(id -g "$user")" --init-groups \
  env HOME="$home" USER="$user" PYTHONPATH="$src" PYBUILD_TEST_ROOTLESS=1 TMPDIR=/tmp \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider -m 'not slow' "${tests[@]}" "$@"
