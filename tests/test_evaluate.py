"""`spriteforge eval` / `compare`: reports, the real-vs-real floor, input checks, determinism, grids."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from spriteforge.data.dataset import ImageSet
from spriteforge.config import DataConfig, ModelConfig, RunConfig, SampleConfig, TrainConfig
from spriteforge.evaluation import evaluate as E
from spriteforge.evaluation.evaluate import EvalError, evaluate, frechet_distance_features
from spriteforge.training.checkpoint import CheckpointError
from spriteforge.training.loop import split_validation, train

from conftest import tiny_imageset
from test_adherence import small_classifier  # noqa: F401  (fixture)

FAST = SampleConfig(sampler="euler", steps=2)
METRIC_KEYS = ("fd_effnet", "kid_effnet", "precision", "recall", "swd_mean", "swd_16px", "swd_8px",
               "near_copy_share", "feat_near_copy_share", "alpha_iou_mean", "alpha_coverage_w1")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _cfg(val_fraction=0.45, steps=6):
    return RunConfig(data=DataConfig(size=16), model=ModelConfig(preset="tiny"),
                     train=TrainConfig(steps=steps, batch_size=8, warmup_steps=2, sample_every=0, val_every=0,
                                       ckpt_every=100, log_every=10, sample_n=2, sample_steps=2, bf16=False,
                                       val_fraction=val_fraction))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 16-px tiny class-conditional model trained for a few steps; the run holds out 45 % (54 images)."""
    torch.set_num_threads(1)
    data = tiny_imageset(n=120)
    run = tmp_path_factory.mktemp("evalrun") / "run"
    train(_cfg(), run, data=data, quiet=True)
    return run, data


def test_report_files_keys_and_floor(tiny_run, tmp_path):
    run, data = tiny_run
    out = tmp_path / "report"
    evaluate(run, data, n=50, sample_cfg=FAST, heldout="run", out_dir=out)
    for name in ("report.json", "report.md", "samples.png", "real.png", "closest_pairs.png", "per_sample.jsonl"):
        assert (out / name).is_file(), name
    js = json.loads((out / "report.json").read_text())
    for key in METRIC_KEYS:
        row = js["metrics"][key]
        assert isinstance(row["model"], float) and isinstance(row["floor"], float), key
    # the floor is real vs real: near-perfect where the model (6 training steps) is bad
    assert js["metrics"]["fd_effnet"]["floor"] < js["metrics"]["fd_effnet"]["model"]
    assert js["metrics"]["precision"]["floor"] > 0.5
    # held out really is the run's own validation split, and the floor uses as many real images as samples
    _, held = split_validation(data, 0.45, 0, by_animation=False)
    assert js["data"]["split"]["method"] == "run" and js["data"]["split"]["n_reference"] == len(held) == 54
    assert js["floor"]["n_floor"] == 50
    assert js["sampling"]["requests"]["class"]["distinct"] == 2
    assert js["versions"]["torch"] == torch.__version__ and "sampling" in js["timing_seconds"]
    md = (out / "report.md").read_text()
    assert "real-vs-real floor" in md and "not FID" in md and "![closest pairs](closest_pairs.png)" in md
    assert "FD-EffNet" in md and "KID-EffNet" in md
    rows = [json.loads(line) for line in (out / "per_sample.jsonl").read_text().splitlines()]
    assert len(rows) == 50 and rows[0]["requested"] == {"class": "c0"} and rows[1]["requested"] == {"class": "c1"}
    assert Image.open(out / "samples.png").size[0] > 8 * 16
    # a second run into the same folder needs overwrite, and is refused before any sampling
    with pytest.raises(FileExistsError, match="--overwrite"):
        evaluate(run, data, n=50, sample_cfg=FAST, heldout="run", out_dir=out)


def test_same_command_same_numbers(tiny_run):
    run, data = tiny_run
    a = evaluate(run, data, n=50, sample_cfg=FAST, heldout="seeded", seed=3)
    b = evaluate(run, data, n=50, sample_cfg=FAST, heldout="seeded", seed=3)
    assert a["metrics"] == b["metrics"] and a["details"] == b["details"]
    c = evaluate(run, data, n=50, sample_cfg=FAST, heldout="seeded", seed=4)
    assert c["metrics"]["fd_effnet"]["model"] != a["metrics"]["fd_effnet"]["model"]


@pytest.fixture
def no_sampling(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("sampled before checking the inputs")
    monkeypatch.setattr("spriteforge.pipeline.generate", boom)
    monkeypatch.setattr("spriteforge.evaluation.features.EffNetFeatures.__call__", boom)


def test_size_and_channel_mismatch_fail_before_sampling(tiny_run, no_sampling):
    run, _ = tiny_run
    with pytest.raises(EvalError, match=r"32x32 px.*16x16 px"):
        evaluate(run, tiny_imageset(n=120, size=32), n=50)
    with pytest.raises(EvalError, match=r"RGB images.*RGBA images"):
        evaluate(run, tiny_imageset(n=120, channels=3), n=50)


def test_too_few_images_says_how_many(tiny_run, no_sampling, tmp_path):
    run, _ = tiny_run
    with pytest.raises(EvalError, match=r"at least 100 images; the data has 60"):
        evaluate(run, tiny_imageset(n=60), n=50, heldout="seeded")
    with pytest.raises(EvalError, match=r"at least 50 held-out.*has 27 of 60"):
        evaluate(run, tiny_imageset(n=60), n=50, heldout="run")
    with pytest.raises(Exception, match=r"at least 50 samples"):
        evaluate(run, tiny_imageset(n=120), n=10)


def test_non_spriteforge_checkpoint(tmp_path, no_sampling):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match="not a spriteforge checkpoint"):
        evaluate(foreign, tiny_imageset(n=120), n=50)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        evaluate(junk, tiny_imageset(n=120), n=50)


def test_memorising_generator_is_caught(tiny_run):
    """A 'generator' that returns training images scores ~100 % near-copies through the evaluate path;
    one that returns held-out images (unseen) does not copy pixels from the training side more often
    than real held-out images do (the floor)."""
    run, _ = tiny_run
    data = _unique_imageset(140)
    train_idx, held_idx = split_validation(data, 0.45, 0, by_animation=False)
    copies = lambda n, requested: data.images[train_idx][torch.arange(n) % len(train_idx)]  # noqa: E731
    rep = evaluate(run, data, n=60, heldout="run", samples_override=copies)
    assert rep["metrics"]["near_copy_share"]["model"] == 1.0
    assert rep["metrics"]["feat_near_copy_share"]["model"] >= 0.95
    assert rep["metrics"]["px_nn_dist_median"]["model"] == 0.0
    assert rep["metrics"]["near_copy_share"]["floor"] == 0.0         # unique images: no real near-duplicates
    unseen = lambda n, requested: data.images[held_idx][torch.arange(n) % len(held_idx)]  # noqa: E731
    rep2 = evaluate(run, data, n=60, heldout="run", samples_override=unseen)
    assert rep2["metrics"]["near_copy_share"]["model"] == 0.0
    assert any("samples_override" in n for n in rep2["notes"])


def _unique_imageset(n: int, size: int = 16) -> ImageSet:
    """Sprite-like images that are all clearly different: a random blob per image."""
    g = torch.Generator().manual_seed(1)
    imgs = torch.zeros(n, 4, size, size, dtype=torch.uint8)
    for i in range(n):
        mask = torch.rand(size - 4, size - 4, generator=g) < 0.5
        imgs[i, :3, 2:-2, 2:-2] = torch.randint(0, 256, (3, 1, 1), generator=g, dtype=torch.uint8) * mask
        imgs[i, 3, 2:-2, 2:-2] = mask.to(torch.uint8) * 255
    labels = torch.arange(n) % 2
    return ImageSet(imgs, [f"u:{i}" for i in range(n)], [None] * n, labels, ["c0", "c1"])


def test_builtin_adherence_section(tmp_path, small_classifier):
    """Built-in data: the report gets an adherence section; samples showing the requested archetype
    score high, and the real held-out images (the floor) do too."""
    from spriteforge.data.builtin import render_builtin
    data = render_builtin(size=16, characters=6, actions=("idle", "jump", "attack"))  # 252 frames
    run = tmp_path / "run"
    train(_cfg(val_fraction=0.3, steps=2), run, data=data, quiet=True)
    train_idx, _ = split_validation(data, 0.3, 0, by_animation=False)
    by_arch = {}
    for i in train_idx:
        by_arch.setdefault(data.meta[i]["archetype"], []).append(i)

    def obedient(n, requested):                     # a real sprite of exactly the requested archetype
        return data.images[[by_arch[r["archetype"]][k % len(by_arch[r["archetype"]])] for k, r in enumerate(requested)]]

    rep = evaluate(run, data, n=60, heldout="run", samples_override=obedient, adherence_classifier=small_classifier)
    sec = rep["adherence"]["builtin_attributes"]
    assert set(sec["metrics"]) == {"archetype"} and sec["count"]["archetype"] == 60
    assert sec["metrics"]["archetype"] > 0.9 and sec["floor"]["archetype"] > 0.9
    assert rep["sampling"]["requests"]["archetype"]["distinct"] == 6
    shuffled = lambda n, requested: obedient(n, requested[1:] + requested[:1])  # noqa: E731  (wrong archetype)
    rep2 = evaluate(run, data, n=60, heldout="run", samples_override=shuffled, adherence_classifier=small_classifier)
    assert rep2["adherence"]["builtin_attributes"]["metrics"]["archetype"] < 0.2


def test_text_models_cycle_captions_and_record_attributes():
    """A text model is prompted with the data's captions in turn; the built-in attributes of each
    caption are recorded as what was requested (for adherence)."""
    from types import SimpleNamespace
    from spriteforge.data.builtin import render_builtin
    data = render_builtin(size=16, characters=2, actions=("idle",))      # 2 characters x 3 directions
    model = SimpleNamespace(config=SimpleNamespace(model=ModelConfig(text_encoder="minilm")), class_names=[])
    labels, prompts, requested = E.plan_requests(model, data, 14, SampleConfig(), builtin=True)
    caps = sorted({c for c in data.captions})
    assert labels is None and len(caps) == 6 and set(prompts) == set(caps)
    assert prompts[:6] == prompts[6:12] and prompts[12:] == prompts[:2]  # cycles in a fixed order
    for p, r in zip(prompts, requested):
        j = data.captions.index(p)
        assert r["prompt"] == p and r["palette"] == data.meta[j]["palette"]
        assert r["direction"] == data.meta[j]["direction"] and r["archetype"] == data.meta[j]["archetype"]
    _, prompts2, _ = E.plan_requests(model, data, 3, SampleConfig(prompt="a red knight"), builtin=True)
    assert prompts2 == ["a red knight"] * 3


def test_fast_frechet_matches_reference():
    from spriteforge.evaluation.metrics import fd_from_features
    rng = np.random.default_rng(0)
    a = rng.standard_normal((80, 96)) * rng.uniform(0.5, 2.0, 96)
    b = rng.standard_normal((300, 96)) + 0.2
    with pytest.warns(RuntimeWarning):
        ref = fd_from_features(a, b)
    assert frechet_distance_features(a, b) == pytest.approx(ref, rel=1e-6)
    c = rng.standard_normal((200, 16))
    assert frechet_distance_features(c, c) == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------------------------------

def test_compare_grid_layout_and_overwrite(tiny_run, tmp_path):
    from spriteforge.config import ConfigError
    from spriteforge.evaluation.compare import compare_grid
    from spriteforge.images import make_grid
    from spriteforge.pipeline import generate, load_model
    run, _ = tiny_run
    out = tmp_path / "cmp.png"
    res = compare_grid([run], rows="sampler", cols="steps", samplers=["euler", "heun"], steps=[1, 2, 3], n=2, out=out)
    img = np.asarray(Image.open(out).convert("RGB"))
    assert np.array_equal(img, res["image"])
    assert len(res["boxes"]) == 2 and all(len(r) == 3 for r in res["boxes"])
    assert res["rows"] == ["sampler euler", "sampler heun"] and res["cols"] == ["steps 1", "steps 2", "steps 3"]
    tile = res["tile"]                                       # 16 px x4 = 64
    cell_w, cell_h = 2 * tile + 3 * 2, tile + 2 * 2
    for r, row in enumerate(res["boxes"]):
        for c, (x0, y0, x1, y1) in enumerate(row):
            assert (x1 - x0, y1 - y0) == (cell_w, cell_h)
            assert x1 <= img.shape[1] and y1 <= img.shape[0]
    xs = [b[0] for b in res["boxes"][0]]
    ys = [row[0][1] for row in res["boxes"]]
    assert xs == sorted(xs) and ys == sorted(ys) and xs[1] - xs[0] >= cell_w and ys[1] - ys[0] >= cell_h
    # each cell shows exactly the samples of its row's sampler and column's steps, from the same seed
    m = load_model(run)
    labels = torch.arange(2) % 2
    for r, sampler in enumerate(["euler", "heun"]):
        for c, steps in enumerate([1, 2, 3]):
            want = make_grid(generate(m, SampleConfig(sampler=sampler, steps=steps, n=2, seed=0), labels=labels),
                             nrow=2, pad=2, scale=4)
            x0, y0, x1, y1 = res["boxes"][r][c]
            assert np.array_equal(img[y0:y1, x0:x1], want), (sampler, steps)
    with pytest.raises(FileExistsError, match="--overwrite"):
        compare_grid([run], samplers=["euler"], steps=[1], n=1, out=out)
    compare_grid([run], rows="seed", cols="cfg", seeds=[0, 1, 2], cfgs=[1.0], n=1, out=out, overwrite=True)
    assert Image.open(out).size != (img.shape[1], img.shape[0])
    with pytest.raises(ConfigError, match="--cfg"):
        compare_grid([run], cfgs=[1.0, 2.0], n=1, out=None)


def test_compare_metrics_text(tiny_run, tmp_path):
    from spriteforge.evaluation.compare import compare_grid
    run, data = tiny_run
    res = compare_grid([run], rows="sampler", cols="steps", samplers=["euler"], steps=[1, 3], n=1, out=None,
                       metrics=True, data=data, metrics_n=8)
    swd = [c["metrics"]["swd"] for c in res["cells"][0]]
    assert all(s > 0 for s in swd) and swd[0] != swd[1]


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------

def _cli(*args, env_cache=None):
    import os
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if env_cache:
        env["SPRITEFORGE_CACHE"] = str(env_cache)
    p = subprocess.run([sys.executable, "-m", "spriteforge.cli", *map(str, args)], capture_output=True, text=True,
                       env=env)
    return p.returncode, p.stdout + p.stderr


def test_cli_eval_and_compare(tiny_run, tmp_path):
    run, data = tiny_run
    folder = tmp_path / "real"
    folder.mkdir()
    for i, im in enumerate(data.images):
        Image.fromarray(im.permute(1, 2, 0).numpy(), "RGBA").save(folder / f"s{i:03d}.png")
    out = tmp_path / "ev"
    code, text = _cli("eval", run, "--data", folder, "--n", 50, "--sampler", "euler", "--steps", 2, "--out", out,
                      "--threads", 1, "--quiet", env_cache=tmp_path / "cache")
    assert code == 0, text
    assert "FD-EffNet" in text and "real-vs-real floor" in text
    js = json.loads((out / "report.json").read_text())
    assert js["data"]["split"]["method"] == "seeded" and js["sampling"]["n"] == 50
    code, text = _cli("eval", run, "--data", folder, "--n", 50, "--out", out)
    assert code != 0 and "Traceback" not in text and "--overwrite" in text
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    for i, im in enumerate(data.images[:3]):
        Image.fromarray(im[:3].permute(1, 2, 0).numpy(), "RGB").save(rgb / f"s{i}.png")
    code, text = _cli("eval", run, "--data", rgb, "--n", 50, "--out", tmp_path / "ev2")
    assert code != 0 and "Traceback" not in text and "RGB" in text and "RGBA" in text
    code, text = _cli("compare", run, "--samplers", "euler,heun", "--steps", "1,2", "--n", 1, "--out", tmp_path / "c.png")
    assert code == 0 and (tmp_path / "c.png").is_file(), text
    code, text = _cli("compare", run, "--out", tmp_path / "c.png")
    assert code != 0 and "Traceback" not in text and "--overwrite" in text


def test_novel_and_seen_prompts_split_the_combinations():
    from spriteforge.data.builtin import ACCESSORIES, ARCHETYPES, PALETTES, render_builtin
    from spriteforge.data.conditions import parse_attributes
    from spriteforge.evaluation.evaluate import novel_prompts, seen_prompts
    data = render_builtin(size=16, characters=6, actions=("idle",))
    have = {(m["archetype"], m["palette"], m["accessory"]) for m in data.meta}
    vocab = {"archetype": list(ARCHETYPES), "palette": list(PALETTES), "accessory": list(ACCESSORIES)}

    def combo(prompt):
        a = parse_attributes(prompt, vocab)
        return a["archetype"], a["palette"], a.get("accessory", "none")
    novel, seen = novel_prompts(data, 20), seen_prompts(data, 12)
    assert novel == novel_prompts(data, 20) and seen == seen_prompts(data, 12)     # seeded
    assert len(novel) == 20 and not {combo(p) for p in novel} & have
    assert len(seen) == 12 and {combo(p) for p in seen} == have                   # 6 characters, each twice
