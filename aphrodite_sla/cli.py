"""``aphrodite-sla`` command line: ``demo`` (injected faults on an accelerated clock) and
``thresholds`` (the production SLAs)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_demo(args: argparse.Namespace) -> int:
    from aphrodite_sla.demo import run_demo

    if args.duration <= 0:
        print("aphrodite-sla demo: --duration must be > 0", file=sys.stderr)
        return 2
    result = run_demo(args.duration, seed=args.seed)
    missed = [o.fault.name for o in result.outcomes if o.detected_at_s is None]
    if missed:
        print(f"\nnot detected: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


def _cmd_thresholds(args: argparse.Namespace) -> int:
    from aphrodite_sla.sla.defaults import default_thresholds

    print(f"{'SLA':<28} {'reads':<24} {'stat':<5} {'target':>8} {'tol':>6} {'bound':>9} {'window':>7}  direction")
    for t in default_thresholds():
        print(
            f"{t.metric_name:<28} {t.source:<24} {t.statistic.value:<5} {t.target_value:>8g} "
            f"{t.tolerance_percent:>5g}% {t.bound:>9.4g} {t.measurement_window_minutes:>5g}min  {t.direction.value}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aphrodite-sla", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the SLA manager on a synthetic stream with injected faults")
    demo.add_argument("--duration", type=float, default=2700.0, help="simulated seconds (default 2700)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.set_defaults(func=_cmd_demo)
    th = sub.add_parser("thresholds", help="list the production SLA thresholds")
    th.set_defaults(func=_cmd_thresholds)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
