"""EDM preconditioning, training noise distribution and loss (Karras et al. 2022, "Elucidating
the Design Space of Diffusion-Based Generative Models", Table 1 and Section 5).

Three separate pieces, so each can be swapped without touching the others:
  * `EDMPrecond` wraps any network F_theta into the denoiser D(x; sigma) that samplers call:
        D(x; sigma) = c_skip(sigma) x + c_out(sigma) F_theta(c_in(sigma) x; c_noise(sigma))
  * `sample_sigma` draws training noise levels: ln(sigma) ~ N(P_mean, P_std^2)
  * `edm_loss` is the weighted denoising loss lambda(sigma) ||D(y + n; sigma) - y||^2 with
    lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2, which makes the effective
    training target of F_theta unit-variance at every noise level.
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import DiffusionConfig


class EDMPrecond(nn.Module):
    """Denoiser D(x, sigma, **cond) -> estimate of the clean image (the sampler contract)."""

    def __init__(self, net: nn.Module, sigma_data: float = 0.5):
        super().__init__()
        self.net = net
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, **cond) -> torch.Tensor:
        sigma = sigma.to(torch.float32).reshape(-1, *([1] * (x.ndim - 1))).expand(x.shape[0], *([1] * (x.ndim - 1)))
        sd = self.sigma_data
        c_skip = sd ** 2 / (sigma ** 2 + sd ** 2)
        c_out = sigma * sd / (sigma ** 2 + sd ** 2).sqrt()
        c_in = 1 / (sd ** 2 + sigma ** 2).sqrt()
        c_noise = sigma.flatten().log() / 4
        F_x = self.net((c_in * x), c_noise, **cond)
        return c_skip * x + c_out * F_x.to(torch.float32)


def sample_sigma(n: int, cfg: DiffusionConfig, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """ln(sigma) ~ N(P_mean, P_std^2) (EDM Table 1, training)."""
    rnd = torch.randn(n, generator=generator, device=device)
    return (rnd * cfg.P_std + cfg.P_mean).exp()


def edm_loss(denoiser: EDMPrecond, y: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
             pixel_weight: torch.Tensor | None = None, **cond) -> torch.Tensor:
    """Per-sample EDM loss lambda(sigma) * mean_pixels w (D(y + sigma n; sigma) - y)^2, shape [B].
    `pixel_weight` (broadcastable to y, e.g. [B, 1, H, W]; default 1 everywhere) makes some pixels
    count more, e.g. the small details a character is recognised by (`train.detail_weight`)."""
    sd = denoiser.sigma_data
    s = sigma.reshape(-1, *([1] * (y.ndim - 1)))
    weight = (s ** 2 + sd ** 2) / (s * sd) ** 2
    D = denoiser(y + s * noise, sigma, **cond)
    err = (D - y) ** 2 if pixel_weight is None else pixel_weight * (D - y) ** 2
    return (weight * err).flatten(1).mean(1)
