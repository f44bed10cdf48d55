"""Images onto a storage driver: each layer unpacked once per driver, shared by every image.

A layer is identified by its chain id (base.py): the same diff on the same parents is the same
layer whichever image it came from, so two images built on one base share its layers and a second
image costs only its own new layers.

`ensure_image` walks an image's chain bottom-up; for each layer the driver does not have yet it
takes the chain's lock, looks again (another process may have committed it meanwhile), and then
``prepare_layer`` -> apply the diff -> ``commit_layer``; on any failure (a corrupt blob, a full
disk, a signal) ``abort_layer``, so nothing half-made is ever visible. Flat drivers get the diff
applied with whiteouts as deletions (`image.unpack.apply_layer`), overlay drivers get it in
overlay form (``overlay=True``: whiteouts as 0/0 devices and opaque xattrs).

Locks: ``<lock_dir>/<driver>-<hex>.lock``, one flock per chain id and driver. Two creates of the
same image at once: the first unpacks, the second waits on the same lock and finds the layer
committed. Lock files are never removed while a create may run (a waiter would hold a lock on a
deleted file while a newcomer locks a new one): `nexcage storage gc` removes them under the
exclusive lease. ``<driver>-<hex>.pending`` next to the lock exists while a layer is being made;
one left behind is how gc finds a layer a crash left uncommitted (the driver API lists
committed layers only).

A test-only hook, env ``NEXCAGE_TEST_HOOK=<point>=<action>`` (action ``kill`` or ``sleep:<s>``)
stops or delays the process at a named point (`hook`), so tests can crash a create exactly
between two steps. Points here: ``layer-applied`` (diff applied, not committed).
"""

from __future__ import annotations

import hashlib
import os

from nexcage import log
from nexcage.host.fs import Lock
from nexcage.image.rootfs import Root
from nexcage.image.unpack import Layer, apply_layer, image_layers
from nexcage.storage import names
from nexcage.storage.base import OVERLAY

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from nexcage.image.store import ImageRecord, ImageStore
    from nexcage.storage.base import StorageDriver

HOOK_ENV = "NEXCAGE_TEST_HOOK"
PENDING = ".pending"


def chain_ids(diff_ids: Sequence[str]) -> list[str]:
    """ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    chains: list[str] = []
    for diff_id in diff_ids:
        if not chains:
            chains.append(diff_id)
        else:
            text = f"{chains[-1]} {diff_id}".encode()
            chains.append("sha256:" + hashlib.sha256(text).hexdigest())
    return chains


def image_chain(record: ImageRecord) -> list[str]:
    return chain_ids(record.diff_ids)


def top_chain(record: ImageRecord) -> str | None:
    chains = image_chain(record)
    return chains[-1] if chains else None


def hook(point: str) -> None:
    """The test-only crash/delay hook (module docstring). One env lookup when unset."""
    spec = os.environ.get(HOOK_ENV)
    if not spec:
        return
    for item in spec.split(","):
        where, _, action = item.partition("=")
        if where != point:
            continue
        if action == "kill":
            log.info(f"{HOOK_ENV}: killing myself at {point}")
            os.kill(os.getpid(), 9)
        elif action.startswith("sleep:"):
            import time

            time.sleep(float(action[len("sleep:") :]))


def lock_path(lock_dir: str, driver: StorageDriver, chain_id: str) -> str:
    return os.path.join(lock_dir, f"{driver.name}-{names.chain_hex(driver.name, chain_id)}.lock")


def pending_path(lock_dir: str, driver: StorageDriver, chain_id: str) -> str:
    return lock_path(lock_dir, driver, chain_id).removesuffix(".lock") + PENDING


def ensure_image(
    driver: StorageDriver, store: ImageStore, record: ImageRecord, lock_dir: str
) -> str | None:
    """Make sure every layer of ``record`` is committed on ``driver``; return the top chain id
    (None for an image without layers)."""
    layers = image_layers(store, record)
    chains = chain_ids(record.diff_ids)
    parent: str | None = None
    for chain, layer in zip(chains, layers, strict=True):
        if not driver.has_layer(chain):
            os.makedirs(lock_dir, mode=0o700, exist_ok=True)
            with Lock(lock_path(lock_dir, driver, chain)):
                if not driver.has_layer(chain):  # another create may have made it meanwhile
                    unpack_layer(driver, chain, parent, layer, lock_dir)
        parent = chain
    return parent


def unpack_layer(
    driver: StorageDriver, chain: str, parent: str | None, layer: Layer, lock_dir: str
) -> None:
    """One layer onto ``driver`` (the caller holds the chain's lock). All or nothing.

    ``<lock_dir>/<driver>-<hex>.pending`` exists from before ``prepare_layer`` until the layer
    is committed or aborted: one left behind names a layer a crash left half-made."""
    log.debug(f"storage {driver.name}: unpacking layer {chain} ({layer.digest})")
    as_root = os.geteuid() == 0
    pending = pending_path(lock_dir, driver, chain)
    os.close(os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    try:
        path = driver.prepare_layer(chain, parent)
        with Root(path, clamp=False) as root, layer.open() as blob:
            if driver.layer_format == OVERLAY:
                apply_layer(root, blob, layer, as_root=as_root, overlay=True)
            else:
                apply_layer(root, blob, layer, as_root=as_root)
        hook("layer-applied")
        driver.commit_layer(chain)
    except BaseException:
        try:
            driver.abort_layer(chain)
            os.unlink(pending)
        except Exception as cleanup:  # never mask the cause (ENOSPC, a bad blob, a signal)
            log.warning(f"storage {driver.name}: cannot remove partial layer {chain}: {cleanup}")
        raise
    os.unlink(pending)
    log.info(f"storage {driver.name}: layer {chain} committed")
