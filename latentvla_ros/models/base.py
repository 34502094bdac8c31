"""The one model base: save / load a model as safetensors with its config beside it.

Every trained network (``BevBackbone``, ``FusedPlanner``, ``LatentStudent``) names its
``MODEL_TYPE`` and ``CONFIG_CLASS`` and inherits ``save_pretrained`` / ``from_pretrained``
(``core/checkpoint.py`` writes and checks the files; nothing is unpickled). A checkpoint of
another model type or with an invalid config is a ``CheckpointError`` naming the folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from latentvla_ros.core import checkpoint as ckpt

M = TypeVar("M", bound="PretrainedModel")


def config_from_payload(config_cls: type, payload: dict[str, Any], directory: str | Path, expected_type: str):
    """Build a config from a checkpoint payload; bad content -> CheckpointError."""
    from latentvla_ros.core.config_base import ConfigError

    if payload.get("model_type") != expected_type:
        raise ckpt.CheckpointError(
            f"checkpoint {directory} holds a {payload.get('model_type')!r}, expected {expected_type!r}"
        )
    try:
        return config_cls.from_dict(payload["config"])
    except (ConfigError, TypeError) as exc:
        raise ckpt.CheckpointError(f"checkpoint {directory}: invalid config: {exc}") from exc


class PretrainedModel(nn.Module):
    """``nn.Module`` with ``self.config`` (a ``ConfigBase``) that saves and loads itself."""

    MODEL_TYPE: ClassVar[str]
    CONFIG_CLASS: ClassVar[type]
    config: Any

    def save_pretrained(self, directory: str | Path, meta: dict[str, Any] | None = None) -> Path:
        return ckpt.save_checkpoint(directory, self, self.MODEL_TYPE, self.config.to_dict(), meta)

    @classmethod
    def from_pretrained(cls: type[M], directory: str | Path, map_location: str | torch.device = "cpu") -> M:
        payload = ckpt.read_checkpoint_config(directory)
        model = cls(config_from_payload(cls.CONFIG_CLASS, payload, directory, cls.MODEL_TYPE))
        ckpt.load_weights_into(model, directory, cls.MODEL_TYPE)
        return model.to(map_location).eval()
