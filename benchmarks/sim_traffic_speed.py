"""Simulation speed with and without data/highway_fast.py's cached traffic loops, per scenario: one
closed-loop episode driven by the expert (no sensors) and one by constant velocity (camera + LiDAR
rendered, as every learned method is), each run twice -- highway-env's own loops, then the cached
ones -- printing the wall time of both, the speed-up and whether every vehicle's state matched at
every step (it must: the caches are exact).

    python benchmarks/sim_traffic_speed.py [--seed 30000] [--steps 150]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")


def trace(scenario: str, seed: int, steps: int, fast: bool, expert: bool) -> tuple[list, float, type]:
    """(every vehicle's (x, y, heading, speed, target speed, yielding) per step, wall seconds, the road's class)
    of one episode (test/test_highway_fast.py compares these rows)."""
    from latentvla_ros.data import highway_fast
    from latentvla_ros.evaluation.baselines import ConstantVelocityPlanner
    from latentvla_ros.evaluation.closed_loop import ClosedLoopConfig, HighwayClosedLoopEnv, run_episode
    from latentvla_ros.evaluation.drivers import ExpertDriver, PlannerDriver

    highway_fast.ENABLED = fast
    env = HighwayClosedLoopEnv(scenario, seed, ClosedLoopConfig(max_steps=steps), sensors=not expert, expert=expert)
    driver = ExpertDriver() if expert else PlannerDriver(ConstantVelocityPlanner(use_yaw_rate=False))
    rows: list = []
    classes: list = []

    def on_step(obs, traj, control, outcome) -> None:
        classes.append(type(env.env.road))
        rows.append([(float(v.position[0]), float(v.position[1]), float(v.heading), float(v.speed),
                      float(getattr(v, "target_speed", 0.0)), bool(getattr(v, "is_yielding", False)))
                     for v in env.env.road.vehicles])

    t0 = time.perf_counter()
    try:
        run_episode(env, driver, on_step=on_step)
    finally:
        env.close()
    return rows, time.perf_counter() - t0, classes[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=30000)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--scenarios", default="highway,merge,roundabout,intersection")
    args = ap.parse_args()
    print(f"{'scenario':<13} {'driver':<18} {'steps':>5} {'highway-env s':>13} {'cached s':>9} {'speed-up':>8}  identical")
    for scenario in args.scenarios.split(","):
        for expert in (True, False):  # a short untimed episode first: imports and first renders not in the figures
            trace(scenario, args.seed, 2, True, expert)
        for expert in (True, False):
            slow, t_slow, _ = trace(scenario, args.seed, args.steps, False, expert)
            fast, t_fast, _ = trace(scenario, args.seed, args.steps, True, expert)
            name = "expert" if expert else "constant velocity"
            print(f"{scenario:<13} {name:<18} {len(slow):>5} {t_slow:>13.1f} {t_fast:>9.1f} {t_slow / t_fast:>7.2f}x  "
                  f"{fast == slow}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
