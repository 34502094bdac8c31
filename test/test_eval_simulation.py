"""LQR tracker + kinematic bicycle model (evaluation.simulation)."""
from __future__ import annotations

import numpy as np
import pytest

from latentvla_ros.evaluation.baselines import constant_turn_rate_poses
from latentvla_ros.evaluation.geometry import ego_to_world_poses, wrap_angle
from latentvla_ros.evaluation.simulation import (
    HEADING,
    STATE_SIZE,
    VX,
    YAW_RATE,
    LQRSimulator,
    VehicleParams,
    fit_velocity_curvature_profiles,
    initial_state,
    reference_from_ego_trajectory,
    simulate_trajectory,
)

VEH = VehicleParams(length_m=5.0, width_m=2.0, rear_axle_to_center_m=0.0, wheel_base_m=None)


def _track(pose0, v, yaw_rate, poses):
    s0 = initial_state(np.asarray(pose0, float), [v, 0.0], [0.0, 0.0], yaw_rate, VEH)
    sim = simulate_trajectory(s0, poses, vehicle=VEH)
    target = ego_to_world_poses(s0[:3], poses)
    got = sim.poses[5::5]  # 0.5 .. 4.0 s
    return sim, np.abs(got[:, :2] - target[:, :2]).max(), np.abs(wrap_angle(got[:, 2] - target[:, 2])).max()


def test_output_layout_and_initial_state():
    s0 = initial_state(np.array([1.0, 2.0, 0.3]), [8.0, 0.5], [0.2, -0.1], 0.1, VEH)
    assert s0.shape == (STATE_SIZE,)
    assert s0[VX] == 8.0
    assert s0[YAW_RATE] == pytest.approx(0.1)  # steering angle reproduces the logged yaw rate
    sim = simulate_trajectory(s0, constant_turn_rate_poses(8.0, 0.1), vehicle=VEH)
    assert sim.states.shape == (41, STATE_SIZE)
    np.testing.assert_allclose(sim.times_s, 0.1 * np.arange(41))
    np.testing.assert_array_equal(sim.states[0], s0)


def test_tracks_straight_trajectory_exactly():
    sim, pos_err, head_err = _track([3.0, 4.0, 0.7], 10.0, 0.0, constant_turn_rate_poses(10.0, 0.0))
    assert pos_err < 1e-6 and head_err < 1e-9
    np.testing.assert_allclose(sim.velocity, 10.0, atol=1e-9)


@pytest.mark.parametrize("v,yaw_rate", [(10.0, 0.2), (5.0, 0.3), (15.0, -0.1)])
def test_tracks_curved_trajectory_closely(v, yaw_rate):
    sim, pos_err, head_err = _track([-20.0, 5.0, -1.0], v, yaw_rate, constant_turn_rate_poses(v, yaw_rate))
    assert pos_err < 0.2
    assert head_err < 0.03
    np.testing.assert_allclose(sim.yaw_rate[10:], yaw_rate, atol=0.02)


def test_tracks_acceleration_with_lag():
    t = 0.5 * np.arange(1, 9)
    x = 5.0 * t + 0.5 * t**2
    sim, pos_err, _ = _track([0.0, 0.0, 0.0], 5.0, 0.0, np.stack([x, 0 * x, 0 * x], -1))
    assert pos_err < 1.0  # first-order lags + 1 s lookahead (NAVSIM behaviour)
    assert np.all(np.diff(sim.velocity) >= -1e-9)
    assert sim.velocity[-1] > 8.0


def test_stops_and_stays_stopped():
    sim, pos_err, _ = _track([0.0, 0.0, 0.0], 0.0, 0.0, np.zeros((8, 3)))
    assert pos_err == 0.0
    np.testing.assert_array_equal(sim.velocity, 0.0)


def test_reference_interpolation_prepends_current_pose():
    ref = reference_from_ego_trajectory(np.array([1.0, 1.0, np.pi / 2]), constant_turn_rate_poses(10.0, 0.0))
    assert ref.shape == (41, 3)
    np.testing.assert_allclose(ref[0], [1.0, 1.0, np.pi / 2])
    np.testing.assert_allclose(ref[1], [1.0, 2.0, np.pi / 2], atol=1e-12)
    np.testing.assert_allclose(ref[-1, :2], [1.0, 41.0], atol=1e-12)


def test_profile_fit_recovers_constant_speed_and_curvature():
    v, w = 8.0, 0.16
    poses = ego_to_world_poses(np.zeros(3), np.vstack([np.zeros((1, 3)), constant_turn_rate_poses(v, w, 40, 0.1)]))
    vel, curv = fit_velocity_curvature_profiles(poses[None], 0.1)
    np.testing.assert_allclose(vel, v, rtol=2e-3)
    np.testing.assert_allclose(curv, w / v, rtol=2e-2)


def test_batch_equals_single_and_is_deterministic():
    s0 = initial_state(np.zeros(3), [10.0, 0.0], [0.0, 0.0], 0.05, VEH)
    refs = np.stack(
        [reference_from_ego_trajectory(s0[:3], constant_turn_rate_poses(10.0, w)) for w in (0.0, 0.05, -0.2)]
    )
    sim = LQRSimulator(VEH)
    batch = sim.simulate(refs, s0)
    for i in range(3):
        np.testing.assert_allclose(sim.simulate(refs[i:i + 1], s0)[0], batch[i], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(sim.simulate(refs, s0), batch)
    assert np.all(np.abs(wrap_angle(batch[..., HEADING])) <= np.pi)
