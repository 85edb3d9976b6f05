"""Write the API reference: one page per public module of src/betasweep, and its navigation.

Run by mkdocs-gen-files at build time, so a module added, moved or removed shows up (or goes) without
a hand edit. Modules whose names start with ``_`` get a page too: a package may export public names
defined there (``betasweep.data.human_bytes`` from ``data/_files.py``, loaded lazily, which no static
reader of the package's ``__init__`` sees), and each public name must appear somewhere.
"""

from pathlib import Path

import mkdocs_gen_files

SRC = Path(__file__).resolve().parents[2] / "src"
ROOT = Path("reference", "api")

nav = mkdocs_gen_files.Nav()
for path in sorted((SRC / "betasweep").rglob("*.py")):
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__main__":
        continue
    if parts[-1] == "__init__":
        parts = parts[:-1]
        page = ROOT.joinpath(*parts, "index.md")
    else:
        page = ROOT.joinpath(*parts).with_suffix(".md")
    nav[tuple(parts)] = page.relative_to(ROOT).as_posix()
    with mkdocs_gen_files.open(page, "w") as out:
        out.write(f"::: {'.'.join(parts)}\n")
    mkdocs_gen_files.set_edit_path(page, path.relative_to(SRC.parent))

with mkdocs_gen_files.open(ROOT / "SUMMARY.md", "w") as out:
    out.writelines(nav.build_literate_nav())
