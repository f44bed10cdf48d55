"""Routing v1: which backend runs a container. Decided once, at create (PRODUCT.md §2).

Order: ``--runtime`` flag, annotation ``org.nexcage.runtime`` in config.json, the first matching
``[[routing]]`` rule of the config file, the configured default, then crun if present else runc.
"""

from __future__ import annotations

from nexcage.backends import KNOWN
from nexcage.errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from nexcage.ops.context import Context

ANNOTATION = "org.nexcage.runtime"


def choose(ctx: Context, container_id: str, annotations: Mapping[str, str]) -> tuple[str, str]:
    """Return (backend name, why) for a new container."""
    if ctx.runtime_flag:
        return _known(ctx.runtime_flag, "--runtime"), "flag --runtime"
    wanted = annotations.get(ANNOTATION)
    if wanted:
        return _known(wanted, f"annotation {ANNOTATION}"), f"annotation {ANNOTATION}"
    from nexcage.settings import match_route

    rule = match_route(ctx.settings, container_id)
    if rule:
        return _known(rule, "routing rule"), "routing rule"
    if ctx.settings.default_runtime:
        return _known(ctx.settings.default_runtime, "default_runtime"), "default_runtime"
    return default_backend(ctx), "built-in default"


def default_backend(ctx: Context) -> str:
    from nexcage.backends.oci_cli import find_binary

    paths = ctx.settings.runtime_paths
    return "crun" if find_binary("crun", paths.get("crun")) else "runc"


def _known(name: str, source: str) -> str:
    if name not in KNOWN:
        raise UsageError(f"{source}: unknown runtime {name!r} (known: {', '.join(KNOWN)})")
    return name
