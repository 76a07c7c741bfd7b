"""Configuration: precedence, YAML scalars, error messages, policy params, a stable digest."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from servoir.config import SimConfig, load_config, parse_override, valid_keys
from servoir.errors import InputError


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


# ----------------------------------------------------------------------------- precedence


def test_defaults() -> None:
    cfg = load_config()
    assert cfg == SimConfig()
    assert cfg.cluster.router.name == "round_robin"
    assert cfg.instance.scheduler.name == "fcfs"
    assert cfg.engine.setting("enable_chunked_prefill") is True
    assert cfg.engine.setting("max_num_seqs") == 256


def test_preset_defaults_fill_unset_engine_settings() -> None:
    v = load_config(None, None, ["engine.preset=vidur_v0"]).engine
    assert (v.setting("max_num_seqs"), v.setting("max_num_batched_tokens")) == (128, 4096)
    assert v.setting("enable_chunked_prefill") is False
    # An explicit value wins over the preset.
    v = load_config(None, None, ["engine.preset=vidur_v0", "engine.max_num_seqs=64"]).engine
    assert v.setting("max_num_seqs") == 64


def test_precedence_defaults_file_flags_set(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        seed: 5
        hardware:
          gpu: h100
          tp: 2
        cluster:
          instances: 3
        engine:
          max_num_seqs: 64
    """,
    )
    only_file = load_config(path)
    assert (only_file.seed, only_file.hardware.gpu, only_file.hardware.tp) == (5, "h100", 2)
    assert only_file.cluster.instances == 3
    assert only_file.hardware.model == "llama-3-8b"  # untouched default

    flags = {"cluster.instances": 4, "hardware.tp": 4, "hardware.model": None}
    cfg = load_config(path, flags, ["cluster.instances=6", "engine.max_num_seqs=32"])
    assert cfg.seed == 5  # file only
    assert cfg.hardware.gpu == "h100"  # file only
    assert cfg.hardware.tp == 4  # flag beats file
    assert cfg.cluster.instances == 6  # --set beats flag and file
    assert cfg.engine.max_num_seqs == 32  # --set beats file
    assert cfg.hardware.model == "llama-3-8b"  # a None flag is "not given"


def test_later_set_wins() -> None:
    cfg = load_config(None, None, ["seed=1", "seed=2"])
    assert cfg.seed == 2


def test_json_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"seed": 9, "slo": {"ttft_s": 0.5}}), "cfg.json")
    cfg = load_config(path)
    assert cfg.seed == 9
    assert cfg.slo.ttft_s == 0.5


def test_config_is_frozen() -> None:
    cfg = load_config()
    with pytest.raises(ValidationError, match="frozen"):
        cfg.seed = 3  # type: ignore[misc]


# ----------------------------------------------------------------------------- YAML scalars


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("engine.enable_chunked_prefill=false", "enable_chunked_prefill", False),
        ("engine.enable_chunked_prefill=False", "enable_chunked_prefill", False),
        ("engine.enable_chunked_prefill=true", "enable_chunked_prefill", True),
        ("hardware.kv_tokens=4000", "kv_tokens", 4000),
        ("slo.ttft_s=0.25", "ttft_s", 0.25),
        ("workload.trace=null", "trace", None),
        ("workload.trace=", "trace", None),
        ("hardware.model=llama-3-70b", "model", "llama-3-70b"),
        ("workload.generator.rates=[2, 0.5]", "rates", [2, 0.5]),
        ("workload.generator.lengths.prompt=[10, 20]", "prompt", [10, 20]),
    ],
)
def test_parse_override_yaml_scalars(text: str, key: str, value: object) -> None:
    k, v = parse_override(text)
    assert k.endswith(key)
    assert v == value
    assert type(v) is type(value)


def test_set_values_are_typed_in_the_tree() -> None:
    cfg = load_config(
        None,
        None,
        [
            "engine.enable_chunked_prefill=false",
            "workload.generator.rates=[2, 0.5, 1]",
            "workload.generator.sojourn_s=[1, 2, 3]",
            "workload.generator.lengths.prompt=[10, 20]",
            "slo.tpot_s=0.1",
            " seed = 3 ",
        ],
    )
    assert cfg.engine.enable_chunked_prefill is False
    assert cfg.workload.generator.rates == (2.0, 0.5, 1.0)
    assert cfg.workload.generator.sojourn_s == (1.0, 2.0, 3.0)
    assert cfg.workload.generator.lengths.prompt == (10, 20)
    assert cfg.slo.tpot_s == 0.1
    assert cfg.seed == 3


@pytest.mark.parametrize("text", ["seed", "=3", "  =x"])
def test_set_without_key_value_is_an_error(text: str) -> None:
    with pytest.raises(InputError, match="key=value"):
        load_config(None, None, [text])


def test_set_unparsable_value_names_the_field() -> None:
    with pytest.raises(InputError) as exc:
        load_config(None, None, ["workload.generator.rates=[1, 2"])
    assert exc.value.field == "workload.generator.rates"


# ----------------------------------------------------------------------------- unknown keys


def _assert_lists_valid_keys(msg: str) -> None:
    for key in valid_keys():
        assert key in msg, key


@pytest.mark.parametrize("how", ["set", "flag"])
def test_unknown_key_lists_valid_keys(how: str) -> None:
    with pytest.raises(InputError) as exc:
        if how == "set":
            load_config(None, None, ["hardware.modle=x"])
        else:
            load_config(None, {"hardware.modle": "x"})
    msg = str(exc.value)
    assert "unknown configuration key 'hardware.modle'" in msg
    assert exc.value.field == "hardware.modle"
    _assert_lists_valid_keys(msg)


def test_unknown_key_in_file_lists_valid_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        engine:
          max_num_seq: 12
    """,
    )
    with pytest.raises(InputError) as exc:
        load_config(path)
    assert exc.value.field == "engine.max_num_seq"
    _assert_lists_valid_keys(str(exc.value))



def test_unknown_key_in_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "engine:\n  max_num_seq: 12\n")
    with pytest.raises(InputError) as exc:
        load_config(path)
    assert exc.value.file == str(path)


def test_setting_inside_a_value_is_an_error() -> None:
    with pytest.raises(InputError):
        load_config(None, None, ["seed.x=1"])


def test_valid_keys_shape() -> None:
    keys = valid_keys()
    assert len(keys) == len(set(keys))
    assert "engine.enable_chunked_prefill" in keys
    assert "cluster.router.params.*" in keys
    assert "instance.scheduler.params.*" in keys


def test_every_valid_key_can_be_set() -> None:
    # Setting every leaf to its default (as YAML flow text) gives back the default tree.
    defaults = SimConfig().model_dump(mode="json")
    overrides = []
    for key in valid_keys():
        if key.endswith(".*"):
            continue
        node = defaults
        for part in key.split("."):
            node = node[part]
        overrides.append(f"{key}={json.dumps(node)}")
    assert load_config(None, None, overrides) == SimConfig()


# ----------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("cluster.instances=0", "cluster.instances"),
        ("engine.block_size=abc", "engine.block_size"),
        ("engine.gpu_memory_utilization=1.5", "engine.gpu_memory_utilization"),
        ("workload.generator.kind=hawkes", "workload.generator.kind"),
        ("seed=-1", "seed"),
        ("slo.ttft_s=0", "slo.ttft_s"),
    ],
)
def test_bad_value_names_the_field(override: str, field: str) -> None:
    with pytest.raises(InputError) as exc:
        load_config(None, None, [override])
    assert exc.value.field == field
    assert f"field '{field}'" in str(exc.value)
    assert "(got " in str(exc.value)


def test_cross_field_rule_is_an_input_error() -> None:
    with pytest.raises(InputError, match="max_num_batched_tokens"):
        load_config(None, None, ["engine.max_num_seqs=512", "engine.max_num_batched_tokens=256"])


def test_bad_value_in_file_names_file_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        cluster:
          instances: many
    """,
    )
    with pytest.raises(InputError) as exc:
        load_config(path)
    assert exc.value.file == str(path)
    assert exc.value.field == "cluster.instances"
    assert str(path) in str(exc.value)


# ----------------------------------------------------------------------------- bad files


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        seed: 1
        hardware:
          gpu: a100: x
        cluster:
          instances: 2
    """,
    )
    with pytest.raises(InputError) as exc:
        load_config(path)
    assert exc.value.file == str(path)
    assert exc.value.line == 3
    assert f"{path}, line 3" in str(exc.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(InputError) as exc:
        load_config(path)
    assert exc.value.file == str(path)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(InputError, match="mapping") as exc:
        load_config(write(tmp_path, text))
    assert exc.value.file is not None


def test_empty_file_is_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing\n")) == SimConfig()


# ----------------------------------------------------------------------------- policy params


def test_params_keys_accepted_on_set() -> None:
    # Keys under params.* are free-form; the policy's constructor checks them later.
    cfg = load_config(
        None,
        {"cluster.router.name": "power_of_two"},
        [
            "cluster.router.params.d=3",
            "instance.scheduler.name=fcfs",
            "instance.scheduler.params.alpha=0.5",
            "instance.scheduler.params.weights.a=[1, 2]",
        ],
    )
    assert cfg.cluster.router.name == "power_of_two"
    assert cfg.cluster.router.params == {"d": 3}
    assert cfg.instance.scheduler.params == {"alpha": 0.5, "weights": {"a": [1, 2]}}


def test_params_alone_keep_the_default_policy_name() -> None:
    cfg = load_config(None, None, ["instance.scheduler.params.alpha=0.5"])
    assert cfg.instance.scheduler.name == "fcfs"
    assert cfg.instance.scheduler.params == {"alpha": 0.5}


def test_params_prefix_alone_is_not_a_key() -> None:
    with pytest.raises(InputError, match="unknown configuration key"):
        load_config(None, None, ["cluster.router.paramsd=3"])


def test_policy_name_from_file_params_from_set(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        cluster:
          router:
            name: power_of_two
    """,
    )
    cfg = load_config(path, None, ["cluster.router.params.d=4"])
    assert cfg.cluster.router.name == "power_of_two"
    assert cfg.cluster.router.params == {"d": 4}


def test_params_in_config_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        cluster:
          router:
            name: power_of_two
            params:
              d: 3
    """,
    )
    cfg = load_config(path)
    assert cfg.cluster.router.params == {"d": 3}


# ----------------------------------------------------------------------------- digest


DIGEST_OVERRIDES = [
    "seed=7",
    "cluster.instances=3",
    "workload.generator.rates=[2, 0.5]",
    "cluster.router.params.d=3",
    "cluster.router.name=power_of_two",
]


def test_digest_is_stable_across_processes() -> None:
    here = load_config(None, None, DIGEST_OVERRIDES).digest()
    code = (
        "import sys; from servoir.config import load_config; "
        "print(load_config(None, None, sys.argv[1:]).digest())"
    )
    # PYTHONHASHSEED differs per process by default; set it explicitly to make sure.
    out = subprocess.run(
        [sys.executable, "-c", code, *DIGEST_OVERRIDES],
        capture_output=True,
        text=True,
        check=True,
        env={**_env(), "PYTHONHASHSEED": "123"},
    )
    assert out.stdout.strip() == here
    assert len(here) == 64
    int(here, 16)


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_digest_independent_of_how_values_were_given(tmp_path: Path) -> None:
    path = write(tmp_path, "seed: 7\ncluster:\n  instances: 3\n")
    from_file = load_config(path).digest()
    from_flags = load_config(None, {"seed": 7, "cluster.instances": 3}).digest()
    from_set = load_config(None, None, ["cluster.instances=3", "seed=7"]).digest()
    assert from_file == from_flags == from_set


def test_digest_changes_with_any_value() -> None:
    base = load_config().digest()
    assert load_config(None, None, ["seed=1"]).digest() != base
    assert load_config(None, None, ["engine.block_size=32"]).digest() != base
    assert (
        load_config(
            None, None, ["cluster.router.name=power_of_two", "cluster.router.params.d=2"]
        ).digest()
        != base
    )
    assert load_config().digest() == base


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
       | st.sampled_from(["Yes", "NO", "On", "off", "True", "FALSE", "Null", "y", "N", "nan",
                          "inf", "_", "x1", " vidur_v0 ", "", "1e3", "0x1f", "2.5", "-3"]))
def test_yaml_scalar_equals_yaml(text: str) -> None:
    """The identifier fast path reads exactly what the YAML parser would."""
    import yaml

    from servoir.config import yaml_scalar

    assert yaml_scalar(text) == yaml.safe_load(text)


def test_vllm019_engine_flags_reach_the_engine() -> None:
    """``engine.async_scheduling`` / ``engine.cache_preempted`` (what ``servoir validate``
    turns on) are settable for simulate, and refused with the Vidur preset."""
    from servoir.experiments.run import build

    cfg = load_config(None, {"workload.num_requests": 5},
                      ["engine.async_scheduling=true", "engine.cache_preempted=true"])
    eng = build(cfg).engine
    assert eng.async_scheduling and eng.cache_preempted
    assert not build(load_config(None, {"workload.num_requests": 5})).engine.async_scheduling
    with pytest.raises(InputError, match="synchronous"):
        load_config(None, None, ["engine.preset=vidur_v0", "engine.async_scheduling=true"])
