"""The studio's generation path in-process: live step previews, the one-at-a-time queue, the model
picker, image inputs and reproducing a gallery item."""

import shutil
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from spriteforge.config import ConfigError
from spriteforge.studio.gallery import parse_parameters, settings_from_parameters
from spriteforge.studio.generation import GenRequest, split_attr_guidance
from spriteforge.studio.jobs import GenerationQueue
from spriteforge.studio.safety import StudioError
from spriteforge.studio.service import Studio
from test_studio_support import tiny_model


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    ws = tmp_path_factory.mktemp("studio_gen") / "ws"
    shutil.copytree(tiny_model(tmp_path_factory.getbasetemp()), ws / "runs" / "tiny")
    return Studio(ws)


def test_live_preview_after_every_step_and_reproduce_gives_the_same_pixels(studio):
    seen = []
    item = studio.generator.run(GenRequest(model="runs/tiny", prompt="mage", frames=4, steps=5, seed=9),
                                progress=lambda step, total, preview: seen.append((step, total, preview.shape)))
    assert [s[:2] for s in seen] == [(i, 5) for i in range(1, 6)]
    assert seen[0][2][2] == 3 and seen[0][2][1] > seen[0][2][0]             # an RGB strip of the frames
    again = studio.generate(studio.reproduce(item.id))
    assert np.array_equal(np.asarray(Image.open(item.sheet)), np.asarray(Image.open(again.sheet)))
    assert studio.model_info("runs/tiny")["classes"][:2] == ["knight", "mage"]


def test_queue_runs_jobs_one_at_a_time_in_order():
    q = GenerationQueue()
    running, order, overlap = [], [], []

    def work(k):
        def fn(job):
            running.append(k)
            overlap.append(len(running) > 1)
            time.sleep(0.02)
            order.append(k)
            running.remove(k)
            return k
        return fn
    jobs = [q.submit(work(k)) for k in range(8)]
    assert all(j.done.wait(10) for j in jobs)
    assert order == list(range(8)) and not any(overlap) and [j.result for j in jobs] == list(range(8))
    failing = q.submit(lambda job: 1 / 0)
    failing.done.wait(10)
    assert failing.status == "failed" and isinstance(failing.error, ZeroDivisionError)
    assert q.run(lambda job: "still serving") == "still serving"              # one failure does not stop it


def test_model_picker_and_refusals(studio):
    (studio.workspace / "runs" / "empty").mkdir()                          # no checkpoint: not offered
    assert studio.models()[0] == "runs/tiny" and "runs/empty" not in studio.models()
    with pytest.raises(ConfigError, match="is not a class of this model"):
        studio.generate(GenRequest(model="runs/tiny", prompt="a dragon", frames=2, steps=2))
    with pytest.raises(Exception, match="runs/empty has no checkpoints"):
        studio.generate(GenRequest(model="runs/empty", prompt="knight", frames=2, steps=2))
    init = studio.upload(_png(), "init")
    with pytest.raises(StudioError, match="init image is 8x8; this model needs 16x16"):
        studio.generate(GenRequest(model="runs/tiny", prompt="knight", frames=2, steps=2, init=init))


def test_requests_from_many_threads_all_land(studio):
    before = studio.gallery.count()
    out = []
    threads = [threading.Thread(target=lambda s=s: out.append(studio.generate(
        GenRequest(model="runs/tiny", prompt="robot", frames=2, steps=2, seed=s)))) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(out) == 6 and studio.gallery.count() == before + 6 and studio.gallery.check()["ok"]


def _png() -> bytes:
    import io
    buf = io.BytesIO()
    Image.new("RGBA", (8, 8), (1, 2, 3, 255)).save(buf, format="PNG")
    return buf.getvalue()


def test_attribute_guidance_is_a_setting_the_gallery_keeps(studio):
    """The bundled attribute model: attribute guidance changes the pixels, is recorded with the item
    (JSON and A1111 text) and comes back on reproduce; a model without attributes says so."""
    base = GenRequest(model="builtin", prompt="a red mage with a staff walking right", frames=2, steps=4, seed=3)
    plain = studio.generator.run(base)
    guided = studio.generator.run(GenRequest(**{**base.__dict__, "attr_guidance": 1.5}))
    assert not np.array_equal(np.asarray(Image.open(plain.sheet)), np.asarray(Image.open(guided.sheet)))
    again = studio.reproduce(guided.id)
    assert again.attr_guidance == 1.5
    assert "Attribute guidance: 1.5" in Image.open(guided.sheet).text["parameters"]
    with pytest.raises(ConfigError, match="attr-guidance.*no attribute labels"):
        studio.generator.run(GenRequest(model="runs/tiny", prompt="mage", frames=2, steps=2, attr_guidance=1.0))
    with pytest.raises(StudioError, match="attr_guidance"):
        GenRequest(attr_guidance=-1)
    # per attribute (the slider's weight plus the text box's "name=w"): kept and restored the same way
    named = studio.generator.run(GenRequest(**{**base.__dict__, "attr_guidance": "0.0,action=2"}))
    back = studio.reproduce(named.id)
    assert back.attr_guidance == "action=2" and split_attr_guidance(back.attr_guidance) == (0.0, "action=2")
    assert 'Attribute guidance: action=2' in Image.open(named.sheet).text["parameters"]
    assert settings_from_parameters(parse_parameters(Image.open(named.sheet).text["parameters"]))["attr_guidance"] == "action=2"
    with pytest.raises(StudioError, match="attr_guidance action is 11.0"):
        GenRequest(attr_guidance="action=11")
