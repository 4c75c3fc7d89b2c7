"""The Zoom-In network (Kong & Henao, CVPR 2022): two-stage attention sampling.

Stage I scores a tile grid on the low-resolution view and draws ``n_tiles`` tiles WITH replacement.
Stage II scores each drawn tile on a view pooled by ``1/s2`` and draws ``n_sub`` sub-cells per draw
WITHOUT replacement; a full-resolution patch is cut around each. The two-level estimate
``F = (1/N) sum_draws F_t`` (equal to ``sum_t (k_t/N) F_t``) is unbiased for
``sum_t a_t sum_p b_{t,p} f(p)``, and zk.expectation carries unbiased gradients to both attention maps.
Everything is batched: one gather for all tiles, one for all patches, one feature-net call.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

import zoomkern as zk

from . import base
from .nets import AttentionNet, FeatureNet, linear_head


class ZoomIn(nn.Module):
    """Two-stage attention-sampling classifier.

    forward(image (B, C, H, W) uint8/uint16/float on CPU or the model's device, or a list of B zk.io
    sources (read patch by patch; stage II reads tile views from the pyramid level nearest ``s2``; sources
    of different sizes share the canvas of the largest, the rest is masked); lowres (B, C, h, w) or
    None; labels (B,) only for the contrastive term; mask (B, h, w) bool or None: where stage I may look
    (tissue, not padding), at any resolution, pooled to the tile grid: a tile is allowed when any of its
    mask pixels is True) -> dict with ``logits`` (B, n_classes),
    ``aux_loss`` (scalar: entropy and contrastive terms, add it to the task loss) and what was drawn:
    ``attention`` (B, gh, gw) stage-I map, ``tile_indices``/``tile_offsets`` (B, N)/(B, N, 2),
    ``sub_attention`` (B, N, sh, sw), ``sub_indices`` (B, N, k), ``patch_offsets`` (B, N*k, 2)
    full-resolution top-left corners, ``entropy1``/``entropy2`` (B,)/(B, N).
    """

    def __init__(
        self,
        n_classes: int = 10,
        in_channels: int = 1,
        *,
        tile_size=100,
        s1: float = 0.12,
        s2: float = 0.25,
        sub_grid=None,
        patch_size=32,
        n_tiles: int = 5,
        n_sub: int = 2,
        attention1: nn.Module | None = None,
        attention2: nn.Module | None = None,
        feature_net: nn.Module | None = None,
        feature_dim: int | None = None,
        head: nn.Module | None = None,
        entropy1: float = 0.0,
        entropy2: float = 0.0,
        temperature: float = 1.0,
        smoothing: float = 1e-4,
        prior: bool = False,
        prior_eps: float = 1e-4,
        prior_weight: float = 1.0,
        contrastive: bool = False,
        contrastive_weight: float = 1.0,
        eval_topk: bool = False,
        n_tiles_eval: int | None = None,
        n_sub_eval: int | None = None,
    ):
        super().__init__()
        self.tile_size = base.pair(tile_size)
        self.patch_size = base.pair(patch_size)
        self.pool2 = max(1, round(1.0 / s2))
        view = (self.tile_size[0] // self.pool2, self.tile_size[1] // self.pool2)
        self.sub_grid = base.pair(sub_grid) if sub_grid is not None else view
        if n_sub > self.sub_grid[0] * self.sub_grid[1]:
            raise ValueError(
                f"n_sub={n_sub} is more than the {self.sub_grid[0]}x{self.sub_grid[1]} sub-tile "
                "cells; sampling without replacement needs n_sub distinct cells"
            )
        if n_tiles <= 0 or n_sub <= 0:
            raise ValueError(f"n_tiles and n_sub must be positive, got {n_tiles}, {n_sub}")
        if contrastive and n_classes != 2:
            raise ValueError("contrastive=True needs a binary task (n_classes=2)")
        self.s1, self.n_tiles, self.n_sub = s1, n_tiles, n_sub
        self.n_tiles_eval, self.n_sub_eval = n_tiles_eval or n_tiles, n_sub_eval or n_sub
        self.attention1 = attention1 if attention1 is not None else AttentionNet(in_channels)
        self.attention2 = attention2 if attention2 is not None else AttentionNet(in_channels)
        self.feature_net = feature_net if feature_net is not None else FeatureNet(in_channels)
        d = base.feature_dim(self.feature_net, feature_dim)
        self.head = head if head is not None else linear_head(d, n_classes)
        self.entropy1, self.entropy2 = entropy1, entropy2
        self.temperature, self.smoothing = temperature, smoothing
        self.prior, self.prior_eps, self.prior_weight = prior, prior_eps, prior_weight
        self.contrastive, self.contrastive_weight = contrastive, contrastive_weight
        self.eval_topk = eval_topk
        self.generator: torch.Generator | None = None  # None: the global torch RNG (saved in checkpoints)

    def tile_grid(self, H: int, W: int) -> tuple[int, int]:
        # ceil: neighbouring tiles may overlap a little but together they cover the whole image.
        return (math.ceil(H / self.tile_size[0]), math.ceil(W / self.tile_size[1]))

    def _softmax(self, logits, view, grid, mask=None):
        if self.prior:
            logits = logits + self.prior_weight * base.ink_prior(view, grid, self.prior_eps)
        return zk.spatial_softmax(
            logits.float(),
            temperature=self.temperature,
            smoothing=self.smoothing,
            mask=mask,
            return_entropy=True,
        )

    def stage1(self, image, lowres, mask=None):
        dev = next(self.parameters()).device
        low = base.low_view(image, lowres, self.s1, dev)
        grid = self.tile_grid(*base.image_shape(image)[-2:])
        if mask is None:  # sources of different sizes: keep off the padding
            mask = base.padding_mask(image, low.shape[-2:], dev)
        if mask is not None:
            mask = base.grid_mask(mask, grid, dev)
        a, ent = self._softmax(base.pool_logits(self.attention1(low), grid), low, grid, mask)
        return a, ent, grid

    def stage2(self, image, a, grid, n_tiles, n_sub, det, inverted=False):
        """Draw tiles from ``a`` (B, gh, gw), sub-cells inside them, patches, features; -> (F, info)."""
        B, C, H, W = base.image_shape(image)
        dev = a.device
        T, P = self.tile_size, self.patch_size
        pa_src = base.invert(a) if inverted else a
        t_idx, t_p = base.draw(pa_src, n_tiles, True, det, self.generator)
        N = t_idx.shape[1]
        t_off = zk.cells_to_offsets(t_idx, grid, (H, W), T).to(dev)  # (B, N, 2)
        view = base.tile_views(image, t_off, T, self.pool2, dev)  # (B*N, C, T/pool2, T/pool2)
        b, ent2 = self._softmax(base.pool_logits(self.attention2(view), self.sub_grid), view, self.sub_grid)
        s_idx, s_p = base.draw(base.invert(b) if inverted else b, n_sub, False, det, self.generator)
        k = s_idx.shape[1]
        s_off = zk.cells_to_offsets(s_idx, self.sub_grid, T, P).to(dev)  # (B*N, k, 2) inside the tile
        p_off = (t_off.reshape(B * N, 1, 2) + s_off).reshape(B, N * k, 2)
        patches = base.gather(image, p_off, P, dev)  # (B, N*k, C, ph, pw)
        feats = self.feature_net(patches.flatten(0, 1))
        feats = feats.reshape(B * N, k, -1)
        f_t = base.aggregate(feats, s_p, False, det).reshape(B, N, -1)  # inner: without replacement
        f = base.aggregate(f_t, t_p, True, det)  # outer: with replacement over the N tile draws
        info = dict(
            tile_indices=t_idx,
            tile_offsets=t_off,
            sub_attention=b.reshape(B, N, *self.sub_grid),
            sub_indices=s_idx.reshape(B, N, k),
            patch_offsets=p_off,
            entropy2=ent2.reshape(B, N),
        )
        return f, info

    def forward(self, image, lowres=None, labels=None, mask=None):
        base.check_image(image, self.patch_size, "patch size")
        det = self.eval_topk and not self.training
        n_tiles = self.n_tiles if self.training else self.n_tiles_eval
        n_sub = self.n_sub if self.training else self.n_sub_eval
        if n_sub > self.sub_grid[0] * self.sub_grid[1]:
            raise ValueError(f"n_sub={n_sub} is more than the {self.sub_grid} sub-tile cells")
        a, ent1, grid = self.stage1(image, lowres, mask)
        f, info = self.stage2(image, a, grid, n_tiles, n_sub, det)
        logits = self.head(f)
        aux = base.entropy_loss(self.entropy1, ent1) + base.entropy_loss(self.entropy2, info["entropy2"])
        if self.contrastive and self.training and labels is not None:
            aux = aux + self._contrastive(image, a, grid, labels, n_tiles, n_sub)
        return dict(logits=logits, aux_loss=aux, attention=a, entropy1=ent1, **info)

    def _contrastive(self, image, a, grid, labels, n_tiles, n_sub):
        # Positive images seen through the inverted attention should look negative: this pushes the
        # attention onto the evidence and teaches the classifier what "no evidence" looks like.
        pos = (labels.to(a.device) == 1).nonzero().flatten()
        if pos.numel() == 0:
            return a.new_zeros(())
        f_neg, _ = self.stage2(base.select(image, pos), a[pos], grid, n_tiles, n_sub, False, inverted=True)
        target = torch.zeros(pos.numel(), dtype=torch.long, device=a.device)
        return self.contrastive_weight * F.cross_entropy(self.head(f_neg), target)
