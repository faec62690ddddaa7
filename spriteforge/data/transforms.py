"""Pure image transforms for turning arbitrary user images into square training sprites.

Everything here takes a Pillow image and returns a new one; nothing touches the filesystem
and nothing is random, so each step can be tested in isolation. Only Pillow and numpy are
used (no torchvision): the loader runs once per dataset, before training, and has to work on
any laptop.

Two concerns drive the design:

* Pixel art must stay crisp. Sprites are usually drawn at a small native resolution and then
  exported at an integer multiple (2x, 4x, ...) with nearest-neighbour scaling. Any smooth
  filter would blur them, so integer scale factors always use nearest neighbour, and integer
  *down*scales sample the centre of each k x k block: that recovers the original art exactly.
* Transparency must not leak colour. Transparent pixels often carry arbitrary (commonly
  black) colour. Averaging them with opaque neighbours, as every smooth filter does, creates
  dark fringes around sprites. Smooth resampling of images with alpha is therefore done on
  premultiplied colour, in float32 so that faint pixels keep their colour.

Supported modes are "RGB", "RGBA", "L" and "LA"; `normalize_mode` maps anything Pillow can
decode onto "RGB" or "RGBA" first.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}

_MODES = ("RGB", "RGBA", "L", "LA")
WHITE = (255, 255, 255)


def _check_mode(img: Image.Image, fn: str) -> None:
    if img.mode not in _MODES:
        raise ValueError(f"{fn}: expected an image in mode {'/'.join(_MODES)}, got mode {img.mode!r} "
                         f"(call normalize_mode() first)")


def _has_alpha_band(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA")


# --------------------------------------------------------------------------- modes and alpha

def has_transparency(img: Image.Image) -> bool:
    """True if any pixel of `img` is not fully opaque.

    Covers every way an image file can carry transparency: an alpha band (RGBA, LA, PA, ...),
    a palette with a transparent entry ("P" + info["transparency"]), or a colour key on a
    greyscale/RGB image (PNG tRNS). An alpha band that is 255 everywhere does *not* count:
    many tools save opaque images as RGBA, and they should not turn a dataset into RGBA.
    """
    if "A" in img.getbands() or "a" in img.getbands():
        alpha = img.getchannel("A" if "A" in img.getbands() else "a")
        return alpha.getextrema()[0] < 255
    if "transparency" in img.info:
        # The palette entry / colour key may exist without being used by any pixel.
        return img.convert("RGBA").getchannel("A").getextrema()[0] < 255
    return False


def _to_8bit_grey(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit greyscale ("I;16", "I", "F") to "L".

    Pillow's own conversion clips such values at 255 instead of scaling them, which turns most
    16-bit PNGs white, so scale by the actual data range: 16-bit data (max > 255) is divided by
    257, data already in 0..255 is kept.
    """
    a = np.asarray(img, dtype=np.float64)
    if a.size and a.max() > 255:
        a = a / 257.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode="L")


def normalize_mode(img: Image.Image) -> Image.Image:
    """Convert any decoded image to "RGBA" if it has real transparency, else to "RGB"."""
    if img.mode.startswith("I") or img.mode == "F":
        img = _to_8bit_grey(img)
    if has_transparency(img):
        return img if img.mode == "RGBA" else img.convert("RGBA")
    return img if img.mode == "RGB" else img.convert("RGB")


def composite_over(img: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Flatten an "RGBA"/"LA" image onto a solid background colour and return "RGB"/"L".

    Used when the user asks for RGB training data (`--data.channels rgb`): the alpha is
    dropped by standard "over" compositing, so a sprite on a transparent background ends up on
    the background colour (white by default) instead of on whatever garbage colour its
    transparent pixels happened to hold.
    """
    _check_mode(img, "composite_over")
    if not _has_alpha_band(img):
        return img.copy()
    a = np.asarray(img, dtype=np.float32)
    color, alpha = a[..., :-1], a[..., -1:] / 255.0
    bg = np.asarray(background if img.mode == "RGBA" else background[:1], dtype=np.float32)
    out = color * alpha + bg * (1.0 - alpha)
    mode = "RGB" if img.mode == "RGBA" else "L"
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return Image.fromarray(out[..., 0] if mode == "L" else out, mode=mode)


def add_opaque_alpha(img: Image.Image) -> Image.Image:
    """"RGB" -> "RGBA" with alpha 255 everywhere (images with alpha are returned as a copy)."""
    _check_mode(img, "add_opaque_alpha")
    return img.convert("RGBA")


# --------------------------------------------------------------------------- geometry

def dominant_border_color(img: Image.Image) -> tuple[int, ...]:
    """The most common colour along the outermost ring of pixels (ties: smallest value).

    For a sprite on a flat background this is the background colour.
    """
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[..., None]
    ring = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]], axis=0)   # [k, C]
    colors, counts = np.unique(ring, axis=0, return_counts=True)
    return tuple(int(v) for v in colors[int(np.argmax(counts))])


def to_square(img: Image.Image, fit: str) -> Image.Image:
    """Make `img` square, either by center-cropping or by padding.

    fit="crop": keep the central min(w, h) square (for odd differences the extra pixel is
    dropped on the right/bottom). fit="pad": center the image on a max(w, h) square; the
    new pixels are
      * fully transparent (all channels 0) when the image has an alpha band - the natural
        background of a sprite;
      * otherwise one flat colour, the most common colour on the image's border. For a
        sprite on a flat background that continues the background seamlessly. Replicating the
        edge rows instead (numpy "edge" padding) would smear any detail that touches the border
        into streaks the model would then learn to draw.
    """
    _check_mode(img, "to_square")
    if fit not in ("crop", "pad"):
        raise ValueError(f"to_square: fit must be 'crop' or 'pad', got {fit!r}")
    w, h = img.size
    if w == h:
        return img.copy()
    if fit == "crop":
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        return img.crop((left, top, left + s, top + s))
    s = max(w, h)
    fill = (0,) * len(img.getbands()) if _has_alpha_band(img) else dominant_border_color(img)
    out = Image.new(img.mode, (s, s), fill if len(fill) > 1 else fill[0])
    out.paste(img, ((s - w) // 2, (s - h) // 2))
    return out


def integer_factor(side: int, size: int) -> int | None:
    """k if `size` = k * `side` (upscale) or `side` = k * `size` (downscale), else None."""
    if side % size == 0:
        return side // size
    if size % side == 0:
        return size // side
    return None


def resize_pixel_art(img: Image.Image, size: int, filter: str = "lanczos") -> Image.Image:
    """Resize a square image to `size` x `size`, keeping pixel art crisp.

    * Same size: returned unchanged (as a copy).
    * Integer factor k, up or down: nearest neighbour, done with numpy so that the sampling
      positions are explicit. Upscaling repeats each pixel k x k times; downscaling takes the
      pixel at offset k // 2 inside every k x k block (its centre). So art that was exported
      at k x with nearest neighbour comes back exactly, whatever `filter` says.
    * Any other factor: the Pillow filter named by `filter` (nearest, box, bilinear, bicubic,
      lanczos). For images with alpha and a non-nearest filter, colour is premultiplied by
      alpha before resampling and divided out afterwards, in float32, so fully transparent
      pixels (whatever colour they store) cannot bleed into the sprite as dark fringes.
      Pixels that end up fully transparent get colour 0.
    """
    _check_mode(img, "resize_pixel_art")
    if filter not in RESAMPLE:
        raise ValueError(f"resize_pixel_art: filter must be one of {tuple(RESAMPLE)}, got {filter!r}")
    w, h = img.size
    if w != h:
        raise ValueError(f"resize_pixel_art: expected a square image, got {w}x{h} (call to_square() first)")
    if size < 1:
        raise ValueError(f"resize_pixel_art: size must be >= 1, got {size}")
    if w == size:
        return img.copy()

    k = integer_factor(w, size)
    if k is not None:
        a = np.asarray(img)
        if w > size:
            a = a[k // 2::k, k // 2::k]
        else:
            a = np.repeat(np.repeat(a, k, axis=0), k, axis=1)
        return Image.fromarray(np.ascontiguousarray(a), mode=img.mode)

    resample = RESAMPLE[filter]
    if not _has_alpha_band(img) or resample == Image.Resampling.NEAREST:
        return img.resize((size, size), resample)
    return _resize_premultiplied(img, size, resample)


def _resize_premultiplied(img: Image.Image, size: int, resample) -> Image.Image:
    a = np.asarray(img, dtype=np.float32)
    alpha = a[..., -1:] / 255.0
    planes = np.concatenate([a[..., :-1] * alpha, a[..., -1:]], axis=-1)
    out = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(planes[..., c]), mode="F")
                               .resize((size, size), resample))
                    for c in range(planes.shape[-1])], axis=-1)
    out_alpha = np.clip(out[..., -1:], 0.0, 255.0)
    a8 = np.rint(out_alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        color = np.where(a8 > 0, out[..., :-1] * 255.0 / np.maximum(out_alpha, 1e-6), 0.0)
    res = np.concatenate([np.clip(np.rint(color), 0, 255), a8], axis=-1).astype(np.uint8)
    return Image.fromarray(res, mode=img.mode)
