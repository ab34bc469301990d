"""``aphrodite-sla`` command line: ``simulate`` (the monitor on a simulated engine: live view,
exporter, summary), ``demo`` (the SLA manager alone on a synthetic stream) and ``thresholds``."""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from typing import Any


def _cmd_demo(args: argparse.Namespace) -> int:
    from aphrodite_sla.demo import run_demo

    if args.duration <= 0:
        print("aphrodite-sla demo: --duration must be > 0", file=sys.stderr)
        return 2
    result = run_demo(args.duration, seed=args.seed)
    missed = [r.fault.name for r in result.faults if r.first_violation is None]
    if missed:
        print(f"\nnot detected: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


def _simulation_scenario(args: argparse.Namespace) -> Any:
    """The scenario ``simulate`` runs: a catalogue one, or a replay of ``--trace`` scaled as asked,
    with the ``--fault`` list added. Raises ``_UsageError`` naming the argument at fault."""
    from aphrodite_sla.sim import get_scenario, list_scenarios
    from aphrodite_sla.sim.scenarios import parse_fault, scaled_trace, trace_scenario

    faults = []
    for spec in args.fault or ():
        try:
            faults.append(parse_fault(spec))
        except ValueError as err:
            raise _UsageError(f"--fault {err}") from None
    scaling = {"--target-load": args.target_load, "--time-scale": args.time_scale, "--thin": args.thin}
    if args.trace is None:
        used = [flag for flag, value in (*scaling.items(), ("--loop", args.loop or None), ("--format", args.format)) if value is not None]
        if used:
            raise _UsageError(f"{', '.join(used)} apply to a replayed trace: give --trace FILE")
        name = args.scenario or "mixed"
        if name not in list_scenarios():
            raise _UsageError(f"unknown scenario {name!r}; --list shows them")
        scenario = get_scenario(name)
        if faults:
            scenario = scenario.with_(faults=scenario.faults + tuple(faults))
    else:
        if args.scenario is not None:
            raise _UsageError("--scenario and --trace both name what to run; give one")
        if args.target_load is not None and not (args.target_load > 0 and math.isfinite(args.target_load)):
            raise _UsageError(f"--target-load must be a finite fraction of capacity > 0, got {args.target_load:g}")
        if args.time_scale is not None and not (args.time_scale > 0 and math.isfinite(args.time_scale)):
            raise _UsageError(f"--time-scale must be finite and > 0, got {args.time_scale:g}")
        if args.thin is not None and not 0 < args.thin <= 1:
            raise _UsageError(f"--thin is the share of requests kept, must be in (0, 1], got {args.thin:g}")
        from aphrodite_sla.sim.traces import load_trace

        try:
            trace = load_trace(args.trace, args.format or "auto")
        except OSError as err:
            raise _UsageError(f"--trace {args.trace}: cannot read ({err.strerror or err})") from None
        except ValueError as err:  # TraceFormatError names the file, line and field
            raise _UsageError(f"--trace: {err}") from None
        try:
            trace = scaled_trace(trace, target_load=args.target_load, time_scale=args.time_scale, thin=args.thin, loop=args.loop)
            scenario = trace_scenario(trace, faults, duration_s=args.duration)
        except (ValueError, RuntimeError) as err:
            raise _UsageError(f"--trace {args.trace}: {err}") from None
    duration = scenario.duration_s if args.duration is None else args.duration
    late = [f"{f.kind.value}@{f.start_s:g}" for f in faults if f.start_s >= duration]
    if late:
        raise _UsageError(f"--fault {', '.join(late)}: starts at or after the end of the run ({duration:g} s); set --duration")
    return scenario


class _UsageError(ValueError):
    """A bad ``simulate`` argument: the message names it; exit code 2."""


def _simulation_config(args: argparse.Namespace) -> Any:
    """``APHRODITE_SLA_CONFIG`` and ``APHRODITE_SLA_*`` as the engine plugin reads them, with
    ``--config FILE`` taking the place of ``APHRODITE_SLA_CONFIG``."""
    import os

    from aphrodite_sla.config import ENV_FILE, ConfigError, load_config

    environ = dict(os.environ)
    if args.config is not None:
        if not os.path.isfile(args.config):
            raise _UsageError(f"--config {args.config}: no such file")
        environ[ENV_FILE] = args.config
    try:
        return load_config(environ)
    except ConfigError as err:
        raise _UsageError(f"{'--config: ' if args.config is not None else ''}{err}") from None


def _cmd_simulate(args: argparse.Namespace) -> int:
    from aphrodite_sla.sim import get_scenario, list_scenarios

    if args.list:
        for name in list_scenarios():
            sc = get_scenario(name)
            faults = ", ".join(f"{f.kind.value}@{f.start_s:.0f}s" for f in sc.faults) or "no faults"
            print(f"{name:<20} {sc.duration_s:6.0f}s  {faults}\n{'':<20} {sc.description}")
        return 0
    if args.duration is not None and not (args.duration > 0 and math.isfinite(args.duration)):
        print("aphrodite-sla simulate: --duration must be > 0", file=sys.stderr)
        return 2
    if args.speed < 0:
        print("aphrodite-sla simulate: --speed must be >= 0", file=sys.stderr)
        return 2
    if args.approve_after is not None and args.approve_after < 0:
        print("aphrodite-sla simulate: --approve-after must be >= 0", file=sys.stderr)
        return 2
    try:
        scenario = _simulation_scenario(args)
        config = _simulation_config(args)
    except _UsageError as err:
        print(f"aphrodite-sla simulate: {err}", file=sys.stderr)
        return 2
    from aphrodite_sla.simulate import compare_recovery, run_simulation

    live = sys.stdout.isatty() if args.live is None else args.live
    approve = None if args.approve_after is None or args.never_approve else args.approve_after
    try:
        if args.compare:
            result, _ = compare_recovery(scenario, duration_s=args.duration, speed=args.speed, port=args.port, seed=args.seed,
                                         live=live, approve_after_s=approve, config=config, incidents_db=args.incidents_db)
        else:
            result = run_simulation(
                scenario, duration_s=args.duration, speed=args.speed, port=args.port, seed=args.seed, live=live,
                recovery=args.recovery, approve_after_s=approve, config=config, incidents_db=args.incidents_db,
            )
    except OSError as err:
        print(f"aphrodite-sla simulate: cannot serve on 127.0.0.1:{args.port}: {err} (try --port 0)", file=sys.stderr)
        return 2
    missed = [r.fault.name for r in result.faults if not r.detected]
    if missed:
        print(f"\nnot detected: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


def _cmd_rules(args: argparse.Namespace) -> int:
    from aphrodite_sla.config import ConfigError, load_config
    from aphrodite_sla.export.rules import render_rules, write_rules

    try:
        cfg = load_config()
    except ConfigError as err:
        print(f"aphrodite-sla rules export: {err}", file=sys.stderr)
        return 2
    thresholds = cfg.active_thresholds()
    options = {"slo_period_days": args.slo_period_days, "min_events_per_second": args.min_events_per_second}
    try:
        if args.output:
            path = write_rules(args.output, thresholds, **options)
            print(f"wrote {path}", file=sys.stderr)
        else:
            sys.stdout.write(render_rules(thresholds, **options))
    except (ValueError, OSError) as err:
        print(f"aphrodite-sla rules export: {err}", file=sys.stderr)
        return 2
    return 0


def _cmd_thresholds(args: argparse.Namespace) -> int:
    from aphrodite_sla.config import ConfigError, SLAConfig, builtin_thresholds, load_config

    if args.set is not None:
        thresholds = builtin_thresholds(args.set)
        title = f"the built-in {args.set!r} SLAs"
    else:
        try:
            cfg = load_config()
        except ConfigError as err:
            print(f"aphrodite-sla thresholds: {err}", file=sys.stderr)
            return 2
        thresholds = cfg.active_thresholds()
        title = "the SLAs the configuration makes active" + ("" if cfg != SLAConfig() else " (defaults: the 'serving' set)")
    print(f"{title}:")
    print(f"{'SLA':<28} {'reads':<24} {'stat':<5} {'target':>8} {'tol':>6} {'bound':>9} {'window':>7}  direction")
    for t in thresholds:
        print(
            f"{t.metric_name:<28} {t.source:<24} {t.statistic.value:<5} {t.target_value:>8g} "
            f"{t.tolerance_percent:>5g}% {t.bound:>9.4g} {t.measurement_window_minutes:>5g}min  {t.direction.value}"
        )
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    """Propose each SLA's target and tolerance from a healthy period, print how often the current and
    proposed bounds would have fired on it, and write the configuration file with --output."""
    import os

    from aphrodite_sla.calibration import Calibration, NotEnoughHistory, TailSettings, propose, render_table, write_config
    from aphrodite_sla.calibration_sources import SourceError, monitor_history, parse_duration, prometheus_history, simulate_history
    from aphrodite_sla.config import ENV_FILE, ENV_PREFIX, ConfigError, builtin_thresholds, load_config

    def fail(message: str) -> int:
        print(f"aphrodite-sla calibrate: {message}", file=sys.stderr)
        return 2

    if not 0.0 <= args.margin < 1.0:
        return fail(f"--margin must be in [0, 1), got {args.margin:g}")
    try:
        tail = None if args.worst_plus_margin else TailSettings(return_period_days=args.return_period_days)
    except ValueError as err:
        return fail(f"--return-period-days: {err}")
    sla_set = args.sla_set
    if sla_set is not None:
        thresholds = builtin_thresholds(sla_set)
    elif args.simulate and not any(k == ENV_FILE or k.startswith(ENV_PREFIX) for k in os.environ):
        from aphrodite_sla.simulate import SIMULATED_MODEL_SLAS

        thresholds, sla_set = list(SIMULATED_MODEL_SLAS), "seed"  # what the simulator runs
    else:
        try:
            cfg = load_config()
        except ConfigError as err:
            return fail(str(err))
        thresholds, sla_set = cfg.active_thresholds(), cfg.sla_set
    if not thresholds:
        return fail("no SLAs to calibrate (all disabled)")
    try:
        if args.simulate:
            from aphrodite_sla.sim import list_scenarios

            scenario: Any = args.scenario
            if args.duration is not None and not args.duration > 0:
                return fail("--duration must be > 0")
            if args.trace is not None:  # a healthy replay of recorded traffic (the same trace simulate replays)
                from aphrodite_sla.sim.scenarios import trace_scenario

                try:
                    scenario = trace_scenario(args.trace, (), duration_s=args.duration, format=args.format)
                except OSError as err:
                    return fail(f"--trace {args.trace}: cannot read ({err.strerror or err})")
                duration = scenario.duration_s
            elif args.scenario not in list_scenarios():
                return fail(f"unknown scenario {args.scenario!r}; `aphrodite-sla simulate --list` shows them")
            else:
                duration = 1800.0 if args.duration is None else args.duration
            what = args.trace or args.scenario
            print(f"calibrating on a healthy simulate run: {what}, {duration:g} engine seconds ...", file=sys.stderr)
            history = simulate_history(thresholds, scenario=scenario, duration_s=duration, seed=args.seed)
        elif args.monitor:
            history = monitor_history(thresholds, args.monitor)
        else:
            try:
                since, step = parse_duration(args.since), parse_duration(args.step)
            except ValueError as err:
                return fail(f"--since/--step: {err}")
            history = prometheus_history(thresholds, args.prometheus, since_s=since, step_s=step, match=args.match)
    except (SourceError, ValueError) as err:
        return fail(str(err))
    calibrations = []
    for th in thresholds:
        series = history.series.get(th.metric_name)
        reason = history.missing.get(th.metric_name)
        if series is None:
            calibrations.append(Calibration(th, None, note=reason or "no source"))
            continue
        try:
            calibrations.append(propose(th, series, args.margin, tail))
        except NotEnoughHistory as err:
            calibrations.append(Calibration(th, None, note=reason or str(err).split(": ", 1)[1]))
    if not any(c.proposed is not None for c in calibrations):
        reasons = "; ".join(f"{c.name}: {c.note}" for c in calibrations)
        return fail(f"no healthy history to calibrate from ({history.source}): {reasons}")
    rule = (f"bound = worst healthy window x (1 +/- {args.margin:g})" if tail is None else
            f"bound = the level healthy windows pass once in {tail.return_period_days:g} days (tail fit), "
            f"at least the worst healthy window x (1 +/- {args.margin:g})")
    print(f"source: {history.source}; {rule}")
    print(render_table(calibrations))
    if args.output:
        header = (f"SLA thresholds calibrated by `aphrodite-sla calibrate` from {history.source}\n"
                  f"{rule}; target = the median window")
        try:
            path = write_config(args.output, calibrations, sla_set=sla_set, header=header)
        except OSError as err:
            return fail(f"cannot write {args.output}: {err.strerror or err}")
        print(f"wrote {path} (use it with {ENV_FILE}={path})", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aphrodite-sla", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the SLA manager on a synthetic stream with injected faults")
    demo.add_argument("--duration", type=float, default=2700.0, help="simulated seconds (default 2700)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.set_defaults(func=_cmd_demo)
    from aphrodite_sla.notify.cli import add_notify_parser

    add_notify_parser(sub)
    sim = sub.add_parser("simulate", help="run the monitor on a simulated engine with injected faults")
    sim.add_argument("--scenario", default=None, help="scenario name (default: mixed); --list names them")
    sim.add_argument("--list", action="store_true", help="list the scenarios and exit")
    sim.add_argument("--trace", default=None, metavar="FILE", help="replay a recorded trace instead of a scenario (see --format)")
    sim.add_argument("--format", default=None, choices=("auto", "csv", "azure", "mooncake", "burstgpt"),
                     help="the trace's format (default: auto, detected from the file)")
    load = sim.add_mutually_exclusive_group()
    load.add_argument("--target-load", type=float, default=None, metavar="FRACTION",
                      help="replay at this fraction of what the simulated engine sustains for the trace's request mix (e.g. 0.6)")
    load.add_argument("--time-scale", type=float, default=None, metavar="X", help="multiply the trace's arrival times by X (< 1: denser)")
    load.add_argument("--thin", type=float, default=None, metavar="P", help="keep each request of the trace with probability P")
    sim.add_argument("--loop", action="store_true", help="replay the trace back to back (set --duration)")
    sim.add_argument("--fault", action="append", default=None, metavar="KIND@START[+DURATION][xMAG]",
                     help="inject a fault (repeatable), e.g. stall@600+45, latency_spike@300+inf, error_burst@100+120x0.1")
    sim.add_argument("--config", default=None, metavar="FILE",
                     help="SLA configuration (TOML/JSON, as APHRODITE_SLA_CONFIG); its thresholds replace the simulated model's")
    sim.add_argument("--duration", type=float, default=None, help="engine seconds (default: the scenario's; a trace's length)")
    sim.add_argument("--speed", type=float, default=0.0, help="engine seconds per wall second (default 0: as fast as possible)")
    sim.add_argument("--port", type=int, default=9464, help="serve /metrics on 127.0.0.1:PORT (default 9464; 0 picks one)")
    sim.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    sim.add_argument("--recovery", nargs="?", const="act", default="act", choices=("act", "advisory", "off"),
                     help="what recovery does: act on the simulated engine (default), advisory (record only), off")
    sim.add_argument("--compare", action="store_true",
                     help="run twice with one seed, recovery acting and off, and print each fault's MTTR side by side")
    sim.add_argument("--approve-after", type=float, default=30.0,
                     help="engine seconds after which the simulated on-call approves a risky action (default 30)")
    sim.add_argument("--never-approve", action="store_true", help="nobody approves: risky actions are denied at their timeout")
    sim.add_argument("--incidents-db", default=None, metavar="PATH",
                     help="run incident response on this SQLite store; ends with a post-mortem per incident")
    live = sim.add_mutually_exclusive_group()
    live.add_argument("--live", dest="live", action="store_true", default=None, help="live terminal view (default: on a TTY)")
    live.add_argument("--no-live", dest="live", action="store_false", help="no live view")
    sim.set_defaults(func=_cmd_simulate)
    rules = sub.add_parser("rules", help="Prometheus recording and alerting rules for the SLAs (fleet-wide)")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    export = rules_sub.add_parser("export", help="write the rules YAML (default: stdout) from the configured SLAs")
    export.add_argument("--output", "-o", default=None, help="file to write (atomically)")
    export.add_argument("--slo-period-days", type=float, default=30.0, help="error-budget period (default 30)")
    export.add_argument("--min-events-per-second", type=float, default=1 / 60,
                        help="minimum traffic over the long window before a burn-rate alert may fire (default 1/60)")
    export.set_defaults(func=_cmd_rules)
    from aphrodite_sla.incidents.cli import register_incident_commands, register_rule_commands

    register_rule_commands(rules_sub)  # incident detection rules: list, show, enable, disable, update, create, test
    register_incident_commands(sub)
    from aphrodite_sla.rca.cli import register_rca_commands

    register_rca_commands(sub)  # root-cause analyses of a running server
    from aphrodite_sla.console.cli import register_dashboard_command

    register_dashboard_command(sub)  # incidents dashboard: the web console
    th = sub.add_parser("thresholds", help="list the active SLAs (from the configuration), or a built-in set")
    th.add_argument("--set", choices=("serving", "seed"), default=None, help="list a built-in set instead")
    th.set_defaults(func=_cmd_thresholds)
    cal = sub.add_parser("calibrate", help="propose SLA targets and tolerances from a healthy period and write the configuration")
    src = cal.add_mutually_exclusive_group(required=True)
    src.add_argument("--simulate", action="store_true", help="a healthy simulate run (recovery off)")
    src.add_argument("--prometheus", metavar="URL", default=None, help="a Prometheus that scraped the engine (vLLM or Aphrodite families)")
    src.add_argument("--monitor", metavar="URL", default=None,
                     help="the running monitor's own history of the last day (the engine's server or the exporter: /metrics/history)")
    cal.add_argument("--scenario", default="steady", help="with --simulate: the healthy scenario (default: steady)")
    cal.add_argument("--trace", default=None, metavar="FILE", help="with --simulate: replay this trace (healthy) instead of a scenario")
    cal.add_argument("--format", default="auto", choices=("auto", "csv", "azure", "mooncake", "burstgpt"), help="with --trace: its format")
    cal.add_argument("--duration", type=float, default=None, help="with --simulate: engine seconds (default 1800; a trace's length)")
    cal.add_argument("--seed", type=int, default=0, help="with --simulate: random seed (default 0)")
    cal.add_argument("--since", default="7d", help="with --prometheus: how far back the healthy period goes (default 7d)")
    cal.add_argument("--step", default="60s", help="with --prometheus: spacing of the evaluation points (default 60s)")
    cal.add_argument("--match", default="", help='with --prometheus: label matchers selecting the deployment, e.g. model_name="llama"')
    cal.add_argument("--margin", type=float, default=0.1,
                     help="the bound is at least the worst healthy window x (1 + margin) (default 0.1)")
    cal.add_argument("--return-period-days", type=float, default=30.0, metavar="DAYS",
                     help="bound at the level healthy traffic passes once in DAYS, from a fit of the history's tail (default 30)")
    cal.add_argument("--worst-plus-margin", action="store_true",
                     help="no tail fit: the bound is the worst healthy window x (1 + margin)")
    cal.add_argument("--output", "-o", default=None, help="write the [[thresholds]] configuration here (atomically)")
    cal.add_argument("--sla-set", choices=("serving", "seed"), default=None,
                     help="calibrate a built-in set (default: the configured SLAs; with --simulate and no configuration, the simulator's)")
    cal.set_defaults(func=_cmd_calibrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
