"""The Zoom-In network (Kong & Henao, CVPR 2022): two-stage attention sampling.

Stage I scores a tile grid on the low-resolution view and draws ``n_tiles`` tiles WITH replacement.
Stage II scores each distinct drawn tile once, on a view pooled by ``1/s2``, and draws ``c_t * n_sub``
sub-cells WITHOUT replacement from a tile drawn ``c_t`` times; a full-resolution patch is cut around
each. The two-level estimate ``F = sum_t (c_t/N) F_t`` is unbiased for ``sum_t a_t sum_p b_{t,p} f(p)``,
and zk.expectation carries unbiased gradients to both attention maps (tests/test_model_defects.py checks
value and gradients by Monte Carlo). Everything is batched: one gather for all tiles, one for all
patches, one feature-net call (the contrastive branch included). Evaluation with ``eval_topk`` keeps the
top sub-cells spread apart (no two patches of one peak). The estimator runs in float32 under autocast.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

import zoomkern as zk

from . import base
from .nets import AttentionNet, FeatureNet, linear_head
from .options import ZoomInOptions
from .teacher import teacher_loss


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
    ``tile_counts`` (B, N) how often each draw's tile was drawn, ``sub_attention`` (B, N, sh, sw),
    ``sub_indices`` (B, N, k), ``patch_offsets`` (B, N*k, 2) full-resolution top-left corners,
    ``patch_valid`` (B, N*k) False only where a tile drawn c_t times had fewer than c_t*k cells (its
    extra slots hold -1 / a repeated offset), ``entropy1``/``entropy2`` (B,)/(B, N). Per draw: the
    draws of one tile share its map and split its sub-cell draws.
    """

    def __init__(
        self,
        n_classes: int = 10,
        in_channels: int = 1,
        *,
        options: ZoomInOptions | None = None,
        attention1: nn.Module | None = None,
        attention2: nn.Module | None = None,
        feature_net: nn.Module | None = None,
        feature_dim: int | None = None,
        head: nn.Module | None = None,
        **kwargs,
    ):
        """``options`` (a ZoomInOptions, models/options.py) and/or its fields as keywords (they override
        it); the networks are keywords of their own."""
        super().__init__()
        o = self.options = ZoomInOptions.make(options, "ZoomIn", **kwargs)
        base.apply_options(self, o)
        self.tile_size = base.pair(o.tile_size)
        if not 0 < o.s2 <= 1 or abs(1.0 / o.s2 - round(1.0 / o.s2)) > 1e-6:
            raise ValueError(
                f"s2={o.s2}: stage II pools each tile by the integer factor 1/s2, and 1/s2 = "
                f"{1.0 / o.s2:.4g} is not an integer (it was rounded silently before); use e.g. 0.5, 0.25, "
                "0.2 or 1/3"
            )
        self.pool2 = max(1, round(1.0 / o.s2))
        view = (self.tile_size[0] // self.pool2, self.tile_size[1] // self.pool2)
        self.sub_grid = base.pair(o.sub_grid) if o.sub_grid is not None else view
        n_tiles, n_sub = o.n_tiles, o.n_sub
        if n_sub > self.sub_grid[0] * self.sub_grid[1]:
            raise ValueError(
                f"n_sub={n_sub} is more than the {self.sub_grid[0]}x{self.sub_grid[1]} sub-tile "
                "cells; sampling without replacement needs n_sub distinct cells"
            )
        if n_tiles <= 0 or n_sub <= 0:
            raise ValueError(f"n_tiles and n_sub must be positive, got {n_tiles}, {n_sub}")
        if o.contrastive and n_classes != 2:
            raise ValueError("contrastive=True needs a binary task (n_classes=2)")
        self.n_tiles, self.n_sub = n_tiles, n_sub
        self.n_tiles_eval, self.n_sub_eval = o.n_tiles_eval or n_tiles, o.n_sub_eval or n_sub
        self.attention1 = attention1 if attention1 is not None else AttentionNet(in_channels)
        self.attention2 = attention2 if attention2 is not None else AttentionNet(in_channels)
        self.feature_net = feature_net if feature_net is not None else FeatureNet(in_channels)
        d = base.feature_dim(self.feature_net, feature_dim)
        self.head = head if head is not None else linear_head(d, n_classes)
        self.entropy1 = o.entropy if o.entropy1 is None else o.entropy1
        self.entropy2 = o.entropy if o.entropy2 is None else o.entropy2
        self.contrastive, self.contrastive_weight = o.contrastive, o.contrastive_weight
        self.tile_baseline = o.tile_baseline
        self.teacher = o.teacher
        if o.teacher < 0 or not 0 < o.teacher_frac <= 1 or o.teacher_top < 1 or o.teacher_sub < 1:
            raise ValueError(
                f"teacher={o.teacher} must be >= 0, teacher_frac={o.teacher_frac} in (0, 1], teacher_top="
                f"{o.teacher_top} and teacher_sub={o.teacher_sub} >= 1"
            )
        if o.teacher_tiles is not None and o.teacher_tiles < 1:
            raise ValueError(f"teacher_tiles={o.teacher_tiles}: None (every tile) or >= 1")
        if o.tile_pooling not in base.POOLINGS:
            raise ValueError(f"tile_pooling must be one of {base.POOLINGS}, got {o.tile_pooling!r}")
        self.tile_pooling = o.tile_pooling
        self.generator: torch.Generator | None = None  # None: the global torch RNG (saved in checkpoints)

    def tile_grid(self, H: int, W: int) -> tuple[int, int]:
        # ceil: neighbouring tiles may overlap a little but together they cover the whole image.
        return (math.ceil(H / self.tile_size[0]), math.ceil(W / self.tile_size[1]))

    def tile_offsets(self, idx: torch.Tensor, grid, H: int, W: int) -> torch.Tensor:
        """Top-left corners (..., 2) of the tiles of cells ``idx``: centred on the cell, then clamped
        into the image. Centred only, a ceil grid's border tiles stuck out (24% zero padding at H=260,
        T=250); a tile larger than the image is centred on it."""
        off = zk.cells_to_offsets(idx, grid, (H, W), self.tile_size)
        lo = off.new_tensor([min(0, (H - self.tile_size[0]) // 2), min(0, (W - self.tile_size[1]) // 2)])
        hi = off.new_tensor([max(lo[0], H - self.tile_size[0]), max(lo[1], W - self.tile_size[1])])
        return torch.maximum(torch.minimum(off, hi), lo)

    def _with_prior(self, logits, view, grid):
        if not self.prior:
            return logits
        return logits + self.prior_weight * base.ink_prior(view, grid, self.prior_eps)

    def _normalise(self, logits, mask=None):
        return zk.spatial_softmax(
            logits.float(),
            temperature=self.temperature,
            smoothing=self.smoothing,
            mask=mask,
            return_entropy=True,
        )

    def _softmax(self, logits, view, grid, mask=None):
        return self._normalise(self._with_prior(logits, view, grid), mask)

    def tile_logits(self, low: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Stage I's logits over the tile grid (B, gh, gw), the ink prior included: what its softmax
        normalises. ``low`` (B, C, h, w) float in [0, 1] (python/probe_stage1.py ranks tiles by them)."""
        return self._with_prior(base.pool_logits(self.attention1(low), grid, self.tile_pooling), low, grid)

    def stage1(self, image, lowres, mask=None):
        """-> (a (B, gh, gw) stage-I probabilities, their entropy (B,), grid)."""
        return self._stage1(image, lowres, mask)[:3]

    def _stage1(self, image, lowres, mask=None):
        dev = next(self.parameters()).device
        low = base.low_view(image, lowres, self.s1, dev)
        grid = self.tile_grid(*base.image_shape(image)[-2:])
        if mask is None:  # sources of different sizes: keep off the padding
            mask = base.padding_mask(image, low.shape[-2:], dev)
        if mask is not None:
            mask = base.grid_mask(mask, grid, dev)
        a, ent = self._normalise(self.tile_logits(low, grid), mask)
        return a, ent, grid, mask

    def stage2(self, image, a, grid, n_tiles, n_sub, det, inverted=False):
        """Draw tiles from ``a`` (B, gh, gw), sub-cells inside them, patches, features; -> (F, info)."""
        plan = self._plan(image, a, grid, n_tiles, n_sub, det, inverted)
        return self._finish(plan, self.feature_net(plan["patches"]))

    def _plan(self, image, a, grid, n_tiles, n_sub, det, inverted=False, allowed=None) -> dict:
        """Everything up to the feature net: tiles, stage-II maps, sub-cell draws and the patches.

        The N tile draws (with replacement) are grouped by tile: each distinct tile is read and scored
        once, and its count c_t times n_sub sub-cells are drawn from it together WITHOUT replacement
        (capped at the sub-grid size). F = sum_t (c_t / N) F_t keeps the expectation; the inner estimate
        of a tile drawn twice uses 2 n_sub distinct cells instead of two independent n_sub-draws that may
        repeat cells (lower variance), and duplicate draws no longer cost a tile read and an attention pass.
        """
        B, C, H, W = base.image_shape(image)
        dev = a.device
        T, P, S = self.tile_size, self.patch_size, self.sub_grid
        n_cells = S[0] * S[1]
        t_idx, t_p = base.draw(base.invert(a, allowed) if inverted else a, n_tiles, True, det, self.generator)
        N = t_idx.shape[1]
        # Group the draws of each image by tile: sorted, a new group where the tile changes.
        srt, order = t_idx.sort(1)
        first = torch.ones_like(srt, dtype=torch.bool)
        first[:, 1:] = srt[:, 1:] != srt[:, :-1]
        gid_sorted = first.long().cumsum(1) - 1  # group of each sorted draw, within its image
        n_groups = gid_sorted[:, -1] + 1  # (B,)
        U = int(n_groups.max())
        # (B, U) the distinct tiles, padded with the image's last one (read but never used)
        uniq = torch.zeros(B, U, dtype=torch.long, device=t_idx.device)
        uniq.scatter_(1, gid_sorted, srt)
        valid = torch.arange(U, device=t_idx.device)[None] < n_groups[:, None]
        uniq = torch.where(valid, uniq, uniq.gather(1, (n_groups - 1)[:, None]))
        counts = torch.zeros(B, U, dtype=torch.long, device=t_idx.device).scatter_add_(
            1, gid_sorted, torch.ones_like(srt)
        )
        # rank of each draw within its group (0 .. c_t - 1): which n_sub slice of the tile's draws it shows
        pos_sorted = torch.arange(N, device=t_idx.device)[None] - torch.where(first, torch.arange(
            N, device=t_idx.device)[None].expand(B, N), torch.zeros_like(srt)).cummax(1).values  # fmt: skip
        gid = torch.empty_like(gid_sorted).scatter_(1, order, gid_sorted)  # per draw, in draw order
        rank = torch.empty_like(pos_sorted).scatter_(1, order, pos_sorted)
        # flat index of each image's groups among the M distinct (image, tile) pairs
        base_row = torch.cumsum(n_groups, 0) - n_groups
        slot_u = (base_row[:, None] + gid).reshape(-1)  # (B*N,) -> distinct tile row
        M = int(n_groups.sum())

        t_off_all = self.tile_offsets(uniq, grid, H, W).to(dev)  # (B, U, 2)
        # (B*U, C, T/pool2, T/pool2): pooled full-res tiles, or from a pyramid source the level nearest s2
        views = base.tile_views(image, t_off_all, T, self.pool2, dev)
        view = views.reshape(B, U, *views.shape[1:])[valid.to(dev)]  # (M, C, T/pool2, T/pool2)
        t_off = t_off_all[valid.to(dev)]  # (M, 2)
        b, ent2 = self._softmax(base.pool_logits(self.attention2(view), S), view, S)
        count_u = counts[valid].to(dev)  # (M,)
        k_u = (count_u * n_sub).clamp_max(n_cells)  # sub-cells drawn per distinct tile
        K = int(k_u.max())
        s_idx, s_p = base.draw(base.invert(b) if inverted else b, K, False, det, self.generator,
                               base.spacing(P, S, T))  # fmt: skip
        K = s_idx.shape[1]
        s_off = zk.cells_to_offsets(s_idx, S, T, P).to(dev) + t_off[:, None]  # (M, K, 2)
        # Per draw slot: its n_sub slice of its tile's ordered sub-draws; the slice may run past k_t only
        # when the cap bit (c_t n_sub > cells): those slots are marked invalid.
        slot_u, rank = slot_u.to(dev), rank.reshape(-1).to(dev)
        j = rank[:, None] * n_sub + torch.arange(n_sub, device=dev)[None]  # (B*N, n_sub)
        ok = j < k_u[slot_u][:, None]
        j = j.clamp_max(K - 1)
        p_off = s_off[slot_u[:, None], j]  # (B*N, n_sub, 2)
        sub_idx = torch.where(ok, s_idx[slot_u[:, None], j], torch.full_like(j, -1))
        patches = base.gather(image, p_off.reshape(B, N * n_sub, 2), P, dev).flatten(0, 1)
        ok = ok.reshape(-1)
        return dict(
            patches=patches if bool(ok.all()) else patches[ok],
            ok=ok, rows=slot_u[:, None].expand(-1, n_sub).reshape(-1)[ok], cols=j.reshape(-1)[ok],
            M=M, K=K, k_u=k_u, s_p=s_p, slot_u=slot_u, t_p=t_p, det=det,
            info=dict(
                tile_indices=t_idx,
                tile_offsets=t_off[slot_u].reshape(B, N, 2),
                tile_counts=count_u[slot_u].reshape(B, N),
                sub_attention=b[slot_u].reshape(B, N, *S),
                sub_indices=sub_idx.reshape(B, N, n_sub),
                patch_offsets=p_off.reshape(B, N * n_sub, 2),
                patch_valid=ok.reshape(B, N * n_sub),
                entropy2=ent2[slot_u].reshape(B, N),
            ),
        )  # fmt: skip

    def _finish(self, plan: dict, feats: torch.Tensor):
        """Features of the plan's patches -> (F (B, D) float32, info): inner estimates per distinct tile,
        grouped by how many sub-cells each drew, then the with-replacement estimate over the N draws."""
        M, K = plan["M"], plan["K"]
        grid = feats.new_zeros(M, K, feats.shape[-1]).index_put((plan["rows"], plan["cols"]), feats)
        k_u, s_p = plan["k_u"], plan["s_p"]
        f_u = feats.new_zeros(M, feats.shape[-1], dtype=torch.float32)
        for k in torch.unique(k_u).tolist():  # at most N distinct counts
            rows = (k_u == k).nonzero().flatten()
            f_k = base.aggregate(grid[rows, :k], s_p[rows, :k], False, plan["det"])  # without replacement
            f_u = f_u.index_put((rows,), f_k)
        B, N = plan["t_p"].shape
        f_draws = f_u[plan["slot_u"]].reshape(B, N, -1)  # a tile drawn c_t times appears c_t times
        f = base.aggregate(f_draws, plan["t_p"], True, plan["det"])
        if self.tile_baseline and not plan["det"] and torch.is_grad_enabled():
            # each F_t is unbiased for its tile whatever c_t, so the other draws' mean does not depend
            # on draw m in expectation: the baseline keeps the gradient unbiased (Monte Carlo test)
            f = f + base.loo_baseline(f_draws, plan["t_p"])
        return f, plan["info"]

    def forward(self, image, lowres=None, labels=None, mask=None):
        base.check_image(image, self.patch_size, "patch size")
        det = self.eval_topk and not self.training
        n_tiles = self.n_tiles if self.training else self.n_tiles_eval
        n_sub = self.n_sub if self.training else self.n_sub_eval
        if n_sub > self.sub_grid[0] * self.sub_grid[1]:
            raise ValueError(f"n_sub={n_sub} is more than the {self.sub_grid} sub-tile cells")
        a, ent1, grid, allowed = self._stage1(image, lowres, mask)
        plans = [self._plan(image, a, grid, n_tiles, n_sub, det)]
        pos = None
        if self.contrastive and self.training and labels is not None:
            pos = self._contrastive_rows(labels, a, grid)
            if pos is not None:
                # Positive images seen through the inverted attention should look negative: this pushes
                # the attention onto the evidence and teaches the classifier what "no evidence" looks like.
                # masked-out tiles (padding) stay out of the inverted distribution too
                inv_ok = allowed[pos] if allowed is not None else None
                plans.append(
                    self._plan(base.select(image, pos), a[pos], grid, n_tiles, n_sub, False, True, inv_ok)
                )
        # One feature-net call for both branches: BatchNorm sees one batch and updates its running
        # statistics once per step (the negatives alone are mostly background).
        sizes = [p["patches"].shape[0] for p in plans]
        feats = self.feature_net(
            torch.cat([p["patches"] for p in plans]) if len(plans) > 1 else plans[0]["patches"]
        )
        feats = feats.split(sizes)
        f, info = self._finish(plans[0], feats[0])
        logits = self.head(f)
        aux = base.entropy_loss(self.entropy1, ent1) + base.entropy_loss(self.entropy2, info["entropy2"])
        if len(plans) > 1:
            f_neg, _ = self._finish(plans[1], feats[1])
            target = torch.zeros(f_neg.shape[0], dtype=torch.long, device=a.device)
            aux = aux + self.contrastive_weight * F.cross_entropy(self.head(f_neg).float(), target)
        if self.teacher and self.training and labels is not None and torch.is_grad_enabled():
            t_loss, t_info = teacher_loss(self, image, a, grid, labels, allowed)
            aux = aux + t_loss
            info.update(t_info)
        return dict(logits=logits, aux_loss=aux, attention=a, entropy1=ent1, **info)

    def _contrastive_rows(self, labels, a, grid):
        """Indices of the positive images, or None when there are none or the term means nothing."""
        if grid == (1, 1) and self.sub_grid == (1, 1):
            warnings.warn(
                "ZoomIn: contrastive term skipped: the tile grid and the sub-grid each have one cell, so "
                "the inverted attention would draw the very patches of the positive branch",
                stacklevel=3,
            )
            return None
        pos = (labels.to(a.device) == 1).nonzero().flatten()
        return pos if pos.numel() else None
