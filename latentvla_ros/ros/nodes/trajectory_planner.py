"""trajectory_planner: BevFeatures (+ LatentActionPlan) -> PlannedTrajectory, Path, markers.

Exactly one trajectory per BEV frame: the model's, or a comfortable-stop fallback
(``is_fallback`` + ``fallback_reason``) along the current heading and curvature when

- the frame's latent plan does not come within ``plan_timeout_s`` ("latent plan
  timeout"); after such a timeout, and until a plan arrives again, frames wait one
  watchdog cycle only (a dead or restarting latent_reasoner: "latent plan stream
  silent ..."),
- the model fails or produces NaN ("model error: ..."),
- and, from the steady-clock watchdog, while no BEV frame arrives for ``input_timeout_s``
  ("no BEV features for ...": sensors, sensor_sync or bev_features down),
- the weights are untrained ("untrained weights: ..."): this node's checkpoint, or the
  model_id of the frame's BEV features or latent plan says ``untrained`` (a missing or
  corrupt checkpoint upstream), unless ``allow_untrained`` is true; then the model's
  trajectory is published with ``untrained`` in its model_id.

Nothing is published before the first BEV frame (the controller brakes on its own while
no trajectory comes). Trajectories are published in stamp order: watchdog fallbacks are
stamped on the data's timeline (the last BEV stamp + the steady time since), and a
backwards time jump (looping bag, simulator reset) starts a new timeline that keeps the
plans already received for it. Header stamps far (> 5 s) from the node's clock get one
warning naming the fix (use_sim_time).

The planner leaves the fallback by itself with the first model trajectory. Repeated
stamps are dropped and counted (``duplicate_bev`` / ``duplicate_plan``), plans that
never meet their BEV frame are counted (``plan_unmatched``), frames of an old timeline flushed
by a backwards time jump before their plan came (``time_jump``: not a plan timeout), and frames whose BEV
features never arrived (``frame_lost_upstream``, from ``BevFeatures.sequence``).

Route: the latest mission route (``~/input/route``, nav_msgs/Path in the odometry's frame,
converted once per message) is rotated into the ego frame of each frame at plan time with
the odometry pose nearest to the frame's stamp (ros/route_input.py) and given to a planner
whose checkpoint has a route input (``route_points`` > 0); drops: ``route_stale`` (stamped
more than ``route_timeout_s`` from the frame; 0: never stale), ``route_frame_mismatch``,
``route_no_pose``, ``bad_route`` (empty, NaN). Without a usable route the plan runs with an
invalid route, the diagnostics say why.

Obstacle guard (``obstacle_guard.*``, on by default): the node also reads the LiDAR of each
synchronized frame, moves it into the ego frame as bev_features does (ros/lidar_frames.py:
``use_tf``, ``lidar_extrinsics.*``) and keeps the last few frames by stamp (ros/guard_input.py).
``guard_input`` says from where: the SensorFrame (``~/input/frame``, bev_features' input; in a
composed process handed over in-process, its conversion shared: ``auto`` there), or the frame's
LiDAR cloud alone (``~/input/lidar``: sensor_sync's ``~/output/lidar``, stamped with the frame's
stamp) with the ego state from this node's odometry nearest to that stamp (``auto`` elsewhere: the
camera images never cross into this process). The model's trajectory for a BEV frame is checked
against the LiDAR of the frame with the same stamp (core/obstacle_guard.py, the object the direct
path's GuardedAgent uses) and retimed to stop before a conflict; fallbacks pass unchanged. Where
the frame's LiDAR comes on another thread (composed) the plan waits for it; where it comes on the
planning thread itself (one node per process: cloud, odometry and BEV features share the executor
thread, and under load the BEV features can come first) the plan is held back, and the frames
behind it with it (stamp order), until its input arrives (``guard_held``, ``guard_held_max_ms``).
A frame whose LiDAR has not come within ``GUARD_FRAME_WAIT_S`` of its match (or, from a cloud, has
no odometry within 50 ms of its stamp) is published unguarded, counted as a drop
(``guard_no_lidar`` / ``guard_no_odometry``) and flagged WARN in the diagnostics until a plan is
guarded again.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque

from diagnostic_msgs.msg import DiagnosticStatus
from nav_msgs.msg import Odometry, Path
from rclpy.clock import Clock, ClockType
from sensor_msgs.msg import PointCloud2
from visualization_msgs.msg import MarkerArray

from latentvla_ros.core.extrinsics import ExtrinsicsError
from latentvla_ros.core.fallback import comfortable_stop
from latentvla_ros.core.features import FeatureError
from latentvla_ros.core.obstacle_guard import GuardConfig
from latentvla_ros.models.configuration_planner import PlannerConfig
from latentvla_ros.msg import BevFeatures, LatentActionPlan, PlannedTrajectory, SensorFrame
from latentvla_ros.ros.contracts.stamp_matcher import MatchedFrame, StampMatcher
from latentvla_ros.ros.conversions import (
    ConversionError,
    make_header,
    odometry_pose,
    path_xy,
    pointcloud2_to_xyzi,
    shared_msg_to_bev,
    shared_msg_to_plan,
    shared_sensor_frame_to_core,
    stamp_to_ns,
    trajectory_markers,
    trajectory_to_msg,
    trajectory_to_path,
)
from latentvla_ros.ros.guard_input import NO_LIDAR, ODOMETRY_MATCH_NS, GuardInput, HeldFrames
from latentvla_ros.ros.lidar_frames import LidarToEgo
from latentvla_ros.ros.markers import fallback_state_marker, latent_token_markers
from latentvla_ros.ros.model_loading import load_model_runtime
from latentvla_ros.ros.node_base import ERROR, LatentVlaNode, checked_odometry
from latentvla_ros.ros.node_main import run_node
from latentvla_ros.ros.qos import static_qos
from latentvla_ros.ros.route_input import RouteInput
from latentvla_ros.ros.topology import resolve_guard_input
from latentvla_ros.runtime import TrajectoryPlanner

ROUTE_POSE_WAIT_S = 0.05  # the longest a frame waits for the odometry pose of its stamp (route transform)
# the frame's own pose: the odometry sample within ODOMETRY_MATCH_NS of its stamp (sensor_sync's slop), as for the guard
# the longest a frame's plan waits for the LiDAR of its stamp (obstacle guard): blocking when it arrives on another
# thread (in a composed process the SensorFrame is handed over, on sensor_sync's thread, before bev_features even
# starts on it), held back (``_release_held``) when it arrives on the planning thread (one node per process)
GUARD_FRAME_WAIT_S = 0.05

_RECENT = 256  # stamps remembered to detect duplicates
_JUMP_NS = 1_000_000_000  # a step back in stamps larger than this is a new timeline
_CLOCK_MISMATCH_S = 5.0  # header stamps this far from the node clock: wrong time source


class _RecentStamps:
    """The last ``size`` stamps seen, to detect repeats. A step back in time of more than
    ``jump_ns`` (looping bag, simulator reset) starts over: old stamps may come again."""

    def __init__(self, size: int = _RECENT, jump_ns: int = 1_000_000_000):
        self._order: deque[int] = deque()
        self._set: set[int] = set()
        self.size = size
        self.jump_ns = jump_ns
        self.newest: int | None = None
        self.resets = 0

    def seen(self, stamp: int) -> bool:
        """True if ``stamp`` was seen recently; remembers it otherwise."""
        if self.newest is not None and stamp < self.newest - self.jump_ns:
            self._order.clear()
            self._set.clear()
            self.newest = None
            self.resets += 1
        if stamp in self._set:
            return True
        self.newest = stamp if self.newest is None else max(self.newest, stamp)
        self._order.append(stamp)
        self._set.add(stamp)
        if len(self._order) > self.size:
            self._set.discard(self._order.popleft())
        return False


class TrajectoryPlannerNode(LatentVlaNode):
    schema_name = "trajectory_planner"
    executor_group = "planner"  # its own thread (ros/executors.py)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.planner = load_model_runtime(self, TrajectoryPlanner, PlannerConfig)
        self._lock = threading.Lock()
        self.matcher = StampMatcher(needs_plan=self.planner.needs_plan, plan_timeout_s=self.params.plan_timeout_s)
        self._speed = 0.0
        self._yaw_rate = 0.0
        self._odom_time: float | None = None
        self.route = RouteInput()
        self.route_pose_late = 0  # frames whose own odometry pose had not come within ROUTE_POSE_WAIT_S
        # odometry and route callbacks vs. the frame path; the frame path waits (ROUTE_POSE_WAIT_S at most)
        # for the odometry pose of its own stamp when it has not arrived yet (odometry reaches this node
        # over DDS, the BEV features in-process: under load the BEV can overtake it)
        self._route_lock = threading.Condition()
        self._last_bev_time = time.monotonic()
        self._last_bev_stamp: int | None = None  # None: no input yet, nothing is published
        self.clock_offset_s: float | None = None
        self._clock_warned = False
        self.clock_warnings = 0
        self._last_plan_time: float | None = None
        self._plan_timeouts_in_row = 0
        self._recent_bevs = _RecentStamps()
        self._recent_plans = _RecentStamps()
        self._evicted_plans_counted = 0
        self._in_fallback = False
        self.fallback_reason = ""
        self.fallback_since: float | None = None
        self.fallback_episodes = 0
        self.untrained_sources: set[str] = set()  # model ids with 'untrained' seen on this node's frames
        self._publishers_seen: dict[str, int] = {}
        out_qos = self.output_qos()
        self._traj_pub = self.create_publisher(PlannedTrajectory, "~/output/trajectory", out_qos)
        self._path_pub = self.create_publisher(Path, "~/output/path", out_qos)
        self._marker_pub = self.create_publisher(MarkerArray, "~/debug/markers", out_qos)
        if self.intra_process is not None:  # a trajectory out ends the process's frame path (ros/intra_process.py)
            self.intra_process.add_frame_end(self)
        in_qos = self.input_qos()
        # composed: BEV features and plans are planned in the thread that hands them over (the
        # last of the pair does the work; ``_serial`` keeps one frame path at a time), no hop
        # to the planner's own thread, which then only runs odometry and the timers
        self._serial = threading.RLock()
        self.guard = GuardInput(GuardConfig(**self.params.obstacle_guard.as_dict()))
        self.lidar_to_ego = None
        self._frame_thread: int | None = None  # the thread the guard's LiDAR arrives on
        self.guard_input = self._guard_input_kind() if self.guard.enabled else "none"
        # matched frames in stamp order: the head waits while its guard input can still come on this thread
        # (``_release_held``); counted (``guard_held``) and bounded (GUARD_FRAME_WAIT_S)
        self._held = HeldFrames()
        self._guard_timer = None
        self._guard_timer_armed = False
        if self.guard.enabled:
            self.lidar_to_ego = LidarToEgo(self, self.params.frame_id, self.params.lidar_extrinsics, self.params.use_tf)
            # every frame (no latest-frame policy: each plan needs its own frame's LiDAR); not watched: a
            # missing one is a counted, unguarded plan, not a stale pipeline. Subscribed before the BEV
            # features: discovered with them or earlier, a graph's first frames find their LiDAR
            if self.guard_input == "frame":
                # in a composed process in sensor_sync's thread (a conversion shared with bev_features, a dict insert)
                self.create_subscription(SensorFrame, "~/input/frame", self._on_frame, in_qos, watch=False,
                                         in_process_direct=True)
            else:  # the frame's cloud alone (a few % of a SensorFrame's bytes) + the odometry below
                self.create_subscription(PointCloud2, "~/input/lidar", self._on_lidar, in_qos, watch=False,
                                         in_process_direct=True)
            # publishes a held plan when its guard input has not come in time (armed only while one is held)
            self._guard_timer = self.create_timer(GUARD_FRAME_WAIT_S / 4, self._serialised(self._release_held),
                                                  clock=Clock(clock_type=ClockType.STEADY_TIME))
            self._guard_timer.cancel()
        self._bev_sub = self.create_subscription(BevFeatures, "~/input/bev", self._serialised(self._on_bev), in_qos,
                                                 in_process_direct=True)
        self._plan_sub = None
        if self.planner.needs_plan:
            self._plan_sub = self.create_subscription(LatentActionPlan, "~/input/plan", self._serialised(self._on_plan),
                                                      in_qos, timeout_param="plan_timeout_s", in_process_direct=True)
        self.create_subscription(Odometry, "~/input/odometry", self._on_odometry, self.sensor_qos())
        # optional (not watched); latched like a map (reliable + transient local: a route published
        # once before this node started still arrives), published on change or at a low rate
        self.create_subscription(Path, "~/input/route", self._on_route, static_qos(), watch=False)
        # steady clock: under use_sim_time a stalled /clock (dead simulator, ended bag)
        # must not stop the watchdog that publishes the fallback
        self._watchdog = self.create_timer(1.0 / self.params.watchdog_rate_hz, self._serialised(self._on_watchdog),
                                           clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._graph_check = self.create_timer(1.0, self._check_upstream, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"planner fusion={self.planner.fusion}; waits {self.params.plan_timeout_s} s for plans")
        if self.planner.untrained and not self.params.allow_untrained:
            self.get_logger().error("the planner's own weights are untrained: every frame gets a fallback "
                                    "(set allow_untrained to drive on random weights, flagged in model_id)")
        elif self.planner.untrained:
            self.get_logger().warning("allow_untrained: driving on the planner's UNTRAINED weights, flagged in model_id")

    # ---------------------------------------------------------------- inputs
    def _guard_input_kind(self) -> str:
        """``guard_input``, with ``auto`` resolved (ros/topology.py ``resolve_guard_input``)."""
        return resolve_guard_input(self.params.guard_input, self._in_composed_process())

    def _in_composed_process(self) -> bool:
        """Messages between this process's nodes are handed over in-process (a composed graph)."""
        bus = self.intra_process
        return bus is not None and bus.enabled

    def _serialised(self, callback):
        """``callback`` holding ``_serial``: the frame path runs in one thread at a time."""
        def run(*args):
            with self._serial:
                callback(*args)

        run.__name__ = getattr(callback, "__name__", "callback")
        return run

    def _on_odometry(self, msg: Odometry) -> None:
        try:
            velocity, yaw_rate = checked_odometry(msg)
            x, y, yaw = odometry_pose(msg)
        except ConversionError as exc:
            self.drop("bad_odometry", str(exc))
            return
        self._speed, self._yaw_rate = float(math.hypot(*velocity)), yaw_rate
        self._odom_time = time.monotonic()
        if self.guard_input == "lidar":
            self.guard.add_odometry(stamp_to_ns(msg.header.stamp), velocity, yaw_rate)
        with self._route_lock:
            self.route.add_pose(stamp_to_ns(msg.header.stamp), x, y, yaw, msg.header.frame_id)
            self._route_lock.notify_all()
        if self.guard_input == "lidar":  # after the route's pose: a plan released now finds it
            self._guard_input_came()

    def _on_frame(self, msg: SensorFrame) -> None:
        """Keep the frame's ego-frame LiDAR and ego state for the obstacle guard (by stamp)."""
        frame = self._guard_lidar("SensorFrame", lambda: self.lidar_to_ego.to_ego(shared_sensor_frame_to_core(msg),
                                                                                   msg.lidar.header.frame_id))
        if frame is not None:
            self.guard.add(frame.stamp_ns, frame.lidar_points, frame.ego)
            self._guard_input_came()

    def _on_lidar(self, msg: PointCloud2) -> None:
        """Keep the frame's ego-frame LiDAR (stamped with the frame's stamp by sensor_sync) for the
        obstacle guard; its ego state is the odometry nearest to the stamp, at plan time."""
        points = self._guard_lidar("LiDAR cloud", lambda: self.lidar_to_ego.points_to_ego(pointcloud2_to_xyzi(msg),
                                                                                          msg.header.frame_id))
        if points is not None:
            self.guard.add_cloud(stamp_to_ns(msg.header.stamp), points)
            self._guard_input_came()

    def _guard_input_came(self) -> None:
        """A plan held for its guard input may go now (it was matched on this thread before its cloud came)."""
        if self._held:
            with self._serial:
                self._release_held()

    def _guard_lidar(self, what: str, convert):
        """``convert()``: the guard's LiDAR of one input in the ego frame; None when dropped (counted)."""
        try:
            out = convert()
        except (ConversionError, FeatureError) as exc:
            self.drop("bad_message", f"{what} for the obstacle guard: {exc}")
            return None
        except ExtrinsicsError as exc:
            self.drop("lidar_frame_unknown", str(exc), level="error")
            return None
        self._frame_thread = threading.get_ident()
        return out

    def _guarded(self, stamp_ns: int, traj, route=None, wait: bool = True):
        """The model's trajectory for frame ``stamp_ns``, checked by the obstacle guard against its LiDAR
        (``route``: the mission route in the frame's ego frame, for the guard's creep release)."""
        # wait only where the frame can come meanwhile: not when it is delivered on this very thread (one node
        # per process: the cloud and the BEV features share the planner's executor thread; ``_release_held``
        # held the plan back for it instead)
        wait_s = 0.0 if not wait or self._guard_input_here() else GUARD_FRAME_WAIT_S
        traj, verdict = self.guard.filter(stamp_ns, traj, wait_s, route)
        if verdict is None and self.guard.enabled and not traj.is_fallback:
            missing = self.guard.last_missing
            source = "SensorFrame" if self.guard_input == "frame" else "frame cloud"
            why = (f"no LiDAR ({source}) for frame {stamp_ns}" if missing == NO_LIDAR else
                   f"no odometry within {ODOMETRY_MATCH_NS // 1_000_000} ms of frame {stamp_ns} (its LiDAR came)")
            self.drop(f"guard_{missing}", f"{why}: its trajectory is published WITHOUT the obstacle guard")
        return traj

    def _on_route(self, msg: Path) -> None:
        """Keep the newest route, converted once (x, y in its frame); checked per frame."""
        try:
            xy = path_xy(msg)
        except ConversionError as exc:
            with self._route_lock:
                self.route.reject(str(exc))
            self.drop("bad_route", f"{exc}: planning without a route")
            return
        with self._route_lock:
            self.route.set_route(xy, msg.header.frame_id, stamp_to_ns(msg.header.stamp))

    def _route_for(self, stamp_ns: int):
        """The ego-frame route for the frame ``stamp_ns`` (None: none usable; the drop counted)."""
        with self._route_lock:
            if self.route.has_route and not self.route.has_pose_at(stamp_ns, ODOMETRY_MATCH_NS):
                if not self._route_lock.wait_for(lambda: self.route.has_pose_at(stamp_ns, ODOMETRY_MATCH_NS),
                                                 timeout=ROUTE_POSE_WAIT_S):
                    self.route_pose_late += 1  # planned with the nearest pose there is
            route, drop = self.route.ego_route(stamp_ns, self.params.route_timeout_s, self.params.input_timeout_s)
        if drop is not None:
            self.drop(drop.reason, drop.detail)
        return route

    def _on_bev(self, msg: BevFeatures) -> None:
        if msg.sequence:  # frames that bev_features dropped, or a full input queue here, are counted
            self.count_lost_frames(msg.sequence, "bev")
        try:
            bev = shared_msg_to_bev(msg)  # in-process: bev_features' own object
        except ConversionError as exc:
            self.drop("bad_bev", str(exc))
            return
        resets = self._recent_bevs.resets
        if self._recent_bevs.seen(bev.stamp_ns):
            self.drop("duplicate_bev", f"BEV frame {bev.stamp_ns} arrived again; its trajectory is already out")
            return
        if self._recent_bevs.resets != resets:
            self._on_time_jump(bev.stamp_ns)
        now = time.monotonic()
        self._last_bev_time = now
        self._last_bev_stamp = bev.stamp_ns
        self._check_clock(bev.stamp_ns)
        speed = float(math.hypot(bev.ego_status[4], bev.ego_status[5])) if bev.ego_status.shape[0] >= 6 else self._speed
        if math.isfinite(speed):
            self._speed = speed
        arrival = now
        if self._plan_stream_down(now) is not None:
            # no plan is likely to come: wait one watchdog cycle at most, not plan_timeout_s
            arrival = now - max(0.0, self.params.plan_timeout_s - 1.0 / self.params.watchdog_rate_hz)
        with self._lock:
            ready = self.matcher.add_bev(bev.stamp_ns, bev, arrival)
        self._handle(ready)

    def _on_plan(self, msg: LatentActionPlan) -> None:
        try:
            plan = shared_msg_to_plan(msg)  # in-process: latent_reasoner's own object
        except ConversionError as exc:
            self.drop("bad_plan", str(exc))
            return
        self._last_plan_time = time.monotonic()
        self._plan_timeouts_in_row = 0
        if self._recent_plans.seen(plan.stamp_ns):
            self.drop("duplicate_plan", f"latent plan {plan.stamp_ns} arrived again")
            return
        with self._lock:
            ready = self.matcher.add_plan(plan.stamp_ns, plan)
        self._handle(ready)

    def _on_time_jump(self, new_stamp_ns: int) -> None:
        """Time jumped back (looping bag, simulator reset): frames still waiting get their
        fallback now; plans of the old timeline are discarded (counted), plans already
        received for the new one are kept (the reasoner may be ahead of the BEV stage)."""
        self.get_logger().warning("BEV stamps jumped backwards: a new timeline; flushing frames and plans of the old one")
        with self._lock:
            pending, stale_plans = self.matcher.restart(new_stamp_ns, _JUMP_NS // 2)
        if stale_plans:
            self.drop("plan_unmatched", f"{stale_plans} latent plan(s) of the old timeline discarded", count=stale_plans)
        self._handle(pending)

    def _check_clock(self, stamp_ns: int) -> None:
        """One warning (until they agree again) when header stamps and this node's clock differ
        by more than a few seconds: a bag or simulator without use_sim_time."""
        self.clock_offset_s = (self.now_ns() - stamp_ns) * 1e-9
        if abs(self.clock_offset_s) <= _CLOCK_MISMATCH_S:
            self._clock_warned = False
            return
        if not self._clock_warned:
            self._clock_warned = True
            self.clock_warnings += 1
            sim = self.get_parameter("use_sim_time").value
            self.get_logger().warning(
                f"BEV header stamps are {abs(self.clock_offset_s):.1f} s {'behind' if self.clock_offset_s > 0 else 'ahead of'} "
                f"this node's {'simulation' if sim else 'system'} clock: "
                + ("is /clock published by the bag player or simulator that stamps the data?" if sim else
                   "replaying a bag or running a simulator? Start every node with use_sim_time:=true and publish "
                   "/clock (latentvla replay does); until then latency numbers and clock-based timeouts are meaningless."))

    def _plan_stream_down(self, now: float) -> str | None:
        """Why no plan will come (a frame already timed out and no plan arrived since), or None."""
        if not self.matcher.needs_plan or self._plan_timeouts_in_row == 0:
            return None
        if self._last_plan_time is None:
            return "latent plan stream silent since start"
        return f"latent plan stream silent for {now - self._last_plan_time:.1f} s"

    def _on_watchdog(self) -> None:
        self.matcher.plan_timeout_s = self.params.plan_timeout_s
        with self._lock:
            expired = self.matcher.expire(time.monotonic())
        self._handle(expired)
        silent_for = time.monotonic() - self._last_bev_time
        if self._last_bev_stamp is not None and silent_for >= self.params.input_timeout_s:
            reason = f"no BEV features for {silent_for:.1f} s"
            if not self._in_fallback:
                self.get_logger().warning(f"entering fallback: {reason}")
            self.stats.on_publish("fallback_no_bev")
            # stamped on the data's timeline, after the last frame: stamp order holds and a
            # node clock that disagrees with the data (no use_sim_time) cannot interleave
            self._publish_fallback(self._last_bev_stamp + int(silent_for * 1e9), reason)

    def _check_upstream(self) -> None:
        """Publisher counts of the pipeline inputs (a missing upstream node shows as 0)."""
        subs = {"bev": self._bev_sub}
        if self._plan_sub is not None:
            subs["plan"] = self._plan_sub
        for name, sub in subs.items():
            self._publishers_seen[name] = self.count_publishers(sub.topic_name)

    # ---------------------------------------------------------------- outputs
    def _count_evictions(self) -> None:
        evicted = self.matcher.evicted_plans - self._evicted_plans_counted
        if evicted > 0:
            self._evicted_plans_counted = self.matcher.evicted_plans
            self.drop("plan_unmatched", f"{evicted} latent plan(s) never met their BEV frame", count=evicted)

    def _handle(self, frames: list[MatchedFrame]) -> None:
        """Publish ``frames`` (stamp order), behind any frame still held for its guard input."""
        self._count_evictions()
        self._held.push(frames, time.monotonic())
        self._release_held()

    def _release_held(self) -> None:
        """Plan the held frames in stamp order, up to the first whose guard input (its LiDAR; from a
        cloud, its odometry too) is not here but can still come on this very thread: that one (and
        those behind it) waits for it, ``GUARD_FRAME_WAIT_S`` at most from when it was matched."""
        for item, held in self._held.release(self._awaits_guard_input, time.monotonic(), GUARD_FRAME_WAIT_S):
            self._finish(item, held=held)
        if len(self._held) and not self._guard_timer_armed:  # wakes this thread to publish it when its time is up
            self._guard_timer_armed = True
            self._guard_timer.reset()
        elif not len(self._held) and self._guard_timer_armed:
            self._guard_timer_armed = False
            self._guard_timer.cancel()

    def _awaits_guard_input(self, item: MatchedFrame) -> bool:
        """The model plan of ``item`` would go out unguarded now, and its guard input arrives on this thread
        (one node per process: the cloud, the odometry and the BEV features share the executor thread; so no
        blocking wait in ``_guarded``: holding the plan lets the executor deliver the cloud)."""
        if item.skipped or item.timed_out or not self.guard.enabled or not self._guard_input_here():
            return False
        return not self.guard.ready(item.stamp_ns)

    def _guard_input_here(self) -> bool:
        """The guard's input arrives on the calling thread. Before the first one came: outside a composed process
        every input comes on this node's executor thread; in one, the frame on sensor_sync's thread."""
        if self._frame_thread is None:
            return not self._in_composed_process()
        return self._frame_thread == threading.get_ident()

    def _finish(self, item: MatchedFrame, held: bool = False) -> None:
        """One matched frame's trajectory: the model's (guarded) or a fallback (``held``: it waited for its
        guard input already)."""
        if item.skipped:  # a newer frame has its plan: this one's is not coming, publish in stamp order
            reason = "latent plan missing (a newer frame's plan arrived first)"
            self.drop("plan_timeout", f"no latent plan for frame {item.stamp_ns}: {reason}")
            self._publish_fallback(item.stamp_ns, reason)
            return
        if item.flushed:  # not a plan timeout: the timeline ended under it (a looping bag, a simulator reset)
            reason = "time jumped back before its latent plan came (the old timeline's frame)"
            self.drop("time_jump", f"frame {item.stamp_ns}: {reason}")
            self._publish_fallback(item.stamp_ns, reason)
            return
        if item.timed_out:
            reason = self._plan_stream_down(time.monotonic()) or "latent plan timeout"
            self._plan_timeouts_in_row += 1
            self.drop("plan_timeout", f"no latent plan for frame {item.stamp_ns}: {reason}")
            self._publish_fallback(item.stamp_ns, reason)
            return
        untrained = self._untrained_weights(item)
        if untrained and not self.params.allow_untrained:
            self.drop("untrained_weights", f"frame {item.stamp_ns} would be planned with untrained weights "
                      f"({', '.join(untrained)}): fallback (allow_untrained is false)")
            self._publish_fallback(item.stamp_ns, f"untrained weights: {', '.join(untrained)}")
            return
        with self.processing(item.stamp_ns):
            try:
                route = self._route_for(item.stamp_ns)
                if self.uses_route:  # a checkpoint with a route input (route_points > 0)
                    traj = self.planner.plan(item.bev, item.plan, route=route)
                else:
                    traj = self.planner.plan(item.bev, item.plan)
                if not traj.is_finite():
                    raise ValueError("planner returned non-finite poses")
            except Exception as exc:  # noqa: BLE001 - ModelOutputError (NaN), MissingInputError, anything
                self.model_failed(exc)
                self.drop("model_error", f"{type(exc).__name__}: {exc}")
                self._publish_fallback(item.stamp_ns, f"model error: {exc}")
                return
            self.model_succeeded()
            traj = self._guarded(item.stamp_ns, traj, route, wait=not held)
            if untrained and "untrained" not in traj.model_id:  # allowed: still flagged
                traj.model_id = f"{traj.model_id}+untrained_inputs({','.join(untrained)})"
            if self._in_fallback:
                self.get_logger().info(f"inputs are back: leaving fallback (was: {self.fallback_reason})")
            self._in_fallback = False
            self.fallback_reason = ""
            self.fallback_since = None
            self._publish(traj, item.plan)

    def _untrained_weights(self, item: MatchedFrame) -> list[str]:
        """Model ids of this frame's chain that say 'untrained' (own weights, BEV, plan)."""
        ids = [self.planner.model_id, getattr(item.bev, "model_id", ""), getattr(item.plan, "model_id", "")]
        found = [i for i in ids if i and "untrained" in i]
        new = set(found) - self.untrained_sources
        if new:
            self.untrained_sources |= new
            allowed = self.params.allow_untrained
            self.get_logger().error(
                f"UNTRAINED weights in the chain: {', '.join(sorted(new))}: "
                + ("driving on them (allow_untrained), flagged in model_id" if allowed
                   else "publishing fallbacks instead (a missing or corrupt checkpoint; allow_untrained is false)"))
        return found

    def _publish_fallback(self, stamp_ns: int, reason: str) -> None:
        if not self._in_fallback:
            self.fallback_episodes += 1
            self.fallback_since = time.monotonic()
        self._in_fallback = True
        self.fallback_reason = reason
        odom_fresh = self._odom_time is not None and time.monotonic() - self._odom_time <= self.params.input_timeout_s
        sampling = self.planner.config.trajectory_sampling  # the fallback has the model's poses and interval
        traj = comfortable_stop(self._speed, self._yaw_rate if odom_fresh else 0.0,
                                self.params.fallback_deceleration_mps2, num_poses=sampling.num_poses,
                                interval_s=sampling.interval_s, stamp_ns=stamp_ns, reason=reason)
        self.stats.on_publish("fallback")
        self._publish(traj, None)

    def _publish(self, traj, plan) -> None:
        """The trajectory first (the controller waits for it); Path and markers, for RViz
        and Foxglove, after it and only while someone subscribes: building 17 markers
        costs more than the planner's model call on the edge config."""
        frame_id = self.params.frame_id
        self._traj_pub.publish(trajectory_to_msg(traj, frame_id, initial_speed=self._speed))
        self.stats.on_publish("trajectory")
        if self.intra_process is not None:
            self.intra_process.frame_done()  # the other nodes' reports that waited for this frame
        if self._path_pub.get_subscription_count() > 0:
            self._path_pub.publish(trajectory_to_path(traj, frame_id))
        if self._marker_pub.get_subscription_count() > 0:
            markers = trajectory_markers(traj, frame_id, plan)
            header = make_header(traj.stamp_ns, frame_id)
            markers.markers.extend(latent_token_markers(header, plan))
            markers.markers.extend(fallback_state_marker(header, traj.is_fallback, traj.fallback_reason))
            self._marker_pub.publish(markers)

    # ---------------------------------------------------------------- diagnostics
    @property
    def in_fallback(self) -> bool:
        return self._in_fallback

    @property
    def uses_route(self) -> bool:
        return getattr(self.planner.config, "route_points", 0) > 0

    def diagnostic_values(self) -> dict[str, str]:
        values = {"inputs": "waiting for the first BEV frame" if self._last_bev_stamp is None else "received",
                  "fallback_active": str(self._in_fallback), "fallback_reason": self.fallback_reason or "-",
                  "fallback_episodes": str(self.fallback_episodes), "pending_frames": str(self.matcher.pending),
                  "fusion": self.planner.fusion, "plans_unmatched": str(self.matcher.evicted_plans)}
        if self.fallback_since is not None:
            values["fallback_for_s"] = f"{time.monotonic() - self.fallback_since:.1f}"
        if self.clock_offset_s is not None:
            values["clock_minus_stamp_s"] = f"{self.clock_offset_s:.3f}"
        values.update({f"publishers/{k}": str(v) for k, v in self._publishers_seen.items()})
        values["untrained_weights"] = ", ".join(sorted(self.untrained_sources)) or "-"
        values["allow_untrained"] = str(self.params.allow_untrained)
        values.update(self.route.diagnostics(), route_pose_late=str(self.route_pose_late))
        values["route_used_by_model"] = str(self.uses_route)
        values.update(self.guard.diagnostics(), guard_input=self.guard_input)
        if self.guard.enabled:
            values.update(guard_held=str(self._held.held), guard_held_max_ms=f"{self._held.held_max_ms:.1f}",
                          guard_holding=str(len(self._held)))
        if self.lidar_to_ego is not None:
            values["lidar_frames"] = self.lidar_to_ego.diagnostics()
        return values

    def diagnostic_problems(self):
        problems = []
        if self.untrained_sources and self.params.allow_untrained:
            problems.append((DiagnosticStatus.WARN, f"driving on UNTRAINED weights ({', '.join(sorted(self.untrained_sources))})"))
        if self._in_fallback:
            problems.append((ERROR, f"FALLBACK (comfortable stop): {self.fallback_reason}"))
        if self.uses_route and self.route.state not in ("ok", "none", "received"):  # a route came but is unusable
            problems.append((DiagnosticStatus.WARN, f"planning without a route (route_state: {self.route.state})"))
        if self.guard.last_unguarded:
            problems.append((DiagnosticStatus.WARN, f"plans published WITHOUT the obstacle guard: no LiDAR / ego state "
                                                    f"for their stamp (guard_no_lidar {self.guard.no_lidar}, "
                                                    f"guard_no_odometry {self.guard.no_odometry})"))
        if self.stats.dropped.get("lidar_frame_unknown"):
            problems.append((ERROR, "LiDAR clouds in a frame without a transform to the ego frame (lidar_frame_unknown)"))
        for name, count in self._publishers_seen.items():
            if count == 0:
                problems.append((DiagnosticStatus.ERROR, f"no publisher on input {name} (upstream node down?)"))
        return problems


def main(argv: list[str] | None = None) -> int:
    return run_node(TrajectoryPlannerNode, argv if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
