"""The state store: ``<root>/<id>/state.json`` per container, one flock per container.

Ids are validated before anything touches the disk (runc ``validateID``): non-empty, only
``[0-9A-Za-z_+.-]``, not ``.``/``..``, at most 255 bytes: the id names a directory here and in
the backend's root, and NAME_MAX is 255 (runc has no bound of its own and fails later).
Backends keep their own state in ``<root>/.backends/<name>``; ids starting with ``.`` are
refused so no id can name it.
"""

from __future__ import annotations

import os

from nexcage import fastjson
from nexcage.errors import ContainerNotFound, InvalidContainerID, StateCorrupt
from nexcage.host import fs
from nexcage.state.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_ID_LEN = 255
_ID_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_+.-")
BACKENDS_DIR = ".backends"
STATE_FILE = "state.json"
LOCK_FILE = ".lock"


def validate_id(container_id: str) -> str:
    if not container_id:
        raise InvalidContainerID(container_id, "empty")
    if len(container_id) > MAX_ID_LEN:
        raise InvalidContainerID(container_id, f"longer than {MAX_ID_LEN} characters")
    bad = set(container_id) - _ID_CHARS
    if bad:
        shown = "".join(sorted(bad))[:10]
        raise InvalidContainerID(container_id, f"characters {shown!r} not allowed")
    if container_id in (".", ".."):
        raise InvalidContainerID(container_id, "not a clean path")
    if container_id.startswith("."):
        # Reserved for nexcage's own entries in the state root (.backends, temp files).
        raise InvalidContainerID(container_id, "must not start with '.'")
    return container_id


class Store:
    __slots__ = ("root",)

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def dir(self, container_id: str) -> str:
        return os.path.join(self.root, validate_id(container_id))

    def backend_root(self, name: str) -> str:
        return os.path.join(self.root, BACKENDS_DIR, name)

    def lock(self, container_id: str) -> fs.Lock:
        """Lock an existing container's record (ContainerNotFound if there is none)."""
        d = self.dir(container_id)
        if not os.path.isdir(d):
            raise ContainerNotFound(container_id)
        return fs.Lock(os.path.join(d, LOCK_FILE))

    def reserve(self, container_id: str) -> fs.Lock | None:
        """Make the container's directory for a create; None if the id is taken.

        A directory left by an aborted create (no state.json, lock free) is taken over, as runc
        does with a state dir that has no state.json.
        """
        d = self.dir(container_id)
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            os.mkdir(d, 0o711)
        except FileExistsError:
            if os.path.exists(os.path.join(d, STATE_FILE)):
                return None
        lock = fs.Lock(os.path.join(d, LOCK_FILE))
        lock.__enter__()
        if os.path.exists(os.path.join(d, STATE_FILE)):
            lock.__exit__(None, None, None)
            return None  # another create won the race
        return lock

    def exists(self, container_id: str) -> bool:
        return os.path.exists(os.path.join(self.dir(container_id), STATE_FILE))

    def load(self, container_id: str) -> Record:
        path = os.path.join(self.dir(container_id), STATE_FILE)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ContainerNotFound(container_id) from None
        return self._parse(data, path)

    @staticmethod
    def _parse(data: bytes, path: str) -> Record:
        try:
            raw = fastjson.loads(data)
        except ValueError as exc:
            raise StateCorrupt(path, str(exc)) from None
        return Record.from_json(raw, path)

    def save(self, record: Record) -> None:
        path = os.path.join(self.dir(record.id), STATE_FILE)
        fs.atomic_write(path, fastjson.dumps(record.to_json()).encode(), 0o600)

    def remove(self, container_id: str) -> None:
        fs.remove_tree(self.dir(container_id))

    def ids(self) -> list[str]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []  # runc: a missing root lists nothing
        return sorted(n for n in names if not n.startswith(".") and self._is_container(n))

    def _is_container(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self.root, name, STATE_FILE))

    def records(self) -> Iterator[tuple[str, Record | StateCorrupt]]:
        """Every record; a corrupt one is yielded as its error so the rest can still be listed."""
        for container_id in self.ids():
            try:
                yield container_id, self.load(container_id)
            except StateCorrupt as exc:
                yield container_id, exc
            except ContainerNotFound:
                continue  # deleted while we listed
