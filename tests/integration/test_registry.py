"""`nexcage image pull|ls|inspect|rm|prune` against a real docker-registry on 127.0.0.1.

One storage directory is served by three docker-registry processes: an open one (the tests push
to it), one behind htpasswd basic auth, and one behind token auth with the test token server
(tests/support/registry.py). Images are built by the tests: multi-layer (with a whiteout entry),
a two-platform index (amd64 + arm64), zstd layers, and a Docker schema2 copy made by skopeo.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nexcage import settings
from nexcage.ops import images
from nexcage.ops.context import Context
from support import require_tool
from support.busybox import ImageArchive
from support.registry import (
    MT_GZIP,
    MT_ZSTD,
    DockerRegistry,
    Image,
    TokenServer,
    build_image,
    build_index,
    push,
    start_registry,
)

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice", "s3cret-pass"
TOKEN_USER, TOKEN_PASSWORD = "bob", "t0ken-pass"


@dataclass
class Env:
    workdir: Path
    open: DockerRegistry
    basic: DockerRegistry
    token: DockerRegistry
    token_server: TokenServer
    images: dict[str, Image]
    config: Path  # nexcage config naming the three registries insecure


def _htpasswd(path: Path) -> None:
    import bcrypt

    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
    path.write_text(f"{USER}:{hashed}\n")


def _images() -> dict[str, Image]:
    base = {"etc/": None, "etc/os-release": b"ID=nexcage-test\n", "bin/": None}
    return {
        "multi": build_image(
            [
                base,
                {"etc/motd": b"v1\n", "etc/.wh.os-release": b""},
                {"data/": None, "data/blob": os.urandom(1 << 20)},
            ]
        ),
        "multi2": build_image([base, {"etc/motd": b"v2\n"}]),
        "amd64": build_image([{"arch": b"amd64\n"}], arch="amd64"),
        "arm64": build_image([{"arch": b"arm64\n"}, {"more": b"x"}], arch="arm64", variant="v8"),
        "zstd": build_image([base, {"z/": None, "z/data": b"zstd!" * 1000}], media_type=MT_ZSTD),
        "badenv": build_image([base], env=["PATH=/bin", 42]),
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, busybox_image: ImageArchive) -> Iterator[Env]:
    work = tmp_path_factory.mktemp("registry")
    storage = work / "storage"
    started: list[Any] = []
    try:
        open_reg = start_registry(work, storage)
        started.append(open_reg)
        _htpasswd(work / "htpasswd")
        basic = start_registry(
            work, storage, {"htpasswd": {"realm": "nexcage", "path": str(work / "htpasswd")}}
        )
        started.append(basic)
        token_server = TokenServer(work, {TOKEN_USER: TOKEN_PASSWORD}, service="nexcage-test",
                                   issuer="nexcage-test-issuer")  # fmt: skip
        started.append(token_server)
        token = start_registry(work, storage, token_server.registry_auth())
        started.append(token)
        built = _images()
        for name in ("multi", "multi2", "zstd", "badenv"):
            push(open_reg.url, f"test/{name}", "v1", built[name])
        built["index"] = build_index(
            [(built["amd64"], {"os": "linux", "architecture": "amd64"}),
             (built["arm64"], {"os": "linux", "architecture": "arm64", "variant": "v8"})]
        )  # fmt: skip
        push(open_reg.url, "test/multiarch", "v1", built["index"])
        skopeo = require_tool("skopeo")
        subprocess.run(
            [skopeo, "--insecure-policy", "copy", "--quiet", "--format", "v2s2",
             "--dest-tls-verify=false", f"oci-archive:{busybox_image.path}",
             f"docker://{open_reg.host}/test/v2s2:v1"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        config = work / "config.toml"
        hosts = ", ".join(f'"{r.host}"' for r in (open_reg, basic, token))
        config.write_text(f"[registries]\ninsecure = [{hosts}]\n")
        yield Env(work, open_reg, basic, token, token_server, built, config)
    finally:
        for server in reversed(started):
            server.stop()


def cli(env: Env, data: Path, *args: str, extra_env: dict[str, str] | None = None,
        runtime: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
    environ = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env.workdir / "home"),
               **(extra_env or {})}  # fmt: skip
    argv = [runtime, "--config", str(env.config), "--data-root", str(data), "image", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=environ, timeout=120,
                          check=False)  # fmt: skip


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def context(env: Env, data: Path) -> Context:
    return Context(settings.load({"--config": str(env.config), "--data-root": str(data)}, {}))


def check_store(data: Path) -> list[str]:
    """Every blob in the store has the digest it is named by and is read-only."""
    names = sorted(os.listdir(data / "blobs" / "sha256"))
    for name in names:
        path = data / "blobs" / "sha256" / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == name
        assert stat.S_IMODE(path.stat().st_mode) == 0o444
    return names


def nothing_stored(data: Path) -> None:
    assert (
        not (data / "images").exists()
        or [n for n in os.listdir(data / "images") if n.endswith(".json")] == []
    )
    blobs = data / "blobs" / "sha256"
    assert not blobs.exists() or os.listdir(blobs) == []


def test_pull_multi_layer(env: Env, tmp_path: Path, runtime_binary: str) -> None:
    image = env.images["multi"]
    ref = f"{env.open.host}/test/multi:v1"
    assert ok(cli(env, tmp_path, "pull", ref, runtime=runtime_binary)).strip() == image.digest
    doc = json.loads(ok(cli(env, tmp_path, "inspect", ref, runtime=runtime_binary)))
    assert doc["ref"] == ref and doc["digest"] == image.digest
    assert doc["manifest"] == json.loads(image.manifest)
    assert doc["config"] == image.config
    assert [layer["digest"] for layer in doc["layers"]] == image.layers
    assert set(check_store(tmp_path)) == {d[7:] for d in image.blobs} | {image.digest[7:]}
    listing = json.loads(ok(cli(env, tmp_path, "ls", "--format", "json", runtime=runtime_binary)))
    assert [(i["ref"], i["digest"]) for i in listing] == [(ref, image.digest)]
    table = ok(cli(env, tmp_path, "ls", runtime=runtime_binary)).splitlines()
    assert table[0].split() == ["REFERENCE", "DIGEST", "PLATFORM", "SIZE", "CREATED"]
    assert table[1].split()[:3] == [ref, image.digest[7:19], "linux/amd64"]
    by_prefix = json.loads(ok(cli(env, tmp_path, "inspect", image.digest[7:19],
                                  runtime=runtime_binary)))  # fmt: skip
    assert by_prefix["ref"] == ref


def test_second_pull_only_checks_the_manifest(env: Env, tmp_path: Path) -> None:
    ctx = context(env, tmp_path)
    ref = f"{env.open.host}/test/multi:v1"
    first = images.pull(ctx, ref)
    started = time.monotonic()
    again = images.pull(ctx, ref)
    elapsed = time.monotonic() - started
    assert again.manifest_digest == first.manifest_digest
    assert elapsed < 0.25, f"second pull took {elapsed * 1000:.0f} ms (target < 100 ms)"


def test_multi_platform_index(env: Env, tmp_path: Path, runtime_binary: str) -> None:
    ref = f"{env.open.host}/test/multiarch:v1"
    host_arch = "arm64" if os.uname().machine == "aarch64" else "amd64"
    out = ok(cli(env, tmp_path / "host", "pull", ref, runtime=runtime_binary)).strip()
    assert out == env.images[host_arch].digest
    out = ok(cli(env, tmp_path / "arm", "pull", "--platform", "linux/arm64", ref,
                 runtime=runtime_binary)).strip()  # fmt: skip
    assert out == env.images["arm64"].digest
    doc = json.loads(ok(cli(env, tmp_path / "arm", "inspect", ref, runtime=runtime_binary)))
    assert doc["platform"] == "linux/arm64/v8"
    assert doc["index_digest"] == env.images["index"].digest
    assert [layer["digest"] for layer in doc["layers"]] == env.images["arm64"].layers
    assert env.images["index"].digest[7:] in check_store(tmp_path / "arm")


def test_platform_missing_from_index(env: Env, tmp_path: Path, runtime_binary: str) -> None:
    proc = cli(env, tmp_path, "pull", "--platform", "linux/s390x",
               f"{env.open.host}/test/multiarch:v1", runtime=runtime_binary)  # fmt: skip
    assert proc.returncode == 1
    assert "no image for platform linux/s390x" in proc.stderr
    assert "linux/amd64, linux/arm64/v8" in proc.stderr
    nothing_stored(tmp_path)


def test_docker_schema2(env: Env, tmp_path: Path, busybox_image: ImageArchive) -> None:
    record = images.pull(context(env, tmp_path), f"{env.open.host}/test/v2s2:v1")
    assert record.manifest.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert [d.media_type for d in record.layers] == [
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    ]
    assert record.diff_ids == (busybox_image.diff_id,)
    check_store(tmp_path)


def test_zstd_layers(env: Env, tmp_path: Path) -> None:
    import zstandard

    image = env.images["zstd"]
    record = images.pull(context(env, tmp_path), f"{env.open.host}/test/zstd:v1")
    assert [d.media_type for d in record.layers] == [MT_ZSTD, MT_ZSTD]
    for desc, diff_id in zip(record.layers, record.diff_ids, strict=True):
        with open(tmp_path / "blobs" / "sha256" / desc.digest[7:], "rb") as f:
            raw = zstandard.ZstdDecompressor().stream_reader(f).read()
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == diff_id
    assert record.manifest_digest == image.digest


def test_basic_auth(env: Env, tmp_path: Path, runtime_binary: str) -> None:
    ref = f"{env.basic.host}/test/multi:v1"
    digest = env.images["multi"].digest
    out = ok(cli(env, tmp_path / "a", "pull", "--creds", f"{USER}:{PASSWORD}", ref,
                 runtime=runtime_binary))  # fmt: skip
    assert out.strip() == digest
    auth_file = tmp_path / "auth.json"
    import base64

    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    auth_file.write_text(json.dumps({"auths": {env.basic.host: {"auth": encoded}}}))
    out = ok(cli(env, tmp_path / "b", "pull", ref, runtime=runtime_binary,
                 extra_env={"REGISTRY_AUTH_FILE": str(auth_file)}))  # fmt: skip
    assert out.strip() == digest
    docker_dir = env.workdir / "home" / ".docker"
    docker_dir.mkdir(parents=True, exist_ok=True)
    try:
        (docker_dir / "config.json").write_text(auth_file.read_text())
        assert ok(cli(env, tmp_path / "c", "pull", ref, runtime=runtime_binary)).strip() == digest
    finally:
        (docker_dir / "config.json").unlink()
    wrong = cli(env, tmp_path / "d", "pull", "--creds", f"{USER}:wrong", ref,
                runtime=runtime_binary)  # fmt: skip
    assert wrong.returncode == 1 and "unauthorized: credentials rejected" in wrong.stderr
    nothing_stored(tmp_path / "d")
    anonymous = cli(env, tmp_path / "e", "pull", ref, runtime=runtime_binary)
    assert anonymous.returncode == 1
    assert "unauthorized: authentication required" in anonymous.stderr
    nothing_stored(tmp_path / "e")


def test_token_auth(env: Env, tmp_path: Path, runtime_binary: str) -> None:
    ref = f"{env.token.host}/test/multi:v1"
    before = len(env.token_server.requests)
    out = ok(cli(env, tmp_path / "a", "pull", "--creds", f"{TOKEN_USER}:{TOKEN_PASSWORD}", ref,
                 runtime=runtime_binary))  # fmt: skip
    assert out.strip() == env.images["multi"].digest
    asked = env.token_server.requests[before:]
    assert asked, "the token server was never asked"
    assert all(r["basic"] for r in asked)
    assert asked[0]["query"]["scope"] == ["repository:test/multi:pull"]
    assert asked[0]["query"]["service"] == ["nexcage-test"]
    assert asked[0]["query"]["account"] == [TOKEN_USER]
    assert len(asked) == 1, "one token serves every request of the pull"
    check_store(tmp_path / "a")
    wrong = cli(env, tmp_path / "b", "pull", "--creds", f"{TOKEN_USER}:nope", ref,
                runtime=runtime_binary)  # fmt: skip
    assert wrong.returncode == 1
    assert "credentials rejected by the token server" in wrong.stderr
    nothing_stored(tmp_path / "b")
    anonymous = cli(env, tmp_path / "c", "pull", ref, runtime=runtime_binary)
    assert anonymous.returncode == 1 and "unauthorized" in anonymous.stderr


def test_unknown_tag(env: Env, tmp_path: Path, runtime_binary: str) -> None:
    proc = cli(env, tmp_path, "pull", f"{env.open.host}/test/multi:nope", runtime=runtime_binary)
    assert proc.returncode == 1
    assert "manifest 'nope' not found (unknown tag or digest)" in proc.stderr
    nothing_stored(tmp_path)
    proc = cli(env, tmp_path, "pull", f"{env.open.host}/test/absent:v1", runtime=runtime_binary)
    assert proc.returncode == 1 and "not found" in proc.stderr


def test_bad_env_rejected(env: Env, tmp_path: Path, runtime_binary: str) -> None:
    proc = cli(env, tmp_path, "pull", f"{env.open.host}/test/badenv:v1", runtime=runtime_binary)
    assert proc.returncode == 1
    assert "config.Env[1]: must be a string, not number" in proc.stderr
    nothing_stored(tmp_path)


@pytest.mark.parametrize(
    ("ref", "reason"),
    [("test/Upper:v1", "must be lowercase"), ("x@sha256:12", "64 lowercase"), ("", "empty")],
)
def test_malformed_reference(env: Env, tmp_path: Path, runtime_binary: str, ref: str,
                             reason: str) -> None:  # fmt: skip
    proc = cli(env, tmp_path, "pull", ref, runtime=runtime_binary)
    assert proc.returncode == 2 and reason in proc.stderr
    nothing_stored(tmp_path)


def test_concurrent_pulls_of_one_image(env: Env, tmp_path: Path, runtime_binary: str) -> None:
    ref = f"{env.open.host}/test/multi:v1"
    env_vars = {"PATH": os.environ.get("PATH", ""), "HOME": str(env.workdir / "home")}
    argv = [runtime_binary, "--config", str(env.config), "--data-root", str(tmp_path),
            "image", "pull", ref]  # fmt: skip
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_vars)
             for _ in range(4)]  # fmt: skip
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, results
    assert {out.strip() for out, _ in results} == {env.images["multi"].digest.encode()}
    check_store(tmp_path)
    assert os.listdir(tmp_path / "ingest") == []
    assert len(images.images(context(env, tmp_path))) == 1


def test_rm_keeps_shared_layers_and_prune(env: Env, tmp_path: Path, runtime_binary: str) -> None:
    one, two = env.images["multi"], env.images["multi2"]
    shared = set(one.layers) & set(two.layers)
    assert len(shared) == 1
    for name in ("multi", "multi2"):
        ok(cli(env, tmp_path, "pull", f"{env.open.host}/test/{name}:v1", runtime=runtime_binary))
    out = ok(cli(env, tmp_path, "rm", f"{env.open.host}/test/multi:v1", runtime=runtime_binary))
    deleted = {line.split()[1] for line in out.splitlines() if line.startswith("Deleted:")}
    assert deleted == (set(one.blobs) - shared) | {one.digest}
    assert {"sha256:" + n for n in check_store(tmp_path)} == set(two.blobs) | {two.digest}
    missing = cli(env, tmp_path, "inspect", f"{env.open.host}/test/multi:v1",
                  runtime=runtime_binary)  # fmt: skip
    assert missing.returncode == 1 and "image not known" in missing.stderr
    assert ok(cli(env, tmp_path, "prune", runtime=runtime_binary)) == ""
    ok(cli(env, tmp_path, "rm", two.digest, runtime=runtime_binary))
    assert check_store(tmp_path) == []


# Linux starts a forked child's ru_maxrss at its parent's RSS (pytest holds the test images),
# so the pull runs under a small Python that forks it and reports its ru_maxrss (KiB).
_MEASURE = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def test_peak_rss_while_pulling(env: Env, tmp_path: Path, runtime_binary: str) -> None:
    big = build_image([{"big": os.urandom(48 << 20)}, {"big2": os.urandom(24 << 20)}],
                      media_type=MT_GZIP)  # fmt: skip
    push(env.open.url, "test/big", "v1", big)
    argv = [runtime_binary, "--config", str(env.config), "--data-root", str(tmp_path),
            "image", "pull", f"{env.open.host}/test/big:v1"]  # fmt: skip
    environ = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    proc = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", _MEASURE, *argv],
                          capture_output=True, text=True, timeout=120, check=True,
                          env=environ)  # fmt: skip
    code, maxrss = proc.stdout.split()[-2:]
    assert code == "0", proc.stderr
    peak_mib = int(maxrss) / 1024
    assert peak_mib < 80, f"peak RSS {peak_mib:.0f} MiB pulling a 72 MiB image"
    check_store(tmp_path)


def test_second_pull_imports_no_http_library(env: Env, tmp_path: Path, runtime_binary: str) -> None:
    """The "already stored?" check is one bare-socket HEAD (image/probe.py): urllib3 costs more
    than the 100 ms a second pull may take."""
    ref = f"{env.open.host}/test/multi:v1"
    ok(cli(env, tmp_path, "pull", ref, runtime=runtime_binary))
    python = os.path.join(os.path.dirname(runtime_binary), "python3")
    argv = [python, "-IS", "-X", "importtime", runtime_binary, "--config", str(env.config),
            "--data-root", str(tmp_path), "image", "pull", ref]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == env.images["multi"].digest
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}
    assert "nexcage.image.probe" in imported
    assert not {"urllib3", "http.client", "nexcage.image.registry"} & imported
