"""Training configuration: one dataclass, its --help text, the presets (zoomkern/configs/), build_model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .config_file import load_presets


@dataclass
class TrainConfig:
    # data
    # A name in zoomkern.training.registry.DATASETS (megapixel_mnist, colon, traffic_signs, ...).
    dataset: str = "megapixel_mnist"
    root: str = "data/megapixel_mnist"
    # Data sets with folds (colon): the fold to train on (1-based), and for --folds K >= 2 a K-fold
    # cross-validation over all folds (0: one run on `fold`; stratified folds default to 10 then).
    fold: int = 1
    folds: int = 0
    # Image channels; None: taken from the data set (1 for Megapixel MNIST, 3 for RGB sets).
    in_channels: int | None = None
    # Training augmentations of the data set's paper, drawn on the fly (colon: flips and rotations).
    augment: bool = False
    # Weight the loss by inverse class frequency of the training set (imbalanced sets: traffic signs).
    class_weights: bool = False
    # Slides (--dataset slides): the labels CSV `slide,label` (default <root>/labels.csv), an optional
    # second CSV of held-out slides in the same root (default: the training slides are the test set), and
    # whether stage I looks at tissue only (Otsu mask of the low view).
    labels: str | None = None
    test_labels: str | None = None
    tissue_mask: bool = True
    size: tuple[int, int] = (1500, 1500)
    n_train: int = 5000
    n_test: int = 1000
    n_noise: int = 50
    scale: float = 0.12
    data_seed: int = 0
    # Binary variant: label 1 iff this digit is present (n_classes becomes 2); pairs with `contrastive`.
    binary_digit: int | None = None
    # "n_noise:epochs,...": train first on canvases with fewer noise stamps (each stage is its own
    # generated training set), then on the full one. Empty: no curriculum.
    noise_curriculum: str = ""
    # model
    model: str = "zoomin"
    n_classes: int = 10
    tile_size: int = 250
    s2: float = 0.2
    sub_grid: tuple[int, int] | None = None
    patch_size: int = 50
    n_tiles: int = 5
    n_sub: int = 2
    n_patches: int = 10
    entropy: float = 0.01
    prior: bool = True
    prior_eps: float = 1e-4
    # The prior's weight on the attention logits; with prior_weight_final it moves linearly from
    # prior_weight (first epoch) to prior_weight_final (last epoch), so the learned logits can take over.
    prior_weight: float = 1.0
    prior_weight_final: float | None = None
    eval_topk: bool = False
    # ZoomIn: a leave-one-out baseline in stage I's score-function gradient (lower variance, same mean).
    tile_baseline: bool = False
    # ZoomIn: how stage I pools its logits to the tile grid, "max" or "lse" (see models/base.pool_logits).
    tile_pooling: str = "max"
    # ZoomIn only, binary tasks only: positives seen through the inverted attention must look negative.
    contrastive: bool = False
    # ZoomIn: the attention teacher's weight (0: off), the share of a batch it scores, the tiles it scores
    # (None: all), sub-cells it tries per tile, best tiles stage I is pulled towards (models/teacher.py).
    teacher: float = 0.0
    teacher_frac: float = 0.5
    teacher_tiles: int | None = None
    teacher_sub: int = 2
    teacher_top: int = 2
    n_tiles_eval: int | None = None
    n_sub_eval: int | None = None
    # ATS: patches at evaluation (None: n_patches). The recipe gives ATS as many as Zoom-In's tiles x
    # sub-cells: with 10 of them ATS touched 30% of the digits, with 48 96% (docs/experiments/paper.md).
    n_patches_eval: int | None = None
    # ZoomIn/ATS stage-I attention net: average-pool the low view by this first (slides: see AttentionNet).
    attention_pool: int = 1
    # Padding of the attention nets' convolutions: "zeros" or "replicate" (no response at tile borders).
    attention_padding: str = "zeros"
    # Activation of the attention nets: "relu" or "leaky_relu" (units that noisy steps push below zero
    # stay trainable; docs/experiments/stage1.md).
    attention_activation: str = "relu"
    feature_widths: tuple[int, ...] = (16, 32, 64)
    feature_norm: str = "group"
    # A timm model name (e.g. "resnet10t") for the feature network instead of the small built-in one.
    timm_backbone: str | None = None
    # optimisation
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    # The attention nets learn from a noisy score-function gradient; a larger step for them lets the
    # attention leave the prior sooner (measured on the demo: docs/experiments/stage1.md).
    attention_lr_mult: float = 1.0
    # ZoomIn's stage-I attention net alone (None: attention_lr_mult). Its learned logits stayed ~0.03
    # against the ink prior's spread of ~0.5 between inked tiles on the demo (docs/experiments/stage1.md).
    attention1_lr_mult: float | None = None
    weight_decay: float = 1e-5
    warmup_epochs: float = 0.0
    clip: float = 5.0
    amp: bool = True
    seed: int = 0
    threads: int | None = None
    time_limit_min: float | None = None  # stop after the epoch that crosses it (no preset sets one)
    # output
    out: str = "runs/zoomin"
    resume: bool = False
    plot_images: int = 4
    device: str = "auto"

    def __post_init__(self):
        if self.folds == 1 or self.folds < 0:
            raise ValueError(f"folds={self.folds!r}: 0 (one run) or K >= 2 (K-fold cross-validation)")
        if self.fold < 1:
            raise ValueError(f"fold={self.fold!r}: folds are numbered from 1")
        if self.in_channels is not None and self.in_channels < 1:
            raise ValueError(f"in_channels={self.in_channels!r}: must be positive")
        if self.binary_digit is not None:
            if self.binary_digit not in range(10):
                raise ValueError(f"binary_digit={self.binary_digit!r}: must be a digit 0..9")
            self.n_classes = 2
        from ..models.nets import ACTIVATIONS

        if self.attention_activation not in ACTIVATIONS:
            raise ValueError(
                f"attention_activation={self.attention_activation!r}: choose one of {', '.join(ACTIVATIONS)}"
            )
        if self.tile_pooling not in ("max", "lse"):
            raise ValueError(f"tile_pooling={self.tile_pooling!r}: choose 'max' or 'lse'")
        for name in ("prior_weight", "prior_weight_final", "attention_lr_mult", "attention1_lr_mult"):
            v = getattr(self, name)
            if v is not None and not (v >= 0 and v < float("inf")):
                raise ValueError(f"{name}={v!r}: must be finite and >= 0")
        if self.tile_baseline and self.model != "zoomin":
            raise ValueError(f"tile_baseline=True is for model='zoomin' (its tile draws), not {self.model!r}")
        if self.contrastive and (self.model != "zoomin" or self.n_classes != 2):
            raise ValueError("contrastive=True needs model='zoomin' and a binary task (set binary_digit)")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        # plain lists/values only: the checkpoint must load with weights_only=True.
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


# The --help sentence of every TrainConfig field, by the group --help lists it in (data, model,
# optimisation, output). A new field needs its sentence here: tests/test_cli.py fails without one.
# `zoomkern train --help` adds each field's default and the value of every preset that sets it.
HELP: dict[str, dict[str, str]] = {
    "data": {
        "dataset": "the data set (zoomkern.training.registry.DATASETS); colon, traffic_signs and slides "
        "alone also take their preset",
        "root": "the data folder (megapixel_mnist: generated there when missing)",
        "fold": "data sets with folds (colon): the fold to train on, 1-based",
        "folds": "K >= 2: K-fold cross-validation over all folds, writing <out>/folds.csv; 0: one run on "
        "--fold (stratified folds, traffic_signs: 10 when K is not given)",
        "in_channels": "image channels (none: from the data set, 1 for Megapixel MNIST, 3 for RGB sets)",
        "augment": "the data set paper's training augmentations, on the fly (colon: flips and rotations)",
        "class_weights": "weight the loss by inverse class frequency of the training set (imbalanced sets)",
        "labels": "slides: the labels CSV `slide,label` (none: <root>/labels.csv)",
        "test_labels": "slides: a CSV of held-out slides in the same root (none: test on the training "
        "slides)",
        "tissue_mask": "slides: stage I looks at tissue only (Otsu mask of the low view)",
        "size": "Megapixel MNIST canvas: N (square) or H W pixels",
        "n_train": "Megapixel MNIST: training images generated",
        "n_test": "Megapixel MNIST: test images generated",
        "n_noise": "Megapixel MNIST: noise stamps per canvas",
        "scale": "s1, the low view's scale (stage I's input) relative to level 0",
        "data_seed": "the seed the data set is generated from (Megapixel MNIST)",
        "binary_digit": "binary task: label 1 iff this digit is present (n_classes becomes 2)",
        "noise_curriculum": "'n_noise:epochs,...': first train on canvases with fewer noise stamps, each "
        "stage its own generated set, then on the full one (empty: none)",
    },
    "model": {
        "model": "zoomin (two stages), ats (one stage), cnn_lowres or cnn_full (baselines)",
        "n_classes": "number of classes (set by the data set's preset; 2 with --binary-digit)",
        "tile_size": "Zoom-In: stage I's tile, in level-0 pixels",
        "s2": "Zoom-In: scale of the tile views stage II attends over, relative to level 0",
        "sub_grid": "Zoom-In: stage II's grid of sub-cells per tile, H W (none: the tile view's resolution)",
        "patch_size": "side of the full-resolution patches, in level-0 pixels",
        "n_tiles": "Zoom-In: tiles drawn per image while training",
        "n_sub": "Zoom-In: sub-cells (patches) drawn per tile while training",
        "n_patches": "ATS: patches drawn per image while training",
        "entropy": "weight of the attention-entropy regulariser",
        "prior": "add the ink prior (log of mean ink per cell) to the attention logits: bright objects on "
        "a dark background get looked at from the first step",
        "prior_eps": "the ink prior's epsilon: log(mean ink + eps)",
        "prior_weight": "the ink prior's weight on the attention logits (first epoch)",
        "prior_weight_final": "the prior's weight at the last epoch, linear from --prior-weight, so the "
        "learned logits can take over (none: constant)",
        "eval_topk": "evaluate on the top cells (deterministic) instead of random draws",
        "tile_baseline": "Zoom-In: a leave-one-out baseline in stage I's score-function gradient (lower "
        "variance, same mean)",
        "tile_pooling": "Zoom-In: how stage I pools its logits to the tile grid, max or lse (models.base)",
        "contrastive": "Zoom-In, binary tasks: positives seen through the inverted attention must look "
        "negative",
        "teacher": "Zoom-In: weight of the attention teacher, a cross-entropy target for both attention "
        "stages from the classifier's scores of more tiles than were drawn (0: off; models/teacher.py)",
        "teacher_frac": "Zoom-In: the share of each training batch the teacher scores",
        "teacher_tiles": "Zoom-In: tiles the teacher scores per image, drawn uniformly (none: every tile)",
        "teacher_sub": "Zoom-In: sub-cells the teacher tries per tile (half from stage II, half uniform)",
        "teacher_top": "Zoom-In: how many of the teacher's best tiles stage I is pulled towards",
        "n_tiles_eval": "Zoom-In: tiles at evaluation (none: --n-tiles)",
        "n_sub_eval": "Zoom-In: sub-cells per tile at evaluation (none: --n-sub)",
        "n_patches_eval": "ATS: patches at evaluation (none: --n-patches)",
        "attention_pool": "stage-I attention net: average-pool the low view by this first (slides)",
        "attention_padding": "padding of the attention nets' convolutions: zeros or replicate (no response "
        "at tile borders)",
        "attention_activation": "activation of the attention nets: relu or leaky_relu (units pushed below "
        "zero stay trainable)",
        "feature_widths": "channels of the built-in feature net's convolutions, one number per stage",
        "feature_norm": "normalisation in the feature net: group, batch or none",
        "timm_backbone": "a timm model name (e.g. resnet10t) as the feature net instead of the built-in one",
    },
    "optimisation": {
        "epochs": "training epochs",
        "batch_size": "images per step (the global batch under torchrun)",
        "lr": "AdamW learning rate (warmup, then cosine decay)",
        "attention_lr_mult": "learning-rate multiplier of the attention nets (their score-function gradient "
        "is noisy; a larger step leaves the prior sooner)",
        "attention1_lr_mult": "Zoom-In: multiplier of stage I's attention net alone, 0 freezes it at the ink "
        "prior (none: --attention-lr-mult)",
        "weight_decay": "AdamW weight decay",
        "warmup_epochs": "linear learning-rate warmup, in epochs",
        "clip": "gradient-norm clipping (0: none)",
        "amp": "mixed precision on CUDA (bfloat16 where supported)",
        "seed": "the training seed (weights, draws, shuffling)",
        "threads": "torch CPU threads (none: torch's default)",
        "time_limit_min": "stop after the epoch that crosses this many minutes (none: no limit); printed at "
        "the start and at the stop",
    },
    "output": {
        "out": "the run folder: config.yaml, metrics.csv, checkpoint.pt, attention.png",
        "resume": "continue from <out>/checkpoint.pt (k-fold: finished folds are kept)",
        "plot_images": "test images drawn in <out>/attention.png (0: no picture)",
        "device": "auto (CUDA when there is one), cpu, cuda or cuda:N",
    },
}

# The presets: commented YAML files in zoomkern/configs/<name>.yaml (package data), each value with the
# reason for it. {name: {field: value}}, tuples where TrainConfig has tuples.
PRESETS: dict[str, dict] = load_presets(TrainConfig)


def prior_weight_at(cfg: TrainConfig, epoch: int) -> float:
    """The ink prior's weight in ``epoch`` (0-based): constant, or linear from prior_weight at the first
    epoch to prior_weight_final at the last (a function of the epoch alone, so --resume repeats it)."""
    if cfg.prior_weight_final is None or cfg.epochs <= 1:
        return cfg.prior_weight
    t = min(max(epoch, 0), cfg.epochs - 1) / (cfg.epochs - 1)
    return cfg.prior_weight + t * (cfg.prior_weight_final - cfg.prior_weight)


def build_model(cfg: TrainConfig):
    from .. import models

    c = cfg.in_channels or 1
    if cfg.timm_backbone:
        fnet = models.timm_feature_net(cfg.timm_backbone, c)
    else:
        fnet = models.FeatureNet(c, widths=tuple(cfg.feature_widths), norm=cfg.feature_norm)
    # The options both attention models share, set once (models/options.py declares them).
    shared = dict(
        s1=cfg.scale,
        patch_size=cfg.patch_size,
        entropy=cfg.entropy,
        prior=cfg.prior,
        prior_eps=cfg.prior_eps,
        prior_weight=prior_weight_at(cfg, 0),
        eval_topk=cfg.eval_topk,
    )
    if cfg.model == "zoomin":
        opts = models.ZoomInOptions(
            **shared,
            tile_size=cfg.tile_size,
            s2=cfg.s2,
            sub_grid=cfg.sub_grid,
            n_tiles=cfg.n_tiles,
            n_sub=cfg.n_sub,
            n_tiles_eval=cfg.n_tiles_eval,
            n_sub_eval=cfg.n_sub_eval,
            contrastive=cfg.contrastive,
            tile_baseline=cfg.tile_baseline,
            tile_pooling=cfg.tile_pooling,
            teacher=cfg.teacher,
            teacher_frac=cfg.teacher_frac,
            teacher_tiles=cfg.teacher_tiles,
            teacher_sub=cfg.teacher_sub,
            teacher_top=cfg.teacher_top,
        )
        # attention1 then attention2 then the head: the order ZoomIn itself builds them in (same weights)
        act = dict(padding_mode=cfg.attention_padding, activation=cfg.attention_activation)
        att1 = models.AttentionNet(c, pool=cfg.attention_pool, **act)
        att2 = models.AttentionNet(c, **act)
        return models.ZoomIn(
            cfg.n_classes, c, options=opts, feature_net=fnet, attention1=att1, attention2=att2
        )
    if cfg.teacher and cfg.model != "zoomin":
        import warnings

        # the presets turn the teacher on; --model ats/cnn_* with a preset must still run, so say it
        warnings.warn(
            f"teacher={cfg.teacher}: the attention teacher is Zoom-In's; model {cfg.model!r} trains without "
            "it (ATS without a prior starts from uniform attention)",
            stacklevel=2,
        )
    if cfg.model == "ats":
        opts = models.ATSOptions(**shared, n_patches=cfg.n_patches, n_patches_eval=cfg.n_patches_eval)
        att = models.AttentionNet(
            c,
            padding_mode=cfg.attention_padding,
            pool=cfg.attention_pool,
            activation=cfg.attention_activation,
        )
        return models.ATS(cfg.n_classes, c, options=opts, feature_net=fnet, attention=att)
    if cfg.model == "cnn_lowres":
        return models.CNNLowRes(cfg.n_classes, c, s1=cfg.scale)
    if cfg.model == "cnn_full":
        return models.CNNFull(cfg.n_classes, c)
    raise ValueError(f"unknown model {cfg.model!r}; choose zoomin, ats, cnn_lowres or cnn_full")
