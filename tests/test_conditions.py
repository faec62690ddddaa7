"""Attribute labels and control maps: parsing, dropout, checkpoint round trip, pose-driven animation."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from spriteforge.animation.animate import animate
from spriteforge.config import ConfigError, DataConfig, ModelConfig, RunConfig, SampleConfig, TrainConfig
from spriteforge.data.builtin import render_builtin
from spriteforge.data.conditions import (attribute_labels, attribute_row, attribute_vocab, control_maps, fit_poses,
                                         parse_attributes, pose_box)
from spriteforge.data.dataset import DataError
from spriteforge.pipeline import generate, load_model
from spriteforge.training.batches import make_source, sample_batch
from spriteforge.training.loop import train

ATTRS = ("archetype", "palette", "accessory", "action", "direction")
VOCAB = {"archetype": ["knight", "mage", "slime"], "palette": ["blue", "red"], "accessory": ["none", "sword"],
         "action": ["idle", "jump", "run", "walk"], "direction": ["front", "left", "right"]}


@pytest.mark.parametrize("text,expected", [
    ("a red knight walking right", {"palette": "red", "archetype": "knight", "action": "walk", "direction": "right"}),
    ("A blue slime jumping toward the camera", {"palette": "blue", "archetype": "slime", "action": "jump",
                                                "direction": "front"}),
    ("mage with a sword, running left", {"archetype": "mage", "accessory": "sword", "action": "run", "direction": "left"}),
    ("knights", {"archetype": "knight"}),
    ("a red knight with no accessory walking right", {"palette": "red", "archetype": "knight", "accessory": "none",
                                                      "action": "walk", "direction": "right"}),
    ("a mage without an accessory", {"archetype": "mage", "accessory": "none"}),
])
def test_prompts_become_attributes(text, expected):
    assert parse_attributes(text, VOCAB) == expected


def test_prompt_errors_name_the_problem():
    with pytest.raises(ConfigError, match="two values of palette"):
        parse_attributes("a red and blue knight", VOCAB)
    with pytest.raises(ConfigError, match="names none of the attributes.*palette: blue, red"):
        parse_attributes("a dragon", VOCAB)
    assert parse_attributes("", VOCAB) == {}
    with pytest.raises(ConfigError, match="palette is one of blue, red"):
        attribute_row(VOCAB, {"palette": "pink"})
    with pytest.raises(ConfigError, match="no attribute 'hat'"):
        attribute_row(VOCAB, {"hat": "yes"})
    assert attribute_row(VOCAB, {"palette": "red", "action": "walk"}).tolist() == [-1, 1, -1, 3, -1]


def test_attribute_labels_and_control_maps_from_builtin():
    data = render_builtin(size=16, characters=3, actions=("walk",))
    vocab = attribute_vocab(data, ATTRS)
    labels = attribute_labels(data, vocab)
    assert labels.shape == (len(data), 5) and (labels >= 0).all()
    m = data.meta[5]
    assert [vocab[n][i] for n, i in zip(ATTRS, labels[5].tolist())] == [m[n] for n in ATTRS]
    maps = control_maps(data, ("pose", "edges", "silhouette"))
    assert maps.shape == (len(data), 5, 16, 16) and maps.dtype == torch.uint8
    assert torch.equal(maps[:, 4] > 0, data.images[:, 3] > 127)  # silhouette = alpha
    assert (maps[:, :3].flatten(1).amax(1) > 0).all()             # every frame has a skeleton
    with pytest.raises(ConfigError, match="no image's metadata has it"):
        attribute_vocab(data, ("colour",))


def test_pose_fit_places_the_sequence_in_the_training_box():
    box = [10.0, 4.0, 22.0, 30.0]
    kps = np.zeros((2, 18, 3), np.float32)
    kps[0, :4] = [[100, 100, 1], [140, 300, 1], [120, 500, 1], [0, 0, 0]]
    kps[1, :3] = [[200, 120, 1], [160, 350, 1], [130, 480, 1]]
    out = fit_poses(kps, box)
    vis = out[..., 2] > 0
    ys, xs = out[..., 1][vis], out[..., 0][vis]
    assert ys.min() == pytest.approx(4.0) and ys.max() == pytest.approx(30.0)
    assert (xs.min() + xs.max()) / 2 == pytest.approx(16.0)
    assert out[0, 3].tolist() == [0, 0, 0]  # missing joints stay missing
    data = render_builtin(size=32, characters=2, actions=("idle",))
    b = pose_box(data)
    assert 0 <= b[0] < b[2] <= 32 and 0 <= b[1] < b[3] <= 32


def _cfg(**model) -> RunConfig:
    return RunConfig(data=DataConfig(size=16, builtin_characters=3),
                     model=ModelConfig(preset="tiny", attributes=ATTRS, control=("pose",), **model),
                     train=TrainConfig(steps=3, batch_size=8, frames=4, sample_every=0, val_every=2, log_every=1,
                                       sample_n=8, sample_steps=2, bf16=False))


def test_dropout_of_attributes_and_control_maps():
    data = render_builtin(size=16, characters=3, actions=("walk",))
    vocab = attribute_vocab(data, ATTRS)
    src = make_source(data, list(range(len(data))), None, True, attribute_labels(data, vocab),
                      control_maps(data, ("pose",)))
    for att_p, ctl_p in ((0.0, 0.0), (1.0, 1.0)):
        cfg = _cfg(attribute_dropout=att_p, control_dropout=ctl_p, label_dropout=0.0)
        _, _, cond = sample_batch(src, 8, 4, cfg, torch.Generator().manual_seed(0), "cpu")
        assert ((cond["attributes"] == -1).all() if att_p else (cond["attributes"] >= 0).all())
        per_frame = cond["control"].flatten(1).amax(1)
        assert ((per_frame == 0).all() if ctl_p else (per_frame > 0).all())


@pytest.fixture(scope="module")
def attr_model(tmp_path_factory):
    run = tmp_path_factory.mktemp("attr") / "run"
    train(_cfg(), run, quiet=True)
    return run


def test_attributes_and_pose_box_round_trip_through_checkpoint(attr_model):
    m = load_model(attr_model)
    data = render_builtin(size=16, characters=3)
    assert m.attribute_values == attribute_vocab(data, ATTRS)
    assert m.config.model.control == ("pose",) and m.config.model.control_channels == 3
    assert m.pose_box == pose_box(data)
    assert m.config.model.attribute_sizes == tuple(len(v) for v in m.attribute_values.values())


def test_attribute_prompt_steers_and_control_is_optional(attr_model):
    m = load_model(attr_model)
    sc = SampleConfig(n=1, frames=4, steps=2, cfg=2.0, seed=3)
    a = generate(m, SampleConfig(**{**sc.__dict__, "prompt": "a red knight walking right"}))
    b = generate(m, SampleConfig(**{**sc.__dict__, "prompt": "a blue slime jumping left"}))
    c = generate(m, sc)  # no attributes, no control maps: still samples
    assert a.shape == c.shape == (4, 4, 16, 16) and not torch.equal(a, b)
    again = generate(m, SampleConfig(**{**sc.__dict__, "prompt": "a red knight walking right"}))
    assert torch.equal(a, again)
    with pytest.raises(ConfigError, match="control maps are"):
        generate(m, sc, control=torch.zeros(4, 1, 16, 16))


def test_attribute_guidance_samples_reproducibly_and_changes_the_result(attr_model):
    m = load_model(attr_model)
    sc = SampleConfig(n=2, frames=3, steps=2, cfg=2.0, seed=3, prompt="a red knight walking right")
    plain = generate(m, sc)
    guided = generate(m, SampleConfig(**{**sc.__dict__, "attr_guidance": 1.0}))
    assert guided.shape == plain.shape and not torch.equal(guided, plain)
    assert torch.equal(guided, generate(m, SampleConfig(**{**sc.__dict__, "attr_guidance": 1.0})))
    with pytest.raises(ConfigError, match="--attr-guidance"):
        SampleConfig(attr_guidance=-1)
    # per attribute: guiding only the action is its own result, reproducible; a name the model lacks is refused
    action = generate(m, SampleConfig(**{**sc.__dict__, "attr_guidance": "action=1"}))
    assert not torch.equal(action, plain) and not torch.equal(action, guided)
    assert torch.equal(action, generate(m, SampleConfig(**{**sc.__dict__, "attr_guidance": "0,action=1"})))
    with pytest.raises(ConfigError, match="--attr-guidance.*'pose' is not an attribute of this model"):
        generate(m, SampleConfig(**{**sc.__dict__, "attr_guidance": "pose=1"}))


def test_pose_sequence_drives_the_frames(attr_model):
    m = load_model(attr_model)
    data = render_builtin(size=16, characters=1, actions=("jump",), directions=("right",))
    poses = np.array([d["pose"] for d in data.meta], np.float32)
    frames = animate(m, "a mage jumping right", frames=8, steps=2, poses=poses)
    assert len(frames) == len(poses)  # the pose count wins over --frames
    free = animate(m, "a mage jumping right", frames=len(poses), steps=2)
    assert not all(np.array_equal(x, y) for x, y in zip(frames, free))
    with pytest.raises(DataError, match="18, 3"):
        animate(m, "a mage", poses=np.zeros((3, 17, 3)), steps=2)


def test_a_model_without_pose_input_refuses_poses(tmp_path):
    run = tmp_path / "run"
    cfg = _cfg()
    cfg.model.control, cfg.model.control_channels = (), 0
    train(cfg, run, quiet=True)
    m = load_model(run)
    with pytest.raises(ConfigError, match="without pose control"):
        animate(m, "a mage", poses=np.zeros((2, 18, 3), np.float32), steps=2)


def test_cli_pose_seq_and_bad_pose_json(attr_model, tmp_path):
    data = render_builtin(size=16, characters=1, actions=("walk",), directions=("right",))
    pose_file = tmp_path / "walk.json"
    pose_file.write_text(json.dumps({"layout": "openpose18", "width": 16, "height": 16,
                                     "frames": [d["pose"] for d in data.meta]}))
    out = tmp_path / "anim"
    cmd = [sys.executable, "-m", "spriteforge.cli", "animate", str(attr_model), "a red mage walking right",
           "--pose-seq", str(pose_file), "--steps", "2", "--out", str(out), "--attr", "accessory=sword"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert len(list((out / "frames").glob("*.png"))) == len(data.meta)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"layout": "openpose18", "frames": [[[1, 2]] * 5]}))
    p = subprocess.run(cmd[:5] + ["--pose-seq", str(bad), "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert p.returncode != 0 and "Traceback" not in p.stderr and "bad.json" in p.stderr + p.stdout
    p = subprocess.run(cmd[:5] + ["--attr", "palette=pink", "--out", str(tmp_path / "y")], capture_output=True, text=True)
    assert p.returncode != 0 and "Traceback" not in p.stderr and "palette is one of" in p.stderr + p.stdout


def test_control_adherence_scores_pose_driven_frames(attr_model):
    from spriteforge.evaluation.control import control_adherence, report_section
    m = load_model(attr_model)
    data = render_builtin(size=16, characters=3, actions=("walk", "jump"))
    res = control_adherence(m, data, n_anims=2, sample_cfg=SampleConfig(steps=2), seed=0)
    assert res["animations"] == 2 and res["frames"] == len(res["per_frame_silhouette_iou"])
    for k in ("silhouette_iou", "edge_f1", "silhouette_iou_without_control", "floor_silhouette_iou_next_frame"):
        assert 0.0 <= res[k] <= 1.0
    assert 0.3 < res["floor_silhouette_iou_next_frame"] < 1.0  # neighbouring real poses overlap, not perfectly
    sec = report_section(res)["control_adherence"]
    assert set(sec["metrics"]) == {"silhouette_iou", "edge_f1"}


def test_outpaint_moves_the_image_and_masks_the_new_strip():
    from spriteforge.pipeline import outpaint_canvas
    img = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4).expand(1, 3, 4, 4).clone()
    moved, keep = outpaint_canvas(img, {"right": 1})
    assert torch.equal(moved[0, 0, :, :3], img[0, 0, :, 1:])     # shifted left by one column
    assert keep[0, 0, :, 3].sum() == 0 and keep[0, 0, :, :3].all()
    moved, keep = outpaint_canvas(img, {"top": 2})
    assert torch.equal(moved[0, 0, 2:], img[0, 0, :2]) and keep[0, 0, :2].sum() == 0
    with pytest.raises(ConfigError, match="leaves nothing"):
        outpaint_canvas(img, {"left": 2, "right": 2})


def test_cli_outpaint_keeps_the_moved_pixels_exactly(attr_model, tmp_path):
    from PIL import Image
    sprite = render_builtin(size=16, characters=1, actions=("idle",), directions=("right",)).images[0]
    Image.fromarray(sprite.permute(1, 2, 0).numpy()).save(tmp_path / "in.png")
    out = tmp_path / "grid.png"
    p = subprocess.run([sys.executable, "-m", "spriteforge.cli", "sample", str(attr_model), "--n", "1", "--steps", "2",
                        "--init", str(tmp_path / "in.png"), "--outpaint", "right=4", "--attr", "palette=gold",
                        "--out", str(out)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    result = np.array(Image.open(tmp_path / "grid" / "sample_0000.png"))
    assert np.array_equal(result[:, :12], sprite.permute(1, 2, 0).numpy()[:, 4:])


def test_pose_template_follows_the_renderers_cycle(attr_model):
    from spriteforge.animation.animate import template_poses
    m = load_model(attr_model)
    data = render_builtin(size=16, characters=3, actions=("jump",), directions=("left",))
    mage = [i for i, d in enumerate(data.meta) if d["archetype"] == "mage"]
    t = template_poses(m, "a mage jumping left", frames=6)
    assert t.shape == (6, 18, 3) and np.allclose(t, np.array([data.meta[i]["pose"] for i in mage]))
    assert template_poses(m, "a mage jumping left", frames=3).shape == (3, 18, 3)
    assert template_poses(m, "a gold mage", frames=4) is None  # no action named: nothing to follow
    a = animate(m, "a mage jumping left", frames=6, steps=2)
    b = animate(m, "a mage jumping left", frames=6, steps=2, pose_template=False)
    assert not all(np.array_equal(x, y) for x, y in zip(a, b))
    # the requested accessory shapes the motion: an attack with a sword is a slash, with a staff a cast
    from spriteforge.data.builtin import render_frame
    from spriteforge.animation.animate import template_character
    arch = next(a for a in m.attribute_values["archetype"] if a != "slime")
    one, two = [a for a in m.attribute_values["accessory"] if a in ("sword", "shield", "staff")][:2]
    body = template_character(m, arch, one)
    assert body.archetype == arch and body.accessory == one
    first = template_poses(m, f"a {arch} attacking right", frames=4, attrs={"accessory": one})
    second = template_poses(m, f"a {arch} attacking right", frames=4, attrs={"accessory": two})
    assert np.allclose(first[0], render_frame(body, "attack", 0, "right", 16)[1]) and not np.allclose(first, second)


def test_cli_sample_follows_the_pose_template_of_the_requested_action(attr_model, tmp_path):
    """`sample` on a built-in pose model draws image i in a pose of the requested action's cycle, as
    `animate` does; --no-pose-template lets the model pick the pose."""
    from PIL import Image
    grids = {}
    for flag in ("--pose-template", "--no-pose-template"):
        out = tmp_path / f"{flag.strip('-')}.png"
        p = subprocess.run([sys.executable, "-m", "spriteforge.cli", "sample", str(attr_model), "--n", "3", "--steps", "2",
                            "--prompt", "a mage jumping left", flag, "--out", str(out)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        grids[flag] = np.array(Image.open(out))
    assert not np.array_equal(grids["--pose-template"], grids["--no-pose-template"])
