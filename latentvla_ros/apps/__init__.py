"""Applications on top of everything else: ``cli`` (the ``latentvla`` command), ``demo``
(``latentvla demo``), ``bench`` (``latentvla bench``), ``evaluate`` (``latentvla evaluate``),
``sim_bridge`` (the closed loop through the ROS node graph), ``round_eval`` (the DART stage's
per-round closed-loop score) and the shared ``reporting`` helpers (docs/architecture.md).
Apps may start ROS graphs (rclpy)."""
