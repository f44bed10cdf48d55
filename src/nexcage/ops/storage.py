"""Storage use cases: container rootfs from a driver, ``storage gc|df|init``, layer release.

Only ``create --image``, the image and storage verbs, ``snapshot`` and the delete of an image
container import this module (DESIGN.md, hot path).

On disk, besides each driver's own root (``<data_root>/storage/<driver>``)::

    <data_root>/storage/gc.lock          shared while a create unpacks layers and makes its
                                         rootfs; exclusive for gc, image rm and image prune
    <data_root>/storage/locks/           one lock per (driver, chain id) ever unpacked
    <data_root>/containers/<id>/         the bundle (config.json), .nexcage-owner (the state
                                         root that made it) and .nexcage-storage (the driver
                                         holding its rootfs: {"driver", "dataRoot", "dataset",
                                         "id"}), written *before* the rootfs is made

So every rootfs a create may have made is named by a marker somewhere, which is what lets
``delete --force`` (an aborted create: no state.json) and ``storage gc`` find and remove it.

Liveness, for gc: a container is alive when its owner state root has ``<id>/state.json``, or
when ``<id>/.lock`` there is held (a create is between reserving the id and saving its record).
gc takes that lock (non-blocking) while it removes what a dead container left, so a new create of
the same id waits for it. Lock order: the state lock, then ``gc.lock`` (gc never blocks on a
state lock, so the reverse order there cannot deadlock).
"""

from __future__ import annotations

import os

from nexcage import fastjson, log
from nexcage.errors import ImageInUse, NexcageError, StorageError
from nexcage.host import fs
from nexcage.image.rootfs import remove_path
from nexcage.storage import select
from nexcage.storage.base import DRIVERS

# The image store, the unpacker and the layer code are imported where they are used: `delete` of
# an image container imports this module only to release its rootfs (DESIGN.md, hot path).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nexcage.image.ingest import Lease
    from nexcage.image.store import ImageRecord, ImageStore
    from nexcage.ops.context import Context
    from nexcage.settings import Settings
    from nexcage.storage.base import StorageDriver

CONTAINERS = "containers"  # = ops.image_bundle.CONTAINERS: <data_root>/containers/<id>
OWNER_FILE = ".nexcage-owner"  # = ops.image_bundle.OWNER_FILE
MARKER = ".nexcage-storage"
STATE_FILE = "state.json"
STATE_LOCK = ".lock"


def lease(data_root: str, *, exclusive: bool, blocking: bool = True) -> Lease:
    from nexcage.image.ingest import Lease

    root = select.storage_root(data_root)
    os.makedirs(root, mode=0o711, exist_ok=True)
    return Lease(os.path.join(root, "gc.lock"), shared=not exclusive, blocking=blocking)


def lock_dir(data_root: str) -> str:
    return os.path.join(select.storage_root(data_root), "locks")


def open_driver(settings: Settings) -> StorageDriver:
    return select.open_driver(settings)


def present_drivers(settings: Settings) -> list[StorageDriver]:
    """Every driver that may hold something: the configured one when it works here, and every
    driver whose root exists (a data root can outlive a change of ``storage.driver``)."""
    found: dict[str, StorageDriver] = {}
    try:
        driver = select.open_driver(settings)
        found[driver.name] = driver
    except StorageError as exc:
        log.debug(f"configured storage driver unusable: {exc}")
    for name in DRIVERS:
        if name in found or not os.path.isdir(select.driver_root(settings.data_root, name)):
            continue
        try:
            found[name] = select.make(name, settings.data_root, settings.zfs_dataset)
        except StorageError as exc:
            log.warning(f"{exc}: its content is left alone")
    return list(found.values())


# -- a container's rootfs ------------------------------------------------------------------------


def prepare_rootfs(
    settings: Settings, record: ImageRecord, container_id: str, bundle_dir: str
) -> str:
    """The writable rootfs of a new container from ``record``: the image's layers made sure of
    on the driver (unpacked once, shared), then a snapshot/clone/copy of the top layer. The
    marker naming the driver goes into ``bundle_dir`` first."""
    from nexcage.image.store import ImageStore
    from nexcage.storage import layers

    driver = open_driver(settings)
    marker = {
        "driver": driver.name,
        "dataRoot": settings.data_root,
        "dataset": settings.zfs_dataset or "",
        "id": container_id,
    }
    fs.atomic_write(os.path.join(bundle_dir, MARKER), fastjson.dumps(marker).encode(), 0o600)
    store = ImageStore(settings.data_root)
    with lease(settings.data_root, exclusive=False):
        top = layers.ensure_image(driver, store, record, lock_dir(settings.data_root))
        try:
            rootfs = driver.create_rootfs(container_id, top)
        except StorageError:
            if container_id not in driver.containers():
                raise
            # The id is reserved in our state root and its bundle dir is ours (`_claim`): a
            # rootfs under it is what a crashed create or delete left. (Checked only on
            # failure: listing costs a `zfs list` on every create otherwise.)
            log.info(f"storage {driver.name}: removing the leftover rootfs of {container_id}")
            driver.remove_rootfs(container_id)
            rootfs = driver.create_rootfs(container_id, top)
    layers.hook("rootfs-created")
    return rootfs


def _read_marker(bundle_dir: str) -> dict[str, str] | None:
    try:
        with open(os.path.join(bundle_dir, MARKER), "rb") as f:
            doc = fastjson.loads(f.read())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning(f"unreadable storage marker in {bundle_dir}: {exc}")
        return None
    if not isinstance(doc, dict) or not all(isinstance(v, str) for v in doc.values()):
        log.warning(f"invalid storage marker in {bundle_dir}")
        return None
    return doc


def driver_of(bundle_dir: str) -> tuple[StorageDriver, str] | None:
    """(driver, container id) named by a bundle dir's marker, None if it has none."""
    doc = _read_marker(bundle_dir)
    if doc is None or doc.get("driver") not in DRIVERS or not doc.get("id"):
        return None
    driver = select.make(doc["driver"], doc.get("dataRoot", ""), doc.get("dataset") or None)
    return driver, doc["id"]


def release_rootfs(bundle_dir: str) -> None:
    """Remove the driver rootfs a bundle dir's marker names (missing is fine). Logged, never
    raised: it must not keep a container from being deleted; `storage gc` retries."""
    try:
        found = driver_of(bundle_dir)
        if found is not None:
            driver, container_id = found
            driver.remove_rootfs(container_id)
    except (NexcageError, OSError) as exc:
        log.warning(f"cannot remove the rootfs of {bundle_dir} (`nexcage storage gc` will): {exc}")


# -- images and layers ---------------------------------------------------------------------------


def container_parents(drivers: list[StorageDriver]) -> dict[str, list[tuple[str, str]]]:
    """chain id -> [(driver, container id)] for every container rootfs on ``drivers``."""
    users: dict[str, list[tuple[str, str]]] = {}
    for driver in drivers:
        for cid in driver.containers():
            parent = driver.parent_of(cid)
            if parent:
                users.setdefault(parent, []).append((driver.name, cid))
    return users


def refuse_in_use(settings: Settings, store: ImageStore, going: list[ImageRecord]) -> None:
    """ImageInUse when a container rootfs was made from an image about to go and no image that
    stays has the same layers (untagging one of two names of an image is fine)."""
    from nexcage.storage import layers

    gone = {r.ref for r in going}
    staying = {layers.top_chain(r) for r in store.images() if r.ref not in gone}
    users = container_parents(present_drivers(settings))
    for record in going:
        top = layers.top_chain(record)
        if top is None or top in staying or top not in users:
            continue
        raise ImageInUse(record.ref, sorted({cid for _, cid in users[top]}))


def release_layers(
    settings: Settings, store: ImageStore, *, dry_run: bool = False
) -> list[tuple[str, str]]:
    """Remove every layer no image and no container rootfs uses, on every driver present;
    [(driver, chain id)]. The caller holds the exclusive lease."""
    from nexcage.storage import layers

    keep: set[str] = set()
    for record in store.images():
        keep.update(layers.image_chain(record))
    removed = []
    for driver in present_drivers(settings):
        driver_keep = keep | {p for cid in driver.containers() if (p := driver.parent_of(cid))}
        candidates = [c for c in driver.layers() if c not in driver_keep]
        if dry_run:
            removed += [(driver.name, c) for c in candidates]
            continue
        locks = lock_dir(settings.data_root)
        removed += [(driver.name, c) for c in _remove_layers(driver, locks, candidates)]
    return removed


def _remove_layers(driver: StorageDriver, locks: str, candidates: list[str]) -> list[str]:
    """Children before parents: the driver refuses a layer something still depends on, so
    retry the refused ones while each pass removes something (no parent map needed). Each
    removal is journaled like an unpack (``.pending``), so a crash halfway through one leaves
    something `gc` finds and finishes (``abort_layer`` sweeps what the driver left)."""
    from nexcage.storage import layers

    os.makedirs(locks, mode=0o700, exist_ok=True)
    removed: list[str] = []
    pending = list(candidates)
    while pending:
        refused: dict[str, str] = {}
        for chain in pending:
            journal = layers.pending_path(locks, driver, chain)
            os.close(os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            try:
                driver.remove_layer(chain)
                removed.append(chain)
            except StorageError as exc:
                refused[chain] = str(exc)
            _unlink_quiet(journal)
        if len(refused) == len(pending):
            for chain, why in refused.items():
                log.info(f"keeping layer {chain}: {why}")
            break
        pending = list(refused)
    return removed


# -- gc --------------------------------------------------------------------------------------------


class _StateLock:
    """A non-blocking try of a container's state lock in its owner state root."""

    def __init__(self, state_root: str, container_id: str) -> None:
        self.dir = os.path.join(state_root, container_id)
        self.fd = -1

    def alive(self) -> bool:
        """True when the container has a record or a create holds its lock; otherwise the
        lock (if the dir exists) is ours until `release`."""
        if os.path.exists(os.path.join(self.dir, STATE_FILE)):
            return True
        import fcntl

        try:
            self.fd = os.open(os.path.join(self.dir, STATE_LOCK), os.O_RDWR | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            return True
        # Saved between our two looks: the create finished.
        return os.path.exists(os.path.join(self.dir, STATE_FILE))

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _owner(bundle_dir: str) -> str:
    try:
        return fs.read_text(os.path.join(bundle_dir, OWNER_FILE)).strip()
    except (FileNotFoundError, NotADirectoryError):
        return ""


class GcItem:
    __slots__ = ("kind", "what")

    def __init__(self, kind: str, what: str) -> None:
        self.kind = kind
        self.what = what

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "what": self.what}


def gc(ctx: Context, *, dry_run: bool = False) -> list[GcItem]:
    """Find and remove what crashes and removals left: partial layers (an unpack or a removal
    cut short), rootfs and bundles of containers that no longer exist, layers no image and no
    container uses, and the lock files of all of them. ``dry_run`` lists without removing."""
    from nexcage.image.store import ImageStore

    settings = ctx.settings
    data_root = settings.data_root
    found: list[GcItem] = []
    with lease(data_root, exclusive=True):
        drivers = present_drivers(settings)
        found += _gc_uncommitted(drivers, lock_dir(data_root), dry_run)
        found += _gc_containers(drivers, data_root, dry_run)
        store = ImageStore(data_root)
        for name, chain in release_layers(settings, store, dry_run=dry_run):
            found.append(GcItem("unused layer", f"{name} {chain}"))
    return found


def _gc_uncommitted(drivers: list[StorageDriver], locks: str, dry_run: bool) -> list[GcItem]:
    """A ``.pending`` journal file names a layer a create was making, or gc removing, when it
    died (none runs now: we hold the exclusive lease). Lock files go too: nobody can be waiting
    on them."""
    from nexcage.storage import layers

    by_name = {d.name: d for d in drivers}
    found = []
    try:
        entries = sorted(os.listdir(locks))
    except FileNotFoundError:
        return []
    for entry in entries:
        name, _, rest = entry.partition("-")
        driver = by_name.get(name)
        if driver is None:
            continue
        if rest.endswith(layers.PENDING):
            chain = "sha256:" + rest.removesuffix(layers.PENDING)
            if not driver.has_layer(chain):  # committed, the journal not yet removed: fine
                found.append(GcItem("partial layer", f"{name} {chain}"))
                if dry_run:
                    continue
                driver.abort_layer(chain)
        elif not rest.endswith(".lock") or dry_run:
            continue
        _unlink_quiet(os.path.join(locks, entry))
    return found


def _gc_containers(drivers: list[StorageDriver], data_root: str, dry_run: bool) -> list[GcItem]:
    """Rootfs and bundle dirs of containers that are neither recorded nor being created."""
    bundles = os.path.join(data_root, CONTAINERS)
    try:
        ids = {n for n in os.listdir(bundles) if not n.startswith(".")}
    except FileNotFoundError:
        ids = set()
    on_driver = {(d.name, cid) for d in drivers for cid in d.containers()}
    found = []
    for cid in sorted(ids | {cid for _, cid in on_driver}):
        bundle = os.path.join(bundles, cid)
        owner = _owner(bundle)
        lock = _StateLock(owner, cid) if owner.startswith("/") else None
        try:
            if lock is not None and lock.alive():
                continue
            found += _gc_one(drivers, on_driver, bundle, cid, dry_run)
        finally:
            if lock is not None:
                lock.release()
    return found


def _gc_one(
    drivers: list[StorageDriver],
    on_driver: set[tuple[str, str]],
    bundle: str,
    cid: str,
    dry_run: bool,
) -> list[GcItem]:
    found = []
    targets = {d.name: d for d in drivers if (d.name, cid) in on_driver}
    for driver in targets.values():
        found.append(GcItem("orphan rootfs", f"{driver.name} {cid}"))
    named = driver_of(bundle) if os.path.isdir(bundle) else None
    if named is not None and named[1] == cid:
        # Also when the driver lists nothing: a crash inside create_rootfs leaves a partial
        # rootfs only the driver's own remove_rootfs knows how to find.
        targets.setdefault(named[0].name, named[0])
    if not dry_run:
        for driver in targets.values():
            driver.remove_rootfs(cid)
    if os.path.lexists(bundle):
        found.append(GcItem("orphan bundle", bundle))
        if not dry_run:
            remove_path(bundle)
    return found


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


# -- df, init --------------------------------------------------------------------------------------


def df(ctx: Context) -> dict[str, Any]:
    """Usage per driver present, and of the image store's blobs."""
    from nexcage.image.store import ImageStore

    settings = ctx.settings
    drivers = []
    for driver in present_drivers(settings):
        usage = driver.usage()
        containers = driver.containers()
        snapshots = 0
        for cid in containers:
            try:
                snapshots += len(driver.snapshots(cid))
            except (NexcageError, OSError):
                continue
        drivers.append(
            {
                "driver": driver.name,
                "root": driver.root,
                "layers": len(driver.layers()),
                "containers": len(containers),
                "snapshots": snapshots,
                "bytes": usage,
            }
        )
    store = ImageStore(settings.data_root)
    blob_bytes = 0
    for digest in store.blobs():
        try:
            blob_bytes += os.lstat(store.path_of(digest)).st_blocks * 512
        except FileNotFoundError:
            continue
    return {
        "dataRoot": settings.data_root,
        "images": len(store.images()),
        "blobs": {"count": len(store.blobs()), "bytes": blob_bytes},
        "drivers": drivers,
    }


def init(settings: Settings, driver: str, size: str, path: str | None) -> str:
    """``nexcage storage init``: Storage A's `nexcage.storage.init.init_storage`."""
    if driver not in ("btrfs", "zfs"):
        raise StorageError(driver, "storage init makes btrfs or zfs storage only (--driver)")
    try:
        from nexcage.storage.init import init_storage
    except ImportError:
        raise StorageError(
            driver, "storage init is not available in this build (nexcage.storage.init missing)"
        ) from None
    result: str = init_storage(settings, driver, size, path)
    return result
