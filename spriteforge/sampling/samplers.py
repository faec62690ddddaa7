"""Samplers for EDM-style denoisers (Karras et al. 2022 parameterisation x = y + sigma * n).

A *denoiser* is any callable `model(x, sigma, **extra_args) -> denoised` with x of shape [B, ...]
and sigma a float tensor of shape [B]; it returns D(x; sigma), the estimate of the clean y.
Every sampler is a pure function

    sample_<name>(model, x, sigmas, extra_args=None, callback=None, generator=None, **options) -> x0

* `x` is the initial noise already scaled by sigmas[0]; it may live on any device, in any dtype,
  and the result has the same shape / dtype / device.
* `sigmas` is a 1-D decreasing schedule (tensor or sequence), normally ending in 0
  (see `schedules.py`); the sampler takes len(sigmas) - 1 steps. If it does not end in 0 the
  result is the state at the last sigma (used by the convergence tests).
* `callback(dict(i=, x=, sigma=, sigma_next=, denoised=))` is called once per step, right after
  the step's first denoiser call: `x` is the state the denoiser saw, `sigma` (a float) its noise
  level, `denoised` = D(x; sigma), and `sigma_next` (a float) the level the step moves to.
* `generator` (a torch.Generator on x's device, or None for the global RNG) makes every random
  draw, so stochastic samplers are bit-deterministic given its seed. Deterministic samplers
  (and stochastic ones with their noise turned off) never draw.
* The denoiser receives sigma in float32 (float64 if x is float64); step coefficients are
  computed in Python floats (float64); the state x keeps its dtype.
* Samplers run under `torch.no_grad()`.

Denoiser calls (NFE) for an n-step schedule ending in 0 -- see `expected_nfe`:

    euler            1 per step                        n
    heun             2 per step, 1 on the last         2n - 1   (the last step, to sigma = 0, is Euler)
    dpmpp-2m         1 per step (reuses the previous)  n
    euler-ancestral  1 per step                        n
    ddim             1 per step                        n
    ddpm             1 per step                        n

Relations (exact in exact arithmetic, checked by the tests): DDIM eta=0 is Euler on the same
sigmas; DDIM eta is Euler-ancestral with the same eta; DDPM is DDIM eta=1. The samplers differ
in their natural schedule (`DEFAULT_SCHEDULE`): the DDIM/DDPM baselines use the discrete DDPM
sigmas, the others the Karras schedule.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .schedules import get_sigmas

__all__ = [
    "sample_euler",
    "sample_heun",
    "sample_dpmpp_2m",
    "sample_euler_ancestral",
    "sample_ddim",
    "sample_ddpm",
    "get_ancestral_step",
    "to_d",
    "SAMPLERS",
    "DEFAULT_SCHEDULE",
    "expected_nfe",
    "sample",
]


# ----------------------------------------------------------------------------------------------
# helpers


def _as_floats(sigmas) -> list[float]:
    """The schedule as Python floats (one device sync), validated: 1-D, non-negative."""
    if isinstance(sigmas, torch.Tensor):
        if sigmas.ndim != 1:
            raise ValueError(f"sigmas must be 1-D, got shape {tuple(sigmas.shape)}")
        sigmas = sigmas.detach().double().cpu().tolist()
    sigmas = [float(s) for s in sigmas]
    if len(sigmas) < 1:
        raise ValueError("sigmas must hold at least one value")
    if any(s < 0 for s in sigmas):
        raise ValueError("sigmas must be non-negative")
    return sigmas


def _denoise(model: Callable, x: torch.Tensor, sigma: float, extra_args: dict) -> torch.Tensor:
    """D(x; sigma): calls the denoiser with sigma broadcast to a [B] tensor, result in x's dtype."""
    sigma_dtype = torch.promote_types(x.dtype, torch.float32)
    sigma_batch = torch.full((x.shape[0],), sigma, device=x.device, dtype=sigma_dtype)
    return model(x, sigma_batch, **extra_args).to(x.dtype)


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like x, drawn from `generator`."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _report(callback, i: int, x, sigma: float, sigma_next: float, denoised):
    if callback is not None:
        callback(dict(i=i, x=x, sigma=sigma, sigma_next=sigma_next, denoised=denoised))


def _churn_gamma(sigma: float, n_steps: int, s_churn: float, s_tmin: float, s_tmax: float) -> float:
    """EDM eq. 7 / Alg. 2: gamma_i = min(S_churn / N, sqrt(2) - 1) if t_i in [S_tmin, S_tmax] else 0."""
    if s_churn > 0 and s_tmin <= sigma <= s_tmax:
        return min(s_churn / n_steps, math.sqrt(2.0) - 1.0)
    return 0.0


def to_d(x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
    """Probability-flow ODE derivative dx/dsigma = (x - D(x; sigma)) / sigma (Karras et al. 2022, eq. 3 with sigma(t) = t)."""
    return (x - denoised) / sigma


def get_ancestral_step(sigma: float, sigma_next: float, eta: float = 1.0) -> tuple[float, float]:
    """Split an ancestral step sigma -> sigma_next into a deterministic part and fresh noise (k-diffusion).

    Returns (sigma_down, sigma_up) with sigma_down^2 + sigma_up^2 = sigma_next^2 and
    sigma_up = min(sigma_next, eta * sigma_next * sqrt(sigma^2 - sigma_next^2) / sigma):
    step the ODE down to sigma_down, then add noise of std sigma_up. eta = 1 gives the DDPM
    posterior variance, eta = 0 no noise.
    """
    sigma, sigma_next = float(sigma), float(sigma_next)
    if eta == 0 or sigma_next == 0:
        return sigma_next, 0.0
    sigma_up = min(sigma_next, eta * sigma_next * math.sqrt(max(sigma**2 - sigma_next**2, 0.0)) / sigma)
    sigma_down = math.sqrt(sigma_next**2 - sigma_up**2)
    return sigma_down, sigma_up


# ----------------------------------------------------------------------------------------------
# ODE samplers


@torch.no_grad()
def sample_euler(model, x, sigmas, extra_args=None, callback=None, generator=None,
                 s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0):
    """Euler's method on the probability-flow ODE, with optional EDM churn (Karras et al. 2022, Alg. 2 without line 9-11).

    Per step: optionally raise the noise level t_i -> t_hat = (1 + gamma_i) t_i by adding fresh
    noise (s_churn > 0; off by default, then the sampler is deterministic), then take one Euler
    step x_{i+1} = x_hat + (t_{i+1} - t_hat) d_i with d_i = (x_hat - D(x_hat; t_hat)) / t_hat.
    First order. NFE: 1 per step.
    """
    extra_args = {} if extra_args is None else extra_args
    sigmas = _as_floats(sigmas)
    n_steps = len(sigmas) - 1
    for i in range(n_steps):
        t_i, t_next = sigmas[i], sigmas[i + 1]
        gamma = _churn_gamma(t_i, n_steps, s_churn, s_tmin, s_tmax)
        t_hat = t_i * (1.0 + gamma)
        if gamma > 0:
            eps = s_noise * _randn_like(x, generator)
            x = x + math.sqrt(t_hat**2 - t_i**2) * eps
        denoised = _denoise(model, x, t_hat, extra_args)
        _report(callback, i, x, t_hat, t_next, denoised)
        d = to_d(x, t_hat, denoised)
        x = x + (t_next - t_hat) * d
    return x


@torch.no_grad()
def sample_heun(model, x, sigmas, extra_args=None, callback=None, generator=None,
                s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = float("inf"), s_noise: float = 1.0):
    """Heun 2nd-order sampler with optional churn: EDM Algorithm 2 (Karras et al. 2022); churn off = Algorithm 1.

    With sigma(t) = t and s(t) = 1, the sigmas are the time steps t_0 > ... > t_N. Second order.
    NFE: 2 per step, except a step to t = 0 which is a plain Euler step (1).
    """
    extra_args = {} if extra_args is None else extra_args
    t = _as_floats(sigmas)
    N = len(t) - 1
    # 2: x_0 ~ N(0, t_0^2 I) -- done by the caller: x arrives already scaled by t_0
    # 3: for i in {0, ..., N-1}
    for i in range(N):
        # gamma_i = min(S_churn / N, sqrt(2) - 1) if t_i in [S_tmin, S_tmax] else 0   (0 when churn is off)
        gamma_i = _churn_gamma(t[i], N, s_churn, s_tmin, s_tmax)
        # 4: eps_i ~ N(0, S_noise^2 I)   (only drawn when it is used)
        eps_i = s_noise * _randn_like(x, generator) if gamma_i > 0 else None
        # 5: t_hat_i <- t_i + gamma_i t_i
        t_hat = t[i] + gamma_i * t[i]
        # 6: x_hat_i <- x_i + sqrt(t_hat_i^2 - t_i^2) eps_i
        x_hat = x + math.sqrt(t_hat**2 - t[i] ** 2) * eps_i if gamma_i > 0 else x
        # 7: d_i <- (x_hat_i - D(x_hat_i; t_hat_i)) / t_hat_i
        denoised = _denoise(model, x_hat, t_hat, extra_args)
        _report(callback, i, x_hat, t_hat, t[i + 1], denoised)
        d_i = (x_hat - denoised) / t_hat
        # 8: x_{i+1} <- x_hat_i + (t_{i+1} - t_hat_i) d_i   (Euler step)
        x = x_hat + (t[i + 1] - t_hat) * d_i
        # 9: if t_{i+1} != 0 (the step to t = 0 stays Euler)
        if t[i + 1] != 0:
            # 10: d'_i <- (x_{i+1} - D(x_{i+1}; t_{i+1})) / t_{i+1}
            d_prime = (x - _denoise(model, x, t[i + 1], extra_args)) / t[i + 1]
            # 11: x_{i+1} <- x_hat_i + (t_{i+1} - t_hat_i) (d_i / 2 + d'_i / 2)   (trapezoidal correction)
            x = x_hat + (t[i + 1] - t_hat) * (0.5 * d_i + 0.5 * d_prime)
    # 12: return x_N
    return x


@torch.no_grad()
def sample_dpmpp_2m(model, x, sigmas, extra_args=None, callback=None, generator=None):
    """DPM-Solver++(2M), Lu et al. 2022 "DPM-Solver++" Algorithm 2: multistep 2nd order in lambda = -log(sigma).

    In EDM form alpha_t = 1, sigma_t = sigma, so lambda_t = log(alpha_t / sigma_t) = -log(sigma).
    Step i with h_i = lambda_{t_i} - lambda_{t_{i-1}} and r_i = h_{i-1} / h_i:
        D_i = (1 + 1/(2 r_i)) x0_i - 1/(2 r_i) x0_{i-1}         (first step: D_i = x0_i, i.e. DPM-Solver++(1) = DDIM)
        x_i = (sigma_{t_i} / sigma_{t_{i-1}}) x_{i-1} - alpha_{t_i} (e^{-h_i} - 1) D_i
    A step to sigma = 0 (h = inf) returns the current estimate x0_i. Second order.
    NFE: 1 per step (the previous step's x0 is reused).
    """
    extra_args = {} if extra_args is None else extra_args
    sigmas = _as_floats(sigmas)
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(model, x, sigma, extra_args)                      # x0_i = D(x_{i-1}; sigma_{t_{i-1}})
        _report(callback, i, x, sigma, sigma_next, denoised)
        if sigma_next == 0:
            x = denoised                                                      # limit h -> inf: e^{-h} -> 0
        else:
            h = math.log(sigma) - math.log(sigma_next)                        # h_i = lambda_{t_i} - lambda_{t_{i-1}}
            if old_denoised is None:
                D = denoised                                                  # first-order start
            else:
                r = h_last / h                                                # r_i = h_{i-1} / h_i
                D = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_next / sigma) * x - math.expm1(-h) * D
            h_last = h
        old_denoised = denoised
    return x


# ----------------------------------------------------------------------------------------------
# stochastic (ancestral) samplers


@torch.no_grad()
def sample_euler_ancestral(model, x, sigmas, extra_args=None, callback=None, generator=None,
                           eta: float = 1.0, s_noise: float = 1.0):
    """Ancestral Euler (k-diffusion, Crowson 2022): an Euler step down to sigma_down, then fresh noise of std sigma_up.

    (sigma_down, sigma_up) = get_ancestral_step(sigma, sigma_next, eta); eta = 1 matches the
    DDPM posterior variance, eta = 0 is plain Euler. The step to sigma = 0 adds no noise.
    NFE: 1 per step.
    """
    extra_args = {} if extra_args is None else extra_args
    sigmas = _as_floats(sigmas)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = _denoise(model, x, sigma, extra_args)
        _report(callback, i, x, sigma, sigma_next, denoised)
        sigma_down, sigma_up = get_ancestral_step(sigma, sigma_next, eta)
        d = to_d(x, sigma, denoised)
        x = x + (sigma_down - sigma) * d                                      # deterministic Euler step to sigma_down
        if sigma_up > 0:
            x = x + (s_noise * sigma_up) * _randn_like(x, generator)          # back up to sigma_next with fresh noise
    return x


@torch.no_grad()
def sample_ddim(model, x, sigmas, extra_args=None, callback=None, generator=None, eta: float = 0.0):
    """DDIM, Song et al. 2020 eq. 12 with sigma_t(eta) of eq. 16, rewritten in sigma space (eta = 0: deterministic).

    Dividing eq. 12 by sqrt(abar_{t-1}) and substituting sigma_t = sqrt((1 - abar_t) / abar_t):
        x0_hat  = D(x_t; sigma_t)                                   predicted x0
        eps_hat = (x_t - x0_hat) / sigma_t                          predicted noise eps_theta(x_t)
        s_eta   = eta * sigma_{t-1} * sqrt(1 - sigma_{t-1}^2 / sigma_t^2)   eq. 16's sigma_t(eta) / sqrt(abar_{t-1})
        x_{t-1} = x0_hat + sqrt(sigma_{t-1}^2 - s_eta^2) eps_hat + s_eta z,   z ~ N(0, I)
    eta in [0, 1]; eta = 1 is DDPM ancestral sampling (`sample_ddpm`). First order.
    NFE: 1 per step.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"DDIM needs eta in [0, 1], got {eta}")
    extra_args = {} if extra_args is None else extra_args
    sigmas = _as_floats(sigmas)
    for i in range(len(sigmas) - 1):
        sigma_t, sigma_prev = sigmas[i], sigmas[i + 1]                        # sigma_t -> sigma_{t-1}
        x0_hat = _denoise(model, x, sigma_t, extra_args)
        _report(callback, i, x, sigma_t, sigma_prev, x0_hat)
        eps_hat = (x - x0_hat) / sigma_t
        s_eta = eta * sigma_prev * math.sqrt(max(1.0 - sigma_prev**2 / sigma_t**2, 0.0))
        x = x0_hat + math.sqrt(sigma_prev**2 - s_eta**2) * eps_hat            # predicted x0 + direction pointing to x_t
        if s_eta > 0:
            x = x + s_eta * _randn_like(x, generator)                         # random noise
    return x


@torch.no_grad()
def sample_ddpm(model, x, sigmas, extra_args=None, callback=None, generator=None):
    """DDPM ancestral sampling, Ho et al. 2020 Alg. 2 with the posterior variance beta_tilde (eqs. 6-7), in sigma space.

    Draws x_{t-1} ~ q(x_{t-1} | x_t, x0 = x0_hat). For the forward process x_t = x_{t-1} + sqrt(sigma_t^2 - sigma_{t-1}^2) n
    (eq. 7 divided by sqrt(abar_{t-1})):
        mu_tilde  = (sigma_{t-1}^2 / sigma_t^2) x_t + (1 - sigma_{t-1}^2 / sigma_t^2) x0_hat
        std_tilde = sigma_{t-1} * sqrt(1 - sigma_{t-1}^2 / sigma_t^2)     = sqrt(beta_tilde_t) / sqrt(abar_{t-1})
    Equal to DDIM with eta = 1. With the `ddpm` schedule at 1000 steps this is the "DDPM-1000" baseline.
    NFE: 1 per step.
    """
    extra_args = {} if extra_args is None else extra_args
    sigmas = _as_floats(sigmas)
    for i in range(len(sigmas) - 1):
        sigma_t, sigma_prev = sigmas[i], sigmas[i + 1]
        x0_hat = _denoise(model, x, sigma_t, extra_args)
        _report(callback, i, x, sigma_t, sigma_prev, x0_hat)
        ratio = sigma_prev**2 / sigma_t**2
        mu_tilde = ratio * x + (1.0 - ratio) * x0_hat
        std_tilde = sigma_prev * math.sqrt(max(1.0 - ratio, 0.0))
        x = mu_tilde
        if std_tilde > 0:
            x = x + std_tilde * _randn_like(x, generator)
    return x


# ----------------------------------------------------------------------------------------------
# registry and convenience


SAMPLERS: dict[str, Callable] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp-2m": sample_dpmpp_2m,
    "euler-ancestral": sample_euler_ancestral,
    "ddim": sample_ddim,
    "ddpm": sample_ddpm,
}

DEFAULT_SCHEDULE: dict[str, str] = {
    "euler": "karras",
    "heun": "karras",
    "dpmpp-2m": "karras",
    "euler-ancestral": "karras",
    "ddim": "ddpm",
    "ddpm": "ddpm",
}


def expected_nfe(sampler: str, sigmas: Sequence[float] | torch.Tensor | int) -> int:
    """Denoiser calls `sampler` makes over `sigmas` (or over an n-step schedule ending in 0 when given an int)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {tuple(SAMPLERS)}")
    if isinstance(sigmas, int):
        sigmas = [1.0] * sigmas + [0.0]
    sigmas = _as_floats(sigmas)
    n_steps = len(sigmas) - 1
    if sampler == "heun":
        return n_steps + sum(1 for s in sigmas[1:] if s != 0)
    return n_steps


def sample(model, noise: torch.Tensor, sampler: str, steps: int, sigma_min: float, sigma_max: float,
           rho: float = 7.0, schedule: str | None = None, extra_args=None, callback=None, generator=None,
           **sampler_kwargs) -> torch.Tensor:
    """Run `sampler` for `steps` steps from unit-variance `noise`: builds the schedule, scales noise by sigmas[0].

    `schedule` defaults to DEFAULT_SCHEDULE[sampler] (karras, or the discrete DDPM sigmas for
    ddim / ddpm, whose range ignores sigma_min / sigma_max). Extra keyword arguments go to the
    sampler (e.g. eta=, s_churn=).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {tuple(SAMPLERS)}")
    schedule = DEFAULT_SCHEDULE[sampler] if schedule is None else schedule
    sigmas = get_sigmas(schedule, steps, sigma_min, sigma_max, rho=rho)
    x = noise * float(sigmas[0])
    return SAMPLERS[sampler](model, x, sigmas, extra_args=extra_args, callback=callback,
                             generator=generator, **sampler_kwargs)
