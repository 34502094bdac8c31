"""VLM teacher: Qwen2.5-VL predicting 12 latent ego-action tokens per frame.

The teacher reads one camera image and a short ego-state text and emits
``num_latent_tokens`` special tokens ``<act_0>`` .. ``<act_{C-1}>`` (one per LAM code).
Prompt (Qwen chat layout)::

    <|im_start|>user\\n<|vision_start|><|image_pad|> x N<|vision_end|>speed 8.3 m/s, ...,
    command left.<|im_end|>\\n<|im_start|>assistant\\n  <act_a0> <act_a1> ... <act_a11>

- ``forward`` teacher-forces the 12 target tokens and returns the NLL plus the logits
  restricted to the action tokens (B, 12, C).
- ``predict`` decodes greedily with a KV cache (1 prefill + 12 one-token steps) and returns
  the probabilities of each step (== teacher forcing its own greedy choices) and the
  context the teacher-fused planner attends to: the last-layer hidden states of the image
  tokens average-pooled to ``num_visual_context_tokens`` tokens, followed by the hidden
  states of the 12 action tokens (B, 16 + 12, D).

Positions are Qwen2.5-VL's 3-D M-RoPE ids (temporal, height, width), computed with the
model's own ``get_rope_index`` from ``mm_token_type_ids`` (1 on image tokens) and passed
explicitly; without ``mm_token_type_ids`` transformers silently falls back to 1-D
positions. Images are patchified by hand (``Qwen2_5_VLProcessor`` needs torchvision).

Everything is offline: ``local_files_only=True, trust_remote_code=False`` on every load, ``trust_remote_code`` is
never set, and the tiny preset's tokenizer is a byte-level BPE trained in memory on a
fixed corpus (deterministic).
"""
from __future__ import annotations

import os

# No model hub here, ever: set before transformers / huggingface_hub read it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import dataclasses
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from latentvla_ros.core.types import EGO_STATUS_DIM, DrivingCommand
from latentvla_ros.models.configuration_teacher import (
    MERGE_SIZE,
    PATCH_SIZE,
    TEMPORAL_PATCH_SIZE,
    TeacherConfig,
)

TEACHER_CONFIG_NAME = "teacher_config.json"
ACTION_TOKEN_FORMAT = "<act_{}>"
PAD_TOKEN = "<|endoftext|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
VISION_START, VISION_END = "<|vision_start|>", "<|vision_end|>"
IMAGE_PAD, VIDEO_PAD, VISION_PAD = "<|image_pad|>", "<|video_pad|>", "<|vision_pad|>"
QWEN_SPECIAL_TOKENS = (IM_START, IM_END, VISION_START, VISION_END, VISION_PAD, IMAGE_PAD, VIDEO_PAD)
# Qwen2-VL / CLIP normalisation (Qwen2VLImageProcessor defaults).
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
COMMAND_WORDS = {
    DrivingCommand.LEFT: "left",
    DrivingCommand.STRAIGHT: "straight",
    DrivingCommand.RIGHT: "right",
    DrivingCommand.UNKNOWN: "unknown",
}


class TeacherError(RuntimeError):
    """The teacher checkpoint / tokenizer is missing, inconsistent or unsafe to load."""


# --------------------------------------------------------------------------- text side


def ego_prompt_text(status: list[float] | tuple[float, ...]) -> str:
    """The ego-state sentence for one 8-d status vector (one-hot command(4), v(2), a(2))."""
    if len(status) != EGO_STATUS_DIM:
        raise ValueError(f"ego status must have {EGO_STATUS_DIM} values, got {len(status)}")
    onehot = status[:4]
    command = DrivingCommand(int(max(range(4), key=lambda i: onehot[i]))) if max(onehot) > 0 else DrivingCommand.UNKNOWN
    vx, vy, ax, ay = (0.0 if not math.isfinite(v) else float(v) for v in status[4:8])
    return (
        f"speed {vx:.1f} m/s, lateral {vy:.1f} m/s, accel {ax:.1f} m/s2, lateral accel {ay:.1f} m/s2, "
        f"command {COMMAND_WORDS[command]}."
    )


def builtin_corpus() -> list[str]:
    """Fixed training text of the in-memory BPE: prompts over a grid of ego states + words."""
    lines = []
    speeds = [0.0, 0.4, 1.7, 3.2, 5.5, 8.3, 10.9, 12.6, 15.1, 18.8, 21.4, 24.7, 27.9, 30.2, 33.6, 36.5]
    accels = [-4.1, -2.6, -1.3, -0.5, -0.1, 0.0, 0.2, 0.7, 1.4, 2.3]
    for i, v in enumerate(speeds):
        for j, a in enumerate(accels):
            status = [0.0] * 4 + [v, (i - j) * 0.1, a, (j - 5) * 0.3]
            status[(i + j) % 4] = 1.0
            lines.append(ego_prompt_text(status))
    lines += [
        "You are driving. Look at the camera image and the ego state and predict the next latent actions.",
        "The ego vehicle follows the lane, keeps a safe distance to the vehicle ahead, and changes lane when the road is free.",
        "turn left at the intersection, go straight, turn right, merge, yield, stop, accelerate, brake, overtake.",
        "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 25 30 35 40 -0.5 -1.0 +0.5 +1.0 m/s m/s2 km/h",
        "user assistant system camera image lidar map lane road vehicle car truck pedestrian",
    ]
    return lines


def build_tokenizer(vocab_size: int = 512):
    """Deterministic byte-level BPE trained in memory, with the Qwen2.5-VL special tokens.

    Returns a ``PreTrainedTokenizerFast`` (left padding, pad = ``<|endoftext|>``). The
    action tokens are added by :func:`add_action_tokens`.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[PAD_TOKEN],
        show_progress=False,
    )
    bpe.train_from_iterator(builtin_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, pad_token=PAD_TOKEN, eos_token=IM_END, padding_side="left"
    )
    tokenizer.add_tokens(list(QWEN_SPECIAL_TOKENS), special_tokens=True)
    tokenizer.eos_token = IM_END
    return tokenizer


def add_action_tokens(tokenizer, codebook_size: int) -> tuple[list[int], int]:
    """Add ``<act_0>``..``<act_{C-1}>`` as special tokens (idempotent).

    Returns their ids and how many of them were new to the tokenizer.
    """
    names = [ACTION_TOKEN_FORMAT.format(i) for i in range(codebook_size)]
    added = tokenizer.add_tokens(names, special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids(names)
    if len(set(ids)) != codebook_size or any(i is None or i == tokenizer.unk_token_id for i in ids):
        raise TeacherError("could not add the action tokens to the tokenizer")
    return list(ids), int(added)


@torch.no_grad()
def init_new_token_rows(hf_model: nn.Module, token_ids: list[int], num_reference: int, seed: int = 0) -> None:
    """Initialise the embedding (and untied output) rows of newly added tokens of a
    *pretrained* model to the mean of its first ``num_reference`` rows plus small noise.

    Qwen2.5-VL's embedding table is larger than its tokenizer (151936 vs 151665), so the
    new <act_i> rows may be unused padding rows holding arbitrary values.
    """
    gen = torch.Generator().manual_seed(seed)
    tables = [hf_model.get_input_embeddings().weight]
    out = hf_model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != tables[0].data_ptr():
        tables.append(out.weight)
    idx = torch.tensor(token_ids, dtype=torch.long, device=tables[0].device)
    for weight in tables:
        ref = weight[:num_reference].float()
        mean, std = ref.mean(0), ref.std(0)
        noise = torch.randn((len(token_ids), weight.shape[1]), generator=gen).to(weight.device)
        weight[idx] = (mean + 0.1 * std * noise).to(weight.dtype)


# ------------------------------------------------------------------------- vision side


def patchify_images(images: torch.Tensor, image_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen2.5-VL ``pixel_values`` (B*gh*gw, 3*2*14*14) + ``image_grid_thw`` (B, 3).

    ``images`` (B, 3, H, W) float in [0, 1]; resized (bilinear, antialiased) to
    ``image_size``, CLIP-normalised, cut into 14x14 patches ordered in 2x2 merge groups
    and repeated over the temporal patch of 2, exactly like ``Qwen2VLImageProcessor``.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    bsz = images.shape[0]
    height, width = image_size
    x = images.float()
    if tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGE_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    x = (x - mean) / std
    gh, gw = height // PATCH_SIZE, width // PATCH_SIZE
    m, p = MERGE_SIZE, PATCH_SIZE
    x = x.reshape(bsz, 3, gh // m, m, p, gw // m, m, p)
    x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)  # B, gh/m, gw/m, m, m, C, p, p
    x = x.unsqueeze(6).expand(-1, -1, -1, -1, -1, -1, TEMPORAL_PATCH_SIZE, -1, -1)
    pixel_values = x.reshape(bsz * gh * gw, 3 * TEMPORAL_PATCH_SIZE * p * p)
    grid = torch.tensor([[1, gh, gw]] * bsz, dtype=torch.long, device=images.device)
    return pixel_values, grid


# ----------------------------------------------------------------------------- model


@dataclasses.dataclass
class TeacherOutput:
    """``forward``'s result."""

    loss: torch.Tensor | None
    """Mean NLL over the action positions (None without targets)."""
    logits: torch.Tensor
    """(B, K, C) logits restricted to the action tokens, position k predicts token k."""
    action_hidden: torch.Tensor
    """(B, K, D) last-layer hidden states at the K action-token positions."""
    visual_hidden: torch.Tensor
    """(B, V, D) image-token hidden states pooled to ``num_visual_context_tokens``."""


def _torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def _check_local_hf_folder(path: Path) -> None:
    """A local Qwen2.5-VL folder that needs no remote code, or TeacherError."""
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        raise TeacherError(f"{path} is not a local Hugging Face model folder (no config.json)")
    try:
        hf_cfg = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise TeacherError(f"corrupt {cfg_path}: {exc}") from exc
    if "auto_map" in hf_cfg:
        raise TeacherError(f"{cfg_path} asks for remote code (auto_map); refusing to load")
    if hf_cfg.get("model_type") != "qwen2_5_vl":
        raise TeacherError(f"{cfg_path}: model_type {hf_cfg.get('model_type')!r}, expected 'qwen2_5_vl'")


class LatentTeacher(nn.Module):
    """Qwen2.5-VL (``transformers``) fine-tuned to emit latent ego-action tokens."""

    def __init__(self, cfg: TeacherConfig, hf_model: nn.Module, tokenizer) -> None:
        super().__init__()
        if cfg.trust_remote_code is not False:  # also enforced by TeacherConfig.validate
            raise TeacherError("trust_remote_code must be False")
        self.cfg = cfg
        self.hf = hf_model
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = PAD_TOKEN
        ids, _ = add_action_tokens(tokenizer, cfg.codebook_size)
        vocab = self.hf.get_input_embeddings().weight.shape[0]
        if max(ids) >= vocab:
            raise TeacherError(f"action token id {max(ids)} outside the embedding table ({vocab}); resize first")
        self.register_buffer("action_token_ids", torch.tensor(ids, dtype=torch.long), persistent=False)
        qcfg = self.hf.config
        for attr, token in (("image_token_id", IMAGE_PAD), ("vision_start_token_id", VISION_START),
                            ("vision_end_token_id", VISION_END)):
            tid = tokenizer.convert_tokens_to_ids(token)
            if tid != getattr(qcfg, attr):
                raise TeacherError(f"tokenizer id of {token} ({tid}) != model config {attr} ({getattr(qcfg, attr)})")
        self.image_token_id = int(qcfg.image_token_id)
        self.hidden_size = int(qcfg.text_config.hidden_size)

    # ------------------------------------------------------------------ construction

    @classmethod
    def build(cls, cfg: TeacherConfig) -> "LatentTeacher":
        """From ``cfg.model_path`` (local HF folder) or the preset's architecture (random)."""
        from transformers import AutoTokenizer, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

        assert cfg.trust_remote_code is False
        dtype = _torch_dtype(cfg.dtype)
        if cfg.model_path:
            path = Path(cfg.model_path)
            _check_local_hf_folder(path)
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, trust_remote_code=False)
            hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=False, dtype=dtype, attn_implementation=cfg.attn_implementation
            )
        else:
            tokenizer = build_tokenizer(cfg.tokenizer_vocab_size)
            text, vision, top = cfg.qwen_config_dicts()
            ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (IMAGE_PAD, VIDEO_PAD, VISION_START, VISION_END)}
            text["vocab_size"] = max(int(text.get("vocab_size", 0)), len(tokenizer))
            text["pad_token_id"] = tokenizer.pad_token_id
            text["bos_token_id"] = None
            text["eos_token_id"] = tokenizer.convert_tokens_to_ids(IM_END)
            top.update(image_token_id=ids[IMAGE_PAD], video_token_id=ids[VIDEO_PAD],
                       vision_start_token_id=ids[VISION_START], vision_end_token_id=ids[VISION_END])
            qcfg = Qwen2_5_VLConfig(text_config=text, vision_config=vision, **top)
            qcfg._attn_implementation = cfg.attn_implementation
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                hf = Qwen2_5_VLForConditionalGeneration(qcfg)
            hf = hf.to(dtype)
        num_before = len(tokenizer)
        act_ids, added = add_action_tokens(tokenizer, cfg.codebook_size)
        if len(tokenizer) > hf.get_input_embeddings().weight.shape[0]:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed + 1)
                hf.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        if cfg.model_path and added:
            init_new_token_rows(hf, act_ids, num_before, seed=cfg.seed)
        model = cls(cfg, hf, tokenizer)
        if cfg.freeze_vision_tower:
            model.hf.model.visual.requires_grad_(False)
        return model

    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` + HF ``config.json`` + tokenizer + ``teacher_config.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.hf.save_pretrained(str(directory))
        self.tokenizer.save_pretrained(str(directory))
        self.cfg.save_json(directory / TEACHER_CONFIG_NAME)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None) -> "LatentTeacher":
        """Load a folder written by :meth:`save` (local files only, no remote code)."""
        from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration

        directory = Path(directory)
        cfg_path = directory / TEACHER_CONFIG_NAME
        if not cfg_path.is_file():
            raise TeacherError(f"{directory} is not a teacher checkpoint (no {TEACHER_CONFIG_NAME})")
        cfg = TeacherConfig.load_json(cfg_path)
        assert cfg.trust_remote_code is False
        _check_local_hf_folder(directory)
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
        hf = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            str(directory), local_files_only=True, trust_remote_code=False, dtype=_torch_dtype(cfg.dtype),
            attn_implementation=cfg.attn_implementation,
        )
        model = cls(cfg, hf, tokenizer)
        if cfg.freeze_vision_tower:
            model.hf.model.visual.requires_grad_(False)
        model.eval()
        if device is not None:
            model.to(device)
        return model

    # ------------------------------------------------------------------------ inputs

    @property
    def device(self) -> torch.device:
        return self.action_token_ids.device

    def prompt_texts(self, ego_status: torch.Tensor) -> list[str]:
        rows = ego_status.detach().float().cpu().tolist()
        n_img = self.cfg.num_image_tokens
        return [
            f"{IM_START}user\n{VISION_START}{IMAGE_PAD * n_img}{VISION_END}{ego_prompt_text(r)}{IM_END}\n"
            f"{IM_START}assistant\n"
            for r in rows
        ]

    def prepare_inputs(self, images: torch.Tensor, ego_status: torch.Tensor) -> dict[str, torch.Tensor]:
        """Tokenised, left-padded prompt + pixel values: the model's keyword inputs."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W) float in [0, 1], got {tuple(images.shape)}")
        if ego_status.ndim != 2 or ego_status.shape[1] != EGO_STATUS_DIM or ego_status.shape[0] != images.shape[0]:
            raise ValueError(f"ego_status must be (B, {EGO_STATUS_DIM}) matching images, got {tuple(ego_status.shape)}")
        enc = self.tokenizer(self.prompt_texts(ego_status), padding=True, add_special_tokens=False, return_tensors="pt")
        input_ids = enc["input_ids"].to(self.device)
        attention_mask = enc["attention_mask"].to(self.device)
        pixel_values, grid = patchify_images(images.to(self.device), self.cfg.image_size)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "mm_token_type_ids": (input_ids == self.image_token_id).to(torch.int32),
            "pixel_values": pixel_values.to(self.hf.dtype),
            "image_grid_thw": grid,
        }

    def position_ids(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     mm_token_type_ids: torch.Tensor, image_grid_thw: torch.Tensor) -> torch.Tensor:
        """(3, B, L) M-RoPE positions from the model's own ``get_rope_index``."""
        pos, _ = self.hf.model.get_rope_index(
            input_ids, image_grid_thw=image_grid_thw, attention_mask=attention_mask,
            mm_token_type_ids=mm_token_type_ids,
        )
        return pos

    def _pool_visual(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        bsz = hidden.shape[0]
        rows, cols = self.cfg.image_token_grid
        mask = input_ids == self.image_token_id
        img = hidden[mask].view(bsz, rows, cols, hidden.shape[-1]).permute(0, 3, 1, 2).float()
        side = math.isqrt(self.cfg.num_visual_context_tokens)
        pooled = F.adaptive_avg_pool2d(img, (side, side))
        return pooled.flatten(2).transpose(1, 2).to(hidden.dtype)

    def _action_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        weight = self.hf.get_output_embeddings().weight
        return F.linear(hidden, weight[self.action_token_ids])

    # ---------------------------------------------------------------------- forward

    def forward(self, images: torch.Tensor, ego_status: torch.Tensor,
                target_tokens: torch.Tensor | None = None) -> TeacherOutput:
        """Teacher-forced pass over the K action positions.

        ``target_tokens`` (B, K) codes in [0, C); without them the greedy decode of
        :meth:`predict` supplies the tokens (loss None).
        """
        k = self.cfg.num_latent_tokens
        if target_tokens is None:
            with torch.no_grad():
                probs, _ = self.predict(images, ego_status)
            target_tokens = probs.argmax(-1)
            want_loss = False
        else:
            want_loss = True
        if target_tokens.shape != (images.shape[0], k):
            raise ValueError(f"target_tokens must be (B, {k}), got {tuple(target_tokens.shape)}")
        targets = target_tokens.to(self.device).long()
        if targets.min() < 0 or targets.max() >= self.cfg.codebook_size:
            raise ValueError(f"target_tokens must lie in [0, {self.cfg.codebook_size})")
        inputs = self.prepare_inputs(images, ego_status)
        prompt_len = inputs["input_ids"].shape[1]
        act_ids = self.action_token_ids[targets]
        input_ids = torch.cat([inputs["input_ids"], act_ids], dim=1)
        attention_mask = torch.cat([inputs["attention_mask"], torch.ones_like(act_ids)], dim=1)
        mm_types = torch.cat([inputs["mm_token_type_ids"], torch.zeros_like(act_ids, dtype=torch.int32)], dim=1)
        pos = self.position_ids(input_ids, attention_mask, mm_types, inputs["image_grid_thw"])
        out = self.hf.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=pos,
            pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"],
            mm_token_type_ids=mm_types, use_cache=False,
        )
        hidden = out.last_hidden_state
        pred_hidden = hidden[:, prompt_len - 1: prompt_len - 1 + k]  # position i predicts token i
        logits = self._action_logits(pred_hidden).float()
        loss = None
        if want_loss:
            if self.cfg.loss_vocab == "full":
                full = self.hf.lm_head(pred_hidden).float()
                loss = F.cross_entropy(full.reshape(-1, full.shape[-1]), act_ids.reshape(-1))
            else:
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        return TeacherOutput(
            loss=loss,
            logits=logits,
            action_hidden=hidden[:, prompt_len: prompt_len + k],
            visual_hidden=self._pool_visual(hidden, input_ids),
        )

    @torch.no_grad()
    def predict(self, images: torch.Tensor, ego_status: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decode with a KV cache.

        Returns ``probs`` (B, K, C) float32 (softmax over the action tokens at each step,
        conditioned on the greedy choices before it) and ``context`` (B, V + K, D): pooled
        image-token hidden states then the action tokens' hidden states.
        """
        k = self.cfg.num_latent_tokens
        inputs = self.prepare_inputs(images, ego_status)
        input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
        pos = self.position_ids(input_ids, attention_mask, inputs["mm_token_type_ids"], inputs["image_grid_thw"])
        out = self.hf.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=pos,
            pixel_values=inputs["pixel_values"], image_grid_thw=inputs["image_grid_thw"],
            mm_token_type_ids=inputs["mm_token_type_ids"], use_cache=True,
        )
        visual = self._pool_visual(out.last_hidden_state, input_ids)
        cache = out.past_key_values
        last = out.last_hidden_state[:, -1:]
        next_pos = pos[:, :, -1:] + 1  # the prompt ends with text: the 3 rows are equal
        probs, action_hidden = [], []
        for step in range(k):
            step_probs = self._action_logits(last).float().softmax(-1)  # (B, 1, C)
            probs.append(step_probs)
            token = self.action_token_ids[step_probs.argmax(-1)]  # (B, 1)
            attention_mask = torch.cat([attention_mask, torch.ones_like(token)], dim=1)
            out = self.hf.model(
                input_ids=token, attention_mask=attention_mask, position_ids=next_pos + step,
                past_key_values=cache, use_cache=True,
            )
            cache = out.past_key_values
            last = out.last_hidden_state
            action_hidden.append(last)
        context = torch.cat([visual] + action_hidden, dim=1)
        return torch.cat(probs, dim=1), context

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
