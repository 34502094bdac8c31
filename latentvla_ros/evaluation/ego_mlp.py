"""Ego-status MLP baseline (NAVSIM's ``EgoStatusMLPAgent``) as a ``Planner``: ego status -> 8 poses.

The config and network are ``models/configuration_ego_mlp.py`` / ``models/modeling_ego_mlp.py``,
its training ``training/ego_mlp.py``; ``EgoMLPPlanner.from_checkpoint(out_dir)`` is the
``Planner`` used by the benchmarks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentvla_ros.core.types import Trajectory
from latentvla_ros.models.configuration_ego_mlp import MODEL_TYPE
from latentvla_ros.models.modeling_ego_mlp import EgoStatusMLP, load_ego_mlp


class EgoMLPPlanner:
    """``Planner``: ``plan(scene | SensorFrame | EgoState) -> Trajectory`` from the ego status only."""

    name = "ego_mlp"

    def __init__(self, model: EgoStatusMLP, model_id: str = f"{MODEL_TYPE}:untrained"):
        self.model = model.eval()
        self.model_id = model_id

    @classmethod
    def from_checkpoint(cls, directory: str | Path) -> "EgoMLPPlanner":
        model, mid = load_ego_mlp(directory)
        return cls(model, mid)

    @torch.inference_mode()
    def plan(self, scene_or_frame: Any) -> Trajectory:
        from latentvla_ros.evaluation.baselines import ego_state_of

        ego = ego_state_of(scene_or_frame)
        status = np.nan_to_num(ego.status_vector(), nan=0.0, posinf=0.0, neginf=0.0)
        poses = self.model(torch.from_numpy(status)[None])[0].double().numpy()
        stamp = int(getattr(scene_or_frame, "stamp_ns", 0) or 0)
        return Trajectory(poses=poses, interval_s=self.model.config.trajectory_sampling.interval_s, stamp_ns=stamp, model_id=self.model_id)
