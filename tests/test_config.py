"""Configuration from APHRODITE_SLA_CONFIG (TOML/JSON) and APHRODITE_SLA_* variables."""
import json

import pytest

from aphrodite_sla.config import ConfigError, SLAConfig, load_config
from aphrodite_sla.sla.threshold import Statistic


def test_defaults_without_environment():
    cfg = load_config({})
    assert cfg == SLAConfig()
    assert cfg.exporter_host == "127.0.0.1" and cfg.exporter_port == 0


def test_environment_overrides_file(tmp_path):
    f = tmp_path / "sla.toml"
    f.write_text(
        'evaluation_interval_s = 2.5\nstall_after_s = 10\n'
        '[[thresholds]]\nmetric_name = "ttft_p99"\nsource_metric = "ttft_ms"\nstatistic = "p99"\n'
        'target_value = 800\ntolerance_percent = 25\nmeasurement_window_minutes = 5\n'
    )
    cfg = load_config({"APHRODITE_SLA_CONFIG": str(f), "APHRODITE_SLA_STALL_AFTER_S": "20",
                       "APHRODITE_SLA_DISABLED_SLAS": "echo_evolution_convergence, gpu_utilization_percent"})
    assert cfg.evaluation_interval_s == 2.5
    assert cfg.stall_after_s == 20.0
    assert cfg.thresholds[0].statistic is Statistic.P99
    assert cfg.disabled_slas == ("echo_evolution_convergence", "gpu_utilization_percent")


def test_json_file(tmp_path):
    f = tmp_path / "sla.json"
    f.write_text(json.dumps({"exporter_port": 9400, "system_sampler": False}))
    cfg = load_config({"APHRODITE_SLA_CONFIG": str(f)})
    assert cfg.exporter_port == 9400 and cfg.system_sampler is False


@pytest.mark.parametrize(
    "env, message",
    [
        ({"APHRODITE_SLA_EVALUATION_INTERVAL_S": "fast"}, "APHRODITE_SLA_EVALUATION_INTERVAL_S: evaluation_interval_s"),
        ({"APHRODITE_SLA_EVALUATION_INTERVAL_S": "-1"}, "evaluation_interval_s: must be a finite number > 0"),
        ({"APHRODITE_SLA_EXPORTER_PORT": "70000"}, "exporter_port"),
        ({"APHRODITE_SLA_SYSTEM_SAMPLER": "maybe"}, "system_sampler"),
        ({"APHRODITE_SLA_NOPE": "1"}, "APHRODITE_SLA_NOPE: unknown setting"),
        ({"APHRODITE_SLA_CONFIG": "/nonexistent/sla.toml"}, "cannot read"),
    ],
)
def test_malformed_settings_name_the_source_and_field(env, message):
    with pytest.raises(ConfigError, match=message):
        load_config(env)


@pytest.mark.parametrize(
    "text, message",
    [
        ("evaluation_interval_s = ", "not valid TOML"),
        ("bogus = 1", "unknown key 'bogus'"),
        ('[[thresholds]]\nmetric_name = "x"\ntarget_value = 1\ntolerance_percent = -5\n', r"thresholds\[0\].*tolerance_percent"),
        ('[[thresholds]]\nmetric_name = "x"\ncolour = "red"\n', r"thresholds\[0\]"),
        ('disabled_slas = "all"', "disabled_slas"),
    ],
)
def test_malformed_files(tmp_path, text, message):
    f = tmp_path / "sla.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config({"APHRODITE_SLA_CONFIG": str(f)})
