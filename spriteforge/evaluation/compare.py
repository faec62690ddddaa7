"""`spriteforge compare`: one labelled grid of samples across settings, the way a person compares them.

Rows and columns each vary one setting (``sampler``, ``steps``, ``cfg``, ``seed`` or ``checkpoint``);
every cell draws ``n`` samples with the same seed(s), so the only difference between two cells is
the setting on their row / column. Settings that are not an axis take their single value (defaults:
dpmpp-2m, 20 steps, cfg 1, seed 0); giving several values for a non-axis setting is an error (it
would be silently ignored otherwise). With ``metrics=True`` every cell also gets, as text under it,
the SWD (cheap) and optionally FD-EffNet of ``metrics_n`` extra samples against the reference data.
Those are rough, small-sample numbers: comparable between the cells of one grid only. For real
numbers use ``spriteforge eval``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..config import SAMPLERS, ConfigError, SampleConfig

AXES = ("sampler", "steps", "cfg", "seed", "checkpoint")
AXIS_DEFAULTS = {"sampler": ["euler", "heun", "dpmpp-2m"], "steps": [5, 10, 20], "cfg": [1.0, 2.0, 4.0],
                 "seed": [0, 1, 2]}
FIXED_DEFAULTS = {"sampler": "dpmpp-2m", "steps": 20, "cfg": 1.0, "seed": 0}
PAD = 2          # pixels around each sample inside a cell
GAP = 6          # pixels between cells
TITLE_H = 18
COL_LABEL_H = 16
METRIC_H = 14
BACKGROUND = (250, 250, 250)
MAX_CELLS = 64


def parse_list(text: str | None, kind, flag: str) -> list | None:
    """"5,10,20" -> [5, 10, 20]; errors name the flag."""
    if text is None:
        return None
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise ConfigError(f"`{flag}` needs at least one value, e.g. {flag} 1,2")
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise ConfigError(f"`{flag} {text}`: expected comma-separated {kind.__name__} values") from None


def _label(axis: str, value) -> str:
    if axis == "checkpoint":
        return value["label"]
    if axis == "cfg":
        return f"cfg {value:g}"
    return f"{axis} {value}"


def _checkpoints(models: list, axis: bool) -> list[dict]:
    from ..pipeline import resolve_checkpoint
    from ..training.checkpoint import list_checkpoints, read_metadata
    paths = []
    if axis and len(models) == 1 and Path(str(models[0])).is_dir():
        paths = list_checkpoints(Path(str(models[0])))          # every kept checkpoint of one run
    if not paths:
        paths = [resolve_checkpoint(m) for m in models]
    out = []
    for p in paths:
        meta = read_metadata(p)
        run = p.parent.parent.name if p.parent.name == "checkpoints" else p.stem
        out.append({"path": p, "label": f"{run} @ {meta.get('step', '?')}", "step": int(meta.get("step", 0))})
    return out


def _font(size: int = 11):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:                                            # Pillow < 10.1
        return ImageFont.load_default()


def _text_w(draw, text: str, font) -> int:
    x0, _, x1, _ = draw.textbbox((0, 0), text, font=font)
    return int(x1 - x0)


def compare_grid(models: list, rows: str = "sampler", cols: str = "steps", samplers: list[str] | None = None,
                 steps: list[int] | None = None, cfgs: list[float] | None = None, seeds: list[int] | None = None,
                 n: int = 4, out: str | Path | None = "compare.png", overwrite: bool = False, metrics: bool = False,
                 fd: bool = False, data=None, metrics_n: int = 64, class_name: str | None = None,
                 prompt: str | None = None, device: str = "cpu", progress=None) -> dict:
    """Render the comparison grid (and save it to ``out`` unless None).

    ``data`` (reference for ``metrics``): "builtin", a folder, a DataConfig, an ImageSet, or None for
    the first checkpoint's own training data.

    Returns ``{"image": uint8 [H, W, 3], "path", "rows": [labels], "cols": [labels], "boxes": [[(x0, y0, x1,
    y1) per cell]] (the samples' area of every cell), "cells": [[{settings, metrics}]], "tile": px}``.
    """
    from PIL import Image, ImageDraw

    from ..images import atomic_save, make_grid
    from ..pipeline import generate, load_model
    from ..runtime import pick_device
    if rows not in AXES or cols not in AXES:
        raise ConfigError(f"`--rows {rows}` / `--cols {cols}`: each must be one of {', '.join(AXES)}")
    if rows == cols:
        raise ConfigError(f"`--rows` and `--cols` are both {rows}; pick two different settings")
    if not 1 <= n <= 64:
        raise ConfigError(f"`--n {n}` must be in [1, 64] (samples per cell)")
    if fd and not metrics:
        metrics = True
    if metrics and metrics_n < 8:
        raise ConfigError(f"`--metrics-n {metrics_n}` must be at least 8")
    out = Path(out) if out is not None else None
    if out is not None and out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
    given = {"sampler": samplers, "steps": steps, "cfg": cfgs, "seed": seeds}
    for s in samplers or []:
        if s not in SAMPLERS:
            raise ConfigError(f"`--samplers`: {s!r} is not a sampler; choose from {', '.join(SAMPLERS)}")
    values: dict[str, list] = {}
    for axis in ("sampler", "steps", "cfg", "seed"):
        flag = {"sampler": "--samplers", "steps": "--steps", "cfg": "--cfg", "seed": "--seeds"}[axis]
        if axis in (rows, cols):
            values[axis] = list(given[axis] or AXIS_DEFAULTS[axis])
        else:
            if given[axis] and len(given[axis]) > 1:
                raise ConfigError(f"`{flag}` has {len(given[axis])} values but {axis} is neither --rows nor --cols; "
                                  f"use --rows {axis} or --cols {axis}, or give one value")
            values[axis] = [given[axis][0] if given[axis] else FIXED_DEFAULTS[axis]]
    if not models:
        raise ConfigError("give at least one run folder or checkpoint")
    ck_axis = "checkpoint" in (rows, cols)
    if not ck_axis and len(models) > 1:
        raise ConfigError(f"{len(models)} models given but checkpoint is neither --rows nor --cols; "
                          "use --rows checkpoint or --cols checkpoint")
    values["checkpoint"] = _checkpoints(list(models), ck_axis)
    row_vals, col_vals = values[rows], values[cols]
    if len(row_vals) * len(col_vals) > MAX_CELLS:
        raise ConfigError(f"{len(row_vals)} x {len(col_vals)} cells is more than {MAX_CELLS}; compare fewer settings")

    dev = pick_device(device)
    loaded: dict[str, object] = {}

    def model_for(ck):
        key = str(ck["path"])
        if key not in loaded:
            loaded[key] = load_model(ck["path"], dev)
        return loaded[key]

    shapes = {tuple(model_for(ck).shape) for ck in values["checkpoint"]}
    if len(shapes) > 1:
        raise ConfigError(f"the checkpoints make images of different shapes {sorted(shapes)}; compare like with like")
    shape = shapes.pop()
    ref = None
    if metrics:
        from .evaluate import check_compatible, resolve_data
        ref_set, desc, _ = resolve_data(model_for(values["checkpoint"][0]), data)
        check_compatible(model_for(values["checkpoint"][0]), ref_set, desc["source"])
        k = min(len(ref_set), 1000)
        pick = torch.randperm(len(ref_set), generator=torch.Generator().manual_seed(0))[:k].sort().values
        ref = ref_set.images[pick]
        captions = sorted({c for c in ref_set.captions if c})
    else:
        captions = []

    def conditioning(model, count):
        mc = model.config.model
        labels = prompts = None
        if mc.num_classes and class_name is None and not mc.text_encoder:
            labels = torch.arange(count) % mc.num_classes
        if mc.text_encoder and prompt is None and captions:
            prompts = [captions[i % len(captions)] for i in range(count)]
        return labels, prompts

    fx = None
    ref_f = None
    if fd:
        from .features import EffNetFeatures
        fx = EffNetFeatures()
        ref_f = fx(ref)

    size = shape[-1]
    scale = max(1, 64 // size)
    tile = size * scale
    cells, tiles = [], []
    total = len(row_vals) * len(col_vals)
    for r, rv in enumerate(row_vals):
        cells.append([])
        tiles.append([])
        for c, cv in enumerate(col_vals):
            setting = {a: values[a][0] for a in AXES}
            setting[rows], setting[cols] = rv, cv
            model = model_for(setting["checkpoint"])
            sc = SampleConfig(sampler=setting["sampler"], steps=int(setting["steps"]), n=n, seed=int(setting["seed"]),
                              cfg=float(setting["cfg"]), class_name=class_name, prompt=prompt)
            labels, prompts = conditioning(model, n)
            imgs = generate(model, sc, labels=labels, prompts=prompts)
            tiles[r].append(make_grid(imgs, nrow=n, pad=PAD, scale=scale, pad_value=255))
            cell = {"settings": {**{a: setting[a] for a in ("sampler", "steps", "cfg", "seed")},
                                 "checkpoint": str(setting["checkpoint"]["path"])}, "metrics": {}}
            if metrics:
                from .metrics import swd_laplacian
                msc = dataclasses.replace(sc, n=metrics_n)
                ml, mp = conditioning(model, metrics_n)
                mimgs = generate(model, msc, labels=ml, prompts=mp)
                cell["metrics"]["swd"] = swd_laplacian(mimgs, ref, seed=0)["mean"]
                if fd:
                    from .evaluate import frechet_distance_features
                    cell["metrics"]["fd_effnet"] = frechet_distance_features(fx(mimgs), ref_f)
            cells[r].append(cell)
            if progress:
                progress(r * len(col_vals) + c + 1, total)

    # --- layout
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    font = _font()
    row_labels = [_label(rows, v) for v in row_vals]
    col_labels = [_label(cols, v) for v in col_vals]
    cell_w, cell_h = tiles[0][0].shape[1], tiles[0][0].shape[0]
    text_h = METRIC_H if metrics else 0
    label_w = max(_text_w(probe, t, font) for t in row_labels) + 2 * GAP
    width = label_w + len(col_vals) * (cell_w + GAP) + GAP
    height = TITLE_H + COL_LABEL_H + len(row_vals) * (cell_h + text_h + GAP) + GAP
    fixed = [f"{a} {values[a][0]['label'] if a == 'checkpoint' else values[a][0]}" for a in AXES if a not in (rows, cols)]
    title = f"rows: {rows}  |  columns: {cols}  |  " + ", ".join(fixed) + f"  |  {n} samples per cell"
    width = max(width, _text_w(probe, title, font) + 2 * GAP)
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((GAP, 3), title, fill=(0, 0, 0), font=font)
    boxes = []
    for c, t in enumerate(col_labels):
        x0 = label_w + GAP + c * (cell_w + GAP)
        draw.text((x0 + max(0, (cell_w - _text_w(probe, t, font)) // 2), TITLE_H + 1), t, fill=(0, 0, 0), font=font)
    for r, t in enumerate(row_labels):
        y0 = TITLE_H + COL_LABEL_H + GAP + r * (cell_h + text_h + GAP)
        draw.text((GAP, y0 + max(0, (cell_h - 12) // 2)), t, fill=(0, 0, 0), font=font)
        boxes.append([])
        for c in range(len(col_vals)):
            x0 = label_w + GAP + c * (cell_w + GAP)
            canvas.paste(Image.fromarray(tiles[r][c]), (x0, y0))
            boxes[r].append((x0, y0, x0 + cell_w, y0 + cell_h))
            if metrics:
                m = cells[r][c]["metrics"]
                text = f"SWD {m['swd']:.3g}" + (f"  FD {m['fd_effnet']:.1f}" if "fd_effnet" in m else "")
                draw.text((x0 + 2, y0 + cell_h + 1), text, fill=(60, 60, 60), font=font)
    image = np.asarray(canvas)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(canvas, out)
    return {"image": image, "path": str(out) if out else None, "rows": row_labels, "cols": col_labels,
            "boxes": boxes, "cells": cells, "tile": tile, "metrics_n": metrics_n if metrics else 0}
