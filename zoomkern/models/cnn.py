"""CNN baselines with the attention models' interface: forward(image, lowres=None, labels=None) -> dict."""

from __future__ import annotations

from torch import nn

from . import base
from .nets import ConvClassifier


class CNNLowRes(nn.Module):
    """A CNN on the low-resolution view only: cheap, but the evidence may be too small to see there."""

    def __init__(
        self, n_classes: int = 10, in_channels: int = 1, *, s1: float = 0.12, net: nn.Module | None = None
    ):
        super().__init__()
        self.s1 = s1
        # Stride 1 first: at scale 0.12 a 28-pixel digit is ~3 pixels wide; striding at once would erase it.
        self.net = (
            net
            if net is not None
            else nn.Sequential(
                nn.Conv2d(in_channels, 32, 3, padding=1),
                nn.ReLU(inplace=True),
                ConvClassifier(32, n_classes, widths=(32, 64, 64)),
            )
        )

    def forward(self, image, lowres=None, labels=None, mask=None):
        """``mask`` (B, h, w) bool at any resolution, or None: where the model may look (slides: tissue,
        not padding); the low view is zeroed elsewhere, like the padding of a smaller slide."""
        base.check_image(image, (1, 1), "minimum size")
        dev = next(self.parameters()).device
        low = base.low_view(image, lowres, self.s1, dev)
        if mask is not None:
            low = low * base.grid_mask(mask, tuple(low.shape[-2:]), dev)[:, None].to(low.dtype)
        logits = self.net(low)
        return dict(logits=logits, aux_loss=logits.new_zeros(()))


class CNNFull(nn.Module):
    """A CNN on the full-resolution image: sees everything, memory grows with H*W (activations of the
    first layers dominate), the baseline the attention models are meant to beat on memory."""

    def __init__(self, n_classes: int = 10, in_channels: int = 1, *, net: nn.Module | None = None):
        super().__init__()
        self.net = (
            net
            if net is not None
            else ConvClassifier(in_channels, n_classes, widths=(16, 32, 64, 64, 64, 64))
        )

    def forward(self, image, lowres=None, labels=None, mask=None):
        """``mask`` is accepted for a common call and ignored: this baseline reads every pixel (a
        smaller slide's padding is zeros already)."""
        base.check_image(image, (1, 1), "minimum size")
        dev = next(self.parameters()).device
        logits = self.net(base.full_image(image, dev))
        return dict(logits=logits, aux_loss=logits.new_zeros(()))
