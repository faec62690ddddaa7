import json
import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch

from spriteforge.config import DataConfig, ModelConfig, RunConfig, SampleConfig, TrainConfig
from spriteforge.pipeline import generate, load_model
from spriteforge.training.checkpoint import list_checkpoints, read_metadata
from spriteforge.training.loop import RunExistsError, train

from conftest import tiny_imageset


def _cfg(steps=12, **train_kw):
    kw = dict(steps=steps, batch_size=8, warmup_steps=2, lr=2e-3, sample_every=0, val_every=6, ckpt_every=4,
              log_every=2, sample_n=4, sample_steps=3, bf16=False)
    kw.update(train_kw)
    return RunConfig(data=DataConfig(size=16), model=ModelConfig(preset="tiny"), train=TrainConfig(**kw))


def test_loss_falls_and_run_folder_is_complete(tmp_path):
    data = tiny_imageset(n=32)
    r = train(_cfg(steps=60, lr=3e-3, warmup_steps=5), tmp_path / "run", data=data, quiet=True)
    first, last = sum(r.losses[:10]) / 10, sum(r.losses[-10:]) / 10
    assert last < 0.7 * first, (first, last)
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.jsonl", "loss.png", "progress.gif", "samples/final.png"):
        assert (run / name).exists(), name
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_loss" in rec for rec in recs) and any("images_per_s" in rec for rec in recs)
    assert RunConfig.load(run / "config.yaml").model.in_channels == 4  # resolved config, not the defaults
    meta = read_metadata(list_checkpoints(run)[-1])
    assert json.loads(meta["config"])["train"]["steps"] == 60 and meta["step"] == "60"


def test_resume_continues_exactly(tmp_path):
    data = tiny_imageset()
    full = train(_cfg(), tmp_path / "a", data=data, quiet=True)
    part1 = train(_cfg(), tmp_path / "b", data=data, quiet=True, stop_after=5)
    part2 = train(_cfg(), tmp_path / "b", data=data, quiet=True, resume=True)
    assert part1.step == 5 and part2.step == 12
    assert part1.losses + part2.losses == full.losses  # bit-identical, not just close
    a, b = load_model(tmp_path / "a"), load_model(tmp_path / "b")
    for (ka, va), (kb, vb) in zip(a.denoiser.state_dict().items(), b.denoiser.state_dict().items()):
        assert torch.equal(va, vb), ka


def test_existing_run_is_never_overwritten_silently(tmp_path):
    data = tiny_imageset()
    train(_cfg(steps=2), tmp_path / "run", data=data, quiet=True)
    with pytest.raises(RunExistsError, match="--resume.*--overwrite"):
        train(_cfg(steps=2), tmp_path / "run", data=data, quiet=True)
    with pytest.raises(RunExistsError, match="no checkpoint"):
        train(_cfg(steps=2), tmp_path / "empty", data=data, quiet=True, resume=True)
    r = train(_cfg(steps=3), tmp_path / "run", data=data, quiet=True, overwrite=True)
    assert r.step == 3


def test_checkpoints_pruned_and_stale_temp_file_is_harmless(tmp_path):
    data = tiny_imageset()
    train(_cfg(steps=20, ckpt_every=2), tmp_path / "run", data=data, quiet=True)
    ckpts = list_checkpoints(tmp_path / "run")
    assert len(ckpts) == 3 and ckpts[-1].name == "ckpt_0000020.safetensors"
    umask = os.umask(0)
    os.umask(umask)
    assert all(stat.S_IMODE(c.stat().st_mode) == 0o666 & ~umask for c in ckpts)  # not owner-only, like other files
    # a kill mid-save leaves only a hidden temp file behind; the last good checkpoint still loads
    (tmp_path / "run" / "checkpoints" / ".ckpt_0000022.safetensors.tmp").write_bytes(b"partial")
    assert load_model(tmp_path / "run").step == 20


def test_sampling_is_deterministic_and_class_conditional(tmp_path):
    train(_cfg(steps=4), tmp_path / "run", data=tiny_imageset(), quiet=True)
    m = load_model(tmp_path / "run")
    for sampler in ("dpmpp-2m", "euler-ancestral"):
        sc = SampleConfig(n=3, steps=4, seed=7, sampler=sampler, class_name="c1", cfg=2.0)
        a, b = generate(m, sc), generate(m, sc)
        assert a.dtype == torch.uint8 and a.shape == (3, 4, 16, 16) and torch.equal(a, b)
        assert not torch.equal(a, generate(m, SampleConfig(n=3, steps=4, seed=8, sampler=sampler)))
    from spriteforge.config import ConfigError
    with pytest.raises(ConfigError, match="--attr-guidance.*no attribute labels"):
        generate(m, SampleConfig(n=1, steps=2, class_name="c1", cfg=2.0, attr_guidance=1.0))


def test_time_budget_stops_training(tmp_path):
    cfg = _cfg(steps=0, minutes=0.05)  # 3 seconds
    t = time.time()
    r = train(cfg, tmp_path / "run", data=tiny_imageset(), quiet=True)
    assert r.step > 0 and time.time() - t < 60


def test_ctrl_c_saves_a_checkpoint(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    from PIL import Image
    data = tiny_imageset(n=8)
    for i, img in enumerate(data.images):
        Image.fromarray(img.permute(1, 2, 0).numpy(), "RGBA").save(folder / f"{i}.png")
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "spriteforge.cli", "train", "--data", str(folder), "--out", str(run),
                             "--steps", "100000", "--size", "16", "--preset", "tiny", "--batch-size", "4", "--quiet",
                             "--set", "train.log_every=1", "--set", "train.sample_every=0", "--set", "train.ckpt_every=100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").stat().st_size > 200):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-2000:]
    ckpts = list_checkpoints(run)
    assert ckpts, "Ctrl-C must save a checkpoint"
    assert int(read_metadata(ckpts[-1])["step"]) >= 2


def test_image_to_image_strength_controls_change(tmp_path):
    data = tiny_imageset()
    train(_cfg(steps=30), tmp_path / "run", data=data, quiet=True)
    m = load_model(tmp_path / "run")
    init = data.images[:2]
    sc = SampleConfig(n=2, steps=10, seed=0)
    light = generate(m, sc, init=init, strength=0.2).float()
    full = generate(m, sc, init=init, strength=1.0).float()
    pure = generate(m, sc).float()
    # strength 1 starts from sigma_max, where the init is drowned out: close to plain sampling;
    # strength 0.2 stays close to the init
    assert (full - pure).abs().mean() < (light - pure).abs().mean()
    assert (light - init.float()).abs().mean() < (full - init.float()).abs().mean()


def test_small_fd_is_logged_and_plotted_during_training(tmp_path):
    cfg = _cfg(steps=4)
    cfg.train.fd_every, cfg.train.fd_n, cfg.train.val_fraction = 2, 8, 0.2
    train(cfg, tmp_path / "run", data=tiny_imageset(), quiet=True)
    recs = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    fds = [r for r in recs if "fd_effnet_small" in r]
    assert [r["step"] for r in fds] == [2, 4] and all(r["fd_n"] == 8 and r["fd_effnet_small"] > 0 for r in fds)
    assert (tmp_path / "run" / "fd.png").exists()


def test_init_from_starts_from_another_runs_weights(tmp_path):
    data = tiny_imageset()
    train(_cfg(steps=6), tmp_path / "base", data=data, quiet=True)
    # zero steps of training are not possible, so stop after one step at a tiny learning rate: the
    # EMA starts as the base run's EMA and moves by far less than a fresh initialisation differs
    tuned = train(_cfg(steps=1, lr=1e-8, warmup_steps=0, init_from=str(tmp_path / "base")), tmp_path / "tuned",
                  data=data, quiet=True)
    assert tuned.step == 1                                  # a fresh step counter, not the base run's 6
    train(_cfg(steps=1, lr=1e-8, warmup_steps=0), tmp_path / "fresh", data=data, quiet=True)
    a, b, c = (load_model(tmp_path / n).denoiser.state_dict() for n in ("base", "tuned", "fresh"))
    near = max((a[k] - b[k]).abs().max().item() for k in a)
    far = max((a[k] - c[k]).abs().max().item() for k in a)
    assert near < 1e-3 < far, (near, far)
    assert RunConfig.load(tmp_path / "tuned" / "config.yaml").train.init_from == str(tmp_path / "base")


def test_init_from_refuses_a_different_network_with_a_clear_error(tmp_path):
    from spriteforge.config import ConfigError
    data = tiny_imageset()
    train(_cfg(steps=2), tmp_path / "base", data=data, quiet=True)
    cfg = _cfg(steps=2, init_from=str(tmp_path / "base"))
    cfg = RunConfig(data=cfg.data, model=ModelConfig(preset="small"), train=cfg.train)
    with pytest.raises(ConfigError, match="init_from.*does not match"):
        train(cfg, tmp_path / "other", data=data, quiet=True)
    with pytest.raises(ConfigError, match="init_from.*no run folder or checkpoint"):
        train(_cfg(steps=2, init_from=str(tmp_path / "missing")), tmp_path / "other2", data=data, quiet=True)


def test_min_frames_one_trains_single_frames_of_a_frame_set_model():
    from spriteforge.data.builtin import render_builtin
    from spriteforge.training.batches import make_source, sample_batch
    data = render_builtin(size=16, characters=2)
    src = make_source(data, list(range(len(data))), None, True)
    cfg = RunConfig(data=DataConfig(size=16), model=ModelConfig(preset="tiny", frame_attention=True),
                    train=TrainConfig(steps=1, frames=4, min_frames=1))
    gen = torch.Generator().manual_seed(0)
    sizes = {sample_batch(src, 8, 4, cfg, gen, "cpu", min_frames=1)[2]["frames"] for _ in range(40)}
    assert sizes == {1, 2, 3, 4}
    gen = torch.Generator().manual_seed(0)
    assert {sample_batch(src, 8, 4, cfg, gen, "cpu")[2]["frames"] for _ in range(40)} == {2, 3, 4}
    with pytest.raises(Exception, match="train.min_frames"):
        TrainConfig(frames=4, min_frames=5)


def test_accessory_masks_mark_exactly_what_the_accessory_changes():
    import dataclasses

    from spriteforge.data.builtin import accessory_masks, make_characters, render_builtin, render_frame
    from spriteforge.data.dataset import DataError
    data = render_builtin(size=16, characters=6, actions=("attack",))
    masks = accessory_masks(data, characters=6, seed=0)
    assert masks.shape == (len(data), 1, 16, 16) and masks.dtype == torch.uint8
    specs = {s.id: s for s in make_characters(6, 0)}
    for i, m in enumerate(data.meta):
        if m["accessory"] == "none":
            assert masks[i].sum() == 0
            continue
        bare = render_frame(dataclasses.replace(specs[m["character"]], accessory="none"), m["action"], m["frame"],
                            m["direction"], 16)[0]
        changed = torch.from_numpy((data.images[i].permute(1, 2, 0).numpy() != bare).any(-1))
        assert torch.equal(masks[i, 0].bool(), changed)
    assert any(masks[i].sum() > 0 for i in range(len(data)))
    with pytest.raises(DataError, match="not a frame of the built-in set with 2 characters"):
        accessory_masks(data, characters=2, seed=0)


def test_edm_loss_pixel_weight():
    from spriteforge.diffusion.edm import EDMPrecond, edm_loss
    torch.manual_seed(0)

    class Net(torch.nn.Module):  # any network: D's error is what gets weighted
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x, c_noise):
            return self.conv(x)

    den = EDMPrecond(Net())
    y, noise, sigma = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), torch.tensor([0.5, 2.0])
    plain = edm_loss(den, y, sigma, noise)
    assert torch.allclose(edm_loss(den, y, sigma, noise, pixel_weight=torch.ones(2, 1, 8, 8)), plain)
    assert torch.allclose(edm_loss(den, y, sigma, noise, pixel_weight=torch.full((2, 1, 8, 8), 3.0)), 3 * plain)
    w = torch.ones(2, 1, 8, 8)
    w[:, :, :4] = 5.0  # only the top half counts more: the loss grows, but by less than 5x
    weighted = edm_loss(den, y, sigma, noise, pixel_weight=w)
    assert (weighted > plain).all() and (weighted < 5 * plain).all()


def test_detail_weight_reaches_the_loss_and_leaves_other_batches_unchanged():
    from spriteforge.data.builtin import accessory_masks, render_builtin
    from spriteforge.data.dataset import to_model_range
    from spriteforge.training.batches import make_source, sample_batch
    data = render_builtin(size=16, characters=6, actions=("attack",))
    detail = accessory_masks(data, 6, 0)
    everything = list(range(len(data)))
    for hflip in (False, True):
        def cfg(w):
            return RunConfig(data=DataConfig(size=16, hflip=hflip), model=ModelConfig(preset="tiny", frame_attention=True),
                             train=TrainConfig(steps=1, frames=4, detail_weight=w))
        plain = sample_batch(make_source(data, everything, None, True), 8, 4, cfg(1.0), torch.Generator().manual_seed(0), "cpu")
        off = sample_batch(make_source(data, everything, None, True, detail=detail), 8, 4, cfg(1.0),
                           torch.Generator().manual_seed(0), "cpu")
        y, sigma, cond = sample_batch(make_source(data, everything, None, True, detail=detail), 8, 4, cfg(4.0),
                                      torch.Generator().manual_seed(0), "cpu")
        assert "pixel_weight" not in off[2] and torch.equal(off[0], plain[0]) and torch.equal(y, plain[0])
        w = cond["pixel_weight"]
        assert w.shape == (y.shape[0], 1, 16, 16) and set(w.unique().tolist()) <= {1.0, 4.0} and (w == 4).any()
        # the weights follow their image, also when it is flipped: each frame's weight map is the mask of the
        # data image it came from
        images = to_model_range(data.images)
        for b in range(y.shape[0]):
            for flip in ((False, True) if hflip else (False,)):
                yb = y[b].flip(-1) if flip else y[b]
                hits = [i for i in range(len(data)) if torch.equal(images[i], yb)]
                want = [1 + 3 * detail[i].float() for i in hits]
                if any(torch.equal(w[b].flip(-1) if flip else w[b], m) for m in want):
                    break
            else:
                raise AssertionError(f"frame {b}: its weight map is not its image's accessory mask")


def test_detail_weight_needs_the_builtin_set(tmp_path):
    from spriteforge.config import ConfigError
    cfg = _cfg(steps=1, detail_weight=3.0)
    cfg = RunConfig(data=DataConfig(source="my_sprites", size=16), model=cfg.model, train=cfg.train)
    with pytest.raises(ConfigError, match="train.detail_weight=3 needs detail masks.*'my_sprites'"):
        train(cfg, tmp_path / "run", data=tiny_imageset(), quiet=True)
    assert not (tmp_path / "run").exists()  # refused before a run folder is made
    with pytest.raises(Exception, match="train.detail_weight"):
        TrainConfig(detail_weight=0)
