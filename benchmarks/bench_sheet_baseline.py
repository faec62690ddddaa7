"""Frame-set model vs the whole-sheet baseline: which keeps one character across the frames?

Fine-tuning an image model on sprite sheets (the usual SDXL/LoRA route) makes a model that draws a
whole sheet as one picture; nothing ties the cells together except what the network learns. Our
frame-set model generates the frames as a set with attention across frames. This script trains
both on the same built-in data, with the same conditioning and the same wall-clock budget, then
asks both for the same animations and measures drift.

* frame-set: 32 px frames, `train.frames=4` (sets of 2-4 frames of one animation), preset tiny.
* whole-sheet: `--data builtin-sheets`, each animation as one 64 px image holding a 2x2 grid of
  4 frames (evenly spaced over the cycle), preset tiny with one more level (64->32->16->8, so it
  has self-attention at 8x8 like the frame model at 32 px; without it no cell could see another).
* both: attribute labels archetype, palette, accessory, action, direction (dropout 0.15 each,
  0.1 all at once), EDM loss, AdamW 2e-3, bf16 autocast, the same seed; trained at the same time,
  one thread each, so they share the machine's conditions.
* requests: `--n-anims` captions of the data in a seeded order ("a red knight with a shield
  walking right"), read into attributes; 20 DPM++ 2M steps, guidance 2, seeds per batch.
* metrics (spriteforge.evaluation.animation): identity distance (EffNet distance between the
  frames of one animation / between different real characters), palette distance (chi-square of
  colour histograms between frames), loop seam, motion, and the built-in adherence classifier's
  majority vote per animation; the floor: the same on the real animations the requests describe,
  4 frames picked the same way.

    python benchmarks/bench_sheet_baseline.py --minutes 12 --threads 1 --n-anims 48

Writes benchmarks/results/sheet_baseline.json and sheet_baseline.png (rows: real, frame-set,
whole-sheet for the first requests) and prints a table. Run on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from PIL import Image

from machine import cpu_name  # benchmarks/machine.py (scripts run from benchmarks/)

ROOT = Path(__file__).resolve().parent.parent
ATTRS = "archetype,palette,accessory,action,direction"
FRAMES = 4


def train_cmd(kind: str, run: Path, minutes: float, threads: int) -> list[str]:
    common = ["--out", str(run), "--minutes", str(minutes), "--overwrite", "--quiet",
              "--set", f"model.attributes={ATTRS}", "--set", f"train.threads={threads}", "--set", "train.sample_every=0"]
    if kind == "frames":
        return [sys.executable, "-m", "spriteforge.cli", "train", "--data", "builtin", *common,
                "--set", f"train.frames={FRAMES}"]
    return [sys.executable, "-m", "spriteforge.cli", "train", "--data", "builtin-sheets", "--size", "64", *common,
            "--set", "model.channel_mult=[1,2,2,2]", "--set", "train.batch_size=8"]


def slice_sheets(imgs: torch.Tensor) -> list[torch.Tensor]:
    """[N, C, 2h, 2w] 2x2 sheets -> N animations [4, C, h, w] in reading order."""
    h = imgs.shape[-1] // 2
    return [torch.stack([s[:, r * h:(r + 1) * h, c * h:(c + 1) * h] for r in range(2) for c in range(2)]) for s in imgs]


def even_frames(anim: torch.Tensor, k: int = FRAMES) -> torch.Tensor:
    return anim[[round(i * len(anim) / k) for i in range(k)]]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=12.0, help="training budget of EACH model (they train at once)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training process")
    ap.add_argument("--n-anims", type=int, default=48)
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "sheet_baseline")
    ap.add_argument("--skip-training", action="store_true", help="reuse the runs in --runs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(2)

    from spriteforge.data.builtin import render_builtin
    from spriteforge.evaluation.animation import (animation_adherence, identity_consistency, loop_seam,
                                                  matched_real_animations, real_animation_reference)
    from spriteforge.evaluation.adherence import load_classifier
    from spriteforge.evaluation.evaluate import plan_requests
    from spriteforge.config import SampleConfig
    from spriteforge.images import make_grid
    from spriteforge.pipeline import generate, load_model

    runs = {"frame_set": args.runs / "frames", "whole_sheet": args.runs / "sheets"}
    t0 = time.time()
    if not args.skip_training:
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        procs = [subprocess.Popen(train_cmd(k, runs[n], args.minutes, args.threads), cwd=ROOT, env=env)
                 for k, n in (("frames", "frame_set"), ("sheets", "whole_sheet"))]
        if any(p.wait() for p in procs):
            sys.exit("a training run failed")
    train_seconds = time.time() - t0

    data = render_builtin(size=32)
    frame_model, sheet_model = load_model(runs["frame_set"]), load_model(runs["whole_sheet"])
    _, prompts, requested = plan_requests(frame_model, data, args.n_anims, SampleConfig(), builtin=True)
    sc = SampleConfig(steps=20, cfg=2.0, sampler="dpmpp-2m")
    anims: dict[str, list[torch.Tensor]] = {"frame_set": [], "whole_sheet": []}
    for b in range(0, args.n_anims, 8):
        p = prompts[b:b + 8]
        bsc = SampleConfig(**{**sc.__dict__, "n": len(p), "seed": b})
        out = generate(frame_model, SampleConfig(**{**bsc.__dict__, "frames": FRAMES}), prompts=p)
        anims["frame_set"] += list(out.reshape(len(p), FRAMES, *out.shape[1:]))
        anims["whole_sheet"] += slice_sheets(generate(sheet_model, bsc, prompts=p))
    # seconds for ONE animation of 4 frames at 20 steps, guidance 2 (median of 3 warm runs)
    import statistics
    seconds = {}
    for name, model in (("frame_set", frame_model), ("whole_sheet", sheet_model)):
        frames = FRAMES if name == "frame_set" else 1
        one = SampleConfig(**{**sc.__dict__, "n": 1, "frames": frames, "prompt": prompts[0]})
        generate(model, one)
        ts = []
        for _ in range(3):
            t = time.perf_counter()
            generate(model, one)
            ts.append(time.perf_counter() - t)
        seconds[name] = round(statistics.median(ts), 3)
    real, truth = matched_real_animations(data, requested, seed=0)
    anims["real"] = [even_frames(a) for a in real]

    scale = real_animation_reference(size=32, n=32)["consistency"]["feature_scale"]
    clf = load_classifier(size=32)
    want = [{k: v for k, v in r.items() if k in ("archetype", "palette", "action", "direction")} for r in requested]
    results = {}
    for name, a in anims.items():
        cons = identity_consistency(a, scale=scale)
        seam = loop_seam(a)
        adh = animation_adherence(a, want, clf)
        results[name] = {"identity_distance_mean": cons["identity_distance_mean"],
                         "identity_distance_median": cons["identity_distance_median"],
                         "palette_distance_mean": cons["palette_distance_mean"],
                         "seam_ratio_median": seam["seam_ratio_median"], "motion_mean": seam["motion_mean"],
                         "adherence_majority": adh["majority"]}
    rows = [torch.cat(list(anims[k][:8]), dim=0) for k in ("real", "frame_set", "whole_sheet")]
    grid = make_grid(torch.cat(rows), nrow=8 * FRAMES, scale=3)
    args.out.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(args.out / "sheet_baseline.png")
    record = {"command": " ".join(["python", *sys.argv]), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": {"cpu": cpu_name(), "threads_per_training": args.threads, "torch": torch.__version__,
                          "load_avg_end": list(os.getloadavg())},
              "minutes_each": args.minutes, "training_wall_seconds": round(train_seconds, 1),
              "steps": {k: load_model(v).step for k, v in runs.items()}, "n_anims": args.n_anims,
              "sampling": {"sampler": sc.sampler, "steps": sc.steps, "cfg": sc.cfg, "frames": FRAMES},
              "identity_scale": scale, "results": results, "seconds_per_4_frame_animation": seconds,
              "drift_ratio_identity": results["whole_sheet"]["identity_distance_mean"] /
              results["frame_set"]["identity_distance_mean"],
              "drift_ratio_palette": results["whole_sheet"]["palette_distance_mean"] /
              results["frame_set"]["palette_distance_mean"]}
    (args.out / "sheet_baseline.json").write_text(json.dumps(record, indent=2))
    print("| model | identity dist. | palette dist. | seam (median) | motion | adherence (majority) |")
    print("|---|---|---|---|---|---|")
    for k, r in results.items():
        adh = ", ".join(f"{a} {v:.0%}" for a, v in r["adherence_majority"].items())
        print(f"| {k} | {r['identity_distance_mean']:.3f} | {r['palette_distance_mean']:.3f} | "
              f"{r['seam_ratio_median']:.2f} | {r['motion_mean']:.3f} | {adh} |")
    print(f"seconds per 4-frame animation (20 steps, cfg 2): {seconds}")
    print(f"whole-sheet / frame-set drift: identity {record['drift_ratio_identity']:.2f}x, "
          f"palette {record['drift_ratio_palette']:.2f}x")


if __name__ == "__main__":
    main()
