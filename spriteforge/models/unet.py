"""The spriteforge U-Net: a small noise-conditional U-Net sized for sprites on a CPU.

Architecture after Ho et al. 2020 / Dhariwal & Nichol 2021 (ADM), as simplified in EDM
(Karras et al. 2022): residual blocks with adaptive group-norm conditioning on the noise
embedding, self-attention only at low resolution, skip connections between encoder and
decoder. Zero-initialised output layers make every block start as identity, which lets a
small model learn fast from scratch.

Conditioning hooks, all optional (each is a no-op when its config field is 0):
  * noise level    c_noise -> sinusoidal features -> MLP -> embedding `emb`   (always)
  * class label    nn.Embedding(num_classes + 1) added to `emb`; index num_classes is the
                   "no label" token used for label dropout / classifier-free guidance
  * attributes     one nn.Embedding(n_k + 1) per attribute k (body, palette, action, ...), summed
                   into `emb`; index n_k is "unspecified", dropped independently in training, so
                   any subset of attributes can be asked for and guidance works per attribute set
  * text           a frozen encoder's pooled vector is added to `emb`, and its per-token states
                   feed cross-attention at low resolution (masked; empty caption = unconditional)
  * control maps   extra input channels concatenated to x (zeros when absent)
  * frames         input is [B*F, C, H, W]; at low resolution, attention across the F frames
                   of each set plus a frame-position embedding (cyclic for loops)

The network predicts F_theta of EDM; preconditioning (c_in, c_skip, c_out) lives in
`spriteforge.diffusion.edm`, not here.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig


def _groups(ch: int) -> int:
    """Group-norm groups: 32 for wide layers, fewer for the narrow layers of tiny presets."""
    for g in (32, 16, 8, 4, 2, 1):
        if ch % g == 0 and ch // g >= 2:
            return g
    return 1


def zero_init(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class PositionalEmbedding(nn.Module):
    """Sinusoidal features of a scalar (Vaswani et al. 2017), as EDM's ADM network embeds c_noise.

    Frequencies span 1 down to 1/max_positions, so c_noise = ln(sigma)/4, which lives in about
    [-1.6, 1.1], gets smooth features and neighbouring noise levels get similar codes. (Random
    Fourier features with scale 16 oscillate dozens of times over that range, and a small model
    trained for minutes then cannot tell noise levels apart precisely: its samples stay grainy.)
    """

    def __init__(self, dim: int, max_positions: int = 10000):
        super().__init__()
        freqs = (1 / max_positions) ** (torch.arange(dim // 2, dtype=torch.float32) / (dim // 2))
        self.register_buffer("freqs", freqs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float().outer(self.freqs)
        return torch.cat([x.cos(), x.sin()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv twice, with the embedding applied as scale and shift (adaptive GN)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm0 = nn.GroupNorm(_groups(cin), cin)
        self.conv0 = nn.Conv2d(cin, cout, 3, padding=1)
        self.affine = nn.Linear(emb_dim, 2 * cout)
        self.norm1 = nn.GroupNorm(_groups(cout), cout)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = zero_init(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv0(F.silu(self.norm0(x)))
        scale, shift = self.affine(emb)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(torch.addcmul(shift, self.norm1(h), scale + 1))
        h = self.conv1(self.dropout(h))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions of one image."""

    def __init__(self, ch: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = zero_init(nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class CrossAttention(nn.Module):
    """Image positions attend to the caption's token states (Rombach et al. 2022, latent diffusion)."""

    def __init__(self, ch: int, text_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.q = nn.Conv2d(ch, ch, 1)
        self.kv = nn.Linear(text_dim, 2 * ch)
        self.proj = zero_init(nn.Conv2d(ch, ch, 1))

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q(self.norm(x)).reshape(b, self.heads, c // self.heads, h * w).transpose(-1, -2)
        k, v = self.kv(tokens.to(x.dtype)).reshape(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class FrameAttention(nn.Module):
    """Attention across the F frames of a set, at each spatial position (temporal attention).

    This is what makes frames of one animation agree: every position of every frame sees the same
    position in the other frames. The frame-position embedding is added to the queries/keys input so
    the network knows frame order; with `cyclic` positions, frame F-1 is a neighbour of frame 0.
    """

    def __init__(self, ch: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(_groups(ch), ch)
        self.qkv = nn.Linear(ch, 3 * ch)
        self.proj = zero_init(nn.Linear(ch, ch))

    def forward(self, x: torch.Tensor, frames: int, pos: torch.Tensor) -> torch.Tensor:
        if frames == 1:
            return x
        bf, c, h, w = x.shape
        b = bf // frames
        # [B*F, C, H, W] -> [B*H*W, F, C]: a sequence of F frames per spatial position
        t = self.norm(x).reshape(b, frames, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, frames, c)
        t = t + pos.reshape(b, frames, c).repeat_interleave(h * w, dim=0)
        q, k, v = self.qkv(t).reshape(b * h * w, frames, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b * h * w, frames, c)
        out = self.proj(out).reshape(b, h * w, frames, c).permute(0, 2, 3, 1).reshape(bf, c, h, w)
        return x + out


class Level(nn.Module):
    """The blocks of one resolution: a residual block, then optional self- and frame-attention."""

    def __init__(self, cin, cout, emb_dim, dropout, attn: bool, frame_attn: bool, heads: int, text_dim: int = 0):
        super().__init__()
        self.res = ResBlock(cin, cout, emb_dim, dropout)
        self.attn = SelfAttention(cout, heads) if attn else None
        self.cross = CrossAttention(cout, text_dim, heads) if attn and text_dim else None
        self.frame_attn = FrameAttention(cout, heads) if frame_attn else None
        self.frame_pos = nn.Linear(emb_dim, cout) if frame_attn else None

    def forward(self, x, emb, frames, frame_emb, text=None):
        x = self.res(x, emb)
        if self.attn is not None:
            x = self.attn(x)
        if self.cross is not None:
            x = self.cross(x, *text)
        if self.frame_attn is not None:
            x = self.frame_attn(x, frames, self.frame_pos(frame_emb))
        return x


class UNet(nn.Module):
    """U-Net F_theta(x, c_noise, ...) -> same shape as x (image channels)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg = cfg.resolved()
        if not cfg.in_channels or not cfg.image_size:
            raise ValueError("ModelConfig.in_channels and image_size must be set (they come from the data)")
        self.cfg = cfg
        ch, emb_dim = cfg.channels, cfg.channels * 4
        self.out_channels = cfg.in_channels
        self.num_classes = cfg.num_classes
        self.frame_attn = cfg.frame_attention

        self.noise_embed = PositionalEmbedding(ch)
        self.emb_mlp = nn.Sequential(nn.Linear(ch, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.label_embed = nn.Embedding(cfg.num_classes + 1, emb_dim) if cfg.num_classes else None
        self.attr_embed = nn.ModuleList(nn.Embedding(n + 1, emb_dim) for n in cfg.attribute_sizes)
        self.frame_embed = nn.Linear(2, emb_dim) if cfg.frame_attention else None  # from (cos, sin) of phase
        self.text_embed = nn.Linear(cfg.text_dim, emb_dim) if cfg.text_dim else None  # pooled caption vector

        # Pixel-unshuffle: process a P x P block of pixels as one position with P*P times the channels.
        # At 32 px this moves the network to 16x16, where convolutions are 4x cheaper: the biggest single
        # speed-up on a CPU. A thin full-resolution stem and a skip from it to a full-resolution output
        # layer keep a per-pixel path: without it the model learns low-noise denoising (the fine grain of
        # the last sampling steps) many times slower.
        p = cfg.patch
        levels_div = p * 2 ** (len(cfg.channel_mult) - 1)
        if cfg.image_size % levels_div:
            raise ValueError(f"image size {cfg.image_size} must be divisible by patch * 2^(levels-1) = {levels_div}")
        cin = cfg.in_channels + cfg.control_channels
        stem = cfg.stem_channels if p > 1 else ch
        self.conv_in = nn.Conv2d(cin, stem, 3, padding=1)
        self.patch_in = nn.Conv2d(stem * p * p, ch, 1) if p > 1 else nn.Identity()
        self.down = nn.ModuleList()
        skips, cur, res = [ch], ch, cfg.image_size // p
        for i, mult in enumerate(cfg.channel_mult):
            cout = ch * mult
            low = res <= cfg.attn_max_res
            for _ in range(cfg.num_blocks):
                self.down.append(Level(cur, cout, emb_dim, cfg.dropout, low, low and cfg.frame_attention, cfg.heads, cfg.text_dim))
                cur = cout
                skips.append(cur)
            if i < len(cfg.channel_mult) - 1:
                self.down.append(nn.Conv2d(cur, cur, 3, stride=2, padding=1))
                skips.append(cur)
                res //= 2

        self.mid = nn.ModuleList([Level(cur, cur, emb_dim, cfg.dropout, True, cfg.frame_attention, cfg.heads, cfg.text_dim),
                                  Level(cur, cur, emb_dim, cfg.dropout, False, False, cfg.heads)])

        self.up = nn.ModuleList()
        for i, mult in reversed(list(enumerate(cfg.channel_mult))):
            cout = ch * mult
            low = res <= cfg.attn_max_res
            for _ in range(cfg.num_blocks + 1):
                self.up.append(Level(cur + skips.pop(), cout, emb_dim, cfg.dropout, low,
                                     low and cfg.frame_attention, cfg.heads, cfg.text_dim))
                cur = cout
            if i > 0:
                self.up.append(nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                             nn.Conv2d(cur, cur, 3, padding=1)))
                res *= 2
        self.patch_out = nn.Conv2d(cur, stem * p * p, 1) if p > 1 else nn.Identity()
        out_ch = 2 * stem if p > 1 else cur  # patch > 1: unshuffled features + the full-resolution stem
        self.norm_out = nn.GroupNorm(_groups(out_ch), out_ch)
        self.conv_out = zero_init(nn.Conv2d(out_ch, cfg.in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, class_labels: torch.Tensor | None = None,
                control: torch.Tensor | None = None, frames: int = 1, frame_phase: torch.Tensor | None = None,
                text_tokens: torch.Tensor | None = None, text_mask: torch.Tensor | None = None,
                text_pooled: torch.Tensor | None = None, attributes: torch.Tensor | None = None):
        """x: [B*F, C, H, W]; c_noise: [B*F]; class_labels: [B*F] int, -1 or num_classes = no label;
        control: [B*F, control_channels, H, W]; frame_phase: [B*F] in [0, 1) (position in the cycle);
        text_tokens [B*F, L, text_dim], text_mask [B*F, L] bool, text_pooled [B*F, text_dim]: the
        caption's encoding (the empty caption's encoding = unconditional); attributes: [B*F, K] int,
        one column per attribute, -1 = unspecified."""
        emb = self.emb_mlp(self.noise_embed(c_noise))
        text = None
        if self.text_embed is not None:
            if text_tokens is None:
                raise ValueError("this model is text-conditional: pass text_tokens/text_mask/text_pooled "
                                 "(the empty caption's encoding for unconditional sampling)")
            emb = emb + self.text_embed(text_pooled.to(emb.dtype))
            text = (text_tokens, text_mask.bool())
        if self.label_embed is not None:
            labels = torch.full((x.shape[0],), self.num_classes, device=x.device, dtype=torch.long) \
                if class_labels is None else class_labels.long().where(class_labels >= 0, self.num_classes)
            emb = emb + self.label_embed(labels)
        for k, table in enumerate(self.attr_embed):
            n = table.num_embeddings - 1
            a = attributes[:, k].long() if attributes is not None else torch.full((x.shape[0],), -1, device=x.device)
            emb = emb + table(a.where((a >= 0) & (a < n), n))
        frame_emb = None
        if self.frame_embed is not None:
            if frame_phase is None:
                frame_phase = torch.arange(x.shape[0], device=x.device).remainder(frames).float() / frames
            angle = 2 * math.pi * frame_phase.float()
            frame_emb = self.frame_embed(torch.stack([angle.cos(), angle.sin()], dim=1))
            emb = emb + frame_emb
        emb = F.silu(emb)

        if self.cfg.control_channels:
            if control is None:  # a model trained with control maps also works without them
                control = torch.zeros(x.shape[0], self.cfg.control_channels, *x.shape[2:], device=x.device, dtype=x.dtype)
            x = torch.cat([x, control.to(x.dtype)], dim=1)
        p = self.cfg.patch
        stem = self.conv_in(x)
        h = self.patch_in(F.pixel_unshuffle(stem, p)) if p > 1 else stem
        skips = [h]
        for block in self.down:
            h = block(h, emb, frames, frame_emb, text) if isinstance(block, Level) else block(h)
            skips.append(h)
        for block in self.mid:
            h = block(h, emb, frames, frame_emb, text)
        for block in self.up:
            if isinstance(block, Level):
                h = block(torch.cat([h, skips.pop()], dim=1), emb, frames, frame_emb, text)
            else:
                h = block(h)
        if p > 1:
            h = torch.cat([F.pixel_shuffle(self.patch_out(h), p), stem], dim=1)
        return self.conv_out(F.silu(self.norm_out(h)))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
