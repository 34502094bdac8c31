"""Speed profiles of the learned planner's open-loop plans beside the logged expert's, scene by scene.

For each scene (``SCENARIO:SEED:FRAME`` of the held-out open-loop logs, generated as ``latentvla evaluate``
generates them) it prints the ego speed, the driving command, the mean speed between consecutive poses of the
logged expert's 8 poses and of the model's own plan (fused student and no fusion, both without the obstacle
guard) [m/s], and each plan's last pose (x forward, y left) [m]. Used to see where the open-loop EP is lost
(docs/evaluation.md, "Where the learned planner loses open loop").

    python scripts/open_loop_plan_speeds.py roundabout:10001:10 intersection:10002:50

A multi-modal planner (``PlannerConfig.num_modes`` > 1) also prints each mode's speeds and probability (the
row the planner drives is the most likely mode's). ``--test-data`` / ``--seeds`` read other held-out logs, e.g.
the validation logs of ``scripts/validation_closed_loop.py --open-loop --logs DIR --seeds 30000-30004``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def segment_speeds(poses: np.ndarray, interval_s: float = 0.5) -> np.ndarray:
    pts = np.vstack([[0.0, 0.0], np.asarray(poses, dtype=np.float64)[:, :2]])
    return np.hypot(*np.diff(pts, axis=0).T) / interval_s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenes", nargs="+", help="SCENARIO:SEED:FRAME, e.g. roundabout:10001:10")
    ap.add_argument("--checkpoints", default="checkpoints/edge")
    ap.add_argument("--test-data", default="data/highway_test")
    ap.add_argument("--methods", default="latentvla_student_unguarded,latentvla_none")
    ap.add_argument("--seeds", default="", help="the logs' seeds, e.g. 30000-30004 (default: the open-loop test seeds)")
    args = ap.parse_args(argv)

    import torch

    from latentvla_ros.apps.evaluate import EvalPlan, build_open_loop_agent, ensure_test_logs, resolve_methods
    from latentvla_ros.core.agent import agent_input_of
    from latentvla_ros.core.types import DrivingCommand
    from latentvla_ros.data.highway import log_name
    from latentvla_ros.data.log_format import DrivingLog
    from latentvla_ros.data.route import log_route_ego
    from latentvla_ros.evaluation.scenes import scene_from_log
    from latentvla_ros.models.modeling_planner import FusedPlanner

    seen: list[tuple[np.ndarray, np.ndarray]] = []  # (modes (K, P, 3), probabilities (K,)) of the last planner call

    def record_modes(module, args, kwargs, output):  # every FusedPlanner call: its modes beside the driven plan
        if isinstance(module, FusedPlanner) and module.config.num_modes > 1:
            with torch.no_grad():
                poses, logits = module.forward_modes(*args, **kwargs)
            seen.append((poses[0].numpy(), torch.softmax(logits[0], dim=0).numpy()))

    torch.nn.modules.module.register_module_forward_hook(record_modes, with_kwargs=True)
    if args.seeds:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from validation_closed_loop import parse_seeds

        plan = EvalPlan(open_loop_seeds=parse_seeds(args.seeds))
    else:
        plan = EvalPlan()
    logs = {d.name: d for d in ensure_test_logs(Path(args.test_data), plan, workers=1)}  # generated once
    specs = resolve_methods(args.checkpoints, False, None)
    agents = {name: build_open_loop_agent(specs[name]) for name in args.methods.split(",")}
    np.set_printoptions(precision=1, suppress=True, floatmode="fixed")
    for text in args.scenes:
        scenario, seed, frame_index = text.split(":")
        name = log_name(scenario, int(seed), plan.density)
        if name not in logs:
            print(f"{text}: no held-out log {name} (seeds {plan.open_loop_seeds})")
            continue
        log = DrivingLog(logs[name])
        t = int(frame_index)
        scene, frame, route = scene_from_log(log, t), log.sensor_frame(t), log_route_ego(log, t)
        command = DrivingCommand(int(frame.ego.command)).name
        print(f"{text}: ego {float(np.hypot(*frame.ego.velocity)):.1f} m/s, command {command}")
        rows = [("expert (log)", np.asarray(scene.expert_trajectory))]
        for name, agent in agents.items():
            if hasattr(agent, "reset"):
                agent.reset()
            seen.clear()
            rows.append((name, np.asarray(agent.compute_trajectory(agent_input_of(frame, route=route)).poses)))
            if seen:
                modes, prob = seen[-1]
                rows += [(f"  mode {k} (p {prob[k]:.2f})", modes[k]) for k in range(len(prob))]
        for name, poses in rows:
            print(f"  {name:30s} speeds {segment_speeds(poses)}  last pose {poses[-1, :2]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
