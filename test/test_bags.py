"""Tests for bags.replay / bags.record (pure) and ros.bag_player / ros.bag_recorder (rclpy).

rclpy tests run each in a fresh ``Context`` on a domain id drawn once per test
session (``rclpy.init(domain_id=...)``), with ``ROS_AUTOMATIC_DISCOVERY_RANGE``
set to LOCALHOST only for the duration of each test, and always shut down.
"""
from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from latentvla_ros.bags.record import BagWriter, MsgTypeNotFoundError, find_msg_definition
from latentvla_ros.bags.replay import BagReader, PlaybackSchedule, bag_info, read_bag

_DOMAIN_ID = random.SystemRandom().randint(120, 200)
SEC = 1_000_000_000
T0 = 1_700_000_000 * SEC


# ------------------------------------------------------------ bag builders
def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def write_test_bag(path: Path, storage: str = "mcap", n: int = 20, period_ns: int = 50_000_000,
                   image_bytes: int = 3 * 8 * 8, seed: int = 0):
    """String + Image + Odometry at the same rate; returns [(topic, msgtype, t, bytes)]."""
    ts = _typestore()
    T = ts.types
    rng = np.random.default_rng(seed)
    side = int(np.sqrt(image_bytes // 3))
    expected = []
    with BagWriter(path, storage) as w:
        w.add_topic("/chatter", "std_msgs/msg/String")
        w.add_topic("/camera/image", "sensor_msgs/msg/Image",
                    qos=[{"reliability": "best_effort", "durability": "volatile", "depth": 5}])
        w.add_topic("/odom", "nav_msgs/msg/Odometry")
        for k in range(n):
            t = T0 + k * period_ns
            stamp = T["builtin_interfaces/msg/Time"](sec=t // SEC, nanosec=t % SEC)
            header = T["std_msgs/msg/Header"](stamp=stamp, frame_id="base_link")
            msgs = [
                ("/chatter", "std_msgs/msg/String", t, T["std_msgs/msg/String"](data=f"hello {k}")),
                ("/camera/image", "sensor_msgs/msg/Image", t + 1_000, T["sensor_msgs/msg/Image"](
                    header=header, height=side, width=side, encoding="rgb8", is_bigendian=0,
                    step=3 * side, data=rng.integers(0, 255, 3 * side * side, dtype=np.uint8))),
            ]
            odom = ts.types["nav_msgs/msg/Odometry"]
            pose_cov = T["geometry_msgs/msg/PoseWithCovariance"](
                pose=T["geometry_msgs/msg/Pose"](
                    position=T["geometry_msgs/msg/Point"](x=float(k), y=0.5, z=0.0),
                    orientation=T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
                covariance=np.zeros(36))
            twist_cov = T["geometry_msgs/msg/TwistWithCovariance"](
                twist=T["geometry_msgs/msg/Twist"](
                    linear=T["geometry_msgs/msg/Vector3"](x=5.0, y=0.0, z=0.0),
                    angular=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.1)),
                covariance=np.zeros(36))
            msgs.append(("/odom", "nav_msgs/msg/Odometry", t + 2_000,
                         odom(header=header, child_frame_id="ego", pose=pose_cov, twist=twist_cov)))
            for topic, msgtype, tt, msg in msgs:
                data = bytes(ts.serialize_cdr(msg, msgtype))
                w.write(topic, tt, data)
                expected.append((topic, msgtype, tt, data))
    return expected


STRING_DEF = "string data\n"
THING_DEF = "# custom type from another tool\nstd_msgs/Header header\nfloat64[] values\nuint8 MODE_A=1\nuint8 mode\n"
HEADER_DEF = "builtin_interfaces/Time stamp\nstring frame_id\n"
TIME_DEF = "int32 sec\nuint32 nanosec\n"


def write_mcap_ros2_file(path: Path, n: int = 10, period_ns: int = 20_000_000):
    """A single .mcap written by mcap_ros2 (its own schema text), incl. a custom type."""
    from mcap_ros2.writer import Writer

    sep = "=" * 80 + "\n"
    thing_full = (THING_DEF + sep + "MSG: std_msgs/Header\n" + HEADER_DEF
                  + sep + "MSG: builtin_interfaces/Time\n" + TIME_DEF)
    with path.open("wb") as f:
        w = Writer(f)
        s_string = w.register_msgdef("std_msgs/msg/String", STRING_DEF)
        s_thing = w.register_msgdef("custom_pkg/msg/Thing", thing_full)
        for k in range(n):
            t = T0 + k * period_ns
            w.write_message("/mc/chatter", s_string, {"data": f"mc {k}"}, log_time=t, publish_time=t)
            w.write_message("/mc/thing", s_thing, {
                "header": {"stamp": {"sec": t // SEC, "nanosec": t % SEC}, "frame_id": "x"},
                "values": [float(k), 2.0], "mode": 1}, log_time=t + 1, publish_time=t + 1)
        w.finish()


# ------------------------------------------------------------------ pure
def test_pure_modules_do_not_import_rclpy():
    code = ("import sys, latentvla_ros.ros.contracts.approx_sync, latentvla_ros.bags.replay, "
            "latentvla_ros.bags.record; assert 'rclpy' not in sys.modules, 'rclpy imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_write_and_read_bag(tmp_path, storage):
    expected = write_test_bag(tmp_path / "bag", storage, n=10)
    with BagReader(tmp_path / "bag") as r:
        got = list(r.messages())
        assert r.report.ok and not r.report.recovered
        assert set(r.topics) == {"/chatter", "/camera/image", "/odom"}
        assert r.topics["/camera/image"].qos[0]["reliability"] == "best_effort"
        assert r.topics["/chatter"].message_count == 10
        assert r.start_time_ns == T0
        odom = r.deserialize(got[2])
        assert odom.child_frame_id == "ego" and odom.pose.pose.position.x == 0.0
    assert [(m.topic, m.msgtype, m.log_time_ns, m.data) for m in got] == expected
    info = bag_info(tmp_path / "bag")
    assert info["message_count"] == 30 and info["topics"]["/odom"]["type"] == "nav_msgs/msg/Odometry"
    # topic filter + time window
    sub = list(read_bag(tmp_path / "bag", topics=["/odom"], start_ns=T0 + 5 * 50_000_000))
    assert [m.log_time_ns for m in sub] == [T0 + k * 50_000_000 + 2_000 for k in range(5, 10)]


def test_single_mcap_file_and_dir_without_metadata(tmp_path):
    expected = write_test_bag(tmp_path / "bag", "mcap", n=5)
    mcap_file = next((tmp_path / "bag").glob("*.mcap"))
    assert [m.data for m in read_bag(mcap_file)] == [e[3] for e in expected]
    (tmp_path / "bag" / "metadata.yaml").unlink()  # copied without it, or a tool that writes none
    with BagReader(tmp_path / "bag") as r:
        got = list(r.messages())
        assert not r.report.recovered and r.report.ok, r.report.errors  # a normal case, not a recovery
        assert r.message_count == len(expected) and r.topics["/odom"].message_count == 5
    assert [m.data for m in got] == [e[3] for e in expected]


def test_truncated_mcap_reads_prefix_and_reports(tmp_path):
    # ~40 KB images -> several 1 MiB chunks, so half a file still holds whole chunks.
    expected = write_test_bag(tmp_path / "bag", "mcap", n=80, image_bytes=40_000)
    src = next((tmp_path / "bag").glob("*.mcap"))
    raw = src.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(raw[: len(raw) // 2])
    with BagReader(cut) as r:
        got = list(r.messages())  # must not raise
        report = r.report
        assert set(r.topics) == {"/chatter", "/camera/image", "/odom"}
    assert report.recovered and len(report.errors) >= 2  # open failure + where the scan stopped
    assert 0 < len(got) < len(expected)
    assert [(m.topic, m.log_time_ns, m.data) for m in got] == [(e[0], e[2], e[3]) for e in expected[: len(got)]]
    assert report.messages_read == len(got)
    # In a rosbag2 directory too (metadata says complete, file is not).
    d = tmp_path / "bagdir"
    d.mkdir()
    (d / src.name).write_bytes(raw[: len(raw) // 2])
    (d / "metadata.yaml").write_text((tmp_path / "bag" / "metadata.yaml").read_text())
    with BagReader(d) as r:
        assert len(list(r.messages())) == len(got) and r.report.errors


def test_corrupt_sqlite_and_garbage_never_raise(tmp_path):
    write_test_bag(tmp_path / "bag", "sqlite3", n=30, image_bytes=20_000)
    db = next((tmp_path / "bag").glob("*.db3"))
    cut = tmp_path / "cut.db3"
    cut.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    with BagReader(cut) as r:
        got = list(r.messages())
        assert r.report.errors and r.report.recovered
    assert len(got) < 90
    garbage = tmp_path / "garbage.mcap"
    garbage.write_bytes(b"not a bag at all" * 10)
    with BagReader(garbage) as r:
        assert list(r.messages()) == [] and r.report.errors
    with pytest.raises(FileNotFoundError):
        BagReader(tmp_path / "nope").open()


def test_mcap_ros2_writer_file_is_readable(tmp_path):
    f = tmp_path / "other_tool.mcap"
    write_mcap_ros2_file(f, n=6)
    with BagReader(f) as r:
        msgs = list(r.messages())
        assert r.report.ok
        assert r.topics["/mc/thing"].msgtype == "custom_pkg/msg/Thing"
        thing = r.deserialize(msgs[1])
        assert list(thing.values) == [0.0, 2.0] and thing.mode == 1 and thing.MODE_A == 1
        assert r.deserialize(msgs[0]).data == "mc 0"
    assert [m.topic for m in msgs[:2]] == ["/mc/chatter", "/mc/thing"] and len(msgs) == 12


def test_playback_schedule():
    s = PlaybackSchedule(2.0, bag_start_ns=10 * SEC, wall_start_ns=100)
    assert s.deadline_ns(10 * SEC) == 100
    assert s.deadline_ns(11 * SEC) == 100 + SEC // 2
    assert s.bag_time_ns(100 + SEC // 2) == 11 * SEC
    with pytest.raises(ValueError):
        PlaybackSchedule(0.0, 0, 0)


def test_custom_type_registration_from_msg_files(tmp_path):
    share = tmp_path / "share"
    (share / "my_pkg" / "msg").mkdir(parents=True)
    (share / "my_pkg" / "msg" / "Thing.msg").write_text(THING_DEF)
    (share / "my_pkg" / "msg" / "Outer.msg").write_text("my_pkg/Thing[] things\nstring name\n")
    assert find_msg_definition("my_pkg/msg/Thing", [share]) == THING_DEF
    assert find_msg_definition("my_pkg/msg/Nope", [share]) is None
    # The installed std messages are found in the venv's share directory.
    assert "frame_id" in (find_msg_definition("std_msgs/msg/Header") or "")
    with BagWriter(tmp_path / "bag", "mcap", msg_search_paths=[share]) as w:
        w.add_topic("/outer", "my_pkg/msg/Outer")
        ts = w.typestore
        outer = ts.types["my_pkg/msg/Outer"]
        thing = ts.types["my_pkg/msg/Thing"]
        hdr = ts.types["std_msgs/msg/Header"](
            stamp=ts.types["builtin_interfaces/msg/Time"](sec=1, nanosec=2), frame_id="f")
        data = bytes(ts.serialize_cdr(outer(things=[thing(header=hdr, values=np.array([1.5]), mode=1)],
                                            name="n"), "my_pkg/msg/Outer"))
        w.write("/outer", T0, data)
        with pytest.raises(MsgTypeNotFoundError):
            w.add_topic("/bad", "my_pkg/msg/Nope")
    with BagReader(tmp_path / "bag") as r:
        (m,) = list(r.messages())
        out = r.deserialize(m)
    assert out.name == "n" and out.things[0].values[0] == 1.5


# ------------------------------------------------------------------ rclpy
@pytest.fixture
def ros(monkeypatch):
    """Fresh context + node + executor thread; everything torn down afterwards."""
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    ctx = Context()
    rclpy.init(context=ctx, domain_id=_DOMAIN_ID)
    node = rclpy.create_node(f"test_bags_{os.getpid()}_{random.randrange(1 << 30)}", context=ctx)
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown(context=ctx)
        thread.join(timeout=5.0)
        assert not thread.is_alive()


class RawCollector:
    def __init__(self, node, topics_types, qos_depth=200):
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.lock = threading.Lock()
        self.got: dict[str, list[tuple[int, bytes]]] = {t: [] for t, _ in topics_types}
        qos = QoSProfile(depth=qos_depth, reliability=ReliabilityPolicy.RELIABLE)
        self.subs = [node.create_subscription(cls, topic, self._cb(topic), qos, raw=True)
                     for topic, cls in topics_types]

    def _cb(self, topic):
        def cb(data):
            with self.lock:
                self.got[topic].append((time.monotonic_ns(), data))
        return cb

    def data(self, topic):
        with self.lock:
            return [d for _, d in self.got[topic]]

    def times(self, topic):
        with self.lock:
            return [t for t, _ in self.got[topic]]

    def wait_for(self, counts: dict[str, int], timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if all(len(self.got[t]) >= n for t, n in counts.items()):
                    return True
            time.sleep(0.01)
        return False


def _std_types():
    from nav_msgs.msg import Odometry
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    return String, Image, Odometry, Clock


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_player_publishes_raw_bytes_in_order_with_timing(ros, tmp_path, storage):
    from rclpy.serialization import deserialize_message

    from latentvla_ros.ros.bag_player import BagPlayer

    String, Image, Odometry, Clock = _std_types()
    n, period = 16, 60_000_000
    expected = write_test_bag(tmp_path / "bag", storage, n=n, period_ns=period)
    col = RawCollector(ros, [("/chatter", String), ("/camera/image", Image), ("/odom", Odometry),
                             ("/clock", Clock)])
    player = BagPlayer(ros, tmp_path / "bag", rate=2.0, wait_for_subscribers_s=5.0)
    t_start = time.monotonic()
    player.start()
    assert player.wait(15.0)
    elapsed = time.monotonic() - t_start
    assert col.wait_for({"/chatter": n, "/camera/image": n, "/odom": n}, timeout=5.0)
    stats = player.stats()
    player.destroy()
    for topic in ("/chatter", "/camera/image", "/odom"):
        assert col.data(topic) == [e[3] for e in expected if e[0] == topic], topic
        assert stats["published"][topic] == n
    assert stats["read_errors"] == [] and stats["publish_errors"] == 0
    # rclpy can deserialize what it received (bytes from rosbags == rclpy CDR).
    assert deserialize_message(col.data("/chatter")[3], String).data == "hello 3"
    # Timing at rate 2: arrival offsets follow bag offsets / 2.
    times = col.times("/chatter")
    offsets_ms = [(t - times[0]) / 1e6 for t in times]
    ideal_ms = [k * period / 2 / 1e6 for k in range(n)]
    assert max(abs(a - b) for a, b in zip(offsets_ms, ideal_ms)) < 60.0, offsets_ms
    assert elapsed < (n - 1) * period / 2 / 1e9 + 3.0  # (includes discovery wait)
    assert stats["late_messages"] <= 3 * n // 4
    # /clock carried bag time, non-decreasing, within the bag's range.
    clocks = [deserialize_message(d, Clock).clock for d in col.data("/clock")]
    assert clocks and stats["clock_published"] >= 3 * n
    ns = [c.sec * SEC + c.nanosec for c in clocks]
    assert ns == sorted(ns) and T0 <= ns[0] and ns[-1] <= T0 + n * period


def test_player_loop_offset_remap_and_unknown_types(ros, tmp_path):
    from rclpy.serialization import deserialize_message

    from latentvla_ros.ros.bag_player import BagPlayer

    String = _std_types()[0]
    f = tmp_path / "other_tool.mcap"
    n, period = 10, 20_000_000
    write_mcap_ros2_file(f, n=n, period_ns=period)
    col = RawCollector(ros, [("/remapped", String)])
    # Loop twice, skipping the first 0.1 s (5 messages), remapping the topic.
    player = BagPlayer(ros, f, rate=4.0, loop=True, max_loops=2, start_offset_s=0.1,
                       remap={"/mc/chatter": "/remapped"}, publish_clock=False,
                       wait_for_subscribers_s=5.0)
    assert player.unknown_type_topics == {"/mc/thing": "custom_pkg/msg/Thing"}
    player.start()
    assert player.wait(15.0)
    assert col.wait_for({"/remapped": 10}, timeout=5.0)
    stats = player.stats()
    player.destroy()
    texts = [deserialize_message(d, String).data for d in col.data("/remapped")]
    one_pass = [f"mc {k}" for k in range(5, n)]
    assert texts == one_pass + one_pass
    assert stats["passes_completed"] == 2
    assert stats["skipped_messages"] == 2 * 5  # the custom topic, both passes
    assert stats["published"] == {"/remapped": 10} and stats["clock_published"] == 0


def test_player_truncated_bag_counts_error(ros, tmp_path):
    from latentvla_ros.ros.bag_player import BagPlayer

    String, Image, Odometry, _ = _std_types()
    write_test_bag(tmp_path / "bag", "mcap", n=60, image_bytes=40_000, period_ns=1_000_000)
    src = next((tmp_path / "bag").glob("*.mcap"))
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    player = BagPlayer(ros, cut, rate=10.0, publish_clock=False)
    player.start()
    assert player.wait(15.0)
    stats = player.stats()
    player.destroy()
    assert 0 < stats["published_total"] < 180
    assert any("damaged" in e for e in stats["read_errors"])


_LISTENER = """
import sys, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
rclpy.init()
node = rclpy.create_node("acking_listener")
got = []
node.create_subscription(String, "/chatter", lambda m: got.append(m.data), QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE))
print("ready", flush=True)
while len(got) < int(sys.argv[1]):
    rclpy.spin_once(node, timeout_sec=0.1)
print(len(got), flush=True)
"""


def test_player_finishes_only_when_reliable_subscribers_have_every_message(ros, tmp_path):
    """A replay process that exits right after its last publish lost the bag's last tick under
    load (the reader had not received it; a destroyed writer sends nothing more). The player
    now waits until every reliable subscriber acknowledged everything: a listener process that
    is frozen (SIGSTOP) when the bag plays holds the end of the playback until it runs again
    and then has every message, after the player's writers are gone."""
    import signal

    from latentvla_ros.ros.bag_player import BagPlayer

    n = 10
    write_test_bag(tmp_path / "bag", "mcap", n=n, period_ns=10_000_000)
    env = dict(os.environ, ROS_DOMAIN_ID=str(_DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    listener = subprocess.Popen([sys.executable, "-c", _LISTENER, str(n)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready"
        player = BagPlayer(ros, tmp_path / "bag", rate=10.0, publish_clock=False, topics=["/chatter"],
                           wait_for_subscribers_s=20.0, ack_timeout_s=30.0)
        assert _wait(lambda: player._publishers["/chatter"].get_subscription_count() == 1, 20.0)
        listener.send_signal(signal.SIGSTOP)
        try:
            player.start()
            assert not player.wait(2.0), "playback counted as finished before the subscriber had the messages"
            assert player.stats()["published"] == {"/chatter": n}
        finally:
            listener.send_signal(signal.SIGCONT)
        assert player.wait(30.0)
        stats = player.stats()
        player.destroy()  # the writer is gone: what the listener has now is all it gets
        assert stats["unacknowledged"] == []
        out, _ = listener.communicate(timeout=30)
        assert out.split() == [str(n)]
    finally:
        if listener.poll() is None:
            listener.send_signal(signal.SIGCONT)
            listener.kill()
            listener.wait()


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_play_bag_blocking_helper(tmp_path):
    from latentvla_ros.ros.bag_player import play_bag

    write_test_bag(tmp_path / "bag", "mcap", n=5, period_ns=10_000_000)
    import rclpy
    from rclpy.context import Context

    ctx = Context()
    rclpy.init(context=ctx, domain_id=_DOMAIN_ID)
    try:
        stats = play_bag(tmp_path / "bag", rate=5.0, context=ctx, topics=["/chatter"])
    finally:
        rclpy.try_shutdown(context=ctx)
    assert stats["published"] == {"/chatter": 5} and stats["finished"]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_record_then_read_round_trip(ros, tmp_path, storage):
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message, serialize_message

    from latentvla_ros.ros.bag_recorder import BagRecorder

    String, Image, Odometry, _ = _std_types()
    pub_s = ros.create_publisher(String, "/rec/chatter", 10)
    pub_o = ros.create_publisher(Odometry, "/rec/odom",
                                 QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT))
    rec = BagRecorder(ros, tmp_path / "rec", ["/rec/chatter", "rec/odom", "/rec/never"], storage,
                      discovery_timeout_s=0.5, poll_period_s=0.1)
    assert rec.stats()["missing_topics"] == ["/rec/never"]
    # Wait until our subscriptions matched the publishers before publishing.
    end = time.monotonic() + 5.0
    while time.monotonic() < end and (pub_s.get_subscription_count() < 1
                                      or pub_o.get_subscription_count() < 1):
        time.sleep(0.01)
    sent_s, sent_o = [], []
    for k in range(8):
        m = String(data=f"rec {k}")
        o = Odometry()
        o.header.frame_id = "odom"
        o.pose.pose.position.x = float(k)
        pub_s.publish(m)
        pub_o.publish(o)
        sent_s.append(serialize_message(m))
        sent_o.append(serialize_message(o))
        time.sleep(0.01)
    end = time.monotonic() + 5.0
    while time.monotonic() < end and rec.stats()["recorded_total"] < 16:
        time.sleep(0.02)
    rec.close()
    stats = rec.stats()
    assert stats["recorded"] == {"/rec/chatter": 8, "/rec/odom": 8} and stats["closed"]
    pub_s.publish(String(data="after close"))  # must not break anything
    with BagReader(tmp_path / "rec") as r:
        assert r.report.ok and not r.report.recovered
        got = list(r.messages())
        assert r.topics["/rec/odom"].qos and r.topics["/rec/odom"].qos[0]["reliability"] == "best_effort"
        assert r.topics["/rec/chatter"].msgtype == "std_msgs/msg/String"
        odoms = [r.deserialize(m) for m in got if m.topic == "/rec/odom"]
    assert [m.data for m in got if m.topic == "/rec/chatter"] == sent_s
    # Odometry has CDR alignment padding: rclpy's serialize_message leaves those bytes
    # uninitialised while the wire copy has zeros, so compare messages, not bytes.
    assert [deserialize_message(m.data, Odometry) for m in got if m.topic == "/rec/odom"] == \
        [deserialize_message(b, Odometry) for b in sent_o]
    assert [o.pose.pose.position.x for o in odoms] == [float(k) for k in range(8)]
    times = [m.log_time_ns for m in got]
    assert times == sorted(times)


def test_recorder_closes_on_context_shutdown(tmp_path, monkeypatch):
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy
    from rclpy.context import Context

    from latentvla_ros.ros.bag_recorder import BagRecorder

    String = _std_types()[0]
    ctx = Context()
    rclpy.init(context=ctx, domain_id=_DOMAIN_ID)
    node = rclpy.create_node("rec_shutdown", context=ctx)
    node.create_publisher(String, "/shutdown/chatter", 10)
    rec = BagRecorder(node, tmp_path / "rec", ["/shutdown/chatter"], discovery_timeout_s=2.0,
                      poll_period_s=0.0)
    assert rec.stats()["missing_topics"] == []
    rclpy.shutdown(context=ctx)  # what a Ctrl-C handler ends with
    assert rec.closed
    assert (tmp_path / "rec" / "metadata.yaml").exists()
    with BagReader(tmp_path / "rec") as r:
        assert r.report.ok and "/shutdown/chatter" in r.topics
