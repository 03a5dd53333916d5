"""The layers, ground floor first: an import only ever goes down (docs: /work/shared/STYLE.md).

Every .py file of every package is parsed with `ast` (imports inside functions included) and each
import of another coopscore package is checked against the layer order below. tests/, benchmarks/
and notebooks/ sit above everything and are not checked.
"""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent

# Ground floor first. A package may import its own layer or a lower one. `coopscore` is the CLI:
# nothing imports it but itself (its data generator, coopscore.synthetic, is used only by the CLI,
# the tests, the benchmarks and the notebook). training (3) and evaluation (4) are ordered so
# that evaluation may use training's data sets and registry, never the reverse.
LAYERS = {
    "settings": 0,
    "data_contracts": 1,
    "features": 2,
    "training": 3,
    "evaluation": 4,
    "governance": 5,
    "loan_book": 5,  # a lender's own loan book: uses training and evaluation, scored by the CLI
    "records": 6,  # the service's own records: parties and keys, consents, the audit log, sessions
    "scoring": 7,
    "ranking": 8,
    "serving": 9,
    "coopscore": 10,
}

class Edge(NamedTuple):
    """One import of a lower- or higher-layer package: where it is and what it imports."""

    file: str  # relative to the repository root
    line: int
    importer: str  # the importing file's package
    imported: str  # the imported module, as written (resolved when relative)

    def __str__(self) -> str:
        target = self.imported.split(".")[0]
        return (f"{self.file}:{self.line}: {self.importer} (layer {LAYERS[self.importer]}) imports "
                f"{self.imported} ({target}, layer {LAYERS[target]})")


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_in(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) for every import in `source` (the text of `module`), wherever it sits,
    relative imports resolved to absolute names."""
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level:  # from . import x, from ..a import b
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            found.append((node.lineno, name))
    return found


def all_edges() -> list[Edge]:
    """Every import from one layered package into another, with its file and line."""
    edges = []
    for package in LAYERS:
        for path in sorted((ROOT / package).rglob("*.py")):
            file = path.relative_to(ROOT).as_posix()
            source = path.read_text(encoding="utf-8")
            for line, imported in imports_in(source, _module_of(path), path.name == "__init__.py"):
                target = imported.split(".")[0]
                if target in LAYERS and target != package:
                    edges.append(Edge(file, line, package, imported))
    return edges


def back_edges() -> list[Edge]:
    """The imports that go up (or sideways into the CLI package): each one breaks the layering."""
    return [e for e in all_edges() if LAYERS[e.imported.split(".")[0]] > LAYERS[e.importer]]


def test_the_layers_are_the_wheels_packages():
    """A new package must get a layer here before it ships, so none escapes the check."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = set(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    assert shipped == set(LAYERS), (
        f"pyproject's wheel packages {sorted(shipped)} and LAYERS {sorted(LAYERS)} differ: give a new "
        "package its layer in tests/test_layers.py (or remove a package that is gone from both)")
    missing = [p for p in LAYERS if not (ROOT / p / "__init__.py").exists()]
    assert not missing, f"packages in LAYERS without an __init__.py: {missing}"


def test_imports_only_go_down():
    """No import goes to a higher layer: anything into the CLI package, records or features into
    scoring, ranking into serving, training into evaluation (the old cycle)."""
    edges = back_edges()
    assert not edges, (
        f"{len(edges)} import(s) go up a layer (order: {', '.join(LAYERS)}); move the code to the "
        "layer that owns it, or pass the value down instead of importing upward:\n"
        + "\n".join(f"  {e}" for e in edges))


def test_the_checker_sees_nested_relative_and_conditional_imports():
    """The parser itself: imports inside functions, under `if`, and relative ones are all found."""
    source = ("import os\n"
              "def f():\n    import serving.scorer\n"
              "    from . import registry\n"
              "if True:\n    from ..governance.promotion import promote\n")
    assert imports_in(source, "training.sub.mod") == [
        (1, "os"), (3, "serving.scorer"), (4, "training.sub"), (6, "training.governance.promotion")]
    assert imports_in("from .promotion import promote\n", "governance", is_package=True) == [
        (1, "governance.promotion")]
