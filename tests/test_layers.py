"""The package's shape, held by tests: the import-linter contracts of pyproject.toml (layers, no optuna or mlflow
below sweeps, tracking imported from sweeps, api and cli only, no import cycle, private modules kept private), no
private name imported across modules, no function over 80 lines."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
MAX_FUNCTION_LINES = 80


def modules() -> dict[str, Path]:
    """Every module of src/ by its dotted name (a package by its own name)."""
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def imported_module(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute name of the module a ``from ... import`` in ``module`` reads from."""
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def test_import_linter_contracts_hold():
    command = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    proc = subprocess.run([command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_contracts_ignore_no_import():
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    kinds = {contract["type"] for contract in config["contracts"]}
    assert {"layers", "forbidden", "acyclic_siblings"} <= kinds
    assert not [c["id"] for c in config["contracts"] if c.get("ignore_imports")]


def test_no_private_name_is_imported_from_another_betasweep_module():
    found = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                source = imported_module(node, module, path.name == "__init__.py")
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if source.split(".")[0] == "betasweep" and source != module and private:
                    found.append(f"{module} imports {', '.join(private)} from {source}")
    assert found == []


def test_private_name_check_resolves_relative_imports():
    """The check above sees a relative import of a private name."""
    node = ast.parse("from .study import _run_one").body[0]
    assert imported_module(node, "betasweep.sweeps.race", False) == "betasweep.sweeps.study"
    node = ast.parse("from . import _common").body[0]
    assert imported_module(node, "betasweep.cli", True) == "betasweep.cli"


def test_no_function_in_src_is_over_80_lines():
    """Measured from the ``def`` line to the function's last line (decorators apart), nested functions too."""
    long = []
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{module}.{node.name}: {lines} lines")
    assert long == []
