"""Config of the ego-status MLP baseline (NAVSIM's ``EgoStatusMLPAgent``): ego status -> 8 poses.

The network is ``modeling_ego_mlp.py``, its training ``training/ego_mlp.py``, the planner the
benchmarks drive with ``evaluation/ego_mlp.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from latentvla_ros.core.config_base import ConfigBase, require
from latentvla_ros.core.sizes import DEFAULT_TRAJECTORY_SAMPLING, TrajectorySampling

MODEL_TYPE = "ego_mlp"


@dataclass
class EgoMLPConfig(ConfigBase):
    hidden_dim: int = 256
    """Width of the hidden layers (NAVSIM's agent uses 512)."""
    num_layers: int = 2
    """Hidden layers (Linear + ReLU)."""
    num_poses: int = DEFAULT_TRAJECTORY_SAMPLING.num_poses
    """Output poses, at the logs' interval (``DEFAULT_TRAJECTORY_SAMPLING.interval_s``)."""
    velocity_scale: float = 10.0
    """Velocities are divided by this before the MLP [m/s]."""
    acceleration_scale: float = 3.0
    """Accelerations are divided by this before the MLP [m/s^2]."""
    position_scale: float = 30.0
    """The MLP predicts x, y divided by this [m]."""
    epochs: int = 30
    """Training epochs."""
    batch_size: int = 256
    """Training batch size."""
    lr: float = 2e-3
    """Adam learning rate (cosine decay to 5 %)."""
    weight_decay: float = 0.0
    """Adam weight decay."""
    seed: int = 0
    """Initialisation and shuffling seed."""

    @property
    def trajectory_sampling(self) -> TrajectorySampling:
        """Poses at the interval of the logs' future trajectories it is trained on."""
        return TrajectorySampling(self.num_poses, DEFAULT_TRAJECTORY_SAMPLING.interval_s)

    def validate(self) -> None:
        require(self.hidden_dim >= 1, "hidden_dim", "must be >= 1")
        require(self.num_layers >= 1, "num_layers", "must be >= 1")
        require(self.num_poses >= 1, "num_poses", "must be >= 1")
        for name in ("velocity_scale", "acceleration_scale", "position_scale", "lr"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, name, "must be a positive number")
        require(self.epochs >= 1, "epochs", "must be >= 1")
        require(self.batch_size >= 1, "batch_size", "must be >= 1")
        require(self.weight_decay >= 0, "weight_decay", "must be >= 0")
