"""Applications on top of everything else: ``bench`` (``latentvla bench``) and the shared
``reporting`` helpers. The CLI (``cli.py``), the demo and ``latentvla evaluate`` join them
here in a later step (docs/architecture.md). Apps may start ROS graphs (rclpy)."""
