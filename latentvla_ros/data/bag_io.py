"""Driving logs <-> rosbag2 (MCAP or sqlite3) with ``rosbags`` (no rclpy).

:func:`write_sensor_bag` replays a log as the sensor topics the ROS graph consumes:

==================================  ==========================================  =========================
topic (default)                     type                                        frame / stamp
==================================  ==========================================  =========================
``/sensing/camera/<name>/image_raw``  ``sensor_msgs/msg/Image`` rgb8            ``camera_<name>``, +cam offset
``/sensing/camera/<name>/camera_info`` ``sensor_msgs/msg/CameraInfo``           ``camera_<name>``, same stamp
``/sensing/lidar/points``           ``sensor_msgs/msg/PointCloud2`` x,y,z,i f32 ``base_link``, log time
``/localization/odometry``          ``nav_msgs/msg/Odometry``                   ``map`` -> ``base_link``, +odom offset
``/localization/acceleration``      ``geometry_msgs/msg/AccelWithCovarianceStamped`` ``base_link``, as odometry
``/tf``                             ``tf2_msgs/msg/TFMessage`` map -> base_link as odometry
``/debug/expert_path``              ``nav_msgs/msg/Path`` (logged future)       ``base_link`` of the frame, lidar stamp
``/planning/mission_route``         ``nav_msgs/msg/Path`` (``routes`` given)     ``map``, lidar stamp, once per ``route_period_s``
==================================  ==========================================  =========================

Header stamps are log time moved to ``epoch_s`` (default 1_700_000_000 s): the LiDAR at
the frame time, cameras ``camera_offset_ms`` later and odometry ``odom_offset_ms`` later,
each with a deterministic jitter of up to ``jitter_ms`` (so an approximate-time
synchronizer has real work to do). Bag receive times are the header stamps plus
``transport_delay_ms``.

For the highway-env top-down camera, ``CameraInfo.k`` holds pixels per metre as fx = fy
and the ego pixel as (cx, cy) (an orthographic view, not a pinhole).

:func:`log_from_bag` reads such a bag (either storage, or any bag with these message
types) back into a log: one frame per LiDAR message, the nearest camera image and
odometry within ``max_offset_ms``; the future trajectory is recomputed from odometry.
Map and agents are not in the bag, so the log has none; the driving command is
derived from the future path (see :func:`command_from_trajectory`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latentvla_ros.core.images import ImageError, compressed_to_rgb, raw_to_rgb
from latentvla_ros.data.log_format import (
    DrivingLog,
    LogFormatError,
    LogWriter,
    command_from_trajectory,
    compute_future_trajectory,
)

DEFAULT_EPOCH_S = 1_700_000_000
DEFAULT_TOPICS: dict[str, str | None] = {
    "camera": "/sensing/camera/{name}/image_raw",
    "camera_info": "/sensing/camera/{name}/camera_info",
    "lidar": "/sensing/lidar/points",
    "odometry": "/localization/odometry",
    "acceleration": "/localization/acceleration",
    "tf": "/tf",
    "expert_path": "/debug/expert_path",
    "route": "/planning/mission_route",  # only with write_sensor_bag(routes=...)
}
MAP_FRAME = "map"
BASE_FRAME = "base_link"

_IMAGE = "sensor_msgs/msg/Image"
_COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
_CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
_POINTCLOUD2 = "sensor_msgs/msg/PointCloud2"
_ODOMETRY = "nav_msgs/msg/Odometry"
_ACCEL = "geometry_msgs/msg/AccelWithCovarianceStamped"
_PATH = "nav_msgs/msg/Path"
_TF = "tf2_msgs/msg/TFMessage"

_PF_DTYPES = {1: "i1", 2: "u1", 3: "<i2", 4: "<u2", 5: "<i4", 6: "<u4", 7: "<f4", 8: "<f8"}


class BagFormatError(ValueError):
    """A bag that lacks the topics/messages needed, or carries malformed messages."""


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def _storage_plugin(storage: str):
    from rosbags.rosbag2 import StoragePlugin

    try:
        return {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    except KeyError:
        raise ValueError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}") from None


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation about +z."""
    return 0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


# ----------------------------------------------------------------------------- writing


class _Msgs:
    """Message constructors bound to one typestore."""

    def __init__(self, ts) -> None:
        self.ts = ts
        t = ts.types
        self.Time = t["builtin_interfaces/msg/Time"]
        self.Header = t["std_msgs/msg/Header"]
        self.Image = t[_IMAGE]
        self.CameraInfo = t[_CAMERA_INFO]
        self.RegionOfInterest = t["sensor_msgs/msg/RegionOfInterest"]
        self.PointCloud2 = t[_POINTCLOUD2]
        self.PointField = t["sensor_msgs/msg/PointField"]
        self.Odometry = t[_ODOMETRY]
        self.PoseWithCovariance = t["geometry_msgs/msg/PoseWithCovariance"]
        self.TwistWithCovariance = t["geometry_msgs/msg/TwistWithCovariance"]
        self.Pose = t["geometry_msgs/msg/Pose"]
        self.Point = t["geometry_msgs/msg/Point"]
        self.Quaternion = t["geometry_msgs/msg/Quaternion"]
        self.Twist = t["geometry_msgs/msg/Twist"]
        self.Vector3 = t["geometry_msgs/msg/Vector3"]
        self.AccelStamped = t[_ACCEL]
        self.AccelWithCovariance = t["geometry_msgs/msg/AccelWithCovariance"]
        self.Accel = t["geometry_msgs/msg/Accel"]
        self.Path = t[_PATH]
        self.PoseStamped = t["geometry_msgs/msg/PoseStamped"]
        self.TFMessage = t[_TF]
        self.TransformStamped = t["geometry_msgs/msg/TransformStamped"]
        self.Transform = t["geometry_msgs/msg/Transform"]

    def header(self, stamp_ns: int, frame_id: str):
        return self.Header(stamp=self.Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)), frame_id=frame_id)

    def quat(self, yaw: float):
        x, y, z, w = yaw_to_quaternion(yaw)
        return self.Quaternion(x=x, y=y, z=z, w=w)

    def image(self, img: np.ndarray, stamp_ns: int, frame_id: str):
        h, w = img.shape[:2]
        data = np.frombuffer(np.ascontiguousarray(img).data, dtype=np.uint8)
        return self.Image(header=self.header(stamp_ns, frame_id), height=h, width=w, encoding="rgb8",
                          is_bigendian=0, step=w * 3, data=data)

    def camera_info(self, h: int, w: int, k: np.ndarray, stamp_ns: int, frame_id: str):
        p = np.zeros(12)
        p[[0, 1, 2, 4, 5, 6, 10]] = k[[0, 1, 2, 3, 4, 5, 8]]
        return self.CameraInfo(
            header=self.header(stamp_ns, frame_id), height=h, width=w, distortion_model="plumb_bob",
            d=np.zeros(5), k=np.asarray(k, dtype=np.float64), r=np.eye(3).ravel(), p=p, binning_x=0, binning_y=0,
            roi=self.RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
        )

    def cloud(self, pts: np.ndarray, stamp_ns: int, frame_id: str):
        pts = np.ascontiguousarray(pts, dtype=np.float32)
        fields = [self.PointField(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate(("x", "y", "z", "intensity"))]
        return self.PointCloud2(header=self.header(stamp_ns, frame_id), height=1, width=len(pts), fields=fields,
                                is_bigendian=False, point_step=16, row_step=16 * len(pts),
                                data=np.frombuffer(pts.data, dtype=np.uint8) if len(pts) else np.zeros(0, np.uint8),
                                is_dense=True)

    def pose(self, x: float, y: float, yaw: float):
        return self.Pose(position=self.Point(x=float(x), y=float(y), z=0.0), orientation=self.quat(float(yaw)))

    def odometry(self, pose: np.ndarray, status: np.ndarray, stamp_ns: int):
        twist = self.Twist(linear=self.Vector3(x=float(status[0]), y=float(status[1]), z=0.0),
                           angular=self.Vector3(x=0.0, y=0.0, z=float(status[4])))
        return self.Odometry(
            header=self.header(stamp_ns, MAP_FRAME), child_frame_id=BASE_FRAME,
            pose=self.PoseWithCovariance(pose=self.pose(*pose), covariance=np.zeros(36)),
            twist=self.TwistWithCovariance(twist=twist, covariance=np.zeros(36)),
        )

    def accel(self, status: np.ndarray, stamp_ns: int):
        acc = self.Accel(linear=self.Vector3(x=float(status[2]), y=float(status[3]), z=0.0),
                         angular=self.Vector3(x=0.0, y=0.0, z=0.0))
        return self.AccelStamped(header=self.header(stamp_ns, BASE_FRAME),
                                 accel=self.AccelWithCovariance(accel=acc, covariance=np.zeros(36)))

    def tf(self, pose: np.ndarray, stamp_ns: int):
        tr = self.Transform(translation=self.Vector3(x=float(pose[0]), y=float(pose[1]), z=0.0),
                            rotation=self.quat(float(pose[2])))
        return self.TFMessage(transforms=[self.TransformStamped(header=self.header(stamp_ns, MAP_FRAME), child_frame_id=BASE_FRAME,
                                                                transform=tr)])

    def route(self, points: np.ndarray, stamp_ns: int):
        """(K, 2) map-frame route -> Path in ``map`` (positions only: identity orientations)."""
        header = self.header(stamp_ns, MAP_FRAME)
        return self.Path(header=header, poses=[self.PoseStamped(header=header, pose=self.pose(x, y, 0.0))
                                               for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2).tolist()])

    def path(self, traj: np.ndarray, stamp_ns: int, interval_ns: int):
        poses = [self.PoseStamped(header=self.header(stamp_ns + (k + 1) * interval_ns, BASE_FRAME), pose=self.pose(*traj[k]))
                 for k in range(len(traj))]
        return self.Path(header=self.header(stamp_ns, BASE_FRAME), poses=poses)


def _camera_k(log: DrivingLog, h: int, w: int) -> np.ndarray:
    mpp = log.meta.get("camera_meters_per_pixel")
    if mpp:
        c0, r0 = log.meta.get("camera_ego_pixel_xy", [(w - 1) / 2.0, (h - 1) / 2.0])
        f = 1.0 / float(mpp)
        return np.array([f, 0.0, c0, 0.0, f, r0, 0.0, 0.0, 1.0])
    f = float(w)
    return np.array([f, 0.0, (w - 1) / 2.0, 0.0, f, (h - 1) / 2.0, 0.0, 0.0, 1.0])


def write_sensor_bag(
    log_dir: str | Path,
    bag_path: str | Path,
    storage: str = "mcap",
    topics: Mapping[str, str | None] | None = None,
    *,
    epoch_s: int = DEFAULT_EPOCH_S,
    camera_offset_ms: float = 12.0,
    odom_offset_ms: float = 4.0,
    jitter_ms: float = 2.0,
    transport_delay_ms: float = 1.5,
    version: int = 9,
    frames: Sequence[int] | None = None,
    routes: Callable[[int], np.ndarray | None] | None = None,
    route_period_s: float = 1.0,
) -> dict[str, int]:
    """Write a log as a rosbag2 (see the module docstring); returns message counts per topic.

    ``topics`` overrides entries of :data:`DEFAULT_TOPICS` (``None`` drops a topic);
    ``{name}`` in camera topics is the camera name. ``version=8`` writes Humble-style
    metadata. ``routes(t)``: the mission route (K, 2) in the map frame at frame ``t`` (None:
    none), written with the first frame and then once per ``route_period_s`` of log time (a
    latched topic: the bag player publishes it transient local).
    """
    from rosbags.rosbag2 import Writer

    log = DrivingLog(log_dir)
    names = dict(DEFAULT_TOPICS)
    if topics:
        unknown = set(topics) - set(DEFAULT_TOPICS)
        if unknown:
            raise ValueError(f"unknown topic roles {sorted(unknown)}; expected some of {sorted(DEFAULT_TOPICS)}")
        names.update(topics)
    ts = _typestore()
    m = _Msgs(ts)
    stamps = log.timestamps_ns - log.timestamps_ns[0] + int(epoch_s) * 1_000_000_000
    rng = np.random.default_rng(0)
    n = log.num_frames
    cam_jit = rng.uniform(-jitter_ms, jitter_ms, size=(n, len(log.camera_names)))
    odom_jit = rng.uniform(-jitter_ms, jitter_ms, size=n)
    delay = int(round(transport_delay_ms * 1e6))
    h, w = log.camera_array.shape[2:4]
    k = _camera_k(log, h, w)
    interval_ns = int(round(0.5e9))
    traj_all, valid_all = np.asarray(log.future_trajectory_array), np.asarray(log.future_valid)
    poses, status = np.asarray(log.ego_pose_array), np.asarray(log.ego_status_array)
    counts: dict[str, int] = {}
    last_route_ns: int | None = None
    bag_path = Path(bag_path)
    with Writer(bag_path, version=version, storage_plugin=_storage_plugin(storage)) as writer:
        conns: dict[str, Any] = {}

        def conn(topic: str, msgtype: str):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            return conns[topic]

        for t in (range(n) if frames is None else frames):
            base = int(stamps[t])
            out: list[tuple[int, str, str, Any]] = []  # (receive time, topic, type, msg)
            if names["lidar"]:
                out.append((base + delay, names["lidar"], _POINTCLOUD2, m.cloud(log.lidar_points(t), base, BASE_FRAME)))
            cams = log.camera(t)
            for ci, cname in enumerate(log.camera_names):
                cs = base + int(round((camera_offset_ms + cam_jit[t, ci]) * 1e6))
                frame_id = f"camera_{cname}"
                if names["camera"]:
                    out.append((cs + delay, names["camera"].format(name=cname), _IMAGE, m.image(cams[ci], cs, frame_id)))
                if names["camera_info"]:
                    out.append((cs + delay, names["camera_info"].format(name=cname), _CAMERA_INFO, m.camera_info(h, w, k, cs, frame_id)))
            os_ = base + int(round((odom_offset_ms + odom_jit[t]) * 1e6))
            if names["odometry"]:
                out.append((os_ + delay, names["odometry"], _ODOMETRY, m.odometry(poses[t], status[t], os_)))
            if names["acceleration"]:
                out.append((os_ + delay, names["acceleration"], _ACCEL, m.accel(status[t], os_)))
            if names["tf"]:
                out.append((os_ + delay, names["tf"], _TF, m.tf(poses[t], os_)))
            if names["expert_path"] and valid_all[t]:
                out.append((base + delay, names["expert_path"], _PATH, m.path(traj_all[t], base, interval_ns)))
            due = last_route_ns is None or not 0 <= base - last_route_ns < int(route_period_s * 1e9)
            if names["route"] and routes is not None and due and (route := routes(t)) is not None:
                out.append((base + delay, names["route"], _PATH, m.route(route, base)))
                last_route_ns = base
            out.sort(key=lambda item: item[0])
            for recv, topic, msgtype, msg in out:
                writer.write(conn(topic, msgtype), recv, ts.serialize_cdr(msg, msgtype))
                counts[topic] = counts.get(topic, 0) + 1
    return counts


# ----------------------------------------------------------------------------- reading


def _stamp_ns(header) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def image_to_rgb(msg) -> np.ndarray:
    """sensor_msgs/Image or CompressedImage -> (H, W, 3) uint8 RGB (core/images.py: rgb8, bgr8,
    rgba8, bgra8, mono8 (8UC1, 8UC3 read as mono8, rgb8), Bayer, YUV 4:2:2; jpeg, png)."""
    try:
        if hasattr(msg, "format"):
            return compressed_to_rgb(msg.format, bytes(msg.data))
        encoding = {"8uc1": "mono8", "8uc3": "rgb8"}.get(msg.encoding.lower(), msg.encoding)
        h, step = int(msg.height), int(msg.step)
        buf = np.frombuffer(memoryview(msg.data), dtype=np.uint8)
        buf = buf[: step * h] if len(buf) >= step * h else buf  # trailing bytes are tolerated
        return np.ascontiguousarray(raw_to_rgb(encoding, h, int(msg.width), step, buf))
    except ImageError as exc:
        raise BagFormatError(str(exc)) from exc


def pointcloud2_to_xyzi(msg) -> np.ndarray:
    """sensor_msgs/PointCloud2 -> (N, 4) float32 x, y, z, intensity (0 if absent)."""
    fields = {f.name: f for f in msg.fields}
    for name in ("x", "y", "z"):
        if name not in fields:
            raise BagFormatError(f"PointCloud2 lacks field {name!r}")
    n = int(msg.width) * int(msg.height)
    step = int(msg.point_step)
    buf = np.frombuffer(memoryview(msg.data), dtype=np.uint8)
    if len(buf) < n * step:
        raise BagFormatError(f"PointCloud2 data has {len(buf)} bytes, expected {n * step}")
    names, formats, offsets = [], [], []
    for name in ("x", "y", "z", "intensity"):
        f = fields.get(name)
        if f is None:
            continue
        code = _PF_DTYPES.get(int(f.datatype))
        if code is None:
            raise BagFormatError(f"PointCloud2 field {name!r} has unsupported datatype {f.datatype}")
        if msg.is_bigendian:
            code = code.replace("<", ">")
        names.append(name)
        formats.append(code)
        offsets.append(int(f.offset))
    rec = np.frombuffer(buf[: n * step], dtype=np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": step}))
    out = np.zeros((n, 4), dtype=np.float32)
    for i, name in enumerate(("x", "y", "z", "intensity")):
        if name in names:
            out[:, i] = rec[name]
    return out


def log_from_bag(
    bag_path: str | Path,
    out_dir: str | Path,
    camera_topics: Sequence[str] | None = None,
    lidar_topic: str = DEFAULT_TOPICS["lidar"],
    odom_topic: str = DEFAULT_TOPICS["odometry"],
    accel_topic: str | None = DEFAULT_TOPICS["acceleration"],
    *,
    max_offset_ms: float = 50.0,
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Turn a bag with camera(s), a LiDAR PointCloud2 and odometry into a log.

    ``camera_topics`` default to every ``sensor_msgs/msg/Image`` topic (sorted), or every
    ``sensor_msgs/msg/CompressedImage`` topic when the bag has no raw images; the
    camera name is the topic component after ``/camera/`` when present. Frames whose
    camera or odometry is further than ``max_offset_ms`` from the LiDAR stamp are
    dropped. Timestamps are kept (``timestamps_ns.npy``).
    """
    from rosbags.rosbag2 import Reader

    bag_path = Path(bag_path)
    ts = _typestore()
    with Reader(bag_path) as reader:
        by_topic = {c.topic: c for c in reader.connections}
        if camera_topics is None:
            camera_topics = (sorted(t for t, c in by_topic.items() if c.msgtype == _IMAGE)
                             or sorted(t for t, c in by_topic.items() if c.msgtype == _COMPRESSED_IMAGE))
        needed = [lidar_topic, odom_topic, *camera_topics]
        missing = [t for t in needed if t not in by_topic]
        if missing or not camera_topics:
            raise BagFormatError(f"{bag_path}: missing topics {missing or ['<any sensor_msgs/msg/Image>']}; has {sorted(by_topic)}")
        wanted = [by_topic[t] for t in needed] + ([by_topic[accel_topic]] if accel_topic and accel_topic in by_topic else [])
        lidar: list[tuple[int, Any]] = []
        cams: dict[str, list[tuple[int, Any]]] = {t: [] for t in camera_topics}
        odom: list[tuple[int, Any]] = []
        accel: list[tuple[int, Any]] = []
        for conn, _recv, raw in reader.messages(connections=wanted):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            stamp = _stamp_ns(msg.header)
            if conn.topic == lidar_topic:
                lidar.append((stamp, msg))
            elif conn.topic in cams:
                cams[conn.topic].append((stamp, msg))
            elif conn.topic == odom_topic:
                odom.append((stamp, msg))
            else:
                accel.append((stamp, msg))
    if not lidar or not odom:
        raise BagFormatError(f"{bag_path}: no LiDAR or odometry messages")
    for seq in (lidar, odom, accel, *cams.values()):
        seq.sort(key=lambda item: item[0])
    tol = int(max_offset_ms * 1e6)

    def nearest(seq: list[tuple[int, Any]], keys: np.ndarray, stamp: int):
        if not seq:
            return None
        i = int(np.searchsorted(keys, stamp))
        cands = [j for j in (i - 1, i) if 0 <= j < len(seq)]
        j = min(cands, key=lambda c: abs(int(keys[c]) - stamp))
        return seq[j] if abs(int(keys[j]) - stamp) <= tol else None

    def keys_of(seq: list[tuple[int, Any]]) -> np.ndarray:
        return np.array([s for s, _ in seq], dtype=np.int64)

    names = []
    for topic in camera_topics:
        parts = topic.strip("/").split("/")
        names.append(parts[parts.index("camera") + 1] if "camera" in parts and parts.index("camera") + 1 < len(parts)
                     else topic.strip("/").replace("/", "_"))
    frames = []
    dropped = 0
    odom_keys, accel_keys = keys_of(odom), keys_of(accel)
    cam_keys = {t: keys_of(cams[t]) for t in camera_topics}
    for stamp, cloud in lidar:
        o = nearest(odom, odom_keys, stamp)
        images = [nearest(cams[t], cam_keys[t], stamp) for t in camera_topics]
        if o is None or any(img is None for img in images):
            dropped += 1
            continue
        frames.append((stamp, cloud, o[1], [img[1] for img in images], nearest(accel, accel_keys, stamp)))
    if not frames:
        raise BagFormatError(f"{bag_path}: no LiDAR message has camera and odometry within {max_offset_ms} ms")
    stamps = np.array([f[0] for f in frames], dtype=np.int64)
    poses = np.array([[f[2].pose.pose.position.x, f[2].pose.pose.position.y,
                       quaternion_to_yaw(f[2].pose.pose.orientation.x, f[2].pose.pose.orientation.y,
                                         f[2].pose.pose.orientation.z, f[2].pose.pose.orientation.w)] for f in frames])
    vel = np.array([[f[2].twist.twist.linear.x, f[2].twist.twist.linear.y, f[2].twist.twist.angular.z] for f in frames])
    acc = np.zeros((len(frames), 2))
    have_acc = np.array([f[4] is not None for f in frames])
    for i, f in enumerate(frames):
        if f[4] is not None:
            acc[i] = (f[4][1].accel.accel.linear.x, f[4][1].accel.accel.linear.y)
    if not have_acc.all() and len(frames) > 1:  # finite differences of the twist (ego frame, ignoring rotation)
        dt = np.diff(stamps) * 1e-9
        fd = np.zeros((len(frames), 2))
        fd[1:] = np.diff(vel[:, :2], axis=0) / dt[:, None]
        fd[0] = fd[1] if len(frames) > 1 else 0.0
        acc[~have_acc] = fd[~have_acc]
    traj, valid = compute_future_trajectory(poses, stamps)
    dt_s = float(np.median(np.diff(stamps)) * 1e-9) if len(stamps) > 1 else 0.1
    info = {
        "source": "rosbag2",
        "bag": str(bag_path),
        "topics": {"cameras": list(camera_topics), "lidar": lidar_topic, "odometry": odom_topic, "acceleration": accel_topic},
        "dropped_frames": dropped,
        "ego_length_m": 5.0,
        "ego_width_m": 2.0,
    }
    info.update(meta or {})
    writer = LogWriter(out_dir, info, dt_s=round(dt_s, 6), camera_names=names, overwrite=overwrite)
    for i, (stamp, cloud, _o, images, _a) in enumerate(frames):
        rgb = [image_to_rgb(img) for img in images]
        try:
            cam = np.stack(rgb)
        except ValueError as exc:
            raise BagFormatError(f"{bag_path}: camera images differ in size: {[r.shape for r in rgb]}") from exc
        status = np.array([vel[i, 0], vel[i, 1], acc[i, 0], acc[i, 1], vel[i, 2]], dtype=np.float32)
        writer.append(camera=cam, lidar_points=pointcloud2_to_xyzi(cloud), ego_pose=poses[i], ego_status=status,
                      command=command_from_trajectory(traj[i], bool(valid[i])), stamp_ns=int(stamp))
    try:
        return writer.close()
    except LogFormatError as exc:
        raise BagFormatError(f"{bag_path}: {exc}") from exc
