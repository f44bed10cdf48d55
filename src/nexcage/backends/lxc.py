"""LXC backend (being built; see the open issue)."""

from __future__ import annotations

from nexcage.errors import BackendNotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from nexcage.backends.base import Backend


def open_backend(root: str, *, log_file: str | None = None, debug: bool = False) -> Backend:
    raise BackendNotFound("lxc", "the lxc backend is not implemented yet")
