"""The highway-env expert that drives the logged ego (and the closed-loop ceiling).

IDM (speed) + MOBIL (lane changes) + smooth steering and curve speeds (``data/expert.py``:
highway-env's own lane controller swerves where lanes meet at an angle), plus a
crossing-conflict rule for intersections and roundabouts (yield to a vehicle that reaches
a point of our route first, unless we can no longer stop comfortably); RegulatedRoad does
not act on it. Also the route command (LEFT / RIGHT when the route turns by more than
``TURN_THRESHOLD_RAD`` within ``COMMAND_LOOKAHEAD_M``, else STRAIGHT) and the ego's render
colour shared with the closed-loop vehicle. Split out of ``data/highway.py``; highway-env
is imported lazily.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from latentvla_ros.core.types import DrivingCommand
from latentvla_ros.data.log_format import wrap_angle

POLICY_HZ = 10
COMMAND_LOOKAHEAD_M = 25.0
TURN_THRESHOLD_RAD = 0.5
_EXPERT: dict[str, Any] = {}


def ego_color_mixin() -> type:
    """Mixin fixing a vehicle's render colour to highway-env's ego colour (green), also
    when RegulatedRoad recolours yielding vehicles or after a crash: every ego -- the
    logged expert and the closed-loop vehicle -- looks the same in the camera, so the
    training logs and closed loop show the model the same picture."""
    if "ego_color" in _EXPERT:
        return _EXPERT["ego_color"]
    from highway_env.vehicle.graphics import VehicleGraphics

    class EgoColor:
        @property
        def color(self):
            return VehicleGraphics.EGO_COLOR

        @color.setter
        def color(self, value) -> None:
            pass

        @color.deleter
        def color(self) -> None:
            pass

    _EXPERT["ego_color"] = EgoColor
    return EgoColor


def _expert_class():
    if "expert" in _EXPERT:
        return _EXPERT["expert"]
    from highway_env.vehicle.behavior import IDMVehicle
    from highway_env.vehicle.controller import ControlledVehicle
    from highway_env.vehicle.kinematics import Vehicle

    from latentvla_ros.data.expert import SmoothDrivingMixin
    from latentvla_ros.data.perturbation import steering_offset, within_noise_envelope

    class ExpertVehicle(ego_color_mixin(), SmoothDrivingMixin, IDMVehicle):
        """IDM + MOBIL ego with a crossing-conflict yield rule, smooth steering and curve
        speeds (``data/expert.py``); ignores RegulatedRoad."""

        ACC_MAX = 6.0
        COMFORT_ACC_MAX = 3.0
        COMFORT_ACC_MIN = -5.0
        DISTANCE_WANTED = 10.0
        TIME_WANTED = 1.5
        DELTA = 4.0
        CONFLICT_CLEARANCE_M = 1.6  # our half width + margin to the other's box
        PREDICTION_TIMES = np.arange(0.0, 4.01, 0.25)
        YIELD_MARGIN_S = 1.5
        STOP_BEFORE_CONFLICT_M = 2.5
        CONFLICT_PERIOD_S = 1.0 / POLICY_HZ

        yield_to_crossing = False
        debug_records: list | None = None  # set to [] to record conflict decisions
        control_noise: tuple | None = None  # (lateral acc, acc offset, PerturbationConfig) now
        executed_noise: list  # (steering [rad], acceleration) offsets executed, per act() while noisy

        # RegulatedRoad sets target_speed/color on yielding vehicles: keep our own.
        @property
        def target_speed(self) -> float:
            return self._cruise_speed

        @target_speed.setter
        def target_speed(self, value: float) -> None:
            if not getattr(self, "_cruise_locked", False):
                self._cruise_speed = float(value)

        def lock_cruise_speed(self, speed: float) -> None:
            self._cruise_locked = False
            self.target_speed = speed
            self._cruise_locked = True

        def act(self, action: Any = None) -> None:
            if self.crashed:
                return
            self.follow_road()
            if self.enable_lane_change:
                self.change_lane_policy()
            steering, curve_acc = self.smooth_controls()  # data/expert.py (not highway-env's swerving controller)
            front, rear = self.road.neighbour_vehicles(self, self.lane_index)
            acc = max(self.acceleration(ego_vehicle=self, front_vehicle=front, rear_vehicle=rear), self.following_braking_floor(front))
            if self.lane_index != self.target_lane_index:
                front, rear = self.road.neighbour_vehicles(self, self.target_lane_index)
                acc = min(acc, max(self.acceleration(ego_vehicle=self, front_vehicle=front, rear_vehicle=rear),
                                   self.following_braking_floor(front)))
            if self.yield_to_crossing:
                # re-evaluated at the policy rate (every CONFLICT_PERIOD_S), held in between
                now = getattr(self, "_clock", 0.0)
                if getattr(self, "_conflict_time", None) is None or now - self._conflict_time >= self.CONFLICT_PERIOD_S - 1e-6:
                    self._conflict_time = now
                    self._conflict_acc = self._conflict_acceleration()
                acc = min(acc, self._conflict_acc)
            acc = self.comfortable_acceleration(min(acc, curve_acc), -self.ACC_MAX)
            if self.control_noise is not None:  # data/perturbation.py: DART noise on the executed controls only
                steering, acc = self._noisy_controls(steering, acc)
            Vehicle.act(self, {"steering": steering, "acceleration": acc})

        def _noisy_controls(self, steering: float, acc: float) -> tuple[float, float]:
            lat_acc, d_acc, cfg = self.control_noise
            s, lateral = self.lane.local_coordinates(self.position)
            d_steer = steering_offset(lat_acc, self.speed, self.LENGTH, cfg.max_steering_rad)
            turn_acc = self.speed ** 2 * math.tan(steering) / self.LENGTH  # the expert's own lateral acceleration
            if not within_noise_envelope(lateral, wrap_angle(self.heading - self.lane.heading_at(s)), turn_acc, d_steer, cfg):
                return steering, acc  # not executed (the rest of the burst is cut while outside)
            self.executed_noise.append((d_steer, d_acc))
            return float(np.clip(steering + d_steer, -self.MAX_STEERING_ANGLE, self.MAX_STEERING_ANGLE)), acc + d_acc

        def step(self, dt: float) -> None:
            self.note_step(dt)
            super().step(dt)
            self._clock = getattr(self, "_clock", 0.0) + dt
            if self.speed < 0.0:  # IDM may brake below zero: we never reverse
                self.speed = 0.0

        # -- crossing conflicts
        def _conflict_acceleration(self) -> float:
            v = max(self.speed, 0.0)
            horizon = float(np.clip(v * 4.0 + 10.0, 15.0, 45.0))
            arcs = np.arange(0.0, horizon + 1e-9, 1.0)
            path, _ = _path_samples(self, arcs)
            heading = self.heading
            c, s = math.cos(heading), math.sin(heading)
            own_priority = getattr(self.lane, "priority", 0)
            best = self.ACC_MAX
            a_min = self.LENGTH / 2.0
            for other in self.road.vehicles:
                if other is self:
                    continue
                rel = other.position - self.position
                dist = float(np.hypot(rel[0], rel[1]))
                if dist > horizon + 40.0:
                    continue
                static = other.crashed or getattr(other, "speed", 0.0) < 0.5
                if other.lane_index == self.lane_index and not static:
                    continue  # IDM follows moving vehicles on our lane
                rel_x = c * rel[0] + s * rel[1]
                rel_y = -s * rel[0] + c * rel[1]
                if (rel_x < -self.LENGTH and abs(rel_y) < 2.0 and abs(wrap_angle(other.heading - heading)) < 1.0
                        and other.lane_index[2] == self.lane_index[2]):
                    continue  # following us in our lane (possibly on the previous road segment)
                speed_o = max(float(getattr(other, "speed", 0.0)), 0.0)
                if isinstance(other, ControlledVehicle) and not other.crashed:
                    pred, pred_heading = _path_samples(other, speed_o * self.PREDICTION_TIMES)
                else:
                    pred = other.position[None, :] + other.velocity[None, :] * self.PREDICTION_TIMES[:, None]
                    pred_heading = np.full(len(pred), other.heading)
                # distance from our path (centre line) to the other's predicted box
                cph, sph = np.cos(pred_heading)[:, None], np.sin(pred_heading)[:, None]
                dx = path[None, :, 0] - pred[:, 0:1]
                dy = path[None, :, 1] - pred[:, 1:2]
                lx = np.maximum(np.abs(cph * dx + sph * dy) - other.LENGTH / 2.0, 0.0)
                ly = np.maximum(np.abs(-sph * dx + cph * dy) - other.WIDTH / 2.0, 0.0)
                hits = (lx * lx + ly * ly < self.CONFLICT_CLEARANCE_M ** 2) & (arcs[None, :] >= a_min)
                rows = np.flatnonzero(hits.any(axis=1))
                if rows.size == 0:
                    continue
                j = int(rows[0])
                k = int(np.flatnonzero(hits[j])[0])
                tau_other = float(self.PREDICTION_TIMES[j])
                a_conflict = float(arcs[k])
                gap = a_conflict - self.LENGTH / 2.0 - self.STOP_BEFORE_CONFLICT_M
                t_ego = (-v + math.sqrt(v * v + 4.0 * max(a_conflict - a_min, 0.0))) / 2.0  # accelerating at 2 m/s^2
                committed = gap < v * v / (2.0 * 4.0) + 0.5  # cannot stop comfortably any more
                margin = (self.LENGTH + 2.0) / max(v, 1.0) if committed else self.YIELD_MARGIN_S
                other_priority = getattr(getattr(other, "lane", None), "priority", 0)
                priority_yield = not committed and other_priority > own_priority and tau_other < 5.0
                go = tau_other >= t_ego + margin and not priority_yield  # through before it arrives
                hard_gap = a_conflict - a_min - 0.3
                if not go and hard_gap < v * v / (2.0 * self.ACC_MAX) and rel_x < self.LENGTH / 2.0:
                    go = True  # cannot stop even braking hard and it is not ahead: braking would not help
                acc = self.ACC_MAX
                if not go:
                    ab = -self.COMFORT_ACC_MAX * self.COMFORT_ACC_MIN
                    s_star = 1.0 + v * 1.0 + v * v / (2.0 * math.sqrt(ab))
                    free = 1.0 - (v / max(self.target_speed, 0.1)) ** self.DELTA
                    acc = self.COMFORT_ACC_MAX * (free - (s_star / max(gap, 0.5)) ** 2)
                    best = min(best, acc)
                if self.debug_records is not None:
                    self.debug_records.append((getattr(self, "_clock", 0.0), id(other), tau_other, a_conflict, gap, t_ego,
                                               committed, go, acc))
            return best

    _EXPERT["expert"] = ExpertVehicle
    return ExpertVehicle


def _route_lanes(vehicle) -> list:
    """Current lane followed by the rest of the planned route (when consistent).

    Lanes leaving the same node (a junction's left / straight / right branches) overlap where
    they start, so there the closest lane (``lane_index``) may be a branch the route does not
    take: the route's branch from that node is the current lane then, while the vehicle is on it (a
    straight mission crawling into the junction was told RIGHT whenever the right-turn branch was
    the closest)."""
    li = vehicle.lane_index
    route = list(vehicle.route or [])
    if route and not any(tuple(e[:2]) == tuple(li[:2]) for e in route):
        graph = vehicle.road.network.graph
        k = next((k for k, e in enumerate(route) if e[0] == li[0]), None)
        branch = None if k is None else (route[k][0], route[k][1], min(int(li[2]), len(graph[route[k][0]][route[k][1]]) - 1))
        if branch is not None and vehicle.road.network.get_lane(branch).on_lane(vehicle.position):
            li, route = branch, route[k:]
    if route and route[0][:2] == li[:2]:
        route = route[1:]
    if route and route[0][0] != li[1]:
        route = []
    return [li] + route


def _path_samples(vehicle, distances: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions/headings (highway-env frame) at ``distances`` ahead along the route."""
    net = vehicle.road.network
    route = _route_lanes(vehicle)
    lanes = []
    lane_id = route[0][2]
    for index in route:
        count = len(net.graph[index[0]][index[1]])
        lane_id = index[2] if index[2] is not None else lane_id
        lane_id = min(int(lane_id), count - 1)
        lanes.append(net.get_lane((index[0], index[1], lane_id)))
    s0 = float(lanes[0].local_coordinates(vehicle.position)[0])
    starts = np.cumsum([0.0] + [lane.length for lane in lanes[:-1]])
    pos = np.empty((len(distances), 2))
    head = np.empty(len(distances))
    for i, d in enumerate(distances):
        s = s0 + float(d)
        k = max(int(np.searchsorted(starts, s, side="right")) - 1, 0)
        lane = lanes[k]
        pos[i] = lane.position(s - starts[k], 0.0)
        head[i] = lane.heading_at(s - starts[k])
    return pos, head


def route_command(vehicle) -> DrivingCommand:
    """LEFT/RIGHT when the route turns within the look-ahead, else STRAIGHT (our frame)."""
    try:
        _, head = _path_samples(vehicle, np.arange(0.0, COMMAND_LOOKAHEAD_M + 1e-9, 2.5))
    except (KeyError, IndexError, ValueError, AttributeError):
        return DrivingCommand.UNKNOWN
    # highway-env headings are clockwise in our (y-flipped) world frame
    delta = -wrap_angle(head - head[0])
    k = int(np.argmax(np.abs(delta)))
    if abs(delta[k]) < TURN_THRESHOLD_RAD:
        return DrivingCommand.STRAIGHT
    return DrivingCommand.LEFT if delta[k] > 0 else DrivingCommand.RIGHT
