"""Checkpoints: one safetensors file holding everything needed to continue or to sample.

Layout of the tensors:
  model.*      training weights               ema.*        EMA weights (what sampling uses)
  opt.<i>.*    AdamW state of parameter i     rng.*        torch CPU / CUDA / data-generator states
Metadata (strings): format, step, images_seen, config (resolved RunConfig as JSON), class_names,
optimizer param_groups (JSON), spriteforge version, elapsed training seconds.

No pickle anywhere: safetensors only stores tensors and strings, so loading a checkpoint can never
run code. Writes go to a temp file in the same folder and are renamed into place (atomic on POSIX),
so a kill mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from safetensors import safe_open

from .. import __version__

FORMAT = "spriteforge.checkpoint.v1"
WEIGHTS_FORMAT = "spriteforge.weights.v1"


class CheckpointError(ValueError):
    """A file is missing, not a safetensors file, or not one of spriteforge's."""


def atomic_save_file(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # safetensors creates files owner-only; a shared model should be readable like any file
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(path: Path, *, model, ema_model, optimizer, step: int, images_seen: int, config: dict,
                    class_names: list[str], data_generator: torch.Generator, elapsed: float, extra: dict | None = None):
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema_model.state_dict().items()})
    opt_state = optimizer.state_dict()
    for i, st in opt_state["state"].items():
        for k, v in st.items():
            tensors[f"opt.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.data"] = data_generator.get_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    meta = {"format": FORMAT, "version": __version__, "step": str(step), "images_seen": str(images_seen),
            "config": json.dumps(config), "class_names": json.dumps(class_names),
            "param_groups": json.dumps(opt_state["param_groups"]), "elapsed": f"{elapsed:.3f}",
            "extra": json.dumps(extra or {})}
    atomic_save_file(tensors, path, meta)


def read_metadata(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises several error types for a file that is not safetensors
        raise CheckpointError(f"{path} is not a safetensors file ({type(e).__name__}: {e})") from None
    if meta.get("format") not in (FORMAT, WEIGHTS_FORMAT):
        raise CheckpointError(f"{path} is a safetensors file but not a spriteforge checkpoint "
                              f"(metadata format={meta.get('format')!r}, expected {FORMAT!r} or {WEIGHTS_FORMAT!r})")
    return meta


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    meta = read_metadata(path)
    return load_file(str(path)), meta


def split(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def as_fp32(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Floating-point tensors in fp32 (weights files are fp16/bf16), others as they are."""
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}


def restore_optimizer(optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, str]):
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            state.setdefault(int(i), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})


def restore_rng(tensors: dict[str, torch.Tensor], data_generator: torch.Generator):
    torch.set_rng_state(tensors["rng.torch"])
    data_generator.set_state(tensors["rng.data"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


_CKPT_RE = re.compile(r"ckpt_(\d+)\.safetensors$")


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Checkpoints of a run folder, oldest first."""
    folder = Path(run_dir) / "checkpoints"
    found = [(int(m.group(1)), p) for p in folder.glob("ckpt_*.safetensors") if (m := _CKPT_RE.search(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def prune_checkpoints(run_dir: str | Path, keep: int):
    for p in list_checkpoints(run_dir)[:-keep]:
        p.unlink(missing_ok=True)


def export_weights(ckpt: str | Path, out: str | Path, dtype: str = "fp16") -> Path:
    """Weights-only EMA file for sharing: no optimizer, no RNG, half precision."""
    tensors, meta = load_checkpoint(ckpt)
    ema = split(tensors, "ema")  # both checkpoints and weight files keep the EMA under "ema."
    torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    out_t = {f"ema.{k}": (v.to(torch_dtype) if v.is_floating_point() else v) for k, v in ema.items()}
    meta_out = {"format": WEIGHTS_FORMAT, "version": __version__, "step": meta["step"], "config": meta["config"],
                "class_names": meta["class_names"], "dtype": dtype, "extra": meta.get("extra", "{}"),
                "images_seen": meta.get("images_seen", "?"), "elapsed": meta.get("elapsed", "0")}
    atomic_save_file(out_t, Path(out), meta_out)
    return Path(out)
