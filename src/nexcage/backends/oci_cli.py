"""crun and runc: one backend class; binary and quirks are data (STYLE.md "engines as data").

Each backend keeps its own state under ``<nexcage root>/.backends/<name>`` (its ``--root``), so
nexcage's containers never collide with containers that crun or runc manage directly.
"""

from __future__ import annotations

import os

from nexcage import OCI_VERSION
from nexcage.errors import CommandFailed, ContainerNotFound, Finding, NexcageError
from nexcage.host import run as host_run

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


class Profile:
    """What differs between OCI CLI runtimes, as data."""

    __slots__ = (
        "binaries",
        "capabilities",
        "config_flag",
        "name",
        "spec_by_version",
        "version_rule",
    )

    def __init__(
        self,
        name: str,
        binaries: tuple[str, ...],
        config_flag: str | None,
        version_rule: str,
        spec_by_version: tuple[tuple[tuple[int, ...], str], ...],
        capabilities: frozenset[str],
    ) -> None:
        self.name = name
        self.binaries = binaries  # where to look, in order (after config and $PATH)
        # A create flag naming the config file, so a derived config.json can be used with the
        # user's bundle directory unchanged (crun -f/--config). None: derive a whole bundle dir.
        self.config_flag = config_flag
        # How the binary checks config.json's ociVersion: see accepts_version().
        self.version_rule = version_rule
        # (binary version below which, newest spec release implemented), in ascending order.
        self.spec_by_version = spec_by_version
        # What the binary can do beyond the runtime-spec operations (``nexcage features``).
        self.capabilities = capabilities


COMMON = frozenset(
    {"created-state", "exec", "pause", "console-socket", "update", "ps", "preserve-fds"}
)

PROFILES: dict[str, Profile] = {
    # crun up to 1.8.x accepts an ociVersion only if it contains the substring "1.0" (strstr), so
    # 1.1.0 passes by accident and 1.2+/1.3 fail with "unknown version specified" (CONTRACTS.md §0,
    # observed with Debian 12's crun 1.8.1).
    # crun 1.8 implements the 1.1.0 fields (scheduler, ioPriority, domainname, ...); the 1.2
    # idmap mounts and later arrived in newer releases.
    "crun": Profile(
        "crun",
        ("/usr/bin/crun", "/usr/local/bin/crun"),
        "--config",
        "substring-1.0",
        (((1, 9), "1.1.0"), ((1, 20), "1.2.0")),
        COMMON,  # crun has no `events` command
    ),
    # runc 1.1.5 (Debian 12) parses ociVersion leniently (it accepts a 1.3.0 config) but would
    # silently ignore fields newer than it knows: runc 1.1 implements 1.1.0, 1.2 implements 1.2.x.
    "runc": Profile(
        "runc",
        ("/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"),
        None,
        "any",
        (((1, 2), "1.1.0"), ((1, 3), "1.2.1")),
        COMMON | {"events"},
    ),
}


def find_binary(name: str, override: str | None = None) -> str | None:
    if override:
        return override if os.access(override, os.X_OK) else None
    for directory in (os.environ.get("PATH") or host_run.DEFAULT_PATH).split(":"):
        candidate = os.path.join(directory or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    for candidate in PROFILES[name].binaries if name in PROFILES else ():
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _version_tuple(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


class OciCli:
    """A runc-compatible runtime binary driven through its command line."""

    __slots__ = (
        "_version",
        "binary",
        "capabilities",
        "global_args",
        "log_file",
        "name",
        "profile",
        "root",
    )

    def __init__(
        self,
        name: str,
        binary: str,
        root: str,
        *,
        log_file: str | None = None,
        debug: bool = False,
        systemd_cgroup: bool = False,
    ) -> None:
        self.name = name
        self.profile = PROFILES[name]
        self.capabilities = self.profile.capabilities
        self.binary = binary
        self.root = root
        self._version: str | None = None
        self.log_file = log_file
        args = [binary, "--root", root]
        if log_file:
            # The backend appends its own JSON lines to our log: containerd reads the last error
            # line, and we re-state the backend's error as our own last line on failure.
            args += ["--log", log_file, "--log-format", "json"]
        if debug:
            args.append("--debug")
        if systemd_cgroup:
            args.append("--systemd-cgroup")
        self.global_args = args

    # -- identity ---------------------------------------------------------------------------
    def version(self) -> str:
        """The backend's version (first line of ``--version``), cached beside its state."""
        if self._version is None:
            self._version = _cached_version(self.binary, self.root)
        return self._version

    def supported_spec(self) -> str:
        """The newest runtime-spec release whose fields this binary implements."""
        mine = _version_tuple(self.version())
        for below, spec in self.profile.spec_by_version:
            if mine < below:
                return spec
        return OCI_VERSION

    def accepts_version(self, oci_version: str) -> bool:
        if self.profile.version_rule == "substring-1.0" and _version_tuple(self.version()) < (1, 9):
            return "1.0" in oci_version
        return True

    def negotiated_version(self) -> str:
        """An ociVersion string this binary accepts, for a derived config.json."""
        if self.profile.version_rule == "substring-1.0" and _version_tuple(self.version()) < (1, 9):
            return "1.1.0"  # contains "1.0", and crun 1.8 implements the 1.1.0 fields
        return self.supported_spec()

    def waited_pid(self, container_id: str, init_pid: int) -> int:
        return init_pid  # the engine reaps the container's init itself

    def check(self, raw: dict[str, Any]) -> list[Finding]:
        """Fields newer than this binary implements: it would ignore them, so refuse them."""
        from nexcage.spec.versions import newer_fields

        supported = self.supported_spec()
        return [
            Finding(
                path,
                f"introduced in runtime-spec {since}; {self.name} {self.version()} "
                f"implements up to {supported}",
            )
            for path, since in newer_fields(raw, supported)
        ]

    # -- verbs --------------------------------------------------------------------------------
    def _argv(self, *args: str) -> list[str]:
        return [*self.global_args, *args]

    def _call(self, *args: str, pass_fds: Sequence[int] = (), input: bytes | None = None) -> None:
        try:
            host_run.run(self._argv(*args), pass_fds=pass_fds, input=input)
        except CommandFailed as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: CommandFailed) -> NexcageError:
        # Lifecycle calls inherit stderr (the container may hold it), so the backend's message is
        # already on stderr or in the log; name the operation for the caller.
        verb = next((a for a in exc.argv[len(self.global_args) :] if not a.startswith("-")), "")
        detail = exc.stderr_tail.strip()
        if not detail and self.log_file:
            from nexcage import log

            detail = log.last_error_line(self.log_file) or ""
        message = f"{self.name} {verb} failed" + (f": {detail}" if detail else "")
        return CommandFailed(exc.argv, exc.returncode, exc.stderr_tail, message=message)

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
    ) -> None:
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if config:
            if not self.profile.config_flag:
                raise NexcageError(f"{self.name} cannot take a separate config file")
            args += [self.profile.config_flag, config]
        if console_socket:
            args += ["--console-socket", console_socket]
        if preserve_fds:
            args += ["--preserve-fds", str(preserve_fds)]
        if no_pivot:
            args.append("--no-pivot")
        if no_new_keyring:
            args.append("--no-new-keyring")
        args.append(container_id)
        listen = int(os.environ.get("LISTEN_FDS", "0") or 0)
        self._call(*args, pass_fds=range(3, 3 + listen + preserve_fds))

    def start(self, container_id: str) -> None:
        self._call("start", container_id)

    def kill(self, container_id: str, signum: int, *, all_processes: bool = False) -> None:
        args = ["kill", *(["--all"] if all_processes else []), container_id, str(signum)]
        self._call(*args)

    def delete(self, container_id: str, *, force: bool = False) -> None:
        args = ["delete", *(["--force"] if force else []), container_id]
        try:
            host_run.run(self._argv(*args), capture=True)
        except CommandFailed as exc:
            if "does not exist" in exc.stderr_tail or "not exist" in exc.stderr_tail:
                raise ContainerNotFound(container_id) from None
            raise CommandFailed(
                exc.argv,
                exc.returncode,
                exc.stderr_tail,
                message=f"{self.name} delete failed: {exc.stderr_tail.strip()}",
            ) from None

    def pause(self, container_id: str) -> None:
        self._call("pause", container_id)

    def resume(self, container_id: str) -> None:
        self._call("resume", container_id)

    def update(self, container_id: str, options: Sequence[str], stdin: bytes | None) -> None:
        self._call("update", *options, container_id, input=stdin)

    def exec_argv(
        self, container_id: str, options: Sequence[str], command: Sequence[str]
    ) -> list[str]:
        """argv for ``exec``; the caller replaces itself with it (exit status passes through)."""
        return self._argv("exec", *options, container_id, *command)

    def ps_argv(self, container_id: str, fmt: str, ps_args: Sequence[str]) -> list[str]:
        return self._argv("ps", "--format", fmt, container_id, *ps_args)

    def events_argv(self, container_id: str, options: Sequence[str]) -> list[str]:
        return self._argv("events", *options, container_id)


def _cached_version(binary: str, root: str) -> str:
    """``<binary> --version`` first line; cached in ``<root>/.version`` keyed by the binary's
    identity (path, size, mtime) so creates do not pay a subprocess each time."""
    st = os.stat(binary)
    key = f"{binary}\0{st.st_size}\0{st.st_mtime_ns}"
    cache = os.path.join(root, ".version")
    try:
        with open(cache, encoding="utf-8") as f:
            cached_key, _, value = f.read().partition("\n")
        if cached_key == key and value:
            return value
    except OSError:
        pass
    out = host_run.run([binary, "--version"], capture=True).stdout.decode("utf-8", "replace")
    first = out.splitlines()[0] if out else ""
    version = first.rsplit(" ", 1)[-1] if " version " in first else first
    try:
        os.makedirs(root, mode=0o700, exist_ok=True)
        from nexcage.host import fs

        fs.atomic_write(cache, f"{key}\n{version}".encode(), 0o600)
    except OSError:
        pass
    return version
