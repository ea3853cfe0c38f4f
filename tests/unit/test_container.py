"""docker run semantics: the Entrypoint/Cmd table of the Dockerfile reference, env, user."""
from __future__ import annotations

import pytest

from builder.container import (DEFAULT_PATH, command_line, merge_env, process_spec, read_env_file, resolve_user,
                               rootfs_reader, user_home, with_home)
from builder.errors import PybuildError

EXEC_EP = ["exec_entry", "p1_entry"]
SHELL_EP = ["/bin/sh", "-c", "exec_entry p1_entry"]


# The table "Understand how CMD and ENTRYPOINT interact" from the Dockerfile reference.
@pytest.mark.parametrize("entrypoint,cmd,expected", [
    (None, None, None),
    (None, ["exec_cmd", "p1_cmd"], ("exec_cmd", "p1_cmd")),
    (None, ["/bin/sh", "-c", "exec_cmd p1_cmd"], ("/bin/sh", "-c", "exec_cmd p1_cmd")),
    (SHELL_EP, None, ("/bin/sh", "-c", "exec_entry p1_entry")),
    (SHELL_EP, ["exec_cmd", "p1_cmd"], ("/bin/sh", "-c", "exec_entry p1_entry", "exec_cmd", "p1_cmd")),
    (SHELL_EP, ["/bin/sh", "-c", "exec_cmd p1_cmd"],
     ("/bin/sh", "-c", "exec_entry p1_entry", "/bin/sh", "-c", "exec_cmd p1_cmd")),
    (EXEC_EP, None, ("exec_entry", "p1_entry")),
    (EXEC_EP, ["exec_cmd", "p1_cmd"], ("exec_entry", "p1_entry", "exec_cmd", "p1_cmd")),
    (EXEC_EP, ["/bin/sh", "-c", "exec_cmd p1_cmd"], ("exec_entry", "p1_entry", "/bin/sh", "-c", "exec_cmd p1_cmd")),
])
def test_entrypoint_cmd_table(entrypoint, cmd, expected):
    if expected is None:
        with pytest.raises(PybuildError, match="no command specified"):
            command_line(entrypoint, cmd)
    else:
        assert command_line(entrypoint, cmd) == expected


def test_run_args_replace_cmd_and_entrypoint_flag_drops_cmd():
    assert command_line(EXEC_EP, ["c"], args=["x", "y"]) == ("exec_entry", "p1_entry", "x", "y")
    assert command_line(EXEC_EP, ["c"], override_entrypoint="/bin/echo") == ("/bin/echo",)
    assert command_line(EXEC_EP, ["c"], override_entrypoint="/bin/echo", args=["hi"]) == ("/bin/echo", "hi")
    assert command_line(None, ["c"], override_entrypoint="", args=["a"]) == ("a",)


def test_env_merge_order_host_lookup_and_default_path():
    # docker's daemon environment: PATH, HOSTNAME, TERM (with -t) first, replaced in place by
    # the image's Env; then -e / --env-file in order
    env = merge_env(["A=1", "B=2"], ["B=3", "C", "D"], host_env={"C": "host"})
    assert env == (f"PATH={__import__('builder.container').container.DEFAULT_PATH}", "A=1", "B=3", "C=host")
    assert merge_env(["PATH=/x"], []) == ("PATH=/x",)
    assert merge_env(["A=1", "PATH=/x"], ["TERM=vt100"], hostname="h1", tty=True) == \
        ("PATH=/x", "HOSTNAME=h1", "TERM=vt100", "A=1")
    assert merge_env(["HOSTNAME=img"], [], hostname="h1") == ("PATH=" + DEFAULT_PATH, "HOSTNAME=img")
    with pytest.raises(PybuildError):
        merge_env([], ["=v"])


def test_env_file(tmp_path):
    f = tmp_path / "env"
    f.write_text("# comment\n\nA=1\n  B=two words\nC\n")
    assert read_env_file(str(f)) == ["A=1", "B=two words", "C"]
    f.write_text("BAD NAME=1\n")
    with pytest.raises(PybuildError, match=":1: invalid variable name"):
        read_env_file(str(f))
    with pytest.raises(PybuildError, match="cannot read env file"):
        read_env_file(str(tmp_path / "missing"))


@pytest.fixture
def rootfs(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\napp:x:1001:\nwheel:x:10:app,other\naudio:x:29:app\n")
    return rootfs_reader(tmp_path)


def test_resolve_user(rootfs):
    # the additional groups start with the primary gid, as runc sets them under BuildKit/docker
    # (tests/differential: user_*_supplementary_groups, user_numeric_unknown_uid, user_name_and_group)
    assert resolve_user("", rootfs) == (0, 0, (0,))
    assert resolve_user("app", rootfs) == (1000, 1001, (1001, 10, 29))
    assert resolve_user("1000", rootfs) == (1000, 1001, (1001, 10, 29))
    assert resolve_user("app:wheel", rootfs) == (1000, 10, (10,))
    assert resolve_user("4242:77", rootfs) == (4242, 77, (77,))
    assert resolve_user("4242", None) == (4242, 0, (0,))
    with pytest.raises(PybuildError, match="unable to find user nosuch"):
        resolve_user("nosuch", rootfs)
    with pytest.raises(PybuildError, match="unable to find group nogroup"):
        resolve_user("app:nogroup", rootfs)


def test_passwd_symlink_out_of_image_is_not_followed(tmp_path):
    (tmp_path / "etc").mkdir()
    outside = tmp_path.parent / "outside-passwd"
    outside.write_text("evil:x:7:7::/:/bin/sh\n")
    (tmp_path / "etc/passwd").symlink_to(outside)
    with pytest.raises(PybuildError):
        resolve_user("evil", rootfs_reader(tmp_path))


def test_process_spec_applies_image_config(rootfs):
    cfg = {"Env": ["X=1"], "Entrypoint": ["/bin/ep"], "Cmd": ["a"], "WorkingDir": "/w", "User": "app"}
    spec = process_spec(cfg, rootfs, env=["Y=2"], host_env={})
    assert spec.argv == ("/bin/ep", "a") and spec.cwd == "/w" and (spec.uid, spec.gid) == (1000, 1001)
    assert "X=1" in spec.env and "Y=2" in spec.env
    spec = process_spec(cfg, rootfs, args=["b"], workdir="/tmp", user="0:0", host_env={})
    assert spec.argv == ("/bin/ep", "b") and spec.cwd == "/tmp" and spec.uid == 0
    with pytest.raises(PybuildError, match="absolute path"):
        process_spec(cfg, rootfs, workdir="rel", host_env={})


def test_home_comes_from_passwd_as_runc_sets_it(rootfs):
    # runc (docker run, BuildKit's RUN) sets HOME from the user's passwd entry when the
    # environment has none; `/` for a user passwd does not know.
    assert user_home("", rootfs) == "/root" and user_home("app", rootfs) == "/home/app"
    assert user_home("1000:10", rootfs) == "/home/app" and user_home("4242", rootfs) == "/"
    assert user_home("0", None) == "/"
    assert with_home(("A=1",), "app", rootfs) == ("A=1", "HOME=/home/app")
    assert with_home(("HOME=/x",), "app", rootfs) == ("HOME=/x",)
    cfg = {"Cmd": ["sh"], "User": "app"}
    spec = process_spec(cfg, rootfs, host_env={}, hostname="c0ffee", tty=True)
    assert spec.env == ("PATH=" + DEFAULT_PATH, "HOSTNAME=c0ffee", "TERM=xterm", "HOME=/home/app")
    assert process_spec(cfg, rootfs, host_env={}, user="root").env[-1] == "HOME=/root"
    assert process_spec(cfg, rootfs, host_env={}, env=["HOME=/h"]).env[-1] == "HOME=/h"
