"""Ego-status MLP baseline network (NAVSIM's ``EgoStatusMLPAgent``): the 8-d ego status of
``EgoState.status_vector`` (driving command one-hot, velocity, acceleration in the ego frame) ->
8 poses (x, y, heading) at 0.5 s in the ego frame; no perception at all. Checkpoints:
``model.safetensors`` + ``config.json`` (``core.checkpoint``), written by ``training/ego_mlp.py``.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from latentvla_ros.core import checkpoint as ckpt
from latentvla_ros.core.types import EGO_STATUS_DIM
from latentvla_ros.models.configuration_ego_mlp import MODEL_TYPE, EgoMLPConfig


class EgoStatusMLP(nn.Module):
    """(B, 8) ego status -> (B, num_poses, 3) poses; heading = tanh * pi (as TransFuser)."""

    def __init__(self, config: EgoMLPConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = EGO_STATUS_DIM
        for _ in range(config.num_layers):
            layers += [nn.Linear(width, config.hidden_dim), nn.ReLU()]
            width = config.hidden_dim
        layers.append(nn.Linear(width, config.num_poses * 3))
        self.mlp = nn.Sequential(*layers)
        scale = torch.ones(EGO_STATUS_DIM)
        scale[4:6] = 1.0 / config.velocity_scale
        scale[6:8] = 1.0 / config.acceleration_scale
        self.register_buffer("input_scale", scale, persistent=False)

    def forward(self, status: torch.Tensor) -> torch.Tensor:
        out = self.mlp(status * self.input_scale).view(-1, self.config.num_poses, 3)
        xy = out[..., :2] * self.config.position_scale
        heading = torch.tanh(out[..., 2:]) * math.pi
        return torch.cat([xy, heading], dim=-1)


def load_ego_mlp(directory: str | Path) -> tuple[EgoStatusMLP, str]:
    payload = ckpt.read_checkpoint_config(directory)
    cfg = EgoMLPConfig.from_dict(payload["config"])
    model = EgoStatusMLP(cfg)
    ckpt.load_weights_into(model, directory, MODEL_TYPE)
    return model.eval(), ckpt.checkpoint_id(directory, MODEL_TYPE)
