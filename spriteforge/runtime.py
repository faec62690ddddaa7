"""Device, precision and thread choices, in one place for training, sampling and evaluation."""

from __future__ import annotations

import contextlib

import torch


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`--train.device {name}` asked for CUDA, but this torch build sees no GPU "
                         f"(torch {torch.__version__}); use --train.device cpu or install a CUDA build of torch")
    return dev


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on CPU (AVX-512 bf16) or CUDA; weights and the optimizer stay fp32."""
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def set_threads(n: int):
    if n > 0:
        torch.set_num_threads(n)
