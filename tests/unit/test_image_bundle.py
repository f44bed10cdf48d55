"""Image config -> runtime config (umoci's rules, CONTRACTS.md §3.9) and User resolution
(moby/sys/user GetExecUser), pure."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nexcage.errors import InvalidImage
from nexcage.image import bundle
from nexcage.image.user import ExecUser, resolve
from nexcage.spec.validate import check_config

PASSWD = """root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:User:/home/user:/bin/sh

daemon:x:2:2::/srv/daemon:/bin/false
app:x:1001:1001::/app:/bin/sh
"""
GROUP = """root:x:0:
wheel:x:10:user,app
audio:x:29:app
user:x:1000:
app:x:1001:
"""

IMAGE: dict[str, Any] = {
    "created": "2024-05-01T00:00:00Z",
    "author": "nexcage tests",
    "architecture": "amd64",
    "os": "linux",
    "config": {
        "User": "app",
        "Env": ["PATH=/usr/bin:/bin", "FOO=bar"],
        "Entrypoint": ["/entry.sh"],
        "Cmd": ["serve", "--port", "80"],
        "WorkingDir": "/srv/app",
        "Volumes": {"/data": {}, "/cache/": {}},
        "ExposedPorts": {"80/tcp": {}, "53/udp": {}},
        "StopSignal": "SIGQUIT",
        "Labels": {"org.opencontainers.image.author": "label wins", "team": "infra"},
    },
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "a" * 64]},
}


def image(**config: Any) -> dict[str, Any]:
    doc = copy.deepcopy(IMAGE)
    for key, value in config.items():
        if value is None:
            doc["config"].pop(key, None)
        else:
            doc["config"][key] = value
    return doc


def spec_of(doc: dict[str, Any], **kw: Any) -> dict[str, Any]:
    user = resolve(bundle.user_spec(doc), PASSWD, GROUP)
    return bundle.runtime_spec(doc, user, hostname="c0ffee", **kw)


def test_full_conversion() -> None:
    spec = spec_of(IMAGE)
    process = spec["process"]
    assert process["args"] == ["/entry.sh", "serve", "--port", "80"]
    assert process["env"] == ["PATH=/usr/bin:/bin", "FOO=bar", "HOME=/app"]
    assert process["cwd"] == "/srv/app"
    assert process["user"] == {"uid": 1001, "gid": 1001, "additionalGids": [10, 29]}
    assert process["terminal"] is False
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["hostname"] == "c0ffee"
    assert spec["ociVersion"] == "1.0.2"  # the oldest release covering its fields
    volumes = [m for m in spec["mounts"] if m["destination"] in ("/data", "/cache")]
    assert volumes == [
        {"destination": d, "type": "tmpfs", "source": "none",
         "options": ["rw", "nosuid", "nodev", "noexec", "relatime"]}
        for d in ("/cache", "/data")
    ]  # fmt: skip
    assert spec["annotations"] == {
        "org.opencontainers.image.os": "linux",
        "org.opencontainers.image.architecture": "amd64",
        "org.opencontainers.image.author": "label wins",  # labels win (conversion.md)
        "org.opencontainers.image.created": "2024-05-01T00:00:00Z",
        "org.opencontainers.image.stopSignal": "SIGQUIT",
        "org.opencontainers.image.exposedPorts": "53/udp,80/tcp",
        "team": "infra",
    }
    check_config(spec)  # the bundle passes the runtime-spec validation


def test_command_replaces_cmd_keeps_entrypoint() -> None:
    assert spec_of(IMAGE, command=["sh", "-c", "id"])["process"]["args"] == [
        "/entry.sh", "sh", "-c", "id",
    ]  # fmt: skip
    no_entry = image(Entrypoint=None)
    assert spec_of(no_entry, command=["id"])["process"]["args"] == ["id"]
    assert spec_of(no_entry)["process"]["args"] == ["serve", "--port", "80"]
    assert spec_of(image(Cmd=None))["process"]["args"] == ["/entry.sh"]


def test_defaults_and_terminal() -> None:
    doc = image(User=None, Env=None, WorkingDir=None, Volumes=None, Labels=None, StopSignal=None,
                ExposedPorts=None)  # fmt: skip
    spec = spec_of(doc)
    assert spec["process"]["cwd"] == "/"
    assert spec["process"]["user"] == {"uid": 0, "gid": 0}
    assert spec["process"]["env"] == [bundle.DEFAULT_PATH, "HOME=/root"]
    tty = spec_of(doc, tty=True)["process"]
    assert tty["terminal"] is True and "TERM=xterm" in tty["env"]
    assert "org.opencontainers.image.stopSignal" not in spec["annotations"]


def test_env_override_and_home_from_image() -> None:
    env = spec_of(image(Env=["PATH=/x", "HOME=/elsewhere", "A=1=2"]))["process"]["env"]
    assert env == ["PATH=/x", "HOME=/elsewhere", "A=1=2"]


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"Env": ["A=1", "B=2", 3]}, "config.Env[2]"),
        ({"Env": ["NOEQUALS"]}, "config.Env[0]"),
        ({"Env": ["A=\0"]}, "config.Env[0]"),
        ({"Cmd": ["ok", None]}, "config.Cmd[1]"),
        ({"Entrypoint": "sh -c x"}, "config.Entrypoint"),
        ({"User": 1000}, "config.User"),
        ({"WorkingDir": "relative/dir"}, "config.WorkingDir"),
        ({"Volumes": {"data": {}}}, "config.Volumes.data"),
        ({"Labels": {"x": 1}}, "config.Labels.x"),
        ({"StopSignal": "SIG\nTERM"}, "config.StopSignal"),
        ({"Entrypoint": None, "Cmd": None}, "config.Cmd"),
    ],
)
def test_bad_image_configs_name_the_json_path(config: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidImage) as info:
        spec_of(image(**config))
    assert path in [v.path for v in info.value.violations], info.value.violations


def test_every_violation_reported_at_once() -> None:
    with pytest.raises(InvalidImage) as info:
        bundle.validate(image(Env=[1, 2], Cmd=[None]))
    assert [v.path for v in info.value.violations] == ["config.Env[0]", "config.Env[1]",
                                                       "config.Cmd[0]"]  # fmt: skip


def test_non_linux_image_refused() -> None:
    doc = copy.deepcopy(IMAGE)
    doc["os"] = "windows"
    with pytest.raises(InvalidImage, match="only linux"):
        bundle.validate(doc)


def test_nul_in_command_refused() -> None:
    with pytest.raises(InvalidImage, match=r"command\[1\]"):
        bundle.validate(IMAGE, ["a", "b\0"])


# -- User ------------------------------------------------------------------------------------


def ids(user: ExecUser) -> tuple[int, int, list[int], str]:
    return user.uid, user.gid, user.additional_gids, user.home


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", (0, 0, [], "/root")),
        ("root", (0, 0, [], "/root")),
        ("user", (1000, 1000, [10], "/home/user")),
        ("1000", (1000, 1000, [10], "/home/user")),  # numeric found in passwd: runc/umoci
        ("1000:1000", (1000, 1000, [], "/home/user")),  # explicit group: no extra groups
        ("app:audio", (1001, 29, [], "/app")),
        ("app:29", (1001, 29, [], "/app")),
        ("4242", (4242, 0, [], "/")),  # numeric, no entry: used as is
        ("4242:4343", (4242, 4343, [], "/")),
        ("user:4343", (1000, 4343, [], "/home/user")),
        ("daemon", (2, 2, [], "/srv/daemon")),
    ],
)
def test_user_resolution(spec: str, expected: tuple[int, int, list[int], str]) -> None:
    assert ids(resolve(spec, PASSWD, GROUP)) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nobody", "unable to find user nobody"),
        ("user:nogroup", "unable to find group nogroup"),
        ("-5", "out of range"),
    ],
)
def test_user_errors(spec: str, message: str) -> None:
    with pytest.raises(InvalidImage, match=message) as info:
        resolve(spec, PASSWD, GROUP)
    assert info.value.violations[0].path == "config.User"


def test_user_without_passwd_files() -> None:
    assert ids(resolve("1000:1000", None, None)) == (1000, 1000, [], "/")
    assert ids(resolve("", None, None)) == (0, 0, [], "/")
    with pytest.raises(InvalidImage):
        resolve("user", None, None)


def test_malformed_passwd_lines_parse_like_moby() -> None:
    passwd = "broken\nx:x:notanumber:7::/h:\nuser:x:1000:1000::/home/user:/bin/sh\n"
    assert ids(resolve("x", passwd, "")) == (0, 7, [], "/h")
    assert ids(resolve("user", passwd, "")) == (1000, 1000, [], "/home/user")


# -- the command line --------------------------------------------------------------------------


def test_create_image_target_and_command() -> None:
    from nexcage.cli.commands import create
    from nexcage.cli.main import COMMANDS, _options_of
    from nexcage.cli.parser import parse

    args = parse(["create", "--image", "alpine", "-t", "--pull", "never", "c1", "--", "sh",
                  "-c", "echo hi"], COMMANDS, _options_of)  # fmt: skip
    cid, source = create.target(args, "create")
    assert cid == "c1" and source is not None
    assert (source.ref, source.command, source.terminal, source.pull) == (
        "alpine", ["sh", "-c", "echo hi"], True, "never",
    )  # fmt: skip
    plain = parse(["create", "--bundle", "b", "c2"], COMMANDS, _options_of)
    assert create.target(plain, "create") == ("c2", None)


PROBE = """
import sys
sys.path.insert(0, {src!r})
from nexcage.cli.main import main
code = main({argv!r})
sys.stderr.write("MODULES " + ",".join(sorted(sys.modules)) + "\\n")
sys.exit(code)
"""


def test_create_without_image_loads_no_image_code(tmp_path: Any) -> None:
    """DESIGN.md hot path: `create` with a bundle never loads image code (a failing create goes
    as far as reading the bundle)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = os.fspath(Path(__file__).resolve().parents[2] / "src")
    argv = ["--root", os.fspath(tmp_path), "create", "--bundle", os.fspath(tmp_path / "no"), "c1"]
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE.format(src=src, argv=argv)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES "))
    loaded = line[len("MODULES ") :].split(",")
    heavy = [m for m in loaded if m.startswith(("nexcage.image", "nexcage.ops.image", "urllib3",
                                                "zstandard", "tarfile", "json"))]  # fmt: skip
    assert heavy == []


def test_bundle_declares_the_oldest_version_it_needs() -> None:
    """Regression: bundles declared 1.3.0, which crun 1.8.1 rejects when run directly."""
    from nexcage.spec.versions import minimal_version

    assert minimal_version({"ociVersion": "1.3.0", "process": {"args": ["x"]}}) == "1.0.2"
    assert minimal_version({"linux": {"memoryPolicy": {"mode": "MPOL_LOCAL"}}}) == "1.3.0"
    assert minimal_version({"domainname": "d"}) == "1.1.0"
