"""The other bench sections: ONNX vs torch, teacher vs student, message conversions."""
from __future__ import annotations

import gc
import logging
import time
from typing import Any, Callable

import numpy as np

from latentvla_ros.apps.bench.data import ConfigData
from latentvla_ros.apps.bench.meters import ratio_of, stats_ms
from latentvla_ros.apps.bench.options import ONNX_ATOL, ONNX_RTOL, BenchOptions
from latentvla_ros.apps.reporting import meminfo_gb

log = logging.getLogger(__name__)

#: the route input of the planner's ONNX check (planners with ``route_points`` > 0): straight ahead
STRAIGHT_ROUTE = np.array([[-10.0, 0.0], [100.0, 0.0]])


# ============================================================================ ONNX
def onnx_section(opts: BenchOptions, data: ConfigData, runs: int) -> dict[str, Any]:
    """Per model: export, max |torch - onnxruntime| on a real frame's inputs, median latencies."""
    from latentvla_ros.runtime import BevFeatureExtractor, LatentReasoner, TrajectoryPlanner, model_spec

    frame = data.frames[min(len(data.frames) - 1, max(1, opts.warmup))]
    onnx_dir = opts.out / "onnx" / data.config
    stages = {"bev_backbone": BevFeatureExtractor, "student": LatentReasoner, "planner": TrajectoryPlanner}
    torch_stages, onnx_stages, export_s = {}, {}, {}
    threads = opts.threads[data.config]
    for kind, cls in stages.items():
        torch_stages[kind] = cls(checkpoint_dir=data.checkpoint_dir / kind, torch_threads=threads, backend="torch")
        path = onnx_dir / f"{kind}.onnx"
        if path.exists():
            path.unlink()  # time a fresh export
        t = time.perf_counter()
        onnx_stages[kind] = cls(checkpoint_dir=data.checkpoint_dir / kind, torch_threads=threads, backend="onnx",
                                onnx_path=path)
        export_s[kind] = time.perf_counter() - t
    bev = torch_stages["bev_backbone"].extract(frame)
    plan = torch_stages["student"].reason(frame)
    inputs = {
        "bev_backbone": torch_stages["bev_backbone"].features(frame),
        "student": torch_stages["student"].features(frame),
        "planner": torch_stages["planner"].features(bev, plan, STRAIGHT_ROUTE),
    }
    out: dict[str, Any] = {"tolerance": f"max|torch - onnxruntime| <= {ONNX_ATOL:g} + {ONNX_RTOL:g} * max|torch| per output",
                           "threads": threads, "runs": runs}
    for kind in stages:
        ts, os_ = torch_stages[kind], onnx_stages[kind]
        ref, got = ts._run(**inputs[kind]), os_._run(**inputs[kind])
        outputs = {}
        ok = True
        for name, a, b in zip(model_spec(kind).outputs, ref, got):
            diff = float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
            scale = float(np.max(np.abs(a)))
            within = diff <= ONNX_ATOL + ONNX_RTOL * scale
            ok &= within
            outputs[name] = {"max_abs_diff": diff, "max_abs_torch": scale, "within_tolerance": bool(within)}
        times = {}
        for label, st in (("torch", ts), ("onnx", os_)):
            for _ in range(2):
                st._run(**inputs[kind])
            samples = []
            for _ in range(runs):
                t = time.perf_counter()
                st._run(**inputs[kind])
                samples.append((time.perf_counter() - t) * 1e3)
            times[label] = stats_ms(samples)
        params = sum(p.numel() for p in ts.model.parameters())
        out[kind] = {"outputs": outputs, "within_tolerance": bool(ok), "torch_ms": times["torch"], "onnx_ms": times["onnx"],
                     "speedup_onnx_over_torch": ratio_of(times["torch"].get("median_ms"), times["onnx"].get("median_ms")),
                     "export_s": export_s[kind], "onnx_file": str(onnx_dir / f"{kind}.onnx"), "parameters": int(params)}
    del torch_stages, onnx_stages
    gc.collect()
    return out


# ============================================================================ teacher vs student
def _teacher_param_model(text: dict, vision: dict, top: dict) -> int:
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    qcfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **top)
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(qcfg)
    return int(sum(p.numel() for p in model.parameters()))


def _scaled_arch(text: dict, vision: dict, layers: int, depth: int) -> tuple[dict, dict]:
    text = {**text, "num_hidden_layers": layers}
    full = [i for i in vision.get("fullatt_block_indexes", []) if i < depth] or [depth - 1]
    vision = {**vision, "depth": depth, "fullatt_block_indexes": full}
    return text, vision


def choose_teacher(mem_budget_gb: float, quick: bool) -> tuple[Any, dict[str, Any]]:
    """The largest Qwen2.5-VL-3B-shaped teacher (fp32) whose weights fit ``mem_budget_gb``.

    Width, heads, vocabulary and vision tower stay those of Qwen2.5-VL-3B; if the full
    model does not fit, text layers and vision blocks are cut by the same fraction.
    """
    from latentvla_ros.models.configuration_teacher import TeacherConfig

    if quick:
        return TeacherConfig(preset="tiny"), {"name": "tiny (quick run)", "scaled": False}
    base = TeacherConfig(preset="qwen2.5-vl-3b", dtype="float32")
    text, vision, top = base.qwen_config_dicts()
    top = {k: v for k, v in top.items()}
    full_layers, full_depth = int(text["num_hidden_layers"]), int(vision["depth"])
    full_params = _teacher_param_model(text, vision, top)
    p11 = _teacher_param_model(*_scaled_arch(text, vision, 1, 1), top)
    per_text = _teacher_param_model(*_scaled_arch(text, vision, 2, 1), top) - p11
    per_vision = _teacher_param_model(*_scaled_arch(text, vision, 1, 2), top) - p11
    fixed = p11 - per_text - per_vision
    overhead_gb = 1.5  # activations, KV cache, tokenizer, allocator slack
    info = {"full_params": full_params, "mem_budget_gb": mem_budget_gb, "dtype": "float32"}
    for frac in np.linspace(1.0, 0.05, 20):
        layers, depth = max(1, round(full_layers * frac)), max(1, round(full_depth * frac))
        params = fixed + layers * per_text + depth * per_vision
        if params * 4 / 1024**3 + overhead_gb <= mem_budget_gb:
            arch_text, arch_vision = _scaled_arch(text, vision, layers, depth)
            scaled = layers != full_layers or depth != full_depth
            overrides = {"text": {"num_hidden_layers": layers},
                         "vision": {"depth": depth, "fullatt_block_indexes": arch_vision["fullatt_block_indexes"]}}
            cfg = TeacherConfig(preset="qwen2.5-vl-3b", dtype="float32", arch_overrides=overrides if scaled else None)
            info.update(name=("Qwen2.5-VL-3B architecture" if not scaled else
                              f"Qwen2.5-VL-3B widths with {layers}/{full_layers} text layers and {depth}/{full_depth} vision blocks"),
                        scaled=scaled, text_layers=layers, vision_depth=depth, estimated_params=int(params),
                        layer_fraction=layers / full_layers)
            return cfg, info
    raise MemoryError(f"not even a 1-layer Qwen2.5-VL-3B-wide teacher fits in {mem_budget_gb:.1f} GB")


def teacher_section(opts: BenchOptions, data: ConfigData) -> dict[str, Any]:
    import torch

    from latentvla_ros.core.features import stitch_cameras
    from latentvla_ros.models.modeling_teacher import LatentTeacher
    from latentvla_ros.runtime import LatentReasoner, usable_cores

    threads = usable_cores()  # the same hardware for both: every core
    torch.set_num_threads(threads)
    frame = data.frames[min(len(data.frames) - 1, max(1, opts.warmup))]
    student = LatentReasoner(checkpoint_dir=data.checkpoint_dir / "student", torch_threads=threads)
    student.reason(frame)
    s_times = []
    for _ in range(10 if not opts.quick else 3):
        t = time.perf_counter()
        student.reason(frame)
        s_times.append((time.perf_counter() - t) * 1e3)
    s_params = sum(p.numel() for p in student.model.parameters())
    del student
    gc.collect()
    avail = meminfo_gb()
    budget = opts.teacher_mem_gb if opts.teacher_mem_gb > 0 else max(0.0, avail - 4.0)
    cfg, info = choose_teacher(budget, opts.quick)
    t = time.perf_counter()
    teacher = LatentTeacher.build(cfg).eval()
    build_s = time.perf_counter() - t
    t_params = teacher.num_parameters()

    def run_teacher():
        image = stitch_cameras(frame.cameras, cfg.image_size)
        images = torch.from_numpy(image)[None]
        ego = torch.from_numpy(frame.ego.status_vector())[None]
        with torch.inference_mode():
            return teacher.predict(images, ego)

    run_teacher()
    t_times = []
    for _ in range(opts.teacher_runs):
        t = time.perf_counter()
        run_teacher()
        t_times.append((time.perf_counter() - t) * 1e3)
    prompt_len = int(teacher.prepare_inputs(torch.zeros(1, 3, *cfg.image_size), torch.zeros(1, 8))["input_ids"].shape[1])
    teacher = None  # drops the model (run_teacher's closure holds it too) before gc.collect()
    gc.collect()
    s_stats, t_stats = stats_ms(s_times), stats_ms(t_times)
    result = {
        "student": {"config": f"{data.config} student", "checkpoint": str(data.checkpoint_dir / "student"),
                    "parameters": int(s_params), "latency_ms": s_stats,
                    "input": f"camera {list(frame.cameras[0].image.shape)} -> stitched/resized to the student's input"},
        "teacher": {**info, "parameters": int(t_params), "build_s": build_s, "latency_ms": t_stats,
                    "image_size": list(cfg.image_size), "image_tokens": cfg.num_image_tokens, "prompt_tokens": prompt_len,
                    "decode_steps": cfg.num_latent_tokens, "mem_available_gb": avail,
                    "what": "LatentTeacher.predict: tokenise + patchify + prefill + 12 greedy steps with KV cache"},
        "speedup_student_over_teacher": ratio_of(t_stats.get("median_ms"), s_stats.get("median_ms")),
    }
    if info.get("scaled"):
        frac = info["layer_fraction"]
        result["teacher"]["note"] = (f"scaled to fit: {frac:.0%} of the layers; the full 3B teacher would take about "
                                     f"1/{frac:.2f} of this latency (lower bound on the speedup)")
    return result


# ============================================================================ conversions
def conversions_section(data: ConfigData, repeats: int = 50) -> dict[str, Any]:
    """Message conversion costs of the graph's messages and zero-copy checks."""
    from rclpy.serialization import deserialize_message, serialize_message

    from latentvla_ros.core.types import Trajectory
    from latentvla_ros.msg import SensorFrame
    from latentvla_ros.ros.conversions import (
        bev_to_msg,
        image_to_numpy,
        make_header,
        msg_to_bev,
        msg_to_plan,
        numpy_to_image,
        plan_to_msg,
        pointcloud2_to_xyzi,
        sensor_frame_to_core,
        trajectory_to_msg,
        xyzi_to_pointcloud2,
    )
    from latentvla_ros.runtime import LatentReasoner

    info, cloud, odom, image = data.msgs[0]
    frame = data.frames[0]
    cam = frame.cameras[0].image
    sf = SensorFrame(header=make_header(1, "base_link"), images=[image], camera_infos=[info], lidar=cloud, odometry=odom)
    from latentvla_ros.runtime import BevFeatureExtractor

    bev_stage = BevFeatureExtractor(checkpoint_dir=data.checkpoint_dir / "bev_backbone")
    student = LatentReasoner(checkpoint_dir=data.checkpoint_dir / "student")
    bev = bev_stage.extract(frame)
    plan = student.reason(frame)
    del bev_stage, student
    traj = Trajectory(poses=np.cumsum(np.ones((8, 3)), axis=0) * 0.1, stamp_ns=1, model_id="bench")
    bev_msg, plan_msg = bev_to_msg(bev, "base_link"), plan_to_msg(plan, "base_link")
    traj_msg = trajectory_to_msg(traj, "base_link")
    cases: dict[str, Callable[[], Any]] = {
        "numpy_to_image": lambda: numpy_to_image(cam, 1, "cam"),
        "image_to_numpy": lambda: image_to_numpy(image),
        "xyzi_to_pointcloud2": lambda: xyzi_to_pointcloud2(frame.lidar_points, 1, "base_link"),
        "pointcloud2_to_xyzi": lambda: pointcloud2_to_xyzi(cloud),
        "sensor_frame_to_core": lambda: sensor_frame_to_core(sf),
        "bev_to_msg": lambda: bev_to_msg(bev, "base_link"),
        "msg_to_bev": lambda: msg_to_bev(bev_msg),
        "plan_to_msg": lambda: plan_to_msg(plan, "base_link"),
        "msg_to_plan": lambda: msg_to_plan(plan_msg),
        "trajectory_to_msg": lambda: trajectory_to_msg(traj, "base_link"),
        "serialize SensorFrame": lambda: serialize_message(sf),
        "serialize BevFeatures": lambda: serialize_message(bev_msg),
        "serialize LatentActionPlan": lambda: serialize_message(plan_msg),
    }
    raw_sf = serialize_message(sf)
    cases["deserialize SensorFrame"] = lambda: deserialize_message(raw_sf, SensorFrame)
    out: dict[str, Any] = {"sizes_bytes": {"Image.data": len(image.data), "PointCloud2.data": len(cloud.data),
                                           "SensorFrame (CDR)": len(raw_sf), "BevFeatures (CDR)": len(serialize_message(bev_msg)),
                                           "LatentActionPlan (CDR)": len(serialize_message(plan_msg)),
                                           "PlannedTrajectory (CDR)": len(serialize_message(traj_msg))}}
    timing = {}
    for name, fn in cases.items():
        fn()
        samples = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t) * 1e3)
        timing[name] = stats_ms(samples)
    out["time_ms"] = timing
    view = image_to_numpy(image)
    core = sensor_frame_to_core(sf)
    back = msg_to_bev(bev_msg)
    out["zero_copy"] = {
        "image_to_numpy shares the message buffer": bool(np.shares_memory(view, np.frombuffer(image.data, np.uint8))),
        "sensor_frame_to_core image shares the message buffer": bool(
            np.shares_memory(core.cameras[0].image, np.frombuffer(image.data, np.uint8))),
        "pointcloud2_to_xyzi shares the message buffer": bool(
            np.shares_memory(pointcloud2_to_xyzi(cloud), np.frombuffer(cloud.data, np.uint8))),
        "msg_to_bev tokens share the message buffer": bool(np.shares_memory(back.tokens, np.frombuffer(bev_msg.tokens, np.float32))),
    }
    return out
