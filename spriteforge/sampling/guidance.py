"""Classifier-free guidance (Ho & Salimans 2022) as a denoiser wrapper.

    D_cfg(x; sigma) = D(x; sigma | uncond) + scale * (D(x; sigma | cond) - D(x; sigma | uncond))

`scale` is the paper's 1 + w: scale = 1 is the plain conditional model, scale = 0 the plain
unconditional one, scale > 1 extrapolates away from the unconditional prediction. The wrapper
is itself a denoiser, so it plugs into every sampler unchanged.

Attribute models can add a term per requested attribute (`attribute_guidance_branches`); any such
weighted sum of conditional predictions runs as one batched call (`combined_denoiser`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

__all__ = ["cfg_denoiser", "attribute_guidance_branches", "combined_denoiser"]


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
        args = batch_args([{**extra_args, **cond_args}, {**extra_args, **uncond_args}], B)
        out = model(torch.cat([x, x]), torch.cat([sigma, sigma]), **args)
        cond, uncond = out[:B], out[B:]
        return uncond + scale * (cond - uncond)

    return guided


def combined_denoiser(model: Callable, branches: list[tuple[float, dict]]) -> Callable:
    """sum_i w_i * D(x; sigma | args_i) over `branches` = [(w_i, args_i), ...], all branches in one
    batched call. Guidance of any kind is such a sum with weights adding up to 1 (for CFG:
    scale * cond + (1 - scale) * uncond)."""
    weights = [float(w) for w, _ in branches]

    def combined(x, sigma, **extra_args):
        B = x.shape[0]
        args = batch_args([{**extra_args, **a} for _, a in branches], B)
        out = model(torch.cat([x] * len(branches)), torch.cat([sigma] * len(branches)), **args)
        return sum(w * out[i * B:(i + 1) * B] for i, w in enumerate(weights))

    return combined


def attribute_guidance_branches(cond: dict, uncond: dict, scale: float,
                                attr_scale: float | Sequence[float]) -> list[tuple[float, dict]]:
    """CFG plus attribute-wise guidance for attribute models (after Liu et al. 2022, "Compositional
    Visual Generation with Composable Diffusion Models", with leave-one-out terms):

        D = D_u + scale * (D_c - D_u) + sum_k w_k * (D_c - D_{c without attribute k})

    Each term D_c - D_{c without k} is what attribute k alone adds to the full request, so a detail
    the plain guidance washes out (a small accessory, a colour never seen with this body) is pushed
    on its own. `attr_scale` is one weight w for every attribute or one per column of
    `cond["attributes"]` (e.g. only the action guided). "Without k" sets column k to -1 (dropped, as
    in training's per-attribute dropout); for items that did not request k the term is zero. One call
    per step on (2 + K) x the batch, K = the attributes with w_k > 0 that any item requested."""
    att = cond["attributes"]
    w = [float(attr_scale)] * att.shape[1] if isinstance(attr_scale, (int, float)) else [float(x) for x in attr_scale]
    if len(w) != att.shape[1]:
        raise ValueError(f"attribute guidance: {len(w)} weights for {att.shape[1]} attributes")
    asked = [k for k in range(att.shape[1]) if w[k] > 0 and bool((att[:, k] >= 0).any())]
    ws = {w[k] for k in asked}
    total = ws.pop() * len(asked) if len(ws) == 1 else sum(w[k] for k in asked)   # one weight: as w * K, exactly
    out = [(scale + total, cond), (1.0 - scale, uncond)]
    for k in asked:
        without = att.clone()
        without[:, k] = -1
        out.append((-w[k], {**cond, "attributes": without}))
    return out


_MISSING = object()


def batch_args(branches: list[dict], batch_size: int) -> dict[str, Any]:
    """Merge the keyword-argument dicts of several branches for one call on the stacked batch
    [branch 0; branch 1; ...].

    Per key: tensors whose leading dim is `batch_size` in every branch are concatenated in branch
    order; None everywhere passes through as None; values equal in all branches (non-batch
    tensors, ints, ...) pass through once. Anything else cannot share one call and raises
    ValueError -- e.g. a label tensor for cond but None for uncond: give the unconditional branch a
    tensor too (such as the model's null-class index).
    """
    merged = {}
    keys = list(dict.fromkeys(k for b in branches for k in b))
    for key in keys:
        vals = [b.get(key, _MISSING) for b in branches]
        if any(v is _MISSING for v in vals):
            raise ValueError(f"guidance: argument {key!r} is not given for every branch; pass it to all "
                             "(None is allowed in all)")
        tensors = [isinstance(v, torch.Tensor) for v in vals]
        if all(v is None for v in vals):
            merged[key] = None
        elif all(tensors):
            if all(v.ndim >= 1 and v.shape[0] == batch_size for v in vals):
                merged[key] = torch.cat(vals)
            elif all(v.shape == vals[0].shape and torch.equal(v, vals[0]) for v in vals):
                merged[key] = vals[0]
            else:
                raise ValueError(f"guidance: argument {key!r} has shapes {[tuple(v.shape) for v in vals]}; "
                                 f"need a leading batch dim of {batch_size} in every branch, or equal values")
        elif not any(tensors) and all(v == vals[0] for v in vals):
            merged[key] = vals[0]
        else:
            raise ValueError(f"guidance: argument {key!r} differs between branches "
                             f"({', '.join(type(v).__name__ for v in vals)}) and cannot be batched; use tensors with "
                             f"a leading batch dim in all (for labels, a null-class index instead of None)")
    return merged
