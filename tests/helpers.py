"""Helpers shared by the tests (and benchmarks/storage.py): the real command, tiny specs, small data.

Importable as ``helpers`` because pytest puts ``tests/`` (which has no ``__init__.py``) on sys.path.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any


def betasweep_command() -> list[str]:
    """The installed ``betasweep`` console script (or ``python -m betasweep.cli`` without one)."""
    exe = shutil.which("betasweep")
    return [exe] if exe else [sys.executable, "-m", "betasweep.cli"]


def run_betasweep(*args: str, check: bool = True, cwd: str | Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``betasweep ARGS`` as a user would; with ``check``, fail showing its stderr."""
    cmd = [*betasweep_command(), *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def invoke_betasweep(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None,
                     check: bool = False) -> subprocess.CompletedProcess:
    """Run ``betasweep ARGS`` in this process: :func:`betasweep.cli.main`, what the console script calls.

    For bad input and for tiny real runs, where a subprocess would spend most of its seconds importing torch,
    optuna and mlflow (a test process imports them once); the console script itself is run for every command
    by tests/test_cli.py. Returns what :func:`run_betasweep` does (``returncode``, ``stdout``, ``stderr`` as
    text), so assertions read the same; with ``check``, a non-zero exit fails showing stderr. ``cwd`` is entered
    for the call and left after it; ``env`` overrides variables for the call (click's ``CliRunner.isolation``,
    which also swaps stdin, stdout and stderr), and every variable the command set is undone after it, as is the
    SIGTERM handler ``betasweep worker`` installs. An exception that ``main`` does not turn into a message
    propagates: in a subprocess it would be a traceback.
    """
    import os
    import signal

    from click.testing import CliRunner

    from betasweep.cli import main

    argv = [str(arg) for arg in args]
    before, environment = os.getcwd(), dict(os.environ)
    on_sigterm = signal.getsignal(signal.SIGTERM)
    forget_mlflow_stores()
    try:
        with CliRunner().isolation(env=env) as (stdout, stderr, _):
            if cwd is not None:
                os.chdir(cwd)
            code = main(argv)
            out, err = stdout.getvalue().decode(), stderr.getvalue().decode()
    finally:
        os.chdir(before)
        os.environ.clear()
        os.environ.update(environment)
        signal.signal(signal.SIGTERM, on_sigterm)
    if check and code != 0:
        raise AssertionError(f"betasweep {' '.join(argv)} exited {code}:\n{err[-3000:]}")
    return subprocess.CompletedProcess(["betasweep", *argv], code, out, err)


def forget_mlflow_stores() -> None:
    """Forget MLflow's stores and database engines of relative ``sqlite:///NAME`` URIs (cached by URI string in a
    process): run in another working folder, ``sqlite:///mlflow.db`` is another database, which a subprocess
    would open afresh. No-op before mlflow is imported."""
    import sys

    if "mlflow" not in sys.modules:
        return
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistrySqlAlchemyStore
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._model_registry import registry as model_registry
    from mlflow.tracking._tracking_service import registry as tracking_registry
    from mlflow.tracking._tracking_service import utils as tracking_utils

    tracking_registry.TrackingStoreRegistry._get_store_with_resolved_uri.cache_clear()
    model_registry.ModelRegistryStoreRegistry._get_store_with_resolved_uri.cache_clear()
    tracking_utils._artifact_repos_cache.clear()
    for engines in (SqlAlchemyStore._engine_map, RegistrySqlAlchemyStore._engine_map):
        for uri in [uri for uri in engines if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////")]:
            del engines[uri]


def tiny_spec(dsprites_path: str | Path, study: str = "tiny", n_trials: int = 3, **overrides: Any) -> dict[str, Any]:
    """A sweep spec on the real dSprites grid whose trials take seconds: ~50 steps, a small metric."""
    spec = {
        "study": study,
        "dataset": {"name": "dsprites", "path": str(dsprites_path)},
        "search_space": {"beta": {"low": 0.5, "high": 8.0, "log": True}, "latent_dim": [3, 5]},
        "fixed": {"width": 8, "hidden_dim": 32, "batch_size": 16, "learning_rate": 0.001, "log_every": 10},
        "train_samples": 800,
        "metric": {"seed": 0, "full": {"num_train": 300, "num_eval": 150, "batch_size": 16, "num_stat_samples": 256}},
        "sampler": {"name": "tpe", "seed": 0},
        "pruner": {"name": "none"},
        "n_trials": n_trials,
    }
    spec.update(overrides)
    return spec


def small_celeba_root(sample: Path, root: Path, n_train: int, n_val: int) -> Path:
    """A CelebA folder of the first ``n_train`` train and ``n_val`` val rows of ``sample``; images symlinked, never copied."""
    lines = (sample / "list_attr_celeba.txt").read_text().splitlines()
    partition = dict(line.split() for line in (sample / "list_eval_partition.txt").read_text().splitlines())
    rows = [line for line in lines[2:] if partition[line.split()[0]] == "0"][:n_train]
    rows += [line for line in lines[2:] if partition[line.split()[0]] == "1"][:n_val]
    (root / "list_attr_celeba.txt").write_text("\n".join([str(len(rows)), lines[1], *rows]) + "\n")
    names = [row.split()[0] for row in rows]
    (root / "list_eval_partition.txt").write_text("\n".join(f"{n} {partition[n]}" for n in names) + "\n")
    (root / "img_align_celeba").mkdir()
    for name in names:
        (root / "img_align_celeba" / name).symlink_to(sample / "img_align_celeba" / name)
    return root


RACE_CURVE = {"budgets": [200, 400, 800], "num_train": 60, "num_eval": 30, "batch_size": 8}


def race_spec(dsprites_path: str | Path, study: str = "race", max_seeds: int = 3, **overrides: Any) -> dict[str, Any]:
    """:func:`tiny_spec` as a race: two configurations (a grid over β), 2 seeds per trial, a 3-budget learning
    curve, then a race to ``max_seeds`` seeds."""
    spec = tiny_spec(dsprites_path, study, n_trials=2, search_space={"beta": [0.5, 8.0]},
                     sampler={"name": "grid", "seed": 0}, seeds_per_trial=2, race={"max_seeds": max_seeds})
    spec["fixed"] = {**spec["fixed"], "latent_dim": 4}
    spec["metric"] = {**spec["metric"], "curve": RACE_CURVE}
    spec.update(overrides)
    return spec
