"""builder.platforms: normalization, automatic ARGs, binfmt_misc handler matching (fake /proc dirs)."""
from __future__ import annotations

import pytest

from builder import platforms as P
from builder.errors import PybuildError, UsageError


@pytest.mark.parametrize("spec,want", [
    ("linux/amd64", "linux/amd64"), ("linux/arm64/v8", "linux/arm64"), ("linux/arm", "linux/arm/v7"),
    ("arm64", "linux/arm64"), ("linux/aarch64", "linux/arm64"), ("linux/x86_64", "linux/amd64"),
    ("Linux/ARM64", "linux/arm64"), ("linux/arm/v6", "linux/arm/v6"), ("linux/riscv64", "linux/riscv64")])
def test_normalize(spec, want):
    assert P.normalize(spec) == want


@pytest.mark.parametrize("bad", ["", "linux/", "/amd64", "a/b/c/d"])
def test_normalize_rejects(bad):
    with pytest.raises(UsageError):
        P.normalize(bad)


def test_parse_list_dedupes_in_order():
    assert P.parse_list("linux/arm64,linux/amd64,linux/arm64/v8") == ("linux/arm64", "linux/amd64")


def test_automatic_args():
    a = P.automatic_args("linux/amd64", "linux/arm/v7")
    assert a == {"BUILDPLATFORM": "linux/amd64", "BUILDOS": "linux", "BUILDARCH": "amd64", "BUILDVARIANT": "",
                 "TARGETPLATFORM": "linux/arm/v7", "TARGETOS": "linux", "TARGETARCH": "arm", "TARGETVARIANT": "v7"}


AARCH64 = ("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {flags}\noffset 0\n"
           "magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n")


def _fake(tmp_path, flags="POF", status="enabled"):
    d = tmp_path / "binfmt"
    d.mkdir()
    (d / "status").write_text(status + "\n")
    (d / "register").write_text("")
    (d / "qemu-aarch64").write_text(AARCH64.format(flags=flags))
    return d


def test_status_ready_with_f_flag(tmp_path):
    st = P.emulation_status("arm64", _fake(tmp_path))
    assert st.ready and st.handler == "qemu-aarch64"


def test_status_without_f_flag_is_not_ready(tmp_path):
    st = P.emulation_status("arm64", _fake(tmp_path, flags="PO"))
    assert not st.ready and "F flag" in st.reason


def test_status_other_arch_not_matched(tmp_path):
    st = P.emulation_status("riscv64", _fake(tmp_path))
    assert not st.ready and "riscv64" in st.reason


def test_status_unmounted(tmp_path):
    st = P.emulation_status("arm64", tmp_path / "nothing")
    assert not st.ready and "not mounted" in st.reason


def test_host_is_native():
    assert P.emulation_status(P.host()).ready


def test_require_emulation_message(monkeypatch, tmp_path):
    monkeypatch.setattr(P, "BINFMT", tmp_path / "nothing")
    monkeypatch.setattr(P.emulation_status, "__defaults__", (tmp_path / "nothing",))
    with pytest.raises(PybuildError) as e:
        P.require_emulation("linux/arm64")
    msg = e.value.message
    assert "linux/arm64" in msg and "pybuild setup emulation" in msg and "\n" not in msg


def test_qemu_rules_parse(tmp_path):
    d = tmp_path / "binfmt.d"
    d.mkdir()
    (d / "qemu-aarch64.conf").write_text(
        ":qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00"
        "\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff"
        ":/usr/libexec/qemu-binfmt/aarch64-binfmt-P:OP\n")
    (d / "other.conf").write_text(":x:E::foo::/bin/true:\n")
    rules = P.qemu_rules((d,))
    assert list(rules) == ["qemu-aarch64"]
    r = rules["qemu-aarch64"]
    assert r.flags == "OP" and r.magic[18] == 0xb7 and len(r.mask) == 20


def _rules_dir(tmp_path, flags):
    d = tmp_path / "binfmt.d"
    d.mkdir()
    (d / "qemu-aarch64.conf").write_text(
        ":qemu-aarch64:M::\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00"
        "\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff"
        f":/bin/true:{flags}\n")
    return d


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="setup refuses non-root")
def test_setup_replaces_a_handler_without_f_and_adds_f(tmp_path):
    root = _fake(tmp_path, flags="PO")
    (root / "qemu-aarch64").write_text(AARCH64.format(flags="PO").replace("/usr/libexec/qemu-binfmt/aarch64-binfmt-P",
                                                                          "/bin/true"))
    lines = P.setup_emulation(("arm64",), root=root, rules_dirs=(_rules_dir(tmp_path, "OP"),))
    assert lines[0].startswith("qemu-aarch64: removed") and "flags OPF" in lines[1]
    assert (root / "register").read_text().endswith(":/bin/true:OPF")
    assert (root / "qemu-aarch64").read_text() == "-1"  # the kernel's "remove this entry"


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="setup refuses non-root")
def test_setup_is_idempotent(tmp_path):
    root = _fake(tmp_path, flags="POF")
    (root / "qemu-aarch64").write_text(AARCH64.format(flags="POF").replace("/usr/libexec/qemu-binfmt/aarch64-binfmt-P",
                                                                           "/bin/true"))
    lines = P.setup_emulation(("arm64",), root=root, rules_dirs=(_rules_dir(tmp_path, "OPF"),))
    assert lines == ["qemu-aarch64: already registered (/bin/true, flags POF)"]
    assert (root / "register").read_text() == ""
