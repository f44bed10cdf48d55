"""nexcage.log: runc/logrus-compatible lines, levels, the log file, last_error_line."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nexcage import log
from nexcage.errors import HostError, UsageError

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


@pytest.fixture(autouse=True)
def reset() -> Iterator[None]:
    log.close()
    log.set_context(None)
    yield
    log.close()
    log.set_context(None)


def json_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def parse_time(value: str) -> datetime:
    assert RFC3339.match(value), value
    # Python's parser takes microseconds: drop the last three digits of the nanoseconds.
    return datetime.fromisoformat(value[:26] + "+00:00")


def test_json_lines_have_exactly_level_msg_time(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    log.setup(str(path), "json", debug=True)
    log.set_context("ctr1")  # must not add fields to JSON lines
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error('container "x" failed:\nexit status 1 ünïcode')
    lines = json_lines(path)
    assert [obj["level"] for obj in lines] == ["debug", "info", "warning", "error"]
    for obj in lines:
        assert list(obj) == ["level", "msg", "time"]  # logrus order: sorted keys
        assert isinstance(obj["time"], str)
        when = parse_time(obj["time"])
        assert abs(datetime.now(UTC) - when) < timedelta(minutes=1)
    assert lines[3]["msg"] == 'container "x" failed:\nexit status 1 ünïcode'
    assert len(path.read_text().splitlines()) == 4


def test_rfc3339_known_instant() -> None:
    assert log.rfc3339(1_767_225_600_123_456_789) == "2026-01-01T00:00:00.123456789Z"
    assert log.rfc3339(0) == "1970-01-01T00:00:00.000000000Z"


def test_file_threshold_defaults_to_info(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    log.setup(str(path), "json", debug=False)
    log.debug("hidden")
    log.info("shown")
    assert [obj["msg"] for obj in json_lines(path)] == ["shown"]


def test_explicit_level(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    log.setup(str(path), "json", debug=False, level="error")
    log.warning("hidden")
    log.error("shown")
    assert [obj["msg"] for obj in json_lines(path)] == ["shown"]
    assert not log.enabled("warning") and log.enabled("error")


def test_file_is_appended_with_mode_0644(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    path.write_text('{"level":"info","msg":"before","time":"2026-01-01T00:00:00Z"}\n')
    old = os.umask(0)
    try:
        fresh = tmp_path / "fresh.json"
        log.setup(str(fresh), "json", debug=False)
        log.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
    log.setup(str(path), "json", debug=False)
    log.error("after")
    assert [obj["msg"] for obj in json_lines(path)] == ["before", "after"]
    assert log.to_file()


def test_setup_again_switches_target(tmp_path: Path) -> None:
    first, second = tmp_path / "1.json", tmp_path / "2.json"
    log.setup(str(first), "json", debug=False)
    log.error("one")
    log.setup(str(second), "json", debug=False)
    log.error("two")
    assert [o["msg"] for o in json_lines(first)] == ["one"]
    assert [o["msg"] for o in json_lines(second)] == ["two"]


def test_text_format_is_logrus(tmp_path: Path) -> None:
    path = tmp_path / "log.txt"
    log.setup(str(path), "text", debug=False)
    log.error("container does not exist")
    log.warning("bare")
    log.set_context("ctr-1")
    log.info('two\nlines "quoted"')
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    m = re.fullmatch(r'time="([^"]+)" level=error msg="container does not exist"', lines[0])
    assert m is not None
    parse_time(m.group(1))
    assert lines[1].endswith(" level=warning msg=bare")  # logrus leaves plain words unquoted
    assert lines[2].endswith(' level=info msg="two\\nlines \\"quoted\\"" id=ctr-1')


def test_stderr_default_warning_and_text(capfd: pytest.CaptureFixture[str]) -> None:
    log.setup(None, "json", debug=False)  # json applies to a --log file only; stderr gets text
    log.info("hidden")
    log.warning("careful")
    log.error("broken")
    err = capfd.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].endswith("level=warning msg=careful")
    assert err[1].endswith("level=error msg=broken")
    assert not log.to_file()


def test_stderr_debug(capfd: pytest.CaptureFixture[str]) -> None:
    log.setup(None, "text", debug=True)
    log.debug("+ crun state x")
    assert 'level=debug msg="+ crun state x"' in capfd.readouterr().err


def test_before_setup_logs_warnings_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    log.info("hidden")
    log.error("early")
    assert capfd.readouterr().err.endswith("level=error msg=early\n")


def test_invalid_log_format_uses_runc_wording() -> None:
    with pytest.raises(UsageError) as info:
        log.setup(None, "xml", debug=False)
    assert str(info.value) == "invalid log-format: xml"


def test_invalid_level() -> None:
    with pytest.raises(UsageError):
        log.setup(None, "text", debug=False, level="verbose")


def test_unopenable_log_file(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="open log file"):
        log.setup(str(tmp_path / "missing-dir" / "log.json"), "json", debug=False)
    assert not log.to_file()


def test_last_error_line(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    path.write_text(
        "garbage\n"
        '{"level":"error","msg":"first","time":"2026-01-01T00:00:00Z"}\n'
        '{"msg": "crun style", "level": "error", "time": "2026-01-01T00:00:01Z"}\n'
        '{"level":"warning","msg":"later warning"}\n'
        '{"level":"error","msg":42}\n'
        '{"level":"error","msg":"trunc\n'
        "[1, 2]\n"
        '{"level":"error"}\n'
        "\n"
    )
    assert log.last_error_line(str(path)) == "crun style"


def test_last_error_line_from_our_own_log(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    log.setup(str(path), "json", debug=False)
    log.error("OCI runtime create failed: boom")
    log.info("cleanup done")
    assert log.last_error_line(str(path)) == "OCI runtime create failed: boom"


def test_last_error_line_none(tmp_path: Path) -> None:
    assert log.last_error_line(str(tmp_path / "absent")) is None
    path = tmp_path / "log.json"
    path.write_text('{"level":"info","msg":"ok"}\n\x00\xff garbage')
    assert log.last_error_line(str(path)) is None
    path.write_bytes(b"")
    assert log.last_error_line(str(path)) is None


def test_last_error_line_reads_the_tail_of_big_files(tmp_path: Path) -> None:
    path = tmp_path / "log.json"
    filler = '{"level":"info","msg":"' + "x" * 200 + '"}\n'
    with path.open("w") as f:
        f.write('{"level":"error","msg":"old"}\n')
        f.write(filler * 10_000)  # > 1 MiB
        f.write('{"level":"error","msg":"new"}\n')
    assert log.last_error_line(str(path)) == "new"
