"""Camera image decoding (pure: numpy, OpenCV imported on first use): sensor_msgs/Image
pixel layouts and sensor_msgs/CompressedImage formats -> HxWx3 uint8 RGB.

The ROS shell (ros/conversions.py) uses the real cv_bridge instead where it is installed;
the bag reader (data/bag_io.py) uses this directly. Every malformed image raises
``ImageError`` with the reason.
"""
from __future__ import annotations

import numpy as np

# Read as a view into the buffer (no copy, no decoder).
VIEW_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
# Need a decoder: one byte per Bayer cell, two per YUV 4:2:2 pixel. The OpenCV codes are
# cv_bridge's (ROS names the Bayer pattern from the top-left 2x2, OpenCV from the second
# row and column; ROS's yuv422 is UYVY).
DECODED = {"bayer_rggb8": (1, "COLOR_BayerBG2RGB"), "bayer_bggr8": (1, "COLOR_BayerRG2RGB"),
           "bayer_gbrg8": (1, "COLOR_BayerGR2RGB"), "bayer_grbg8": (1, "COLOR_BayerGB2RGB"),
           "yuv422": (2, "COLOR_YUV2RGB_UYVY"), "uyvy": (2, "COLOR_YUV2RGB_UYVY"),
           "yuv422_yuy2": (2, "COLOR_YUV2RGB_YUYV"), "yuyv": (2, "COLOR_YUV2RGB_YUYV")}
RAW_ENCODINGS = tuple(sorted(VIEW_CHANNELS)) + tuple(sorted(DECODED))
COMPRESSED_FORMATS = ("jpeg", "png")


class ImageError(ValueError):
    """An image that cannot be decoded; the text says why."""


def check_raw(encoding: str, height: int, width: int, step: int, size: int) -> int:
    """Validates a raw image's layout; returns its bytes per pixel."""
    encoding = encoding.lower()
    if encoding not in VIEW_CHANNELS and encoding not in DECODED:
        raise ImageError(f"unsupported image encoding {encoding!r} (supported: {list(RAW_ENCODINGS)})")
    channels = VIEW_CHANNELS[encoding] if encoding in VIEW_CHANNELS else DECODED[encoding][0]
    if height == 0 or width == 0:
        raise ImageError("empty image (zero width or height)")
    if step < width * channels:
        raise ImageError(f"step {step} < width {width} x {channels} bytes")
    if size != step * height:
        raise ImageError(f"data has {size} bytes, expected step*height = {step * height}")
    if encoding in DECODED and DECODED[encoding][0] == 2 and width % 2:
        raise ImageError(f"{encoding}: odd width {width} (4:2:2 pixels come in pairs)")
    if encoding.startswith("bayer") and (width < 2 or height < 2):
        raise ImageError(f"{encoding}: a Bayer image needs at least 2x2 cells, got {width}x{height}")
    return channels


def raw_to_rgb(encoding: str, height: int, width: int, step: int, buffer: np.ndarray) -> np.ndarray:
    """A raw image (``buffer``: its bytes as uint8) -> HxWx3 uint8 RGB; a view of ``buffer``
    for rgb8/bgr8/rgba8/bgra8 (mono8 repeats the channel), decoded by OpenCV otherwise."""
    encoding = encoding.lower()
    channels = check_raw(encoding, height, width, step, buffer.size)
    rows = buffer.reshape(height, step)[:, : width * channels]
    if encoding in DECODED:
        import cv2

        pixels = np.ascontiguousarray(rows).reshape(height, width, channels) if channels > 1 else np.ascontiguousarray(rows)
        return cv2.cvtColor(pixels, getattr(cv2, DECODED[encoding][1]))
    rows = rows.reshape(height, width, channels)
    if encoding == "rgb8":
        return rows
    if encoding == "bgr8":
        return rows[:, :, ::-1]
    if encoding == "rgba8":
        return rows[:, :, :3]
    if encoding == "bgra8":
        return rows[:, :, 2::-1]
    return np.repeat(rows, 3, axis=2)  # mono8


def check_compressed(fmt: str, size: int) -> None:
    if not any(f in fmt.lower() for f in COMPRESSED_FORMATS):
        raise ImageError(f"unsupported compressed format {fmt!r} (supported: {list(COMPRESSED_FORMATS)})")
    if size == 0:
        raise ImageError("empty compressed image")


def compressed_to_rgb(fmt: str, data: bytes) -> np.ndarray:
    """A CompressedImage's ``format`` (``jpeg``, ``png``, image_transport's ``bgr8; jpeg
    compressed bgr8``) and bytes -> HxWx3 uint8 RGB (OpenCV)."""
    import cv2

    check_compressed(fmt, len(data))
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError(f"cannot decode the {fmt!r} image ({len(data)} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def checked_rgb(image: np.ndarray, what: str) -> np.ndarray:
    """A decoded image as HxWx3 uint8 (grey repeated), or ImageError."""
    if image is not None and image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image is None or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        shape = None if image is None else (image.shape, image.dtype)
        raise ImageError(f"decoded {what} image is {shape}, expected HxWx3 uint8")
    return image
