import pytest

from spriteforge.config import (ConfigError, DataConfig, ModelConfig, RunConfig, SampleConfig, TrainConfig,
                                apply_overrides, attr_guidance_weights, field_help, format_attr_guidance,
                                parse_attr_guidance)


def test_round_trip_yaml_and_json(tmp_path):
    cfg = RunConfig(model=ModelConfig(preset="tiny", channel_mult=(1, 2)), train=TrainConfig(steps=7, lr=1e-3))
    for suffix, text in ((".yaml", cfg.to_yaml()), (".json", cfg.to_json())):
        p = tmp_path / f"c{suffix}"
        p.write_text(text)
        assert RunConfig.load(p) == cfg


def test_unknown_keys_are_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  lrr: 1\n")
    with pytest.raises(ConfigError, match="lrr"):
        RunConfig.load(p)
    p.write_text("trian: {}\n")
    with pytest.raises(ConfigError, match="trian"):
        RunConfig.load(p)


@pytest.mark.parametrize("make, flag", [
    (lambda: TrainConfig(lr=-1), "train.lr"),
    (lambda: TrainConfig(lr_schedule="cosine"), "train.lr_schedule"),
    (lambda: DataConfig(size=30), "data.size"),
    (lambda: DataConfig(fit="stretch"), "data.fit"),
    (lambda: ModelConfig(preset="huge"), "model.preset"),
    (lambda: SampleConfig(sampler="plms"), "--sampler"),
    (lambda: SampleConfig(steps=0), "--steps"),
])
def test_validation_names_the_flag(make, flag):
    with pytest.raises(ConfigError, match=flag.replace(".", r"\.")):
        make()


def test_overrides_coerce_types():
    cfg = apply_overrides(RunConfig(), ["train.lr=1e-3", "train.bf16=false", "model.channel_mult=1,2", "data.size=16"])
    assert cfg.train.lr == 1e-3 and cfg.train.bf16 is False and cfg.model.channel_mult == (1, 2) and cfg.data.size == 16
    with pytest.raises(ConfigError, match="train.steps"):
        apply_overrides(RunConfig(), ["train.steps=abc"])
    with pytest.raises(ConfigError, match="unknown config key"):
        apply_overrides(RunConfig(), ["train.nope=1"])


def test_presets_resolve_and_help_covers_every_field():
    for preset in ("tiny", "small", "base"):
        m = ModelConfig(preset=preset).resolved()
        assert m.channels > 0 and m.channel_mult and m.num_blocks > 0
    helps = field_help()
    assert "train.lr" in helps and helps["train.lr"][1]  # every field has its comment
    assert all(comment for key, (default, comment) in helps.items()), [k for k, v in helps.items() if not v[1]]


def test_attribute_guidance_setting_parses_one_weight_or_named_weights():
    assert parse_attr_guidance(1) == parse_attr_guidance("1") == {"*": 1.0}
    assert parse_attr_guidance("action=2") == {"action": 2.0}
    assert parse_attr_guidance(" 0.5, action = 2 ") == {"*": 0.5, "action": 2.0}
    names = ("archetype", "palette", "accessory", "action", "direction")
    assert attr_guidance_weights("action=2", names) == [0, 0, 0, 2.0, 0]
    assert attr_guidance_weights("0.5,action=2", names) == [0.5, 0.5, 0.5, 2.0, 0.5]
    assert attr_guidance_weights(1.0, names) == [1.0] * 5
    # canonical form: a plain number when one weight covers all, so old settings stay floats
    assert SampleConfig(attr_guidance="1").attr_guidance == 1.0
    assert SampleConfig(attr_guidance="0,action=0").attr_guidance == 0.0
    assert SampleConfig(attr_guidance=" action=2 ").attr_guidance == "action=2"
    assert SampleConfig(attr_guidance="0.5,action=2").attr_guidance == "0.5,action=2"
    for w in ({"*": 1.5}, {"action": 2.0}, {"*": 0.25, "accessory": 1.0, "action": 3.0}):
        assert parse_attr_guidance(format_attr_guidance(w)) == w
    with pytest.raises(ConfigError, match=r"--attr-guidance.*'actoin' is not an attribute.*archetype, palette"):
        attr_guidance_weights("actoin=2", names)
    with pytest.raises(ConfigError, match=r"--attr-guidance.*'action=x' is not a weight"):
        SampleConfig(attr_guidance="action=x")
    with pytest.raises(ConfigError, match=r"--attr-guidance.*>= 0.*'action=-1'"):
        SampleConfig(attr_guidance="action=-1")
    with pytest.raises(ConfigError, match=r"--attr-guidance.*action twice"):
        SampleConfig(attr_guidance="action=1,action=2")
