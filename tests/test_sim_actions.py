"""The simulated engine's actions (vLLM AsyncLLM's surface), admission at arrival, and which faults
an action remedies: each action's physical effect, each remedy ending its fault (and the SLI
coming back), the faults no action clears, and the thread-safe client."""
from __future__ import annotations

import asyncio
import inspect
import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from aphrodite_sla.clock import ManualClock
from aphrodite_sla.integrations.admission import AdmissionController
from aphrodite_sla.sim import EngineSimulator, Fault, FaultKind, FinishReason, Scenario, TraceArrivals, Workload, trace_scenario
from aphrodite_sla.sim.engine import SimulatedEngineDeadError
from aphrodite_sla.sim.engine_client import SimulatedEngineClient
from aphrodite_sla.sim.faults import DEFAULT_REMEDY, Remedy

START = 1_700_000_000.0
FAULT_AT = 20.0


@dataclass
class Out:
    """What the steps of one stretch produced (times relative to the start)."""

    steps: list[tuple[float, Any, Any]] = field(default_factory=list)
    nones: int = 0

    @property
    def finished(self) -> list[Any]:
        return [f for _, _, it in self.steps for f in it.finished_requests]

    @property
    def tokens(self) -> int:
        return sum(it.num_generation_tokens for _, _, it in self.steps)

    def ttft(self) -> np.ndarray:
        return np.array([x for _, _, it in self.steps for x in it.time_to_first_tokens_iter])

    def hit_rate(self) -> float:
        q = sum(s.prefix_cache_stats.queries for _, s, _ in self.steps)
        return sum(s.prefix_cache_stats.hits for _, s, _ in self.steps) / q if q else math.nan


def make(faults: tuple[Fault, ...] = (), *, admission: Any = None, duration_s: float = 600.0, seed: int = 1, **workload: Any) -> EngineSimulator:
    scenario = Scenario("actions", "test", duration_s, workload=Workload(**workload), faults=faults)
    return EngineSimulator(scenario, clock=ManualClock(START), seed=seed, admission=admission)


def run_to(sim: EngineSimulator, t: float, check: bool = False) -> Out:
    """Step until ``t`` engine seconds since the start, checking the invariants every 200 steps if asked."""
    out = Out()
    n = 0
    while sim.elapsed_s < t:
        res = sim.step()
        n += 1
        if res is None:
            out.nones += 1
        else:
            out.steps.append((res[1].iteration_timestamp - START, res[0], res[1]))
        if check and n % 200 == 0:
            sim.check_invariants()
    if check:
        sim.check_invariants()
    return out


def abort_stats_consistent(fins: list[Any]) -> None:
    for f in fins:
        assert f.finish_reason is FinishReason.ABORT
        assert f.e2e_latency == pytest.approx(f.queued_time + f.prefill_time + f.decode_time, abs=1e-9)
        assert f.inference_time == pytest.approx(f.prefill_time + f.decode_time, abs=1e-9)
        assert min(f.queued_time, f.prefill_time, f.decode_time) >= 0


# --------------------------------------------------------------------------- prefix cache reset


def test_reset_prefix_cache_refused_while_running_unless_forced_and_hits_go_cold():
    sim = make()
    before = run_to(sim, 30.0)
    assert sim.num_running > 10
    running, waiting, preempted = sim.num_running, sim.num_waiting, sim.preemptions
    assert sim.reset_prefix_cache() is False, "vLLM refuses while running requests hold cached blocks"
    assert sim.prefix_cache_resets == 0 and sim.num_running == running
    assert sim.reset_prefix_cache(reset_running_requests=True) is True
    assert sim.num_running == 0 and sim.num_waiting == waiting + running and sim.preemptions == preempted + running
    sim.check_invariants()
    cold = run_to(sim, 31.0, check=True)
    warm = run_to(sim, 60.0)
    base = before.hit_rate()
    assert 0.1 < base < 0.3  # half the requests share a 256-token prefix of ~700-token (mean) prompts
    assert cold.hit_rate() < 0.5 * base, "right after a reset the shared prefixes are not cached"
    assert warm.hit_rate() > 0.8 * base, "and they are cached again once the requests using them ran"
    # the preempted requests were recomputed and finished normally
    assert not any(f.finish_reason is FinishReason.ABORT for f in cold.finished + warm.finished if f.num_preemptions)
    assert sim.prefix_cache_resets == 1 and [e.remedy for e in sim.remedies_applied] == [Remedy.RESET_PREFIX_CACHE]


def test_reset_prefix_cache_clears_the_block_hash_lru():
    hashes = tuple((1, 2, 3, 4, 100 + i) for i in range(10))
    tr = TraceArrivals(tuple(0.5 * i for i in range(10)), (4 * 512 + 100,) * 10, (5,) * 10, block_hashes=hashes)
    sim = EngineSimulator(trace_scenario(tr, duration_s=10.0, abort_fraction=0.0), clock=ManualClock(START), seed=0)
    fins = run_to(sim, 2.7).finished  # requests at 0 .. 2.5 s, done
    assert sim.num_running == 0 and sim.prefix_cache_blocks == 5 + 5
    assert sim.reset_prefix_cache() is True and sim.prefix_cache_blocks == 0
    fins += run_to(sim, 10.0).finished
    cached = {int(f.request_id[4:]): f.num_cached_tokens for f in fins}
    assert cached[0] == 0 and all(cached[i] == 4 * 512 for i in range(1, 6))
    assert cached[6] == 0, "the first request after the reset finds the cache empty"
    assert all(cached[i] == 4 * 512 for i in range(7, 10)), "it cached the prefix again for the next ones"


# --------------------------------------------------------------------------- pause / abort / sleep


def test_pause_abort_aborts_in_flight_and_queues_arrivals_until_resume():
    sim = make()
    run_to(sim, 30.0)
    ids = set(sim.unfinished_request_ids())
    n = sim.get_num_unfinished_requests()
    assert n == len(ids) > 10
    aborted0 = sim.finished_by_reason[FinishReason.ABORT]
    assert sim.pause_generation("abort") is True
    assert sim.is_paused() and sim.is_sleeping(), "vLLM's is_sleeping() is true while paused"
    assert sim.get_num_unfinished_requests() == 0 and sim.used_blocks == 0
    assert sim.finished_by_reason[FinishReason.ABORT] == aborted0 + n and sim.aborted == n
    paused = run_to(sim, 35.0, check=True)
    fins = paused.finished
    assert {f.request_id for f in fins} == ids, "the engine reports each aborted request once, with the next stats"
    abort_stats_consistent(fins)
    assert paused.tokens == 0 and sim.num_running == 0
    assert sim.num_waiting > 100, "arrivals queue while paused (about 40/s)"
    with pytest.raises(ValueError, match="Invalid pause mode"):
        sim.pause_generation("drain")  # type: ignore[arg-type]
    sim.resume_generation()
    assert not sim.is_paused()
    after = run_to(sim, 45.0, check=True)
    assert after.tokens > 0 and sim.num_waiting < 20, "the queue is served after resume"
    # a queued request's TTFT includes its time in the queue during the pause
    assert after.ttft().max() > 4.0


def test_pause_wait_lets_running_finish_then_completes():
    sim = make()
    run_to(sim, 30.0)
    running = set(sim.unfinished_request_ids()[: sim.num_running])
    done: list[Any] = []
    assert sim.pause_generation("wait", on_complete=done.append) is False
    with pytest.raises(RuntimeError, match="still in flight"):
        sim.resume_generation()
    out = Out()
    while not done:
        part = run_to(sim, sim.elapsed_s + 0.01)
        out.steps += part.steps
        assert sim.elapsed_s < 60, "the drain never completed"
    assert done == [None] and sim.num_running == 0 and sim.is_paused()
    assert running <= {f.request_id for f in out.finished}, "every running request finished"
    assert sum(f.finish_reason is FinishReason.ABORT for f in out.finished) <= 2, "none aborted (the workload's 0.1% background aborts aside)"
    assert out.ttft().size <= len(running), "no new request was admitted while draining"
    assert sim.prefix_cache_resets == 1, "the completed pause cleared the cache (clear_cache=True)"
    sim.resume_generation()
    assert run_to(sim, sim.elapsed_s + 5).tokens > 0


def test_pause_keep_freezes_and_clear_cache_sends_running_back_to_the_queue():
    sim = make()
    run_to(sim, 30.0)
    running, step_no = sim.num_running, sim.steps
    assert sim.pause_generation("keep", clear_cache=False) is True
    frozen = run_to(sim, 32.0, check=True)
    assert frozen.steps == [] and sim.steps == step_no and sim.num_running == running, "keep: nothing moves"
    sim.resume_generation()
    resumed = run_to(sim, 40.0)
    assert resumed.tokens > 0 and sim.aborted == 0
    # the ITL across the freeze includes it
    first_itls = resumed.steps[0][2].inter_token_latencies_iter
    assert first_itls and min(first_itls) > 2.0
    running = sim.num_running
    assert sim.pause_generation("keep") is True  # clear_cache: vLLM resets with reset_running_requests=True
    assert sim.num_running == 0 and sim.num_waiting >= running and sim.prefix_cache_resets == 1


def test_sleep_keep_preempts_to_the_queue_and_wake_up_reloads_first():
    sim = make()
    run_to(sim, 30.0)
    unfinished = sim.get_num_unfinished_requests()
    assert sim.sleep(1, mode="keep") is True
    assert sim.is_sleeping() and sim.num_running == 0 and sim.used_blocks == 0
    assert sim.get_num_unfinished_requests() >= unfinished, "kept: preempted back to the queue, none aborted"
    asleep = run_to(sim, 40.0, check=True)
    assert asleep.steps == [] and sim.paused_ticks > 100
    assert sim.wake_up(["kv_cache"]) is False and sim.is_sleeping(), "partial wake-up: the weights still sleep"
    assert sim.wake_up(["weights", "scheduling"]) is True and not sim.is_sleeping() and sim.waking_up
    t_wake = sim.elapsed_s
    reload = run_to(sim, t_wake + sim.wake_up_s[1] - 0.01)
    assert reload.steps == [], "no step while the weights reload"
    after = run_to(sim, t_wake + 10.0, check=True)
    assert after.tokens > 0 and not sim.waking_up
    assert not any(f.finish_reason is FinishReason.ABORT for f in asleep.finished + after.finished if f.num_preemptions)
    with pytest.raises(ValueError, match="unknown tags"):
        sim.wake_up(["gpu"])
    with pytest.raises(ValueError, match="level"):
        sim.sleep(-1)


def test_sleep_default_aborts_like_vllm():
    sim = make()
    run_to(sim, 30.0)
    n = sim.get_num_unfinished_requests()
    sim.sleep()  # level 1, mode "abort": AsyncLLM.sleep's defaults
    assert sim.get_num_unfinished_requests() == 0 and sim.aborted == n
    fins = run_to(sim, 31.0).finished
    assert len(fins) == n
    abort_stats_consistent(fins)


def test_abort_by_id_ignores_unknown_ids():
    sim = make()
    run_to(sim, 30.0)
    ids = sim.unfinished_request_ids()
    chosen = ids[::3]
    assert sim.abort([*chosen, "req-999999", "nonsense"]) == len(chosen)
    assert sim.abort(chosen[0]) == 0, "already finished"
    assert sim.get_num_unfinished_requests() == len(ids) - len(chosen)
    sim.check_invariants()
    out = run_to(sim, 31.0, check=True)
    aborted = [f for f in out.finished if f.request_id in set(chosen)]
    assert len(aborted) == len(chosen)
    abort_stats_consistent(aborted)
    assert not sim.remedies_applied, "a partial abort is no restart"
    with pytest.raises(TypeError, match="strings"):
        sim.abort([12])  # type: ignore[list-item]


def test_health_is_fine_while_stalled_and_dead_after_kill():
    sim = make((Fault(FaultKind.STALL, FAULT_AT, 60.0),))
    run_to(sim, 30.0)
    assert sim.stalled
    sim.check_health()  # a wedged batch is not a dead engine (vLLM's check passes too)
    assert not sim.errored
    n = sim.get_num_unfinished_requests()
    sim.kill("worker crashed")
    assert sim.errored and sim.get_num_unfinished_requests() == 0
    assert sim.finished_by_reason[FinishReason.ERROR] >= n
    with pytest.raises(SimulatedEngineDeadError, match="worker crashed"):
        sim.check_health()
    run_to(sim, 35.0, check=True)
    assert sim.arrived == sim.finished and sim.rejected_dead > 100
    fut = sim.submit(sim.rollback)
    sim.step()
    with pytest.raises(SimulatedEngineDeadError):
        fut.result(timeout=1)


# --------------------------------------------------------------------------- admission


def _surge_ttft(shed: float | None) -> tuple[EngineSimulator, np.ndarray, float]:
    clock = ManualClock(START)
    admission = None if shed is None else AdmissionController(clock=clock, rng=random.Random(3))
    scenario = Scenario("surge", "test", 200.0, faults=(Fault(FaultKind.TRAFFIC_SURGE, FAULT_AT, 120.0, 3.0),))
    sim = EngineSimulator(scenario, clock=clock, seed=1, admission=admission)
    run_to(sim, FAULT_AT + 10.0)
    if admission is not None:
        admission.shed(shed, reason="test")
    sim.take_arrival_stats()
    run_to(sim, FAULT_AT + 40.0)  # the backlog of the first 10 s drains (or not)
    out = run_to(sim, FAULT_AT + 100.0)
    return sim, out.ttft(), float(np.mean([s.num_waiting_reqs for _, s, _ in out.steps]))


def test_admission_shedding_lowers_load_queueing_and_ttft_under_a_surge():
    base, ttft0, waiting0 = _surge_ttft(None)
    shed, ttft1, waiting1 = _surge_ttft(0.6)
    # 120 req/s against a capacity below that: without shedding the queue runs away
    assert waiting0 > 1000 and np.percentile(ttft0, 95) > 10.0
    assert waiting1 < 5 and np.percentile(ttft1, 95) < 0.1, "40% of 120 req/s fits: no queue"
    arr = shed.take_arrival_stats()
    assert arr.shed == shed.rejected_by_admission > 0 and 0.55 < arr.shed / arr.count < 0.65
    offered = shed.arrived + shed.rejected_by_admission + shed.rejected_too_long
    assert abs(offered - (base.arrived + base.rejected_too_long)) <= 2, (
        "the same offered load (admission draws from its own generator, the runs end within a step of each other): "
        "shed requests never entered the engine"
    )
    assert shed.finished_by_reason[FinishReason.ERROR] == 0, "a shed request is a 503, not an engine error"
    assert shed.run(1.0).rejected_by_admission == shed.rejected_by_admission


def test_admission_must_have_admit():
    with pytest.raises(TypeError, match="admit"):
        make(admission=object())


# --------------------------------------------------------------------------- remedies


def _ended_by(sim: EngineSimulator, kind: FaultKind, remedy: Remedy) -> None:
    """The fault of ``kind`` was ended by ``remedy``: logged as such, at the time that remedy took effect."""
    (ev,) = [e for e in sim.fault_log if e.fault.kind is kind]
    assert ev.remedy is remedy
    (cure,) = [e for e in sim.remedies_applied if ev.fault in e.cleared]
    assert cure.remedy is remedy and ev.end_time == cure.time
    assert kind not in {f.kind for f in sim.active_faults}


def test_stall_is_cleared_by_a_restart_and_steps_resume():
    sim = make((Fault(FaultKind.STALL, FAULT_AT, 300.0),))
    assert run_to(sim, 30.0).steps[-1][0] < FAULT_AT + 0.1
    assert run_to(sim, 35.0).steps == [] and sim.stalled
    sim.pause_generation("abort")  # what SERVICE_RESTART does: pause (abort in-flight), resume
    sim.resume_generation()
    _ended_by(sim, FaultKind.STALL, Remedy.RESTART)
    after = run_to(sim, 45.0, check=True)
    assert not sim.stalled and after.tokens > 10_000, "tokens flow again at once"
    assert run_to(sim, 100.0).nones < 2000, "and the stall is not applied again"
    assert sim.remedies_applied[0].action == "pause_generation(mode='abort')"


def test_stall_is_cleared_by_aborting_every_running_request():
    sim = make((Fault(FaultKind.STALL, FAULT_AT, 300.0),))
    run_to(sim, 30.0)
    running = sim.unfinished_request_ids()[: sim.num_running]
    sim.abort(running[:-1])
    assert sim.stalled, "one request of the wedged batch left: still wedged"
    sim.abort(running[-1:])
    _ended_by(sim, FaultKind.STALL, Remedy.RESTART)
    assert run_to(sim, 35.0).tokens > 0


def test_memory_leak_released_by_sleep_wake_and_by_restart():
    base = make().memory_bytes
    for act in ("sleep", "restart"):
        sim = make((Fault(FaultKind.MEMORY_LEAK, FAULT_AT, 500.0, 10.0),))
        run_to(sim, 80.0)
        assert sim.memory_bytes == pytest.approx(base + 60 * 10 * 2**20, rel=0.01)
        if act == "sleep":
            sim.sleep(1, mode="keep")  # the default mode "abort" would restart it first
            sim.wake_up()
        else:
            sim.pause_generation("abort")
            sim.resume_generation()
        assert sim.memory_bytes == base
        _ended_by(sim, FaultKind.MEMORY_LEAK, Remedy.SLEEP if act == "sleep" else Remedy.RESTART)
        run_to(sim, 200.0)
        assert sim.memory_bytes == base, "a remedied leak is not applied again"


def test_memory_leak_that_ended_still_holds_memory_until_released():
    sim = make((Fault(FaultKind.MEMORY_LEAK, FAULT_AT, 10.0, 10.0),))
    base = sim.memory_bytes
    run_to(sim, 60.0)
    assert sim.memory_bytes == pytest.approx(base + 100 * 2**20, rel=0.01)
    sim.sleep(1, mode="keep")
    assert sim.memory_bytes == base
    (ev,) = sim.fault_log
    assert ev.remedy is None and ev.end_time == pytest.approx(START + FAULT_AT + 10.0, abs=0.1), "it had ended on its own"


def test_kv_exhaustion_needs_a_forced_prefix_cache_reset():
    sim = make((Fault(FaultKind.KV_EXHAUSTION, FAULT_AT, 300.0, 8.0),))
    full = sim.kv_budget_blocks
    run_to(sim, 40.0)
    assert sim.kv_budget_blocks == full // 8 and sim.kv_cache_usage > 0.8
    assert sim.reset_prefix_cache() is False, "refused while requests run: the fault stays"
    assert sim.kv_budget_blocks == full // 8
    preempted = sim.preemptions
    run_to(sim, 50.0)
    assert sim.preemptions > preempted
    assert sim.reset_prefix_cache(reset_running_requests=True) is True
    _ended_by(sim, FaultKind.KV_EXHAUSTION, Remedy.RESET_PREFIX_CACHE)
    assert sim.kv_budget_blocks == full
    run_to(sim, 75.0, check=True)  # the backlog queued during the fault drains (with preemptions while it does)
    assert sim.num_waiting == 0
    preempted = sim.preemptions
    after = run_to(sim, 100.0, check=True)
    assert sim.preemptions == preempted, "the SLI comes back: no more preemptions"
    assert max(s.kv_cache_usage for _, s, _ in after.steps) < 0.8


def test_error_burst_cleared_by_a_restart():
    sim = make((Fault(FaultKind.ERROR_BURST, FAULT_AT, 300.0, 0.5),))
    during = run_to(sim, 40.0)
    errors = sum(f.finish_reason is FinishReason.ERROR for f in during.finished)
    assert errors > 200
    sim.pause_generation("abort")
    sim.resume_generation()
    _ended_by(sim, FaultKind.ERROR_BURST, Remedy.RESTART)
    after = run_to(sim, 60.0)
    assert sum(f.finish_reason is FinishReason.ERROR for f in after.finished) == 0


def test_bad_deployment_is_cleared_only_by_rollback():
    sim = make((Fault(FaultKind.BAD_DEPLOYMENT, FAULT_AT, math.inf, 2.0, error_fraction=0.1),))
    run_to(sim, 40.0)
    for action in (sim.abort_all, lambda: sim.reset_prefix_cache(True), lambda: (sim.sleep(1), sim.wake_up())):
        action()
        assert [f.kind for f in sim.active_faults] == [FaultKind.BAD_DEPLOYMENT]
    run_to(sim, 60.0)
    slow = sim.last_step_s
    sim.rollback()
    _ended_by(sim, FaultKind.BAD_DEPLOYMENT, Remedy.ROLLBACK)
    run_to(sim, 70.0)  # requests whose failure was decided before the rollback finish
    after = run_to(sim, 100.0)
    assert sum(f.finish_reason is FinishReason.ERROR for f in after.finished) == 0
    assert sim.last_step_s < 0.7 * slow
    assert [e.remedy for e in sim.remedies_applied][-1] is Remedy.ROLLBACK


IRREMEDIABLE = [k for k, r in DEFAULT_REMEDY.items() if not r]


def test_external_faults_are_irremediable_by_default():
    assert set(IRREMEDIABLE) == {
        FaultKind.LATENCY_SPIKE, FaultKind.GPU_THROTTLING, FaultKind.THROUGHPUT_COLLAPSE, FaultKind.TRAFFIC_SURGE,
        FaultKind.PROMPT_LENGTH_SHIFT, FaultKind.OUTPUT_LENGTH_SHIFT, FaultKind.CLIENT_ERROR_BURST,
        FaultKind.PREFIX_CACHE_THRASH, FaultKind.CPU_NOISY_NEIGHBOUR, FaultKind.GPU_MEMORY_NEIGHBOUR,
    }


@pytest.mark.parametrize("kind", IRREMEDIABLE, ids=str)
def test_no_action_clears_an_external_fault(kind):
    sim = make((Fault(kind, FAULT_AT, 300.0),))
    run_to(sim, 25.0)
    modifiers = (sim._step_mult, sim._decode_mult, sim._rate_mult, sim._prompt_mult, sim.gpu_clock_ratio)
    sim.abort_all()
    sim.pause_generation("abort")
    sim.resume_generation()
    assert sim.reset_prefix_cache(reset_running_requests=True)
    sim.sleep(1)
    sim.wake_up()
    sim.rollback()
    run_to(sim, 35.0, check=True)
    assert [f.kind for f in sim.active_faults] == [kind]
    assert (sim._step_mult, sim._decode_mult, sim._rate_mult, sim._prompt_mult, sim.gpu_clock_ratio) == modifiers
    (ev,) = sim.fault_log
    assert ev.end_time is None and ev.remedy is None
    assert all(not e.cleared for e in sim.remedies_applied)


def test_remedy_can_be_overridden_per_fault_and_is_validated():
    sim = make((Fault(FaultKind.LATENCY_SPIKE, FAULT_AT, 300.0, remedy=("rollback",)), Fault(FaultKind.STALL, FAULT_AT, 300.0, remedy=())))
    run_to(sim, 25.0)
    sim.abort_all()
    assert sim.stalled, "remedy=() makes even a stall irremediable"
    sim.rollback()
    assert [f.kind for f in sim.active_faults] == [FaultKind.STALL]
    assert Fault(FaultKind.STALL, 1.0).remedy == (Remedy.RESTART,)
    assert Fault(FaultKind.MEMORY_LEAK, 1.0, remedy="sleep").remedy == (Remedy.SLEEP,)
    with pytest.raises(ValueError, match="remedy must be"):
        Fault(FaultKind.STALL, 1.0, remedy=("reboot",))


def test_remedies_are_logged_even_when_they_clear_nothing():
    sim = make()
    run_to(sim, 5.0)
    sim.abort_all()
    sim.rollback()
    assert [(e.action, e.remedy, e.cleared) for e in sim.remedies_applied] == [
        ("abort_all()", Remedy.RESTART, ()), ("rollback()", Remedy.ROLLBACK, ()),
    ]


# --------------------------------------------------------------------------- the client


def test_client_commands_from_another_thread_apply_at_a_step_boundary():
    sim = make((Fault(FaultKind.STALL, FAULT_AT, 300.0),), duration_s=60.0)
    client = SimulatedEngineClient(sim, timeout_s=10.0)
    boundaries: set[float] = {sim.clock()}
    go, done = threading.Event(), threading.Event()
    results: dict[str, Any] = {}

    def recovery() -> None:
        async def act() -> None:
            go.wait(10)
            results["unfinished"] = client.get_num_unfinished_requests()
            await client.pause_generation(mode="abort")
            results["paused"] = await client.is_paused()
            results["reset"] = await client.reset_prefix_cache()  # nothing running now: succeeds
            await client.resume_generation()
            results["healthy"] = await client.check_health() is None
            results["woke"] = await client.wake_up()

        try:
            asyncio.run(act())
        except BaseException as exc:  # reported below
            results["error"] = exc
        finally:
            done.set()

    def on_tick(s: EngineSimulator) -> None:
        boundaries.add(s.clock())
        if s.elapsed_s > 30.0 and not go.is_set():
            go.set()
        if go.is_set() and not done.is_set():
            done.wait(0.002)  # keep stepping slowly while recovery acts

    worker = threading.Thread(target=recovery)
    worker.start()
    sim.run(on_tick=on_tick)
    worker.join(10)
    assert "error" not in results, results.get("error")
    assert results["unfinished"] > 0 and results["paused"] is True and results["reset"] is True and results["healthy"]
    assert results["woke"] is True and not sim.is_paused()
    times = [e.time for e in sim.remedies_applied]
    assert len(times) == 3  # restart, prefix reset of the pause's clear_cache, the explicit reset
    assert all(t in boundaries for t in times), "every command took effect between two steps"
    assert [e.remedy for e in sim.fault_log] == [Remedy.RESTART] and not sim.stalled


def test_client_wait_pause_resolves_when_drained():
    sim = make(duration_s=60.0)
    client = SimulatedEngineClient(sim, timeout_s=10.0)
    seen: dict[str, Any] = {}
    go = threading.Event()

    def recovery() -> None:
        go.wait(10)
        asyncio.run(client.pause_generation(mode="wait"))
        seen["running"] = sim.num_running
        seen["paused"] = sim.is_paused()

    def on_tick(s: EngineSimulator) -> None:
        if s.elapsed_s > 20 and not go.is_set():
            go.set()
        if go.is_set() and "paused" not in seen:
            threading.Event().wait(0.0005)

    worker = threading.Thread(target=recovery)
    worker.start()
    sim.run(on_tick=on_tick)
    worker.join(10)
    assert seen == {"running": 0, "paused": True}


def test_client_on_the_stepping_thread_applies_at_once_and_refuses_to_wait_for_itself():
    sim = make(duration_s=40.0)
    client = SimulatedEngineClient(sim)
    seen: list[Any] = []

    def on_tick(s: EngineSimulator) -> None:
        if s.elapsed_s > 20 and not seen:
            asyncio.run(client.pause_generation(mode="keep", clear_cache=False))
            seen.append(s.is_paused())
            with pytest.raises(RuntimeError, match="would wait for itself"):
                asyncio.run(client.pause_generation(mode="wait"))
            asyncio.run(client.resume_generation())
            seen.append(s.is_paused())

    sim.run(on_tick=on_tick)
    assert seen == [True, False]


def test_client_times_out_when_nothing_steps_and_the_command_is_dropped():
    sim = make()
    run_to(sim, 10.0)
    client = SimulatedEngineClient(sim, timeout_s=0.05)
    with pytest.raises(TimeoutError, match="applied no command"):
        asyncio.run(client.pause_generation(mode="abort"))
    sim.step()
    assert not sim.is_paused() and sim.get_num_unfinished_requests() > 0, "a command its caller gave up on is not applied later"
    # driven by hand: the queue is applied by step() / apply_pending()
    fut = sim.submit(lambda: sim.reset_prefix_cache(True))
    assert not fut.done() and sim.apply_pending() == 1 and fut.result() is True


def test_client_reports_a_dead_engine():
    sim = make()
    client = SimulatedEngineClient(sim)
    asyncio.run(client.check_health())
    sim.kill("oom")
    assert client.errored and isinstance(client.dead_error, SimulatedEngineDeadError)
    with pytest.raises(SimulatedEngineDeadError, match="oom"):
        asyncio.run(client.check_health())


def test_client_surface_is_asynclllm_shaped():
    """The sync/async kinds mirror vLLM 0.32's AsyncLLM (the exact signatures are compared with the
    real class in tests/contract/test_sim_client_signatures.py)."""
    asynchronous = ("abort", "pause_generation", "resume_generation", "is_paused", "reset_prefix_cache", "reset_mm_cache",
                    "sleep", "wake_up", "is_sleeping", "check_health", "rollback")
    for name in asynchronous:
        assert inspect.iscoroutinefunction(getattr(SimulatedEngineClient, name)), name
    assert not inspect.iscoroutinefunction(SimulatedEngineClient.get_num_unfinished_requests)
    assert isinstance(inspect.getattr_static(SimulatedEngineClient, "errored"), property)
    sig = inspect.signature(SimulatedEngineClient.pause_generation)
    assert sig.parameters["mode"].kind is inspect.Parameter.KEYWORD_ONLY and sig.parameters["mode"].default == "abort"
    with pytest.raises(TypeError):
        SimulatedEngineClient(object())  # type: ignore[arg-type]
