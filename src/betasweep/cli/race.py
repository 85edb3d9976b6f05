"""``betasweep race``: add seeds, one round at a time, where the study's answer is undecided."""

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
@click.option("--alpha", type=float, default=None,
              help="Level of each round's Welch test, two-sided [default: the spec's race.alpha, else 0.05].")
@rank_by_option("Race")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds after which no trial starts here and no round begins (a later race resumes).")
@progress_option("trials' training")
@heartbeat_options
@CHECKPOINT_DIR_OPTION
def race(study_name, storage, tracking_uri, max_seeds, alpha, rank_by, timeout, progress, heartbeat_interval,
         grace_period, checkpoint_dir):
    """Race the study's configurations: each round adds one seed to every configuration not yet
    distinguishable from the best (Welch's t-test), drops those it separates, and stops when one stands
    alone, when max-seeds is reached, or at --timeout.

    A round's seeds are trials of the study: `betasweep worker` processes of the same study (on any
    machine, PostgreSQL or the storage proxy) take them too. Stopped or killed, the race resumes where it
    was when started again; no seed is trained twice.
    """
    from betasweep.errors import ConfigError
    from betasweep.sweeps.race import race_study
    from betasweep.sweeps.spec import RaceConfig
    from betasweep.sweeps.study import load_study, make_storage, redact
    from betasweep.tracking import Tracker

    the_storage = make_storage(storage, tracking_uri=tracking_uri, heartbeat_interval=heartbeat_interval,
                               grace_period=grace_period)
    the_study, spec = load_study(study_name, the_storage)
    defaults = spec.race or RaceConfig()
    max_seeds = defaults.max_seeds if max_seeds is None else max_seeds
    if max_seeds < 2:
        seeds = f"the study's trials have {spec.seeds_per_trial} seed{'s' if spec.seeds_per_trial > 1 else ''} each"
        raise ConfigError(f"--max-seeds {max_seeds}: {seeds} and a Welch test needs 2 a side; give --max-seeds >= 2 "
                          "so that the race can add seeds")
    settings = RaceConfig(max_seeds=max_seeds, alpha=defaults.alpha if alpha is None else alpha)
    tracking_uri = tracking_uri or the_study.user_attrs.get("mlflow_tracking_uri", "sqlite:///mlflow.db")
    echo(f"race: study {study_name!r} ({redact(storage)}), at most {settings.max_seeds} seeds per configuration, "
         f"alpha {settings.alpha}")
    try:
        result = race_study(the_study, spec, Tracker(tracking_uri, spec.study), settings, rank_by=rank_by,
                            timeout=timeout, progress=progress, echo=echo, checkpoint_dir=checkpoint_dir)
    except KeyboardInterrupt:
        echo("race stopped: start it again to resume")
        return
    click.echo("race verdict:")
    for line in result.lines:
        click.echo(f"  {line}")


command = race
