"""Lightning experiments around the plain model: the training module (and, with the training issue, the CLI)."""

from h2ovl.training.module import H2OVLModule
from h2ovl.training.settings import Initialization, Optimization, Trainable, ValGeneration

__all__ = ["H2OVLModule", "Initialization", "Optimization", "Trainable", "ValGeneration"]
