"""Poses in spriteforge's 18-point layout (``POSE_JOINTS``): file I/O, layout conversion, rescaling
and rendering to a 3-channel control map.

Keypoint arrays
---------------
A pose is a float32 array ``[18, 3]`` (a sequence: ``[F, 18, 3]``) of ``(x, y, v)``: ``x, y`` in
pixels of the image the pose belongs to, ``v`` = 1.0 (visible) or 0.0 (missing). Missing joints
have ``x = y = 0``. Coordinates are continuous with (0, 0) the top-left *corner* of the image, so
pixel column ``j`` covers ``j <= x < j + 1``; a normalized coordinate ``u`` in [0, 1] is ``u * W``.

Pose JSON format (``load_pose_json``)
-------------------------------------
1. spriteforge pose file (one or more frames)::

       {
         "layout": "openpose18" | "openpose25" | "coco17" | "mediapipe33",   # required
         "width": 640, "height": 480,     # image size the coordinates refer to (required when
                                          # "normalized" is true; needed to rescale)
         "normalized": false,             # optional: coordinates in [0, 1] (x * width, y * height).
                                          # Default: true for "mediapipe33", false otherwise
         "frames": [frame, ...]           # required, at least one frame
       }

   ``frame`` is a list of exactly K points for the layout (openpose18: 18, openpose25: 25,
   coco17: 17, mediapipe33: 33), or a flat list of K*3 numbers ``x0, y0, c0, x1, ...``.
   A point is ``[x, y]`` (confidence 1), ``[x, y, conf]``, ``[x, y, z, visibility]`` (mediapipe33
   only; z is ignored) or an object ``{"x": .., "y": .., "visibility" | "score" | "conf" |
   "confidence" | "c": ..}``. Frame order is time order.

2. Native OpenPose output (``--write_json``; also the ControlNet OpenPose-editor format), one frame::

       {"people": [{"pose_keypoints_2d": [x0, y0, c0, ...]}, ...],
        "canvas_width": 512, "canvas_height": 512}        # canvas_* optional

   75 numbers = BODY_25, 54 = COCO-18. With several people the one with the highest summed
   confidence is used. ``"width"/"height"`` are accepted in place of ``canvas_*``.

3. A directory: every ``*.json`` in it (sorted by name, e.g. OpenPose's per-frame
   ``video_000000000000_keypoints.json`` files), each loaded as above, frames concatenated.

Conversion to the 18 points
---------------------------
* openpose18: as is (OpenPose COCO-18 order = ``POSE_JOINTS``).
* openpose25 (BODY_25: 0 Nose, 1 Neck, 2-7 arms as COCO-18, 8 MidHip, 9 RHip, 10 RKnee,
  11 RAnkle, 12 LHip, 13 LKnee, 14 LAnkle, 15 REye, 16 LEye, 17 REar, 18 LEar, 19-24 feet):
  MidHip and the feet are dropped.
* coco17 (0 nose, 1 l_eye, 2 r_eye, 3 l_ear, 4 r_ear, 5 l_shoulder, 6 r_shoulder, 7 l_elbow,
  8 r_elbow, 9 l_wrist, 10 r_wrist, 11 l_hip, 12 r_hip, 13 l_knee, 14 r_knee, 15 l_ankle,
  16 r_ankle): neck = midpoint of the shoulders.
* mediapipe33 (BlazePose: 0 nose, 2 left_eye, 5 right_eye, 7 left_ear, 8 right_ear,
  11/12 left/right shoulder, 13/14 elbows, 15/16 wrists, 23/24 hips, 25/26 knees, 27/28 ankles;
  eye corners, mouth, hands and feet are dropped): neck = midpoint of the shoulders.
  "Left"/"right" are the person's own in every layout.

A derived joint (neck) is visible only if both of its sources are. A joint is visible when its
confidence is > ``min_conf``: by default 0.5 for mediapipe33 (its "visibility" is a probability)
and 0 for the others (OpenPose writes 0,0,0 for a missing joint; COCO v=1 "labelled but
occluded" counts as visible).

Rendering (``render_pose_map``)
-------------------------------
A 32x32 map cannot show OpenPose's 17 hue-coded limbs (neighbouring limbs are 1-3 px apart and a
tiny network would have to decode hue), so the default ``style="groups"`` gives each body-part
group its own channel and encodes the side by intensity:

* R = arms (neck-shoulder, shoulder-elbow, elbow-wrist),
* G = legs and torso sides (neck-hip, hip-knee, knee-ankle),
* B = head (neck-nose, nose-eye, eye-ear),

with the person's LEFT limbs at 255, RIGHT limbs at 128 (neck-nose at 255), background 0.
Where limbs overlap in a channel the brighter (left) one wins. Lines are 1-px, 8-connected,
not anti-aliased (crisp and deterministic), ``thickness`` px wide (square brush); endpoints
are the pixels containing the keypoints. ``style="openpose"`` draws the classic OpenPose colours
(limb i in colour i, joints as dots) for interoperability with external pose maps.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .dataset import POSE_JOINTS, POSE_LIMBS, DataError

__all__ = [
    "LAYOUTS",
    "LIMB_GROUPS",
    "OPENPOSE_COLORS",
    "PoseSequence",
    "convert_layout",
    "load_pose_json",
    "pose_from_image_mediapipe",
    "read_pose_json",
    "render_pose_map",
    "render_pose_maps",
    "rescale_pose",
    "save_pose_json",
]

N_JOINTS = len(POSE_JOINTS)   # 18

# For each of our 18 joints: the source index, or a tuple of indices whose midpoint is taken.
_FROM: dict[str, list[int | tuple[int, ...]]] = {
    "openpose18": list(range(18)),
    "openpose25": [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18],
    "coco17": [0, (5, 6), 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3],
    "mediapipe33": [0, (11, 12), 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7],
}
LAYOUTS: dict[str, int] = {"openpose18": 18, "openpose25": 25, "coco17": 17, "mediapipe33": 33}
_DEFAULT_MIN_CONF = {"openpose18": 0.0, "openpose25": 0.0, "coco17": 0.0, "mediapipe33": 0.5}
_CONF_KEYS = ("visibility", "score", "conf", "confidence", "c")


@dataclass
class PoseSequence:
    keypoints: np.ndarray          # float32 [F, 18, 3]
    width: float | None            # image size the coordinates refer to, if known
    height: float | None
    layout: str                    # layout of the file (before conversion)
    path: str


# --------------------------------------------------------------------------------------------
# layout conversion
# --------------------------------------------------------------------------------------------

def convert_layout(points: np.ndarray, layout: str, min_conf: float | None = None) -> np.ndarray:
    """[F, K, 3] (x, y, conf) in pixels in ``layout`` -> [F, 18, 3] (x, y, v) in our layout."""
    if layout not in _FROM:
        raise ValueError(f"unknown pose layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[1] != LAYOUTS[layout] or pts.shape[2] != 3:
        raise ValueError(f"layout {layout!r} needs points [F, {LAYOUTS[layout]}, 3], got {pts.shape}")
    thr = _DEFAULT_MIN_CONF[layout] if min_conf is None else float(min_conf)
    vis = pts[..., 2] > thr
    out = np.zeros((pts.shape[0], N_JOINTS, 3), dtype=np.float64)
    for j, src in enumerate(_FROM[layout]):
        idx = src if isinstance(src, tuple) else (src,)
        v = np.all(vis[:, idx], axis=1)
        xy = pts[:, idx, :2].mean(axis=1)
        out[:, j, :2] = np.where(v[:, None], xy, 0.0)
        out[:, j, 2] = v
    return out.astype(np.float32)


# --------------------------------------------------------------------------------------------
# JSON reading
# --------------------------------------------------------------------------------------------

def _num(v, path, where) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DataError(f"{path}: {where}: expected a number, got {json.dumps(v)[:40]}")
    f = float(v)
    if not math.isfinite(f):
        raise DataError(f"{path}: {where}: not a finite number ({v})")
    return f


def _parse_point(p, layout, path, where) -> tuple[float, float, float]:
    if isinstance(p, dict):
        if "x" not in p or "y" not in p:
            raise DataError(f"{path}: {where}: point object needs keys 'x' and 'y', has {sorted(p)}")
        conf = 1.0
        for k in _CONF_KEYS:
            if k in p:
                conf = _num(p[k], path, f"{where}.{k}")
                break
        return _num(p["x"], path, f"{where}.x"), _num(p["y"], path, f"{where}.y"), conf
    if isinstance(p, (list, tuple)):
        if len(p) == 2:
            return _num(p[0], path, where), _num(p[1], path, where), 1.0
        if len(p) == 3:
            return tuple(_num(v, path, where) for v in p)  # type: ignore[return-value]
        if len(p) == 4 and layout == "mediapipe33":
            return _num(p[0], path, where), _num(p[1], path, where), _num(p[3], path, where)
        allowed = "2, 3 or 4 ([x, y, z, visibility])" if layout == "mediapipe33" else "2 or 3"
        raise DataError(f"{path}: {where}: a point has {allowed} numbers, got {len(p)}")
    raise DataError(f"{path}: {where}: a point must be [x, y(, conf)] or an object, got {json.dumps(p)[:40]}")


def _parse_frame(frame, layout, path, where) -> np.ndarray:
    k = LAYOUTS[layout]
    if not isinstance(frame, list):
        raise DataError(f"{path}: {where}: a frame must be a list of points, got {type(frame).__name__}")
    if frame and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in frame):
        if len(frame) != 3 * k:
            raise DataError(f"{path}: {where}: flat frame has {len(frame)} numbers; layout {layout!r} "
                            f"needs {k} points x 3 = {3 * k}{_layout_hint(len(frame) / 3)}")
        arr = np.array([_num(v, path, where) for v in frame], dtype=np.float64)
        return arr.reshape(k, 3)
    if len(frame) != k:
        raise DataError(f"{path}: {where}: has {len(frame)} points; layout {layout!r} needs {k}"
                        f"{_layout_hint(len(frame))}")
    return np.array([_parse_point(p, layout, path, f"{where} point {i}") for i, p in enumerate(frame)],
                    dtype=np.float64)


def _layout_hint(n) -> str:
    names = [name for name, k in LAYOUTS.items() if k == n]
    return f" (did you mean layout {names[0]!r}?)" if names else ""


def _size_from(doc: dict, path, *keys) -> tuple[float | None, float | None]:
    wk, hk = keys
    w, h = doc.get(wk), doc.get(hk)
    if (w is None) != (h is None):
        raise DataError(f"{path}: has {wk!r} or {hk!r} but not both")
    if w is None:
        return None, None
    w, h = _num(w, path, wk), _num(h, path, hk)
    if w <= 0 or h <= 0:
        raise DataError(f"{path}: image size must be positive, got {wk}={w}, {hk}={h}")
    return w, h


def _read_openpose_native(doc: dict, path, min_conf) -> PoseSequence:
    people = doc["people"]
    if not isinstance(people, list):
        raise DataError(f"{path}: 'people' must be a list")
    if not people:
        raise DataError(f"{path}: 'people' is empty: no person in this frame (frame count 0)")
    best, best_score, best_layout = None, -math.inf, ""
    for i, person in enumerate(people):
        if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
            raise DataError(f"{path}: people[{i}] is missing key 'pose_keypoints_2d'")
        flat = person["pose_keypoints_2d"]
        if not isinstance(flat, list):
            raise DataError(f"{path}: people[{i}].pose_keypoints_2d must be a list of numbers")
        layout = {75: "openpose25", 54: "openpose18"}.get(len(flat))
        if layout is None:
            raise DataError(f"{path}: people[{i}].pose_keypoints_2d has {len(flat)} numbers; expected "
                            f"75 (BODY_25) or 54 (COCO-18)")
        pts = _parse_frame(flat, layout, path, f"people[{i}].pose_keypoints_2d")
        score = float(pts[:, 2].sum())
        if score > best_score:
            best, best_score, best_layout = pts, score, layout
    w, h = _size_from(doc, path, "canvas_width", "canvas_height")
    if w is None:
        w, h = _size_from(doc, path, "width", "height")
    kp = convert_layout(best[None], best_layout, min_conf)
    return PoseSequence(kp, w, h, best_layout, str(path))


def _read_one(path: Path, min_conf) -> PoseSequence:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot read pose file ({e.strerror or e})") from e
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from e
    if not isinstance(doc, dict):
        raise DataError(f"{path}: top level must be a JSON object with 'layout' and 'frames' "
                        f"(or OpenPose 'people'), got {type(doc).__name__}")
    if "people" in doc and "frames" not in doc:
        return _read_openpose_native(doc, path, min_conf)
    for key in ("layout", "frames"):
        if key not in doc:
            raise DataError(f"{path}: missing key {key!r} (a pose file needs 'layout' and 'frames', "
                            f"or OpenPose's 'people')")
    layout = doc["layout"]
    if layout not in LAYOUTS:
        raise DataError(f"{path}: unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    frames = doc["frames"]
    if not isinstance(frames, list):
        raise DataError(f"{path}: 'frames' must be a list of frames, got {type(frames).__name__}")
    if not frames:
        raise DataError(f"{path}: 'frames' is empty (frame count 0)")
    w, h = _size_from(doc, path, "width", "height")
    normalized = doc.get("normalized", layout == "mediapipe33")
    if not isinstance(normalized, bool):
        raise DataError(f"{path}: 'normalized' must be true or false, got {json.dumps(normalized)}")
    pts = np.stack([_parse_frame(f, layout, path, f"frame {i}") for i, f in enumerate(frames)])
    if normalized:
        if w is None:
            raise DataError(f"{path}: normalized coordinates (layout {layout!r}) need 'width' and 'height'")
        pts[..., 0] *= w
        pts[..., 1] *= h
    return PoseSequence(convert_layout(pts, layout, min_conf), w, h, layout, str(path))


def read_pose_json(path: str | Path, min_conf: float | None = None) -> PoseSequence:
    """Read a pose file or directory (format in the module docstring) with its image size."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".json" and p.is_file())
        if not files:
            raise DataError(f"{path}: folder has no .json pose files (frame count 0)")
        seqs = [_read_one(f, min_conf) for f in files]
        sizes = {(s.width, s.height) for s in seqs if s.width is not None}
        if len(sizes) > 1:
            raise DataError(f"{path}: pose files disagree on the image size: {sorted(sizes)}")
        w, h = sizes.pop() if sizes else (None, None)
        layouts = sorted({s.layout for s in seqs})
        return PoseSequence(np.concatenate([s.keypoints for s in seqs]), w, h, "+".join(layouts), str(path))
    if not path.exists():
        raise DataError(f"{path}: pose file not found")
    return _read_one(path, min_conf)


def load_pose_json(path: str | Path, to_size: int | tuple[int, int] | None = None,
                   from_size: int | tuple[float, float] | None = None, min_conf: float | None = None,
                   mode: str = "stretch") -> np.ndarray:
    """Load a pose file/folder as float32 ``[F, 18, 3]``.

    Without ``to_size`` the coordinates are pixels of the file's image. With ``to_size`` they are
    rescaled (``rescale_pose``) from the file's width/height (or ``from_size``, which overrides it)
    to ``to_size``; a DataError names the file when neither gives a source size.
    """
    seq = read_pose_json(path, min_conf)
    if to_size is None:
        return seq.keypoints
    src = from_size
    if src is None:
        if seq.width is None:
            raise DataError(f"{path}: the file gives no image size ('width'/'height'); pass from_size= "
                            f"to rescale its poses to {to_size}")
        src = (seq.width, seq.height)
    return rescale_pose(seq.keypoints, src, to_size, mode=mode)


def save_pose_json(path: str | Path, keypoints: np.ndarray, width: float, height: float) -> None:
    """Write ``[F, 18, 3]`` (or ``[18, 3]``) keypoints as a spriteforge ``openpose18`` pose file."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim == 2:
        kp = kp[None]
    if kp.ndim != 3 or kp.shape[1:] != (N_JOINTS, 3):
        raise ValueError(f"keypoints must be [F, 18, 3], got {kp.shape}")
    doc = {"layout": "openpose18", "width": width, "height": height,
           "frames": [[[round(float(x), 3), round(float(y), 3), float(v)] for x, y, v in f] for f in kp]}
    Path(path).write_text(json.dumps(doc), encoding="utf-8")


# --------------------------------------------------------------------------------------------
# rescaling
# --------------------------------------------------------------------------------------------

def _wh(size) -> tuple[float, float]:
    if isinstance(size, (int, float)):
        return float(size), float(size)
    w, h = size
    return float(w), float(h)


def rescale_pose(kp: np.ndarray, from_size, to_size, mode: str = "stretch") -> np.ndarray:
    """Rescale ``[..., 18, 3]`` keypoints from an image of ``from_size`` to ``to_size``.

    Sizes are an int (square) or ``(width, height)``. ``mode="stretch"`` scales x and y
    independently (matches a plain resize of the image); ``mode="fit"`` scales both by the same
    factor and centres the result (matches letterboxing a non-square image into the target).
    Missing joints stay (0, 0, 0).
    """
    fw, fh = _wh(from_size)
    tw, th = _wh(to_size)
    if min(fw, fh, tw, th) <= 0:
        raise ValueError(f"sizes must be positive, got {from_size} -> {to_size}")
    out = np.array(kp, dtype=np.float32, copy=True)
    if out.shape[-2:] != (N_JOINTS, 3):
        raise ValueError(f"keypoints must be [..., 18, 3], got {out.shape}")
    if mode == "stretch":
        sx, sy, ox, oy = tw / fw, th / fh, 0.0, 0.0
    elif mode == "fit":
        s = min(tw / fw, th / fh)
        sx = sy = s
        ox, oy = (tw - fw * s) / 2, (th - fh * s) / 2
    else:
        raise ValueError(f"mode must be 'stretch' or 'fit', got {mode!r}")
    vis = out[..., 2] > 0
    out[..., 0] = np.where(vis, out[..., 0] * sx + ox, 0.0)
    out[..., 1] = np.where(vis, out[..., 1] * sy + oy, 0.0)
    return out


# --------------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------------

_L, _R = 255, 128
# limb (index into POSE_LIMBS) -> (channel, intensity) for style="groups"
LIMB_GROUPS: dict[tuple[int, int], tuple[int, int]] = {
    (1, 2): (0, _R), (2, 3): (0, _R), (3, 4): (0, _R),          # right arm
    (1, 5): (0, _L), (5, 6): (0, _L), (6, 7): (0, _L),          # left arm
    (1, 8): (1, _R), (8, 9): (1, _R), (9, 10): (1, _R),         # right torso side + leg
    (1, 11): (1, _L), (11, 12): (1, _L), (12, 13): (1, _L),     # left torso side + leg
    (1, 0): (2, _L),                                            # neck - nose
    (0, 14): (2, _R), (14, 16): (2, _R),                        # right eye, ear
    (0, 15): (2, _L), (15, 17): (2, _L),                        # left eye, ear
}
assert set(LIMB_GROUPS) == set(POSE_LIMBS)

# The OpenPose / ControlNet body colours (RGB), limb i and joint i.
OPENPOSE_COLORS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
                   (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
                   (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))


def _clip_segment(x0, y0, x1, y1, lo, hi):
    """Liang-Barsky clip of a segment to the box [lo, hi]^2; None if outside."""
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0 - lo), (dx, hi - x0), (-dy, y0 - lo), (dy, hi - y0)):
        if p == 0:
            if q < 0:
                return None
        else:
            t = q / p
            if p < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
            if t0 > t1:
                return None
    return x0 + t0 * dx, y0 + t0 * dy, x0 + t1 * dx, y0 + t1 * dy


def _line_pixels(p0, p1, size: int, thickness: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows, cols of a crisp 8-connected line between the pixels containing p0 and p1."""
    seg = _clip_segment(float(p0[0]), float(p0[1]), float(p1[0]), float(p1[1]), -2.0, size + 2.0)
    if seg is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    x0, y0, x1, y1 = (math.floor(v) for v in seg)
    n = max(abs(x1 - x0), abs(y1 - y0)) + 1
    xs = np.rint(np.linspace(x0, x1, n)).astype(np.int64)
    ys = np.rint(np.linspace(y0, y1, n)).astype(np.int64)
    if thickness > 1:
        offs = np.arange(-(thickness // 2), thickness - thickness // 2)
        dy, dx = np.meshgrid(offs, offs, indexing="ij")
        xs = (xs[:, None] + dx.ravel()[None]).ravel()
        ys = (ys[:, None] + dy.ravel()[None]).ravel()
    keep = (xs >= 0) & (xs < size) & (ys >= 0) & (ys < size)
    return ys[keep], xs[keep]


def render_pose_map(kp: np.ndarray, size: int, thickness: int | None = None, style: str = "groups") -> np.ndarray:
    """Draw one ``[18, 3]`` pose (pixel coords of a size x size image) as uint8 ``[size, size, 3]``.

    ``thickness`` defaults to max(1, round(size / 32)). See the module docstring for the styles.
    """
    kp = np.asarray(kp, dtype=np.float64)
    if kp.shape != (N_JOINTS, 3):
        raise ValueError(f"render_pose_map needs one pose [18, 3], got {kp.shape}")
    size = int(size)
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if thickness is None:
        thickness = max(1, round(size / 32))
    thickness = int(thickness)
    if thickness < 1:
        raise ValueError(f"thickness must be >= 1, got {thickness}")
    img = np.zeros((size, size, 3), dtype=np.uint8)
    vis = (kp[:, 2] > 0) & np.isfinite(kp[:, :2]).all(axis=1)
    if style == "groups":
        for a, b in POSE_LIMBS:
            if vis[a] and vis[b]:
                ch, val = LIMB_GROUPS[(a, b)]
                r, c = _line_pixels(kp[a], kp[b], size, thickness)
                img[r, c, ch] = np.maximum(img[r, c, ch], val)
    elif style == "openpose":
        for i, (a, b) in enumerate(POSE_LIMBS):
            if vis[a] and vis[b]:
                r, c = _line_pixels(kp[a], kp[b], size, thickness)
                img[r, c] = OPENPOSE_COLORS[i]
        for j in range(N_JOINTS):
            if vis[j]:
                r, c = _line_pixels(kp[j], kp[j], size, thickness)
                img[r, c] = OPENPOSE_COLORS[j]
    else:
        raise ValueError(f"style must be 'groups' or 'openpose', got {style!r}")
    return img


def render_pose_maps(kps: np.ndarray, size: int, thickness: int | None = None, style: str = "groups") -> np.ndarray:
    """``[F, 18, 3]`` -> uint8 ``[F, size, size, 3]``."""
    kps = np.asarray(kps)
    return np.stack([render_pose_map(k, size, thickness, style) for k in kps]) if len(kps) else \
        np.zeros((0, size, size, 3), np.uint8)


# --------------------------------------------------------------------------------------------
# optional: pose estimation from images with MediaPipe
# --------------------------------------------------------------------------------------------

_MP_HINT = ("pose_from_image_mediapipe needs the optional MediaPipe extra: pip install 'spriteforge[pose]' "
            "(mediapipe==0.10.21; it needs numpy<2, so use a separate environment if yours has numpy 2)")


def pose_from_image_mediapipe(images, min_visibility: float = 0.5, upscale_to: int = 256,
                              background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Estimate 18-point poses from images with MediaPipe Pose (legacy solution, complexity 1).

    ``images``: a sequence of uint8 ``[H, W, 3|4]`` arrays (RGB/RGBA) or PIL images, or one
    ``[N, H, W, C]`` array. RGBA is composited on ``background``. Images smaller than
    ``upscale_to`` px are enlarged by an integer nearest-neighbour factor first (the detector is
    made for photos; a 32 px sprite is too small for it). Returns float32 ``[N, 18, 3]`` in pixels
    of each input image; an image where no person is found gives all zeros (v = 0).
    Only ``model_complexity=1`` is bundled with mediapipe, so nothing is downloaded.
    """
    try:
        import mediapipe as mp
    except ImportError as e:
        raise ImportError(_MP_HINT) from e
    arrays = [_as_rgb(im, background) for im in (list(images) if not isinstance(images, np.ndarray)
                                                  or images.ndim == 4 else [images])]
    out = np.zeros((len(arrays), N_JOINTS, 3), dtype=np.float32)
    with mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False,
                                min_detection_confidence=0.5) as estimator:
        for i, rgb in enumerate(arrays):
            h, w = rgb.shape[:2]
            k = max(1, math.ceil(upscale_to / max(h, w))) if upscale_to else 1
            big = np.ascontiguousarray(rgb.repeat(k, 0).repeat(k, 1)) if k > 1 else np.ascontiguousarray(rgb)
            res = estimator.process(big)
            if res.pose_landmarks is None:
                continue
            pts = np.array([[lm.x * w, lm.y * h, lm.visibility] for lm in res.pose_landmarks.landmark],
                           dtype=np.float64)
            out[i] = convert_layout(pts[None], "mediapipe33", min_visibility)[0]
    return out


def _as_rgb(im, background) -> np.ndarray:
    a = np.asarray(im)
    if a.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got {a.dtype}")
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"images must be [H, W, 3|4], got {a.shape}")
    if a.shape[2] == 3:
        return a
    alpha = a[..., 3:4].astype(np.float32) / 255.0
    bg = np.asarray(background, dtype=np.float32)
    return np.rint(a[..., :3] * alpha + bg * (1 - alpha)).astype(np.uint8)
