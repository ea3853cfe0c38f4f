"""Config instructions as BuildKit writes them, NAME.dockerignore, --ssh, ADD of a git repository."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.buildlib import build, layer_files, ok, steps, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


CONFIG_DF = """FROM busybox
MAINTAINER someone@example.com
LABEL org.example.a="1" b=two
EXPOSE 80 53/udp
VOLUME ["/data", "/logs"]
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost || exit 1
SHELL ["/bin/sh", "-ec"]
RUN echo shell-form-ok
ENV A=1 B="two words"
ENV A=3
CMD echo hi
"""


def test_config_instructions(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": CONFIG_DF})
    r = build(root, ctx, "-t", "cfg", "--label", "from.cli=yes")
    ok(r)
    img = validate_layout(root, "cfg")
    c = img["config"]["config"]
    assert img["config"]["author"] == "someone@example.com"
    assert c["Labels"] == {"org.example.a": "1", "b": "two", "from.cli": "yes"}
    assert c["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    assert c["Volumes"] == {"/data": {}, "/logs": {}}
    assert c["StopSignal"] == "SIGQUIT"
    assert c["Healthcheck"]["Test"] == ["CMD-SHELL", "wget -q localhost || exit 1"]
    assert c["Healthcheck"]["Interval"] == 5_000_000_000 and c["Healthcheck"]["Retries"] == 2
    assert c["Shell"] == ["/bin/sh", "-ec"]
    assert c["Cmd"] == ["/bin/sh", "-ec", "echo hi"]
    assert "A=3" in c["Env"] and "B=two words" in c["Env"] and "A=1" not in c["Env"]
    hist = img["config"]["history"]
    by = {h.get("created_by"): h.get("empty_layer", False) for h in hist}
    # created_by in BuildKit's formats (tests/differential: history of every case)
    assert by["STOPSIGNAL SIGQUIT"] is True and by["ENV A=3"] is True
    assert by['CMD ["/bin/sh" "-ec" "echo hi"]'] is True
    assert any(h.get("created_by") == "RUN /bin/sh -ec echo shell-form-ok # buildkit" for h in hist)


def test_dockerfile_specific_ignore_file(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {
        "build/app.Dockerfile": "FROM busybox\nCOPY . /ctx/\n", "build/app.Dockerfile.dockerignore": "secret*\n",
        ".dockerignore": "keep*\n", "secret.txt": "s", "keep.txt": "k"})
    ok(build(root, ctx, "-f", str(ctx / "build/app.Dockerfile"), "-t", "ign"))
    files = layer_files(root, validate_layout(root, "ign")["manifest"]["layers"][1]["digest"])
    assert "ctx/keep.txt" in files and "ctx/secret.txt" not in files


def test_ssh_agent_socket_is_forwarded(root: Path, tmp_path: Path) -> None:
    sock = tmp_path / "agent.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(sock))
    s.listen(1)
    try:
        ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" "
                                                         "&& echo ssh-sock-ok\n"})
        r = build(root, ctx, "--ssh", f"default={sock}")
        ok(r)
        assert b"ssh-sock-ok" in r.stderr
    finally:
        s.close()


@pytest.fixture
def git_daemon(tmp_path: Path):
    base = tmp_path / "git"
    repo = base / "proj.git"
    work = tmp_path / "gitwork"
    work.mkdir()
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@e")
    subprocess.run(["git", "init", "-q", "-b", "main", str(work)], check=True)
    (work / "README").write_text("from-git\n")
    subprocess.run(["git", "-C", str(work), "add", "."], check=True)
    subprocess.run(["git", "-C", str(work), "commit", "-qm", "one"], check=True, env=env)
    subprocess.run(["git", "-C", str(work), "tag", "v1"], check=True)
    base.mkdir()
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(repo)], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={base}", f"--port={port}",
                          "--listen=127.0.0.1", str(base)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):
        if subprocess.run(["git", "ls-remote", f"git://127.0.0.1:{port}/proj.git"], capture_output=True).returncode == 0:
            break
        time.sleep(0.1)
    yield f"git://127.0.0.1:{port}/proj.git"
    p.terminate()
    p.wait()


def test_add_git_repository(root: Path, tmp_path: Path, git_daemon: str) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": f"FROM busybox\nADD {git_daemon}#v1 /src/\n"
                                                     f"ADD --keep-git-dir=true {git_daemon} /withgit/\n"
                                                     "RUN cat /src/README && test ! -e /src/.git && test -d /withgit/.git\n"})
    r = build(root, ctx, "-t", "git")
    ok(r)
    assert b"from-git" in r.stderr
    validate_layout(root, "git")
    r = build(root, ctx, "-t", "git")
    assert all(res == "CACHED" for _, res in steps(r.stderr)), r.stderr.decode()


def test_lint_warnings_and_check_error(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox as base\nRUN true\n"})
    r = build(root, ctx)
    ok(r)
    assert b"WARNING: Dockerfile:1: FromAsCasing" in r.stderr
    (ctx / "Dockerfile").write_text("# check=error=true\nFROM busybox as base\nRUN true\n")
    r = build(root, ctx)
    assert r.returncode == 1 and b"Dockerfile:2:1: error: lint FromAsCasing" in r.stderr
    from tests.conftest import run_cli

    r = run_cli("build", "--check", str(ctx), env={"PYBUILD_ROOT": str(root)})
    assert r.returncode == 1 and b"1 warning found" in r.stderr


def test_run_gets_home_from_passwd_as_buildkit_does(root: Path, tmp_path: Path) -> None:
    # BuildKit's RUN (runc) sets HOME from the user's passwd entry when ENV has none; `/` for
    # a uid passwd does not know. It is not written into the image config.
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": (
        "FROM busybox\nRUN echo \"$HOME\" > /root-home\nUSER nobody\nRUN echo \"$HOME\" > /tmp/nobody-home\n"
        "USER 4242\nRUN echo \"$HOME\" > /tmp/unknown-home\nUSER root\nENV HOME=/custom\n"
        "RUN echo \"$HOME\" > /env-home\n")})
    r = build(root, ctx, "-t", "homes")
    ok(r)
    img = validate_layout(root, "homes")
    assert not any(e.startswith("HOME=/root") for e in img["config"]["config"]["Env"])
    from tests.conftest import run_cli

    r = run_cli("run", "--rm", "homes", "cat", "/root-home", "/tmp/nobody-home", "/tmp/unknown-home", "/env-home",
                env={"PYBUILD_ROOT": str(root)})
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["/root", "/nonexistent", "/", "/custom"]
