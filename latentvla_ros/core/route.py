"""The mission route for the planner (ROUTE_CONTRACT.md): world polyline -> ego frame.

Minimal stand-in with exactly the contract's ``route_to_ego`` (the ``route`` branch owns
this module and adds ``resample_route``); numpy only.
"""
from __future__ import annotations

import math

import numpy as np


def route_to_ego(route_world: np.ndarray, ego_pose) -> np.ndarray:
    """(K, 2) world points -> (K, 2) in the ego frame of ``ego_pose`` = (x, y, yaw):
    x forward, y left, metres."""
    pts = np.asarray(route_world, dtype=np.float64).reshape(-1, 2)
    x, y, yaw = (float(v) for v in ego_pose)
    c, s = math.cos(yaw), math.sin(yaw)
    d = pts - (x, y)
    return d @ np.array([[c, -s], [s, c]])
