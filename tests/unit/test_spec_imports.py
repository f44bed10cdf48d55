"""nexcage.spec stays on the hot path's diet (docs/DESIGN.md) and parses quickly."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

from nexcage import fastjson
from nexcage.spec.config import parse_config
from nexcage.spec.default import default_spec
from nexcage.spec.validate import validate_config

SPEC_DIR = Path(__file__).resolve().parents[2] / "src" / "nexcage" / "spec"
FORBIDDEN = {"json", "re", "enum", "typing", "dataclasses"}


def _imported(code: str) -> set[str]:
    # -I: no user site, no PYTHONPATH; the package is installed editable in the venv.
    result = subprocess.run(
        [sys.executable, "-I", "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    names = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_parsing_and_validation_import_nothing_heavy() -> None:
    names = _imported("import nexcage.spec.config, nexcage.spec.validate")
    assert "nexcage.spec.config" in names and "nexcage.spec.validate" in names
    assert not names & FORBIDDEN, names & FORBIDDEN
    assert not any(n == "nexcage.host" or n.startswith("nexcage.host.") for n in names)


def test_versions_and_default_import_nothing_heavy() -> None:
    names = _imported("import nexcage.spec.versions, nexcage.spec.default")
    assert not names & FORBIDDEN, names & FORBIDDEN


def test_spec_sources_never_import_host_or_heavy_modules() -> None:
    for path in SPEC_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                assert not module.startswith("nexcage.host"), (path.name, module)
                in_type_checking = module in ("typing", "collections.abc")
                assert module.split(".")[0] not in FORBIDDEN or in_type_checking, (
                    path.name,
                    module,
                )


def test_typing_is_imported_only_under_type_checking() -> None:
    for path in SPEC_DIR.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level only; nested ones would be a runtime import
            if isinstance(node, ast.ImportFrom) and node.module == "typing":
                raise AssertionError(f"{path.name}: runtime import of typing")


def test_parse_of_a_typical_config_is_well_under_2ms() -> None:
    text = fastjson.dumps(default_spec())
    raw = fastjson.loads(text)
    parse_config(raw)  # warm up
    best = min(_timed(lambda: parse_config(fastjson.loads(text))) for _ in range(50))
    assert best < 0.002, f"load+parse took {best * 1e3:.3f} ms"
    spec = parse_config(raw)
    best = min(_timed(lambda: validate_config(spec)) for _ in range(50))
    assert best < 0.002, f"validate took {best * 1e3:.3f} ms"


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start
