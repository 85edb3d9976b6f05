"""Bad input, everywhere one line (issue 22 item 5): files that are not UTF-8, folders where files are
expected, OSErrors on paths the user gave. Each: exit code 2, one line on stderr naming the input, no
traceback, nothing written (the working folder holds only what the test put there). And checkpoint writes
that fail leave no temporary file behind.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from helpers import invoke_betasweep, tiny_spec


def run(*args, cwd: Path) -> subprocess.CompletedProcess:
    """``betasweep ARGS`` in this process (``betasweep.cli.main``; the console script is smoke-tested in
    tests/test_cli.py): every case here fails before any work, so a subprocess would only add its imports."""
    return invoke_betasweep(*args, cwd=cwd)


def assert_one_line(proc: subprocess.CompletedProcess, *needles: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("betasweep: error: ") and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.fixture
def work(tmp_path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.mark.parametrize("command", [("study", "create"), ("sweep",)])
def test_spec_not_utf8_or_a_folder(work, command):
    latin1 = work / "spec.yaml"
    latin1.write_bytes("study: caf\xe9\n".encode("latin-1"))
    (work / "specs").mkdir()
    before = listing(work)
    assert_one_line(run(*command, latin1, cwd=work), str(latin1), "not UTF-8")
    assert_one_line(run(*command, work / "specs", cwd=work), str(work / "specs"), "is a folder")
    assert listing(work) == before


def test_study_create_refuses_a_dataset_path_that_is_a_folder_before_writing(work, dsprites_path):
    folder = work / "not-a-file.npz"
    folder.mkdir()
    spec = work / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(folder, "folder-data")))
    before = listing(work)
    assert_one_line(run("study", "create", spec, "--storage", f"sqlite:///{work / 'study.db'}",
                        "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}", cwd=work), str(folder))
    assert listing(work) == before  # no study.db, no mlflow.db


def test_folders_where_files_are_expected(work, dsprites_path):
    (work / "ckpt").mkdir()
    before = listing(work)
    assert_one_line(run("evaluate", work / "ckpt", cwd=work), str(work / "ckpt"), "is a folder")
    assert_one_line(run("data", "check", "--dataset", "dsprites", work / "ckpt", cwd=work), str(work / "ckpt"))
    assert_one_line(run("train", "--dataset", "dsprites", "--data-path", work / "ckpt", "--out", work / "o", cwd=work),
                    str(work / "ckpt"))
    assert listing(work) == before


def test_train_out_that_is_a_file_is_one_line(work, dsprites_path):
    out = work / "out"
    out.write_text("a file, not a folder")
    proc = run("train", "--dataset", "dsprites", "--data-path", dsprites_path, "--beta", "4", "--latent-dim", "2",
               "--width", "4", "--train-samples", "32", "--batch-size", "16", "--out", out, "--no-progress", cwd=work)
    assert_one_line(proc, str(out))
    assert listing(work) == {"out"} and out.read_text() == "a file, not a folder"


def test_failed_checkpoint_write_leaves_no_temporary_file(tmp_path):
    import torch

    from betasweep.training.checkpoint import load_state, save_checkpoint

    target = tmp_path / "checkpoint.pt"
    save_checkpoint(target, {"step": 1, "w": torch.ones(3)})
    with pytest.raises(Exception):  # noqa: B017 - a lambda cannot be pickled: torch.save fails mid-write
        save_checkpoint(target, {"step": 2, "bad": lambda: None})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    assert load_state(target)["step"] == 1  # the previous checkpoint is intact
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(OSError):  # the rename onto a folder fails after the data was written
        save_checkpoint(tmp_path / "folder.pt", {"step": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "folder.pt"]
    assert list((tmp_path / "folder.pt").iterdir()) == []
