"""trajectory_planner's LiDAR obstacle guard (issue 12): the node checks the model's trajectory
against the LiDAR of the SensorFrame with the same stamp, as the direct path's GuardedAgent does
(core/obstacle_guard.py); a missing SensorFrame is a counted, unguarded plan (WARN), the guard
can be switched off, and a bad guard parameter is refused before the node starts."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.parameter import Parameter

from latentvla_ros.core.obstacle_guard import GuardConfig, ObstacleGuard
from latentvla_ros.core.types import Trajectory
from latentvla_ros.ros import conversions as conv

S = 1_000_000_000
STEP_NS = S // 10
SPEED = 10.0
# the model's plan: straight ahead at 10 m/s, 8 poses at 0.5 s
PLAN = np.stack([SPEED * 0.5 * np.arange(1, 9), np.zeros(8), np.zeros(8)], axis=1)


def _obstacle_cloud(x: float) -> np.ndarray:
    """A 2 m x 2 m box of points 1 m above the road at ``x`` ahead, and ground points (z = 0)."""
    gx, gy = np.meshgrid(np.linspace(x - 1, x + 1, 9), np.linspace(-1, 1, 9))
    box = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size), np.ones(gx.size)], axis=1)
    ground = np.stack([np.linspace(-20, 20, 50), np.zeros(50), np.zeros(50), np.ones(50)], axis=1)
    return np.vstack([box, ground]).astype(np.float32)


def _frame_msg(stamp_ns: int, obstacle_x: float):
    from fixtures.message_samples import samples

    msg = samples()["SensorFrame"]
    msg.header = conv.make_header(stamp_ns, "base_link")
    msg.lidar = conv.xyzi_to_pointcloud2(_obstacle_cloud(obstacle_x), stamp_ns, "base_link")
    msg.odometry.twist.twist.linear.x = SPEED
    msg.ego_acceleration.x = 0.0
    return msg


def _rig(ros_context, spin, monkeypatch, *extra, guard_input: str = "frame"):
    import rclpy
    from conftest import wait_for
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import PointCloud2
    from test_node_models import QOS, UNTRAINED

    from latentvla_ros.msg import BevFeatures, LatentActionPlan, PlannedTrajectory, SensorFrame
    from latentvla_ros.ros.nodes.trajectory_planner import TrajectoryPlannerNode

    node = TrajectoryPlannerNode(context=ros_context, parameter_overrides=[
        *UNTRAINED, Parameter("plan_timeout_s", value=2.0), Parameter("input_timeout_s", value=10.0),
        Parameter("allow_untrained", value=True), Parameter("guard_input", value=guard_input), *extra],
        cli_args=["--ros-args", "-r", "~/input/bev:=/g/bev", "-r", "~/input/plan:=/g/plan", "-r", "~/input/frame:=/g/frame",
                  "-r", "~/input/lidar:=/g/lidar", "-r", "~/input/odometry:=/g/odom", "-r", "~/output/trajectory:=/g/traj"])
    # the model: a fixed plan straight ahead (the guard, not the weights, is under test)
    monkeypatch.setattr(node.planner, "plan", lambda bev, latent=None, route=None: Trajectory(
        PLAN.copy(), stamp_ns=bev.stamp_ns, model_id="planner:fixed"))
    io = rclpy.create_node("guard_io", context=ros_context)
    pubs = {"bev": io.create_publisher(BevFeatures, "/g/bev", QOS), "plan": io.create_publisher(LatentActionPlan, "/g/plan", QOS),
            "frame": io.create_publisher(SensorFrame, "/g/frame", QOS),
            "lidar": io.create_publisher(PointCloud2, "/g/lidar", QOS), "odom": io.create_publisher(Odometry, "/g/odom", QOS)}
    got = []
    io.create_subscription(PlannedTrajectory, "/g/traj", got.append, QOS)
    spin(node, io)
    assert wait_for(lambda: pubs["bev"].get_subscription_count() > 0 and pubs["plan"].get_subscription_count() > 0
                    and io.count_publishers("/g/traj") > 0)
    return node, pubs, got


def _plan(node, pubs, got, stamp_ns: int) -> np.ndarray:
    """Publish the BEV features and latent plan of ``stamp_ns``; the published poses (8, 3)."""
    from conftest import wait_for
    from fixtures.message_samples import STAMP_NS
    from test_node_models import _bev_and_plan

    bev, plan = _bev_and_plan(node, stamp_ns - STAMP_NS)
    pubs["plan"].publish(plan)
    pubs["bev"].publish(bev)
    assert wait_for(lambda: any(conv.stamp_to_ns(t.header.stamp) == stamp_ns for t in got), 20)
    msg = [t for t in got if conv.stamp_to_ns(t.header.stamp) == stamp_ns][0]
    assert not msg.is_fallback
    return np.array([[p.pose.position.x, p.pose.position.y, 2 * np.arctan2(p.pose.orientation.z, p.pose.orientation.w)]
                     for p in msg.points])


def _publish_guard_input(node, pubs, msg) -> None:
    """What sensor_sync sends the planner for the frame ``msg``: the SensorFrame, or (``guard_input`` lidar)
    its cloud stamped with the frame's stamp (sensor_sync's ``~/output/lidar``) and, on the odometry topic,
    the odometry (stamped like the cameras, as a vehicle's or the simulator's usually is)."""
    if node.guard_input == "frame":
        pubs["frame"].publish(msg)
        return
    msg.odometry.header.stamp = msg.header.stamp
    pubs["odom"].publish(msg.odometry)
    pubs["lidar"].publish(conv.frame_lidar(msg.lidar, conv.stamp_to_ns(msg.header.stamp)))


def _drive_towards_obstacle(node, pubs, got, frames: int = 6):
    """Frames 0.1 s apart, a parked obstacle ahead coming closer; (published, GuardedAgent's) poses per frame."""
    from conftest import wait_for
    from fixtures.message_samples import STAMP_NS

    direct = ObstacleGuard(GuardConfig())  # what GuardedAgent runs on the same frames
    out = []
    for k in range(frames):
        stamp = STAMP_NS + k * STEP_NS
        msg = _frame_msg(stamp, obstacle_x=14.0 - SPEED * 0.1 * k)
        _publish_guard_input(node, pubs, msg)
        if node.guard.enabled:
            assert wait_for(lambda: stamp in node.guard._frames)
        else:
            time.sleep(0.05)
        core = conv.sensor_frame_to_core(msg)
        expected, _ = direct.filter(core.lidar_points, stamp, core.ego, Trajectory(PLAN.copy(), stamp_ns=stamp))
        out.append((_plan(node, pubs, got, stamp), np.asarray(expected.poses)))
    return out, direct


def test_planner_node_guards_the_plan_as_the_guarded_agent_does(ros_context, spin, monkeypatch):
    node, pubs, got = _rig(ros_context, spin, monkeypatch)
    pairs, direct = _drive_towards_obstacle(node, pubs, got)
    assert direct.interventions == len(pairs)  # the obstacle is in the way of every plan
    for published, expected in pairs:
        np.testing.assert_allclose(published, expected, atol=1e-6)
        assert published[-1, 0] < PLAN[-1, 0] - 10.0  # retimed: stops well short of the model's 40 m
    values = node.diagnostic_values()
    assert values["guard_enabled"] == "True" and values["guard_interventions"] == str(len(pairs))
    assert values["guard_no_lidar"] == "0" and values["guard_last_action"] in ("slow", "stop")
    assert int(values["guard_tracks"]) >= 1 and values["guard_tracker_resets"] == "0"
    assert values["guard_releases"] == str(node.guard.guard.releases) == "0"  # a 40 m plan never creeps
    assert values["guard_limited"] == str(node.guard.guard.limited) == "0"  # a straight plan asks for no turn
    assert values["lidar_frames"] == "base_link: identity"
    assert not [p for p in node.diagnostic_problems() if "obstacle guard" in p[1]]


def test_planner_guards_from_the_frame_cloud_and_its_own_odometry(ros_context, spin, monkeypatch):
    """guard_input lidar (a planner in a process of its own): the SensorFrame never comes, only the
    frame's PointCloud2 (stamped with the frame's stamp) and the odometry; the plans are the same as
    the GuardedAgent's on the whole frames."""
    node, pubs, got = _rig(ros_context, spin, monkeypatch, guard_input="lidar")
    assert pubs["frame"].get_subscription_count() == 0 and pubs["lidar"].get_subscription_count() == 1
    pairs, direct = _drive_towards_obstacle(node, pubs, got)
    assert direct.interventions == len(pairs)
    for published, expected in pairs:
        np.testing.assert_allclose(published, expected, atol=1e-5)
        assert published[-1, 0] < PLAN[-1, 0] - 10.0
    values = node.diagnostic_values()
    assert values["guard_input"] == "lidar" and values["guard_interventions"] == str(len(pairs))
    assert values["guard_no_lidar"] == values["guard_no_odometry"] == "0"


def test_frame_cloud_without_odometry_near_its_stamp_is_a_counted_unguarded_plan(ros_context, spin, monkeypatch):
    from conftest import wait_for
    from diagnostic_msgs.msg import DiagnosticStatus
    from fixtures.message_samples import STAMP_NS

    node, pubs, got = _rig(ros_context, spin, monkeypatch, guard_input="lidar")
    msg = _frame_msg(STAMP_NS, obstacle_x=12.0)
    msg.odometry.header.stamp = conv.make_header(STAMP_NS - S, "odom").stamp  # 1 s old: not this frame's
    pubs["odom"].publish(msg.odometry)
    pubs["lidar"].publish(conv.frame_lidar(msg.lidar, STAMP_NS))
    assert wait_for(lambda: STAMP_NS in node.guard._frames and node.guard._odometry)
    np.testing.assert_allclose(_plan(node, pubs, got, STAMP_NS), PLAN, atol=1e-6)  # unguarded
    assert node.guard.no_odometry == 1 and node.guard.no_lidar == 0
    assert node.stats.snapshot()["dropped"].get("guard_no_odometry") == 1
    assert any(level == DiagnosticStatus.WARN and "WITHOUT the obstacle guard" in text
               for level, text in node.diagnostic_problems())
    # no cloud at all for the next frame: guard_no_lidar
    _plan(node, pubs, got, STAMP_NS + STEP_NS)
    assert node.guard.no_lidar == 1 and node.stats.snapshot()["dropped"].get("guard_no_lidar") == 1


def test_plan_matched_before_its_cloud_on_the_planning_thread_is_held_for_it(ros_context, spin, monkeypatch):
    """One node per process (guard_input lidar): the frame's cloud, its odometry and its BEV features reach
    the planner on its one executor thread, and under load the BEV features and plan can come first (latentvla
    bench, a processes run: a cloud that came 0.85 ms after its plan, which had gone out unguarded). The plan
    is held until its cloud is here, then guarded; a cloud that never comes costs GUARD_FRAME_WAIT_S at most
    (counted guard_no_lidar), and the frames behind it keep their stamp order."""
    from conftest import wait_for
    from fixtures.message_samples import STAMP_NS
    from test_node_models import _bev_and_plan

    from latentvla_ros.ros.nodes import trajectory_planner

    wait_s = 1.0  # GUARD_FRAME_WAIT_S (50 ms), generous here: this test's own publishes run on a loaded machine
    monkeypatch.setattr(trajectory_planner, "GUARD_FRAME_WAIT_S", wait_s)
    node, pubs, got = _rig(ros_context, spin, monkeypatch, guard_input="lidar")
    _drive_towards_obstacle(node, pubs, got, frames=1)  # frame 0 as usual, its cloud first

    def out(stamp):
        return [i for i, t in enumerate(got) if conv.stamp_to_ns(t.header.stamp) == stamp]

    def poses(stamp):
        msg = got[out(stamp)[0]]
        assert not msg.is_fallback
        return np.array([[p.pose.position.x, p.pose.position.y] for p in msg.points])

    def bev_first(stamp):
        """The BEV features and latent plan of ``stamp``, matched on the planner's thread before any cloud."""
        bev, plan = _bev_and_plan(node, stamp - STAMP_NS)
        pubs["plan"].publish(plan)
        pubs["bev"].publish(bev)
        assert wait_for(lambda: len(getattr(node, "_held", ())) == 1 or out(stamp))

    stamp = STAMP_NS + STEP_NS
    bev_first(stamp)
    time.sleep(0.1)
    assert not out(stamp), "published before its cloud came (unguarded)"
    _publish_guard_input(node, pubs, _frame_msg(stamp, obstacle_x=12.0))
    assert wait_for(lambda: out(stamp))
    assert poses(stamp)[-1, 0] < PLAN[-1, 0] - 10.0  # guarded: stops short of the obstacle
    assert node.guard.no_lidar == 0 and node._held.held == 1
    values = node.diagnostic_values()
    assert values["guard_held"] == "1" and values["guard_holding"] == "0"
    assert 50.0 <= float(values["guard_held_max_ms"]) < wait_s * 1e3

    # no cloud ever for the next frame; the one after it has its cloud: out in stamp order, after wait_s at most
    lost, after = stamp + STEP_NS, stamp + 2 * STEP_NS
    started = time.monotonic()
    bev_first(lost)
    _publish_guard_input(node, pubs, _frame_msg(after, obstacle_x=12.0))
    assert wait_for(lambda: after in node.guard._frames)
    bev, plan = _bev_and_plan(node, after - STAMP_NS)
    pubs["plan"].publish(plan)
    pubs["bev"].publish(bev)
    assert wait_for(lambda: out(lost) and out(after), 20)
    assert time.monotonic() - started >= 0.9 * wait_s  # held for its cloud that long ...
    assert out(lost)[0] < out(after)[0]  # ... and the next frame behind it
    np.testing.assert_allclose(poses(lost), PLAN[:, :2], atol=1e-6)  # unguarded, counted, warned
    assert poses(after)[-1, 0] < PLAN[-1, 0] - 10.0
    assert node.guard.no_lidar == 1 and node.stats.snapshot()["dropped"].get("guard_no_lidar") == 1
    assert node._held.held == 2 and not node._held
    assert float(node.diagnostic_values()["guard_held_max_ms"]) >= 0.9 * wait_s * 1e3


def test_plan_without_its_sensor_frame_goes_out_unguarded_counted_and_warned(ros_context, spin, monkeypatch):
    from diagnostic_msgs.msg import DiagnosticStatus
    from fixtures.message_samples import STAMP_NS

    node, pubs, got = _rig(ros_context, spin, monkeypatch)
    started = time.monotonic()
    published = _plan(node, pubs, got, STAMP_NS)  # no SensorFrame ever sent
    assert time.monotonic() - started < 5.0  # a bounded wait (GUARD_FRAME_WAIT_S), never blocked
    np.testing.assert_allclose(published, PLAN, atol=1e-6)  # the model's plan, unchanged
    assert node.guard.no_lidar == 1 and node.diagnostic_values()["guard_no_lidar"] == "1"
    assert node.stats.snapshot()["dropped"].get("guard_no_lidar") == 1
    assert (DiagnosticStatus.WARN, ) == tuple({level for level, text in node.diagnostic_problems()
                                                if "WITHOUT the obstacle guard" in text})
    # the frame's LiDAR comes for the next frame: guarded again, the warning clears
    stamp = STAMP_NS + STEP_NS
    pubs["frame"].publish(_frame_msg(stamp, obstacle_x=12.0))
    from conftest import wait_for

    assert wait_for(lambda: stamp in node.guard._frames)
    assert _plan(node, pubs, got, stamp)[-1, 0] < PLAN[-1, 0] - 10.0
    assert node.guard.no_lidar == 1 and not node.guard.last_unguarded
    assert not [p for p in node.diagnostic_problems() if "obstacle guard" in p[1]]


def test_guard_disabled_publishes_the_models_trajectory(ros_context, spin, monkeypatch):
    node, pubs, got = _rig(ros_context, spin, monkeypatch, Parameter("obstacle_guard.enabled", value=False))
    assert pubs["frame"].get_subscription_count() == 0  # no SensorFrame subscription when off
    pairs, direct = _drive_towards_obstacle(node, pubs, got, frames=3)
    assert direct.interventions == 3  # the guard would have stopped these plans
    for published, _ in pairs:
        np.testing.assert_allclose(published, PLAN, atol=1e-6)
    values = node.diagnostic_values()
    assert values["guard_enabled"] == "False" and "guard_no_lidar" not in values and node.guard.no_lidar == 0


@pytest.mark.parametrize("overrides,expected", [
    ({"obstacle_guard.max_decel_mps2": 1.0}, "obstacle_guard.max_decel_mps2: must be >= min_decel_mps2"),
    ({"obstacle_guard.min_height_m": 5.0}, "obstacle_guard.min_height_m: must be below max_height_m"),
    ({"obstacle_guard.horizon_s": 0.0}, "obstacle_guard.horizon_s"),
    ({"obstacle_guard.stop_margin_m": -1.0}, "obstacle_guard.stop_margin_m"),
    ({"obstacle_guard.range_m": float("inf")}, "obstacle_guard.range_m"),
])
def test_bad_guard_parameter_is_refused_with_a_clear_error(overrides, expected):
    from latentvla_ros.ros.contracts.parameters import ParameterError, validate_node_config

    with pytest.raises(ParameterError, match=f"trajectory_planner: invalid parameters: {expected}"):
        validate_node_config("trajectory_planner", [], overrides)


def test_bad_guard_parameter_stops_the_node_before_the_model_loads(ros_context, monkeypatch):
    from latentvla_ros.ros.contracts.parameters import ParameterError
    from latentvla_ros.ros.nodes import trajectory_planner

    monkeypatch.setattr(trajectory_planner, "load_model_runtime", lambda *a: pytest.fail("the model loaded first"))
    with pytest.raises(ParameterError, match="obstacle_guard.max_decel_mps2"):
        trajectory_planner.TrajectoryPlannerNode(context=ros_context, parameter_overrides=[
            Parameter("checkpoint", value=""), Parameter("obstacle_guard.max_decel_mps2", value=1.0)])


def test_guard_parameters_match_the_core_config_defaults():
    """One parameter per GuardConfig field, defaults = GuardConfig's (schema and param file)."""
    import dataclasses

    from latentvla_ros.ros.contracts.parameters import validate_param_file

    root = Path(__file__).resolve().parents[1]
    params = validate_param_file(root / "config" / "trajectory_planner.param.yaml", "trajectory_planner").obstacle_guard
    assert params.as_dict() == dataclasses.asdict(GuardConfig())


def test_ros_twin_of_an_unguarded_method_runs_the_planner_without_the_guard():
    """evaluate.py keeps the method's "guard" for its ROS twin; GraphVariant maps it to the node
    parameter and to the SensorFrame readers the graph waits for."""
    from latentvla_ros.apps.evaluate import EvalPlan, MethodSpec, ros_closed_loop_method
    from latentvla_ros.apps.sim_bridge import GraphVariant
    from latentvla_ros.evaluation.drivers import ClosedLoopMethod
    from latentvla_ros.ros.topology import SENSOR_FRAME

    method = ClosedLoopMethod(name="s", kind="agent", graph=dict(name="s", fusion="student", ablation="", guard=False))
    twin = ros_closed_loop_method(MethodSpec(name="s", kind="agent"), method, EvalPlan())
    assert twin.graph["guard"] is False and "ablation" not in twin.graph
    off, on = GraphVariant(**twin.graph), GraphVariant(fusion="student")
    assert off.options().overrides["trajectory_planner"]["obstacle_guard.enabled"] is False
    assert on.options().overrides["trajectory_planner"]["obstacle_guard.enabled"] is True
    # bev_features + latent_reasoner (+ the planner's guard)
    assert (off.internal_links()["/" + SENSOR_FRAME], on.internal_links()["/" + SENSOR_FRAME]) == (2, 3)


def test_planner_moves_a_mounted_lidar_into_the_ego_frame_as_bev_features_does(ros_context, spin, monkeypatch):
    """The guard's points come through the helper bev_features uses (ros/lidar_frames.py): a cloud
    in the mount frame is checked in the ego frame, with the planner's own lidar_extrinsics."""
    from conftest import wait_for
    from fixtures.message_samples import STAMP_NS
    from test_lidar_extrinsics import MOUNT, _in_mount_frame

    node, pubs, got = _rig(ros_context, spin, monkeypatch, Parameter("lidar_extrinsics.frame_id", value="lidar_top"),
                           *(Parameter(f"lidar_extrinsics.{k}", value=float(getattr(MOUNT, k)))
                             for k in ("x", "y", "z", "roll", "pitch", "yaw")))
    msg = _frame_msg(STAMP_NS, obstacle_x=12.0)
    ego = conv.sensor_frame_to_core(msg).lidar_points
    msg.lidar = conv.xyzi_to_pointcloud2(_in_mount_frame(ego, MOUNT), STAMP_NS, "lidar_top")
    pubs["frame"].publish(msg)
    assert wait_for(lambda: STAMP_NS in node.guard._frames)
    np.testing.assert_allclose(node.guard._frames[STAMP_NS][0][:, :3], ego[:, :3], atol=1e-4)
    assert node.diagnostic_values()["lidar_frames"] == "lidar_top: parameter"
    # a cloud in a frame nobody knows: dropped and counted, as bev_features does
    msg.lidar.header.frame_id = "velodyne"
    msg.header = conv.make_header(STAMP_NS + STEP_NS, "base_link")
    pubs["frame"].publish(msg)
    assert wait_for(lambda: node.stats.snapshot()["dropped"].get("lidar_frame_unknown", 0) == 1)
    assert STAMP_NS + STEP_NS not in node.guard._frames
