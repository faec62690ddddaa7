"""Datasets: every source becomes an in-memory `ImageSet` (see dataset.py)."""

from __future__ import annotations

from ..config import DataConfig
from .dataset import DataError, ImageSet

__all__ = ["DataError", "ImageSet", "load_dataset"]


def load_dataset(cfg: DataConfig, log=None) -> ImageSet:
    """The dataset a config names: the built-in procedural sprites, or a folder of images."""
    if cfg.source == "builtin":
        from .builtin import render_builtin
        data = render_builtin(size=cfg.size, characters=cfg.builtin_characters, seed=cfg.builtin_seed)
        if cfg.channels == "rgb":  # composite the transparent sprites over white, as the folder loader does
            a = data.images[:, 3:].float() / 255
            data.images = (data.images[:, :3].float() * a + 255 * (1 - a)).round().to(data.images.dtype)
        return data
    if cfg.source == "builtin-sheets":  # the whole-sheet baseline (see render_builtin_sheets)
        from .builtin import render_builtin_sheets
        return render_builtin_sheets(size=cfg.size, characters=cfg.builtin_characters, seed=cfg.builtin_seed)
    from .folder import load_image_folder
    return load_image_folder(cfg.source, cfg, **({"log": log} if log else {}))
