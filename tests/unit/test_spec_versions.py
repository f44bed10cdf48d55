"""nexcage.spec.versions: SemVer, the field-introduction table, derived configs."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from nexcage.spec.default import default_spec
from nexcage.spec.versions import (
    INTRODUCED,
    compare,
    derive_for,
    newer_fields,
    parse_version,
)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("1.3.0", (1, 3, 0, "")),
        ("1.0.2-dev", (1, 0, 2, "dev")),
        ("1.3.0+dev", (1, 3, 0, "")),
        ("1.0.0-rc.1+build.5", (1, 0, 0, "rc.1")),
        ("0.1.0", (0, 1, 0, "")),
        ("10.20.30", (10, 20, 30, "")),
        (
            "1.0.0-alpha-a.b-c-somethinglong+build.1-aef.1-its-okay",
            (1, 0, 0, "alpha-a.b-c-somethinglong"),
        ),
        ("1.0.0-0.3.7", (1, 0, 0, "0.3.7")),
    ],
)
def test_parse_version(text: str, parsed: tuple[int, int, int, str]) -> None:
    assert parse_version(text) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1",
        "1.0",
        "1.0.0.0",
        "v1.0.0",
        "01.0.0",
        "1.00.0",
        "1.0.0-",
        "1.0.0-01",
        "1.0.0+",
        "1.0.0-a..b",
        "1.0.0-a_b",
        "1.0.0+a+b",
        " 1.0.0",
        "1.0.0 ",
        "a.b.c",
        "-1.0.0",
    ],
)
def test_parse_version_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_version(text)


def test_compare_follows_semver_precedence() -> None:
    # SemVer 2.0.0 §11 example, then a few runtime-spec ones
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.2-dev",
        "1.0.2",
        "1.1.0-rc.3",
        "1.1.0",
        "1.2.1",
        "1.3.0",
        "2.0.0",
    ]
    for low, high in itertools.pairwise(chain):
        assert compare(low, high) == -1, (low, high)
        assert compare(high, low) == 1, (high, low)
    assert compare("1.3.0", "1.3.0+dev") == 0
    assert compare("1.0.0-rc.1", "1.0.0-rc.1") == 0


def _build(pattern: str, value: object) -> tuple[dict[str, Any], str]:
    """A config holding ``value`` at ``pattern`` and the concrete path newer_fields reports."""
    segments = pattern.split(".")
    root: dict[str, Any] = {"ociVersion": "1.3.0"}
    node = root
    for i, segment in enumerate(segments):
        key, brackets = segment.removesuffix("[]"), segment.endswith("[]")
        last = i == len(segments) - 1
        child: Any = value if last else {}
        node[key] = [child] if brackets else child
        node = child
    return root, pattern.replace("[]", "[0]")


def _matching_value(matcher: object) -> object:
    if matcher is None:
        return {"present": True}
    if isinstance(matcher, str):
        return matcher
    return "relative/dir"  # the one callable: relative mount destinations


@pytest.mark.parametrize(
    ("pattern", "release", "matcher"), INTRODUCED, ids=[f"{p}={m}" for p, _, m in INTRODUCED]
)
def test_each_table_entry(pattern: str, release: str, matcher: object) -> None:
    raw, path = _build(pattern, _matching_value(matcher))
    assert (path, release) in newer_fields(raw, "1.0.0")
    assert newer_fields(raw, release) == []
    assert newer_fields(raw, release + "-dev") == []  # a pre-release of X counts as X
    assert newer_fields(raw, "1.3.0") == []


def test_table_is_ordered_and_well_formed() -> None:
    releases = [release for _, release, _ in INTRODUCED]
    assert releases == sorted(releases, key=parse_version)
    assert set(releases) == {"1.0.2", "1.1.0", "1.2.0", "1.2.1", "1.3.0"}


def test_config_using_every_newer_field() -> None:
    raw = default_spec()
    raw["domainname"] = "example.test"
    raw["mounts"].append(
        {
            "destination": "data",
            "type": "none",
            "source": "/srv",
            "options": ["rbind", "ridmap"],
            "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}],
            "gidMappings": [{"containerID": 0, "hostID": 1, "size": 1}],
        }
    )
    raw["process"]["scheduler"] = {"policy": "SCHED_OTHER"}
    raw["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 0}
    raw["process"]["execCPUAffinity"] = {"final": "0-3"}
    raw["hooks"] = {"createRuntime": [{"path": "/bin/true"}]}
    linux = raw["linux"]
    linux["namespaces"].append({"type": "time"})
    linux["timeOffsets"] = {"monotonic": {"secs": 1}}
    linux["resources"]["unified"] = {"memory.high": "max"}
    linux["resources"]["cpu"] = {"burst": 1, "idle": 0, "shares": 2}
    linux["memoryPolicy"] = {"mode": "MPOL_LOCAL"}
    linux["intelRdt"] = {"closID": "c", "schemata": ["L3:0=f"], "enableMonitoring": True}
    linux["netDevices"] = {"eth1": {}}
    linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "listenerPath": "/run/agent.sock",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
    }
    assert newer_fields(raw, "1.1.0") == [
        ("mounts[7].options[1]", "1.2.0"),
        ("mounts[7].destination", "1.2.0"),
        ("process.execCPUAffinity", "1.2.1"),
        ("linux.memoryPolicy", "1.3.0"),
        ("linux.intelRdt.schemata", "1.3.0"),
        ("linux.intelRdt.enableMonitoring", "1.3.0"),
        ("linux.netDevices", "1.3.0"),
    ]
    found = newer_fields(raw, "1.0.2-dev")
    assert ("domainname", "1.1.0") in found
    assert ("mounts[7].uidMappings", "1.1.0") in found
    assert ("linux.namespaces[6].type", "1.1.0") in found
    assert ("linux.seccomp.syscalls[0].action", "1.1.0") in found
    assert ("linux.seccomp.defaultAction", "1.1.0") in found
    assert ("linux.resources.cpu.burst", "1.1.0") in found
    assert ("hooks.createRuntime", "1.0.2") not in found
    assert ("linux.intelRdt.closID", "1.0.2") in newer_fields(raw, "1.0.1")
    assert newer_fields(raw, "1.3.0") == []


def test_default_spec_has_no_newer_fields_even_for_1_0_0() -> None:
    assert newer_fields(default_spec(), "1.0.0") == []
    assert newer_fields(default_spec(rootless=True, uid=1, gid=1), "1.0.0") == []


def test_absent_and_null_values_are_not_reported() -> None:
    raw = {
        "ociVersion": "1.3.0",
        "domainname": None,
        "linux": {"seccomp": None, "netDevices": None},
    }
    assert newer_fields(raw, "1.0.0") == []


def test_wrongly_typed_containers_are_skipped() -> None:
    raw = {"ociVersion": "1.3.0", "mounts": {"not": "a list"}, "linux": ["x"], "process": 3}
    assert newer_fields(raw, "1.0.0") == []


def test_newer_fields_rejects_a_bad_version() -> None:
    with pytest.raises(ValueError):
        newer_fields({}, "1.1")


def test_derive_for() -> None:
    raw = default_spec()
    derived = derive_for(raw, "1.1.0")
    assert derived["ociVersion"] == "1.1.0"
    assert raw["ociVersion"] == "1.3.0"
    assert {k: v for k, v in derived.items() if k != "ociVersion"} == {
        k: v for k, v in raw.items() if k != "ociVersion"
    }
    derived["process"]["args"].append("x")
    assert raw["process"]["args"] == ["sh"]
