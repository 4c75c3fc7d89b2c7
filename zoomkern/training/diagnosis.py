"""Where do the patches land? Per-epoch diagnosis for Megapixel MNIST (issue 12, item 1).

For every patch a model read: does it overlap a digit's ink, a noise stamp's ink (or neither); and how
peaked is each stage's attention (entropy over log(cells): 1 = uniform, 0 = one cell). The data set
knows where its digits and stamps are (``MegapixelMNIST.boxes`` and ``.noise``); the models return
``patch_offsets``. A digit's ink is taken as the central 20 x 20 of its 28 x 28 box (MNIST digits are
size-normalised into a 20 x 20 box centred in 28 x 28); a stamp's as its pattern's exact ink bounding box.
"""

from __future__ import annotations

import math

import numpy as np

DIGIT_CORE = (4, 24)  # rows/cols of the 28 x 28 digit box that hold the ink


def _hits(p: np.ndarray, size: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    """p (k, 2) patch corners, boxes (m, 4) (y0, x0, y1, x1) half-open -> (k, m) patch i overlaps box j."""
    y, x = p[:, None, 0], p[:, None, 1]
    hit = (y < boxes[None, :, 2]) & (boxes[None, :, 0] < y + size[0])
    hit &= (x < boxes[None, :, 3]) & (boxes[None, :, 1] < x + size[1])
    return hit.reshape(p.shape[0], boxes.shape[0])


def _overlap(p: np.ndarray, size: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    """(k,): does patch i overlap any of the boxes (see _hits)."""
    return _hits(p, size, boxes).any(1)


def _digit_cores(d: np.ndarray) -> np.ndarray:
    """(m, 5) digit boxes (y, x, h, w, class) -> (m, 4) half-open boxes of their ink cores."""
    lo, hi = DIGIT_CORE
    return np.stack([d[:, 0] + lo, d[:, 1] + lo, d[:, 0] + hi, d[:, 1] + hi], 1)


def _valid_offsets(out: dict) -> tuple[np.ndarray, np.ndarray]:
    """The model output's patch corners (B, k, 2) and which of them are real draws (B, k) bool."""
    offs = out["patch_offsets"].detach().cpu().numpy()
    valid = out.get("patch_valid")
    valid = valid.detach().cpu().numpy() if valid is not None else np.ones(offs.shape[:2], bool)
    return offs, valid


class _Stats:
    """What both diagnoses share: each image's valid patch corners go to ``_count(p, i)``, and the mean
    relative attention entropies of both stages are accumulated here (``_entropy_counts`` /
    ``_entropy_result``, appended to each subclass's own counts)."""

    def __init__(self, patch_size: tuple[int, int]):
        self.size = patch_size
        self.images = 0
        self.ent1 = self.ent2 = 0.0
        self.n_ent2 = 0

    def update(self, out: dict, indices) -> None:
        if "patch_offsets" not in out:
            return
        offs, valid = _valid_offsets(out)
        for row, i in enumerate(indices):
            self._count(offs[row][valid[row]], i)
        a = out["attention"]
        self.ent1 += float(out["entropy1"].detach().float().sum()) / math.log(max(2, a[0].numel()))
        self.images += len(indices)
        if "entropy2" in out:
            e2 = out["entropy2"].detach().float()
            self.ent2 += float(e2.sum()) / math.log(max(2, out["sub_attention"][0, 0].numel()))
            self.n_ent2 += e2.numel()

    def _entropy_counts(self) -> list[float]:
        return [self.images, self.ent1, self.ent2, self.n_ent2]

    @staticmethod
    def _entropy_result(c: list[float], prefix: str) -> dict:
        images, ent1, ent2, n_ent2 = c
        nan = float("nan")
        return {
            f"{prefix}_entropy1": ent1 / images if images else nan,
            f"{prefix}_entropy2": ent2 / n_ent2 if n_ent2 else nan,
        }


class PatchStats(_Stats):
    """Accumulates, over an epoch, the share of patches on digit ink / noise ink and the mean relative
    attention entropies. ``update(out, indices)`` per batch; ``result(prefix)`` -> dict of floats."""

    N_COUNTS = 13  # len(counts()): what torchrun processes sum

    def __init__(self, dataset, patch_size: tuple[int, int]):
        super().__init__(patch_size)
        self.digits = dataset.boxes  # (N, 5, 5) y, x, h, w, class
        self.noise = dataset.noise_boxes()  # (N, n_noise, 4) y0, x0, y1, x1 of the stamps' ink
        self.n = self.digit = self.noise_hits = 0
        self.targets = TargetTiles(dataset)

    @staticmethod
    def supports(dataset) -> bool:
        return hasattr(dataset, "boxes") and hasattr(dataset, "noise_boxes")

    def _count(self, p: np.ndarray, i: int) -> None:
        self.digit += int(_overlap(p, self.size, _digit_cores(self.digits[i])).sum())
        self.noise_hits += int(_overlap(p, self.size, self.noise[i]).sum())
        self.n += p.shape[0]

    def update(self, out: dict, indices) -> None:
        super().update(out, indices)
        if "patch_offsets" in out:
            self.targets.update(out, indices)

    def counts(self) -> list[float]:
        return [self.n, self.digit, self.noise_hits, *self._entropy_counts(), *self.targets.counts()]

    @staticmethod
    def result(c: list[float], prefix: str) -> dict:
        """From ``counts()`` (summed over torchrun processes): fractions and mean relative entropies."""
        n, digit, noise = c[:3]
        nan = float("nan")
        return {
            f"{prefix}_patch_digit": digit / n if n else nan,
            f"{prefix}_patch_noise": noise / n if n else nan,
            **_Stats._entropy_result(c[3:7], prefix),
            **TargetTiles.result(c[7:], prefix),
        }


class TargetTiles:
    """Does stage I rank the tiles that hold the evidence above the rest, and does the teacher know them?

    Per image, the target tiles are the stage-I cells holding the centre of a target-class digit (the
    label's digits; with ``binary_digit``, that digit's). Accumulated: stage I's probability mass on them
    (``attn1_target``) against what uniform attention puts there (``attn1_uniform``, their number over
    the number of cells): the attention learns when the first rises above the second. On training
    batches with the teacher: the share of the teacher's chosen tiles that are target tiles
    (``teacher_target``), against the same uniform share (``teacher_uniform``)."""

    def __init__(self, dataset):
        meta = getattr(dataset, "meta", None)
        self.on = meta is not None and hasattr(dataset, "labels")  # off for sets without labels or size
        self.digits, self.labels = dataset.boxes, getattr(dataset, "labels", None)
        self.canvas = tuple(meta["size"]) if self.on else None
        self.binary = meta.get("binary_digit") if self.on else None
        self.images = self.mass = self.uniform = 0.0
        self.t_n = self.t_hit = self.t_uniform = 0.0

    def _cells(self, i: int, grid: tuple[int, int]) -> np.ndarray:
        d = self.digits[i]
        want = self.binary if self.binary is not None else self.labels[i]
        d = d[d[:, 4] == want]
        (H, W), (gh, gw) = self.canvas, grid
        cy = np.minimum((d[:, 0] + d[:, 2] // 2) * gh // H, gh - 1)
        cx = np.minimum((d[:, 1] + d[:, 3] // 2) * gw // W, gw - 1)
        return np.unique(cy * gw + cx)

    def update(self, out: dict, indices) -> None:
        if not self.on or "attention" not in out:
            return
        a = out["attention"].detach().float().cpu().numpy()
        grid = a.shape[1:]
        n_cells = grid[0] * grid[1]
        teach = out.get("teacher_cells")
        teach = teach.detach().cpu().numpy() if teach is not None else None
        for row, i in enumerate(indices):
            cells = self._cells(i, grid)
            if not cells.size:  # a binary negative: nothing to find
                continue
            self.images += 1
            self.mass += float(a[row].reshape(-1)[cells].sum())
            self.uniform += cells.size / n_cells
            if teach is not None and row < teach.shape[0]:
                self.t_n += teach.shape[1]
                self.t_hit += float(np.isin(teach[row], cells).sum())
                self.t_uniform += teach.shape[1] * cells.size / n_cells

    def counts(self) -> list[float]:
        return [self.images, self.mass, self.uniform, self.t_n, self.t_hit, self.t_uniform]

    @staticmethod
    def result(c: list[float], prefix: str) -> dict:
        images, mass, uniform, t_n, t_hit, t_uniform = c
        nan = float("nan")
        return {
            f"{prefix}_attn1_target": mass / images if images else nan,
            f"{prefix}_attn1_uniform": uniform / images if images else nan,
            f"{prefix}_teacher_target": t_hit / t_n if t_n else nan,
            f"{prefix}_teacher_uniform": t_uniform / t_n if t_n else nan,
        }


class DeadUnits:
    """The share of the attention nets' hidden units that never fire over an epoch (output <= 0 at every
    position of every input: a ReLU unit there gets no gradient again). Forward hooks on the nets'
    activations OR each channel's "fired" flag over the epoch; ``detach()`` removes them.
    ``result(prefix)`` -> {prefix_dead1, prefix_dead2} (ZoomIn's attention1 / attention2, ATS's net)."""

    def __init__(self, model):
        from torch import nn

        m = getattr(model, "module", model)
        first = getattr(m, "attention1", None)
        first = getattr(m, "attention", None) if first is None else first  # ATS's one net
        self.nets = [n for n in (first, getattr(m, "attention2", None)) if n is not None]
        self.fired: list[list] = []
        self.hooks = []
        for net in self.nets:
            acts = [mod for mod in net.modules() if isinstance(mod, (nn.ReLU, nn.LeakyReLU))]
            flags = [None] * len(acts)
            self.fired.append(flags)
            for j, mod in enumerate(acts):
                self.hooks.append(mod.register_forward_hook(self._hook(flags, j)))

    @staticmethod
    def _hook(flags, j):
        def hook(_mod, _inp, out):
            # stays on the device: no host sync per forward (read once, in counts())
            if out.dim() >= 3:
                f = (out.detach() > 0).flatten(2).any(2).any(0)
                flags[j] = f if flags[j] is None else flags[j] | f

        return hook

    def detach(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []

    def counts(self) -> list[float]:
        """Per net: units seen, units that fired (summed over torchrun processes: their mean share)."""
        out = []
        for flags in self.fired:  # at most two nets
            seen = [f for f in flags if f is not None]
            out += [float(sum(f.numel() for f in seen)), float(sum(int(f.sum()) for f in seen))]
        return out + [0.0, 0.0] * (2 - len(self.fired))

    @staticmethod
    def result(c: list[float], prefix: str) -> dict:
        nan = float("nan")
        return {f"{prefix}_dead{k + 1}": 1 - c[2 * k + 1] / c[2 * k] if c[2 * k] else nan for k in range(2)}


def batch_indices(batches):
    """The dataset indices of each batch a DataLoader yields: its batch sampler is deterministic per
    epoch (ShardedBatchSampler), so a second pass over it gives the same lists. None if unknown."""
    sampler = getattr(batches, "batch_sampler", None)
    if sampler is None or not hasattr(sampler, "seed"):
        return None
    return iter(sampler)


def model_patch_size(model) -> tuple[int, int] | None:
    m = getattr(model, "module", model)  # DDP wraps the model
    ps = getattr(m, "patch_size", None)
    return tuple(ps) if ps is not None else None


class ObjectStats(_Stats):
    """The same diagnosis for data sets that know the boxes of their objects (traffic signs:
    ``object_boxes(i)`` -> (k, 4) y0, x0, y1, x1, half-open, k = 0 on EMPTY images). Per epoch: the share
    of patches that overlap an object (``patch_object``), the share of the images holding an object
    that got at least one patch on it (``image_object``), and the attention entropies as above."""

    N_COUNTS = 8

    def __init__(self, dataset, patch_size: tuple[int, int]):
        super().__init__(patch_size)
        self.ds = dataset
        self.n = self.hits = self.with_obj = self.found = 0

    @staticmethod
    def supports(dataset) -> bool:
        return hasattr(dataset, "object_boxes")

    def _count(self, p: np.ndarray, i: int) -> None:
        boxes = np.asarray(self.ds.object_boxes(i), dtype=np.int64).reshape(-1, 4)
        hit = _overlap(p, self.size, boxes)
        self.hits += int(hit.sum())
        self.n += p.shape[0]
        if boxes.shape[0]:
            self.with_obj += 1
            self.found += int(hit.any())

    def counts(self) -> list[float]:
        return [self.n, self.hits, self.with_obj, self.found, *self._entropy_counts()]

    @staticmethod
    def result(c: list[float], prefix: str) -> dict:
        n, hits, with_obj, found = c[:4]
        nan = float("nan")
        return {
            f"{prefix}_patch_object": hits / n if n else nan,
            f"{prefix}_image_object": found / with_obj if with_obj else nan,
            **_Stats._entropy_result(c[4:], prefix),
        }


def stats_class(dataset):
    """The diagnosis a data set supports: ObjectStats, PatchStats (Megapixel MNIST) or None."""
    for cls in (ObjectStats, PatchStats):
        if cls.supports(dataset):
            return cls
    return None


class DigitRecall:
    """Where a trained model loses the digits (Megapixel MNIST; issue 12's "what bounds it").

    Per image: which of its digits lie wholly inside a drawn tile (stage I's recall; Zoom-In only), which
    ones a patch touches (the patches' recall; a touch is an overlap with the digit's 20 x 20 ink core),
    how many of the TARGET-class digits were touched (0 .. 3), and whether the prediction was right. The
    accuracy given k touched target digits separates the attention's misses (k small) from the
    classifier's (k = 3 and still wrong). ``update(out, indices, correct)`` per batch; ``result()``.
    """

    def __init__(self, dataset, patch_size: tuple[int, int], tile_size: tuple[int, int] | None = None):
        self.digits = dataset.boxes  # (N, 5, 5) y, x, h, w, class
        self.labels = dataset.labels
        self.size, self.tile = tuple(patch_size), None if tile_size is None else tuple(tile_size)
        n_target = int(max((b[:, 4] == lab).sum() for b, lab in zip(self.digits, self.labels, strict=True)))
        self.images = self.in_tile = self.hit = 0
        self.by_k = np.zeros((n_target + 1, 2), np.int64)  # (images, correct) per touched target count

    def update(self, out: dict, indices, correct) -> None:
        offs, valid = _valid_offsets(out)
        tiles = out.get("tile_offsets")
        tiles = tiles.detach().cpu().numpy() if tiles is not None and self.tile is not None else None
        correct = np.asarray(correct, bool)
        for row, i in enumerate(indices):
            d = self.digits[i]
            core = _digit_cores(d)
            hit = _hits(offs[row][valid[row]], self.size, core).any(0)  # (m,) digit j touched by a patch
            self.hit += int(hit.sum())
            if tiles is not None:
                t = tiles[row][:, None]  # (N, 1, 2) drawn tiles' corners against (5, 4) cores
                inside = (core[None, :, 0] >= t[..., 0]) & (core[None, :, 2] <= t[..., 0] + self.tile[0])
                inside &= (core[None, :, 1] >= t[..., 1]) & (core[None, :, 3] <= t[..., 1] + self.tile[1])
                self.in_tile += int(inside.any(0).sum())
            k = int((hit & (d[:, 4] == self.labels[i])).sum())
            self.by_k[k] += (1, int(correct[row]))
            self.images += 1

    def result(self) -> dict:
        n_digits = max(1, self.images * self.digits.shape[1])
        n = max(1, self.images)
        return dict(
            images=self.images,
            acc=float(self.by_k[:, 1].sum() / n),
            digit_in_tile=self.in_tile / n_digits if self.tile is not None else float("nan"),
            digit_hit=self.hit / n_digits,
            target_hits=(self.by_k[:, 0] / n).tolist(),  # share of images with k = 0, 1, ... touched
            acc_given_hits=[float(c / m) if m else float("nan") for m, c in self.by_k],
        )
