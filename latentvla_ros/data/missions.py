"""Missions: what an episode of each scenario asks the ego to do, in one place.

A mission is a (scenario, seed) with the route it asks for and the time it gets:

- highway, merge: a fixed distance along the road (``FIXED_ROUTE_M``; the merge route
  crosses the merge zone);
- roundabout: the exit the seed asks for (``ROUNDABOUT_EXITS``: first exit = right,
  second = straight across, third = left), ``EXIT_ROAD_M`` into the exit road;
- intersection: through the junction to the exit the seed asks for
  (``INTERSECTION_EXITS``: o1 = left, o2 = straight, o3 = right, checked against the
  route command in the tests) and ``EXIT_ROAD_M`` out.

The exit is ``seed % 3``, so consecutive seeds cycle through left / straight / right and
every 3 seeds cover each turn once (balanced evaluation suites and training presets).
The time limit is the route at ``MIN_MEAN_SPEED_FRACTION`` of the expert's cruise speed
plus ``TIME_SLACK_S`` for yielding.

Used by the closed-loop env (``evaluation/closed_loop.py``) and the data presets
(``data/presets.py``), with the route helpers both use (``plan_route``, ``route_points``;
highway-env road objects in, our right-handed world frame out). highway-env is imported
only inside them (``data/highway.py`` imports it lazily too).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from latentvla_ros.data.scenarios import EXPERT_CRUISE_MPS, POLICY_HZ, SCENARIOS

ROUNDABOUT_EXITS = ("exr", "nxr", "wxr")
INTERSECTION_EXITS = ("o1", "o2", "o3")
DESTINATIONS = {"roundabout": ROUNDABOUT_EXITS, "intersection": INTERSECTION_EXITS}
TURNS = {"exr": "right", "nxr": "straight", "wxr": "left", "o1": "left", "o2": "straight", "o3": "right"}
"""The turn each destination asks for (right-hand traffic)."""

FIXED_ROUTE_M = {"highway": 300.0, "merge": 350.0}
EXIT_ROAD_M = 40.0
MIN_MEAN_SPEED_FRACTION = 0.5
TIME_SLACK_S = 8.0
NOMINAL_ROUTE_M = {"roundabout": 200.0, "intersection": 120.0}
"""Longest destination route per scenario (third exit / left turn), for the time limit."""


@dataclass(frozen=True)
class Mission:
    """One episode's task: ``destination`` None = drive ``route_m`` along the road."""

    scenario: str
    seed: int
    destination: str | None
    route_m: float | None  # None: to EXIT_ROAD_M into the destination's exit road
    max_steps: int

    @property
    def turn(self) -> str:
        """'left', 'straight', 'right' (the destination's turn), or 'follow' (fixed distance)."""
        return TURNS.get(self.destination or "", "follow")


def destination_for(scenario: str, seed: int) -> str | None:
    """The exit a seed asks for (cycles through the exits with the seed); None without exits."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {SCENARIOS}")
    exits = DESTINATIONS.get(scenario)
    return exits[int(seed) % len(exits)] if exits else None


def time_limit_steps(scenario: str) -> int:
    """Policy steps (10 Hz) an episode of ``scenario`` gets."""
    route = FIXED_ROUTE_M.get(scenario) or NOMINAL_ROUTE_M[scenario]
    seconds = route / (MIN_MEAN_SPEED_FRACTION * EXPERT_CRUISE_MPS[scenario]) + TIME_SLACK_S
    return int(math.ceil(seconds * POLICY_HZ))


def mission_for(scenario: str, seed: int, max_steps: int | None = None) -> Mission:
    """The mission of (scenario, seed); ``max_steps`` overrides the time limit (short runs)."""
    return Mission(scenario=scenario, seed=int(seed), destination=destination_for(scenario, seed),
                   route_m=FIXED_ROUTE_M.get(scenario),
                   max_steps=int(max_steps) if max_steps else time_limit_steps(scenario))


# ----------------------------------------------------------------------------- routes
def prune_route(route: list, lane_index: tuple) -> list:
    """Drop the route entries already passed (the command looks at the rest)."""
    for k, entry in enumerate(route):
        if tuple(entry[:2]) == tuple(lane_index[:2]):
            return route[k:]
    return route


def plan_route(road: Any, lane_index: tuple, destination: str | None, max_extra: int = 20) -> list:
    """Lane indices from ``lane_index``: the shortest path to ``destination`` (and no
    further: past an intersection's exit node the only successor leads back in), or
    without a destination the road extended while it has a single successor."""
    net = road.network
    route = [tuple(lane_index)]
    if destination:
        path = net.shortest_path(lane_index[1], destination)
        return route + [(path[i], path[i + 1], None) for i in range(len(path) - 1)]
    seen = {tuple(r[:2]) for r in route}
    for _ in range(max_extra):
        end = route[-1][1]
        successors = list(net.graph.get(end, {}).keys())
        if len(successors) != 1 or (end, successors[0]) in seen:
            break
        route.append((end, successors[0], None))
        seen.add((end, successors[0]))
    return route


def route_points(road: Any, route: list, straight_step_m: float = 5.0, curved_step_m: float = 1.0) -> np.ndarray:
    """The route's lane centrelines chained (K, 2) in our world frame (y flipped).

    An entry without a lane id takes the previous id when the two roads have as many
    lanes (as highway-env's ``next_lane`` does), else the lane starting closest to
    where the previous one ended.
    """
    from highway_env.road.lane import SineLane, StraightLane

    net = road.network
    pts: list[np.ndarray] = []
    lane_id = int(route[0][2] or 0)
    prev_count = None
    prev_end = None
    for _from, _to, _id in route:
        lanes = net.graph[_from][_to]
        if _id is not None:
            lane_id = int(_id)
        elif prev_end is not None and prev_count != len(lanes):
            lane_id = int(np.argmin([np.linalg.norm(lane.position(0.0, 0.0) - prev_end) for lane in lanes]))
        lane_id = min(lane_id, len(lanes) - 1)
        lane = lanes[lane_id]
        straight = isinstance(lane, StraightLane) and not isinstance(lane, SineLane)
        step = straight_step_m if straight else curved_step_m
        n = max(2, int(math.ceil(float(lane.length) / step)) + 1)
        c = np.array([lane.position(s, 0.0) for s in np.linspace(0.0, float(lane.length), n)])
        prev_end, prev_count = c[-1].copy(), len(lanes)
        c[:, 1] *= -1.0
        if pts and np.linalg.norm(pts[-1][-1] - c[0]) < 1e-6:
            c = c[1:]
        pts.append(c)
    return np.concatenate(pts)
