"""Message conversion and (de)serialization costs of the graph's messages, zero-copy checks.

    python benchmarks/bench_conversions.py
"""
import sys

from latentvla_ros.apps.bench.main import script_main

if __name__ == "__main__":
    sys.exit(script_main(sys.argv[1:], sections="conversions", out="artifacts/bench/conversions"))
