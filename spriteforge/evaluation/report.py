"""The evaluation report: report.json (plain JSON), report.md (tables + pictures), a terminal table.

Structure of the report dict (``evaluate.evaluate`` builds it):

* ``metrics``: ``{key: {"label", "model", "floor", "better", "group", "note"?, ...}}``, one row per
  number; ``floor`` is the real-vs-real floor (held-out real vs training-side real, same sizes);
  ``better`` is "lower", "higher" or "closer" (to the floor).
* ``adherence``: ``{name: section}``, where a section is ``{"title", "metrics": {key: value},
  "floor"?: {key: value}, "better"?, "notes"?: [...], ...}``. Any further entry that maps the same
  keys to numbers (e.g. ``"count"``, ``"classifier_heldout_accuracy"``) becomes one more column.
  Later capabilities (prompts, poses, animation) plug in by adding ``report["adherence"][name]``.
* everything else (model, data, sampling, floor, features, details, thresholds, timing_seconds,
  versions, notes) is described in ``report.md`` and kept verbatim in ``report.json``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

PICTURES = ("samples.png", "real.png", "closest_pairs.png")
GROUPS = (("distribution", "Distribution (EfficientNet-Lite0 features)"),
          ("swd", "Patch statistics (sliced Wasserstein, Laplacian pyramid)"),
          ("memorisation", "Memorisation"),
          ("alpha", "Transparency / silhouettes (RGBA)"))
_SHARE_KEYS = {"precision", "recall", "near_copy_share", "feat_near_copy_share", "soft_alpha_share",
               "alpha_coverage_mean", "alpha_iou_mean"}


def to_jsonable(x):
    """numpy / torch / Path values -> plain JSON types (non-finite floats -> None)."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if hasattr(x, "detach") and hasattr(x, "tolist"):          # torch tensor
        return to_jsonable(x.detach().cpu().tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (np.floating, float)):
        v = float(x)
        return v if math.isfinite(v) else None
    if isinstance(x, Path):
        return str(x)
    return x


def _atomic_write_text(path: Path, text: str):
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(report: dict, path: str | Path):
    _atomic_write_text(Path(path), json.dumps(to_jsonable(report), indent=1, ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------------------

def fmt(v, share: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if not math.isfinite(v):
        return "–"
    if share:
        return f"{100 * v:.1f} %"
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}" if abs(v) >= 1e-3 else f"{v:.2e}"


def _is_share(key: str) -> bool:
    return key in _SHARE_KEYS


_ARROW = {"lower": "↓ lower", "higher": "↑ higher", "closer": "≈ floor"}


def _adherence_columns(section: dict) -> list[str]:
    keys = set(section.get("metrics", {}))
    cols = ["metrics"] + (["floor"] if isinstance(section.get("floor"), dict) else [])
    for k, v in section.items():
        if k in ("metrics", "floor") or not isinstance(v, dict) or not v:
            continue
        if set(v) <= keys and all(isinstance(x, (int, float, type(None))) for x in v.values()):
            cols.append(k)
    return cols


def _col_title(c: str) -> str:
    return {"metrics": "model", "floor": "real floor", "count": "samples",
            "classifier_heldout_accuracy": "checker on unseen chars"}.get(c, c.replace("_", " "))


# --------------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------------

def render_markdown(report: dict) -> str:
    r = to_jsonable(report)
    m, d, s, fl = r["model"], r["data"], r["sampling"], r["floor"]
    sp = d["split"]
    L = [f"# spriteforge evaluation: `{Path(m['path']).name}` (step {m['step']})", ""]
    L.append(f"- **Model**: `{m['path']}`, preset {m['preset']}, {fmt(m.get('parameters'))} parameters, "
             f"{m['size']} px, {m['channels']} channels, conditioning: {m['conditioning']}")
    L.append(f"- **Samples**: n = {s['n']} ({s['source']}), sampler {s['sampler']}, {s['steps']} steps, cfg {s['cfg']}, "
             f"seed {s['seed']}, batches of {s['batch_size']} ({s['batch_seeds']})")
    req = ", ".join(f"{k} ({v['distinct']} distinct)" for k, v in s.get("requests", {}).items()) or "nothing (unconditional)"
    L.append(f"- **Requested per sample**: {req}")
    L.append(f"- **Reference**: {d['source']} ({d['n_images']} images, {d['size']} px); held out: "
             f"{sp['n_reference']} images by the {sp['method']} split ({sp['note']}); training side: {sp['n_train_side']}")
    L.append(f"- **Real-vs-real floor**: {fl['n_floor']} training-side real images vs the same {fl['n_reference']} "
             "held-out images, every metric computed the same way")
    L += ["", "> **FD-EffNet / KID-EffNet are not FID.** They use EfficientNet-Lite0 (ImageNet) features at "
          "128 px, not Inception-v3: compare them only with other spriteforge FD-EffNet numbers at the same n and "
          "reference size, never with published FID/KID values. Read every number against its real-vs-real "
          "floor: a perfect model scores about the floor.", ""]
    rows = r["metrics"]
    for group, title in GROUPS:
        keys = [k for k, v in rows.items() if v.get("group") == group]
        if not keys:
            continue
        L += [f"## {title}", "", "| metric | model | real-vs-real floor | better | |", "|---|---:|---:|---|---|"]
        for k in keys:
            v = rows[k]
            share = _is_share(k)
            model = fmt(v["model"], share)
            if k == "kid_effnet":
                model += f" ± {fmt(v.get('model_std'))}"
            floor = fmt(v["floor"], share) + (f" ± {fmt(v.get('floor_std'))}" if k == "kid_effnet" else "")
            note = v.get("note", "")
            if "ref" in v:
                note = (note + "; " if note else "") + f"held-out real: {fmt(v['ref'], share)}"
            L.append(f"| {v['label']} | {model} | {floor} | {_ARROW.get(v['better'], v['better'])} | {note} |")
        L.append("")
    for name, sec in r.get("adherence", {}).items():
        cols = _adherence_columns(sec)
        L += [f"## {sec.get('title', name)}", "",
              "| | " + " | ".join(_col_title(c) for c in cols) + " |", "|---|" + "---:|" * len(cols)]
        share_cols = {"metrics", "floor", "classifier_heldout_accuracy"}
        for key in sec.get("metrics", {}):
            cells = [fmt(sec[c].get(key), share=(c in share_cols and sec.get("better", "higher") == "higher"))
                     for c in cols]
            L.append(f"| {key} | " + " | ".join(cells) + " |")
        if sec.get("notes"):
            L += [""] + [f"- {note}" for note in sec["notes"]]
        L.append("")
    L += ["## Pictures", "", "Samples (first 64):", "", "![samples](samples.png)", "",
          "Held-out real images (first 64):", "", "![real](real.png)", "",
          "Closest pairs (sample | nearest training image), most similar first — look for copies:", "",
          "![closest pairs](closest_pairs.png)", ""]
    th = r.get("thresholds", {})
    L += ["## Settings", "",
          f"- Minimum images: {th.get('min_images')} held-out, {th.get('min_images')} training-side and "
          f"{th.get('min_images')} samples (FD/KID/precision-recall are noise below that)",
          f"- Near-copy: mean absolute difference over the sprite <= {fmt(th.get('pixel_near_copy_levels'))}/255 "
          f"per channel value; EffNet criterion: ratio <= {th.get('feature_ratio')}",
          f"- Features: `{json.dumps(r.get('features'))}`", ""]
    L += ["## Timing (seconds)", "", "| phase | s |", "|---|---:|"]
    L += [f"| {k} | {v:.1f} |" for k, v in r.get("timing_seconds", {}).items()]
    L += ["", "## Versions", "", "- " + ", ".join(f"{k} {v}" for k, v in r.get("versions", {}).items()), ""]
    if r.get("notes"):
        L += ["## Notes", ""] + [f"- {n}" for n in r["notes"]] + [""]
    return "\n".join(L)


def write_report(report: dict, out_dir: str | Path):
    """report.json and report.md into ``out_dir`` (created if needed)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(report, out / "report.json")
    _atomic_write_text(out / "report.md", render_markdown(report))


def write_assets(out_dir: str | Path, *, samples, real, train_side, memorisation: dict, per_sample: list[dict],
                 max_images: int = 64):
    """samples.png, real.png, closest_pairs.png and per_sample.jsonl into ``out_dir``."""
    from PIL import Image

    from ..images import atomic_save, label, make_grid
    from .metrics import closest_pairs_grid
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    size = int(samples.shape[-1])
    scale = max(1, 64 // size)
    for name, imgs, what in (("samples.png", samples, "samples"), ("real.png", real, "held-out real images")):
        k = min(max_images, imgs.shape[0])
        grid = make_grid(imgs[:k], nrow=8, scale=scale)
        atomic_save(Image.fromarray(label(grid, f"{k} of {imgs.shape[0]} {what}")), out / name)
    pairs = closest_pairs_grid(samples, train_side, memorisation["px_nn_idx"], memorisation["px_nn_dist"], k=16, cols=4)
    atomic_save(Image.fromarray(label(pairs, "closest: sample | nearest training image")), out / "closest_pairs.png")
    text = "".join(json.dumps(to_jsonable(row), ensure_ascii=False) + "\n" for row in per_sample)
    _atomic_write_text(out / "per_sample.jsonl", text)


# --------------------------------------------------------------------------------------------------
# Terminal
# --------------------------------------------------------------------------------------------------

def summary_table(report: dict):
    """A rich Table: metric | model | real-vs-real floor | better (adherence rows included)."""
    from rich.table import Table
    r = to_jsonable(report)
    s = r["sampling"]
    t = Table(title=f"spriteforge eval: n={s['n']} {s['sampler']} {s['steps']} steps cfg {s['cfg']} seed {s['seed']}"
                    f" | {r['floor']['n_reference']} held-out real")
    t.add_column("metric")
    t.add_column("model", justify="right")
    t.add_column("real-vs-real floor", justify="right")
    t.add_column("better")
    for k, v in r["metrics"].items():
        if k.startswith("swd_") and k != "swd_mean":
            continue                                   # per-level SWD: in report.md
        share = _is_share(k)
        t.add_row(v["label"], fmt(v["model"], share), fmt(v["floor"], share), _ARROW.get(v["better"], v["better"]))
    for name, sec in r.get("adherence", {}).items():
        floor = sec.get("floor") or {}
        per_metric = sec.get("better_per_metric") or {}
        for key, val in sec.get("metrics", {}).items():
            better = per_metric.get(key, sec.get("better", "higher"))
            share = better == "higher" or _is_share(key)  # accuracies are shares; distances/ratios are not
            t.add_row(f"{name} {key}", fmt(val, share), fmt(floor.get(key), share), _ARROW.get(better, better))
    return t


def print_summary(report: dict, console=None):
    from rich.console import Console
    console = console or Console()
    console.print(summary_table(report))
    console.print("FD-EffNet/KID-EffNet use EfficientNet-Lite0 features: not comparable with published FID.")
