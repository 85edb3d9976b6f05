"""Pictures of a trained model: latent traversals and reconstructions (PNG via torchvision)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import make_grid, save_image

from betasweep.models import BetaVAE

__all__ = ["traversal_images", "traversal_grid", "reconstruction_grid", "save_figures", "save_kl_chart"]


@torch.no_grad()
def traversal_images(model: BetaVAE, x: torch.Tensor, dims: list[int], values: torch.Tensor) -> torch.Tensor:
    """Decode traversals of latent dimensions around the ``mu`` of one real image.

    For each ``j`` in ``dims`` and each ``v`` in ``values``: ``z = mu(x)`` with ``z_j = v``.

    Args:
        x: one image ``(1, C, 64, 64)``.
        dims: latent dimensions, one output row each, in this order.
        values: ``(num_values,)`` values of ``z_j`` (e.g. ``linspace(-3, 3, 10)``, prior units).

    Returns:
        ``(len(dims) * num_values, C, 64, 64)`` images in ``[0, 1]`` (sigmoid of the logits), row-major.
    """
    model.eval()
    mu, _ = model.encode(x)  # (1, m)
    z = mu.repeat(len(dims) * len(values), 1)  # (rows * cols, m)
    for row, j in enumerate(dims):
        z[row * len(values) : (row + 1) * len(values), j] = values.to(z)
    return torch.sigmoid(model.decode(z)).float()


def traversal_grid(model: BetaVAE, x: torch.Tensor, kl_per_dim: list[float], num_values: int = 10) -> torch.Tensor:
    """Traversal grid image ``(C', H, W)``: one row per latent dimension, sorted by KL (largest first), values −3..3."""
    dims = [int(j) for j in np.argsort(kl_per_dim)[::-1]]
    values = torch.linspace(-3.0, 3.0, num_values)
    return make_grid(traversal_images(model, x, dims, values), nrow=num_values, pad_value=0.5)


@torch.no_grad()
def reconstruction_grid(model: BetaVAE, x: torch.Tensor) -> torch.Tensor:
    """Originals (top row) over their reconstructions from ``mu`` (bottom row): ``(C', H, W)``."""
    model.eval()
    recon = torch.sigmoid(model.decode(model.encode(x)[0])).float()
    return make_grid(torch.cat([x.float(), recon]), nrow=len(x), pad_value=0.5)


def save_figures(
    model: BetaVAE, data, rng: np.random.Generator, out_dir: str | os.PathLike, kl_per_dim: list[float], *, num_images: int = 8
) -> dict[str, Path]:
    """Write ``traversal.png`` (around the first of ``num_images`` real images) and ``reconstruction.png``.

    Returns:
        ``{"traversal": path, "reconstruction": path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    x = torch.from_numpy(data.sample_observations(num_images, rng)).to(device)
    paths = {"traversal": out_dir / "traversal.png", "reconstruction": out_dir / "reconstruction.png"}
    save_image(traversal_grid(model, x[:1], kl_per_dim), paths["traversal"])
    save_image(reconstruction_grid(model, x), paths["reconstruction"])
    return paths


def save_kl_chart(kl_per_dim: list[float], path: str | os.PathLike, *, title: str = "") -> Path:
    """Bar chart PNG of the KL of each latent dimension (nats), the dimensions in index order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(kl_per_dim) + 1.5), 3.0), dpi=100)
    ax.bar(range(len(kl_per_dim)), kl_per_dim, color="#4c72b0")
    ax.axhline(0.01, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("latent dimension")
    ax.set_ylabel("KL (nats)")
    ax.set_xticks(range(len(kl_per_dim)))
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)
