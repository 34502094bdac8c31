"""Parameters: one rule set on every path (CLI --set, param files, node start, runtime changes).

Values are typed as ROS types them (checked against rcl's own parser), ROS types are enforced,
bounded numbers must be finite, unknown nodes/parameters are refused before anything starts,
and a CUDA device that does not exist is an error.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time

import pytest
from rclpy.parameter import Parameter

from latentvla_ros.ros.contracts.parameters import ParameterError, load_param_file, load_schema, parse_override_value, validate_parameters
from latentvla_ros.ros.graph import GraphOptions, parse_param_overrides
from latentvla_ros.ros.topology import graph_nodes

# scalars whose type PyYAML (YAML 1.1) and ROS (rcl_yaml_param_parser) disagree on, and some they agree on
SCALARS = ["5e-2", "1e3", "-2.5E+1", ".5", "1.", "5", "-3", "0x10", "010", "08", "yes", "on", "off", "true", "nan",
           ".nan", "-.inf", "inf", "1_000", "abc", "'5'", "\"0.5\"", "0x1p3", "[1, 2]", "[0.5, 1.5]", "[a, b]"]


@pytest.mark.parametrize("text", SCALARS)
def test_override_values_are_typed_as_rcl_types_them(ros_context, text):
    """The value of ``--set`` is what rcl makes of ``-p x:=VALUE`` (same type, same value)."""
    import rclpy

    node = rclpy.create_node("typing_probe", context=ros_context, cli_args=["--ros-args", "-p", f"x:={text}"],
                             automatically_declare_parameters_from_overrides=False)
    try:
        expected = node._parameter_overrides["x"].value
    finally:
        node.destroy_node()
    ours = parse_override_value(text)
    if isinstance(expected, (list, tuple)) or type(expected).__name__ == "array":
        expected = list(expected)
    assert type(ours) is type(expected), (text, ours, expected)
    if isinstance(ours, float) and math.isnan(ours):
        assert math.isnan(expected)
    else:
        assert ours == expected


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused_where_the_schema_bounds_a_number(value):
    schema = load_schema("trajectory_planner")
    with pytest.raises(ParameterError, match="plan_timeout_s: .* not a finite number"):
        validate_parameters(schema, "trajectory_planner", {"plan_timeout_s": value})


def test_param_files_are_read_as_ros_reads_them(tmp_path):
    path = tmp_path / "p.param.yaml"
    path.write_text("/**:\n  ros__parameters:\n    slop_s: 5e-2\n    frame_id: '7'\n    plan_timeout_s: .nan\n")
    params = load_param_file(path, "sensor_sync")
    assert params["slop_s"] == 0.05 and params["frame_id"] == "7" and math.isnan(params["plan_timeout_s"])
    validate_parameters(load_schema("sensor_sync"), "sensor_sync", {"slop_s": params["slop_s"]})
    # keys stay names, as in rcl: lidar_extrinsics.y is no bool (PyYAML 1.1 would make `on`, `no` bools)
    path.write_text("/**:\n  ros__parameters:\n    g:\n      y: 2.0\n      on: 1\n      no: x\n")
    assert load_param_file(path, "bev_features") == {"g.y": 2.0, "g.on": 1, "g.no": "x"}


def test_graph_options_refuse_unknown_nodes_parameters_and_type_mismatches_and_take_integers_as_doubles():
    def check(*sets):
        options = GraphOptions(nodes=graph_nodes(), overrides=parse_param_overrides(list(sets)))
        options.validate()
        return options

    with pytest.raises(ParameterError, match="no node trajectory_planer in this graph"):
        check("trajectory_planer.plan_timeout_s=0.4")
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) plan_timout_s \(did you mean plan_timeout_s\?\)"):
        check("trajectory_planner.plan_timout_s=0.4")
    with pytest.raises(ParameterError, match="queue_size: expects integer, got float"):
        check("sensor_sync.queue_size=5.0")
    with pytest.raises(ParameterError, match="not a finite number"):
        check("trajectory_planner.plan_timeout_s=.nan")
    options = check("sensor_sync.slop_s=1", "sensor_sync.input_gap_factor=2e0")
    assert options.overrides["sensor_sync"]["slop_s"] == 1.0 and isinstance(options.overrides["sensor_sync"]["slop_s"], float)
    assert "slop_s:=1.0" in options.ros_args(options.nodes[0])


def test_a_node_started_with_the_cli_arguments_gets_the_coerced_double(ros_context):
    from latentvla_ros.ros.nodes.sensor_sync import SensorSyncNode

    options = GraphOptions(nodes=[s for s in graph_nodes() if s.name == "sensor_sync"],
                           overrides=parse_param_overrides(["sensor_sync.slop_s=1", "sensor_sync.time_jump_reset_s=5e-1"]))
    options.validate()
    node = SensorSyncNode(context=ros_context, cli_args=options.ros_args(options.nodes[0]))
    try:
        assert node.params.slop_s == 1.0 and node.params.time_jump_reset_s == 0.5
    finally:
        node.destroy_node()


def test_nodes_refuse_nan_and_type_mismatches_at_start_and_at_run_time(ros_context):
    from latentvla_ros.ros.nodes.sensor_sync import SensorSyncNode

    with pytest.raises(ParameterError, match="slop_s: nan is not a finite number"):
        SensorSyncNode(context=ros_context, cli_args=["--ros-args", "-p", "slop_s:=.nan"])
    with pytest.raises(ParameterError, match=r"slop_s: expects double, got int 1 \(write it with a decimal point"):
        SensorSyncNode(context=ros_context, cli_args=["--ros-args", "-p", "slop_s:=1"])
    node = SensorSyncNode(context=ros_context)
    try:
        result = node.set_parameters([Parameter("input_timeout_s", value=math.nan)])[0]
        assert not result.successful and "not a finite number" in result.reason
        assert node.params.input_timeout_s == 1.0
    finally:
        node.destroy_node()


def test_a_cuda_device_that_does_not_exist_is_an_error():
    import torch

    device = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"
    schema = load_schema("bev_features")
    with pytest.raises(ParameterError, match="device: .*cuda"):
        validate_parameters(schema, "bev_features", {"device": device, "backend": "torch"})
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="device: .*cuda"):
            validate_parameters(schema, "bev_features", {"device": device, "backend": "onnx"})


@pytest.mark.parametrize("override,expected", [
    ("trajectory_planner.plan_timeout_s=.nan", "plan_timeout_s: nan is not a finite number"),
    ("trajectory_planner.plan_timout_s=0.5", "did you mean plan_timeout_s?"),
    ("trajectory_planer.plan_timeout_s=0.5", "no node trajectory_planer in this graph"),
    ("sensor_sync.queue_size=ten", "queue_size: expects integer, got str 'ten'"),
    ("bev_features.device=cuda:7", "device: 'cuda:7' requested"),
])
def test_run_refuses_bad_overrides_with_one_line_and_exit_code_2_before_any_model_loads(override, expected):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "latentvla_ros.cli", "run", "--set", override], capture_output=True,
                          text=True, timeout=120, env=dict(os.environ))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("latentvla run: ") and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and "UNTRAINED" not in proc.stdout + proc.stderr
    assert time.monotonic() - start < 60


def test_ros2_launch_refuses_a_bad_param_file_before_starting_any_node(tmp_path):
    """The launch path checks every node's files (as `latentvla run` does) before any Node starts."""
    import shutil
    from pathlib import Path

    from launch_harness import evaluate

    root = Path(__file__).resolve().parents[1]
    for path in (root / "config").glob("*.param.yaml"):
        shutil.copy(path, tmp_path / path.name)
    nodes, _ = evaluate(root / "launch" / "latentvla.launch.py", {"param_dir": str(tmp_path)})
    assert nodes  # the copies are fine
    planner = tmp_path / "trajectory_planner.param.yaml"
    planner.write_text(planner.read_text().replace("plan_timeout_s: 0.5", "plan_timeout_s: .nan"))
    with pytest.raises(RuntimeError, match="latentvla launch: trajectory_planner: .*plan_timeout_s: nan is not a finite"):
        evaluate(root / "launch" / "latentvla.launch.py", {"param_dir": str(tmp_path)})
