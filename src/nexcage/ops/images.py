"""Image use cases: pull, ls, inspect, rm, prune (issue 3).

Only image verbs and ``create --image`` import this module (docs/DESIGN.md, hot path).

Pull order, so that a bad image leaves nothing behind: manifest (and index) and config are fetched
into memory and validated first; layers then stream into the store in parallel; the config,
manifest and index are stored last and the reference is tagged. A failure before the tag leaves
at most verified layer blobs that no image references (``image prune`` frees them) and
``ingest/*.partial`` files that the next pull resumes from.
"""

from __future__ import annotations

import os

from nexcage import log
from nexcage.errors import ImageNotFound, InvalidImage, PlatformNotFound, UsageError, Violation
from nexcage.image import manifest as mf
from nexcage.image import reference
from nexcage.image.store import ImageRecord, ImageStore

# The registry client (urllib3) and auth are imported only when the network is really needed:
# a second pull of a stored image stays well under 100 ms (image/probe.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from nexcage.image.progress import Progress
    from nexcage.image.registry import RegistryClient
    from nexcage.ops.context import Context

PULL_POLICIES = ("missing", "always", "never")
_ACCEPT = ", ".join(mf.ACCEPT)
_MAX_INDEX_DEPTH = 2


class PullOptions:
    """``platform``: os/arch[/variant] (None: the host's); ``creds``: USER:PASS (``--creds``);
    ``tls_verify=False``: plain HTTP or unverified TLS for this pull; ``environ``: where the auth
    files are looked up (default ``os.environ``)."""

    __slots__ = ("creds", "environ", "platform", "tls_verify")

    def __init__(
        self,
        platform: str | None = None,
        creds: str | None = None,
        tls_verify: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.platform = platform
        self.creds = creds
        self.tls_verify = tls_verify
        self.environ = environ


def store_of(ctx: Context) -> ImageStore:
    return ImageStore(ctx.settings.data_root)


def _insecure(ctx: Context, ref: reference.Reference, options: PullOptions) -> bool:
    return options.tls_verify is False or any(
        host in ctx.settings.insecure_registries for host in (ref.registry, ref.api_host)
    )


def _client(ctx: Context, ref: reference.Reference, options: PullOptions) -> RegistryClient:
    from nexcage.image.auth import Credentials, find_credentials, parse_creds
    from nexcage.image.registry import RegistryClient

    insecure = _insecure(ctx, ref, options)
    creds: Credentials | None
    if options.creds is not None:
        creds = parse_creds(options.creds)
    else:
        environ = options.environ if options.environ is not None else os.environ
        creds = find_credentials(ref.registry, ref.repository, environ)
    return RegistryClient(ref, insecure=insecure, credentials=creds)


def _current(store: ImageStore, ref: reference.Reference) -> ImageRecord | None:
    try:
        return store.lookup(str(ref))
    except Exception as exc:  # a damaged record: pull again over it
        log.warning(f"{ref}: stored record unusable ({exc}); pulling again")
        return None


def _up_to_date(
    store: ImageStore, record: ImageRecord, digest: str | None, wanted: mf.Platform
) -> bool:
    # An unknown remote digest (no Docker-Content-Digest, auth needed, registry unreachable) is
    # never "the same": None would otherwise match a plain manifest's absent index digest and a
    # moved tag would silently keep the stale image.
    if digest is None or digest not in (record.manifest_digest, record.index_digest):
        return False
    if not record.platform.matches(wanted):
        return False
    return all(store.has_blob(d) for d in record.blobs())


def pull(
    ctx: Context,
    ref_text: str,
    options: PullOptions | None = None,
    progress: Progress | None = None,
) -> ImageRecord:
    """Pull ``ref_text`` into the store and tag it; returns the image record.

    Already stored and unchanged (one HEAD of the manifest says the same digest): returns at
    once. A reference by digest that is stored makes no request at all.
    """
    options = options or PullOptions()
    ref = reference.parse(ref_text)
    wanted = mf.parse_platform(options.platform) if options.platform else mf.host_platform()
    store = store_of(ctx)
    existing = _current(store, ref)
    if (
        existing is not None
        and ref.digest is not None
        and _up_to_date(store, existing, ref.digest, wanted)
    ):
        return existing
    remote: str | None = None
    if existing is not None and _insecure(ctx, ref, options):
        from nexcage.image import probe

        remote = probe.manifest_digest(ref.api_host, ref.repository, ref.lookup, _ACCEPT)
        if _up_to_date(store, existing, remote, wanted):
            return existing
    client = _client(ctx, ref, options)
    if existing is not None and remote is None:
        remote = client.head_manifest(ref.lookup)
        if _up_to_date(store, existing, remote, wanted):
            log.debug(f"{ref}: up to date ({existing.manifest_digest})")
            return existing
    with store.lease():
        return _fetch(client, store, ref, wanted, explicit=options.platform is not None,
                      progress=progress)  # fmt: skip


class _Resolved:
    """What a reference led to: the indexes on the way and one image manifest (exact bytes)."""

    def __init__(self) -> None:
        self.indexes: list[tuple[bytes, str]] = []
        self.data = b""
        self.digest = ""


def _resolve_manifest(
    client: RegistryClient, ref: reference.Reference, wanted: mf.Platform
) -> tuple[_Resolved, mf.Manifest]:
    """Follow the reference to one image manifest; nested indexes to a bounded depth."""
    found = _Resolved()
    data, ctype, digest = client.get_manifest(ref.lookup)
    for _ in range(_MAX_INDEX_DEPTH + 1):
        doc = mf.parse_document(data, f"{ref} ({digest})", ctype)
        if isinstance(doc, mf.Manifest):
            mf.check_runnable(doc, f"{ref} manifest {digest}")
            found.data, found.digest = data, digest
            return found, doc
        found.indexes.append((data, digest))
        entry = mf.select_platform(doc, wanted, str(ref))
        data, ctype, digest = client.get_manifest(entry.digest, size=entry.size)
    raise InvalidImage(str(ref), [Violation("manifests", "image indexes nested too deeply")])


def _fetch(
    client: RegistryClient,
    store: ImageStore,
    ref: reference.Reference,
    wanted: mf.Platform,
    *,
    explicit: bool,
    progress: Progress | None,
) -> ImageRecord:
    found, manifest = _resolve_manifest(client, ref, wanted)
    config_data = client.get_blob_bytes(manifest.config)
    config = mf.parse_config(config_data, f"{ref} image config", len(manifest.layers))
    have = mf.config_platform(config)
    if not found.indexes and not have.matches(wanted):
        if explicit:
            raise PlatformNotFound(str(ref), str(wanted), [str(have)])
        log.warning(f"{ref}: image platform {have} does not match the host ({wanted})")
    try:
        client.fetch_blobs(manifest.layers, store, progress)
    finally:
        if progress is not None:
            progress.close()
    store.add_bytes(config_data, manifest.config.digest)
    store.add_bytes(found.data, found.digest)
    for data, digest in found.indexes:
        store.add_bytes(data, digest)
    index_digest = found.indexes[0][1] if found.indexes else None
    return store.tag(str(ref), found.digest, index_digest=index_digest)


def ensure(ctx: Context, ref_text: str, policy: str = "missing", **kw: Any) -> ImageRecord:
    """The image for ``create --image`` / ``run --image``: ``--pull=missing|always|never``."""
    if policy not in PULL_POLICIES:
        raise UsageError(f"invalid --pull policy {policy!r} (missing, always or never)")
    if policy != "always":
        try:
            return store_of(ctx).resolve(ref_text)
        except ImageNotFound:
            if policy == "never":
                raise
    return pull(ctx, ref_text, PullOptions(**kw))


def images(ctx: Context) -> list[ImageRecord]:
    return store_of(ctx).images()


def inspect(ctx: Context, ref_or_digest: str) -> dict[str, Any]:
    """The record, its manifest and its image config as JSON."""
    record = store_of(ctx).resolve(ref_or_digest)
    doc = record.to_json()
    doc["manifest"] = record.manifest.raw
    doc["config"] = record.config
    return doc


def remove(
    ctx: Context, refs: list[str]
) -> tuple[list[tuple[str, list[str]]], list[tuple[str, str]]]:
    """Untag each of ``refs``: ([(ref, blobs freed)], [(driver, layer chain id) released]).

    All names are checked before any removal, and an image a container's rootfs is made from is
    refused (`ImageInUse`). Storage layers no image and no container uses any more go too.
    """
    from nexcage.ops import storage

    store = store_of(ctx)
    with storage.lease(ctx.settings.data_root, exclusive=True):
        going = [store.resolve(text) for text in refs]
        storage.refuse_in_use(ctx.settings, store, going)
        untagged = [(text, store.remove(text)) for text in refs]
        return untagged, storage.release_layers(ctx.settings, store)


def prune(ctx: Context) -> tuple[list[str], list[tuple[str, str]]]:
    """Delete every blob no image reaches, then release the storage layers no image and no
    container uses: (blobs, [(driver, layer chain id)])."""
    from nexcage.ops import storage

    store = store_of(ctx)
    freed = store.prune()
    with storage.lease(ctx.settings.data_root, exclusive=True):
        return freed, storage.release_layers(ctx.settings, store)
