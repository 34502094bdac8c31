"""Teacher (the largest Qwen2.5-VL-3B-shaped model that fits in memory, fp32) vs. the
paper-size student on the same frame.

    python benchmarks/bench_teacher.py            # --teacher-mem-gb 8 to cap its memory
"""
import sys

from latentvla_ros.apps.bench.main import script_main

if __name__ == "__main__":
    sys.exit(script_main(sys.argv[1:], sections="teacher", configs="paper", out="artifacts/bench/teacher"))
