"""Writing blobs into the store: verified streaming writes and the garbage-collection lease.

See `nexcage.image.store` for the layout. A `BlobWriter` owns ``ingest/<hex>.partial`` through an
``flock`` on it, hashes what it writes, and renames the file into ``blobs/sha256/`` only when the
size and sha256 match the descriptor.
"""

from __future__ import annotations

import fcntl
import hashlib
import os

from nexcage.errors import ContentMismatch
from nexcage.host.fs import fsync_dir
from nexcage.image.reference import check_digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nexcage.image.store import ImageStore

CHUNK = 1 << 20


def blob_hex(digest: str) -> str:
    """The hex part of a ``sha256:`` digest, refusing anything else (it becomes a file name)."""
    return check_digest(digest, digest).split(":", 1)[1]


class BlobWriter:
    """Stream one blob into the store; verify size and digest; publish atomically.

    ``with store.writer(digest, size) as w:`` then, unless ``w.complete`` (the blob is already
    stored: write nothing), ``w.write(chunk)`` from offset ``w.offset`` (> 0 when resuming a
    partial download: fetch from there, or call ``w.reset()`` to start over). Leaving the block
    normally commits (or call ``w.commit()``); an exception leaves the partial file for a resume,
    except after a digest mismatch or an overrun, which delete it.
    """

    def __init__(self, store: ImageStore, digest: str, size: int | None) -> None:
        self.digest = digest
        self.size = size
        self._hex = blob_hex(digest)
        self._store = store
        self._partial = os.path.join(store.ingest_dir, self._hex + ".partial")
        self._fd = -1
        self._hash = hashlib.sha256()
        self.offset = 0
        self.complete = False

    def __enter__(self) -> BlobWriter:
        self._store.ensure_dirs()
        self._fd = self._open_partial()
        if self._fd >= 0:
            try:
                self._rehash()
            except BaseException:
                self._close()
                raise
        return self

    def _open_partial(self) -> int:
        blob = self._store.path_of(self.digest)
        while True:
            if os.path.exists(blob):
                self.complete = True
                return -1
            fd = os.open(self._partial, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # The holder we waited for may have published (renamed) or deleted this inode.
                if os.stat(self._partial).st_ino == os.fstat(fd).st_ino:
                    if not os.path.exists(blob):
                        return fd
                    self.complete = True
                    os.close(fd)
                    return -1
            except FileNotFoundError:
                pass
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)

    def _rehash(self) -> None:
        """Hash what an earlier attempt left, so the digest covers the whole blob."""
        length = os.fstat(self._fd).st_size
        if self.size is not None and length > self.size:
            length = 0
        os.ftruncate(self._fd, length)
        os.lseek(self._fd, 0, os.SEEK_SET)
        done = 0
        while done < length:
            block = os.read(self._fd, min(CHUNK, length - done))
            if not block:
                break
            self._hash.update(block)
            done += len(block)
        self.offset = done
        os.ftruncate(self._fd, done)
        os.lseek(self._fd, done, os.SEEK_SET)

    def reset(self) -> None:
        """Discard what was written (the server ignored a Range request)."""
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        self._hash = hashlib.sha256()
        self.offset = 0

    def write(self, data: bytes) -> None:
        if self.complete:
            raise ValueError("blob already stored: nothing to write")
        self.offset += len(data)
        if self.size is not None and self.offset > self.size:
            self._discard()
            raise ContentMismatch(self.digest, "size", str(self.size), f"more than {self.size}")
        self._hash.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def commit(self) -> None:
        """Verify and publish. A short blob keeps its partial file (resume); a wrong digest
        deletes it. Either way nothing appears in ``blobs/``."""
        if self.complete:
            return
        if self.size is not None and self.offset != self.size:
            raise ContentMismatch(self.digest, "size", str(self.size), str(self.offset))
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self.digest:
            self._discard()
            raise ContentMismatch(self.digest, "digest", self.digest, actual)
        os.fsync(self._fd)
        os.fchmod(self._fd, 0o444)
        os.rename(self._partial, self._store.path_of(self.digest))
        fsync_dir(self._store.blob_dir)
        self.complete = True
        self._close()

    def _discard(self) -> None:
        try:
            os.unlink(self._partial)
        except FileNotFoundError:
            pass
        self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # drops the flock
            self._fd = -1

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            if exc_type is None and not self.complete:
                self.commit()
        finally:
            self._close()


class Lease:
    """A shared flock on ``gc.lock``: blobs written meanwhile survive a concurrent prune."""

    def __init__(self, path: str, *, shared: bool, blocking: bool = True) -> None:
        self.path = path
        self.fd = -1
        self.acquired = False
        self._op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)

    def __enter__(self) -> Lease:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.fd, self._op)
            self.acquired = True
        except BlockingIOError:
            self.acquired = False
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
