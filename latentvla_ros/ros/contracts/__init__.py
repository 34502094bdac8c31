"""The ROS side's rclpy-free contracts: what the nodes promise, testable without a ROS graph.

- ``parameters``: node parameter schemas (``schema/*.json``), param files, validation;
- ``approx_sync``: the approximate-time synchronizer behind ``sensor_sync``;
- ``stamp_matcher``: pairing BEV tokens with latent plans by stamp (``trajectory_planner``);
- ``monitoring``: per-node statistics behind ``/diagnostics`` and the benchmark;
- ``sros2``: SROS2 enclaves, policies and keystores.

Nothing here imports rclpy (test/test_layers.py checks it), so launch files, the CLI,
the benchmark and tests read these modules anywhere.
"""
