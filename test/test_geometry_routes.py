"""Lane matching, route chaining and polygon membership of evaluation/geometry.py pinned by
hand-computed answers (the map side of the PDM score: drivable area and the route centreline)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from latentvla_ros.evaluation.geometry import (
    box_corners,
    boxes_intersect,
    chain_lane_centerline,
    convex_polygons_intersect,
    distance_to_polygons,
    ego_box,
    ego_to_world_points,
    ego_to_world_poses,
    match_lanes,
    points_in_polygon,
    points_in_polygons,
    points_in_union,
    world_to_ego_points,
    world_to_ego_poses,
    wrap_angle,
)

STRAIGHT = [np.array([[0.0, 0.0], [50.0, 0.0]]), np.array([[50.0, 0.0], [100.0, 0.0]])]


def _branch() -> list[np.ndarray]:
    """Lane 0 ends at (50, 0) where lane 1 goes straight on and lane 2 turns left 45 deg."""
    return [*STRAIGHT, np.array([[50.0, 0.0], [60.0, 10.0], [60.0, 50.0]])]


# ----------------------------------------------------------------------------- match_lanes
def test_match_lanes_distance_and_heading_limits():
    lanes = [*STRAIGHT, np.array([[5.0, 5.0]])]  # lane 2 has one point: never matched
    assert match_lanes(lanes, np.array([[10.0, 1.0, 0.0]])) == {0: 1}
    assert match_lanes(lanes, np.array([[10.0, 3.0, 0.0]])) == {0: 1}  # exactly max_dist_m = 3
    assert match_lanes(lanes, np.array([[10.0, 3.01, 0.0]])) == {}
    assert match_lanes(lanes, np.array([[10.0, 4.0, 0.0]]), max_dist_m=4.0) == {0: 1}
    assert match_lanes(lanes, np.array([[10.0, 0.0, math.pi / 2 - 0.01]])) == {0: 1}
    assert match_lanes(lanes, np.array([[10.0, 0.0, math.pi / 2]])) == {}  # 90 deg off: not this lane
    assert match_lanes(lanes, np.array([[5.0, 5.0, 0.0]])) == {}
    # counts per lane; a pose matching nothing is not counted
    poses = np.array([[10.0, 0.0, 0.0], [20.0, 0.0, 0.0], [30.0, 0.5, 0.1], [60.0, 0.0, 0.0], [70.0, 0.0, 0.0],
                      [70.0, 9.0, 0.0]])
    assert match_lanes(lanes, poses) == {0: 3, 1: 2}


def test_match_lanes_heading_weight_trades_distance_for_heading():
    # at (51, 0.5) heading 0.3 rad: lane 1 costs 0.5 + w * 0.3, lane 2 (45 deg) costs
    # |(1, 0.5) - (0.75, 0.75)| = 0.354 + w * (pi/4 - 0.3); lane 0 (ends 1.118 m away) 1.118 + w * 0.3
    pose = np.array([[51.0, 0.5, 0.3]])
    assert match_lanes(_branch(), pose) == {1: 1}  # w = 2: 1.1 < 1.324 < 1.718
    assert match_lanes(_branch(), pose, heading_weight_m=0.5) == {2: 1}  # 0.597 < 0.65 < 1.268


# ----------------------------------------------------------------------------- chain_lane_centerline
def test_chain_ahead_distance_and_no_duplicate_join_point():
    pose = np.array([10.0, 0.0, 0.0])
    # lane 0 alone leaves 50 - 10 = 40 m ahead
    np.testing.assert_array_equal(chain_lane_centerline(STRAIGHT, pose, ahead_m=40.0, behind_m=0.0), STRAIGHT[0])
    np.testing.assert_array_equal(chain_lane_centerline(STRAIGHT, pose, ahead_m=40.1, behind_m=0.0),
                                  [[0, 0], [50, 0], [100, 0]])
    np.testing.assert_array_equal(chain_lane_centerline(STRAIGHT, pose, behind_m=0.0), [[0, 0], [50, 0], [100, 0]])


def test_chain_join_tolerance():
    lanes = [STRAIGHT[0], np.array([[51.0, 0.0], [100.0, 0.0]])]  # a 1 m gap: joined, both points kept
    pose = np.array([10.0, 0.0, 0.0])
    np.testing.assert_array_equal(chain_lane_centerline(lanes, pose, behind_m=0.0),
                                  [[0, 0], [50, 0], [51, 0], [100, 0]])
    lanes[1] = np.array([[51.01, 0.0], [100.0, 0.0]])
    np.testing.assert_array_equal(chain_lane_centerline(lanes, pose, behind_m=0.0), STRAIGHT[0])
    np.testing.assert_array_equal(chain_lane_centerline(lanes, pose, behind_m=0.0, join_tol_m=1.1),
                                  [[0, 0], [50, 0], [51.01, 0], [100, 0]])


def test_chain_backward_by_predecessors():
    pose = np.array([60.0, 0.0, 0.0])  # on lane 1, 10 m from its start
    np.testing.assert_array_equal(chain_lane_centerline(STRAIGHT, pose, ahead_m=10.0), [[0, 0], [50, 0], [100, 0]])
    np.testing.assert_array_equal(chain_lane_centerline(STRAIGHT, pose, ahead_m=10.0, behind_m=10.0), STRAIGHT[1])
    np.testing.assert_array_equal(chain_lane_centerline(STRAIGHT, pose, ahead_m=10.0, behind_m=10.1),
                                  [[0, 0], [50, 0], [100, 0]])
    # a predecessor with a gap keeps its last point; one 1.01 m away is not joined
    lanes = [np.array([[0.0, 0.0], [49.0, 0.0]]), STRAIGHT[1]]
    np.testing.assert_array_equal(chain_lane_centerline(lanes, pose, ahead_m=10.0), [[0, 0], [49, 0], [50, 0], [100, 0]])
    lanes = [np.array([[0.0, 0.0], [48.99, 0.0]]), STRAIGHT[1]]
    np.testing.assert_array_equal(chain_lane_centerline(lanes, pose, ahead_m=10.0), STRAIGHT[1])


def test_chain_predecessor_choice_straightest_or_mission():
    # two lanes end at (50, 0): lane 1 from the west (straight), lane 2 from the south-west (45 deg)
    lanes = [STRAIGHT[1], STRAIGHT[0], np.array([[30.0, -20.0], [50.0, 0.0]])]
    pose = np.array([60.0, 0.0, 0.0])
    assert chain_lane_centerline(lanes, pose, ahead_m=10.0)[0].tolist() == [0.0, 0.0]
    route = chain_lane_centerline(lanes, pose, ahead_m=10.0, mission={0: 3, 2: 1})
    np.testing.assert_array_equal(route, [[30, -20], [50, 0], [100, 0]])
    # a lane arriving at 90 deg (or more) is no predecessor
    lanes = [STRAIGHT[1], np.array([[50.0, -20.0], [50.0, 0.0]])]
    np.testing.assert_array_equal(chain_lane_centerline(lanes, pose, ahead_m=10.0), STRAIGHT[1])


def test_chain_successor_choice():
    pose = np.array([10.0, 0.0, 0.0])
    # straightest without a mission, the mission's heaviest lane with one
    assert chain_lane_centerline(_branch(), pose, behind_m=0.0)[-1].tolist() == [100.0, 0.0]
    assert chain_lane_centerline(_branch(), pose, behind_m=0.0, mission={2: 5, 1: 1})[-1].tolist() == [60.0, 50.0]
    assert chain_lane_centerline(_branch(), pose, behind_m=0.0, mission={2: 1, 1: 5})[-1].tolist() == [100.0, 0.0]
    # equally straight successors: the lower index
    lanes = [STRAIGHT[0], np.array([[50.0, 0.0], [70.0, 0.0], [100.0, 5.0]]),
             np.array([[50.0, 0.0], [70.0, 0.0], [100.0, -5.0]])]
    assert chain_lane_centerline(lanes, pose, behind_m=0.0)[-1].tolist() == [100.0, 5.0]
    # a 90 deg turn is no successor
    lanes = [STRAIGHT[0], np.array([[50.0, 0.0], [50.0, 50.0]])]
    np.testing.assert_array_equal(chain_lane_centerline(lanes, pose, behind_m=0.0), STRAIGHT[0])


def test_chain_uses_no_lane_twice():
    # a hexagonal ring of 10 m lanes (60 deg turns): once round, then it stops
    ang = np.deg2rad(np.arange(7) * 60.0)
    verts = np.stack([10.0 * np.cos(ang), 10.0 * np.sin(ang)], axis=1)
    lanes = [verts[i:i + 2] for i in range(6)]
    pose = np.array([verts[0, 0] * 0.5 + verts[1, 0] * 0.5, verts[0, 1] * 0.5 + verts[1, 1] * 0.5,
                     math.atan2(verts[1, 1] - verts[0, 1], verts[1, 0] - verts[0, 0])])
    route = chain_lane_centerline(lanes, pose)
    assert len(route) == 7
    np.testing.assert_allclose(route, verts, atol=1e-9)


def test_chain_start_lane():
    # two parallel +x lanes 0.8 m apart and one -x lane between them
    lanes = [np.array([[0.0, 0.0], [100.0, 0.0]]), np.array([[0.0, 0.8], [100.0, 0.8]]),
             np.array([[100.0, 0.4], [0.0, 0.4]])]
    np.testing.assert_array_equal(chain_lane_centerline(lanes, np.array([10.0, 0.35, 0.0])), lanes[0])
    np.testing.assert_array_equal(chain_lane_centerline(lanes, np.array([10.0, 0.45, 0.0])), lanes[1])
    np.testing.assert_array_equal(chain_lane_centerline(lanes, np.array([10.0, 0.45, math.pi])), lanes[2])
    # a mission lane within 0.5 m of the nearest is preferred, one farther is not
    np.testing.assert_array_equal(chain_lane_centerline(lanes, np.array([10.0, 0.2, 0.0]), mission={1: 1}), lanes[1])
    np.testing.assert_array_equal(chain_lane_centerline(lanes, np.array([10.0, 0.1, 0.0]), mission={1: 1}), lanes[0])
    # no lane aligned (heading +y): the nearest of all
    np.testing.assert_array_equal(chain_lane_centerline(lanes, np.array([10.0, 0.45, math.pi / 2])), lanes[2])
    # lanes with fewer than 2 points are ignored
    assert chain_lane_centerline([np.array([[0.0, 0.0]])], np.zeros(3)) is None


# ----------------------------------------------------------------------------- polygons
SQUARE_CLOSED = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0], [0.0, 0.0]])
U_SHAPE = np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 3.0], [2.0, 3.0], [2.0, 1.0], [1.0, 1.0], [1.0, 3.0], [0.0, 3.0]])


def test_points_in_polygon_by_hand():
    pts = np.array([[1.0, 1.0], [3.0, 1.0], [-1.0, 1.0], [1.0, 2.5], [1.0, -0.5]])
    assert points_in_polygon(pts, SQUARE_CLOSED).tolist() == [True, False, False, False, False]
    assert points_in_polygon(pts, SQUARE_CLOSED[:-1]).tolist() == [True, False, False, False, False]
    # concave: the notch of the U is outside, its arms and base inside
    u_pts = np.array([[0.5, 2.0], [1.5, 2.0], [2.5, 2.0], [1.5, 0.5], [4.0, 0.5], [-1.0, 0.5], [1.5, 3.5]])
    assert points_in_polygon(u_pts, U_SHAPE).tolist() == [True, False, True, True, False, False, False]
    # a closed triangle (4 rows, 3 vertices) is a polygon; a closed segment is not
    tri = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    assert points_in_polygon(np.array([[0.5, 0.5], [1.5, 1.5]]), tri).tolist() == [True, False]
    seg = np.array([[0.0, 0.0], [2.0, 2.0], [0.0, 0.0]])
    assert points_in_polygon(np.array([[1.0, 1.0]]), seg).tolist() == [False]
    assert points_in_polygon(np.zeros((2, 3, 2)) + 1.0, SQUARE_CLOSED).shape == (2, 3)


def test_points_in_polygons_shape_and_bounding_box():
    polys = [SQUARE_CLOSED, U_SHAPE + np.array([10.0, 0.0])]
    pts = np.array([[[1.0, 1.0], [10.5, 2.0]], [[11.5, 2.0], [5.0, 5.0]]])
    out = points_in_polygons(pts, polys)
    assert out.shape == (2, 2, 2)
    assert out.tolist() == [[[True, False], [False, True]], [[False, False], [False, False]]]
    assert points_in_polygons(pts, []).shape == (2, 2, 0)
    # points on the bounding box (here also the boundary) of the bottom edge: the crossing rule decides
    assert points_in_polygons(np.array([[1.0, 0.0]]), [SQUARE_CLOSED]).tolist() == [[True]]


def test_distance_to_polygons_and_union_tolerance():
    square = SQUARE_CLOSED[:-1]
    far = square + np.array([20.0, 0.0])
    pts = np.array([[5.0, 1.0], [1.0, 1.0], [1.0, 2.5]])
    np.testing.assert_allclose(distance_to_polygons(pts, [square, far]), [3.0, 1.0, 0.5])
    # polygons whose bounding box is farther than max_m are skipped: inf when all are
    np.testing.assert_allclose(distance_to_polygons(pts, [square], max_m=2.0), [np.inf, 1.0, 0.5])
    np.testing.assert_allclose(distance_to_polygons(pts, [square], max_m=3.0), [3.0, 1.0, 0.5])
    np.testing.assert_allclose(distance_to_polygons(np.array([[23.0, 1.0]]), [square, far], max_m=2.0), [1.0])
    q = np.array([[2.5, 1.0], [1.0, 1.0], [3.0, 1.0]])
    assert points_in_union(q, [square]).tolist() == [False, True, False]
    assert points_in_union(q, [square], tolerance_m=0.5).tolist() == [True, True, False]
    assert points_in_union(q, [square], tolerance_m=0.4).tolist() == [False, True, False]
    assert points_in_union(q, [square, far], tolerance_m=1.0).tolist() == [True, True, True]


@pytest.mark.parametrize("k", [0, 1])
def test_points_in_union_all_inside_needs_no_distance(k):
    pts = np.array([[1.0, 1.0], [0.5, 1.5]])[k:]
    assert points_in_union(pts, [SQUARE_CLOSED], tolerance_m=1.0).all()


# ----------------------------------------------------------------------------- boxes
def _box(x, y, heading, length, width):
    return box_corners(x, y, heading, length, width)


def test_boxes_intersect_thin_boxes_and_touching_corners():
    # 1 m long, 4 m wide boxes 3.9 m apart sideways overlap by 0.1 m (bounding radius sqrt(0.25 + 4))
    assert bool(boxes_intersect(_box(0, 0, 0, 1, 4), _box(0, 3.9, 0, 1, 4)))
    assert not bool(boxes_intersect(_box(0, 0, 0, 1, 4), _box(0, 4.1, 0, 1, 4)))
    # diamonds (squares turned 45 deg) touching corner to corner: touching counts
    assert bool(boxes_intersect(_box(0, 0, math.pi / 4, 2, 2), _box(2 * math.sqrt(2), 0, math.pi / 4, 2, 2)))
    assert not bool(boxes_intersect(_box(0, 0, math.pi / 4, 2, 2), _box(2 * math.sqrt(2) + 1e-6, 0, math.pi / 4, 2, 2)))


def test_boxes_intersect_tolerance_is_in_metres():
    a = _box(0.0, 0.0, 0.0, 2.0, 2.0)  # edges 2 m long
    assert bool(boxes_intersect(a, _box(2.0 + 0.5e-9, 0.0, 0.0, 2.0, 2.0)))  # gap 0.5e-9 m < tol 1e-9 m
    assert not bool(boxes_intersect(a, _box(2.0 + 4e-9, 0.0, 0.0, 2.0, 2.0)))
    assert bool(boxes_intersect(a, _box(0.0, 2.0 + 0.5e-9, 0.0, 2.0, 2.0)))
    # tol 0: exactly touching still intersects, from either side and either order
    for other in (_box(2.0, 0.0, 0.0, 2.0, 2.0), _box(-2.0, 0.0, 0.0, 2.0, 2.0), _box(0.0, 2.0, 0.0, 2.0, 2.0)):
        assert bool(boxes_intersect(a, other, tol=0.0)) and bool(boxes_intersect(other, a, tol=0.0))
        assert bool(convex_polygons_intersect(a, other, tol=0.0)) and bool(convex_polygons_intersect(other, a, tol=0.0))
    assert bool(convex_polygons_intersect(a, _box(2.0 + 0.5e-9, 0.0, 0.0, 2.0, 2.0)))
    assert bool(convex_polygons_intersect(_box(2.0 + 0.5e-9, 0.0, 0.0, 2.0, 2.0), a))


def test_boxes_intersect_batch_shape_when_nothing_is_near():
    a = _box(np.zeros((2, 3)), 0.0, 0.0, 2.0, 2.0)
    out = boxes_intersect(a, _box(100.0, 0.0, 0.0, 2.0, 2.0))
    assert out.shape == (2, 3) and not out.any()
    out = boxes_intersect(a, _box(np.array([[0.0], [100.0]]), 0.0, 0.0, 2.0, 2.0))
    assert out.tolist() == [[True] * 3, [False] * 3]


def test_ego_box_centre_ahead_of_the_rear_axle():
    corners, centre = ego_box(1.0, 2.0, math.pi / 3, 4.0, 2.0, rear_axle_to_center=2.0)
    np.testing.assert_allclose(centre, [2.0, 2.0 + math.sqrt(3.0)], atol=1e-12)
    np.testing.assert_allclose(corners.mean(axis=0), centre, atol=1e-12)
    _, centre = ego_box(1.0, 2.0, math.pi / 3, 4.0, 2.0)  # default: the reference point is the centre
    np.testing.assert_allclose(centre, [1.0, 2.0], atol=1e-15)


# ----------------------------------------------------------------------------- float64 throughout
def test_float32_inputs_are_computed_in_float64():
    """The module promises float64: float32 inputs give the float64 answer of the same values."""
    pose32 = np.array([1234.567, -987.654, 1.1], dtype=np.float32)
    pts32 = np.array([[12.345, -6.789], [100.1, 200.2]], dtype=np.float32)
    poses32 = np.array([[12.345, -6.789, 0.3]], dtype=np.float32)
    pose64, pts64, poses64 = pose32.astype(np.float64), pts32.astype(np.float64), poses32.astype(np.float64)
    for fn, args32, args64 in [
        (ego_to_world_points, (pose32, pts32), (pose64, pts64)),
        (world_to_ego_points, (pose32, pts32), (pose64, pts64)),
        (ego_to_world_poses, (pose32, poses32), (pose64, poses64)),
        (world_to_ego_poses, (pose32, poses32), (pose64, poses64)),
        (box_corners, tuple(pose32) + (np.float32(4.5), np.float32(1.9)), tuple(pose64) + (4.5, float(np.float32(1.9)))),
    ]:
        out = fn(*args32)
        assert out.dtype == np.float64, fn.__name__
        np.testing.assert_allclose(out, fn(*args64), rtol=1e-13, atol=1e-12, err_msg=fn.__name__)
    corners, centre = ego_box(*pose32, 4.5, 1.9, rear_axle_to_center=np.float32(1.3))
    ref_c, ref_m = ego_box(*pose64, 4.5, 1.9, rear_axle_to_center=float(np.float32(1.3)))
    assert corners.dtype == centre.dtype == np.float64
    np.testing.assert_allclose(centre, ref_m, rtol=1e-13)
    d32 = distance_to_polygons(pts32, [(pts32 + np.float32(3.3)).astype(np.float32)[None, 0].repeat(3, 0)
                                       + np.array([[0, 0], [1, 0], [0, 1]], dtype=np.float32)])
    assert d32.dtype == np.float64
    assert wrap_angle(np.float32(3.5)).dtype == np.float64
    assert wrap_angle(np.float32(3.5)) == pytest.approx(float(np.float32(3.5)) - 2 * math.pi, abs=1e-12)


def test_arc_lengths_by_hand():
    from latentvla_ros.core.lanes import arc_lengths

    # 3-4-5 triangle legs: 0, 5 (from (0,0) to (3,4)), 5 + 2 (then 2 along x)
    np.testing.assert_allclose(arc_lengths(np.array([[0.0, 0.0], [3.0, 4.0], [5.0, 4.0]])), [0.0, 5.0, 7.0])
    np.testing.assert_allclose(arc_lengths(np.array([[1.0, 2.0, 0.3]])), [0.0])  # extra columns ignored


def test_project_within_keeps_to_the_window_on_a_route_that_passes_beside_itself():
    """A hairpin: out along y = 0 to x = 50 (arc 0..50), back along y = 4 (arc 54..104 after the 4 m turn).
    The point (10, 2.5) is nearer the return leg (1.5 m, arc 94) than the outgoing one (2.5 m, arc 10)."""
    from latentvla_ros.core.lanes import Polyline

    line = Polyline(np.array([[0.0, 0.0], [50.0, 0.0], [50.0, 4.0], [0.0, 4.0]]))
    p = np.array([10.0, 2.5])
    assert line.project(p[None])[0] == pytest.approx(94.0)
    assert line.project_within(p, 0.0, 30.0) == pytest.approx(10.0)
    assert line.project_within(p, 5.0, 12.0) == pytest.approx(10.0)
    assert line.project_within(p, 12.0, 30.0) == pytest.approx(12.0)  # the window's start: the nearest it has
    assert line.project_within(p, -20.0, 8.0) == pytest.approx(8.0)  # a start before 0 is clipped to 0
    assert line.project_within(p, 60.0, 200.0) == pytest.approx(94.0)  # a window over the return leg
    assert line.project_within(p, 150.0, 200.0) == pytest.approx(104.0)  # past the end: the end
