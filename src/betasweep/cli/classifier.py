"""``betasweep classifier train|evaluate``: the CelebA attribute classifier (transfer learning)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from betasweep.cli._common import progress_option
from betasweep.cli.data import ROOT_HELP

@click.group("classifier")
def classifier_group():
    """Train and evaluate the CelebA attribute classifier."""


@classifier_group.command("train")
@click.option("--root", type=click.Path(path_type=Path), required=True, help=ROOT_HELP)
@click.option("--arch", type=click.Choice(["inception_v3", "resnet50", "resnet18"]), default="inception_v3",
              show_default=True, help="Backbone; InceptionV3 is the seeds' model, the ResNets are lighter.")
@click.option("--image-size", type=click.IntRange(min=1), default=None,
              help="Input side in px [default: 299 for inception_v3, 224 for the ResNets].")
@click.option("--crop-size", type=click.IntRange(min=1), default=178, show_default=True,
              help="Centre crop of the 178x218 JPEGs before resizing.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--learning-rate", "--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True),
              default=1e-3, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(min=0), default=1e-4, show_default=True)
@click.option("--patience", type=click.IntRange(min=1), default=3, show_default=True,
              help="Epochs without a better val mean accuracy before stopping.")
@click.option("--pos-weight/--no-pos-weight", default=False, show_default=True,
              help="Weight positives by n_neg/n_pos of the train partition (for imbalance).")
@click.option("--augment/--no-augment", default=True, show_default=True)
@click.option("--from-scratch", is_flag=True, help="Random initialisation instead of the local ImageNet weights.")
@click.option("--split", type=click.Choice(["official", "identity"]), default="official", show_default=True,
              help="Official partition, or a new split keeping identities disjoint (needs identity_CelebA.txt).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:i].")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="CPU threads for torch (0: torch's default). 1 is fastest on a busy shared CPU.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Image cache directory [default: $BETASWEEP_CACHE or ~/.cache/betasweep].")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Directory for classifier.pt and metrics.json.")
@progress_option("training")
@click.option("--tracking-uri", default=None,
              help="Log the run to MLflow (sqlite:///mlflow.db or http://host:5000): params, per-epoch curves, "
                   "val metrics, checkpoint.")
@click.option("--experiment", default="attribute-classifier", show_default=True, help="MLflow experiment of the run.")
def classifier_train(root, arch, image_size, crop_size, epochs, batch_size, learning_rate, weight_decay, patience,
                     pos_weight, augment, from_scratch, split, seed, device, threads, cache_dir, out_dir, progress,
                     tracking_uri, experiment):
    """Train the attribute classifier; write OUT/classifier.pt and OUT/metrics.json (val report)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from betasweep.data.celeba import CelebA
    from betasweep.models.classifier import ClassifierConfig, require_imagenet_weights
    from betasweep.training.classifier import ClassifierTrainConfig, format_report, save_classifier, train_classifier

    image_size = image_size or (299 if arch == "inception_v3" else 224)
    if not from_scratch:
        require_imagenet_weights(arch)  # before the (possibly long) image caching
    train_config = ClassifierTrainConfig(
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, weight_decay=weight_decay,
        patience=patience, pos_weight=pos_weight, augment=augment, crop_size=crop_size, seed=seed, device=device,
    )
    train_data = CelebA(root, "train", image_size=image_size, crop_size=crop_size, split=split, cache_dir=cache_dir,
                        progress=progress)
    val_data = train_data.with_partition("val")
    model_config = ClassifierConfig(arch=arch, num_attributes=train_data.num_attributes, image_size=image_size,
                                    pretrained=not from_scratch)
    run = None
    if tracking_uri:
        from betasweep.tracking import Tracker

        run = Tracker(tracking_uri, experiment).start_run(f"{arch}-{image_size}px", tags={"betasweep.role": "classifier"})
        run.log_params({**model_config.to_dict(), **train_config.to_dict(), "root": str(root), "split": split})

    def on_epoch(record: dict) -> None:
        _echo_epoch(record)
        if run is not None:
            run.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])

    try:
        result = train_classifier(train_data, val_data, model_config, train_config, callback=on_epoch, progress=progress)
    except BaseException:
        if run is not None:
            run.end("FAILED")
        raise
    data_info = {"root": str(train_data.labels.root), "split": split, "image_size": image_size, "crop_size": crop_size}
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = save_classifier(
        out_dir / "classifier.pt", result.model, train_config=train_config.to_dict(), data=data_info,
        attribute_names=list(train_data.attribute_names), best_epoch=result.best_epoch, history=result.history,
        val_report=result.report,
    )
    metrics = {"checkpoint": str(checkpoint), "model_config": model_config.to_dict(),
               "train_config": train_config.to_dict(), "data": data_info, "best_epoch": result.best_epoch,
               "history": result.history, "val": result.report}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if run is not None:
        report = result.report
        run.log_metrics({k: v for k, v in report.items() if isinstance(v, (int, float))}, step=result.best_epoch)
        run.log_artifact(checkpoint, "checkpoint")
        run.log_artifact(out_dir / "metrics.json")
        run.end("FINISHED")
    click.echo(format_report(result.report))
    click.echo(f"best epoch {result.best_epoch} of {len(result.history)}; checkpoint: {checkpoint}")


def _echo_epoch(record: dict) -> None:
    click.echo(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, val mean accuracy "
               f"{record['val_mean_accuracy']:.4f} (baseline {record['baseline_mean_accuracy']:.4f}), "
               f"{record['elapsed_s']:.0f} s", err=True)


@classifier_group.command("evaluate")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--root", type=click.Path(path_type=Path), default=None,
              help="CelebA directory [default: the one the classifier was trained on].")
@click.option("--partition", type=click.Choice(["train", "val", "test"]), default="val", show_default=True)
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
def classifier_evaluate(checkpoint, root, partition, cache_dir, as_json):
    """Print the per-attribute accuracy, balanced accuracy and F1 of CHECKPOINT and the mean vs the majority baseline."""
    from betasweep.data.celeba import CelebA
    from betasweep.training import resolve_device
    from betasweep.training.classifier import classification_report, format_report, load_classifier, predict_probabilities

    model, state = load_classifier(checkpoint, map_location=resolve_device("auto"))
    info = state.get("data") or {}
    data = CelebA(root if root is not None else info.get("root"), "train", image_size=model.config.image_size,
                  crop_size=info.get("crop_size", 178), split=info.get("split", "official"), cache_dir=cache_dir,
                  progress=False)
    scored = data.with_partition(partition)
    probabilities = predict_probabilities(model, scored.images_uint8, len(scored))
    report = classification_report(probabilities, scored.attributes, data.attributes, data.attribute_names)
    click.echo(json.dumps(report, indent=2) if as_json else format_report(report))


command = classifier_group
