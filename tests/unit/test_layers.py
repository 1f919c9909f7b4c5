"""The package layers (README, "Architecture"): a package imports only packages in lower layers.

Every import counts, including those inside functions, so an upward import cannot hide in a
function to dodge a cycle; with strict layers no cycle is possible.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rlvlm

# Bottom to top. A package may import any package of a lower row, none of its own row or above.
LAYERS: list[tuple[str, ...]] = [
    ("errors",),
    ("algos", "config", "tasks"),
    ("envs", "models"),
    ("rollout", "rewards"),
    ("eval",),
    ("train",),
    ("cli",),
]
TIER = {name: i for i, row in enumerate(LAYERS) for name in row}
ROOT = Path(rlvlm.__file__).parent


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


def upward_imports(root: Path = ROOT) -> list[str]:
    bad = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        src = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if src == "__init__":
            continue  # the package root re-exports; it sits above every layer
        for line, module in _imports(path):
            parts = module.split(".")
            if parts[0] != "rlvlm" or len(parts) < 2 or parts[1] == src:
                continue
            dst = parts[1]
            if src not in TIER or dst not in TIER:
                bad.append(f"{rel}:{line} imports rlvlm.{dst}: {src if src not in TIER else dst!r} has no layer "
                           "(add it to LAYERS here and to the README's architecture table)")
            elif TIER[dst] >= TIER[src]:
                bad.append(f"{rel}:{line} {src} (layer {TIER[src]}) imports {module} (layer {TIER[dst]})")
    return bad


def test_no_package_imports_its_own_layer_or_above():
    bad = upward_imports()
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_every_package_has_a_layer():
    packages = {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert packages | modules <= set(TIER), f"no layer for: {sorted((packages | modules) - set(TIER))}"


def test_the_check_catches_an_upward_import(tmp_path):
    (tmp_path / "algos").mkdir()
    (tmp_path / "algos" / "x.py").write_text("def f():\n    from rlvlm.train.rl import train\n")
    assert upward_imports(tmp_path) == ["algos/x.py:2 algos (layer 1) imports rlvlm.train.rl (layer 5)"]
