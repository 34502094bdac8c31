"""QoS profiles (see docs/operations.md for the reasoning).

- Sensor inputs: best effort, keep last, depth 1 by default (SensorDataQoS): a late
  sensor sample is worthless, a queue of them only adds latency.
- Pipeline messages and outputs: reliable, keep last (depth 5): every synchronized
  frame must reach the planner, and consumers of the trajectory must not miss one.
- Static information (e.g. the model description): reliable + transient local, so
  late joiners still get it.
"""
from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


def input_qos(reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=ReliabilityPolicy.BEST_EFFORT if reliability == "best_effort" else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def output_qos(depth: int = 5) -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


def static_qos() -> QoSProfile:
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
