"""Common shell of every latentvla node: parameters from the schema, QoS, counters,
debug topics and diagnostics. Subclasses only convert messages and call the core."""
from __future__ import annotations

import contextlib
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Float64

from latentvla_ros.core.monitoring import NodeStats, SequenceGapCounter
from latentvla_ros.core.parameters import ParameterError, load_schema, node_definition, validate_parameters
from latentvla_ros.ros.qos import input_qos, output_qos

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

# Parameters that only take effect at start-up (they shape subscriptions or models).
_RUNTIME_SETTABLE = {"plan_timeout_s", "input_timeout_s", "fallback_deceleration_mps2"}


class LatentVlaNode(Node):
    """Base node: declares every schema parameter, validates, publishes debug + diagnostics."""

    schema_name: str = ""

    def __init__(self, node_name: str | None = None, **kwargs: Any):
        name = node_name or self.schema_name
        super().__init__(name, **kwargs)
        self.stats = NodeStats()
        self._schema = load_schema(self.schema_name)
        self.params = self._declare_and_validate()
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._processing_pub = self.create_publisher(Float64, "~/debug/processing_time_ms", output_qos(1))
        self._latency_pub = self.create_publisher(Float64, "~/debug/pipeline_latency_ms", output_qos(1))
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", output_qos(10))
        self._diag_timer = self.create_timer(float(self.params["diagnostics_period_s"]), self._publish_diagnostics)
        self._last_warn: dict[str, float] = {}
        self.model_status = "n/a"
        self.model_level = DiagnosticStatus.OK

    # ------------------------------------------------------------ parameters
    def _declare_and_validate(self) -> dict[str, Any]:
        props = node_definition(self._schema, self.schema_name)["properties"]
        values: dict[str, Any] = {}
        for name, spec in props.items():
            if spec["type"] == "array":
                ros_type, py_type = _ARRAY_TYPES[spec["items"]["type"]]
            else:
                ros_type, py_type = _TYPES[spec["type"]]
            descriptor = ParameterDescriptor(name=name, type=ros_type, description=spec.get("description", ""),
                                             read_only=name not in _RUNTIME_SETTABLE)
            default = spec.get("default")
            param = self.declare_parameter(name, py_type if default in (None, []) else default, descriptor)
            value = param.value
            values[name] = [] if value is None and spec["type"] == "array" else value
        for key in ("camera_names",):
            if key in values and values[key] is not None:
                values[key] = list(values[key])
        try:
            return validate_parameters(self._schema, self.schema_name, values)
        except ParameterError as exc:
            self.get_logger().fatal(str(exc))
            raise

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        candidate = dict(self.params)
        for p in params:
            if p.name not in candidate:
                continue  # rclpy's own (use_sim_time, ...)
            candidate[p.name] = p.value
        try:
            validated = validate_parameters(self._schema, self.schema_name, candidate)
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.params = validated
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------ QoS
    def input_qos(self):
        return input_qos(self.params["qos.input_reliability"], self.params["qos.input_depth"])

    def output_qos(self):
        return output_qos(self.params["qos.output_depth"])

    # ------------------------------------------------------------ counting
    def drop(self, reason: str, detail: str = "", throttle_s: float = 2.0) -> None:
        """Count a dropped input and warn (throttled per reason)."""
        total = self.stats.on_drop(reason)
        now = time.monotonic()
        if now - self._last_warn.get(reason, -1e9) >= throttle_s:
            self._last_warn[reason] = now
            self.get_logger().warning(f"dropped input ({reason}, {total} so far): {detail}")

    def count_lost_frames(self, sequence: int) -> None:
        """Count SensorFrames that never reached this node (e.g. a full input queue)."""
        if not hasattr(self, "_frame_gaps"):
            self._frame_gaps = SequenceGapCounter()
        gap = self._frame_gaps.update(int(sequence))
        if gap:
            for _ in range(gap):
                self.stats.on_drop("frame_lost_upstream")
            self.drop("frame_lost_upstream", f"{gap} sensor frame(s) before #{sequence} never arrived (input queue full?)", 2.0)
            self.stats.dropped["frame_lost_upstream"] -= 1  # drop() counted one of them again

    @contextlib.contextmanager
    def processing(self, stamp_ns: int | None = None):
        """Time a processing step; publishes ~/debug/processing_time_ms and pipeline latency."""
        start = time.perf_counter()
        yield
        elapsed_ms = (time.perf_counter() - start) * 1e3
        latency_ms = None
        if stamp_ns:
            latency_ms = (self.get_clock().now().nanoseconds - stamp_ns) * 1e-6
            self._latency_pub.publish(Float64(data=latency_ms))
        self.stats.on_processed(elapsed_ms, latency_ms)
        self._processing_pub.publish(Float64(data=elapsed_ms))

    # ------------------------------------------------------------ diagnostics
    def diagnostic_values(self) -> dict[str, str]:
        """Extra key/values for the diagnostics message (subclasses extend)."""
        return {}

    def _publish_diagnostics(self) -> None:
        snap = self.stats.snapshot()
        values = {f"received/{k}": str(v) for k, v in snap["received"].items()}
        values.update({f"rate_hz/{k}": f"{self.stats.input_rate_hz(k):.2f}" for k in snap["received"]})
        values.update({f"published/{k}": str(v) for k, v in snap["published"].items()})
        values.update({f"dropped/{k}": str(v) for k, v in snap["dropped"].items()})
        for key in ("median_ms", "p99_ms"):
            if key in snap["processing"]:
                values[f"processing_{key}"] = f"{snap['processing'][key]:.2f}"
            if key in snap["latency"]:
                values[f"latency_{key}"] = f"{snap['latency'][key]:.2f}"
        values["model"] = self.model_status
        values.update(self.diagnostic_values())
        level, message = self.model_level, "ok"
        if self.model_level != DiagnosticStatus.OK:
            message = self.model_status
        status = DiagnosticStatus(level=level, name=f"latentvla: {self.get_fully_qualified_name()}", message=message,
                                  hardware_id="latentvla_ros",
                                  values=[KeyValue(key=k, value=v) for k, v in sorted(values.items())])
        self._diag_pub.publish(DiagnosticArray(header=self._diag_header(), status=[status]))

    def _diag_header(self):
        from std_msgs.msg import Header

        return Header(stamp=self.get_clock().now().to_msg())


def load_model_runtime(node: LatentVlaNode, runtime_cls, config_cls):
    """Build a core runtime (BevFeatureExtractor, LatentReasoner, TrajectoryPlanner) from the
    node's checkpoint/preset/device parameters. A missing or corrupt checkpoint is reported
    loudly and the node runs with untrained weights, flagged in model_id and diagnostics."""
    from latentvla_ros.core.checkpoint import CheckpointError
    from latentvla_ros.core.resources import resolve_path

    p = node.params
    kwargs = dict(device=p["device"], torch_threads=p["torch_threads"] or None, backend=p["backend"])
    path = resolve_path(p["checkpoint"]) if p["checkpoint"] else None
    problem = ""
    if path is not None and not path.is_dir():
        problem = f"checkpoint {path} does not exist"
        path = None
    try:
        runtime = runtime_cls(config=config_cls.preset(p["preset"]), checkpoint_dir=path, **kwargs)
    except CheckpointError as exc:
        problem = f"checkpoint rejected: {exc}"
        runtime = runtime_cls(config=config_cls.preset(p["preset"]), checkpoint_dir=None, **kwargs)
    node.model_status = runtime.model_id
    if runtime.untrained:
        node.model_level = DiagnosticStatus.WARN
        node.model_status = f"{runtime.model_id} ({problem or 'no checkpoint given'})"
        node.get_logger().error(
            "*** RUNNING WITH UNTRAINED WEIGHTS *** "
            f"{problem or 'no checkpoint given'}; outputs are published with model_id {runtime.model_id!r}")
    else:
        node.get_logger().info(f"loaded {runtime.model_id} from {path}")
    return runtime
