"""Control maps as images: edges, silhouettes, user-supplied maps, and adherence metrics.

All maps are uint8 ``[H, W]`` with 0 = nothing and 255 = edge / inside.

Edges (``edge_map``)
--------------------
OpenCV Canny (3x3 Sobel, L2 gradient, no blur: pixel art has no noise to remove and blurring
would move 1-px features) on the sprite composited over a flat background. The background is
mid-grey (128, 128, 128) by default: a sprite's outline is then an edge whether the outline is
dark or light (on white a white part would vanish, on black a black outline would). With
``alpha_edges=True`` (default) the Canny edges of the alpha channel are added, so the silhouette
border is always present, whatever colour touches the background. RGB images are used as they are;
a 2-D array is taken as grey levels.

Silhouettes (``silhouette``)
----------------------------
255 where alpha > ``threshold``, else 0.

User-supplied maps (``load_control_image``)
-------------------------------------------
Any image file Pillow reads. 16-bit maps (e.g. depth PNGs; Pillow mode I;16, or mode I with
values above 255) are scaled to 8 bits by /257; 32-bit float images are taken as 0..1 if their maximum is <= 1, else clipped to
0..255. For ``channels=1`` colour is converted to grey and, if the image has transparency, the
grey level is multiplied by alpha (a map drawn on a transparent canvas: transparent = 0).
The map must already be the expected size, or an exact integer multiple / divisor of it with
the same factor on both axes; it is then resized with nearest neighbour (downscaling by k keeps
the pixel at offset k // 2 of every k x k block, upscaling repeats each pixel k times). Any other
size is an error naming the file, its size and the expected size: resampling a control map
by a non-integer factor would smear or shift thin edges.

Metrics
-------
``edge_f1(pred, ref, tolerance_px)``: precision = share of predicted edge pixels that have a
reference edge pixel within ``tolerance_px`` (Chebyshev distance: tolerance 1 = the 3x3
neighbourhood), recall = the same the other way round, F1 = their harmonic mean. Pixels are not
matched one-to-one (unlike the BSDS benchmark), so a 3-px wide prediction around a 1-px
reference still scores 1 at tolerance 1. Both maps empty -> 1.0; exactly one empty -> 0.0.
``silhouette_iou(a, b)``: intersection over union of the two masks (both empty -> 1.0).
Binarisation for both: bool as is, uint8 > 127, other types > 0.5.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .dataset import DataError

__all__ = ["composite", "edge_f1", "edge_map", "load_control_image", "silhouette", "silhouette_iou"]


def _cv2():
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("edge maps need OpenCV: pip install opencv-python-headless") from e
    return cv2


def _check_u8_image(img) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ValueError(f"expected an image [H, W], [H, W, 3] or [H, W, 4], got {a.shape}")
    return a


def composite(img_rgba_u8: np.ndarray, background=(128, 128, 128)) -> np.ndarray:
    """RGBA (or RGB / grey) uint8 -> RGB uint8 over a flat ``background`` colour."""
    a = _check_u8_image(img_rgba_u8)
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 3:
        return a
    alpha = a[..., 3:4].astype(np.float32) / 255.0
    bg = np.asarray(background, dtype=np.float32).reshape(1, 1, -1)
    return np.rint(a[..., :3].astype(np.float32) * alpha + bg * (1.0 - alpha)).astype(np.uint8)


def edge_map(img_rgba_u8: np.ndarray, low: float = 100, high: float = 200,
             background=(128, 128, 128), alpha_edges: bool = True) -> np.ndarray:
    """Canny edges of a sprite: uint8 ``[H, W]``, 255 on edges. See the module docstring."""
    cv2 = _cv2()
    a = _check_u8_image(img_rgba_u8)
    if a.ndim == 2:
        gray = a
    else:
        rgb = composite(a, background)
        gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
    edges = cv2.Canny(np.ascontiguousarray(gray), float(low), float(high), apertureSize=3, L2gradient=True)
    if alpha_edges and a.ndim == 3 and a.shape[2] == 4:
        edges = np.maximum(edges, cv2.Canny(np.ascontiguousarray(a[..., 3]), float(low), float(high),
                                            apertureSize=3, L2gradient=True))
    return edges


def silhouette(img_rgba_u8: np.ndarray, threshold: int = 127) -> np.ndarray:
    """uint8 ``[H, W]``: 255 where alpha > threshold. The image must have an alpha channel."""
    a = _check_u8_image(img_rgba_u8)
    if a.ndim != 3 or a.shape[2] != 4:
        raise ValueError(f"silhouette needs an RGBA image [H, W, 4], got {a.shape}")
    return np.where(a[..., 3] > threshold, 255, 0).astype(np.uint8)


def _size_wh(size) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    w, h = size
    return int(w), int(h)


def _resize_factor(src: int, dst: int) -> tuple[str, int] | None:
    if src == dst:
        return ("same", 1)
    if src > dst and src % dst == 0:
        return ("down", src // dst)
    if dst > src and dst % src == 0:
        return ("up", dst // src)
    return None


def load_control_image(path: str | Path, size: int | tuple[int, int], channels: int = 1) -> np.ndarray:
    """Read a user-supplied control map (depth, edges, scribble, ...) at exactly ``size``.

    ``size`` is an int (square) or ``(width, height)``. Returns uint8 ``[H, W]`` for
    ``channels=1`` (converted to grey) or ``[H, W, channels]`` for 3 (RGB) / 4 (RGBA).
    Raises DataError naming the file if it cannot be read, or if its size is neither ``size``
    nor an integer multiple/divisor of it (same factor on both axes).
    """
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3, 4):
        raise ValueError(f"channels must be 1, 3 or 4, got {channels}")
    tw, th = _size_wh(size)
    path = Path(path)
    try:
        with Image.open(path) as im:
            im.load()
            img = im.copy()
    except FileNotFoundError as e:
        raise DataError(f"{path}: control image not found") from e
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read control image ({e})") from e

    w, h = img.size
    fx, fy = _resize_factor(w, tw), _resize_factor(h, th)
    if fx is None or fy is None or fx != fy:
        raise DataError(f"{path}: control image is {w}x{h} but {tw}x{th} is expected "
                        f"(only the exact size or an integer multiple/divisor of it, same on both axes, "
                        f"can be used)")

    arr = _to_u8(img, channels, path)
    kind, k = fx
    if kind == "down":
        o = k // 2
        arr = arr[o::k, o::k]
    elif kind == "up":
        arr = arr.repeat(k, axis=0).repeat(k, axis=1)
    assert arr.shape[:2] == (th, tw), arr.shape
    return np.ascontiguousarray(arr)


def _to_u8(img, channels: int, path) -> np.ndarray:
    from PIL import Image

    mode = img.mode
    if mode.startswith("I") or mode == "F":       # 16/32-bit integer or float grey maps (depth)
        a = np.asarray(img, dtype=np.float64)
        if not np.isfinite(a).all():
            raise DataError(f"{path}: control image has NaN or infinite values")
        if mode == "F":
            a = a * 255.0 if a.max(initial=0) <= 1.0 else a
        elif mode.startswith("I;16") or a.max(initial=0) > 255:
            a = a / 257.0                          # 16-bit range -> 8-bit
        img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
        mode = "L"
    target = {1: "L", 3: "RGB", 4: "RGBA"}[channels]
    if channels == 1 and (mode in ("RGBA", "LA", "PA", "La", "RGBa")
                          or (mode == "P" and "transparency" in img.info)):
        # a map drawn on a transparent canvas: grey level times alpha (transparent = 0)
        rgba = np.asarray(img.convert("RGBA"))
        g = np.asarray(Image.fromarray(np.ascontiguousarray(rgba[..., :3])).convert("L"), dtype=np.float32)
        return np.rint(g * (rgba[..., 3] / 255.0)).astype(np.uint8)
    return np.asarray(img.convert(target))


# --------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------

def _binary(x) -> np.ndarray:
    a = np.asarray(x)
    if hasattr(x, "detach"):          # torch tensor
        a = x.detach().cpu().numpy()
    if a.dtype == bool:
        return a
    if a.dtype == np.uint8:
        return a > 127
    return a > 0.5


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Dilate the last two axes by a (2r+1)^2 square (Chebyshev radius r)."""
    if r <= 0:
        return mask
    H, W = mask.shape[-2:]
    pad = [(0, 0)] * (mask.ndim - 2) + [(r, r), (r, r)]
    p = np.pad(mask, pad)
    out = np.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= p[..., dy:dy + H, dx:dx + W]
    return out


def edge_f1(pred_edges, ref_edges, tolerance_px: int = 1) -> float:
    """F1 of two edge maps (``[..., H, W]``, same shape) with a pixel tolerance; see module docstring."""
    p, r = _binary(pred_edges), _binary(ref_edges)
    if p.shape != r.shape:
        raise ValueError(f"edge maps differ in shape: {p.shape} vs {r.shape}")
    if p.ndim < 2:
        raise ValueError(f"edge maps must be [..., H, W], got {p.shape}")
    tol = int(tolerance_px)
    if tol < 0:
        raise ValueError("tolerance_px must be >= 0")
    n_p, n_r = int(p.sum()), int(r.sum())
    if n_p == 0 and n_r == 0:
        return 1.0
    if n_p == 0 or n_r == 0:
        return 0.0
    precision = float((p & _dilate(r, tol)).sum()) / n_p
    recall = float((r & _dilate(p, tol)).sum()) / n_r
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def silhouette_iou(a, b) -> float:
    """Intersection over union of two masks (same shape); both empty -> 1.0."""
    x, y = _binary(a), _binary(b)
    if x.shape != y.shape:
        raise ValueError(f"masks differ in shape: {x.shape} vs {y.shape}")
    union = int((x | y).sum())
    if union == 0:
        return 1.0
    return float((x & y).sum()) / union
