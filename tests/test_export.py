"""Export (sheet, frames, previews, Aseprite JSON, Godot SpriteFrames) and pixel-art clean-up."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from spriteforge.animation.export import (ExportError, export_animation, make_sheet, remove_strays, shared_palette,
                                          threshold_alpha)
from spriteforge.animation.sheets import Animation, load_aseprite_json, load_rgba, slice_grid
from spriteforge.data.dataset import DataError


def make_frames(n, w=12, h=10, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        f = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
        f[..., 3] = rng.choice(np.array([0, 255], np.uint8), (h, w))
        f[f[..., 3] == 0] = 0
        f[0, 0] = [i, 255 - i, 7, 255]
        frames.append(f)
    return frames


def pixel_art_frames(n, w=10, h=10):
    """Few colours, binary alpha: what GIF can hold exactly."""
    pal = np.array([[20, 30, 40], [200, 50, 50], [50, 200, 50], [250, 250, 90]], np.uint8)
    rng = np.random.default_rng(1)
    frames = []
    for i in range(n):
        f = np.zeros((h, w, 4), np.uint8)
        idx = rng.integers(0, 4, (h, w))
        on = rng.random((h, w)) < 0.6
        f[..., :3] = pal[idx]
        f[..., 3] = np.where(on, 255, 0)
        f[~on] = 0
        f[i % h, :, :] = [250, 250, 90, 255]          # frames differ
        frames.append(f)
    return frames


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


# --------------------------------------------------------------------------- sheet

def test_make_sheet_exact_grid():
    frames = make_frames(5, w=7, h=9)
    sheet, rects = make_sheet(frames, columns=2, padding=3)
    assert sheet.shape == (3 * 9 + 2 * 3, 2 * 7 + 3, 4)
    assert rects == [(0, 0, 7, 9), (10, 0, 7, 9), (0, 12, 7, 9), (10, 12, 7, 9), (0, 24, 7, 9)]
    for f, (x, y, w, h) in zip(frames, rects):
        assert np.array_equal(sheet[y:y + h, x:x + w], f)
    assert not sheet[:, 7:10].any() and not sheet[9:12].any()       # padding is transparent
    assert not sheet[24:, 10:].any()                                 # unused cell
    assert make_sheet(frames)[0].shape == (9, 35, 4)                 # default: one strip
    with pytest.raises(ExportError, match=r"same size.*1=8x9"):
        make_sheet([frames[0], np.zeros((9, 8, 4), np.uint8)])


# --------------------------------------------------------------------------- helpers: format checks

def check_aseprite_schema(doc):
    """The fields Aseprite writes and Phaser/PixiJS read; returns the list of problems."""
    problems = []
    rect_keys, size_keys = {"x", "y", "w", "h"}, {"w", "h"}
    frames = doc.get("frames")
    if isinstance(frames, dict):
        items = list(frames.items())
    elif isinstance(frames, list):
        items = [(f.get("filename"), f) for f in frames]
        problems += [f"array frame {i} has no filename" for i, (k, _) in enumerate(items) if not isinstance(k, str)]
    else:
        return ["frames is neither a hash nor an array"]
    meta = doc.get("meta", {})
    for key, typ in (("app", str), ("version", str), ("image", str), ("format", str), ("scale", str),
                     ("size", dict), ("frameTags", list)):
        if not isinstance(meta.get(key), typ):
            problems.append(f"meta.{key} missing or not {typ.__name__}")
    if meta.get("format") != "RGBA8888":
        problems.append("meta.format is not RGBA8888")
    size = meta.get("size", {})
    if set(size) != size_keys:
        problems.append("meta.size must be {w,h}")
    for name, f in items:
        for key, keys in (("frame", rect_keys), ("spriteSourceSize", rect_keys), ("sourceSize", size_keys)):
            if not isinstance(f.get(key), dict) or set(f[key]) != keys or \
                    not all(isinstance(v, int) for v in f[key].values()):
                problems.append(f"{name}: {key} must be {sorted(keys)} ints")
        for key in ("rotated", "trimmed"):
            if not isinstance(f.get(key), bool):
                problems.append(f"{name}: {key} must be a bool")
        if not isinstance(f.get("duration"), int) or f["duration"] <= 0:
            problems.append(f"{name}: duration must be a positive int")
        r = f.get("frame", {})
        if r and (r["x"] + r["w"] > size.get("w", 0) or r["y"] + r["h"] > size.get("h", 0)):
            problems.append(f"{name}: frame outside meta.size")
    for t in meta.get("frameTags", []):
        if set(t) < {"name", "from", "to", "direction"}:
            problems.append(f"tag {t} lacks name/from/to/direction")
        elif not (0 <= t["from"] <= t["to"] < len(items)) or t["direction"] not in ("forward", "reverse", "pingpong"):
            problems.append(f"tag {t} out of range")
    return problems


def parse_tres(text):
    """A tiny parser for the subset of Godot's text resource format that SpriteFrames uses."""
    sections = []                                    # (kind, attrs, body text)
    for block in re.split(r"^(?=\[)", text, flags=re.M):
        if not block.strip():
            continue
        m = re.match(r"\[(\w+)((?:\s+\w+=(?:\"[^\"]*\"|\S+?))*)\]\n?", block)
        assert m, f"bad section header: {block.splitlines()[0]!r}"
        attrs = dict((k, v.strip('"')) for k, v in re.findall(r"(\w+)=(\"[^\"]*\"|[^\s\]]+)", m.group(2)))
        sections.append((m.group(1), attrs, block[m.end():]))
    kind, head, _ = sections[0]
    assert kind == "gd_resource", "first entry must be the gd_resource header"
    out = {"header": head, "ext": {}, "sub": {}, "animations": None}
    for kind, attrs, body in sections[1:]:
        if kind == "ext_resource":
            out["ext"][attrs["id"]] = attrs
        elif kind == "sub_resource":
            props = dict(re.findall(r"^(\w+) = (.+)$", body, flags=re.M))
            atlas = re.fullmatch(r'ExtResource\("([^"]+)"\)', props["atlas"]).group(1)
            region = tuple(float(v) for v in re.fullmatch(r"Rect2\(([^)]*)\)", props["region"]).group(1).split(","))
            out["sub"][attrs["id"]] = {"type": attrs["type"], "atlas": atlas, "region": region}
        elif kind == "resource":
            value = re.fullmatch(r"animations = (.*)", body.strip(), flags=re.S).group(1)
            value = re.sub(r'SubResource\("([^"]+)"\)', r'{"SubResource": "\1"}', value)
            value = re.sub(r'&"', '"', value)                      # StringName literal
            out["animations"] = json.loads(value)
        else:
            raise AssertionError(f"unexpected section {kind}")
    return out


# --------------------------------------------------------------------------- export_animation

def test_export_round_trip_sheet_frames_json_tres(tmp_path):
    frames = make_frames(6)
    durs = [100, 100, 200, 100, 50, 100]
    res = export_animation(frames, tmp_path / "out", "walk", columns=4, padding=1, duration_ms=durs)
    out = tmp_path / "out"
    for rel in ("sheet.png", "preview.gif", "preview.png", "preview.webp", "sheet.json", "walk.tres",
                "frames/walk_0.png", "frames/walk_5.png"):
        assert (out / rel).is_file(), rel
    # grid sheet -> slice_grid gives the frames back pixel for pixel
    assert same(slice_grid(out / "sheet.png", cols=4, rows=2, spacing=1)[:6], frames)
    assert same([load_rgba(p) for p in res["frames"]], frames)
    # Aseprite JSON: documented fields, and it imports back
    doc = json.loads((out / "sheet.json").read_text())
    assert check_aseprite_schema(doc) == []
    assert list(doc["frames"]) == ["0", "1", "2", "3", "4", "5"]   # Phaser createFromAseprite keys
    assert doc["meta"]["image"] == "sheet.png" and doc["meta"]["size"] == {"w": 4 * 12 + 3, "h": 2 * 10 + 1}
    assert doc["meta"]["frameTags"] == [{"name": "walk", "from": 0, "to": 5, "direction": "forward"}]
    (anim,) = load_aseprite_json(out / "sheet.json")
    assert anim.name == "walk" and same(anim.frames, frames) and anim.durations_ms == durs
    # Godot SpriteFrames: parses, regions match the sheet
    tres = parse_tres((out / "walk.tres").read_text())
    assert tres["header"]["type"] == "SpriteFrames" and tres["header"]["format"] == "3"
    assert int(tres["header"]["load_steps"]) == len(tres["sub"]) + len(tres["ext"]) + 1
    (ext_id, ext), = tres["ext"].items()
    assert ext["type"] == "Texture2D" and ext["path"] == "sheet.png"
    sheet = load_rgba(out / "sheet.png")
    (gd_anim,) = tres["animations"]
    assert gd_anim["name"] == "walk" and gd_anim["loop"] is True
    assert gd_anim["speed"] == pytest.approx(20.0)                  # shortest frame (50 ms) = 1 unit
    assert [f["duration"] for f in gd_anim["frames"]] == pytest.approx([2, 2, 4, 2, 1, 2])
    got_ms = [1000 * f["duration"] / gd_anim["speed"] for f in gd_anim["frames"]]
    assert got_ms == pytest.approx(durs)
    regions = []
    for f in gd_anim["frames"]:
        sub = tres["sub"][f["texture"]["SubResource"]]
        assert sub["type"] == "AtlasTexture" and sub["atlas"] == ext_id
        x, y, w, h = (int(v) for v in sub["region"])
        regions.append((x, y, w, h))
    assert regions == res["rects"]
    assert same([sheet[y:y + h, x:x + w] for x, y, w, h in regions], frames)


def test_export_godot_res_path_and_no_loop(tmp_path):
    frames = make_frames(3)
    export_animation(frames, tmp_path, "jump", loop=False, formats=("godot",), godot_res_dir="res://sprites/hero/",
                     duration_ms=125)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jump.tres", "sheet.png"]
    tres = parse_tres((tmp_path / "jump.tres").read_text())
    assert list(tres["ext"].values())[0]["path"] == "res://sprites/hero/sheet.png"
    (a,) = tres["animations"]
    assert a["loop"] is False and a["speed"] == pytest.approx(8.0) and all(f["duration"] == 1.0 for f in a["frames"])


def test_export_aseprite_array_layout(tmp_path):
    frames = make_frames(3)
    export_animation(frames, tmp_path, "idle", formats=("aseprite",), json_layout="array", duration_ms=[90, 80, 70])
    doc = json.loads((tmp_path / "sheet.json").read_text())
    assert isinstance(doc["frames"], list) and [f["filename"] for f in doc["frames"]] == ["0", "1", "2"]
    assert check_aseprite_schema(doc) == []
    (anim,) = load_aseprite_json(tmp_path / "sheet.json")
    assert same(anim.frames, frames) and anim.durations_ms == [90, 80, 70]


def _read_animation(path):
    with Image.open(path) as im:
        frames, durs = [], []
        for k in range(im.n_frames):
            im.seek(k)
            frames.append(np.array(im.convert("RGBA")))
            durs.append(int(round(im.info["duration"])))
        return frames, durs, im.info.get("loop")


@pytest.mark.parametrize("fmt,file", [("gif", "preview.gif"), ("apng", "preview.png"), ("webp", "preview.webp")])
def test_previews_frame_count_durations_pixels(tmp_path, fmt, file):
    frames = pixel_art_frames(5)
    durs = [100, 200, 100, 300, 50]
    export_animation(frames, tmp_path, "walk", duration_ms=durs, scale=3, formats=(fmt,))
    got, got_durs, loop = _read_animation(tmp_path / file)
    assert len(got) == 5 and got_durs == durs and loop == 0
    for g, f in zip(got, frames):
        up = f.repeat(3, 0).repeat(3, 1)                 # previews are upscaled 3x nearest
        assert g.shape == up.shape
        assert np.array_equal(g[..., 3], up[..., 3])     # transparency kept (GIF: transparent index)
        vis = up[..., 3] > 0
        assert np.array_equal(g[vis][:, :3], up[vis][:, :3])


def test_gif_transparency_disposal_and_many_colours(tmp_path):
    frames = make_frames(4, w=24, h=24)                  # ~1700 random colours: must be quantised
    export_animation(frames, tmp_path, "noise", formats=("gif",), loop=False)
    with Image.open(tmp_path / "preview.gif") as im:
        assert im.n_frames == 4 and "loop" not in im.info     # play once: no NETSCAPE loop block
        for k, f in enumerate(frames):
            im.seek(k)
            assert im.disposal_method == 2
            assert np.array_equal(np.array(im.convert("RGBA"))[..., 3], f[..., 3])
    # loop=False for APNG is one play
    export_animation(frames, tmp_path / "a", "noise", formats=("apng",), loop=False)
    with Image.open(tmp_path / "a" / "preview.png") as im:
        assert im.info["loop"] == 1


def test_export_refuses_to_overwrite(tmp_path):
    frames = make_frames(2)
    export_animation(frames, tmp_path, "walk", formats=("png", "godot"))
    before = (tmp_path / "sheet.png").read_bytes()
    other = make_frames(2, seed=5)
    with pytest.raises(ExportError) as e:
        export_animation(other, tmp_path, "walk", formats=("png", "godot"))
    assert str(tmp_path / "sheet.png") in str(e.value) and "overwrite=True" in str(e.value)
    assert isinstance(e.value, DataError)
    assert (tmp_path / "sheet.png").read_bytes() == before            # nothing was touched
    # a single clashing file is enough, even if the others are new, and then nothing is written
    (tmp_path / "sheet.png").unlink()
    with pytest.raises(ExportError, match="walk.tres: already exists"):
        export_animation(other, tmp_path, "walk", formats=("godot",))
    assert not (tmp_path / "sheet.png").exists()
    export_animation(other, tmp_path, "walk", formats=("png", "godot"), overwrite=True)
    assert same(slice_grid(tmp_path / "sheet.png", cols=2), other)


def test_export_accepts_animation_and_validates(tmp_path):
    anim = Animation("hop", make_frames(3), [70, 80, 90], source="x")
    res = export_animation(anim, tmp_path, formats=("aseprite",))
    assert res["json"].name == "sheet.json"
    assert load_aseprite_json(res["json"])[0].durations_ms == [70, 80, 90]
    with pytest.raises(ExportError, match="name 'a/b' must be usable as a file name"):
        export_animation(make_frames(1), tmp_path / "x", "a/b")
    with pytest.raises(ExportError, match="unknown export format"):
        export_animation(make_frames(1), tmp_path / "x", "a", formats=("mp4",))
    with pytest.raises(ExportError, match="scale must be an integer"):
        export_animation(make_frames(1), tmp_path / "x", "a", scale=1.5)
    with pytest.raises(ExportError, match="3 entries for 2 frames"):
        export_animation(make_frames(2), tmp_path / "x", "a", duration_ms=[1, 2, 3])
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------- clean-up

def test_shared_palette_n_colors_across_all_frames():
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (16, 16, 4), dtype=np.uint8) for _ in range(3)]
    for f in frames:
        f[..., 3] = 255
    patch = rng.integers(0, 256, (4, 4, 4), dtype=np.uint8)
    patch[..., 3] = 255
    frames[0][:4, :4] = patch                                    # identical input in two frames
    frames[2][10:14, 6:10] = patch
    out, pal = shared_palette(frames, n_colors=8)
    all_colors = np.unique(np.concatenate([o[..., :3].reshape(-1, 3) for o in out]), axis=0)
    assert len(all_colors) <= 8 and len(pal) <= 8
    assert {"#%02x%02x%02x" % tuple(c) for c in all_colors} <= set(pal)
    assert np.array_equal(out[0][:4, :4], out[2][10:14, 6:10])   # same input -> same colours
    assert all(np.array_equal(o[..., 3], f[..., 3]) for o, f in zip(out, frames))


def test_shared_palette_given_palette_and_exactness(tmp_path):
    frames = pixel_art_frames(3)
    # already within the budget: untouched
    out, pal = shared_palette(frames, n_colors=16)
    assert same(out, frames) and len(pal) == 4
    # a given palette (hex list): every visible pixel is a palette colour, nearest one
    out, pal = shared_palette(frames, palette=["#000000", "#ffffff", "#ff0000"])
    vis = np.concatenate([o[o[..., 3] > 0][:, :3] for o in out])
    assert {tuple(c) for c in np.unique(vis, axis=0)} <= {(0, 0, 0), (255, 255, 255), (255, 0, 0)}
    red = np.all(frames[0][..., :3] == [200, 50, 50], axis=-1) & (frames[0][..., 3] > 0)
    assert red.any() and np.all(out[0][red][:, :3] == [255, 0, 0])
    # a palette image
    img = np.zeros((1, 2, 4), np.uint8)
    img[0, 0] = [10, 10, 10, 255]
    img[0, 1] = [240, 240, 240, 255]
    Image.fromarray(img, mode="RGBA").save(tmp_path / "pal.png")
    out, pal = shared_palette(frames, palette=tmp_path / "pal.png")
    assert pal == ["#0a0a0a", "#f0f0f0"]
    assert {tuple(c) for c in np.unique(np.concatenate([o[o[..., 3] > 0][:, :3] for o in out]), axis=0)} <= \
        {(10, 10, 10), (240, 240, 240)}


def test_threshold_alpha():
    f = np.zeros((1, 5, 4), np.uint8)
    f[0, :, :3] = 100
    f[0, :, 3] = [0, 1, 127, 128, 255]
    (g,) = threshold_alpha([f])
    assert g[0, :, 3].tolist() == [0, 0, 0, 255, 255]
    assert g[0, :3, :3].sum() == 0 and g[0, 3:, :3].tolist() == [[100] * 3] * 2
    assert threshold_alpha([f], t=1)[0][0, :, 3].tolist() == [0, 255, 255, 255, 255]


def test_remove_strays():
    f = np.zeros((8, 8, 4), np.uint8)
    f[1, 1] = [255, 0, 0, 255]            # isolated opaque pixel
    f[1, 5] = [255, 0, 0, 60]             # isolated semi-transparent pixel
    f[5, 1] = f[6, 2] = [0, 255, 0, 255]  # diagonal pair: kept
    f[5:7, 5:8] = [0, 0, 255, 255]        # a blob: kept
    (g,) = remove_strays([f])
    assert g[1, 1, 3] == 0 and g[1, 5, 3] == 0 and not g[1, 1].any()
    assert g[5, 1, 3] == 255 and g[6, 2, 3] == 255 and g[5:7, 5:8, 3].min() == 255
    (g2,) = remove_strays([f], min_neighbors=2)                        # pairs go too, the blob stays
    assert g2[5, 1, 3] == 0 and g2[6, 2, 3] == 0 and g2[5:7, 5:8, 3].min() == 255
    assert f[1, 1, 3] == 255                                           # input not modified
