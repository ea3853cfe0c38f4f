"""SandboxConfig as pure data: validation (every problem at once) and the JSON form."""
from __future__ import annotations

import json

import pytest

from runtime.config import (DEFAULT_CAPABILITIES, IdMap, Limits, Mount, Process, Rlimit, Rootfs,
                            SandboxConfig)
from runtime.errors import ConfigError


def full_config(tmp_path) -> SandboxConfig:
    for d in ("l1", "l2", "u", "w", "cache"):
        (tmp_path / d).mkdir()
    return SandboxConfig(
        rootfs=Rootfs(lowerdirs=(str(tmp_path / "l1"), str(tmp_path / "l2")), upperdir=str(tmp_path / "u"),
                      workdir=str(tmp_path / "w")),
        process=Process(argv=("sh", "-c", "echo hi"), env=("PATH=/bin", "A=b=c"), cwd="/app", uid=1000, gid=1000,
                        additional_gids=(5,), tty=True, terminal_size=(24, 80)),
        mounts=(Mount("bind", "/cache", str(tmp_path / "cache"), options=("rbind",)),
                Mount("tmpfs", "/tmp", options=("size=64m", "mode=1777"))),
        hostname="h", network="host", namespaces=("mount", "pid", "user"),
        uid_map=(IdMap(0, 100000, 65536),), gid_map=(IdMap(0, 100000, 65536),),
        limits=Limits(memory_bytes=1 << 30, cpu_quota=1.5, pids=100), rlimits=(Rlimit("nofile", 1024, 4096),),
        timeout=12.5, readonly_rootfs=True, extra_hosts=(("db", "10.0.0.2"),))


def test_valid_config_has_no_problems(tmp_path):
    assert full_config(tmp_path).validate() == []


def test_json_round_trip(tmp_path):
    cfg = full_config(tmp_path)
    text = cfg.to_json()
    assert json.loads(text)["process"]["argv"] == ["sh", "-c", "echo hi"]
    assert SandboxConfig.from_json(text) == cfg
    assert SandboxConfig.from_json(text).to_json() == text


def test_defaults_are_docker_like(tmp_path):
    cfg = SandboxConfig(rootfs=Rootfs(path=str(tmp_path)), process=Process(argv=("true",)))
    assert cfg.validate() == []
    assert cfg.network == "none" and cfg.capabilities == DEFAULT_CAPABILITIES and cfg.no_new_privileges
    assert cfg.process.env[0].startswith("PATH=/usr/local/sbin:")


def test_every_problem_is_reported_at_once(tmp_path):
    cfg = SandboxConfig(
        rootfs=Rootfs(lowerdirs=("rel", str(tmp_path / "missing")), upperdir=str(tmp_path)),
        process=Process(argv=(), cwd="app", env=("=x", "NOVALUE"), uid=-1),
        mounts=(Mount("nfs", "/x"), Mount("bind", "rel", "also-rel"), Mount("tmpfs", "/a/../b")),
        network="bridge", namespaces=("mount", "time"), hostname="a/b",
        uid_map=(IdMap(0, 0, 0),), limits=Limits(memory_bytes=1, cpu_quota=0, pids=0),
        rlimits=(Rlimit("bogus", 2, 1),), timeout=0, capabilities=("CAP_NOPE",), extra_hosts=(("bad name", "1.2.3.4"),))
    problems = cfg.validate()
    text = "\n".join(problems)
    for needle in ("upperdir and workdir go together", "'rel' is not an absolute path", "does not exist",
                   "argv is empty", "cwd 'app' is not absolute", "'=x' is not NAME=value", "'NOVALUE'",
                   "uid -1 out of range", "unknown kind 'nfs'", "target must be an absolute path",
                   "bind source 'also-rel'", "must not contain '..'", "'bridge' is not one of",
                   "unknown namespace 'time'", "'a/b' is not a valid host name", "id maps need the 'user' namespace",
                   "bad mapping", "below 4 MiB", "cpu_quota must be > 0", "pids must be >= 1",
                   "unknown resource 'bogus'", "soft limit above hard limit", "timeout must be > 0",
                   "unknown capability 'CAP_NOPE'", "extra_hosts: bad entry"):
        assert needle in text, f"{needle!r} not reported:\n{text}"
    with pytest.raises(ConfigError) as ei:
        cfg.check()
    assert ei.value.problems == problems


def test_net_namespace_conflicts_with_host_network(tmp_path):
    cfg = SandboxConfig(rootfs=Rootfs(path=str(tmp_path)), process=Process(argv=("true",)),
                        network="host", namespaces=("mount", "net"))
    assert any("conflicts" in p for p in cfg.validate())


@pytest.mark.parametrize("text, needle", [
    ("{nope", "not JSON"),
    ('{"rootfs": {"path": "/"}, "process": {"argv": ["x"]}, "bogus": 1}', "unknown field(s) for SandboxConfig: bogus"),
    ('{"rootfs": {"path": "/"}}', "malformed config"),
    ('{"rootfs": [], "process": {"argv": ["x"]}}', "Rootfs must be an object"),
])
def test_from_json_rejects_malformed_input(text, needle):
    with pytest.raises(ConfigError, match=None) as ei:
        SandboxConfig.from_json(text)
    assert needle in str(ei.value)
