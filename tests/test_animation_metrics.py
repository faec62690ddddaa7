"""Animation metrics: identity across frames, palettes, loop seams, adherence, the real floor, and the
animation section of `spriteforge eval` for frame-set models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from spriteforge.config import DataConfig, ModelConfig, RunConfig, SampleConfig, TrainConfig
from spriteforge.evaluation import animation as A
from spriteforge.evaluation.features import EffNetFeatures
from spriteforge.training.loop import train

from test_adherence import small_classifier  # noqa: F401  (fixture: 16-px checker, ~5 s once per session)

FAST = SampleConfig(sampler="euler", steps=2)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def feats():
    return EffNetFeatures()


@pytest.fixture(scope="module")
def real16():
    """12 real built-in animations at 16 px, one per character (all actions and directions)."""
    return A.render_real_animations(size=16, n=12, seed=0)


@pytest.fixture(scope="module")
def frame_run(tmp_path_factory):
    """A tiny class-conditional frame-set model (no text encoder) on 2 built-in characters at 16 px."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("animeval") / "run"
    cfg = RunConfig(data=DataConfig(size=16, builtin_characters=2), model=ModelConfig(preset="tiny"),
                    train=TrainConfig(steps=3, batch_size=8, frames=4, sample_every=0, val_every=0, log_every=1,
                                      sample_n=8, sample_steps=2, bf16=False))
    train(cfg, run, quiet=True)
    return run


def _finite(d: dict) -> bool:
    return all(isinstance(v, float) and math.isfinite(v) for v in d.values())


def test_identical_frames_score_zero_and_seam_one(real16, feats):
    anims, _ = real16
    frozen = [a[:1].repeat(6, 1, 1, 1) for a in anims[:4]]           # 4 characters, each one frame x 6
    c = A.identity_consistency(frozen, feats)
    assert max(c["identity_distance"]) < 1e-6 and max(c["palette_distance"]) == 0.0
    assert c["between_feature_distance"] > 1.0                        # the characters still differ
    s = A.loop_seam(frozen)
    assert s["seam_ratio"] == [1.0] * 4 and s["motion_mean"] == 0.0 and s["seamless_share"] == 1.0
    assert A.loop_seam([anims[0][:2]])["seam_ratio"] == [1.0]        # F = 2: the seam is the only step
    with pytest.raises(ValueError, match="at least 2 frames"):
        A.loop_seam([anims[0][:1]])
    with pytest.raises(ValueError, match="at least 2 animations"):
        A.identity_consistency(frozen[:1], feats)
    # animate()'s list of [H, W, 4] frames is accepted as one animation
    as_list = [f.permute(1, 2, 0).numpy() for f in anims[0]]
    assert torch.equal(A.as_animations([as_list])[0], anims[0])


def test_frames_of_different_characters_score_far_worse_than_real_animations(feats):
    anims, _ = A.render_real_animations(size=16, n=12, seed=0)
    real = A.animation_metrics(anims, feats)
    scale = real["consistency"]["feature_scale"]
    # each "animation" takes frame k from character i + k: four different characters per set
    mixed = [torch.stack([anims[(i + k) % 12][k % anims[(i + k) % 12].shape[0]] for k in range(4)]) for i in range(12)]
    bad = A.animation_metrics(mixed, feats, scale=scale)
    assert real["summary"]["identity_distance_mean"] < 0.7
    assert bad["summary"]["identity_distance_mean"] > 1.6 * real["summary"]["identity_distance_mean"]
    assert bad["summary"]["identity_distance_mean"] > 0.85
    assert bad["summary"]["palette_distance_mean"] > 10 * real["summary"]["palette_distance_mean"]
    assert bad["summary"]["palette_distance_mean"] > 0.1


def test_walk_cycle_loops_and_a_foreign_last_frame_is_a_jump():
    walks, _ = A.render_real_animations(size=32, n=12, seed=0, actions=["walk"])
    assert all(w.shape[0] == 8 for w in walks)
    real = A.loop_seam(walks)
    # single real cycles spread (~0.5-1.9: pixel-art steps alternate between held and moving poses);
    # over a dozen cycles the wrap-around is an ordinary step
    assert 0.8 < real["seam_ratio_mean"] < 1.4 and 0.8 < real["seam_ratio_median"] < 1.4
    assert real["seamless_share"] >= 0.5
    others, _ = A.render_real_animations(size=32, n=12, seed=7, actions=["idle"])
    broken = [torch.cat([w[:-1], o[:1]]) for w, o in zip(walks, others)]   # last frame: another character
    jump = A.loop_seam(broken)
    assert jump["seam_ratio_mean"] > 1.5 * real["seam_ratio_mean"] and jump["seam_ratio_mean"] > 1.9
    assert jump["seam_ratio_median"] > 1.35 * real["seam_ratio_median"]
    assert jump["seamless_share"] <= 0.25
    assert np.mean(np.array(jump["seam_ratio"]) > np.array(real["seam_ratio"])) >= 0.75


def test_real_reference_is_deterministic_and_finite(feats):
    a = A.real_animation_reference(size=16, n=8, seed=3, feats=feats)
    b = A.real_animation_reference(size=16, n=8, seed=3, feats=feats)
    assert json.dumps(a["summary"]) == json.dumps(b["summary"])
    assert a["consistency"]["identity_distance"] == b["consistency"]["identity_distance"]
    assert a["seam"]["seam_ratio"] == b["seam"]["seam_ratio"] and a["attributes"] == b["attributes"]
    assert _finite(a["summary"]) and set(a["summary"]) == set(A.METRICS)
    assert 0 < a["summary"]["identity_distance_mean"] < 1 and 0 < a["summary"]["motion_mean"] < 1
    c = A.real_animation_reference(size=16, n=8, seed=4, feats=feats)
    assert c["attributes"] != a["attributes"]


def test_animation_adherence_on_real_frames(small_classifier, real16):  # noqa: F811
    anims, attrs = real16
    res = A.animation_adherence(anims, attrs, small_classifier)
    assert set(res["frame"]) == set(A.ATTRS) and res["count_frames"]["archetype"] == sum(a.shape[0] for a in anims)
    assert res["frame"]["palette"] == 1.0 and res["majority"]["archetype"] >= 0.8 and res["frame"]["direction"] >= 0.8
    wrong = [{"archetype": "slime" if a["archetype"] != "slime" else "knight"} for a in attrs]
    bad = A.animation_adherence(anims, wrong, small_classifier)
    assert set(bad["frame"]) == {"archetype"} and bad["majority"]["archetype"] <= 0.2


def test_evaluate_animations_on_a_tiny_frame_set_model(frame_run, small_classifier, feats):  # noqa: F811
    kw = dict(n_anims=4, frames=4, sample_cfg=FAST, seed=1, feats=feats, classifier=small_classifier)
    res = A.evaluate_animations(frame_run, **kw)
    for key in ("title", "metrics", "floor", "count", "better", "better_per_metric", "notes", "definitions",
                "sampling", "reference", "requests", "details", "adherence"):
        assert key in res, key
    assert set(res["metrics"]) == set(A.METRICS) == set(res["floor"])
    assert _finite(res["metrics"]) and _finite(res["floor"])
    assert res["sampling"]["n_anims"] == 4 and res["reference"]["n"] == 4
    assert [r["class"] for r in res["requests"]] == ["knight", "mage", "rogue", "skeleton"]
    adh = res["adherence"]
    assert set(adh["metrics"]) == {"archetype (frames)", "archetype (majority)"}
    assert adh["count"]["archetype (frames)"] == 16
    assert all(0 <= v <= 1 for v in list(adh["metrics"].values()) + list(adh["floor"].values()))
    assert set(A.report_sections(res)) == {"animation", "animation_adherence"}
    again = A.evaluate_animations(frame_run, **kw)
    assert json.dumps(again["metrics"]) == json.dumps(res["metrics"])        # deterministic
    other = A.evaluate_animations(frame_run, **{**kw, "classifier": False}, prompts_or_classes=["knight"])
    assert other["adherence"] is None and {r["class"] for r in other["requests"]} == {"knight"}


def test_eval_report_has_animation_sections(frame_run, small_classifier, tmp_path):  # noqa: F811
    from spriteforge.evaluation.evaluate import evaluate
    out = tmp_path / "report"
    rep = evaluate(frame_run, n=50, sample_cfg=FAST, heldout="seeded", out_dir=out,
                   adherence_classifier=small_classifier)
    assert rep["model"]["frame_attention"] and "animation" in rep["timing_seconds"]
    sec = rep["adherence"]["animation"]
    assert sec["sampling"]["n_anims"] == A.DEFAULT_N_ANIMS and sec["sampling"]["frames"] == 8
    assert _finite(sec["metrics"]) and _finite(sec["floor"])
    assert "animation_adherence" in rep["adherence"]
    md = (out / "report.md").read_text()
    assert "## Animation: identity across frames" in md and "| seam_ratio_mean |" in md
    js = json.loads((out / "report.json").read_text())
    seam = js["adherence"]["animation"]["metrics"]["seam_ratio_mean"]
    assert seam == pytest.approx(sec["metrics"]["seam_ratio_mean"])
