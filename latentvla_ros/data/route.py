"""A driving log's mission route (issue 12): the route centreline the open-loop scorer uses
(``evaluation/scenes.py``) and the planner's route input in training and open-loop
evaluation, from one function so that they cannot drift apart.

- ``mission_lanes(log)``: {lane index: matched frames} of the map lanes the log's ego drives
  through over the whole log (``core.lanes.match_lanes``), computed once per log object;
- ``log_route_world(log, t)``: the mission route centreline at frame ``t`` (world, (K, 2)):
  ``core.lanes.chain_lane_centerline`` over the log's map lanes through the ego's pose,
  following the mission's lanes where the road branches (a roundabout's exit, an
  intersection's turn); None when the map has no lanes;
- ``log_route_ego(log, t)``: the same in frame ``t``'s ego frame (``core.route.route_to_ego``);
- ``log_route_samples(log, num_points, spacing_m)``: the planner's route input at every frame,
  ``core.route.resample_route`` of ``log_route_ego`` ((T, N, 2) float32, valid (T,) bool),
  computed once per log and cached in the log directory (``route_<N>_<spacing mm>mm.npy``,
  NaN rows = no route; its parameters in ``meta.json`` under ``route_cache``), so the
  training samples do not recompute it every epoch, or for every stage and round.

Uses the log's public accessors only (``num_frames``, ``ego_pose(t)``, ``map``), so any
object with them works (the hand-built logs of the tests).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from latentvla_ros.core.lanes import chain_lane_centerline, match_lanes
from latentvla_ros.core.route import MAX_ROUTE_OFFSET_M, resample_route, route_to_ego

ROUTE_CACHE_VERSION = 1
"""Bump when ``log_route_world`` or ``resample_route`` change what they give: older caches are recomputed."""


def mission_lanes(log: Any) -> dict[int, int]:
    """{lane index: matched frames} of the lanes the log's ego drives through (cached on the log)."""
    cached = getattr(log, "_mission_lanes", None)
    if cached is not None:
        return cached
    poses = np.array([np.asarray(log.ego_pose(k), dtype=np.float64)[:3] for k in range(int(log.num_frames))])
    lanes = match_lanes(log.map.lane_centerlines, poses)
    try:
        log._mission_lanes = lanes
    except AttributeError:
        pass
    return lanes


def log_route_world(log: Any, t: int) -> np.ndarray | None:
    """The mission route centreline (K, 2) through the ego's pose at frame ``t`` (world; module doc)."""
    pose = np.asarray(log.ego_pose(t), dtype=np.float64)[:3]
    return chain_lane_centerline(log.map.lane_centerlines, pose, mission=mission_lanes(log))


def log_route_ego(log: Any, t: int) -> np.ndarray | None:
    """``log_route_world(log, t)`` in frame ``t``'s ego frame (x forward, y left), None without lanes."""
    route = log_route_world(log, t)
    return None if route is None else route_to_ego(route, log.ego_pose(t))


def route_cache_name(num_points: int, spacing_m: float) -> str:
    return f"route_{int(num_points)}_{int(round(float(spacing_m) * 1000))}mm"


def log_route_samples(log: Any, num_points: int, spacing_m: float, cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(points (T, num_points, 2) float32, valid (T,) bool): ``resample_route(log_route_ego(log, t), ...)``
    at every frame t (zeros where not valid); cached in the log directory when ``cache`` and the log
    is writable (a read-only log is computed in memory)."""
    n = int(log.num_frames)
    name = route_cache_name(num_points, spacing_m)
    params = {"num_points": int(num_points), "spacing_m": float(spacing_m), "max_offset_m": MAX_ROUTE_OFFSET_M,
              "version": ROUTE_CACHE_VERSION}
    cacheable = cache and all(hasattr(log, a) for a in ("has_array", "read_array", "write_array", "update_meta"))
    if cacheable and log.has_array(name) and dict(log.meta).get("route_cache", {}).get(name) == params:
        arr = np.asarray(log.read_array(name, mmap=False), dtype=np.float32)
        if arr.shape == (n, int(num_points), 2):
            valid = np.isfinite(arr).all(axis=(1, 2))
            return np.where(valid[:, None, None], arr, 0.0).astype(np.float32), valid
    points = np.zeros((n, int(num_points), 2), dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    for t in range(n):
        points[t], valid[t] = resample_route(log_route_ego(log, t), num_points, spacing_m)
    if cacheable:
        try:
            log.write_array(name, np.where(valid[:, None, None], points, np.nan).astype(np.float32))
            caches = dict(log.meta.get("route_cache", {}))
            caches[name] = params
            log.update_meta(route_cache=caches)
        except OSError:  # read-only log directory: computed again next time
            pass
    return points, valid
