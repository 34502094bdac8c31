"""End-to-end latency of the node graph (composed, separate processes) against the bare
model chain on the same frames; per-node processing time, throughput, dropped frames.

    python benchmarks/bench_graph.py --configs edge --frames 200
"""
import sys

from latentvla_ros.apps.bench.main import script_main

if __name__ == "__main__":
    sys.exit(script_main(sys.argv[1:], sections="graph", out="artifacts/bench/graph"))
