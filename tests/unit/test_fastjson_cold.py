"""Regression: malformed JSON in a process that has not imported `json` (the CLI's hot path).

CPython 3.11's C scanner only raises JSONDecodeError when json.decoder is already loaded; without
it the scanner returned NULL and nexcage crashed with SystemError.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
PROBE = """
import sys
sys.path.insert(0, {src!r})
from nexcage import fastjson
for text in ['{{', '{{"a": 1,}}', '[1, 2', '{{"a" 1}}']:
    try:
        fastjson.loads(text)
    except fastjson.JSONError as exc:
        print(exc.lineno, exc.colno)
"""


def test_malformed_json_without_json_module_loaded() -> None:
    proc = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE.format(src=str(SRC))],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:4] == ["1 2", "1 9", "1 6", "1 6"]
