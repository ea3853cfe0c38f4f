"""The tools measured side by side: pybuild's CLI, docker BuildKit, buildah, runc and crun.

Owns: installing Debian's docker.io and buildah when asked, starting a private dockerd (its own
socket, data-root and exec-root under the bench's temp dirs, `--iptables=false --bridge=none`)
and stopping it by its PID, importing the same busybox base into every builder, and one
`build(...)` call per tool with the flags that make the comparison fair (BuildKit with
`--network host`; buildah with `--layers` so it caches, and runc because crun refuses this
hybrid-cgroup machine outside a private mount namespace). Must not: time anything (the harness
does) or change the host's docker/containers state (everything lives under the bench dirs).
"""
from __future__ import annotations

import abc

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from bench.harness import NotAvailable, check

REPO = Path(__file__).resolve().parent.parent
BASE_REF = "busybox:bench"
DOCKER = "/usr/bin/docker"  # Debian's client; /usr/local/bin/docker may be some other build
DOCKERD = "/usr/sbin/dockerd"
RUNC = shutil.which("runc") or "/usr/sbin/runc"
# the current BuildKit: docker 28.5 + buildx from ../shared/tools/buildkit-reference (unpacked there)
REF_OPT = Path("/opt/buildkit-reference")
REF_TOOL = REPO.parent / "shared" / "tools" / "buildkit-reference"


def install_peers() -> None:
    """apt-get install Debian's docker.io and buildah, and isal (igzip, the gzip floor), only
    what is missing."""
    missing = [p for p in ("docker.io", "buildah", "isal")
               if subprocess.run(["dpkg", "-s", p], capture_output=True).returncode != 0]
    if not missing:
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=env, stdout=subprocess.DEVNULL)


def umount_under(path: Path) -> None:
    """Lazily unmount whatever a peer left mounted below `path`, deepest first, so rmtree is safe."""
    prefix = str(path.resolve()) + "/"
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp.startswith(prefix):
                points.append(mp)
    for mp in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def remove_tree(path: Path) -> None:
    if path.exists():
        umount_under(path)
        shutil.rmtree(path, ignore_errors=True)


def landing(stderr: str) -> bool:
    """Did a pybuild command fail because part of pybuild has not landed yet?"""
    return any(f"No module named '{pkg}." in stderr for pkg in ("builder", "runtime"))


class Builder(abc.ABC):
    """What a scenario needs from a builder. `name` is the label in the tables."""

    name = "?"

    @abc.abstractmethod
    def build(self, ctx: Path, tag: str, *, no_cache: bool = False, dockerfile: Path | None = None,
              parallel: bool = True) -> None:
        """Build `ctx` as `tag` (each peer implements it)."""

    @abc.abstractmethod
    def build_argv(self, ctx: Path, tag: str, *, no_cache: bool = False,
                   dockerfile: Path | None = None, parallel: bool = True) -> tuple[list[str], dict]:
        """The argv and environment of that build (each peer implements it)."""

    def before_cold(self) -> None:
        """Untimed: forget build cache so the next `build(no_cache=True)` is really cold."""


class Pybuild(Builder):
    """pybuild through its real CLI (`python -m builder.cli`), with a private --root."""

    name = "pybuild"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = dict(os.environ, PYBUILD_ROOT=str(root))
        self.base_error: str | None = None

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "builder.cli", "--root", str(self.root), *args]

    @staticmethod
    def has_command(module: str) -> bool:
        """A subcommand exists once its module under builder.commands has landed."""
        try:
            return importlib.util.find_spec(f"builder.commands.{module}") is not None
        except ModuleNotFoundError:
            return False

    def require(self, module: str, what: str) -> None:
        if not self.has_command(module):
            raise NotAvailable(f"not available yet: pybuild {what} (builder/commands/{module}.py)")

    def check(self, argv: list[str], what: str, extra_env: dict | None = None):
        """Run a pybuild command; a command whose code imports a module that has not landed yet
        (other helpers are writing it) says "not available yet" rather than "failed"."""
        try:
            return check(argv, what=what, env=dict(self.env, **(extra_env or {})))
        except NotAvailable as e:
            if not str(e).startswith("not available") and landing(e.output):
                raise NotAvailable(f"not available yet: {e}", e.output) from None
            raise

    def import_base(self, tar: Path) -> None:
        """`pybuild import` the busybox tar; remembers a failure so scenarios say why they skip."""
        try:
            self.require("archive", "import")
            self.check(self.argv("import", str(tar), BASE_REF), what="pybuild import")
        except NotAvailable as e:
            self.base_error = str(e) if str(e).startswith("not available") else f"not available: {e}"

    def require_base(self) -> None:
        if self.base_error:
            raise NotAvailable(self.base_error)

    def build_argv(self, ctx, tag, *, no_cache=False, dockerfile=None, parallel=True):
        args = ["build", "-t", tag]
        if no_cache:
            args.append("--no-cache")
        if dockerfile is not None:
            args += ["-f", str(dockerfile)]
        return self.argv(*args, str(ctx)), self.env

    def build(self, ctx, tag, *, no_cache=False, dockerfile=None, parallel=True):
        self.require("build", "build")
        self.require_base()
        argv, _env = self.build_argv(ctx, tag, no_cache=no_cache, dockerfile=dockerfile)
        self.check(argv, what="pybuild build")


class Docker(Builder):
    """A private dockerd (BuildKit built in) for the length of the bench run."""

    name = "docker"
    docker_bin, dockerd_bin = DOCKER, DOCKERD

    def __init__(self, state: Path, short: Path) -> None:
        # unix socket paths are limited to 108 bytes: socket and exec-root go in a short dir
        self.data_root = state / self.name
        self.exec_root = short / f"{self.name[:2]}x"
        self.sock = short / f"{self.name}.sock"
        self.log = state / f"{self.name}d.log"
        self.pid: int | None = None
        # a private client config too, so the bench neither reads nor writes ~/.docker
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{self.sock}", DOCKER_BUILDKIT="1",
                        DOCKER_CONFIG=str(short / f"{self.name}-cfg"))

    @classmethod
    def installed(cls) -> bool:
        return os.path.exists(cls.docker_bin) and os.path.exists(cls.dockerd_bin)

    def start(self) -> None:
        self.data_root.mkdir(parents=True, exist_ok=True)
        self.exec_root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as log:
            proc = subprocess.Popen(
                [self.dockerd_bin, "--iptables=false", "--ip-masq=false", "--bridge=none",
                 "--host", f"unix://{self.sock}", "--data-root", str(self.data_root),
                 "--exec-root", str(self.exec_root), "--pidfile", str(self.exec_root / "dockerd.pid"),
                 "--storage-driver", "overlay2", *self.daemon_args()],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.daemon_env())
        self.pid = proc.pid
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise NotAvailable(f"dockerd exited ({proc.returncode}); see {self.log}")
            if self.sock.exists() and subprocess.run([self.docker_bin, "version"], env=self.env,
                                                     capture_output=True).returncode == 0:
                return
            time.sleep(0.2)
        self.stop()
        raise NotAvailable(f"dockerd did not answer within 60 s; see {self.log}")

    def stop(self) -> None:
        """SIGTERM our dockerd by PID (never by name), SIGKILL after 30 s, then clean its dirs."""
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                pid, _ = os.waitpid(self.pid, os.WNOHANG)
                if pid:
                    break
                time.sleep(0.1)
            else:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        try:  # its containerd and shims share the process group dockerd leads; end any left
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.pid = None
        remove_tree(self.exec_root)
        remove_tree(self.data_root)

    def docker(self, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
        return check([self.docker_bin, *args], what=f"{self.name} {args[0]}", env=self.env, timeout=timeout)

    def daemon_args(self) -> list[str]:
        return []

    def daemon_env(self) -> dict:
        return dict(os.environ)

    def import_base(self, tar: Path) -> None:
        self.docker("import", str(tar), BASE_REF)

    def build_argv(self, ctx, tag, *, no_cache=False, dockerfile=None, parallel=True):
        argv = [self.docker_bin, "build", "--network", "host", "--progress", "plain", "-t", tag]
        if no_cache:
            argv.append("--no-cache")
        if dockerfile is not None:
            argv += ["-f", str(dockerfile)]
        return argv + [str(ctx)], self.env

    def build(self, ctx, tag, *, no_cache=False, dockerfile=None, parallel=True):
        argv, env = self.build_argv(ctx, tag, no_cache=no_cache, dockerfile=dockerfile)
        check(argv, what="docker build", env=env)

    def before_cold(self) -> None:
        # --no-cache still reuses BuildKit's copy of the context; prune it for a real cold build
        self.docker("builder", "prune", "-af")


class BuildkitRef(Docker):
    """The current BuildKit: a private dockerd 28.5 from the binaries that
    ../shared/tools/buildkit-reference unpacks under /opt (its own containerd, buildx plugin)."""

    name = "buildkit-ref"
    docker_bin = str(REF_OPT / "usr/bin/docker")
    dockerd_bin = str(REF_OPT / "usr/sbin/dockerd")

    @classmethod
    def install(cls) -> None:
        if not cls.installed() and REF_TOOL.exists():
            subprocess.run(["bash", str(REF_TOOL), "install"], check=True, stdout=subprocess.DEVNULL)

    def start(self) -> None:
        plugins = Path(self.env["DOCKER_CONFIG"]) / "cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        link = plugins / "docker-buildx"
        if not link.exists():
            link.symlink_to(REF_OPT / "usr/libexec/docker/cli-plugins/docker-buildx")
        super().start()

    def daemon_args(self) -> list[str]:
        # its own containerd namespaces, so it never meets the reference the tests use
        return ["--containerd-namespace", "pybuild-bench", "--containerd-plugins-namespace", "pybuild-bench-p"]

    def daemon_env(self) -> dict:
        return dict(os.environ, PATH=f"{REF_OPT}/usr/bin:{REF_OPT}/usr/sbin:{os.environ.get('PATH', '')}")


class Buildah(Builder):
    """buildah with private storage under the bench dirs; `--layers` so it caches."""

    name = "buildah"

    def __init__(self, state: Path, short: Path) -> None:
        self.root = state / "buildah"
        self.runroot = short / "br"
        self.policy = short / "policy.json"
        self.env = dict(os.environ, BUILDAH_ISOLATION="oci")

    @staticmethod
    def installed() -> bool:
        return shutil.which("buildah") is not None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.runroot.mkdir(parents=True, exist_ok=True)
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))

    def stop(self) -> None:
        subprocess.run(self.argv("rm", "--all"), capture_output=True, env=self.env)
        remove_tree(self.runroot)
        remove_tree(self.root)

    def argv(self, *args: str) -> list[str]:
        return ["buildah", "--root", str(self.root), "--runroot", str(self.runroot),
                "--storage-driver", "overlay", *args]

    def import_base(self, tar: Path) -> None:
        ctr = check(self.argv("from", "--signature-policy", str(self.policy), "scratch"),
                    what="buildah from", env=self.env).stdout.decode().strip()
        check(self.argv("add", ctr, str(tar), "/"), what="buildah add", env=self.env)
        check(self.argv("commit", "-q", "--signature-policy", str(self.policy), ctr, BASE_REF),
              what="buildah commit", env=self.env)
        check(self.argv("rm", ctr), what="buildah rm", env=self.env)

    def build_argv(self, ctx, tag, *, no_cache=False, dockerfile=None, parallel=True):
        argv = self.argv("bud", "--signature-policy", str(self.policy), "--runtime", RUNC,
                         "--layers", "--network", "host", "-q", "-t", tag)
        if no_cache:
            argv.append("--no-cache")
        if parallel:
            argv += ["--jobs", "4"]  # buildah builds stages one by one unless told
        if dockerfile is not None:
            argv += ["-f", str(dockerfile)]
        return argv + [str(ctx)], self.env

    def build(self, ctx, tag, *, no_cache=False, dockerfile=None, parallel=True):
        argv, env = self.build_argv(ctx, tag, no_cache=no_cache, dockerfile=dockerfile,
                                    parallel=parallel)
        check(argv, what="buildah bud", env=env)


def runtime_bundle(rootfs: Path, bundle: Path, args: Sequence[str] = ("/bin/true",)) -> Path:
    """An OCI bundle for runc/crun from `runc spec` with our rootfs and a non-terminal process."""
    bundle.mkdir(parents=True, exist_ok=True)
    link = bundle / "rootfs"
    if not link.exists():
        link.symlink_to(rootfs)
    cfg = bundle / "config.json"
    cfg.unlink(missing_ok=True)
    check([RUNC, "spec", "--bundle", str(bundle)], what="runc spec")
    spec = json.loads(cfg.read_text())
    spec["process"]["args"] = list(args)
    spec["process"]["terminal"] = False
    spec["root"] = {"path": str(rootfs), "readonly": True}
    cfg.write_text(json.dumps(spec))
    return bundle
