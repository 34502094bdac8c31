"""Closed-loop drivers and methods: what turns an observation into a trajectory.

- ``ExpertDriver``: the IDM/MOBIL expert drives the ego itself (the ceiling).
- ``PlannerDriver``: a baseline (a ``core.agent.AbstractAgent``) on the sensor frame or,
  for agents that require it, on a PDMS ``Scene`` of the env state (the reference planner).
- ``AgentDriver``: our planner variants through the same core objects the ROS nodes run
  (``runtime`` stages), with the frame built the way ``sensor_sync`` builds it: the
  ego acceleration from the odometry velocity by the node's ``AccelerationEstimator``
  (its schema defaults), not the simulator's finite differences, so the direct path and
  the ROS graph see the same inputs and produce the same plans (``test_closed_loop``).
- the ROS graph itself is ``apps/sim_bridge.py``'s ``RosGraphDriver`` (rclpy; above evaluation/).

Every agent gets the episode's mission route in the ego frame as ``AgentInput.route``
(``HighwayClosedLoopEnv.route_ego``: the centreline the scene and the route progress use),
as a vehicle stack gets it from its mission planner.

``ClosedLoopMethod`` is the picklable description a worker turns into a driver;
``run_method_episodes`` runs one method on a list of (scenario, seed) episodes.
Pure: no rclpy import.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from latentvla_ros.core.agent import agent_input_of
from latentvla_ros.core.types import EgoState, SensorFrame, Trajectory
from latentvla_ros.evaluation.closed_loop import (
    ClosedLoopConfig,
    EpisodeResult,
    HighwayClosedLoopEnv,
    Observation,
    highway_tracker_config,
    run_episode,
)


class Driver(Protocol):
    """Turns an observation into a trajectory (None: the env's ego drives itself)."""

    name: str

    def reset(self, env: HighwayClosedLoopEnv) -> None:  # pragma: no cover - protocol
        ...

    def plan(self, obs: Observation) -> Trajectory | None:  # pragma: no cover - protocol
        ...


class ExpertDriver:
    """The IDM/MOBIL expert (needs ``HighwayClosedLoopEnv(expert=True)``)."""

    name = "expert"
    needs_expert_env = True
    needs_sensors = False

    def reset(self, env: HighwayClosedLoopEnv) -> None:
        if not env.expert:
            raise ValueError("ExpertDriver needs HighwayClosedLoopEnv(expert=True)")

    def plan(self, obs: Observation) -> Trajectory | None:
        return None


class PlannerDriver:
    """Any ``core.agent.AbstractAgent``, called directly with the sensor frame, or with a
    PDMS ``Scene`` built from the env state (``input='scene'``; the default for agents
    whose ``requires_scene`` is True).

    ``replan_every`` > 1 re-plans every n-th step and otherwise follows the last plan
    shifted to the current pose (for planners too slow for 10 Hz on a CPU).
    """

    needs_expert_env = False
    needs_sensors = True

    def __init__(self, planner: Any, input: str | None = None, name: str | None = None, replan_every: int = 1):
        input = input or ("scene" if getattr(planner, "requires_scene", False) else "frame")
        if input not in ("frame", "scene"):
            raise ValueError("input must be 'frame' or 'scene'")
        self.planner = planner
        self.input = input
        self.name = name or getattr(planner, "name", type(planner).__name__)
        self.replan_every = max(int(replan_every), 1)
        self._env: HighwayClosedLoopEnv | None = None
        self._last: tuple[np.ndarray, Trajectory] | None = None

    def reset(self, env: HighwayClosedLoopEnv) -> None:
        self._env = env
        self._last = None

    def plan(self, obs: Observation) -> Trajectory | None:
        if self._last is not None and obs.step % self.replan_every != 0:
            return _shift_plan(self._last[1], self._last[0], obs.pose)
        route = self._env.route_ego(obs) if self._env is not None else None
        if self.input == "scene":
            assert self._env is not None
            traj = self.planner.compute_trajectory(agent_input_of(self._env.scene(obs), route=route))
        else:
            if obs.frame is None:
                raise ValueError(f"{self.name} needs sensor frames (sensors=True)")
            traj = self.planner.compute_trajectory(agent_input_of(obs.frame, route=route))
        traj.stamp_ns = obs.stamp_ns
        self._last = (obs.pose.copy(), traj)
        return traj


def sensor_sync_acceleration_estimator() -> Any:
    """The ``AccelerationEstimator`` the sensor_sync node runs (its schema defaults)."""
    from latentvla_ros.core.ego_motion import AccelerationEstimator
    from latentvla_ros.ros.contracts.parameters import load_schema, parse_parameters

    p = parse_parameters(load_schema("sensor_sync"), "sensor_sync", {})
    return AccelerationEstimator(tau_s=p.acceleration_filter_tau_s, max_gap_s=p.time_jump_reset_s)


class AgentDriver:
    """A ``runtime.LatentVLAAgent`` (or any ``core.agent.AbstractAgent`` on sensor frames)
    called directly, on the frame the node graph would build (no ROS).

    ``graph_frames=True`` (default) replaces the frame's ego acceleration with the
    sensor_sync node's estimate from the odometry velocity (reset per episode, as the
    node resets on the 1000 s stamp jump between episodes); False passes the simulator's
    frame unchanged.
    """

    needs_expert_env = False
    needs_sensors = True

    def __init__(self, agent: Any, name: str | None = None, graph_frames: bool = True):
        self.agent = agent
        self.name = name or agent.name
        self.graph_frames = graph_frames
        self._accel: Any = None
        self._env: HighwayClosedLoopEnv | None = None

    def reset(self, env: HighwayClosedLoopEnv) -> None:
        self._env = env
        self._accel = sensor_sync_acceleration_estimator() if self.graph_frames else None
        reasoner = getattr(self.agent, "reasoner", None)
        if hasattr(reasoner, "reset"):  # a fusion ablation: reseeded per episode
            reasoner.reset(env.seed)
        guard = getattr(self.agent, "guard", None)
        if guard is not None:  # the obstacle guard's tracks belong to the last episode
            guard.reset()

    def graph_frame(self, obs: Observation) -> SensorFrame:
        """``obs.frame`` as the graph's sensor_sync would publish it."""
        frame = obs.frame
        if frame is None:
            raise ValueError(f"{self.name} needs sensor frames (sensors=True)")
        if self._accel is None:
            return frame
        ego = obs.ego
        velocity = np.asarray(ego.velocity, dtype=np.float64)
        acc = self._accel.update(int(obs.stamp_ns), velocity, float(ego.yaw_rate))
        return replace(frame, ego=EgoState(velocity=np.asarray(ego.velocity, dtype=np.float32).copy(),
                                           acceleration=np.asarray(acc, dtype=np.float32),
                                           yaw_rate=float(ego.yaw_rate), command=ego.command))

    @property
    def guard_action(self) -> str | None:
        """The obstacle guard's verdict on the last plan ('clear': the model's plan went out unchanged; 'go',
        'stop', 'slow', 'follow', 'yield', 'caution', 'limit': the guard changed it), None without a guard."""
        verdict = getattr(self.agent, "last_verdict", None)
        return getattr(verdict, "action", None)

    def plan(self, obs: Observation) -> Trajectory | None:
        route = self._env.route_ego(obs) if self._env is not None else None
        traj = self.agent.compute_trajectory(agent_input_of(self.graph_frame(obs), route=route))
        traj.stamp_ns = obs.stamp_ns
        return traj


def _shift_plan(traj: Trajectory, plan_pose: np.ndarray, pose: np.ndarray) -> Trajectory:
    """The poses of ``traj`` (planned at ``plan_pose``) in the ego frame at ``pose``."""
    from latentvla_ros.evaluation.geometry import ego_to_world_poses, world_to_ego_poses

    world = ego_to_world_poses(np.asarray(plan_pose, dtype=np.float64), np.asarray(traj.poses, dtype=np.float64))
    return Trajectory(poses=world_to_ego_poses(np.asarray(pose, dtype=np.float64), world), interval_s=traj.interval_s,
                      stamp_ns=traj.stamp_ns, is_fallback=traj.is_fallback, fallback_reason=traj.fallback_reason,
                      model_id=traj.model_id)


# ----------------------------------------------------------------------------- methods
@dataclass
class ClosedLoopMethod:
    """A picklable description of a closed-loop method (built into a driver in the worker).

    ``kind``: 'expert', 'constant_velocity', 'ego_mlp' (``checkpoint``), 'reference',
    'agent' (the core stages directly, no ROS; ``graph`` holds the same
    ``apps.sim_bridge.GraphVariant`` keyword arguments as 'ros', plus ``ablation``), or 'ros'
    (the node graph).
    """

    name: str
    kind: str
    checkpoint: str | None = None
    graph: dict = field(default_factory=dict)
    replan_every: int = 1
    options: dict = field(default_factory=dict)

    @property
    def needs_expert_env(self) -> bool:
        return self.kind == "expert"


_DRIVERS: dict[str, Any] = {}


def build_driver(method: ClosedLoopMethod) -> Any:
    """Driver for a non-ROS method (the ROS driver comes from ``apps/sim_bridge.py``), built once
    per worker process (checkpoints load once; drivers reset per episode)."""
    key = repr(method)
    if key not in _DRIVERS:
        _DRIVERS[key] = _new_driver(method)
    return _DRIVERS[key]


def _new_driver(method: ClosedLoopMethod) -> Any:
    if method.kind == "expert":
        return ExpertDriver()
    if method.kind == "constant_velocity":
        from latentvla_ros.evaluation.baselines import ConstantVelocityPlanner

        return PlannerDriver(ConstantVelocityPlanner(use_yaw_rate=bool(method.options.get("use_yaw_rate", False))),
                             name=method.name)
    if method.kind == "ego_mlp":
        from latentvla_ros.evaluation.ego_mlp import EgoMLPPlanner

        return PlannerDriver(EgoMLPPlanner.from_checkpoint(method.checkpoint), name=method.name)
    if method.kind == "reference":
        from latentvla_ros.evaluation.reference_planner import ReferencePlanner, ReferencePlannerConfig

        cfg = ReferencePlannerConfig(**method.options.get("reference", {}))
        return PlannerDriver(ReferencePlanner(cfg), input="scene", name=method.name, replan_every=method.replan_every)
    if method.kind == "agent":
        from latentvla_ros.evaluation.agents import build_agent_from_graph

        return AgentDriver(build_agent_from_graph(method.graph), name=method.name)
    raise ValueError(f"no direct driver for method kind {method.kind!r}")


EPISODE_STAMP_GAP_NS = 1000 * 1_000_000_000


def episode_stamp_base(k: int, stamp_base_ns: int = 0) -> int:
    """First stamp of the k-th episode of a session: ``(k + 1) * 1000 s`` after
    ``stamp_base_ns``, a jump the graph's acceleration estimator treats as a new drive --
    also for the first episode, after the session's start-up probe frames (stamped 1 ms,
    2 ms, ...; an episode starting at 1 s was estimated from the probes' standstill)."""
    return int(stamp_base_ns) + (int(k) + 1) * EPISODE_STAMP_GAP_NS


def run_method_episodes(method: ClosedLoopMethod, episodes: Sequence[tuple[str, int]],
                        config: ClosedLoopConfig | None = None, *, stamp_base_ns: int = 0,
                        on_episode: Any = None) -> list[EpisodeResult]:
    """Run a direct (non-ROS) ``method`` on every (scenario, seed); the node graph ('ros') runs
    from ``apps.sim_bridge.run_method_episodes`` (one graph session for all episodes).

    Episode k's stamps start at ``episode_stamp_base(k, stamp_base_ns)``.
    ``on_episode(env, result)`` is called after each episode (the closed env still holds
    its map, route and last observation).
    """
    if method.kind == "ros":
        raise ValueError(f"{method.name}: the node-graph method ('ros') runs from apps.sim_bridge.run_method_episodes "
                         "(evaluation/ does not start ROS graphs)")
    driver = build_driver(method)
    return drive_episodes(method, episodes, lambda: driver, config, sensors=getattr(driver, "needs_sensors", True),
                          stamp_base_ns=stamp_base_ns, on_episode=on_episode)


def drive_episodes(method: ClosedLoopMethod, episodes: Sequence[tuple[str, int]], driver: Any,
                   config: ClosedLoopConfig | None = None, *, sensors: bool = True, stamp_base_ns: int = 0,
                   on_episode: Any = None) -> list[EpisodeResult]:
    """Run every (scenario, seed) of ``episodes`` with the driver ``driver()`` returns for each
    episode (episode k's stamps start at ``episode_stamp_base(k, stamp_base_ns)``)."""
    cfg = config or ClosedLoopConfig()
    tracker = highway_tracker_config(**method.options.get("tracker", {}))
    results: list[EpisodeResult] = []
    for k, (scenario, seed) in enumerate(episodes):
        env = HighwayClosedLoopEnv(scenario, seed, cfg, expert=method.needs_expert_env, sensors=sensors,
                                   stamp_base_ns=episode_stamp_base(k, stamp_base_ns))
        results.append(run_episode(env, driver(), tracker))
        if on_episode is not None:
            on_episode(env, results[-1])
    return results
