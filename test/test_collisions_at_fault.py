"""At-fault collisions (issue 12): NAVSIM's rules in one function (``evaluation/collisions.py``),
used by the open-loop scorer and by the closed loop, checked on hand-built geometry and on real
highway-env contacts (the simulator's own collision handling flags them; the hook records them)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from latentvla_ros.core.types import Trajectory
from latentvla_ros.evaluation import collisions
from latentvla_ros.evaluation.closed_loop import ClosedLoopConfig, HighwayClosedLoopEnv, run_episode, score_episode
from latentvla_ros.evaluation.geometry import Polyline
from latentvla_ros.evaluation.pdms import PdmsConfig

CFG = PdmsConfig()
# two straight lanes along +x, centred at y = 0 and y = 4 (4 m wide), drivable from y = -2 to 6
LANES = [Polyline(np.array([[-100.0, 0.0], [100.0, 0.0]])), Polyline(np.array([[-100.0, 4.0], [100.0, 4.0]]))]
DRIVABLE = [np.array([[-100.0, -2.0], [100.0, -2.0], [100.0, 6.0], [-100.0, 6.0]])]


def _car(x, y, heading=0.0, speed=0.0, **kw):
    return {"x": x, "y": y, "heading": heading, "length": 5.0, "width": 2.0, "speed": speed} | kw


def _contact(ego, agent):
    return collisions.contact_record(ego, agent, lanes=LANES, drivable=DRIVABLE, config=CFG)


# ----------------------------------------------------------------------------- hand-built geometry
def test_stopped_ego_hit_is_not_at_fault():
    # ego stopped at the origin; a car at 8 m/s whose front overlaps the ego's left side by 0.2 m
    c = _contact(_car(0.0, 0.0, speed=0.0), _car(-0.5, 1.8, speed=8.0, track_id=7))
    assert c["type"] == collisions.STOPPED_EGO and not c["at_fault"] and c["nc"] == 1.0
    assert c["track_id"] == 7 and c["ego_speed_mps"] == 0.0 and c["agent_speed_mps"] == 8.0
    # the stopped-ego rule comes first: the same contact at 0.05 m/s (the threshold) too, at 0.06 not
    assert not _contact(_car(0.0, 0.0, speed=0.05), _car(-0.5, 1.8, speed=8.0))["at_fault"]


def test_rear_ended_moving_ego_is_not_at_fault():
    # ego at 10 m/s; the follower's centre 4.9 m behind the ego's centre (boxes overlap 0.1 m):
    # seen from the ego's rear axle (2.5 m behind its centre) the follower is 180 deg behind (> 150)
    c = _contact(_car(0.0, 0.0, speed=10.0), _car(-4.9, 0.0, speed=20.0))
    assert c["type"] == collisions.ACTIVE_REAR and not c["at_fault"] and c["nc"] == 1.0
    assert c["bearing_deg"] == pytest.approx(180.0) and c["agent_in_ego_frame"][:2] == [-4.9, 0.0]
    # 2.4 m to the side and 4.9 m back: atan2(2.4, -2.4) = 135 deg from the rear axle -> not "behind";
    # the ego's front bumper does not reach it -> lateral, in its own lane -> not at fault either
    side = _contact(_car(0.0, 0.0, speed=10.0), _car(-4.9, 1.9, speed=20.0))
    assert side["type"] == collisions.ACTIVE_LATERAL and not side["at_fault"]


def test_ego_driving_into_a_lead_or_crossing_vehicle_is_at_fault():
    # lead vehicle 4.9 m ahead (centre to centre) at 2 m/s: the ego's front bumper is in its box
    lead = _contact(_car(0.0, 0.0, speed=10.0), _car(4.9, 0.0, speed=2.0))
    assert lead["type"] == collisions.ACTIVE_FRONT and lead["at_fault"] and lead["nc"] == 0.0 and lead["front_bumper"]
    # a vehicle crossing from the right (heading +90 deg) whose left side is 0.1 m inside the ego's bumper
    crossing = _contact(_car(0.0, 0.0, speed=8.0), _car(3.4, 0.0, heading=math.pi / 2, speed=6.0))
    assert crossing["type"] == collisions.ACTIVE_FRONT and crossing["at_fault"]
    assert crossing["agent_in_ego_frame"][2] == pytest.approx(math.pi / 2, abs=1e-4)
    # a stopped lead vehicle: at fault whatever the geometry; a static object costs NC = 0.5
    assert _contact(_car(0.0, 0.0, speed=10.0), _car(4.9, 0.0, speed=0.0))["type"] == collisions.STOPPED_TRACK
    obstacle = _contact(_car(0.0, 0.0, speed=10.0), _car(4.9, 0.0, static=True))
    assert obstacle["at_fault"] and obstacle["nc"] == collisions.STATIC_OBJECT_NC


def test_lateral_contact_is_at_fault_only_when_the_ego_straddles_lanes_or_leaves_the_road():
    agent = _car(-1.0, 1.9, speed=12.0)  # beside the ego's left rear, not touching its bumper
    inside = _contact(_car(0.0, 0.0, speed=10.0), agent)
    assert inside["type"] == collisions.ACTIVE_LATERAL and not inside["at_fault"]
    assert not inside["ego_multiple_lanes"] and not inside["ego_off_road"]
    # ego centred on the lane boundary (y = 2): two corners in each lane -> multiple lanes -> at fault
    straddle = _contact(_car(0.0, 2.0, speed=10.0), _car(-1.0, 3.9, speed=12.0))
    assert straddle["ego_multiple_lanes"] and straddle["at_fault"]
    # ego 1.2 m past the right road edge (corners at y = -3.2 > 0.5 m tolerance): off-road -> at fault
    off = _contact(_car(0.0, -2.2, speed=10.0), _car(-1.0, -0.3, speed=12.0))
    assert off["ego_off_road"] and off["at_fault"]


def test_open_loop_scorer_uses_the_same_classifier(monkeypatch):
    """``pdm_metrics.score_states`` decides every hit through ``collisions.classify_collision``."""
    from latentvla_ros.evaluation import pdm_metrics

    seen = []

    def spy(*args, **kwargs):
        seen.append(args[2])  # ego speed
        return collisions.ACTIVE_REAR, False

    from test_pdms_boundaries import _scene, _states, _stopped_agent

    scene, states = _scene(agents=_stopped_agent(20.0)), _states()  # 10 m/s into a stopped car 20 m ahead
    assert pdm_metrics.score_states(scene, states).no_at_fault_collisions[0] == 0.0  # the real rule: at fault
    assert not seen
    monkeypatch.setattr(pdm_metrics, "classify_collision", spy)
    assert pdm_metrics.score_states(scene, states).no_at_fault_collisions[0] == 1.0 and seen


def test_episode_nc_follows_the_contacts_and_keeps_old_results_conservative():
    assert collisions.episode_nc({"collision": False}) == 1.0
    assert collisions.episode_nc({"collision": True}) == 0.0  # an old result: every contact at fault
    assert collisions.episode_nc({"collision": True, "at_fault_collision": False, "contacts": []}) == 1.0
    hit_object = {"collision": True, "at_fault_collision": True, "contacts": [{"at_fault": True, "nc": 0.5}]}
    assert collisions.episode_nc(hit_object) == 0.5


# ----------------------------------------------------------------------------- real simulator contacts
class _Staged:
    """Drives straight at a fixed speed (None: no plan, full brake) after staging one other
    vehicle relative to the ego at reset (every other vehicle removed)."""

    name = "staged"
    needs_expert_env = False

    def __init__(self, ego_speed, offset_m, other_speed, lateral_m=0.0):
        self.ego_speed, self.offset_m, self.other_speed, self.lateral_m = ego_speed, offset_m, other_speed, lateral_m

    def reset(self, env):
        road, ego = env.env.road, env.ego
        other = next(v for v in road.vehicles if v is not ego)
        road.vehicles[:] = [ego, other]
        h = ego.heading
        fwd, left = np.array([math.cos(h), math.sin(h)]), np.array([math.sin(h), -math.cos(h)])  # y down
        other.position = ego.position + self.offset_m * fwd + self.lateral_m * left
        other.heading = h
        other.lane_index, other.lane = ego.lane_index, ego.lane
        other.target_lane_index = ego.lane_index
        ego.speed = float(self.ego_speed or 0.0)
        other.speed = other.target_speed = float(self.other_speed)
        if hasattr(other, "MIN_SPEED"):
            other.MIN_SPEED = min(other.MIN_SPEED, float(self.other_speed))

    def plan(self, obs):
        if self.ego_speed is None:
            return None
        s = self.ego_speed * 0.5 * np.arange(1, 9)
        return Trajectory(poses=np.stack([s, np.zeros(8), np.zeros(8)], axis=1), stamp_ns=obs.stamp_ns)


def _episode(driver):
    env = HighwayClosedLoopEnv("highway", 20_000, ClosedLoopConfig(max_steps=20), sensors=False)
    result = run_episode(env, driver)
    assert result.termination == "collision", result.termination
    assert len(result.contacts) == 1, result.contacts
    return result, result.contacts[0]


def test_simulator_stopped_ego_rear_ended_is_not_at_fault():
    result, c = _episode(_Staged(None, -5.6, 15.0))  # ego stopped; a car 0.6 m behind at 15 m/s
    assert result.collision and not result.at_fault_collision
    assert c["type"] == collisions.STOPPED_EGO and c["ego_speed_mps"] <= 0.05 and c["agent_speed_mps"] > 5.0
    assert c["agent_in_ego_frame"][0] < -4.0  # the car that hit it is behind
    assert score_episode(result, result.progress_m)["nc"] == 1.0


def test_simulator_moving_ego_rear_ended_is_not_at_fault():
    result, c = _episode(_Staged(8.0, -5.6, 25.0))
    assert c["type"] == collisions.ACTIVE_REAR and not c["at_fault"] and c["ego_speed_mps"] > 5.0
    assert not result.at_fault_collision and score_episode(result, result.progress_m)["nc"] == 1.0


def test_simulator_ego_driving_into_a_slow_lead_vehicle_is_at_fault():
    result, c = _episode(_Staged(15.0, 5.8, 2.0))  # a car 0.8 m ahead of the bumper at 2 m/s
    assert c["type"] == collisions.ACTIVE_FRONT and c["at_fault"] and c["front_bumper"]
    assert c["agent_in_ego_frame"][0] > 4.0 and c["ego_speed_mps"] > 10.0
    assert result.at_fault_collision and score_episode(result, result.progress_m)["nc"] == 0.0
    assert result.to_dict(with_path=False)["contacts"] == result.contacts  # json-friendly, kept in scores.json


def test_results_json_collision_rate_is_at_fault_and_collision_rate_any_every_contact():
    from latentvla_ros.evaluation.results_json import build_results_json

    def ep(seed, **kw):
        return dict(method="latentvla_student", scenario="intersection", seed=seed, score=0.5, collision=False,
                    off_road=False, route_completed=False, route_completion=0.5) | kw

    episodes = [ep(1, collision=True, at_fault_collision=False),  # hit while stopped
                ep(2, collision=True, at_fault_collision=True),
                ep(3, at_fault_collision=False),
                ep(4, collision=True)]  # written before contacts were recorded: counted at fault
    student = build_results_json([], [], episodes, ["latentvla_student"], n_boot=50)["closed_loop"]["e2e_student"]
    assert student["collision_rate"] == pytest.approx(2 / 4) and student["collision_rate_any"] == pytest.approx(3 / 4)
    per = student["per_scenario"]["intersection"]
    assert per["collision_rate"] == pytest.approx(0.5) and per["collision_rate_any"] == pytest.approx(0.75)
