"""Noise-level (sigma) schedules for sampling, in the EDM parameterisation x = y + sigma * n.

Every schedule returns a 1-D float32 tensor of decreasing sigmas with a final 0 appended, so a
schedule built for `n` steps has `n + 1` entries and a sampler takes exactly `n` steps over it.
The values are computed in float64 and rounded once to float32.

    karras       Karras et al. 2022 (EDM), eq. 5: uniform in sigma^(1/rho) between sigma_max and sigma_min.
    exponential  uniform in log(sigma) (the rho -> infinity limit of karras).
    ddpm         the discrete linear-beta VP schedule of Ho et al. 2020, rewritten as sigmas;
                 its range is fixed by (beta_start, beta_end, T), not by sigma_min / sigma_max.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "append_zero",
    "get_sigmas_karras",
    "get_sigmas_exponential",
    "get_sigmas_ddpm",
    "ddpm_sigmas_all",
    "get_sigmas",
    "SCHEDULES",
]


def append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    """`sigmas` followed by a final 0 (the clean-data end of every schedule)."""
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def _check_range(n: int, sigma_min: float, sigma_max: float):
    if n < 1:
        raise ValueError(f"a schedule needs n >= 1 steps, got {n}")
    if not 0 < sigma_min <= sigma_max:
        raise ValueError(f"need 0 < sigma_min <= sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")


def get_sigmas_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device="cpu") -> torch.Tensor:
    """Karras et al. 2022 (EDM) eq. 5: sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, then 0.

    Starts exactly at sigma_max, ends (before the 0) at sigma_min. With n == 1 the single step
    goes from sigma_max to 0.
    """
    _check_range(n, sigma_min, sigma_max)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)          # i / (N - 1)
    min_inv_rho = sigma_min ** (1 / rho)
    max_inv_rho = sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return append_zero(sigmas).to(device=device, dtype=torch.float32)


def get_sigmas_exponential(n: int, sigma_min: float, sigma_max: float, device="cpu") -> torch.Tensor:
    """Uniform steps in log(sigma) from sigma_max to sigma_min, then 0 (the rho -> inf limit of EDM eq. 5)."""
    _check_range(n, sigma_min, sigma_max)
    sigmas = torch.linspace(math.log(sigma_max), math.log(sigma_min), n, dtype=torch.float64).exp()
    return append_zero(sigmas).to(device=device, dtype=torch.float32)


def ddpm_sigmas_all(beta_start: float = 1e-4, beta_end: float = 0.02, T: int = 1000) -> torch.Tensor:
    """All T sigmas of Ho et al. 2020's linear-beta schedule, ascending in t (float64).

    beta_t = linspace(beta_start, beta_end, T); abar_t = prod_{s<=t} (1 - beta_s);
    sigma_t = sqrt((1 - abar_t) / abar_t), because the VP sample x_t = sqrt(abar_t) y + sqrt(1 - abar_t) n
    divided by sqrt(abar_t) is the EDM sample y + sigma_t n.
    """
    betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return ((1.0 - alphas_cumprod) / alphas_cumprod).sqrt()


def get_sigmas_ddpm(n: int, beta_start: float = 1e-4, beta_end: float = 0.02, T: int = 1000, device="cpu") -> torch.Tensor:
    """Ho et al. 2020 discrete DDPM schedule as sigmas: n timesteps evenly spaced over t = T-1 ... 0, then 0.

    The timesteps are round(linspace(T-1, 0, n)), so they are actual timesteps of the discrete
    schedule and n == T reproduces every one of them ("DDPM-1000"). With the defaults the range is
    sigma ~ 157 (t = T-1) down to sigma ~ 0.01 (t = 0).
    """
    if not 1 <= n <= T:
        raise ValueError(f"the ddpm schedule needs 1 <= n <= T={T} steps, got {n}")
    sigmas_all = ddpm_sigmas_all(beta_start, beta_end, T)
    timesteps = torch.linspace(T - 1, 0, n, dtype=torch.float64).round().long()
    return append_zero(sigmas_all[timesteps]).to(device=device, dtype=torch.float32)


SCHEDULES = ("karras", "exponential", "ddpm")


def get_sigmas(name: str, n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device="cpu") -> torch.Tensor:
    """The `n`-step schedule called `name` (one of SCHEDULES), ending in 0.

    `rho` is used by "karras" only; "ddpm" ignores sigma_min / sigma_max (its range is the discrete
    DDPM schedule's own, see `get_sigmas_ddpm`).
    """
    if name == "karras":
        return get_sigmas_karras(n, sigma_min, sigma_max, rho=rho, device=device)
    if name == "exponential":
        return get_sigmas_exponential(n, sigma_min, sigma_max, device=device)
    if name == "ddpm":
        return get_sigmas_ddpm(n, device=device)
    raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")
