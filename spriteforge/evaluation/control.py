"""Control adherence: does a sprite generated for a pose (or edge map) take that pose?

For a model with control maps, trained on data that has keypoints (the built-in set): take real
animations (whole cycles, seeded; the run's held-out animations when the data is the run's), ask
the model for each one's attributes and drive it frame by frame with the real frames' control
maps, exactly as `spriteforge animate --pose-seq` does. Each generated frame is compared with the
real frame it was asked to match:

* silhouette IoU: alpha > 127 masks, intersection over union (1 = the same outline);
* edge F1: Canny edges of both (data.control.edge_map) with 1 px tolerance.

The same requests WITHOUT the control maps give the "without control" column: how much of the
match comes from the pose input rather than from the attributes alone. The floor is the real
frame against the real frame one step later in its cycle: the overlap of a neighbouring pose.
"""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import torch

from ..data.control import edge_map, edge_f1, silhouette_iou
from ..data.conditions import attribute_labels, control_maps
from ..data.dataset import group_animations
from ..training.batches import control_input


def _scores(gen: torch.Tensor, real: torch.Tensor) -> tuple[list[float], list[float]]:
    ious, f1s = [], []
    for g, r in zip(gen, real):
        g_np, r_np = g.permute(1, 2, 0).numpy(), r.permute(1, 2, 0).numpy()
        ious.append(silhouette_iou(g_np[..., 3] > 127, r_np[..., 3] > 127))
        f1s.append(edge_f1(edge_map(g_np), edge_map(r_np)))
    return ious, f1s


def control_adherence(model, data, n_anims: int = 16, sample_cfg=None, seed: int = 0, anim_pool=None) -> dict:
    """Silhouette IoU and edge F1 of pose-driven generations vs the real frames they were asked to
    match, with and without the control maps, and the neighbouring-pose floor (module docstring).
    `anim_pool`: indices of `data` to draw animations from (default: all)."""
    from ..config import SampleConfig
    from ..pipeline import generate
    mc = model.config.model
    if mc.image_size != data.size or model.shape[0] != 4 or data.channels != 4:
        raise ValueError("control adherence needs RGBA data of the model's size")
    groups = group_animations(data if anim_pool is None else data.subset(anim_pool))
    if anim_pool is not None:
        groups = [[anim_pool[i] for i in g] for g in groups]
    if not groups:
        raise ValueError("the data has no animations")
    rng = random.Random(seed)
    picks = [groups[i] for i in rng.sample(range(len(groups)), min(n_anims, len(groups)))]
    sc = sample_cfg or SampleConfig()
    vocab = model.attribute_values
    res = {"with": ([], []), "without": ([], []), "floor": ([], [])}
    for k, idx in enumerate(picks):
        sub = data.subset(idx)
        attrs = attribute_labels(sub.subset([0]), vocab)  # the animation's attributes, as one row
        ctl = control_input(control_maps(sub, mc.control))
        bsc = dataclasses.replace(sc, n=1, frames=len(idx) if mc.frame_attention else 1, seed=seed + k)
        for mode, c in (("with", ctl), ("without", None)):
            if mc.frame_attention:
                gen = generate(model, bsc, attributes=attrs, control=c)
            else:  # single-image models: one frame per call
                gen = torch.cat([generate(model, bsc, attributes=attrs, control=None if c is None else c[i:i + 1])
                                 for i in range(len(idx))])
            i, f = _scores(gen, sub.images)
            res[mode][0].extend(i)
            res[mode][1].extend(f)
        i, f = _scores(sub.images.roll(-1, 0), sub.images)
        res["floor"][0].extend(i)
        res["floor"][1].extend(f)
    mean = lambda v: float(np.mean(v)) if v else float("nan")  # noqa: E731
    return {"silhouette_iou": mean(res["with"][0]), "edge_f1": mean(res["with"][1]),
            "silhouette_iou_without_control": mean(res["without"][0]), "edge_f1_without_control": mean(res["without"][1]),
            "floor_silhouette_iou_next_frame": mean(res["floor"][0]), "floor_edge_f1_next_frame": mean(res["floor"][1]),
            "animations": len(picks), "frames": sum(len(p) for p in picks),
            "per_frame_silhouette_iou": res["with"][0]}


def report_section(result: dict) -> dict:
    """`control_adherence`'s result as a section of the evaluation report."""
    keys = ("silhouette_iou", "edge_f1")
    return {"control_adherence": {
        "title": "Adherence: pose control (generated frame vs the real frame whose pose was requested)",
        "metrics": {k: result[k] for k in keys},
        "without_control": {k: result[f"{k}_without_control"] for k in keys},
        "real_next_frame": {k: result[f"floor_{k}_next_frame"] for k in keys},
        "better": "higher",
        "notes": [f"{result['animations']} real animations ({result['frames']} frames): each generated with its "
                  "attributes and its frames' pose maps, as `animate --pose-seq` does",
                  "without control = the same requests with no pose maps; real next frame = the real frame vs the "
                  "next frame of its cycle (the overlap of a neighbouring pose)",
                  "silhouette IoU of alpha > 127 masks; edge F1 of Canny edges with 1 px tolerance"]}}
