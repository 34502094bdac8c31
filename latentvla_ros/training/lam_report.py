"""The LAM's report: docs/training.md section, docs/training.json block, atlas image.

``lam_summary`` condenses an eval.json to the ``{"lam": ...}`` block of
docs/training.json; ``lam_targets`` checks the issue's targets; ``lam_report_lines``
renders the '## Latent action model' section; ``write_lam_docs`` writes them (and
the atlas image) for a finished ``latentvla train lam`` / ``all`` run.
"""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

SECTION_TITLE = "## Latent action model"
ATLAS_DOC_IMAGE = "images/lam_atlas.png"


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _get(d: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def lam_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The ``lam`` block of docs/training.json, from an eval.json."""
    nf = report.get("next_frame", {})
    return {
        "ego_motion_r2": {"ego_tokens": _get(report, "probe", "ego", "r2"), "env_tokens": _get(report, "probe", "env", "r2")},
        "agent_motion_r2": {"ego_tokens": _get(report, "probe_agents", "ego", "r2"),
                            "env_tokens": _get(report, "probe_agents", "env", "r2"),
                            "no_tokens": _get(report, "probe_agents", "baseline", "r2")},
        "next_frame_mse": {"true_codes": nf.get("mse"), "random_ego_codes": nf.get("mse_random_ego_codes"),
                           "swapped_ego_codes": nf.get("mse_swapped_ego_codes"),
                           "copy_last_frame": nf.get("mse_copy_last_frame")},
        "h_ego_given_env_bits": report.get("h_ego_given_env_bits"),
        "codes_used": {n: _get(report, "codebooks", n, "codes_used") for n in ("env", "ego")},
        "perplexity": {n: _get(report, "codebooks", n, "perplexity") for n in ("env", "ego")},
        "num_transitions": report.get("num_transitions"),
        "split": report.get("split"),
    }


def lam_targets(summary: dict[str, Any]) -> dict[str, bool]:
    """The issue's targets, each met or not."""
    def val(*keys: str) -> float:
        v = _get(summary, *keys)
        return float(v) if isinstance(v, (int, float)) else float("nan")

    ego_r2, env_r2 = val("ego_motion_r2", "ego_tokens"), val("ego_motion_r2", "env_tokens")
    return {
        "ego tokens predict ego motion: R^2 >= 0.8": ego_r2 >= 0.8,
        "... and >= 0.3 above the env tokens": ego_r2 - env_r2 >= 0.3,
        "env tokens predict the agents' motion better than ego tokens (and than no tokens)":
            val("agent_motion_r2", "env_tokens") > max(val("agent_motion_r2", "ego_tokens"),
                                                       val("agent_motion_r2", "no_tokens")),
        "random ego codes raise next-frame MSE >= 30%":
            val("next_frame_mse", "random_ego_codes") >= 1.3 * val("next_frame_mse", "true_codes"),
        "H(ego | env) >= 1.5 bits": val("h_ego_given_env_bits") >= 1.5,
        "both codebooks use >= 12 of 16 codes": min(val("codes_used", "env"), val("codes_used", "ego")) >= 12,
        "both codebooks have perplexity >= 8": min(val("perplexity", "env"), val("perplexity", "ego")) >= 8,
    }


def fmt_value(value: Any, digits: int = 4) -> str:
    """A number for the report tables (4 significant digits), anything else as text."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:.{digits}g}"
    return str(value)


def lam_report_lines(report: dict[str, Any], atlas: dict[str, Any] | None = None,
                     atlas_image: str = ATLAS_DOC_IMAGE, command: str = "", note: str = "") -> list[str]:
    """The '## Latent action model' section of docs/training.md."""
    summ = lam_summary(report)
    nf = summ["next_frame_mse"]
    lines = [f"{SECTION_TITLE} (held-out transitions)", ""]
    if command:
        lines += [f"Produced by `{command}`; every figure below is read from the `eval.json` and `atlas.json` "
                  "it writes beside the checkpoint.", ""]
    lines += ["How it works: the environmental encoder sees frame t moved by the frames' own rigid registration "
              "(label-free odometry, models/lam_odometry.py) and frame t + s, never the true ego motion; in stage 1 the "
              "forward model moves frame t by the true ego motion and also gets the trajectory and ego status; its loss "
              "leaves out the pixels that motion brings into view and weighs the pixels it leaves unexplained (the "
              "other road users' own motion, found without labels) more, and dead environmental codes are "
              "restarted every few steps, so the environmental code describes the other agents. The ego "
              "encoder's latent starts with that registration (dx, dy, dyaw), so every ego code is a motion that the "
              "stage-2 forward model applies as a rigid warp of frame t before predicting the rest.", ""]
    if note:
        lines += [note, ""]
    lines += [
             f"{fmt_value(report.get('num_transitions'))} held-out transitions ({fmt_value(report.get('split'))}) from "
             f"{fmt_value(report.get('num_logs'))} logs, hold-out fraction {fmt_value(report.get('holdout_fraction'))}, "
             f"one transition = {fmt_value(report.get('frame_stride'))} frames. The forward model sees the current frame "
             "only; stage 1 gives it the ego's own motion (never to the encoder), stage 2 only the two codes.", "",
             "| next-frame MSE | value |", "|---|---|",
             f"| true env + ego codes | {fmt_value(nf['true_codes'])} |",
             f"| random ego codes | {fmt_value(nf['random_ego_codes'])} |",
             f"| swapped ego codes (another transition's) | {fmt_value(nf['swapped_ego_codes'])} |",
             f"| copy the last frame | {fmt_value(nf['copy_last_frame'])} |", "",
             "| codebook | codes used / 16 | perplexity |", "|---|---|---|"]
    for name in ("env", "ego"):
        lines.append(f"| {name} | {fmt_value(summ['codes_used'][name])} | {fmt_value(summ['perplexity'][name])} |")
    lines += ["", f"H(ego | env) = {fmt_value(report.get('h_ego_given_env_bits'))} bits "
              f"(H(ego) = {fmt_value(report.get('h_ego_bits'))} bits).", "",
              "Probes (per-code lookup table fitted on the training transitions, R^2 on the held-out ones, averaged "
              "over dx, dy, dyaw, standardised): the ego's motion, and the mean own motion of the other agents in view.",
              "", "| tokens | ego motion R^2 | agents' motion R^2 |", "|---|---|---|"]
    for key, label in (("ego", "ego tokens"), ("env", "environmental tokens"), ("ego_env", "both"),
                       ("baseline", "no tokens (mean)")):
        lines.append(f"| {label} | {fmt_value(_get(report, 'probe', key, 'r2'))} | "
                     f"{fmt_value(_get(report, 'probe_agents', key, 'r2'))} |")
    lines += ["", "| target | met |", "|---|---|"]
    lines += [f"| {name} | {'yes' if ok else 'no'} |" for name, ok in lam_targets(summ).items()]
    if atlas:
        lines += ["", "### Atlas of the 16 ego codes", "",
                  f"Over {fmt_value(atlas.get('num_transitions'))} transitions of all logs; motion over one transition "
                  f"({fmt_value(atlas.get('seconds_per_transition'))} s) in the ego frame (x forward, y left); the names are "
                  "stored with the LAM checkpoint (`code_names`) and shown by the latent_reasoner's markers.", "",
                  f"![atlas]({atlas_image})", "",
                  "| code | name | share | dx [m] | dy [m] | dyaw [deg] |", "|---|---|---|---|---|---|"]
        for c in atlas.get("codes", []):
            lines.append(f"| {c['code']} | {c['name']} | {c['share']:.1%} | {c['mean'][0]:.2f} ± {c['std'][0]:.2f} | "
                         f"{c['mean'][1]:.2f} ± {c['std'][1]:.2f} | {math.degrees(c['mean'][2]):.1f} ± "
                         f"{math.degrees(c['std'][2]):.1f} |")
    return lines



def replace_section(text: str, lines: list[str], before: str = "## Teacher") -> str:
    """``text`` with its '## Latent action model' section (up to the next '## ') replaced by
    ``lines``; inserted before the ``before`` section (or appended) when absent."""
    rows = text.split("\n")
    start = next((i for i, r in enumerate(rows) if r.startswith(SECTION_TITLE)), None)
    if start is None:
        at = next((i for i, r in enumerate(rows) if r.startswith(before)), len(rows))
        return "\n".join(rows[:at] + lines + [""] + rows[at:])
    end = next((i for i in range(start + 1, len(rows)) if rows[i].startswith("## ")), len(rows))
    return "\n".join(rows[:start] + lines + [""] + rows[end:])


def write_lam_docs(lam_dir: Path, out_dir: Path, command: str, docs_dir: Path | None = None,
                   note: str = "") -> list[str]:
    """Write ``<out_dir>/lam_report.md`` (and, with ``docs_dir``, update ``training.md``'s LAM
    section, the ``lam`` block of ``training.json`` and ``images/lam_atlas.png`` there) from
    the eval.json / atlas.json beside the checkpoint ``lam_dir``. Returns the section lines."""
    report, atlas = _load_json(lam_dir / "eval.json"), _load_json(lam_dir / "atlas.json")
    lines = lam_report_lines(report, atlas, command=command, note=note)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "lam_report.md").write_text("\n".join(lines) + "\n")
    if docs_dir is not None:
        md = docs_dir / "training.md"
        text = md.read_text() if md.is_file() else "# Training report\n"
        md.write_text(replace_section(text, lines).rstrip("\n") + "\n")
        js = docs_dir / "training.json"
        data = _load_json(js)
        summary = lam_summary(report)
        summary["targets_met"] = lam_targets(summary)
        summary["command"] = command
        data["lam"] = summary
        js.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        png = lam_dir / "lam_atlas.png"
        if png.is_file():
            (docs_dir / ATLAS_DOC_IMAGE).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(png, docs_dir / ATLAS_DOC_IMAGE)
    return lines


__all__ = ["fmt_value", "lam_report_lines", "lam_summary", "lam_targets", "replace_section", "write_lam_docs"]
