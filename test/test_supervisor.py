"""`latentvla run --mode processes` supervises its nodes like launch's respawn: a dead node
is logged and restarted with back-off, SIGTERM/SIGINT stop every child, and the exit
status says whether a node died (ros/supervisor.py)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import wait_for

# a stand-in node: up until SIGINT/SIGTERM (exits 0 on SIGINT like run_node); 'stubborn' ignores SIGINT;
# 'crash' dies at once
_CHILD = textwrap.dedent("""
    import signal, sys, time
    kind = sys.argv[1]
    if kind == "crash":
        sys.exit(3)
    signal.signal(signal.SIGINT, signal.SIG_IGN if kind == "stubborn" else (lambda *a: sys.exit(0)))
    print("child up", flush=True)
    while True:
        time.sleep(0.1)
""")
_SUPERVISOR = textwrap.dedent("""
    import sys
    from latentvla_ros.ros.supervisor import ProcessSupervisor
    kinds = sys.argv[1].split(",")
    children = [(f"node{i}_{k}", [sys.executable, "-c", CHILD, k], None) for i, k in enumerate(kinds)]
    sys.exit(ProcessSupervisor(children, backoff_s=0.2, stop_timeout_s=1.0).run())
""").replace("CHILD", repr(_CHILD))


class Launcher:
    """A supervisor (the stand-in script or `latentvla run`) with its log read in the background."""

    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ))
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stdout.readline, "")), daemon=True).start()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def pids(self, name: str) -> list[int]:
        return [int(p) for p in re.findall(rf"\] {name} (?:started|restarted \(start \d+\)), pid (\d+)", self.text)]

    def wait_log(self, pattern: str, timeout_s: float = 20.0) -> re.Match:
        assert wait_for(lambda: re.search(pattern, self.text), timeout_s=timeout_s, period_s=0.05), self.text[-3000:]
        return re.search(pattern, self.text)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def launcher():
    started: list[Launcher] = []

    def make(cmd):
        started.append(Launcher(cmd))
        return started[-1]

    yield make
    for item in started:
        item.close()


def _stand_in(launcher, kinds: str) -> Launcher:
    return launcher([sys.executable, "-c", _SUPERVISOR, kinds])


def test_a_killed_node_is_logged_and_restarted_and_the_exit_status_says_so(launcher):
    sup = _stand_in(launcher, "ok,ok")
    assert wait_for(lambda: sup.text.count("child up") == 2, timeout_s=20)
    first = sup.pids("node1_ok")[0]
    os.kill(first, signal.SIGKILL)
    sup.wait_log(rf"node node1_ok \(pid {first}\) died: killed by SIGKILL .*restarting it in 0\.2 s")
    sup.wait_log(r"node1_ok restarted \(start 2\), pid \d+")
    second = sup.pids("node1_ok")[-1]
    assert second != first and _alive(second)
    assert wait_for(lambda: sup.text.count("child up") == 3, timeout_s=20)  # up again (SIGINT handler set)
    others = sup.pids("node0_ok")
    assert len(others) == 1 and _alive(others[0])  # the rest of the graph kept running
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(timeout=20) == 1, sup.text  # a node died during the run: not 0
    assert "node1_ok: stopped, started 2 time(s); died 1 time(s): killed by SIGKILL" in sup.text, sup.text
    assert wait_for(lambda: not any(_alive(p) for p in [second, *others]), timeout_s=5), "a node outlived SIGTERM"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_clean_stop_ends_every_node_and_exits_0(launcher, sig):
    sup = _stand_in(launcher, "ok,ok,ok")
    for i in range(3):
        sup.wait_log(rf"node{i}_ok started, pid \d+")
    assert wait_for(lambda: sup.text.count("child up") == 3, timeout_s=20)
    pids = [sup.pids(f"node{i}_ok")[0] for i in range(3)]
    sup.proc.send_signal(sig)
    assert sup.proc.wait(timeout=20) == 0, sup.text
    assert not any(_alive(p) for p in pids)
    assert "restarted" not in sup.text


def test_a_node_that_ignores_sigint_is_terminated_and_reported(launcher):
    sup = _stand_in(launcher, "ok,stubborn")
    assert wait_for(lambda: sup.text.count("child up") == 2, timeout_s=20)
    stubborn = sup.pids("node1_stubborn")[0]
    sup.proc.send_signal(signal.SIGINT)
    assert sup.proc.wait(timeout=20) == 1, sup.text
    assert "node1_stubborn: did not stop on SIGINT: sent SIGTERM" in sup.text
    assert not _alive(stubborn)


def test_a_crashing_node_is_restarted_with_growing_back_off(launcher):
    sup = _stand_in(launcher, "ok,crash")
    sup.wait_log(r"failure 3 in a row", timeout_s=30)
    delays = [float(d) for d in re.findall(r"node1_crash \(pid \d+\) died: exit code 3 .*restarting it in ([\d.]+) s",
                                             sup.text)]
    assert delays[:3] == [0.2, 0.4, 0.8], sup.text
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(timeout=20) == 1


def test_nodes_do_not_outlive_a_killed_supervisor(launcher):
    sup = _stand_in(launcher, "ok,ok")
    assert wait_for(lambda: sup.text.count("child up") == 2, timeout_s=20)
    pids = sup.pids("node0_ok") + sup.pids("node1_ok")
    sup.proc.kill()  # SIGKILL: no handler runs; the kernel sends the children SIGTERM (PR_SET_PDEATHSIG)
    sup.proc.wait()
    assert wait_for(lambda: not any(_alive(p) for p in pids), timeout_s=5), "orphaned node processes"


class SensorFeed:
    """Publishes the default profile's camera, LiDAR and odometry at 10 Hz while ``feed`` runs
    and keeps what the graph publishes on ``topic``."""

    def __init__(self, context, spin, msg_type, topic: str):
        import rclpy
        from nav_msgs.msg import Odometry
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, PointCloud2

        from latentvla_ros.ros.topology import SENSOR_TOPICS

        self.node = rclpy.create_node("supervisor_probe", context=context)
        self.received: list = []
        self.node.create_subscription(msg_type, topic, self.received.append, QoSProfile(depth=100))
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = [(self.node.create_publisher(Image, SENSOR_TOPICS["camera_image"].format(name="front"), qos), "image"),
                     (self.node.create_publisher(PointCloud2, SENSOR_TOPICS["lidar"], qos), "lidar"),
                     (self.node.create_publisher(Odometry, SENSOR_TOPICS["odometry"], qos), "odom")]
        self.k = 0
        spin(self.node)

    def feed(self, seconds: float) -> None:
        from ros_helpers import camera_image, lidar_cloud, odometry, stamp

        build = {"image": camera_image, "lidar": lidar_cloud, "odom": odometry}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t = stamp(self.k)
            for pub, kind in self.pubs:
                pub.publish(build[kind](t))
            self.k += 1
            time.sleep(0.1)

    def feed_until(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not predicate() and time.monotonic() < deadline:
            self.feed(0.5)
        return predicate()


def test_latentvla_run_processes_restarts_a_killed_node_and_frames_resume(launcher, ros_context, spin):
    """The real command and a real node: sensor_sync is killed with SIGKILL, restarted, and
    synchronized frames come again; SIGTERM stops it and the exit status is 1."""
    from latentvla_ros.msg import SensorFrame
    from latentvla_ros.ros.topology import SENSOR_FRAME

    sup = launcher([sys.executable, "-m", "latentvla_ros.cli", "run", "--mode", "processes", "--nodes", "sensor_sync"])
    probe = SensorFeed(ros_context, spin, SensorFrame, "/" + SENSOR_FRAME)
    sup.wait_log(r"sensor_sync started, pid \d+", timeout_s=30)
    first = sup.pids("sensor_sync")[0]
    assert probe.feed_until(lambda: probe.received, 60), sup.text[-3000:]
    os.kill(first, signal.SIGKILL)
    sup.wait_log(rf"node sensor_sync \(pid {first}\) died: killed by SIGKILL")
    sup.wait_log(r"sensor_sync restarted \(start 2\), pid \d+")
    second = sup.pids("sensor_sync")[-1]
    before = len(probe.received)
    assert probe.feed_until(lambda: len(probe.received) > before + 3, 60), f"no frames after the restart\n{sup.text[-3000:]}"
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(timeout=30) == 1, sup.text[-3000:]
    assert not _alive(second) and not _alive(first)


@pytest.mark.slow
def test_whole_graph_as_processes_falls_back_while_a_node_restarts_and_recovers(launcher, ros_context, spin):
    """bev_features is killed: the planner falls back ('no BEV features'), the supervisor
    restarts the node, model trajectories resume; SIGTERM leaves no node process behind."""
    from latentvla_ros.msg import PlannedTrajectory
    from latentvla_ros.ros.topology import TRAJECTORY

    sup = launcher([sys.executable, "-m", "latentvla_ros.cli", "run", "--mode", "processes"])
    probe = SensorFeed(ros_context, spin, PlannedTrajectory, "/" + TRAJECTORY)
    model = lambda: [t for t in probe.received if not t.is_fallback]
    assert probe.feed_until(lambda: len(model()) >= 5, 180), sup.text[-3000:]
    names = ("sensor_sync", "bev_features", "latent_reasoner", "trajectory_planner")
    pids = {n: sup.pids(n)[0] for n in names}
    os.kill(pids["bev_features"], signal.SIGKILL)
    sup.wait_log(rf"node bev_features \(pid {pids['bev_features']}\) died: killed by SIGKILL")
    killed_at = len(probe.received)
    fell_back = lambda: any(t.is_fallback and "no BEV" in t.fallback_reason for t in probe.received[killed_at:])
    assert probe.feed_until(fell_back, 30), sup.text[-3000:]
    sup.wait_log(r"bev_features restarted \(start 2\), pid \d+")
    recovered_from = len(probe.received)
    assert probe.feed_until(lambda: any(not t.is_fallback for t in probe.received[recovered_from:]), 180), sup.text[-3000:]
    all_pids = [*pids.values(), sup.pids("bev_features")[-1]]
    sup.proc.send_signal(signal.SIGTERM)
    assert sup.proc.wait(timeout=60) == 1, sup.text[-3000:]
    assert not any(_alive(p) for p in all_pids)
