"""``nexcage template REF --format lxc [-o DIR]``: an image as an LXC image (issue 5).

Writes ``DIR/rootfs.tar.xz`` and ``DIR/meta.tar.xz`` (the names LXC's image servers use), for
``lxc-create -n NAME -t local -- --metadata DIR/meta.tar.xz --fstree DIR/rootfs.tar.xz``:

- the rootfs is the image's layers unpacked as for a bundle (`image.unpack`: verified, whiteouts
  applied), with WorkingDir and the volume paths made inside it (Proxmox's OCI import does the
  same with volumes: directories, no mounts), then tarred with numeric owners only (lxc-local
  extracts with ``--numeric-owner``); built in a work directory inside DIR, removed afterwards;
- the metadata holds ``config`` and ``config-user`` (the keys of
  `backends.translate.lxc_template`) and a ``create-message`` naming the image.

Order, so that a refused image leaves nothing behind: the image config is checked first (every
value a key derives from: line breaks, NUL, the words lxc-local rewrites), before DIR is made or
anything unpacked; the keys are checked again after the unpack (HOME comes from the image's
/etc/passwd); both tarballs are renamed into DIR only when both are complete.

Labels and ExposedPorts have no LXC key and are not carried (as with Proxmox's OCI import);
nor are extended attributes (file capabilities): lxc-local extracts without ``--xattrs``.
Only the template verb imports this module (DESIGN.md, hot path).
"""

from __future__ import annotations

import os
import time

from nexcage.backends.translate import lxc_template
from nexcage.errors import InvalidImage, NexcageError, Unsupported, UsageError
from nexcage.image import bundle as conv
from nexcage.image.rootfs import Root, remove_path
from nexcage.image.store import ImageRecord, ImageStore
from nexcage.image.unpack import unpack_image
from nexcage.image.user import resolve_in_rootfs
from nexcage.spec.config import parse_config

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nexcage.ops.context import Context

FORMATS = ("lxc", "proxmox")
META = "meta.tar.xz"
ROOTFS = "rootfs.tar.xz"


class LxcImage:
    """What `lxc_image` wrote: the two tarballs, the image's config keys, the ``config`` file
    (those keys after LXC's includes) and the image they came from."""

    __slots__ = ("config", "keys", "meta", "record", "rootfs")

    def __init__(
        self, meta: str, rootfs: str, keys: list[tuple[str, str]], config: str, record: ImageRecord
    ) -> None:
        self.meta = meta
        self.rootfs = rootfs
        self.keys = keys
        self.config = config
        self.record = record


def make_template(
    ctx: Context,
    ref: str,
    fmt: str,
    output: str | None = None,
    *,
    pull: str = "missing",
    platform: str | None = None,
    tls_verify: bool | None = None,
) -> LxcImage:
    """The template of ``ref`` (pulled per ``pull``) in format ``fmt`` at ``output``."""
    if fmt not in FORMATS:
        raise UsageError(f"template: unknown --format {fmt!r} (lxc or proxmox)")
    if fmt == "proxmox":
        raise NexcageError("template --format proxmox is not built yet (the Proxmox issue)")
    from nexcage.ops import images

    record = images.ensure(ctx, ref, pull, platform=platform, tls_verify=tls_verify)
    return lxc_image(ImageStore(ctx.settings.data_root), record, output or ".")


def lxc_image(store: ImageStore, record: ImageRecord, output: str) -> LxcImage:
    """Write ``output``/meta.tar.xz and ``output``/rootfs.tar.xz for ``record`` (see above)."""
    doc = record.config
    conv.validate(doc)
    problems = lxc_template.check_image(doc)
    if problems:
        raise InvalidImage(f"image {record.ref}", problems)
    directory = os.path.abspath(output)
    made = not os.path.exists(directory)
    if made:
        os.makedirs(directory, mode=0o755)
    elif not os.path.isdir(directory):
        raise UsageError(f"template: {directory} exists and is not a directory")
    work = os.path.join(directory, f".nexcage-template-{os.getpid()}")
    try:
        remove_path(work)  # left by a crashed run whose pid we reuse
        os.mkdir(work, 0o700)
        try:
            keys, config = _build(store, record, work)
            os.replace(os.path.join(work, ROOTFS), os.path.join(directory, ROOTFS))
            try:
                os.replace(os.path.join(work, META), os.path.join(directory, META))
            except BaseException:
                os.unlink(os.path.join(directory, ROOTFS))
                raise
        finally:
            remove_path(work)
    except BaseException:
        if made:
            remove_path(directory)
        raise
    meta, rootfs = os.path.join(directory, META), os.path.join(directory, ROOTFS)
    return LxcImage(meta, rootfs, keys, config, record)


def _build(store: ImageStore, record: ImageRecord, work: str) -> tuple[list[tuple[str, str]], str]:
    """Unpack, translate, and write both tarballs into ``work``; return the image's config keys
    and the ``config`` file."""
    doc = record.config
    rootfs = os.path.join(work, "rootfs")
    unpack_image(store, record, rootfs)
    user = resolve_in_rootfs(rootfs, conv.user_spec(doc))
    with Root(rootfs, clamp=True) as root:
        for path in (conv.working_dir(doc), *conv.volumes(doc)):
            root.makedirs(path)
    spec = parse_config(conv.runtime_spec(doc, user, cgroup_ns=False))
    translation = lxc_template.template_keys(spec, doc)
    if translation.findings:
        raise Unsupported("lxc (template)", translation.findings)
    header = f"nexcage template of {record.ref} ({record.manifest_digest})"
    files = {
        "config": lxc_template.config_text(translation.keys, header),
        "config-user": lxc_template.config_text(translation.keys, header, user=True),
        "create-message": (
            f"This container runs the OCI image {record.ref} ({record.manifest_digest}),\n"
            "converted by nexcage.\n"
        ),
    }
    _write_meta(os.path.join(work, META), files)
    _write_rootfs(os.path.join(work, ROOTFS), rootfs)
    return translation.keys, files["config"]


def _write_rootfs(path: str, rootfs: str) -> None:
    """``rootfs`` as ``./``-relative entries (as LXC's own images), parents first, names sorted;
    symlinks stored, never followed; owners by number only (the host's names for the image's
    uids mean nothing, and lxc-local extracts with ``--numeric-owner``). Iterative: an image's
    tree may be deeper than Python's recursion limit."""
    import tarfile

    with tarfile.open(path, "w:xz", format=tarfile.PAX_FORMAT) as tar:
        stack = [(rootfs, ".")]
        while stack:
            source, name = stack.pop()
            info = tar.gettarinfo(source, name)
            if info is None:
                continue  # a socket: tar has no entry for it
            info.uname = info.gname = ""
            if info.isreg():
                fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with os.fdopen(fd, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if info.isdir():
                children = sorted(os.listdir(source), reverse=True)
                stack += [(os.path.join(source, c), f"{name}/{c}") for c in children]


def _write_meta(path: str, files: dict[str, str]) -> None:
    import io
    import tarfile

    now = int(time.time())
    with tarfile.open(path, "w:xz", format=tarfile.PAX_FORMAT) as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, now
            tar.addfile(info, io.BytesIO(data))
