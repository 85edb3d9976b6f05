"""Pictures of a trained model: latent traversals and reconstructions.

The tiles come from torchvision's ``make_grid``; the labels (each traversal row's dimension, its KL
and on CelebA its measured attribute; each column's ``z`` value) are drawn with PIL around it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision.utils import make_grid

from betasweep.models import VAEFamily

__all__ = ["traversal_images", "traversal_grid", "traversal_figure", "reconstruction_grid", "reconstruction_figure",
           "label_grid", "save_edit_figure", "save_figures", "save_kl_chart"]

TRAVERSAL_LIMIT = 3.0  # z_j runs from -3 to 3 (prior standard deviations)
_PADDING = 2  # make_grid's default padding between tiles, pixels


@torch.no_grad()
def traversal_images(model: VAEFamily, x: torch.Tensor, dims: list[int], values: torch.Tensor,
                     y: torch.Tensor | None = None) -> torch.Tensor:
    """Decode traversals of latent dimensions around the code of one real image (any family).

    For each ``j`` in ``dims`` and each ``v`` in ``values``: ``z = mu(x)`` with ``z_j = v``.

    Args:
        x: one image ``(1, C, 64, 64)``.
        dims: latent dimensions, one output row each, in this order.
        values: ``(num_values,)`` values of ``z_j`` (e.g. ``linspace(-3, 3, 10)``, prior units).
        y: a cvae's labels of ``x`` ``(1, label_dim)`` (None for unconditional families).

    Returns:
        ``(len(dims) * num_values, C, 64, 64)`` images in ``[0, 1]`` (sigmoid of the logits), row-major.
    """
    model.eval()
    mu = model.representation(x, y)  # (1, d)
    z = mu.repeat(len(dims) * len(values), 1)  # (rows * cols, m)
    for row, j in enumerate(dims):
        z[row * len(values) : (row + 1) * len(values), j] = values.to(z)
    return torch.sigmoid(model.decode(z, y)).float()


MAX_TRAVERSAL_ROWS = 16  # an nvae's top group has 64 units: show the 16 with the most KL


def _traversal_order(kl_per_dim: list[float], representation_dim: int | None = None) -> list[int]:
    """Dimensions of the representation (the first ``representation_dim`` of ``kl_per_dim``) by KL,
    largest first (ties by index), at most :data:`MAX_TRAVERSAL_ROWS`."""
    kl = np.asarray(kl_per_dim[:representation_dim], dtype=float)
    return [int(j) for j in np.argsort(-kl, kind="stable")][:MAX_TRAVERSAL_ROWS]


def traversal_grid(model: VAEFamily, x: torch.Tensor, kl_per_dim: list[float], num_values: int = 10,
                   y: torch.Tensor | None = None) -> torch.Tensor:
    """Traversal grid image ``(C', H, W)``: one row per dimension of the representation, sorted by KL
    (largest first, at most 16 rows), values −3..3; ``y``: a cvae's labels of ``x``."""
    values = torch.linspace(-TRAVERSAL_LIMIT, TRAVERSAL_LIMIT, num_values)
    dims = _traversal_order(kl_per_dim, model.representation_dim)
    return make_grid(traversal_images(model, x, dims, values, y), nrow=num_values, pad_value=0.5)


def traversal_figure(
    model: VAEFamily, x: torch.Tensor, kl_per_dim: list[float], *, names: dict[int, str] | None = None,
    num_values: int = 10, y: torch.Tensor | None = None,
) -> Image.Image:
    """The labelled traversal: :func:`traversal_grid` with each row's ``dim j``, ``KL`` (nats) and name, each column's ``z``.

    Args:
        x: one image ``(1, C, 64, 64)`` whose ``mu`` the traversal starts from.
        kl_per_dim: KL of each latent dimension in nats (orders the rows, largest first).
        names: optional label per dimension (CelebA: the attribute it was named after by measurement).

    Returns:
        An RGB :class:`PIL.Image.Image`.
    """
    grid = traversal_grid(model, x, kl_per_dim, num_values, y)
    rows = []
    for j in _traversal_order(kl_per_dim, model.representation_dim):
        lines = [f"dim {j}", f"KL {kl_per_dim[j]:.2f} nats"]
        if names and j in names:
            lines.append(names[j])
        rows.append("\n".join(lines))
    values = np.linspace(-TRAVERSAL_LIMIT, TRAVERSAL_LIMIT, num_values)
    columns = [f"z = {v:+.1f}" if i == 0 else f"{v:+.1f}" for i, v in enumerate(values)]
    return label_grid(grid, rows, columns, tile=x.shape[-1])


def label_grid(grid: torch.Tensor, row_labels: list[str], column_labels: list[str] | None = None, *,
               tile: int = 64, padding: int = _PADDING) -> Image.Image:
    """Draw labels left of each row and above each column of a ``make_grid`` image.

    Args:
        grid: ``(C, H, W)`` float in ``[0, 1]`` from ``torchvision.utils.make_grid`` (``C`` 1 or 3).
        row_labels: one (possibly multi-line) label per row of tiles, top to bottom.
        column_labels: one label per column of tiles, left to right (none: no header).
        tile: tile size in pixels; ``padding``: make_grid's padding.

    Returns:
        An RGB image: a left margin with the row labels, a top margin with the column labels, the grid.
    """
    array = (grid.detach().float().clamp(0, 1).mul(255).round().byte().cpu())
    array = array.expand(3, -1, -1) if array.shape[0] == 1 else array
    image = Image.fromarray(array.permute(1, 2, 0).numpy(), mode="RGB")
    font = ImageFont.load_default(size=12)
    measure = ImageDraw.Draw(image)

    def size(text: str) -> tuple[int, int]:
        left, top, right, bottom = measure.multiline_textbbox((0, 0), text, font=font, spacing=2)
        return right - left, bottom - top

    left = max([size(label)[0] for label in row_labels] + [0]) + 10
    top = (max(size(label)[1] for label in column_labels) + 8) if column_labels else 0
    canvas = Image.new("RGB", (image.width + left, image.height + top), "white")
    canvas.paste(image, (left, top))
    draw = ImageDraw.Draw(canvas)
    step = tile + padding
    for i, label in enumerate(row_labels):
        height = size(label)[1]
        y = top + padding + i * step + (tile - height) // 2
        draw.multiline_text((4, y), label, fill="black", font=font, spacing=2)
    for i, label in enumerate(column_labels or []):
        width = size(label)[0]
        x = left + padding + i * step + (tile - width) // 2
        draw.text((max(0, x), 3), label, fill="black", font=font)
    return canvas


@torch.no_grad()
def reconstruction_grid(model: VAEFamily, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """Originals (top row) over their reconstructions from the code (bottom row): ``(C', H, W)``."""
    model.eval()
    recon = torch.sigmoid(model.reconstruct(x, y)).float()
    return make_grid(torch.cat([x.float(), recon]), nrow=len(x), pad_value=0.5)


def reconstruction_figure(model: VAEFamily, x: torch.Tensor, y: torch.Tensor | None = None) -> Image.Image:
    """:func:`reconstruction_grid` with its rows labelled ``input`` and ``recon`` (RGB PIL image)."""
    return label_grid(reconstruction_grid(model, x, y), ["input", "recon"], tile=x.shape[-1])


def save_figures(
    model: VAEFamily, data, rng: np.random.Generator, out_dir: str | os.PathLike, kl_per_dim: list[float], *,
    num_images: int = 8, names: dict[int, str] | None = None,
) -> dict[str, Path]:
    """Write ``traversal.png`` (labelled; around the first of ``num_images`` real images) and ``reconstruction.png``.

    Args:
        names: optional label per latent dimension, drawn under its KL (see :func:`traversal_figure`).

    Returns:
        ``{"traversal": path, "reconstruction": path}``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    images, labels = model.sample_batch(data, num_images, rng)
    x, y = torch.from_numpy(images).to(device), model.label_tensor(labels, device)
    paths = {"traversal": out_dir / "traversal.png", "reconstruction": out_dir / "reconstruction.png"}
    traversal_figure(model, x[:1], kl_per_dim, names=names, y=None if y is None else y[:1]).save(paths["traversal"])
    reconstruction_figure(model, x, y).save(paths["reconstruction"])
    return paths


@torch.no_grad()
def save_edit_figure(model: VAEFamily, data, edits: dict[int, float], rng: np.random.Generator,
                     path: str | os.PathLike, *, num_images: int = 8) -> Path:
    """A cvae's label editing: ``num_images`` real images (top row), their reconstructions (middle)
    and the same ``z`` decoded with ``y`` edited (bottom): ``y[:, k] = v`` for each ``k: v`` in ``edits``.

    Returns:
        ``path`` (a PNG).
    """
    model.eval()
    device = next(model.parameters()).device
    images, labels = model.sample_batch(data, num_images, rng)
    x, y = torch.from_numpy(images).to(device), model.label_tensor(labels, device)
    z = model.representation(x, y)
    edited = y.clone()
    for k, v in edits.items():
        edited[:, k] = v
    rows = [x.float(), torch.sigmoid(model.decode(z, y)).float(), torch.sigmoid(model.decode(z, edited)).float()]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    label_grid(make_grid(torch.cat(rows), nrow=num_images, pad_value=0.5), ["input", "recon", "edit"],
               tile=x.shape[-1]).save(path)
    return Path(path)


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
