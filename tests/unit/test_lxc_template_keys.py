"""Image config -> the ``config`` of an LXC image (backends/translate/lxc_template.py), pure."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nexcage.backends.translate import lxc_template as lt
from nexcage.errors import Violation
from nexcage.image.bundle import runtime_spec
from nexcage.image.user import ExecUser
from nexcage.spec.config import parse_config

INJECT = "x\nlxc.mount.entry = / host-root none rbind,create=dir 0 0"
IMAGE: dict[str, Any] = {
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "Entrypoint": ["/usr/local/bin/serve"],
        "Cmd": ["--port", "80"],
        "Env": ["PATH=/usr/local/bin:/bin", "FOO=from image"],
        "WorkingDir": "/srv/app",
        "User": "app",
        "StopSignal": "SIGUSR1",
    },
    "rootfs": {"type": "layers", "diff_ids": []},
}
APP = ExecUser(1001, 1001, [10, 29], "/app")


def image(**config: Any) -> dict[str, Any]:
    doc = copy.deepcopy(IMAGE)
    for key, value in config.items():
        if value is None:
            doc["config"].pop(key, None)
        else:
            doc["config"][key] = value
    return doc


def keys(doc: dict[str, Any], user: ExecUser = APP) -> lt.Translation:
    return lt.template_keys(parse_config(runtime_spec(doc, user, cgroup_ns=False)), doc)


def test_keys_in_order() -> None:
    t = keys(IMAGE)
    assert t.findings == []
    assert t.keys == [
        ("lxc.arch", "amd64"),
        ("lxc.init.cmd", "/usr/local/bin/serve --port 80"),
        ("lxc.signal.halt", "SIGUSR1"),
        ("lxc.environment", "PATH=/usr/local/bin:/bin"),
        ("lxc.environment", "FOO=from image"),
        ("lxc.environment", "HOME=/app"),
        ("lxc.init.cwd", "/srv/app"),
        ("lxc.init.uid", "1001"),
        ("lxc.init.gid", "1001"),
        ("lxc.init.groups", "10,29"),
    ]


def test_defaults() -> None:
    """No Env, WorkingDir, User or StopSignal: the bundle conversion's defaults, and SIGTERM
    (LXC's own default, SIGPWR, is for a system init)."""
    doc = image(Env=None, WorkingDir=None, User=None, StopSignal=None, Entrypoint=None)
    doc["architecture"] = "sparc"  # no lxc.arch for an architecture LXC has no name for
    t = keys(doc, ExecUser(0, 0, [], "/root"))
    assert t.findings == []
    assert t.keys[0] == ("lxc.init.cmd", "--port 80")
    assert t.get("lxc.environment")[0].startswith("PATH=/usr/local/sbin:")
    assert t.get("lxc.init.cwd") == ["/"]
    assert t.get("lxc.signal.halt") == ["SIGTERM"]
    assert t.get("lxc.arch") == [] and t.get("lxc.init.groups") == []


@pytest.mark.parametrize(("signal", "key"), [("9", "9"), ("sigint", "SIGINT"), ("HUP", "SIGHUP")])
def test_stop_signal(signal: str, key: str) -> None:
    assert keys(image(StopSignal=signal)).get("lxc.signal.halt") == [key]


def test_arguments_lxc_cannot_split() -> None:
    t = keys(image(Cmd=["sh", "-c", "echo a b"]))
    assert [f.path for f in t.findings] == ["config.Cmd"]
    assert "splits lxc.init.cmd on spaces" in t.findings[0].reason
    assert t.get("lxc.init.cmd") == []


def test_translation_findings_carry_image_paths() -> None:
    t = keys(image(Env=["PATH=/bin", "A=1", "LXC_HOOK=1"]))
    assert [f.path for f in t.findings] == ["config.Env[2]"]
    assert "LXC_* names refused" in t.findings[0].reason


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"Env": ["PATH=/bin", "EVIL=" + INJECT]}, "config.Env[1]"),
        ({"Env": ["PATH=/bin\r"]}, "config.Env[0]"),
        ({"WorkingDir": "/srv" + INJECT}, "config.WorkingDir"),
        ({"User": "app\nlxc.init.uid = 0"}, "config.User"),
        ({"StopSignal": "TERM\n" + INJECT}, "config.StopSignal"),
        ({"Entrypoint": ["/bin/sh\0"]}, "config.Entrypoint[0]"),
        ({"Cmd": ["a", "b\nlxc.init.uid = 0"]}, "config.Cmd[1]"),
    ],
)  # fmt: skip
def test_line_breaks_and_nul_are_refused_by_path(config: dict[str, Any], path: str) -> None:
    problems = lt.check_image(image(**config))
    assert [v.path for v in problems] == [path]
    assert "refused, it would inject lines" in problems[0].message


def test_every_problem_at_once() -> None:
    doc = image(Env=["A=1\n", "B=LXC_ROOTFS/x"], WorkingDir="/\r", StopSignal="\0")
    assert [v.path for v in lt.check_image(doc)] == [
        "config.Env[0]", "config.Env[1]", "config.WorkingDir", "config.StopSignal"
    ]  # fmt: skip


@pytest.mark.parametrize("word", lt.PLACEHOLDERS)
def test_words_lxc_local_rewrites_are_refused(word: str) -> None:
    why = f"contains {word}, which lxc-local replaces when it creates a container"
    assert lt.check_image(image(Env=["PATH=/bin", f"DIR=/{word}/x"])) == [
        Violation("config.Env[1]", why)
    ]


def test_values_from_the_rootfs_are_checked_too() -> None:
    """HOME comes from the image's /etc/passwd, after the image config was checked."""
    t = keys(image(Env=["PATH=/bin"]), ExecUser(1001, 1001, [], "/home/LXC_NAME"))
    assert [(f.path, f.reason.split(",")[0]) for f in t.findings] == [
        ("lxc.environment", "contains LXC_NAME")
    ]


def test_config_files() -> None:
    t = keys(IMAGE)
    text = lt.config_text(t.keys, "made by a test\nsecond line")
    lines = text.splitlines()
    assert lines[:3] == [
        "# made by a test",
        "# second line",
        "lxc.include = LXC_TEMPLATE_CONFIG/common.conf",
    ]
    assert "lxc.init.cmd = /usr/local/bin/serve --port 80" in lines
    assert "lxc.environment = FOO=from image" in lines
    user = lt.config_text(t.keys, "", user=True).splitlines()
    assert user[:2] == [
        "lxc.include = LXC_TEMPLATE_CONFIG/common.conf",
        "lxc.include = LXC_TEMPLATE_CONFIG/userns.conf",
    ]
    with pytest.raises(ValueError, match="line feed"):
        lt.config_text([("lxc.environment", "A=" + INJECT)], "")
