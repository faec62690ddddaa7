"""`spriteforge eval`: sample a trained model and measure it against held-out real sprites.

One call, ``evaluate(model, data, n=1000, ...)``, does everything and returns the report (a dict of
plain values); with ``out_dir`` it also writes ``report.json``, ``report.md``, ``per_sample.jsonl``
and the pictures ``samples.png``, ``real.png`` and ``closest_pairs.png`` (see ``report.py``).

What is compared with what
--------------------------
The real images are split into a **held-out reference set R** and a **training-side set T**:

* ``heldout="run"``: the run's own validation split (``split_validation`` with the run's
  ``train.val_fraction`` and ``train.seed``, whole animations in frame-set runs). The model never
  trained on R, so "held out" really means unseen. ``"auto"`` (default) picks this whenever the
  data is the run's training data (same data config, or the run's data when none is given).
* ``heldout="seeded"``: a fixed split (always seed 0, whatever ``seed`` is): R = 20 % of the images
  (at least 50, at most 2,000), whole animations when the data has them (so no held-out frame has
  its siblings in T). Used for data the run did not train on; if it did train on it, R is not
  unseen and the report says so.

Each metric compares the n generated samples G with R. The **real-vs-real floor** runs every metric
on an equally sized set of real images instead of G: ``m = min(n, |T|)`` images drawn from T (fixed
seed) against the same R. Same sizes on both lines, so the estimators' small-sample bias is the same
and the floor is what a perfect model (one that samples the training distribution) would score.
Memorisation compares G with all of T (the images the model saw); its floor is R against T (how
close unseen real sprites already are to the training set).

Minimum image counts (checked before any sampling; ``MIN_IMAGES = 50``)
-----------------------------------------------------------------------
FD, KID and precision/recall estimate distributions of 1280-d features: below ~50 images per set
they are noise. Since the floor needs R and an equally sized draw from T, the rule is: **R >= 50,
T >= 50 and n >= 50**, i.e. the data needs at least 100 images for the seeded split, and a run's own
split must have held out at least 50 (builtin: 2,016 images x 5 % = 100). SWD (patches), alpha
coverage and memorisation need far fewer and are always computed when the rule holds. FD with
fewer than 1,281 images per set is rank-deficient: finite and comparable with the floor at the same
N, but not with numbers at another N (the report says so). Compare numbers only at equal n and R.

Memorisation threshold: a sample is a near-copy when its mean absolute difference per channel value
to the nearest training image, over the visible sprite area, is <= 4/255
(``metrics.DEFAULT_PIXEL_THRESHOLD``); the feature criterion (EffNet distance <= 0.5 x that training
image's distance to its own nearest sibling) is reported beside it.

Sampling: n samples in batches of ``batch_size``; batch b uses seed ``seed + 1_000_003 * b`` (so the
first batch equals ``spriteforge sample --seed S --n B``). Class-conditional models cycle through
the classes; text models cycle through the data's captions (in a fixed shuffled order); what was
requested is recorded per sample (``per_sample.jsonl``) and, for the built-in set, checked by the
adherence classifier (``adherence.py``). Same arguments, same machine, same thread count: same
numbers (EffNet features are computed in fixed batches of 16).

Cost (measured on the 2-core dev machine while other jobs kept both cores busy, load ~3-5): 1,000
samples of 32 px against the built-in set (100 held-out, 1,916 training-side images) take ~45-50 s
beyond sampling with 1 thread: EffNet features ~30 s (3,016 images), metrics ~13 s (mostly the
pixel nearest-neighbour search for memorisation), floor ~3 s, adherence < 1 s. With 2 threads on the
same busy machine the features alone took 292 s (OpenMP stalls), hence metrics default to 1 thread.
Memory stays well under 2 GB at 10,000 samples (features are float64 N x 1280 = 100 MB; pixel
searches run in blocks of 256 rows).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .. import __version__
from ..config import ConfigError, DataConfig, SampleConfig
from ..data.dataset import DataError, ImageSet, group_animations

MIN_IMAGES = 50
SEEDED_FRACTION = 0.2
SEEDED_MAX_REFERENCE = 2000
SPLIT_SEED = 0
BATCH_SEED_STRIDE = 1_000_003
MAX_N = 50_000
# Data-config fields that change which images load (hflip / strict do not).
_IMAGE_FIELDS = ("source", "size", "resize_filter", "fit", "channels", "builtin_seed", "builtin_characters")


class EvalError(DataError):
    """The evaluation cannot mean anything with these inputs (sizes, counts); the message says why."""


@contextlib.contextmanager
def _threads(n: int | None):
    prev = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(prev)


def _channels_name(c: int) -> str:
    return {3: "RGB", 4: "RGBA"}.get(c, f"{c}-channel")


# --------------------------------------------------------------------------------------------------
# Data and split
# --------------------------------------------------------------------------------------------------

def resolve_data(model, data) -> tuple[ImageSet, dict, bool]:
    """(images, description, is the run's own training data) for ``data``: None (the run's data),
    "builtin" / a folder path, a DataConfig, or an ImageSet."""
    from ..data import load_dataset
    run_data = model.config.data
    if isinstance(data, ImageSet):
        desc = {"source": "ImageSet (passed in)", "builtin": _looks_builtin(data)}
        return data, desc, False
    if data is None:
        cfg = run_data
    elif isinstance(data, (str, Path)):
        if str(data) == run_data.source or (str(data) != "builtin" and run_data.source != "builtin"
                                            and Path(str(data)).resolve() == Path(run_data.source).resolve()):
            cfg = run_data
        else:
            if str(data) != "builtin" and not Path(str(data)).exists():
                raise ConfigError(f"`--data {data}`: no such folder (use 'builtin' for the built-in sprite set)")
            cfg = DataConfig(source=str(data), size=model.config.model.image_size or run_data.size,
                             resize_filter=run_data.resize_filter, fit=run_data.fit)
    elif isinstance(data, DataConfig):
        cfg = data
    else:
        raise TypeError(f"data must be None, 'builtin', a folder, a DataConfig or an ImageSet, got {type(data).__name__}")
    same = all(getattr(cfg, f) == getattr(run_data, f) for f in _IMAGE_FIELDS)
    images = load_dataset(cfg)
    desc = {"source": cfg.source, "config": dataclasses.asdict(cfg), "builtin": cfg.source == "builtin"}
    return images, desc, same


def _looks_builtin(data: ImageSet) -> bool:
    return len(data) > 0 and all(str(p).startswith("builtin:") for p in data.paths[:50]) and \
        all(k in data.meta[0] for k in ("archetype", "palette", "accessory", "action", "direction"))


def check_compatible(model, data: ImageSet, what: str):
    c, s = model.shape[0], model.shape[1]
    if data.channels != c or data.size != s or data.images.shape[-2] != s:
        h, w = data.images.shape[-2:]
        raise EvalError(f"the data ({what}) holds {_channels_name(data.channels)} images of {w}x{h} px but the model "
                        f"({model.path}) makes {_channels_name(c)} images of {s}x{s} px; evaluate against data of the "
                        f"model's size and channels (e.g. the data it was trained on)")


def _seeded_split(data: ImageSet) -> tuple[list[int], list[int]]:
    groups = group_animations(data)
    covered = {i for g in groups for i in g}
    groups += [[i] for i in range(len(data)) if i not in covered]
    n = len(data)
    target = min(max(MIN_IMAGES, round(SEEDED_FRACTION * n)), SEEDED_MAX_REFERENCE, n - MIN_IMAGES)
    perm = torch.randperm(len(groups), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    held: list[int] = []
    for gi in perm:
        if len(held) >= target:
            break
        held += groups[gi]
    held_set = set(held)
    return [i for i in range(n) if i not in held_set], sorted(held)


def split_reference(model, data: ImageSet, heldout: str, same_data: bool) -> tuple[list[int], list[int], dict]:
    """(training-side indices, held-out indices, description)."""
    if heldout not in ("auto", "run", "seeded"):
        raise ConfigError(f"`--heldout {heldout}` must be auto, run or seeded")
    method = ("run" if same_data else "seeded") if heldout == "auto" else heldout
    if method == "run":
        from ..training.loop import split_validation
        t = model.config.train
        train_idx, held_idx = split_validation(data, t.val_fraction, t.seed, by_animation=bool(t.frames))
        desc = {"method": "run", "val_fraction": t.val_fraction, "split_seed": t.seed,
                "by_animation": bool(t.frames), "unseen": same_data or heldout == "run",
                "note": "the run's own validation split: the model never trained on these images"}
        if len(held_idx) < MIN_IMAGES:
            raise EvalError(f"FD, KID and precision/recall need at least {MIN_IMAGES} held-out real images; the run's "
                            f"own held-out split has {len(held_idx)} of {len(data)} images (train.val_fraction="
                            f"{t.val_fraction}). Evaluate against other data of the same kind (--data DIR) with at "
                            f"least {2 * MIN_IMAGES} images, or use --heldout seeded (then 'held out' is not unseen)")
    else:
        if len(data) < 2 * MIN_IMAGES:
            raise EvalError(f"FD, KID and precision/recall need at least {MIN_IMAGES} held-out real images plus "
                            f"{MIN_IMAGES} training-side images for the real-vs-real floor, i.e. at least "
                            f"{2 * MIN_IMAGES} images; the data has {len(data)}")
        train_idx, held_idx = _seeded_split(data)
        desc = {"method": "seeded", "fraction": SEEDED_FRACTION, "split_seed": SPLIT_SEED,
                "by_animation": any("animation" in m for m in data.meta[:1]),
                "unseen": not same_data,
                "note": ("fixed seeded split of data the model did not train on" if not same_data else
                         "fixed seeded split of the model's OWN training data: the held-out images were seen "
                         "in training, so the metrics flatter the model")}
    if len(train_idx) < MIN_IMAGES:
        raise EvalError(f"the real-vs-real floor needs at least {MIN_IMAGES} training-side real images; "
                        f"the split leaves {len(train_idx)} (of {len(data)})")
    desc.update(n_reference=len(held_idx), n_train_side=len(train_idx), n_images=len(data))
    return train_idx, held_idx, desc


# --------------------------------------------------------------------------------------------------
# What each sample asks for
# --------------------------------------------------------------------------------------------------

BUILTIN_ATTRIBUTES = ("archetype", "palette", "accessory", "action", "direction")


def prompt_requests(prompts: list[str], data: ImageSet | None, builtin: bool, with_labels: bool):
    """What each prompt asks for: the attributes (built-in set) and the class label of the first image
    of `data` with that caption -> (labels tensor or None, requested dicts)."""
    first: dict = {}
    for i, c in enumerate(data.captions if data is not None else []):
        first.setdefault(c, i)
    requested = []
    for p in prompts:
        r = {"prompt": p}
        j = first.get(p)
        if builtin and j is not None:
            r.update({k: data.meta[j][k] for k in BUILTIN_ATTRIBUTES if k in data.meta[j]})
        requested.append(r)
    labels = None
    if with_labels:
        labels = torch.tensor([int(data.labels[first[p]]) if p in first else -1 for p in prompts], dtype=torch.long)
    return labels, requested


def combination_prompts(combos: list[tuple[str, str, str]], n: int, seed: int = SPLIT_SEED) -> list[str]:
    """n captions cycling through the (archetype, palette, accessory) `combos` in a seeded order, each
    with a seeded action and direction."""
    from types import SimpleNamespace

    from ..data.builtin import ACTIONS, DIRECTIONS, caption_for
    g = torch.Generator().manual_seed(seed)
    combos = [combos[i] for i in torch.randperm(len(combos), generator=g).tolist()]
    out = []
    for i in range(n):
        a, p, x = combos[i % len(combos)]
        action = ACTIONS[int(torch.randint(len(ACTIONS), (1,), generator=g))]
        direction = DIRECTIONS[int(torch.randint(len(DIRECTIONS), (1,), generator=g))]
        out.append(caption_for(SimpleNamespace(archetype=a, palette=p, accessory=x), action, direction))
    return out


def novel_prompts(data: ImageSet, n: int, seed: int = SPLIT_SEED) -> list[str]:
    """Captions of built-in characters that are NOT in `data`: every (archetype, palette, accessory)
    combination no training character has, with a seeded action and direction each, in a seeded
    order. Asking an attribute model for these measures compositional generalisation (a colour with
    an accessory never seen together)."""
    from ..data.builtin import ACCESSORIES, ARCHETYPES, PALETTES, _SLIME_ACCESSORIES
    seen = {(m.get("archetype"), m.get("palette"), m.get("accessory")) for m in data.meta}
    combos = [(a, p, x) for a in ARCHETYPES for p in PALETTES
              for x in (_SLIME_ACCESSORIES if a == "slime" else ACCESSORIES) if (a, p, x) not in seen]
    return combination_prompts(combos, n, seed)


def seen_prompts(data: ImageSet, n: int, seed: int = SPLIT_SEED) -> list[str]:
    """Like `novel_prompts`, but for the combinations `data` has (the model's training characters)."""
    return combination_prompts(sorted({(m["archetype"], m["palette"], m["accessory"]) for m in data.meta}), n, seed)


def plan_requests(model, data: ImageSet, n: int, sc: SampleConfig, builtin: bool, novel: bool = False):
    """Per-sample labels (tensor or None), prompts (list or None), and requested dicts. `novel`
    (attribute models on the built-in set): ask for attribute combinations the data does not have."""
    from ..data.builtin import ARCHETYPES
    mc = model.config.model
    labels = prompts = None
    requested: list[dict] = [{} for _ in range(n)]
    names = list(model.class_names)
    if mc.text_encoder:
        if sc.prompt:
            caps = [sc.prompt]
        else:
            caps = sorted({c for c in data.captions if c})
            if not caps:
                raise EvalError("this is a text-conditional model but the data has no captions to prompt it with")
            perm = torch.randperm(len(caps), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
            caps = [caps[i] for i in perm]
        prompts = [caps[i % len(caps)] for i in range(n)]
        labels, requested = prompt_requests(prompts, data, builtin, with_labels=bool(mc.num_classes))
    elif mc.attributes:  # requests in words, read back into attributes by the model (and its class, if any)
        if sc.prompt:
            caps = [sc.prompt]
        elif novel:
            caps = novel_prompts(data, n)
        else:
            caps = sorted({c for c in data.captions if c})
            perm = torch.randperm(len(caps), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
            caps = [caps[i] for i in perm]
        if not caps:
            raise EvalError("this is an attribute model but the data has no captions to build requests from")
        prompts = [caps[i % len(caps)] for i in range(n)]
        vocab = model.attribute_values
        for i, p in enumerate(prompts):
            row = model.attribute_row(p).tolist()
            requested[i] = {"prompt": p, **{k: vocab[k][j] for k, j in zip(vocab, row) if j >= 0}}
        if mc.num_classes:
            from ..pipeline import _classes_in
            labels = _classes_in(model, prompts)
    elif mc.num_classes:
        from ..pipeline import class_index
        if sc.class_name is not None:
            labels = torch.full((n,), class_index(model, sc.class_name), dtype=torch.long)
        else:
            labels = torch.arange(n) % mc.num_classes
    if labels is not None:
        for i, lab in enumerate(labels.tolist()):
            if lab >= 0:
                name = names[lab] if lab < len(names) else str(lab)
                requested[i]["class"] = name
                if builtin and name in ARCHETYPES:
                    requested[i].setdefault("archetype", name)
    return labels, prompts, requested


def _generate(model, sc: SampleConfig, n: int, batch_size: int, labels, prompts, progress=None) -> torch.Tensor:
    from ..pipeline import generate
    out = []
    for b, start in enumerate(range(0, n, batch_size)):
        stop = min(n, start + batch_size)
        bsc = dataclasses.replace(sc, n=stop - start, seed=sc.seed + BATCH_SEED_STRIDE * b, frames=1)
        out.append(generate(model, bsc, labels=None if labels is None else labels[start:stop],
                            prompts=None if prompts is None else prompts[start:stop]))
        if progress:
            progress(stop, n)
    return torch.cat(out)


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------

def _row(label, model, floor, better, group, note=None, **extra):
    r = {"label": label, "model": model, "floor": floor, "better": better, "group": group}
    if note:
        r["note"] = note
    r.update(extra)
    return r


def frechet_distance_features(f1, f2) -> float:
    """``metrics.fd_from_features`` (same value up to float round-off), fast when a set is smaller
    than the feature dimension.

    With centred, scaled features A = (X1 - mu1) / sqrt(n1 - 1) and B likewise, S1 = A^T A and
    S2 = B^T B, so ``Tr (S1 S2)^{1/2}`` = sum of the singular values of the n1 x n2 matrix A B^T
    (the nonzero eigenvalues of S1 S2 are those of (A B^T)(A B^T)^T). For 1,000 samples against 100
    held-out images that is an SVD of a 1000 x 100 matrix instead of two 1280 x 1280
    eigendecompositions (~15 s -> ~0.1 s on one busy core). With both sets larger than the
    dimension the original route is used.
    """
    from . import metrics as M
    x1 = np.asarray(f1, dtype=np.float64)
    x2 = np.asarray(f2, dtype=np.float64)
    if min(len(x1), len(x2)) > x1.shape[1] or x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1] \
            or min(len(x1), len(x2)) < 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return M.fd_from_features(x1, x2)
    mu1, mu2 = x1.mean(0), x2.mean(0)
    a = (x1 - mu1) / math.sqrt(len(x1) - 1)
    b = (x2 - mu2) / math.sqrt(len(x2) - 1)
    tr_covmean = float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
    diff = mu1 - mu2
    fd = float(diff @ diff + (a * a).sum() + (b * b).sum() - 2.0 * tr_covmean)
    return max(fd, 0.0)


def distribution_metrics(gen_u8, ref_u8, gen_f, ref_f, seed: int) -> dict:
    """FD-EffNet, KID-EffNet, precision/recall, SWD per level, alpha coverage of one set vs the reference."""
    from . import metrics as M
    fd = frechet_distance_features(gen_f, ref_f)   # rank-deficient FD: noted in the report, no warning
    k = M.kid(gen_f, ref_f, subsets=100, subset_size=1000, seed=seed)
    pr = M.precision_recall(ref_f, gen_f, k=3)
    swd = M.swd_laplacian(gen_u8, ref_u8, seed=seed)
    alpha = M.alpha_coverage_iou(gen_u8, ref_u8)
    return {"fd": fd, "kid": k, "pr": pr, "swd": swd, "alpha": alpha}


_CALIBRATION_KEYS = ("train_px_nn_dist_median", "train_px_near_dup_share", "train_feat_nn_dist_median")


def memorisation_metrics(gen_u8, train_u8, gen_f, train_f, seed: int, calibrate: bool = True) -> dict:
    """``metrics.memorisation`` on pixels and EffNet features. ``calibrate=False`` skips the
    training-set self-calibration (the same for the model and the floor line; computed once)."""
    from . import metrics as M
    out = M.memorisation(gen_f, train_f, gen_px=gen_u8, train_px=train_u8, seed=seed,
                         calibration_samples=512 if calibrate else 2)
    if not calibrate:
        for k in _CALIBRATION_KEYS:
            out.pop(k, None)
    return out


def metric_rows(model_d: dict, floor_d: dict, mem: dict, mem_floor: dict) -> dict:
    rows = {
        "fd_effnet": _row("FD-EffNet", model_d["fd"], floor_d["fd"], "lower", "distribution",
                          "Fréchet distance on EfficientNet-Lite0 features (not Inception FID)"),
        "kid_effnet": _row("KID-EffNet", model_d["kid"]["mean"], floor_d["kid"]["mean"], "lower", "distribution",
                           "unbiased MMD² (cubic kernel) on EffNet features, mean over 100 subsets",
                           model_std=model_d["kid"]["std"], floor_std=floor_d["kid"]["std"],
                           subset_size=model_d["kid"]["subset_size"]),
        "precision": _row("precision", model_d["pr"]["precision"], floor_d["pr"]["precision"], "higher", "distribution",
                          "share of samples inside the real manifold (k=3, EffNet features): fidelity"),
        "recall": _row("recall", model_d["pr"]["recall"], floor_d["pr"]["recall"], "higher", "distribution",
                       "share of held-out real images inside the samples' manifold: coverage"),
    }
    for key in model_d["swd"]:
        name = "SWD mean" if key == "mean" else f"SWD {key}"
        rows[f"swd_{key}"] = _row(name, model_d["swd"][key], floor_d["swd"][key], "lower", "swd",
                                  "sliced Wasserstein distance of Laplacian-pyramid 7x7 patches (x1e3 in Karras et al.)"
                                  if key == "mean" else None)
    rows["near_copy_share"] = _row("near-copy share (pixels)", mem["px_near_copy_share"], mem_floor["px_near_copy_share"],
                                   "lower", "memorisation",
                                   f"nearest training image within {mem['pixel_threshold'] * 255:.0f}/255 mean abs. "
                                   "difference over the sprite; floor: held-out real images vs the training side")
    rows["feat_near_copy_share"] = _row("near-copy share (EffNet)", mem["feat_near_copy_share"],
                                        mem_floor["feat_near_copy_share"], "lower", "memorisation",
                                        f"EffNet distance <= {mem['feature_ratio']} x the neighbour's own sibling distance")
    rows["px_nn_dist_median"] = _row("median pixel distance to nearest training image",
                                     float(np.median(mem["px_nn_dist"])), float(np.median(mem_floor["px_nn_dist"])),
                                     "closer", "memorisation", "per channel value in [0, 1]; far below the floor = copying")
    a, fa = model_d["alpha"], floor_d["alpha"]
    if a is not None and fa is not None:
        rows["alpha_iou_mean"] = _row("alpha IoU with nearest real silhouette", a["iou_mean"], fa["iou_mean"],
                                      "higher", "alpha")
        rows["alpha_coverage_w1"] = _row("coverage W1 distance", a["coverage_w1"], fa["coverage_w1"], "lower", "alpha",
                                         "Wasserstein-1 between the opaque-area distributions")
        rows["alpha_coverage_mean"] = _row("mean opaque coverage", a["gen_coverage"]["mean"],
                                           fa["gen_coverage"]["mean"], "closer", "alpha",
                                           ref=a["ref_coverage"]["mean"])
        rows["soft_alpha_share"] = _row("soft-alpha pixel share", a["gen_soft_alpha_share"],
                                        fa["gen_soft_alpha_share"], "closer", "alpha",
                                        "pixels with 8 < alpha < 247 (haze)", ref=a["ref_soft_alpha_share"])
    return rows


def _alpha_summary(a: dict | None) -> dict | None:
    if a is None:
        return None
    return {k: v for k, v in a.items() if k not in ("iou", "iou_nn_idx", "gen_coverage_values")}


def _mem_summary(m: dict) -> dict:
    out = {k: v for k, v in m.items() if not isinstance(v, np.ndarray)}
    out["px_nn_dist_quantiles"] = {f"p{q:02d}": float(np.quantile(m["px_nn_dist"], q / 100)) for q in (1, 5, 50)}
    return out


# --------------------------------------------------------------------------------------------------
# The whole evaluation
# --------------------------------------------------------------------------------------------------

def evaluate(model_path, data=None, *, n: int = 1000, sample_cfg: SampleConfig | None = None, seed: int = 0,
             out_dir: str | Path | None = None, heldout: str = "auto", overwrite: bool = False, batch_size: int = 64,
             device: str = "cpu", threads: int | None = None, adherence_classifier=None,
             samples_override: torch.Tensor | Callable | None = None, log: Callable | None = None,
             progress: Callable | None = None, requests: str = "data") -> dict:
    """Evaluate a trained model; returns the report dict (and writes it to ``out_dir`` if given).

    Args:
        model_path: run folder, checkpoint / weights file, or "builtin".
        data: reference data: None (the run's own training data), "builtin", an image folder, a
            ``DataConfig`` or an ``ImageSet``.
        n: number of samples to generate (>= 50).
        sample_cfg: sampler, steps, cfg, rho, negative prompt (and optionally class_name / prompt to
            request one thing for every sample); its ``n`` and ``seed`` are ignored (use ``n`` /
            ``seed``). Default ``SampleConfig()`` = dpmpp-2m, 20 steps, cfg 1.
        seed: sampling seed (batch b uses ``seed + 1_000_003 * b``) and metric seed (KID subsets, SWD).
        heldout: "auto" | "run" | "seeded" (see the module docstring).
        out_dir: folder for report.json / report.md / pictures; must be empty unless ``overwrite``.
        samples_override: skip sampling and evaluate these uint8 [n, C, H, W] images instead, or a
            callable ``(n, requested) -> images`` (tests, or evaluating images made elsewhere).
        adherence_classifier: an ``adherence.AttributeClassifier`` (default: the cached default one).
        threads: torch threads for the whole evaluation. None (default): sampling uses torch's setting and
            the metrics run on 1 thread (robust on a busy CPU: see the timing notes in the module docstring).
        log: callable(str) for progress messages; progress: callable(done, total) while sampling.
        requests: "data" (ask for what the data's captions / classes ask for) or "novel" (attribute
            models on the built-in set: attribute combinations no training character has).

    Raises ``CheckpointError`` (not a spriteforge checkpoint), ``EvalError`` (size / channel mismatch,
    too few images: before any sampling), ``ConfigError``, ``FileExistsError``.
    """
    from ..pipeline import load_model
    from ..runtime import pick_device
    log = log or (lambda msg: None)
    timing: dict[str, float] = {}
    t_all = time.perf_counter()

    def phase(name, t0):
        timing[name] = round(time.perf_counter() - t0, 3)

    if not MIN_IMAGES <= n <= MAX_N:
        raise ConfigError(f"`--n {n}`: FD, KID and precision/recall need at least {MIN_IMAGES} samples "
                          f"(and at most {MAX_N})")
    if batch_size < 1:
        raise ConfigError(f"`--batch-size {batch_size}` must be >= 1")
    sc = dataclasses.replace(sample_cfg or SampleConfig(), n=min(n, 4096), seed=seed, frames=1)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise FileExistsError(f"{out} already exists and is not empty; pass --overwrite to replace its report")

    with contextlib.ExitStack() as stack:
        stack.enter_context(_threads(threads))
        t0 = time.perf_counter()
        model = load_model(model_path, pick_device(device))
        phase("load_model", t0)

        t0 = time.perf_counter()
        data_set, data_desc, same_data = resolve_data(model, data)
        check_compatible(model, data_set, data_desc["source"])
        train_idx, held_idx, split_desc = split_reference(model, data_set, heldout, same_data)
        phase("load_data", t0)
        builtin = bool(data_desc.get("builtin"))
        if requests not in ("data", "novel"):
            raise ConfigError(f"`--requests {requests}` must be 'data' or 'novel'")
        if requests == "novel" and not (builtin and model.config.model.attributes):
            raise ConfigError("`--requests novel` needs an attribute model (model.attributes) and the built-in data")
        labels, prompts, requested = plan_requests(model, data_set, n, sc, builtin, novel=requests == "novel")

        # --- samples
        threads_used = {"sampling": torch.get_num_threads()}
        t0 = time.perf_counter()
        if samples_override is not None:
            gen = samples_override(n, requested) if callable(samples_override) else samples_override
            gen = torch.as_tensor(gen)
            if gen.dtype != torch.uint8 or tuple(gen.shape) != (n, *model.shape):
                raise ValueError(f"samples_override must be uint8 {(n, *model.shape)}, got {gen.dtype} {tuple(gen.shape)}")
            sampling = "override"
        else:
            log(f"sampling {n} images ({sc.sampler}, {sc.steps} steps, cfg {sc.cfg}) in batches of {batch_size}")
            gen = _generate(model, sc, n, batch_size, labels, prompts, progress)
            sampling = "model"
        phase("sampling", t0)

        # Metrics run on 1 thread unless `threads` says otherwise: on a 2-core machine busy with other work,
        # 2 threads made EffNet features ~10x slower (OpenMP stalls; 292 s vs 31 s for 3,000 sprites).
        stack.enter_context(_threads(None if threads else 1))
        threads_used["metrics"] = torch.get_num_threads()
        images = data_set.images
        ref = images[held_idx]
        train_side = images[train_idx]
        rng = np.random.default_rng(seed)
        m = min(n, len(train_idx))
        floor_pos = np.sort(rng.choice(len(train_idx), m, replace=False))
        floor_set = train_side[torch.from_numpy(floor_pos)]

        # --- features
        from .features import EffNetFeatures
        t0 = time.perf_counter()
        log(f"EffNet features of {n} samples, {len(held_idx)} held-out and {len(train_idx)} training-side images")
        fx = EffNetFeatures()
        gen_f = fx(gen)
        ref_f = fx(ref)
        train_f = fx(train_side)
        floor_f = train_f[floor_pos]
        phase("features", t0)

        # --- metrics: model line, floor line, memorisation
        t0 = time.perf_counter()
        log("metrics: FD, KID, precision/recall, SWD, alpha, memorisation")
        model_d = distribution_metrics(gen, ref, gen_f, ref_f, seed)
        mem = memorisation_metrics(gen, train_side, gen_f, train_f, seed)
        phase("metrics", t0)
        t0 = time.perf_counter()
        floor_d = distribution_metrics(floor_set, ref, floor_f, ref_f, seed)
        mem_floor = memorisation_metrics(ref, train_side, ref_f, train_f, seed, calibrate=False)
        phase("floor", t0)
        rows = metric_rows(model_d, floor_d, mem, mem_floor)

        # --- adherence (built-in set)
        adherence_sections: dict = {}
        notes_extra: list[str] = []
        adh_pred = None
        if builtin and model.shape[1] < 16:
            notes_extra.append("adherence skipped: the built-in attribute checker needs sprites of at least 16 px")
        elif builtin and any(any(k in r for k in BUILTIN_ATTRIBUTES) for r in requested):
            t0 = time.perf_counter()
            from .adherence import adherence as run_adherence, load_classifier
            with _threads(threads or 1):            # small ops: 1 thread is much faster on a busy CPU
                clf = adherence_classifier or load_classifier(size=model.shape[1], log=log)
                res = run_adherence(gen, requested, clf, details=True)
                attrs = list(res["accuracy"])
                real_req = [{k: data_set.meta[i][k] for k in attrs} for i in held_idx]
                floor_res = run_adherence(ref, real_req, clf, details=True)
            adh_pred = res["predicted"]
            adherence_sections["builtin_attributes"] = {
                "title": "Adherence: requested built-in attributes",
                "metrics": res["accuracy"], "floor": floor_res["accuracy"], "count": res["count"],
                "better": "higher",
                "classifier_heldout_accuracy": {k: clf.heldout_accuracy.get(k) for k in attrs},
                "classifier": clf.describe(),
                "notes": ["share of samples whose predicted attribute equals the requested one (only samples that "
                          "requested the attribute count)",
                          "real floor = the same checker on the held-out real sprites with their true attributes; "
                          "checker on unseen chars = the checker's own accuracy on characters it never trained on "
                          "(the ceiling a perfect model could reach)",
                          "palette: exact colour rule; archetype/accessory/action/direction: spriteforge's own CNN"],
            }
            phase("adherence", t0)

        # >>> animation section (frame-set models only; everything lives in animation.py) >>>
        if model.config.model.frame_attention and sampling != "model":
            notes_extra.append("animation section skipped: the samples were passed in (samples_override)")
        elif model.config.model.frame_attention:
            from .animation import DEFAULT_N_ANIMS, evaluate_animations, report_sections
            t0 = time.perf_counter()
            log(f"animation: {DEFAULT_N_ANIMS} animations of 8 frames (identity, loop seam, adherence)")
            try:
                anim = evaluate_animations(model, n_anims=DEFAULT_N_ANIMS, frames=8, sample_cfg=sc, seed=seed,
                                           data=data_set, feats=fx, classifier=adherence_classifier)
                adherence_sections.update(report_sections(anim))
            except ValueError as e:
                notes_extra.append(f"animation section skipped: {e}")
            phase("animation", t0)
        # <<< animation section <<<
        if builtin and "pose" in model.config.model.control and model.attribute_values:
            from .control import control_adherence, report_section
            t0 = time.perf_counter()
            log("control adherence: pose-driven animations vs the real frames")
            pool = held_idx if len(group_animations(data_set.subset(held_idx))) >= 8 else None
            with _threads(threads or 1):
                ctl = control_adherence(model, data_set, sample_cfg=sc, seed=seed, anim_pool=pool)
            adherence_sections.update(report_section(ctl))
            phase("control_adherence", t0)

    mc = model.config.model
    from ..models.unet import count_parameters
    notes = ["FD-EffNet and KID-EffNet use EfficientNet-Lite0 (ImageNet) features at 128 px: they are NOT "
             "comparable with published Inception-v3 FID/KID numbers, only with other FD-EffNet numbers from "
             "spriteforge at the same n and reference size.",
             f"The real-vs-real floor runs every metric on {m} training-side real images instead of the {n} samples, "
             f"against the same {len(held_idx)} held-out images: it is the score of a perfect model at these sizes."]
    if m < n:
        notes.append(f"The training side has only {m} images (< n = {n}): the floor uses fewer images than the "
                     "model line, so FD/KID floors are biased slightly upwards relative to the model line.")
    if min(n, len(held_idx)) <= 1280:
        notes.append(f"FD with {min(n, len(held_idx))} images per set in 1280 dimensions is rank-deficient: finite "
                     "and comparable with the floor, but strongly dependent on n and the reference size.")
    if not split_desc["unseen"]:
        notes.append("The held-out images are part of the model's training data (seeded split of the training "
                     "data): the metrics flatter the model. Evaluate on the run's own data with --heldout run, or on "
                     "other data.")
    notes += notes_extra
    if not split_desc["by_animation"] and any("animation" in mm for mm in data_set.meta[:1]):
        notes.append("The held-out split is per frame: held-out frames have sibling frames of the same animation on "
                     "the training side, so the floor (and its near-copy share) reflects near-identical neighbours; "
                     "runs trained with train.frames hold out whole animations.")
    if sampling == "override":
        notes.append("Samples were passed in (samples_override), not generated by the model.")

    report = {
        "format": "spriteforge.eval.v1",
        "model": {"path": str(model.path), "step": model.step, "preset": mc.preset,
                  "parameters": count_parameters(model.denoiser),
                  "channels": mc.in_channels, "size": mc.image_size, "class_names": list(model.class_names),
                  "conditioning": "text" if mc.text_encoder else ("attributes" if mc.attributes else
                                                                  ("class" if mc.num_classes else "none")),
                  "attributes": list(mc.attributes), "control": list(mc.control),
                  "frame_attention": bool(mc.frame_attention)},
        "data": {**data_desc, "n_images": len(data_set), "channels": data_set.channels, "size": data_set.size,
                 "split": split_desc},
        "sampling": {"source": sampling, "n": n, "sampler": sc.sampler, "steps": sc.steps, "cfg": sc.cfg,
                     "rho": sc.rho, "negative_prompt": sc.negative_prompt, "class_name": sc.class_name,
                     "prompt": sc.prompt, "seed": seed, "batch_size": batch_size,
                     "batch_seeds": f"seed + {BATCH_SEED_STRIDE} * batch_index", "device": device,
                     "requests": _request_summary(requested), "request_mode": requests},
        "floor": {"n_floor": m, "n_reference": len(held_idx), "floor_draw_seed": seed},
        "features": fx.config,
        "metrics": rows,
        "details": {"model": {"kid": model_d["kid"], "precision_recall": model_d["pr"], "swd": model_d["swd"],
                              "alpha": _alpha_summary(model_d["alpha"]), "memorisation": _mem_summary(mem)},
                    "floor": {"kid": floor_d["kid"], "precision_recall": floor_d["pr"], "swd": floor_d["swd"],
                              "alpha": _alpha_summary(floor_d["alpha"]), "memorisation": _mem_summary(mem_floor)}},
        "thresholds": {"min_images": MIN_IMAGES, "pixel_near_copy": mem["pixel_threshold"],
                       "pixel_near_copy_levels": mem["pixel_threshold"] * 255, "feature_ratio": mem["feature_ratio"]},
        "adherence": adherence_sections,
        "timing_seconds": timing,
        "versions": {"spriteforge": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": sys.version.split()[0], "platform": platform.platform(),
                     "torch_threads": threads_used},
        "notes": notes,
    }
    if out is not None:
        from .report import write_assets
        t0 = time.perf_counter()
        write_assets(out, samples=gen, real=ref, train_side=train_side, memorisation=mem,
                     per_sample=_per_sample(requested, mem, data_set, train_idx, adh_pred))
        phase("pictures", t0)
    timing["total"] = round(time.perf_counter() - t_all, 3)
    if out is not None:
        from .report import write_report
        write_report(report, out)
    return report


def _request_summary(requested: list[dict]) -> dict:
    keys = sorted({k for r in requested for k in r})
    out = {}
    for k in keys:
        vals = [r[k] for r in requested if k in r]
        out[k] = {"count": len(vals), "distinct": len(set(vals))}
    return out


def _per_sample(requested, mem, data: ImageSet, train_idx, adh_pred) -> list[dict]:
    rows = []
    for i, req in enumerate(requested):
        j = int(mem["px_nn_idx"][i])
        r = {"i": i, "requested": req, "px_nn_dist": float(mem["px_nn_dist"][i]),
             "px_nn": data.paths[train_idx[j]], "px_near_copy": bool(mem["px_near_copy"][i]),
             "feat_ratio": float(mem["feat_ratio"][i]) if math.isfinite(float(mem["feat_ratio"][i])) else None,
             "feat_nn": data.paths[train_idx[int(mem["feat_nn_idx"][i])]]}
        if adh_pred:
            r["predicted"] = {k: v[i] for k, v in adh_pred.items()}
        rows.append(r)
    return rows
