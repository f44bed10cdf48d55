"""Dependencies point down (STYLE.md): cli -> ops -> state -> backends | storage -> image -> spec
-> host -> errors. A module may import its own layer and the layers below it, never above.

Reads every module's import statements (including imports inside functions and under
TYPE_CHECKING) with `ast`.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "src" / "nexcage"

# A module may import modules of its own rank or lower. Modules directly in nexcage/ are
# foundations (errors, fastjson, log) or, for settings, sit with state below ops.
RANK = {
    "__init__": 0, "errors": 0, "fastjson": 0, "log": 0,
    "host": 1, "spec": 2, "image": 3, "storage": 4, "backends": 5,
    "state": 6, "settings": 6, "ops": 7, "cli": 8,
}  # fmt: skip


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("nexcage")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nexcage"):
            found.append(node.module)
    return found


def test_dependencies_point_down() -> None:
    violations = []
    for path in sorted(PKG.rglob("*.py")):
        module = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
        own = RANK[_layer(module)]
        violations += [f"{module} -> {t}" for t in _imports(path) if RANK[_layer(t)] > own]
    assert violations == [], "upward imports:\n" + "\n".join(violations)


def test_spec_never_imports_host() -> None:
    bad = [
        f"{p.name} -> {t}"
        for p in (PKG / "spec").rglob("*.py")
        for t in _imports(p)
        if t.startswith("nexcage.host")
    ]
    assert bad == []
