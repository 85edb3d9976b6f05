"""The CelebA attribute classifier: an ImageNet backbone with one logit per attribute.

Backbones are torchvision's InceptionV3 (Szegedy et al. 2016, "Rethinking the Inception
Architecture for Computer Vision"; the seeds' model), ResNet-50 and ResNet-18 (He et al. 2016;
lighter options for the CPU). The 1000-way ImageNet head is replaced by a linear layer with
``num_attributes`` outputs, read as independent Bernoulli logits (40 sigmoid outputs trained with
BCE; Liu et al. 2015 treat the attributes as 40 binary tasks too).

ImageNet weights are read from the local torch hub cache only (``torch.hub.get_dir()/checkpoints``,
the file name of the torchvision weights URL); nothing is ever downloaded.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from betasweep.errors import ConfigError, DataError

__all__ = [
    "ARCHITECTURES",
    "AttributeClassifier",
    "ClassifierConfig",
    "MissingWeightsError",
    "build_classifier",
    "probability_function",
    "imagenet_weights",
    "imagenet_weights_path",
    "load_imagenet_state",
    "require_imagenet_weights",
]

ARCHITECTURES = ("inception_v3", "resnet50", "resnet18")
MIN_IMAGE_SIZE = {"inception_v3": 75, "resnet50": 32, "resnet18": 32}
"""Smallest input side each backbone accepts (InceptionV3's stem needs 75 px; the ResNets reach 1x1 at 32 px)."""
INCEPTION_AUX_MIN_SIZE = 299
"""InceptionV3's auxiliary head pools a 17x17 grid, which only a 299 px input gives."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MissingWeightsError(DataError):
    """The ImageNet weights file is not in the local torch hub cache."""


@dataclass(frozen=True)
class ClassifierConfig:
    """Everything that determines the classifier's shape; stored whole in its checkpoint.

    Attributes:
        arch: one of :data:`ARCHITECTURES`.
        num_attributes: outputs of the head (40 for CelebA).
        image_size: input side in pixels (299 for InceptionV3 as published; 64 is practical
            for ResNet-18 on a CPU).
        pretrained: whether training started from ImageNet weights (a record: rebuilding the
            model from a checkpoint never needs the ImageNet file).
    """

    arch: str = "inception_v3"
    num_attributes: int = 40
    image_size: int = 299
    pretrained: bool = True

    def __post_init__(self):
        if self.arch not in ARCHITECTURES:
            raise ConfigError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {self.arch!r}")
        if self.num_attributes < 1:
            raise ConfigError(f"num_attributes must be >= 1, got {self.num_attributes}")
        if self.image_size < MIN_IMAGE_SIZE[self.arch]:
            raise ConfigError(
                f"{self.arch} needs image_size >= {MIN_IMAGE_SIZE[self.arch]} px, got {self.image_size}"
            )

    @property
    def aux_logits(self) -> bool:
        """Whether the model has InceptionV3's auxiliary head (only at >= 299 px)."""
        return self.arch == "inception_v3" and self.image_size >= INCEPTION_AUX_MIN_SIZE

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def imagenet_weights(arch: str):
    """torchvision's ImageNet weights enum member of ``arch`` (the V1 weights of each model)."""
    from torchvision.models import Inception_V3_Weights, ResNet18_Weights, ResNet50_Weights

    return {
        "inception_v3": Inception_V3_Weights.IMAGENET1K_V1,
        "resnet50": ResNet50_Weights.IMAGENET1K_V1,
        "resnet18": ResNet18_Weights.IMAGENET1K_V1,
    }[arch]


def imagenet_weights_path(arch: str) -> Path:
    """Where torchvision's loader looks for ``arch``'s ImageNet file: ``<hub dir>/checkpoints/<file>``.

    For example ``~/.cache/torch/hub/checkpoints/resnet18-f37072fd.pth``; ``$TORCH_HOME`` moves it.
    """
    url = imagenet_weights(arch).url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def require_imagenet_weights(arch: str) -> Path:
    """The path of ``arch``'s ImageNet file in the local hub cache, checked to exist.

    Raises:
        MissingWeightsError: the file is absent; the message gives the exact path and the URL.
    """
    path = imagenet_weights_path(arch)
    if not path.is_file():
        raise MissingWeightsError(
            f"ImageNet weights for {arch} not found: place {path.name} (from {imagenet_weights(arch).url}) "
            f"at {path}, or train from scratch (--from-scratch)"
        )
    return path


def load_imagenet_state(arch: str) -> dict[str, torch.Tensor]:
    """The ImageNet state dict of ``arch`` from the local hub cache, never from the network.

    Raises:
        MissingWeightsError: the file is absent; the message gives the exact path and the URL.
    """
    weights, path = imagenet_weights(arch), require_imagenet_weights(arch)
    try:
        return weights.get_state_dict(progress=False, weights_only=True)
    except Exception as error:  # a truncated or foreign file
        raise DataError(f"{path}: not a readable {arch} weights file ({type(error).__name__}: {error})") from None


def _backbone(arch: str) -> nn.Module:
    """The torchvision model with its 1000-way ImageNet head, randomly initialised."""
    from torchvision import models

    if arch == "inception_v3":
        # transform_input=True maps ImageNet-normalised input to the [-1, 1] scaling the
        # original Google weights expect, as torchvision does when loading them.
        return models.inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=True)
    return getattr(models, arch)(weights=None)


class AttributeClassifier(nn.Module):
    """A backbone with a ``num_attributes``-logit head, taking images in [0, 1].

    ImageNet normalisation happens inside :meth:`forward`, so the classifier takes the same
    images as the β-VAE (and its decoded traversals).

    Args:
        config: the architecture.
        backbone_state: ImageNet state dict of the backbone (with its 1000-way head) to start
            from, e.g. :func:`load_imagenet_state`; None for random initialisation.

    Shapes: ``x`` float32 ``(b, 3, image_size, image_size)`` in [0, 1] → logits ``(b, num_attributes)``.
    """

    def __init__(self, config: ClassifierConfig, backbone_state: dict[str, torch.Tensor] | None = None):
        super().__init__()
        self.config = config
        net = _backbone(config.arch)
        if backbone_state is not None:
            net.load_state_dict(backbone_state)
        net.fc = nn.Linear(net.fc.in_features, config.num_attributes)
        if config.arch == "inception_v3":
            if config.aux_logits:
                net.AuxLogits.fc = nn.Linear(net.AuxLogits.fc.in_features, config.num_attributes)
            else:
                net.aux_logits, net.AuxLogits = False, None
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def logits_and_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(logits, aux_logits)``, each ``(b, num_attributes)``; ``aux_logits`` only from
        InceptionV3 in training mode at >= 299 px, else None."""
        out = self.net((x - self.mean) / self.std)
        if isinstance(out, tuple):  # torchvision's InceptionOutputs(logits, aux_logits)
            return out[0], out[1]
        return out, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attribute logits ``(b, num_attributes)`` of images ``x`` ``(b, 3, s, s)`` in [0, 1]."""
        return self.logits_and_aux(x)[0]


def build_classifier(config: ClassifierConfig) -> AttributeClassifier:
    """A new classifier: from the local ImageNet weights when ``config.pretrained``, else random.

    Raises:
        MissingWeightsError: ``config.pretrained`` and the weights file is absent.
    """
    return AttributeClassifier(config, load_imagenet_state(config.arch) if config.pretrained else None)


def probability_function(model: AttributeClassifier, *, batch_size: int = 256):
    """The classifier as a function ``images (n, 3, H, W) float32 in [0, 1] → probabilities (n, A) float32``.

    Images of another size (e.g. 64 px β-VAE decodings for a 299 px InceptionV3) are resized
    bilinearly (with antialiasing) to ``model.config.image_size``. Runs in eval mode without
    gradients on the model's device; restores the model's mode after.
    """
    import torch.nn.functional as F

    device = next(model.parameters()).device
    size = model.config.image_size

    @torch.no_grad()
    def probabilities(images):
        was_training = model.training
        model.eval()
        try:
            out = []
            for i in range(0, len(images), batch_size):
                x = torch.as_tensor(images[i : i + batch_size], dtype=torch.float32, device=device)
                if x.shape[-1] != size or x.shape[-2] != size:
                    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                out.append(torch.sigmoid(model(x)).float().cpu())
        finally:
            model.train(was_training)
        return torch.cat(out).numpy()

    return probabilities
