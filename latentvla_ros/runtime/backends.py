"""The two inference backends of a stage: torch (eager, ``torch.inference_mode``) and
onnxruntime (the model exported once with ``export_onnx``)."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from latentvla_ros.core import checkpoint as ckpt
from latentvla_ros.runtime.registry import example_inputs, model_spec

BACKENDS = ("torch", "onnx")


def export_onnx(
    model_kind: str,
    checkpoint_or_model: str | Path | nn.Module,
    path: str | Path,
    opset: int = 17,
    dynamic_batch: bool = True,
    model_id: str | None = None,
) -> Path:
    """Export a model (a checkpoint directory or an ``nn.Module``) to ONNX at ``path``.

    Input/output names follow ``MODEL_SPECS`` (the planner has no ``context``
    input when ``fusion='none'``, no ``route`` / ``route_valid`` when ``route_points`` = 0;
    the inputs go in by name). ``model_id`` is stored in the ONNX metadata.
    Uses the TorchScript-based exporter (``dynamo=False``): the dynamo exporter
    needs ``onnxscript``, which the project does not install.
    """
    spec = model_spec(model_kind)
    if isinstance(checkpoint_or_model, nn.Module):
        model = checkpoint_or_model
        mid = model_id or ckpt.checkpoint_id(None, model_kind)
    else:
        model = spec.model_cls.from_pretrained(checkpoint_or_model)
        mid = model_id or ckpt.checkpoint_id(checkpoint_or_model, model_kind)
    if not isinstance(model, spec.model_cls):
        raise ValueError(f"export_onnx({model_kind!r}) got a {type(model).__name__}")
    model = copy.deepcopy(model).eval().cpu().float()  # leave the caller's model (device, mode) alone
    inputs = example_inputs(model_kind, model.config)
    names = list(inputs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dynamic_axes = {n: {0: "batch"} for n in [*names, *spec.outputs]} if dynamic_batch else None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation + tracer notes
        with torch.no_grad():
            torch.onnx.export(
                model, (), str(path), kwargs=inputs, dynamo=False, input_names=names,
                output_names=list(spec.outputs), opset_version=opset, dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
    import onnx

    proto = onnx.load(str(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "model_id", mid
    entry = proto.metadata_props.add()
    entry.key, entry.value = "model_kind", model_kind
    onnx.save(proto, str(path))
    return path


def onnx_model_id(path: str | Path) -> str | None:
    """The ``model_id`` stored by ``export_onnx``; None for unreadable files or other exports."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # noqa: BLE001 - any unreadable file just means "export again"
        return None
    return {p.key: p.value for p in proto.metadata_props}.get("model_id")


class TorchRunner:
    def __init__(self, model: nn.Module, device: str, channels_last: bool, bf16: bool):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.channels_last = channels_last
        self.bf16 = bf16
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def __call__(self, **arrays: np.ndarray) -> list[np.ndarray]:
        """The model on ``arrays`` passed by name (``MODEL_SPECS`` input names = forward arguments)."""
        with torch.inference_mode():
            args = {}
            for name, value in arrays.items():
                value = np.ascontiguousarray(value)
                if not value.flags.writeable:  # a view into a shared message buffer: torch wants its own
                    value = value.copy()
                t = torch.from_numpy(value).to(self.device)
                if self.channels_last and t.ndim == 4:
                    t = t.contiguous(memory_format=torch.channels_last)
                args[name] = t
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                out = self.model(**args)
            outs = out if isinstance(out, tuple) else (out,)
            return [o.float().cpu().numpy() for o in outs]


class OnnxRunner:
    def __init__(self, path: Path, device: str, threads: int | None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # the graph runs several sessions side by side (and torch beside them): idle
        # intra-op threads must sleep, not spin on the cores the other nodes need
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if str(device).startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        self.input_names = {i.name for i in self.session.get_inputs()}
        self.path = path

    def __call__(self, **arrays: np.ndarray) -> list[np.ndarray]:
        feed = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items() if k in self.input_names}
        return self.session.run(None, feed)
