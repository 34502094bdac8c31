"""Everything `latentvla bench` measures: graph (bare / composed / processes), ONNX,
teacher vs student, message conversions. Same options as `latentvla bench`.

    python benchmarks/bench_all.py --out artifacts/bench --write-docs
"""
import sys

from latentvla_ros.apps.bench.main import script_main

if __name__ == "__main__":
    sys.exit(script_main(sys.argv[1:]))
