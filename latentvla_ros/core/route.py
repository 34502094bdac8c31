"""The planner's route input (issue 12): the mission route ahead as a small polyline in the
ego frame, like TransFuser's target points (pure numpy).

- ``route_to_ego(route_world (K, 2), ego_pose (x, y, yaw)) -> (K, 2)``: x forward, y left [m];
- ``resample_route(route_ego, num_points, spacing_m) -> (points (num_points, 2) float32, valid)``:
  the ego origin is projected onto the polyline and ``num_points`` points are taken at arc
  lengths ``spacing``, ``2 * spacing``, ... ahead of that projection; past the polyline's end
  the points continue along its last segment. No route (None), fewer than 2 distinct points,
  a non-finite coordinate or an ego farther than ``MAX_ROUTE_OFFSET_M`` from the route give
  ``(zeros, False)``: the planner is then told "no route" (its ``route_valid`` input) instead
  of being fed garbage.

Who calls it: ``runtime.stages.TrajectoryPlanner.plan`` (every route an agent gets, with the
checkpoint's ``route_points`` / ``route_spacing_m``) and the planner's training samples
(``data/torch_datasets.py``), so training and run time resample the same way.
"""
from __future__ import annotations

import numpy as np

from latentvla_ros.core.lanes import Polyline

MAX_ROUTE_OFFSET_M = 10.0
"""An ego farther than this from the route polyline is not on it (a stale or wrong route)."""
_MIN_LENGTH_M = 1e-3


def route_to_ego(route_world: np.ndarray, ego_pose: np.ndarray) -> np.ndarray:
    """World points (K, 2) (or (..., >= 2): x, y used) -> the ego frame of ``ego_pose`` = (x, y, yaw)
    (x forward, y left)."""
    pts = np.asarray(route_world, dtype=np.float64)[..., :2]
    x0, y0, yaw = (float(v) for v in np.asarray(ego_pose, dtype=np.float64).reshape(-1)[:3])
    c, s = np.cos(yaw), np.sin(yaw)
    dx, dy = pts[..., 0] - x0, pts[..., 1] - y0
    return np.stack([c * dx + s * dy, -s * dx + c * dy], axis=-1)


def resample_route(route_ego: np.ndarray | None, num_points: int, spacing_m: float,
                   max_offset_m: float = MAX_ROUTE_OFFSET_M) -> tuple[np.ndarray, bool]:
    """``num_points`` route points every ``spacing_m`` metres ahead of the ego (module doc)."""
    if num_points < 1 or not spacing_m > 0:
        raise ValueError(f"resample_route: num_points must be >= 1 and spacing_m > 0, got {num_points}, {spacing_m}")
    invalid = (np.zeros((num_points, 2), dtype=np.float32), False)
    if route_ego is None:
        return invalid
    try:
        pts = np.asarray(route_ego, dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        return invalid
    if len(pts) < 2 or not np.all(np.isfinite(pts)):
        return invalid
    line = Polyline(pts)
    if line.length < _MIN_LENGTH_M:
        return invalid
    origin = np.zeros((1, 2))
    if float(line.distance(origin)[0]) > max_offset_m:
        return invalid
    s = float(line.project(origin)[0]) + spacing_m * np.arange(1, num_points + 1)
    out = line.interpolate(s)[:, :2]
    past = s > line.length
    if np.any(past):
        d = line.points[-1] - line.points[-2]
        out[past] = line.points[-1] + (s[past] - line.length)[:, None] * (d / np.linalg.norm(d))
    return out.astype(np.float32), True
