"""What the studio refuses, in one place: uploads that are not small real images, paths that leave
the workspace, and requests too large for a laptop CPU.

The studio is a local tool, but it is a web server: a browser tab, a script or (with `--host`) a
colleague can send it anything. Every path a request names is resolved (symlinks followed) and
must stay inside the workspace; every uploaded file is decoded by Pillow before it is stored, so
an archive, a script or a decompression bomb renamed to `.png` is refused with a message that says
which limit it broke.
"""

from __future__ import annotations

import hashlib
import io
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..config import ConfigError

MAX_PROMPT_CHARS = 500          # the same cap as `--prompt` (SampleConfig)
MAX_FRAMES = 32                 # frames of one animation: more is minutes of CPU for one request
MAX_STEPS = 200                 # sampler steps
MAX_UPLOAD_BYTES = 8 * 2**20    # an uploaded image file
MAX_UPLOAD_PIXELS = 2048 * 2048 # width x height of an uploaded image (checked before decoding)
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

# File signatures of archives: refused by name, so the message is clearer than "not an image".
ARCHIVE_MAGIC = {b"PK\x03\x04": "zip", b"PK\x05\x06": "zip", b"\x1f\x8b": "gzip", b"7z\xbc\xaf\x27\x1c": "7z",
                 b"Rar!": "rar", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}


class StudioError(ConfigError):
    """A request the studio refuses; the message names the field or file and the limit."""


def confine(workspace: str | Path, path: str | Path, what: str = "path") -> Path:
    """`path` (relative to the workspace, or absolute) resolved, symlinks followed; refused if it
    ends up outside the workspace (`../` escapes, absolute paths elsewhere, symlinks that point out)."""
    root = Path(workspace).resolve()
    text = str(path)
    if not text.strip() or "\x00" in text:
        raise StudioError(f"{what} {text!r} is not a usable path")
    p = Path(text)
    resolved = (p if p.is_absolute() else root / p).resolve()
    if resolved != root and root not in resolved.parents:
        raise StudioError(f"{what} {text!r} is outside the workspace {root}; the studio only reads and writes "
                          f"inside its workspace (no ../, no absolute paths or symlinks elsewhere)")
    return resolved


def check_name(name: str, what: str = "name") -> str:
    """A run or file name: letters, digits, `_ . -`, at most 64 characters, no path separators."""
    if not NAME_RE.match(name or "") or ".." in name:
        raise StudioError(f"{what} {name!r} must be 1-64 letters, digits, '_', '.' or '-' (no '/' and no '..')")
    return name


def check_prompt(text: str, what: str = "prompt") -> str:
    if len(text) > MAX_PROMPT_CHARS:
        raise StudioError(f"{what} is {len(text)} characters; the limit is {MAX_PROMPT_CHARS}")
    return text


def check_range(value, lo, hi, what: str, kind=int):
    """`value` as `kind` within [lo, hi]; the message names the field and the limit."""
    try:
        v = kind(value)
    except (TypeError, ValueError):
        raise StudioError(f"{what} must be a {kind.__name__}, got {value!r}") from None
    if kind is int and float(value) != v:
        raise StudioError(f"{what} must be a whole number, got {value!r}")
    if not lo <= v <= hi:
        raise StudioError(f"{what} is {v}; it must be between {lo} and {hi}")
    return v


def check_image_bytes(data: bytes, name: str = "upload") -> Image.Image:
    """Decode an uploaded file as one of IMAGE_FORMATS within the size and pixel limits -> a loaded
    Pillow image. Archives, non-images, truncated files and oversized images are refused."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise StudioError(f"{name} is {len(data) / 2**20:.1f} MB; uploads are limited to {MAX_UPLOAD_BYTES // 2**20} MB")
    if not data:
        raise StudioError(f"{name} is empty")
    kind = next((k for magic, k in ARCHIVE_MAGIC.items() if data.startswith(magic)), None)
    if kind is None and data[257:262] == b"ustar":
        kind = "tar"
    if kind:
        raise StudioError(f"{name} is an archive ({kind}); upload single images ({', '.join(IMAGE_FORMATS)})")
    try:
        img = Image.open(io.BytesIO(data))
        fmt = img.format
        w, h = img.size
        if fmt not in IMAGE_FORMATS:
            raise StudioError(f"{name} is a {fmt} file; accepted formats: {', '.join(IMAGE_FORMATS)}")
        if w * h > MAX_UPLOAD_PIXELS:  # checked before decoding: a small file can hold a huge image
            raise StudioError(f"{name} is {w}x{h} = {w * h:,} pixels; the limit is {MAX_UPLOAD_PIXELS:,}")
        img.load()
    except StudioError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError) as e:
        raise StudioError(f"{name} is not a readable image ({type(e).__name__}: {e}); "
                          f"accepted formats: {', '.join(IMAGE_FORMATS)}") from None
    return img


def store_upload(workspace: str | Path, data: bytes, name: str = "upload") -> Path:
    """Check an uploaded image and keep it as `uploads/<sha256>.png` in the workspace (re-encoded as
    PNG, so what is stored is exactly the decoded pixels). Returns the stored path."""
    img = check_image_bytes(data, name)
    img = img.convert("RGBA") if ("A" in img.getbands() or "transparency" in img.info) else img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    out = confine(workspace, "uploads") / f"{hashlib.sha256(buf.getvalue()).hexdigest()[:32]}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.exists():
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(out)
    return out


def load_image(workspace: str | Path, path: str | Path, what: str) -> np.ndarray:
    """A workspace image (confined, size-checked, decoded) as uint8 RGBA [H, W, 4]."""
    p = confine(workspace, path, what)
    if not p.is_file():
        raise StudioError(f"{what} {str(path)!r}: no such file in the workspace")
    if p.stat().st_size > MAX_UPLOAD_BYTES:
        raise StudioError(f"{what} {str(path)!r} is larger than {MAX_UPLOAD_BYTES // 2**20} MB")
    img = check_image_bytes(p.read_bytes(), f"{what} {str(path)!r}")
    return np.asarray(img.convert("RGBA"))
