"""Image archives and layouts: import into the content store, export as oci-archive.

Sources (CONTRACTS.md §3.1):

- an OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``);
- an ``oci-archive`` (that directory as a tar, as skopeo writes it);
- a ``docker-archive`` (``docker save``: ``manifest.json`` listing each image's config and layer
  tars), a directory holding one unpacked too. Its layers keep their bytes; their diff_ids are
  computed while they stream into the store and must equal the config's ``rootfs.diff_ids``; an
  OCI manifest is written for them (as ``skopeo copy docker-archive: oci:`` does).

Everything small (index, manifests, configs) is read and validated before the first blob is
written, so an archive that is not an image stores nothing. Blobs are streamed into the store
and verified (size and digest) on the way; if a later one fails, the blobs this import added are
deleted again. Names: ``io.containerd.image.name`` (docker save 25+, ctr export), else
``org.opencontainers.image.ref.name`` when it is a full reference (has a ``/`` or ``:``), else
``localhost/<archive name>:<that tag>``; a docker-archive's ``RepoTags``.

Export writes one image as an oci-archive that ``skopeo inspect oci-archive:FILE``, ``umoci`` and
``podman load`` read: Docker schema2 manifests are converted to OCI media types (the config and
layer bytes do not change, so neither do their digests).
"""

from __future__ import annotations

import hashlib
import io
import os
import posixpath
import re
import tarfile
from typing import IO, Any, BinaryIO, cast

from nexcage import log
from nexcage.errors import (
    ArchiveError,
    ContentMismatch,
    InvalidImage,
    InvalidReference,
    Violation,
)
from nexcage.image import manifest as mf
from nexcage.image import reference
from nexcage.image.store import ImageRecord, ImageStore, canonical_json

CHUNK = 1 << 20
REF_NAME = "org.opencontainers.image.ref.name"
# docker save (25+) and ctr export put the full name here; ref.name holds only the tag.
CONTAINERD_NAME = "io.containerd.image.name"
LAYOUT_VERSION = "1.0.0"
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
# Docker schema2 -> OCI media types for export (skopeo's conversion).
_TO_OCI = {
    mf.DOCKER_MANIFEST: mf.OCI_MANIFEST,
    mf.DOCKER_CONFIG: mf.OCI_CONFIG,
    mf.DOCKER_LAYER_GZIP: mf.OCI_LAYER_GZIP,
    mf.DOCKER_LAYER_FOREIGN: mf.OCI_LAYER_ND_GZIP,
}


# -- sources -----------------------------------------------------------------------------------


class _Source:
    """Files of a layout or archive by their name inside it."""

    label = ""

    def size(self, name: str) -> int | None:
        raise NotImplementedError

    def open(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def read(self, name: str, limit: int = mf.MAX_MANIFEST_BYTES) -> bytes:
        size = self.size(name)
        if size is None:
            raise ArchiveError(self.label, f"{name} is missing")
        if size > limit:
            raise ArchiveError(self.label, f"{name} is larger than {limit} bytes")
        with self.open(name) as f:
            return f.read(limit)

    def blob_name(self, digest: str) -> str:
        algorithm, _, encoded = digest.partition(":")
        return f"blobs/{algorithm}/{encoded}"


def _clean(name: str) -> str:
    norm = posixpath.normpath("/" + name).lstrip("/")
    return norm


class _DirSource(_Source):
    def __init__(self, path: str) -> None:
        self.path = path
        self.label = path

    def _path(self, name: str) -> str:
        return os.path.join(self.path, _clean(name))

    def size(self, name: str) -> int | None:
        try:
            st = os.stat(self._path(name))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return st.st_size if os.path.isfile(self._path(name)) else None

    def open(self, name: str) -> BinaryIO:
        return open(self._path(name), "rb")


class _TarSource(_Source):
    """A tar read with random access: only headers are scanned; members are never extracted to
    disk, hardlinks resolve inside the archive."""

    def __init__(self, path: str) -> None:
        self.label = path
        try:
            self.tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()
        except (tarfile.TarError, EOFError, OSError) as exc:
            if isinstance(exc, (FileNotFoundError, IsADirectoryError, PermissionError)):
                raise ArchiveError(path, exc.strerror or str(exc)) from None
            raise ArchiveError(path, f"not an image archive (not a tar file: {exc})") from None
        self.members: dict[str, tarfile.TarInfo] = {}
        for info in self.tar.getmembers():
            if info.isreg() or info.islnk():
                self.members[_clean(info.name)] = info

    def size(self, name: str) -> int | None:
        info = self.members.get(_clean(name))
        if info is None:
            return None
        if info.islnk():
            target = self.members.get(_clean(info.linkname))
            return target.size if target is not None and target.isreg() else None
        return info.size

    def open(self, name: str) -> BinaryIO:
        info = self.members[_clean(name)]
        f = self.tar.extractfile(info)
        if f is None:  # pragma: no cover - only regular files and hardlinks are listed
            raise ArchiveError(self.label, f"{name} is not a file")
        return cast("BinaryIO", f)

    def close(self) -> None:
        self.tar.close()


def _open_source(path: str) -> _Source:
    if os.path.isdir(path):
        return _DirSource(path)
    if not os.path.exists(path):
        raise ArchiveError(path, "no such file or directory")
    return _TarSource(path)


# -- naming ------------------------------------------------------------------------------------


def _stem(path: str) -> str:
    base = os.path.basename(os.path.normpath(path)).lower()
    for suffix in (".tar.gz", ".tgz", ".tar", ".oci"):
        base = base.removesuffix(suffix)
    base = re.sub(r"[^a-z0-9._-]+", "-", base).strip("._-")
    return base or "imported"


def _name(ref_name: str | None, path: str, manifest_digest: str, several: bool) -> str:
    """The reference an imported image gets (see the module docstring)."""
    if ref_name and ("/" in ref_name or ":" in ref_name):
        try:
            return reference.normalize(ref_name)
        except InvalidReference:
            log.warning(f"{path}: ref name {ref_name!r} is not a reference: using a local name")
            ref_name = None
    tag = ref_name or (manifest_digest[7:19] if several else "latest")
    try:
        return reference.normalize(f"localhost/{_stem(path)}:{tag}")
    except InvalidReference:
        return reference.normalize(f"localhost/{_stem(path)}:{manifest_digest[7:19]}")


# -- plan: everything small, validated before any blob is stored --------------------------------


class _Blob:
    __slots__ = ("digest", "name", "size")

    def __init__(self, name: str, digest: str, size: int) -> None:
        self.name = name
        self.digest = digest
        self.size = size


class _Image:
    """One image to import: its documents as bytes, its blobs by name in the source."""

    __slots__ = ("config", "config_digest", "layers", "manifest", "manifest_digest", "names")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.manifest = b""
        self.manifest_digest = ""
        self.config = b""
        self.config_digest = ""
        self.layers: list[_Blob] = []


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _document(source: _Source, digest: str, size: int, what: str) -> bytes:
    name = source.blob_name(digest)
    data = source.read(name)
    if len(data) != size:
        raise ContentMismatch(f"{source.label}: {what} {digest}", "size", str(size), str(len(data)))
    actual = _sha256(data)
    if actual != digest:
        raise ContentMismatch(f"{source.label}: {what} {digest}", "digest", digest, actual)
    return data


def _oci_images(source: _Source, wanted: mf.Platform, ref: str | None, path: str) -> list[_Image]:
    index = mf.parse_index(source.read("index.json"), f"{source.label}: index.json")
    groups: dict[str | None, list[mf.Descriptor]] = {}
    for entry in index.manifests:
        if entry.media_type in mf.MANIFEST_TYPES or entry.media_type in mf.INDEX_TYPES:
            name = entry.annotations.get(CONTAINERD_NAME) or entry.annotations.get(REF_NAME)
            groups.setdefault(name, []).append(entry)
    if not groups:
        raise ArchiveError(path, "not an image: index.json lists no image manifest")
    images = []
    for ref_name, entries in groups.items():
        entry = entries[0]
        if len(entries) > 1:  # one name, several platforms (skopeo copy --all)
            entry = mf.select_platform(
                mf.Index(mf.OCI_INDEX, tuple(entries), {}, {}), wanted, f"{path}: index.json"
            )
        for _ in range(3):  # nested indexes, bounded
            if entry.media_type not in mf.INDEX_TYPES:
                break
            data = _document(source, entry.digest, entry.size, "index")
            entry = mf.select_platform(mf.parse_index(data, entry.digest), wanted, entry.digest)
        image = _Image()
        image.manifest = _document(source, entry.digest, entry.size, "manifest")
        image.manifest_digest = entry.digest
        manifest = mf.parse_manifest(image.manifest, f"{path}: manifest {entry.digest}")
        mf.check_runnable(manifest, f"{path}: manifest {entry.digest}")
        _plan_blobs(source, image, manifest)
        image.names = [ref] if ref else [_name(ref_name, path, entry.digest, len(groups) > 1)]
        images.append(image)
    return images


def _plan_blobs(source: _Source, image: _Image, manifest: mf.Manifest) -> None:
    desc = manifest.config
    image.config = _document(source, desc.digest, desc.size, "image config")
    image.config_digest = desc.digest
    mf.parse_config(image.config, f"{source.label}: image config", len(manifest.layers))
    for layer in manifest.layers:
        name = source.blob_name(layer.digest)
        have = source.size(name)
        if have is None:
            raise ArchiveError(source.label, f"layer {layer.digest} is missing ({name})")
        if have != layer.size:
            raise ContentMismatch(
                f"{source.label}: layer {layer.digest}", "size", str(layer.size), str(have)
            )
        image.layers.append(_Blob(name, layer.digest, layer.size))


class _DockerImage:
    __slots__ = ("config", "config_digest", "diff_ids", "layers", "names")

    def __init__(
        self, names: list[str], config: bytes, diff_ids: list[str], layers: list[str]
    ) -> None:
        self.names = names
        self.config = config
        self.config_digest = _sha256(config)
        self.diff_ids = diff_ids
        self.layers = layers


def _docker_manifest(source: _Source) -> list[Any]:
    import json

    where = f"{source.label}: manifest.json"
    try:
        doc = json.loads(source.read("manifest.json"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidImage(where, [Violation("", f"not valid JSON: {exc}")]) from None
    if not isinstance(doc, list):
        raise InvalidImage(where, [Violation("", "must be an array (docker save's format)")])
    return doc


def _docker_images(source: _Source, ref: str | None, path: str) -> list[_DockerImage]:
    doc = _docker_manifest(source)
    images = []
    for i, item in enumerate(doc):
        where = f"{source.label}: manifest.json[{i}]"
        if not isinstance(item, dict):
            raise InvalidImage(where, [Violation("", "must be an object")])
        config_name, layers, tags = item.get("Config"), item.get("Layers"), item.get("RepoTags")
        bad = []
        if not isinstance(config_name, str):
            bad.append(Violation("Config", "required string"))
        if not isinstance(layers, list) or not all(isinstance(x, str) for x in layers):
            bad.append(Violation("Layers", "required array of strings"))
        if tags is not None and not (
            isinstance(tags, list) and all(isinstance(x, str) for x in tags)
        ):
            bad.append(Violation("RepoTags", "must be an array of strings"))
        if bad:
            raise InvalidImage(where, bad)
        assert isinstance(config_name, str) and isinstance(layers, list)
        config = source.read(config_name)
        digest = _sha256(config)
        named = _clean(config_name).removeprefix("blobs/sha256/").removesuffix(".json")
        if _HEX64.match(named) and f"sha256:{named}" != digest:
            raise ContentMismatch(f"{where}: {config_name}", "digest", "sha256:" + named, digest)
        parsed = mf.parse_config(config, f"{where}: {config_name}", len(layers))
        for name in layers:
            if source.size(name) is None:
                raise ArchiveError(path, f"layer {name} is missing")
        names = [ref] if ref else [reference.normalize(t) for t in tags or []]
        names = names or [_name(None, path, digest, len(doc) > 1)]
        images.append(_DockerImage(names, config, mf.diff_ids(parsed), layers))
    if not images:
        raise ArchiveError(path, "not an image: manifest.json lists no image")
    return images


# -- import ------------------------------------------------------------------------------------


class _Import:
    """Blobs written so far, deleted again if the import fails."""

    def __init__(self, store: ImageStore) -> None:
        self.store = store
        self.added: list[str] = []

    def put(self, digest: str, size: int, stream: IO[bytes]) -> None:
        if self.store.has_blob(digest):
            return
        with self.store.writer(digest, size) as w:
            if not w.complete:
                w.reset()
                while block := stream.read(CHUNK):
                    w.write(block)
                self.added.append(digest)

    def put_bytes(self, data: bytes, digest: str) -> None:
        self.put(digest, len(data), io.BytesIO(data))

    def undo(self) -> None:
        for digest in self.added:
            try:
                os.unlink(self.store.path_of(digest))
            except FileNotFoundError:
                pass


def import_path(
    store: ImageStore,
    path: str,
    *,
    ref: str | None = None,
    platform: mf.Platform | None = None,
) -> list[ImageRecord]:
    """Import every image of an OCI layout dir, oci-archive or docker-archive; tag and return
    their records. ``ref`` names the image instead (the archive must hold exactly one)."""
    path = os.path.abspath(path)
    name = reference.normalize(ref) if ref else None
    source = _open_source(path)
    try:
        if source.size("index.json") is not None:
            if source.size("oci-layout") is not None:
                _check_layout(source)
            images = _oci_images(source, platform or mf.host_platform(), name, path)
            if name and len(images) > 1:
                raise ArchiveError(path, f"holds {len(images)} images: a name fits only one")
            with store.lease():
                return _store_oci(store, source, images)
        if source.size("manifest.json") is not None:
            docker = _docker_images(source, name, path)
            if name and len(docker) > 1:
                raise ArchiveError(path, f"holds {len(docker)} images: a name fits only one")
            with store.lease():
                return _store_docker(store, source, docker)
        raise ArchiveError(
            path,
            "not an image archive or layout (no index.json or manifest.json)",
            hint="give an oci-archive, a docker-archive (docker save) or an OCI layout directory",
        )
    finally:
        source.close()


def _check_layout(source: _Source) -> None:
    doc = mf.load_json(source.read("oci-layout"), f"{source.label}: oci-layout")
    version = doc.get("imageLayoutVersion")
    if not isinstance(version, str) or not version.startswith("1."):
        raise InvalidImage(
            f"{source.label}: oci-layout",
            [Violation("imageLayoutVersion", f"unsupported layout version {version!r}")],
        )


def _store_oci(store: ImageStore, source: _Source, images: list[_Image]) -> list[ImageRecord]:
    job = _Import(store)
    try:
        for image in images:
            for blob in image.layers:
                with source.open(blob.name) as stream:
                    job.put(blob.digest, blob.size, stream)
            job.put_bytes(image.config, image.config_digest)
            job.put_bytes(image.manifest, image.manifest_digest)
        return [store.tag(n, image.manifest_digest) for image in images for n in image.names]
    except BaseException:
        job.undo()
        raise


class _DiffIDTee:
    """Reads a layer as is (for the store) while hashing its uncompressed form (the diff_id)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._hash = hashlib.sha256()
        self._gzip: Any = None
        self._first = True
        self.codec = "tar"

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(CHUNK if n < 0 else n)
        if self._first:
            self._first = False
            if data.startswith(b"\x1f\x8b"):
                import zlib

                self.codec, self._gzip = "gzip", zlib.decompressobj(31)
        if self._gzip is None:
            self._hash.update(data)
        else:
            chunk = data
            while chunk:  # bounded output per step: a gzip bomb stays a stream
                self._hash.update(self._gzip.decompress(chunk, CHUNK))
                chunk = self._gzip.unconsumed_tail
        return data

    @property
    def diff_id(self) -> str:
        return "sha256:" + self._hash.hexdigest()


_LAYER_TYPES = {"tar": mf.OCI_LAYER, "gzip": mf.OCI_LAYER_GZIP}


def _store_docker(
    store: ImageStore, source: _Source, images: list[_DockerImage]
) -> list[ImageRecord]:
    job = _Import(store)
    before = set(store.blobs())  # ingest() cannot tell new blobs from known ones
    records = []
    try:
        for image in images:
            descriptors = []
            for name, expected in zip(image.layers, image.diff_ids, strict=True):
                with source.open(name) as stream:
                    tee = _DiffIDTee(stream)
                    digest, size = store.ingest(cast("BinaryIO", tee))
                if digest not in before:
                    job.added.append(digest)
                if tee.diff_id != expected:
                    raise ContentMismatch(
                        f"{source.label}: layer {name} (uncompressed, diff_id)",
                        "digest",
                        expected,
                        tee.diff_id,
                    )
                descriptors.append(
                    {"mediaType": _LAYER_TYPES[tee.codec], "digest": digest, "size": size}
                )
            job.put_bytes(image.config, image.config_digest)
            manifest = canonical_json(
                {
                    "schemaVersion": 2,
                    "mediaType": mf.OCI_MANIFEST,
                    "config": {
                        "mediaType": mf.OCI_CONFIG,
                        "digest": image.config_digest,
                        "size": len(image.config),
                    },
                    "layers": descriptors,
                }
            )
            manifest_digest = _sha256(manifest)
            job.put_bytes(manifest, manifest_digest)
            records += [store.tag(n, manifest_digest) for n in image.names]
        return records
    except BaseException:
        job.undo()
        raise


# -- export ------------------------------------------------------------------------------------


def _oci_manifest(store: ImageStore, record: ImageRecord) -> tuple[bytes, str]:
    """The manifest to export: the stored bytes if OCI, else converted to OCI media types."""
    if record.manifest.media_type == mf.OCI_MANIFEST:
        return store.read_blob(record.manifest_digest), record.manifest_digest
    doc = dict(record.manifest.raw)
    doc["mediaType"] = mf.OCI_MANIFEST
    doc["config"] = {**doc["config"], "mediaType": mf.OCI_CONFIG}
    doc["layers"] = [
        {**layer, "mediaType": _TO_OCI.get(layer["mediaType"], layer["mediaType"])}
        for layer in doc["layers"]
    ]
    data = canonical_json(doc)
    return data, _sha256(data)


def _add(
    tar: tarfile.TarFile, name: str, size: int, stream: IO[bytes] | None, *, mode: int
) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = mode
    info.mtime = 0
    if stream is None:
        info.type = tarfile.DIRTYPE
    tar.addfile(info, stream)


def export_archive(store: ImageStore, record: ImageRecord, path: str) -> None:
    """Write ``record`` as an oci-archive at ``path`` (atomically: temp file, rename)."""
    manifest, manifest_digest = _oci_manifest(store, record)
    entry: dict[str, Any] = {
        "mediaType": mf.OCI_MANIFEST,
        "digest": manifest_digest,
        "size": len(manifest),
        "annotations": {REF_NAME: record.ref},
        "platform": record.platform.to_json(),
    }
    index = canonical_json({"schemaVersion": 2, "mediaType": mf.OCI_INDEX, "manifests": [entry]})
    blobs = [record.config_digest] + [d.digest for d in record.layers]
    path = os.path.abspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with tarfile.TarFile(tmp, "w", format=tarfile.PAX_FORMAT, copybufsize=CHUNK) as tar:
            layout = canonical_json({"imageLayoutVersion": LAYOUT_VERSION})
            _add(tar, "oci-layout", len(layout), io.BytesIO(layout), mode=0o644)
            _add(tar, "index.json", len(index), io.BytesIO(index), mode=0o644)
            _add(tar, "blobs", 0, None, mode=0o755)
            _add(tar, "blobs/sha256", 0, None, mode=0o755)
            _add(tar, "blobs/sha256/" + manifest_digest[7:], len(manifest),
                 io.BytesIO(manifest), mode=0o644)  # fmt: skip
            for digest in dict.fromkeys(blobs):
                with store.open_blob(digest) as f:
                    size = os.fstat(f.fileno()).st_size
                    _add(tar, "blobs/sha256/" + digest[7:], size, f, mode=0o644)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
