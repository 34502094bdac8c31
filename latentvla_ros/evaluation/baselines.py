"""Simple baselines for PDMS evaluation (pure numpy).

Every planner evaluated by the benchmarks is a ``core.agent.AbstractAgent``:
``compute_trajectory(AgentInput) -> Trajectory`` (ego frame); ``requires_scene`` says
whether it reads the privileged ``Scene``. ``plan(x)`` is the shorthand
``compute_trajectory(agent_input_of(x))`` for a ``Scene``, ``SensorFrame`` or ``EgoState``.
Learned planners (ego-status MLP, E2E models) implement the same interface in their modules.

Baselines here:
- ``ConstantVelocityPlanner``: current speed (and yaw rate, optional) held.
  ``use_yaw_rate=False`` is NAVSIM's constant-velocity agent (straight line).
- ``ExpertPlanner``: the logged future (NAVSIM's "human" agent).
- ``ReferencePlanner`` (``reference_planner.py``): PDM-Closed-like.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from latentvla_ros.core.agent import AgentInput, agent_input_of
from latentvla_ros.core.types import NUM_POSES, POSE_INTERVAL_S, Trajectory


class PlanShorthand:
    """``plan(x)`` = ``compute_trajectory(agent_input_of(x))`` (x: Scene, SensorFrame, EgoState)."""

    def plan(self, x: Any) -> Trajectory:
        return self.compute_trajectory(agent_input_of(x))


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


class ConstantVelocityPlanner(PlanShorthand):
    """Holds the current speed (|v|) and, optionally, the current yaw rate."""

    requires_scene = False

    def __init__(self, use_yaw_rate: bool = True, num_poses: int = NUM_POSES, interval_s: float = POSE_INTERVAL_S):
        self.use_yaw_rate = use_yaw_rate
        self.num_poses = num_poses
        self.interval_s = interval_s
        self.name = "constant_velocity" + ("_yaw_rate" if use_yaw_rate else "")

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        ego = agent_input.ego
        v = np.asarray(ego.velocity, dtype=np.float64)
        speed = float(np.hypot(v[0], v[1])) if np.all(np.isfinite(v)) else 0.0
        yaw_rate = float(ego.yaw_rate) if (self.use_yaw_rate and np.isfinite(ego.yaw_rate)) else 0.0
        poses = constant_turn_rate_poses(speed, yaw_rate, self.num_poses, self.interval_s)
        return Trajectory(poses=poses, interval_s=self.interval_s, stamp_ns=agent_input.stamp_ns, model_id=self.name)


class ExpertPlanner(PlanShorthand):
    """Returns the scene's logged future trajectory (needs a ``Scene``)."""

    name = "expert"
    requires_scene = True

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        traj = getattr(agent_input.scene, "expert_trajectory", None)
        if traj is None:
            raise ValueError("ExpertPlanner needs a Scene with an expert_trajectory")
        return Trajectory(poses=np.asarray(traj, dtype=np.float64), interval_s=POSE_INTERVAL_S, model_id=self.name)
