"""rclpy adapter for approximate-time synchronisation of several topics.

``make_approximate_sync`` uses the real ``message_filters.ApproximateTimeSynchronizer``
with ``message_filters.Subscriber`` when ``import message_filters`` works
(a sourced ROS 2 install), and otherwise ``ros.contracts.approx_sync.ApproximateTimeSync``
fed from plain rclpy subscriptions. Both give ``callback(*msgs)`` with one
message per topic, in the order of ``topics_and_types``.

Counters (``handle.stats()``):

- builtin backend: all counters of ``ApproximateTimeSync.stats()``.
- message_filters backend: ``received``, ``emitted``, ``emitted_messages``,
  ``dropped_headerless`` (counted by a monitor that sees every message before
  the synchronizer does), ``resets`` (our own backwards-jump detection: on a
  jump the synchronizer's queues are cleared under its lock, so both backends
  recover from looping bags the same way), and ``dropped_overflow`` /
  ``queued`` when the synchronizer exposes ``queues`` and ``lock`` like the
  upstream Python implementation; otherwise those are ``None``.
  ``dropped_unmatched`` counts messages cleared by resets only.
"""
from __future__ import annotations

import threading
from functools import partial
from typing import Any, Callable, Sequence

from latentvla_ros.ros.contracts.approx_sync import ApproximateTimeSync

__all__ = ["SyncHandle", "make_approximate_sync", "header_stamp_ns", "have_message_filters"]


def header_stamp_ns(msg: Any) -> int | None:
    """``msg.header.stamp`` as int ns, or ``None`` when the message has no header stamp."""
    header = getattr(msg, "header", None)
    stamp = getattr(header, "stamp", None) if header is not None else None
    if stamp is None:
        return None
    if hasattr(stamp, "nanoseconds"):  # rclpy.time.Time
        return int(stamp.nanoseconds)
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def have_message_filters() -> bool:
    try:
        import message_filters  # noqa: F401 - only probing that it imports
    except ImportError:
        return False
    return True


class SyncHandle:
    """Owns the subscriptions of one synchronizer. ``stats()``; ``destroy()``."""

    backend: str

    def stats(self) -> dict[str, int | None]:  # pragma: no cover - overridden
        raise NotImplementedError

    def destroy(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class _BuiltinHandle(SyncHandle):
    backend = "builtin"

    def __init__(self, node, topics_and_types, qos, queue_size, slop_s, callback,
                 allow_headerless, time_jump_reset_s, callback_group) -> None:
        self._node = node
        self.sync = ApproximateTimeSync(
            len(topics_and_types), queue_size, slop_s, allow_headerless, callback,
            time_jump_reset_s=time_jump_reset_s,
            clock_ns=lambda: node.get_clock().now().nanoseconds,
        )
        self.subscriptions = [
            node.create_subscription(msg_type, topic, partial(self._on_msg, i), qos,
                                     callback_group=callback_group)
            for i, (topic, msg_type) in enumerate(topics_and_types)
        ]

    def _on_msg(self, index: int, msg: Any) -> None:
        stamp = header_stamp_ns(msg)
        now = self._node.get_clock().now().nanoseconds if stamp is None else None
        self.sync.add(index, stamp, msg, now_ns=now)

    def stats(self) -> dict[str, int | None]:
        return dict(self.sync.stats())

    def destroy(self) -> None:
        for sub in self.subscriptions:
            self._node.destroy_subscription(sub)
        self.subscriptions = []


class _MessageFiltersHandle(SyncHandle):
    backend = "message_filters"

    def __init__(self, mf, node, topics_and_types, qos, queue_size, slop_s, callback,
                 allow_headerless, time_jump_reset_s, callback_group) -> None:
        self._node = node
        self._callback = callback
        self._allow_headerless = allow_headerless
        self._queue_size = int(queue_size)
        self._jump_ns = None if time_jump_reset_s is None else int(round(time_jump_reset_s * 1e9))
        self._lock = threading.Lock()
        self._newest: list[int | None] = [None] * len(topics_and_types)
        self._counts = {"received": 0, "emitted": 0, "emitted_messages": 0,
                        "dropped_headerless": 0, "dropped_unmatched": 0, "resets": 0}
        self._overflow: int | None = 0
        kwargs = {"qos_profile": qos}
        if callback_group is not None:
            kwargs["callback_group"] = callback_group
        self.filters = [mf.Subscriber(node, msg_type, topic, **kwargs)
                        for topic, msg_type in topics_and_types]
        # The monitor is registered first so it sees each message before the synchronizer.
        for i, f in enumerate(self.filters):
            f.registerCallback(partial(self._monitor, i))
        self.sync = mf.ApproximateTimeSynchronizer(self.filters, queue_size, slop_s,
                                                   allow_headerless=allow_headerless)
        self.sync.registerCallback(self._on_set)

    def _queues(self):
        queues = getattr(self.sync, "queues", None)
        lock = getattr(self.sync, "lock", None)
        if isinstance(queues, list) and lock is not None and all(isinstance(q, dict) for q in queues):
            return queues, lock
        return None, None

    def _monitor(self, index: int, msg: Any) -> None:
        stamp = header_stamp_ns(msg)
        with self._lock:
            self._counts["received"] += 1
            if stamp is None:
                if not self._allow_headerless:
                    self._counts["dropped_headerless"] += 1
                return
            queues, sync_lock = self._queues()
            newest = self._newest[index]
            if self._jump_ns is not None and newest is not None and stamp < newest - self._jump_ns:
                self._counts["resets"] += 1
                self._newest = [None] * len(self._newest)
                newest = None
                if queues is not None:
                    with sync_lock:
                        self._counts["dropped_unmatched"] += sum(len(q) for q in queues)
                        for q in queues:
                            q.clear()
            if newest is None or stamp > newest:
                self._newest[index] = stamp
            if queues is None:
                self._overflow = None
            elif self._overflow is not None:
                with sync_lock:
                    q = queues[index]
                    if stamp not in q and len(q) >= self._queue_size:
                        self._overflow += 1

    def _on_set(self, *msgs: Any) -> None:
        with self._lock:
            self._counts["emitted"] += 1
            self._counts["emitted_messages"] += len(msgs)
        self._callback(*msgs)

    def stats(self) -> dict[str, int | None]:
        with self._lock:
            out: dict[str, int | None] = dict(self._counts)
            out["dropped_overflow"] = self._overflow
        queues, sync_lock = self._queues()
        if queues is not None:
            with sync_lock:
                out["queued"] = sum(len(q) for q in queues)
        else:
            out["queued"] = None
        return out

    def destroy(self) -> None:
        for f in self.filters:
            sub = getattr(f, "sub", None)
            if sub is not None:
                self._node.destroy_subscription(sub)
        self.filters = []


def make_approximate_sync(
    node,
    topics_and_types: Sequence[tuple[str, type]],
    qos,
    queue_size: int,
    slop_s: float,
    callback: Callable[..., Any],
    allow_headerless: bool = False,
    *,
    time_jump_reset_s: float | None = 1.0,
    backend: str = "auto",
    callback_group=None,
) -> SyncHandle:
    """Subscribe to ``topics_and_types`` and call ``callback(*msgs)`` for matched sets.

    ``backend``: ``"auto"`` (message_filters when importable), ``"message_filters"``
    or ``"builtin"``. ``qos`` is any QoS accepted by ``create_subscription``.
    """
    if not topics_and_types:
        raise ValueError("topics_and_types must not be empty")
    if backend not in ("auto", "message_filters", "builtin"):
        raise ValueError(f"unknown backend {backend!r}")
    args = (node, list(topics_and_types), qos, queue_size, slop_s, callback,
            allow_headerless, time_jump_reset_s, callback_group)
    if backend in ("auto", "message_filters"):
        try:
            import message_filters as mf
        except ImportError:
            if backend == "message_filters":
                raise
        else:
            return _MessageFiltersHandle(mf, *args)
    return _BuiltinHandle(*args)
