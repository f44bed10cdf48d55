"""Layer tars built entry by entry, hostile ones included, for the unpack and import tests.

``LayerTar`` writes members exactly as asked (no normalisation: ``../x``, ``/abs``, links
anywhere), then ``data()`` gives the uncompressed tar, optionally without the end-of-archive
blocks or even the last member's padding (Debian's umoci 0.4.7, CONTRACTS.md §3.7).
``blob()`` compresses it; ``digest()`` is the sha256 form the image spec uses.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Mapping

EPOCH = 1577836800  # 2020-01-01T00:00:00Z

MT_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class LayerTar:
    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=tarfile.PAX_FORMAT)
        self._last_data_end = 0

    def _add(self, info: tarfile.TarInfo, data: bytes | None = None) -> LayerTar:
        info.mtime = info.mtime or EPOCH
        self._tar.addfile(info, io.BytesIO(data) if data is not None else None)
        self._last_data_end = self._buf.tell() - ((-len(data or b"")) % 512)
        return self

    def file(
        self,
        name: str,
        data: bytes = b"",
        *,
        mode: int = 0o644,
        uid: int = 0,
        gid: int = 0,
        mtime: int = EPOCH,
        xattrs: Mapping[str, str] | None = None,
    ) -> LayerTar:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.uid, info.gid, info.mtime = len(data), mode, uid, gid, mtime
        if xattrs:
            info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
        return self._add(info, data)

    def dir(self, name: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0) -> LayerTar:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid = tarfile.DIRTYPE, mode, uid, gid
        return self._add(info)

    def symlink(self, name: str, target: str) -> LayerTar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        return self._add(info)

    def hardlink(self, name: str, target: str) -> LayerTar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode = tarfile.LNKTYPE, target, 0o644
        return self._add(info)

    def device(self, name: str, *, char: bool = True, major: int = 1, minor: int = 3) -> LayerTar:
        info = tarfile.TarInfo(name)
        info.type = tarfile.CHRTYPE if char else tarfile.BLKTYPE
        info.devmajor, info.devminor, info.mode = major, minor, 0o666
        return self._add(info)

    def fifo(self, name: str, *, mode: int = 0o600) -> LayerTar:
        info = tarfile.TarInfo(name)
        info.type, info.mode = tarfile.FIFOTYPE, mode
        return self._add(info)

    def whiteout(self, path: str) -> LayerTar:
        head, _, name = path.rpartition("/")
        return self.file(f"{head}/.wh.{name}" if head else f".wh.{name}")

    def opaque(self, directory: str) -> LayerTar:
        return self.file(f"{directory}/.wh..wh..opq" if directory else ".wh..wh..opq")

    def data(self, *, end: bool = True, padding: bool = True) -> bytes:
        """The tar. ``end=False``: no end-of-archive blocks; ``padding=False`` as well: the last
        member's data not padded to 512 bytes either (both as umoci 0.4.7 writes)."""
        if end:
            self._tar.close()
            return self._buf.getvalue()
        raw = self._buf.getvalue()
        return raw if padding else raw[: self._last_data_end]


def gzip_blob(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zstd_blob(data: bytes, *, frames: int = 1) -> bytes:
    import zstandard

    step = max(1, -(-len(data) // frames))
    parts = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    return b"".join(zstandard.ZstdCompressor().compress(part) for part in parts)
