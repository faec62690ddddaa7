"""Load a trained model and generate images: the one path the CLI, evaluation and studio share."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import ConfigError, RunConfig, SampleConfig
from .diffusion.edm import EDMPrecond
from .models.unet import UNet
from .runtime import autocast, pick_device
from .sampling.guidance import cfg_denoiser
from .sampling.samplers import sample as run_sampler
from .training.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, split
from .data.dataset import to_uint8


@dataclass
class LoadedModel:
    denoiser: EDMPrecond          # EMA weights, eval mode
    config: RunConfig
    class_names: list[str]
    path: Path                    # the checkpoint file
    step: int
    meta: dict

    @property
    def shape(self) -> tuple[int, int, int]:
        m = self.config.model
        return (m.in_channels, m.image_size, m.image_size)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder (its latest checkpoint) or a checkpoint / weights file."""
    path = Path(path)
    if path.is_dir():
        ckpt = latest_checkpoint(path)
        if ckpt is None:
            raise CheckpointError(f"run folder {path} has no checkpoints (expected {path}/checkpoints/ckpt_*.safetensors)")
        return ckpt
    if not path.exists():
        raise CheckpointError(f"no run folder or checkpoint at {path}")
    return path


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    ckpt = resolve_checkpoint(path)
    tensors, meta = load_checkpoint(ckpt)
    cfg = RunConfig.from_dict(json.loads(meta["config"]), where=f"{ckpt} (embedded config)")
    net = UNet(cfg.model)
    ema = {k: v.float() if v.is_floating_point() else v for k, v in split(split(tensors, "ema"), "net").items()}
    missing, unexpected = net.load_state_dict(ema, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{ckpt}: weights do not match the embedded model config "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    den = EDMPrecond(net, cfg.diffusion.sigma_data).to(device).eval().requires_grad_(False)
    return LoadedModel(den, cfg, json.loads(meta["class_names"]), ckpt, int(meta["step"]), meta)


def class_index(model: LoadedModel, name: str | None) -> int:
    """Class name (or index as text) -> index; -1 for None. Errors list the valid names."""
    if name is None:
        return -1
    if not model.config.model.num_classes:
        raise ConfigError(f"`--class {name}`: this model was trained without class labels")
    if name in model.class_names:
        return model.class_names.index(name)
    if name.isdigit() and int(name) < len(model.class_names):
        return int(name)
    raise ConfigError(f"`--class {name}` is not a class of this model; classes: {', '.join(model.class_names)}")


@torch.no_grad()
def generate(model: LoadedModel, sc: SampleConfig, callback=None, bf16: bool = False,
             labels: torch.Tensor | None = None) -> torch.Tensor:
    """Sample `sc.n` images -> uint8 [N, C, H, W]. Same seed, same pixels (on the same machine).

    The initial noise always comes from a CPU generator seeded with `sc.seed`, so a seed means the
    same starting point on every device; `labels` (per-image class indices, -1 = none) overrides
    `sc.class_name`.
    """
    device = next(model.denoiser.parameters()).device
    noise = torch.randn((sc.n, *model.shape), generator=torch.Generator().manual_seed(sc.seed)).to(device)
    step_gen = torch.Generator(device=device).manual_seed(sc.seed + 1)  # for stochastic samplers
    den = model.denoiser
    if model.config.model.num_classes:
        if labels is None:
            labels = torch.full((sc.n,), class_index(model, sc.class_name), dtype=torch.long)
        labels = labels.to(device)
        scale = sc.cfg if bool((labels >= 0).any()) else 1.0
        den = cfg_denoiser(model.denoiser, scale, {"class_labels": labels},
                           {"class_labels": torch.full_like(labels, -1)})
    d = model.config.diffusion
    with autocast(device, bf16):
        x = run_sampler(den, noise, sc.sampler, sc.steps, d.sigma_min, d.sigma_max, rho=sc.rho,
                        callback=callback, generator=step_gen)
    return to_uint8(x.float()).cpu()
