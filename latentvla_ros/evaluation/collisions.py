"""Who is at fault in a collision: NAVSIM's (and nuPlan's) rules, in one place (pure numpy).

``classify_collision`` is the one implementation of the at-fault rules; the open-loop scorer
(``pdm_metrics.score_states``, every ego box x agent box hit of a proposal) and the closed loop
(``closed_loop.HighwayClosedLoopEnv``, every contact highway-env flags as ``vehicle.crashed``,
through ``contact_record``) both call it. In NAVSIM's order (``pdm_scorer`` /
``pdm_scorer_utils.get_collision_type``), for an ego box that touches an agent's box:

1. the ego is stopped (speed <= ``collision_stopped_speed_threshold``, 0.05 m/s): not at fault;
2. the agent is stopped (a static object, or a track at most that fast): at fault;
3. the agent's centre lies behind the ego (angle between the ego heading and the rear axle ->
   agent centre vector > ``agent_behind_angle_deg``, 150 deg): a rear collision, not at fault;
4. the ego's front bumper (corners FL-FR) touches the agent's box: at fault;
5. otherwise a lateral collision: at fault only when the ego is in several lanes or off the
   drivable area at that moment (``ego_area_flags``).

An at-fault collision costs NC = 0, or 0.5 when the agent is a static object (NAVSIM).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from latentvla_ros.evaluation.geometry import (
    FRONT_LEFT,
    FRONT_RIGHT,
    Polyline,
    box_corners,
    convex_polygons_intersect,
    lanes_containing_points,
    points_in_union,
)

STOPPED_EGO = "stopped_ego"
STOPPED_TRACK = "stopped_track"
ACTIVE_REAR = "active_rear"
ACTIVE_FRONT = "active_front"
ACTIVE_LATERAL = "active_lateral"
STATIC_OBJECT_NC = 0.5
"""NC after an at-fault collision with a static object (a vehicle or moving agent: 0)."""


def relative_angle(ego_xyh: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Angle between the ego heading and the ego -> point vector (NaN if coincident)."""
    ego_xyh = np.asarray(ego_xyh, dtype=np.float64)
    v = np.asarray(pts, dtype=np.float64) - ego_xyh[..., :2]
    norm = np.hypot(v[..., 0], v[..., 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        dot = (np.cos(ego_xyh[..., 2]) * v[..., 0] + np.sin(ego_xyh[..., 2]) * v[..., 1]) / norm
        ang = np.arccos(np.clip(dot, -1.0, 1.0))
    return np.where(norm > 0.0, ang, np.nan)


def in_multiple_lanes(corners: np.ndarray, lanes: list[Polyline], half_width: float) -> np.ndarray:
    """Bool (...,) per box (corners (..., 4, 2)): its corners lie in more than one lane and no
    lane holds all four (NAVSIM's "ego in multiple lanes"); False without lanes."""
    corners = np.asarray(corners, dtype=np.float64)
    if not lanes:
        return np.zeros(corners.shape[:-2], dtype=bool)
    per_lane = lanes_containing_points(corners, lanes, half_width).sum(axis=-2)  # (..., L)
    return ((per_lane > 0).sum(axis=-1) > 1) & np.all(per_lane != 4, axis=-1)


def ego_area_flags(corners: np.ndarray, lanes: list[Polyline], half_width: float, drivable: list[np.ndarray],
                   tolerance_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(in multiple lanes, off the drivable area) per box (corners (..., 4, 2)); a corner is off
    the drivable area farther than ``tolerance_m`` outside it."""
    corners = np.asarray(corners, dtype=np.float64)
    off_road = ~np.all(points_in_union(corners, drivable, tolerance_m), axis=-1)
    return in_multiple_lanes(corners, lanes, half_width), off_road


def classify_collision(ego_corners: np.ndarray, ego_xyh: np.ndarray, ego_speed_mps: float,
                       agent_corners: np.ndarray, agent_center: np.ndarray, agent_stopped: bool,
                       ego_lateral_violation: bool, config: Any) -> tuple[str, bool]:
    """(collision type, at fault) of the ego box ``ego_corners`` (4, 2; FL, RL, RR, FR) touching
    ``agent_corners`` (module doc). ``ego_xyh``: the ego's reference (rear-axle) pose;
    ``ego_lateral_violation``: the ego is in several lanes or off the drivable area;
    ``config``: a ``PdmsConfig`` (thresholds)."""
    if ego_speed_mps <= config.collision_stopped_speed_threshold:
        return STOPPED_EGO, False
    if agent_stopped:
        return STOPPED_TRACK, True
    if float(relative_angle(ego_xyh, agent_center)) > math.radians(config.agent_behind_angle_deg):
        return ACTIVE_REAR, False
    front = np.asarray(ego_corners, dtype=np.float64)[[FRONT_LEFT, FRONT_RIGHT]]
    if bool(convex_polygons_intersect(front, np.asarray(agent_corners, dtype=np.float64))):
        return ACTIVE_FRONT, True
    return ACTIVE_LATERAL, bool(ego_lateral_violation)


def contact_record(ego: dict, agent: dict, *, lanes: list[Polyline], drivable: list[np.ndarray], config: Any,
                   lane_half_width_m: float = 2.0, rear_axle_to_center_m: float | None = None) -> dict:
    """One closed-loop contact, classified: ``ego`` / ``agent`` are dicts of the boxes at the
    contact (world, our frame): x, y, heading (box centre), length, width, speed [m/s]; the agent
    also ``static`` (an object) and ``track_id``. The ego's reference point is its rear axle,
    ``rear_axle_to_center_m`` (default: half its length, highway-env's vehicle) behind the centre.

    Returns a json-friendly dict: the agent, both speeds, the contact geometry (the agent's
    position and heading in the ego frame, whether the ego's front bumper touches it, the ego
    in several lanes / off the road), the collision type and ``at_fault``."""
    ec = box_corners(ego["x"], ego["y"], ego["heading"], ego["length"], ego["width"])
    ac = box_corners(agent["x"], agent["y"], agent["heading"], agent["length"], agent["width"])
    d = 0.5 * float(ego["length"]) if rear_axle_to_center_m is None else float(rear_axle_to_center_m)
    h = float(ego["heading"])
    rear = np.array([ego["x"] - d * math.cos(h), ego["y"] - d * math.sin(h), h])
    multiple, off_road = ego_area_flags(ec, lanes, lane_half_width_m, drivable, config.drivable_area_tolerance_m)
    stopped = bool(agent.get("static")) or float(agent["speed"]) <= config.collision_stopped_speed_threshold
    kind, at_fault = classify_collision(ec, rear, float(ego["speed"]), ac, np.array([agent["x"], agent["y"]]),
                                        stopped, bool(multiple or off_road), config)
    dx, dy = agent["x"] - ego["x"], agent["y"] - ego["y"]
    rel = (math.cos(h) * dx + math.sin(h) * dy, -math.sin(h) * dx + math.cos(h) * dy)
    return {
        "track_id": int(agent.get("track_id", -1)), "static": bool(agent.get("static", False)),
        "ego_speed_mps": float(ego["speed"]), "agent_speed_mps": float(agent["speed"]),
        "agent_in_ego_frame": [round(rel[0], 3), round(rel[1], 3),
                               round(math.remainder(float(agent["heading"]) - h, 2 * math.pi), 4)],
        "bearing_deg": round(math.degrees(float(relative_angle(rear, np.array([agent["x"], agent["y"]])))), 2),
        "front_bumper": bool(convex_polygons_intersect(ec[[FRONT_LEFT, FRONT_RIGHT]], ac)),
        "ego_multiple_lanes": bool(multiple), "ego_off_road": bool(off_road),
        "type": kind, "at_fault": bool(at_fault),
        "nc": (STATIC_OBJECT_NC if agent.get("static") else 0.0) if at_fault else 1.0,
    }


def highway_env_contacts(ego: Any, vehicles: list, objects: list, dt: float, *, lanes: list[Polyline],
                         drivable: list[np.ndarray], config: Any, track_id: Any = id) -> list[dict]:
    """The ego's contacts right after a highway-env road step flagged it (``ego.crashed``, or
    ``ego.impact`` set: highway-env's "will intersect within dt", crashed at the next step), as
    ``contact_record`` dicts: every solid vehicle / object whose box touches the ego's now, or
    after ``dt`` at constant velocity (the test highway-env applies; the boxes are then taken
    there). highway-env's frame (y down) is flipped into ours. ``track_id(obj)`` names an agent.
    Without any such agent (not expected) one record of type 'unidentified', at fault."""
    from highway_env import utils

    def box(obj: Any, shift: float) -> dict:
        pos = np.asarray(obj.position, dtype=np.float64) + shift * np.asarray(obj.velocity, dtype=np.float64)
        return {"x": float(pos[0]), "y": float(-pos[1]), "heading": float(-obj.heading), "length": float(obj.LENGTH),
                "width": float(obj.WIDTH), "speed": abs(float(getattr(obj, "speed", 0.0)))}

    out = []
    for obj, static in [(v, False) for v in vehicles] + [(o, True) for o in objects]:
        if obj is ego or not (getattr(obj, "solid", True) and getattr(obj, "collidable", True)):
            continue
        now, will, _ = utils.are_polygons_intersecting(ego.polygon(), obj.polygon(), ego.velocity * dt,
                                                       obj.velocity * dt)
        if now or will:
            shift = 0.0 if now else float(dt)
            agent = box(obj, shift) | {"static": static, "track_id": int(track_id(obj))}
            out.append(contact_record(box(ego, shift), agent, lanes=lanes, drivable=drivable, config=config)
                       | {"predicted": not now})
    if not out:
        out.append({"track_id": -1, "static": False, "ego_speed_mps": abs(float(ego.speed)), "type": "unidentified",
                    "at_fault": True, "nc": 0.0})
    return out


def episode_nc(result: dict) -> float:
    """NAVSIM's NC of a driven closed-loop episode (a result dict): 1 without an at-fault contact,
    else the lowest NC of its at-fault contacts (0; 0.5 for a static object). A result without
    contact records (written before they existed) counts every collision as at fault."""
    if not result["collision"]:
        return 1.0
    if "at_fault_collision" not in result:
        return 0.0
    if not result["at_fault_collision"]:
        return 1.0
    return min((float(c.get("nc", 0.0)) for c in result.get("contacts", []) if c.get("at_fault")), default=0.0)
