"""Record live topics into a rosbag2 (rclpy shell over ``bags.record.BagWriter``).

Subscriptions use ``raw=True`` so rclpy hands the callback the serialized CDR
bytes, which are written unchanged (no deserialization cost, any type that is
importable here). Topic types come from the graph
(``node.get_topic_names_and_types()``): the constructor waits up to
``discovery_timeout_s`` for the requested topics, and a timer keeps looking for
the missing ones afterwards (the node must be spun for that). The subscription
QoS follows the publishers seen on the graph like rosbag2 does: best effort if
any publisher is best effort, transient local if all publishers are.

Receive time from the node clock (sim time with ``use_sim_time``) is the log
time. The bag is finished by ``close()``, which also runs on context shutdown
(``context.on_shutdown``) and is idempotent; ``record_bag`` closes it on
Ctrl-C / SIGTERM too.
"""
from __future__ import annotations

import signal
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from latentvla_ros.bags.record import BagWriter, MsgTypeNotFoundError

__all__ = ["BagRecorder", "record_bag", "subscription_qos_for"]


def _qos_dict(profile) -> dict[str, Any]:
    return {
        "reliability": profile.reliability.name.lower(),
        "durability": profile.durability.name.lower(),
        "history": profile.history.name.lower(),
        "depth": int(profile.depth),
    }


def subscription_qos_for(publisher_profiles: Sequence[Any], depth: int = 100):
    """Subscription QoS compatible with all given publisher QoS profiles."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    best_effort = any(p.reliability == ReliabilityPolicy.BEST_EFFORT for p in publisher_profiles)
    transient = bool(publisher_profiles) and all(
        p.durability == DurabilityPolicy.TRANSIENT_LOCAL for p in publisher_profiles)
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if transient else DurabilityPolicy.VOLATILE,
    )


class BagRecorder:
    """Record ``topics`` from ``node``'s graph into a new bag at ``out_path``.

    Args:
        node: rclpy node (spin it so callbacks run).
        out_path: bag directory to create.
        topics: topic names (relative names are resolved against the node).
        storage: ``'mcap'`` or ``'sqlite3'``.
        discovery_timeout_s: how long the constructor waits for all topics to appear.
        poll_period_s: period of the discovery timer for topics still missing (0: no timer).
        depth: subscription queue depth.
        qos_overrides: ``{topic: QoSProfile}`` instead of the graph-derived QoS.
        msg_search_paths, version: passed to ``BagWriter``.
    """

    def __init__(
        self,
        node,
        out_path: str | Path,
        topics: Iterable[str],
        storage: str = "mcap",
        *,
        discovery_timeout_s: float = 2.0,
        poll_period_s: float = 0.5,
        depth: int = 100,
        qos_overrides: Mapping[str, Any] | None = None,
        msg_search_paths: Sequence[Path] | None = None,
        version: int = 9,
        callback_group=None,
    ) -> None:
        self.node = node
        self._log = node.get_logger()
        self.out_path = Path(out_path)
        self.depth = int(depth)
        self.qos_overrides = dict(qos_overrides or {})
        self.callback_group = callback_group
        self.wanted = [self._resolve(t) for t in topics]
        if not self.wanted:
            raise ValueError("no topics to record")
        self.writer = BagWriter(self.out_path, storage, version=version,
                                msg_search_paths=msg_search_paths)
        self._lock = threading.Lock()
        self._subs: dict[str, Any] = {}
        self.failed_topics: dict[str, str] = {}  # topic -> reason (type not importable/defined)
        self._received: dict[str, int] = {}
        self._dropped_after_close = 0
        self._write_errors = 0
        self._closed = False
        self._timer = None
        self.wait_for_topics(discovery_timeout_s)
        if poll_period_s > 0 and self.missing_topics():
            self._timer = node.create_timer(poll_period_s, self._discover,
                                            callback_group=callback_group)
        node.context.on_shutdown(self.close)

    # ------------------------------------------------------------- discovery
    def _resolve(self, topic: str) -> str:
        try:
            return self.node.resolve_topic_name(topic)
        except Exception:  # noqa: BLE001 - older rclpy
            return topic if topic.startswith("/") else "/" + topic

    def missing_topics(self) -> list[str]:
        with self._lock:
            return [t for t in self.wanted if t not in self._subs and t not in self.failed_topics]

    def wait_for_topics(self, timeout_s: float) -> bool:
        """Subscribe to wanted topics as they appear; True when none is missing."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            self._discover()
            if not self.missing_topics():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def _discover(self) -> None:
        if self._closed:
            return
        missing = self.missing_topics()
        if not missing:
            if self._timer is not None:
                self._timer.cancel()
            return
        try:
            graph = dict(self.node.get_topic_names_and_types())
        except Exception:  # noqa: BLE001 - node/context going away
            return
        for topic in missing:
            types = graph.get(topic)
            if not types:
                continue
            if len(types) > 1:
                self._log.warning(f"topic {topic} has several types {types}; recording {types[0]}")
            self._subscribe(topic, types[0])

    def _subscribe(self, topic: str, msgtype: str) -> None:
        from latentvla_ros.ros.bag_player import resolve_message_class

        cls = resolve_message_class(msgtype)
        if cls is None:
            self._fail(topic, f"type {msgtype!r} not importable here")
            return
        try:
            infos = self.node.get_publishers_info_by_topic(topic)
        except Exception:  # noqa: BLE001 - graph query during shutdown: record without offered QoS
            infos = []
        profiles = [i.qos_profile for i in infos]
        qos = self.qos_overrides.get(topic) or subscription_qos_for(profiles, self.depth)
        try:
            self.writer.add_topic(topic, msgtype, qos=[_qos_dict(p) for p in profiles])
        except MsgTypeNotFoundError as err:
            self._fail(topic, str(err))
            return
        except RuntimeError:
            return  # closed meanwhile
        with self._lock:
            if self._closed or topic in self._subs:
                return
            self._received[topic] = 0
            self._subs[topic] = self.node.create_subscription(
                cls, topic, partial(self._on_msg, topic), qos, raw=True,
                callback_group=self.callback_group)
        self._log.info(f"recording {topic} [{msgtype}]")

    def _fail(self, topic: str, reason: str) -> None:
        with self._lock:
            self.failed_topics[topic] = reason
        self._log.warning(f"not recording {topic}: {reason}")

    # -------------------------------------------------------------- messages
    def _on_msg(self, topic: str, data: bytes) -> None:
        t = self.node.get_clock().now().nanoseconds
        try:
            ok = self.writer.write(topic, t, data)
        except Exception as err:  # noqa: BLE001 - a failing write is counted and logged, recording goes on
            with self._lock:
                self._write_errors += 1
            self._log.error(f"writing {topic} failed: {err}", throttle_duration_sec=5.0)
            return
        with self._lock:
            if ok:
                self._received[topic] += 1
            else:
                self._dropped_after_close += 1

    # ----------------------------------------------------------------- state
    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "recorded": dict(self._received),
                "recorded_total": sum(self._received.values()),
                "missing_topics": [t for t in self.wanted
                                   if t not in self._subs and t not in self.failed_topics],
                "failed_topics": dict(self.failed_topics),
                "dropped_after_close": self._dropped_after_close,
                "write_errors": self._write_errors + self.writer.write_errors,
                "last_write_error": self.writer.last_error,
                "closed": self._closed,
                "path": str(self.out_path),
            }

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop recording and finish the bag file (idempotent, safe during shutdown)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subs, self._subs = dict(self._subs), {}
        self.writer.close()
        if self._timer is not None:
            try:
                self._timer.cancel()
                self.node.destroy_timer(self._timer)
            except Exception:  # noqa: BLE001 - node already destroyed
                pass
        for sub in subs.values():
            try:
                self.node.destroy_subscription(sub)
            except Exception:  # noqa: BLE001 - teardown: the subscription or its node may already be gone
                pass

    def __enter__(self) -> "BagRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def record_bag(
    out_path: str | Path,
    topics: Iterable[str],
    storage: str = "mcap",
    duration_s: float | None = None,
    *,
    node_name: str = "bag_recorder",
    context=None,
    args: list[str] | None = None,
    **recorder_kwargs: Any,
) -> dict[str, Any]:
    """Blocking convenience: record until ``duration_s`` passes (``None`` or <= 0: no limit)
    or Ctrl-C / SIGTERM; the bag is always closed. Returns the recorder stats
    (``stopped_by``: the signal, 'duration' or 'context shutdown')."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    own_context = context is None
    if own_context:
        context = Context()
        rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(node_name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    recorder = None
    stop = threading.Event()
    stopped_by: list[str] = []

    def on_signal(signum, _frame) -> None:
        stopped_by.append(signal.Signals(signum).name)
        stop.set()

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        recorder = BagRecorder(node, out_path, topics, storage, **recorder_kwargs)
        end = time.monotonic() + duration_s if duration_s is not None and duration_s > 0 else None
        try:
            while not stop.is_set() and context.ok():
                if end is not None and time.monotonic() >= end:
                    stopped_by.append("duration")
                    break
                executor.spin_once(timeout_sec=0.1)
        except (KeyboardInterrupt, ExternalShutdownException):
            stopped_by.append("SIGINT")
        if not context.ok() and not stopped_by:
            stopped_by.append("context shutdown")
        recorder.close()
        return {**recorder.stats(), "stopped_by": stopped_by[0] if stopped_by else ""}
    finally:
        if recorder is not None:
            recorder.close()
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        executor.shutdown()
        node.destroy_node()
        if own_context:
            rclpy.try_shutdown(context=context)
