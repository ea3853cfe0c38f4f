"""Settings: the state-directory layout, the YAML config file and environment variables.

Owns: where pybuild keeps its state (`$PYBUILD_ROOT`; root: /var/lib/pybuild; others:
~/.local/share/pybuild), the config file (`$PYBUILD_CONFIG` or ~/.config/pybuild/config.yaml)
and the names of the subdirectories. Must not: create stores or touch blobs (oci.store
does); import yaml unless a config file exists (start-up budget).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from builder.errors import PybuildError
from runtime.record import Record, field

COMPRESSIONS = ("gzip", "zstd", "none")


class Settings(Record):
    root: Path
    compression: str = "gzip"  # as BuildKit: every registry client (docker 20.10 too) pulls it
    insecure_registries: tuple[str, ...] = ()
    mirrors: dict[str, tuple[str, ...]] = field(default_factory=dict)
    config_file: Path | None = None

    # layout of the state directory (docs/design.md "On disk")
    @property
    def store_dir(self) -> Path:
        """The OCI layout (blobs/, index.json, oci-layout) that is the local image store."""
        return self.root

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def lock_file(self) -> Path:
        return self.root / "lock"


def default_root() -> Path:
    env = os.environ.get("PYBUILD_ROOT")
    if env:
        return Path(env).absolute()
    if os.geteuid() == 0:
        return Path("/var/lib/pybuild")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "pybuild"


def config_path() -> Path:
    env = os.environ.get("PYBUILD_CONFIG")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pybuild" / "config.yaml"


def _read_config(path: Path) -> dict:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise PybuildError(f"cannot read config file {path}: {e.strerror}") from None
    import yaml  # lazy: 39 ms of import, only when a config file exists

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise PybuildError(f"config file {path} is not valid YAML: {e}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise PybuildError(f"config file {path}: expected a mapping at the top level")
    return data


def _parse(data: dict, path: Path) -> Settings:
    known = {"root", "compression", "insecure_registries", "mirrors"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise PybuildError(f"config file {path}: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
    root = Path(os.path.expanduser(str(data["root"]))) if data.get("root") else None
    if os.environ.get("PYBUILD_ROOT") or root is None:
        root = default_root()
    comp = os.environ.get("PYBUILD_COMPRESSION") or data.get("compression", "gzip")
    if comp not in COMPRESSIONS:
        raise PybuildError(f"config file {path}: compression must be one of {', '.join(COMPRESSIONS)}, not {comp!r}")
    insecure = data.get("insecure_registries") or []
    if not isinstance(insecure, list) or not all(isinstance(x, str) for x in insecure):
        raise PybuildError(f"config file {path}: insecure_registries must be a list of host[:port] strings")
    mirrors_raw = data.get("mirrors") or {}
    if not isinstance(mirrors_raw, dict):
        raise PybuildError(f"config file {path}: mirrors must map a registry host to a list of mirror hosts")
    mirrors = {}
    for host, lst in mirrors_raw.items():
        if isinstance(lst, str):
            lst = [lst]
        if not isinstance(lst, list) or not all(isinstance(x, str) for x in lst):
            raise PybuildError(f"config file {path}: mirrors[{host!r}] must be a list of hosts")
        mirrors[str(host)] = tuple(lst)
    return Settings(root=root.absolute(), compression=comp, insecure_registries=tuple(insecure),
                    mirrors=mirrors, config_file=path if data else None)


@lru_cache(maxsize=None)
def _load(root_env: str | None, comp_env: str | None, cfg: str) -> Settings:  # env in the key: no stale values
    path = Path(cfg)
    return _parse(_read_config(path), path)


def load() -> Settings:
    """The effective settings: config file, then environment variables on top."""
    return _load(os.environ.get("PYBUILD_ROOT"), os.environ.get("PYBUILD_COMPRESSION"), str(config_path()))
