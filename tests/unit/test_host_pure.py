"""Signals, proc identity, fastjson and the pid file format."""

from __future__ import annotations

import json
import os

import pytest

from nexcage import fastjson
from nexcage.errors import UsageError
from nexcage.host import fs, proc, signals


@pytest.mark.parametrize(
    ("text", "num"),
    [
        ("KILL", 9),
        ("SIGKILL", 9),
        ("9", 9),
        ("term", 15),
        ("SIGUSR1", 10),
        ("HUP", 1),
        ("RTMIN", 34),
        ("RTMIN+3", 37),
        ("SIGRTMAX-1", 63),
        ("WINCH", 28),
    ],
)
def test_signal_names(text: str, num: int) -> None:
    assert signals.parse(text) == num


@pytest.mark.parametrize("bad", ["FOO", "SIGFOO", "0", "65", "-9", "RTMIN+99", ""])
def test_unknown_signal(bad: str) -> None:
    with pytest.raises(UsageError, match="unknown signal"):
        signals.parse(bad)


def test_start_time_identifies_this_process() -> None:
    start = proc.start_time(os.getpid())
    assert start is not None and proc.alive(os.getpid(), start)
    assert not proc.alive(os.getpid(), start + 1)  # a recycled pid is not ours
    assert proc.start_time(0) is None and proc.start_time(2**22 + 1) is None


@pytest.mark.parametrize(
    "doc",
    [{"a": [1, 2.5, None, True, False, "x\u00e9\n"], "b": {}}, [], "s", 0, {"nested": [[{}]]}],
)
def test_fastjson_matches_json(doc: object) -> None:
    assert fastjson.loads(json.dumps(doc)) == doc
    assert json.loads(fastjson.dumps(doc)) == doc
    assert fastjson.dumps(doc, indent=2) == json.dumps(doc, indent=2)


@pytest.mark.parametrize("bad", ["", "{", "[1,]", "NaN", '{"a":1} x', "\ufeff{", b"\xff\xfe"])
def test_fastjson_rejects(bad: str | bytes) -> None:
    if bad == "\ufeff{":
        bad = b"\xef\xbb\xbf{"
    with pytest.raises(fastjson.JSONError):
        fastjson.loads(bad)


def test_fastjson_error_position() -> None:
    with pytest.raises(fastjson.JSONError) as info:
        fastjson.loads('{\n  "a": ,\n}')
    assert (info.value.lineno, info.value.colno) == (2, 8)


def test_pid_file_format(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(str(tmp_path), "init.pid")
    fs.write_pid_file(path, 4321)
    assert open(path).read() == "4321"  # runc: no trailing newline
    assert os.listdir(str(tmp_path)) == ["init.pid"]


def test_remove_tree_does_not_follow_symlinks(tmp_path: os.PathLike[str]) -> None:
    outside = os.path.join(str(tmp_path), "outside")
    os.makedirs(outside)
    open(os.path.join(outside, "keep"), "w").close()
    tree = os.path.join(str(tmp_path), "tree")
    os.makedirs(os.path.join(tree, "d"))
    os.symlink(outside, os.path.join(tree, "d", "link"))
    fs.remove_tree(tree)
    assert not os.path.exists(tree)
    assert os.path.exists(os.path.join(outside, "keep"))
