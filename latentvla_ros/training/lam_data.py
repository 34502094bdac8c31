"""Driving-log access for the latent action model: frames, splits, transitions.

Frames are the log camera (``camera.npy``, an ego-up top-down view on the highway-env
logs) cut to a square of ``crop_px`` pixels around the ego pixel (``meta.json``
``camera_ego_pixel_xy``; the image centre when absent), with the ego at
``crop_ego_row_fraction`` of the crop height, then area-resampled to ``image_size``.
At the logs' 0.5 m/px a 64 px crop at 64 px keeps the native scale, so one
transition (``frame_stride`` = 3 frames = 0.3 s) moves the scene by 1-17 px.

``LamTransitionDataset`` reads the ``.npy`` files directly (mmap) and caches the
cropped frames of each log in memory once per process. ``ego_motion`` and
``agent_motion`` give the true motion of a transition (ego frame at t) for the
conditioning of stage 1 and for the probes of the evaluation.
"""
from __future__ import annotations

import dataclasses
import os
import threading
import zlib
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from latentvla_ros.core.types import NUM_POSES, DrivingCommand, ego_status_vectors
from latentvla_ros.data.log_files import LogFormatError, load_array, read_meta
from latentvla_ros.models.configuration_lam import LamConfig
from latentvla_ros.models.lam_odometry import compose_motions, refine_transition, register_rigid

if TYPE_CHECKING:  # annotation only: the model module imports nothing of training
    from latentvla_ros.models.modeling_lam import LatentActionModel


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


def downsample_frames(camera: np.ndarray, camera_index: int, size: int, chunk: int = 256,
                      box: tuple[int, int, int] = (0, 0, 0)) -> torch.Tensor:
    """(T, Ncam, H, W, 3) uint8 (may be a memmap) -> (T, 3, size, size) uint8: the ``box``
    crop (see ``crop_box``; whole frame by default), area-resampled."""
    t_total = camera.shape[0]
    out = torch.empty(t_total, 3, size, size, dtype=torch.uint8)
    for start in range(0, t_total, chunk):
        block = crop_frames(np.asarray(camera[start:start + chunk, camera_index]), box)
        block = torch.from_numpy(np.array(block, copy=True))
        block = block.permute(0, 3, 1, 2)
        if block.shape[-2:] != (size, size):
            block = F.interpolate(block.float(), size=(size, size), mode="area").round_().clamp_(0, 255)
        out[start:start + block.shape[0]] = block.to(torch.uint8)
    return out


def crop_box(camera_hw: tuple[int, int], ego_xy: tuple[float, float], crop_px: int,
             ego_row_fraction: float) -> tuple[int, int, int]:
    """(row0, col0, side) of the square crop around the ego pixel; the whole frame when
    ``crop_px`` is 0 or not smaller than the frame. The crop may reach outside the frame."""
    h, w = camera_hw
    if crop_px <= 0 or (crop_px >= h and crop_px >= w):
        return 0, 0, 0
    col0 = int(round(ego_xy[0] + 0.5 - crop_px / 2.0))
    row0 = int(round(ego_xy[1] - ego_row_fraction * crop_px))
    return row0, col0, crop_px


def crop_frames(block: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """(N, H, W, 3) -> (N, side, side, 3); outside the frame filled with the edge colour."""
    row0, col0, side = box
    if side == 0:
        return block
    n, h, w, _ = block.shape
    pad = max(0, -row0, -col0, row0 + side - h, col0 + side - w)
    if pad:
        block = np.pad(block, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    return block[:, row0 + pad:row0 + pad + side, col0 + pad:col0 + pad + side]


def _cached_frames(path: Path, camera: np.ndarray, config: LamConfig, ego_xy: tuple[float, float]) -> torch.Tensor:
    camera_index, size = config.camera_index, config.image_size
    box = crop_box(camera.shape[2:4], ego_xy, config.crop_px, config.crop_ego_row_fraction)
    st = (path / "camera.npy").stat()
    key = (str(path.resolve()), camera_index, size, box, st.st_mtime_ns, st.st_size)
    with _FRAME_CACHE_LOCK:
        if key in _FRAME_CACHE:
            _FRAME_CACHE.move_to_end(key)
            return _FRAME_CACHE[key]
    frames = downsample_frames(camera, camera_index, size, box=box)
    with _FRAME_CACHE_LOCK:
        _FRAME_CACHE[key] = frames
        total = sum(v.numel() for v in _FRAME_CACHE.values() if v.dtype == torch.uint8)
        while total > FRAME_CACHE_MAX_BYTES and len(_FRAME_CACHE) > 1:
            _, old = _FRAME_CACHE.popitem(last=False)
            total -= old.numel()
    return frames


def _lam_array(path: Path, name: str, mmap: bool = True) -> np.ndarray:
    """``data.log_files.load_array`` (the one loader), its errors as ``LamDataError``."""
    try:
        return load_array(path, name, mmap=mmap)
    except LogFormatError as exc:
        raise LamDataError(str(exc)) from exc


def _load_optional(path: Path, name: str, shape_tail: tuple[int, ...], num_frames: int) -> np.ndarray | None:
    f = path / name
    if not f.is_file():
        return None
    arr = _lam_array(path, name)
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
    agents: np.ndarray | None = None  # (A, 8) float32 x, y, heading, length, width, vx, vy, id (world)
    agents_offsets: np.ndarray | None = None  # (T + 1,) int64: frame t = agents[off[t]:off[t + 1]]
    view_m: tuple[float, float, float] | None = None  # crop extent: metres ahead, behind, to each side
    odometry: torch.Tensor | None = None  # (T, 3) registered view motion of transition t -> t + stride (else 0)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def load_log_arrays(path: str | Path, config: LamConfig) -> LogArrays:
    """Read one log directory (camera required; the rest optional, shape-checked)."""
    path = Path(path)
    cam_file = path / "camera.npy"
    if not cam_file.is_file():
        raise LamDataError(f"{path}: no camera.npy")
    camera = _lam_array(path, "camera.npy")
    if camera.ndim != 5 or camera.shape[-1] != 3 or camera.dtype != np.uint8:
        raise LamDataError(f"{cam_file}: expected uint8 (T, Ncam, H, W, 3), got {camera.dtype} {camera.shape}")
    if config.camera_index >= camera.shape[1]:
        raise LamDataError(f"{cam_file}: camera_index {config.camera_index} but only {camera.shape[1]} cameras")
    num = camera.shape[0]
    if num <= config.frame_stride:
        raise LamDataError(f"{path}: {num} frames, need more than frame_stride={config.frame_stride}")
    meta = _read_meta(path)
    h, w = camera.shape[2:4]
    ego_xy = tuple(meta.get("camera_ego_pixel_xy") or ((w - 1) / 2.0, h / 2.0))
    frames = _cached_frames(path, camera, config, ego_xy)
    mpp = meta.get("camera_meters_per_pixel")
    view_m = None
    if isinstance(mpp, (int, float)) and mpp > 0:
        side = config.crop_px if 0 < config.crop_px < max(h, w) else max(h, w)
        f = config.crop_ego_row_fraction if 0 < config.crop_px < max(h, w) else ego_xy[1] / h
        view_m = (f * side * mpp, (1.0 - f) * side * mpp, side * mpp / 2.0)
        scale = mpp * side / config.image_size
        if abs(scale - config.meters_per_pixel) > 0.01 * config.meters_per_pixel:
            raise LamDataError(f"{path}: camera at {mpp} m/px cropped to {side} px and resized to {config.image_size} "
                               f"px gives {scale:.3f} m/px, the LAM expects meters_per_pixel={config.meters_per_pixel}")

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
    status = ego_status_vectors(np.zeros((num, 4), np.float32) if status5 is None else status5,
                                np.full(num, int(DrivingCommand.UNKNOWN)) if command is None else command)

    pose = _load_optional(path, "ego_pose.npy", (3,), num)
    ego_pose = None if pose is None else np.asarray(pose, dtype=np.float64)
    agents = offsets = None
    if (path / "agents.npy").is_file() and (path / "agents_offsets.npy").is_file():
        offsets = _load_optional(path, "agents_offsets.npy", (), num + 1)
        agents = _lam_array(path, "agents.npy", mmap=False)
        if agents.ndim != 2 or agents.shape[1] != 8 or offsets[-1] != len(agents):
            raise LamDataError(f"{path}: agents.npy {agents.shape} does not match agents_offsets.npy")
        offsets = np.asarray(offsets, dtype=np.int64)
    return LogArrays(path, frames, trajectory, future_valid, status, ego_pose, agents, offsets, view_m,
                     _cached_odometry(path, frames, config))


def _read_meta(path: Path) -> dict[str, Any]:
    """The log's meta.json, {} when it is absent or unreadable (the LAM needs only the camera)."""
    try:
        return read_meta(path)
    except LogFormatError:
        return {}


def _cached_odometry(path: Path, frames: torch.Tensor, config: LamConfig, chunk: int = 128) -> torch.Tensor:
    """(T, 3) registered view motion of every transition t -> t + stride (``register_rigid`` of the
    single frame steps, composed, refined on the pair; frames only, no labels; cached per process);
    rows without a transition are zero."""
    s = config.frame_stride
    st = (path / "camera.npy").stat()
    key = ("odometry", str(path.resolve()), tuple(frames.shape), s, config.meters_per_pixel, config.ego_row_px,
           st.st_mtime_ns, st.st_size)
    with _FRAME_CACHE_LOCK:
        if key in _FRAME_CACHE:
            return _FRAME_CACHE[key]
    n = frames.shape[0]
    steps = torch.zeros(n, 3)
    scaled = frames.float() * (1.0 / 255.0) - 0.5
    mpp, row = config.meters_per_pixel, config.ego_row_px
    for start in range(0, n - 1, chunk):
        end = min(start + chunk, n - 1)
        steps[start:end] = register_rigid(scaled[start:end], scaled[start + 1:end + 1], mpp, row)
    out = torch.zeros(n, 3)
    for start in range(0, max(0, n - s), chunk):
        t = torch.arange(start, min(start + chunk, n - s))
        composed = torch.zeros(len(t), 3)
        for k in range(s):
            composed = compose_motions(composed, steps[t + k])
        out[t] = refine_transition(scaled[t], scaled[t + s], composed, mpp, row)
    with _FRAME_CACHE_LOCK:
        _FRAME_CACHE[key] = out
    return out


def transition_odometry(log: LogArrays, t: np.ndarray | torch.Tensor, stride: int) -> torch.Tensor:
    """(N, 3) registered view motion of the transitions t -> t + stride (frames only)."""
    t = torch.as_tensor(np.asarray(t), dtype=torch.long)
    if log.odometry is None:
        return torch.zeros(len(t), 3)
    return log.odometry[t]


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


def agent_motion(log: LogArrays, t: np.ndarray, stride: int) -> np.ndarray:
    """(N, 3) mean own motion (dx, dy in frame t's ego frame, dheading) of the other agents
    inside the LAM's view at t and still logged at t + stride; NaN where there are none
    (or the log has no agents / ego pose / camera scale)."""
    out = np.full((len(t), 3), np.nan)
    if log.agents is None or log.ego_pose is None or log.view_m is None:
        return out
    ahead, behind, side = log.view_m
    off = log.agents_offsets
    for i, ti in enumerate(np.asarray(t, dtype=np.int64)):
        a0, a1 = log.agents[off[ti]:off[ti + 1]], log.agents[off[ti + stride]:off[ti + stride + 1]]
        if len(a0) == 0 or len(a1) == 0:
            continue
        x0, y0, yaw0 = log.ego_pose[ti]
        c, s = np.cos(yaw0), np.sin(yaw0)
        rel = a0[:, :2] - (x0, y0)
        ex, ey = c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1]
        seen = (ex <= ahead) & (ex >= -behind) & (np.abs(ey) <= side)
        later = {int(r[7]): r for r in a1}
        rows = [(r, later[int(r[7])]) for r, ok in zip(a0, seen) if ok and int(r[7]) in later]
        if not rows:
            continue
        d = np.array([[b[0] - a[0], b[1] - a[1], wrap_angle(np.array(b[2] - a[2]))] for a, b in rows])
        out[i] = [np.mean(c * d[:, 0] + s * d[:, 1]), np.mean(-s * d[:, 0] + c * d[:, 1]), np.mean(d[:, 2])]
    return out


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
    ``motion_valid`` (), ``odometry`` (3,: the frames' registered motion, no labels), ``supervised`` ()
    (1 on the fixed ``ego_supervision_fraction`` share of transitions whose true ego motion weak
    supervision may use),
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
        frac = self.config.ego_supervision_fraction
        supervised = frac > 0 and (zlib.crc32(f"{log.path.name}:{t}".encode()) % 10_000) < frac * 10_000
        return {
            "frames_prev": log.frames[max(0, t - s)],
            "frames_t": log.frames[t],
            "frames_next": log.frames[t + s],
            "trajectory": torch.from_numpy(np.array(log.trajectory[t], dtype=np.float32)),
            "ego_status": torch.from_numpy(np.array(log.ego_status[t], dtype=np.float32)),
            "future_valid": torch.tensor(float(log.future_valid[t])),
            "ego_motion": torch.from_numpy(motion),
            "motion_valid": torch.tensor(float(log.ego_pose is not None)),
            "odometry": transition_odometry(log, np.array([t]), s)[0],
            "supervised": torch.tensor(float(supervised)),
            "log_index": li,
            "t": t,
        }


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
        odo = transition_odometry(log, t, s).to(device)
        env, ego = model.encode(log.frames[t].to(device), log.frames[t + s].to(device), odo)
        env_out.append(env.cpu().numpy())
        ego_out.append(ego.cpu().numpy())
    if not env_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(env_out), np.concatenate(ego_out)


__all__ = [
    "encode_log",
    "FRAME_CACHE_MAX_BYTES",
    "LamDataError",
    "LamTransitionDataset",
    "LogArrays",
    "agent_motion",
    "clear_frame_cache",
    "crop_box",
    "crop_frames",
    "downsample_frames",
    "ego_motion",
    "load_log_arrays",
    "resolve_log_dirs",
    "split_transitions",
    "transition_odometry",
    "wrap_angle",
]
