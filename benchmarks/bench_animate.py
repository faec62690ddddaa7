"""Seconds and memory to generate one animation: the `spriteforge animate` path on the CPU.

Times ``animation.animate.animate()`` (what ``spriteforge animate`` runs, export excluded) for an
8-frame and a 16-frame 32x32 animation at 20 DPM++ 2M steps with the CLI's guidance (cfg 2: the
conditional and unconditional branches run as one batch of 2 x frames), reports the median of
``--repeats`` warm runs (after ``--warmup`` untimed runs before the first frame count, which load
the text encoder etc.), the cold first call, and the process's peak RSS (``getrusage`` ``ru_maxrss``) after the 8-frame runs and at
the end. Targets (animation issue): <= 3 s and <= 1.5 GB for 8 frames.

Model: ``builtin`` (the bundled ``spriteforge/assets/builtin.safetensors``, default), a run folder or
a checkpoint. When it has no weights yet (the bundled file is missing, or the run folder has no
checkpoint) the script builds a **freshly initialised** frame-set model of the same architecture
(the run folder's ``config.yaml``, else the bundled model's: preset tiny, 32 px RGBA, 6 classes,
five attribute labels, a pose control input, frame attention) purely for timing: the cost of a step does not depend on
the weights. The output says so, and ``weights`` in the JSON records it.

    python benchmarks/bench_animate.py                          # builtin, 2 threads, 5 repeats
    python benchmarks/bench_animate.py runs/builtin_anim --threads 1 --repeats 2

Writes ``benchmarks/results/animate.json`` (every number, the machine: CPU model, threads, torch
version, load average, date, command) and prints a markdown table. Run it on an idle machine:
with other jobs on the cores, especially with 2 threads on 2 busy cores, the times are far worse
than proportional (the JSON records the load average at start and end).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from machine import cpu_name  # benchmarks/machine.py (scripts run from benchmarks/)

TARGET_SECONDS_8 = 3.0
TARGET_RSS_GB_8 = 1.5

# The bundled model's architecture (as trained by the lead's builtin run), for the fallback.
BUILTIN_ARCH = {"preset": "tiny", "in_channels": 4, "image_size": 32, "num_classes": 6, "frame_attention": True,
                "attributes": ("archetype", "palette", "accessory", "action", "direction"), "control": ("pose",)}


def peak_rss_gb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss    # KiB on Linux (bytes on macOS)
    return kb / (1024 ** 3 if sys.platform == "darwin" else 1024 ** 2)


def load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def fresh_model(cfg, note: str):
    """A LoadedModel with random weights of ``cfg``'s architecture (timing only)."""
    from spriteforge.data.builtin import ARCHETYPES
    from spriteforge.diffusion.edm import EDMPrecond
    from spriteforge.models.unet import UNet
    from spriteforge.pipeline import LoadedModel
    m = cfg.model
    if m.text_encoder and not m.text_dim:
        from spriteforge.models.text import get_text_encoder
        m = dataclasses.replace(m, text_dim=get_text_encoder(m.text_encoder).dim)
    meta = {}
    if m.attributes:
        from spriteforge.data.builtin import render_builtin
        from spriteforge.data.conditions import attribute_vocab
        vocab = attribute_vocab(render_builtin(size=m.image_size), m.attributes)
        m = dataclasses.replace(m, attribute_sizes=tuple(len(v) for v in vocab.values()))
        meta = {"extra": json.dumps({"attribute_values": vocab})}
    m = m.resolved()
    cfg = dataclasses.replace(cfg, model=m)
    torch.manual_seed(0)
    den = EDMPrecond(UNet(m), cfg.diffusion.sigma_data).eval().requires_grad_(False)
    names = list(ARCHETYPES) if m.num_classes == len(ARCHETYPES) else [f"c{i}" for i in range(m.num_classes)]
    return LoadedModel(den, cfg, names, Path(f"<random init: {note}>"), 0, meta), note


def get_model(spec: str):
    """(LoadedModel, weights description)."""
    from spriteforge.config import ModelConfig, RunConfig
    from spriteforge.pipeline import load_model
    from spriteforge.training.checkpoint import CheckpointError
    try:
        m = load_model(spec)
        return m, f"trained weights: {m.path} (step {m.step})"
    except CheckpointError as e:
        reason = str(e)
    p = Path(spec)
    if spec != "builtin" and (p / "config.yaml").is_file():
        cfg = RunConfig.load(p / "config.yaml")
        return fresh_model(cfg, f"freshly initialised, architecture of {p / 'config.yaml'} ({reason})")
    cfg = RunConfig(model=ModelConfig(**BUILTIN_ARCH))
    return fresh_model(cfg, f"freshly initialised, the bundled model's architecture {BUILTIN_ARCH} ({reason})")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default="builtin", help="builtin | run folder | checkpoint (default builtin)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per frame count (median reported)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs before the first frame count (text encoder "
                                                         "load, allocator); its first is reported as the cold call")
    ap.add_argument("--frames", default="8,16", help="frame counts to time (default 8,16)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--sampler", default="dpmpp-2m")
    ap.add_argument("--cfg", type=float, default=2.0, help="guidance scale (default 2.0, as `spriteforge animate`)")
    ap.add_argument("--what", default=None, help="prompt (text models) or class name (class models); default: "
                                                   "'a red knight walking right' / the first class")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast while sampling")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "animate.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_start = load_avg()
    busy = bool(load_start and load_start[0] > 0.5)
    if busy:
        print(f"WARNING: load average {load_start} > 0.5: other jobs share the CPU, the times are inflated "
              "(run on an idle machine for numbers to compare with the targets)")

    from spriteforge.animation.animate import animate
    from spriteforge.models.unet import count_parameters
    t = time.perf_counter()
    model, weights = get_model(args.model)
    load_s = time.perf_counter() - t
    mc = model.config.model
    if not mc.frame_attention:
        sys.exit(f"{args.model} is a single-image model (no frame attention): nothing to animate")
    size = mc.image_size
    what = args.what or ("a red knight walking right" if mc.text_encoder or mc.attributes else
                         (model.class_names[0] if mc.num_classes else ""))
    random_init = str(model.path).startswith("<random init")
    print(f"model: {weights}")
    if random_init:
        print("NOTE: no trained weights available; timing a freshly initialised model of the same architecture "
              "(same cost per step, meaningless pixels)")
    print(f"{count_parameters(model.denoiser) / 1e6:.2f} M parameters, {size} px, {mc.in_channels} channels, "
          f"text={mc.text_encoder or 'none'}, classes={mc.num_classes}; threads {args.threads}, load {load_start}")

    rows = []
    first_call_s = None
    for fi, frames in enumerate(int(f) for f in args.frames.split(",")):
        kw = dict(frames=frames, steps=args.steps, sampler=args.sampler, cfg=args.cfg, bf16=args.bf16)
        cold = None
        for w in range(args.warmup if fi == 0 else 0):       # warm-up once, before the first frame count
            t = time.perf_counter()
            animate(model, what, seed=10_000 + w, **kw)
            if w == 0:
                cold = time.perf_counter() - t
        if fi == 0:
            first_call_s = cold
        times = []
        for r in range(args.repeats):
            t = time.perf_counter()
            out = animate(model, what, seed=r, **kw)
            times.append(time.perf_counter() - t)
            assert len(out) == frames and out[0].shape == (size, size, 4)
        row = {"frames": frames, "size": size, "median_s": statistics.median(times), "min_s": min(times),
               "max_s": max(times), "times_s": [round(x, 3) for x in times], "first_call_s": cold,
               "s_per_frame": statistics.median(times) / frames, "peak_rss_gb_after": peak_rss_gb()}
        rows.append(row)
        print(f"{frames} frames: median {row['median_s']:.2f} s over {args.repeats} runs "
              f"({', '.join(f'{x:.2f}' for x in times)}), peak RSS so far {row['peak_rss_gb_after']:.2f} GB")

    load_end = load_avg()
    r8 = next((r for r in rows if r["frames"] == 8), None)
    targets = None
    if r8:
        targets = {"seconds_8_frames": TARGET_SECONDS_8, "rss_gb_8_frames": TARGET_RSS_GB_8,
                   "seconds_met": r8["median_s"] <= TARGET_SECONDS_8,
                   "rss_met": r8["peak_rss_gb_after"] <= TARGET_RSS_GB_8}
    result = {
        "benchmark": "animate", "model": args.model, "weights": weights, "random_init": random_init,
        "parameters": count_parameters(model.denoiser), "conditioning": what,
        "sampler": args.sampler, "steps": args.steps, "cfg": args.cfg, "bf16": args.bf16,
        "repeats": args.repeats, "warmup": args.warmup, "model_load_s": load_s, "first_call_s": first_call_s,
        "rows": rows, "targets": targets, "under_load": busy,
        "notes": ["times: animate() only (sampling + uint8 conversion), no PNG/GIF export",
                  "peak RSS: whole-process maximum (ru_maxrss) after the runs of that frame count, including "
                  "torch, the model and the text encoder; rows are measured in order, so later rows include "
                  "earlier peaks"],
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": args.threads,
                    "torch": torch.__version__, "python": platform.python_version(),
                    "platform": platform.platform(), "load_avg_start": load_start, "load_avg_end": load_end},
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python"] + sys.argv),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    print()
    print("| frames | size | median s | min-max s | s/frame | peak RSS GB | target |")
    print("|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        tgt = ""
        if r["frames"] == 8:
            ok = "met" if r["median_s"] <= TARGET_SECONDS_8 and r["peak_rss_gb_after"] <= TARGET_RSS_GB_8 else "missed"
            ok += " (under load: not conclusive)" if busy else ""
            tgt = f"<= {TARGET_SECONDS_8:g} s, <= {TARGET_RSS_GB_8:g} GB: {ok}"
        print(f"| {r['frames']} | {r['size']} | {r['median_s']:.2f} | {r['min_s']:.2f}-{r['max_s']:.2f} | "
              f"{r['s_per_frame']:.3f} | {r['peak_rss_gb_after']:.2f} | {tgt} |")
    print()
    print(f"{args.sampler}, {args.steps} steps, cfg {args.cfg}, {args.threads} thread(s), {cpu_name()}, "
          f"torch {torch.__version__}, load average {load_start} -> {load_end}"
          + ("; RANDOM-INIT model (timing only)" if random_init else ""))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
