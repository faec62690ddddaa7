"""Pictures a person looks at: sample grids, the learning GIF, and the loss plot.

Grids are composited on a checkerboard so transparency (the alpha a sprite model learns) is
visible; single generated images are always saved as real RGBA PNGs elsewhere.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw


def checkerboard(h: int, w: int, cell: int = 4, a=(204, 204, 204), b=(244, 244, 244)) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    mask = ((yy // cell + xx // cell) % 2).astype(bool)
    out = np.empty((h, w, 3), np.uint8)
    out[mask], out[~mask] = a, b
    return out


def to_hwc(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """uint8 [N,C,H,W] tensor or [N,H,W,C] array -> uint8 [N,H,W,C] array."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().permute(0, 2, 3, 1).numpy()
    return np.asarray(images, dtype=np.uint8)


def flatten_alpha(img: np.ndarray, cell: int = 4) -> np.ndarray:
    """[H,W,3|4] -> [H,W,3]: RGBA composited on a checkerboard, RGB unchanged."""
    if img.shape[-1] == 3:
        return img
    bg = checkerboard(img.shape[0], img.shape[1], cell).astype(np.float32)
    a = img[..., 3:4].astype(np.float32) / 255
    return (img[..., :3] * a + bg * (1 - a)).round().astype(np.uint8)


def make_grid(images, nrow: int | None = None, pad: int = 2, scale: int = 1, pad_value: int = 255) -> np.ndarray:
    """Tile images (uint8 [N,C,H,W] or [N,H,W,C]) into one RGB picture, upscaled by `scale` (nearest)."""
    imgs = to_hwc(images)
    n, h, w = imgs.shape[:3]
    nrow = nrow or math.ceil(math.sqrt(n))
    ncol = math.ceil(n / nrow)
    hs, ws = h * scale, w * scale
    grid = np.full((ncol * (hs + pad) + pad, nrow * (ws + pad) + pad, 3), pad_value, np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        tile = flatten_alpha(np.repeat(np.repeat(imgs[i], scale, 0), scale, 1), cell=4 * scale)
        grid[pad + r * (hs + pad): pad + r * (hs + pad) + hs, pad + c * (ws + pad): pad + c * (ws + pad) + ws] = tile
    return grid


def atomic_save(img: Image.Image, path: str | Path, **kw):
    """Save through a temp file and rename, so a crash never leaves a half-written picture."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    img.save(tmp, format=kw.pop("format", None) or path.suffix.lstrip(".").upper().replace("JPG", "JPEG"), **kw)
    os.replace(tmp, path)


def save_images(images: torch.Tensor, folder: str | Path, prefix: str = "sample") -> list[Path]:
    """Save each uint8 [C,H,W] image as its own PNG (RGBA stays RGBA)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(to_hwc(images)):
        p = folder / f"{prefix}_{i:04d}.png"
        atomic_save(Image.fromarray(img, "RGBA" if img.shape[-1] == 4 else "RGB"), p)
        paths.append(p)
    return paths


def label(img: np.ndarray, text: str, height: int = 14) -> np.ndarray:
    """Put a caption strip above an RGB picture."""
    out = Image.new("RGB", (img.shape[1], img.shape[0] + height), (255, 255, 255))
    out.paste(Image.fromarray(img), (0, height))
    ImageDraw.Draw(out).text((3, 1), text, fill=(0, 0, 0))
    return np.asarray(out)


def save_gif(frames: list[np.ndarray], path: str | Path, duration_ms: int = 400, last_hold_ms: int = 1500):
    if not frames:
        return
    h = max(f.shape[0] for f in frames)
    w = max(f.shape[1] for f in frames)
    pics = []
    for f in frames:
        canvas = np.full((h, w, 3), 255, np.uint8)
        canvas[: f.shape[0], : f.shape[1]] = f[..., :3]
        pics.append(Image.fromarray(canvas))
    durations = [duration_ms] * (len(pics) - 1) + [last_hold_ms]
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    pics[0].save(tmp, format="GIF", save_all=True, append_images=pics[1:], duration=durations, loop=0)
    os.replace(tmp, path)


def plot_curves(series: dict[str, list[tuple[float, float]]], path: str | Path, title: str = "",
                xlabel: str = "step", log_y: bool = True):
    """Line plot of named (x, y) series with matplotlib (Agg backend, no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name, pts in series.items():
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=name, linewidth=1.2, marker="o" if len(pts) < 30 else None, markersize=3)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
