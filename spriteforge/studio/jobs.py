"""Background work: the generation queue (one request at a time, none dropped) and the training
job (one at a time, in its own process, surviving browser refreshes and studio restarts).

Generation runs on one worker thread in the studio process: two CPU-bound samplers side by side
would each run at half speed and double the memory, so requests wait their turn in submission
order; the queue is unbounded, so a burst of requests is slower, never lost.

Training runs as `python -m spriteforge.cli train ...` in a new session: the studio stays
responsive, a crash in training cannot take the studio down, and the run goes on if the studio is
stopped. Everything the Train tab shows is read from the run folder the trainer writes anyway
(metrics.jsonl, samples/, checkpoints/), plus a small state file in the workspace
(`training.json`: pid, run, command), so a restarted studio re-attaches to a live run or shows a
dead one as stopped and resumable. Stop sends SIGINT, which the trainer answers by finishing its
step and writing a checkpoint (the same as Ctrl-C on the command line).
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import PRESETS, RunConfig, apply_overrides
from .safety import StudioError, check_name, check_range, confine

# --------------------------------------------------------------------------- generation queue


@dataclass
class Job:
    """One queued piece of work (a generation or a compare grid) and what the UI shows of it."""
    fn: Callable[["Job"], Any]
    kind: str = "generate"
    id: str = field(default_factory=lambda: secrets.token_hex(4))
    status: str = "queued"                 # queued | running | done | failed
    step: int = 0                          # sampler step reached (live progress)
    total: int = 0
    preview: np.ndarray | None = None      # the current denoised estimate (live preview)
    result: Any = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def report(self, step: int, total: int, preview: np.ndarray | None = None) -> None:
        self.step, self.total = step, total
        if preview is not None:
            self.preview = preview


class GenerationQueue:
    """A FIFO of jobs run one at a time on a single worker thread."""

    def __init__(self):
        self._q: queue.Queue[Job] = queue.Queue()
        self._waiting: list[Job] = []
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._loop, name="studio-generation", daemon=True)
        self._worker.start()

    def submit(self, fn: Callable[[Job], Any], kind: str = "generate") -> Job:
        job = Job(fn, kind)
        with self._lock:
            self._waiting.append(job)
        self._q.put(job)
        return job

    def position(self, job: Job) -> int:
        """How many jobs run before this one (0 = it is running or done)."""
        with self._lock:
            return self._waiting.index(job) if job in self._waiting else 0

    def pending(self) -> int:
        with self._lock:
            return len(self._waiting)

    def run(self, fn: Callable[[Job], Any], kind: str = "generate", timeout: float | None = None) -> Any:
        """Submit and wait: the result, or the job's exception re-raised."""
        job = self.submit(fn, kind)
        if not job.done.wait(timeout):
            raise TimeoutError(f"{kind} job {job.id} did not finish within {timeout} s (it is still queued or running)")
        if job.error is not None:
            raise job.error
        return job.result

    def _loop(self) -> None:
        while True:
            job = self._q.get()
            with self._lock:
                self._waiting.remove(job)
                job.status = "running"
            try:
                job.result = job.fn(job)
                job.status = "done"
            except BaseException as e:  # the error goes back to whoever waits for this job
                job.error, job.status = e, "failed"
            finally:
                job.done.set()


# --------------------------------------------------------------------------- training


@dataclass
class TrainRequest:
    data: str = "builtin"            # "builtin" or a folder inside the workspace (e.g. data/my_sprites)
    name: str = ""                   # run folder name under runs/ (default: a timestamp)
    preset: str = "tiny"             # model size: tiny | small | base
    minutes: float = 5.0             # wall-clock budget (0 = none; then steps must be set)
    steps: int = 0                   # optimizer-step budget (0 = none)
    frames: int = 8                  # animation model: frames per training set (0 = single images)
    prompts: bool = False            # condition on captions with the frozen MiniLM text encoder
    overrides: list[str] = field(default_factory=list)   # more `section.key=value` settings (as --set)

    def __post_init__(self):
        self.name = check_name(self.name or time.strftime("run-%Y%m%d-%H%M%S"), "run name")
        if self.preset not in PRESETS:
            raise StudioError(f"preset {self.preset!r} must be one of {', '.join(PRESETS)}")
        self.minutes = check_range(self.minutes or 0, 0.0, 24 * 60.0, "minutes", float)
        self.steps = check_range(self.steps or 0, 0, 10_000_000, "steps")
        if not self.minutes and not self.steps:
            raise StudioError("set a training budget: minutes and/or steps")
        self.frames = check_range(self.frames or 0, 0, 16, "frames")
        if self.frames == 1:
            raise StudioError("frames must be 0 (single images) or 2-16 (animation model)")
        if isinstance(self.overrides, str):
            self.overrides = [line.strip() for line in self.overrides.splitlines() if line.strip()]  # values may hold commas
        if not isinstance(self.overrides, (list, tuple)) or not all(isinstance(o, str) for o in self.overrides):
            raise StudioError("overrides must be a list of 'section.key=value' strings")
        self.overrides = list(self.overrides)
        self.prompts = bool(self.prompts)
        for item in self.overrides:
            if item.split("=", 1)[0].strip().startswith("data.source"):
                raise StudioError(f"override {item!r}: choose the data with the data field, not data.source")
        apply_overrides(RunConfig(), self.set_args())  # every key and value checked now, not in the child

    def set_args(self) -> list[str]:
        out = [f"model.preset={self.preset}", f"train.frames={self.frames}"]
        if self.prompts:
            out.append("model.text_encoder=minilm")
        return out + list(self.overrides)


class TrainingManager:
    """Starts, watches, stops and resumes the one training process of a workspace."""

    def __init__(self, workspace: Path):
        self.workspace = workspace
        self.state_file = workspace / "training.json"
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()

    # ----- commands

    def start(self, req: TrainRequest) -> dict:
        with self._lock:
            self._refuse_if_running()
            run = confine(self.workspace, f"runs/{req.name}", "run")
            if run.exists() and any(run.iterdir()):
                raise StudioError(f"run runs/{req.name} already exists; pick another name, or resume it")
            if req.data == "builtin":
                data = "builtin"
            else:
                folder = confine(self.workspace, req.data, "data folder")
                if not folder.is_dir():
                    raise StudioError(f"data folder {req.data!r} does not exist in the workspace "
                                      f"(put your images in {self.workspace / 'data'}/NAME/)")
                data = str(folder)
            args = ["train", "--data", data, "--out", str(run), "--quiet"]
            args += (["--minutes", str(req.minutes)] if req.minutes else []) + (["--steps", str(req.steps)] if req.steps else [])
            for item in req.set_args():
                args += ["--set", item]
            return self._launch(run, args, {"request": dataclasses.asdict(req)})

    def resume(self, name: str | None = None, minutes: float | None = None, steps: int | None = None) -> dict:
        """Continue a run from its latest checkpoint (the last studio run unless `name` is given),
        with a new budget: `minutes` more, and/or up to `steps` total."""
        from ..training.checkpoint import latest_checkpoint
        with self._lock:
            self._refuse_if_running()
            state = self._read_state()
            if name is None:
                if not state:
                    raise StudioError("nothing to resume: no training was started from this workspace")
                name = Path(state["run"]).name
            run = confine(self.workspace, f"runs/{check_name(name, 'run name')}", "run")
            if latest_checkpoint(run) is None:
                raise StudioError(f"run runs/{name} has no checkpoint to resume from")
            minutes = check_range(minutes or 0, 0.0, 24 * 60.0, "minutes", float)
            steps = check_range(steps or 0, 0, 10_000_000, "steps")
            if not minutes and not steps:
                minutes = float(((state or {}).get("request") or {}).get("minutes") or 5.0)
            # the run's own config.yaml: the trainer reloads exactly the data it trained on
            args = ["train", "--config", str(run / "config.yaml"), "--out", str(run), "--resume", "--quiet"]
            args += (["--minutes", str(minutes)] if minutes else []) + (["--steps", str(steps)] if steps else [])
            return self._launch(run, args, {"request": (state or {}).get("request"), "resumed": True})

    def stop(self) -> dict:
        """SIGINT: the trainer finishes its step, writes a checkpoint and exits (resumable)."""
        with self._lock:
            state = self._read_state()
            if not state or not self._alive(state):
                raise StudioError("no training is running")
            os.kill(state["pid"], signal.SIGINT)
            state["stop_requested"] = time.time()
            self._write_state(state)
        return self.status()

    # ----- what the Train tab shows

    def status(self) -> dict:
        """{"state": idle | running | stopping | finished | stopped | failed, "run", "step", "loss",
        "eta_s", "sample", "loss_points", "val_points", ...} read from the run folder."""
        from ..training.checkpoint import latest_checkpoint
        state = self._read_state()
        if not state:
            return {"state": "idle", "message": "no training started from this workspace yet"}
        run = self.workspace / state["run"]
        alive = self._alive(state)
        recs = read_metrics(run / "metrics.jsonl")
        losses = [(r["step"], r["loss"]) for r in recs if "loss" in r]
        vals = [(r["step"], r["val_loss"]) for r in recs if "val_loss" in r]
        ckpt = latest_checkpoint(run) if run.exists() else None
        final = run / "samples" / "final.png"
        if alive:
            kind = "stopping" if state.get("stop_requested") else "running"
        elif final.exists() and (ckpt is None or final.stat().st_mtime >= ckpt.stat().st_mtime):
            kind = "finished"
        elif ckpt is not None:
            kind = "stopped"
        else:
            kind = "failed"
        budget = _budget(run, state["args"])
        step = losses[-1][0] if losses else 0
        out = {"state": kind, "run": state["run"], "pid": state["pid"], "started": state["started"],
               "step": step, "steps_budget": budget["steps"], "minutes_budget": budget["minutes"],
               "loss": losses[-1][1] if losses else None, "val_loss": vals[-1][1] if vals else None,
               "loss_points": losses, "val_points": vals, "eta_s": None,
               "sample": str(_latest_sample(run)) if _latest_sample(run) else None,
               "checkpoint": str(ckpt) if ckpt else None, "resumable": ckpt is not None and not alive,
               "log": state.get("log")}
        if alive:
            out["eta_s"] = _eta(recs, budget, state["started"])
        if kind == "failed":
            out["message"] = "training exited without a checkpoint; the end of its log:\n" + self.log_tail(state)
        return out

    def log_tail(self, state: dict | None = None, lines: int = 15) -> str:
        state = state or self._read_state() or {}
        log = self.workspace / state.get("log", "")
        if not state.get("log") or not log.is_file():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    # ----- helpers

    def _launch(self, run: Path, args: list[str], extra: dict) -> dict:
        (self.workspace / "logs").mkdir(parents=True, exist_ok=True)
        log_rel = f"logs/{run.name}.log"
        cmd = [sys.executable, "-m", "spriteforge.cli", *args]
        with open(self.workspace / log_rel, "a") as log:
            log.write(f"\n$ {' '.join(cmd)}\n")
            log.flush()
            # a new session: Ctrl-C in the studio's terminal does not reach the trainer, and the
            # run goes on (and can be re-attached) when the studio stops
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        state = {"pid": self._proc.pid, "run": f"runs/{run.name}", "args": args, "started": time.time(),
                 "log": log_rel, **extra}
        self._write_state(state)
        return {"state": "running", "run": state["run"], "pid": state["pid"]}

    def _refuse_if_running(self) -> None:
        state = self._read_state()
        if state and self._alive(state):
            raise StudioError(f"a training run is already going ({state['run']}, pid {state['pid']}); "
                              "stop it first - one training at a time")

    def _alive(self, state: dict) -> bool:
        """Is the state file's process still our trainer? (Reaps our own child; guards against a
        reused pid by checking that its command line names this run's folder.)"""
        pid = int(state["pid"])
        if self._proc is not None and self._proc.pid == pid and self._proc.poll() is not None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return False
        proc = Path(f"/proc/{pid}")
        if proc.exists():
            try:
                if proc.joinpath("stat").read_text().split(") ", 1)[1].startswith("Z"):
                    return False
                args = proc.joinpath("cmdline").read_bytes().split(b"\0")
                return str(self.workspace / state["run"]).encode() in args
            except OSError:
                return False
        return True

    def _read_state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def _write_state(self, state: dict) -> None:
        tmp = self.state_file.with_name(f".{self.state_file.name}.tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self.state_file)


def read_metrics(path: Path) -> list[dict]:
    """metrics.jsonl records; a line the trainer is writing right now is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _latest_sample(run: Path) -> Path | None:
    grids = list((run / "samples").glob("*.png")) if (run / "samples").is_dir() else []
    return max(grids, key=lambda p: p.stat().st_mtime) if grids else None


def _budget(run: Path, args: list[str]) -> dict:
    """This launch's budget: the run's config.yaml (the trainer writes the effective one at every
    start, resumes included), else the command line."""
    import yaml
    try:
        train = (yaml.safe_load((run / "config.yaml").read_text()) or {}).get("train") or {}
        return {"minutes": float(train.get("minutes") or 0), "steps": int(train.get("steps") or 0)}
    except (OSError, yaml.YAMLError, ValueError, AttributeError):
        def flag(name):
            return float(args[args.index(name) + 1]) if name in args else 0.0
        return {"minutes": flag("--minutes"), "steps": int(flag("--steps"))}


def _eta(recs: list[dict], budget: dict, started: float) -> float | None:
    """Seconds left: the time budget's deadline, or the step budget at the recent pace, whichever
    comes first."""
    etas = []
    if budget["minutes"]:
        etas.append(max(0.0, started + budget["minutes"] * 60 - time.time()))
    timed = [r for r in recs if "time" in r and "step" in r]
    if budget["steps"] and len(timed) >= 2:
        a, b = timed[max(0, len(timed) - 10)], timed[-1]
        if b["step"] > a["step"]:
            etas.append(max(0.0, (budget["steps"] - b["step"]) * (b["time"] - a["time"]) / (b["step"] - a["step"])))
    return min(etas) if etas else None

