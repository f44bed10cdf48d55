"""Images become bundles: ``nexcage bundle REF DIR`` and ``create/run --image REF ID``.

A bundle is the image's layers unpacked into ``rootfs/`` (`image.unpack`: secure, verified,
atomic) plus a ``config.json`` converted from the image config (`image.bundle`), the user
resolved through the image's own /etc/passwd and /etc/group (`image.user`), WorkingDir and
volume mount points made inside the rootfs.

For ``--image`` the bundle lives in ``<data_root>/containers/<id>/`` (not on the tmpfs state
root), made after ``lifecycle.create`` reserved the id, recorded in the container's state as
owned and removed by ``delete`` or a failed create. Its rootfs is not in it: the storage driver
makes it from the image's layers, unpacked once and shared (`ops.storage.prepare_rootfs`: a
snapshot, clone or copy of the top layer), and ``config.json``'s ``root.path`` is its absolute
path. A marker file names the state root that made the directory, so two state roots sharing a
data root never take each other's; another (``.nexcage-storage``) names the driver holding the
rootfs, so delete, a takeover and ``storage gc`` can remove it.

Only image verbs and the ``--image`` branch of create/run import this module (DESIGN.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from nexcage import log
from nexcage.errors import BundleError, ContainerExists, ImageNotFound, UsageError
from nexcage.host import fs
from nexcage.image import bundle as conv
from nexcage.image import unpack
from nexcage.image.rootfs import Root, remove_path
from nexcage.image.store import ImageRecord, ImageStore
from nexcage.image.user import resolve_in_rootfs
from nexcage.spec.validate import check_config

if TYPE_CHECKING:
    from nexcage.ops.context import Context

PULL_POLICIES = ("missing", "always", "never")
CONTAINERS = "containers"
OWNER_FILE = ".nexcage-owner"
HOSTNAME_LEN = 12  # a short id, as Docker names a container's host


def _cgroup_ns() -> bool:
    # runc's `spec` adds a cgroup namespace only on a unified (v2) hierarchy.
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def write_bundle(
    store: ImageStore,
    record: ImageRecord,
    directory: str,
    *,
    command: Sequence[str] | None = None,
    tty: bool = False,
    hostname: str = "nexcage",
) -> None:
    """``directory``/rootfs and ``directory``/config.json for ``record``. The directory must
    exist and hold neither (umoci refuses the same). The config is checked before the unpack,
    the result with the runtime-spec validation."""
    conv.validate(record.config, command)
    rootfs = os.path.join(directory, "rootfs")
    config_path = os.path.join(directory, "config.json")
    for path in (rootfs, config_path):
        if os.path.lexists(path):
            raise BundleError(path, f"{path} already exists: refusing to overwrite it")
    unpack.unpack_image(store, record, rootfs)
    try:
        write_config(record, rootfs, directory, command=command, tty=tty, hostname=hostname)
    except BaseException:
        remove_path(rootfs)
        raise


def write_config(
    record: ImageRecord,
    rootfs: str,
    directory: str,
    *,
    command: Sequence[str] | None = None,
    tty: bool = False,
    hostname: str = "nexcage",
) -> None:
    """``directory``/config.json for ``record`` run on ``rootfs`` (already made): the user
    resolved in it, WorkingDir and volume mount points made in it. ``root.path`` stays the
    relative ``rootfs`` when that is where the rootfs is, else it is the absolute path."""
    user = resolve_in_rootfs(rootfs, conv.user_spec(record.config))
    with Root(rootfs, clamp=True) as root:
        for path in (conv.working_dir(record.config), *conv.volumes(record.config)):
            root.makedirs(path)
    spec = conv.runtime_spec(
        record.config,
        user,
        command=command,
        tty=tty,
        hostname=hostname,
        cgroup_ns=_cgroup_ns(),
    )
    if os.path.normpath(rootfs) != os.path.join(os.path.abspath(directory), "rootfs"):
        spec["root"]["path"] = os.path.abspath(rootfs)
    config_path = os.path.join(directory, "config.json")
    check_config(spec, config_path)
    data = (json.dumps(spec, indent=2) + "\n").encode()
    fs.atomic_write(config_path, data, 0o644)


def image_for(
    ctx: Context, ref: str, pull: str, platform: str | None, tls_verify: bool | None
) -> ImageRecord:
    """The image per ``--pull``. A stored image is found without loading the registry client
    (urllib3: ~0.15 s of imports): ``ops.images`` is imported only when a pull may happen."""
    if pull not in PULL_POLICIES:
        raise UsageError(f"invalid --pull value {pull!r} (missing, always or never)")
    if pull != "always":
        try:
            return ImageStore(ctx.settings.data_root).resolve(ref)
        except ImageNotFound:
            if pull == "never":
                raise
    from nexcage.ops import images

    return images.ensure(ctx, ref, "always", platform=platform, tls_verify=tls_verify)


def make_bundle(
    ctx: Context,
    ref: str,
    directory: str,
    *,
    command: Sequence[str] | None = None,
    tty: bool = False,
    pull: str = "missing",
    platform: str | None = None,
    tls_verify: bool | None = None,
) -> ImageRecord:
    """``nexcage bundle REF DIR``: the image (pulled per ``pull``) as a runtime bundle."""
    record = image_for(ctx, ref, pull, platform, tls_verify)
    directory = os.path.abspath(directory)
    made = not os.path.exists(directory)
    if made:
        os.makedirs(directory, mode=0o700)  # umoci: bundle directories are 0700
    elif not os.path.isdir(directory):
        raise BundleError(directory, f"{directory} exists and is not a directory")
    try:
        store = ImageStore(ctx.settings.data_root)
        write_bundle(store, record, directory, command=command, tty=tty)
    except BaseException:
        if made:
            remove_path(directory)
        raise
    return record


class ImageSource:
    """What ``create --image`` hands ``lifecycle.create``: it builds the container's bundle once
    the id is reserved (``prepare``) and says whether the process gets a terminal."""

    __slots__ = ("command", "platform", "pull", "ref", "terminal", "tls_verify")

    def __init__(
        self,
        ref: str,
        *,
        command: Sequence[str] | None = None,
        tty: bool = False,
        pull: str = "missing",
        platform: str | None = None,
        tls_verify: bool | None = None,
    ) -> None:
        if pull not in PULL_POLICIES:
            raise UsageError(f"invalid --pull value {pull!r} (missing, always or never)")
        self.ref = ref
        self.command = list(command) if command else None
        self.terminal = tty
        self.pull = pull
        self.platform = platform
        self.tls_verify = tls_verify

    def prepare(self, ctx: Context, container_id: str) -> tuple[str, list[str]]:
        """Build ``<data_root>/containers/<id>`` (config.json) and the container's rootfs on
        the storage driver; return (bundle dir, paths the container owns: the bundle dir, whose
        marker names the rootfs). Leaves nothing behind when it fails."""
        from nexcage.ops import storage

        record = image_for(ctx, self.ref, self.pull, self.platform, self.tls_verify)
        conv.validate(record.config, self.command)
        parent = os.path.join(ctx.settings.data_root, CONTAINERS)
        os.makedirs(parent, mode=0o711, exist_ok=True)
        directory = os.path.join(parent, container_id)
        _claim(ctx, directory, container_id)
        try:
            rootfs = storage.prepare_rootfs(ctx.settings, record, container_id, directory)
            write_config(
                record,
                rootfs,
                directory,
                command=self.command,
                tty=self.terminal,
                hostname=container_id[:HOSTNAME_LEN],
            )
        except BaseException:
            storage.release_rootfs(directory)
            remove_path(directory)
            raise
        return directory, [directory]


def _claim(ctx: Context, directory: str, container_id: str) -> None:
    """Make the container's directory, taking over one left by a crashed create of this state
    root; refuse one another state root's container still uses."""
    state_root = ctx.store.root
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        try:
            owner = fs.read_text(os.path.join(directory, OWNER_FILE)).strip()
        except (FileNotFoundError, NotADirectoryError):
            owner = ""
        if owner and owner != state_root and _has_record(owner, container_id):
            raise ContainerExists(container_id) from None
        # Ours (the id is reserved in our state root, so its create died) or nobody's.
        log.info(f"removing {directory}, left by an earlier create of {container_id}")
        from nexcage.ops import storage

        storage.release_rootfs(directory)
        remove_path(directory)
        os.mkdir(directory, 0o700)
    fs.atomic_write(os.path.join(directory, OWNER_FILE), state_root.encode() + b"\n", 0o600)


def _has_record(state_root: str, container_id: str) -> bool:
    return os.path.exists(os.path.join(state_root, container_id, "state.json"))
