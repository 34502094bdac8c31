"""PDMS geometry primitives pinned by hand-computed answers (frames, distances, polylines)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from latentvla_ros.evaluation.geometry import (
    Polyline,
    convex_polygon_distance,
    convex_polygons_intersect,
    point_segment_distance,
    rotation,
    world_to_ego_points,
    world_to_ego_poses,
)


def test_rotation_matrix_by_hand():
    np.testing.assert_allclose(rotation(math.pi / 2), [[0, -1], [1, 0]], atol=1e-15)
    np.testing.assert_allclose(rotation(math.pi / 2) @ [1.0, 0.0], [0.0, 1.0], atol=1e-15)  # x turns to y (left)
    assert rotation(0.3).dtype == np.float64


def test_world_to_ego_by_hand():
    # ego at (10, 5) heading north (pi/2): a point 3 m north of it is 3 m ahead, one 2 m east is 2 m to the right
    pose = np.array([10.0, 5.0, math.pi / 2])
    np.testing.assert_allclose(world_to_ego_points(pose, [[10.0, 8.0], [12.0, 5.0]]), [[3.0, 0.0], [0.0, -2.0]],
                               atol=1e-12)
    # a world pose heading west (pi) is heading left (+pi/2) relative to the ego; -3.0 rad relative to 3.0 wraps
    np.testing.assert_allclose(world_to_ego_poses(pose, [[10.0, 8.0, math.pi]]), [[3.0, 0.0, math.pi / 2]], atol=1e-12)
    rel = world_to_ego_poses(np.array([0.0, 0.0, 3.0]), [[0.0, 0.0, -3.0]])
    assert rel[0, 2] == pytest.approx(2 * math.pi - 6.0)


def test_point_segment_distance_by_hand():
    s0, s1 = np.array([0.0, 0.0]), np.array([4.0, 0.0])
    pts = np.array([[2.0, 3.0], [-3.0, 4.0], [7.0, -4.0], [4.0, 0.0]])
    # above the middle: 3; before the start: |(-3, 4)| = 5; past the end: |(3, -4)| = 5; on the end: 0
    np.testing.assert_allclose(point_segment_distance(pts, s0, s1), [3.0, 5.0, 5.0, 0.0], atol=1e-12)
    # a zero-length segment is a point
    assert point_segment_distance(np.array([3.0, 4.0]), s0, s0) == pytest.approx(5.0)


def _square(cx, cy, half=1.0):
    return np.array([[cx + half, cy + half], [cx - half, cy + half], [cx - half, cy - half], [cx + half, cy - half]])


def test_convex_polygon_distance_by_hand():
    a = _square(0.0, 0.0)
    # side by side 3 m apart (edges at x = 1 and x = 2): 1 m; diagonal corner to corner: sqrt(2) * 1 m
    assert convex_polygon_distance(a, _square(3.0, 0.0)) == pytest.approx(1.0)
    assert convex_polygon_distance(_square(3.0, 0.0), a) == pytest.approx(1.0)
    assert convex_polygon_distance(a, _square(3.0, 3.0)) == pytest.approx(math.sqrt(2.0))
    # a diamond whose vertex points at a's edge: vertex (2.5, 0) -> edge x = 1: 1.5 (vertex-to-edge of b to a)
    diamond = np.array([[3.5, 0.0], [3.0, 0.5], [2.5, 0.0], [3.0, -0.5]])
    assert convex_polygon_distance(a, diamond) == pytest.approx(1.5)
    assert convex_polygon_distance(diamond, a) == pytest.approx(1.5)
    # overlapping or touching: 0
    assert convex_polygon_distance(a, _square(1.5, 0.0)) == 0.0
    assert convex_polygon_distance(a, _square(2.0, 0.0)) == 0.0
    # broadcast over a batch
    np.testing.assert_allclose(convex_polygon_distance(a[None], np.stack([_square(3, 0), _square(0, 5)])), [1.0, 3.0])


def test_convex_polygons_intersect_touching_and_gaps():
    a = _square(0.0, 0.0)
    assert bool(convex_polygons_intersect(a, _square(2.0, 0.0)))  # touching edges count
    assert not bool(convex_polygons_intersect(a, _square(2.0 + 1e-6, 0.0)))
    assert bool(convex_polygons_intersect(a, _square(2.0 + 1e-10, 0.0)))  # within the 1e-9 tolerance
    assert not bool(convex_polygons_intersect(a, _square(2.0 + 1e-7, 0.0), tol=1e-8))
    # a triangle off the corner (1, 1) whose x and y ranges both overlap the square's: only its own
    # diagonal edge (x + y = 2.2 > 2) separates them
    tri = np.array([[0.9, 1.3], [1.3, 0.9], [1.5, 1.5]])
    assert not bool(convex_polygons_intersect(a, tri)) and not bool(convex_polygons_intersect(tri, a))
    assert bool(convex_polygons_intersect(a, tri - 0.15))  # x + y = 1.9 < 2: overlapping
    # a segment crossing the square
    seg = np.array([[-3.0, 0.5], [3.0, 0.5]])
    assert bool(convex_polygons_intersect(a, seg))
    assert not bool(convex_polygons_intersect(a, seg + [0.0, 1.0 + 1e-6]))


L = Polyline(np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]))  # east 10 m, then north 10 m


def test_polyline_frenet_by_hand():
    s, d = L.frenet(np.array([[4.0, 2.0], [4.0, -3.0], [12.0, 6.0], [8.0, 10.0]]))
    np.testing.assert_allclose(s, [4.0, 4.0, 16.0, 20.0], atol=1e-12)
    np.testing.assert_allclose(d, [2.0, -3.0, -2.0, 2.0], atol=1e-12)  # left of the path positive
    s, d = L.frenet(np.array([[-5.0, 1.0], [10.0, 15.0]]), extrapolate=True)
    np.testing.assert_allclose(s, [-5.0, 25.0], atol=1e-12)
    np.testing.assert_allclose(d, [1.0, 0.0], atol=1e-12)
    s, _ = L.frenet(np.array([[-5.0, 1.0], [10.0, 15.0]]))
    np.testing.assert_allclose(s, [0.0, 20.0], atol=1e-12)  # clamped without extrapolation
    # a point beside the start (along = 0) is not extrapolated
    s, d = L.frenet(np.array([[0.0, 2.0]]), extrapolate=True)
    np.testing.assert_allclose([s[0], d[0]], [0.0, 2.0], atol=1e-12)


def test_polyline_interpolate_by_hand():
    poses = L.interpolate(np.array([-1.0, 0.0, 5.0, 10.0, 15.0, 20.0, 25.0]))
    np.testing.assert_allclose(poses[:, :2], [[0, 0], [0, 0], [5, 0], [10, 0], [10, 5], [10, 10], [10, 10]],
                               atol=1e-12)
    # heading of the segment holding s: at exactly the vertex (s = 10) the second segment's
    np.testing.assert_allclose(poses[:, 2], [0, 0, 0, math.pi / 2, math.pi / 2, math.pi / 2, math.pi / 2])
    assert L.interpolate(np.array([[2.0, 12.0]])).shape == (1, 2, 3)


def test_polyline_offset_by_hand():
    left = L.offset(1.0)
    # start moves to the left of the first segment (0, 1), end left of the last (9, 10); the corner goes
    # inward along the mitre: (9, 1) (average normal (-1, 1)/sqrt 2, scaled by 1/cos 45 deg)
    np.testing.assert_allclose(left.points, [[0.0, 1.0], [9.0, 1.0], [9.0, 10.0]], atol=1e-12)
    right = L.offset(-1.0)
    np.testing.assert_allclose(right.points, [[0.0, -1.0], [11.0, -1.0], [11.0, 10.0]], atol=1e-12)
    np.testing.assert_allclose(L.offset(0.0).points, L.points)
    # a straight line: every vertex moves by exactly the offset
    straight = Polyline(np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])).offset(0.5)
    np.testing.assert_allclose(straight.points, [[0.0, 0.5], [1.0, 0.5], [2.0, 0.5]])
    # a hairpin (180 deg): the mitre scale is capped at 2 instead of growing without bound
    hairpin = Polyline(np.array([[0.0, 0.0], [5.0, 0.0], [5.0, 0.001], [0.0, 0.001]])).offset(1.0)
    assert np.all(np.isfinite(hairpin.points)) and np.abs(hairpin.points).max() < 8.0


def test_polyline_substring_and_resample_by_hand():
    sub = L.substring(5.0, 15.0)
    np.testing.assert_allclose(sub.points, [[5.0, 0.0], [10.0, 0.0], [10.0, 5.0]])
    assert sub.length == pytest.approx(10.0)
    # clamped: before the start / past the end, and an end before the start gives a point
    np.testing.assert_allclose(L.substring(-3.0, 4.0).points[[0, -1]], [[0.0, 0.0], [4.0, 0.0]])
    np.testing.assert_allclose(L.substring(18.0, 99.0).points[[0, -1]], [[10.0, 8.0], [10.0, 10.0]])
    assert L.substring(12.0, 3.0).length < 1e-5
    # a vertex exactly at a bound is not repeated
    assert len(L.substring(10.0, 20.0).points) == 2
    res = L.resample(3.0)
    # ceil(20 / 3) = 7 steps of 20/7 m, end kept
    assert len(res.points) == 8
    np.testing.assert_allclose(res.points[-1], [10.0, 10.0])
    np.testing.assert_allclose(np.diff(res.cum), 20.0 / 7.0, atol=1e-9 + 20.0 / 7.0 * 0.3)
    np.testing.assert_allclose(res.points[1], [20.0 / 7.0, 0.0])
    assert len(L.resample(100.0).points) == 2
