"""Settings: state-dir resolution, config file parsing and its errors."""
from __future__ import annotations

from pathlib import Path

import pytest

from builder import settings
from builder.errors import PybuildError


@pytest.fixture(autouse=True)
def _clear_cache():
    settings._load.cache_clear()
    yield
    settings._load.cache_clear()


def test_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PYBUILD_ROOT", str(tmp_path / "r"))
    monkeypatch.setenv("PYBUILD_CONFIG", str(tmp_path / "none.yaml"))
    monkeypatch.delenv("PYBUILD_COMPRESSION", raising=False)
    s = settings.load()
    assert s.root == tmp_path / "r"
    assert s.snapshots_dir == tmp_path / "r" / "snapshots"
    # gzip by default, as BuildKit: docker 20.10 (and every registry client) pulls it
    assert s.compression == "gzip" and s.config_file is None


def test_config_file_values(monkeypatch, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("root: %s\ncompression: zstd\ninsecure_registries: [reg.local:5000]\n"
                   "mirrors:\n  docker.io: mirror.local\n" % (tmp_path / "state"))
    monkeypatch.delenv("PYBUILD_ROOT", raising=False)
    monkeypatch.delenv("PYBUILD_COMPRESSION", raising=False)
    monkeypatch.setenv("PYBUILD_CONFIG", str(cfg))
    s = settings.load()
    assert s.root == tmp_path / "state"
    assert s.compression == "zstd"
    assert s.insecure_registries == ("reg.local:5000",)
    assert s.mirrors == {"docker.io": ("mirror.local",)}


@pytest.mark.parametrize("text,msg", [
    ("compression: lz4\n", "compression must be one of"),
    ("colour: blue\n", "unknown key 'colour'"),
    ("- a\n- b\n", "expected a mapping"),
    ("insecure_registries: 5\n", "insecure_registries must be a list"),
    ("root: [unclosed\n", "not valid YAML"),
])
def test_bad_config_is_one_clear_error(monkeypatch, tmp_path, text, msg):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    monkeypatch.setenv("PYBUILD_CONFIG", str(cfg))
    with pytest.raises(PybuildError, match=msg):
        settings.load()


def test_env_compression_overrides_file(monkeypatch, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("compression: gzip\n")
    monkeypatch.setenv("PYBUILD_CONFIG", str(cfg))
    monkeypatch.setenv("PYBUILD_COMPRESSION", "none")
    assert settings.load().compression == "none"
