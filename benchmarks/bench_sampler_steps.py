"""Quality against sampling cost for one trained model: FD-EffNet / KID / SWD at several step counts.

Answers two questions of the evaluation issue with one run:
  * are our 20-step samples within 10 % (FD-EffNet) of our own 200-step samples?
  * how many seconds per sample does it take to reach a given FD?
The real reference is the run's own held-out split (images the model never saw), with the
real-vs-real floor beside it.

    python benchmarks/bench_sampler_steps.py runs/demo --steps 5,10,20,50,200 --n 256
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from spriteforge.config import SampleConfig
from spriteforge.data import load_dataset
from spriteforge.evaluation.features import EffNetFeatures
from spriteforge.evaluation.metrics import fd_from_features, kid, swd_laplacian
from spriteforge.pipeline import generate, load_model
from spriteforge.training.loop import split_validation

from machine import cpu_name  # benchmarks/machine.py (scripts run from benchmarks/)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run folder (its data config and held-out split are used)")
    ap.add_argument("--steps", default="5,10,20,50,200")
    ap.add_argument("--sampler", default="dpmpp-2m")
    ap.add_argument("--n", type=int, default=256, help="samples per step count")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "sampler_steps.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model(args.run)
    cfg = model.config
    data = load_dataset(cfg.data)
    train_idx, val_idx = split_validation(data, cfg.train.val_fraction, cfg.train.seed, bool(cfg.train.frames))
    real_val = data.images[val_idx]
    real_train = data.images[train_idx][torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(0))[:args.n]]
    feats = EffNetFeatures()
    f_val, f_train = feats(real_val), feats(real_train)
    floor = {"fd_effnet": fd_from_features(f_val, f_train), "kid": kid(f_val, f_train)["mean"],
             "swd": swd_laplacian(real_val, real_train)["mean"], "n_real_heldout": len(val_idx), "n_real_train": len(real_train)}
    print(f"real-vs-real floor: {floor}")

    n_classes = cfg.model.num_classes
    labels = torch.arange(args.n) % n_classes if n_classes else None
    rows = []
    for steps in [int(s) for s in args.steps.split(",")]:
        sc = SampleConfig(n=args.n, steps=steps, sampler=args.sampler, seed=0)
        t = time.time()
        imgs = generate(model, sc, labels=labels)
        sec = time.time() - t
        f = feats(imgs)
        row = {"steps": steps, "seconds_per_sample": sec / args.n, "fd_effnet": fd_from_features(f, f_val),
               "kid": kid(f, f_val)["mean"], "swd": swd_laplacian(imgs, real_val)["mean"]}
        rows.append(row)
        print(json.dumps(row))

    ref = next((r for r in rows if r["steps"] == 200), rows[-1])
    for r in rows:
        r["fd_vs_longest"] = r["fd_effnet"] / ref["fd_effnet"]
    result = {"run": str(args.run), "model_step": model.step, "sampler": args.sampler, "n": args.n,
              "rows": rows, "floor": floor, "command": " ".join(["python"] + sys.argv),
              "machine": {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
                          "python": platform.python_version()},
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
