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
    cfg = load_config({"APHRODITE_SLA_CONFIG": str(f), "APHRODITE_SLA_STALL_AFTER_S": "20", "APHRODITE_SLA_SLA_SET": "seed",
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
        ({"APHRODITE_SLA_EVALUATION_INTERVAL_S": "-1"}, r"evaluation_interval_s: must be a number in \[0.5, 3600\]"),
        ({"APHRODITE_SLA_EVALUATION_INTERVAL_S": "1e-9"}, "evaluation_interval_s: must be a number in"),
        ({"APHRODITE_SLA_STALL_AFTER_S": "inf"}, "stall_after_s"),
        ({"APHRODITE_SLA_SLA_SET": "gold"}, "sla_set: must be one of serving, seed"),
        ({"APHRODITE_SLA_DISABLED_SLAS": "ttft_p95, no_such_sla"}, "disabled_slas: unknown SLA 'no_such_sla'"),
        ({"APHRODITE_SLA_EXPORTER_PORT": "9400.5"}, "exporter_port"),
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


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[thresholds]]\nmetric_name = "x"\ntarget_value = 1\ntolerance_percent = 5\nmeasurement_window_minutes = 1e9\n',
         r"thresholds\[0\]: SLAThreshold.measurement_window_minutes: must be <= 10080"),
        ('[[thresholds]]\nmetric_name = "x"\ntarget_value = 1\ntolerance_percent = 5\nsample_rate_hz = 1e7\n',
         r"thresholds\[0\]: SLAThreshold.sample_rate_hz: .* samples; at most"),
        ('[[thresholds]]\nmetric_name = "x"\ntarget_value = 1\ntolerance_percent = 5\nenabled = "false"\n',
         r"thresholds\[0\]: SLAThreshold.enabled: must be true or false"),
        ('evaluation_interval_s = 1e-9', r"evaluation_interval_s: must be a number in \[0.5, 3600\]"),
        ('enabled = "perhaps"', "enabled: cannot use 'perhaps'"),
        ('disabled_slas = ["request_latency_p95"]', "disabled_slas: unknown SLA 'request_latency_p95'"),
    ],
)
def test_out_of_range_and_mistyped_values_name_the_field(tmp_path, text, message):
    f = tmp_path / "sla.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config({"APHRODITE_SLA_CONFIG": str(f)})


def test_string_false_disables_and_is_not_truthy(tmp_path):
    f = tmp_path / "sla.toml"
    f.write_text('enabled = "false"\nsystem_sampler = "no"\n')
    cfg = load_config({"APHRODITE_SLA_CONFIG": str(f)})
    assert cfg.enabled is False and cfg.system_sampler is False


def test_non_utf8_file_is_a_config_error(tmp_path):
    f = tmp_path / "sla.toml"
    f.write_bytes(b"evaluation_interval_s = 5\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=r"sla.toml: not UTF-8 text \(byte 31"):
        load_config({"APHRODITE_SLA_CONFIG": str(f)})


def test_toml_without_tomllib_uses_tomli(tmp_path, monkeypatch):
    """Python 3.10 has no tomllib: the tomli backport (a dependency there) reads the file."""
    monkeypatch.setitem(__import__("sys").modules, "tomllib", None)  # `import tomllib` now fails
    f = tmp_path / "sla.toml"
    f.write_text("stall_after_s = 12\n")
    assert load_config({"APHRODITE_SLA_CONFIG": str(f)}).stall_after_s == 12.0


def test_serving_set_is_the_zero_code_default_and_seed_set_is_available():
    serving = [t.metric_name for t in SLAConfig().active_thresholds()]
    assert serving == ["ttft_p95", "tpot_p95", "error_rate_percent"]
    seed = [t.metric_name for t in SLAConfig(sla_set="seed").active_thresholds()]
    assert len(seed) == 7 and "request_latency_p95" in seed
    cfg = SLAConfig(disabled_slas=("tpot_p95",))
    assert [t.metric_name for t in cfg.active_thresholds()] == ["ttft_p95", "error_rate_percent"]


def test_rules_export_reports_a_bad_config_file_without_a_traceback(tmp_path):
    import subprocess
    import sys

    f = tmp_path / "sla.toml"
    f.write_bytes(b"\xff\xfe not text")
    proc = subprocess.run([sys.executable, "-m", "aphrodite_sla.cli", "rules", "export"], capture_output=True, text=True,
                          env={**__import__("os").environ, "APHRODITE_SLA_CONFIG": str(f)})
    assert proc.returncode == 2
    assert "not UTF-8 text" in proc.stderr and "Traceback" not in proc.stderr
