"""Ego acceleration from successive velocity samples (odometry carries no acceleration)."""
from __future__ import annotations

import math

import numpy as np


class AccelerationEstimator:
    """Finite-difference acceleration in the ego frame with a first-order low-pass filter.

    Velocities are ego-frame (vx, vy); the rotation of the frame between samples is
    compensated with the yaw rate. Resets (returns zeros) on the first sample, on a
    backwards time jump, or on a gap longer than ``max_gap_s``.
    """

    def __init__(self, tau_s: float = 0.2, max_gap_s: float = 1.0):
        self.tau_s = tau_s
        self.max_gap_s = max_gap_s
        self.reset()

    def reset(self) -> None:
        self._last_ns: int | None = None
        self._last_v = (0.0, 0.0)
        self._acc = (0.0, 0.0)
        self.resets = 0

    def update(self, stamp_ns: int, velocity: np.ndarray, yaw_rate: float) -> np.ndarray:
        """(2,) float32 acceleration after the sample (``velocity``: ego-frame vx, vy). Plain float
        arithmetic, the same float64 operations in the same order as on 2-vectors: numpy calls on
        two numbers cost more than the arithmetic (sensor_sync runs this on every frame)."""
        vx, vy = float(velocity[0]), float(velocity[1])
        if self._last_ns is None:
            self._last_ns, self._last_v = stamp_ns, (vx, vy)
            return np.array(self._acc, dtype=np.float32)
        dt = (stamp_ns - self._last_ns) * 1e-9
        if dt < 0 or dt > self.max_gap_s:
            self.resets += 1
            self._last_ns, self._last_v, self._acc = stamp_ns, (vx, vy), (0.0, 0.0)
            return np.array(self._acc, dtype=np.float32)
        if dt == 0:
            return np.array(self._acc, dtype=np.float32)
        dyaw = yaw_rate * dt
        c, s = math.cos(dyaw), math.sin(dyaw)
        # previous velocity expressed in the current ego frame
        lx, ly = self._last_v
        px, py = c * lx + s * ly, -s * lx + c * ly
        rx, ry = (vx - px) / dt, (vy - py) / dt
        alpha = 1.0 if self.tau_s <= 0 else dt / (self.tau_s + dt)
        ax, ay = self._acc
        self._acc = (ax + alpha * (rx - ax), ay + alpha * (ry - ay))
        self._last_ns, self._last_v = stamp_ns, (vx, vy)
        return np.array(self._acc, dtype=np.float32)
