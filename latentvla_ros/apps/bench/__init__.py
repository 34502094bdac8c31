"""`latentvla bench`: latency of the node graph against the bare model chain, ONNX, teacher.

One run measures, for each model config (``edge``, ``paper``) on the same pre-generated
frames (a highway-env driving log, cached under ``<out>/data``):

- ``bare``: the bare model chain, i.e. ``LatentVLAAgent.compute_trajectory`` on the
  pipeline objects themselves (BEV backbone -> student -> planner, one after the other,
  no ROS). When the composed graph is measured too, these are the very runtime objects
  of the composed nodes (same weights, backend and torch threads). Frames are fed on the
  same schedule as the graph's input (``--rate``) after a warm-up. The targets' reference.
- ``bare-parallel``: the same with ``LatentVLAAgent(concurrent=True)`` (student beside
  the BEV backbone, as in the graph): graph / bare-parallel is what ROS itself costs.
- ``composed``: every node of the graph in this process (``ros.graph.create_composed_nodes``
  spun by ``ros.executors.GraphExecutor``, as ``latentvla run``, in-process delivery
  between the nodes; ``composed-events-dds``: over DDS), fed by a harness
  node that publishes camera image + camera info + LiDAR + odometry at ``--rate`` with
  header stamps = wall clock at publication, and receives the trajectories.
- ``floor`` (``floor.py``): a no-work rclpy graph of the same topology and message sizes
  (sensors in over DDS, synchroniser, two parallel stages, planner, trajectory back over
  DDS), stages called directly (``floor``), with one executor hop per node
  (``floor-hops``), or each node in a process of its own (``floor-processes``, the
  floor of the ``processes`` runs): what any rclpy graph of our shape costs here. Graph
  overhead = instant composed - instant bare, read against it.
- ``processes``: the same nodes as separate processes (``ros.graph.spawn_processes``, the
  same environment, the shipped Fast DDS profile in every process), the
  harness in this process.

End-to-end latency of a frame = receive time of its (non-fallback) trajectory in the
harness minus the sensor stamp. Ratio = graph latency / bare-chain latency (ratio of the
medians, ratio of the p99s, and the median of per-frame ratios on the same frames).
Dropped = input frames without any trajectory; fallbacks = frames answered by a
fallback (plan timeout or model error); ``dropped_synchronized`` = frames that
``sensor_sync`` synchronized and that did not get a model trajectory. Per-node processing
times come from each node's ``~/debug/processing_time_ms`` topic (the time inside the
node's ``processing()`` block: model call + output conversion + publish).

Also: ``onnx`` (per model: max |torch - onnxruntime| on real inputs, both timed with the
same thread count), ``teacher`` (the largest Qwen2.5-VL teacher that fits in memory
here vs. the paper student on the same frame) and ``conversions`` (message
conversion costs and zero-copy checks).

Every run writes ``<out>/bench.json`` (after each section, so a crash keeps what was
measured) and prints a table; ``--write-docs`` also writes ``docs/performance.md``,
``docs/performance.json`` (``summary.py``: the figures the latency targets read, medians over
``--repeat N`` runs with each run's) and README.md's latency paragraph (between its markers).
The CPU use of *other* processes during each run is measured from ``/proc`` and
reported (``cpu.foreign_cores``): figures taken on a loaded machine say so.

Modules: ``options`` (arguments, targets), ``meters`` (statistics, CPU meters), ``data``
(inputs, bare chain), ``harness`` (the ROS harness node, one measured graph run), ``graph``
(the graph section), ``floor`` (the no-work graph), ``summary`` (performance.json, README
paragraph), ``sections`` (ONNX, teacher, conversions), ``report`` (tables, docs
page), ``main`` (``run``, ``main``); ``apps/reporting.py`` (machine info, number format).

Importing this package loads none of them: every name below is imported on first use
(``latentvla --help`` builds the ``options`` parser without numpy, torch or rclpy).
"""
from __future__ import annotations

import importlib
from typing import Any

#: public name -> module (``reporting`` is ``latentvla_ros.apps.reporting``; ``module:name`` renames);
#: the few private names are the ones the tests call
_NAMES = {
    'BACKENDS': 'options',
    'BenchOptions': 'options',
    'CAMERA': 'options',
    'CAMERA_NAME': 'options',
    'CONFIGS': 'options',
    'ConfigData': 'data',
    'CpuMeter': 'meters',
    'DEFAULT_RATES': 'options',
    'DiagnosticsNodeTimes': 'harness',
    'EXECUTORS': 'options',
    'FLOOR_VARIANTS': 'floor',
    'FloorGraph': 'floor',
    'FloorOutputs': 'floor',
    'GRAPH_NODES': 'options',
    'Harness': 'harness',
    'InProcessNodeTimes': 'harness',
    'MODEL_KINDS': 'options',
    'MODES': 'options',
    'ONNX_ATOL': 'options',
    'ONNX_RTOL': 'options',
    'README_BEGIN': 'summary',
    'README_END': 'summary',
    'ReplayedForwardPass': 'graph',
    'SECTIONS': 'options',
    'TARGETS': 'options',
    'ThreadCpu': 'meters',
    '_diagnostics_summary': 'harness',  # used by test/test_benchmarking.py
    'graph_options': 'harness',
    'idle_drain_s': 'harness',
    'new_ros_context': 'harness',
    'ratio_of': 'meters',
    '_ratios': 'harness',  # used by test/test_benchmarking.py
    'round_floats': 'meters',
    '_round': 'meters:round_floats',  # the name test/test_benchmarking.py uses
    '_fmt': 'reporting:fmt',  # the name test/test_benchmarking.py uses
    'shutdown_ros_context': 'harness',
    'sleep_until': 'data',
    'std_to': 'harness',
    'wait_until': 'harness',
    'add_bench_arguments': 'options',
    'breakdown_table': 'report',
    'build_agent': 'data',
    'choose_teacher': 'sections',
    'conversions_section': 'sections',
    'cpu_table': 'report',
    'evaluate_targets': 'report',
    'floor_lines': 'report',
    'fmt': 'reporting',
    'frame_messages': 'data',
    'in_worker': 'data',
    'instant_forward_passes': 'graph',
    'latency_paragraph': 'summary',
    'latency_table': 'report',
    'machine_info': 'reporting',
    'main': 'main',
    'measure_graph': 'harness',
    'meminfo_gb': 'reporting',
    'node_table': 'report',
    'onnx_section': 'sections',
    'onnx_table': 'report',
    'other_processes': 'reporting',
    'prepare_checkpoints': 'data',
    'prepare_log': 'data',
    'performance_summary': 'summary',
    'print_report': 'report',
    'resolve_options': 'options',
    'run': 'main',
    'run_bare': 'data',
    'run_composed': 'graph',
    'run_floor': 'floor',
    'run_config_graph': 'graph',
    'run_instant': 'graph',
    'run_processes': 'graph',
    'script_main': 'main',
    'stats_ms': 'meters',
    'summary_lines': 'summary',
    'teacher_section': 'sections',
    'update_readme': 'summary',
    'warm_up_graph': 'harness',
    'write_docs': 'report',
    'write_summary': 'summary',
}


def __getattr__(name: str) -> Any:
    where = _NAMES.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, _, attr = where.partition(":")
    path = "latentvla_ros.apps.reporting" if module == "reporting" else f"{__name__}.{module}"
    return getattr(importlib.import_module(path), attr or name)


def __dir__() -> list[str]:
    return sorted(_NAMES)
