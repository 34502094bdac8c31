"""Tests of the Qwen2.5-VL teacher (tiny preset, CPU, offline)."""
from __future__ import annotations

import json
import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np
import pytest
import torch

from latentvla_ros.core.config_base import ConfigError
from latentvla_ros.models.configuration_teacher import TeacherConfig
from latentvla_ros.models.modeling_teacher import (
    TEACHER_CONFIG_NAME,
    LatentTeacher,
    TeacherError,
    build_tokenizer,
    patchify_images,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def teacher() -> LatentTeacher:
    return LatentTeacher.build(TeacherConfig(preset="tiny", image_size=(112, 112))).eval()


def _inputs(batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, 128, 128, generator=g)
    ego = torch.zeros(batch, 8)
    ego[torch.arange(batch), torch.arange(batch) % 4] = 1.0
    ego[:, 4] = torch.linspace(0.0, 27.3, batch)  # different speeds -> different prompt lengths
    ego[:, 6] = torch.linspace(-2.0, 1.5, batch)
    return images, ego


def test_config_validation_and_json(tmp_path):
    with pytest.raises(ConfigError, match="trust_remote_code"):
        TeacherConfig(trust_remote_code=True)
    with pytest.raises(ConfigError, match="preset"):
        TeacherConfig(preset="qwen-72b")
    with pytest.raises(ConfigError, match="image_size"):
        TeacherConfig(image_size=(100, 112))
    with pytest.raises(ConfigError, match="num_visual_context_tokens"):
        TeacherConfig(num_visual_context_tokens=15)
    with pytest.raises(ConfigError, match="unknown"):
        TeacherConfig.from_dict({"preset": "tiny", "bogus": 1})
    cfg = TeacherConfig(image_size=(224, 224), arch_overrides={"text": {"num_hidden_layers": 3}})
    cfg.save_json(tmp_path / "c.json")
    assert TeacherConfig.load_json(tmp_path / "c.json") == cfg
    assert cfg.num_image_tokens == 64 and cfg.context_tokens == 16 + 12
    big = TeacherConfig(preset="qwen2.5-vl-3b")
    text, vision, top = big.qwen_config_dicts()
    assert text["hidden_size"] == 2048 and text["num_hidden_layers"] == 36 and vision["out_hidden_size"] == 2048
    assert sum(text["rope_parameters"]["mrope_section"]) * 2 == text["hidden_size"] // text["num_attention_heads"]


def test_tokenizer_is_deterministic_with_action_tokens(teacher):
    a, b = build_tokenizer(), build_tokenizer()
    assert a.get_vocab() == b.get_vocab()
    ids = teacher.action_token_ids.tolist()
    assert len(ids) == 16 and ids == list(range(ids[0], ids[0] + 16))
    assert teacher.tokenizer.convert_ids_to_tokens(ids[3]) == "<act_3>"
    assert teacher.hf.get_input_embeddings().weight.shape[0] == len(teacher.tokenizer)  # resized
    assert teacher.tokenizer.convert_tokens_to_ids("<|image_pad|>") == teacher.hf.config.image_token_id


def test_patchify_matches_qwen_image_processor():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 112, 112, 3), dtype=np.uint8)
    ref = Qwen2VLImageProcessorPil()(list(img), return_tensors="pt")
    pv, grid = patchify_images(torch.from_numpy(img).permute(0, 3, 1, 2).float() / 255.0, (112, 112))
    assert torch.equal(grid, ref["image_grid_thw"])
    torch.testing.assert_close(pv, ref["pixel_values"].float(), atol=1e-5, rtol=1e-5)


def test_mrope_positions_are_3d(teacher):
    images, ego = _inputs()
    inputs = teacher.prepare_inputs(images, ego)
    ids, mask, types, grid = (inputs[k] for k in ("input_ids", "attention_mask", "mm_token_type_ids", "image_grid_thw"))
    assert int(types.sum()) == 3 * 16 and bool((mask == 0).any())  # left padding present
    pos = teacher.position_ids(ids, mask, types, grid)
    assert pos.shape == (3, 3, ids.shape[1])
    img = ids[0] == teacher.image_token_id
    t_row, h_row, w_row = pos[0, 0, img], pos[1, 0, img], pos[2, 0, img]
    assert torch.all(t_row == t_row[0])  # one temporal step
    assert h_row.unique().numel() == 4 and w_row.unique().numel() == 4  # 4x4 image-token grid
    assert not torch.equal(h_row, w_row)
    text = ~img & mask[0].bool()
    assert torch.equal(pos[0, 0, text], pos[1, 0, text])  # text: the 3 rows agree
    # The model's own path computes the same 3-D positions when given mm_token_type_ids...
    teacher.hf.model.rope_deltas = None
    own = teacher.hf.model.compute_3d_position_ids(
        input_ids=ids, image_grid_thw=grid, video_grid_thw=None, inputs_embeds=None,
        attention_mask=mask, past_key_values=None, mm_token_type_ids=types)
    assert own is not None and torch.equal(own, pos)
    # ... and silently gives up (1-D fallback) without them: the pitfall we guard against.
    teacher.hf.model.rope_deltas = None
    assert teacher.hf.model.compute_3d_position_ids(
        input_ids=ids, image_grid_thw=grid, video_grid_thw=None, inputs_embeds=None,
        attention_mask=mask, past_key_values=None, mm_token_type_ids=None) is None
    teacher.hf.model.rope_deltas = None


def test_forward_and_predict_agree(teacher):
    images, ego = _inputs()
    probs, context = teacher.predict(images, ego)
    assert probs.shape == (3, 12, 16) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 12))
    assert context.shape == (3, 16 + 12, 64)
    with torch.no_grad():
        out = teacher(images, ego, probs.argmax(-1))
        free = teacher(images, ego)  # no targets: greedy tokens, no loss
    # KV-cache decoding == teacher forcing of its own greedy choices
    torch.testing.assert_close(out.logits.softmax(-1), probs, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(torch.cat([out.visual_hidden, out.action_hidden], 1), context, atol=1e-4, rtol=1e-4)
    assert free.loss is None and free.logits.shape == (3, 12, 16)
    # left padding does not change a sample's result
    alone, ctx_alone = teacher.predict(images[:1], ego[:1])
    torch.testing.assert_close(alone, probs[:1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ctx_alone, context[:1], atol=1e-4, rtol=1e-4)
    target = torch.randint(0, 16, (3, 12), generator=torch.Generator().manual_seed(1))
    loss = teacher(images, ego, target).loss
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert teacher.hf.model.visual.patch_embed.proj.weight.grad is not None
    teacher.zero_grad(set_to_none=True)
    with pytest.raises(ValueError):
        teacher(images, ego, target + 16)
    with pytest.raises(ValueError):
        teacher.predict(images, ego[:, :5])


def test_save_load_offline_identical(teacher, tmp_path, monkeypatch):
    import transformers

    calls = []

    def spy(cls_method):
        def wrapper(*args, **kwargs):
            calls.append(kwargs)
            return cls_method(*args, **kwargs)
        return wrapper

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained",
                        spy(transformers.AutoTokenizer.from_pretrained))
    monkeypatch.setattr(transformers.Qwen2_5_VLForConditionalGeneration, "from_pretrained",
                        spy(transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained))
    d = teacher.save(tmp_path / "t")
    assert (d / "model.safetensors").is_file() and (d / TEACHER_CONFIG_NAME).is_file()
    assert not list(d.glob("*.bin")) and not list(d.glob("*.pt"))
    assert "auto_map" not in json.loads((d / "config.json").read_text())
    loaded = LatentTeacher.load(d)
    assert len(calls) == 2
    for kw in calls:
        assert kw.get("local_files_only") is True
        assert kw.get("trust_remote_code", False) is False
    assert loaded.cfg == teacher.cfg and loaded.cfg.trust_remote_code is False
    assert loaded.action_token_ids.tolist() == teacher.action_token_ids.tolist()
    images, ego = _inputs(2, seed=5)
    target = torch.randint(0, 16, (2, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a, b = teacher(images, ego, target), loaded(images, ego, target)
    assert torch.equal(a.logits, b.logits) and torch.equal(a.loss, b.loss)
    assert torch.equal(teacher.predict(images, ego)[0], loaded.predict(images, ego)[0])
    # a folder that asks for remote code is refused
    cfg_json = json.loads((d / "config.json").read_text())
    cfg_json["auto_map"] = {"AutoModel": "evil.Model"}
    (d / "config.json").write_text(json.dumps(cfg_json))
    with pytest.raises(TeacherError, match="remote code"):
        LatentTeacher.load(d)
    with pytest.raises(TeacherError):
        LatentTeacher.load(tmp_path / "missing")


def test_build_from_local_pretrained_folder(tmp_path):
    """model_path: a local HF Qwen2.5-VL folder whose table is larger than its tokenizer
    (like Qwen's 151936 vs 151665): the new <act_i> rows are re-initialised near the mean."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    tok = build_tokenizer()
    text, vision, top = TeacherConfig().qwen_config_dicts()
    text.update(vocab_size=len(tok) + 32, pad_token_id=tok.pad_token_id, bos_token_id=None, eos_token_id=None)
    top.update({k: tok.convert_tokens_to_ids(t) for k, t in (
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"))})
    hf = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision, **top))
    with torch.no_grad():
        hf.get_input_embeddings().weight[len(tok):] = 100.0  # garbage padding rows
    hf.save_pretrained(tmp_path / "qwen")
    tok.save_pretrained(tmp_path / "qwen")
    model = LatentTeacher.build(TeacherConfig(model_path=str(tmp_path / "qwen")))
    emb = model.hf.get_input_embeddings().weight
    assert emb.shape[0] == len(tok) + 32  # no resize needed
    ids = model.action_token_ids
    assert ids.tolist() == list(range(len(tok), len(tok) + 16))
    assert float(emb[ids].detach().abs().max()) < 1.0
    probs, context = model.eval().predict(*_inputs(2))
    assert probs.shape == (2, 12, 16) and context.shape == (2, 28, 64)
    with pytest.raises(TeacherError, match="config.json"):
        LatentTeacher.build(TeacherConfig(model_path=str(tmp_path / "nothing")))


def write_synthetic_log(d, frames: int = 60, size: int = 56, cams: int = 1, seed: int = 0):
    """A tiny driving log with the arrays the teacher reads; codes follow the speed."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True)
    camera = rng.integers(0, 256, (frames, cams, size, size, 3), dtype=np.uint8)
    speed = 10 + 5 * np.sin(np.arange(frames) / 7.0)
    status = np.zeros((frames, 5), np.float32)
    status[:, 0] = speed
    status[:, 2] = np.gradient(speed) * 10
    codes = ((np.arange(frames) // 4) % 3).astype(np.int16)
    codes[-2:] = -1
    np.save(d / "camera.npy", camera)
    np.save(d / "ego_status.npy", status)
    np.save(d / "command.npy", (np.arange(frames) // 20 % 4).astype(np.uint8))
    np.save(d / "latent_ego_codes.npy", codes)
    return d


def test_latent_targets_and_ego_vectors():
    from latentvla_ros.training.teacher import ego_status_vectors, latent_targets

    codes = np.array([0, 1, 2, 3, 4, 5, 6, -1, 8], np.int16)
    tg, valid = latent_targets(codes, num_tokens=3, stride=2)
    assert valid.tolist() == [True, True, True, False, True, False, False, False, False]
    assert tg[0].tolist() == [0, 2, 4] and tg[4].tolist() == [4, 6, 8] and tg[3].tolist() == [0, 0, 0]
    v = ego_status_vectors(np.array([[3.0, 0.1, -1.0, 0.2, 0.0]], np.float32), np.array([2], np.uint8))
    assert v.tolist()[0] == pytest.approx([0, 0, 1, 0, 3.0, 0.1, -1.0, 0.2])


def test_train_teacher_and_label_logs(tmp_path):
    from latentvla_ros.training.common import TrainConfig
    from latentvla_ros.training.teacher import build_datasets, evaluate_teacher, label_logs, train_teacher

    log = write_synthetic_log(tmp_path / "log0", frames=120)
    cfg = TeacherConfig(preset="tiny", image_size=(56, 56), num_visual_context_tokens=4)
    train_ds, val_ds = build_datasets([log], cfg, stride=3, val_fraction=0.2)
    # 120 frames, last 2 codes invalid: frames 0..84 have 12 valid codes (t + 33 <= 117);
    # 17 held out from t = 68; train frames need t + 33 < 68 (no target overlap)
    assert len(val_ds) == 17 and len(train_ds) == 35
    before = evaluate_teacher(LatentTeacher.build(cfg), train_ds, batch_size=8)
    tc = TrainConfig(epochs=4, batch_size=8, lr=3e-3, warmup_steps=0, max_steps=8, torch_threads=1)
    summary = train_teacher([log], tmp_path / "run", train_cfg=tc, teacher_cfg=cfg, val_fraction=0.2,
                            show_progress=False)
    assert summary["steps"] == 8
    report = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert report["num_train"] == len(train_ds) and report["val"]["num_samples"] == 17
    assert report["train_subset"]["nll"] < before["nll"] - 0.5, (before, report)
    assert (tmp_path / "run" / "metrics.csv").is_file()
    teacher_dir = tmp_path / "run" / "teacher"
    assert (teacher_dir / "teacher_config.json").is_file()
    results = label_logs(tmp_path / "run", [log], batch_size=16, device="cpu", show_progress=False)
    assert results[0]["frames"] == 120
    probs = np.load(log / "teacher_probs.npy")
    ctx = np.load(log / "teacher_context.npy")
    assert probs.shape == (120, 12, 16) and probs.dtype == np.float32
    assert ctx.shape == (120, 4 + 12, 64) and ctx.dtype == np.float16
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert np.isfinite(ctx).all()
    assert not list(log.glob("*.tmp"))
