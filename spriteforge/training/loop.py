"""The training loop: EDM loss, AdamW, EMA, checkpoints, progress, pictures.

Read top to bottom: prepare the run folder -> load data -> build model -> (resume) -> loop:
sample a batch, loss, backward, clip, step, EMA; every N steps log / validate / draw a grid /
checkpoint. A time budget (`--minutes`) and a step budget (`--steps`) both stop the loop; Ctrl-C
saves a checkpoint before exiting. All training randomness comes from one seeded
`torch.Generator` (batches, sigmas, noise, label dropout, flips) plus torch's global RNG (dropout
layers); both are saved in every checkpoint, so `--resume` continues exactly.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..config import ConfigError, RunConfig, SampleConfig
from ..data import load_dataset
from ..data.conditions import attribute_labels, attribute_vocab, control_maps, pose_box
from ..data.dataset import ImageSet, group_animations, to_model_range
from .batches import build_text_table, control_input, fixed_cond, make_source, sample_batch
from ..diffusion.edm import EDMPrecond, edm_loss
from ..images import atomic_save, label, make_grid, plot_curves, save_gif
from ..models.unet import UNet, count_parameters
from ..runtime import autocast, pick_device, set_threads
from .checkpoint import (CheckpointError, as_fp32, latest_checkpoint, load_checkpoint, prune_checkpoints, read_metadata, restore_optimizer, restore_rng,
                         save_checkpoint, split)
from .ema import EMA

VAL_SIGMAS = (0.05, 0.2, 0.5, 1.0, 2.0, 5.0)  # fixed noise levels: validation loss comparable across runs
KEEP_CHECKPOINTS = 3


class RunExistsError(ValueError):
    pass


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    images_seen: int
    losses: list[float]          # per-step training loss (for tests and benchmarks)
    seconds: float
    interrupted: bool = False
    peak_rss_gb: float = 0.0     # peak resident memory of this process so far (Linux/macOS)


def load_init_weights(spec: str, denoiser: EDMPrecond, ema: EMA, vocab: dict, class_names: list[str]) -> None:
    """Fine-tuning (`train.init_from`): copy another model's weights into this run's network and EMA.
    Only the weights: step, optimizer and learning-rate schedule start afresh. The other model must
    have the same network and read its class and attribute labels the same way."""
    from ..pipeline import resolve_checkpoint
    where = f"train.init_from={spec!r}"
    try:
        tensors, meta = load_checkpoint(resolve_checkpoint(spec))
    except (CheckpointError, OSError, ValueError) as e:
        raise ConfigError(f"{where}: {e}") from None
    theirs = json.loads(meta.get("extra", "{}")).get("attribute_values", {})
    if theirs != vocab:
        raise ConfigError(f"{where}: its attribute labels {theirs} differ from this data's {vocab}; "
                          "the embeddings would mean different things")
    if json.loads(meta.get("class_names", "[]")) != class_names:
        raise ConfigError(f"{where}: its classes {json.loads(meta.get('class_names', '[]'))} differ from this "
                          f"data's {class_names}")
    ema_w = as_fp32(split(tensors, "ema"))
    raw_w = as_fp32(split(tensors, "model")) or ema_w
    try:  # a weights-only export has the EMA alone: then the network starts from the EMA too
        denoiser.load_state_dict(raw_w)
        ema.model.load_state_dict(ema_w)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{where}: its network does not match this run's model config ({first}); "
                          "use the same model.* settings it was trained with") from None


def prepare_run_dir(out: Path, resume: bool, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if resume:
            return
        if not overwrite:
            raise RunExistsError(f"run folder {out} already exists and is not empty; pass --resume to continue it "
                                 f"or --overwrite to replace it")
        shutil.rmtree(out)
    elif resume:
        raise RunExistsError(f"--resume: run folder {out} does not exist or is empty")
    out.mkdir(parents=True, exist_ok=True)


def resolve_model_config(cfg: RunConfig, data: ImageSet) -> RunConfig:
    """Fill in what comes from the data (channels, size, classes) and the preset's values."""
    m = cfg.model
    if m.in_channels and m.in_channels != data.channels:
        raise ConfigError(f"`--model.in_channels {m.in_channels}` but the data has {data.channels} channels")
    if cfg.train.frames and not group_animations(data):
        raise ConfigError("`train.frames` needs animation data (sprite sheets, atlases, numbered frames or the "
                          "built-in set); this data has no animations")
    text_dim = m.text_dim
    if m.text_encoder:
        from ..models.text import get_text_encoder
        try:
            text_dim = get_text_encoder(m.text_encoder).dim
        except KeyError:
            raise ConfigError(f"`model.text_encoder {m.text_encoder}` is not a known text encoder") from None
    sizes = tuple(len(v) for v in attribute_vocab(data, m.attributes).values())
    if m.control:
        control_maps(data.subset([0]), m.control)  # fails early with the file's name if a map cannot be made
    m = replace(m, in_channels=data.channels, image_size=data.size, text_dim=text_dim, attribute_sizes=sizes,
                num_classes=m.num_classes or len(data.class_names),
                frame_attention=m.frame_attention or bool(cfg.train.frames)).resolved()
    return replace(cfg, model=m)


def split_validation(data: ImageSet, fraction: float, seed: int, by_animation: bool) -> tuple[list[int], list[int]]:
    """A fixed held-out subset (same seed, same split) for the validation loss; whole animations
    are held out in frame-set mode, so no held-out frame has its siblings in training."""
    groups = group_animations(data) if by_animation else [[i] for i in range(len(data))]
    n_val = int(len(groups) * fraction) if len(groups) >= 20 else 0
    perm = torch.randperm(len(groups), generator=torch.Generator().manual_seed(seed + 12345)).tolist()
    pick = lambda gs: sorted(i for g in gs for i in groups[g])  # noqa: E731
    return pick(perm[n_val:]), pick(perm[:n_val])


def lr_at(step: int, cfg) -> float:
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
    if cfg.lr_schedule == "cosine":
        progress = min(1.0, step / max(1, cfg.steps))
        return cfg.lr * warm * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * warm


@torch.no_grad()
def validation_loss(denoiser: EDMPrecond, src, cfg: RunConfig, device, bf16: bool, batch: int = 128) -> dict[str, float]:
    """EDM loss of the held-out images at fixed sigmas, with fixed noise: comparable across runs and steps."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    images = src.images
    for s in VAL_SIGMAS:
        total, count = 0.0, 0
        for i in range(0, len(images), batch):
            idx = torch.arange(i, min(i + batch, len(images)))
            y = to_model_range(images[idx]).to(device)
            noise = torch.randn(y.shape, generator=gen).to(device)
            sigma = torch.full((len(y),), s, device=device)
            with autocast(device, bf16):
                loss = edm_loss(denoiser, y, sigma, noise, **fixed_cond(src, idx, cfg, device))
            total += loss.float().sum().item()
            count += len(y)
        out[f"val_loss_sigma_{s:g}"] = total / max(count, 1)
    out["val_loss"] = float(np.mean([out[f"val_loss_sigma_{s:g}"] for s in VAL_SIGMAS]))
    return out


def draw_samples(denoiser, cfg: RunConfig, n: int, steps: int, class_count: int, text_table,
                 src=None) -> tuple[torch.Tensor, int]:
    """The progress grid: same noise (seed 0) every time, so grids show the model changing, not the noise.
    A class-conditional model cycles through its classes, a text model through the first captions
    of the data, an attribute or control model takes those of training images spread over the data,
    a frame-set model draws rows of 8-frame loops. Returns (images, images per row)."""
    from ..pipeline import LoadedModel, generate
    model = LoadedModel(denoiser, cfg, [], Path("."), 0, {}, text_table=text_table)
    frames = 8 if cfg.model.frame_attention else 1
    sets = max(1, n // frames)
    labels = torch.arange(sets) % class_count if class_count else None
    prompts = None
    if text_table is not None:
        step = max(1, len(text_table.captions) // sets)
        prompts = [text_table.captions[(i * step) % len(text_table.captions)] for i in range(sets)]
    extra = {}
    if src is not None and (src.attributes is not None or src.control is not None):
        pick = torch.linspace(0, len(src.images) - 1, sets).round().long()
        if src.attributes is not None:
            extra["attributes"] = src.attributes[pick]
        if src.control is not None and frames == 1:
            extra["control"] = control_input(src.control[pick])
    sc = SampleConfig(n=sets, steps=steps, seed=0, frames=frames)
    imgs = generate(model, sc, labels=labels, prompts=prompts, **extra)
    return imgs, (frames if frames > 1 else math.ceil(math.sqrt(n)))


class SmallFD:
    """FD-EffNet of a few samples against the held-out images, during training (`train.fd_every`).

    The samples ask for what the held-out images show (their labels, attributes, captions), from the
    same seed each time, 16 DPM++ steps, one frame each. With a small n the value is biased upwards
    and noisy: it tracks one run's progress, not a number to compare with `spriteforge eval`."""

    def __init__(self, val_src, cfg: RunConfig, text_table):
        from ..evaluation.features import EffNetFeatures
        self.feats = EffNetFeatures()
        self.ref = self.feats(val_src.images)
        n = cfg.train.fd_n
        self.pick = torch.arange(n) % len(val_src.images)
        self.src, self.cfg, self.text_table = val_src, cfg, text_table

    def __call__(self, denoiser) -> float:
        from ..evaluation.metrics import fd_from_features
        from ..pipeline import LoadedModel, generate
        src, mc = self.src, self.cfg.model
        model = LoadedModel(denoiser, self.cfg, [], Path("."), 0, {}, text_table=self.text_table)
        kw = {}
        if mc.num_classes:
            kw["labels"] = src.labels[self.pick]
        if src.attributes is not None:
            kw["attributes"] = src.attributes[self.pick]
        if src.text is not None:
            kw["prompts"] = [src.text.captions[i] if i < len(src.text.captions) else ""
                             for i in src.caption_idx[self.pick].tolist()]
        imgs = generate(model, SampleConfig(n=len(self.pick), steps=16, seed=0), **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the small-n rank-deficiency warning: known, see the docstring
            return fd_from_features(self.feats(imgs), self.ref)


class _Progress:
    """A rich progress bar with loss, images/s and ETA; silent when `quiet`."""

    def __init__(self, total_steps: int, minutes: float, start_step: int, quiet: bool):
        self.quiet = quiet
        self.minutes = minutes
        if quiet:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        self.bar = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("eta"),
                            TimeRemainingColumn(), transient=False)
        self.task = self.bar.add_task("train", total=total_steps or None, completed=start_step, info="")
        self.bar.start()

    def update(self, step: int, info: str, total: int | None = None):
        if not self.quiet:
            self.bar.update(self.task, completed=step, info=info, **({"total": total} if total else {}))

    def print(self, msg: str):
        if self.quiet:
            return
        self.bar.console.print(msg)

    def close(self):
        if not self.quiet:
            self.bar.stop()


def train(cfg: RunConfig, out: str | Path, resume: bool = False, overwrite: bool = False, quiet: bool = False,
          data: ImageSet | None = None, stop_after: int | None = None) -> TrainResult:
    """Train a model as `cfg` says, writing everything into the run folder `out`.

    `data` lets a caller (tests, benchmarks) pass an ImageSet instead of loading cfg.data;
    `stop_after` stops (with a checkpoint) after that many optimizer steps in this call — a
    stand-in for a kill in the resume tests.
    """
    out = Path(out)
    t_cfg = cfg.train
    if not t_cfg.steps and not t_cfg.minutes:
        raise ConfigError("set a budget: `--steps N` and/or `--minutes M`")
    if t_cfg.detail_weight != 1 and cfg.data.source != "builtin":
        raise ConfigError(f"train.detail_weight={t_cfg.detail_weight:g} needs detail masks, which only the built-in "
                          f"set has (its accessories' pixels); data.source is {cfg.data.source!r}")
    set_threads(t_cfg.threads)
    device = pick_device(t_cfg.device)
    bf16 = t_cfg.bf16 and device.type in ("cpu", "cuda")

    # --- run folder and data; both checked before any training starts
    if resume:
        ckpt_path = latest_checkpoint(out) if out.exists() else None
        if ckpt_path is None:
            raise RunExistsError(f"--resume: no checkpoint in {out}/checkpoints to resume from")
    prepare_run_dir(out, resume, overwrite)
    log = (lambda m: None) if quiet else (lambda m: print(f"warning: {m}"))
    data = data if data is not None else load_dataset(cfg.data, log=log)
    if len(data) < 2:
        raise ConfigError(f"the data has {len(data)} image(s); at least 2 are needed to train")
    cfg = resolve_model_config(cfg, data)
    if resume:  # the run's own config wins over the command line for everything but the budget and threads
        meta = read_metadata(ckpt_path)  # the config only; the tensors are loaded once, below
        saved = RunConfig.from_dict(json.loads(meta["config"]))
        cfg = replace(saved, train=replace(saved.train, steps=t_cfg.steps or saved.train.steps,
                                           minutes=t_cfg.minutes, threads=t_cfg.threads))  # threads: this machine's choice
        t_cfg = cfg.train
    (out / "config.yaml").write_text(cfg.to_yaml())
    train_idx, val_idx = split_validation(data, t_cfg.val_fraction, t_cfg.seed, by_animation=bool(t_cfg.frames))
    text_table = None
    if cfg.model.text_encoder:  # encode every caption once; cached on disk in the run folder
        from ..models.text import EmbeddingCache
        progress_note = (lambda m: None) if quiet else print
        progress_note(f"encoding {len(set(data.captions))} captions with {cfg.model.text_encoder}")
        cache = EmbeddingCache(cfg.model.text_encoder, path=out / "text_cache.safetensors")
        text_table = build_text_table([c or "" for c in data.captions], cache)
    vocab = attribute_vocab(data, cfg.model.attributes)
    attributes = attribute_labels(data, vocab) if vocab else None
    control = control_maps(data, cfg.model.control) if cfg.model.control else None
    extra_meta = {"attribute_values": vocab, **({"pose_box": pose_box(data)} if "pose" in cfg.model.control else {})}
    detail = None
    if t_cfg.detail_weight != 1:  # the built-in set knows which pixels its accessories change
        from ..data.builtin import accessory_masks
        detail = accessory_masks(data, cfg.data.builtin_characters, cfg.data.builtin_seed)
    src = make_source(data, train_idx, text_table, bool(t_cfg.frames), attributes, control, detail)
    val_src = make_source(data, val_idx, text_table, False, attributes, control)
    if device.type == "cuda":
        src.images = src.images.pin_memory()

    # --- model, optimizer, EMA
    torch.manual_seed(t_cfg.seed)
    net = UNet(cfg.model)
    denoiser = EDMPrecond(net, cfg.diffusion.sigma_data).to(device)
    optimizer = torch.optim.AdamW(denoiser.parameters(), lr=t_cfg.lr, betas=(0.9, 0.99),
                                  weight_decay=t_cfg.weight_decay, eps=1e-8)
    halflife = t_cfg.ema_halflife_images or 50_000
    ema = EMA(denoiser, halflife, t_cfg.ema_warmup_ratio)
    gen = torch.Generator().manual_seed(t_cfg.seed)
    step, images_seen, elapsed_before = 0, 0, 0.0
    if resume:
        tensors, meta = load_checkpoint(ckpt_path)
        denoiser.load_state_dict(split(tensors, "model"))
        ema.model.load_state_dict(split(tensors, "ema"))
        restore_optimizer(optimizer, tensors, meta)
        restore_rng(tensors, gen)
        step, images_seen, elapsed_before = int(meta["step"]), int(meta["images_seen"]), float(meta["elapsed"])
    elif t_cfg.init_from:
        load_init_weights(t_cfg.init_from, denoiser, ema, vocab, list(data.class_names))
    n_params = count_parameters(net)
    class_names = list(data.class_names)

    micro = math.ceil(t_cfg.batch_size / t_cfg.grad_accum)
    metrics_path = out / "metrics.jsonl"
    (out / "samples").mkdir(exist_ok=True)
    progress = _Progress(t_cfg.steps, t_cfg.minutes, step, quiet)
    progress.print(f"data: {len(data)} images ({len(train_idx)} train, {len(val_idx)} held out"
                   f"{f', {len(src.animations)} animations' if src.animations else ''}), "
                   f"{data.channels} channels, {data.size}px, {len(class_names)} classes | "
                   f"model: {cfg.model.preset} {n_params / 1e6:.2f}M params | device {device}"
                   f"{' bf16' if bf16 else ''} | run folder {out}")

    def checkpoint():
        save_checkpoint(out / "checkpoints" / f"ckpt_{step:07d}.safetensors", model=denoiser, ema_model=ema.model,
                        optimizer=optimizer, step=step, images_seen=images_seen, config=cfg.to_dict(),
                        class_names=class_names, data_generator=gen, elapsed=elapsed_before + (time.time() - t0),
                        extra=extra_meta)
        prune_checkpoints(out, KEEP_CHECKPOINTS)

    def sample_grid(name: str):
        ema.model.eval()
        imgs, nrow = draw_samples(ema.model, cfg, t_cfg.sample_n, t_cfg.sample_steps, len(class_names), text_table, src)
        grid = make_grid(imgs, nrow=nrow, scale=max(1, 128 // cfg.model.image_size))
        atomic_save(Image.fromarray(grid), out / "samples" / f"{name}.png")

    def log_metrics(rec: dict):
        with open(metrics_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    # Ctrl-C: finish the current step, save, exit. (A second Ctrl-C aborts at once.)
    interrupted = {"flag": False}

    def on_sigint(signum, frame):
        if interrupted["flag"]:
            raise KeyboardInterrupt
        interrupted["flag"] = True
    old_handler = signal.signal(signal.SIGINT, on_sigint) if _main_thread() else None

    losses: list[float] = []
    small_fd = None
    t0 = time.time()
    t_last, imgs_last = t0, images_seen
    steps_this_call = 0
    deadline = t0 + t_cfg.minutes * 60 if t_cfg.minutes else None
    try:
        while True:
            if t_cfg.steps and step >= t_cfg.steps:
                break
            if deadline and time.time() >= deadline:
                break
            if interrupted["flag"] or (stop_after is not None and steps_this_call >= stop_after):
                break
            for g in optimizer.param_groups:
                g["lr"] = lr_at(step, t_cfg)
            denoiser.train()
            loss_acc = 0.0
            step_images = 0
            for _ in range(t_cfg.grad_accum):
                y, sigma, cond = sample_batch(src, micro, t_cfg.frames, cfg, gen, device, t_cfg.min_frames)
                noise = torch.randn(y.shape, generator=gen).to(device)
                with autocast(device, bf16):
                    loss = edm_loss(denoiser, y, sigma, noise, **cond).mean()
                (loss / t_cfg.grad_accum).backward()
                loss_acc += loss.item() / t_cfg.grad_accum
                step_images += len(y)
            if not math.isfinite(loss_acc):
                raise FloatingPointError(f"training loss became {loss_acc} at step {step}; "
                                         f"try a lower --train.lr (now {t_cfg.lr}) or --train.bf16 false")
            if t_cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(denoiser.parameters(), t_cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            steps_this_call += 1
            images_seen += step_images
            ema.update(denoiser, step_images, images_seen)
            losses.append(loss_acc)

            now = time.time()
            if step % t_cfg.log_every == 0 or step == 1:
                ips = (images_seen - imgs_last) / max(now - t_last, 1e-9)
                t_last, imgs_last = now, images_seen
                log_metrics({"step": step, "images_seen": images_seen, "loss": float(np.mean(losses[-t_cfg.log_every:])),
                             "lr": optimizer.param_groups[0]["lr"], "images_per_s": ips,
                             "time": elapsed_before + now - t0})
                total = t_cfg.steps
                if not total and deadline:  # time budget only: estimate the step count from the pace so far
                    total = int(step + (deadline - now) * steps_this_call / max(now - t0, 1e-9))
                progress.update(step, f"loss {np.mean(losses[-t_cfg.log_every:]):.4f} | {ips:.0f} img/s", total)
            if t_cfg.val_every and len(val_idx) and step % t_cfg.val_every == 0:
                rec = validation_loss(ema.model, val_src, cfg, device, bf16)
                log_metrics({"step": step, **rec})
            if t_cfg.fd_every and len(val_idx) >= 2 and step % t_cfg.fd_every == 0:
                small_fd = small_fd or SmallFD(val_src, cfg, text_table)
                ema.model.eval()
                log_metrics({"step": step, "fd_effnet_small": small_fd(ema.model), "fd_n": t_cfg.fd_n})
            if t_cfg.sample_every and step % t_cfg.sample_every == 0:
                sample_grid(f"step_{step:07d}")
            if step % t_cfg.ckpt_every == 0:
                checkpoint()
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)

    # --- the end (budget reached, Ctrl-C or stop_after): save, draw, summarise
    checkpoint()
    stopped_early = interrupted["flag"] or (stop_after is not None and steps_this_call >= stop_after
                                            and not (t_cfg.steps and step >= t_cfg.steps))
    if not stopped_early:
        if len(val_idx) and not (t_cfg.val_every and step % t_cfg.val_every == 0):  # not already logged
            log_metrics({"step": step, **validation_loss(ema.model, val_src, cfg, device, bf16)})
        sample_grid("final")
    write_plots(out)
    seconds = time.time() - t0
    progress.close()
    if interrupted["flag"] and not quiet:
        print(f"interrupted: saved checkpoint at step {step}; continue with --resume")
    return TrainResult(out, step, images_seen, losses, seconds, interrupted["flag"], peak_rss_gb())


def peak_rss_gb() -> float:
    try:
        import resource
        import sys
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return kb / 2**30 if sys.platform == "darwin" else kb / 2**20  # macOS reports bytes, Linux KiB
    except ImportError:  # Windows
        return 0.0


def write_plots(out: Path):
    """loss.png from metrics.jsonl and progress.gif from the sample grids."""
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()] \
        if (out / "metrics.jsonl").exists() else []
    series = {"train loss": [(r["step"], r["loss"]) for r in recs if "loss" in r],
              "held-out loss (fixed sigmas)": [(r["step"], r["val_loss"]) for r in recs if "val_loss" in r]}
    if any(series.values()):
        plot_curves(series, out / "loss.png", title=f"{out.name}: EDM loss")
    fd = [(r["step"], r["fd_effnet_small"]) for r in recs if "fd_effnet_small" in r]
    if fd:
        n = next(r["fd_n"] for r in recs if "fd_n" in r)
        plot_curves({f"FD-EffNet, {n} samples vs held-out": fd}, out / "fd.png", title=f"{out.name}: FD-EffNet during training")
    grids = sorted((out / "samples").glob("step_*.png"))
    if (out / "samples" / "final.png").exists():
        grids.append(out / "samples" / "final.png")
    if grids:
        frames = []
        for p in grids:
            name = p.stem.replace("step_", "step ").lstrip("0") if p.stem != "final" else "final"
            frames.append(label(np.asarray(Image.open(p).convert("RGB")), name.replace("step 0", "step ")))
        save_gif(frames, out / "progress.gif")


def _main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()
