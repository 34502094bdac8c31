"""trajectory_planner's route input (issue 12, ROUTE_CONTRACT.md): a nav_msgs/Path in the
odometry's frame, rotated into the ego frame of each frame with the odometry pose nearest its
stamp; stale, foreign-frame, empty and NaN routes are counted drops and the frame is planned
without a route (never with a wrong one)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from nav_msgs.msg import Path

from latentvla_ros.ros import conversions as conv
from latentvla_ros.ros.route_input import RouteInput

S = 1_000_000_000
# ego at (100, 50) heading north (yaw pi/2) in "odom"; route points in "odom" and, by hand,
# in the ego frame (x forward, y left): north of the ego is ahead, west is left, east is right
POSE = (100.0, 50.0, math.pi / 2)
ROUTE_ODOM = np.array([[100.0, 60.0], [95.0, 50.0], [105.0, 40.0]])
ROUTE_EGO = np.array([[10.0, 0.0], [0.0, 5.0], [-10.0, -5.0]])


def _path(points, stamp_ns=0, frame_id="odom") -> Path:
    return conv.route_to_path(np.asarray(points, dtype=np.float64), stamp_ns, frame_id)


# ---------------------------------------------------------------- pure functions
def test_path_to_ego_by_hand_with_a_rotated_pose():
    msg = _path(ROUTE_ODOM)
    np.testing.assert_allclose(conv.path_xy(msg), ROUTE_ODOM)
    np.testing.assert_allclose(conv.path_to_ego(msg, POSE), ROUTE_EGO, atol=1e-9)
    np.testing.assert_allclose(conv.path_to_ego(ROUTE_ODOM, POSE), ROUTE_EGO, atol=1e-9)  # the converted array too
    # 30 degrees: the point 10 m along the heading is straight ahead
    yaw = math.radians(30)
    ahead = [[1.0 + 10 * math.cos(yaw), 2.0 + 10 * math.sin(yaw)]]
    np.testing.assert_allclose(conv.path_to_ego(_path(ahead), (1.0, 2.0, yaw)), [[10.0, 0.0]], atol=1e-9)


def test_route_path_round_trip():
    msg = _path(ROUTE_ODOM, 7 * S, "map")
    assert msg.header.frame_id == "map" and conv.stamp_to_ns(msg.header.stamp) == 7 * S
    assert all(p.header.frame_id == "map" for p in msg.poses)
    np.testing.assert_array_equal(conv.path_xy(msg), ROUTE_ODOM)


def test_path_xy_rejects_empty_and_nan_paths():
    with pytest.raises(conv.ConversionError, match="empty"):
        conv.path_xy(Path())
    bad = _path(ROUTE_ODOM)
    bad.poses[1].pose.position.y = float("nan")
    with pytest.raises(conv.ConversionError, match="1 non-finite"):
        conv.path_xy(bad)


def test_route_input_freshness_frames_and_nearest_pose():
    ri = RouteInput()
    assert ri.ego_route(10 * S, 5.0, 0.5) == (None, None) and ri.state == "none"  # no route: no drop
    ri.set_route(ROUTE_ODOM, "odom", 10 * S)
    route, drop = ri.ego_route(10 * S, 5.0, 0.5)
    assert route is None and drop.reason == "route_no_pose"
    ri.add_pose(10 * S - S // 10, *POSE, "odom")
    ri.add_pose(12 * S, 0.0, 0.0, 0.0, "odom")  # odometry ahead of the BEV stage: not this frame's pose
    route, drop = ri.ego_route(10 * S, 5.0, 0.5)
    assert drop is None and ri.state == "ok"
    np.testing.assert_allclose(route, ROUTE_EGO, atol=1e-9)
    # 6 s later: stale, dropped once per route message
    route, drop = ri.ego_route(16 * S, 5.0, 10.0)
    assert route is None and drop.reason == "route_stale" and ri.state == "stale"
    assert ri.ego_route(16 * S + S // 10, 5.0, 10.0) == (None, None)
    assert ri.ego_route(16 * S, 0.0, 10.0)[0] is not None  # timeout 0: a latched route never goes stale
    # a route of another timeline (stamped after the frame) is stale too
    ri.set_route(ROUTE_ODOM, "odom", 30 * S)
    assert ri.ego_route(10 * S, 5.0, 0.5)[1].reason == "route_stale"
    # a route in another frame than the odometry's
    ri.set_route(ROUTE_ODOM, "map", 10 * S)
    route, drop = ri.ego_route(10 * S, 5.0, 0.5)
    assert route is None and drop.reason == "route_frame_mismatch" and ri.state == "frame_mismatch"
    ri.set_route(ROUTE_ODOM, "", 10 * S)  # an empty frame id is taken as the odometry's
    assert ri.ego_route(10 * S, 5.0, 0.5)[0] is not None
    ri.reject("empty path (no poses)")  # a bad route message clears the old route
    assert ri.ego_route(10 * S, 5.0, 0.5) == (None, None) and ri.state.startswith("rejected")


# ---------------------------------------------------------------- the node
@pytest.fixture
def route_rig(ros_context, spin):
    import rclpy
    from conftest import wait_for
    from nav_msgs.msg import Odometry
    from rclpy.parameter import Parameter
    from test_node_models import QOS, UNTRAINED

    from latentvla_ros.msg import BevFeatures, LatentActionPlan, PlannedTrajectory
    from latentvla_ros.ros.nodes.trajectory_planner import TrajectoryPlannerNode
    from latentvla_ros.ros.qos import static_qos

    node = TrajectoryPlannerNode(context=ros_context, parameter_overrides=[
        *UNTRAINED, Parameter("plan_timeout_s", value=0.3), Parameter("input_timeout_s", value=5.0),
        Parameter("allow_untrained", value=True)],
        cli_args=["--ros-args", "-r", "~/input/bev:=/r/bev", "-r", "~/input/plan:=/r/plan", "-r", "~/output/trajectory:=/r/traj",
                  "-r", "~/input/odometry:=/r/odom", "-r", "~/input/route:=/r/route"])
    io = rclpy.create_node("route_io", context=ros_context)
    pubs = {"bev": io.create_publisher(BevFeatures, "/r/bev", QOS), "plan": io.create_publisher(LatentActionPlan, "/r/plan", QOS),
            "odom": io.create_publisher(Odometry, "/r/odom", QOS), "route": io.create_publisher(Path, "/r/route", static_qos())}
    got = []
    io.create_subscription(PlannedTrajectory, "/r/traj", got.append, QOS)
    spin(node, io)
    assert wait_for(lambda: all(p.get_subscription_count() > 0 for p in pubs.values()) and io.count_publishers("/r/traj") > 0)
    return node, pubs, got


def _odometry(stamp_ns, pose, frame_id="odom"):
    from nav_msgs.msg import Odometry

    msg = Odometry(header=conv.make_header(stamp_ns, frame_id), child_frame_id="base_link")
    msg.pose.pose.position.x, msg.pose.pose.position.y = pose[0], pose[1]
    msg.pose.pose.orientation = conv.quaternion_from_yaw(pose[2])
    msg.twist.twist.linear.x = 5.0
    return msg


def _plan_frame(node, pubs, got, offset_ns):
    from conftest import wait_for
    from fixtures.message_samples import STAMP_NS
    from test_node_models import _bev_and_plan

    bev, plan = _bev_and_plan(node, offset_ns)
    pubs["plan"].publish(plan)
    pubs["bev"].publish(bev)
    stamp = STAMP_NS + offset_ns
    assert wait_for(lambda: any(conv.stamp_to_ns(t.header.stamp) == stamp for t in got), 20)
    return [t for t in got if conv.stamp_to_ns(t.header.stamp) == stamp][0]


def _route_planner(node, monkeypatch) -> list:
    """Make the node's planner one with a route input (route_points > 0); returns the routes
    its ``plan`` is called with."""
    monkeypatch.setattr(node.planner.config, "route_points", 12, raising=False)
    original, routes = node.planner.plan, []

    def plan(bev, latent=None, route=None):
        routes.append(route)
        return original(bev, latent)

    monkeypatch.setattr(node.planner, "plan", plan)
    return routes


def test_planner_turns_the_route_into_the_ego_frame_at_plan_time(route_rig, monkeypatch):
    from conftest import wait_for
    from fixtures.message_samples import STAMP_NS

    node, pubs, got = route_rig
    routes = _route_planner(node, monkeypatch)  # a checkpoint with a route input gets the ego-frame route
    pubs["route"].publish(_path(ROUTE_ODOM, STAMP_NS, "odom"))
    pubs["odom"].publish(_odometry(STAMP_NS, POSE))
    assert wait_for(lambda: node.route.num_points == 3 and node.route.pose_count >= 1)
    traj = _plan_frame(node, pubs, got, 0)
    assert not traj.is_fallback
    assert len(routes) == 1 and routes[0] is not None
    np.testing.assert_allclose(routes[0], ROUTE_EGO, atol=1e-9)
    values = node.diagnostic_values()
    assert values["route_state"] == "ok" and values["route_points"] == "3" and values["route_used_by_model"] == "True"
    assert not {k for k in node.stats.snapshot()["dropped"] if k.startswith("route") or k == "bad_route"}


def test_planner_uses_an_odometry_pose_a_few_ms_off_the_frame_without_waiting(route_rig, monkeypatch):
    """A bag's or a vehicle's odometry is not stamped like the cameras (write_sensor_bag: 4 ms apart):
    the pose sensor_sync paired with the frame is the frame's own, so the planner must not wait for an
    exact stamp (it did, 50 ms per frame: make demo went from 7 to 60 ms)."""
    from conftest import wait_for
    from fixtures.message_samples import STAMP_NS

    node, pubs, got = route_rig
    routes = _route_planner(node, monkeypatch)
    pubs["route"].publish(_path(ROUTE_ODOM, STAMP_NS, "odom"))
    pubs["odom"].publish(_odometry(STAMP_NS - 4_000_000, POSE))
    assert wait_for(lambda: node.route.num_points == 3 and node.route.pose_count >= 1)
    traj = _plan_frame(node, pubs, got, 0)
    assert not traj.is_fallback and node.route_pose_late == 0
    np.testing.assert_allclose(routes[0], ROUTE_EGO, atol=1e-9)


def test_planner_drops_stale_foreign_and_bad_routes_and_plans_without_them(route_rig, monkeypatch):
    from conftest import wait_for
    from diagnostic_msgs.msg import DiagnosticStatus
    from fixtures.message_samples import STAMP_NS

    node, pubs, got = route_rig
    routes = _route_planner(node, monkeypatch)

    def dropped(reason):
        return node.stats.snapshot()["dropped"].get(reason, 0)

    pubs["odom"].publish(_odometry(STAMP_NS, POSE))
    assert wait_for(lambda: node.route.pose_count >= 1)
    # stale: stamped 10 s before the frame (route_timeout_s 5): counted once, the frame is still planned
    pubs["route"].publish(_path(ROUTE_ODOM, STAMP_NS - 10 * S, "odom"))
    assert wait_for(lambda: node.route.num_points == 3)
    for k in range(2):
        assert not _plan_frame(node, pubs, got, k * S // 10).is_fallback
    assert dropped("route_stale") == 1 and node.route.last_ego is None and routes[-2:] == [None, None]
    assert node.diagnostic_values()["route_state"] == "stale"
    assert (DiagnosticStatus.WARN, "planning without a route (route_state: stale)") in node.diagnostic_problems()
    assert float(node.diagnostic_values()["route_age_s"]) == pytest.approx(10.1)
    # another frame than the odometry's
    pubs["route"].publish(_path(ROUTE_ODOM, STAMP_NS, "map"))
    assert wait_for(lambda: node.route.frame_id == "map")
    assert not _plan_frame(node, pubs, got, 2 * S // 10).is_fallback
    assert dropped("route_frame_mismatch") == 1 and node.route.last_ego is None
    # NaN pose and empty path: dropped on arrival, the old route no longer holds
    bad = _path(ROUTE_ODOM, STAMP_NS, "odom")
    bad.poses[0].pose.position.x = float("nan")
    pubs["route"].publish(bad)
    assert wait_for(lambda: dropped("bad_route") == 1)
    pubs["route"].publish(Path(header=conv.make_header(STAMP_NS, "odom")))
    assert wait_for(lambda: dropped("bad_route") == 2)
    assert not _plan_frame(node, pubs, got, 3 * S // 10).is_fallback
    assert node.route.last_ego is None and node.diagnostic_values()["route_state"].startswith("rejected: empty")
    # a good route again is used at once
    pubs["route"].publish(_path(ROUTE_ODOM, STAMP_NS, "odom"))
    assert wait_for(lambda: node.route.num_points == 3)
    _plan_frame(node, pubs, got, 4 * S // 10)
    np.testing.assert_allclose(routes[-1], ROUTE_EGO, atol=1e-9)
    assert not [p for p in node.diagnostic_problems() if "route" in p[1]]


def test_sim_bridge_latches_the_route_in_the_odometry_frame_once_a_second(ros_context, spin):
    """The closed loop's bridge publishes the episode's route (reliable + transient local: a
    late subscriber still gets it) with the first step, then once per second of sim time."""
    import rclpy
    from conftest import wait_for

    from latentvla_ros.apps.sim_bridge import SimBridgeNode, probe_observation
    from latentvla_ros.data.highway import CameraConfig
    from latentvla_ros.ros.qos import static_qos
    from latentvla_ros.ros.topology import SENSOR_TOPICS

    bridge = SimBridgeNode(context=ros_context, node_name="route_bridge")
    camera = CameraConfig()
    bridge.publish_observation(probe_observation(camera, 5 * S), camera)  # no route yet: none published
    bridge.set_route(ROUTE_ODOM)
    for k in range(12):  # 1.1 s of steps: the route goes out with the first and after 1 s
        bridge.publish_observation(probe_observation(camera, 6 * S + k * S // 10), camera)
    assert bridge.routes_published == 2
    late = rclpy.create_node("late_route_listener", context=ros_context)  # joins after the last publish
    got = []
    late.create_subscription(Path, SENSOR_TOPICS["route"], got.append, static_qos())
    spin(bridge, late)
    assert wait_for(lambda: len(got) == 1, 10)
    assert got[0].header.frame_id == "map" == bridge.map_frame  # the odometry's frame
    assert conv.stamp_to_ns(got[0].header.stamp) == 7 * S
    np.testing.assert_allclose(conv.path_xy(got[0]), ROUTE_ODOM)


def test_bag_replay_publishes_route_topics_latched():
    """A route recorded from a volatile publisher still reaches the planner's transient-local
    subscription on replay; sensor topics stay volatile; the player waits for the route's subscriber."""
    from rclpy.qos import DurabilityPolicy

    from latentvla_ros.bags.replay import BagTopic
    from latentvla_ros.ros.bag_player import graph_input_topics, publisher_qos_for
    from latentvla_ros.ros.topology import CARLA_SENSOR_TOPICS, SENSOR_TOPICS

    volatile = [{"reliability": "reliable", "durability": "volatile", "depth": 1, "history": "keep_last"}]
    for topic in (SENSOR_TOPICS["route"], CARLA_SENSOR_TOPICS["route"]):
        qos = publisher_qos_for(BagTopic(topic, "nav_msgs/msg/Path", qos=volatile))
        assert qos.durability == DurabilityPolicy.TRANSIENT_LOCAL, topic
    odom = publisher_qos_for(BagTopic(SENSOR_TOPICS["odometry"], "nav_msgs/msg/Odometry", qos=volatile))
    assert odom.durability == DurabilityPolicy.VOLATILE
    assert graph_input_topics([SENSOR_TOPICS["route"], "/debug/expert_path"]) == [SENSOR_TOPICS["route"]]
