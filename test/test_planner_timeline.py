"""trajectory_planner on one timeline: nothing before the first input, trajectories in stamp
order, a backwards time jump that keeps the plans of the new timeline, and one warning when
header stamps and the node clock disagree (a bag or simulator without use_sim_time)."""
from __future__ import annotations

import time

import rclpy
from conftest import wait_for
from fixtures.message_samples import STAMP_NS
from rclpy.parameter import Parameter
from test_node_models import QOS, UNTRAINED, _bev_and_plan, planner_rig  # noqa: F401 - the fixture

from latentvla_ros.msg import PlannedTrajectory
from latentvla_ros.ros.conversions import stamp_to_ns
from latentvla_ros.ros.nodes.trajectory_planner import TrajectoryPlannerNode

S = 1_000_000_000


def _send(node, bev_pub, plan_pub, offset_ns, plan_first=True, with_plan=True):
    bev, plan = _bev_and_plan(node, offset_ns)
    if with_plan and plan_first:
        plan_pub.publish(plan)
        time.sleep(0.05)  # the reasoner is ahead of the BEV stage
    bev_pub.publish(bev)
    if with_plan and not plan_first:
        plan_pub.publish(plan)
    return STAMP_NS + offset_ns


def _stamps(got):
    return [stamp_to_ns(t.header.stamp) for t in got]


def test_backwards_time_jump_keeps_plans_of_the_new_timeline(planner_rig):
    node, bev_pub, plan_pub, got = planner_rig
    old = [_send(node, bev_pub, plan_pub, 20 * S + k * S // 10) for k in range(3)]
    assert wait_for(lambda: set(old) <= set(_stamps(got)), 20)
    # the bag loops: stamps jump 20 s back; each plan arrives before its BEV frame
    new = [_send(node, bev_pub, plan_pub, k * S // 10) for k in range(4)]
    assert wait_for(lambda: set(new) <= set(_stamps(got)), 20)
    time.sleep(0.5)  # (a spurious fallback would come plan_timeout_s = 0.3 s late)
    by_stamp = {stamp_to_ns(t.header.stamp): t for t in got}
    assert [by_stamp[s].fallback_reason for s in new if by_stamp[s].is_fallback] == [], \
        "a plan of the new timeline was discarded at the jump"
    assert _stamps(got).count(new[0]) == 1
    stamps = [s for s in _stamps(got) if s in set(old) | set(new)]
    assert stamps == old + new, "not published in stamp order within each timeline"
    assert node.stats.snapshot()["dropped"].get("plan_unmatched", 0) == 0


def test_a_frame_flushed_by_the_time_jump_is_counted_as_such_not_as_a_plan_timeout(planner_rig):
    """The bag loops while the old timeline's last frame still waits for its plan (a reasoner lagging under
    load): that frame gets its fallback at the jump, counted ``time_jump`` (it never waited out
    plan_timeout_s), and the new timeline is planned by the model."""
    node, bev_pub, plan_pub, got = planner_rig
    old = [_send(node, bev_pub, plan_pub, 30 * S + k * S // 10) for k in range(2)]
    assert wait_for(lambda: set(old) <= set(_stamps(got)), 20)
    late = _send(node, bev_pub, plan_pub, 30 * S + 2 * S // 10, with_plan=False)  # its plan is still coming
    new = [_send(node, bev_pub, plan_pub, k * S // 10) for k in range(3)]  # the jump, well within 0.3 s
    assert wait_for(lambda: set(new) <= set(_stamps(got)), 20)
    time.sleep(0.5)
    by_stamp = {stamp_to_ns(t.header.stamp): t for t in got}
    assert by_stamp[late].is_fallback and "time jumped back" in by_stamp[late].fallback_reason
    assert not any(by_stamp[s].is_fallback for s in new)
    dropped = node.stats.snapshot()["dropped"]
    assert dropped.get("time_jump") == 1 and "plan_timeout" not in dropped, dropped
    assert [s for s in _stamps(got) if s in {*old, late, *new}] == [*old, late, *new]


def test_frames_leave_in_stamp_order_when_a_plan_is_missing(planner_rig):
    node, bev_pub, plan_pub, got = planner_rig
    first = _send(node, bev_pub, plan_pub, 5 * S, with_plan=False)  # its plan never comes
    time.sleep(0.05)
    second = _send(node, bev_pub, plan_pub, 5 * S + S // 10, plan_first=False)
    assert wait_for(lambda: {first, second} <= set(_stamps(got)), 20)
    time.sleep(0.5)
    stamps = [s for s in _stamps(got) if s in (first, second)]
    assert stamps == [first, second], "the older frame's fallback came after the newer frame's trajectory"
    fb = [t for t in got if stamp_to_ns(t.header.stamp) == first][0]
    assert fb.is_fallback and "plan" in fb.fallback_reason
    assert not [t for t in got if stamp_to_ns(t.header.stamp) == second][0].is_fallback
    # the next frame still waits the whole plan_timeout_s for its plan (no 'stream silent' shortcut)
    third = _send(node, bev_pub, plan_pub, 5 * S + 2 * S // 10, with_plan=False)
    bev, plan = _bev_and_plan(node, 5 * S + 2 * S // 10)
    time.sleep(0.15)
    plan_pub.publish(plan)
    assert wait_for(lambda: third in _stamps(got), 20)
    assert not [t for t in got if stamp_to_ns(t.header.stamp) == third][0].is_fallback


def test_nothing_before_the_first_input_then_watchdog_fallbacks_on_the_data_timeline(ros_context, spin):
    node = TrajectoryPlannerNode(context=ros_context, parameter_overrides=[
        *UNTRAINED, Parameter("plan_timeout_s", value=0.3), Parameter("input_timeout_s", value=0.3)],
        cli_args=["--ros-args", "-r", "~/input/bev:=/q/bev", "-r", "~/input/plan:=/q/plan",
                  "-r", "~/output/trajectory:=/q/traj"])
    io = rclpy.create_node("timeline_io", context=ros_context)
    from latentvla_ros.msg import BevFeatures, LatentActionPlan

    bev_pub = io.create_publisher(BevFeatures, "/q/bev", QOS)
    plan_pub = io.create_publisher(LatentActionPlan, "/q/plan", QOS)
    got = []
    io.create_subscription(PlannedTrajectory, "/q/traj", got.append, QOS)
    spin(node, io)
    assert wait_for(lambda: bev_pub.get_subscription_count() > 0 and io.count_publishers("/q/traj") > 0)
    time.sleep(1.2)  # four input timeouts without any input
    assert got == [], f"{len(got)} trajectories before any input ({got[0].fallback_reason if got else ''})"
    assert not node.in_fallback and node.diagnostic_values()["inputs"].startswith("waiting")
    frame = _send(node, bev_pub, plan_pub, 0)
    assert wait_for(lambda: frame in _stamps(got), 20)
    assert wait_for(lambda: any(t.fallback_reason.startswith("no BEV") for t in got), 5)
    stamps = _stamps(got)
    assert stamps == sorted(stamps) and stamps[0] == frame, "watchdog fallbacks off the data's timeline"
    assert all(0 < s - frame < 10 * S for s in stamps[1:])
    # the samples' stamps (2023) are years from this node's system clock: one warning, not one per frame
    assert node.clock_warnings == 1 and abs(node.clock_offset_s) > 5.0
    assert "clock_minus_stamp_s" in node.diagnostic_values()
    _send(node, bev_pub, plan_pub, S // 10)
    assert wait_for(lambda: STAMP_NS + S // 10 in _stamps(got), 20)
    assert node.clock_warnings == 1
