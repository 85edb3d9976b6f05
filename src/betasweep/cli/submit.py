"""``betasweep submit``: N workers of a study as one Slurm job array (or N local processes), through submitit."""

from __future__ import annotations

import json
from pathlib import Path

import click

from betasweep.cli._common import CHECKPOINT_DIR_OPTION, STORAGE_HELP, TRACKING_HELP, echo, storage_option


@click.command("submit")
@click.argument("spec_path", metavar="[SPEC]", required=False, type=click.Path(path_type=Path))
@click.option("--study", "study_name", default=None, help="An existing study (or the study of SPEC, created if missing).")
@storage_option(None, required=True, help=STORAGE_HELP + " Slurm tasks need PostgreSQL or grpc://.")
@click.option("--tracking-uri", default=None, help=TRACKING_HELP + " [default: the one the study was created with]")
@click.option("--workers", type=click.IntRange(min=1), required=True, help="Workers: one array task each.")
@click.option("--cluster", type=click.Choice(["auto", "slurm", "local"]), default="auto", show_default=True,
              help="slurm: a job array; local: processes on this machine (submitit's local executor); "
                   "auto: slurm when sbatch is on PATH.")
@click.option("--partition", default=None, help="Slurm partition [default: the cluster's].")
@click.option("--time", "time_min", type=click.IntRange(min=1), default=60, show_default=True,
              help="Each task's time limit, minutes; a task that reaches it is requeued, its trial retried.")
@click.option("--cpus-per-worker", type=click.IntRange(min=1), default=1, show_default=True,
              help="--cpus-per-task of each task (and its torch threads).")
@click.option("--gpus-per-worker", type=click.IntRange(min=0), default=0, show_default=True, help="GPUs per task.")
@click.option("--workers-per-gpu", type=click.IntRange(min=1), default=None,
              help="K worker processes per task sharing its one GPU (the task asks for 1 GPU and K x "
                   "--cpus-per-worker CPUs; --workers N gives N x K workers) [default: one worker per task].")
@click.option("--mem", "mem_gb", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Memory per task, GiB [default: the partition's].")
@click.option("--max-parallel", type=click.IntRange(min=1), default=None,
              help="Array throttle: at most this many tasks run at once [default: all].")
@click.option("--slurm-arg", "slurm_args", multiple=True, metavar="KEY=VALUE",
              help="Any other sbatch option, repeatable: account=lab, qos=long, constraint=a100.")
@click.option("--signal-lead", type=click.IntRange(min=10), default=120, show_default=True,
              help="Seconds before the time limit at which Slurm warns the task (SIGUSR2) to close its trial.")
@click.option("--max-complete-trials", type=click.IntRange(min=0), default=None,
              help="The study-wide target of complete trials (0: none) [default: the spec's n_trials].")
@click.option("--heartbeat-interval", type=click.IntRange(min=1), default=60, show_default=True,
              help="Seconds between a worker's heartbeats.")
@click.option("--grace-period", type=click.IntRange(min=2), default=180, show_default=True,
              help="Seconds without a heartbeat after which a trial counts as dead and is retried.")
@click.option("--log-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the tasks' logs and submitit's files, on a filesystem the nodes share "
                   "[default: ./betasweep-jobs/STUDY].")
@click.option("--dry-run", is_flag=True, help="Print the batch script that would be submitted; submit nothing.")
@CHECKPOINT_DIR_OPTION
def submit(spec_path, study_name, storage, tracking_uri, workers, cluster, partition, time_min, cpus_per_worker,
           gpus_per_worker, workers_per_gpu, mem_gb, max_parallel, slurm_args, signal_lead, max_complete_trials,
           heartbeat_interval, grace_period, log_dir, dry_run, checkpoint_dir):
    """Start N workers of a study as one Slurm job array, through submitit.

    Give an existing study (--study) or a SPEC (its study is created first, as `study create`
    does). Each array task runs `betasweep worker` with the options given here. A task that is
    preempted, cancelled with a signal or reaches --time marks its running trial failed with the
    reason, closes its MLflow run and is requeued; the trial's params run again, and the study
    still ends with exactly its target of complete trials.

    --cluster local starts the same workers as processes on this machine and waits for them.
    """
    from betasweep.sweeps import launcher

    resources = launcher.Resources(workers=workers, time_min=time_min, partition=partition,
                                   cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker, mem_gb=mem_gb,
                                   max_parallel=max_parallel, slurm_args=launcher.parse_slurm_args(slurm_args),
                                   signal_lead_s=signal_lead, workers_per_gpu=workers_per_gpu or 0)
    spec = None
    if spec_path is not None:
        from betasweep.sweeps.spec import load_spec

        spec = load_spec(spec_path)
        if study_name is not None and study_name != spec.study:
            raise click.UsageError(f"--study {study_name!r} differs from SPEC's study {spec.study!r}")
        study_name = spec.study
    if study_name is None:
        raise click.UsageError("give --study NAME (an existing study) or a SPEC")
    job_name = f"betasweep-{study_name}"
    folder = (log_dir or Path("betasweep-jobs") / study_name).resolve()

    if dry_run:
        _dry_run(spec, study_name, storage, tracking_uri, cluster, resources, folder, job_name, max_complete_trials,
                 heartbeat_interval, grace_period, checkpoint_dir)
        return

    cluster = launcher.resolve_cluster(cluster)
    launcher.check_storage_for(cluster, storage)
    from betasweep.api.study import open_study

    the_study, spec, tracker = open_study(spec, study_name, storage=storage, tracking_uri=tracking_uri,
                                          heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    target = spec.n_trials if max_complete_trials is None else max_complete_trials
    tracking_uri = tracker.tracking_uri
    argv = launcher.worker_argv(study_name, storage, tracking_uri=tracking_uri, max_complete=target,
                                heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                checkpoint_dir=checkpoint_dir)
    local = launcher.local_only_addresses(storage, tracking_uri) if cluster == "slurm" else []
    if local:
        echo(f"warning: {', '.join(local)} is this machine's loopback address: tasks on other nodes cannot reach it "
             "(use a host name the compute nodes resolve)")
    if storage.startswith("sqlite") and workers > 1:
        echo("warning: SQLite storage is for one process; for several workers use PostgreSQL "
             "(--storage postgresql+psycopg://USER:PASSWORD@HOST:5432/DB)")
    from betasweep.cli import main

    folder.mkdir(parents=True, exist_ok=True)
    storage_file = launcher.write_storage_file(folder, storage)  # 0600; never in argv nor in the pickled task
    task = launcher.WorkerTask(main, argv, study_name, storage_file, target, processes=resources.workers_per_gpu)
    jobs = launcher.submit_workers(cluster, folder, job_name, resources, task)
    job_id = jobs[0].job_id.split("_")[0]
    link = tracker.experiment_link()  # the UI's training view of the study's runs
    result = {"cluster": cluster, "job_id": job_id, "tasks": [j.job_id for j in jobs], "study": study_name,
              "target": target, "logs": str(folder), "mlflow": link}
    click.echo(json.dumps(result))
    echo(f"submitted {workers} worker(s) of study {study_name!r} ({cluster}, job {job_id}); "
         f"{sum(t.state.name == 'COMPLETE' for t in the_study.get_trials(deepcopy=False))}/{target} trials complete")
    echo(f"logs: {folder}/{job_id}_*_log.out (one per task)")
    echo(f"MLflow: {link}" + (f"   (served by: {tracker.ui_command()})" if tracker.ui_command() else ""))
    if cluster == "slurm":
        echo(f"follow: squeue -j {job_id}    stop: scancel {job_id} (running trials are retried on resubmission)")
        return
    _wait_local(jobs)


def _dry_run(spec, study_name, storage, tracking_uri, cluster, resources, folder, job_name, max_complete_trials,
             heartbeat_interval, grace_period, checkpoint_dir) -> None:
    """``--dry-run``: print the batch script (or the local commands) that would be submitted; submit nothing."""
    from betasweep.sweeps import launcher

    target = max_complete_trials if max_complete_trials is not None else (spec.n_trials if spec else None)
    argv = launcher.worker_argv(study_name, storage, tracking_uri=tracking_uri,
                                max_complete=target if target is not None else 0,
                                heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                                checkpoint_dir=checkpoint_dir)
    if target is None:  # the study's target is read from the study at submission
        argv = [a for i, a in enumerate(argv) if a != "--max-complete-trials" and argv[i - 1] != "--max-complete-trials"]
    if cluster in ("slurm", "auto"):
        launcher.check_storage_for("slurm", storage)
        click.echo(launcher.sbatch_script(folder, job_name, resources, argv))
    else:
        click.echo("\n".join(f"# local process {i}: {launcher.shown_command(argv)}" for i in range(resources.workers)))
    per_task = f" x {resources.workers_per_gpu} per GPU" if resources.workers_per_gpu else ""
    echo(f"dry run: nothing submitted ({resources.workers} worker(s){per_task}; logs would go to {folder})")


def _wait_local(jobs) -> None:
    """Wait for local worker processes; Ctrl-C stops them (each closes its trial) and exits."""
    try:
        for i, job in enumerate(jobs):
            outcome = job.result()
            echo(f"worker {i} ({job.job_id}): {outcome}")
    except KeyboardInterrupt:
        for job in jobs:
            job.cancel(check=False)
        echo("stopping the local workers (each closes its running trial)")
        raise


command = submit
