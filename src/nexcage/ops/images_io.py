"""``image import`` and ``image export`` (issue 3): archives and layouts in and out of the store.

Only the image verbs import this module (docs/DESIGN.md, hot path).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nexcage.image import layout
from nexcage.image import manifest as mf
from nexcage.image.store import ImageRecord, ImageStore

if TYPE_CHECKING:
    from nexcage.ops.context import Context
    from nexcage.settings import Settings


def _store(ctx: Context | Settings) -> ImageStore:
    from nexcage.ops.context import Context

    settings = ctx.settings if isinstance(ctx, Context) else ctx
    return ImageStore(settings.data_root)


def import_image(
    ctx: Context | Settings, path: str, ref: str | None = None, *, platform: str | None = None
) -> list[ImageRecord]:
    """Import an oci-archive, docker-archive or OCI layout directory; every blob verified.

    ``ref`` names the image (the archive must hold one); ``platform`` picks from a
    multi-platform index (default: the host's). Nothing is stored when it fails.
    """
    wanted = mf.parse_platform(platform) if platform else None
    return layout.import_path(_store(ctx), path, ref=ref, platform=wanted)


def export_image(ctx: Context | Settings, ref: str, path: str) -> ImageRecord:
    """Write the stored image ``ref`` as an oci-archive at ``path``."""
    store = _store(ctx)
    record = store.resolve(ref)
    layout.export_archive(store, record, path)
    return record
