"""The package reads like the flow: each folder imports only those below it, so a stage can be understood (and
replaced) without the ones after it."""

import ast
from pathlib import Path

import aeclust

PACKAGE = Path(aeclust.__file__).parent
# Lowest first. A module may import its own folder and any folder before it.
LAYERS = (
    "errors", "format_version", "runtime", "config", "metrics", "presets", "data", "nn", "encoders", "cluster",
    "refine", "budget", "pipeline", "score", "report", "cli", "__main__", "__init__",
)  # fmt: skip


def imports() -> list[tuple[str, str, int]]:
    """(module, module it imports from aeclust, line) for every ``from aeclust... import`` in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(("aeclust", *path.relative_to(PACKAGE).with_suffix("").parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("aeclust."):
                found.append((module, node.module, node.lineno))
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1] if len(parts) > 1 else "__init__")


def test_every_folder_is_placed_in_the_flow():
    tops = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir() if not path.name.startswith("_")}
    tops = {top for top in tops if (PACKAGE / top).is_dir() or (PACKAGE / f"{top}.py").is_file()}
    assert tops <= set(LAYERS), f"not in LAYERS: {sorted(tops - set(LAYERS))}"


def test_no_module_imports_a_later_stage():
    upward = [f"{module} imports {imported} (line {line})" for module, imported, line in imports()
              if layer(imported) > layer(module)]  # fmt: skip
    assert upward == []


def test_training_and_the_budget_do_not_import_each_other_and_nothing_imports_the_pipeline_from_below():
    pairs = {(module.split(".")[1], imported.split(".")[1]) for module, imported, _ in imports()}
    assert ("encoders", "budget") not in pairs and ("refine", "budget") not in pairs
    assert not any(first in ("encoders", "cluster", "refine", "budget") and second == "pipeline" for first, second in pairs)
