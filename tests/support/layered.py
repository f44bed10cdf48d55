"""Multi-layer images for the storage tests and the benchmark, from layer tars (`LayerTar` or
`support.busybox.layer_tar`), without a registry:

- ``store_image(store, ref, tars)``: straight into an `ImageStore` (blobs + tag).
- ``write_oci_archive(path, ref, tars)``: an oci-archive for ``nexcage image import``.

Layers are gzip-compressed (level ``level``, default 6; 1 for big benchmark images) unless
``compress=False``. The image config runs ``/bin/sh`` with busybox's PATH.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from nexcage.image.store import ImageRecord, ImageStore
from support.busybox import CREATED, DEFAULT_PATH, EPOCH, go_arch

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_INDEX = "application/vnd.oci.image.index.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def compress(data: bytes, level: int = 6) -> bytes:
    if level == 1:
        # zlib at level 1 with a gzip wrapper (gzip.compress(level=1) is the same, but slower
        # to set up for many calls): the benchmark compresses hundreds of MB.
        c = zlib.compressobj(1, zlib.DEFLATED, 31)
        return c.compress(data) + c.flush()
    return gzip.compress(data, compresslevel=level, mtime=0)


class Built:
    """An image's blobs: (digest, media type, bytes) for layers, config, manifest."""

    def __init__(
        self, tars: Sequence[bytes], *, cmd: Sequence[str], compressed: bool, level: int
    ) -> None:
        self.layers: list[tuple[str, str, bytes]] = []
        for raw in tars:
            blob = compress(raw, level) if compressed else raw
            self.layers.append((sha(blob), MT_GZIP if compressed else MT_TAR, blob))
        self.diff_ids = [sha(raw) for raw in tars]
        config: dict[str, Any] = {
            "created": CREATED,
            "architecture": go_arch(),
            "os": "linux",
            "config": {"Env": [DEFAULT_PATH], "Cmd": list(cmd), "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": self.diff_ids},
        }
        self.config = json.dumps(config, sort_keys=True).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": {
                "mediaType": MT_CONFIG,
                "digest": sha(self.config),
                "size": len(self.config),
            },
            "layers": [{"mediaType": mt, "digest": d, "size": len(b)} for d, mt, b in self.layers],
        }
        self.manifest = json.dumps(manifest, sort_keys=True).encode()

    def blobs(self) -> Iterable[bytes]:
        yield from (b for _, _, b in self.layers)
        yield self.config
        yield self.manifest


def store_image(
    store: ImageStore,
    ref: str,
    tars: Sequence[bytes],
    *,
    cmd: Sequence[str] = ("/bin/sh",),
    compressed: bool = True,
) -> ImageRecord:
    built = Built(tars, cmd=cmd, compressed=compressed, level=6)
    for blob in built.blobs():
        store.add_bytes(blob)
    return store.tag(ref, sha(built.manifest))


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), EPOCH, 0o644
    tar.addfile(info, io.BytesIO(data))


def write_oci_archive(
    path: str | os.PathLike[str],
    ref: str,
    tars: Sequence[bytes],
    *,
    cmd: Sequence[str] = ("/bin/sh",),
    compressed: bool = True,
    level: int = 6,
) -> str:
    """An oci-archive holding one image named ``ref``; returns its manifest digest."""
    built = Built(tars, cmd=cmd, compressed=compressed, level=level)
    index = {
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [
            {
                "mediaType": MT_MANIFEST,
                "digest": sha(built.manifest),
                "size": len(built.manifest),
                "annotations": {"org.opencontainers.image.ref.name": ref},
            }
        ],
    }
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        _add(tar, "index.json", json.dumps(index).encode())
        for blob in built.blobs():
            _add(tar, f"blobs/sha256/{sha(blob)[7:]}", blob)
    return sha(built.manifest)
