"""Probe: fine-tune the shipped student so that its latent action embeddings stay put under the input jitter
of ``training.student.jitter_inputs`` (a one-pixel image shift, ego-motion noise), into a checkpoint folder
whose other models (the planners included) are the shipped ones.

Self-distillation, no teacher: a frozen copy of the shipped student gives the targets on the clean input;
the loss is the mean squared error, relative to the targets' mean square, of the tuned student's action and
visual embeddings on the clean input and of its action embeddings on a jittered copy, against those targets.
So the planner keeps reading (almost) the embeddings it was trained on, minus their jumps. Used for
docs/evaluation.md, "Action jitter" (whether a steadier student steadies the closed loop):

    python scripts/finetune_student_consistency.py --data /tmp/ft/data --out /tmp/stc --steps 600
    python scripts/student_token_sensitivity.py --data /tmp/ft/data --checkpoints /tmp/stc/checkpoints
    python scripts/validation_closed_loop.py --out /tmp/val --methods latentvla_student \\
        --checkpoints /tmp/stc/checkpoints --scenarios highway,merge --seeds 30000-30024 --workers 1
"""
from __future__ import annotations

import argparse
import copy
import shutil
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="directory of driving logs")
    ap.add_argument("--checkpoints", default="checkpoints/edge")
    ap.add_argument("--out", required=True, help="run directory; <out>/checkpoints is the result")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import torch
    from torch.utils.data import DataLoader

    from latentvla_ros.data.torch_datasets import FrameDataset
    from latentvla_ros.models.configuration_bev import BevBackboneConfig
    from latentvla_ros.models.modeling_student import LatentStudent
    from latentvla_ros.training.student import jitter_inputs, relative_mse, resize_image

    logs = sorted(p for p in Path(args.data).iterdir() if p.is_dir())
    if not logs:
        print(f"no logs in {args.data}", file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    ck, out = Path(args.checkpoints), Path(args.out)
    student = LatentStudent.from_pretrained(ck / "student")
    frozen = copy.deepcopy(student).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    student.train()
    ds = FrameDataset(logs, image_size=BevBackboneConfig.preset("edge").image_size, with_lidar=False, require=("future",))
    loader = DataLoader(ds, batch_size=args.batch_size, shuffle=True, drop_last=True)
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, weight_decay=0.0)

    step, t0 = 0, time.time()
    while step < args.steps:
        for batch in loader:
            image = resize_image(batch["image"].float(), student.config.image_size)
            ego = batch["ego_status"].float()
            with torch.no_grad():
                target = frozen(image, ego)
            j_image, j_ego = jitter_inputs(image, ego)
            clean = student(image, ego)
            jittered = student(j_image, j_ego)
            loss = (relative_mse(clean.action_embeddings, target.action_embeddings)
                    + relative_mse(clean.visual_embeddings, target.visual_embeddings)
                    + relative_mse(jittered.action_embeddings, target.action_embeddings))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if step % 50 == 0 or step == 1:
                print(f"step {step}/{args.steps} loss {float(loss):.4f} ({time.time() - t0:.0f} s)", flush=True)
            if step >= args.steps:
                break
    dst = out / "checkpoints"
    shutil.copytree(ck, dst, dirs_exist_ok=True)
    shutil.rmtree(dst / "student")
    student.eval().save_pretrained(dst / "student")
    print(f"{step} steps in {(time.time() - t0) / 60:.1f} min; checkpoints: {dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
