"""Tests for the strict config loader in wmbench.configio."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import pytest
import yaml

from wmbench.agents.config import AgentConfig, RSSMConfig
from wmbench.configio import ConfigError, from_dict, load_yaml, to_dict, with_overrides


@dataclasses.dataclass(frozen=True)
class Rssm:
    deter: int = 512
    stoch: int = 32
    act: Literal["silu", "elu"] = "silu"
    unimix: float = 0.01


@dataclasses.dataclass(frozen=True)
class Train:
    lr: float = 1e-4
    steps: int = 1000
    log_video: bool = False
    seeds: tuple[int, ...] = (0, 1)
    betas: tuple[float, ...] = (0.9, 0.999)
    tags: tuple[str, ...] = ()
    clip: float | None = None


@dataclasses.dataclass(frozen=True)
class Env:
    task: str = "dmc:cheetah-run"
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Root:
    name: str = "run"
    rssm: Rssm = Rssm()
    train: Train = Train()
    env: Env = Env()
    probe: Rssm | None = None


@dataclasses.dataclass(frozen=True)
class Required:
    size: int

    def __post_init__(self):
        if self.size <= 0:
            raise ValueError("size must be positive")


def test_empty_mapping_gives_defaults():
    assert from_dict(Root, {}) == Root()


def test_every_supported_type_converts():
    cfg = from_dict(
        Root,
        {
            "name": "x",
            "rssm": {"deter": 200, "act": "elu", "unimix": 0},
            "train": {
                "lr": "3e-4",
                "log_video": True,
                "seeds": [3, 4, 5],
                "betas": [1, 0.5],
                "tags": ["a", "b"],
                "clip": 100,
            },
            "env": {
                "task": "dmc:walker-walk",
                "kwargs": {"size": [64, 64], "x": None},
                "extra": {"k": 1},
            },
            "probe": {"stoch": 8},
        },
    )
    assert cfg.name == "x"
    assert cfg.rssm == Rssm(deter=200, act="elu", unimix=0.0)
    assert type(cfg.rssm.unimix) is float
    assert cfg.train.lr == 3e-4 and type(cfg.train.lr) is float
    assert cfg.train.log_video is True
    assert cfg.train.seeds == (3, 4, 5)
    assert cfg.train.betas == (1.0, 0.5) and all(type(b) is float for b in cfg.train.betas)
    assert cfg.train.tags == ("a", "b")
    assert cfg.train.clip == 100.0 and type(cfg.train.clip) is float
    assert cfg.train.steps == 1000  # default kept
    assert cfg.env.kwargs == {"size": [64, 64], "x": None} and type(cfg.env.kwargs) is dict
    assert cfg.env.extra == {"k": 1} and type(cfg.env.extra) is dict
    assert cfg.probe == Rssm(stoch=8)
    assert from_dict(Root, {"probe": None, "train": {"clip": None}}) == Root()


def test_unknown_key_names_path_allowed_keys_and_suggestion():
    with pytest.raises(ConfigError) as info:
        from_dict(Root, {"rssm": {"detr": 3}}, where="smoke.yaml: config")
    msg = str(info.value)
    assert msg.startswith("smoke.yaml: config.rssm.detr: unknown key 'detr'")
    assert "did you mean 'deter'?" in msg
    assert "allowed keys: deter, stoch, act, unimix" in msg
    with pytest.raises(ConfigError, match=r"^config\.zzz: unknown key 'zzz' \(allowed keys"):
        from_dict(Root, {"zzz": 1})


@pytest.mark.parametrize(
    "data, message",
    [
        ({"rssm": {"deter": "200"}}, "config.rssm.deter: expected int, got '200' (str)"),
        ({"rssm": {"deter": 2.0}}, "config.rssm.deter: expected int, got 2.0 (float)"),
        ({"rssm": {"deter": True}}, "config.rssm.deter: expected int, got True (bool)"),
        ({"train": {"log_video": 1}}, "config.train.log_video: expected bool, got 1 (int)"),
        (
            {"train": {"log_video": "true"}},
            "config.train.log_video: expected bool, got 'true' (str)",
        ),
        ({"train": {"lr": True}}, "config.train.lr: expected float, got True (bool)"),
        ({"train": {"lr": "fast"}}, "config.train.lr: expected float, got 'fast' (str)"),
        ({"name": 3}, "config.name: expected str, got 3 (int)"),
        ({"rssm": {"act": "relu"}}, "config.rssm.act: expected one of ['silu', 'elu'], got 'relu'"),
        ({"train": {"seeds": 3}}, "config.train.seeds: expected tuple[int, ...], got 3 (int)"),
        ({"train": {"seeds": [1, "2"]}}, "config.train.seeds[1]: expected int, got '2' (str)"),
        ({"train": {"tags": [1]}}, "config.train.tags[0]: expected str, got 1 (int)"),
        ({"train": {"clip": "big"}}, "config.train.clip: expected float, got 'big' (str)"),
        ({"env": {"kwargs": [1]}}, "config.env.kwargs: expected dict[str, Any], got [1] (list)"),
        ({"env": {"kwargs": {1: 2}}}, "config.env.kwargs: keys must be str, got 1 (int)"),
        ({"rssm": 5}, "config.rssm: expected a mapping for Rssm, got 5 (int)"),
        ({"probe": [1]}, "config.probe: expected a mapping for Rssm, got [1] (list)"),
    ],
)
def test_wrong_types_name_path_expected_and_value(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(Root, data)
    assert str(info.value) == message


def test_literal_does_not_confuse_bool_and_int():
    @dataclasses.dataclass(frozen=True)
    class Flags:
        level: Literal[0, 1] = 0

    assert from_dict(Flags, {"level": 1}).level == 1
    with pytest.raises(ConfigError, match="expected one of"):
        from_dict(Flags, {"level": True})


def test_missing_required_and_post_init_errors():
    with pytest.raises(ConfigError, match=r"^config\.size: missing required key 'size'$"):
        from_dict(Required, {})
    with pytest.raises(ConfigError, match=r"^config: invalid Required: size must be positive$"):
        from_dict(Required, {"size": 0})
    assert from_dict(Required, {"size": 2}) == Required(2)


def test_non_dataclass_type_is_rejected():
    with pytest.raises(TypeError, match="dataclass type"):
        from_dict(dict, {})
    with pytest.raises(TypeError, match="dataclass instance"):
        to_dict(Root)


def test_to_dict_is_plain_and_round_trips():
    cfg = Root(
        rssm=Rssm(deter=64),
        train=Train(seeds=(7,), tags=("t",), clip=2.5),
        env=Env(kwargs={"size": (32, 32)}),
        probe=Rssm(act="elu"),
    )
    plain = to_dict(cfg)
    assert plain["rssm"] == {"deter": 64, "stoch": 32, "act": "silu", "unimix": 0.01}
    assert plain["train"]["seeds"] == [7]
    assert plain["env"]["kwargs"] == {"size": [32, 32]}
    assert plain["probe"]["act"] == "elu"
    # Survives a YAML dump/load round trip and rebuilds the same config.
    assert from_dict(Root, yaml.safe_load(yaml.safe_dump(plain))) == Root(
        rssm=cfg.rssm, train=cfg.train, env=Env(kwargs={"size": [32, 32]}), probe=cfg.probe
    )
    assert from_dict(Root, to_dict(Root())) == Root()


def test_with_overrides_parses_values_with_yaml():
    cfg = with_overrides(
        Root(),
        [
            "rssm.deter=200",
            "train.lr=3e-4",
            "env.task=dmc:walker-walk",
            "train.log_video=true",
            "train.seeds=[1, 2]",
            "env.kwargs.size=64",
            "probe.stoch=4",
            "train.clip=",
        ],
    )
    assert cfg.rssm.deter == 200
    assert cfg.train.lr == 3e-4
    assert cfg.env.task == "dmc:walker-walk"
    assert cfg.train.log_video is True
    assert cfg.train.seeds == (1, 2)
    assert cfg.env.kwargs == {"size": 64}
    assert cfg.probe == Rssm(stoch=4)
    assert cfg.train.clip is None
    assert with_overrides(Root(), []) == Root()
    # Later overrides win.
    assert with_overrides(Root(), ["rssm.deter=1", "rssm.deter=2"]).rssm.deter == 2


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("rssm.deter", r"^override 'rssm.deter': expected the form key.sub=value$"),
        ("=3", r"expected the form"),
        ("rssm..deter=3", r"expected the form"),
        (
            "rssm.detr=3",
            r"^override 'rssm.detr=3': config.rssm.detr: unknown key 'detr'; did you mean 'deter'",
        ),
        ("nope.deter=3", r"config.nope: unknown key 'nope'"),
        ("rssm.deter=big", r"config.rssm.deter: expected int, got 'big'"),
        ("rssm.deter.x=1", r"^override 'rssm.deter.x=1': rssm.deter is not a mapping$"),
        ("rssm.deter=[1", r"value is not valid YAML"),
        ("rssm.unimix=true", r"config.rssm.unimix: expected float, got True"),
    ],
)
def test_with_overrides_errors(override, pattern):
    with pytest.raises(ConfigError, match=pattern):
        with_overrides(Root(), ["rssm.stoch=4", override])


def test_load_yaml_reads_mapping(tmp_path):
    path = tmp_path / "smoke.yaml"
    path.write_text("name: smoke\nrssm:\n  deter: 64\ntrain:\n  lr: 3e-4\n")
    data = load_yaml(path)
    assert data == {"name": "smoke", "rssm": {"deter": 64}, "train": {"lr": "3e-4"}}
    assert from_dict(Root, data, where=f"{path.name}: config") == Root(
        name="smoke", rssm=Rssm(deter=64), train=Train(lr=3e-4)
    )


def test_load_yaml_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read config file"):
        load_yaml(missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(
        ConfigError, match=r"bad\.yaml: YAML syntax error at line \d+, column \d+"
    ) as info:
        load_yaml(bad)
    line = int(str(info.value).split("at line ")[1].split(",")[0])
    assert 2 <= line <= 4
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: top level must be a mapping, got list"):
        load_yaml(listing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(
        ConfigError, match=r"empty\.yaml: top level must be a mapping, got NoneType"
    ):
        load_yaml(empty)


def test_agent_field_defaults_are_the_dreamer_v3_preset():
    assert (
        from_dict(AgentConfig, {})
        == AgentConfig()
        == from_dict(AgentConfig, {"preset": "dreamer-v3"})
    )
    v3 = AgentConfig()
    assert (
        v3.world_model.rssm.classes,
        v3.world_model.kl.dyn_scale,
        v3.world_model.kl.rep_scale,
    ) == (32, 0.5, 0.1)
    assert (v3.actor_critic.discount, v3.actor_critic.actor_entropy) == (0.997, 3e-4)


def test_a_preset_sets_its_fields_and_fields_beside_it_win():
    v1 = from_dict(AgentConfig, {"preset": "dreamer-v1"})
    assert v1.world_model.rssm.classes == 0 and v1.world_model.kl.free_nats == 3.0
    assert v1.world_model.kl.per == "batch" and v1.actor_critic.actor_layers == 4
    assert v1.actor_critic.expl_noise == 0.3 and v1.pretrain_updates == 100
    assert v1.world_model.rssm.min_std == RSSMConfig().min_std  # not set by the preset: the default
    mixed = from_dict(
        AgentConfig,
        {"preset": "dreamer-v1", "world_model": {"rssm": {"deter": 64}}, "pretrain_updates": 0},
    )
    assert mixed.world_model.rssm.deter == 64 and mixed.world_model.rssm.stoch == 30
    assert mixed.pretrain_updates == 0 and mixed.world_model.lr == 6e-4
    # the resolved config, written out and read back, is the same (config.yaml of a run)
    assert from_dict(AgentConfig, to_dict(mixed)) == mixed


def test_a_preset_override_starts_the_agent_from_that_preset():
    base = from_dict(AgentConfig, {"world_model": {"units": 16}})
    v1 = with_overrides(base, ["world_model.rssm.deter=64", "preset=dreamer-v1"])
    assert v1.preset == "dreamer-v1" and v1.world_model.units == 400  # base's 16 is gone
    assert v1.world_model.rssm.deter == 64  # the other override is applied on top
    assert with_overrides(v1, ["preset=dreamer-v3"]) == AgentConfig()


def test_unknown_preset_names_the_presets():
    with pytest.raises(
        ConfigError,
        match="agent.preset: unknown preset 'dreamer-v2'; choose one of dreamer-v3, dreamer-v1",
    ):
        from_dict(AgentConfig, {"preset": "dreamer-v2"}, where="agent")
