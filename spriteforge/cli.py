"""The `spriteforge` command line: parse, build a config, call the library. Nothing else lives here."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .config import (ATTR_GUIDANCE_HELP, SAMPLERS, ConfigError, DataConfig, RunConfig, SampleConfig, apply_overrides,
                     field_help)

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="spriteforge: train a small diffusion model on your own sprites on a laptop CPU, "
                       "sample it, and export game-ready sprite sheets.")
data_app = typer.Typer(no_args_is_help=True, help="Data tools: export the built-in sprite set, slice sheets.")
app.add_typer(data_app, name="data")


def _keys_epilog() -> str:
    lines = ["Every config field can be set with --set section.key=value (repeatable), or in a --config YAML file:\n\n"]
    for key, (default, comment) in field_help().items():
        lines.append(f"  {key} = {default}    {comment}\n\n")
    return "".join(lines)


def fail(msg: str, code: int = 2):
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _user_errors():
    """The error types that mean bad input: shown as one line, never as a traceback."""
    from .data.dataset import DataError
    from .training.checkpoint import CheckpointError
    from .training.loop import RunExistsError
    return (ConfigError, DataError, CheckpointError, RunExistsError, FileExistsError, FileNotFoundError)


def _run(fn):
    try:
        return fn()
    except _user_errors() as e:
        fail(str(e))


@app.command(epilog=_keys_epilog())
def train(
    data: str = typer.Option("builtin", "--data", help="Image folder to train on, or 'builtin' for the procedural sprite set."),
    out: Path = typer.Option(..., "--out", help="Run folder to create (config, checkpoints, samples, logs)."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Model size: tiny | small | base."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Wall-clock training budget in minutes."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimizer steps budget."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML/JSON config file (sections data/model/diffusion/train)."),
    size: Optional[int] = typer.Option(None, "--size", help="Training resolution in pixels (data.size)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per optimizer step (train.batch_size)."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (train.lr)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for init, batches and noise (train.seed)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda | cuda:N (train.device)."),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16", help="bf16 autocast (train.bf16)."),
    hflip: Optional[bool] = typer.Option(None, "--hflip/--no-hflip", help="Random horizontal flips (data.hflip)."),
    fit: Optional[str] = typer.Option(None, "--fit", help="crop | pad: how non-square images become square (data.fit)."),
    resize_filter: Optional[str] = typer.Option(None, "--filter", help="Resize filter for non-integer scale factors (data.resize_filter)."),
    strict: Optional[bool] = typer.Option(None, "--strict/--no-strict", help="Fail on the first unreadable image instead of skipping it."),
    set_: list[str] = typer.Option([], "--set", help="Any config field: --set train.lr=1e-3 (repeatable; keys below)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete and replace an existing run folder."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config and exit."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
):
    """Train a model on a folder of images (or the built-in sprite set)."""
    def go():
        cfg = RunConfig.load(config) if config else RunConfig()
        overrides = [f"data.source={data}"] if (data != "builtin" or not config) else []
        for key, val in (("model.preset", preset), ("train.minutes", minutes), ("train.steps", steps),
                         ("data.size", size), ("train.batch_size", batch_size), ("train.lr", lr), ("train.seed", seed),
                         ("train.device", device), ("train.bf16", bf16), ("data.hflip", hflip), ("data.fit", fit),
                         ("data.resize_filter", resize_filter), ("data.strict", strict)):
            if val is not None:
                overrides.append(f"{key}={json.dumps(val) if isinstance(val, (bool, str)) else val}")
        cfg = apply_overrides(cfg, overrides + list(set_))
        if data not in ("builtin", "builtin-sheets") and not Path(data).exists():
            raise ConfigError(f"`--data {data}`: no such folder (use 'builtin' for the built-in sprite set)")
        if print_config:
            typer.echo(cfg.to_yaml())
            return
        if not cfg.train.steps and not cfg.train.minutes and not resume:
            raise ConfigError("set a training budget with --minutes M and/or --steps N")
        from .training.loop import train as run_train
        try:
            result = run_train(cfg, out, resume=resume, overwrite=overwrite, quiet=quiet)
        except KeyboardInterrupt:
            fail("aborted by a second Ctrl-C; the last checkpoint on disk is intact", code=130)
        typer.echo(f"done: {result.step} steps, {result.images_seen} images in {result.seconds / 60:.1f} min, "
                   f"peak memory {result.peak_rss_gb:.2f} GB -> {out}")
        if not result.interrupted:
            typer.echo(f"samples: {out / 'samples' / 'final.png'}   learning: {out / 'progress.gif'}   loss: {out / 'loss.png'}")
        else:
            raise typer.Exit(130)
    _run(go)


@app.command()
def sample(
    model: str = typer.Argument(..., help="Run folder (uses its latest checkpoint) or a checkpoint/weights .safetensors file."),
    n: int = typer.Option(16, "--n", help="Number of images."),
    sampler: str = typer.Option("dpmpp-2m", "--sampler", help=f"One of: {', '.join(SAMPLERS)}."),
    steps: int = typer.Option(20, "--steps", help="Sampler steps."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same pixels on the same machine."),
    out: Path = typer.Option(Path("grid.png"), "--out", help="Grid PNG to write; single images go to <out stem>/."),
    class_name: Optional[str] = typer.Option(None, "--class", help="Class name (class-conditional models)."),
    cfg: float = typer.Option(1.0, "--cfg", help="Classifier-free guidance scale (1 = off)."),
    attr_guidance: str = typer.Option("0", "--attr-guidance", help=ATTR_GUIDANCE_HELP),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Caption to sample (text-conditional models)."),
    negative_prompt: str = typer.Option("", "--negative-prompt", help="What guidance steers away from (text models)."),
    init: Optional[Path] = typer.Option(None, "--init", help="Image-to-image: start from this image (SDEdit)."),
    strength: float = typer.Option(0.6, "--strength", help="With --init: how much to change it, in (0, 1]."),
    mask: Optional[Path] = typer.Option(None, "--mask", help="With --init: inpaint; white pixels of the mask are regenerated, the rest kept exactly."),
    outpaint: list[str] = typer.Option([], "--outpaint", help="With --init: extend the canvas, e.g. right=8: the image moves 8 px left and the new 8 px strip is generated (repeatable: left/right/top/bottom)."),
    attr: list[str] = typer.Option([], "--attr", help="Attribute models: set one attribute, e.g. --attr palette=red (repeatable)."),
    pose: Optional[Path] = typer.Option(None, "--pose", help="Pose models: a pose JSON; image i is drawn in pose i (mod the pose count)."),
    control_map: list[str] = typer.Option([], "--control-map", help="Control models: KIND=IMAGE, a grayscale map (edges, silhouette) of the model's size (repeatable)."),
    pose_template: bool = typer.Option(True, "--pose-template/--no-pose-template", help="Pose models of the built-in set without --pose or --control-map: draw image i in a pose of the requested action's cycle (the renderer's skeleton, as animate does); off: the model picks the pose freely."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto."),
    bf16: bool = typer.Option(False, "--bf16/--no-bf16", help="bf16 autocast while sampling."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output files."),
):
    """Generate images from a trained model: a grid PNG plus every single image as RGBA PNG."""
    def go():
        from PIL import Image

        from .images import atomic_save, make_grid, save_images
        from .pipeline import generate, load_model
        from .runtime import pick_device
        sc = SampleConfig(sampler=sampler, steps=steps, n=n, seed=seed, cfg=cfg, class_name=class_name,
                          prompt=prompt, negative_prompt=negative_prompt, attr_guidance=attr_guidance)
        singles = out.with_suffix("")
        if not overwrite and (out.exists() or (singles.exists() and any(singles.iterdir()))):
            raise FileExistsError(f"{out} (or {singles}/) already exists; pass --overwrite to replace it")
        if (mask is not None or outpaint) and init is None:
            raise ConfigError("`--mask` and `--outpaint` need `--init IMAGE` (the image to inpaint or extend)")
        if mask is not None and outpaint:
            raise ConfigError("use `--mask` or `--outpaint`, not both")
        m = load_model(model, pick_device(device))
        extra = {}
        if init is not None:
            init_t = _load_model_image(init, m, "--init").expand(n, -1, -1, -1)
            if outpaint:
                from .pipeline import outpaint_canvas
                moved, keep = outpaint_canvas(init_t[:1], _parse_sides(outpaint))
                extra.update(known=moved.expand(n, -1, -1, -1), known_mask=keep.expand(n, -1, -1, -1))
            elif mask is not None:
                keep = (_load_model_image(mask, m, "--mask", gray=True).float() < 128).float()
                extra.update(known=init_t, known_mask=keep.expand(n, -1, -1, -1))
            else:
                extra.update(init=init_t, strength=strength)
        if attr:
            if not m.config.model.attributes:
                raise ConfigError("`--attr`: this model was trained without attribute labels")
            extra["attributes"] = m.attribute_row(None if m.config.model.text_encoder else prompt,
                                                  _parse_attrs(attr))[None].expand(n, -1)
        if pose is not None or control_map:
            extra["control"] = _sample_control(m, n, pose, control_map)
        elif pose_template and (prompt or attr) and init is None:
            from .animation.animate import template_poses
            from .data.conditions import pose_control
            poses = template_poses(m, prompt or "", n, _parse_attrs(attr))
            if poses is not None:  # a built-in pose model asked for an action: spread the images over its cycle
                extra["control"] = pose_control(poses, m.config.model)
        imgs = _with_progress(f"sampling {n} x {steps} steps ({sampler})", steps,
                              lambda cb: generate(m, sc, callback=cb, bf16=bf16, **extra))
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(Image.fromarray(make_grid(imgs, scale=max(1, 128 // imgs.shape[-1]))), out)
        save_images(imgs, singles)
        typer.echo(f"wrote {out} and {n} images in {singles}/ (model {m.path}, step {m.step})")
    _run(go)


def _load_model_image(path: Path, model, flag: str, gray: bool = False):
    """An image as a uint8 [1, C, H, W] tensor of the model's size and channels (clear error otherwise)."""
    import numpy as np
    import torch
    from PIL import Image, UnidentifiedImageError

    from .data.dataset import DataError
    try:
        img = Image.open(path)
        img.load()
    except (FileNotFoundError, UnidentifiedImageError, OSError) as e:
        raise DataError(f"`{flag} {path}`: cannot read the image ({e})") from None
    c, size = model.shape[0], model.shape[1]
    if img.size != (size, size):
        raise DataError(f"`{flag} {path}` is {img.size[0]}x{img.size[1]}; this model makes {size}x{size} images")
    arr = np.asarray(img.convert("L" if gray else ("RGBA" if c == 4 else "RGB")))
    arr = arr[..., None] if gray else arr
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None]


def _sample_control(model, n: int, pose: Path | None, maps: list[str]):
    """float [n, Cc, H, W] control input from --pose and --control-map KIND=IMAGE (zeros for maps not given)."""
    import numpy as np
    import torch

    from .config import CONTROL_CHANNELS
    from .data.conditions import fit_poses, pose_control
    from .data.control import load_control_image
    mc = model.config.model
    if not mc.control_channels:
        raise ConfigError("`--pose`/`--control-map`: this model was trained without control maps")
    out = torch.zeros(n, mc.control_channels, mc.image_size, mc.image_size)
    if pose is not None:
        kps = _load_poses(pose, model)
        if model.pose_box is not None:
            kps = fit_poses(kps, model.pose_box)
        out += pose_control(kps[np.arange(n) % len(kps)], mc)
    for item in maps:
        kind, _, path = item.partition("=")
        if kind not in mc.control or kind == "pose" or not path:
            raise ConfigError(f"`--control-map {item}` must be KIND=IMAGE with KIND one of this model's maps "
                              f"{[k for k in mc.control if k != 'pose']} (poses go in --pose)")
        start = sum(CONTROL_CHANNELS[k] for k in mc.control[:mc.control.index(kind)])
        img = load_control_image(path, mc.image_size, channels=1)
        out[:, start] = torch.from_numpy(np.asarray(img, dtype=np.float32).reshape(mc.image_size, mc.image_size)) / 255
    return out


def _parse_sides(items: list[str]) -> dict[str, int]:
    """["right=8", "top=4"] -> {"right": 8, "top": 4}."""
    out = {}
    for item in items:
        side, _, px = item.partition("=")
        if side not in ("left", "right", "top", "bottom") or not px.isdigit():
            raise ConfigError(f"`--outpaint {item}` must look like right=8 (sides: left, right, top, bottom)")
        out[side] = int(px)
    return out


def _parse_attrs(items: list[str]) -> dict[str, str]:
    """["palette=red", "action=walk"] -> {"palette": "red", "action": "walk"}."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"`--attr {item}` must look like name=value, e.g. --attr palette=red")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _load_poses(path: Path, model):
    """A pose JSON file/folder as [F, 18, 3] keypoints in the model's pixels."""
    from .data.pose import read_pose_json, rescale_pose
    seq = read_pose_json(path)
    if seq.width is None:  # no image size in the file: take the coordinates as the model's pixels
        return seq.keypoints
    return rescale_pose(seq.keypoints, (seq.width, seq.height), model.shape[1], mode="fit")


def _with_progress(desc: str, total: int, fn):
    from rich.progress import Progress
    with Progress(transient=True) as p:
        task = p.add_task(desc, total=total)
        return fn(lambda info: p.update(task, completed=info["i"] + 1))


@app.command()
def info(path: Path = typer.Argument(..., help="Run folder, checkpoint or weights file.")):
    """Print a model's config, parameter count, training progress and file sizes."""
    def go():
        from .pipeline import resolve_checkpoint
        from .training.checkpoint import list_checkpoints, read_metadata
        ckpt = resolve_checkpoint(path)
        meta = read_metadata(ckpt)
        cfg = RunConfig.from_dict(json.loads(meta["config"]))
        from .models.unet import UNet, count_parameters
        n_params = count_parameters(UNet(cfg.model))
        typer.echo(f"file: {ckpt} ({_mb(ckpt)})  format: {meta['format']}  spriteforge {meta.get('version')}")
        typer.echo(f"step: {meta['step']}  images seen: {meta.get('images_seen', '?')}  "
                   f"training time: {float(meta.get('elapsed', 0)) / 60:.1f} min")
        typer.echo(f"model: {cfg.model.preset}, {n_params:,} parameters ({n_params * 4 / 2**20:.1f} MB fp32, "
                   f"{n_params * 2 / 2**20:.1f} MB fp16), {cfg.model.in_channels} channels, {cfg.model.image_size}px")
        classes = json.loads(meta["class_names"])
        typer.echo(f"classes ({len(classes)}): {', '.join(classes) if classes else '(unconditional)'}")
        for name, values in json.loads(meta.get("extra", "{}")).get("attribute_values", {}).items():
            typer.echo(f"attribute {name}: {', '.join(values)}")
        if cfg.model.control:
            typer.echo(f"control maps: {', '.join(cfg.model.control)} ({cfg.model.control_channels} input channels)")
        if cfg.model.text_encoder:
            typer.echo(f"text encoder: {cfg.model.text_encoder}")
        if path.is_dir():
            for p in list_checkpoints(path):
                typer.echo(f"  checkpoint {p.name}: {_mb(p)}")
        typer.echo("config:")
        typer.echo(cfg.to_yaml())
    _run(go)


def _mb(p: Path) -> str:
    return f"{p.stat().st_size / 2**20:.2f} MB"


@app.command()
def export(
    model: Path = typer.Argument(..., help="Run folder or checkpoint."),
    out: Path = typer.Option(..., "--out", help="Weights file to write (.safetensors)."),
    dtype: str = typer.Option("fp16", "--dtype", help="fp16 | bf16 | fp32."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file."),
):
    """Write a small weights-only file (EMA weights, half precision, config embedded) for sharing."""
    def go():
        from .pipeline import resolve_checkpoint
        from .training.checkpoint import export_weights
        if dtype not in ("fp16", "bf16", "fp32"):
            raise ConfigError(f"`--dtype {dtype}` must be fp16, bf16 or fp32")
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")
        ckpt = resolve_checkpoint(model)
        export_weights(ckpt, out, dtype)
        typer.echo(f"wrote {out}: {_mb(out)} ({dtype} EMA weights; checkpoint {ckpt.name} was {_mb(ckpt)})")
    _run(go)


@app.command()
def animate(
    model: str = typer.Argument(..., help="'builtin' (the bundled sprite model), a run folder or a checkpoint."),
    what: str = typer.Argument("", help="Prompt (text models, e.g. 'a red knight walking right') or class name."),
    frames: int = typer.Option(8, "--frames", help="Frames in the animation (1-16 and beyond)."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same frames on the same machine."),
    out: Path = typer.Option(..., "--out", help="Folder for sheet.png, frames/, previews, sheet.json, .tres."),
    steps: int = typer.Option(20, "--steps", help="Sampler steps."),
    sampler: str = typer.Option("dpmpp-2m", "--sampler", help=f"One of: {', '.join(SAMPLERS)}."),
    cfg: float = typer.Option(2.0, "--cfg", help="Guidance scale (1 = off)."),
    negative_prompt: str = typer.Option("", "--negative-prompt", help="What to steer away from (text models)."),
    attr_guidance: str = typer.Option("0", "--attr-guidance", help=ATTR_GUIDANCE_HELP),
    loop: bool = typer.Option(True, "--loop/--no-loop", help="Looping previews (frame phases are always cyclic)."),
    name: Optional[str] = typer.Option(None, "--name", help="Animation name for files and tags (default: from the prompt)."),
    columns: Optional[int] = typer.Option(None, "--columns", help="Sheet columns (default: one row up to 16 frames)."),
    padding: int = typer.Option(0, "--padding", help="Transparent pixels between sheet cells."),
    duration_ms: int = typer.Option(100, "--duration-ms", help="Frame duration in previews, JSON and .tres."),
    scale: int = typer.Option(4, "--scale", help="Integer nearest-neighbour upscaling of the previews only."),
    palette_colors: int = typer.Option(0, "--palette-colors", help="Quantise all frames to one shared palette of N colours."),
    palette: Optional[str] = typer.Option(None, "--palette", help="Or a given palette: '#aabbcc,#112233' or a palette image."),
    alpha_threshold: int = typer.Option(0, "--alpha-threshold", help="Crisp edges: alpha >= T becomes 255, else 0."),
    remove_strays: bool = typer.Option(False, "--remove-strays", help="Drop isolated single pixels."),
    reroll: list[int] = typer.Option([], "--reroll", help="With --from: regenerate frame K, keep the others (repeatable)."),
    from_dir: Optional[Path] = typer.Option(None, "--from", help="An earlier animate output to re-roll frames of or extend."),
    attr: list[str] = typer.Option([], "--attr", help="Attribute models: set one attribute, e.g. --attr palette=red (repeatable)."),
    pose_seq: Optional[Path] = typer.Option(None, "--pose-seq", help="Pose models: a pose JSON (file or folder, see docs) driving frame i with pose i; the frame count becomes the pose count."),
    pose_template: bool = typer.Option(True, "--pose-template/--no-pose-template", help="Pose models of the built-in set without --pose-seq: follow the renderer's skeleton cycle of the requested action (off: the model draws the motion freely)."),
    pose_fit: bool = typer.Option(True, "--pose-fit/--no-pose-fit", help="Scale and place the pose sequence where the training bodies stand (off: use the file's coordinates, rescaled to the model size)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | auto."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace files in --out."),
):
    """Generate an animation with a frame-set model and export it as a game-ready sprite sheet."""
    def go():
        from .animation.animate import Cleanup, animate as run_animate, clean, load_frames, slug
        from .animation.export import export_animation
        from .pipeline import load_model
        from .runtime import pick_device
        m = load_model(model, pick_device(device))
        base = load_frames(from_dir) if from_dir else None
        if reroll and base is None:
            raise ConfigError("`--reroll` needs `--from DIR` (the animation to re-roll frames of)")
        poses = _load_poses(pose_seq, m) if pose_seq else None
        if poses is not None and len(poses) != frames:
            typer.echo(f"--pose-seq {pose_seq} has {len(poses)} poses: animating {len(poses)} frames")
        n_frames = len(poses) if poses is not None else frames
        imgs = _with_progress(f"animating {n_frames} frames x {steps} steps", steps,
                              lambda cb: run_animate(m, what, frames=frames, seed=seed, sampler=sampler, steps=steps,
                                                     cfg=cfg, negative_prompt=negative_prompt,
                                                     reroll=list(reroll) or None, base_frames=base, callback=cb,
                                                     poses=poses, fit_poses=pose_fit, attrs=_parse_attrs(attr),
                                                     pose_template=pose_template, attr_guidance=attr_guidance))
        imgs = clean(imgs, Cleanup(palette_colors, palette, alpha_threshold, remove_strays))
        anim_name = name or slug(what)
        export_animation(imgs, out, name=anim_name, columns=columns, padding=padding, duration_ms=duration_ms,
                         loop=loop, scale=scale, overwrite=overwrite)
        typer.echo(f"wrote {out}/sheet.png ({len(imgs)} frames), frames/, preview.gif/.png/.webp, "
                   f"sheet.json (Aseprite), {anim_name}.tres (Godot 4)")
    _run(go)


@app.command("eval")
def eval_cmd(
    model: str = typer.Argument(..., help="Run folder (uses its latest checkpoint), checkpoint/weights file, or 'builtin'."),
    out: Path = typer.Option(..., "--out", help="Folder for report.json, report.md and the pictures (new or empty)."),
    data: Optional[str] = typer.Option(None, "--data", help="Reference images: a folder or 'builtin' (default: the data the run trained on)."),
    n: int = typer.Option(1000, "--n", help="Samples to generate (at least 50; compare numbers only at equal n)."),
    sampler: str = typer.Option("dpmpp-2m", "--sampler", help=f"One of: {', '.join(SAMPLERS)}."),
    steps: int = typer.Option(20, "--steps", help="Sampler steps."),
    cfg: float = typer.Option(1.0, "--cfg", help="Classifier-free guidance scale (1 = off)."),
    seed: int = typer.Option(0, "--seed", help="Sampling and metric seed: the same seed gives the same numbers."),
    heldout: str = typer.Option("auto", "--heldout", help="Reference split: run (the run's own held-out images), seeded, or auto (run when --data is the run's data)."),
    batch_size: int = typer.Option(64, "--batch-size", help="Samples per sampling batch."),
    threads: int = typer.Option(0, "--threads", help="Torch threads (0 = torch default; 1 is often fastest on a busy CPU)."),
    requests: str = typer.Option("data", "--requests", help="data: ask for what the data's captions/classes name; novel: attribute combinations no training character has (attribute models, built-in set)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty --out folder."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output (the summary table is still printed)."),
):
    """Measure a model against held-out real sprites: FD-EffNet, KID, precision/recall, SWD, memorisation,
    alpha, adherence, each beside its real-vs-real floor; writes report.md/report.json and pictures."""
    def go():
        from rich.progress import Progress

        from .evaluation.evaluate import evaluate
        from .evaluation.report import print_summary
        sc = SampleConfig(sampler=sampler, steps=steps, cfg=cfg, seed=seed)
        with Progress(transient=True, disable=quiet) as p:
            task = p.add_task(f"sampling {n} x {steps} steps ({sampler})", total=n)
            rep = evaluate(model, data, n=n, sample_cfg=sc, seed=seed, out_dir=out, heldout=heldout,
                           overwrite=overwrite, batch_size=batch_size, device=device, threads=threads or None,
                           requests=requests,
                           log=(lambda m: None) if quiet else p.console.print,
                           progress=lambda done, total: p.update(task, completed=done))
        print_summary(rep)
        typer.echo(f"wrote {out}/report.md, report.json, samples.png, real.png, closest_pairs.png "
                   f"in {rep['timing_seconds']['total']:.0f} s")
    _run(go)


@app.command()
def compare(
    models: list[str] = typer.Argument(..., help="Run folder(s) or checkpoint(s); with checkpoint as an axis, one run folder compares its kept checkpoints."),
    rows: str = typer.Option("sampler", "--rows", help="Setting per row: sampler | steps | cfg | seed | checkpoint."),
    cols: str = typer.Option("steps", "--cols", help="Setting per column: sampler | steps | cfg | seed | checkpoint."),
    samplers: Optional[str] = typer.Option(None, "--samplers", help="Samplers, e.g. euler,heun,dpmpp-2m."),
    steps: Optional[str] = typer.Option(None, "--steps", help="Step counts, e.g. 5,10,20."),
    cfg: Optional[str] = typer.Option(None, "--cfg", help="Guidance scales, e.g. 1,2,4."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Seeds, e.g. 0,1,2 (every cell uses the same seed unless seed is an axis)."),
    n: int = typer.Option(4, "--n", help="Samples per cell."),
    out: Path = typer.Option(Path("compare.png"), "--out", help="PNG to write."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
    metrics: bool = typer.Option(False, "--metrics", help="Print SWD under every cell (from --metrics-n extra samples vs --data)."),
    fd: bool = typer.Option(False, "--fd", help="With --metrics: FD-EffNet per cell too (slower)."),
    data: Optional[str] = typer.Option(None, "--data", help="Reference for --metrics: a folder or 'builtin' (default: the run's data)."),
    metrics_n: int = typer.Option(64, "--metrics-n", help="Samples per cell for --metrics."),
    class_name: Optional[str] = typer.Option(None, "--class", help="Class for every sample (default: cycle through the classes)."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="Prompt for every sample (text models)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | cuda:N | auto."),
):
    """One labelled grid of samples across settings (same seeds in every cell)."""
    def go():
        from rich.progress import Progress

        from .evaluation.compare import compare_grid, parse_list
        with Progress(transient=True) as p:
            task = p.add_task("sampling the grid's cells", total=None)
            res = compare_grid(
                models, rows=rows, cols=cols, samplers=parse_list(samplers, str, "--samplers"),
                steps=parse_list(steps, int, "--steps"), cfgs=parse_list(cfg, float, "--cfg"),
                seeds=parse_list(seeds, int, "--seeds"), n=n, out=out, overwrite=overwrite, metrics=metrics, fd=fd,
                data=data, metrics_n=metrics_n, class_name=class_name, prompt=prompt, device=device,
                progress=lambda done, total: p.update(task, completed=done, total=total))
        typer.echo(f"wrote {out}: {len(res['rows'])} rows ({rows}) x {len(res['cols'])} columns ({cols}), {n} samples per cell")
    _run(go)


@data_app.command("builtin")
def data_builtin(
    out: Path = typer.Option(..., "--out", help="Folder to write (must not exist or be empty)."),
    size: int = typer.Option(32, "--size", help="Sprite size in pixels."),
    characters: int = typer.Option(24, "--characters", help="Number of characters."),
    seed: int = typer.Option(0, "--seed", help="Seed of the procedural set."),
):
    """Write the built-in procedural sprite set as an ordinary image folder with captions and labels."""
    def go():
        DataConfig(size=size, builtin_characters=characters)  # validates the numbers with flag names
        from .data.builtin import export_builtin
        path = export_builtin(out, size=size, characters=characters, seed=seed)
        n = sum(1 for _ in Path(path).rglob("*.png"))
        typer.echo(f"wrote {n} sprites, metadata.jsonl and labels.json to {path}")
    _run(go)


@data_app.command("slice")
def data_slice(
    sheet: Path = typer.Argument(..., help="Sprite sheet image."),
    out: Path = typer.Option(..., "--out", help="Folder for the frames (written pixel-exact, in reading order)."),
    cols: Optional[int] = typer.Option(None, "--cols", help="Columns of the grid."),
    rows: Optional[int] = typer.Option(None, "--rows", help="Rows of the grid."),
    frame_size: Optional[str] = typer.Option(None, "--frame-size", help="Frame size WxH, e.g. 32x32 (instead of --cols/--rows)."),
    margin: int = typer.Option(0, "--margin", help="Pixels around the whole grid."),
    spacing: int = typer.Option(0, "--spacing", help="Pixels between cells."),
    auto: bool = typer.Option(False, "--auto", help="Detect frames from transparent or uniform gutters."),
    skip_empty: bool = typer.Option(False, "--skip-empty", help="Drop fully transparent cells."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty folder."),
):
    """Cut a sprite sheet into frames."""
    def go():
        from PIL import Image

        from .animation.sheets import load_rgba, slice_auto, slice_grid
        size = None
        if frame_size:
            try:
                w, h = (int(v) for v in frame_size.lower().split("x"))
            except ValueError:
                raise ConfigError(f"`--frame-size {frame_size}` must look like 32x32") from None
            size = (w, h)
        if not auto and not (cols or rows or size):
            raise ConfigError("give the grid: --cols C --rows R, or --frame-size WxH, or --auto")
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise FileExistsError(f"{out} is not empty; pass --overwrite to write into it")
        img = load_rgba(sheet)
        frames = slice_auto(img, path=str(sheet)) if auto else slice_grid(
            img, cols=cols, rows=rows, frame_size=size, margin=margin, spacing=spacing, path=str(sheet),
            skip_empty=skip_empty)
        out.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(frames):
            Image.fromarray(f, "RGBA").save(out / f"{sheet.stem}_{i}.png")
        typer.echo(f"wrote {len(frames)} frames of {frames[0].shape[1]}x{frames[0].shape[0]} to {out}")
    _run(go)


@app.command()
def studio(
    port: int = typer.Option(7860, "--port", help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; anything but localhost needs --auth."),
    workspace: Path = typer.Option(Path("studio"), "--workspace", help="Folder for the gallery, runs, data and uploads (created if missing)."),
    auth: Optional[str] = typer.Option(None, "--auth", help="user:password for the UI and the API (or set SPRITEFORGE_STUDIO_AUTH)."),
    device: str = typer.Option("cpu", "--device", help="Device for generation: cpu | cuda | cuda:N | auto."),
):
    """Start the web studio: generate, browse the gallery, compare and train from a browser (see docs/studio.md)."""
    def go():
        from .runtime import pick_device
        from .studio.app import serve
        serve(workspace, host=host, port=port, auth=auth, device=str(pick_device(device)))
    _run(go)


def main():
    app()


if __name__ == "__main__":
    sys.exit(main())
