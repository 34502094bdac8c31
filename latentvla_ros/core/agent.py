"""The one agent interface, after NAVSIM's ``AbstractAgent``: ``AgentInput`` in, ``Trajectory`` out.

Every planner the project evaluates or drives with implements ``AbstractAgent``:

- ``compute_trajectory(agent_input) -> Trajectory`` (ego frame, the agent's
  ``TrajectorySampling``);
- ``name`` (a label for tables) and ``requires_scene``: True for agents that read the
  privileged ``scene`` (the PDM-Closed-like reference planner, the logged expert), False
  for those that see only what a car sees (sensors and ego status).

``AgentInput`` carries one step: the ego status always, the sensor frame where there is
one (logs, the simulator, the ROS graph), the mission route ahead in the ego frame where
there is one (a vehicle stack has it from its mission planner; the logs' is
``data/route.py``'s, the closed loop's the episode's route), and the PDMS ``Scene`` (other
agents, map, route; ``evaluation/``) only for agents that require it. ``agent_input_of`` builds one
from a ``SensorFrame``, a ``Scene`` or an ``EgoState`` (the old ``plan(x)`` callers).

Implemented by ``runtime.LatentVLAAgent``, ``evaluation.agents.TeacherFusedAgent``, the
baselines (``evaluation/baselines.py``), ``evaluation.ego_mlp.EgoMLPPlanner`` and
``evaluation.reference_planner.ReferencePlanner``; the closed-loop drivers
(``evaluation/drivers.py``) and ``latentvla evaluate`` call nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np

from latentvla_ros.core.types import EgoState, SensorFrame, Trajectory


@dataclass(frozen=True)
class AgentInput:
    """One step of what an agent sees (NAVSIM's ``AgentInput``)."""

    ego: EgoState
    stamp_ns: int = 0
    frame: SensorFrame | None = None
    """Cameras, LiDAR and ego status as ``sensor_sync`` publishes them (None: no sensors)."""
    scene: Any = None
    """The privileged PDMS ``Scene`` (``evaluation/``), only for ``requires_scene`` agents."""
    route: np.ndarray | None = None
    """The mission route ahead as a polyline IN THE EGO FRAME (K, 2) [m], x forward, y left, any
    spacing (planners resample it: ``core.route.resample_route``); None = no route."""

    def require_frame(self, who: str) -> SensorFrame:
        if self.frame is None:
            raise ValueError(f"{who} needs sensor frames (sensors=True)")
        return self.frame

    def require_scene(self, who: str) -> Any:
        if self.scene is None:
            raise ValueError(f"{who} needs a Scene (privileged input)")
        return self.scene


@runtime_checkable
class AbstractAgent(Protocol):
    """``compute_trajectory(AgentInput) -> Trajectory``; see the module docstring."""

    name: str
    requires_scene: bool

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:  # pragma: no cover - protocol
        ...


def require_agent_input(x: Any, who: str) -> AgentInput:
    """``x`` itself if it is an ``AgentInput``; anything else (a bare ``SensorFrame``) is a
    ``TypeError`` that names ``agent_input_of``: agents take one kind of input."""
    if not isinstance(x, AgentInput):
        raise TypeError(f"{who}.compute_trajectory takes an AgentInput (core.agent.agent_input_of), "
                        f"got {type(x).__name__}")
    return x


def agent_input_of(x: Any, route: np.ndarray | None = None) -> AgentInput:
    """An ``AgentInput`` from an ``AgentInput``, a ``SensorFrame``, a PDMS ``Scene`` (anything
    with an ``ego`` EgoState and no cameras) or a bare ``EgoState``; ``route`` (ego frame, (K, 2))
    is set when given."""
    if route is not None:
        return replace(agent_input_of(x), route=route)
    if isinstance(x, AgentInput):
        return x
    if isinstance(x, EgoState):
        return AgentInput(ego=x)
    if isinstance(x, SensorFrame):
        return AgentInput(ego=x.ego, stamp_ns=int(x.stamp_ns), frame=x)
    ego = getattr(x, "ego", None)
    if isinstance(ego, EgoState):
        return AgentInput(ego=ego, stamp_ns=int(getattr(x, "stamp_ns", 0) or 0), scene=x)
    raise TypeError(f"cannot build an AgentInput from {type(x).__name__}")
