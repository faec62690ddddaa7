"""Typed configuration: one dataclass per concern, validated where it is built.

The CLI, config files (YAML/JSON) and checkpoints all go through these classes. Every error
names the flag (`--train.lr`) so a user knows what to fix. `RunConfig.to_dict()` is what every
run folder (`config.yaml`) and every checkpoint's safetensors metadata carries.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the flag."""


def _check(cond: bool, flag: str, msg: str):
    if not cond:
        raise ConfigError(f"`{flag}` {msg}")


RESIZE_FILTERS = ("nearest", "box", "bilinear", "bicubic", "lanczos")


@dataclass
class DataConfig:
    source: str = "builtin"          # "builtin" (procedural sprite set), "builtin-sheets" (its animations as 2x2 sheets: the whole-sheet baseline) or a folder
    size: int = 32                   # square training resolution in pixels
    resize_filter: str = "lanczos"   # filter when the scale factor is not an integer (integer factors use nearest)
    fit: str = "pad"                 # "crop" (center-crop to square) or "pad" (pad to square with transparent/edge)
    hflip: bool = False              # random horizontal flip augmentation
    strict: bool = False             # fail on the first unreadable file instead of skipping it with a warning
    channels: str = "auto"           # "auto" (RGBA if any image has alpha), "rgb" or "rgba"
    builtin_seed: int = 0            # seed of the procedural built-in sprite set
    builtin_characters: int = 24     # characters rendered in the built-in set

    def __post_init__(self):
        _check(8 <= self.size <= 512 and self.size % 8 == 0, "data.size", f"must be a multiple of 8 in [8, 512], got {self.size}")
        _check(self.resize_filter in RESIZE_FILTERS, "data.resize_filter", f"must be one of {RESIZE_FILTERS}, got {self.resize_filter!r}")
        _check(self.fit in ("crop", "pad"), "data.fit", f"must be 'crop' or 'pad', got {self.fit!r}")
        _check(self.channels in ("auto", "rgb", "rgba"), "data.channels", f"must be 'auto', 'rgb' or 'rgba', got {self.channels!r}")
        _check(self.builtin_characters >= 1, "data.builtin_characters", f"must be >= 1, got {self.builtin_characters}")


PRESETS: dict[str, dict[str, Any]] = {
    # patch: pixel-unshuffle factor at the input (2 = a 32 px sprite is processed at 16x16, 4x cheaper
    # per step, but on sprites it learned the low-noise end several times slower per step, so the
    # presets keep full resolution); channels: base width; channel_mult: width per resolution level;
    # num_blocks: residual blocks per level; attention at feature maps of side <= attn_max_res.
    "tiny": dict(patch=1, channels=32, channel_mult=(1, 2, 2), num_blocks=1, attn_max_res=8, heads=2),
    "small": dict(patch=1, channels=48, channel_mult=(1, 2, 2), num_blocks=2, attn_max_res=8, heads=4),
    "base": dict(patch=1, channels=96, channel_mult=(1, 2, 3, 4), num_blocks=2, attn_max_res=16, heads=4),
}


CONTROL_CHANNELS = {"pose": 3, "edges": 1, "silhouette": 1}  # channels each control map adds to the input


def _names(v) -> tuple[str, ...]:
    """"a,b" or ["a", "b"] -> ("a", "b")."""
    if isinstance(v, str):
        v = v.split(",")
    return tuple(x.strip() for x in v if str(x).strip())


@dataclass
class ModelConfig:
    preset: str = "tiny"             # tiny | small | base; explicit fields below override it when set (tiny: best in minutes on a CPU)
    patch: int = 0                   # pixel-unshuffle factor at the input (2: a 32 px image is processed as 16x16 with 4x channels; 0 = from preset)
    stem_channels: int = 32          # width of the full-resolution stem/output layers when patch > 1
    channels: int = 0                # base width (0 = from preset)
    channel_mult: tuple[int, ...] = ()  # width multiplier per resolution level (empty = from preset)
    num_blocks: int = 0              # residual blocks per level (0 = from preset)
    attn_max_res: int = 0            # self-attention at feature maps of this side or smaller (0 = from preset)
    heads: int = 0                   # attention heads (0 = from preset)
    dropout: float = 0.0             # dropout inside residual blocks
    in_channels: int = 0             # image channels; 0 = taken from the data (3 RGB, 4 RGBA)
    image_size: int = 0              # 0 = taken from the data
    num_classes: int = 0             # class-label embedding size; 0 = unconditional (taken from the data)
    label_dropout: float = 0.1       # probability of dropping the label (and all attributes at once) in training (classifier-free guidance)
    frame_attention: bool = False    # attention across the frames of a set (animation model)
    attributes: tuple[str, ...] = () # metadata keys used as labels, each with its own embedding (e.g. archetype,palette,action)
    attribute_sizes: tuple[int, ...] = ()  # values per attribute (set from the data)
    attribute_dropout: float = 0.15  # probability of dropping each attribute in training (CFG; also lets prompts omit it)
    control: tuple[str, ...] = ()    # spatial control maps concatenated to the input: pose (3 ch), edges (1), silhouette (1)
    control_dropout: float = 0.2     # probability of training a set without its control maps (the model then works without them)
    control_channels: int = 0        # extra input channels for the control maps (set from `control`)
    text_encoder: str = ""           # frozen text encoder for captions ("minilm"; "" = no text conditioning)
    text_dim: int = 0                # width of the text encoder's states (set from the encoder)
    caption_dropout: float = 0.1     # probability of training on the empty caption (classifier-free guidance)

    def __post_init__(self):
        _check(self.preset in PRESETS, "model.preset", f"must be one of {tuple(PRESETS)}, got {self.preset!r}")
        self.channel_mult = tuple(self.channel_mult)
        _check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        _check(0.0 <= self.label_dropout <= 1.0, "model.label_dropout", f"must be in [0, 1], got {self.label_dropout}")
        _check(self.in_channels in (0, 1, 3, 4), "model.in_channels", f"must be 1, 3 or 4, got {self.in_channels}")
        self.attributes = _names(self.attributes)
        self.attribute_sizes = tuple(int(n) for n in self.attribute_sizes)
        self.control = _names(self.control)
        bad = [c for c in self.control if c not in CONTROL_CHANNELS]
        _check(not bad, "model.control", f"has unknown map {bad[:1]}; expected a subset of {tuple(CONTROL_CHANNELS)}")
        _check(0.0 <= self.attribute_dropout <= 1.0, "model.attribute_dropout", f"must be in [0, 1], got {self.attribute_dropout}")
        _check(0.0 <= self.control_dropout <= 1.0, "model.control_dropout", f"must be in [0, 1], got {self.control_dropout}")
        if self.control and not self.control_channels:
            self.control_channels = sum(CONTROL_CHANNELS[c] for c in self.control)

    def resolved(self) -> "ModelConfig":
        """A copy with the preset's values filled in wherever a field is unset."""
        p = PRESETS[self.preset]
        return dataclasses.replace(
            self,
            patch=self.patch or p["patch"],
            channels=self.channels or p["channels"],
            channel_mult=tuple(self.channel_mult) or tuple(p["channel_mult"]),
            num_blocks=self.num_blocks or p["num_blocks"],
            attn_max_res=self.attn_max_res or p["attn_max_res"],
            heads=self.heads or p["heads"],
        )


@dataclass
class DiffusionConfig:
    """EDM (Karras et al. 2022) preconditioning and training noise distribution."""
    sigma_data: float = 0.5          # std of the data; images in [-1, 1] are close to 0.5
    P_mean: float = -1.2             # log-normal training sigma: ln(sigma) ~ N(P_mean, P_std^2)
    P_std: float = 1.2               # spread of ln(sigma) in training
    sigma_min: float = 0.002         # smallest sigma of the sampling schedule
    sigma_max: float = 80.0          # largest sigma of the sampling schedule (pure noise)

    def __post_init__(self):
        _check(self.sigma_data > 0, "diffusion.sigma_data", f"must be > 0, got {self.sigma_data}")
        _check(self.P_std > 0, "diffusion.P_std", f"must be > 0, got {self.P_std}")
        _check(0 < self.sigma_min < self.sigma_max, "diffusion.sigma_min", f"must be in (0, sigma_max), got {self.sigma_min}")


@dataclass
class TrainConfig:
    steps: int = 0                   # optimizer steps (0 = no step limit; then --minutes must be set)
    minutes: float = 0.0             # wall-clock budget in minutes (0 = no time limit)
    batch_size: int = 32             # images per optimizer step
    frames: int = 0                  # frame-set training: sets of min_frames..frames frames of one animation (0 = single images)
    min_frames: int = 2              # smallest frame set drawn (1 also trains single frames: better `sample` from an animation model)
    init_from: str = ""              # fine-tune: start from this run folder, checkpoint, weights file or "builtin" (weights only)
    grad_accum: int = 1              # micro-batches per optimizer step
    lr: float = 2e-3                 # peak learning rate (AdamW)
    weight_decay: float = 0.0        # AdamW decoupled weight decay
    warmup_steps: int = 100          # linear learning-rate warmup
    lr_schedule: str = "constant"    # constant | cosine (cosine needs --steps)
    grad_clip: float = 1.0           # max global grad norm (0 = off)
    detail_weight: float = 1.0       # loss weight of detail pixels (built-in set: what the accessory changes); 1 = off
    ema_halflife_images: float = 0.0 # EMA half-life in training images (EDM style); 0 = 50,000, capped early in a run by ema_warmup_ratio
    ema_warmup_ratio: float = 0.05   # EMA half-life grows with progress (EDM): min(halflife, ratio * images seen)
    bf16: bool = True                # bf16 autocast (CPU with AVX-512 bf16, or CUDA); weights stay fp32
    seed: int = 0                    # seed of init, batches, noise and dropout
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    threads: int = 0                 # CPU threads for torch (0 = torch default)
    ckpt_every: int = 500            # checkpoint every N steps (and at the end / on Ctrl-C)
    sample_every: int = 250          # write a sample grid every N steps (0 = only at the end)
    log_every: int = 25              # metrics.jsonl every N steps
    sample_n: int = 16               # images in each progress grid
    sample_steps: int = 16           # sampler steps for progress grids
    val_every: int = 250             # held-out validation loss every N steps (0 = off)
    val_fraction: float = 0.05       # share of the data held out for validation loss
    fd_every: int = 0                # FD-EffNet of fd_n samples vs the held-out images every N steps (0 = off; ~10-30 s each on a CPU)
    fd_n: int = 64                   # samples per in-training FD-EffNet (small: compare only within a run / at equal fd_n)

    def __post_init__(self):
        _check(self.steps >= 0, "train.steps", f"must be >= 0, got {self.steps}")
        _check(self.minutes >= 0, "train.minutes", f"must be >= 0, got {self.minutes}")
        _check(self.batch_size >= 1, "train.batch_size", f"must be >= 1, got {self.batch_size}")
        _check(self.frames == 0 or 2 <= self.frames <= 16, "train.frames", f"must be 0 or in [2, 16], got {self.frames}")
        _check(1 <= self.min_frames <= max(2, self.frames), "train.min_frames",
               f"must be in [1, train.frames], got {self.min_frames}")
        _check(self.grad_accum >= 1, "train.grad_accum", f"must be >= 1, got {self.grad_accum}")
        _check(self.lr > 0, "train.lr", f"must be > 0, got {self.lr}")
        _check(self.warmup_steps >= 0, "train.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        _check(self.lr_schedule in ("constant", "cosine"), "train.lr_schedule", f"must be 'constant' or 'cosine', got {self.lr_schedule!r}")
        _check(self.lr_schedule != "cosine" or self.steps > 0, "train.lr_schedule", "'cosine' needs --steps to know where the schedule ends")
        _check(self.grad_clip >= 0, "train.grad_clip", f"must be >= 0, got {self.grad_clip}")
        _check(self.detail_weight > 0, "train.detail_weight", f"must be > 0, got {self.detail_weight}")
        _check(self.ckpt_every >= 1, "train.ckpt_every", f"must be >= 1, got {self.ckpt_every}")
        _check(0 <= self.val_fraction < 0.5, "train.val_fraction", f"must be in [0, 0.5), got {self.val_fraction}")
        _check(self.fd_every >= 0, "train.fd_every", f"must be >= 0, got {self.fd_every}")
        _check(2 <= self.fd_n <= 4096, "train.fd_n", f"must be in [2, 4096], got {self.fd_n}")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"), "train.device",
               f"must be auto, cpu, cuda or cuda:N, got {self.device!r}")


ATTR_GUIDANCE_HELP = ("Attribute models: extra guidance on each requested attribute on its own (0 = off; e.g. 1), "
                      "or per attribute: 'action=2' (only action), '1,action=2' (1 for the others). "
                      "Slower: one more model call per step for each guided attribute.")


def parse_attr_guidance(value, flag: str = "--attr-guidance") -> dict[str, float]:
    """An attribute-guidance setting -> {attribute name or "*": weight}.

    A number (or its text) is one weight for every requested attribute: 1 -> {"*": 1.0}. Text may
    also name attributes: "action=2" -> {"action": 2.0} (the others unguided), "0.5,action=2" ->
    {"*": 0.5, "action": 2.0}. Weights are >= 0; which names a model knows is checked where the model
    is (`attr_guidance_weights`)."""
    if isinstance(value, bool):
        raise ConfigError(f"`{flag}` must be a number or 'name=weight,...', got {value!r}")
    if isinstance(value, (int, float)):
        parts = [str(value)]
    elif isinstance(value, str):
        parts = [x.strip() for x in value.split(",") if x.strip()] or ["0"]
    else:
        raise ConfigError(f"`{flag}` must be a number or 'name=weight,...', got {value!r}")
    out: dict[str, float] = {}
    for part in parts:
        name, _, w = part.rpartition("=")
        name = name.strip() or "*"
        try:
            weight = float(w)
        except ValueError:
            raise ConfigError(f"`{flag}`: {part!r} is not a weight; expected a number (e.g. 1) or name=number "
                              "(e.g. action=2)") from None
        _check(weight >= 0 and weight == weight and weight != float("inf"), flag,
               f"weights must be finite and >= 0, got {part!r}")
        _check(name not in out, flag, f"gives {name if name != '*' else 'the default weight'} twice in {value!r}")
        out[name] = weight
    return out


def format_attr_guidance(weights: dict[str, float]) -> float | str:
    """The inverse of `parse_attr_guidance`, in canonical form: a plain number when one weight covers
    every attribute (0.0 = off), else "default,name=w,..." text (the default left out when 0)."""
    named = {k: w for k, w in weights.items() if k != "*"}
    default = weights.get("*", 0.0)
    if not named or all(w == default for w in named.values()):
        return float(default)
    head = [f"{default:g}"] if default else []
    return ",".join(head + [f"{k}={w:g}" for k, w in named.items()])


def attr_guidance_weights(value, names: list[str] | tuple[str, ...], flag: str = "--attr-guidance") -> list[float]:
    """Per attribute of a model (in `names`' order), its guidance weight under the setting `value`."""
    weights = parse_attr_guidance(value, flag)
    unknown = [k for k in weights if k != "*" and k not in names]
    if unknown:
        raise ConfigError(f"`{flag}`: {', '.join(map(repr, unknown))} is not an attribute of this model; "
                          f"it has {', '.join(names) or 'no attributes'}")
    return [weights.get(k, weights.get("*", 0.0)) for k in names]


SAMPLERS = ("euler", "heun", "dpmpp-2m", "euler-ancestral", "ddim", "ddpm")


@dataclass
class SampleConfig:
    sampler: str = "dpmpp-2m"
    steps: int = 20
    n: int = 16
    seed: int = 0
    cfg: float = 1.0                 # classifier-free guidance scale (1 = off)
    attr_guidance: float | str = 0.0  # attribute models: extra guidance per requested attribute (0 = off), or
                                      # per attribute ("action=2"); see parse_attr_guidance and sampling.guidance
    class_name: str | None = None    # class to sample (needs a class-conditional model)
    prompt: str | None = None        # caption to sample (needs a text-conditional model)
    negative_prompt: str = ""        # what guidance steers away from (the unconditional branch)
    frames: int = 1                  # frames per animation (frame-set models); n animations x frames images
    rho: float = 7.0                 # Karras schedule exponent

    def __post_init__(self):
        _check(self.sampler in SAMPLERS, "--sampler", f"must be one of {SAMPLERS}, got {self.sampler!r}")
        _check(1 <= self.steps <= 10000, "--steps", f"must be in [1, 10000], got {self.steps}")
        _check(1 <= self.n <= 4096, "--n", f"must be in [1, 4096], got {self.n}")
        _check(self.cfg >= 0, "--cfg", f"must be >= 0, got {self.cfg}")
        self.attr_guidance = format_attr_guidance(parse_attr_guidance(self.attr_guidance))
        _check(1 <= self.frames <= 64, "--frames", f"must be in [1, 64], got {self.frames}")
        _check(self.prompt is None or len(self.prompt) <= 500, "--prompt", f"is {len(self.prompt or '')} characters; at most 500")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "config") -> "RunConfig":
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"{where}: unknown section(s) {sorted(unknown)}; expected data, model, diffusion, train")
        kw = {}
        for f in fields(cls):
            sub_cls = {"data": DataConfig, "model": ModelConfig, "diffusion": DiffusionConfig, "train": TrainConfig}[f.name]
            kw[f.name] = build(sub_cls, d.get(f.name) or {}, f"{where}: {f.name}")
        return cls(**kw)

    def to_yaml(self) -> str:
        return yaml.safe_dump(_plain(self.to_dict()), sort_keys=False)

    def to_json(self) -> str:
        return json.dumps(_plain(self.to_dict()), sort_keys=True)

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            text = path.read_text()
            d = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as e:
            raise ConfigError(f"config file {path} does not parse: {e}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"config file {path} must hold a mapping with sections data/model/diffusion/train")
        return cls.from_dict(d, where=str(path))


def build(cls, d: dict, where: str):
    """Build dataclass `cls` from a dict, naming unknown keys (a typo in a config file is an error)."""
    if not isinstance(d, dict):
        raise ConfigError(f"{where} must be a mapping, got {type(d).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(names)}")
    try:
        return cls(**d)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def field_help() -> dict[str, tuple[str, str]]:
    """{"section.key": (default, comment)} read from the trailing comments of the dataclasses above,
    so the help text and the code can never disagree."""
    import inspect
    import re
    out = {}
    for section, cls in (("data", DataConfig), ("model", ModelConfig), ("diffusion", DiffusionConfig), ("train", TrainConfig)):
        src = inspect.getsource(cls)
        for f in fields(cls):
            m = re.search(rf"^\s+{f.name}: [^=]+=\s*(.+?)(?:\s+#\s*(.*))?$", src, re.M)
            default, comment = (m.group(1).strip(), (m.group(2) or "").strip()) if m else ("", "")
            out[f"{section}.{f.name}"] = (default, comment)
    return out


def apply_overrides(cfg: RunConfig, overrides: list[str]) -> RunConfig:
    """Apply `section.key=value` strings (values parsed as YAML: 1e-3, true, [1, 2, 2])."""
    d = cfg.to_dict()
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"`--set {item}` must look like section.key=value, e.g. train.lr=1e-3")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if len(parts) != 2 or parts[0] not in d or parts[1] not in d[parts[0]]:
            valid = ", ".join(sorted(field_help()))
            raise ConfigError(f"`--set {key}`: unknown config key; valid keys: {valid}")
        d[parts[0]][parts[1]] = _coerce(raw, d[parts[0]][parts[1]], key)
    return RunConfig.from_dict(d, where="--set")


def _coerce(raw: str, current, key: str):
    """Parse a --set value to the type of the field's current value (YAML alone reads 1e-3 as text)."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    try:
        if isinstance(current, bool):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if isinstance(current, int) and not isinstance(current, bool):
            return int(value) if float(value) == int(float(value)) else _bad()
        if isinstance(current, float):
            return float(value)
        if isinstance(current, (list, tuple)):
            if isinstance(value, (list, tuple)):
                return list(value)
            items = [v.strip() for v in str(value).split(",") if v.strip()]
            return [int(v) for v in items] if all(v.lstrip("-").isdigit() for v in items) else items
    except (ValueError, TypeError):
        raise ConfigError(f"`--set {key}={raw}`: expected a value like {current!r}") from None
    return value


def _bad():
    raise ValueError
