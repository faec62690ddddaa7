"""One generation request, from the form (or the API's JSON) to a gallery item.

`GenRequest` is the typed form: every field the Generate tab shows, validated where it is built
with messages that name the field. `Generator.run()` does what `spriteforge animate` does - load
the model, sample all frames jointly, clean up, export - through the same library calls, plus the
studio's image inputs (init image + strength, inpainting mask, control map) and a per-step preview.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import __version__
from ..config import SAMPLERS, ConfigError, SampleConfig, format_attr_guidance, parse_attr_guidance
from .gallery import Gallery, Item
from .safety import MAX_FRAMES, MAX_STEPS, StudioError, check_prompt, check_range, confine, load_image

BUILTIN = "builtin"
MAX_SEED = 2**32 - 1           # seeds as AUTOMATIC1111 draws them; also exact in JavaScript numbers


def check_attr_guidance(value) -> float | str:
    """An attribute-guidance setting (a weight, or "1,action=2" text) in canonical form, each weight in
    [0, 10]; the message names the field."""
    try:
        weights = parse_attr_guidance(value if isinstance(value, str) else float(value), "attr_guidance")
    except (ConfigError, TypeError, ValueError) as e:
        raise StudioError(str(e) if isinstance(e, ConfigError) else
                          f"attr_guidance must be a number or 'name=weight,...', got {value!r}") from None
    for name, w in weights.items():
        check_range(w, 0.0, 10.0, "attr_guidance" if name == "*" else f"attr_guidance {name}", float)
    return format_attr_guidance(weights)


def split_attr_guidance(value) -> tuple[float, str]:
    """A canonical attribute-guidance setting -> (the weight for every attribute, the "name=w, ..." text
    of the named ones): the studio's slider and text box."""
    weights = parse_attr_guidance(value, "attr_guidance")
    return weights.get("*", 0.0), ", ".join(f"{k}={w:g}" for k, w in weights.items() if k != "*")


@dataclass
class GenRequest:
    model: str = BUILTIN             # "builtin", "runs/NAME" (a workspace run) or "models/FILE.safetensors"
    prompt: str = ""                 # text models: the prompt; class models: a class name
    negative_prompt: str = ""        # what guidance steers away from (text models)
    frames: int = 8                  # frames of the animation (1 for single-image models)
    sampler: str = "dpmpp-2m"
    steps: int = 20
    cfg: float = 2.0                 # classifier-free guidance scale (1 = off)
    attr_guidance: float | str = 0.0  # attribute-wise guidance (attribute models; 0 = off; 1 or "action=2": see --attr-guidance)
    seed: int = 0
    init: str | None = None          # workspace path of an init image (image-to-image)
    strength: float = 0.6            # with init: how much to change it, in (0, 1]
    mask: str | None = None          # workspace path of a mask: white = regenerate, black = keep the init
    control: str | None = None       # workspace path of a control image (control models)
    palette_colors: int = 0          # quantise all frames to one shared palette (0 = off)
    alpha_threshold: int = 0         # crisp edges: alpha >= t -> 255, else 0 (0 = off)

    def __post_init__(self):
        self.model = str(self.model or BUILTIN)
        self.prompt = check_prompt(str(self.prompt or "").strip(), "prompt")
        self.negative_prompt = check_prompt(str(self.negative_prompt or "").strip(), "negative prompt")
        self.frames = check_range(self.frames, 1, MAX_FRAMES, "frames")
        if self.sampler not in SAMPLERS:
            raise StudioError(f"sampler {self.sampler!r} is not one of {', '.join(SAMPLERS)}")
        self.steps = check_range(self.steps, 1, MAX_STEPS, "steps")
        self.cfg = check_range(self.cfg, 0.0, 30.0, "cfg", float)
        self.attr_guidance = check_attr_guidance(self.attr_guidance)
        self.seed = check_range(self.seed, 0, MAX_SEED, "seed")
        self.strength = check_range(self.strength, 0.01, 1.0, "strength", float)
        self.palette_colors = check_range(self.palette_colors, 0, 256, "palette_colors")
        self.alpha_threshold = check_range(self.alpha_threshold, 0, 255, "alpha_threshold")
        for key in ("init", "mask", "control"):
            setattr(self, key, str(getattr(self, key)) if getattr(self, key) else None)
        if self.mask and not self.init:
            raise StudioError("mask needs an init image (the image to inpaint)")

    @classmethod
    def from_dict(cls, d: dict, where: str = "request") -> "GenRequest":
        """Build from JSON / a gallery item's settings; unknown keys are an error unless they are
        ones the gallery adds (id, created, size, ...)."""
        if not isinstance(d, dict):
            raise StudioError(f"{where} must be a JSON object of generation settings")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names - RECORD_KEYS
        if unknown:
            raise StudioError(f"{where}: unknown field(s) {sorted(unknown)}; valid fields: {sorted(names)}")
        return cls(**{k: v for k, v in d.items() if k in names})


RECORD_KEYS = {"id", "created", "size", "model_step", "model_path", "version", "class_names"}  # added by the gallery


def list_models(workspace: Path) -> list[str]:
    """The model picker: workspace runs with a checkpoint (newest first), weights files in
    `models/`, then the bundled model if this install has it."""
    from ..pipeline import BUILTIN_MODEL
    from ..training.checkpoint import latest_checkpoint
    runs = [p for p in (workspace / "runs").glob("*") if p.is_dir() and latest_checkpoint(p) is not None]
    runs.sort(key=lambda p: latest_checkpoint(p).stat().st_mtime, reverse=True)
    out = [f"runs/{p.name}" for p in runs]
    out += [f"models/{p.name}" for p in sorted((workspace / "models").glob("*.safetensors"))]
    if BUILTIN_MODEL.exists():
        out.append(BUILTIN)
    return out


class Generator:
    """Runs generation requests against models it keeps loaded (the two most recent)."""

    def __init__(self, workspace: Path, gallery: Gallery, device: str = "cpu"):
        self.workspace = workspace
        self.gallery = gallery
        self.device = device
        self._models: dict[str, object] = {}
        self._lock = threading.Lock()

    def checkpoint_for(self, name: str) -> Path:
        """Model picker value -> checkpoint file; workspace paths stay inside the workspace."""
        from ..pipeline import resolve_checkpoint
        if name == BUILTIN:
            return resolve_checkpoint(BUILTIN)
        return resolve_checkpoint(confine(self.workspace, name, "model"))

    def model(self, name: str):
        """The loaded model for a picker value; reloaded when its run wrote a newer checkpoint."""
        from ..pipeline import load_model
        ckpt = self.checkpoint_for(name)
        key = f"{ckpt}:{ckpt.stat().st_mtime_ns}"
        with self._lock:
            if key not in self._models:
                if len(self._models) >= 2:
                    self._models.pop(next(iter(self._models)))
                self._models[key] = load_model(ckpt, self.device)
            return self._models[key]

    def run(self, req: GenRequest, progress: Callable[[int, int, np.ndarray], None] | None = None) -> Item:
        """Generate one animation as `req` says and add it to the gallery.

        `progress(step, total, preview)` is called after every sampler step with the current
        denoised estimate of all frames (a strip, RGB uint8): the live preview.
        """
        from ..animation.animate import Cleanup, animate, clean
        for key in ("init", "mask", "control"):  # paths first: a refused path is refused whatever the model
            if getattr(req, key):
                confine(self.workspace, getattr(req, key), key)
        m = self.model(req.model)
        if req.frames > 1 and not m.config.model.frame_attention:
            raise StudioError(f"frames {req.frames}: model {req.model} was trained on single images; "
                              "set frames to 1, or pick an animation model (trained with frames)")
        callback = None
        if progress is not None:
            callback = lambda info: progress(info["i"] + 1, req.steps, _preview(info["denoised"]))  # noqa: E731
        if req.init or req.control:
            frames, inputs = self._with_image_inputs(req, m, callback)
        else:  # exactly what `spriteforge animate` does (pose templates for the built-in pose model included)
            frames, inputs = animate(m, req.prompt, frames=req.frames, seed=req.seed, sampler=req.sampler,
                                     steps=req.steps, cfg=req.cfg, attr_guidance=req.attr_guidance,
                                     negative_prompt=req.negative_prompt,
                                     callback=callback), {}
        frames = clean(frames, Cleanup(req.palette_colors, None, req.alpha_threshold))
        settings = {**dataclasses.asdict(req), "size": f"{m.shape[2]}x{m.shape[1]}", "model_step": m.step,
                    "model_path": str(m.path), "version": __version__}
        return self.gallery.add(frames, settings, inputs)

    def _with_image_inputs(self, req: GenRequest, m, callback) -> tuple[list[np.ndarray], dict[str, Path]]:
        """Sample with init / mask / control images (each one image for all frames, or a horizontal
        strip of one image per frame) -> (RGBA frames, the input files to keep with the item)."""
        from ..animation.animate import what_to_condition
        from ..pipeline import generate
        extra, inputs = self._image_inputs(req, m)
        sc = SampleConfig(n=1, frames=req.frames, seed=req.seed, sampler=req.sampler, steps=req.steps, cfg=req.cfg,
                          attr_guidance=req.attr_guidance, negative_prompt=req.negative_prompt,
                          **what_to_condition(m, req.prompt))
        out = generate(m, sc, callback=callback, **extra).permute(0, 2, 3, 1).numpy()
        if out.shape[-1] == 3:  # RGB models: opaque frames
            out = np.concatenate([out, np.full(out.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
        return [f.copy() for f in out], inputs

    def _image_inputs(self, req: GenRequest, m) -> tuple[dict, dict[str, Path]]:
        """init / mask / control images -> the keyword arguments of `generate`, plus their files."""
        c, size = m.shape[0], m.shape[1]
        F = req.frames
        extra: dict = {}
        inputs: dict[str, Path] = {}
        if req.init:
            inputs["init"] = confine(self.workspace, req.init, "init")
            init = _per_frame(load_image(self.workspace, req.init, "init"), size, F, "init")[..., :c]
            init_t = torch.from_numpy(np.ascontiguousarray(init)).permute(0, 3, 1, 2)
            if req.mask:
                inputs["mask"] = confine(self.workspace, req.mask, "mask")
                mask = _per_frame(load_image(self.workspace, req.mask, "mask"), size, F, "mask")
                gray = mask[..., :3].astype(np.float32).mean(-1)
                keep = torch.from_numpy((gray < 128).astype(np.float32))[:, None]  # white = regenerate
                extra.update(known=init_t, known_mask=keep)
            else:
                extra.update(init=init_t, strength=req.strength)
        if req.control:
            kinds = tuple(getattr(m.config.model, "control", ()) or ())
            if not kinds:
                raise StudioError(f"control image: model {req.model} was trained without control maps "
                                  "(train with --set model.control=edges, silhouette or pose)")
            inputs["control"] = confine(self.workspace, req.control, "control")
            ref = _per_frame(load_image(self.workspace, req.control, "control"), size, F, "control")
            extra["control"] = torch.from_numpy(np.stack([_control_maps(f, kinds) for f in ref])).float() / 255
        return extra, inputs


def _per_frame(img: np.ndarray, size: int, frames: int, what: str) -> np.ndarray:
    """One size x size image (used for every frame) or a strip of `frames` of them -> [F, H, W, 4]."""
    h, w = img.shape[:2]
    if (h, w) == (size, size):
        return np.repeat(img[None], frames, axis=0)
    if (h, w) == (size, size * frames):
        return np.stack([img[:, i * size:(i + 1) * size] for i in range(frames)])
    raise StudioError(f"{what} image is {w}x{h}; this model needs {size}x{size} (one image for all frames) "
                      f"or {size * frames}x{size} (a strip of {frames} frames)")


def _control_maps(frame: np.ndarray, kinds: tuple[str, ...]) -> np.ndarray:
    """A control model's maps for one frame: edges and silhouettes are computed from the uploaded
    sprite; a pose map is the uploaded image itself (a rendered skeleton, as the training maps are)."""
    from ..data.conditions import control_for_image
    out = []
    for kind in kinds:
        if kind == "pose":
            out.append(frame[..., :3].transpose(2, 0, 1))
        else:
            out.append(control_for_image(frame, (kind,), where="control image"))
    return np.concatenate(out, axis=0).astype(np.uint8)


def _preview(denoised: torch.Tensor) -> np.ndarray:
    """The sampler's current estimate of every frame as one RGB strip (what the live preview shows)."""
    from ..data.dataset import to_uint8
    from ..images import make_grid
    imgs = to_uint8(denoised.detach().float().clamp(-1, 1)).cpu()
    return make_grid(imgs, nrow=len(imgs), scale=max(1, 64 // imgs.shape[-1]))
