"""The `latentvla` command: run the graph, replay/record bags, generate data, train,
label, evaluate, benchmark, and the end-to-end demo."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _env_defaults() -> None:
    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from latentvla_ros.ros.graph import apply_transport_env  # no rclpy import

    apply_transport_env()


def cmd_run(args: argparse.Namespace) -> int:
    from latentvla_ros.ros.contracts.parameters import ParameterError
    from latentvla_ros.ros.graph import GraphOptions, parse_param_overrides, run_composed, run_processes
    from latentvla_ros.ros.launch_description import PROFILES, profile_graph

    args.cameras = args.cameras or PROFILES[args.profile]["camera_names"]
    specs, profile_files, profile_sim_time = profile_graph(args.profile, args.cameras.split(","),
                                                           with_teacher=args.with_teacher)
    if args.nodes:
        wanted = set(args.nodes.split(","))
        specs = [s for s in specs if s.name in wanted]
    files: dict[str, list[str]] = {}
    for path in args.param_file or []:
        for spec in specs:
            files.setdefault(spec.name, []).append(path)
    for name, extra in profile_files.items():  # the profile's overlays, before the user's files
        files.setdefault(name, [])[:0] = extra
    try:
        overrides = parse_param_overrides(args.set or [])
    except ValueError as exc:
        print(f"latentvla run: {exc}", file=sys.stderr)
        return 2
    if args.allow_untrained and "trajectory_planner" in [s.name for s in specs]:  # drives on them, flagged
        overrides.setdefault("trajectory_planner", {})["allow_untrained"] = True
    if "sensor_sync" in [s.name for s in specs]:
        overrides.setdefault("sensor_sync", {}).setdefault("camera_names", args.cameras.split(","))
        if args.camera_transport:
            overrides["sensor_sync"].setdefault("camera_transport", args.camera_transport)
    options = GraphOptions(nodes=specs, param_files=files, overrides=overrides, namespace=args.namespace,
                           use_sim_time=args.use_sim_time or profile_sim_time, log_level=args.log_level,
                           executor=args.executor, intra_process=not args.no_intra_process)
    try:
        options.validate()
    except ParameterError as exc:
        print(f"latentvla run: {exc}", file=sys.stderr)
        return 2
    return run_composed(options) if args.mode == "composed" else run_processes(options)


def _progress_printer(prefix: str):
    """Progress lines on stderr: rewritten in place on a terminal, one line each otherwise."""
    tty = sys.stderr.isatty()

    def show(line: str) -> None:
        print(f"\r[{prefix}] {line}\033[K" if tty else f"[{prefix}] {line}", end="" if tty else "\n",
              file=sys.stderr, flush=True)

    return show, tty


def _print_stats(name: str, stats: dict, tty: bool) -> None:
    import json

    if tty:
        print(file=sys.stderr)
    print(f"{name} statistics:")
    print(json.dumps(stats, indent=2, sort_keys=True, default=str), flush=True)


def cmd_replay(args: argparse.Namespace) -> int:
    from latentvla_ros.ros.bag_player import play_bag

    show, tty = _progress_printer("replay")
    stats = play_bag(args.bag, rate=args.rate, loop=args.loop, start_offset_s=args.start_offset,
                     publish_clock=not args.no_clock, topics=args.topics.split(",") if args.topics else None,
                     wait_for_subscribers_s=args.wait_for_subscribers,
                     wait_topics=args.wait_for.split(",") if args.wait_for else None,
                     progress=None if args.no_progress else show, progress_period_s=1.0 if tty else 2.0)
    _print_stats("replay", stats, tty and not args.no_progress)
    unheard = sum(stats["published_without_subscribers"].values())
    if unheard:
        print(f"replay: WARNING: {unheard} message(s) were published while their topic had no subscriber "
              "(lost): see published_without_subscribers", file=sys.stderr)
    return 1 if stats["read_errors"] or stats["publish_errors"] else 0


def cmd_record(args: argparse.Namespace) -> int:
    from latentvla_ros.ros.bag_recorder import record_bag

    stats = record_bag(args.output, args.topics, storage=args.storage,
                       duration_s=args.duration if args.duration > 0 else None)
    _print_stats("record", stats, False)
    if stats["recorded_total"] == 0:
        print(f"record: WARNING: no message was recorded into {args.output}", file=sys.stderr)
        return 1
    return 1 if stats["write_errors"] else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from latentvla_ros.apps.demo import run_demo

    return run_demo(Path(args.out), num_frames=args.frames, scenario=args.scenario, seed=args.seed,
                    checkpoints=args.checkpoints, rate=args.rate, mode=args.mode, backend=args.backend,
                    executor=args.executor)


def cmd_generate_data(args: argparse.Namespace) -> int:
    from latentvla_ros.data.highway import generate_dataset

    generate_dataset(args.out, scenarios=args.scenarios.split(","), seeds=list(range(args.seed, args.seed + args.num_seeds)),
                     densities=[float(d) for d in args.densities.split(",")], frames_per_log=args.frames, workers=args.workers)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from latentvla_ros.training.pipeline import main as train_main

    if not getattr(args, "no_round_eval", False):  # the dart stage's per-round closed-loop score (apps layer)
        from latentvla_ros.apps.round_eval import evaluate_round

        args.round_evaluator = evaluate_round
    return train_main(args)


def cmd_label(args: argparse.Namespace) -> int:
    from latentvla_ros.data.log_format import list_logs
    from latentvla_ros.training.teacher import label_logs

    if bool(args.data) == bool(args.bag):
        raise SystemExit("latentvla label: give exactly one of --data (driving logs) or --bag (a rosbag2)")
    if args.bag:  # a recorded bag becomes a driving log first, then it is labeled like any log
        from latentvla_ros.data.bag_io import log_from_bag

        logs = [log_from_bag(args.bag, Path(args.out or (str(Path(args.bag).with_suffix("")) + "_log")), overwrite=True)]
    else:
        logs = list_logs(args.data)
    label_logs(args.teacher, logs, batch_size=args.batch_size)
    print(f"labeled {len(logs)} log(s): teacher_probs.npy + teacher_context.npy in " + ", ".join(str(p) for p in logs))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from latentvla_ros.apps.evaluate import main as eval_main

    return eval_main(args)


def cmd_bench(args: argparse.Namespace) -> int:
    from latentvla_ros.apps.bench.main import main as bench_main

    return bench_main(args)


def build_parser() -> argparse.ArgumentParser:
    from latentvla_ros.ros.executors import EXECUTOR_KINDS  # no rclpy import

    parser = argparse.ArgumentParser(prog="latentvla", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start the node graph (composed in one process or as processes)")
    run.add_argument("--mode", choices=["composed", "processes"], default="composed",
                     help="composed: every node in this process; processes: one process per node, supervised (a node "
                          "that dies is restarted with back-off; exit status 1 if any died)")
    run.add_argument("--profile", choices=["default", "carla", "autoware"], default="default",
                     help="topic names, sim time and param overlays: carla = the CARLA-ROS bridge, autoware = Autoware's "
                          "sensing/localization topics (docs/operations.md)")
    run.add_argument("--nodes", default="", help="comma-separated subset of nodes to start")
    run.add_argument("--cameras", default="", help="comma-separated camera names, left to right (default: the "
                     "profile's: front, autoware camera0)")
    run.add_argument("--camera-transport", choices=["raw", "compressed"], default=None,
                     help="camera input type of sensor_sync: raw sensor_msgs/Image, or CompressedImage (jpeg/png) on "
                          "<camera topic>/compressed (default: the param files', raw)")
    run.add_argument("--param-file", action="append", help="extra ROS 2 param file applied to every node (repeatable)")
    run.add_argument("--set", action="append", help="NODE.PARAM=VALUE override (repeatable)")
    run.add_argument("--namespace", default="")
    run.add_argument("--use-sim-time", action="store_true")
    run.add_argument("--with-teacher", action="store_true", help="also start the offline teacher_labeler")
    run.add_argument("--allow-untrained", action="store_true",
                     help="let the planner drive on untrained weights (a missing or corrupt checkpoint of any model "
                          "node), flagged 'untrained' in model_id; without it such frames get fallbacks")
    run.add_argument("--log-level", default="info")
    run.add_argument("--executor", choices=EXECUTOR_KINDS, default="auto",
                     help="rclpy executors (docs/performance.md): auto = EventsExecutor where rclpy has it, one "
                          "thread per model node; multi = one MultiThreadedExecutor (slow, for comparison)")
    run.add_argument("--no-intra-process", action="store_true",
                     help="composed mode: send every message between the process's nodes over DDS instead of "
                          "handing it over in-process (ros/intra_process.py)")
    run.set_defaults(func=cmd_run)

    replay = sub.add_parser("replay", help="publish a rosbag2 (MCAP or sqlite3) with its original timing")
    replay.add_argument("bag")
    replay.add_argument("--rate", type=float, default=1.0)
    replay.add_argument("--loop", action="store_true")
    replay.add_argument("--start-offset", type=float, default=0.0, help="skip the first seconds of the bag")
    replay.add_argument("--no-clock", action="store_true", help="publish no /clock (neither the player's nor the bag's own)")
    replay.add_argument("--topics", default="", help="comma-separated subset of topics")
    replay.add_argument("--wait-for-subscribers", type=float, default=30.0, metavar="SECONDS",
                        help="before playing, wait up to this long for the graph's subscribers (0: do not wait); "
                             "what is published to a topic without subscriber is counted")
    replay.add_argument("--wait-for", default="", metavar="TOPICS",
                        help="comma-separated topics to wait for (default: the bag's topics a latentvla profile "
                             "subscribes to, else all)")
    replay.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    replay.set_defaults(func=cmd_replay)

    record = sub.add_parser("record", help="record topics to a rosbag2 MCAP")
    record.add_argument("topics", nargs="+")
    record.add_argument("-o", "--output", required=True)
    record.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    record.add_argument("--duration", type=float, default=0.0,
                        help="stop after this many seconds (default 0: until Ctrl-C or SIGTERM)")
    record.set_defaults(func=cmd_record)

    fox = sub.add_parser("foxglove", help="live Foxglove WebSocket server for the running graph (foxglove-sdk)")
    fox.add_argument("--host", default="127.0.0.1")
    fox.add_argument("--port", type=int, default=8765)
    fox.add_argument("--topics", default="",
                     help="comma-separated topics (default: trajectory, path, markers, BEV image, diagnostics, tf); 'all' for every topic")
    fox.add_argument("--mcap", default=None, help="also record the forwarded topics to this MCAP file")
    fox.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: until Ctrl-C)")

    def cmd_foxglove(a: argparse.Namespace) -> int:
        from latentvla_ros.ros.foxglove_bridge import DEFAULT_TOPICS, run

        topics = None if a.topics == "all" else (a.topics.split(",") if a.topics else list(DEFAULT_TOPICS))
        return run(topics, a.host, a.port, a.mcap, a.duration)

    fox.set_defaults(func=cmd_foxglove)

    demo = sub.add_parser("demo", help="generate a driving log, replay it through the graph, summarise")
    demo.add_argument("--out", default="artifacts/demo")
    demo.add_argument("--frames", type=int, default=200)
    demo.add_argument("--scenario", default="highway")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--checkpoints", default="checkpoints/edge")
    demo.add_argument("--rate", type=float, default=1.0)
    demo.add_argument("--mode", choices=["composed", "processes"], default="composed")
    demo.add_argument("--backend", choices=["torch", "onnx"], default=None, help="override the model nodes' backend")
    demo.add_argument("--executor", choices=EXECUTOR_KINDS, default="auto", help="as for `latentvla run`")
    demo.set_defaults(func=cmd_demo)

    gen = sub.add_parser("generate-data", help="driving logs from highway-env")
    gen.add_argument("--out", default="data/highway")
    gen.add_argument("--scenarios", default="highway,merge,roundabout,intersection")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--num-seeds", type=int, default=4)
    gen.add_argument("--densities", default="1.0")
    gen.add_argument("--frames", type=int, default=300)
    gen.add_argument("--workers", type=int, default=1)
    gen.set_defaults(func=cmd_generate_data)

    from latentvla_ros.training.cli_args import add_train_parser

    add_train_parser(sub, cmd_train)

    label = sub.add_parser("label", help="label logs with the teacher's latent action distributions")
    label.add_argument("--teacher", required=True)
    label.add_argument("--data", default="", help="directory of driving logs")
    label.add_argument("--bag", default="", help="a rosbag2 (sensor topics) to turn into a log and label")
    label.add_argument("--out", default="", help="with --bag: where the log is written (default: next to the bag)")
    label.add_argument("--batch-size", type=int, default=16)
    label.set_defaults(func=cmd_label)

    ev = sub.add_parser("evaluate", help="open-loop PDMS and closed-loop driving for every method")
    ev.add_argument("--out", default="artifacts/eval")
    ev.add_argument("--checkpoints", default="checkpoints/edge")
    ev.add_argument("--quick", action="store_true", help="a few scenes only (smoke test)")
    ev.add_argument("--workers", type=int, default=2)
    ev.add_argument("--write-docs", action="store_true", help="also rewrite docs/results.md (tables, command, date, machine)")
    ev.add_argument("--allow-untrained", action="store_true",
                    help="run methods whose checkpoints are missing with random weights (flagged UNTRAINED) "
                         "instead of listing them as not available")
    ev.add_argument("--test-data", default="data/highway_test",
                    help="where the held-out logs (reserved seeds) are generated once and kept")
    ev.add_argument("--train-data", default="data/highway",
                    help="training logs for the ego-status MLP when <checkpoints>/ego_mlp does not exist")
    ev.add_argument("--graph-mode", choices=["composed", "processes"], default="composed",
                    help="closed loop: the node graph composed in the evaluating process or as separate processes")
    ev.add_argument("--backend", choices=["auto", "ray", "process", "inline"], default="auto",
                    help="fan-out of episodes and scenes: Ray (auto when installed), a process pool, or in-process")
    ev.add_argument("--address", default=None,
                    help="Ray cluster address (e.g. ray://head:10001 or auto); default: a local Ray with --workers CPUs")
    ev.add_argument("--skip-open-loop", action="store_true")
    ev.add_argument("--skip-closed-loop", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

    bench = sub.add_parser("bench", help="latency of the graph vs. the bare model chain, ONNX, teacher vs student")
    from latentvla_ros.apps.bench.options import add_bench_arguments  # light module: stdlib only at import

    add_bench_arguments(bench)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    _env_defaults()
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
