"""Cache keys: stable, versioned, sensitive to what matters and blind to what must not count."""
from __future__ import annotations

import json

from builder.oci.digest import canonical_json, digest_bytes
from builder.plan import cachekey as ck
from builder.plan.graph import CopyOp, MountOp, RunOp


def run_key(op: RunOp, env=("PATH=/bin",), args=(), workdir="/", user="", parent="sha256:" + "a" * 64):
    return ck.make_key("run", parent, ck.run_op(op, env=env, args=args, workdir=workdir, user=user,
                                                 platform="linux/amd64"))


def test_key_is_the_digest_of_the_canonical_pre_image() -> None:
    k = run_key(RunOp(("/bin/sh", "-c", "make"), True))
    assert k.key == str(digest_bytes(canonical_json(k.pre_image)))
    assert k.pre_image["v"] == ck.VERSION == "pybuild.cache.v2"
    assert json.loads(canonical_json(k.pre_image)) == k.pre_image


def test_what_counts() -> None:
    op = RunOp(("/bin/sh", "-c", "make"), True)
    base = run_key(op).key
    assert run_key(RunOp(("/bin/sh", "-c", "make all"), True)).key != base
    assert run_key(op, env=("PATH=/bin", "A=1")).key != base
    assert run_key(op, args=(("V", "1"),)).key != base
    assert run_key(op, workdir="/src").key != base
    assert run_key(op, user="app").key != base
    assert run_key(op, parent="sha256:" + "b" * 64).key != base
    assert run_key(RunOp(op.argv, True, network="none")).key != base


def test_what_does_not_count() -> None:
    op = RunOp(("/bin/sh", "-c", "make"), True)
    base = run_key(op, env=("PATH=/bin", "A=1")).key
    # env order, proxy variables (as env or ARG)
    assert run_key(op, env=("A=1", "PATH=/bin")).key == base
    assert run_key(op, env=("PATH=/bin", "A=1", "HTTP_PROXY=x", "no_proxy=y")).key == base
    assert run_key(op, env=("PATH=/bin", "A=1"), args=(("https_proxy", "z"),)).key == base


def test_secret_values_never_enter_the_key() -> None:
    m = MountOp("secret", target="/run/secrets/t", id="t")
    k = run_key(RunOp(("true",), False, mounts=(m,)))
    assert "t" == k.pre_image["op"]["mounts"][0]["id"]
    assert set(k.pre_image["op"]["mounts"][0]) == {"type", "target", "id", "env", "required"}


def test_copy_inputs_and_link() -> None:
    op = CopyOp(("a",), "/a")
    k1 = ck.make_key("copy", "p", ck.copy_op(op, dest="/a", platform="linux/amd64"), ["a:sha256:1"])
    k2 = ck.make_key("copy", "p", ck.copy_op(op, dest="/a", platform="linux/amd64"), ["a:sha256:2"])
    assert k1.key != k2.key
    assert ck.first_difference(k1.pre_image, k2.pre_image) == "inputs[0]"


def test_first_difference_and_lookup() -> None:
    a = {"v": 1, "kind": "run", "parent": "p", "op": {"env": ["A=1", "B=2"], "argv": ["x"]}, "inputs": []}
    b = {"v": 1, "kind": "run", "parent": "p", "op": {"env": ["A=1", "B=3"], "argv": ["x"]}, "inputs": []}
    assert ck.first_difference(a, a) is None
    path = ck.first_difference(a, b)
    assert path == "op.env[1]"
    assert ck.lookup(a, path) == "B=2" and ck.lookup(b, path) == "B=3"
    c = dict(b, parent="q")
    assert ck.first_difference(a, c) == "parent"  # parent is reported before op details
    assert ck.first_difference({"x": [1]}, {"x": [1, 2]}) == "x[1]"
