"""Training configuration: one dataclass, presets, and the model factory."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


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
    # sub-cells: with 10 of them ATS touched 30% of the digits, with 48 96% (issue 12, README).
    n_patches_eval: int | None = None
    # ZoomIn/ATS stage-I attention net: average-pool the low view by this first (slides: see AttentionNet).
    attention_pool: int = 1
    # Padding of the attention nets' convolutions: "zeros" or "replicate" (no response at tile borders).
    attention_padding: str = "zeros"
    # Activation of the attention nets: "relu" or "leaky_relu" (units that noisy steps push below zero
    # stay trainable; see README, "Stage I").
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
    # attention leave the prior sooner (measured on the demo: see README).
    attention_lr_mult: float = 1.0
    # ZoomIn's stage-I attention net alone (None: attention_lr_mult). Its learned logits stayed ~0.03
    # against the ink prior's spread of ~0.5 between inked tiles on the demo (README, "Stage I").
    attention1_lr_mult: float | None = None
    weight_decay: float = 1e-5
    warmup_epochs: float = 0.0
    clip: float = 5.0
    amp: bool = True
    seed: int = 0
    threads: int | None = None
    time_limit_min: float | None = None  # stop after the epoch that crosses it (the demo's guard)
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


# The training recipe both presets share, measured on the demo: ink prior, no entropy term, BatchNorm
# features (breaks the early plateau sooner: 89.6% -> 92.6%, seed 1, 14 epochs), 2 sub-cells per drawn
# tile, deterministic top-k evaluation over 16 tiles x 3 sub-cells, batch 16, lr 2e-3.
_RECIPE = dict(
    sub_grid=(10, 10),
    n_sub=2,
    n_patches=10,
    entropy=0.0,
    prior=True,
    eval_topk=True,
    n_tiles_eval=16,
    n_sub_eval=3,
    n_patches_eval=48,  # ATS: the same evaluation budget as Zoom-In's 16 x 3
    feature_norm="batch",
    batch_size=16,
    lr=2e-3,
)

PRESETS: dict[str, dict] = {
    # Small canvas so that the whole run (data generation, training, per-epoch test, plot) fits in
    # 10 minutes on two CPU cores. 4 noise stamps on 400 x 400 is the paper's stamp density (50 on
    # 1500 x 1500). Three noise-free epochs first (the same digits, the generator only drops the stamps):
    # with the ink prior 71% of the first patches land on a digit there, 32% with 8 stamps, ~1% without
    # the prior. Evaluation covers all 16 tiles of the 4 x 4 grid.
    "demo": dict(
        _RECIPE,
        size=(400, 400),
        n_train=2000,
        n_test=500,
        n_noise=4,
        tile_size=100,
        s2=0.25,
        patch_size=32,
        n_tiles=8,  # 16 patches while training: lower-variance gradients, +1 point at 14 epochs
        noise_curriculum="0:3",
        epochs=12,
        root="data/mnist_demo",
        out="runs/demo",
        time_limit_min=8.5,
    ),
    # The ATS / Zoom-In paper setting: 1500 x 1500, 5000 / 1000 images, 10 patches of 50 x 50 (5 tiles of
    # 250 x 250 drawn with replacement, 2 sub-cells each), the demo's recipe otherwise. 20 epochs, not the
    # papers' hundreds: about 2 h on two CPU cores with ZoomIn and ATS side by side (see README).
    "paper": dict(
        _RECIPE,
        size=(1500, 1500),
        n_train=5000,
        n_test=1000,
        n_noise=50,
        tile_size=250,
        s2=0.2,
        patch_size=50,
        n_tiles=5,
        noise_curriculum="0:4",
        # Stage I stays the ink prior (its net's last layer starts at zero and never moves): trained end
        # to end it ranked the digit tiles below the prior it starts from (72% vs 77% top-16 recall), and
        # freezing it took 20 epochs from 74.1% to 81.2-82.6% (README, "Paper setting"). ZoomIn only.
        attention1_lr_mult=0.0,
        epochs=20,
        root="data/mnist_paper",
        out="runs/paper",
    ),
    # Colon-cancer histology (100 images of 500 x 500 RGB, binary), the official Zoom-In model defaults
    # (ALGORITHMS.md): tiles 250 x 250, s1 = 1/10, s2 = 1/5, 27 x 27 patches, 10 of them (5 tile draws x 2
    # sub-cells), weight decay 1e-5, clipping 5. No ink prior (stained tissue is not bright ink on black):
    # the attention starts uniform. Flips and 90-degree rotations on the fly. Measured on the generated
    # colon-like set (README): the official Adam 1e-4 for 100 epochs was still at chance after 11 epochs and
    # does not fit 5 minutes here; lr 1e-3 with batch 5 (18 steps an epoch) left chance in about 5 epochs.
    # Evaluation draws patches like training (10 tile draws x 4 sub-cells): deterministic top-k on a
    # still-flat attention map picks the same corner cells in every image, and with BatchNorm it ranked
    # the test images perfectly (AUC 1.0) yet called them all one class (accuracy 50%).
    "colon": dict(
        dataset="colon",
        root="data/colon",
        n_classes=2,
        scale=0.1,
        tile_size=250,
        s2=0.2,
        sub_grid=None,
        patch_size=27,
        n_tiles=5,
        n_sub=2,
        prior=False,
        entropy=0.0,
        eval_topk=False,
        n_tiles_eval=10,
        n_sub_eval=4,
        feature_norm="batch",
        augment=True,
        epochs=30,
        batch_size=5,
        lr=1e-3,
        weight_decay=1e-5,
        clip=5.0,
        out="runs/colon",
        time_limit_min=4.5,
    ),
    # Swedish traffic-sign speed limits (960 x 1280 RGB, EMPTY / 50 / 70 / 80): 100 x 100 patches as in
    # the attention-sampling paper, 12 tiles of 320 x 320, class weights for the imbalance (most images
    # are EMPTY), brightness / contrast jitter on the fly (no flips: mirrored digits). Uniform attention
    # at the start, as for colon. From uniform attention a patch lands on a 30-72 px sign rarely: with 10
    # patches (5 tiles x 2) about 10% of the sign images got one and the run stayed at chance (README);
    # 12 tile draws x 4 sub-cells = 48 patches (about 40%), paid for by a feature net of half the widths
    # (3.7 instead of 8.4 ms a patch, forward and backward, one CPU thread).
    "traffic_signs": dict(
        dataset="traffic_signs",
        root="data/traffic_signs",
        n_classes=4,
        size=(960, 1280),
        scale=0.25,
        tile_size=320,
        s2=0.25,
        sub_grid=(8, 8),
        patch_size=100,
        n_tiles=12,
        n_sub=4,
        prior=False,
        entropy=0.0,
        eval_topk=False,  # sampled evaluation, as for colon (see there)
        n_tiles_eval=12,
        n_sub_eval=4,
        feature_widths=(8, 16, 32),
        feature_norm="batch",
        augment=True,
        class_weights=True,
        epochs=10,
        batch_size=8,
        lr=1e-3,
        out="runs/traffic_signs",
        time_limit_min=45,
    ),
    # Whole-slide images (--dataset slides, e.g. the 100000 x 100000 synthetic slides): a 1/64 low view
    # (1563 px, read from the pyramid level of that size), 2048-px tiles (a 49 x 49 grid), tile views at
    # 1/16 (128 px, from the level of that downsample) in 16 x 16 sub-cells, 128-px patches from level 0;
    # 8 tile draws x 2 sub-cells = 16 patches a slide. No ink prior (glass is bright, tissue is not).
    # The stage-I net pools the view by 4 first (391 px, 8 px a tile): 18 s -> ~2 s a CPU step.
    "slides": dict(
        dataset="slides",
        n_classes=2,
        scale=1 / 64,
        tile_size=2048,
        s2=1 / 16,
        sub_grid=(16, 16),
        patch_size=128,
        attention_pool=4,
        n_tiles=8,
        n_sub=2,
        prior=False,
        entropy=0.0,
        eval_topk=True,
        n_tiles_eval=16,
        n_sub_eval=2,
        feature_norm="batch",
        batch_size=2,
        lr=1e-3,
        epochs=4,
        plot_images=2,
        out="runs/slides",
    ),
}


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
