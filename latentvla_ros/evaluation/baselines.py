"""Planner interface and simple baselines for PDMS evaluation (pure numpy).

Every planner evaluated by the benchmarks follows ``Planner``: ``plan(x)``
takes a ``Scene`` (privileged, offline evaluation), a ``SensorFrame`` or an
``EgoState`` -- whatever the planner needs -- and returns a ``Trajectory`` of
``NUM_POSES`` poses at ``POSE_INTERVAL_S`` in the ego frame. Learned planners
(ego-status MLP, E2E models) implement the same protocol in their modules.

Baselines here:
- ``ConstantVelocityPlanner``: current speed (and yaw rate, optional) held.
  ``use_yaw_rate=False`` is NAVSIM's constant-velocity agent (straight line).
- ``ExpertPlanner``: the logged future (NAVSIM's "human" agent).
- ``ReferencePlanner`` (``reference_planner.py``): PDM-Closed-like.
"""
from __future__ import annotations

from typing import Protocol, Union, runtime_checkable

import numpy as np

from latentvla_ros.core.types import NUM_POSES, POSE_INTERVAL_S, EgoState, SensorFrame, Trajectory

PlannerInput = Union["Scene", SensorFrame, EgoState]  # noqa: F821 (Scene imported lazily)


@runtime_checkable
class Planner(Protocol):
    """A trajectory planner: ``plan(scene_or_frame) -> Trajectory`` (ego frame)."""

    name: str

    def plan(self, scene_or_frame) -> Trajectory:  # pragma: no cover - protocol
        ...


def ego_state_of(scene_or_frame) -> EgoState:
    """The ``EgoState`` of a Scene, SensorFrame or EgoState."""
    if isinstance(scene_or_frame, EgoState):
        return scene_or_frame
    ego = getattr(scene_or_frame, "ego", None)
    if isinstance(ego, EgoState):
        return ego
    raise TypeError(f"cannot get an EgoState from {type(scene_or_frame).__name__}")


def constant_turn_rate_poses(
    speed: float, yaw_rate: float, num_poses: int = NUM_POSES, interval_s: float = POSE_INTERVAL_S
) -> np.ndarray:
    """Poses (num_poses, 3) of constant speed and yaw rate from the origin."""
    t = interval_s * np.arange(1, num_poses + 1, dtype=np.float64)
    heading = yaw_rate * t
    if abs(yaw_rate) < 1e-6:
        x = speed * t
        y = 0.5 * speed * yaw_rate * t**2
    else:
        x = speed / yaw_rate * np.sin(heading)
        y = speed / yaw_rate * (1.0 - np.cos(heading))
    return np.stack([x, y, heading], axis=-1)


class ConstantVelocityPlanner:
    """Holds the current speed (|v|) and, optionally, the current yaw rate."""

    def __init__(self, use_yaw_rate: bool = True, num_poses: int = NUM_POSES, interval_s: float = POSE_INTERVAL_S):
        self.use_yaw_rate = use_yaw_rate
        self.num_poses = num_poses
        self.interval_s = interval_s
        self.name = "constant_velocity" + ("_yaw_rate" if use_yaw_rate else "")

    def plan(self, scene_or_frame) -> Trajectory:
        ego = ego_state_of(scene_or_frame)
        v = np.asarray(ego.velocity, dtype=np.float64)
        speed = float(np.hypot(v[0], v[1])) if np.all(np.isfinite(v)) else 0.0
        yaw_rate = float(ego.yaw_rate) if (self.use_yaw_rate and np.isfinite(ego.yaw_rate)) else 0.0
        poses = constant_turn_rate_poses(speed, yaw_rate, self.num_poses, self.interval_s)
        stamp = int(getattr(scene_or_frame, "stamp_ns", 0) or 0)
        return Trajectory(poses=poses, interval_s=self.interval_s, stamp_ns=stamp, model_id=self.name)


class ExpertPlanner:
    """Returns the scene's logged future trajectory (needs a ``Scene``)."""

    name = "expert"

    def plan(self, scene_or_frame) -> Trajectory:
        traj = getattr(scene_or_frame, "expert_trajectory", None)
        if traj is None:
            raise ValueError("ExpertPlanner needs a Scene with an expert_trajectory")
        return Trajectory(poses=np.asarray(traj, dtype=np.float64), interval_s=POSE_INTERVAL_S, model_id=self.name)
