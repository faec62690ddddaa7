"""The built-in procedural sprite set: determinism, image format, poses that match the
drawing, looping animations, mirrored directions, and the exported folder."""

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from spriteforge.data.builtin import (
    ACCESSORIES,
    ACTION_FRAMES,
    ACTIONS,
    ARCHETYPES,
    DIRECTIONS,
    PALETTES,
    CharacterSpec,
    caption_for,
    export_builtin,
    make_characters,
    render_builtin,
    render_frame,
)
from spriteforge.data.dataset import POSE_JOINTS, POSE_LIMBS, DataError


def one_of_each() -> list[CharacterSpec]:
    """One character per archetype, with accessories chosen to exercise every drawing path."""
    accessories = {"knight": "shield", "mage": "staff", "rogue": "cape", "skeleton": "sword", "robot": "hat", "slime": "hat"}
    return [CharacterSpec(id=i, archetype=a, palette=PALETTES[i % len(PALETTES)], accessory=accessories[a])
            for i, a in enumerate(ARCHETYPES)]


def all_frames(spec, size=32):
    for action in ACTIONS:
        for direction in DIRECTIONS:
            for f in range(ACTION_FRAMES[action]):
                yield action, direction, f, *render_frame(spec, action, f, direction, size)


def near_opaque(alpha: np.ndarray, x: float, y: float, reach: int = 1) -> bool:
    x, y = int(x), int(y)
    return bool(alpha[max(0, y - reach):y + reach + 1, max(0, x - reach):x + reach + 1].any())


# ---------------------------------------------------------------- characters and captions

def test_make_characters_is_deterministic_and_balanced():
    a, b = make_characters(24, seed=0), make_characters(24, seed=0)
    assert a == b
    assert a != make_characters(24, seed=1)
    assert [c.id for c in a] == list(range(24))
    for field, names in (("archetype", ARCHETYPES), ("palette", PALETTES), ("accessory", ACCESSORIES)):
        counts = Counter(getattr(c, field) for c in a)
        assert set(counts) == set(names), field
        assert max(counts.values()) - min(counts.values()) <= 2, (field, counts)
    # the same archetype does not repeat a palette or an accessory while others are unused
    for arch in ARCHETYPES:
        group = [c for c in a if c.archetype == arch]
        assert len({c.palette for c in group}) == len(group)
    assert all(c.accessory in ("none", "hat") for c in a if c.archetype == "slime")


def test_caption_names_attributes_action_and_direction():
    knight = CharacterSpec(id=0, archetype="knight", palette="red", accessory="shield")
    assert caption_for(knight, "walk", "right") == "a red knight with a shield walking right"
    slime = CharacterSpec(id=1, archetype="slime", palette="orange", accessory="none")
    assert caption_for(slime, "idle", "front") == "an orange slime standing idle facing the camera"
    assert caption_for(slime, "jump", "left") == "an orange slime jumping facing left"


# ---------------------------------------------------------------- single frames

@pytest.mark.parametrize("spec", one_of_each(), ids=lambda s: s.archetype)
def test_every_action_and_direction_renders_a_sprite(spec):
    for action, direction, f, img, kp in all_frames(spec):
        assert img.shape == (32, 32, 4) and img.dtype == np.uint8
        assert kp.shape == (len(POSE_JOINTS), 3) and kp.dtype == np.float32
        alpha = img[..., 3]
        assert set(np.unique(alpha)) <= {0, 255}, "crisp pixel art: no partial alpha"
        assert not alpha[0].any() and not alpha[:, 0].any() and not alpha[:, -1].any(), "background stays transparent"
        coverage = (alpha > 0).mean()
        assert 0.06 < coverage < 0.45, (action, direction, f, coverage)
        assert (img[alpha > 0][:, :3].max(axis=1) < 60).any(), "a dark outline"
        expected_visible = 3 if spec.archetype == "slime" else len(POSE_JOINTS)
        assert int(kp[:, 2].sum()) == expected_visible


@pytest.mark.parametrize("spec", one_of_each(), ids=lambda s: s.archetype)
@pytest.mark.parametrize("size", [16, 32, 64])
def test_keypoints_lie_on_the_drawn_body(spec, size):
    """Visible joints land on (or next to) opaque pixels, and so does the middle of every limb
    between two visible joints: the pose is the pose that was drawn."""
    for action, direction, f, img, kp in all_frames(spec, size):
        alpha = img[..., 3] > 0
        vis = kp[:, 2] > 0
        assert ((kp[vis, :2] >= 0) & (kp[vis, :2] <= size - 1)).all()
        assert (kp[~vis] == 0).all()
        for j in np.flatnonzero(vis):
            assert near_opaque(alpha, *kp[j, :2]), (action, direction, f, POSE_JOINTS[j])
        for a, b in POSE_LIMBS:
            if vis[a] and vis[b]:
                mid = (kp[a, :2] + kp[b, :2]) / 2
                assert near_opaque(alpha, *np.round(mid)), (action, direction, f, POSE_JOINTS[a], POSE_JOINTS[b])


def test_limbs_move_with_the_walk():
    spec = CharacterSpec(id=0, archetype="knight", palette="blue", accessory="none")
    ankles = {tuple(render_frame(spec, "walk", f, "right")[1][POSE_JOINTS.index("r_ankle"), :2]) for f in range(8)}
    wrists = {tuple(render_frame(spec, "walk", f, "right")[1][POSE_JOINTS.index("r_wrist"), :2]) for f in range(8)}
    assert len(ankles) >= 4 and len(wrists) >= 3


@pytest.mark.parametrize("spec", one_of_each(), ids=lambda s: s.archetype)
def test_left_is_the_mirror_of_right(spec):
    swap = [POSE_JOINTS.index(n.replace("r_", "l_") if n.startswith("r_") else n.replace("l_", "r_")) for n in POSE_JOINTS]
    for action in ACTIONS:
        for f in range(ACTION_FRAMES[action]):
            right, kp_r = render_frame(spec, action, f, "right")
            left, kp_l = render_frame(spec, action, f, "left")
            assert np.array_equal(left, right[:, ::-1])
            expected = kp_r[swap].copy()
            vis = expected[:, 2] > 0
            expected[vis, 0] = 31 - expected[vis, 0]
            assert np.array_equal(kp_l, expected)
    # facing right, the face is on the right half of the head
    _, kp = render_frame(spec, "idle", 0, "right")
    assert kp[POSE_JOINTS.index("nose"), 0] > 15


@pytest.mark.parametrize("spec", one_of_each(), ids=lambda s: s.archetype)
@pytest.mark.parametrize("size", [32, 64])
def test_cycles_loop_and_every_frame_moves(spec, size):
    for action in ACTIONS:
        n = ACTION_FRAMES[action]
        for direction in DIRECTIONS:
            frames = [render_frame(spec, action, f, direction, size)[0] for f in range(n)]
            wrapped, _ = render_frame(spec, action, n, direction, size)
            assert np.array_equal(wrapped, frames[0])
            for f in range(n):   # includes the wrap from the last frame back to the first
                assert not np.array_equal(frames[f], frames[(f + 1) % n]), (action, direction, f)


def test_characters_differ_from_each_other():
    specs = make_characters(24, seed=0)
    images = {render_frame(s, "idle", 0, "right")[0].tobytes() for s in specs}
    assert len(images) == 24


@pytest.mark.parametrize("size", [16, 32, 48, 64])
def test_sizes_are_drawn_natively(size):
    """Every size is drawn at its own resolution: the sprite scales with the canvas, edges stay
    hard (binary alpha, few colours), not a blurred resample of the 32-px drawing."""
    spec = CharacterSpec(id=0, archetype="knight", palette="red", accessory="sword")
    img, _ = render_frame(spec, "walk", 2, "right", size)
    assert img.shape == (size, size, 4)
    ys = np.nonzero(img[..., 3])[0]
    height = ys.max() - ys.min() + 1
    assert 0.5 * size < height < 0.95 * size
    assert set(np.unique(img[..., 3])) <= {0, 255}
    assert len(np.unique(img[img[..., 3] > 0][:, :3], axis=0)) <= 24


def test_bad_arguments_are_refused():
    spec = make_characters(1, seed=0)[0]
    with pytest.raises(ValueError, match="action"):
        render_frame(spec, "dance", 0, "right")
    with pytest.raises(ValueError, match="direction"):
        render_frame(spec, "walk", 0, "up")
    with pytest.raises(ValueError, match="size"):
        render_frame(spec, "walk", 0, "right", size=8)


# ---------------------------------------------------------------- the whole set

def test_render_builtin_is_deterministic_and_complete():
    data = render_builtin(size=32, characters=6, seed=0)
    per_character = sum(ACTION_FRAMES.values()) * len(DIRECTIONS)
    assert len(data) == 6 * per_character
    assert data.images.shape == (6 * per_character, 4, 32, 32)
    assert data.class_names == list(ARCHETYPES)
    again = render_builtin(size=32, characters=6, seed=0)
    assert np.array_equal(data.images.numpy(), again.images.numpy())
    other = render_builtin(size=32, characters=6, seed=1)
    assert not np.array_equal(data.images.numpy(), other.images.numpy())

    specs = {s.id: s for s in make_characters(6, seed=0)}
    for i in range(0, len(data), 37):
        m = data.meta[i]
        spec = specs[m["character"]]
        assert data.labels[i].item() == ARCHETYPES.index(m["archetype"]) == ARCHETYPES.index(spec.archetype)
        assert data.captions[i] == caption_for(spec, m["action"], m["direction"])
        assert data.paths[i] == f"builtin:{spec.id}/{m['action']}_{m['direction']}_{m['frame']}"
        assert m["animation"] == f"{spec.id}_{m['action']}_{m['direction']}"
        assert m["num_frames"] == ACTION_FRAMES[m["action"]]
        img, kp = render_frame(spec, m["action"], m["frame"], m["direction"])
        assert np.array_equal(data.images[i].permute(1, 2, 0).numpy(), img)
        assert np.array_equal(np.array(m["pose"], np.float32), kp)
    json.dumps(data.meta)     # JSON-able as is


def test_render_builtin_subset_of_actions_and_directions():
    data = render_builtin(size=16, characters=2, seed=3, actions=["walk"], directions=["left"])
    assert len(data) == 2 * ACTION_FRAMES["walk"]
    assert {m["action"] for m in data.meta} == {"walk"} and {m["direction"] for m in data.meta} == {"left"}
    with pytest.raises(ValueError):
        render_builtin(characters=1, actions=["fly"])


def test_export_writes_an_image_folder(tmp_path):
    out = export_builtin(tmp_path / "sprites", size=16, characters=2, seed=0)
    data = render_builtin(size=16, characters=2, seed=0)
    pngs = sorted(out.rglob("*.png"))
    assert len(pngs) == len(data)
    assert {p.parent.name for p in pngs} <= set(ARCHETYPES)

    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == len(data)
    for i, row in enumerate(rows):
        assert row["text"] == data.captions[i]
        assert row["file_name"].split("/")[0] == row["archetype"]
    first = np.array(Image.open(out / rows[0]["file_name"]))
    assert first.shape == (16, 16, 4)
    assert np.array_equal(first, data.images[0].permute(1, 2, 0).numpy())

    labels = json.loads((out / "labels.json").read_text())
    assert labels["class_names"] == list(ARCHETYPES) and labels["pose_joints"] == list(POSE_JOINTS)
    assert len(labels["images"]) == len(data)
    entry = labels["images"][5]
    assert (out / entry["file_name"]).is_file()
    assert entry["pose"] == data.meta[5]["pose"] and entry["action"] == data.meta[5]["action"]


def test_export_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty"):
        export_builtin(tmp_path, size=16, characters=1)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert export_builtin(empty, size=16, characters=1) == empty
