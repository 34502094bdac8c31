"""trajectory_planner's obstacle guard input: the LiDAR of recent frames, by stamp.

Plain Python + numpy (no rclpy). Two ways in (the node's ``guard_input``):

- ``add``: the node converts each SensorFrame (``~/input/frame``; in a composed process the
  conversion shared with bev_features) and moves its LiDAR into the ego frame
  (ros/lidar_frames.py): points and the frame's own ego state;
- ``add_cloud`` + ``add_odometry``: where the SensorFrame would cross a process boundary (its
  camera images are most of its bytes) the node reads only the frame's LiDAR cloud
  (``~/input/lidar``, stamped with the frame's stamp by sensor_sync) and its own odometry; the
  ego state of a frame is then the odometry nearest to its stamp (within ``ODOMETRY_MATCH_NS``,
  as sensor_sync pairs odometry with the cameras within its slop).

``ready`` says whether a frame's input is here (trajectory_planner holds a plan back, briefly,
while it is not and can only come on the planning thread itself). When the model's plan for a BEV
frame is made, ``filter`` checks it against the frame with the same stamp (``core.obstacle_guard``,
the object the direct path's ``GuardedAgent`` uses, so both make the same plans). A frame whose
LiDAR is not here (within ``wait_s``) or, from a cloud, has no odometry near its stamp is counted
(``no_lidar`` / ``no_odometry``, ``last_missing`` says which) and the plan passes unguarded. Only
the last ``size`` frames are kept (frames wait at most ``plan_timeout_s`` for their latent plan, a
few frames at sensor rate).
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque

import numpy as np

from latentvla_ros.core.obstacle_guard import GuardConfig, GuardVerdict, ObstacleGuard
from latentvla_ros.core.types import EgoState, Trajectory

FRAMES_KEPT = 32
ODOMETRY_KEPT = 64  # a few seconds of odometry at 20 Hz
# an odometry sample this close to a frame's stamp is the frame's own (sensor_sync's default slop, 0.05 s)
ODOMETRY_MATCH_NS = 50_000_000

NO_LIDAR = "no_lidar"
NO_ODOMETRY = "no_odometry"


class GuardInput:
    """Bounded ``stamp -> (ego-frame points, EgoState | None)`` buffer, recent odometry, and the ``ObstacleGuard``."""

    def __init__(self, config: GuardConfig, size: int = FRAMES_KEPT):
        self.guard = ObstacleGuard(config)
        self.size = size
        self._frames: OrderedDict[int, tuple[np.ndarray, EgoState | None]] = OrderedDict()
        self._odometry: deque[tuple[int, np.ndarray, float]] = deque(maxlen=ODOMETRY_KEPT)
        self._cond = threading.Condition()
        self.no_lidar = 0  # plans published unguarded: their frame's LiDAR never came
        self.no_odometry = 0  # plans published unguarded: a cloud without odometry near its stamp
        self.last_unguarded = False  # the last model plan went out unguarded
        self.last_missing = ""  # why (NO_LIDAR, NO_ODOMETRY), '' when guarded

    @property
    def enabled(self) -> bool:
        return self.guard.config.enabled

    def add(self, stamp_ns: int, points: np.ndarray, ego: EgoState | None) -> None:
        """The frame ``stamp_ns``'s ego-frame points; ``ego`` None: from the odometry at plan time."""
        with self._cond:
            self._frames[int(stamp_ns)] = (points, ego)
            self._frames.move_to_end(int(stamp_ns))
            while len(self._frames) > self.size:
                self._frames.popitem(last=False)
            self._cond.notify_all()

    def add_cloud(self, stamp_ns: int, points: np.ndarray) -> None:
        self.add(stamp_ns, points, None)

    def add_odometry(self, stamp_ns: int, velocity: np.ndarray, yaw_rate: float) -> None:
        with self._cond:
            self._odometry.append((int(stamp_ns), velocity, float(yaw_rate)))
            self._cond.notify_all()

    def ready(self, stamp_ns: int) -> bool:
        """The frame ``stamp_ns``'s LiDAR and ego state are here (a ``filter`` now would guard its plan)."""
        with self._cond:
            entry = self._frames.get(int(stamp_ns))
            return entry is not None and (entry[1] is not None or self._odometry_near(int(stamp_ns)) is not None)

    def _odometry_near(self, stamp_ns: int) -> EgoState | None:
        near = min(self._odometry, key=lambda o: abs(o[0] - stamp_ns), default=None)
        if near is None or abs(near[0] - stamp_ns) > ODOMETRY_MATCH_NS:
            return None
        # the guard reads velocity and yaw rate; acceleration and command are the BEV stage's features
        return EgoState(velocity=near[1], acceleration=np.zeros(2, np.float32), yaw_rate=near[2])

    def _take(self, stamp_ns: int, wait_s: float) -> tuple[np.ndarray, EgoState] | str:
        """(points, ego) of the frame, or why not (NO_LIDAR, NO_ODOMETRY), waiting ``wait_s`` at most for each."""
        with self._cond:
            if stamp_ns not in self._frames and wait_s > 0:
                self._cond.wait_for(lambda: stamp_ns in self._frames, timeout=wait_s)
            entry = self._frames.get(stamp_ns)
            if entry is None:
                return NO_LIDAR
            points, ego = entry
            if ego is None:
                if wait_s > 0:
                    self._cond.wait_for(lambda: self._odometry_near(stamp_ns) is not None, timeout=wait_s)
                ego = self._odometry_near(stamp_ns)
                if ego is None:
                    return NO_ODOMETRY
            return points, ego

    def filter(self, stamp_ns: int, trajectory: Trajectory, wait_s: float = 0.0,
               route: np.ndarray | None = None) -> tuple[Trajectory, GuardVerdict | None]:
        """The model's ``trajectory`` for frame ``stamp_ns``, checked against that frame's LiDAR.
        Returns (trajectory, verdict); verdict None: no LiDAR (or no ego state) for the stamp
        (counted, ``last_missing`` says which; the trajectory unchanged). Fallbacks and a
        disabled guard pass unchanged."""
        if not self.enabled or trajectory.is_fallback:
            return trajectory, None if self.enabled else self.guard.last_verdict
        entry = self._take(int(stamp_ns), wait_s)
        if isinstance(entry, str):
            if entry == NO_LIDAR:
                self.no_lidar += 1
            else:
                self.no_odometry += 1
            self.last_unguarded, self.last_missing = True, entry
            return trajectory, None
        self.last_unguarded, self.last_missing = False, ""
        points, ego = entry
        return self.guard.filter(points, int(stamp_ns), ego, trajectory, route)

    def diagnostics(self) -> dict[str, str]:
        guard, verdict = self.guard, self.guard.last_verdict
        out = {"guard_enabled": str(self.enabled)}
        if not self.enabled:
            return out
        out.update(guard_plans=str(guard.plans), guard_interventions=str(guard.interventions),
                   guard_stops=str(guard.stops), guard_follows=str(guard.follows),
                   guard_cautions=str(guard.cautions), guard_yields=str(guard.yields), guard_releases=str(guard.releases),
                   guard_limited=str(guard.limited),
                   guard_last_action=verdict.action,
                   guard_tracks=str(verdict.num_tracks), guard_tracker_resets=str(guard.tracker.resets),
                   guard_no_lidar=str(self.no_lidar), guard_no_odometry=str(self.no_odometry),
                   guard_frames_buffered=str(len(self._frames)))
        return out


class HeldFrames:
    """Matched frames whose plans wait, in stamp order, for their guard input (trajectory_planner with one node per
    process: the frame's cloud and the BEV features share the planner's executor thread, so the plan is held instead
    of a blocking wait). ``push`` queues frames; ``release`` yields them from the front, each with whether it was
    held, up to the first that still awaits its input and has waited less than ``max_wait_s`` (those behind it keep
    their place). Counts the frames held (``held``, once each) and the longest hold (``held_max_ms``)."""

    def __init__(self) -> None:
        self._queue: deque[list] = deque()  # [item, since (monotonic s), held]
        self.held = 0
        self.held_max_ms = 0.0

    def __len__(self) -> int:
        return len(self._queue)

    def push(self, items, now: float) -> None:
        self._queue.extend([item, now, False] for item in items)

    def release(self, awaits, now: float, max_wait_s: float):
        """Yields (item, held) in order; lazily, so a caller that publishes each one keeps stamp order."""
        while self._queue:
            entry = self._queue[0]
            if now - entry[1] < max_wait_s and awaits(entry[0]):
                if not entry[2]:
                    entry[2] = True
                    self.held += 1
                return
            self._queue.popleft()
            if entry[2]:
                self.held_max_ms = max(self.held_max_ms, (now - entry[1]) * 1e3)
            yield entry[0], entry[2]
