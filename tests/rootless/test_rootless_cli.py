"""The README as a non-root user (issue 17): build with every instruction and RUN --mount type,
multi-stage, run with -u/-v/--tmpfs/-t, save/load, prune, store verify, the id mapping
(subordinate ranges through newuidmap; a single id without), limits without a delegated
cgroup, and one-line errors. Each test drives `python -m builder.cli` under setpriv as the
user (tests/rootless/conftest.py); before issue 17 WORKDIR, COPY, RUN and `run -u` failed here.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import tarfile
import threading
from pathlib import Path

import pytest

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_userns, pytest.mark.root_only]


def ok(r) -> str:
    assert r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace")[-3000:]
    return r.stdout.decode(errors="replace")


def one_line_error(r, code: int = 1) -> str:
    """A failure a user may hit: one line naming the cause, never an internal error (exit 3)."""
    err = r.stderr.decode(errors="replace")
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("warning: ")]
    assert r.returncode == code, err
    assert "internal error" not in err and "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


def _subrange(user: str) -> int:
    for ln in Path("/etc/subuid").read_text().splitlines():
        name, start, _ = ln.split(":")
        if name == user:
            return int(start)
    raise AssertionError(f"no /etc/subuid line for {user}")


def _layer_members(save_tar: Path, tag: str) -> list[list[tarfile.TarInfo]]:
    """The members of each layer of `tag` in a docker-archive."""
    out = []
    with tarfile.open(save_tar) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        entry = next(m for m in manifest if any(t.endswith(tag) for t in m["RepoTags"]))
        for layer in entry["Layers"]:
            data = outer.extractfile(layer).read()
            with tarfile.open(fileobj=io.BytesIO(data)) as lt:
                out.append(lt.getmembers())
    return out


@pytest.fixture
def store(rl, busybox_tar):
    """A fresh state directory of the user's, holding busybox:latest (imported as the user)."""
    d = rl.mkdtemp()
    env = {"PYBUILD_ROOT": str(d / "root")}
    ok(rl.cli("import", str(busybox_tar), "busybox:latest", env=env))
    yield d, env
    shutil.rmtree(d, ignore_errors=True)  # as root: files of subordinate owners go too


DOCKERFILE = """\
# syntax=docker/dockerfile:1
FROM busybox AS base
ARG WHO=builder
ENV GREETING="hello from ${WHO}"
LABEL org.example.rootless="yes"
WORKDIR /src
COPY f.txt ./
COPY --chown=1000:1000 --chmod=640 f.txt /owned.txt
ADD f.txt /added.txt
RUN echo "$GREETING" > /greeting && chown 1000:1000 /greeting && adduser -D -u 1234 -G users alice 2>/dev/null; true
RUN --mount=type=cache,target=/cache echo x >> /cache/n && wc -l < /cache/n > /cache-count
RUN --mount=type=bind,source=f.txt,target=/mnt/f.txt cp /mnt/f.txt /from-bind
RUN --mount=type=tmpfs,target=/scratch touch /scratch/t && ls /scratch > /from-tmpfs
RUN --mount=type=secret,id=tok cat /run/secrets/tok > /secret-len && wc -c < /run/secrets/tok > /secret-len
RUN --mount=type=ssh test -S "$SSH_AUTH_SOCK" && echo ssh > /from-ssh
RUN mkdir -p /d/sub && touch /d/a /d/sub/b /gone
RUN rm -rf /d /gone && mkdir /d && touch /d/new
SHELL ["/bin/sh", "-c"]
EXPOSE 8080
VOLUME /data
STOPSIGNAL SIGTERM
HEALTHCHECK CMD true
ONBUILD RUN true
USER 1000:1000
RUN id -u > /tmp/uid && touch /tmp/mine
USER root

FROM busybox
COPY --from=base /greeting /owned.txt /from-bind /secret-len /from-ssh /cache-count /
COPY --from=base --chown=1234:100 /src/f.txt /alice.txt
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /greeting"]
"""


def _ssh_socket(rl, d: Path):
    """A listening unix socket the user owns (an agent stand-in: RUN only checks it is there)."""
    path = d / "agent.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(4)
    os.chown(path, rl.pw.pw_uid, rl.pw.pw_gid)
    stop = threading.Event()

    def serve():
        s.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = s.accept()
                c.close()
            except OSError:
                continue
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return path, lambda: (stop.set(), t.join(), s.close())


def test_build_every_instruction_and_mount_type_multistage(rl, store, request):
    d, env = store
    ctx = d / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    (ctx / "f.txt").write_text("data\n")
    (d / "tok").write_text("s3cret")
    rl.give(ctx)
    rl.give(d / "tok")
    sock, stop = _ssh_socket(rl, d)
    request.addfinalizer(stop)
    r = rl.cli("build", "--progress=plain", "-t", "rl:1", "--secret", f"id=tok,src={d}/tok",
               "--ssh", f"default={sock}", str(ctx), env=env)
    ok(r)
    err = r.stderr.decode()
    # one warning for the default pids limit on a host without a delegated cgroup
    if "not writable by this user" in err:
        assert err.count("default limit of 2048 processes") == 1, err
    out = ok(rl.cli("run", "--rm", "--entrypoint", "sh", "rl:1", "-c",
                    "cat /greeting /secret-len /from-ssh /cache-count; ls -ln /alice.txt", env=env))
    assert "hello from builder" in out and "6" in out and "ssh" in out
    assert out.splitlines()[-1].split()[2:4] == ["1234", "100"], out
    # the first stage (all cached now) keeps the owners RUN and COPY --chown gave
    ok(rl.cli("build", "-q", "--target", "base", "-t", "rl:base", "--secret", f"id=tok,src={d}/tok",
              "--ssh", f"default={sock}", str(ctx), env=env))
    out = ok(rl.cli("run", "--rm", "rl:base", "ls", "-ln", "/greeting", "/owned.txt", "/tmp/mine", env=env))
    own = {ln.split()[-1]: (ln.split()[2], ln.split()[3]) for ln in out.splitlines() if ln.startswith("-")}
    assert own == {"/greeting": ("1000", "1000"), "/owned.txt": ("1000", "1000"), "/tmp/mine": ("1000", "1000")}, out
    # the id mapping: container uid 1000 is the user's subordinate id 999 on the host
    snaps = Path(env["PYBUILD_ROOT"]) / "snapshots"
    hosts = {os.lstat(p).st_uid for p in snaps.rglob("greeting")}
    assert _subrange(rl.pw.pw_name) + 999 in hosts, hosts
    # the layers keep the owners, whiteouts and opaque dirs
    save = d / "rl.tar"
    ok(rl.cli("save", "-o", str(save), "rl:1", env=env))
    ok(rl.cli("save", "-o", str(d / "base.tar"), "rl:base", env=env))
    by_name = {m.name.removeprefix("./"): m for layer in _layer_members(d / "base.tar", "rl:base") for m in layer}
    assert (by_name["greeting"].uid, by_name["greeting"].gid) == (1000, 1000)
    by_name = {m.name.removeprefix("./"): m for layer in _layer_members(save, "rl:1") for m in layer}
    assert (by_name["alice.txt"].uid, by_name["alice.txt"].gid) == (1234, 100)
    # the config instructions reached the image config
    cfg = json.loads(ok(rl.cli("inspect", "rl:1", env=env)))
    cfg = cfg[0] if isinstance(cfg, list) else cfg
    text = json.dumps(cfg)
    assert "cat /greeting" in text
    # a rebuild is all cached
    r2 = rl.cli("build", "--progress=plain", "-t", "rl:1", "--secret", f"id=tok,src={d}/tok", str(ctx), env=env)
    ok(r2)


def test_whiteouts_and_opaque_dirs_in_layers(rl, store):
    d, env = store
    ctx = d / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN mkdir -p /d/sub && touch /d/a /d/sub/b /gone\n"
                                    "RUN rm -rf /d /gone && mkdir /d && touch /d/new\n")
    rl.give(ctx)
    ok(rl.cli("build", "-q", "-t", "wh", str(ctx), env=env))
    save = d / "wh.tar"
    ok(rl.cli("save", "-o", str(save), "wh", env=env))
    last = [m.name.removeprefix("./") for m in _layer_members(save, "wh:latest")[-1]]
    assert ".wh.gone" in last and "d/.wh..wh..opq" in last and "d/new" in last, last
    # loaded into another store, the layer stacks as overlay (user.overlay.* marks) and shows
    other = {"PYBUILD_ROOT": str(d / "other")}
    ok(rl.cli("load", "-i", str(save), env=other))
    out = ok(rl.cli("run", "--rm", "wh", "sh", "-c", "ls -A /d; ls /gone 2>&1; true", env=other))
    assert out.split()[0] == "new" and "No such file" in out, out


def test_run_user_volume_tmpfs_tty(rl, store):
    d, env = store
    vol = rl.mkdtemp()
    os.chmod(vol, 0o777)  # the user's own dir is container root's: let uid 1000 write
    out = ok(rl.cli("run", "--rm", "-u", "1000:1000", "busybox", "id", env=env))
    assert "uid=1000(app) gid=1000(app)" in out
    # supplementary groups from the image's /etc/group: setgroups works (newgidmap wrote the map)
    ctx = d / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo 'extra:x:4242:app' >> /etc/group\n")
    rl.give(ctx)
    ok(rl.cli("build", "-q", "-t", "grp", str(ctx), env=env))
    out = ok(rl.cli("run", "--rm", "-u", "app", "grp", "id", env=env))
    assert "uid=1000" in out and "4242" in out.split("groups=")[-1], out
    out = ok(rl.cli("run", "--rm", "-v", f"{vol}:/v", "--tmpfs", "/tt", "-u", "1000:1000", "busybox", "sh", "-c",
                    "touch /v/a /tt/b && ls /tt && id -u", env=env))
    assert "b" in out and "1000" in out
    # the volume file belongs to the user's subordinate id 999 on the host
    assert os.lstat(vol / "a").st_uid == _subrange(rl.pw.pw_name) + 999
    r = rl.as_user(["script", "-qec", f"{rl.python} -m builder.cli run --rm -t busybox tty", "/dev/null"],
                   env={**env, "PYTHONPATH": str(rl.src)})
    assert r.returncode == 0 and b"/dev/pts/" in r.stdout, r.stdout + r.stderr
    shutil.rmtree(vol, ignore_errors=True)


def test_save_load_prune_verify_and_default_state_dir(rl, busybox_tar):
    # no PYBUILD_ROOT: the state goes to ~/.local/share/pybuild, made 0700
    home_root = rl.home / ".local" / "share" / "pybuild"
    rl.as_user(["rm", "-rf", str(home_root)])
    ok(rl.cli("import", str(busybox_tar), "busybox:latest"))
    assert home_root.is_dir() and (home_root / "index.json").exists()
    assert (home_root.stat().st_mode & 0o077) == 0
    assert home_root.stat().st_uid == rl.pw.pw_uid
    d = rl.mkdtemp()
    ok(rl.cli("save", "-o", str(d / "bb.tar"), "busybox:latest"))
    ok(rl.cli("rmi", "busybox:latest"))
    ok(rl.cli("prune"))
    ok(rl.cli("load", "-i", str(d / "bb.tar")))
    out = ok(rl.cli("store", "verify"))
    assert "0 problems" in out
    ok(rl.cli("run", "--rm", "busybox", "true"))
    shutil.rmtree(home_root, ignore_errors=True)
    shutil.rmtree(d, ignore_errors=True)


def test_limits_without_a_delegated_cgroup(rl, store):
    d, env = store
    probe = rl.as_user([rl.python, "-c", "from runtime.cgroups import limit_unavailable as u; print(u(['pids']) or '')"])
    if not probe.stdout.strip():
        pytest.skip("this host delegates a writable pids cgroup to the user")
    ctx = d / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN true\n")
    rl.give(ctx)
    r = rl.cli("build", "--progress=plain", "--pids-limit", "10", str(ctx), env=env)
    assert "needs a writable cgroup" in one_line_error(r)
    r = rl.cli("run", "--rm", "--memory", "64m", "busybox", "true", env=env)
    assert "memory limit needs a writable cgroup" in one_line_error(r)
    r = rl.cli("build", "--progress=plain", "--memory", "64m", str(ctx), env=env)
    assert one_line_error(r).startswith("error: --memory: a memory limit needs a writable cgroup")
    r = rl.cli("build", "--progress=plain", str(ctx), env=env)
    ok(r)
    assert r.stderr.decode().count("without the default limit") == 1


def test_single_id_user_without_subordinate_ranges(rl_single, busybox_tar):
    rl = rl_single
    d = rl.mkdtemp()
    env = {"PYBUILD_ROOT": str(d / "root")}
    r = rl.cli("import", str(busybox_tar), "busybox:latest", env=env)
    ok(r)
    assert r.stderr.decode().count("rootless with a single id") == 1
    ctx = d / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY --chown=1000:1000 f /f\nRUN ls -ln /f > /owner\nWORKDIR /w\n")
    (ctx / "f").write_text("x")
    rl.give(ctx)
    ok(rl.cli("build", "-q", "-t", "one", str(ctx), env=env))
    # the owner outside the map is squashed to root (podman's ignore_chown_errors)
    out = ok(rl.cli("run", "--rm", "one", "cat", "/owner", env=env))
    assert out.split()[2:4] == ["0", "0"], out
    r = rl.cli("run", "--rm", "-u", "1000", "one", "id", env=env)
    assert "not mapped in this rootless user namespace" in one_line_error(r, 127)  # docker run's code
    shutil.rmtree(d, ignore_errors=True)
