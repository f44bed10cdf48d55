"""Apply image layers to a directory, entry by entry, without ever leaving it.

Modelled on umoci's ``oci/layer/tar_extract.go`` (STYLE.md, "Unpack like umoci"):

- The blob is streamed once: read -> sha256 of the compressed bytes (the layer digest) ->
  gzip / zstd / nothing (by media type; magic bytes win when they disagree) -> sha256 of the
  tar stream (the diff_id) -> ``tarfile`` in streaming mode. Both digests are compared at the end
  of the layer; nothing is held in memory beyond one chunk.
- Every member name is normalised; an absolute name or one climbing out with ``..`` is refused.
  Parents are resolved with `rootfs.Root` (openat walks, ``O_NOFOLLOW``): a write through a
  symlink that leads out of the root is refused, the last component is never followed.
- An existing entry is replaced (removed first) unless both are directories, whose attributes
  are updated (layer.md "changeset over existing files").
- Hardlinks may only name paths inside the root, resolved the same way. Device nodes need root.
  An entry ``.`` may only be a directory (a layer must not change the root's type).
- Owners (numeric), modes (setuid/sticky kept: chown before chmod), mtimes and ``SCHILY.xattr.*``
  are applied; directory modes and mtimes last, deepest first, so a restrictive mode or a child
  added later does not undo them.
- Whiteouts live in `whiteout`.
- Tar streams without end-of-archive blocks and without the last member's padding (Debian's
  umoci 0.4.7, CONTRACTS.md §3.7) end cleanly at a member boundary; a member cut short does not.

`unpack_layers` builds the whole rootfs in ``<dest>.tmp-<pid>`` and renames it into place: a
failed unpack leaves nothing behind. `apply_layer` (one layer onto a directory) is the seam the
storage drivers build on; its ``overlay=True`` form writes the overlay storage format instead
(one layer alone in an empty directory, whiteouts kept as overlayfs markers: `whiteout`).
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import IO, TYPE_CHECKING, Any, BinaryIO, cast

from nexcage import log
from nexcage.errors import ContentMismatch, LayerError, UnsafePath
from nexcage.image import manifest as mf
from nexcage.image import whiteout
from nexcage.image.rootfs import Root, remove_at, remove_path

if TYPE_CHECKING:
    from nexcage.image.store import ImageRecord, ImageStore

CHUNK = 1 << 20
# tarfile's stream buffer: each small read copies what is left of it (`buf[size:]`), so a large
# buffer makes layers of many small files slow (1 MiB: 5x slower than 64 KiB on 20k files).
TAR_BUFSIZE = 64 << 10
GZIP = "gzip"
ZSTD = "zstd"
PLAIN = "tar"
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CODECS = {
    mf.OCI_LAYER: PLAIN,
    mf.OCI_LAYER_ND: PLAIN,
    mf.OCI_LAYER_GZIP: GZIP,
    mf.OCI_LAYER_ND_GZIP: GZIP,
    mf.DOCKER_LAYER_GZIP: GZIP,
    mf.DOCKER_LAYER_FOREIGN: GZIP,
    mf.OCI_LAYER_ZSTD: ZSTD,
    mf.OCI_LAYER_ND_ZSTD: ZSTD,
}
_XATTR = "SCHILY.xattr."
# xattrs the kernel may refuse for reasons that do not make the rootfs wrong (a filesystem
# without user xattrs, a user namespace): skipped with a warning, as Docker does.
_XATTR_SOFT_ERRNOS = (95, 1)  # EOPNOTSUPP, EPERM


class Layer:
    """One layer to apply: its descriptor facts and how to open its blob."""

    __slots__ = ("diff_id", "digest", "media_type", "open", "size")

    def __init__(
        self,
        digest: str,
        media_type: str,
        diff_id: str | None,
        open: Callable[[], BinaryIO],
        size: int | None = None,
    ) -> None:
        self.digest = digest
        self.media_type = media_type
        self.diff_id = diff_id
        self.open = open
        self.size = size


# -- streams ---------------------------------------------------------------------------------


class _Digesting:
    """The blob as stored: hashes and counts every byte read (the layer digest)."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._head = b""
        self.hash = hashlib.sha256()
        self.size = 0

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            more = self._f.read(n - len(self._head))
            if not more:
                break
            self.hash.update(more)
            self.size += len(more)
            self._head += more
        return self._head[:n]

    def read(self, n: int = -1) -> bytes:
        if self._head:
            data, self._head = self._head, b""
            return data
        if n == 0:
            return b""
        data = self._f.read(CHUNK if n < 0 else min(n, CHUNK))
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class _Gunzip:
    """Streaming gzip (multi-member, as pigz writes), output bounded per read."""

    def __init__(self, raw: _Digesting) -> None:
        self._raw = raw
        self._d = zlib.decompressobj(31)
        self._eof = False

    def read(self, n: int) -> bytes:
        while not self._eof:
            data = self._d.unconsumed_tail
            if not data:
                if self._d.eof:
                    data = self._d.unused_data or self._raw.read(CHUNK)
                    while 0 < len(data) < len(_GZIP_MAGIC):
                        more = self._raw.read(CHUNK)
                        if not more:
                            break
                        data += more
                    if not data:
                        self._eof = True
                        break
                    if not data.startswith(_GZIP_MAGIC):
                        raise zlib.error("trailing data after the gzip stream")
                    self._d = zlib.decompressobj(31)
                else:
                    data = self._raw.read(CHUNK)
                    if not data:
                        raise zlib.error("the gzip stream is truncated")
            out = self._d.decompress(data, max(n, 1))
            if out:
                return out
        return b""


class _Tar:
    """The uncompressed tar stream: hashes every byte (the diff_id)."""

    def __init__(self, raw: _Digesting, codec: str) -> None:
        self.hash = hashlib.sha256()
        self.size = 0
        self._inner: Any
        if codec == GZIP:
            self._inner = _Gunzip(raw)
        elif codec == ZSTD:
            import zstandard

            self._inner = zstandard.ZstdDecompressor().stream_reader(
                cast("IO[bytes]", raw), read_size=CHUNK, read_across_frames=True
            )
        else:
            self._inner = raw

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._inner.read(CHUNK if n is None or n < 0 else n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def codec_of(media_type: str, magic: bytes) -> str:
    """The compression of a layer: the magic bytes when they name one (containerd sniffs too:
    some registries label uncompressed layers +gzip), else what the media type says."""
    if magic.startswith(_GZIP_MAGIC):
        return GZIP
    if magic.startswith(_ZSTD_MAGIC):
        return ZSTD
    declared = _CODECS.get(media_type)
    if declared not in (None, PLAIN):
        log.debug(f"layer of type {media_type} is not {declared}-compressed: read as plain tar")
    return PLAIN


# -- tar members -----------------------------------------------------------------------------


def _open_tar(stream: _Tar, layer: str) -> tarfile.TarFile | None:
    try:
        return tarfile.open(
            fileobj=cast("IO[bytes]", stream),
            mode="r|",
            bufsize=TAR_BUFSIZE,
            encoding="utf-8",
            errors="surrogateescape",
        )
    except tarfile.ReadError as exc:
        if stream.size == 0:
            return None  # an empty stream: a layer with nothing in it (Go's tar reader agrees)
        raise LayerError(layer, "", f"not a tar archive: {exc}") from None


def _members(tf: tarfile.TarFile, layer: str) -> Iterator[tarfile.TarInfo]:
    """Every member, strictly: TarFile.next() silently stops at a corrupt or truncated header
    after the first member. Only a clean end counts: a zero block, or EOF right at a member
    boundary (missing end-of-archive blocks, missing last padding: CONTRACTS.md §3.7)."""
    info = tf.next()  # read by TarFile() itself, leniently; a failure there is at offset 0
    fileobj: Any = tf.fileobj
    while info is not None:
        yield info
        data_end = info.offset_data + info.size if info.isreg() and not info.sparse else 0
        if fileobj.tell() < tf.offset:
            fileobj.seek(tf.offset)  # skip unread data and padding (reads forward)
        reached = fileobj.tell()
        try:
            info = tarfile.TarInfo.fromtarfile(tf)
        except tarfile.HeaderError as exc:
            kind = type(exc).__name__
            if kind == "EOFHeaderError":
                return
            if kind == "EmptyHeaderError":
                if reached < data_end:
                    raise LayerError(layer, info.name, "truncated: its data is cut short") from None
                return
            raise LayerError(layer, "", f"corrupt tar header at offset {reached}: {exc}") from None


def clean_name(name: str) -> str:
    """A member name made relative to the root ("" is the root itself); raises ValueError for
    names that are absolute or leave the root once normalised."""
    if "\0" in name:
        raise ValueError("name contains NUL")
    if name.startswith("/"):
        raise ValueError("absolute path")
    norm = os.path.normpath(name) if name else "."
    if norm == ".." or norm.startswith("../"):
        raise ValueError("path leaves the root")
    return "" if norm == "." else norm


def _xattrs(info: tarfile.TarInfo) -> list[tuple[str, bytes]]:
    return [
        (key[len(_XATTR) :], value.encode("utf-8", "surrogateescape"))
        for key, value in info.pax_headers.items()
        if key.startswith(_XATTR)
    ]


def _ns(value: float) -> int:
    return round(value * 1_000_000_000)


class _Applier:
    """Applies the members of one layer."""

    def __init__(self, root: Root, layer: str, as_root: bool, overlay: bool = False) -> None:
        self.root = root
        self.layer = layer
        self.as_root = as_root
        self.overlay = overlay
        self.changes = whiteout.Changes()
        self.dirs: list[tuple[str, int, int, int]] = []  # (rel, mode, atime_ns, mtime_ns)
        self.skipped_xattrs: list[str] = []

    def fail(self, info: tarfile.TarInfo, reason: str) -> LayerError:
        return LayerError(self.layer, info.name, reason)

    def entry(self, tf: tarfile.TarFile, info: tarfile.TarInfo) -> None:
        try:
            rel = clean_name(info.name)
        except ValueError as exc:
            raise self.fail(info, f"refused: {exc}") from None
        parent, _, base = rel.rpartition("/")
        kind, target = whiteout.classify(base)
        self.root.trim()
        if kind == whiteout.INVALID:
            raise self.fail(info, f"refused: {target}")
        if kind == whiteout.WHITEOUT:
            if self.overlay:
                whiteout.overlay_whiteout(self.root, parent, target, self.changes)
            else:
                whiteout.apply_whiteout(self.root, parent, target, self.changes)
        elif kind == whiteout.OPAQUE_DIR:
            if self.overlay:
                whiteout.mark_opaque(self.root, parent, self.changes)
            else:
                whiteout.apply_opaque(self.root, parent, self.changes)
        elif kind == whiteout.NONE:
            if not rel:
                self._root_entry(info)
            else:
                self._make(tf, info, rel)

    def _root_entry(self, info: tarfile.TarInfo) -> None:
        if not info.isdir():
            raise self.fail(info, "refused: the root may only be a directory")
        if self.as_root:
            os.chown(self.root.path, info.uid, info.gid)
        self._defer_dir("", info)

    def _make(self, tf: tarfile.TarFile, info: tarfile.TarInfo, rel: str) -> None:
        if self.changes.whiteouts:
            whiteout.replace_whiteouts(self.root, rel, self.changes, is_dir=info.isdir())
        fd, name = self.root.parent(rel, create=True)
        assert fd is not None
        self.changes.add(rel)
        try:
            st: os.stat_result | None = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and not (info.isdir() and stat.S_ISDIR(st.st_mode)):
            if info.islnk() and self._link_target(info) == rel:
                return  # a hardlink to itself: already in place
            self.root.forget(rel)
            remove_at(fd, name)
            st = None
        if info.isreg():
            self._file(tf, info, fd, name)
        elif info.isdir():
            if st is None:
                os.mkdir(name, 0o700, dir_fd=fd)
            self._owner(fd, name, info)
            self._set_xattrs(info, fd, name)
            self._defer_dir(rel, info)
        elif info.issym():
            os.symlink(info.linkname, name, dir_fd=fd)
            self._owner(fd, name, info)
            self._set_xattrs(info, fd, name)
            os.utime(name, ns=self._times(info), dir_fd=fd, follow_symlinks=False)
        elif info.islnk():
            self._hardlink(info, fd, name)
        elif info.ischr() or info.isblk() or info.isfifo():
            self._node(info, fd, name)
        else:
            raise self.fail(info, f"unsupported tar entry type {info.type!r}")

    def _times(self, info: tarfile.TarInfo) -> tuple[int, int]:
        mtime = _ns(info.mtime)
        atime = info.pax_headers.get("atime")
        try:
            return (_ns(float(atime)) if atime else mtime), mtime
        except ValueError:
            return mtime, mtime

    def _owner(self, fd: int, name: str, info: tarfile.TarInfo) -> None:
        if self.as_root:
            os.chown(name, info.uid, info.gid, dir_fd=fd, follow_symlinks=False)

    def _file(self, tf: tarfile.TarFile, info: tarfile.TarInfo, fd: int, name: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        out = os.open(name, flags, 0o600, dir_fd=fd)
        try:
            source = tf.extractfile(info)
            if source is not None:
                try:
                    while chunk := source.read(CHUNK):
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(out, view) :]
                except tarfile.ReadError as exc:
                    raise self.fail(info, f"truncated: {exc}") from None
            if self.as_root:
                os.fchown(out, info.uid, info.gid)
            os.fchmod(out, info.mode & 0o7777)  # after chown, which clears setuid bits
            for key, value in _xattrs(info):
                self._xattr(info, key, value, out)
            os.utime(out, ns=self._times(info))
        finally:
            os.close(out)

    def _hardlink(self, info: tarfile.TarInfo, fd: int, name: str) -> None:
        target = self._link_target(info)
        if not target:
            raise self.fail(info, "refused: hardlink to the root")
        try:
            tfd, tname = self.root.parent(target)
        except UnsafePath as exc:
            raise self.fail(info, f"refused: hardlink target {exc}") from None
        if tfd is None:
            raise self.fail(info, f"hardlink target {info.linkname!r} does not exist")
        try:
            os.link(tname, name, src_dir_fd=tfd, dst_dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            raise self.fail(info, f"hardlink target {info.linkname!r} does not exist") from None
        except PermissionError:
            raise self.fail(info, f"hardlink target {info.linkname!r} is a directory") from None

    def _link_target(self, info: tarfile.TarInfo) -> str:
        try:
            return clean_name(info.linkname)
        except ValueError as exc:
            raise self.fail(info, f"refused: hardlink to {info.linkname!r}: {exc}") from None

    def _node(self, info: tarfile.TarInfo, fd: int, name: str) -> None:
        mode = info.mode & 0o7777
        if info.isfifo():
            os.mknod(name, stat.S_IFIFO | 0o600, dir_fd=fd)
        else:
            if not self.as_root:
                raise self.fail(info, "refused: device nodes can only be made as root")
            kind = stat.S_IFCHR if info.ischr() else stat.S_IFBLK
            device = os.makedev(info.devmajor, info.devminor)
            os.mknod(name, kind | 0o600, device, dir_fd=fd)
        self._owner(fd, name, info)
        os.chmod(name, mode, dir_fd=fd)  # just made here: not a symlink
        self._set_xattrs(info, fd, name)
        os.utime(name, ns=self._times(info), dir_fd=fd, follow_symlinks=False)

    def _set_xattrs(self, info: tarfile.TarInfo, fd: int, name: str) -> None:
        path = f"/proc/self/fd/{fd}/{name}"  # the parent by fd, the entry itself not followed
        for key, value in _xattrs(info):
            self._xattr(info, key, value, path)

    def _xattr(self, info: tarfile.TarInfo, key: str, value: bytes, target: int | str) -> None:
        if self.overlay and key.startswith(whiteout.OVERLAY_XATTR_PREFIX):
            self.skipped_xattrs.append(f"{info.name}: {key} (overlayfs would obey it)")
            return
        try:
            if isinstance(target, int):
                os.setxattr(target, key, value)
            else:
                os.setxattr(target, key, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in _XATTR_SOFT_ERRNOS:
                raise self.fail(info, f"xattr {key}: {exc.strerror}") from None
            self.skipped_xattrs.append(f"{info.name}: {key} ({exc.strerror})")

    def _defer_dir(self, rel: str, info: tarfile.TarInfo) -> None:
        self.dirs.append((rel, info.mode & 0o7777, *self._times(info)))

    def finish(self) -> None:
        """Directory modes and times, deepest first, once no child will be added."""
        self.root.forget("")
        for rel, mode, atime, mtime in sorted(self.dirs, key=lambda d: -d[0].count("/")):
            if not rel:
                os.chmod(self.root.path, mode)
                os.utime(self.root.path, ns=(atime, mtime))
                continue
            fd, name = self.root.parent(rel)
            if fd is None:
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):  # not replaced by a later entry of the layer
                os.chmod(name, mode, dir_fd=fd)
                os.utime(name, ns=(atime, mtime), dir_fd=fd, follow_symlinks=False)
            self.root.trim()
        if self.skipped_xattrs:
            log.warning(
                f"layer {self.layer}: {len(self.skipped_xattrs)} xattr(s) not supported here, "
                f"skipped (first: {self.skipped_xattrs[0]})"
            )


# -- layers ----------------------------------------------------------------------------------


def apply_layer(
    root: Root, blob: BinaryIO, layer: Layer, *, as_root: bool, overlay: bool = False
) -> None:
    """Apply one layer to the directory ``root`` and verify its digest and diff_id.

    ``overlay``: ``root`` is the layer's own empty directory and whiteouts are kept in overlayfs
    form (0/0 character devices, ``trusted.overlay.opaque``; see `whiteout`) instead of being
    applied by deletion. Needs root (the xattr is in the trusted namespace).

    On error the directory is left half-changed: callers apply to a copy they can discard.
    """
    raw = _Digesting(blob)
    stream = _Tar(raw, codec_of(layer.media_type, raw.peek(4)))
    applier = _Applier(root, layer.digest, as_root, overlay)
    try:
        tf = _open_tar(stream, layer.digest)
        if tf is not None:
            for info in _members(tf, layer.digest):
                try:
                    applier.entry(tf, info)
                except UnsafePath as exc:
                    raise applier.fail(info, f"refused: {exc}") from None
                except OSError as exc:
                    raise applier.fail(info, exc.strerror or str(exc)) from None
        applier.finish()
        stream.drain()  # trailing blocks count in the diff_id
        raw.drain()
    except (zlib.error, EOFError) as exc:
        raise LayerError(layer.digest, "", f"corrupt compressed stream: {exc}") from None
    except tarfile.TarError as exc:
        raise LayerError(layer.digest, "", f"corrupt tar stream: {exc}") from None
    except Exception as exc:
        if type(exc).__name__ == "ZstdError":
            raise LayerError(layer.digest, "", f"corrupt zstd stream: {exc}") from None
        raise
    _verify(layer, raw, stream)


def _verify(layer: Layer, raw: _Digesting, stream: _Tar) -> None:
    if layer.size is not None and raw.size != layer.size:
        raise ContentMismatch(f"layer {layer.digest}", "size", str(layer.size), str(raw.size))
    digest = "sha256:" + raw.hash.hexdigest()
    if layer.digest.startswith("sha256:") and digest != layer.digest:
        raise ContentMismatch(f"layer {layer.digest}", "digest", layer.digest, digest)
    diff_id = "sha256:" + stream.hash.hexdigest()
    if layer.diff_id is not None and diff_id != layer.diff_id:
        raise ContentMismatch(
            f"layer {layer.digest} (uncompressed, diff_id)", "digest", layer.diff_id, diff_id
        )


def unpack_layers(layers: Sequence[Layer], dest: str, *, as_root: bool | None = None) -> None:
    """Build a root filesystem at ``dest`` (which must not exist) from ``layers``, base first.

    Built in ``<dest>.tmp-<pid>`` and renamed into place; removed on any error.
    """
    dest = os.path.abspath(dest)
    if os.path.lexists(dest):
        raise UnsafePath(dest, "already exists: refusing to unpack over it")
    privileged = os.geteuid() == 0 if as_root is None else as_root
    tmp = f"{dest}.tmp-{os.getpid()}"
    remove_path(tmp)  # left by a crashed unpack whose pid we reuse
    os.mkdir(tmp, 0o755)
    try:
        with Root(tmp, clamp=False) as root:
            for layer in layers:
                log.debug(f"applying layer {layer.digest} ({layer.media_type})")
                with layer.open() as blob:
                    apply_layer(root, blob, layer, as_root=privileged)
        os.rename(tmp, dest)
    except BaseException:
        try:
            remove_path(tmp)
        except OSError as cleanup:
            log.warning(f"cannot remove the partial rootfs {tmp}: {cleanup}")
        raise


def image_layers(store: ImageStore, record: ImageRecord) -> list[Layer]:
    """The layers of a stored image, paired with their diff_ids by position."""
    if len(record.diff_ids) != len(record.layers):
        raise LayerError(
            record.manifest_digest,
            "",
            f"{len(record.diff_ids)} diff_ids for {len(record.layers)} layers",
        )
    return [
        Layer(
            d.digest,
            d.media_type,
            diff_id,
            partial(store.open_blob, d.digest),
            d.size,
        )
        for d, diff_id in zip(record.layers, record.diff_ids, strict=True)
    ]


def unpack_image(
    store: ImageStore, record: ImageRecord, dest: str, *, as_root: bool | None = None
) -> None:
    """The image's root filesystem at ``dest`` (flat: every layer applied in order)."""
    unpack_layers(image_layers(store, record), dest, as_root=as_root)
