"""``betasweep race``: seeds or images, one round at a time, where the study's answer is undecided; a shell over
:func:`betasweep.api.race`."""

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
    from betasweep.api import study as api

    try:
        outcome = api.race(study_name, storage=storage, tracking_uri=tracking_uri, max_seeds=max_seeds,
                           max_images=max_images, margin=margin, max_total_images=max_total_images, alpha=alpha,
                           rank_by=rank_by, timeout=timeout, progress=progress, heartbeat_interval=heartbeat_interval,
                           grace_period=grace_period, checkpoint_dir=checkpoint_dir, jobs=jobs, echo=echo)
    except KeyboardInterrupt:
        echo("race stopped: start it again to resume")
        return
    click.echo("race verdict:")
    for line in outcome.verdict:
        click.echo(f"  {line}")

command = race
