"""The package's executables, listed once: ``ros2 run latentvla_ros <name>`` runs ``main()`` of
``<module>``. Read by setup.py (console scripts), CMakeLists.txt (the ``lib/latentvla_ros``
wrappers of a colcon install: it runs this file) and ros/topology.py (the graph's nodes).

Plain data, no imports: setup.py and CMake read it without the package's dependencies.
"""

#: node executables: name == node name == parameter schema name (schema/<name>.schema.json)
NODE_EXECUTABLES = {
    "sensor_sync": "latentvla_ros.ros.nodes.sensor_sync",
    "bev_features": "latentvla_ros.ros.nodes.bev_features",
    "latent_reasoner": "latentvla_ros.ros.nodes.latent_reasoner",
    "trajectory_planner": "latentvla_ros.ros.nodes.trajectory_planner",
    "teacher_labeler": "latentvla_ros.ros.nodes.teacher_labeler",
    "twist_controller": "latentvla_ros.ros.nodes.twist_controller",
}
#: every executable: the nodes and the command line
EXECUTABLES = {**NODE_EXECUTABLES, "latentvla": "latentvla_ros.apps.cli"}


def console_scripts() -> list[str]:
    """setup.py's ``console_scripts`` entry points."""
    return [f"{name} = {module}:main" for name, module in EXECUTABLES.items()]


if __name__ == "__main__":  # CMakeLists.txt: one "name:module" per line
    print("\n".join(f"{name}:{module}" for name, module in EXECUTABLES.items()))
