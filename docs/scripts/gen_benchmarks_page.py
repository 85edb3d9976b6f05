"""Put benchmarks/README.md into the site as results/benchmarks.md, as it stands (its figures unedited).

Run by mkdocs-gen-files at build time. Links to the benchmark scripts beside it (``benchmarks/*.py``)
become plain code, since the scripts are not pages of the site.
"""

import re
from pathlib import Path

import mkdocs_gen_files

README = Path(__file__).resolve().parents[2] / "benchmarks" / "README.md"

text = README.read_text(encoding="utf-8")
# [name](file.py) -> `benchmarks/file.py` (a relative link that the site cannot serve).
text = re.sub(r"\[([^\]]+)\]\((?!https?:)([^)#]+)\)", lambda m: f"{m.group(1)} (`benchmarks/{m.group(2)}`)", text)
with mkdocs_gen_files.open("results/benchmarks.md", "w") as out:
    out.write("<!-- Generated from benchmarks/README.md at build time: edit that file. -->\n")
    out.write(text)
mkdocs_gen_files.set_edit_path("results/benchmarks.md", "benchmarks/README.md")
