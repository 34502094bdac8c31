"""Readers for public driving datasets -> the driving-log format.

NAVSIM / OpenScene
------------------
OpenScene ships one pickled list of frame dicts per log. **Unpickling runs arbitrary
code**, so this module never unpickles during normal reading: it reads a JSON export
of the same fields (``openscene-json-v1``: ``{"format": ..., "frames": [frame, ...]}``,
numpy arrays as nested lists). :func:`convert_openscene_pickle` makes that export from a
``.pkl``; run it only on files you trust (it refuses unless ``trusted=True``), e.g. the
official release verified by its checksums, once, in a separate step.

Frame fields used (OpenScene names): ``token``, ``timestamp`` (us), ``log_name``,
``scene_token``, ``map_location``, ``ego2global_translation`` (3), ``ego2global_rotation``
(quaternion w, x, y, z), ``ego_dynamic_state`` (vx, vy, ax, ay in the ego frame),
``driving_command`` (one-hot left, straight, right[, unknown]), ``lidar_path`` (relative to
the sensor-blob root; PCD or ``.bin``), ``lidar2ego_translation`` / ``lidar2ego_rotation``
(optional, applied only with ``apply_lidar2ego``), ``cams`` (``CAM_F0`` ... with ``data_path``), ``anns`` (``gt_boxes`` (N, 7)
x, y, z, length, width, height, yaw in the ego frame, ``gt_velocity_3d`` (N, 3),
``track_tokens``). NAVSIM samples at 2 Hz, so these logs have ``dt_s = 0.5``.

nuScenes
--------
Reads the JSON tables (``scene``, ``sample``, ``sample_data``, ``ego_pose``,
``calibrated_sensor``, ``sample_annotation``, optional ``sensor``) plus the files under
``samples/`` and ``sweeps/`` (``CAM_FRONT/*.jpg``, ``LIDAR_TOP/*.pcd.bin`` float32 x, y, z,
intensity, ring in the LiDAR frame). One log per scene at ``rate_hz`` (10 Hz from the
20 Hz LiDAR sweeps; if the LiDAR is sparser, every LiDAR frame is used), the camera
nearest in time, LiDAR points moved into the ego (rear axle) frame, annotations
interpolated between key frames, ego status from finite differences of ego poses.

Neither source carries a map our format can use directly, so ``map.json`` is empty;
driving commands come from the data (NAVSIM) or from the future path (nuScenes).
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentvla_ros.core.types import DrivingCommand
from latentvla_ros.data.log_format import (
    LogFormatError,
    LogWriter,
    command_from_trajectory,
    compute_future_trajectory,
    wrap_angle,
)

OPENSCENE_EXPORT_FORMAT = "openscene-json-v1"


class ExternalDataError(ValueError):
    """Source data that is missing, inconsistent or in an unsupported layout."""


# ----------------------------------------------------------------------------- shared helpers


def quaternion_wxyz_to_matrix(q: Sequence[float]) -> np.ndarray:
    w, x, y, z = (float(v) for v in q)
    n = math.sqrt(w * w + x * x + y * y + z * z)
    if n == 0:
        raise ExternalDataError("zero quaternion")
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def quaternion_wxyz_to_yaw(q: Sequence[float]) -> float:
    w, x, y, z = (float(v) for v in q)
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def yaw_to_quaternion_wxyz(yaw: float) -> list[float]:
    return [math.cos(yaw / 2.0), 0.0, 0.0, math.sin(yaw / 2.0)]


def read_pcd(path: str | Path) -> np.ndarray:
    """PCD (ascii or binary) -> (N, 4) float32 x, y, z, intensity (0 when absent)."""
    raw = Path(path).read_bytes()
    header: dict[str, list[str]] = {}
    pos = 0
    while True:
        end = raw.find(b"\n", pos)
        if end < 0:
            raise ExternalDataError(f"{path}: PCD header not terminated")
        line = raw[pos:end].decode("ascii", "replace").strip()
        pos = end + 1
        if not line or line.startswith("#"):
            continue
        key, *values = line.split()
        header[key.upper()] = values
        if key.upper() == "DATA":
            break
    try:
        fields = header["FIELDS"]
        sizes = [int(v) for v in header["SIZE"]]
        types = header["TYPE"]
        counts = [int(v) for v in header.get("COUNT", ["1"] * len(fields))]
        n = int(header.get("POINTS", [None])[0] or int(header["WIDTH"][0]) * int(header["HEIGHT"][0]))
        data_kind = header["DATA"][0].lower()
    except (KeyError, ValueError, IndexError) as exc:
        raise ExternalDataError(f"{path}: bad PCD header: {exc}") from exc
    if data_kind == "ascii":
        table = np.loadtxt(raw[pos:].decode("ascii").splitlines(), dtype=np.float64, ndmin=2)
        cols, c = {}, 0
        for name, count in zip(fields, counts):
            cols[name] = c
            c += count
        get = lambda name: table[:, cols[name]]
    elif data_kind == "binary":
        kinds = {"F": "f", "I": "i", "U": "u"}
        dtype = np.dtype([(name, f"<{kinds[t]}{s}", (count,) if count > 1 else ())
                          for name, s, t, count in zip(fields, sizes, types, counts)])
        if len(raw) - pos < n * dtype.itemsize:
            raise ExternalDataError(f"{path}: PCD data has {len(raw) - pos} bytes, expected {n * dtype.itemsize}")
        rec = np.frombuffer(raw, dtype=dtype, count=n, offset=pos)
        get = lambda name: rec[name]
    else:
        raise ExternalDataError(f"{path}: PCD DATA {data_kind!r} not supported (convert to binary/ascii)")
    for name in ("x", "y", "z"):
        if name not in fields:
            raise ExternalDataError(f"{path}: PCD lacks field {name!r}")
    out = np.zeros((n, 4), dtype=np.float32)
    for i, name in enumerate(("x", "y", "z")):
        out[:, i] = get(name)
    if "intensity" in fields:
        out[:, 3] = get("intensity")
    return out


def read_points_file(path: str | Path, bin_columns: int = 5) -> np.ndarray:
    """``.pcd`` or raw float32 ``.bin`` (``bin_columns`` per point) -> (N, 4) x, y, z, intensity."""
    path = Path(path)
    if not path.is_file():
        raise ExternalDataError(f"missing point cloud {path}")
    if path.suffix == ".pcd":
        return read_pcd(path)
    arr = np.fromfile(path, dtype=np.float32)
    if arr.size % bin_columns:
        raise ExternalDataError(f"{path}: {arr.size} floats is not a multiple of {bin_columns} columns")
    arr = arr.reshape(-1, bin_columns)
    out = np.zeros((len(arr), 4), dtype=np.float32)
    out[:, : min(4, bin_columns)] = arr[:, : min(4, bin_columns)]
    return out


def read_rgb(path: str | Path, image_width: int | None = None) -> np.ndarray:
    import cv2

    path = Path(path)
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise ExternalDataError(f"cannot read image {path}")
    img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if image_width and img.shape[1] != image_width:
        h = max(1, round(img.shape[0] * image_width / img.shape[1]))
        img = cv2.resize(img, (image_width, h), interpolation=cv2.INTER_AREA)
    return img


def transform_points(points: np.ndarray, rotation_wxyz: Sequence[float] | None, translation: Sequence[float] | None) -> np.ndarray:
    """Sensor-frame points -> parent frame (x' = R x + t); intensity kept."""
    if rotation_wxyz is None and translation is None:
        return points
    out = points.copy()
    r = quaternion_wxyz_to_matrix(rotation_wxyz) if rotation_wxyz is not None else np.eye(3)
    t = np.asarray(translation if translation is not None else (0, 0, 0), dtype=np.float64)
    out[:, :3] = (points[:, :3].astype(np.float64) @ r.T + t).astype(np.float32)
    return out


def ego_status_from_poses(poses: np.ndarray, stamps_ns: np.ndarray) -> np.ndarray:
    """(T, 5) vx, vy, ax, ay (ego frame), yaw rate from world poses by finite differences."""
    n = len(poses)
    status = np.zeros((n, 5), dtype=np.float32)
    if n < 2:
        return status
    t = (stamps_ns - stamps_ns[0]).astype(np.float64) * 1e-9
    yaw = np.unwrap(poses[:, 2])
    vel = np.stack([np.gradient(poses[:, 0], t), np.gradient(poses[:, 1], t)], axis=1)
    acc = np.stack([np.gradient(vel[:, 0], t), np.gradient(vel[:, 1], t)], axis=1)
    rate = np.gradient(yaw, t)
    c, s = np.cos(poses[:, 2]), np.sin(poses[:, 2])
    status[:, 0] = c * vel[:, 0] + s * vel[:, 1]
    status[:, 1] = -s * vel[:, 0] + c * vel[:, 1]
    status[:, 2] = c * acc[:, 0] + s * acc[:, 1]
    status[:, 3] = -s * acc[:, 0] + c * acc[:, 1]
    status[:, 4] = rate
    return status


def _boxes_to_world(boxes_ego: np.ndarray, vel_ego: np.ndarray | None, pose: np.ndarray, track_ids: Sequence[int]) -> np.ndarray:
    """(N, >=7) x, y, z, l, w, h, yaw in the ego frame -> (N, 8) agent rows (world)."""
    if len(boxes_ego) == 0:
        return np.zeros((0, 8), dtype=np.float32)
    c, s = math.cos(pose[2]), math.sin(pose[2])
    x = pose[0] + c * boxes_ego[:, 0] - s * boxes_ego[:, 1]
    y = pose[1] + s * boxes_ego[:, 0] + c * boxes_ego[:, 1]
    heading = wrap_angle(boxes_ego[:, 6] + pose[2])
    if vel_ego is None or len(vel_ego) == 0:
        vx = vy = np.zeros(len(boxes_ego))
    else:
        vx = c * vel_ego[:, 0] - s * vel_ego[:, 1]
        vy = s * vel_ego[:, 0] + c * vel_ego[:, 1]
    return np.stack([x, y, heading, boxes_ego[:, 3], boxes_ego[:, 4], vx, vy, np.asarray(track_ids, dtype=np.float64)],
                    axis=1).astype(np.float32)


class _TrackIds:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def __call__(self, token: str) -> int:
        return self.ids.setdefault(str(token), len(self.ids))


def _command_from_onehot(value: Any) -> DrivingCommand:
    arr = np.asarray(value, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.any(arr > 0):
        return DrivingCommand.UNKNOWN
    idx = int(np.argmax(arr))
    return DrivingCommand(idx) if idx <= int(DrivingCommand.UNKNOWN) else DrivingCommand.UNKNOWN


# ----------------------------------------------------------------------------- NAVSIM / OpenScene


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "elements"):  # pyquaternion.Quaternion
        return _to_jsonable(list(obj.elements))
    return str(obj)


def convert_openscene_pickle(pkl_path: str | Path, out_path: str | Path, *, trusted: bool = False) -> Path:
    """Convert one OpenScene ``.pkl`` log to the JSON export this module reads.

    **Only for files you trust**: unpickling executes code embedded in the file. Pass
    ``trusted=True`` to confirm; otherwise this raises without opening the file.
    """
    if not trusted:
        raise PermissionError(
            f"refusing to unpickle {pkl_path}: pickles run arbitrary code. Verify the file's origin "
            "(e.g. official OpenScene release checksums) and call convert_openscene_pickle(..., trusted=True)."
        )
    import pickle

    with open(pkl_path, "rb") as fh:
        frames = pickle.load(fh)  # explicitly trusted input only
    if isinstance(frames, dict) and "frames" in frames:
        frames = frames["frames"]
    if not isinstance(frames, list):
        raise ExternalDataError(f"{pkl_path}: expected a list of frame dicts, got {type(frames).__name__}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"format": OPENSCENE_EXPORT_FORMAT, "source": str(pkl_path), "frames": _to_jsonable(frames)}))
    return out_path


def read_openscene_export(path: str | Path) -> list[dict]:
    """Frames of a JSON export (see :func:`convert_openscene_pickle`), sorted by timestamp."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ExternalDataError(f"{path}: cannot read OpenScene export: {exc}") from exc
    if isinstance(data, dict):
        if data.get("format") != OPENSCENE_EXPORT_FORMAT:
            raise ExternalDataError(f"{path}: format {data.get('format')!r}, expected {OPENSCENE_EXPORT_FORMAT!r}")
        frames = data.get("frames")
    else:
        frames = data
    if not isinstance(frames, list) or not frames:
        raise ExternalDataError(f"{path}: no frames")
    for i, f in enumerate(frames):
        for key in ("timestamp", "ego2global_translation", "ego2global_rotation"):
            if key not in f:
                raise ExternalDataError(f"{path}: frame {i} lacks {key!r}")
    return sorted(frames, key=lambda f: int(f["timestamp"]))


def openscene_to_log(
    export_path: str | Path,
    sensor_blobs_root: str | Path,
    out_dir: str | Path,
    cameras: Sequence[str] = ("CAM_F0",),
    *,
    image_width: int | None = 640,
    with_lidar: bool = True,
    apply_lidar2ego: bool = False,
    overwrite: bool = False,
) -> Path:
    """One OpenScene/NAVSIM log (JSON export + sensor blobs) -> a driving log.

    NAVSIM's own agents use the merged point cloud as stored (ego-aligned); set
    ``apply_lidar2ego`` to move points with ``lidar2ego_rotation``/``translation`` instead.
    Images are resized to ``image_width`` (aspect kept); ``None`` keeps full size.
    """
    frames = read_openscene_export(export_path)
    root = Path(sensor_blobs_root)
    stamps = np.array([int(f["timestamp"]) * 1000 for f in frames], dtype=np.int64)  # us -> ns
    if np.any(np.diff(stamps) <= 0):
        raise ExternalDataError(f"{export_path}: duplicate timestamps")
    poses = np.array([[f["ego2global_translation"][0], f["ego2global_translation"][1],
                       quaternion_wxyz_to_yaw(f["ego2global_rotation"])] for f in frames], dtype=np.float64)
    fd = ego_status_from_poses(poses, stamps)
    first = frames[0]
    dt = float(np.median(np.diff(stamps)) * 1e-9) if len(frames) > 1 else 0.5
    meta = {
        "source": "navsim-openscene",
        "log_name": first.get("log_name"),
        "scene_token": first.get("scene_token"),
        "map_location": first.get("map_location"),
        "ego_reference": "rear_axle",
        "ego_length_m": 5.176,  # nuPlan ego (Chrysler Pacifica) footprint
        "ego_width_m": 2.297,
        "export": str(export_path),
    }
    writer = LogWriter(out_dir, meta, dt_s=round(dt, 6), camera_names=[c.lower() for c in cameras], overwrite=overwrite)
    tracks = _TrackIds()
    shape = None
    for i, f in enumerate(frames):
        imgs = []
        for cam in cameras:
            info = (f.get("cams") or {}).get(cam)
            if info is None:
                raise ExternalDataError(f"{export_path}: frame {i} has no camera {cam!r}")
            img = read_rgb(root / info["data_path"], image_width)
            imgs.append(img)
        if shape is None:
            shape = imgs[0].shape
        imgs = [im if im.shape == shape else _resize_to(im, shape) for im in imgs]
        points = np.zeros((0, 4), np.float32)
        if with_lidar and f.get("lidar_path"):
            points = read_points_file(root / f["lidar_path"], bin_columns=6)
            if apply_lidar2ego:
                points = transform_points(points, f.get("lidar2ego_rotation"), f.get("lidar2ego_translation"))
        dyn = np.asarray(f.get("ego_dynamic_state", []), dtype=np.float64)
        if dyn.size >= 4:
            status = np.array([dyn[0], dyn[1], dyn[2], dyn[3], fd[i, 4]], dtype=np.float32)
        else:
            status = fd[i]
        anns = f.get("anns") or {}
        boxes = np.asarray(anns.get("gt_boxes", []), dtype=np.float64).reshape(-1, 7) if len(anns.get("gt_boxes", [])) else np.zeros((0, 7))
        vel = np.asarray(anns.get("gt_velocity_3d", []), dtype=np.float64).reshape(-1, 3) if len(anns.get("gt_velocity_3d", [])) else None
        tokens = anns.get("track_tokens") or anns.get("instance_tokens") or [f"{i}_{k}" for k in range(len(boxes))]
        if len(tokens) != len(boxes):
            raise ExternalDataError(f"{export_path}: frame {i}: {len(boxes)} boxes but {len(tokens)} track tokens")
        agents = _boxes_to_world(boxes, vel, poses[i], [tracks(t) for t in tokens])
        command = _command_from_onehot(f["driving_command"]) if "driving_command" in f else DrivingCommand.UNKNOWN
        writer.append(camera=np.stack(imgs), lidar_points=points, ego_pose=poses[i], ego_status=status,
                      command=command, agents=agents, stamp_ns=int(stamps[i]))
    return writer.close()


def _resize_to(img: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import cv2

    return cv2.resize(img, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


# ----------------------------------------------------------------------------- nuScenes


class NuScenesTables:
    """The JSON tables of one nuScenes version directory, indexed by token."""

    REQUIRED = ("scene", "sample", "sample_data", "ego_pose", "calibrated_sensor", "sample_annotation")

    def __init__(self, dataroot: str | Path, version: str = "v1.0-mini") -> None:
        self.root = Path(dataroot)
        table_dir = self.root / version
        if not table_dir.is_dir():
            raise ExternalDataError(f"{table_dir}: nuScenes table directory not found")
        self.tables: dict[str, list[dict]] = {}
        for name in self.REQUIRED + ("sensor",):
            path = table_dir / f"{name}.json"
            if not path.is_file():
                if name == "sensor":
                    continue
                raise ExternalDataError(f"{path}: missing nuScenes table")
            try:
                self.tables[name] = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ExternalDataError(f"{path}: {exc}") from exc
        self.by_token = {name: {r["token"]: r for r in rows} for name, rows in self.tables.items()}
        sensor = self.by_token.get("sensor", {})
        self.channel_of_calib = {
            c["token"]: sensor.get(c.get("sensor_token"), {}).get("channel") for c in self.tables["calibrated_sensor"]
        }
        self.ann_by_sample: dict[str, list[dict]] = {}
        for a in self.tables["sample_annotation"]:
            self.ann_by_sample.setdefault(a["sample_token"], []).append(a)

    def channel(self, sd: dict) -> str:
        ch = self.channel_of_calib.get(sd.get("calibrated_sensor_token"))
        if ch:
            return ch
        parts = Path(sd["filename"]).parts  # samples/<CHANNEL>/file or sweeps/<CHANNEL>/file
        return parts[1] if len(parts) >= 3 else ""

    def scene_sample_data(self, scene: dict, channel: str) -> list[dict]:
        """All sample_data (key frames and sweeps) of a channel attached to the scene's samples."""
        scene_samples = {s["token"] for s in self.tables["sample"] if s["scene_token"] == scene["token"]}
        rows = [sd for sd in self.tables["sample_data"]
                if sd.get("sample_token") in scene_samples and self.channel(sd) == channel]
        return sorted(rows, key=lambda sd: int(sd["timestamp"]))

    def scene_samples(self, scene: dict) -> list[dict]:
        out, token = [], scene["first_sample_token"]
        while token:
            s = self.by_token["sample"][token]
            out.append(s)
            if token == scene["last_sample_token"]:
                break
            token = s.get("next") or ""
        return out


def _interp_agents(samples: list[dict], tables: NuScenesTables, t_us: float, tracks: _TrackIds) -> np.ndarray:
    """Annotations at time ``t_us`` (world), linearly interpolated between key frames."""
    times = np.array([int(s["timestamp"]) for s in samples], dtype=np.float64)
    k = int(np.searchsorted(times, t_us, side="right")) - 1
    k0, k1 = max(k, 0), min(k + 1, len(samples) - 1)
    a0 = {a["instance_token"]: a for a in tables.ann_by_sample.get(samples[k0]["token"], [])}
    a1 = {a["instance_token"]: a for a in tables.ann_by_sample.get(samples[k1]["token"], [])}
    span = times[k1] - times[k0]
    w = 0.0 if span <= 0 else float(np.clip((t_us - times[k0]) / span, 0.0, 1.0))

    def anns(k: int) -> dict[str, dict]:
        return {a["instance_token"]: a for a in tables.ann_by_sample.get(samples[k]["token"], [])}

    def velocity(inst: str, k: int) -> np.ndarray:
        """Finite difference over the key frames around k (0 if only one annotation)."""
        for ka, kb in ((k, k + 1), (k - 1, k)):
            if 0 <= ka < kb < len(samples):
                pa, pb = anns(ka).get(inst), anns(kb).get(inst)
                if pa and pb:
                    dt = (times[kb] - times[ka]) * 1e-6
                    return (np.asarray(pb["translation"][:2], float) - np.asarray(pa["translation"][:2], float)) / dt
        return np.zeros(2)

    rows = []
    for inst in sorted(set(a0) | set(a1)):
        if inst in a0 and inst in a1:
            p0, p1 = np.asarray(a0[inst]["translation"][:2], float), np.asarray(a1[inst]["translation"][:2], float)
            y0, y1 = quaternion_wxyz_to_yaw(a0[inst]["rotation"]), quaternion_wxyz_to_yaw(a1[inst]["rotation"])
            pos = p0 + w * (p1 - p0)
            yaw = float(wrap_angle(y0 + w * wrap_angle(y1 - y0)))
            vel = velocity(inst, k0)
            ref = a0[inst]
        else:
            ref = a0.get(inst) or a1[inst]
            near = (w <= 0.5) == (inst in a0)
            if not near:
                continue  # appears/disappears: keep it only on the nearer side
            pos = np.asarray(ref["translation"][:2], float)
            yaw = quaternion_wxyz_to_yaw(ref["rotation"])
            vel = velocity(inst, k0 if inst in a0 else k1)
        size = ref["size"]  # nuScenes: width, length, height
        rows.append((pos[0], pos[1], yaw, size[1], size[0], vel[0], vel[1], tracks(inst)))
    return np.asarray(rows, dtype=np.float32).reshape(-1, 8)


def nuscenes_scene_to_log(
    tables: NuScenesTables,
    scene_name_or_token: str,
    out_dir: str | Path,
    *,
    camera: str = "CAM_FRONT",
    lidar: str = "LIDAR_TOP",
    rate_hz: float = 10.0,
    image_width: int | None = 640,
    max_camera_offset_s: float = 0.1,
    overwrite: bool = False,
) -> Path:
    """One nuScenes scene -> a driving log (see the module docstring)."""
    scene = next((s for s in tables.tables["scene"] if s["name"] == scene_name_or_token or s["token"] == scene_name_or_token), None)
    if scene is None:
        raise ExternalDataError(f"no scene {scene_name_or_token!r}")
    lidar_rows = tables.scene_sample_data(scene, lidar)
    cam_rows = tables.scene_sample_data(scene, camera)
    if not lidar_rows or not cam_rows:
        raise ExternalDataError(f"scene {scene['name']}: no {lidar} or {camera} sample_data")
    lidar_t = np.array([int(sd["timestamp"]) for sd in lidar_rows], dtype=np.int64)
    period_us = 1e6 / rate_hz
    median_us = float(np.median(np.diff(lidar_t))) if len(lidar_t) > 1 else period_us
    if median_us <= period_us * 0.75:  # denser than the target rate: resample on a grid
        grid = np.arange(lidar_t[0], lidar_t[-1] + 1, period_us)
        picks = []
        for g in grid:
            j = int(np.argmin(np.abs(lidar_t - g)))
            if abs(lidar_t[j] - g) <= period_us / 2 and (not picks or j != picks[-1]):
                picks.append(j)
    else:
        picks = list(range(len(lidar_rows)))
    cam_t = np.array([int(sd["timestamp"]) for sd in cam_rows], dtype=np.int64)
    samples = tables.scene_samples(scene)
    ego = tables.by_token["ego_pose"]
    calib = tables.by_token["calibrated_sensor"]
    chosen = []
    for j in picks:
        sd = lidar_rows[j]
        c = int(np.argmin(np.abs(cam_t - lidar_t[j])))
        if abs(cam_t[c] - lidar_t[j]) > max_camera_offset_s * 1e6:
            continue
        chosen.append((sd, cam_rows[c]))
    if len(chosen) < 1:
        raise ExternalDataError(f"scene {scene['name']}: no LiDAR frame with a camera image within {max_camera_offset_s} s")
    stamps = np.array([int(sd["timestamp"]) * 1000 for sd, _ in chosen], dtype=np.int64)
    poses = []
    for sd, _ in chosen:
        ep = ego[sd["ego_pose_token"]]
        poses.append((ep["translation"][0], ep["translation"][1], quaternion_wxyz_to_yaw(ep["rotation"])))
    poses = np.asarray(poses, dtype=np.float64)
    status = ego_status_from_poses(poses, stamps)
    traj, valid = compute_future_trajectory(poses, stamps)
    dt = float(np.median(np.diff(stamps)) * 1e-9) if len(stamps) > 1 else 1.0 / rate_hz
    meta = {
        "source": "nuscenes",
        "scene_name": scene["name"],
        "scene_token": scene["token"],
        "description": scene.get("description", ""),
        "ego_reference": "rear_axle",
        "ego_length_m": 4.084,  # nuScenes Renault Zoe
        "ego_width_m": 1.730,
        "camera": camera,
        "lidar": lidar,
    }
    writer = LogWriter(out_dir, meta, dt_s=round(dt, 6), camera_names=[camera.lower()], overwrite=overwrite)
    tracks = _TrackIds()
    shape = None
    for i, (sd, cd) in enumerate(chosen):
        img = read_rgb(tables.root / cd["filename"], image_width)
        if shape is None:
            shape = img.shape
        elif img.shape != shape:
            img = _resize_to(img, shape)
        cs = calib[sd["calibrated_sensor_token"]]
        pts = transform_points(read_points_file(tables.root / sd["filename"], bin_columns=5), cs["rotation"], cs["translation"])
        agents = _interp_agents(samples, tables, float(sd["timestamp"]), tracks)
        writer.append(camera=img, lidar_points=pts, ego_pose=poses[i], ego_status=status[i],
                      command=command_from_trajectory(traj[i], bool(valid[i])), agents=agents, stamp_ns=int(stamps[i]))
    try:
        return writer.close()
    except LogFormatError as exc:
        raise ExternalDataError(f"scene {scene['name']}: {exc}") from exc


def nuscenes_to_logs(
    dataroot: str | Path,
    out_root: str | Path,
    version: str = "v1.0-mini",
    scenes: Iterable[str] | None = None,
    **kwargs: Any,
) -> list[Path]:
    """Every (or the named) nuScenes scene -> ``out_root/nuscenes_<scene name>``."""
    tables = NuScenesTables(dataroot, version)
    names = list(scenes) if scenes is not None else [s["name"] for s in tables.tables["scene"]]
    out_root = Path(out_root)
    return [nuscenes_scene_to_log(tables, name, out_root / f"nuscenes_{name}", **kwargs) for name in names]


def openscene_logs(
    export_paths: Iterable[str | Path],
    sensor_blobs_root: str | Path,
    out_root: str | Path,
    **kwargs: Any,
) -> list[Path]:
    """Several OpenScene JSON exports -> ``out_root/navsim_<log name>``."""
    out = []
    for path in export_paths:
        path = Path(path)
        name = path.name.removesuffix(".json")
        out.append(openscene_to_log(path, sensor_blobs_root, Path(out_root) / f"navsim_{name}", **kwargs))
    return out


def write_pcd_binary(path: str | Path, points: np.ndarray, fields: Sequence[str] = ("x", "y", "z", "intensity")) -> Path:
    """Write an (N, len(fields)) float32 binary PCD (test fixtures and exports)."""
    pts = np.ascontiguousarray(points, dtype=np.float32)
    header = (
        "# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\n"
        f"FIELDS {' '.join(fields)}\nSIZE {' '.join(['4'] * len(fields))}\nTYPE {' '.join(['F'] * len(fields))}\n"
        f"COUNT {' '.join(['1'] * len(fields))}\nWIDTH {len(pts)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\n"
        f"POINTS {len(pts)}\nDATA binary\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header.encode("ascii") + pts.tobytes())
    return path


__all__ = [
    "ExternalDataError",
    "NuScenesTables",
    "convert_openscene_pickle",
    "nuscenes_scene_to_log",
    "nuscenes_to_logs",
    "openscene_logs",
    "openscene_to_log",
    "read_openscene_export",
    "read_pcd",
    "read_points_file",
    "write_pcd_binary",
]
