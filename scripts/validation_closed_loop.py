"""Closed-loop A/B on the validation seeds (never the test seeds): ``latentvla evaluate``'s suite for a few
methods and scenarios, printing per method and scenario the score, at-fault collisions, route completion and
comfort. Used to decide planner-stack changes before the full evaluation (e.g. the obstacle guard's creep
release and the tracker's acceleration limit, session 11). The expert is always run (its progress is EP's
reference: without it no score). ``--per-episode`` adds one row per episode: score, EP, comfort, the comfort
checks that failed in some 4 s window (with their pass fraction), the obstacle guard's verdicts per step and
how the episode ended.

    python scripts/validation_closed_loop.py --out /tmp/val --methods latentvla_student,latentvla_student_unguarded,expert \
        --scenarios intersection,roundabout --seeds 30000-30011

``--open-loop`` runs the open-loop suite instead (PDMS per method and scenario on held-out logs of the validation
seeds, generated once under ``<out>/logs``; the reference planner and the expert always run):

    python scripts/validation_closed_loop.py --open-loop --out /tmp/val_ol --methods latentvla_student --seeds 30000-30004

``--guard-param KEY=VALUE`` changes a ``GuardConfig`` field of every guarded agent and ``--tracker-param KEY=VALUE``
a field of the tracker every method drives with (``highway_tracker_config``), both repeatable: the experiments of
docs/operations.md, e.g. ``--guard-param yield_moving=true --guard-param yield_min_speed_mps=15`` or
``--tracker-param max_yaw_acceleration_radps2=1.0``.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np


def parse_seeds(text: str) -> tuple[int, ...]:
    if "-" in text:
        lo, hi = (int(v) for v in text.split("-"))
        return tuple(range(lo, hi + 1))
    return tuple(int(v) for v in text.split(","))


def parse_params(items: list[str]) -> tuple[tuple[str, object], ...]:
    """``KEY=VALUE`` items -> ((key, value), ...); VALUE read as JSON (numbers, true / false), else a string."""
    out = []
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        out.append((key, value))
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--checkpoints", default="checkpoints/edge")
    ap.add_argument("--methods", default="latentvla_student,latentvla_student_unguarded,expert")
    ap.add_argument("--scenarios", default="", help="comma-separated (default: all)")
    ap.add_argument("--seeds", default="", help="e.g. 30000-30011 (default: data/splits.py VALIDATION_CLOSED_LOOP_SEEDS)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--per-episode", action="store_true", help="also print one row per episode (scene with --open-loop)")
    ap.add_argument("--open-loop", action="store_true", help="the open-loop suite on logs of --seeds instead")
    ap.add_argument("--logs", default="", help="--open-loop: where the validation logs are generated once and kept "
                    "(default <out>/logs; share it between runs)")
    ap.add_argument("--guard-param", action="append", default=[], metavar="KEY=VALUE",
                    help="a GuardConfig field for every guarded agent (repeatable)")
    ap.add_argument("--tracker-param", action="append", default=[], metavar="KEY=VALUE",
                    help="a highway_tracker_config field for every method (repeatable)")
    args = ap.parse_args(argv)

    from latentvla_ros.apps.evaluate import EvalPlan, run_evaluation
    from latentvla_ros.core.config_base import ConfigError
    from latentvla_ros.core.obstacle_guard import GuardConfig
    from latentvla_ros.data import splits
    from latentvla_ros.evaluation.closed_loop import highway_tracker_config

    guard, tracker = parse_params(args.guard_param), parse_params(args.tracker_param)
    try:  # refused here, not in every episode
        GuardConfig(**dict(guard))
        highway_tracker_config(**dict(tracker))
    except (TypeError, ConfigError) as exc:
        print(f"bad --guard-param / --tracker-param: {exc}", file=sys.stderr)
        return 2

    seeds = parse_seeds(args.seeds) if args.seeds else splits.VALIDATION_CLOSED_LOOP_SEEDS
    test = set(splits.CLOSED_LOOP_SEEDS) | set(splits.OPEN_LOOP_TEST_SEEDS) | set(splits.ROS_SUBSET_SEEDS)
    if not all(splits.is_reserved_seed(s) for s in seeds) or test & set(seeds):
        print(f"seeds must be reserved and outside the test seeds: {seeds}", file=sys.stderr)
        return 2
    methods = tuple(args.methods.split(","))
    if args.open_loop:
        return open_loop(args, methods, seeds, guard)
    methods += () if "expert" in methods else ("expert",)  # EP's reference
    plan = EvalPlan(run_open_loop=False, closed_loop_seeds=seeds,
                    closed_loop_scenarios=tuple(args.scenarios.split(",")) if args.scenarios else None,
                    closed_loop_methods=methods, ros_subset_seeds=(), failure_pictures=False,
                    bootstrap_samples=200, guard_overrides=guard,
                    tracker_overrides=tracker)
    scores = run_evaluation(plan, Path(args.out), Path(args.checkpoints), args.workers, train_data=None, verbose=False)
    groups: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
    for ep in scores["closed_loop"]["episodes"]:
        groups[(ep["method"], ep["scenario"])].append(ep)
    print(f"{'method':32s} {'scenario':12s} {'n':>3s} {'score':>6s} {'at-fault':>8s} {'route':>6s} {'comfort':>7s}")
    for (method, scenario), eps in sorted(groups.items()):
        score = 100 * np.mean([e["score"] or 0.0 for e in eps]) if any(e["score"] is not None for e in eps) else float("nan")
        print(f"{method:32s} {scenario:12s} {len(eps):3d} {score:6.1f} {sum(bool(e['at_fault_collision']) for e in eps):8d} "
              f"{np.mean([e['route_completion'] for e in eps]):6.2f} {np.mean([e['c'] or 0.0 for e in eps]):7.3f}")
    if args.per_episode:
        print_episodes(groups)
    return 0


def open_loop(args: argparse.Namespace, methods: tuple[str, ...], seeds: tuple[int, ...],
              guard: tuple[tuple[str, object], ...]) -> int:
    """The open-loop suite of ``latentvla evaluate`` on logs of the validation ``seeds``: PDMS and sub-metrics
    per method and scenario (and per scene with ``--per-episode``)."""
    from latentvla_ros.apps.evaluate import EvalPlan, run_evaluation

    methods += tuple(m for m in ("pdm_closed", "expert") if m not in methods)  # EP's reference; the ceiling
    plan = EvalPlan(run_closed_loop=False, open_loop_seeds=seeds, open_loop_methods=methods,
                    closed_loop_methods=(), ros_subset_seeds=(), failure_pictures=False, bootstrap_samples=200,
                    guard_overrides=guard, scenarios=tuple(args.scenarios.split(",")) if args.scenarios else EvalPlan.scenarios)
    out = Path(args.out)
    logs = Path(args.logs) if args.logs else out / "logs"
    scores = run_evaluation(plan, out, Path(args.checkpoints), args.workers, test_data=logs, train_data=None,
                            verbose=False)
    groups: dict[tuple[str, str], list[dict]] = collections.defaultdict(list)
    for scene in scores["open_loop"]["scenes"]:
        groups[(scene["method"], scene["scenario"])].append(scene)
    keys = ("pdms", "nc", "dac", "ttc", "ep", "c")
    print(f"{'method':32s} {'scenario':12s} {'n':>3s} " + " ".join(f"{k:>6s}" for k in keys))
    for (method, scenario), rows in sorted(groups.items()):
        print(f"{method:32s} {scenario:12s} {len(rows):3d} "
              + " ".join(f"{100 * np.mean([r[k] for r in rows]):6.1f}" for k in keys))
    for method in sorted({m for m, _ in groups}):
        rows = [r for (m, _), rs in groups.items() if m == method for r in rs]
        print(f"{method:32s} {'all':12s} {len(rows):3d} " + " ".join(f"{100 * np.mean([r[k] for r in rows]):6.1f}" for k in keys))
    if args.per_episode:
        for (method, scenario), rows in sorted(groups.items()):
            for r in sorted(rows, key=lambda r: r["token"]):
                print(f"{method:32s} {r['token']:22s} " + " ".join(f"{k}={r[k]:.2f}" for k in keys)
                      + f" progress={r['progress_m']:.1f} m")
    return 0


def print_episodes(groups: dict[tuple[str, str], list[dict]]) -> None:
    """One row per episode: score, EP, comfort, failed comfort checks, guard verdicts, termination."""
    print(f"\n{'method':32s} {'scenario':12s} {'seed':>5s} {'score':>6s} {'ep':>5s} {'comfort':>7s}  failed checks | guard | end")
    for (method, scenario), eps in sorted(groups.items()):
        for e in sorted(eps, key=lambda e: e["seed"]):
            failed = " ".join(f"{k}={v:.2f}" for k, v in e["comfort_checks"].items() if v < 1.0) or "-"
            verdicts = " ".join(f"{k}={n}" for k, n in sorted(e["guard_actions"].items())) or "-"
            score = 100 * e["score"] if e["score"] is not None else float("nan")
            print(f"{method:32s} {scenario:12s} {e['seed']:5d} {score:6.1f} {e['ep']:5.3f} {e['c']:7.3f}  {failed} | {verdicts} | "
                  f"{e['termination']}{' at-fault' if e['at_fault_collision'] else ''}")


if __name__ == "__main__":
    sys.exit(main())
