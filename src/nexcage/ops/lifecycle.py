"""Container lifecycle: create, start, state, kill, delete, pause, resume, list.

Every verb loads the record, derives the status from live facts (``status_of``), checks the verb
is allowed (``state.record.can_*``) and hands the work to the backend recorded at create.
Messages reuse runc's wording (CONTRACTS.md §1.6-§1.11, §1.18).
"""

from __future__ import annotations

import os
import time

from nexcage import OCI_VERSION
from nexcage.errors import (
    BundleError,
    ContainerExists,
    ContainerNotFound,
    InvalidState,
    NexcageError,
    StateCorrupt,
    Unsupported,
    UsageError,
)
from nexcage.host import fs, proc
from nexcage.state import record as st
from nexcage.state.record import Record
from nexcage.state.store import validate_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nexcage.backends.base import Backend
    from nexcage.ops.context import Context
    from nexcage.ops.image_bundle import ImageSource

CONFIG = "config.json"
PID_FILE = "init.pid"


def now_rfc3339() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + (
        f".{ns % 1_000_000_000:09d}Z"
    )


def status_of(rec: Record) -> str:
    """Derive the status from live facts; the record's own fields are never trusted alone."""
    if rec.pid <= 0 or not proc.alive(rec.pid, rec.pid_start):
        return st.STOPPED
    from nexcage.host import cgroups

    if cgroups.is_frozen(rec.pid):
        return st.PAUSED
    return st.RUNNING if rec.started else st.CREATED


def state_json(rec: Record, status: str, owner: str = "") -> dict[str, Any]:
    """The OCI state object with runc's field names (CONTRACTS.md §1.14)."""
    out: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "id": rec.id,
        "pid": rec.pid if status != st.STOPPED else 0,
        "status": status,
        "bundle": rec.bundle,
        "rootfs": rec.rootfs,
        "created": rec.created,
        "owner": owner,
    }
    if rec.annotations:
        out["annotations"] = rec.annotations
    return out


# -- create ---------------------------------------------------------------------------------------


class Bundle:
    """A bundle as read at create: the raw config.json (patched copies derive from it)."""

    __slots__ = ("config_path", "dir", "raw", "rootfs", "terminal")

    def __init__(self, directory: str, raw: dict[str, Any], rootfs: str, terminal: bool) -> None:
        self.dir = directory
        self.config_path = os.path.join(directory, CONFIG)
        self.raw = raw
        self.rootfs = rootfs
        self.terminal = terminal


def load_bundle(bundle: str) -> Bundle:
    directory = os.path.abspath(bundle)
    if not os.path.isdir(directory):
        raise BundleError(directory, f"bundle {directory}: no such file or directory")
    config_path = os.path.join(directory, CONFIG)
    from nexcage.spec.config import read_config
    from nexcage.spec.validate import check_config

    try:
        raw = read_config(config_path)
    except FileNotFoundError:
        raise BundleError(config_path, f"{config_path}: no such file or directory") from None
    except IsADirectoryError:
        raise BundleError(config_path, f"{config_path}: is a directory") from None
    check_config(raw, config_path)
    root = raw.get("root") or {}
    root_path = root.get("path", "") if isinstance(root, dict) else ""
    rootfs = os.path.normpath(os.path.join(directory, root_path))
    if not os.path.isdir(rootfs):
        raise BundleError(rootfs, f"rootfs {rootfs}: no such file or directory")
    process = raw.get("process")
    terminal = bool(process.get("terminal")) if isinstance(process, dict) else False
    return Bundle(directory, raw, rootfs, terminal)


def check_terminal(terminal: bool, console_socket: str | None, detached: bool) -> None:
    # runc checkTerminal (utils_linux.go); engines know these messages.
    if detached and terminal and not console_socket:
        raise UsageError("cannot allocate tty if runc will detach without setting console socket")
    if console_socket and not terminal:
        raise UsageError("cannot use console socket if runc will not detach or allocate tty")


def _negotiate(backend: Backend, bundle: Bundle, state_dir: str) -> tuple[str, str | None]:
    """Return (bundle dir, config file or None) to hand the backend for this bundle.

    A backend that rejects the bundle's ociVersion (crun 1.8: anything without "1.0") gets a
    derived config.json under nexcage's state dir; the user's file is never rewritten. A config
    using a field newer than the backend implements never gets here: ``Backend.check`` refuses
    it, naming the field.
    """
    version = str(bundle.raw.get("ociVersion", ""))
    if backend.accepts_version(version):
        return bundle.dir, None
    # Newer fields were already refused by backend.check(): only the version string changes.
    from nexcage import fastjson
    from nexcage.spec.versions import derive_for

    target = backend.negotiated_version()
    derived = derive_for(bundle.raw, target)
    if getattr(getattr(backend, "profile", None), "config_flag", None):
        path = os.path.join(state_dir, CONFIG)
        fs.atomic_write(path, fastjson.dumps(derived).encode(), 0o600)
        return bundle.dir, path
    # No config flag: a derived bundle dir whose config points at the user's rootfs and bind
    # sources by absolute path (relative ones resolve against the bundle, runc setupSpec).
    derived_dir = os.path.join(state_dir, "bundle")
    os.makedirs(derived_dir, mode=0o700, exist_ok=True)
    root = dict(derived.get("root") or {})
    root["path"] = bundle.rootfs
    derived["root"] = root
    mounts = []
    for mount in derived.get("mounts") or []:
        src = mount.get("source") if isinstance(mount, dict) else None
        local = os.path.join(bundle.dir, src) if isinstance(src, str) else ""
        if local and not src.startswith("/") and os.path.exists(local):  # type: ignore[union-attr]
            mounts.append({**mount, "source": local})
        else:
            mounts.append(mount)
    if mounts:
        derived["mounts"] = mounts
    fs.atomic_write(os.path.join(derived_dir, CONFIG), fastjson.dumps(derived).encode(), 0o600)
    return derived_dir, None


class CreateOptions:
    """runc's create flags (CONTRACTS.md §1.5); paths made absolute against the caller's cwd."""

    __slots__ = ("console_socket", "no_new_keyring", "no_pivot", "pid_file", "preserve_fds")

    def __init__(
        self,
        *,
        pid_file: str | None = None,
        console_socket: str | None = None,
        preserve_fds: int = 0,
        no_pivot: bool = False,
        no_new_keyring: bool = False,
    ) -> None:
        self.pid_file = os.path.abspath(pid_file) if pid_file else None
        self.console_socket = os.path.abspath(console_socket) if console_socket else None
        self.preserve_fds = preserve_fds
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring


def create(
    ctx: Context,
    container_id: str,
    bundle_path: str,
    opts: CreateOptions,
    *,
    detached: bool = True,
    image: ImageSource | None = None,
) -> Record:
    """Create a container from the bundle at ``bundle_path``, or, with ``image``
    (``create --image``), from a bundle that ``image.prepare`` builds once the id is reserved
    (so no other create of the same id builds the same directory). What ``prepare`` made is
    recorded as owned: ``delete`` and a failed create remove it."""
    validate_id(container_id)
    lock = None
    owned: list[str] = []
    if image is not None:
        lock = ctx.store.reserve(container_id)
        if lock is None:
            raise ContainerExists(container_id)
        try:
            bundle_path, owned = image.prepare(ctx, container_id)
        except BaseException:
            _abandon(ctx, container_id, owned, lock)
            raise
    try:
        bundle = load_bundle(bundle_path)
        check_terminal(bundle.terminal, opts.console_socket, detached)
        annotations = _annotations(bundle.raw)
        from nexcage.ops import route

        name, _why = route.choose(ctx, container_id, annotations)
        backend = ctx.backend(name)
        findings = backend.check(bundle.raw)
        if findings:
            raise Unsupported(name, findings)
    except BaseException:
        if lock is not None:
            _abandon(ctx, container_id, owned, lock)
        raise
    if lock is None:
        lock = ctx.store.reserve(container_id)
        if lock is None:
            raise ContainerExists(container_id)
    state_dir = ctx.store.dir(container_id)
    try:
        backend_bundle, backend_config = _negotiate(backend, bundle, state_dir)
        pid_path = os.path.join(state_dir, PID_FILE)
        backend.create(
            container_id,
            backend_bundle,
            config=backend_config,
            pid_file=pid_path,
            console_socket=opts.console_socket,
            preserve_fds=opts.preserve_fds,
            no_pivot=opts.no_pivot,
            no_new_keyring=opts.no_new_keyring,
        )
        pid = _read_pid(pid_path)
        waited = backend.waited_pid(container_id, pid)
        rec = Record(
            container_id,
            name,
            bundle.dir,
            bundle.rootfs,
            now_rfc3339(),
            oci_version=str(bundle.raw.get("ociVersion", "")),
            annotations=annotations,
            pid=pid,
            pid_start=proc.start_time(pid),
            backend_bundle=backend_bundle,
            backend_config=backend_config or "",
            process=process if isinstance(process := bundle.raw.get("process"), dict) else None,
            owned=owned,
            monitor_pid=waited if waited != pid else 0,
        )
        ctx.store.save(rec)
        if opts.pid_file:
            fs.write_pid_file(opts.pid_file, waited)
    except BaseException as exc:
        _undo_create(backend, container_id, ctx, exc)
        remove_owned(owned)
        raise
    finally:
        lock.__exit__(None, None, None)
    return rec


def _abandon(ctx: Context, container_id: str, owned: list[str], lock: fs.Lock) -> None:
    """Undo a reservation made for ``create --image`` (nothing reached the backend yet)."""
    try:
        remove_owned(owned)
        ctx.store.remove(container_id)
    finally:
        lock.__exit__(None, None, None)


STORAGE_MARKER = ".nexcage-storage"  # ops.storage.MARKER: the driver holding the rootfs


def remove_owned(paths: list[str]) -> None:
    """Remove what a container owns (its image bundle; the rootfs a storage driver made for it,
    named by the marker in that bundle); a failure is logged, never raised: it must not keep a
    container from being deleted, nor mask a create's error."""
    if not paths:
        return
    from nexcage import log
    from nexcage.image.rootfs import remove_path  # iterative: a hostile tree can be deep

    for path in paths:
        if not os.path.isabs(path) or os.path.normpath(path).count("/") < 2:
            log.warning(f"not removing {path!r}: not a path nexcage makes")
            continue
        if os.path.exists(os.path.join(path, STORAGE_MARKER)):
            from nexcage.ops import storage  # only image containers pay for the import

            storage.release_rootfs(path)
        try:
            remove_path(path)
        except OSError as exc:
            log.warning(f"cannot remove {path}: {exc}")


def _undo_create(backend: Backend, container_id: str, ctx: Context, exc: BaseException) -> None:
    """A failed create leaves nothing behind; a cleanup failure never masks the cause."""
    from nexcage import log

    if not isinstance(exc, Unsupported):
        try:
            backend.delete(container_id, force=True)
        except (NexcageError, OSError) as cleanup:
            if not isinstance(cleanup, ContainerNotFound):
                log.debug(f"cleanup after failed create: {cleanup}")
    try:
        ctx.store.remove(container_id)
    except OSError as cleanup:
        log.warning(f"cleanup after failed create: {cleanup}")


def _remove_aborted_bundle(ctx: Context, container_id: str) -> None:
    """The bundle (and storage rootfs) of ``create --image`` whose process died before saving
    the record: ``<data_root>/containers/<id>`` when its owner marker names our state root."""
    bundle = os.path.join(ctx.settings.data_root, "containers", container_id)
    try:
        owner = fs.read_text(os.path.join(bundle, ".nexcage-owner")).strip()
    except (FileNotFoundError, NotADirectoryError):
        return
    if owner == ctx.store.root:
        remove_owned([bundle])


def _annotations(raw: dict[str, Any]) -> dict[str, str]:
    value = raw.get("annotations")
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _read_pid(path: str) -> int:
    try:
        text = fs.read_text(path).strip()
    except FileNotFoundError:
        raise NexcageError(f"backend did not write the pid file {path}") from None
    if not text.isdigit():
        raise NexcageError(f"backend wrote an invalid pid file {path}: {text[:40]!r}")
    return int(text)


# -- verbs on an existing container ----------------------------------------------------------------


def load(ctx: Context, container_id: str) -> tuple[Record, str]:
    rec = ctx.store.load(container_id)
    return rec, status_of(rec)


def state(ctx: Context, container_id: str) -> dict[str, Any]:
    rec, status = load(ctx, container_id)
    return state_json(rec, status)


def start(ctx: Context, container_id: str) -> None:
    with ctx.store.lock(container_id):
        rec, status = load(ctx, container_id)
        if not st.can_start(status):
            raise InvalidState(container_id, status, _START_ERRORS[status])
        ctx.backend(rec.backend).start(container_id)
        rec.started = True
        ctx.store.save(rec)


_START_ERRORS = {
    st.STOPPED: "cannot start a container that has stopped",
    st.RUNNING: "cannot start an already running container",
    st.PAUSED: "cannot start a paused container",
}


def kill(ctx: Context, container_id: str, signum: int, *, all_processes: bool = False) -> None:
    rec, status = load(ctx, container_id)
    if not st.can_kill(status):
        if all_processes:
            return  # runc: --all suppresses "container not running"
        # runc refuses to signal a pid that may have been reused (CONTRACTS.md §1.8).
        raise InvalidState(container_id, status, "container not running")
    ctx.backend(rec.backend).kill(container_id, signum, all_processes=all_processes)


def delete(ctx: Context, container_id: str, *, force: bool = False) -> None:
    directory = ctx.store.dir(container_id)
    if not os.path.isdir(directory):
        raise ContainerNotFound(container_id)
    with ctx.store.lock(container_id):
        try:
            rec, status = load(ctx, container_id)
        except ContainerNotFound:
            # A state dir without state.json is an aborted create: runc removes it, and with it
            # whatever `create --image` had made for it before it died.
            _remove_aborted_bundle(ctx, container_id)
            ctx.store.remove(container_id)
            if force:
                return
            raise
        except StateCorrupt:
            if not force:
                raise
            ctx.store.remove(container_id)
            return
        if status in (st.RUNNING, st.PAUSED) and not force:
            raise InvalidState(
                container_id,
                status,
                f"cannot delete container {container_id} that is not stopped: {status}",
            )
        backend = ctx.backend(rec.backend)
        try:
            # runc and crun kill and delete a created container; the spec says it must fail.
            backend.delete(container_id, force=force or status != st.STOPPED)
        except ContainerNotFound:
            pass  # the backend already forgot it (its state lives on tmpfs too)
        remove_owned(rec.owned)
        ctx.store.remove(container_id)


def pause(ctx: Context, container_id: str) -> None:
    rec, status = load(ctx, container_id)
    if not st.can_pause(status):
        raise InvalidState(container_id, status, _not_running_or(status, "container not running"))
    ctx.backend(rec.backend).pause(container_id)


def resume(ctx: Context, container_id: str) -> None:
    rec, status = load(ctx, container_id)
    if status != st.PAUSED:
        raise InvalidState(container_id, status, "container not paused")
    ctx.backend(rec.backend).resume(container_id)


def _not_running_or(status: str, message: str) -> str:
    return "container paused" if status == st.PAUSED else message


def update(ctx: Context, container_id: str, options: list[str], resources: bytes | None) -> None:
    rec, status = load(ctx, container_id)
    if status == st.STOPPED:
        raise InvalidState(container_id, status, "container not running")
    if resources is not None:
        from nexcage import fastjson
        from nexcage.spec.config import parse_resources

        try:
            raw = fastjson.loads(resources)
        except ValueError as exc:
            from nexcage.errors import SpecError, Violation

            raise SpecError("resources", [Violation("", f"malformed JSON: {exc}")]) from None
        parse_resources(raw, "resources")
        options = ["--resources", "-", *options]
    ctx.backend(rec.backend).update(container_id, options, resources)


def owner_of(path: str) -> str:
    import pwd

    try:
        uid = os.stat(path).st_uid
    except OSError:
        return ""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def list_states(ctx: Context) -> tuple[list[dict[str, Any]], list[StateCorrupt]]:
    states: list[dict[str, Any]] = []
    broken: list[StateCorrupt] = []
    for container_id, item in ctx.store.records():
        if isinstance(item, StateCorrupt):
            broken.append(item)
            continue
        owner = owner_of(ctx.store.dir(container_id))
        states.append(state_json(item, status_of(item), owner))
    return states, broken
