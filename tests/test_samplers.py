"""Samplers, schedules and classifier-free guidance, checked against the analytic Gaussian denoiser.

For data y ~ N(mu, s^2) (per dimension) and x = y + sigma * n, the ideal denoiser is
    D(x; sigma) = E[y | x] = mu + s^2 / (s^2 + sigma^2) (x - mu)
and the probability-flow ODE dx/dsigma = (x - D) / sigma has the exact solution
    x(sigma) = mu + (x_T - mu) sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_T^2),
so every sampler can be compared with the truth: ODE samplers by their convergence order,
stochastic ones by the moments of many samples.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spriteforge.sampling.guidance import attribute_guidance_branches, cfg_denoiser, combined_denoiser
from spriteforge.sampling.samplers import (
    DEFAULT_SCHEDULE,
    SAMPLERS,
    expected_nfe,
    get_ancestral_step,
    sample,
    sample_ddim,
    sample_ddpm,
    sample_euler,
    sample_euler_ancestral,
)
from spriteforge.sampling.schedules import (
    SCHEDULES,
    ddpm_sigmas_all,
    get_sigmas,
    get_sigmas_ddpm,
    get_sigmas_karras,
)

MU, S = 0.3, 0.5
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0

ALL = list(SAMPLERS)
DETERMINISTIC = ["euler", "heun", "dpmpp-2m", "ddim"]      # with their default options
STOCHASTIC = ["euler-ancestral", "ddpm"]


def gaussian_denoiser(mu: float = MU, s: float = S):
    """The exact D(x; sigma) for data N(mu, s^2) per dimension."""
    def D(x, sigma):
        sigma = sigma.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        return mu + s**2 / (s**2 + sigma**2) * (x - mu)
    return D


def exact_ode(x_T, sigma_T: float, sigma: float, mu: float = MU, s: float = S):
    """Probability-flow ODE solution from x_T at sigma_T to sigma for the Gaussian data."""
    return mu + (x_T - mu) * math.sqrt(s**2 + sigma**2) / math.sqrt(s**2 + sigma_T**2)


def run(name, x, sigmas, seed=0, model=None, **kw):
    g = torch.Generator(device=x.device).manual_seed(seed)
    return SAMPLERS[name](model or gaussian_denoiser(), x, sigmas, generator=g, **kw)


# ----------------------------------------------------------------------------------------------
# schedules


@pytest.mark.parametrize("name", ["karras", "exponential"])
@pytest.mark.parametrize("n", [1, 2, 7, 40])
def test_schedule_shape_range_order(name, n):
    sigmas = get_sigmas(name, n, SIGMA_MIN, SIGMA_MAX, rho=7.0)
    assert sigmas.shape == (n + 1,) and sigmas.dtype == torch.float32
    assert sigmas[-1] == 0
    assert math.isclose(float(sigmas[0]), SIGMA_MAX, rel_tol=1e-6)
    if n > 1:
        assert math.isclose(float(sigmas[-2]), SIGMA_MIN, rel_tol=1e-5)
    assert (sigmas[1:] < sigmas[:-1]).all()


def test_karras_matches_edm_eq5():
    n, rho = 5, 7.0
    sigmas = get_sigmas_karras(n, SIGMA_MIN, SIGMA_MAX, rho)
    for i in range(n):
        want = (SIGMA_MAX ** (1 / rho) + i / (n - 1) * (SIGMA_MIN ** (1 / rho) - SIGMA_MAX ** (1 / rho))) ** rho
        assert math.isclose(float(sigmas[i]), want, rel_tol=1e-6)


def test_ddpm_schedule():
    all_sigmas = ddpm_sigmas_all()                      # ascending in t, float64
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    assert torch.allclose(all_sigmas, ((1 - abar) / abar).sqrt())
    full = get_sigmas_ddpm(1000)                        # "DDPM-1000": every timestep, then 0
    assert full.shape == (1001,) and full[-1] == 0
    assert torch.allclose(full[:-1].double(), all_sigmas.flip(0).float().double())
    few = get_sigmas("ddpm", 10, SIGMA_MIN, SIGMA_MAX)
    assert few.shape == (11,) and few[-1] == 0 and (few[1:] < few[:-1]).all()
    assert float(few[0]) == float(full[0]) and float(few[-2]) == float(full[-2])   # t = T-1 ... 0
    assert 150 < float(few[0]) < 160 and 0.009 < float(few[-2]) < 0.011
    with pytest.raises(ValueError):
        get_sigmas_ddpm(1001)
    with pytest.raises(ValueError):
        get_sigmas("cosine", 10, SIGMA_MIN, SIGMA_MAX)
    assert set(DEFAULT_SCHEDULE.values()) <= set(SCHEDULES)


# ----------------------------------------------------------------------------------------------
# shared behaviour of every sampler


def test_registry():
    assert list(SAMPLERS) == ["euler", "heun", "dpmpp-2m", "euler-ancestral", "ddim", "ddpm"]
    assert set(DEFAULT_SCHEDULE) == set(SAMPLERS)
    assert [DEFAULT_SCHEDULE[k] for k in SAMPLERS] == ["karras"] * 4 + ["ddpm"] * 2


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_shape_and_dtype_preserved(name, dtype):
    noise = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)).to(dtype)
    out = sample(gaussian_denoiser(), noise, name, steps=6, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
                 generator=torch.Generator().manual_seed(1))
    assert out.shape == noise.shape and out.dtype == dtype and out.device == noise.device
    assert torch.isfinite(out.float()).all()


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_output(name):
    sigmas = get_sigmas(DEFAULT_SCHEDULE[name], 8, SIGMA_MIN, SIGMA_MAX)
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * float(sigmas[0])
    a = run(name, x.clone(), sigmas, seed=7)
    b = run(name, x.clone(), sigmas, seed=7)
    assert torch.equal(a, b)


@pytest.mark.parametrize("name", STOCHASTIC + ["ddim-eta1", "euler-churn", "heun-churn"])
def test_stochastic_different_seed_differs(name):
    name, kw = _variant(name)
    sigmas = get_sigmas(DEFAULT_SCHEDULE[name], 8, SIGMA_MIN, SIGMA_MAX)
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(0)) * float(sigmas[0])
    assert not torch.equal(run(name, x.clone(), sigmas, seed=1, **kw), run(name, x.clone(), sigmas, seed=2, **kw))


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_never_draws(name):
    sigmas = get_sigmas(DEFAULT_SCHEDULE[name], 8, SIGMA_MIN, SIGMA_MAX)
    x = torch.randn(4, 16, generator=torch.Generator().manual_seed(0)) * float(sigmas[0])
    g = torch.Generator().manual_seed(1)
    state = g.get_state()
    out = SAMPLERS[name](gaussian_denoiser(), x.clone(), sigmas, generator=g)
    assert torch.equal(g.get_state(), state)                          # the generator was never used
    assert torch.equal(out, run(name, x.clone(), sigmas, seed=999))   # so the seed does not matter


@pytest.mark.parametrize("name", ALL)
def test_callback_every_step(name):
    n = 7
    sigmas = get_sigmas(DEFAULT_SCHEDULE[name], n, SIGMA_MIN, SIGMA_MAX)
    x = torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * float(sigmas[0])
    D = gaussian_denoiser()
    seen = []
    run(name, x, sigmas, callback=seen.append)
    assert [c["i"] for c in seen] == list(range(n))
    for i, c in enumerate(seen):
        assert c["sigma"] == float(sigmas[i]) and c["sigma_next"] == float(sigmas[i + 1])
        assert c["x"].shape == x.shape
        assert torch.allclose(c["denoised"], D(c["x"], torch.full((3,), c["sigma"], dtype=torch.float64)))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("n", [1, 5])
def test_nfe(name, n):
    calls = []
    D = gaussian_denoiser()

    def counting(x, sigma, **kw):
        calls.append(sigma)
        assert sigma.shape == (x.shape[0],) and sigma.dtype == torch.float32
        return D(x, sigma)

    sigmas = get_sigmas(DEFAULT_SCHEDULE[name], n, SIGMA_MIN, SIGMA_MAX)
    run(name, torch.randn(2, 3) * float(sigmas[0]), sigmas, model=counting)
    assert len(calls) == expected_nfe(name, n) == (2 * n - 1 if name == "heun" else n)


def test_extra_args_reach_the_model():
    seen = []

    def model(x, sigma, label=None, scale=1.0):
        seen.append((label, scale))
        return torch.zeros_like(x)

    label = torch.tensor([3, 4])
    for name in ALL:
        seen.clear()
        sample(model, torch.randn(2, 3), name, steps=3, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
               extra_args=dict(label=label, scale=2.0))
        assert seen and all(lab is label and sc == 2.0 for lab, sc in seen)


def test_sample_uses_default_schedule_and_scales_noise():
    for name in ALL:
        first = []
        noise = torch.ones(1, 1)
        sample(gaussian_denoiser(), noise, name, steps=4, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX,
               callback=lambda c: first.append(c) if c["i"] == 0 else None)
        want = get_sigmas(DEFAULT_SCHEDULE[name], 4, SIGMA_MIN, SIGMA_MAX)[0].item()
        assert first[0]["sigma"] == want and torch.allclose(first[0]["x"], noise * want)
    with pytest.raises(ValueError):
        sample(gaussian_denoiser(), noise, "plms", steps=4, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
    with pytest.raises(ValueError):
        sample_ddim(gaussian_denoiser(), noise, get_sigmas_karras(3, SIGMA_MIN, SIGMA_MAX), eta=1.5)


# ----------------------------------------------------------------------------------------------
# algebraic relations between the samplers


def test_ancestral_step():
    assert get_ancestral_step(2.0, 1.0, eta=0.0) == (1.0, 0.0)
    assert get_ancestral_step(2.0, 0.0) == (0.0, 0.0)
    down, up = get_ancestral_step(2.0, 1.0, eta=1.0)
    assert math.isclose(down**2 + up**2, 1.0) and math.isclose(up, math.sqrt(1.0 * 3.0 / 4.0))
    assert math.isclose(down, 1.0**2 / 2.0)                         # DDPM posterior mean weight sigma_next^2 / sigma


def test_ddim_eta0_is_euler_and_eta1_is_ddpm_and_ancestral():
    sigmas = get_sigmas_karras(10, SIGMA_MIN, SIGMA_MAX)
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * SIGMA_MAX
    D = gaussian_denoiser()
    assert torch.allclose(sample_ddim(D, x, sigmas), sample_euler(D, x, sigmas), rtol=0, atol=1e-12)
    ddim1 = sample_ddim(D, x, sigmas, eta=1.0, generator=torch.Generator().manual_seed(3))
    ddpm = sample_ddpm(D, x, sigmas, generator=torch.Generator().manual_seed(3))
    anc = sample_euler_ancestral(D, x, sigmas, eta=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(ddim1, ddpm, rtol=0, atol=1e-12)
    assert torch.allclose(ddim1, anc, rtol=0, atol=1e-12)
    ddim_half = sample_ddim(D, x, sigmas, eta=0.5, generator=torch.Generator().manual_seed(3))
    anc_half = sample_euler_ancestral(D, x, sigmas, eta=0.5, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(ddim_half, anc_half, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# convergence order of the ODE samplers


ODE_ORDER = {  # sampler -> (options, accepted range of the fitted order)
    "euler": ({}, (0.85, 1.15)),
    "ddim": ({"eta": 0.0}, (0.85, 1.15)),
    "heun": ({}, (1.8, 2.5)),
    "dpmpp-2m": ({}, (1.8, 2.5)),
}


@pytest.mark.parametrize("name", list(ODE_ORDER))
def test_ode_convergence_order(name):
    kw, (lo, hi) = ODE_ORDER[name]
    x_T = torch.randn(256, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * SIGMA_MAX
    steps = [16, 32, 64, 128]
    errors = []
    for n in steps:
        sigmas = get_sigmas_karras(n, SIGMA_MIN, SIGMA_MAX)[:-1]        # stop at sigma_min: the ODE is smooth there
        out = run(name, x_T.clone(), sigmas, **kw)
        exact = exact_ode(x_T, float(sigmas[0]), float(sigmas[-1]))
        errors.append((out - exact).abs().max().item())
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    order = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert lo < order < hi, (order, errors)


@pytest.mark.parametrize("name", ["heun", "dpmpp-2m"])
def test_second_order_beats_euler_at_equal_nfe(name):
    x_T = torch.randn(256, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * SIGMA_MAX
    euler_sigmas = get_sigmas_karras(64, SIGMA_MIN, SIGMA_MAX)[:-1]
    n = 32 if name == "heun" else 64                                   # 64 denoiser calls each
    sigmas = get_sigmas_karras(n, SIGMA_MIN, SIGMA_MAX)[:-1]
    err = lambda out, sig: (out - exact_ode(x_T, float(sig[0]), float(sig[-1]))).abs().max().item()
    err_2nd, err_euler = err(run(name, x_T, sigmas), sigmas), err(run("euler", x_T, euler_sigmas), euler_sigmas)
    assert err_2nd < 0.5 * err_euler, (err_2nd, err_euler)


# ----------------------------------------------------------------------------------------------
# stochastic samplers reproduce the data distribution


N_SAMPLES = 20_000
MEAN_TOL = 4 * S / math.sqrt(N_SAMPLES) + 0.003          # 4 standard errors + the N(0, sigma_max^2) prior's bias
STD_TOL = 4 * S / math.sqrt(2 * N_SAMPLES) + 0.008       # 4 standard errors + discretisation bias at these steps


def _variant(name):
    return {
        "ddim-eta1": ("ddim", {"eta": 1.0}),
        "euler-churn": ("euler", {"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0}),
        "heun-churn": ("heun", {"s_churn": 40.0}),
    }.get(name, (name, {}))


def _moments(name, steps, model=None, seed=0, n_samples=N_SAMPLES):
    name, kw = _variant(name)
    sigmas = get_sigmas(DEFAULT_SCHEDULE[name], steps, SIGMA_MIN, SIGMA_MAX)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_samples, 1, generator=g) * float(sigmas[0])
    out = SAMPLERS[name](model or gaussian_denoiser(), x, sigmas, generator=g, **kw)
    return out.mean().item(), out.std().item()


def _matches(mean, std):
    return abs(mean - MU) < MEAN_TOL and abs(std - S) < STD_TOL


STOCHASTIC_STEPS = {"euler-ancestral": 1000, "ddpm": 1000, "ddim-eta1": 1000, "euler-churn": 1000, "heun-churn": 200}


@pytest.mark.parametrize("name", list(STOCHASTIC_STEPS))
def test_stochastic_sampler_matches_data_moments(name):
    mean, std = _moments(name, STOCHASTIC_STEPS[name])
    assert _matches(mean, std), (mean, std, MEAN_TOL, STD_TOL)


def test_moment_check_is_discriminating():
    """The tolerances above reject a slightly wrong denoiser, or too few steps."""
    assert not _matches(*_moments("ddpm", 1000, model=gaussian_denoiser(mu=MU + 0.05)))
    assert not _matches(*_moments("ddpm", 1000, model=gaussian_denoiser(s=0.9 * S)))
    assert not _matches(*_moments("ddpm", 25))                         # std ~0.40: too few steps
    few_samples = [_matches(*_moments("euler-ancestral", 1000, n_samples=200, seed=seed)) for seed in range(10)]
    assert sum(few_samples) <= 3                                       # 200 samples rarely meet the tolerance


# ----------------------------------------------------------------------------------------------
# golden values: 4 steps, default schedule, float32, generator seed 1234 for noise and sampler


GOLDEN = {
    "euler": [0.311169, 0.405059, 0.032438, 0.35613, 0.137656, 0.431731],
    "heun": [0.392466, 1.169769, -1.915087, 0.764696, -1.04402, 1.390576],
    "dpmpp-2m": [0.320836, 0.49599, -0.199143, 0.404712, -0.002856, 0.545747],
    "euler-ancestral": [0.267386, -0.025599, 0.256749, 0.578392, 0.234243, 0.448371],
    "ddim": [0.307272, 0.365857, 0.133352, 0.335327, 0.199005, 0.3825],
    "ddpm": [0.282603, 0.097064, 0.269403, 0.500026, 0.255406, 0.392657],
    "euler-churn": [0.303516, -0.021896, 0.13337, 0.772156, 0.107038, 0.504485],
    "heun-churn": [0.37378, -1.264222, -1.732504, 5.441385, -1.093832, 1.966411],
}


@pytest.mark.parametrize("key", list(GOLDEN))
def test_golden_values(key):
    name, kw = (key.removesuffix("-churn"), {"s_churn": 2.0}) if key.endswith("-churn") else (key, {})
    g = torch.Generator().manual_seed(1234)
    noise = torch.randn(2, 3, generator=g)
    out = sample(gaussian_denoiser(), noise, name, steps=4, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, generator=g, **kw)
    assert torch.allclose(out.flatten(), torch.tensor(GOLDEN[key]), rtol=1e-5, atol=2e-6), out.flatten().tolist()


# ----------------------------------------------------------------------------------------------
# classifier-free guidance


class ToyModel:
    """Elementwise toy denoiser that records the batch of every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, sigma, label=None, shared=None):
        self.calls.append(dict(batch=x.shape[0], label=label, shared=shared))
        bias = 0.0 if label is None else label.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))
        return 0.5 * x + bias / (1 + sigma.view(-1, *([1] * (x.ndim - 1))))


def _xs(B=3):
    x = torch.randn(B, 2, 4, generator=torch.Generator().manual_seed(0))
    return x, torch.full((B,), 1.5)


def test_cfg_scale_one_calls_cond_only():
    model = ToyModel()
    x, sigma = _xs()
    label = torch.tensor([1, 2, 3])
    out = cfg_denoiser(model, 1.0, {"label": label}, {"label": torch.full((3,), 10)})(x, sigma)
    assert len(model.calls) == 1 and model.calls[0]["batch"] == 3 and model.calls[0]["label"] is label
    assert torch.equal(out, ToyModel()(x, sigma, label=label))


@pytest.mark.parametrize("scale", [0.0, 2.5, 7.0])
def test_cfg_one_batched_call_exact(scale):
    model = ToyModel()
    x, sigma = _xs()
    cond, uncond = torch.tensor([1, 2, 3]), torch.full((3,), 10)
    out = cfg_denoiser(model, scale, {"label": cond}, {"label": uncond})(x, sigma, shared=None)
    ref = ToyModel()
    want = ref(x, sigma, label=uncond) + scale * (ref(x, sigma, label=cond) - ref(x, sigma, label=uncond))
    assert len(model.calls) == 1
    if scale != 0:
        assert model.calls[0]["batch"] == 6 and torch.equal(model.calls[0]["label"], torch.cat([cond, uncond]))
    assert model.calls[0]["shared"] is None                                   # None passes through
    assert torch.allclose(out, want, rtol=0, atol=1e-6)


def test_cfg_argument_batching_rules():
    model = ToyModel()
    x, sigma = _xs()
    both_none = cfg_denoiser(model, 3.0, {"label": None}, {"label": None})
    assert torch.allclose(both_none(x, sigma), ToyModel()(x, sigma))          # cond == uncond -> plain model
    with pytest.raises(ValueError, match="label"):
        cfg_denoiser(model, 3.0, {"label": torch.tensor([1, 2, 3])}, {"label": None})(x, sigma)
    with pytest.raises(ValueError, match="label"):
        cfg_denoiser(model, 3.0, {"label": torch.tensor([1, 2, 3])}, {})(x, sigma)


def test_cfg_inside_a_sampler():
    """Guidance between two Gaussian 'classes' pushes samples past the conditional mean."""
    def model(x, sigma, mu):
        return gaussian_denoiser(mu=0.0)(x - mu.view(-1, 1), sigma) + mu.view(-1, 1)

    B = 8
    guided = cfg_denoiser(model, 2.0, {"mu": torch.ones(B)}, {"mu": torch.zeros(B)})
    noise = torch.randn(B, 1, generator=torch.Generator().manual_seed(0))
    out = sample(guided, noise, "heun", steps=20, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
    cond = sample(model, noise, "heun", steps=20, sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX, extra_args={"mu": torch.ones(B)})
    assert out.mean() > cond.mean() > 0.5


def test_attribute_guidance_is_cfg_plus_one_leave_one_out_term_per_requested_attribute():
    def model(x, sigma, attributes):
        # requested attribute k (value v >= 0) adds (v + 1) * 10**k; a dropped one (-1) adds nothing
        v = ((attributes + 1).clamp(min=0) * 10.0 ** torch.arange(attributes.shape[1])).sum(1)
        return x * 0 + v.view(-1, 1) + sigma.view(-1, 1)
    att = torch.tensor([[2, -1, 0, -1], [1, 1, -1, -1]])   # column 3: nobody asked, no branch for it
    none = torch.full_like(att, -1)
    x, sigma = torch.zeros(2, 1), torch.tensor([0.5, 2.0])
    scale, w = 2.0, 0.5
    branches = attribute_guidance_branches({"attributes": att}, {"attributes": none}, scale, w)
    assert len(branches) == 2 + 3 and abs(sum(b[0] for b in branches) - 1.0) < 1e-12
    full, uncond = model(x, sigma, att), model(x, sigma, none)
    want = uncond + scale * (full - uncond)
    for k in range(3):
        without = att.clone()
        without[:, k] = -1
        want = want + w * (full - model(x, sigma, without))
    assert torch.allclose(combined_denoiser(model, branches)(x, sigma), want)
    plain = cfg_denoiser(model, scale, {"attributes": att}, {"attributes": none})(x, sigma)
    zero = combined_denoiser(model, attribute_guidance_branches({"attributes": att}, {"attributes": none}, scale, 0.0))
    assert torch.allclose(zero(x, sigma), plain)


def test_attribute_guidance_weights_per_attribute():
    """One weight per attribute column: a zero weight costs no branch, the others get their own
    leave-one-out term; equal weights everywhere are the single-weight call, bit for bit."""
    def model(x, sigma, attributes):
        v = ((attributes + 1).clamp(min=0) * 10.0 ** torch.arange(attributes.shape[1])).sum(1)
        return x * 0 + v.view(-1, 1) * (1 + sigma.view(-1, 1))
    att = torch.tensor([[2, 0, 1], [1, 1, 0]])
    none = torch.full_like(att, -1)
    x, sigma = torch.zeros(2, 1), torch.tensor([0.5, 2.0])
    scale, w = 2.0, [0.0, 3.0, 0.25]
    branches = attribute_guidance_branches({"attributes": att}, {"attributes": none}, scale, w)
    assert len(branches) == 2 + 2 and abs(sum(b[0] for b in branches) - 1.0) < 1e-12
    full, uncond = model(x, sigma, att), model(x, sigma, none)
    want = uncond + scale * (full - uncond)
    for k in (1, 2):
        without = att.clone()
        without[:, k] = -1
        want = want + w[k] * (full - model(x, sigma, without))
    assert torch.allclose(combined_denoiser(model, branches)(x, sigma), want)
    one = combined_denoiser(model, attribute_guidance_branches({"attributes": att}, {"attributes": none}, scale, 0.3))
    each = combined_denoiser(model, attribute_guidance_branches({"attributes": att}, {"attributes": none}, scale, [0.3] * 3))
    assert torch.equal(one(x, sigma), each(x, sigma))
    with pytest.raises(ValueError, match="2 weights for 3 attributes"):
        attribute_guidance_branches({"attributes": att}, {"attributes": none}, scale, [1.0, 1.0])
