"""Configuration of the VLM teacher (Qwen2.5-VL via ``transformers``).

Two presets:

- ``tiny``: a ~0.2M-parameter Qwen2.5-VL built from ``Qwen2_5_VLConfig`` (text hidden 64,
  2 layers, 4 heads / 2 KV heads, vision depth 2, hidden 32, out_hidden 64). Runs on a CPU
  in milliseconds; used by tests, CI and the laptop pipeline. Weights are random until
  fine-tuned; the tokenizer is a byte-level BPE trained in memory on a built-in corpus.
- ``qwen2.5-vl-3b``: the architecture of Qwen2.5-VL-3B-Instruct (the paper's "3.8B"
  teacher). Its weights and tokenizer are read from a local folder ``model_path`` (a copy
  of the Hugging Face repository made beforehand); nothing is ever downloaded. Without
  ``model_path`` it builds the architecture with random weights (latency measurements).

``trust_remote_code`` is a field only so that a config asking for it is rejected loudly:
it must stay False (Qwen2.5-VL is implemented inside ``transformers``).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

from latentvla_ros.core.config_base import ConfigBase, require
from latentvla_ros.core.sizes import DEFAULT_ACTION_SPACE, ActionSpace

PRESETS = ("tiny", "qwen2.5-vl-3b")
DTYPES = ("float32", "bfloat16", "float16")
LOSS_VOCABS = ("full", "action")

# Qwen2.5-VL patch geometry (shared by every size): 14-px patches merged 2x2, so each
# language-model image token covers 28x28 px.
PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
PIXELS_PER_IMAGE_TOKEN = PATCH_SIZE * MERGE_SIZE

# The architecture of Qwen/Qwen2.5-VL-3B-Instruct (its config.json); the real weights
# must be given through ``model_path``.
QWEN25_VL_3B_TEXT: dict[str, Any] = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "use_sliding_window": False,
    "sliding_window": 32768,
    "max_window_layers": 70,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    "bos_token_id": 151643,
    "eos_token_id": 151645,
}
QWEN25_VL_3B_VISION: dict[str, Any] = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "hidden_act": "silu",
    "in_channels": 3,
    "out_hidden_size": 2048,
    "patch_size": PATCH_SIZE,
    "spatial_merge_size": MERGE_SIZE,
    "temporal_patch_size": TEMPORAL_PATCH_SIZE,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
}
QWEN25_VL_3B_TOP: dict[str, Any] = {
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "tie_word_embeddings": True,
}

# The tiny architecture that was seen working on CPU (see shared/ros2-wheels.md): the
# mrope sections must sum to head_dim / 2 = (64 / 4) / 2 = 8.
TINY_TEXT: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-6,
    "initializer_range": 0.02,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
}
TINY_VISION: dict[str, Any] = {
    "depth": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_heads": 4,
    "out_hidden_size": 64,
    "patch_size": PATCH_SIZE,
    "spatial_merge_size": MERGE_SIZE,
    "temporal_patch_size": TEMPORAL_PATCH_SIZE,
    "window_size": 112,
    "fullatt_block_indexes": [1],
    "tokens_per_second": 2,
}


@dataclasses.dataclass
class TeacherConfig(ConfigBase):
    """Settings of :class:`latentvla_ros.models.modeling_teacher.LatentTeacher`."""

    preset: str = "tiny"
    """Architecture: 'tiny' (CPU, random init + in-memory BPE tokenizer) or
    'qwen2.5-vl-3b' (Qwen2.5-VL-3B-Instruct, weights from ``model_path``)."""
    model_path: str | None = None
    """Local folder holding a Hugging Face Qwen2.5-VL checkpoint (config.json, safetensors,
    tokenizer files) to start from; None builds the preset's architecture with random
    weights. Always read with ``local_files_only=True``; never downloaded."""
    image_size: tuple[int, int] = (112, 112)
    """(height, width) the camera image is resized to; multiples of 28 (one image token
    per 28x28 px: 112x112 -> 16 image tokens, 224x224 -> 64)."""
    num_latent_tokens: int = DEFAULT_ACTION_SPACE.tokens_per_frame
    """Latent action tokens predicted per frame (12 in the paper)."""
    codebook_size: int = DEFAULT_ACTION_SPACE.codebook_size
    """Size of the LAM codebook; one special token <act_i> per code (16)."""
    num_visual_context_tokens: int = 16
    """The image-token hidden states are average-pooled to this many tokens (a perfect
    square, grid side <= image-token grid side) for ``predict``'s context."""
    camera_index: int = 0
    """Which camera of a log's ``camera.npy`` (T, Ncam, H, W, 3) the teacher looks at."""
    loss_vocab: str = "full"
    """NLL over the 'full' vocabulary (a real LM objective) or over the 'action' tokens only."""
    dtype: str = "float32"
    """Parameter dtype: float32 (CPU), bfloat16 / float16 (GPU, for the 3B)."""
    attn_implementation: str = "sdpa"
    """transformers attention backend: 'sdpa' or 'eager'."""
    freeze_vision_tower: bool = False
    """Keep the ViT frozen during fine-tuning (saves memory on the 3B)."""
    tokenizer_vocab_size: int = 512
    """Target vocabulary of the in-memory byte-level BPE (tiny preset without model_path)."""
    seed: int = 0
    """Seed of the random initialisation when no ``model_path`` is given."""
    arch_overrides: dict[str, dict[str, Any]] | None = None
    """Optional {'text': {...}, 'vision': {...}} overrides of the preset's Qwen2.5-VL
    architecture values (e.g. a mid-size model for latency studies); ignored with
    ``model_path``."""
    trust_remote_code: bool = False
    """Must be False: remote code is never executed."""

    def validate(self) -> None:
        require(self.preset in PRESETS, "preset", f"must be one of {PRESETS}, got {self.preset!r}")
        require(self.model_path is None or (isinstance(self.model_path, str) and self.model_path != ""),
                "model_path", "must be None or a non-empty local folder path")
        require(
            isinstance(self.image_size, tuple) and len(self.image_size) == 2
            and all(isinstance(v, int) and v > 0 and v % PIXELS_PER_IMAGE_TOKEN == 0 for v in self.image_size),
            "image_size", f"must be (height, width), positive multiples of {PIXELS_PER_IMAGE_TOKEN}",
        )
        require(self.num_latent_tokens >= 1, "num_latent_tokens", "must be >= 1")
        require(self.codebook_size >= 2, "codebook_size", "must be >= 2")
        side = math.isqrt(max(self.num_visual_context_tokens, 0))
        require(self.num_visual_context_tokens >= 1 and side * side == self.num_visual_context_tokens,
                "num_visual_context_tokens", "must be a positive perfect square")
        grid = tuple(v // PIXELS_PER_IMAGE_TOKEN for v in self.image_size)
        require(side <= min(grid), "num_visual_context_tokens",
                f"pooled grid side {side} exceeds the image-token grid {grid}")
        require(self.camera_index >= 0, "camera_index", "must be >= 0")
        require(self.loss_vocab in LOSS_VOCABS, "loss_vocab", f"must be one of {LOSS_VOCABS}")
        require(self.dtype in DTYPES, "dtype", f"must be one of {DTYPES}")
        require(self.attn_implementation in ("sdpa", "eager"), "attn_implementation", "must be 'sdpa' or 'eager'")
        require(self.tokenizer_vocab_size >= 300, "tokenizer_vocab_size", "must be >= 300 (256 bytes + merges)")
        if self.arch_overrides is not None:
            require(isinstance(self.arch_overrides, dict) and set(self.arch_overrides) <= {"text", "vision"}
                    and all(isinstance(v, dict) for v in self.arch_overrides.values()),
                    "arch_overrides", "must be a dict with optional 'text' / 'vision' dicts")
        require(self.trust_remote_code is False, "trust_remote_code", "must be False (remote code is never run)")

    @property
    def action_space(self) -> ActionSpace:
        """The latent actions this teacher predicts (``core.sizes.ActionSpace``)."""
        return ActionSpace(self.codebook_size, self.num_latent_tokens)

    @property
    def image_token_grid(self) -> tuple[int, int]:
        """(rows, cols) of language-model image tokens for ``image_size``."""
        return self.image_size[0] // PIXELS_PER_IMAGE_TOKEN, self.image_size[1] // PIXELS_PER_IMAGE_TOKEN

    @property
    def num_image_tokens(self) -> int:
        rows, cols = self.image_token_grid
        return rows * cols

    @property
    def context_tokens(self) -> int:
        """M of ``predict``'s context (pooled visual tokens + one per latent token)."""
        return self.num_visual_context_tokens + self.num_latent_tokens

    def qwen_config_dicts(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """(text, vision, top-level) Qwen2_5_VLConfig values of the preset + overrides.

        The tiny preset's token ids and vocabulary size are filled in from its tokenizer.
        """
        if self.preset == "tiny":
            text, vision, top = dict(TINY_TEXT), dict(TINY_VISION), {"tie_word_embeddings": False}
        else:
            text, vision, top = dict(QWEN25_VL_3B_TEXT), dict(QWEN25_VL_3B_VISION), dict(QWEN25_VL_3B_TOP)
        text["rope_parameters"] = {k: (list(v) if isinstance(v, list) else v) for k, v in text["rope_parameters"].items()}
        overrides = self.arch_overrides or {}
        text.update(overrides.get("text", {}))
        vision.update(overrides.get("vision", {}))
        return text, vision, top
