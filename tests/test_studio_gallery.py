"""The gallery: files + SQLite index round trip, AUTOMATIC1111 text chunks, rebuild, delete,
search, concurrent writers and crash recovery."""

import json
import sqlite3
import threading
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from spriteforge.studio.gallery import (Gallery, format_parameters, parse_parameters, read_png_settings,
                                        settings_from_parameters)
from spriteforge.studio.safety import StudioError
from test_studio_support import frames_rgba


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def settings(**kw) -> dict:
    base = {"model": "runs/tiny", "prompt": "a red knight, walking: right", "negative_prompt": "blurry, dark",
            "frames": 4, "sampler": "dpmpp-2m", "steps": 20, "cfg": 2.0, "seed": 7, "size": "16x16"}
    return {**base, **kw}


def test_add_round_trip_files_chunks_and_index(tmp_path):
    g = Gallery(tmp_path / "gallery")
    frames = frames_rgba(4)
    item = g.add(frames, settings())
    assert g.get(item.id).settings == item.settings and g.count() == 1
    sheet = np.asarray(Image.open(item.sheet))
    assert np.array_equal(sheet, np.concatenate(frames, axis=1))          # pixels exactly as generated
    text = Image.open(item.sheet).text
    assert text["parameters"].startswith("a red knight, walking: right\nNegative prompt: blurry, dark\nSteps: 20,")
    assert json.loads(text["spriteforge"])["seed"] == 7
    for f in sorted((item.folder / "frames").glob("*.png")):                # every PNG carries the chunks
        assert "parameters" in Image.open(f).text
    names = set(zipfile.ZipFile(item.bundle).namelist())
    assert {"sheet.png", "preview.gif", "preview.png", "preview.webp", "sheet.json", "parameters.txt"} <= names
    assert any(n.endswith(".tres") for n in names) and sum(n.startswith("frames/") for n in names) == 4
    with sqlite3.connect(g.db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a1111_parameters_format_and_parse():
    s = settings(init="gallery/x/inputs/init.png", strength=0.5)
    text = format_parameters(s)
    last = text.splitlines()[-1]
    assert last.startswith("Steps: 20, Sampler: dpmpp-2m, CFG scale: 2.0, Seed: 7, Size: 16x16, Model: runs/tiny, Frames: 4")
    p = parse_parameters(text)
    assert p["Prompt"] == s["prompt"] and p["Negative prompt"] == s["negative_prompt"]
    assert p["Seed"] == "7" and p["Frames"] == "4" and p["Denoising strength"] == "0.5"
    back = settings_from_parameters(p)
    assert {k: back[k] for k in ("prompt", "steps", "cfg", "seed", "frames", "model")} == \
           {k: s[k] for k in ("prompt", "steps", "cfg", "seed", "frames", "model")}
    # text written by AUTOMATIC1111 itself (quoted values with commas, a multi-line prompt)
    a1111 = ("masterpiece, a castle\non a hill\nNegative prompt: blurry, lowres\n"
             'Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234, Size: 512x768, '
             'Model hash: 6ce0161689, Model: v1-5-pruned, Lora hashes: "a: 1, b: 2", Version: v1.6.0')
    p = parse_parameters(a1111)
    assert p["Prompt"] == "masterpiece, a castle\non a hill" and p["Negative prompt"] == "blurry, lowres"
    assert p["Sampler"] == "DPM++ 2M Karras" and p["Lora hashes"] == "a: 1, b: 2" and p["Version"] == "v1.6.0"
    assert parse_parameters("just a prompt") == {"Prompt": "just a prompt", "Negative prompt": ""}


def test_rebuild_from_pngs_after_the_database_is_lost(tmp_path):
    g = Gallery(tmp_path / "gallery")
    items = [g.add(frames_rgba(2, seed=i), settings(seed=i, prompt=f"slime {i}")) for i in range(3)]
    # one PNG written by another tool: only the A1111 chunk, no JSON chunk
    legacy = items[2].sheet
    img = Image.open(legacy)
    img.load()
    info = PngInfo()
    info.add_text("parameters", img.text["parameters"])
    img.save(legacy, pnginfo=info)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / "gallery" / f"gallery.db{suffix}").unlink(missing_ok=True)
    g2 = Gallery(tmp_path / "gallery")
    assert g2.count() == 0 and g2.check()["orphans"] == sorted(i.id for i in items)
    assert g2.rebuild() == 3 and g2.check()["ok"]
    for it in items[:2]:
        assert g2.get(it.id).settings == it.settings
    assert g2.get(items[2].id).seed == 2 and g2.get(items[2].id).prompt == "slime 2"
    assert read_png_settings(legacy)["frames"] == 4 and g2.search("slime", order="oldest")[0].id == items[0].id


def test_delete_removes_files_and_refuses_unknown_or_bad_ids(tmp_path):
    g = Gallery(tmp_path / "gallery")
    a, b = g.add(frames_rgba(), settings()), g.add(frames_rgba(), settings(seed=8))
    g.delete(a.id)
    assert not a.folder.exists() and g.count() == 1 and g.get(b.id)
    with pytest.raises(KeyError, match=a.id):
        g.get(a.id)
    with pytest.raises(KeyError, match="does not exist"):
        g.delete(a.id)
    with pytest.raises(StudioError, match="not a gallery item id"):
        g.delete("../gallery.db")
    assert g.db.exists() and g.check()["ok"]


def test_search_by_prompt_and_model_sorted_by_date(tmp_path):
    g = Gallery(tmp_path / "gallery")
    g.add(frames_rgba(), settings(prompt="knight walking", model="builtin"))
    g.add(frames_rgba(), settings(prompt="100% slime", model="runs/tiny"))
    g.add(frames_rgba(), settings(prompt="Knight jumping", model="runs/tiny"))
    assert [i.prompt for i in g.search("knight")] == ["Knight jumping", "knight walking"]   # newest first
    assert [i.prompt for i in g.search("knight", order="oldest")] == ["knight walking", "Knight jumping"]
    assert [i.prompt for i in g.search("knight", model="builtin")] == ["knight walking"]
    assert [i.prompt for i in g.search("100%")] == ["100% slime"]          # % is literal, not a wildcard
    assert g.search("_") == [] and len(g.search()) == 3 and g.models() == ["builtin", "runs/tiny"]
    with pytest.raises(StudioError, match="order"):
        g.search(order="random")


def test_concurrent_writers_lose_nothing(tmp_path):
    g = Gallery(tmp_path / "gallery")
    errors = []

    def worker(k):
        try:
            for i in range(3):
                Gallery(tmp_path / "gallery").add(frames_rgba(2, seed=k * 10 + i), settings(seed=k * 10 + i))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and g.count() == 18
    assert sorted(i.seed for i in g.search(limit=100)) == sorted(k * 10 + i for k in range(6) for i in range(3))
    assert g.check() == {"sqlite": "ok", "items": 18, "missing_files": [], "orphans": [], "ok": True}


def test_recover_after_a_crash(tmp_path):
    g = Gallery(tmp_path / "gallery")
    a = g.add(frames_rgba(), settings())
    (tmp_path / "gallery" / ".tmp-20260101-000000-abcdef").mkdir()       # a half-written item
    with sqlite3.connect(g.db) as con:                                    # a complete item the index missed
        con.execute("DELETE FROM items WHERE id = ?", (a.id,))
    report = g.recover()
    assert report == {"removed_partial": [".tmp-20260101-000000-abcdef"], "indexed": [a.id]}
    assert g.check()["ok"] and g.get(a.id).settings == a.settings
