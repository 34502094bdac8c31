"""Our planner variants as agents built from the core stages the ROS nodes run, plus the
fusion ablations (issue 13 item 5), for open loop and the direct closed-loop path.

``build_agent(fusion, bev=..., planner=..., student=..., teacher=..., ablation=...)``:

- fusion 'none' / 'student': ``runtime.LatentVLAAgent`` (BEV backbone -> student
  -> fused planner), exactly the stages of the bev_features, latent_reasoner and
  trajectory_planner nodes;
- fusion 'teacher': ``TeacherFusedAgent`` (BEV backbone + the VLM teacher's visual and
  action embeddings + the teacher-fused planner);
- ``ablation`` (student fusion only) changes only what the planner is given:
  'zeroed' = the student's action embeddings set to zero (visual embeddings kept);
  'shuffled' = the action tokens (ids, probabilities, embeddings) of another frame,
  drawn uniformly from the plans of the episode so far (``reset(seed)`` per episode
  empties the bank and reseeds the draw, so every episode is reproducible on its own;
  the first frame can only draw itself, later ones rarely do).

An empty checkpoint path builds that stage untrained (flagged in ``model_id``).
"""
from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any

import numpy as np

from latentvla_ros.core.agent import require_agent_input

ABLATIONS = ("", "zeroed", "shuffled")
ABLATION_BANK = 256


class TeacherFusedAgent:
    """BEV backbone + VLM teacher (``runtime.teacher.TeacherReasoner``: its visual + action
    embeddings) + teacher-fused planner."""

    requires_scene = False  # core.agent.AbstractAgent: sensors and ego status only

    def __init__(self, bev: Any, teacher: Any, planner: Any):
        self.bev, self.teacher, self.planner = bev, teacher, planner
        self.name = "latentvla[teacher]"

    @property
    def model_id(self) -> str:
        return "|".join([self.bev.model_id, self.teacher.model_id, self.planner.model_id])

    def compute_trajectory(self, agent_input: Any) -> Any:
        agent_input = require_agent_input(agent_input, self.name)
        frame = agent_input.require_frame(self.name)
        bev = self.bev.extract(frame)
        return self.planner.plan(bev, self.teacher.reason(frame), agent_input.route)


class AblatedReasoner:
    """The student with its action tokens zeroed or shuffled across frames (see module doc)."""

    def __init__(self, reasoner: Any, mode: str, seed: int = 0, bank: int = ABLATION_BANK):
        if mode not in ("zeroed", "shuffled"):
            raise ValueError(f"ablation must be 'zeroed' or 'shuffled', got {mode!r}")
        self.reasoner, self.mode = reasoner, mode
        self._bank: deque = deque(maxlen=int(bank))
        self.reset(seed)

    def reset(self, seed: int = 0) -> None:
        """A new episode: empty bank, draws seeded by ``seed``."""
        self._rng = np.random.default_rng(int(seed))
        self._bank.clear()

    @property
    def config(self) -> Any:
        return getattr(self.reasoner, "config", None)

    @property
    def untrained(self) -> bool:
        return bool(getattr(self.reasoner, "untrained", False))

    @property
    def model_id(self) -> str:
        return f"{self.reasoner.model_id}+{self.mode}"

    def reason(self, frame: Any) -> Any:
        plan = self.reasoner.reason(frame)
        if self.mode == "zeroed":
            return replace(plan, action_embeddings=np.zeros_like(plan.action_embeddings))
        self._bank.append(plan)
        other = self._bank[int(self._rng.integers(len(self._bank)))]
        return replace(plan, token_ids=other.token_ids, token_probabilities=other.token_probabilities,
                       action_embeddings=other.action_embeddings)


def build_agent(fusion: str, *, bev: str = "", planner: str = "", student: str = "", teacher: str = "",
                preset: str = "edge", ablation: str = "", guard: bool | dict = True) -> Any:
    """An agent of the planner variant ``fusion`` from checkpoint directories ('' = untrained);
    ``guard``: its plans checked by the LiDAR obstacle guard (``runtime.agent.GuardedAgent``), as the
    trajectory_planner node checks them by default; a dict: a guard with these ``GuardConfig`` fields changed."""
    agent = _build_agent(fusion, bev=bev, planner=planner, student=student, teacher=teacher, preset=preset,
                         ablation=ablation)
    if not guard:
        return agent
    from latentvla_ros.core.obstacle_guard import GuardConfig, ObstacleGuard
    from latentvla_ros.runtime.agent import GuardedAgent

    return GuardedAgent(agent, ObstacleGuard(GuardConfig(**guard) if isinstance(guard, dict) else None))


def _build_agent(fusion: str, *, bev: str, planner: str, student: str, teacher: str, preset: str, ablation: str) -> Any:
    from latentvla_ros.models.configuration_planner import PlannerConfig
    from latentvla_ros.runtime import BevFeatureExtractor, LatentReasoner, LatentVLAAgent, TrajectoryPlanner

    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; expected one of {ABLATIONS}")
    if ablation and fusion != "student":
        raise ValueError(f"the {ablation!r} ablation changes the student's tokens: needs fusion='student'")
    common = dict(preset=preset)
    bev_stage = BevFeatureExtractor(checkpoint_dir=bev or None, **common)
    if fusion == "teacher":
        from latentvla_ros.runtime.teacher import TeacherReasoner

        vlm = TeacherReasoner.load(teacher or None, device="cpu")
        pcfg = None if planner else PlannerConfig.preset(
            preset, fusion="teacher", context_dim=vlm.hidden_size, num_context_tokens=vlm.config.context_tokens)
        plan_stage = TrajectoryPlanner(config=pcfg, checkpoint_dir=planner or None, **common)
        return TeacherFusedAgent(bev_stage, vlm, plan_stage)
    pcfg = None if planner else PlannerConfig.preset(preset, fusion=fusion)
    plan_stage = TrajectoryPlanner(config=pcfg, checkpoint_dir=planner or None, **common)
    reasoner = LatentReasoner(checkpoint_dir=student or None, **common) if plan_stage.needs_plan else None
    if ablation and reasoner is not None:
        reasoner = AblatedReasoner(reasoner, ablation)
    return LatentVLAAgent(bev_stage, reasoner, plan_stage)


def build_agent_from_graph(graph: dict) -> Any:
    """``build_agent`` from ``apps.sim_bridge.GraphVariant`` keyword arguments (+ ``ablation``)."""
    return build_agent(graph.get("fusion", "student"), bev=graph.get("bev_checkpoint", ""),
                       planner=graph.get("planner_checkpoint", ""), student=graph.get("student_checkpoint", ""),
                       teacher=graph.get("teacher_path", ""), preset=graph.get("preset", "edge"),
                       ablation=graph.get("ablation", ""), guard=_guard_option(graph.get("guard", True)))


def _guard_option(guard: Any) -> bool | dict:
    return dict(guard) if isinstance(guard, dict) else bool(guard)
