"""Frame-set models: any frame count samples, kept frames/pixels stay exact, the export bundle is complete."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from spriteforge.animation.animate import animate
from spriteforge.config import ConfigError, DataConfig, ModelConfig, RunConfig, SampleConfig, TrainConfig
from spriteforge.pipeline import generate, load_model
from spriteforge.training.loop import train


def _frame_cfg(text: bool) -> RunConfig:
    return RunConfig(data=DataConfig(size=16, builtin_characters=2),
                     model=ModelConfig(preset="tiny", text_encoder="minilm" if text else ""),
                     train=TrainConfig(steps=3, batch_size=8, frames=4, sample_every=0, val_every=0, log_every=1,
                                       sample_n=8, sample_steps=2, bf16=False))


@pytest.fixture(scope="module")
def frame_model(tmp_path_factory):
    run = tmp_path_factory.mktemp("anim") / "run"
    train(_frame_cfg(text=True), run, quiet=True)
    return run


def test_text_and_frames_round_trip_through_checkpoint(frame_model):
    m = load_model(frame_model)
    assert m.config.model.frame_attention and m.config.model.text_encoder == "minilm" and m.config.model.text_dim == 384
    assert (frame_model / "text_cache.safetensors").exists()  # captions encoded once, kept with the run


@pytest.mark.parametrize("frames", [1, 2, 5, 8, 16])
def test_any_frame_count_samples(frame_model, frames):
    m = load_model(frame_model)
    imgs = generate(m, SampleConfig(n=1, frames=frames, steps=2, prompt="a red knight walking right", cfg=2.0))
    assert imgs.shape == (frames, 4, 16, 16)


def test_same_seed_same_frames_and_prompt_matters(frame_model):
    m = load_model(frame_model)
    a = animate(m, "a red knight walking right", frames=4, steps=3, seed=3)
    b = animate(m, "a red knight walking right", frames=4, steps=3, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    # the prompt reaches the network (float outputs; 3 training steps are too few to change uint8 pixels)
    x, sigma = torch.randn(2, 4, 16, 16), torch.full((2,), 1.0)
    cond = m.text_cond(["a red knight walking right", "a blue slime jumping left"], "cpu")
    d = m.denoiser(x[:1].repeat(2, 1, 1, 1), sigma, frames=1, frame_phase=torch.zeros(2), **cond)
    assert not torch.allclose(d[0], d[1])


def test_reroll_keeps_other_frames_exactly_and_extend_keeps_base(frame_model):
    m = load_model(frame_model)
    base = animate(m, "a red knight walking right", frames=6, steps=3, seed=1)
    rerolled = animate(m, "a red knight walking right", frames=6, steps=3, seed=2, reroll=[2], base_frames=base)
    same = [np.array_equal(x, y) for x, y in zip(base, rerolled)]
    assert same == [True, True, False, True, True, True]
    longer = animate(m, "a red knight walking right", frames=9, steps=3, seed=2, base_frames=base)
    assert len(longer) == 9 and all(np.array_equal(x, y) for x, y in zip(base, longer[:6]))
    with pytest.raises(ConfigError, match="--reroll"):
        animate(m, "x", frames=6, steps=2, reroll=[7], base_frames=base)


def test_inpainting_keeps_unmasked_pixels_exactly(frame_model):
    m = load_model(frame_model)
    g = torch.Generator().manual_seed(0)
    known = torch.randint(0, 256, (1, 4, 16, 16), generator=g, dtype=torch.uint8)
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :, :8] = 1  # keep the left half
    for sampler in ("dpmpp-2m", "euler-ancestral", "heun"):
        out = generate(m, SampleConfig(n=1, steps=3, sampler=sampler, prompt="a knight"), known=known, known_mask=mask)
        assert torch.equal(out[..., :8], known[..., :8])
        assert not torch.equal(out[..., 8:], known[..., 8:])


def test_single_image_model_refuses_frames(tmp_path):
    from conftest import tiny_imageset
    cfg = RunConfig(data=DataConfig(size=16), model=ModelConfig(preset="tiny"),
                    train=TrainConfig(steps=1, batch_size=4, sample_every=0, val_every=0, bf16=False))
    train(cfg, tmp_path / "run", data=tiny_imageset(), quiet=True)
    with pytest.raises(ConfigError, match="frame"):
        animate(load_model(tmp_path / "run"), "c0", frames=4, steps=2)
    with pytest.raises(ConfigError, match="prompt"):
        generate(load_model(tmp_path / "run"), SampleConfig(n=1, steps=2, prompt="a knight"))


def test_animate_cli_writes_the_export_bundle(frame_model, tmp_path):
    out = tmp_path / "walk"
    cmd = [sys.executable, "-m", "spriteforge.cli", "animate", str(frame_model), "a red knight walking right",
           "--frames", "6", "--steps", "2", "--out", str(out), "--name", "walk", "--palette-colors", "8",
           "--alpha-threshold", "128"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    sheet = Image.open(out / "sheet.png")
    assert sheet.mode == "RGBA" and sheet.size == (6 * 16, 16)
    meta = json.loads((out / "sheet.json").read_text())
    assert len(meta["frames"]) == 6 and meta["meta"]["frameTags"][0]["name"] == "walk"
    assert (out / "walk.tres").read_text().startswith("[gd_resource type=\"SpriteFrames\"")
    assert len(list((out / "frames").glob("*.png"))) == 6
    alpha = np.array(sheet)[..., 3]
    assert set(np.unique(alpha)) <= {0, 255}  # alpha threshold gave crisp edges
    colours = {tuple(px) for px in np.array(sheet)[alpha > 0][:, :3]}
    assert len(colours) <= 8  # one shared palette over all frames
    p = subprocess.run(cmd, capture_output=True, text=True)
    assert p.returncode != 0 and "Traceback" not in p.stderr and "overwrite" in (p.stderr + p.stdout)


def test_bundled_model_ships_and_animates(tmp_path):
    from spriteforge.pipeline import BUILTIN_MODEL
    assert BUILTIN_MODEL.stat().st_size <= 20 * 2**20  # the limit: <= 20 MB
    m = load_model("builtin")
    assert m.config.model.frame_attention and m.config.model.control == ("pose",)
    assert set(m.attribute_values) == {"archetype", "palette", "accessory", "action", "direction"}
    out = tmp_path / "walk"
    p = subprocess.run([sys.executable, "-m", "spriteforge.cli", "animate", "builtin",
                        "a red knight with a shield walking right", "--frames", "8", "--steps", "4", "--out", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    sheet = np.array(Image.open(out / "sheet.png"))
    assert sheet.shape == (32, 8 * 32, 4)
    alpha = sheet[..., 3].reshape(32, 8, 32).transpose(1, 0, 2)
    assert all(0.03 < (a > 127).mean() < 0.6 for a in alpha)  # every frame has a sprite on a transparent ground
