#!/usr/bin/env bash
# The install path the README gives, checked end to end: build the sdist and wheel (`make dist`),
# `twine check` them, install the wheel with its dependencies into a fresh venv (no checkout on its
# path), and check there that both stat-logger entry points are registered and load, and that the
# console script runs. Usage: scripts/check_wheel.sh PYTHON_OF_THE_BUILD_VENV
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}

rm -rf dist
"$PY" -m build --no-isolation --sdist --wheel --outdir dist . >/dev/null
"$PY" -m twine check --strict dist/*
wheel=$(ls dist/aphrodite_sla-*.whl)

fresh=$(mktemp -d)
trap 'rm -rf "$fresh"' EXIT
python3 -m venv "$fresh/venv"
"$fresh/venv/bin/python" -m pip install --quiet --upgrade pip
"$fresh/venv/bin/python" -m pip install --quiet "$wheel"
cd "$fresh"  # nothing of the checkout importable from here
"$fresh/venv/bin/python" - <<'PY'
import importlib
from importlib.metadata import entry_points

import aphrodite_sla

assert "site-packages" in aphrodite_sla.__file__, aphrodite_sla.__file__
expected = {
    "vllm.stat_logger_plugins": "aphrodite_sla.integrations.vllm:SLAStatLogger",
    "aphrodite.stat_logger_plugins": "aphrodite_sla.integrations.aphrodite:AphroditeProductionStatLogger",
}
for group, value in expected.items():
    found = [ep for ep in entry_points(group=group) if ep.name == "aphrodite_sla"]
    assert [ep.value for ep in found] == [value], (group, found)
    # the module imports without the engine; the class itself subclasses the engine's StatLoggerBase
    # and is built on first access inside the engine (loaded for real in tests/contract)
    module = importlib.import_module(found[0].module)
    assert found[0].attr in module.__all__, (module.__name__, module.__all__)
    print(f"{group}: {value} (module {module.__name__} imports)")
PY
"$fresh/venv/bin/aphrodite-sla" thresholds >/dev/null
echo "wheel $(basename "$wheel"): installs into a fresh venv, registers both entry points, runs"
