"""Intra-process delivery between the nodes of one composed process.

What rclcpp's intra-process communication does for C++ components, for our rclpy nodes:
when a node in the process publishes on a topic that other nodes of the same process
subscribe to, the message object goes straight into those subscriptions' queues and their
callbacks run on their own executor threads (``executor.create_task``), with no
serialisation, no DDS round trip and no deserialisation into a new Python object. Anything
outside the process (``ros2 bag record``, RViz, the other processes of a split graph, a
benchmark harness node) still gets the message over DDS: the publisher also publishes
there whenever the middleware reports more subscriptions than the in-process ones.

Rules (docs/architecture.md#intra-process-delivery):

- Only volatile topics: transient-local ones (``~/debug/node_info``) stay on DDS, which
  keeps the late-joiner semantics. A reliable subscription gets nothing in-process from a
  best-effort publisher, as DDS would not match them either.
- Queues are keep-last with the subscription's QoS depth, like the DDS reader they replace;
  a message pushed out of a full queue is counted by the subscriber
  (``intra_process/queue_overflow/<input>`` in its diagnostics), which a DDS keep-last
  reader cannot do. The loss itself is counted as a drop where it is with DDS too (the
  frame sequence gaps, plan timeouts), so it is not counted twice.
- Messages are shared, not copied: a callback must not modify the message it receives (none
  of ours does), and a publisher must not modify a message after publishing it.
- A subscription whose topic has a publisher in this process ignores what DDS delivers on
  that topic (it is the same message again, sent for an outside subscriber); the ignored
  ones are counted (``intra_process/dds_duplicates_ignored/<input>``). Consequence: a
  second publisher of the same topic in *another* process is not heard by this process's
  nodes. Our graph has one publisher per topic; a node that sees a foreign one says so.

The bus also knows where the process's frame path ends (``add_frame_end``: the trajectory
planner): work that must not compete with a frame for the GIL (a node's /diagnostics report)
waits for ``after_frame`` and runs once the frame in flight is out (``frame_done``).
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

#: queue length of subscriptions whose QoS keeps all messages
KEEP_ALL_DEPTH = 1000


def is_volatile(qos_profile: Any) -> bool:
    from rclpy.qos import DurabilityPolicy, QoSProfile

    if not isinstance(qos_profile, QoSProfile):  # an int depth: rclpy's default, volatile
        return True
    return qos_profile.durability != DurabilityPolicy.TRANSIENT_LOCAL


def is_reliable(qos_profile: Any) -> bool:
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    if not isinstance(qos_profile, QoSProfile):  # an int depth: rclpy's default, reliable
        return True
    return qos_profile.reliability != ReliabilityPolicy.BEST_EFFORT


def queue_depth(qos_profile: Any) -> int:
    from rclpy.qos import HistoryPolicy, QoSProfile

    if not isinstance(qos_profile, QoSProfile):
        return max(1, int(qos_profile))
    if qos_profile.history == HistoryPolicy.KEEP_ALL:
        return KEEP_ALL_DEPTH
    return max(1, int(qos_profile.depth))


@dataclass(eq=False)
class LocalSubscription:
    """One in-process subscription: its queue and how to run its callback."""

    node: Any
    topic: str
    msg_type: type
    callback: Callable[[Any], None]
    depth: int
    on_overflow: Callable[[int], None]
    #: a reliable subscription does not match a best-effort publisher (DDS would not deliver)
    requires_reliable: bool = False
    #: run the callback in the publisher's thread (no executor hop): for a serial stage whose
    #: callbacks are thread-safe, where the hop to its own thread buys nothing (the planner)
    direct: bool = False
    queue: collections.deque = field(init=False)

    def __post_init__(self) -> None:
        self.queue = collections.deque(maxlen=self.depth)

    def _executor(self) -> Any:
        """The executor spinning the node, or None: rclpy leaves ``node.executor`` set after
        ``remove_node``, and a node that is not spun must not run callbacks (like a DDS reader,
        its queue keeps the newest messages until it is spun again)."""
        executor = self.node.executor
        if executor is None or self.node not in executor.get_nodes():
            return None
        return executor

    def offer(self, msg: Any) -> None:
        if self.direct and not self.queue and self._executor() is not None:
            self.callback(msg)  # nothing waits before it: in order
            return
        if len(self.queue) == self.depth:
            self.on_overflow(1)
        self.queue.append(msg)
        self.resume()

    def resume(self) -> None:
        """Schedule the queued messages on the node's executor; a node spun again after a
        pause gets what waited meanwhile, as from a DDS reader's pending samples."""
        executor = self._executor()
        if self.queue and executor is not None:
            executor.create_task(self.drain)

    def drain(self) -> None:
        """Runs on the subscribing node's executor thread: every queued message, in order."""
        if self._executor() is None:  # removed from its executor after the task was scheduled
            return
        while True:
            try:
                msg = self.queue.popleft()
            except IndexError:
                return
            self.callback(msg)


class IntraProcessBus:
    """The in-process topic registry of one composed process (``ros.graph.create_composed_nodes``
    gives every node the same one). ``enabled = False`` sends everything over DDS again (the
    benchmark compares both on the same nodes).

    Both tables map a topic to a tuple, replaced (never mutated) under the lock, so the
    publishing and receiving threads read them without it."""

    def __init__(self, enabled: bool = True):
        self.enabled = bool(enabled)
        self._lock = threading.Lock()
        self._subscriptions: dict[str, tuple[LocalSubscription, ...]] = {}
        self._publishers: dict[str, tuple[IntraProcessPublisher, ...]] = {}
        self._frame_ends: tuple[Any, ...] = ()  # nodes whose output ends the frame path (the planner)
        self._after_frame: list[Callable[[], None]] = []

    # ------------------------------------------------------------ registry
    def _add(self, table: dict[str, tuple], entry: Any) -> None:
        with self._lock:
            table[entry.topic] = table.get(entry.topic, ()) + (entry,)

    def _remove(self, table: dict[str, tuple], gone: Callable[[Any], bool]) -> None:
        with self._lock:
            for topic, entries in list(table.items()):
                kept = tuple(e for e in entries if not gone(e))
                if kept:
                    table[topic] = kept
                else:
                    del table[topic]

    def add_subscription(self, sub: LocalSubscription) -> None:
        self._add(self._subscriptions, sub)

    def add_publisher(self, pub: IntraProcessPublisher) -> None:
        self._add(self._publishers, pub)

    def remove_subscription(self, sub: LocalSubscription) -> None:
        self._remove(self._subscriptions, lambda s: s is sub)

    def remove_publisher(self, pub: IntraProcessPublisher) -> None:
        self._remove(self._publishers, lambda p: p is pub)

    def remove_node(self, node: Any) -> None:
        self._remove(self._subscriptions, lambda s: s.node is node)
        self._remove(self._publishers, lambda p: p.node is node)
        with self._lock:
            self._frame_ends = tuple(n for n in self._frame_ends if n is not node)

    # ------------------------------------------------------------ the end of the frame path
    def add_frame_end(self, node: Any) -> None:
        """``node``'s output ends the process's frame path: it calls ``frame_done`` after it."""
        with self._lock:
            self._frame_ends += (node,)

    def is_frame_end(self, node: Any) -> bool:
        return any(n is node for n in self._frame_ends)

    def after_frame(self, fn: Callable[[], None]) -> bool:
        """Call ``fn`` once the frame in flight is out (the next ``frame_done``, in that thread:
        ``fn`` should only hand work to its own thread). False where no node of the process
        ends a frame path: nothing would call it, do the work now."""
        if not self._frame_ends:
            return False
        with self._lock:
            self._after_frame.append(fn)
        return True

    def frame_done(self) -> None:
        """A frame's output is out: what waited for it (``after_frame``) runs now."""
        if not self._after_frame:
            return
        with self._lock:
            pending, self._after_frame = self._after_frame, []
        for fn in pending:
            fn()

    def local_publishers(self, topic: str, msg_type: type, requires_reliable: bool = False) -> int:
        """Publishers of ``topic`` with this message type in the process that reach a
        subscription (reliable or not) in-process (0 while disabled)."""
        if not self.enabled:
            return 0
        return sum(1 for p in self._publishers.get(topic, ())
                   if p.msg_type is msg_type and (p.reliable or not requires_reliable))

    def subscriptions(self, topic: str, msg_type: type, reliable: bool = True) -> tuple[LocalSubscription, ...]:
        """In-process subscriptions a publisher of ``msg_type`` (``reliable`` or best effort)
        on ``topic`` reaches: the pairs DDS would match, nothing else."""
        if not self.enabled:
            return ()
        return tuple(s for s in self._subscriptions.get(topic, ())
                     if s.msg_type is msg_type and (reliable or not s.requires_reliable))


class IntraProcessPublisher:
    """Wraps an rclpy ``Publisher``: in-process subscriptions get the message object, DDS gets
    it only when someone outside is listening. Everything else is the wrapped publisher's."""

    def __init__(self, node: Any, publisher: Any, bus: IntraProcessBus, msg_type: type, reliable: bool = True):
        self.node = node
        self._publisher = publisher
        self._bus = bus
        self.msg_type = msg_type
        self.reliable = reliable
        self.topic = publisher.topic_name

    @property
    def publisher(self) -> Any:
        """The wrapped rclpy ``Publisher``."""
        return self._publisher

    def local_subscriptions(self) -> int:
        """Subscriptions of this process the next ``publish`` hands the message object to."""
        return len(self._bus.subscriptions(self.topic, self.msg_type, self.reliable))

    def publish(self, msg: Any) -> None:
        local = self._bus.subscriptions(self.topic, self.msg_type, self.reliable)
        if not local:
            # nobody matched: a volatile sample would reach no one, skip its serialisation
            if self._publisher.get_subscription_count():
                self._publisher.publish(msg)
            return
        for sub in local:
            sub.offer(msg)
        # every in-process subscription also has a DDS reader (for publishers elsewhere):
        # more matched readers than those means an outside subscriber
        if self._publisher.get_subscription_count() > len(local):
            self._publisher.publish(msg)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._publisher, name)
