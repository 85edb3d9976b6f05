"""A task that reaches its real `--time` mid-trial is requeued: run once by hand (minutes; not a test).

    PYTHONPATH=src python tests/slurm_time_limit.py

Starts the one-node Slurm of tests/slurm.py, PostgreSQL and an `mlflow server` (tests/servers.py),
creates a 6-trial study of the tests' tiny spec with trials made long enough (4,000 training
images) that the single worker is mid-trial when its time runs out, and submits it with
`--workers 1 --time 3 --signal-lead 60`: Slurm sends SIGUSR2 a minute (or, by its timer's resolution,
up to a minute more) before the 3-minute limit, the worker fails its trial with the reason, submitit
requeues the task, Slurm holds it (about 2 minutes, Reason=BeginTime) and starts it again, with a
fresh 3-minute limit, until the study has its 6 COMPLETE trials. Nothing is released by hand. Prints the
trials and the task's log; exits 1 if the study did not end with 6 COMPLETE trials and at least
one trial failed by SIGUSR2 and retried.

Resume (issue 17): each trial trains 2 seeds with a checkpoint every 25 steps (one torch thread, so
the weights are reproducible); the retry of a trial stopped by the time limit must continue from it
(user attribute ``resumed``: a seed kept as finished or resumed at a step > 0, never every seed from
0), and each seed's final weights in the retry's run must equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from helpers import betasweep_command, tiny_spec  # noqa: E402
from servers import MlflowServer, PostgresServer  # noqa: E402
from slurm import SlurmCluster  # noqa: E402

DSPRITES = HERE.parents[1] / "shared" / "data" / "dsprites" / "dsprites_downsampled.npz"


def main() -> int:
    import optuna
    from optuna.trial import TrialState

    from betasweep.sweeps.spec import parse_spec
    from betasweep.sweeps.study import create_study, make_storage
    from betasweep.tracking import Tracker

    work = Path(tempfile.mkdtemp(prefix="betasweep-timelimit-"))
    with PostgresServer() as postgres, SlurmCluster() as slurm:
        mlflow = MlflowServer(postgres.create_database("mlflow"), work / "artifacts", log_file=work / "mlflow.log")
        mlflow.start()
        try:
            storage = postgres.create_database("optuna")
            spec = tiny_spec(DSPRITES, "timelimit", 6, train_samples=4000, seeds_per_trial=2)
            spec["fixed"].update(checkpoint_every=25, threads=1)
            spec["metric"]["panel"] = ["beta_vae"]
            create_study(parse_spec(spec), make_storage(storage), Tracker(mlflow.uri, "timelimit"))
            env = {**slurm.env(), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
            started = time.monotonic()
            proc = subprocess.run([*betasweep_command(), "submit", "--study", "timelimit", "--storage", storage,
                                   "--workers", "1", "--cluster", "slurm", "--time", "3", "--signal-lead", "60",
                                   "--log-dir", str(work / "jobs")], capture_output=True, text=True, env=env,
                                  cwd=work, check=True)
            job = json.loads(proc.stdout)["job_id"]
            while slurm.run("squeue", "-h", "-j", job).stdout.strip():
                time.sleep(5)
            elapsed = time.monotonic() - started
            trials = optuna.load_study(study_name="timelimit", storage=storage).get_trials(deepcopy=False)
            for trial in trials:
                print(f"trial {trial.number}: {trial.state.name} {trial.params} "
                      f"{trial.user_attrs.get('fail_reason', '')} retried_from={trial.user_attrs.get('retried_from')}")
            log = "".join(path.read_text() for path in sorted((work / "jobs").glob(f"{job}_*log.*")))
            print("--- task log:\n" + "\n".join(line for line in log.splitlines() if "View " not in line))
            complete = sum(t.state == TrialState.COMPLETE for t in trials)
            timed_out = [t for t in trials if "SIGUSR2" in t.user_attrs.get("fail_reason", "")]
            retried = {t.user_attrs.get("retried_from") for t in trials}
            ok = complete == 6 and timed_out and all(t.number in retried for t in timed_out)
            resumed_ok = check_resumed(parse_spec(spec), trials, timed_out, mlflow.uri, work)
            ok = ok and resumed_ok
            print(f"{complete} COMPLETE, {len(timed_out)} failed by the time-limit warning and retried; "
                  f"{elapsed:.0f} s; {'OK' if ok else 'NOT OK'}")
            return 0 if ok else 1
        finally:
            mlflow.stop()
            shutil.rmtree(work, ignore_errors=True)


def check_resumed(spec, trials, timed_out, tracking_uri: str, work: Path) -> bool:
    """Each retry of a timed-out trial continued from it, and its seeds' final weights are an uninterrupted run's."""
    import torch
    from mlflow.tracking import MlflowClient

    from betasweep.data import DSprites
    from betasweep.sweeps.spec import build_configs
    from betasweep.training import read_checkpoint, train

    data, client, ok = DSprites(DSPRITES), MlflowClient(tracking_uri), True
    for stopped in timed_out:
        retry = next(t for t in trials if t.user_attrs.get("retried_from") == stopped.number)
        resumed = retry.user_attrs.get("resumed", {})
        kept = {i: r for i, r in resumed.items() if r.get("finished") or (r.get("step") or 0) > 0}
        print(f"trial {retry.number} (retry of {stopped.number}, {retry.state.name}): resumed {resumed}")
        ok = ok and bool(kept) and retry.user_attrs.get("seeds") == stopped.user_attrs.get("seeds")
        if retry.state.name != "COMPLETE":
            continue
        for index, seed in enumerate(retry.user_attrs["seeds"]):
            path = client.download_artifacts(retry.user_attrs["mlflow_run_id"], f"seed-{index}/checkpoint/checkpoint.pt",
                                             str(work / f"check-{retry.number}-{index}"))
            model_config, train_config = build_configs(spec, retry.params, seed, data.num_channels)
            straight = train(data, model_config, train_config).model.state_dict()
            weights = read_checkpoint(path)["model_state"]
            same = all(torch.equal(weights[k], straight[k]) for k in straight)
            print(f"  seed {index}: final weights {'equal' if same else 'DIFFER from'} an uninterrupted run's")
            ok = ok and same
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
