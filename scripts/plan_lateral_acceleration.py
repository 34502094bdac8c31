"""The lateral acceleration the learned planner's own plans ask for in closed loop (``core/plan_check.py``).

Drives the given episodes with a guarded planner variant (as ``latentvla evaluate`` does) and reads, for every
model plan before the obstacle guard, ``plan_lateral_acceleration`` from the ego's motion at that frame. Prints
per episode and per scenario the median / p90 / p99 / max and how many plans exceed the guard's plan-check
threshold (``GuardConfig.max_plan_lateral_accel_mps2``), and the worst plans' first poses.

    python scripts/plan_lateral_acceleration.py --method student highway:30006 intersection:30017
    python scripts/plan_lateral_acceleration.py --no-plan-check highway:30006
    python scripts/plan_lateral_acceleration.py --scenarios highway,merge,intersection,roundabout --seeds 30000-30002
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np
from validation_closed_loop import parse_seeds  # scripts/ is on the path of a script run as scripts/<name>.py


class _Recorder:
    """Wraps the model agent inside the guard: keeps (plan poses, ego velocity) of every plan it makes."""

    def __init__(self, agent: Any):
        self.inner, self.plans = agent, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def compute_trajectory(self, agent_input: Any) -> Any:
        traj = self.inner.compute_trajectory(agent_input)
        self.plans.append((np.asarray(traj.poses, dtype=np.float64).copy(), float(traj.interval_s),
                           np.asarray(agent_input.frame.ego.velocity, dtype=np.float64).copy()))
        return traj


def _episodes(args: argparse.Namespace) -> list[tuple[str, int]]:
    items = [(s, int(n)) for s, n in (e.split(":") for e in args.episodes)]
    if args.scenarios:
        items += [(sc, seed) for sc in args.scenarios.split(",") for seed in parse_seeds(args.seeds)]
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("episodes", nargs="*", help="scenario:seed")
    ap.add_argument("--scenarios", default="", help="comma-separated, with --seeds")
    ap.add_argument("--seeds", default="30000-30002", help="e.g. 30000-30002 or 30000,30004 (validation seeds)")
    ap.add_argument("--method", default="student", help="fusion of the planner variant (student|none|teacher)")
    ap.add_argument("--checkpoints", default="checkpoints/edge")
    ap.add_argument("--worst", type=int, default=3, help="print this many worst plans per episode")
    ap.add_argument("--no-plan-check", action="store_true", help="drive with the guard's plan check off (as before it)")
    args = ap.parse_args(argv)
    items = _episodes(args)
    if not items:
        ap.error("give scenario:seed episodes or --scenarios")

    import torch

    torch.set_num_threads(1)
    from pathlib import Path

    from latentvla_ros.apps.eval_methods import variant_agent
    from latentvla_ros.core.plan_check import PLAN_CHECK_HORIZON_S, plan_lateral_acceleration
    from latentvla_ros.evaluation.closed_loop import HighwayClosedLoopEnv, run_episode
    from latentvla_ros.evaluation.drivers import AgentDriver, episode_stamp_base

    spec, agent = variant_agent(args.method, Path(args.checkpoints))
    if agent is None:
        print(f"not available: {spec.reason}", file=sys.stderr)
        return 2
    guard = getattr(agent, "guard", None)
    if guard is None:
        print("the variant has no obstacle guard", file=sys.stderr)
        return 2
    guard.config.plan_check = not args.no_plan_check
    threshold = guard.config.max_plan_lateral_accel_mps2
    recorder = _Recorder(agent.agent)
    agent.agent = recorder
    by_scenario: dict[str, list[float]] = {}

    def summary(values: list[float]) -> str:
        v = np.asarray(values)
        q = np.percentile(v, [50, 90, 99]) if len(v) else [np.nan] * 3
        return (f"{len(v):5d} plans  median {q[0]:5.1f}  p90 {q[1]:5.1f}  p99 {q[2]:5.1f}  max {v.max() if len(v) else np.nan:5.1f}"
                f"  > {threshold:g}: {int(np.sum(v > threshold))}")

    print(f"lateral acceleration the model's plans ask for over their first {PLAN_CHECK_HORIZON_S:g} s [m/s^2]")
    for k, (scenario, seed) in enumerate(items):
        recorder.plans = []
        env = HighwayClosedLoopEnv(scenario, seed, stamp_base_ns=episode_stamp_base(k))
        result = run_episode(env, AgentDriver(agent, name=spec.name))
        need = [plan_lateral_acceleration(p, dt, v, PLAN_CHECK_HORIZON_S) for p, dt, v in recorder.plans]
        by_scenario.setdefault(scenario, []).extend(need)
        print(f"{scenario:12s} {seed:6d}  {summary(need)}  | {result.termination}, comfort {result.comfort:.3f}, "
              f"guard {dict(sorted(result.guard_actions.items()))}", flush=True)
        for i in np.argsort(need)[::-1][:args.worst]:
            poses, _, vel = recorder.plans[i]
            print(f"    step {i:4d}  {need[i]:5.1f} m/s^2  ego v ({vel[0]:.1f}, {vel[1]:.2f})  first poses "
                  f"{np.round(poses[:3, :2], 2).tolist()}")
    print()
    for scenario, values in by_scenario.items():
        print(f"{scenario:12s} all    {summary(values)}")
    print(f"{'all':12s}        {summary([x for v in by_scenario.values() for x in v])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
