"""Can stage I tell a digit from a noise stamp at a given scale? A supervised probe (issue 12).

    zoomkern probe-stage1 --root data/mnist_paper --scale 0.12 0.25

Trains the stage-I attention net of the model (same architecture, max pooling to the tile grid, the ink
prior added) WITH the answer: a tile's label is whether a digit's ink core lies in it (binary cross-
entropy per tile). No model is trained this way; the probe asks whether the low view holds the
information. If the probe ranks the digit tiles first at 0.12, stage I's failure to do so in training
is a learning-signal problem, not a resolution problem. Prints, on the test split, the share of digits
whose tile is among the top-k tiles (k = 5: the training draws; k = 16: the evaluation tiles) for the
ink prior alone and for the probe, after each epoch. The low views at each scale must exist
(``zoomkern make-data megapixel-mnist --root DIR --add-scale S``).
"""

from __future__ import annotations

import time

from ._common import parser


def tile_labels(boxes, size, tile: int):
    """(N, 5, 5) digit boxes -> (N, gh, gw) float: 1 where a digit's ink-core centre lies in the tile."""
    import numpy as np

    from zoomkern.training.diagnosis import DIGIT_CORE

    gh, gw = -(-size[0] // tile), -(-size[1] // tile)
    c = (DIGIT_CORE[0] + DIGIT_CORE[1]) // 2
    lab = np.zeros((len(boxes), gh, gw), np.float32)
    for i, b in enumerate(boxes):
        lab[i, (b[:, 0] + c) // tile, (b[:, 1] + c) // tile] = 1.0
    return lab


def recall_at(logits, labels, k: int) -> float:
    """Share of the digit tiles that are among each image's top-k tiles."""
    import torch

    flat, lab = logits.flatten(1), labels.flatten(1)
    top = torch.zeros_like(lab).scatter_(1, flat.topk(min(k, flat.shape[1]), 1).indices, 1.0)
    return float((top * lab).sum() / lab.sum())


def _trained_stage1(path: str, scale: float, grid, low):
    """Tile logits of a trained Zoom-In's stage I (ZoomIn.tile_logits: its net, pooling and prior) on
    ``low`` (N, 1, h, w) uint8."""
    import torch

    from zoomkern.training.predict import load_model

    model, cfg = load_model(path)
    if not hasattr(model, "tile_logits") or abs(cfg.scale - scale) > 1e-9:
        raise SystemExit(
            f"{path}: not a Zoom-In trained at scale {scale} (model {cfg.model}, scale {cfg.scale})"
        )
    with torch.no_grad():
        return torch.cat([model.tile_logits(_unit(x), grid) for x in low.split(100)])


def _recalls(logits, labels) -> tuple[float, float]:
    return recall_at(logits, labels, 5), recall_at(logits, labels, 16)


def _row(scale: float, what: str, prior, probe, secs: str = "-") -> None:
    """One table row: top-5 and top-16 recall (%) of the ink prior alone and of the scored stage I."""
    print(f"| {scale:g} | {what} | {100 * prior[0]:.1f} / {100 * probe[0]:.1f} | "
          f"{100 * prior[1]:.1f} / {100 * probe[1]:.1f} | {secs} |", flush=True)  # fmt: skip


def _unit(x):
    """uint8 low views -> float in [0, 1], as the models see them (converted per batch: a float copy of
    the 0.25 views of 5000 paper images would take 2.8 GB)."""
    return x.float() / 255.0


def main(argv=None, prog=None) -> int:
    p = parser(prog, __doc__)
    p.add_argument("--root", required=True, metavar="DIR", help="a Megapixel MNIST root (train/, test/)")
    p.add_argument("--scale", type=float, nargs="+", default=[0.12], help="low-view scales to probe")
    p.add_argument("--tile-size", type=int, default=250, help="stage I's tile, in level-0 pixels")
    p.add_argument("--epochs", type=int, default=3, help="probe training epochs (0: score checkpoints only)")
    p.add_argument("--lr", type=float, default=3e-3, help="the probe's Adam step")
    p.add_argument("--prior-eps", type=float, default=1e-4, help="the ink prior's epsilon, as in training")
    p.add_argument("--width", type=int, default=8, help="channels of the attention net (the model's: 8)")
    p.add_argument("--depth", type=int, default=3, help="conv layers of the attention net (the model's: 3)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--checkpoint", nargs="*", default=[], metavar="FILE",
                   help="also score these trained Zoom-In checkpoints' stage I (default: none)")  # fmt: skip
    a = p.parse_args(argv)

    import numpy as np
    import torch
    import torch.nn.functional as F

    from zoomkern.data import MegapixelMNIST
    from zoomkern.models import AttentionNet
    from zoomkern.models.base import ink_prior, pool_logits

    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"stage-I net: width {a.width}, depth {a.depth}")
    print("| scale | epoch | top-5 recall % (prior / probe) | top-16 recall % (prior / probe) | s |")
    print("|---|---|---|---|---|")
    for scale in a.scale:
        torch.manual_seed(0)
        splits = ("test", "train") if a.epochs else ("test",)  # --epochs 0: only score the checkpoints
        sets = {s: MegapixelMNIST(a.root, s, scale=scale) for s in splits}
        size = tuple(sets["test"].meta["size"])
        grid = (-(-size[0] // a.tile_size), -(-size[1] // a.tile_size))
        data = {}
        for s, ds in sets.items():  # uint8 in RAM; each batch becomes float in [0, 1] (_unit)
            low = torch.from_numpy(np.array(ds.low_views()))[:, None]
            data[s] = (low, torch.from_numpy(tile_labels(ds.boxes, size, a.tile_size)))
        net = AttentionNet(1, width=a.width, depth=a.depth)
        opt = torch.optim.Adam(net.parameters(), lr=a.lr)

        def logits(x, net=net, grid=grid):
            x = _unit(x)
            return pool_logits(net(x), grid) + ink_prior(x, grid, a.prior_eps)

        te_low, te_lab = data["test"]
        prior = torch.cat([ink_prior(_unit(x), grid, a.prior_eps) for x in te_low.split(100)])
        r_prior = _recalls(prior, te_lab)
        for path in a.checkpoint:
            _row(
                scale,
                f"trained end to end: {path}",
                r_prior,
                _recalls(_trained_stage1(path, scale, grid, te_low), te_lab),
            )
        t0 = time.perf_counter()
        for epoch in range(a.epochs):
            low, lab = data["train"]
            net.train()
            for idx in torch.randperm(len(low)).split(32):
                loss = F.binary_cross_entropy_with_logits(logits(low[idx]), lab[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                out = torch.cat([logits(x) for x in te_low.split(100)])
            _row(scale, str(epoch + 1), r_prior, _recalls(out, te_lab), f"{time.perf_counter() - t0:.0f}")
    return 0
