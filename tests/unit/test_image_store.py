"""The content store: verified atomic blob writes, resume, records, resolution, rm and prune."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from nexcage.errors import BlobNotFound, ContentMismatch, ImageNotFound, InvalidImage
from nexcage.image import manifest as mf
from nexcage.image.store import ImageStore, canonical_json


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(os.fspath(tmp_path / "data"))


def add_image(store: ImageStore, ref: str, layers: list[bytes], env: Any = None) -> str:
    """Store an image whose layers are ``layers`` (contents are not real tars: the store does not
    look inside layers) and tag it; returns the manifest digest."""
    for layer in layers:
        store.add_bytes(layer)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2020-01-01T00:00:00Z",
        "config": {"Env": env if env is not None else ["A=1"]},
        "rootfs": {"type": "layers", "diff_ids": [sha(layer) for layer in layers]},
    }
    config_digest, config_size = store.add_json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": mf.OCI_MANIFEST,
        "config": {"mediaType": mf.OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [
            {"mediaType": mf.OCI_LAYER, "digest": sha(layer), "size": len(layer)}
            for layer in layers
        ],
    }
    digest, _ = store.add_json(manifest)
    store.tag(ref, digest)
    return digest


def test_writer_commits_read_only_blob(store: ImageStore) -> None:
    data = os.urandom(3 << 20)
    with store.writer(sha(data), len(data)) as w:
        assert (w.offset, w.complete) == (0, False)
        for i in range(0, len(data), 1 << 20):
            w.write(data[i : i + (1 << 20)])
    path = store.blob_path(sha(data))
    assert Path(path).read_bytes() == data
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    assert os.listdir(store.ingest_dir) == []
    with store.writer(sha(data), len(data)) as w:
        assert w.complete  # already stored: nothing to write
    with store.open_blob(sha(data)) as f:
        assert f.read(4) == data[:4]


def test_digest_mismatch_stores_nothing(store: ImageStore) -> None:
    claimed = sha(b"expected")
    with pytest.raises(ContentMismatch) as info, store.writer(claimed, 8) as w:
        w.write(b"tampered")
    assert info.value.kind == "digest" and info.value.expected == claimed
    assert not store.has_blob(claimed)
    assert os.listdir(store.ingest_dir) == []  # a wrong partial is useless: deleted


def test_truncated_keeps_partial_for_resume(store: ImageStore) -> None:
    data = os.urandom(100_000)
    digest = sha(data)
    with pytest.raises(ContentMismatch) as info, store.writer(digest, len(data)) as w:
        w.write(data[:40_000])
    assert info.value.kind == "size" and info.value.actual == "40000"
    assert not store.has_blob(digest)
    with pytest.raises(BlobNotFound):
        store.blob_path(digest)
    assert os.listdir(store.ingest_dir) == [digest[7:] + ".partial"]
    with store.writer(digest, len(data)) as w:
        assert w.offset == 40_000  # resume: fetch the rest with Range
        w.write(data[40_000:])
    assert Path(store.blob_path(digest)).read_bytes() == data


def test_resume_after_server_ignored_range(store: ImageStore) -> None:
    data = b"0123456789" * 100
    with pytest.raises(RuntimeError), store.writer(sha(data), len(data)) as w:
        w.write(data[:300])
        raise RuntimeError("connection lost")
    with store.writer(sha(data), len(data)) as w:
        assert w.offset == 300
        w.reset()
        w.write(data)
    assert store.has_blob(sha(data))


def test_overrun_aborts_at_once(store: ImageStore) -> None:
    with pytest.raises(ContentMismatch, match="more than 4"), store.writer(sha(b"abcd"), 4) as w:
        w.write(b"abcdefgh")
    assert not store.has_blob(sha(b"abcd")) and os.listdir(store.ingest_dir) == []


def test_bad_digest_strings(store: ImageStore) -> None:
    for bad in ("sha256:abc", "sha512:" + "a" * 128, "../../etc/passwd", "sha256:" + "G" * 64):
        with pytest.raises(Exception, match="digest"):
            store.writer(bad, 1)
        with pytest.raises(Exception, match="digest"):
            store.has_blob(bad)


def test_add_json_and_ingest(store: ImageStore) -> None:
    digest, size = store.add_json({"b": 1, "a": [1, 2]})
    assert Path(store.blob_path(digest)).read_bytes() == b'{"a":[1,2],"b":1}' and size == 17
    assert store.add_json({"a": [1, 2], "b": 1}) == (digest, size)  # deterministic
    with open(store.blob_path(digest), "rb") as f:
        stream_digest, stream_size = store.ingest(f)
    assert (stream_digest, stream_size) == (digest, size)
    with pytest.raises(ContentMismatch):
        store.add_bytes(b"x", sha(b"y"))


def test_concurrent_writers_of_one_blob(store: ImageStore) -> None:
    data = os.urandom(2 << 20)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with store.writer(sha(data), len(data)) as w:
                if not w.complete:
                    w.reset()
                    for i in range(0, len(data), 65536):
                        w.write(data[i : i + 65536])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert Path(store.blob_path(sha(data))).read_bytes() == data
    assert os.listdir(store.ingest_dir) == []


def test_tag_resolve_and_list(store: ImageStore) -> None:
    digest = add_image(store, "alpine:3.20", [b"layer-1", b"layer-2"])
    record = store.resolve("docker.io/library/alpine:3.20")
    assert record.ref == "docker.io/library/alpine:3.20"
    assert record.manifest_digest == digest
    assert record.diff_ids == (sha(b"layer-1"), sha(b"layer-2"))
    assert [d.digest for d in record.layers] == [sha(b"layer-1"), sha(b"layer-2")]
    assert str(record.platform) == "linux/amd64" and record.created == "2020-01-01T00:00:00Z"
    assert record.config["config"]["Env"] == ["A=1"]
    assert store.resolve("alpine:3.20") == record
    assert store.resolve(digest) == record
    assert store.resolve(digest[7:19]) == record  # 12 hex digits
    assert store.resolve(f"alpine@{digest}").manifest_digest == digest
    with pytest.raises(ImageNotFound, match="image not known: alpine:latest"):
        store.resolve("alpine:latest")
    with pytest.raises(ImageNotFound):
        store.resolve(digest[7:18])  # 11 digits: too short to be a prefix
    assert [r.ref for r in store.images()] == ["docker.io/library/alpine:3.20"]
    doc = json.loads(Path(store._record_path(record.ref)).read_text())
    assert doc["manifest_digest"] == digest


def test_ambiguous_prefix(store: ImageStore, monkeypatch: pytest.MonkeyPatch) -> None:
    digests = [add_image(store, f"img{i}", [f"l{i}".encode()]) for i in range(20)]
    by_first: dict[str, list[str]] = {}
    for d in digests:
        by_first.setdefault(d[7], []).append(d)
    shared = next(ds for ds in by_first.values() if len(ds) > 1)
    # Two manifests sharing 12 hex digits cannot be made on purpose: shorten the rule instead.
    monkeypatch.setattr("nexcage.image.store.MIN_PREFIX", 1)
    with pytest.raises(ImageNotFound, match="several images"):
        store.resolve(shared[0][7])
    assert store.resolve(shared[0][7:19]).manifest_digest == shared[0]


def test_tag_rejects_bad_config_with_json_path(store: ImageStore) -> None:
    with pytest.raises(InvalidImage) as info:
        add_image(store, "bad:1", [b"l"], env=["A=1", 5])
    assert "config.Env[1]: must be a string, not number" in str(info.value)
    assert store.images() == []


def test_tag_needs_every_blob(store: ImageStore) -> None:
    config = canonical_json({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [sha(b"x")]}})  # fmt: skip
    config_digest, size = store.add_bytes(config)
    manifest_digest, _ = store.add_json({
        "schemaVersion": 2, "mediaType": mf.OCI_MANIFEST,
        "config": {"mediaType": mf.OCI_CONFIG, "digest": config_digest, "size": size},
        "layers": [{"mediaType": mf.OCI_LAYER, "digest": sha(b"x"), "size": 1}],
    })  # fmt: skip
    with pytest.raises(BlobNotFound):
        store.tag("x", manifest_digest)
    with pytest.raises(BlobNotFound):
        store.tag("x", sha(b"no manifest"))
    assert store.images() == []


def test_remove_frees_only_unshared_blobs(store: ImageStore) -> None:
    a = add_image(store, "a", [b"base", b"only-a"])
    b = add_image(store, "b", [b"base", b"only-b"])
    freed = store.remove("a")
    assert sha(b"only-a") in freed and a in freed
    assert sha(b"base") not in freed
    assert store.has_blob(sha(b"base")) and store.has_blob(b)
    with pytest.raises(ImageNotFound):
        store.resolve("a")
    store.remove(b[7:20])
    assert store.blobs() == []
    assert store.images() == []


def test_remove_while_a_pull_holds_a_lease(store: ImageStore) -> None:
    add_image(store, "a", [b"l"])
    with store.lease():
        assert store.remove("a") == []  # untagged, blobs wait for prune
    assert store.images() == []
    assert len(store.blobs()) == 3
    assert len(store.prune()) == 3


def test_prune(store: ImageStore) -> None:
    keep = add_image(store, "keep", [b"k"])
    store.add_bytes(b"orphan")
    with pytest.raises(ContentMismatch), store.writer(sha(b"partial!"), 8) as w:
        w.write(b"part")
    freed = store.prune()
    assert freed == [sha(b"orphan")]
    assert os.listdir(store.ingest_dir) == []
    assert store.resolve("keep").manifest_digest == keep
    assert store.prune() == []


def test_corrupt_record_is_skipped_and_its_blobs_kept(store: ImageStore) -> None:
    digest = add_image(store, "a", [b"l"])
    add_image(store, "b", [b"m"])
    record = store._record_path("docker.io/library/b:latest")
    Path(record).write_text("{not json")
    assert [r.ref for r in store.images()] == ["docker.io/library/a:latest"]
    assert digest not in store.prune()
