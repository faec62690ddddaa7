"""The studio's HTTP API, against a real server on a localhost port: generate and fetch files,
gallery listing, refusals (bad uploads, path traversal, oversized requests), a bounded load test
(20 concurrent requests), a crash mid-generation, and a training run that outlives a studio crash."""

import http.client
import io
import sqlite3
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_studio_support import StudioServer, kill_training, make_workspace, serve_studio, tiny_model, tiny_train_settings

httpx = pytest.importorskip("httpx", reason="the studio extra (gradio, httpx) is not installed")
pytest.importorskip("gradio", reason="the studio extra (gradio) is not installed: pip install -e '.[test]'")

FAST = {"model": "runs/tiny", "prompt": "knight", "frames": 4, "steps": 4}


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_studio(tmp_path_factory.mktemp("studio_api"), tmp_path_factory.getbasetemp())


def post(srv, path, **kw):
    return httpx.post(srv.url + "/api/v1" + path, timeout=120, **kw)


def get(srv, path, **kw):
    return httpx.get(srv.url + "/api/v1" + path, timeout=60, **kw)


def png(w=16, h=16, colour=(0, 200, 0, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGBA", (w, h), colour).save(buf, format="PNG")
    return buf.getvalue()


def test_generate_returns_files_and_same_seed_same_pixels(server):
    r = post(server, "/generate", json={**FAST, "seed": 5})
    assert r.status_code == 200, r.text
    item = r.json()
    assert item["settings"]["seed"] == 5 and "Frames: 4" in item["parameters"]
    sheet = httpx.get(item["sheet_url"], timeout=30)
    assert sheet.status_code == 200 and Image.open(io.BytesIO(sheet.content)).size == (64, 16)
    assert Image.open(io.BytesIO(sheet.content)).text["parameters"] == item["parameters"]
    names = zipfile.ZipFile(io.BytesIO(httpx.get(item["zip_url"], timeout=30).content)).namelist()
    assert {"sheet.png", "preview.gif", "sheet.json", "knight.tres"} <= set(names)
    again = post(server, "/generate", json={**FAST, "seed": 5}).json()
    assert again["id"] != item["id"]
    pixels = lambda content: np.asarray(Image.open(io.BytesIO(content)))  # noqa: E731
    assert np.array_equal(pixels(httpx.get(again["sheet_url"], timeout=30).content), pixels(sheet.content))


def test_gallery_lists_searches_gets_and_deletes(server):
    made = post(server, "/generate", json={**FAST, "prompt": "slime", "seed": 11}).json()
    listing = get(server, "/gallery", params={"q": "slim"}).json()
    assert [i["id"] for i in listing["items"]] == [made["id"]]
    assert get(server, "/gallery", params={"model": "runs/tiny", "order": "oldest"}).json()["items"][-1]["id"] == made["id"]
    assert get(server, f"/gallery/{made['id']}").json()["settings"]["prompt"] == "slime"
    assert httpx.delete(f"{server.url}/api/v1/gallery/{made['id']}", timeout=30).status_code == 200
    r = get(server, f"/gallery/{made['id']}")
    assert r.status_code == 404 and made["id"] in r.json()["detail"]
    assert get(server, "/models").json()["models"] == ["runs/tiny", "builtin"]  # workspace runs, then the bundled model


def test_uploads_are_checked_and_usable_as_init_and_mask(server):
    for data, needle in ((b"not an image at all", "not a readable image"), (b"PK\x03\x04" + b"\x00" * 64, "archive (zip)"),
                         (b"\x89PNG" + b"\x00" * (9 * 2**20), "limited to 8 MB")):
        r = post(server, "/uploads", files={"file": ("evil.png", data, "image/png")})
        assert r.status_code == 400 and needle in r.json()["detail"], r.text
    init = post(server, "/uploads", files={"file": ("green.png", png(), "image/png")}).json()["path"]
    mask_img = np.zeros((16, 16, 4), np.uint8)
    mask_img[:, 8:] = 255                                                    # regenerate the right half
    buf = io.BytesIO()
    Image.fromarray(mask_img).save(buf, format="PNG")
    mask = post(server, "/uploads", files={"file": ("mask.png", buf.getvalue(), "image/png")}).json()["path"]
    item = post(server, "/generate", json={**FAST, "init": init, "mask": mask}).json()
    sheet = np.asarray(Image.open(io.BytesIO(httpx.get(item["sheet_url"], timeout=30).content)))
    assert (sheet[:, :8] == [0, 200, 0, 255]).all()                         # kept pixels exactly
    assert item["settings"]["init"].startswith("gallery/") and "Init image" in item["parameters"]
    assert post(server, "/generate", json={**FAST, "init": init, "strength": 0.3}).status_code == 200
    r = post(server, "/generate", json={**FAST, "init": post(server, "/uploads", files={
        "file": ("big.png", png(32, 32), "image/png")}).json()["path"]})
    assert r.status_code == 400 and "needs 16x16" in r.json()["detail"]


def test_path_traversal_is_refused(server):
    for field, value in (("init", "../../../../etc/passwd"), ("init", "/etc/passwd"), ("control", "uploads/../../x.png"),
                         ("model", "../../runs/tiny"), ("model", "/tmp")):
        r = post(server, "/generate", json={**FAST, field: value})
        assert r.status_code == 400 and "outside the workspace" in r.json()["detail"], (field, value, r.text)
    link = server.workspace / "uploads" / "link.png"
    link.symlink_to("/etc/passwd")
    r = post(server, "/generate", json={**FAST, "init": "uploads/link.png"})
    assert r.status_code == 400 and "outside the workspace" in r.json()["detail"]
    item = post(server, "/generate", json=FAST).json()
    for rel in ("../gallery.db", "..%2Fgallery.db", "%2E%2E/%2E%2E/training.json"):  # raw, not normalised by a client
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", f"/api/v1/gallery/{item['id']}/files/{rel}")
        resp = conn.getresponse()
        assert resp.status in (400, 404), (rel, resp.status)
        assert b"SQLite" not in resp.read()
    r = post(server, "/train", json={"data": "../../", "name": "x", "steps": 1})
    assert r.status_code == 400 and "outside the workspace" in r.json()["detail"]


def test_oversized_requests_are_capped_with_a_message(server):
    for body, needle in (({"prompt": "x" * 600}, "prompt is 600 characters; the limit is 500"),
                         ({"frames": 1000}, "frames is 1000; it must be between 1 and 32"),
                         ({"steps": 100000}, "steps is 100000"), ({"sampler": "plms"}, "sampler 'plms'"),
                         ({"promt": "x"}, "unknown field(s) ['promt']")):
        r = post(server, "/generate", json={**FAST, **body})
        assert r.status_code == 400 and needle in r.json()["detail"], r.text


def test_twenty_concurrent_generations_all_complete(server):
    before = get(server, "/gallery", params={"limit": 1000}).json()["total"]
    results = [None] * 20

    def one(i):
        results[i] = post(server, "/generate", json={**FAST, "prompt": "mage", "seed": 1000 + i})
    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r is not None and r.status_code == 200 for r in results), [getattr(r, "text", r) for r in results]
    assert time.time() - t0 < 120
    items = get(server, "/gallery", params={"q": "mage", "limit": 1000}).json()["items"]
    assert sorted(i["seed"] for i in items) == list(range(1000, 1020))       # exactly 20 new, none lost or doubled
    assert get(server, "/gallery", params={"limit": 1000}).json()["total"] == before + 20
    check = get(server, "/gallery-check").json()
    assert check["ok"] and check["sqlite"] == "ok"
    with sqlite3.connect(server.workspace / "gallery" / "gallery.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_crash_mid_generation_keeps_the_gallery_and_training_survives(tmp_path_factory):
    """Kill -9 the studio while it generates (and trains); the restarted studio has an intact gallery,
    re-attaches to the still-running training, stops it with a checkpoint and resumes it."""
    root = tmp_path_factory.mktemp("studio_crash")
    ws = make_workspace(root, tiny_model(tmp_path_factory.getbasetemp()))
    srv = StudioServer(ws, root / "studio.log")
    try:
        r = post(srv, "/train", json={"name": "long", "steps": 100000, "minutes": 0, "frames": 4,
                                      "overrides": tiny_train_settings()})
        assert r.status_code == 200, r.text
        assert post(srv, "/train", json={"name": "second", "steps": 5}).status_code == 409    # one at a time
        done = [post(srv, "/generate", json={**FAST, "seed": 1}).json()["id"]]
        threads = [threading.Thread(target=lambda i=i: _quiet_post(srv, {**FAST, "steps": 40, "frames": 8, "seed": i}))
                   for i in range(4)]
        for t in threads:
            t.start()
        deadline = time.time() + 60
        while get(srv, "/gallery").json()["total"] < 2 and time.time() < deadline:
            time.sleep(0.1)
        srv.kill()                                                           # mid-generation: a crash
        for t in threads:
            t.join(30)
        srv = StudioServer(ws, root / "studio2.log")
        check = get(srv, "/gallery-check").json()
        assert check["ok"], check                                            # no lost rows, no orphans, sqlite ok
        listing = get(srv, "/gallery", params={"limit": 100}).json()
        assert done[0] in [i["id"] for i in listing["items"]] and listing["total"] >= 2
        for it in listing["items"]:
            assert httpx.get(it["sheet_url"], timeout=30).status_code == 200
        assert not list((ws / "gallery").glob(".tmp-*"))                     # half-written items removed
        # training went on without the studio; the new studio re-attaches to it
        deadline = time.time() + 60
        while (st := get(srv, "/train/status").json())["step"] < 2 and time.time() < deadline:
            time.sleep(0.3)
        assert st["state"] == "running" and st["run"] == "runs/long" and st["step"] >= 2, st
        assert st["loss_points"] and st["eta_s"] is not None
        assert post(srv, "/train/stop").json()["state"] in ("stopping", "stopped")
        deadline = time.time() + 60
        while (st := get(srv, "/train/status").json())["state"] == "stopping" and time.time() < deadline:
            time.sleep(0.3)
        assert st["state"] == "stopped" and st["resumable"], st
        stopped_at = st["step"]
        r = post(srv, "/train/resume", json={"steps": stopped_at + 2})
        assert r.status_code == 200, r.text
        deadline = time.time() + 60
        while (st := get(srv, "/train/status").json())["state"] == "running" and time.time() < deadline:
            time.sleep(0.3)
        assert st["state"] == "finished" and st["step"] == stopped_at + 2 and st["sample"], st
        assert "runs/long" in get(srv, "/models").json()["models"]
    finally:
        srv.kill()
        kill_training(ws)


def _quiet_post(srv, body):
    try:
        post(srv, "/generate", json=body)
    except httpx.HTTPError:
        pass                                                                 # the server was killed on purpose


def test_auth_protects_the_api(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio_auth")
    ws = Path(root) / "ws"
    srv = StudioServer(ws, root / "studio.log", extra=["--auth", "ann:s3cret"])
    try:
        r = get(srv, "/models")
        assert r.status_code == 401 and "--auth" in r.json()["detail"]
        assert get(srv, "/models", auth=("ann", "wrong")).status_code == 401
        assert get(srv, "/models", auth=("ann", "s3cret")).json() == {"models": ["builtin"]}  # an empty workspace still offers the bundled model
    finally:
        srv.kill()
