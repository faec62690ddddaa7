"""Exponential moving average of weights with a half-life measured in training images.

EDM (Karras et al. 2022, training/training_loop.py) sets the EMA by a half-life in images rather
than a per-step decay, so it means the same thing at any batch size, and ramps the half-life up
with progress (`ramp_ratio`) so the average does not remember the random initialisation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, halflife_images: float, ramp_ratio: float | None = 0.05):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.halflife_images = halflife_images
        self.ramp_ratio = ramp_ratio

    def beta(self, batch_images: int, images_seen: int) -> float:
        halflife = self.halflife_images
        if self.ramp_ratio:
            halflife = min(halflife, images_seen * self.ramp_ratio)
        return 0.5 ** (batch_images / max(halflife, 1e-8))

    @torch.no_grad()
    def update(self, model: nn.Module, batch_images: int, images_seen: int):
        beta = self.beta(batch_images, images_seen)
        for p_ema, p in zip(self.model.parameters(), model.parameters()):
            p_ema.lerp_(p.detach(), 1 - beta)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)
