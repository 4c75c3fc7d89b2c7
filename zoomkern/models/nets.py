"""Small default networks for the attention, feature and classifier roles.

Every model takes these as arguments (any ``nn.Module`` with the same input/output shapes works);
the defaults are deliberately small so that the demo trains on two CPU cores.
"""

from __future__ import annotations

import torch
from torch import nn

# "leaky_relu": a unit pushed below zero by the noisy score-function steps still gets a gradient; with
# ReLU a 10x stage-I step left all the demo's stage-I units dead by epoch 5 (docs/experiments/stage1.md).
ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True)}


class AttentionNet(nn.Module):
    """(B, C, h, w) view -> (B, 1, h, w) attention logits (same resolution, 'same' padding).

    The last layer starts at zero so that, at initialisation, the attention equals the prior
    (or is uniform without one): the first draws are steered by the prior, not by random weights.
    ``padding_mode="replicate"``: a tile's border is not a zero edge the filters can learn to fire on
    (with zero padding the stage-II maps lined every tile's inner border, issue 12).
    ``pool > 1`` area-averages the view by ``pool`` first, and the logits come out that much smaller: for
    low views far finer than the tile grid (a 1563-px slide view over 49 x 49 tiles), where the convs
    at full view size cost 16x more (measured: 18 s of a 21 s CPU step) for logits max-pooled away anyway.
    ``activation``: "relu" or "leaky_relu" (see ACTIVATIONS).
    """

    def __init__(self, in_channels: int = 1, width: int = 8, depth: int = 3, padding_mode: str = "zeros",
                 pool: int = 1, activation: str = "relu"):  # fmt: skip
        super().__init__()
        if padding_mode not in ("zeros", "replicate", "reflect"):
            raise ValueError(f"padding_mode must be 'zeros', 'replicate' or 'reflect', got {padding_mode!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, got {activation!r}"
            )
        layers: list[nn.Module] = [nn.AvgPool2d(pool, ceil_mode=True)] if pool > 1 else []
        c = in_channels
        pm = padding_mode
        for _ in range(depth - 1):
            layers += [nn.Conv2d(c, width, 3, padding=1, padding_mode=pm), ACTIVATIONS[activation]()]
            c = width
        last = nn.Conv2d(c, 1, 3, padding=1, padding_mode=pm)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        layers.append(last)
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FeatureNet(nn.Module):
    """(n, C, ph, pw) patches -> (n, out_dim) features. Global max pooling makes the feature
    independent of where the object sits in the patch, which matters because patches are centred on
    attention cells, not on objects.

    ``norm``: "group" (statistics per patch: sampled training patches and top-k evaluation patches are
    normalised alike), "batch" (learns faster early on; evaluation uses the running statistics) or "none".
    """

    def __init__(
        self,
        in_channels: int = 1,
        widths: tuple[int, ...] = (16, 32, 64),
        out_dim: int = 64,
        norm: str = "group",
    ):
        super().__init__()
        if norm not in ("group", "batch", "none"):
            raise ValueError(f"norm must be 'group', 'batch' or 'none', got {norm!r}")
        layers: list[nn.Module] = []
        c = in_channels
        for i, w in enumerate(widths):
            layers.append(nn.Conv2d(c, w, 3, padding=1, bias=norm == "none"))
            if norm == "group":
                layers.append(nn.GroupNorm(min(8, w), w))
            elif norm == "batch":
                layers.append(nn.BatchNorm2d(w))
            layers.append(nn.ReLU(inplace=True))
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c, out_dim), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvClassifier(nn.Module):
    """(B, C, H, W) -> (B, n_classes): a plain strided CNN, the backbone of the CNN baselines."""

    def __init__(
        self,
        in_channels: int = 1,
        n_classes: int = 10,
        widths: tuple[int, ...] = (16, 32, 64, 64),
        stride: int = 2,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for w in widths:
            layers += [
                nn.Conv2d(c, w, 3, stride=stride, padding=1, bias=False),
                nn.GroupNorm(min(8, w), w),
                nn.ReLU(inplace=True),
            ]
            c = w
        layers += [nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c, n_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def linear_head(in_dim: int, n_classes: int) -> nn.Module:
    # A linear head on the expectation equals the expectation of per-patch scores: a vote weighted by
    # attention, which is what "which digit appears most often" needs.
    return nn.Linear(in_dim, n_classes)


def timm_feature_net(name: str, in_channels: int = 1, **kwargs) -> nn.Module:
    """A timm backbone as feature net (``out_dim`` set from its ``num_features``); timm is optional."""
    try:
        import timm
    except ImportError as e:
        raise ImportError("timm_feature_net needs the optional package timm (pip install timm)") from e
    net = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels, **kwargs)
    net.out_dim = net.num_features
    return net
