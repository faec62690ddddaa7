"""Training batches: which images, with which conditions, at which noise level.

Two modes, one function:
  * single images (`train.frames = 0`): B random images, one sigma each.
  * frame sets (`train.frames = F_max`): each step draws a set size F in [2, F_max], then B/F
    animations and F distinct frames of each (in cycle order). All frames of a set share one sigma,
    because at sampling time the frames are denoised jointly, at the same noise level.
Condition dropout for classifier-free guidance (labels and each attribute -> -1, captions -> the
empty caption, control maps -> zeros, always per set so the frames of a set agree) is drawn here, from the same seeded generator as everything else, so resume stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.dataset import ImageSet, group_animations, to_model_range
from ..diffusion.edm import sample_sigma


@dataclass
class TextTable:
    """Encoded captions: row i is unique caption i; the last row is the empty caption (unconditional)."""
    captions: list[str]
    tokens: torch.Tensor      # [U+1, L, D]
    mask: torch.Tensor        # [U+1, L] bool
    pooled: torch.Tensor      # [U+1, D]

    @property
    def empty(self) -> int:
        return len(self.captions)

    def rows(self, idx: torch.Tensor, device) -> dict:
        return {"text_tokens": self.tokens[idx].to(device), "text_mask": self.mask[idx].to(device),
                "text_pooled": self.pooled[idx].to(device)}


def build_text_table(captions: list[str], cache) -> TextTable:
    unique = sorted(set(captions))
    tokens, mask, pooled = cache.encode(unique + [""])
    return TextTable(unique, tokens, mask.bool(), pooled)


def frame_phase(data: ImageSet) -> torch.Tensor:
    """Position of each image in its animation cycle, in [0, 1) (0 for still images)."""
    return torch.tensor([m["frame"] / m["num_frames"] if "num_frames" in m else 0.0 for m in data.meta])


@dataclass
class BatchSource:
    images: torch.Tensor                 # uint8 [N, C, H, W] (training split)
    labels: torch.Tensor                 # [N] (-1 = none)
    phase: torch.Tensor                  # [N]
    caption_idx: torch.Tensor | None     # [N] rows of `text`
    text: TextTable | None
    animations: list[list[int]] | None   # frame-set mode: groups of indices into `images`
    attributes: torch.Tensor | None = None  # [N, K] attribute indices (-1 = none)
    control: torch.Tensor | None = None     # uint8 [N, Cc, H, W] control maps
    detail: torch.Tensor | None = None      # uint8 [N, 1, H, W] 1 = a detail pixel (loss weight train.detail_weight)


def control_input(maps_u8: torch.Tensor) -> torch.Tensor:
    """uint8 control maps -> the network's control input in [0, 1] (all zeros = no control)."""
    return maps_u8.float() / 255.0


def sample_batch(src: BatchSource, batch_size: int, max_frames: int, cfg, gen: torch.Generator, device,
                 min_frames: int = 2):
    """-> (y [B*F, C, H, W] in [-1, 1], sigma [B*F], cond kwargs for `edm_loss`: the network's conditions,
    plus `pixel_weight` [B*F, 1, H, W] when the data marks detail pixels and train.detail_weight != 1).
    Frame-set mode draws one set size F in [min_frames, max_frames] per batch."""
    if src.animations:
        lo = min(min_frames, max_frames)
        F = int(torch.randint(lo, max_frames + 1, (1,), generator=gen)) if max_frames > lo else max_frames
        pool = [a for a in src.animations if len(a) >= F] or src.animations
        n_sets = max(1, batch_size // F)
        picks = torch.randint(len(pool), (n_sets,), generator=gen).tolist()
        idx = []
        for p in picks:
            anim = pool[p]
            chosen = torch.randperm(len(anim), generator=gen)[:F].sort().values.tolist()
            idx += [anim[c] for c in chosen] + [anim[chosen[-1]]] * (F - len(chosen))
        idx = torch.tensor(idx)
        sigma = sample_sigma(n_sets, cfg.diffusion, gen).repeat_interleave(F)
        frames = F
    else:
        idx = torch.randint(len(src.images), (batch_size,), generator=gen)
        sigma = sample_sigma(batch_size, cfg.diffusion, gen)
        frames, n_sets, F = 1, batch_size, 1
    y = to_model_range(src.images[idx])
    if cfg.data.hflip:  # one flip decision per set, so frames of a set stay consistent
        flip = (torch.rand(n_sets, generator=gen) < 0.5).repeat_interleave(F)
        y = torch.where(flip[:, None, None, None], y.flip(-1), y)
    cond: dict = {}
    if src.detail is not None and cfg.train.detail_weight != 1:
        w = 1 + (cfg.train.detail_weight - 1) * src.detail[idx].float()
        if cfg.data.hflip:
            w = torch.where(flip[:, None, None, None], w.flip(-1), w)
        cond["pixel_weight"] = w.to(device)
    if cfg.model.num_classes:
        lab = src.labels[idx].clone()
        lab[(torch.rand(n_sets, generator=gen) < cfg.model.label_dropout).repeat_interleave(F)] = -1
        cond["class_labels"] = lab.to(device)
    if src.text is not None:
        cap = src.caption_idx[idx].clone()
        cap[(torch.rand(n_sets, generator=gen) < cfg.model.caption_dropout).repeat_interleave(F)] = src.text.empty
        cond.update(src.text.rows(cap, device))
    if src.attributes is not None:
        att = src.attributes[idx].clone()
        drop = torch.rand(n_sets, att.shape[1], generator=gen) < cfg.model.attribute_dropout
        drop |= (torch.rand(n_sets, 1, generator=gen) < cfg.model.label_dropout)  # all at once: the unconditional branch of CFG
        att[drop.repeat_interleave(F, dim=0)] = -1
        cond["attributes"] = att.to(device)
    if src.control is not None:
        ctl = control_input(src.control[idx])
        keep = (torch.rand(n_sets, generator=gen) >= cfg.model.control_dropout).repeat_interleave(F)
        cond["control"] = (ctl * keep[:, None, None, None]).to(device)
    if cfg.model.frame_attention:
        cond["frames"] = frames
        cond["frame_phase"] = src.phase[idx].to(device)
    return y.to(device, non_blocking=True), sigma.to(device), cond


def fixed_cond(src: BatchSource, idx: torch.Tensor, cfg, device) -> dict:
    """Conditions of images `idx` with nothing dropped, one frame per set (validation)."""
    cond: dict = {}
    if cfg.model.num_classes:
        cond["class_labels"] = src.labels[idx].to(device)
    if src.text is not None:
        cond.update(src.text.rows(src.caption_idx[idx], device))
    if src.attributes is not None:
        cond["attributes"] = src.attributes[idx].to(device)
    if src.control is not None:
        cond["control"] = control_input(src.control[idx]).to(device)
    if cfg.model.frame_attention:
        cond["frames"] = 1
        cond["frame_phase"] = src.phase[idx].to(device)
    return cond


def make_source(data: ImageSet, idx: list[int], text: TextTable | None, frame_sets: bool,
                attributes: torch.Tensor | None = None, control: torch.Tensor | None = None,
                detail: torch.Tensor | None = None) -> BatchSource:
    """The training (or held-out) part `idx` of the data, with the conditions of all of `data`."""
    sub = data.subset(idx)
    caption_idx = None
    if text is not None:
        row = {c: i for i, c in enumerate(text.captions)}
        caption_idx = torch.tensor([row.get(c or "", text.empty) for c in sub.captions])
    return BatchSource(sub.images, sub.labels, frame_phase(sub), caption_idx, text,
                       group_animations(sub) if frame_sets else None,
                       attributes[idx] if attributes is not None else None,
                       control[idx] if control is not None else None,
                       detail[idx] if detail is not None else None)
