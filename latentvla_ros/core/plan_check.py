"""Kinematic plausibility of a plan: the lateral acceleration it asks for, and the plan limited to what a car can do.

A vehicle stack validates a planner's trajectory before its controller follows it (Autoware's planning
validator checks lateral acceleration, curvature and steering rate). The learned planner here sometimes puts
its whole plan in the neighbouring lane: every pose 3.0-3.5 m to the side from the first one (0.5 s) on, at
15-20 m/s on a straight road, for one to three frames (then the plan is back in the lane) or, now and then,
for seconds. No car is 3.3 m to the side half a second after driving straight (about 26 m/s^2 of lateral
acceleration), but pure pursuit steers at it until the steering-rate limit stops it and then steers back: a
0.4 s steering pulse of 0.08 rad whose yaw acceleration fails NAVSIM's comfort bound in every 4 s window that
holds it (fused student, highway validation seed 30006: 12 such plans, comfort 0.615;
``scripts/plan_lateral_acceleration.py --no-plan-check highway:30006``).

``plan_lateral_acceleration`` reads the lateral acceleration a plan asks for from its own poses: the change
of direction from the ego's direction of motion to the first segment, and from each segment to the next,
times the segment's speed, over the first seconds. On the fused student's closed-loop plans
(``scripts/plan_lateral_acceleration.py --scenarios highway,merge,intersection,roundabout --seeds 30000-30004``,
3,580 plans) 40 of the 688 highway plans ask for more than 15 m/s^2 (up to 28.3; the worst of each episode are
neighbouring-lane plans); merges ask for at most 2.7, intersections 9.1, roundabouts 14.9 (entries at 5-8 m/s) and once 16.3.

``limit_lateral`` moves such a plan sideways to within what a bounded lateral acceleration can reach from
the ego's present direction of motion: a one-frame jump becomes a few centimetres of drift, a plan that
insists becomes a lane change at that acceleration. ``core.obstacle_guard.ObstacleGuard`` applies both
(``GuardConfig.plan_check``) before its obstacle checks. Pure numpy.
"""
from __future__ import annotations

import math

import numpy as np

from latentvla_ros.core.lanes import wrap_angle

PLAN_CHECK_HORIZON_S = 2.0
"""The plan check reads the lateral acceleration a plan asks for over its first this long [s]."""
MIN_MOVING_MPS = 0.5
"""Slower than this the ego's direction of motion is not known; the check starts at the first segment."""


def plan_lateral_acceleration(poses: np.ndarray, interval_s: float, velocity: np.ndarray,
                              horizon_s: float = PLAN_CHECK_HORIZON_S, min_segment_m: float = 0.5) -> float:
    """The largest lateral acceleration [m/s^2] the plan ``poses`` ((N, >=2) ego frame, ``interval_s`` apart,
    from the origin at t = 0) asks for within ``horizon_s``, from an ego moving at ``velocity`` (ego-frame vx, vy).

    Segment k runs from pose k-1 (the origin for k = 0) to pose k; its direction is taken at its mid time.
    Between two directions (the first: the ego's direction of motion, when it moves faster than
    ``MIN_MOVING_MPS``) the turn rate is their difference over the time between them, times the later
    segment's speed. Segments shorter than ``min_segment_m`` (standing, creeping) carry no direction and are
    skipped. A non-finite plan or velocity: inf."""
    poses = np.asarray(poses, dtype=np.float64)
    velocity = np.asarray(velocity, dtype=np.float64)
    if poses.ndim != 2 or poses.shape[0] == 0 or not np.all(np.isfinite(poses[:, :2])) or not np.all(np.isfinite(velocity)):
        return math.inf
    n = max(1, min(len(poses), int(math.ceil(horizon_s / interval_s - 1e-9))))
    points = np.vstack([np.zeros(2), poses[:n, :2]])
    seg = np.diff(points, axis=0)
    length = np.hypot(seg[:, 0], seg[:, 1])
    direction = np.arctan2(seg[:, 1], seg[:, 0])
    speed = float(np.hypot(velocity[0], velocity[1]))
    last = (math.atan2(velocity[1], velocity[0]), 0.0) if speed > MIN_MOVING_MPS else None
    worst = 0.0
    for k in range(n):
        if length[k] < min_segment_m:
            continue
        t_mid = (k + 0.5) * interval_s
        if last is not None:
            rate = abs(float(wrap_angle(direction[k] - last[0]))) / (t_mid - last[1])
            worst = max(worst, rate * length[k] / interval_s)
        last = (float(direction[k]), t_mid)
    return worst


def limit_lateral(poses: np.ndarray, interval_s: float, velocity: np.ndarray, max_accel_mps2: float) -> np.ndarray:
    """``poses`` (N, 3) moved sideways so that none lies farther from where the ego's present motion goes
    than ``max_accel_mps2`` of lateral acceleration could take it: at time t, at most ``0.5 a t^2`` to either
    side of the line along the ego's direction of motion (its velocity, ego-frame vx, vy), at the pose's own
    distance ahead. The plan's longitudinal progress is kept; headings of moved poses follow the moved path.
    (Not the arc of the present yaw rate: after a jump the car turns towards it, and that arc would let the
    next jump through.)"""
    poses = np.asarray(poses, dtype=np.float64)
    t = interval_s * np.arange(1, len(poses) + 1)
    moving = float(np.hypot(velocity[0], velocity[1])) > MIN_MOVING_MPS
    slip = math.atan2(float(velocity[1]), float(velocity[0])) if moving else 0.0
    x = poses[:, 0]
    base = x * math.tan(slip)  # the present direction of motion's sideways position at x
    reach = 0.5 * max_accel_mps2 * t * t
    y = base + np.clip(poses[:, 1] - base, -reach, reach)
    out = np.stack([x, y, poses[:, 2]], axis=1)
    moved = np.abs(y - poses[:, 1]) > 1e-9
    if moved.any():  # headings along the moved path (central differences; the origin before the first pose)
        pts = np.vstack([np.zeros(2), out[:, :2]])
        ahead = np.vstack([pts[2:], 2 * pts[-1:] - pts[-2:-1]])
        heading = np.arctan2(ahead[:, 1] - pts[:-1, 1], ahead[:, 0] - pts[:-1, 0])
        out[moved, 2] = heading[moved]
    return out
