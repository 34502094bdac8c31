"""Planar geometry for the PDM score (pure numpy, float64, deterministic).

Everything here works on plain arrays so that the scorer can batch over
proposals, time steps and agents without shapely:

- poses ``(x, y, heading)``, frame changes between the world and an ego frame;
- oriented boxes as 4 corners in the order front-left, rear-left, rear-right,
  front-right (NAVSIM's ``BBCoordsIndex`` order, so corners 0 and 3 form the
  front bumper);
- convex polygon tests by the separating axis theorem (intersection, distance),
  point-in-polygon by crossing numbers for arbitrary simple polygons;
- polylines with arc-length projection / interpolation / lateral offset
  (NAVSIM's ``PDMPath``), ``wrap_angle``, the lane matching and the mission-route
  chaining: they live in ``core/lanes.py`` (the logs' route input uses them too) and
  are re-exported here.

Conventions: headings in radians counter-clockwise from +x; boxes "intersect"
when they share at least one point (touching counts, like shapely's
``intersects``); a point on a polygon's boundary may count as inside or
outside (crossing-number rule), but always the same way for the same input.
"""
from __future__ import annotations

import numpy as np

from latentvla_ros.core.lanes import (  # noqa: F401 - re-exported: the scorer's geometry in one import
    Polyline,
    chain_lane_centerline,
    match_lanes,
    wrap_angle,
)
from latentvla_ros.core.route import route_to_ego

FRONT_LEFT, REAR_LEFT, REAR_RIGHT, FRONT_RIGHT = 0, 1, 2, 3
_EPS = 1e-12


# --------------------------------------------------------------------------- angles / frames
def unwrap_angles(angles: np.ndarray, axis: int = -1) -> np.ndarray:
    """Phase-unwrap a heading sequence (successive differences in [-pi, pi])."""
    a = np.asarray(angles, dtype=np.float64)
    d = np.diff(a, axis=axis)
    adj = np.cumsum(np.round(d / (2.0 * np.pi)), axis=axis)
    pad = [(0, 0)] * a.ndim
    pad[axis] = (1, 0)
    return a - 2.0 * np.pi * np.pad(adj, pad)


def rotation(theta: float) -> np.ndarray:
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]], dtype=np.float64)


def ego_to_world_points(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points (..., 2) in the frame of ``pose`` = (x, y, yaw) -> world."""
    pose = np.asarray(pose, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64)
    c, s = np.cos(pose[2]), np.sin(pose[2])
    x = pose[0] + c * pts[..., 0] - s * pts[..., 1]
    y = pose[1] + s * pts[..., 0] + c * pts[..., 1]
    return np.stack([x, y], axis=-1)


def world_to_ego_points(pose: np.ndarray, points: np.ndarray) -> np.ndarray:
    """World points (..., 2) -> frame of ``pose`` = (x, y, yaw) (``core.route.route_to_ego``)."""
    return route_to_ego(points, pose)


def ego_to_world_poses(pose: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """Poses (..., 3) relative to ``pose`` -> world poses (heading wrapped)."""
    poses = np.asarray(poses, dtype=np.float64)
    xy = ego_to_world_points(pose, poses[..., :2])
    h = wrap_angle(poses[..., 2] + float(pose[2]))
    return np.concatenate([xy, h[..., None]], axis=-1)


def world_to_ego_poses(pose: np.ndarray, poses: np.ndarray) -> np.ndarray:
    """World poses (..., 3) -> relative to ``pose`` (heading wrapped)."""
    poses = np.asarray(poses, dtype=np.float64)
    xy = world_to_ego_points(pose, poses[..., :2])
    h = wrap_angle(poses[..., 2] - float(pose[2]))
    return np.concatenate([xy, h[..., None]], axis=-1)


# --------------------------------------------------------------------------- oriented boxes
def box_corners(x, y, heading, length, width) -> np.ndarray:
    """Corners (..., 4, 2) of boxes centred at (x, y): FL, RL, RR, FR."""
    x, y, heading, length, width = np.broadcast_arrays(
        *(np.asarray(v, dtype=np.float64) for v in (x, y, heading, length, width))
    )
    c, s = np.cos(heading), np.sin(heading)
    hl, hw = 0.5 * length, 0.5 * width
    # local corner offsets (front = +x, left = +y)
    lx = np.stack([hl, -hl, -hl, hl], axis=-1)
    ly = np.stack([hw, hw, -hw, -hw], axis=-1)
    cx = x[..., None] + c[..., None] * lx - s[..., None] * ly
    cy = y[..., None] + s[..., None] * lx + c[..., None] * ly
    return np.stack([cx, cy], axis=-1)


def ego_box(
    x, y, heading, length: float, width: float, rear_axle_to_center: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Ego footprint from the reference point (rear axle) pose.

    Returns ``(corners (..., 4, 2), centers (..., 2))``; the box centre lies
    ``rear_axle_to_center`` metres ahead of the reference point.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    heading = np.asarray(heading, dtype=np.float64)
    cx = x + rear_axle_to_center * np.cos(heading)
    cy = y + rear_axle_to_center * np.sin(heading)
    return box_corners(cx, cy, heading, length, width), np.stack([cx, cy], axis=-1)


# --------------------------------------------------------------------------- convex polygons (SAT)
def _edge_normals(poly: np.ndarray) -> np.ndarray:
    """Edge normals (..., M, 2) of polygons (..., M, 2) (not normalised)."""
    edges = np.roll(poly, -1, axis=-2) - poly
    return np.stack([-edges[..., 1], edges[..., 0]], axis=-1)


def _project(poly: np.ndarray, axes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min/max of the projections of polygons (..., M, 2) on axes (..., K, 2)."""
    proj = np.einsum("...mi,...ki->...km", poly, axes)
    return proj.min(axis=-1), proj.max(axis=-1)


def convex_polygons_intersect(a: np.ndarray, b: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Whether convex polygons ``a`` (..., M, 2) and ``b`` (..., K, 2) intersect.

    Broadcasts over leading dimensions. Touching counts as intersecting. A
    2-vertex "polygon" is a segment (its edge normal is used as an axis).
    Degenerate edges (zero length) give zero axes, which never separate.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = _broadcast_polys(a, b)
    axes = np.concatenate([_edge_normals(a), _edge_normals(b)], axis=-2)
    amin, amax = _project(a, axes)
    bmin, bmax = _project(b, axes)
    scale = np.sqrt(np.einsum("...ki,...ki->...k", axes, axes))
    separated = (amax < bmin - tol * scale) | (bmax < amin - tol * scale)
    return ~np.any(separated, axis=-1)


def _broadcast_polys(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return (
        np.broadcast_to(a, lead + a.shape[-2:]),
        np.broadcast_to(b, lead + b.shape[-2:]),
    )


def boxes_intersect(a: np.ndarray, b: np.ndarray, tol: float = 1e-9) -> np.ndarray:
    """Fast intersection test for rectangles given as 4 corners (..., 4, 2), broadcast.

    Same answer as ``convex_polygons_intersect`` for rectangles (corners in
    order around the box): a bounding-circle pre-filter, then the separating
    axis theorem on the 2 + 2 edge directions of the candidate pairs only.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    ca, cb = a.mean(axis=-2), b.mean(axis=-2)
    ra = np.sqrt(np.max(np.sum((a - ca[..., None, :]) ** 2, axis=-1), axis=-1))
    rb = np.sqrt(np.max(np.sum((b - cb[..., None, :]) ** 2, axis=-1), axis=-1))
    d = np.broadcast_to(ca, shape + (2,)) - np.broadcast_to(cb, shape + (2,))
    near = np.hypot(d[..., 0], d[..., 1]) <= np.broadcast_to(ra, shape) + np.broadcast_to(rb, shape) + tol
    out = np.zeros(near.size, dtype=bool)
    idx = np.flatnonzero(near)
    if len(idx) == 0:
        return out.reshape(shape)
    pa = np.broadcast_to(a, shape + (4, 2)).reshape(-1, 4, 2)[idx]  # (K, 4, 2)
    pb = np.broadcast_to(b, shape + (4, 2)).reshape(-1, 4, 2)[idx]
    axes = np.stack([pa[:, 1] - pa[:, 0], pa[:, 2] - pa[:, 1], pb[:, 1] - pb[:, 0], pb[:, 2] - pb[:, 1]], axis=1)
    proj_a = pa[:, None, :, 0] * axes[:, :, None, 0] + pa[:, None, :, 1] * axes[:, :, None, 1]  # (K, 4 axes, 4)
    proj_b = pb[:, None, :, 0] * axes[:, :, None, 0] + pb[:, None, :, 1] * axes[:, :, None, 1]
    scale = tol * np.hypot(axes[..., 0], axes[..., 1])
    sep = (proj_a.max(axis=-1) < proj_b.min(axis=-1) - scale) | (proj_b.max(axis=-1) < proj_a.min(axis=-1) - scale)
    out[idx] = ~np.any(sep, axis=-1)
    return out.reshape(shape)


def point_segment_distance(p: np.ndarray, s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
    """Distance from points ``p`` (..., 2) to segments [s0, s1] (..., 2), broadcast."""
    d = s1 - s0
    dd = np.einsum("...i,...i->...", d, d)
    t = np.einsum("...i,...i->...", p - s0, d) / np.maximum(dd, _EPS)
    t = np.clip(t, 0.0, 1.0)
    closest = s0 + t[..., None] * d
    return np.sqrt(np.einsum("...i,...i->...", p - closest, p - closest))


def convex_polygon_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between convex polygons (0 when they intersect)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a, b = _broadcast_polys(a, b)
    inter = convex_polygons_intersect(a, b)
    # vertex of a -> edges of b, and vertex of b -> edges of a
    b0, b1 = b, np.roll(b, -1, axis=-2)
    a0, a1 = a, np.roll(a, -1, axis=-2)
    d_ab = point_segment_distance(a[..., :, None, :], b0[..., None, :, :], b1[..., None, :, :])
    d_ba = point_segment_distance(b[..., :, None, :], a0[..., None, :, :], a1[..., None, :, :])
    dist = np.minimum(d_ab.min(axis=(-1, -2)), d_ba.min(axis=(-1, -2)))
    return np.where(inter, 0.0, dist)


# --------------------------------------------------------------------------- simple polygons
def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Crossing-number point-in-polygon for one simple polygon (M, 2).

    ``points`` (..., 2) -> bool (...). A closing vertex equal to the first one
    is allowed. Works for convex and concave polygons.
    """
    pts = np.asarray(points, dtype=np.float64)
    poly = np.asarray(polygon, dtype=np.float64)
    if len(poly) >= 2 and np.array_equal(poly[0], poly[-1]):
        poly = poly[:-1]
    if len(poly) < 3:
        return np.zeros(pts.shape[:-1], dtype=bool)
    px = pts[..., 0][..., None]
    py = pts[..., 1][..., None]
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    straddles = (y0 > py) != (y1 > py)
    dy = np.where(y1 == y0, 1.0, y1 - y0)
    x_cross = x0 + (py - y0) * (x1 - x0) / dy
    crossings = straddles & (px < x_cross)
    return (np.count_nonzero(crossings, axis=-1) % 2) == 1


def points_in_polygons(points: np.ndarray, polygons: list[np.ndarray]) -> np.ndarray:
    """Membership of points (..., 2) in each polygon -> bool (..., P)."""
    pts = np.asarray(points, dtype=np.float64)
    if len(polygons) == 0:
        return np.zeros(pts.shape[:-1] + (0,), dtype=bool)
    out = np.empty(pts.shape[:-1] + (len(polygons),), dtype=bool)
    # pre-filter by bounding box (cheap, exact)
    for i, poly in enumerate(polygons):
        poly = np.asarray(poly, dtype=np.float64)
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        inside_bb = np.all((pts >= lo) & (pts <= hi), axis=-1)
        res = np.zeros(pts.shape[:-1], dtype=bool)
        if np.any(inside_bb):
            res[inside_bb] = points_in_polygon(pts[inside_bb], poly)
        out[..., i] = res
    return out


def points_in_union(points: np.ndarray, polygons: list[np.ndarray], tolerance_m: float = 0.0) -> np.ndarray:
    """Whether each point lies in at least one of ``polygons``, or (``tolerance_m`` > 0)
    within ``tolerance_m`` of one of them."""
    pts = np.asarray(points, dtype=np.float64)
    inside = np.any(points_in_polygons(pts, polygons), axis=-1)
    if tolerance_m > 0.0 and not np.all(inside):
        out = ~inside
        inside[out] = distance_to_polygons(pts[out], polygons, tolerance_m) <= tolerance_m
    return inside


def distance_to_polygons(points: np.ndarray, polygons: list[np.ndarray], max_m: float = np.inf) -> np.ndarray:
    """Distance (K,) from points (K, 2) to the nearest polygon boundary; polygons whose
    bounding box is farther than ``max_m`` are skipped (distance inf when all are)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    best = np.full(len(pts), np.inf)
    for poly in polygons:
        poly = np.asarray(poly, dtype=np.float64)
        lo, hi = poly.min(axis=0) - max_m, poly.max(axis=0) + max_m
        near = np.all((pts >= lo) & (pts <= hi), axis=-1) if np.isfinite(max_m) else np.ones(len(pts), bool)
        if not np.any(near):
            continue
        d = point_segment_distance(pts[near][:, None, :], poly[None], np.roll(poly, -1, axis=0)[None]).min(axis=1)
        best[near] = np.minimum(best[near], d)
    return best


def lanes_containing_points(
    points: np.ndarray, lanes: list[Polyline], half_width: float
) -> np.ndarray:
    """Bool (..., L): point within ``half_width`` of lane centreline l.

    Approximates lane polygons by buffered centrelines (our maps store lane
    centrelines only).
    """
    pts = np.asarray(points, dtype=np.float64)
    out = np.zeros(pts.shape[:-1] + (len(lanes),), dtype=bool)
    for i, lane in enumerate(lanes):
        out[..., i] = lane.distance(pts) <= half_width
    return out
