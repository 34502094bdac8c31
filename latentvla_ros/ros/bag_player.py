"""Play a rosbag2 recording into a live ROS 2 graph (rclpy shell over ``bags.replay``).

Messages are published as the raw CDR bytes stored in the bag
(``Publisher.publish(bytes)`` -> ``publish_raw`` in rclpy), so nothing is
deserialized; the message class is only needed to create the publisher and is
resolved from the type string (``sensor_msgs/msg/Image`` ->
``sensor_msgs.msg.Image``). Topics whose type cannot be imported here are
skipped with a warning and counted.

Timing: absolute schedule ``wall0 + (t - t0) / rate`` (``PlaybackSchedule``);
a message whose deadline has already passed by more than ``late_threshold_s``
is published immediately and counted in ``late_messages``; later messages keep
their original deadlines, so lateness never accumulates as drift.

``/clock`` (``rosgraph_msgs/Clock``) carries the bag time of each message just
before the message is published, and the interpolated bag time at
``clock_hz`` while waiting, so ``use_sim_time`` nodes see a continuous clock.
A bag that holds its own ``/clock`` (a simulator's, e.g. the CARLA bridge's) is the clock
source instead: its messages are replayed and the player publishes no clock of its own
beside them (two clocks on one topic make time jump back and forth); with
``publish_clock=False`` the bag's ``/clock`` is not replayed either.

Subscribers: pipeline topics are volatile, so what is published before a subscriber has
matched is lost. With ``wait_for_subscribers_s`` the player first waits (up to that long)
until the topics in ``wait_topics`` have a subscriber; by default these are the bag's
topics that a latentvla profile subscribes to (``ros/topology.py``, every
``*SENSOR_TOPICS``), or all of the bag's topics when none is one. The wait, the topics
still unmatched when it ended and every message published while its topic had no
subscriber (``published_without_subscribers``) are in ``stats()``.
With ``loop=True`` playback restarts from the beginning (plus
``start_offset_s``): bag time and ``/clock`` jump backwards, and downstream
must handle that (``ApproximateTimeSync`` resets on such jumps).
"""
from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from latentvla_ros.bags.replay import BagReader, BagTopic, PlaybackSchedule

__all__ = ["BagPlayer", "play_bag", "resolve_message_class", "publisher_qos_for", "graph_input_topics"]


def _profile_topics(role: str | None = None) -> list[str]:
    """The topics of every latentvla sensor profile (``ros/topology.py``, ``*SENSOR_TOPICS``);
    only those of ``role`` (e.g. "route") when given."""
    from latentvla_ros.ros import topology

    return [topic for name, value in vars(topology).items() if name.endswith("SENSOR_TOPICS") and isinstance(value, dict)
            for key, topic in value.items() if isinstance(topic, str) and role in (None, key)]


def graph_input_topics(topics: Iterable[str]) -> list[str]:
    """Those of ``topics`` that a latentvla sensor profile subscribes to (camera topics match
    any camera name)."""
    import re

    patterns = [re.compile(re.escape(topic).replace(re.escape("{name}"), "[^/]+") + "$") for topic in _profile_topics()]
    return [t for t in topics if any(p.match(t) for p in patterns)]


def resolve_message_class(msgtype: str):
    """``'pkg/msg/Name'`` (or ``'pkg/Name'``) -> the rclpy message class, or ``None``."""
    parts = msgtype.split("/")
    if len(parts) == 3:
        pkg, sub, name = parts
    elif len(parts) == 2:
        pkg, name = parts
        sub = "msg"
    else:
        return None
    try:
        module = importlib.import_module(f"{pkg}.{sub}")
        cls = getattr(module, name)
    except (ImportError, AttributeError, ValueError):
        return None
    # rosidl-generated classes carry their type support hook on the metaclass.
    return cls if isinstance(cls, type) and hasattr(type(cls), "__import_type_support__") else None


def publisher_qos_for(topic: BagTopic, default_depth: int = 10):
    """Publisher QoS from the recorded offered profiles: always RELIABLE (compatible with
    reliable and best-effort subscribers), TRANSIENT_LOCAL if any recorder saw a
    transient-local publisher (e.g. /tf_static, maps) or the topic is a profile's route
    (latched: the planner subscribes transient local, which a volatile publisher does not
    match), KEEP_LAST with the recorded depth."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    depth = max([default_depth] + [int(q.get("depth") or 0) for q in topic.qos])
    transient = any(q.get("durability") == "transient_local" for q in topic.qos) or topic.topic in _profile_topics("route")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if transient else DurabilityPolicy.VOLATILE,
    )


class BagPlayer:
    """Publish a bag's messages from a background thread (``start``) or the caller (``run``).

    Args:
        node: rclpy node that owns the publishers.
        bag_path: rosbag2 directory or ``.mcap`` / ``.db3`` file.
        rate: playback speed factor (> 0).
        loop: restart from the beginning when the end is reached, until ``stop()``.
        start_offset_s: skip this many seconds from the start of the bag.
        publish_clock: publish ``/clock`` with the bag time.
        topics: only these bag topics (``None``: all).
        remap: ``{bag_topic: published_topic}``.
        qos_overrides: ``{topic: QoSProfile}`` keyed by bag or published topic name.
        clock_topic, clock_hz: clock topic and interpolation rate while waiting (0: only
            with messages).
        late_threshold_s: lateness beyond which a message counts as late.
        wait_for_subscribers_s: before playing, wait up to this long until every topic of
            ``wait_topics`` has a matched subscription (0: don't wait).
        wait_topics: published topic names to wait for (``None``: the graph's inputs among
            the bag's topics, see the module doc).
        max_loops: with ``loop``, stop after this many passes (``None``: until ``stop()``).
        ack_timeout_s: after the last message, wait up to this long until every reliable
            subscriber has acknowledged what was published before the playback counts as
            finished (a player process that exits at once loses what DDS had not delivered
            yet); topics still unacknowledged then are listed in ``stats()['unacknowledged']``.
    """

    def __init__(
        self,
        node,
        bag_path: str | Path,
        rate: float = 1.0,
        loop: bool = False,
        start_offset_s: float = 0.0,
        publish_clock: bool = True,
        topics: Iterable[str] | None = None,
        remap: Mapping[str, str] | None = None,
        qos_overrides: Mapping[str, Any] | None = None,
        *,
        clock_topic: str = "/clock",
        clock_hz: float = 40.0,
        late_threshold_s: float = 0.005,
        wait_for_subscribers_s: float = 0.0,
        wait_topics: Iterable[str] | None = None,
        max_loops: int | None = None,
        ack_timeout_s: float = 5.0,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be > 0, got {rate!r}")
        if start_offset_s < 0:
            raise ValueError(f"start_offset_s must be >= 0, got {start_offset_s!r}")
        self.node = node
        self.bag_path = Path(bag_path)
        self.rate = float(rate)
        self.loop = bool(loop)
        self.start_offset_s = float(start_offset_s)
        self.publish_clock = bool(publish_clock)
        self.topic_filter = list(topics) if topics is not None else None
        self.remap = dict(remap or {})
        self.qos_overrides = dict(qos_overrides or {})
        self.clock_hz = float(clock_hz)
        self.late_threshold_ns = int(late_threshold_s * 1e9)
        self.wait_for_subscribers_s = float(wait_for_subscribers_s)
        self.clock_topic = clock_topic
        self.max_loops = None if max_loops is None else int(max_loops)
        self.ack_timeout_s = float(ack_timeout_s)
        self._unacknowledged: list[str] = []
        self._log = node.get_logger()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._published: dict[str, int] = {}
        self._late = 0
        self._publish_errors = 0
        self._skipped = 0
        self._clock_published = 0
        self._passes_completed = 0
        self._read_errors: list[str] = []
        self._without_subscribers: dict[str, int] = {}
        self._wait = {"waited_s": 0.0, "topics": [], "unmatched": [], "timed_out": False}
        self._bag_ns: int | None = None
        self.unknown_type_topics: dict[str, str] = {}
        self._publishers: dict[str, Any] = {}  # bag topic -> publisher

        # Open once to learn topics/types and create publishers up front (discovery takes time).
        with BagReader(self.bag_path, self.topic_filter) as reader:
            self._read_errors.extend(reader.report.errors)
            self.bag_start_ns, self.bag_end_ns = reader.start_time_ns, reader.end_time_ns
            bag_clock = clock_topic in reader.selected_topics
            for name in reader.selected_topics:
                info = reader.topics[name]
                if name == clock_topic and not self.publish_clock:
                    continue  # no clock at all: the bag's is not replayed either (counted as skipped)
                cls = resolve_message_class(info.msgtype)
                if cls is None:
                    self.unknown_type_topics[name] = info.msgtype
                    self._log.warning(f"bag topic {name}: type {info.msgtype!r} not importable "
                                      "here; skipping it")
                    continue
                out = self.remap.get(name, name)
                qos = self.qos_overrides.get(name, self.qos_overrides.get(out))
                if qos is None:
                    qos = publisher_qos_for(info)
                self._publishers[name] = node.create_publisher(cls, out, qos)
                self._published[out] = 0
        self._clock_pub = None
        self.clock_source = "none"
        if self.publish_clock and bag_clock:
            self.clock_source = "bag"
            self._log.info(f"the bag has its own {clock_topic}: replaying it, publishing no second clock")
        elif self.publish_clock:
            self.clock_source = "player"
            from rclpy.qos import QoSProfile, ReliabilityPolicy
            from rosgraph_msgs.msg import Clock

            self._clock_cls = Clock
            self._clock_pub = node.create_publisher(
                Clock, clock_topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        published = [self.remap.get(t, t) for t in self._publishers if t != clock_topic]
        self.wait_topics = list(wait_topics) if wait_topics is not None else (graph_input_topics(published) or published)

    # ---------------------------------------------------------------- control
    def start(self) -> None:
        """Play in a background thread."""
        if self._thread is not None:
            raise RuntimeError("BagPlayer already started")
        self._thread = threading.Thread(target=self._run_safe, name="bag_player", daemon=True)
        self._thread.start()

    def run(self) -> dict[str, Any]:
        """Play in the calling thread until the end (or ``stop()``); returns ``stats()``."""
        self._run_safe()
        return self.stats()

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until playback finished; True if it did."""
        return self._done.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def destroy(self) -> None:
        """Stop, join the thread and destroy the publishers."""
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        for pub in list(self._publishers.values()) + ([self._clock_pub] if self._clock_pub else []):
            try:
                self.node.destroy_publisher(pub)
            except Exception:  # noqa: BLE001 - teardown: the publisher or its node may already be gone
                pass
        self._publishers.clear()
        self._clock_pub = None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "published": dict(self._published),
                "published_total": sum(self._published.values()),
                "late_messages": self._late,
                "publish_errors": self._publish_errors,
                "skipped_messages": self._skipped,
                "unknown_type_topics": dict(self.unknown_type_topics),
                "clock_published": self._clock_published,
                "passes_completed": self._passes_completed,
                "read_errors": list(self._read_errors),
                "finished": self._done.is_set(),
                "clock_source": self.clock_source,
                "subscriber_wait": dict(self._wait),
                "published_without_subscribers": dict(self._without_subscribers),
                "unacknowledged": list(self._unacknowledged),
            }

    def progress(self) -> dict[str, Any]:
        """Where playback is: pass, bag seconds played of the bag's duration, messages."""
        with self._lock:
            played = 0.0 if self._bag_ns is None or self.bag_start_ns is None else (self._bag_ns - self.bag_start_ns) / 1e9
            total = 0.0 if self.bag_start_ns is None or self.bag_end_ns is None else (self.bag_end_ns - self.bag_start_ns) / 1e9
            return {"pass": self._passes_completed + 1, "bag_s": played, "duration_s": total,
                    "published_total": sum(self._published.values()), "waiting": self._bag_ns is None}

    # --------------------------------------------------------------- playback
    def _run_safe(self) -> None:
        try:
            self._wait_for_subscribers()
            while not self._stop.is_set():
                played = self._play_once()
                if self._stop.is_set():
                    break
                with self._lock:
                    self._passes_completed += 1
                    passes = self._passes_completed
                if not self.loop or played == 0:  # (an empty pass would make a loop spin)
                    break
                if self.max_loops is not None and passes >= self.max_loops:
                    break
            if not self._stop.is_set():
                self._wait_for_acknowledgements()
        except Exception as err:  # noqa: BLE001 - never kill the host process
            with self._lock:
                self._read_errors.append(f"playback aborted: {type(err).__name__}: {err}")
            self._log.error(f"bag playback aborted: {err}")
        finally:
            self._done.set()

    def _wait_for_subscribers(self) -> None:
        if self.wait_for_subscribers_s <= 0:
            return
        start = time.monotonic()
        deadline = start + self.wait_for_subscribers_s
        pubs = {self.remap.get(t, t): p for t, p in self._publishers.items()}
        wanted = [t for t in self.wait_topics if t in pubs]
        unmatched = wanted
        self._log.info(f"waiting up to {self.wait_for_subscribers_s:.0f} s for subscribers of {', '.join(wanted) or '-'}")
        while not self._stop.is_set():
            unmatched = [t for t in wanted if pubs[t].get_subscription_count() == 0]
            if not unmatched or time.monotonic() >= deadline:
                break
            self._stop.wait(0.02)
        with self._lock:
            self._wait = {"waited_s": round(time.monotonic() - start, 3), "topics": wanted, "unmatched": unmatched,
                          "timed_out": bool(unmatched)}
        if unmatched:
            self._log.warning(f"no subscriber on {', '.join(unmatched)} after {self.wait_for_subscribers_s:.0f} s: "
                              "playing anyway; what nobody receives is counted (published_without_subscribers)")

    def _wait_for_acknowledgements(self) -> None:
        """Until every reliable subscriber has acknowledged every message (at most
        ``ack_timeout_s``). Without it the last messages of a bag were lost under load: the
        replay process exited before DDS had delivered them, and a destroyed writer sends
        nothing more. Polled without blocking (``wait_for_all_acked`` with a zero timeout), so
        a player sharing its process with the graph never holds its threads up."""
        from rclpy.duration import Duration

        pubs = {self.remap.get(t, t): p for t, p in self._publishers.items()}
        if self._clock_pub is not None:
            pubs[self.clock_topic] = self._clock_pub
        deadline = time.monotonic() + self.ack_timeout_s
        pending = sorted(pubs)
        while pending and not self._stop.is_set():
            pending = [t for t in pending if not pubs[t].wait_for_all_acked(Duration(seconds=0))]
            if not pending or time.monotonic() >= deadline:
                break
            self._stop.wait(0.01)
        with self._lock:
            self._unacknowledged = pending
        if pending:
            self._log.warning(f"subscribers of {', '.join(pending)} did not acknowledge every message within "
                              f"{self.ack_timeout_s:g} s of the end of the bag: they may miss its last messages")

    def _publish_clock(self, bag_ns: int) -> None:
        if self._clock_pub is None:
            return
        msg = self._clock_cls()
        msg.clock.sec, msg.clock.nanosec = divmod(int(bag_ns), 1_000_000_000)
        try:
            self._clock_pub.publish(msg)
        except Exception:  # noqa: BLE001 - context shutting down
            return
        with self._lock:
            self._clock_published += 1

    def _sleep_until(self, schedule: PlaybackSchedule, deadline_ns: int, bag_ns: int) -> None:
        """Wait for ``deadline_ns`` (monotonic), publishing the interpolated bag time (capped
        at the next message's ``bag_ns`` so /clock never goes backwards within a pass)."""
        period_ns = int(1e9 / self.clock_hz) if self.clock_hz > 0 and self._clock_pub else 0
        while not self._stop.is_set():
            now = time.monotonic_ns()
            remaining = deadline_ns - now
            if remaining <= 0:
                return
            if period_ns and remaining > period_ns:
                self._stop.wait(period_ns / 1e9)
                self._publish_clock(min(schedule.bag_time_ns(time.monotonic_ns()), bag_ns))
            else:
                self._stop.wait(remaining / 1e9)

    def _play_once(self) -> int:
        """One pass over the bag; returns the number of messages handled."""
        handled = 0
        with BagReader(self.bag_path, self.topic_filter) as reader:
            if reader.start_time_ns is None:
                with self._lock:
                    self._read_errors.extend(e for e in reader.report.errors
                                             if e not in self._read_errors)
                return 0
            start_ns = reader.start_time_ns + int(round(self.start_offset_s * 1e9))
            schedule: PlaybackSchedule | None = None
            for m in reader.messages(start_ns=start_ns):
                if self._stop.is_set():
                    break
                handled += 1
                pub = self._publishers.get(m.topic)
                if pub is None:
                    with self._lock:
                        self._skipped += 1
                    continue
                if schedule is None:
                    schedule = PlaybackSchedule(self.rate, m.log_time_ns, time.monotonic_ns())
                deadline = schedule.deadline_ns(m.log_time_ns)
                self._sleep_until(schedule, deadline, m.log_time_ns)
                if self._stop.is_set():
                    break
                late = time.monotonic_ns() - deadline > self.late_threshold_ns
                self._publish_clock(m.log_time_ns)
                out = self.remap.get(m.topic, m.topic)
                unheard = m.topic != self.clock_topic and pub.get_subscription_count() == 0
                try:
                    pub.publish(m.data)
                except Exception as err:  # noqa: BLE001 - a failing publish is counted and logged, the replay goes on
                    with self._lock:
                        self._publish_errors += 1
                    self._log.warning(f"publish on {out} failed: {err}",
                                      throttle_duration_sec=5.0)
                    continue
                with self._lock:
                    self._published[out] += 1
                    self._bag_ns = m.log_time_ns
                    if late:
                        self._late += 1
                    if unheard:
                        self._without_subscribers[out] = self._without_subscribers.get(out, 0) + 1
            with self._lock:
                for e in reader.report.errors:
                    if e not in self._read_errors:
                        self._read_errors.append(e)
        return handled


def format_progress(progress: Mapping[str, Any]) -> str:
    if progress["waiting"]:
        return "waiting for subscribers ..."
    total = progress["duration_s"]
    pct = f" ({100.0 * progress['bag_s'] / total:3.0f}%)" if total > 0 else ""
    return (f"pass {progress['pass']}: {progress['bag_s']:7.1f} / {total:.1f} s{pct}, "
            f"{progress['published_total']} messages")


def play_bag(
    bag_path: str | Path,
    rate: float = 1.0,
    loop: bool = False,
    start_offset_s: float = 0.0,
    publish_clock: bool = True,
    topics: Iterable[str] | None = None,
    remap: Mapping[str, str] | None = None,
    qos_overrides: Mapping[str, Any] | None = None,
    *,
    node_name: str = "bag_player",
    context=None,
    args: list[str] | None = None,
    wait_for_subscribers_s: float = 0.0,
    progress: Callable[[str], None] | None = None,
    progress_period_s: float = 1.0,
    **player_kwargs: Any,
) -> dict[str, Any]:
    """Blocking convenience: own node (and context unless given), play, clean up; returns stats.

    SIGINT (Ctrl-C) and SIGTERM stop playback, also a looping one, and the stats are still
    returned (``stats['stopped_by']`` names the signal): with its own context the player
    handles the signals itself instead of rclpy, whose handler would shut the context down
    under the playing thread. ``progress`` receives a line (``format_progress``) every
    ``progress_period_s``.
    """
    import signal

    import rclpy
    from rclpy.context import Context
    from rclpy.signals import SignalHandlerOptions

    own_context = context is None
    if own_context:
        context = Context()
        rclpy.init(args=args, context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node(node_name, context=context)
    player = None
    stopped_by: list[str] = []

    def on_signal(signum, _frame) -> None:
        stopped_by.append(signal.Signals(signum).name)
        if player is not None:
            player.stop()

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        player = BagPlayer(node, bag_path, rate, loop, start_offset_s, publish_clock, topics, remap,
                           qos_overrides, wait_for_subscribers_s=wait_for_subscribers_s,
                           **player_kwargs)
        if stopped_by:
            player.stop()
        player.start()
        next_report = time.monotonic() + progress_period_s
        try:
            while not player.wait(0.1):
                if not context.ok():  # someone shut the context down: stop playing into it
                    stopped_by.append("context shutdown")
                    player.stop()
                if progress is not None and time.monotonic() >= next_report:
                    next_report += progress_period_s
                    progress(format_progress(player.progress()))
        except KeyboardInterrupt:  # a caller's own handler raised it
            stopped_by.append("SIGINT")
            player.stop()
            player.wait(5.0)
        stats = player.stats()
        stats["stopped_by"] = stopped_by[0] if stopped_by else ""
        return stats
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        if player is not None:
            player.destroy()
        node.destroy_node()
        if own_context:
            rclpy.try_shutdown(context=context)
