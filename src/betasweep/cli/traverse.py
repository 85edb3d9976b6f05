"""``betasweep traverse``: latent traversal and reconstruction figures of a checkpoint."""

from __future__ import annotations

from pathlib import Path

import click

from betasweep.cli._common import CHECKPOINT_ARG, DATA_FROM_CHECKPOINT_OPTION, TRACKING_OPTION, emit_json, model_and_data

@click.command("traverse")
@CHECKPOINT_ARG
@TRACKING_OPTION
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--data-path", type=click.Path(path_type=Path), default=None)
@DATA_FROM_CHECKPOINT_OPTION
@click.option("--seed", type=int, default=0, show_default=True, help="Picks the real images traversed around.")
@click.option("--classifier", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CelebA: an attribute-classifier checkpoint, to measure each dimension's effect on its predictions.")
@click.option("--set", "edits", multiple=True, metavar="NAME=VALUE",
              help="cvae: re-decode real held-out images with label NAME set to VALUE (CelebA: 1 or -1; a "
                   "ground-truth factor: its value); repeatable. Writes OUT/edit.png: originals, reconstructions, edits.")
def traverse(checkpoint, tracking_uri, out_dir, data_path, data_from_checkpoint, seed, classifier, edits):
    """Write OUT/traversal.png (labelled rows per latent dim, sorted by KL; z_j from -3 to 3) and OUT/reconstruction.png.

    On CelebA also name the dimensions by measurement (AUC of mu_j per attribute on the val
    partition; with --classifier, the change of its predicted probability along the traversal):
    prints the table and writes OUT/dimension_names.csv and OUT/dimension_names.html.
    """
    import numpy as np

    from betasweep.data import CelebA
    from betasweep.figures import save_figures
    from betasweep.metrics import held_out, vae_statistics

    model, _, data = model_and_data(checkpoint, data_path, tracking_uri, data_from_checkpoint=data_from_checkpoint)
    if edits and not model.conditional:
        raise click.UsageError(f"--set applies to cvae checkpoints; this one is a {model.config.model}")
    label_edits = parse_edits(model.config, edits)
    stats_rng, image_rng, naming_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    kl = vae_statistics(model, held_out(data), stats_rng, num_samples=2048)["kl_per_dim"]
    result, names = {}, None
    if label_edits:
        from betasweep.figures import save_edit_figure

        result["edit"] = str(save_edit_figure(model, held_out(data), label_edits, image_rng, out_dir / "edit.png"))
    if isinstance(data, CelebA) and not model.conditional:
        from betasweep.scoring import dimension_labels, name_dimensions

        rows, files = name_dimensions(model, data, classifier, naming_rng, out_dir, kl)
        click.echo("\n".join(str(row) for row in rows), err=True)
        result |= {name: str(path) for name, path in files.items()} | {"dimension_names": [str(row) for row in rows]}
        names = dimension_labels(rows)
    elif classifier is not None and not isinstance(data, CelebA):
        raise click.UsageError("--classifier applies to CelebA checkpoints only")
    paths = save_figures(model, held_out(data), image_rng, out_dir, kl, names=names)
    result = {name: str(path) for name, path in paths.items()} | {"kl_per_dim": kl} | result
    emit_json(result)


def parse_edits(config, edits: tuple[str, ...]) -> dict[int, float]:
    """``("Smiling=1", "Eyeglasses=-1")`` → ``{index in y: value}``; a one-hot factor ``shape=2`` sets
    its entries to ``2``'s one-hot. Raises :class:`click.UsageError` naming a bad edit."""
    out: dict[int, float] = {}
    for edit in edits:
        name, sep, raw = edit.partition("=")
        if not sep:
            raise click.UsageError(f"--set {edit}: expected NAME=VALUE")
        if config.conditioned_attributes is not None:
            if name not in config.conditioned_attributes:
                raise click.UsageError(f"--set {edit}: the model was not conditioned on {name!r}; conditioned: "
                                       f"{', '.join(config.conditioned_attributes)}")
            if raw not in ("1", "-1", "+1"):
                raise click.UsageError(f"--set {edit}: an attribute takes 1 or -1")
            out[config.conditioned_attributes.index(name)] = float(raw)
        else:
            if name != config.conditioned_factor:
                raise click.UsageError(f"--set {edit}: the model was not conditioned on {name!r}; conditioned: "
                                       f"{config.conditioned_factor}")
            if not raw.isdigit() or int(raw) >= config.label_dim:
                raise click.UsageError(f"--set {edit}: {name} takes a value in 0..{config.label_dim - 1}")
            out.update({k: float(k == int(raw)) for k in range(config.label_dim)})
    return out


command = traverse
