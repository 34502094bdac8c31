"""How much the student's latent action embeddings move under small input changes, against how much they
move from one logged frame to the next: the measurement behind ``PlannerConfig.action_jitter``
(docs/evaluation.md, "Action jitter").

For frames of driving logs (``latentvla train data``), the relative L2 change ||a' - a|| / ||a|| of the
student's action embeddings a (``LatentStudent(...).action_embeddings``, all 12 tokens) between frame t and
t + 1 of the same log, and between frame t and frame t jittered by ``training.student.jitter_inputs`` at
several image shifts and ego-motion noise levels; prints the median and p95 of each.

    python scripts/student_token_sensitivity.py --data /tmp/ft/data --checkpoints checkpoints/edge
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="directory of driving logs")
    ap.add_argument("--checkpoints", default="checkpoints/edge")
    ap.add_argument("--logs", type=int, default=12, help="logs used (every k-th of the sorted list)")
    ap.add_argument("--frames", type=int, default=120, help="frame pairs measured")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch

    import latentvla_ros.training.student as jitter
    from latentvla_ros.data.torch_datasets import FrameDataset
    from latentvla_ros.models.configuration_bev import BevBackboneConfig
    from latentvla_ros.models.modeling_student import LatentStudent
    from latentvla_ros.training.student import resize_image

    torch.manual_seed(args.seed)
    all_logs = sorted(p for p in Path(args.data).iterdir() if p.is_dir())
    if not all_logs:
        raise SystemExit(f"no logs in {args.data}")
    logs = all_logs[:: max(1, len(all_logs) // args.logs)][: args.logs]
    bev = BevBackboneConfig.preset("edge")
    ds = FrameDataset(logs, image_size=bev.image_size, with_lidar=False, require=("future",))
    student = LatentStudent.from_pretrained(Path(args.checkpoints) / "student").eval()
    step = max(1, (len(ds) - 1) // args.frames)
    index = [i for i in range(0, len(ds) - 1, step)][: args.frames]

    def batch(ids):
        samples = [ds[i] for i in ids]
        image = torch.stack([torch.as_tensor(s["image"]).float() for s in samples])
        ego = torch.stack([torch.as_tensor(s["ego_status"]).float() for s in samples])
        return resize_image(image, student.config.image_size), ego

    @torch.no_grad()
    def embed(image, ego):
        return student(image, ego).action_embeddings.flatten(1)

    def rel(a, b):
        return ((a - b).norm(dim=1) / b.norm(dim=1)).numpy()

    image, ego = batch(index)
    base = embed(image, ego)
    # consecutive frames of the same log only (a dataset index + 1 may start the next log)
    same_log = [k for k, i in enumerate(index)
                if ds.index[i + 1][0] == ds.index[i][0] and ds.index[i + 1][1] == ds.index[i][1] + 1]
    nxt_image, nxt_ego = batch([index[k] + 1 for k in same_log])
    rows = [("next logged frame", rel(embed(nxt_image, nxt_ego), base[same_log]))]
    trained = jitter.JITTER_SHIFT_PX, jitter.JITTER_VELOCITY_STD_MPS, jitter.JITTER_ACCELERATION_STD_MPS2
    for shift, v_std, a_std in ((1, 0.0, 0.0), (3, 0.0, 0.0), (0, 0.1, 0.3), trained):
        j_image, j_ego = jitter.jitter_inputs(image, ego, shift_px=shift, velocity_std_mps=v_std,
                                              acceleration_std_mps2=a_std)
        tag = " (the training setting)" if (shift, v_std, a_std) == trained else ""
        rows.append((f"jitter: shift <= {shift} px, velocity noise {v_std} m/s, acceleration noise {a_std} m/s^2{tag}",
                     rel(embed(j_image, j_ego), base)))
    print(f"{len(index)} frames of {len(logs)} logs; relative L2 change of the student's action embeddings")
    for name, r in rows:
        print(f"  {name}: median {np.median(r):.3f}, p95 {np.percentile(r, 95):.3f} ({len(r)} frames)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
