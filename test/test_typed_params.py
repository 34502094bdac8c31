"""Typed node parameters (ros/contracts/param_types.py) and the schema as their one source.

- the dataclasses and the schemas agree (names, types, nesting), and the generated file is
  what the generator makes of today's schemas: adding a schema field without the dataclass,
  or a dataclass field without the schema, fails here;
- defaults: the schema's, and config/<node>.param.yaml lists the same values (but the
  model nodes' ``backend: onnx``); bounds are the schema's;
- read-only comes from the schema's ``readOnly``;
- a bad value is refused with the same message on every path: the check itself, a param
  file (``ros2 launch``'s check), ``latentvla run --set`` (exit 2, before any model loads),
  node construction, and a runtime ``set_parameters`` (refused, the old value kept).
"""
from __future__ import annotations

import copy
import dataclasses
import os
import subprocess
import sys
import types
import typing
from pathlib import Path

import pytest
from rclpy.parameter import Parameter

from latentvla_ros.ros.contracts.param_types import PARAM_TYPES
from latentvla_ros.ros.contracts.parameters import (
    ParameterError,
    defaults_from_schema,
    load_param_file,
    load_schema,
    node_definition,
    parse_parameters,
    read_only_parameters,
    validate_node_config,
)
from latentvla_ros.ros.contracts.typed_params import TYPES_PATH, ParamGroup, render, schema_files

ROOT = Path(__file__).resolve().parents[1]
NODES = sorted(p.name.removesuffix(".schema.json") for p in (ROOT / "schema").glob("*.schema.json"))
_PY = {"number": float, "integer": int, "string": str, "boolean": bool}

# The bad value of every path below, and the message each path must carry.
BAD = ("input_timeout_s", -1.0)
BAD_MESSAGE = "sensor_sync: invalid parameters: input_timeout_s: -1.0 is less than or equal to the minimum of 0"


def _flat_types(cls: type[ParamGroup], prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if isinstance(hint, type) and issubclass(hint, ParamGroup):
            out.update(_flat_types(hint, f"{prefix}{f.name}."))
        else:
            out[prefix + f.name] = hint
    return out


def test_every_node_with_a_schema_has_a_dataclass():
    assert NODES and sorted(PARAM_TYPES) == NODES


@pytest.mark.parametrize("node", NODES)
def test_dataclass_and_schema_agree_field_by_field(node):
    props = node_definition(load_schema(node), node)["properties"]
    fields = _flat_types(PARAM_TYPES[node])
    assert sorted(fields) == sorted(props), "schema and dataclass differ: run python -m latentvla_ros.ros.contracts.typed_params"
    for name, spec in props.items():
        item = spec["items"]["type"] if spec["type"] == "array" else None
        expected = types.GenericAlias(list, _PY[item]) if item else _PY[spec["type"]]
        assert fields[name] == expected, (name, fields[name], expected)


def test_the_generated_file_is_what_the_schemas_give():
    assert TYPES_PATH.read_text() == render(schema_files()), \
        "param_types.py is stale: run python -m latentvla_ros.ros.contracts.typed_params"


def test_a_schema_field_without_a_dataclass_field_is_caught():
    """The agreement check is no tautology: a new schema property changes the generated text
    and has no field to go to."""
    schemas = schema_files()
    grown = copy.deepcopy(schemas)
    node_definition(grown["sensor_sync"], "sensor_sync")["properties"]["new_knob"] = {"type": "number", "default": 1.0}
    assert render(grown) != render(schemas)
    flat = parse_parameters(load_schema("sensor_sync"), "sensor_sync", {}).as_dict() | {"new_knob": 1.0}
    with pytest.raises(TypeError, match="new_knob"):
        PARAM_TYPES["sensor_sync"].from_flat(flat)


@pytest.mark.parametrize("node", NODES)
def test_defaults_are_the_schemas_and_the_shipped_param_files(node):
    schema = load_schema(node)
    params = parse_parameters(schema, node, {})
    assert params.as_dict() == defaults_from_schema(schema, node)
    shipped = load_param_file(ROOT / "config" / f"{node}.param.yaml", node)
    assert sorted(shipped) == sorted(params.as_dict()), "config/<node>.param.yaml lists every parameter"
    differing = {k: (params.value(k), v) for k, v in shipped.items() if params.value(k) != v}
    # the one intended difference: the shipped files run the exported ONNX models, a node
    # started without a file runs torch (the schema default)
    assert differing == ({"backend": ("torch", "onnx")} if "backend" in shipped else {})


@pytest.mark.parametrize("node", NODES)
def test_bounds_are_the_schemas(node):
    """Just past each numeric bound of the schema is refused, naming the parameter."""
    schema = load_schema(node)
    for name, spec in node_definition(schema, node)["properties"].items():
        cast = float if spec["type"] == "number" else int
        for bound, step in (("minimum", -1), ("exclusiveMinimum", 0), ("maximum", 1), ("exclusiveMaximum", 0)):
            if bound in spec and spec["type"] in ("number", "integer"):
                with pytest.raises(ParameterError, match=f"{name}: "):
                    parse_parameters(schema, node, {name: cast(spec[bound] + step)})


def test_read_only_comes_from_the_schema():
    for node in NODES:
        props = node_definition(load_schema(node), node)["properties"]
        assert all(spec.get("readOnly", False) in (True, False) for spec in props.values())
        assert read_only_parameters(load_schema(node), node) == {n for n, s in props.items() if s.get("readOnly")}
    schema = load_schema("sensor_sync")
    with pytest.raises(ParameterError, match=r"slop_s: read-only \(readOnly in schema/sensor_sync.schema.json\)"):
        parse_parameters(schema, "sensor_sync", {"slop_s": 0.1}, changing=["slop_s"])
    del node_definition(schema, "sensor_sync")["properties"]["slop_s"]["readOnly"]
    assert parse_parameters(schema, "sensor_sync", {"slop_s": 0.1}, changing=["slop_s"]).slop_s == 0.1


def test_a_bad_value_gets_the_same_message_from_the_check_and_a_param_file(tmp_path):
    with pytest.raises(ParameterError) as direct:
        parse_parameters(load_schema("sensor_sync"), "sensor_sync", dict([BAD]))
    assert str(direct.value) == BAD_MESSAGE
    path = tmp_path / "sensor_sync.param.yaml"
    path.write_text(f"/**:\n  ros__parameters:\n    {BAD[0]}: {BAD[1]}\n")
    with pytest.raises(ParameterError) as from_file:  # `ros2 launch` and `latentvla run --param-file` check this way
        validate_node_config("sensor_sync", [path])
    assert str(from_file.value) == BAD_MESSAGE


def test_a_bad_value_in_ros2_launch_stops_the_launch_with_the_message(tmp_path):
    import shutil

    from launch_harness import evaluate

    for path in (ROOT / "config").glob("*.param.yaml"):
        shutil.copy(path, tmp_path / path.name)
    sync = tmp_path / "sensor_sync.param.yaml"
    sync.write_text(sync.read_text().replace("input_timeout_s: 1.0", f"{BAD[0]}: {BAD[1]}"))
    with pytest.raises(RuntimeError) as exc:
        evaluate(ROOT / "launch" / "latentvla.launch.py", {"param_dir": str(tmp_path)})
    assert str(exc.value) == f"latentvla launch: {BAD_MESSAGE}"


def test_a_bad_value_on_the_command_line_exits_2_before_any_model_loads():
    proc = subprocess.run([sys.executable, "-m", "latentvla_ros.cli", "run", "--set", f"sensor_sync.{BAD[0]}={BAD[1]}"],
                          capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip() == f"latentvla run: {BAD_MESSAGE}"
    assert "UNTRAINED" not in proc.stdout + proc.stderr


def test_a_bad_value_refuses_the_node_at_construction_and_at_run_time(ros_context):
    from latentvla_ros.ros.nodes.sensor_sync import SensorSyncNode

    with pytest.raises(ParameterError) as exc:
        SensorSyncNode(context=ros_context, cli_args=["--ros-args", "-p", f"{BAD[0]}:={BAD[1]}"])
    assert str(exc.value) == BAD_MESSAGE
    node = SensorSyncNode(context=ros_context)
    try:
        before = node.params
        result = node.set_parameters([Parameter(BAD[0], value=BAD[1])])[0]
        assert not result.successful and BAD_MESSAGE in result.reason
        assert node.params is before and node.params.input_timeout_s == 1.0
        assert node.get_parameter(BAD[0]).value == 1.0
        # a read-only parameter: the schema says so, rclpy's descriptor refuses it
        result = node.set_parameters([Parameter("slop_s", value=0.2)])[0]
        assert not result.successful and "read-only" in result.reason.lower()
        assert node.params.slop_s == 0.05 and node.get_parameter("slop_s").value == 0.05
        # a settable one: accepted, and the typed parameters follow
        assert node.set_parameters([Parameter(BAD[0], value=2.5)])[0].successful
        assert node.params.input_timeout_s == 2.5 and node.params.slop_s == 0.05
    finally:
        node.destroy_node()


@pytest.mark.parametrize("node,overrides,expected", [
    ("twist_controller", {"twist.coast_mps2": 5.0, "twist.full_brake_mps2": 4.0}, "twist.coast_mps2"),
    ("bev_features", {"lidar_extrinsics.frame_id": "lidar top"}, "lidar_extrinsics.frame_id"),
])
def test_rules_across_fields_are_checked_with_the_parameters_before_any_node_starts(node, overrides, expected):
    """The groups a core config checks (GROUP_CONFIGS) are refused by the one check, so by
    `latentvla run` and `ros2 launch` too, not only when the node starts."""
    with pytest.raises(ParameterError, match=f"{node}: invalid parameters: {expected}"):
        validate_node_config(node, [], overrides)
