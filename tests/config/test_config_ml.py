"""The ``[ml]`` section: absent means None (and nothing dumped), parse(dump(c)) == c with one,
strict types with file:line errors and did-you-mean, the model a trained detector needs, and
every key documented in docs/configuration.md."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from _config_strategies import configs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from registry_core.config import dump, parse
from registry_core.config._schema import MLConfig
from registry_core.errors import ConfigError

HEAD = 'version = 2\n[storage]\ndirectory = "/srv/registry"\n[tenants.acme]\n'
DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def _ml(body: str, **kw):
    return parse(HEAD + "[ml]\n" + body, source="registry.toml", **kw)


ml_configs = st.builds(
    MLConfig,
    anomaly_detection=st.booleans(),
    anomaly_detector=st.just("rules"),
    anomaly_model=st.none() | st.sampled_from(["/etc/registry/anomaly.rcml", "m.rcml"]),
    upload_checks=st.sampled_from(["off", "warn", "refuse"]),
    typosquat_top=st.integers(1, 100_000),
    scaling=st.booleans(),
    per_worker_rps=st.floats(1e-3, 1e6, allow_nan=False),
    workers_per_instance=st.integers(1, 1024),
) | st.builds(
    MLConfig,
    anomaly_detector=st.sampled_from(["iforest", "hst"]),
    anomaly_model=st.just("/models/a.rcml"),
)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(configs(), st.none() | ml_configs)
def test_parse_dump_round_trip_with_an_ml_section(config, ml):
    config = dataclasses.replace(config, ml=ml)
    text = dump(config)
    assert parse(text) == config
    assert ("\n[ml]\n" in text) == (ml is not None)
    assert dump(parse(text)) == text


def test_absent_section_is_none_and_empty_section_is_the_defaults():
    assert parse(HEAD).ml is None
    assert _ml("").ml == MLConfig()
    assert MLConfig().upload_checks == "off" and not MLConfig().anomaly_detection


def test_values_are_read():
    ml = _ml(
        'anomaly_detection = true\nanomaly_detector = "iforest"\nanomaly_model = "a.rcml"\n'
        'upload_checks = "refuse"\ntyposquat_top = 50\nscaling = true\nper_worker_rps = 80\n'
        "workers_per_instance = 8\n",
        base_dir="/etc/registry",
    ).ml
    assert ml == MLConfig(True, "iforest", "/etc/registry/a.rcml", "refuse", 50, True, 80.0, 8)


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ("anomaly_detection = 1\n", "ml.anomaly_detection", "must be true or false"),
        ('scaling = "yes"\n', "ml.scaling", "must be true or false"),
        ("typosquat_top = true\n", "ml.typosquat_top", "must be an integer"),
        ("typosquat_top = 0\n", "ml.typosquat_top", "between 1 and 100000"),
        ("typosquat_top = 5.0\n", "ml.typosquat_top", "must be an integer"),
        ("per_worker_rps = 0\n", "ml.per_worker_rps", "greater than 0"),
        ('per_worker_rps = "fast"\n', "ml.per_worker_rps", "must be a number"),
        ("workers_per_instance = 0\n", "ml.workers_per_instance", "between 1 and 1024"),
        ('upload_checks = "warm"\n', "ml.upload_checks", "did you mean 'warn'?"),
        ('anomaly_detector = "rule"\n', "ml.anomaly_detector", "did you mean 'rules'?"),
        ("upload_check = 'warn'\n", "ml.upload_check", "did you mean 'upload_checks'?"),
        ("anomaly_model = 3\n", "ml.anomaly_model", "must be a string"),
        ('anomaly_detector = "hst"\n', "ml.anomaly_detector", "needs a trained model"),
        ('anomaly_detector = "iforest"\n', "ml.anomaly_detector", "needs a trained model"),
    ],
)
def test_bad_values_name_the_file_line_and_key(body, key, message):
    with pytest.raises(ConfigError) as info:
        _ml("# the ML layer\n" + body)
    text = str(info.value)
    assert text.startswith("registry.toml:7: " + key), text
    assert message in text


def test_not_a_table():
    with pytest.raises(ConfigError, match="ml: must be a table"):
        parse(HEAD.replace("version = 2\n", "version = 2\nml = 1\n"))


def test_every_key_is_documented():
    text = DOC.read_text(encoding="utf-8")
    missing = [k for k in MLConfig.__dataclass_fields__ if f"| `{k}`" not in text]
    assert not missing, missing


def test_the_documented_example_parses():
    text = DOC.read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```toml\n")[1:] if "[ml]\n" in b]
    assert len(blocks) == 1
    config = parse('version = 2\n[storage]\ndirectory = "/srv"\n' + blocks[0] + "[tenants.a]\n")
    assert config.ml == MLConfig(True, upload_checks="warn", scaling=True, per_worker_rps=80.0)
    assert config.flags["ML_ANOMALY_DETECTION"] is True


def test_cache_eviction_choices_follow_the_policies():
    from registry_core.config._schema import CACHE_EVICTIONS
    from registry_core.eviction import POLICIES

    assert tuple(CACHE_EVICTIONS) == tuple(POLICIES)
