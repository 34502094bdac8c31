"""Ego-status MLP baseline (NAVSIM's ``EgoStatusMLPAgent``) as a ``core.agent.AbstractAgent``: ego status -> 8 poses.

The config and network are ``models/configuration_ego_mlp.py`` / ``models/modeling_ego_mlp.py``,
its training ``training/ego_mlp.py``; ``EgoMLPPlanner.from_checkpoint(out_dir)`` is the
agent used by the benchmarks.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from latentvla_ros.core.agent import AgentInput
from latentvla_ros.core.types import Trajectory
from latentvla_ros.evaluation.baselines import PlanShorthand
from latentvla_ros.models.configuration_ego_mlp import MODEL_TYPE
from latentvla_ros.models.modeling_ego_mlp import EgoStatusMLP, load_ego_mlp


class EgoMLPPlanner(PlanShorthand):
    """``core.agent.AbstractAgent`` from the ego status only (``plan(x)``: the shorthand)."""

    name = "ego_mlp"
    requires_scene = False

    def __init__(self, model: EgoStatusMLP, model_id: str = f"{MODEL_TYPE}:untrained"):
        self.model = model.eval()
        self.model_id = model_id

    @classmethod
    def from_checkpoint(cls, directory: str | Path) -> "EgoMLPPlanner":
        model, mid = load_ego_mlp(directory)
        return cls(model, mid)

    @torch.inference_mode()
    def compute_trajectory(self, agent_input: AgentInput) -> Trajectory:
        ego = agent_input.ego
        status = np.nan_to_num(ego.status_vector(), nan=0.0, posinf=0.0, neginf=0.0)
        poses = self.model(torch.from_numpy(status)[None])[0].double().numpy()
        return Trajectory(poses=poses, interval_s=self.model.config.trajectory_sampling.interval_s,
                          stamp_ns=agent_input.stamp_ns, model_id=self.model_id)
