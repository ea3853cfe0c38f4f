"""images / tag / rmi / inspect / history through the real entry point."""
from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from tests.fixtures.images import make_image


@pytest.fixture
def store(pybuild_root):
    make_image(pybuild_root, "app:v1", [{"a.txt": b"hello"}, {"b.txt": b"world" * 100}], labels={"k": "v"})
    return pybuild_root


def test_images_lists_tags(store):
    r = run_cli("images")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.decode().splitlines()
    assert lines[0].split()[:3] == ["REPOSITORY", "TAG", "IMAGE"]
    assert lines[1].split()[:2] == ["app", "v1"]
    q = run_cli("images", "-q").stdout.decode().split()
    assert len(q) == 1 and len(q[0]) == 12


def test_tag_inspect_history_rmi(store):
    assert run_cli("tag", "app:v1", "registry.local:5000/team/app").returncode == 0
    r = run_cli("inspect", "app:v1")
    assert r.returncode == 0, r.stderr
    (info,) = json.loads(r.stdout)
    assert info["Id"].startswith("sha256:")
    assert sorted(info["RepoTags"]) == ["app:v1", "registry.local:5000/team/app:latest"]
    assert info["Config"]["Labels"] == {"k": "v"} and info["Config"]["Cmd"] == ["sh"]
    assert len(info["RootFS"]["Layers"]) == 2 and info["Os"] == "linux"
    assert run_cli("inspect", "-f", ".Config.Cmd", "app:v1").stdout.decode().strip() == '["sh"]'
    # by id prefix
    iid = info["Id"].split(":")[1][:12]
    assert json.loads(run_cli("inspect", iid).stdout)[0]["Id"] == info["Id"]

    h = run_cli("history", "app:v1").stdout.decode().splitlines()
    assert h[0].split()[0] == "IMAGE" and len(h) == 4
    assert 'CMD ["sh"]' in h[1] and "layer 0" in h[3]

    r = run_cli("rmi", iid)
    assert r.returncode == 1 and b"multiple" in r.stderr
    # by name:tag only that name goes, even when others name the image (`app:v2` fits the
    # digest grammar `algorithm:encoded`; it is still a tag)
    assert run_cli("tag", "app:v1", "app:v2").returncode == 0
    r = run_cli("rmi", "app:v2")
    assert r.returncode == 0 and r.stdout == b"Untagged: app:v2\n", r.stderr
    r = run_cli("rmi", "registry.local:5000/team/app")
    assert r.returncode == 0 and b"Untagged: registry.local:5000/team/app:latest" in r.stdout
    r = run_cli("rmi", "app:v1")
    assert r.returncode == 0 and b"Deleted: sha256:" in r.stdout
    assert run_cli("images", "-q").stdout == b""


@pytest.mark.parametrize("args,code,first", [
    (("inspect", "nosuch"), 1, "error: no image 'nosuch' in the local store"),
    (("tag", "nosuch", "x"), 1, "error: no image 'nosuch' in the local store"),
    (("tag", "app:v1", "UPPER"), 1, "error: invalid reference 'UPPER'"),
    (("rmi", "nosuch:1"), 1, "error: no image 'nosuch:1' in the local store"),
    (("history",), 2, "pybuild: error:"),
])
def test_bad_input_one_line_no_traceback(store, args, code, first):
    r = run_cli(*args)
    assert r.returncode == code
    err = r.stderr.decode()
    assert err.startswith(first), err
    assert "Traceback" not in err
