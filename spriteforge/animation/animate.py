"""Generate one animation (N frames, jointly) from a frame-set model and export it for game engines.

`animate()` resolves what the user asked for ("a knight walking right" for a text model, a class
name for a class model), samples all frames together with the frame-set model, optionally keeps
some frames fixed (re-roll one frame of an existing sheet; extend an animation), cleans the pixels
up for pixel art, and writes the export bundle (see export.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError, SampleConfig
from ..data.dataset import DataError
from ..pipeline import LoadedModel, generate
from .export import export_animation, remove_strays, shared_palette, threshold_alpha
from .sheets import load_rgba


@dataclass
class Cleanup:
    palette_colors: int = 0          # shared palette of N colours across all frames (0 = off)
    palette: str | None = None       # or a given palette: comma-separated hex colours or a palette image path
    alpha_threshold: int = 0         # alpha >= t -> 255, else 0 (0 = off)
    remove_strays: bool = False      # drop isolated single pixels


def what_to_condition(model: LoadedModel, what: str) -> dict:
    """A prompt for a text model, a class name for a class model; errors say which the model takes."""
    mc = model.config.model
    if mc.text_encoder:
        return {"prompt": what}
    if mc.attributes:
        model.attribute_row(what)  # a prompt naming nothing the model knows fails here, with the vocabulary
        return {"prompt": what or None}
    if mc.num_classes:
        if what not in model.class_names:
            raise ConfigError(f"{what!r} is not a class of this model (it takes a class name, not a prompt); "
                              f"classes: {', '.join(model.class_names)}")
        return {"class_name": what}
    if what:
        raise ConfigError(f"this model is unconditional; pass an empty string instead of {what!r}")
    return {}


def template_poses(model: LoadedModel, what: str, frames: int, attrs: dict | None = None) -> np.ndarray | None:
    """The built-in renderer's skeleton cycle for the requested action and direction, resampled to
    `frames` frames: what a pose model trained on the built-in set draws when no --pose-seq is given.
    None when the model takes no poses, was not trained on the built-in set, or no action is named."""
    mc = model.config.model
    if "pose" not in mc.control or not mc.attributes or mc.text_encoder or model.config.data.source != "builtin":
        return None
    from ..data.builtin import ACTION_FRAMES, render_frame
    vocab = model.attribute_values
    want = {k: vocab[k][i] for k, i in zip(vocab, model.attribute_row(what, attrs).tolist()) if i >= 0}
    action = want.get("action")
    if action not in ACTION_FRAMES:
        return None
    spec = template_character(model, want.get("archetype"), want.get("accessory"))
    direction = want.get("direction", "right")
    return np.stack([render_frame(spec, action, f, direction, mc.image_size)[1]
                     for f in template_frame_indices(action, frames)]).astype(np.float32)


def template_character(model: LoadedModel, archetype: str | None, accessory: str | None = None):
    """The character whose skeleton the pose template uses: the model's first built-in character of
    `archetype` (the first character if none is named), holding the requested `accessory` if one is
    named, because the accessory shapes the motion (a sword slashes, a staff casts, a shield bashes
    and is carried differently)."""
    from ..data.builtin import make_characters
    specs = make_characters(model.config.data.builtin_characters, model.config.data.builtin_seed)
    spec = next((s for s in specs if s.archetype == archetype), specs[0])
    return replace(spec, accessory=accessory) if accessory else spec


def template_frame_indices(action: str, frames: int) -> list[int]:
    """Which frames of the renderer's cycle of `action` the pose template uses for `frames` frames."""
    from ..data.builtin import ACTION_FRAMES
    n = ACTION_FRAMES[action]
    return [round(i * n / frames) % n for i in range(frames)]


def load_frames(folder: Path) -> list[np.ndarray]:
    """The frames of an earlier `animate` output (its frames/ folder), in order."""
    files = sorted((folder / "frames").glob("*.png"), key=lambda p: int(re.findall(r"(\d+)\.png$", p.name)[0]))
    if not files:
        raise DataError(f"{folder}/frames holds no frames (expected the output folder of `spriteforge animate`)")
    return [load_rgba(f) for f in files]


def animate(model: LoadedModel, what: str, frames: int = 8, seed: int = 0, sampler: str = "dpmpp-2m",
            steps: int = 20, cfg: float = 2.0, negative_prompt: str = "", reroll: list[int] | None = None,
            base_frames: list[np.ndarray] | None = None, callback=None, bf16: bool = False,
            poses: np.ndarray | None = None, fit_poses: bool = True, attrs: dict | None = None,
            pose_template: bool = True, attr_guidance: float | str = 0.0) -> list[np.ndarray]:
    """-> `frames` RGBA uint8 [H, W, 4] frames of one animation.

    With `base_frames` (an existing animation): `reroll` lists frame indices to generate anew, every
    other frame is kept exactly; without `reroll`, the base frames are kept and the animation is
    extended to `frames` frames.

    `poses` (float [F, 18, 3] keypoints in the model's pixels, e.g. from a pose JSON) drives a pose
    model frame by frame: frame i is drawn in pose i, and the frame count is the pose count. With
    `fit_poses` the sequence is first scaled and placed as a whole where the training data's bodies
    stand, so a performer filmed at any size drives a 32 px sprite. `attrs` ({"palette": "red"})
    sets attributes of an attribute model explicitly, over what the prompt says. With `pose_template`,
    a pose model trained on the built-in set that gets no `poses` follows the renderer's skeleton
    cycle of the requested action (`template_poses`); without it, it draws the motion freely.
    """
    if not model.config.model.frame_attention and frames > 1:
        raise ConfigError("this model was trained on single images; `animate` needs a frame-set model "
                          "(train with --set train.frames=8, or use the bundled model: builtin)")
    sc = SampleConfig(n=1, frames=frames, seed=seed, sampler=sampler, steps=steps, cfg=cfg,
                      attr_guidance=attr_guidance, negative_prompt=negative_prompt, **what_to_condition(model, what))
    control = None
    if poses is None and pose_template and base_frames is None:
        poses = template_poses(model, what, frames, attrs)
        fit_poses = False  # the renderer's skeletons are already where the training bodies stand
    if poses is not None:
        from ..data.conditions import fit_poses as fit, pose_control
        poses = np.asarray(poses, dtype=np.float32)
        if poses.ndim != 3 or poses.shape[1:] != (18, 3) or not len(poses):
            raise DataError(f"a pose sequence must be [F, 18, 3] keypoints, got {poses.shape}")
        if "pose" in model.config.model.control and fit_poses and model.pose_box is not None:
            poses = fit(poses, model.pose_box)
        control = pose_control(poses, model.config.model)  # raises if the model has no pose input
        frames = len(poses)
        sc = replace(sc, frames=frames)
    known = mask = None
    if base_frames is not None:
        c, size = model.shape[0], model.shape[1]
        if any(f.shape[:2] != (size, size) for f in base_frames):
            raise DataError(f"the existing frames are {base_frames[0].shape[1]}x{base_frames[0].shape[0]}, "
                            f"the model makes {size}x{size}")
        keep = [i for i in range(len(base_frames)) if i not in set(reroll or [])]
        bad = [k for k in (reroll or []) if not 0 <= k < len(base_frames)]
        if bad:
            raise ConfigError(f"`--reroll {bad[0]}`: the animation has frames 0..{len(base_frames) - 1}")
        if reroll is None and frames <= len(base_frames):
            raise ConfigError(f"`--frames {frames}` must exceed the {len(base_frames)} existing frames to extend")
        if reroll is not None:
            frames = len(base_frames)
            sc = replace(sc, frames=frames)
        known = torch.zeros(frames, c, size, size, dtype=torch.uint8)
        mask = torch.zeros(frames, 1, size, size)
        for i in keep:
            known[i] = torch.from_numpy(base_frames[i][..., :c].copy()).permute(2, 0, 1)
            mask[i] = 1
    if control is not None and control.shape[0] != frames:
        raise ConfigError(f"the pose sequence has {control.shape[0]} frames but the animation has {frames}")
    attributes = None
    if attrs:
        if not model.config.model.attributes:
            raise ConfigError("`--attr`: this model was trained without attribute labels")
        attributes = model.attribute_row(None if model.config.model.text_encoder else what, attrs)[None]
    imgs = generate(model, sc, callback=callback, bf16=bf16, known=known, known_mask=mask, control=control,
                    attributes=attributes)
    out = imgs.permute(0, 2, 3, 1).numpy()
    if out.shape[-1] == 3:  # RGB models: opaque frames
        out = np.concatenate([out, np.full(out.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
    return [f.copy() for f in out]


def clean(frames: list[np.ndarray], c: Cleanup) -> list[np.ndarray]:
    if c.alpha_threshold:
        frames = threshold_alpha(frames, c.alpha_threshold)
    if c.remove_strays:
        frames = remove_strays(frames)
    if c.palette_colors or c.palette:
        palette = c.palette.split(",") if c.palette and not Path(c.palette).exists() else c.palette
        frames, _ = shared_palette(frames, n_colors=c.palette_colors or None, palette=palette)
    return frames


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48] or "animation"


def write_animation(frames: list[np.ndarray], out: Path, name: str, **export_kw) -> dict:
    return export_animation(frames, out, name=name, **export_kw)
