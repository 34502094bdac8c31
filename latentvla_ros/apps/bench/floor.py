"""The floor of the bench: a no-work rclpy graph of the shipped topology and message sizes.

What any rclpy graph of our shape costs on this machine, measured like the other runs (sensor
stamp to trajectory received in the harness): the harness publishes the same four sensor
messages over DDS at the same QoS; a synchroniser takes them (pairing by stamp) and builds
a ``SensorFrame`` of them; a BEV stage and a reasoner stage each hand over a message of the
real stages' sizes (one real output of each, computed once before the run); a planner pairs
the two by stamp, builds the 8-point ``PlannedTrajectory`` (``trajectory_to_msg``) and
publishes it over DDS. No node does model work, conversions, checks or accounting.

Two variants, both spun by ``ros.executors.GraphExecutor`` (EventsExecutor ``spin_once``
loops, the same thread groups as the shipped graph; never ``EventsExecutor.spin()``, which
keeps a core busy when idle):

- ``floor``: the stages are called directly in the synchroniser's callback (one thread after
  the sensor subscriptions): the least an rclpy graph with DDS sensor input can cost.
- ``floor-hops``: one executor hop per node (``executor.create_task`` onto the node's own
  thread, as the in-process bus hands messages over): the floor of a graph whose model
  stages run on threads of their own, as ours do.
"""
from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any

FLOOR_VARIANTS = {"floor": False, "floor-hops": True}  # run name -> one executor hop per node


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
    """The four floor nodes (sync, bev, reasoner, planner) in ``context``; ``start()`` spins them."""

    def __init__(self, context, outputs: FloorOutputs, hops: bool, camera_name: str):
        import rclpy
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from latentvla_ros.msg import PlannedTrajectory
        from latentvla_ros.ros.qos import input_qos, output_qos, sensor_qos
        from latentvla_ros.ros.topology import SENSOR_TOPICS, TRAJECTORY

        self.outputs = outputs
        self.hops = hops
        self.synchronized = 0  # frames the synchroniser completed
        self._parts: dict[int, dict[str, Any]] = {}
        self._pairs: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._odometry = None
        self.nodes = {name: rclpy.create_node(f"floor_{name}", context=context)
                      for name in ("sensor_sync", "bev_features", "latent_reasoner", "trajectory_planner")}
        for name, group in (("sensor_sync", "io"), ("bev_features", "bev_features"), ("latent_reasoner", "student"),
                            ("trajectory_planner", "planner")):
            self.nodes[name].executor_group = group  # the shipped graph's threads (ros/executors.py)
        sync = self.nodes["sensor_sync"]
        qos = input_qos(_schema_default("sensor_sync", "qos.input_reliability"),
                        _schema_default("sensor_sync", "qos.input_depth"))
        topics = {"info": (CameraInfo, SENSOR_TOPICS["camera_info"].format(name=camera_name)),
                  "lidar": (PointCloud2, SENSOR_TOPICS["lidar"]), "odometry": (Odometry, SENSOR_TOPICS["odometry"]),
                  "image": (Image, SENSOR_TOPICS["camera_image"].format(name=camera_name))}
        for kind, (msg_type, topic) in topics.items():
            sync.create_subscription(msg_type, topic, lambda msg, k=kind: self._on_sensor(k, msg), qos)
        planner = self.nodes["trajectory_planner"]
        planner.create_subscription(Odometry, SENSOR_TOPICS["odometry"], self._on_odometry,
                                    sensor_qos(_schema_default("trajectory_planner", "qos.sensor_reliability"),
                                               _schema_default("trajectory_planner", "qos.sensor_depth")))
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

    def _bev(self, frame) -> None:
        self._hand(("trajectory_planner", self._on_stage), "bev", frame.header.stamp, self.outputs.bev)

    def _reasoner(self, frame) -> None:
        self._hand(("trajectory_planner", self._on_stage), "plan", frame.header.stamp, self.outputs.plan)

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

        context = self.nodes["sensor_sync"].context
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


class _NoNodeTimes:
    """The floor's nodes keep no statistics."""

    def start(self) -> None:
        pass

    def stop(self) -> tuple[dict, dict]:
        return {}, {}


def run_floor(opts, outputs: FloorOutputs, variant: str, rate: float, warm_msgs: list, msgs: list,
              camera_name: str) -> dict[str, Any]:
    """One floor run in a fresh ROS context (nothing else of the bench on the DDS domain meanwhile)."""
    from latentvla_ros.apps.bench.harness import (
        Harness,
        idle_drain_s,
        measure_graph,
        new_ros_context,
        shutdown_ros_context,
        wait_until,
        warm_up_graph,
    )

    ctx = new_ros_context(opts.domain_id)
    graph = harness = None
    try:
        graph = FloorGraph(ctx, outputs, FLOOR_VARIANTS[variant], camera_name).start()
        harness = Harness(ctx)
        if not wait_until(lambda: harness.connected(), 30.0):
            raise RuntimeError("the floor graph did not connect to the harness within 30 s")
        warm_up_graph(harness, warm_msgs, rate, min(max(1, opts.warmup), 3), opts.startup_timeout_s)
        run = measure_graph(harness, msgs, rate, None, lambda: {"sensor_sync": graph.synchronized}, lambda: [],
                            drain_s=idle_drain_s(rate, None), node_times=_NoNodeTimes())
        run.update(mode="floor", variant=variant, executor_threads=graph.thread_layout(),
                   hops=FLOOR_VARIANTS[variant])
        return run
    finally:
        if harness is not None:
            harness.close()
        if graph is not None:
            graph.close()
        shutdown_ros_context(ctx)
