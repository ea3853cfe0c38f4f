"""examples/debian-mirror.sh: the Debian archive comes from the apt sources, never a named host."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "debian-mirror.sh"


def _mirror(etc: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(SCRIPT)], env=dict(os.environ, APT_ETC=str(etc)),
                          capture_output=True, text=True)


def test_deb822_sources_prefer_the_main_archive(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n")
    assert _mirror(tmp_path).stdout == "http://mirror.example/debian\n"


def test_one_line_sources_with_options(tmp_path):
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n")
    assert _mirror(tmp_path).stdout == "http://m.example/debian\n"


def test_no_sources_is_one_clear_line(tmp_path):
    r = _mirror(tmp_path)
    assert r.returncode == 1 and r.stderr == "debian-mirror: no Debian archive in the apt sources\n"
