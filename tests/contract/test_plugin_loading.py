"""The engines' real plugin loaders find our StatLogger through the entry points that the
(editable) install of this package registers, and the engines' allow-list variables
(``VLLM_PLUGINS`` / ``APHRODITE_PLUGINS``) switch it off."""
from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

PLUGIN_NAME = "aphrodite_sla"


def _ours_in(factories, engine):
    return [f for f in factories if f is engine.Ours]


def test_entry_point_is_registered(engine):
    eps = {ep.name: ep for ep in entry_points(group=engine.group)}
    assert PLUGIN_NAME in eps, (
        f"no {engine.group!r} entry point named {PLUGIN_NAME!r}: reinstall the package in this venv "
        "(scripts/engine_venv.sh re-runs `pip install -e . --no-deps` when pyproject.toml changed)"
    )
    assert eps[PLUGIN_NAME].load() is engine.Ours


def test_real_loader_finds_our_logger(engine, plugin_env):
    plugin_env(engine, None)  # unset: every plugin of the group loads
    factories = engine.load_factories()
    assert _ours_in(factories, engine), factories
    # what the loader requires of it (it raises TypeError otherwise)
    assert isinstance(engine.Ours, type) and issubclass(engine.Ours, engine.StatLoggerBase)


@pytest.mark.parametrize(
    ("value", "loaded"),
    [
        ("aphrodite_sla", True),
        ("some_other_plugin,aphrodite_sla", True),
        ("some_other_plugin", False),
        ("", False),  # set but empty: no plugin of any group loads
        ("some_other_plugin, aphrodite_sla", False),  # not stripped: " aphrodite_sla" does not match
        ("APHRODITE_SLA", False),  # case-sensitive
    ],
)
def test_allow_list_variable(engine, plugin_env, value, loaded):
    plugin_env(engine, value)
    assert bool(_ours_in(engine.load_factories(), engine)) is loaded


def test_loaded_factory_works_in_the_real_manager(engine, plugin_env, runtime, samples):
    """What AsyncLLM does: custom loggers = user's + load_stat_logger_plugin_factories()."""
    plugin_env(engine, None)
    manager = engine.StatLoggerManager(engine.config(model="from-plugin"), engine_idxs=[0],
                                       custom_stat_loggers=engine.load_factories(), enable_default_loggers=False)
    manager.log_engine_initialized()
    manager.record(*engine.step(running=1, ttfts=[0.042]), engine_idx=0)
    runtime.recorder.flush()
    assert samples(runtime.manager.store, "ttft_ms") == pytest.approx([42.0])


def test_importing_the_package_does_not_import_an_engine(vllm_api, aphrodite_api):
    """``import aphrodite_sla`` and importing both integration modules (without touching the
    StatLogger classes) import neither engine nor torch; each class imports its own engine only."""
    code = (
        "import sys\n"
        "import aphrodite_sla, aphrodite_sla.runtime\n"
        "from aphrodite_sla.integrations import vllm as v, aphrodite as a\n"
        "loaded = lambda: [m for m in ('vllm', 'aphrodite', 'torch') if m in sys.modules]\n"
        "assert not loaded(), loaded()\n"
        "a.AphroditeProductionStatLogger\n"
        "assert 'aphrodite' in sys.modules and 'vllm' not in sys.modules, loaded()\n"
        "v.SLAStatLogger\n"
        "assert 'vllm' in sys.modules\n"
        "print('ok')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("APHRODITE_SLA_")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
