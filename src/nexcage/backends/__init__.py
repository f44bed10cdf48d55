"""Backends: crun and runc (``oci_cli``) now; LXC and Proxmox later.

``KNOWN`` lists every backend name nexcage can route to; ``open_backend`` builds one lazily so a
verb imports only the backend it talks to.
"""

from __future__ import annotations

from nexcage.errors import BackendNotFound

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from nexcage.backends.base import Backend

OCI_CLI = ("crun", "runc")
KNOWN = (*OCI_CLI, "lxc")


def open_backend(
    name: str,
    root: str,
    *,
    binary: str | None = None,
    log_file: str | None = None,
    debug: bool = False,
    systemd_cgroup: bool = False,
) -> Backend:
    if name in OCI_CLI:
        from nexcage.backends import oci_cli

        path = oci_cli.find_binary(name, binary)
        if path is None:
            where = binary or f"$PATH or {', '.join(oci_cli.PROFILES[name].binaries)}"
            raise BackendNotFound(name, f"runtime backend {name!r} not found ({where})")
        return oci_cli.OciCli(
            name, path, root, log_file=log_file, debug=debug, systemd_cgroup=systemd_cgroup
        )
    if name == "lxc":
        from nexcage.backends import lxc

        return lxc.open_backend(root, log_file=log_file, debug=debug)
    raise BackendNotFound(name, f"unknown runtime backend {name!r} (known: {', '.join(KNOWN)})")


def known(name: str) -> str:
    """``name`` if nexcage has a backend of that name, else BackendNotFound."""
    if name not in KNOWN:
        raise BackendNotFound(name, f"unknown runtime backend {name!r} (known: {', '.join(KNOWN)})")
    return name


def capabilities_of(name: str) -> frozenset[str]:
    """What backend ``name`` can do (``created-state``, ``exec``, ...), without opening it."""
    if name == "lxc":
        from nexcage.backends import lxc

        return lxc.CAPABILITIES
    from nexcage.backends import oci_cli

    return oci_cli.PROFILES[known(name)].capabilities


def probe(
    paths: Mapping[str, str], root_of: Callable[[str], str]
) -> list[tuple[str, str | None, str | None]]:
    """(name, binary or None, version or None) for every backend, for ``check``."""
    from nexcage.backends import oci_cli

    found: list[tuple[str, str | None, str | None]] = []
    for name in OCI_CLI:
        path = oci_cli.find_binary(name, paths.get(name))
        version = None
        if path:
            try:
                version = oci_cli.OciCli(name, path, root_of(name)).version()
            except Exception:  # a broken binary is reported by check, not raised
                version = None
        found.append((name, path, version))
    return found
