"""The floor of the bench: a no-work rclpy graph of the shipped topology and message sizes.

What any rclpy graph of our shape costs on this machine, measured like the other runs (sensor
stamp to trajectory received in the harness): the harness publishes the same four sensor
messages over DDS at the same QoS; a synchroniser takes them (pairing by stamp) and builds
a ``SensorFrame`` of them; a BEV stage and a reasoner stage each hand over a message of the
real stages' sizes (one real output of each, computed once before the run); a planner pairs
the two by stamp, builds the 8-point ``PlannedTrajectory`` (``trajectory_to_msg``) and
publishes it over DDS. No node does model work, conversions, checks or accounting.

Three variants, all spun by ``ros.executors.GraphExecutor`` (EventsExecutor ``spin_once``
loops, the same thread groups as the shipped graph; never ``EventsExecutor.spin()``, which
keeps a core busy when idle):

- ``floor``: the stages are called directly in the synchroniser's callback (one thread after
  the sensor subscriptions): the least an rclpy graph with DDS sensor input can cost.
- ``floor-hops``: one executor hop per node (``executor.create_task`` onto the node's own
  thread, as the in-process bus hands messages over): the floor of a graph whose model
  stages run on threads of their own, as ours do.
- ``floor-processes``: each node in a process of its own (``python -m
  latentvla_ros.apps.bench.floor --node NAME``, the shipped Fast DDS profile), the frame, the
  BEV and the plan (and to the planner the frame's LiDAR cloud, its obstacle guard's input
  there) over DDS with the shipped QoS: the floor of ``latentvla run --mode
  processes``, which the ``processes`` runs are measured against (every node process
  deserialises its inputs into Python; the composed graph shares one object).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: run name -> how a node hands a message to the next: called directly, one executor hop per
#: node (the same process), or over DDS between processes
FLOOR_VARIANTS = {"floor": "direct", "floor-hops": "hops", "floor-processes": "processes"}
FLOOR_NODES = ("sensor_sync", "bev_features", "latent_reasoner", "trajectory_planner")
#: the topics between the floor's node processes (floor-processes only)
FLOOR_TOPICS = {"frame": "/latentvla_floor/frame", "bev": "/latentvla_floor/bev", "plan": "/latentvla_floor/plan",
                "lidar": "/latentvla_floor/frame_lidar"}


@dataclass
class FloorOutputs:
    """One real output of each stage: the floor's messages have their sizes."""

    bev: Any  # BevFeatures message
    plan: Any | None  # LatentActionPlan message (None: the planner needs none)
    trajectory: Any  # core Trajectory


def floor_outputs(agent, frame) -> FloorOutputs:
    """The stages' outputs on one frame (real model calls, before the floor run)."""
    from latentvla_ros.ros.conversions import bev_to_msg, plan_to_msg

    bev = agent.bev.extract(frame)
    plan = agent.reasoner.reason(frame) if agent.reasoner is not None and agent.planner.needs_plan else None
    traj = agent.planner.plan(bev, plan)
    return FloorOutputs(bev_to_msg(bev, "base_link"), plan_to_msg(plan, "base_link") if plan is not None else None, traj)


def _schema_default(node: str, key: str) -> Any:
    from latentvla_ros.ros.contracts.parameters import load_schema, node_definition

    return node_definition(load_schema(node), node)["properties"][key]["default"]


class FloorGraph:
    """The floor nodes (sync, bev, reasoner, planner; ``names``: those of this process) in
    ``context``; ``transport`` is how a node hands over to the next (``FLOOR_VARIANTS``);
    ``start()`` spins them."""

    def __init__(self, context, outputs: FloorOutputs, transport: str, camera_name: str,
                 names: tuple[str, ...] = FLOOR_NODES):
        import rclpy
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from latentvla_ros.msg import BevFeatures, LatentActionPlan, PlannedTrajectory, SensorFrame
        from latentvla_ros.ros.qos import input_qos, output_qos, sensor_qos
        from latentvla_ros.ros.topology import SENSOR_TOPICS, TRAJECTORY

        if transport not in FLOOR_VARIANTS.values():
            raise ValueError(f"floor transport {transport!r} is not one of {sorted(set(FLOOR_VARIANTS.values()))}")
        self.outputs = outputs
        self.transport = transport
        self.hops = transport == "hops"
        self.synchronized = 0  # frames the synchroniser completed
        self._parts: dict[int, dict[str, Any]] = {}
        self._pairs: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._odometry = None
        self._pubs: dict[str, Any] = {}
        self.nodes = {name: rclpy.create_node(f"floor_{name}", context=context) for name in names}
        for name, group in (("sensor_sync", "io"), ("bev_features", "bev_features"), ("latent_reasoner", "student"),
                            ("trajectory_planner", "planner")):
            if name in self.nodes:
                self.nodes[name].executor_group = group  # the shipped graph's threads (ros/executors.py)
        dds = transport == "processes"
        out_qos = output_qos(_schema_default("sensor_sync", "qos.output_depth"))
        stage_qos = lambda node: input_qos(_schema_default(node, "qos.input_reliability"),
                                          _schema_default(node, "qos.input_depth"))
        sync = self.nodes.get("sensor_sync")
        if sync is not None:
            qos = stage_qos("sensor_sync")
            topics = {"info": (CameraInfo, SENSOR_TOPICS["camera_info"].format(name=camera_name)),
                      "lidar": (PointCloud2, SENSOR_TOPICS["lidar"]), "odometry": (Odometry, SENSOR_TOPICS["odometry"]),
                      "image": (Image, SENSOR_TOPICS["camera_image"].format(name=camera_name))}
            for kind, (msg_type, topic) in topics.items():
                sync.create_subscription(msg_type, topic, lambda msg, k=kind: self._on_sensor(k, msg), qos)
            if dds:
                self._pubs["frame"] = sync.create_publisher(SensorFrame, FLOOR_TOPICS["frame"], out_qos)
                self._pubs["lidar"] = sync.create_publisher(PointCloud2, FLOOR_TOPICS["lidar"], out_qos)
        for name, fn, kind, msg_type in (("bev_features", self._bev, "bev", BevFeatures),
                                         ("latent_reasoner", self._reasoner, "plan", LatentActionPlan)):
            if dds and name in self.nodes and (kind == "bev" or outputs.plan is not None):
                self.nodes[name].create_subscription(SensorFrame, FLOOR_TOPICS["frame"], fn, stage_qos(name))
                self._pubs[kind] = self.nodes[name].create_publisher(msg_type, FLOOR_TOPICS[kind], out_qos)
        planner = self.nodes.get("trajectory_planner")
        if planner is not None:
            planner.create_subscription(Odometry, SENSOR_TOPICS["odometry"], self._on_odometry,
                                        sensor_qos(_schema_default("trajectory_planner", "qos.sensor_reliability"),
                                                   _schema_default("trajectory_planner", "qos.sensor_depth")))
            if dds:
                # the obstacle guard's input (obstacle_guard.enabled, the default): the frame's LiDAR cloud, taken off
                # DDS like the shipped planner process does (guard_input auto), unused (the guard's check is the
                # planner's work, not the floor's)
                planner.create_subscription(PointCloud2, FLOOR_TOPICS["lidar"], lambda msg: None, stage_qos("trajectory_planner"))
                for kind, msg_type in (("bev", BevFeatures), ("plan", LatentActionPlan)):
                    planner.create_subscription(msg_type, FLOOR_TOPICS[kind],
                                                lambda msg, k=kind: self._on_stage(k, msg.header.stamp, msg),
                                                stage_qos("trajectory_planner"))
            self._pub = planner.create_publisher(PlannedTrajectory, "/" + TRAJECTORY,
                                                 output_qos(_schema_default("trajectory_planner", "qos.output_depth")))
        self._spinner = None

    # ---------------------------------------------------------------- the graph
    def _on_sensor(self, kind: str, msg) -> None:
        stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
        parts = self._parts.setdefault(stamp, {})
        parts[kind] = msg
        if len(parts) < 4:
            return
        del self._parts[stamp]
        for old in [s for s in self._parts if s < stamp]:  # never completed: forget
            del self._parts[old]
        from std_msgs.msg import Header

        from latentvla_ros.msg import SensorFrame

        self.synchronized += 1
        frame = SensorFrame(header=Header(stamp=parts["image"].header.stamp, frame_id="base_link"),
                            images=[parts["image"]], camera_infos=[parts["info"]], lidar=parts["lidar"],
                            odometry=parts["odometry"], sequence=self.synchronized)
        if "frame" in self._pubs:
            from latentvla_ros.ros.conversions import frame_lidar

            self._pubs["frame"].publish(frame)
            self._pubs["lidar"].publish(frame_lidar(frame.lidar, stamp))
            return
        self._hand(("latent_reasoner", self._reasoner) if self.outputs.plan is not None else None, frame)
        self._hand(("bev_features", self._bev), frame)

    def _hand(self, target, *args) -> None:
        if target is None:
            return
        name, fn = target
        if self.hops:
            self.nodes[name].executor.create_task(fn, *args)
        else:
            fn(*args)

    def _stage_output(self, kind: str, frame, msg) -> None:
        """A stage's (fixed) output for ``frame``: to the planner, or over DDS with the frame's stamp."""
        pub = self._pubs.get(kind)
        if pub is None:
            self._hand(("trajectory_planner", self._on_stage), kind, frame.header.stamp, msg)
            return
        msg.header.stamp = frame.header.stamp  # this process's own copy, serialised by publish
        pub.publish(msg)

    def _bev(self, frame) -> None:
        self._stage_output("bev", frame, self.outputs.bev)

    def _reasoner(self, frame) -> None:
        self._stage_output("plan", frame, self.outputs.plan)

    def _on_odometry(self, msg) -> None:
        self._odometry = msg

    def _on_stage(self, kind: str, stamp, msg) -> None:
        from latentvla_ros.ros.conversions import trajectory_to_msg

        key = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
        need = 2 if self.outputs.plan is not None else 1
        with self._lock:
            got = self._pairs.setdefault(key, {})
            got[kind] = msg
            if len(got) < need:
                return
            del self._pairs[key]
            for old in [s for s in self._pairs if s < key]:
                del self._pairs[old]
        traj = dataclasses.replace(self.outputs.trajectory, stamp_ns=key)
        self._pub.publish(trajectory_to_msg(traj, "base_link"))

    # ---------------------------------------------------------------- life cycle
    def start(self) -> "FloorGraph":
        from latentvla_ros.ros.executors import GraphExecutor

        context = next(iter(self.nodes.values())).context
        self._spinner = GraphExecutor(context=context, kind="events").add(*self.nodes.values()).start()
        return self

    def thread_layout(self) -> list[list[str]]:
        return self._spinner.thread_layout() if self._spinner is not None else []

    def close(self) -> None:
        if self._spinner is not None:
            self._spinner.stop()
        for node in self.nodes.values():
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001 - context already shut down
                pass


# -------------------------------------------------------------------- floor-processes
_OUTPUT_FILES = {"bev": ("bev.cdr", "BevFeatures"), "plan": ("plan.cdr", "LatentActionPlan"),
                 "trajectory": ("trajectory.cdr", "PlannedTrajectory")}


def write_floor_outputs(outputs: FloorOutputs, folder: Path) -> Path:
    """The stage outputs as CDR files (rclpy's own serialisation) for the node processes."""
    from rclpy.serialization import serialize_message

    from latentvla_ros.ros.conversions import trajectory_to_msg

    folder.mkdir(parents=True, exist_ok=True)
    msgs = {"bev": outputs.bev, "plan": outputs.plan, "trajectory": trajectory_to_msg(outputs.trajectory, "base_link")}
    for kind, (name, _) in _OUTPUT_FILES.items():
        path = folder / name
        if msgs[kind] is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(serialize_message(msgs[kind]))
    return folder


def read_floor_outputs(folder: Path) -> FloorOutputs:
    from rclpy.serialization import deserialize_message

    import latentvla_ros.msg as msgs
    from latentvla_ros.ros.conversions import msg_to_trajectory

    loaded = {kind: deserialize_message((folder / name).read_bytes(), getattr(msgs, type_name))
              if (folder / name).is_file() else None for kind, (name, type_name) in _OUTPUT_FILES.items()}
    return FloorOutputs(loaded["bev"], loaded["plan"], msg_to_trajectory(loaded["trajectory"]))


def spawn_floor_processes(outputs_dir: Path, camera_name: str, env: dict[str, str], log_path: Path) -> list:
    """One process per floor node (this module's ``main``), output to ``log_path``."""
    import subprocess

    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return [subprocess.Popen([sys.executable, "-m", "latentvla_ros.apps.bench.floor", "--node", name,
                                  "--outputs", str(outputs_dir), "--camera", camera_name],
                                 env=env, stdout=log, stderr=subprocess.STDOUT) for name in FLOOR_NODES]


def main(argv: list[str] | None = None) -> int:
    """One node of the floor graph in this process (``floor-processes``), until SIGINT/SIGTERM."""
    import rclpy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--node", choices=FLOOR_NODES, required=True)
    parser.add_argument("--outputs", type=Path, required=True, help="folder of write_floor_outputs")
    parser.add_argument("--camera", required=True)
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=None, signal_handler_options=SignalHandlerOptions.NO)
    graph = None
    try:
        graph = FloorGraph(None, read_floor_outputs(args.outputs), "processes", args.camera, (args.node,)).start()
        while not stop.wait(0.2):
            pass
    finally:
        if graph is not None:
            graph.close()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


class _NoNodeTimes:
    """The floor's nodes keep no statistics."""

    def start(self) -> None:
        pass

    def stop(self) -> tuple[dict, dict]:
        return {}, {}


def run_floor(opts, outputs: FloorOutputs, variant: str, rate: float, warm_msgs: list, msgs: list,
              camera_name: str) -> dict[str, Any]:
    """One floor run in a fresh ROS context (nothing else of the bench on the DDS domain meanwhile);
    ``floor-processes`` starts the four node processes and stops them after the run."""
    import tempfile

    from latentvla_ros.apps.bench.harness import (
        Harness,
        idle_drain_s,
        measure_graph,
        new_ros_context,
        shutdown_ros_context,
        wait_until,
        warm_up_graph,
    )
    from latentvla_ros.ros.graph import apply_transport_env, stop_processes

    transport = FLOOR_VARIANTS[variant]
    ctx = new_ros_context(opts.domain_id)
    graph = harness = None
    procs: list = []
    try:
        if transport == "processes":
            out = Path(getattr(opts, "out", None) or tempfile.mkdtemp(prefix="latentvla_floor_"))
            env = apply_transport_env(dict(os.environ))
            env["ROS_DOMAIN_ID"] = str(opts.domain_id)
            env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
            procs = spawn_floor_processes(write_floor_outputs(outputs, out / "floor_outputs"), camera_name, env,
                                          out / "logs" / f"floor_processes_{rate:g}Hz.log")
            alive = lambda: all(p.poll() is None for p in procs)
            synchronized = lambda: {}  # counted in the sync process: not read back
            layout = [[f"floor_{name}"] for name in FLOOR_NODES]
        else:
            graph = FloorGraph(ctx, outputs, transport, camera_name).start()
            alive = None
            synchronized = lambda: {"sensor_sync": graph.synchronized}
            layout = graph.thread_layout()
        harness = Harness(ctx)
        if not wait_until(lambda: harness.connected(), max(30.0, opts.startup_timeout_s), 0.1, alive):
            raise RuntimeError("the floor graph did not connect to the harness")
        warm_up_graph(harness, warm_msgs, rate, min(max(1, opts.warmup), 3), opts.startup_timeout_s, alive)
        run = measure_graph(harness, msgs, rate, None, synchronized, lambda: [p.pid for p in procs],
                            drain_s=idle_drain_s(rate, None), node_times=_NoNodeTimes(),
                            **({"process_names": {p.pid: f"floor_{n}" for p, n in zip(procs, FLOOR_NODES)}}
                               if procs else {}))
        run.update(mode="floor", variant=variant, executor_threads=layout, hops=transport == "hops",
                   transport=transport)
        return run
    finally:
        if harness is not None:
            harness.close()
        if graph is not None:
            graph.close()
        if procs:
            stop_processes(procs, timeout_s=10.0)
        shutdown_ros_context(ctx)


if __name__ == "__main__":
    sys.exit(main())
