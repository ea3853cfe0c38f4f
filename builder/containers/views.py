"""What `ps` and `inspect` show of a container: docker's row fields (ID, Image, Command,
RunningFor, Status, Ports, Names, …) with its `--filter` keys, and docker's inspect JSON shape.

Owns: the presentation of builder.containers.state records. Must not: change a container.
"""
from __future__ import annotations

import re
import time

# --- ps rows ---------------------------------------------------------------------------------------
def _ago(iso: str | None) -> str:
    if not iso:
        return ""
    from builder.containers.logs import _time_of
    s = max(0.0, time.time() - _time_of(iso))
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= n:
            k = int(s // n)
            return f"{k} {unit}{'s' if k != 1 else ''}"
    return "Less than a second" if s < 1 else f"{int(s)} seconds"


def _status_text(st: dict) -> str:
    s = st.get("Status")
    if s == "running":
        health = (st.get("Health") or {}).get("Status")
        tail = {"starting": " (health: starting)", "healthy": " (healthy)", "unhealthy": " (unhealthy)"}.get(health, "")
        return f"Up {_ago(st.get('StartedAt'))}{tail}"
    if s == "restarting":
        return f"Restarting ({st.get('ExitCode', 0)}) {_ago(st.get('FinishedAt'))} ago"
    if s == "exited":
        if st.get("MonitorLost"):
            return "Exited (unknown: monitor lost)"
        return f"Exited ({st.get('ExitCode', 0)}) {_ago(st.get('FinishedAt'))} ago"
    return "Created"


def _ports_text(st: dict, cfg: dict) -> str:
    out = []
    for p in st.get("Ports") or cfg.get("Ports") or []:
        if st.get("Status") != "running":
            continue
        out.append(f"{p['HostIp']}:{p['HostPort']}->{p['ContainerPort']}/{p['Proto']}")
    return ", ".join(out)


def row(c, no_trunc: bool = False) -> dict:
    cfg, st = c.config, c.status()
    cmd = " ".join([cfg.get("Path", "")] + cfg.get("Args", []))
    if not no_trunc and len(cmd) > 20:
        cmd = cmd[:19] + "…"
    return {"ID": c.id if no_trunc else c.id[:12], "Image": cfg.get("Image", ""), "Command": f'"{cmd}"',
            "CreatedAt": cfg.get("Created", ""), "RunningFor": f"{_ago(cfg.get('Created'))} ago",
            "Status": _status_text(st), "State": st.get("Status", "created"), "Ports": _ports_text(st, cfg),
            "Names": cfg.get("Name", ""), "Networks": cfg.get("Network", ""),
            "Labels": ",".join(f"{k}={v}" for k, v in (cfg.get("Labels") or {}).items()),
            "Mounts": ",".join(m["Name"][:15] for m in cfg.get("Mounts", []))}


def matches(c, filters: list[str]) -> bool:
    from builder.errors import UsageError
    cfg, st = c.config, None
    by: dict[str, list[str]] = {}
    for f in filters:
        k, sep, v = f.partition("=")
        if not sep:
            raise UsageError(f"invalid --filter {f!r}: expected KEY=VALUE")
        by.setdefault(k, []).append(v)
    for k, vals in by.items():
        if k == "status":
            st = st or c.status()
            if st.get("Status", "created") not in vals:
                return False
        elif k == "name":
            if not any(re.search(v, cfg.get("Name", "")) for v in vals):
                return False
        elif k == "id":
            if not any(c.id.startswith(v) for v in vals):
                return False
        elif k == "ancestor":
            img = cfg.get("Image", "")
            if not any(v in (img, img.split(":")[0]) or cfg.get("ImageID", "").startswith(v)
                       or cfg.get("ImageID", "").removeprefix("sha256:").startswith(v) for v in vals):
                return False
        elif k == "label":
            labels = cfg.get("Labels") or {}
            for v in vals:
                lk, eq, lv = v.partition("=")
                if lk not in labels or (eq and labels[lk] != lv):
                    return False
        elif k == "network":
            if cfg.get("Network") not in vals:
                return False
        else:
            raise UsageError(f"invalid --filter key {k!r}: one of status, name, id, ancestor, label, network")
    return True


# docker's column headers for `ps --format 'table …'`
PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "RunningFor": "CREATED",
              "CreatedAt": "CREATED AT", "Status": "STATUS", "Ports": "PORTS", "Names": "NAMES",
              "State": "STATE", "Labels": "LABELS", "Networks": "NETWORKS", "Mounts": "MOUNTS"}
PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


# --- inspect ------------------------------------------------------------------------------------
def inspect_json(c) -> dict:
    cfg, st = c.config, c.status()
    status = st.get("Status", "created")
    ports: dict = {}
    for key in cfg.get("ExposedPorts") or {}:
        ports.setdefault(key, None)
    for p in (st.get("Ports") or cfg.get("Ports") or []):
        ports.setdefault(f"{p['ContainerPort']}/{p['Proto']}", [])
        if status == "running":
            if ports[f"{p['ContainerPort']}/{p['Proto']}"] is None:
                ports[f"{p['ContainerPort']}/{p['Proto']}"] = []
            ports[f"{p['ContainerPort']}/{p['Proto']}"].append({"HostIp": p["HostIp"], "HostPort": str(p["HostPort"])})
    sb = cfg.get("Sandbox") or {}
    net = cfg.get("Network", "")
    ip = st.get("IPAddress", "") if status == "running" else ""
    networks = {net: {"Aliases": cfg.get("Aliases") or None, "NetworkID": st.get("NetworkID", ""),
                      "IPAddress": ip, "Gateway": st.get("Gateway", "") if ip else "",
                      "IPPrefixLen": st.get("PrefixLen", 0) if ip else 0}} if net else {}
    return {
        "Id": c.id, "Created": cfg.get("Created"), "Path": cfg.get("Path"), "Args": cfg.get("Args", []),
        "State": {"Status": status, "Running": status == "running", "Paused": False,
                  "Restarting": status == "restarting", "OOMKilled": bool(st.get("OOMKilled")), "Dead": False,
                  "Pid": st.get("Pid", 0) if status == "running" else 0, "ExitCode": st.get("ExitCode", 0),
                  "Error": st.get("Error", ""), "StartedAt": st.get("StartedAt", "0001-01-01T00:00:00Z"),
                  "FinishedAt": st.get("FinishedAt", "0001-01-01T00:00:00Z"),
                  **({"Health": st["Health"]} if cfg.get("Healthcheck") and st.get("Health") else {})},
        "Image": cfg.get("ImageID"), "ResolvConfPath": "", "HostnamePath": "",
        "HostsPath": str(c.path / "hosts"), "LogPath": str(c.path / "container.log"),
        "Name": "/" + cfg.get("Name", ""), "RestartCount": st.get("RestartCount", 0), "Driver": "overlay",
        "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "HostConfig": {"Binds": cfg.get("Binds") or None, "NetworkMode": net,
                       "PortBindings": _bindings(cfg.get("Ports") or []),
                       "RestartPolicy": cfg.get("RestartPolicy") or {"Name": "", "MaximumRetryCount": 0},
                       "AutoRemove": bool(cfg.get("AutoRemove")), "VolumesFrom": None,
                       "ReadonlyRootfs": bool(sb.get("readonly_rootfs")),
                       "ExtraHosts": [f"{n}:{a}" for n, a in sb.get("extra_hosts") or []] or None,
                       "Init": bool(sb.get("init"))},
        "GraphDriver": {"Name": "overlay", "Data": {"UpperDir": str(c.path / "upper"), "WorkDir": str(c.path / "work"),
                                                    "LowerDir": ":".join((sb.get("rootfs") or {}).get("lowerdirs", []))}},
        "Mounts": cfg.get("Mounts", []),
        "Config": {"Hostname": sb.get("hostname", ""), "User": cfg.get("User", ""), "Tty": bool(cfg.get("Tty")),
                   "OpenStdin": bool(cfg.get("OpenStdin")), "Env": cfg.get("Env", []), "Cmd": cfg.get("Cmd"),
                   "Image": cfg.get("Image"), "WorkingDir": cfg.get("WorkingDir", ""),
                   "Entrypoint": cfg.get("Entrypoint"), "Labels": cfg.get("Labels") or {},
                   "StopSignal": cfg.get("StopSignal"), "StopTimeout": cfg.get("StopTimeout"),
                   "ExposedPorts": {k: {} for k in cfg.get("ExposedPorts") or {}} or None,
                   **({"Healthcheck": cfg["Healthcheck"]} if cfg.get("Healthcheck") else {})},
        "NetworkSettings": {"Ports": ports, "IPAddress": ip, "Gateway": st.get("Gateway", "") if ip else "",
                            "IPPrefixLen": st.get("PrefixLen", 0) if ip else 0,
                            "SandboxKey": f"/run/netns/pb-{c.id[:12]}" if ip else "", "Networks": networks},
    }


def _bindings(ports: list[dict]) -> dict:
    out: dict = {}
    for p in ports:
        out.setdefault(f"{p['ContainerPort']}/{p['Proto']}", []).append(
            {"HostIp": "" if p["HostIp"] == "0.0.0.0" else p["HostIp"], "HostPort": str(p["HostPort"] or "")})
    return out
