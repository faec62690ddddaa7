#!/usr/bin/env python
"""What evaluation costs beyond sampling: time and peak memory of the eval metrics (evaluation issue).

The issue's targets: evaluating 1,000 samples of 32x32 takes <= 2 minutes on 2 cores beyond the
sampling itself, and evaluating 10,000 images stays under 2 GB of memory. Sampling is the model's
cost, not the evaluator's, so the "samples" here are real 32 px RGBA renders of the built-in set
(different characters from the reference), and every step `spriteforge eval` runs after sampling
is timed: EfficientNet-Lite0 features of the samples, the held-out reference and the training set;
FD, KID, precision/recall, SWD and alpha coverage against the reference; memorisation (pixel and
feature nearest neighbours in the training set, with the training set's self-calibration).

Each sample count runs in its own child process, so the peak RSS (getrusage ru_maxrss) is that
evaluation's alone and includes torch, the EffNet weights and every array.

    python benchmarks/bench_eval_cost.py --counts 1000,10000 --threads 2

Writes benchmarks/results/eval_cost.json and prints one line per count.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from machine import cpu_name  # noqa: E402  (benchmarks/machine.py)


def child(n: int, threads: int) -> dict:
    import torch
    torch.set_num_threads(threads)
    from spriteforge.data.builtin import render_builtin
    from spriteforge.evaluation.evaluate import distribution_metrics, memorisation_metrics
    from spriteforge.evaluation.features import EffNetFeatures

    train = render_builtin(size=32, characters=24).images            # the training set of the default run
    chars = n // 84 + 1                                               # 84 frames per character
    gen = render_builtin(size=32, characters=chars, seed=7).images[:n]  # other characters: the "samples"
    ref = train[::10]                                                 # a held-out-sized reference (202)
    t0 = time.time()
    feats = EffNetFeatures()
    gen_f, ref_f, train_f = feats(gen), feats(ref), feats(train)
    t_feat = time.time() - t0
    dist = distribution_metrics(gen, ref, gen_f, ref_f, seed=0)
    t_dist = time.time() - t0 - t_feat
    memorisation_metrics(gen, train, gen_f, train_f, seed=0)
    t_all = time.time() - t0
    return {"n": n, "train_n": len(train), "reference_n": len(ref), "threads": threads,
            "seconds_total": round(t_all, 1), "seconds_features": round(t_feat, 1),
            "seconds_distribution_metrics": round(t_dist, 1),
            "seconds_memorisation": round(t_all - t_feat - t_dist, 1),
            "fd_effnet": round(dist["fd"], 2),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--counts", default="1000,10000", help="sample counts, comma-separated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.threads)))
        return
    rows = []
    load0 = os.getloadavg()[0]
    for n in [int(c) for c in args.counts.split(",")]:
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--threads", str(args.threads)],
                             env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"the evaluation of {n} samples failed:\n{out.stderr[-2000:]}")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    res = {"date": _dt.date.today().isoformat(), "machine": f"{cpu_name()}, {os.cpu_count()} logical cores",
           "load_average_start": round(load0, 2), "load_average_end": round(os.getloadavg()[0], 2),
           "command": "python benchmarks/bench_eval_cost.py " + " ".join(sys.argv[1:]), "rows": rows}
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "eval_cost.json").write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
