"""Geometry and Savitzky-Golay primitives of the PDM score (pure numpy)."""
from __future__ import annotations

import numpy as np
import pytest
from reference_impl import savgol_reference

from latentvla_ros.evaluation.geometry import (
    Polyline,
    box_corners,
    chain_lane_centerline,
    convex_polygon_distance,
    convex_polygons_intersect,
    ego_box,
    ego_to_world_poses,
    lanes_containing_points,
    points_in_polygon,
    points_in_union,
    world_to_ego_poses,
    wrap_angle,
)
from latentvla_ros.evaluation.pdms import savgol_filter


def test_box_corner_order_front_left_first():
    c = box_corners(0.0, 0.0, 0.0, 4.0, 2.0)
    np.testing.assert_allclose(c, [[2, 1], [-2, 1], [-2, -1], [2, -1]])
    c90 = box_corners(1.0, 2.0, np.pi / 2, 4.0, 2.0)
    np.testing.assert_allclose(c90[0], [0.0, 4.0], atol=1e-12)  # front-left points to -x after +90 deg


def test_ego_box_rear_axle_offset():
    corners, center = ego_box(0.0, 0.0, 0.0, 5.0, 2.0, rear_axle_to_center=1.5)
    np.testing.assert_allclose(center, [1.5, 0.0])
    np.testing.assert_allclose(corners[0], [4.0, 1.0])


def test_sat_intersection_cases():
    a = box_corners(0.0, 0.0, 0.0, 4.0, 2.0)
    assert convex_polygons_intersect(a, box_corners(3.0, 0.0, 0.0, 4.0, 2.0))  # overlap
    assert convex_polygons_intersect(a, box_corners(4.0, 0.0, 0.0, 4.0, 2.0))  # touching edges
    assert not convex_polygons_intersect(a, box_corners(4.01, 0.0, 0.0, 4.0, 2.0))
    # rotated box whose AABB overlaps but which is separated along a diagonal axis
    b = box_corners(3.1, 2.1, np.pi / 4, 2.0, 2.0)
    assert not convex_polygons_intersect(a, b)
    assert convex_polygons_intersect(a, box_corners(2.5, 1.5, np.pi / 4, 2.0, 2.0))
    # broadcasting: (3,) boxes vs one box
    many = box_corners(np.array([0.0, 10.0, 3.9]), 0.0, 0.0, 4.0, 2.0)
    assert convex_polygons_intersect(many, a).tolist() == [True, False, True]


def test_segment_vs_box():
    box = box_corners(5.0, 0.0, 0.0, 2.0, 2.0)
    assert convex_polygons_intersect(np.array([[4.0, -5.0], [4.0, 5.0]]), box)
    assert not convex_polygons_intersect(np.array([[3.0, -5.0], [3.0, 5.0]]), box)
    assert not convex_polygons_intersect(np.array([[0.0, 3.0], [10.0, 1.5]]), box)


def test_polygon_distance():
    a = box_corners(0.0, 0.0, 0.0, 2.0, 2.0)
    assert convex_polygon_distance(a, box_corners(5.0, 0.0, 0.0, 2.0, 2.0)) == pytest.approx(3.0)
    assert convex_polygon_distance(a, box_corners(1.5, 0.0, 0.0, 2.0, 2.0)) == 0.0
    assert convex_polygon_distance(a, box_corners(4.0, 4.0, 0.0, 2.0, 2.0)) == pytest.approx(np.hypot(2, 2))


def test_point_in_concave_polygon():
    # U shape: the notch (x in [1, 2], y > 1) is outside
    u = np.array([[0, 0], [3, 0], [3, 3], [2, 3], [2, 1], [1, 1], [1, 3], [0, 3]], dtype=float)
    pts = np.array([[0.5, 2.0], [1.5, 2.0], [2.5, 2.0], [1.5, 0.5], [4.0, 1.0], [-1.0, 1.0]])
    assert points_in_polygon(pts, u).tolist() == [True, False, True, True, False, False]
    # closed ring (first vertex repeated) gives the same answer
    assert points_in_polygon(pts, np.vstack([u, u[:1]])).tolist() == [True, False, True, True, False, False]
    two = [np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float), np.array([[5, 5], [6, 5], [6, 6], [5, 6]], float)]
    assert points_in_union(np.array([[0.5, 0.5], [5.5, 5.5], [3, 3]]), two).tolist() == [True, True, False]


def test_polyline_projection_and_offset():
    line = Polyline(np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]))
    assert line.length == pytest.approx(20.0)
    np.testing.assert_allclose(line.project(np.array([[3.0, 1.0], [11.0, 4.0], [-5.0, 0.0]])), [3.0, 14.0, 0.0])
    s, d = line.frenet(np.array([[3.0, 1.0], [11.0, 4.0]]))
    np.testing.assert_allclose(d, [1.0, -1.0])
    pose = line.interpolate(np.array([15.0]))[0]
    np.testing.assert_allclose(pose, [10.0, 5.0, np.pi / 2])
    left = line.offset(1.0)
    np.testing.assert_allclose(left.points[0], [0.0, 1.0])
    np.testing.assert_allclose(left.points[1], [9.0, 1.0], atol=1e-12)
    sub = line.substring(5.0, 15.0)
    assert sub.length == pytest.approx(10.0)


def test_lane_membership_and_route_chain():
    lanes = [
        np.array([[0.0, 0.0], [50.0, 0.0]]),
        np.array([[50.0, 0.0], [100.0, 0.0]]),
        np.array([[100.0, 4.0], [0.0, 4.0]]),
    ]
    m = lanes_containing_points(np.array([[10.0, 1.0], [10.0, 2.5], [10.0, 8.0]]), [Polyline(c) for c in lanes], 2.0)
    assert m.tolist() == [[True, False, False], [False, False, True], [False, False, False]]
    # ego heading +x near y=0.5: chain lane 0 -> lane 1 (lane 2 runs the other way)
    route = chain_lane_centerline(lanes, np.array([10.0, 0.5, 0.0]), ahead_m=80.0, behind_m=0.0)
    np.testing.assert_allclose(route, [[0, 0], [50, 0], [100, 0]])
    # heading -x near y=3 -> the opposite lane
    route = chain_lane_centerline(lanes, np.array([50.0, 3.0, np.pi]), ahead_m=10.0, behind_m=0.0)
    np.testing.assert_allclose(route, lanes[2])
    assert chain_lane_centerline([], np.zeros(3)) is None


def test_pose_frames_round_trip():
    ref = np.array([3.0, -2.0, 2.5])
    poses = np.array([[1.0, 2.0, 0.3], [-4.0, 0.5, -3.0]])
    back = world_to_ego_poses(ref, ego_to_world_poses(ref, poses))
    np.testing.assert_allclose(back[:, :2], poses[:, :2], atol=1e-12)
    np.testing.assert_allclose(wrap_angle(back[:, 2] - poses[:, 2]), 0.0, atol=1e-12)


# ----------------------------------------------------------------------------- Savitzky-Golay
_X = np.sin(0.7 * np.arange(12)) + 0.1 * np.arange(12) ** 2
# scipy.signal.savgol_filter(_X, window, poly, deriv=..., delta=...) (scipy 1.17.1)
_SCIPY = {
    (8, 2, 0, 1.0): [0.24427925731655997, 0.6538683610932978, 1.0848918283882898, 1.5373496592015363,
                     2.0177943020574944, 2.4673610955219796, 3.3791941791107147, 4.8888229563441925,
                     5.769047716424061, 7.8598649145081785, 10.391172349824801, 13.362970022373931],
    (5, 3, 2, 0.1): [-9.819767898378005, -14.969528331700987, -20.119288765023942, -15.142681347799623,
                     6.362078226838246, 34.28096550980003, 55.48329156726126, 59.99727115891464,
                     45.69990914992884, 19.31547829557377, -10.978803038470396, -41.27308437251448],
    (5, 2, 1, 0.1): [8.912825732727786, 6.900896856225389, 4.888967979722999, 3.359536590312829,
                     3.0719564008574167, 5.1021121188841025, 9.435821039008847, 14.975503390889221,
                     20.056391255373455, 23.229494929593805, 25.16104275915118, 27.092590588708585],
    (12, 2, 1, 0.1): [-4.267858133770934, -1.5410967368248056, 1.1856646601213228, 3.9124260570674507,
                      6.639187454013579, 9.365948850959708, 12.092710247905835, 14.819471644851964,
                      17.546233041798093, 20.27299443874422, 22.99975583569035, 25.72651723263648],
}


@pytest.mark.parametrize("args", list(_SCIPY))
def test_savgol_matches_recorded_scipy(args):
    w, p, d, delta = args
    np.testing.assert_allclose(savgol_filter(_X, w, p, deriv=d, delta=delta), _SCIPY[args], rtol=1e-9, atol=1e-9)


def test_savgol_exact_on_polynomials():
    t = 0.1 * np.arange(41)
    quad = 3.0 - 2.0 * t + 0.5 * t**2
    for w in (5, 15, 41):
        np.testing.assert_allclose(savgol_filter(quad, w, 2), quad, atol=1e-9)
        np.testing.assert_allclose(savgol_filter(quad, w, 2, deriv=1, delta=0.1), -2.0 + t, atol=1e-8)
    # even window (NAVSIM's window 8): edges exact, interior evaluated half a sample later (as scipy)
    out = savgol_filter(quad, 8, 2)
    np.testing.assert_allclose(out[:4], quad[:4], atol=1e-9)
    np.testing.assert_allclose(out[-4:], quad[-4:], atol=1e-9)
    t_half = t[4:-4] + 0.05
    np.testing.assert_allclose(out[4:-4], 3.0 - 2.0 * t_half + 0.5 * t_half**2, atol=1e-9)
    cubic = t**3
    np.testing.assert_allclose(savgol_filter(cubic, 5, 3, deriv=2, delta=0.1), 6.0 * t, atol=1e-7)
    # batched along the last axis
    both = np.stack([quad, 2 * quad])
    np.testing.assert_allclose(savgol_filter(both, 5, 2)[1], 2 * quad, atol=1e-9)


def test_reference_savgol_reproduces_recorded_scipy():
    # the independent reference below is itself checked against scipy's recorded output
    for (w, p, d, delta), expected in _SCIPY.items():
        np.testing.assert_allclose(savgol_reference(_X, w, p, deriv=d, delta=delta), expected, rtol=1e-9, atol=1e-9)


def test_savgol_against_independent_reference():
    # random signals, every window / order / derivative the comfort metrics use and more, batched
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 41))
    for w, p, d in [(8, 2, 0), (41, 2, 0), (41, 2, 1), (5, 2, 1), (5, 3, 2), (7, 2, 0), (8, 3, 1), (6, 1, 1),
                    (3, 0, 0), (4, 3, 4)]:
        np.testing.assert_allclose(
            savgol_filter(x, w, p, deriv=d, delta=0.1), savgol_reference(x, w, p, deriv=d, delta=0.1),
            rtol=1e-7, atol=1e-7, err_msg=str((w, p, d)),
        )
    with pytest.raises(ValueError):
        savgol_filter(x, 42, 2)
    with pytest.raises(ValueError):
        savgol_filter(x, 5, 5)


def test_fast_box_test_matches_generic_sat():
    rng = np.random.default_rng(7)
    a = box_corners(rng.uniform(-5, 5, 400), rng.uniform(-5, 5, 400), rng.uniform(-np.pi, np.pi, 400),
                    rng.uniform(0.5, 6, 400), rng.uniform(0.5, 3, 400))
    b = box_corners(rng.uniform(-5, 5, 30), rng.uniform(-5, 5, 30), rng.uniform(-np.pi, np.pi, 30),
                    rng.uniform(0.5, 6, 30), rng.uniform(0.5, 3, 30))
    from latentvla_ros.evaluation.geometry import boxes_intersect

    fast = boxes_intersect(a[:, None], b[None])
    slow = convex_polygons_intersect(a[:, None], b[None])
    assert fast.shape == (400, 30)
    assert 0.05 < fast.mean() < 0.95
    np.testing.assert_array_equal(fast, slow)
    # touching boxes and a single (unbatched) pair
    assert boxes_intersect(box_corners(0, 0, 0, 4, 2), box_corners(4, 0, 0, 4, 2))
    assert not boxes_intersect(box_corners(0, 0, 0, 4, 2), box_corners(4.01, 0, 0, 4, 2))


def test_frenet_extrapolates_past_the_ends():
    line = Polyline(np.array([[0.0, 0.0], [10.0, 0.0]]))
    s, d = line.frenet(np.array([[-3.0, 1.0], [13.0, -2.0], [5.0, 0.5]]), extrapolate=True)
    np.testing.assert_allclose(s, [-3.0, 13.0, 5.0])
    np.testing.assert_allclose(d, [1.0, -2.0, 0.5])
    s_clamped, _ = line.frenet(np.array([[-3.0, 1.0]]))
    assert s_clamped[0] == 0.0
