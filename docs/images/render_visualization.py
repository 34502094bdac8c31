"""Render docs/images/visualization.png from a recorded run (what RViz / Foxglove show).

    .venv/bin/python docs/images/render_visualization.py                # record a run, then render
    .venv/bin/python docs/images/render_visualization.py --mcap RUN_DIR  # render an existing recording

Recording: a highway-env log is replayed as a rosbag2 through the composed graph
(checkpoints from checkpoints/edge when present, else untrained weights, as in the
picture's title); latent_reasoner is taken out of the executor for a few seconds in the
middle, so the run contains a fallback episode. BagRecorder writes the camera, the LiDAR
cloud and every output (trajectory, Path, markers, BEV image, /diagnostics) to one MCAP.

Rendering reads that MCAP only (mcap + mcap_ros2, the decoders Foxglove uses) and draws
the RViz displays of config/rviz/latentvla.rviz with matplotlib: camera image, LiDAR point
cloud seen from above in base_link, planned path and poses, the latent-token bars and the
fallback-state disc of the markers, the BEV image, and a timeline of the fallback state
and latent tokens. It is a faithful picture of the recorded data, not an RViz screen
capture (no display server here).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TOPICS = ["/sensing/camera/front/image_raw", "/sensing/lidar/points", "/planning/latentvla/trajectory",
          "/planning/latentvla/path", "/planning/latentvla/markers", "/latentvla/bev_image", "/diagnostics"]


def record(out_dir: Path, frames: int = 120, seed: int = 7) -> Path:
    import rclpy
    from rclpy.context import Context

    from latentvla_ros.apps.demo import _checkpoint_overrides
    from latentvla_ros.data.bag_io import write_sensor_bag
    from latentvla_ros.data.highway import generate_log
    from latentvla_ros.ros.bag_player import BagPlayer
    from latentvla_ros.ros.bag_recorder import BagRecorder
    from latentvla_ros.ros.executors import GraphExecutor
    from latentvla_ros.ros.graph import GraphOptions, apply_transport_env, create_composed_nodes, wait_for_graph_ready
    from latentvla_ros.ros.topology import graph_nodes

    apply_transport_env()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    work = Path(tempfile.mkdtemp(prefix="latentvla_vis_"))
    generate_log(work / "log", scenario="highway", seed=seed, num_frames=frames)
    write_sensor_bag(work / "log", work / "bag", storage="mcap")
    context = Context()
    rclpy.init(context=context)
    overrides = _checkpoint_overrides(str(ROOT / "checkpoints" / "edge"))
    overrides.setdefault("trajectory_planner", {})["plan_timeout_s"] = 0.5
    options = GraphOptions(nodes=graph_nodes(), overrides=overrides, use_sim_time=True, log_level="error")
    nodes = {n.get_name(): n for n in create_composed_nodes(options, context=context)}
    rec_node = rclpy.create_node("vis_recorder", context=context)
    player_node = rclpy.create_node("vis_player", context=context)
    ex = GraphExecutor(context=context).add(*nodes.values(), rec_node, player_node).start()
    assert wait_for_graph_ready(player_node, options.nodes, timeout_s=30)
    if out_dir.exists():
        raise SystemExit(f"{out_dir} exists")
    recorder = BagRecorder(rec_node, out_dir, TOPICS, storage="mcap", discovery_timeout_s=5.0)
    player = BagPlayer(player_node, str(work / "bag"), rate=1.0, publish_clock=True)  # the graph is ready
    player.start()
    duration = frames * 0.1
    time.sleep(0.45 * duration)
    ex.remove(nodes["latent_reasoner"])  # the reasoner "dies" ...
    time.sleep(0.2 * duration)
    ex.add(nodes["latent_reasoner"])  # ... and comes back
    player.wait(duration + 60)
    time.sleep(1.0)
    recorder.close()
    ex.stop()
    for n in (*nodes.values(), rec_node, player_node):
        n.destroy_node()
    rclpy.shutdown(context=context)
    return out_dir


def _read(mcap_dir: Path) -> dict[str, list]:
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    out: dict[str, list] = {t: [] for t in TOPICS}
    for f in sorted(Path(mcap_dir).glob("*.mcap")) if Path(mcap_dir).is_dir() else [Path(mcap_dir)]:
        with f.open("rb") as fh:
            for _schema, channel, message, decoded in make_reader(fh, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
                out.setdefault(channel.topic, []).append((message.log_time, decoded))
    return out


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def _nearest(items, t):
    return min(items, key=lambda it: abs(_stamp(it[1]) - t))[1] if items else None


def _image(msg) -> np.ndarray:
    arr = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)[:, : msg.width * 3]
    return arr.reshape(msg.height, msg.width, 3)


def _cloud(msg) -> np.ndarray:
    pts = np.frombuffer(bytes(msg.data), np.float32).reshape(-1, msg.point_step // 4)
    return pts[:, :4]


def render(mcap_dir: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    data = _read(mcap_dir)
    trajs = data["/planning/latentvla/trajectory"]
    frame_trajs = [m for _, m in trajs if not m.fallback_reason.startswith("no BEV")]
    model = [m for m in frame_trajs if not m.is_fallback]
    fallback = [m for m in frame_trajs if m.is_fallback]
    if not model:
        raise SystemExit("the recording has no model trajectory")
    pick = {"model": model[len(model) // 3], "fallback": fallback[len(fallback) // 2] if fallback else None}
    markers_by_stamp = {_stamp(m.markers[0]): m for _, m in data["/planning/latentvla/markers"] if m.markers}

    fig = plt.figure(figsize=(16, 9.6), facecolor="#1e1e24")
    gs = fig.add_gridspec(3, 4, height_ratios=[1.0, 1.0, 0.55], hspace=0.35, wspace=0.25)
    style = dict(color="white", fontsize=10)
    model_id = pick["model"].model_id

    def top_view(ax, traj, title):
        t = _stamp(traj)
        cloud = _nearest(data["/sensing/lidar/points"], t)
        ax.set_facecolor("#1e1e24")
        if cloud is not None:
            pts = _cloud(cloud)
            ax.scatter(-pts[:, 1], pts[:, 0], s=1.0, c=pts[:, 3], cmap="turbo", alpha=0.8, linewidths=0)
        for r in range(10, 41, 10):  # grid like RViz's
            ax.add_patch(Circle((0, 0), r, fill=False, color="#55555f", lw=0.5))
        markers = markers_by_stamp.get(t)
        state_text = ""
        if markers is not None:
            for m in markers.markers:
                c = (m.color.r, m.color.g, m.color.b)
                if m.ns.endswith("fallback_state") and m.type == 3:  # CYLINDER
                    ax.add_patch(Circle((0, 0), m.scale.x / 2, color=c, alpha=max(0.35, m.color.a)))
                elif m.ns.endswith("fallback_state") and m.type == 9:
                    state_text = m.text
                elif m.ns.endswith("latent_tokens") and m.type == 1:  # CUBE: a bar, seen from above
                    x, y = m.pose.position.x, m.pose.position.y
                    ax.add_patch(Rectangle((-y - 0.4, x - 0.4), 0.8, 0.8, color=c, zorder=6))
                elif m.ns.endswith("latent_tokens") and m.type == 9:
                    ax.text(-m.pose.position.y + 1.0, 3.5, m.text, ha="left", va="center", rotation=90,
                            color="white", fontsize=7)
                elif m.ns.endswith("poses"):
                    ax.scatter([-p.y for p in m.points], [p.x for p in m.points], s=28, color=c, zorder=5)
        path = _nearest(data["/planning/latentvla/path"], t)
        if path is not None:
            xs = [p.pose.position.x for p in path.poses]
            ys = [-p.pose.position.y for p in path.poses]
            ax.plot(ys, xs, color="#ff4040" if traj.is_fallback else "#19ff00", lw=3, zorder=4)
        ax.add_patch(Rectangle((-0.95, -2.4), 1.9, 4.8, color="#4aa3ff", zorder=6))  # the ego (base_link)
        ax.set_xlim(-25, 25)
        ax.set_ylim(-12, 45)
        ax.set_aspect("equal")
        ax.tick_params(colors="#aaaaaa", labelsize=7)
        ax.set_xlabel("-y [m]  (base_link, x forward)", color="#aaaaaa", fontsize=8)
        ax.set_title(f"{title}\n{state_text}", **style)

    ax = fig.add_subplot(gs[0:2, 0:2])
    top_view(ax, pick["model"], "Point cloud + planned Path + markers (model)")
    if pick["fallback"] is not None:
        ax = fig.add_subplot(gs[0:2, 2])
        top_view(ax, pick["fallback"], "Same displays during the\nreasoner outage (fallback)")
        ax.set_xlim(-15, 15)
    for row, (topic, title) in enumerate((
            ("/sensing/camera/front/image_raw", "Camera  /sensing/camera/front/image_raw"),
            ("/latentvla/bev_image", "BEV image  /latentvla/bev_image\n(green LiDAR, red BEV-token activation)"))):
        image = _nearest(data[topic], _stamp(pick["model"]))
        ax = fig.add_subplot(gs[row, 3])
        if image is not None:
            ax.imshow(_image(image))
        ax.set_title(title, **style)
        ax.axis("off")
    # timeline: fallback state and latent tokens of every planned frame
    ax = fig.add_subplot(gs[2, :])
    t0 = _stamp(frame_trajs[0])
    ts = np.array([(_stamp(m) - t0) * 1e-9 for m in frame_trajs])
    fb = np.array([m.is_fallback for m in frame_trajs])
    tokens = np.full((12, len(frame_trajs)), np.nan)
    for i, m in enumerate(frame_trajs):
        mk = markers_by_stamp.get(_stamp(m))
        if mk is None:
            continue
        for marker in mk.markers:
            if marker.ns.endswith("latent_tokens") and marker.type == 9:
                tokens[:, i] = [int(v) for v in marker.text.split(":")[1].split()]
    ax.imshow(tokens, aspect="auto", cmap="hsv", vmin=0, vmax=16, interpolation="nearest",
              extent=(ts[0], ts[-1] if len(ts) > 1 else 1, 11.5, -0.5))
    ax.scatter(ts, np.full(len(ts), 13.0), c=np.where(fb, "#ff4040", "#19ff00"), s=14, marker="s")
    ax.set_ylim(14, -1)
    ax.set_yticks([0, 11, 13])
    ax.set_yticklabels(["token 0", "token 11", "state"], color="#aaaaaa", fontsize=7)
    ax.tick_params(colors="#aaaaaa", labelsize=7)
    ax.set_xlabel("time in the recording [s]", color="#aaaaaa", fontsize=8)
    ax.set_title("Latent tokens per frame (colour = code of 16; blank = no plan) and state "
                 "(green model / red fallback)", **style)
    fig.suptitle(f"latentvla_ros: rendered from the recorded MCAP ({model_id}); "
                 f"{len(model)} model / {len(fallback)} fallback trajectories", color="white", fontsize=13)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80, facecolor=fig.get_facecolor())
    print(f"wrote {out_png}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mcap", help="existing recording (rosbag2 dir or .mcap); default: record a new run")
    ap.add_argument("--record-to", default="artifacts/visualization/run", help="where a new recording goes")
    ap.add_argument("--out", default=str(ROOT / "docs" / "images" / "visualization.png"))
    ap.add_argument("--frames", type=int, default=120)
    args = ap.parse_args()
    mcap = Path(args.mcap) if args.mcap else record(Path(args.record_to), args.frames)
    render(mcap, Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
