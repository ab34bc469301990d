"""Request traces in, :class:`~aphrodite_sla.sim.workload.TraceArrivals` out: our CSV and three
public LLM-serving trace formats.

    from aphrodite_sla.sim import load_trace, trace_scenario, time_scale_for_load
    trace = load_trace("AzureLLMInferenceTrace_conv.csv")          # format detected
    trace = trace.with_(time_scale=time_scale_for_load(trace, 0.6))  # 60% of engine capacity
    sim = EngineSimulator(trace_scenario(trace, faults=[Fault("traffic_surge", 600, 300)]))

Formats (``format=``; names and shapes only, no data is shipped with this package):

``csv`` (ours)
    A header naming at least ``arrival_time_s,prompt_tokens,output_tokens`` (other columns
    ignored), then one request per row: arrival in seconds from the start of the replay (kept as
    written, >= 0, sorted), token counts >= 1. Blank lines and lines starting with ``#`` are
    skipped (in every CSV format).

``azure``: the Azure LLM inference traces (github.com/Azure/AzurePublicDataset, e.g.
    ``AzureLLMInferenceTrace_code.csv`` / ``_conv.csv``, 2023 and 2024 releases)
    Header ``TIMESTAMP,ContextTokens,GeneratedTokens``; ``TIMESTAMP`` is a date-time such as
    ``2023-11-16 18:15:46.6805900`` (``T`` or a space between date and time, 0-9 fractional
    digits, an optional ``Z`` or ``+hh:mm`` offset). Arrivals are relative to the earliest row.
    ``GeneratedTokens`` of 0 is replayed as 1 token (an engine always produces one).

``mooncake``: the Mooncake / Kimi traces (github.com/kvcache-ai/Mooncake, ``mooncake_trace.jsonl``
    and the FAST'25 release's conversation / tool-agent / synthetic traces)
    JSON Lines: one object per line with ``timestamp`` (milliseconds), ``input_length``,
    ``output_length`` and ``hash_ids`` (the prompt's KV blocks as integer hashes; equal leading
    hashes = a shared prefix; ``hash_block_size`` tokens per block, 512 in those traces). Other
    keys are ignored. Arrivals are relative to the earliest row. The hashes drive the
    simulator's prefix cache (an LRU of block hashes bounded by the KV budget).

``burstgpt``: the BurstGPT trace (github.com/HPMLL/BurstGPT, ``BurstGPT_*.csv``)
    Header ``Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type``;
    ``Timestamp`` in seconds (may be fractional). Arrivals are relative to the earliest row. A
    row with 0 ``Response tokens`` is a request that failed in that trace: it is replayed as a
    request that finishes with ERROR at its first token (``output_tokens == 0`` in the
    :class:`TraceArrivals`), not dropped. ``Model`` and ``Log Type`` are not used.

``auto`` (the default) detects the format: a ``.jsonl`` path or a first line starting with ``{``
is ``mooncake``; otherwise the header line names it. A ``.gz`` path is read through gzip.

Rows of the public formats that are out of time order are sorted (stable); our CSV must be
sorted (an error otherwise). Prompts longer than the simulated model's context are kept: the
engine rejects them as a real server does (``EngineSimulator.rejected_too_long``).

Malformed rows: by default the first one raises :class:`TraceFormatError` (a ``ValueError``)
naming the file, the line and the column or field (``trace.csv:17: column prompt_tokens: must
be a whole number >= 1, got '0'``). ``max_bad_rows=N`` skips up to N malformed rows instead
(counted in ``TraceArrivals.skipped_rows``, the first few logged as warnings) and raises on the
(N+1)-th, with the count. A bad header, an unknown format or a trace without requests always
raises.
"""
from __future__ import annotations

import contextlib
import csv
import datetime
import gzip
import io
import json
import logging
import math
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from aphrodite_sla.sim.workload import TraceArrivals

_log = logging.getLogger(__name__)

FORMATS = ("csv", "azure", "mooncake", "burstgpt")

# canonical column names: (arrival, prompt tokens, output tokens)
CSV_COLUMNS: dict[str, tuple[str, str, str]] = {
    "csv": ("arrival_time_s", "prompt_tokens", "output_tokens"),
    "azure": ("TIMESTAMP", "ContextTokens", "GeneratedTokens"),
    "burstgpt": ("Timestamp", "Request tokens", "Response tokens"),
}
MOONCAKE_FIELDS = ("timestamp", "input_length", "output_length", "hash_ids")
DEFAULT_HASH_BLOCK_SIZE = 512
_WARN_FIRST = 3  # skipped rows logged one by one; the rest only counted


class TraceFormatError(ValueError):
    """A trace file that cannot be read: ``path``, ``line`` (1-based; None for the whole file)
    and the message (which names them too)."""

    def __init__(self, message: str, path: str, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class _BadRow(Exception):
    """A malformed row: ``detail`` names the column or field and the problem."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _norm(name: str) -> str:
    return re.sub(r"[\s_]+", "", name.strip().lower())


_SIGNATURES = {fmt: frozenset(_norm(c) for c in cols) for fmt, cols in CSV_COLUMNS.items()}


# --------------------------------------------------------------------------- entry points


def load_trace(
    source: str | os.PathLike[str] | io.TextIOBase,
    format: str = "auto",  # noqa: A002 - the natural name for the caller
    *,
    loop: bool = False,
    hash_block_size: int = DEFAULT_HASH_BLOCK_SIZE,
    max_bad_rows: int = 0,
) -> TraceArrivals:
    """Read a trace in one of :data:`FORMATS` (``"auto"`` detects it; see the module
    docstring). ``source`` is a path (``.gz`` read through gzip) or an open text file.
    ``hash_block_size``: tokens per block hash (Mooncake ``hash_ids``). ``max_bad_rows``:
    malformed rows skipped (and counted in ``skipped_rows``) before one raises.

    Raises :class:`TraceFormatError` (a ``ValueError``) naming the file, line and field."""
    if format != "auto" and format not in FORMATS:
        raise ValueError(f"unknown trace format {format!r}; known: auto, {', '.join(FORMATS)}")
    if max_bad_rows < 0:
        raise ValueError(f"max_bad_rows must be >= 0, got {max_bad_rows}")
    if hash_block_size < 1:
        raise ValueError(f"hash_block_size must be >= 1, got {hash_block_size}")
    with _open(source) as (name, fh):
        lines = _content_lines(fh)
        first = next(lines, None)
        fmt = format
        if fmt == "auto":
            fmt = _detect(name, first)
        if first is None:
            expect = "JSON object on any line" if fmt == "mooncake" else f"header line with {', '.join(CSV_COLUMNS[fmt])}"
            raise TraceFormatError(f"{name}: empty trace (no {expect})", name)
        rows = _Rows(name, fmt, max_bad_rows)
        if fmt == "mooncake":
            _read_mooncake(rows, first, lines)
        else:
            _read_csv(rows, first, lines)
    return rows.trace(loop, hash_block_size)


def detect_format(source: str | os.PathLike[str] | io.TextIOBase) -> str:
    """The format :func:`load_trace` would read ``source`` as (reads its first line only;
    an open file is consumed up to that line)."""
    with _open(source) as (name, fh):
        return _detect(name, next(_content_lines(fh), None))


# --------------------------------------------------------------------------- plumbing


@contextlib.contextmanager
def _open(source: str | os.PathLike[str] | io.TextIOBase) -> Iterator[tuple[str, Any]]:
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if name.endswith(".gz"):
            fh: Any = gzip.open(name, "rt", encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below
        else:
            fh = open(name, encoding="utf-8-sig", newline="")  # noqa: SIM115 - closed below
        with fh:
            yield name, fh
    else:
        yield str(getattr(source, "name", "<trace>")), source


def _content_lines(fh: Any) -> Iterator[tuple[int, str, str]]:
    """(line number, line, stripped line) of every line that is neither blank nor a comment."""
    for lineno, line in enumerate(fh, start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield lineno, line, stripped


def _detect(name: str, first: tuple[int, str, str] | None) -> str:
    base = name[:-3] if name.endswith(".gz") else name
    if base.endswith((".jsonl", ".ndjson")):
        return "mooncake"
    if first is None:
        raise TraceFormatError(f"{name}: empty trace (cannot detect its format)", name)
    lineno, line, stripped = first
    if stripped.startswith("{"):
        return "mooncake"
    cells = {_norm(c) for c in next(csv.reader([line]), [])}
    for fmt, sig in _SIGNATURES.items():
        if sig <= cells:
            return fmt
    raise TraceFormatError(
        f"{name}:{lineno}: cannot tell the trace format from its first line {stripped[:120]!r}; expected a CSV header "
        + "; ".join(f"{fmt}: {','.join(cols)}" for fmt, cols in CSV_COLUMNS.items())
        + " (BurstGPT's also names Model, Total tokens, Log Type), or one JSON object per line (mooncake: "
        + ", ".join(MOONCAKE_FIELDS) + ")",
        name, lineno,
    )


class _Rows:
    """Collects parsed rows; counts (and past ``max_bad`` raises on) malformed ones."""

    def __init__(self, name: str, fmt: str, max_bad: int) -> None:
        self.name, self.fmt, self.max_bad = name, fmt, max_bad
        self.times: list[float] = []
        self.prompts: list[int] = []
        self.outputs: list[int] = []
        self.hashes: list[tuple[int, ...]] = []
        self.any_hashes = False
        self.bad = 0
        self.lineno = 0

    def bad_row(self, lineno: int, detail: str) -> None:
        self.bad += 1
        msg = f"{self.name}:{lineno}: {detail}"
        if self.bad > self.max_bad:
            if self.max_bad:
                msg += f" ({self.bad} malformed rows so far, more than max_bad_rows={self.max_bad})"
            elif self.fmt != "csv":
                msg += " (load_trace(..., max_bad_rows=N) skips up to N malformed rows)"
            raise TraceFormatError(msg, self.name, lineno)
        if self.bad <= _WARN_FIRST:
            _log.warning("trace %s: skipping malformed row: %s", self.name, msg)

    def trace(self, loop: bool, hash_block_size: int) -> TraceArrivals:
        name = self.name
        if not self.times:
            raise TraceFormatError(
                f"{name}: trace has a header but no requests" if self.fmt != "mooncake" else f"{name}: trace has no requests", name,
            )
        times = np.asarray(self.times, dtype=float)
        prompts, outputs, hashes = self.prompts, self.outputs, self.hashes
        if self.fmt != "csv":
            # public traces: relative to the earliest row; out-of-order rows sorted (stable)
            if np.any(np.diff(times) < 0):
                order = np.argsort(times, kind="stable")
                times = times[order]
                pick = order.tolist()
                prompts = [prompts[i] for i in pick]
                outputs = [outputs[i] for i in pick]
                hashes = [hashes[i] for i in pick] if hashes else hashes
            times = times - times[0]
        if self.bad:
            _log.warning("trace %s: skipped %d malformed row(s) (max_bad_rows=%d)", name, self.bad, self.max_bad)
        return TraceArrivals(
            tuple(times.tolist()), tuple(prompts), tuple(outputs), loop=loop, source=name,
            block_hashes=tuple(hashes) if self.any_hashes else (), hash_block_size=hash_block_size,
            skipped_rows=self.bad,
        )


# --------------------------------------------------------------------------- CSV formats


class _Feed:
    """Feeds content lines to ``csv.reader`` and remembers the line a row came from."""

    def __init__(self, lines: Iterator[tuple[int, str, str]]) -> None:
        self._lines = lines
        self.lineno = 0
        self.text = ""

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        self.lineno, line, self.text = next(self._lines)
        return line


def _number(raw: str, col: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise _BadRow(f"column {col}: not a number: {raw!r}") from None


def _count(raw: str, col: str, minimum: int) -> int:
    v = _number(raw, col)
    if not math.isfinite(v) or v != int(v) or v < minimum:
        raise _BadRow(f"column {col}: must be a whole number >= {minimum}, got {raw!r}")
    return int(v)


def _seconds(raw: str, col: str) -> float:
    t = _number(raw, col)
    if not math.isfinite(t) or t < 0:
        raise _BadRow(f"column {col}: must be finite and >= 0, got {raw!r}")
    return t


_DATETIME = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{0,9}))?\s*(Z|[+-]\d{2}:?\d{2})?"
)
_EPOCH_DAY = datetime.date(1970, 1, 1).toordinal()


def _datetime_s(raw: str, col: str) -> tuple[int, float]:
    """A date-time as (whole seconds since 1970 UTC, fraction): kept apart so that arrival
    differences keep the trace's 100 ns resolution."""
    m = _DATETIME.fullmatch(raw)
    if m is None:
        raise _BadRow(f"column {col}: not a date-time like 2023-11-16 18:15:46.6805900: {raw!r}")
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        day = datetime.date(int(y), int(mo), int(d)).toordinal() - _EPOCH_DAY
    except ValueError:
        raise _BadRow(f"column {col}: not a valid date: {raw!r}") from None
    hh, mm, ss = int(h), int(mi), int(s)
    if hh > 23 or mm > 59 or ss > 60:
        raise _BadRow(f"column {col}: not a valid time of day: {raw!r}")
    whole = day * 86400 + hh * 3600 + mm * 60 + ss
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        whole -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return whole, (int(frac) / 10 ** len(frac) if frac else 0.0)


def _read_csv(rows: _Rows, first: tuple[int, str, str], lines: Iterator[tuple[int, str, str]]) -> None:
    name, fmt = rows.name, rows.fmt
    t_col, p_col, o_col = CSV_COLUMNS[fmt]
    lineno, line, _ = first
    header = [c.strip() for c in next(csv.reader([line]), [])]
    normed = [_norm(c) for c in header]
    missing = [c for c in (t_col, p_col, o_col) if _norm(c) not in normed]
    if missing:
        label = "" if fmt == "csv" else f"{fmt} "
        raise TraceFormatError(
            f"{name}:{lineno}: {label}trace header is missing column(s) {', '.join(missing)} "
            f"(need {', '.join((t_col, p_col, o_col))}; got {', '.join(header) or 'nothing'})",
            name, lineno,
        )
    ti, pi, oi = (normed.index(_norm(c)) for c in (t_col, p_col, o_col))
    width = len(header)
    times, prompts, outputs = rows.times, rows.prompts, rows.outputs
    feed = _Feed(lines)
    last = -math.inf
    base: int | None = None  # azure: whole seconds of the first row
    for row in csv.reader(feed):
        try:
            if len(row) != width:
                raise _BadRow(f"expected {width} fields like the header, got {len(row)}: {feed.text!r}")
            raw = row[ti].strip()
            if fmt == "azure":
                whole, frac = _datetime_s(raw, t_col)
                if base is None:
                    base = whole
                t = float(whole - base) + frac
            else:
                t = _seconds(raw, t_col)
                if fmt == "csv" and t < last:
                    raise _BadRow(
                        f"column {t_col}: {raw} is earlier than the previous arrival {last:g} (the trace must be sorted by arrival time)"
                    )
            p = _count(row[pi].strip(), p_col, 1)
            if fmt == "csv":
                o = _count(row[oi].strip(), o_col, 1)
            else:
                o = _count(row[oi].strip(), o_col, 0)
                if o == 0 and fmt == "azure":
                    o = 1  # an engine always produces one token
                # burstgpt: 0 response tokens = a failed request, kept as output 0
        except _BadRow as exc:
            rows.bad_row(feed.lineno, exc.detail)
            continue
        last = t
        times.append(t)
        prompts.append(p)
        outputs.append(o)


# --------------------------------------------------------------------------- Mooncake JSONL


def _json_count(obj: dict, key: str, minimum: int) -> int:
    if key not in obj:
        raise _BadRow(f"field {key}: missing")
    v = obj[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v != int(v) or v < minimum:
        raise _BadRow(f"field {key}: must be a whole number >= {minimum}, got {v!r}")
    return int(v)


def _read_mooncake(rows: _Rows, first: tuple[int, str, str], lines: Iterator[tuple[int, str, str]]) -> None:
    times, prompts, outputs, hashes = rows.times, rows.prompts, rows.outputs, rows.hashes
    loads = json.loads
    for lineno, _line, stripped in _chain_first(first, lines):
        try:
            try:
                obj = loads(stripped)
            except ValueError as exc:
                raise _BadRow(f"not valid JSON ({getattr(exc, 'msg', exc)} at column {getattr(exc, 'colno', '?')})") from None
            if not isinstance(obj, dict):
                raise _BadRow(f"expected a JSON object with {', '.join(MOONCAKE_FIELDS)}, got {type(obj).__name__}")
            if "timestamp" not in obj:
                raise _BadRow("field timestamp: missing")
            ts = obj["timestamp"]
            if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts) or ts < 0:
                raise _BadRow(f"field timestamp: must be a number of milliseconds >= 0, got {ts!r}")
            p = _json_count(obj, "input_length", 1)
            o = max(1, _json_count(obj, "output_length", 0))
            raw_h = obj.get("hash_ids")
            if raw_h is None:
                h: tuple[int, ...] = ()
            else:
                if not isinstance(raw_h, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in raw_h):
                    raise _BadRow(f"field hash_ids: must be a list of integers, got {str(raw_h)[:60]}")
                h = tuple(raw_h)
                rows.any_hashes = True
        except _BadRow as exc:
            rows.bad_row(lineno, exc.detail)
            continue
        times.append(ts / 1000.0)
        prompts.append(p)
        outputs.append(o)
        hashes.append(h)


# --------------------------------------------------------------------------- writing, generating


def write_trace(
    trace: TraceArrivals,
    path: str | os.PathLike[str],
    format: str = "csv",  # noqa: A002 - load_trace's name for it
    *,
    start: str = "2023-11-16 18:15:46",
) -> None:
    """Write ``trace`` in one of :data:`FORMATS` (arrival times as replayed: ``time_scale``
    applied, no thinning). ``start`` is the first arrival's date-time for ``azure``. Mooncake
    timestamps are whole milliseconds; a trace without block hashes gets unique ones (no shared
    prefixes). Failed requests (output 0) exist in ``burstgpt`` (0 response tokens) and
    ``azure`` (read back as 1 token); our ``csv`` has none and refuses them."""
    if format not in FORMATS:
        raise ValueError(f"unknown trace format {format!r}; known: {', '.join(FORMATS)}")
    times = (np.asarray(trace.arrival_s, dtype=float) * trace.time_scale).tolist()
    prompts, outputs = trace.prompt_tokens, trace.output_tokens
    name = os.fspath(path)
    opener: Any = gzip.open if name.endswith(".gz") else open
    with opener(name, "wt", encoding="utf-8", newline="") as fh:
        if format == "mooncake":
            bs = trace.hash_block_size
            next_id = 1 + max((h for hs in trace.block_hashes for h in hs), default=-1)
            for i, t in enumerate(times):
                if trace.block_hashes:
                    hs = list(trace.block_hashes[i])
                else:
                    k = -(-prompts[i] // bs)
                    hs = list(range(next_id, next_id + k))
                    next_id += k
                fh.write(json.dumps({"timestamp": round(t * 1000), "input_length": prompts[i],
                                     "output_length": outputs[i], "hash_ids": hs}) + "\n")
            return
        w = csv.writer(fh, lineterminator="\n")
        if format == "csv":
            if any(o == 0 for o in outputs):
                raise ValueError("write_trace: our csv format has no failed requests (output 0); write burstgpt instead")
            w.writerow(CSV_COLUMNS["csv"])
            w.writerows(zip((repr(t) for t in times), prompts, outputs))
        elif format == "azure":
            whole, frac = _datetime_s(start, "start")
            t0 = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=whole + frac)
            w.writerow(CSV_COLUMNS["azure"])
            for t, p, o in zip(times, prompts, outputs):
                stamp = (t0 + datetime.timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S.%f") + "0"
                w.writerow((stamp, p, o))
        else:
            w.writerow(("Timestamp", "Model", "Request tokens", "Response tokens", "Total tokens", "Log Type"))
            for t, p, o in zip(times, prompts, outputs):
                w.writerow((repr(t), "ChatGPT", p, o, p + o, "Conversation log"))


def synthetic_trace(
    duration_s: float = 3600.0,
    rate: float = 4.0,
    *,
    seed: int = 0,
    burstiness: float = 2.0,
    prompt_median: float = 1024.0,
    prompt_sigma: float = 1.1,
    output_median: float = 200.0,
    output_sigma: float = 0.8,
    follow_up_fraction: float = 0.3,
    failed_fraction: float = 0.0,
    hash_block_size: int = DEFAULT_HASH_BLOCK_SIZE,
) -> TraceArrivals:
    """A generated trace in the shape of the public ones: gamma inter-arrival gaps with
    coefficient of variation ``burstiness`` (1 = Poisson; public traces are burstier), lognormal
    (heavy-tailed) prompt and output lengths, and block hashes with conversational prefix reuse:
    a ``follow_up_fraction`` of requests continue an earlier conversation (its prompt + output
    are their prefix, same hashes). ``failed_fraction`` of requests are recorded as failed
    (output 0, as in BurstGPT)."""
    rng = np.random.default_rng(seed)
    n = max(1, int(rate * duration_s * 1.2) + 16)
    k = 1.0 / burstiness**2
    gaps = rng.gamma(k, 1.0 / (k * rate), n)
    times = np.cumsum(gaps) - gaps[0]
    times = times[times <= duration_s]
    n = len(times)
    fresh = np.maximum(1, rng.lognormal(math.log(prompt_median), prompt_sigma, n)).astype(int)
    outs = np.maximum(1, rng.lognormal(math.log(output_median), output_sigma, n)).astype(int)
    outs[rng.random(n) < failed_fraction] = 0
    follow = rng.random(n) < follow_up_fraction
    pick = rng.random(n)
    prompts: list[int] = []
    hashes: list[tuple[int, ...]] = []
    sessions: list[tuple[tuple[int, ...], int]] = []  # (hashes of the shared full blocks, context tokens)
    next_id = 0
    bs = hash_block_size
    for i in range(n):
        prefix: tuple[int, ...] = ()
        ctx = 0
        if follow[i] and sessions:
            j = int(pick[i] * len(sessions))
            prefix, ctx = sessions[j]
        p = ctx + int(fresh[i])
        n_blocks = -(-p // bs)
        own = tuple(range(next_id, next_id + n_blocks - len(prefix)))
        next_id += len(own)
        hs = prefix + own
        prompts.append(p)
        hashes.append(hs)
        entry = (hs[: p // bs], p + int(outs[i]))  # the next turn shares the prompt's full blocks
        if follow[i] and sessions:
            sessions[j] = entry
        else:
            sessions.append(entry)
    return TraceArrivals(
        tuple(times.tolist()), tuple(prompts), tuple(outs.tolist()), source=f"synthetic(rate={rate:g}, seed={seed})",
        block_hashes=tuple(hashes), hash_block_size=hash_block_size,
    )


def _chain_first(first: tuple[int, str, str], rest: Iterator[tuple[int, str, str]]) -> Iterator[tuple[int, str, str]]:
    yield first
    yield from rest


__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_HASH_BLOCK_SIZE",
    "FORMATS",
    "MOONCAKE_FIELDS",
    "TraceFormatError",
    "detect_format",
    "load_trace",
    "synthetic_trace",
    "write_trace",
]
