"""``create``: write the LXC config, start the monitor, wait for the held init; ``start``: release.

See the package docstring for the design. The order of a create:

1. translate config.json (pure) and refuse on any finding;
2. write ``<root>/<id>/``: ``config``, ``hook``, ``nexcage/process``, ``nexcage/exec.fifo``;
3. spawn ``nexcage-lxc-monitor`` in its own session with our fds 0-2, the preserved fds and the
   sync socket at the fd after them;
4. wait for the helper's ``ready`` (its host pid, a pty master with ``process.terminal``),
   hand the pty to ``--console-socket``, write the pid records.

Anything failing after step 2 is undone by the caller (``delete --force``).
"""

from __future__ import annotations

import os

from nexcage.backends.lxc import CONFIG, INNER, STATE, Lxc, Pids, translation_for
from nexcage.errors import NexcageError, Unsupported
from nexcage.host import fs, proc
from nexcage.host import run as host_run

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from nexcage.backends.translate.lxc_config import Translation

FIFO = "exec.fifo"
START_TIMEOUT = 60.0


class InitFailed(NexcageError):
    """The container's init did not come up (reported by the helper or LXC's log)."""


def create(
    backend: Lxc,
    container_id: str,
    bundle: str,
    config: str | None,
    pid_file: str,
    console_socket: str | None,
    preserve_fds: int,
) -> None:
    from nexcage.backends.lxc import install

    helper, monitor = install.find()
    directory = backend.dir(container_id)
    raw = _read_config(config or os.path.join(bundle, "config.json"))
    translation = translation_for(backend, container_id, raw, bundle, helper)
    if translation.findings:
        raise Unsupported(backend.name, translation.findings)
    if os.path.lexists(directory):
        fs.remove_tree(directory)  # left by a create that died before its cleanup
    inner = os.path.join(directory, INNER)
    os.makedirs(inner, mode=0o755)
    os.chmod(directory, 0o700)
    listen = int(os.environ.get("LISTEN_FDS", "0") or 0)
    preserved = list(range(3, 3 + listen + preserve_fds))
    sync_fd = 3 + len(preserved)
    translation.init.insert(0, ("sync", str(sync_fd)))
    _write_files(directory, inner, translation, container_id)
    from nexcage.backends.lxc import sync

    ours, pid = _spawn_monitor(
        [monitor, container_id, backend.root, os.path.join(directory, "lxc.log")],
        preserved,
        sync_fd,
    )
    monitor_start = proc.start_time(pid) or 0
    # Recorded at once: a failure below is cleaned up by delete, which needs the monitor.
    fs.atomic_write(os.path.join(directory, STATE), Pids(0, 0, pid, monitor_start).encode())
    try:
        init, master = sync.wait_ready(ours, pid, START_TIMEOUT)
    except sync.ChildFailed as exc:
        raise InitFailed(
            f"lxc: container init failed: {exc.message or _log_tail(directory)}"
        ) from None
    finally:
        ours.close()
    try:
        if master >= 0 and console_socket:
            sync.send_console(console_socket, master)
    finally:
        if master >= 0:
            os.close(master)
    init_start = proc.start_time(init)
    if init_start is None:
        raise InitFailed(f"lxc: container init exited during create: {_log_tail(directory)}")
    fs.atomic_write(
        os.path.join(directory, STATE), Pids(init, init_start, pid, monitor_start).encode()
    )
    fs.write_pid_file(pid_file, init)


def _spawn_monitor(argv: list[str], preserved: list[int], sync_fd: int) -> tuple[Any, int]:
    """Start the monitor in its own session with the sync socket at ``sync_fd``."""
    from nexcage.backends.lxc import sync

    ours, theirs = sync.channel()
    try:
        child = theirs.fileno()
        if child == sync_fd:  # posix_spawn's dup2 onto itself would keep FD_CLOEXEC
            child = os.dup(child)
        pid = host_run.spawn(argv, pass_fds=preserved, dup2=[(child, sync_fd)], setsid=True)
        if child != theirs.fileno():
            os.close(child)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return ours, pid


def _read_config(path: str) -> dict[str, object]:
    from nexcage.spec.config import read_config

    raw = read_config(path)
    if not isinstance(raw, dict):
        raise NexcageError(f"{path}: not a JSON object")
    return raw


def _write_files(directory: str, inner: str, translation: Translation, container_id: str) -> None:
    from nexcage.backends.translate import lxc_config

    header = f"written by nexcage for container {container_id}; do not edit"
    text = lxc_config.render(translation.keys, header)
    fs.atomic_write(os.path.join(directory, CONFIG), text.encode(), 0o600)
    fs.atomic_write(
        os.path.join(directory, "hook"), lxc_config.hook_records(translation.hook), 0o600
    )
    fs.atomic_write(os.path.join(inner, "process"), lxc_config.records(translation.init), 0o644)
    fifo = os.path.join(inner, FIFO)
    os.mkfifo(fifo, 0o600)
    os.chmod(fifo, 0o622)  # the init may run as any uid; only it and start open it
    with open(os.path.join(inner, "init"), "wb"):
        pass  # mount point of the helper binary


def _log_tail(directory: str) -> str:
    """LXC's own reason, from the monitor's log (ERROR level)."""
    try:
        with open(os.path.join(directory, "lxc.log"), encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return "no reason logged"
    if not lines:
        return "no reason logged"
    # "nexcage-lxc-monitor <id> <time> ERROR <module> - <file>:<func>:<line> - <message>"
    messages = [line.rsplit(" - ", 1)[-1] for line in lines[-3:]]
    return "; ".join(messages)


def release(backend: Lxc, container_id: str, pids: Pids) -> None:
    """``start``: open the FIFO the held init is blocked on and read its byte."""
    import select

    fifo = os.path.join(backend.dir(container_id), INNER, FIFO)
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        waited = 0
        while True:
            if poller.poll(50):
                try:
                    data = os.read(fd, 1)
                except BlockingIOError:
                    data = b""
                if data:
                    return
            if not pids.init_alive():
                raise InitFailed("lxc: the container's init exited before start")
            waited += 50
            if waited > START_TIMEOUT * 1000:
                raise InitFailed("lxc: the container's init did not take the start signal")
    finally:
        os.close(fd)
