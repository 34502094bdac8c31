"""The model registry: which model and config class each stage kind loads, its ONNX
input/output names, loading from a checkpoint or a preset, and example inputs."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from latentvla_ros.core import checkpoint as ckpt
from latentvla_ros.core.config_base import ConfigBase, ConfigError
from latentvla_ros.models.configuration_bev import BevBackboneConfig
from latentvla_ros.models.configuration_planner import PlannerConfig
from latentvla_ros.models.configuration_student import StudentConfig
from latentvla_ros.models.modeling_bev import BevBackbone
from latentvla_ros.models.modeling_planner import FusedPlanner
from latentvla_ros.models.modeling_student import LatentStudent

log = logging.getLogger(__name__)

STUDENT_SUBDIR = "student"


@dataclass(frozen=True)
class ModelSpec:
    """``inputs``: every input name the model kind can take, in forward order; a model whose config
    leaves one out (a planner without fusion: no ``context``; ``route_points`` = 0: no ``route`` /
    ``route_valid``) takes the others (``example_inputs`` gives the ones it takes)."""

    model_cls: type[nn.Module]
    config_cls: type[ConfigBase]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


MODEL_SPECS: dict[str, ModelSpec] = {
    "bev_backbone": ModelSpec(BevBackbone, BevBackboneConfig, ("image", "lidar_bev", "ego_status"), ("tokens",)),
    "student": ModelSpec(LatentStudent, StudentConfig, ("image", "ego_status"),
                         ("logits", "action_embeddings", "visual_embeddings")),
    "planner": ModelSpec(FusedPlanner, PlannerConfig, ("bev_tokens", "ego_status", "context", "route", "route_valid"),
                         ("poses",)),
}


def load_model(
    model_kind: str,
    checkpoint_dir: str | Path | None = None,
    config: ConfigBase | None = None,
    preset: str = "edge",
) -> tuple[nn.Module, ConfigBase, str]:
    """Build a model (eval mode, CPU) from a checkpoint, or untrained from ``config``/``preset``.

    Returns (model, config, model_id). With a checkpoint, the config stored in its
    ``config.json`` is used (a differing ``config`` argument is ignored with a warning).
    """
    spec = model_spec(model_kind)
    if checkpoint_dir:
        model = spec.model_cls.from_pretrained(checkpoint_dir)
        if config is not None and config != model.config:
            log.warning("%s: config argument differs from checkpoint %s; using the checkpoint's", model_kind, checkpoint_dir)
        return model.eval(), model.config, ckpt.checkpoint_id(checkpoint_dir, model_kind)
    config = config if config is not None else spec.config_cls.preset(preset)
    if not isinstance(config, spec.config_cls):
        raise ConfigError(f"{model_kind}: expected a {spec.config_cls.__name__}, got {type(config).__name__}")
    return spec.model_cls(config).eval(), config, ckpt.checkpoint_id(None, model_kind)


def model_spec(model_kind: str) -> ModelSpec:
    if model_kind not in MODEL_SPECS:
        raise ValueError(f"unknown model kind {model_kind!r}, expected one of {sorted(MODEL_SPECS)}")
    return MODEL_SPECS[model_kind]


def example_inputs(model_kind: str, config: ConfigBase, batch_size: int = 1) -> dict[str, torch.Tensor]:
    """Random inputs of the right shapes (ONNX export, benchmarks, tests)."""
    g = torch.Generator().manual_seed(0)
    if model_kind == "bev_backbone":
        assert isinstance(config, BevBackboneConfig)
        h, w = config.image_size
        lidar = (torch.rand(batch_size, 1, config.lidar_grid, config.lidar_grid, generator=g) > 0.9).float()
        return {"image": torch.rand(batch_size, 3, h, w, generator=g), "lidar_bev": lidar,
                "ego_status": torch.randn(batch_size, 8, generator=g)}
    if model_kind == "student":
        assert isinstance(config, StudentConfig)
        h, w = config.image_size
        return {"image": torch.rand(batch_size, 3, h, w, generator=g), "ego_status": torch.randn(batch_size, 8, generator=g)}
    if model_kind == "planner":
        assert isinstance(config, PlannerConfig)
        out = {"bev_tokens": torch.randn(batch_size, config.num_bev_tokens, config.bev_token_dim, generator=g),
               "ego_status": torch.randn(batch_size, config.ego_status_dim, generator=g)}
        if config.uses_context:
            out["context"] = torch.randn(batch_size, config.num_context_tokens, config.context_dim, generator=g)
        if config.uses_route:  # a gentle curve ahead, every sample valid
            s = config.route_spacing_m * torch.arange(1, config.route_points + 1, dtype=torch.float32)
            route = torch.stack([s, 0.01 * s * s], dim=-1)
            out["route"] = route.expand(batch_size, -1, -1) + 0.1 * torch.randn(batch_size, config.route_points, 2, generator=g)
            out["route_valid"] = torch.ones(batch_size)
        return out
    raise ValueError(f"unknown model kind {model_kind!r}")
