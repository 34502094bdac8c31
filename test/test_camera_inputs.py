"""Camera input: raw encodings (rgb8, bgr8, rgba8, bgra8, mono8, Bayer, YUV 4:2:2) and
sensor_msgs/CompressedImage (jpeg, png), each from a hand-made image whose conversion is known.

The same cases run through both decoders: OpenCV (here) and the real ROS 2 cv_bridge
(``imgmsg_to_cv2`` / ``compressed_imgmsg_to_cv2``, where apt ROS provides it).
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from conftest import wait_for
from rclpy.parameter import Parameter
from ros_helpers import lidar_cloud, odometry, stamp
from sensor_msgs.msg import CompressedImage, Image
from test_node_sensor_sync import make_rig

from latentvla_ros.ros import conversions as conv


def _have_cv_bridge() -> bool:
    try:
        import cv_bridge  # noqa: F401
    except ImportError:
        return False
    return True


DECODERS = [
    "opencv",
    pytest.param("cv_bridge", marks=pytest.mark.skipif(
        not _have_cv_bridge(), reason="ROS 2 cv_bridge not installed here (apt ros-<distro>-cv-bridge; "
                                      "PyPI's cv-bridge is ROS 1 code and never used)")),
]

H, W = 8, 12
RGB = np.stack(list(np.meshgrid(np.arange(W) * 20, np.arange(H) * 30, indexing="xy")) + [np.full((H, W), 7)],
               axis=-1).astype(np.uint8)  # R grows to the right, G downwards, B = 7


def _raw(encoding: str, pixels: np.ndarray, pad: int = 0) -> Image:
    h, w = pixels.shape[:2]
    row = pixels.reshape(h, -1)
    data = np.concatenate([row, np.full((h, pad), 0xEE, np.uint8)], axis=1) if pad else row
    msg = Image(header=conv.make_header(stamp(0), "camera_front"), height=h, width=w, encoding=encoding,
                step=data.shape[1])
    msg.data = data.tobytes()
    return msg


def _bayer(pattern: str, color=(200, 100, 30), h: int = 8, w: int = 8) -> np.ndarray:
    """A uniform colour seen through a Bayer filter: ``pattern`` names the top-left 2x2 cells."""
    channel = {"r": 0, "g": 1, "b": 2}
    out = np.zeros((h, w), np.uint8)
    for i, c in enumerate(pattern):
        out[i // 2::2, i % 2::2] = color[channel[c]]
    return out


RED_YUV, GRAY_YUV = (81, 90, 240), (128, 128, 128)  # BT.601 studio range: pure red and mid grey


def _yuv422(order: str) -> np.ndarray:
    """2 rows x 4 pixels: a red pair, then a grey pair; ``order`` is the byte order of a pair."""
    row: list[int] = []
    for y, u, v in (RED_YUV, GRAY_YUV):
        row += [{"y": y, "u": u, "v": v}[c] for c in order]
    return np.array([row, row], np.uint8).reshape(2, 4, 2)


RAW_CASES = {
    "rgb8": (lambda: _raw("rgb8", RGB), RGB, 0),
    "bgr8": (lambda: _raw("bgr8", RGB[:, :, ::-1].copy()), RGB, 0),
    "rgba8": (lambda: _raw("rgba8", np.dstack([RGB, np.full((H, W), 77, np.uint8)])), RGB, 0),
    "bgra8": (lambda: _raw("bgra8", np.dstack([RGB[:, :, ::-1], np.full((H, W), 77, np.uint8)])), RGB, 0),
    "mono8": (lambda: _raw("mono8", RGB[:, :, 0].copy()), np.repeat(RGB[:, :, :1], 3, axis=2), 0),
    "bgr8_padded_step": (lambda: _raw("bgr8", RGB[:, :, ::-1].copy(), pad=5), RGB, 0),
}
for _pattern in ("rggb", "bggr", "gbrg", "grbg"):
    RAW_CASES[f"bayer_{_pattern}8"] = ((lambda p=_pattern: _raw(f"bayer_{p}8", _bayer(p))),
                                       np.full((8, 8, 3), (200, 100, 30), np.uint8), 1)
for _encoding, _order in (("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"), ("yuyv", "yuyv")):
    RAW_CASES[_encoding] = ((lambda e=_encoding, o=_order: _raw(e, _yuv422(o))),
                            np.array([[[255, 0, 0]] * 2 + [[130, 130, 130]] * 2] * 2, np.uint8), 4)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("case", sorted(RAW_CASES))
def test_raw_encodings_convert_to_rgb(case, decoder):
    make, expected, tolerance = RAW_CASES[case]
    out = conv.image_to_numpy(make(), decoder=decoder)
    assert out.shape == expected.shape and out.dtype == np.uint8
    inner = (slice(2, -2), slice(2, -2)) if case.startswith("bayer") else (slice(None), slice(None))
    diff = np.abs(out[inner].astype(int) - expected[inner].astype(int))
    assert diff.max() <= tolerance, (case, out[inner][0, :3], expected[inner][0, :3])


def _blocks() -> np.ndarray:
    """16x32 RGB: a red half and a blue half (JPEG keeps flat blocks nearly exact)."""
    img = np.zeros((16, 32, 3), np.uint8)
    img[:, :16] = (220, 20, 20)
    img[:, 16:] = (20, 20, 220)
    return img


def _compressed(fmt: str, rgb: np.ndarray, ext: str) -> CompressedImage:
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(rgb[:, :, ::-1]))  # OpenCV encodes BGR
    assert ok
    msg = CompressedImage(header=conv.make_header(stamp(0), "camera_front"), format=fmt)
    msg.data = buf.tobytes()
    return msg


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("fmt,ext,tolerance", [("jpeg", ".jpg", 6), ("bgr8; jpeg compressed bgr8", ".jpg", 6),
                                               ("png", ".png", 0), ("bgr8; png compressed bgr8", ".png", 0)])
def test_compressed_images_decode_to_rgb(fmt, ext, tolerance, decoder):
    expected = _blocks()
    out = conv.compressed_image_to_numpy(_compressed(fmt, expected, ext), decoder=decoder)
    assert out.shape == expected.shape and out.dtype == np.uint8
    inner = np.s_[4:-4, list(range(4, 12)) + list(range(20, 28))]  # away from the red/blue edge
    assert np.abs(out[inner].astype(int) - expected[inner].astype(int)).max() <= tolerance


@pytest.mark.parametrize("decoder", DECODERS)
def test_malformed_camera_inputs_raise_conversion_errors(decoder):
    bad = _compressed("jpeg", _blocks(), ".jpg")
    bad.data = bytes(bad.data)[:40]  # truncated
    with pytest.raises(conv.ConversionError):
        conv.compressed_image_to_numpy(bad, decoder=decoder)
    with pytest.raises(conv.ConversionError, match="unsupported compressed format"):
        conv.compressed_image_to_numpy(CompressedImage(format="tiff", data=b"xx"), decoder=decoder)
    odd = _raw("yuv422", np.zeros((2, 3, 2), np.uint8))
    with pytest.raises(conv.ConversionError, match="odd width"):
        conv.image_to_numpy(odd, decoder=decoder)
    short = _raw("bayer_rggb8", _bayer("rggb"))
    short.data = bytes(short.data)[:-1]
    with pytest.raises(conv.ConversionError, match="bytes"):
        conv.image_to_numpy(short, decoder=decoder)
    with pytest.raises(conv.ConversionError, match="unsupported image encoding"):
        conv.image_to_numpy(_raw("16UC1", np.zeros((2, 2, 2), np.uint8)), decoder=decoder)


def test_camera_image_msg_passes_views_through_and_decodes_the_rest():
    raw = _raw("bgr8", RGB[:, :, ::-1].copy())
    assert conv.camera_image_msg(raw) is raw  # no copy for what consumers read as a view
    decoded = conv.camera_image_msg(_raw("bayer_rggb8", _bayer("rggb")))
    assert decoded.encoding == "rgb8" and decoded.header.frame_id == "camera_front"
    assert conv.stamp_to_ns(decoded.header.stamp) == stamp(0)


@pytest.mark.parametrize("transport", ["compressed", "raw"])
def test_sensor_sync_takes_compressed_or_bayer_cameras_and_frames_carry_rgb8(ros_context, spin, transport):
    cam_type, cam_topic = ((CompressedImage, "/test/camera/image/compressed") if transport == "compressed"
                           else (Image, "/test/camera/image"))
    node, pubs, frames = make_rig(ros_context, spin, [Parameter("camera_transport", value=transport)], cam_type,
                                  cam_topic, ["~/input/camera/front/image/compressed:=/test/camera/image/compressed"])

    def camera(k: int, corrupt: bool = False):
        if transport == "compressed":
            msg = _compressed("jpeg", _blocks(), ".jpg")
            if corrupt:
                msg.data = bytes(msg.data)[:40]
        else:
            msg = _raw("bayer_rggb8", _bayer("rggb") if not corrupt else np.zeros((8, 7), np.uint8))
            if corrupt:
                msg.step = 3
        msg.header = conv.make_header(stamp(k), "camera_front")
        return msg

    for k, corrupt in ((0, True), (1, False), (2, False)):
        pubs["cam"].publish(camera(k, corrupt))
        pubs["lidar"].publish(lidar_cloud(stamp(k, offset_s=0.01)))
        pubs["odom"].publish(odometry(stamp(k, offset_s=-0.005)))
    assert wait_for(lambda: len(frames) >= 1, 10)
    assert wait_for(lambda: node.stats.snapshot()["dropped"].get("bad_message", 0) == 1, 10), node.stats.snapshot()
    image = frames[0].images[0]
    assert image.encoding == "rgb8" and image.header.frame_id == "camera_front"
    rgb = conv.image_to_numpy(image)
    if transport == "compressed":
        assert rgb.shape == (16, 32, 3) and rgb[8, 4, 0] > 200 and rgb[8, 28, 2] > 200  # red left, blue right
    else:
        assert rgb.shape == (8, 8, 3) and np.abs(rgb[3, 3].astype(int) - (200, 100, 30)).max() <= 1
    core = conv.sensor_frame_to_core(frames[0])  # the consumers read it like any rgb8 frame
    assert core.cameras[0].image.shape == rgb.shape


def test_a_vehicle_bag_with_compressed_cameras_becomes_a_driving_log(tmp_path):
    """`latentvla label --bag` reads what vehicle bags hold: the raw camera topics of a bag
    rewritten as CompressedImage (png: lossless) give the same camera arrays."""
    from rosbags.rosbag2 import Reader, Writer

    from latentvla_ros.data import bag_io
    from latentvla_ros.data.highway import generate_log
    from latentvla_ros.data.log_format import DrivingLog

    src = tmp_path / "src"
    generate_log(src, scenario="highway", seed=3, num_frames=6, overwrite=True)
    bag_io.write_sensor_bag(src, tmp_path / "raw", storage="mcap")
    ts = bag_io._typestore()
    compressed_type = "sensor_msgs/msg/CompressedImage"
    with (Reader(tmp_path / "raw") as reader,
          Writer(tmp_path / "compressed", version=9, storage_plugin=bag_io._storage_plugin("mcap")) as writer):
        conns = {}
        for conn, recv, raw in reader.messages():
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            topic, msgtype = conn.topic, conn.msgtype
            if msgtype == "sensor_msgs/msg/Image":
                rgb = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
                ok, png = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
                msg = ts.types[compressed_type](header=msg.header, format="png", data=np.frombuffer(png.tobytes(), np.uint8))
                topic, msgtype = topic + "/compressed", compressed_type
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(conns[topic], recv, ts.serialize_cdr(msg, msgtype))
    log = DrivingLog(bag_io.log_from_bag(tmp_path / "compressed", tmp_path / "log"))
    np.testing.assert_array_equal(log.camera_array, DrivingLog(src).camera_array)


def test_launch_argument_and_cli_option_choose_the_camera_transport(monkeypatch):
    from pathlib import Path

    from launch_harness import evaluate

    from latentvla_ros.apps import cli
    from latentvla_ros.ros import graph

    root = Path(__file__).resolve().parents[1]
    for transport, expected in (("", None), ("compressed", "compressed")):
        nodes, _ = evaluate(root / "launch" / "autoware.launch.py", {"camera_transport": transport} if transport else {})
        sync = next(n for n in nodes if n.node_name == "sensor_sync")
        inline = {k: v for p in sync.parameters if isinstance(p, dict) for k, v in p.items()}
        assert inline.get("camera_transport") == expected
        remaps = dict(sync.remappings)
        assert remaps["~/input/camera/camera0/image/compressed"] == "/sensing/camera/camera0/image_rect_color/compressed"
    started = []
    monkeypatch.setattr(graph, "run_composed", lambda options: started.append(options) or 0)  # no graph: the options
    assert cli.main(["run", "--profile", "autoware", "--camera-transport", "compressed"]) == 0
    assert started[0].overrides["sensor_sync"]["camera_transport"] == "compressed"
