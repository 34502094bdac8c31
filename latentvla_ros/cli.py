"""``python -m latentvla_ros.cli``: the ``latentvla`` command, which lives in ``apps/cli.py``."""
import sys

from latentvla_ros.apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
