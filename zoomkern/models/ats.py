"""One-stage attention sampling (Katharopoulos & Fleuret, ICML 2019), the ATS baseline."""

from __future__ import annotations

import torch
from torch import nn

import zoomkern as zk

from . import base
from .nets import AttentionNet, FeatureNet, linear_head


class ATS(nn.Module):
    """Attention over a grid on the low-resolution view, ``n_patches`` full-resolution patches drawn
    (without replacement by default), the zk.expectation of their features, a head.

    forward(image, lowres=None, labels=None) -> dict with ``logits``, ``aux_loss`` (entropy term),
    ``attention`` (B, gh, gw), ``indices`` (B, k), ``patch_offsets`` (B, k, 2), ``entropy1`` (B,).
    ``grid=None`` uses the attention map's own resolution (that of the low-resolution view).
    """

    def __init__(
        self,
        n_classes: int = 10,
        in_channels: int = 1,
        *,
        s1: float = 0.12,
        grid=None,
        patch_size=32,
        n_patches: int = 10,
        replace: bool = False,
        attention: nn.Module | None = None,
        feature_net: nn.Module | None = None,
        feature_dim: int | None = None,
        head: nn.Module | None = None,
        entropy: float = 0.0,
        temperature: float = 1.0,
        smoothing: float = 1e-4,
        prior: bool = False,
        prior_eps: float = 1e-4,
        prior_weight: float = 1.0,
        eval_topk: bool = False,
        n_patches_eval: int | None = None,
    ):
        super().__init__()
        if n_patches <= 0:
            raise ValueError(f"n_patches must be positive, got {n_patches}")
        self.s1, self.grid, self.patch_size = (
            s1,
            base.pair(grid) if grid is not None else None,
            base.pair(patch_size),
        )
        self.n_patches, self.n_patches_eval, self.replace = n_patches, n_patches_eval or n_patches, replace
        self.attention = attention if attention is not None else AttentionNet(in_channels)
        self.feature_net = feature_net if feature_net is not None else FeatureNet(in_channels)
        self.head = (
            head
            if head is not None
            else linear_head(base.feature_dim(self.feature_net, feature_dim), n_classes)
        )
        self.entropy, self.temperature, self.smoothing = entropy, temperature, smoothing
        self.prior, self.prior_eps, self.prior_weight = prior, prior_eps, prior_weight
        self.eval_topk = eval_topk
        self.generator: torch.Generator | None = None

    def forward(self, image, lowres=None, labels=None, mask=None):
        base.check_image(image, self.patch_size, "patch size")
        B, C, H, W = base.image_shape(image)
        dev = next(self.parameters()).device
        det = self.eval_topk and not self.training
        k = self.n_patches if self.training else self.n_patches_eval
        low = base.low_view(image, lowres, self.s1, dev)
        raw = self.attention(low)
        grid = self.grid or tuple(raw.shape[-2:])
        if not self.replace and k > grid[0] * grid[1]:
            raise ValueError(
                f"n_patches={k} is more than the {grid[0]}x{grid[1]} attention cells; sampling "
                "without replacement needs that many distinct cells"
            )
        logits = base.pool_logits(raw, grid)
        if self.prior:
            logits = logits + self.prior_weight * base.ink_prior(low, grid, self.prior_eps)
        if mask is None:  # sources of different sizes: keep off the padding
            mask = base.padding_mask(image, low.shape[-2:], dev)
        if mask is not None:  # (B, h, w) bool: where attention may look (tissue, not padding)
            mask = base.grid_mask(mask, grid, dev)
        a, ent = zk.spatial_softmax(
            logits.float(),
            temperature=self.temperature,
            smoothing=self.smoothing,
            mask=mask,
            return_entropy=True,
        )
        idx, p = base.draw(a, k, self.replace, det, self.generator)
        off = zk.cells_to_offsets(idx, grid, (H, W), self.patch_size).to(dev)
        patches = base.gather(image, off, self.patch_size, dev)
        feats = self.feature_net(patches.flatten(0, 1)).reshape(B, idx.shape[1], -1)
        f = base.aggregate(feats, p, self.replace, det)
        return dict(
            logits=self.head(f),
            aux_loss=base.entropy_loss(self.entropy, ent),
            attention=a,
            indices=idx,
            patch_offsets=off,
            entropy1=ent,
        )
