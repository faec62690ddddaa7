"""Animation quality: do the frames of one generated animation show one character, and does it loop?

Frame-set models (``model.frame_attention``) generate the F frames of an animation jointly. Besides
per-image quality (``evaluate.py``), an animation has to keep **one identity** across its frames and
**loop** without a jump. Every figure here is also computed on **real built-in animations** (the
"floor"): real cycles are not zero, because the pose changes from frame to frame, so a model is
perfect when it scores about the floor, not zero.

Inputs: an animation is uint8 ``[F, C, H, W]`` (C = 3 or 4; torch or numpy), frames in cycle order;
``animate()``'s list of ``[H, W, 4]`` frames is accepted too. ``split_sets(images, F)`` cuts
``pipeline.generate``'s ``[sets*F, C, H, W]`` output into animations.

Definitions
-----------
**Identity distance** (``identity_consistency``). EfficientNet-Lite0 features (``features.py``: RGBA
over mid grey, nearest-neighbour upscaled to 128 px, 1280-d) of every frame; Euclidean distances.
For animation a with frames 1..F: ``w_a`` = mean distance over all F(F-1)/2 frame pairs. The scale
``s`` = mean distance between frames of *different* animations (all cross pairs; of this set by
default, or a given scale: ``evaluate_animations`` uses the real reference's, whose animations are
of different characters). ``identity_distance = w_a / s``: 0 = identical frames, 1 = the frames
differ as much as frames of two random (different) characters. Needs F >= 2.

**Palette distance**. Per frame, a colour histogram of the opaque pixels (alpha >= 128; every
pixel of RGB frames) on a coarse RGB grid of 4 levels per channel (0, 85, 170, 255; 64 bins) with
trilinear soft binning (a colour between two levels splits its weight), so a shade off by a few
levels does not jump bins. Distance between two frames = chi-square distance
``0.5 * sum (p - q)^2 / (p + q)`` of the normalised histograms, in [0, 1] (0 = the same colour
mix, 1 = no colour in common). Frames without opaque pixels: two empty frames 0, one empty 1.
``palette_distance`` of an animation = mean over its frame pairs.

**Loop seam** (``loop_seam``). Pixel distance between two frames = the memorisation distance of
``metrics.pixel_nearest``: alpha-premultiplied RGBA, mean absolute difference per channel value over
the pixels visible (alpha > 0) in either frame, in [0, 1] (RGB: mean over all pixels; two empty
frames: 0). ``step`` = mean distance of consecutive frames (0->1, ..., F-2->F-1), ``seam`` =
distance F-1 -> 0, ``seam_ratio = (seam + eps) / (step + eps)`` with ``eps = SEAM_EPS`` (1e-3,
a quarter of one 8-bit level): ~1 = the wrap-around is an ordinary step (seamless loop), >> 1 =
a jump. Degenerate cases: identical frames (no motion) give exactly 1 (nothing jumps; read
``motion`` for frozen animations); F = 2 gives exactly 1 (the seam is the only step); F < 2 raises.
``seamless_share`` = share of animations with ratio < ``SEAMLESS_RATIO`` (1.5). ``motion`` = ``step``
(how much the frames move at all; compare with the floor: ~0 = a still image repeated).
Single real cycles spread widely (32-px built-in walks: 0.5-1.9, because pixel-art steps alternate
between held and moving poses, e.g. 0.06, 0.25, 0.07, 0.23, ...), so read the mean / median over
many animations, against the floor: 12 real walks give mean 1.27 (share < 1.5: 58 %); the same
walks with their last frame replaced by another character's frame 2.17 (8 %).

**Animation adherence** (``animation_adherence``, built-in set, sprites >= 16 px): the adherence
classifier (``adherence.py``) on every frame; per attribute, the share of frames whose prediction
equals the request (``frame``) and the share of animations whose majority vote over their frames
equals it (``majority``). A single frame's action is genuinely ambiguous (idle vs a walk's contact
frame), so read action against the classifier's held-out accuracy (the ceiling) and the floor.

Determinism: same inputs, same numbers (EffNet features in fixed batches of 16; real references
and request orders are seeded; generation seeds per batch are ``seed + 1_000_003 * batch``).

Cost (2-core dev machine, both cores busy with other jobs, 1 thread): ~10 ms of EffNet per frame,
so 32 animations x 8 frames + a 32-animation reference take ~5 s of features; sampling dominates.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

import numpy as np
import torch

SEAM_EPS = 1e-3
SEAMLESS_RATIO = 1.5
PALETTE_LEVELS = 4
ALPHA_OPAQUE = 128
BATCH_SEED_STRIDE = 1_000_003
DEFAULT_N_ANIMS = 32
ATTRS = ("archetype", "palette", "accessory", "action", "direction")

# metric key -> (better, description); the order is the report's row order.
METRICS = {
    "identity_distance_mean": ("lower", "EffNet distance between frames of one animation / between different "
                                        "characters (mean over animations)"),
    "identity_distance_median": ("lower", "the same, median over animations"),
    "palette_distance_mean": ("lower", "chi-square distance of opaque-pixel colour histograms (4 levels/channel) "
                                       "between frames (mean)"),
    "palette_distance_median": ("lower", "the same, median over animations"),
    "seam_ratio_mean": ("closer", "last->first frame pixel distance / mean consecutive-frame distance (mean; "
                                  "~1 = seamless)"),
    "seam_ratio_median": ("closer", "the same, median over animations"),
    "seamless_share": ("higher", f"share of animations with seam ratio < {SEAMLESS_RATIO}"),
    "motion_mean": ("closer", "mean consecutive-frame pixel distance over the visible area ([0, 1]; ~0 = frozen)"),
}

DEFINITIONS = {
    "identity_distance": "mean pairwise Euclidean EfficientNet-Lite0 feature distance between the frames of one "
                         "animation, divided by the mean distance between frames of different real animations "
                         "(different characters): 0 = identical frames, 1 = as different as two random characters",
    "palette_distance": "mean over frame pairs of the chi-square distance (0.5 sum (p-q)^2/(p+q), in [0, 1]) between "
                        "colour histograms of the opaque pixels (alpha >= 128) on a 4-level-per-channel RGB grid "
                        "(64 bins, trilinear soft binning)",
    "seam_ratio": f"(d(last, first) + {SEAM_EPS}) / (mean d(frame i, i+1) + {SEAM_EPS}), d = mean absolute difference "
                  "per channel value of alpha-premultiplied RGBA over the pixels visible in either frame; "
                  "identical frames -> 1, F = 2 -> 1",
    "seamless_share": f"share of animations with seam_ratio < {SEAMLESS_RATIO}",
    "motion": "mean d(frame i, i+1): how much the frames move at all",
    "adherence_frame": "share of frames whose predicted attribute (built-in adherence classifier) equals the request",
    "adherence_majority": "share of animations whose majority vote over their frames equals the request",
}


# --------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------

def _one_animation(a) -> torch.Tensor:
    if isinstance(a, (list, tuple)):                       # animate(): list of [H, W, C] frames
        a = np.stack([np.asarray(f) for f in a])
    if isinstance(a, np.ndarray):
        a = torch.from_numpy(np.ascontiguousarray(a))
    if not isinstance(a, torch.Tensor) or a.dtype != torch.uint8 or a.ndim != 4:
        raise ValueError(f"an animation must be uint8 [F, C, H, W] (or a list of [H, W, C] frames), got "
                         f"{getattr(a, 'dtype', type(a).__name__)} {tuple(getattr(a, 'shape', ()))}")
    if a.shape[1] not in (3, 4) and a.shape[-1] in (3, 4):
        a = a.permute(0, 3, 1, 2).contiguous()
    if a.shape[1] not in (3, 4):
        raise ValueError(f"an animation's frames need 3 or 4 channels, got shape {tuple(a.shape)}")
    return a


def as_animations(anims, min_frames: int = 2) -> list[torch.Tensor]:
    """A list of uint8 [F, C, H, W] tensors (same C, H, W; F may differ) from the accepted inputs."""
    if isinstance(anims, (torch.Tensor, np.ndarray)) and anims.ndim == 5:
        anims = list(anims)
    out = [_one_animation(a) for a in anims]
    if not out:
        raise ValueError("no animations")
    shapes = {tuple(a.shape[1:]) for a in out}
    if len(shapes) > 1:
        raise ValueError(f"all animations need the same frame shape, got {sorted(shapes)}")
    short = [i for i, a in enumerate(out) if a.shape[0] < min_frames]
    if short:
        raise ValueError(f"animation {short[0]} has {out[short[0]].shape[0]} frame(s); these metrics need at least "
                         f"{min_frames} frames per animation")
    return out


def split_sets(images: torch.Tensor, frames: int) -> list[torch.Tensor]:
    """``generate``'s uint8 [sets*F, C, H, W] (frames of a set consecutive) -> list of [F, C, H, W]."""
    if images.shape[0] % frames:
        raise ValueError(f"{images.shape[0]} images are not whole sets of {frames} frames")
    return list(images.reshape(-1, frames, *images.shape[1:]).unbind(0))


def _mean_over(vals) -> float:
    v = np.asarray(vals, dtype=np.float64)
    return float(v.mean()) if v.size else float("nan")


def _median_over(vals) -> float:
    v = np.asarray(vals, dtype=np.float64)
    return float(np.median(v)) if v.size else float("nan")


# --------------------------------------------------------------------------------------------------
# Identity: EffNet features and palettes
# --------------------------------------------------------------------------------------------------

def palette_histograms(frames_u8: torch.Tensor, levels: int = PALETTE_LEVELS) -> np.ndarray:
    """float64 [N, levels^3]: soft-binned colour histogram of the opaque pixels, normalised to sum 1
    (all zeros for a frame without opaque pixels)."""
    x = frames_u8
    n = x.shape[0]
    rgb = x[:, :3].reshape(n, 3, -1).double() / 255.0 * (levels - 1)           # [N, 3, P] in [0, L-1]
    w_pix = (x[:, 3].reshape(n, -1) >= ALPHA_OPAQUE).double() if x.shape[1] == 4 else torch.ones(n, rgb.shape[-1],
                                                                                                  dtype=torch.float64)
    lo = rgb.floor().clamp(0, levels - 2)
    frac = rgb - lo
    lo = lo.long()
    hist = torch.zeros(n, levels ** 3, dtype=torch.float64)
    for corner in range(8):
        bits = [(corner >> k) & 1 for k in range(3)]
        w = w_pix.clone()
        idx = torch.zeros_like(lo[:, 0])
        for ch, b in enumerate(bits):
            w = w * (frac[:, ch] if b else 1.0 - frac[:, ch])
            idx = idx * levels + lo[:, ch] + b
        hist.scatter_add_(1, idx, w)
    total = hist.sum(1, keepdim=True)
    return torch.where(total > 0, hist / total.clamp_min(1e-12), hist).numpy()


def chi2_matrix(h1: np.ndarray, h2: np.ndarray) -> np.ndarray:
    """Chi-square distances 0.5 * sum (p-q)^2 / (p+q) between histogram rows, [N1, N2] in [0, 1];
    empty-vs-empty 0, empty-vs-nonempty 1."""
    p, q = h1[:, None, :], h2[None, :, :]
    s = p + q
    d = 0.5 * np.where(s > 0, (p - q) ** 2 / np.where(s > 0, s, 1.0), 0.0).sum(-1)
    e1, e2 = h1.sum(1) == 0, h2.sum(1) == 0
    d[e1[:, None] ^ e2[None, :]] = 1.0
    return d


def _feature_distances(f: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(f, dtype=np.float64))
    return torch.cdist(t, t, compute_mode="donot_use_mm_for_euclid_dist").numpy()   # exact 0 for equal rows


def frame_features(frames: torch.Tensor, feats) -> np.ndarray:
    """EffNet features of every frame, computing each distinct frame once (so identical frames get
    identical rows and distance exactly 0, and frozen animations cost one frame)."""
    keys = [f.numpy().tobytes() for f in frames]
    row: dict[bytes, int] = {}
    uniq: list[int] = []
    for i, k in enumerate(keys):
        if k not in row:
            row[k] = len(uniq)
            uniq.append(i)
    f = feats(frames[uniq])
    return f[[row[k] for k in keys]]


def _within_and_between(d: np.ndarray, owner: np.ndarray, n_anims: int) -> tuple[list[float], float]:
    within = []
    for a in range(n_anims):
        idx = np.nonzero(owner == a)[0]
        iu = np.triu_indices(len(idx), 1)
        within.append(float(d[np.ix_(idx, idx)][iu].mean()))
    cross = owner[:, None] != owner[None, :]
    between = float(d[cross].mean()) if cross.any() else float("nan")
    return within, between


def identity_consistency(anims, feats=None, scale: float | None = None, features: np.ndarray | None = None) -> dict:
    """How much the frames of each animation differ: EffNet identity distance and palette distance
    (definitions: module docstring).

    Args:
        anims: animations (uint8 [F, C, H, W] each, F >= 2).
        feats: an ``EffNetFeatures`` (default: a new one; the network is cached per process).
        scale: the EffNet distance that means "different characters" (default: the mean distance
            between frames of different animations of ``anims``, which then needs >= 2 animations).
        features: precomputed EffNet features of all frames in order (skips the network).

    Returns ``{"identity_distance": [per animation], "identity_distance_mean"/"_median",
    "feature_distance": [raw, per animation], "feature_scale", "feature_scale_source",
    "between_feature_distance", "palette_distance": [...], "palette_distance_mean"/"_median",
    "between_palette_distance", "frames": [F per animation]}``.
    """
    anims = as_animations(anims)
    frames = torch.cat(anims)
    owner = np.repeat(np.arange(len(anims)), [a.shape[0] for a in anims])
    if features is None:
        if feats is None:
            from .features import EffNetFeatures
            feats = EffNetFeatures()
        features = frame_features(frames, feats)
    features = np.asarray(features, dtype=np.float64)
    if features.shape[0] != frames.shape[0]:
        raise ValueError(f"{features.shape[0]} feature rows for {frames.shape[0]} frames")
    within, between = _within_and_between(_feature_distances(features), owner, len(anims))
    if scale is None:
        if len(anims) < 2:
            raise ValueError("identity_consistency needs at least 2 animations to set its scale, or a given `scale`")
        scale, source = between, "this set: mean EffNet distance between frames of different animations"
    else:
        source = "given"
    scale = float(scale)
    rel = [w / scale if scale > 0 else float("nan") for w in within]
    pal_within, pal_between = _within_and_between(chi2_matrix(*(2 * [palette_histograms(frames)])), owner, len(anims))
    return {"identity_distance": rel, "identity_distance_mean": _mean_over(rel),
            "identity_distance_median": _median_over(rel),
            "feature_distance": within, "feature_scale": scale, "feature_scale_source": source,
            "between_feature_distance": between,
            "palette_distance": pal_within, "palette_distance_mean": _mean_over(pal_within),
            "palette_distance_median": _median_over(pal_within), "between_palette_distance": pal_between,
            "frames": [int(a.shape[0]) for a in anims]}


# --------------------------------------------------------------------------------------------------
# Loop seam
# --------------------------------------------------------------------------------------------------

def pixel_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Visible-area mean absolute difference per channel value between frames a[i] and b[i] ([N] in [0, 1]):
    premultiplied RGBA over pixels with alpha > 0 in either frame (RGB: all pixels; two empty frames: 0)."""
    fa, fb = a.double() / 255.0, b.double() / 255.0
    c = a.shape[1]
    if c == 4:
        fa = torch.cat([fa[:, :3] * fa[:, 3:4], fa[:, 3:4]], 1)
        fb = torch.cat([fb[:, :3] * fb[:, 3:4], fb[:, 3:4]], 1)
        union = ((a[:, 3] > 0) | (b[:, 3] > 0)).flatten(1).sum(1).double()
        l1 = (fa - fb).abs().flatten(1).sum(1)
        return torch.where(union > 0, l1 / (c * union.clamp_min(1)), torch.zeros_like(l1))
    return (fa - fb).abs().flatten(1).mean(1)


def loop_seam(anims, eps: float = SEAM_EPS) -> dict:
    """Does each animation loop? ``seam_ratio`` = (last->first distance + eps) / (mean consecutive
    distance + eps) per animation (definitions: module docstring); summary: mean, median, the share
    below ``SEAMLESS_RATIO`` and the mean motion."""
    anims = as_animations(anims)
    steps, seams, ratios = [], [], []
    for a in anims:
        step = float(pixel_distance(a[:-1], a[1:]).mean())
        seam = float(pixel_distance(a[-1:], a[:1])[0])
        steps.append(step)
        seams.append(seam)
        ratios.append((seam + eps) / (step + eps))
    return {"seam_ratio": ratios, "seam": seams, "step": steps,
            "seam_ratio_mean": _mean_over(ratios), "seam_ratio_median": _median_over(ratios),
            "seamless_share": float(np.mean([r < SEAMLESS_RATIO for r in ratios])),
            "motion_mean": _mean_over(steps), "threshold": SEAMLESS_RATIO, "eps": eps}


# --------------------------------------------------------------------------------------------------
# Adherence (built-in set)
# --------------------------------------------------------------------------------------------------

def animation_adherence(anims, requested: list[dict], classifier=None) -> dict:
    """Per attribute: share of frames (``frame``) and of animations by majority vote (``majority``)
    whose prediction by the built-in adherence classifier equals the request.

    ``requested[i]`` holds what animation i asked for (any of archetype, palette, accessory, action,
    direction; other keys are ignored; attributes nobody requested are absent). ``classifier``: an
    ``adherence.AttributeClassifier`` (default: the cached default one at the sprites' size).
    Returns ``{"frame": {attr: share}, "majority": {...}, "count_frames": {...},
    "count_animations": {...}, "classifier_heldout_accuracy": {...}, "predicted_majority": {attr: [...]}}``.
    """
    from .adherence import adherence, load_classifier
    anims = as_animations(anims, min_frames=1)
    if len(requested) != len(anims):
        raise ValueError(f"{len(anims)} animations but {len(requested)} requests")
    frames = torch.cat(anims)
    owner = np.repeat(np.arange(len(anims)), [a.shape[0] for a in anims])
    per_frame = [{k: v for k, v in requested[a].items() if k in ATTRS} for a in owner]
    wanted = [k for k in ATTRS if any(r.get(k) is not None for r in per_frame)]
    if not wanted:
        return {"frame": {}, "majority": {}, "count_frames": {}, "count_animations": {},
                "classifier_heldout_accuracy": {}, "predicted_majority": {}}
    clf = classifier or load_classifier(size=int(frames.shape[-1]))
    res = adherence(frames, per_frame, clf, details=True)
    majority, count_anims, votes = {}, {}, {}
    for k in wanted:
        votes[k] = [Counter(res["predicted"][k][i] for i in np.nonzero(owner == a)[0]).most_common(1)[0][0]
                    for a in range(len(anims))]
        asked = [a for a in range(len(anims)) if requested[a].get(k) is not None]
        majority[k] = float(np.mean([votes[k][a] == requested[a][k] for a in asked]))
        count_anims[k] = len(asked)
    return {"frame": res["accuracy"], "majority": majority, "count_frames": res["count"],
            "count_animations": count_anims,
            "classifier_heldout_accuracy": {k: clf.heldout_accuracy.get(k) for k in wanted},
            "predicted_majority": votes}


# --------------------------------------------------------------------------------------------------
# Real animations (the floor)
# --------------------------------------------------------------------------------------------------

def render_real_animations(size: int = 32, n: int = 32, seed: int = 0, actions=None, channels: int = 4
                           ) -> tuple[list[torch.Tensor], list[dict]]:
    """``n`` real built-in animations, one per character of ``make_characters(n, seed)`` (so two
    animations are always two different characters), each a full native cycle (walk 8 frames, run
    and jump 6, idle and attack 4). Action and direction per character from ``random.Random(seed)``
    (actions default: all five). ``channels=3`` composites over white like the RGB built-in set.
    Returns (animations, their true attributes)."""
    from ..data.builtin import ACTION_FRAMES, ACTIONS, DIRECTIONS, make_characters, render_frame
    actions = tuple(actions) if actions else ACTIONS
    rng = random.Random(seed)
    anims, attrs = [], []
    for spec in make_characters(n, seed):
        action, direction = rng.choice(actions), rng.choice(DIRECTIONS)
        frames = np.stack([render_frame(spec, action, f, direction, size)[0] for f in range(ACTION_FRAMES[action])])
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
        if channels == 3:
            a = x[:, 3:].float() / 255
            x = (x[:, :3].float() * a + 255 * (1 - a)).round().to(torch.uint8)
        anims.append(x)
        attrs.append({"character": spec.id, "archetype": spec.archetype, "palette": spec.palette,
                      "accessory": spec.accessory, "action": action, "direction": direction})
    return anims, attrs


def matched_real_animations(data, requested: list[dict], seed: int = 0) -> tuple[list[torch.Tensor], list[dict]]:
    """For each request, one real animation of ``data`` (an ImageSet with meta "animation"/"frame", e.g.
    the built-in set) showing what was requested: the same caption (prompt), class and built-in
    attributes where the data has them; a seeded random animation when nothing matches. Returns
    (animations, the real attributes restricted to the keys each request asked for)."""
    from ..data.dataset import group_animations
    groups = group_animations(data)
    if not groups:
        raise ValueError("the data has no animations (no meta['animation'])")
    rng = random.Random(seed)
    first = [data.meta[g[0]] for g in groups]
    caps = [data.captions[g[0]] for g in groups]
    labels = [int(data.labels[g[0]]) for g in groups]
    names = list(data.class_names)
    anims, truth = [], []
    for r in requested:
        def ok(j):
            if "prompt" in r and caps[j] != r["prompt"]:
                return False
            if "class" in r and not (0 <= labels[j] < len(names) and names[labels[j]] == r["class"]):
                return False
            return all(first[j].get(k) == r[k] for k in ATTRS if r.get(k) is not None)
        cand = [j for j in range(len(groups)) if ok(j)] or list(range(len(groups)))
        j = rng.choice(cand)
        anims.append(data.images[groups[j]])
        truth.append({k: first[j][k] for k in ATTRS if r.get(k) is not None and k in first[j]})
    return anims, truth


def animation_metrics(anims, feats=None, scale: float | None = None) -> dict:
    """identity_consistency + loop_seam of one set, merged: ``{"consistency": ..., "seam": ...,
    "summary": {metric key: value}}`` (keys of ``METRICS``)."""
    cons = identity_consistency(anims, feats, scale=scale)
    seam = loop_seam(anims)
    summary = {k: (cons.get(k) if k in cons else seam.get(k)) for k in METRICS}
    return {"consistency": cons, "seam": seam, "summary": summary}


def real_animation_reference(size: int = 32, n: int = 32, seed: int = 0, *, actions=None, channels: int = 4,
                             feats=None, classifier=None) -> dict:
    """Every figure on ``n`` real built-in animations (``render_real_animations``): what a perfect
    model scores. Identity distances use this set's own between-character scale. With a
    ``classifier``, also ``animation_adherence`` of the real frames against their true attributes.
    Deterministic in (size, n, seed, actions, channels). Also per action: the seam ratios (real
    attack and jump cycles are not all smooth loops) and identity distances.
    Returns ``animation_metrics(...)`` plus "attributes", "per_action" and (optionally) "adherence"."""
    anims, attrs = render_real_animations(size, n, seed, actions, channels)
    out = animation_metrics(anims, feats)
    per_action: dict[str, dict] = {}
    for i, a in enumerate(attrs):
        d = per_action.setdefault(a["action"], {"count": 0, "seam_ratio": [], "identity_distance": []})
        d["count"] += 1
        d["seam_ratio"].append(out["seam"]["seam_ratio"][i])
        d["identity_distance"].append(out["consistency"]["identity_distance"][i])
    out["per_action"] = {k: {"count": v["count"], "seam_ratio_mean": _mean_over(v["seam_ratio"]),
                             "identity_distance_mean": _mean_over(v["identity_distance"])}
                         for k, v in sorted(per_action.items())}
    out["attributes"] = attrs
    out["config"] = {"size": size, "n": n, "seed": seed, "actions": list(actions) if actions else "all",
                     "channels": channels}
    if classifier is not None:
        out["adherence"] = animation_adherence(anims, attrs, classifier)
    return out


# --------------------------------------------------------------------------------------------------
# Model evaluation
# --------------------------------------------------------------------------------------------------

def _class_index(model, name: str) -> int:
    from ..pipeline import class_index
    return class_index(model, name)


def plan_animation_requests(model, data, n: int, prompts_or_classes=None, builtin: bool = False, sample_cfg=None):
    """(labels tensor or None, prompts list or None, requested dicts) for ``n`` animations.

    Default: as ``evaluate.plan_requests`` (text models: the data's captions in a fixed shuffled
    order, e.g. "a red knight walking right"; class models: the classes in turn; a ``sample_cfg``
    prompt / class_name asks for that one thing every time). With ``prompts_or_classes`` (a list):
    prompts for a text model, class names for a class model, cycled."""
    from ..config import SampleConfig
    from ..data.builtin import ARCHETYPES
    mc = model.config.model
    if prompts_or_classes is None:
        from .evaluate import plan_requests
        return plan_requests(model, data, n, sample_cfg or SampleConfig(), builtin)
    items = [prompts_or_classes] if isinstance(prompts_or_classes, str) else list(prompts_or_classes)
    if not items:
        raise ValueError("prompts_or_classes is empty")
    items = [items[i % len(items)] for i in range(n)]
    requested: list[dict] = [{} for _ in range(n)]
    labels = prompts = None
    if mc.text_encoder:
        from .evaluate import prompt_requests
        prompts = items
        labels, requested = prompt_requests(prompts, data, builtin, with_labels=bool(mc.num_classes))
        if labels is not None:
            for i, lab in enumerate(labels.tolist()):
                if 0 <= lab < len(model.class_names):
                    requested[i]["class"] = model.class_names[lab]
    elif mc.num_classes:
        labels = torch.tensor([_class_index(model, str(c)) for c in items], dtype=torch.long)
        for i, lab in enumerate(labels.tolist()):
            name = model.class_names[lab] if lab < len(model.class_names) else str(lab)
            requested[i]["class"] = name
            if builtin and name in ARCHETYPES:
                requested[i]["archetype"] = name
    else:
        raise ValueError("this model is unconditional: it takes no prompts or classes")
    return labels, prompts, requested


def generate_animations(model, n: int, frames: int, sample_cfg=None, labels=None, prompts=None, seed: int = 0,
                        batch_size: int = 8) -> list[torch.Tensor]:
    """``n`` animations of ``frames`` frames, ``batch_size`` animations per ``generate`` call; batch b
    uses seed ``seed + 1_000_003 * b``. -> list of uint8 [F, C, H, W]."""
    from ..config import SampleConfig
    from ..pipeline import generate
    sc = sample_cfg or SampleConfig()
    out: list[torch.Tensor] = []
    for b, start in enumerate(range(0, n, batch_size)):
        stop = min(n, start + batch_size)
        bsc = dataclasses.replace(sc, n=stop - start, frames=frames, seed=seed + BATCH_SEED_STRIDE * b,
                                  prompt=None if prompts is not None else sc.prompt,
                                  class_name=None if labels is not None else sc.class_name)
        imgs = generate(model, bsc, labels=None if labels is None else labels[start:stop],
                        prompts=None if prompts is None else prompts[start:stop])
        out += split_sets(imgs, frames)
    return out


def _looks_builtin(data) -> bool:
    return data is not None and len(data) > 0 and str(data.paths[0]).startswith("builtin:") and \
        all(k in data.meta[0] for k in ATTRS)


def evaluate_animations(model, n_anims: int = DEFAULT_N_ANIMS, frames: int = 8, prompts_or_classes=None,
                        sample_cfg=None, seed: int = 0, *, data=None, feats=None, classifier=None,
                        batch_size: int = 8, anims=None) -> dict:
    """Generate ``n_anims`` animations of ``frames`` frames and measure them against real animations.

    Args:
        model: a ``LoadedModel`` or anything ``load_model`` takes (run folder, checkpoint, "builtin");
            it must be a frame-set model.
        prompts_or_classes: what to ask for (cycled); default: the data's captions (text models, in
            a fixed shuffled order) or the classes in turn (class models), as ``evaluate`` does.
        sample_cfg: sampler / steps / cfg / rho / negative prompt (``SampleConfig``; n, frames, seed
            are set here). Default ``SampleConfig()``: DPM++ 2M, 20 steps, cfg 1.
        seed: generation seed (batch b: ``seed + 1_000_003 * b``) and reference-draw seed.
        data: an ``ImageSet`` the requests and the real reference come from (default: the model's
            own training data, ``load_dataset(model.config.data)``).
        feats: ``EffNetFeatures``; classifier: ``AttributeClassifier`` for adherence (default: the
            cached default one; ``False`` skips adherence).
        anims: evaluate these animations instead of generating (tests; must match the requests).

    Returns the report section ``report["adherence"]["animation"]``: ``{"title", "metrics", "floor",
    "count", "better", "better_per_metric", "notes", "definitions", "sampling", "reference",
    "requests", "details": {"model", "floor"}, "adherence": section or None}``; ``report_sections()``
    splits it into the "animation" and "animation_adherence" sections. The floor is the same
    figures on real animations of the data matched to the requests (same caption / class /
    attributes), and identity distances of both lines use the floor's between-character scale.
    """
    from ..config import SampleConfig
    from .features import EffNetFeatures
    if not hasattr(model, "denoiser"):
        from ..pipeline import load_model
        model = load_model(model)
    mc = model.config.model
    if not mc.frame_attention:
        raise ValueError("evaluate_animations needs a frame-set model (model.frame_attention); this one makes "
                         "single images")
    if frames < 3:
        raise ValueError(f"frames={frames}: the loop seam needs at least 3 frames")
    if data is None:
        from ..data import load_dataset
        data = load_dataset(model.config.data)
    builtin = _looks_builtin(data)
    sc = sample_cfg or SampleConfig()
    feats = feats or EffNetFeatures()
    labels, prompts, requested = plan_animation_requests(model, data, n_anims, prompts_or_classes, builtin, sc)
    if anims is None:
        anims = generate_animations(model, n_anims, frames, sc, labels, prompts, seed, batch_size)
        source = "model"
    else:
        anims = as_animations(anims)
        source = "override"
    if len(anims) != n_anims:
        raise ValueError(f"{len(anims)} animations for {n_anims} requests")

    notes = []
    ref = ref_anims = ref_truth = None
    try:
        ref_anims, ref_truth = matched_real_animations(data, requested, seed)
        ref_desc = {"source": "real animations of the data, matched to the requests (same caption / class / "
                              "attributes; seeded choice among matches)",
                    "n": len(ref_anims), "frames": [int(a.shape[0]) for a in ref_anims]}
    except ValueError:
        ref_desc = {"source": None}
        notes.append("no real animations in the data (no meta['animation']): no floor; identity distances use the "
                     "samples' own between-animation scale")
    if ref_anims is not None:
        if len(ref_anims) < 2:
            raise ValueError("the real reference needs at least 2 animations (n_anims >= 2)")
        ref = animation_metrics(ref_anims, feats)
        scale = ref["consistency"]["feature_scale"]
    else:
        if n_anims < 2:
            raise ValueError("identity distances need at least 2 animations")
        scale = None
    model_m = animation_metrics(anims, feats, scale=scale)

    section = {
        "title": "Animation: identity across frames and loop seams (frame sets)",
        "metrics": model_m["summary"],
        "floor": ref["summary"] if ref else None,
        "count": {k: len(anims) for k in METRICS},
        "better": "lower",
        "better_per_metric": {k: v[0] for k, v in METRICS.items()},
        "notes": [
            f"{len(anims)} animations of {frames} frames ({source}); floor: the same figures on "
            f"{len(ref_anims) if ref_anims else 0} real animations matched to the requests (native cycle lengths: "
            "walk 8, run/jump 6, idle/attack 4 frames)",
            "identity distance: EffNet distance between frames of one animation / mean distance between frames of "
            "different real characters (0 = identical frames, 1 = a different character); palette distance: "
            "chi-square of opaque-pixel colour histograms (4 levels per channel); lower is better, about the "
            "floor is perfect (real cycles move)",
            f"seam ratio: last->first frame distance / mean consecutive-frame distance (~1 = seamless loop; "
            f"seamless share = ratio < {SEAMLESS_RATIO}, higher is better); motion: mean consecutive-frame "
            "distance (~0 = a frozen frame repeated): read both against the floor",
        ] + notes,
        "definitions": dict(DEFINITIONS),
        "sampling": {"source": source, "n_anims": n_anims, "frames": frames, "sampler": sc.sampler,
                     "steps": sc.steps, "cfg": sc.cfg, "rho": sc.rho, "seed": seed, "batch_size": batch_size,
                     "batch_seeds": f"seed + {BATCH_SEED_STRIDE} * batch_index"},
        "reference": ref_desc,
        "requests": requested,
        "details": {"model": {"consistency": model_m["consistency"], "seam": model_m["seam"]},
                    "floor": {"consistency": ref["consistency"], "seam": ref["seam"]} if ref else None},
        "adherence": None,
    }

    # --- adherence (built-in data, >= 16 px)
    size = int(anims[0].shape[-1])
    if classifier is not False and builtin and any(any(r.get(k) is not None for k in ATTRS) for r in requested):
        if size < 16 or size % 8:
            section["notes"].append("animation adherence skipped: the built-in attribute checker needs sprites of "
                                    "at least 16 px (a multiple of 8)")
        else:
            from .adherence import load_classifier
            clf = classifier or load_classifier(size=size)
            adh = animation_adherence(anims, requested, clf)
            adh_floor = animation_adherence(ref_anims, ref_truth, clf) if ref_anims is not None else None
            metrics, floor, count, ceiling = {}, {}, {}, {}
            for k in adh["frame"]:
                metrics[f"{k} (frames)"] = adh["frame"][k]
                metrics[f"{k} (majority)"] = adh["majority"][k]
                count[f"{k} (frames)"] = adh["count_frames"][k]
                count[f"{k} (majority)"] = adh["count_animations"][k]
                ceiling[f"{k} (frames)"] = adh["classifier_heldout_accuracy"].get(k)
                if adh_floor is not None:
                    floor[f"{k} (frames)"] = adh_floor["frame"].get(k)
                    floor[f"{k} (majority)"] = adh_floor["majority"].get(k)
            section["adherence"] = {
                "title": "Animation adherence: requested attributes per frame and per animation",
                "metrics": metrics, "floor": floor if adh_floor is not None else None, "count": count,
                "better": "higher", "classifier_heldout_accuracy": ceiling, "classifier": clf.describe(),
                "details": {"model": adh, "floor": adh_floor},
                "notes": ["(frames): share of frames whose predicted attribute equals the request; (majority): share "
                          "of animations whose majority vote over their frames equals it",
                          "real floor = the same checker on the matched real animations with their true attributes; "
                          "checker on unseen chars = its single-frame accuracy on characters it never saw (the "
                          "ceiling): a single frame's action is ambiguous (idle vs a walk's contact frame)"],
            }
    return section


def report_sections(result: dict) -> dict:
    """``evaluate_animations``'s result -> ``{"animation": ..., "animation_adherence": ...}`` for
    ``report["adherence"]`` (the adherence section only when it was computed)."""
    main = {k: v for k, v in result.items() if k != "adherence"}
    out = {"animation": main}
    if result.get("adherence"):
        out["animation_adherence"] = result["adherence"]
    return out
