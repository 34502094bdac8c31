"""cProfile of the composed graph's executor threads during the ``instant`` run of ``latentvla bench``
(forward passes answered at once: what the graph's Python costs besides the models), per frame.

    python benchmarks/profile_spin_threads.py --out /tmp/prof -- --rate edge=10 --frames edge=200 \
        --configs edge --backends onnx --executors events --modes composed,instant --sections graph

Everything after ``--`` goes to ``latentvla bench``. Every ``spin_once`` of every ``GraphExecutor``
thread is profiled while the instant run lasts (warm-up frames included); the table divides by the
frames the run measured. cProfile's own cost inflates functions that make many small calls:
read the call counts per frame and the ranking, and time changes with the bench itself.
``prof_all.pstats`` in ``--out`` is for ``python -m pstats``. See also profile_frame_path.py (spans).
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import sys
from pathlib import Path

PROFILING = [False]
PROFILES: list[cProfile.Profile] = []


def install() -> None:
    from latentvla_ros.apps.bench import graph
    from latentvla_ros.ros import executors

    loop = executors.GraphExecutor._loop

    def profiled_loop(self, executor):
        prof = cProfile.Profile()
        PROFILES.append(prof)

        class Spinner:  # the EventsExecutor's spin_once is read-only: wrap the executor instead
            @staticmethod
            def spin_once(timeout_sec=None):
                if not PROFILING[0]:
                    return executor.spin_once(timeout_sec=timeout_sec)
                prof.enable()
                try:
                    return executor.spin_once(timeout_sec=timeout_sec)
                finally:
                    prof.disable()

        return loop(self, Spinner())

    executors.GraphExecutor._loop = profiled_loop
    run_instant = graph.run_instant

    def instant_phase(*args, **kwargs):
        PROFILING[0] = True
        try:
            return run_instant(*args, **kwargs)
        finally:
            PROFILING[0] = False

    graph.run_instant = instant_phase


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the bench's output folder; prof_all.pstats goes there")
    parser.add_argument("--top", type=int, default=60, help="rows of the table")
    parser.add_argument("bench", nargs=argparse.REMAINDER, help="-- then the arguments of latentvla bench")
    args = parser.parse_args(argv)
    from latentvla_ros.apps.bench.main import main as bench_main
    from latentvla_ros.apps.bench.options import add_bench_arguments

    install()
    bench_parser = argparse.ArgumentParser()
    add_bench_arguments(bench_parser)
    bench_args = bench_parser.parse_args(["--out", str(args.out), *[a for a in args.bench if a != "--"]])
    bench_main(bench_args)
    stats = None
    for prof in PROFILES:
        prof.create_stats()
        if prof.stats:
            stats = pstats.Stats(prof) if stats is None else stats.add(prof)
    if stats is None:
        print("no instant run was profiled (--modes needs composed,instant)")
        return 1
    stats.dump_stats(str(args.out / "prof_all.pstats"))
    first = re.search(r"\d+", bench_args.frames or "")  # N or 'edge=N,...': the first config's
    frames = max(1, int(first.group()) if first else 100)
    rows = []
    for (path, line, name), (_, calls, own, cum, _) in stats.stats.items():
        if "spin_once" in name:
            continue
        where = path.split("site-packages/")[-1].split("latentvla_ros/")[-1]
        rows.append((cum / frames * 1e6, own / frames * 1e6, calls / frames, f"{where}:{line}({name})"))
    print(f"per frame ({frames} measured frames): cumulative us, own us, calls")
    for cum, own, calls, label in sorted(rows, reverse=True)[: args.top]:
        print(f"{cum:8.0f} {own:7.0f} {calls:7.2f}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
