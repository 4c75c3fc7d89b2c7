"""The attention teacher: a target for both attention stages from what the classifier already knows.

Why: stage I learns only through the score-function gradient of the tiles it drew, whose signal-to-noise
is about 1 per step of 16 images: enough to rank tiles once the features know the objects, far too little
to find them from a uniform start (without a hand-made prior the attention stayed uniform and the model at
chance; docs/experiments/stage1.md). The classifier, though, learns what the objects look like from the
few patches that do land on them. The teacher asks it, without gradients, about MORE tiles than were
drawn and turns the answer into a plain supervised target for the attention nets.

Training only, for the first ``ceil(teacher_frac * B)`` images of a batch (batches are shuffled):
- every tile of the stage-I grid (or ``teacher_tiles`` of them, drawn uniformly among the allowed ones)
  is read at the stage-II scale and scored by stage II;
- ``teacher_sub`` sub-cells per tile are drawn without replacement from half its stage-II map and half
  the uniform distribution (so cells stage II has not learned to like are still tried), their patches go
  through the feature net and the head (eval mode: BatchNorm statistics are not touched), and each patch
  scores the log-probability of the image's label;
- a tile scores its best patch (one patch holding the object is what makes a tile worth reading);
- stage I is trained by cross-entropy towards its ``teacher_top`` best tiles (uniform over them), and the
  stage-II map of each of those tiles towards its best sub-cell.
Hard top tiles, not a softmax of the scores: a softened target kept a large share of its mass on empty
tiles (issue notes of the removed ``tile_distill``). Gradients of this loss reach only the attention nets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

import zoomkern as zk

from . import base


def teacher_rows(batch: int, frac: float) -> int:
    return max(1, min(batch, math.ceil(frac * batch)))


def _tiles(n_cells: int, allowed: torch.Tensor | None, rows: int, want: int | None, device, generator):
    """(rows, T) flat tile indices for the teacher: all cells, or ``want`` drawn uniformly among the
    allowed ones (T clamped to the fewest allowed cells of any image). Every returned tile is allowed:
    all cells only when every cell of every image is, else draws that never take a zero-probability cell."""
    ok = torch.ones(rows, n_cells, device=device) if allowed is None else allowed.reshape(rows, -1).float()
    k = min(want or n_cells, int(ok.sum(1).min()))
    if k == int(ok.shape[1]):
        return torch.arange(n_cells, device=device).expand(rows, n_cells)
    return zk.sample_patches(ok / ok.sum(1, keepdim=True), k, generator=generator).indices


def teacher_loss(model, image, a: torch.Tensor, grid, labels: torch.Tensor, mask=None) -> tuple:
    """-> (loss (scalar), info dict). ``a`` (B, gh, gw) stage-I probabilities (with their graph), ``mask``
    (B, gh, gw) bool allowed tiles or None. See the module docstring."""
    o = model.options
    B = a.shape[0]
    r = teacher_rows(B, o.teacher_frac)
    dev = a.device
    rows = torch.arange(r, device=dev)
    img = base.select(image, rows)
    _, _, H, W = base.image_shape(img)
    T, P, S = model.tile_size, model.patch_size, model.sub_grid
    n_cells = S[0] * S[1]
    allowed = mask[:r] if mask is not None else None
    t_idx = _tiles(a[0].numel(), allowed, r, o.teacher_tiles, dev, model.generator)  # (r, Tn)
    Tn = t_idx.shape[1]
    t_off = model.tile_offsets(t_idx, grid, H, W).to(dev)  # (r, Tn, 2)
    views = base.tile_views(img, t_off, T, model.pool2, dev)  # (r*Tn, C, vh, vw)
    b, _ = model._softmax(base.pool_logits(model.attention2(views), S), views, S)  # (r*Tn, sh, sw), grad
    ks = min(o.teacher_sub, n_cells)
    explore = 0.5 * b.detach().reshape(r * Tn, -1).float() + 0.5 / n_cells
    s_idx = zk.sample_patches(explore, ks, generator=model.generator).indices  # (r*Tn, ks)
    p_off = zk.cells_to_offsets(s_idx, S, T, P).to(dev) + t_off.reshape(r * Tn, 1, 2)
    with torch.no_grad():
        patches = base.gather(img, p_off.reshape(r, Tn * ks, 2), P, dev).flatten(0, 1)
        was = model.feature_net.training, model.head.training
        model.feature_net.eval()
        model.head.eval()
        try:
            logp = F.log_softmax(model.head(model.feature_net(patches)).float(), -1)
        finally:
            model.feature_net.train(was[0])
            model.head.train(was[1])
        y = labels.to(dev)[:r].repeat_interleave(Tn * ks)
        score = logp.gather(1, y[:, None]).reshape(r, Tn, ks)
        tile_score, best = score.max(2)  # (r, Tn): a tile is as good as its best patch (all allowed)
        m = min(o.teacher_top, Tn)
        top = tile_score.topk(m, 1).indices  # (r, m) positions among the teacher's tiles
    top_cells = t_idx.gather(1, top)  # (r, m) flat stage-I cells
    loss1 = -torch.log(a.reshape(B, -1)[:r].gather(1, top_cells).float().clamp_min(1e-12)).mean()
    # stage II: each top tile's map towards its best sub-cell
    flat = (rows[:, None] * Tn + top).reshape(-1)  # rows of b
    best_cell = s_idx.reshape(r, Tn, ks).gather(2, best[:, :, None]).squeeze(2).gather(1, top).reshape(-1)
    b_top = b.reshape(r * Tn, -1)[flat].gather(1, best_cell[:, None]).float()
    loss2 = -torch.log(b_top.clamp_min(1e-12)).mean()
    info = dict(teacher_cells=top_cells, teacher_loss1=loss1.detach(), teacher_loss2=loss2.detach())
    return o.teacher * (loss1 + loss2), info
