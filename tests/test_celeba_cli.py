"""The CelebA commands as a user runs them: real subprocesses of the installed ``betasweep``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SAMPLE = SHARED / "celeba-sample"
ATTRS = SHARED / "celeba-attrs"


def run(*args, check=True):
    exe = shutil.which("betasweep")
    cmd = [exe, *args] if exe else [sys.executable, "-m", "betasweep.cli", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def _need(root: Path) -> Path:
    if not (root / "list_attr_celeba.txt").is_file():
        pytest.skip(f"CelebA data not found at {root}")
    return root


@pytest.mark.parametrize("root", [SAMPLE, ATTRS], ids=["sample", "full-attributes"])
def test_data_stats_prints_table_and_writes_report(root, tmp_path):
    _need(root)
    out = run("data", "stats", "--root", str(root), "--out", str(tmp_path / "stats.html")).stdout
    for attribute in ("5_o_Clock_Shadow", "Male", "Young"):
        assert attribute in out
    header = out.splitlines()[0].split()
    assert header[:3] == ["attribute", "train", "val"] and header[-1] == "imbalance"
    assert ("test" in header) == (root == ATTRS)
    html = (tmp_path / "stats.html").read_text()
    assert "Plotly.newPlot" in html and "<script src=" not in html


def test_data_stats_bad_root_is_one_line_exit_2(tmp_path):
    proc = run("data", "stats", "--root", str(tmp_path / "missing"), check=False)
    assert proc.returncode == 2 and proc.stderr.startswith("betasweep: error: CelebA root not found")
    assert len(proc.stderr.strip().splitlines()) == 1
