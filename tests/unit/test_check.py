"""nexcage.ops.check: the checks (cgroup facts stubbed) and their rendering."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from nexcage import settings
from nexcage.errors import UsageError
from nexcage.host import cgroups
from nexcage.ops import check
from nexcage.ops.check import FAIL, OK, WARN, CheckResult

HUGETLB_FIX = (
    "mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb"
)
CRUN = ("crun", "/usr/bin/crun", "1.8.1")
RUNC = ("runc", "/usr/bin/runc", "1.1.5+ds1")


class Host:
    """Stubbed cgroup facts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.layout = cgroups.HYBRID
        self.controllers: list[str] = []
        self.systemd = False
        monkeypatch.setattr(cgroups, "layout", lambda: self.layout)
        monkeypatch.setattr(cgroups, "v2_controllers", lambda: list(self.controllers))
        monkeypatch.setattr(cgroups, "systemd_booted", lambda: self.systemd)
        monkeypatch.setattr(cgroups, "crun_hybrid_problem", self.problem)

    def problem(self) -> str | None:
        if self.layout == cgroups.HYBRID and self.controllers:
            return "crun refuses hybrid cgroups: " + cgroups.hybrid_fix(self.controllers)
        return None


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Host:
    return Host(monkeypatch)


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> settings.Settings:
    monkeypatch.setattr(settings, "DEFAULT_CONFIG", str(tmp_path / "absent.toml"))
    return settings.load(
        {"--root": str(tmp_path / "run" / "nexcage"), "--data-root": str(tmp_path / "data")}, {}
    )


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_all_good(host: Host, conf: settings.Settings, tmp_path: Path) -> None:
    results = check.run_checks(conf, [CRUN, RUNC])
    assert check.overall(results) == OK, results
    got = by_name(results)
    assert got["backend crun"].detail == "crun 1.8.1 (/usr/bin/crun)"
    assert got["backend runc"].status == OK
    assert got["cgroup layout"].detail.startswith("hybrid")
    assert got["crun hybrid cgroups"].status == OK
    assert "cgroupfs" in got["cgroup driver"].detail
    assert got["config"].status == OK
    # The state root was created (0700, like runc's) and left without the probe file.
    state = tmp_path / "run" / "nexcage"
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert list(state.iterdir()) == []
    assert got["state root"].detail.endswith(", created")
    assert got["data root"].status == OK


def test_crun_hybrid_quirk_fails_with_the_exact_fix(host: Host, conf: settings.Settings) -> None:
    host.controllers = ["hugetlb"]
    got = by_name(check.run_checks(conf, [CRUN, RUNC]))
    quirk = got["crun hybrid cgroups"]
    assert quirk.status == FAIL
    assert quirk.fix == HUGETLB_FIX
    assert "hugetlb" in got["cgroup layout"].detail


def test_crun_quirk_not_checked_without_crun(host: Host, conf: settings.Settings) -> None:
    host.controllers = ["hugetlb"]
    got = by_name(check.run_checks(conf, [("crun", None, None), RUNC]))
    assert "crun hybrid cgroups" not in got
    assert got["backend crun"].status == WARN
    assert got["backend crun"].fix is not None and "NEXCAGE_CRUN_PATH" in got["backend crun"].fix


def test_no_backend_at_all_fails(host: Host, conf: settings.Settings) -> None:
    results = check.run_checks(conf, [("crun", None, None), ("runc", None, None)])
    got = by_name(results)
    assert got["backend crun"].status == FAIL
    assert got["backend runc"].status == FAIL
    assert check.overall(results) == FAIL
    assert by_name(check.run_checks(conf, []))["backends"].status == FAIL


def test_unknown_version_warns(host: Host, conf: settings.Settings) -> None:
    got = by_name(check.run_checks(conf, [("crun", "/usr/bin/crun", None), RUNC]))
    assert got["backend crun"].status == WARN


def test_configured_default_runtime_missing(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "DEFAULT_CONFIG", str(tmp_path / "absent.toml"))
    conf = settings.load(
        {"--root": str(tmp_path / "r"), "--data-root": str(tmp_path / "d")},
        {"NEXCAGE_RUNTIME": "lxc"},
    )
    got = by_name(check.run_checks(conf, [CRUN, ("lxc", None, None)]))
    assert got["default runtime"].status == FAIL
    assert "env:NEXCAGE_RUNTIME" in got["default runtime"].detail


def test_no_cgroupfs(host: Host, conf: settings.Settings) -> None:
    host.layout = cgroups.NONE
    assert by_name(check.run_checks(conf, [RUNC]))["cgroup layout"].status == FAIL


def test_v2_layout(host: Host, conf: settings.Settings) -> None:
    host.layout = cgroups.V2
    host.controllers = ["cpu", "memory", "pids"]
    got = by_name(check.run_checks(conf, [CRUN]))
    layout = got["cgroup layout"].detail
    assert layout == "v2 (unified at /sys/fs/cgroup); cgroup2 controllers: cpu memory pids"
    assert got["crun hybrid cgroups"].status == OK


def test_systemd_present(host: Host, conf: settings.Settings) -> None:
    host.systemd = True
    got = by_name(check.run_checks(conf, [RUNC]))
    assert "--systemd-cgroup available" in got["cgroup driver"].detail


def test_unwritable_root_fails(host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "DEFAULT_CONFIG", str(tmp_path / "absent.toml"))
    blocker = tmp_path / "file"
    blocker.write_text("")
    conf = settings.load(
        {"--root": str(blocker / "run"), "--data-root": str(tmp_path / "data")}, {}
    )
    got = by_name(check.run_checks(conf, [RUNC]))
    assert got["state root"].status == FAIL
    assert got["state root"].fix is not None and "--root" in got["state root"].fix
    assert got["data root"].status == OK


def test_config_file_reported(host: Host, tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'state_root = "{tmp_path}/r"\ndata_root = "{tmp_path}/d"\n')
    conf = settings.load({"--config": str(path)}, {})
    got = by_name(check.run_checks(conf, [RUNC]))
    assert got["config"].detail == f"{path} (flag:--config) is valid"
    assert os.path.isdir(tmp_path / "r") and os.path.isdir(tmp_path / "d")


# --- rendering ---------------------------------------------------------------------------------

RESULTS = [
    CheckResult("backend crun", OK, "crun 1.8.1 (/usr/bin/crun)"),
    CheckResult("crun hybrid cgroups", FAIL, "crun refuses hybrid cgroups", HUGETLB_FIX),
    CheckResult("backend runc", WARN, "not found", "apt-get install runc"),
]


def test_render_json() -> None:
    doc = json.loads(check.render(RESULTS, "json"))
    assert doc["status"] == FAIL
    assert doc["checks"] == [
        {"name": "backend crun", "status": OK, "detail": "crun 1.8.1 (/usr/bin/crun)", "fix": None},
        {
            "name": "crun hybrid cgroups",
            "status": FAIL,
            "detail": "crun refuses hybrid cgroups",
            "fix": HUGETLB_FIX,
        },
        {
            "name": "backend runc",
            "status": WARN,
            "detail": "not found",
            "fix": "apt-get install runc",
        },
    ]


def test_render_text() -> None:
    lines = check.render(RESULTS, "text").splitlines()
    assert lines[0].split() == ["STATUS", "CHECK", "DETAIL"]
    assert lines[1].split(None, 1) == ["OK", "backend crun         crun 1.8.1 (/usr/bin/crun)"]
    assert lines[2].startswith("FAIL    crun hybrid cgroups  crun refuses")
    assert lines[3].strip() == f"fix: {HUGETLB_FIX}"
    # Columns line up: every detail starts at the same offset.
    offset = lines[0].index("DETAIL")
    assert lines[1][offset:].startswith("crun 1.8.1")
    assert lines[3][offset:].startswith("fix: ")
    assert lines[-1] == FAIL


def test_overall() -> None:
    assert check.overall([]) == OK
    assert check.overall(RESULTS[:1]) == OK
    assert check.overall([RESULTS[0], RESULTS[2]]) == WARN
    assert check.overall(RESULTS) == FAIL


def test_render_bad_format() -> None:
    with pytest.raises(UsageError):
        check.render(RESULTS, "yaml")
