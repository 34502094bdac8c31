"""Numeric contracts pinned by answers computed by hand or by an independent reference.

Each expected value here is worked out in the comment next to it (or by a
brute-force reference written differently from the implementation), so a
plausible one-line bug (a swapped axis, a sign, the interval read from the wrong
point, a wrong pixel) fails a test instead of passing shape-and-sign checks.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from latentvla_ros.core.ego_motion import AccelerationEstimator
from latentvla_ros.core.fallback import comfortable_stop
from latentvla_ros.core.features import FeatureError, lidar_bev_histogram, stitch_cameras, stitched_cameras
from latentvla_ros.core.types import CameraImage, Trajectory
from latentvla_ros.ros import conversions as conv


# ----------------------------------------------------------------- trajectory message
def _poses(xs, ys, yaws):
    return np.stack([np.asarray(xs, float), np.asarray(ys, float), np.asarray(yaws, float)], axis=1)


def test_trajectory_message_kinematics_by_hand():
    # straight along x with segment lengths 1, 2, 3, 4 m at 0.5 s: speeds 2, 4, 6, 8 m/s;
    # from an initial 0 m/s every step adds 2 m/s in 0.5 s: 4 m/s^2 each;
    # headings 0, 0.1, 0.3, 0.6 rad after 0 at the ego: changes 0, .1, .2, .3 per 0.5 s.
    traj = Trajectory(poses=_poses([1, 3, 6, 10], [0, 0, 0, 0], [0.0, 0.1, 0.3, 0.6]), interval_s=0.5,
                      stamp_ns=7_000_000_123, model_id="m")
    msg = conv.trajectory_to_msg(traj, "base_link")
    got = [(p.longitudinal_velocity_mps, p.acceleration_mps2, p.heading_rate_rps) for p in msg.points]
    np.testing.assert_allclose(got, [(2, 4, 0.0), (4, 4, 0.2), (6, 4, 0.4), (8, 4, 0.6)], atol=1e-6)
    times = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in msg.points]
    np.testing.assert_allclose(times, [0.5, 1.0, 1.5, 2.0])
    assert msg.header.frame_id == "base_link"
    assert conv.stamp_to_ns(msg.header.stamp) == 7_000_000_123


def test_trajectory_message_acceleration_from_initial_speed_and_braking():
    # initial 6 m/s, segments 2.5, 2, 1.5, 1 m at 0.5 s: speeds 5, 4, 3, 2 -> -2 m/s^2 each
    traj = Trajectory(poses=_poses([2.5, 4.5, 6, 7], [0] * 4, [0] * 4), interval_s=0.5)
    msg = conv.trajectory_to_msg(traj, "base_link", initial_speed=6.0)
    np.testing.assert_allclose([p.longitudinal_velocity_mps for p in msg.points], [5, 4, 3, 2], atol=1e-6)
    np.testing.assert_allclose([p.acceleration_mps2 for p in msg.points], [-2, -2, -2, -2], atol=1e-6)


def test_trajectory_message_speed_uses_both_axes_and_unwrapped_heading():
    # a 3-4-5 segment in 0.25 s is 20 m/s; heading 3.0 -> -3.0 is +0.2832 rad (through pi), not -6 rad
    traj = Trajectory(poses=_poses([3, 3], [4, 4], [3.0, -3.0]), interval_s=0.25)
    speeds, acc, dyaw = conv.trajectory_kinematics(traj, initial_speed=10.0)
    np.testing.assert_allclose(speeds, [20.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(acc, [40.0, -80.0], atol=1e-9)
    np.testing.assert_allclose(dyaw, [3.0 / 0.25, (2 * math.pi - 6.0) / 0.25], atol=1e-9)


@pytest.mark.parametrize("interval", [0.1, 0.25, 0.5, 1.5])
def test_trajectory_message_round_trip_keeps_interval_and_poses(interval):
    poses = _poses([1.0, 2.5, 4.5, 7.0], [0.0, 0.2, -0.4, 0.8], [0.05, -0.1, 0.2, 0.4])
    traj = Trajectory(poses=poses, interval_s=interval, stamp_ns=42, is_fallback=True, fallback_reason="r",
                      model_id="id")
    back = conv.msg_to_trajectory(conv.trajectory_to_msg(traj, "base_link"))
    assert back.interval_s == pytest.approx(interval, abs=1e-9)
    np.testing.assert_allclose(back.poses, poses, atol=1e-9)
    assert (back.stamp_ns, back.is_fallback, back.fallback_reason, back.model_id) == (42, True, "r", "id")


def test_quaternion_yaw_round_trip_by_hand():
    q = conv.quaternion_from_yaw(math.pi / 2)  # half angle 45 deg
    assert (q.x, q.y) == (0.0, 0.0)
    assert q.z == pytest.approx(math.sqrt(0.5)) and q.w == pytest.approx(math.sqrt(0.5))
    for yaw in (-3.0, -1.0, 0.0, 0.7, 3.1):
        assert conv.yaw_from_quaternion(conv.quaternion_from_yaw(yaw)) == pytest.approx(yaw, abs=1e-12)


# ----------------------------------------------------------------- fallback
def test_fallback_straight_endpoint_by_hand():
    # 10 m/s, 2 m/s^2: s(t) = 10 t - t^2; at 0.5 s 4.75 m, at 4 s 40 - 16 = 24 m; stops only at 5 s
    traj = comfortable_stop(10.0, 0.0, deceleration_mps2=2.0, num_poses=8, interval_s=0.5, stamp_ns=9, reason="x")
    np.testing.assert_allclose(traj.poses[:, 0], [4.75, 9.0, 12.75, 16.0, 18.75, 21.0, 22.75, 24.0])
    np.testing.assert_allclose(traj.poses[:, 1:], 0.0)
    assert traj.is_fallback and traj.fallback_reason == "x" and traj.stamp_ns == 9 and traj.interval_s == 0.5
    assert traj.model_id == "fallback:comfortable_stop"
    assert comfortable_stop(1.0).fallback_reason == "fallback"


def test_fallback_stops_and_stays():
    # 4 m/s at 2 m/s^2 stops after 2 s at 4 * 2 - 2^2 = 4 m and stays there
    traj = comfortable_stop(4.0, 0.0, deceleration_mps2=2.0, num_poses=6, interval_s=0.5)
    np.testing.assert_allclose(traj.poses[:, 0], [1.75, 3.0, 3.75, 4.0, 4.0, 4.0])


def _arc_reference(v0, kappa, decel, t):
    """Independent reference: integrate (cos, sin) of the heading along the arc numerically."""
    t_stop = v0 / decel
    s_end = v0 * min(t, t_stop) - 0.5 * decel * min(t, t_stop) ** 2
    s = np.linspace(0.0, s_end, 200_001)
    h = kappa * s
    return np.trapezoid(np.cos(h), s), np.trapezoid(np.sin(h), s), kappa * s_end


@pytest.mark.parametrize("speed,yaw_rate", [(10.0, 1.0), (10.0, -0.5), (6.0, 0.3)])
def test_fallback_curved_endpoint_matches_integrated_arc(speed, yaw_rate):
    # curvature = yaw_rate / speed; e.g. 10 m/s, 1 rad/s: 0.1 1/m; after 4 s s = 24 m, heading 2.4 rad,
    # x = sin(2.4) / 0.1 = 6.755, y = (1 - cos 2.4) / 0.1 = 17.374
    traj = comfortable_stop(speed, yaw_rate, deceleration_mps2=2.0, num_poses=8, interval_s=0.5)
    x, y, h = _arc_reference(speed, yaw_rate / speed, 2.0, 4.0)
    np.testing.assert_allclose(traj.poses[-1], [x, y, h], atol=1e-6)
    if (speed, yaw_rate) == (10.0, 1.0):
        np.testing.assert_allclose(traj.poses[-1], [6.7546, 17.3739, 2.4], atol=1e-4)


def test_fallback_curvature_is_clipped_and_needs_speed():
    # 10 m/s at 5 rad/s would be 0.5 1/m: clipped to 0.2 (and -0.2 to the right)
    for sign in (1.0, -1.0):
        traj = comfortable_stop(10.0, sign * 5.0, deceleration_mps2=2.0, num_poses=8, interval_s=0.5)
        x, y, h = _arc_reference(10.0, sign * 0.2, 2.0, 4.0)
        np.testing.assert_allclose(traj.poses[-1], [x, y, h], atol=1e-6)
    # at 0.5 m/s (not above) the yaw rate is ignored: a straight stop
    slow = comfortable_stop(0.5, 0.4, deceleration_mps2=2.0)
    np.testing.assert_allclose(slow.poses[:, 1:], 0.0)
    np.testing.assert_allclose(slow.poses[-1, 0], 0.0625)  # 0.5^2 / (2 * 2)
    # just above 0.5 m/s the curvature is used
    assert comfortable_stop(0.6, 0.06, deceleration_mps2=0.1).poses[-1, 2] > 0


def test_fallback_defaults_and_interval():
    # defaults: straight, 2 m/s^2, 8 poses at 0.5 s, stamp 0; 10 m/s -> 24 m after 4 s
    traj = comfortable_stop(10.0)
    np.testing.assert_allclose(traj.poses[-1], [24.0, 0.0, 0.0])
    assert traj.poses.shape == (8, 3) and traj.stamp_ns == 0 and traj.interval_s == 0.5
    # another interval is kept on the trajectory: 4 poses at 0.25 s from 8 m/s: s(1 s) = 8 - 1 = 7 m
    short = comfortable_stop(8.0, num_poses=4, interval_s=0.25)
    assert short.interval_s == 0.25
    np.testing.assert_allclose(short.poses[:, 0], [1.9375, 3.75, 5.4375, 7.0])


def test_fallback_straight_below_the_curvature_threshold_is_exactly_straight():
    # 1 m/s at 1e-6 rad/s: curvature exactly 1e-6, not above the threshold -> the straight branch: y exactly 0
    # (the circle would give y = (1 - cos(k s)) / k, about 8e-6 m at s = 3.92 m)
    traj = comfortable_stop(1.0, 1e-6, deceleration_mps2=0.01)
    assert np.all(traj.poses[:, 1] == 0.0)
    np.testing.assert_allclose(traj.poses[:, 0], 0.5 * np.arange(1, 9) - 0.005 * (0.5 * np.arange(1, 9)) ** 2)
    bent = comfortable_stop(1.0, 2e-6, deceleration_mps2=0.01)
    assert np.all(bent.poses[:, 1] > 0.0)


@pytest.mark.parametrize("speed,yaw_rate,decel", [
    (float("nan"), 0.0, 2.0), (-3.0, 0.0, 2.0), (float("inf"), 0.0, 2.0), (0.0, 1.0, 2.0), (5.0, 0.0, 0.0),
])
def test_fallback_degenerate_inputs_stand_still(speed, yaw_rate, decel):
    traj = comfortable_stop(speed, yaw_rate, deceleration_mps2=decel)
    assert traj.poses.shape == (8, 3)
    np.testing.assert_array_equal(traj.poses, 0.0)


def test_fallback_non_finite_yaw_rate_goes_straight():
    traj = comfortable_stop(10.0, float("nan"), deceleration_mps2=2.0, num_poses=8, interval_s=0.5)
    np.testing.assert_allclose(traj.poses[-1], [24.0, 0.0, 0.0])


# ----------------------------------------------------------------- LiDAR BEV histogram
def test_lidar_bev_pixels_by_hand():
    # grid 8 over +-4 m: 1 pixel per m. Row = floor(4 - x), column = floor(4 - y).
    pts = np.array([
        [3.5, 3.5, 1.0],     # far front, far left: (0, 0)
        [-3.5, -3.5, 1.0],   # far back, far right: (7, 7)
        [3.5, -3.5, 1.0],    # front right: (0, 7)
        [0.5, 2.5, 1.0],     # (3, 1)
        [0.5, 2.5, 1.0],     # same pixel again: 2 of max 4
        [1.0, 0.0, 0.1],     # below the height threshold: ignored
        [1.0, 0.0, 0.2],     # exactly at the threshold: ignored (strictly above counts)
        [4.0, 0.0, 1.0],     # on the range edge: ignored
        [0.0, -4.0, 1.0],    # on the range edge: ignored
        [np.nan, 0.0, 1.0],  # non-finite: ignored
    ])
    hist = lidar_bev_histogram(pts, grid_size=8, range_m=4.0, min_height_m=0.2, max_points_per_pixel=4)
    expected = np.zeros((1, 8, 8), np.float32)
    expected[0, 0, 0] = expected[0, 7, 7] = expected[0, 0, 7] = 0.25
    expected[0, 3, 1] = 0.5
    assert hist.dtype == np.float32
    np.testing.assert_array_equal(hist, expected)


def test_lidar_bev_cap_and_extra_columns():
    # 7 points in one pixel with a cap of 5 -> 1.0; intensity column is ignored; 2 points / 5 -> 0.4
    pts = np.array([[0.3, 0.3, 1.0, 9.0]] * 7 + [[-0.3, -0.3, 0.5, 1.0]] * 2)
    hist = lidar_bev_histogram(pts, grid_size=4, range_m=2.0, min_height_m=0.2, max_points_per_pixel=5)
    # 1 pixel per m: (0.3, 0.3) -> row floor(1.7) = 1, col 1; (-0.3, -0.3) -> row floor(2.3) = 2, col 2
    expected = np.zeros((1, 4, 4), np.float32)
    expected[0, 1, 1] = 1.0
    expected[0, 2, 2] = 0.4
    np.testing.assert_allclose(hist, expected, atol=1e-7)
    assert lidar_bev_histogram(np.zeros((0, 3)), grid_size=4).sum() == 0.0


def test_lidar_bev_resolution_scales_with_range():
    # grid 4 over +-8 m is 0.25 px/m: (7, -7) -> row floor(0.25) = 0, col floor(3.75) = 3
    hist = lidar_bev_histogram(np.array([[7.0, -7.0, 1.0]]), grid_size=4, range_m=8.0, max_points_per_pixel=1)
    assert np.argwhere(hist[0]).tolist() == [[0, 3]]


def test_lidar_bev_defaults_transfuser_grid():
    # defaults: 256 x 256 over +-32 m (4 px/m), cap 5. (31.9, 31.9) -> (0, 0); (0.1, -0.1) -> row
    # floor(31.9 * 4) = 127, col floor(32.1 * 4) = 128; 4 points there -> 0.8; 6 points -> capped at 1.0
    pts = np.array([[31.9, 31.9, 1.0]] * 6 + [[0.1, -0.1, 1.0]] * 4 + [[-31.9, -31.9, 0.5]])
    hist = lidar_bev_histogram(pts)
    assert hist.shape == (1, 256, 256)
    assert {tuple(ij): float(hist[0][tuple(ij)]) for ij in np.argwhere(hist[0])} == {
        (0, 0): 1.0, (127, 128): pytest.approx(0.8), (255, 255): pytest.approx(0.2)}


def test_lidar_bev_points_just_inside_the_far_edges_land_in_the_last_pixel():
    # x, y one ulp inside -range: (range - x) * px/m rounds to exactly grid_size; such points belong in the
    # last row / column, not outside the image
    r = 4.0
    edge = np.nextafter(-r, 0.0)
    pts = np.array([[edge, 0.5, 1.0], [0.5, edge, 1.0], [edge, edge, 1.0]])
    hist = lidar_bev_histogram(pts, grid_size=8, range_m=r, max_points_per_pixel=1)
    assert sorted(map(tuple, np.argwhere(hist[0]).tolist())) == [(3, 7), (7, 3), (7, 7)]


def test_lidar_bev_columns_use_the_resolution_too():
    # 0.25 px/m (grid 4 over +-8 m): y = 7 -> col floor(1 * 0.25) = 0, y = -3 -> col floor(11 * 0.25) = 2
    pts = np.array([[0.5, 7.0, 1.0], [0.5, -3.0, 1.0], [0.5, 3.0, 1.0]])
    hist = lidar_bev_histogram(pts, grid_size=4, range_m=8.0, max_points_per_pixel=1)
    # x = 0.5 -> row floor(7.5 * 0.25) = 1; y = 3 -> col floor(5 * 0.25) = 1
    assert sorted(map(tuple, np.argwhere(hist[0]).tolist())) == [(1, 0), (1, 1), (1, 2)]


def test_lidar_bev_ignores_the_intensity_column():
    # a non-finite intensity does not drop a point: only x, y, z are read
    pts = np.array([[0.5, 0.5, 1.0, np.nan], [0.5, 0.5, 1.0, np.inf]])
    hist = lidar_bev_histogram(pts, grid_size=4, range_m=2.0, max_points_per_pixel=2)
    assert hist[0, 1, 1] == 1.0


@pytest.mark.parametrize("bad", [np.zeros((3, 2)), np.zeros(6)])
def test_lidar_bev_rejects_bad_shapes(bad):
    with pytest.raises(FeatureError, match=r"lidar points must be \(N, >=3\)"):
        lidar_bev_histogram(bad)


# ----------------------------------------------------------------- camera stitching
def test_stitch_cameras_order_scale_and_layout():
    left = np.full((2, 3, 3), 255, np.uint8)
    right = np.zeros((2, 3, 3), np.uint8)
    right[..., 2] = 51  # blue 51 / 255 = 0.2
    out = stitch_cameras([CameraImage(image=left, name="l"), CameraImage(image=right, name="r")], (2, 6))
    assert out.shape == (3, 2, 6) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, :, :3], 1.0)  # left camera on the left, all channels
    np.testing.assert_allclose(out[:2, :, 3:], 0.0)
    np.testing.assert_allclose(out[2, :, 3:], 0.2, atol=1e-7)  # channel-first: blue is channel 2


def test_stitch_cameras_resizes_other_heights_and_output():
    # a 4x2 camera beside a 2x2 one is scaled to 2x1 first: stitched 2x3, then resized to 1x3
    a = np.full((2, 2, 3), 100, np.uint8)
    b = np.full((4, 2, 3), 200, np.uint8)
    out = stitch_cameras([CameraImage(image=a, name="a"), CameraImage(image=b, name="b")], (2, 3))
    np.testing.assert_allclose(out[:, :, :2], 100 / 255, atol=1e-6)
    np.testing.assert_allclose(out[:, :, 2], 200 / 255, atol=1e-6)
    small = stitch_cameras([CameraImage(image=a, name="a")], (1, 1))
    np.testing.assert_allclose(small, np.full((3, 1, 1), 100 / 255), atol=1e-6)


def test_stitch_cameras_without_resizing_is_exact():
    # a 2 x 3 image already at the output size comes out exactly, channel first, / 255
    img = np.arange(18, dtype=np.uint8).reshape(2, 3, 3) * 10
    out = stitch_cameras([CameraImage(image=img, name="c")], (2, 3))
    np.testing.assert_array_equal(out, img.transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255))


def test_stitched_cameras_once_per_frame_read_only():
    # the BEV backbone and the student stitch the same frame's images once: the second call gets the first
    # one's (read-only) array; other images or another size are stitched anew, equal to stitch_cameras
    img = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    cams = [CameraImage(image=img, name="c")]
    first = stitched_cameras(cams, (2, 2))
    assert stitched_cameras(list(cams), (2, 2)) is first and not first.flags.writeable
    np.testing.assert_array_equal(first, stitch_cameras(cams, (2, 2)))
    with pytest.raises(ValueError):
        first[0, 0, 0] = 1.0
    assert stitched_cameras(cams, (4, 4)) is not first  # another size
    copy = [CameraImage(image=img.copy(), name="c")]  # equal pixels, another image: not the same frame
    again = stitched_cameras(copy, (2, 2))
    assert again is not first
    np.testing.assert_array_equal(again, first)


def test_stitch_cameras_resize_averages_areas():
    # 4x downscale by area: columns (0, 0, 0, 200) average to 50 (bilinear would sample 0)
    img = np.zeros((4, 8, 3), np.uint8)
    img[:, 3] = 200
    img[:, 7] = 200
    out = stitch_cameras([CameraImage(image=img, name="c")], (1, 2))
    np.testing.assert_allclose(out, 50 / 255, atol=1e-6)
    # the same for a camera of another height scaled to the first one's: 8x4 -> 2x1 next to a 2x1
    tall = np.zeros((8, 4, 3), np.uint8)
    tall[:, 3] = 200
    first = np.full((2, 1, 3), 255, np.uint8)
    out = stitch_cameras([CameraImage(image=first, name="a"), CameraImage(image=tall, name="b")], (2, 2))
    np.testing.assert_allclose(out[:, :, 1], 50 / 255, atol=1e-6)
    np.testing.assert_allclose(out[:, :, 0], 1.0)


@pytest.mark.parametrize("image", [np.zeros((2, 2), np.uint8), np.zeros((2, 2, 4), np.uint8),
                                   np.zeros((2, 2, 3), np.float32)])
def test_stitch_cameras_rejects_bad_images(image):
    with pytest.raises(FeatureError, match="camera 'c'"):
        stitch_cameras([CameraImage(image=image, name="c")], (2, 2))
    with pytest.raises(FeatureError, match="^no camera images$"):
        stitch_cameras([], (2, 2))


# ----------------------------------------------------------------- ego motion from odometry
def test_acceleration_estimator_straight_by_hand():
    est = AccelerationEstimator(tau_s=0.0)  # no filter: raw finite difference
    np.testing.assert_array_equal(est.update(0, [10.0, 0.0], 0.0), [0.0, 0.0])  # first sample
    # 10 -> 11 m/s in 0.1 s: 10 m/s^2
    np.testing.assert_allclose(est.update(100_000_000, [11.0, 0.0], 0.0), [10.0, 0.0], atol=1e-5)
    # lateral 0 -> 0.5 m/s in 0.5 s: 1 m/s^2 lateral, no longitudinal change
    np.testing.assert_allclose(est.update(600_000_000, [11.0, 0.5], 0.0), [0.0, 1.0], atol=1e-5)
    assert est.resets == 0


def test_acceleration_estimator_low_pass_by_hand():
    # tau 0.2 s, dt 0.2 s: alpha = 0.2 / 0.4 = 0.5. Raw 5 m/s^2 each step: 2.5, then 2.5 + 0.5 * 2.5 = 3.75
    est = AccelerationEstimator(tau_s=0.2)
    est.update(0, [0.0, 0.0], 0.0)
    np.testing.assert_allclose(est.update(200_000_000, [1.0, 0.0], 0.0), [2.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(est.update(400_000_000, [2.0, 0.0], 0.0), [3.75, 0.0], atol=1e-6)
    # the same stamp again changes nothing
    np.testing.assert_allclose(est.update(400_000_000, [9.0, 0.0], 0.0), [3.75, 0.0], atol=1e-6)


def test_acceleration_estimator_constant_speed_circle_is_centripetal():
    # constant 10 m/s with yaw rate 0.5 rad/s: the ego-frame velocity stays (10, 0) but the car
    # accelerates towards the centre: v * omega = 5 m/s^2 to the left (+y); small dt -> sin(w dt)/dt ~ w
    est = AccelerationEstimator(tau_s=0.0)
    est.update(0, [10.0, 0.0], 0.5)
    acc = est.update(10_000_000, [10.0, 0.0], 0.5)
    dyaw = 0.5 * 0.01
    np.testing.assert_allclose(acc, [10 * (1 - math.cos(dyaw)) / 0.01, 10 * math.sin(dyaw) / 0.01], rtol=1e-5)
    assert acc[1] == pytest.approx(5.0, rel=1e-3)
    # turning right: towards -y
    est = AccelerationEstimator(tau_s=0.0)
    est.update(0, [10.0, 0.0], -0.5)
    assert est.update(10_000_000, [10.0, 0.0], -0.5)[1] == pytest.approx(-5.0, rel=1e-3)


def test_acceleration_estimator_rotation_uses_previous_lateral_velocity():
    # previous (0, 2) m/s, yaw 90 deg in 1 s to the left: expressed in the new frame it is (2, 0); now (2, 0)
    est = AccelerationEstimator(tau_s=0.0, max_gap_s=2.0)
    est.update(0, [0.0, 2.0], math.pi / 2)
    np.testing.assert_allclose(est.update(1_000_000_000, [2.0, 0.0], math.pi / 2), [0.0, 0.0], atol=1e-6)


def test_acceleration_estimator_resets_on_jumps_and_gaps():
    est = AccelerationEstimator(tau_s=0.0, max_gap_s=1.0)
    est.update(2_000_000_000, [5.0, 0.0], 0.0)
    np.testing.assert_allclose(est.update(2_100_000_000, [6.0, 0.0], 0.0), [10.0, 0.0], atol=1e-5)
    np.testing.assert_array_equal(est.update(1_000_000_000, [7.0, 0.0], 0.0), [0.0, 0.0])  # backwards
    assert est.resets == 1
    # a gap of exactly max_gap_s is still used; one beyond resets
    np.testing.assert_allclose(est.update(2_000_000_000, [8.0, 0.0], 0.0), [1.0, 0.0], atol=1e-5)
    np.testing.assert_array_equal(est.update(3_000_000_001, [20.0, 0.0], 0.0), [0.0, 0.0])
    assert est.resets == 2
    # after the reset it differentiates from the new sample
    np.testing.assert_allclose(est.update(3_100_000_001, [21.0, 0.0], 0.0), [10.0, 0.0], atol=1e-4)
    est.reset()
    assert est.resets == 0
    np.testing.assert_array_equal(est.update(5, [1.0, 0.0], 0.0), [0.0, 0.0])


def test_odometry_velocity_reads_body_twist():
    from nav_msgs.msg import Odometry

    msg = Odometry()
    msg.twist.twist.linear.x, msg.twist.twist.linear.y, msg.twist.twist.angular.z = 7.5, -0.25, 0.125
    msg.pose.pose.orientation.w = 1.0
    vel, yaw_rate = conv.odometry_velocity(msg)
    np.testing.assert_array_equal(vel, np.array([7.5, -0.25], np.float32))
    assert yaw_rate == 0.125
    msg.pose.pose.position.y = float("inf")
    with pytest.raises(conv.ConversionError, match="NaN"):
        conv.odometry_velocity(msg)


# ----------------------------------------------------------------- SensorFrame message -> core
def _sensor_frame_msg(command=2, k=None):
    from geometry_msgs.msg import Vector3
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo

    from latentvla_ros.msg import SensorFrame

    left = np.zeros((2, 3, 3), np.uint8)
    left[..., 0] = 7
    right = np.full((2, 3, 3), 9, np.uint8)
    msg = SensorFrame(header=conv.make_header(5_000_000_017, "base_link"), driving_command=command,
                      ego_acceleration=Vector3(x=0.5, y=-0.25, z=9.0))
    msg.images = [conv.numpy_to_image(left, 1, "cam_left"), conv.numpy_to_image(right, 1, "")]
    info = CameraInfo()
    info.k = k if k is not None else [100.0, 0.0, 1.5, 0.0, 100.0, 1.0, 0.0, 0.0, 1.0]
    msg.camera_infos = [info]  # only the first camera has one
    msg.lidar = conv.xyzi_to_pointcloud2(np.array([[1.0, 2.0, 3.0, 0.5]], np.float32), 1, "lidar")
    odom = Odometry()
    odom.twist.twist.linear.x, odom.twist.twist.linear.y, odom.twist.twist.angular.z = 12.0, 0.5, -0.1
    odom.pose.pose.orientation.w = 1.0
    msg.odometry = odom
    return msg


def test_sensor_frame_message_to_core_field_by_field():
    from latentvla_ros.core.types import DrivingCommand

    frame = conv.sensor_frame_to_core(_sensor_frame_msg())
    assert frame.stamp_ns == 5_000_000_017
    assert [c.name for c in frame.cameras] == ["cam_left", "camera1"]  # unnamed camera: by index
    assert frame.cameras[0].image[0, 0].tolist() == [7, 0, 0] and frame.cameras[1].image[0, 0].tolist() == [9, 9, 9]
    np.testing.assert_array_equal(frame.cameras[0].intrinsics, [[100, 0, 1.5], [0, 100, 1], [0, 0, 1]])
    assert frame.cameras[1].intrinsics is None
    np.testing.assert_array_equal(frame.lidar_points, [[1.0, 2.0, 3.0, 0.5]])
    np.testing.assert_array_equal(frame.ego.velocity, np.array([12.0, 0.5], np.float32))
    assert frame.ego.yaw_rate == pytest.approx(-0.1)
    np.testing.assert_array_equal(frame.ego.acceleration, np.array([0.5, -0.25], np.float32))  # z is dropped
    assert frame.ego.command == DrivingCommand(2)


@pytest.mark.parametrize("command,expected", [(0, 0), (3, 3), (4, 3), (255, 3)])
def test_sensor_frame_command_out_of_range_is_unknown(command, expected):
    from latentvla_ros.core.types import DrivingCommand

    assert conv.sensor_frame_to_core(_sensor_frame_msg(command=command)).ego.command == DrivingCommand(expected)
    assert int(DrivingCommand.UNKNOWN) == 3


def test_sensor_frame_message_rejections():
    msg = _sensor_frame_msg()
    msg.images = []
    with pytest.raises(conv.ConversionError, match="without images"):
        conv.sensor_frame_to_core(msg)
    msg = _sensor_frame_msg()
    msg.ego_acceleration.y = float("nan")
    with pytest.raises(conv.ConversionError, match="acceleration"):
        conv.sensor_frame_to_core(msg)
    msg = _sensor_frame_msg()
    msg.odometry.twist.twist.angular.z = float("inf")
    with pytest.raises(conv.ConversionError):
        conv.sensor_frame_to_core(msg)


@pytest.mark.parametrize("k", [[float("nan")] + [0.0] * 8, [1.0, 0, 0, 0, 1.0, 0, 0, 0, 0.0]])
def test_camera_intrinsics_unusable_give_none(k):
    msg = _sensor_frame_msg(k=k)
    assert conv.camera_info_intrinsics(msg.camera_infos[0]) is None
    assert conv.camera_info_intrinsics(None) is None


def test_trajectory_markers_by_hand():
    from visualization_msgs.msg import Marker

    from latentvla_ros.core.types import LatentPlan

    poses = _poses([1.0, 2.0], [0.5, -0.5], [0.0, 0.1])
    model = conv.trajectory_markers(Trajectory(poses=poses, stamp_ns=3_000_000_001), "base_link", namespace="ns")
    spheres, text = model.markers
    assert (spheres.ns, spheres.id, spheres.type, spheres.action) == ("ns/poses", 0, Marker.SPHERE_LIST, Marker.ADD)
    assert (text.ns, text.id, text.type, text.action) == ("ns/state", 1, Marker.TEXT_VIEW_FACING, Marker.ADD)
    assert [(p.x, p.y, p.z) for p in spheres.points] == [(1.0, 0.5, 0.2), (2.0, -0.5, 0.2)]
    assert (spheres.scale.x, spheres.scale.y, spheres.scale.z) == (0.6, 0.6, 0.6) and text.scale.z == 1.0
    assert spheres.pose.orientation.w == 1.0 and text.pose.orientation.w == 1.0 and text.pose.position.z == 3.0
    for m in (spheres, text):
        assert m.header.frame_id == "base_link" and conv.stamp_to_ns(m.header.stamp) == 3_000_000_001
    green = (spheres.color.r, spheres.color.g, spheres.color.b, spheres.color.a)
    assert green == pytest.approx((0.1, 0.8, 0.3, 1.0)) and text.color == spheres.color
    assert text.text == "model\nlatent: -"
    plan = LatentPlan(stamp_ns=0, token_ids=np.array([3, 14]), token_probabilities=np.zeros((2, 16), np.float32),
                      action_embeddings=np.zeros((2, 4), np.float32), visual_embeddings=np.zeros((0, 4), np.float32))
    fb = conv.trajectory_markers(Trajectory(poses=poses, is_fallback=True, fallback_reason="timeout"), "map", plan)
    red = fb.markers[0].color
    assert (red.r, red.g, red.b, red.a) == pytest.approx((0.95, 0.2, 0.2, 1.0))
    assert fb.markers[1].text == "FALLBACK: timeout\nlatent: 3 14"
    assert fb.markers[0].ns == "latentvla/poses"


# ----------------------------------------------------------------- more message conversions, field by field
@pytest.mark.parametrize("field", ["linear.x", "linear.y", "angular.z", "position.x", "position.y",
                                   "orientation.z", "orientation.w"])
def test_odometry_with_any_non_finite_checked_value_is_rejected(field):
    from nav_msgs.msg import Odometry

    msg = Odometry()
    msg.pose.pose.orientation.w = 1.0
    part, name = field.split(".")
    owner = {"linear": msg.twist.twist.linear, "angular": msg.twist.twist.angular,
             "position": msg.pose.pose.position, "orientation": msg.pose.pose.orientation}[part]
    setattr(owner, name, float("nan"))
    with pytest.raises(conv.ConversionError, match="odometry contains NaN/inf"):
        conv.odometry_velocity(msg)


def test_image_message_fields():
    img = np.arange(2 * 5 * 3, dtype=np.uint8).reshape(2, 5, 3)
    msg = conv.numpy_to_image(img, 3_000_000_004, "cam")
    assert (msg.height, msg.width, msg.step, msg.encoding, msg.is_bigendian) == (2, 5, 15, "rgb8", 0)
    assert msg.header.frame_id == "cam" and conv.stamp_to_ns(msg.header.stamp) == 3_000_000_004
    assert bytes(msg.data) == img.tobytes()
    for bad in (img[..., :2], img.astype(np.float32), img[..., 0]):
        with pytest.raises(conv.ConversionError, match="expected HxWx3 uint8"):
            conv.numpy_to_image(np.ascontiguousarray(bad), 0, "cam")
    empty = conv.numpy_to_image(np.zeros((0, 4, 3), np.uint8), 0, "cam")
    assert len(empty.data) == 0


def test_stamp_conversions_by_hand():
    t = conv.ns_to_stamp(7_123_456_789)
    assert (t.sec, t.nanosec) == (7, 123_456_789)
    assert conv.stamp_to_ns(t) == 7_123_456_789
    h = conv.make_header(1_000_000_000, "f")
    assert (h.stamp.sec, h.stamp.nanosec, h.frame_id) == (1, 0, "f")


def test_bev_message_fields_round_trip():
    from latentvla_ros.core.types import BevTokens

    tokens = (np.arange(6 * 3, dtype=np.float32) * 0.5).reshape(6, 3)
    bev = BevTokens(stamp_ns=9_000_000_001, tokens=tokens, grid_rows=2, grid_cols=3, cell_size_m=4.5,
                    origin_x_m=-12.0, origin_y_m=7.5, ego_status=np.array([1, 2, 3], np.float32), model_id="bev:x")
    msg = conv.bev_to_msg(bev, "base_link", sequence=77)
    assert (msg.num_tokens, msg.channels, msg.grid_rows, msg.grid_cols, msg.sequence) == (6, 3, 2, 3, 77)
    assert (msg.cell_size_m, msg.origin_x_m, msg.origin_y_m, msg.model_id) == (4.5, -12.0, 7.5, "bev:x")
    assert msg.header.frame_id == "base_link" and conv.stamp_to_ns(msg.header.stamp) == 9_000_000_001
    assert msg.tokens.typecode == "f" and list(msg.tokens) == tokens.reshape(-1).tolist()
    assert list(msg.ego_status) == [1.0, 2.0, 3.0]
    back = conv.msg_to_bev(msg)
    np.testing.assert_array_equal(back.tokens, tokens)
    np.testing.assert_array_equal(back.ego_status, [1.0, 2.0, 3.0])
    assert (back.stamp_ns, back.grid_rows, back.grid_cols, back.cell_size_m, back.origin_x_m, back.origin_y_m,
            back.model_id) == (9_000_000_001, 2, 3, 4.5, -12.0, 7.5, "bev:x")


@pytest.mark.parametrize("mutate,match", [
    (lambda m: setattr(m, "num_tokens", 0), r"BEV tokens: 18 values for 0 x 3"),
    (lambda m: setattr(m, "channels", 0), r"BEV tokens: 18 values for 6 x 0"),
    (lambda m: setattr(m, "channels", 2), r"BEV tokens: 18 values for 6 x 2"),
    (lambda m: setattr(m, "grid_cols", 2), r"BEV tokens: 6 tokens for a 2 x 2 grid"),
    (lambda m: setattr(m, "grid_rows", 3), r"BEV tokens: 6 tokens for a 3 x 3 grid"),
    (lambda m: m.ego_status.__setitem__(1, float("inf")), "NaN/inf"),
    (lambda m: m.tokens.__setitem__(17, float("nan")), "NaN/inf"),
])
def test_bev_message_rejections(mutate, match):
    from latentvla_ros.core.types import BevTokens

    bev = BevTokens(stamp_ns=1, tokens=np.ones((6, 3), np.float32), grid_rows=2, grid_cols=3, cell_size_m=1.0,
                    origin_x_m=0.0, origin_y_m=0.0, ego_status=np.zeros(3, np.float32))
    msg = conv.bev_to_msg(bev, "base_link")
    mutate(msg)
    with pytest.raises(conv.ConversionError, match=match):
        conv.msg_to_bev(msg)


def test_trajectory_path_by_hand():
    traj = Trajectory(poses=_poses([1.0, 2.5], [0.5, -1.0], [0.0, math.pi / 2]), stamp_ns=4_000_000_002)
    path = conv.trajectory_to_path(traj, "odom")
    assert path.header.frame_id == "odom" and conv.stamp_to_ns(path.header.stamp) == 4_000_000_002
    got = [(p.pose.position.x, p.pose.position.y, p.pose.position.z, p.pose.orientation.x, p.pose.orientation.y,
            p.pose.orientation.z, p.pose.orientation.w) for p in path.poses]
    s = math.sqrt(0.5)
    np.testing.assert_allclose(got, [(0, 0, 0, 0, 0, 0, 1), (1.0, 0.5, 0, 0, 0, 0, 1), (2.5, -1.0, 0, 0, 0, s, s)],
                               atol=1e-12)
    for p in path.poses:
        assert p.header.frame_id == "odom" and conv.stamp_to_ns(p.header.stamp) == 4_000_000_002


def _cloud(points: np.ndarray, fields, point_step: int, data: bytes, width: int, height: int = 1,
           row_step: int | None = None, bigendian: bool = False):
    from sensor_msgs.msg import PointCloud2, PointField

    msg = PointCloud2(height=height, width=width, point_step=point_step,
                      row_step=row_step if row_step is not None else point_step * width, is_bigendian=bigendian,
                      is_dense=True)
    msg.fields = [PointField(name=n, offset=o, datatype=d, count=1) for n, o, d in fields]
    msg.data = data
    return msg


_F32 = 7  # PointField.FLOAT32
XYZI = [("x", 0, _F32), ("y", 4, _F32), ("z", 8, _F32), ("intensity", 12, _F32)]


def test_pointcloud_big_endian_is_byte_swapped():
    pts = np.array([[1.5, -2.0, 3.25, 0.5], [4.0, 5.0, -6.0, 1.0]], np.float32)
    msg = _cloud(pts, XYZI, 16, pts.astype(">f4").tobytes(), 2, bigendian=True)
    np.testing.assert_array_equal(conv.pointcloud2_to_xyzi(msg), pts)


def test_pointcloud_padded_rows_and_other_layouts_are_read_by_field():
    pts = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]], np.float32)
    # 2 rows of 2 points, each row padded by 8 bytes: not the packed layout
    rows = [pts[:2].tobytes() + b"\0" * 8, pts[2:].tobytes() + b"\0" * 8]
    msg = _cloud(pts, XYZI, 16, b"".join(rows), 2, height=2, row_step=40)
    np.testing.assert_array_equal(conv.pointcloud2_to_xyzi(msg), pts)
    # x and y swapped in memory (y at offset 0): the columns still come out as x, y
    swapped = pts[:, [1, 0, 2, 3]].copy()
    msg = _cloud(pts, [("x", 4, _F32), ("y", 0, _F32), ("z", 8, _F32), ("intensity", 12, _F32)], 16,
                 swapped.tobytes(), 4)
    np.testing.assert_array_equal(conv.pointcloud2_to_xyzi(msg), pts)
    # a uint8 intensity at offset 12 (padded to 16 bytes a point): read as a number, not as float bits
    raw = np.zeros(4, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("i", "u1"), ("pad", "V3")])
    raw["x"], raw["y"], raw["z"], raw["i"] = pts[:, 0], pts[:, 1], pts[:, 2], [10, 20, 30, 40]
    msg = _cloud(pts, [("x", 0, _F32), ("y", 4, _F32), ("z", 8, _F32), ("intensity", 12, 2)], 16, raw.tobytes(), 4)
    np.testing.assert_array_equal(conv.pointcloud2_to_xyzi(msg)[:, 3], [10, 20, 30, 40])
    # a fifth field (ring) after the four: point_step 20, read by field
    ring = np.zeros(4, dtype=[("xyzi", "<f4", 4), ("ring", "<u4")])
    ring["xyzi"] = pts
    msg = _cloud(pts, XYZI + [("ring", 16, 6)], 20, ring.tobytes(), 4)
    np.testing.assert_array_equal(conv.pointcloud2_to_xyzi(msg), pts)
    # without intensity: zeros
    msg = _cloud(pts, XYZI[:3], 16, pts.tobytes(), 4)
    np.testing.assert_array_equal(conv.pointcloud2_to_xyzi(msg), np.concatenate([pts[:, :3], np.zeros((4, 1))], 1))


def test_pointcloud_packed_layout_is_a_read_only_view():
    pts = np.arange(8, dtype=np.float32).reshape(2, 4)
    msg = conv.xyzi_to_pointcloud2(pts, 1, "lidar")
    out = conv.pointcloud2_to_xyzi(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8)) and not out.flags.writeable
    # a field with count 2 is not the packed layout (read by field, a copy)
    msg.fields[3].count = 2
    out = conv.pointcloud2_to_xyzi(msg)
    np.testing.assert_array_equal(out, pts)
    assert not np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


# ----------------------------------------------------------------- exactness of the remaining conversions
def test_trajectory_message_interval_from_one_or_two_points_and_empty():
    for n, interval in ((1, 0.25), (2, 0.75)):
        traj = Trajectory(poses=_poses(np.arange(1, n + 1), np.zeros(n), np.zeros(n)), interval_s=interval)
        back = conv.msg_to_trajectory(conv.trajectory_to_msg(traj, "base_link"))
        assert back.interval_s == pytest.approx(interval), n
        assert back.poses.shape == (n, 3)
    from latentvla_ros.msg import PlannedTrajectory

    empty = conv.msg_to_trajectory(PlannedTrajectory())
    assert empty.poses.shape == (0, 3) and empty.interval_s == 0.5 and empty.poses.dtype == np.float64


def _quaternion_zyx(roll, pitch, yaw):
    cr, sr, cp, sp, cy, sy = (f(a / 2) for a in (roll, pitch, yaw) for f in (math.cos, math.sin))
    from geometry_msgs.msg import Quaternion

    return Quaternion(w=cr * cp * cy + sr * sp * sy, x=sr * cp * cy - cr * sp * sy,
                      y=cr * sp * cy + sr * cp * sy, z=cr * cp * sy - sr * sp * cy)


@pytest.mark.parametrize("roll,pitch,yaw", [(0.3, -0.2, 1.1), (-0.4, 0.25, -2.5), (0.1, 0.1, 0.0)])
def test_yaw_of_a_tilted_quaternion_is_the_heading(roll, pitch, yaw):
    # reference: the heading of the body x axis, from the rotation matrix R = Rz(yaw) Ry(pitch) Rx(roll):
    # R[0, 0] = cos(yaw) cos(pitch), R[1, 0] = sin(yaw) cos(pitch) -> atan2 gives yaw
    assert conv.yaw_from_quaternion(_quaternion_zyx(roll, pitch, yaw)) == pytest.approx(yaw, abs=1e-12)


def test_ego_vectors_are_float32():
    frame = conv.sensor_frame_to_core(_sensor_frame_msg())
    assert frame.ego.velocity.dtype == np.float32 and frame.ego.acceleration.dtype == np.float32
    from nav_msgs.msg import Odometry

    odom = Odometry()
    odom.pose.pose.orientation.w = 1.0
    assert conv.odometry_velocity(odom)[0].dtype == np.float32


def test_exact_error_messages():
    msg = _sensor_frame_msg()
    msg.images = []
    with pytest.raises(conv.ConversionError, match="^sensor frame without images$"):
        conv.sensor_frame_to_core(msg)
    msg = _sensor_frame_msg()
    msg.ego_acceleration.x = float("inf")
    with pytest.raises(conv.ConversionError, match="^ego acceleration contains NaN/inf$"):
        conv.sensor_frame_to_core(msg)
    msg = _sensor_frame_msg()
    msg.odometry.twist.twist.linear.x = float("nan")
    with pytest.raises(conv.ConversionError, match="^odometry contains NaN/inf$"):
        conv.sensor_frame_to_core(msg)
    cloud = conv.xyzi_to_pointcloud2(np.zeros((0, 4), np.float32), 1, "lidar")
    with pytest.raises(conv.ConversionError, match="^empty point cloud$"):
        conv.pointcloud2_to_xyzi(cloud)
    cloud = conv.xyzi_to_pointcloud2(np.zeros((3, 4), np.float32), 1, "lidar")
    cloud.point_step = 0
    with pytest.raises(conv.ConversionError, match="inconsistent point_step 0"):
        conv.pointcloud2_to_xyzi(cloud)


def test_pointcloud_count_zero_fields_are_still_the_packed_layout():
    pts = np.arange(8, dtype=np.float32).reshape(2, 4)
    msg = conv.xyzi_to_pointcloud2(pts, 1, "lidar")
    for f in msg.fields:
        f.count = 0  # some drivers leave count at 0 for scalars
    out = conv.pointcloud2_to_xyzi(msg)
    np.testing.assert_array_equal(out, pts)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


def test_plan_message_fields():
    from latentvla_ros.core.types import LatentPlan

    plan = LatentPlan(stamp_ns=6_000_000_003, token_ids=np.array([1, 15]), model_id="student:x",
                      token_probabilities=np.full((2, 16), 1 / 16, np.float64),
                      action_embeddings=np.ones((2, 3), np.float64), visual_embeddings=np.zeros((4, 3), np.float64))
    msg = conv.plan_to_msg(plan, "base_link")
    assert msg.header.frame_id == "base_link" and conv.stamp_to_ns(msg.header.stamp) == 6_000_000_003
    assert (msg.num_tokens, msg.codebook_size, msg.embedding_dim, msg.num_visual_tokens) == (2, 16, 3, 4)
    assert msg.model_id == "student:x" and list(msg.token_ids) == [1, 15]
    for name in ("token_probabilities", "action_embeddings", "visual_embeddings"):
        assert getattr(msg, name).typecode == "f", name
    back = conv.msg_to_plan(msg)
    assert back.model_id == "student:x" and back.stamp_ns == 6_000_000_003
    np.testing.assert_allclose(back.token_probabilities, 1 / 16)


def test_marker_scales_exact():
    poses = _poses([1.0], [0.0], [0.0])
    spheres, text = conv.trajectory_markers(Trajectory(poses=poses), "base_link").markers
    assert (text.scale.x, text.scale.y, text.scale.z) == (0.0, 0.0, 1.0)
    assert spheres.id == 0 and text.id == 1


def _plan_msg():
    from latentvla_ros.core.types import LatentPlan

    plan = LatentPlan(stamp_ns=8_000_000_005, token_ids=np.array([0, 3]), model_id="s",
                      token_probabilities=np.full((2, 4), 0.25, np.float32),
                      action_embeddings=np.arange(6, dtype=np.float32).reshape(2, 3),
                      visual_embeddings=np.ones((1, 3), np.float32))
    return conv.plan_to_msg(plan, "base_link")


def test_plan_message_back_field_by_field():
    back = conv.msg_to_plan(_plan_msg())
    assert back.stamp_ns == 8_000_000_005 and back.model_id == "s" and back.token_ids.dtype == np.int64
    assert back.token_ids.tolist() == [0, 3]
    np.testing.assert_array_equal(back.token_probabilities, np.full((2, 4), 0.25))
    np.testing.assert_array_equal(back.action_embeddings, np.arange(6).reshape(2, 3))
    np.testing.assert_array_equal(back.visual_embeddings, np.ones((1, 3)))


@pytest.mark.parametrize("mutate,match", [
    (lambda m: m.token_ids.pop(), "^latent plan: token arrays do not match num_tokens x codebook_size$"),
    (lambda m: m.token_probabilities.pop(), "^latent plan: token arrays do not match num_tokens x codebook_size$"),
    (lambda m: m.action_embeddings.pop(), "^latent plan: embedding arrays do not match their shape fields$"),
    (lambda m: m.visual_embeddings.pop(), "^latent plan: embedding arrays do not match their shape fields$"),
    (lambda m: m.token_ids.__setitem__(1, 4), "^latent plan: token id 4 outside codebook of 4$"),
    (lambda m: m.visual_embeddings.__setitem__(0, float("nan")), "^latent plan contains NaN/inf$"),
    (lambda m: m.action_embeddings.__setitem__(5, float("inf")), "^latent plan contains NaN/inf$"),
    (lambda m: m.token_probabilities.__setitem__(7, float("nan")), "^latent plan contains NaN/inf$"),
])
def test_plan_message_rejections_exact(mutate, match):
    msg = _plan_msg()
    mutate(msg)
    with pytest.raises(conv.ConversionError, match=match):
        conv.msg_to_plan(msg)
    assert conv.msg_to_plan(_plan_msg()).token_ids.tolist() == [0, 3]


def test_defaults_of_message_builders():
    from latentvla_ros.core.types import BevTokens

    bev = BevTokens(stamp_ns=1, tokens=np.ones((1, 2), np.float64), grid_rows=1, grid_cols=1, cell_size_m=1.0,
                    origin_x_m=0.0, origin_y_m=0.0, ego_status=np.zeros(2, np.float32))
    msg = conv.bev_to_msg(bev, "f")
    assert msg.sequence == 0 and msg.tokens.typecode == "f" and list(msg.tokens) == [1.0, 1.0]
    traj = Trajectory(poses=_poses([1.0], [0.0], [0.0]), interval_s=0.5)
    speeds, acc, _ = conv.trajectory_kinematics(traj)  # from standstill by default: 2 m/s in 0.5 s
    assert speeds.tolist() == [2.0] and acc.tolist() == [4.0]
    q = conv.quaternion_from_yaw(1.0)
    assert (q.x, q.y) == (0.0, 0.0)


@pytest.mark.parametrize("h,w,step,data,match", [
    (0, 2, 6, b"", "^empty image \\(zero width or height\\)$"),
    (1, 0, 0, b"", "^empty image \\(zero width or height\\)$"),
    (1, 2, 5, b"\0" * 5, "^step 5 < width 2 x 3 bytes$"),
    (2, 2, 6, b"\0" * 10, "^data has 10 bytes, expected step\\*height = 12$"),
])
def test_image_rejections_exact(h, w, step, data, match):
    from sensor_msgs.msg import Image

    msg = Image(height=h, width=w, encoding="rgb8", step=step)
    msg.data = data
    with pytest.raises(conv.ConversionError, match=match):
        conv.image_to_numpy(msg)
    ok = Image(height=1, width=2, encoding="rgb8", step=6)
    ok.data = bytes(range(6))
    assert conv.image_to_numpy(ok).tolist() == [[[0, 1, 2], [3, 4, 5]]]
