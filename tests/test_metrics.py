"""Known-answer tests for the offline quality metrics (spriteforge.evaluation.metrics / features)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spriteforge.evaluation import metrics as M
from spriteforge.evaluation.features import (EffNetFeatures, composite_checkerboard, composite_rgba,
                                             pixel_features)


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------

def make_sprites(n: int, seed: int, size: int = 32, channels: int = 4) -> torch.Tensor:
    """Procedural sprites: a filled ellipse or box with a dark outline on a transparent background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((n, 4, size, size), dtype=np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(size * 0.3, size * 0.7, 2)
        ry, rx = rng.uniform(size * 0.12, size * 0.35, 2)
        if rng.random() < 0.5:
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            inner = ((yy - cy) / max(ry - 1.5, 0.5)) ** 2 + ((xx - cx) / max(rx - 1.5, 0.5)) ** 2 <= 1.0
        else:
            inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
            inner = (np.abs(yy - cy) <= ry - 1.5) & (np.abs(xx - cx) <= rx - 1.5)
        colour = rng.integers(40, 256, 3)
        out[i, :3][:, inside] = 20                     # outline
        out[i, :3][:, inner] = colour[:, None]
        out[i, 3][inside] = 255
    x = torch.from_numpy(out)
    return composite_rgba(x) if channels == 3 else x


def add_noise(x: torch.Tensor, amp: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x.to(torch.int16) + torch.randint(-amp, amp + 1, x.shape, generator=g, dtype=torch.int16)).clamp(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------------------------------
# compositing / pixel features
# --------------------------------------------------------------------------------------------------

def test_composite_rgba():
    x = torch.zeros(1, 4, 2, 2, dtype=torch.uint8)
    x[0, :3] = torch.tensor([200, 10, 60], dtype=torch.uint8).view(3, 1, 1)
    x[0, 3] = torch.tensor([[255, 0], [128, 255]], dtype=torch.uint8)
    out = composite_rgba(x, background=(0, 100, 250))
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 2, 2)
    assert out[0, :, 0, 0].tolist() == [200, 10, 60]           # opaque keeps its colour
    assert out[0, :, 0, 1].tolist() == [0, 100, 250]           # transparent shows background
    assert out[0, :, 1, 0].tolist() == [round((200 * 128 + 0 * 127) / 255), round((10 * 128 + 100 * 127) / 255),
                                        round((60 * 128 + 250 * 127) / 255)]
    rgb = make_sprites(3, 0, channels=3)
    assert torch.equal(composite_rgba(rgb), rgb)               # RGB passes through
    out_np = composite_rgba(x.numpy())
    assert isinstance(out_np, np.ndarray) and out_np.shape == (1, 3, 2, 2)
    assert composite_rgba(x)[0, :, 0, 1].tolist() == [128, 128, 128]   # documented default: mid grey
    with pytest.raises(ValueError):
        composite_rgba(torch.zeros(2, 2, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError):
        composite_rgba(torch.zeros(1, 4, 4, 4))
    board = composite_checkerboard(torch.zeros(1, 4, 8, 8, dtype=torch.uint8), cell=4)
    assert len(torch.unique(board)) == 2


def test_pixel_features():
    x = make_sprites(5, 1)
    f = pixel_features(x)
    assert f.shape == (5, 4 * 32 * 32) and f.dtype == np.float32
    assert f.min() >= 0 and f.max() <= 1
    y = x.clone()
    y[:, :3][(y[:, 3:4] == 0).expand(-1, 3, -1, -1)] = 255     # junk colour under alpha 0
    assert np.array_equal(pixel_features(y), f)                # premultiplied: invisible colour ignored
    assert not np.array_equal(pixel_features(y, premultiply=False), pixel_features(x, premultiply=False))


# --------------------------------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------------------------------

def test_fd_identical_is_zero():
    f = np.random.default_rng(0).standard_normal((400, 16))
    assert M.fd_from_features(f, f) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_exact_parameters():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    d1, d2 = np.array([1.0, 2.0, 3.0]), np.array([2.0, 0.5, 0.25])
    analytic = np.sum((mu1 - mu2) ** 2) + np.sum(d1 + d2 - 2 * np.sqrt(d1 * d2))
    assert M.frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(analytic, abs=1e-6)
    # same eigenbasis, rotated: (S1 S2)^{1/2} = R sqrt(D1 D2) R^T
    q, _ = np.linalg.qr(np.random.default_rng(1).standard_normal((3, 3)))
    s1, s2 = q @ np.diag(d1) @ q.T, q @ np.diag(d2) @ q.T
    assert M.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(analytic, abs=1e-6)
    # general (non-commuting) covariances: Tr (S1 S2)^{1/2} = sum sqrt(eig(S1 S2)), eigenvalues real >= 0
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((5, 5)), rng.standard_normal((5, 5))
    s1, s2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    m1, m2 = rng.standard_normal(5), rng.standard_normal(5)
    tr = np.sum(np.sqrt(np.linalg.eigvals(s1 @ s2).real))
    ref = np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr
    assert M.frechet_distance(m1, s1, m2, s2) == pytest.approx(ref, abs=1e-6)
    assert M.frechet_distance(m1, s1, m1, s1) == pytest.approx(0.0, abs=1e-9)


def test_fd_from_samples_matches_analytic():
    rng = np.random.default_rng(3)
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    d1, d2 = np.array([1.0, 2.0, 3.0]), np.array([2.0, 1.0, 0.5])
    n = 200_000
    x = mu1 + rng.standard_normal((n, 3)) * np.sqrt(d1)
    y = mu2 + rng.standard_normal((n, 3)) * np.sqrt(d2)
    analytic = np.sum((mu1 - mu2) ** 2) + np.sum(d1 + d2 - 2 * np.sqrt(d1 * d2))
    assert M.fd_from_features(x, y) == pytest.approx(analytic, rel=0.02)


def test_fd_small_n_is_finite_and_warns():
    rng = np.random.default_rng(4)
    with pytest.warns(RuntimeWarning):
        v = M.fd_from_features(rng.standard_normal((20, 64)), rng.standard_normal((30, 64)) + 1.0)
    assert np.isfinite(v) and v > 0
    with pytest.raises(ValueError):
        M.fd_from_features(rng.standard_normal((1, 4)), rng.standard_normal((5, 4)))


# --------------------------------------------------------------------------------------------------
# KID
# --------------------------------------------------------------------------------------------------

def test_kid_known_behaviour():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((600, 32)), rng.standard_normal((600, 32))
    shifted = rng.standard_normal((600, 32)) + 0.5
    same = M.kid(a, b, subsets=20, subset_size=200, seed=0)
    self_ = M.kid(a, a, subsets=20, subset_size=200, seed=0)
    far = M.kid(a, shifted, subsets=20, subset_size=200, seed=0)
    assert set(same) >= {"mean", "std", "subsets", "subset_size"} and same["subset_size"] == 200
    assert abs(self_["mean"]) < 0.05 * far["mean"]
    assert abs(same["mean"]) < 0.05 * far["mean"]
    assert far["mean"] > same["mean"] + 5 * far["std"]
    assert M.kid(a, shifted, subsets=20, subset_size=200, seed=0) == far     # deterministic by seed
    assert M.kid(a, shifted, subsets=5, subset_size=10_000)["subset_size"] == 600


# --------------------------------------------------------------------------------------------------
# SWD
# --------------------------------------------------------------------------------------------------

SWD_FAST = dict(patches_per_image=32, n_projections=128)


def test_swd_identical_zero_and_grows_with_perturbation():
    x = make_sprites(64, 6)
    same = M.swd_laplacian(x, x, **SWD_FAST)
    assert set(same) == {"32px", "16px", "8px", "mean"}
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in same.values())
    small = M.swd_laplacian(x, add_noise(x, 8), **SWD_FAST)
    big = M.swd_laplacian(x, add_noise(x, 48), **SWD_FAST)
    assert 0 < small["32px"] < big["32px"]
    assert small["mean"] < big["mean"]
    assert M.swd_laplacian(x, add_noise(x, 8), **SWD_FAST) == small              # deterministic by seed
    other = M.swd_laplacian(x, make_sprites(48, 7), **SWD_FAST)                   # unequal set sizes work
    assert all(np.isfinite(v) and v > 0 for v in other.values())


def test_swd_rgb_and_levels():
    x = make_sprites(32, 8, size=64, channels=3)
    r = M.swd_laplacian(x, x.flip(-1), min_res=16, **SWD_FAST)
    assert set(r) == {"64px", "32px", "16px", "mean"}
    with pytest.raises(ValueError):
        M.swd_laplacian(make_sprites(4, 0), make_sprites(4, 0, channels=3))


# --------------------------------------------------------------------------------------------------
# precision / recall
# --------------------------------------------------------------------------------------------------

def test_precision_recall():
    rng = np.random.default_rng(9)
    real, fake = rng.standard_normal((800, 8)), rng.standard_normal((800, 8))
    pr = M.precision_recall(real, fake, k=3)
    assert pr["precision"] > 0.7 and pr["recall"] > 0.7
    far = M.precision_recall(real, fake + 20.0, k=3)
    assert far["precision"] < 0.01 and far["recall"] < 0.01
    # mode collapse: fakes on a small part of the real support -> high precision, low recall
    collapsed = M.precision_recall(real, 0.2 * fake, k=3)
    assert collapsed["precision"] > 0.9 and collapsed["recall"] < 0.5


# --------------------------------------------------------------------------------------------------
# memorisation
# --------------------------------------------------------------------------------------------------

def test_memorisation_copies_and_fresh_samples():
    train = make_sprites(120, 10)
    rng = np.random.default_rng(11)
    perm = rng.permutation(120)[:40]
    copies = train[torch.from_numpy(perm)]
    train_f = rng.standard_normal((120, 24))
    r = M.memorisation(train_f[perm], train_f, copies, train)
    assert r["near_copy_share"] == 1.0 and r["px_near_copy_share"] == 1.0 and r["feat_near_copy_share"] == 1.0
    assert np.array_equal(r["px_nn_idx"], perm) and np.array_equal(r["feat_nn_idx"], perm)
    assert r["px_nn_dist"].shape == (40,) and np.all(r["px_nn_dist"] == 0)
    # slightly noisy copies still count (+-3 levels < 4/255), fresh sprites and random images do not
    noisy = M.memorisation(gen_px=add_noise(copies, 3), train_px=train)
    assert noisy["near_copy_share"] == 1.0
    fresh = M.memorisation(gen_f=rng.standard_normal((40, 24)), train_f=train_f,
                           gen_px=make_sprites(40, 12), train_px=train)
    assert fresh["px_near_copy_share"] <= 0.05 and fresh["feat_near_copy_share"] <= 0.05
    rand = torch.randint(0, 256, (40, 4, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert M.memorisation(gen_px=rand, train_px=train)["near_copy_share"] == 0.0
    assert 0.0 <= fresh["train_px_near_dup_share"] <= 1.0 and fresh["train_px_nn_dist_median"] > 4 / 255
    # flattened pixel features are accepted too (plain mean absolute difference)
    flat = M.memorisation(gen_px=pixel_features(copies), train_px=pixel_features(train))
    assert flat["near_copy_share"] == 1.0


# --------------------------------------------------------------------------------------------------
# alpha coverage
# --------------------------------------------------------------------------------------------------

def test_alpha_coverage_iou():
    ref = make_sprites(30, 13)
    assert M.alpha_coverage_iou(composite_rgba(ref), ref) is None
    same = M.alpha_coverage_iou(ref, ref)
    assert np.allclose(same["iou"], 1.0) and same["coverage_w1"] == 0.0
    assert same["gen_coverage"] == same["ref_coverage"]
    half = torch.zeros(2, 4, 32, 32, dtype=torch.uint8)
    half[:, 3, :16] = 255
    r = M.alpha_coverage_iou(half, half)
    assert r["gen_coverage"]["mean"] == 0.5 and r["gen_soft_alpha_share"] == 0.0
    shifted = torch.zeros_like(half)
    shifted[:, 3, 8:24] = 255                                   # overlap 8 rows of 24 in the union
    assert M.alpha_coverage_iou(shifted, half)["iou_mean"] == pytest.approx(8 / 24)


# --------------------------------------------------------------------------------------------------
# closest pairs grid
# --------------------------------------------------------------------------------------------------

def test_closest_pairs_grid():
    train = make_sprites(20, 14)
    gen = torch.cat([train[:3], make_sprites(7, 15)])
    r = M.memorisation(gen_px=gen, train_px=train)
    grid = M.closest_pairs_grid(gen, train, r["px_nn_idx"], r["px_nn_dist"], k=6, cols=3, scale=3, gap=2, pad=4)
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    assert grid.shape == (4 + 2 * (96 + 4), 4 + 3 * (2 * 96 + 2 + 4), 3)
    # the first pair is an exact copy: its two halves are identical
    left, right = grid[4:100, 4:100], grid[4:100, 102:198]
    assert np.array_equal(left, right)
    assert len(np.unique(left[:24, :24].reshape(-1, 3), axis=0)) == 2     # checkerboard visible in the corner


# --------------------------------------------------------------------------------------------------
# EfficientNet-Lite0 features (model loaded once for the module)
# --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def effnet():
    # 1 thread: immune to OpenMP stalls when the CI machine's cores are shared with other jobs
    fx = EffNetFeatures(num_threads=1)
    fx.model                                                    # load once
    return fx


@pytest.fixture(scope="module")
def sprites8():
    return make_sprites(8, 16)


@pytest.fixture(scope="module")
def feats8(effnet, sprites8):
    return effnet(sprites8, batch_size=8)                       # one batch = "unbatched"


def test_effnet_shape_and_determinism(effnet, sprites8, feats8):
    threads_before = torch.get_num_threads()
    f = feats8
    assert f.shape == (8, 1280) and f.dtype == np.float64 and np.isfinite(f).all()
    assert np.array_equal(f, effnet(sprites8, batch_size=8))                    # deterministic
    assert np.allclose(effnet(sprites8, batch_size=3), f, atol=1e-4, rtol=1e-4)  # batched == unbatched
    assert np.allclose(effnet(sprites8[:2], batch_size=1), f[:2], atol=1e-4, rtol=1e-4)
    # RGBA is composited on the documented background: same as passing the composited RGB
    assert np.allclose(effnet(composite_rgba(sprites8), batch_size=8), f, atol=1e-6)
    assert effnet.config["resolution"] == 128
    assert torch.get_num_threads() == threads_before                            # thread setting restored


def test_effnet_different_sprites_differ(feats8):
    gap = np.linalg.norm(feats8[0] - feats8[1])
    assert gap > 0.1 * np.linalg.norm(feats8[0])
