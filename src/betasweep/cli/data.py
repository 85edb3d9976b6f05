"""``betasweep data stats``: CelebA attribute statistics."""

from __future__ import annotations

import time
from pathlib import Path

import click

ROOT_HELP = "CelebA directory: list_attr_celeba.txt, list_eval_partition.txt and (for images) img_align_celeba/."

@click.group("data")
def data_group():
    """Inspect datasets."""


@data_group.command("stats")
@click.option("--root", type=click.Path(path_type=Path), required=True, help=ROOT_HELP)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("celeba-stats.html"),
              show_default=True, help="Offline HTML report (correlation heatmap, most correlated pairs).")
@click.option("--top", type=click.IntRange(min=1), default=15, show_default=True, help="Correlated pairs listed.")
def data_stats(root, out, top):
    """Print each attribute's positive rate per partition and its imbalance; write the HTML report."""
    from betasweep.data.celeba import read_labels
    from betasweep.data.celeba_stats import attribute_stats, format_stats_table, top_correlated_pairs, write_stats_report

    start = time.perf_counter()
    labels = read_labels(root)
    stats = attribute_stats(labels)
    click.echo(format_stats_table(stats))
    click.echo("\nmost correlated pairs (phi):")
    for a, b, r in top_correlated_pairs(stats.correlation, stats.attribute_names, top):
        click.echo(f"  {a:<20} {b:<20} {r:+.3f}")
    path = write_stats_report(stats, out, root=str(labels.root), top=top)
    click.echo(f"\nreport: {path}  ({labels.num_rows} images, {time.perf_counter() - start:.1f} s)")


command = data_group
