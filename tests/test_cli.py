"""The command line: bad input gets one clear line naming the flag or file, never a traceback."""

import subprocess
import sys

from PIL import Image


def run(*args, cwd=None):
    p = subprocess.run([sys.executable, "-m", "spriteforge.cli", *map(str, args)], capture_output=True, text=True, cwd=cwd)
    return p.returncode, p.stdout + p.stderr


def assert_clean_error(code, out, *needles):
    assert code != 0, out
    assert "Traceback" not in out, out
    for n in needles:
        assert n in out, (n, out)


def test_help_explains_flags():
    code, out = run("train", "--help")
    assert code == 0 and "--minutes" in out and "train.lr" in out and "--resume" in out


def test_bad_inputs(tmp_path):
    assert_clean_error(*run("train", "--data", tmp_path / "missing", "--out", tmp_path / "r", "--steps", 1), "missing")
    (tmp_path / "empty").mkdir()
    assert_clean_error(*run("train", "--data", tmp_path / "empty", "--out", tmp_path / "r", "--steps", 1), "empty")
    assert_clean_error(*run("train", "--out", tmp_path / "r", "--steps", 1, "--lr", "-1"), "train.lr")
    assert_clean_error(*run("train", "--out", tmp_path / "r"), "--minutes")
    assert_clean_error(*run("train", "--out", tmp_path / "r", "--steps", 1, "--set", "train.nope=1"), "train.nope")
    small = tmp_path / "small"
    small.mkdir()
    Image.new("RGBA", (3, 3)).save(small / "a.png")
    assert_clean_error(*run("train", "--data", small, "--out", tmp_path / "r", "--steps", 1), "a.png")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    assert_clean_error(*run("sample", bad, "--out", tmp_path / "g.png"), "bad.safetensors")
    assert_clean_error(*run("sample", tmp_path / "nothing", "--out", tmp_path / "g.png"), "nothing")
    assert_clean_error(*run("sample", bad, "--sampler", "plms"), "--sampler")


def test_train_sample_export_info_end_to_end(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "red").mkdir(parents=True)
    (folder / "blue").mkdir(parents=True)
    for i in range(6):  # sprites with transparent corners: the data is RGBA
        for name, colour in (("red", (255, 0, 0, 255)), ("blue", (0, 0, 255, 255))):
            img = Image.new("RGBA", (16, 16), colour)
            img.putpixel((0, 0), (0, 0, 0, 0))
            img.save(folder / name / f"{i}.png")
    run_dir = tmp_path / "run"
    code, out = run("train", "--data", folder, "--out", run_dir, "--steps", 3, "--size", 16, "--preset", "tiny",
                    "--batch-size", 4, "--quiet", "--set", "train.sample_steps=2", "--set", "train.sample_n=2")
    assert code == 0, out
    code, out = run("train", "--data", folder, "--out", run_dir, "--steps", 3, "--size", 16)
    assert_clean_error(code, out, "--resume", "--overwrite")
    code, out = run("sample", run_dir, "--n", 2, "--steps", 2, "--class", "red", "--cfg", 2, "--out", tmp_path / "g.png")
    assert code == 0, out
    assert (tmp_path / "g.png").exists() and len(list((tmp_path / "g").glob("*.png"))) == 2
    assert Image.open(tmp_path / "g" / "sample_0000.png").mode == "RGBA"
    assert_clean_error(*run("sample", run_dir, "--out", tmp_path / "g.png"), "--overwrite")
    assert_clean_error(*run("sample", run_dir, "--class", "green", "--out", tmp_path / "h.png"), "green", "red")
    code, out = run("export", run_dir, "--out", tmp_path / "w.safetensors")
    assert code == 0 and "MB" in out, out
    code, out = run("info", tmp_path / "w.safetensors")
    assert code == 0 and "parameters" in out and "blue, red" in out, out
