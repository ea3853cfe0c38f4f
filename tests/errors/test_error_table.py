"""Error quality, table-driven: bad inputs through the real CLI entry point (`python -m builder.cli`).

Owns: one row per bad input (Dockerfile mistakes, bad flags, missing sources, unknown bases,
failing RUNs, bad platforms, registry auth failures, no overlayfs, no privileges, unknown images,
usage errors), each asserting the EXACT first line of stderr and the exit code, plus that no
traceback is ever shown. Rows whose message holds a random path or port use a regex that is
anchored at both ends (`re.fullmatch`), so they are as strict as the literal rows otherwise.
Must not: loosen a row to "contains"; a message change must change the table on purpose.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli
from tests.fixtures.registry import docker_config, registry, registry_basic  # noqa: F401
from tests.integration.buildlib import make_busybox_image, write_ctx


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    dockerfile: str | None  # None: not a build; args are the whole command line
    args: tuple[str, ...] = ()
    first_line: str = ""  # exact text, or a regex when `regex`
    code: int = 1
    regex: bool = False
    files: dict = field(default_factory=dict)
    stdin: bytes | None = None


def _fill(text: str, subst: dict[str, str]) -> str:
    # Plain replacement, not str.format: Dockerfiles hold ${VARS} and JSON braces.
    for k, v in subst.items():
        text = text.replace("{" + k + "}", v)
    return text


def _first_line(stderr: bytes) -> str:
    for ln in stderr.decode(errors="replace").splitlines():
        if ln.strip():
            return ln
    return ""


def _check(row: Row, p: subprocess.CompletedProcess, subst: dict[str, str]) -> None:
    err = p.stderr.decode(errors="replace")
    assert "Traceback" not in err, err
    assert "internal error" not in err, err
    expected = _fill(row.first_line, subst)
    got = _first_line(p.stderr)
    if row.regex:
        assert re.fullmatch(expected, got), f"{got!r} !~ {expected!r}"
    else:
        assert got == expected
    assert p.returncode == row.code, err


# ---- Dockerfile / build rows: `pybuild build --progress=quiet [args] CTX` on a busybox store ----
BUILD_ROWS = [
    Row("unknown-instruction", "FRM busybox\n", first_line="Dockerfile:1:1: error: unknown instruction: FRM"),
    Row("bad-flag", "FROM busybox\nCOPY --frm=a f.txt /\n", first_line="Dockerfile:2:6: error: unknown flag: frm"),
    Row("missing-copy-source", "FROM busybox\nCOPY nope.txt /\n",
        first_line='Dockerfile:2:1: error: source "nope.txt" not found in build context'),
    Row("copy-outside-context", "FROM busybox\nCOPY ../outside /\n",
        first_line='Dockerfile:2:1: error: source "../outside" not found in build context'),
    Row("unknown-base-unreachable-registry", "FROM 127.0.0.1:1/nosuch/base\n",
        first_line="error: no image '127.0.0.1:1/nosuch/base' in the local store, and pulling it failed: "
                   "cannot reach registry 127.0.0.1:1: connection refused"),
    Row("unknown-base-bad-name", "FROM Busybox\n",
        first_line="error: no image 'Busybox' in the local store, and pulling it failed: invalid reference "
                   "'Busybox': 'Busybox' is not a valid repository name component (repository names must be lowercase)"),
    Row("from-empty-after-expansion", "FROM ${NOPE}\n", first_line="Dockerfile:1:1: error: FROM needs a base image"),
    Row("expose-not-a-port", "FROM busybox\nEXPOSE 80 abc\n",
        first_line="Dockerfile:2:1: error: EXPOSE: invalid containerPort: abc"),
    Row("failing-run", "FROM busybox\nRUN exit 3\n",
        first_line="Dockerfile:2:1: error: RUN 'exit 3' exited with status 3"),
    Row("run-command-not-found", "FROM busybox\nRUN nosuchcmd\n",
        first_line="Dockerfile:2:1: error: RUN 'nosuchcmd' exited with status 127"),
    Row("bad-platform", "FROM scratch\nRUN true\n", ("--platform", "linux/mips"),
        first_line="error: cannot run linux/mips binaries: no emulator is known for mips; run `pybuild setup "
                   "emulation` as root (needs Debian's qemu-user-static)"),
    Row("unparsable-platform", "FROM busybox\n", ("--platform", "notaplatform"),
        first_line="error: invalid platform 'notaplatform': unknown operating system or architecture", code=2),
    Row("bad-platform-in-list", "FROM busybox\n", ("--platform", "linux/amd64,linux/"),
        first_line="error: invalid platform 'linux/': expected os/arch[/variant]", code=2),
    Row("unsupported-mount-type", "FROM busybox\nRUN --mount=type=bogus true\n",
        first_line="Dockerfile:2:1: error: unsupported mount type 'bogus'"),
    Row("bad-run-network", "FROM busybox\nRUN --network=bogus true\n",
        first_line="Dockerfile:2:1: error: unsupported network mode: bogus"),
    Row("bad-duration", "FROM busybox\nHEALTHCHECK --interval=xyz CMD true\n",
        first_line="Dockerfile:2:1: error: --interval: invalid duration 'xyz'"),
    Row("bad-retries", "FROM busybox\nHEALTHCHECK --retries=abc CMD true\n",
        first_line="Dockerfile:2:1: error: --retries must be an integer, got 'abc'"),
    Row("duplicate-stage", "FROM busybox AS a\nFROM busybox AS a\n",
        first_line="Dockerfile:2:1: error: duplicate stage name 'a'"),
    Row("unterminated-heredoc", "# syntax=docker/dockerfile:1\nFROM busybox\nRUN <<EOF\n",
        first_line="Dockerfile:3:1: error: unterminated heredoc"),
    Row("empty-dockerfile", "", first_line="Dockerfile:1:1: error: file with no instructions"),
    Row("instruction-before-from", "ENV a=b\n",
        first_line="Dockerfile:1:1: error: ENV is not allowed before the first FROM (only ARG is)"),
    Row("onbuild-onbuild", "FROM busybox\nONBUILD ONBUILD RUN true\n",
        first_line="Dockerfile:2:1: error: Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    Row("from-no-args", "FROM busybox\nFROM\n",
        first_line="Dockerfile:2:1: error: FROM requires either one or three arguments"),
    Row("copy-one-arg", "FROM busybox\nCOPY f.txt\n",
        first_line="Dockerfile:2:1: error: COPY requires at least two arguments, but only one was provided. "
                   "Destination could not be determined."),
    Row("arg-no-args", "FROM busybox\nARG\n", first_line="Dockerfile:2:1: error: ARG requires at least one argument"),
    Row("shell-not-json", "FROM busybox\nSHELL sh -c\n",
        first_line="Dockerfile:2:1: error: SHELL requires the arguments to be in JSON form"),
    Row("unknown-user", "FROM busybox\nUSER nosuchuser\nRUN true\n",
        first_line="Dockerfile:3:1: error: unable to find user nosuchuser: no matching entries in passwd file"),
    # (COPY --chown=UNKNOWN is no error: BuildKit copies as 0:0; tests/differential copy_chown_unknown_*)
    Row("bad-chmod", "FROM busybox\nCOPY --chmod=999 f.txt /\n",
        first_line="Dockerfile:2:1: error: invalid --chmod value '999': want octal (0755) or symbolic (u+x,go-w)"),
    Row("missing-required-secret", "FROM busybox\nRUN --mount=type=secret,id=nope,required=true cat /run/secrets/nope\n",
        first_line="Dockerfile:2:1: error: secret 'nope' is required but was not given (--secret id=nope,...)"),
    Row("add-url-unreachable", "FROM busybox\nADD http://127.0.0.1:1/x /x\n",
        first_line="Dockerfile:2:1: error: ADD http://127.0.0.1:1/x: download failed: "
                   "<urlopen error [Errno 111] Connection refused>"),
    Row("unknown-target", "FROM busybox\n", ("--target", "nosuch"),
        first_line="error: target stage 'nosuch' could not be found"),
    Row("bad-tag", "FROM busybox\n", ("-t", "BAD TAG"),
        first_line="error: invalid tag 'BAD TAG': invalid reference 'BAD TAG': contains whitespace", code=2),
    Row("secret-file-missing", "FROM busybox\n", ("--secret", "id=x,src=/nonexistent-pybuild"),
        first_line="error: --secret 'id=x,src=/nonexistent-pybuild': /nonexistent-pybuild is not a file", code=2),
    Row("dockerfile-missing", "FROM busybox\n", ("-f", "/nonexistent-pybuild/Dockerfile"),
        first_line="error: Dockerfile not found: /nonexistent-pybuild/Dockerfile"),
    Row("bad-output-type", "FROM busybox\n", ("-o", "type=bogus"),
        first_line="error: --output type=bogus: unknown type 'bogus' (oci, docker, image, registry, local or tar)", code=2),
    Row("bad-network-flag", "FROM busybox\n", ("--network=bogus",),
        first_line="pybuild: error: argument --network: invalid choice: 'bogus' (choose from 'default', 'none', 'host')",
        code=2),
    Row("bad-pids-limit", "FROM busybox\n", ("--pids-limit", "0"),
        first_line="error: --pids-limit must be a positive number or -1 (no limit), not 0", code=2),
    Row("cache-from-missing", "FROM busybox\n", ("--cache-from", "type=local,src=/nonexistent-pybuild"),
        first_line="error: --cache-from /nonexistent-pybuild: not a pybuild cache export "
                   "([Errno 2] No such file or directory: '/nonexistent-pybuild/index.json')"),
]

# ---- other commands: args are the whole command line ----
COMMAND_ROWS = [
    Row("context-missing", None, ("build", "--progress=quiet", "/nonexistent-pybuild"),
        first_line="error: build context '/nonexistent-pybuild' does not exist"),
    Row("unknown-command", None, ("bogus",),
        first_line=r"pybuild: error: argument COMMAND: invalid choice: 'bogus' \(choose from .*\)", code=2, regex=True),
    Row("build-without-context", None, ("build",),
        first_line="pybuild: error: the following arguments are required: PATH | - | TARBALL", code=2),
    Row("inspect-unknown-image", None, ("inspect", "nosuch"), first_line="error: no image 'nosuch' in the local store"),
    Row("rmi-unknown-image", None, ("rmi", "nosuch"), first_line="error: no image 'nosuch' in the local store"),
    Row("history-unknown-image", None, ("history", "nosuch"), first_line="error: no image 'nosuch' in the local store"),
    Row("tag-bad-name", None, ("tag", "busybox", "BAD"),
        first_line="error: invalid reference 'BAD': 'BAD' is not a valid repository name component "
                   "(repository names must be lowercase)"),
    # --format is docker's Go-template language: plain text is a valid template (printed per
    # row, as docker does); a malformed one is a usage error before any work
    Row("images-bad-format", None, ("images", "--format", "{{.Repository"),
        first_line="error: template parsing error: template: :1: unclosed action", code=2),
    Row("inspect-bad-format", None, ("inspect", "-f", "{{json .Config", "busybox"),
        first_line="error: template parsing error: template: :1: unclosed action", code=2),
    Row("build-empty-build-arg-key", None, ("build", "--build-arg", "=1.2", "."),
        first_line='error: invalid key-value pair "=1.2": empty key (--build-arg wants KEY[=VALUE])', code=2),
    Row("pull-bad-reference", None, ("pull", "Bad:Ref"),
        first_line="error: invalid reference 'Bad:Ref': 'Bad' is not a valid repository name component "
                   "(repository names must be lowercase)"),
    Row("import-missing-file", None, ("import", "/nonexistent-pybuild"), first_line="error: no such file: /nonexistent-pybuild",
        code=2),
    Row("import-not-a-tar", None, ("import", "{tmp}/garbage.txt", "x"),
        first_line="error: import: the input is not a tar archive (nor gzip/zstd compressed)"),
    Row("load-not-an-archive", None, ("load", "-i", "{tmp}/garbage.txt"),
        first_line="error: {tmp}/garbage.txt: not an image archive (neither a tar nor a compressed tar)"),
    Row("load-truncated-archive", None, ("load", "-i", "{tmp}/cut.tar"),
        first_line="error: {tmp}/cut.tar: damaged image archive: unexpected end of data"),
    Row("export-unknown-image", None, ("export", "nosuch", "-o", "{tmp}/e.tar"),
        first_line="error: no image 'nosuch' in the local store"),
]

# ---- registry rows (a real docker-registry; {host} is the Basic-auth one, {plain} the open one) ----
REGISTRY_ROWS = [
    Row("pull-needs-login", None, ("pull", "{host}/a/b:1"), first_line="error: {host}: manifest a/b:1 needs a login (Basic auth)"),
    Row("login-wrong-password", None, ("login", "-u", "tester", "--password-stdin", "{host}"), stdin=b"wrong\n",
        first_line="error: {host}: authentication failed for login: UNAUTHORIZED: authentication required"),
    Row("build-base-needs-login", "FROM {host}/a/b:1\n",
        first_line="error: no image '{host}/a/b:1' in the local store, and pulling it failed: "
                   "{host}: manifest a/b:1 needs a login (Basic auth)"),
    Row("pull-unknown-tag", None, ("pull", "{plain}/no/such:tag"),
        first_line="error: {plain}: manifest no/such:tag not found (MANIFEST_UNKNOWN: manifest unknown)"),
    Row("build-base-unknown-tag", "FROM {plain}/no/such:tag\n",
        first_line="error: no image '{plain}/no/such:tag' in the local store, and pulling it failed: "
                   "{plain}: manifest no/such:tag not found (MANIFEST_UNKNOWN: manifest unknown)"),
]


@pytest.fixture(scope="module")
def busybox_root(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("errors-store")
    make_busybox_image(tmp / "root", tmp)
    return tmp / "root"


def _tar_of_one_file(size: int) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("manifest.json")
        ti.size = size
        tf.addfile(ti, io.BytesIO(b"x" * size))
    return buf.getvalue()


def _run_row(row: Row, root: Path, tmp: Path, subst: dict[str, str]) -> subprocess.CompletedProcess:
    env = {"PYBUILD_ROOT": str(root)}
    args = [_fill(a, subst) for a in row.args]
    if row.dockerfile is None:
        (tmp / "garbage.txt").write_text("garbage\n")  # a short file that is no archive
        (tmp / "cut.tar").write_bytes(_tar_of_one_file(20_000)[:5000])  # a tar cut short mid-file
        return run_cli(*args, env=env, input=row.stdin)
    ctx = write_ctx(tmp / "ctx", {"Dockerfile": _fill(row.dockerfile, subst), "f.txt": "hi\n", **row.files})
    return run_cli("build", "--progress=quiet", *args, str(ctx), env=env, input=row.stdin)


@pytest.mark.needs_root
@pytest.mark.needs_overlay
@pytest.mark.parametrize("row", BUILD_ROWS + COMMAND_ROWS, ids=lambda r: r.id)
def test_error_row(row: Row, busybox_root: Path, tmp_path: Path, docker_config) -> None:
    subst = {"tmp": str(tmp_path)}
    _check(row, _run_row(row, busybox_root, tmp_path, subst), subst)


@pytest.fixture(scope="module")
def plain_registry(tmp_path_factory):
    from tests.fixtures.registry import start_registry

    with start_registry(tmp_path_factory.mktemp("registry-plain")) as reg:
        yield reg


@pytest.mark.registry
@pytest.mark.needs_root
@pytest.mark.parametrize("row", REGISTRY_ROWS, ids=lambda r: r.id)
def test_registry_error_row(row: Row, registry_basic, plain_registry, busybox_root: Path, tmp_path: Path,
                            docker_config) -> None:
    subst = {"tmp": str(tmp_path), "host": registry_basic.host, "plain": plain_registry.host}
    _check(row, _run_row(row, busybox_root, tmp_path, subst), subst)


@pytest.mark.needs_root
@pytest.mark.needs_overlay
def test_no_overlayfs_is_a_clear_mount_error(tmp_path: Path) -> None:
    """PYBUILD_ROOT on an overlayfs: the kernel refuses overlay upper dirs there (EINVAL)."""
    ovl = tmp_path / "ovl"
    for d in ("l", "u", "w", "m"):
        (ovl / d).mkdir(parents=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={ovl}/l,upperdir={ovl}/u,workdir={ovl}/w", str(ovl / "m")], check=True)
    try:
        root = ovl / "m" / "root"
        make_busybox_image(root, ovl / "m")
        row = Row("no-overlayfs", "FROM busybox\nRUN true\n",
                  first_line=r"Dockerfile:2:1: error: RUN could not start: mount overlay overlay on \S+/root \(flags nodev, "
                             r"data 'lowerdir=\S+/mnt:" + re.escape(str(root))
                             + r"/snapshots/[0-9a-f]{64},upperdir=" + re.escape(str(root)) + r"/tmp/\S+/upper,workdir="
                             + re.escape(str(root)) + r"/tmp/\S+/work'\): Invalid argument", regex=True)
        _check(row, _run_row(row, root, tmp_path, {}), {})
    finally:
        subprocess.run(["umount", "-l", str(ovl / "m")], check=False)


@pytest.mark.needs_root
def test_no_privileges_is_a_clear_namespace_error(busybox_root: Path, tmp_path: Path) -> None:
    """uid 0 without any capability (bounding set emptied): the sandbox cannot unshare."""
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM scratch\nCOPY Dockerfile /\nRUN true\n"})
    env = dict(os.environ, PYBUILD_ROOT=str(tmp_path / "root"))
    p = subprocess.run(["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-m", "builder.cli",
                        "build", "--progress=quiet", str(ctx)], env=env, cwd=REPO, capture_output=True, timeout=120)
    # The first privileged act of a RUN is making its pids cgroup (the default RUN pids limit).
    row = Row("no-privileges", "", regex=True,
              first_line=r"Dockerfile:3:1: error: RUN could not start: (cgroup: cannot create "
                         r"/sys/fs/cgroup/\S*pybuild-[0-9]+-[0-9a-f]+: Permission denied"  # a v1 or v2 path
                         r"|unshare\(mount\|pid\|uts\|ipc\|cgroup\): Operation not permitted)")  # no pids cgroup
    _check(row, p, {})


def test_table_has_at_least_30_rows() -> None:
    assert len(BUILD_ROWS) + len(COMMAND_ROWS) + len(REGISTRY_ROWS) + 2 >= 30
