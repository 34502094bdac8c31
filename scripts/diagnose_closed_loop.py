"""Diagnose closed-loop episodes of one method, step by step (issue 12, item 2).

For every step: the route command the agent got, the command the route asks for further
ahead, the plan's lateral distance from the mission route (signed, + = left of the route) at
its 2 s and 4 s poses, whether the planned boxes leave the drivable area, the ego's own
lateral offset, its speed, the obstacle guard's verdict (with a conflict: when, where the
conflicting track is now and how it moves, ego frame), and the nearest agent. Prints one line every ``--every`` steps and
a summary per episode: when the plan first left the route / the road, what the car did, and the
contacts of a collision (``EpisodeResult.contacts``).

    python scripts/diagnose_closed_loop.py --method student intersection:20000 roundabout:20010
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("episodes", nargs="+", help="scenario:seed")
    ap.add_argument("--method", default="student", help="fusion of the planner variant (student|none|teacher)")
    ap.add_argument("--checkpoints", default="checkpoints/edge")
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--json", default="", help="write the per-step records here")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from pathlib import Path

    from latentvla_ros.apps.eval_methods import variant_agent
    from latentvla_ros.core.lanes import Polyline
    from latentvla_ros.evaluation.closed_loop import HighwayClosedLoopEnv, run_episode
    from latentvla_ros.evaluation.drivers import AgentDriver, episode_stamp_base
    from latentvla_ros.evaluation.geometry import box_corners, ego_to_world_poses, points_in_union

    spec, agent = variant_agent(args.method, Path(args.checkpoints))
    if agent is None:
        print(f"not available: {spec.reason}", file=sys.stderr)
        return 2
    driver = AgentDriver(agent, name=spec.name)
    records: dict[str, list[dict]] = {}
    for k, item in enumerate(args.episodes):
        scenario, seed = item.split(":")
        env = HighwayClosedLoopEnv(scenario, int(seed), stamp_base_ns=episode_stamp_base(k))
        rows: list[dict] = []
        route: list[Polyline] = []

        def on_step(obs, traj, control, outcome, env=env, rows=rows, route=route):
            if not route:
                route.append(Polyline(env.route.points))
            line = route[0]
            row = {"step": obs.step, "cmd": int(obs.ego.command), "speed": round(float(obs.speed_mps), 2),
                   "progress": round(float(outcome.progress_m), 1)}
            _, d_ego = line.frenet(obs.pose[None, :2])
            row["ego_lat"] = round(float(d_ego[0]), 2)
            if traj is not None:
                poses = np.asarray(traj.poses, dtype=np.float64)
                # the plan was made at the previous pose: the driver's plan is in the frame of
                # the observation it got; the record is one step late (the env moved 0.1 s)
                world = ego_to_world_poses(np.asarray(rows[-1]["pose"]) if rows else obs.pose, poses)
                _, lat = line.frenet(world[:, :2])
                row["plan_lat_2s"], row["plan_lat_4s"] = round(float(lat[3]), 2), round(float(lat[-1]), 2)
                row["plan_len"] = round(float(np.hypot(*poses[-1, :2])), 1)
                off = []
                for p in world:
                    c = box_corners(p[0], p[1], p[2], env.ego_length_m, env.ego_width_m)
                    off.append(not bool(np.all(points_in_union(c, env._drivable, 0.5))))
                row["plan_off_road_at"] = next((i for i, o in enumerate(off) if o), None)
            verdict = getattr(agent, "last_verdict", None)  # the obstacle guard's, on the plan driven
            if verdict is not None:
                row["guard"] = verdict.action + ("+limit" if verdict.limited and verdict.action != "limit" else "")
                if verdict.conflict_point is not None:
                    row["conflict"] = {"t_s": round(verdict.conflict_time_s, 1),
                                       "at_m": [round(v, 1) for v in verdict.conflict_point],
                                       "v_mps": [round(v, 1) for v in verdict.conflict_velocity]}
            if len(obs.agents):
                d = np.hypot(obs.agents[:, 0] - obs.pose[0], obs.agents[:, 1] - obs.pose[1])
                j = int(np.argmin(d))
                row["nearest_agent_m"] = round(float(d[j]), 1)
            row["pose"] = [round(float(v), 2) for v in obs.pose]
            rows.append(row)

        result = run_episode(env, driver, on_step=on_step)
        records[item] = rows
        print(f"=== {item} turn={result.turn} dest={result.destination} termination={result.termination} "
              f"steps={result.steps} progress={result.progress_m:.1f}/{result.route_length_m:.1f} m")
        for r in rows[:: max(args.every, 1)] + rows[-3:]:
            print("  ", {k: v for k, v in r.items() if k != "pose"})
        left = next((r for r in rows if abs(r.get("plan_lat_4s", 0.0)) > 2.0), None)
        off = next((r for r in rows if r.get("plan_off_road_at") is not None), None)
        print(f"   first plan 4s-pose > 2 m off the route: {left and left['step']}; "
              f"first plan leaving the road: {off and (off['step'], off['plan_off_road_at'])}")
        for c in getattr(result, "contacts", []) or []:
            print("   contact:", c)
    if args.json:
        Path(args.json).write_text(json.dumps(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
