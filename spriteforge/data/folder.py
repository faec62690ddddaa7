"""Load a user's folder of sprites into an in-memory `ImageSet`.

    imgs = load_image_folder("my_sprites/", DataConfig(size=32))

What the loader does, and why:

* **Files.** The folder is searched recursively for .png, .jpg/.jpeg, .webp, .bmp and .gif
  files (extension match, case-insensitive; GIF/WebP/APNG animations contribute their first
  frame). Hidden files and folders (name starting with ".") and macOS `__MACOSX` folders are
  skipped: they hold thumbnails and resource forks, not sprites. Anything else (.txt, .json,
  .psd, ...) is ignored silently. Files are processed in a deterministic order: sorted by
  their path components relative to the root, so results do not depend on the filesystem.
* **Channels.** `--data.channels auto` gives RGBA if ANY image really has transparency (an
  alpha band with a value < 255, a palette with a transparent entry in use, or a PNG colour
  key), otherwise RGB. Opaque images in an RGBA set get alpha 255. `rgba` forces 4 channels
  the same way. `rgb` drops alpha by compositing over WHITE: sprites on transparent
  backgrounds end up on a clean light background rather than on the arbitrary colour stored
  in their transparent pixels (often black, which would make outlines vanish).
* **Geometry.** Each image is made square (`--data.fit crop|pad`, see `transforms.to_square`:
  pad uses transparent pixels for images with transparency, else the dominant border colour)
  and resized to `--data.size` with `transforms.resize_pixel_art`: integer scale factors use
  nearest neighbour so pixel art stays crisp, other factors use `--data.resize_filter` on
  premultiplied alpha.
* **Too small.** An image is refused (DataError, before any training) if the square it is
  fitted to (min side for crop, max side for pad) is under 8 px, or would have to be
  upscaled more than 8x to reach `--data.size`: such a sprite carries too little information
  and is almost always a wrong --data.size or a stray icon. All offenders are listed in one
  error.
* **Captions.** A sidecar `name.txt` next to `name.png` (stripped; empty means none), or a
  Hugging Face imagefolder style `metadata.jsonl` in the root or any subfolder: one JSON
  object per line, `{"file_name": <path relative to that jsonl's folder>, "text": <caption>,
  ...}`. Extra keys go into the image's meta. If both exist the SIDECAR WINS for the caption
  (it is the more specific, hand-edited source); the jsonl extras are still kept. If several
  jsonl files mention the same image, the one in the deepest folder wins.
* **Class labels.** The first-level subfolder under the root names the class
  (`root/knight/a.png` -> "knight"); class_names are sorted. Images directly in the root get
  label -1 when other images are in subfolders. With no subfolders at all there are no
  classes: class_names == [] and every label is -1.
* **Bad files.** A file that cannot be decoded (corrupt, truncated, not really an image) is
  reported by path: a warning and the file is skipped, or with `--data.strict` a DataError
  on the first one. A missing folder, a file instead of a folder, or a folder without images
  is a DataError naming the path and the supported extensions.
* **Mixed sizes** only produce one summary warning: everything is resized anyway.
"""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from spriteforge.config import DataConfig
from spriteforge.data.dataset import DataError, ImageSet
from spriteforge.data.transforms import (
    add_opaque_alpha,
    composite_over,
    normalize_mode,
    resize_pixel_art,
    to_square,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
EXTENSIONS_TEXT = ", ".join(IMAGE_EXTENSIONS)
METADATA_FILE = "metadata.jsonl"
MIN_SIDE = 8          # px: smallest square side accepted
MAX_UPSCALE = 8       # largest allowed upscale factor from the fitted square to --data.size
MAX_LISTED = 20       # unreadable files warned about one by one before summarising
_SKIP_DIRS = {"__MACOSX"}
_EXIF_ORIENTATION = 0x0112


def print_warning(msg: str) -> None:
    """Default `log` of `load_image_folder`: one line on stderr."""
    print(f"warning: {msg}", file=sys.stderr)


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _scan(root: Path, log: Callable[[str], None]) -> tuple[list[Path], list[Path], set[Path], Counter]:
    """Walk `root`: image files (sorted), metadata.jsonl files, all visible files, other extensions."""
    images, jsonls, visible = [], [], set()
    other: Counter = Counter()

    def onerror(e: OSError):
        log(f"cannot list folder {e.filename}: {e.strerror}; skipping it")

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = [d for d in dirnames if not _hidden(d) and d not in _SKIP_DIRS]
        d = Path(dirpath)
        for name in filenames:
            if _hidden(name):
                continue
            p = d / name
            visible.add(p)
            ext = os.path.splitext(name)[1].lower()
            if ext in IMAGE_EXTENSIONS:
                images.append(p)
            elif name == METADATA_FILE:
                jsonls.append(p)
            elif ext not in (".txt", ".json", ".jsonl", ".csv", ".md", ""):
                other[ext] += 1
    images.sort(key=lambda p: p.relative_to(root).parts)
    jsonls.sort(key=lambda p: (len(p.relative_to(root).parts), p.relative_to(root).parts))
    return images, jsonls, visible, other


def _clean_caption(text) -> str | None:
    if text is None:
        return None
    text = str(text).strip()
    return text or None


def _read_jsonl(root: Path, jsonls: list[Path]) -> dict[str, tuple[dict, Path]]:
    """Map relative image path (posix) -> (record, jsonl file). Deeper jsonl files override shallower."""
    records: dict[str, tuple[dict, Path]] = {}
    example = '{"file_name": "knight.png", "text": "a knight with a red cape"}'
    for jf in jsonls:
        try:
            text = jf.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{jf}: cannot read captions file ({e}); expected UTF-8 JSON lines like {example}") from None
        base = jf.parent
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{jf}:{lineno}: not valid JSON ({e.msg}); expected one object per line like {example}") from None
            if not isinstance(rec, dict) or not isinstance(rec.get("file_name"), str):
                raise DataError(f"{jf}:{lineno}: expected an object with a \"file_name\" string (path relative to "
                                f"{base}), like {example}")
            target = Path(os.path.normpath(base / rec["file_name"]))
            try:
                rel = target.relative_to(root).as_posix()
            except ValueError:       # points outside the root: cannot match any loaded image
                rel = f"<outside>/{rec['file_name']}"
            records[rel] = (rec, jf)
    return records


def _read_sidecar(path: Path, log: Callable[[str], None]) -> str | None:
    try:
        return _clean_caption(path.read_text(encoding="utf-8-sig", errors="replace"))
    except OSError as e:
        log(f"cannot read caption file {path} ({e.strerror}); image gets no sidecar caption")
        return None


def _fitted_side(w: int, h: int, fit: str) -> int:
    return min(w, h) if fit == "crop" else max(w, h)


def _decode(im: Image.Image) -> Image.Image:
    """Fully decode the (first) frame of an opened file, apply its EXIF orientation, return RGB or RGBA."""
    im.load()                          # truncated/corrupt data raises here, not lazily later
    if im.format in ("JPEG", "WEBP", "PNG") and im.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        im = ImageOps.exif_transpose(im)   # phone photos are stored sideways plus a rotation tag
    out = normalize_mode(im)
    return out.copy() if out is im else out   # closing the file would invalidate `im` itself


def load_image_folder(root: str | os.PathLike, cfg: DataConfig,
                      log: Callable[[str], None] = print_warning) -> ImageSet:
    """Load every image under `root` as a [N, C, cfg.size, cfg.size] uint8 `ImageSet`.

    `log` receives one-line warnings (skipped files, mixed sizes, unmatched metadata). See the
    module docstring for the rules; raises `DataError` with the offending path on bad input.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"image folder {root} does not exist; expected a folder containing {EXTENSIONS_TEXT} images")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder; expected a folder containing {EXTENSIONS_TEXT} images "
                        f"(searched recursively)")

    files, jsonls, visible, other = _scan(root, log)
    if not files:
        msg = (f"no images found in {root}: expected files ending in {EXTENSIONS_TEXT} (searched recursively; "
               f"hidden files and folders are skipped)")
        if other:
            msg += "; found only other files: " + ", ".join(f"{n} x {ext}" for ext, n in other.most_common(5))
        raise DataError(msg)

    records = _read_jsonl(root, jsonls)
    arrays: list[np.ndarray] = []
    has_alpha: list[bool] = []
    kept: list[tuple[Path, str, tuple[int, int]]] = []   # (path, relpath, original size)
    unreadable: list[Path] = []
    too_small: list[str] = []

    for path in files:
        rel = path.relative_to(root).as_posix()
        try:
            with Image.open(path) as im:                 # lazy: only the header is parsed so far
                w, h = im.size
                side = _fitted_side(w, h, cfg.fit)
                if side < MIN_SIDE or cfg.size > MAX_UPSCALE * side:
                    too_small.append(f"{path} is {w}x{h} px")
                    continue
                if too_small:                            # we will fail anyway: only keep checking sizes
                    continue
                img = _decode(im)
        except Exception as e:                           # noqa: BLE001 - any decoder failure = bad file
            _bad_file(path, e, cfg, log, unreadable)
            continue
        orig_size = img.size                             # after EXIF rotation
        alpha = img.mode == "RGBA"
        if alpha and cfg.channels == "rgb":
            img, alpha = composite_over(img), False
        img = resize_pixel_art(to_square(img, cfg.fit), cfg.size, cfg.resize_filter)
        arrays.append(np.asarray(img))
        has_alpha.append(alpha)
        kept.append((path, rel, orig_size))

    if too_small:
        shown = "; ".join(too_small[:5]) + (f"; and {len(too_small) - 5} more" if len(too_small) > 5 else "")
        raise DataError(
            f"{len(too_small)} image(s) too small for --data.size={cfg.size}: {shown}. "
            f"Expected the {'shorter' if cfg.fit == 'crop' else 'longer'} side (--data.fit={cfg.fit}) to be at least "
            f"{max(MIN_SIDE, -(-cfg.size // MAX_UPSCALE))} px (at most {MAX_UPSCALE}x upscaling); use a smaller "
            f"--data.size or remove these files")
    if len(unreadable) > MAX_LISTED:
        log(f"skipped {len(unreadable)} unreadable image files in total ({len(unreadable) - MAX_LISTED} not listed above)")
    if not arrays:
        raise DataError(f"none of the {len(files)} image files in {root} could be read (all were skipped as "
                        f"unreadable); expected valid {EXTENSIONS_TEXT} files")

    sizes = Counter(size for _, _, size in kept)
    if len(sizes) > 1:
        common = ", ".join(f"{w}x{h} ({n})" for (w, h), n in sizes.most_common(3))
        more = f", ... {len(sizes) - 3} more" if len(sizes) > 3 else ""
        log(f"images in {root} have {len(sizes)} different sizes ({common}{more}); all are fitted to a square "
            f"with --data.fit={cfg.fit} and resized to {cfg.size}x{cfg.size}")

    want_alpha = cfg.channels == "rgba" or (cfg.channels == "auto" and any(has_alpha))
    if want_alpha:
        arrays = [a if a.shape[-1] == 4 else np.asarray(add_opaque_alpha(Image.fromarray(a, "RGB"))) for a in arrays]
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    # Class labels from the first-level subfolder.
    folders = [rel.split("/")[0] if "/" in rel else None for _, rel, _ in kept]
    class_names = sorted({f for f in folders if f is not None})
    index = {name: i for i, name in enumerate(class_names)}
    labels = torch.tensor([index[f] if f is not None else -1 for f in folders], dtype=torch.int64)

    # Captions and meta.
    captions: list[str | None] = []
    meta: list[dict] = []
    matched = set()
    for path, rel, (w, h) in kept:
        rec, _ = records.get(rel, ({}, None))
        if rec:
            matched.add(rel)
        caption = _clean_caption(rec.get("text"))
        sidecar = path.with_suffix(".txt")
        if sidecar in visible:
            caption = _read_sidecar(sidecar, log) or caption
        captions.append(caption)
        extras = {k: v for k, v in rec.items() if k not in ("file_name", "text")}
        meta.append({**extras, "source": "folder", "orig_size": [w, h], "relpath": rel})

    unmatched = [(rel, jf) for rel, (_, jf) in records.items() if rel not in matched]
    if unmatched:
        rel, jf = unmatched[0]
        log(f"{len(unmatched)} {METADATA_FILE} entr{'y' if len(unmatched) == 1 else 'ies'} name no loaded image "
            f"(e.g. {rel!r} from {jf}); their captions are unused")

    return ImageSet(images=images, paths=[str(p) for p, _, _ in kept], captions=captions, labels=labels,
                    class_names=class_names, meta=meta)


def _bad_file(path: Path, err: Exception, cfg: DataConfig, log: Callable[[str], None], unreadable: list[Path]) -> None:
    """Raise (strict) or warn about an undecodable file; the message names the file."""
    reason = f"{type(err).__name__}: {err}"
    if cfg.strict:
        raise DataError(f"{path}: cannot read image ({reason}); expected a valid {EXTENSIONS_TEXT} file "
                        f"(--data.strict is on; turn it off to skip unreadable files)") from err
    unreadable.append(path)
    if len(unreadable) <= MAX_LISTED:
        log(f"skipping {path}: cannot read image ({reason}); use --data.strict to make this an error")
