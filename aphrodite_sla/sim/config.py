"""The simulated engine's configuration ("the model") and a scenario (data only)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from aphrodite_sla.sim.faults import Fault
from aphrodite_sla.sim.workload import Workload


@dataclass(frozen=True)
class EngineConfig:
    """Scheduler limits and the step-time model.

    One engine step runs every decoding request for one token plus up to
    ``max_num_batched_tokens`` (chunked) prefill tokens, and takes

        step_s = (step_base_s + decode_s_per_seq * decode_seqs
                  + attention_s_per_ctx_token * context_tokens_of_decoding_seqs
                  + prefill_s_per_token * prefill_tokens) * jitter

    ``jitter`` is lognormal with sigma ``step_jitter``. The defaults describe a fictional
    mid-size model on one GPU: at 40 req/s with prompts of median 512 and outputs of median 128
    tokens a step takes ~10 ms with ~50-60 requests running, the engine is ~20% busy on
    token work (so a 2x slower step roughly doubles latency without running away), KV usage is
    ~30-40% and the e2e latency has a p50 around 1.5 s and p95/p99 of ~3.5 s / ~5 s.
    """

    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    block_size: int = 16
    num_gpu_blocks: int = 8192
    max_model_len: int = 8192
    step_base_s: float = 0.008
    prefill_s_per_token: float = 3.5e-6
    decode_s_per_seq: float = 1.0e-5
    attention_s_per_ctx_token: float = 5.0e-9
    step_jitter: float = 0.03
    stall_tick_s: float = 0.05
    idle_tick_max_s: float = 0.5
    process_memory_bytes: int = 3 * 1024**3

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1 or self.block_size < 1 or self.max_model_len < 2:
            raise ValueError("EngineConfig: max_num_seqs, block_size >= 1 and max_model_len >= 2 required")
        if self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                "EngineConfig: max_num_batched_tokens must be >= max_num_seqs (as vLLM requires), "
                f"got {self.max_num_batched_tokens} < {self.max_num_seqs}"
            )
        if self.num_gpu_blocks * self.block_size < self.max_model_len + 1:
            raise ValueError("EngineConfig: the KV cache must hold at least one max_model_len request")
        for name in ("step_base_s", "stall_tick_s", "idle_tick_max_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"EngineConfig.{name} must be > 0")
        for name in ("prefill_s_per_token", "decode_s_per_seq", "attention_s_per_ctx_token", "step_jitter"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"EngineConfig.{name} must be >= 0")

    @property
    def min_blocks(self) -> int:
        """The fewest KV blocks the engine keeps usable (one max_model_len request + 1)."""
        return -(-(self.max_model_len + 1) // self.block_size)


@dataclass(frozen=True)
class Scenario:
    """A named simulation: workload, faults (start times in engine seconds), default length."""

    name: str
    description: str
    duration_s: float
    workload: Workload = field(default_factory=Workload)
    faults: tuple[Fault, ...] = ()
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        if not (self.duration_s > 0 and math.isfinite(self.duration_s)):
            raise ValueError(f"Scenario {self.name!r}: duration_s must be finite and > 0")
        object.__setattr__(self, "faults", tuple(self.faults))

    def with_(self, **changes) -> Scenario:
        """A copy with fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


__all__ = ["EngineConfig", "Scenario"]
