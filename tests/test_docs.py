"""The documentation: the site builds with ``mkdocs build --strict``, its API reference shows every public
function and class of the package, and the README stays a five-minute read (at most 10 KB).

The site is built once per run into a temporary folder (about 25 s of CPU; longer in wall time on a
loaded machine), from the working tree's mkdocs.yml and docs/. The docs packages come with the dev extra
(``pip install -e '.[dev]'``); without them the build fails and says so.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import betasweep

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 10_240  # bytes: 10 KB

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The site built with --strict (any warning fails the build) into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "DISABLE_MKDOCS_2_WARNING": "true", "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    return out, result


def test_site_builds_strict(site):
    out, result = site
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    for page in ("index.html", "reference/cli/index.html", "reference/spec/index.html",
                 "reference/api/betasweep/index.html", "results/benchmarks/index.html"):
        assert (out / page).is_file(), f"{page} missing from the built site"


def test_cli_reference_lists_every_command(site):
    from betasweep.cli import cli

    out, result = site
    assert result.returncode == 0
    html = (out / "reference/cli/index.html").read_text(encoding="utf-8")
    for name in cli.commands:
        assert f"betasweep {name}" in html, f"command {name!r} is not in the CLI reference"


def test_spec_reference_lists_every_spec_field(site):
    import dataclasses

    from betasweep.sweeps import spec

    out, result = site
    assert result.returncode == 0
    html = (out / "reference/spec/index.html").read_text(encoding="utf-8")
    for cls in (spec.SweepSpec, spec.ParamSpec, spec.RaceConfig):
        for item in dataclasses.fields(cls):
            assert f"<code>{item.name}</code>" in html, f"{cls.__name__}.{item.name} is not in the spec reference"
    for name in spec.CONFIG_FIELDS:
        assert f"<code>{name}</code>" in html, f"config field {name!r} is not in the spec reference"
    for mapping, keys in getattr(spec, "SPEC_KEYS", {}).items():
        for key in keys:
            assert f"<code>{key}</code>" in html, f"spec key {mapping}.{key} is not in the spec reference"


def public_modules() -> list[str]:
    """Every module of the package whose dotted name has no ``_private`` part (``__main__`` left out: it runs)."""
    names = ["betasweep"]
    for info in pkgutil.walk_packages(betasweep.__path__, "betasweep."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return names


def public_objects(module) -> list[tuple[str, object]]:
    """The module's public functions and classes: the names in ``__all__`` where it is defined, else its
    top-level definitions whose names do not start with ``_``."""
    if hasattr(module, "__all__"):
        pairs = [(name, getattr(module, name)) for name in module.__all__]
    else:
        pairs = [(name, obj) for name, obj in vars(module).items()
                 if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__]
    return [(name, obj) for name, obj in pairs if inspect.isfunction(obj) or inspect.isclass(obj)]


def test_every_public_function_and_class_is_in_the_api_reference(site):
    out, result = site
    assert result.returncode == 0
    anchors: set[str] = set()
    for page in (out / "reference" / "api").rglob("*.html"):
        anchors.update(re.findall(r'id="([A-Za-z0-9_.]+)"', page.read_text(encoding="utf-8")))
    modules = public_modules()
    assert len(modules) > 20, modules
    missing = []
    for name in modules:
        module = importlib.import_module(name)
        for attr, obj in public_objects(module):
            # Where the module exports it, or where it is defined (a re-export documented at its source).
            if f"{name}.{attr}" not in anchors and f"{obj.__module__}.{obj.__qualname__}" not in anchors:
                missing.append(f"{name}.{attr}")
    assert not missing, f"{len(missing)} public names not in the API reference: {', '.join(missing)}"


def test_readme_is_a_five_minute_read():
    size = (ROOT / "README.md").stat().st_size
    assert size <= README_LIMIT, f"README.md is {size} bytes, over {README_LIMIT} (move the detail to docs/)"
