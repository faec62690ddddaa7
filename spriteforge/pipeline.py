"""Load a trained model and generate images: the one path the CLI, evaluation and studio share."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import ConfigError, RunConfig, SampleConfig, attr_guidance_weights
from .diffusion.edm import EDMPrecond
from .models.unet import UNet
from .runtime import autocast
from .sampling.guidance import attribute_guidance_branches, cfg_denoiser, combined_denoiser
from .sampling.samplers import DEFAULT_SCHEDULE, SAMPLERS
from .sampling.schedules import get_sigmas
from .training.checkpoint import CheckpointError, as_fp32, latest_checkpoint, load_checkpoint, split
from .data.dataset import to_model_range, to_uint8


@dataclass
class LoadedModel:
    denoiser: EDMPrecond          # EMA weights, eval mode
    config: RunConfig
    class_names: list[str]
    path: Path                    # the checkpoint file
    step: int
    meta: dict
    text_table: object = None     # training's encoded captions (TextTable), reused by progress grids
    _text_cache: object = None

    @functools.cached_property
    def attribute_values(self) -> dict[str, list[str]]:
        """Vocabulary of each attribute the model is conditioned on (empty for other models)."""
        return json.loads(self.meta.get("extra", "{}")).get("attribute_values", {}) if self.meta else {}

    @functools.cached_property
    def pose_box(self) -> list[float] | None:
        """Where the training data's skeletons stand (see data.conditions.pose_box); pose models record it."""
        return json.loads(self.meta.get("extra", "{}")).get("pose_box") if self.meta else None

    def attribute_row(self, prompt: str | None = None, attrs: dict | None = None) -> torch.Tensor:
        """int64 [K]: attributes read from a plain-English prompt, then overridden by explicit `attrs`."""
        from .data.conditions import attribute_row, parse_attributes
        vocab = self.attribute_values
        given = parse_attributes(prompt, vocab) if prompt else {}
        return attribute_row(vocab, {**given, **(attrs or {})})

    @property
    def shape(self) -> tuple[int, int, int]:
        m = self.config.model
        return (m.in_channels, m.image_size, m.image_size)

    def text_cond(self, captions: list[str], device) -> dict:
        """Encoded captions as the network's text_* arguments (the frozen encoder loads on first use)."""
        t = self.text_table
        if t is not None and all(c in t.captions or c == "" for c in captions):
            idx = torch.tensor([t.captions.index(c) if c else t.empty for c in captions])
            return t.rows(idx, device)
        if self._text_cache is None:
            from .models.text import EmbeddingCache
            self._text_cache = EmbeddingCache(self.config.model.text_encoder)
        tokens, mask, pooled = self._text_cache.encode(captions)
        return {"text_tokens": tokens.to(device), "text_mask": mask.bool().to(device), "text_pooled": pooled.to(device)}


BUILTIN_MODEL = Path(__file__).parent / "assets" / "builtin.safetensors"


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder (its latest checkpoint), a checkpoint / weights file, or "builtin" (the bundled model)."""
    if str(path) == "builtin":
        if not BUILTIN_MODEL.exists():
            raise CheckpointError(f"the bundled model is missing from this install ({BUILTIN_MODEL})")
        return BUILTIN_MODEL
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
    ema = as_fp32(split(split(tensors, "ema"), "net"))
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
             labels: torch.Tensor | None = None, prompts: list[str] | None = None,
             known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None,
             init: torch.Tensor | None = None, strength: float = 1.0,
             attributes: torch.Tensor | None = None, control: torch.Tensor | None = None) -> torch.Tensor:
    """Sample `sc.n` images (or `sc.n` animations of `sc.frames` frames) -> uint8 [N*F, C, H, W].

    Same seed, same pixels on the same machine: the initial noise always comes from a CPU generator
    seeded with `sc.seed`, so a seed means the same starting point on every device. `labels`
    (per-item class indices, -1 = none) overrides `sc.class_name`; `prompts` (one per item)
    overrides `sc.prompt`. An attribute model reads `sc.prompt` as attributes ("a red knight walking
    right"), or takes `attributes` (int64 [N, K], -1 = unspecified) directly. Guidance (`sc.cfg`)
    contrasts the requested label/prompt/attributes with none of them and the negative prompt, in one
    batched call per step.

    `known` (uint8 [N*F, C, H, W]) with `known_mask` ([N*F, 1, H, W], 1 = keep) fixes pixels or whole
    frames: see `keep_known`. Kept pixels come out exactly as given.

    `init` (uint8 [N*F, C, H, W]) with `strength` in (0, 1] is image-to-image (SDEdit, Meng et al.
    2022): the init image is noised to the sigma `strength` of the way up the schedule and sampled
    from there; strength 1 ignores the init entirely, small strengths keep more of it.

    `control` (float [N*F, Cc, H, W] in [0, 1], see data.conditions) gives a control model its maps
    (pose, edges, silhouette); it is the same in both branches of guidance, so it always applies.
    """
    mc = model.config.model
    device = next(model.denoiser.parameters()).device
    F = sc.frames
    if F > 1 and not mc.frame_attention:
        raise ConfigError(f"`--frames {F}`: this model was trained on single images (no frame attention); "
                          "train with --set train.frames=8 for animations")
    n = sc.n
    noise = torch.randn((n * F, *model.shape), generator=torch.Generator().manual_seed(sc.seed)).to(device)
    step_gen = torch.Generator(device=device).manual_seed(sc.seed + 1)  # for stochastic samplers
    per_frame = lambda t: t.repeat_interleave(F, dim=0)  # noqa: E731  (one condition per set -> per frame)
    cond, uncond, guided = {}, {}, False
    if mc.num_classes:
        if labels is None and sc.class_name is None and mc.attributes and not mc.text_encoder:
            labels = _classes_in(model, prompts or [sc.prompt] * n)  # "a red knight ...": the knight class too
        if labels is None:
            labels = torch.full((n,), class_index(model, sc.class_name), dtype=torch.long)
        cond["class_labels"] = per_frame(labels.to(device))
        uncond["class_labels"] = torch.full_like(cond["class_labels"], -1)
        guided |= bool((labels >= 0).any())
    elif sc.class_name is not None:
        class_index(model, sc.class_name)  # raises: no classes
    if mc.text_encoder:
        prompts = prompts or [sc.prompt or ""] * n
        c = model.text_cond(list(prompts) + [sc.negative_prompt], device)
        cond.update({k: per_frame(v[:n]) for k, v in c.items()})
        uncond.update({k: v[n:].expand(n * F, *v.shape[1:]) for k, v in c.items()})
        guided |= any(prompts) or bool(sc.negative_prompt)
    if mc.attributes:
        if attributes is None and prompts and not mc.text_encoder:
            attributes = torch.stack([model.attribute_row(p) for p in prompts])
        elif attributes is None:
            attributes = model.attribute_row(None if mc.text_encoder else sc.prompt)[None].expand(n, -1)
        cond["attributes"] = per_frame(attributes.to(device))
        uncond["attributes"] = torch.full_like(cond["attributes"], -1)
        guided |= bool((attributes >= 0).any())
    elif sc.prompt and not mc.text_encoder:
        raise ConfigError("`--prompt`: this model was trained without captions or attributes (no text encoder); "
                          "use --class, or train with --set model.text_encoder=minilm")
    if control is not None:
        if not mc.control_channels:
            raise ConfigError("a control map was given, but this model was trained without control maps")
        if tuple(control.shape[1:]) != (mc.control_channels, mc.image_size, mc.image_size) or control.shape[0] != n * F:
            raise ConfigError(f"control maps are {tuple(control.shape)}; this model needs {n * F} maps of "
                              f"{mc.control_channels}x{mc.image_size}x{mc.image_size} ({'+'.join(mc.control)})")
        for d in (cond, uncond):
            d["control"] = control.to(device)
    if mc.frame_attention:
        phase = (torch.arange(F, device=device) / F).repeat(n)
        for d in (cond, uncond):
            d.update(frames=F, frame_phase=phase)
    if sc.attr_guidance and not mc.attributes:
        raise ConfigError("`--attr-guidance`: this model has no attribute labels (train with --set model.attributes=...); "
                          "use --cfg for its classes or prompts")
    attr_w = attr_guidance_weights(sc.attr_guidance, list(mc.attributes)) if sc.attr_guidance else []
    if any(attr_w) and bool((attributes >= 0).any()):
        den = combined_denoiser(model.denoiser, attribute_guidance_branches(cond, uncond, sc.cfg, attr_w))
    else:
        den = cfg_denoiser(model.denoiser, sc.cfg if guided else 1.0, cond, uncond)
    if known is not None:
        known_x = to_model_range(known).to(device)
        mask = known_mask.to(device=device, dtype=known_x.dtype)
        den = keep_known(den, known_x, mask)
    d = model.config.diffusion
    sigmas = get_sigmas(DEFAULT_SCHEDULE[sc.sampler], sc.steps, d.sigma_min, d.sigma_max, rho=sc.rho, device=device)
    x = noise * sigmas[0]
    if init is not None:
        if not 0 < strength <= 1:
            raise ConfigError(f"`--strength {strength}` must be in (0, 1]")
        start = min(int(round((1 - strength) * sc.steps)), sc.steps - 1)
        sigmas = sigmas[start:]
        x = to_model_range(init).to(device) + noise * sigmas[0]
    with autocast(device, bf16):
        x = SAMPLERS[sc.sampler](den, x, sigmas, callback=callback, generator=step_gen)
    if known is not None:
        x = mask * known_x + (1 - mask) * x.float()
    return to_uint8(x.float()).cpu()


def outpaint_canvas(image: torch.Tensor, sides: dict[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Outpainting at the model's fixed size: move the image away from the sides to extend and mark
    the uncovered strips for generation. image uint8 [1, C, H, W]; sides {"right": 8, ...} in pixels.
    -> (the moved image, keep mask [1, 1, H, W] with 0 on the new strips) for `generate(known=...)`."""
    _, c, h, w = image.shape
    left, right, top, bottom = (int(sides.get(k, 0)) for k in ("left", "right", "top", "bottom"))
    if left + right >= w or top + bottom >= h or min(left, right, top, bottom) < 0:
        raise ConfigError(f"`--outpaint` of {sides} leaves nothing of the {w}x{h} image")
    moved = torch.zeros_like(image)
    keep = torch.zeros(1, 1, h, w)
    # extending the right side shifts the picture left (its left columns fall off the canvas), and so on
    dx, dy = left - right, top - bottom
    src = image[:, :, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    moved[:, :, max(0, dy):max(0, dy) + src.shape[2], max(0, dx):max(0, dx) + src.shape[3]] = src
    keep[:, :, max(0, dy):max(0, dy) + src.shape[2], max(0, dx):max(0, dx) + src.shape[3]] = 1
    keep[:, :, :top] = 0
    keep[:, :, h - bottom:] = 0
    keep[:, :, :, :left] = 0
    keep[:, :, :, w - right:] = 0
    return moved, keep


def _classes_in(model: LoadedModel, prompts: list) -> torch.Tensor:
    """Class index named by each prompt (-1 where none is named), for attribute models that also
    have class labels (the built-in set's archetypes are both)."""
    from .data.conditions import parse_attributes
    out = []
    for p in prompts:
        try:
            name = parse_attributes(p or "", {"class": model.class_names}).get("class")
        except ConfigError:
            name = None
        out.append(model.class_names.index(name) if name else -1)
    return torch.tensor(out, dtype=torch.long)


def keep_known(denoiser, known: torch.Tensor, mask: torch.Tensor):
    """Denoiser whose estimate is the known image wherever mask = 1 (replacement inpainting).

    Every sampler moves x toward the denoised estimate, so the known pixels' trajectory is exactly the
    noisy path of the known image, and the network (including frame attention) sees the known frames
    at the right noise level while it generates the rest around them. Used for inpainting, re-rolling
    one frame of a sheet, and extending an animation.
    """
    def wrapped(x, sigma, **kw):
        return mask * known + (1 - mask) * denoiser(x, sigma, **kw)
    return wrapped
