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
  (NAVSIM's ``PDMPath``).

Conventions: headings in radians counter-clockwise from +x; boxes "intersect"
when they share at least one point (touching counts, like shapely's
``intersects``); a point on a polygon's boundary may count as inside or
outside (crossing-number rule), but always the same way for the same input.
"""
from __future__ import annotations

import numpy as np

FRONT_LEFT, REAR_LEFT, REAR_RIGHT, FRONT_RIGHT = 0, 1, 2, 3
_EPS = 1e-12


# --------------------------------------------------------------------------- angles / frames
def wrap_angle(angle):
    """Wrap angles to [-pi, pi)."""
    a = np.asarray(angle, dtype=np.float64)
    return (a + np.pi) % (2.0 * np.pi) - np.pi


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
    """World points (..., 2) -> frame of ``pose`` = (x, y, yaw)."""
    pose = np.asarray(pose, dtype=np.float64)
    pts = np.asarray(points, dtype=np.float64)
    c, s = np.cos(pose[2]), np.sin(pose[2])
    dx, dy = pts[..., 0] - pose[0], pts[..., 1] - pose[1]
    return np.stack([c * dx + s * dy, -s * dx + c * dy], axis=-1)


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


# --------------------------------------------------------------------------- polylines
class Polyline:
    """A 2D polyline with arc-length parametrisation (NAVSIM ``PDMPath``-like).

    Consecutive duplicate points are dropped. ``project`` returns the arc
    length of the closest point (ties: the first segment), ``interpolate``
    returns (x, y, heading) at arc lengths (clamped to [0, length]).
    """

    def __init__(self, points: np.ndarray):
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(pts) == 0:
            raise ValueError("Polyline needs at least one point")
        keep = np.ones(len(pts), dtype=bool)
        keep[1:] = np.any(np.diff(pts, axis=0) != 0.0, axis=1)
        pts = pts[keep]
        if len(pts) == 1:  # degenerate: a point; give it a tiny extent along +x
            pts = np.vstack([pts, pts + np.array([1e-6, 0.0])])
        self.points = pts
        seg = np.diff(pts, axis=0)
        self.seg_len = np.sqrt(np.einsum("ij,ij->i", seg, seg))
        self.cum = np.concatenate([[0.0], np.cumsum(self.seg_len)])
        self.seg_heading = np.arctan2(seg[:, 1], seg[:, 0])
        self.length = float(self.cum[-1])

    def __len__(self) -> int:
        return len(self.points)

    def _closest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(segment index, fraction along segment, distance) for points (..., 2)."""
        p = np.asarray(points, dtype=np.float64)
        flat = p.reshape(-1, 2)
        s0 = self.points[:-1]
        d = self.points[1:] - s0
        dd = np.maximum(self.seg_len**2, _EPS)
        rel = flat[:, None, :] - s0[None]
        t = np.clip(np.einsum("nsi,si->ns", rel, d) / dd, 0.0, 1.0)
        diff = rel - t[..., None] * d[None]
        dist2 = np.einsum("nsi,nsi->ns", diff, diff)
        idx = np.argmin(dist2, axis=1)
        rows = np.arange(len(flat))
        shape = p.shape[:-1]
        return (
            idx.reshape(shape),
            t[rows, idx].reshape(shape),
            np.sqrt(dist2[rows, idx]).reshape(shape),
        )

    def project(self, points: np.ndarray) -> np.ndarray:
        """Arc length of the closest point on the polyline for points (..., 2)."""
        idx, t, _ = self._closest(points)
        return self.cum[idx] + t * self.seg_len[idx]

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Euclidean distance from points (..., 2) to the polyline."""
        return self._closest(points)[2]

    def frenet(self, points: np.ndarray, extrapolate: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(arc length, signed lateral offset, + = left) of points (..., 2).

        ``extrapolate``: points before the start / past the end get arc lengths
        < 0 / > length along the first / last segment's direction.
        """
        p = np.asarray(points, dtype=np.float64)
        idx, t, _ = self._closest(p)
        s = self.cum[idx] + t * self.seg_len[idx]
        h = self.seg_heading[idx]
        base = self.points[idx] + t[..., None] * (self.points[idx + 1] - self.points[idx])
        rel = p - base
        d = -np.sin(h) * rel[..., 0] + np.cos(h) * rel[..., 1]
        if extrapolate:
            along = np.cos(h) * rel[..., 0] + np.sin(h) * rel[..., 1]
            before = (idx == 0) & (t <= 0.0) & (along < 0.0)
            after = (idx == len(self.seg_len) - 1) & (t >= 1.0) & (along > 0.0)
            s = np.where(before | after, s + along, s)
        return s, d

    def interpolate(self, s: np.ndarray) -> np.ndarray:
        """Poses (..., 3) at arc lengths ``s`` (clamped to the polyline).

        The heading is that of the segment holding ``s`` (piecewise constant,
        as a linestring has no heading in between).
        """
        s = np.clip(np.asarray(s, dtype=np.float64), 0.0, self.length)
        idx = np.clip(np.searchsorted(self.cum, s, side="right") - 1, 0, len(self.seg_len) - 1)
        t = (s - self.cum[idx]) / np.maximum(self.seg_len[idx], _EPS)
        xy = self.points[idx] + t[..., None] * (self.points[idx + 1] - self.points[idx])
        return np.concatenate([xy, self.seg_heading[idx][..., None]], axis=-1)

    def offset(self, lateral: float) -> "Polyline":
        """A parallel polyline ``lateral`` metres to the left (negative: right).

        Vertices are moved along the averaged normal of their two segments
        (mitre scaled, capped), like a discrete parallel path.
        """
        if lateral == 0.0:
            return Polyline(self.points.copy())
        h = self.seg_heading
        n_seg = np.stack([-np.sin(h), np.cos(h)], axis=-1)
        n_pts = np.empty_like(self.points)
        n_pts[0] = n_seg[0]
        n_pts[-1] = n_seg[-1]
        if len(n_seg) > 1:
            avg = n_seg[:-1] + n_seg[1:]
            norm = np.linalg.norm(avg, axis=1, keepdims=True)
            avg = np.where(norm > 1e-9, avg / np.maximum(norm, 1e-9), n_seg[1:])
            cos_half = np.einsum("ij,ij->i", avg, n_seg[1:])
            scale = 1.0 / np.clip(cos_half, 0.5, 1.0)
            n_pts[1:-1] = avg * scale[:, None]
        return Polyline(self.points + lateral * n_pts)

    def substring(self, s_start: float, s_end: float) -> "Polyline":
        """The part of the polyline between arc lengths ``s_start`` and ``s_end``."""
        s_start = float(np.clip(s_start, 0.0, self.length))
        s_end = float(np.clip(s_end, s_start, self.length))
        inner = self.points[(self.cum > s_start) & (self.cum < s_end)]
        a = self.interpolate(np.array([s_start]))[0, :2]
        b = self.interpolate(np.array([s_end]))[0, :2]
        return Polyline(np.vstack([a[None], inner, b[None]]))

    def resample(self, step: float) -> "Polyline":
        """Uniformly resampled copy (keeps the end point)."""
        n = max(int(np.ceil(self.length / step)), 1)
        s = np.linspace(0.0, self.length, n + 1)
        return Polyline(self.interpolate(s)[:, :2])


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


def match_lanes(
    lane_centerlines: list[np.ndarray], poses: np.ndarray, max_dist_m: float = 3.0, heading_weight_m: float = 2.0
) -> dict[int, int]:
    """How many of ``poses`` (N, 3) each lane is matched by: {lane index: count}.

    A pose matches the lane minimising ``distance + heading_weight_m * |heading
    error|`` among lanes within ``max_dist_m`` whose direction there is within
    90 deg of the pose's (the heading term separates lanes that share their
    first metres, e.g. the straight and turning lanes leaving an intersection
    entry). Lanes with fewer than 2 points are never matched.
    """
    poses = np.asarray(poses, dtype=np.float64).reshape(-1, 3)
    costs = np.full((len(poses), len(lane_centerlines)), np.inf)
    for i, c in enumerate(lane_centerlines):
        c = np.asarray(c, dtype=np.float64).reshape(-1, 2)
        if len(c) < 2:
            continue
        line = Polyline(c)
        idx, _, dist = line._closest(poses[:, :2])
        err = np.abs(wrap_angle(line.seg_heading[idx] - poses[:, 2]))
        ok = (dist <= max_dist_m) & (err < np.pi / 2)
        costs[ok, i] = dist[ok] + heading_weight_m * err[ok]
    counts: dict[int, int] = {}
    for row in costs:
        if np.isfinite(row).any():
            j = int(np.argmin(row))
            counts[j] = counts.get(j, 0) + 1
    return counts


def chain_lane_centerline(
    lane_centerlines: list[np.ndarray],
    pose: np.ndarray,
    ahead_m: float = 300.0,
    behind_m: float = 30.0,
    join_tol_m: float = 1.0,
    mission: dict[int, int] | None = None,
) -> np.ndarray | None:
    """A route centreline through the lane nearest to ``pose`` = (x, y, yaw).

    ``mission``: {lane index: weight} of the lanes the episode's route uses
    (e.g. ``match_lanes`` of the logged ego path): where the road branches (a
    roundabout exit, an intersection turn) the route follows the mission's
    lanes (highest weight first), and only where none of the branches is on
    the mission the straightest one. Without a mission, the "straightest
    successor" chain.

    The start lane is the closest lane whose local direction is within 90 deg
    of the yaw (the closest of all lanes if none is); a mission lane within
    0.5 m of that distance is preferred. It is extended by successor lanes
    (first point within ``join_tol_m`` of the current end, direction within 90
    deg; mission lanes first, then the best-aligned, ties -> lower index) until
    ``ahead_m`` metres lie ahead of the projection of ``pose``, and likewise by
    predecessors until ``behind_m`` lie behind. No lane is used twice. Returns
    (K, 2) points, or None when there are no lanes. Deterministic.
    """
    weight = dict(mission or {})
    lanes = {i: np.asarray(c, dtype=np.float64).reshape(-1, 2) for i, c in enumerate(lane_centerlines)}
    lanes = {i: c for i, c in lanes.items() if len(c) >= 2}
    if not lanes:
        return None
    pose = np.asarray(pose, dtype=np.float64)
    p = pose[None, :2]
    near = []  # (distance, aligned, index)
    for i, c in lanes.items():
        line = Polyline(c)
        idx, _, dist = line._closest(p)
        aligned = abs(float(wrap_angle(line.seg_heading[idx[0]] - pose[2]))) < np.pi / 2
        near.append((float(dist[0]), aligned, i))
    pool = [n for n in near if n[1]] or near
    d_min = min(n[0] for n in pool)
    start = min(pool, key=lambda n: (n[0] > d_min + 0.5 or weight.get(n[2], 0) == 0, n[0], n[2]))[2]
    pts = lanes[start]

    def heading_of(a: np.ndarray, b: np.ndarray) -> float:
        d = b - a
        return float(np.arctan2(d[1], d[0]))

    def pick(cands: list[tuple[float, int]]) -> int:
        return min(cands, key=lambda c: (-weight.get(c[1], 0), c[0], c[1]))[1]

    visited = {start}
    # forward
    while True:
        line = Polyline(pts)
        if line.length - float(line.project(p)[0]) >= ahead_m:
            break
        end, end_h = pts[-1], heading_of(pts[-2], pts[-1])
        cands = []
        for j, c in lanes.items():
            if j in visited or np.linalg.norm(c[0] - end) > join_tol_m:
                continue
            dh = abs(float(wrap_angle(heading_of(c[0], c[1]) - end_h)))
            if dh < np.pi / 2:
                cands.append((dh, j))
        if not cands:
            break
        j = pick(cands)
        visited.add(j)
        nxt = lanes[j]
        pts = np.vstack([pts, nxt[1:] if np.allclose(nxt[0], pts[-1]) else nxt])
    # backward
    while True:
        line = Polyline(pts)
        if float(line.project(p)[0]) >= behind_m:
            break
        first, first_h = pts[0], heading_of(pts[0], pts[1])
        cands = []
        for j, c in lanes.items():
            if j in visited or np.linalg.norm(c[-1] - first) > join_tol_m:
                continue
            dh = abs(float(wrap_angle(heading_of(c[-2], c[-1]) - first_h)))
            if dh < np.pi / 2:
                cands.append((dh, j))
        if not cands:
            break
        j = pick(cands)
        visited.add(j)
        prv = lanes[j]
        pts = np.vstack([prv[:-1] if np.allclose(prv[-1], pts[0]) else prv, pts])
    return pts
