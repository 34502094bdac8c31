"""Every message type of msg/ crosses a process boundary over rclpy intact."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import wait_for
from fixtures.message_samples import TYPES, samples
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message

PUBLISHER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, sys.argv[1])
    import rclpy
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from fixtures.message_samples import TYPES, samples
    rclpy.init(domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    node = rclpy.create_node("ipc_publisher")
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pubs = {name: node.create_publisher(TYPES[name], f"/ipc_test/{name}", qos) for name in TYPES}
    for name, msg in samples().items():
        pubs[name].publish(msg)
    print("published", flush=True)
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()
""")


def test_every_message_type_between_two_processes(ros_context, spin):
    import rclpy

    received = {}
    node = rclpy.create_node("ipc_subscriber", context=ros_context)
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    for name, cls in TYPES.items():
        node.create_subscription(cls, f"/ipc_test/{name}", lambda msg, n=name: received.__setitem__(n, msg), qos)
    spin(node)
    test_dir = str(Path(__file__).parent)
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER, test_dir, "20"], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: len(received) == len(TYPES), timeout_s=20), f"received only {sorted(received)}"
    finally:
        proc.kill()
        out = proc.communicate()[0]
    expected = samples()
    for name, msg in expected.items():
        # field-for-field identical to the local CDR round trip (float32 fields lose
        # float64 precision either way; CDR padding bytes are undefined, so no byte compare)
        assert received[name] == deserialize_message(serialize_message(msg), TYPES[name]), (name, out)


CAMERA = textwrap.dedent("""
    import array, os, sys, time
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    rclpy.init(domain_id=int(os.environ["ROS_DOMAIN_ID"]))
    node = rclpy.create_node("ipc_camera")
    pubs = {}
    for width, height in ((1024, 256), (1920, 1080)):  # the paper config's camera; a 1080p one
        msg = Image(height=height, width=width, encoding="rgb8", step=3 * width)
        msg.header.frame_id = f"{width}x{height}"
        msg.data = array.array("B", bytes(3 * width * height))
        pubs[msg.header.frame_id] = (node.create_publisher(Image, f"/ipc_test/camera_{width}", qos_profile_sensor_data), msg)
    end = time.monotonic() + float(sys.argv[1])
    while time.monotonic() < end:
        for pub, msg in pubs.values():
            pub.publish(msg)
        time.sleep(0.1)
""")


def test_large_camera_images_reach_a_best_effort_subscriber_in_another_process(ros_context, spin):
    """sensor_sync subscribes to cameras best effort (SensorDataQoS). With Fast DDS's
    default transports such an image (786 KB, 6 MB) never arrived from another process;
    the shipped profile (config/fastdds/large_data.xml, set by conftest as by every
    latentvla process and launch file) carries it."""
    import rclpy
    from sensor_msgs.msg import Image

    from latentvla_ros.ros.qos import sensor_qos

    assert os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE", "").endswith("large_data.xml")
    counts = {1024: 0, 1920: 0}
    node = rclpy.create_node("ipc_camera_subscriber", context=ros_context)

    def on_image(msg, width):
        assert len(msg.data) == msg.step * msg.height and msg.width == width
        counts[width] += 1

    for width in counts:
        node.create_subscription(Image, f"/ipc_test/camera_{width}", lambda m, w=width: on_image(m, w), sensor_qos())
    spin(node)
    proc = subprocess.Popen([sys.executable, "-c", CAMERA, "15"], env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert wait_for(lambda: min(counts.values()) >= 5, timeout_s=15), counts
    finally:
        proc.kill()
        proc.communicate()
