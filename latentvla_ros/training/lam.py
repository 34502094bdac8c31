"""Latent action model training and labeling.

``train_lam`` runs both LAM stages with the shared ``train_loop`` (progress bars,
CSV/TensorBoard logs, resume, seeding, torchrun):

- ``<out_dir>/lam_stage1/``: stage-1 run (``metrics.csv``, ``train_state.*``,
  ``checkpoint/``): environmental IDM + codebook + FDM, the FDM given the ego's
  own motion (the IDM never is).
- ``<out_dir>/lam_stage2/``: stage-2 run: environmental parts frozen, ego IDM +
  new codebook + FDM from both codes and no ego motion.
- ``<out_dir>/lam/``: the final checkpoint (``model.safetensors`` + ``config.json``,
  with the atlas's ``code_names``), ``eval.json`` and the atlas (training/lam_atlas.py).

Every epoch logs code usage (``env/codes_used``, ``env/usage``,
``env/perplexity`` and the same for ``ego/`` in stage 2) and restarts the dead
codes of the codebook being trained (``restarted_codes``).

``label_logs_with_lam`` writes ``latent_ego_codes.npy`` and
``latent_env_codes.npy`` (int16 (T,), code of transition t -> t + stride, -1
where t + stride is outside the log) into each log directory.

Data access lives in training/lam_data.py, the held-out evaluation in
training/lam_eval.py; both are re-exported here.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from latentvla_ros.core.checkpoint import save_checkpoint
from latentvla_ros.data.label_sizes import latent_codes_meta, record_label_sizes
from latentvla_ros.models.configuration_lam import LamConfig
from latentvla_ros.models.modeling_lam import MODEL_TYPE, LatentActionModel, codebook_stats, load_lam
from latentvla_ros.training.common import TrainConfig, seed_everything, setup_distributed, train_loop
from latentvla_ros.training.lam_data import (
    LamDataError,
    LamTransitionDataset,
    LogArrays,
    clear_frame_cache,
    downsample_frames,
    ego_motion,
    encode_log,
    load_log_arrays,
    resolve_log_dirs,
    split_transitions,
)

EGO_CODES_FILE = "latent_ego_codes.npy"
ENV_CODES_FILE = "latent_env_codes.npy"

# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------
def default_train_configs(preset: str = "edge") -> tuple[TrainConfig, TrainConfig]:
    """Stage-1 and stage-2 optimisation defaults for a preset."""
    if preset == "paper":
        cfg = TrainConfig(epochs=30, batch_size=128, lr=3e-4, warmup_steps=500, grad_clip=2.0)
    else:
        cfg = TrainConfig(epochs=6, batch_size=64, lr=1e-3, warmup_steps=100, grad_clip=2.0)
    return cfg, dataclasses.replace(cfg)


def lam_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    """``train_loop`` loss: the model's stage loss; logs recon MSE, copy baseline, commitment, batch perplexity."""
    out = model(batch["frames_t"], batch["frames_next"], ego_motion=batch["ego_motion"],
                motion_valid=batch["motion_valid"], trajectory=batch["trajectory"], ego_status=batch["ego_status"],
                future_valid=batch["future_valid"], supervised=batch["supervised"], odometry=batch["odometry"])
    with torch.no_grad():
        cur = LatentActionModel.prepare_frames(batch["frames_t"])
        nxt = LatentActionModel.prepare_frames(batch["frames_next"])
        copy_mse = float(F.mse_loss(cur, nxt))
    return out["loss"], {
        "recon_mse": float(out["recon_mse"]),
        "recon_fit": float(out["recon_fit"]),
        "copy_mse": copy_mse,
        "commitment": float(out["commitment"]),
        "batch_perplexity": float(out["perplexity"]),
        "usage_loss": float(out["usage_loss"]),
        "ego_supervision": float(out["ego_supervision"]),
    }


def _steps(num_items: int, cfg: TrainConfig, world_size: int = 1) -> tuple[int, int]:
    """(steps per epoch, total steps) that ``train_loop`` runs (``max_steps`` may end training early)."""
    per_rank = math.ceil(num_items / world_size) if world_size > 1 else num_items
    drop_last = num_items > cfg.batch_size
    steps_per_epoch = max(1, per_rank // cfg.batch_size if drop_last else math.ceil(per_rank / cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    return steps_per_epoch, total


def last_epoch_index(num_items: int, cfg: TrainConfig, world_size: int = 1) -> int:
    """Index of the last epoch ``train_loop`` runs (``max_steps`` may end training early)."""
    steps_per_epoch, total = _steps(num_items, cfg, world_size)
    return min(cfg.epochs, math.ceil(total / steps_per_epoch)) - 1


def schedule_window_restarts(model: LatentActionModel, num_items: int, cfg: TrainConfig, world_size: int = 1) -> None:
    """Dead-code restarts within epochs for the codebook the current stage trains
    (``dead_code_window_steps``), during the first ``dead_code_window_until`` of its steps."""
    c = model.config
    total = _steps(num_items, cfg, world_size)[1]
    model.active_quantizer().schedule_window_restarts(c.dead_code_window_steps, c.dead_code_threshold,
                                                      int(c.dead_code_window_until * total))


def make_epoch_end(stage: int, dead_code_threshold: int, final_epoch: int | None = None):
    """on_epoch_end: log usage/perplexity of the codebooks in use, restart dead codes
    (except after ``final_epoch``: the decoder never saw freshly restarted codes), reset usage."""

    def on_epoch_end(epoch: int, model: torch.nn.Module) -> dict[str, float]:
        m: LatentActionModel = model.module if hasattr(model, "module") else model  # type: ignore[assignment]
        metrics: dict[str, float] = {}
        names = [("env", m.vq_env)] + ([("ego", m.vq_ego)] if stage == 2 else [])
        for name, vq in names:
            for k, v in codebook_stats(vq).items():
                metrics[f"{name}/{k}"] = v
        active = m.vq_env if stage == 1 else m.vq_ego
        threshold = 0 if final_epoch is not None and epoch >= final_epoch else dead_code_threshold
        metrics["restarted_codes"] = float(active.restart_dead_codes(threshold))
        metrics["window_restarted_codes"] = float(active.window_restarted)
        m.vq_env.reset_usage()
        m.vq_ego.reset_usage()
        return metrics

    return on_epoch_end


def _model_config(preset: str, model_config: LamConfig | None) -> LamConfig:
    return model_config if model_config is not None else LamConfig.preset(preset)


def train_lam(
    log_dirs: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    preset: str = "edge",
    train_cfg_stage1: TrainConfig | None = None,
    train_cfg_stage2: TrainConfig | None = None,
    *,
    model_config: LamConfig | None = None,
    holdout_fraction: float = 0.2,
    resume: bool = True,
    show_progress: bool = True,
    label: bool = True,
    evaluate: bool = True,
) -> dict[str, Any]:
    """Train both LAM stages; save ``<out_dir>/lam``; optionally label the logs and evaluate.

    Returns {'checkpoint', 'stage1', 'stage2' (train_loop results), 'labels', 'eval'}.
    Under torchrun every rank trains; labeling and evaluation run on rank 0 only.
    """
    out_dir = Path(out_dir)
    config = _model_config(preset, model_config)
    d1, d2 = default_train_configs(preset)
    cfg1 = train_cfg_stage1 or d1
    cfg2 = train_cfg_stage2 or d2
    dirs = resolve_log_dirs(log_dirs)
    info = setup_distributed()
    if cfg1.torch_threads:
        torch.set_num_threads(cfg1.torch_threads)

    logs = [load_log_arrays(p, config) for p in dirs]
    dataset = LamTransitionDataset(dirs, config, split="train", holdout_fraction=holdout_fraction, logs=logs)
    if len(dataset) == 0:
        raise LamDataError("no training transitions (logs too short or everything held out)")

    seed_everything(cfg1.seed)
    model = LatentActionModel(config)
    final_dir = out_dir / "lam"
    stage1_dir, stage2_dir = out_dir / "lam_stage1", out_dir / "lam_stage2"
    base_meta = {
        "holdout_fraction": holdout_fraction,
        "frame_stride": config.frame_stride,
        "train_logs": [str(p) for p in dirs],
        "preset": preset,
        "train_cfg_stage1": cfg1.to_dict(),
        "train_cfg_stage2": cfg2.to_dict(),
    }

    def save_stage1(m: torch.nn.Module, d: Path) -> None:
        save_checkpoint(d / "checkpoint", m, MODEL_TYPE, config.to_dict(), {**base_meta, "stage": 1})

    def save_stage2(m: torch.nn.Module, d: Path) -> None:
        save_checkpoint(final_dir, m, MODEL_TYPE, config.to_dict(), {**base_meta, "stage": 2})

    model.set_stage(1)
    schedule_window_restarts(model, len(dataset), cfg1, info.world_size)
    result1 = train_loop(name="lam-stage1", model=model, dataset=dataset, loss_fn=lam_loss, cfg=cfg1,
                         out_dir=stage1_dir, save_fn=save_stage1,
                         on_epoch_end=make_epoch_end(1, config.dead_code_threshold,
                                                     last_epoch_index(len(dataset), cfg1, info.world_size)),
                         resume=resume, show_progress=show_progress)
    model.set_stage(2)
    schedule_window_restarts(model, len(dataset), cfg2, info.world_size)
    result2 = train_loop(name="lam-stage2", model=model, dataset=dataset, loss_fn=lam_loss, cfg=cfg2,
                         out_dir=stage2_dir, save_fn=save_stage2,
                         on_epoch_end=make_epoch_end(2, config.dead_code_threshold,
                                                     last_epoch_index(len(dataset), cfg2, info.world_size)),
                         resume=resume, show_progress=show_progress)
    labels: dict[str, Any] = {}
    report: dict[str, Any] | None = None
    if info.is_main:
        from latentvla_ros.training.lam_atlas import write_atlas

        # the code names belong to the checkpoint: written every time it is (re)written
        atlas = write_atlas(final_dir, dirs, holdout_fraction=holdout_fraction)
        if label:
            labels = label_logs_with_lam(final_dir, dirs)
        if evaluate:
            from latentvla_ros.training.lam_eval import evaluate_lam

            report = evaluate_lam(final_dir, dirs, holdout_fraction=holdout_fraction)
            report["atlas"] = atlas
    return {"checkpoint": str(final_dir), "stage1": result1, "stage2": result2, "labels": labels, "eval": report}


# ---------------------------------------------------------------------------
# Labeling
# ---------------------------------------------------------------------------
def _as_model(checkpoint: str | Path | LatentActionModel, device: str | torch.device) -> LatentActionModel:
    if isinstance(checkpoint, LatentActionModel):
        return checkpoint.eval()
    return load_lam(checkpoint, device=device)


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.save(fh, array)
    tmp.replace(path)


def _perturbed_transitions(path: Path, num_frames: int, stride: int) -> np.ndarray:
    """(T,) bool: transitions t -> t + stride during which a recovery log's expert carried noise
    (``data/perturbation.py``); all False for a clean log."""
    from latentvla_ros.data.perturbation import PERTURBATION_FILE, clean_transition_mask

    file = path / f"{PERTURBATION_FILE}.npy"
    if not file.is_file():
        return np.zeros(num_frames, bool)
    return ~clean_transition_mask(np.load(file, allow_pickle=False).reshape(num_frames, -1), stride)


def label_logs_with_lam(checkpoint: str | Path | LatentActionModel, log_dirs: str | Path | Sequence[str | Path],
                        batch_size: int = 256, device: str | torch.device = "cpu") -> dict[str, dict[str, Any]]:
    """Write ``latent_ego_codes.npy`` and ``latent_env_codes.npy`` (int16 (T,), -1 where
    t + stride >= T, and ego codes -1 where a recovery log's noise acts) into every log;
    returns {log_dir: {'frames', 'labeled', 'ego_code_counts'}}."""
    model = _as_model(checkpoint, device)
    out: dict[str, dict[str, Any]] = {}
    for path in resolve_log_dirs(log_dirs):
        log = load_log_arrays(path, model.config)
        env, ego = encode_log(model, log, batch_size)
        n = log.num_frames
        perturbed = _perturbed_transitions(path, n, model.config.frame_stride)
        for name, codes in ((ENV_CODES_FILE, env), (EGO_CODES_FILE, ego)):
            full = np.full(n, -1, np.int16)
            full[: len(codes)] = codes.astype(np.int16)
            if name == EGO_CODES_FILE:  # the motion of a DART noise burst is no expert action to imitate
                full[perturbed] = -1
            _save_npy_atomic(path / name, full)
        record_label_sizes(path, latent_codes_meta(model.config.codebook_size))
        out[str(path)] = {
            "frames": n,
            "labeled": int(len(ego)),
            "ego_code_counts": np.bincount(ego, minlength=model.config.codebook_size).tolist(),
        }
    return out


def __getattr__(name: str) -> Any:  # evaluation names, imported lazily (lam_eval imports this module)
    if name in ("evaluate_lam", "code_probe", "EVAL_FILE"):
        from latentvla_ros.training import lam_eval

        return getattr(lam_eval, name)
    raise AttributeError(name)


__all__ = [
    "EGO_CODES_FILE",
    "ENV_CODES_FILE",
    "LamDataError",
    "LamTransitionDataset",
    "LogArrays",
    "clear_frame_cache",
    "default_train_configs",
    "downsample_frames",
    "ego_motion",
    "encode_log",
    "label_logs_with_lam",
    "lam_loss",
    "load_log_arrays",
    "last_epoch_index",
    "make_epoch_end",
    "resolve_log_dirs",
    "split_transitions",
    "train_lam",
]
