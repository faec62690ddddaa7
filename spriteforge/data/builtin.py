"""The built-in procedural sprite set: pixel-art characters drawn by our own code.

It is the default training data (nothing to download, nothing to license), the ground truth
later metrics compare against (every frame comes with its exact pose and attributes), and it
can be exported as an ordinary image folder.

How a frame is made, and why:

* **Characters** (`make_characters`) combine an archetype (knight, mage, rogue, skeleton,
  robot, slime), a palette and an accessory, plus small seeded traits (skin, hair, height),
  so the set is varied yet fully reproducible from one seed.
* **Poses first.** Each action (idle, walk, run, jump, attack) is a looping cycle; for a frame
  we compute a 2-D skeleton from joint angles (`_pose`, `_skeleton`) and then DRAW the body
  along those joints. The 18 OpenPose/COCO keypoints returned with the image are the very
  pixels the limbs were drawn from, so pose labels are exact, not estimated.
* **Crisp at any size.** Everything is designed on a 32-px grid and drawn directly at the
  target size with integer coordinates (lengths scaled, then rounded); nothing is resampled,
  so 16, 32, 48 and 64 px are all sharp pixel art (below 24 px the finest details and the
  inner outlines are left out: they would swallow the body). A dark 1-px outline is added
  last so the characters read as game sprites on any background.
* **Directions.** "right" is drawn; "left" is its exact mirror (keypoints mirrored and their
  right/left names swapped, as for any horizontally flipped person); "front" is the same
  skeleton seen from the front by a camera tilted slightly down, as in top-down games, with
  the cues that make head-on motion readable: feet lifting in turn, hands swinging outwards.

Keypoint convention: (x, y) is the column and row of the pixel a joint is drawn on, v = 1 for
joints the character has (even where another body part covers them), v = 0 (and x = y = 0)
for joints it does not have (a slime has eyes and a face, no limbs).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from spriteforge.data.dataset import POSE_JOINTS, POSE_LIMBS, DataError, ImageSet

ARCHETYPES = ("knight", "mage", "rogue", "skeleton", "robot", "slime")
PALETTES = ("red", "blue", "green", "purple", "gold", "gray", "orange", "teal")
ACCESSORIES = ("none", "sword", "shield", "staff", "hat", "cape")
ACTIONS = ("idle", "walk", "run", "jump", "attack")
ACTION_FRAMES = {"idle": 4, "walk": 8, "run": 6, "jump": 6, "attack": 4}
DIRECTIONS = ("right", "left", "front")

# A slime has no hands and no back to hang things on: it only ever gets "none" or "hat".
_SLIME_ACCESSORIES = ("none", "hat")

# ----------------------------------------------------------------------------------------
# Colours. Each ramp is (light, base, dark): base for surfaces, dark for the far side and
# shadows, light for highlights. Hand-picked rather than computed: at 32 px a few pixels of
# well-chosen colour carry the whole read.

Rgb = tuple[int, int, int]

_OUTLINE: Rgb = (30, 22, 40)
_PALETTE_RAMPS: dict[str, tuple[Rgb, Rgb, Rgb]] = {
    "red": ((255, 118, 98), (216, 50, 50), (134, 26, 44)),
    "blue": ((110, 176, 255), (52, 100, 218), (30, 52, 138)),
    "green": ((142, 226, 96), (58, 162, 66), (28, 98, 52)),
    "purple": ((196, 128, 242), (132, 66, 196), (78, 36, 126)),
    "gold": ((255, 230, 112), (232, 172, 40), (158, 100, 22)),
    "gray": ((206, 210, 218), (142, 148, 162), (84, 88, 106)),
    "orange": ((255, 174, 84), (236, 114, 32), (156, 62, 22)),
    "teal": ((106, 232, 212), (34, 166, 160), (20, 100, 106)),
}
_STEEL = ((226, 232, 240), (168, 178, 194), (100, 108, 128))
_BONE = ((252, 248, 232), (224, 216, 186), (158, 146, 116))
_LEATHER = ((126, 82, 48), (82, 52, 34))           # (base, dark)
_WOOD: Rgb = (134, 88, 46)
_BLADE: Rgb = (246, 250, 255)
_TROUSERS = ((72, 64, 84), (48, 42, 58))           # (near, far)
_MASK: Rgb = (46, 40, 56)                          # a rogue's face cloth
_GOLD_TRIM: Rgb = (244, 198, 66)
_WHITE: Rgb = (255, 255, 255)
_SKINS: tuple[Rgb, ...] = ((255, 222, 184), (236, 178, 128), (190, 128, 84), (140, 94, 62))
_HAIRS: tuple[Rgb, ...] = ((70, 44, 30), (152, 92, 42), (236, 196, 96), (204, 76, 42), (44, 40, 56), (214, 214, 222))


@dataclass(frozen=True)
class CharacterSpec:
    """One character of the set. The fields below `accessory` are small seeded traits that
    vary characters sharing the same archetype/palette/accessory."""
    id: int
    archetype: str
    palette: str
    accessory: str
    skin: int = 0       # index into the skin tones (shows on knights with hats, mages, rogues)
    hair: int = 0       # index into the hair colours (shows when a hat replaces the headgear)
    height: int = 0     # -1, 0 or +1: legs half a design pixel shorter/longer per segment


def make_characters(n: int, seed: int) -> list[CharacterSpec]:
    """`n` characters, deterministic in `seed`, spreading attributes evenly: archetypes are dealt
    from shuffled decks (counts differ by at most one), and each character takes the palette
    and the accessory its archetype has used least, then the set has used least (ties broken
    at random), so four knights get four different looks and the whole set stays balanced."""
    if n < 1:
        raise ValueError(f"make_characters needs n >= 1, got {n}")
    rng = random.Random(seed)
    per_archetype: dict[tuple[str, str], int] = {}
    overall: dict[str, int] = {}

    def pick(archetype: str, names) -> str:
        def key(name):
            return per_archetype.get((archetype, name), 0), overall.get(name, 0)
        best = min(key(name) for name in names)
        name = rng.choice([x for x in names if key(x) == best])
        per_archetype[archetype, name] = per_archetype.get((archetype, name), 0) + 1
        overall[name] = overall.get(name, 0) + 1
        return name

    archetypes: list[str] = []
    while len(archetypes) < n:
        deck = list(ARCHETYPES)
        rng.shuffle(deck)
        archetypes += deck
    specs = []
    for i, archetype in enumerate(archetypes[:n]):
        palette = pick(archetype, PALETTES)
        accessory = pick(archetype, _SLIME_ACCESSORIES if archetype == "slime" else ACCESSORIES)
        specs.append(CharacterSpec(id=i, archetype=archetype, palette=palette, accessory=accessory,
                                   skin=rng.randrange(len(_SKINS)), hair=rng.randrange(len(_HAIRS)),
                                   height=rng.choice((-1, 0, 0, 1))))
    return specs


def caption_for(spec: CharacterSpec, action: str, direction: str) -> str:
    """A plain-English caption, e.g. "a red knight with a shield walking right"."""
    article = "an" if spec.palette[0] in "aeiou" else "a"
    who = f"{article} {spec.palette} {spec.archetype}"
    if spec.accessory != "none":
        who += f" with a {spec.accessory}"
    verb = {"idle": "standing idle", "walk": "walking", "run": "running", "jump": "jumping", "attack": "attacking"}[action]
    if action in ("walk", "run"):
        where = {"right": "right", "left": "left", "front": "toward the camera"}[direction]
    else:
        where = {"right": "facing right", "left": "facing left", "front": "facing the camera"}[direction]
    return f"{who} {verb} {where}"


# ----------------------------------------------------------------------------------------
# Pixel drawing. Shapes are boolean masks over the whole (small) canvas: a 64x64 mask is 4 KB
# and numpy builds it in microseconds, which keeps the whole set well under a second or two.

def _rnd(v: float) -> int:
    """Round half away from zero, so offsets of +d and -d from a centre stay symmetric."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size]
    return yy, xx


class _Canvas:
    """An RGBA pixel grid plus the scale from the 32-px design grid to the real size."""

    def __init__(self, size: int):
        self.size = size
        self.s = size / 32
        self.fine = size >= 24        # room for inner outlines and small details
        self.rgba = np.zeros((size, size, 4), np.uint8)
        self.yy, self.xx = _grid(size)

    def px(self, v: float) -> int:
        """A design length (32-px grid) in pixels."""
        return _rnd(v * self.s)

    def thick(self, v: float) -> int:
        """A design thickness in pixels, never thinner than one pixel."""
        return max(1, self.px(v))

    def empty(self) -> np.ndarray:
        return np.zeros((self.size, self.size), bool)

    # --- shapes (all coordinates in pixels, inclusive) ---
    def rect(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        m = self.empty()
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, self.size - 1), min(y1, self.size - 1)
        if x0 <= x1 and y0 <= y1:
            m[y0:y1 + 1, x0:x1 + 1] = True
        return m

    def rrect(self, x0: int, y0: int, x1: int, y1: int, r: float) -> np.ndarray:
        """Rectangle with corners rounded by radius `r` pixels (r=1 drops the corner pixel)."""
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
        dx = np.abs(self.xx - cx)
        dy = np.abs(self.yy - cy)
        ex = np.maximum(0, dx - (hw - r))
        ey = np.maximum(0, dy - (hh - r))
        return (dx <= hw) & (dy <= hh) & (ex * ex + ey * ey <= r * r + 0.01)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        return ((self.xx - cx) / max(rx, 0.5)) ** 2 + ((self.yy - cy) / max(ry, 0.5)) ** 2 <= 1.0

    def line(self, p: tuple[int, int], q: tuple[int, int], width: int, mirror: bool = False) -> np.ndarray:
        """A `width`-px stroke from p to q: a DDA line stamped with a square brush. For even
        widths the brush leans right/down; `mirror` makes it lean left so a character's left
        limbs mirror its right ones exactly in the front view."""
        (x0, y0), (x1, y1) = p, q
        n = max(abs(x1 - x0), abs(y1 - y0), 1)
        t = np.arange(n + 1) / n
        xs = np.floor(x0 + (x1 - x0) * t + 0.5).astype(int)
        ys = np.floor(y0 + (y1 - y0) * t + 0.5).astype(int)
        bx, by = _brush(width, mirror)
        X = (xs[:, None] + bx[None, :]).ravel()
        Y = (ys[:, None] + by[None, :]).ravel()
        ok = (X >= 0) & (X < self.size) & (Y >= 0) & (Y < self.size)
        m = self.empty()
        m[Y[ok], X[ok]] = True
        return m

    def poly(self, pts: list[tuple[float, float]]) -> np.ndarray:
        """Convex polygon: pixels whose centre lies inside (or within 0.3 px of) every edge."""
        m = np.ones((self.size, self.size), bool)
        area = sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]))
        sign = 1.0 if area > 0 else -1.0
        for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
            ex, ey = x1 - x0, y1 - y0
            length = math.hypot(ex, ey)
            if length == 0:
                continue
            cross = (ex * (self.yy - y0) - ey * (self.xx - x0)) * sign / length
            m &= cross >= -0.3
        return m

    # --- painting ---
    def fill(self, mask: np.ndarray, color: Rgb) -> None:
        self.rgba[mask] = (*color, 255)

    def outline_part(self, mask: np.ndarray) -> None:
        """A dark ring around one part where it lies over what is already drawn, so a limb or
        weapon in front of the body reads as a separate shape (classic sprite "inner lines").
        Over empty background the silhouette outline does the job later. Skipped on tiny
        sprites, where a ring would swallow the part it surrounds."""
        if self.fine:
            self.fill(_grow(mask) & ~mask & (self.rgba[..., 3] > 0), _OUTLINE)

    def outline(self) -> None:
        """The silhouette outline: every empty pixel touching the body becomes dark."""
        solid = self.rgba[..., 3] > 0
        self.fill(_grow(solid) & ~solid, _OUTLINE)


@lru_cache(maxsize=16)
def _brush(width: int, mirror: bool) -> tuple[np.ndarray, np.ndarray]:
    """Pixel offsets (x, y) of a square `width`-px brush, as flat arrays."""
    x0, x1 = _span(0, width, mirror)
    y0, y1 = _span(0, width, False)
    bx, by = np.meshgrid(np.arange(x0, x1 + 1), np.arange(y0, y1 + 1))
    return bx.ravel(), by.ravel()


def _grow(m: np.ndarray) -> np.ndarray:
    """4-neighbour dilation: a rounder outline than 8-neighbour, like hand-drawn sprites."""
    g = m.copy()
    g[1:] |= m[:-1]
    g[:-1] |= m[1:]
    g[:, 1:] |= m[:, :-1]
    g[:, :-1] |= m[:, 1:]
    return g


# ----------------------------------------------------------------------------------------
# Bodies and poses. Angles are in radians in the character's side plane, measured from
# straight DOWN, positive = forward (towards where the character faces): a hanging arm is 0,
# an arm pointing forward is pi/2, an arm raised overhead is pi.

@dataclass(frozen=True)
class _Body:
    """Proportions of an archetype, in design pixels (32-px grid)."""
    thigh: float = 3.0
    shin: float = 3.0
    torso: float = 5.0             # hip centre to neck
    upper: float = 2.5             # shoulder to elbow
    fore: float = 2.5              # elbow to wrist
    hip: float = 1.5               # sideways offset of each hip from the centre (front view)
    shoulder: float = 4.5          # sideways offset of each shoulder (front view)
    arm_w: float = 2.0             # limb thickness
    leg_w: float = 2.0
    chest_side: tuple[float, float] = (5.0, 5.0)     # torso width at shoulders / hips, side view
    chest_front: tuple[float, float] = (3.0, 3.0)    # torso half-width at shoulders / hips, front view
    head_w: float = 4.0            # head half-width
    head_h: float = 8.0            # head height (rows above and including the neck row)


_BODIES = {
    "knight": _Body(chest_side=(6.0, 5.0)),
    "mage": _Body(chest_side=(5.0, 5.0), chest_front=(2.5, 3.0), shoulder=4.0),
    "rogue": _Body(chest_side=(4.0, 4.0), chest_front=(2.5, 2.0), shoulder=4.0, thigh=3.2, shin=3.1),
    "skeleton": _Body(arm_w=1.0, leg_w=1.0, chest_side=(4.0, 3.0), chest_front=(2.5, 1.5), shoulder=3.5,
                      head_w=3.0, head_h=7.0, upper=2.8, fore=2.8, thigh=3.2, shin=3.2),
    "robot": _Body(chest_side=(7.0, 6.0), chest_front=(3.5, 3.0), shoulder=5.0, hip=2.0, head_h=7.0,
                   thigh=2.8, shin=2.8),
}


@dataclass
class _Pose:
    """Joint angles and body offsets of one frame (right limb first in each pair)."""
    thigh: tuple[float, float] = (0.0, 0.0)
    knee: tuple[float, float] = (0.1, 0.1)        # bend: shin angle = thigh - knee
    shoulder: tuple[float, float] = (0.1, -0.1)
    elbow: tuple[float, float] = (0.3, 0.3)       # bend: forearm angle = shoulder + elbow
    lean: float = 0.0                             # torso tilt forward
    lift: float = 0.0                             # lowest foot above the ground (design px)
    rise: float = 0.0                             # airborne: hips this far above standing height
    chest_drop: float = 0.0                       # idle breathing: upper body lowered
    head_drop: float = 0.0                        # head lowered (lags the chest by a frame)
    spread: tuple[float, float] = (0.0, 0.0)      # hands held out sideways (front view only)
    step: tuple[float, float] = (0.0, 0.0)        # feet lifted off the ground (front view only)
    lunge: float = 0.0                            # body shifted forward (attacks)
    weapon: float | None = None                   # held weapon's angle (from down); None = rigid in the fist
    cape: float = 1.0                             # how far the cape blows back
    effect: str = ""                              # "slash" or "spark" drawn over the frame


def _attack_style(spec: CharacterSpec) -> str:
    """What an attack looks like: the accessory decides; unarmed mages cast from the hand,
    unarmed rogues stab with a dagger, everyone else punches."""
    if spec.accessory == "sword":
        return "slash"
    if spec.accessory == "staff":
        return "cast"
    if spec.accessory == "shield":
        return "bash"
    return {"mage": "spell", "rogue": "stab"}.get(spec.archetype, "punch")


# Attack keyframes: (shoulder, elbow, weapon, lunge, lean, effect). The acting arm is the right
# one (the near arm when facing right) except for the shield bash, which uses the shield arm.
_ATTACKS = {
    "slash": (((3.7, 0.5), 3.9, 0.0, -0.1, ""), ((1.6, 0.1), 1.75, 0.5, 0.2, "slash"),
              ((0.8, 0.2), 0.9, 0.5, 0.25, ""), ((0.4, 0.9), 2.4, 0.0, 0.05, "")),
    "cast": (((2.5, 0.3), math.pi, 0.0, -0.1, ""), ((1.5, 0.1), 2.6, 1.0, 0.15, "spark"),
             ((1.4, 0.1), 2.6, 1.0, 0.15, "spark2"), ((0.5, 0.9), math.pi, 0.0, 0.0, "")),
    "bash": (((0.1, 1.4), None, -0.5, -0.1, ""), ((1.4, 0.1), None, 1.5, 0.25, ""),
             ((1.1, 0.6), None, 1.0, 0.1, ""), ((0.6, 1.0), None, 0.5, 0.05, "")),
    "punch": (((-0.5, 1.9), None, -0.5, -0.1, ""), ((1.55, 0.0), None, 1.5, 0.2, ""),
              ((1.2, 0.5), None, 1.0, 0.1, ""), ((0.5, 1.3), None, 0.5, 0.05, "")),
    "spell": (((-0.4, 1.6), None, -0.5, -0.1, ""), ((1.55, 0.0), None, 1.0, 0.15, "spark"),
              ((1.5, 0.05), None, 1.0, 0.15, "spark2"), ((0.4, 1.2), None, 0.0, 0.0, "")),
    "stab": (((-0.6, 1.9), None, -0.5, -0.1, ""), ((1.5, 0.0), None, 2.0, 0.25, ""),
             ((1.2, 0.5), None, 1.5, 0.15, ""), ((0.5, 1.3), None, 0.5, 0.05, "")),
}
# Seen from the front a thrust towards the viewer is invisible, so the striking hand also
# sweeps outwards: tucked in for the wind-up, far out on the hit, then back.
_ATTACK_SWEEP = (-0.5, 2.0, 1.0, 0.0)
# Where a carried item rests: (shoulder, elbow) of the arm holding it.
# A sword is held low in front with the blade up at 45 degrees (a clean pixel diagonal that
# stays clear of the body).
_CARRY = {"sword": (0.3, 0.5), "staff": (0.35, 0.9), "shield": (0.35, 1.3), "dagger": (0.2, 1.0)}
# How a weapon sits in the fist, relative to the forearm (sword across it, dagger along it).
_GRIP = {"sword": 1.55, "dagger": 0.6}


def _pose(spec: CharacterSpec, action: str, f: int) -> _Pose:
    """The pose of frame `f` of an action. Cycles are built from sines of the phase so that
    the last frame flows into the first; keyframed actions (jump, attack) end where they start."""
    n = ACTION_FRAMES[action]
    p = 2 * math.pi * f / n
    sn, cs = math.sin(p), math.cos(p)
    if action == "idle":
        # Breathing: the chest sinks a pixel and the head follows a frame later.
        pose = _Pose(chest_drop=(0, 1, 1, 0)[f], head_drop=(0, 0, 1, 1)[f], cape=1.0 + 0.5 * (f // 2),
                     shoulder=(0.1, -0.1), elbow=(0.3 + 0.2 * (f in (1, 2)), 0.3 + 0.2 * (f in (1, 2))))
    elif action == "walk":
        # The swinging leg bends its knee while it passes under the body (a pulse peaking in one
        # frame, so seen from the front each foot visibly lifts); arms counter-swing.
        pose = _Pose(thigh=(0.5 * sn, -0.5 * sn), knee=(0.15 + 1.1 * max(0, cs) ** 2, 0.15 + 1.1 * max(0, -cs) ** 2),
                     shoulder=(-0.5 * sn, 0.5 * sn), elbow=(0.35, 0.35), lean=0.05, cape=2.0 + abs(sn),
                     step=(3.0 * max(0, math.cos(p + math.pi / 4)), 3.0 * max(0, -math.cos(p + math.pi / 4))))
    elif action == "run":
        pose = _Pose(thigh=(0.2 + 0.75 * sn, 0.2 - 0.75 * sn),
                     knee=(0.3 + 1.5 * max(0, cs), 0.3 + 1.5 * max(0, -cs)),
                     shoulder=(-0.9 * sn, 0.9 * sn), elbow=(1.5, 1.5), lean=0.25, lift=1.3 * abs(sn),
                     cape=3.5 + abs(sn), step=(4.0 * max(0, cs), 4.0 * max(0, -cs)))
    elif action == "jump":
        # crouch, take off, rise, peak (knees tucked), fall, land
        thigh, knee, arm, elbow, rise, lean = (
            (0.9, 1.7, -0.6, 0.3, 0.0, 0.3), (0.15, 0.2, 2.7, 0.2, 1.0, 0.0), (0.6, 1.0, 2.9, 0.2, 2.5, 0.0),
            (1.1, 1.9, 2.3, 0.4, 3.5, 0.0), (0.4, 0.5, 1.6, 0.4, 1.5, 0.0), (0.7, 1.2, 0.5, 0.7, 0.0, 0.2))[f]
        pose = _Pose(thigh=(thigh + 0.1, thigh - 0.1), knee=(knee, knee), shoulder=(arm, arm - 0.2),
                     elbow=(elbow, elbow), rise=rise, lean=lean, spread=(1.5 * (rise > 0),) * 2,
                     cape=(0.5, 1.0, 0.5, 2.0, 3.0, 1.5)[f])
    else:
        style = _attack_style(spec)
        arm, weapon, lunge, lean, effect = _ATTACKS[style][f]
        pose = _Pose(thigh=(0.35 + 0.05 * lunge, -0.35 - 0.05 * lunge), knee=(0.3, 0.2), lunge=lunge, lean=lean,
                     weapon=weapon, effect=effect, cape=1.5 + lunge)
        out = _ATTACK_SWEEP[f]
        if style == "bash":      # the shield arm strikes, the other hangs back
            pose.shoulder, pose.elbow, pose.spread = (-0.3, arm[0]), (0.6, arm[1]), (0.0, out)
        else:
            guard = _CARRY["shield"] if spec.accessory == "shield" else (0.5, 1.6)
            pose.shoulder, pose.elbow, pose.spread = (arm[0], guard[0]), (arm[1], guard[1]), (out, 0.0)
        return pose
    # Carried items keep the holding arm near its resting pose, with a damped swing.
    held = _held(spec)
    if held:
        (sh, el), swing = _CARRY[held], pose.shoulder[0] - 0.1
        pose.shoulder = (sh + 0.35 * swing, pose.shoulder[1])
        pose.elbow = (el, pose.elbow[1])
        if held == "staff":
            pose.weapon = math.pi - 0.1 * swing
    if spec.accessory == "shield":
        sh, el = _CARRY["shield"]
        pose.shoulder = (pose.shoulder[0], sh + 0.3 * (pose.shoulder[1] + 0.1))
        pose.elbow = (pose.elbow[0], el)
    return pose


@dataclass
class _Rig:
    """A frame's skeleton in pixels: joints by name plus the anchors the drawing needs."""
    joints: dict[str, tuple[int, int]]
    head: tuple[int, int]          # neck point the head sits on (x centre, bottom row)
    hip: tuple[int, int]           # hip centre
    foot_h: int                    # rows a foot occupies below its ankle joint (inclusive)
    weapon: float                  # angle of the held weapon (from down, + forward)


_FRONT_TILT = 0.35     # screen rows per design pixel of depth towards the viewer (front view)
_ARM_FLARE = 0.3       # sideways drift of a hand per design pixel it reaches forward or back


def _ground(cv: _Canvas) -> int:
    """Bottom row of the feet: leaves room for the outline and one empty row below it."""
    return cv.size - 2 - cv.px(1.0)


def _skeleton(spec: CharacterSpec, pose: _Pose, view: str, cv: _Canvas) -> _Rig:
    """Forward kinematics in 3-D (forward, sideways, down) around the hip centre, projected onto
    the side plane (view "side", facing right) or the front plane (view "front"). On the ground
    the lowest foot stands on the ground line (that alone gives walks their body bob); in a
    jump the hips rise above their standing height and the tucked feet follow."""
    b = _BODIES[spec.archetype]
    thigh, shin = b.thigh + 0.5 * spec.height, b.shin + 0.5 * spec.height
    neck = (pose.lunge + b.torso * math.sin(pose.lean), 0.0, -b.torso * math.cos(pose.lean) + pose.chest_drop)
    pts: dict[str, tuple[float, float, float]] = {"neck": neck}
    forearm = {}
    for side, sign, i in (("r", -1, 0), ("l", 1, 1)):
        hip = (pose.lunge, sign * b.hip, 0.0)
        a, k = pose.thigh[i], pose.thigh[i] - pose.knee[i]
        knee = (hip[0] + thigh * math.sin(a), hip[1], thigh * math.cos(a))
        ankle = (knee[0] + shin * math.sin(k), hip[1], knee[2] + shin * math.cos(k))
        sh = (neck[0], sign * b.shoulder, neck[2] + 1.0)
        a, forearm[side] = pose.shoulder[i], pose.shoulder[i] + pose.elbow[i]
        # Arms swing in the side plane; reaching out (forward or back) also carries the hand a
        # little outwards, which is what shows the swing in the front view.
        ex, wx = b.upper * math.sin(a), b.upper * math.sin(a) + b.fore * math.sin(forearm[side])
        out = pose.spread[i]
        elbow = (sh[0] + ex, sh[1] + sign * (0.5 * out + _ARM_FLARE * abs(ex)), sh[2] + b.upper * math.cos(a))
        wrist = (sh[0] + wx, sh[1] + sign * (out + _ARM_FLARE * abs(wx)), elbow[2] + b.fore * math.cos(forearm[side]))
        pts.update({f"{side}_hip": hip, f"{side}_knee": knee, f"{side}_ankle": ankle,
                    f"{side}_shoulder": sh, f"{side}_elbow": elbow, f"{side}_wrist": wrist})
    foot_h = cv.thick(2.0)
    height = thigh + shin + pose.rise if pose.rise else max(pts["r_ankle"][2], pts["l_ankle"][2]) + pose.lift
    hip_y = _ground(cv) - (foot_h - 1) - _rnd(height * cv.s)
    pts["hip"] = (pose.lunge, 0.0, 0.0)
    if view == "side":
        cx = cv.px(15.0)
        joints = {name: (cx + _rnd(f * cv.s), hip_y + _rnd(d * cv.s)) for name, (f, _, d) in pts.items()}
    else:
        # Seen from the front by a camera tilted slightly down, as in top-down games: whatever
        # is farther from the viewer sits a little higher, so a foot stepping back (or forward)
        # shows. Depth counts from the front-most foot, which stays on the ground line.
        cx = cv.px(16.0)
        front = max(0.0, pts["r_ankle"][0], pts["l_ankle"][0])
        joints = {name: (cx + _rnd(l * cv.s), hip_y + _rnd((d - _FRONT_TILT * (front - f)) * cv.s))
                  for name, (f, l, d) in pts.items()}
        # Head-on, a knee bend hardly shows; what shows is each foot leaving the ground in turn.
        # So unless jumping, the feet are placed by the pose's explicit steps.
        if not pose.rise:
            sole = _ground(cv) - (foot_h - 1)
            for side, i in (("r", 0), ("l", 1)):
                ax, ay = joints[f"{side}_ankle"][0], sole - _rnd((pose.step[i] + pose.lift) * cv.s)
                kx, ky = joints[f"{side}_knee"]
                joints[f"{side}_ankle"] = (ax, ay)
                joints[f"{side}_knee"] = (kx, max(min(ky, ay - 1), joints[f"{side}_hip"][1]))
    hip = joints.pop("hip")
    nx, ny = joints["neck"]
    head = (nx, ny + cv.px(pose.head_drop) - cv.px(pose.chest_drop))
    weapon = pose.weapon
    if weapon is None:
        weapon = forearm["r"] + _GRIP.get(_held(spec), 0.0)
    return _Rig(joints, head, hip, foot_h, weapon)


# ----------------------------------------------------------------------------------------
# Drawing a humanoid from its rig. Side views face right and the near side is the character's
# right: far limbs are drawn first and darker, the near arm and its weapon last, each with its
# own outline so they read over the body.

@dataclass(frozen=True)
class _Look:
    """The colours of one character's body parts ((near, far) pairs for limbs)."""
    body: tuple[Rgb, Rgb, Rgb]     # torso ramp
    arm: tuple[Rgb, Rgb]
    leg: tuple[Rgb, Rgb]
    hand: Rgb
    foot: tuple[Rgb, Rgb]
    trim: Rgb                      # belt, loincloth


def _look(spec: CharacterSpec) -> _Look:
    """Palette colour goes where it shows most (tabard, robe, tunic, robot chest, loincloth);
    steel, bone, leather and skin fill in the rest."""
    pal = _PALETTE_RAMPS[spec.palette]
    skin = _SKINS[spec.skin]
    boots = (_LEATHER[0], _LEATHER[1])
    if spec.archetype in ("knight", "robot"):
        steel = (_STEEL[1], _STEEL[2])
        return _Look(pal, steel, steel, _STEEL[0], (_STEEL[2], _OUTLINE), _LEATHER[1] if spec.archetype == "knight" else _STEEL[2])
    if spec.archetype == "mage":
        return _Look(pal, (pal[1], pal[2]), (_LEATHER[1], _LEATHER[1]), skin, boots, _GOLD_TRIM)
    if spec.archetype == "rogue":
        return _Look(pal, (pal[1], pal[2]), _TROUSERS, skin, boots, _LEATHER[1])
    return _Look(_BONE, (_BONE[0], _BONE[2]), (_BONE[0], _BONE[2]), _BONE[0], (_BONE[1], _BONE[2]), pal[1])


def _span(x: int, w: int, mirror: bool) -> tuple[int, int]:
    """First and last column of a `w`-px brush centred on column x (see `_Canvas.line`)."""
    lo = -(w // 2) if mirror else -((w - 1) // 2)
    return x + lo, x + lo + w - 1


def _draw_leg(cv: _Canvas, spec: CharacterSpec, rig: _Rig, side: str, look: _Look, view: str, far: bool) -> None:
    """Thigh and shin along the joints, and a boot under the ankle (pointing forward in the
    side view)."""
    w = cv.thick(_BODIES[spec.archetype].leg_w)
    j = rig.joints
    mirror = view == "front" and side == "l"
    leg = cv.line(j[f"{side}_hip"], j[f"{side}_knee"], w, mirror) | cv.line(j[f"{side}_knee"], j[f"{side}_ankle"], w, mirror)
    cv.fill(leg, look.leg[far])
    ax, ay = j[f"{side}_ankle"]
    x0, x1 = _span(ax, w, mirror)
    if view == "side":
        x1 = ax + cv.px(2.0)                       # boots point forward
    else:
        x0, x1 = x0 - cv.px(0.5), x1 + cv.px(0.5)
    cv.fill(cv.rect(x0, ay, x1, ay + rig.foot_h - 1), look.foot[far])


def _draw_arm(cv: _Canvas, spec: CharacterSpec, rig: _Rig, side: str, look: _Look, view: str, far: bool) -> None:
    """Upper arm and forearm along the joints, a hand at the wrist, shoulder guards for knights
    and robots. Arms in front of the body get their own outline."""
    b = _BODIES[spec.archetype]
    w = cv.thick(b.arm_w)
    j = rig.joints
    mirror = view == "front" and side == "l"
    arm = cv.line(j[f"{side}_shoulder"], j[f"{side}_elbow"], w, mirror) | cv.line(j[f"{side}_elbow"], j[f"{side}_wrist"], w, mirror)
    hx, hy = j[f"{side}_wrist"]
    x0, x1 = _span(hx, w, mirror)
    grow = 1 if w == 1 else 0                      # thin (bony) arms still get a visible hand
    hand = cv.rect(x0 - grow, hy - grow, x1 + grow * (view == "front"), hy + (w - 1) // 2)
    pad = cv.empty()
    if spec.archetype in ("knight", "robot"):      # round shoulder guard over the top of the arm
        sx, sy = j[f"{side}_shoulder"]
        pad = cv.ellipse(sx + (0.5 if not mirror and view == "front" else 0), sy + 0.5, 1.6 * cv.s, 1.4 * cv.s)
    if not far:
        cv.outline_part(arm | hand | pad)
    cv.fill(arm, look.arm[far])
    cv.fill(hand, look.hand)
    ramp = _PALETTE_RAMPS[spec.palette] if spec.archetype == "knight" else _STEEL
    cv.fill(pad, ramp[2] if far else ramp[1])
    cv.fill(pad & (cv.yy < j[f"{side}_shoulder"][1]), ramp[2] if far else ramp[0])


def _torso_quad(cv: _Canvas, rig: _Rig, b: _Body, view: str) -> list[tuple[float, float]]:
    """Torso corners around the neck-to-hip axis (leaning with it in the side view)."""
    (nx, ny), (hx, hy) = rig.joints["neck"], rig.hip
    if view == "side":
        wt, wb = cv.s * b.chest_side[0] / 2, cv.s * b.chest_side[1] / 2
        dx, dy = hx - nx, hy - ny
        n = math.hypot(dx, dy) or 1.0
        ux, uy = -dy / n, dx / n                   # unit normal, pointing backwards
        return [(nx - ux * wt + 0.5, ny - uy * wt), (nx + ux * wt + 0.5, ny + uy * wt),
                (hx + ux * wb + 0.5, hy + uy * wb), (hx - ux * wb + 0.5, hy - uy * wb)]
    wt, wb = cv.px(b.chest_front[0]), cv.px(b.chest_front[1])
    return [(nx - wt, ny), (nx + wt, ny), (hx + wb, hy), (hx - wb, hy)]


def _draw_torso(cv: _Canvas, spec: CharacterSpec, rig: _Rig, look: _Look, view: str) -> None:
    """The torso and what identifies the archetype below the head: ribcage, robe, tabard,
    tunic, chest light."""
    b = _BODIES[spec.archetype]
    (nx, ny), (hx, hy) = rig.joints["neck"], rig.hip
    quad = _torso_quad(cv, rig, b, view)
    body = cv.poly(quad)
    one = cv.thick(1.0)
    rows, cols = cv.yy, cv.xx
    low_x0, low_x1 = int(min(quad[2][0], quad[3][0])), int(max(quad[2][0], quad[3][0]))
    if spec.archetype == "skeleton":
        # ribcage with dark gaps, a spine down to the pelvis, a ragged palette loincloth
        cage = body & (rows <= ny + cv.px(3.5))
        spine = cv.line((nx, ny), (hx, hy), one)
        cv.fill(spine | cage, _BONE[1])
        cv.fill(cage & ~spine & (rows > ny) & (((rows - ny) // one) % 2 == 1), _OUTLINE)
        cv.fill(cv.rect(low_x0, hy - one + 1, low_x1, hy), _BONE[0])
        cv.fill(cv.poly([(low_x0, hy + one), (low_x1, hy + one), ((low_x0 + low_x1) / 2, hy + cv.px(3.5))]), look.trim)
        return
    if spec.archetype == "mage":
        # a long robe whose hem follows the feet, so walking moves it and a step lifts it
        j = rig.joints
        w, flare = cv.thick(b.leg_w), cv.px(1.5)
        lift = cv.px(0.5)
        if view == "side":       # quad: front-top, back-top, ...
            back, fore = sorted((j["r_ankle"], j["l_ankle"]))
            hem = [(min(back[0] - flare, quad[1][0]), back[1] - lift), (max(fore[0] + flare + w - 1, quad[0][0]), fore[1] - lift)]
        else:                    # quad: left-top, right-top, ...; the right foot is on the left
            hem = [(j["l_ankle"][0] + flare, j["l_ankle"][1] - lift), (j["r_ankle"][0] - flare, j["r_ankle"][1] - lift)]
        robe = cv.poly([quad[0], quad[1], *hem])
        hem_y = max(hem[0][1], hem[1][1])
        robe |= body
        cv.fill(robe, look.body[1])
        if view == "side":
            cv.fill(robe & (cols < (nx + hx) / 2 - cv.px(1.0)), look.body[2])
        else:
            cv.fill(robe & (cols >= nx - (one - 1) // 2) & (cols <= nx + one // 2) & (rows > ny + cv.px(1.0)), look.body[0])
        cv.fill(robe & (rows > hem_y - one), look.body[0])                      # hem trim
        cv.fill(robe & (rows > hy - one) & (rows <= hy), look.trim)             # belt
        return
    cv.fill(body, look.body[1])
    if view == "side":
        cv.fill(body & (cols < (nx + hx) / 2 - cv.px(1.0)), look.body[2])     # back in shadow
    belt = body & (rows > hy - one) & (rows <= hy)
    if spec.archetype == "rogue":
        cv.fill(body & (rows < ny + one), look.body[2])                         # scarf
    if spec.archetype in ("rogue", "knight"):
        cv.fill(cv.rect(low_x0, hy, low_x1, hy + cv.px(1.5)), look.body[1])     # tunic / tabard hem
    if spec.archetype == "knight" and view == "front":                          # cross on the tabard
        arm_len = cv.px(1.0)
        cy = ny + cv.px(2.5)
        cv.fill(cv.rect(nx, cy - arm_len, nx, cy + arm_len) | cv.rect(nx - arm_len, cy, nx + arm_len, cy), look.body[0])
    if spec.archetype == "robot":                                               # chest light
        lx = nx + (cv.px(1.0) if view == "side" else 0)
        cv.fill(cv.rect(lx - cv.px(0.5), ny + cv.px(1.5), lx + cv.px(0.5), ny + cv.px(2.5)), look.body[0])
    cv.fill(belt, look.trim)


def _head_kind(spec: CharacterSpec) -> str:
    """A hat replaces helmets and hoods (it needs a bare head); skulls and robot heads keep theirs."""
    if spec.archetype in ("skeleton", "robot"):
        return spec.archetype
    if spec.accessory == "hat":
        return "bare"
    return {"knight": "helmet", "mage": "hood", "rogue": "hood"}[spec.archetype]


def _draw_head(cv: _Canvas, spec: CharacterSpec, rig: _Rig, view: str) -> dict[str, tuple[int, int]]:
    """Draw the head on the neck; return where its face keypoints are (eyes, nose, ears)."""
    b = _BODIES[spec.archetype]
    pal = _PALETTE_RAMPS[spec.palette]
    hx, y1 = rig.head
    x0, x1 = hx - cv.px(b.head_w), hx + cv.px(b.head_w)
    y0 = y1 - cv.thick(b.head_h) + 1
    side = view == "side"
    rows, cols = cv.yy, cv.xx
    one = cv.thick(1.0)

    def row(v: float) -> int:     # v design px below the top of the head
        return y0 + cv.px(v)

    def col(u: float) -> int:     # u design px right of the head's centre
        return hx + cv.px(u)

    eye_y = row(0.5 * b.head_h)
    apart = 1.0 if spec.archetype == "skeleton" else 2.0
    eyes = [col(b.head_w - 2)] if side else [col(-apart), col(apart)]
    face = {"nose": (x1 if side else hx, row(0.65 * b.head_h)),
            "r_eye": (eyes[0], eye_y), "l_eye": (min(eyes[0] + one, x1) if side else eyes[1], eye_y),
            "r_ear": (col(-1) if side else x0, eye_y), "l_ear": (col(-1) if side else x1, eye_y)}

    def eye_masks(h: float = 2.0) -> np.ndarray:
        m = cv.empty()
        for k, ex in enumerate(eyes):
            e0, e1 = _span(ex, one, k == 1)
            m |= cv.rect(e0, eye_y, e1, eye_y + cv.thick(h) - 1)
        return m

    kind = _head_kind(spec)
    head = cv.rect(x0, y0, x1, y1) if kind == "robot" else cv.rrect(x0, y0, x1, y1, 1.6 * cv.s)
    if kind == "skeleton":      # the jaw is narrower than the cranium
        jaw_cut = (rows > row(b.head_h - 2.5)) & ((cols < col(-1)) if side else ((cols < col(-2.5)) | (cols > col(2.5))))
        head &= ~jaw_cut
    base = {"helmet": _STEEL[1], "hood": pal[1] if spec.archetype == "mage" else pal[2], "bare": _SKINS[spec.skin],
            "skeleton": _BONE[0], "robot": _STEEL[1]}[kind]
    cv.fill(head, base)
    if side and kind != "bare":
        cv.fill(head & (cols < col(-2)), _STEEL[2] if kind in ("helmet", "robot") else _shade(base))
    if kind == "robot":
        cv.fill(head & (rows < y0 + one), _STEEL[0])

    if kind == "helmet":
        cv.fill(head & (rows == row(1)) & (cols >= col(-2)) & (cols <= col(1)), _STEEL[0])
        slit = head & (rows >= eye_y) & (rows < eye_y + one)
        slit &= (cols >= col(0)) if side else (cols >= col(-3)) & (cols <= col(3))
        if not side:
            slit |= head & (rows >= eye_y) & (rows <= eye_y + cv.px(2.0)) & (np.abs(cols - hx) <= cv.px(0.25))
        cv.fill(slit, _OUTLINE)
        plume = cv.ellipse(col(-1.5) if side else hx, y0 - cv.px(0.5), (2.8 if side else 1.5) * cv.s, 1.8 * cv.s) & (rows < y0 + one)
        cv.fill(plume, pal[1])
        cv.fill(plume & (rows < y0 - cv.px(1.5)), pal[0])
    elif kind == "hood":
        opening = cv.rect(col(-1) if side else col(-3), row(2.5), x1 if side else col(3), y1)
        cv.fill(head & opening, _SKINS[spec.skin])
        cv.fill(eye_masks(), _OUTLINE)
        if spec.archetype == "rogue":   # a dark mask over mouth and nose
            cv.fill(head & opening & (rows > row(5.5)), _MASK)
    elif kind == "bare":
        hair = (rows <= row(1.5)) | ((cols <= col(-1)) & (rows <= row(4.5)) if side else
                                     ((cols <= col(-3)) | (cols >= col(3))) & (rows <= row(3.5)))
        cv.fill(head & hair, _HAIRS[spec.hair])
        cv.fill(eye_masks(), _OUTLINE)
        if spec.archetype == "rogue":
            cv.fill(head & (rows > row(5.5)) & ((cols >= col(-1)) if side else True), _MASK)
    elif kind == "skeleton":
        # deep eye sockets with a glowing pupil, a nose hole, a row of teeth
        if cv.fine:
            sockets = cv.empty()
            for k, ex in enumerate(eyes):
                e0, e1 = _span(ex, one, k == 1)
                sockets |= cv.rect(e0 - one, eye_y - one, e1 + (one if side else 0), eye_y) if k == 0 else \
                    cv.rect(e0, eye_y - one, e1 + one, eye_y)
            cv.fill(sockets, _OUTLINE)
            cv.fill(eye_masks(1.0), pal[0])
            nose = (x1, eye_y + one) if side else (hx, eye_y + one)
            cv.fill(cv.rect(*nose, *nose), _OUTLINE)
            teeth = head & (rows == y1 - one) & ((cols - x0) % 2 == 1) & ((cols >= col(0)) if side else True)
            cv.fill(teeth, _OUTLINE)
        else:                    # a tiny skull only has room for dark eyes
            cv.fill(eye_masks(1.0), _OUTLINE)
    else:
        # robot: a glowing visor, ear discs, an antenna
        band = one if cv.fine else 0
        visor = cv.rect(col(0) if side else col(-4), eye_y - band, x1 if side else col(4), eye_y + band)
        cv.fill(head & visor, _OUTLINE)
        glow = cv.empty()
        for k, ex in enumerate(eyes):
            e0, e1 = _span(ex, one, k == 1)
            glow |= cv.rect(e0 - one, eye_y, e1 + one, eye_y + one - 1) if side else \
                cv.rect(e0 - (k == 0) * one, eye_y, e1 + (k == 1) * one, eye_y + one - 1)
        cv.fill(glow, pal[0])
        if cv.fine:
            ears = cv.ellipse(col(-2), eye_y, 1.5 * cv.s, 1.5 * cv.s) if side else \
                cv.rect(x0 - one, eye_y - one, x0, eye_y + one) | cv.rect(x1, eye_y - one, x1 + one, eye_y + one)
            cv.fill(ears, pal[1])
        ax = col(-1) if side else hx
        cv.fill(cv.line((ax, y0), (ax, y0 - cv.px(2.5)), one), _STEEL[2])
        cv.fill(cv.rect(ax - one // 2, y0 - cv.px(3.5), ax + one // 2, y0 - cv.px(2.5)), pal[0])

    if spec.archetype == "mage" and spec.hair % 2 == 1:       # half the mages wear a beard
        top = row(0.7 * b.head_h)
        beard = cv.poly([(col(-0.5), top), (x1 + 0.3, top), (x1 - cv.px(1.0), y1 + cv.px(3.0))] if side else
                        [(col(-3), top), (col(3), top), (hx, y1 + cv.px(3.5))])
        cv.fill(beard, _HAIRS[spec.hair])
    if spec.accessory == "hat":
        _draw_hat(cv, x0, x1, y0, side, pal)
    return face


def _draw_hat(cv: _Canvas, x0: int, x1: int, top: int, side: bool, pal: tuple[Rgb, Rgb, Rgb], tall: float = 3.0) -> None:
    """A pointed wizard hat: a brim over the top of the head and a cone bending backwards,
    outlined so it stands apart from whatever it sits on."""
    one = cv.thick(1.0)
    cx = (x0 + x1) / 2
    brim_y = top + cv.px(1.0)
    tip = (cx - (cv.px(2.0) if side else 0), top - cv.px(tall))
    cone = cv.poly([(x0 + cv.px(1.0), brim_y), (x1 - cv.px(1.0), brim_y), tip])
    brim = cv.rect(x0 - cv.px(1.0), brim_y, x1 + cv.px(1.0 + side), brim_y + one - 1)
    cv.outline_part(cone | brim)
    cv.fill(cone, pal[1])
    cv.fill(cone & (cv.xx < cx - cv.px(1.0)), pal[2])
    cv.fill(cone & (cv.yy < brim_y) & (cv.yy >= brim_y - one), _GOLD_TRIM)
    cv.fill(brim, pal[2])


def _shade(c: Rgb) -> Rgb:
    """A darker, slightly cooler version of a colour, for surfaces turned away from the light."""
    return (int(c[0] * 0.68), int(c[1] * 0.68), int(min(255, c[2] * 0.78)))


def _draw_cape(cv: _Canvas, spec: CharacterSpec, rig: _Rig, pose: _Pose, view: str) -> None:
    """Hangs from the shoulders to the knees and blows back with speed."""
    pal = _PALETTE_RAMPS[spec.palette]
    (nx, ny), (hx, hy) = rig.joints["neck"], rig.hip
    b = _BODIES[spec.archetype]
    if view == "side":
        back = cv.px(b.chest_side[0] / 2)
        cape = cv.poly([(nx - back + cv.px(1.0), ny), (nx - back, ny + cv.px(1.0)),
                        (hx - back - cv.px(pose.cape), hy + cv.px(4.0)), (hx - back + cv.px(1.5), hy + cv.px(4.0))])
    else:
        top, bottom = cv.px(b.chest_front[0] + 1), cv.px(b.chest_front[0] + 2 + 0.3 * pose.cape)
        cape = cv.poly([(nx - top, ny), (nx + top, ny), (hx + bottom, hy + cv.px(4.0)), (hx - bottom, hy + cv.px(4.0))])
    cv.fill(cape, pal[2])
    cv.fill(cape & (cv.yy >= hy + cv.px(4.0) - cv.thick(1.0) + 1), pal[1])


def _held(spec: CharacterSpec) -> str:
    """The item in the right hand: the accessory's weapon, or a rogue's dagger."""
    if spec.accessory in ("sword", "staff"):
        return spec.accessory
    return "dagger" if spec.archetype == "rogue" else ""


def _weapon_axis(angle: float, view: str) -> tuple[float, float]:
    """Direction of a held weapon on screen. Seen from the front, "forward" is foreshortened
    and drawn outwards (the right hand is on the screen's left)."""
    fwd, down = math.sin(angle), math.cos(angle)
    return (fwd, down) if view == "side" else (-0.8 * fwd, down)


def _along(cv: _Canvas, p: tuple[int, int], axis: tuple[float, float], d: float) -> tuple[int, int]:
    return p[0] + _rnd(axis[0] * d * cv.s), p[1] + _rnd(axis[1] * d * cv.s)


def _draw_weapon(cv: _Canvas, spec: CharacterSpec, rig: _Rig, view: str) -> tuple[int, int]:
    """Draw the right hand's item; return the point where its magic comes out (staff tip)."""
    held = _held(spec)
    wrist = rig.joints["r_wrist"]
    axis = _weapon_axis(rig.weapon, view)
    one = cv.thick(1.0)
    pal = _PALETTE_RAMPS[spec.palette]
    if held == "sword":
        guard_c = _along(cv, wrist, axis, 1.5)
        blade = cv.line(guard_c, _along(cv, wrist, axis, 7.0), one)
        gx, gy = _rnd(-axis[1] * 1.5 * cv.s), _rnd(axis[0] * 1.5 * cv.s)
        guard = cv.line((guard_c[0] - gx, guard_c[1] - gy), (guard_c[0] + gx, guard_c[1] + gy), one)
        pommel = cv.line(wrist, _along(cv, wrist, axis, -1.0), one)
        cv.outline_part(blade | guard | pommel)
        cv.fill(blade, _BLADE)
        cv.fill(guard | pommel, _GOLD_TRIM)
        return _along(cv, wrist, axis, 7.0)
    if held == "staff":
        tip = _along(cv, wrist, axis, 7.0)
        foot = _along(cv, wrist, axis, -5.0)
        shaft = cv.line((foot[0], min(foot[1], _ground(cv))), tip, one)     # a crouch rests it on the floor
        gem = cv.ellipse(tip[0], tip[1], 1.3 * cv.s, 1.3 * cv.s)
        cv.outline_part(shaft | gem)
        cv.fill(shaft, _WOOD)
        cv.fill(gem, pal[0])
        cv.fill(cv.rect(tip[0] - one + 1, tip[1] - one + 1, tip[0], tip[1]), _WHITE)
        return tip
    if held == "dagger":
        blade = cv.line(_along(cv, wrist, axis, 1.0), _along(cv, wrist, axis, 4.0), one)
        cv.outline_part(blade)
        cv.fill(blade, _BLADE)
    return _along(cv, wrist, _weapon_axis(math.pi / 2, view), 3.0)


def _draw_shield(cv: _Canvas, spec: CharacterSpec, rig: _Rig, view: str) -> None:
    """A round-cornered shield strapped to the left forearm, face towards the viewer."""
    pal = _PALETTE_RAMPS[spec.palette]
    wx, wy = rig.joints["l_wrist"]
    cx = wx + (cv.px(1.0) if view == "side" else -cv.px(0.5))
    hw, hh = cv.px(2.0), cv.px(3.0)
    rim = cv.rrect(cx - hw, wy - hh, cx + hw, wy + hh, 1.5 * cv.s)
    one = cv.thick(1.0)
    face = cv.rrect(cx - hw + one, wy - hh + one, cx + hw - one, wy + hh - one, 1.0 * cv.s)
    cv.outline_part(rim)
    cv.fill(rim, _STEEL[1])
    cv.fill(face, pal[1])
    cv.fill(face & (cv.xx < cx), pal[2] if view == "side" else pal[1])
    cv.fill(cv.rect(cx - one // 2, wy - one // 2 - 1, cx + (one - 1) // 2, wy + (one - 1) // 2), _GOLD_TRIM)


def _draw_effect(cv: _Canvas, spec: CharacterSpec, pose: _Pose, rig: _Rig, view: str, source: tuple[int, int]) -> None:
    """Attack effects: a crescent smear behind a sword swing, a sparkle of magic."""
    pal = _PALETTE_RAMPS[spec.palette]
    one = cv.thick(1.0)
    if pose.effect == "slash":
        b = _BODIES[spec.archetype]
        sh = rig.joints["r_shoulder"]
        reach = b.upper + b.fore + 6.0
        for radius, (a0, a1), color in ((reach, (3.6, 1.9), (255, 246, 214)), (reach - 1.5, (3.3, 2.2), _WHITE)):
            pts = [_along(cv, sh, _weapon_axis(a, view), radius) for a in np.linspace(a0, a1, 8)]
            arc = cv.empty()
            for p, q in zip(pts, pts[1:]):
                arc |= cv.line(p, q, one)
            cv.fill(arc, color)
    elif pose.effect in ("spark", "spark2"):
        x, y = source
        big = pose.effect == "spark2"
        arm = cv.px(2.5 if big else 1.5)
        star = cv.rect(x - arm, y, x + one - 1 + arm, y + one - 1) | cv.rect(x, y - arm, x + one - 1, y + one - 1 + arm)
        if big:
            d = cv.px(1.5)
            for sx, sy in ((-d, -d), (d, -d), (-d, d), (d, d)):
                star |= cv.rect(x + sx, y + sy, x + sx + one - 1, y + sy + one - 1)
        cv.fill(star, pal[0])
        cv.fill(cv.rect(x, y, x + one - 1, y + one - 1), _WHITE)


def _draw_humanoid(cv: _Canvas, spec: CharacterSpec, pose: _Pose, rig: _Rig, view: str) -> dict[str, tuple[int, int]]:
    """Paint the body back to front; return the face keypoints."""
    look = _look(spec)
    if spec.accessory == "cape":
        _draw_cape(cv, spec, rig, pose, view)
    if view == "side":
        _draw_arm(cv, spec, rig, "l", look, view, far=True)
        _draw_leg(cv, spec, rig, "l", look, view, far=True)
        _draw_leg(cv, spec, rig, "r", look, view, far=False)
    else:
        _draw_leg(cv, spec, rig, "r", look, view, far=False)
        _draw_leg(cv, spec, rig, "l", look, view, far=False)
    _draw_torso(cv, spec, rig, look, view)
    face = _draw_head(cv, spec, rig, view)
    if view == "side" and spec.accessory == "shield":
        _draw_shield(cv, spec, rig, view)
    source = _draw_weapon(cv, spec, rig, view)
    _draw_arm(cv, spec, rig, "r", look, view, far=False)
    if view == "front":
        _draw_arm(cv, spec, rig, "l", look, view, far=False)
        if spec.accessory == "shield":
            _draw_shield(cv, spec, rig, view)
    _draw_effect(cv, spec, pose, rig, view, source)
    return face


# ----------------------------------------------------------------------------------------
# The slime: no skeleton, a squashing and stretching dome. Its keyframes are
# (half-width, height, lift, lean, shift forward, mouth open) in design pixels.

def _slime_shape(action: str, f: int) -> tuple[float, float, float, float, float, bool]:
    """Squash and stretch stand in for limbs: a slime walks by hopping, winds up by squashing
    and attacks by lunging mouth-first."""
    n = ACTION_FRAMES[action]
    p = 2 * math.pi * f / n
    sn = math.sin(p)
    if action == "idle":
        return ((6.0, 10.0, 0, 0.0, 0, False), (6.5, 9.0, 0, 0.7, 0, False),
                (7.0, 8.0, 0, 0.0, 0, False), (6.5, 9.0, 0, -0.7, 0, False))[f]
    if action in ("walk", "run"):
        # one hop per cycle: stretched going up, rounder coming down, squashed on landing and
        # springing back before the next hop; the top leans into the motion
        hop = 3.0 if action == "walk" else 5.0
        cs = math.cos(p)
        up, down = max(0.0, sn), max(0.0, -sn)
        stretch = 1.5 * cs * up - 3.0 * down + 0.5 * cs * down
        return (6.0 - 0.5 * stretch, 10.0 + stretch, hop * up, (1.0 if action == "walk" else 2.0) * cs, 0, False)
    if action == "jump":
        return ((8.0, 7.0, 0, 0, 0, False), (5.0, 12.0, 1, 0, 0, False), (5.5, 11.0, 5, 0, 0, False),
                (6.0, 10.0, 7, 0, 0, True), (5.5, 11.0, 3, 0, 0, False), (8.5, 6.5, 0, 0, 0, False))[f]
    return ((7.0, 8.5, 0, -1.5, -1, False), (8.0, 8.0, 1, 2.5, 3, True),
            (7.5, 8.5, 0, 1.5, 3, True), (6.5, 9.5, 0, 0.5, 1, False))[f]


def _draw_slime(cv: _Canvas, spec: CharacterSpec, action: str, f: int, view: str) -> dict[str, tuple[int, int]]:
    """A glossy dome with a flat base: straight sides under an elliptical cap, a shadowed
    underside, a highlight, eyes toward the facing side. Returns the face keypoints."""
    w, h, lift, lean, shift, mouth = _slime_shape(action, f)
    pal = _PALETTE_RAMPS[spec.palette]
    side = view == "side"
    if not side:
        lean, shift = 0.0, 0.0
    one = cv.thick(1.0)
    bottom = _ground(cv) - cv.px(lift)
    cx = cv.px(15.0 if side else 16.0) + cv.px(shift)
    rx, hh = w * cv.s, h * cv.s
    rows, cols = cv.yy, cv.xx
    rel = np.clip((bottom - rows) / hh, 0, 1)                       # 0 at the bottom, 1 at the top
    xc = cx + lean * cv.s * rel                                     # the top leans, the base stays
    cap_c = bottom - 0.45 * hh
    cap = ((cols - xc) / rx) ** 2 + ((rows - cap_c) / (0.55 * hh)) ** 2 <= 1.0
    base = (rows >= cap_c) & (rows <= bottom) & (np.abs(cols - xc) <= rx - (rows > bottom - one) * cv.px(1.0))
    body = (cap | base) & (rows <= bottom)
    cv.fill(body, pal[1])
    cv.fill(body & (rows > bottom - 2 * one), pal[2])                             # shadowed underside
    top = bottom - _rnd(hh)
    hl_x, hl_y = _rnd(cx + lean * cv.s - 0.45 * rx), top + cv.px(2.5)
    cv.fill(cv.rect(hl_x, hl_y, hl_x + cv.px(1.5), hl_y + one - 1), pal[0])     # glossy highlight
    cv.fill(cv.rect(hl_x, hl_y, hl_x + one - 1, hl_y + one - 1) | cv.rect(hl_x - one, hl_y + one, hl_x - 1, hl_y + 2 * one - 1), _WHITE)
    eye_y = bottom - _rnd(0.55 * hh)
    ex = cx + _rnd(lean * 0.5 * cv.s)
    eyes = [ex + cv.px(0.15 * w), ex + cv.px(0.6 * w)] if side else [ex - cv.px(2.5), ex + cv.px(2.5)]
    for k, x in enumerate(eyes):
        x0, x1 = _span(x, one, not side and k == 1)
        cv.fill(cv.rect(x0, eye_y, x1, eye_y + cv.thick(2.0) - 1), _OUTLINE)
    mx = (eyes[0] + eyes[1]) // 2
    mouth_y = eye_y + cv.thick(2.0) + one - 1
    m0, m1 = _span(mx, one, False)
    if mouth:       # wide open
        m0, m1 = m0 - one, m1 + one
    cv.fill(cv.rect(m0, mouth_y, m1, mouth_y + (2 * one if mouth else one) - 1), _OUTLINE)
    if spec.accessory == "hat":     # in a contrasting colour: the slime itself is the palette colour
        tx = _rnd(cx + lean * cv.s)
        hat = _PALETTE_RAMPS["gold" if spec.palette in ("purple", "blue", "gray") else "purple"]
        hat_top = min(top + cv.px(1.0), eye_y - 2 * one - cv.px(1.0))     # the brim stays above the eyes
        _draw_hat(cv, tx - cv.px(3.0), tx + cv.px(3.0), hat_top, side, hat, tall=5.0)
    return {"nose": (mx, mouth_y), "r_eye": (eyes[0], eye_y), "l_eye": (eyes[1], eye_y)}   # nose: the face centre


# ----------------------------------------------------------------------------------------
# Frames, the full set, and export.

_MIRRORED = [POSE_JOINTS.index(n.replace("r_", "l_") if n.startswith("r_") else n.replace("l_", "r_"))
             for n in POSE_JOINTS]   # index of each joint's mirror partner


def _check(actions, directions, size: int) -> None:
    for action in actions:
        if action not in ACTION_FRAMES:
            raise ValueError(f"unknown action {action!r}; expected one of {ACTIONS}")
    for direction in directions:
        if direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {direction!r}; expected one of {DIRECTIONS}")
    if size < 16:
        raise ValueError(f"built-in sprites need size >= 16 px, got {size}")


def _render_view(spec: CharacterSpec, action: str, frame: int, view: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Draw one frame facing right ("side") or the camera ("front")."""
    f = frame % ACTION_FRAMES[action]
    cv = _Canvas(size)
    keypoints = np.zeros((len(POSE_JOINTS), 3), np.float32)
    if spec.archetype == "slime":
        points = _draw_slime(cv, spec, action, f, view)
    else:
        pose = _pose(spec, action, f)
        rig = _skeleton(spec, pose, view, cv)
        points = dict(rig.joints)
        points.update(_draw_humanoid(cv, spec, pose, rig, view))
    cv.outline()
    for name, (x, y) in points.items():
        if name in POSE_JOINTS:   # the clamp is a safety net: poses are designed to stay in frame
            keypoints[POSE_JOINTS.index(name)] = (min(max(x, 0), size - 1), min(max(y, 0), size - 1), 1.0)
    return cv.rgba, keypoints


def _mirror(image: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flip horizontally: x -> W-1-x, and right/left joint names swap (as for any flipped person)."""
    flipped = keypoints[_MIRRORED].copy()
    visible = flipped[:, 2] > 0
    flipped[visible, 0] = image.shape[1] - 1 - flipped[visible, 0]
    return np.ascontiguousarray(image[:, ::-1]), flipped


def render_frame(spec: CharacterSpec, action: str, frame: int, direction: str, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """One frame: (uint8 [size, size, 4] RGBA image, float32 [18, 3] keypoints (x, y, visible)).
    `frame` is taken modulo the action's cycle length, so cycles loop by construction."""
    _check((action,), (direction,), size)
    image, keypoints = _render_view(spec, action, frame, "front" if direction == "front" else "side", size)
    return _mirror(image, keypoints) if direction == "left" else (image, keypoints)


def accessory_masks(data: ImageSet, characters: int, seed: int) -> torch.Tensor:
    """uint8 [N, 1, H, W]: 1 on the pixels image i's accessory changes, i.e. where the frame drawn with
    and without it differ (the item itself, a cape behind the body, the arm that holds a weapon in an
    attack), 0 elsewhere and for characters without one. `data` is `render_builtin(size, characters,
    seed)` (any actions/directions); the frames are drawn again from each image's meta. Training uses
    these as loss weights (`train.detail_weight`): a held item is a few pixels of a 32-px sprite, so an
    unweighted loss barely notices whether it is there."""
    specs = {s.id: s for s in make_characters(characters, seed)}
    size = int(data.images.shape[-1])
    out = torch.zeros(len(data), 1, size, size, dtype=torch.uint8)
    for i, m in enumerate(data.meta):
        if "character" not in m or m["character"] not in specs:
            raise DataError(f"{data.paths[i]}: not a frame of the built-in set with {characters} characters "
                            f"(seed {seed}); accessory masks exist only for the built-in set")
        spec = specs[m["character"]]
        if spec.accessory == "none":
            continue
        args = (m["action"], m["frame"], m["direction"], size)
        worn, bare = render_frame(spec, *args)[0], render_frame(replace(spec, accessory="none"), *args)[0]
        out[i, 0] = torch.from_numpy((worn != bare).any(-1))
    return out


def _frame_meta(spec: CharacterSpec, action: str, frame: int, direction: str, keypoints: np.ndarray) -> dict:
    return {"character": spec.id, "archetype": spec.archetype, "palette": spec.palette, "accessory": spec.accessory,
            "action": action, "frame": frame, "num_frames": ACTION_FRAMES[action], "direction": direction,
            "pose": keypoints.tolist(), "animation": f"{spec.id}_{action}_{direction}"}


def render_builtin(size: int = 32, characters: int = 24, seed: int = 0, actions=None, directions=None) -> ImageSet:
    """Every character x action x direction x frame as one `ImageSet` (in that nesting order).
    Labels are archetype indices into `ARCHETYPES`; meta carries attributes and the pose."""
    actions = tuple(actions) if actions else ACTIONS
    directions = tuple(directions) if directions else DIRECTIONS
    _check(actions, directions, size)
    images, paths, captions, labels, meta = [], [], [], [], []
    for spec in make_characters(characters, seed):
        for action in actions:
            # "left" reuses the "right" drawing, mirrored
            side = [_render_view(spec, action, f, "side", size) for f in range(ACTION_FRAMES[action])] \
                if {"right", "left"} & set(directions) else []
            for direction in directions:
                caption = caption_for(spec, action, direction)
                for f in range(ACTION_FRAMES[action]):
                    if direction == "right":
                        image, keypoints = side[f]
                    elif direction == "left":
                        image, keypoints = _mirror(*side[f])
                    else:
                        image, keypoints = _render_view(spec, action, f, "front", size)
                    images.append(image)
                    paths.append(f"builtin:{spec.id}/{action}_{direction}_{f}")
                    captions.append(caption)
                    labels.append(ARCHETYPES.index(spec.archetype))
                    meta.append(_frame_meta(spec, action, f, direction, keypoints))
    tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(tensor, paths, captions, torch.tensor(labels, dtype=torch.int64), list(ARCHETYPES), meta)


def render_builtin_sheets(size: int = 64, characters: int = 24, seed: int = 0, frames: int = 4) -> ImageSet:
    """The whole-sheet baseline's data: every animation of the built-in set as ONE image, a 2x2 grid of
    `frames` = 4 frames (evenly spaced over the cycle) of size/2 pixels each, in reading order.

    This is what fine-tuning an image model on sprite sheets amounts to; a model trained on it must
    keep a character consistent across the cells by itself, with no notion of frames. Meta carries
    the animation's attributes (frame-level entries dropped)."""
    if frames != 4 or size % 2:
        raise ValueError(f"builtin sheets are 2x2 grids of 4 frames at an even size, got frames={frames} size={size}")
    cell = size // 2
    data = render_builtin(size=cell, characters=characters, seed=seed)
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(data.meta):
        groups.setdefault(m["animation"], []).append(i)
    images, paths, captions, labels, meta = [], [], [], [], []
    for name, idx in groups.items():
        idx = sorted(idx, key=lambda i: data.meta[i]["frame"])
        pick = [idx[round(k * len(idx) / frames)] for k in range(frames)]
        sheet = torch.zeros(data.channels, size, size, dtype=torch.uint8)
        for k, i in enumerate(pick):
            r, c = divmod(k, 2)
            sheet[:, r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = data.images[i]
        m = {k: v for k, v in data.meta[idx[0]].items() if k not in ("frame", "num_frames", "pose", "animation")}
        images.append(sheet)
        paths.append(f"builtin-sheets:{name}")
        captions.append(data.captions[idx[0]])
        labels.append(int(data.labels[idx[0]]))
        meta.append({**m, "sheet_frames": [data.meta[i]["frame"] for i in pick]})
    return ImageSet(torch.stack(images), paths, captions, torch.tensor(labels, dtype=torch.int64),
                    list(data.class_names), meta)


def export_builtin(out_dir, size: int = 32, characters: int = 24, seed: int = 0) -> Path:
    """Write the built-in set as an ordinary image folder that the folder loader (and other
    tools) understand: `<archetype>/<character>_<action>_<direction>_<frame>.png` (folder names
    are class labels), `metadata.jsonl` in the Hugging Face imagefolder convention (file_name,
    text, plus the frame's attributes and pose as extra columns), and `labels.json` with the
    set's parameters, the joint layout and every image's metadata."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: export needs a new or empty folder, and this one is not empty")
    data = render_builtin(size=size, characters=characters, seed=seed)
    records = []
    for i, m in enumerate(data.meta):
        name = f"{m['archetype']}/{m['character']:03d}_{m['action']}_{m['direction']}_{m['frame']}.png"
        (out / m["archetype"]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(data.images[i].permute(1, 2, 0).numpy()).save(out / name)     # HxWx4 uint8 -> RGBA
        records.append({"file_name": name, "text": data.captions[i], **m})
    with open(out / "metadata.jsonl", "w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    labels = {"source": "spriteforge builtin", "size": size, "characters": characters, "seed": seed,
              "class_names": list(ARCHETYPES), "pose_joints": list(POSE_JOINTS),
              "pose_limbs": [list(limb) for limb in POSE_LIMBS], "images": records}
    (out / "labels.json").write_text(json.dumps(labels))
    return out
