"""Names of stored things, checked before they become paths or ZFS dataset names.

- Chain ids (base.py) are ``sha256:<64 lowercase hex>`` (CONTRACTS.md §3.5: ChainID is a sha256
  over the diff_ids, and the image code only accepts sha256 diff_ids). On disk a layer is named by
  the hex part alone (`chain_hex`): a plain file name, a valid ZFS dataset component, and short
  enough for overlay's ``lowerdir`` bookkeeping.
- Container ids: as the state store takes them (runc's alphabet ``[A-Za-z0-9_+.-]``, at most 255
  characters, no leading ``.``: dot-names are the drivers' own work files). ZFS does not allow
  ``+`` in dataset names, so `zfs_component` maps it to ``:``, which container ids never hold.
- Snapshot names: ``[A-Za-z0-9_.:-]``, not starting with ``.`` or ``-`` (ZFS's snapshot alphabet,
  and a plain file name everywhere else).
"""

from __future__ import annotations

import time

from nexcage.errors import StorageError

MAX_NAME = 200
MAX_CONTAINER_ID = 255  # state.store.MAX_ID_LEN
_HEX = frozenset("0123456789abcdef")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_CONTAINER = _ALNUM | frozenset("_+.-")
_SNAPSHOT = _ALNUM | frozenset("_.:-")
PREFIX = "sha256:"


def chain_hex(driver: str, chain_id: str) -> str:
    """The hex part of a chain id (its on-disk name); StorageError if it is not one."""
    hexpart = chain_id.removeprefix(PREFIX)
    if not (chain_id.startswith(PREFIX) and len(hexpart) == 64 and set(hexpart) <= _HEX):
        raise StorageError(driver, f"invalid chain id {chain_id!r} (expected sha256:<64 hex>)")
    return hexpart


def chain_from_hex(hexpart: str) -> str | None:
    """The chain id an on-disk name stands for, None if the name is not one of ours."""
    if len(hexpart) == 64 and set(hexpart) <= _HEX:
        return PREFIX + hexpart
    return None


def check_container(driver: str, container_id: str) -> str:
    """``container_id`` if it can name a rootfs (a file name, runc's alphabet)."""
    value = container_id
    if not (0 < len(value) <= MAX_CONTAINER_ID and set(value) <= _CONTAINER and value[0] != "."):
        raise StorageError(driver, f"invalid container id {value!r} for storage")
    return value


def check_snapshot(name: str, driver: str = "snapshot") -> str:
    """``name`` if it can name a snapshot on every driver."""
    if not (0 < len(name) <= MAX_NAME and set(name) <= _SNAPSHOT and name[0] not in ".-"):
        raise StorageError(
            driver,
            f"invalid snapshot name {name!r}",
            hint="use letters, digits and _ . : - (not first: . or -)",
        )
    return name


def zfs_component(container_id: str) -> str:
    """A container id as a ZFS dataset name component (``+`` is not allowed there)."""
    return container_id.replace("+", ":")


def from_zfs_component(component: str) -> str:
    return component.replace(":", "+")


def rfc3339(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def now_rfc3339() -> str:
    return rfc3339(time.time())
