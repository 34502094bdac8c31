"""Checkpoints: ``<dir>/model.safetensors`` + ``<dir>/config.json``.

Only safetensors are ever read (no pickle). ``config.json`` holds
``{"model_type": ..., "config": {...}, "meta": {...}}``; a corrupt or
mismatched checkpoint raises ``CheckpointError`` with a clear message.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit the model."""


def detached_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous copies safetensors accepts: tensors that share memory (tied
    embeddings) are cloned, since safetensors refuses shared storage."""
    seen: set[tuple[int, int]] = set()
    out = {}
    for key, value in state.items():
        tensor = value.detach().cpu().contiguous()
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        out[key] = tensor.clone() if ident in seen else tensor
        seen.add(ident)
    return out


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    model_type: str,
    config: dict[str, Any],
    meta: dict[str, Any] | None = None,
) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = detached_state(model.state_dict())
    tmp = directory / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(directory / WEIGHTS_NAME)
    payload = {"model_type": model_type, "config": config, "meta": meta or {}}
    (directory / CONFIG_NAME).write_text(json.dumps(payload, indent=2, sort_keys=True))
    return directory


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CONFIG_NAME
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise CheckpointError(f"no {CONFIG_NAME} in checkpoint {directory}") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"corrupt {path}: {exc}") from exc
    if not isinstance(payload, dict) or "model_type" not in payload or "config" not in payload:
        raise CheckpointError(f"{path} lacks model_type/config")
    return payload


def load_state_dict(directory: str | Path) -> dict[str, torch.Tensor]:
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"no {WEIGHTS_NAME} in checkpoint {directory}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"corrupt weights {path}: {exc}") from exc


def load_weights_into(model: torch.nn.Module, directory: str | Path, expected_type: str) -> dict[str, Any]:
    """Load weights into ``model``; returns the checkpoint's config payload."""
    payload = read_checkpoint_config(directory)
    if payload["model_type"] != expected_type:
        raise CheckpointError(
            f"checkpoint {directory} holds a {payload['model_type']!r}, expected {expected_type!r}"
        )
    state = load_state_dict(directory)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {directory} does not fit the model: {exc}") from exc
    return payload


def checkpoint_id(directory: str | Path | None, model_type: str) -> str:
    """Short identifier published as ``model_id``: type + weight hash, or 'untrained'."""
    if not directory:
        return f"{model_type}:untrained"
    digest = hashlib.sha256((Path(directory) / WEIGHTS_NAME).read_bytes()).hexdigest()[:12]
    return f"{model_type}:{Path(directory).name}:{digest}"
