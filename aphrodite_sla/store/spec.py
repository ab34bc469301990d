"""What a metric series is (its spec) and why a sample can be refused (drop reasons)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum


class DropReason(str, Enum):
    """Why ``record`` refused a sample. Every refusal is counted per metric and reason."""

    NAN = "nan"
    INFINITE = "infinite"
    NEGATIVE = "negative"
    OUT_OF_RANGE = "out_of_range"
    NOT_A_NUMBER = "not_a_number"
    UNKNOWN_METRIC = "unknown_metric"
    BAD_TIMESTAMP = "bad_timestamp"
    OUT_OF_ORDER = "out_of_order"


@dataclass(frozen=True)
class MetricSpec:
    """A recorded series. Its ring holds ``window_seconds * sample_rate_hz`` samples. Arriving
    faster, a ``thin`` series keeps a uniform random share of its samples so the ring still covers
    the whole window (``store.thinning``: for distributions read as quantiles or means); any other
    series then holds only the newest samples (counted as ``evicted_in_window``, and its window
    coverage falls below 1): raise its rate."""

    name: str
    window_seconds: float
    sample_rate_hz: float = 10.0
    allow_negative: bool = False
    max_value: float = math.inf
    unit: str = ""
    thin: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"MetricSpec.name: must be a non-empty string, got {self.name!r}")
        for field_name in ("window_seconds", "sample_rate_hz"):
            value = getattr(self, field_name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"MetricSpec.{field_name}: must be a finite number > 0, got {value!r}")
        if not isinstance(self.max_value, (int, float)) or math.isnan(self.max_value):
            raise ValueError(f"MetricSpec.max_value: must be a number, got {self.max_value!r}")

    @property
    def capacity(self) -> int:
        return max(16, int(math.ceil(self.window_seconds * self.sample_rate_hz)))
