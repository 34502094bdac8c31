"""Obstacle guard: the LiDAR check between the learned planner and the controller.

A learned planner's trajectory goes to the controller only after this check, as a vehicle stack
puts an obstacle stop / cruise planner after its planner (Autoware's ``obstacle_stop_planner``):

0. Plan check (``plan_check``, ``core/plan_check.py``): a plan asking for more lateral acceleration than
   ``max_plan_lateral_accel_mps2`` over its first 2 s (the planner's jumps into the neighbouring lane) is moved
   sideways to within what ``plan_limit_lateral_accel_mps2`` reaches from the ego's direction of motion; the
   checks below then see the moved plan (verdict 'limit' when nothing else changed it, ``limited`` always).
1. ``LidarObjectTracker``: LiDAR points above the ground (``min_height_m`` .. ``max_height_m``)
   are clustered on a grid (8-connected cells of ``cluster_cell_m``); each cluster's centroid is
   followed across frames in an odometry frame integrated from the ego's velocity and yaw rate;
   a track's velocity is its centroid's displacement over the last ``velocity_window_s`` (unknown,
   and zero, until it has been seen half that long). A backwards or long gap in the stamps, or a non-finite ego
   state, resets the tracks.
2. ``ObstacleGuard.filter``: every obstacle point moves at its track's constant velocity; the
   ego box (``ego_length_m`` x ``ego_width_m`` + margins) moves along the planned trajectory
   (linear between the poses, from the origin at t = 0). The first time within ``horizon_s``
   at which a point is inside the box's front half is a conflict, unless the point's track reaches
   the box's rear half first (a vehicle running into us from behind: braking would not help).
   A track whose velocity is not known yet (a car that comes into range or out of a cluster split)
   is a standing obstacle only for conflicts within ``young_track_horizon_s``; a later conflict with
   it alone is a 'caution': the plan brakes at ``min_decel_mps2`` (no stop point) until the track's
   velocity is known 0.25 s later (measured on validation highway seeds: most interventions at 25 m/s
   were stop retimes at up to 6 m/s^2 for such tracks, 20-40 m ahead, seen 1-3 frames, gone once their
   velocity was known).
   Follow (``follow``): a conflicting track that moves along the path (its velocity projected on the
   path's heading at the conflict >= ``follow_min_speed_mps``) is followed, as an adaptive cruise
   control does: the plan is retimed to slow down at a constant deceleration to the track's along-path
   speed and keep it (never faster than planned); the gentlest of 4 decelerations from ``min_decel_mps2``
   to ``max_decel_mps2`` whose plan has no conflict with the front half lengthened by
   ``follow_time_gap_s`` x that speed is taken. When none is, or for crossing, oncoming and static
   obstacles, the stop retime below.
   Yield (``yield_moving``, off; from ``yield_min_speed_mps``): a conflicting track that moves (known velocity,
   at least ``follow_min_speed_mps``) and is not followed -- a car merging or crossing ahead, a lead car too close
   for the follow gap -- is let through: the plan brakes without a stop point at the gentlest of 4 decelerations
   from ``min_decel_mps2`` to ``max_decel_mps2`` after which no track conflicts; when none suffices, the stop
   retime. Off: on the validation highway and merge seeds it did not make the stop retime's hard braking
   comfortable and cost an off-road episode (docs/operations.md, "The obstacle guard").
   The guard then keeps the planned path and only retimes it: the ego brakes (at least ``min_decel_mps2``, at most
   ``max_decel_mps2``) to stop ``stop_margin_m`` before the arc length of the conflicting
   pose, and the retimed plan is checked again (moving obstacles may conflict earlier).
   The guard never speeds a plan up and never moves its path: where there is no conflict the
   plan is returned unchanged.
3. Creep release (``creep_release``): a plan that creeps (slower than ``creep_speed_mps`` on
   average, the ego too) with a route given becomes a 'go' along the route (``go_accel_mps2`` up
   to ``go_speed_mps``) when that candidate is conflict-free for ``go_horizon_s`` and stays on the
   route itself (not its extension past the end). Go latch (``go_latch``, off by default): once
   released, the go continues on the next plans whatever the ego's speed, while the model's plan is slower
   than ``go_latch_speed_mps`` on average and the go stays conflict-free on the route; a faster plan, a
   conflict or the route's end drops the latch. Without it a go lasts only until the ego passes
   ``creep_speed_mps``; the model's creeping plan then brakes it again, and the car crawls through an
   intersection at 1.2-1.6 m/s, a release at a time. On the validation seeds the latch raised the
   intersection score (88.9 -> 91.6) but lowered the roundabout's (92.9 -> 87.9: it carries the car into
   ring traffic the model was slowing for), so it stays off (docs/operations.md, "The obstacle guard").

Pure numpy (+ cv2 for the connected components); the same object runs in the offline agent,
the closed-loop evaluation and the trajectory_planner node, so all three make the same plans.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from latentvla_ros.core.config_base import ConfigBase, require
from latentvla_ros.core.lanes import Polyline, arc_lengths
from latentvla_ros.core.plan_check import limit_lateral, plan_lateral_acceleration
from latentvla_ros.core.route import resample_route
from latentvla_ros.core.types import EgoState, Trajectory


@dataclass
class GuardConfig(ConfigBase):
    enabled: bool = True
    min_height_m: float = 0.2  # points at or below are ground
    max_height_m: float = 3.0  # points above are overhead structures
    range_m: float = 40.0  # points farther than this (|x| or |y|) are ignored
    cluster_cell_m: float = 0.6  # grid cell of the connected-components clustering
    track_gate_m: float = 3.0  # a cluster farther than this from every predicted track starts a new track
    velocity_window_s: float = 0.5  # a track's velocity: its displacement over (up to) this long
    max_track_speed_mps: float = 30.0
    max_gap_s: float = 1.0  # a larger gap (or a backwards stamp) resets the tracks
    ego_length_m: float = 5.0
    ego_width_m: float = 2.0
    front_margin_m: float = 1.0  # added in front of the ego box
    side_margin_m: float = 0.3  # added on each side
    horizon_s: float = 3.0  # conflicts later than this are left to the next plans
    time_step_s: float = 0.1
    stop_margin_m: float = 1.0  # stop this far before the conflicting pose
    min_decel_mps2: float = 1.5
    max_decel_mps2: float = 6.0
    creep_release: bool = True  # a creeping plan becomes a 'go' along the route when that is conflict-free
    creep_speed_mps: float = 1.5  # a plan slower than this on average (and an ego slower than this) creeps
    go_accel_mps2: float = 1.5
    go_speed_mps: float = 8.0
    go_horizon_s: float = 5.0  # the go candidate must be conflict-free this long
    young_track_horizon_s: float = 0.5  # a track without a known velocity yet counts for conflicts this soon only
    follow: bool = True  # a conflicting track moving along the path is followed at its speed, not stopped for
    follow_min_speed_mps: float = 1.0  # along-path speed from which a conflicting track is followed
    follow_time_gap_s: float = 0.5  # the follow plan keeps this time gap (x the track's speed) clear too
    go_latch: bool = False  # a released go continues at any ego speed while the plan is slower than go_latch_speed_mps
    go_latch_speed_mps: float = 3.0  # a latched go ends when the model's plan is this fast on average
    yield_moving: bool = False  # a moving conflicting track not followed is yielded to (from yield_min_speed_mps)
    yield_min_speed_mps: float = 15.0  # the ego speed from which the yield applies
    plan_check: bool = True  # a plan asking for more than max_plan_lateral_accel_mps2 is moved sideways (limit)
    max_plan_lateral_accel_mps2: float = 15.0  # core.plan_check.plan_lateral_acceleration over its first 2 s
    plan_limit_lateral_accel_mps2: float = 2.0  # such a plan is moved sideways within what this reaches

    def validate(self) -> None:
        require(self.min_height_m < self.max_height_m, "min_height_m", "must be below max_height_m")
        for name in ("range_m", "cluster_cell_m", "track_gate_m", "velocity_window_s", "max_track_speed_mps",
                     "max_gap_s", "ego_length_m", "ego_width_m", "horizon_s", "time_step_s", "min_decel_mps2",
                     "creep_speed_mps", "go_accel_mps2", "go_speed_mps", "go_horizon_s", "young_track_horizon_s",
                     "go_latch_speed_mps", "max_plan_lateral_accel_mps2", "plan_limit_lateral_accel_mps2",
                     "follow_min_speed_mps"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, name, f"must be finite and > 0, got {value}")
        for name in ("front_margin_m", "side_margin_m", "stop_margin_m", "follow_time_gap_s"):
            value = getattr(self, name)
            require(math.isfinite(value) and value >= 0, name, f"must be finite and >= 0, got {value}")
        require(self.max_decel_mps2 >= self.min_decel_mps2, "max_decel_mps2", "must be >= min_decel_mps2")
        require(math.isfinite(self.yield_min_speed_mps) and self.yield_min_speed_mps >= 0, "yield_min_speed_mps",
                "must be a number >= 0")


@dataclass
class Obstacles:
    """Obstacle points in the current ego frame and, per point, its track's velocity (ego frame)."""

    points: np.ndarray  # (N, 2)
    velocities: np.ndarray  # (N, 2)
    track_ids: np.ndarray  # (N,)
    num_tracks: int = 0
    velocity_known: np.ndarray | None = None  # (N,) bool: the track has been seen long enough; None: all known
    # (track ids ascending, index of each point's track in them): what ``np.unique(track_ids,
    # return_inverse=True)`` gives, built by the tracker from its clusters (one per track) without
    # sorting the points; None: computed where needed
    groups: tuple[np.ndarray, np.ndarray] | None = None

    def track_groups(self) -> tuple[np.ndarray, np.ndarray]:
        if self.groups is None:
            self.groups = np.unique(self.track_ids, return_inverse=True)
        return self.groups


@dataclass
class GuardVerdict:
    action: str = "clear"  # 'clear' (plan unchanged), 'caution', 'follow', 'slow' (retimed), 'stop' (stop now), 'go', 'off',
    # 'limit' (the plan check moved the model's plan sideways, no obstacle conflict)
    conflict_time_s: float = float("nan")
    conflict_track: int = -1
    stop_distance_m: float = float("nan")
    num_tracks: int = 0
    limited: bool = False  # the plan check moved the model's plan sideways (core.plan_check), whatever the action
    # the conflicting track now (ego frame): its point nearest the ego and its velocity (zero while unknown)
    conflict_point: tuple[float, float] | None = None
    conflict_velocity: tuple[float, float] | None = None


@dataclass
class _Track:
    track_id: int
    history: deque = field(default_factory=lambda: deque(maxlen=20))  # (t_s, x, y) odometry frame
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    velocity_known: bool = False


class LidarObjectTracker:
    """Clusters above-ground LiDAR points and follows the clusters across frames (see module doc)."""

    def __init__(self, config: GuardConfig):
        self.config = config
        self.resets = 0
        self.reset()

    def reset(self) -> None:
        self._tracks: list[_Track] = []
        self._pose = np.zeros(3)  # odometry-frame ego pose x, y, yaw
        self._stamp_ns: int | None = None
        self._next_id = 0

    def _advance(self, stamp_ns: int, ego: EgoState) -> float:
        """Integrate the ego's motion to ``stamp_ns``; returns the time [s] since the tracks began."""
        if self._stamp_ns is not None:
            dt = (stamp_ns - self._stamp_ns) * 1e-9
            if dt <= 0.0 or dt > self.config.max_gap_s or not ego.is_finite():
                self.resets += 1
                self.reset()
            else:
                x, y, yaw = self._pose
                vx, vy = (float(v) for v in ego.velocity)
                mid = yaw + 0.5 * float(ego.yaw_rate) * dt
                c, s = math.cos(mid), math.sin(mid)
                self._pose = np.array([x + (c * vx - s * vy) * dt, y + (s * vx + c * vy) * dt, yaw + float(ego.yaw_rate) * dt])
        if self._stamp_ns is None:
            self._origin_ns = stamp_ns
        self._stamp_ns = stamp_ns
        return (stamp_ns - self._origin_ns) * 1e-9

    def _clusters(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(obstacle points (M, 2), each one's cluster 0..K-1). Every cluster has a point (its cells
        are the points' cells), so the cluster indices are 0..K-1 without gaps."""
        cfg = self.config
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] < 3:
            return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
        # NaN and inf fail these comparisons: no separate finiteness test (a few numpy calls fewer
        # on the planner's frame path, where each costs more than its arithmetic)
        keep = (pts[:, 2] > cfg.min_height_m) & (pts[:, 2] < cfg.max_height_m)
        keep &= (np.abs(pts[:, 0]) < cfg.range_m) & (np.abs(pts[:, 1]) < cfg.range_m)
        xy = pts[keep, :2]
        if not len(xy):
            return xy, np.zeros(0, dtype=np.int64)
        n = int(math.ceil(2 * cfg.range_m / cfg.cluster_cell_m))
        cells = np.clip(((xy + cfg.range_m) / cfg.cluster_cell_m).astype(np.int64), 0, n - 1)
        flat = cells[:, 0] * n + cells[:, 1]
        grid = np.zeros(n * n, dtype=np.uint8)
        grid[flat] = 1
        _, labels = cv2.connectedComponents(grid.reshape(n, n), connectivity=8)
        return xy, labels.reshape(-1)[flat].astype(np.int64) - 1

    def update(self, points: np.ndarray, stamp_ns: int, ego: EgoState) -> Obstacles:
        """One LiDAR frame (N, >=3 ego frame) at ``stamp_ns`` -> the obstacles with velocities."""
        now = self._advance(int(stamp_ns), ego)
        xy, inverse = self._clusters(points)
        if not len(xy):
            self._tracks = []
            return Obstacles(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0, dtype=np.int64), 0, np.zeros(0, dtype=bool))
        counts = np.bincount(inverse).astype(np.float64)
        centroids = np.stack([np.bincount(inverse, xy[:, 0]), np.bincount(inverse, xy[:, 1])], axis=1) / counts[:, None]
        x0, y0, yaw = self._pose
        c, s = math.cos(yaw), math.sin(yaw)
        rot = np.array([[c, -s], [s, c]])
        world = centroids @ rot.T + (x0, y0)
        tracks = self._associate(world, now)
        vel_ego = np.stack([t.velocity for t in tracks]) @ rot  # odometry -> ego frame (rot^T applied)
        known = np.array([t.velocity_known for t in tracks])
        ids = np.array([t.track_id for t in tracks])  # one track per cluster, distinct
        order = np.argsort(ids)
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        return Obstacles(xy, vel_ego[inverse], ids[inverse], len(tracks), known[inverse],
                         groups=(ids[order], rank[inverse]))

    def _associate(self, world: np.ndarray, now: float) -> list[_Track]:
        cfg = self.config
        previous = self._tracks
        assigned: list[_Track | None] = [None] * len(world)
        if previous:
            predicted = np.stack([np.asarray(t.history[-1][1:]) + t.velocity * (now - t.history[-1][0]) for t in previous])
            diff = world[:, None, :] - predicted[None, :, :]
            dist = np.sqrt(np.add.reduce(diff * diff, axis=2)).ravel().tolist()  # np.linalg.norm's own sum, unchecked
            used_c: set[int] = set()
            used_t: set[int] = set()
            for flat in np.argsort(dist).tolist():  # (cluster, track) pairs, nearest first
                i, j = divmod(flat, len(previous))
                if dist[flat] > cfg.track_gate_m:
                    break
                if i in used_c or j in used_t:
                    continue
                used_c.add(i)
                used_t.add(j)
                assigned[i] = previous[j]
        out = []
        for i, track in enumerate(assigned):
            if track is None:
                track = _Track(self._next_id)
                self._next_id += 1
            track.history.append((now, float(world[i, 0]), float(world[i, 1])))
            track.velocity, track.velocity_known = self._velocity(track, now)
            out.append(track)
        self._tracks = out
        return out

    def _velocity(self, track: _Track, now: float) -> tuple[np.ndarray, bool]:
        """(velocity, known): zero and unknown until the track has been seen half the window."""
        cfg = self.config
        t0, x0, y0 = next(h for h in track.history if now - h[0] <= cfg.velocity_window_s + 1e-6)  # the oldest in it
        if now - t0 < 0.5 * cfg.velocity_window_s:
            return np.zeros(2), False
        _, x1, y1 = track.history[-1]
        v = np.array([x1 - x0, y1 - y0]) / (now - t0)
        speed = float(np.hypot(*v))
        return (v * (cfg.max_track_speed_mps / speed) if speed > cfg.max_track_speed_mps else v), True


def _densify(poses: np.ndarray, interval_s: float, times: np.ndarray) -> np.ndarray:
    """Poses (P, 3) at interval_s, 2 interval_s, ... (from the origin at t = 0) -> (T, 3) at ``times``."""
    knots_t = np.concatenate([[0.0], interval_s * np.arange(1, len(poses) + 1)])
    knots = np.vstack([np.zeros(3), poses])
    heading = np.unwrap(knots[:, 2])
    return np.stack([np.interp(times, knots_t, knots[:, 0]), np.interp(times, knots_t, knots[:, 1]),
                     np.interp(times, knots_t, heading)], axis=1)


class ObstacleGuard:
    """``filter(points, stamp_ns, ego, trajectory) -> (trajectory, GuardVerdict)``: see module doc.

    Stateful (the tracks): call it once per frame, in stamp order. Counters: ``interventions``
    (plans retimed, followed or stopped), ``follows``, ``cautions``, ``stops``, ``plans``; ``tracker.resets``
    (time jumps)."""

    def __init__(self, config: GuardConfig | None = None):
        self.config = config or GuardConfig()
        self.tracker = LidarObjectTracker(self.config)
        self.plans = self.interventions = self.stops = self.releases = self.follows = self.cautions = self.yields = 0
        self.limited = 0  # plans the plan check moved sideways
        self.last_verdict = GuardVerdict(action="off" if not self.config.enabled else "clear")
        self._going = False  # the last plan was a go (the go latch)

    def reset(self) -> None:
        self.tracker.reset()
        self._going = False

    def filter(self, points: np.ndarray, stamp_ns: int, ego: EgoState, trajectory: Trajectory,
               route: np.ndarray | None = None) -> tuple[Trajectory, GuardVerdict]:
        cfg = self.config
        if not cfg.enabled or trajectory.is_fallback or not trajectory.is_finite():
            self.last_verdict = GuardVerdict(action="off" if not cfg.enabled else "clear")
            return trajectory, self.last_verdict
        self.plans += 1
        obstacles = self.tracker.update(points, stamp_ns, ego)
        limited = False
        if cfg.plan_check:
            trajectory, limited = self._check_plan(trajectory, ego)
        trajectory, verdict = self._guard(trajectory, ego, route, obstacles)
        if verdict.conflict_track >= 0:
            mine = obstacles.track_ids == verdict.conflict_track
            if mine.any():
                near = obstacles.points[mine][np.argmin(np.hypot(*obstacles.points[mine].T))]
                vel = obstacles.velocities[mine][0]
                verdict = replace(verdict, conflict_point=(float(near[0]), float(near[1])),
                                  conflict_velocity=(float(vel[0]), float(vel[1])))
        if limited:
            self.limited += 1
            verdict = replace(verdict, limited=True, action="limit" if verdict.action == "clear" else verdict.action)
        self.last_verdict = verdict
        return trajectory, verdict

    def _check_plan(self, trajectory: Trajectory, ego: EgoState) -> tuple[Trajectory, bool]:
        """``trajectory``, or, when it asks for more lateral acceleration than ``max_plan_lateral_accel_mps2``
        (``core.plan_check``), the same plan moved sideways within what ``plan_limit_lateral_accel_mps2`` can
        reach from the ego's present motion. Returns (plan, whether it was moved)."""
        cfg = self.config
        need = plan_lateral_acceleration(trajectory.poses, trajectory.interval_s, ego.velocity)  # first 2 s
        if need <= cfg.max_plan_lateral_accel_mps2 or not ego.is_finite():
            return trajectory, False
        poses = limit_lateral(trajectory.poses, trajectory.interval_s, ego.velocity, cfg.plan_limit_lateral_accel_mps2)
        return replace(trajectory, poses=poses.astype(np.asarray(trajectory.poses).dtype)), True

    def _guard(self, trajectory: Trajectory, ego: EgoState, route: np.ndarray | None,
               obstacles: Obstacles) -> tuple[Trajectory, GuardVerdict]:
        """The obstacle checks of ``filter`` (module doc, 2. and 3.) on ``trajectory``."""
        cfg = self.config
        speed0 = float(np.hypot(*np.asarray(ego.velocity, dtype=np.float64)))
        first_step = float(np.hypot(*trajectory.poses[0][:2])) / trajectory.interval_s
        if not math.isfinite(speed0):  # no ego speed: brake from the plan's own first-step speed
            speed0 = first_step
        going, self._going = self._going, False
        if cfg.creep_release and route is not None and math.isfinite(speed0):
            go = self._release(trajectory, speed0, route, obstacles, latched=going and cfg.go_latch)
            if go is not None:
                self._going = True
                self.releases += 1
                return go, GuardVerdict(action="go", num_tracks=obstacles.num_tracks)
        times = np.arange(1, int(round(cfg.horizon_s / cfg.time_step_s)) + 1) * cfg.time_step_s
        path = _densify(np.asarray(trajectory.poses, dtype=np.float64), trajectory.interval_s, times)
        hit = self._first_conflict(path, times, obstacles)
        if hit is None:
            has_young = obstacles.velocity_known is not None and not obstacles.velocity_known.all()
            young = self._first_conflict(path, times, obstacles, young_horizon_s=math.inf) if has_young else None
            if young is None:
                return trajectory, GuardVerdict(num_tracks=obstacles.num_tracks)
            # a later conflict with a track of unknown velocity: brake gently until its velocity is known
            self.interventions += 1
            self.cautions += 1
            caution = GuardVerdict(action="caution", conflict_time_s=float(times[young[0]]),
                                   conflict_track=int(young[1]), num_tracks=obstacles.num_tracks)
            return self._retime_to_speed(trajectory, speed0, cfg.min_decel_mps2, 0.0), caution
        verdict = GuardVerdict(num_tracks=obstacles.num_tracks)
        gentle, action = None, ""  # a retime that needs no stop: follow the track, or let it pass
        if cfg.follow:
            gentle, action = self._follow(trajectory, speed0, path, times, hit, obstacles), "follow"
        if gentle is None and cfg.yield_moving and speed0 >= cfg.yield_min_speed_mps:
            gentle, action = self._yield(trajectory, speed0, times, hit, obstacles), "yield"
        if gentle is not None:
            k, track = hit
            self.interventions += 1
            self.follows += int(action == "follow")
            self.yields += int(action == "yield")
            return gentle, replace(verdict, action=action, conflict_time_s=float(times[k]), conflict_track=int(track))
        retimed = trajectory
        for _ in range(4):  # a slower plan can meet a moving obstacle earlier
            k, track = hit
            arc = float(np.hypot(*path[0, :2])) + arc_lengths(path)  # from the origin
            stop_at = max(0.0, arc[k] - cfg.stop_margin_m)
            verdict = replace(verdict, conflict_time_s=float(times[k]), conflict_track=int(track), stop_distance_m=stop_at)
            retimed = self._retime(trajectory, speed0, stop_at)
            path = _densify(retimed.poses, retimed.interval_s, times)
            hit = self._first_conflict(path, times, obstacles)
            if hit is None or stop_at <= 0.0:
                break
        stopped = verdict.stop_distance_m <= 0.0 or hit is not None
        if hit is not None:  # still in conflict: brake as hard as allowed, on the same path
            retimed = self._retime(trajectory, speed0, 0.0)
        verdict.action = "stop" if stopped else "slow"
        self.interventions += 1
        self.stops += int(stopped)
        return retimed, verdict

    def _release(self, trajectory: Trajectory, speed0: float, route: np.ndarray, obstacles: Obstacles,
                 latched: bool = False) -> Trajectory | None:
        """A 'go' along the route (accelerate at go_accel to go_speed) for a creeping plan, if that is
        conflict-free for go_horizon_s; else None. ``latched`` (the last plan was a go): at any ego speed,
        for a plan slower than go_latch_speed_mps."""
        cfg = self.config
        poses = np.asarray(trajectory.poses, dtype=np.float64)
        horizon = trajectory.interval_s * len(poses)
        planned_speed = float(np.hypot(*poses[-1, :2])) / horizon
        if planned_speed >= (cfg.go_latch_speed_mps if latched else cfg.creep_speed_mps):
            return None
        if speed0 >= cfg.creep_speed_mps and not latched:
            return None
        ahead, valid = resample_route(route, 60, 1.0)  # the route from the ego's projection on, 1 m apart
        if not valid:
            return None
        knots = np.vstack([np.zeros(2), ahead.astype(np.float64)])
        arc = arc_lengths(knots)
        # resample_route extends the route past its end along the last segment: the go may only use
        # the route itself (knot k lies k m along the route from the ego's projection)
        line = Polyline(np.asarray(route, dtype=np.float64).reshape(-1, 2))  # valid: >= 2 finite points
        left = line.length - float(line.project(np.zeros((1, 2)))[0])
        route_end = float(np.interp(left, np.arange(len(knots), dtype=np.float64), arc))
        dt = cfg.time_step_s
        times = np.arange(1, int(round(cfg.go_horizon_s / dt)) + 1) * dt
        t_cap = max(cfg.go_speed_mps - speed0, 0.0) / cfg.go_accel_mps2
        s = np.where(times < t_cap, speed0 * times + 0.5 * cfg.go_accel_mps2 * times ** 2,
                     speed0 * t_cap + 0.5 * cfg.go_accel_mps2 * t_cap ** 2 + cfg.go_speed_mps * (times - t_cap))
        heading = np.arctan2(np.diff(knots[:, 1]), np.diff(knots[:, 0]))
        heading = np.concatenate([heading, heading[-1:]])

        def along(sv: np.ndarray) -> np.ndarray:
            return np.stack([np.interp(sv, arc, knots[:, 0]), np.interp(sv, arc, knots[:, 1]),
                             np.interp(sv, arc, np.unwrap(heading))], axis=1)

        if s[-1] > route_end or self._first_conflict(along(s), times, obstacles, young_horizon_s=math.inf) is not None:
            return None
        t_plan = trajectory.times_s
        s_plan = np.interp(t_plan, times, s)
        return replace(trajectory, poses=along(s_plan))

    def _first_conflict(self, path: np.ndarray, times: np.ndarray, obstacles: Obstacles,
                        gap_m: float = 0.0, young_horizon_s: float | None = None) -> tuple[int, int] | None:
        """(time index, track id) of the first obstacle point inside the front half of the ego box
        (lengthened by ``gap_m``), among the tracks that reach the front half no later than the rear half
        (a track that reaches the rear half first runs into us from behind; under constant velocity it
        would pass into the front half later, and braking for it would make the rear-end collision
        worse). Points of tracks without a known velocity count up to ``young_horizon_s`` (default
        ``young_track_horizon_s``; the creep release counts them, standing, over its whole horizon)."""
        cfg = self.config
        if not len(obstacles.points):
            return None
        moved = obstacles.points[None, :, :] + obstacles.velocities[None, :, :] * times[:, None, None]  # (T, N, 2)
        d = moved - path[:, None, :2]
        c, s = np.cos(path[:, 2])[:, None], np.sin(path[:, 2])[:, None]
        lon = c * d[..., 0] + s * d[..., 1]
        lat = -s * d[..., 0] + c * d[..., 1]
        beside = np.abs(lat) <= 0.5 * cfg.ego_width_m + cfg.side_margin_m
        young_horizon_s = cfg.young_track_horizon_s if young_horizon_s is None else young_horizon_s
        if obstacles.velocity_known is not None:  # a young track is not a standing obstacle for long
            beside &= obstacles.velocity_known[None, :] | (times[:, None] <= young_horizon_s + 1e-9)
        front = beside & (lon >= 0.0) & (lon <= 0.5 * cfg.ego_length_m + cfg.front_margin_m + gap_m)
        rear = beside & (lon < 0.0) & (lon >= -0.5 * cfg.ego_length_m)
        never = len(times)
        ids, inverse = obstacles.track_groups()
        first = {}
        for name, inside in (("front", front), ("rear", rear)):
            per_point = np.where(inside.any(axis=0), inside.argmax(axis=0), never)
            first[name] = np.full(len(ids), never)
            np.minimum.at(first[name], inverse, per_point)
        ahead = (first["front"] < never) & (first["front"] <= first["rear"])
        if not ahead.any():
            return None
        j = int(np.flatnonzero(ahead)[np.argmin(first["front"][ahead])])
        return int(first["front"][j]), int(ids[j])

    def _follow(self, trajectory: Trajectory, speed0: float, path: np.ndarray, times: np.ndarray,
                hit: tuple[int, int], obstacles: Obstacles) -> Trajectory | None:
        """The plan slowed to the along-path speed of the conflicting track ``hit`` at the gentlest of 4
        decelerations (min .. max) that leaves no conflict with the front half lengthened by the time gap;
        None when the track does not move along the path (known velocity) or no deceleration suffices."""
        cfg = self.config
        k, track = hit
        vel = _known_velocity(obstacles, track)
        if vel is None:
            return None
        lead = float(vel[0] * math.cos(path[k, 2]) + vel[1] * math.sin(path[k, 2]))
        if lead < cfg.follow_min_speed_mps or not math.isfinite(speed0):
            return None
        return self._gentlest(trajectory, speed0, lead, times, obstacles, cfg.follow_time_gap_s * lead)

    def _yield(self, trajectory: Trajectory, speed0: float, times: np.ndarray, hit: tuple[int, int],
               obstacles: Obstacles) -> Trajectory | None:
        """The plan braked (no stop point) at the gentlest of 4 decelerations (min .. max) that lets the moving
        conflicting track ``hit`` (known velocity, at least ``follow_min_speed_mps``: a car merging or crossing
        ahead) clear the path, with no conflict with any track; None when the track stands or is young, or when
        none suffices (then the stop retime)."""
        vel = _known_velocity(obstacles, hit[1])
        if vel is None or float(np.hypot(*vel)) < self.config.follow_min_speed_mps:
            return None
        return self._gentlest(trajectory, speed0, 0.0, times, obstacles)

    def _gentlest(self, trajectory: Trajectory, speed0: float, floor_speed: float, times: np.ndarray,
                  obstacles: Obstacles, gap_m: float = 0.0) -> Trajectory | None:
        """The plan braked from ``speed0`` down to ``floor_speed`` (``_retime_to_speed``) at the gentlest of 4
        decelerations from min_decel to max_decel after which no track conflicts with the front half lengthened
        by ``gap_m``; None when none does."""
        cfg = self.config
        for decel in np.linspace(cfg.min_decel_mps2, cfg.max_decel_mps2, 4):
            candidate = self._retime_to_speed(trajectory, speed0, float(decel), floor_speed)
            if self._first_conflict(_densify(candidate.poses, candidate.interval_s, times), times, obstacles, gap_m) is None:
                return candidate
        return None

    def _retime(self, trajectory: Trajectory, speed0: float, stop_at: float) -> Trajectory:
        """The same path, braking to a stop at arc length ``stop_at`` (never faster than planned)."""
        cfg = self.config
        fine_t, fine, arc = _fine_path(trajectory)
        decel = speed0 * speed0 / (2.0 * stop_at) if stop_at > 1e-3 else cfg.max_decel_mps2
        decel = float(np.clip(decel, cfg.min_decel_mps2, cfg.max_decel_mps2))
        # forward in time: the planned speed, capped by the speed from which ``decel`` still stops at
        # stop_at (a moving ego brakes evenly; a standing one may still roll up to the stop point)
        planned_speed = np.diff(arc) / np.diff(fine_t)
        dist = np.zeros(len(fine_t))
        for k, dt in enumerate(np.diff(fine_t)):
            cap = math.sqrt(2.0 * decel * max(stop_at - dist[k], 0.0))  # on the envelope: brake at decel
            envelope = cap * dt - 0.5 * decel * dt * dt if cap > decel * dt else max(stop_at - dist[k], 0.0)
            dist[k + 1] = dist[k] + min(planned_speed[k] * dt, envelope)
        return _along_path(trajectory, fine_t, fine, arc, np.minimum(dist, stop_at))

    def _retime_to_speed(self, trajectory: Trajectory, speed0: float, decel: float, floor_speed: float) -> Trajectory:
        """The same path, braking at ``decel`` from ``speed0`` down to ``floor_speed`` and keeping it
        (never faster than planned): the follow retime."""
        fine_t, fine, arc = _fine_path(trajectory)
        planned_speed = np.diff(arc) / np.diff(fine_t)
        return _along_path(trajectory, fine_t, fine, arc, _slowed(fine_t, planned_speed, speed0, decel, floor_speed))


def _known_velocity(obstacles: Obstacles, track: int) -> np.ndarray | None:
    """The velocity (ego frame) of ``track``, None while it is not known yet (a young track)."""
    mine = obstacles.track_ids == track
    if obstacles.velocity_known is not None and not obstacles.velocity_known[mine].all():
        return None
    return obstacles.velocities[mine][0]


def _fine_path(trajectory: Trajectory) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The plan on a 0.05 s grid from the origin: (times, poses (T, 3), arc lengths from the origin)."""
    fine_t = np.arange(0.0, trajectory.interval_s * len(trajectory.poses) + 1e-9, 0.05)
    fine = _densify(np.asarray(trajectory.poses, dtype=np.float64), trajectory.interval_s, fine_t)
    return fine_t, fine, arc_lengths(fine)


def _along_path(trajectory: Trajectory, fine_t: np.ndarray, fine: np.ndarray, arc: np.ndarray,
                dist: np.ndarray) -> Trajectory:
    """``trajectory`` retimed: at each pose time, the pose ``dist`` (at ``fine_t``) along its own path."""
    s_new = np.interp(trajectory.times_s, fine_t, dist)
    poses = np.stack([np.interp(s_new, arc, fine[:, 0]), np.interp(s_new, arc, fine[:, 1]),
                      np.interp(s_new, arc, fine[:, 2])], axis=1)
    return replace(trajectory, poses=poses)


def _slowed(fine_t: np.ndarray, planned_speed: np.ndarray, speed0: float, decel: float, floor: float) -> np.ndarray:
    """Distance at ``fine_t`` of a ride at min(planned speed, max(speed0 - decel t, floor)), exact per step."""
    t0, t1 = fine_t[:-1], fine_t[1:]
    t_floor = max(speed0 - floor, 0.0) / decel  # the cap reaches the floor
    a, b = np.minimum(t0, t_floor), np.minimum(t1, t_floor)
    capped = speed0 * (b - a) - 0.5 * decel * (b * b - a * a) + max(floor, 0.0) * (t1 - t0 - (b - a))
    step = np.minimum(planned_speed * (t1 - t0), capped)
    return np.concatenate([[0.0], np.cumsum(step)])
