"""Per-image conditions beyond the class label: attribute labels and spatial control maps.

Attributes are metadata keys (the built-in set's archetype, palette, accessory, action, direction;
any extra column of a folder's metadata.jsonl). Each becomes an integer column with its own
vocabulary; -1 means "not given" and is what dropout and "unspecified" map to. The vocabulary
travels in the checkpoint, so a prompt can be read back into attributes at sampling time
(`parse_attributes`), which is how "a knight walking right" reaches an attribute model.

Control maps are images computed from each training image (or given by the user at sampling
time): pose skeletons from the keypoints in the metadata, Canny edges, alpha silhouettes. They
are stored as uint8 [N, C, H, W] once, like the images.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from ..config import CONTROL_CHANNELS, ConfigError
from .dataset import DataError, ImageSet

# Words people use for the built-in set's values; any other data matches values literally.
SYNONYMS = {"walking": "walk", "walks": "walk", "running": "run", "runs": "run", "jumping": "jump",
            "jumps": "jump", "attacking": "attack", "attacks": "attack", "standing": "idle", "idling": "idle",
            "camera": "front", "toward": "front", "towards": "front", "facing the camera": "front",
            "grey": "gray", "violet": "purple", "yellow": "gold", "skeletons": "skeleton", "knights": "knight",
            "no accessory": "none", "no accessories": "none", "without an accessory": "none",
            "without accessories": "none", "without any accessory": "none"}


def attribute_vocab(data: ImageSet, names: tuple[str, ...]) -> dict[str, list[str]]:
    """Sorted values of each attribute over the data; errors name the missing key."""
    vocab = {}
    for name in names:
        values = sorted({str(m[name]) for m in data.meta if m.get(name) is not None})
        if not values:
            keys = sorted({k for m in data.meta for k in m if k not in ("pose", "orig_size", "relpath", "source")})
            raise ConfigError(f"`model.attributes` names {name!r}, but no image's metadata has it; "
                              f"keys present: {', '.join(keys) or 'none'}")
        vocab[name] = values
    return vocab


def attribute_labels(data: ImageSet, vocab: dict[str, list[str]]) -> torch.Tensor:
    """int64 [N, K]: each image's value index per attribute, -1 where the image has none."""
    index = {name: {v: i for i, v in enumerate(values)} for name, values in vocab.items()}
    rows = [[index[name].get(str(m.get(name)), -1) for name in vocab] for m in data.meta]
    return torch.tensor(rows, dtype=torch.int64).reshape(len(data), len(vocab))


def attribute_row(vocab: dict[str, list[str]], given: dict[str, str]) -> torch.Tensor:
    """{"palette": "red", ...} -> int64 [K] (-1 for attributes not given). Errors list valid values."""
    for name, value in given.items():
        if name not in vocab:
            raise ConfigError(f"`--attr {name}={value}`: the model has no attribute {name!r}; it has "
                              f"{', '.join(vocab) or 'none'}")
        if str(value) not in vocab[name]:
            raise ConfigError(f"`--attr {name}={value}`: not a value the model knows; {name} is one of "
                              f"{', '.join(vocab[name])}")
    return torch.tensor([vocab[n].index(str(given[n])) if n in given else -1 for n in vocab], dtype=torch.int64)


def parse_attributes(text: str, vocab: dict[str, list[str]]) -> dict[str, str]:
    """Read attribute values out of a plain-English request, e.g. "a red knight walking right" ->
    {palette: red, archetype: knight, action: walk, direction: right}.

    Words match a value exactly, through SYNONYMS, or as the value plus an English ending
    ("jumping" -> jump). Attributes the text does not mention stay unspecified. A word that
    matches nothing is ignored unless nothing at all matches (then the error lists the vocabulary);
    two different values of one attribute are an error.
    """
    low = text.lower()
    for phrase, value in SYNONYMS.items():
        if " " in phrase:
            low = low.replace(phrase, value)
    words = re.findall(r"[a-z0-9_]+", low)
    found: dict[str, str] = {}
    for w in words:
        w = SYNONYMS.get(w, w)
        for name, values in vocab.items():
            for v in values:
                vl = v.lower()
                if w == vl or (len(vl) >= 3 and w.startswith(vl) and w[len(vl):] in ("s", "es", "ing", "ning", "ping", "ed")):
                    if name in found and found[name] != v:
                        raise ConfigError(f"{text!r} asks for two values of {name}: {found[name]!r} and {v!r}")
                    found[name] = v
    if text.strip() and not found:
        listing = "; ".join(f"{n}: {', '.join(v)}" for n, v in vocab.items())
        raise ConfigError(f"{text!r} names none of the attributes this model knows ({listing})")
    return found


def control_maps(data: ImageSet, kinds: tuple[str, ...]) -> torch.Tensor:
    """uint8 [N, sum(channels), H, W]: the control maps of every image, in `kinds` order."""
    maps = [control_for_image(data.images[i].permute(1, 2, 0).numpy(), kinds, data.meta[i].get("pose"),
                              where=data.paths[i]) for i in range(len(data))]
    return torch.from_numpy(np.stack(maps)) if maps else torch.zeros(0, 0, data.size, data.size, dtype=torch.uint8)


def control_for_image(img: np.ndarray, kinds: tuple[str, ...], pose=None, where: str = "image") -> np.ndarray:
    """One image's control maps: uint8 [C, H, W] (img is [H, W, C] uint8)."""
    from .control import edge_map, silhouette
    from .pose import render_pose_map
    size = img.shape[0]
    out = []
    for kind in kinds:
        if kind == "pose":
            if pose is None:
                raise DataError(f"{where}: `model.control` includes pose, but this image has no keypoints "
                                "(the built-in set has them; for folders add a `pose` column to metadata.jsonl)")
            out.append(render_pose_map(np.asarray(pose, dtype=np.float32), size).transpose(2, 0, 1))
        elif kind == "edges":
            out.append(edge_map(img)[None])
        elif kind == "silhouette":
            if img.shape[2] != 4:
                raise DataError(f"{where}: a silhouette control map needs RGBA images (this one has no alpha)")
            out.append(silhouette(img)[None])
        else:
            raise ConfigError(f"`model.control`: unknown map {kind!r}; expected one of {tuple(CONTROL_CHANNELS)}")
    return np.concatenate(out, axis=0).astype(np.uint8)


def pose_box(data: ImageSet) -> list[float] | None:
    """Median bounding box [x0, y0, x1, y1] of the visible joints of the data's poses: where and how
    big a skeleton is in a training image. Stored with a pose model so that a performer's poses
    (any camera, any size) can be placed where the model expects a body (`fit_poses`)."""
    boxes = []
    for m in data.meta:
        kp = np.asarray(m.get("pose") or [], dtype=np.float32).reshape(-1, 3)
        vis = kp[kp[:, 2] > 0] if len(kp) else kp
        if len(vis) >= 2:
            boxes.append([vis[:, 0].min(), vis[:, 1].min(), vis[:, 0].max(), vis[:, 1].max()])
    return np.median(np.array(boxes), axis=0).round(3).tolist() if boxes else None


def fit_poses(kps: np.ndarray, box) -> np.ndarray:
    """Scale and move a pose sequence [F, 18, 3] as one (so the motion is kept) until the union of its
    skeletons has the height of `box` and stands on its bottom edge, centred horizontally."""
    out = np.array(kps, dtype=np.float32, copy=True)
    vis = out[..., 2] > 0
    if not vis.any():
        raise DataError("the pose sequence has no visible joints")
    pts = out[..., :2][vis]
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    bx0, by0, bx1, by1 = box
    s = (by1 - by0) / max(y1 - y0, 1e-6)
    cx, bcx = (x0 + x1) / 2, (bx0 + bx1) / 2
    out[..., 0] = np.where(vis, (out[..., 0] - cx) * s + bcx, 0.0)
    out[..., 1] = np.where(vis, (out[..., 1] - y1) * s + by1, 0.0)
    return out


def pose_control(kps: np.ndarray, model_cfg) -> torch.Tensor:
    """float [F, Cc, H, W]: pose maps in the pose slot of a model's control channels, zeros elsewhere."""
    from .pose import render_pose_maps
    if "pose" not in model_cfg.control:
        raise ConfigError("a pose was given, but this model was trained without pose control maps "
                          f"(its control maps: {', '.join(model_cfg.control) or 'none'})")
    size = model_cfg.image_size
    out = torch.zeros(len(kps), model_cfg.control_channels, size, size)
    start = 0
    for kind in model_cfg.control:
        if kind == "pose":
            out[:, start:start + 3] = torch.from_numpy(render_pose_maps(kps, size)).permute(0, 3, 1, 2).float() / 255
        start += CONTROL_CHANNELS[kind]
    return out
