"""Contract tests against the real engines (vLLM 0.32.0, aphrodite-engine 0.24.1).

Run them in the engine venv (``scripts/engine_venv.sh`` builds it):

    .venv-engines/bin/python -m pytest tests/contract

The main test run never collects this folder (``--ignore=tests/contract`` in pyproject's pytest
``addopts``; an explicit ``pytest tests/contract`` still runs it). Without an engine the tests
skip, naming what is missing; with ``SLA_CONTRACT_REQUIRE_ENGINES=1`` (CI) they fail instead.

Everything the tests share lives here as fixtures (this folder holds tests and this conftest only):
``engine`` is parametrized over both engines and carries the engine's real classes plus helpers
that build a config and real stats objects, so each contract is written once and checked twice.
"""
from __future__ import annotations

import importlib
import math
import os
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")

REQUIRE_ENGINES = os.environ.get("SLA_CONTRACT_REQUIRE_ENGINES", "").strip().lower() in ("1", "true", "yes")
NS = types.SimpleNamespace

ENGINES: dict[str, dict[str, str]] = {
    "vllm": {
        "pkg": "vllm",
        "dist": "vllm==0.32.0",
        "ours": "aphrodite_sla.integrations.vllm:SLAStatLogger",
        "group": "vllm.stat_logger_plugins",
        "allowlist": "VLLM_PLUGINS",
        "prefix": "vllm:",
    },
    "aphrodite": {
        "pkg": "aphrodite",
        "dist": "aphrodite-engine==0.24.1",
        "ours": "aphrodite_sla.integrations.aphrodite:AphroditeProductionStatLogger",
        "group": "aphrodite.stat_logger_plugins",
        "allowlist": "APHRODITE_PLUGINS",
        "prefix": "aphrodite:",
    },
}

_loaded: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    # torch's own import-time deprecations, not ours
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:torch.*")


def _unavailable(name: str, error: str) -> None:
    msg = (
        f"{ENGINES[name]['dist']} is not importable here ({error}). Build the engine venv with "
        "`scripts/engine_venv.sh` and run `.venv-engines/bin/python -m pytest tests/contract`."
    )
    if REQUIRE_ENGINES:
        pytest.fail(f"SLA_CONTRACT_REQUIRE_ENGINES=1: {msg}", pytrace=False)
    pytest.skip(msg)


def _load(name: str) -> NS:
    """The engine's real metrics API, imported once per session (vLLM takes ~5 s)."""
    if name in _loaded:
        value = _loaded[name]
        if isinstance(value, str):
            _unavailable(name, value)
        return value
    info = ENGINES[name]
    pkg = info["pkg"]
    try:
        loggers = importlib.import_module(f"{pkg}.v1.metrics.loggers")
        stats = importlib.import_module(f"{pkg}.v1.metrics.stats")
        engine_mod = importlib.import_module(f"{pkg}.v1.engine")
        plugins = importlib.import_module(f"{pkg}.plugins")
        envs = importlib.import_module(f"{pkg}.envs")
        top = importlib.import_module(pkg)
    except Exception as err:
        _loaded[name] = f"{type(err).__name__}: {err}"
        _unavailable(name, _loaded[name])
    module_name, _, class_name = info["ours"].partition(":")
    ours = getattr(importlib.import_module(module_name), class_name)
    api = NS(
        name=name,
        version=getattr(top, "__version__", "?"),
        loggers=loggers,
        stats=stats,
        plugins=plugins,
        envs=envs,
        FinishReason=engine_mod.FinishReason,
        StatLoggerManager=loggers.StatLoggerManager,
        StatLoggerBase=loggers.StatLoggerBase,
        PrometheusStatLogger=loggers.PrometheusStatLogger,
        load_factories=loggers.load_stat_logger_plugin_factories,
        SchedulerStats=stats.SchedulerStats,
        IterationStats=stats.IterationStats,
        FinishedRequestStats=stats.FinishedRequestStats,
        PrefixCacheStats=stats.PrefixCacheStats,
        Ours=ours,
        group=info["group"],
        allowlist=info["allowlist"],
        prefix=info["prefix"],
        config=make_config,
        step=lambda **kw: make_step(api, **kw),
        finished=lambda reason, **kw: api.FinishedRequestStats(finish_reason=getattr(api.FinishReason, reason), **kw),
    )
    _loaded[name] = api
    return api


def make_config(model: str = "contract-model", num_gpu_blocks: int = 1000) -> NS:
    """A stand-in engine config with what ``StatLoggerManager`` + ``PrometheusStatLogger`` read
    (shared ENGINES.md): a real ``VllmConfig`` has no model config on a CPU-only machine."""
    return NS(
        model_config=NS(served_model_name=model, model=f"org/{model}", max_model_len=4096, is_diffusion=False),
        observability_config=NS(
            show_hidden_metrics=False, kv_cache_metrics=False, custom_histogram_buckets=None,
            cudagraph_metrics=False, enable_mfu_metrics=False,
        ),
        speculative_config=None, kv_transfer_config=None, ec_transfer_config=None, lora_config=None,
        watermark_config=None,
        cache_config=NS(num_gpu_blocks=num_gpu_blocks, metrics_info=lambda: {"block_size": "16"}),
        device_config=NS(device_type="cpu"),
    )


def make_step(
    api: NS,
    *,
    running: int = 0,
    waiting: int = 0,
    kv: float = 0.0,
    prefix: tuple[int, int, int] | None = None,
    ttfts: list[float] = (),  # type: ignore[assignment]
    itls: list[float] = (),  # type: ignore[assignment]
    gen_tokens: int = 0,
    prompt_tokens: int = 0,
    preempted: int = 0,
    finished: list[Any] = (),  # type: ignore[assignment]
) -> tuple[Any, Any]:
    """A real (SchedulerStats, IterationStats) pair; ``prefix`` = (requests, queries, hits)."""
    sched = api.SchedulerStats(num_running_reqs=running, num_waiting_reqs=waiting, kv_cache_usage=kv)
    if prefix is not None:
        sched.prefix_cache_stats = api.PrefixCacheStats(requests=prefix[0], queries=prefix[1], hits=prefix[2])
    it = api.IterationStats()
    it.time_to_first_tokens_iter = list(ttfts)
    it.inter_token_latencies_iter = list(itls)
    it.num_generation_tokens = gen_tokens
    it.prompt_token_stats.total = prompt_tokens
    it.prompt_token_stats.computed = prompt_tokens
    it.num_preempted_reqs = preempted
    it.finished_requests = list(finished)
    return sched, it


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest) -> NS:
    """Each engine's real metrics API (skips or fails, see module doc, when it cannot import)."""
    return _load(request.param)


@pytest.fixture
def vllm_api() -> NS:
    return _load("vllm")


@pytest.fixture
def aphrodite_api() -> NS:
    return _load("aphrodite")


@pytest.fixture(autouse=True)
def clean_sla_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``APHRODITE_SLA_*`` variable from outside reaches the runtime's configuration: each test
    states the configuration it needs (an unknown variable would make the runtime fall back to the
    defaults)."""
    for key in list(os.environ):
        if key.startswith("APHRODITE_SLA_"):
            monkeypatch.delenv(key)


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh process runtime (default configuration, no system sampler), reset afterwards."""
    from aphrodite_sla import runtime as runtime_mod

    monkeypatch.setenv("APHRODITE_SLA_SYSTEM_SAMPLER", "0")
    runtime_mod.reset_runtime()
    rt = runtime_mod.get_runtime()
    assert rt.info.config_error is None, rt.info.config_error
    yield rt
    runtime_mod.reset_runtime()


@pytest.fixture
def samples() -> Callable[[Any, str], list[float]]:
    """``samples(store, name)``: every value held for a series, oldest first."""

    def read(store: Any, name: str) -> list[float]:
        buf = store.buffer(name)
        assert buf is not None, f"series {name!r} is not registered"
        return buf.window(-math.inf, math.inf)[1].tolist()

    return read


@pytest.fixture
def plugin_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[NS, str | None], None]:
    """``plugin_env(engine, value)``: set (or with None unset) the engine's plugin allow-list
    variable, bypassing the engine's env cache if a previous test turned it on."""

    def set_(api: NS, value: str | None) -> None:
        disable = getattr(api.envs, "disable_envs_cache", None)
        if callable(disable):
            disable()
        if value is None:
            monkeypatch.delenv(api.allowlist, raising=False)
        else:
            monkeypatch.setenv(api.allowlist, value)

    return set_
