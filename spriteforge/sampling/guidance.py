"""Classifier-free guidance (Ho & Salimans 2022) as a denoiser wrapper.

    D_cfg(x; sigma) = D(x; sigma | uncond) + scale * (D(x; sigma | cond) - D(x; sigma | uncond))

`scale` is the paper's 1 + w: scale = 1 is the plain conditional model, scale = 0 the plain
unconditional one, scale > 1 extrapolates away from the unconditional prediction. The wrapper
is itself a denoiser, so it plugs into every sampler unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

__all__ = ["cfg_denoiser"]


def cfg_denoiser(model: Callable, scale: float, cond_args: dict | None, uncond_args: dict | None) -> Callable:
    """Classifier-free guidance, Ho & Salimans 2022 eq. 6 (with scale = 1 + w): uncond + scale * (cond - uncond).

    Returns `denoiser(x, sigma, **extra_args)` that runs `model` once on the doubled batch
    [x; x] with sigma [sigma; sigma] and the conditional / unconditional keyword arguments merged
    into one batch (see `batch_args`); keyword arguments given to the returned denoiser itself are
    shared by both branches. scale == 1 evaluates only the conditional branch (one call on the
    plain batch), scale == 0 only the unconditional one.
    """
    cond_args = dict(cond_args or {})
    uncond_args = dict(uncond_args or {})

    if scale == 1:
        def cond_only(x, sigma, **extra_args):
            return model(x, sigma, **{**extra_args, **cond_args})
        return cond_only

    if scale == 0:
        def uncond_only(x, sigma, **extra_args):
            return model(x, sigma, **{**extra_args, **uncond_args})
        return uncond_only

    def guided(x, sigma, **extra_args):
        B = x.shape[0]
        args = batch_args({**extra_args, **cond_args}, {**extra_args, **uncond_args}, B)
        out = model(torch.cat([x, x]), torch.cat([sigma, sigma]), **args)
        cond, uncond = out[:B], out[B:]
        return uncond + scale * (cond - uncond)

    return guided


_MISSING = object()


def batch_args(cond: dict, uncond: dict, batch_size: int) -> dict[str, Any]:
    """Merge two keyword-argument dicts for one call on the doubled batch [cond; uncond].

    Per key: tensors whose leading dim is `batch_size` in both are concatenated (cond first);
    None in both passes through as None; values equal in both (non-batch tensors, ints, ...)
    pass through once. Anything else cannot share one call and raises ValueError -- e.g. a label
    tensor for cond but None for uncond: give the unconditional branch a tensor too (such as
    the model's null-class index).
    """
    merged = {}
    for key in list(cond) + [k for k in uncond if k not in cond]:
        c, u = cond.get(key, _MISSING), uncond.get(key, _MISSING)
        if c is _MISSING or u is _MISSING:
            raise ValueError(f"cfg: argument {key!r} is given for only one branch; pass it to both (None is allowed in both)")
        if c is None and u is None:
            merged[key] = None
        elif isinstance(c, torch.Tensor) and isinstance(u, torch.Tensor):
            if c.ndim >= 1 and u.ndim >= 1 and c.shape[0] == batch_size and u.shape[0] == batch_size:
                merged[key] = torch.cat([c, u])
            elif c.shape == u.shape and torch.equal(c, u):
                merged[key] = c
            else:
                raise ValueError(f"cfg: argument {key!r} has shapes {tuple(c.shape)} / {tuple(u.shape)}; "
                                 f"need a leading batch dim of {batch_size} in both, or equal values")
        elif not isinstance(c, torch.Tensor) and not isinstance(u, torch.Tensor) and c == u:
            merged[key] = c
        else:
            raise ValueError(f"cfg: argument {key!r} differs between branches ({type(c).__name__} vs {type(u).__name__}) "
                             f"and cannot be batched; use tensors with a leading batch dim in both "
                             f"(for labels, a null-class index instead of None)")
    return merged
