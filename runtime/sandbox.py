"""The parent side of the sandbox: `run(config, ...) -> RunResult`.

Owns: checking the config and the machine, the per-run private directory (mount point,
/etc/hosts, resolv.conf, hostname), cgroups, starting the init child by re-exec, writing id
maps when the parent must, streaming output, forwarding signals, timeout and cancel,
collecting the exit status, and cleaning up (mount-point stubs in the upper dir, cgroups,
the private directory). Must not: fork+unshare in this (multi-threaded) process, print, or
import builder.

Why re-exec: `unshare(CLONE_NEWUSER)` refuses threaded callers and fork() after threads
is unsafe, so the child is a fresh `python -I -S` running runtime.init. `-S` (no site)
saves ~20 ms per start on this machine; the package is found by putting its parent
directory on sys.path explicitly, which also makes -I safe. By default that re-exec
happens once per builder process: it becomes a single-threaded fork server
(runtime.zygote) that forks one init outer per sandbox, ~0.5 ms instead of ~10 ms of
Python start-up. PYBUILD_SANDBOX_ZYGOTE=0 re-execs for every sandbox instead.
"""
from __future__ import annotations

import errno
import marshal
import os
import selectors
import signal
import sys
import threading
import time
from typing import Callable, Union

from runtime import cgroups, fallback, zygote
from runtime import stdio as stdio_
from runtime.config import Rootfs, SandboxConfig
from runtime.errors import KINDS, SandboxError
from runtime.stdio import Sink
from runtime.prepare import make_plan, make_private_dir, remove_stubs, write_private_dir
from runtime.record import Record, replace

Source = Union[int, bytes, None]

_PKG_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BOOT = f"import sys;sys.path.insert(0,{_PKG_PARENT!r});import runtime.init as i;i.main()"
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_DRAIN_AFTER_EXIT = 2.0  # seconds to keep reading output left by processes outside a pid ns
_KILL_GRACE = 3.0  # seconds the init outer gets to kill the container before it is SIGKILLed
KILL_REQUEST = signal.SIGRTMIN + 1  # to the init outer: "SIGKILL the container" (runtime.init)


class RunResult(Record):
    exit_code: int  # 128+N when killed by signal N (shell convention)
    signal: int | None
    oom_killed: bool
    timed_out: bool
    duration: float
    cancelled: bool = False


def prewarm() -> None:
    """Start the sandbox fork server in the background (returns at once). `pybuild run` and
    the engine may call it early so the first sandbox does not wait for it."""
    zygote.prewarm()


def run(config: SandboxConfig, *, stdin: Source = None, stdout: Sink = None, stderr: Sink = None,
        cancel: threading.Event | None = None, relay: bool = False,
        on_start: Callable[[int], None] | None = None,
        on_netns: Callable[[int], None] | None = None) -> RunResult:
    """Run config.process in a fresh sandbox and wait for it.

    stdout/stderr: an int fd (given to the process as is), a callable receiving output
    chunks as they arrive (memory stays flat whatever the volume), or None (discarded).
    stdin: an int fd, bytes to feed, or None (/dev/null). With process.tty the process gets
    a pty; stdout then receives everything and stderr is unused. `cancel`, when set (from
    any thread), kills the sandbox; SIGINT/SIGTERM/SIGHUP sent to this process are
    forwarded while run() is active on the main thread. `relay`: int fds are never handed in
    but read and written here, the process getting pipes (or its pty) as under docker, so it
    cannot re-open the caller's files through /proc/self/fd. Raises SandboxError (ConfigError,
    MountError, NamespaceError, ExecError) when the process could not be started.
    `on_start(pid)`, if given, is called once the container's pid 1 exists, with its pid as
    the host sees it (a detached container's monitor records it for exec/stop).
    `on_netns(pid)`, if given (with network "none": a fresh namespace), is called while the
    sandbox waits, before anything runs in it, with the pid of a process in the container's
    network namespace: it connects the namespace (a veth's peer for config.interface, pasta);
    an exception from it fails the run with its message.
    """
    config.check()
    snap = None
    if config.rootfs.is_overlay and not fallback.overlay_usable(
            os.path.dirname(config.rootfs.upperdir) if config.rootfs.upperdir else None):
        # No overlayfs: run on a flattened copy, then write the changes into upperdir.
        snap = fallback.CopySnapshot(config.rootfs.lowerdirs, config.rootfs.upperdir)
        config = replace(config, rootfs=Rootfs(path=snap.prepare()))
    try:
        r = _Run(config, stdin, stdout, stderr, cancel, relay)
        r.on_start = on_start
        r.on_netns = on_netns
        result = r.go()
        if snap is not None:
            snap.commit()
        return result
    finally:
        if snap is not None:
            snap.cleanup()


class _Run:
    def __init__(self, config: SandboxConfig, stdin: Source, stdout: Sink, stderr: Sink,
                 cancel: threading.Event | None, relay: bool = False) -> None:
        self.config, self.stdin, self.stdout, self.stderr, self.cancel = config, stdin, stdout, stderr, cancel
        self.relay = relay
        self.pump: stdio_.Pump | None = None
        self.tty = config.process.tty
        self.records: list[list[str]] = []
        self.status_buf = b""
        self.popen = None  # a subprocess.Popen, only when started by re-exec
        self.pid = 0
        self.pidfd = -1  # the init outer; works whether or not it is our child
        self.killed_for: str | None = None
        self.kill_sent_at: float | None = None
        self.master = -1
        self.on_start: Callable[[int], None] | None = None
        self.on_netns: Callable[[int], None] | None = None

    # --- lifecycle ------------------------------------------------------------------------
    def go(self) -> RunResult:
        start = time.monotonic()
        private = make_private_dir()
        cg = None
        try:
            write_private_dir(self.config, private)
            lim = self.config.limits
            cg = cgroups.create(f"pybuild-{os.getpid()}-{os.urandom(6).hex()}", lim.memory_bytes, lim.cpu_quota, lim.pids)
            plan = make_plan(self.config, private, cg.procs_files if cg else [])
            plan["net_wait"] = self.on_netns is not None
            code, sig = self._spawn_and_wait(plan, start)
            errors = [r for r in self.records if r[0] == "E"]
            if errors:
                kind, _, msg = errors[0][1].partition(" ")
                raise KINDS.get(kind, SandboxError)(msg)
            oom = bool(cg and cg.oom_killed())
            return RunResult(code, sig, oom, self.killed_for == "timeout", time.monotonic() - start,
                             self.killed_for == "cancel")
        finally:
            self._cleanup(private, cg)

    def _cleanup(self, private: str, cg: cgroups.Cgroup | None) -> None:
        stubs = []
        for r in self.records:
            if r[0] == "S":
                kind, mtime, cpath = r[1].split(" ", 2)
                stubs.append((kind, int(mtime), cpath))
        r = self.config.rootfs
        base = r.upperdir if r.is_overlay else r.path
        if stubs and base:
            remove_stubs(base, stubs)  # type: ignore[arg-type]
        if cg is not None:
            cg.remove()
        for name in ("hosts", "resolv.conf", "hostname"):
            try:
                os.unlink(f"{private}/{name}")
            except FileNotFoundError:
                pass
        if os.path.isdir(f"{private}/mnt"):
            import shutil
            shutil.rmtree(f"{private}/mnt", ignore_errors=True)
        # root/ was only ever a mount point inside the (now gone) mount namespace: empty here.
        for d in (f"{private}/root", private):
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass

    # --- the child ------------------------------------------------------------------------
    def _spawn_and_wait(self, plan: dict, start: float) -> tuple[int, int | None]:
        status_r, status_w = os.pipe()
        sync_r = sync_w = -1
        if ("user" in plan["unshare"] and not plan["self_map"]) or plan["net_wait"]:
            sync_r, sync_w = os.pipe()
        close_after_spawn = [status_w] + ([sync_r] if sync_r >= 0 else [])
        w = stdio_.wire(self.stdin, self.stdout, self.stderr, tty=self.tty, relay=self.relay,
                        size=self.config.process.terminal_size, close_later=close_after_spawn)
        stdio, relays, feed, feed_fd, console, stdin_src = w.stdio, w.relays, w.feed, w.feed_fd, w.console, w.stdin_src
        self.pump = w.pump
        if self.tty:
            plan["tty_size"] = w.tty_size
        try:
            self._start_init(plan, status_w, sync_r, stdio)
        except OSError as e:
            if self.pump is not None:
                os.close(self.pump.dst)
            for fd in [*close_after_spawn, status_r, *relays, feed_fd, sync_w, console]:
                if fd >= 0:
                    os.close(fd)
            raise SandboxError(f"cannot start the sandbox init ({sys.executable}): {e.strerror}") from None
        for fd in close_after_spawn:
            os.close(fd)
        restore = self._forward_signals()
        try:
            return self._loop(status_r, relays, feed, feed_fd, stdin_src, console, sync_w, start)
        finally:
            restore()
            for fd in [status_r, *relays, sync_w, console]:
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            if feed_fd >= 0:
                try:
                    os.close(feed_fd)
                except OSError:
                    pass
            if self.pump is not None and self.pump.dst >= 0:
                os.close(self.pump.dst)

    def _start_init(self, plan: dict, status_w: int, sync_r: int, stdio: list[int]) -> None:
        """Start the init outer: forked by the fork server, or by a fresh re-exec."""
        extra = [sync_r] if sync_r >= 0 else []
        if zygote.enabled():
            data = marshal.dumps(plan)
            if len(data) <= zygote.MAX_PLAN:
                self.pid, self.pidfd = zygote.spawn(data, [*stdio, status_w, *extra])
                return
        # No fork server (which sits in the sandbox home cgroups): the outer joins them itself.
        import subprocess  # (only here: its import is ~2.5 ms of `pybuild run`'s start-up)
        try:
            home = cgroups.sandbox_home_once()
        except (SandboxError, OSError):
            home = []
        plan = {**plan, "cgroup_procs": [*home, *plan["cgroup_procs"]]}
        cfg_fd = os.memfd_create("pybuild-sandbox-config", os.MFD_CLOEXEC)
        try:
            os.write(cfg_fd, marshal.dumps(plan))
            os.lseek(cfg_fd, 0, os.SEEK_SET)
            argv = [sys.executable, "-I", "-S", "-c", _BOOT, str(cfg_fd), str(status_w), *map(str, extra)]
            self.popen = subprocess.Popen(argv, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2],
                                          pass_fds=[cfg_fd, status_w, *extra], env={}, start_new_session=True,
                                          close_fds=True)
        finally:
            os.close(cfg_fd)
        self.pid, self.pidfd = self.popen.pid, os.pidfd_open(self.popen.pid)

    def _forward_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        old = {}

        def forward(signum: int, _frame: object) -> None:
            try:  # the init outer forwards it to the container process
                signal.pidfd_send_signal(self.pidfd, signum)
            except (ProcessLookupError, OSError):
                pass
        for s in _FORWARDED:
            old[s] = signal.signal(s, forward)
        if self.tty and isinstance(self.stdin, int) and os.isatty(self.stdin):
            # the user resized their terminal: resize the container's (the kernel then
            # sends SIGWINCH to the container's foreground process group)
            def resize(_signum: int, _frame: object) -> None:
                try:
                    size = stdio_.terminal_size(self.stdin)  # type: ignore[arg-type]
                    if size and self.master >= 0:  # (before the master arrives, init sets the size)
                        stdio_.set_winsize(self.master, size)
                except OSError:
                    pass
            old[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, resize)

        def restore() -> None:
            for s, h in old.items():
                signal.signal(s, h)
        return restore

    def _kill(self, why: str) -> None:
        """Ask the init outer to SIGKILL the container's pid 1 (the kernel then kills the
        whole pid namespace and the outer reports 137/SIGKILL once it is all gone, so the
        mounts are gone too when we clean up). A stuck outer gets SIGKILL later (_loop)."""
        if self.killed_for is None:
            self.killed_for = why
        if self.kill_sent_at is None:
            self.kill_sent_at = time.monotonic()
            self._signal_outer(KILL_REQUEST)

    def _signal_outer(self, signum: int) -> None:
        try:
            signal.pidfd_send_signal(self.pidfd, signum)
        except (ProcessLookupError, OSError):
            pass

    def _wait_gone(self, timeout: float) -> bool:
        import select
        return bool(select.select([self.pidfd], [], [], timeout)[0])

    def _loop(self, status_r: int, relays: dict[int, Callable[[bytes], None]], feed: bytes | None,
              feed_fd: int, stdin_src: int, console: int, sync_w: int, start: float) -> tuple[int, int | None]:
        sel = selectors.DefaultSelector()
        pidfd = self.pidfd
        sel.register(pidfd, selectors.EVENT_READ, "exit")
        sel.register(status_r, selectors.EVENT_READ, "status")
        for fd in relays:
            sel.register(fd, selectors.EVENT_READ, "out")
        master = -1
        console_pending = console >= 0  # the pty master is still to come (its output with it)
        if feed and feed_fd >= 0:
            sel.register(feed_fd, selectors.EVENT_WRITE, "feed")
        raw_restore = None
        if console >= 0:
            sel.register(console, selectors.EVENT_READ, "console")  # stdin follows the master
        elif stdin_src >= 0:
            sel.register(stdin_src, selectors.EVENT_READ, "stdin")
        if stdin_src >= 0:
            raw_restore = stdio_.make_raw(stdin_src)
        pump, pumping = self.pump, set()
        deadline = start + self.config.timeout if self.config.timeout else None
        exited_at: float | None = None
        open_status = True
        try:
            while True:
                if pump is not None:
                    self._sync_pump(sel, pump, pumping)
                now = time.monotonic()
                if exited_at is not None and (not relays and not open_status and not console_pending
                                              or now - exited_at > _DRAIN_AFTER_EXIT):
                    break
                if deadline is not None and now >= deadline and exited_at is None:
                    self._kill("timeout")
                    deadline = None
                if self.cancel is not None and self.cancel.is_set() and exited_at is None:
                    self._kill("cancel")
                if self.kill_sent_at is not None and exited_at is None and now - self.kill_sent_at > _KILL_GRACE:
                    self._signal_outer(signal.SIGKILL)  # the outer did not act: PDEATHSIG does the rest
                wakeups = []
                if self.cancel is not None:
                    wakeups.append(now + 0.1)
                if deadline is not None:
                    wakeups.append(deadline)
                if self.kill_sent_at is not None and exited_at is None:
                    wakeups.append(self.kill_sent_at + _KILL_GRACE + 0.01)
                if exited_at is not None:
                    wakeups.append(exited_at + _DRAIN_AFTER_EXIT)
                wait = max(0.0, min(wakeups) - now) if wakeups else None
                for key, _ in sel.select(wait):
                    what, fd = key.data, key.fd
                    if what == "exit":
                        sel.unregister(pidfd)
                        if self.popen is not None:
                            self.popen.wait()
                        exited_at = time.monotonic()  # (a pty master reports EIO once every slave holder is gone)
                        if pump is not None:
                            pump.stop()  # no one is left to read it
                    elif what == "console":
                        sel.unregister(fd)
                        console_pending = False
                        master = self._receive_master(fd)
                        if master >= 0:
                            relays[master] = stdio_.writer(self.stdout)
                            sel.register(master, selectors.EVENT_READ, "out")
                            if feed:
                                stdio_.write_all(master, feed)
                            if stdin_src >= 0:
                                sel.register(stdin_src, selectors.EVENT_READ, "stdin")
                    elif what == "status":
                        chunk = os.read(fd, 65536)
                        if not chunk:
                            sel.unregister(fd)
                            open_status = False
                        else:
                            self._status(chunk, sync_w)
                    elif what == "out":
                        try:
                            chunk = os.read(fd, 65536)
                        except OSError as e:
                            if e.errno != errno.EIO:
                                raise
                            chunk = b""
                        if not chunk:
                            sel.unregister(fd)
                            del relays[fd]
                        else:
                            try:
                                relays[fd](chunk)
                            except BrokenPipeError:
                                # our reader is gone (`pybuild run … | head`): close the relay,
                                # so the process gets EPIPE/SIGPIPE as it would writing there itself
                                sel.unregister(fd)
                                del relays[fd]
                                os.close(fd)
                                if fd == master:
                                    master = -1  # (the pty: the container gets SIGHUP)
                    elif what == "pump-in":
                        assert pump is not None
                        pump.read()
                    elif what == "pump-out":
                        assert pump is not None
                        pump.write()
                    elif what == "feed":
                        assert feed is not None
                        try:
                            n = os.write(fd, feed[:65536])
                        except BrokenPipeError:
                            n, feed = 0, b""
                        feed = feed[n:]
                        if not feed:
                            sel.unregister(fd)
                            os.close(fd)
                    elif what == "stdin":
                        data = os.read(fd, 65536)
                        if not data or master < 0:
                            sel.unregister(fd)
                        else:
                            stdio_.write_all(master, data)
        finally:
            sel.close()
            if master >= 0 and master not in relays:  # (the caller closes what is left in relays)
                os.close(master)
            if raw_restore:
                raw_restore()
            if exited_at is None:  # we are leaving early (an exception): take the sandbox down
                self._kill("cancel")
                if not self._wait_gone(_KILL_GRACE):
                    self._signal_outer(signal.SIGKILL)
                    self._wait_gone(_KILL_GRACE)
                if self.popen is not None:
                    self.popen.wait()
            os.close(pidfd)
        exits = [r for r in self.records if r[0] == "X"]
        if exits:
            code_s, _, sig_s = exits[0][1].partition(" ")
            code, sig = int(code_s), int(sig_s)
            return code, (sig or None)
        # no status from the init outer: it was killed (timeout, cancel, or from outside)
        if self.killed_for is not None:
            return 128 + signal.SIGKILL, signal.SIGKILL
        rc = self.popen.returncode if self.popen is not None else None
        if rc is not None and rc < 0:
            return 128 - rc, -rc
        raise SandboxError("the sandbox init ended without reporting a status (killed from outside?)")

    @staticmethod
    def _sync_pump(sel: selectors.BaseSelector, pump: stdio_.Pump, registered: set[int]) -> None:
        """Watch the pump's source or its pipe, whichever it waits for; close the pipe when done."""
        while pump.wants_input and not pump.pollable:
            pump.read()  # a regular file: never blocks
            if pump.buf:
                break
        want = {}
        if pump.wants_input:
            want[pump.src] = (selectors.EVENT_READ, "pump-in")
        elif pump.dst >= 0 and pump.buf:
            want[pump.dst] = (selectors.EVENT_WRITE, "pump-out")
        for fd in [fd for fd in registered if fd not in want]:
            sel.unregister(fd)
            registered.discard(fd)
        for fd, (events, tag) in want.items():
            if fd not in registered:
                sel.register(fd, events, tag)
                registered.add(fd)
        if pump.finished:
            os.close(pump.dst)
            pump.dst = -1

    def _receive_master(self, console: int) -> int:
        """The pty master init made inside the container, or -1 if it ended before sending it."""
        self.master = stdio_.receive_fd(console)
        return self.master

    def _status(self, chunk: bytes, sync_w: int) -> None:
        self.status_buf += chunk
        *lines, self.status_buf = self.status_buf.split(b"\n")
        for raw in lines:
            kind, _, rest = raw.decode("utf-8", "surrogateescape").partition(" ")
            if kind == "U":
                self._write_id_maps(int(rest), sync_w)
            elif kind == "N":
                self._connect_netns(int(rest), sync_w)
            elif kind == "P":
                if self.on_start is not None:
                    self.on_start(int(rest))
            else:
                self.records.append([kind, rest])

    def _connect_netns(self, pid: int, sync_w: int) -> None:
        try:
            assert self.on_netns is not None
            self.on_netns(pid)
        except Exception as e:  # the hook's own message says what failed (NetworkError, OSError)
            msg = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            self.records.append(["E", f"namespace {msg}"])
            self._kill("error")
            return
        os.write(sync_w, b"G")

    def _write_id_maps(self, pid: int, sync_w: int) -> None:
        from runtime.namespaces import write_id_maps
        c = self.config
        try:
            write_id_maps(pid, [(m.container_id, m.host_id, m.size) for m in c.uid_map],
                          [(m.container_id, m.host_id, m.size) for m in c.gid_map], deny_setgroups=False)
        except SandboxError as e:
            self.records.append(["E", f"namespace {e}"])
            self._kill("error")
            return
        os.write(sync_w, b"G")
