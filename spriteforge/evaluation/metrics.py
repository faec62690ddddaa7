"""Offline image-quality metrics for sprite generators (numpy/torch only, no downloads).

Distribution metrics on network features (use :class:`spriteforge.evaluation.features.EffNetFeatures`):

* ``fd_from_features`` / ``frechet_distance``: Fréchet distance between Gaussians fitted to features.
  On EfficientNet-Lite0 features call it "FD-EffNet": it is NOT comparable with published
  Inception-v3 FID numbers (different network, resolution and preprocessing).
* ``kid``: kernel inception distance computed on whatever features are given ("KID-EffNet").
* ``precision_recall``: k-NN manifold precision (fidelity) and recall (coverage).

Weight-free metrics on pixels:

* ``swd_laplacian``: sliced Wasserstein distance on Laplacian-pyramid patches, per scale.
* ``memorisation``: nearest-training-neighbour distances and the share of near-copies.
* ``alpha_coverage_iou``: silhouette statistics for RGBA sprites.
* ``closest_pairs_grid``: a picture of the closest (generated, training) pairs to eyeball copies.

All randomness takes an explicit ``seed``; the same inputs and seed give the same numbers.
Estimates depend on sample count: compare numbers only when computed with the same N.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from .features import _as_uint8_tensor, composite_checkerboard, pixel_features

__all__ = ["frechet_distance", "fd_from_features", "kid", "swd_laplacian", "precision_recall",
           "memorisation", "pixel_nearest", "alpha_coverage_iou", "closest_pairs_grid", "pairwise_distances",
           "nearest_neighbours"]


def _as_2d_float64(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


# --------------------------------------------------------------------------------------------------
# Fréchet distance
# --------------------------------------------------------------------------------------------------

def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues,
    which only appear through round-off, are clipped to 0)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sig1, mu2, sig2) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu1, sig1) and N(mu2, sig2).

    Dowson & Landau 1982; used as FID by Heusel et al. 2017 ("GANs trained by a two time-scale
    update rule converge to a local Nash equilibrium").

    ``d² = ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^{1/2})``. The trace of the matrix square root is
    computed without a (possibly complex, ill-conditioned) ``sqrtm`` of the non-symmetric S1 S2:
    ``(S1 S2)^{1/2}`` has the same eigenvalues as the symmetric PSD matrix ``A = S1^{1/2} S2 S1^{1/2}``,
    so ``Tr (S1 S2)^{1/2} = sum sqrt(eig(A))`` with two symmetric eigendecompositions. This stays real
    and finite for singular covariances (e.g. fewer samples than dimensions). The result is clipped
    at 0 (tiny negative values are round-off).
    """
    mu1 = np.atleast_1d(np.asarray(mu1, dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1 = np.atleast_2d(np.asarray(sig1, dtype=np.float64))
    s2 = np.atleast_2d(np.asarray(sig2, dtype=np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shape mismatch: mu1 {mu1.shape}, sig1 {s1.shape}, mu2 {mu2.shape}, sig2 {s2.shape}")
    r1 = _psd_sqrt(s1)
    a = r1 @ s2 @ r1
    eig = np.linalg.eigvalsh((a + a.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)
    return max(fd, 0.0)


def fd_from_features(f1, f2) -> float:
    """Fréchet distance between Gaussians fitted (mean, unbiased covariance) to two feature sets.

    Heusel et al. 2017 (FID). On EfficientNet-Lite0 features report it as "FD-EffNet", never as FID.
    The estimate is biased upwards at small N (the bias shrinks roughly like 1/N), so compare only
    numbers computed from the same sample sizes. With fewer samples than feature dimensions the
    covariances are singular; the value is still finite and well defined (see
    ``frechet_distance``) but strongly N-dependent, and a warning is issued.
    """
    f1 = _as_2d_float64(f1, "f1")
    f2 = _as_2d_float64(f2, "f2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dims differ: {f1.shape[1]} vs {f2.shape[1]}")
    if min(len(f1), len(f2)) < 2:
        raise ValueError("need at least 2 samples in each set to estimate a covariance")
    if min(len(f1), len(f2)) <= f1.shape[1]:
        warnings.warn(f"Fréchet distance from {len(f1)} and {len(f2)} samples in {f1.shape[1]} dims: "
                      "covariances are rank-deficient, the value is finite but strongly depends on N; "
                      "compare only numbers computed with the same N", RuntimeWarning, stacklevel=2)
    return frechet_distance(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))


# --------------------------------------------------------------------------------------------------
# KID
# --------------------------------------------------------------------------------------------------

def _poly_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    return (x @ y.T * gamma + coef0) ** degree


def _mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    m, n = kxx.shape[0], kyy.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kid(f1, f2, subsets: int = 100, subset_size: int = 1000, seed: int = 0, degree: int = 3,
        gamma: float | None = None, coef0: float = 1.0) -> dict:
    """Kernel (Inception) distance: unbiased MMD² with a polynomial kernel, mean and std over subsets.

    Bińkowski et al. 2018, "Demystifying MMD GANs". Kernel ``k(x, y) = (x·y / d + 1)^3`` (``gamma``
    defaults to 1/d). Each of ``subsets`` rounds draws ``m = min(subset_size, N1, N2)`` samples
    without replacement from each set and computes the unbiased MMD² estimate; the estimate is
    unbiased, so it can be slightly negative when the distributions match (comparing a set with
    itself gives a small negative value: the cross term then contains k(x, x)). On EffNet features
    call it "KID-EffNet" (not comparable with published Inception KID). With at most 4,096 samples
    per set the full kernel matrices are computed once and indexed per subset.

    Returns:
        {"mean", "std", "subsets", "subset_size"}.
    """
    f1 = _as_2d_float64(f1, "f1")
    f2 = _as_2d_float64(f2, "f2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dims differ: {f1.shape[1]} vs {f2.shape[1]}")
    m = min(int(subset_size), len(f1), len(f2))
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    g = 1.0 / f1.shape[1] if gamma is None else float(gamma)
    rng = np.random.default_rng(seed)
    # For small sets compute the full kernel matrices once and index them per subset.
    full = max(len(f1), len(f2)) <= 4096
    if full:
        k11 = _poly_kernel(f1, f1, degree, g, coef0)
        k22 = _poly_kernel(f2, f2, degree, g, coef0)
        k12 = _poly_kernel(f1, f2, degree, g, coef0)
    vals = np.empty(subsets)
    for s in range(subsets):
        i = rng.choice(len(f1), m, replace=False)
        j = rng.choice(len(f2), m, replace=False)
        if full:
            vals[s] = _mmd2_unbiased(k11[np.ix_(i, i)], k22[np.ix_(j, j)], k12[np.ix_(i, j)])
        else:
            x, y = f1[i], f2[j]
            vals[s] = _mmd2_unbiased(_poly_kernel(x, x, degree, g, coef0), _poly_kernel(y, y, degree, g, coef0),
                                     _poly_kernel(x, y, degree, g, coef0))
    return {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if subsets > 1 else 0.0,
            "subsets": int(subsets), "subset_size": int(m)}


# --------------------------------------------------------------------------------------------------
# Sliced Wasserstein distance on Laplacian-pyramid patches
# --------------------------------------------------------------------------------------------------

_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
_GAUSS5 = torch.outer(_BINOMIAL, _BINOMIAL)


def _gauss_blur(x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
    c = x.shape[1]
    k = (_GAUSS5 * gain).to(x.dtype).view(1, 1, 5, 5).repeat(c, 1, 1, 1)
    h, w = x.shape[-2:]
    mode = "reflect" if min(h, w) > 2 else "replicate"
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode=mode), k, groups=c)


def _pyr_down(x: torch.Tensor) -> torch.Tensor:
    return _gauss_blur(x)[:, :, ::2, ::2]


def _pyr_up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return _gauss_blur(up, gain=4.0)[:, :, :size[0], :size[1]]


def _laplacian_pyramid(x: torch.Tensor, num_levels: int) -> list[torch.Tensor]:
    """Burt & Adelson Laplacian pyramid (5-tap binomial filter, mirror borders, as in Karras et al.);
    the last level is the Gaussian low-pass residual."""
    pyr = [x]
    for _ in range(1, num_levels):
        low = _pyr_down(pyr[-1])
        pyr[-1] = pyr[-1] - _pyr_up(low, pyr[-1].shape[-2:])
        pyr.append(low)
    return pyr


def _swd_prepare(images_u8, premultiply: bool) -> torch.Tensor:
    x = _as_uint8_tensor(images_u8).to(torch.float32) / 127.5 - 1.0
    if premultiply and x.shape[1] == 4:
        a = (x[:, 3:4] + 1.0) / 2.0
        x = torch.cat([(x[:, :3] + 1.0) * a - 1.0, x[:, 3:4]], dim=1)
    return x


def _patch_positions(n: int, h: int, w: int, patch: int, per_image: int, rng: np.random.Generator):
    """Top-left corners [n, P] (ys, xs) of patches, all positions if there are at most per_image of
    them, else per_image positions drawn without replacement per image."""
    ny, nx = h - patch + 1, w - patch + 1
    k = ny * nx
    if k <= per_image:
        flat = np.broadcast_to(np.arange(k), (n, k))
    else:
        flat = np.argsort(rng.random((n, k)), axis=1)[:, :per_image]
    return torch.from_numpy(np.ascontiguousarray(flat // nx)), torch.from_numpy(np.ascontiguousarray(flat % nx))


def _extract_patches(level: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, patch: int) -> torch.Tensor:
    """[n, C, h, w] level, [n, P] corners -> [n*P, C, patch, patch]."""
    n, p = ys.shape
    d = torch.arange(patch)
    ni = torch.arange(n).view(n, 1, 1, 1)
    yi = (ys.view(n, p, 1, 1) + d.view(1, 1, patch, 1))
    xi = (xs.view(n, p, 1, 1) + d.view(1, 1, 1, patch))
    out = level[ni, :, yi, xi]                       # [n, P, patch, patch, C]
    return out.permute(0, 1, 4, 2, 3).reshape(n * p, level.shape[1], patch, patch)


def _normalise_descriptors(desc: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor] | None = None):
    """Per-channel standardisation of [M, C, p, p] descriptors -> [M, C*p*p] (float32)."""
    if stats is None:
        mean = desc.mean(dim=(0, 2, 3), keepdim=True)
        std = desc.std(dim=(0, 2, 3), keepdim=True, unbiased=False).clamp_min(1e-8)
    else:
        mean, std = stats
    return ((desc - mean) / std).reshape(desc.shape[0], -1)


def _wasserstein1_sorted(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact 1-D W1 between empirical distributions, per column, for sorted [n, P] and [m, P]."""
    n, m = a.shape[0], b.shape[0]
    if n == m:
        return (a - b).abs().mean(dim=0, dtype=torch.float64)
    ta = np.arange(1, n + 1) / n
    tb = np.arange(1, m + 1) / m
    t = np.union1d(ta, tb)
    dt = torch.from_numpy(np.diff(np.concatenate([[0.0], t])))
    ia = torch.from_numpy(np.minimum(np.searchsorted(ta, t - 1e-12), n - 1))
    ib = torch.from_numpy(np.minimum(np.searchsorted(tb, t - 1e-12), m - 1))
    return ((a[ia] - b[ib]).abs().double() * dt.view(-1, 1)).sum(dim=0)


def _sliced_wasserstein(a: torch.Tensor, b: torch.Tensor, n_projections: int, rng: np.random.Generator,
                        chunk: int = 128) -> float:
    dim = a.shape[1]
    dirs = torch.from_numpy(rng.standard_normal((dim, n_projections))).to(torch.float32)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    total = 0.0
    for s in range(0, n_projections, chunk):
        d = dirs[:, s:s + chunk]
        # numpy's sort along axis 0 is ~3x faster than torch.sort on CPU here
        pa = torch.from_numpy(np.sort((a @ d).numpy(), axis=0))
        pb = torch.from_numpy(np.sort((b @ d).numpy(), axis=0))
        total += float(_wasserstein1_sorted(pa, pb).sum())
    return total / n_projections


def swd_laplacian(images_a_u8, images_b_u8, *, min_res: int = 8, patch_size: int = 7,
                  patches_per_image: int = 128, n_projections: int = 512, max_descriptors: int = 32768,
                  normalisation: str = "separate", premultiply: bool = True, seed: int = 0,
                  batch_size: int = 256) -> dict:
    """Sliced Wasserstein distance between Laplacian-pyramid patch distributions, per scale.

    Karras et al. 2018, "Progressive Growing of GANs for Improved Quality, Stability, and Variation"
    (Sec. 5 / App. D). For each pyramid level (full resolution, then halved down to ``min_res``,
    default 8 px: for 32-px sprites the levels are 32, 16 and 8 px = fine detail, parts, whole
    silhouette; the coarsest level is the Gaussian low-pass, the others are band-pass):

    1. draw ``patches_per_image`` 7x7 patches per image (all positions if fewer exist, e.g. the 4
       positions of an 8-px level; capped so a set has at most ``max_descriptors`` patches);
    2. standardise each channel (mean/std over patches and pixels). ``normalisation="separate"``
       does this per set, as Karras et al. do: a global colour/brightness shift is then NOT
       measured, only structure; ``"reference"`` uses the statistics of ``images_b`` for both sets
       so colour shifts count too;
    3. project the (C*49)-d descriptors on ``n_projections`` random unit directions and average the
       exact 1-D Wasserstein-1 distances (set sizes may differ).

    RGBA images keep alpha as a 4th channel; with ``premultiply=True`` colour is multiplied by alpha
    first, so the colour of invisible pixels does not count. Both sets must have the same channel
    count and size. Values are raw (Karras et al. print them x1e3). Patch positions use common random
    numbers (the same positions for image i of both sets), so identical sets give exactly 0.

    Returns:
        {"32px": swd, "16px": swd, "8px": swd, "mean": mean over levels} (keys follow the sizes).
    """
    xa = _as_uint8_tensor(images_a_u8, "images_a_u8")
    xb = _as_uint8_tensor(images_b_u8, "images_b_u8")
    if xa.shape[1:] != xb.shape[1:]:
        raise ValueError(f"both sets need the same channels and size, got {tuple(xa.shape[1:])} and "
                         f"{tuple(xb.shape[1:])} (composite RGBA / resize first)")
    if normalisation not in ("separate", "reference"):
        raise ValueError(f"normalisation must be 'separate' or 'reference', got {normalisation!r}")
    h, w = xa.shape[-2:]
    sizes = []
    sh, sw = h, w
    while min(sh, sw) >= max(min_res, patch_size):
        sizes.append((sh, sw))
        sh, sw = (sh + 1) // 2, (sw + 1) // 2
    if not sizes:
        raise ValueError(f"images of {h}x{w} px are smaller than the {patch_size}-px patches")

    def descriptors(x: torch.Tensor, lvl_rng_seeds) -> list[torch.Tensor]:
        n = x.shape[0]
        per = [max(1, min(patches_per_image, max_descriptors // max(n, 1))) for _ in sizes]
        pos = []
        for li, (lh, lw) in enumerate(sizes):
            rng = np.random.default_rng(lvl_rng_seeds[li])
            pos.append(_patch_positions(n, lh, lw, patch_size, per[li], rng))
        out = [[] for _ in sizes]
        for s in range(0, n, batch_size):
            pyr = _laplacian_pyramid(_swd_prepare(x[s:s + batch_size], premultiply), len(sizes))
            for li, lvl in enumerate(pyr):
                ys, xs = pos[li][0][s:s + batch_size], pos[li][1][s:s + batch_size]
                out[li].append(_extract_patches(lvl, ys, xs, patch_size))
        return [torch.cat(o) for o in out]

    # Common random numbers: the same position stream for both sets at each level.
    ss = np.random.SeedSequence(seed)
    level_seeds = [int(c.generate_state(1)[0]) for c in ss.spawn(len(sizes))]
    proj_seed = int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])
    with torch.no_grad():
        da = descriptors(xa, level_seeds)
        db = descriptors(xb, level_seeds)
        result = {}
        for li, (lh, lw) in enumerate(sizes):
            if normalisation == "separate":
                a = _normalise_descriptors(da[li])
                b = _normalise_descriptors(db[li])
            else:
                mean = db[li].mean(dim=(0, 2, 3), keepdim=True)
                std = db[li].std(dim=(0, 2, 3), keepdim=True, unbiased=False).clamp_min(1e-8)
                a = _normalise_descriptors(da[li], (mean, std))
                b = _normalise_descriptors(db[li], (mean, std))
            key = f"{lh}px" if lh == lw else f"{lh}x{lw}px"
            result[key] = _sliced_wasserstein(a, b, n_projections, np.random.default_rng([proj_seed, li]))
    result["mean"] = float(np.mean(list(result.values())))
    return result


# --------------------------------------------------------------------------------------------------
# Nearest neighbours
# --------------------------------------------------------------------------------------------------

def pairwise_distances(x, y, metric: str = "l2", batch_size: int = 1024) -> np.ndarray:
    """Full [N, M] distance matrix (float64). metric: "l2" (Euclidean) or "mad" (mean absolute
    difference = L1 / D). Computed in row blocks of ``batch_size``."""
    return _nn_search(x, y, k=None, metric=metric, batch_size=batch_size)


def nearest_neighbours(x, y, k: int = 1, metric: str = "l2", exclude_self: bool = False, exclude_idx=None,
                       batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """k nearest rows of ``y`` for each row of ``x``: (indices int64 [N, k], distances float64 [N, k]),
    ascending. ``exclude_self`` (x is y) skips the diagonal; ``exclude_idx`` ([N] ints) skips row
    ``exclude_idx[i]`` of ``y`` for query i (x is a subset of y). Memory is O(batch_size * M)."""
    if exclude_self:
        exclude_idx = np.arange(len(x))
    return _nn_search(x, y, k=k, metric=metric, exclude_idx=exclude_idx, batch_size=batch_size)


def _nn_search(x, y, k, metric="l2", exclude_idx=None, batch_size=1024):
    if metric not in ("l2", "mad"):
        raise ValueError(f"metric must be 'l2' or 'mad', got {metric!r}")
    dtype = torch.float64 if metric == "l2" else torch.float32
    xt = torch.as_tensor(np.asarray(x), dtype=dtype)
    yt = torch.as_tensor(np.asarray(y), dtype=dtype)
    if xt.ndim != 2 or yt.ndim != 2 or xt.shape[1] != yt.shape[1]:
        raise ValueError(f"need [N, D] and [M, D] arrays, got {tuple(xt.shape)} and {tuple(yt.shape)}")
    n_cand = yt.shape[0] - int(exclude_idx is not None)
    if k is not None and k > n_cand:
        raise ValueError(f"k={k} but only {n_cand} candidates")
    y2 = (yt * yt).sum(1) if metric == "l2" else None
    dists, idxs = [], []
    for s in range(0, xt.shape[0], batch_size):
        xb = xt[s:s + batch_size]
        if metric == "l2":
            d2 = (xb * xb).sum(1, keepdim=True) + y2.view(1, -1) - 2.0 * (xb @ yt.T)
            d = d2.clamp_min(0).sqrt()
        else:
            d = torch.cdist(xb, yt, p=1).double() / xt.shape[1]
        if exclude_idx is not None:
            d[torch.arange(xb.shape[0]), torch.as_tensor(np.asarray(exclude_idx)[s:s + batch_size])] = float("inf")
        if k is None:
            dists.append(d)
        else:
            v, i = torch.topk(d, k, dim=1, largest=False, sorted=True)
            dists.append(v)
            idxs.append(i)
    if k is None:
        return torch.cat(dists).numpy()
    return torch.cat(idxs).numpy().astype(np.int64), torch.cat(dists).numpy()


# --------------------------------------------------------------------------------------------------
# Precision / recall
# --------------------------------------------------------------------------------------------------

def precision_recall(real_f, fake_f, k: int = 3, batch_size: int = 1024) -> dict:
    """Improved precision and recall (k-NN manifold estimate).

    Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing Generative Models".
    Each real sample gets a ball whose radius is the distance to its k-th nearest other real
    sample; precision = share of fake samples inside at least one real ball (fidelity). Recall is
    the same with the roles swapped (share of real samples inside the fake manifold: coverage).
    The paper uses VGG-16 features and equal set sizes (k=3); here any features can be used,
    comparable only at equal N and k. Distances are Euclidean, computed in blocks.

    Returns:
        {"precision", "recall", "k"}.
    """
    real = _as_2d_float64(real_f, "real_f")
    fake = _as_2d_float64(fake_f, "fake_f")
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"need more than k={k} samples in each set")

    def coverage(ref: np.ndarray, query: np.ndarray) -> float:
        _, kth = nearest_neighbours(ref, ref, k=k, exclude_self=True, batch_size=batch_size)
        radii = torch.from_numpy(kth[:, -1])
        inside = np.zeros(len(query), dtype=bool)
        for s in range(0, len(query), batch_size):
            dist = torch.from_numpy(_nn_search(query[s:s + batch_size], ref, k=None, batch_size=batch_size))
            inside[s:s + batch_size] = (dist <= radii.view(1, -1)).any(dim=1).numpy()
        return float(inside.mean())

    return {"precision": coverage(real, fake), "recall": coverage(fake, real), "k": int(k)}


# --------------------------------------------------------------------------------------------------
# Memorisation
# --------------------------------------------------------------------------------------------------

DEFAULT_PIXEL_THRESHOLD = 4.0 / 255.0
DEFAULT_FEATURE_RATIO = 0.5


def _pixel_arrays(px, name: str):
    """-> (values float32 [N, D] in [0,1] premultiplied, visible mask float32 [N, H*W] or None, C)."""
    if isinstance(px, (torch.Tensor, np.ndarray)) and px.ndim == 4:
        x = _as_uint8_tensor(px, name)
        vals = torch.from_numpy(pixel_features(x))
        mask = (x[:, 3] > 0).reshape(x.shape[0], -1).to(torch.float32) if x.shape[1] == 4 else None
        return vals, mask, x.shape[1]
    v = torch.as_tensor(np.asarray(px), dtype=torch.float32)
    if v.ndim != 2:
        raise ValueError(f"{name} must be uint8 images [N,C,H,W] or pixel features [N, D], got {tuple(v.shape)}")
    return v, None, 1


def _pixel_nn_prepared(g, gm, t, tm, c, exclude_idx=None, batch_size=256):
    tsum = tm.sum(1) if tm is not None else None
    idxs, dists = [], []
    for s in range(0, g.shape[0], batch_size):
        gb = g[s:s + batch_size]
        l1 = torch.cdist(gb, t, p=1).double()
        if gm is None:
            d = l1 / g.shape[1]
        else:
            mb = gm[s:s + batch_size]
            union = (mb.sum(1, keepdim=True) + tsum.view(1, -1) - mb @ tm.T).double()
            d = torch.where(union > 0, l1 / (c * union.clamp_min(1)), torch.zeros_like(l1))
        if exclude_idx is not None:
            d[torch.arange(gb.shape[0]), torch.as_tensor(exclude_idx[s:s + batch_size])] = float("inf")
        v, i = d.min(dim=1)
        idxs.append(i)
        dists.append(v)
    return torch.cat(idxs).numpy().astype(np.int64), torch.cat(dists).numpy()


def pixel_nearest(gen_px, train_px, batch_size: int = 256):
    """Nearest training image by *visible* mean absolute difference (the memorisation pixel distance).

    ``gen_px``/``train_px``: uint8 images [N, C, H, W] (recommended) or ``pixel_features`` arrays.
    For RGBA images, colour is premultiplied by alpha and the distance is
    ``sum |g - t| / (C * #pixels visible (alpha > 0) in g or t)`` in [0, 1] units: the mean absolute
    difference per channel value over the sprite area, not diluted by the empty background (a
    32-px sprite often covers only 10-30 % of its frame). RGB images (and 2-D arrays) use the plain
    mean over all values. Two empty sprites have distance 0. Returns (idx int64 [N], dist float64 [N]).
    """
    g, gm, c = _pixel_arrays(gen_px, "gen_px")
    t, tm, c2 = _pixel_arrays(train_px, "train_px")
    if g.shape[1] != t.shape[1] or c != c2 or (gm is None) != (tm is None):
        raise ValueError(f"generated and training pixels differ in layout: {tuple(g.shape)} (C={c}) vs "
                         f"{tuple(t.shape)} (C={c2}); use the same size and channel count")
    if t.shape[0] < 1:
        raise ValueError("no training images")
    return _pixel_nn_prepared(g, gm, t, tm, c, batch_size=batch_size)


def memorisation(gen_f=None, train_f=None, gen_px=None, train_px=None, *,
                 pixel_threshold: float = DEFAULT_PIXEL_THRESHOLD, feature_ratio: float = DEFAULT_FEATURE_RATIO,
                 calibration_samples: int = 512, seed: int = 0, batch_size: int = 256) -> dict:
    """Nearest training image of every generated sample, and the share of near-copies.

    Two independent criteria (pass features, pixels, or both):

    * **Pixel space** (``gen_px``/``train_px``: uint8 images [N,C,H,W], recommended, or
      ``features.pixel_features`` arrays). Distance = mean absolute difference per channel value
      over the visible sprite area (alpha-premultiplied colour + alpha; see ``pixel_nearest``), in
      [0, 1] units. A sample is a **near-copy** if the distance to its nearest training image is
      <= ``pixel_threshold`` (default 4/255: on average under 4 of 255 levels per value over the
      sprite, e.g. an exact copy with +-4 levels of noise, or with ~3 % of its area repainted;
      a recoloured garment or another pose lies well above). This is the headline
      ``near_copy_share``: absolute and easy to explain. As a baseline the same test is run
      between training images (``train_px_near_dup_share``: near-duplicates already in the data,
      measured on up to ``calibration_samples`` training images); a generated share near that
      level is what sampling the training distribution itself would give.
    * **Feature space** (e.g. EffNet features, ``gen_f``/``train_f``). Nearest neighbour t_j by
      Euclidean distance, calibrated against the training set's own spacing: ratio
      ``d(g, t_j) / d(t_j, nearest other training image)``. A sample is a feature near-copy if the
      ratio is <= ``feature_ratio`` (default 0.5: g is at most half as far from t_j as t_j's
      closest sibling, i.e. closer than anything in the data; in the spirit of the relative
      distance test of Carlini et al. 2023, "Extracting Training Data from Diffusion Models").
      Exact zeros (copies of duplicated training images) count as copies.

    Returns a dict with, per generated sample (numpy arrays): ``px_nn_idx``, ``px_nn_dist``,
    ``px_near_copy``, ``feat_nn_idx``, ``feat_nn_dist``, ``feat_ratio``, ``feat_near_copy`` (pixel /
    feature keys only when that input was given); the shares ``px_near_copy_share``,
    ``feat_near_copy_share``, the headline ``near_copy_share`` (pixel criterion if pixels were
    given, else feature), the thresholds, and calibration numbers ``train_px_nn_dist_median``,
    ``train_px_near_dup_share`` and ``train_feat_nn_dist_median``.
    """
    if (gen_px is None) != (train_px is None) or (gen_f is None) != (train_f is None):
        raise ValueError("pass gen_f with train_f and gen_px with train_px")
    if gen_px is None and gen_f is None:
        raise ValueError("pass features (gen_f, train_f) and/or pixels (gen_px, train_px)")
    out: dict = {"pixel_threshold": float(pixel_threshold), "feature_ratio": float(feature_ratio)}
    rng = np.random.default_rng(seed)
    if gen_px is not None:
        g, gm, c = _pixel_arrays(gen_px, "gen_px")
        t, tm, c2 = _pixel_arrays(train_px, "train_px")
        if g.shape[1] != t.shape[1] or c != c2 or (gm is None) != (tm is None):
            raise ValueError(f"generated and training pixels differ in layout: {tuple(g.shape)} (C={c}) vs "
                             f"{tuple(t.shape)} (C={c2}); use the same size and channel count")
        idx, dist = _pixel_nn_prepared(g, gm, t, tm, c, batch_size=batch_size)
        out["px_nn_idx"] = idx
        out["px_nn_dist"] = dist
        out["px_near_copy"] = dist <= pixel_threshold
        out["px_near_copy_share"] = float(out["px_near_copy"].mean())
        if t.shape[0] > 1:
            sub = np.sort(rng.choice(t.shape[0], min(t.shape[0], calibration_samples), replace=False))
            st = torch.from_numpy(sub)
            _, tdist = _pixel_nn_prepared(t[st], None if tm is None else tm[st], t, tm, c,
                                          exclude_idx=sub, batch_size=batch_size)
            out["train_px_nn_dist_median"] = float(np.median(tdist))
            out["train_px_near_dup_share"] = float((tdist <= pixel_threshold).mean())
    if gen_f is not None:
        gf = _as_2d_float64(gen_f, "gen_f")
        tf = _as_2d_float64(train_f, "train_f")
        if gf.shape[1] != tf.shape[1]:
            raise ValueError(f"feature dims differ: {gf.shape[1]} vs {tf.shape[1]}")
        if len(tf) < 2:
            raise ValueError("the feature criterion needs at least 2 training samples")
        idx, dist = nearest_neighbours(gf, tf, k=1, batch_size=batch_size)
        idx, dist = idx[:, 0], dist[:, 0]
        # sibling distance of each training image that is someone's nearest neighbour
        uniq = np.unique(idx)
        _, sd = nearest_neighbours(tf[uniq], tf, k=1, exclude_idx=uniq, batch_size=batch_size)
        sib = np.zeros(len(tf))
        sib[uniq] = sd[:, 0]
        scale = max(float(np.median(sib[uniq])), 1e-12)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(sib[idx] > 0, dist / np.maximum(sib[idx], 1e-300), np.where(dist > 0, np.inf, 0.0))
        out["feat_nn_idx"] = idx
        out["feat_nn_dist"] = dist
        out["feat_ratio"] = ratio
        out["feat_near_copy"] = (ratio <= feature_ratio) | (dist <= 1e-9 * scale)
        out["feat_near_copy_share"] = float(out["feat_near_copy"].mean())
        sub = np.sort(rng.choice(len(tf), min(len(tf), calibration_samples), replace=False))
        _, tsd = nearest_neighbours(tf[sub], tf, k=1, exclude_idx=sub, batch_size=batch_size)
        out["train_feat_nn_dist_median"] = float(np.median(tsd[:, 0]))
    out["near_copy_share"] = out["px_near_copy_share"] if gen_px is not None else out["feat_near_copy_share"]
    return out


# --------------------------------------------------------------------------------------------------
# Alpha coverage
# --------------------------------------------------------------------------------------------------

def _coverage_stats(cov: np.ndarray) -> dict:
    q = np.quantile(cov, [0.05, 0.5, 0.95])
    return {"mean": float(cov.mean()), "std": float(cov.std()), "p05": float(q[0]), "median": float(q[1]),
            "p95": float(q[2]), "min": float(cov.min()), "max": float(cov.max())}


def alpha_coverage_iou(gen_u8, ref_u8, alpha_threshold: int = 128, batch_size: int = 1024) -> dict | None:
    """Silhouette statistics of RGBA sprites; ``None`` if either set is RGB.

    * coverage = share of opaque pixels (alpha >= ``alpha_threshold``) per image; mean/std/quantiles
      for both sets and the 1-D Wasserstein-1 distance between the two coverage distributions;
    * soft-alpha share = share of pixels with 8 < alpha < 247 (generated sprites often have a
      semi-transparent haze that hand-made sprites lack);
    * IoU of each generated mask with its nearest (highest-IoU) reference mask, with the index of
      that mask; two empty masks count as IoU 1.

    Sizes must match (the masks are compared pixel by pixel).

    Returns:
        {"gen_coverage", "ref_coverage" (dicts: mean, std, p05, median, p95, min, max), "coverage_w1",
        "gen_soft_alpha_share", "ref_soft_alpha_share", "iou" [N], "iou_nn_idx" [N], "iou_mean",
        "iou_median", "gen_coverage_values" [N], "alpha_threshold"}, or None for RGB input.
    """
    g = _as_uint8_tensor(gen_u8, "gen_u8")
    r = _as_uint8_tensor(ref_u8, "ref_u8")
    if g.shape[1] != 4 or r.shape[1] != 4:
        return None
    if g.shape[-2:] != r.shape[-2:]:
        raise ValueError(f"image sizes differ: {tuple(g.shape[-2:])} vs {tuple(r.shape[-2:])}")
    gm = (g[:, 3] >= alpha_threshold).reshape(g.shape[0], -1).to(torch.float32)
    rm = (r[:, 3] >= alpha_threshold).reshape(r.shape[0], -1).to(torch.float32)
    gcov, rcov = gm.mean(1).double().numpy(), rm.mean(1).double().numpy()
    ga, ra = g[:, 3].to(torch.int16), r[:, 3].to(torch.int16)
    soft_g = float(((ga > 8) & (ga < 247)).double().mean())
    soft_r = float(((ra > 8) & (ra < 247)).double().mean())
    rsum = rm.sum(1)
    ious, nn = [], []
    for s in range(0, gm.shape[0], batch_size):
        gb = gm[s:s + batch_size]
        inter = gb @ rm.T                                   # exact: integer counts < 2^24
        union = gb.sum(1, keepdim=True) + rsum.view(1, -1) - inter
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))
        v, i = iou.max(dim=1)
        ious.append(v.double())
        nn.append(i)
    iou = torch.cat(ious).numpy()
    w1 = float(_wasserstein1_sorted(torch.from_numpy(np.sort(gcov)).view(-1, 1),
                                    torch.from_numpy(np.sort(rcov)).view(-1, 1))[0])
    return {"gen_coverage": _coverage_stats(gcov), "ref_coverage": _coverage_stats(rcov),
            "coverage_w1": w1, "gen_soft_alpha_share": soft_g, "ref_soft_alpha_share": soft_r,
            "iou": iou, "iou_nn_idx": torch.cat(nn).numpy().astype(np.int64),
            "iou_mean": float(iou.mean()), "iou_median": float(np.median(iou)),
            "gen_coverage_values": gcov, "alpha_threshold": int(alpha_threshold)}


# --------------------------------------------------------------------------------------------------
# Closest-pairs picture
# --------------------------------------------------------------------------------------------------

def closest_pairs_grid(gen_u8, train_u8, nn_idx, dist, k: int = 16, cols: int = 4, scale: int | None = None,
                       gap: int = 2, pad: int = 8, background: tuple[int, int, int] = (32, 32, 32)) -> np.ndarray:
    """Picture of the ``k`` generated samples closest to a training image, each beside its neighbour.

    Pairs are sorted by ascending ``dist`` (closest = most suspicious first) and laid out row-major,
    ``cols`` pairs per row: [generated | nearest training] with a ``gap``-px seam, ``pad`` px between
    pairs. Images are upscaled by ``scale`` (default: to about 96 px) with nearest neighbour, and
    RGBA is composited on a grey checkerboard so transparency is visible.

    Args:
        gen_u8, train_u8: uint8 [N, C, H, W] / [M, C, H, W] (same C, H, W).
        nn_idx: [N] index into ``train_u8`` of each generated sample's neighbour (e.g.
            ``memorisation(...)["px_nn_idx"]``); dist: [N] its distance (e.g. ``"px_nn_dist"``).

    Returns:
        uint8 numpy [H, W, 3], ready for ``PIL.Image.fromarray(...).save("pairs.png")``.
    """
    g = _as_uint8_tensor(gen_u8, "gen_u8")
    t = _as_uint8_tensor(train_u8, "train_u8")
    if g.shape[1:] != t.shape[1:]:
        raise ValueError(f"generated and training images differ in shape: {tuple(g.shape[1:])} vs {tuple(t.shape[1:])}")
    nn_idx = np.asarray(nn_idx).reshape(-1).astype(np.int64)
    dist = np.asarray(dist, dtype=np.float64).reshape(-1)
    if len(nn_idx) != g.shape[0] or len(dist) != g.shape[0]:
        raise ValueError(f"nn_idx and dist need one entry per generated image ({g.shape[0]})")
    order = np.argsort(dist, kind="stable")[:max(1, min(k, g.shape[0]))]
    h, w = g.shape[-2:]
    scale = scale or max(1, round(96 / max(h, w)))
    cell = 4 * scale                                          # checker squares of 4 image pixels

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1) if scale > 1 else x
        return composite_checkerboard(x, cell=cell)

    gi = prep(g[torch.from_numpy(order)])
    ti = prep(t[torch.from_numpy(nn_idx[order])])
    sh, sw = h * scale, w * scale
    pw, ph = 2 * sw + gap, sh
    n = len(order)
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    canvas = torch.empty(3, pad + rows * (ph + pad), pad + cols * (pw + pad), dtype=torch.uint8)
    canvas[:] = torch.tensor(background, dtype=torch.uint8).view(3, 1, 1)
    for p in range(n):
        r, c = divmod(p, cols)
        y0, x0 = pad + r * (ph + pad), pad + c * (pw + pad)
        canvas[:, y0:y0 + sh, x0:x0 + sw] = gi[p]
        canvas[:, y0:y0 + sh, x0 + sw:x0 + sw + gap] = 255
        canvas[:, y0:y0 + sh, x0 + sw + gap:x0 + pw] = ti[p]
    return canvas.permute(1, 2, 0).contiguous().numpy()
