"""core/route.py's boundaries by hand: resample_route's argument checks, the exact length and offset
limits, malformed routes flagged invalid (never a crash), and route_to_ego's input shapes."""
from __future__ import annotations

import math

import numpy as np
import pytest

from latentvla_ros.core.route import MAX_ROUTE_OFFSET_M, resample_route, route_to_ego

STRAIGHT = np.array([[-5.0, 0.0], [20.0, 0.0]])


def test_resample_route_argument_limits():
    pts, ok = resample_route(STRAIGHT, 1, 0.5)  # one point, half a metre ahead
    assert ok and pts.tolist() == [[0.5, 0.0]]
    for n, spacing in ((0, 1.0), (2, 0.0), (2, -1.0)):
        with pytest.raises(ValueError, match=r"^resample_route: num_points must be >= 1 and spacing_m > 0, got "):
            resample_route(STRAIGHT, n, spacing)


def test_resample_route_length_and_offset_limits_are_inclusive():
    short = np.array([[0.0, 0.0], [1e-3, 0.0]])  # exactly the minimum length: still a route
    assert float(np.hypot(*(short[1] - short[0]))) == 1e-3
    assert resample_route(short, 2, 1.0)[1]
    side = np.array([[-5.0, MAX_ROUTE_OFFSET_M], [5.0, MAX_ROUTE_OFFSET_M]])  # exactly 10 m to the left
    pts, ok = resample_route(side, 2, 2.0)
    assert ok and pts.tolist() == [[2.0, 10.0], [4.0, 10.0]]
    assert not resample_route(side + [0.0, 1e-6], 2, 2.0)[1]


@pytest.mark.parametrize("route", [np.array([1.0, 2.0, 3.0]), [[0.0, 0.0], [None, 1.0]], [[0.0, 0.0]]])
def test_malformed_routes_are_invalid_not_a_crash(route):
    pts, ok = resample_route(route, 3, 1.0)
    assert not ok and pts.tolist() == [[0.0, 0.0]] * 3 and pts.dtype == np.float32


def test_route_to_ego_pose_and_point_shapes():
    pose = (1.0, 2.0, math.pi / 2)  # heading north: a point 3 m north is 3 m ahead
    np.testing.assert_allclose(route_to_ego([[1.0, 5.0]], pose), [[3.0, 0.0]], atol=1e-12)
    np.testing.assert_allclose(route_to_ego([[1.0, 5.0]], np.array([[1.0, 2.0, math.pi / 2]])), [[3.0, 0.0]],
                               atol=1e-12)  # a (1, 3) pose row
    np.testing.assert_allclose(route_to_ego([[1.0, 5.0]], (1.0, 2.0, math.pi / 2, 7.0)), [[3.0, 0.0]],
                               atol=1e-12)  # extra pose entries (a speed) are ignored
    batch = np.array([[[1.0, 5.0, 9.0], [0.0, 2.0, 9.0], [3.0, 2.0, 9.0]]] * 2)  # (2, 3, 3): x, y, a third column
    out = route_to_ego(batch, pose)
    assert out.shape == (2, 3, 2)
    np.testing.assert_allclose(out[1], [[3.0, 0.0], [0.0, 1.0], [0.0, -2.0]], atol=1e-12)  # west: left
