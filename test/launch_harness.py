"""Evaluate a launch file the way `ros2 launch` would, against the real launch API when
installed and otherwise against test/launch_standin (same semantics for what we use)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

STANDIN = Path(__file__).parent / "launch_standin"


def _use_standin() -> bool:
    try:
        import launch  # noqa: F401 - only probing that it imports
        import launch_ros  # noqa: F401 - only probing that it imports
        return False
    except ImportError:
        sys.path.insert(0, str(STANDIN))
        for name in [m for m in sys.modules if m == "launch" or m.startswith(("launch.", "launch_ros"))]:
            del sys.modules[name]
        return True


USING_STANDIN = _use_standin()


def load_launch_description(path: Path):
    spec = importlib.util.spec_from_file_location(f"launchfile_{path.stem.replace('.', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def evaluate(path: Path, arguments: dict[str, str] | None = None):
    """Returns (nodes, context): every launch_ros Node the file would start."""
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument
    from launch_ros.actions import Node

    description = load_launch_description(path)
    context = LaunchContext()
    declared = {a.name for a in description.get_launch_arguments()}
    unknown = set(arguments or {}) - declared
    if unknown:
        raise ValueError(f"undeclared launch arguments {sorted(unknown)}")
    context.launch_configurations.update(arguments or {})
    nodes = []
    pending = list(description.entities)
    # declarations first, as launch processes them in order before the opaque functions run
    for entity in [e for e in pending if isinstance(e, DeclareLaunchArgument)]:
        entity.execute(context)
    while pending:
        entity = pending.pop(0)
        if isinstance(entity, Node):
            nodes.append(entity)
            continue
        if isinstance(entity, DeclareLaunchArgument):
            continue
        produced = entity.execute(context)
        if produced:
            pending = list(produced) + pending
    return nodes, context
