"""`latentvla demo` / `make demo`: a driving log from highway-env, recorded as a rosbag2
MCAP, replayed through the node graph; writes a summary and a picture.

Everything goes through ROS 2 topics exactly as on a vehicle with `ros2 bag play`:
the bag player publishes the sensor topics (+ /clock), the graph synchronizes,
extracts BEV features, reasons in latent actions and plans; a monitor records the
outputs (also to an MCAP that opens in Foxglove).
"""
from __future__ import annotations

import json
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np

from latentvla_ros.ros.contracts.monitoring import percentile_summary

OUTPUT_TOPICS = ("planning/latentvla/trajectory", "planning/latentvla/path", "planning/latentvla/markers", "diagnostics")


def _checkpoint_overrides(checkpoints: str) -> dict[str, dict[str, object]]:
    from latentvla_ros.core.resources import resolve_path

    root = resolve_path(checkpoints)
    overrides: dict[str, dict[str, object]] = {}
    for node, sub in (("bev_features", "bev_backbone"), ("latent_reasoner", "student"), ("trajectory_planner", "planner")):
        overrides[node] = {"checkpoint": str(root / sub) if (root / sub / "model.safetensors").is_file() else ""}
    return overrides


class _Monitor:
    """Subscribes to the graph's frames and trajectories; wall-clock arrival times."""

    def __init__(self, node):
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        from latentvla_ros.msg import PlannedTrajectory, SensorFrame
        from latentvla_ros.ros.topology import SENSOR_FRAME, TRAJECTORY

        qos = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.frame_arrival: dict[int, float] = {}
        self.trajectories: list[tuple[float, object]] = []
        node.create_subscription(SensorFrame, "/" + SENSOR_FRAME, self._on_frame, qos)
        node.create_subscription(PlannedTrajectory, "/" + TRAJECTORY, self._on_traj, qos)

    def _on_frame(self, msg):
        from latentvla_ros.ros.conversions import stamp_to_ns

        self.frame_arrival[stamp_to_ns(msg.header.stamp)] = time.monotonic()

    def _on_traj(self, msg):
        self.trajectories.append((time.monotonic(), msg))


def run_demo(out: Path, num_frames: int = 200, scenario: str = "highway", seed: int = 7,
             checkpoints: str = "checkpoints/edge", rate: float = 1.0, mode: str = "composed",
             backend: str | None = None, executor: str = "auto") -> int:
    import rclpy
    from rclpy.context import Context

    from latentvla_ros.data.bag_io import write_sensor_bag
    from latentvla_ros.data.highway import generate_log
    from latentvla_ros.ros.bag_player import BagPlayer
    from latentvla_ros.ros.bag_recorder import BagRecorder
    from latentvla_ros.ros.conversions import msg_to_trajectory, stamp_to_ns
    from latentvla_ros.ros.executors import GraphExecutor
    from latentvla_ros.ros.graph import (
        GraphOptions,
        apply_transport_env,
        create_composed_nodes,
        spawn_processes,
        stop_processes,
        wait_for_graph_ready,
    )
    from latentvla_ros.ros.topology import graph_nodes

    apply_transport_env()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    print(f"[demo] 1/4 generating a {num_frames}-frame {scenario} log (seed {seed}) with highway-env", flush=True)
    log_dir = out / "log"
    stats = generate_log(log_dir, scenario=scenario, seed=seed, num_frames=num_frames, overwrite=True)
    import shutil

    bag, outputs_bag = out / "sensors_bag", out / "outputs_bag"
    for old in (bag, outputs_bag):
        if old.exists():
            shutil.rmtree(old)
    print("[demo] 2/4 recording it as a rosbag2 MCAP", flush=True)
    from latentvla_ros.data.log_format import DrivingLog
    from latentvla_ros.data.route import log_route_world

    demo_log = DrivingLog(log_dir)  # the mission route goes into the bag beside the sensors (the planner's ~/input/route)
    counts = write_sensor_bag(log_dir, bag, storage="mcap", routes=lambda t: log_route_world(demo_log, t))
    overrides = _checkpoint_overrides(checkpoints)
    if backend:
        for node in ("bev_features", "latent_reasoner", "trajectory_planner"):
            overrides[node]["backend"] = backend
    untrained = [n for n, o in overrides.items() if not o["checkpoint"]]
    if untrained:
        print(f"[demo] WARNING: no trained checkpoint under {checkpoints} for {untrained}: running UNTRAINED weights "
              "(allow_untrained: the trajectories are flagged 'untrained' in model_id)", flush=True)
        overrides["trajectory_planner"]["allow_untrained"] = True
    options = GraphOptions(nodes=graph_nodes(), overrides=overrides, use_sim_time=True, log_level="warn",
                           executor=executor)

    context = Context()
    rclpy.init(context=context)
    spinner = GraphExecutor(context=context, kind=executor)
    graph_nodes_live, procs = [], []
    try:
        print(f"[demo] 3/4 replaying the bag through the graph ({mode}) at rate {rate}", flush=True)
        if mode == "composed":
            graph_nodes_live = create_composed_nodes(options, context=context)
        else:
            procs = spawn_processes(options)
        monitor_node = rclpy.create_node("demo_monitor", context=context)
        monitor = _Monitor(monitor_node)
        recorder_node = rclpy.create_node("demo_recorder", context=context)
        recorder = BagRecorder(recorder_node, str(outputs_bag), ["/" + t for t in OUTPUT_TOPICS], storage="mcap")
        player_node = rclpy.create_node("demo_player", context=context)
        spinner.add(*graph_nodes_live, monitor_node, recorder_node, player_node).start()
        if not wait_for_graph_ready(player_node, options.nodes, timeout_s=60.0 if procs else 20.0):
            print("[demo] WARNING: the graph's topics did not all connect in time", flush=True)
        player = BagPlayer(player_node, str(bag), rate=rate, publish_clock=True, wait_for_subscribers_s=5.0)
        player.start()
        player.wait(timeout=num_frames * 0.1 / rate + 120)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # let the last frames through the graph
            frames = set(monitor.frame_arrival)
            done = {stamp_to_ns(m.header.stamp) for _, m in monitor.trajectories} & frames
            if frames and done == frames:
                break
            time.sleep(0.1)
        time.sleep(0.5)
        node_stats = {n.get_name(): n.stats.snapshot() for n in graph_nodes_live}
        player_stats = player.stats()
        recorder.close()
    finally:
        spinner.stop()
        if procs:
            stop_processes(procs)
        for n in graph_nodes_live:
            n.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)

    frame_stamps = set(monitor.frame_arrival)
    per_frame = [(arr, m) for arr, m in monitor.trajectories if stamp_to_ns(m.header.stamp) in frame_stamps]
    per_frame_counts = Counter(stamp_to_ns(m.header.stamp) for _, m in per_frame)
    latency = [(arr - monitor.frame_arrival[stamp_to_ns(m.header.stamp)]) * 1e3 for arr, m in per_frame]
    summary = {
        "scenario": scenario, "seed": seed, "log_frames": stats.num_frames if hasattr(stats, "num_frames") else num_frames,
        "bag_messages": counts, "mode": mode, "rate": rate,
        "frames_in": player_stats.get("published", {}),
        "synchronized_frames": len(frame_stamps),
        "trajectories_for_frames": len(per_frame),
        "frames_with_exactly_one_trajectory": sum(1 for c in per_frame_counts.values() if c == 1),
        "fallback_trajectories_for_frames": sum(1 for _, m in per_frame if m.is_fallback),
        "watchdog_fallbacks_outside_frames": len(monitor.trajectories) - len(per_frame),
        "model_ids": sorted({m.model_id for _, m in per_frame}),
        "drops": {name: s["dropped"] for name, s in node_stats.items()},
        "processing_time_ms": {name: s["processing"] for name, s in node_stats.items()},
        "frame_to_trajectory_latency_ms": percentile_summary(latency),
        # frames without a trajectory must all be counted drops somewhere in the graph
        "unaccounted_frames": max(0, len(frame_stamps) - len(per_frame_counts)
                                  - max((s["dropped"].get("frame_lost_upstream", 0) for s in node_stats.values()), default=0)),
        "seconds": round(time.time() - t0, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print("[demo] 4/4 plotting planned vs. logged trajectories", flush=True)
    _plot(out / "trajectories.png", log_dir, [m for _, m in per_frame], msg_to_trajectory)
    _print_summary(summary, out)
    ok = summary["synchronized_frames"] > 0 and summary["unaccounted_frames"] == 0
    return 0 if ok else 1


def _print_summary(s: dict, out: Path) -> None:
    print("\n=== latentvla demo summary ===")
    print(f"bag: {s['log_frames']} frames of {s['scenario']} (seed {s['seed']}); messages in: "
          + ", ".join(f"{k}={v}" for k, v in sorted(s["frames_in"].items())))
    print(f"synchronized frames: {s['synchronized_frames']}   trajectories for them: {s['trajectories_for_frames']} "
          f"(exactly one each: {s['frames_with_exactly_one_trajectory']}, fallbacks: {s['fallback_trajectories_for_frames']})")
    print(f"frames without a trajectory that no node counted as dropped: {s['unaccounted_frames']}")
    print(f"models: {', '.join(s['model_ids'])}")
    print(f"{'node':<20}{'median ms':>10}{'p99 ms':>10}{'count':>8}  drops")
    for name, p in s["processing_time_ms"].items():
        drops = s["drops"].get(name, {})
        print(f"{name:<20}{p.get('median_ms', math.nan):>10.2f}{p.get('p99_ms', math.nan):>10.2f}{p.get('count', 0):>8}  {drops or 0}")
    lat = s["frame_to_trajectory_latency_ms"]
    if lat.get("count"):
        print(f"sensor frame -> trajectory: median {lat['median_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms")
    print(f"wrote {out / 'summary.json'}, {out / 'trajectories.png'}, {out / 'outputs_bag'} ({s['seconds']} s)")


def _plot(path: Path, log_dir: Path, trajectories: list, to_traj) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latentvla_ros.data.log_format import DrivingLog

    log = DrivingLog(log_dir)
    from latentvla_ros.data.bag_io import DEFAULT_EPOCH_S

    # write_sensor_bag shifts the log's clock to DEFAULT_EPOCH_S
    stamps = log.timestamps_ns - log.timestamps_ns[0] + DEFAULT_EPOCH_S * 1_000_000_000
    meta = log.meta
    mpp = float(meta.get("camera_meters_per_pixel", 0.5))
    c0, r0 = meta.get("camera_ego_pixel_xy", [64, 96])
    by_stamp = {}
    for m in trajectories:
        by_stamp.setdefault(m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec, m)
    if not by_stamp:
        return
    valid = np.asarray(log.future_valid)
    ordered = [st for st in sorted(by_stamp) if valid[int(np.argmin(np.abs(stamps - st)))]] or sorted(by_stamp)
    picks = [ordered[int(i)] for i in np.linspace(0, len(ordered) - 1, min(6, len(ordered)))]
    fig, axes = plt.subplots(2, 3, figsize=(12, 9))
    for ax, stamp in zip(axes.flat, picks):
        t = int(np.argmin(np.abs(stamps - stamp)))
        image = log.camera(t)[0]
        h, w = image.shape[:2]
        # the ego-up camera drawn in ego coordinates: right = -y, up = +x (metres)
        ax.imshow(image, extent=[(0 - c0) * mpp, (w - c0) * mpp, (r0 - h) * mpp, r0 * mpp])
        planned = to_traj(by_stamp[stamp])
        top = r0 * mpp
        for poses, style, label in ((log.future_trajectory(t) if valid[t] else None, "b.-", "logged (expert)"),
                                    (planned.poses, "r.-" if planned.is_fallback else "g.-", "planned")):
            if poses is None:
                continue
            poses = np.asarray(poses)
            ax.plot(-poses[:, 1], poses[:, 0], style, label=label, lw=2, ms=5)
            top = max(top, float(poses[:, 0].max()) + 5)
        ax.plot([0], [0], "k^", ms=8)
        ax.set_xlim(-w * mpp / 2, w * mpp / 2)
        ax.set_ylim((r0 - h) * mpp, top)
        ax.set_facecolor("#dddddd")
        ax.set_title(f"frame {t}" + (" (fallback)" if planned.is_fallback else "") + f" - {planned.model_id.split(':')[0]}", fontsize=9)
        ax.set_xlabel("right [m]", fontsize=8)
        ax.set_ylabel("forward [m]", fontsize=8)
    axes.flat[0].legend(loc="lower left", fontsize=8)
    fig.suptitle("latentvla demo: planned (green) vs. logged expert (blue) trajectories, ego-up camera")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
