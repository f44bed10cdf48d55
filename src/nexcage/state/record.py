"""A container's state record and its statuses.

The record stores facts (pid, its start time, whether ``start`` ran); the *status* is derived from
them on every read (``ops.lifecycle.status_of``), never trusted from the file alone.
"""

from __future__ import annotations

from nexcage.errors import StateCorrupt

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

# The four statuses engines accept (CONTRACTS.md §1.14): podman rejects anything else, so the
# spec's "creating" is never emitted.
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"
STATUSES = (CREATED, RUNNING, PAUSED, STOPPED)


def can_start(status: str) -> bool:
    return status == CREATED


def can_kill(status: str) -> bool:
    # runc signals created, running and paused containers (a paused one is thawed by SIGKILL).
    return status != STOPPED


def can_delete(status: str) -> bool:
    # runc and crun delete a created container (kill + destroy); the spec says it must fail.
    return status in (CREATED, STOPPED)


def can_exec(status: str) -> bool:
    return status in (CREATED, RUNNING)


def can_pause(status: str) -> bool:
    return status in (CREATED, RUNNING)


FORMAT = 1


class Record:
    """What nexcage knows about one container; serialised to ``<root>/<id>/state.json``."""

    __slots__ = (
        "annotations",
        "backend",
        "backend_bundle",
        "backend_config",
        "bundle",
        "created",
        "id",
        "monitor_pid",
        "oci_version",
        "owned",
        "owner",
        "pid",
        "pid_start",
        "process",
        "rootfs",
        "started",
    )

    def __init__(
        self,
        id: str,
        backend: str,
        bundle: str,
        rootfs: str,
        created: str,
        *,
        oci_version: str = "",
        annotations: dict[str, str] | None = None,
        pid: int = 0,
        pid_start: int | None = None,
        started: bool = False,
        owner: str = "",
        backend_bundle: str = "",
        backend_config: str = "",
        process: dict[str, Any] | None = None,
        owned: list[str] | None = None,
        monitor_pid: int = 0,
    ) -> None:
        self.id = id
        self.backend = backend
        self.bundle = bundle
        self.rootfs = rootfs
        self.created = created
        self.oci_version = oci_version
        self.annotations = annotations or {}
        self.pid = pid
        self.pid_start = pid_start
        self.started = started
        self.owner = owner
        # The bundle directory and config file handed to the backend: the user's own, or a derived
        # copy under the state dir when the backend needs another ociVersion (never rewritten).
        self.backend_bundle = backend_bundle or bundle
        self.backend_config = backend_config
        # config.json's process as it was at create: exec starts from it (runc keeps the whole
        # config in its state; later edits to the bundle must not affect the container).
        self.process = process or {}
        # Paths made for this container and removed with it (the rootfs prepared for
        # `create --image` under the data root). Records without the key own nothing.
        self.owned = owned or []
        # The process engines were given in --pid-file and reap (backend.waited_pid) when it is
        # not the init itself: LXC's monitor. 0: the init pid is the one.
        self.monitor_pid = monitor_pid

    def to_json(self) -> dict[str, Any]:
        doc = {
            "format": FORMAT,
            "id": self.id,
            "backend": self.backend,
            "bundle": self.bundle,
            "rootfs": self.rootfs,
            "created": self.created,
            "ociVersion": self.oci_version,
            "annotations": self.annotations,
            "pid": self.pid,
            "pidStart": self.pid_start,
            "started": self.started,
            "owner": self.owner,
            "backendBundle": self.backend_bundle,
            "backendConfig": self.backend_config,
            "process": self.process,
        }
        if self.owned:
            doc["owned"] = self.owned
        if self.monitor_pid:
            doc["monitorPid"] = self.monitor_pid
        return doc

    @classmethod
    def from_json(cls, raw: object, path: str) -> Record:
        if not isinstance(raw, dict):
            raise StateCorrupt(path, "not a JSON object")

        def get(key: str, kind: type, default: Any = None, *, required: bool = False) -> Any:
            if key not in raw:
                if required:
                    raise StateCorrupt(path, f"missing {key}")
                return default
            value = raw[key]
            if value is None and not required:
                return default
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise StateCorrupt(path, f"{key} is not a {kind.__name__}")
            return value

        annotations = get("annotations", dict, {})
        owned = get("owned", list, [])
        if not all(isinstance(p, str) and p.startswith("/") for p in owned):
            raise StateCorrupt(path, "owned must list absolute paths")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items()):
            raise StateCorrupt(path, "annotations must map strings to strings")
        return cls(
            get("id", str, required=True),
            get("backend", str, required=True),
            get("bundle", str, required=True),
            get("rootfs", str, ""),
            get("created", str, ""),
            oci_version=get("ociVersion", str, ""),
            annotations=annotations,
            pid=get("pid", int, 0),
            pid_start=get("pidStart", int, None),
            started=get("started", bool, False),
            owner=get("owner", str, ""),
            backend_bundle=get("backendBundle", str, ""),
            backend_config=get("backendConfig", str, ""),
            process=get("process", dict, {}),
            owned=owned,
            monitor_pid=get("monitorPid", int, 0),
        )
