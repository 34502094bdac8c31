"""Open-loop PDMS of the logged expert and the reference planner only (minutes, no checkpoints).

The same held-out logs, scene builder and scorer as ``latentvla evaluate`` (its open-loop part
with only the two rule-based methods), for iterating on the evaluation itself:

    python benchmarks/open_loop_expert.py [--test-data data/highway_test] [--workers 1] [--quick]

Prints PDMS (and sub-scores) overall and per scenario for ``expert`` and ``pdm_closed`` and the
wall time of the scoring; ``--json PATH`` also writes the per-scene rows.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from latentvla_ros.apps.evaluate import (
    OPEN_METRICS,
    EvalPlan,
    MethodSpec,
    _run_tasks,
    ensure_test_logs,
    open_loop_log_task,
    per_scenario_pdms,
)


def print_drift(logs: list[Path], stride: int) -> None:
    """The logged expert re-simulated: drift to its logged poses, and how far off the road."""
    import dataclasses

    import numpy as np

    from latentvla_ros.data.log_format import DrivingLog
    from latentvla_ros.evaluation.geometry import box_corners, distance_to_polygons, ego_box, points_in_union
    from latentvla_ros.evaluation.pdms import simulate_trajectories
    from latentvla_ros.evaluation.scenes import expert_drift_m, scene_from_log, scene_indices

    def farthest_outside(corners: np.ndarray, polygons: list) -> float:
        corners = corners.reshape(-1, 2)
        out = ~points_in_union(corners, polygons)
        return float(distance_to_polygons(corners[out], polygons, 10.0).max()) if out.any() else 0.0

    by: dict[str, dict[str, list]] = {}
    for d in logs:
        log = DrivingLog(d)
        mine = by.setdefault(str(log.meta.get("scenario")), {"now": [], "before": [], "off": [], "logged": []})
        poses = np.array([log.ego_pose(k) for k in range(int(log.num_frames))])
        logged = box_corners(poses[:, 0], poses[:, 1], poses[:, 2], log.meta["ego_length_m"], log.meta["ego_width_m"])
        polygons = [np.asarray(p, dtype=np.float64) for p in log.map.drivable_polygons]
        mine["logged"].append(farthest_outside(logged, polygons))
        for t in scene_indices(log, stride=stride):
            scene = scene_from_log(log, t)
            if scene.expert_trajectory is None:
                continue
            earlier = dataclasses.replace(scene, poses_are_box_centers=False, rear_axle_to_center_m=0.0,
                                          wheel_base_m=None, accel_time_constant_s=0.2, steering_time_constant_s=0.05)
            mine["now"].append(expert_drift_m(scene))
            mine["before"].append(expert_drift_m(earlier))
            st = simulate_trajectories(scene, [scene.expert_trajectory])[0]
            v = scene.vehicle
            corners, _ = ego_box(st[:, 0], st[:, 1], st[:, 2], v.length_m, v.width_m, v.rear_axle_to_center_m)
            mine["off"].append(farthest_outside(corners, scene.drivable_polygons))
    print("expert re-simulated: distance to its logged poses [m], mean / worst (earlier vehicle model -> now);")
    print("  logged boxes: farthest corner outside the drivable polygons [m]; re-simulated expert: DAC by tolerance")
    tols = (0.0, 0.25, 0.5, 1.0)
    for sc, v in sorted(by.items()):
        b, n, off = np.concatenate(v["before"]), np.concatenate(v["now"]), np.asarray(v["off"])
        dac = " ".join(f"{tol:g} m {100 * np.mean(off <= tol):.0f}%" for tol in tols)
        print(f"  {sc:12s} {b.mean():.2f} / {b.max():.2f} -> {n.mean():.2f} / {n.max():.2f}  ({len(v['now'])} scenes)"
              f" | logged {max(v['logged']):.2f} m | DAC {dac}")
    b = np.concatenate([np.concatenate(v["before"]) for v in by.values()])
    n = np.concatenate([np.concatenate(v["now"]) for v in by.values()])
    print(f"  {'all':12s} {b.mean():.2f} / {b.max():.2f} -> {n.mean():.2f} / {n.max():.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--test-data", default="data/highway_test")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="the --quick plan's logs (one seed, 60 frames)")
    ap.add_argument("--json", default="", help="write the per-scene rows here")
    ap.add_argument("--drift", action="store_true",
                    help="also re-simulate the logged expert's own poses with the scorer's tracker and vehicle, "
                         "and with the earlier vehicle model (box centre as rear axle, wheelbase 0.6 L, NAVSIM's "
                         "actuator lags): mean / worst distance to the logged poses per scenario")
    args = ap.parse_args(argv)
    plan = EvalPlan.quick() if args.quick else EvalPlan.full()
    t0 = time.perf_counter()
    logs = ensure_test_logs(Path(args.test_data), plan, args.workers)
    t_logs = time.perf_counter() - t0
    specs = [MethodSpec("pdm_closed", "pdm_closed"), MethodSpec("expert", "expert")]
    t0 = time.perf_counter()
    rows, errors = [], []
    for res in _run_tasks([(open_loop_log_task, (str(d), specs, plan.scene_stride, False)) for d in logs], args.workers):
        rows += res["rows"]
        errors += res["errors"]
    t_score = time.perf_counter() - t0
    print(f"{len(logs)} logs ({t_logs:.0f} s to prepare), {len({r['token'] for r in rows})} scenes scored "
          f"in {t_score:.0f} s with {args.workers} worker(s)")
    per = per_scenario_pdms(rows, [s.name for s in specs])
    scenarios = sorted({r["scenario"] for r in rows})
    print("method      | " + " | ".join(["all"] + scenarios) + " | " + " ".join(OPEN_METRICS[1:]))
    for s in specs:
        mine = [r for r in rows if r["method"] == s.name]
        if not mine:
            continue
        subs = " ".join(f"{100 * sum(r[m] for r in mine) / len(mine):.1f}" for m in OPEN_METRICS[1:])
        cells = [f"{100 * sum(r['pdms'] for r in mine) / len(mine):.1f}"]
        cells += [f"{per[s.name].get(sc, float('nan')):.1f}" for sc in scenarios]
        print(f"{s.name:11s} | " + " | ".join(cells) + " | " + subs)
    if args.drift:
        print_drift(logs, plan.scene_stride)
    for e in errors[:10]:
        print("error:", e.splitlines()[0][:300], file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1, default=float))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
