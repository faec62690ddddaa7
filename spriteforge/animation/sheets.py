"""Importing animations: sprite-sheet grids, packed atlases (Aseprite, TexturePacker), numbered
frame files and one-folder-per-animation trees.

Every importer returns frames as uint8 RGBA numpy arrays ``[H, W, 4]`` (pixel-exact: nothing
here resamples), grouped into `Animation` records. `animations_to_imageset` then turns a list of
animations into the in-memory `ImageSet` that training uses.

All bad input raises `DataError` with a message naming the file and the numbers involved.

Format notes (checked against public sources, see the module docstring of ``export.py`` too):

* Aseprite "Export Sprite Sheet" JSON: ``frames`` is either an object keyed by frame name
  ("Hash") or a list of objects with a ``filename`` ("Array"); each frame has ``frame``
  {x,y,w,h} (the rect in the sheet), ``rotated``, ``trimmed``, ``spriteSourceSize`` {x,y,w,h}
  (where the trimmed rect sits inside the untrimmed canvas), ``sourceSize`` {w,h} and
  ``duration`` (ms). ``meta.frameTags`` = [{name, from, to, direction}] with direction
  "forward" | "reverse" | "pingpong" (| "pingpong_reverse" since Aseprite 1.3); ``from``/``to``
  are inclusive frame indices in the order of ``frames``.
* TexturePacker JSON (Hash/Array) uses the same frame record. For ``rotated: true`` the sprite
  is stored turned 90 degrees clockwise, and ``frame.w``/``frame.h`` are the *unrotated* size:
  the pixels occupy ``(x, y, h, w)`` in the sheet (as PixiJS' Spritesheet parser reads it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from spriteforge.data.dataset import DataError, ImageSet

IMAGE_EXTS = (".png", ".gif", ".bmp", ".webp", ".jpg", ".jpeg", ".tga", ".tif", ".tiff")
DEFAULT_DURATION_MS = 100


# --------------------------------------------------------------------------- Animation

@dataclass
class Animation:
    name: str
    frames: list[np.ndarray]                  # uint8 RGBA [H, W, 4], all the same size
    durations_ms: list[int]                   # one per frame
    caption: str | None = None
    label: str | None = None
    source: str = ""                          # file or folder the frames came from

    def __post_init__(self):
        if len(self.durations_ms) != len(self.frames):
            raise DataError(f"{self.source or self.name}: animation {self.name!r} has {len(self.frames)} frames "
                            f"but {len(self.durations_ms)} durations")
        for i, f in enumerate(self.frames):
            if not (isinstance(f, np.ndarray) and f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 4):
                desc = f"{f.dtype} {tuple(f.shape)}" if isinstance(f, np.ndarray) else type(f).__name__
                raise DataError(f"{self.source or self.name}: animation {self.name!r} frame {i} must be a uint8 "
                                f"RGBA array [H,W,4], got {desc}")
        _check_same_size(self.frames, [str(i) for i in range(len(self.frames))], self.name, self.source)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames; (0, 0) for an empty animation."""
        if not self.frames:
            return (0, 0)
        h, w = self.frames[0].shape[:2]
        return (w, h)


def _check_same_size(frames: Sequence[np.ndarray], names: Sequence[str], anim: str, source: str) -> None:
    if not frames:
        return
    sizes = [(f.shape[1], f.shape[0]) for f in frames]
    if len(set(sizes)) > 1:
        listing = ", ".join(f"{n}={w}x{h}" for n, (w, h) in zip(names, sizes))
        raise DataError(f"{source}: frames of animation {anim!r} have different sizes ({listing}); "
                        f"all frames of one animation must be the same size")


# --------------------------------------------------------------------------- image helpers

def load_rgba(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 RGBA [H, W, 4] (palette transparency and LA handled by Pillow)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                a = np.asarray(im, dtype=np.float64)
                a = a / 257.0 if a.size and a.max() > 255 else a
                im = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")
            return np.array(im.convert("RGBA"), dtype=np.uint8)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from None


def as_rgba(img, path: str = "<image>") -> np.ndarray:
    """Accept a path, a PIL image or an array ([H,W], [H,W,3] or [H,W,4] uint8) and return RGBA uint8."""
    if isinstance(img, (str, Path)):
        return load_rgba(img)
    if isinstance(img, Image.Image):
        return np.array(img.convert("RGBA"), dtype=np.uint8)
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise DataError(f"{path}: expected a uint8 image array, got {a.dtype}")
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise DataError(f"{path}: expected an image array [H,W], [H,W,3] or [H,W,4], got shape {tuple(a.shape)}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    if a.shape[2] == 3:
        a = np.concatenate([a, np.full(a.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return np.ascontiguousarray(a)


def _natural_key(s: str):
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", s) if t != ""]


def natural_sorted(items: Iterable, key=lambda x: x):
    """Sort so that embedded numbers compare numerically: walk_2 < walk_10."""
    return sorted(items, key=lambda x: _natural_key(str(key(x))))


# --------------------------------------------------------------------------- grids

def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _axis_layout(total: int, count: int | None, size: int | None, margin: int, spacing: int,
                 axis: str, path: str) -> tuple[int, int]:
    """Solve margin*2 + count*size + (count-1)*spacing == total for the missing one of count/size."""
    what = "width" if axis == "x" else "height"
    unit = "columns" if axis == "x" else "rows"
    usable = total - 2 * margin
    if usable <= 0:
        raise DataError(f"{path}: image {what} is {total} px, which leaves nothing inside a margin of {margin} px")
    if count is None and size is None:
        raise DataError(f"{path}: give the number of {unit} or the frame size")
    if count is not None and count < 1:
        raise DataError(f"{path}: number of {unit} must be >= 1, got {count}")
    if size is not None and size < 1:
        raise DataError(f"{path}: frame {what} must be >= 1, got {size}")
    if size is None:
        # usable = count*size + (count-1)*spacing  ->  size = (usable - (count-1)*spacing) / count
        rest = usable - (count - 1) * spacing
        if rest <= 0 or rest % count:
            fits = [c for c in range(1, usable + 1)
                    if (usable - (c - 1) * spacing) > 0 and (usable - (c - 1) * spacing) % c == 0]
            fits = [c for c in fits if c <= 64]
            raise DataError(
                f"{path}: {count} {unit} do not divide the image {what} of {total} px "
                f"(margin {margin}, spacing {spacing}: {rest} px for {count} frames = {rest / count:.2f} px each); "
                f"{unit} that fit exactly: {', '.join(map(str, fits)) or 'none'}")
        return count, rest // count
    # size given: count = (usable + spacing) / (size + spacing)
    if count is None:
        if (usable + spacing) % (size + spacing):
            n = (usable + spacing) // (size + spacing)
            left = usable - (n * size + max(n - 1, 0) * spacing)
            fits = [s for s in range(1, usable + 1) if (usable + spacing) % (s + spacing) == 0]
            raise DataError(
                f"{path}: frame {what} {size} px does not divide the image {what} of {total} px "
                f"(margin {margin}, spacing {spacing}): {n} frames fit with {left} px left over; "
                f"frame {what}s that fit exactly: {', '.join(map(str, fits))}")
        return (usable + spacing) // (size + spacing), size
    need = count * size + (count - 1) * spacing + 2 * margin
    if need != total:
        raise DataError(
            f"{path}: {count} {unit} of {size} px (margin {margin}, spacing {spacing}) need an image {what} of "
            f"{need} px, but the image is {total} px {what}")
    return count, size


def grid_boxes(width: int, height: int, cols: int | None = None, rows: int | None = None,
               frame_size: int | tuple[int, int] | None = None, margin: int = 0, spacing: int = 0,
               path: str = "<image>") -> list[tuple[int, int, int, int]]:
    """(x, y, w, h) of every cell of a regular grid over a width x height image, in reading order."""
    if margin < 0 or spacing < 0:
        raise DataError(f"{path}: margin and spacing must be >= 0, got margin={margin} spacing={spacing}")
    fw = fh = None
    if frame_size is not None:
        fw, fh = (frame_size, frame_size) if isinstance(frame_size, int) else (int(frame_size[0]), int(frame_size[1]))
    if cols is None and fw is None and rows is None:
        raise DataError(f"{path}: slice_grid needs cols, rows or frame_size (image is {width}x{height} px)")
    if cols is None and fw is None:
        # only rows known (a vertical strip or grid): square frames
        rows, fh = _axis_layout(height, rows, fh, margin, spacing, "y", path)
        fw = fh
    elif rows is None and fh is None:
        # only columns known: square frames if they divide the height, else a single row
        cols, fw = _axis_layout(width, cols, fw, margin, spacing, "x", path)
        usable_h = height - 2 * margin
        fh = fw if fw <= usable_h and (usable_h + spacing) % (fw + spacing) == 0 else usable_h
    cols, fw = _axis_layout(width, cols, fw, margin, spacing, "x", path)
    rows, fh = _axis_layout(height, rows, fh, margin, spacing, "y", path)
    return [(margin + c * (fw + spacing), margin + r * (fh + spacing), fw, fh)
            for r in range(rows) for c in range(cols)]


def crop(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    return np.ascontiguousarray(img[y:y + h, x:x + w])


def is_empty(frame: np.ndarray) -> bool:
    """True if every pixel is fully transparent."""
    return not bool(frame[..., 3].any())


def slice_grid(img, cols: int | None = None, rows: int | None = None,
               frame_size: int | tuple[int, int] | None = None, margin: int = 0, spacing: int = 0,
               path: str | None = None, skip_empty: bool = False) -> list[np.ndarray]:
    """Cut a regular grid sheet into frames, in reading order (left to right, then top to bottom).

    Give the grid as `cols` (and `rows`), or as `frame_size` (int for square frames or (w, h)),
    or both (then they must agree exactly). `margin` is the border around the whole grid and
    `spacing` the gap between neighbouring cells, both in pixels. With only `cols`, frames are
    square if that divides the height, else the sheet is one row; with only `rows`, square.
    `skip_empty` drops fully transparent cells (the unused tail of a sheet). The grid must divide the image exactly; otherwise a
    `DataError` says the image size, the numbers and which values would fit.
    """
    path = path or (str(img) if isinstance(img, (str, Path)) else "<image>")
    a = as_rgba(img, path)
    h, w = a.shape[:2]
    boxes = grid_boxes(w, h, cols, rows, frame_size, margin, spacing, path)
    frames = [crop(a, b) for b in boxes]
    if skip_empty:
        frames = [f for f in frames if not is_empty(f)]
    return frames


def _background_mask(a: np.ndarray, background) -> np.ndarray:
    """True where a pixel is background: fully transparent, or equal to the background colour."""
    mask = a[..., 3] == 0
    if background is None:
        if mask.any():
            return mask
        background = tuple(int(v) for v in a[0, 0])         # opaque sheet: the top-left pixel's colour
    bg = np.asarray(_parse_color(background), np.uint8)
    if bg.shape[0] == 3:
        return mask | np.all(a[..., :3] == bg, axis=-1) & (a[..., 3] == 255)
    return mask | np.all(a == bg, axis=-1)


def _bands(occupied: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in a 1-D bool array as [start, end) pairs."""
    if not occupied.any():
        return []
    d = np.diff(np.concatenate([[0], occupied.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), ends.tolist()))


def _regular_cells(total: int, bands: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    """The smallest regular split of [0, total) into n >= len(bands) equal cells such that no band
    crosses a cell border; None if there is none. Cells without content are dropped later."""
    if not bands:
        return None
    for n in range(len(bands), total + 1):
        if total % n:
            continue
        c = total // n
        if all(s // c == (e - 1) // c for s, e in bands):
            return [(k * c, (k + 1) * c) for k in range(n)]
    return None


def detect_grid(img, background=None, regular: bool = True) -> list[tuple[int, int, int, int]]:
    """Find the frames of a sheet from its gutters; returns (x, y, w, h) boxes in reading order.

    A gutter is a full column or row of background pixels: fully transparent ones, or (for
    sheets without transparency, or when `background` is given as a colour) pixels of that
    uniform colour. Content bands between gutters are found along both axes. With `regular`
    (default) the bands are then snapped to the smallest regular grid that divides the image
    and that no band crosses, so frames keep their position inside their cell (a jump stays
    a jump); if no such grid exists, each box is the band itself. Cells with no content are
    left out.
    """
    a = as_rgba(img)
    fg = ~_background_mask(a, background)
    h, w = fg.shape
    xb, yb = _bands(fg.any(axis=0)), _bands(fg.any(axis=1))
    if not xb or not yb:
        return []
    if regular:
        xb = _regular_cells(w, xb) or xb
        yb = _regular_cells(h, yb) or yb
    boxes = []
    for y0, y1 in yb:
        for x0, x1 in xb:
            if fg[y0:y1, x0:x1].any():
                boxes.append((x0, y0, x1 - x0, y1 - y0))
    return boxes


def slice_auto(img, background=None, regular: bool = True, path: str | None = None) -> list[np.ndarray]:
    """Slice a sheet by `detect_grid`. Boxes of different sizes (irregular sheets) are padded with
    transparency to the largest box, centred horizontally and bottom-aligned (sprites stand on
    the bottom edge), so that the result is one animation."""
    path = path or (str(img) if isinstance(img, (str, Path)) else "<image>")
    a = as_rgba(img, path)
    boxes = detect_grid(a, background, regular)
    if not boxes:
        raise DataError(f"{path}: no frames found: the whole {a.shape[1]}x{a.shape[0]} px image is background")
    frames = [crop(a, b) for b in boxes]
    if background is not None or not (a[..., 3] == 0).any():
        # an opaque background colour becomes transparency in the frames
        frames = [_key_out(f, background if background is not None else tuple(int(v) for v in a[0, 0]))
                  for f in frames]
    mw, mh = max(b[2] for b in boxes), max(b[3] for b in boxes)
    out = []
    for f in frames:
        fh_, fw_ = f.shape[:2]
        if (fw_, fh_) == (mw, mh):
            out.append(f)
            continue
        canvas = np.zeros((mh, mw, 4), np.uint8)
        x0, y0 = (mw - fw_) // 2, mh - fh_
        canvas[y0:y0 + fh_, x0:x0 + fw_] = f
        out.append(canvas)
    return out


def _key_out(frame: np.ndarray, color) -> np.ndarray:
    f = frame.copy()
    m = _background_mask(f, color)
    f[m] = 0
    return f


def _parse_color(c) -> tuple[int, ...]:
    """'#rrggbb', 'rrggbb', '#rrggbbaa', or a tuple of ints -> tuple of ints."""
    if isinstance(c, str):
        s = c.strip().lstrip("#")
        if len(s) not in (6, 8) or not re.fullmatch(r"[0-9a-fA-F]+", s):
            raise DataError(f"colour {c!r} is not of the form #rrggbb or #rrggbbaa")
        return tuple(int(s[i:i + 2], 16) for i in range(0, len(s), 2))
    t = tuple(int(v) for v in c)
    if len(t) not in (3, 4) or not all(0 <= v <= 255 for v in t):
        raise DataError(f"colour {c!r} must have 3 or 4 components in 0..255")
    return t


# --------------------------------------------------------------------------- packed atlases

def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"{path}: JSON file not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or "frames" not in data:
        raise DataError(f"{path}: not a sprite-sheet JSON: expected an object with a 'frames' key")
    return data


def _frame_records(data: dict, path: Path) -> list[tuple[str, dict]]:
    """(name, record) in file order, from the Hash (object) or Array (list) layout."""
    frames = data["frames"]
    if isinstance(frames, dict):
        items = list(frames.items())
    elif isinstance(frames, list):
        items = []
        for i, rec in enumerate(frames):
            if not isinstance(rec, dict):
                raise DataError(f"{path}: frames[{i}] is not an object")
            items.append((str(rec.get("filename", i)), rec))
    else:
        raise DataError(f"{path}: 'frames' must be an object (hash) or a list (array), got {type(frames).__name__}")
    return items


def _rect(rec: dict, key: str, name: str, path: Path, need_xy: bool = True) -> tuple[int, ...]:
    r = rec.get(key)
    keys = ("x", "y", "w", "h") if need_xy else ("w", "h")
    if not isinstance(r, dict) or any(k not in r for k in keys):
        raise DataError(f"{path}: frame {name!r} has no valid {key!r} ({{{','.join(keys)}}} expected), got {r!r}")
    try:
        return tuple(int(round(float(r[k]))) for k in keys)
    except (TypeError, ValueError):
        raise DataError(f"{path}: frame {name!r} has a non-numeric {key!r}: {r!r}") from None


def _sheet_image(data: dict, json_path: Path, image: str | Path | None) -> tuple[Path, np.ndarray]:
    if image is not None:
        img_path = Path(image)
    else:
        meta = data.get("meta") or {}
        name = meta.get("image")
        if not name:
            cand = json_path.with_suffix(".png")
            if not cand.is_file():
                raise DataError(f"{json_path}: meta.image is missing and {cand.name} does not exist; "
                                f"pass the sheet image explicitly")
            img_path = cand
        else:
            img_path = json_path.parent / name            # relative to the JSON file
            if not img_path.is_file() and (json_path.parent / Path(name).name).is_file():
                img_path = json_path.parent / Path(name).name
            if not img_path.is_file():
                raise DataError(f"{json_path}: sheet image {name!r} (meta.image) not found at {img_path}")
    return img_path, load_rgba(img_path)


def _extract_frame(sheet: np.ndarray, rec: dict, name: str, json_path: Path, img_path: Path) -> np.ndarray:
    """Cut one atlas frame out of the sheet and restore it to its untrimmed, unrotated canvas."""
    x, y, w, h = _rect(rec, "frame", name, json_path)
    rotated = bool(rec.get("rotated", False))
    rw, rh = (h, w) if rotated else (w, h)             # the pixels' footprint in the sheet
    H, W = sheet.shape[:2]
    if x < 0 or y < 0 or w <= 0 or h <= 0 or x + rw > W or y + rh > H:
        rot = f" (rotated: occupies {rw}x{rh} px)" if rotated else ""
        raise DataError(f"{json_path}: frame {name!r} rect x={x} y={y} w={w} h={h}{rot} lies outside the sheet "
                        f"{img_path.name} ({W}x{H} px)")
    px = sheet[y:y + rh, x:x + rw]
    if rotated:
        px = np.rot90(px, k=1)                         # stored turned 90 deg clockwise: turn it back
    px = np.ascontiguousarray(px)
    trimmed = bool(rec.get("trimmed", False))
    if "sourceSize" in rec and (trimmed or "spriteSourceSize" in rec):
        sw, sh = _rect(rec, "sourceSize", name, json_path, need_xy=False)
        ox, oy = 0, 0
        if "spriteSourceSize" in rec:
            ox, oy, _, _ = _rect(rec, "spriteSourceSize", name, json_path)
        if (sw, sh) != (w, h) or (ox, oy) != (0, 0):
            if ox < 0 or oy < 0 or ox + w > sw or oy + h > sh:
                raise DataError(f"{json_path}: frame {name!r}: trimmed rect {w}x{h} at ({ox},{oy}) "
                                f"(spriteSourceSize) does not fit its sourceSize {sw}x{sh}")
            canvas = np.zeros((sh, sw, 4), np.uint8)
            canvas[oy:oy + h, ox:ox + w] = px
            px = canvas
    return px


def _check_meta_size(data: dict, sheet: np.ndarray, json_path: Path, img_path: Path) -> None:
    size = (data.get("meta") or {}).get("size")
    if isinstance(size, dict) and "w" in size and "h" in size:
        H, W = sheet.shape[:2]
        if (int(size["w"]), int(size["h"])) != (W, H):
            raise DataError(f"{json_path}: meta.size says {size['w']}x{size['h']} px but the sheet "
                            f"{img_path.name} is {W}x{H} px (was the image rescaled after export?)")


def _duration(rec: dict, default: int) -> int:
    d = rec.get("duration", default)
    try:
        d = int(round(float(d)))
    except (TypeError, ValueError):
        d = default
    return d if d > 0 else default


def tag_sequence(start: int, end: int, direction: str) -> list[int]:
    """Frame indices played by an Aseprite tag (from/to inclusive) once through.

    forward 0,1,2,3 | reverse 3,2,1,0 | pingpong 0,1,2,3,2,1 | pingpong_reverse 3,2,1,0,1,2
    (the turning frames are not repeated, so the sequence loops seamlessly)."""
    fwd = list(range(start, end + 1))
    d = (direction or "forward").lower()
    if d == "forward":
        return fwd
    if d == "reverse":
        return fwd[::-1]
    if d == "pingpong":
        return fwd + fwd[-2:0:-1]
    if d == "pingpong_reverse":
        rev = fwd[::-1]
        return rev + rev[-2:0:-1]
    raise DataError(f"unknown Aseprite tag direction {direction!r} (forward, reverse, pingpong, pingpong_reverse)")


def load_aseprite_json(json_path: str | Path, image: str | Path | None = None,
                       default_duration_ms: int = DEFAULT_DURATION_MS) -> list[Animation]:
    """Animations from an Aseprite "Export Sprite Sheet" JSON (frames as hash or array).

    One `Animation` per entry of ``meta.frameTags`` (frames in the tag's playback order:
    forward / reverse / pingpong / pingpong_reverse, each with its own ``duration``); without
    tags, one animation of all frames named after the JSON file. The sheet is ``meta.image``
    resolved relative to the JSON file, unless `image` is given.
    """
    json_path = Path(json_path)
    data = _read_json(json_path)
    img_path, sheet = _sheet_image(data, json_path, image)
    _check_meta_size(data, sheet, json_path, img_path)
    recs = _frame_records(data, json_path)
    frames = [_extract_frame(sheet, r, n, json_path, img_path) for n, r in recs]
    names = [n for n, _ in recs]
    durs = [_duration(r, default_duration_ms) for _, r in recs]
    tags = (data.get("meta") or {}).get("frameTags") or []
    anims = []
    if not tags:
        _check_same_size(frames, names, json_path.stem, str(json_path))
        return [Animation(json_path.stem, frames, durs, source=str(json_path))]
    for t in tags:
        try:
            name, a, b = str(t["name"]), int(t["from"]), int(t["to"])
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{json_path}: frameTag {t!r} needs name, from and to") from None
        if not (0 <= a <= b < len(frames)):
            raise DataError(f"{json_path}: frameTag {name!r} spans frames {a}..{b} but the sheet has "
                            f"{len(frames)} frames (0..{len(frames) - 1})")
        try:
            seq = tag_sequence(a, b, t.get("direction", "forward"))
        except DataError as e:
            raise DataError(f"{json_path}: frameTag {name!r}: {e}") from None
        _check_same_size([frames[i] for i in seq], [names[i] for i in seq], name, str(json_path))
        anims.append(Animation(name, [frames[i].copy() for i in seq], [durs[i] for i in seq],
                               source=str(json_path)))
    return anims


_IMG_SUFFIX = re.compile(r"\.(png|gif|bmp|webp|jpe?g|tga|tiff?|ase|aseprite|psd)$", re.IGNORECASE)
_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<num>\d+)$")


def split_frame_name(name: str) -> tuple[str, int | None]:
    """'walk_0.png' -> ('walk', 0); 'walk/0001' -> ('walk', 1); 'hero walk 3.png' -> ('hero walk', 3);
    'idle.png' -> ('idle', None)."""
    stem = _IMG_SUFFIX.sub("", name)
    m = _NUMBERED.match(stem)
    if not m:
        return stem, None
    prefix = m.group("prefix").rstrip(" _-./\\")
    return prefix, int(m.group("num"))


def load_texturepacker_json(json_path: str | Path, image: str | Path | None = None,
                            default_duration_ms: int = DEFAULT_DURATION_MS) -> list[Animation]:
    """Animations from a TexturePacker JSON (Hash or Array), untrimmed back to ``sourceSize`` and
    un-rotated. Frames are grouped into animations by name prefix (``walk_0.png``,
    ``walk/0001`` -> "walk"), numbered frames in numeric order; a top-level ``animations``
    object ({name: [frame names]}, the PixiJS convention) takes precedence when present.
    Frames with a ``duration`` keep it, others get `default_duration_ms`."""
    json_path = Path(json_path)
    data = _read_json(json_path)
    img_path, sheet = _sheet_image(data, json_path, image)
    _check_meta_size(data, sheet, json_path, img_path)
    recs = _frame_records(data, json_path)
    by_name = {}
    for n, r in recs:
        by_name[n] = (_extract_frame(sheet, r, n, json_path, img_path), _duration(r, default_duration_ms))
    groups: dict[str, list[str]] = {}
    explicit = data.get("animations")
    if isinstance(explicit, dict) and explicit:
        for anim, names in explicit.items():
            missing = [n for n in names if n not in by_name]
            if missing:
                raise DataError(f"{json_path}: animation {anim!r} lists frames {missing} that are not in 'frames'")
            groups[str(anim)] = list(names)
    else:
        numbered: dict[str, list[tuple[int, str]]] = {}
        for n, _ in recs:
            prefix, num = split_frame_name(n)
            prefix = prefix or json_path.stem
            numbered.setdefault(prefix, []).append((num if num is not None else -1, n))
        for prefix, items in numbered.items():
            groups[prefix] = [n for _, n in sorted(items, key=lambda t: (t[0], _natural_key(t[1])))]
    anims = []
    for anim, names in groups.items():
        frames = [by_name[n][0].copy() for n in names]
        _check_same_size(frames, names, anim, str(json_path))
        anims.append(Animation(anim, frames, [by_name[n][1] for n in names], source=str(json_path)))
    return anims


# --------------------------------------------------------------------------- folders

def _image_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS
            and not p.name.startswith(".")]


def load_numbered_frames(folder: str | Path, default_duration_ms: int = DEFAULT_DURATION_MS,
                         label: str | None = None) -> list[Animation]:
    """One animation per file-name prefix in `folder`: ``walk_0.png, walk_1.png, ..., walk_10.png``
    -> "walk" with frames in numeric order (walk_2 before walk_10). Files without a number are
    single-frame animations named after the file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    files = _image_files(folder)
    if not files:
        raise DataError(f"{folder}: no image files ({', '.join(IMAGE_EXTS)}) in the folder")
    groups: dict[str, list[tuple[int, Path]]] = {}
    for p in files:
        prefix, num = split_frame_name(p.name)
        groups.setdefault(prefix or folder.name, []).append((-1 if num is None else num, p))
    anims = []
    for prefix in natural_sorted(groups):
        items = sorted(groups[prefix], key=lambda t: (t[0], _natural_key(t[1].name)))
        frames = [load_rgba(p) for _, p in items]
        _check_same_size(frames, [p.name for _, p in items], prefix, str(folder))
        anims.append(Animation(prefix, frames, [default_duration_ms] * len(frames), label=label,
                               source=str(folder)))
    return anims


def _read_metadata_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise DataError(f"{path}:{i}: not valid JSON ({e})") from None
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _row_caption(row: dict) -> str | None:
    for k in ("caption", "text"):
        v = row.get(k)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return None


def _folder_caption(folder: Path, root: Path, frames: list[Path]) -> str | None:
    """caption.txt in the folder; else metadata.jsonl (HF imagefolder convention: one JSON object
    per line with "file_name" and "caption"/"text") in the folder or any ancestor up to `root`,
    matching either the folder itself or one of its frames (the first frame with a caption)."""
    cap = folder / "caption.txt"
    if cap.is_file():
        text = cap.read_text(encoding="utf-8-sig").strip()
        return text or None
    d = folder
    while True:
        meta = d / "metadata.jsonl"
        if meta.is_file():
            rows = _read_metadata_jsonl(meta)
            rel_folder = folder.relative_to(d).as_posix()
            wanted_frames = {p.relative_to(d).as_posix(): i for i, p in enumerate(frames)}
            best = None
            for row in rows:
                fn = str(row.get("file_name", "")).strip("/").replace("\\", "/")
                c = _row_caption(row)
                if c is None:
                    continue
                if fn and fn == rel_folder:
                    return c
                if fn in wanted_frames and (best is None or wanted_frames[fn] < best[0]):
                    best = (wanted_frames[fn], c)
            if best is not None:
                return best[1]
        if d == root or d.parent == d:
            break
        d = d.parent
    return None


def load_animation_folders(root: str | Path, default_duration_ms: int = DEFAULT_DURATION_MS) -> list[Animation]:
    """One animation per folder that holds image files, anywhere under `root` (frames in natural
    order of their file names). The animation is named after its folder; its label is the
    parent folder's path relative to `root` when nested (``root/knight/walk/*.png`` -> name
    "walk", label "knight"), else None. Captions come from ``caption.txt`` in the folder or
    from a ``metadata.jsonl`` (see `_folder_caption`)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    folders = [root] + natural_sorted([p for p in root.rglob("*") if p.is_dir() and not p.name.startswith(".")],
                                      key=lambda p: p.relative_to(root).as_posix())
    anims = []
    for folder in folders:
        files = natural_sorted(_image_files(folder), key=lambda p: p.name)
        if not files:
            continue
        frames = [load_rgba(p) for p in files]
        _check_same_size(frames, [p.name for p in files], folder.name, str(folder))
        rel_parent = folder.relative_to(root).parent.as_posix() if folder != root else "."
        label = None if rel_parent in (".", "") else rel_parent
        anims.append(Animation(folder.name, frames, [default_duration_ms] * len(frames),
                               caption=_folder_caption(folder, root, files), label=label, source=str(folder)))
    if not anims:
        raise DataError(f"{root}: no folder under it holds image files ({', '.join(IMAGE_EXTS)})")
    return anims


# --------------------------------------------------------------------------- to training data

def animations_to_imageset(anims: Sequence[Animation], size: int, fit: str = "pad", filter: str = "lanczos",
                           channels: int = 4) -> ImageSet:
    """Flatten animations into an `ImageSet` of size x size frames for training.

    Each frame is made square (`fit` "pad" centres it on a transparent square, "crop" keeps
    the centre) and resized with `spriteforge.data.transforms.resize_pixel_art` (integer
    factors are exact nearest-neighbour; others use `filter`). `channels` 4 keeps alpha, 3
    composites over white. meta per image: {"animation", "frame", "num_frames", "duration_ms"};
    labels index the sorted distinct `Animation.label`s (-1 for none); paths are
    "<source>#<animation>/<frame>".
    """
    from spriteforge.data.transforms import composite_over, resize_pixel_art, to_square
    import torch

    if channels not in (3, 4):
        raise DataError(f"animations_to_imageset: channels must be 3 or 4, got {channels}")
    if fit not in ("pad", "crop"):
        raise DataError(f"animations_to_imageset: fit must be 'pad' or 'crop', got {fit!r}")
    anims = list(anims)
    if not anims or not any(len(a) for a in anims):
        raise DataError("animations_to_imageset: no frames to convert (empty animation list)")
    class_names = sorted({a.label for a in anims if a.label is not None})
    label_idx = {n: i for i, n in enumerate(class_names)}
    images, paths, captions, labels, meta = [], [], [], [], []
    for a in anims:
        n = len(a.frames)
        for i, f in enumerate(a.frames):
            im = Image.fromarray(f, mode="RGBA")
            im = resize_pixel_art(to_square(im, fit), size, filter)
            if channels == 3:
                im = composite_over(im)
            arr = np.asarray(im, dtype=np.uint8)
            images.append(torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))))
            paths.append(f"{a.source}#{a.name}/{i}")
            captions.append(a.caption)
            labels.append(label_idx[a.label] if a.label is not None else -1)
            meta.append({"animation": a.name, "frame": i, "num_frames": n, "duration_ms": int(a.durations_ms[i])})
    return ImageSet(torch.stack(images), paths, captions, torch.tensor(labels, dtype=torch.int64),
                    class_names, meta)


__all__ = [
    "Animation", "load_rgba", "as_rgba", "natural_sorted", "grid_boxes", "slice_grid", "detect_grid",
    "slice_auto", "is_empty", "tag_sequence", "split_frame_name", "load_aseprite_json",
    "load_texturepacker_json", "load_numbered_frames", "load_animation_folders", "animations_to_imageset",
]
