"""Lane geometry shared by the scorer, the logs' mission routes and the planner's route input
(pure numpy, float64, deterministic; moved here from ``evaluation/geometry.py``, which
re-exports it):

- ``wrap_angle``; ``arc_lengths`` (cumulative length along points); ``Polyline``: a 2D polyline with arc-length projection / interpolation /
  lateral offset (NAVSIM's ``PDMPath``);
- ``match_lanes``: which map lanes a driven path uses (the episode's mission lanes);
- ``chain_lane_centerline``: the route centreline through the ego's lane, following the
  mission's lanes where the road branches.

Conventions: headings in radians counter-clockwise from +x.
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-12


def wrap_angle(angle):
    """Wrap angles to [-pi, pi)."""
    a = np.asarray(angle, dtype=np.float64)
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def arc_lengths(xy) -> np.ndarray:
    """Cumulative length along the points ``xy`` (N, >=2), 0 at the first point (duplicates kept)."""
    pts = np.asarray(xy, dtype=np.float64)[:, :2]
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])


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

    def project_within(self, point: np.ndarray, s_start: float, s_end: float) -> float:
        """Arc length of the closest point to ``point`` (2,) on the part of the polyline between arc lengths
        ``s_start`` and ``s_end`` (clipped to the polyline): projecting near a known position, so a polyline
        that passes close to itself (a roundabout route) does not send the point to its other pass."""
        lo = float(np.clip(s_start, 0.0, self.length))
        return lo + float(self.substring(lo, s_end).project(np.asarray(point, dtype=np.float64).reshape(1, 2))[0])

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

    def joining(point: np.ndarray, heading: float, successors: bool) -> list[tuple[float, int]]:
        """(heading difference, index) of the unused lanes that start (successors) or end
        (predecessors) within ``join_tol_m`` of ``point``, running within 90 deg of ``heading``."""
        cands = []
        for j, c in lanes.items():
            end, h = (c[0], heading_of(c[0], c[1])) if successors else (c[-1], heading_of(c[-2], c[-1]))
            if j in visited or np.linalg.norm(end - point) > join_tol_m:
                continue
            dh = abs(float(wrap_angle(h - heading)))
            if dh < np.pi / 2:
                cands.append((dh, j))
        return cands

    visited = {start}
    # forward
    while True:
        line = Polyline(pts)
        if line.length - float(line.project(p)[0]) >= ahead_m:
            break
        cands = joining(pts[-1], heading_of(pts[-2], pts[-1]), successors=True)
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
        cands = joining(pts[0], heading_of(pts[0], pts[1]), successors=False)
        if not cands:
            break
        j = pick(cands)
        visited.add(j)
        prv = lanes[j]
        pts = np.vstack([prv[:-1] if np.allclose(prv[-1], pts[0]) else prv, pts])
    return pts
