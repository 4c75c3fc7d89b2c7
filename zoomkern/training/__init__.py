"""Training: the loop, checkpoints (atomic, weights_only loading), metrics and the attention plot."""

from .config import PRESETS, TrainConfig, build_model
from .loop import run_epoch, summary_line, train

__all__ = ["TrainConfig", "PRESETS", "build_model", "train", "run_epoch", "summary_line"]
