"""Synthetic LiDAR for the highway-env logs and closed loop (split out of ``data/highway.py``).

``num_azimuths`` 2-D rays from the ego reference point cast against the other vehicles'
boxes (one point per height in ``vehicle_heights``) and ground rings (z ~ 0) where the
ray reaches the drivable area unoccluded (``DrivableRaster``), with small range/height
noise from a per-log seeded generator.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class LidarConfig:
    """Synthetic LiDAR in the ego frame (sensor at the ego reference point)."""

    num_azimuths: int = 360
    max_range_m: float = 50.0
    vehicle_heights: tuple[float, ...] = (0.3, 0.6, 0.9, 1.2, 1.5)
    ground_ranges_m: tuple[float, ...] = (4.0, 6.0, 9.0, 13.0, 18.0, 25.0)
    range_noise_m: float = 0.02
    height_noise_m: float = 0.02
    vehicle_intensity: float = 0.6
    ground_intensity: float = 0.1
    drivable_resolution_m: float = 0.25



class DrivableRaster:
    """Rasterised union of drivable polygons for fast point queries."""

    def __init__(self, polygons: Sequence[np.ndarray], resolution_m: float = 0.25, margin_m: float = 5.0) -> None:
        import cv2

        self.res = float(resolution_m)
        if not polygons:
            self.origin = np.zeros(2)
            self.mask = np.zeros((1, 1), dtype=bool)
            return
        allp = np.concatenate(polygons)
        self.origin = allp.min(axis=0) - margin_m
        size = np.ceil((allp.max(axis=0) + margin_m - self.origin) / self.res).astype(int) + 1
        mask = np.zeros((int(size[1]), int(size[0])), dtype=np.uint8)
        pts = [np.round((p - self.origin) / self.res * 4.0).astype(np.int32) for p in polygons]
        cv2.fillPoly(mask, pts, 1, lineType=cv2.LINE_8, shift=2)
        self.mask = mask.astype(bool)

    def contains(self, xy: np.ndarray) -> np.ndarray:
        ij = np.floor((np.asarray(xy) - self.origin) / self.res + 0.5).astype(np.int64)
        h, w = self.mask.shape
        inside = (ij[:, 0] >= 0) & (ij[:, 0] < w) & (ij[:, 1] >= 0) & (ij[:, 1] < h)
        out = np.zeros(len(ij), dtype=bool)
        out[inside] = self.mask[ij[inside, 1], ij[inside, 0]]
        return out


def ray_box_distances(azimuths: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Nearest hit distance of rays from the origin against oriented boxes.

    ``boxes`` (A, 5): cx, cy, heading, length, width in the sensor frame. Returns (R,)
    distances (inf where no box is hit; boxes containing the origin are ignored).
    """
    dist = np.full(len(azimuths), np.inf)
    if len(boxes) == 0:
        return dist
    dx, dy = np.cos(azimuths)[None, :], np.sin(azimuths)[None, :]
    cx, cy, h = boxes[:, 0:1], boxes[:, 1:2], boxes[:, 2:3]
    hl, hw = boxes[:, 3:4] / 2.0, boxes[:, 4:5] / 2.0
    ch, sh = np.cos(h), np.sin(h)
    # ray origin (0, 0) and direction in each box's frame
    ox, oy = -(ch * cx + sh * cy), -(-sh * cx + ch * cy)
    ddx, ddy = ch * dx + sh * dy, -sh * dx + ch * dy
    eps = 1e-12
    ddx = np.where(np.abs(ddx) < eps, eps, ddx)
    ddy = np.where(np.abs(ddy) < eps, eps, ddy)
    tx1, tx2 = (-hl - ox) / ddx, (hl - ox) / ddx
    ty1, ty2 = (-hw - oy) / ddy, (hw - oy) / ddy
    tmin = np.maximum(np.minimum(tx1, tx2), np.minimum(ty1, ty2))
    tmax = np.minimum(np.maximum(tx1, tx2), np.maximum(ty1, ty2))
    hit = (tmax >= tmin) & (tmin > 0.0)
    t = np.where(hit, tmin, np.inf)
    return t.min(axis=0)


def synthesize_lidar(
    ego_pose: np.ndarray,
    agents: np.ndarray,
    drivable: DrivableRaster | None,
    config: LidarConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """(N, 4) float32 x, y, z, intensity in the ego frame from world agent boxes (A, 8)."""
    az = np.linspace(-np.pi, np.pi, config.num_azimuths, endpoint=False)
    x0, y0, yaw = ego_pose
    c, s = math.cos(yaw), math.sin(yaw)
    boxes = np.zeros((0, 5))
    if len(agents):
        d = agents[:, :2].astype(np.float64) - (x0, y0)
        lx, ly = c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]
        near = np.hypot(lx, ly) < config.max_range_m + 10.0
        boxes = np.stack([lx, ly, agents[:, 2] - yaw, agents[:, 3], agents[:, 4]], axis=1)[near]
    dist = ray_box_distances(az, boxes)
    dist[dist > config.max_range_m] = np.inf
    parts = []
    hit = np.flatnonzero(np.isfinite(dist))
    if hit.size:
        nh = len(config.vehicle_heights)
        r = np.repeat(dist[hit], nh) + rng.normal(0.0, config.range_noise_m, hit.size * nh)
        a = np.repeat(az[hit], nh)
        z = np.tile(np.asarray(config.vehicle_heights), hit.size) + rng.normal(0.0, config.height_noise_m, hit.size * nh)
        inten = np.clip(config.vehicle_intensity + rng.normal(0.0, 0.05, r.size), 0.0, 1.0)
        parts.append(np.stack([r * np.cos(a), r * np.sin(a), z, inten], axis=1))
    if config.ground_ranges_m:
        rg = np.asarray(config.ground_ranges_m, dtype=np.float64)
        rr, aa = np.meshgrid(rg, az, indexing="ij")
        rr, aa = rr.ravel(), aa.ravel()
        visible = rr < np.tile(dist, len(rg))
        gx, gy = rr * np.cos(aa), rr * np.sin(aa)
        if drivable is not None:
            world = np.stack([x0 + c * gx - s * gy, y0 + s * gx + c * gy], axis=1)
            visible &= drivable.contains(world)
        k = int(visible.sum())
        if k:
            rn = rr[visible] + rng.normal(0.0, config.range_noise_m, k)
            an = aa[visible]
            z = rng.normal(0.0, config.height_noise_m, k)
            inten = np.clip(config.ground_intensity + rng.normal(0.0, 0.02, k), 0.0, 1.0)
            parts.append(np.stack([rn * np.cos(an), rn * np.sin(an), z, inten], axis=1))
    if not parts:
        return np.zeros((0, 4), dtype=np.float32)
    return np.concatenate(parts).astype(np.float32)
