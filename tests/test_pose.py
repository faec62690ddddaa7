import json
import sys

import numpy as np
import pytest

from spriteforge.data.dataset import POSE_JOINTS, POSE_LIMBS, DataError
from spriteforge.data.pose import (
    LIMB_GROUPS,
    OPENPOSE_COLORS,
    convert_layout,
    load_pose_json,
    pose_from_image_mediapipe,
    read_pose_json,
    render_pose_map,
    render_pose_maps,
    rescale_pose,
    save_pose_json,
)

J = {name: i for i, name in enumerate(POSE_JOINTS)}


def write(tmp_path, doc, name="pose.json"):
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def distinct_points(k, conf=0.9):
    """k points with distinct, recognisable coordinates: point i at (10 + i, 100 + 2 i)."""
    return [[10.0 + i, 100.0 + 2 * i, conf] for i in range(k)]


# ---------------------------------------------------------------- layouts

def test_openpose18_loads_as_is(tmp_path):
    frames = [distinct_points(18), distinct_points(18, conf=1.0)]
    frames[1][J["l_wrist"]] = [0, 0, 0]                       # OpenPose's "missing"
    kp = load_pose_json(write(tmp_path, {"layout": "openpose18", "width": 64, "height": 64, "frames": frames}))
    assert kp.shape == (2, 18, 3) and kp.dtype == np.float32
    assert np.allclose(kp[0, :, :2], np.array(frames[0])[:, :2])
    assert kp[0, :, 2].tolist() == [1.0] * 18                 # visibility is binary
    assert kp[1, J["l_wrist"]].tolist() == [0, 0, 0] and kp[1, :, 2].sum() == 17


def test_body25_drops_midhip_and_feet(tmp_path):
    pts = distinct_points(25)                                   # BODY_25 point i at (10+i, 100+2i)
    kp = load_pose_json(write(tmp_path, {"layout": "openpose25", "frames": [pts]}))[0]
    expect = {"nose": 0, "neck": 1, "r_shoulder": 2, "l_wrist": 7, "r_hip": 9, "r_knee": 10, "r_ankle": 11,
              "l_hip": 12, "l_ankle": 14, "r_eye": 15, "l_eye": 16, "r_ear": 17, "l_ear": 18}
    for name, src in expect.items():
        assert kp[J[name], :2].tolist() == [10 + src, 100 + 2 * src], name
    xs = kp[:, 0].tolist()
    assert 10 + 8 not in xs and all(10 + i not in xs for i in range(19, 25))   # MidHip, feet gone


def test_mediapipe33_normalized_neck_from_shoulders(tmp_path):
    W, H = 200, 100
    lm = [[0.5, 0.5, 0.0, 0.99] for _ in range(33)]
    lm[0] = [0.5, 0.1, 0.0, 0.99]               # nose
    lm[11] = [0.6, 0.3, 0.0, 0.99]              # left shoulder (person's left = image right)
    lm[12] = [0.4, 0.3, 0.0, 0.99]              # right shoulder
    lm[23] = [0.55, 0.6, 0.0, 0.99]             # left hip
    lm[24] = [0.45, 0.6, 0.0, 0.99]             # right hip
    lm[2] = [0.52, 0.08, 0.0, 0.99]             # left eye
    lm[5] = [0.48, 0.08, 0.0, 0.99]             # right eye
    lm[28] = [0.45, 0.95, 0.0, 0.2]             # right ankle, low visibility
    frame2 = [dict(x=p[0], y=p[1], visibility=p[3]) for p in lm]
    frame2[12]["visibility"] = 0.1              # right shoulder hidden -> neck hidden too
    kp = load_pose_json(write(tmp_path, {"layout": "mediapipe33", "width": W, "height": H, "frames": [lm, frame2]}))
    assert kp.shape == (2, 18, 3)
    f = kp[0]
    assert np.allclose(f[J["neck"]], [100, 30, 1])
    assert np.allclose(f[J["l_shoulder"]], [120, 30, 1]) and np.allclose(f[J["r_shoulder"]], [80, 30, 1])
    assert np.allclose(f[J["l_hip"]], [110, 60, 1]) and np.allclose(f[J["r_hip"]], [90, 60, 1])
    assert np.allclose(f[J["nose"]], [100, 10, 1])
    assert np.allclose(f[J["l_eye"]], [104, 8, 1]) and np.allclose(f[J["r_eye"]], [96, 8, 1])
    assert f[J["r_ankle"]].tolist() == [0, 0, 0]               # visibility 0.2 < 0.5
    assert kp[1, J["neck"]].tolist() == [0, 0, 0] and kp[1, J["r_shoulder"], 2] == 0
    assert kp[1, J["l_shoulder"], 2] == 1
    # a lower threshold keeps the ankle
    kp2 = load_pose_json(tmp_path / "pose.json", min_conf=0.1)
    assert np.allclose(kp2[0, J["r_ankle"]], [90, 95, 1])


def test_coco17_neck_and_left_right(tmp_path):
    pts = distinct_points(17)
    pts[5], pts[6] = [40, 20, 1], [20, 24, 1]   # l_shoulder, r_shoulder
    kp = load_pose_json(write(tmp_path, {"layout": "coco17", "frames": [sum(pts, [])]}))[0]   # flat frame
    assert np.allclose(kp[J["neck"]], [30, 22, 1])
    assert kp[J["l_eye"], :2].tolist() == [11, 102] and kp[J["r_eye"], :2].tolist() == [12, 104]
    assert kp[J["r_hip"], :2].tolist() == [22, 124] and kp[J["l_ankle"], :2].tolist() == [25, 130]


def test_native_openpose_picks_most_confident_person(tmp_path):
    weak = [v for p in distinct_points(25, conf=0.2) for v in p]
    strong = [v for p in distinct_points(25, conf=0.8) for v in p]
    strong[3 * 9:3 * 9 + 2] = [77, 88]                     # BODY_25 RHip
    doc = {"version": 1.3, "people": [{"pose_keypoints_2d": weak}, {"pose_keypoints_2d": strong}],
           "canvas_width": 512, "canvas_height": 256}
    seq = read_pose_json(write(tmp_path, doc))
    assert seq.keypoints.shape == (1, 18, 3) and seq.layout == "openpose25"
    assert (seq.width, seq.height) == (512, 256)
    assert seq.keypoints[0, J["r_hip"], :2].tolist() == [77, 88]
    # COCO-18 native output (54 numbers), rescaled to 32 px from the canvas size
    doc = {"people": [{"pose_keypoints_2d": [v for p in distinct_points(18) for v in p]}],
           "canvas_width": 64, "canvas_height": 256}
    kp = load_pose_json(write(tmp_path, doc, "b.json"), to_size=32)
    assert kp[0, 0, :2].tolist() == [5, 12.5]


def test_directory_of_frames(tmp_path):
    for i in range(3):
        pts = distinct_points(18)
        pts[0] = [i, i, 1]
        write(tmp_path, {"people": [{"pose_keypoints_2d": sum(pts, [])}]}, f"clip_{i:012d}_keypoints.json")
    kp = load_pose_json(tmp_path)
    assert kp.shape == (3, 18, 3) and kp[:, 0, 0].tolist() == [0, 1, 2]


def test_save_load_roundtrip_and_rescale(tmp_path):
    kp = load_pose_json(write(tmp_path, {"layout": "openpose18", "width": 64, "height": 128,
                                         "frames": [distinct_points(18)]}))
    save_pose_json(tmp_path / "out.json", kp, 64, 128)
    back = read_pose_json(tmp_path / "out.json")
    assert np.allclose(back.keypoints, kp) and (back.width, back.height) == (64, 128)
    small = load_pose_json(tmp_path / "out.json", to_size=32)
    assert np.allclose(small[0, 0], [5, 25, 1])              # (10, 100) * (32/64, 32/128)


# ---------------------------------------------------------------- errors

BAD = [
    ("{not json", "not valid JSON"),
    ({"frames": [distinct_points(18)]}, "missing key 'layout'"),
    ({"layout": "openpose18"}, "missing key 'frames'"),
    ({"layout": "openpose19", "frames": []}, "unknown layout 'openpose19'"),
    ({"layout": "openpose18", "frames": []}, "frame count 0"),
    ({"layout": "openpose18", "frames": [distinct_points(17)]}, "frame 0: has 17 points; layout 'openpose18' needs 18 (did you mean layout 'coco17'?)"),
    ({"layout": "openpose18", "frames": [distinct_points(18), distinct_points(33)]}, "frame 1: has 33 points"),
    ({"layout": "openpose18", "frames": [[["a", 1, 1]] * 18]}, "frame 0 point 0: expected a number"),
    ({"layout": "openpose18", "frames": [[[1, 2, 3, 4, 5]] * 18]}, "2 or 3"),
    ({"layout": "coco17", "frames": [[1.0] * 50]}, "flat frame has 50 numbers"),
    ({"layout": "mediapipe33", "frames": [distinct_points(33)]}, "need 'width' and 'height'"),
    ({"layout": "openpose18", "width": 10, "frames": [distinct_points(18)]}, "not both"),
    ({"people": []}, "no person"),
    ({"people": [{"face_keypoints_2d": []}]}, "missing key 'pose_keypoints_2d'"),
    ({"people": [{"pose_keypoints_2d": [1.0] * 60}]}, "has 60 numbers; expected 75 (BODY_25) or 54"),
    ([1, 2, 3], "top level must be a JSON object"),
]


@pytest.mark.parametrize("doc,problem", BAD, ids=[p for _, p in BAD])
def test_bad_json_names_file_and_problem(tmp_path, doc, problem):
    p = write(tmp_path, doc, "broken_pose.json")
    with pytest.raises(DataError) as ei:
        load_pose_json(p)
    msg = str(ei.value)
    assert str(p) in msg and problem in msg, msg


def test_missing_file_and_size_needed_for_rescale(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_pose_json(tmp_path / "nope.json")
    p = write(tmp_path, {"layout": "openpose18", "frames": [distinct_points(18)]})
    with pytest.raises(DataError, match="no image size"):
        load_pose_json(p, to_size=32)
    assert load_pose_json(p, to_size=32, from_size=64)[0, 0, 0] == 5


# ---------------------------------------------------------------- rescale

def test_rescale_stretch_and_fit():
    kp = np.zeros((18, 3), np.float32)
    kp[0] = (320, 240, 1)
    kp[1] = (0, 480, 1)
    s = rescale_pose(kp, (640, 480), 32)
    assert np.allclose(s[0], [16, 16, 1]) and np.allclose(s[1], [0, 32, 1])
    assert s[2].tolist() == [0, 0, 0]                         # missing stays missing
    f = rescale_pose(kp, (640, 480), 32, mode="fit")          # scale 0.05, 4 px bars top and bottom
    assert np.allclose(f[0], [16, 16, 1]) and np.allclose(f[1], [0, 28, 1])
    assert rescale_pose(kp[None, None], 640, 64).shape == (1, 1, 18, 3)


# ---------------------------------------------------------------- rendering

def skeleton():
    kp = np.zeros((18, 3), np.float32)
    pts = {"nose": (16, 5), "neck": (16, 9), "r_shoulder": (12, 9), "r_elbow": (10, 14), "r_wrist": (9, 18),
           "l_shoulder": (20, 9), "l_elbow": (22, 14), "l_wrist": (23, 18), "r_hip": (14, 19), "r_knee": (14, 24),
           "r_ankle": (14, 30), "l_hip": (18, 19), "l_knee": (18, 24), "l_ankle": (18, 30), "r_eye": (15, 4),
           "l_eye": (17, 4), "r_ear": (14, 5), "l_ear": (18, 5)}
    for name, (x, y) in pts.items():
        kp[J[name]] = (x + 0.5, y + 0.5, 1)                   # pixel centres
    return kp


def test_render_draws_limb_pixels_in_their_channel():
    kp = skeleton()
    m = render_pose_map(kp, 32, thickness=1)
    assert m.shape == (32, 32, 3) and m.dtype == np.uint8
    # right lower leg: knee (14,24) -> ankle (14,30), vertical, legs channel G, right = 128
    assert (m[24:31, 14, 1] == 128).all()
    # left lower leg at x=18, full intensity
    assert (m[24:31, 18, 1] == 255).all()
    # shoulders line y=9 from x=12..20 in the arms channel (left half 255, right half 128)
    assert (m[9, 12:16, 0] == 128).all() and (m[9, 17:21, 0] == 255).all()
    # neck -> nose is head channel
    assert (m[5:10, 16, 2] == 255).all()
    # nothing far from the skeleton, nothing in other channels on the legs
    assert m[:3].sum() == 0 and m[:, :8].sum() == 0 and m[:, 25:].sum() == 0
    assert (m[25:31, 14, [0, 2]] == 0).all()
    # every drawn pixel is one of the documented levels
    assert set(np.unique(m).tolist()) <= {0, 128, 255}
    assert np.array_equal(m, render_pose_map(kp.copy(), 32, thickness=1))     # deterministic


def test_render_skips_invisible_limbs_and_is_crisp():
    kp = skeleton()
    kp[J["r_ankle"]] = 0
    m = render_pose_map(kp, 32, thickness=1)
    assert (m[25:31, 14, 1] == 0).all() and m[24, 14, 1] == 128   # knee still drawn by thigh
    # a diagonal limb drawn 1 px thick: exactly one pixel per row
    kp2 = np.zeros((18, 3), np.float32)
    kp2[J["l_hip"]] = (2.5, 2.5, 1)
    kp2[J["l_knee"]] = (12.5, 22.5, 1)
    m2 = render_pose_map(kp2, 32, thickness=1)
    rows = (m2[..., 1] > 0).sum(1)
    assert rows[2:23].tolist() == [1] * 21 and rows.sum() == 21
    thick = render_pose_map(kp2, 32, thickness=3)
    assert (thick[..., 1] > 0).sum() > 2.5 * 21
    assert render_pose_map(np.zeros((18, 3)), 32).sum() == 0


def test_render_default_thickness_scales_and_out_of_bounds_is_safe():
    kp = rescale_pose(skeleton(), 32, 128)
    m = render_pose_map(kp, 128)                               # thickness 4
    assert ((m[..., 1] > 0).sum(1) >= 4).sum() > 40
    far = skeleton()
    far[J["l_ankle"]] = (1e6, -1e6, 1)
    assert render_pose_map(far, 32).shape == (32, 32, 3)


def test_openpose_style_and_batch():
    kp = skeleton()
    m = render_pose_map(kp, 64, thickness=1, style="openpose")
    i = POSE_LIMBS.index((9, 10))                              # r_knee -> r_ankle
    assert tuple(m[27, 14]) == OPENPOSE_COLORS[i]              # midway between (14, 24) and (14, 30)
    assert tuple(m[5, 16]) == OPENPOSE_COLORS[0]               # the nose dot is drawn over its limbs
    maps = render_pose_maps(np.stack([kp, kp]), 32)
    assert maps.shape == (2, 32, 32, 3) and np.array_equal(maps[0], maps[1])
    assert set(LIMB_GROUPS) == set(POSE_LIMBS)
    with pytest.raises(ValueError):
        render_pose_map(kp, 32, style="rainbow")


def test_convert_layout_rejects_wrong_shape():
    with pytest.raises(ValueError, match="mediapipe33"):
        convert_layout(np.zeros((1, 18, 3)), "mediapipe33")


def test_mediapipe_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe", None)        # import mediapipe -> ImportError
    with pytest.raises(ImportError, match=r"spriteforge\[pose\]"):
        pose_from_image_mediapipe([np.zeros((32, 32, 4), np.uint8)])


def test_mediapipe_runs_offline_when_installed():
    pytest.importorskip("mediapipe")                           # optional extra: spriteforge[pose]
    blank = np.zeros((32, 32, 4), np.uint8)
    kp = pose_from_image_mediapipe([blank, blank[..., :3]])
    assert kp.shape == (2, 18, 3) and kp.dtype == np.float32 and kp.sum() == 0   # no person -> all missing
