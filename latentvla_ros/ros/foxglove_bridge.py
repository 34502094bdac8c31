"""Optional live Foxglove server (``latentvla foxglove``) with the ``foxglove-sdk`` package.

Forwards ROS 2 topics of the running graph to Foxglove over its WebSocket protocol,
unchanged: each topic becomes a Foxglove channel with ``message_encoding="cdr"`` and a
``ros2msg`` schema (the message definition with its dependencies, as in rosbag2 MCAP
files), so Foxglove decodes it exactly like a recorded bag. Subscriptions are raw (no
deserialization here); their QoS follows the publishers like ``ros2 bag record`` does.
Topics that appear later are picked up by a periodic graph scan. Optionally the same
channels are also written to an MCAP file (``--mcap``).

/diagnostics entries with level WARN/ERROR are also shown as Foxglove server status
(the "Problems" panel), so the fallback state and stale inputs are visible at a glance.

Open Foxglove, "Open connection", ``ws://<host>:<port>`` (default ``ws://127.0.0.1:8765``).
Recorded runs (``latentvla record``, ``latentvla demo``) are rosbag2 MCAP files that
Foxglove opens directly.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterable

DEFAULT_TOPICS = (
    "/planning/latentvla/trajectory", "/planning/latentvla/path", "/planning/latentvla/markers",
    "/latentvla/bev_image", "/latentvla/latent_token_markers", "/diagnostics", "/tf", "/tf_static",
)
DEFAULT_PORT = 8765


def ros2msg_schema(msgtype: str, typestore=None) -> tuple[str, bytes]:
    """(schema name 'pkg/msg/Type', ros2msg definition with dependencies) for Foxglove/MCAP."""
    from rosbags.typesys import Stores, get_typestore

    from latentvla_ros.bags.record import register_msgtype

    ts = typestore or get_typestore(Stores.ROS2_KILTED)
    register_msgtype(ts, msgtype)
    text, _ = ts.generate_msgdef(msgtype, ros_version=2)
    return msgtype, text.encode()


class FoxgloveBridge:
    """Raw ROS 2 subscriptions -> foxglove-sdk channels (live server and/or MCAP sink).

    Args:
        node: rclpy node that owns the subscriptions (spin it).
        topics: topic names to forward; ``None`` forwards every topic on the graph.
        host, port: WebSocket server address; ``port=0`` picks a free port; ``serve=False``
            starts no server (e.g. MCAP only).
        mcap_path: also write every forwarded message to this MCAP file.
        scan_period_s: how often the graph is scanned for new topics.
    """

    def __init__(self, node, topics: Iterable[str] | None = DEFAULT_TOPICS, *, host: str = "127.0.0.1",
                 port: int = DEFAULT_PORT, serve: bool = True, mcap_path: str | Path | None = None,
                 scan_period_s: float = 1.0, name: str = "latentvla_ros"):
        import foxglove
        from rosbags.typesys import Stores, get_typestore

        self.node = node
        self.wanted = None if topics is None else {t if t.startswith("/") else "/" + t for t in topics}
        self._foxglove = foxglove
        self._typestore = get_typestore(Stores.ROS2_KILTED)
        self._lock = threading.Lock()
        self.context = foxglove.Context()
        self.channels: dict[str, Any] = {}
        self._subs: dict[str, Any] = {}
        self.forwarded: dict[str, int] = {}
        self.skipped: dict[str, str] = {}  # topic -> why it is not forwarded
        self._status_ids: set[str] = set()
        self.server = None
        self.mcap = None
        if serve:
            self.server = foxglove.start_server(name=name, host=host, port=port, context=self.context)
        if mcap_path is not None:
            self.mcap = foxglove.open_mcap(str(mcap_path), allow_overwrite=True, context=self.context)
        self.scan()
        self._timer = node.create_timer(scan_period_s, self.scan) if scan_period_s > 0 else None

    @property
    def port(self) -> int | None:
        return None if self.server is None else int(self.server.port)

    def scan(self) -> None:
        """Subscribe every wanted topic that is on the graph and not forwarded yet."""
        for topic, types in self.node.get_topic_names_and_types():
            if topic in self._subs or topic in self.skipped or (self.wanted is not None and topic not in self.wanted):
                continue
            self._add(topic, types[0])

    def _add(self, topic: str, msgtype: str) -> None:
        from latentvla_ros.ros.bag_player import resolve_message_class
        from latentvla_ros.ros.bag_recorder import subscription_qos_for

        cls = resolve_message_class(msgtype)
        if cls is None:
            self.skipped[topic] = f"type {msgtype} not importable"
            return
        try:
            schema_name, schema = ros2msg_schema(msgtype, self._typestore)
        except Exception as exc:  # noqa: BLE001 - no definition found for a custom type
            self.skipped[topic] = f"no message definition for {msgtype}: {exc}"
            return
        channel = self._foxglove.Channel(topic, message_encoding="cdr", context=self.context,
                                         schema=self._foxglove.Schema(name=schema_name, encoding="ros2msg", data=schema))
        qos = subscription_qos_for([i.qos_profile for i in self.node.get_publishers_info_by_topic(topic)], depth=10)
        with self._lock:
            self.channels[topic] = channel
            self.forwarded[topic] = 0
        callback = (lambda data, t=topic: self._on_diagnostics(t, data)) if topic == "/diagnostics" else \
            (lambda data, t=topic: self._forward(t, data))
        self._subs[topic] = self.node.create_subscription(cls, topic, callback, qos, raw=True)

    def _forward(self, topic: str, data: bytes) -> None:
        channel = self.channels.get(topic)
        if channel is None:
            return
        channel.log(bytes(data), log_time=time.time_ns())
        with self._lock:
            self.forwarded[topic] += 1

    def _on_diagnostics(self, topic: str, data: bytes) -> None:
        self._forward(topic, data)
        if self.server is None:
            return
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.serialization import deserialize_message

        levels = {1: self._foxglove.StatusLevel.Warning, 2: self._foxglove.StatusLevel.Error}
        try:
            msg = deserialize_message(bytes(data), DiagnosticArray)
        except Exception:  # noqa: BLE001 - a malformed sample: just not shown as status
            return
        for status in msg.status:
            level = status.level[0] if isinstance(status.level, (bytes, bytearray)) else int(status.level)
            if level in levels:
                self.server.publish_status(f"{status.name}: {status.message}", levels[level], id=status.name)
                self._status_ids.add(status.name)
            elif status.name in self._status_ids:
                self.server.remove_status([status.name])
                self._status_ids.discard(status.name)

    def close(self) -> None:
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None
        for sub in self._subs.values():
            self.node.destroy_subscription(sub)
        self._subs.clear()
        if self.mcap is not None:
            self.mcap.close()
            self.mcap = None
        if self.server is not None:
            self.server.stop()
            self.server = None


def run(topics: list[str] | None, host: str, port: int, mcap_path: str | None, duration_s: float = 0.0) -> int:
    """Blocking: serve until Ctrl-C (or ``duration_s``)."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from latentvla_ros.ros.graph import apply_transport_env

    apply_transport_env()
    rclpy.init(args=None)
    node = rclpy.create_node("latentvla_foxglove")
    bridge = None
    try:
        bridge = FoxgloveBridge(node, topics, host=host, port=port, mcap_path=mcap_path)
        print(f"[foxglove] serving on ws://{host}:{bridge.port} "
              f"({'all topics' if topics is None else ', '.join(sorted(bridge.wanted))})", flush=True)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        deadline = time.monotonic() + duration_s if duration_s > 0 else None
        try:
            while rclpy.ok() and (deadline is None or time.monotonic() < deadline):
                executor.spin_once(timeout_sec=0.1)
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        print(f"[foxglove] forwarded {bridge.forwarded}; skipped {bridge.skipped}", flush=True)
    finally:
        if bridge is not None:
            bridge.close()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
