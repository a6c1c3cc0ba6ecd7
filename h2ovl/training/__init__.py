"""Lightning experiments around the plain model: the training module (and, with the training issue, the CLI)."""

from h2ovl.training.module import H2OVLModule, Trainable

__all__ = ["H2OVLModule", "Trainable"]
