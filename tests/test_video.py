"""Video -> Animation (spriteforge.animation.video), on a tiny MP4 written by the test itself."""

from __future__ import annotations

import numpy as np
import pytest

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

from spriteforge.animation.video import video_to_frames  # noqa: E402
from spriteforge.data.dataset import DataError  # noqa: E402

W, H, FPS, N = 64, 48, 10, 20
GREEN, RED = (0, 255, 0), (255, 0, 0)


def square_x(i):
    """Left edge of the red 16x16 square in frame i (it moves 2 px per frame)."""
    return 8 + 2 * i


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    gen = imageio_ffmpeg.write_frames(str(path), (W, H), fps=FPS, quality=10, pix_fmt_out="yuv444p",
                                      macro_block_size=16)
    gen.send(None)
    for i in range(N):
        f = np.zeros((H, W, 3), np.uint8)
        f[:] = GREEN
        f[16:32, square_x(i):square_x(i) + 16] = RED
        gen.send(f)
    gen.close()
    return path


def red_left_edge(frame):
    red = (frame[..., 0] > 128) & (frame[..., 1] < 128) & (frame[..., 3] > 0)
    cols = np.flatnonzero(red.any(axis=0))
    return int(cols[0])


def test_read_all_frames(clip):
    anim = video_to_frames(clip)
    assert len(anim) == N and anim.name == "clip" and anim.source == str(clip)
    assert anim.frame_size == (W, H) and anim.durations_ms == [100] * N
    f = anim.frames[3]
    assert f.dtype == np.uint8 and f.shape == (H, W, 4) and f[..., 3].min() == 255
    assert abs(red_left_edge(f) - square_x(3)) <= 1
    assert np.abs(f[40, 40, :3].astype(int) - GREEN).max() < 12       # lossy, but close


def test_fps_and_time_range(clip):
    anim = video_to_frames(clip, fps=5, start=0.5, end=1.5)
    assert len(anim) == 5 and anim.durations_ms == [200] * 5
    # the first frame is the one shown at t = 0.5 s (source frame 5), then every other frame
    edges = [red_left_edge(f) for f in anim.frames]
    assert abs(edges[0] - square_x(5)) <= 1
    assert all(abs((b - a) - 4) <= 1 for a, b in zip(edges, edges[1:]))
    assert len(video_to_frames(clip, start=1.0)) == 10
    assert len(video_to_frames(clip, end=0.5)) == 5
    assert len(video_to_frames(clip, max_frames=3)) == 3


def test_crop_resize_and_key_colour(clip):
    # frame 0: square at x 8..24, y 16..32. Crop (8, 16, 32, 16): left half red, right half green.
    anim = video_to_frames(clip, crop=(8, 16, 32, 16), size=(16, 8), key_color="#00ff00", max_frames=1)
    (f,) = anim.frames
    assert f.shape == (8, 16, 4)
    assert (f[:, :7, 3] == 255).all() and (f[:, 9:, 3] == 0).all()      # green keyed out
    assert (f[:, 9:, :3] == 0).all()                                    # keyed pixels carry no colour
    assert (f[:, :7, 0] > 200).all() and (f[:, :7, 1] < 60).all()
    sq = video_to_frames(clip, size=16, max_frames=1)
    assert sq.frame_size == (16, 16)


def test_no_frames_in_range(clip):
    with pytest.raises(DataError) as e:
        video_to_frames(clip, start=5, end=6)
    msg = str(e.value)
    assert "clip.mp4" in msg and "no frames in the range 5s..6s" in msg and "lasts 2 s" in msg


def test_bad_inputs(clip, tmp_path):
    with pytest.raises(DataError, match="missing.mp4: video file not found"):
        video_to_frames(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video")
    with pytest.raises(DataError, match="junk.mp4: cannot read video"):
        video_to_frames(junk)
    with pytest.raises(DataError, match=r"empty time range 2s\.\.1s"):
        video_to_frames(clip, start=2, end=1)
    with pytest.raises(DataError, match="crop x=50 y=0 w=32 h=16 lies outside the 64x48 px video"):
        video_to_frames(clip, crop=(50, 0, 32, 16))
