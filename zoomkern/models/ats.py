"""One-stage attention sampling (Katharopoulos & Fleuret, ICML 2019), the ATS baseline."""

from __future__ import annotations

import torch
from torch import nn

import zoomkern as zk

from . import base
from .nets import AttentionNet, FeatureNet, linear_head
from .options import ATSOptions


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
        options: ATSOptions | None = None,
        attention: nn.Module | None = None,
        feature_net: nn.Module | None = None,
        feature_dim: int | None = None,
        head: nn.Module | None = None,
        **kwargs,
    ):
        """``options`` (an ATSOptions, models/options.py) and/or its fields as keywords (they override
        it); the networks are keywords of their own."""
        super().__init__()
        o = self.options = ATSOptions.make(options, "ATS", **kwargs)
        base.apply_options(self, o)
        if o.n_patches <= 0:
            raise ValueError(f"n_patches must be positive, got {o.n_patches}")
        self.grid = base.pair(o.grid) if o.grid is not None else None
        self.n_patches, self.n_patches_eval = o.n_patches, o.n_patches_eval or o.n_patches
        self.replace = o.replace
        self.attention = attention if attention is not None else AttentionNet(in_channels)
        self.feature_net = feature_net if feature_net is not None else FeatureNet(in_channels)
        self.head = (
            head
            if head is not None
            else linear_head(base.feature_dim(self.feature_net, feature_dim), n_classes)
        )
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
        idx, p = base.draw(
            a, k, self.replace, det, self.generator, base.spacing(self.patch_size, grid, (H, W))
        )
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
