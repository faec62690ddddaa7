"""The built-in attribute checker: palette rule, the small CNN, its cache, and `adherence()`."""

from __future__ import annotations

import pytest
import torch

from spriteforge.data.builtin import ARCHETYPES, render_builtin
from spriteforge.evaluation import adherence as A

# A reduced config for tests: ~5 s on one core (the default trains ~1 minute); archetype ~0.97 held out.
SMALL = A.ClassifierConfig(size=16, characters=240, frames_per_character=8, heldout_characters=36, epochs=10)


@pytest.fixture(scope="session")
def small_classifier(tmp_path_factory):
    torch.set_num_threads(1)
    return A.load_classifier(SMALL, cache=tmp_path_factory.getbasetemp() / "adherence_cache")


@pytest.fixture(scope="module")
def real16():
    """The default training data's characters (seed 0), which the classifier never saw (it uses seed 1000)."""
    return render_builtin(size=16, characters=12)


def test_classifier_trains_caches_and_generalises(small_classifier, real16, tmp_path_factory, monkeypatch):
    clf = small_classifier
    acc = clf.heldout_accuracy                               # on 36 characters it never trained on
    assert acc["archetype"] > 0.9 and acc["palette"] == 1.0 and acc["direction"] > 0.9
    path = clf.path
    assert path.is_file() and path.name == f"adherence_{SMALL.key()}.safetensors"
    assert not list(path.parent.glob(".*.tmp"))              # atomic write left no temp file
    # real sprites of the default data set (other seed, other characters): archetype well above 0.9
    requested = [{k: m[k] for k in A.ATTRIBUTES} for m in real16.meta]
    res = A.adherence(real16.images, requested, clf)
    assert res["archetype"] > 0.9 and res["palette"] == 1.0, res
    # the cached file is loaded, never retrained
    A._LOADED.clear()
    monkeypatch.setattr(A, "_train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = A.load_classifier(SMALL, cache=tmp_path_factory.getbasetemp() / "adherence_cache")
    assert again.heldout_accuracy == clf.heldout_accuracy
    assert A.adherence(real16.images, requested, again) == res
    # a different config is a different file
    assert A.ClassifierConfig(size=16).key() != SMALL.key() and A.ClassifierConfig(size=32).key() != SMALL.key()


def test_only_requested_attributes_count(small_classifier, real16):
    imgs = real16.images[:40]
    metas = real16.meta[:40]
    requested = [{"archetype": m["archetype"]} if i % 2 == 0 else {} for i, m in enumerate(metas)]
    res = A.adherence(imgs, requested, small_classifier, details=True)
    assert set(res["accuracy"]) == {"archetype"} and res["count"] == {"archetype": 20}
    assert res["accuracy"]["archetype"] > 0.8
    wrong = [{"archetype": ARCHETYPES[(ARCHETYPES.index(m["archetype"]) + 1) % 6], "class": "x"} for m in metas]
    assert A.adherence(imgs, wrong, small_classifier)["archetype"] < 0.2
    assert A.adherence(imgs, [{} for _ in metas], small_classifier) == {}
    with pytest.raises(ValueError, match="known values"):
        A.adherence(imgs[:1], [{"palette": "pink"}], small_classifier)
    with pytest.raises(ValueError, match="requests"):
        A.adherence(imgs[:2], [{}], small_classifier)


def test_palette_rule_exact_on_renders():
    for size in (16, 32):
        d = render_builtin(size=size, characters=8, seed=5)
        pred = A.predict_palette(d.images)
        assert pred == [m["palette"] for m in d.meta]
    # RGB sprites composited on white are read the same way
    d = render_builtin(size=32, characters=4, seed=6)
    a = d.images[:, 3:].float() / 255
    rgb = (d.images[:, :3].float() * a + 255 * (1 - a)).round().to(torch.uint8)
    assert A.predict_palette(rgb) == [m["palette"] for m in d.meta]
    assert A.predict_palette(torch.zeros(1, 4, 16, 16, dtype=torch.uint8)) == [None]


@pytest.mark.slow
def test_default_classifier_accuracy():
    """The default classifier (trained once, a few minutes, then cached in ~/.cache/spriteforge)."""
    torch.set_num_threads(1)
    clf = A.load_classifier(size=32)
    acc = clf.heldout_accuracy
    assert acc["archetype"] > 0.95 and acc["palette"] > 0.99 and acc["accessory"] > 0.97 and acc["direction"] > 0.95
    assert acc["action"] > 0.93   # all 84 frames per character (16 random ones gave ~0.87)
    d = render_builtin(size=32, characters=24)
    res = A.adherence(d.images, [{k: m[k] for k in A.ATTRIBUTES} for m in d.meta], clf)
    assert res["archetype"] > 0.95 and res["palette"] > 0.99
