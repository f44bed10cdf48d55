"""Image import (oci-archive, docker-archive, OCI layout directory) and export (oci-archive),
checked against the tools that define the formats: skopeo and umoci."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from nexcage.errors import ArchiveError, ContentMismatch, InvalidImage
from nexcage.image.layout import export_archive, import_path
from nexcage.image.store import ImageStore
from nexcage.image.unpack import unpack_image
from support import require_tool
from support.busybox import (
    TEST_IMAGE_REF,
    ImageArchive,
    make_docker_archive,
    make_oci_archive,
)

pytestmark = [pytest.mark.integration]


def run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stderr}"
    return proc.stdout


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(os.fspath(tmp_path / "store"))


def stored(store: ImageStore) -> tuple[list[str], list[str]]:
    return [r.ref for r in store.images()], store.blobs()


def extract(archive: str, into: Path) -> Path:
    with tarfile.open(archive) as tf:
        tf.extractall(into, filter="data")
    return into


def test_import_oci_archive(store: ImageStore, busybox_image: ImageArchive) -> None:
    (record,) = import_path(store, busybox_image.path)
    assert record.ref == TEST_IMAGE_REF
    assert record.manifest_digest == busybox_image.manifest_digest
    assert record.config_digest == busybox_image.config_digest
    assert record.diff_ids == (busybox_image.diff_id,)
    assert store.resolve("busybox-test").manifest_digest == busybox_image.manifest_digest
    # importing again is a no-op
    assert import_path(store, busybox_image.path)[0].manifest_digest == record.manifest_digest


def test_import_layout_directory(
    store: ImageStore, busybox_image: ImageArchive, tmp_path: Path
) -> None:
    layout = extract(busybox_image.path, tmp_path / "layout")
    (record,) = import_path(store, os.fspath(layout), ref="localhost/mine:v1")
    assert record.ref == "localhost/mine:v1"
    assert record.manifest_digest == busybox_image.manifest_digest


def test_import_docker_archive_computes_diff_ids(
    store: ImageStore, busybox_rootfs: str, tmp_path: Path
) -> None:
    archive = make_docker_archive(busybox_rootfs, tmp_path / "d.tar", "example.com/x/bb:2",
                                  cmd=["/bin/true"])  # fmt: skip
    (record,) = import_path(store, archive.path)
    assert record.ref == "example.com/x/bb:2"
    assert record.config_digest == archive.config_digest
    assert record.diff_ids == (archive.diff_id,)
    assert record.layers[0].media_type == "application/vnd.oci.image.layer.v1.tar"
    assert record.layers[0].digest == archive.diff_id  # uncompressed: digest == diff_id
    unpack_image(store, record, os.fspath(tmp_path / "rootfs"))
    assert (tmp_path / "rootfs/bin/busybox").is_file()


def test_import_skopeo_docker_archive(
    store: ImageStore, busybox_image: ImageArchive, tmp_path: Path
) -> None:
    """A docker-archive written by a real tool (skopeo converts the OCI archive)."""
    skopeo = require_tool("skopeo")
    out = tmp_path / "docker.tar"
    run(skopeo, "copy", "--insecure-policy", f"oci-archive:{busybox_image.path}",
        f"docker-archive:{out}:quay.io/nexcage/skopeo-made:1")  # fmt: skip
    (record,) = import_path(store, os.fspath(out))
    assert record.ref == "quay.io/nexcage/skopeo-made:1"
    assert record.diff_ids == (busybox_image.diff_id,)
    unpack_image(store, record, os.fspath(tmp_path / "rootfs"))


def test_import_picks_the_platform_of_a_multi_arch_layout(
    store: ImageStore, busybox_image: ImageArchive, tmp_path: Path
) -> None:
    layout = extract(busybox_image.path, tmp_path / "layout")
    index = json.loads((layout / "index.json").read_text())
    ours = index["manifests"][0]
    other = {**ours, "platform": {"os": "linux", "architecture": "s390x"}}
    index["manifests"] = [other, ours]
    (layout / "index.json").write_text(json.dumps(index))
    (record,) = import_path(store, os.fspath(layout))
    assert record.manifest_digest == ours["digest"]


def test_export_is_readable_by_skopeo_and_umoci(
    store: ImageStore, busybox_image: ImageArchive, tmp_path: Path
) -> None:
    (record,) = import_path(store, busybox_image.path)
    out = tmp_path / "export.tar"
    export_archive(store, record, os.fspath(out))
    inspected = json.loads(run(require_tool("skopeo"), "inspect", f"oci-archive:{out}"))
    assert inspected["Digest"] == busybox_image.manifest_digest
    assert inspected["Layers"] == [busybox_image.layer_digest]
    layout = extract(os.fspath(out), tmp_path / "layout")
    run(require_tool("umoci"), "unpack", "--image", f"{layout}:{record.ref}",
        os.fspath(tmp_path / "bundle"))  # fmt: skip
    assert (tmp_path / "bundle/rootfs/bin/busybox").is_file()
    # and back in: the same image
    other = ImageStore(os.fspath(tmp_path / "other"))
    (again,) = import_path(other, os.fspath(out))
    assert (again.ref, again.manifest_digest) == (record.ref, record.manifest_digest)


def test_export_converts_docker_schema2(
    store: ImageStore, busybox_image: ImageArchive, tmp_path: Path
) -> None:
    """An image stored with Docker media types (as pulled from Docker Hub) exports as OCI."""
    (record,) = import_path(store, busybox_image.path)
    manifest = dict(record.manifest.raw)
    manifest["mediaType"] = "application/vnd.docker.distribution.manifest.v2+json"
    manifest["config"] = {
        **manifest["config"],
        "mediaType": "application/vnd.docker.container.image.v1+json",
    }
    manifest["layers"] = [{**layer, "mediaType":
                           "application/vnd.docker.image.rootfs.diff.tar.gzip"}
                          for layer in manifest["layers"]]  # fmt: skip
    digest, _ = store.add_json(manifest)
    docker = store.tag("localhost/docker-typed:1", digest)
    out = tmp_path / "export.tar"
    export_archive(store, docker, os.fspath(out))
    inspected = json.loads(run(require_tool("skopeo"), "inspect", "--raw", f"oci-archive:{out}"))
    assert inspected["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert inspected["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert inspected["layers"][0]["digest"] == busybox_image.layer_digest


# -- bad archives: clear error, nothing stored -------------------------------------------------


def tar_of(path: Path, files: dict[str, bytes]) -> str:
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return os.fspath(path)


@pytest.mark.parametrize(
    ("files", "error", "match"),
    [
        ({"hello.txt": b"hi"}, ArchiveError, "not an image archive"),
        ({"index.json": b"{not json"}, InvalidImage, "not valid JSON"),
        ({"index.json": b'{"schemaVersion":2,"manifests":[]}'}, ArchiveError, "no image"),
        ({"manifest.json": b'{"not": "a list"}'}, InvalidImage, "must be an array"),
        ({"manifest.json": b'[{"Config":"c.json","Layers":["l.tar"]}]'}, ArchiveError,
         "c.json is missing"),
    ],
)  # fmt: skip
def test_not_an_image(
    store: ImageStore, tmp_path: Path, files: dict[str, bytes], error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        import_path(store, tar_of(tmp_path / "x.tar", files))
    assert stored(store) == ([], [])


def test_not_a_tar_at_all(store: ImageStore, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(gzip.compress(b"nothing to see") + b"garbage")
    with pytest.raises(ArchiveError, match="not a tar"):
        import_path(store, os.fspath(junk))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ArchiveError, match="not an image"):
        import_path(store, os.fspath(empty))
    with pytest.raises(ArchiveError, match="no such file"):
        import_path(store, os.fspath(tmp_path / "missing.tar"))
    assert stored(store) == ([], [])


def test_corrupt_layer_blob_stores_nothing(
    store: ImageStore, busybox_image: ImageArchive, tmp_path: Path
) -> None:
    layout = extract(busybox_image.path, tmp_path / "layout")
    blob = layout / "blobs/sha256" / busybox_image.layer_digest[7:]
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF  # same size, other content
    blob.write_bytes(bytes(data))
    with pytest.raises(ContentMismatch, match="digest"):
        import_path(store, os.fspath(layout))
    assert stored(store) == ([], [])


def test_truncated_layer_blob_stores_nothing(
    store: ImageStore, busybox_image: ImageArchive, tmp_path: Path
) -> None:
    layout = extract(busybox_image.path, tmp_path / "layout")
    blob = layout / "blobs/sha256" / busybox_image.layer_digest[7:]
    blob.write_bytes(blob.read_bytes()[:-10])
    with pytest.raises(ContentMismatch, match="size"):
        import_path(store, os.fspath(layout))
    assert stored(store) == ([], [])


def test_docker_archive_with_wrong_diff_id_stores_nothing(
    store: ImageStore, busybox_rootfs: str, tmp_path: Path
) -> None:
    good = make_docker_archive(busybox_rootfs, tmp_path / "d.tar", "x:1")
    tree = extract(good.path, tmp_path / "tree")
    manifest = json.loads((tree / "manifest.json").read_text())
    (tree / manifest[0]["Layers"][0]).write_bytes(b"\0" * 1024)  # an empty tar instead
    with pytest.raises(ContentMismatch, match="diff_id"):
        import_path(store, os.fspath(tree))
    assert stored(store) == ([], [])


def test_several_images_in_one_layout(
    store: ImageStore, busybox_rootfs: str, tmp_path: Path
) -> None:
    first = make_oci_archive(busybox_rootfs, tmp_path / "a.tar", "one", cmd=["/a"])
    second = make_oci_archive(busybox_rootfs, tmp_path / "b.tar", "two", cmd=["/b"])
    layout = extract(first.path, tmp_path / "layout")
    other = extract(second.path, tmp_path / "other")
    for blob in (other / "blobs/sha256").iterdir():
        shutil.copy(blob, layout / "blobs/sha256" / blob.name)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"] += json.loads((other / "index.json").read_text())["manifests"]
    (layout / "index.json").write_text(json.dumps(index))
    records = import_path(store, os.fspath(layout))
    assert sorted(r.ref for r in records) == ["localhost/layout:one", "localhost/layout:two"]
    with pytest.raises(ArchiveError, match="holds 2 images"):
        import_path(store, os.fspath(layout), ref="x:1")
