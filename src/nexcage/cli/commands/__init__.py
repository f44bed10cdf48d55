"""One module per verb. Option tables live here so parsing needs no verb module imported."""

from __future__ import annotations

from nexcage.cli.parser import BOOL, MULTI, VALUE, Option

_CREATE: tuple[Option, ...] = (
    (("--bundle", "-b"), "bundle", VALUE),
    (("--console-socket",), "console_socket", VALUE),
    (("--pid-file",), "pid_file", VALUE),
    (("--no-pivot",), "no_pivot", BOOL),
    (("--no-new-keyring",), "no_new_keyring", BOOL),
    (("--preserve-fds",), "preserve_fds", VALUE),
    (("--pidfd-socket",), "pidfd_socket", VALUE),
    (("--no-subreaper",), "no_subreaper", BOOL),  # crun accepts and ignores it on create
)
_FORMAT: tuple[Option, ...] = ((("--format", "-f"), "format", VALUE),)
_UPDATE: tuple[Option, ...] = (
    (("--resources", "-r"), "resources", VALUE),
    *(
        ((f"--{name}",), name.replace("-", "_"), VALUE)
        for name in (
            "memory", "memory-swap", "memory-reservation", "kernel-memory", "kernel-memory-tcp",
            "cpu-period", "cpu-quota", "cpu-burst", "cpu-share", "cpu-rt-period",
            "cpu-rt-runtime", "cpuset-cpus", "cpuset-mems", "cpu-idle", "pids-limit",
            "blkio-weight", "l3-cache-schema", "mem-bw-schema",
        )
    ),
)

# verb -> (options, has a command tail after the id)
OPTIONS: dict[str, tuple[tuple[Option, ...], bool]] = {
    "create": (_CREATE, False),
    "run": (
        (*_CREATE, (("--detach", "-d"), "detach", BOOL), (("--keep",), "keep", BOOL)),
        False,
    ),
    "start": ((), False),
    "state": ((), False),
    "kill": (((("--all", "-a"), "all", BOOL),), False),
    "delete": (((("--force", "-f"), "force", BOOL),), False),
    "exec": (
        (
            (("--process", "-p"), "process", VALUE),
            (("--detach", "-d"), "detach", BOOL),
            (("--tty", "-t"), "tty", BOOL),
            (("--console-socket",), "console_socket", VALUE),
            (("--pidfd-socket",), "pidfd_socket", VALUE),
            (("--pid-file",), "pid_file", VALUE),
            (("--cwd",), "cwd", VALUE),
            (("--env", "-e"), "env", MULTI),
            (("--user", "-u"), "user", VALUE),
            (("--additional-gids", "-g"), "additional_gids", MULTI),
            (("--cap", "-c"), "cap", MULTI),
            (("--process-label",), "process_label", VALUE),
            (("--apparmor",), "apparmor", VALUE),
            (("--no-new-privs",), "no_new_privs", BOOL),
            (("--preserve-fds",), "preserve_fds", VALUE),
            (("--cgroup",), "cgroup", VALUE),
            (("--ignore-paused",), "ignore_paused", BOOL),
        ),
        True,
    ),
    "list": ((*_FORMAT, (("--quiet", "-q"), "quiet", BOOL)), False),
    "ps": (_FORMAT, True),
    "pause": ((), False),
    "resume": ((), False),
    "update": (_UPDATE, False),
    "features": ((), False),
    "spec": (
        ((("--bundle", "-b"), "bundle", VALUE), (("--rootless",), "rootless", BOOL)),
        False,
    ),
    "events": (
        ((("--interval",), "interval", VALUE), (("--stats",), "stats", BOOL)),
        False,
    ),
    "check": (_FORMAT, False),
    "config": (_FORMAT, False),
}
