"""The agent: ``LatentVLAAgent.compute_trajectory(AgentInput)`` (``core.agent.AbstractAgent``)
chains the stages NAVSIM-style,
and ``build_pipeline_from_dir`` loads it from ``<root>/{bev_backbone,student,planner}``."""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latentvla_ros.core import checkpoint as ckpt
from latentvla_ros.core.agent import AgentInput, require_agent_input
from latentvla_ros.core.config_base import ConfigError
from latentvla_ros.core.obstacle_guard import ObstacleGuard
from latentvla_ros.core.types import BevTokens, LatentPlan, SensorFrame, Trajectory
from latentvla_ros.models.configuration_student import StudentConfig
from latentvla_ros.models.modeling_planner import BEV_SUBDIR, PLANNER_SUBDIR, check_compatible
from latentvla_ros.runtime.registry import STUDENT_SUBDIR
from latentvla_ros.runtime.sizes import check_checkpoint_sizes
from latentvla_ros.runtime.stages import BevFeatureExtractor, LatentReasoner, TrajectoryPlanner

log = logging.getLogger(__name__)


@dataclass
class AgentTimings:
    bev_ms: float = float("nan")
    reason_ms: float = float("nan")
    plan_ms: float = float("nan")
    total_ms: float = float("nan")


@dataclass
class LatentVLAAgent:
    """NAVSIM-style agent: ``compute_trajectory(AgentInput)`` runs BEV -> (student) -> planner.

    ``concurrent=True`` runs the student in a worker thread while the BEV backbone runs
    in the caller's (both only read the frame; torch and onnxruntime release the GIL
    inside kernels), as the node graph does; the default runs them one after the other.
    ``close()`` ends the worker thread.
    """

    bev: BevFeatureExtractor
    reasoner: LatentReasoner | None
    planner: TrajectoryPlanner
    timings: AgentTimings = field(default_factory=AgentTimings)
    last_bev: BevTokens | None = None
    last_plan: LatentPlan | None = None
    concurrent: bool = False
    _worker: ThreadPoolExecutor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        check_compatible(self.bev.config, self.planner.config)
        pcfg = self.planner.config
        if pcfg.uses_context:
            if self.reasoner is None:
                raise ConfigError(f"planner fusion={pcfg.fusion!r} needs a reasoner")
            scfg = getattr(self.reasoner, "config", None)
            if isinstance(scfg, StudentConfig) and (scfg.d_model != pcfg.context_dim or scfg.context_tokens != pcfg.num_context_tokens):
                raise ConfigError(
                    f"student gives {scfg.context_tokens} x {scfg.d_model} embeddings, planner expects "
                    f"{pcfg.num_context_tokens} x {pcfg.context_dim}")

    requires_scene = False  # core.agent.AbstractAgent: sensors and ego status only

    @property
    def name(self) -> str:
        return f"latentvla[{self.planner.config.fusion}]"

    @property
    def model_id(self) -> str:
        parts = [self.bev.model_id, self.planner.model_id]
        if self.reasoner is not None and self.planner.needs_plan:
            parts.insert(1, self.reasoner.model_id)
        return "|".join(parts)

    @property
    def untrained(self) -> bool:
        return self.bev.untrained or self.planner.untrained or (
            self.planner.needs_plan and self.reasoner is not None and self.reasoner.untrained)

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        """``core.agent.AbstractAgent``: the input's sensor frame through the chain (the input's
        route, ego frame, to the planner)."""
        agent_input = require_agent_input(agent_input, self.name)
        frame = agent_input.require_frame(self.name)
        use_reasoner = self.reasoner is not None and self.planner.needs_plan
        t0 = time.perf_counter()
        if use_reasoner and self.concurrent:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent_student")
            pending = self._worker.submit(_timed, self.reasoner.reason, frame)
            bev = self.bev.extract(frame)
            t1 = time.perf_counter()
            plan, reason_ms = pending.result()
            t2 = time.perf_counter()
            bev_ms = (t1 - t0) * 1e3
        else:
            bev = self.bev.extract(frame)
            t1 = time.perf_counter()
            plan = self.reasoner.reason(frame) if use_reasoner else None
            t2 = time.perf_counter()
            bev_ms, reason_ms = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        traj = self.planner.plan(bev, plan, agent_input.route)
        t3 = time.perf_counter()
        self.last_bev, self.last_plan = bev, plan
        self.timings = AgentTimings(bev_ms, reason_ms, (t3 - t2) * 1e3, (t3 - t0) * 1e3)
        return traj

    def close(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None


class GuardedAgent:
    """Any agent on sensor frames, its plans checked by a ``core.obstacle_guard.ObstacleGuard`` against
    the frame's LiDAR (what the trajectory_planner node does with ``obstacle_guard.enabled``).

    ``last_verdict``: the guard's verdict on the last plan; ``reset()`` forgets the tracks;
    ``timings``: the wrapped agent's, the guard's time added to ``plan_ms`` and ``total_ms``
    (``guard_ms``: the guard alone). Setting ``concurrent`` sets the wrapped agent's."""

    requires_scene = False

    def __init__(self, agent: Any, guard: ObstacleGuard):
        self.agent, self.guard = agent, guard
        self.last_verdict = guard.last_verdict
        self.guard_ms = float("nan")

    def __getattr__(self, name: str) -> Any:  # model_id, untrained, reasoner, planner, concurrent, ...
        if name in ("agent", "guard"):
            raise AttributeError(name)
        return getattr(self.agent, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "concurrent":
            setattr(self.agent, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def timings(self) -> AgentTimings:
        t = self.agent.timings
        return AgentTimings(t.bev_ms, t.reason_ms, t.plan_ms + self.guard_ms, t.total_ms + self.guard_ms)

    @property
    def name(self) -> str:
        return f"{self.agent.name}+guard"

    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        agent_input = require_agent_input(agent_input, self.name)
        frame = agent_input.require_frame(self.name)
        traj = self.agent.compute_trajectory(agent_input)
        start = time.perf_counter()
        traj, self.last_verdict = self.guard.filter(frame.lidar_points, frame.stamp_ns, frame.ego, traj,
                                                    agent_input.route)
        self.guard_ms = (time.perf_counter() - start) * 1e3
        return traj

    def observe(self, frame: SensorFrame) -> None:
        """A frame the guard's tracker sees without a plan (e.g. the history before an open-loop scene)."""
        self.guard.tracker.update(frame.lidar_points, frame.stamp_ns, frame.ego)

    def reset(self) -> None:
        self.guard.reset()

    def close(self) -> None:
        if hasattr(self.agent, "close"):
            self.agent.close()


def _timed(fn, *args) -> tuple[Any, float]:
    start = time.perf_counter()
    value = fn(*args)
    return value, (time.perf_counter() - start) * 1e3


def build_pipeline_from_dir(
    checkpoints_root: str | Path | None,
    preset: str = "edge",
    device: str = "cpu",
    torch_threads: int | None = None,
    backend: str = "torch",
    onnx_dir: str | Path | None = None,
) -> LatentVLAAgent:
    """Load ``<root>/bev_backbone``, ``<root>/student``, ``<root>/planner`` where present.

    Missing stages are built untrained from ``preset`` (``model_id`` says
    ``untrained`` and a warning is logged). The student is loaded only when the
    planner fuses it. LAM, teacher and student of ``root`` must agree on the action space
    (``runtime.sizes.check_checkpoint_sizes``: ``SizeMismatchError``). A ``fusion='teacher'`` planner needs the VLM teacher at run
    time, which this function does not build: ConfigError.
    """
    root = Path(checkpoints_root) if checkpoints_root else None
    if root is not None:
        check_checkpoint_sizes(root)  # LAM, teacher and student agree on the action space

    def ckdir(sub: str) -> Path | None:
        if root is not None and (root / sub / ckpt.CONFIG_NAME).is_file():
            return root / sub
        if root is not None:
            log.warning("no checkpoint %s: %s will be UNTRAINED", root / sub, sub)
        return None

    def onnx_path(kind: str) -> Path | None:
        return Path(onnx_dir) / f"{kind}.onnx" if onnx_dir else None

    common = dict(device=device, torch_threads=torch_threads, backend=backend, preset=preset)
    planner = TrajectoryPlanner(checkpoint_dir=ckdir(PLANNER_SUBDIR), onnx_path=onnx_path("planner"), **common)
    if planner.config.fusion == "teacher":
        raise ConfigError("planner fusion='teacher' needs teacher embeddings at run time; build that agent with the teacher")
    bev = BevFeatureExtractor(checkpoint_dir=ckdir(BEV_SUBDIR), onnx_path=onnx_path("bev_backbone"), **common)
    reasoner = None
    if planner.needs_plan:
        reasoner = LatentReasoner(checkpoint_dir=ckdir(STUDENT_SUBDIR), onnx_path=onnx_path("student"), **common)
    return LatentVLAAgent(bev, reasoner, planner)
