"""benchmarks/run.py prints one well-formed JSON record per line (format only: no timing assertions)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REQUIRED_KEYS = ("name", "ours", "baseline", "unit", "ratio", "target", "met")


def test_quick_shapes_render_prints_json_records():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--only", "shapes_render"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert lines, "no output"
    names = []
    for line in lines:
        rec = json.loads(line)
        assert isinstance(rec, dict)
        missing = [key for key in REQUIRED_KEYS if key not in rec]
        assert not missing, f"{rec.get('name')}: missing {missing}"
        ratio = rec["ratio"]
        assert isinstance(ratio, (int, float)) and not isinstance(ratio, bool)
        assert math.isfinite(ratio) and ratio > 0, rec
        assert isinstance(rec["met"], bool)
        assert isinstance(rec["target"], str) and rec["target"]
        names.append(rec["name"])
    assert names == ["shapes_render"]
