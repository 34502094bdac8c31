"""Node parameters: JSON schemas (``schema/<node>.schema.json``) and param files.

Schemas list every parameter of a node as a flat property (dotted names for
groups, e.g. ``qos.sensor_depth``) with type, default, description and bounds.
Param files use the ROS 2 layout (``<node or /**>: ros__parameters: {...}``),
nested groups are flattened to dotted names. Validation happens before any use;
a bad value raises ``ParameterError`` naming the parameter and the reason.

One rule set on every path (``latentvla run --set``, param files, ``ros2 launch``,
runtime changes), the one ROS applies:

- Values are read as ROS reads them (``load_ros_yaml``: rcl_yaml_param_parser's scalar
  rules, so ``5e-2`` is a double and ``'5'`` a string; PyYAML's YAML 1.1 rules differ).
- Types are ROS parameter types: an integer is no double and a double no integer
  (rclpy refuses such a value when it declares the parameter). ``latentvla run --set``
  turns an integer for a double into the double (``GraphOptions.validate``).
- A number the schema bounds must be finite (NaN compares false with every bound, so
  JSON Schema alone lets ``.nan`` through).
- ``device: cuda[:N]`` must name a device that exists.
- Groups a core config checks as a whole (``GROUP_CONFIGS``) pass that config's checks.
- At run time, a parameter the schema marks ``"readOnly": true`` is refused.

``parse_parameters`` is that check; it returns the node's typed dataclass
(``param_types.py``, generated from the schemas by ``typed_params.py``).
"""
from __future__ import annotations

import copy
import difflib
import json
import math
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from latentvla_ros.core.config_base import ConfigError
from latentvla_ros.core.extrinsics import Extrinsics
from latentvla_ros.core.obstacle_guard import GuardConfig
from latentvla_ros.core.resources import share_path
from latentvla_ros.core.tracking import TwistConfig
from latentvla_ros.ros.contracts.param_types import PARAM_TYPES
from latentvla_ros.ros.contracts.typed_params import ParamGroup


class ParameterError(ValueError):
    """A parameter value (or file) is invalid; the message says which and why."""


def load_schema(node_name: str) -> dict[str, Any]:
    path = share_path("schema", f"{node_name}.schema.json")
    try:
        schema = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ParameterError(f"no parameter schema for node {node_name!r} ({path})") from exc
    jsonschema.Draft7Validator.check_schema(schema)
    return schema


def node_definition(schema: dict[str, Any], node_name: str) -> dict[str, Any]:
    return schema["definitions"][node_name]


def defaults_from_schema(schema: dict[str, Any], node_name: str) -> dict[str, Any]:
    props = node_definition(schema, node_name)["properties"]
    return {name: copy.deepcopy(spec["default"]) for name, spec in props.items() if "default" in spec}


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _node_keys(node_name: str, namespace: str) -> list[str]:
    ns = namespace.strip("/")
    full = f"/{ns}/{node_name}" if ns else f"/{node_name}"
    return ["/**", f"/**/{node_name}", node_name, full, full.lstrip("/")]


# ---------------------------------------------------------------- values as ROS reads them
_BOOL_WORDS = {**dict.fromkeys(("Y", "y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"), True),
               **dict.fromkeys(("N", "n", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"), False)}
_YAML_SPECIAL = {".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan}
_YAML_SPECIAL.update({f"{sign}{word}": (-math.inf if sign == "-" else math.inf)
                      for sign in ("", "+", "-") for word in (".inf", ".Inf", ".INF")})
_C_INT = re.compile(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")  # strtol(s, &end, 0), all consumed
_C_DEC = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")  # strtod, decimal form
_C_HEX = re.compile(r"\s*[+-]?0[xX]([0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)([pP][+-]?\d+)?")
_C_SPECIAL = re.compile(r"\s*[+-]?(inf|infinity|nan(\([0-9A-Za-z_]*\))?)", re.IGNORECASE)


def ros_scalar(text: str) -> bool | int | float | str:
    """An unquoted YAML scalar as ROS types it (rcl_yaml_param_parser ``get_value``): the bool
    words, then a C ``strtol`` integer (base 0: ``0x10``, octal ``010``), then a C ``strtod``
    double (``5e-2``, ``.inf``, ``nan``), else a string. Out of range numbers stay strings."""
    if text in _BOOL_WORDS:
        return _BOOL_WORDS[text]
    m = _C_INT.fullmatch(text)
    if m:
        digits = m.group(2)
        base = 16 if digits[:2] in ("0x", "0X") else 8 if len(digits) > 1 and digits[0] == "0" else 10
        value = int(digits, base) * (-1 if m.group(1) == "-" else 1)
        if -2**63 <= value < 2**63:
            return value
    if text in _YAML_SPECIAL:
        return _YAML_SPECIAL[text]
    if _C_SPECIAL.fullmatch(text):
        return float(text.strip().split("(")[0])
    if _C_DEC.fullmatch(text) or _C_HEX.fullmatch(text):
        body = text.strip()
        value = float(body) if _C_DEC.fullmatch(text) else float.fromhex(body)
        mantissa_digits = re.sub(r"[pPeE].*$", "", body.lower().replace("0x", ""))
        underflow = value == 0.0 and any(c not in "0.+-" for c in mantissa_digits)
        if math.isfinite(value) and not underflow:  # strtod sets ERANGE: rcl keeps the text
            return value
    return text


class _RosParamLoader(yaml.SafeLoader):
    """PyYAML structure (mappings, sequences, quoting), rcl's scalar typing of values. Keys
    stay strings, as in rcl (a parameter named ``y`` or ``on`` is no bool)."""

    def construct_mapping(self, node, deep=False):
        if not isinstance(node, yaml.MappingNode):
            return super().construct_mapping(node, deep)
        return {self.construct_scalar(k) if isinstance(k, yaml.ScalarNode) else self.construct_object(k, deep):
                self.construct_object(v, deep) for k, v in node.value}


_RosParamLoader.yaml_implicit_resolvers = {}  # every plain scalar reaches the str constructor


def _construct_ros_scalar(loader: yaml.SafeLoader, node: yaml.ScalarNode):
    text = loader.construct_scalar(node)
    return text if node.style in ("'", '"', "|", ">") else ros_scalar(text)


_RosParamLoader.add_constructor("tag:yaml.org,2002:str", _construct_ros_scalar)


def load_ros_yaml(text: str) -> Any:
    """YAML text (a param file, or the value of ``-p name:=value``) with ROS's value types."""
    return yaml.load(text, Loader=_RosParamLoader)  # a SafeLoader subclass


def parse_override_value(raw: str) -> Any:
    """The VALUE of ``--set NODE.PARAM=VALUE``, as ROS would read ``-p PARAM:=VALUE``."""
    if not raw.strip():
        return ""
    try:
        return load_ros_yaml(raw)
    except yaml.YAMLError as exc:
        raise ParameterError(f"cannot parse value {raw!r}: {str(exc).splitlines()[0]}") from exc


def load_param_file(path: str | Path, node_name: str, namespace: str = "") -> dict[str, Any]:
    """Parameters a ROS 2 param file gives ``node_name`` (wildcards first, then specific keys)."""
    try:
        data = load_ros_yaml(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ParameterError(f"cannot read param file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ParameterError(f"param file {path}: top level must be a mapping")
    out: dict[str, Any] = {}
    for key in _node_keys(node_name, namespace):
        section = data.get(key)
        if section is None:
            continue
        if not isinstance(section, dict) or "ros__parameters" not in section:
            raise ParameterError(f"param file {path}: section {key!r} lacks ros__parameters")
        out.update(flatten(section["ros__parameters"] or {}))
    return out


# ---------------------------------------------------------------- validation
_ROS_TYPE_NAMES = {"number": "double", "integer": "integer", "string": "string", "boolean": "bool"}
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
# Parameters rclpy itself understands: never "unknown".
RCLPY_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})
RCLPY_PREFIXES = ("qos_overrides.",)
# Parameter groups a core config checks as a whole (rules across fields that JSON Schema
# cannot state, e.g. a LiDAR frame name, coast between brake and throttle).
GROUP_CONFIGS = {("bev_features", "lidar_extrinsics"): Extrinsics, ("trajectory_planner", "lidar_extrinsics"): Extrinsics,
                 ("trajectory_planner", "obstacle_guard"): GuardConfig, ("twist_controller", "twist"): TwistConfig}


def _is_type(value: Any, json_type: str) -> bool:
    if json_type == "number":
        return isinstance(value, float)
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "boolean":
        return isinstance(value, bool)
    return isinstance(value, str)


def _ros_type_problem(name: str, spec: dict[str, Any], value: Any) -> str | None:
    """Why ROS would refuse ``value`` for a parameter of this schema type (None: it would not)."""
    if spec["type"] == "array":
        item_type = spec["items"]["type"]
        if not isinstance(value, (list, tuple)) or not all(_is_type(v, item_type) for v in value):
            return f"{name}: expects an array of {_ROS_TYPE_NAMES[item_type]}s, got {value!r}"
        return None
    if _is_type(value, spec["type"]):
        return None
    hint = " (write it with a decimal point, e.g. 1.0)" if spec["type"] == "number" and _is_type(value, "integer") else ""
    return f"{name}: expects {_ROS_TYPE_NAMES[spec['type']]}, got {type(value).__name__} {value!r}{hint}"


def _finite_problem(name: str, spec: dict[str, Any], value: Any) -> str | None:
    item = spec["items"] if spec["type"] == "array" else spec
    if item.get("type") != "number" or not any(b in item for b in _BOUNDS):
        return None
    values = value if isinstance(value, (list, tuple)) else [value]
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        return f"{name}: {value!r} is not a finite number"
    return None


def device_problem(device: str, backend: str = "torch") -> str | None:
    """Why ``device`` cannot run here (None: it can). Imports torch / onnxruntime only for CUDA."""
    if not device.startswith("cuda"):
        return None
    if backend == "onnx":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return f"device: {device!r} requested, but onnxruntime has no CUDAExecutionProvider here (use cpu)"
        return None
    import torch

    if not torch.cuda.is_available():
        return f"device: {device!r} requested, but CUDA is not available to torch here (use cpu)"
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        return f"device: {device!r} requested, but torch sees {torch.cuda.device_count()} CUDA device(s)"
    return None


def unknown_parameters(schema: dict[str, Any], node_name: str, names) -> list[str]:
    """Names that are neither in the node's schema nor rclpy's own, each with a suggestion."""
    known = node_definition(schema, node_name)["properties"]
    out = []
    for name in sorted(names):
        if name in known or name in RCLPY_PARAMETERS or name.startswith(RCLPY_PREFIXES):
            continue
        close = difflib.get_close_matches(name, list(known), n=1)
        out.append(name + (f" (did you mean {close[0]}?)" if close else ""))
    return out


def coerce_integers_to_doubles(schema: dict[str, Any], node_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with integers given for double (or double array) parameters as floats."""
    known = node_definition(schema, node_name)["properties"]
    out = dict(params)
    for name, value in params.items():
        spec = known.get(name)
        if spec is None:
            continue
        item_type = spec["items"]["type"] if spec["type"] == "array" else spec["type"]
        if item_type != "number":
            continue
        if _is_type(value, "integer"):
            out[name] = float(value)
        elif isinstance(value, list) and all(_is_type(v, "integer") or _is_type(v, "number") for v in value):
            out[name] = [float(v) for v in value]
    return out


def validate_parameters(schema: dict[str, Any], node_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate a flat parameter dict (defaults filled in); returns the complete dict.

    Parameters that the node does not know (e.g. ``use_sim_time`` or another node's
    section of a shared file) are ignored here: rclpy handles its own ones, and
    ``unknown_parameters`` finds typos. Checks: ROS parameter types, the schema
    (JSON Schema), finite bounded numbers, the groups of ``GROUP_CONFIGS``, an available device.
    """
    definition = node_definition(schema, node_name)
    known = definition["properties"]
    merged = defaults_from_schema(schema, node_name)
    given = {k: v for k, v in params.items() if k in known}
    merged.update(given)
    reasons = [r for k, v in sorted(given.items()) if (r := _ros_type_problem(k, known[k], v))]
    validator = jsonschema.Draft7Validator(definition)
    for err in sorted(validator.iter_errors(merged), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in err.path) or "(parameters)"
        if not any(r.startswith(f"{where}:") for r in reasons):
            reasons.append(f"{where}: {err.message}")
    reasons += [r for k, v in sorted(merged.items()) if (r := _finite_problem(k, known[k], v))]
    for (node, group), config_cls in GROUP_CONFIGS.items():
        if node == node_name and not reasons:
            try:
                config_cls(**{k.removeprefix(group + "."): v for k, v in merged.items() if k.startswith(group + ".")})
            except ConfigError as exc:
                reasons.append(f"{group}.{exc}")
    if not reasons and isinstance(merged.get("device"), str):
        problem = device_problem(merged["device"], str(merged.get("backend", "torch")))
        if problem:
            reasons.append(problem)
    if reasons:
        raise ParameterError(f"{node_name}: invalid parameters: " + "; ".join(reasons))
    return merged


def read_only_parameters(schema: dict[str, Any], node_name: str) -> frozenset[str]:
    """Parameters the schema marks ``"readOnly": true``: they shape subscriptions or models,
    take effect at start-up only and are refused at run time."""
    return frozenset(n for n, spec in node_definition(schema, node_name)["properties"].items() if spec.get("readOnly"))


def parse_parameters(schema: dict[str, Any], node_name: str, params: dict[str, Any],
                     changing=()) -> ParamGroup:
    """THE check of a node's parameters, on every path (``latentvla run``, param files,
    ``ros2 launch``, node start, runtime changes): ``validate_parameters`` plus, for a runtime
    change of the parameters named in ``changing``, the schema's ``readOnly``. Returns the
    node's typed parameters (``param_types.py``); raises ``ParameterError`` naming the
    parameter, its value and the rule."""
    read_only = sorted(set(changing) & read_only_parameters(schema, node_name))
    if read_only:
        raise ParameterError(f"{node_name}: invalid parameters: " + "; ".join(
            f"{name}: read-only (readOnly in schema/{node_name}.schema.json): set it at start-up, "
            f"not at run time (got {params.get(name)!r})" for name in read_only))
    return PARAM_TYPES[node_name].from_flat(validate_parameters(schema, node_name, params))


def validate_node_config(node_name: str, files, overrides: dict[str, Any] | None = None,
                         namespace: str = "") -> tuple[dict[str, Any], dict[str, Any]]:
    """Everything a node will start with, checked before it starts (``latentvla run``,
    ``ros2 launch``): its param files (unknown parameters refused), then ``overrides``
    (integers for doubles become doubles, as ``-p`` literals; unknown ones refused).
    Returns (the typed parameters, the overrides to pass)."""
    schema = load_schema(node_name)
    merged: dict[str, Any] = {}
    for path in files:
        from_file = load_param_file(path, node_name, namespace)
        unknown = unknown_parameters(schema, node_name, from_file)
        if unknown:
            raise ParameterError(f"{node_name}: unknown parameter(s) {', '.join(unknown)} in {path}")
        merged.update(from_file)
    overrides = coerce_integers_to_doubles(schema, node_name, dict(overrides or {}))
    unknown = unknown_parameters(schema, node_name, overrides)
    if unknown:
        raise ParameterError(f"{node_name}: unknown parameter(s) {', '.join(unknown)} "
                             f"(not in schema/{node_name}.schema.json)")
    merged.update(overrides)
    return parse_parameters(schema, node_name, merged), overrides


def validate_param_file(path: str | Path, node_name: str) -> ParamGroup:
    schema = load_schema(node_name)
    return parse_parameters(schema, node_name, load_param_file(path, node_name))
