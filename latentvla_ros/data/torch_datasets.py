"""PyTorch datasets over driving logs.

:class:`FrameDataset` yields one dict of tensors per frame:

==================  ===================  ===============================================
key                 dtype / shape        source
==================  ===================  ===============================================
``image``           float32 (3, H, W)    ``core.features.stitch_cameras`` of all cameras
``lidar_bev``       float32 (1, G, G)    ``core.features.lidar_bev_histogram`` (cached)
``ego_status``      float32 (8,)         ``EgoState.status_vector()``
``trajectory``      float32 (8, 3)       future trajectory (zeros when not valid)
``trajectory_valid`` bool ()             ``future_valid[t]``
``next_image``      float32 (3, H, W)    frame ``t + frame_stride`` (``with_next_image``)
``latent_tokens``   int64 (12,)          code of transition ``t + k * frame_stride`` (-1: none)
``teacher_probs``   float32 (12, 16)     teacher soft labels
``teacher_context`` float32 (M, D)       teacher embeddings
``route``           float32 (N, 2)       the mission route ahead, ego frame (``route_points`` > 0)
``route_valid``     bool ()              whether the frame has a usable route
``log_index``, ``frame_index`` int64 ()  where the sample comes from
==================  ===================  ===============================================

Only frames whose *required* targets are valid are indexed (``require``: any of
``future``, ``next_image``, ``latent_tokens``, ``teacher_probs``, ``teacher_context``).
Optional label keys are returned when every log has them (or when required; logs
lacking a required label are skipped). ``action_space`` (the consuming model's, e.g.
``StudentConfig.action_space``) and ``trajectory_sampling`` (``PlannerConfig.
trajectory_sampling``) are checked against the sizes each log's labels and future
trajectories were made with (``data/label_sizes.py``): a mismatch raises
``SizeMismatchError``, and so does a latent code outside the labelling LAM's codebook
(never a silent drop).

``route`` / ``route_valid`` (``route_points`` > 0, the planner's ``PlannerConfig.route_points`` /
``route_spacing_m``): ``data.route.log_route_samples``, the log's mission route resampled ahead
of the ego exactly as the planner stage resamples it at run time; computed once per log (and
cached in the log directory), not per sample or epoch.

LiDAR histograms are cached once per log in ``lidar_bev_<grid>.npy`` (uint8 point
counts capped at ``max_points_per_pixel``; parameters in ``meta.json`` under
``lidar_bev_cache``) so loading stays far cheaper than a training step.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from latentvla_ros.core.features import lidar_bev_histogram, stitch_cameras
from latentvla_ros.core.sizes import ActionSpace, TrajectorySampling, check_same
from latentvla_ros.core.types import NUM_LATENT_TOKENS, CameraImage
from latentvla_ros.data.label_sizes import check_latent_codes, latent_codebook_size, teacher_action_space
from latentvla_ros.data.log_format import DrivingLog, LogFormatError, list_logs
from latentvla_ros.data.route import log_route_samples

TARGETS = ("future", "next_image", "latent_tokens", "teacher_probs", "teacher_context")
BEV_MIN_HEIGHT_M = 0.2
BEV_MAX_POINTS_PER_PIXEL = 5


def lidar_cache_name(grid: int) -> str:
    return f"lidar_bev_{int(grid)}"


def ensure_lidar_cache(
    log: DrivingLog,
    grid: int = 256,
    range_m: float = 32.0,
    min_height_m: float = BEV_MIN_HEIGHT_M,
    max_points_per_pixel: int = BEV_MAX_POINTS_PER_PIXEL,
) -> np.ndarray:
    """Memory-mapped uint8 (T, G, G) capped counts; computed and written once per log.

    ``cache / max_points_per_pixel`` equals ``lidar_bev_histogram`` exactly.
    """
    name = lidar_cache_name(grid)
    params = {"grid": int(grid), "range_m": float(range_m), "min_height_m": float(min_height_m),
              "max_points_per_pixel": int(max_points_per_pixel)}
    recorded = log.meta.get("lidar_bev_cache", {}).get(str(int(grid)))
    if log.has_array(name) and recorded == params:
        arr = log.read_array(name)
        if arr.shape == (log.num_frames, grid, grid) and arr.dtype == np.uint8:
            return arr
    out = np.empty((log.num_frames, grid, grid), dtype=np.uint8)
    for t in range(log.num_frames):
        hist = lidar_bev_histogram(log.lidar_points(t), grid, range_m, min_height_m, max_points_per_pixel)
        out[t] = np.rint(hist[0] * max_points_per_pixel).astype(np.uint8)
    log.write_array(name, out)
    caches = dict(log.meta.get("lidar_bev_cache", {}))
    caches[str(int(grid))] = params
    log.update_meta(lidar_bev_cache=caches)
    return log.read_array(name)


def _valid_teacher_rows(probs: np.ndarray) -> np.ndarray:
    p = np.asarray(probs, dtype=np.float32)
    sums = p.reshape(len(p), -1).sum(axis=1)
    return np.isfinite(sums) & (sums > 0)


class FrameDataset(Dataset):
    """Per-frame samples from one or more driving logs (see the module docstring)."""

    def __init__(
        self,
        log_dirs: str | Path | Iterable[str | Path],
        image_size: tuple[int, int] = (128, 128),
        lidar_grid: int = 256,
        lidar_range_m: float = 32.0,
        with_lidar: bool = True,
        frame_stride: int = 3,
        num_latent_tokens: int = NUM_LATENT_TOKENS,
        require: Sequence[str] = ("future",),
        with_next_image: bool = False,
        cache_lidar: bool = True,
        progress: bool = False,
        action_space: ActionSpace | None = None,
        trajectory_sampling: TrajectorySampling | None = None,
        route_points: int = 0,
        route_spacing_m: float = 3.0,
    ) -> None:
        if isinstance(log_dirs, (str, Path)):
            log_dirs = list_logs(log_dirs)
        self.log_dirs = [Path(p) for p in log_dirs]
        unknown = set(require) - set(TARGETS)
        if unknown:
            raise ValueError(f"unknown required targets {sorted(unknown)}; expected some of {TARGETS}")
        if frame_stride < 1:
            raise ValueError("frame_stride must be >= 1")
        self.image_size = tuple(int(v) for v in image_size)
        self.lidar_grid = int(lidar_grid)
        self.lidar_range_m = float(lidar_range_m)
        self.with_lidar = with_lidar
        self.frame_stride = int(frame_stride)
        self.num_latent_tokens = int(num_latent_tokens)
        self.require = tuple(require)
        self.with_next_image = with_next_image or "next_image" in self.require
        if self.with_next_image and "next_image" not in self.require:
            self.require = self.require + ("next_image",)
        self.cache_lidar = cache_lidar
        self.action_space = action_space

        logs = [DrivingLog(p) for p in self.log_dirs]
        # labels: required ones filter logs; optional ones are returned if every log has them
        for label, attr in (("latent_tokens", "latent_ego_codes"), ("teacher_probs", "teacher_probs"),
                            ("teacher_context", "teacher_context")):
            if label in self.require:
                logs = [lg for lg in logs if getattr(lg, attr) is not None]
        self.logs = logs
        self.returns = {
            label: label in self.require or (bool(logs) and all(getattr(lg, attr) is not None for lg in logs))
            for label, attr in (("latent_tokens", "latent_ego_codes"), ("teacher_probs", "teacher_probs"),
                                ("teacher_context", "teacher_context"))
        }
        if trajectory_sampling is not None:  # the planner's; every log's future trajectories must match it
            for lg in logs:
                check_same("trajectory sampling", trajectory_sampling, "the model", lg.trajectory_sampling,
                           f"the future trajectories of {lg.path}")
        if action_space is not None and self.returns["teacher_probs"]:
            for lg in logs:
                check_same("action space", action_space, "the model", teacher_action_space(lg.meta), f"the teacher labels of {lg.path}")
        if self.returns["teacher_context"]:
            shapes = {lg.teacher_context.shape[1:] for lg in logs}
            if len(shapes) > 1:
                raise LogFormatError(f"teacher_context shapes differ between logs: {sorted(shapes)}")

        self._bev: list[np.ndarray | None] = [None] * len(self.logs)
        if with_lidar and cache_lidar:
            iterator = range(len(self.logs))
            if progress:
                from tqdm import tqdm

                iterator = tqdm(iterator, desc="lidar BEV cache", unit="log")
            for i in iterator:
                try:
                    self._bev[i] = ensure_lidar_cache(self.logs[i], self.lidar_grid, self.lidar_range_m)
                except OSError:  # read-only log directory: histograms are computed per sample
                    self._bev[i] = None

        self.route_points = int(route_points)
        self.route_spacing_m = float(route_spacing_m)
        self._routes: list[tuple[np.ndarray, np.ndarray]] = []
        if self.route_points > 0:
            iterator = range(len(self.logs))
            if progress:
                from tqdm import tqdm

                iterator = tqdm(iterator, desc="route input", unit="log")
            self._routes = [log_route_samples(self.logs[i], self.route_points, self.route_spacing_m) for i in iterator]

        index = []
        for li, log in enumerate(self.logs):
            valid = self._valid_frames(log)
            frames = np.flatnonzero(valid)
            index.append(np.stack([np.full(len(frames), li), frames], axis=1))
        self.index = np.concatenate(index).astype(np.int64) if index else np.zeros((0, 2), dtype=np.int64)

    # ---- pickling (DataLoader workers started with spawn/forkserver): reopen the mmaps
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_log_paths"] = [lg.path for lg in self.logs]
        state["_bev_cached"] = [b is not None for b in self._bev]
        del state["logs"], state["_bev"]
        return state

    def __setstate__(self, state: dict) -> None:
        paths = state.pop("_log_paths")
        cached = state.pop("_bev_cached")
        self.__dict__.update(state)
        self.logs = [DrivingLog(p) for p in paths]
        self._bev = [self.logs[i].read_array(lidar_cache_name(self.lidar_grid)) if c else None for i, c in enumerate(cached)]

    # ---- indexing
    def _valid_frames(self, log: DrivingLog) -> np.ndarray:
        n = log.num_frames
        valid = np.ones(n, dtype=bool)
        stride = self.frame_stride
        if "future" in self.require:
            valid &= np.asarray(log.future_valid, dtype=bool)
        if "next_image" in self.require:
            valid[max(n - stride, 0):] = False
        if "latent_tokens" in self.require:
            valid &= self._token_valid(log)
        if "teacher_probs" in self.require:
            valid &= _valid_teacher_rows(log.teacher_probs)
        if "teacher_context" in self.require:
            ctx = log.teacher_context
            valid &= np.isfinite(np.asarray(ctx, dtype=np.float32).reshape(n, -1)).all(axis=1)
        return valid

    def _token_indices(self, t: int) -> np.ndarray:
        return t + self.frame_stride * np.arange(self.num_latent_tokens)

    def _token_valid(self, log: DrivingLog) -> np.ndarray:
        codes = np.asarray(log.latent_ego_codes)
        expected = self.action_space.codebook_size if self.action_space is not None else latent_codebook_size(log.meta)
        check_latent_codes(log.path, log.meta, codes, expected, "the model" if self.action_space is not None else "the log")
        n = log.num_frames
        ok = np.zeros(n, dtype=bool)
        good = codes >= 0  # -1: no transition (the log's tail)
        for t in range(n):
            idx = self._token_indices(t)
            ok[t] = idx[-1] < n and bool(good[idx].all())
        return ok

    def __len__(self) -> int:
        return len(self.index)

    # ---- samples
    def _image(self, log: DrivingLog, t: int) -> torch.Tensor:
        cams = log.camera(t)
        images = [CameraImage(image=cams[i], name=name) for i, name in enumerate(log.camera_names)]
        return torch.from_numpy(stitch_cameras(images, self.image_size))

    def _lidar(self, li: int, log: DrivingLog, t: int) -> torch.Tensor:
        cache = self._bev[li]
        if cache is not None:
            arr = np.asarray(cache[t], dtype=np.float32) / float(BEV_MAX_POINTS_PER_PIXEL)
            return torch.from_numpy(arr[None])
        return torch.from_numpy(lidar_bev_histogram(log.lidar_points(t), self.lidar_grid, self.lidar_range_m))

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        li, t = (int(v) for v in self.index[i])
        log = self.logs[li]
        sample: dict[str, torch.Tensor] = {
            "image": self._image(log, t),
            "ego_status": torch.from_numpy(log.ego_state(t).status_vector()),
            "trajectory": torch.from_numpy(log.future_trajectory(t)),
            "trajectory_valid": torch.tensor(bool(log.future_valid[t])),
            "log_index": torch.tensor(li, dtype=torch.int64),
            "frame_index": torch.tensor(t, dtype=torch.int64),
        }
        if self.with_lidar:
            sample["lidar_bev"] = self._lidar(li, log, t)
        if self.with_next_image:
            sample["next_image"] = self._image(log, min(t + self.frame_stride, log.num_frames - 1))
        if self.returns["latent_tokens"]:
            codes = np.asarray(log.latent_ego_codes)
            idx = self._token_indices(t)
            tokens = np.full(self.num_latent_tokens, -1, dtype=np.int64)
            inside = idx < log.num_frames
            tokens[inside] = codes[idx[inside]]
            sample["latent_tokens"] = torch.from_numpy(tokens)
        if self.returns["teacher_probs"]:
            sample["teacher_probs"] = torch.from_numpy(np.array(log.teacher_probs[t], dtype=np.float32))
        if self.returns["teacher_context"]:
            sample["teacher_context"] = torch.from_numpy(np.array(log.teacher_context[t], dtype=np.float32))
        if self.route_points > 0:
            points, valid = self._routes[li]
            sample["route"] = torch.from_numpy(points[t].copy())
            sample["route_valid"] = torch.tensor(bool(valid[t]))
        return sample


def measure_loading(dataset: Dataset, n: int = 200, batch_size: int | None = None, num_workers: int = 0,
                    seed: int = 0) -> float:
    """Frames per second for loading ``n`` random samples (optionally via a DataLoader)."""
    total = len(dataset)
    if total == 0:
        raise ValueError("empty dataset")
    n = min(n, total)
    rng = np.random.default_rng(seed)
    picks = rng.choice(total, size=n, replace=False).tolist()
    if batch_size is None and num_workers == 0:
        dataset[picks[0]]  # warm-up (page cache, lazy imports)
        start = time.perf_counter()
        for i in picks:
            dataset[i]
        return n / (time.perf_counter() - start)
    from torch.utils.data import DataLoader, Subset

    loader = DataLoader(Subset(dataset, picks), batch_size=batch_size or 1, num_workers=num_workers)
    start = time.perf_counter()
    count = 0
    for batch in loader:
        count += len(batch["image"])
    return count / (time.perf_counter() - start)
