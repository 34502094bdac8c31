"""Build PDMS ``Scene`` objects from driving logs (``data/log_format.DrivingLog``).

Only the log's public accessors are used: ``num_frames``, ``ego_pose(t)``
(world x, y, yaw), ``ego_state(t)`` (EgoState), ``agents(t)`` (world-frame
``AgentBox`` list with track ids), ``map`` (MapGeometry, world),
``future_trajectory(t)`` ((8, 3) ego frame) and ``meta`` (``dt_s``,
``ego_length_m``, ``ego_width_m``; optional ``rear_axle_to_center_m``,
``wheel_base_m``, ``lane_width_m``, ``speed_limit_mps``).
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from latentvla_ros.evaluation.pdms import Scene

TTC_LOOKAHEAD_S = 1.0


def _meta(log: Any) -> dict:
    meta = getattr(log, "meta", None)
    return dict(meta) if meta else {}


def _frames_for(horizon_s: float, dt_s: float) -> int:
    return int(round(horizon_s / dt_s))


def scene_from_log(log: Any, t: int, horizon_s: float = 4.0, lookahead_s: float = TTC_LOOKAHEAD_S) -> Scene:
    """The scene at frame ``t``: ego now, agents replayed for ``horizon_s + lookahead_s``.

    Agent frames after the end of the log are not invented here; the scorer
    continues the last recorded agents at constant velocity. The route
    centreline is chained from the map's lanes through the ego's lane (see
    ``geometry.chain_lane_centerline``). The expert trajectory is the logged
    future when it is finite, else None.
    """
    n = int(log.num_frames)
    if not 0 <= t < n:
        raise IndexError(f"frame {t} out of range [0, {n})")
    meta = _meta(log)
    dt = float(meta.get("dt_s", 0.1))
    if not dt > 0:
        raise ValueError(f"bad dt_s {dt}")
    last = min(n - 1, t + _frames_for(horizon_s + lookahead_s, dt))
    frames = [list(log.agents(k)) for k in range(t, last + 1)]
    pose = np.asarray(log.ego_pose(t), dtype=np.float64)[:3]
    expert = None
    try:
        fut = np.asarray(log.future_trajectory(t), dtype=np.float64)
        valid = getattr(log, "future_valid", None)  # DrivingLog: (T,) bool array property
        if callable(valid):
            ok = bool(valid(t))
        elif valid is not None:
            ok = bool(np.asarray(valid)[t])
        else:
            ok = True
        if ok and fut.shape == (8, 3) and np.all(np.isfinite(fut)):
            expert = fut
    except (IndexError, KeyError, ValueError):
        expert = None
    speed_limit = meta.get("speed_limit_mps")
    wheel_base = meta.get("wheel_base_m")
    return Scene(
        ego_pose=pose,
        ego=log.ego_state(t),
        map=log.map,
        agent_frames=frames,
        agent_dt_s=dt,
        route_centerline=None,
        ego_length_m=float(meta.get("ego_length_m", 5.0)),
        ego_width_m=float(meta.get("ego_width_m", 2.0)),
        rear_axle_to_center_m=float(meta.get("rear_axle_to_center_m", 0.0)),
        wheel_base_m=float(wheel_base) if wheel_base is not None else None,
        lane_width_m=float(meta.get("lane_width_m", 4.0)),
        speed_limit_mps=float(speed_limit) if speed_limit is not None else None,
        expert_trajectory=expert,
        token=f"{meta.get('scenario', 'log')}:{meta.get('seed', '')}:{t}",
    )


def scene_indices(log: Any, horizon_s: float = 4.0, stride: int = 1, start: int = 0) -> list[int]:
    """Frames with a full ``horizon_s`` of logged future (every ``stride``-th)."""
    dt = float(_meta(log).get("dt_s", 0.1))
    need = _frames_for(horizon_s, dt)
    return list(range(start, max(int(log.num_frames) - need, start), max(int(stride), 1)))


def iter_scenes(log: Any, horizon_s: float = 4.0, stride: int = 1) -> Iterator[Scene]:
    for t in scene_indices(log, horizon_s, stride):
        yield scene_from_log(log, t, horizon_s)
