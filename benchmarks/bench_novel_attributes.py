#!/usr/bin/env python
"""Attribute accuracy on combinations a model never saw: compositional generalisation (conditioning issue).

For an attribute model of the built-in set: (archetype, palette, accessory) combinations that no
training character has (`evaluation.evaluate.novel_prompts`, seeded), each with a seeded action and
direction, asked for as an 8-frame animation through `animate()` (20 DPM++ steps) at every
requested setting (guidance scale x attribute guidance x pose template on/off). Each frame is
judged by the built-in adherence classifier (`evaluation.adherence`: palette by the renderer's
exact colours, the rest by a small CNN with its own held-out accuracy); an animation counts as
showing an attribute when the majority of its frames do.

The floor line: the renderer's own frames of the same requested characters, actions and
directions, judged the same way (what a perfect model would score with this classifier). With the
pose template the model is given the renderer's skeleton for every frame, so each generated frame
is also compared with the renderer's frame of the requested character in that pose: silhouette IoU
(alpha > 127), pose adherence on characters the model never saw.

    python benchmarks/bench_novel_attributes.py --model builtin --cfg 2,4
    python benchmarks/bench_novel_attributes.py --model runs/builtin_v2 --cfg 2 --attr-guidance 0,1
    python benchmarks/bench_novel_attributes.py --model builtin --n 96 --attr-guidance "0;action=2"   # guide the action only
    python benchmarks/bench_novel_attributes.py --model runs/builtin_v2 --requests seen   # the training combinations

`--requests seen` asks for (archetype, palette, accessory) combinations the model WAS trained on (a
seeded draw, with seeded actions and directions; results in novel_attributes_<name>_seen.json): the
gap between the two says how much of a miss is composition and how much is drawing the detail at all.

Each setting's line also lists the action mix-ups of its majority votes (`action_misreads`, e.g.
"attack->walk": 2), and so does the floor's: a mix-up the renderer's own frames share is the
classifier's, not the model's.

The characters a model was trained on come from its own config (`data.builtin_characters`), so
"unseen" always means unseen by that model. Prints one JSON line per setting, writes them all to
benchmarks/results/novel_attributes_<model name>.json and the first 12 animations of each setting
to a PNG beside it (rows: requests; the floor first).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from spriteforge.config import format_attr_guidance, parse_attr_guidance  # noqa: E402
from spriteforge.animation.animate import animate, template_character, template_frame_indices  # noqa: E402
from spriteforge.data.builtin import render_builtin, render_frame  # noqa: E402
from spriteforge.data.control import silhouette_iou  # noqa: E402
from spriteforge.evaluation.adherence import load_classifier  # noqa: E402
from spriteforge.evaluation.animation import animation_adherence  # noqa: E402
from spriteforge.evaluation.evaluate import novel_prompts, seen_prompts  # noqa: E402
from spriteforge.pipeline import load_model  # noqa: E402


def floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x]


def guidance_settings(s: str) -> list[float | str]:
    """--attr-guidance: weights separated by commas ("0,1"), or settings separated by semicolons when
    any names an attribute ("0;action=2;1,action=2"); each in `config.parse_attr_guidance`'s form."""
    parts = s.split(";") if (";" in s or "=" in s) else s.split(",")
    return [format_attr_guidance(parse_attr_guidance(x.strip())) for x in parts if x.strip()]


def real_animation(model, req: dict, frames: int) -> torch.Tensor:
    """The renderer's frames of the requested character, with the body, accessory and cycle frames the
    pose template uses (`template_poses`; the template character's own accessory where none was asked
    for), so that frame i is drawn in exactly the pose the model was given for frame i."""
    spec = dataclasses.replace(template_character(model, req["archetype"], req.get("accessory")), palette=req["palette"])
    imgs = [render_frame(spec, req["action"], f, req["direction"], 32)[0]
            for f in template_frame_indices(req["action"], frames)]
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)


def misreads(adh: dict, req: list[dict], attr: str = "action") -> dict[str, int]:
    """Which requested -> predicted mix-ups of `attr` the majority votes made: {"attack->walk": 3, ...}."""
    got = adh["predicted_majority"].get(attr, [])
    pairs = Counter(f"{r[attr]}->{g}" for r, g in zip(req, got) if attr in r and g != r[attr])
    return dict(sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0])))


def sheet(anims: list[torch.Tensor], rows: int = 12) -> np.ndarray:
    """Animations as rows of frames, composited on white, 2x nearest."""
    rows = [torch.cat(list(a), dim=2) for a in anims[:rows]]           # [4, 32, 32*F]
    x = torch.cat(rows, dim=1).permute(1, 2, 0).numpy()                 # [H, W, 4]
    bg = Image.new("RGBA", (x.shape[1], x.shape[0]), (255, 255, 255, 255))
    bg.alpha_composite(Image.fromarray(x, "RGBA"))
    return np.asarray(bg.convert("RGB").resize((x.shape[1] * 2, x.shape[0] * 2), Image.NEAREST))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="builtin")
    p.add_argument("--n", type=int, default=48, help="animations per setting")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=floats, default=[2.0])
    p.add_argument("--attr-guidance", type=guidance_settings, default=[0.0],
                   help='e.g. "0,1" or "0;action=2;1,action=2" (semicolons when a setting names attributes)')
    p.add_argument("--template", choices=("on", "off", "both"), default="on")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--requests", choices=("novel", "seen"), default="novel",
                   help="combinations the model never saw (default) or ones it was trained on")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    m = load_model(args.model)
    chars = m.config.data.builtin_characters
    if m.config.data.source != "builtin" or not m.attribute_values:
        sys.exit(f"{args.model}: not an attribute model of the built-in set")
    data = render_builtin(size=32, characters=chars, seed=m.config.data.builtin_seed)
    prompts = novel_prompts(data, args.n) if args.requests == "novel" else seen_prompts(data, args.n)
    vocab = m.attribute_values
    req = [{k: vocab[k][j] for k, j in zip(vocab, m.attribute_row(pr).tolist()) if j >= 0} for pr in prompts]
    clf = load_classifier(size=32)
    name = "builtin" if args.model == "builtin" else Path(args.model).name
    out = args.out or HERE / "results" / f"novel_attributes_{name}{'_seen' if args.requests == 'seen' else ''}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    floor_anims = [real_animation(m, r, args.frames) for r in req]
    floor = animation_adherence(floor_anims, req, clf)
    res = {"date": _dt.date.today().isoformat(), "model": str(m.path), "model_step": m.step,
           "training_characters": chars, "requests": args.requests, "n": args.n, "frames": args.frames, "steps": args.steps,
           "threads": args.threads, "load_average_start": round(os.getloadavg()[0], 2),
           "classifier_heldout_accuracy": floor["classifier_heldout_accuracy"],
           "command": "python benchmarks/bench_novel_attributes.py " + " ".join(sys.argv[1:]),
           "prompts": prompts,
           "floor_renderer": {"majority": floor["majority"], "frame": floor["frame"],
                              "action_misreads": misreads(floor, req)}, "settings": []}
    print(json.dumps({"floor_renderer": floor["majority"]}), flush=True)
    pictures = [sheet(floor_anims)]
    templates = {"on": [True], "off": [False], "both": [True, False]}[args.template]
    for cfg in args.cfg:
        for ag in args.attr_guidance:
            for template in templates:
                t = time.time()
                anims = [torch.from_numpy(np.stack(animate(m, pr, frames=args.frames, seed=i, steps=args.steps, cfg=cfg,
                                                           pose_template=template, attr_guidance=ag)))
                         .permute(0, 3, 1, 2) for i, pr in enumerate(prompts)]
                adh = animation_adherence(anims, req, clf)
                iou = [silhouette_iou(g[3].numpy() > 127, r[3].numpy() > 127)
                       for a, f in zip(anims, floor_anims) for g, r in zip(a, f)]
                row = {"cfg": cfg, "attr_guidance": ag, "pose_template": template,
                       "seconds_per_animation": round((time.time() - t) / len(prompts), 2),
                       "majority": adh["majority"], "frame": adh["frame"], "action_misreads": misreads(adh, req),
                       "silhouette_iou_vs_renderer": round(float(np.mean(iou)), 4)}
                res["settings"].append(row)
                print(json.dumps(row), flush=True)
                pictures.append(sheet(anims))
    res["load_average_end"] = round(os.getloadavg()[0], 2)
    out.write_text(json.dumps(res, indent=2))
    gap = np.full((pictures[0].shape[0], 16, 3), 255, np.uint8)
    Image.fromarray(np.concatenate([x for pic in pictures for x in (pic, gap)][:-1], axis=1)).save(out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
