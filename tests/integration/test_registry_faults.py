"""Registry misbehaviour a real docker-registry will not show, served by `FakeRegistry`:
tampered manifests and blobs, truncated and dropped downloads (resume with Range), blob
redirects to a storage host (no Authorization forwarded), transient 503s. Each bad case: a clear
error and nothing stored."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nexcage import settings
from nexcage.errors import ContentMismatch, InvalidImage, RegistryError, Unauthorized
from nexcage.image.store import ImageStore
from nexcage.ops import images
from nexcage.ops.context import Context
from support.registry import FakeRegistry, Image, Served, build_image, sha256

pytestmark = pytest.mark.integration


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    server = FakeRegistry()
    yield server
    server.stop()


@pytest.fixture
def image() -> Image:
    return build_image([{"a": b"first layer\n"}, {"b": os.urandom(300_000)}])


def context(tmp_path: Path, *hosts: str) -> Context:
    config = tmp_path / "config.toml"
    names = ", ".join(f'"{h}"' for h in hosts)
    config.write_text(f'data_root = "{tmp_path / "data"}"\n[registries]\ninsecure = [{names}]\n')
    return Context(settings.load({"--config": str(config)}, {}))


def blobs(tmp_path: Path) -> list[str]:
    path = tmp_path / "data" / "blobs" / "sha256"
    return sorted(os.listdir(path)) if path.exists() else []


def records(tmp_path: Path) -> list[str]:
    path = tmp_path / "data" / "images"
    return [n for n in os.listdir(path) if n.endswith(".json")] if path.exists() else []


def test_good_pull_and_second_pull_is_one_request(
    fake: FakeRegistry, image: Image, tmp_path: Path
) -> None:
    fake.add("x/app", "v1", image)
    ctx = context(tmp_path, fake.host)
    record = images.pull(ctx, f"{fake.host}/x/app:v1")
    assert record.manifest_digest == image.digest
    fake.requests.clear()
    images.pull(ctx, f"{fake.host}/x/app:v1")
    assert [(m, p) for m, p, _ in fake.requests] == [("HEAD", "/v2/x/app/manifests/v1")]
    fake.requests.clear()
    images.pull(ctx, f"{fake.host}/x/app@{image.digest}")
    # A stored digest reference needs no request (digests are immutable) once it is tagged.
    fake.requests.clear()
    images.pull(ctx, f"{fake.host}/x/app@{image.digest}")
    assert fake.requests == []


def test_manifest_digest_mismatch(fake: FakeRegistry, image: Image, tmp_path: Path) -> None:
    fake.add("x/app", "v1", image)
    fake.manifests["x/app:v1"].digest_header = sha256(b"something else")
    with pytest.raises(ContentMismatch) as info:
        images.pull(context(tmp_path, fake.host), f"{fake.host}/x/app:v1")
    assert info.value.kind == "digest" and info.value.actual == image.digest
    assert blobs(tmp_path) == [] and records(tmp_path) == []


def test_manifest_by_digest_tampered(fake: FakeRegistry, image: Image, tmp_path: Path) -> None:
    fake.add("x/app", "v1", image)
    tampered = image.manifest.replace(b'"schemaVersion":2', b'"schemaVersion":2 ')
    fake.manifests[f"x/app@{image.digest}"] = Served(tampered, image.media_type, image.digest)
    with pytest.raises(ContentMismatch, match="content does not match"):
        images.pull(context(tmp_path, fake.host), f"{fake.host}/x/app@{image.digest}")
    assert blobs(tmp_path) == [] and records(tmp_path) == []


def test_blob_digest_mismatch(fake: FakeRegistry, image: Image, tmp_path: Path) -> None:
    fake.add("x/app", "v1", image)
    layer = image.layers[1]
    fake.blobs[layer] = os.urandom(len(image.blobs[layer]))  # same size, other bytes
    with pytest.raises(ContentMismatch) as info:
        images.pull(context(tmp_path, fake.host), f"{fake.host}/x/app:v1")
    assert info.value.kind == "digest" and info.value.expected == layer
    assert layer[7:] not in blobs(tmp_path)
    assert records(tmp_path) == []
    assert os.listdir(tmp_path / "data" / "ingest") == []


def test_config_digest_mismatch(fake: FakeRegistry, image: Image, tmp_path: Path) -> None:
    fake.add("x/app", "v1", image)
    config = next(d for d, data in image.blobs.items() if data.startswith(b'{"architecture"'))
    fake.blobs[config] = fake.blobs[config].replace(b"amd64", b"arm64")
    with pytest.raises(ContentMismatch, match=config):
        images.pull(context(tmp_path, fake.host), f"{fake.host}/x/app:v1")
    assert blobs(tmp_path) == [] and records(tmp_path) == []


def test_truncated_blob_then_resume(fake: FakeRegistry, image: Image, tmp_path: Path) -> None:
    fake.add("x/app", "v1", image)
    layer = image.layers[1]
    fake.truncate[layer] = 100_000
    ctx = context(tmp_path, fake.host)
    with pytest.raises(RegistryError, match="download failed 4 times"):
        images.pull(ctx, f"{fake.host}/x/app:v1")
    assert layer[7:] not in blobs(tmp_path) and records(tmp_path) == []
    partial = tmp_path / "data" / "ingest" / (layer[7:] + ".partial")
    assert partial.stat().st_size == 100_000  # kept for resume, never used as a blob
    # Every retry asked for the rest only.
    ranges = [h.get("Range") for m, p, h in fake.requests if p.endswith(layer)]
    assert ranges == [None, "bytes=100000-", "bytes=100000-", "bytes=100000-"]
    del fake.truncate[layer]
    fake.requests.clear()
    record = images.pull(ctx, f"{fake.host}/x/app:v1")
    assert record.manifest_digest == image.digest
    assert [h.get("Range") for m, p, h in fake.requests if p.endswith(layer)] == ["bytes=100000-"]
    store = ImageStore(str(tmp_path / "data"))
    assert Path(store.blob_path(layer)).read_bytes() == image.blobs[layer]
    assert not partial.exists()


def test_dropped_connection_resumes(fake: FakeRegistry, image: Image, tmp_path: Path) -> None:
    fake.add("x/app", "v1", image)
    layer = image.layers[1]
    fake.drop_once[layer] = 65_536
    record = images.pull(context(tmp_path, fake.host), f"{fake.host}/x/app:v1")
    assert record.manifest_digest == image.digest
    ranges = [h.get("Range") for m, p, h in fake.requests if p.endswith(layer)]
    assert ranges == [None, "bytes=65536-"]


def test_redirect_to_storage_drops_authorization(
    fake: FakeRegistry, image: Image, tmp_path: Path
) -> None:
    storage = FakeRegistry()
    try:
        fake.add("x/app", "v1", image)
        storage.blobs.update(image.blobs)
        fake.redirect_to = storage
        fake.basic = ("user", "pw")
        ctx = context(tmp_path, fake.host, storage.host)
        options = images.PullOptions(creds="user:pw")
        assert images.pull(ctx, f"{fake.host}/x/app:v1", options).manifest_digest == image.digest
        assert {p.rsplit("/", 1)[1] for _, p, _ in storage.requests} == set(image.blobs) - {
            image.digest
        }
        assert all("Authorization" not in h for _, _, h in storage.requests)
        assert all("Authorization" in h for _, p, h in fake.requests if "/blobs/" in p)
    finally:
        storage.stop()


def test_wrong_basic_credentials(fake: FakeRegistry, image: Image, tmp_path: Path) -> None:
    fake.add("x/app", "v1", image)
    fake.basic = ("user", "pw")
    options = images.PullOptions(creds="user:nope")
    with pytest.raises(Unauthorized, match="credentials rejected"):
        images.pull(context(tmp_path, fake.host), f"{fake.host}/x/app:v1", options)
    assert blobs(tmp_path) == [] and records(tmp_path) == []


def test_transient_503_is_retried(fake: FakeRegistry, image: Image, tmp_path: Path) -> None:
    fake.add("x/app", "v1", image)
    fake.fail_first["/manifests/v1"] = 2
    fake.fail_first[image.layers[0]] = 1
    record = images.pull(context(tmp_path, fake.host), f"{fake.host}/x/app:v1")
    assert record.manifest_digest == image.digest


def test_persistent_503_is_an_error(fake: FakeRegistry, image: Image, tmp_path: Path) -> None:
    fake.add("x/app", "v1", image)
    fake.fail_first["/manifests/v1"] = 100
    with pytest.raises(RegistryError, match="HTTP 503"):
        images.pull(context(tmp_path, fake.host), f"{fake.host}/x/app:v1")
    assert fake.fail_first["/manifests/v1"] == 100 - 4  # bounded: 1 try + 3 retries


def test_not_insecure_means_https(fake: FakeRegistry, image: Image, tmp_path: Path) -> None:
    fake.add("x/app", "v1", image)
    ctx = context(tmp_path)  # the fake registry is not named insecure: HTTPS only
    with pytest.raises(RegistryError):
        images.pull(ctx, f"{fake.host}/x/app:v1")
    assert fake.requests == []  # nothing went out in plain HTTP
    options = images.PullOptions(tls_verify=False)
    assert images.pull(ctx, f"{fake.host}/x/app:v1", options).manifest_digest == image.digest


def test_non_string_env_in_config(fake: FakeRegistry, tmp_path: Path) -> None:
    bad = build_image([{"a": b"x"}], env=["PATH=/bin", ["nested"]])
    fake.add("x/app", "v1", bad)
    with pytest.raises(InvalidImage, match=r"config\.Env\[1\]: must be a string, not array"):
        images.pull(context(tmp_path, fake.host), f"{fake.host}/x/app:v1")
    assert blobs(tmp_path) == [] and records(tmp_path) == []
