"""Where a frame's time goes in the composed graph: wall and CPU time of the functions on the
frame path, per frame, by wrapping them with timers and running ``latentvla bench``.

    python benchmarks/profile_frame_path.py --out /tmp/prof -- --rate edge=10 --frames edge=200 \
        --configs edge --backends onnx --executors events --modes composed,instant --sections graph

Everything after ``--`` goes to ``latentvla bench``. The table is for the frames of the
``instant`` run (forward passes answered at once: what the graph costs besides the models);
``--phase real`` gives the composed run with the real models. Columns: calls per frame, wall
and CPU time per frame summed over the calls (medians; p90 of the wall time), and when the
first call starts / the last ends, in us after the frame's sensor stamp, the threads that ran
it. Nested functions are included in their callers. The timers add a few us per call.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

EVENTS: list[tuple] = []  # (label, thread, wall start ns, wall end ns, cpu ns, phase, stamp or None)
PHASE = ["real"]
STAMP_LABEL = "harness.publish"


def wrap(owner, name: str, label: str) -> None:
    """Replace ``owner.name`` (a module function or a class attribute) by a timed wrapper."""
    if isinstance(owner, str):
        owner = importlib.import_module(owner)
    fn = getattr(owner, name)
    static = isinstance(owner, type) and isinstance(owner.__dict__.get(name), staticmethod)

    @functools.wraps(fn)
    def timed(*args, **kwargs):
        wall, cpu = time.time_ns(), time.thread_time_ns()
        result = None
        try:
            result = fn(*args, **kwargs)
            return result
        finally:
            EVENTS.append((label, threading.current_thread().name, wall, time.time_ns(), time.thread_time_ns() - cpu,
                           PHASE[0], result if label == STAMP_LABEL else None))

    setattr(owner, name, staticmethod(timed) if static else timed)


#: (module or class path, attribute, label) of the functions timed
TIMED = [
    ("latentvla_ros.apps.bench.harness:Harness", "publish", STAMP_LABEL),  # returns the frame's stamp
    ("latentvla_ros.apps.bench.harness:Harness", "_on_trajectory", "harness._on_trajectory"),
    ("latentvla_ros.ros.sync:_BuiltinHandle", "_on_msg", "sync._on_msg"),
    ("latentvla_ros.ros.nodes.sensor_sync:SensorSyncNode", "_check_stream", "sensor_sync._check_stream"),
    ("latentvla_ros.ros.nodes.sensor_sync:SensorSyncNode", "_on_synchronized", "sensor_sync._on_synchronized"),
    ("latentvla_ros.ros.nodes.sensor_sync:SensorSyncNode", "_share_conversion", "sensor_sync._share_conversion"),
    ("latentvla_ros.ros.intra_process:IntraProcessPublisher", "publish", "intra_process.publish"),
    ("latentvla_ros.ros.latest_frame:LatestFrame", "offer", "latest_frame.offer"),
    ("latentvla_ros.ros.latest_frame:LatestFrame", "run", "latest_frame.run"),
    ("rclpy.publisher:Publisher", "publish", "rclpy.publish"),
    ("rclpy.publisher:Publisher", "get_subscription_count", "rclpy.get_subscription_count"),
    ("latentvla_ros.ros.node_base:LatentVlaNode", "_publish_diagnostics", "node._publish_diagnostics"),
    ("latentvla_ros.ros.nodes.bev_features:BevFeaturesNode", "_on_frame", "bev_features._on_frame"),
    ("latentvla_ros.ros.nodes.latent_reasoner:LatentReasonerNode", "_on_frame", "latent_reasoner._on_frame"),
    ("latentvla_ros.runtime:BevFeatureExtractor", "extract", "model: bev extract"),
    ("latentvla_ros.runtime:LatentReasoner", "reason", "model: reasoner"),
    ("latentvla_ros.runtime:TrajectoryPlanner", "plan", "model: planner"),
    ("latentvla_ros.ros.nodes.trajectory_planner:TrajectoryPlannerNode", "_on_bev", "planner._on_bev"),
    ("latentvla_ros.ros.nodes.trajectory_planner:TrajectoryPlannerNode", "_on_plan", "planner._on_plan"),
    ("latentvla_ros.ros.nodes.trajectory_planner:TrajectoryPlannerNode", "_on_odometry", "planner._on_odometry"),
    ("latentvla_ros.ros.nodes.trajectory_planner:TrajectoryPlannerNode", "_on_frame", "planner._on_frame (guard input)"),
    ("latentvla_ros.ros.nodes.trajectory_planner:TrajectoryPlannerNode", "_on_lidar", "planner._on_lidar (guard input)"),
    ("latentvla_ros.ros.guard_input:GuardInput", "filter", "planner: obstacle guard"),
    ("latentvla_ros.ros.nodes.trajectory_planner:TrajectoryPlannerNode", "_publish", "planner._publish"),
    ("latentvla_ros.ros.nodes.trajectory_planner", "trajectory_to_msg", "planner: trajectory_to_msg"),
]


def install() -> None:
    from latentvla_ros.apps.bench import graph

    for where, name, label in TIMED:
        module, _, cls = where.partition(":")
        owner = importlib.import_module(module)
        wrap(getattr(owner, cls) if cls else owner, name, label)
    run_instant = graph.run_instant

    def instant_phase(*args, **kwargs):
        PHASE[0] = "instant"
        try:
            return run_instant(*args, **kwargs)
        finally:
            PHASE[0] = "after"

    graph.run_instant = instant_phase


def table(events: list, phase: str) -> list[str]:
    import numpy as np

    events = sorted((e for e in events if e[5] == phase), key=lambda e: e[2])
    stamps = sorted(e[6] for e in events if e[0] == STAMP_LABEL and e[6])
    starts = np.array([e[2] for e in events])
    rows: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    threads: dict[str, set] = defaultdict(set)
    frames = 0
    for stamp, following in zip(stamps[5:-1], stamps[6:]):  # skip the warm-up's first frames
        end = min(stamp + 80_000_000, following)
        a, b = np.searchsorted(starts, stamp - 2_000_000), np.searchsorted(starts, end)
        per_label = defaultdict(list)
        for e in events[a:b]:
            per_label[e[0]].append(e)
            threads[e[0]].add(e[1])
        frames += 1
        for label, calls in per_label.items():
            row = rows[label]
            row["calls"].append(len(calls))
            row["wall"].append(sum(c[3] - c[2] for c in calls) / 1e3)
            row["cpu"].append(sum(c[4] for c in calls) / 1e3)
            row["start"].append((min(c[2] for c in calls) - stamp) / 1e3)
            row["end"].append((max(c[3] for c in calls) - stamp) / 1e3)
    out = [f"{frames} frames ({phase}); times in us per frame, start/end after the sensor stamp",
           f"{'function':34s} {'calls':>5s} {'wall':>6s} {'p90':>6s} {'cpu':>6s} {'start':>6s} {'end':>6s}  threads"]
    for label, row in sorted(rows.items(), key=lambda kv: np.median(kv[1]["start"])):
        out.append(f"{label:34s} {sum(row['calls']) / frames:5.2f} {np.median(row['wall']):6.0f} "
                   f"{np.percentile(row['wall'], 90):6.0f} {np.median(row['cpu']):6.0f} {np.median(row['start']):6.0f} "
                   f"{np.median(row['end']):6.0f}  {','.join(sorted(threads[label]))[:70]}")
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the bench's output folder; events.json goes there")
    parser.add_argument("--phase", default="instant", choices=("instant", "real"))
    parser.add_argument("bench", nargs=argparse.REMAINDER, help="-- then the arguments of latentvla bench")
    args = parser.parse_args(argv)
    bench_args = [a for a in args.bench if a != "--"]
    from latentvla_ros.apps.bench.main import main as bench_main
    from latentvla_ros.apps.bench.options import add_bench_arguments

    install()
    bench_parser = argparse.ArgumentParser()
    add_bench_arguments(bench_parser)
    try:
        bench_main(bench_parser.parse_args(["--out", str(args.out), *bench_args]))
    finally:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "events.json").write_text(json.dumps(EVENTS))
    print("\n".join(table(EVENTS, args.phase)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
