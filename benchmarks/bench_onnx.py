"""ONNX export of the BEV backbone, the student and the planner: max |torch - onnxruntime|
on a real frame's inputs and the speed ratio of the two backends.

    python benchmarks/bench_onnx.py --configs edge,paper
"""
import sys

from latentvla_ros.apps.bench.main import script_main

if __name__ == "__main__":
    sys.exit(script_main(sys.argv[1:], sections="onnx", out="artifacts/bench/onnx"))
