"""Sprite-sheet / atlas / folder import (spriteforge.animation.sheets)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from spriteforge.animation.export import make_sheet
from spriteforge.animation.sheets import (Animation, animations_to_imageset, detect_grid, load_animation_folders,
                                          load_aseprite_json, load_numbered_frames, load_texturepacker_json,
                                          slice_auto, slice_grid, split_frame_name, tag_sequence)
from spriteforge.data.dataset import DataError


def make_frames(n, w=12, h=10, seed=0):
    """n distinct RGBA frames with transparent, semi-transparent and opaque pixels."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        f = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        f[..., 3] = rng.choice(np.array([0, 128, 255], np.uint8), (h, w))
        f[f[..., 3] == 0] = 0
        f[0, 0] = [i, 255 - i, 7, 255]              # frame id, so an order mix-up cannot go unseen
        frames.append(f)
    return frames


def save_png(a, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a, mode="RGBA").save(path)
    return path


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# --------------------------------------------------------------------------- grids

def test_grid_round_trip_with_padding_through_png(tmp_path):
    frames = make_frames(7)
    sheet, rects = make_sheet(frames, columns=3, padding=2)
    assert sheet.shape == (3 * 10 + 2 * 2, 3 * 12 + 2 * 2, 4)
    p = save_png(sheet, tmp_path / "sheet.png")
    got = slice_grid(p, cols=3, rows=3, spacing=2, skip_empty=True)
    assert same(got, frames)
    # the same grid given by frame size, and by frame size + counts
    assert same(slice_grid(p, frame_size=(12, 10), spacing=2)[:7], frames)
    assert same(slice_grid(p, cols=3, rows=3, frame_size=(12, 10), spacing=2)[:7], frames)
    # with skip_empty off the two unused cells come back fully transparent
    cells = slice_grid(p, cols=3, rows=3, spacing=2)
    assert len(cells) == 9 and not cells[7].any() and not cells[8].any()


def test_grid_with_margin_reading_order():
    frames = make_frames(6, w=8, h=8)
    sheet, _ = make_sheet(frames, columns=3, padding=1)
    framed = np.zeros((sheet.shape[0] + 6, sheet.shape[1] + 6, 4), np.uint8)
    framed[3:-3, 3:-3] = sheet
    got = slice_grid(framed, frame_size=8, margin=3, spacing=1)
    assert same(got, frames)                         # row 0 left->right, then row 1


def test_grid_columns_only_strip_of_tall_frames():
    frames = make_frames(4, w=16, h=24)
    sheet, _ = make_sheet(frames, columns=4)
    assert same(slice_grid(sheet, cols=4), frames)   # 16 does not divide 24: one row


def test_grid_error_names_the_numbers():
    img = np.zeros((32, 100, 4), np.uint8)
    with pytest.raises(DataError) as e:
        slice_grid(img, cols=3, rows=1, path="hero.png")
    msg = str(e.value)
    assert "hero.png" in msg and "3 columns" in msg and "100 px" in msg and "33.33" in msg
    assert "1, 2, 4, 5, 10" in msg                   # the column counts that would fit
    with pytest.raises(DataError) as e:
        slice_grid(img, frame_size=(30, 32), path="hero.png")
    msg = str(e.value)
    assert "30 px" in msg and "100 px" in msg and "3 frames fit with 10 px left over" in msg and "25" in msg
    with pytest.raises(DataError) as e:
        slice_grid(img, cols=4, frame_size=(20, 32), path="hero.png")
    assert "need an image width of 80 px" in str(e.value) and "100 px" in str(e.value)
    with pytest.raises(DataError, match="rows do not divide the image height of 32 px"):
        slice_grid(img, cols=4, rows=3)


def _sprite(w, h, color, seed):
    rng = np.random.default_rng(seed)
    s = np.zeros((h, w, 4), np.uint8)
    s[...] = [*color, 255]
    s[..., :3] = np.clip(s[..., :3].astype(int) + rng.integers(-20, 20, (h, w, 3)), 0, 255)
    return s


def test_detect_grid_transparent_gutters_keeps_cell_positions():
    # 4 x 2 cells of 16 x 16; sprites of different sizes at different places inside their cells
    # (a jump: the sprite moves up), last cell empty.
    sheet = np.zeros((32, 64, 4), np.uint8)
    cells = []
    for k in range(7):
        r, c = divmod(k, 4)
        cell = np.zeros((16, 16, 4), np.uint8)
        w, h = 8 + k % 3, 9
        x0, y0 = 3 + k % 2, 6 - k % 4
        cell[y0:y0 + h, x0:x0 + w] = _sprite(w, h, (200, 40 + 20 * k, 30), k)
        sheet[16 * r:16 * r + 16, 16 * c:16 * c + 16] = cell
        cells.append(cell)
    boxes = detect_grid(sheet)
    assert boxes == [(16 * c, 16 * r, 16, 16) for k in range(7) for r, c in [divmod(k, 4)]]
    assert same(slice_auto(sheet), cells)


def test_detect_grid_uniform_colour_background():
    bg = (255, 0, 255)
    sheet = np.zeros((20, 50, 4), np.uint8)
    sheet[...] = [*bg, 255]
    for k in range(3):                               # three 8x12 sprites with magenta gutters
        sheet[4:16, 3 + 16 * k:11 + 16 * k] = _sprite(8, 12, (30, 90 + 50 * k, 200), k)
    boxes = detect_grid(sheet)
    assert len(boxes) == 3
    assert [b[0] for b in boxes] == sorted(b[0] for b in boxes)    # reading order
    frames = slice_auto(sheet)
    assert len(frames) == 3
    for k, f in enumerate(frames):
        assert f.shape[:2] == (boxes[0][3], boxes[0][2])
        visible = f[..., 3] > 0
        assert visible.sum() == 8 * 12                 # the magenta background became transparent
        assert not np.all(f[..., :3][visible] == bg, axis=-1).any()


def test_detect_grid_irregular_bands_are_padded_bottom_aligned():
    sheet = np.zeros((17, 23, 4), np.uint8)           # prime sizes: no regular grid divides the width
    a, b = _sprite(5, 4, (255, 0, 0), 1), _sprite(6, 7, (0, 0, 255), 2)
    sheet[1:5, 1:6] = a
    sheet[8:15, 12:18] = b
    assert detect_grid(sheet, regular=False) == [(1, 1, 5, 4), (12, 8, 6, 7)]
    frames = slice_auto(sheet, regular=False)
    assert [f.shape for f in frames] == [(7, 6, 4), (7, 6, 4)]
    assert np.array_equal(frames[1], b)
    assert np.array_equal(frames[0][3:7, 0:5], a)      # bottom-aligned, centred (1 px spare -> right)
    assert not frames[0][:3].any() and not frames[0][:, 5].any()
    # regular=True: no regular split of 23 x 17 keeps the bands whole, so the bands are the boxes
    assert detect_grid(sheet) == detect_grid(sheet, regular=False)


def test_detect_grid_empty_sheet():
    assert detect_grid(np.zeros((8, 8, 4), np.uint8)) == []
    with pytest.raises(DataError, match="8x8 px image is background"):
        slice_auto(np.zeros((8, 8, 4), np.uint8))


# --------------------------------------------------------------------------- Aseprite

def _aseprite_doc(frames, rects, durations, tags, image="hero.png", layout="hash", sheet_size=None):
    recs = []
    for i, ((x, y, w, h), d) in enumerate(zip(rects, durations)):
        recs.append((f"hero {i}.aseprite", {"frame": {"x": x, "y": y, "w": w, "h": h}, "rotated": False,
                                           "trimmed": False, "spriteSourceSize": {"x": 0, "y": 0, "w": w, "h": h},
                                           "sourceSize": {"w": w, "h": h}, "duration": d}))
    fr = {k: v for k, v in recs} if layout == "hash" else [{"filename": k, **v} for k, v in recs]
    return {"frames": fr, "meta": {"app": "https://www.aseprite.org/", "version": "1.3.7", "image": image,
                                   "format": "RGBA8888", "size": {"w": sheet_size[0], "h": sheet_size[1]},
                                   "scale": "1", "frameTags": tags}}


TAGS = [{"name": "walk", "from": 0, "to": 3, "direction": "forward"},
        {"name": "back", "from": 0, "to": 2, "direction": "reverse"},
        {"name": "bob", "from": 4, "to": 7, "direction": "pingpong"},
        {"name": "bob_r", "from": 4, "to": 7, "direction": "pingpong_reverse"}]


@pytest.mark.parametrize("layout", ["hash", "array"])
def test_aseprite_json_tags_directions_durations(tmp_path, layout):
    frames = make_frames(8)
    sheet, rects = make_sheet(frames, columns=3, padding=1)
    save_png(sheet, tmp_path / "hero.png")
    durations = [100, 110, 120, 130, 140, 150, 160, 170]
    doc = _aseprite_doc(frames, rects, durations, TAGS, layout=layout, sheet_size=(sheet.shape[1], sheet.shape[0]))
    (tmp_path / "hero.json").write_text(json.dumps(doc))
    anims = {a.name: a for a in load_aseprite_json(tmp_path / "hero.json")}
    assert list(anims) == ["walk", "back", "bob", "bob_r"]
    expect = {"walk": [0, 1, 2, 3], "back": [2, 1, 0], "bob": [4, 5, 6, 7, 6, 5], "bob_r": [7, 6, 5, 4, 5, 6]}
    for name, seq in expect.items():
        assert same(anims[name].frames, [frames[i] for i in seq]), name
        assert anims[name].durations_ms == [durations[i] for i in seq]
        assert anims[name].source.endswith("hero.json")


def test_aseprite_image_is_relative_to_the_json_not_the_cwd(tmp_path, monkeypatch):
    frames = make_frames(3)
    sheet, rects = make_sheet(frames)
    save_png(sheet, tmp_path / "art" / "img" / "hero.png")
    doc = _aseprite_doc(frames, rects, [100] * 3, [], image="img/hero.png", sheet_size=(sheet.shape[1], sheet.shape[0]))
    (tmp_path / "art" / "hero.json").write_text(json.dumps(doc))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (anim,) = load_aseprite_json(tmp_path / "art" / "hero.json")   # no tags: one animation of all frames
    assert anim.name == "hero" and same(anim.frames, frames)


def test_aseprite_errors(tmp_path):
    frames = make_frames(3)
    sheet, rects = make_sheet(frames)
    save_png(sheet, tmp_path / "hero.png")
    size = (sheet.shape[1], sheet.shape[0])
    bad_tag = _aseprite_doc(frames, rects, [100] * 3, [{"name": "run", "from": 1, "to": 5}], sheet_size=size)
    (tmp_path / "a.json").write_text(json.dumps(bad_tag))
    with pytest.raises(DataError, match=r"frameTag 'run' spans frames 1\.\.5 but the sheet has 3 frames"):
        load_aseprite_json(tmp_path / "a.json")
    bad_dir = _aseprite_doc(frames, rects, [100] * 3, [{"name": "x", "from": 0, "to": 1, "direction": "sideways"}],
                            sheet_size=size)
    (tmp_path / "b.json").write_text(json.dumps(bad_dir))
    with pytest.raises(DataError, match="frameTag 'x'.*sideways"):
        load_aseprite_json(tmp_path / "b.json")
    wrong_size = _aseprite_doc(frames, rects, [100] * 3, [], sheet_size=(size[0] * 2, size[1] * 2))
    (tmp_path / "c.json").write_text(json.dumps(wrong_size))
    with pytest.raises(DataError, match=f"meta.size says {size[0] * 2}x{size[1] * 2} px but the sheet hero.png "
                                        f"is {size[0]}x{size[1]} px"):
        load_aseprite_json(tmp_path / "c.json")
    missing = _aseprite_doc(frames, rects, [100] * 3, [], image="nope.png", sheet_size=size)
    (tmp_path / "d.json").write_text(json.dumps(missing))
    with pytest.raises(DataError, match="'nope.png'.*not found"):
        load_aseprite_json(tmp_path / "d.json")
    (tmp_path / "e.json").write_text("{not json")
    with pytest.raises(DataError, match="e.json: not valid JSON"):
        load_aseprite_json(tmp_path / "e.json")


def test_tag_sequence():
    assert tag_sequence(2, 4, "forward") == [2, 3, 4]
    assert tag_sequence(2, 4, "reverse") == [4, 3, 2]
    assert tag_sequence(0, 3, "pingpong") == [0, 1, 2, 3, 2, 1]
    assert tag_sequence(0, 3, "pingpong_reverse") == [3, 2, 1, 0, 1, 2]
    assert tag_sequence(5, 5, "pingpong") == [5]


# --------------------------------------------------------------------------- TexturePacker

def _texturepacker_atlas(tmp_path, layout):
    """An atlas with plain, trimmed and rotated (+trimmed) frames; returns (json path, expected frames)."""
    rng = np.random.default_rng(3)
    W, H = 64, 40
    atlas = np.zeros((H, W, 4), np.uint8)
    expected, recs = {}, []

    def canvas_with(w, h, ox, oy, sw=16, sh=16, seed=0):
        c = np.zeros((sh, sw, 4), np.uint8)
        c[oy:oy + h, ox:ox + w] = rng.integers(1, 256, (h, w, 4), dtype=np.uint8)
        c[oy, ox, 3] = 255                           # make sure the trimmed rect's corner is visible
        return c, c[oy:oy + h, ox:ox + w]

    # walk_0: untrimmed 16x16 at (0,0)
    full, _ = canvas_with(16, 16, 0, 0)
    atlas[0:16, 0:16] = full
    expected["walk_0.png"] = full
    recs.append(("walk_0.png", {"frame": {"x": 0, "y": 0, "w": 16, "h": 16}, "rotated": False, "trimmed": False,
                                "spriteSourceSize": {"x": 0, "y": 0, "w": 16, "h": 16}, "sourceSize": {"w": 16, "h": 16}}))
    # walk_10: trimmed 10x12 at offset (3,2) in a 16x16 canvas, stored at (16,0)
    c, t = canvas_with(10, 12, 3, 2)
    atlas[0:12, 16:26] = t
    expected["walk_10.png"] = c
    recs.append(("walk_10.png", {"frame": {"x": 16, "y": 0, "w": 10, "h": 12}, "rotated": False, "trimmed": True,
                                 "spriteSourceSize": {"x": 3, "y": 2, "w": 10, "h": 12},
                                 "sourceSize": {"w": 16, "h": 16}}))
    # walk_2: rotated and trimmed: 11x6 content at (2,5); stored turned 90 deg clockwise -> 6 wide, 11 high
    c, t = canvas_with(11, 6, 2, 5)
    atlas[0:11, 30:36] = np.rot90(t, k=-1)           # k=-1: clockwise
    expected["walk_2.png"] = c
    recs.append(("walk_2.png", {"frame": {"x": 30, "y": 0, "w": 11, "h": 6}, "rotated": True, "trimmed": True,
                                "spriteSourceSize": {"x": 2, "y": 5, "w": 11, "h": 6},
                                "sourceSize": {"w": 16, "h": 16}}))
    # idle/0002 and idle/0001: untrimmed, rotated 8x12 (stored 12 wide, 8 high) and plain
    a = rng.integers(0, 256, (12, 8, 4), dtype=np.uint8)
    atlas[20:28, 0:12] = np.rot90(a, k=-1)
    expected["idle/0002"] = a
    recs.append(("idle/0002", {"frame": {"x": 0, "y": 20, "w": 8, "h": 12}, "rotated": True, "trimmed": False,
                               "spriteSourceSize": {"x": 0, "y": 0, "w": 8, "h": 12}, "sourceSize": {"w": 8, "h": 12}}))
    b = rng.integers(0, 256, (12, 8, 4), dtype=np.uint8)
    atlas[20:32, 20:28] = b
    expected["idle/0001"] = b
    recs.append(("idle/0001", {"frame": {"x": 20, "y": 20, "w": 8, "h": 12}, "rotated": False, "trimmed": False,
                               "spriteSourceSize": {"x": 0, "y": 0, "w": 8, "h": 12}, "sourceSize": {"w": 8, "h": 12}}))
    save_png(atlas, tmp_path / "atlas.png")
    fr = {k: v for k, v in recs} if layout == "hash" else [{"filename": k, **v} for k, v in recs]
    doc = {"frames": fr, "meta": {"app": "https://www.codeandweb.com/texturepacker", "version": "1.0",
                                  "image": "atlas.png", "format": "RGBA8888", "size": {"w": W, "h": H}, "scale": "1"}}
    (tmp_path / "atlas.json").write_text(json.dumps(doc))
    return tmp_path / "atlas.json", expected, doc


@pytest.mark.parametrize("layout", ["hash", "array"])
def test_texturepacker_untrim_unrotate_and_group(tmp_path, layout):
    path, expected, _ = _texturepacker_atlas(tmp_path, layout)
    anims = {a.name: a for a in load_texturepacker_json(path)}
    assert set(anims) == {"walk", "idle"}
    # numeric order: walk_2 before walk_10; idle/0001 before idle/0002
    assert same(anims["walk"].frames, [expected[k] for k in ("walk_0.png", "walk_2.png", "walk_10.png")])
    assert same(anims["idle"].frames, [expected[k] for k in ("idle/0001", "idle/0002")])
    assert anims["walk"].durations_ms == [100, 100, 100]


def test_texturepacker_explicit_animations_key(tmp_path):
    path, expected, doc = _texturepacker_atlas(tmp_path, "hash")
    doc["animations"] = {"hop": ["idle/0002", "idle/0001", "idle/0002"]}
    path.write_text(json.dumps(doc))
    (anim,) = load_texturepacker_json(path)
    assert anim.name == "hop" and same(anim.frames, [expected["idle/0002"], expected["idle/0001"], expected["idle/0002"]])


def test_atlas_rect_outside_image_names_the_frame(tmp_path):
    path, _, doc = _texturepacker_atlas(tmp_path, "hash")
    doc["frames"]["walk_10.png"]["frame"] = {"x": 60, "y": 0, "w": 10, "h": 12}
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError) as e:
        load_texturepacker_json(path)
    msg = str(e.value)
    assert "'walk_10.png'" in msg and "x=60 y=0 w=10 h=12" in msg and "64x40" in msg and "atlas.json" in msg
    # a rotated frame is checked with its rotated footprint: 11 high fits in 40, but 30+... moved down it does not
    path, _, doc = _texturepacker_atlas(tmp_path, "hash")
    doc["frames"]["walk_2.png"]["frame"] = {"x": 30, "y": 30, "w": 11, "h": 6}
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"'walk_2.png' rect x=30 y=30 w=11 h=6 \(rotated: occupies 6x11 px\)"):
        load_texturepacker_json(path)


def test_atlas_frames_of_different_sizes_in_one_animation(tmp_path):
    path, _, doc = _texturepacker_atlas(tmp_path, "hash")
    doc["frames"]["walk_0.png"]["sourceSize"] = {"w": 16, "h": 20}
    doc["frames"]["walk_0.png"]["trimmed"] = True
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"animation 'walk' have different sizes \(walk_0.png=16x20, walk_2.png=16x16"):
        load_texturepacker_json(path)


def test_split_frame_name():
    assert split_frame_name("walk_0.png") == ("walk", 0)
    assert split_frame_name("walk/0001") == ("walk", 1)
    assert split_frame_name("hero walk 12.aseprite") == ("hero walk", 12)
    assert split_frame_name("idle.png") == ("idle", None)
    assert split_frame_name("run-03.PNG") == ("run", 3)


# --------------------------------------------------------------------------- folders

def test_numbered_frames_natural_sort(tmp_path):
    frames = make_frames(12, w=6, h=6)
    for i, f in enumerate(frames):
        save_png(f, tmp_path / f"walk_{i}.png")
    save_png(frames[0], tmp_path / "idle_1.png")
    save_png(frames[1], tmp_path / "idle_0.png")
    (tmp_path / "notes.txt").write_text("ignored")
    anims = {a.name: a for a in load_numbered_frames(tmp_path)}
    assert set(anims) == {"walk", "idle"}
    assert same(anims["walk"].frames, frames)        # walk_2 before walk_10
    assert same(anims["idle"].frames, [frames[1], frames[0]])
    assert anims["walk"].durations_ms == [100] * 12


def test_numbered_frames_errors(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        load_numbered_frames(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        load_numbered_frames(tmp_path / "empty")
    save_png(np.zeros((8, 8, 4), np.uint8), tmp_path / "mixed" / "jump_0.png")
    save_png(np.zeros((8, 9, 4), np.uint8), tmp_path / "mixed" / "jump_1.png")
    with pytest.raises(DataError, match=r"'jump' have different sizes \(jump_0.png=8x8, jump_1.png=9x8\)"):
        load_numbered_frames(tmp_path / "mixed")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a_0.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="a_0.png: cannot read image"):
        load_numbered_frames(tmp_path / "broken")


def test_animation_folders_captions_and_labels(tmp_path):
    frames = make_frames(3, w=8, h=8)
    for i, name in enumerate(["1.png", "2.png", "10.png"]):
        save_png(frames[i], tmp_path / "knight" / "walk" / name)
    (tmp_path / "knight" / "walk" / "caption.txt").write_text("a knight walking\n")
    for i in range(2):
        save_png(frames[i], tmp_path / "knight" / "idle" / f"f{i}.png")
    save_png(frames[2], tmp_path / "slime" / "0.png")
    (tmp_path / "metadata.jsonl").write_text(
        json.dumps({"file_name": "knight/idle", "caption": "a knight standing"}) + "\n"
        + json.dumps({"file_name": "slime/0.png", "text": "a green slime"}) + "\n")
    anims = {a.name: a for a in load_animation_folders(tmp_path)}
    assert set(anims) == {"walk", "idle", "slime"}
    assert same(anims["walk"].frames, frames)        # 1, 2, 10: natural order
    assert anims["walk"].caption == "a knight walking" and anims["walk"].label == "knight"
    assert anims["idle"].caption == "a knight standing" and anims["idle"].label == "knight"
    assert anims["slime"].caption == "a green slime" and anims["slime"].label is None


def test_animations_to_imageset(tmp_path):
    a = Animation("walk", make_frames(3, w=16, h=16), [100, 120, 140], caption="walks", label="knight", source="k")
    b = Animation("ooze", make_frames(2, w=16, h=8, seed=1), [80, 80], label="slime", source="s")
    c = Animation("blink", make_frames(1, w=16, h=16, seed=2), [50], source="x")
    ds = animations_to_imageset([a, b, c], size=32)
    assert tuple(ds.images.shape) == (6, 4, 32, 32) and ds.images.dtype == torch.uint8
    assert ds.class_names == ["knight", "slime"]
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, -1]
    assert ds.captions == ["walks"] * 3 + [None] * 3
    assert ds.meta[1] == {"animation": "walk", "frame": 1, "num_frames": 3, "duration_ms": 120}
    assert ds.meta[4]["num_frames"] == 2 and ds.paths[4] == "s#ooze/1"
    # 16 -> 32 is an exact 2x nearest upscale
    up = a.frames[2].repeat(2, 0).repeat(2, 1)
    assert np.array_equal(ds.images[2].permute(1, 2, 0).numpy(), up)
    # 16x8 padded (transparent) to 16x16 then 2x: rows 0..7 and 24..31 are empty
    ooze = ds.images[3].permute(1, 2, 0).numpy()
    assert not ooze[:8].any() and not ooze[24:].any()
    assert np.array_equal(ooze[8:24], b.frames[0].repeat(2, 0).repeat(2, 1))
    rgb = animations_to_imageset([a], size=16, channels=3)
    assert tuple(rgb.images.shape) == (3, 3, 16, 16)
    with pytest.raises(DataError, match="no frames"):
        animations_to_imageset([], size=16)


def test_animation_validates():
    with pytest.raises(DataError, match="2 frames but 1 durations"):
        Animation("x", make_frames(2), [100])
    with pytest.raises(DataError, match="uint8 RGBA"):
        Animation("x", [np.zeros((4, 4, 3), np.uint8)], [100])
    with pytest.raises(DataError, match="different sizes"):
        Animation("x", [np.zeros((4, 4, 4), np.uint8), np.zeros((4, 5, 4), np.uint8)], [100, 100])
