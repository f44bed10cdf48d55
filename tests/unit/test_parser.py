"""The command-line grammar engines use (CONTRACTS.md §1.2, §1.19, §1.20)."""

from __future__ import annotations

import pytest

from nexcage.cli.main import COMMANDS, _options_of
from nexcage.cli.parser import parse
from nexcage.errors import UsageError


def p(*argv: str):  # type: ignore[no-untyped-def]
    return parse(list(argv), COMMANDS, _options_of)


def test_containerd_create_argv() -> None:
    a = p(
        "--root",
        "/run/containerd/runc/default",
        "--log",
        "/b/log.json",
        "--log-format",
        "json",
        "create",
        "--bundle",
        "/b",
        "--pid-file",
        "/b/init.pid",
        "--preserve-fds",
        "2",
        "c1",
    )
    assert a.command == "create"
    assert a.glob("root") == "/run/containerd/runc/default"
    assert a.glob("log_format") == "json"
    assert a.get("bundle") == "/b" and a.get("pid_file") == "/b/init.pid"
    assert a.get("preserve_fds") == "2"
    assert a.positionals == ["c1"]


def test_equals_forms_and_single_dash_long_flags() -> None:
    a = p("--root=/r", "update", "--resources=-", "c1")
    assert a.glob("root") == "/r" and a.get("resources") == "-"
    a = p("run", "-bundle", "/b", "-no-subreaper", "c1")
    assert a.get("bundle") == "/b" and a.flag("no_subreaper")


def test_bool_with_value() -> None:
    assert not p("exec", "--tty=false", "c1", "sh").flag("tty")
    assert p("exec", "--tty=true", "c1", "sh").flag("tty")
    with pytest.raises(UsageError):
        p("exec", "--tty=maybe", "c1", "sh")


def test_unknown_global_flags_are_tolerated() -> None:
    a = p("--cgroup-manager", "disabled", "--rootless=false", "--weird", "state", "c1")
    assert a.command == "state" and a.positionals == ["c1"]
    a = p("--some-bool", "kill", "c1", "9")
    assert a.command == "kill" and a.positionals == ["c1", "9"]


def test_global_flags_after_the_verb() -> None:
    a = p("state", "--root", "/r", "c1")
    assert a.glob("root") == "/r" and a.positionals == ["c1"]


def test_unknown_command_flag_is_usage_error() -> None:
    with pytest.raises(UsageError, match="flag provided but not defined: --nope"):
        p("create", "--nope", "c1")


def test_missing_value() -> None:
    with pytest.raises(UsageError, match="flag needs an argument"):
        p("create", "--bundle")


def test_unknown_verb() -> None:
    with pytest.raises(UsageError):
        p("frobnicate", "c1")


def test_exec_tail_keeps_command_flags() -> None:
    a = p("exec", "-e", "A=1", "--env", "B=2", "c1", "ls", "-la", "--color")
    assert a.many("env") == ["A=1", "B=2"]
    assert a.positionals == ["c1", "ls", "-la", "--color"]


def test_conmon_exec_argv() -> None:
    a = p(
        "exec",
        "--pid-file",
        "/p",
        "--process",
        "/s.json",
        "--detach",
        "--tty",
        "--console-socket",
        "/sock",
        "c1",
    )
    assert a.get("process") == "/s.json" and a.flag("detach") and a.flag("tty")
    assert a.positionals == ["c1"]


def test_ps_tail() -> None:
    a = p("ps", "--format", "table", "c1", "-ef")
    assert a.get("format") == "table" and a.positionals == ["c1", "-ef"]


def test_kill_all_and_signal() -> None:
    a = p("kill", "--all", "c1", "9")
    assert a.flag("all") and a.positionals == ["c1", "9"]


def test_double_dash() -> None:
    a = p("exec", "c1", "--", "echo", "-n")
    assert a.positionals == ["c1", "echo", "-n"]
