"""trajectory_planner's route input: the latest mission route (nav_msgs/Path) and recent
odometry poses, turned into the ego-frame polyline of one frame at plan time.

Plain Python + numpy (no rclpy): the node converts messages (``conversions.path_xy``,
``odometry_pose``) and counts the drops this returns. A route Path is converted once when it
arrives; per frame only a (K, 2) array is rotated (``core.route.route_to_ego``), with the
odometry pose nearest to the frame's stamp (so the route is in the frame's ego frame even
when odometry runs ahead of the BEV stage).

A route is used for a frame only when it is fresh (stamped within ``timeout_s`` of the frame
on the data's timeline, either side: a looping bag or a reset simulator start a new
timeline; ``timeout_s`` 0: a latched route that is never republished, such as the CARLA
waypoint publisher's, never goes stale) and in the odometry's frame (both frame ids
non-empty and different: dropped). Each route message is dropped (counted) at most once;
frames without a usable route are planned with an invalid route.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from latentvla_ros.core.route import route_to_ego

_POSES_KEPT = 64  # recent odometry poses (a few seconds at 20 Hz) to match a frame's stamp


@dataclass
class RouteDrop:
    reason: str  # the node's drop counter: route_stale, route_frame_mismatch, route_no_pose
    detail: str


class RouteInput:
    def __init__(self) -> None:
        self._xy: np.ndarray | None = None
        self.frame_id = ""
        self.stamp_ns: int | None = None
        self._dropped = False  # this route message was dropped already (count it once)
        self._poses: deque[tuple[int, float, float, float, str]] = deque(maxlen=_POSES_KEPT)
        self.state = "none"  # none | ok | stale | frame_mismatch | no_pose | rejected: <why>
        self.age_s: float | None = None  # route age at the last frame [s], on the data's timeline
        self.last_ego: np.ndarray | None = None  # the last frame's ego-frame route (None: invalid)
        self.last_pose: tuple[int, float, float, float] | None = None  # (stamp, x, y, yaw) it was rotated with

    @property
    def num_points(self) -> int:
        return 0 if self._xy is None else int(self._xy.shape[0])

    @property
    def pose_count(self) -> int:
        return len(self._poses)

    def set_route(self, xy: np.ndarray, frame_id: str, stamp_ns: int) -> None:
        self._xy, self.frame_id, self.stamp_ns, self._dropped = xy, frame_id, int(stamp_ns), False
        self.state = "received"

    def reject(self, why: str) -> None:
        """The newest route message was malformed: the previous route no longer holds either."""
        self._xy, self.stamp_ns, self._dropped = None, None, True
        self.state = f"rejected: {why}"

    def add_pose(self, stamp_ns: int, x: float, y: float, yaw: float, frame_id: str) -> None:
        self._poses.append((int(stamp_ns), x, y, yaw, frame_id))

    def has_pose_at(self, stamp_ns: int, tolerance_ns: int = 1_000_000) -> bool:
        """Whether the odometry pose of this stamp (within ``tolerance_ns``) has arrived."""
        return any(abs(p[0] - stamp_ns) <= tolerance_ns for p in self._poses)

    @property
    def has_route(self) -> bool:
        return self._xy is not None

    def _pose_near(self, stamp_ns: int):
        return min(self._poses, key=lambda p: abs(p[0] - stamp_ns)) if self._poses else None

    def _invalid(self, state: str, drop: RouteDrop | None, once: bool = True) -> tuple[None, RouteDrop | None]:
        self.state, self.last_ego = state, None
        if drop is not None and once:
            if self._dropped:
                return None, None
            self._dropped = True
        return None, drop

    def ego_route(self, frame_stamp_ns: int, timeout_s: float, pose_timeout_s: float) -> tuple[np.ndarray | None, RouteDrop | None]:
        """The route in the ego frame of the frame stamped ``frame_stamp_ns`` (None: no usable
        route) and the drop to count, if any."""
        if self._xy is None or self.stamp_ns is None:
            self.age_s = None
            return self._invalid(self.state if self.state != "ok" else "none", None)
        age = (frame_stamp_ns - self.stamp_ns) * 1e-9
        self.age_s = age
        if timeout_s > 0 and abs(age) > timeout_s:
            when = f"{age:.1f} s before" if age > 0 else f"{-age:.1f} s after (another timeline)"
            return self._invalid("stale", RouteDrop("route_stale", f"route stamped {when} the frame "
                                                    f"(route_timeout_s {timeout_s:g}): planning without a route"))
        pose = self._pose_near(frame_stamp_ns)
        if pose is None or abs(pose[0] - frame_stamp_ns) * 1e-9 > pose_timeout_s:
            why = "no odometry pose yet" if pose is None else \
                f"nearest odometry pose {abs(pose[0] - frame_stamp_ns) * 1e-9:.2f} s from the frame"
            return self._invalid("no_pose", RouteDrop("route_no_pose", f"{why}: planning without a route"), once=False)
        if self.frame_id and pose[4] and self.frame_id != pose[4]:
            return self._invalid("frame_mismatch", RouteDrop(
                "route_frame_mismatch", f"route in frame {self.frame_id!r}, odometry in {pose[4]!r}: planning without a route"))
        self.state, self.last_pose = "ok", pose[:4]
        self.last_ego = route_to_ego(self._xy, pose[1:4])
        return self.last_ego, None

    def diagnostics(self) -> dict[str, str]:
        return {"route_state": self.state, "route_points": str(self.num_points),
                "route_frame": self.frame_id or "-",
                "route_age_s": "-" if self.age_s is None else f"{self.age_s:.2f}"}
