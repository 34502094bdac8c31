"""Networks of the latent action model: the IMPALA encoder (inverse dynamics) and the forward model.

- ``ImpalaEncoder``: IMPALA CNN over the two stacked frames t, t + s (6 channels).
- ``ForwardDynamicsModel``: small UNet from the current frame alone to the next frame; the action
  embedding is tiled onto the input, tiled and concatenated at the bottleneck and added per decoder
  level; it predicts the change over the current frame (residual).
- ``mlp``: the two-layer MLP the model uses for its heads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(F.relu(self.conv0(F.relu(x))))


class _ImpalaStage(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, res_blocks: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.blocks = nn.Sequential(*[_ResBlock(out_ch) for _ in range(res_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv(x), kernel_size=3, stride=2, padding=1)
        return self.blocks(x)


class ImpalaEncoder(nn.Module):
    """IMPALA CNN: (B, in_ch, S, S) -> (B, out_dim); ``stem`` > 1 first folds stem x stem
    pixel blocks into channels (space-to-depth), which cuts the cost of the first stage."""

    def __init__(self, in_ch: int, channels: tuple[int, ...], res_blocks: int, image_size: int, out_dim: int,
                 stem: int = 1):
        super().__init__()
        self.stem = stem
        stages, c = [], in_ch * stem * stem
        for out_ch in channels:
            stages.append(_ImpalaStage(c, out_ch, res_blocks))
            c = out_ch
        self.stages = nn.Sequential(*stages)
        side = image_size // stem
        for _ in channels:
            side = (side + 1) // 2
        self.fc = nn.Linear(c * side * side, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stem > 1:
            x = F.pixel_unshuffle(x, self.stem)
        x = F.relu(self.stages(x))
        return F.relu(self.fc(x.flatten(1)))


def _group_norm(channels: int) -> nn.GroupNorm:
    groups = 8 if channels % 8 == 0 else (4 if channels % 4 == 0 else 1)
    return nn.GroupNorm(groups, channels)


class _ConvBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, convs: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(convs):
            layers += [nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, padding=1), _group_norm(out_ch), nn.SiLU()]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ForwardDynamicsModel(nn.Module):
    """UNet: (frame_t, action embedding) -> predicted next frame.

    ``stem`` > 1 folds stem x stem pixel blocks into channels on the way in and
    unfolds them on the way out (the UNet runs at 1/stem resolution). The action
    is tiled onto the input (``input_action_channels``), tiled and concatenated at
    the bottleneck and added as a per-channel bias at each decoder level. Decoder
    levels convolve at the coarse resolution, upsample (nearest) and add the skip.
    Output = base + predicted change, where base is frame_t, or frame_t warped by an ego
    motion when one is given (``warp_by_ego_motion``); the last layer starts at zero, so
    an untrained FDM without motion is the copy-the-last-frame baseline. It sees one
    frame only: the motion of the scene has to come from the action.
    """

    def __init__(self, channels: tuple[int, ...], action_dim: int, input_action_channels: int,
                 stem: int = 1, convs_per_block: int = 2):
        super().__init__()
        self.stem = stem
        self.input_action_channels = input_action_channels
        self.in_action = nn.Linear(action_dim, input_action_channels) if input_action_channels else None
        self.inc = _ConvBlock(3 * stem * stem + input_action_channels, channels[0], convs_per_block)
        self.downs = nn.ModuleList()
        for i in range(1, len(channels)):
            self.downs.append(nn.ModuleDict({
                "pool": nn.Conv2d(channels[i - 1], channels[i - 1], 3, stride=2, padding=1),
                "block": _ConvBlock(channels[i - 1], channels[i], convs_per_block),
            }))
        bott = channels[-1]
        self.bott_action = nn.Linear(action_dim, bott)
        self.bottleneck = _ConvBlock(2 * bott, bott, convs_per_block)
        self.ups = nn.ModuleList()
        for i in range(len(channels) - 1, 0, -1):
            self.ups.append(nn.ModuleDict({
                "up": nn.Conv2d(channels[i], channels[i - 1], 3, padding=1),
                "bias": nn.Linear(action_dim, channels[i - 1]),
                "block": _ConvBlock(channels[i - 1], channels[i - 1], convs_per_block),
            }))
        self.out = nn.Conv2d(channels[0], 3 * stem * stem, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, frame_t: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """``frame_t`` is the (possibly ego-motion-warped) current frame."""
        x = frame_t
        if self.stem > 1:
            x = F.pixel_unshuffle(x, self.stem)
        b, _, h, w = x.shape
        if self.in_action is not None:
            a_in = self.in_action(action)[:, :, None, None].expand(b, self.input_action_channels, h, w)
            x = torch.cat([x, a_in], dim=1)
        x = self.inc(x)
        skips = [x]
        for down in self.downs:
            x = down["block"](down["pool"](x))
            skips.append(x)
        skips.pop()
        a_b = self.bott_action(action)[:, :, None, None].expand_as(x)
        x = self.bottleneck(torch.cat([x, a_b], dim=1))
        for up in self.ups:
            skip = skips.pop()
            x = F.interpolate(up["up"](x), size=skip.shape[-2:], mode="nearest")
            x = up["block"](x + skip + up["bias"](action)[:, :, None, None])
        delta = self.out(x)
        if self.stem > 1:
            delta = F.pixel_shuffle(delta, self.stem)
        return frame_t + delta


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
