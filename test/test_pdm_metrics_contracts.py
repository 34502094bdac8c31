"""Hand-computed contracts of ``evaluation/pdm_metrics.py``: the rear-axle <-> box-centre
conversions of a ``Scene`` (highway-env poses are box centres, the scorer simulates the rear
axle ``rear_axle_to_center_m`` behind the centre along the heading), the six NAVSIM comfort
bounds just inside / just outside (reference.md, NAVSIM: lon acc in (-4.05, 2.40), |lat acc| <
4.89, |jerk| < 8.37, |lon jerk| < 4.13, |yaw acc| < 1.93, |yaw rate| < 0.95, strict) and
``score_states`` on a tiny straight-road scene whose collision / TTC instants are worked out
by hand. Fast (well under a second)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from latentvla_ros.core.types import AgentBox, EgoState, MapGeometry
from latentvla_ros.evaluation.geometry import world_to_ego_poses
from latentvla_ros.evaluation.pdm_metrics import (
    COMFORT_METRICS,
    InvalidSceneError,
    PdmsConfig,
    Scene,
    comfort_checks,
    score_states,
)
from latentvla_ros.evaluation.simulation import AX, AY, HEADING, STATE_SIZE, VX, VY, YAW_RATE, X, Y

D = 2.5  # rear axle -> box centre [m]
N = 41  # 0 .. 4 s at 0.1 s
T = np.arange(N) * 0.1
LON_ACC, LAT_ACC, JERK, LON_JERK, YAW_ACC, YAW_RATE_CHECK = range(6)


def _scene(pose=(10.0, 20.0, math.pi / 2), centres=True, **kw) -> Scene:
    kw.setdefault("map", MapGeometry(drivable_polygons=[np.array([[-100, -100], [200, -100], [200, 100], [-100, 100.0]])]))
    return Scene(
        ego_pose=np.array(pose, dtype=np.float64),
        ego=EgoState(velocity=np.zeros(2), acceleration=np.zeros(2)),
        rear_axle_to_center_m=D,
        poses_are_box_centers=centres,
        **kw,
    )


# --------------------------------------------------------------------------- rear axle <-> centre
def test_rear_axle_pose_is_d_behind_the_centre_along_the_heading():
    h = math.pi / 6
    pose = _scene(pose=(10.0, 20.0, h)).rear_axle_pose
    np.testing.assert_allclose(pose, [10.0 - D * math.sqrt(3) / 2, 20.0 - D * 0.5, h], atol=1e-12)
    # poses of the rear axle itself: unchanged, whatever the offset
    np.testing.assert_allclose(_scene(pose=(10.0, 20.0, h), centres=False).rear_axle_pose, [10.0, 20.0, h])


def test_to_rear_axle_frame_by_hand():
    sc = _scene()
    h = math.pi / 3
    traj = np.array([[4.0, 1.0, h], [0.0, 0.0, 0.0], [3.0, -2.0, -math.pi / 2]])
    before = traj.copy()
    out = sc.to_rear_axle_frame(traj)
    # centre (x, y, h) -> rear axle (x - d cos h, y - d sin h, h); rear axle now is (-d, 0, 0)
    expected = np.array([
        [4.0 - D * 0.5 + D, 1.0 - D * math.sqrt(3) / 2, h],
        [0.0, 0.0, 0.0],  # the centre now -> the rear axle now
        [3.0 + D, -2.0 + D, -math.pi / 2],
    ])
    np.testing.assert_allclose(out, expected, atol=1e-12)
    np.testing.assert_array_equal(traj, before)  # the input is not modified
    # identity when the poses are the reference point already
    np.testing.assert_array_equal(_scene(centres=False).to_rear_axle_frame(traj), traj)


def test_trajectory_from_rear_axle_by_hand():
    sc = _scene(pose=(10.0, 20.0, math.pi / 2))
    h = math.pi / 2 + math.pi / 6
    world = np.array([[10.0, 25.0, h], [10.0, 27.5, math.pi / 2]])
    before = world.copy()
    out = sc.trajectory_from_rear_axle(world)
    # centre = rear + d (cos h, sin h) = (10 - 1.25, 25 + d sqrt(3)/2); in the ego frame
    # (x forward = world +y, y left = world -x) -> (5 + d sqrt(3)/2, 1.25, pi/6)
    np.testing.assert_allclose(out[0], [5.0 + D * math.sqrt(3) / 2, 1.25, math.pi / 6], atol=1e-12)
    np.testing.assert_allclose(out[1], [10.0, 0.0, 0.0], atol=1e-12)
    np.testing.assert_array_equal(world, before)
    # reference-point poses: no shift
    out_ref = _scene(pose=(10.0, 20.0, math.pi / 2), centres=False).trajectory_from_rear_axle(world)
    np.testing.assert_allclose(out_ref[1], [7.5, 0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(out_ref[0], [5.0, 0.0, math.pi / 6], atol=1e-12)


@pytest.mark.parametrize("yaw", [0.3, -2.0, math.pi / 2])
def test_round_trip_rear_axle_and_centre(yaw):
    sc = _scene(pose=(3.0, -7.0, yaw))
    rng = np.random.default_rng(0)
    world = np.column_stack([rng.uniform(-20, 20, 6), rng.uniform(-20, 20, 6), rng.uniform(-3, 3, 6)])
    traj = sc.trajectory_from_rear_axle(world)
    back = sc.to_rear_axle_frame(traj)
    expected = world_to_ego_poses(sc.rear_axle_pose, world)
    np.testing.assert_allclose(back[:, :2], expected[:, :2], atol=1e-9)
    np.testing.assert_allclose(np.cos(back[:, 2] - expected[:, 2]), 1.0, atol=1e-12)


# --------------------------------------------------------------------------- comfort
def _states(**cols) -> np.ndarray:
    s = np.zeros((1, N, STATE_SIZE))
    for k, v in cols.items():
        s[0, :, {"ax": AX, "ay": AY, "h": HEADING, "vx": VX, "yr": YAW_RATE}[k]] = v
    return s


def _only_failing(states, config=PdmsConfig()) -> list[str]:
    checks = comfort_checks(states, 0.1, config)
    assert checks.shape == (states.shape[0], 6)
    return [COMFORT_METRICS[i] for i in range(6) if not checks[0, i]]


def test_comfort_all_pass_at_rest():
    assert _only_failing(_states()) == []


@pytest.mark.parametrize("ax, failing", [
    (2.39, []), (2.40, ["lon_accel"]), (2.41, ["lon_accel"]),
    (-4.04, []), (-4.05, ["lon_accel"]), (-4.06, ["lon_accel"]),
])
def test_comfort_lon_accel_bounds(ax, failing):
    assert _only_failing(_states(ax=ax)) == failing


@pytest.mark.parametrize("ay, failing", [
    (4.88, []), (4.89, ["lat_accel"]), (-4.88, []), (-4.90, ["lat_accel"]),
])
def test_comfort_lat_accel_bounds(ay, failing):
    assert _only_failing(_states(ay=ay)) == failing


# The jerk of a ramp a = j t: the acceleration is first smoothed with an even window of 8, which
# (as scipy's savgol_filter does) evaluates interior outputs half a sample late and the ends from
# the first / last window's fit; the whole-horizon quadratic's derivative of that then peaks at
# t = 0 at R * j with R = 4.32903929 / 4.12 = 1.0507 (computed once with the repo's savgol, which
# matches scipy). So |lon jerk| < 4.13 holds for |j| < 3.9306 and |jerk| < 8.37 for |j| < 7.9658.
R = 4.32903929 / 4.12


@pytest.mark.parametrize("j, failing", [
    (3.92, []), (3.94, ["lon_jerk"]), (-3.92, []), (-3.94, ["lon_jerk"]),
    (7.95, ["lon_jerk"]), (7.98, ["jerk", "lon_jerk"]), (-7.98, ["jerk", "lon_jerk"]),
])
def test_comfort_jerk_bounds_on_a_linear_ramp(j, failing):
    assert R * abs(j) < 4.13 if not failing else R * abs(j) > 4.13
    # ax = j t leaves the lon-accel bounds over 4 s, so only the jerk checks are compared here
    got = [m for m in _only_failing(_states(ax=j * T)) if m in ("jerk", "lon_jerk")]
    assert got == failing


@pytest.mark.parametrize("j, failing", [(7.95, []), (7.98, ["jerk"])])
def test_comfort_magnitude_jerk_uses_lateral_acceleration_too(j, failing):
    got = [m for m in _only_failing(_states(ay=j * T)) if m != "lat_accel"]
    assert got == failing


@pytest.mark.parametrize("w, failing", [(0.94, []), (0.96, ["yaw_rate"]), (-0.94, []), (-0.96, ["yaw_rate"])])
def test_comfort_yaw_rate_bounds_through_heading_wrap(w, failing):
    h = (w * T + math.pi) % (2 * math.pi) - math.pi  # 3.8 rad over 4 s: wraps once
    assert _only_failing(_states(h=h)) == failing


@pytest.mark.parametrize("a, failing", [(1.92, ["yaw_rate"]), (1.94, ["yaw_accel", "yaw_rate"]),
                                        (-1.94, ["yaw_accel", "yaw_rate"])])
def test_comfort_yaw_accel_bounds(a, failing):
    h = 0.5 * a * T**2
    h = (h + math.pi) % (2 * math.pi) - math.pi
    assert _only_failing(_states(h=h)) == failing


def test_comfort_lateral_accel_from_kinematics():
    kin = PdmsConfig(lateral_accel_from_kinematics=True)
    # v * yaw_rate = 4.8 passes, 5.0 fails; the AY column is ignored after t = 0
    assert _only_failing(_states(vx=4.8, yr=1.0, ay=4.8), kin) == []
    assert _only_failing(_states(vx=5.0, yr=1.0, ay=5.0), kin) == ["lat_accel"]
    s = _states(vx=5.0, yr=1.0, ay=0.0)
    s[0, 0, AY] = 5.0  # the first sample comes from the state
    assert "lat_accel" in _only_failing(s, kin)
    assert _only_failing(_states(vx=0.0, yr=1.0, ay=9.0), kin) == []
    s = _states()
    s[0, 0, AY] = 60.0  # a spike at t = 0 only: read from the state, smoothed over 41 samples
    assert "lat_accel" in _only_failing(s, kin)
    assert _only_failing(_states(vx=5.0, yr=1.0)) == []  # default: the AY column (0)


def test_comfort_config_bounds_are_used():
    cfg = PdmsConfig(max_lon_accel=1.0, min_lon_accel=-1.0, max_abs_lat_accel=1.0, max_abs_yaw_rate=0.1)
    assert _only_failing(_states(ax=1.5), cfg) == ["lon_accel"]
    assert _only_failing(_states(ax=-1.5), cfg) == ["lon_accel"]
    assert _only_failing(_states(ay=1.5), cfg) == ["lat_accel"]
    assert _only_failing(_states(h=0.2 * T), cfg) == ["yaw_rate"]


def test_comfort_is_per_proposal():
    s = np.concatenate([_states(ax=3.0), _states(), _states(h=T)])
    checks = comfort_checks(s)
    assert checks.shape == (3, 6)
    np.testing.assert_array_equal(checks.all(axis=-1), [False, True, False])
    assert not checks[0, LON_ACC] and checks[0, YAW_RATE_CHECK]
    assert not checks[2, YAW_RATE_CHECK] and checks[2, LON_ACC]


# --------------------------------------------------------------------------- score_states
def _drive(speed=10.0, y=0.0, n=N) -> np.ndarray:
    s = np.zeros((1, n, STATE_SIZE))
    s[0, :, X] = speed * np.arange(n) * 0.1
    s[0, :, Y] = y
    s[0, :, VX] = speed
    return s


def _road_scene(agents=(), rear=0.0, **kw) -> Scene:
    road = np.array([[-50.0, -5.0], [200.0, -5.0], [200.0, 5.0], [-50.0, 5.0]])
    kw.setdefault("map", MapGeometry(drivable_polygons=[road]))
    frames = [list(agents) for _ in range(51)]
    return Scene(
        ego_pose=np.zeros(3), ego=EgoState(velocity=np.array([10.0, 0.0]), acceleration=np.zeros(2)),
        agent_frames=frames, rear_axle_to_center_m=rear, **kw,
    )


def test_score_states_free_road_by_hand():
    sc = _score(_road_scene(), _drive())
    assert sc.no_at_fault_collisions[0] == 1.0 and sc.ttc[0] == 1.0
    assert sc.drivable_area_compliance[0] == 1.0 and sc.comfort[0] == 1.0
    assert sc.progress_m[0] == pytest.approx(40.0)
    assert math.isinf(sc.collision_time_s[0]) and math.isinf(sc.ttc_time_s[0])
    assert sc.collided_tracks == [[]]
    assert not sc.off_road.any() and not sc.multiple_lanes.any()


def _score(scene, states, config=PdmsConfig()):
    return score_states(scene, states, config)


def test_score_states_progress_is_clipped_at_zero_and_uses_the_box_centre():
    back = _drive(speed=-5.0)
    back[0, :, HEADING] = 0.0
    assert _score(_road_scene(), back).progress_m[0] == 0.0
    # box centre 2 m ahead of the rear axle: heading turned by 90 deg at the end moves the centre
    s = _drive()
    s[0, -1, HEADING] = math.pi / 2
    sc = _score(_road_scene(rear=2.0, ego_length_m=5.0), s)
    assert sc.progress_m[0] == pytest.approx(40.0 - 2.0)


def test_score_states_drivable_area_tolerance():
    # road half-width 5, ego half-width 1: at y = 4.4 a corner is 0.4 m outside (<= 0.5 tolerance)
    assert _score(_road_scene(), _drive(y=4.4)).drivable_area_compliance[0] == 1.0
    sc = _score(_road_scene(), _drive(y=4.6))
    assert sc.drivable_area_compliance[0] == 0.0 and sc.off_road.all()
    strict = PdmsConfig(drivable_area_tolerance_m=0.0)
    assert _score(_road_scene(), _drive(y=4.4), strict).drivable_area_compliance[0] == 0.0


def test_score_states_static_object_ahead_by_hand():
    # ego 5 m long, centre at x = 10 t: front bumper at 10 t + 2.5. Object 4 m long at x = 30:
    # its back at 28. Contact first when 10 t + 2.5 > 28 -> t = 2.6 s. With a 0.9 s lookahead
    # (shift 9 m) the front reaches 28 when 10 t + 11.5 > 28 -> t = 1.7 s.
    box = AgentBox(x=30.0, y=0.0, heading=0.0, length=4.0, width=2.0, track_id=7, is_static=True)
    sc = _score(_road_scene([box]), _drive())
    assert sc.no_at_fault_collisions[0] == 0.5  # static object
    assert sc.collision_time_s[0] == pytest.approx(2.6)
    assert sc.ttc[0] == 0.0 and sc.ttc_time_s[0] == pytest.approx(1.7)
    assert sc.collided_tracks == [[7]]
    assert sc.multiplicative[0] == 0.5


def test_score_states_stopped_vehicle_ahead_is_at_fault_zero():
    box = AgentBox(x=30.0, y=0.0, heading=0.0, length=4.0, width=2.0, track_id=3)
    sc = _score(_road_scene([box]), _drive())
    assert sc.no_at_fault_collisions[0] == 0.0 and sc.collided_tracks == [[3]]


def test_score_states_stopped_ego_is_never_at_fault():
    box = AgentBox(x=3.0, y=0.0, heading=0.0, length=4.0, width=2.0, track_id=3)
    sc = _score(_road_scene([box]), _drive(speed=0.0))
    assert sc.no_at_fault_collisions[0] == 1.0 and sc.ttc[0] == 1.0
    assert sc.collided_tracks == [[]]
    # speed is |(vx, vy)|: a lateral 1 m/s is not stopped -> hits the stopped vehicle at fault
    sliding = _drive(speed=0.0)
    sliding[0, :, VY] = 1.0
    assert _score(_road_scene([box]), sliding).no_at_fault_collisions[0] == 0.0


def test_score_states_rear_end_by_a_faster_agent_is_not_at_fault():
    # agent behind at 20 m/s, same lane: it hits the ego from behind
    box = AgentBox(x=-12.0, y=0.0, heading=0.0, length=4.0, width=2.0, vx=20.0, track_id=5)
    frames = [[AgentBox(x=-12.0 + 20.0 * k * 0.1, y=0.0, heading=0.0, length=4.0, width=2.0, vx=20.0,
                        track_id=5)] for k in range(51)]
    sc_scene = _road_scene([box])
    sc_scene.agent_frames = frames
    sc = _score(sc_scene, _drive())
    # contact at t = 0.8 s (agent front -10 + 20 t passes the ego's rear -2.5 + 10 t), agent
    # centre behind (180 deg > 150): not at fault, and the track is ignored afterwards
    assert sc.no_at_fault_collisions[0] == 1.0 and sc.collided_tracks == [[]]
    assert math.isinf(sc.collision_time_s[0])


def test_score_states_rejects_unscorable_scenes():
    with pytest.raises(InvalidSceneError, match="drivable"):
        _score(_road_scene(map=MapGeometry()), _drive())
    short = _road_scene()
    short.agent_frames = []
    with pytest.raises(InvalidSceneError, match="agent replay"):
        _score(short, _drive(n=45))
