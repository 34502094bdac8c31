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
from latentvla_ros.evaluation.geometry import Polyline, box_corners
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


def test_thresholds_are_inclusive_as_in_navsim():
    # ego at exactly 0.05 m/s driving its bumper into a lead car: still "stopped ego" (<=), not at fault
    c = _contact(_car(0.0, 0.0, speed=0.05), _car(4.9, 0.0, speed=2.0))
    assert c["type"] == collisions.STOPPED_EGO and not c["at_fault"]
    # an agent at exactly 0.05 m/s beside the ego (lateral, own lane): a stopped track -> at fault
    c = _contact(_car(0.0, 0.0, speed=10.0), _car(-1.0, 1.9, speed=0.05))
    assert c["type"] == collisions.STOPPED_TRACK and c["at_fault"] and c["nc"] == 0.0
    # "behind" needs an angle strictly above the threshold: with 180 deg, a car straight behind the rear
    # axle (angle exactly pi) is not behind -> lateral (no bumper contact, ego in its lane) -> not at fault
    import dataclasses

    cfg = dataclasses.replace(CFG, agent_behind_angle_deg=180.0)
    ego_c = box_corners(0.0, 0.0, 0.0, 5.0, 2.0)
    agent_c = box_corners(-7.4, 0.0, 0.0, 5.0, 2.0)
    assert float(collisions.relative_angle(np.array([-2.5, 0.0, 0.0]), np.array([-7.4, 0.0]))) == math.pi
    assert collisions.classify_collision(ego_c, np.array([-2.5, 0.0, 0.0]), 10.0, agent_c, np.array([-7.4, 0.0]),
                                         False, False, cfg) == (collisions.ACTIVE_LATERAL, False)


def test_a_static_object_is_stopped_whatever_speed_it_reports():
    # an object flagged static beside the ego (lateral, own lane) reporting 1 m/s: still a stopped track
    c = _contact(_car(0.0, 0.0, speed=10.0), _car(-1.0, 1.9, speed=1.0, static=True, track_id=3))
    assert c["type"] == collisions.STOPPED_TRACK and c["at_fault"] and c["nc"] == collisions.STATIC_OBJECT_NC
    assert c["static"] is True and c["track_id"] == 3
    # a vehicle (no static flag, no track id): static False, track id -1
    v = _contact(_car(0.0, 0.0, speed=10.0), _car(4.9, 0.0, speed=2.0))
    assert v["static"] is False and v["track_id"] == -1


def test_contact_geometry_in_a_rotated_ego_frame():
    # ego at (20, 4) heading h with cos h = 0.6, sin h = 0.8; agent at (22, 5): d = (2, 1)
    # ego frame: x = 0.6*2 + 0.8*1 = 2.0, y = -0.8*2 + 0.6*1 = -1.0; relative heading 4 rad -> 4 - 2 pi
    h = math.atan2(0.8, 0.6)
    c = _contact(_car(20.0, 4.0, heading=h, speed=10.0), _car(22.0, 5.0, heading=h + 4.0, speed=5.0))
    assert c["agent_in_ego_frame"] == [2.0, -1.0, -2.2832]
    # rear axle 2.5 m behind the centre: (20 - 1.5, 4 - 2.0) = (18.5, 2.0); to the agent (3.5, 3.0):
    # cos(bearing) = (0.6*3.5 + 0.8*3.0) / sqrt(3.5^2 + 3^2) = 4.5 / sqrt(21.25)
    assert c["bearing_deg"] == round(math.degrees(math.acos(4.5 / math.sqrt(21.25))), 2)


def test_contact_geometry_rounding_and_rear_axle_offset():
    # heading 0, ego at the origin: the agent's offset is its position, rounded to mm
    c = _contact(_car(0.0, 0.0, speed=10.0), _car(1.23456, -0.98765, speed=5.0))
    assert c["agent_in_ego_frame"] == [1.235, -0.988, 0.0]
    # from the rear axle (-2.5, 0): (3.73456, -0.98765) -> bearing atan(0.98765 / 3.73456), to 0.01 deg
    assert c["bearing_deg"] == round(math.degrees(math.atan2(0.98765, 3.73456)), 2) == 14.81
    # agent 3 m to the left of the centre: 50.19 deg from the default rear axle (atan2(3, 2.5)),
    # exactly 90 deg when the reference point is the centre (rear_axle_to_center_m = 0)
    ego, agent = _car(0.0, 0.0, speed=10.0), _car(0.0, 3.0, speed=5.0)
    assert _contact(ego, agent)["bearing_deg"] == 50.19
    at_centre = collisions.contact_record(ego, agent, lanes=LANES, drivable=DRIVABLE, config=CFG,
                                          rear_axle_to_center_m=0.0)
    assert at_centre["bearing_deg"] == 90.0


def test_in_multiple_lanes_counts_lanes_per_box():
    # lanes: y = 0 and y = 4, half width 2 -> lane 0 holds y in [-2, 2], lane 1 y in [2, 6]
    boxes = np.array([
        [[2.0, 3.0], [-2.0, 3.0], [-2.0, 1.0], [2.0, 1.0]],    # straddles: 2 corners per lane -> True
        [[2.0, 1.5], [-2.0, 1.5], [-2.0, -1.5], [2.0, -1.5]],  # all four in lane 0 -> False
        [[2.0, -0.5], [-2.0, -0.5], [-2.0, -2.5], [2.0, -2.5]],  # two in lane 0, two in none -> one lane: False
        [[5.0, 2.5], [0.0, 1.0], [0.0, -1.0], [5.0, -1.0]],    # 3 corners in lane 0, 1 in lane 1 -> True
        [[2.0, 2.0], [-2.0, 2.0], [-2.0, 0.0], [2.0, 0.0]],    # all four in lane 0 (two also in lane 1) -> False
    ])
    assert collisions.in_multiple_lanes(boxes, LANES, 2.0).tolist() == [True, False, False, True, False]
    assert [bool(collisions.in_multiple_lanes(b, LANES, 2.0)) for b in boxes] == [True, False, False, True, False]
    # without lanes: False per box, shaped like the batch
    none = collisions.in_multiple_lanes(np.zeros((3, 4, 2)), [], 2.0)
    assert none.shape == (3,) and not none.any()


def test_episode_nc_edge_cases():
    # at fault but no at-fault contact recorded (or no contacts key): conservative NC 0
    assert collisions.episode_nc({"collision": True, "at_fault_collision": True, "contacts": []}) == 0.0
    assert collisions.episode_nc({"collision": True, "at_fault_collision": True}) == 0.0
    # an at-fault contact without an nc value counts as 0; the lowest at-fault nc wins, not-at-fault ones ignored
    assert collisions.episode_nc({"collision": True, "at_fault_collision": True, "contacts": [{"at_fault": True}]}) == 0.0
    mixed = [{"at_fault": False, "nc": 1.0}, {"at_fault": True, "nc": 0.5}, {"at_fault": False, "nc": 0.0}]
    assert collisions.episode_nc({"collision": True, "at_fault_collision": True, "contacts": mixed}) == 0.5


# ----------------------------------------------------------------------------- the highway-env adapter
def _hw_road():
    """A bare highway-env road (two straight lanes, y down: centres y = 0 and 4) with no episode;
    our frame flips y, so the matching lanes are y = 0 and y = -4, drivable y in [-6, 2]."""
    from highway_env.road.road import Road, RoadNetwork

    road = Road(RoadNetwork.straight_road_network(2, length=200.0), np_random=np.random.RandomState(0))
    lanes = [Polyline(np.array([[-100.0, 0.0], [300.0, 0.0]])), Polyline(np.array([[-100.0, -4.0], [300.0, -4.0]]))]
    drivable = [np.array([[-100.0, -6.0], [300.0, -6.0], [300.0, 2.0], [-100.0, 2.0]])]
    return road, lanes, drivable


def _hw_contacts(ego, vehicles, objects=(), dt=0.1, **kw):
    _, lanes, drivable = _hw_road()
    return collisions.highway_env_contacts(ego, list(vehicles), list(objects), dt, lanes=lanes, drivable=drivable,
                                           config=CFG, **kw)


def test_highway_env_contacts_on_hand_placed_vehicles():
    from highway_env.vehicle.kinematics import Vehicle
    from highway_env.vehicle.objects import Obstacle

    road, _, _ = _hw_road()
    ego = Vehicle(road, [50.0, 0.0], heading=0.0, speed=10.0)
    # a lead car 4.9 m ahead (centres): boxes overlap now -> the ego's bumper in it, at fault
    lead = Vehicle(road, [54.9, 0.0], heading=0.0, speed=2.0)
    (c,) = _hw_contacts(ego, [ego, lead], track_id=lambda o: 7)
    assert c["type"] == collisions.ACTIVE_FRONT and c["at_fault"] and c["nc"] == 0.0 and not c["predicted"]
    assert c["track_id"] == 7 and not c["static"] and c["agent_in_ego_frame"] == [4.9, 0.0, 0.0]
    assert c["ego_speed_mps"] == 10.0 and c["agent_speed_mps"] == 2.0
    # default track id: id(obj)
    assert _hw_contacts(ego, [ego, lead])[0]["track_id"] == id(lead)
    # 0.5 m gap, closing at 8 m/s: touching within dt = 0.1 s -> predicted, boxes taken after dt:
    # ego at 51.0, lead at 55.5 + 0.2 = 55.7 -> 4.7 m ahead
    near = Vehicle(road, [55.5, 0.0], heading=0.0, speed=2.0)
    (p,) = _hw_contacts(ego, [near, ego], dt=0.1)
    assert p["predicted"] and p["type"] == collisions.ACTIVE_FRONT and p["agent_in_ego_frame"][0] == 4.7
    # a car 1.9 m to the ego's left (highway-env y = -1.9, ours +1.9), 1 m back, heading 0.1 rad to its
    # right in highway-env (ours -0.1), reversing at 3 m/s: lateral, ego in its lane -> not at fault
    side = Vehicle(road, [49.0, -1.9], heading=0.1, speed=-3.0)
    (s,) = _hw_contacts(ego, [ego, side])
    assert s["type"] == collisions.ACTIVE_LATERAL and not s["at_fault"] and s["agent_speed_mps"] == 3.0
    assert s["agent_in_ego_frame"] == [-1.0, 1.9, -0.1]
    # a static obstacle (2 m box) touching the ego's bumper: a stopped track, NC 0.5, static
    ob = Obstacle(road, [53.4, 0.0])
    (o,) = _hw_contacts(ego, [ego], [ob], track_id=lambda o: 5)
    assert o["type"] == collisions.STOPPED_TRACK and o["static"] and o["nc"] == collisions.STATIC_OBJECT_NC
    assert o["track_id"] == 5 and o["agent_speed_mps"] == 0.0
    # objects that are not solid or not collidable never count; both contacts listed when both touch
    ghost, passive = Obstacle(road, [53.4, 0.0]), Vehicle(road, [54.9, 0.0], heading=0.0, speed=2.0)
    ghost.solid, passive.collidable = False, False
    both = _hw_contacts(ego, [ego, passive, lead], [ghost, ob])
    assert [(c["static"], c["track_id"]) for c in both] == [(False, id(lead)), (True, id(ob))]
    # the ego on the lane boundary (highway-env y = 2, ours -2: two corners in each lane) with a car 1.9 m
    # to its right (highway-env y = 3.9, ours -3.9), 1 m back: lateral while in two lanes -> at fault
    straddling = Vehicle(road, [50.0, 2.0], heading=0.0, speed=10.0)
    right = Vehicle(road, [49.0, 3.9], heading=0.0, speed=12.0)
    (r,) = _hw_contacts(straddling, [straddling, right])
    assert r["type"] == collisions.ACTIVE_LATERAL and r["ego_multiple_lanes"] and r["at_fault"]


def test_highway_env_contacts_without_a_touching_agent_records_one_unidentified_contact():
    from highway_env.vehicle.kinematics import Vehicle

    road, _, _ = _hw_road()
    ego = Vehicle(road, [50.0, 0.0], heading=0.0, speed=-3.0)
    far = Vehicle(road, [80.0, 0.0], heading=0.0, speed=2.0)
    # 5 m gap closing at 8 m/s: no contact within dt = 0.1 s either
    moving = Vehicle(road, [50.0, 0.0], heading=0.0, speed=10.0)
    gap = Vehicle(road, [60.0, 0.0], heading=0.0, speed=2.0)
    assert [c["type"] for c in _hw_contacts(moving, [moving, gap])] == ["unidentified"]
    assert _hw_contacts(ego, [ego, far]) == [{"track_id": -1, "static": False, "ego_speed_mps": 3.0,
                                              "type": "unidentified", "at_fault": True, "nc": 0.0}]


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
