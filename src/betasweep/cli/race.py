"""``betasweep race``: seeds or images, one round at a time, where the study's answer is undecided."""

from __future__ import annotations

import click

from betasweep.cli._common import (CHECKPOINT_DIR_OPTION, TRACKING_HELP, echo, heartbeat_options, progress_option,
                                   rank_by_option, storage_option)


@click.command("race")
@click.option("--study", "study_name", required=True, help="Name of an existing study with complete trials.")
@storage_option("sqlite:///betasweep.db")
@click.option("--tracking-uri", default=None, help=TRACKING_HELP + " [default: the one the study was created with]")
@click.option("--max-seeds", type=int, default=None,
              help="Seeds per configuration at most; the race stops undecided there [default: the spec's race.max_seeds, else 8].")
@click.option("--max-images", type=int, default=None,
              help="Images seen per seed at most: rungs double from the study's train_samples up to it, each seed "
                   "continued from its checkpoint [default: the spec's race.max_images, else train_samples: seeds only].")
@click.option("--margin", type=float, default=None,
              help="Equivalence margin in the metric's units (e.g. 0.03): within it by TOST is 'equivalent' "
                   "[default: the spec's race.margin, else none].")
@click.option("--max-total-images", type=int, default=None,
              help="Images the race may train in all; it stops there [default: the spec's race.max_total_images, else no bound].")
@click.option("--alpha", type=float, default=None,
              help="The race's overall level (false separation over all its rounds) [default: the spec's race.alpha, else 0.05].")
@rank_by_option("Race")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds after which no trial starts here and no round begins (a later race resumes).")
@progress_option("trials' training")
@heartbeat_options
@CHECKPOINT_DIR_OPTION
@click.option("--jobs", default="1", show_default=True, metavar="N|auto",
              help="Processes of one torch thread each that train the race's seeds on this machine (auto: one per "
                   "core); N > 1 needs a storage for several processes: a journal file (the default storage "
                   "becomes betasweep.journal) or PostgreSQL.")
def race(study_name, storage, tracking_uri, max_seeds, max_images, margin, max_total_images, alpha, rank_by, timeout,
         progress, heartbeat_interval, grace_period, checkpoint_dir, jobs):
    """Race the study's configurations until each comparison with the best is decided: worse, equivalent
    (within --margin, two one-sided tests) or undecided at max-seeds and max-images. Each round either
    extends every seed still racing to the next rung of images seen (doubling from the study's
    train_samples up to --max-images, each continued from its checkpoint) or adds seeds at this rung,
    whichever the data says costs fewer images to a decision; tests are paired where configurations share
    seeds (Welch otherwise), Holm within a round, alpha spent over the rounds.

    A round's tasks are trials of the study: `betasweep worker` processes of the same study (on any
    machine, PostgreSQL or the storage proxy) take them too. Stopped or killed, the race resumes where it
    was when started again; no task is queued twice.
    """
    from betasweep.errors import ConfigError
    from betasweep.sweeps.race import race_study
    from betasweep.sweeps.spec import RaceConfig
    from betasweep.sweeps.jobs import local_workers, one_thread, resolve_jobs
    from betasweep.sweeps.study import load_study, local_storage, make_storage, redact
    from betasweep.tracking import Tracker

    jobs = resolve_jobs(jobs)
    storage = local_storage(storage, jobs)
    the_storage = make_storage(storage, tracking_uri=tracking_uri, heartbeat_interval=heartbeat_interval,
                               grace_period=grace_period)
    the_study, spec = load_study(study_name, the_storage)
    defaults = spec.race or RaceConfig()
    max_seeds = defaults.max_seeds if max_seeds is None else max_seeds
    if max_seeds < 2:
        seeds = f"the study's trials have {spec.seeds_per_trial} seed{'s' if spec.seeds_per_trial > 1 else ''} each"
        raise ConfigError(f"--max-seeds {max_seeds}: {seeds} and a Welch test needs 2 a side; give --max-seeds >= 2 "
                          "so that the race can add seeds")
    if margin is not None and not margin > 0:
        raise ConfigError(f"--margin {margin:g}: expected a margin > 0 in the metric's units (e.g. 0.03)")
    if max_images is not None and max_images < spec.train_samples:
        raise ConfigError(f"--max-images {max_images}: below the {spec.train_samples:,} images each seed of study "
                          f"{study_name!r} already trained; give at least {spec.train_samples}")
    if max_total_images is not None and max_total_images < 1:
        raise ConfigError(f"--max-total-images {max_total_images}: expected a number of images >= 1")
    settings = RaceConfig(max_seeds=max_seeds, alpha=defaults.alpha if alpha is None else alpha,
                          max_images=defaults.max_images if max_images is None else max_images,
                          margin=defaults.margin if margin is None else margin,
                          max_total_images=defaults.max_total_images if max_total_images is None else max_total_images)
    tracking_uri = tracking_uri or the_study.user_attrs.get("mlflow_tracking_uri", "sqlite:///mlflow.db")
    echo(f"race: study {study_name!r} ({redact(storage)}), at most {settings.max_seeds} seeds and "
         f"{settings.max_images or spec.train_samples:,} images per seed, margin {settings.margin}, alpha {settings.alpha}")
    try:
        with one_thread(jobs > 1), local_workers(jobs - 1, storage=storage, study_name=study_name, tracking_uri=tracking_uri,
                                                 mode="serve", heartbeat_interval=heartbeat_interval,
                                                 grace_period=grace_period, checkpoint_dir=checkpoint_dir, echo=echo):
            result = race_study(the_study, spec, Tracker(tracking_uri, spec.study), settings, rank_by=rank_by,
                                timeout=timeout, progress=progress, echo=echo, checkpoint_dir=checkpoint_dir)
    except KeyboardInterrupt:
        echo("race stopped: start it again to resume")
        return
    click.echo("race verdict:")
    for line in result.lines:
        click.echo(f"  {line}")


command = race
