import numpy as np
import pytest
from PIL import Image

from spriteforge.data.control import composite, edge_f1, edge_map, load_control_image, silhouette, silhouette_iou
from spriteforge.data.dataset import DataError

pytest.importorskip("cv2")


def square_sprite(color=(200, 50, 50), size=32, lo=8, hi=24):
    img = np.zeros((size, size, 4), np.uint8)
    img[lo:hi, lo:hi] = (*color, 255)
    return img


def ring(size=32, lo=8, hi=24):
    r = np.zeros((size, size), bool)
    r[lo:hi, lo:hi] = True
    r[lo + 1:hi - 1, lo + 1:hi - 1] = False
    return r


# ---------------------------------------------------------------- edges

def test_edge_map_of_square_finds_its_border():
    e = edge_map(square_sprite())
    assert e.shape == (32, 32) and e.dtype == np.uint8 and set(np.unique(e).tolist()) == {0, 255}
    assert edge_f1(e, ring(), tolerance_px=1) > 0.9
    assert e[10:22, 10:22].sum() == 0                 # inside is flat
    assert e[:6].sum() == 0 and e[26:].sum() == 0     # far outside is flat
    assert np.array_equal(e, edge_map(square_sprite()))


def test_alpha_edges_find_a_sprite_the_background_hides():
    grey = square_sprite(color=(128, 128, 128))       # same colour as the default background
    assert edge_map(grey, alpha_edges=False).sum() == 0
    assert edge_f1(edge_map(grey), ring(), tolerance_px=1) > 0.9
    # on another background the colour edge is there without alpha
    assert edge_f1(edge_map(grey, background=(0, 0, 0), alpha_edges=False), ring(), 1) > 0.9


def test_edge_map_rgb_and_gray_inputs():
    rgb = composite(square_sprite(), background=(255, 255, 255))
    assert rgb.shape == (32, 32, 3) and tuple(rgb[0, 0]) == (255, 255, 255) and tuple(rgb[16, 16]) == (200, 50, 50)
    assert edge_f1(edge_map(rgb), ring(), 1) > 0.9
    gray = rgb[..., 0]
    assert edge_map(gray).shape == (32, 32)
    with pytest.raises(ValueError):
        edge_map(rgb.astype(np.float32))


# ---------------------------------------------------------------- silhouette

def test_silhouette_threshold_and_iou():
    img = square_sprite()
    img[8:24, 8:12, 3] = 100                          # semi-transparent strip
    s = silhouette(img, threshold=127)
    assert s.dtype == np.uint8 and (s[8:24, 12:24] == 255).all() and s[8:24, 8:12].sum() == 0
    assert (silhouette(img, threshold=50) > 0).sum() == 16 * 16
    with pytest.raises(ValueError, match="RGBA"):
        silhouette(img[..., :3])


def test_silhouette_iou_known_cases():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[:, :6] = True                                    # 60 px
    b[:, 3:] = True                                    # 70 px, overlap 30, union 100
    assert silhouette_iou(a, b) == pytest.approx(0.3)
    assert silhouette_iou(a, a) == 1.0
    assert silhouette_iou(a, ~a) == 0.0
    assert silhouette_iou(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0
    assert silhouette_iou(a.astype(np.uint8) * 255, b.astype(np.uint8) * 255) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        silhouette_iou(a, b[:5])


# ---------------------------------------------------------------- edge F1

def test_edge_f1_identical_disjoint_and_tolerance():
    r = ring()
    assert edge_f1(r, r) == 1.0
    far = np.zeros_like(r)
    far[0, :] = True
    assert edge_f1(far, r, tolerance_px=1) == 0.0
    shifted = np.roll(r, 1, axis=1)                   # 1 px to the right
    assert edge_f1(shifted, r, tolerance_px=0) < 0.6
    assert edge_f1(shifted, r, tolerance_px=1) == 1.0
    shifted3 = np.roll(r, 3, axis=1)
    assert edge_f1(shifted3, r, tolerance_px=1) < 0.6 and edge_f1(shifted3, r, tolerance_px=3) == 1.0
    # half the reference predicted, no false positives: P = 1, R = 0.5 -> F1 = 2/3
    half = r.copy()
    half[:, 16:] = False
    p, rr = 1.0, half.sum() / r.sum()
    assert edge_f1(half, r, 0) == pytest.approx(2 * p * rr / (p + rr))
    assert edge_f1(np.zeros_like(r), np.zeros_like(r)) == 1.0
    assert edge_f1(np.zeros_like(r), r) == 0.0
    assert edge_f1(np.stack([r, r]), np.stack([r, r])) == 1.0      # batched [N, H, W]
    with pytest.raises(ValueError):
        edge_f1(r, r[:5])


# ---------------------------------------------------------------- user control images

def test_load_control_image_exact_and_integer_factors(tmp_path):
    depth = (np.arange(32 * 32).reshape(32, 32) % 251).astype(np.uint8)
    Image.fromarray(depth).save(tmp_path / "depth.png")
    out = load_control_image(tmp_path / "depth.png", 32)
    assert out.shape == (32, 32) and out.dtype == np.uint8 and np.array_equal(out, depth)
    # 2x larger: nearest keeps the pixel at offset 1 of each 2x2 block
    big = np.arange(64 * 64).reshape(64, 64).astype(np.uint8)
    Image.fromarray(big).save(tmp_path / "big.png")
    assert np.array_equal(load_control_image(tmp_path / "big.png", 32), big[1::2, 1::2])
    # 2x smaller: each pixel repeated
    small = (np.arange(16 * 16).reshape(16, 16)).astype(np.uint8)
    Image.fromarray(small).save(tmp_path / "small.png")
    up = load_control_image(tmp_path / "small.png", 32)
    assert up.shape == (32, 32) and up[0, 1] == small[0, 0] and up[31, 31] == small[15, 15]
    # colour -> 3 channels; non-square target
    Image.fromarray(np.zeros((16, 32, 3), np.uint8)).save(tmp_path / "wide.png")
    assert load_control_image(tmp_path / "wide.png", (32, 16), channels=3).shape == (16, 32, 3)


def test_load_control_image_16bit_and_transparent(tmp_path):
    d16 = np.full((32, 32), 65535, np.uint16)
    d16[:, :16] = 257 * 10
    Image.fromarray(d16).save(tmp_path / "d16.png")
    out = load_control_image(tmp_path / "d16.png", 32)
    assert out[0, 0] == 10 and out[0, 31] == 255
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., :3] = 255
    rgba[:, :8, 3] = 255                              # opaque white strip on a transparent canvas
    Image.fromarray(rgba).save(tmp_path / "scribble.png")
    s = load_control_image(tmp_path / "scribble.png", 32)
    assert (s[:, :8] == 255).all() and s[:, 8:].sum() == 0


@pytest.mark.parametrize("shape", [(40, 40), (48, 48), (32, 64), (20, 20)])
def test_control_image_of_wrong_size_errors_with_both_sizes(tmp_path, shape):
    h, w = shape
    p = tmp_path / "edges_wrong.png"
    Image.fromarray(np.zeros((h, w), np.uint8)).save(p)
    with pytest.raises(DataError) as ei:
        load_control_image(p, 32)
    msg = str(ei.value)
    assert str(p) in msg and f"{w}x{h}" in msg and "32x32" in msg, msg


def test_control_image_unreadable(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not a picture")
    with pytest.raises(DataError, match="cannot read"):
        load_control_image(p, 32)
    with pytest.raises(DataError, match="not found"):
        load_control_image(tmp_path / "missing.png", 32)
