"""What the studio refuses: non-images, archives, oversized uploads, paths out of the workspace,
oversized requests, exposing the server without credentials. Each refusal says why."""

import io
import os
import tarfile
import zipfile

import pytest
from PIL import Image

from spriteforge.studio.generation import GenRequest
from spriteforge.studio.jobs import TrainRequest
from spriteforge.studio.safety import (MAX_UPLOAD_BYTES, StudioError, check_image_bytes, check_name, confine,
                                       load_image, store_upload)


def png_bytes(w=16, h=16, mode="RGBA", fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), (255, 0, 0, 128) if mode == "RGBA" else 0).save(buf, format=fmt)
    return buf.getvalue()


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("sprite.png", png_bytes())
    return buf.getvalue()


def tar_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = png_bytes()
        info = tarfile.TarInfo("sprite.png")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("data, needle", [
    (b"#!/bin/sh\nrm -rf /\n", "not a readable image"),
    (b"", "is empty"),
    (zip_bytes(), "archive (zip)"),
    (tar_bytes(), "archive (tar)"),
    (b"\x1f\x8b\x08\x00" + b"\x00" * 40, "archive (gzip)"),
    (png_bytes()[:60], "not a readable image"),                       # truncated PNG
    (png_bytes(fmt="TIFF"), "TIFF file; accepted formats"),
    (png_bytes(3000, 3000, mode="L"), "the limit is 4,194,304"),     # small file, too many pixels
    (b"\x89PNG" + b"\x00" * (MAX_UPLOAD_BYTES + 1), "uploads are limited to 8 MB"),
])
def test_bad_uploads_are_refused_with_a_reason(data, needle):
    with pytest.raises(StudioError, match="upload") as e:
        check_image_bytes(data, "upload 'x.png'")
    assert needle in str(e.value)


def test_good_upload_is_stored_as_png_inside_the_workspace(tmp_path):
    path = store_upload(tmp_path, png_bytes(fmt="WEBP"), "upload")
    assert path.parent == tmp_path / "uploads" and path.suffix == ".png"
    assert load_image(tmp_path, path.relative_to(tmp_path), "init").shape == (16, 16, 4)
    assert store_upload(tmp_path, png_bytes(fmt="WEBP"), "upload") == path        # same pixels, same file


def test_paths_outside_the_workspace_are_refused(tmp_path):
    ws = tmp_path / "ws"
    (ws / "uploads").mkdir(parents=True)
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes())
    os.symlink(outside, ws / "uploads" / "link.png")                    # a symlink pointing out
    os.symlink(tmp_path, ws / "escape")                                 # a folder symlink pointing out
    for bad in ("../secret.png", "uploads/../../secret.png", str(outside), "/etc/passwd",
                "uploads/link.png", "escape/secret.png", "a\x00b"):
        with pytest.raises(StudioError, match="outside the workspace|not a usable path"):
            confine(ws, bad, "init")
    with pytest.raises(StudioError, match="'uploads/link.png' is outside the workspace"):
        load_image(ws, "uploads/link.png", "init")
    assert confine(ws, "uploads/../uploads/x.png", "init") == (ws / "uploads" / "x.png").resolve()
    assert confine(ws, ws / "runs", "run") == (ws / "runs").resolve()
    for bad in ("../evil", "a/b", "..", "", "x" * 65, "-flag"):
        with pytest.raises(StudioError, match="run name"):
            check_name(bad, "run name")


def test_request_caps_say_which_field_and_limit():
    with pytest.raises(StudioError, match="prompt is 501 characters; the limit is 500"):
        GenRequest(prompt="x" * 501)
    with pytest.raises(StudioError, match="frames is 500; it must be between 1 and 32"):
        GenRequest(frames=500)
    with pytest.raises(StudioError, match="steps is 5000"):
        GenRequest(steps=5000)
    with pytest.raises(StudioError, match="seed must be a whole number"):
        GenRequest(seed=1.5)
    with pytest.raises(StudioError, match="sampler 'plms'"):
        GenRequest(sampler="plms")
    with pytest.raises(StudioError, match="mask needs an init image"):
        GenRequest(mask="uploads/m.png")
    with pytest.raises(StudioError, match=r"unknown field\(s\) \['promt'\]"):
        GenRequest.from_dict({"promt": "knight"})


def test_training_requests_are_checked_before_anything_starts():
    with pytest.raises(StudioError, match="data.source"):
        TrainRequest(overrides=["data.source=/etc"])
    with pytest.raises(Exception, match="train.nope"):
        TrainRequest(overrides="train.nope=1")
    with pytest.raises(StudioError, match="budget"):
        TrainRequest(minutes=0, steps=0)
    with pytest.raises(StudioError, match="run name"):
        TrainRequest(name="../../etc")
    assert TrainRequest(name="ok", overrides="train.lr=1e-3\n  model.channel_mult=[1,2,2]\n").overrides == \
        ["train.lr=1e-3", "model.channel_mult=[1,2,2]"]


def test_non_local_host_needs_credentials(monkeypatch, capsys):
    from spriteforge.studio.app import resolve_auth
    monkeypatch.delenv("SPRITEFORGE_STUDIO_AUTH", raising=False)
    assert resolve_auth("127.0.0.1", None) is None
    with pytest.raises(StudioError, match="--host 0.0.0.0.*--auth"):
        resolve_auth("0.0.0.0", None)
    with pytest.raises(StudioError, match="must look like user:password"):
        resolve_auth("127.0.0.1", "nopassword")
    assert resolve_auth("0.0.0.0", "ann:s3cret") == ("ann", "s3cret")
    assert "warning" in capsys.readouterr().err
    monkeypatch.setenv("SPRITEFORGE_STUDIO_AUTH", "bob:pw")
    assert resolve_auth("192.168.1.5", None) == ("bob", "pw")
