"""Instructions and flags end to end: multi-stage, COPY flags, ADD, heredocs, RUN mounts, ONBUILD…"""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.integration.buildlib import build, layer_files, make_busybox_image, ok, steps, validate_layout, write_ctx

pytestmark = [pytest.mark.needs_root, pytest.mark.needs_overlay]


def all_files(root: Path, img: dict) -> dict:
    out = {}
    for layer in img["manifest"]["layers"]:
        out.update(layer_files(root, layer["digest"]))
    return out


MULTI = """
FROM busybox AS a
RUN echo from-a > /a.txt && sleep 1
FROM busybox AS b
RUN echo from-b > /b.txt && sleep 1
FROM busybox AS unused
RUN exit 1
FROM scratch
COPY --from=a /a.txt /out/
COPY --from=1 /b.txt /out/
COPY --from=busybox /etc/passwd /out/passwd
"""


def test_multistage_parallel_copy_from_and_target(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": MULTI})
    r = build(root, ctx, "-t", "multi")
    ok(r)
    names = [n for n, _ in steps(r.stderr)]
    assert "RUN exit 1" not in names  # a stage nothing depends on is skipped
    img = validate_layout(root, "multi")
    files = all_files(root, img)
    assert {"out/a.txt", "out/b.txt", "out/passwd"} <= set(files)
    # the two sleeping stages ran concurrently: both RUNs started before either finished
    err = r.stderr.decode().splitlines()
    ia = next(i for i, ln in enumerate(err) if "RUN echo from-a" in ln)
    ib = next(i for i, ln in enumerate(err) if "RUN echo from-b" in ln)
    ids = (err[ia].split()[0], err[ib].split()[0])
    first_done = min(i for i, ln in enumerate(err) if " DONE " in ln + " " and ln.split()[0] in ids)
    assert max(ia, ib) < first_done, "\n".join(err)
    r = build(root, ctx, "-t", "a-only", "--target", "a")
    ok(r)
    assert len(validate_layout(root, "a-only")["manifest"]["layers"]) == 2
    r = build(root, ctx, "--target", "nope")
    assert r.returncode == 1 and b"nope" in r.stderr


COPY_FLAGS = """
FROM busybox
COPY --chown=app:app --chmod=0750 tool.sh /usr/local/bin/
COPY --chmod=u+x,go-w plain.txt /plain.txt
COPY --exclude=*.tmp dir/ /dir/
COPY --parents src/x/y.c src/z.c /tree/
COPY --link linked.txt /linked/
COPY src/*.c /wild/
COPY <<EOF /etc/greeting
hello heredoc
EOF
RUN test "$(stat -c %u:%g:%a /usr/local/bin/tool.sh)" = "1000:1000:750" && cat /etc/greeting && \\
    test -f /tree/src/x/y.c && test -f /tree/src/z.c && test ! -e /dir/skip.tmp && test -f /dir/keep.txt && \\
    test -f /wild/z.c && test ! -e /wild/x
"""


def test_copy_flags(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {
        "Dockerfile": COPY_FLAGS, "tool.sh": "#!/bin/sh\n", "plain.txt": "p", "dir/keep.txt": "k",
        "dir/skip.tmp": "s", "src/x/y.c": "y", "src/z.c": "z", "linked.txt": "l"})
    (ctx / "plain.txt").chmod(0o666)
    r = build(root, ctx, "-t", "flags")
    ok(r)
    assert b"hello heredoc" in r.stderr
    img = validate_layout(root, "flags")
    files = all_files(root, img)
    assert files["plain.txt"].mode & 0o777 == 0o744
    assert files["linked/linked.txt"].uid == 0


ADD_DF = """
FROM busybox
ADD bundle.tar.gz /opt/
COPY bundle.tar.gz /raw/
RUN <<EOF
set -e
cat /opt/pkg/file.txt
test -f /raw/bundle.tar.gz
echo heredoc-run-ok
EOF
RUN cat <<EOT > /made.txt
made by heredoc
EOT
RUN <<SCRIPT
#!/bin/sh -e
echo "shebang-heredoc $0"
SCRIPT
"""


@pytest.mark.skipif(not hasattr(tarfile, "data_filter"), reason="needs Python >= 3.11.4 (tarfile filters)")
def test_add_archives_and_heredoc_run(root: Path, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        data = b"inside-archive"
        ti = tarfile.TarInfo("pkg/file.txt")
        ti.size = len(data)
        tf.addfile(ti, io.BytesIO(data))
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": ADD_DF, "bundle.tar.gz": buf.getvalue()})
    r = build(root, ctx, "-t", "add")
    ok(r)
    assert b"inside-archive" in r.stderr and b"heredoc-run-ok" in r.stderr
    files = all_files(root, validate_layout(root, "add"))
    assert "made.txt" in files and "opt/pkg/file.txt" in files
    assert "shebang-heredoc /dev/pipes/SCRIPT" in r.stderr.decode()
    assert not any(n.startswith(("dev/", "tmp/.pybuild")) for n in files), sorted(files)


MOUNTS = """
FROM busybox
ARG WANT
RUN --mount=type=secret,id=tok test "$(md5sum < /run/secrets/tok | cut -c1-8)" = "$WANT" && echo secret-ok
RUN --mount=type=secret,id=tok,env=TOKEN test "$(printf %s "$TOKEN" | md5sum | cut -c1-8)" = "$WANT" && echo env-ok
RUN --mount=type=cache,target=/var/cache/app n=$(cat /var/cache/app/n 2>/dev/null || echo 0); \\
    echo $((n+1)) > /var/cache/app/n; echo count=$((n+1))
RUN --mount=type=bind,source=data,target=/mnt/data cat /mnt/data/d.txt
RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/x && grep -q " /scratch tmpfs" /proc/mounts
"""


def test_run_mounts_secret_cache_bind_tmpfs(root: Path, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cr3t-value")
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": MOUNTS, "data/d.txt": "bind-data"})
    import hashlib

    want = ("--build-arg", "WANT=" + hashlib.md5(b"s3cr3t-value").hexdigest()[:8])
    r = build(root, ctx, "-t", "mounts", "--secret", f"id=tok,src={secret}", *want)
    ok(r)
    err = r.stderr.decode()
    assert "secret-ok" in err and "env-ok" in err and "count=1" in err and "bind-data" in err
    img = validate_layout(root, "mounts")
    for layer in img["manifest"]["layers"][1:]:
        for name in layer_files(root, layer["digest"]):
            assert not name.startswith(("run/secrets", "var/cache/app", "mnt/data", "scratch")), name
        assert b"s3cr3t-value" not in (root / "blobs/sha256" / layer["digest"][7:]).read_bytes()
    assert "s3cr3t-value" not in str(img["config"])
    for rec in (root / "cache" / "records").iterdir():
        assert b"s3cr3t-value" not in rec.read_bytes()
    # the cache mount persists across builds (the step must run again to see it)
    r = build(root, ctx, "--no-cache", "--secret", f"id=tok,src={secret}", *want)
    ok(r)
    assert "count=2" in r.stderr.decode()
    # a missing required secret is a clear error
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN --mount=type=secret,id=nope,required=true true\n")
    r = build(root, ctx)
    assert r.returncode == 1 and b"nope" in r.stderr and b"Traceback" not in r.stderr


PARENT = """
FROM busybox
ENV DIR=/srv/app
USER app
WORKDIR $DIR
RUN id -u > uid && pwd > where
ONBUILD RUN echo trigger-fired > /tmp/fired
ENTRYPOINT ["/bin/sh"]
"""


def test_user_workdir_env_and_onbuild(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": PARENT})
    ok(build(root, ctx, "-t", "parent"))
    img = validate_layout(root, "parent")
    cfg = img["config"]["config"]
    assert cfg["WorkingDir"] == "/srv/app" and cfg["User"] == "app" and "Cmd" not in cfg
    assert cfg["OnBuild"] == ["RUN echo trigger-fired > /tmp/fired"]
    files = all_files(root, img)
    assert files["srv/app/uid"].uid == 1000
    child = write_ctx(tmp_path / "child", {"Dockerfile": "FROM parent\nUSER root\nRUN cat /tmp/fired\n"})
    r = build(root, child, "-t", "child")
    ok(r)
    assert "OnBuild" not in validate_layout(root, "child")["config"]["config"]
    assert b"trigger-fired" in r.stderr  # the child's own RUN reads what the trigger wrote
    files = all_files(root, validate_layout(root, "child"))
    assert "tmp/fired" in files


def test_source_date_epoch_reproducible_in_two_stores(tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nCOPY f /f\nRUN echo x > /y && mkdir -p /var/log && touch /var/log/made\n",
                                       "f": "F"})
    digests = []
    for i in range(2):
        r = tmp_path / f"store{i}"
        make_busybox_image(r, tmp_path / f"b{i}")
        ok(build(r, ctx, "-t", "repro", "--build-arg", "SOURCE_DATE_EPOCH=1700000000"))
        digests.append(validate_layout(r, "repro")["digest"])
    assert digests[0] == digests[1]


@pytest.mark.skipif(not hasattr(tarfile, "data_filter"), reason="needs Python >= 3.11.4 (tarfile filters)")
def test_context_from_stdin_tar_and_dockerfile_from_stdin(root: Path, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in {"Dockerfile": b"FROM busybox\nCOPY x /x\n", "x": b"X"}.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    env = {"PYBUILD_ROOT": str(root)}
    ok(run_cli("build", "--progress=plain", "-t", "fromtar", "-", input=buf.getvalue(), env=env))
    ctx = write_ctx(tmp_path / "c2", {"y": "Y"})
    ok(run_cli("build", "--progress=plain", "-t", "dfstdin", "-f", "-", str(ctx), input=b"FROM busybox\nCOPY y /y\n",
               env=env))
    validate_layout(root, "fromtar")
    validate_layout(root, "dfstdin")


def test_outputs_oci_and_local(root: Path, tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo out > /out.txt\n"})
    oci = tmp_path / "img.tar"
    local = tmp_path / "rootfs"
    dock = tmp_path / "docker.tar"
    ok(build(root, ctx, "-o", f"type=oci,dest={oci}", "-o", f"type=local,dest={local}",
             "-o", f"type=docker,dest={dock},name=outimg:v1"))
    with tarfile.open(dock) as tf:
        manifest = json.loads(tf.extractfile("manifest.json").read())
    assert manifest[0]["RepoTags"] == ["outimg:v1"]
    assert (local / "out.txt").read_text() == "out\n" and (local / "bin" / "busybox").exists()
    with tarfile.open(oci) as tf:
        assert "index.json" in tf.getnames() and "oci-layout" in tf.getnames()


STAGES = """
FROM busybox AS a
RUN echo from-a > /a.txt
FROM busybox AS b
RUN echo from-b > /b.txt
FROM busybox
RUN --mount=type=bind,from=a,source=/a.txt,target=/mnt/a.txt cat /mnt/a.txt > /copied-a
RUN --mount=type=cache,id=seeded,from=b,source=/,target=/seed cat /seed/b.txt > /seeded-b
COPY --from=b /b.txt /b.txt
"""


def test_image_digest_does_not_depend_on_scheduling(tmp_path: Path) -> None:
    ctx = write_ctx(tmp_path / "ctx", {"Dockerfile": STAGES})
    digests = []
    for jobs in ("1", "4"):
        r = tmp_path / f"store{jobs}"
        make_busybox_image(r, tmp_path / f"b{jobs}")
        ok(build(r, ctx, "-t", "sched", "--jobs", jobs, "--build-arg", "SOURCE_DATE_EPOCH=1700000000"))
        img = validate_layout(r, "sched")
        digests.append(img["digest"])
        files = all_files(r, img)
        assert "copied-a" in files and "b.txt" in files and "mnt/a.txt" not in files and "seeded-b" in files
    assert digests[0] == digests[1]
