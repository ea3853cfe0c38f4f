"""The image configuration: ImageConfig, ContainerConfig (Docker's field names), History.

Owns: reading (OCI schema checks + `NAME=value` Env entries) and canonical writing of image
config JSON, keeping Docker's extension fields (Healthcheck, OnBuild, Shell) inside `config`
as BuildKit does, and the pure "add a layer / add history" steps. Unknown fields of foreign
configs (container_config, docker_version...) are dropped on rewrite, as BuildKit does.
Must not: touch stores; import model.py (model re-exports these names).
"""
from __future__ import annotations

import re

from builder.oci import _check as c
from builder.oci.digest import Digest, canonical_json
from builder.errors import InvalidDocument
from runtime.record import Record, replace

_ENV = re.compile(r"[^=]+=", re.DOTALL)


class ContainerConfig(Record):
    """The `config` object: how to run the image. Treat the dict fields as read-only."""

    user: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str = ""
    labels: dict[str, str] | None = None
    exposed_ports: dict[str, dict] | None = None
    volumes: dict[str, dict] | None = None
    stop_signal: str = ""
    healthcheck: dict | None = None  # Docker HealthConfig: Test, Interval, Timeout, StartPeriod, Retries
    on_build: tuple[str, ...] = ()
    shell: tuple[str, ...] | None = None
    args_escaped: bool | None = None

    def to_dict(self) -> dict:
        d: dict = {}
        if self.user:
            d["User"] = self.user
        if self.env:
            d["Env"] = list(self.env)
        if self.entrypoint is not None:
            d["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            d["Cmd"] = list(self.cmd)
        if self.working_dir:
            d["WorkingDir"] = self.working_dir
        if self.labels:
            d["Labels"] = dict(self.labels)
        if self.exposed_ports:
            d["ExposedPorts"] = {k: dict(v) for k, v in self.exposed_ports.items()}
        if self.volumes:
            d["Volumes"] = {k: dict(v) for k, v in self.volumes.items()}
        if self.stop_signal:
            d["StopSignal"] = self.stop_signal
        if self.healthcheck is not None:
            d["Healthcheck"] = self.healthcheck
        if self.on_build:
            d["OnBuild"] = list(self.on_build)
        if self.shell is not None:
            d["Shell"] = list(self.shell)
        if self.args_escaped is not None:
            d["ArgsEscaped"] = self.args_escaped
        return d

    @classmethod
    def from_dict(cls, v: object, where: str = "config.config") -> "ContainerConfig":
        d = c.obj(v, where)

        def opt_list(key: str) -> tuple[str, ...] | None:
            x = d.get(key)
            return None if x is None else c.strings(x, f"{where}.{key}")

        env = c.strings(d["Env"], f"{where}.Env") if d.get("Env") is not None else ()
        for i, e in enumerate(env):
            if not _ENV.match(e):
                raise c.fail(f"{where}.Env[{i}]", f"{e!r} is not NAME=value")
        return cls(
            user=c.string(d.get("User") or "", f"{where}.User") if "User" in d else "",
            env=env,
            entrypoint=opt_list("Entrypoint"),
            cmd=opt_list("Cmd"),
            working_dir=c.string(d["WorkingDir"], f"{where}.WorkingDir") if d.get("WorkingDir") is not None else "",
            labels=c.string_map(d["Labels"], f"{where}.Labels") if d.get("Labels") is not None else None,
            exposed_ports=(c.object_map(d["ExposedPorts"], f"{where}.ExposedPorts")
                           if d.get("ExposedPorts") is not None else None),
            volumes=c.object_map(d["Volumes"], f"{where}.Volumes") if d.get("Volumes") is not None else None,
            stop_signal=c.string(d["StopSignal"], f"{where}.StopSignal") if d.get("StopSignal") is not None else "",
            healthcheck=c.obj(d["Healthcheck"], f"{where}.Healthcheck") if d.get("Healthcheck") is not None else None,
            on_build=opt_list("OnBuild") or (),
            shell=opt_list("Shell"),
            args_escaped=c.boolean(d["ArgsEscaped"], f"{where}.ArgsEscaped") if "ArgsEscaped" in d else None,
        )


class History(Record):
    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool = False

    def to_dict(self) -> dict:
        d: dict = {}
        for k in ("created", "created_by", "author", "comment"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        if self.empty_layer:
            d["empty_layer"] = True
        return d

    @classmethod
    def from_dict(cls, v: object, where: str) -> "History":
        d = c.obj(v, where)
        return cls(created=c.date_time(d["created"], f"{where}.created") if "created" in d else None,
                   created_by=c.opt_string(d, "created_by", where), author=c.opt_string(d, "author", where),
                   comment=c.opt_string(d, "comment", where),
                   empty_layer=c.boolean(d["empty_layer"], f"{where}.empty_layer") if "empty_layer" in d else False)


class ImageConfig(Record):
    """The image config blob: platform, run config, rootfs diff_ids and history."""

    architecture: str
    os: str
    config: ContainerConfig = ContainerConfig()
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[History, ...] = ()
    created: str | None = None
    author: str | None = None
    variant: str | None = None
    os_version: str | None = None
    os_features: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        d: dict = {"architecture": self.architecture, "os": self.os,
                   "config": self.config.to_dict(),
                   "rootfs": {"type": "layers", "diff_ids": [str(x) for x in self.diff_ids]}}
        if self.history:
            d["history"] = [h.to_dict() for h in self.history]
        if self.created is not None:
            d["created"] = self.created
        if self.author is not None:
            d["author"] = self.author
        if self.variant:
            d["variant"] = self.variant
        if self.os_version:
            d["os.version"] = self.os_version
        if self.os_features:
            d["os.features"] = list(self.os_features)
        return d

    def to_json(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_json(cls, data: bytes | str) -> "ImageConfig":
        d = c.load_object(data, "config")
        w = "config"
        for k in ("architecture", "os", "rootfs"):
            if k not in d:
                raise c.fail(w, f"{k} is required")
        rootfs = c.obj(d["rootfs"], f"{w}.rootfs")
        if rootfs.get("type") != "layers":
            raise c.fail(f"{w}.rootfs.type", "must be \"layers\"")
        if "diff_ids" not in rootfs:
            raise c.fail(f"{w}.rootfs", "diff_ids is required")
        try:
            diff_ids = tuple(Digest(x) for x in c.strings(rootfs["diff_ids"] or [], f"{w}.rootfs.diff_ids"))
        except InvalidDocument as e:
            raise c.fail(f"{w}.rootfs.diff_ids", e.message) from None
        hist = d.get("history")
        if hist is not None and not isinstance(hist, list):
            raise c.fail(f"{w}.history", "must be an array")
        return cls(
            architecture=c.string(d["architecture"], f"{w}.architecture"),
            os=c.string(d["os"], f"{w}.os"),
            config=ContainerConfig.from_dict(d["config"]) if d.get("config") is not None else ContainerConfig(),
            diff_ids=diff_ids,
            history=tuple(History.from_dict(h, f"{w}.history[{i}]") for i, h in enumerate(hist or [])),
            created=c.date_time(d["created"], f"{w}.created") if d.get("created") is not None else None,
            author=c.opt_string(d, "author", w),
            variant=c.opt_string(d, "variant", w),
            os_version=c.opt_string(d, "os.version", w),
            os_features=c.strings(d["os.features"], f"{w}.os.features") if d.get("os.features") is not None else (),
        )

    def with_layer(self, diff_id: Digest | str, history: History | None = None) -> "ImageConfig":
        """A new config with one more layer (and its history entry, never empty_layer)."""
        h = replace(history, empty_layer=False) if history is not None else History()
        return replace(self, diff_ids=self.diff_ids + (Digest(diff_id),), history=self.history + (h,))

    def with_history(self, history: History) -> "ImageConfig":
        """A new config with a history entry for a step that made no layer (ENV, CMD...)."""
        return replace(self, history=self.history + (replace(history, empty_layer=True),))

    def with_config(self, **changes) -> "ImageConfig":
        """A new config whose run config has `changes` (ContainerConfig field names)."""
        return replace(self, config=replace(self.config, **changes))
