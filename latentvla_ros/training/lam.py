"""Latent action model training, labeling and evaluation.

``train_lam`` runs both LAM stages with the shared ``train_loop`` (progress bars,
CSV/TensorBoard logs, resume, seeding, torchrun):

- ``<out_dir>/lam_stage1/``: stage-1 run (``metrics.csv``, ``train_state.*``,
  ``checkpoint/``): environmental IDM + codebook + FDM with ground truth.
- ``<out_dir>/lam_stage2/``: stage-2 run: environmental parts frozen, ego IDM +
  new codebook + FDM from both codes.
- ``<out_dir>/lam/``: the final checkpoint (``model.safetensors`` + ``config.json``)
  and ``eval.json``.

Every epoch logs code usage (``env/codes_used``, ``env/usage``,
``env/perplexity`` and the same for ``ego/`` in stage 2) and restarts the dead
codes of the codebook being trained (``restarted_codes``).

``label_logs_with_lam`` writes ``latent_ego_codes.npy`` and
``latent_env_codes.npy`` (int16 (T,), code of transition t -> t + stride, -1
where t + stride is outside the log) into each log directory.

``evaluate_lam`` reports, on held-out transitions: next-frame MSE against the
copy-the-last-frame baseline, codebook usage/perplexity of both codebooks, and
a disentanglement probe from the ego/env codes to the true ego motion of the
transition (from ``ego_pose.npy``).

The transitions come from ``LamTransitionDataset``, which reads the driving-log
``.npy`` files directly (mmap) and caches the downsampled frames of each log in
memory once per process.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from latentvla_ros.core.checkpoint import save_checkpoint
from latentvla_ros.core.types import EGO_STATUS_DIM, NUM_POSES, DrivingCommand
from latentvla_ros.models.configuration_lam import LamConfig
from latentvla_ros.models.modeling_lam import (
    MODEL_TYPE,
    LatentActionModel,
    codebook_stats,
    load_lam,
    perplexity_from_counts,
)
from latentvla_ros.training.common import TrainConfig, seed_everything, setup_distributed, train_loop

EGO_CODES_FILE = "latent_ego_codes.npy"
ENV_CODES_FILE = "latent_env_codes.npy"
EVAL_FILE = "eval.json"


class LamDataError(ValueError):
    """A driving log cannot be used by the LAM (missing camera, wrong shapes, too short)."""


# ---------------------------------------------------------------------------
# Log reading and frame cache
# ---------------------------------------------------------------------------
_FRAME_CACHE: OrderedDict[tuple, torch.Tensor] = OrderedDict()
_FRAME_CACHE_LOCK = threading.Lock()
FRAME_CACHE_MAX_BYTES = int(os.environ.get("LATENTVLA_LAM_FRAME_CACHE_BYTES", str(4 << 30)))


def clear_frame_cache() -> None:
    with _FRAME_CACHE_LOCK:
        _FRAME_CACHE.clear()


def downsample_frames(camera: np.ndarray, camera_index: int, size: int, chunk: int = 256) -> torch.Tensor:
    """(T, Ncam, H, W, 3) uint8 (may be a memmap) -> (T, 3, size, size) uint8 (area resampling)."""
    t_total = camera.shape[0]
    out = torch.empty(t_total, 3, size, size, dtype=torch.uint8)
    for start in range(0, t_total, chunk):
        block = torch.from_numpy(np.array(camera[start:start + chunk, camera_index], copy=True))
        block = block.permute(0, 3, 1, 2)
        if block.shape[-2:] != (size, size):
            block = F.interpolate(block.float(), size=(size, size), mode="area").round_().clamp_(0, 255)
        out[start:start + block.shape[0]] = block.to(torch.uint8)
    return out


def _cached_frames(path: Path, camera: np.ndarray, camera_index: int, size: int) -> torch.Tensor:
    st = (path / "camera.npy").stat()
    key = (str(path.resolve()), camera_index, size, st.st_mtime_ns, st.st_size)
    with _FRAME_CACHE_LOCK:
        if key in _FRAME_CACHE:
            _FRAME_CACHE.move_to_end(key)
            return _FRAME_CACHE[key]
    frames = downsample_frames(camera, camera_index, size)
    with _FRAME_CACHE_LOCK:
        _FRAME_CACHE[key] = frames
        total = sum(v.numel() for v in _FRAME_CACHE.values())
        while total > FRAME_CACHE_MAX_BYTES and len(_FRAME_CACHE) > 1:
            _, old = _FRAME_CACHE.popitem(last=False)
            total -= old.numel()
    return frames


def _load_optional(path: Path, name: str, shape_tail: tuple[int, ...], num_frames: int) -> np.ndarray | None:
    f = path / name
    if not f.is_file():
        return None
    try:
        arr = np.load(f, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise LamDataError(f"{f}: cannot read: {exc}") from exc
    if arr.shape[0] != num_frames or tuple(arr.shape[1:]) != shape_tail:
        raise LamDataError(f"{f}: expected shape ({num_frames}, {', '.join(map(str, shape_tail))}), got {arr.shape}")
    return arr


@dataclasses.dataclass
class LogArrays:
    """What the LAM needs from one driving log (frames downsampled, in memory)."""

    path: Path
    frames: torch.Tensor  # (T, 3, S, S) uint8
    trajectory: np.ndarray  # (T, 8, 3) float32, zero where unknown
    future_valid: np.ndarray  # (T,) bool
    ego_status: np.ndarray  # (T, 8) float32: command one-hot, vx, vy, ax, ay
    ego_pose: np.ndarray | None  # (T, 3) float64 world x, y, yaw

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def load_log_arrays(path: str | Path, config: LamConfig) -> LogArrays:
    """Read one log directory (camera required; the rest optional, shape-checked)."""
    path = Path(path)
    cam_file = path / "camera.npy"
    if not cam_file.is_file():
        raise LamDataError(f"{path}: no camera.npy")
    try:
        camera = np.load(cam_file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise LamDataError(f"{cam_file}: cannot read: {exc}") from exc
    if camera.ndim != 5 or camera.shape[-1] != 3 or camera.dtype != np.uint8:
        raise LamDataError(f"{cam_file}: expected uint8 (T, Ncam, H, W, 3), got {camera.dtype} {camera.shape}")
    if config.camera_index >= camera.shape[1]:
        raise LamDataError(f"{cam_file}: camera_index {config.camera_index} but only {camera.shape[1]} cameras")
    num = camera.shape[0]
    if num <= config.frame_stride:
        raise LamDataError(f"{path}: {num} frames, need more than frame_stride={config.frame_stride}")
    frames = _cached_frames(path, camera, config.camera_index, config.image_size)

    traj = _load_optional(path, "future_trajectory.npy", (NUM_POSES, 3), num)
    valid = _load_optional(path, "future_valid.npy", (), num)
    if traj is None:
        trajectory = np.zeros((num, NUM_POSES, 3), np.float32)
        future_valid = np.zeros(num, bool)
    else:
        trajectory = np.nan_to_num(np.asarray(traj, dtype=np.float32))
        future_valid = np.ones(num, bool) if valid is None else np.asarray(valid, dtype=bool)
    trajectory = trajectory * future_valid[:, None, None]

    status5 = _load_optional(path, "ego_status.npy", (5,), num)
    command = _load_optional(path, "command.npy", (), num)
    status = np.zeros((num, EGO_STATUS_DIM), np.float32)
    cmd = np.full(num, int(DrivingCommand.UNKNOWN), np.int64)
    if command is not None:
        cmd = np.asarray(command, dtype=np.int64)
        cmd = np.where((cmd >= 0) & (cmd < 4), cmd, int(DrivingCommand.UNKNOWN))
    status[np.arange(num), cmd] = 1.0
    if status5 is not None:
        status[:, 4:8] = np.nan_to_num(np.asarray(status5[:, :4], dtype=np.float32))

    pose = _load_optional(path, "ego_pose.npy", (3,), num)
    ego_pose = None if pose is None else np.asarray(pose, dtype=np.float64)
    return LogArrays(path, frames, trajectory, future_valid, status, ego_pose)


def resolve_log_dirs(log_dirs: str | Path | Sequence[str | Path]) -> list[Path]:
    """A list of log directories, or one root whose sub-directories (recursively) hold camera.npy."""
    if isinstance(log_dirs, (str, Path)):
        root = Path(log_dirs)
        if (root / "camera.npy").is_file():
            return [root]
        found = sorted(p.parent for p in root.rglob("camera.npy"))
        if not found:
            raise LamDataError(f"no driving logs (camera.npy) under {root}")
        return found
    dirs = [Path(p) for p in log_dirs]
    if not dirs:
        raise LamDataError("no log directories given")
    return dirs


def wrap_angle(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def ego_motion(pose: np.ndarray, t: np.ndarray, stride: int) -> np.ndarray:
    """(N, 3) dx, dy (in frame t's ego frame) and dyaw of transitions t -> t + stride."""
    p0, p1 = pose[t], pose[t + stride]
    d = p1[:, :2] - p0[:, :2]
    c, s = np.cos(p0[:, 2]), np.sin(p0[:, 2])
    dx = c * d[:, 0] + s * d[:, 1]
    dy = -s * d[:, 0] + c * d[:, 1]
    return np.stack([dx, dy, wrap_angle(p1[:, 2] - p0[:, 2])], axis=1)


# ---------------------------------------------------------------------------
# Splits and dataset
# ---------------------------------------------------------------------------
def split_transitions(num_frames: Sequence[int], stride: int, holdout_fraction: float) -> dict[str, list[np.ndarray]]:
    """Deterministic train/holdout split of the transitions t in [0, T - stride) of each log.

    With >= 5 logs every k-th log (k = round(1 / holdout_fraction)) is held out;
    otherwise the last ``holdout_fraction`` of each log is held out, with a gap of
    ``stride`` so no frame is shared between the two sides.
    Returns {'train': [t indices per log], 'holdout': [...], 'all': [...]}.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    n_logs = len(num_frames)
    all_t = [np.arange(max(0, n - stride)) for n in num_frames]
    empty = np.zeros(0, np.int64)
    if holdout_fraction == 0.0:
        return {"train": all_t, "holdout": [empty] * n_logs, "all": all_t}
    k = max(2, round(1.0 / holdout_fraction))
    if n_logs >= 5 and n_logs >= k:
        held = [(i % k) == k - 1 for i in range(n_logs)]
        train = [empty if h else t for h, t in zip(held, all_t)]
        hold = [t if h else empty for h, t in zip(held, all_t)]
        return {"train": train, "holdout": hold, "all": all_t}
    train, hold = [], []
    for t in all_t:
        n = len(t)
        cut = int(round(n * (1.0 - holdout_fraction)))
        train.append(t[: max(0, cut - stride)])
        hold.append(t[min(n, cut + stride):])
    return {"train": train, "holdout": hold, "all": all_t}


class LamTransitionDataset(Dataset):
    """Transitions (t - s, t, t + s) of driving logs for the LAM, s = ``config.frame_stride``.

    For t < s the previous frame is frame 0. Items: ``frames_prev``, ``frames_t``,
    ``frames_next`` (uint8 (3, S, S)), ``trajectory`` (8, 3), ``ego_status`` (8,),
    ``future_valid`` (), ``ego_motion`` (3,: dx, dy, dyaw; zeros without ego_pose),
    ``log_index``, ``t``.
    """

    def __init__(self, log_dirs: str | Path | Sequence[str | Path], config: LamConfig, split: str = "all",
                 holdout_fraction: float = 0.2, logs: list[LogArrays] | None = None):
        if split not in ("all", "train", "holdout"):
            raise ValueError(f"split must be 'all', 'train' or 'holdout', got {split!r}")
        self.config = config
        self.log_dirs = resolve_log_dirs(log_dirs)
        self.logs = logs if logs is not None else [load_log_arrays(p, config) for p in self.log_dirs]
        stride = config.frame_stride
        parts = split_transitions([log.num_frames for log in self.logs], stride, holdout_fraction)[split]
        index = [np.stack([np.full(len(t), i), t], axis=1) for i, t in enumerate(parts) if len(t)]
        self.index = np.concatenate(index).astype(np.int64) if index else np.zeros((0, 2), np.int64)
        self.split = split

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        li, t = (int(v) for v in self.index[i])
        log, s = self.logs[li], self.config.frame_stride
        motion = np.zeros(3, np.float32)
        if log.ego_pose is not None:
            motion = ego_motion(log.ego_pose, np.array([t]), s)[0].astype(np.float32)
        return {
            "frames_prev": log.frames[max(0, t - s)],
            "frames_t": log.frames[t],
            "frames_next": log.frames[t + s],
            "trajectory": torch.from_numpy(np.array(log.trajectory[t], dtype=np.float32)),
            "ego_status": torch.from_numpy(np.array(log.ego_status[t], dtype=np.float32)),
            "future_valid": torch.tensor(float(log.future_valid[t])),
            "ego_motion": torch.from_numpy(motion),
            "log_index": li,
            "t": t,
        }


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
    out = model(batch["frames_prev"], batch["frames_t"], batch["frames_next"],
                batch["trajectory"], batch["ego_status"], batch["future_valid"])
    with torch.no_grad():
        cur = LatentActionModel.prepare_frames(batch["frames_t"])
        nxt = LatentActionModel.prepare_frames(batch["frames_next"])
        copy_mse = float(F.mse_loss(cur, nxt))
    return out["loss"], {
        "recon_mse": float(out["recon_mse"]),
        "copy_mse": copy_mse,
        "commitment": float(out["commitment"]),
        "batch_perplexity": float(out["perplexity"]),
    }


def last_epoch_index(num_items: int, cfg: TrainConfig, world_size: int = 1) -> int:
    """Index of the last epoch ``train_loop`` runs (``max_steps`` may end training early)."""
    per_rank = math.ceil(num_items / world_size) if world_size > 1 else num_items
    drop_last = num_items > cfg.batch_size
    steps_per_epoch = max(1, per_rank // cfg.batch_size if drop_last else math.ceil(per_rank / cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    return min(cfg.epochs, math.ceil(total / steps_per_epoch)) - 1


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
        m.vq_env.reset_usage()
        m.vq_ego.reset_usage()
        return metrics

    return on_epoch_end


def _model_config(preset: str, model_config: LamConfig | None) -> LamConfig:
    return model_config if model_config is not None else LamConfig.from_preset(preset)


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
    result1 = train_loop(name="lam-stage1", model=model, dataset=dataset, loss_fn=lam_loss, cfg=cfg1,
                         out_dir=stage1_dir, save_fn=save_stage1,
                         on_epoch_end=make_epoch_end(1, config.dead_code_threshold,
                                                     last_epoch_index(len(dataset), cfg1, info.world_size)),
                         resume=resume, show_progress=show_progress)
    model.set_stage(2)
    result2 = train_loop(name="lam-stage2", model=model, dataset=dataset, loss_fn=lam_loss, cfg=cfg2,
                         out_dir=stage2_dir, save_fn=save_stage2,
                         on_epoch_end=make_epoch_end(2, config.dead_code_threshold,
                                                     last_epoch_index(len(dataset), cfg2, info.world_size)),
                         resume=resume, show_progress=show_progress)
    labels: dict[str, Any] = {}
    report: dict[str, Any] | None = None
    if info.is_main:
        if label:
            labels = label_logs_with_lam(final_dir, dirs)
        if evaluate:
            report = evaluate_lam(final_dir, dirs, holdout_fraction=holdout_fraction)
    return {"checkpoint": str(final_dir), "stage1": result1, "stage2": result2, "labels": labels, "eval": report}


# ---------------------------------------------------------------------------
# Labeling
# ---------------------------------------------------------------------------
def _as_model(checkpoint: str | Path | LatentActionModel, device: str | torch.device) -> LatentActionModel:
    if isinstance(checkpoint, LatentActionModel):
        return checkpoint.eval()
    return load_lam(checkpoint, device=device)


@torch.no_grad()
def encode_log(model: LatentActionModel, log: LogArrays, batch_size: int = 256,
               t_indices: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(env_codes, ego_codes) int64 of transitions ``t_indices`` (default all t in [0, T - s))."""
    s = model.config.frame_stride
    if t_indices is None:
        t_indices = np.arange(max(0, log.num_frames - s))
    device = next(model.parameters()).device
    env_out, ego_out = [], []
    for start in range(0, len(t_indices), batch_size):
        t = torch.as_tensor(t_indices[start:start + batch_size], dtype=torch.long)
        prev = log.frames[(t - s).clamp_min(0)].to(device)
        cur = log.frames[t].to(device)
        nxt = log.frames[t + s].to(device)
        tn = t.numpy()
        traj = torch.from_numpy(np.asarray(log.trajectory[tn], dtype=np.float32)).to(device)
        status = torch.from_numpy(np.asarray(log.ego_status[tn], dtype=np.float32)).to(device)
        valid = torch.from_numpy(np.asarray(log.future_valid[tn], dtype=np.float32)).to(device)
        env, ego = model.encode(prev, cur, nxt, traj, status, valid)
        env_out.append(env.cpu().numpy())
        ego_out.append(ego.cpu().numpy())
    if not env_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(env_out), np.concatenate(ego_out)


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        np.save(fh, array)
    tmp.replace(path)


def label_logs_with_lam(checkpoint: str | Path | LatentActionModel, log_dirs: str | Path | Sequence[str | Path],
                        batch_size: int = 256, device: str | torch.device = "cpu") -> dict[str, dict[str, Any]]:
    """Write ``latent_ego_codes.npy`` and ``latent_env_codes.npy`` (int16 (T,), -1 where
    t + stride >= T) into every log; returns {log_dir: {'frames', 'labeled', 'ego_code_counts'}}."""
    model = _as_model(checkpoint, device)
    out: dict[str, dict[str, Any]] = {}
    for path in resolve_log_dirs(log_dirs):
        log = load_log_arrays(path, model.config)
        env, ego = encode_log(model, log, batch_size)
        n = log.num_frames
        for name, codes in ((ENV_CODES_FILE, env), (EGO_CODES_FILE, ego)):
            full = np.full(n, -1, np.int16)
            full[: len(codes)] = codes.astype(np.int16)
            _save_npy_atomic(path / name, full)
        out[str(path)] = {
            "frames": n,
            "labeled": int(len(ego)),
            "ego_code_counts": np.bincount(ego, minlength=model.config.codebook_size).tolist(),
        }
    return out


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------
def _r2(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, list[float | None]]:
    """Mean R^2 over output dimensions with non-zero variance, and the per-dimension values."""
    per: list[float | None] = []
    for d in range(y_true.shape[1]):
        var = float(np.var(y_true[:, d]))
        if var < 1e-12:
            per.append(None)
            continue
        per.append(1.0 - float(np.mean((y_true[:, d] - y_pred[:, d]) ** 2)) / var)
    valid = [v for v in per if v is not None]
    return (float(np.mean(valid)) if valid else float("nan")), per


def _tertile_bins(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.searchsorted(edges, values, side="right")


def code_probe(codes_fit: np.ndarray, y_fit: np.ndarray, cls_fit: np.ndarray, codes_test: np.ndarray,
               y_test: np.ndarray, cls_test: np.ndarray, num_codes: int) -> dict[str, Any]:
    """Lookup-table probe (the optimal regressor/classifier of a one-hot code input):
    per-code mean of ``y`` (R^2) and per-code majority class (accuracy); unseen codes
    fall back to the global mean / majority."""
    mean = y_fit.mean(axis=0)
    majority = int(np.bincount(cls_fit).argmax())
    n_cls = int(max(cls_fit.max(initial=0), cls_test.max(initial=0))) + 1
    table_y = np.tile(mean, (num_codes, 1))
    table_c = np.full(num_codes, majority)
    for c in range(num_codes):
        sel = codes_fit == c
        if sel.any():
            table_y[c] = y_fit[sel].mean(axis=0)
            table_c[c] = int(np.bincount(cls_fit[sel], minlength=n_cls).argmax())
    r2, per = _r2(y_test, table_y[codes_test])
    acc = float(np.mean(table_c[codes_test] == cls_test))
    return {"r2": r2, "r2_per_dim": per, "accuracy": acc}


def _standardise(y: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (y - ref.mean(axis=0)) / np.maximum(ref.std(axis=0), 1e-9)


@torch.no_grad()
def evaluate_lam(
    checkpoint: str | Path,
    log_dirs: str | Path | Sequence[str | Path],
    *,
    split: str = "holdout",
    holdout_fraction: float | None = None,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    out_path: str | Path | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Held-out evaluation, written to ``<checkpoint>/eval.json`` (or ``out_path``).

    - ``next_frame``: MSE of the stage-2 prediction from both codes, the copy-the-
      last-frame baseline, their ratio, and the MSE with random ego codes (how much
      the ego code matters).
    - ``codebooks``: codes used / K and perplexity of the env and ego codes.
    - ``probe``: the transitions are split into alternating blocks (fit / test);
      a per-code lookup probe maps (a) ego codes, (b) env codes, (c) both to the
      true ego motion of the transition (dx, dy, dyaw from ego_pose, in frame t;
      R^2 on standardised targets) and to a 9-class motion label (tertiles of the
      first target x tertiles of the third; accuracy); ``baseline`` predicts the
      fit mean / majority class.
    - ``probe_change``: the same for the change of the ego motion against the
      previous transition (ddx, ddy, ddyaw: acceleration / yaw-rate change), the
      part of the motion the FDM cannot extrapolate from the previous frame.
    ``holdout_fraction`` defaults to the one stored in the checkpoint.
    """
    checkpoint = Path(checkpoint)
    model = load_lam(checkpoint, device=device)
    cfg = model.config
    s, k_codes = cfg.frame_stride, cfg.codebook_size
    if holdout_fraction is None:
        from latentvla_ros.core.checkpoint import read_checkpoint_config

        holdout_fraction = float(read_checkpoint_config(checkpoint).get("meta", {}).get("holdout_fraction", 0.2))
    dirs = resolve_log_dirs(log_dirs)
    logs = [load_log_arrays(p, cfg) for p in dirs]
    parts = split_transitions([log.num_frames for log in logs], s, holdout_fraction)
    used_split = split
    if split == "holdout" and sum(len(t) for t in parts["holdout"]) == 0:
        used_split = "all"
    chosen = parts[used_split]
    gen = torch.Generator().manual_seed(seed)

    mse_sum = copy_sum = rand_sum = 0.0
    n_pix_items = 0
    env_all, ego_all, motion_all = [], [], []
    for log, t_idx in zip(logs, chosen):
        if len(t_idx) == 0:
            continue
        env, ego = encode_log(model, log, batch_size, t_idx)
        env_all.append(env)
        ego_all.append(ego)
        motion = np.full((len(t_idx), 6), np.nan)
        if log.ego_pose is not None:
            motion[:, :3] = ego_motion(log.ego_pose, t_idx, s)
            has_prev = t_idx >= s
            motion[has_prev, 3:] = motion[has_prev, :3] - ego_motion(log.ego_pose, t_idx[has_prev] - s, s)
        motion_all.append(motion)
        for start in range(0, len(t_idx), batch_size):
            t = torch.as_tensor(t_idx[start:start + batch_size], dtype=torch.long)
            prev = log.frames[(t - s).clamp_min(0)].to(device)
            cur, nxt = log.frames[t].to(device), log.frames[t + s].to(device)
            env_c = torch.as_tensor(env[start:start + batch_size], device=device)
            ego_c = torch.as_tensor(ego[start:start + batch_size], device=device)
            target = model.prepare_frames(nxt)
            pred = model.decode(prev, cur, env_c, ego_c)
            rand = torch.randint(0, k_codes, ego_c.shape, generator=gen).to(device)
            pred_rand = model.decode(prev, cur, env_c, rand)
            b = t.shape[0]
            mse_sum += float(F.mse_loss(pred, target, reduction="mean")) * b
            rand_sum += float(F.mse_loss(pred_rand, target, reduction="mean")) * b
            copy_sum += float(F.mse_loss(model.prepare_frames(cur), target, reduction="mean")) * b
            n_pix_items += b
    if n_pix_items == 0:
        raise LamDataError("no transitions to evaluate")
    env_codes, ego_codes = np.concatenate(env_all), np.concatenate(ego_all)
    motion = np.concatenate(motion_all)
    mse, copy = mse_sum / n_pix_items, copy_sum / n_pix_items
    report: dict[str, Any] = {
        "split": used_split,
        "holdout_fraction": holdout_fraction,
        "num_transitions": int(n_pix_items),
        "num_logs": len(dirs),
        "next_frame": {
            "mse": mse,
            "mse_copy_last_frame": copy,
            "mse_ratio_to_copy": mse / copy if copy > 0 else float("nan"),
            "mse_random_ego_codes": rand_sum / n_pix_items,
        },
        "codebooks": {},
    }
    for name, codes in (("env", env_codes), ("ego", ego_codes)):
        counts = np.bincount(codes, minlength=k_codes)
        report["codebooks"][name] = {
            "codes_used": int((counts > 0).sum()),
            "usage": float((counts > 0).sum()) / k_codes,
            "perplexity": perplexity_from_counts(torch.as_tensor(counts)),
            "counts": counts.tolist(),
        }
    block = max(1, min(10 * s, len(ego_codes) // 10))
    report["probe"] = _probe(env_codes, ego_codes, motion[:, :3], k_codes, block, ["dx", "dy", "dyaw"])
    report["probe_change"] = _probe(env_codes, ego_codes, motion[:, 3:], k_codes, block,
                                    ["ddx", "ddy", "ddyaw"])
    out = Path(out_path) if out_path is not None else checkpoint / EVAL_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(_json_safe(report), indent=2, sort_keys=True))
    return report


def _probe(env: np.ndarray, ego: np.ndarray, motion: np.ndarray, k: int, block: int,
           targets: list[str]) -> dict[str, Any]:
    ok = np.all(np.isfinite(motion), axis=1)
    n = int(ok.sum())
    if n < 20:
        return {"skipped": f"only {n} transitions with ego_pose"}
    env, ego, motion = env[ok], ego[ok], motion[ok]
    fit = (np.arange(n) // max(1, block)) % 2 == 0
    test = ~fit
    if test.sum() < 5 or fit.sum() < 5:
        return {"skipped": "too few transitions for a fit/test split"}
    y_fit, y_test = _standardise(motion[fit], motion[fit]), _standardise(motion[test], motion[fit])
    dx_edges = np.quantile(motion[fit, 0], [1 / 3, 2 / 3])
    yaw_edges = np.quantile(motion[fit, 2], [1 / 3, 2 / 3])

    def classes(m: np.ndarray) -> np.ndarray:
        return _tertile_bins(m[:, 0], dx_edges) * 3 + _tertile_bins(m[:, 2], yaw_edges)

    c_fit, c_test = classes(motion[fit]), classes(motion[test])
    zeros_fit, zeros_test = np.zeros(fit.sum(), np.int64), np.zeros(test.sum(), np.int64)
    result: dict[str, Any] = {
        "targets": targets,
        "num_fit": int(fit.sum()),
        "num_test": int(test.sum()),
        "num_classes": 9,
        "ego": code_probe(ego[fit], y_fit, c_fit, ego[test], y_test, c_test, k),
        "env": code_probe(env[fit], y_fit, c_fit, env[test], y_test, c_test, k),
        "ego_env": code_probe(ego[fit] * k + env[fit], y_fit, c_fit, ego[test] * k + env[test], y_test, c_test, k * k),
        "baseline": code_probe(zeros_fit, y_fit, c_fit, zeros_test, y_test, c_test, 1),
    }
    return result


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    return obj


__all__ = [
    "EGO_CODES_FILE",
    "ENV_CODES_FILE",
    "LamDataError",
    "LamTransitionDataset",
    "LogArrays",
    "clear_frame_cache",
    "code_probe",
    "default_train_configs",
    "downsample_frames",
    "ego_motion",
    "encode_log",
    "evaluate_lam",
    "label_logs_with_lam",
    "lam_loss",
    "load_log_arrays",
    "last_epoch_index",
    "make_epoch_end",
    "resolve_log_dirs",
    "split_transitions",
    "train_lam",
]
