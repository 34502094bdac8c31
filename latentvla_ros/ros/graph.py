"""Start the latentvla node graph: composed in one process, or as separate processes.

Both modes use the same NodeSpecs (ros/topology.py) and the same param files as the
launch files, so `latentvla run` and `ros2 launch latentvla_ros latentvla.launch.py`
start the same graph.
"""
from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from latentvla_ros.core.resources import share_path
from latentvla_ros.ros.contracts.parameters import ParameterError, parse_override_value, validate_node_config
from latentvla_ros.ros.executors import EXECUTOR_ENV, resolve_kind
from latentvla_ros.ros.topology import NodeSpec

# Fast DDS transports for large samples (config/fastdds/large_data.xml: a shared-memory
# segment that holds a camera image, big UDP socket buffers). They must be configured
# identically in every process of the graph, so they are set here for the process and
# inherited by children, and by the launch files for theirs. A profile the user already
# set wins.
FASTDDS_PROFILE = ("config", "fastdds", "large_data.xml")


def transport_env() -> dict[str, str]:
    return {"FASTDDS_DEFAULT_PROFILES_FILE": str(share_path(*FASTDDS_PROFILE))}


def apply_transport_env(env: dict[str, str] | None = None) -> dict[str, str]:
    target = os.environ if env is None else env
    for key, value in transport_env().items():
        target.setdefault(key, value)
    return target


@dataclass
class GraphOptions:
    nodes: list[NodeSpec]
    param_files: dict[str, list[str]] = field(default_factory=dict)  # node -> extra param files
    overrides: dict[str, dict[str, object]] = field(default_factory=dict)  # node -> {param: value}
    namespace: str = ""
    use_sim_time: bool = False
    log_level: str = "info"
    executor: str = "auto"  # ros/executors.py: auto | events | single | multi
    #: composed mode: nodes of the process hand messages to each other directly
    #: (ros/intra_process.py); False: every message over DDS
    intra_process: bool = True

    def files_for(self, spec: NodeSpec) -> list[str]:
        return [str(share_path(spec.param_file)), *self.param_files.get(spec.name, [])]

    def ros_args(self, spec: NodeSpec) -> list[str]:
        args = ["--ros-args", "--log-level", self.log_level]
        for path in self.files_for(spec):
            args += ["--params-file", path]
        for src, dst in spec.remaps:
            args += ["-r", f"{src}:={dst}"]
        for key, value in self.overrides.get(spec.name, {}).items():
            args += ["-p", f"{key}:={_param_literal(value)}"]
        if self.use_sim_time:
            args += ["-p", "use_sim_time:=true"]
        return args

    def validate(self) -> None:
        """Check every node's parameters against its schema before anything starts (before
        any model loads), by the rules the nodes apply themselves (ros/contracts/parameters.py):
        overrides for a node not in the graph and unknown parameters are refused; an
        integer given for a double override becomes the double (ROS would refuse it)."""
        names = [spec.name for spec in self.nodes]
        stray = sorted(set(self.overrides) - set(names))
        if stray:
            raise ParameterError(f"no node {', '.join(stray)} in this graph (nodes: {', '.join(names)})")
        for spec in self.nodes:
            _, overrides = validate_node_config(spec.name, self.files_for(spec), self.overrides.get(spec.name),
                                                self.namespace)
            if overrides:
                self.overrides[spec.name] = overrides


def _param_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_literal(v) for v in value) + "]"
    if isinstance(value, str):  # YAML single-quoted: keeps '' and strings that look like numbers
        return "'" + value.replace("'", "''") + "'"
    return str(value)


def node_class(spec: NodeSpec):
    module = importlib.import_module(spec.module)
    for value in vars(module).values():
        if isinstance(value, type) and getattr(value, "schema_name", None) == spec.name:
            return value
    raise LookupError(f"no node class for {spec.name} in {spec.module}")


def create_composed_nodes(options: GraphOptions, context=None) -> list:
    """Instantiate every node of the graph in this process (rclpy must be initialised)."""
    from latentvla_ros.ros.intra_process import IntraProcessBus

    options.validate()
    bus = IntraProcessBus(enabled=options.intra_process)  # one per process; disabled: DDS only
    nodes = []
    for spec in options.nodes:
        cls = node_class(spec)
        nodes.append(cls(cli_args=options.ros_args(spec), namespace=options.namespace or None, context=context,
                         intra_process=bus))
    return nodes


def process_commands(options: GraphOptions, env: dict[str, str] | None = None) -> list[tuple[str, list[str], dict[str, str]]]:
    """[(node name, command line, environment)] of every node as its own process (validated)."""
    options.validate()
    env = apply_transport_env(dict(os.environ if env is None else env))
    env[EXECUTOR_ENV] = resolve_kind(options.executor)
    out = []
    for spec in options.nodes:
        # one process per node: each runs in its own SROS2 enclave (docs/operations.md#security)
        cmd = [sys.executable, "-m", spec.module, *options.ros_args(spec), "--enclave", spec.enclave(options.namespace)]
        if options.namespace:
            cmd += ["-r", f"__ns:=/{options.namespace.strip('/')}"]
        out.append((spec.name, cmd, env))
    return out


def spawn_processes(options: GraphOptions, env: dict[str, str] | None = None) -> list[subprocess.Popen]:
    """Start every node as a process, unsupervised (tests, bench, demo stop them themselves)."""
    return [subprocess.Popen(cmd, env=child_env) for _, cmd, child_env in process_commands(options, env)]


def stop_processes(procs: list[subprocess.Popen], timeout_s: float = 10.0) -> list[int]:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(timeout=timeout_s))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append(p.wait())
    return codes


def run_composed(options: GraphOptions) -> int:
    """Spin the whole graph in this process until Ctrl-C (threads: ros/executors.py)."""
    import rclpy

    from latentvla_ros.ros.executors import spin_until_shutdown

    def log_layout(executor, nodes) -> None:
        nodes[0].get_logger().info(f"composed graph: {executor.kind} executors, threads {executor.thread_layout()}")

    apply_transport_env()
    rclpy.init(args=None)
    try:
        spin_until_shutdown(lambda: create_composed_nodes(options), kind=options.executor, on_ready=log_layout)
    finally:
        if rclpy.ok():
            rclpy.shutdown()
    return 0


def run_processes(options: GraphOptions, **supervisor_kwargs) -> int:
    """Every node in its own process, supervised (ros/supervisor.py): a node that dies is
    logged and restarted with back-off; SIGINT/SIGTERM stop all; the exit status says
    whether any node died or failed to stop cleanly."""
    from latentvla_ros.ros.supervisor import ProcessSupervisor

    return ProcessSupervisor(process_commands(options), **supervisor_kwargs).run()


def parse_param_overrides(items: list[str]) -> dict[str, dict[str, object]]:
    """``NODE.PARAM=VALUE`` strings -> {node: {param: value}}; VALUE typed as ROS types
    ``-p PARAM:=VALUE`` (``5e-2`` is a double, ``'5'`` a string)."""
    out: dict[str, dict[str, object]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        node, dot, param = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"bad override {item!r}: use NODE.PARAM=VALUE")
        try:
            out.setdefault(node, {})[param] = parse_override_value(raw)
        except ParameterError as exc:
            raise ValueError(f"bad override {item!r}: {exc}") from exc
    return out


def default_param_dir() -> Path:
    return share_path("config")


def wait_for_graph_ready(node, specs: list[NodeSpec], timeout_s: float = 30.0, namespace: str = "") -> bool:
    """Wait until every topic between the graph's nodes has its subscribers matched.

    Pipeline topics are reliable but volatile: a frame published before discovery has
    matched the consumer is never delivered, so replay must not start earlier.
    """
    import time

    prefix = "/" + namespace.strip("/") + "/" if namespace.strip("/") else "/"
    consumers: dict[str, int] = {}
    either: list[list[str]] = []  # a node subscribes one topic of each group (NodeSpec.either_inputs)
    producers = {dst for spec in specs for src, dst in spec.remaps if src.startswith("~/output/")}
    for spec in specs:
        group = []
        for src, dst in spec.remaps:
            if src.startswith("~/input/") and dst in producers:
                if src in spec.either_inputs:
                    group.append(dst)
                else:
                    consumers[dst] = consumers.get(dst, 0) + 1
        if group:
            either.append(group)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        subs = {t: node.count_subscribers(_absolute(t, prefix)) for t in {*consumers, *(t for g in either for t in g)}}
        if (all(subs[t] >= n and node.count_publishers(_absolute(t, prefix)) >= 1 for t, n in consumers.items())
                and all(any(subs[t] > consumers.get(t, 0) and node.count_publishers(_absolute(t, prefix)) >= 1
                            for t in group) for group in either)):
            return True
        time.sleep(0.05)
    return False


def _absolute(topic: str, prefix: str) -> str:
    return topic if topic.startswith("/") else prefix + topic
