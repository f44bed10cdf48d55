"""The content store: blobs by digest, image records by reference.

Layout under ``data_root`` (default ``/var/lib/nexcage``)::

    blobs/sha256/<hex>        every blob once, read-only (0444), published by rename
    ingest/<hex>.partial      a download in progress; flock'ed by its writer, resumable
    ingest/tmp-*              content whose digest is not known yet (`ingest`)
    images/<sha256(ref)>.json one record per reference: {"ref", "manifest_digest", ...}
    images/.lock              store-wide lock for records (`lock`)
    gc.lock                   shared by writers (`lease`), exclusive for deleting blobs

Reference counts are never stored: a blob is in use when a record reaches it (record -> index ->
manifest -> config + layers), computed by scanning the records under the store lock. So a crash
can leave an unreferenced blob (``image prune`` frees it) but never a count that lies.

Concurrency: a blob is written to ``ingest/<hex>.partial`` under an ``flock`` on that file and
renamed into ``blobs/`` only after its size and digest were verified; a second writer of the same
blob waits for the lock and then finds the blob published. Deleting blobs takes ``gc.lock``
exclusively, writers hold it shared from their first blob until `tag`, so ``prune`` cannot delete a
blob a pull has written but not yet tagged. Lock order: ``gc.lock`` before ``images/.lock``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time

from nexcage import log
from nexcage.errors import (
    BlobNotFound,
    ContentMismatch,
    ImageNotFound,
    InvalidImage,
    InvalidReference,
    Violation,
)
from nexcage.host.fs import Lock, atomic_write, fsync_dir
from nexcage.image import manifest as mf
from nexcage.image import reference
from nexcage.image.ingest import CHUNK, BlobWriter, Lease, blob_hex
from nexcage.image.reference import check_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, BinaryIO

_HEX = frozenset("0123456789abcdef")
MIN_PREFIX = 12


def canonical_json(doc: dict[str, Any]) -> bytes:
    """Deterministic bytes for a document nexcage writes itself (sorted keys, no spaces)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class ImageRecord:
    """One tagged image: the record on disk plus what its manifest and config say.

    ``config`` is the image config JSON as stored; ``size`` the bytes of manifest, config and
    layers as stored (compressed); ``index_digest`` the index the reference resolved to, if any.
    """

    __slots__ = (
        "config",
        "config_digest",
        "created",
        "diff_ids",
        "index_digest",
        "layers",
        "manifest",
        "manifest_digest",
        "platform",
        "ref",
        "size",
        "tagged",
    )

    def __init__(
        self,
        *,
        ref: str,
        manifest_digest: str,
        manifest: mf.Manifest,
        config_digest: str,
        config: dict[str, Any],
        layers: tuple[mf.Descriptor, ...],
        diff_ids: tuple[str, ...],
        platform: mf.Platform,
        created: str,
        size: int,
        index_digest: str | None = None,
        tagged: str = "",
    ) -> None:
        self.ref = ref
        self.manifest_digest = manifest_digest
        self.manifest = manifest
        self.config_digest = config_digest
        self.config = config
        self.layers = layers
        self.diff_ids = diff_ids
        self.platform = platform
        self.created = created
        self.size = size
        self.index_digest = index_digest
        self.tagged = tagged

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageRecord) and all(
            getattr(self, n) == getattr(other, n) for n in self.__slots__
        )

    def __hash__(self) -> int:
        return hash((self.ref, self.manifest_digest))

    def __repr__(self) -> str:
        return f"ImageRecord({self.ref!r}, {self.manifest_digest!r})"

    def blobs(self) -> list[str]:
        """Every blob this image keeps alive."""
        found = [self.manifest_digest, self.config_digest, *(d.digest for d in self.layers)]
        if self.index_digest:
            found.append(self.index_digest)
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "digest": self.manifest_digest,
            "index_digest": self.index_digest,
            "config_digest": self.config_digest,
            "platform": str(self.platform),
            "created": self.created,
            "tagged": self.tagged,
            "size": self.size,
            "layers": [d.to_json() for d in self.layers],
        }


class ImageStore:
    def __init__(self, data_root: str) -> None:
        self.root = os.path.abspath(data_root)
        self.blob_dir = os.path.join(self.root, "blobs", "sha256")
        self.ingest_dir = os.path.join(self.root, "ingest")
        self.image_dir = os.path.join(self.root, "images")
        self._ready = False

    def ensure_dirs(self) -> None:
        if self._ready:
            return
        dirs = ((self.blob_dir, 0o755), (self.ingest_dir, 0o700), (self.image_dir, 0o700))
        for path, mode in dirs:
            os.makedirs(path, mode=mode, exist_ok=True)
        self._ready = True

    # -- blobs --------------------------------------------------------------------------------

    def path_of(self, digest: str) -> str:
        return os.path.join(self.blob_dir, blob_hex(digest))

    def has_blob(self, digest: str) -> bool:
        return os.path.isfile(self.path_of(digest))

    def blob_path(self, digest: str) -> str:
        path = self.path_of(digest)
        if not os.path.isfile(path):
            raise BlobNotFound(digest)
        return path

    def open_blob(self, digest: str) -> BinaryIO:
        try:
            return open(self.path_of(digest), "rb")
        except FileNotFoundError:
            raise BlobNotFound(digest) from None

    def read_blob(self, digest: str, limit: int = mf.MAX_MANIFEST_BYTES) -> bytes:
        """A small blob (manifest, config) in memory; refuses more than ``limit`` bytes."""
        with self.open_blob(digest) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ContentMismatch(digest, "size", f"at most {limit}", f"more than {limit}")
        return data

    def writer(self, digest: str, size: int | None) -> BlobWriter:
        return BlobWriter(self, digest, size)

    def add_bytes(self, data: bytes, digest: str | None = None) -> tuple[str, int]:
        """Store ``data`` (verified against ``digest`` when given); returns (digest, size)."""
        actual = "sha256:" + hashlib.sha256(data).hexdigest()
        if digest is not None and digest != actual:
            raise ContentMismatch(digest, "digest", digest, actual)
        with self.writer(actual, len(data)) as w:
            if not w.complete:
                w.reset()
                w.write(data)
        return actual, len(data)

    def add_json(self, doc: dict[str, Any]) -> tuple[str, int]:
        return self.add_bytes(canonical_json(doc))

    def ingest(self, stream: BinaryIO) -> tuple[str, int]:
        """Store a stream whose digest is not known in advance (docker-archive layers)."""
        self.ensure_dirs()
        tmp = os.path.join(self.ingest_dir, f"tmp-{os.getpid()}-{os.urandom(6).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        h = hashlib.sha256()
        size = 0
        try:
            while block := stream.read(CHUNK):
                h.update(block)
                size += len(block)
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.fchmod(fd, 0o444)
            os.close(fd)
            fd = -1
            digest = "sha256:" + h.hexdigest()
            os.rename(tmp, self.path_of(digest))  # same content under the same name: harmless
            fsync_dir(self.blob_dir)
        finally:
            if fd >= 0:
                os.close(fd)
            if os.path.exists(tmp):
                os.unlink(tmp)
        return digest, size

    def blobs(self) -> list[str]:
        try:
            names = os.listdir(self.blob_dir)
        except FileNotFoundError:
            return []
        return sorted("sha256:" + n for n in names if len(n) == 64 and set(n) <= _HEX)

    # -- locks --------------------------------------------------------------------------------

    def lock(self) -> Lock:
        """The store-wide lock over image records."""
        self.ensure_dirs()
        return Lock(os.path.join(self.image_dir, ".lock"))

    def lease(self) -> Lease:
        """Hold while writing blobs that a later `tag` will reference (pull, import)."""
        self.ensure_dirs()
        return Lease(os.path.join(self.root, "gc.lock"), shared=True)

    def _gc_lock(self, *, blocking: bool) -> Lease:
        self.ensure_dirs()
        return Lease(os.path.join(self.root, "gc.lock"), shared=False, blocking=blocking)

    # -- records ------------------------------------------------------------------------------

    def _record_path(self, ref: str) -> str:
        return os.path.join(self.image_dir, hashlib.sha256(ref.encode()).hexdigest() + ".json")

    def load(
        self,
        ref: str,
        manifest_digest: str,
        *,
        index_digest: str | None = None,
        tagged: str = "",
    ) -> ImageRecord:
        """Build the record of an image whose manifest is stored (validating it)."""
        source = f"{ref} manifest {manifest_digest}"
        manifest = mf.parse_manifest(self.read_blob(manifest_digest), source)
        mf.check_runnable(manifest, source)
        config_digest = manifest.config.digest
        config = mf.parse_config(
            self.read_blob(config_digest), f"{ref} image config", len(manifest.layers)
        )
        size = os.path.getsize(self.path_of(manifest_digest)) + manifest.config.size
        return ImageRecord(
            ref=ref,
            manifest_digest=manifest_digest,
            manifest=manifest,
            config_digest=config_digest,
            config=config,
            layers=manifest.layers,
            diff_ids=tuple(mf.diff_ids(config)),
            platform=mf.config_platform(config),
            created=str(config.get("created") or ""),
            size=size + sum(d.size for d in manifest.layers),
            index_digest=index_digest,
            tagged=tagged,
        )

    def tag(
        self, ref: str, manifest_digest: str, *, index_digest: str | None = None
    ) -> ImageRecord:
        """Record ``ref`` (normalised) -> ``manifest_digest``. The manifest, its config and every
        layer must already be stored; the config is validated (JSON paths in the error)."""
        name = reference.normalize(ref)
        check_digest(manifest_digest, manifest_digest)
        if index_digest is not None:
            self.blob_path(index_digest)
        record = self.load(
            name,
            manifest_digest,
            index_digest=index_digest,
            tagged=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        for digest in record.blobs():
            self.blob_path(digest)
        doc = {
            "ref": name,
            "manifest_digest": manifest_digest,
            "index_digest": index_digest,
            "tagged": record.tagged,
        }
        with self.lock():
            atomic_write(self._record_path(name), canonical_json(doc), 0o600)
        return record

    def _read_record(self, path: str) -> ImageRecord:
        with open(path, "rb") as f:
            doc = mf.load_json(f.read(), path)
        ref, digest = doc.get("ref"), doc.get("manifest_digest")
        if not isinstance(ref, str) or not isinstance(digest, str):
            raise InvalidImage(path, [Violation("", "not an image record")])
        index = doc.get("index_digest")
        return self.load(
            ref,
            digest,
            index_digest=index if isinstance(index, str) else None,
            tagged=str(doc.get("tagged") or ""),
        )

    def _record_files(self) -> list[str]:
        try:
            names = os.listdir(self.image_dir)
        except FileNotFoundError:
            return []
        return [os.path.join(self.image_dir, n) for n in sorted(names) if n.endswith(".json")]

    def images(self) -> list[ImageRecord]:
        """Every image, sorted by reference. A corrupt record is logged and skipped."""
        found = []
        for path in self._record_files():
            try:
                found.append(self._read_record(path))
            except (OSError, InvalidImage, BlobNotFound, ContentMismatch) as exc:
                log.warning(f"skipping image record {path}: {exc}")
        return sorted(found, key=lambda r: r.ref)

    def lookup(self, ref: str) -> ImageRecord | None:
        """The record of a normalised reference, None if there is none."""
        path = self._record_path(ref)
        if not os.path.exists(path):
            return None
        return self._read_record(path)

    def resolve(self, ref_or_digest: str) -> ImageRecord:
        """A reference (``alpine``, ``host:5000/x:tag``, ``x@sha256:…``), a manifest digest
        (``sha256:…``) or a unique prefix of at least 12 hex digits of one."""
        return self._matches(ref_or_digest)[0]

    def _matches(self, text: str) -> list[ImageRecord]:
        """The records ``text`` names: one for a reference, all tags of it for a digest."""
        bare = text.removeprefix("sha256:")
        digest_like = len(bare) >= MIN_PREFIX and set(bare) <= _HEX
        if not text.startswith("sha256:"):
            try:
                ref = reference.parse(text)
            except InvalidReference:
                if not digest_like:
                    raise
            else:
                found = self.lookup(str(ref))
                if found is not None:
                    return [found]
                if ref.digest:
                    same = [r for r in self.images() if r.manifest_digest == ref.digest]
                    same = [r for r in same if r.ref.startswith(ref.name + ":")]
                    if same:
                        return same[:1]
        if not digest_like:
            raise ImageNotFound(text)
        hits = [r for r in self.images() if r.manifest_digest[7:].startswith(bare)]
        if len({r.manifest_digest for r in hits}) > 1:
            raise ImageNotFound(text, reason="digest prefix matches several images")
        if not hits:
            raise ImageNotFound(text)
        return hits

    def remove(self, ref_or_digest: str) -> list[str]:
        """Untag (every reference of it, for a digest); return the blobs freed.

        Blobs are freed only if no other image reaches them and no pull or import holds a
        lease; otherwise they stay until ``prune``.
        """
        with self.lock():
            gone = self._matches(ref_or_digest)
            for record in gone:
                os.unlink(self._record_path(record.ref))
        candidates = {d for r in gone for d in r.blobs()}
        with self._gc_lock(blocking=False) as gc:
            if not gc.acquired:
                log.info("a pull or import is running: unreferenced blobs stay until prune")
                return []
            with self.lock():
                keep = self._reachable()
                return self._delete(sorted(candidates - keep))

    def prune(self) -> list[str]:
        """Delete every blob no image reaches, and abandoned partial downloads."""
        with self._gc_lock(blocking=True), self.lock():
            keep = self._reachable()
            freed = self._delete([d for d in self.blobs() if d not in keep])
            self._clean_ingest()
            return freed

    def _reachable(self) -> set[str]:
        keep: set[str] = set()
        for path in self._record_files():
            keep.update(self._record_blobs(path))
        return keep

    def _record_blobs(self, path: str) -> set[str]:
        """What one record keeps alive: its digests, plus its manifest's config and layers.
        A record that cannot be followed keeps what it names (never guess a blob unused)."""
        named = _named_digests(path)
        for digest in list(named):
            try:
                found = mf.parse_manifest(self.read_blob(digest), digest)
            except (OSError, InvalidImage, BlobNotFound, ContentMismatch):
                continue  # the index, or a damaged manifest
            named.add(found.config.digest)
            named.update(d.digest for d in found.layers)
        return named

    def _clean_ingest(self) -> None:
        """Partial downloads nobody holds, temp files of processes that are gone."""
        for name in os.listdir(self.ingest_dir):
            path = os.path.join(self.ingest_dir, name)
            if name.startswith("tmp-"):
                pid = name.split("-")[1]
                if pid.isdigit() and os.path.exists(f"/proc/{pid}"):
                    continue
                _unlink_quiet(path)
                continue
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                # Unlink while holding the lock: a writer waiting for it re-checks the inode.
                _unlink_quiet(path)
            except BlockingIOError:
                pass  # a writer is at it
            finally:
                os.close(fd)

    def _delete(self, digests: list[str]) -> list[str]:
        freed = []
        for digest in digests:
            try:
                os.unlink(self.path_of(digest))
                freed.append(digest)
            except FileNotFoundError:
                pass
        if freed:
            fsync_dir(self.blob_dir)
        return freed


def _named_digests(path: str) -> set[str]:
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read())
    except (OSError, ValueError):
        return set()
    return {v for v in doc.values() if isinstance(v, str) and reference.is_sha256_digest(v)}


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
