"""PDMS sub-metrics at their boundaries, on hand-made simulated states.

``score_states`` is fed states built by hand (no simulator), so each case sits
just inside or just outside one bound: one ego corner off the drivable area, a
time-to-collision hit at each lookahead horizon, each comfort bound. Bounds and
horizons are read from ``PdmsConfig`` (the DAC tolerance too), not repeated
here as numbers.
"""
from __future__ import annotations

import functools

import numpy as np
import pytest
from reference_impl import savgol_reference

from latentvla_ros.core.types import AgentBox, EgoState, MapGeometry
from latentvla_ros.evaluation import pdms
from latentvla_ros.evaluation.pdms import (
    COMFORT_METRICS,
    InvalidSceneError,
    PdmsConfig,
    Scene,
    comfort_checks,
    normalized_progress,
    score_states,
    weighted_score,
)
from latentvla_ros.evaluation.simulation import AX, AY, HEADING, SIM_DT_S, STATE_SIZE, VX, X, Y

T = 41
TIMES = SIM_DT_S * np.arange(T)
CFG = PdmsConfig()


def _dac_tolerance() -> float:
    """Distance a corner may lie outside the drivable area and still count as inside."""
    return float(CFG.drivable_area_tolerance_m)


def _scene(half_width=2.0, agents=None, lanes=True, road_y=0.0) -> Scene:
    lo, hi = road_y - half_width, road_y + half_width
    poly = np.array([[-100.0, lo], [400.0, lo], [400.0, hi], [-100.0, hi]])
    centre = [np.array([[-100.0, 0.0], [400.0, 0.0]])] if lanes else []
    return Scene(ego_pose=np.zeros(3), ego=EgoState(velocity=np.array([10.0, 0.0]), acceleration=np.zeros(2)),
                 map=MapGeometry(lane_centerlines=centre, drivable_polygons=[poly]),
                 agent_frames=agents or [], ego_length_m=5.0, ego_width_m=2.0)


def _states(x=None, y=0.0, heading=0.0, vx=10.0, batch=1) -> np.ndarray:
    s = np.zeros((batch, T, STATE_SIZE))
    s[..., X] = TIMES * vx if x is None else x
    s[..., Y] = y
    s[..., HEADING] = heading
    s[..., VX] = vx
    return s


def _stopped_agent(x, y=0.0, static=False, n=51):
    box = AgentBox(x=x, y=y, heading=0.0, length=5.0, width=2.0, track_id=7, is_static=static)
    return [[box] for _ in range(n)]


# ----------------------------------------------------------------- DAC
def test_dac_one_corner_off_the_road_is_enough():
    # heading 0.1 rad at y = 0.8: the front-left corner is at y = 0.8 + 2.5 sin 0.1 + cos 0.1 = 2.0445,
    # the rear-left at 0.8 - 0.2496 + 0.995 = 1.545: only one corner is off a road whose edge is at 2.0 - margin
    tol = _dac_tolerance()
    front_left_y = 0.8 + 2.5 * np.sin(0.1) + np.cos(0.1)
    edge_off = front_left_y - tol - 0.02  # the corner is 2 cm beyond edge + tolerance
    edge_in = front_left_y + 0.02  # every corner 2 cm inside
    states = _states(y=0.8, heading=0.1)
    states[0, :, HEADING] = 0.0
    states[0, 20, HEADING] = 0.1  # only state 20 turns the box
    off = score_states(_scene(half_width=edge_off), states)
    assert off.drivable_area_compliance.tolist() == [0.0]
    assert off.off_road[0].tolist() == [t == 20 for t in range(T)]
    inside = score_states(_scene(half_width=edge_in), states)
    assert inside.drivable_area_compliance.tolist() == [1.0]
    # a corner outside the polygon but 2 cm within the tolerance still complies
    within_tol = score_states(_scene(half_width=front_left_y - tol + 0.02), states)
    assert within_tol.drivable_area_compliance.tolist() == [1.0]


def test_dac_last_state_counts_and_a_rear_corner_counts():
    # a rear-right corner off at the final state only: heading 0.1 at y = -0.8 puts the rear-right corner at
    # y = -0.8 - 2.5 sin 0.1 - cos 0.1 = -2.0445
    tol = _dac_tolerance()
    states = _states(y=-0.8, heading=0.0)
    states[0, -1, HEADING] = 0.1
    corner = 0.8 + 2.5 * np.sin(0.1) + np.cos(0.1)
    assert score_states(_scene(half_width=corner - tol - 0.02), states).drivable_area_compliance[0] == 0.0
    assert score_states(_scene(half_width=corner + 0.02), states).drivable_area_compliance[0] == 1.0


def test_dac_without_drivable_area_is_an_error():
    scene = _scene()
    scene.map.drivable_polygons = []
    with pytest.raises(InvalidSceneError):
        score_states(scene, _states())


# ----------------------------------------------------------------- TTC
@pytest.mark.parametrize("horizon", CFG.ttc_future_steps)
def test_ttc_each_horizon_just_inside_and_outside(horizon):
    # the ego box (front at x = 2.5) stays at the origin but reports 10 m/s: projected by horizon * 0.1 s
    # it reaches x = 2.5 + horizon; a stopped car whose rear is 5 cm nearer is hit, 5 cm further is not.
    # Only this horizon is checked, so each horizon is pinned on its own.
    cfg = PdmsConfig(ttc_future_steps=(horizon,))
    reach = 2.5 + 10.0 * horizon * SIM_DT_S
    states = _states(x=0.0)
    near = score_states(_scene(agents=_stopped_agent(reach + 2.5 - 0.05)), states, cfg)
    far = score_states(_scene(agents=_stopped_agent(reach + 2.5 + 0.05)), states, cfg)
    if horizon == 0:  # touching at horizon 0 is a collision as well
        assert near.no_at_fault_collisions[0] == 0.0
    else:
        assert near.no_at_fault_collisions[0] == 1.0
    assert near.ttc.tolist() == [0.0] and near.ttc_time_s[0] == 0.0
    assert far.ttc.tolist() == [1.0] and far.ttc_time_s[0] == np.inf


def test_ttc_uses_the_longest_default_horizon_only_when_needed():
    # with the default horizons, a car 0.05 m beyond the longest reach is never hit, 0.05 m inside it is
    reach = 2.5 + 10.0 * max(CFG.ttc_future_steps) * SIM_DT_S
    assert score_states(_scene(agents=_stopped_agent(reach + 2.45)), _states(x=0.0)).ttc[0] == 0.0
    assert score_states(_scene(agents=_stopped_agent(reach + 2.55)), _states(x=0.0)).ttc[0] == 1.0


def test_ttc_first_infraction_time():
    # ego really moving at 10 m/s towards a stopped car whose rear is at x = 30: the front (x = 2.5 + 10 t)
    # projected 0.9 s ahead reaches 30 when 10 t + 11.5 > 30, first at t = 1.9 s (19 states)
    cfg = PdmsConfig()
    res = score_states(_scene(agents=_stopped_agent(32.5)), _states(), cfg)
    assert res.ttc[0] == 0.0
    reach = 2.5 + 10.0 * max(cfg.ttc_future_steps) * SIM_DT_S
    first = np.ceil(((30.0 - reach) / 10.0) / SIM_DT_S + 1e-9) * SIM_DT_S
    assert res.ttc_time_s[0] == pytest.approx(first)


def test_ttc_skipped_below_the_stopped_speed():
    # an overlapping car ahead at horizon 0: TTC hit for any speed at or above the threshold, none below
    thr = CFG.ttc_stopped_speed_threshold
    agents = _stopped_agent(5.0 - 0.05)
    slow = score_states(_scene(agents=agents), _states(x=0.0, vx=0.5 * thr))
    fast = score_states(_scene(agents=agents), _states(x=0.0, vx=thr))
    assert slow.ttc[0] == 1.0 and fast.ttc[0] == 0.0
    # both are below the collision speed threshold: not at fault
    assert slow.no_at_fault_collisions[0] == fast.no_at_fault_collisions[0] == 1.0


@pytest.mark.parametrize("angle_deg,on_road,expected", [
    (25.0, True, 0.0), (40.0, True, 1.0), (40.0, False, 0.0), (160.0, False, 1.0)])
def test_ttc_only_for_agents_ahead_unless_lateral(angle_deg, on_road, expected):
    # a 1 m x 4 m agent whose centre is 4.3 m away on a bearing of angle_deg: not touching the ego now
    # (its near edge at x = 4.3 cos(angle) - 0.5 > 2.5 for 25 and 40 deg), touched by the ego box shifted
    # 3 m at horizon 3. Ahead (< 30 deg) always counts; 40 deg only when the ego is off the road (or in
    # several lanes); behind (> 150 deg) never.
    assert CFG.agent_ahead_angle_deg < 40.0 and CFG.agent_behind_angle_deg < 160.0
    d = 4.3
    ax, ay = d * np.cos(np.deg2rad(angle_deg)), d * np.sin(np.deg2rad(angle_deg))
    agents = [[AgentBox(x=ax, y=ay, heading=0.0, length=1.0, width=4.0, track_id=3)] for _ in range(51)]
    states = _states(x=0.0)
    if angle_deg == 160.0:  # behind: move the ego backwards into it instead
        states[..., VX] = -10.0
        states[..., HEADING] = 0.0
    # off the road: the drivable area is a strip 10 m beside the ego (far beyond the DAC tolerance)
    scene = _scene(half_width=20.0, agents=agents) if on_road else \
        _scene(half_width=2.0, agents=agents, road_y=13.0 + _dac_tolerance())
    res = score_states(scene, states, PdmsConfig(ttc_future_steps=(0, 3)))
    assert res.no_at_fault_collisions[0] == 1.0
    assert bool(res.off_road[0].all()) is (not on_road)
    assert res.ttc[0] == expected


# ----------------------------------------------------------------- comfort
def _check(states, name, cfg=CFG) -> bool:
    return bool(comfort_checks(states, SIM_DT_S, cfg)[0, COMFORT_METRICS.index(name)])


@pytest.mark.parametrize("name,field,sign", [
    ("lon_accel", "max_lon_accel", 1.0), ("lon_accel", "min_lon_accel", 1.0), ("lat_accel", "max_abs_lat_accel", 1.0),
    ("lat_accel", "max_abs_lat_accel", -1.0),
])
def test_comfort_accelerations_just_inside_and_outside(name, field, sign):
    bound = sign * getattr(CFG, field)
    col = AX if name == "lon_accel" else AY
    inward = -np.sign(bound) * 0.01
    for offset, ok in ((inward, True), (-inward, False), (0.0, False)):  # strict bounds: equal is outside
        s = _states()
        s[..., col] = bound + offset
        assert _check(s, name) is ok, (name, bound + offset)


@pytest.mark.parametrize("name,field", [("yaw_rate", "max_abs_yaw_rate"), ("yaw_accel", "max_abs_yaw_accel")])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_comfort_yaw_just_inside_and_outside(name, field, sign):
    bound = getattr(CFG, field)
    for value, ok in ((bound - 0.01, True), (bound + 0.01, False)):
        s = _states()
        if name == "yaw_rate":
            s[..., HEADING] = sign * value * TIMES  # constant yaw rate
        else:
            s[..., HEADING] = sign * 0.5 * value * TIMES**2  # constant yaw acceleration
        assert _check(s, name) is ok, (name, sign * value)


@functools.cache
def _ramp_jerk_gain() -> float:
    """Largest |jerk| NAVSIM's smoothing reports for the acceleration ramp a = t (true jerk 1).

    Window-8 smoothing evaluates the interior half a sample late, which bends the ramp at the
    edges, so the whole-horizon quadratic's slope is not exactly 1; computed with the
    independent reference filter."""
    acc8 = np.round(savgol_reference(TIMES, 8, 2), 8)
    return float(np.abs(savgol_reference(acc8, T, 2, deriv=1, delta=SIM_DT_S)).max())


@pytest.mark.parametrize("name,field", [("lon_jerk", "max_abs_lon_jerk"), ("jerk", "max_abs_mag_jerk")])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_comfort_jerk_just_inside_and_outside(name, field, sign):
    bound = getattr(CFG, field)
    gain = _ramp_jerk_gain()
    assert 1.0 < gain < 1.1
    for value, ok in ((bound - 0.01, True), (bound + 0.01, False)):
        s = _states()
        s[..., AX] = sign * value / gain * TIMES  # acceleration ramp whose reported max |jerk| is value
        assert _check(s, name) is ok, (name, sign * value)


def test_comfort_magnitude_jerk_combines_both_axes():
    # ax = 4 t (lon jerk 4 < 4.13 passes), ay = b t with hypot(4, b) just above / below the magnitude bound
    gain = _ramp_jerk_gain()
    lon = CFG.max_abs_lon_jerk - 0.13
    for mag, ok in ((CFG.max_abs_mag_jerk + 0.01, False), (CFG.max_abs_mag_jerk - 0.01, True)):
        s = _states()
        s[..., AX] = lon / gain * TIMES
        s[..., AY] = np.sqrt(mag**2 - lon**2) / gain * TIMES
        assert _check(s, "lon_jerk")
        assert _check(s, "jerk") is ok


def test_comfort_lateral_from_kinematics_option():
    # v * yaw rate = 10 * 0.6 = 6 m/s^2 > 4.89: only flagged with the kinematic option
    s = _states()
    s[..., HEADING] = 0.6 * TIMES
    s[..., 9] = 0.6  # YAW_RATE
    assert _check(s, "lat_accel")
    assert not _check(s, "lat_accel", PdmsConfig(lateral_accel_from_kinematics=True))


def test_comfort_flag_is_all_six_checks():
    good = _states()
    bad = _states()
    bad[..., AX] = CFG.max_lon_accel + 0.01
    res = score_states(_scene(), np.concatenate([good, bad]))
    assert res.comfort.tolist() == [1.0, 0.0]
    assert res.comfort_checks[1].tolist() == [name != "lon_accel" for name in COMFORT_METRICS]


# ----------------------------------------------------------------- progress, weights
def test_progress_is_centre_path_along_route_clipped_at_zero():
    forward = _states()  # 10 m/s for 4 s: 40 m
    backward = _states(vx=-2.0)  # moves backwards 8 m: clipped to 0
    res = score_states(_scene(), np.concatenate([forward, backward]))
    np.testing.assert_allclose(res.progress_m, [40.0, 0.0], atol=1e-9)


def test_progress_stays_on_the_part_of_a_route_that_passes_beside_itself():
    """A hairpin route (a roundabout's entry beside its exit): out along y = 0 to x = 60, a half circle of
    radius 2.5 m, back along y = 5. A vehicle that drives 10 m along y = 0 and swerves to y = 3.2 ends nearer
    the return leg (1.8 m) than its own (3.2 m): projected onto the whole route it would have made
    60 + 2.5 pi + 50 = 117.9 m of progress; it made 10 m (its end projects onto the outgoing leg at x = 10)."""
    arc = np.linspace(-np.pi / 2, np.pi / 2, 33)
    turn = np.stack([60.0 + 2.5 * np.cos(arc), 2.5 + 2.5 * np.sin(arc)], axis=1)
    route = np.vstack([[[-20.0, 0.0]], turn, [[-20.0, 5.0]]])
    scene = _scene(half_width=8.0)
    scene = Scene(ego_pose=scene.ego_pose, ego=scene.ego, map=scene.map, agent_frames=[], ego_length_m=5.0,
                  ego_width_m=2.0, route_centerline=route)
    swerve = _states(x=np.linspace(0.0, 10.0, T), vx=2.5)
    swerve[0, :, Y] = np.linspace(0.0, 3.2, T)
    straight = _states(x=np.linspace(0.0, 10.0, T), vx=2.5)
    res = score_states(scene, np.concatenate([swerve, straight]))
    np.testing.assert_allclose(res.progress_m, [10.0, 10.0], atol=0.05)
    whole = scene.route.project(np.array([[10.0, 3.2]]))[0] - scene.route.project(np.zeros((1, 2)))[0]
    assert whole > 100.0  # what the whole-route projection gives


def test_normalized_progress_threshold_by_hand():
    thr = CFG.progress_distance_threshold
    # max exactly at the threshold: not above it, so EP = 1 except where NC * DAC = 0
    np.testing.assert_array_equal(normalized_progress(np.array([thr, 1.0, 0.0]), np.array([1.0, 1.0, 0.0]), thr),
                                  [1.0, 1.0, 0.0])
    # above: divided by the max
    np.testing.assert_allclose(normalized_progress(np.array([thr + 1.0, 3.0]), np.array([1.0, 1.0]), thr),
                               [1.0, 3.0 / (thr + 1.0)])
    assert normalized_progress(np.array([]), np.array([]), thr).size == 0


def test_weighted_score_by_hand():
    # NC * DAC * (5 TTC + 5 EP + 2 C) / 12
    assert weighted_score(1.0, 1.0, 1.0, 1.0) == pytest.approx(1.0)
    assert weighted_score(1.0, 0.0, 0.5, 1.0) == pytest.approx((0 + 2.5 + 2) / 12)
    assert weighted_score(0.5, 1.0, 0.2, 0.0) == pytest.approx(0.5 * (5 + 1) / 12)
    assert weighted_score(0.0, 1.0, 1.0, 1.0) == 0.0
    cfg = PdmsConfig(progress_weight=1.0, ttc_weight=2.0, comfort_weight=3.0)
    assert weighted_score(1.0, 1.0, 0.0, 0.0, cfg) == pytest.approx(2.0 / 6.0)
    assert weighted_score(1.0, 0.0, 1.0, 0.0, cfg) == pytest.approx(1.0 / 6.0)
    assert weighted_score(1.0, 0.0, 0.0, 1.0, cfg) == pytest.approx(3.0 / 6.0)


# ----------------------------------------------------------------- forecasts and aggregation
def test_constant_velocity_forecast_by_hand():
    from latentvla_ros.evaluation.pdms import constant_velocity_frames

    moving = AgentBox(x=1.0, y=2.0, heading=0.3, length=4.0, width=1.8, vx=10.0, vy=-2.0, track_id=5)
    parked = AgentBox(x=-3.0, y=0.0, heading=1.0, length=2.0, width=1.0, vx=9.0, vy=9.0, track_id=6, is_static=True)
    frames = constant_velocity_frames([moving, parked], 3, dt_s=0.5)
    assert len(frames) == 3 and all(len(f) == 2 for f in frames)
    # frame k at k * 0.5 s: the moving car at (1 + 5k, 2 - k); the static object stays, its velocity zeroed
    for k, (m, p) in enumerate(frames):
        assert (m.x, m.y, m.heading, m.length, m.width, m.vx, m.vy, m.track_id, m.is_static) == pytest.approx(
            (1.0 + 5.0 * k, 2.0 - 1.0 * k, 0.3, 4.0, 1.8, 10.0, -2.0, 5, False))
        assert (p.x, p.y, p.heading, p.vx, p.vy, p.track_id, p.is_static) == (-3.0, 0.0, 1.0, 0.0, 0.0, 6, True)
        assert (p.length, p.width) == (2.0, 1.0)
    assert constant_velocity_frames([moving], 0) == []
    default = constant_velocity_frames([moving], 2)  # default step: the 0.1 s simulation step
    assert default[1][0].x == pytest.approx(1.0 + 10.0 * SIM_DT_S)


def _result(**scores):
    from latentvla_ros.evaluation.simulation import SimulatedTrajectory

    base = dict(no_at_fault_collisions=1.0, drivable_area_compliance=1.0, time_to_collision_within_bound=1.0,
                ego_progress=1.0, comfort=1.0, score=1.0, progress_m=10.0, reference_progress_m=12.0,
                collision_time_s=np.inf, ttc_time_s=np.inf, comfort_checks={}, collided_track_ids=[],
                simulated=SimulatedTrajectory(times_s=np.zeros(1), states=np.zeros((1, STATE_SIZE))))
    return pdms.PdmsResult(**(base | scores))


def test_result_dict_names_and_aggregate_means():
    r1 = _result(no_at_fault_collisions=0.5, drivable_area_compliance=1.0, time_to_collision_within_bound=0.0,
                 ego_progress=0.25, comfort=1.0, score=0.2, progress_m=3.0, reference_progress_m=7.0)
    r2 = _result(no_at_fault_collisions=1.0, drivable_area_compliance=0.0, time_to_collision_within_bound=1.0,
                 ego_progress=0.75, comfort=0.0, score=0.6)
    assert r1.as_dict() == {"nc": 0.5, "dac": 1.0, "ttc": 0.0, "ep": 0.25, "c": 1.0, "pdms": 0.2,
                            "progress_m": 3.0, "reference_progress_m": 7.0}
    assert (r1.nc, r1.dac, r1.ttc, r1.ep, r1.c, r1.pdms) == (0.5, 1.0, 0.0, 0.25, 1.0, 0.2)
    agg = pdms.aggregate_results([r1, r2])
    assert agg == pytest.approx({"nc": 0.75, "dac": 0.5, "ttc": 0.5, "ep": 0.5, "c": 0.5, "pdms": 0.4, "count": 2.0})
    empty = pdms.aggregate_results([])
    assert set(empty) == {"nc", "dac", "ttc", "ep", "c", "pdms"} and all(np.isnan(v) for v in empty.values())


# ----------------------------------------------------------------- agent bearing, references
def test_relative_angle_by_hand_and_at_rounding_limits():
    import warnings

    from latentvla_ros.evaluation.collisions import relative_angle as _relative_angle

    ego = np.array([[1.0, 2.0, np.pi / 2], [1.0, 2.0, np.pi / 2], [1.0, 2.0, np.pi / 2], [0.0, 0.0, 0.0]])
    pts = np.array([[1.0, 2.5], [0.0, 2.0], [2.0, 1.0], [0.3, 0.0]])
    # heading north: a point 0.5 m north is straight ahead (0), one west is at 90 deg, one south-east at 135 deg;
    # a point 0.3 m ahead (closer than 1 m) still has a bearing
    np.testing.assert_allclose(_relative_angle(ego, pts), [0.0, np.pi / 2, 3 * np.pi / 4, 0.0], atol=1e-7)
    # directly ahead / behind where cos and sin round the normalised dot product just past +-1
    h = 0.01
    v = 3.0 * np.array([np.cos(h), np.sin(h)])
    pose = np.array([0.0, 0.0, h])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning either, even for a coincident point
        assert _relative_angle(pose, v) == 0.0
        assert _relative_angle(pose, -v) == pytest.approx(np.pi)
        assert np.isnan(_relative_angle(pose, np.zeros(2)))


def test_normalized_progress_is_float_for_integer_input():
    out = normalized_progress(np.array([2, 3]), np.array([1, 0]), 5.0)
    assert out.dtype == np.float64 and out.tolist() == [1.0, 0.0]
    out = normalized_progress(np.array([6, 3]), np.array([1, 1]), 5.0)
    assert out.dtype == np.float64 and out.tolist() == [1.0, 0.5]


def test_simulate_world_references_uses_the_given_tracker_and_float_references():
    from latentvla_ros.evaluation.pdms import simulate_world_references
    from latentvla_ros.evaluation.simulation import TrackerConfig

    scene = _scene()
    refs = np.zeros((1, T, 3), dtype=np.int64)
    refs[0, :, 0] = np.arange(T) * 2  # 20 m/s reference from 10 m/s: the tracker has to accelerate
    default = simulate_world_references(scene, refs)
    np.testing.assert_array_equal(default, simulate_world_references(scene, refs.astype(np.float64)))
    slow = simulate_world_references(scene, refs.astype(np.float64), TrackerConfig(q_longitudinal=0.01))
    assert default.shape == slow.shape == (1, T, STATE_SIZE)
    assert slow[0, 10, X] < default[0, 10, X] - 0.1  # a weaker speed-tracking weight falls behind


def test_reference_progress_is_cached_per_config():
    from latentvla_ros.evaluation.pdms import compute_reference_progress

    scene = _scene()
    first = compute_reference_progress(scene)
    assert first > 0.0 and compute_reference_progress(scene) == first
    # a config the scene cannot serve (TTC horizon past the 5 s replay) is computed, not served from the cache
    with pytest.raises(InvalidSceneError):
        compute_reference_progress(scene, PdmsConfig(ttc_future_steps=(0, 90)))
