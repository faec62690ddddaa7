"""Does a sample show what was asked for? Attribute checks for the built-in sprite set.

The built-in set (``spriteforge.data.builtin``) knows the exact attributes of every frame:
archetype, palette, accessory, action and direction. To check that a generated sprite has the
attributes that were requested (a class label, a caption, later a pose or an animation), we ask
two checkers of our own; nothing is downloaded.

* **palette: an exact rule from the renderer's colours.** Every opaque pixel (alpha >= 128; all
  pixels of RGB images) is assigned to the nearest of the renderer's colours (the 8 palettes' 3-step
  ramps plus the fixed colours: outline, steel, bone, leather, wood, blade, trousers, skins, hair,
  gold trim, white) if it lies within 48 RGB units of it; the palette whose ramp gets the most pixels
  wins. 100 % correct on clean renders at 16 and 32 px and > 99 % with Gaussian pixel noise of
  15 levels; it needs no training and cannot overfit to characters. (A learned palette head reached
  only ~50 % on unseen characters in a first attempt: it keyed on character identity.)
* **archetype, accessory, action, direction: a small CNN we train ourselves** (``ClassifierConfig``):
  renders of ``make_characters(360, seed=1000)`` (a different seed than the default training data,
  ``data.builtin_seed = 0``), every frame (28 action frames x 3 directions) of each character; the last
  36 characters (six full archetype decks) are **held out entirely** and its accuracy on them is
  reported next to every adherence number. Input: RGBA composited over white (as the built-in set's
  RGB variant and the folder loader do), so RGB and RGBA samples look alike. Augmentation, so it
  tolerates generated sprites' imperfections: +-1 px shifts, Gaussian pixel noise up to 6 % and
  horizontal flips with "left" <-> "right" swapped (the set's "left" is the exact mirror of
  "right"). Network: 4 conv layers with batch norm (16-32-32-64 channels), two max-pools, a 4x4
  average pool (keeps where things are: direction), a 128-d trunk, one linear head per attribute
  (~0.2 M parameters); AdamW, one-cycle schedule, 12 epochs, batch 64, 1 thread.

Held-out accuracy at the default config, 32 px (unseen characters): archetype 1.0, accessory
0.995, action 0.97, direction 1.0 (the exact numbers of the cached model are in its metadata and
in every report). Some single frames are genuinely ambiguous (an idle frame and a walk's contact
frame can be nearly the same drawing), so read action adherence against that ceiling and against
the renderer's own frames (the benchmarks' floor line). Until 2026-11-22 the default rendered 16
random frames per character instead of all 84 and reached only ~0.87 on action and ~0.97 on
accessory: the renderer's own 8-frame animations then scored 93 % on action by majority vote, and
figures measured with it (marked in ``benchmarks/RESULTS.md``) understate action adherence.

The classifier trains once per configuration in a few minutes on a laptop CPU (measured: 227 s at
32 px on 1 thread with the other core busy) and is cached as
``~/.cache/spriteforge/adherence_<hash of the config>.safetensors`` (``SPRITEFORGE_CACHE`` moves the
folder), written atomically, with its config and held-out accuracy in the file's metadata.

``adherence(samples, requested)`` returns, per attribute, the share of samples whose predicted
attribute equals the requested one; only samples that requested an attribute count for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import builtin as _b
from ..data.builtin import ACCESSORIES, ACTION_FRAMES, ACTIONS, ARCHETYPES, DIRECTIONS, PALETTES

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "archetype": ARCHETYPES, "palette": PALETTES, "accessory": ACCESSORIES, "action": ACTIONS, "direction": DIRECTIONS,
}
CNN_ATTRIBUTES = ("archetype", "accessory", "action", "direction")
METHODS = {"palette": "rule: nearest renderer colour, majority of opaque pixels",
           **{k: "cnn: spriteforge attribute classifier" for k in CNN_ATTRIBUTES}}
FORMAT = "spriteforge.adherence.v1"
PALETTE_MAX_DIST = 48.0


# --------------------------------------------------------------------------------------------------
# Palette: exact rule from the renderer's colours
# --------------------------------------------------------------------------------------------------

def _palette_table() -> tuple[torch.Tensor, torch.Tensor]:
    cols, owner = [], []
    for i, name in enumerate(PALETTES):
        for c in _b._PALETTE_RAMPS[name]:
            cols.append(c)
            owner.append(i)
    fixed = [_b._OUTLINE, *_b._STEEL, *_b._BONE, *_b._LEATHER, _b._WOOD, _b._BLADE, *_b._TROUSERS, _b._MASK,
             _b._GOLD_TRIM, _b._WHITE, *_b._SKINS, *_b._HAIRS]
    cols += fixed
    owner += [-1] * len(fixed)
    return torch.tensor(cols, dtype=torch.float32), torch.tensor(owner)


def predict_palette(images_u8, max_dist: float = PALETTE_MAX_DIST, batch_size: int = 256) -> list[str | None]:
    """Palette name per image by majority vote of its pixels' nearest renderer colour (None: no vote)."""
    x = _as_u8(images_u8)
    cols, owner = _palette_table()
    out: list[str | None] = []
    for s in range(0, x.shape[0], batch_size):
        xb = x[s:s + batch_size]
        b, hw = xb.shape[0], xb.shape[-2] * xb.shape[-1]
        rgb = xb[:, :3].reshape(b, 3, hw).permute(0, 2, 1).reshape(-1, 3).float()
        visible = (xb[:, 3].reshape(-1) >= 128) if xb.shape[1] == 4 else torch.ones(b * hw, dtype=torch.bool)
        dmin, j = torch.cdist(rgb, cols).min(1)
        o = owner[j]
        ok = visible & (dmin < max_dist) & (o >= 0)
        img = torch.arange(b).repeat_interleave(hw)
        votes = torch.zeros(b * len(PALETTES), dtype=torch.long)
        votes.index_add_(0, (img * len(PALETTES) + o.clamp_min(0))[ok], torch.ones(int(ok.sum()), dtype=torch.long))
        votes = votes.view(b, len(PALETTES))
        best = votes.argmax(1)
        out += [PALETTES[int(k)] if int(v) else None for k, v in zip(best, votes.sum(1))]
    return out


# --------------------------------------------------------------------------------------------------
# The CNN
# --------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ClassifierConfig:
    size: int = 32                 # sprite size in pixels (the classifier is trained per size)
    seed: int = 1000               # built-in seed of its characters (the default training data uses 0)
    characters: int = 360          # characters rendered with that seed
    frames_per_character: int = 84  # (action, frame, direction) renders per character; 84 = all of them
    heldout_characters: int = 36   # the last N characters are held out entirely (multiple of 6: whole decks)
    epochs: int = 12
    batch_size: int = 64
    lr: float = 3e-3
    width: int = 16                # channels of the first conv layer (x2, x4 deeper)
    noise: float = 0.06            # max std of the Gaussian pixel noise augmentation ([0, 1] units)
    train_seed: int = 0            # init / frame choice / shuffling / augmentation
    threads: int = 1               # torch threads while training (1 is fastest on a busy 2-core CPU)
    revision: int = 1              # bump when the code below changes what gets trained

    def key(self) -> str:
        d = dataclasses.asdict(self)
        d.pop("threads")           # does not change the result
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("SPRITEFORGE_CACHE") or Path.home() / ".cache" / "spriteforge")


class AttributeNet(nn.Module):
    def __init__(self, width: int = 16):
        super().__init__()
        w = width

        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*block(3, w), nn.MaxPool2d(2), *block(w, 2 * w), *block(2 * w, 2 * w),
                                      nn.MaxPool2d(2), *block(2 * w, 4 * w), nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.trunk = nn.Sequential(nn.Linear(64 * w, 128), nn.ReLU(inplace=True), nn.Dropout(0.2))
        self.heads = nn.ModuleDict({k: nn.Linear(128, len(ATTRIBUTES[k])) for k in CNN_ATTRIBUTES})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.trunk(self.features(x))
        return {name: head(h) for name, head in self.heads.items()}


def _as_u8(images_u8) -> torch.Tensor:
    x = images_u8 if isinstance(images_u8, torch.Tensor) else torch.as_tensor(np.asarray(images_u8))
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] not in (3, 4):
        raise ValueError(f"images must be uint8 [N, 3|4, H, W], got {x.dtype} {tuple(x.shape)}")
    return x


def prepare(images_u8) -> torch.Tensor:
    """uint8 [N, 3|4, H, W] -> float [N, 3, H, W] in [-1, 1], RGBA composited over white."""
    x = _as_u8(images_u8).float() / 255.0
    if x.shape[1] == 4:
        a = x[:, 3:4]
        x = x[:, :3] * a + (1.0 - a)
    return x * 2.0 - 1.0


def render_training_set(cfg: ClassifierConfig):
    """(uint8 images [N,4,H,W], meta list, held-out mask [N]) for the classifier's config."""
    specs = _b.make_characters(cfg.characters, cfg.seed)
    rng = random.Random(cfg.train_seed)
    combos = [(a, f, d) for a in ACTIONS for f in range(ACTION_FRAMES[a]) for d in DIRECTIONS]
    held_from = cfg.characters - cfg.heldout_characters
    imgs, meta, held = [], [], []
    for spec in specs:
        for a, f, d in rng.sample(combos, min(cfg.frames_per_character, len(combos))):
            im, _ = _b.render_frame(spec, a, f, d, cfg.size)
            imgs.append(im)
            meta.append({"character": spec.id, "archetype": spec.archetype, "palette": spec.palette,
                         "accessory": spec.accessory, "action": a, "direction": d, "frame": f})
            held.append(spec.id >= held_from)
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()
    return x, meta, torch.tensor(held)


def _targets(meta: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.tensor([ATTRIBUTES[k].index(m[k]) for m in meta]) for k in CNN_ATTRIBUTES}


def _augment(x: torch.Tensor, y: dict[str, torch.Tensor], cfg: ClassifierConfig, g: torch.Generator):
    n = x.shape[0]
    flip = torch.rand(n, generator=g) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    d = y["direction"]
    right, left = DIRECTIONS.index("right"), DIRECTIONS.index("left")
    d2 = d.clone()
    d2[flip & (d == right)] = left
    d2[flip & (d == left)] = right
    y = {**y, "direction": d2}
    pad = F.pad(x, (1, 1, 1, 1), value=1.0)                        # white background after prepare()
    dy, dx = torch.randint(0, 3, (2,), generator=g).tolist()
    x = pad[:, :, dy:dy + x.shape[2], dx:dx + x.shape[3]]
    std = torch.rand(n, 1, 1, 1, generator=g) * cfg.noise * 2.0    # [0,1] units -> [-1,1] units
    return x + std * torch.randn(x.shape, generator=g), y


@torch.no_grad()
def _predict(net: AttributeNet, x: torch.Tensor, batch: int = 256) -> dict[str, torch.Tensor]:
    net.eval()
    out: dict[str, list] = {k: [] for k in CNN_ATTRIBUTES}
    for s in range(0, x.shape[0], batch):
        for k, v in net(x[s:s + batch]).items():
            out[k].append(v.argmax(1))
    return {k: torch.cat(v) if v else torch.zeros(0, dtype=torch.long) for k, v in out.items()}


def _train(cfg: ClassifierConfig, log=None) -> tuple[AttributeNet, dict]:
    t0 = time.time()
    images, meta, held = render_training_set(cfg)
    x, y = prepare(images), _targets(meta)
    tr = torch.nonzero(~held).view(-1)
    te = torch.nonzero(held).view(-1)
    g = torch.Generator().manual_seed(cfg.train_seed)
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, cfg.threads))
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.train_seed)              # init + dropout, without touching the caller's RNG
            net = AttributeNet(cfg.width)
            opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
            steps_per_epoch = max(1, len(tr) // cfg.batch_size)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                        pct_start=0.15)
            for epoch in range(cfg.epochs):
                net.train()
                perm = tr[torch.randperm(len(tr), generator=g)]
                for s in range(steps_per_epoch):
                    idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                    xb, yb = _augment(x[idx], {k: v[idx] for k, v in y.items()}, cfg, g)
                    logits = net(xb)
                    loss = sum(F.cross_entropy(logits[k], yb[k]) for k in CNN_ATTRIBUTES)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                if log:
                    log(f"adherence classifier: epoch {epoch + 1}/{cfg.epochs}, loss {loss.item():.3f}")
            net.eval()
            info = {"train_images": len(tr), "heldout_images": len(te),
                    "heldout_characters": cfg.heldout_characters, "train_seconds": round(time.time() - t0, 1)}
            if len(te):
                pred = _predict(net, x[te])
                acc = {k: float((pred[k] == y[k][te]).float().mean()) for k in CNN_ATTRIBUTES}
                pal = predict_palette(images[te])
                acc["palette"] = float(np.mean([p == meta[i]["palette"] for p, i in zip(pal, te.tolist())]))
                info["heldout_accuracy"] = {k: acc[k] for k in ATTRIBUTES}
    finally:
        torch.set_num_threads(prev_threads)
    return net, info


class AttributeClassifier:
    """Palette rule + trained CNN, with the CNN's config and held-out accuracy. Use ``load_classifier``."""

    def __init__(self, net: AttributeNet, cfg: ClassifierConfig, info: dict, path: Path | None):
        self.net, self.cfg, self.info, self.path = net, cfg, info, path

    @property
    def heldout_accuracy(self) -> dict[str, float]:
        return dict(self.info.get("heldout_accuracy", {}))

    def predict(self, images_u8) -> dict[str, list[str | None]]:
        """Predicted attribute values per image: {attribute: [value, ...]} (palette None = no vote)."""
        u8 = _as_u8(images_u8)
        if tuple(u8.shape[-2:]) != (self.cfg.size, self.cfg.size):
            raise ValueError(f"the adherence classifier is trained on {self.cfg.size}px sprites, got "
                             f"{u8.shape[-1]}x{u8.shape[-2]}")
        pred = _predict(self.net, prepare(u8))
        out: dict[str, list] = {k: [ATTRIBUTES[k][i] for i in v.tolist()] for k, v in pred.items()}
        out["palette"] = predict_palette(u8)
        return {k: out[k] for k in ATTRIBUTES}

    def describe(self) -> dict:
        return {"methods": dict(METHODS), "config": dataclasses.asdict(self.cfg), "key": self.cfg.key(),
                "path": str(self.path) if self.path else None, "palette_max_rgb_distance": PALETTE_MAX_DIST,
                **self.info}


_LOADED: dict[str, AttributeClassifier] = {}
_LOCK = threading.Lock()


def classifier_path(cfg: ClassifierConfig, cache: Path | None = None) -> Path:
    return Path(cache or cache_dir()) / f"adherence_{cfg.key()}.safetensors"


def load_classifier(cfg: ClassifierConfig | None = None, size: int | None = None, log=None,
                    cache: Path | None = None) -> AttributeClassifier:
    """The classifier for ``cfg`` (or the default config at ``size`` px): from this process, from the
    disk cache, or trained now (under a minute) and then cached on disk."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    from ..training.checkpoint import atomic_save_file
    cfg = cfg or ClassifierConfig(size=size or 32)
    if size is not None and size != cfg.size:
        cfg = dataclasses.replace(cfg, size=size)
    if cfg.size < 16 or cfg.size % 8:
        raise ValueError(f"the adherence classifier needs sprites of at least 16 px (multiple of 8), got {cfg.size}")
    path = classifier_path(cfg, cache)
    with _LOCK:
        if str(path) in _LOADED:
            return _LOADED[str(path)]
        clf = None
        if path.is_file():
            try:
                with safe_open(str(path), "pt") as f:
                    meta = f.metadata() or {}
                if meta.get("format") == FORMAT and meta.get("key") == cfg.key():
                    net = AttributeNet(cfg.width)
                    net.load_state_dict(load_file(str(path)))
                    clf = AttributeClassifier(net.eval(), cfg, json.loads(meta["info"]), path)
            except Exception:  # a broken cache file is retrained, never trusted
                clf = None
        if clf is None:
            if log:
                log(f"training the adherence classifier once ({cfg.size}px, under a minute; cached at {path})")
            net, info = _train(cfg, log)
            atomic_save_file(net.state_dict(), path, {"format": FORMAT, "key": cfg.key(),
                                                      "config": json.dumps(dataclasses.asdict(cfg)),
                                                      "info": json.dumps(info)})
            clf = AttributeClassifier(net, cfg, info, path)
        _LOADED[str(path)] = clf
        return clf


def adherence(samples_u8, requested: list[dict], classifier: AttributeClassifier | None = None,
              details: bool = False) -> dict:
    """Share of samples showing the requested attributes: ``{attribute: accuracy}``.

    ``requested[i]`` holds the attributes sample ``i`` was asked for, e.g. ``{"archetype": "knight"}``
    for a class-conditional model or all five for a caption; other keys are ignored, and an
    attribute only counts over the samples that requested it (attributes nobody requested are
    absent). With ``details=True`` returns ``{"accuracy": {...}, "count": {...}, "predicted":
    {attribute: [value per sample]}}``.
    """
    x = _as_u8(samples_u8)
    if len(requested) != x.shape[0]:
        raise ValueError(f"{x.shape[0]} samples but {len(requested)} requests")
    for i, r in enumerate(requested):
        for name, vals in ATTRIBUTES.items():
            if r.get(name) is not None and r[name] not in vals:
                raise ValueError(f"sample {i} requested {name}={r[name]!r}; known values: {', '.join(vals)}")
    wanted = [k for k in ATTRIBUTES if any(r.get(k) is not None for r in requested)]
    acc, count, pred = {}, {}, {}
    if wanted:
        clf = classifier or load_classifier(size=int(x.shape[-1]))
        pred = clf.predict(x)
    for name in wanted:
        idx = [i for i, r in enumerate(requested) if r.get(name) is not None]
        acc[name] = float(np.mean([pred[name][i] == requested[i][name] for i in idx]))
        count[name] = len(idx)
    if details:
        return {"accuracy": acc, "count": count, "predicted": pred}
    return acc
