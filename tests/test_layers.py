"""The package's layers (docs/architecture.md): ``models/`` is pure networks, configs, files and
names; running them is ``inference/``'s job, so ``models/`` must never import ``inference/``."""

import ast
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[1] / "src" / "surge" / "models"


def imported_modules(source: str, package: str) -> set[str]:
    """Every module a file's source imports anywhere (top level, functions, TYPE_CHECKING blocks),
    relative imports resolved against ``package``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_the_scan_sees_every_form_of_import():
    source = "import surge.inference.tiling\ndef f():\n    from surge.inference import _engine\nfrom ..inference import x\n"
    found = imported_modules(source, "surge.models")
    assert {"surge.inference.tiling", "surge.inference", "surge.inference._engine", "surge.inference.x"} <= found


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.py")), ids=lambda p: p.name)
def test_models_do_not_import_inference(path):
    imports = imported_modules(path.read_text(), "surge.models")
    offending = sorted(m for m in imports if m == "surge.inference" or m.startswith("surge.inference."))
    assert not offending, f"{path.name} imports {offending}: models/ must not depend on inference/"
