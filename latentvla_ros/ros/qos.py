"""QoS profiles of the graph (docs/operations.md, "QoS", explains the choices).

Three classes of topics, each with one profile:

- **Sensor inputs** (camera images and infos, LiDAR, odometry, vehicle status):
  ``sensor_qos`` = best effort, keep last, depth 1 by default (ROS SensorDataQoS). A late
  sensor sample is worthless and a queue of them only adds latency. Best effort on the
  *subscriber* side also matches every publisher (a reliable subscription receives
  nothing from a best-effort camera driver). Per node: ``qos.input_reliability`` /
  ``qos.input_depth`` (sensor_sync) and ``qos.sensor_reliability`` / ``qos.sensor_depth``
  (trajectory_planner, twist_controller). Losses are not silent: sensor_sync counts the
  gaps in every sensor stream (``dropped/input_gap/...`` in /diagnostics).
- **Pipeline messages and outputs** (SensorFrame, BevFeatures, LatentActionPlan,
  trajectory, Path, markers, Twist, debug topics, /diagnostics): ``output_qos`` =
  reliable, keep last (depth ``qos.output_depth``, 5). Every synchronized frame must
  reach the planner, and consumers of the trajectory must not miss one. The pipeline
  subscriptions are reliable too (``qos.input_*`` of the model nodes), with a queue deep
  enough to ride out a slow model call; frames that still overflow it are counted through
  the SensorFrame sequence numbers (``dropped/frame_lost_upstream``).
- **Static information** (``~/debug/node_info``: model id, checkpoint, parameters; the
  mission route, nav_msgs/Path, latched as in ROS 1 and the CARLA waypoint publisher):
  ``static_qos`` = reliable + transient local, depth 1, so a late joiner (RViz, Foxglove,
  a recorder started later) still gets it.

``PROFILES`` lists them with a one-line reason each (used by docs and tests).
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def _reliability(name: str) -> ReliabilityPolicy:
    try:
        return RELIABILITY[name]
    except KeyError as exc:
        raise ValueError(f"reliability must be one of {sorted(RELIABILITY)}, got {name!r}") from exc


def input_qos(reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    """A node's input subscriptions (volatile; reliability and depth from its parameters)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=_reliability(reliability),
                      durability=DurabilityPolicy.VOLATILE)


def sensor_qos(reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    """Sensor inputs: best effort, depth 1 unless configured otherwise (SensorDataQoS)."""
    return input_qos(reliability, depth)


def output_qos(depth: int = 5) -> QoSProfile:
    """Pipeline messages and outputs: reliable, keep last, volatile."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def static_qos() -> QoSProfile:
    """Static information: reliable + transient local (late joiners get the last sample)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def describe(profile: QoSProfile) -> str:
    """'best_effort/volatile/keep_last(1)' - for logs and diagnostics."""
    return (f"{profile.reliability.name.lower()}/{profile.durability.name.lower()}/"
            f"{profile.history.name.lower()}({profile.depth})")


PROFILES = {
    "sensor": ("best_effort, volatile, keep_last(1)",
               "a late sensor sample is worthless; best effort matches reliable and best-effort publishers"),
    "pipeline": ("reliable, volatile, keep_last(5..10)",
                 "every synchronized frame must reach the planner; overflow is counted via sequence numbers"),
    "output": ("reliable, volatile, keep_last(5)", "trajectory/Twist consumers must not miss a sample"),
    "static": ("reliable, transient_local, keep_last(1)", "late joiners (RViz, Foxglove, recorders, the planner's route input) get it"),
}
