"""Exact, faster equivalents of highway-env's two hottest traffic loops.

A profile of the closed-loop evaluation (two intersection episodes of the fused student, cProfile; the
command is in docs/evaluation.md, "Run time") spent 81% of its time in highway-env's simulation step and
9% in our models; inside it ``RegulatedRoad.enforce_road_rules`` 34% (every pair of vehicles
re-predicts *both* vehicles' 3 s trajectories, and the ego's prediction deep-copies the whole road) and
``Road.neighbour_vehicles`` 30% (every IDM vehicle projects every other vehicle onto its lane, again for
each lane it considers).

Both results are pure functions of state that does not change while they run, so caching them is exact:

* ``act``: while the road's vehicles decide their actions, no position changes, so each (lane, vehicle)
  projection -- ``lane.local_coordinates`` and ``lane.on_lane`` -- is computed once per act phase and
  reused by every vehicle that looks at that lane.
* ``enforce_road_rules``: each vehicle's constant-speed prediction is computed once per call, not once
  per pair. Yielding changes ``target_speed``, ``color`` and the yield flags, which no prediction reads.

Same calls, same order, same floats: logs and episodes are bit-identical with and without this
(test/test_highway_fast.py compares every vehicle's state step by step; the golden log hash must not move).
It applies only to the highway-env versions it was checked against; any other version runs unmodified.
``accelerate_road`` swaps the road's class for a subclass, so ``copy.deepcopy`` of a road (highway-env's
own ego prediction does that) keeps working on the copy.
"""
from __future__ import annotations

from typing import Any

import numpy as np

# highway-env versions whose Road.act / neighbour_vehicles / RegulatedRoad.enforce_road_rules /
# is_conflict_possible these equivalents were checked against (test/test_highway_fast.py)
VERIFIED_VERSIONS = ("1.12.1",)
ENABLED = True  # test/test_highway_fast.py turns it off to compare against highway-env's own loops
_PREDICTION_TIMES = np.arange(0.25, 3, 0.25)  # is_conflict_possible's defaults: horizon 3 s, step 0.25 s
_FAST: dict[type, type] = {}


def accelerate_road(road: Any) -> bool:
    """Give ``road`` (a highway-env Road or RegulatedRoad) the cached loops; False where not applied."""
    import highway_env

    if not ENABLED or highway_env.__version__ not in VERIFIED_VERSIONS:
        return False
    base = type(road)
    if getattr(base, "_latentvla_fast", False):
        return True
    fast = _FAST.get(base)
    if fast is None:
        fast = _FAST[base] = _fast_class(base)
    road.__class__ = fast
    return True


def _fast_class(base: type) -> type:
    from highway_env.vehicle.objects import Landmark

    def act(self) -> None:
        self._fast_projections = {}
        try:
            base.act(self)
        finally:
            self._fast_projections = None

    def projection(self, lane: Any, vehicle: Any) -> tuple:
        key = (id(lane), id(vehicle))
        hit = self._fast_projections.get(key)
        if hit is None:
            s, lat = lane.local_coordinates(vehicle.position)
            hit = self._fast_projections[key] = (s, lat, lane.on_lane(vehicle.position, s, lat, margin=1))
        return hit

    def neighbour_vehicles(self, vehicle: Any, lane_index: Any = None) -> tuple:
        if getattr(self, "_fast_projections", None) is None:  # outside an act phase: positions may move
            return base.neighbour_vehicles(self, vehicle, lane_index)
        lane_index = lane_index or vehicle.lane_index
        if not lane_index:
            return None, None
        lane = self.network.get_lane(lane_index)
        s = projection(self, lane, vehicle)[0]
        lanes_offsets = [(lane, 0)]
        if self.neighbour_vehicles_connected_lanes:
            lanes_offsets += _connected_lanes(self.network.graph, lane_index, lane)
        s_front = s_rear = v_front = v_rear = None
        for v in self.vehicles + self.objects:
            if v is vehicle or isinstance(v, Landmark):
                continue
            for search_lane, offset in lanes_offsets:
                s_v, _lat, on = projection(self, search_lane, v)
                if not on:
                    continue
                s_v += offset
                if s <= s_v and (s_front is None or s_v <= s_front):
                    s_front, v_front = s_v, v
                if s_v < s and (s_rear is None or s_v > s_rear):
                    s_rear, v_rear = s_v, v
                break
        return v_front, v_rear

    namespace = {"_latentvla_fast": True, "_fast_projections": None, "act": act,
                 "neighbour_vehicles": neighbour_vehicles}
    if hasattr(base, "enforce_road_rules"):
        namespace["enforce_road_rules"] = _enforce_road_rules
    return type(base.__name__, (base,), namespace)


def _connected_lanes(graph: dict, lane_index: tuple, lane: Any) -> list[tuple[Any, float]]:
    """The next and previous lane segments ``neighbour_vehicles`` also searches, with their offsets
    into ``lane``'s longitudinal coordinate (highway-env >= 1.12's connected-lanes mode)."""
    _from, _to, _id = lane_index
    out = []
    for next_lanes in graph.get(_to, {}).values():
        if _id < len(next_lanes):
            out.append((next_lanes[_id], lane.length))
        elif next_lanes:
            out.append((next_lanes[0], lane.length))
    for to_dict in graph.values():
        if _from in to_dict:
            prev_lanes = to_dict[_from]
            if _id < len(prev_lanes):
                prev = prev_lanes[_id]
            elif prev_lanes:
                prev = prev_lanes[0]
            else:
                continue
            out.append((prev, -prev.length))
    return out


def _enforce_road_rules(self) -> None:
    """RegulatedRoad's rule: release vehicles that yielded long enough, then make the lower-priority
    (or rear) vehicle of every pair whose 3 s predictions overlap yield -- predictions cached per call."""
    from highway_env import utils
    from highway_env.vehicle.controller import ControlledVehicle, MDPVehicle

    for v in self.vehicles:
        if getattr(v, "is_yielding", False):
            if v.yield_timer >= self.YIELD_DURATION * self.REGULATION_FREQUENCY:
                v.target_speed = v.lane.speed_limit
                delattr(v, "color")
                v.is_yielding = False
            else:
                v.yield_timer += 1
    predictions: dict[int, tuple] = {}

    def predicted(v: Any) -> tuple:
        p = predictions.get(id(v))
        if p is None:
            positions, headings = v.predict_trajectory_constant_speed(_PREDICTION_TIMES)
            p = predictions[id(v)] = (list(positions), list(headings))
        return p

    def conflict(v1: Any, v2: Any) -> bool:
        (pos1, head1), (pos2, head2) = predicted(v1), predicted(v2)
        for p1, h1, p2, h2 in zip(pos1, head1, pos2, head2):
            if np.linalg.norm(p2 - p1) > v1.LENGTH:
                continue
            if utils.rotated_rectangles_intersect((p1, 1.5 * v1.LENGTH, 0.9 * v1.WIDTH, h1),
                                                  (p2, 1.5 * v2.LENGTH, 0.9 * v2.WIDTH, h2)):
                return True
        return False

    vehicles = self.vehicles
    for i in range(len(vehicles) - 1):
        for j in range(i + 1, len(vehicles)):
            if conflict(vehicles[i], vehicles[j]):
                yielding = self.respect_priorities(vehicles[i], vehicles[j])
                if (yielding is not None and isinstance(yielding, ControlledVehicle)
                        and not isinstance(yielding, MDPVehicle)):
                    yielding.color = self.YIELDING_COLOR
                    yielding.target_speed = 0
                    yielding.is_yielding = True
                    yielding.yield_timer = 0
