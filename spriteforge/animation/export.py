"""Exporting animations as game-ready files, plus pixel-art clean-up of generated frames.

`export_animation` writes, into one folder:

* ``sheet.png`` - every frame on an exact grid (transparent background, optional padding
  between cells), and ``frames/<name>_<i>.png`` - each frame on its own;
* ``preview.gif``, ``preview.png`` (APNG) and ``preview.webp`` - looping previews, optionally
  upscaled by an integer factor with nearest neighbour (the sheet and frames never are);
* ``sheet.json`` - Aseprite "Export Sprite Sheet" JSON (Hash layout);
* ``<name>.tres`` - a Godot 4 ``SpriteFrames`` resource whose frames are ``AtlasTexture``
  regions of ``sheet.png``.

Format decisions (sources checked):

* Aseprite JSON: per frame ``frame`` {x,y,w,h}, ``rotated``, ``trimmed``, ``spriteSourceSize``,
  ``sourceSize``, ``duration`` (ms); ``meta`` {app, version, image, format, size{w,h}, scale,
  frameTags[{name, from, to, direction}]} - as Aseprite writes it and as typed by loaders such as
  three-aseprite / the ``aseprite`` crate. Frame keys are the frame index ("0", "1", ...):
  Phaser's ``anims.createFromAseprite`` looks frames up by ``i.toString()`` and its docs ask for
  Aseprite's "Item Filename" to be just ``{frame}``.
* Godot 4 text resource: header ``[gd_resource type="SpriteFrames" load_steps=N format=3]``
  (``load_steps`` = resources + 1; ignored since Godot 4.6, harmless before), one
  ``ext_resource`` Texture2D, one ``AtlasTexture`` sub_resource per frame with ``region =
  Rect2(x, y, w, h)``, and ``animations = [{"frames": [{"duration": d, "texture":
  SubResource("...")}], "loop": bool, "name": &"walk", "speed": fps}]``. ``duration`` is relative:
  a frame lasts duration / speed seconds (Godot SpriteFrames docs). An ext_resource path without
  ``res://`` is resolved relative to the .tres file by Godot's text loader
  (resource_format_text.cpp), so the default ``sheet.png`` works wherever the folder is
  copied inside a project; pass ``godot_res_dir="res://sprites/hero"`` for an absolute path.
* GIF: 1-bit transparency, so alpha < 128 becomes the transparent palette index; all frames
  share one global palette; ``disposal=2`` (restore to background) so a transparent pixel in
  frame k does not show frame k-1 through it. GIF delays are in 1/100 s: durations are
  rounded to 10 ms.
* APNG: lossless RGBA, ``disposal`` OP_BACKGROUND, ``blend`` OP_SOURCE. WebP: lossless with
  ``exact`` (transparent pixels keep their colour). Note: Pillow merges *identical consecutive*
  frames of GIF and APNG into one frame with the summed duration.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from spriteforge.data.dataset import DataError

FORMATS = ("png", "gif", "apng", "webp", "aseprite", "godot")


class ExportError(DataError):
    """An export cannot be written (e.g. it would overwrite a file); the message names the path."""


# --------------------------------------------------------------------------- checks

def _check_frames(frames: Sequence[np.ndarray], what: str = "frames") -> list[np.ndarray]:
    frames = list(frames)
    if not frames:
        raise ExportError(f"{what}: nothing to export (no frames)")
    out = []
    for i, f in enumerate(frames):
        f = np.asarray(f)
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 4:
            raise ExportError(f"{what}: frame {i} must be a uint8 RGBA array [H,W,4], got {f.dtype} {tuple(f.shape)}")
        out.append(f)
    sizes = {(f.shape[1], f.shape[0]) for f in out}
    if len(sizes) > 1:
        listing = ", ".join(f"{i}={f.shape[1]}x{f.shape[0]}" for i, f in enumerate(out))
        raise ExportError(f"{what}: all frames must have the same size for a grid sheet, got {listing}")
    return out


def _durations(duration_ms, n: int) -> list[int]:
    if isinstance(duration_ms, (int, float, np.integer, np.floating)):
        d = [int(round(float(duration_ms)))] * n
    else:
        d = [int(round(float(v))) for v in duration_ms]
        if len(d) != n:
            raise ExportError(f"duration_ms has {len(d)} entries for {n} frames")
    if any(v <= 0 for v in d):
        raise ExportError(f"durations must be > 0 ms, got {d}")
    return d


# --------------------------------------------------------------------------- sheet

def default_columns(n: int) -> int:
    """A single strip up to 16 frames, otherwise a near-square grid."""
    return n if n <= 16 else math.ceil(math.sqrt(n))


def make_sheet(frames: Sequence[np.ndarray], columns: int | None = None, padding: int = 0
               ) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Place equal-size frames on an exact grid in reading order.

    `padding` transparent pixels separate neighbouring cells (none around the outside), so
    the sheet is ``cols*w + (cols-1)*padding`` wide and `slice_grid(sheet, cols, rows,
    spacing=padding)` gives the frames back. Returns (sheet [H,W,4] uint8, rects) with one
    (x, y, w, h) per frame.
    """
    frames = _check_frames(frames)
    if padding < 0:
        raise ExportError(f"padding must be >= 0, got {padding}")
    n = len(frames)
    cols = default_columns(n) if columns is None else int(columns)
    if cols < 1:
        raise ExportError(f"columns must be >= 1, got {columns}")
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    h, w = frames[0].shape[:2]
    sheet = np.zeros((rows * h + (rows - 1) * padding, cols * w + (cols - 1) * padding, 4), np.uint8)
    rects = []
    for i, f in enumerate(frames):
        x, y = (i % cols) * (w + padding), (i // cols) * (h + padding)
        sheet[y:y + h, x:x + w] = f
        rects.append((x, y, w, h))
    return sheet, rects


def upscale(frame: np.ndarray, k: int) -> np.ndarray:
    """Integer nearest-neighbour upscale."""
    if k == 1:
        return frame
    return np.ascontiguousarray(np.repeat(np.repeat(frame, k, axis=0), k, axis=1))


# --------------------------------------------------------------------------- metadata formats

def aseprite_json(tags: Sequence[dict], rects: Sequence[tuple[int, int, int, int]], durations: Sequence[int],
                  image: str, sheet_size: tuple[int, int], layout: str = "hash") -> dict:
    """Aseprite sprite-sheet JSON. `tags`: [{"name", "from", "to", "direction"}] (inclusive indices)."""
    from spriteforge import __version__

    records = []
    for i, ((x, y, w, h), d) in enumerate(zip(rects, durations)):
        records.append((str(i), {
            "frame": {"x": x, "y": y, "w": w, "h": h},
            "rotated": False,
            "trimmed": False,
            "spriteSourceSize": {"x": 0, "y": 0, "w": w, "h": h},
            "sourceSize": {"w": w, "h": h},
            "duration": int(d),
        }))
    if layout == "hash":
        frames = {k: v for k, v in records}
    elif layout == "array":
        frames = [{"filename": k, **v} for k, v in records]
    else:
        raise ExportError(f"Aseprite JSON layout must be 'hash' or 'array', got {layout!r}")
    return {
        "frames": frames,
        "meta": {
            "app": "spriteforge",
            "version": __version__,
            "image": image,
            "format": "RGBA8888",
            "size": {"w": int(sheet_size[0]), "h": int(sheet_size[1])},
            "scale": "1",
            "frameTags": [{"name": t["name"], "from": int(t["from"]), "to": int(t["to"]),
                           "direction": t.get("direction", "forward")} for t in tags],
            "layers": [],
            "slices": [],
        },
    }


def _godot_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _godot_float(v: float) -> str:
    r = repr(float(round(v, 6)))
    return r if ("." in r or "e" in r) else r + ".0"


def godot_speed_and_durations(durations_ms: Sequence[int]) -> tuple[float, list[float]]:
    """SpriteFrames timing: speed in fps and per-frame relative durations (seconds = d / speed).

    The shortest frame gets duration 1.0 and sets the speed; longer frames are multiples."""
    base = min(durations_ms)
    return 1000.0 / base, [d / base for d in durations_ms]


def godot_sprite_frames(animations: Sequence[dict], rects: Sequence[tuple[int, int, int, int]],
                        texture_path: str) -> str:
    """Godot 4 SpriteFrames .tres text. `animations`: [{"name", "frames": [rect indices],
    "durations_ms": [...], "loop": bool}]."""
    lines = [f'[gd_resource type="SpriteFrames" load_steps={len(rects) + 2} format=3]', "",
             f'[ext_resource type="Texture2D" path={_godot_string(texture_path)} id="1_sheet"]', ""]
    for i, (x, y, w, h) in enumerate(rects):
        lines += [f'[sub_resource type="AtlasTexture" id="AtlasTexture_{i}"]',
                  'atlas = ExtResource("1_sheet")',
                  f"region = Rect2({x}, {y}, {w}, {h})",
                  "filter_clip = true", ""]
    anim_txt = []
    for a in animations:
        speed, rel = godot_speed_and_durations(a["durations_ms"])
        frames_txt = ", ".join(
            "{\n" + f'"duration": {_godot_float(d)},\n"texture": SubResource("AtlasTexture_{k}")' + "\n}"
            for k, d in zip(a["frames"], rel))
        anim_txt.append("{\n" + f'"frames": [{frames_txt}],\n"loop": {"true" if a.get("loop", True) else "false"},\n'
                        f'"name": &{_godot_string(a["name"])},\n"speed": {_godot_float(speed)}' + "\n}")
    lines += ["[resource]", "animations = [" + ", ".join(anim_txt) + "]", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- previews

def _gif_frames(frames: Sequence[np.ndarray]) -> tuple[list[Image.Image], int]:
    """RGBA frames -> P-mode frames over one global palette; returns (images, transparent index)."""
    opaque = [f[..., 3] >= 128 for f in frames]
    colors = np.concatenate([f[..., :3][m] for f, m in zip(frames, opaque)], axis=0) \
        if any(m.any() for m in opaque) else np.zeros((0, 3), np.uint8)
    uniq = np.unique(colors, axis=0) if len(colors) else np.zeros((1, 3), np.uint8)
    if len(uniq) > 255:
        _, pal = shared_palette([np.where(m[..., None], f, 0).astype(np.uint8) for f, m in zip(frames, opaque)],
                                n_colors=255)
        uniq = np.array([_hex_to_rgb(c) for c in pal], np.uint8)
    trans = len(uniq)                                     # transparent index right after the colours
    palette = np.zeros((256, 3), np.uint8)
    palette[:len(uniq)] = uniq
    flat_pal = palette.reshape(-1).tolist()
    images = []
    for f, m in zip(frames, opaque):
        idx = _nearest_index(f[..., :3].reshape(-1, 3), uniq).reshape(f.shape[:2]).astype(np.uint8)
        idx[~m] = trans
        im = Image.fromarray(idx, mode="P")
        im.putpalette(flat_pal)
        im.info["transparency"] = trans
        images.append(im)
    return images, trans


def save_gif(frames: Sequence[np.ndarray], path: str | Path, durations_ms: Sequence[int], loop: bool = True) -> None:
    images, trans = _gif_frames(frames)
    kw = dict(save_all=True, append_images=images[1:], duration=list(durations_ms), disposal=2,
              transparency=trans, background=trans, optimize=False)
    if loop:
        kw["loop"] = 0                                   # NETSCAPE extension: repeat forever
    images[0].save(path, format="GIF", **kw)


def save_apng(frames: Sequence[np.ndarray], path: str | Path, durations_ms: Sequence[int], loop: bool = True) -> None:
    from PIL import PngImagePlugin
    ims = [Image.fromarray(f, mode="RGBA") for f in frames]
    ims[0].save(path, format="PNG", save_all=True, append_images=ims[1:], duration=list(durations_ms),
                loop=0 if loop else 1, disposal=PngImagePlugin.Disposal.OP_BACKGROUND,
                blend=PngImagePlugin.Blend.OP_SOURCE, default_image=False)


def save_webp(frames: Sequence[np.ndarray], path: str | Path, durations_ms: Sequence[int], loop: bool = True) -> None:
    ims = [Image.fromarray(f, mode="RGBA") for f in frames]
    ims[0].save(path, format="WEBP", save_all=True, append_images=ims[1:], duration=list(durations_ms),
                loop=0 if loop else 1, lossless=True, exact=True, quality=100, method=4,
                background=(0, 0, 0, 0), minimize_size=False, allow_mixed=False)


# --------------------------------------------------------------------------- export

def export_animation(frames, out_dir: str | Path, name: str | None = None, columns: int | None = None,
                     padding: int = 0, duration_ms: int | Sequence[int] = 100, loop: bool = True, scale: int = 1,
                     formats: Sequence[str] = FORMATS, overwrite: bool = False,
                     godot_res_dir: str | None = None, json_layout: str = "hash") -> dict[str, object]:
    """Write one animation as sheet / frames / previews / Aseprite JSON / Godot SpriteFrames.

    `frames` is a list of equal-size uint8 RGBA arrays, or an `Animation` (its name and
    durations are then used unless `name` / a non-default `duration_ms` are given).
    `duration_ms`: one value for all frames or one per frame. `scale`: integer nearest upscale of
    the previews only. `formats` picks from ("png", "gif", "apng", "webp", "aseprite",
    "godot"); "aseprite" and "godot" also write sheet.png, which they reference. Existing
    files are never overwritten unless `overwrite=True` (then `ExportError` names the first
    one, before anything is written). Returns {"sheet", "frames", "gif", "apng", "webp",
    "json", "tres", "rects"} for what was written.
    """
    from spriteforge.animation.sheets import Animation

    if isinstance(frames, Animation):
        anim = frames
        name = name or anim.name
        frames = anim.frames
        if duration_ms == 100:                          # the default: keep the animation's own timing
            duration_ms = anim.durations_ms
    if not name:
        raise ExportError("export_animation: a name is required")
    if any(c in name for c in '/\\:*?"<>|') or name.strip() != name or name in (".", ".."):
        raise ExportError(f"export_animation: name {name!r} must be usable as a file name "
                          f"(no / \\ : * ? \" < > |, no surrounding spaces)")
    frames = _check_frames(frames, f"animation {name!r}")
    formats = tuple(formats)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ExportError(f"unknown export format(s) {bad}; choose from {FORMATS}")
    if int(scale) != scale or scale < 1:
        raise ExportError(f"scale must be an integer >= 1, got {scale}")
    scale = int(scale)
    durs = _durations(duration_ms, len(frames))
    out_dir = Path(out_dir)

    planned: dict[str, object] = {}
    want_sheet = any(f in formats for f in ("png", "aseprite", "godot"))
    if want_sheet:
        planned["sheet"] = out_dir / "sheet.png"
    if "png" in formats:
        planned["frames"] = [out_dir / "frames" / f"{name}_{i}.png" for i in range(len(frames))]
    if "gif" in formats:
        planned["gif"] = out_dir / "preview.gif"
    if "apng" in formats:
        planned["apng"] = out_dir / "preview.png"
    if "webp" in formats:
        planned["webp"] = out_dir / "preview.webp"
    if "aseprite" in formats:
        planned["json"] = out_dir / "sheet.json"
    if "godot" in formats:
        planned["tres"] = out_dir / f"{name}.tres"

    targets = [p for v in planned.values() for p in (v if isinstance(v, list) else [v])]
    if not overwrite:
        for p in targets:
            if p.exists():
                raise ExportError(f"{p}: already exists; pass overwrite=True to replace it "
                                  f"(nothing was written)")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)

    sheet, rects = make_sheet(frames, columns, padding)
    result: dict[str, object] = {"rects": rects}
    if want_sheet:
        Image.fromarray(sheet, mode="RGBA").save(planned["sheet"], format="PNG")
        result["sheet"] = planned["sheet"]
    if "png" in formats:
        (out_dir / "frames").mkdir(exist_ok=True)
        for f, p in zip(frames, planned["frames"]):
            Image.fromarray(f, mode="RGBA").save(p, format="PNG")
        result["frames"] = planned["frames"]
    previews = [upscale(f, scale) for f in frames] if any(k in formats for k in ("gif", "apng", "webp")) else []
    if "gif" in formats:
        save_gif(previews, planned["gif"], durs, loop)
        result["gif"] = planned["gif"]
    if "apng" in formats:
        save_apng(previews, planned["apng"], durs, loop)
        result["apng"] = planned["apng"]
    if "webp" in formats:
        save_webp(previews, planned["webp"], durs, loop)
        result["webp"] = planned["webp"]
    if "aseprite" in formats:
        data = aseprite_json([{"name": name, "from": 0, "to": len(frames) - 1, "direction": "forward"}],
                             rects, durs, "sheet.png", (sheet.shape[1], sheet.shape[0]), json_layout)
        _write_text(planned["json"], json.dumps(data, indent=1) + "\n")
        result["json"] = planned["json"]
    if "godot" in formats:
        tex = "sheet.png" if godot_res_dir is None else godot_res_dir.rstrip("/") + "/sheet.png"
        text = godot_sprite_frames([{"name": name, "frames": list(range(len(frames))), "durations_ms": durs,
                                     "loop": loop}], rects, tex)
        _write_text(planned["tres"], text)
        result["tres"] = planned["tres"]
    return result


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8", newline="\n")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- pixel-art clean-up

def _hex_to_rgb(c: str) -> tuple[int, int, int]:
    s = c.strip().lstrip("#")
    if len(s) not in (6, 8):
        raise DataError(f"palette colour {c!r} is not #rrggbb")
    try:
        return tuple(int(s[i:i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        raise DataError(f"palette colour {c!r} is not #rrggbb") from None


def _rgb_to_hex(c) -> str:
    return "#%02x%02x%02x" % tuple(int(v) for v in c[:3])


def _nearest_index(colors: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour (squared RGB distance; ties -> lowest index) per colour.
    Works on unique colours so large frames stay cheap."""
    if len(colors) == 0:
        return np.zeros(0, np.int64)
    uniq, inv = np.unique(colors.reshape(-1, 3), axis=0, return_inverse=True)
    best = np.empty(len(uniq), np.int64)
    pal = palette.astype(np.int32)
    for s in range(0, len(uniq), 4096):
        u = uniq[s:s + 4096].astype(np.int32)
        d = ((u[:, None, :] - pal[None, :, :]) ** 2).sum(-1)
        best[s:s + 4096] = d.argmin(1)
    return best[inv.reshape(-1)]


def _palette_from(palette) -> np.ndarray:
    """A palette given as hex strings, (r,g,b) tuples, a palette image path, a PIL image or an
    array -> unique RGB colours [K,3] (for images: the distinct colours of its visible pixels)."""
    if isinstance(palette, (str, Path)):               # a single string/path is a palette image file
        from spriteforge.animation.sheets import load_rgba
        palette = load_rgba(palette)
    if isinstance(palette, Image.Image):
        palette = np.array(palette.convert("RGBA"))
    if isinstance(palette, np.ndarray) and palette.ndim == 3:
        a = palette if palette.shape[2] == 4 else np.concatenate(
            [palette, np.full(palette.shape[:2] + (1,), 255, np.uint8)], axis=2)
        cols = a[..., :3][a[..., 3] > 0]
        _, first = np.unique(cols, axis=0, return_index=True)
        return cols[np.sort(first)].astype(np.uint8)
    cols = []
    for c in palette:
        cols.append(_hex_to_rgb(c) if isinstance(c, str) else tuple(int(v) for v in c[:3]))
    if not cols:
        raise DataError("palette is empty")
    return np.array(cols, np.uint8)


def shared_palette(frames: Sequence[np.ndarray], n_colors: int | None = None, palette=None
                   ) -> tuple[list[np.ndarray], list[str]]:
    """Map all frames onto ONE palette so that the frames of an animation agree on colours.

    With `palette` (list of "#rrggbb" / (r,g,b), or a palette image: its distinct visible colours)
    every visible pixel takes the nearest palette colour. Otherwise the visible pixels of all
    frames together are quantised (median cut, no dithering) to `n_colors` (default 16); if
    they already use no more colours than that, they are left exactly as they are. Alpha is
    kept; fully transparent pixels get colour 0. The mapping is a function of the colour only,
    so identical input pixels give identical output pixels in every frame.
    Returns (new frames, palette as "#rrggbb" strings).
    """
    frames = _check_frames(frames, "shared_palette")
    vis = [f[..., 3] > 0 for f in frames]
    colors = np.concatenate([f[..., :3][m] for f, m in zip(frames, vis)], axis=0)
    if palette is not None:
        pal = _palette_from(palette)
    else:
        n = 16 if n_colors is None else int(n_colors)
        if not 1 <= n <= 256:
            raise DataError(f"n_colors must be in 1..256, got {n_colors}")
        uniq = np.unique(colors, axis=0) if len(colors) else np.zeros((0, 3), np.uint8)
        if len(uniq) <= n:
            pal = uniq
        else:
            strip = Image.fromarray(colors.reshape(1, -1, 3), mode="RGB")
            q = strip.quantize(colors=n, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
            used = np.unique(np.asarray(q))
            pal = np.array(q.getpalette()[:3 * 256], np.uint8).reshape(-1, 3)[used]
            pal = np.unique(pal, axis=0)
    out = []
    for f, m in zip(frames, vis):
        g = np.zeros_like(f)
        if m.any() and len(pal):
            g[..., :3][m] = pal[_nearest_index(f[..., :3][m], pal)]
        g[..., 3] = f[..., 3]
        out.append(g)
    return out, [_rgb_to_hex(c) for c in pal]


def threshold_alpha(frames: Sequence[np.ndarray], t: int = 128) -> list[np.ndarray]:
    """Crisp edges: alpha >= t becomes 255, below becomes 0 (with colour 0)."""
    frames = _check_frames(frames, "threshold_alpha")
    out = []
    for f in frames:
        g = f.copy()
        on = g[..., 3] >= t
        g[..., 3] = np.where(on, 255, 0).astype(np.uint8)
        g[~on] = 0
        out.append(g)
    return out


def remove_strays(frames: Sequence[np.ndarray], min_neighbors: int = 1, alpha_min: int = 1) -> list[np.ndarray]:
    """Drop stray pixels: a visible pixel (alpha >= `alpha_min`) with fewer than `min_neighbors`
    visible pixels among its 8 neighbours becomes fully transparent. The default removes
    isolated single pixels (opaque or semi-transparent) and keeps every pixel that touches
    another one, diagonals included."""
    frames = _check_frames(frames, "remove_strays")
    if not 0 <= min_neighbors <= 8:
        raise DataError(f"min_neighbors must be in 0..8, got {min_neighbors}")
    out = []
    for f in frames:
        vis = f[..., 3] >= alpha_min
        p = np.pad(vis, 1).astype(np.int8)
        h, w = vis.shape
        count = sum(p[1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                    for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
        stray = vis & (count < min_neighbors)
        g = f.copy()
        g[stray] = 0
        out.append(g)
    return out


__all__ = ["ExportError", "FORMATS", "make_sheet", "default_columns", "upscale", "aseprite_json",
           "godot_sprite_frames", "godot_speed_and_durations", "save_gif", "save_apng", "save_webp",
           "export_animation", "shared_palette", "threshold_alpha", "remove_strays"]
