"""Reading a video clip into an `Animation` (frames as uint8 RGBA arrays).

Decoding uses the ffmpeg binary shipped inside the `imageio-ffmpeg` wheel, so nothing has to
be installed system-wide. Time range, frame rate, crop and resize are done by ffmpeg itself
(``-ss`` before the input for the start, ``-t`` for the length, and a ``crop,scale,fps``
filter chain), so only the frames that are kept are ever transferred to Python. A key colour
turns the matching background into transparency.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from spriteforge.animation.sheets import Animation, _parse_color
from spriteforge.data.dataset import DataError


def _ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError:  # pragma: no cover - dependency missing
        raise DataError("reading videos needs the 'imageio-ffmpeg' package: pip install imageio-ffmpeg") from None
    return imageio_ffmpeg


def _fmt_range(start, end) -> str:
    a = "start" if start is None else f"{start:g}s"
    b = "end" if end is None else f"{end:g}s"
    return f"{a}..{b}"


def key_out(frame_rgb: np.ndarray, key_color, tolerance: float) -> np.ndarray:
    """RGB [H,W,3] -> RGBA with alpha 0 (and colour 0) where the pixel is within `tolerance`
    (Euclidean RGB distance) of `key_color`, alpha 255 elsewhere."""
    key = np.asarray(_parse_color(key_color)[:3], np.float32)
    d = np.sqrt(((frame_rgb.astype(np.float32) - key) ** 2).sum(-1))
    bg = d <= tolerance
    out = np.empty(frame_rgb.shape[:2] + (4,), np.uint8)
    out[..., :3] = frame_rgb
    out[..., 3] = 255
    out[bg] = 0
    return out


def video_to_frames(path: str | Path, fps: float | None = None, start: float | None = None,
                    end: float | None = None, crop: tuple[int, int, int, int] | None = None,
                    size: int | tuple[int, int] | None = None, key_color=None, key_tolerance: float = 48.0,
                    max_frames: int | None = None, name: str | None = None) -> Animation:
    """Decode a video file into an `Animation`.

    fps: resample to this frame rate (default: the video's own). start/end: time range in
        seconds (end exclusive). crop: (x, y, w, h) in source pixels, applied before the
        resize. size: output (w, h), or an int for a square; nearest-neighbour so pixel art
        recorded at an integer zoom comes back crisp. key_color: "#rrggbb" or (r, g, b)
        background colour made transparent, within `key_tolerance` (RGB distance, 0..442).
    max_frames: stop after this many frames.

    Each frame lasts 1000 / fps ms. Raises `DataError` for a missing file, a file ffmpeg
    cannot decode, bad arguments, or a range that contains no frame (naming the file, the
    range and the video's duration).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    if fps is not None and not fps > 0:
        raise DataError(f"{path}: fps must be > 0, got {fps}")
    if start is not None and start < 0:
        raise DataError(f"{path}: start must be >= 0 s, got {start}")
    if start is not None and end is not None and end <= start:
        raise DataError(f"{path}: empty time range {_fmt_range(start, end)} (end must be after start)")
    if max_frames is not None and max_frames < 1:
        raise DataError(f"{path}: max_frames must be >= 1, got {max_frames}")
    filters = []
    if crop is not None:
        x, y, w, h = (int(v) for v in crop)
        if x < 0 or y < 0 or w < 1 or h < 1:
            raise DataError(f"{path}: crop (x, y, w, h) = {tuple(crop)} must have x, y >= 0 and w, h >= 1")
        filters.append(f"crop={w}:{h}:{x}:{y}")
    if size is not None:
        sw, sh = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if sw < 1 or sh < 1:
            raise DataError(f"{path}: size must be positive, got {size}")
        filters.append(f"scale={sw}:{sh}:flags=neighbor")
    if fps is not None:
        filters.append(f"fps={fps:g}")
    input_params = ["-ss", f"{start:g}"] if start else []
    output_params = []
    if end is not None:
        output_params += ["-t", f"{end - (start or 0):g}"]
    if filters:
        output_params += ["-vf", ",".join(filters)]
    output_params += ["-an", "-sn"]

    iio = _ffmpeg()
    logging.getLogger("imageio_ffmpeg").setLevel(logging.ERROR)   # "frame size differs" notice on resize
    frames: list[np.ndarray] = []
    gen = iio.read_frames(str(path), pix_fmt="rgb24", input_params=input_params, output_params=output_params)
    try:
        try:
            meta = next(gen)
        except (OSError, RuntimeError, StopIteration, ValueError, KeyError, IndexError) as e:
            raise DataError(f"{path}: cannot read video ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        w, h = meta["size"]
        if crop is not None:
            sw0, sh0 = meta.get("source_size", (None, None))
            x, y, cw, ch = (int(v) for v in crop)
            if sw0 is not None and (x + cw > sw0 or y + ch > sh0):
                raise DataError(f"{path}: crop x={x} y={y} w={cw} h={ch} lies outside the {sw0}x{sh0} px video")
        try:
            for raw in gen:
                a = np.frombuffer(raw, np.uint8).reshape(h, w, 3)
                if key_color is not None:
                    frames.append(key_out(a, key_color, key_tolerance))
                else:
                    rgba = np.empty((h, w, 4), np.uint8)
                    rgba[..., :3] = a
                    rgba[..., 3] = 255
                    frames.append(rgba)
                if max_frames is not None and len(frames) >= max_frames:
                    break
        except RuntimeError as e:
            if not frames:
                raise DataError(f"{path}: cannot decode video frames ({str(e).splitlines()[0]})") from None
    finally:
        gen.close()
    if not frames:
        dur = meta.get("duration") or 0
        raise DataError(f"{path}: no frames in the range {_fmt_range(start, end)}"
                        + (f" (the video lasts {dur:g} s)" if dur else ""))
    out_fps = fps or meta.get("fps") or 0
    if not out_fps or out_fps <= 0:
        out_fps = 10.0
    d = max(1, int(round(1000.0 / out_fps)))
    return Animation(name or path.stem, frames, [d] * len(frames), source=str(path))


__all__ = ["video_to_frames", "key_out"]
