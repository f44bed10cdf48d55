"""The backend protocol. Imported only for type checking (``typing`` is off the hot path)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from nexcage.errors import Finding


class Backend(Protocol):
    name: str
    capabilities: frozenset[str]

    def version(self) -> str: ...
    def accepts_version(self, oci_version: str) -> bool: ...
    def negotiated_version(self) -> str: ...
    def waited_pid(self, container_id: str, init_pid: int) -> int:
        """The pid engines get in --pid-file and reap for the exit status: init itself, or a
        process that lives exactly as long as the container and exits with init's status
        (LXC's monitor: LXC's init is never the engine's child)."""
        ...

    def supported_spec(self) -> str: ...
    def check(self, raw: dict[str, Any]) -> list[Finding]:
        """Fields of config.json this backend cannot honour (never dropped silently)."""
        ...

    def create(
        self,
        container_id: str,
        bundle: str,
        *,
        config: str | None,
        pid_file: str,
        console_socket: str | None = None,
        preserve_fds: int = 0,
        no_pivot: bool = False,
        no_new_keyring: bool = False,
    ) -> None: ...
    def start(self, container_id: str) -> None: ...
    def kill(self, container_id: str, signum: int, *, all_processes: bool = False) -> None: ...
    def delete(self, container_id: str, *, force: bool = False) -> None: ...
    def pause(self, container_id: str) -> None: ...
    def resume(self, container_id: str) -> None: ...
    def update(self, container_id: str, options: Sequence[str], stdin: bytes | None) -> None: ...
    def exec_argv(
        self, container_id: str, options: Sequence[str], command: Sequence[str]
    ) -> list[str]:
        """argv to replace nexcage with; [] when the backend started a detached exec itself."""
        ...

    def ps_argv(self, container_id: str, fmt: str, ps_args: Sequence[str]) -> list[str]:
        """argv to replace nexcage with; [] to list the container's cgroup pids instead."""
        ...

    def events_argv(self, container_id: str, options: Sequence[str]) -> list[str]: ...
