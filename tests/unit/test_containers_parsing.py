"""The pure parts of detached containers: -p, --restart, signals, --since, /etc/hosts, --format."""
from __future__ import annotations

import time

import pytest

from builder.containers.views import PS_HEADERS, PS_TABLE
from builder.gotemplate import format_rows
from builder.containers.lifecycle import _split_volumes, parse_restart, signal_number
from builder.containers.logs import parse_since
from builder.errors import UsageError
from builder.networks.endpoint import hosts_text
from builder.networks.ports import exposed, parse


@pytest.mark.parametrize("spec,want", [
    ("80", [("0.0.0.0", 0, 80, "tcp")]),
    ("8080:80", [("0.0.0.0", 8080, 80, "tcp")]),
    ("127.0.0.1:8080:80/udp", [("127.0.0.1", 8080, 80, "udp")]),
    ("127.0.0.1::80", [("127.0.0.1", 0, 80, "tcp")]),
    ("[::1]:8080:80", [("::1", 8080, 80, "tcp")]),
    ("8000-8001:80-81", [("0.0.0.0", 8000, 80, "tcp"), ("0.0.0.0", 8001, 81, "tcp")]),
])
def test_publish_specs(spec, want):
    assert [(p["HostIp"], p["HostPort"], p["ContainerPort"], p["Proto"]) for p in parse(spec)] == want


@pytest.mark.parametrize("spec", ["", "abc", "70000:80", "80/sctp", "1.2.3:80:80", "8000-8002:80-81", "0:80"])
def test_bad_publish_specs(spec):
    with pytest.raises(UsageError):
        parse(spec)


def test_publish_all_takes_exposed_ports():
    assert [(p["ContainerPort"], p["Proto"]) for p in exposed({"80/tcp": {}, "53/udp": {}})] == [(53, "udp"), (80, "tcp")]


def test_restart_policies():
    assert parse_restart(None) == {"Name": "", "MaximumRetryCount": 0}
    assert parse_restart("on-failure:3") == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert parse_restart("unless-stopped")["Name"] == "unless-stopped"
    for bad in ("sometimes", "always:3", "on-failure:x"):
        with pytest.raises(UsageError):
            parse_restart(bad)


def test_signals():
    assert signal_number("SIGTERM") == signal_number("term") == signal_number("15") == 15
    assert signal_number(None) == 15 and signal_number("KILL") == 9
    for bad in ("SIGNOPE", "0", "999"):
        with pytest.raises(UsageError):
            signal_number(bad)


def test_since():
    assert parse_since("1700000000") == 1700000000.0
    assert abs(parse_since("10m") - (time.time() - 600)) < 2
    assert parse_since("2024-01-02T03:04:05Z") == 1704164645.0
    with pytest.raises(UsageError):
        parse_since("yesterday")


def test_volume_specs():
    binds, named = _split_volumes(["/h:/c", "./rel:/c2:ro", "data:/d", "data2:/e:ro", "/anon"])
    assert binds == ["/h:/c", "./rel:/c2:ro"]
    assert named == [("data", "/d", True), ("data2", "/e", False), (None, "/anon", True)]
    for bad in ["data:rel", "anon", "data:/d:rx"]:
        with pytest.raises(UsageError):
            _split_volumes([bad])


def test_hosts_file_lists_peers_and_own_names():
    text = hosts_text("abc123", "10.89.0.2", [("10.89.0.2", ["web", "abc123"]), ("10.89.0.3", ["db", "alias"])],
                      [("extra", "1.2.3.4")])
    lines = text.splitlines()
    assert "10.89.0.2\tabc123 web" in lines and "10.89.0.3\tdb alias" in lines and "1.2.3.4\textra" in lines
    assert lines[0] == "127.0.0.1\tlocalhost"


def test_format_templates():
    """ps --format is docker's Go-template language (builder.gotemplate), as for images."""
    row = {"ID": "abc", "Names": "web", "Status": "Up 1 second"}
    assert format_rows("{{.ID}}\\t{{ .Names }}", [row], PS_HEADERS, PS_TABLE) == "abc\tweb\n"
    assert format_rows("{{json .}}", [row], PS_HEADERS, PS_TABLE).startswith('{"ID":"abc"')
    assert format_rows("{{.Nope}}", [row], PS_HEADERS, PS_TABLE) == "<no value>\n"  # docker 20.10, exit 0
    assert format_rows("table {{.ID}}\\t{{.Names}}", [row], PS_HEADERS, PS_TABLE).splitlines()[0].split() \
        == ["CONTAINER", "ID", "NAMES"]
    with pytest.raises(UsageError):
        format_rows("{{.ID", [row], PS_HEADERS, PS_TABLE)
