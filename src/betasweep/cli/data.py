"""``betasweep data stats``: CelebA attribute statistics; ``betasweep data check``: what a dataset file holds."""

from __future__ import annotations

import time
from pathlib import Path

import click

from betasweep.data import DATASETS

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


@data_group.command("check")
@click.option("--dataset", "name", type=click.Choice([d for d in DATASETS if d not in ("shapes", "celeba")]),
              required=True, help="The dataset whose official file layout PATH should have.")
@click.argument("path", type=click.Path(path_type=Path))
def data_check(name, path):
    """Read PATH as dataset NAME and say what it holds (JSON): images, factors and their sizes, the
    files, how images are read, and the memory and disk it will use. Reads labels and headers only:
    nothing is decoded or written. A missing or malformed file: one line naming it and what was
    expected, exit code 2."""
    from betasweep.cli._common import emit_json
    from betasweep.data import human_bytes, load_dataset

    info = load_dataset(name, path).describe()
    info["summary"] = (f"{name}: {info['grid_images']} images ({'x'.join(map(str, info['factors'].values()))}: "
                       f"{', '.join(info['factors'])}), {info['channels']} channel(s); holds "
                       f"{human_bytes(info.get('ram_bytes', 0))} in RAM, reads {human_bytes(info['image_bytes_read'])} "
                       f"per image from disk" + (f", disk cache {human_bytes(info['disk_cache']['bytes'])} at "
                                                 f"{info['disk_cache']['path']}" if "disk_cache" in info else ""))
    emit_json(info)


command = data_group
