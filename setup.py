"""pip installation of the Python package (development venv and tools).

On a ROS 2 workspace, colcon builds this directory as an ament_cmake package
(CMakeLists.txt): messages are generated and the same Python sources installed.
"""
import runpy
from pathlib import Path

from setuptools import find_packages, setup

package_name = "latentvla_ros"

# the executables are listed once, in latentvla_ros/ros/contracts/executables.py (plain data)
EXECUTABLES = runpy.run_path(str(Path(__file__).resolve().parent / "latentvla_ros/ros/contracts/executables.py"))

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
    entry_points={"console_scripts": EXECUTABLES["console_scripts"]()},
)
