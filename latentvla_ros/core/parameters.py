"""Node parameters: JSON schemas (``schema/<node>.schema.json``) and param files.

Schemas list every parameter of a node as a flat property (dotted names for
groups, e.g. ``qos.sensor_depth``) with type, default, description and bounds.
Param files use the ROS 2 layout (``<node or /**>: ros__parameters: {...}``),
nested groups are flattened to dotted names. Validation happens before any use;
a bad value raises ``ParameterError`` naming the parameter and the reason.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from latentvla_ros.core.resources import share_path


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


def load_param_file(path: str | Path, node_name: str, namespace: str = "") -> dict[str, Any]:
    """Parameters a ROS 2 param file gives ``node_name`` (wildcards first, then specific keys)."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
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


def validate_parameters(schema: dict[str, Any], node_name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate a flat parameter dict (defaults filled in); returns the complete dict.

    Parameters that the node does not know (e.g. ``use_sim_time`` or another node's
    section of a shared file) are ignored here: rclpy handles its own ones.
    """
    definition = node_definition(schema, node_name)
    known = definition["properties"]
    merged = defaults_from_schema(schema, node_name)
    merged.update({k: v for k, v in params.items() if k in known})
    validator = jsonschema.Draft7Validator(definition)
    errors = sorted(validator.iter_errors(merged), key=lambda e: list(e.path))
    if errors:
        reasons = []
        for err in errors:
            where = ".".join(str(p) for p in err.path) or "(parameters)"
            reasons.append(f"{where}: {err.message}")
        raise ParameterError(f"{node_name}: invalid parameters: " + "; ".join(reasons))
    return merged


def validate_param_file(path: str | Path, node_name: str) -> dict[str, Any]:
    schema = load_schema(node_name)
    return validate_parameters(schema, node_name, load_param_file(path, node_name))
