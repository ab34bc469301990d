#!/usr/bin/env bash
# Build (or reuse) a separate virtual environment with the real engines, for the contract tests
# (tests/contract) and benchmarks/bench_statlogger.py:
#
#   scripts/engine_venv.sh [DIR]          # DIR defaults to .venv-engines (in the repo root)
#   DIR/bin/python -m pytest tests/contract
#
# It installs vLLM 0.32.0 and aphrodite-engine 0.24.1 WITHOUT their dependency trees (a full
# `pip install vllm` pulls ~5.8 GB of CUDA wheels and its PyPI torchvision/torchaudio then break
# `import vllm` on a CPU machine), a CPU build of torch, and just the packages the engines'
# `v1/metrics` modules and their import chain need (see shared ENGINES.md). Then this package
# editable (--no-deps) plus its runtime and test dependencies.
#
# Idempotent: the engine part is stamped (DIR/.engines-installed, holding the spec below) and
# reused when the spec is unchanged; the editable install of this package is redone whenever
# pyproject.toml is newer than its own stamp (entry points live in the installed metadata, so a
# new [project.entry-points] table needs a reinstall).
#
# Environment: PYTHON (interpreter for the venv, default python3; torch 2.13.0 wheels are
# cp310-cp313), ENGINE_VENV_ALLOW_CUDA_TORCH=1 to skip the CPU-torch guard.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
DIR="${1:-.venv-engines}"
PYTHON="${PYTHON:-python3}"

VLLM_VERSION="0.32.0"
APHRODITE_VERSION="0.24.1"
TORCH_VERSION="2.13.0"
XGRAMMAR_VERSION="0.2.8"
# Imported somewhere on the path from `import vllm` / `import aphrodite` to v1.metrics.loggers.
ENGINE_IMPORT_DEPS=(packaging prometheus_client pydantic regex numpy cbor2 psutil pyzmq urllib3
  transformers aiohttp requests openai-harmony openai pillow pybase64 cachetools msgspec
  cloudpickle uvloop py-cpuinfo fastapi partial_json_parser llguidance)
# Ours: runtime dependencies of aphrodite-sla (pyproject [project].dependencies) and test tools.
OUR_DEPS=(numpy scipy numba prometheus-client psutil nvidia-ml-py sqlalchemy markdown-it-py pytest pytest-asyncio hypothesis)

SPEC="vllm==$VLLM_VERSION aphrodite-engine==$APHRODITE_VERSION torch==$TORCH_VERSION(cpu) xgrammar==$XGRAMMAR_VERSION ${ENGINE_IMPORT_DEPS[*]} ${OUR_DEPS[*]}"
ENGINE_STAMP="$DIR/.engines-installed"
OURS_STAMP="$DIR/.aphrodite-sla-installed"

START=$(date +%s)
say() { printf '[engine_venv] %s\n' "$*"; }
die() { printf '[engine_venv] ERROR: %s\n' "$*" >&2; exit 1; }

PY="$DIR/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
LOG="$DIR/install.log"
# pip's output goes to $LOG (installing with --no-deps makes it list every engine requirement
# it skipped, by design); on failure its tail is shown.
pipq() {
  "${PIP[@]}" "$@" >>"$LOG" 2>&1 || { tail -n 40 "$LOG" >&2; die "pip $* failed (full log: $LOG)"; }
}

if [[ -f "$ENGINE_STAMP" && "$(cat "$ENGINE_STAMP")" == "$SPEC" && -x "$PY" ]]; then
  say "reusing $DIR (engines already installed; remove $ENGINE_STAMP to rebuild)"
else
  if [[ ! -x "$PY" ]]; then
    say "creating venv $DIR with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$DIR"
  fi
  rm -f "$ENGINE_STAMP" "$OURS_STAMP"
  : >"$LOG"
  say "pip output: $LOG"
  pipq install --upgrade pip

  say "vllm==$VLLM_VERSION and aphrodite-engine==$APHRODITE_VERSION (no dependencies)"
  pipq install --no-deps "vllm==$VLLM_VERSION" "aphrodite-engine==$APHRODITE_VERSION"

  # torch: must be a CPU build. pip prefers 2.13.0+cpu (a local wheel here) over PyPI's 2.13.0
  # (CUDA, ~900 MB plus ~3 GB of nvidia-* wheels) only if that wheel is on its find-links; check
  # what it would do before it does it.
  installed_torch="$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true)"
  if [[ "$installed_torch" == "$TORCH_VERSION+cpu" ]]; then
    say "torch $installed_torch already installed"
  else
    say "checking which torch==$TORCH_VERSION pip would install"
    REPORT="$(mktemp)"
    pipq install --dry-run --ignore-installed --report "$REPORT" "torch==$TORCH_VERSION"
    PLAN="$("$PY" - "$REPORT" <<'EOF'
import json, sys
items = json.load(open(sys.argv[1]))["install"]
for it in items:
    md = it["metadata"]
    print(md["name"].lower(), md["version"], it["download_info"]["url"])
EOF
)"
    rm -f "$REPORT"
    torch_line="$(grep -E '^torch ' <<<"$PLAN" || true)"
    cuda_lines="$(grep -E '^(nvidia-|triton |cuda-)' <<<"$PLAN" || true)"
    say "pip plans: $torch_line"
    if [[ "${ENGINE_VENV_ALLOW_CUDA_TORCH:-0}" != "1" ]]; then
      if [[ "$torch_line" != *"+cpu"* || -n "$cuda_lines" ]]; then
        die "pip would install a CUDA build of torch (${torch_line:-none found}${cuda_lines:+; plus $(wc -l <<<"$cuda_lines") CUDA wheels}).
  Install a CPU build of torch==$TORCH_VERSION into $DIR first (PyTorch publishes +cpu wheels on
  its own CPU wheel index), or put its wheel in a pip find-links folder (this project's machines
  have /opt/wheels/torch-$TORCH_VERSION+cpu-*.whl there), or set ENGINE_VENV_ALLOW_CUDA_TORCH=1
  to accept the CUDA build (~4 GB more)."
      fi
    fi
    pipq install "torch==$TORCH_VERSION"
  fi
  torch_now="$("$PY" -c 'import importlib.metadata as m; print(m.version("torch"))')"
  CONSTRAINTS="$DIR/constraints.txt"
  printf 'torch==%s\n' "$torch_now" > "$CONSTRAINTS"  # nothing below may replace it

  say "engine import dependencies and ours (one resolve, so numpy suits numba too)"
  pipq install -c "$CONSTRAINTS" "${ENGINE_IMPORT_DEPS[@]}" "${OUR_DEPS[@]}"
  pipq install --no-deps "xgrammar==$XGRAMMAR_VERSION" apache-tvm-ffi

  say "checking the engines' metrics modules import"
  VLLM_TARGET_DEVICE=cpu "$PY" -c '
import vllm, aphrodite, torch
from vllm.v1.metrics.loggers import StatLoggerManager, PrometheusStatLogger, StatLoggerBase
from vllm.v1.metrics.stats import SchedulerStats, IterationStats, FinishedRequestStats
from aphrodite.v1.metrics.loggers import StatLoggerBase as A
from aphrodite.v1.metrics.stats import SchedulerStats as AS
assert "+cpu" in torch.__version__ or torch.version.cuda is None, torch.__version__
print("[engine_venv] vllm", vllm.__version__, "| aphrodite", getattr(aphrodite, "__version__", "?"), "| torch", torch.__version__)
' || die "the engines do not import; see the traceback above"
  printf '%s' "$SPEC" > "$ENGINE_STAMP"
fi

if [[ ! -f "$OURS_STAMP" || pyproject.toml -nt "$OURS_STAMP" ]]; then
  say "pip install -e . --no-deps (aphrodite-sla, registers the stat-logger entry points)"
  [[ -f "$LOG" ]] || : >"$LOG"
  pipq install --no-deps -e .
  touch "$OURS_STAMP"
fi

END=$(date +%s)
say "ready: $DIR ($(du -sh "$DIR" | cut -f1)) in $((END - START)) s"
say "run:   $DIR/bin/python -m pytest tests/contract"
