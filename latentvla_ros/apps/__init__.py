"""Applications on top of everything else: ``bench`` (``latentvla bench``), ``evaluate``
(``latentvla evaluate``), ``sim_bridge`` (the closed loop through the ROS node graph) and the
shared ``reporting`` helpers. The CLI (``cli.py``) and the demo join them here in a later step
(docs/architecture.md). Apps may start ROS graphs (rclpy)."""
