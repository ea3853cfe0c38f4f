"""docker's CLI habits through the real entry point: --format templates, images -a/--filter,
unpacked SIZE, the image/container/system/builder verb groups, --version, completion, `build -`."""
from __future__ import annotations

import io
import shutil
import json
import subprocess
import tarfile

import pytest

from tests.conftest import run_cli
from tests.fixtures.images import make_image


@pytest.fixture
def store(pybuild_root):
    make_image(pybuild_root, "app:v1", [{"a.txt": b"hello"}, {"b.txt": b"world" * 100}], labels={"k": "v"},
               created="2024-01-02T03:04:05Z")
    make_image(pybuild_root, "tools/x:2", [{"c.txt": b"zz"}], created="2024-03-01T00:00:00Z")
    make_image(pybuild_root, "old:1", [{"o.txt": b"old!"}], created="2023-05-05T00:00:00Z")
    make_image(pybuild_root, "old:1", [{"o.txt": b"new!!"}], created="2024-06-01T00:00:00Z")  # old:1's first image dangles
    return pybuild_root


def _ok(*args, **kw) -> str:
    r = run_cli(*args, **kw)
    assert r.returncode == 0, (args, r.stderr.decode())
    assert b"Traceback" not in r.stderr
    return r.stdout.decode()


def test_images_size_is_the_unpacked_size(store):
    lines = _ok("images").splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    sizes = {ln.split()[0]: ln.split()[-1] for ln in lines[1:]}
    # 5 + 500 bytes of files, though the (uncompressed) layer tars take over 3 kB
    assert sizes == {"app": "505B", "tools/x": "2B", "old": "5B"}
    info = json.loads(_ok("inspect", "app:v1"))[0]
    assert info["Size"] == 505
    hist = _ok("history", "--format", "{{.CreatedBy}}={{.Size}}", "app:v1").splitlines()
    assert hist == ['CMD ["sh"]=0B', "layer 1=500B", "layer 0=5B"]


def test_images_all_and_filters(store):
    def repos(*args):
        return [ln.split()[0] + ":" + ln.split()[1] for ln in _ok("images", *args).splitlines()[1:]]

    assert sorted(repos()) == ["app:v1", "old:1", "tools/x:2"]
    assert sorted(repos("-a")) == ["<none>:<none>", "app:v1", "old:1", "tools/x:2"]
    assert repos("--filter", "dangling=true") == ["<none>:<none>"] == repos("-f", "dangling=true")
    assert sorted(repos("--filter", "dangling=false")) == ["app:v1", "old:1", "tools/x:2"]
    assert repos("--filter", "reference=tools/*") == ["tools/x:2"]
    assert sorted(repos("--filter", "reference=app", "--filter", "reference=*:1")) == ["app:v1", "old:1"]
    assert repos("--filter", "label=k") == ["app:v1"]
    assert repos("--filter", "label=k=v") == ["app:v1"]
    assert repos("--filter", "label=k=w") == []
    assert repos("--filter", "before=tools/x:2") == ["app:v1"]
    assert repos("--filter", "since=tools/x:2") == ["old:1"]


@pytest.mark.parametrize("args,code,first", [
    (("images", "--filter", "bogus=1"), 2, "error: invalid filter 'bogus'"),
    (("images", "--filter", "dangling=maybe"), 2, "error: invalid filter 'dangling=maybe'"),
    (("images", "--format", "{{.Repository"), 2, "error: template parsing error: template: :1: unclosed action"),
    (("inspect", "-f", "{{nosuchfunc .Id}}", "app:v1"), 2, 'error: template parsing error: template: :1: function "nosuchfunc" not defined'),
    (("history", "--format", "{{end}}", "app:v1"), 2, "error: template parsing error"),
    (("inspect", "-f", "{{.Config.Cmd.X}}", "app:v1"), 1, "error: template: :1:2: executing at <.Config.Cmd.X>: can't evaluate field X"),
    (("image", "frob"), 2, "pybuild: error: unknown command 'pybuild image frob'"),
    (("builder", "prune", "-f", "--filter", "until=soon"), 2, "error: invalid filter 'until=soon'"),
])
def test_bad_format_or_filter_is_one_line(store, args, code, first):
    r = run_cli(*args)
    assert r.returncode == code, r.stderr
    err = r.stderr.decode()
    assert err.startswith(first), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_templates_in_images_inspect_history(store):
    assert _ok("inspect", "-f", "{{json .Config.Labels}} {{.Os}}/{{.Architecture}}", "app:v1") == '{"k":"v"} linux/amd64\n'
    assert _ok("inspect", "--format", "{{.NoSuchField}}", "app:v1") == "<no value>\n"  # exit 0, as docker 20.10
    assert _ok("inspect", "-f", '{{join .Config.Env ","}}|{{index .Config.Labels "k"}}|{{len .RootFS.Layers}}',
               "app:v1") == "PATH=/bin|v|2\n"
    assert json.loads(_ok("inspect", "-f", "{{json .Config}}", "app:v1"))["Cmd"] == ["sh"]
    assert _ok("inspect", "-f", ".Config.Cmd", "app:v1") == '["sh"]\n'  # pybuild's earlier path form
    out = _ok("images", "--format", "table {{.Repository}}:{{.Tag}}\\t{{.Size}}", "--filter", "reference=app")
    assert out == "REPOSITORY:TAG   SIZE\napp:v1           505B\n"
    rows = [json.loads(ln) for ln in _ok("images", "--format", "json").splitlines()]
    assert {r["Repository"] for r in rows} == {"app", "tools/x", "old"}
    assert set(rows[0]) >= {"ID", "Repository", "Tag", "Size", "CreatedAt", "CreatedSince", "Digest"}
    assert _ok("images", "--format", "{{.Repository}}{{if eq .Tag \"v1\"}}!{{end}}", "app") == "app!\n"
    hist = _ok("history", "--format", "json", "app:v1").splitlines()
    assert json.loads(hist[0])["CreatedBy"] == 'CMD ["sh"]'


def test_verb_groups_are_the_same_commands(store):
    assert _ok("image", "ls", "-q") == _ok("images", "-q")
    assert _ok("image", "inspect", "-f", "{{.Id}}", "app:v1") == _ok("inspect", "-f", "{{.Id}}", "app:v1")
    assert _ok("image", "tag", "app:v1", "app:v9") == ""
    assert "Untagged: app:v9" in _ok("image", "rm", "app:v9")
    assert "app:v9" not in _ok("image", "list")
    assert _ok("image", "history", "-q", "app:v1").splitlines()[-1] == "<missing>"
    assert "--entrypoint" in _ok("container", "run", "--help")
    help_ = _ok("image", "--help")
    assert "ls " in help_ and "prune " in help_ and "pull " in help_
    assert "image" in _ok("--help") and "system" in _ok("--help")


def test_version_flag():
    assert _ok("--version").startswith("pybuild version 0.")
    assert _ok("-v") == _ok("--version")


def test_system_df_info_prune_and_builder_prune(store):
    df = _ok("system", "df").splitlines()
    assert df[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert df[1].split()[:2] == ["Images", "3"] and df[1].split()[3] == "512B"  # 505 + 2 + 5 unpacked
    assert [r["Type"] for r in map(json.loads, _ok("system", "df", "--format", "json").splitlines())] == \
        ["Images", "Containers", "Local Volumes", "Build Cache"]
    assert _ok("system", "info", "-f", "{{.DockerRootDir}} {{.Images}}") == f"{store} 3\n"
    assert json.loads(_ok("system", "info", "--format", "json"))["OSType"] == "linux"
    assert "removed 0 cache records" in _ok("builder", "prune", "-f", "--filter", "until=24h")
    # without -f it asks, and anything but y leaves things alone
    r = run_cli("system", "prune", "-a", input=b"n\n")
    assert r.returncode == 0 and b"Are you sure" in r.stderr
    assert len(_ok("images", "-q").split()) == 3
    out = _ok("system", "prune", "-a", "-f")
    assert "Untagged:" in out and "removed" in out
    assert _ok("images", "-q") == ""


def test_completion_bash_completes_from_the_parser_table(tmp_path):
    script = tmp_path / "pybuild.bash"
    script.write_text(_ok("completion", "bash"))

    def complete(*words: str) -> list[str]:
        words_s = " ".join(f"'{w}'" for w in words)
        prog = (f"source {script}; COMP_WORDS=(pybuild {words_s}); COMP_CWORD={len(words)}; _pybuild; "
                'printf "%s\\n" "${COMPREPLY[@]}"')
        r = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        return sorted(filter(None, r.stdout.splitlines()))

    assert complete("bu") == ["build", "builder", "bundle"]
    assert complete("image", "l") == ["list", "load", "ls"]
    assert complete("build", "--no-c") == ["--no-cache", "--no-cache-filter"]
    assert complete("image", "ls", "--fil") == ["--filter"]
    assert complete("--root", "/x", "sys") == ["system"]
    assert "--volumes" in complete("system", "prune", "--")
    assert complete("completion", "--") == ["--help", "-h"] or complete("completion", "--") == ["--help"]
    (tmp_path / "Dockerfile.x").write_text("")
    assert complete("build", "-f", "Dockerf") == ["Dockerfile.x"]  # plain words: files
    zsh = _ok("completion", "zsh")
    assert zsh.startswith("#compdef pybuild") and "'build:build an image from a Dockerfile'" in zsh
    fish = _ok("completion", "fish")
    assert "complete -c pybuild -n __fish_use_subcommand -a build" in fish
    assert "__fish_seen_subcommand_from build' -l no-cache" in fish


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_build_dash_reads_a_dockerfile_or_a_tar(pybuild_root, tmp_path):
    df = b'FROM scratch\nLABEL from=stdin\nCMD ["x"]\n'
    _ok("build", "-q", "-t", "s1", "-", input=df)
    assert _ok("inspect", "-f", "{{.Config.Labels.from}}", "s1") == "stdin\n"
    tar = _tar({"Dockerfile": b"FROM scratch\nCOPY f /f\n", "f": b"data"})
    _ok("build", "-q", "-t", "s2", "-", input=tar)
    import gzip

    import zstandard

    _ok("build", "-q", "-t", "s3", "-", input=gzip.compress(tar))
    (tmp_path / "ctx.tar.zst").write_bytes(zstandard.ZstdCompressor().compress(tar))
    _ok("build", "-q", "-t", "s4", "-", input=(tmp_path / "ctx.tar.zst").read_bytes())
    _ok("build", "-q", "-t", "s5", str(tmp_path / "ctx.tar.zst"))
    ids = {_ok("inspect", "-f", "{{.Id}}", t) for t in ("s2", "s3", "s4", "s5")}
    assert len(ids) == 1
    # a Dockerfile on stdin has an empty context: COPY finds nothing
    r = run_cli("build", "-", input=b"FROM scratch\nCOPY f /f\n")
    assert r.returncode == 1 and b"Traceback" not in r.stderr


@pytest.mark.parametrize("args,stdin,code,first", [
    (("--build-arg", "=1.2", "-"), b"FROM scratch\n", 2, 'error: invalid key-value pair "=1.2": empty key'),
    (("-f", "Dockerfile", "-"), b"FROM scratch\n", 2, "error: -f cannot be used when stdin is the Dockerfile"),
    (("-",), b"\xff\xfe\x00garbage", 1, "error: stdin is neither a tar archive nor a UTF-8 Dockerfile"),
])
def test_build_bad_inputs(pybuild_root, args, stdin, code, first):
    r = run_cli("build", *args, input=stdin)
    assert r.returncode == code
    assert r.stderr.decode().startswith(first), r.stderr
    assert b"Traceback" not in r.stderr


def test_build_context_that_is_a_plain_file(pybuild_root, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    r = run_cli("build", str(tmp_path / "Dockerfile"))
    assert r.returncode == 1
    err = r.stderr.decode().splitlines()
    assert err[0] == f"error: build context '{tmp_path / 'Dockerfile'}' is a file, not a directory or an archive"
    assert err[1].startswith("hint: ") and "build - <" in err[1]


@pytest.mark.skipif(shutil.which("fish") is None, reason="needs fish (tests/apt-packages.txt installs it)")
def test_completion_fish_completes(tmp_path):
    script = tmp_path / "pybuild.fish"
    script.write_text(_ok("completion", "fish"))

    def complete(line: str) -> list[str]:
        r = subprocess.run(["fish", "--no-config", "-c", f"source {script}; complete -C '{line}'"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return sorted(ln.split("\t")[0] for ln in r.stdout.splitlines())

    assert complete("pybuild bu") == ["build", "builder", "bundle"]
    assert complete("pybuild image l") == ["list", "load", "ls"]
    assert complete("pybuild build --no-c") == ["--no-cache", "--no-cache-filter"]
    assert complete("pybuild image ls --fi") == ["--filter"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="needs zsh (tests/apt-packages.txt installs it)")
def test_completion_zsh_function(tmp_path):
    # zsh's completion widgets need a terminal; the generated function is driven directly with
    # `words`/`CURRENT` set as zsh sets them, and compadd/_describe/_files recording their candidates
    script = tmp_path / "_pybuild"
    script.write_text(_ok("completion", "zsh"))
    assert subprocess.run(["zsh", "-n", str(script)]).returncode == 0

    def complete(*words: str) -> list[str]:
        prog = ("compdef() { :; }; compadd() { [[ $1 == -- ]] && shift; print -l -- \"$@\"; }; "
                "_describe() { print -l -- \"${(@P)2}\"; }; _files() { print '<files>'; }; "
                f"source {script}; words=(pybuild {' '.join(words)}); CURRENT={len(words) + 1}; _pybuild")
        r = subprocess.run(["zsh", "-f", "-c", prog], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return sorted(ln.split(":")[0] for ln in r.stdout.splitlines() if ln.startswith(words[-1]) or ln == "<files>")

    assert complete("bu") == ["build", "builder", "bundle"]
    assert complete("image", "l") == ["list", "load", "ls"]
    assert complete("build", "--no-c") == ["--no-cache", "--no-cache-filter"]
    assert complete("build", "-f", "Dock") == ["<files>"]
