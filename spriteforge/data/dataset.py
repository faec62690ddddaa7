"""The in-memory dataset every source (image folder, built-in set, sheets, video) produces.

A few hundred sprites at 32-64 px fit in memory many times over, so every source decodes,
resizes and stores its images once as one uint8 tensor; training indexes into it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class ImageSet:
    images: torch.Tensor                      # uint8 [N, C, H, W], C = 3 (RGB) or 4 (RGBA, alpha kept)
    paths: list[str]                          # where each image came from (file path or "builtin:<id>")
    captions: list[str | None]                # caption per image, None where there is none
    labels: torch.Tensor                      # int64 [N], class index into class_names, -1 = no label
    class_names: list[str] = field(default_factory=list)
    meta: list[dict] = field(default_factory=list)   # free per-image metadata (builtin: attributes, action, pose...)

    def __post_init__(self):
        n = self.images.shape[0]
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(f"ImageSet.images must be uint8 [N,C,H,W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.images.shape[1] not in (3, 4):
            raise ValueError(f"ImageSet.images must have 3 or 4 channels, got {self.images.shape[1]}")
        if not self.meta:
            self.meta = [{} for _ in range(n)]
        for name, seq in (("paths", self.paths), ("captions", self.captions), ("labels", self.labels), ("meta", self.meta)):
            if len(seq) != n:
                raise ValueError(f"ImageSet.{name} has {len(seq)} entries for {n} images")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def subset(self, idx) -> "ImageSet":
        idx = list(idx)
        return ImageSet(self.images[idx], [self.paths[i] for i in idx], [self.captions[i] for i in idx],
                        self.labels[idx], list(self.class_names), [self.meta[i] for i in idx])


def group_animations(data: ImageSet) -> list[list[int]]:
    """Image indices grouped by meta['animation'], each group sorted by meta['frame']."""
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(data.meta):
        if "animation" in m:
            groups.setdefault(str(m["animation"]), []).append(i)
    return [sorted(g, key=lambda i: data.meta[i]["frame"]) for _, g in sorted(groups.items())]


def to_model_range(images_u8: torch.Tensor) -> torch.Tensor:
    """uint8 [0,255] -> float [-1,1]."""
    return images_u8.float().div(127.5).sub(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [-1,1] -> uint8 [0,255] (clamped, rounded)."""
    return x.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


class DataError(ValueError):
    """Bad input data; the message names the file (or folder) and what was expected."""


# The 2-D skeleton layout every pose in spriteforge uses: OpenPose/COCO 18 points.
# Keypoints are (x, y) in pixel coordinates of the image, with visibility v in {0, 1}.
POSE_JOINTS = ("nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
               "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear")
POSE_LIMBS = ((1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
              (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17))
