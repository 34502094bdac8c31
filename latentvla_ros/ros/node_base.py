"""Common shell of every latentvla node: parameters from the schema, QoS, counters,
input watchdog, debug topics and diagnostics. Subclasses only convert messages and
call the core.

What every node gets from here (docs/operations.md explains it for operators):

- Parameters declared from ``schema/<node>.schema.json`` and validated before use; an
  invalid value or an *unknown* parameter (a typo in a param file) refuses the start
  (``ParameterError``); runtime changes are validated too, and a parameter the schema marks
  ``"readOnly"`` is refused at run time. ``self.params`` is the node's typed dataclass
  (``ros/contracts/param_types.py``): ``self.params.slop_s``, ``self.params.qos.input_depth``.
- Guarded callbacks: every subscription and timer callback runs inside a guard, so an
  unexpected exception is counted (``dropped/callback_error``), logged (throttled, with
  the traceback the first time) and the node keeps running: an exception escaping a
  callback would otherwise stop the executor and kill the node.
- Per-input accounting and watchdog: every subscription counts its messages
  (``received/<input>``, ``rate_hz/<input>``), the age of the newest one
  (``age_s/<input>``) and reports an input that stays silent longer than its timeout
  (``input_timeout_s`` unless the node names another parameter). QoS events are counted
  too: ``message_lost`` (samples the middleware knows it lost) and incompatible QoS
  (a publisher that can never reach us; reported as an error).
- ``/diagnostics`` (diagnostic_msgs/DiagnosticArray) on a steady-clock timer (a stalled
  /clock must not silence it), ``~/debug/processing_time_ms``,
  ``~/debug/pipeline_latency_ms`` (now minus header stamp) and the transient-local
  ``~/debug/node_info`` (model id, parameters, QoS).
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_policy_name_from_kind
from std_msgs.msg import Float64, Header, String

from latentvla_ros.core.input_checks import LossLedger
from latentvla_ros.ros.contracts.monitoring import NodeStats, SequenceGapCounter
from latentvla_ros.ros.contracts.parameters import (
    ParameterError,
    load_schema,
    node_definition,
    parse_parameters,
    read_only_parameters,
    unknown_parameters,
)
from latentvla_ros.ros.contracts.typed_params import ParamGroup
from latentvla_ros.ros.intra_process import IntraProcessBus, IntraProcessPublisher, LocalSubscription, is_reliable, is_volatile, queue_depth
from latentvla_ros.ros.latest_frame import SUPERSEDED, LatestFrame
from latentvla_ros.ros.qos import input_qos, output_qos, sensor_qos, static_qos

_TYPES = {
    "string": (ParameterType.PARAMETER_STRING, Parameter.Type.STRING),
    "integer": (ParameterType.PARAMETER_INTEGER, Parameter.Type.INTEGER),
    "number": (ParameterType.PARAMETER_DOUBLE, Parameter.Type.DOUBLE),
    "boolean": (ParameterType.PARAMETER_BOOL, Parameter.Type.BOOL),
}
_ARRAY_TYPES = {
    "string": (ParameterType.PARAMETER_STRING_ARRAY, Parameter.Type.STRING_ARRAY),
    "number": (ParameterType.PARAMETER_DOUBLE_ARRAY, Parameter.Type.DOUBLE_ARRAY),
    "integer": (ParameterType.PARAMETER_INTEGER_ARRAY, Parameter.Type.INTEGER_ARRAY),
}

OK, WARN, ERROR = 0, 1, 2  # DiagnosticStatus levels as ints

# Consecutive model failures after which the model status turns ERROR.
MODEL_ERROR_STREAK = 3

# A report that waited for the end of a composed process's frame path is built this long after
# the trajectory is out: its consumers (the controller, the bench's harness) take it within a
# few ms, and in the same process their Python would wait for the report's (~1 ms) otherwise.
REPORT_AFTER_FRAME_S = 0.01


def _plain(value: Any) -> Any:
    """A parameter value as plain Python (rclpy gives arrays as array.array or tuples)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "array":
        return list(value)
    return value


def input_name(topic: str) -> str:
    """'~/input/camera/front/image' -> 'camera/front/image' (the key in counters and diagnostics)."""
    for prefix in ("~/input/", "~/"):
        if topic.startswith(prefix):
            return topic[len(prefix):]
    return topic.strip("/")


@dataclass
class InputWatch:
    """Freshness of one input: ``timeout_param`` names the parameter with its timeout."""

    topic: str
    timeout_param: str | None  # None: optional input, never reported stale
    last: float | None = None  # monotonic time of the newest message
    lost: int = 0  # message_lost events
    incompatible: str = ""  # last incompatible QoS policy reported


class LatentVlaNode(Node):
    """Base node: declares every schema parameter, validates, guards callbacks, watches inputs,
    publishes debug topics and diagnostics."""

    schema_name: str = ""
    #: which thread ``ros.executors.GraphExecutor`` spins this node on, in a process with
    #: several nodes: nodes with the same group share one (``"io"``: light, latency-critical)
    executor_group: str = "io"

    def __init__(self, node_name: str | None = None, *, intra_process: IntraProcessBus | None = None, **kwargs: Any):
        """``intra_process``: the bus of a composed process (``ros/intra_process.py``); None:
        every message goes over DDS."""
        name = node_name or self.schema_name
        super().__init__(name, **kwargs)
        self._intra_process = intra_process
        self._local_subscriptions: dict[int, LocalSubscription] = {}  # id(rclpy Subscription) ->
        self.dds_duplicates_ignored: dict[str, int] = {}
        self.queue_overflows: dict[str, int] = {}  # in-process messages pushed out of a full input queue
        self.stats = NodeStats()
        self._started = time.monotonic()
        self._last_warn: dict[str, float] = {}
        self._inputs: dict[str, InputWatch] = {}
        self._loss_ledgers: dict[str, LossLedger] = {}  # inputs whose losses two witnesses report
        self._inputs_lock = threading.Lock()
        self._drops_at_last_diag: dict[str, int] = {}
        self._seen_tracebacks: set[str] = set()
        self.model_status = "n/a"
        self.model_level = DiagnosticStatus.OK
        self._model_error: str | None = None
        self._model_errors_in_row = 0
        self._schema = load_schema(self.schema_name)
        #: typed, validated parameters (ros/contracts/param_types.py); replaced whole by a runtime change
        self.params: ParamGroup = self._declare_and_validate()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._processing_pub = self.create_publisher(Float64, "~/debug/processing_time_ms", output_qos(1))
        self._latency_pub = self.create_publisher(Float64, "~/debug/pipeline_latency_ms", output_qos(1))
        self._info_pub = self.create_publisher(String, "~/debug/node_info", static_qos())
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", output_qos(10))
        # steady clock: under use_sim_time a stalled /clock (dead simulator, paused bag)
        # must not silence the diagnostics that report it
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._diag_due, self._last_processed = False, -math.inf  # see _on_diagnostics_timer
        self._diag_waiting = False  # a due report waits for the frame path's end (_report_after_frame)
        self._diag_timer = self.create_timer(self.params.diagnostics_period_s, self._on_diagnostics_timer,
                                             clock=self._steady)
        # one-shot (reset by _on_frame_path_done): the waiting report, on this node's own thread
        self._report_timer = self.create_timer(REPORT_AFTER_FRAME_S, self._publish_due_report, clock=self._steady)
        self._report_timer.cancel()
        self.publish_node_info()

    # ------------------------------------------------------------ parameters
    def _declare_and_validate(self) -> ParamGroup:
        props = node_definition(self._schema, self.schema_name)["properties"]
        read_only = read_only_parameters(self._schema, self.schema_name)
        unknown = unknown_parameters(self._schema, self.schema_name, self._parameter_overrides)
        if unknown:
            message = (f"{self.schema_name}: unknown parameter(s) {', '.join(unknown)}: not in "
                       f"schema/{self.schema_name}.schema.json (a typo in a param file?)")
            self.get_logger().fatal(message)
            raise ParameterError(message)
        # the given values first, by our rules (one message on every path: ROS would only say
        # "InvalidParameterTypeException" for a type mismatch, and nothing for a NaN)
        given = {n: _plain(p.value) for n, p in self._parameter_overrides.items() if n in props}
        try:
            parse_parameters(self._schema, self.schema_name, given)
        except ParameterError as exc:
            self.get_logger().fatal(str(exc))
            raise
        values: dict[str, Any] = {}
        for name, spec in props.items():
            if spec["type"] == "array":
                ros_type, py_type = _ARRAY_TYPES[spec["items"]["type"]]
            else:
                ros_type, py_type = _TYPES[spec["type"]]
            descriptor = ParameterDescriptor(name=name, type=ros_type, description=spec.get("description", ""),
                                             read_only=name in read_only)
            default = spec.get("default")
            try:
                param = self.declare_parameter(name, py_type if default in (None, []) else default, descriptor)
            except Exception as exc:  # e.g. InvalidParameterTypeException from a param file
                message = f"{self.schema_name}: invalid parameters: {name}: {exc}"
                self.get_logger().fatal(message)
                raise ParameterError(message) from exc
            value = param.value
            values[name] = [] if value is None and spec["type"] == "array" else _plain(value)
        try:
            return parse_parameters(self._schema, self.schema_name, values)
        except ParameterError as exc:
            self.get_logger().fatal(str(exc))
            raise

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        candidate = self.params.as_dict()
        changing = []
        for p in params:
            if p.name not in candidate:
                continue  # rclpy's own (use_sim_time, ...)
            candidate[p.name] = _plain(p.value)
            changing.append(p.name)
        try:
            validated = parse_parameters(self._schema, self.schema_name, candidate, changing)
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.params = validated
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------ QoS
    def input_qos(self):
        return input_qos(self.params.qos.input_reliability, self.params.qos.input_depth)

    def sensor_qos(self):
        """Sensor inputs of nodes that also have pipeline inputs (odometry, vehicle status)."""
        qos = self.params.qos
        return sensor_qos(getattr(qos, "sensor_reliability", "best_effort"), getattr(qos, "sensor_depth", 1))

    def output_qos(self):
        return output_qos(self.params.qos.output_depth)

    # ------------------------------------------------------------ guarded callbacks
    def create_subscription(self, msg_type, topic, callback, qos_profile, *, watch: bool = True,
                            timeout_param: str | None = "input_timeout_s", in_process_direct: bool = False, **kwargs):
        """Like rclpy's, plus: counted, watched (``watch=False``: optional input) and guarded.
        ``in_process_direct``: in a composed process, in-process messages run the callback in the
        publisher's thread instead of a hop to this node's executor (the callback must be
        thread-safe; ros/intra_process.py)."""
        if "_inputs_lock" not in self.__dict__:  # rclpy's own, during Node.__init__ (/clock with use_sim_time)
            return super().create_subscription(msg_type, topic, callback, qos_profile, **kwargs)
        name = input_name(topic)
        with self._inputs_lock:
            self._inputs[name] = InputWatch(topic, timeout_param if watch else None)
        self._info_dirty = True  # node_info lists the inputs: republish with the next report
        if kwargs.get("event_callbacks") is None:
            kwargs["event_callbacks"] = SubscriptionEventCallbacks(
                incompatible_qos=functools.partial(self._on_incompatible_qos, name),
                message_lost=functools.partial(self._on_message_lost, name))
        guarded = self._guarded_input(name, callback)
        bus = self.intra_process
        if bus is None or not is_volatile(qos_profile):
            return super().create_subscription(msg_type, topic, guarded, qos_profile, **kwargs)
        local = LocalSubscription(self, self.resolve_topic_name(topic), msg_type, guarded, queue_depth(qos_profile),
                                  functools.partial(self._on_queue_overflow, name),
                                  requires_reliable=is_reliable(qos_profile), direct=in_process_direct)

        def from_dds(msg, *rest):
            if bus.local_publishers(local.topic, msg_type, local.requires_reliable):  # delivered in-process already
                self.dds_duplicates_ignored[name] = self.dds_duplicates_ignored.get(name, 0) + 1
                return
            guarded(msg, *rest)

        sub = super().create_subscription(msg_type, topic, from_dds, qos_profile, **kwargs)
        self._local_subscriptions[id(sub)] = local
        bus.add_subscription(local)
        return sub

    def create_latest_subscription(self, msg_type, topic, process: Callable[[Any], None], qos_profile, *,
                                   on_arrival: Callable[[Any], None] | None = None, **kwargs) -> LatestFrame:
        """A model stage's input under the latest-frame policy (ros/latest_frame.py): every
        message is counted and passed to ``on_arrival`` (cheap: sequence accounting), only the
        newest one waiting when the node is free reaches ``process``; the others are counted
        as ``dropped/superseded``."""
        name = input_name(topic)

        def work(msg):
            try:
                process(msg)
            except Exception as exc:  # noqa: BLE001 - a callback must never kill the node
                self._callback_failed(f"input {name}", exc, "callback_error")

        def collect():
            """Wait-set executors take one message per wait and run tasks first: read what
            waits in the DDS reader here (as the executor would: its callback, guarded)."""
            sub = latest.subscription
            if sub is None or type(self.executor).__name__ == "EventsExecutor":
                return
            while True:
                with sub.handle:
                    taken = sub.handle.take_message(sub.msg_type, sub.raw)
                if taken is None:
                    return
                sub.callback(taken[0])

        latest = LatestFrame(work, functools.partial(self._on_superseded, name), self._schedule_task, collect)

        def arrive(msg):
            if on_arrival is not None:
                on_arrival(msg)
            latest.offer(msg)

        # in a composed process the arrival runs in the publisher's thread (it only parks the
        # message): the work then needs one hop to this node's thread, not two (bus queue, task)
        kwargs.setdefault("in_process_direct", True)
        latest.subscription = self.create_subscription(msg_type, topic, arrive, qos_profile, **kwargs)
        return latest

    def _schedule_task(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on this node's executor after what is already waiting there (at once when
        the node is not spun: nothing else can be waiting)."""
        executor = self.executor
        if executor is None:
            fn()
        else:
            executor.create_task(fn)

    def _on_superseded(self, name: str, msg: Any) -> None:
        self.drop(SUPERSEDED, f"a newer {name} arrived before this node was free: the older one is skipped "
                              "(latest-frame policy; the model is slower than its input)")

    def create_publisher(self, msg_type, topic, qos_profile, **kwargs):
        """Like rclpy's; in a composed process (``intra_process`` bus) volatile topics also reach
        this process's subscriptions directly (ros/intra_process.py)."""
        publisher = super().create_publisher(msg_type, topic, qos_profile, **kwargs)
        bus = self.intra_process
        if bus is None or not is_volatile(qos_profile):
            return publisher
        wrapped = IntraProcessPublisher(self, publisher, bus, msg_type, reliable=is_reliable(qos_profile))
        bus.add_publisher(wrapped)
        return wrapped

    @property
    def intra_process(self) -> IntraProcessBus | None:
        """The in-process bus this node is on (a composed process), or None (also while
        ``Node.__init__`` creates rclpy's own publishers, before the bus is set)."""
        return self.__dict__.get("_intra_process")

    def destroy_subscription(self, subscription) -> bool:
        local = self.__dict__.get("_local_subscriptions", {}).pop(id(subscription), None)
        if local is not None:
            self.intra_process.remove_subscription(local)
        return super().destroy_subscription(subscription)

    def destroy_publisher(self, publisher) -> bool:
        if isinstance(publisher, IntraProcessPublisher):
            self.intra_process.remove_publisher(publisher)
            publisher = publisher.publisher
        return super().destroy_publisher(publisher)

    def destroy_node(self) -> None:
        if self.intra_process is not None:
            self.intra_process.remove_node(self)
        super().destroy_node()

    def resume_intra_process(self) -> None:
        """Called by ``ros.executors.GraphExecutor`` when it starts spinning this node: the
        in-process messages that arrived while it was not spun are delivered now."""
        for local in list(self._local_subscriptions.values()):
            local.resume()

    def _on_queue_overflow(self, name: str, count: int) -> None:
        """Counted here and reported, not as a drop: the loss itself is counted where DDS
        overwrites are too (sequence gaps downstream, plan timeouts), once."""
        self.queue_overflows[name] = self.queue_overflows.get(name, 0) + count
        self._warn_throttled(f"queue_overflow/{name}", f"in-process queue of input {name} full: oldest message "
                                                       f"replaced ({self.queue_overflows[name]} so far; this node is "
                                                       "slower than its input)")

    def create_timer(self, timer_period_sec, callback, *args, **kwargs):
        if "_inputs_lock" not in self.__dict__:
            return super().create_timer(timer_period_sec, callback, *args, **kwargs)
        return super().create_timer(timer_period_sec, self._guarded_timer(callback) if callback else callback,
                                    *args, **kwargs)

    def _guarded_input(self, name: str, callback: Callable):
        watch = self._inputs[name]

        def guarded(msg, *rest):
            watch.last = time.monotonic()
            self.stats.on_receive(name)
            try:
                callback(msg, *rest)
            except Exception as exc:  # noqa: BLE001 - a callback must never kill the node
                self._callback_failed(f"input {name}", exc, "callback_error")

        return guarded

    def _guarded_timer(self, callback: Callable):
        """Takes no argument on purpose: executors pass a ``TimerInfo`` to timer callbacks
        that accept one, and ours do not."""
        where = getattr(callback, "__name__", "timer")

        def guarded():
            try:
                callback()
            except Exception as exc:  # noqa: BLE001
                self._callback_failed(where, exc, "timer_error")

        return guarded

    def _callback_failed(self, where: str, exc: Exception, reason: str) -> None:
        if not self.context.ok():
            return  # shutting down: publishers are gone, nothing to report to
        key = f"{where}:{type(exc).__name__}"
        detail = f"unexpected {type(exc).__name__} in {where}: {exc}"
        if key not in self._seen_tracebacks and len(self._seen_tracebacks) < 100:
            self._seen_tracebacks.add(key)
            detail += "\n" + "".join(traceback.format_exception(exc))
        try:
            self.drop(reason, detail, level="error")
        except Exception:  # noqa: BLE001 - context shutting down
            pass

    def _on_message_lost(self, name: str, event) -> None:
        change = int(getattr(event, "total_count_change", 0) or 0)
        if change <= 0:
            return
        self._inputs[name].lost += change
        self.count_transport_loss(name, change)

    def count_transport_loss(self, name: str, count: int) -> None:
        """Samples the middleware lost on input ``name``; those a gap in the input's stamps or
        sequence numbers counted already are not counted again (``count_gap_loss``)."""
        ledger = self._loss_ledgers.get(name)
        if ledger is not None:
            count = ledger.from_transport(count, time.monotonic_ns())
        if count:
            self.drop(f"lost_in_transport/{name}", f"the middleware lost {count} message(s) on input {name}",
                      count=count)

    def watch_gaps(self, name: str) -> None:
        """Input ``name`` has a second witness of its losses (stamp or sequence gaps): from now on
        the middleware's ``message_lost`` reports and the gaps are reconciled, each loss counted once."""
        self._loss_ledgers.setdefault(name, LossLedger())

    def count_gap_loss(self, name: str, reason: str, count: int, detail: str) -> None:
        """``count`` samples of input ``name`` that a gap shows missing; counted as ``reason``
        unless the middleware reported them lost already. ``detail`` may use ``{n}``."""
        self.watch_gaps(name)
        new = self._loss_ledgers[name].from_gap(count, time.monotonic_ns())
        if new:
            self.drop(reason, detail.format(n=new), count=new)

    def _on_incompatible_qos(self, name: str, event) -> None:
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        self._inputs[name].incompatible = policy
        self.get_logger().error(f"a publisher on input {name} ({self.resolve_topic_name(self._inputs[name].topic)}) "
                                f"offers incompatible QoS ({policy}): nothing from it will arrive. See docs/operations.md#qos")

    # ------------------------------------------------------------ counting
    def _warn_throttled(self, key: str, text: str, throttle_s: float = 2.0, level: str = "warning") -> None:
        now = time.monotonic()
        if now - self._last_warn.get(key, -1e9) >= throttle_s:
            self._last_warn[key] = now
            # one call site per severity: rclpy's logger raises "Logger severity cannot be
            # changed between calls" when one source line logs at two severities
            logger = self.get_logger()
            if level == "error":
                logger.error(text)
            elif level == "info":
                logger.info(text)
            else:
                logger.warning(text)

    def drop(self, reason: str, detail: str = "", throttle_s: float = 2.0, count: int = 1, level: str = "warning") -> None:
        """Count ``count`` dropped inputs and warn (throttled per reason)."""
        count = max(1, int(count))
        total = self.stats.on_drop(reason)
        if count > 1:  # O(1) even for a huge gap (a sequence or stamp jump)
            with self.stats._lock:
                self.stats.dropped[reason] += count - 1
                total = self.stats.dropped[reason]
        self._warn_throttled(reason, f"dropped input ({reason}, {total} so far): {detail}", throttle_s, level)

    def count_lost_frames(self, sequence: int, input_name: str = "frame") -> None:
        """Count SensorFrames that never reached this node (e.g. a full input queue), from the
        sequence numbers of ``input_name`` (once: not again as ``lost_in_transport``)."""
        if not hasattr(self, "_frame_gaps"):
            self._frame_gaps = SequenceGapCounter()
            self.watch_gaps(input_name)
        gap = self._frame_gaps.update(int(sequence))
        if gap:
            self.count_gap_loss(input_name, "frame_lost_upstream", gap,
                                f"{{n}} sensor frame(s) before #{sequence} never arrived "
                                "(dropped upstream, a full input queue, or an upstream restart)")

    def now_ns(self) -> int:
        """This node's clock in ns: the simulation time under an active /clock, else the system
        time, read without building an rclpy ``Time`` (on the frame path)."""
        clock = self.get_clock()
        if getattr(clock, "ros_time_is_active", True):
            return clock.now().nanoseconds
        return time.time_ns()  # rcl's system time is the realtime clock

    @contextlib.contextmanager
    def processing(self, stamp_ns: int | None = None):
        """Time a processing step (counted in the diagnostics); ~/debug/processing_time_ms and
        ~/debug/pipeline_latency_ms are published only while someone subscribes to them."""
        start = time.perf_counter()
        yield
        elapsed_ms = (time.perf_counter() - start) * 1e3
        latency_ms = None
        if stamp_ns:
            latency_ms = (self.now_ns() - stamp_ns) * 1e-6
            if self._latency_pub.get_subscription_count():
                self._latency_pub.publish(Float64(data=latency_ms))
        self.stats.on_processed(elapsed_ms, latency_ms)
        if self._processing_pub.get_subscription_count():
            self._processing_pub.publish(Float64(data=elapsed_ms))
        self._last_processed = time.monotonic()
        if self._diag_due:  # the frame's output is out
            self._report_after_frame()

    def _report_after_frame(self) -> None:
        """A report is due and this node's output is out. In a composed process the frame is
        still on its way through the other nodes, whose Python shares the GIL with the report
        (built on a frame thread it delayed the frame ~1 ms): the report waits until the frame
        path's end (``IntraProcessBus.after_frame``) and is built on this node's own thread
        ``REPORT_AFTER_FRAME_S`` later. The node that ends the path (the planner), or one outside
        a composed process, builds it now."""
        bus = self.intra_process
        if bus is not None and not bus.is_frame_end(self):
            if self._diag_waiting or bus.after_frame(self._on_frame_path_done):
                self._diag_waiting = True
                return
        self._diag_due = False
        self._publish_diagnostics()

    def _on_frame_path_done(self) -> None:
        self._report_timer.reset()  # any thread: the timer fires on this node's executor

    def _publish_due_report(self) -> None:
        self._report_timer.cancel()  # one shot
        self._diag_waiting = False
        if self._diag_due:  # not published by a tick meanwhile
            self._diag_due = False
            self._publish_diagnostics()

    # ------------------------------------------------------------ model status
    def model_succeeded(self) -> None:
        if self._model_errors_in_row:
            if self._model_error is not None:
                self.get_logger().info("model recovered")
            self._model_errors_in_row = 0
            self._model_error = None

    def model_failed(self, exc: BaseException) -> None:
        self._model_errors_in_row += 1
        if self._model_errors_in_row >= MODEL_ERROR_STREAK:
            if self._model_error is None:
                self.get_logger().error(f"model failing ({self._model_errors_in_row} calls in a row): {exc}")
            self._model_error = f"model failing ({self._model_errors_in_row} in a row): {type(exc).__name__}: {exc}"

    # ------------------------------------------------------------ static info
    def publish_node_info(self) -> None:
        """``~/debug/node_info`` (transient local): what this node runs with, as JSON."""
        info = {"node": self.get_fully_qualified_name(), "schema": self.schema_name, "model": self.model_status,
                "parameters": self.params.as_dict(), "inputs": {k: w.topic for k, w in self._inputs.items()},
                "use_sim_time": bool(self.get_parameter("use_sim_time").value)}
        self._info_pub.publish(String(data=json.dumps(info, default=str, sort_keys=True)))

    # ------------------------------------------------------------ diagnostics
    def diagnostic_values(self) -> dict[str, str]:
        """Extra key/values for the diagnostics message (subclasses extend)."""
        return {}

    def diagnostic_problems(self) -> list[tuple[int, str]]:
        """Node-specific (level, message) problems (subclasses extend)."""
        return []

    def unheard_publishers(self) -> list[str]:
        """Inputs delivered in-process that also have publishers which are not on this
        process's bus (another process, a plain rclpy node): those are not heard
        (ros/intra_process.py); a misconfiguration worth a warning."""
        bus = self.intra_process
        out = []
        for local in list(self._local_subscriptions.values()):
            mine = bus.local_publishers(local.topic, local.msg_type, local.requires_reliable)
            if mine and self.count_publishers(local.topic) > mine:
                out.append(f"{local.topic} has publishers that are not in-process, and they are not heard "
                           "(in-process delivery: one publisher per topic; `latentvla run --no-intra-process`)")
        return out

    def input_ages(self, now: float | None = None) -> dict[str, float | None]:
        now = time.monotonic() if now is None else now
        with self._inputs_lock:
            return {k: (None if w.last is None else now - w.last) for k, w in self._inputs.items()}

    def stale_inputs(self, now: float | None = None) -> dict[str, float | None]:
        """Watched inputs silent for longer than their timeout: {name: age or None (never received)}."""
        now = time.monotonic() if now is None else now
        out = {}
        with self._inputs_lock:
            watches = list(self._inputs.items())
        for name, w in watches:
            if w.timeout_param is None or w.timeout_param not in self.params:
                continue
            timeout = float(self.params.value(w.timeout_param))
            age = None if w.last is None else now - w.last
            if (age is None and now - self._started > timeout) or (age is not None and age > timeout):
                out[name] = age
        return out

    def diagnostic_status(self) -> DiagnosticStatus:
        snap = self.stats.snapshot()
        now = time.monotonic()
        values = {f"received/{k}": str(v) for k, v in snap["received"].items()}
        values.update({f"rate_hz/{k}": f"{self.stats.input_rate_hz(k):.2f}" for k in snap["received"]})
        for name, age in self.input_ages(now).items():
            values[f"age_s/{name}"] = "never" if age is None else f"{age:.2f}"
        values.update({f"published/{k}": str(v) for k, v in snap["published"].items()})
        values.update({f"dropped/{k}": str(v) for k, v in snap["dropped"].items()})
        values["dropped_total"] = str(snap["dropped_total"])
        for series in ("processing", "latency"):  # over the last NodeStats window of frames
            summary = snap[series]
            values[f"{series}_count"] = str(summary["count"])
            for key in ("median_ms", "p99_ms", "max_ms"):
                if key in summary:
                    values[f"{series}_{key}"] = f"{summary[key]:.2f}"
        values["model"] = self.model_status
        values["uptime_s"] = f"{now - self._started:.1f}"
        values.update(self.diagnostic_values())
        values["intra_process"] = "on" if self.intra_process is not None and self.intra_process.enabled else "off"
        values.update({f"intra_process/dds_duplicates_ignored/{k}": str(v)
                       for k, v in sorted(self.dds_duplicates_ignored.items())})
        values.update({f"intra_process/queue_overflow/{k}": str(v) for k, v in sorted(self.queue_overflows.items())})

        problems: list[tuple[int, str]] = []
        if level_value(self.model_level) != OK:
            problems.append((level_value(self.model_level), self.model_status))
        if self._model_error:
            problems.append((ERROR, self._model_error))
        stale = self.stale_inputs(now)
        values["stale_inputs"] = ",".join(sorted(stale)) or "-"
        for name, age in sorted(stale.items()):
            problems.append((WARN, f"no {name} " + ("since start" if age is None else f"for {age:.1f} s")))
        with self._inputs_lock:
            incompatible = {k: w.incompatible for k, w in self._inputs.items() if w.incompatible}
        for name, policy in incompatible.items():
            problems.append((ERROR, f"incompatible QoS on {name} ({policy})"))
        new_drops = {k: v - self._drops_at_last_diag.get(k, 0) for k, v in snap["dropped"].items()}
        new_drops = {k: v for k, v in new_drops.items() if v > 0}
        self._drops_at_last_diag = dict(snap["dropped"])
        if new_drops:
            text = ", ".join(f"{k}: {v}" for k, v in sorted(new_drops.items()))
            problems.append((WARN, f"dropped {sum(new_drops.values())} input(s) since last report ({text})"))
        problems.extend((level_value(lv), m) for lv, m in self.diagnostic_problems())
        problems.extend((WARN, m) for m in self.unheard_publishers())
        level = max([p[0] for p in problems], default=OK)
        message = "; ".join(m for lv, m in problems if lv == level) if problems else "ok"
        return DiagnosticStatus(level=bytes([level]),
                                name=f"latentvla: {self.get_fully_qualified_name()}", message=message,
                                hardware_id="latentvla_ros",
                                values=[KeyValue(key=k, value=str(v)) for k, v in sorted(values.items())])

    def _on_diagnostics_timer(self) -> None:
        """While frames flow (one processed within the last period) the report is built right
        after the next frame's output instead of at a random moment on the frame thread, where
        it delayed the frame it met (the p99); a second tick without a frame publishes it (also
        one still waiting for the frame path's end, ``_report_after_frame``)."""
        if self._diag_due or time.monotonic() - self._last_processed > self.params.diagnostics_period_s \
                or not self._diag_pub.get_subscription_count():
            self._diag_due = False
            self._publish_diagnostics()
        else:
            self._diag_due = True

    def _publish_diagnostics(self) -> None:
        if self.__dict__.pop("_info_dirty", False):
            self.publish_node_info()
        if not self._diag_pub.get_subscription_count():
            return  # nobody listens: building the report would only cost the frame threads time
        status = self.diagnostic_status()
        self._diag_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))


MAX_PLAUSIBLE_SPEED_MPS = 150.0
MAX_PLAUSIBLE_YAW_RATE_RPS = 20.0


def checked_odometry(msg):
    """``conversions.odometry_velocity`` plus a plausibility check: within physical bounds
    (a 1e300 m/s twist is a malformed message, not a fast car), so finite in float32 too.
    Plain ``math`` on the scalars: numpy on two floats costs more than the check."""
    from latentvla_ros.ros.conversions import ConversionError, odometry_velocity

    tw = msg.twist.twist
    vx, vy, yaw_rate = tw.linear.x, tw.linear.y, tw.angular.z
    if math.isfinite(vx) and math.isfinite(vy) and math.isfinite(yaw_rate) and not (  # NaN/inf: raised below
            math.hypot(vx, vy) <= MAX_PLAUSIBLE_SPEED_MPS and abs(yaw_rate) <= MAX_PLAUSIBLE_YAW_RATE_RPS):
        raise ConversionError(f"implausible odometry twist (v={[vx, vy]}, yaw rate={yaw_rate})")
    return odometry_velocity(msg)  # raises on NaN/inf


def level_value(level) -> int:
    """DiagnosticStatus.level (bytes in rclpy) -> int."""
    return level[0] if isinstance(level, (bytes, bytearray)) else int(level)

