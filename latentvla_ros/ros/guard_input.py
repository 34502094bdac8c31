"""trajectory_planner's obstacle guard input: the LiDAR of recent SensorFrames, by stamp.

Plain Python + numpy (no rclpy): the node converts each SensorFrame (``~/input/frame``, the
conversion shared with bev_features in a composed process) and moves its LiDAR into the ego
frame (ros/lidar_frames.py), then ``add``s it here; when the model's plan for a BEV frame is
made, ``guard`` checks it against the frame with the same stamp (``core.obstacle_guard``, the
object the direct path's ``GuardedAgent`` uses, so both make the same plans). A frame whose
SensorFrame is not here (within ``wait_s``) is counted (``no_lidar``) and the plan passes
unguarded. Only the last ``size`` frames are kept (frames wait at most ``plan_timeout_s`` for
their latent plan, a few frames at sensor rate).
"""
from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from latentvla_ros.core.obstacle_guard import GuardConfig, GuardVerdict, ObstacleGuard
from latentvla_ros.core.types import EgoState, Trajectory

FRAMES_KEPT = 32


class GuardInput:
    """Bounded ``stamp -> (ego-frame points, EgoState)`` buffer + the ``ObstacleGuard``."""

    def __init__(self, config: GuardConfig, size: int = FRAMES_KEPT):
        self.guard = ObstacleGuard(config)
        self.size = size
        self._frames: OrderedDict[int, tuple[np.ndarray, EgoState]] = OrderedDict()
        self._cond = threading.Condition()
        self.no_lidar = 0  # plans published unguarded: their SensorFrame never came
        self.last_unguarded = False  # the last model plan went out unguarded (no SensorFrame)

    @property
    def enabled(self) -> bool:
        return self.guard.config.enabled

    def add(self, stamp_ns: int, points: np.ndarray, ego: EgoState) -> None:
        with self._cond:
            self._frames[int(stamp_ns)] = (points, ego)
            self._frames.move_to_end(int(stamp_ns))
            while len(self._frames) > self.size:
                self._frames.popitem(last=False)
            self._cond.notify_all()

    def _take(self, stamp_ns: int, wait_s: float) -> tuple[np.ndarray, EgoState] | None:
        with self._cond:
            if stamp_ns not in self._frames and wait_s > 0:
                self._cond.wait_for(lambda: stamp_ns in self._frames, timeout=wait_s)
            return self._frames.get(stamp_ns)

    def filter(self, stamp_ns: int, trajectory: Trajectory, wait_s: float = 0.0,
               route: np.ndarray | None = None) -> tuple[Trajectory, GuardVerdict | None]:
        """The model's ``trajectory`` for frame ``stamp_ns``, checked against that frame's LiDAR.
        Returns (trajectory, verdict); verdict None: no SensorFrame for the stamp (counted,
        the trajectory unchanged). Fallbacks and a disabled guard pass unchanged."""
        if not self.enabled or trajectory.is_fallback:
            return trajectory, None if self.enabled else self.guard.last_verdict
        entry = self._take(int(stamp_ns), wait_s)
        if entry is None:
            self.no_lidar += 1
            self.last_unguarded = True
            return trajectory, None
        self.last_unguarded = False
        points, ego = entry
        return self.guard.filter(points, int(stamp_ns), ego, trajectory, route)

    def diagnostics(self) -> dict[str, str]:
        guard, verdict = self.guard, self.guard.last_verdict
        out = {"guard_enabled": str(self.enabled)}
        if not self.enabled:
            return out
        out.update(guard_plans=str(guard.plans), guard_interventions=str(guard.interventions),
                   guard_stops=str(guard.stops), guard_releases=str(guard.releases), guard_last_action=verdict.action,
                   guard_tracks=str(verdict.num_tracks), guard_tracker_resets=str(guard.tracker.resets),
                   guard_no_lidar=str(self.no_lidar), guard_frames_buffered=str(len(self._frames)))
        return out
