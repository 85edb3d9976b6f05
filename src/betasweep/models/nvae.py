"""A small hierarchical VAE in the style of NVAE (Vahdat & Kautz 2020, Sec. 3), sized for CPU sweeps at 64x64.

* **Bottom-up encoder**: a stride-2 conv (64 → 32), then residual cells (BN–Swish–conv3x3–BN–Swish–
  conv3x3–squeeze-and-excitation, Fig. 3b), each halving the resolution 32 → 16 → 8 → 4.
* **Top-down decoder** (the generative model) starting from a learned 4x4 tensor, with latent groups
  at ``nvae_scales`` scales (4x4, then 8x8, then 16x16), ``nvae_groups`` groups per scale, each
  followed by a generative residual cell (BN–conv1x1–BN–Swish–depthwise conv5x5–BN–Swish–conv1x1–BN–SE,
  Fig. 3a: the depthwise-separable cell), then upsampling cells to 32x32 and a transposed conv to
  64x64 Bernoulli logits.
* **Residual normal posterior** (Sec. 3.2): with the prior of group ``i`` given the groups above,
  ``p(z_i | z_<i) = N(mu_p, sigma_p)``, the encoder predicts the *relative* parameters
  ``q(z_i | z_<i, x) = N(mu_p + Δmu, sigma_p · Δsigma)``, whose KL has the closed form
  ``0.5 · (Δmu² / sigma_p² + Δsigma² − log Δsigma² − 1)`` (:func:`residual_normal_kl`). The top
  group's prior is ``N(0, I)``, so its KL is the β-VAE's.
* **KL warm-up** (Sec. 5): the KL weight grows linearly from 0 to β over ``kl_warmup`` of the budget.
* **Spectral regularisation** (Sec. 3.3): ``λ · Σ_i s(W_i)`` over every conv layer, ``s`` the largest
  singular value of the weight reshaped to ``(out, in·kh·kw)``, estimated by one power iteration per
  training step with persistent vectors (Miyato et al. 2018), ``λ`` = ``spectral_weight``.

Not taken from NVAE (to fit a 2-core CPU): normalising flows, KL balancing, the discretised
logistic mixture (Bernoulli logits as for the β-VAE), and the paper's widths and depths.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from betasweep.models.base import ElboTerms, VAEFamily, per_image_bernoulli_nll
from betasweep.models.vae import ModelConfig

__all__ = ["NVAE", "residual_normal_kl", "soft_clamp"]


def soft_clamp(x: torch.Tensor, bound: float = 5.0) -> torch.Tensor:
    """``bound · tanh(x / bound)``: NVAE's smooth clamp of log-scales (its code's ``soft_clamp5``)."""
    return bound * torch.tanh(x / bound)


def residual_normal_kl(delta_mu: torch.Tensor, delta_log_sigma: torch.Tensor, log_sigma_p: torch.Tensor) -> torch.Tensor:
    """KL(q || p) of NVAE's residual normal, elementwise, in nats (Vahdat & Kautz 2020, Sec. 3.2, Eq. 2).

    ``p = N(mu_p, sigma_p²)``, ``q = N(mu_p + Δmu, (sigma_p · Δsigma)²)``:
    ``KL = 0.5 · (Δmu² / sigma_p² + Δsigma² − log Δsigma² − 1)``; independent of ``mu_p``.

    Args:
        delta_mu, delta_log_sigma, log_sigma_p: tensors of one shape (``log`` of standard deviations).

    Returns:
        The KL per element, same shape.
    """
    return 0.5 * (delta_mu.pow(2) * torch.exp(-2.0 * log_sigma_p) + torch.exp(2.0 * delta_log_sigma)
                  - 2.0 * delta_log_sigma - 1.0)


class SqueezeExcitation(nn.Module):
    """Channel gating of Hu et al. 2018, as in NVAE's cells: ``x · sigmoid(W2 relu(W1 avgpool(x)))``."""

    def __init__(self, channels: int):
        super().__init__()
        hidden = max(channels // 4, 4)
        self.fc = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class EncoderCell(nn.Module):
    """Bottom-up residual cell (Fig. 3b): BN–Swish–conv3x3–BN–Swish–conv3x3–SE, plus the skip.

    ``stride=2`` halves the resolution (the skip is then a stride-2 1x1 conv).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, stride, 1),
            nn.BatchNorm2d(c_out), nn.SiLU(), nn.Conv2d(c_out, c_out, 3, 1, 1),
            SqueezeExcitation(c_out),
        )
        self.skip = nn.Identity() if stride == 1 and c_in == c_out else nn.Conv2d(c_in, c_out, 1, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + 0.1 * self.body(x)


class GenerativeCell(nn.Module):
    """Top-down residual cell (Fig. 3a): BN–conv1x1 (×2)–BN–Swish–depthwise conv5x5–BN–Swish–conv1x1–BN–SE.

    ``upsample=True`` doubles the resolution first (nearest neighbour) and maps ``c_in`` to ``c_out``.
    """

    def __init__(self, c_in: int, c_out: int, upsample: bool = False, expand: int = 2):
        super().__init__()
        self.upsample = upsample
        e = expand * c_out
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_out), nn.Conv2d(c_out, e, 1),
            nn.BatchNorm2d(e), nn.SiLU(), nn.Conv2d(e, e, 5, 1, 2, groups=e),  # depthwise
            nn.BatchNorm2d(e), nn.SiLU(), nn.Conv2d(e, c_out, 1),
            nn.BatchNorm2d(c_out), SqueezeExcitation(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.skip(x)
        return x + 0.1 * self.body(x)


class NVAE(VAEFamily):
    """A small NVAE-style hierarchical VAE; see the module docstring for the architecture and sources.

    Latent groups, top (coarsest) first: ``nvae_groups`` groups of ``nvae_latent_channels`` channels
    at each of ``nvae_scales`` resolutions 4x4, 8x8, 16x16. Shapes: ``x`` float32 ``(b, C, 64, 64)``;
    group ``i``'s ``z_i`` ``(b, L, r_i, r_i)``; :meth:`representation` ``(b, d)``: the posterior means
    of the top group flattened (``d = L·16``) or of every group (``nvae_representation="all"``,
    ``d = K``); :attr:`ElboTerms.kl` ``(b, K)``, ``K = Σ_i L·r_i²``, groups in order, each flattened
    channel-major. ``y`` is unused (unconditional).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c, w, L = config.num_channels, config.width, config.nvae_latent_channels
        self.resolutions = [4 * 2**s for s in range(config.nvae_scales) for _ in range(config.nvae_groups)]
        self.group_sizes = [L * r * r for r in self.resolutions]
        # bottom-up: a stride-2 stem 64 -> 32, then one residual cell per halving 32 -> 16 -> 8 -> 4
        self.stem = nn.Conv2d(c, w, 4, 2, 1)
        self.down = nn.ModuleList([EncoderCell(w, w, stride=2) for _ in range(3)])
        # top-down
        self.h0 = nn.Parameter(torch.zeros(1, w, 4, 4))
        n = len(self.resolutions)
        self.prior = nn.ModuleList([nn.Conv2d(w, 2 * L, 3, 1, 1) for _ in range(n - 1)])  # groups 1..n-1
        self.posterior = nn.ModuleList([nn.Conv2d(2 * w, 2 * L, 3, 1, 1) for _ in range(n)])
        self.combine = nn.ModuleList([nn.Conv2d(w + L, w, 1) for _ in range(n)])
        self.cells = nn.ModuleList([GenerativeCell(w, w) for _ in range(n)])
        self.between = nn.ModuleList([
            GenerativeCell(w, w, upsample=True) if self.resolutions[i + 1] > self.resolutions[i] else nn.Identity()
            for i in range(n - 1)
        ])
        up, ch, post = self.resolutions[-1], w, []
        while up < 32:  # upsample to 32x32, halving the channels (not below 8)
            post.append(GenerativeCell(ch, max(ch // 2, 8), upsample=True))
            ch, up = max(ch // 2, 8), up * 2
        self.postprocess = nn.Sequential(*post)
        self.to_logits = nn.Sequential(nn.ELU(), nn.ConvTranspose2d(ch, c, 4, 2, 1))  # 32 -> 64, logits
        for conv in (*self.prior, *self.posterior):  # start the residual parameters (and priors) at 0
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self._convs = [m for m in self.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        for i, conv in enumerate(self._convs):  # power-iteration vectors of the spectral regulariser
            self.register_buffer(f"_sr_u{i}", F.normalize(torch.randn(conv.weight.shape[0]), dim=0))

    # sizes ---------------------------------------------------------------------------------------
    @property
    def representation_dim(self) -> int:
        return self.group_sizes[0] if self.config.nvae_representation == "top" else sum(self.group_sizes)

    @property
    def kl_dim(self) -> int:
        return sum(self.group_sizes)

    def kl_groups(self, kl_per_dim: list[float]) -> dict[str, float]:
        """``{"kl_group_0_4x4": nats, ...}``: the KL of each group, top first."""
        out, start = {}, 0
        for i, (r, size) in enumerate(zip(self.resolutions, self.group_sizes)):
            out[f"kl_group_{i}_{r}x{r}"] = float(sum(kl_per_dim[start : start + size]))
            start += size
        return out

    # networks ------------------------------------------------------------------------------------
    def _bottom_up(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        h, feats = self.stem(2.0 * x - 1.0), {}
        for cell in self.down:
            h = cell(h)
            feats[h.shape[-1]] = h
        return feats

    def _top_down(self, b: int, feats: dict[int, torch.Tensor] | None, *, given: list[torch.Tensor] | None = None,
                  generator: torch.Generator | None = None, sample: bool = True):
        """Run the generative model. With ``feats`` (posterior): ``z_i ~ q`` (or its mean when not
        ``sample``); else ``z_i`` = ``given[i]`` where given, the prior mean otherwise.

        Returns ``(logits, kl list (b, size_i), posterior means list (b, size_i))``.
        """
        L = self.config.nvae_latent_channels
        h = self.h0.expand(b, -1, -1, -1)
        kls, means = [], []
        for i, r in enumerate(self.resolutions):
            if i == 0:
                mu_p = torch.zeros(b, L, r, r, device=h.device, dtype=h.dtype)
                log_sigma_p = torch.zeros_like(mu_p)
            else:
                mu_p, log_sigma_p = self.prior[i - 1](F.elu(h)).chunk(2, dim=1)
                log_sigma_p = soft_clamp(log_sigma_p)
            if feats is not None:
                d_mu, d_log_sigma = self.posterior[i](torch.cat([F.elu(feats[r]), F.elu(h)], dim=1)).chunk(2, dim=1)
                d_log_sigma = soft_clamp(d_log_sigma)
                mu_q = mu_p + d_mu
                kls.append(residual_normal_kl(d_mu.float(), d_log_sigma.float(), log_sigma_p.float()).flatten(1))
                means.append(mu_q.flatten(1))
                if sample:
                    eps = torch.randn(mu_q.shape, generator=generator, device=mu_q.device, dtype=mu_q.dtype)
                    z = mu_q + torch.exp(log_sigma_p + d_log_sigma) * eps
                else:
                    z = mu_q
            else:
                z = given[i].view(b, L, r, r) if given is not None and i < len(given) else mu_p
            h = self.cells[i](self.combine[i](torch.cat([h, z], dim=1)))
            if i < len(self.between):
                h = self.between[i](h)
        return self.to_logits(self.postprocess(h)), kls, means

    # the family interface ------------------------------------------------------------------------
    def elbo_terms(self, x: torch.Tensor, y: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> ElboTerms:
        """One sample of every group from the posterior, top down; KL per unit ``(b, K)``, closed form."""
        logits, kls, _ = self._top_down(len(x), self._bottom_up(x), generator=generator, sample=True)
        return ElboTerms(per_image_bernoulli_nll(logits.float(), x), torch.cat(kls, dim=1))

    def posterior_means(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Posterior means of every group, each group's ``z`` set to its mean: list of ``(b, size_i)``."""
        return self._top_down(len(x), self._bottom_up(x), sample=False)[2]

    def representation(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        means = self.posterior_means(x)
        return means[0] if self.config.nvae_representation == "top" else torch.cat(means, dim=1)

    def output_bias(self) -> torch.Tensor:
        """The output transposed conv's bias ``(C,)``."""
        return self.to_logits[-1].bias

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of a code ``(b, d)``: the groups it holds are set to it, the lower ones to their prior means."""
        given = list(torch.split(z, self.group_sizes[: 1 if self.config.nvae_representation == "top" else None], dim=1))
        return self._top_down(len(z), None, given=given)[0]

    def reconstruct(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits with every group at its posterior mean (the top group alone would lose the detail)."""
        return self._top_down(len(x), self._bottom_up(x), sample=False)[0]

    def spectral_norms(self) -> torch.Tensor:
        """``(num_convs,)`` estimates of each conv weight's largest singular value (differentiable in ``W``).

        In training mode each call takes one power-iteration step and keeps the vectors ``u`` (buffers).
        """
        sigmas = []
        for i, conv in enumerate(self._convs):
            weight = conv.weight.flatten(1)  # (out, in * kh * kw)
            u = getattr(self, f"_sr_u{i}")
            with torch.no_grad():
                v = F.normalize(weight.t() @ u, dim=0)
                u_new = F.normalize(weight @ v, dim=0)
                if self.training:
                    u.copy_(u_new)
            sigmas.append(torch.dot(u_new, weight @ v))
        return torch.stack(sigmas)

    def regularization(self) -> torch.Tensor:
        """``spectral_weight · Σ_i s(W_i)`` (Sec. 3.3); 0 when the weight is 0."""
        if self.config.spectral_weight == 0:
            return torch.zeros((), device=self.h0.device)
        return self.config.spectral_weight * self.spectral_norms().sum()

