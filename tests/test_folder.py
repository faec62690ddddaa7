"""Tests for spriteforge.data.transforms and spriteforge.data.folder (images generated with Pillow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from spriteforge.config import DataConfig
from spriteforge.data.dataset import DataError
from spriteforge.data.folder import load_image_folder
from spriteforge.data.transforms import (
    composite_over,
    has_transparency,
    resize_pixel_art,
    to_square,
)


def rand_rgba(rng, h, w, opaque=False):
    a = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    if opaque:
        a[..., 3] = 255
    return a


def save(path, arr_or_img, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    img.save(path, **kw)
    return path


def load(root, **cfg):
    warnings = []
    s = load_image_folder(root, DataConfig(**cfg), log=warnings.append)
    return s, warnings


def hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------- transforms

def test_to_square_crop_takes_the_center():
    a = np.arange(8 * 16 * 3, dtype=np.uint8).reshape(8, 16, 3)        # 16 wide, 8 tall
    out = to_square(Image.fromarray(a), "crop")
    assert out.size == (8, 8)
    assert np.array_equal(np.asarray(out), a[:, 4:12])
    odd = np.arange(4 * 9, dtype=np.uint8).reshape(4, 9)                # odd difference: extra px dropped right
    assert np.array_equal(np.asarray(to_square(Image.fromarray(odd), "crop")), odd[:, 2:6])


def test_to_square_pad_rgba_is_transparent_and_centered():
    a = rand_rgba(np.random.default_rng(0), 16, 8, opaque=True)        # 8 wide, 16 tall
    out = np.asarray(to_square(Image.fromarray(a), "pad"))
    assert out.shape == (16, 16, 4)
    assert np.array_equal(out[:, 4:12], a)
    assert (out[:, :4] == 0).all() and (out[:, 12:] == 0).all()


def test_to_square_pad_rgb_uses_dominant_border_color():
    a = np.zeros((6, 12, 3), np.uint8)
    a[:] = (10, 20, 200)            # blue background
    a[0, 3] = (255, 0, 0)           # a red detail touching the border must not be smeared into the padding
    out = np.asarray(to_square(Image.fromarray(a), "pad"))
    assert out.shape == (12, 12, 3)
    assert np.array_equal(out[3:9], a)
    pad = np.concatenate([out[:3], out[9:]]).reshape(-1, 3)
    assert (pad == (10, 20, 200)).all()


def test_resize_integer_factors_are_exact_nearest():
    rng = np.random.default_rng(1)
    art = rand_rgba(rng, 8, 8)
    big = Image.fromarray(art).resize((32, 32), Image.Resampling.NEAREST)
    # the smooth filter name is ignored for integer factors, in both directions
    assert np.array_equal(np.asarray(resize_pixel_art(big, 8, "lanczos")), art)
    up = np.asarray(resize_pixel_art(Image.fromarray(art), 16, "bicubic"))
    assert np.array_equal(up, np.repeat(np.repeat(art, 2, 0), 2, 1))


def test_resize_non_integer_uses_the_named_filter():
    a = np.random.default_rng(2).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    img = Image.fromarray(a)
    got = np.asarray(resize_pixel_art(img, 32, "bilinear"))
    assert np.array_equal(got, np.asarray(img.resize((32, 32), Image.Resampling.BILINEAR)))
    assert not np.array_equal(got, np.asarray(resize_pixel_art(img, 32, "nearest")))


def test_resize_rgba_premultiplied_has_no_dark_fringe():
    a = np.zeros((48, 48, 4), np.uint8)        # right half: transparent black
    a[:, :24] = (255, 0, 0, 255)               # left half: opaque red
    out = np.asarray(resize_pixel_art(Image.fromarray(a), 32, "lanczos")).astype(int)
    edge = out[..., 3] > 0
    assert (out[..., 3] > 0).any() and ((out[..., 3] > 0) & (out[..., 3] < 255)).any()   # there is a soft edge
    assert (out[edge][:, 0] == 255).all() and (out[edge][:, 1:3] == 0).all()
    assert (out[out[..., 3] == 0][:, :3] == 0).all()


def test_resize_rgba_keeps_colour_of_faint_pixels():
    # 8-bit premultiplication would turn colour 200 at alpha 3 into 170; float keeps it exact.
    a = np.zeros((24, 24, 4), np.uint8)
    a[:] = (200, 100, 50, 3)
    out = np.asarray(resize_pixel_art(Image.fromarray(a), 16, "bicubic"))
    assert (out == (200, 100, 50, 3)).all()


def test_has_transparency_ignores_opaque_alpha_and_unused_palette_entry():
    opaque = Image.fromarray(rand_rgba(np.random.default_rng(3), 4, 4, opaque=True))
    assert not has_transparency(opaque)
    p = Image.new("P", (4, 4), 1)
    p.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    p.info["transparency"] = 0            # index 0 is transparent but no pixel uses it
    assert not has_transparency(p)
    p.putpixel((0, 0), 0)
    assert has_transparency(p)


def test_composite_over_white():
    a = np.array([[[0, 0, 0, 0], [255, 0, 0, 255], [0, 0, 0, 128]]], np.uint8)
    out = np.asarray(composite_over(Image.fromarray(a)))
    assert out.shape == (1, 3, 3)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [255, 0, 0]
    assert out[0, 2].tolist() == [127, 127, 127]


# --------------------------------------------------------------------------- folder: channels

def test_rgba_kept_and_alpha_exact_with_nearest(tmp_path):
    rng = np.random.default_rng(4)
    art = rand_rgba(rng, 16, 16)
    art[0, 0, 3], art[0, 1, 3] = 0, 37
    save(tmp_path / "a.png", art)
    save(tmp_path / "b.png", np.repeat(np.repeat(art[:8, :8], 2, 0), 2, 1))   # 2x nearest-upscaled art
    s, _ = load(tmp_path, size=16)
    assert s.images.shape == (2, 4, 16, 16) and s.images.dtype == torch.uint8
    assert np.array_equal(hwc(s.images[0]), art)
    s8, _ = load(tmp_path, size=8)
    assert np.array_equal(hwc(s8.images[1]), art[:8, :8])


def test_rgb_stays_three_channels(tmp_path):
    rng = np.random.default_rng(5)
    save(tmp_path / "a.png", rand_rgba(rng, 16, 16)[..., :3])
    save(tmp_path / "b.jpg", rand_rgba(rng, 16, 16)[..., :3], quality=95)
    save(tmp_path / "c.png", rand_rgba(rng, 16, 16, opaque=True))        # RGBA file but fully opaque
    s, _ = load(tmp_path, size=16)
    assert s.images.shape == (3, 3, 16, 16)
    assert s.paths == [str(tmp_path / n) for n in ("a.png", "b.jpg", "c.png")]


def test_auto_detects_alpha_if_any_image_has_it(tmp_path):
    rng = np.random.default_rng(6)
    rgb = rand_rgba(rng, 16, 16)[..., :3]
    save(tmp_path / "a.png", rgb)
    t = rand_rgba(rng, 16, 16, opaque=True)
    t[5, 5, 3] = 0
    save(tmp_path / "b.png", t)
    s, _ = load(tmp_path, size=16)
    assert s.channels == 4
    assert np.array_equal(hwc(s.images[0])[..., :3], rgb)
    assert (s.images[0, 3] == 255).all()
    assert s.images[1, 3, 5, 5] == 0


def test_forced_channels(tmp_path):
    a = np.zeros((16, 16, 4), np.uint8)
    a[:8] = (0, 0, 255, 255)                  # top opaque blue, bottom fully transparent black
    save(tmp_path / "s.png", a)
    rgb, _ = load(tmp_path, size=16, channels="rgb")
    assert rgb.channels == 3
    assert hwc(rgb.images[0])[0, 0].tolist() == [0, 0, 255]
    assert hwc(rgb.images[0])[15, 0].tolist() == [255, 255, 255]      # composited over white
    save(tmp_path / "s.png", a[..., :3].copy())
    rgba, _ = load(tmp_path, size=16, channels="rgba")
    assert rgba.channels == 4 and (rgba.images[0, 3] == 255).all()


def test_palette_transparency_png_and_gif_first_frame(tmp_path):
    pal = [0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (768 - 9)
    idx = np.ones((16, 16), np.uint8)
    idx[:4] = 0                                               # top rows use the transparent index
    p = Image.fromarray(idx, "P")
    p.putpalette(pal)
    p.save(tmp_path / "p.png", transparency=0)
    frame2 = Image.fromarray(np.full((16, 16), 2, np.uint8), "P")
    frame2.putpalette(pal)
    p.save(tmp_path / "q.gif", save_all=True, append_images=[frame2], transparency=0, duration=100, disposal=2)
    s, _ = load(tmp_path, size=16)
    assert s.channels == 4
    for i in range(2):
        img = hwc(s.images[i])
        assert (img[:4, :, 3] == 0).all(), s.paths[i]
        assert (img[4:, :, 3] == 255).all() and img[8, 8, :3].tolist() == [255, 0, 0], s.paths[i]  # frame 1 is red


# --------------------------------------------------------------------------- folder: geometry

def test_integer_factor_round_trip(tmp_path):
    art = np.random.default_rng(7).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(art).resize((32, 32), Image.Resampling.NEAREST).save(tmp_path / "big.png")
    s, _ = load(tmp_path, size=8, resize_filter="lanczos")
    assert np.array_equal(hwc(s.images[0]), art)


def test_non_integer_factor_uses_filter(tmp_path):
    a = np.random.default_rng(8).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    save(tmp_path / "x.png", a)
    s, _ = load(tmp_path, size=32, resize_filter="bicubic")
    assert np.array_equal(hwc(s.images[0]), np.asarray(Image.fromarray(a).resize((32, 32), Image.Resampling.BICUBIC)))
    n, _ = load(tmp_path, size=32, resize_filter="nearest")
    assert not torch.equal(s.images, n.images)


def test_crop_vs_pad_geometry(tmp_path):
    a = np.zeros((16, 32, 4), np.uint8)                      # 32 wide, 16 tall
    a[..., 3] = 255
    a[:, :8, 0] = 255                                        # red left quarter
    a[:, 8:24, 1] = 255                                      # green middle half
    a[:, 24:, 2] = 255                                       # blue right quarter
    a[0, 0, 3] = 10                                          # real transparency -> RGBA
    save(tmp_path / "wide.png", a)
    crop, _ = load(tmp_path, size=16, fit="crop")
    c = hwc(crop.images[0])
    assert (c[..., 1] == 255).all() and (c[..., 0] == 0).all()          # only the green center survives
    pad, _ = load(tmp_path, size=32, fit="pad")
    p = hwc(pad.images[0])
    assert (p[:8, :, 3] == 0).all() and (p[24:, :, 3] == 0).all()       # transparent bars top and bottom
    assert np.array_equal(p[8:24], a)
    assert pad.meta[0]["orig_size"] == [32, 16]


# --------------------------------------------------------------------------- folder: captions and labels

def test_sidecar_captions(tmp_path):
    rng = np.random.default_rng(9)
    for n in ("a", "b", "c"):
        save(tmp_path / f"{n}.png", rand_rgba(rng, 8, 8))
    (tmp_path / "a.txt").write_text("  a knight in red armor \n")
    (tmp_path / "b.txt").write_text("   \n")
    s, _ = load(tmp_path, size=8)
    assert s.captions == ["a knight in red armor", None, None]
    assert len(s) == 3                                         # .txt files are not images


def test_metadata_jsonl_root_and_subfolder(tmp_path):
    rng = np.random.default_rng(10)
    save(tmp_path / "r.png", rand_rgba(rng, 8, 8))
    save(tmp_path / "mages" / "m.png", rand_rgba(rng, 8, 8))
    save(tmp_path / "mages" / "deep" / "d.png", rand_rgba(rng, 8, 8))
    save(tmp_path / "mages" / "side.png", rand_rgba(rng, 8, 8))
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"file_name": "r.png", "text": "root caption", "artist": "ann"},
        {"file_name": "mages/m.png", "text": "overridden by the deeper jsonl"},
        {"file_name": "mages/side.png", "text": "jsonl caption", "pose": "idle"},
        {"file_name": "missing.png", "text": "nothing"},
    ]) + "\n")
    (tmp_path / "mages" / "metadata.jsonl").write_text(
        json.dumps({"file_name": "m.png", "text": "a mage"}) + "\n\n" +
        json.dumps({"file_name": "deep/d.png", "text": "deep mage", "frame": 3}) + "\n")
    (tmp_path / "mages" / "side.txt").write_text("sidecar caption")
    s, warnings = load(tmp_path, size=8)
    by = {m["relpath"]: (c, m) for c, m in zip(s.captions, s.meta)}
    assert by["r.png"][0] == "root caption" and by["r.png"][1]["artist"] == "ann"
    assert by["mages/m.png"][0] == "a mage"
    assert by["mages/deep/d.png"][0] == "deep mage" and by["mages/deep/d.png"][1]["frame"] == 3
    assert by["mages/side.png"][0] == "sidecar caption"            # sidecar wins ...
    assert by["mages/side.png"][1]["pose"] == "idle"               # ... jsonl extras are kept
    assert by["r.png"][1]["source"] == "folder" and "file_name" not in by["r.png"][1]
    assert any("missing.png" in w for w in warnings)


def test_bad_metadata_jsonl_names_file_and_line(tmp_path):
    save(tmp_path / "a.png", rand_rgba(np.random.default_rng(11), 8, 8))
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "a.png", "text": "ok"}\n{not json\n')
    with pytest.raises(DataError, match=r"metadata\.jsonl:2"):
        load(tmp_path, size=8)


def test_class_labels_from_first_level_subfolders(tmp_path):
    rng = np.random.default_rng(12)
    save(tmp_path / "root.png", rand_rgba(rng, 8, 8))
    save(tmp_path / "slime" / "s1.png", rand_rgba(rng, 8, 8))
    save(tmp_path / "knight" / "walk" / "k1.png", rand_rgba(rng, 8, 8))   # deeper: still "knight"
    save(tmp_path / "knight" / "k2.png", rand_rgba(rng, 8, 8))
    s, _ = load(tmp_path, size=8)
    assert s.class_names == ["knight", "slime"]
    lab = dict(zip((m["relpath"] for m in s.meta), s.labels.tolist()))
    assert lab == {"root.png": -1, "slime/s1.png": 1, "knight/walk/k1.png": 0, "knight/k2.png": 0}
    assert s.labels.dtype == torch.int64


def test_no_subfolders_means_no_classes(tmp_path):
    rng = np.random.default_rng(13)
    for n in ("a", "b"):
        save(tmp_path / f"{n}.png", rand_rgba(rng, 8, 8))
    s, _ = load(tmp_path, size=8)
    assert s.class_names == [] and s.labels.tolist() == [-1, -1]


# --------------------------------------------------------------------------- folder: bad data

def _with_corrupt(tmp_path):
    rng = np.random.default_rng(14)
    save(tmp_path / "good.png", rand_rgba(rng, 16, 16))
    save(tmp_path / "full.png", rand_rgba(rng, 64, 64))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "full.png").unlink()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"this is not a jpeg at all")


def test_corrupt_files_skipped_with_warning_naming_them(tmp_path):
    _with_corrupt(tmp_path)
    s, warnings = load(tmp_path, size=16)
    assert s.paths == [str(tmp_path / "good.png")]
    assert any(str(tmp_path / "junk.jpg") in w for w in warnings)
    assert any(str(tmp_path / "trunc.png") in w for w in warnings)


def test_strict_raises_on_first_corrupt_file(tmp_path):
    _with_corrupt(tmp_path)
    with pytest.raises(DataError, match="junk.jpg"):            # sorted order: junk.jpg comes first
        load(tmp_path, size=16, strict=True)


def test_all_files_corrupt_is_an_error(tmp_path):
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    with pytest.raises(DataError, match="could be read"):
        load(tmp_path, size=16)


@pytest.mark.parametrize("kind", ["missing", "file", "empty", "only_text"])
def test_folder_errors_name_path_and_extensions(tmp_path, kind):
    root = tmp_path / "sprites"
    if kind == "file":
        root.write_text("hi")
    elif kind in ("empty", "only_text"):
        root.mkdir()
        if kind == "only_text":
            (root / "notes.txt").write_text("x")
            (root / "art.psd").write_bytes(b"x")
            save(root / ".hidden.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError) as e:
        load(root, size=16)
    assert str(root) in str(e.value) and ".png" in str(e.value) and ".gif" in str(e.value)
    if kind == "only_text":
        assert ".psd" in str(e.value)


def test_too_small_image_names_file_size_and_data_size(tmp_path):
    rng = np.random.default_rng(15)
    save(tmp_path / "ok.png", rand_rgba(rng, 32, 32))
    save(tmp_path / "tiny.png", rand_rgba(rng, 3, 5))
    with pytest.raises(DataError) as e:
        load(tmp_path, size=32)
    msg = str(e.value)
    assert str(tmp_path / "tiny.png") in msg and "5x3" in msg and "--data.size=32" in msg
    assert "ok.png" not in msg


def test_too_small_upscale_limit(tmp_path):
    save(tmp_path / "a.png", rand_rgba(np.random.default_rng(16), 8, 8))
    s, _ = load(tmp_path, size=64)                 # exactly 8x: allowed
    assert s.images.shape[-1] == 64
    with pytest.raises(DataError, match="a.png is 8x8"):
        load(tmp_path, size=72)                    # 9x: refused


def test_hidden_files_and_dirs_ignored(tmp_path):
    rng = np.random.default_rng(17)
    save(tmp_path / "a.png", rand_rgba(rng, 8, 8))
    save(tmp_path / ".thumb.png", rand_rgba(rng, 8, 8))
    save(tmp_path / ".git" / "x.png", rand_rgba(rng, 8, 8))
    save(tmp_path / "__MACOSX" / "y.png", rand_rgba(rng, 8, 8))
    (tmp_path / "._a.png").write_bytes(b"AppleDouble junk")        # would be a corrupt-file warning
    s, warnings = load(tmp_path, size=8)
    assert s.paths == [str(tmp_path / "a.png")] and warnings == [] and s.class_names == []


def test_deterministic_order_independent_of_creation(tmp_path):
    rng = np.random.default_rng(18)
    names = ["b/2.png", "b-c.png", "a.png", "b/10.png", "A/z.png", "c.BMP", "b/1.webp", "a b/x.gif"]
    for n in names:
        save(tmp_path / n, rand_rgba(rng, 8, 8, opaque=True)[..., :3])
    s1, _ = load(tmp_path, size=8)
    s2, _ = load(tmp_path, size=8)
    rels = [m["relpath"] for m in s1.meta]
    # sorted by path components, so a folder's files stay together ("b/..." before "b-c.png")
    assert rels == ["A/z.png", "a b/x.gif", "a.png", "b/1.webp", "b/10.png", "b/2.png", "b-c.png", "c.BMP"]
    assert s1.paths == s2.paths and torch.equal(s1.images, s2.images)


def test_mixed_sizes_warn_in_one_line(tmp_path):
    rng = np.random.default_rng(19)
    save(tmp_path / "a.png", rand_rgba(rng, 16, 16))
    save(tmp_path / "b.png", rand_rgba(rng, 32, 32))
    save(tmp_path / "c.png", rand_rgba(rng, 32, 32))
    s, warnings = load(tmp_path, size=16)
    assert s.images.shape == (3, 4, 16, 16)
    assert len(warnings) == 1 and "2 different sizes" in warnings[0] and "\n" not in warnings[0]


def test_exif_orientation_applied(tmp_path):
    a = np.zeros((8, 16, 3), np.uint8)        # 16 wide, 8 tall, stored sideways with "rotate 90 CW" tag
    a[:, :8] = 255
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "photo.png", exif=exif)
    s, _ = load(tmp_path, size=16)
    assert s.meta[0]["orig_size"] == [8, 16]
