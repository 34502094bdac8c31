"""Message <-> core-type conversions, without needless copies.

Arrays are filled through ``array.array.frombytes`` (a memcpy) and read with
``np.frombuffer`` (no copy). Every malformed input raises ``ConversionError``
with a reason the node counts and logs; nothing is silently "fixed".
"""
from __future__ import annotations

import array
import math
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Vector3
from nav_msgs.msg import Odometry, Path
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from latentvla_ros.core.images import (
    DECODED,
    VIEW_CHANNELS,
    ImageError,
    check_compressed,
    check_raw,
    checked_rgb,
    compressed_to_rgb,
    raw_to_rgb,
)
from latentvla_ros.core.types import (
    BevTokens,
    CameraImage,
    DrivingCommand,
    EgoState,
    LatentPlan,
    Trajectory,
)
from latentvla_ros.msg import BevFeatures, LatentActionPlan, PlannedTrajectory, SensorFrame, TrajectoryPoint


class ConversionError(ValueError):
    """A message that cannot be converted; the text says why."""


# ---------------------------------------------------------------- time
def stamp_to_ns(stamp: Time) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


_CHECK_FIELDS: dict[type, Any] = {}  # message class -> its instances' ``_check_fields`` (rosidl >= Jazzy)


def message_from_fields(cls, **fields):
    """``cls(**fields)`` with every field given, without the defaults the generated constructor
    builds for each field before it assigns the given value (a SensorFrame's default Odometry,
    CameraInfo and PointCloud2 cost more than the rest of its construction, on the frame path).
    The values go through the generated setters, which check them as the constructor does."""
    names = cls.get_fields_and_field_types()
    if fields.keys() != names.keys():
        raise TypeError(f"{cls.__name__}: give every field; missing {sorted(set(names) - set(fields))}, "
                        f"unknown {sorted(set(fields) - set(names))}")
    msg = cls.__new__(cls)
    if "_check_fields" in cls.__slots__:
        if cls not in _CHECK_FIELDS:
            _CHECK_FIELDS[cls] = cls()._check_fields
        msg._check_fields = _CHECK_FIELDS[cls]
    for name, value in fields.items():
        setattr(msg, name, value)
    return msg


def make_header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)


def _float_array(values: np.ndarray) -> array.array:
    out = array.array("f")
    out.frombytes(np.ascontiguousarray(values, dtype=np.float32).tobytes())
    return out


def _byte_array(values: np.ndarray) -> array.array:
    out = array.array("B")
    flat = np.ascontiguousarray(values, dtype=np.uint8).reshape(-1)
    if flat.size:
        out.frombytes(flat.data)
    return out


def _read_only(view: np.ndarray) -> np.ndarray:
    view.flags.writeable = False
    return view


# ---------------------------------------------------------------- images
# Pixel layouts and formats: core/images.py. rgb8/bgr8/rgba8/bgra8/mono8 are read as views
# into the message (every consumer of a SensorFrame reads its images this way); Bayer,
# YUV 4:2:2 and compressed images need a decoder: the real ROS 2 cv_bridge where it is
# installed (apt ROS on a vehicle), else OpenCV. sensor_sync decodes them once.
_ALIASES = {"uyvy": "yuv422", "yuyv": "yuv422_yuy2"}  # names newer than Humble's cv_bridge
IMAGE_DECODERS = ("cv_bridge", "opencv")
_BRIDGE = None


def _cv_bridge():
    """The ROS 2 ``cv_bridge`` (apt ``ros-<distro>-cv-bridge``) or None. Never PyPI's
    ``cv-bridge``: that is ROS 1 code."""
    global _BRIDGE
    if _BRIDGE is None:
        try:
            from cv_bridge import CvBridge
        except ImportError:
            _BRIDGE = False
        else:
            _BRIDGE = CvBridge()
    return _BRIDGE or None


def image_decoder(name: str | None = None) -> str:
    """``cv_bridge`` where it is installed (a vehicle with apt ROS), else ``opencv``."""
    if name is None:
        return "cv_bridge" if _cv_bridge() is not None else "opencv"
    if name not in IMAGE_DECODERS:
        raise ValueError(f"unknown image decoder {name!r} (known: {IMAGE_DECODERS})")
    if name == "cv_bridge" and _cv_bridge() is None:
        raise ImportError("cv_bridge is not installed (apt: ros-$ROS_DISTRO-cv-bridge)")
    return name


def image_to_numpy(msg: Image, decoder: str | None = None) -> np.ndarray:
    """sensor_msgs/Image -> HxWx3 uint8 RGB. rgb8/bgr8/rgba8/bgra8/mono8 as a view (no copy);
    Bayer and YUV 4:2:2 decoded (``decoder``: cv_bridge or opencv; default: cv_bridge if installed)."""
    encoding = msg.encoding.lower()
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    try:
        check_raw(encoding, height, width, step, len(msg.data))
        if encoding in DECODED and image_decoder(decoder) == "cv_bridge":
            return checked_rgb(_bridge_call("imgmsg_to_cv2", _with_encoding(msg, _ALIASES.get(encoding))), encoding)
        # a view into the message (read-only: in a composed process every consumer of a
        # SensorFrame shares its buffers, ros/intra_process.py)
        return raw_to_rgb(encoding, height, width, step, _read_only(np.frombuffer(msg.data, dtype=np.uint8)))
    except ImageError as exc:
        raise ConversionError(str(exc)) from exc


def compressed_image_to_numpy(msg, decoder: str | None = None) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg or png) -> HxWx3 uint8 RGB."""
    try:
        check_compressed(msg.format, len(msg.data))
        if image_decoder(decoder) == "cv_bridge":
            return checked_rgb(_bridge_call("compressed_imgmsg_to_cv2", msg), repr(msg.format))
        return compressed_to_rgb(msg.format, bytes(msg.data))
    except ImageError as exc:
        raise ConversionError(str(exc)) from exc


def _with_encoding(msg: Image, encoding: str | None) -> Image:
    if encoding is None:
        return msg
    return Image(header=msg.header, height=msg.height, width=msg.width, encoding=encoding,
                 is_bigendian=msg.is_bigendian, step=msg.step, data=msg.data)


def _bridge_call(method: str, msg):
    try:
        return getattr(_cv_bridge(), method)(msg, desired_encoding="rgb8")
    except Exception as exc:  # CvBridgeError, cv2.error, a None from imdecode
        raise ImageError(f"cv_bridge {method}: {exc}") from exc


def camera_image_msg(msg, decoder: str | None = None) -> Image:
    """A camera input (Image or CompressedImage) as an Image every consumer reads as a view:
    the message itself when its encoding is one of those, else the decoded rgb8 image
    (same header). Raises ConversionError on anything malformed."""
    if hasattr(msg, "format"):  # CompressedImage
        image = compressed_image_to_numpy(msg, decoder)
    else:
        image = image_to_numpy(msg, decoder)
        if msg.encoding.lower() in VIEW_CHANNELS:
            return msg
    return numpy_to_image(image, stamp_to_ns(msg.header.stamp), msg.header.frame_id)


def numpy_to_image(image: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ConversionError(f"expected HxWx3 uint8, got {image.shape} {image.dtype}")
    msg = Image(header=make_header(stamp_ns, frame_id), height=image.shape[0], width=image.shape[1],
                encoding="rgb8", is_bigendian=0, step=image.shape[1] * 3)
    msg.data = _byte_array(image)
    return msg


def camera_info_intrinsics(info: CameraInfo | None) -> np.ndarray | None:
    if info is None:
        return None
    k = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    return k if np.all(np.isfinite(k)) and k[2, 2] != 0 else None


# ---------------------------------------------------------------- point clouds
_PF_DTYPES = {
    PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2", PointField.UINT16: "u2",
    PointField.INT32: "i4", PointField.UINT32: "u4", PointField.FLOAT32: "f4", PointField.FLOAT64: "f8",
}


def _packed_xyzi_float32(msg: PointCloud2, fields: dict, point_step: int, row_step: int) -> bool:
    """x, y, z, intensity: little-endian float32 at offsets 0, 4, 8, 12, 16 bytes a point, no padding."""
    if msg.is_bigendian or point_step != 16 or row_step != 16 * int(msg.width) or len(fields) != 4:
        return False
    for offset, name in enumerate(("x", "y", "z", "intensity")):
        f = fields.get(name)
        if f is None or f.offset != 4 * offset or f.datatype != PointField.FLOAT32 or f.count not in (0, 1):
            return False
    return True


def pointcloud2_to_xyzi(msg: PointCloud2) -> np.ndarray:
    """PointCloud2 with x, y, z (+ optional intensity) -> (N, 4) float32; intensity 0 if absent."""
    fields = {f.name: f for f in msg.fields}
    for name in ("x", "y", "z"):
        if name not in fields:
            raise ConversionError(f"point cloud lacks field {name!r}")
    n_points = int(msg.width) * int(msg.height)
    if n_points == 0:
        raise ConversionError("empty point cloud")
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    if point_step <= 0 or row_step < point_step * int(msg.width):
        raise ConversionError(f"inconsistent point_step {point_step} / row_step {row_step} for width {msg.width}")
    if len(msg.data) < row_step * int(msg.height):
        raise ConversionError(f"data has {len(msg.data)} bytes, expected {row_step * int(msg.height)}")
    if _packed_xyzi_float32(msg, fields, point_step, row_step):
        # the layout our drivers and the CARLA bridge publish: a view, no copy (read-only:
        # in a composed process every consumer of a SensorFrame shares its buffers)
        return _read_only(np.frombuffer(msg.data, dtype="<f4", count=4 * n_points).reshape(n_points, 4))
    endian = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for name in ("x", "y", "z", "intensity"):
        if name not in fields:
            continue
        f = fields[name]
        if f.datatype not in _PF_DTYPES:
            raise ConversionError(f"field {name!r} has unknown datatype {f.datatype}")
        if f.offset + np.dtype(_PF_DTYPES[f.datatype]).itemsize > point_step:
            raise ConversionError(f"field {name!r} offset {f.offset} outside point_step {point_step}")
        names.append(name)
        formats.append(endian + _PF_DTYPES[f.datatype])
        offsets.append(f.offset)
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    raw = np.frombuffer(msg.data, dtype=np.uint8, count=row_step * int(msg.height))
    rows = raw.reshape(int(msg.height), row_step)[:, : point_step * int(msg.width)]
    points = np.ascontiguousarray(rows).view(dtype).reshape(-1)
    out = np.zeros((points.shape[0], 4), dtype=np.float32)
    for i, name in enumerate(("x", "y", "z", "intensity")):
        if name in names:
            out[:, i] = points[name]
    return out


def xyzi_to_pointcloud2(points: np.ndarray, stamp_ns: int, frame_id: str) -> PointCloud2:
    points = np.ascontiguousarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 4:
        raise ConversionError(f"expected (N, 4) points, got {points.shape}")
    fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, n in enumerate(("x", "y", "z", "intensity"))]
    msg = PointCloud2(header=make_header(stamp_ns, frame_id), height=1, width=points.shape[0], fields=fields,
                      is_bigendian=False, point_step=16, row_step=16 * points.shape[0], is_dense=True)
    msg.data = _byte_array(points.view(np.uint8))
    return msg


def frame_lidar(cloud: PointCloud2, stamp_ns: int) -> PointCloud2:
    """``cloud`` stamped with its synchronized frame's stamp (its frame_id kept: the LiDAR mount): the
    guard input of a trajectory_planner that is not handed the SensorFrame. The point buffer is shared."""
    return message_from_fields(PointCloud2, header=make_header(stamp_ns, cloud.header.frame_id), height=cloud.height,
                               width=cloud.width, fields=cloud.fields, is_bigendian=cloud.is_bigendian,
                               point_step=cloud.point_step, row_step=cloud.row_step, data=cloud.data,
                               is_dense=cloud.is_dense)


# ---------------------------------------------------------------- odometry / ego
def yaw_from_quaternion(q: Quaternion) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def quaternion_from_yaw(yaw: float) -> Quaternion:
    return Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2.0), w=math.cos(yaw / 2.0))


def odometry_velocity(msg: Odometry) -> tuple[np.ndarray, float]:
    """Ego-frame velocity (vx, vy) and yaw rate; raises on non-finite values."""
    tw = msg.twist.twist
    values = (tw.linear.x, tw.linear.y, tw.angular.z, msg.pose.pose.position.x, msg.pose.pose.position.y,
              msg.pose.pose.orientation.z, msg.pose.pose.orientation.w)
    if not all(math.isfinite(v) for v in values):
        raise ConversionError("odometry contains NaN/inf")
    return np.array([tw.linear.x, tw.linear.y], dtype=np.float32), float(tw.angular.z)


def odometry_pose(msg: Odometry) -> tuple[float, float, float]:
    """(x, y, yaw) of the odometry's pose in its header frame; raises on non-finite values."""
    p = msg.pose.pose
    x, y, yaw = float(p.position.x), float(p.position.y), yaw_from_quaternion(p.orientation)
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(yaw)):
        raise ConversionError("odometry pose contains NaN/inf")
    return x, y, yaw


# ---------------------------------------------------------------- route (nav_msgs/Path)
def path_xy(msg: Path) -> np.ndarray:
    """The (K, 2) float64 x, y of a Path's poses, in its header frame (one pass over the
    poses per message; the planner transforms the array, never the message, per frame).
    Raises on an empty path or non-finite positions."""
    n = len(msg.poses)
    if n == 0:
        raise ConversionError("empty path (no poses)")
    xy = np.fromiter((v for ps in msg.poses for v in (ps.pose.position.x, ps.pose.position.y)),
                     dtype=np.float64, count=2 * n).reshape(n, 2)
    if not np.all(np.isfinite(xy)):
        raise ConversionError(f"path has {int(np.sum(~np.all(np.isfinite(xy), axis=1)))} non-finite pose(s) of {n}")
    return xy


def path_to_ego(path: Path | np.ndarray, ego_pose) -> np.ndarray:
    """A route Path (or its ``path_xy`` array) in the odometry frame -> (K, 2) in the ego frame
    of ``ego_pose`` = (x, y, yaw) in that frame: x forward, y left (``core.route.route_to_ego``)."""
    from latentvla_ros.core.route import route_to_ego

    return route_to_ego(path_xy(path) if isinstance(path, Path) else path, ego_pose)


def route_to_path(route_world: np.ndarray, stamp_ns: int, frame_id: str) -> Path:
    """(K, 2) route points in ``frame_id`` -> nav_msgs/Path (positions only: identity
    orientations; the route's consumers read positions)."""
    header = make_header(stamp_ns, frame_id)
    return Path(header=header, poses=[
        PoseStamped(header=header, pose=Pose(position=Point(x=x, y=y, z=0.0), orientation=Quaternion(w=1.0)))
        for x, y in np.asarray(route_world, dtype=np.float64).reshape(-1, 2).tolist()])


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def sensor_frame_to_core(msg: SensorFrame, points: np.ndarray | None = None,
                         odometry: tuple[np.ndarray, float] | None = None):
    """SensorFrame message -> core SensorFrame (images and points as views into the message).
    ``points`` (``pointcloud2_to_xyzi(msg.lidar)``) and ``odometry``
    (``odometry_velocity(msg.odometry)``): conversions the caller made already."""
    from latentvla_ros.core.types import SensorFrame as CoreFrame

    if not msg.images:
        raise ConversionError("sensor frame without images")
    cameras = []
    for i, img in enumerate(msg.images):
        info = msg.camera_infos[i] if i < len(msg.camera_infos) else None
        cameras.append(CameraImage(image=image_to_numpy(img), name=img.header.frame_id or f"camera{i}",
                                   intrinsics=camera_info_intrinsics(info)))
    points = pointcloud2_to_xyzi(msg.lidar) if points is None else points
    velocity, yaw_rate = odometry_velocity(msg.odometry) if odometry is None else odometry
    acc = msg.ego_acceleration
    if not (abs(acc.x) <= _FLOAT32_MAX and abs(acc.y) <= _FLOAT32_MAX):  # NaN, inf, or inf in float32
        raise ConversionError("ego acceleration contains NaN/inf")
    acceleration = np.array([acc.x, acc.y], dtype=np.float32)
    command = DrivingCommand(msg.driving_command) if msg.driving_command <= 3 else DrivingCommand.UNKNOWN
    ego = EgoState(velocity=velocity, acceleration=acceleration, yaw_rate=yaw_rate, command=command)
    return CoreFrame(stamp_ns=stamp_to_ns(msg.header.stamp), cameras=cameras, lidar_points=points, ego=ego)


#: kind ("frame", "bev", "plan") -> (the last shared message object, its conversion)
_shared: dict[str, tuple] = {}


def _shared_conversion(kind: str, msg, convert):
    """``convert(msg)`` once per message object (the last one of ``kind``); a failed conversion
    is not kept (nor does it evict the last one)."""
    last = _shared.get(kind)
    if last is not None and last[0] is msg:
        return last[1]
    return _share(kind, msg, convert(msg))


def _share(kind: str, msg, converted):
    _shared[kind] = (msg, converted)
    return converted


def shared_sensor_frame_to_core(msg: SensorFrame):
    """``sensor_frame_to_core`` once per message object. In a composed process bev_features
    and latent_reasoner receive the same SensorFrame object (in-process messages are shared
    and never modified after publishing: ros/intra_process.py), so the second gets the first
    one's conversion (read-only views; the core never modifies a frame). Over DDS every
    message is a new object and is converted each time. A failed conversion is not kept."""
    return _shared_conversion("frame", msg, sensor_frame_to_core)


def share_sensor_frame(msg: SensorFrame, frame):
    """``frame`` is ``msg``'s conversion: ``shared_sensor_frame_to_core(msg)`` returns it (the
    publisher of an in-process SensorFrame converts it once, for every consumer)."""
    return _share("frame", msg, frame)


# ---------------------------------------------------------------- BEV tokens
def bev_to_msg(bev: BevTokens, frame_id: str, sequence: int = 0) -> BevFeatures:
    tokens = np.asarray(bev.tokens, dtype=np.float32)
    msg = BevFeatures(header=make_header(bev.stamp_ns, frame_id), sequence=int(sequence),
                      num_tokens=tokens.shape[0], channels=tokens.shape[1],
                      grid_rows=bev.grid_rows, grid_cols=bev.grid_cols, cell_size_m=float(bev.cell_size_m),
                      origin_x_m=float(bev.origin_x_m), origin_y_m=float(bev.origin_y_m), model_id=bev.model_id)
    msg.tokens = _float_array(tokens)
    msg.ego_status = _float_array(bev.ego_status)
    return msg


def share_bev(msg: BevFeatures, bev: BevTokens) -> BevFeatures:
    """``msg`` is ``bev_to_msg(bev, ...)``: ``shared_msg_to_bev(msg)`` returns ``bev`` (the planner
    in the same process gets the BEV stage's checked output object instead of converting it back)."""
    _share("bev", msg, bev)
    return msg


def shared_msg_to_bev(msg: BevFeatures) -> BevTokens:
    """``msg_to_bev`` once per message object (``share_bev``: in-process, the publisher's own)."""
    return _shared_conversion("bev", msg, msg_to_bev)


def msg_to_bev(msg: BevFeatures) -> BevTokens:
    n, c = int(msg.num_tokens), int(msg.channels)
    if n == 0 or c == 0 or len(msg.tokens) != n * c:
        raise ConversionError(f"BEV tokens: {len(msg.tokens)} values for {n} x {c}")
    if n != int(msg.grid_rows) * int(msg.grid_cols):
        raise ConversionError(f"BEV tokens: {n} tokens for a {msg.grid_rows} x {msg.grid_cols} grid")
    tokens = np.frombuffer(msg.tokens, dtype=np.float32).reshape(n, c)
    status = np.frombuffer(msg.ego_status, dtype=np.float32)
    if not (np.all(np.isfinite(tokens)) and np.all(np.isfinite(status))):
        raise ConversionError("BEV tokens contain NaN/inf")
    return BevTokens(stamp_ns=stamp_to_ns(msg.header.stamp), tokens=tokens, grid_rows=int(msg.grid_rows),
                     grid_cols=int(msg.grid_cols), cell_size_m=float(msg.cell_size_m), origin_x_m=float(msg.origin_x_m),
                     origin_y_m=float(msg.origin_y_m), ego_status=status, model_id=msg.model_id)


# ---------------------------------------------------------------- latent plan
def plan_to_msg(plan: LatentPlan, frame_id: str) -> LatentActionPlan:
    probs = np.asarray(plan.token_probabilities, dtype=np.float32)
    actions = np.asarray(plan.action_embeddings, dtype=np.float32)
    visual = np.asarray(plan.visual_embeddings, dtype=np.float32)
    msg = LatentActionPlan(header=make_header(plan.stamp_ns, frame_id), num_tokens=probs.shape[0],
                           codebook_size=probs.shape[1], embedding_dim=actions.shape[1],
                           num_visual_tokens=visual.shape[0], model_id=plan.model_id)
    msg.token_ids = _byte_array(np.asarray(plan.token_ids))
    msg.token_probabilities = _float_array(probs)
    msg.action_embeddings = _float_array(actions)
    msg.visual_embeddings = _float_array(visual)
    return msg


def share_plan(msg: LatentActionPlan, plan: LatentPlan) -> LatentActionPlan:
    """``msg`` is ``plan_to_msg(plan, ...)``: ``shared_msg_to_plan(msg)`` returns ``plan``."""
    _share("plan", msg, plan)
    return msg


def shared_msg_to_plan(msg: LatentActionPlan) -> LatentPlan:
    """``msg_to_plan`` once per message object (``share_plan``: in-process, the publisher's own)."""
    return _shared_conversion("plan", msg, msg_to_plan)


def msg_to_plan(msg: LatentActionPlan) -> LatentPlan:
    n, k, d, v = int(msg.num_tokens), int(msg.codebook_size), int(msg.embedding_dim), int(msg.num_visual_tokens)
    if len(msg.token_ids) != n or len(msg.token_probabilities) != n * k:
        raise ConversionError("latent plan: token arrays do not match num_tokens x codebook_size")
    if len(msg.action_embeddings) != n * d or len(msg.visual_embeddings) != v * d:
        raise ConversionError("latent plan: embedding arrays do not match their shape fields")
    ids = np.frombuffer(bytes(msg.token_ids), dtype=np.uint8).astype(np.int64)
    if n and ids.max() >= k:
        raise ConversionError(f"latent plan: token id {ids.max()} outside codebook of {k}")
    probs = np.frombuffer(msg.token_probabilities, dtype=np.float32).reshape(n, k)
    actions = np.frombuffer(msg.action_embeddings, dtype=np.float32).reshape(n, d)
    visual = np.frombuffer(msg.visual_embeddings, dtype=np.float32).reshape(v, d)
    if not all(np.all(np.isfinite(a)) for a in (probs, actions, visual)):
        raise ConversionError("latent plan contains NaN/inf")
    return LatentPlan(stamp_ns=stamp_to_ns(msg.header.stamp), token_ids=ids, token_probabilities=probs,
                      action_embeddings=actions, visual_embeddings=visual, model_id=msg.model_id)


# ---------------------------------------------------------------- trajectory
def _kinematics(poses: list, dt: float, initial_speed: float) -> tuple[list, list, list]:
    """Per-point longitudinal velocity, acceleration and heading rate by finite differences
    from the ego (origin, heading 0); headings unwrapped as ``np.unwrap`` does. Plain floats:
    eight points are cheaper in ``math`` than in numpy (on the planner's critical path)."""
    speeds, acc, yaw_rate = [], [], []
    px = py = pyaw = 0.0
    prev_speed = initial_speed
    for x, y, yaw in poses:
        speed = math.hypot(x - px, y - py) / dt
        dyaw = yaw - pyaw
        if abs(dyaw) >= math.pi:
            wrapped = (dyaw + math.pi) % (2.0 * math.pi) - math.pi
            dyaw = math.pi if wrapped == -math.pi and dyaw > 0 else wrapped
        speeds.append(speed)
        acc.append((speed - prev_speed) / dt)
        yaw_rate.append(dyaw / dt)
        px, py, pyaw = x, y, pyaw + dyaw
        prev_speed = speed
    return speeds, acc, yaw_rate


def trajectory_kinematics(traj: Trajectory, initial_speed: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-point longitudinal velocity, acceleration and heading rate by finite differences."""
    poses = np.asarray(traj.poses, dtype=np.float64).tolist()
    return tuple(np.asarray(v, dtype=np.float64) for v in _kinematics(poses, traj.interval_s, initial_speed))


def trajectory_to_msg(traj: Trajectory, frame_id: str, initial_speed: float = 0.0) -> PlannedTrajectory:
    """On the planner's critical path: each point's sub-messages are the ones its default
    constructor made, filled in place (generated constructors build every default even when
    a value is passed), from plain floats."""
    poses = np.asarray(traj.poses, dtype=np.float64).tolist()
    dt = float(traj.interval_s)
    speeds, acc, yaw_rate = _kinematics(poses, dt, initial_speed)
    points = []
    for i, (x, y, yaw) in enumerate(poses):
        point = TrajectoryPoint()
        t_ns = int(round((i + 1) * dt * 1e9))
        point.time_from_start.sec, point.time_from_start.nanosec = divmod(t_ns, 1_000_000_000)
        pose = point.pose
        pose.position.x, pose.position.y = x, y
        q = pose.orientation  # in place: no Quaternion built per point
        q.z, q.w = math.sin(yaw / 2.0), math.cos(yaw / 2.0)
        point.longitudinal_velocity_mps = speeds[i]
        point.acceleration_mps2 = acc[i]
        point.heading_rate_rps = yaw_rate[i]
        points.append(point)
    msg = PlannedTrajectory(header=make_header(traj.stamp_ns, frame_id), is_fallback=traj.is_fallback,
                            fallback_reason=traj.fallback_reason, model_id=traj.model_id)
    msg.points = points
    return msg


def msg_to_trajectory(msg: PlannedTrajectory) -> Trajectory:
    poses = np.array([[p.pose.position.x, p.pose.position.y, yaw_from_quaternion(p.pose.orientation)] for p in msg.points],
                     dtype=np.float64).reshape(-1, 3)
    if msg.points:  # points are at interval * (1, 2, ...): the first one's time is the interval
        t0 = msg.points[0].time_from_start
        interval = t0.sec + t0.nanosec * 1e-9
    else:
        interval = 0.5
    return Trajectory(poses=poses, interval_s=interval, stamp_ns=stamp_to_ns(msg.header.stamp),
                      is_fallback=msg.is_fallback, fallback_reason=msg.fallback_reason, model_id=msg.model_id)


def trajectory_to_path(traj: Trajectory, frame_id: str) -> Path:
    header = make_header(traj.stamp_ns, frame_id)
    poses = [PoseStamped(header=header, pose=Pose(position=Point(x=0.0, y=0.0, z=0.0), orientation=quaternion_from_yaw(0.0)))]
    for x, y, yaw in np.asarray(traj.poses, dtype=np.float64):
        poses.append(PoseStamped(header=header, pose=Pose(position=Point(x=float(x), y=float(y), z=0.0),
                                                          orientation=quaternion_from_yaw(float(yaw)))))
    return Path(header=header, poses=poses)


def trajectory_markers(traj: Trajectory, frame_id: str, plan: LatentPlan | None = None, namespace: str = "latentvla") -> MarkerArray:
    """RViz markers: the planned poses (red when fallback), a text with state and latent tokens."""
    header = make_header(traj.stamp_ns, frame_id)
    color = ColorRGBA(r=0.95, g=0.2, b=0.2, a=1.0) if traj.is_fallback else ColorRGBA(r=0.1, g=0.8, b=0.3, a=1.0)
    spheres = Marker(header=header, ns=f"{namespace}/poses", id=0, type=Marker.SPHERE_LIST, action=Marker.ADD,
                     scale=Vector3(x=0.6, y=0.6, z=0.6), color=color)
    spheres.pose.orientation.w = 1.0
    spheres.points = [Point(x=float(x), y=float(y), z=0.2) for x, y, _ in np.asarray(traj.poses)]
    state = f"FALLBACK: {traj.fallback_reason}" if traj.is_fallback else "model"
    tokens = " ".join(str(int(t)) for t in plan.token_ids) if plan is not None else "-"
    text = Marker(header=header, ns=f"{namespace}/state", id=1, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                  scale=Vector3(x=0.0, y=0.0, z=1.0), color=color, text=f"{state}\nlatent: {tokens}")
    text.pose.position.z = 3.0
    text.pose.orientation.w = 1.0
    return MarkerArray(markers=[spheres, text])
