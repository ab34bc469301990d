"""EngineStatsRecorder: engine stats to samples; bad stats never raise and are counted."""
import math
from enum import Enum
from types import SimpleNamespace as NS

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aphrodite_sla import ManualClock, SLAManager
from aphrodite_sla.integrations.engine_stats import EngineStatsRecorder, ServiceObjectives


class FinishReason(Enum):
    STOP = 0
    LENGTH = 1
    ABORT = 2
    ERROR = 3


def finished(reason=FinishReason.STOP, e2e=1.2, queued=0.1, prefill=0.2, decode=0.9, tpot=0.03, gen=30):
    return NS(
        finish_reason=reason, e2e_latency=e2e, queued_time=queued, prefill_time=prefill, decode_time=decode,
        inference_time=prefill + decode, mean_time_per_output_token=tpot, num_generation_tokens=gen,
        num_prompt_tokens=100, is_corrupted=False,
    )


def step(ttfts=(0.05,), itls=(0.02, 0.03), done=(), gen=10, running=4, kv=0.5):
    sched = NS(num_running_reqs=running, num_waiting_reqs=1, kv_cache_usage=kv,
               prefix_cache_stats=NS(requests=2, queries=100, hits=40))
    it = NS(iteration_timestamp=0.0, num_generation_tokens=gen, num_prompt_tokens=200, num_preempted_reqs=0,
            time_to_first_tokens_iter=list(ttfts), inter_token_latencies_iter=list(itls),
            finished_requests=list(done), num_corrupted_reqs=0)
    return sched, it


def make(objectives=None):
    clock = ManualClock(1000.0)
    mgr = SLAManager([], clock=clock, anomaly_detection=False)
    return clock, mgr, EngineStatsRecorder(mgr, objectives=objectives)


def values(mgr, name):
    return mgr.store.buffer(name).window(-math.inf, math.inf)[1].tolist()


def test_record_only_stages_and_flush_converts_units():
    clock, mgr, rec = make()
    rec.record(*step(done=[finished(), finished(FinishReason.ERROR, e2e=3.0)]))
    assert mgr.store.buffer("ttft_ms").count == 0  # nothing extracted on the hot path
    assert rec.flush() == 1
    assert values(mgr, "ttft_ms") == [50.0]
    assert values(mgr, "itl_ms") == [20.0, 30.0]
    assert values(mgr, "request_latency_ms") == [1200.0, 3000.0]
    assert values(mgr, "request_error_percent") == [0.0, 100.0]
    assert values(mgr, "queue_time_ms") == [100.0, 100.0]
    assert values(mgr, "tpot_ms") == [30.0, 30.0]
    assert values(mgr, "kv_cache_usage_percent") == [50.0]
    assert values(mgr, "num_running_reqs") == [4.0]
    assert values(mgr, "prefix_cache_hits") == [40.0]
    assert values(mgr, "finished_requests") == [1.0, 1.0]
    assert values(mgr, "goodput_requests") == [1.0]  # the error does not count


def test_goodput_needs_both_objectives():
    clock, mgr, rec = make(ServiceObjectives(ttft_ms=250.0, tpot_ms=50.0))
    rec.record(*step(done=[
        finished(queued=0.1, prefill=0.1, tpot=0.04),   # ttft 200, tpot 40: good
        finished(queued=0.2, prefill=0.1, tpot=0.04),   # ttft 300: bad
        finished(queued=0.1, prefill=0.1, tpot=0.06),   # tpot 60: bad
    ]))
    rec.flush()
    assert sum(values(mgr, "goodput_requests")) == 1.0
    assert len(values(mgr, "finished_requests")) == 3


def test_abort_counts_as_error_only_when_configured():
    for abort_is_error, expected in ((False, [0.0]), (True, [100.0])):
        _, mgr, rec = make(ServiceObjectives(abort_is_error=abort_is_error))
        rec.record(*step(done=[finished(FinishReason.ABORT)]))
        rec.flush()
        assert values(mgr, "request_error_percent") == expected


def test_throughput_gauge_is_sampled_only_while_busy():
    clock, mgr, rec = make()
    for _ in range(50):  # busy: 10 tokens every 0.1 s = 100 tokens/s
        clock.advance(0.1)
        rec.record(*step(gen=10, running=4))
    for _ in range(50):  # idle: nothing running, no tokens
        clock.advance(0.1)
        rec.record(*step(gen=0, running=0, ttfts=(), itls=()))
    rec.flush()
    tps = values(mgr, "tokens_per_second")
    # four busy seconds at 100 tokens/s, one second that turned idle half-way, no idle samples
    assert len(tps) == 5
    assert all(abs(v - 100.0) < 1e-6 for v in tps[:4])
    assert 0 < tps[4] < 100


def test_flush_runs_before_each_evaluation():
    clock, mgr, rec = make()
    rec.record(*step())
    mgr.evaluate()
    assert values(mgr, "itl_ms") == [20.0, 30.0]


def test_staging_is_bounded_without_an_evaluator_and_never_flushes_on_the_engine_thread():
    """A 512-step inline flush on the engine's thread took 15.6 ms above ~100 steps/s: record()
    never flushes; without an evaluator the oldest steps beyond the bound go, counted."""
    clock = ManualClock(1000.0)
    mgr = SLAManager(clock=clock, anomaly_detection=False)
    rec = EngineStatsRecorder(mgr, max_staged_steps=10)
    for _ in range(35):
        rec.record(*step())
    assert len(rec._staged) == 10 and rec.counters.steps_flushed == 0 and rec.counters.dropped_steps == 25
    assert rec.flush() == 10 and rec.counters.steps_flushed == 10


def test_timestamps_are_the_record_times():
    clock, mgr, rec = make()
    rec.record(*step())
    clock.advance(3.0)
    rec.record(*step())
    rec.flush()
    times = mgr.store.buffer("itl_ms").window(-math.inf, math.inf)[0].tolist()
    assert times == [1000.0, 1000.0, 1003.0, 1003.0]


junk = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6),
                 st.text(max_size=3), st.lists(st.floats(allow_nan=True), max_size=3))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sched_fields=st.dictionaries(st.sampled_from(["num_running_reqs", "num_waiting_reqs", "kv_cache_usage", "prefix_cache_stats"]), junk),
    it_fields=st.dictionaries(
        st.sampled_from(["num_generation_tokens", "num_prompt_tokens", "num_preempted_reqs",
                         "time_to_first_tokens_iter", "inter_token_latencies_iter", "finished_requests"]),
        junk,
    ),
    req_fields=st.dictionaries(st.sampled_from(["finish_reason", "e2e_latency", "queued_time", "prefill_time",
                                                "decode_time", "mean_time_per_output_token", "num_generation_tokens",
                                                "is_corrupted"]), junk),
    none_sched=st.booleans(),
)
def test_garbage_stats_never_raise(sched_fields, it_fields, req_fields, none_sched):
    _, mgr, rec = make()
    sched = None if none_sched else NS(**sched_fields)
    it = NS(**it_fields)
    if "finished_requests" not in it_fields:
        it.finished_requests = [NS(**req_fields)]
    rec.record(sched, it)
    rec.record(object(), object())
    rec.record(None, None)
    rec.flush()
    mgr.evaluate()
    assert rec.counters.record_errors == 0
    assert rec.counters.steps_flushed == 3
    # every stored value is finite and non-negative: the rest was dropped and counted
    for name in mgr.store.names():
        vals = np.array(values(mgr, name))
        assert np.all(np.isfinite(vals)) and np.all(vals >= 0)


def test_one_bad_value_costs_only_itself():
    """A value whose float() raises something unexpected (or a string) made the whole column's
    conversion raise: every staged step of that series and the series after it were lost, counted
    as one hook error and zero drops."""

    class Weird:
        def __float__(self):
            raise RuntimeError("not today")

    clock, mgr, rec = make()
    good = step()
    bad_sched, bad_it = step()
    bad_it.inter_token_latencies_iter = [0.02, Weird(), "0.5", 0.03]
    rec.record(*good)
    rec.record(bad_sched, bad_it)
    rec.record(*good)
    mgr.evaluate()
    assert values(mgr, "itl_ms") == [20.0, 30.0, 20.0, 30.0, 20.0, 30.0]
    dropped = {reason.value: n for (name, reason), n in mgr.store.dropped().items() if name == "itl_ms"}
    assert dropped == {"nan": 2}  # each bad value counted, the rest kept
    assert values(mgr, "kv_cache_usage_percent") == [50.0, 50.0, 50.0]  # the series after it too
    assert mgr.evaluator_stats.callback_errors == 0


def test_varying_engine_indices_do_not_grow_the_counters_without_bound():
    clock, mgr, rec = make()
    for idx in range(1000):
        rec.record(*step(), engine_idx=idx)
    rec.flush()
    per = rec.counters.per_engine_steps
    assert len(per) == 65 and per[-1] == 1000 - 64 and sum(per.values()) == 1000


def test_a_flush_racing_the_engine_loses_no_step():
    """flush() swapped the staged deque out and iterated it while the engine could still append to
    it: such a step was lost (or the iteration raised). Steps are now popped one by one."""
    import threading

    clock = ManualClock(1000.0)
    mgr = SLAManager(clock=clock, anomaly_detection=False)
    rec = EngineStatsRecorder(mgr, max_staged_steps=1_000_000)
    stop = threading.Event()
    flushed = []

    def flusher() -> None:
        while not stop.is_set():
            flushed.append(rec.flush())

    t = threading.Thread(target=flusher)
    t.start()
    for _ in range(20_000):
        rec.record(*step())
    stop.set()
    t.join()
    flushed.append(rec.flush())
    c = rec.counters
    assert sum(flushed) == 20_000 == c.steps_recorded == c.steps_flushed
    assert c.dropped_steps == 0 and c.bad_steps == 0


def test_the_engine_thread_only_appends_the_stall_detector_reads_the_steps_on_its_timer():
    from aphrodite_sla.integrations.stall import StallDetector

    clock = ManualClock(1000.0)
    mgr = SLAManager(clock=clock, anomaly_detection=False)
    stall = StallDetector(mgr, clock=clock, stall_after_s=30.0)
    rec = EngineStatsRecorder(mgr, stall_detector=stall)
    rec.record(*step(gen=0, running=4))
    assert stall._last_record is None  # nothing but the append happened on the engine's thread
    clock.advance(31.0)
    assert stall.check().stalled  # 4 running, no token since the step 31 s ago
    rec.record(*step(gen=8, running=4))
    assert not stall.check().stalled  # the check pulled the new step: progress
    assert stall.status.last_record_at == clock()
