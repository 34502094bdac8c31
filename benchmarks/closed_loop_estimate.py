"""How long the full closed-loop suite of ``latentvla evaluate`` takes here, from a timed subset.

Runs a few seeds per scenario of the chosen methods in this process (one torch thread),
measures each method's wall time per simulated step, and extrapolates to the full plan
(every closed-loop method, ``splits.CLOSED_LOOP_SEEDS`` per scenario, plus the ROS subset)
on ``--workers`` cores from the CPU time of each episode (process time: what an idle
core would take; wall time on a shared machine is longer), two ways: with the steps the measured episodes took (episodes
that fail end early) and with every episode running as long as the expert's (every
method finishing its routes: the target).

    python benchmarks/closed_loop_estimate.py [--seeds 2] [--methods latentvla_student pdm_closed expert]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latentvla_ros.apps.evaluate import (
    EvalPlan,
    closed_loop_methods,
    closed_loop_task,
    resolve_methods,
    ros_closed_loop_method,
)
from latentvla_ros.core.fanout import worker_init
from latentvla_ros.data import splits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoints", default="checkpoints/edge")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per scenario to time")
    ap.add_argument("--methods", nargs="+", default=["latentvla_student", "pdm_closed", "expert"])
    ap.add_argument("--ros", action="store_true", help="also time the ROS-graph twin of latentvla_student")
    ap.add_argument("--workers", type=int, default=2, help="cores the full run would use")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    worker_init()
    plan = EvalPlan.full()
    seeds = plan.closed_loop_seeds[: args.seeds]
    specs = resolve_methods(args.checkpoints, False, str(Path(args.checkpoints) / "ego_mlp"))
    methods = closed_loop_methods(specs, plan)
    todo = [methods[m] for m in args.methods if m in methods]
    if args.ros and "latentvla_student" in methods:
        todo.append(ros_closed_loop_method(specs["latentvla_student"], methods["latentvla_student"], plan))
    rows = []
    for method in todo:
        for sc in plan.cl_scenarios:
            t0 = time.perf_counter()
            res = closed_loop_task(method, [(sc, s) for s in seeds], None, 90 if method.kind == "ros" else None)
            wall = time.perf_counter() - t0
            steps = sum(e["steps"] for e in res["episodes"])
            cpu = sum(e["cpu_s"] for e in res["episodes"])
            rows.append({"method": method.name, "kind": method.kind, "scenario": sc, "episodes": len(res["episodes"]),
                         "steps": steps, "wall_s": wall, "cpu_s": cpu, "s_per_step": cpu / max(steps, 1),
                         "terminations": [e["termination"] for e in res["episodes"]], "errors": res["errors"][:2]})
            print(f"{method.name:28s} {sc:13s} {steps:5d} steps {wall:7.1f} s wall, {cpu:7.1f} s CPU "
                  f"({1e3 * cpu / max(steps, 1):6.1f} CPU ms/step) "
                  f"{rows[-1]['terminations']}", flush=True)
    expert_steps = {r["scenario"]: r["steps"] / max(r["episodes"], 1) for r in rows if r["method"] == "expert"}
    per_step = {}
    for r in rows:
        per_step.setdefault(r["method"], []).append(r)
    n_seeds = len(splits.CLOSED_LOOP_SEEDS)
    total_measured = total_target = 0.0
    for name, rs in per_step.items():
        seeds_here = len(splits.ROS_SUBSET_SEEDS) if name.endswith("_ros") else n_seeds
        measured = sum(r["cpu_s"] / max(r["episodes"], 1) * seeds_here for r in rs)
        target = sum(r["s_per_step"] * expert_steps.get(r["scenario"], r["steps"] / max(r["episodes"], 1)) * seeds_here
                     for r in rs)
        total_measured += measured
        total_target += target
        print(f"{name:28s} full suite: {measured / 60:6.1f} core-min as measured, {target / 60:6.1f} core-min if every "
              f"episode runs as long as the expert's")
    print(f"timed methods together on {args.workers} cores: {total_measured / 60 / args.workers:.1f} min as measured, "
          f"{total_target / 60 / args.workers:.1f} min at the expert's episode lengths")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "expert_steps": expert_steps}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
