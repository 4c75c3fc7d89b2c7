"""Models built from zoomkern ops: ZoomIn (two stages), ATS (one stage) and two CNN baselines.

All share one interface: ``model(image, lowres=None, labels=None)`` returns a dict with ``logits``
(B, n_classes) and ``aux_loss`` (a scalar to add to the task loss), plus what the attention models drew.
"""

from .ats import ATS
from .cnn import CNNFull, CNNLowRes
from .nets import AttentionNet, ConvClassifier, FeatureNet, linear_head, timm_feature_net
from .options import ATSOptions, SamplingOptions, ZoomInOptions
from .zoomin import ZoomIn

__all__ = [
    "ZoomIn",
    "ATS",
    "SamplingOptions",
    "ZoomInOptions",
    "ATSOptions",
    "CNNLowRes",
    "CNNFull",
    "AttentionNet",
    "FeatureNet",
    "ConvClassifier",
    "linear_head",
    "timm_feature_net",
]
