"""Build PDMS ``Scene`` objects from driving logs (``data/log_format.DrivingLog``).

Only the log's public accessors are used: ``num_frames``, ``ego_pose(t)``
(world x, y, yaw), ``ego_state(t)`` (EgoState), ``agents(t)`` (world-frame
``AgentBox`` list with track ids), ``map`` (MapGeometry, world),
``future_trajectory(t)`` ((8, 3) ego frame) and ``meta`` (``dt_s``,
``ego_length_m``, ``ego_width_m``, ``scenario``, ``ego_reference``; optional
``rear_axle_to_center_m``, ``wheel_base_m``, ``lane_width_m``,
``speed_limit_mps``).

The scene is built the way NAVSIM's metric cache builds it:

- route: the episode's mission route. Where the road branches (roundabout
  exits, intersection turns) it follows the lanes the episode's ego drives
  through over the whole log (``geometry.match_lanes``), the lanes of the route
  the scenario asked for, not the straightest successor (which loops around a
  roundabout's ring): ``data.route.log_route_world``, the same route the planner
  gets as its route input in training and open-loop evaluation;
- speed limit: ``meta["speed_limit_mps"]``, else the scenario's
  (``data.scenarios.speed_limit_mps``), for the reference planner and so EP;
- ego vehicle: highway-env's (``ego_reference == "vehicle_center"``) is a
  kinematic bicycle about its box centre with ``l_f = l_r = L / 2`` and slip
  ``tan(beta) = tan(delta) / 2``: exactly a rear-axle bicycle with wheelbase
  ``L`` whose rear axle lies ``L / 2`` behind the centre. The scene says so
  (``poses_are_box_centers``, ``wheel_base_m = L``, ``rear_axle_to_center_m =
  L / 2``, no steering lag), and the scorer simulates that rear axle.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from latentvla_ros.data.route import log_route_world, mission_lanes  # noqa: F401 - mission_lanes: re-exported
from latentvla_ros.evaluation.pdms import Scene

TTC_LOOKAHEAD_S = 1.0


def _meta(log: Any) -> dict:
    meta = getattr(log, "meta", None)
    return dict(meta) if meta else {}


def _frames_for(horizon_s: float, dt_s: float) -> int:
    return int(round(horizon_s / dt_s))


def highway_env_vehicle(length_m: float, width_m: float) -> dict:
    """Scene keyword arguments for highway-env's vehicle (module doc): poses are box
    centres, rear axle ``L / 2`` behind, wheelbase ``L``, the steering angle applied at
    once (highway-env has no steering lag). NAVSIM's 0.2 s acceleration lag stays: its
    LQR's longitudinal gain is tuned with it, and without it the logged expert's own
    poses drift farther in every scenario (``benchmarks/open_loop_expert.py --drift``)."""
    return dict(ego_length_m=float(length_m), ego_width_m=float(width_m), poses_are_box_centers=True,
                wheel_base_m=float(length_m), rear_axle_to_center_m=0.5 * float(length_m),
                steering_time_constant_s=0.0)


def vehicle_fields(meta: dict) -> dict:
    """Scene keyword arguments for the logged ego's geometry and reference point."""
    length = float(meta.get("ego_length_m", 5.0))
    fields = {"ego_length_m": length, "ego_width_m": float(meta.get("ego_width_m", 2.0))}
    if meta.get("source") == "highway-env" and meta.get("ego_reference") == "vehicle_center":
        fields.update(highway_env_vehicle(length, fields["ego_width_m"]))
    else:
        wheel_base = meta.get("wheel_base_m")
        fields.update(rear_axle_to_center_m=float(meta.get("rear_axle_to_center_m", 0.0)),
                      wheel_base_m=float(wheel_base) if wheel_base is not None else None)
    return fields


def scenario_speed_limit(meta: dict) -> float | None:
    """The log's speed limit [m/s]: ``meta["speed_limit_mps"]``, else its scenario's, else None."""
    if meta.get("speed_limit_mps") is not None:
        return float(meta["speed_limit_mps"])
    from latentvla_ros.data.scenarios import EXPERT_CRUISE_MPS, speed_limit_mps

    scenario = meta.get("scenario")
    return speed_limit_mps(scenario) if scenario in EXPERT_CRUISE_MPS else None


def scene_from_log(log: Any, t: int, horizon_s: float = 4.0, lookahead_s: float = TTC_LOOKAHEAD_S) -> Scene:
    """The scene at frame ``t``: ego now, agents replayed for ``horizon_s + lookahead_s``.

    Agent frames after the end of the log are not invented here; the scorer
    continues the last recorded agents at constant velocity. The route
    centreline is the mission route through the ego's lane (module doc). The
    expert trajectory is the logged future when it is finite, else None.
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
    route = log_route_world(log, t)
    return Scene(
        ego_pose=pose,
        ego=log.ego_state(t),
        map=log.map,
        agent_frames=frames,
        agent_dt_s=dt,
        route_centerline=route,
        lane_width_m=float(meta.get("lane_width_m", 4.0)),
        speed_limit_mps=scenario_speed_limit(meta),
        expert_trajectory=expert,
        **vehicle_fields(meta),
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


def expert_drift_m(scene: Scene) -> np.ndarray | None:
    """How far the logged expert's own poses end up from where the log says it went.

    The expert trajectory is tracked by the scorer (LQR tracker + kinematic bicycle,
    the scene's vehicle); returns the distances [m] between the simulated and the
    logged box centres at the trajectory's 8 times (None without an expert).
    """
    from latentvla_ros.evaluation.geometry import ego_box, ego_to_world_poses
    from latentvla_ros.evaluation.pdms import simulate_trajectories

    if scene.expert_trajectory is None:
        return None
    expert = np.asarray(scene.expert_trajectory, dtype=np.float64)
    states = simulate_trajectories(scene, [expert])[0]
    sim = states[5 * np.arange(1, len(expert) + 1), :3]  # the 0.5 s poses among the 0.1 s states
    d = float(scene.rear_axle_to_center_m)
    _, sim_centers = ego_box(sim[:, 0], sim[:, 1], sim[:, 2], 1.0, 1.0, d)
    logged = ego_to_world_poses(np.asarray(scene.ego_pose, dtype=np.float64)[:3], expert)
    if not scene.poses_are_box_centers:  # logged poses are of the reference point
        _, logged_centers = ego_box(logged[:, 0], logged[:, 1], logged[:, 2], 1.0, 1.0, d)
    else:
        logged_centers = logged[:, :2]
    return np.hypot(*(sim_centers - logged_centers).T)
