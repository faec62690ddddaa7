"""Shared pieces of the studio tests (no tests here): a tiny frame-set model, workspaces, and a
studio server in a subprocess on a free localhost port, always killed at the end."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False",
       "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def tiny_model(base: Path) -> Path:
    """A class-conditional frame-set run (16 px, 3 steps; classes knight, mage, ...), trained once per
    test session and reused by every studio test file (about 2 s)."""
    run = base / "studio_tiny_model"
    if (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("*.safetensors")):
        return run
    import torch

    from spriteforge.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from spriteforge.training.loop import train
    torch.set_num_threads(1)
    cfg = RunConfig(data=DataConfig(size=16, builtin_characters=2), model=ModelConfig(preset="tiny"),
                    train=TrainConfig(steps=3, batch_size=8, frames=4, sample_every=0, val_every=0, log_every=1,
                                      sample_n=8, sample_steps=2, bf16=False, threads=1))
    train(cfg, run, quiet=True, overwrite=True)
    return run


def make_workspace(root: Path, model_run: Path, name: str = "tiny") -> Path:
    """A workspace whose model picker offers `runs/<name>` (a copy of the tiny run)."""
    ws = root / "workspace"
    shutil.copytree(model_run, ws / "runs" / name)
    return ws


def tiny_train_settings() -> list[str]:
    """Settings for a training run that takes seconds: 16 px, 2 characters, tiny batches."""
    return ["data.size=16", "data.builtin_characters=2", "train.batch_size=4", "train.sample_every=2",
            "train.sample_n=8", "train.sample_steps=2", "train.val_every=0", "train.log_every=1",
            "train.ckpt_every=2", "train.bf16=false", "train.threads=1", "train.warmup_steps=1"]


def frames_rgba(n: int = 4, size: int = 16, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 4), dtype=np.uint8) for _ in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StudioServer:
    """`spriteforge studio` in a subprocess; `kill()` is SIGKILL (a crash), `stop()` a clean stop."""

    def __init__(self, workspace: Path, log: Path, extra: list[str] | None = None):
        self.workspace = workspace
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "ab")
        env = {**ENV, "GRADIO_TEMP_DIR": str(log.parent / "gradio-cache")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spriteforge.cli", "studio", "--workspace", str(workspace), "--port", str(self.port),
             *(extra or [])], stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self._wait_up()

    def _wait_up(self, timeout: float = 90) -> None:
        import httpx
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"studio exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=2).status_code in (200, 401):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.kill()
        raise RuntimeError(f"studio did not answer on {self.url} within {timeout} s; see {self.log.name}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def kill_training(workspace: Path) -> None:
    """End a training process a test started (the studio leaves it running by design)."""
    state = workspace / "training.json"
    if not state.exists():
        return
    pid = json.loads(state.read_text())["pid"]
    try:
        if b"spriteforge" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
    except (OSError, ProcessLookupError):
        pass


def serve_studio(root: Path, basetemp: Path, extra_model: str | None = None):
    """Generator for a module fixture: a studio on a fresh workspace with the tiny model (and, if
    given, another weights file as models/sprites.safetensors); killed, with its training, at the end."""
    ws = make_workspace(root, tiny_model(basetemp))
    if extra_model:
        (ws / "models").mkdir(parents=True, exist_ok=True)
        shutil.copy(extra_model, ws / "models" / "sprites.safetensors")
    srv = StudioServer(ws, root / "studio.log")
    try:
        yield srv
    finally:
        srv.kill()
        kill_training(ws)
