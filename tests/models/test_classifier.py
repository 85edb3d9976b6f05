"""The attribute classifier: backbones, local-only ImageNet weights, metrics, a short real training run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import small_celeba_root
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from betasweep.errors import ConfigError
from betasweep.models.classifier import (
    AttributeClassifier,
    ClassifierConfig,
    MissingWeightsError,
    build_classifier,
    imagenet_weights_path,
    probability_function,
)
from betasweep.training.classifier import (
    ClassifierTrainConfig,
    attribute_metrics,
    load_classifier,
    majority_baseline,
    predict_probabilities,
    save_classifier,
    train_classifier,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO.parent / "shared" / "data" / "celeba-sample"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize(("arch", "size", "aux"), [("resnet18", 32, False), ("inception_v3", 75, False),
                                                     ("inception_v3", 299, True)])
def test_backbones_give_one_logit_per_attribute(arch, size, aux):
    model = AttributeClassifier(ClassifierConfig(arch=arch, image_size=size, pretrained=False))
    x = torch.rand(2, 3, size, size)
    model.train()
    logits, aux_logits = model.logits_and_aux(x)
    assert logits.shape == (2, 40) and (aux_logits is not None) == aux
    if aux:
        assert aux_logits.shape == (2, 40)
    model.eval()
    assert model(x).shape == (2, 40)


def test_config_rejects_bad_values():
    with pytest.raises(ConfigError, match="arch"):
        ClassifierConfig(arch="vgg16")
    with pytest.raises(ConfigError, match="75"):
        ClassifierConfig(arch="inception_v3", image_size=64)


def test_imagenet_weights_come_from_the_local_hub_cache_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    config = ClassifierConfig(arch="resnet18", image_size=32, pretrained=True)
    path = imagenet_weights_path("resnet18")
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(MissingWeightsError) as error:
        build_classifier(config)
    assert str(path) in str(error.value) and "--from-scratch" in str(error.value)

    # A file in torchvision's format at that path is what gets loaded (a seeded stand-in: no network here).
    import torchvision

    torch.manual_seed(7)
    stand_in = torchvision.models.resnet18(weights=None).state_dict()
    path.parent.mkdir(parents=True)
    torch.save(stand_in, path)
    model = build_classifier(config)
    torch.testing.assert_close(model.net.conv1.weight, stand_in["conv1.weight"])
    torch.testing.assert_close(model.net.layer4[1].bn2.running_var, stand_in["layer4.1.bn2.running_var"])
    assert model.net.fc.out_features == 40


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    target = rng.random((300, 5)) < [0.5, 0.1, 0.9, 0.3, 0.02]
    predicted = np.where(rng.random((300, 5)) < 0.8, target, ~target)
    metrics = attribute_metrics(predicted, target)
    for a in range(5):
        assert metrics["accuracy"][a] == pytest.approx(accuracy_score(target[:, a], predicted[:, a]))
        assert metrics["balanced_accuracy"][a] == pytest.approx(balanced_accuracy_score(target[:, a], predicted[:, a]))
        assert metrics["f1"][a] == pytest.approx(f1_score(target[:, a], predicted[:, a]))
    train = rng.random((500, 5)) < [0.5, 0.1, 0.9, 0.3, 0.02]
    majority = train.mean(0) >= 0.5
    np.testing.assert_allclose(majority_baseline(train, target), [(target[:, a] == majority[a]).mean() for a in range(5)])


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """64 train and 32 val images of the real sample at 32 px, in a private cache."""
    if not (SAMPLE / "list_attr_celeba.txt").is_file():
        pytest.skip(f"CelebA sample not found at {SAMPLE}")
    from betasweep.data.celeba import CelebA

    root = small_celeba_root(SAMPLE, tmp_path_factory.mktemp("celeba-small"), n_train=64, n_val=32)
    train = CelebA(root, "train", image_size=32, crop_size=178, cache_dir=root / "cache", progress=False)
    return train, train.with_partition("val")


def test_short_training_run_keeps_the_best_epoch_and_round_trips(small_data, tmp_path):
    train, val = small_data
    records = []
    config = ClassifierConfig(arch="resnet18", image_size=32, pretrained=False)
    train_config = ClassifierTrainConfig(epochs=3, batch_size=16, patience=1, pos_weight=True, device="cpu")
    result = train_classifier(train, val, config, train_config, callback=records.append)
    assert records == result.history and 1 <= len(records) <= 3
    accuracies = [r["val_mean_accuracy"] for r in records]
    assert result.best_epoch == 1 + int(np.argmax(accuracies))
    assert result.report["mean_accuracy"] == max(accuracies)
    assert result.report["baseline_mean_accuracy"] == pytest.approx(
        majority_baseline(train.attributes, val.attributes).mean())
    assert len(result.report["attributes"]) == 40 and all(np.isfinite(r["train_loss"]) for r in records)

    path = save_classifier(tmp_path / "c.pt", result.model, attribute_names=list(train.attribute_names))
    loaded, state = load_classifier(path)
    assert state["attribute_names"] == list(train.attribute_names) and not loaded.training
    before = predict_probabilities(result.model, val.images_uint8, len(val))
    np.testing.assert_allclose(predict_probabilities(loaded, val.images_uint8, len(val)), before, atol=1e-6)
    # The probability function resizes 64 px images (the VAE's) to the classifier's 32 px.
    probs = probability_function(loaded)(np.random.default_rng(0).random((3, 3, 64, 64), dtype=np.float32))
    assert probs.shape == (3, 40) and ((probs >= 0) & (probs <= 1)).all()


def test_same_seed_same_classifier(small_data):
    train, val = small_data
    config = ClassifierConfig(arch="resnet18", image_size=32, pretrained=False)
    train_config = ClassifierTrainConfig(epochs=1, batch_size=32, device="cpu", seed=3)
    first = train_classifier(train.with_partition("val"), val, config, train_config)  # 32 images suffice
    second = train_classifier(train.with_partition("val"), val, config, train_config)
    assert first.history[0]["train_loss"] == second.history[0]["train_loss"]
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
