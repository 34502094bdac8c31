"""trajectory_planner: BevFeatures (+ LatentActionPlan) -> PlannedTrajectory, Path, markers.

Exactly one trajectory per BEV frame: the model's, or a comfortable-stop fallback
(flagged) when the frame's latent plan does not come in time or the model fails.
A watchdog publishes fallbacks while no BEV frame arrives at all.
"""
from __future__ import annotations

import math
import sys
import threading
import time

from nav_msgs.msg import Odometry, Path
from rclpy.clock import Clock, ClockType
from visualization_msgs.msg import MarkerArray

from latentvla_ros.core.fallback import comfortable_stop
from latentvla_ros.core.pipeline import TrajectoryPlanner
from latentvla_ros.core.stamp_matcher import MatchedFrame, StampMatcher
from latentvla_ros.models.configuration_planner import PlannerConfig
from latentvla_ros.msg import BevFeatures, LatentActionPlan, PlannedTrajectory
from latentvla_ros.ros.conversions import (
    ConversionError,
    msg_to_bev,
    msg_to_plan,
    odometry_velocity,
    trajectory_markers,
    trajectory_to_msg,
    trajectory_to_path,
)
from latentvla_ros.ros.node_base import LatentVlaNode, load_model_runtime
from latentvla_ros.ros.node_main import run_node


class TrajectoryPlannerNode(LatentVlaNode):
    schema_name = "trajectory_planner"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.planner = load_model_runtime(self, TrajectoryPlanner, PlannerConfig)
        self._lock = threading.Lock()
        self.matcher = StampMatcher(needs_plan=self.planner.needs_plan, plan_timeout_s=self.params["plan_timeout_s"])
        self._speed = 0.0
        self._yaw_rate = 0.0
        self._last_bev_time = time.monotonic()
        self._in_fallback = False
        out_qos = self.output_qos()
        self._traj_pub = self.create_publisher(PlannedTrajectory, "~/output/trajectory", out_qos)
        self._path_pub = self.create_publisher(Path, "~/output/path", out_qos)
        self._marker_pub = self.create_publisher(MarkerArray, "~/debug/markers", out_qos)
        in_qos = self.input_qos()
        self.create_subscription(BevFeatures, "~/input/bev", self._on_bev, in_qos)
        if self.planner.needs_plan:
            self.create_subscription(LatentActionPlan, "~/input/plan", self._on_plan, in_qos)
        self.create_subscription(Odometry, "~/input/odometry", self._on_odometry, in_qos)
        # steady clock: under use_sim_time a stalled /clock (dead simulator, ended bag)
        # must not stop the watchdog that publishes the fallback
        self._watchdog = self.create_timer(1.0 / self.params["watchdog_rate_hz"], self._on_watchdog,
                                           clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"planner fusion={self.planner.fusion}; waits {self.params['plan_timeout_s']} s for plans")

    # ---------------------------------------------------------------- inputs
    def _on_odometry(self, msg: Odometry) -> None:
        try:
            velocity, yaw_rate = odometry_velocity(msg)
        except ConversionError as exc:
            self.drop("bad_odometry", str(exc))
            return
        self._speed, self._yaw_rate = float(math.hypot(*velocity)), yaw_rate

    def _on_bev(self, msg: BevFeatures) -> None:
        self.stats.on_receive("bev")
        try:
            bev = msg_to_bev(msg)
        except ConversionError as exc:
            self.drop("bad_bev", str(exc))
            return
        self._last_bev_time = time.monotonic()
        self._speed = float(math.hypot(bev.ego_status[4], bev.ego_status[5]))
        with self._lock:
            ready = self.matcher.add_bev(bev.stamp_ns, bev, time.monotonic())
        self._handle(ready)

    def _on_plan(self, msg: LatentActionPlan) -> None:
        self.stats.on_receive("plan")
        try:
            plan = msg_to_plan(msg)
        except ConversionError as exc:
            self.drop("bad_plan", str(exc))
            return
        with self._lock:
            ready = self.matcher.add_plan(plan.stamp_ns, plan)
        self._handle(ready)

    def _on_watchdog(self) -> None:
        self.matcher.plan_timeout_s = self.params["plan_timeout_s"]
        with self._lock:
            expired = self.matcher.expire(time.monotonic())
        self._handle(expired)
        silent_for = time.monotonic() - self._last_bev_time
        if silent_for >= self.params["input_timeout_s"]:
            reason = f"no BEV features for {silent_for:.1f} s"
            if not self._in_fallback:
                self.get_logger().warning(f"entering fallback: {reason}")
            self._publish_fallback(self.get_clock().now().nanoseconds, reason)


    # ---------------------------------------------------------------- outputs
    def _handle(self, frames: list[MatchedFrame]) -> None:
        for item in frames:
            if item.timed_out:
                self.drop("plan_timeout", f"no latent plan for frame {item.stamp_ns} within {self.params['plan_timeout_s']} s")
                self._publish_fallback(item.stamp_ns, "latent plan timeout")
                continue
            with self.processing(item.stamp_ns):
                try:
                    traj = self.planner.plan(item.bev, item.plan)
                except (ValueError, RuntimeError) as exc:  # ModelOutputError, MissingInputError
                    self.drop("model_error", str(exc))
                    self._publish_fallback(item.stamp_ns, f"model error: {exc}")
                    continue
                if self._in_fallback:
                    self.get_logger().info("inputs are back: leaving fallback")
                self._in_fallback = False
                self._publish(traj, item.plan)

    def _publish_fallback(self, stamp_ns: int, reason: str) -> None:
        self._in_fallback = True
        traj = comfortable_stop(self._speed, self._yaw_rate, self.params["fallback_deceleration_mps2"],
                                stamp_ns=stamp_ns, reason=reason)
        self.stats.on_publish("fallback")
        self._publish(traj, None)

    def _publish(self, traj, plan) -> None:
        frame_id = self.params["frame_id"]
        self._traj_pub.publish(trajectory_to_msg(traj, frame_id, initial_speed=self._speed))
        self._path_pub.publish(trajectory_to_path(traj, frame_id))
        self._marker_pub.publish(trajectory_markers(traj, frame_id, plan))
        self.stats.on_publish("trajectory")

    def diagnostic_values(self) -> dict[str, str]:
        return {"fallback_active": str(self._in_fallback), "pending_frames": str(self.matcher.pending),
                "fusion": self.planner.fusion}


def main(argv: list[str] | None = None) -> int:
    return run_node(TrajectoryPlannerNode, argv if argv is not None else sys.argv)


if __name__ == "__main__":
    sys.exit(main())
