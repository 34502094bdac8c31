"""CPU time per frame of the composed model nodes with instant models: what our own Python
costs per frame (conversions, counters, debug topics, diagnostics, in-process hand-off),
measured in CPU seconds, not wall clock, so it is comparable on a loaded machine.

bev_features, latent_reasoner and trajectory_planner are composed in this process on one
in-process bus (ros/graph.py, the shipped executors); a source node on the bus publishes
SensorFrames, a plain rclpy node receives the trajectories over DDS. Every model call is
replaced by its cached output (the first real call's), so only the ROS shell runs. One
frame at a time at ``--rate`` (the next when the previous trajectory arrived and its period is over): CPU of the whole process
(every thread: ``resource.getrusage``) per frame, over ``--frames`` frames, repeated
``--repeats`` times (report the median of repeats).

    python benchmarks/bench_frame_cpu.py --frames 200 --rate 20 --repeats 3 [--diagnostics-subscriber]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test"))  # the sample messages of the tests


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _instant(node) -> None:
    """Replace the node's model call by its first output, restamped."""
    for attr, method in (("extractor", "extract"), ("reasoner", "reason"), ("planner", "plan")):
        runtime = getattr(node, attr, None)
        if runtime is None:
            continue
        real, cache = getattr(runtime, method), {}

        def fast(*args, _real=real, _cache=cache):
            if "out" not in _cache:
                _cache["out"] = _real(*args)
            return dataclasses.replace(_cache["out"], stamp_ns=args[0].stamp_ns)

        setattr(runtime, method, fast)


def direct(args) -> int:
    """The frame path of the three model nodes called in this thread: bev_features and
    latent_reasoner get the SensorFrame, the planner what they published (taken from its
    in-process queues), its trajectory goes to a DDS reader; each node's diagnostics once
    per ``--rate`` frames (1 Hz). ``time.thread_time`` per frame."""
    import rclpy
    from fixtures.message_samples import samples

    from latentvla_ros.msg import PlannedTrajectory
    from latentvla_ros.ros.graph import GraphOptions, create_composed_nodes
    from latentvla_ros.ros.topology import TRAJECTORY, graph_nodes

    rclpy.init()
    specs = [s for s in graph_nodes() if s.name in ("bev_features", "latent_reasoner", "trajectory_planner")]
    options = GraphOptions(nodes=specs, overrides={s.name: {"checkpoint": "", "backend": "torch"} for s in specs},
                           log_level="error")
    nodes = create_composed_nodes(options)
    by = {n.get_name(): n for n in nodes}
    for node in nodes:
        _instant(node)
    sink = rclpy.create_node("bench_sink")
    sink.create_subscription(PlannedTrajectory, f"/{TRAJECTORY}", lambda m: None, 10)  # the trajectory goes out over DDS
    if args.diagnostics_subscriber:
        from diagnostic_msgs.msg import DiagnosticArray

        sink.create_subscription(DiagnosticArray, "/diagnostics", lambda m: None, 10)
    planner = by["trajectory_planner"]
    locals_ = list(planner._local_subscriptions.values())
    frame_subs = [(n, next(iter(n._local_subscriptions.values()))) for n in (by["bev_features"], by["latent_reasoner"])]
    time.sleep(1.0)  # discovery of the sink
    total = args.warmup + args.frames * args.repeats
    msgs = [samples()["SensorFrame"] for _ in range(total)]
    period = max(1, int(round(args.rate)))

    def one_frame(k, msg):
        msg.sequence = k + 1
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
        for _, sub in frame_subs:
            sub.callback(msg)
        for sub in locals_:
            while sub.queue:
                sub.callback(sub.queue.popleft())
        if k % period == 0:
            for node in nodes:
                node._publish_diagnostics()

    published = lambda: planner.stats.snapshot()["published"].get("trajectory", 0)
    for k in range(args.warmup):
        one_frame(k, msgs[k])
    results = []
    for r in range(args.repeats):
        base = args.warmup + r * args.frames
        before = published()
        c0 = time.thread_time()
        for k in range(base, base + args.frames):
            one_frame(k, msgs[k])
        c1 = time.thread_time()
        results.append({"cpu_ms_per_frame": (c1 - c0) * 1e3 / args.frames, "lost": args.frames - (published() - before)})
    for n in [*nodes, sink]:
        n.destroy_node()
    rclpy.shutdown()
    print(json.dumps({"mode": "direct", "frames": args.frames, "repeats": results,
                      "cpu_ms_per_frame_median": statistics.median(r["cpu_ms_per_frame"] for r in results),
                      "diagnostics_subscriber": args.diagnostics_subscriber}, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rate", type=float, default=20.0, help="frames per second (diagnostics and timers run per second)")
    ap.add_argument("--diagnostics-subscriber", action="store_true", help="subscribe to /diagnostics and debug topics")
    ap.add_argument("--direct", action="store_true",
                    help="no executors: call the nodes' callbacks in this thread, one frame after the other "
                         "(the per-frame Python alone, CPU of this thread; steadier on a loaded machine)")
    args = ap.parse_args(argv)
    if args.direct:
        return direct(args)

    import rclpy
    from fixtures.message_samples import samples
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from latentvla_ros.msg import PlannedTrajectory, SensorFrame
    from latentvla_ros.ros.executors import GraphExecutor
    from latentvla_ros.ros.graph import GraphOptions, create_composed_nodes
    from latentvla_ros.ros.node_base import LatentVlaNode
    from latentvla_ros.ros.qos import output_qos
    from latentvla_ros.ros.topology import SENSOR_FRAME, TRAJECTORY, graph_nodes

    class Source(LatentVlaNode):
        schema_name = "sensor_sync"

        def __init__(self, **kwargs):
            super().__init__("bench_source", **kwargs)
            self.pub = self.create_publisher(SensorFrame, SENSOR_FRAME, output_qos(5))

    rclpy.init()
    specs = [s for s in graph_nodes() if s.name in ("bev_features", "latent_reasoner", "trajectory_planner")]
    untrained = {"checkpoint": "", "backend": "torch"}
    options = GraphOptions(nodes=specs, overrides={s.name: dict(untrained) for s in specs}, log_level="error")
    nodes = create_composed_nodes(options)
    for node in nodes:
        _instant(node)
    source = Source(intra_process=nodes[0].intra_process)
    sink = rclpy.create_node("bench_sink")
    got = []
    arrived = threading.Event()

    def on_traj(msg):
        got.append(msg)
        arrived.set()

    sink.create_subscription(PlannedTrajectory, f"/{TRAJECTORY}", on_traj, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    if args.diagnostics_subscriber:
        from diagnostic_msgs.msg import DiagnosticArray
        from std_msgs.msg import Float64

        sink.create_subscription(DiagnosticArray, "/diagnostics", lambda m: None, 10)
        for n in nodes:
            sink.create_subscription(Float64, f"/{n.get_name()}/debug/processing_time_ms", lambda m: None, 10)
    executor = GraphExecutor().add(*nodes, source, sink).start()
    deadline = time.monotonic() + 30
    while sink.count_publishers(f"/{TRAJECTORY}") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)

    seq = [0]

    def one_frame(msg) -> bool:
        seq[0] += 1
        msg.sequence = seq[0]
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(time.time_ns(), 1_000_000_000)
        arrived.clear()
        source.pub.publish(msg)
        return arrived.wait(5.0)

    total = args.warmup + args.frames * args.repeats
    msgs = [samples()["SensorFrame"] for _ in range(total)]
    for m in msgs[:args.warmup]:
        one_frame(m)
    results = []
    for r in range(args.repeats):
        batch = msgs[args.warmup + r * args.frames: args.warmup + (r + 1) * args.frames]
        lost = 0
        c0, w0 = _cpu_s(), time.monotonic()
        for k, m in enumerate(batch):
            lost += not one_frame(m)
            time.sleep(max(0.0, w0 + (k + 1) / args.rate - time.monotonic()))
        c1, w1 = _cpu_s(), time.monotonic()
        results.append({"cpu_ms_per_frame": (c1 - c0) * 1e3 / len(batch), "wall_ms_per_frame": (w1 - w0) * 1e3 / len(batch),
                        "lost": lost})
    executor.stop()
    for n in [*nodes, source, sink]:
        n.destroy_node()
    rclpy.shutdown()
    out = {"frames": args.frames, "repeats": results,
           "rate_hz": args.rate,
           "cpu_ms_per_frame_median": statistics.median(r["cpu_ms_per_frame"] for r in results),
           "diagnostics_subscriber": args.diagnostics_subscriber}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
