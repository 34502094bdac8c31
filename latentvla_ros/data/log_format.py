"""The driving-log format: one directory of ``.npy`` arrays + ``meta.json`` + ``map.json``.

See ``docs/architecture.md`` (driving-log format table) for the contract. In short,
for a log of ``T`` frames at ``meta["dt_s"]``:

==========================  ==============================  ===========================================
file                        dtype / shape                   meaning
==========================  ==============================  ===========================================
``camera.npy``              uint8 (T, Ncam, H, W, 3)        RGB frames, ``meta["camera_names"]`` order
``lidar_points.npy``        float32 (P, 4)                  x, y, z, intensity, ego frame
``lidar_offsets.npy``       int64 (T+1,)                    frame t = ``points[off[t]:off[t+1]]``
``ego_pose.npy``            float64 (T, 3)                  world x, y, yaw
``ego_status.npy``          float32 (T, 5)                  vx, vy, ax, ay (ego frame), yaw rate
``command.npy``             uint8 (T,)                      ``DrivingCommand``
``future_trajectory.npy``   float32 (T, 8, 3)               8 poses at 0.5 s in frame t's ego frame
``future_valid.npy``        bool (T,)                       the 4 s future lies inside the log (and is clean)
``agents.npy``              float32 (A, 8)                  x, y, heading, length, width, vx, vy, id
``agents_offsets.npy``      int64 (T+1,)                    frame t = ``agents[off[t]:off[t+1]]``
``map.json``                                                lane centerlines, drivable polygons (world)
==========================  ==============================  ===========================================

Optional files, read when present: ``timestamps_ns.npy`` int64 (T,) (exact stamps;
without it, stamps are ``meta["start_stamp_ns"] + t * dt_s``), ``latent_ego_codes.npy``
int16 (T,), ``teacher_probs.npy`` float32 (T, 12, 16) (data/label_sizes.py), ``teacher_context.npy``
float16 (T, M, D), ``perturbation.npy`` float32 (T, 2) (``data/perturbation.py``: noise executed
from frame t to t+1; no ``future_valid`` where it acts in the horizon); caches via ``DrivingLog.write_array``.

Logs are written to a temporary sibling directory and renamed into place on
``close()``, so a half-written log is never listed by :func:`list_logs`.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentvla_ros.core.route import route_to_ego
from latentvla_ros.core.sizes import DEFAULT_TRAJECTORY_SAMPLING, TrajectorySampling
from latentvla_ros.core.types import (
    NUM_POSES,
    POSE_INTERVAL_S,
    AgentBox,
    CameraImage,
    DrivingCommand,
    EgoState,
    MapGeometry,
    SensorFrame,
)
from latentvla_ros.data.label_sizes import teacher_action_space, trajectory_sampling_meta, trajectory_sampling_of
from latentvla_ros.data.log_files import META_FILE, LogFormatError, load_array, read_meta, write_text_atomic
from latentvla_ros.data.perturbation import PERTURBATION_FILE, clean_future_mask

FORMAT_VERSION = 1
MAP_FILE = "map.json"
REQUIRED_META_KEYS = ("source", "dt_s", "num_frames", "camera_names")
AGENT_FIELDS = ("x", "y", "heading", "length", "width", "vx", "vy", "track_id")
EGO_STATUS_FIELDS = ("vx", "vy", "ax", "ay", "yaw_rate")
OPTIONAL_LABELS = ("latent_ego_codes", "teacher_probs", "teacher_context", PERTURBATION_FILE)
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_CORE_ARRAYS = ("camera", "lidar_points", "lidar_offsets", "ego_pose", "ego_status", "command", "future_trajectory",
                "future_valid", "agents", "agents_offsets", "timestamps_ns")


# ----------------------------------------------------------------------------- geometry


def wrap_angle(angle: np.ndarray | float) -> np.ndarray | float:
    """Wrap radians to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi


def world_to_ego(points_xy: np.ndarray, ego_pose: Sequence[float]) -> np.ndarray:
    """(N, 2) world points -> (N, 2) in the frame of ``ego_pose`` = (x, y, yaw) (``core.route.route_to_ego``)."""
    return route_to_ego(points_xy, ego_pose)


def ego_to_world(points_xy: np.ndarray, ego_pose: Sequence[float]) -> np.ndarray:
    """(N, 2) points in the frame of ``ego_pose`` -> (N, 2) world points."""
    x0, y0, yaw = float(ego_pose[0]), float(ego_pose[1]), float(ego_pose[2])
    c, s = np.cos(yaw), np.sin(yaw)
    p = np.asarray(points_xy, dtype=np.float64)[..., :2]
    return np.stack([c * p[..., 0] - s * p[..., 1] + x0, s * p[..., 0] + c * p[..., 1] + y0], axis=-1)


def compute_future_trajectory(
    ego_pose: np.ndarray,
    timestamps_ns: np.ndarray,
    num_poses: int = NUM_POSES,
    interval_s: float = POSE_INTERVAL_S,
    tolerance_s: float = 1e-3,
) -> tuple[np.ndarray, np.ndarray]:
    """Future ego poses of every frame in that frame's ego frame.

    ``ego_pose`` (T, 3) world x, y, yaw; ``timestamps_ns`` (T,) increasing. Pose k of
    frame t is the ego pose at ``stamp[t] + (k + 1) * interval_s`` (linear interpolation
    of x, y and the unwrapped yaw between log frames, exact on a regular grid), in frame
    t's ego frame, heading relative to frame t. Returns float32 (T, num_poses, 3) (zeros
    where invalid) and bool (T,) that is True where the whole horizon lies in the log.
    """
    pose = np.asarray(ego_pose, dtype=np.float64)
    stamps = np.asarray(timestamps_ns, dtype=np.int64)
    n = len(pose)
    traj = np.zeros((n, num_poses, 3), dtype=np.float32)
    valid = np.zeros(n, dtype=bool)
    if n == 0:
        return traj, valid
    t_rel = (stamps - stamps[0]).astype(np.float64) * 1e-9
    yaw_unwrapped = np.unwrap(pose[:, 2])
    horizon = np.arange(1, num_poses + 1, dtype=np.float64) * interval_s
    for t in range(n):
        query = t_rel[t] + horizon
        if query[-1] > t_rel[-1] + tolerance_s:
            continue
        query = np.minimum(query, t_rel[-1])
        xs = np.interp(query, t_rel, pose[:, 0])
        ys = np.interp(query, t_rel, pose[:, 1])
        yaws = np.interp(query, t_rel, yaw_unwrapped)
        local = world_to_ego(np.stack([xs, ys], axis=1), pose[t])
        traj[t, :, :2] = local
        traj[t, :, 2] = wrap_angle(yaws - yaw_unwrapped[t])
        valid[t] = True
    return traj, valid


def command_from_trajectory(traj: np.ndarray, valid: bool = True, lateral_threshold_m: float = 2.0,
                            heading_threshold_rad: float = 0.35) -> DrivingCommand:
    """Driving command derived from a future trajectory (when no route is available).

    LEFT/RIGHT when the final pose (4 s) turns by more than ``heading_threshold_rad`` or
    is offset sideways by more than ``lateral_threshold_m``; STRAIGHT otherwise; UNKNOWN
    when the future is not valid.
    """
    if not valid:
        return DrivingCommand.UNKNOWN
    y, heading = float(traj[-1, 1]), float(traj[-1, 2])
    if heading > heading_threshold_rad or y > lateral_threshold_m:
        return DrivingCommand.LEFT
    if heading < -heading_threshold_rad or y < -lateral_threshold_m:
        return DrivingCommand.RIGHT
    return DrivingCommand.STRAIGHT


# ----------------------------------------------------------------------------- helpers


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, array, allow_pickle=False)
    os.replace(tmp, path)


def _agents_to_array(agents: Any) -> np.ndarray:
    if agents is None:
        return np.zeros((0, 8), dtype=np.float32)
    if isinstance(agents, np.ndarray):
        arr = np.asarray(agents, dtype=np.float32)
        if arr.size == 0:
            return np.zeros((0, 8), dtype=np.float32)
        if arr.ndim != 2 or arr.shape[1] != 8:
            raise LogFormatError(f"agents must be (A, 8) {AGENT_FIELDS}, got {arr.shape}")
        return arr
    rows = [
        (a.x, a.y, a.heading, a.length, a.width, a.vx, a.vy, a.track_id)
        for a in agents
    ]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 8)


def map_to_json(map_geometry: MapGeometry) -> dict:
    return {
        "lane_centerlines": [np.asarray(p, dtype=np.float64)[:, :2].round(3).tolist() for p in map_geometry.lane_centerlines],
        "drivable_polygons": [np.asarray(p, dtype=np.float64)[:, :2].round(3).tolist() for p in map_geometry.drivable_polygons],
    }


def map_from_json(data: dict) -> MapGeometry:
    def _polys(key: str) -> list[np.ndarray]:
        out = []
        for i, poly in enumerate(data.get(key, [])):
            arr = np.asarray(poly, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[1] != 2:
                raise LogFormatError(f"map.json: {key}[{i}] must be a list of [x, y], got shape {arr.shape}")
            out.append(arr)
        return out

    return MapGeometry(lane_centerlines=_polys("lane_centerlines"), drivable_polygons=_polys("drivable_polygons"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


# ----------------------------------------------------------------------------- writer


class LogWriter:
    """Append frames, then ``close()`` writes the log directory.

    ``meta`` is merged into the written ``meta.json`` (``source``, ``scenario``, ``seed``,
    ``density``, ``camera_meters_per_pixel``, ``ego_length_m``, ...); ``dt_s``,
    ``num_frames``, ``camera_names`` and ``start_stamp_ns`` are filled in by the writer.
    Frames are either on the regular ``dt_s`` grid (default) or carry explicit
    ``stamp_ns`` (then ``timestamps_ns.npy`` is written too).
    """

    def __init__(
        self,
        out_dir: str | Path,
        meta: dict | None = None,
        *,
        dt_s: float = 0.1,
        camera_names: Sequence[str] = ("front",),
        start_stamp_ns: int = 0,
        overwrite: bool = False,
        trajectory_sampling: TrajectorySampling = DEFAULT_TRAJECTORY_SAMPLING,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.trajectory_sampling = trajectory_sampling  # of future_trajectory.npy, recorded in meta.json
        if self.out_dir.exists() and not overwrite:
            raise FileExistsError(f"log directory exists: {self.out_dir} (pass overwrite=True)")
        if dt_s <= 0:
            raise ValueError(f"dt_s must be > 0, got {dt_s}")
        self.meta = dict(meta or {})
        self.dt_s = float(dt_s)
        self.camera_names = list(camera_names)
        self.start_stamp_ns = int(start_stamp_ns)
        self.overwrite = overwrite
        self._camera: list[np.ndarray] = []
        self._lidar: list[np.ndarray] = []
        self._pose: list[np.ndarray] = []
        self._status: list[np.ndarray] = []
        self._command: list[int] = []
        self._agents: list[np.ndarray] = []
        self._stamps: list[int | None] = []
        self._map = MapGeometry()
        self._closed = False

    @property
    def num_frames(self) -> int:
        return len(self._pose)

    def set_map(self, map_geometry: MapGeometry) -> None:
        self._map = map_geometry

    def append(
        self,
        *,
        camera: np.ndarray,
        lidar_points: np.ndarray,
        ego_pose: Sequence[float],
        ego_status: Sequence[float],
        command: int | DrivingCommand = DrivingCommand.UNKNOWN,
        agents: np.ndarray | Iterable[AgentBox] | None = None,
        stamp_ns: int | None = None,
    ) -> None:
        """Add one frame. ``camera`` is (H, W, 3) or (Ncam, H, W, 3) uint8."""
        if self._closed:
            raise RuntimeError("LogWriter is closed")
        cam = np.asarray(camera)
        if cam.ndim == 3:
            cam = cam[None]
        if cam.ndim != 4 or cam.shape[-1] != 3 or cam.dtype != np.uint8:
            raise LogFormatError(f"camera must be (Ncam, H, W, 3) uint8, got {cam.shape} {cam.dtype}")
        if cam.shape[0] != len(self.camera_names):
            raise LogFormatError(f"camera has {cam.shape[0]} images, camera_names has {len(self.camera_names)}")
        if self._camera and cam.shape != self._camera[0].shape:
            raise LogFormatError(f"camera shape changed: {self._camera[0].shape} -> {cam.shape}")
        pts = np.asarray(lidar_points, dtype=np.float32)
        if pts.size == 0:
            pts = np.zeros((0, 4), dtype=np.float32)
        if pts.ndim != 2 or pts.shape[1] != 4:
            raise LogFormatError(f"lidar_points must be (N, 4), got {pts.shape}")
        pose = np.asarray(ego_pose, dtype=np.float64).reshape(-1)
        status = np.asarray(ego_status, dtype=np.float32).reshape(-1)
        if pose.shape != (3,) or status.shape != (5,):
            raise LogFormatError(f"ego_pose must be (3,), ego_status (5,), got {pose.shape}, {status.shape}")
        if self._stamps and (stamp_ns is None) != (self._stamps[0] is None):
            raise LogFormatError("either every frame has stamp_ns or none has")
        self._camera.append(np.ascontiguousarray(cam))
        self._lidar.append(np.ascontiguousarray(pts))
        self._pose.append(pose)
        self._status.append(status)
        self._command.append(int(DrivingCommand(int(command))))
        self._agents.append(_agents_to_array(agents))
        self._stamps.append(None if stamp_ns is None else int(stamp_ns))

    def close(self, perturbation: np.ndarray | None = None) -> Path:
        """Write everything; returns the log directory. ``perturbation`` (T, 2): the expert's control
        noise (``data/perturbation.py``), saved; frames whose future it touches lose ``future_valid``."""
        if self._closed:
            return self.out_dir
        if not self._pose:
            raise LogFormatError("cannot write an empty log")
        n = len(self._pose)
        explicit_stamps = self._stamps[0] is not None
        if explicit_stamps:
            stamps = np.asarray(self._stamps, dtype=np.int64)
            if np.any(np.diff(stamps) <= 0):
                raise LogFormatError("stamp_ns must increase strictly")
        else:
            stamps = self.start_stamp_ns + np.round(np.arange(n) * self.dt_s * 1e9).astype(np.int64)
        pose = np.stack(self._pose)
        s = self.trajectory_sampling
        traj, valid = compute_future_trajectory(pose, stamps, num_poses=s.num_poses, interval_s=s.interval_s)
        if perturbation is not None:  # DART recovery logs: a perturbed future is no expert label
            valid &= clean_future_mask(perturbation := np.asarray(perturbation, dtype=np.float32).reshape(n, 2), self.dt_s)
        lidar_off = np.zeros(n + 1, dtype=np.int64)
        lidar_off[1:] = np.cumsum([len(p) for p in self._lidar])
        agent_off = np.zeros(n + 1, dtype=np.int64)
        agent_off[1:] = np.cumsum([len(a) for a in self._agents])
        arrays = {
            "camera": np.stack(self._camera),
            "lidar_points": np.concatenate(self._lidar).astype(np.float32, copy=False),
            "lidar_offsets": lidar_off,
            "ego_pose": pose,
            "ego_status": np.stack(self._status).astype(np.float32),
            "command": np.asarray(self._command, dtype=np.uint8),
            "future_trajectory": traj,
            "future_valid": valid,
            "agents": np.concatenate(self._agents).astype(np.float32, copy=False),
            "agents_offsets": agent_off,
        }
        if explicit_stamps:
            arrays["timestamps_ns"] = stamps
        if perturbation is not None:
            arrays[PERTURBATION_FILE] = perturbation
        meta = dict(self.meta, **trajectory_sampling_meta(s))
        meta.setdefault("source", "unknown")
        meta.update(
            format_version=FORMAT_VERSION,
            dt_s=self.dt_s,
            num_frames=n,
            camera_names=self.camera_names,
            start_stamp_ns=int(stamps[0]),
            camera_shape_hw=list(arrays["camera"].shape[2:4]),
        )
        parent = self.out_dir.parent
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".{self.out_dir.name}.{uuid.uuid4().hex}.partial"
        tmp.mkdir()
        try:
            for name, arr in arrays.items():
                with open(tmp / f"{name}.npy", "wb") as fh:
                    np.save(fh, arr, allow_pickle=False)
            (tmp / MAP_FILE).write_text(json.dumps(map_to_json(self._map), separators=(",", ":")))
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default))
            if self.out_dir.exists():
                if not self.overwrite:
                    raise FileExistsError(f"log directory exists: {self.out_dir}")
                shutil.rmtree(self.out_dir)
            os.replace(tmp, self.out_dir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._closed = True
        self._camera = self._lidar = self._agents = []
        return self.out_dir

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


# ----------------------------------------------------------------------------- reader


def _expect(cond: bool, log_dir: Path, message: str) -> None:
    if not cond:
        raise LogFormatError(f"{log_dir}: {message}")


class DrivingLog:
    """Read-only view of a log directory (arrays are memory-mapped)."""

    def __init__(self, log_dir: str | Path) -> None:
        self.path = Path(log_dir)
        if not self.path.is_dir():
            raise LogFormatError(f"{self.path}: not a log directory")
        self.meta: dict = read_meta(self.path, required=True)
        missing = [k for k in REQUIRED_META_KEYS if k not in self.meta]
        _expect(not missing, self.path, f"{META_FILE} lacks keys {missing}")
        self.dt_s = float(self.meta["dt_s"])
        self.camera_names: list[str] = list(self.meta["camera_names"])
        self._map: MapGeometry | None = None
        _expect((self.path / MAP_FILE).is_file(), self.path, f"missing {MAP_FILE}")
        self._arrays: dict[str, np.ndarray] = {}
        for name in _CORE_ARRAYS:
            if name == "timestamps_ns" and not (self.path / f"{name}.npy").is_file():
                continue
            self._arrays[name] = self._load(name)
        self._labels: dict[str, np.ndarray] = {}
        for name in OPTIONAL_LABELS:
            if (self.path / f"{name}.npy").is_file():
                self._labels[name] = self._load(name)
        self._validate()

    # ---- loading / validation
    def _load(self, name: str) -> np.ndarray:
        return load_array(self.path, f"{name}.npy", mmap=True)

    def _check(self, name: str, dtype: Any, shape: tuple) -> None:
        arr = self._arrays.get(name, self._labels.get(name))
        _expect(arr.dtype == np.dtype(dtype), self.path, f"{name}.npy has dtype {arr.dtype}, expected {np.dtype(dtype)}")
        ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        _expect(ok, self.path, f"{name}.npy has shape {arr.shape}, expected {want}")

    def _validate(self) -> None:
        n = int(self.meta["num_frames"])
        _expect(n > 0, self.path, "num_frames must be > 0")
        self.num_frames = n
        self._check("camera", np.uint8, (n, len(self.camera_names), None, None, 3))
        self._check("lidar_points", np.float32, (None, 4))
        self._check("lidar_offsets", np.int64, (n + 1,))
        self._check("ego_pose", np.float64, (n, 3))
        self._check("ego_status", np.float32, (n, 5))
        self._check("command", np.uint8, (n,))
        self._check("future_trajectory", np.float32, (n, self.trajectory_sampling.num_poses, 3))
        self._check("future_valid", np.bool_, (n,))
        self._check("agents", np.float32, (None, 8))
        self._check("agents_offsets", np.int64, (n + 1,))
        if "timestamps_ns" in self._arrays:
            self._check("timestamps_ns", np.int64, (n,))
        for name, total in (("lidar_offsets", "lidar_points"), ("agents_offsets", "agents")):
            off = np.asarray(self._arrays[name])
            _expect(off[0] == 0 and off[-1] == len(self._arrays[total]), self.path,
                    f"{name}.npy must start at 0 and end at len({total}) = {len(self._arrays[total])}, got {off[0]}..{off[-1]}")
            _expect(bool(np.all(np.diff(off) >= 0)), self.path, f"{name}.npy must be non-decreasing")
        _expect(int(np.max(self._arrays["command"])) <= int(DrivingCommand.UNKNOWN), self.path, "command.npy holds values > 3")
        for name in self._labels:
            self._validate_label(name, self._labels[name])

    def _validate_label(self, name: str, arr: np.ndarray) -> None:
        n = self.num_frames
        if name == "latent_ego_codes":
            _expect(arr.dtype == np.int16 and arr.shape == (n,), self.path,
                    f"latent_ego_codes.npy must be int16 ({n},), got {arr.dtype} {arr.shape}")
        elif name == "teacher_probs":
            k, c = teacher_action_space(self.meta).shape  # the teacher's sizes, data/label_sizes.py
            _expect(arr.dtype == np.float32 and arr.shape == (n, k, c), self.path,
                    f"teacher_probs.npy must be float32 ({n}, {k}, {c}), got {arr.dtype} {arr.shape}")
        elif name == "teacher_context":
            _expect(arr.dtype == np.float16 and arr.ndim == 3 and arr.shape[0] == n, self.path,
                    f"teacher_context.npy must be float16 ({n}, M, D), got {arr.dtype} {arr.shape}")
        elif name == PERTURBATION_FILE:
            _expect(arr.dtype == np.float32 and arr.shape == (n, 2) and bool(np.isfinite(arr).all()), self.path,
                    f"perturbation.npy must be finite float32 ({n}, 2), got {arr.dtype} {arr.shape}")
            leak = np.asarray(self.future_valid) & ~clean_future_mask(arr, self.dt_s)
            _expect(not leak.any(), self.path, f"future_valid is True at perturbed frames {np.flatnonzero(leak)[:5].tolist()}")

    # ---- metadata
    def __len__(self) -> int:
        return self.num_frames

    def __repr__(self) -> str:
        return f"DrivingLog({str(self.path)!r}, frames={self.num_frames}, source={self.meta.get('source')!r})"

    @property
    def timestamps_ns(self) -> np.ndarray:
        if "timestamps_ns" in self._arrays:
            return np.asarray(self._arrays["timestamps_ns"])
        start = int(self.meta.get("start_stamp_ns", 0))
        return start + np.round(np.arange(self.num_frames) * self.dt_s * 1e9).astype(np.int64)

    def stamp_ns(self, t: int) -> int:
        return int(self.timestamps_ns[self._index(t)])

    def _index(self, t: int) -> int:
        t = int(t)
        if t < 0:
            t += self.num_frames
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} out of range [0, {self.num_frames})")
        return t

    # ---- raw arrays (memory-mapped, read-only)
    @property
    def camera_array(self) -> np.ndarray:
        return self._arrays["camera"]

    @property
    def ego_pose_array(self) -> np.ndarray:
        return self._arrays["ego_pose"]

    @property
    def ego_status_array(self) -> np.ndarray:
        return self._arrays["ego_status"]

    @property
    def command_array(self) -> np.ndarray:
        return self._arrays["command"]

    @property
    def future_valid(self) -> np.ndarray:
        return self._arrays["future_valid"]

    @property
    def future_trajectory_array(self) -> np.ndarray:
        return self._arrays["future_trajectory"]

    @property
    def lidar_offsets(self) -> np.ndarray:
        return self._arrays["lidar_offsets"]

    # ---- per frame
    def camera(self, t: int) -> np.ndarray:
        """(Ncam, H, W, 3) uint8 (a read-only view)."""
        return self._arrays["camera"][self._index(t)]

    def lidar_points(self, t: int) -> np.ndarray:
        """(N, 4) float32 x, y, z, intensity in the ego frame (a copy)."""
        t = self._index(t)
        off = self._arrays["lidar_offsets"]
        return np.array(self._arrays["lidar_points"][off[t]:off[t + 1]], dtype=np.float32)

    def ego_pose(self, t: int) -> np.ndarray:
        """(3,) world x, y, yaw."""
        return np.array(self._arrays["ego_pose"][self._index(t)], dtype=np.float64)

    def ego_state(self, t: int) -> EgoState:
        t = self._index(t)
        s = np.asarray(self._arrays["ego_status"][t], dtype=np.float32)
        return EgoState(
            velocity=s[0:2].copy(),
            acceleration=s[2:4].copy(),
            yaw_rate=float(s[4]),
            command=DrivingCommand(int(self._arrays["command"][t])),
        )

    def command(self, t: int) -> DrivingCommand:
        return DrivingCommand(int(self._arrays["command"][self._index(t)]))

    def agents_array(self, t: int) -> np.ndarray:
        """(A, 8) float32 rows of ``AGENT_FIELDS`` (world frame)."""
        t = self._index(t)
        off = self._arrays["agents_offsets"]
        return np.array(self._arrays["agents"][off[t]:off[t + 1]], dtype=np.float32)

    @functools.cached_property
    def static_track_ids(self) -> frozenset[int]:
        """Tracks that never move in the whole log (road objects, parked cars).

        A vehicle that is stopped only for a while (at a light, in a queue) is not static:
        for the scorer a collision with it is a collision with an agent, not an object.
        """
        rows = np.asarray(self._arrays["agents"])
        if rows.size == 0:
            return frozenset()
        ids = rows[:, 7].astype(np.int64)
        moving = (np.abs(rows[:, 5]) > 1e-6) | (np.abs(rows[:, 6]) > 1e-6)
        static = set(np.unique(ids).tolist()) - set(np.unique(ids[moving]).tolist())
        for tid in list(static):  # never moving also means never displaced
            xy = rows[ids == tid, :2]
            if np.ptp(xy, axis=0).max() > 0.05:
                static.discard(tid)
        return frozenset(int(t) for t in static)

    def agents(self, t: int) -> list[AgentBox]:
        return [
            AgentBox(
                x=float(r[0]), y=float(r[1]), heading=float(r[2]), length=float(r[3]), width=float(r[4]),
                vx=float(r[5]), vy=float(r[6]), track_id=int(r[7]),
                is_static=int(r[7]) in self.static_track_ids,
            )
            for r in self.agents_array(t)
        ]

    def future_trajectory(self, t: int) -> np.ndarray:
        """(8, 3) float32 x, y, heading in frame t's ego frame (zeros when not valid)."""
        return np.array(self._arrays["future_trajectory"][self._index(t)], dtype=np.float32)

    def sensor_frame(self, t: int) -> SensorFrame:
        t = self._index(t)
        cams = self._arrays["camera"][t]
        return SensorFrame(
            stamp_ns=self.stamp_ns(t),
            cameras=[CameraImage(image=np.array(cams[i]), name=name) for i, name in enumerate(self.camera_names)],
            lidar_points=self.lidar_points(t),
            ego=self.ego_state(t),
        )

    @property
    def map(self) -> MapGeometry:
        if self._map is None:
            try:
                data = json.loads((self.path / MAP_FILE).read_text())
            except json.JSONDecodeError as exc:
                raise LogFormatError(f"{self.path}: {MAP_FILE} is not valid JSON: {exc}") from exc
            self._map = map_from_json(data)
        return self._map

    # ---- optional labels and caches
    @property
    def latent_ego_codes(self) -> np.ndarray | None:
        return self._labels.get("latent_ego_codes")

    @property
    def trajectory_sampling(self) -> TrajectorySampling:
        return trajectory_sampling_of(self.meta)

    @property
    def teacher_probs(self) -> np.ndarray | None:
        return self._labels.get("teacher_probs")

    @property
    def teacher_context(self) -> np.ndarray | None:
        return self._labels.get("teacher_context")

    def has_array(self, name: str) -> bool:
        return (self.path / f"{name}.npy").is_file()

    def read_array(self, name: str, mmap: bool = True) -> np.ndarray:
        """Any extra per-log array (labels, caches such as ``lidar_bev_256``)."""
        if not _NAME_RE.match(name):
            raise ValueError(f"bad array name {name!r}")
        return load_array(self.path, f"{name}.npy", mmap=mmap)

    def write_array(self, name: str, array: np.ndarray) -> Path:
        """Add or replace a per-frame array file (first dimension = num_frames), atomically.

        Label names (``latent_ego_codes``, ``teacher_probs``, ``teacher_context``) are
        checked against the format and become visible through the properties at once.
        Core files cannot be overwritten.
        """
        if not _NAME_RE.match(name):
            raise ValueError(f"bad array name {name!r} (lower-case letters, digits, _)")
        if name in _CORE_ARRAYS:
            raise ValueError(f"{name} is a core log file and cannot be rewritten")
        arr = np.asarray(array)
        if arr.ndim == 0 or arr.shape[0] != self.num_frames:
            raise LogFormatError(f"{name}: first dimension must be num_frames={self.num_frames}, got {arr.shape}")
        if name in OPTIONAL_LABELS:
            self._validate_label(name, arr)
        path = self.path / f"{name}.npy"
        _atomic_save_npy(path, np.ascontiguousarray(arr))
        if name in OPTIONAL_LABELS:
            self._labels[name] = np.load(path, mmap_mode="r", allow_pickle=False)
        return path

    def update_meta(self, **items: Any) -> None:
        """Merge keys into ``meta.json`` (atomic rewrite)."""
        self.meta.update(items)
        write_text_atomic(self.path / META_FILE, json.dumps(self.meta, indent=2, sort_keys=True, default=_json_default))


def is_log_dir(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / META_FILE).is_file() and (p / "ego_pose.npy").is_file()


def list_logs(root: str | Path) -> list[Path]:
    """Log directories at or below ``root`` (sorted; hidden/partial directories skipped)."""
    root = Path(root)
    if is_log_dir(root):
        return [root]
    found: list[Path] = []
    if not root.is_dir():
        return found
    for dirpath, dirnames, _files in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        p = Path(dirpath)
        if p != root and is_log_dir(p):
            found.append(p)
            dirnames[:] = []
    return sorted(found)
