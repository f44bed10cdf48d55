"""nexcage exec [-p FILE | CMD...] [-d] [-t] [--console-socket S] [--pid-file F] ... ID

The process replaces itself with the backend's exec, so the exit status (255 when the process
cannot start, runc) and signals are the backend's own."""

from __future__ import annotations

from nexcage.cli.main import make_context
from nexcage.cli.parser import BOOL, MULTI, VALUE, Args, Option, int_option
from nexcage.errors import UsageError
from nexcage.ops import process

OPTIONS: tuple[Option, ...] = (
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
)
TAIL = True  # everything after the id is the command

# Flags that are not process fields: passed to the backend as given.
_PASSTHROUGH = (
    ("console_socket", "--console-socket"),
    ("pid_file", "--pid-file"),
    ("preserve_fds", "--preserve-fds"),
    ("cgroup", "--cgroup"),
    ("pidfd_socket", "--pidfd-socket"),
)


def run(args: Args) -> int:
    if not args.positionals:
        raise UsageError('"exec" requires a minimum of 1 argument')
    container_id, command = args.positionals[0], args.positionals[1:]
    passthrough: list[str] = []
    for dest, flag in _PASSTHROUGH:
        value = args.get(dest)
        if value is not None:
            passthrough += [flag, value]
    if args.flag("detach"):
        passthrough.append("--detach")
    if args.flag("tty"):
        passthrough.append("--tty")
    options = process.ExecOptions(
        env=args.many("env"),
        cwd=args.get("cwd"),
        user=args.get("user"),
        additional_gids=args.many("additional_gids"),
        caps=args.many("cap"),
        tty=args.options.get("tty") is True,
        no_new_privs=True if args.flag("no_new_privs") else None,
        apparmor=args.get("apparmor"),
        process_label=args.get("process_label"),
    )
    process.exec_(
        make_context(args),
        container_id,
        passthrough,
        command,
        process_file=args.get("process"),
        options=options,
        ignore_paused=args.flag("ignore_paused"),
        preserve_fds=int_option(args, "preserve_fds"),
    )
    return 0  # not reached: exec_ replaces this process
