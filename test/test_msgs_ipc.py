"""Every message type of msg/ crosses a process boundary over rclpy intact."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from rclpy.serialization import deserialize_message, serialize_message
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from conftest import wait_for
from fixtures.message_samples import TYPES, samples

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
