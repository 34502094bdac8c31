"""The ROS harness of the bench: a node that feeds the graph and receives its trajectories, per-node
times, and measuring one graph run against the bare chain."""
from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from latentvla_ros.apps.bench.data import sleep_until
from latentvla_ros.apps.bench.meters import CpuMeter, ThreadCpu, ratio_of, stats_ms
from latentvla_ros.apps.bench.options import CAMERA_NAME, GRAPH_NODES

log = logging.getLogger(__name__)


# ============================================================================ ROS harness
class Harness:
    """Publishes the sensor topics (stamps = wall clock now) and records what comes back."""

    def __init__(self, context, node_names=GRAPH_NODES):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from latentvla_ros.msg import PlannedTrajectory
        from latentvla_ros.ros.executors import GraphExecutor
        from latentvla_ros.ros.topology import SENSOR_TOPICS, TRAJECTORY

        self._context = context
        self.node = rclpy.create_node("latentvla_bench_harness", context=context)
        pub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE)
        sub_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.topics = {
            "camera_info": SENSOR_TOPICS["camera_info"].format(name=CAMERA_NAME),
            "lidar": SENSOR_TOPICS["lidar"], "odometry": SENSOR_TOPICS["odometry"],
            "image": SENSOR_TOPICS["camera_image"].format(name=CAMERA_NAME), "trajectory": "/" + TRAJECTORY,
        }
        self.pubs = [self.node.create_publisher(CameraInfo, self.topics["camera_info"], pub_qos),
                     self.node.create_publisher(PointCloud2, self.topics["lidar"], pub_qos),
                     self.node.create_publisher(Odometry, self.topics["odometry"], pub_qos),
                     self.node.create_publisher(Image, self.topics["image"], pub_qos)]
        self._cond = threading.Condition()
        self.trajectories: dict[int, tuple[int, bool, str]] = {}  # stamp -> (receive ns, fallback, reason)
        self.duplicates = 0
        # per-node times come from the nodes' own statistics (InProcessNodeTimes, DiagnosticsNodeTimes), not
        # from their ~/debug/*_ms topics: eight more subscriptions per frame would load the graph being measured
        self.node_names = tuple(node_names)
        self.diagnostics: dict[str, tuple[int, dict[str, str]]] = {}
        self.node.create_subscription(PlannedTrajectory, self.topics["trajectory"], self._on_trajectory, sub_qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, sub_qos)
        # its own thread, on the executor the graph ships with (cheap: the C++ EventsExecutor where rclpy has it)
        self.spinner = GraphExecutor(context=context).add(self.node).start()

    def _on_trajectory(self, msg) -> None:
        now = time.time_ns()
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        with self._cond:
            if stamp in self.trajectories:
                self.duplicates += 1
            else:
                self.trajectories[stamp] = (now, bool(msg.is_fallback), str(msg.fallback_reason))
            self._cond.notify_all()

    def _on_diagnostics(self, msg) -> None:
        now = time.time_ns()
        for status in msg.status:
            name = status.name.split("/")[-1]
            if name in self.node_names:
                self.diagnostics[name] = (now, {kv.key: kv.value for kv in status.values})

    def publish(self, msgs) -> int:
        """Stamp every message with the wall clock now and publish (the image last)."""
        from builtin_interfaces.msg import Time

        stamp_ns = time.time_ns()
        stamp = Time(sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000)
        for pub, msg in zip(self.pubs, msgs):
            msg.header.stamp = stamp
            pub.publish(msg)
        return stamp_ns

    def wait_for(self, stamps, timeout_s: float) -> bool:
        want = set(stamps)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not want <= set(self.trajectories):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
        return True

    def model_trajectory(self, stamp: int) -> bool:
        with self._cond:
            entry = self.trajectories.get(stamp)
        return entry is not None and not entry[1]

    def connected(self, graph_publishes: bool = True) -> bool:
        counts = [p.get_subscription_count() for p in self.pubs]
        # sensor_sync takes info, lidar, odometry, image; the planner also odometry
        ok = counts[1] >= 1 and counts[2] >= 2 and counts[3] >= 1
        return ok and (not graph_publishes or self.node.count_publishers(self.topics["trajectory"]) >= 1)

    def close(self) -> None:
        self.spinner.stop()
        with contextlib.suppress(Exception):
            self.node.destroy_node()


class InProcessNodeTimes:
    """Per-node processing time and output latency of composed nodes over the measured
    frames, read from each node's own statistics (``NodeStats``) in this process."""

    def __init__(self, nodes: list):
        self._nodes = {nd.get_name(): nd for nd in nodes}
        self._marks: dict[str, tuple[int, int]] = {}

    def start(self) -> None:
        self._marks = {name: nd.stats.mark() for name, nd in self._nodes.items()}

    def stop(self) -> tuple[dict[str, dict], dict[str, dict]]:
        processing, latency = {}, {}
        for name, nd in self._nodes.items():
            p, lat = nd.stats.since(self._marks.get(name, (0, 0)))
            processing[name], latency[name] = stats_ms(p), stats_ms(lat)
        return processing, latency


class DiagnosticsNodeTimes:
    """The same for node processes: each node's own summary in its next ``/diagnostics``
    (``processing_*`` / ``latency_*`` over every frame it processed, warm-up included)."""

    def __init__(self, harness: Harness):
        self._harness = harness

    def start(self) -> None:
        pass

    def stop(self) -> tuple[dict[str, dict], dict[str, dict]]:
        t = time.time_ns()
        names = self._harness.node_names
        wait_until(lambda: all(self._harness.diagnostics.get(n, (0, {}))[0] > t for n in names), 3.0)
        processing, latency = {}, {}
        for name in names:
            values = self._harness.diagnostics.get(name, (0, {}))[1]
            processing[name], latency[name] = _diagnostics_summary(values, "processing"), _diagnostics_summary(values, "latency")
        return processing, latency


def _diagnostics_summary(values: dict[str, str], prefix: str) -> dict[str, float]:
    """``processing_median_ms`` ... of a node's diagnostics -> a ``stats_ms``-like dict."""
    try:
        out = {"count": int(values[f"{prefix}_count"])}
        out.update({k: float(values[f"{prefix}_{k}"]) for k in ("median_ms", "p99_ms", "max_ms")})
        return out
    except (KeyError, ValueError):
        return {"count": 0}


def wait_until(predicate: Callable[[], bool], timeout_s: float, period_s: float = 0.05, alive: Callable[[], bool] | None = None) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        if alive is not None and not alive():
            return False
        time.sleep(period_s)
    return predicate()


def warm_up_graph(harness: Harness, msgs: list, rate: float, need: int, timeout_s: float,
                  alive: Callable[[], bool] | None = None) -> int:
    """Publish warm-up frames one at a time until ``need`` in a row got a model trajectory."""
    consecutive, sent, i = 0, 0, 0
    deadline = time.monotonic() + timeout_s
    wait_s = max(3.0, 6.0 / rate)
    while consecutive < max(1, need) and time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError("a graph process exited during warm-up")
        start = time.perf_counter()
        stamp = harness.publish(msgs[i % len(msgs)])
        i += 1
        sent += 1
        ok = harness.wait_for([stamp], wait_s) and harness.model_trajectory(stamp)
        consecutive = consecutive + 1 if ok else 0
        sleep_until(start + 1.0 / rate)
    if consecutive < max(1, need):
        raise RuntimeError(f"the graph did not answer {need} warm-up frames in a row within {timeout_s:.0f} s")
    return sent


def measure_graph(harness: Harness, msgs: list, rate: float, bare: dict | None, counters: Callable[[], dict],
                  cpu_pids: Callable[[], list[int]], drain_s: float, node_times: InProcessNodeTimes | DiagnosticsNodeTimes,
                  process_names: dict[int, str] | None = None, bare_parallel: dict | None = None) -> dict[str, Any]:
    """Publish ``msgs`` at ``rate`` on an absolute schedule; latency, drops, node times.

    ``process_names`` (pid -> node) adds a CPU-per-frame breakdown of those processes;
    this process is always broken down by thread.
    """
    time.sleep(0.5)  # let the warm-up settle
    before = counters()
    node_times.start()
    meter = CpuMeter(cpu_pids)
    thread_meters = {"this process": ThreadCpu()}
    for pid, name in (process_names or {}).items():
        thread_meters[name] = ThreadCpu(pid)
    for m in thread_meters.values():
        m.start()
    meter.start()
    stamps: list[int] = []
    t0 = time.perf_counter()
    late = 0
    for i, m in enumerate(msgs):
        deadline = t0 + i / rate
        sleep_until(deadline)
        if time.perf_counter() - deadline > 0.5 / rate:
            late += 1
        stamps.append(harness.publish(m))
    publish_span_s = time.perf_counter() - t0
    _drain(harness, stamps, drain_s)
    time.sleep(0.2)
    cpu = meter.stop()
    if cpu.get("own_cpu_s") is not None and msgs:
        cpu["own_cpu_ms_per_frame"] = cpu["own_cpu_s"] * 1e3 / len(msgs)
    cpu["cpu_ms_per_frame_by_thread"] = {name: m.stop(len(msgs)) for name, m in thread_meters.items()}
    after = counters()
    with harness._cond:
        got = {s: harness.trajectories.get(s) for s in stamps}
    latencies, per_frame, fallbacks, dropped = [], [], 0, 0
    reasons: dict[str, int] = {}
    for s in stamps:
        entry = got[s]
        if entry is None:
            dropped += 1
            per_frame.append(None)
        elif entry[1]:
            fallbacks += 1
            reasons[entry[2]] = reasons.get(entry[2], 0) + 1
            per_frame.append(None)
        else:
            latencies.append((entry[0] - s) * 1e-6)
            per_frame.append(round((entry[0] - s) * 1e-6, 3))
    received = [got[s][0] for s in stamps if got[s] is not None and not got[s][1]]
    nodes, node_latency = node_times.stop()
    synced = None
    if before.get("sensor_sync") is not None and after.get("sensor_sync") is not None:
        synced = int(after["sensor_sync"]) - int(before["sensor_sync"])
    result: dict[str, Any] = {
        "rate_hz": rate, "frames": len(stamps), "model_trajectories": len(latencies), "fallbacks": fallbacks,
        "fallback_reasons": reasons, "dropped": dropped, "synchronized": synced,
        "dropped_synchronized": (max(0, synced - len(latencies)) if synced is not None else None),
        "late_publications": late, "latency_ms": stats_ms(latencies), "nodes_processing_ms": nodes,
        "nodes_output_latency_ms": node_latency,
        "output_hz": ((len(latencies) / publish_span_s * (len(stamps) - 1) / len(stamps))
                      if publish_span_s > 0 and len(stamps) > 1 else None),
        "receive_span_hz": ((len(received) - 1) / ((max(received) - min(received)) * 1e-9)
                            if len(received) > 1 and max(received) > min(received) else None),
        "per_frame_ms": per_frame, "cpu": cpu, "counters_before": before, "counters_after": after,
    }
    if bare is not None:
        result["ratio_vs_bare"] = _ratios(result, bare)
    if bare_parallel is not None:
        result["ratio_vs_bare_parallel"] = _ratios(result, bare_parallel)
    return result


def idle_drain_s(rate: float, bare: dict | None) -> float:
    p99 = ((bare or {}).get("latency_ms") or {}).get("p99_ms") or 0.0
    return max(3.0, 3.0 / rate, 4.0 * p99 / 1e3)


def _drain(harness: Harness, stamps: list[int], idle_s: float, cap_s: float = 180.0) -> None:
    """Wait until every stamp has a trajectory, or none came for ``idle_s`` (a backed-up
    graph keeps delivering: those frames count, they are late, not dropped)."""
    start = last_progress = time.monotonic()
    last = -1
    while time.monotonic() - start < cap_s:
        with harness._cond:
            done = sum(1 for s in stamps if s in harness.trajectories)
        if done == len(stamps):
            return
        now = time.monotonic()
        if done != last:
            last, last_progress = done, now
        elif now - last_progress > idle_s:
            return
        time.sleep(0.05)


def _ratios(run: dict, bare: dict) -> dict[str, Any]:
    g, b = run.get("latency_ms", {}), bare.get("latency_ms", {})
    per_frame = [x / y for x, y in zip(run.get("per_frame_ms", []), bare.get("per_frame_ms", []))
                 if x is not None and y is not None and y > 0]
    return {"median": ratio_of(g.get("median_ms"), b.get("median_ms")), "p99": ratio_of(g.get("p99_ms"), b.get("p99_ms")),
            "per_frame_median": float(np.median(per_frame)) if per_frame else None,
            "overhead_median_ms": (g["median_ms"] - b["median_ms"]) if "median_ms" in g and "median_ms" in b else None}


def graph_options(config: str, ckpt_dir: Path, backend: str, threads: int, min_rate: float,
                  extra: dict[str, dict[str, Any]] | None = None):
    from latentvla_ros.ros.graph import GraphOptions
    from latentvla_ros.ros.topology import graph_nodes

    model = {"checkpoint": str(ckpt_dir), "preset": config, "torch_threads": threads, "backend": backend}
    overrides = {
        "sensor_sync": {"camera_names": [CAMERA_NAME]},
        "bev_features": {**model, "checkpoint": str(ckpt_dir / "bev_backbone")},
        "latent_reasoner": {**model, "checkpoint": str(ckpt_dir / "student")},
        # the watchdog must not call a 2 Hz input silent: 2.5 input periods
        "trajectory_planner": {**model, "checkpoint": str(ckpt_dir / "planner"),
                               "input_timeout_s": max(0.5, 2.5 / min_rate)},
    }
    for node, params in (extra or {}).items():
        overrides.setdefault(node, {}).update(params)
    return GraphOptions(nodes=graph_nodes([CAMERA_NAME]), overrides=overrides, log_level="warn")


@contextlib.contextmanager
def std_to(path: Path):
    """Point fds 1 and 2 at ``path`` (children spawned inside inherit it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as f:
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def new_ros_context(domain_id: int):
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id)
    return ctx


def shutdown_ros_context(ctx) -> None:
    import rclpy

    with contextlib.suppress(Exception):
        if ctx.ok():
            rclpy.shutdown(context=ctx)
