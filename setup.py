"""pip installation of the Python package (development venv and tools).

On a ROS 2 workspace, colcon builds this directory as an ament_cmake package
(CMakeLists.txt): messages are generated and the same Python sources installed.
"""
from setuptools import find_packages, setup

package_name = "latentvla_ros"

NODE_ENTRY_POINTS = [
    "sensor_sync = latentvla_ros.ros.nodes.sensor_sync:main",
    "bev_features = latentvla_ros.ros.nodes.bev_features:main",
    "latent_reasoner = latentvla_ros.ros.nodes.latent_reasoner:main",
    "trajectory_planner = latentvla_ros.ros.nodes.trajectory_planner:main",
    "teacher_labeler = latentvla_ros.ros.nodes.teacher_labeler:main",
    "twist_controller = latentvla_ros.ros.nodes.twist_controller:main",
]

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=[package_name, f"{package_name}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    extras_require={"test": ["pytest"]},
    zip_safe=False,
    maintainer="latentvla_ros maintainers",
    maintainer_email="maintainers@latentvla-ros.dev",
    description="LatentVLA-style end-to-end driving on ROS 2",
    license="Apache-2.0",
    entry_points={"console_scripts": ["latentvla = latentvla_ros.cli:main", *NODE_ENTRY_POINTS]},
)
