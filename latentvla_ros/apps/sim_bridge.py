"""ROS 2 side of the closed loop: the sim-bridge node and a node-graph session.

``SimBridgeNode`` plays the vehicle for the latentvla node graph: for every 10 Hz
simulation step it publishes ``/clock`` (the step's simulation time), the route command,
the camera ``CameraInfo`` + ``Image``, the LiDAR ``PointCloud2`` and the ``Odometry`` on
the sensor topics of ``ros/topology.py`` (``SENSOR_TOPICS``), all stamped with that
time, then waits -- synchronously, with a timeout -- for the ``PlannedTrajectory`` that
carries the same stamp. ``RosGraphDriver`` wraps that exchange as a closed-loop driver
(``closed_loop.run_episode`` tracks the trajectory and steps highway-env), so the ego
is driven by trajectories received over ROS topics and nothing else.

The episode's mission route (``HighwayClosedLoopEnv.route``: the world-frame centreline the
closed loop scores progress along) goes out as nav_msgs/Path in the odometry's frame on
the ``route`` topic, latched (reliable + transient local), when the episode starts and then
once per second of simulation time (``ROUTE_PERIOD_NS``), stamped with the step's time.

``RosGraphSession`` starts the graph (composed in this process, or as separate
processes), with ``use_sim_time``, on its own rclpy context and DDS domain, plus the
bridge, and spins them in a background executor.

Watchdog trajectories of the planner (``is_fallback`` with a reason starting
``"no BEV features"``) are stamped with the node's current (simulation) time, which can
equal a frame's stamp; they are not answers to a frame and are ignored (counted).
Fallbacks the planner publishes *for* a frame (latent-plan timeout, model error) are
used, and counted by the episode.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import rclpy
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo
from std_msgs.msg import UInt8

from latentvla_ros.core.types import Trajectory
from latentvla_ros.evaluation import drivers
from latentvla_ros.evaluation.closed_loop import HighwayClosedLoopEnv, Observation
from latentvla_ros.msg import PlannedTrajectory
from latentvla_ros.ros.conversions import (
    make_header,
    msg_to_trajectory,
    ns_to_stamp,
    numpy_to_image,
    quaternion_from_yaw,
    route_to_path,
    stamp_to_ns,
    xyzi_to_pointcloud2,
)
from latentvla_ros.ros.graph import GraphOptions, apply_transport_env, create_composed_nodes, spawn_processes, stop_processes
from latentvla_ros.ros.qos import static_qos
from latentvla_ros.ros.route_input import RouteInput
from latentvla_ros.ros.topology import (
    BEV_FEATURES,
    FRAME_LIDAR,
    LATENT_PLAN,
    SENSOR_FRAME,
    SENSOR_TOPICS,
    TEACHER_PLAN,
    TRAJECTORY,
    NodeSpec,
    graph_nodes,
    resolve_guard_input,
)

WATCHDOG_REASON_PREFIX = "no BEV features"
ROUTE_PERIOD_NS = 1_000_000_000  # the route is republished once per second of simulation time


def _reliable(depth: int) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def topdown_camera_info(camera: Any, stamp_ns: int, frame_id: str = "camera_front") -> CameraInfo:
    """CameraInfo of the ego-up top-down camera. It is orthographic: K holds pixels per
    metre as fx = fy and the ego's pixel as (cx, cy); no distortion."""
    ppm = 1.0 / float(camera.meters_per_pixel)
    cx, cy = camera.ego_pixel_xy
    info = CameraInfo(header=make_header(stamp_ns, frame_id), height=int(camera.height), width=int(camera.width),
                      distortion_model="plumb_bob")
    info.d = [0.0] * 5
    info.k = [ppm, 0.0, float(cx), 0.0, ppm, float(cy), 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [ppm, 0.0, float(cx), 0.0, 0.0, ppm, float(cy), 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class SimBridgeNode(Node):
    """Publishes one simulation step's sensors and waits for the trajectory with its stamp."""

    def __init__(self, camera_names: tuple[str, ...] = ("front",), sensor_topics: dict[str, str] | None = None,
                 trajectory_topic: str = "/" + TRAJECTORY, node_name: str = "sim_bridge", map_frame: str = "map",
                 base_frame: str = "base_link", context: Any = None):
        super().__init__(node_name, context=context)
        topics = sensor_topics or SENSOR_TOPICS
        self.camera_names = tuple(camera_names)
        self.map_frame, self.base_frame = map_frame, base_frame
        qos = _reliable(5)
        from sensor_msgs.msg import Image, PointCloud2

        self._image_pubs = {n: self.create_publisher(Image, topics["camera_image"].format(name=n), qos) for n in self.camera_names}
        self._info_pubs = {n: self.create_publisher(CameraInfo, topics["camera_info"].format(name=n), qos) for n in self.camera_names}
        self._lidar_pub = self.create_publisher(PointCloud2, topics["lidar"], qos)
        self._odom_pub = self.create_publisher(Odometry, topics["odometry"], qos)
        self._command_pub = self.create_publisher(UInt8, topics["driving_command"], _reliable(10))
        self._clock_pub = self.create_publisher(Clock, "/clock", _reliable(10))
        self._route_pub = self.create_publisher(PathMsg, topics.get("route", SENSOR_TOPICS["route"]), static_qos())
        self._route: np.ndarray | None = None
        self._route_stamp: int | None = None  # stamp of the last route published (None: publish with the next step)
        self.routes_published = 0
        self._cond = threading.Condition()
        self._wanted: int | None = None
        self._answer: PlannedTrajectory | None = None
        self.ignored_watchdog = 0
        self.consecutive_misses = 0
        self.unmatched = 0
        self.received = 0
        self.trajectory_topic = trajectory_topic
        self.create_subscription(PlannedTrajectory, trajectory_topic, self._on_trajectory, _reliable(50))

    # ------------------------------------------------------------------ inputs
    def _on_trajectory(self, msg: PlannedTrajectory) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        with self._cond:
            self.received += 1
            if msg.is_fallback and msg.fallback_reason.startswith(WATCHDOG_REASON_PREFIX):
                self.ignored_watchdog += 1
                return
            if self._wanted is None or stamp != self._wanted or self._answer is not None:
                self.unmatched += 1
                return
            self._answer = msg
            self._cond.notify_all()

    # ------------------------------------------------------------------ outputs
    def graph_ready(self, links: dict[str, int] | None = None) -> bool:
        """Every sensor topic has a subscriber, the trajectory topic a publisher, and each
        topic in ``links`` at least that many subscribers (the graph's internal edges)."""
        pubs = [*self._image_pubs.values(), *self._info_pubs.values(), self._lidar_pub, self._odom_pub]
        if not all(p.get_subscription_count() > 0 for p in pubs) or self.count_publishers(self.trajectory_topic) == 0:
            return False
        return all(self.count_subscribers(topic) >= n for topic, n in (links or {}).items())

    def wait_for_graph(self, timeout_s: float = 30.0, links: dict[str, int] | None = None) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.graph_ready(links):
                return True
            time.sleep(0.05)
        return self.graph_ready(links)

    def set_route(self, route_world: np.ndarray | None) -> None:
        """The episode's route (K, 2) in the odometry's (map) frame; published with the next step."""
        self._route = None if route_world is None else np.array(route_world, dtype=np.float64).reshape(-1, 2)
        self._route_stamp = None

    def publish_route_now(self, stamp: int) -> int | None:
        """Publish the route at once (an episode's start, before its first frame); its stamp, None without one."""
        if self._route is None:
            return None
        self._route_stamp = None
        self._publish_route(stamp)
        return self._route_stamp

    def _publish_route(self, stamp: int) -> None:
        """On change, then once per ``ROUTE_PERIOD_NS`` (and after a jump back in time)."""
        last = self._route_stamp
        if self._route is None or (last is not None and 0 <= stamp - last < ROUTE_PERIOD_NS):
            return
        self._route_pub.publish(route_to_path(self._route, stamp, self.map_frame))
        self._route_stamp = stamp
        self.routes_published += 1

    def publish_observation(self, obs: Observation, camera: Any) -> None:
        """``/clock``, route (on change / once a second), command, camera info + image, LiDAR
        and odometry of one step."""
        if obs.frame is None:
            raise ValueError("the observation has no sensor frame (sensors=False)")
        stamp = obs.stamp_ns
        self._clock_pub.publish(Clock(clock=ns_to_stamp(stamp)))
        self._publish_route(stamp)
        self._command_pub.publish(UInt8(data=int(obs.ego.command)))
        for name, cam in zip(self.camera_names, obs.frame.cameras):
            self._info_pubs[name].publish(topdown_camera_info(camera, stamp, f"camera_{name}"))
            self._image_pubs[name].publish(numpy_to_image(np.ascontiguousarray(cam.image), stamp, f"camera_{name}"))
        self._lidar_pub.publish(xyzi_to_pointcloud2(obs.frame.lidar_points, stamp, self.base_frame))
        odom = Odometry(header=make_header(stamp, self.map_frame), child_frame_id=self.base_frame)
        odom.pose.pose.position.x, odom.pose.pose.position.y = float(obs.pose[0]), float(obs.pose[1])
        odom.pose.pose.orientation = quaternion_from_yaw(float(obs.pose[2]))
        odom.twist.twist.linear.x = float(obs.ego.velocity[0])
        odom.twist.twist.linear.y = float(obs.ego.velocity[1])
        odom.twist.twist.angular.z = float(obs.ego.yaw_rate)
        self._odom_pub.publish(odom)

    def exchange(self, obs: Observation, camera: Any, timeout_s: float = 20.0, retries: int = 1) -> PlannedTrajectory | None:
        """Publish ``obs`` and block until the trajectory stamped ``obs.stamp_ns`` arrives.

        On a timeout the same step is published again (``retries`` times: a sensor
        sample may be dropped on the way); None if no answer comes at all.
        """
        with self._cond:
            self._wanted, self._answer = int(obs.stamp_ns), None
        try:
            for _ in range(1 + max(int(retries), 0)):
                self.publish_observation(obs, camera)
                with self._cond:
                    if self._cond.wait_for(lambda: self._answer is not None, timeout=timeout_s):
                        return self._answer
            return None
        finally:
            with self._cond:
                self._wanted = None


def drive_episode(bridge: SimBridgeNode, env: HighwayClosedLoopEnv, name: str = "latentvla", tracker: Any = None,
                  timeout_s: float = 20.0) -> Any:
    """Run ``env`` to the end of an episode at 10 Hz simulation time, the ego driven by the
    trajectories the graph publishes for each published step (``closed_loop.run_episode``)."""
    from latentvla_ros.evaluation.closed_loop import run_episode

    return run_episode(env, RosGraphDriver(bridge, name, timeout_s=timeout_s), tracker)


class GraphNotRespondingError(RuntimeError):
    """The graph answered none of the last few frames: the episode is aborted."""


def probe_observation(camera: Any, stamp_ns: int) -> Observation:
    """A synthetic standstill observation (grey image, a ring of ground points) used to
    check that the whole graph answers before an episode starts."""
    from latentvla_ros.core.types import CameraImage, DrivingCommand, EgoState, SensorFrame

    image = np.full((int(camera.height), int(camera.width), 3), 100, dtype=np.uint8)
    az = np.linspace(-np.pi, np.pi, 64, endpoint=False)
    points = np.stack([10.0 * np.cos(az), 10.0 * np.sin(az), np.zeros_like(az), np.full_like(az, 0.1)], axis=1)
    ego = EgoState(velocity=np.zeros(2, np.float32), acceleration=np.zeros(2, np.float32), yaw_rate=0.0,
                   command=DrivingCommand.STRAIGHT)
    frame = SensorFrame(stamp_ns=stamp_ns, cameras=[CameraImage(image=image, name="front")],
                        lidar_points=points.astype(np.float32), ego=ego)
    return Observation(scenario="probe", seed=-1, step=0, stamp_ns=stamp_ns, pose=np.zeros(3), ego=ego, speed_mps=0.0,
                       agents=np.zeros((0, 8), np.float32), frame=frame)


class RosGraphDriver:
    """Closed-loop driver: the node graph plans, through ``SimBridgeNode.exchange``.

    A frame without an answer (after the retries) gives None (the env loop brakes);
    after ``max_consecutive_misses`` such frames in a row the graph is considered dead
    and ``plan`` raises ``GraphNotRespondingError`` (the episode ends as an error, and
    so does every later episode on the same bridge, without waiting again).
    """

    needs_expert_env = False
    needs_sensors = True

    def __init__(self, bridge: SimBridgeNode, name: str = "latentvla", timeout_s: float = 20.0, retries: int = 1,
                 max_consecutive_misses: int = 3, route_received: Any = None, route_wait_s: float = 2.0):
        self.bridge = bridge
        self.route_received = route_received  # stamp -> bool: the planner node holds the route of that stamp
        self.route_wait_s = route_wait_s
        self.route_waits_timed_out = 0
        self.name = name
        self.timeout_s = timeout_s
        self.retries = retries
        self.max_consecutive_misses = max_consecutive_misses
        self.camera = None
        self.messages: list[PlannedTrajectory] = []
        self.keep_messages = False

    def reset(self, env: HighwayClosedLoopEnv) -> None:
        self.camera = env.camera
        route = getattr(env, "route", None)  # a Polyline in the world (= odometry) frame
        self.bridge.set_route(None if route is None else route.points)
        obs = getattr(env, "observation", None)
        stamp = self.bridge.publish_route_now(int(obs.stamp_ns)) if obs is not None else None
        if stamp is not None and self.route_received is not None:
            # the route travels on its own topic: without this wait the first frame of an episode could be
            # planned before the planner node has the episode's route (the direct path always has it)
            deadline = time.monotonic() + self.route_wait_s
            while not self.route_received(stamp):
                if time.monotonic() > deadline:
                    self.route_waits_timed_out += 1
                    break
                time.sleep(0.002)

    def plan(self, obs: Observation) -> Trajectory | None:
        if self.bridge.consecutive_misses >= self.max_consecutive_misses:
            raise GraphNotRespondingError(f"no trajectory for {self.bridge.consecutive_misses} frames in a row")
        msg = self.bridge.exchange(obs, self.camera, self.timeout_s, self.retries)
        if msg is None:
            self.bridge.consecutive_misses += 1
            return None
        self.bridge.consecutive_misses = 0
        if self.keep_messages:
            self.messages.append(msg)
        return msg_to_trajectory(msg)


# ----------------------------------------------------------------------------- graph
def _checkpoint_fusion(planner_checkpoint: str, preset: str) -> str:
    """The fusion mode the planner node will run: its checkpoint's, else the preset's."""
    from latentvla_ros.core.checkpoint import CONFIG_NAME, read_checkpoint_config
    from latentvla_ros.models.configuration_planner import PlannerConfig

    if planner_checkpoint and (Path(planner_checkpoint) / CONFIG_NAME).is_file():
        return str(read_checkpoint_config(planner_checkpoint)["config"].get("fusion", "student"))
    return PlannerConfig.preset(preset).fusion


@dataclass
class GraphVariant:
    """Which planner variant the graph runs; an empty checkpoint = untrained: the planner then
    publishes fallbacks unless ``allow_untrained`` (evaluation's ``--allow-untrained``) lets
    it drive on the random weights, flagged in model_id.

    ``use_sim_time``: the nodes follow the bridge's ``/clock`` (set after construction in
    composed mode, by ``-p use_sim_time:=true`` in process mode).

    ``fusion`` is the intended variant ('none', 'student', 'teacher'). The nodes follow
    the fusion the planner node will actually run (``effective_fusion``: its checkpoint's,
    or the preset's when untrained): 'none' -> sensor_sync, bev_features,
    trajectory_planner; 'student' -> + latent_reasoner; 'teacher' -> + teacher_labeler,
    its plans remapped to the planner's plan input.
    """

    name: str = "latentvla"
    fusion: str = "student"
    bev_checkpoint: str = ""
    planner_checkpoint: str = ""
    student_checkpoint: str = ""
    teacher_path: str = ""
    preset: str = "edge"
    mode: str = "composed"  # or "processes"
    torch_threads: int = 1
    plan_timeout_s: float = 5.0
    input_timeout_s: float = 10.0
    log_level: str = "warn"
    use_sim_time: bool = True
    allow_untrained: bool = False
    guard: bool = True  # the planner's LiDAR obstacle guard (obstacle_guard.enabled), as the direct path's GuardedAgent
    extra_overrides: dict = field(default_factory=dict)

    @property
    def effective_fusion(self) -> str:
        return _checkpoint_fusion(self.planner_checkpoint, self.preset)

    def nodes(self) -> list[NodeSpec]:
        fusion = self.effective_fusion
        specs = graph_nodes(with_teacher=fusion == "teacher")
        keep = {"sensor_sync", "bev_features", "trajectory_planner"}
        if fusion == "student":
            keep.add("latent_reasoner")
        if fusion == "teacher":
            keep.add("teacher_labeler")
            for spec in specs:
                if spec.name == "trajectory_planner":
                    spec.remaps = [(src, TEACHER_PLAN if src == "~/input/plan" else dst) for src, dst in spec.remaps]
        return [s for s in specs if s.name in keep]

    def internal_links(self) -> dict[str, int]:
        """Topic -> subscribers it must have before the graph is ready (every node up)."""
        fusion = self.effective_fusion
        # + the planner's obstacle guard: the SensorFrame in a composed process, the frame's cloud in its own
        # (trajectory_planner guard_input auto)
        guard_input = resolve_guard_input(self.extra_overrides.get("trajectory_planner", {}).get("guard_input", "auto"),
                                          in_process=self.mode == "composed")
        frame_guard = self.guard and guard_input == "frame"
        frame_readers = 1 + int(fusion in ("student", "teacher")) + int(frame_guard)
        links = {"/" + SENSOR_FRAME: frame_readers, "/" + BEV_FEATURES: 1}
        if self.guard and not frame_guard:
            links["/" + FRAME_LIDAR] = 1
        if fusion == "student":
            links["/" + LATENT_PLAN] = 1
        if fusion == "teacher":
            links["/" + TEACHER_PLAN] = 1
        return links

    def check_available(self) -> str:
        """'' when the graph can be built as intended, else why not."""
        effective = self.effective_fusion
        if self.planner_checkpoint and effective != self.fusion:
            return f"planner checkpoint {self.planner_checkpoint} has fusion={effective!r}, expected {self.fusion!r}"
        if "teacher" in (self.fusion, effective):
            import importlib.util

            if importlib.util.find_spec("latentvla_ros.ros.nodes.teacher_labeler") is None:
                return "no teacher_labeler node in the graph (latentvla_ros/ros/nodes/teacher_labeler.py)"
            if not self.teacher_path:
                return "no teacher checkpoint"
            if effective != "teacher":
                return "no teacher-fused planner checkpoint"
        return ""

    def options(self) -> GraphOptions:
        common = {"torch_threads": int(self.torch_threads)}
        overrides: dict[str, dict[str, object]] = {
            "bev_features": {**common, "checkpoint": self.bev_checkpoint, "preset": self.preset},
            "latent_reasoner": {**common, "checkpoint": self.student_checkpoint, "preset": self.preset},
            "trajectory_planner": {**common, "checkpoint": self.planner_checkpoint, "preset": self.preset,
                                   "plan_timeout_s": float(self.plan_timeout_s),
                                   "input_timeout_s": float(self.input_timeout_s),
                                   "allow_untrained": bool(self.allow_untrained),
                                   "obstacle_guard.enabled": bool(self.guard)},
            "teacher_labeler": {**common, "model_path": self.teacher_path},
        }
        for node, values in self.extra_overrides.items():
            overrides.setdefault(node, {}).update(values)
        specs = self.nodes()
        names = {s.name for s in specs}
        return GraphOptions(nodes=specs, overrides={k: v for k, v in overrides.items() if k in names},
                            use_sim_time=self.use_sim_time and self.mode == "processes", log_level=self.log_level)


class RosGraphSession:
    """The node graph + a ``SimBridgeNode``, spinning in the background (context manager).

    ``context``: an initialised rclpy Context to use (tests); otherwise one is created
    on ``domain_id`` (default: ``ROS_DOMAIN_ID``) and shut down on exit.
    """

    def __init__(self, variant: GraphVariant, domain_id: int | None = None, context: Any = None,
                 executor: str | None = None, ready_timeout_s: float = 60.0, probe: bool = True):
        self.variant = variant
        self.domain_id = domain_id if domain_id is not None else int(os.environ.get("ROS_DOMAIN_ID", "0"))
        self._given_context = context
        self.context = context
        self.executor_kind = executor  # ros/executors.py kind (None: $LATENTVLA_EXECUTOR or auto)
        self.ready_timeout_s = ready_timeout_s
        self.probe = probe
        self.probes_sent = 0
        self.nodes: list[Any] = []
        self.procs: list[Any] = []
        self.bridge: SimBridgeNode | None = None
        self._executor: Any = None

    def __enter__(self) -> "RosGraphSession":
        problem = self.variant.check_available()
        if problem:
            raise RuntimeError(f"graph variant {self.variant.name!r} not available: {problem}")
        apply_transport_env()
        from rclpy.context import Context

        from latentvla_ros.ros.executors import GraphExecutor

        if self.context is None:
            self.context = Context()
            rclpy.init(context=self.context, domain_id=self.domain_id)
        try:
            options = self.variant.options()
            if self.variant.mode == "composed":
                self.nodes = create_composed_nodes(options, context=self.context)
                # use_sim_time is switched on after construction (composed mode): the
                # /clock subscription is then created by a fully built node
                from rclpy.parameter import Parameter

                for node in self.nodes:
                    node.set_parameters([Parameter("use_sim_time", Parameter.Type.BOOL, bool(self.variant.use_sim_time))])
            elif self.variant.mode == "processes":
                env = dict(os.environ)
                env["ROS_DOMAIN_ID"] = str(self.domain_id)
                self.procs = spawn_processes(options, env)
            else:
                raise ValueError(f"mode must be 'composed' or 'processes', got {self.variant.mode!r}")
            self.bridge = SimBridgeNode(context=self.context)
            self._executor = GraphExecutor(context=self.context, kind=self.executor_kind)
            self._executor.add(*self.nodes, self.bridge).start()
            deadline = time.monotonic() + self.ready_timeout_s
            links = self.variant.internal_links()
            while not self.bridge.graph_ready(links):
                dead = [p.args[2] if len(p.args) > 2 else str(p.args) for p in self.procs if p.poll() is not None]
                if dead:
                    raise RuntimeError(f"graph node process(es) exited during start-up: {dead}")
                if time.monotonic() > deadline:
                    raise RuntimeError("the node graph did not come up (sensor subscribers / trajectory publisher missing)")
                time.sleep(0.05)
            if self.probe:
                self._probe(deadline)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _probe(self, deadline: float) -> None:
        """Publish synthetic frames (stamps 1 ms, 2 ms, ... -- before any episode) until the
        graph answers one: discovery can report a subscriber before its first sample gets
        through, and a lost first frame would cost an episode its first step."""
        from latentvla_ros.data.highway import CameraConfig

        assert self.bridge is not None
        camera = CameraConfig()
        while True:
            self.probes_sent += 1
            obs = probe_observation(camera, 1_000_000 * self.probes_sent)
            if self.bridge.exchange(obs, camera, timeout_s=2.0, retries=0) is not None:
                return
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"the node graph does not answer ({self.probes_sent} probe frames sent)")

    def __exit__(self, *exc: Any) -> None:
        if self._executor is not None:
            self._executor.stop()
            self._executor = None
        for node in [*self.nodes, *([self.bridge] if self.bridge else [])]:
            try:
                node.destroy_node()
            except Exception:  # noqa: BLE001 - shutdown: one node failing to close must not keep the others open
                pass
        self.nodes, self.bridge = [], None
        if self.procs:
            stop_processes(self.procs)
            self.procs = []
        if self._given_context is None and self.context is not None and self.context.ok():
            rclpy.shutdown(context=self.context)
        self.context = self._given_context

    def driver(self, name: str | None = None, timeout_s: float = 20.0) -> RosGraphDriver:
        if self.bridge is None:
            raise RuntimeError("session not started")
        return RosGraphDriver(self.bridge, name or self.variant.name, timeout_s=timeout_s,
                              route_received=self._route_received())

    def _route_received(self) -> Any:
        """stamp -> whether the composed planner node holds the route of that stamp (None in process
        mode, where the node is out of reach: there the first frame may still go without it)."""
        planners = [n for n in self.nodes if isinstance(getattr(n, "route", None), RouteInput)]
        if not planners:
            return None
        return lambda stamp: all(p.route.stamp_ns == stamp for p in planners)

    def node_stats(self) -> dict[str, dict]:
        """Counters of the composed nodes (empty in process mode)."""
        return {n.get_name(): n.stats.snapshot() for n in self.nodes if hasattr(n, "stats")}


def run_method_episodes(method: Any, episodes: Sequence[tuple[str, int]], config: Any = None, *,
                        domain_id: int | None = None, stamp_base_ns: int = 0, on_episode: Any = None) -> list[Any]:
    """``evaluation.drivers.run_method_episodes`` plus the node graph: a 'ros' method
    (``ClosedLoopMethod``) drives every episode through one ``RosGraphSession`` on
    ``domain_id``; every other kind runs directly."""
    if method.kind != "ros":
        return drivers.run_method_episodes(method, episodes, config, stamp_base_ns=stamp_base_ns, on_episode=on_episode)
    variant = GraphVariant(**{k: v for k, v in method.graph.items() if k != "ablation"})
    with RosGraphSession(variant, domain_id=domain_id) as session:
        return drivers.drive_episodes(method, episodes, lambda: session.driver(name=method.name), config, sensors=True,
                                      stamp_base_ns=stamp_base_ns, on_episode=on_episode)
