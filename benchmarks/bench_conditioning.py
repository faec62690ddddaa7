"""What conditioning costs: time per training step and per sampling step with each kind of condition,
and how fast the frozen text encoder encodes captions.

Same network size, same batch, same machine, in one process, interleaved (each variant is timed in
every round, rounds repeated, the median kept), so the ratios to the unconditional network are
comparable even on a noisy machine:

* none       : the U-Net alone
* class      : + a class embedding
* attributes : + five attribute embeddings (the built-in set's)
* text       : + MiniLM caption conditioning (pooled vector + cross-attention at low resolution;
               token states precomputed, as in training)
* pose       : + a 3-channel pose map concatenated to the input
* all        : attributes + text + pose + frame attention (8-frame sets)

Training step = forward + backward + AdamW step at batch 32 (bf16 autocast, as training runs);
sampling step = one guided denoiser call for 16 images (cond + uncond in one batch of 32, no grad).
Text encoding: captions/s of MiniLM over the built-in set's unique captions, cold (model loaded
already, cache empty), and the embedding cache's hit path.

    python benchmarks/bench_conditioning.py --preset tiny --threads 2 --rounds 5

Writes benchmarks/results/conditioning.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from machine import cpu_name  # benchmarks/machine.py (scripts run from benchmarks/)

from spriteforge.config import ModelConfig
from spriteforge.diffusion.edm import EDMPrecond, edm_loss
from spriteforge.models.unet import UNet, count_parameters
from spriteforge.runtime import autocast

ATTR_SIZES = (6, 8, 6, 5, 3)


def variants(preset: str) -> dict[str, tuple[ModelConfig, int]]:
    base = dict(preset=preset, in_channels=4, image_size=32)
    return {
        "none": (ModelConfig(**base), 1),
        "class": (ModelConfig(**base, num_classes=6), 1),
        "attributes": (ModelConfig(**base, attributes=("a", "b", "c", "d", "e"), attribute_sizes=ATTR_SIZES), 1),
        "text": (ModelConfig(**base, text_encoder="minilm", text_dim=384), 1),
        "pose": (ModelConfig(**base, control=("pose",)), 1),
        "all": (ModelConfig(**base, attributes=("a", "b", "c", "d", "e"), attribute_sizes=ATTR_SIZES,
                            text_encoder="minilm", text_dim=384, control=("pose",), frame_attention=True), 8),
    }


def cond_for(mc: ModelConfig, b: int, frames: int, g: torch.Generator) -> dict:
    c: dict = {}
    if mc.num_classes:
        c["class_labels"] = torch.randint(mc.num_classes, (b,), generator=g)
    if mc.attribute_sizes:
        c["attributes"] = torch.stack([torch.randint(n, (b,), generator=g) for n in mc.attribute_sizes], 1)
    if mc.text_dim:
        c.update(text_tokens=torch.randn(b, 16, mc.text_dim, generator=g), text_mask=torch.ones(b, 16, dtype=torch.bool),
                 text_pooled=torch.randn(b, mc.text_dim, generator=g))
    if mc.control_channels:
        c["control"] = torch.rand(b, mc.control_channels, 32, 32, generator=g)
    if mc.frame_attention:
        c.update(frames=frames, frame_phase=(torch.arange(b) % frames).float() / frames)
    return c


def time_train_step(den, opt, mc, frames, g, batch=32) -> float:
    y = torch.rand(batch, 4, 32, 32, generator=g) * 2 - 1
    sigma = torch.rand(batch, generator=g) * 2 + 0.1
    cond = cond_for(mc, batch, frames, g)
    t = time.perf_counter()
    with autocast(torch.device("cpu"), True):
        loss = edm_loss(den, y, sigma, torch.randn(y.shape, generator=g), **cond).mean()
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t


@torch.no_grad()
def time_sample_step(den, mc, frames, g, n=16) -> float:
    x = torch.randn(2 * n, 4, 32, 32, generator=g)
    cond = cond_for(mc, 2 * n, frames, g)
    t = time.perf_counter()
    with autocast(torch.device("cpu"), True):
        den(x, torch.full((2 * n,), 1.0), **cond)
    return time.perf_counter() - t


def text_throughput() -> dict:
    from spriteforge.data.builtin import render_builtin
    from spriteforge.models.text import EmbeddingCache
    caps = sorted({c for c in render_builtin(size=16).captions if c})
    cache = EmbeddingCache("minilm")
    cache.encode(["warm-up caption to load the encoder"])
    t = time.perf_counter()
    cache.encode(caps)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(10):
        cache.encode(caps)
    hit = (time.perf_counter() - t) / 10
    return {"unique_captions": len(caps), "encode_seconds": round(cold, 3), "captions_per_s": round(len(caps) / cold, 1),
            "cache_hit_captions_per_s": round(len(caps) / hit, 1), "encoder_calls": cache.encoder_calls}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "conditioning.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    models = {}
    for name, (mc, frames) in variants(args.preset).items():
        torch.manual_seed(0)
        den = EDMPrecond(UNet(mc), 0.5)
        models[name] = (den, torch.optim.AdamW(den.parameters(), lr=1e-4), mc.resolved(), frames)
    times = {k: {"train": [], "sample": []} for k in models}
    for r in range(args.rounds + 1):  # round 0 warms up every variant and is dropped
        for name, (den, opt, mc, frames) in models.items():
            tr = statistics.median(time_train_step(den, opt, mc, frames, g) for _ in range(3))
            sa = statistics.median(time_sample_step(den, mc, frames, g) for _ in range(3))
            if r:
                times[name]["train"].append(tr)
                times[name]["sample"].append(sa)
    base_tr = statistics.median(times["none"]["train"])
    base_sa = statistics.median(times["none"]["sample"])
    rows = {}
    for name, (den, _, mc, frames) in models.items():
        tr, sa = statistics.median(times[name]["train"]), statistics.median(times[name]["sample"])
        rows[name] = {"params": count_parameters(den), "train_step_ms": round(tr * 1000, 1),
                      "train_ratio": round(tr / base_tr, 3), "sample_step_ms": round(sa * 1000, 1),
                      "sample_ratio": round(sa / base_sa, 3), "frames_per_set": frames}
    text = text_throughput()
    rec = {"command": " ".join(["python", *sys.argv]), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": {"cpu": cpu_name(), "threads": args.threads, "torch": torch.__version__,
                       "load_avg_end": list(os.getloadavg())},
           "preset": args.preset, "batch_train": 32, "batch_sample": "16 (x2 for guidance)", "rounds": args.rounds,
           "variants": rows, "text_encoding": text}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rec, indent=2))
    print(f"| conditioning ({args.preset}) | params | train step (ms) | vs none | sample step (ms) | vs none |")
    print("|---|---|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['params'] / 1e6:.2f}M | {r['train_step_ms']} | {r['train_ratio']:.2f}x | "
              f"{r['sample_step_ms']} | {r['sample_ratio']:.2f}x |")
    print(f"text encoding: {text['captions_per_s']} captions/s cold ({text['unique_captions']} captions in "
          f"{text['encode_seconds']} s), {text['cache_hit_captions_per_s']} captions/s from the cache")


if __name__ == "__main__":
    main()
